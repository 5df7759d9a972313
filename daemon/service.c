/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid under a service manager, without libsystemd (see service.h).
 * The protocols are small and documented in sd_notify(3), sd_listen_fds(3)
 * and sd-daemon(3); linking libsystemd for them would add a dependency the
 * daemon does not otherwise need.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "service.h"

/* ------------------------------------------------------------------------ */
/* logging */

static const char *const level_names[] = { "err", "warn", "info", "debug" };
static const int level_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

int vpd_log_level_parse(const char *s, enum vp_log_level *out)
{
	for (int i = 0; i <= VP_LOG_DEBUG; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum vp_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int vpd_log_target_parse(const char *s, enum vpd_log_target *out)
{
	static const char *const names[] = { "auto", "stderr", "journal", "syslog" };

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum vpd_log_target)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void log_stderr(enum vp_log_level level, const char *msg, void *opaque)
{
	struct timespec ts;
	struct tm tm;
	char when[32];

	(void)opaque;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	/* One fprintf per line: stderr is unbuffered, lines stay whole. */
	fprintf(stderr, "%s.%03ld vhost-pcid[%d] %s: %s\n", when, ts.tv_nsec / 1000000,
		(int)getpid(), (unsigned)level <= VP_LOG_DEBUG ? level_names[level] : "?", msg);
}

/* The journal stamps time and pid itself; "<N>" carries the priority. */
static void log_journal(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	fprintf(stderr, "<%d>%s\n", (unsigned)level <= VP_LOG_DEBUG ? level_prio[level] : LOG_ERR,
		msg);
}

static void log_syslog(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	syslog((unsigned)level <= VP_LOG_DEBUG ? level_prio[level] : LOG_ERR, "%s", msg);
}

/* sd-daemon(3): JOURNAL_STREAM is "DEV:INO" of the stream stderr must still be
 * (a child that redirected stderr elsewhere must not use the prefixes). */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void vpd_log_start(enum vpd_log_target target)
{
	if (target == VPD_LOG_AUTO)
		target = stderr_is_journal() ? VPD_LOG_JOURNAL : VPD_LOG_STDERR;
	switch (target) {
	case VPD_LOG_JOURNAL:
		vp_log_set_handler(log_journal, NULL);
		break;
	case VPD_LOG_SYSLOG:
		openlog("vhost-pcid", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		vp_log_set_handler(log_syslog, NULL);
		break;
	default:
		vp_log_set_handler(log_stderr, NULL);
		break;
	}
}

/* ------------------------------------------------------------------------ */
/* readiness: sd_notify(3) */

int vpd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	size_t plen;
	ssize_t n;
	int fd, e = 0;

	if (!path || !*path)
		return 0;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = 0;   /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* One datagram; MSG_NOSIGNAL: a gone manager must not kill us. */
	n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	if (n < 0)
		e = -errno;
	else if ((size_t)n != strlen(state))
		e = -EMSGSIZE;
	close(fd);
	return e < 0 ? e : 1;
}

/* ------------------------------------------------------------------------ */
/* socket activation: sd_listen_fds(3) */

#define LISTEN_FDS_START 3
#define LISTEN_FDS_MAX 1024

static int parse_uint(const char *s, unsigned long long *v)
{
	char *end;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || *end || s[0] == '-' ? -EINVAL : 0;
}

int vpd_listen_fds(struct vpd_listen_fd **out)
{
	const char *spid = getenv("LISTEN_PID"), *sfds = getenv("LISTEN_FDS");
	const char *snames = getenv("LISTEN_FDNAMES");
	unsigned long long pid, nfds;
	struct vpd_listen_fd *v = NULL;
	char *names = NULL, *save = NULL, *tok;
	int e = 0;

	*out = NULL;
	if (!spid || !sfds)
		return 0;
	if (parse_uint(spid, &pid) < 0 || parse_uint(sfds, &nfds) < 0) {
		e = -EINVAL;
		goto out;
	}
	/* Meant for another process (we were exec'd by the one it was for). */
	if (pid != (unsigned long long)getpid())
		goto out;
	if (nfds == 0)
		goto out;
	if (nfds > LISTEN_FDS_MAX) {
		e = -EINVAL;
		goto out;
	}
	v = calloc(nfds, sizeof(*v));
	if (!v || (snames && !(names = strdup(snames)))) {
		e = -ENOMEM;
		goto out;
	}
	tok = names ? strtok_r(names, ":", &save) : NULL;
	for (unsigned i = 0; i < nfds; i++) {
		v[i].fd = LISTEN_FDS_START + (int)i;
		if (fcntl(v[i].fd, F_SETFD, FD_CLOEXEC) < 0) {
			e = -errno;
			goto out;
		}
		if (tok) {
			if (!(v[i].name = strdup(tok))) {
				e = -ENOMEM;
				goto out;
			}
			tok = strtok_r(NULL, ":", &save);
		}
	}
	e = (int)nfds;
out:
	free(names);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (e <= 0) {
		vpd_listen_fds_free(v, v ? (int)nfds : 0);
		return e;
	}
	*out = v;
	return e;
}

void vpd_listen_fds_free(struct vpd_listen_fd *v, int n)
{
	if (!v)
		return;
	for (int i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}
