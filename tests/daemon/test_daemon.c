/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Functional tests of vhost-pcid and vhost-pci-ctl: each case starts the
 * daemon as a child process (two servers and a control socket in a fresh
 * temp dir), drives frontends at it (native clients in this process, stock
 * vhost-user frontends in forked children, raw sockets sending garbage) and
 * checks what the control socket and vhost-pci-ctl report.
 *
 * Usage: test-daemon VHOST_PCID VHOST_PCI_CTL [CASE-FILTER]
 *
 * Every wait has a deadline; a daemon still running when a case ends is
 * killed, so a failure never hangs the run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_ring.h>

#include "vhostpci/client.h"
#include "vhostpci/devinfo.h"
#include "vhostpci/log.h"
#include "vhostpci/server.h"
#include "vhostpci/sock.h"
#include "daemon.h"

/* testutil's main() takes argv[1] as a filter; ours takes the binaries first. */
int tu_main(int argc, char **argv);
#define main tu_main
#define TESTUTIL_MAIN
#include "testutil.h"
#undef main
#include "daemon_testutil.h"

static const char *pcid_bin, *ctl_bin;

#define WAIT_MS 5000
#define UUID0 "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"   /* native frontend's */
#define UUID1 "12345678-9abc-4def-8123-456789abcdef"   /* net1's, for vhost-user */

#define F_CSUM (1ull << VIRTIO_NET_F_CSUM)
#define F_MRG_RXBUF (1ull << VIRTIO_NET_F_MRG_RXBUF)
#define F_EVENT_IDX (1ull << VIRTIO_RING_F_EVENT_IDX)
#define F_INDIRECT (1ull << VIRTIO_RING_F_INDIRECT_DESC)
#define F_VERSION_1 (1ull << VIRTIO_F_VERSION_1)

/* ------------------------------------------------------------------------ */
/* child processes */

#define MAX_KIDS 16
static pid_t kids[MAX_KIDS];

static void kid_add(pid_t pid)
{
	for (int i = 0; i < MAX_KIDS; i++)
		if (!kids[i]) {
			kids[i] = pid;
			return;
		}
}

static void kid_del(pid_t pid)
{
	for (int i = 0; i < MAX_KIDS; i++)
		if (kids[i] == pid)
			kids[i] = 0;
}

/* Whatever a failed case left running. */
static void kill_kids(void)
{
	for (int i = 0; i < MAX_KIDS; i++) {
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
	}
}

/* Wait for pid to end: its wait status, or -1 after timeout_ms (then it is
 * killed and reaped). */
static int wait_exit(pid_t pid, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			kid_del(pid);
			return st;
		}
		if (r < 0 || now_ms() > deadline)
			break;
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	kid_del(pid);
	return -1;
}

static bool exited_with(int st, int code)
{
	return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == code;
}

/* In a child: close every fd but 0-2 and those in keep[]. */
static void close_fds_except(const int *keep, unsigned n)
{
	int maxfd = (int)sysconf(_SC_OPEN_MAX);

	for (int fd = 3; fd < maxfd && fd < 4096; fd++) {
		bool k = false;

		for (unsigned i = 0; i < n; i++)
			k |= keep[i] == fd;
		if (!k)
			close(fd);
	}
}

/* fork + exec argv with stdout/stderr to the given fds (-1: /dev/null). */
static pid_t spawn(char *const argv[], int out_fd, int err_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(out_fd >= 0 ? out_fd : null, 1);
		dup2(err_fd >= 0 ? err_fd : null, 2);
		close_fds_except(NULL, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		kid_add(pid);
	return pid;
}

struct prog {
	int status;       /* exit code; -1 timeout; 128 + signal */
	char out[65536];
	char err[8192];
};

static void slurp(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	buf[n > 0 ? n : 0] = 0;
	close(fd);
}

/* Run a program to completion (bounded), capturing its output. */
static void run_argv(struct prog *p, char *const argv[])
{
	char o[] = "/tmp/vpd-out-XXXXXX", e[] = "/tmp/vpd-err-XXXXXX";
	int ofd = mkstemp(o), efd = mkstemp(e), st;
	pid_t pid;

	unlink(o);
	unlink(e);
	pid = spawn(argv, ofd, efd);
	st = pid > 0 ? wait_exit(pid, 10000) : -1;
	p->status = st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	slurp(ofd, p->out, sizeof(p->out));
	slurp(efd, p->err, sizeof(p->err));
}

/* run(p, prog, args..., NULL) */
static void run(struct prog *p, const char *prog, ...)
{
	char *argv[32];
	unsigned n = 0;
	va_list ap;

	argv[n++] = (char *)prog;
	va_start(ap, prog);
	while (n < 31 && (argv[n] = va_arg(ap, char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	run_argv(p, argv);
	if (p->status != 0 && p->err[0] && getenv("VPD_TEST_VERBOSE"))
		fprintf(stderr, "  (%s exit %d: %.300s)\n", prog, p->status, p->err);
}

/* ------------------------------------------------------------------------ */
/* the daemon under test */

struct daemon {
	pid_t pid;
	char dir[64];
	char ctl[128], net0[128], net1[128], log[128], conf[128];
};

static bool daemon_init(struct daemon *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/vpd-test-XXXXXX");
	if (!mkdtemp(d->dir))
		return false;
	snprintf(d->ctl, sizeof(d->ctl), "%s/run/control.sock", d->dir);
	snprintf(d->net0, sizeof(d->net0), "%s/net0.sock", d->dir);
	snprintf(d->net1, sizeof(d->net1), "%s/sub/net1.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/daemon.log", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/vhost-pcid.conf", d->dir);
	return true;
}

static struct jv *read_doc(int fd)
{
	return ctl_read(fd, WAIT_MS);
}

/* Answer of the control socket at path to raw bytes, parsed; NULL on failure. */
static struct jv *ask_raw(const char *path, const void *data, size_t len)
{
	return ctl_ask_raw(path, data, len, WAIT_MS);
}

static struct jv *ask(const struct daemon *d, const char *cmd)
{
	char line[300];

	snprintf(line, sizeof(line), "%s\n", cmd);
	return ask_raw(d->ctl, line, strlen(line));
}

/* Still running? (Does not reap it: its exit status stays for wait_exit().) */
static bool daemon_alive(const struct daemon *d)
{
	return pid_alive(d->pid);
}

/* Start vhost-pcid with argv (NULL-terminated, after the binary); wait until
 * its control socket answers. False if it exits or never answers. */
static bool daemon_spawn_argv(struct daemon *d, char *const *args)
{
	char *argv[40];
	unsigned n = 0;
	int64_t deadline = now_ms() + WAIT_MS;
	int logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	argv[n++] = (char *)pcid_bin;
	for (; *args && n < 39; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	d->pid = spawn(argv, -1, logfd);
	close(logfd);
	if (d->pid < 0)
		return false;
	while (now_ms() < deadline) {
		struct jv *doc;

		if (!daemon_alive(d))
			return false;
		doc = ask(d, "servers");
		if (doc) {
			jv_free(doc);
			return true;
		}
		sleep_ms(10);
	}
	return false;
}

/* The usual daemon: net0 (defaults) and net1 (uuid, connections=8). */
static bool daemon_spawn(struct daemon *d)
{
	char s0[200], s1[200];
	char *args[] = { "--server", s0, "--server", s1, "--control", d->ctl,
			 "--log-level", "debug", NULL };

	snprintf(s0, sizeof(s0), "path=%s,id=net0", d->net0);
	snprintf(s1, sizeof(s1), "%s,id=net1,connections=8,uuid=" UUID1, d->net1);
	return daemon_spawn_argv(d, args);
}

static bool daemon_start(struct daemon *d)
{
	return daemon_init(d) && daemon_spawn(d);
}

static bool log_has(const struct daemon *d, const char *what)
{
	char *buf = malloc(1 << 20);
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);
	bool found = false;

	if (buf && fd >= 0) {
		ssize_t n = read(fd, buf, (1 << 20) - 1);

		buf[n > 0 ? n : 0] = 0;
		found = strstr(buf, what) != NULL;
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return found;
}

/* SIGTERM and reap: the wait status, -1 if it had to be killed. */
static int daemon_stop(struct daemon *d)
{
	int st = -1;

	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		st = wait_exit(d->pid, WAIT_MS);
		d->pid = 0;
	}
	return st;
}

static void daemon_cleanup(struct daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		wait_exit(d->pid, WAIT_MS);
		d->pid = 0;
	}
	if (getenv("VPD_TEST_KEEP")) {
		fprintf(stderr, "  kept %s\n", d->dir);
		return;
	}
	if (d->dir[0])
		rm_tree(d->dir);
	kill_kids();
}

/* Run one case body against a fresh daemon; always clean up. */
#define WITH_DAEMON(body)                                                  \
	do {                                                               \
		struct daemon d_;                                          \
		bool ok_ = daemon_start(&d_);                              \
		CHECK(ok_);                                                \
		if (ok_) {                                                 \
			body(&d_);                                         \
			CHECK(daemon_alive(&d_));                          \
			CHECK(exited_with(daemon_stop(&d_), 0));           \
		}                                                          \
		daemon_cleanup(&d_);                                       \
	} while (0)

/* ------------------------------------------------------------------------ */
/* control socket helpers */

static const struct jv *find_dev(const struct jv *list, uint64_t id)
{
	const struct jv *devs = jv_get(list, "devices");

	for (const struct jv *e = devs ? devs->child : NULL; e; e = e->next) {
		uint64_t x;

		if (jv_get_u64(e, "id", &x) && x == id)
			return e;
	}
	return NULL;
}

static unsigned count_devs(const struct daemon *d)
{
	struct jv *doc = ask(d, "list");
	const struct jv *devs = jv_get(doc, "devices");
	unsigned n = devs ? (unsigned)devs->n : 9999;

	jv_free(doc);
	return n;
}

/* State of device id ("gone" if not listed, "?" if the daemon does not answer). */
static void dev_state(const struct daemon *d, uint64_t id, char *buf, size_t len)
{
	struct jv *doc = ask(d, "list");
	const struct jv *dev = find_dev(doc, id);

	snprintf(buf, len, "%s", !doc ? "?" : !dev ? "gone" : jv_get_str(dev, "state") ?
		 jv_get_str(dev, "state") : "?");
	jv_free(doc);
}

static bool wait_state(const struct daemon *d, uint64_t id, const char *want)
{
	int64_t deadline = now_ms() + WAIT_MS;
	char st[32];

	do {
		dev_state(d, id, st, sizeof(st));
		if (!strcmp(st, want))
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	fprintf(stderr, "  device %" PRIu64 ": state %s, wanted %s\n", id, st, want);
	return false;
}

static bool has_str(const struct jv *arr, const char *s)
{
	for (const struct jv *e = arr && arr->type == JV_ARR ? arr->child : NULL; e; e = e->next)
		if (e->type == JV_STR && !strcmp(e->str, s))
			return true;
	return false;
}

static bool str_is(const struct jv *v, const char *key, const char *want)
{
	const char *s = jv_get_str(v, key);

	if (s && !strcmp(s, want))
		return true;
	fprintf(stderr, "  %s is '%s', wanted '%s'\n", key, s ? s : "(missing)", want);
	return false;
}

static bool hex_is(const struct jv *v, const char *key, uint64_t want)
{
	uint64_t x;

	return jv_get_hex(v, key, &x) && x == want;
}

static bool u64_is(const struct jv *v, const char *key, uint64_t want)
{
	uint64_t x;

	return jv_get_u64(v, key, &x) && x == want;
}

static bool bool_is(const struct jv *v, const char *key, bool want)
{
	bool x;

	return jv_get_bool(v, key, &x) && x == want;
}

static const struct jv *nth(const struct jv *arr, unsigned i)
{
	const struct jv *e = arr && arr->type == JV_ARR ? arr->child : NULL;

	while (e && i--)
		e = e->next;
	return e;
}

static int daemon_fds(const struct daemon *d)
{
	return pid_fds(d->pid);
}

/* ------------------------------------------------------------------------ */
/* frontends */

#define BUF_OFF 0x10000u
#define BAD_ADDR 0xdead0000ull

/* seal = 0: RAM the frontend can still truncate (a hostile frontend's). */
static bool fe_init_sealed(struct frontend *f, const char *uuid, int seal)
{
	if (!fe_setup(f, seal, F_VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX | F_INDIRECT | F_CSUM,
		      F_VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX))
		return false;
	vp_uuid_parse(uuid, f->info.uuid);
	f->info.config_len = 6;
	memcpy(f->info.config, "\x52\x54\x00\x12\x34\x56", 6);
	return true;
}

static bool fe_init(struct frontend *f, const char *uuid)
{
	return fe_init_sealed(f, uuid, 1);
}

/* Make three buffers available on ring 0; the newest one points nowhere. */
static void fe_post_buffers(struct frontend *f)
{
	struct vring_desc *desc = (void *)(f->mem + ring_off(0));
	struct vring_avail *avail = (void *)(f->mem + ring_off(0) + 0x1000);

	for (unsigned i = 0; i < 3; i++) {
		desc[i].addr = i == 2 ? BAD_ADDR : MEM_GPA + BUF_OFF + i * 0x800;
		desc[i].len = 1500;
		desc[i].flags = VRING_DESC_F_WRITE;
		avail->ring[i] = (uint16_t)i;
	}
	__atomic_store_n(&avail->idx, 3, __ATOMIC_RELEASE);
}

/* Connect a native frontend and wait for START: the device id, or 0. */
static uint64_t fe_connect(struct frontend *f, const char *path)
{
	int e = vp_client_connect(&f->client, path, &f->info);

	if (e < 0) {
		fprintf(stderr, "  vp_client_connect(%s): %s\n", path, strerror(-e));
		return 0;
	}
	e = vp_client_wait(f->client, WAIT_MS);
	if (e < 0) {
		fprintf(stderr, "  vp_client_wait: %s (%s)\n", strerror(-e),
			vp_client_error(f->client));
		return 0;
	}
	return vp_client_device_id(f->client);
}

/* Dispatch the client until it fails (the server dropped it) or timeout. */
static bool fe_wait_failed(struct frontend *f)
{
	int64_t deadline = now_ms() + WAIT_MS;

	while (vp_client_state(f->client) != VP_CLIENT_FAILED && now_ms() < deadline) {
		struct pollfd p = { .fd = vp_client_fd(f->client), .events = POLLIN };

		poll(&p, 1, 50);
		vp_client_dispatch(f->client);
	}
	return vp_client_state(f->client) == VP_CLIENT_FAILED;
}

/* A stock vhost-user frontend in a child process, as QEMU would set it up. */
struct vu_child {
	pid_t pid;
	int release;      /* closing it lets the child exit */
};

static bool vu_start(struct vu_child *k, struct frontend *f, const char *path)
{
	int res[2], rel[2], e = -1;
	struct pollfd p;

	if (pipe2(res, O_CLOEXEC) < 0 || pipe2(rel, O_CLOEXEC) < 0)
		return false;
	k->pid = fork();
	if (k->pid == 0) {
		int keep[] = { res[1], rel[0], f->memfd, f->kick[0], f->kick[1],
			       f->call[0], f->call[1] };
		uint64_t neg = 0;
		char c;
		int s;

		/* Hold no copy of the parent's other connections. */
		close_fds_except(keep, sizeof(keep) / sizeof(keep[0]));
		alarm(60); /* the parent may die; we must not outlive it by much */
		s = vp_vu_frontend_start(path, &f->info, &neg, WAIT_MS);
		if (write(res[1], &s, sizeof(s)) != sizeof(s))
			_exit(1);
		if (read(rel[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(res[1]);
	close(rel[0]);
	k->release = rel[1];
	if (k->pid < 0) {
		close(res[0]);
		close(rel[1]);
		return false;
	}
	kid_add(k->pid);
	p = (struct pollfd){ .fd = res[0], .events = POLLIN };
	if (poll(&p, 1, 2 * WAIT_MS) == 1 && read(res[0], &e, sizeof(e)) == sizeof(e) && e < 0)
		fprintf(stderr, "  vp_vu_frontend_start: %s\n", strerror(-e));
	close(res[0]);
	return e >= 0;
}

static void vu_stop(struct vu_child *k)
{
	if (k->pid > 0) {
		close(k->release);
		CHECK(exited_with(wait_exit(k->pid, WAIT_MS), 0));
		k->pid = 0;
	}
}

/* The id of the newest device of this dialect, 0 if none. */
static uint64_t newest_dev(const struct daemon *d, const char *dialect)
{
	struct jv *doc = ask(d, "list");
	const struct jv *devs = jv_get(doc, "devices");
	uint64_t best = 0;

	for (const struct jv *e = devs ? devs->child : NULL; e; e = e->next) {
		uint64_t id;
		const char *dl = jv_get_str(e, "dialect");

		if (dl && !strcmp(dl, dialect) && jv_get_u64(e, "id", &id) && id > best)
			best = id;
	}
	jv_free(doc);
	return best;
}

static bool is_socket(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool gone(const char *path)
{
	struct stat st;

	return lstat(path, &st) < 0 && errno == ENOENT;
}

/* ======================================================================== */
/* cases */

TEST(command_line_help_and_errors)
{
	struct prog *p = calloc(1, sizeof(*p));
	char bad[64];

	REQUIRE(p);
	run(p, pcid_bin, "--help", NULL);
	CHECK_EQ(p->status, 0);
	CHECK(strstr(p->out, "Usage: vhost-pcid") && strstr(p->out, "--server SPEC") &&
	      strstr(p->out, "--control PATH") && strstr(p->out, "--log-level"));
	run(p, pcid_bin, "--version", NULL);
	CHECK(p->status == 0 && strstr(p->out, "vhost-pcid "));

	run(p, pcid_bin, "--bogus", NULL);
	CHECK(p->status == 2 && strstr(p->err, "unknown option '--bogus'"));
	run(p, pcid_bin, "-q", "--server", "/tmp/x.sock", NULL);
	CHECK(p->status == 2 && strstr(p->err, "unknown option '-q'"));
	run(p, pcid_bin, NULL);
	CHECK(p->status == 2 && strstr(p->err, "no server given"));
	run(p, pcid_bin, "--server", NULL);
	CHECK(p->status == 2 && strstr(p->err, "needs an argument"));
	run(p, pcid_bin, "--server", "id=x", NULL);
	CHECK(p->status == 2 && strstr(p->err, "no path"));
	run(p, pcid_bin, "--server", "path=/tmp/x.sock,connections=0", NULL);
	CHECK(p->status == 2 && strstr(p->err, "connections"));
	run(p, pcid_bin, "--server", "path=/tmp/x.sock", "--server", "path=/tmp/x.sock,id=y", NULL);
	CHECK(p->status == 2 && strstr(p->err, "used twice"));
	run(p, pcid_bin, "--server", "path=/tmp/x.sock", "--log-level", "loud", NULL);
	CHECK(p->status == 2 && strstr(p->err, "unknown log level 'loud'"));
	run(p, pcid_bin, "--server", "path=/tmp/x.sock", "extra", NULL);
	CHECK(p->status == 2 && strstr(p->err, "unexpected argument 'extra'"));
	run(p, pcid_bin, "--config", "/nonexistent/vhost-pcid.conf", NULL);
	CHECK(p->status == 2 && strstr(p->err, "cannot open config file"));

	run(p, ctl_bin, "--help", NULL);
	CHECK(p->status == 0 && strstr(p->out, "Usage: vhost-pci-ctl") &&
	      strstr(p->out, "show DEV"));
	run(p, ctl_bin, NULL);
	CHECK(p->status == 2 && strstr(p->err, "no command"));
	run(p, ctl_bin, "frobnicate", NULL);
	CHECK(p->status == 2 && strstr(p->err, "unknown command 'frobnicate'"));
	run(p, ctl_bin, "show", NULL);
	CHECK(p->status == 2 && strstr(p->err, "needs a device id"));
	run(p, ctl_bin, "show", "abc", NULL);
	CHECK(p->status == 2 && strstr(p->err, "not a device id"));
	run(p, ctl_bin, "list", "extra", NULL);
	CHECK(p->status == 2 && strstr(p->err, "unexpected argument"));
	run(p, ctl_bin, "--nope", "list", NULL);
	CHECK(p->status == 2);
	snprintf(bad, sizeof(bad), "/tmp/vpd-no-such-dir-%d/control.sock", (int)getpid());
	run(p, ctl_bin, "--control", bad, "list", NULL);
	CHECK(p->status == 1 && strstr(p->err, "is vhost-pcid running?"));
	free(p);
}

static void native_body(struct daemon *d)
{
	struct frontend f;
	struct prog *p = calloc(1, sizeof(*p));
	struct jv *doc;
	const struct jv *dev, *r0, *live, *reg;
	uint64_t id;
	char cmd[160], idstr[24];

	REQUIRE(p);
	REQUIRE(fe_init(&f, UUID0));
	fe_post_buffers(&f);
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	snprintf(idstr, sizeof(idstr), "%" PRIu64, id);

	/* The device as "list" sees it. */
	doc = ask(d, "list");
	dev = find_dev(doc, id);
	CHECK(dev != NULL);
	if (dev) {
		CHECK(str_is(dev, "server", "net0"));
		CHECK(str_is(dev, "dialect", "vhost-pci"));
		CHECK(str_is(dev, "state", "ready"));
		CHECK(str_is(dev, "uuid", UUID0));
		CHECK(str_is(dev, "type_name", "net"));
		CHECK(u64_is(dev, "peer_pid", (uint64_t)getpid()));
		CHECK(u64_is(dev, "peer_uid", getuid()));
		CHECK(u64_is(dev, "generation", 1));
		CHECK(!jv_get(nth(jv_get(dev, "rings"), 0), "live"));  /* only "show" looks */
	}
	jv_free(doc);

	/* And in full. */
	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(d, cmd);
	dev = jv_get(doc, "device");
	REQUIRE(dev);
	CHECK(u64_is(dev, "id", id));
	CHECK(str_is(dev, "state", "ready"));
	CHECK(str_is(dev, "uuid", UUID0));
	CHECK(str_is(dev, "mac", "52:54:00:12:34:56"));
	CHECK(hex_is(dev, "driver_features", F_VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX));
	CHECK(hex_is(dev, "device_features", f.info.device_features));
	CHECK(hex_is(dev, "protocol_features", 0));
	CHECK(has_str(jv_get(dev, "driver_feature_names"), "VERSION_1"));
	CHECK(has_str(jv_get(dev, "driver_feature_names"), "MRG_RXBUF"));
	CHECK(has_str(jv_get(dev, "driver_feature_names"), "EVENT_IDX"));
	CHECK(!has_str(jv_get(dev, "driver_feature_names"), "CSUM"));
	CHECK(has_str(jv_get(dev, "device_feature_names"), "CSUM"));
	CHECK(has_str(jv_get(dev, "device_feature_names"), "INDIRECT_DESC"));
	CHECK(jv_get(dev, "regions") && jv_get(dev, "regions")->n == 1);
	reg = nth(jv_get(dev, "regions"), 0);
	CHECK(hex_is(reg, "gpa", MEM_GPA));
	CHECK(hex_is(reg, "size", MEM_SIZE));
	CHECK(hex_is(reg, "uaddr", (uint64_t)(uintptr_t)f.mem));
	CHECK(hex_is(reg, "offset", 0));
	CHECK(str_is(reg, "prot", "rw"));
	CHECK(bool_is(reg, "fd", true));
	CHECK(jv_get(dev, "rings") && jv_get(dev, "rings")->n == 2);
	for (unsigned i = 0; i < 2; i++) {
		const struct jv *r = nth(jv_get(dev, "rings"), i);

		CHECK(u64_is(r, "index", i));
		CHECK(u64_is(r, "num", RING_NUM));
		CHECK(hex_is(r, "desc", MEM_GPA + ring_off(i)));
		CHECK(hex_is(r, "avail", MEM_GPA + ring_off(i) + 0x1000));
		CHECK(hex_is(r, "used", MEM_GPA + ring_off(i) + 0x2000));
		CHECK(u64_is(r, "last_avail_idx", 0));
		CHECK(bool_is(r, "enabled", true) && bool_is(r, "started", true));
		CHECK(bool_is(r, "kick_fd", true) && bool_is(r, "call_fd", true));
	}
	/* The live look at ring 0: what fe_post_buffers() published. */
	r0 = nth(jv_get(dev, "rings"), 0);
	live = jv_get(r0, "live");
	CHECK(u64_is(live, "avail_idx", 3));
	CHECK(u64_is(live, "used_idx", 0));
	CHECK(u64_is(live, "in_flight", 3));
	CHECK(jv_get(live, "descriptors") && jv_get(live, "descriptors")->n == 3);
	{
		const struct jv *d0 = nth(jv_get(live, "descriptors"), 0);   /* newest */
		const struct jv *d1 = nth(jv_get(live, "descriptors"), 1);

		CHECK(u64_is(d0, "head", 2) && hex_is(d0, "addr", BAD_ADDR));
		CHECK(bool_is(d0, "in_memory", false));
		CHECK(u64_is(d1, "head", 1) && hex_is(d1, "addr", MEM_GPA + BUF_OFF + 0x800));
		CHECK(u64_is(d1, "len", 1500) && str_is(d1, "flag_names", "WRITE"));
		CHECK(bool_is(d1, "in_memory", true));
	}
	CHECK(u64_is(jv_get(nth(jv_get(dev, "rings"), 1), "live"), "avail_idx", 0));
	jv_free(doc);

	/* vhost-pci-ctl: --json passes the same document through... */
	run(p, ctl_bin, "--control", d->ctl, "--json", "show", idstr, NULL);
	CHECK_EQ(p->status, 0);
	if (getenv("VPD_TEST_VERBOSE"))
		fprintf(stderr, "%s", p->out);
	{
		struct jv *j = NULL;
		char err[128];

		CHECK(jv_parse(p->out, strlen(p->out), &j, err, sizeof(err)) == 0);
		CHECK(str_is(jv_get(j, "device"), "uuid", UUID0));
		jv_free(j);
	}
	run(p, ctl_bin, "--control", d->ctl, "--json", "list", NULL);
	CHECK(p->status == 0 && strstr(p->out, "\"devices\"") && strstr(p->out, UUID0));
	/* ...and renders it for humans. */
	run(p, ctl_bin, "--control", d->ctl, "list", NULL);
	CHECK_EQ(p->status, 0);
	if (getenv("VPD_TEST_VERBOSE"))
		fprintf(stderr, "%s", p->out);
	CHECK(strstr(p->out, "ID") && strstr(p->out, "SERVER") && strstr(p->out, "FEATURES"));
	CHECK(strstr(p->out, UUID0) && strstr(p->out, "vhost-pci") && strstr(p->out, "ready"));
	CHECK(strstr(p->out, "VERSION_1") && strstr(p->out, "net0"));
	run(p, ctl_bin, "--control", d->ctl, "show", idstr, NULL);
	CHECK_EQ(p->status, 0);
	if (getenv("VPD_TEST_VERBOSE"))
		fprintf(stderr, "%s", p->out);
	CHECK(strstr(p->out, "uuid:       " UUID0));
	CHECK(strstr(p->out, "state:      ready (generation 1)"));
	CHECK(strstr(p->out, "gpa 0x40000000 size 0x100000 (1 MiB)"));
	CHECK(strstr(p->out, "live: avail idx 3 (flags 0), used idx 0"));
	CHECK(strstr(p->out, "(OUTSIDE the frontend's memory)"));
	CHECK(strstr(p->out, "mac:        52:54:00:12:34:56"));
	run(p, ctl_bin, "--control", d->ctl, "servers", NULL);
	CHECK(p->status == 0 && strstr(p->out, "net0") && strstr(p->out, d->net1));
	run(p, ctl_bin, "--control", d->ctl, "show", "999999", NULL);
	CHECK(p->status == 1 && strstr(p->err, "no device 999999"));
	run(p, ctl_bin, "--control", d->ctl, "--json", "show", "999999", NULL);
	CHECK(p->status == 1 && strstr(p->out, "\"error\""));

	/* The daemon logged the device's life with its ids. */
	snprintf(cmd, sizeof(cmd), "device %" PRIu64 " ready: server net0, uuid " UUID0
		 ", dialect vhost-pci", id);
	CHECK(log_has(d, cmd));

	/* STOP: the device stays, stopped. */
	CHECK(vp_client_stop(f.client, VP_PCI_STOP_RESET) == 0);
	CHECK(wait_state(d, id, "stopped"));
	snprintf(cmd, sizeof(cmd), "device %" PRIu64 " stopped:", id);
	CHECK(log_has(d, cmd));

	/* Gone with its connection. */
	vp_client_free(f.client);
	f.client = NULL;
	CHECK(wait_state(d, id, "gone"));
	snprintf(cmd, sizeof(cmd), "device %" PRIu64 " removed:", id);
	CHECK(log_has(d, cmd));
	fe_free(&f);
	free(p);
}

TEST(native_frontend_listed_stopped_removed)
{
	WITH_DAEMON(native_body);
}

static void vhost_user_body(struct daemon *d)
{
	struct frontend f;
	struct vu_child k = { 0 };
	struct jv *doc;
	const struct jv *dev;
	uint64_t id;
	char cmd[64];

	REQUIRE(fe_init(&f, UUID0));
	REQUIRE(vu_start(&k, &f, d->net1));
	id = newest_dev(d, "vhost-user");
	CHECK(id != 0);
	CHECK(wait_state(d, id, "ready"));
	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(d, cmd);
	dev = jv_get(doc, "device");
	CHECK(dev != NULL);
	if (dev) {
		CHECK(str_is(dev, "dialect", "vhost-user"));
		CHECK(str_is(dev, "server", "net1"));
		CHECK(str_is(dev, "uuid", UUID1));       /* the server's uuid= */
		CHECK(u64_is(dev, "peer_pid", (uint64_t)k.pid));
		CHECK(has_str(jv_get(dev, "driver_feature_names"), "VERSION_1"));
		CHECK(has_str(jv_get(dev, "driver_feature_names"), "PROTOCOL_FEATURES"));
		CHECK(has_str(jv_get(dev, "protocol_feature_names"), "REPLY_ACK"));
		CHECK(hex_is(nth(jv_get(dev, "regions"), 0), "gpa", MEM_GPA));
		CHECK(hex_is(nth(jv_get(dev, "rings"), 1), "desc", MEM_GPA + ring_off(1)));
		CHECK(hex_is(nth(jv_get(dev, "rings"), 1), "desc_uva",
			     (uint64_t)(uintptr_t)f.mem + ring_off(1)));
		CHECK(bool_is(nth(jv_get(dev, "rings"), 0), "kick_fd", true));
	}
	jv_free(doc);
	vu_stop(&k);
	CHECK(wait_state(d, id, "gone"));
	fe_free(&f);
}

TEST(vhost_user_frontend_appears)
{
	WITH_DAEMON(vhost_user_body);
}

static void garbage_body(struct daemon *d)
{
	static const uint8_t hdr_only[5] = { 1, 0, 0, 0, 1 };
	struct frontend a, b;
	struct vu_child k = { 0 };
	uint64_t ida, idb, junk[32];
	int g, slow;

	REQUIRE(fe_init(&a, UUID0) && fe_init(&b, UUID0));
	ida = fe_connect(&a, d->net0);
	REQUIRE(ida);
	REQUIRE(vu_start(&k, &b, d->net1));
	idb = newest_dev(d, "vhost-user");
	REQUIRE(idb);

	/* A frontend that stalls mid-header must not hold anyone up... */
	slow = unix_connect(d->net0);
	CHECK(slow >= 0);
	CHECK(send(slow, hdr_only, sizeof(hdr_only), MSG_NOSIGNAL) == sizeof(hdr_only));

	/* ...nor one that sends garbage: it alone is dropped. */
	g = unix_connect(d->net1);
	REQUIRE(g >= 0);
	for (unsigned i = 0; i < 32; i++)
		junk[i] = 0xdeadbeefcafef00dull * (i + 1);
	CHECK(send(g, junk, sizeof(junk), MSG_NOSIGNAL) == sizeof(junk));
	CHECK(closed_by_peer(g, WAIT_MS));
	close(g);

	CHECK(daemon_alive(d));
	CHECK(wait_state(d, ida, "ready"));
	CHECK(wait_state(d, idb, "ready"));
	/* The native device still talks: STOP is processed. */
	CHECK(vp_client_stop(a.client, VP_PCI_STOP_RESET) == 0);
	CHECK(wait_state(d, ida, "stopped"));
	CHECK(wait_state(d, idb, "ready"));
	CHECK(log_has(d, "dropping frontend"));

	close(slow);
	vu_stop(&k);
	fe_free(&a);
	fe_free(&b);
	CHECK(wait_state(d, idb, "gone"));
	CHECK(wait_state(d, ida, "gone"));
}

TEST(garbage_frontend_dropped_others_keep_working)
{
	WITH_DAEMON(garbage_body);
}

static void drop_body(struct daemon *d)
{
	struct frontend f;
	struct prog *p = calloc(1, sizeof(*p));
	struct jv *doc;
	char idstr[24], cmd[64];
	uint64_t id;

	REQUIRE(p);
	REQUIRE(fe_init(&f, UUID0));
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	snprintf(idstr, sizeof(idstr), "%" PRIu64, id);
	run(p, ctl_bin, "--control", d->ctl, "drop", idstr, NULL);
	CHECK_EQ(p->status, 0);
	snprintf(cmd, sizeof(cmd), "dropped device %" PRIu64, id);
	CHECK(strstr(p->out, cmd) != NULL);
	/* It is gone at once, and the frontend was told why. */
	CHECK(count_devs(d) == 0);
	CHECK(fe_wait_failed(&f));
	CHECK(strstr(vp_client_error(f.client), "dropped by vhost-pci-ctl") != NULL);
	run(p, ctl_bin, "--control", d->ctl, "drop", idstr, NULL);
	CHECK(p->status == 1 && strstr(p->err, "no device"));

	/* Over the raw protocol too. */
	fe_free(&f);
	REQUIRE(fe_init(&f, UUID0));
	id = fe_connect(&f, d->net1);
	REQUIRE(id);
	snprintf(cmd, sizeof(cmd), "drop %" PRIu64, id);
	doc = ask(d, cmd);
	CHECK(u64_is(doc, "dropped", id));
	jv_free(doc);
	CHECK(count_devs(d) == 0);
	fe_free(&f);
	free(p);
}

TEST(drop_device)
{
	WITH_DAEMON(drop_body);
}

static bool error_has(struct jv *doc, const char *part)
{
	const char *e = jv_get_str(doc, "error");
	bool ok = e && strstr(e, part);

	if (!ok)
		fprintf(stderr, "  error '%s', wanted '%s'\n", e ? e : "(none)", part);
	jv_free(doc);
	return ok;
}

static void control_body(struct daemon *d)
{
	char line[400];
	int silent[VPD_CTL_MAX_CLIENTS], lone;
	int64_t t0;
	struct jv *doc;

	/* Errors are JSON documents naming the problem. */
	CHECK(error_has(ask(d, "frobnicate"), "unknown command 'frobnicate'"));
	CHECK(error_has(ask(d, ""), "empty command"));
	CHECK(error_has(ask(d, "show"), "usage: show ID"));
	CHECK(error_has(ask(d, "show x1"), "invalid device id 'x1'"));
	CHECK(error_has(ask(d, "show 123456789012345678901234"), "invalid device id"));
	CHECK(error_has(ask(d, "drop 77"), "no device 77"));
	CHECK(error_has(ask(d, "list all"), "takes no argument"));
	CHECK(error_has(ask(d, "a b c d e"), "too many arguments"));
	/* Bytes that are not UTF-8 are echoed back as valid JSON. */
	CHECK(error_has(ask(d, "\xff\xfe\x01"), "unknown command '\xef\xbf\xbd\xef\xbf\xbd\x01'"));
	CHECK(error_has(ask_raw(d->ctl, "li\0st\n", 6), "NUL byte"));
	/* A line of exactly 256 bytes is fine; 257 is not. */
	memset(line, ' ', sizeof(line));
	memcpy(line, "list", 4);
	line[256] = '\n';
	doc = ask_raw(d->ctl, line, 257);
	CHECK(jv_get(doc, "devices") != NULL);
	jv_free(doc);
	line[256] = ' ';
	line[257] = '\n';
	CHECK(error_has(ask_raw(d->ctl, line, 258), "longer than 256 bytes"));
	memset(line, 'a', sizeof(line));
	CHECK(error_has(ask_raw(d->ctl, line, sizeof(line)), "longer than 256 bytes"));
	/* No newline, but a shut-down write side, ends the line too. */
	{
		int fd = unix_connect(d->ctl);

		CHECK(fd >= 0);
		CHECK(send(fd, "servers", 7, MSG_NOSIGNAL) == 7);
		shutdown(fd, SHUT_WR);
		CHECK(closed_by_peer(fd, WAIT_MS));
		close(fd);
	}
	/* CRLF is fine. */
	doc = ask_raw(d->ctl, "servers\r\n", 9);
	CHECK(jv_get(doc, "servers") && jv_get(doc, "servers")->n == 2);
	jv_free(doc);

	/* Clients that send nothing: served ones are not held up, extra ones
	 * are turned away, and the silent ones are dropped after the timeout. */
	t0 = now_ms();
	for (int i = 0; i < VPD_CTL_MAX_CLIENTS; i++)
		silent[i] = unix_connect(d->ctl);
	sleep_ms(100);
	lone = unix_connect(d->ctl);
	CHECK(lone >= 0);
	if (lone >= 0) {
		/* Turned away at once, with a reason. */
		CHECK(error_has(read_doc(lone), "too many control clients"));
		close(lone);
	}
	for (int i = 1; i < VPD_CTL_MAX_CLIENTS; i++)
		close(silent[i]);
	/* Closed ones free their slots at once; the daemon answers quickly. */
	sleep_ms(100);
	doc = ask(d, "list");
	CHECK(jv_get(doc, "devices") != NULL);
	jv_free(doc);
	CHECK(now_ms() - t0 < 3000);
	CHECK(closed_by_peer(silent[0], 10000));
	CHECK(now_ms() - t0 >= VPD_CTL_TIMEOUT_MS - 500);  /* not before its time */
	close(silent[0]);
	CHECK(log_has(d, "sent no command"));
}

TEST(control_socket_robustness)
{
	WITH_DAEMON(control_body);
}

TEST(sigterm_clean_exit_removes_sockets)
{
	struct daemon d;
	struct frontend f;
	uint64_t id;
	int st;

	REQUIRE(fe_init(&f, UUID0));
	if (!daemon_start(&d)) {
		CHECK(!"daemon started");
		goto out;
	}
	CHECK(is_socket(d.net0) && is_socket(d.net1) && is_socket(d.ctl));
	id = fe_connect(&f, d.net0);
	CHECK(id != 0);
	/* SIGHUP re-reads the (unchanged) servers: the device stays. */
	kill(d.pid, SIGHUP);
	sleep_ms(100);
	CHECK(daemon_alive(&d));
	CHECK(count_devs(&d) == 1);
	CHECK(log_has(&d, "reloaded: 2 servers kept, 0 started, 0 stopped, 0 failed"));

	st = daemon_stop(&d);
	CHECK(exited_with(st, 0));
	CHECK(gone(d.net0) && gone(d.net1) && gone(d.ctl));
	/* The native frontend was told, with a reason. */
	if (f.client) {
		CHECK(fe_wait_failed(&f));
		CHECK(strstr(vp_client_error(f.client), "shutting down") != NULL);
	}
	CHECK(log_has(&d, "SIGTERM"));
	CHECK(log_has(&d, "removed:"));
	CHECK(log_has(&d, "stopped"));
out:
	fe_free(&f);
	daemon_cleanup(&d);
}

TEST(sigint_clean_exit)
{
	struct daemon d;

	if (daemon_start(&d)) {
		kill(d.pid, SIGINT);
		CHECK(exited_with(wait_exit(d.pid, WAIT_MS), 0));
		d.pid = 0;
		CHECK(gone(d.net0) && gone(d.ctl));
	} else {
		CHECK(!"daemon started");
	}
	daemon_cleanup(&d);
}

TEST(stale_sockets_replaced_after_sigkill)
{
	struct daemon d;
	struct frontend f;

	REQUIRE(fe_init(&f, UUID0));
	if (!daemon_start(&d)) {
		CHECK(!"daemon started");
		goto out;
	}
	kill(d.pid, SIGKILL);
	CHECK(wait_exit(d.pid, WAIT_MS) >= 0);
	d.pid = 0;
	/* Left behind, nobody listening. */
	CHECK(is_socket(d.net0) && is_socket(d.net1) && is_socket(d.ctl));
	CHECK(daemon_spawn(&d));
	CHECK(log_has(&d, "replacing stale control socket"));
	CHECK(fe_connect(&f, d.net0) != 0);
	CHECK(count_devs(&d) == 1);
	vp_client_free(f.client);
	f.client = NULL;
	CHECK(exited_with(daemon_stop(&d), 0));
out:
	fe_free(&f);
	daemon_cleanup(&d);
}

TEST(regular_file_at_socket_path_refused)
{
	struct daemon d;
	struct stat st;
	char s0[200];
	char *args[] = { "--server", s0, "--control", d.ctl, NULL };
	int fd;

	REQUIRE(daemon_init(&d));
	snprintf(s0, sizeof(s0), "path=%s,id=net0", d.net0);
	fd = open(d.net0, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && write(fd, "precious", 8) == 8);
	close(fd);
	CHECK(!daemon_spawn_argv(&d, args));
	if (d.pid > 0) {
		CHECK(exited_with(wait_exit(d.pid, WAIT_MS), 1));
		d.pid = 0;
	}
	CHECK(log_has(&d, "net0: cannot listen on"));
	CHECK(log_has(&d, "is not a socket"));
	/* Untouched, and nothing left behind. */
	CHECK(lstat(d.net0, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 8);
	CHECK(gone(d.ctl));
	daemon_cleanup(&d);
}

TEST(second_daemon_refused)
{
	struct daemon d, d2;
	char s0[200];
	char *args[] = { "--server", s0, "--control", d.ctl, NULL };

	if (!daemon_start(&d)) {
		CHECK(!"daemon started");
		daemon_cleanup(&d);
		return;
	}
	/* Same control socket, another server path. */
	REQUIRE(daemon_init(&d2));
	snprintf(s0, sizeof(s0), "path=%s", d2.net0);
	CHECK(!daemon_spawn_argv(&d2, args));
	if (d2.pid > 0) {
		CHECK(exited_with(wait_exit(d2.pid, WAIT_MS), 1));
		d2.pid = 0;
	}
	CHECK(log_has(&d2, "already running"));
	CHECK(gone(d2.net0));
	/* The first one is unharmed. */
	CHECK(is_socket(d.ctl) && count_devs(&d) == 0);
	CHECK(exited_with(daemon_stop(&d), 0));
	daemon_cleanup(&d2);
	daemon_cleanup(&d);
}

TEST(same_socket_as_live_server_refused)
{
	struct daemon d, d2;
	char s0[200];
	char *args[] = { "--server", s0, "--control", d2.ctl, NULL };

	if (!daemon_start(&d)) {
		CHECK(!"daemon started");
		daemon_cleanup(&d);
		return;
	}
	REQUIRE(daemon_init(&d2));
	snprintf(s0, sizeof(s0), "path=%s", d.net0);
	CHECK(!daemon_spawn_argv(&d2, args));
	if (d2.pid > 0) {
		CHECK(exited_with(wait_exit(d2.pid, WAIT_MS), 1));
		d2.pid = 0;
	}
	CHECK(log_has(&d2, "another server is listening there"));
	CHECK(gone(d2.ctl));
	CHECK(is_socket(d.net0));
	CHECK(exited_with(daemon_stop(&d), 0));
	daemon_cleanup(&d2);
	daemon_cleanup(&d);
}

TEST(config_file_servers)
{
	struct daemon d;
	struct prog *p = calloc(1, sizeof(*p));
	char *args[] = { "--config", d.conf, "--control", d.ctl, NULL };
	char text[600];
	struct jv *doc;
	const struct jv *s;
	FILE *fp;

	REQUIRE(p);
	REQUIRE(daemon_init(&d));
	fp = fopen(d.conf, "w");
	REQUIRE(fp);
	fprintf(fp, "# two servers\n\nserver path=%s,id=alpha,connections=4,mode=0660\n"
		"   # indented comment\nserver %s\n", d.net0, d.net1);
	fclose(fp);
	CHECK(daemon_spawn_argv(&d, args));
	doc = ask(&d, "servers");
	s = jv_get(doc, "servers");
	CHECK(s && s->n == 2);
	CHECK(str_is(nth(s, 0), "id", "alpha") && u64_is(nth(s, 0), "max", 4));
	CHECK(str_is(nth(s, 0), "mode", "0660"));
	CHECK(str_is(nth(s, 1), "id", "net1.sock") && u64_is(nth(s, 1), "max", 32));
	CHECK(str_is(nth(s, 1), "path", d.net1));
	jv_free(doc);
	{
		struct stat st;

		CHECK(lstat(d.net0, &st) == 0 && (st.st_mode & 0777) == 0660);
	}
	CHECK(exited_with(daemon_stop(&d), 0));

	/* A bad line is named by file and line number; nothing starts. */
	fp = fopen(d.conf, "w");
	REQUIRE(fp);
	fprintf(fp, "server path=%s\n\n# x\nserver path=%s,colour=blue\n", d.net0, d.net1);
	fclose(fp);
	run(p, pcid_bin, "--config", d.conf, "--control", d.ctl, NULL);
	snprintf(text, sizeof(text), "%s:4: unknown key 'colour'", d.conf);
	CHECK(p->status == 2 && strstr(p->err, text));
	CHECK(gone(d.net0) && gone(d.ctl));
	free(p);
	daemon_cleanup(&d);
}

TEST(uid_restricts_frontends_and_log_level_filters)
{
	struct daemon d;
	struct frontend f;
	struct stat st;
	char s0[200];
	char *args[] = { "--server", s0, "--control", d.ctl, "--log-level", "warn", NULL };
	int e;

	if (geteuid() != 0) {
		/* Giving the socket to another user needs root. */
		printf("# skipped: not root\n");
		return;
	}
	REQUIRE(fe_init(&f, UUID0));
	REQUIRE(daemon_init(&d));
	snprintf(s0, sizeof(s0), "path=%s,uid=54321,mode=0600", d.net0);
	if (!daemon_spawn_argv(&d, args)) {
		CHECK(!"daemon started");
		goto out;
	}
	CHECK(lstat(d.net0, &st) == 0 && st.st_uid == 54321 && (st.st_mode & 0777) == 0600);
	/* We are root, not uid 54321: refused at once (HELLO may even find the
	 * socket closed already). */
	e = vp_client_connect(&f.client, d.net0, &f.info);
	CHECK(e == 0 || e == -EPIPE || e == -ECONNRESET);
	if (e == 0)
		CHECK(vp_client_wait(f.client, WAIT_MS) < 0);
	CHECK(count_devs(&d) == 0);
	CHECK(log_has(&d, "is not the allowed uid 54321"));
	CHECK(!log_has(&d, " info: "));   /* --log-level warn */
	CHECK(exited_with(daemon_stop(&d), 0));
out:
	fe_free(&f);
	daemon_cleanup(&d);
}

TEST(handshake_timeout_frees_slots)
{
	static const uint8_t get_features[12] = { 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t set_owner[12] = { 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	struct daemon d;
	struct frontend f;
	char s0[200], s1[200];
	char *args[] = { "--server", s0, "--server", s1, "--control", d.ctl,
			 "--handshake-timeout", "1", NULL };
	int idle[8], vu, asker, half;
	uint64_t vu_id;
	int64_t t0;
	char buf[64];

	REQUIRE(fe_init(&f, UUID0));
	REQUIRE(daemon_init(&d));
	snprintf(s0, sizeof(s0), "path=%s,id=net0", d.net0);
	snprintf(s1, sizeof(s1), "path=%s,id=net1,connections=8", d.net1);
	if (!daemon_spawn_argv(&d, args)) {
		CHECK(!"daemon started");
		goto out;
	}
	/* Every slot of net1 taken by connectors that say nothing... */
	for (int i = 0; i < 8; i++)
		idle[i] = unix_connect(d.net1);
	sleep_ms(100);
	CHECK(count_devs(&d) == 8);
	/* ...a stock vhost-user frontend through QEMU's init (up to SET_OWNER:
	 * QEMU then waits for its guest's driver, for as long as it takes), one
	 * that only asks for features and then says nothing (it held a slot for
	 * ever), and one stuck in a header. */
	vu = unix_connect(d.net0);
	CHECK(vu >= 0 && send(vu, get_features, 12, MSG_NOSIGNAL) == 12);
	CHECK(send(vu, set_owner, 12, MSG_NOSIGNAL) == 12);
	asker = unix_connect(d.net0);
	CHECK(asker >= 0 && send(asker, get_features, 12, MSG_NOSIGNAL) == 12);
	half = unix_connect(d.net0);
	CHECK(half >= 0 && send(half, get_features, 5, MSG_NOSIGNAL) == 5);
	t0 = now_ms();
	for (int i = 0; i < 8; i++)
		CHECK(closed_by_peer(idle[i], 3000));
	CHECK(closed_by_peer(half, 3000));
	CHECK(closed_by_peer(asker, 3000));
	CHECK(now_ms() - t0 >= 500);
	/* The one through QEMU's init got its answer and stays. */
	CHECK(recv(vu, buf, sizeof(buf), MSG_DONTWAIT) == 20);
	vu_id = newest_dev(&d, "vhost-user");
	CHECK(vu_id != 0);
	sleep_ms(1500);
	CHECK(wait_state(&d, vu_id, "connected"));
	CHECK(count_devs(&d) == 1);
	CHECK(log_has(&d, "handshake timed out: first messages not within 1000 ms"));
	/* The slots are free again. */
	CHECK(fe_connect(&f, d.net1) != 0);
	for (int i = 0; i < 8; i++)
		if (idle[i] >= 0)
			close(idle[i]);
	close(half);
	close(asker);
	close(vu);
	CHECK(exited_with(daemon_stop(&d), 0));
out:
	fe_free(&f);
	daemon_cleanup(&d);
}

static void leak_body(struct daemon *d)
{
	int before = daemon_fds(d), after = -1;
	struct frontend f, g;
	struct vu_child k = { 0 };
	int64_t deadline;

	REQUIRE(before > 0);
	REQUIRE(fe_init(&f, UUID0) && fe_init(&g, UUID0));
	for (int round = 0; round < 3; round++) {
		int junk = unix_connect(d->net0);
		struct jv *doc;

		CHECK(fe_connect(&f, d->net0) != 0);
		CHECK(vu_start(&k, &g, d->net1));
		doc = ask(d, "list");
		jv_free(doc);
		doc = ask(d, "show 1");
		jv_free(doc);
		if (junk >= 0) {
			CHECK(send(junk, "\x01\x00\x00\x00\x01\x00\x00\x00\xff\xff\x00\x00", 12,
				   MSG_NOSIGNAL) == 12);
			CHECK(closed_by_peer(junk, WAIT_MS));
			close(junk);
		}
		vp_client_free(f.client);
		f.client = NULL;
		vu_stop(&k);
		deadline = now_ms() + WAIT_MS;
		while (count_devs(d) != 0 && now_ms() < deadline)
			sleep_ms(10);
		CHECK(count_devs(d) == 0);
	}
	/* Control connections may take a moment to be closed. */
	deadline = now_ms() + WAIT_MS;
	while ((after = daemon_fds(d)) != before && now_ms() < deadline)
		sleep_ms(10);
	if (after != before)
		fprintf(stderr, "  daemon fds: %d before, %d after\n", before, after);
	CHECK_EQ(after, before);
	fe_free(&f);
	fe_free(&g);
}

TEST(no_fd_leaks_in_daemon)
{
	WITH_DAEMON(leak_body);
}

static void sigbus_body(struct daemon *d)
{
	struct frontend f;
	struct jv *doc;
	char cmd[64];
	uint64_t id;

	REQUIRE(fe_init_sealed(&f, UUID0, 0));
	fe_post_buffers(&f);
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	/* A hostile frontend shrinks its RAM under the daemon's mapping. */
	munmap(f.mem, MEM_SIZE);
	f.mem = NULL;
	CHECK(ftruncate(f.memfd, 0) == 0);
	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(d, cmd);
	CHECK(doc != NULL);
	{
		const struct jv *ring0 = nth(jv_get(jv_get(doc, "device"), "rings"), 0);
		const struct jv *live = jv_get(ring0, "live");
		const char *e = jv_get_str(live, "error");

		CHECK(e && strstr(e, "no longer accessible"));
	}
	jv_free(doc);
	CHECK(daemon_alive(d));
	/* And it keeps serving. */
	doc = ask(d, cmd);
	CHECK(doc != NULL);
	jv_free(doc);
	fe_free(&f);
	CHECK(wait_state(d, id, "gone"));
}

TEST(shrunk_frontend_memory_does_not_crash_show)
{
	struct daemon d_;
	char s0[240];
	char *args[] = { "--server", s0, "--control", d_.ctl, "--log-level", "debug", NULL };

	REQUIRE(daemon_init(&d_));
	/* Only a server told to accept shrinkable memory gets that far. */
	snprintf(s0, sizeof(s0), "path=%s,id=net0,allow-unsealed=on", d_.net0);
	REQUIRE(daemon_spawn_argv(&d_, args));
	sigbus_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* By default such memory is refused, and the frontend is told why. */
static void unsealed_body(struct daemon *d)
{
	static struct prog p;
	const struct jv *srv;
	const char *last;
	struct frontend f;
	struct jv *doc;
	int fds0 = daemon_fds(d);

	REQUIRE(fe_init_sealed(&f, UUID0, 0));
	CHECK(fe_connect(&f, d->net0) == 0);
	CHECK(strstr(vp_client_error(f.client), "can shrink under the backend") != NULL);
	CHECK(log_has(d, "unsealed memfd"));
	/* Refused by the library, counted and shown by the daemon with the reason. */
	doc = ask(d, "servers");
	srv = nth(jv_get(doc, "servers"), 0);
	last = jv_get_str(srv, "last_refusal");
	CHECK(u64_is(srv, "refused", 1));
	CHECK(last && strstr(last, "net0#") && strstr(last, "can shrink under the backend"));
	jv_free(doc);
	/* And for humans: the count, and the reason on a line of its own. */
	run(&p, ctl_bin, "--control", d->ctl, "servers", NULL);
	CHECK(p.status == 0 && strstr(p.out, "REFUSED") &&
	      strstr(p.out, "net0: last refusal: net0#") &&
	      strstr(p.out, "can shrink under the backend"));
	fe_free(&f);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), fds0);
}

TEST(unsealed_frontend_memory_refused)
{
	WITH_DAEMON(unsealed_body);
}

/* ------------------------------------------------------------------------ */
/* backend=PATH: READY devices are announced to a backend VM's own server */

static struct {
	unsigned n[5];                 /* events seen, by kind */
	const struct vp_device *dev;   /* the backend's view of the device */
} bk;

static void bk_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
		     void *opaque)
{
	(void)srv;
	(void)opaque;
	if ((unsigned)ev < 5)
		bk.n[ev]++;
	if (ev == VP_EV_DEVICE_READY)
		bk.dev = dev;
	if (ev == VP_EV_DEVICE_REMOVED && dev == bk.dev)
		bk.dev = NULL;
}

/* Serve the backend (and the frontend, if any) until n events of kind ev. */
static bool bk_pump(struct vp_server *b, struct frontend *f, enum vp_event ev, unsigned n)
{
	int64_t deadline = now_ms() + WAIT_MS;

	while (bk.n[ev] < n && now_ms() < deadline) {
		struct pollfd p[2] = { { vp_server_fd(b), POLLIN, 0 },
				       { f && f->client ? vp_client_fd(f->client) : -1, POLLIN, 0 } };

		poll(p, 2, 20);
		vp_server_dispatch(b);
		if (f && f->client)
			vp_client_dispatch(f->client);
	}
	return bk.n[ev] >= n;
}

static bool relayed_eventfd(int from, int to)
{
	uint64_t v = 9;

	if (from < 0 || to < 0 || write(from, &v, 8) != 8)
		return false;
	v = 0;
	for (int i = 0; i < 100 && read(to, &v, 8) != 8; i++)
		sleep_ms(5);
	return v == 9;
}

static void relay_body(struct daemon *d)
{
	struct vp_server_config bc = { 0 };
	struct vp_server *b = NULL;
	struct frontend f;
	char bpath[160], spec[400];
	uint8_t want_uuid[16];
	uint64_t id;

	memset(&bk, 0, sizeof(bk));
	snprintf(bpath, sizeof(bpath), "%s/backend.sock", d->dir);
	bc.path = bpath;
	bc.on_event = bk_event;
	REQUIRE(vp_server_new(&b, &bc) == 0);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s", d->net0, bpath);
	char *args[] = { "--server", spec, "--control", d->ctl, "--log-level", "debug", NULL };

	REQUIRE(daemon_spawn_argv(d, args));
	REQUIRE(fe_init(&f, UUID0));
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	CHECK(bk_pump(b, &f, VP_EV_DEVICE_READY, 1));
	REQUIRE(bk.dev);

	/* The backend sees the frontend's device as the frontend described it. */
	vp_uuid_parse(UUID0, want_uuid);
	CHECK(!memcmp(bk.dev->uuid, want_uuid, 16));
	CHECK_EQ(bk.dev->dialect, VP_DIALECT_NATIVE);
	CHECK_EQ(bk.dev->nregions, 1);
	CHECK_EQ(bk.dev->regions[0].gpa, MEM_GPA);
	CHECK_EQ(bk.dev->regions[0].size, MEM_SIZE);
	CHECK_EQ(bk.dev->rings[1].desc, MEM_GPA + ring_off(1));
	CHECK_EQ(bk.dev->rings[0].used, MEM_GPA + ring_off(0) + 0x2000);
	CHECK_EQ(bk.dev->driver_features, f.info.driver_features);
	CHECK_EQ(bk.dev->config_len, 6);
	/* Same memory: what the frontend writes, the backend reads. */
	f.mem[0x8000] = 0x5a;
	const uint8_t *p = vp_mem_gpa_ptr(bk.dev->mem, MEM_GPA + 0x8000, 1, VP_MEM_READ);

	CHECK(p && *p == 0x5a);
	/* Fig. 4: frontend kick wakes the backend; backend writes frontend's call. */
	CHECK(relayed_eventfd(f.kick[1], bk.dev->rings[1].kick_fd));
	CHECK(relayed_eventfd(bk.dev->rings[0].call_fd, f.call[0]));

	/* Frontend reset: the backend lets go, then gets the device again. */
	CHECK_EQ(vp_client_stop(f.client, VP_PCI_STOP_RESET), 0);
	CHECK(bk_pump(b, &f, VP_EV_DEVICE_STOPPED, 1));
	CHECK(wait_state(d, id, "stopped"));
	CHECK_EQ(vp_client_restart(f.client, &f.info), 0);
	CHECK(bk_pump(b, &f, VP_EV_DEVICE_READY, 2));
	CHECK(bk.dev && bk.dev->generation == 2);

	/* Frontend gone: so is the backend's device. */
	fe_free(&f);
	CHECK(bk_pump(b, NULL, VP_EV_DEVICE_REMOVED, 1));
	CHECK(bk.dev == NULL);
	CHECK(wait_state(d, id, "gone"));
	vp_server_free(b);
}

TEST(backend_relay)
{
	struct daemon d_;

	REQUIRE(daemon_init(&d_));
	relay_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* No backend listening: the frontend's device still works, the daemon says why. */
static void relay_absent_body(struct daemon *d)
{
	struct frontend f;
	char spec[400];
	uint64_t id;

	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s/nobody.sock", d->net0, d->dir);
	char *args[] = { "--server", spec, "--control", d->ctl, NULL };

	REQUIRE(daemon_spawn_argv(d, args));
	REQUIRE(fe_init(&f, UUID0));
	id = fe_connect(&f, d->net0);
	CHECK(id != 0);
	CHECK(wait_state(d, id, "ready"));
	sleep_ms(50);
	CHECK(log_has(d, "not reachable"));
	fe_free(&f);
	CHECK(wait_state(d, id, "gone"));
}

TEST(backend_relay_absent_backend)
{
	struct daemon d_;

	REQUIRE(daemon_init(&d_));
	relay_absent_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* A vhost-user frontend replaces its call eventfd while running (CHANGED):
 * the backend gets the device again, resuming where the rings got to. */
/* What QEMU sends at DRIVER_OK (no PROTOCOL_FEATURES: rings start enabled),
 * resuming ring i from base[i]; extra_fd >= 0: a second RAM region of
 * MEM_SIZE above the first, in that fd (as a guest with two memory backends). */
static void vu_raw_start_feat(int fd, const struct frontend *f, const uint16_t base[2],
			      int extra_fd, uint64_t features)
{
	struct vp_msg m;

	vu_raw_send(fd, VP_VU_SET_FEATURES, 0, features, -1);
	vp_msg_init(&m, VP_VU_SET_MEM_TABLE, 0);
	m.p.mem.nregions = 1;
	m.p.mem.regions[0] = (struct vp_mem_region_wire){ MEM_GPA, MEM_SIZE,
		(uint64_t)(uintptr_t)f->mem, 0 };
	m.fds[0] = f->memfd;
	m.nfds = 1;
	if (extra_fd >= 0) {
		m.p.mem.nregions = 2;
		m.p.mem.regions[1] = (struct vp_mem_region_wire){ MEM_GPA + MEM_SIZE, MEM_SIZE,
			(uint64_t)(uintptr_t)f->mem + MEM_SIZE, 0 };
		m.fds[1] = extra_fd;
		m.nfds = 2;
	}
	vp_sock_send(fd, &m);
	for (uint32_t i = 0; i < 2; i++) {
		vu_raw_state(fd, VP_VU_SET_VRING_NUM, i, RING_NUM);
		vu_raw_state(fd, VP_VU_SET_VRING_BASE, i, base ? base[i] : 0);
		vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
		m.p.addr.index = i;
		m.p.addr.desc = (uint64_t)(uintptr_t)f->mem + ring_off(i);
		m.p.addr.avail = m.p.addr.desc + 0x1000;
		m.p.addr.used = m.p.addr.desc + 0x2000;
		vp_sock_send(fd, &m);
		vu_raw_send(fd, VP_VU_SET_VRING_KICK, 0, i, f->kick[i]);
		vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, i, f->call[i]);
	}
}

static void vu_raw_start_mem(int fd, const struct frontend *f, const uint16_t base[2],
			     int extra_fd)
{
	vu_raw_start_feat(fd, f, base, extra_fd, F_VERSION_1 | F_MRG_RXBUF);
}

static void vu_raw_start(int fd, const struct frontend *f, const uint16_t base[2])
{
	vu_raw_start_mem(fd, f, base, -1);
}

static void relay_changed_body(struct daemon *d)
{
	struct vp_server_config bc = { 0 };
	struct vp_server *b = NULL;
	struct frontend f;
	char bpath[160], spec[400];
	int fd, newcall;

	memset(&bk, 0, sizeof(bk));
	snprintf(bpath, sizeof(bpath), "%s/backend.sock", d->dir);
	bc.path = bpath;
	bc.on_event = bk_event;
	REQUIRE(vp_server_new(&b, &bc) == 0);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s", d->net0, bpath);
	char *args[] = { "--server", spec, "--control", d->ctl, "--log-level", "debug", NULL };

	REQUIRE(daemon_spawn_argv(d, args));
	REQUIRE(fe_init(&f, UUID0));
	fd = unix_connect(d->net0);
	REQUIRE(fd >= 0);
	vu_raw_start(fd, &f, NULL);
	/* QEMU replaces a call fd right after it starts the rings: still one
	 * announcement, one backend connection, nothing stopped. */
	int call2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, 0, call2);
	CHECK(bk_pump(b, NULL, VP_EV_DEVICE_READY, 1));
	bk_pump(b, NULL, VP_EV_DEVICE_STOPPED, 1);  /* must not come: times out */
	CHECK_EQ(bk.n[VP_EV_DEVICE_NEW], 1);
	CHECK_EQ(bk.n[VP_EV_DEVICE_READY], 1);
	CHECK_EQ(bk.n[VP_EV_DEVICE_STOPPED], 0);
	REQUIRE(bk.dev);
	CHECK(relayed_eventfd(bk.dev->rings[0].call_fd, call2));
	CHECK_EQ(bk.dev->rings[1].last_avail_idx, 0);
	CHECK_EQ(bk.dev->driver_features, F_VERSION_1 | F_MRG_RXBUF);

	/* The backend has completed 7 chains on ring 1; then the call fd changes. */
	uint16_t seven = 7;

	memcpy(f.mem + ring_off(1) + 0x2002, &seven, 2);
	newcall = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, 1, newcall);
	CHECK(bk_pump(b, NULL, VP_EV_DEVICE_READY, 2));
	CHECK_EQ(bk.n[VP_EV_DEVICE_STOPPED], 1);
	REQUIRE(bk.dev);
	CHECK_EQ(bk.dev->rings[1].last_avail_idx, 7);
	CHECK_EQ(bk.dev->rings[0].last_avail_idx, 0);
	CHECK(relayed_eventfd(bk.dev->rings[1].call_fd, newcall));

	CHECK_EQ(bk.n[VP_EV_DEVICE_NEW], 1);  /* re-announced on the same connection */
	close(fd);
	CHECK(bk_pump(b, NULL, VP_EV_DEVICE_REMOVED, 1));
	close(newcall);
	close(call2);
	fe_free(&f);
	vp_server_free(b);
}

TEST(backend_relay_changed_resumes)
{
	struct daemon d_;

	REQUIRE(daemon_init(&d_));
	relay_changed_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* ------------------------------------------------------------------------ */
/* relay policy: late and restarted backends, one connection, grace, refusals */

static void backend_of(const struct daemon *d, uint64_t id, char *st, size_t stlen,
		       char *why, size_t whylen)
{
	ctl_backend_of(d->ctl, id, st, stlen, why, whylen, WAIT_MS);
}

static bool wait_backend(const struct daemon *d, uint64_t id, const char *want)
{
	return ctl_wait_backend(d->ctl, id, want, WAIT_MS);
}

static struct vp_server *backend_new(const char *path, vp_event_fn fn)
{
	struct vp_server_config bc = { .path = path, .on_event = fn ? fn : bk_event };
	struct vp_server *b = NULL;

	return vp_server_new(&b, &bc) == 0 ? b : NULL;
}

/* Serve the backend and poll the frontend's connection for a while. */
static void bk_serve(struct vp_server *b, struct frontend *f, int ms)
{
	int64_t end = now_ms() + ms;

	while (now_ms() < end) {
		struct pollfd p[2] = { { b ? vp_server_fd(b) : -1, POLLIN, 0 },
				       { f && f->client ? vp_client_fd(f->client) : -1, POLLIN, 0 } };

		poll(p, 2, 10);
		if (b)
			vp_server_dispatch(b);
		if (f && f->client)
			vp_client_dispatch(f->client);
	}
}

/* A backend that starts after the device is READY, and one that restarts,
 * both get the device without anything done to the frontend. */
static void relay_late_body(struct daemon *d)
{
	struct vp_server *b;
	struct frontend f;
	char bpath[160], spec[400];
	uint64_t id;
	int fds0;

	memset(&bk, 0, sizeof(bk));
	snprintf(bpath, sizeof(bpath), "%s/backend.sock", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s,backend-grace=0", d->net0, bpath);
	char *args[] = { "--server", spec, "--control", d->ctl, NULL };

	REQUIRE(daemon_spawn_argv(d, args));
	fds0 = daemon_fds(d);
	REQUIRE(fe_init(&f, UUID0));
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	CHECK(wait_backend(d, id, "waiting"));
	/* Late: not there when the device became READY. */
	b = backend_new(bpath, NULL);
	REQUIRE(b);
	CHECK(bk_pump(b, &f, VP_EV_DEVICE_READY, 1));
	CHECK(wait_backend(d, id, "attached"));
	/* Restart: the backend process goes away and comes back. */
	vp_server_free(b);
	CHECK(wait_backend(d, id, "waiting"));
	b = backend_new(bpath, NULL);
	REQUIRE(b);
	CHECK(bk_pump(b, &f, VP_EV_DEVICE_READY, 2));
	CHECK(wait_backend(d, id, "attached"));
	CHECK_EQ(vp_client_state(f.client), VP_CLIENT_STARTED);  /* never disturbed */
	CHECK_EQ(bk.n[VP_EV_DEVICE_NEW], 2);                    /* one connection each */
	fe_free(&f);
	CHECK(bk_pump(b, NULL, VP_EV_DEVICE_REMOVED, 2));
	CHECK(wait_state(d, id, "gone"));
	vp_server_free(b);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), fds0);
}

TEST(backend_late_or_restarted_gets_ready_devices)
{
	struct daemon d_;

	REQUIRE(daemon_init(&d_));
	relay_late_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* Nobody drives the device: after backend-grace its frontend is dropped
 * with the reason (a QEMU guest sees its link go down), new frontends are
 * refused while the backend is away, and let in again once it is back. */
static void relay_grace_body(struct daemon *d)
{
	struct vp_server *b;
	struct frontend f, g, h;
	char bpath[160], spec[400];
	uint64_t id;
	int64_t t0;

	memset(&bk, 0, sizeof(bk));
	snprintf(bpath, sizeof(bpath), "%s/backend.sock", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s,backend-grace=1", d->net0, bpath);
	char *args[] = { "--server", spec, "--control", d->ctl, NULL };

	REQUIRE(daemon_spawn_argv(d, args));
	REQUIRE(fe_init(&f, UUID0));
	t0 = now_ms();
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	CHECK(fe_wait_failed(&f));
	CHECK(now_ms() - t0 >= 900);
	CHECK(strstr(vp_client_error(f.client), "no backend attached within 1 s") != NULL);
	CHECK(wait_state(d, id, "gone"));
	fe_free(&f);
	/* Refused at the door now, with the reason. */
	REQUIRE(fe_init(&g, UUID0));
	CHECK(fe_connect(&g, d->net0) == 0);
	CHECK(strstr(vp_client_error(g.client), "no backend drives") != NULL);
	fe_free(&g);
	CHECK(log_has(d, "refusing new frontends"));
	/* Back: admission reopens by itself and the next frontend is driven. */
	b = backend_new(bpath, NULL);
	REQUIRE(b);
	REQUIRE(fe_init(&h, UUID0));
	t0 = now_ms();
	id = 0;
	while (!id && now_ms() - t0 < WAIT_MS) {
		bk_serve(b, NULL, 100);
		id = fe_connect(&h, d->net0);
		if (!id)
			fe_free(&h), fe_init(&h, UUID0);
	}
	CHECK(id != 0);
	CHECK(bk_pump(b, &h, VP_EV_DEVICE_READY, 1));
	CHECK(wait_backend(d, id, "attached"));
	fe_free(&h);
	CHECK(bk_pump(b, NULL, VP_EV_DEVICE_REMOVED, 1));
	vp_server_free(b);
}

TEST(backend_missing_takes_link_down_then_resumes)
{
	struct daemon d_;

	REQUIRE(daemon_init(&d_));
	relay_grace_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* A backend that refuses says why; the daemon shows it and tries again. */
static struct vp_server *refuser;
static unsigned refusals;

static void refusing_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
			   void *opaque)
{
	(void)opaque;
	if (ev == VP_EV_DEVICE_READY) {
		refusals++;
		vp_server_drop(srv, dev->id, "test backend: no room for this device");
	}
}

static void relay_refused_body(struct daemon *d)
{
	struct frontend f;
	char bpath[160], spec[400], st[32], why[400];
	uint64_t id;
	int64_t t0;

	snprintf(bpath, sizeof(bpath), "%s/backend.sock", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s,backend-grace=0", d->net0, bpath);
	char *args[] = { "--server", spec, "--control", d->ctl, NULL };

	refusals = 0;
	refuser = backend_new(bpath, refusing_event);
	REQUIRE(refuser);
	REQUIRE(daemon_spawn_argv(d, args));
	REQUIRE(fe_init(&f, UUID0));
	id = fe_connect(&f, d->net0);
	REQUIRE(id);
	t0 = now_ms();
	why[0] = '\0';
	while (!strstr(why, "no room for this device") && now_ms() - t0 < WAIT_MS) {
		bk_serve(refuser, &f, 20);
		backend_of(d, id, st, sizeof(st), why, sizeof(why));
	}
	CHECK_STR(st, "waiting");
	CHECK(strstr(why, "refused: ") && strstr(why, "test backend: no room for this device"));
	/* Retried with backoff: more than once, far fewer than once per poll. */
	bk_serve(refuser, &f, 700);
	CHECK(refusals >= 2 && refusals <= 8);
	fe_free(&f);
	vp_server_free(refuser);
}

TEST(backend_refusal_shown_and_retried)
{
	struct daemon d_;

	REQUIRE(daemon_init(&d_));
	relay_refused_body(&d_);
	CHECK(daemon_alive(&d_));
	CHECK(exited_with(daemon_stop(&d_), 0));
	daemon_cleanup(&d_);
}

/* ------------------------------------------------------------------------ */
/* STOP end to end: GET_VRING_BASE waits for the backend's STOP ack */

/* Like WITH_DAEMON, for a body that starts the daemon with its own arguments. */
#define WITH_OWN_DAEMON(body)                                              \
	do {                                                               \
		struct daemon d_;                                          \
		REQUIRE(daemon_init(&d_));                                 \
		body(&d_);                                                 \
		CHECK(daemon_alive(&d_));                                  \
		CHECK(exited_with(daemon_stop(&d_), 0));                   \
		daemon_cleanup(&d_);                                       \
	} while (0)

/* A backend that maps the frontend's memory itself, as vp_net does, and may
 * hold its STOP acks (an asynchronous backend, or a wedged one). */
static struct {
	unsigned n[5];
	bool hold;                  /* STOPPED: hold the ack */
	int hold_rc;
	uint64_t held_id;
	uint8_t *map;               /* region 0, our own mapping */
	uint64_t used_off[2];       /* of each ring's used ring in it */
	uint16_t stop_bump;         /* at STOP: completes this many more per ring first */
	uint16_t resume[2];         /* last_avail_idx of each ring at the latest READY */
} sb;

static void sb_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
		     void *opaque)
{
	(void)opaque;
	if ((unsigned)ev < 5)
		sb.n[ev]++;
	if (ev == VP_EV_DEVICE_READY && dev->nregions == 1 && dev->nrings == 2) {
		if (!sb.map) {
			void *p = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				       dev->regions[0].fd, 0);

			sb.map = p == MAP_FAILED ? NULL : p;
		}
		for (unsigned i = 0; i < 2; i++) {
			sb.used_off[i] = dev->rings[i].used - dev->regions[0].gpa;
			sb.resume[i] = dev->rings[i].last_avail_idx;
		}
	}
	/* Chains it consumed before the STOP arrived: completed before the ack. */
	for (unsigned i = 0; ev == VP_EV_DEVICE_STOPPED && sb.stop_bump && sb.map && i < 2; i++)
		if (sb.used_off[i] + 4 <= MEM_SIZE)
			__atomic_fetch_add((uint16_t *)(void *)(sb.map + sb.used_off[i] + 2),
					   sb.stop_bump, __ATOMIC_RELEASE);
	if (ev == VP_EV_DEVICE_STOPPED && sb.hold) {
		sb.hold_rc = vp_server_hold_stop(srv, dev->id);
		sb.held_id = dev->id;
	}
}

/* The backend completed chains on ring i: its used index, in its own view. */
static void sb_set_used(unsigned i, uint16_t idx)
{
	if (sb.map && sb.used_off[i] + 4 <= MEM_SIZE)
		__atomic_store_n((uint16_t *)(void *)(sb.map + sb.used_off[i] + 2), idx,
				 __ATOMIC_RELEASE);
}

static struct vp_server *sb_new(const char *path)
{
	/* Its own timeout must not ack for it: the daemon's is under test. */
	struct vp_server_config bc = { .path = path, .on_event = sb_event,
				       .stop_timeout_ms = 30000 };
	struct vp_server *b = NULL;

	memset(&sb, 0, sizeof(sb));
	sb.hold_rc = 1;
	return vp_server_new(&b, &bc) == 0 ? b : NULL;
}

static void sb_free(struct vp_server *b)
{
	vp_server_free(b);
	if (sb.map)
		munmap(sb.map, MEM_SIZE);
	sb.map = NULL;
}

static bool bk_wait_ready(struct vp_server *b, unsigned n)
{
	int64_t end = now_ms() + WAIT_MS;

	while (sb.n[VP_EV_DEVICE_READY] < n && now_ms() < end)
		bk_serve(b, NULL, 10);
	return sb.n[VP_EV_DEVICE_READY] >= n;
}

/* Serve the backend (if any) until fd has a whole reply or ms pass: the
 * milliseconds it took, -1 if none came. */
static int vu_wait_reply(struct vp_server *b, int fd, int ms, struct vp_msg *rep)
{
	int64_t t0 = now_ms(), end = t0 + ms;
	struct vp_rx rx;
	int r = 0;

	vp_rx_init(&rx);
	while (now_ms() < end) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { b ? vp_server_fd(b) : -1, POLLIN, 0 } };

		poll(p, 2, 5);
		if (b)
			vp_server_dispatch(b);
		r = vp_sock_recv(fd, &rx, rep);
		if (r != 0)
			break;
	}
	vp_rx_reset(&rx);
	if (r == 1)
		vp_msg_close_fds(rep);
	return r == 1 ? (int)(now_ms() - t0) : -1;
}

/* A device's stop_timeouts counter, from "show ID" (9999: not shown). */
static uint64_t dev_stop_timeouts(const struct daemon *d, uint64_t id)
{
	char cmd[64];
	struct jv *doc;
	uint64_t n = 9999;

	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(d, cmd);
	jv_get_u64(jv_get(jv_get(doc, "device"), "backend"), "stop_timeouts", &n);
	jv_free(doc);
	return n;
}

/* The first server's stop_timeouts counter, from "servers" (9999: not shown). */
static uint64_t server_stop_timeouts(const struct daemon *d)
{
	struct jv *doc = ask(d, "servers");
	uint64_t n = 9999;

	jv_get_u64(nth(jv_get(doc, "servers"), 0), "stop_timeouts", &n);
	jv_free(doc);
	return n;
}

/* A daemon whose net0 relays to a test backend, and a QEMU-like frontend
 * on net0 whose device the backend drives. */
struct stop_rig {
	struct vp_server *b;
	struct frontend f;
	uint64_t id;
	int fd, fds0;
};

static bool rig_up(struct daemon *d, struct stop_rig *k, unsigned stop_ms)
{
	char bpath[160], spec[400];
	char *args[] = { "--server", spec, "--control", d->ctl, "--log-level", "debug", NULL };

	memset(k, 0, sizeof(*k));
	k->fd = -1;
	snprintf(bpath, sizeof(bpath), "%s/backend.sock", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s,stop-timeout=%u", d->net0,
		 bpath, stop_ms);
	if (!daemon_spawn_argv(d, args))
		return false;
	k->fds0 = daemon_fds(d);
	k->b = sb_new(bpath);
	if (!k->b || !fe_init(&k->f, UUID0))
		return false;
	k->fd = unix_connect(d->net0);
	if (k->fd < 0)
		return false;
	vu_raw_start(k->fd, &k->f, NULL);
	return bk_wait_ready(k->b, 1) && (k->id = newest_dev(d, "vhost-user")) &&
	       wait_backend(d, k->id, "attached") && sb.map;
}

/* The frontend goes; nothing is left of it in the daemon. */
static void rig_down(struct daemon *d, struct stop_rig *k)
{
	if (k->fd >= 0)
		close(k->fd);
	CHECK(wait_state(d, k->id, "gone"));
	bk_serve(k->b, NULL, 50);
	sb_free(k->b);
	fe_free(&k->f);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), k->fds0);
}

/* (a) The reply comes only after the backend acked, with its used index. */
static void stop_acked_body(struct daemon *d)
{
	struct stop_rig k;
	struct vp_server *b;
	struct vp_msg rep;
	uint64_t id;
	int fd, ms;
	uint16_t base[2];

	REQUIRE(rig_up(d, &k, 5000));
	b = k.b;
	fd = k.fd;
	id = k.id;
	sb_set_used(0, 5);  /* the backend completed 5 chains on ring 0 */

	/* QEMU stops the rings; the backend holds its STOP ack for 300 ms. */
	sb.hold = true;
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	ms = vu_wait_reply(b, fd, 300, &rep);
	CHECK_EQ(ms, -1);                      /* not before the ack */
	CHECK_EQ(sb.hold_rc, 0);               /* STOP came with NEED_REPLY */
	CHECK_EQ(sb.n[VP_EV_DEVICE_STOPPED], 1);
	CHECK(wait_backend(d, id, "stopping"));
	sb_set_used(0, 8);  /* it completed 3 more while stopping: it stopped at 8 */
	CHECK_EQ(vp_server_release_stop(b, sb.held_id), 0);
	ms = vu_wait_reply(b, fd, WAIT_MS, &rep);
	CHECK(ms >= 0);                        /* and after it */
	CHECK_EQ(rep.request, VP_VU_GET_VRING_BASE);
	CHECK_EQ(rep.p.state.index, 0);
	CHECK_EQ(rep.p.state.num, 8);
	base[0] = (uint16_t)rep.p.state.num;
	/* Ring 1 of a device already stopped: at once. */
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 1, 0);
	ms = vu_wait_reply(b, fd, WAIT_MS, &rep);
	CHECK(ms >= 0 && ms < 500);
	CHECK_EQ(rep.p.state.index, 1);
	base[1] = (uint16_t)rep.p.state.num;
	CHECK(wait_backend(d, id, "stopped"));
	CHECK_EQ(dev_stop_timeouts(d, id), 0);

	/* A synchronous stop (the backend lets go in its callback): acked at once. */
	sb.hold = false;
	vu_raw_start(fd, &k.f, base);
	CHECK(bk_wait_ready(b, 2));
	CHECK(wait_backend(d, id, "attached"));
	CHECK_EQ(sb.n[VP_EV_DEVICE_NEW], 1);   /* the same backend connection */
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	ms = vu_wait_reply(b, fd, WAIT_MS, &rep);
	CHECK(ms >= 0 && ms < 1000);
	CHECK_EQ(rep.p.state.num, 8);
	CHECK_EQ(sb.n[VP_EV_DEVICE_STOPPED], 2);
	CHECK(log_has(d, "backend acked STOP"));
	rig_down(d, &k);
	CHECK_EQ(sb.n[VP_EV_DEVICE_REMOVED], 1);
}

TEST(stop_reply_waits_for_backend_ack)
{
	WITH_OWN_DAEMON(stop_acked_body);
}

/* (b) A backend that never acks: the reply goes after stop-timeout, the miss
 * is logged and counted, the backend connection closed; the device comes back. */
static void stop_timeout_body(struct daemon *d)
{
	struct stop_rig k;
	struct vp_server *b;
	struct vp_msg rep;
	uint64_t id;
	int fd, ms;
	uint16_t base[2] = { 0, 0 };

	REQUIRE(rig_up(d, &k, 300));
	b = k.b;
	fd = k.fd;
	id = k.id;
	CHECK_EQ(server_stop_timeouts(d), 0);

	sb.hold = true;  /* and never released */
	sb_set_used(0, 3);
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	ms = vu_wait_reply(b, fd, WAIT_MS, &rep);
	CHECK_EQ(sb.hold_rc, 0);
	if (ms < 290 || ms > 300 + 1000)
		fprintf(stderr, "  reply after %d ms, stop-timeout 300\n", ms);
	CHECK(ms >= 290 && ms <= 300 + 1000);
	CHECK_EQ(rep.p.state.index, 0);
	CHECK_EQ(rep.p.state.num, 3);
	base[0] = 3;
	CHECK(log_has(d, "did not acknowledge STOP within 300 ms"));
	CHECK_EQ(dev_stop_timeouts(d, id), 1);
	CHECK_EQ(server_stop_timeouts(d), 1);
	/* Its connection is closed: the backend's device goes. */
	bk_serve(b, NULL, 100);
	CHECK_EQ(sb.n[VP_EV_DEVICE_REMOVED], 1);
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 1, 0);
	CHECK(vu_wait_reply(b, fd, WAIT_MS, &rep) >= 0);

	/* The frontend starts again: a fresh backend connection drives it. */
	sb.hold = false;
	vu_raw_start(fd, &k.f, base);
	CHECK(bk_wait_ready(b, 2));
	CHECK_EQ(sb.n[VP_EV_DEVICE_NEW], 2);
	CHECK(wait_backend(d, id, "attached"));
	CHECK_EQ(dev_stop_timeouts(d, id), 1);  /* the count stays */
	rig_down(d, &k);
}

TEST(stop_unacked_answered_after_timeout)
{
	WITH_OWN_DAEMON(stop_timeout_body);
}

/* (c) No backend (none configured, or none reachable): answered at once. */
static void stop_no_backend_body(struct daemon *d)
{
	struct frontend f;
	struct vp_msg rep;
	char s0[400], s1[400];
	const char *paths[2] = { d->net0, d->net1 };
	int fds0;

	snprintf(s0, sizeof(s0), "path=%s,id=net0", d->net0);
	snprintf(s1, sizeof(s1), "path=%s,id=net1,backend=%s/nobody.sock,backend-grace=0",
		 d->net1, d->dir);
	char *args[] = { "--server", s0, "--server", s1, "--control", d->ctl, NULL };

	REQUIRE(daemon_spawn_argv(d, args));
	fds0 = daemon_fds(d);
	REQUIRE(fe_init(&f, UUID0));
	for (unsigned k = 0; k < 2; k++) {
		int fd = unix_connect(paths[k]), ms;
		uint64_t id = 0;

		REQUIRE(fd >= 0);
		vu_raw_start(fd, &f, NULL);
		for (int64_t end = now_ms() + WAIT_MS; !id && now_ms() < end; sleep_ms(10))
			id = newest_dev(d, "vhost-user");
		CHECK(wait_state(d, id, "ready"));
		if (k == 1)
			CHECK(wait_backend(d, id, "waiting"));
		vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
		ms = vu_wait_reply(NULL, fd, WAIT_MS, &rep);
		CHECK(ms >= 0 && ms < 200);
		CHECK_EQ(rep.p.state.index, 0);
		close(fd);
		CHECK(wait_state(d, id, "gone"));
	}
	fe_free(&f);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), fds0);
}

TEST(stop_without_backend_answered_at_once)
{
	WITH_OWN_DAEMON(stop_no_backend_body);
}

/* (d) A change while the backend runs (QEMU replaces a call fd): the backend
 * is stopped, acked, before the relay reads where the rings are, so chains it
 * completed until the STOP arrived are not handed to it again. */
static void stop_before_reannounce_body(struct daemon *d)
{
	struct stop_rig k;
	uint16_t avail[2] = { 12, 6 };
	int newcall;

	REQUIRE(rig_up(d, &k, 5000));
	/* The frontend posted 12 and 6 chains; the backend completed 3 and 0. */
	for (unsigned i = 0; i < 2; i++)
		memcpy(k.f.mem + ring_off(i) + 0x1002, &avail[i], 2);
	sb_set_used(0, 3);

	sb.hold = true;
	sb.stop_bump = 5;
	newcall = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	REQUIRE(newcall >= 0);
	vu_raw_send(k.fd, VP_VU_SET_VRING_CALL, 0, 1, newcall);
	for (int64_t end = now_ms() + WAIT_MS; !sb.n[VP_EV_DEVICE_STOPPED] && now_ms() < end;)
		bk_serve(k.b, NULL, 10);
	CHECK_EQ(sb.n[VP_EV_DEVICE_STOPPED], 1);
	CHECK_EQ(sb.hold_rc, 0);               /* STOP came with NEED_REPLY */
	CHECK(wait_backend(d, k.id, "restopping"));
	bk_serve(k.b, NULL, 100);
	CHECK_EQ(sb.n[VP_EV_DEVICE_READY], 1); /* nothing announced before the ack */
	if (sb.hold_rc == 0)
		CHECK_EQ(vp_server_release_stop(k.b, sb.held_id), 0);

	/* Re-announced on the same connection, from where the backend stopped. */
	CHECK(bk_wait_ready(k.b, 2));
	CHECK_EQ(sb.n[VP_EV_DEVICE_NEW], 1);
	CHECK_EQ(sb.resume[0], 8);
	CHECK_EQ(sb.resume[1], 5);
	CHECK(wait_backend(d, k.id, "attached"));
	CHECK_EQ(dev_stop_timeouts(d, k.id), 0);
	CHECK(log_has(d, "announcing the change"));
	CHECK(!log_has(d, "broken"));
	rig_down(d, &k);
	close(newcall);
	CHECK_EQ(sb.n[VP_EV_DEVICE_REMOVED], 1);
}

TEST(stop_acked_before_change_reannounced)
{
	WITH_OWN_DAEMON(stop_before_reannounce_body);
}

/* ------------------------------------------------------------------------ */
/* backend VMs (backend-vm=QMP): a fake QEMU in this process speaks QMP,
 * connects to the ivshmem socket the daemon names in chardev-add as QEMU's
 * ivshmem client, maps the info window file it names in object-add, and a
 * fake driver reads and writes that window. */

#define BV_NVEC 3

struct fake_vm {
	int lfd, q;                 /* QMP: listening, connected */
	char buf[1 << 16];
	size_t len;
	char ivs_path[160], info_path[160];
	char obj[64], info[64], chr[64], mem[64];
	int ivs;                    /* the ivshmem connection, as QEMU's client */
	int64_t my_id, peer_id;
	int shm;
	int own[BV_NVEC], peer[BV_NVEC];
	uint8_t *win;
};

static void fv_close_dev(struct fake_vm *v)
{
	if (v->ivs >= 0)
		close(v->ivs);
	v->ivs = -1;
	if (v->shm >= 0)
		close(v->shm);
	v->shm = -1;
	for (unsigned i = 0; i < BV_NVEC; i++) {
		if (v->own[i] >= 0)
			close(v->own[i]);
		if (v->peer[i] >= 0)
			close(v->peer[i]);
		v->own[i] = v->peer[i] = -1;
	}
	if (v->win)
		munmap(v->win, VP_INFO_WINDOW_SIZE);
	v->win = NULL;
}

/* Listen for the daemon's QMP connection, keeping the device side as it is. */
static bool fv_listen_keep(struct fake_vm *v, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	v->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return v->lfd >= 0 && bind(v->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	       listen(v->lfd, 4) == 0;
}

static void fv_none(struct fake_vm *v)
{
	memset(v, 0, sizeof(*v));
	v->q = v->lfd = v->ivs = v->shm = -1;
	for (unsigned i = 0; i < BV_NVEC; i++)
		v->own[i] = v->peer[i] = -1;
}

static bool fv_listen(struct fake_vm *v, const char *path)
{
	fv_none(v);
	return fv_listen_keep(v, path);
}

static void fv_send(struct fake_vm *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fv_send(struct fake_vm *v, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	strcpy(line + n, "\r\n");
	if (v->q < 0 || send(v->q, line, (size_t)n + 2, MSG_NOSIGNAL) != n + 2)
		fprintf(stderr, "  fake QMP: cannot send %s\n", line);
}

/* The next command the daemon sent, within ms; NULL if none. */
static struct jv *fv_read(struct fake_vm *v, int ms)
{
	int64_t end = now_ms() + ms;

	while (v->q >= 0) {
		char *nl = memchr(v->buf, '\n', v->len), err[64];
		struct jv *doc = NULL;
		ssize_t r;

		if (nl) {
			size_t l = (size_t)(nl - v->buf);

			jv_parse(v->buf, l, &doc, err, sizeof(err));
			memmove(v->buf, nl + 1, v->len - l - 1);
			v->len -= l + 1;
			return doc;
		}
		if (now_ms() >= end ||
		    poll(&(struct pollfd){ .fd = v->q, .events = POLLIN }, 1,
			 (int)(end - now_ms())) != 1)
			return NULL;
		r = recv(v->q, v->buf + v->len, sizeof(v->buf) - v->len, MSG_DONTWAIT);
		if (r <= 0)
			return NULL;
		v->len += (size_t)r;
	}
	return NULL;
}

/* Expect command name; *id its id. NULL (logged) if another came or none. */
static struct jv *fv_expect(struct fake_vm *v, const char *name, uint64_t *id)
{
	struct jv *c = fv_read(v, WAIT_MS);
	const char *ex = jv_get_str(c, "execute");

	if (!c || !ex || strcmp(ex, name) || !jv_get_u64(c, "id", id)) {
		fprintf(stderr, "  fake QMP: expected %s, got %s\n", name, ex ? ex : "nothing");
		jv_free(c);
		return NULL;
	}
	return c;
}

static void fv_ok(struct fake_vm *v, uint64_t id, const char *ret)
{
	fv_send(v, "{\"return\": %s, \"id\": %" PRIu64 "}", ret, id);
}

/* Accept the daemon's QMP connection and do the handshake. */
static bool fv_accept(struct fake_vm *v, int ms)
{
	uint64_t id;
	struct jv *c;

	if (poll(&(struct pollfd){ .fd = v->lfd, .events = POLLIN }, 1, ms) != 1)
		return false;
	v->q = accept4(v->lfd, NULL, NULL, SOCK_CLOEXEC);
	v->len = 0;
	fv_send(v, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
		"\"major\": 7}}, \"capabilities\": []}}");
	c = fv_expect(v, "qmp_capabilities", &id);
	if (!c)
		return false;
	fv_ok(v, id, "{}");
	jv_free(c);
	return true;
}

static bool recv_msg(int fd, int64_t *val, int *fd_out)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec io = { val, sizeof(*val) };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;

	*fd_out = -1;
	if (poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, WAIT_MS) != 1 ||
	    recvmsg(fd, &m, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof(*val))
		return false;
	cm = CMSG_FIRSTHDR(&m);
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(fd_out, CMSG_DATA(cm), sizeof(int));
	return true;
}

/* What QEMU reads from its ivshmem server (ivshmem-spec.rst). */
static bool fv_read_setup(struct fake_vm *v)
{
	int64_t val;
	int fd;

	if (!recv_msg(v->ivs, &val, &fd) || val != 0 || fd >= 0)
		return false;
	if (!recv_msg(v->ivs, &v->my_id, &fd) || fd >= 0)
		return false;
	if (!recv_msg(v->ivs, &val, &v->shm) || val != -1 || v->shm < 0)
		return false;
	for (unsigned i = 0; i < BV_NVEC; i++)
		if (!recv_msg(v->ivs, &v->peer_id, &v->peer[i]) || v->peer[i] < 0)
			return false;
	for (unsigned i = 0; i < BV_NVEC; i++)
		if (!recv_msg(v->ivs, &val, &v->own[i]) || val != v->my_id || v->own[i] < 0)
			return false;
	return true;
}

/* QEMU maps the info window's file (memory-backend-file). */
static bool fv_map_window(struct fake_vm *v, const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	v->win = fd >= 0 ? mmap(NULL, VP_INFO_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				fd, 0) : MAP_FAILED;
	if (fd >= 0)
		close(fd);
	if (v->win == MAP_FAILED) {
		v->win = NULL;
		fprintf(stderr, "  cannot map %s\n", path);
		return false;
	}
	return true;
}

/* QEMU's side of a hot-plug: the five commands, in order. */
static bool fv_plug(struct fake_vm *v)
{
	struct jv *c;
	const struct jv *a;
	uint64_t id, size = 0;
	bool ok = false;

	if (!(c = fv_expect(v, "object-add", &id)))
		return false;
	a = jv_get(c, "arguments");
	snprintf(v->obj, sizeof(v->obj), "%s", jv_get_str(a, "id") ?: "");
	snprintf(v->info_path, sizeof(v->info_path), "%s", jv_get_str(a, "mem-path") ?: "");
	CHECK(str_is(a, "qom-type", "memory-backend-file"));
	CHECK(jv_get_u64(a, "size", &size) && size == VP_INFO_WINDOW_SIZE);
	if (!fv_map_window(v, v->info_path))
		goto out;
	fv_ok(v, id, "{}");
	jv_free(c);
	/* info first */
	if (!(c = fv_expect(v, "device_add", &id)))
		return false;
	a = jv_get(c, "arguments");
	CHECK(str_is(a, "driver", "ivshmem-plain"));
	CHECK(str_is(a, "memdev", v->obj));
	snprintf(v->info, sizeof(v->info), "%s", jv_get_str(a, "id") ?: "");
	fv_ok(v, id, "{}");
	jv_free(c);
	if (!(c = fv_expect(v, "chardev-add", &id)))
		return false;
	a = jv_get(c, "arguments");
	snprintf(v->chr, sizeof(v->chr), "%s", jv_get_str(a, "id") ?: "");
	snprintf(v->ivs_path, sizeof(v->ivs_path), "%s",
		 jv_get_str(jv_get(jv_get(jv_get(jv_get(a, "backend"), "data"), "addr"), "data"),
			    "path") ?: "");
	v->ivs = unix_connect(v->ivs_path);
	if (v->ivs < 0) {
		fprintf(stderr, "  cannot connect to %s\n", v->ivs_path);
		goto out;
	}
	fv_ok(v, id, "{}");
	jv_free(c);
	if (!(c = fv_expect(v, "device_add", &id)))
		return false;
	a = jv_get(c, "arguments");
	CHECK(str_is(a, "driver", "ivshmem-doorbell"));
	CHECK(str_is(a, "chardev", v->chr));
	snprintf(v->mem, sizeof(v->mem), "%s", jv_get_str(a, "id") ?: "");
	/* As QEMU: the setup is read inside device_add, before its answer. */
	if (!fv_read_setup(v)) {
		fprintf(stderr, "  no ivshmem setup while device_add was pending\n");
		goto out;
	}
	fv_ok(v, id, "{}");
	jv_free(c);
	if (!(c = fv_expect(v, "query-pci", &id)))
		return false;
	fv_send(v, "{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, \"slot\": 3, "
		"\"function\": 0, \"qdev_id\": \"%s\"}, {\"bus\": 0, \"slot\": 4, "
		"\"function\": 0, \"qdev_id\": \"%s\"}]}], \"id\": %" PRIu64 "}",
		v->info, v->mem, id);
	ok = true;
out:
	jv_free(c);
	return ok;
}

/* QEMU's side of a hot-unplug; deleted: the guest releases the functions. */
static bool fv_unplug(struct fake_vm *v, bool deleted)
{
	bool seen_i = false, seen_m = false, ok = true;

	for (unsigned k = 0; k < 2; k++) {
		uint64_t id;
		struct jv *c = fv_expect(v, "device_del", &id);
		const char *dev = jv_get_str(jv_get(c, "arguments"), "id");

		if (!c || !dev)
			return false;
		seen_i |= !strcmp(dev, v->info);
		seen_m |= !strcmp(dev, v->mem);
		fv_ok(v, id, "{}");
		if (deleted)
			fv_send(v, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"%s\", "
				"\"path\": \"/machine/peripheral/%s\"}, \"timestamp\": {\"seconds\": 1, "
				"\"microseconds\": 2}}", dev, dev);
		jv_free(c);
	}
	CHECK(seen_i && seen_m);
	if (deleted) {
		for (unsigned k = 0; k < 2; k++) {
			struct jv *c = fv_read(v, WAIT_MS);
			const char *ex = jv_get_str(c, "execute");
			const char *id = jv_get_str(jv_get(c, "arguments"), "id");
			uint64_t cid;

			ok &= ex && id && ((!strcmp(ex, "chardev-remove") && !strcmp(id, v->chr)) ||
					   (!strcmp(ex, "object-del") && !strcmp(id, v->obj)));
			if (jv_get_u64(c, "id", &cid))
				fv_ok(v, cid, "{}");
			jv_free(c);
		}
	}
	fv_close_dev(v);
	return ok && seen_i && seen_m;
}

static void fv_free(struct fake_vm *v)
{
	fv_close_dev(v);
	if (v->q >= 0)
		close(v->q);
	if (v->lfd >= 0)
		close(v->lfd);
	v->q = v->lfd = -1;
}

/* The driver: a checked snapshot of the daemon page. */
static bool drv_snap(struct fake_vm *v, struct vp_devinfo *info)
{
	char why[200];
	int e = vp_devinfo_snapshot(v->win, info, why, sizeof(why));

	if (e < 0)
		fprintf(stderr, "  snapshot: %s\n", e == -EINVAL ? why : strerror(-e));
	return e == 0;
}

/* The driver writes its page and rings the daemon. */
static void drv_write(struct fake_vm *v, const struct vp_devinfo_driver *in)
{
	vp_devinfo_write_driver(v->win, in);
	eventfd_write(v->peer[BV_NVEC - 1], 1);
}

/* An eventfd fired within ms (and is drained). */
static bool fired(int efd, int ms)
{
	eventfd_t n;

	return poll(&(struct pollfd){ .fd = efd, .events = POLLIN }, 1, ms) == 1 &&
	       eventfd_read(efd, &n) == 0 && n > 0;
}

/* "show ID"'s backend object, or NULL. */
static struct jv *bv_show(const struct daemon *d, uint64_t id, const struct jv **b)
{
	char cmd[64];
	struct jv *doc;

	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(d, cmd);
	*b = jv_get(jv_get(doc, "device"), "backend");
	return doc;
}

static bool bv_wait(const struct daemon *d, uint64_t id, const char *want)
{
	int64_t end = now_ms() + WAIT_MS;
	char st[64] = "";

	while (now_ms() < end) {
		const struct jv *b;
		struct jv *doc = bv_show(d, id, &b);

		snprintf(st, sizeof(st), "%s", jv_get_str(b, "state") ?: "?");
		jv_free(doc);
		if (!strcmp(st, want))
			return true;
		sleep_ms(10);
	}
	fprintf(stderr, "  device %" PRIu64 ": backend VM state %s, wanted %s\n", id, st, want);
	return false;
}

/*
 * The driver comes up (the daemon reads its page on the doorbell), then the
 * frontend's GET_VRING_BASE 0 is held until the driver answers with where it
 * stopped; *rep is the reply.
 */
static void drv_up_then_stop(const struct daemon *d, uint64_t id, struct fake_vm *v,
			     struct frontend *f, int fd, struct vp_msg *rep)
{
	struct vp_devinfo info;
	struct vp_devinfo_driver drv = { 0 };
	const struct jv *b;
	struct jv *doc;
	uint64_t st = 0;

	REQUIRE(drv_snap(v, &info));
	drv.driver_gen = 1;
	drv.driver_status = VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER | VP_INFO_DS_DRIVER_OK;
	drv.features_accepted = info.features;
	drv.acked_gen = info.generation;
	drv_write(v, &drv);
	for (int64_t end = now_ms() + WAIT_MS; now_ms() < end && st != 7; sleep_ms(10)) {
		doc = bv_show(d, id, &b);
		jv_get_hex(b, "driver_status", &st);
		jv_free(doc);
	}
	CHECK_EQ(st, 7);

	fe_post_buffers(f);     /* avail idx 3 on ring 0 */
	fired(v->own[0], 0);    /* the generations so far */
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK(fired(v->own[0], WAIT_MS));  /* the config vector */
	REQUIRE(drv_snap(v, &info));
	CHECK(info.status & VP_INFO_ST_STOP);
	CHECK(!(info.status & VP_INFO_ST_READY));
	CHECK_EQ(vu_wait_reply(NULL, fd, 300, rep), -1);
	CHECK(bv_wait(d, id, "stopping"));
	drv.driver_gen = 2;
	drv.acked_gen = info.generation;
	drv.stopped[0] = VP_INFO_STOPPED_VALID | 3;
	drv_write(v, &drv);
	CHECK(vu_wait_reply(NULL, fd, WAIT_MS, rep) >= 0);
	CHECK_EQ(rep->request, VP_VU_GET_VRING_BASE);
	CHECK(log_has(d, "driver acked STOP"));
}

/* A daemon whose net0 serves the fake backend VM, and its files. */
struct bv_rig {
	struct fake_vm v;
	char qmp[160], run[160];
	struct frontend f;
	int fd, fds0;
	uint64_t id;
};

static bool bv_daemon(struct daemon *d, struct bv_rig *k, const char *extra)
{
	char spec[600];
	char *args[] = { "--server", spec, "--control", d->ctl, "--run-dir", k->run,
			 "--log-level", "debug", NULL };

	memset(k, 0, sizeof(*k));
	k->fd = -1;
	snprintf(k->qmp, sizeof(k->qmp), "%s/qmp.sock", d->dir);
	snprintf(k->run, sizeof(k->run), "%s/run/bevm", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend-vm=%s%s%s", d->net0, k->qmp,
		 extra ? "," : "", extra ? extra : "");
	if (!fv_listen(&k->v, k->qmp) || !daemon_spawn_argv(d, args))
		return false;
	return fv_accept(&k->v, WAIT_MS);
}

/* ... plus a QEMU-like frontend on net0 whose device got plugged. */
static bool bv_up(struct daemon *d, struct bv_rig *k, const char *extra)
{
	if (!bv_daemon(d, k, extra))
		return false;
	k->fds0 = daemon_fds(d);
	if (!fe_init(&k->f, UUID0) || (k->fd = unix_connect(d->net0)) < 0)
		return false;
	vu_raw_start(k->fd, &k->f, NULL);
	return fv_plug(&k->v) && (k->id = newest_dev(d, "vhost-user")) &&
	       bv_wait(d, k->id, "plugged");
}

static unsigned dir_entries(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *e;
	unsigned n = 0;

	while (dir && (e = readdir(dir)))
		n += e->d_name[0] != '.';
	if (dir)
		closedir(dir);
	return n;
}

/* The frontend goes: device_del of both, then the backends; nothing left. */
static void bv_down(struct daemon *d, struct bv_rig *k)
{
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
	CHECK(fv_unplug(&k->v, true));
	CHECK(wait_state(d, k->id, "gone"));
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), k->fds0);
	CHECK_EQ(dir_entries(k->run), 0);
	fe_free(&k->f);
	fv_free(&k->v);
}

static void bevm_plug_body(struct daemon *d)
{
	struct bv_rig k;
	struct vp_devinfo info;
	struct vp_msg rep;
	const struct jv *b;
	struct jv *doc;
	uint8_t uuid[16];
	uint16_t base[2];
	int newkick, newcall;

	REQUIRE(bv_up(d, &k, "stop-timeout=5000"));
	/* The window: the frontend's four answers, READY, paired by peer id. */
	REQUIRE(drv_snap(&k.v, &info));
	doc = bv_show(d, k.id, &b);
	CHECK(vp_uuid_parse(jv_get_str(jv_get(doc, "device"), "uuid") ?: "", uuid) == 0);
	jv_free(doc);
	CHECK(!memcmp(info.uuid, uuid, 16));
	CHECK_EQ(info.status, VP_INFO_ST_PRESENT | VP_INFO_ST_READY);
	CHECK_EQ(info.memory_peer, (uint16_t)k.v.my_id);
	CHECK_EQ(info.daemon_peer, (uint16_t)k.v.peer_id);
	CHECK(k.v.my_id != k.v.peer_id);
	CHECK_EQ(info.device_id, k.id);
	CHECK_EQ(info.bar2_size, MEM_SIZE);
	CHECK_EQ(info.nregions, 1);
	CHECK_EQ(info.regions[0].gpa, MEM_GPA);
	CHECK_EQ(info.num_queues, 2);
	CHECK_EQ(info.queues[0].num, RING_NUM);
	CHECK_EQ(info.queues[1].desc, MEM_GPA + ring_off(1));
	CHECK_EQ(info.device_type, VP_VIRTIO_ID_NET);
	/* The window file is gone from the run dir once QEMU has it mapped. */
	CHECK(access(k.v.info_path, F_OK) < 0);
	/* The BAR2 fd is the frontend's RAM. */
	CHECK(k.v.shm >= 0 && lseek(k.v.shm, 0, SEEK_END) == MEM_SIZE);
	/* Fig. 4: the frontend's kick is the function's vector 1 + q, its call the doorbell q. */
	eventfd_write(k.f.kick[0], 1);
	CHECK(fired(k.v.own[1], WAIT_MS));
	eventfd_write(k.v.peer[1], 1);
	CHECK(fired(k.f.call[1], WAIT_MS));
	doc = bv_show(d, k.id, &b);
	CHECK(str_is(b, "kind", "vm"));
	CHECK(str_is(b, "path", k.qmp));
	CHECK(str_is(b, "memory_pci", "00:04.0"));
	CHECK(str_is(b, "info_pci", "00:03.0"));
	CHECK(u64_is(b, "memory_peer", (uint64_t)k.v.my_id));
	jv_free(doc);

	drv_up_then_stop(d, k.id, &k.v, &k.f, k.fd, &rep);
	base[0] = (uint16_t)rep.p.state.num;
	vu_raw_state(k.fd, VP_VU_GET_VRING_BASE, 1, 0);
	CHECK(vu_wait_reply(NULL, k.fd, WAIT_MS, &rep) >= 0);
	base[1] = (uint16_t)rep.p.state.num;
	CHECK(bv_wait(d, k.id, "plugged"));

	/* The guest reboots: new kick and call eventfds under the same pair. */
	newkick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	newcall = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	close(k.f.kick[0]);
	close(k.f.call[0]);
	k.f.kick[0] = newkick;
	k.f.call[0] = newcall;
	vu_raw_start(k.fd, &k.f, base);
	/* New call fds: a new virtual peer (the next id, never a disconnect: QEMU
	 * 7.2 corrupts its heap on that), which the window names. */
	{
		int64_t val, old = k.v.peer_id;
		int peer[BV_NVEC];

		for (unsigned i = 0; i < BV_NVEC; i++) {
			CHECK(recv_msg(k.v.ivs, &val, &peer[i]) && peer[i] >= 0 && val != old &&
			      val != k.v.my_id);
			close(k.v.peer[i]);
			k.v.peer[i] = peer[i];
			k.v.peer_id = val;
		}
	}
	eventfd_write(k.v.peer[0], 1);
	CHECK(fired(newcall, WAIT_MS));
	/* The new kick fd is relayed into the function's original vector. */
	eventfd_write(newkick, 1);
	CHECK(fired(k.v.own[1], WAIT_MS));
	CHECK(fired(k.v.own[0], WAIT_MS));  /* and a new generation */
	REQUIRE(drv_snap(&k.v, &info));
	CHECK_EQ(info.status, VP_INFO_ST_PRESENT | VP_INFO_ST_READY);
	CHECK_EQ(info.queues[0].last_avail_idx, base[0]);
	CHECK_EQ(info.daemon_peer, (uint16_t)k.v.peer_id);
	CHECK(log_has(d, "kick fd replaced"));
	bv_down(d, &k);
}

TEST(bevm_plug_stop_follow_unplug)
{
	WITH_OWN_DAEMON(bevm_plug_body);
}

/* A driver that never answers STOP: the reply goes at stop-timeout. */
static void bevm_stop_timeout_body(struct daemon *d)
{
	struct bv_rig k;
	struct vp_msg rep;
	int ms;

	REQUIRE(bv_up(d, &k, "stop-timeout=300"));
	vu_raw_state(k.fd, VP_VU_GET_VRING_BASE, 0, 0);
	ms = vu_wait_reply(NULL, k.fd, WAIT_MS, &rep);
	CHECK(ms >= 290 && ms <= 1300);
	CHECK(log_has(d, "did not acknowledge STOP within 300 ms"));
	CHECK_EQ(dev_stop_timeouts(d, k.id), 1);
	CHECK_EQ(server_stop_timeouts(d), 1);
	bv_down(d, &k);
}

TEST(bevm_stop_unacked_answered_after_timeout)
{
	WITH_OWN_DAEMON(bevm_stop_timeout_body);
}

/* Garbage in the driver page: refused with the reason, then unplugged. */
static void bevm_garbage_body(struct daemon *d)
{
	struct bv_rig k;
	struct vp_devinfo info;
	struct vp_devinfo_driver drv = { 0 };
	const struct jv *b;
	struct jv *doc;
	uint64_t bad = 0;

	REQUIRE(bv_up(d, &k, NULL));
	REQUIRE(drv_snap(&k.v, &info));
	drv.driver_status = 0x40;  /* not a bit of the ABI */
	drv.acked_gen = info.generation;
	drv.driver_gen = 1;
	fired(k.v.own[0], 0);
	drv_write(&k.v, &drv);
	CHECK(fired(k.v.own[0], WAIT_MS));
	REQUIRE(drv_snap(&k.v, &info));
	CHECK(strstr(info.reason, "driver page refused") != NULL);
	CHECK(log_has(d, "driver page refused"));
	doc = bv_show(d, k.id, &b);
	CHECK(jv_get_u64(b, "bad_pages", &bad) && bad == 1);
	jv_free(doc);
	/* A doorbell without a new page is not a new page. */
	eventfd_write(k.v.peer[BV_NVEC - 1], 1);
	sleep_ms(50);
	doc = bv_show(d, k.id, &b);
	CHECK(jv_get_u64(b, "bad_pages", &bad) && bad == 1);
	jv_free(doc);
	/* A doorbell flood: the daemon stops listening for a second, and says so. */
	eventfd_write(k.v.peer[BV_NVEC - 1], 100000);
	for (int64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(10))
		if (log_has(d, "rings the daemon more than 4096 times a second"))
			break;
	CHECK(log_has(d, "rings the daemon more than 4096 times a second"));
	doc = bv_show(d, k.id, &b);
	CHECK(u64_is(b, "doorbell_floods", 1));
	jv_free(doc);
	sleep_ms(1100);  /* muted for a second: its pages are read again after that */
	/* It keeps at it: the device is unplugged with the reason. */
	for (uint32_t g = 2; g <= 8; g++) {
		drv.driver_gen = g;
		drv.stopped[0] = 0x12345;  /* valid bit missing, bits set */
		drv_write(&k.v, &drv);
		/* Each page read before the next is written (a slow daemon
		 * would see only the last of a quick series). */
		for (int64_t end = now_ms() + WAIT_MS; g < 8 && now_ms() < end; sleep_ms(10)) {
			doc = bv_show(d, k.id, &b);
			bad = 0;
			jv_get_u64(b, "bad_pages", &bad);
			jv_free(doc);
			if (bad >= g)
				break;
		}
	}
	CHECK(fv_unplug(&k.v, true));
	CHECK(log_has(d, "driver wrote 8 bad pages in a row"));
	CHECK(bv_wait(d, k.id, "waiting"));
	doc = bv_show(d, k.id, &b);
	CHECK(strstr(jv_get_str(b, "reason") ?: "", "bad pages") != NULL);
	jv_free(doc);
	/* Not plugged again for the same READY: the fake sees nothing. */
	CHECK(fv_read(&k.v, 200) == NULL);
	close(k.fd);
	CHECK(wait_state(d, k.id, "gone"));
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), k.fds0);
	fe_free(&k.f);
	fv_free(&k.v);
}

TEST(bevm_garbage_driver_page_unplugged)
{
	WITH_OWN_DAEMON(bevm_garbage_body);
}

/* Frontend RAM a BAR cannot be: refused with the reason, told to the frontend. */
static void bevm_refused_body(struct daemon *d)
{
	struct bv_rig k;
	struct frontend f;
	struct jv *doc;
	const char *last;
	/* Unsealed memory is the library's to refuse (allow-unsealed off), at
	 * SET_MEM_TABLE; the other two reach READY and are the daemon's. */
	static const char *const whys[] = {
		"unsealed", "not a power of two", "memory fds",
	};

	REQUIRE(bv_daemon(d, &k, NULL));
	k.fds0 = daemon_fds(d);
	for (unsigned c = 0; c < 3; c++) {
		int fd, extra = -1;

		REQUIRE(fe_init_sealed(&f, UUID0, c != 0));
		if (c == 1) {
			/* 1.5 MiB: not a power of two (the ring region is its first MiB). */
			int big = tu_memfd("vpd-test-ram", MEM_SIZE + MEM_SIZE / 2, 1);

			REQUIRE(big >= 0);
			dup2(big, f.memfd);
			close(big);
		}
		fd = unix_connect(d->net0);
		REQUIRE(fd >= 0);
		if (c == 2)  /* a second region of another file (two memory backends) */
			extra = tu_memfd("vpd-test-ram2", MEM_SIZE, 1);
		vu_raw_start_mem(fd, &f, NULL, extra);
		CHECK(closed_by_peer(fd, WAIT_MS));
		close(fd);
		if (extra >= 0)
			close(extra);
		CHECK(log_has(d, whys[c]));
		/* The library's refusal is counted and shown as the daemon's are. */
		doc = ask(d, "servers");
		last = jv_get_str(nth(jv_get(doc, "servers"), 0), "last_refusal");
		if (!last || !strstr(last, whys[c]))
			fprintf(stderr, "  last_refusal: %s\n", last ? last : "(none)");
		CHECK(last && strstr(last, whys[c]));
		CHECK(u64_is(nth(jv_get(doc, "servers"), 0), "refused", c + 1));
		jv_free(doc);
		fe_free(&f);
	}
	/* QEMU was never asked for anything. */
	CHECK(fv_read(&k.v, 100) == NULL);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), k.fds0);
	fv_free(&k.v);
}

TEST(bevm_refuses_ram_a_bar_cannot_be)
{
	WITH_OWN_DAEMON(bevm_refused_body);
}

/* QMP lost: unattached; QMP back: plugged again. Lost for good: link down. */
static void bevm_qmp_lost_body(struct daemon *d)
{
	struct bv_rig k;
	const struct jv *b;
	struct jv *doc;
	struct vp_devinfo info;
	char old[64];

	REQUIRE(bv_up(d, &k, "backend-grace=1"));
	snprintf(old, sizeof(old), "%s", k.v.mem);
	close(k.v.q);
	k.v.q = -1;
	fv_close_dev(&k.v);
	CHECK(bv_wait(d, k.id, "waiting"));
	CHECK(log_has(d, "QMP lost"));
	doc = bv_show(d, k.id, &b);
	CHECK(strstr(jv_get_str(b, "reason") ?: "", "QMP lost") != NULL);
	jv_free(doc);
	/* Back within backend-grace: the device is plugged again, new names. */
	REQUIRE(fv_accept(&k.v, WAIT_MS));
	REQUIRE(fv_plug(&k.v));
	CHECK(strcmp(old, k.v.mem) != 0);
	CHECK(bv_wait(d, k.id, "plugged"));
	CHECK(drv_snap(&k.v, &info) && (info.status & VP_INFO_ST_READY));
	/* Gone for good: after backend-grace the frontend is dropped. */
	close(k.v.q);
	k.v.q = -1;
	fv_close_dev(&k.v);
	close(k.v.lfd);
	k.v.lfd = -1;
	unlink(k.qmp);
	CHECK(closed_by_peer(k.fd, 3000));
	CHECK(log_has(d, "no backend VM took the device within 1 s"));
	close(k.fd);
	CHECK(wait_state(d, k.id, "gone"));
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), k.fds0 - 1);  /* no QMP connection now */
	fe_free(&k.f);
	fv_free(&k.v);
}

TEST(bevm_qmp_lost_reconnects_then_link_down)
{
	WITH_OWN_DAEMON(bevm_qmp_lost_body);
}

/* A guest that never releases the functions does not wedge anything. */
static void bevm_unplug_timeout_body(struct daemon *d)
{
	struct bv_rig k;
	char info[64], mem[64], chr[64], obj[64];
	struct jv *doc;
	bool saw_chr = false, saw_obj = false;

	REQUIRE(bv_up(d, &k, "unplug-timeout=300"));
	snprintf(info, sizeof(info), "%s", k.v.info);
	snprintf(mem, sizeof(mem), "%s", k.v.mem);
	snprintf(chr, sizeof(chr), "%s", k.v.chr);
	snprintf(obj, sizeof(obj), "%s", k.v.obj);
	close(k.fd);
	k.fd = -1;
	CHECK(fv_unplug(&k.v, false));  /* device_del answered, never DEVICE_DELETED */
	CHECK(wait_state(d, k.id, "gone"));
	for (int64_t end = now_ms() + WAIT_MS; now_ms() < end; sleep_ms(20))
		if (log_has(d, "did not release"))
			break;
	CHECK(log_has(d, "did not release"));
	doc = ask(d, "servers");
	CHECK(u64_is(nth(jv_get(doc, "servers"), 0), "unplug_timeouts", 1));
	jv_free(doc);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), k.fds0);
	CHECK_EQ(dir_entries(k.run), 0);
	/* It lets go late: the backends are removed then. */
	fv_send(&k.v, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"%s\"}, "
		"\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}", info);
	fv_send(&k.v, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"%s\"}, "
		"\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}", mem);
	for (unsigned n = 0; n < 2; n++) {
		struct jv *c = fv_read(&k.v, WAIT_MS);
		const char *ex = jv_get_str(c, "execute");
		const char *id = jv_get_str(jv_get(c, "arguments"), "id");

		saw_chr |= ex && id && !strcmp(ex, "chardev-remove") && !strcmp(id, chr);
		saw_obj |= ex && id && !strcmp(ex, "object-del") && !strcmp(id, obj);
		jv_free(c);
	}
	CHECK(saw_chr && saw_obj);
	fe_free(&k.f);
	fv_free(&k.v);
}

TEST(bevm_unplug_timeout_frees_the_daemon_side)
{
	WITH_OWN_DAEMON(bevm_unplug_timeout_body);
}

/* SIGTERM with a pair plugged: its device_dels go out before QMP closes. */
TEST(bevm_shutdown_sends_device_del)
{
	struct daemon d;
	struct bv_rig k;
	unsigned dels = 0;

	REQUIRE(daemon_init(&d));
	if (bv_up(&d, &k, NULL)) {
		kill(d.pid, SIGTERM);
		for (unsigned n = 0; n < 2; n++) {
			struct jv *c = fv_read(&k.v, WAIT_MS);
			const char *ex = jv_get_str(c, "execute");

			dels += ex && !strcmp(ex, "device_del");
			jv_free(c);
		}
		CHECK(exited_with(wait_exit(d.pid, WAIT_MS), 0));
		d.pid = 0;
		CHECK_EQ(dels, 2);
		CHECK_EQ(dir_entries(k.run), 0);
	} else {
		CHECK(!"backend VM rig up");
	}
	if (k.fd >= 0)
		close(k.fd);
	fe_free(&k.f);
	fv_free(&k.v);
	daemon_cleanup(&d);
}

/* ---- cold plug: qemu-args for a backend VM started by hand (no QMP) ---- */

/* A daemon whose net0 has no backend: cold plug only. */
static bool cold_daemon(struct daemon *d, char *run, size_t runlen)
{
	char spec[300];
	char *args[] = { "--server", spec, "--control", d->ctl, "--run-dir", run,
			 "--log-level", "debug", NULL };

	snprintf(run, runlen, "%s/run/bevm", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0", d->net0);
	return daemon_spawn_argv(d, args);
}

/* A QEMU-like frontend (UUID0) on net0 whose device is ready: its id, 0 if not. */
static uint64_t vu_ready(const struct daemon *d, struct frontend *f, int *fd)
{
	uint64_t id;

	if (!fe_init(f, UUID0) || (*fd = unix_connect(d->net0)) < 0)
		return 0;
	vu_raw_start(*fd, f, NULL);
	id = newest_dev(d, "vhost-user");
	return id && wait_state(d, id, "ready") ? id : 0;
}

/* key's value in a QEMU option string ("type,key=v,..."), ",," undone. */
static bool qopt_get(const char *opts, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key), o = 0;
	const char *p = opts;

	while ((p = strstr(p, key))) {
		if ((p == opts || p[-1] == ',') && p[kl] == '=')
			break;
		p += kl;
	}
	if (!p)
		return false;
	for (p += kl + 1; *p && o + 1 < len; p++) {
		if (*p == ',' && p[1] != ',')
			break;
		if (*p == ',')
			p++;
		out[o++] = *p;
	}
	out[o] = '\0';
	return true;
}

/* QEMU started with the arguments: its chardev connects, it maps the window. */
static bool cold_qemu(struct fake_vm *v, const char *sock, const char *win)
{
	v->ivs = unix_connect(sock);
	return v->ivs >= 0 && fv_map_window(v, win) && fv_read_setup(v);
}

/* Reserve device id through vhost-pci-ctl; the socket and window it names. */
static bool cold_args(const struct daemon *d, uint64_t id, const char *slot, char *sock,
		      char *win, size_t len)
{
	static struct prog p;
	char dev[48], *lines[16], *save = NULL;
	unsigned n = 0;

	snprintf(dev, sizeof(dev), "%" PRIu64 "%s%s", id, slot ? "@" : "", slot ? slot : "");
	run(&p, ctl_bin, "--control", d->ctl, "qemu-args", "--timeout", "30", "net0", dev, NULL);
	if (p.status != 0) {
		fprintf(stderr, "  qemu-args: exit %d: %s\n", p.status, p.err);
		return false;
	}
	for (char *l = strtok_r(p.out, "\n", &save); l && n < 16; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	CHECK_EQ(n, 8);
	if (n != 8)
		return false;
	CHECK(!strcmp(lines[0], "-chardev") && !strncmp(lines[1], "socket,", 7));
	CHECK(!strcmp(lines[2], "-object") && !strncmp(lines[3], "memory-backend-file,", 20));
	CHECK(!strcmp(lines[4], "-device") && !strncmp(lines[5], "ivshmem-plain,", 14));
	CHECK(!strcmp(lines[6], "-device") && !strncmp(lines[7], "ivshmem-doorbell,", 17));
	CHECK(strstr(lines[7], "vectors=3") != NULL);
	CHECK(strstr(lines[3], ",size=8192,") != NULL);
	CHECK(strstr(p.err, "reserved as") != NULL);
	if (slot) {
		CHECK(strstr(lines[5], ",addr=0x05") != NULL);
		CHECK(strstr(lines[7], ",addr=0x06") != NULL);
	}
	return qopt_get(lines[1], "path", sock, len) && qopt_get(lines[3], "mem-path", win, len);
}

static void coldplug_body(struct daemon *d)
{
	char run_dir[160], sock[200], win[200], cmd[96];
	struct fake_vm v;
	struct frontend f;
	struct vp_devinfo info;
	struct vp_msg rep;
	const struct jv *b;
	struct jv *doc;
	uint8_t uuid[16];
	uint64_t id;
	int fd, fds0;

	fv_none(&v);
	REQUIRE(cold_daemon(d, run_dir, sizeof(run_dir)));
	fds0 = daemon_fds(d);
	CHECK(error_has(ask(d, "qemu-args nosuch"), "no server 'nosuch'"));
	CHECK(error_has(ask(d, "qemu-args net0"), "no ready device"));
	REQUIRE((id = vu_ready(d, &f, &fd)));
	/* Without qemu-args nothing is made for it. */
	CHECK_EQ(dir_entries(run_dir), 0);
	REQUIRE(cold_args(d, id, "5", sock, win, sizeof(sock)));
	CHECK(is_socket(sock));
	CHECK(access(win, R_OK | W_OK) == 0);
	snprintf(cmd, sizeof(cmd), "qemu-args net0 %" PRIu64, id);
	CHECK(error_has(ask(d, cmd), "already reserved"));
	doc = bv_show(d, id, &b);
	CHECK(str_is(b, "state", "reserved"));
	CHECK(bool_is(b, "cold", true));
	CHECK(jv_get(b, "path") && jv_get(b, "path")->type == JV_NULL);
	jv_free(doc);

	/* QEMU starts: the pair carries the frontend (the window file stays ours). */
	REQUIRE(cold_qemu(&v, sock, win));
	CHECK(bv_wait(d, id, "plugged"));
	REQUIRE(drv_snap(&v, &info));
	doc = bv_show(d, id, &b);
	CHECK(vp_uuid_parse(jv_get_str(jv_get(doc, "device"), "uuid") ?: "", uuid) == 0);
	CHECK(str_is(b, "info_pci", "00:05.0"));
	CHECK(str_is(b, "memory_pci", "00:06.0"));
	CHECK(u64_is(b, "memory_peer", (uint64_t)v.my_id));
	jv_free(doc);
	CHECK(!memcmp(info.uuid, uuid, 16));
	CHECK_EQ(info.status, VP_INFO_ST_PRESENT | VP_INFO_ST_READY);
	CHECK_EQ(info.memory_peer, (uint16_t)v.my_id);
	CHECK_EQ(info.device_id, id);
	CHECK_EQ(info.bar2_size, MEM_SIZE);
	CHECK(v.shm >= 0 && lseek(v.shm, 0, SEEK_END) == MEM_SIZE);
	eventfd_write(f.kick[0], 1);
	CHECK(fired(v.own[1], WAIT_MS));
	eventfd_write(v.peer[1], 1);
	CHECK(fired(f.call[1], WAIT_MS));

	/* STOP through the driver page, as when hot-plugged. */
	drv_up_then_stop(d, id, &v, &f, fd, &rep);

	/* The frontend goes: GONE in the window, the pair stays in the VM. */
	close(fd);
	CHECK(wait_state(d, id, "gone"));
	CHECK(fired(v.own[0], WAIT_MS));
	REQUIRE(drv_snap(&v, &info));
	CHECK_EQ(info.status, VP_INFO_ST_GONE);
	CHECK(log_has(d, "keeps its functions"));
	sleep_ms(50);
	CHECK_EQ(dir_entries(run_dir), 0);
	CHECK_EQ(daemon_fds(d), fds0);
	fv_close_dev(&v);
	fe_free(&f);
}

TEST(coldplug_qemu_args_plug_stop_gone)
{
	WITH_OWN_DAEMON(coldplug_body);
}

/* Refusals, a reservation that lapses, a backend VM that goes. */
static void coldplug_refusals_body(struct daemon *d)
{
	char run_dir[160], sock[200], win[200], cmd[128];
	struct fake_vm v;
	struct frontend f, g;
	const struct jv *b;
	struct jv *doc;
	uint64_t id, id2;
	int fd, fd2, fds0, big;

	fv_none(&v);
	REQUIRE(cold_daemon(d, run_dir, sizeof(run_dir)));
	fds0 = daemon_fds(d);
	REQUIRE((id = vu_ready(d, &f, &fd)));
	CHECK(error_has(ask(d, "qemu-args net0 999"), "no device 999"));
	snprintf(cmd, sizeof(cmd), "qemu-args net0 %" PRIu64 "@31", id);
	CHECK(error_has(ask(d, cmd), "slot"));
	snprintf(cmd, sizeof(cmd), "qemu-args net0 %" PRIu64 " %" PRIu64, id, id);
	CHECK(error_has(ask(d, cmd), "named twice"));
	CHECK(error_has(ask(d, "qemu-args net0 timeout=0"), "timeout"));
	CHECK(error_has(ask(d, "qemu-args net0 x@1"), "invalid device id"));

	/* RAM a BAR cannot be (1.5 MiB): refused, the frontend keeps its link. */
	REQUIRE(fe_init(&g, UUID1));
	big = tu_memfd("vpd-test-ram", MEM_SIZE + MEM_SIZE / 2, 1);
	REQUIRE(big >= 0);
	dup2(big, g.memfd);
	close(big);
	fd2 = unix_connect(d->net0);
	REQUIRE(fd2 >= 0);
	vu_raw_start(fd2, &g, NULL);
	REQUIRE((id2 = newest_dev(d, "vhost-user")) && id2 != id && wait_state(d, id2, "ready"));
	snprintf(cmd, sizeof(cmd), "qemu-args net0 %" PRIu64, id2);
	CHECK(error_has(ask(d, cmd), "power of two"));
	/* All or nothing: a good device with a bad one reserves neither. */
	snprintf(cmd, sizeof(cmd), "qemu-args net0 %" PRIu64 " %" PRIu64, id, id2);
	CHECK(error_has(ask(d, cmd), "power of two"));
	CHECK_EQ(dir_entries(run_dir), 0);
	CHECK(wait_state(d, id2, "ready"));
	close(fd2);
	CHECK(wait_state(d, id2, "gone"));
	fe_free(&g);

	/* Nobody starts QEMU: the reservation lapses, its files go. */
	snprintf(cmd, sizeof(cmd), "qemu-args net0 timeout=1 %" PRIu64, id);
	doc = ask(d, cmd);
	CHECK(u64_is(doc, "timeout_s", 1));
	CHECK_EQ(jv_get(doc, "args") ? jv_get(doc, "args")->n : 0, 8);
	jv_free(doc);
	CHECK_EQ(dir_entries(run_dir), 2);
	for (int64_t end = now_ms() + WAIT_MS; now_ms() < end && !log_has(d, "lapsed");)
		sleep_ms(20);
	CHECK(log_has(d, "reservation lapsed"));
	CHECK_EQ(dir_entries(run_dir), 0);
	doc = bv_show(d, id, &b);
	CHECK(b && b->type == JV_NULL);
	jv_free(doc);

	/* Again, and QEMU starts then quits: the device is free for the next. */
	REQUIRE(cold_args(d, id, NULL, sock, win, sizeof(sock)));
	REQUIRE(cold_qemu(&v, sock, win));
	CHECK(bv_wait(d, id, "plugged"));
	fv_close_dev(&v);
	for (int64_t end = now_ms() + WAIT_MS; now_ms() < end && !log_has(d, "let go of");)
		sleep_ms(20);
	CHECK(log_has(d, "can be cold-plugged again"));
	CHECK_EQ(dir_entries(run_dir), 0);
	{
		static struct prog p;
		char dev[32], *at;

		snprintf(dev, sizeof(dev), "%" PRIu64, id);
		run(&p, ctl_bin, "--control", d->ctl, "qemu-args", "--shell", "net0", dev, NULL);
		CHECK_EQ(p.status, 0);
		/* One shell line: the eight arguments, nothing to quote here. */
		CHECK(!strncmp(p.out, "-chardev socket,id=", 19));
		CHECK(strchr(p.out, '\n') == p.out + strlen(p.out) - 1);
		CHECK(strstr(p.out, " -device ivshmem-doorbell,") != NULL);
		at = strstr(p.out, ",path=");
		REQUIRE(at);
		snprintf(sock, sizeof(sock), "%.*s", (int)strcspn(at + 6, ", \n"), at + 6);
		CHECK(is_socket(sock));
	}
	CHECK(bv_wait(d, id, "reserved"));
	/* The frontend goes while reserved: the reservation ends, QEMU cannot connect. */
	close(fd);
	CHECK(wait_state(d, id, "gone"));
	sleep_ms(50);
	CHECK(unix_connect(sock) < 0);
	CHECK_EQ(dir_entries(run_dir), 0);
	CHECK_EQ(daemon_fds(d), fds0);
	fe_free(&f);
}

TEST(coldplug_refusals_lapse_and_vm_exit)
{
	WITH_OWN_DAEMON(coldplug_refusals_body);
}

/* Cold plug into a backend VM with QMP (backend-vm= too): device_del when it goes. */
static void coldplug_qmp_body(struct daemon *d)
{
	char run_dir[160], qmp[160], spec[400], sock[200], win[200], cmd[96];
	char *args[] = { "--server", spec, "--control", d->ctl, "--run-dir", run_dir,
			 "--log-level", "debug", NULL };
	struct fake_vm v;
	struct frontend f;
	struct jv *doc;
	const struct jv *b;
	const char *name;
	uint64_t id;
	int fd, fds0;

	fv_none(&v);
	snprintf(run_dir, sizeof(run_dir), "%s/run/bevm", d->dir);
	snprintf(qmp, sizeof(qmp), "%s/qmp.sock", d->dir);
	/* The backend VM is not running yet: its QMP socket does not answer. */
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend-vm=%s,backend-grace=60", d->net0,
		 qmp);
	REQUIRE(daemon_spawn_argv(d, args));
	fds0 = daemon_fds(d);
	REQUIRE((id = vu_ready(d, &f, &fd)));
	CHECK(bv_wait(d, id, "waiting"));
	snprintf(cmd, sizeof(cmd), "qemu-args net0 %" PRIu64, id);
	doc = ask(d, cmd);
	CHECK(str_is(doc, "backend_vm", qmp));
	name = jv_get_str(nth(jv_get(doc, "devices"), 0), "qemu_id");
	REQUIRE(name);
	snprintf(v.info, sizeof(v.info), "%s-i", name);
	snprintf(v.mem, sizeof(v.mem), "%s-m", name);
	snprintf(v.chr, sizeof(v.chr), "%s-c", name);
	snprintf(v.obj, sizeof(v.obj), "%s-im", name);
	snprintf(sock, sizeof(sock), "%s", jv_get_str(nth(jv_get(doc, "devices"), 0), "socket") ?: "");
	snprintf(win, sizeof(win), "%s", jv_get_str(nth(jv_get(doc, "devices"), 0), "window") ?: "");
	jv_free(doc);
	CHECK(bv_wait(d, id, "reserved"));

	/* QEMU starts: chardev first, then its monitor answers. */
	REQUIRE(cold_qemu(&v, sock, win));
	CHECK(bv_wait(d, id, "plugged"));
	REQUIRE(fv_listen_keep(&v, qmp));
	REQUIRE(fv_accept(&v, 8000));
	/* Nothing to hot-plug: it is there already. */
	CHECK(fv_read(&v, 200) == NULL);
	CHECK(error_has(ask(d, "qemu-args net0"), "is running"));
	doc = bv_show(d, id, &b);
	CHECK(str_is(b, "state", "plugged"));
	CHECK(bool_is(b, "cold", true));
	CHECK(str_is(b, "path", qmp));
	jv_free(doc);

	/* The frontend goes: device_del of both, then chardev-remove and object-del. */
	close(fd);
	CHECK(fv_unplug(&v, true));
	CHECK(wait_state(d, id, "gone"));
	sleep_ms(50);
	CHECK_EQ(dir_entries(run_dir), 0);
	CHECK_EQ(daemon_fds(d), fds0 + 1);  /* and the QMP connection, not there at first */
	fv_free(&v);
	fe_free(&f);
}

TEST(coldplug_with_qmp_unplugged_by_device_del)
{
	WITH_OWN_DAEMON(coldplug_qmp_body);
}

int main(int argc, char **argv)
{
	char *args[8];
	int n = 0, r;

	if (argc < 3) {
		fprintf(stderr, "usage: %s VHOST_PCID VHOST_PCI_CTL [CASE-FILTER]\n", argv[0]);
		return 2;
	}
	pcid_bin = argv[1];
	ctl_bin = argv[2];
	if (access(pcid_bin, X_OK) || access(ctl_bin, X_OK)) {
		fprintf(stderr, "%s: cannot run %s or %s\n", argv[0], pcid_bin, ctl_bin);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Our own frontends' library messages would drown the TAP lines. */
	vp_log_set_level(VP_LOG_ERR);
	args[n++] = argv[0];
	for (int i = 3; i < argc && n < 7; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	r = tu_main(n, args);
	kill_kids();
	return r;
}

/*
 * design=2.1: the daemon serves a pair broker. Two peers (child processes)
 * join, get their halves (the other's read-only, so a write into it would
 * fault: checked through the fd's access mode and a refused mprotect), move
 * 20000 frames each way, and "pairs" shows who joined; a third is refused.
 */
static int pair_peer(const char *path, unsigned *who, int hold_fd)
{
	struct vp_net21_fds f;
	struct vp_net21 *n = NULL;
	uint8_t buf[256];
	struct vp_pkt pk = { .data = buf };
	uint32_t sent = 0, got = 0;
	int s, e = 0;
	int64_t end = now_ms() + 20000;
	void *m;

	if (vp_pair21_join(path, 5000, &f, &s) < 0)
		return 10;
	*who = f.peer;
	if ((fcntl(f.peer_fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		return 11;
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, f.peer_fd, 0);
	if (m == MAP_FAILED || mprotect(m, 4096, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		return 12;
	munmap(m, 4096);
	if (vp_net21_new(&n, &f, VP_NET_IRQ) < 0)
		return 13;
	vp_net21_fds_close(&f);
	while ((sent < 20000 || got < 20000) && now_ms() < end) {
		int r = 0;

		if (sent < 20000) {
			memset(&pk.hdr, 0, sizeof(pk.hdr));
			pk.len = 60 + sent % 100;
			memset(buf, (int)(sent & 0xff), pk.len);
			memcpy(buf, &sent, 4);
			r = vp_net21_tx_burst(n, &pk, 1, 0);
			if (r < 0)
				return 14;
			sent += (uint32_t)r;
		}
		pk.len = sizeof(buf);
		e = vp_net21_rx_burst(n, &pk, 1);
		if (e < 0)
			return 15;
		if (e == 1) {
			uint32_t seq;

			memcpy(&seq, buf, 4);
			if (seq != got || pk.len != 60 + got % 100 || buf[pk.len - 1] != (got & 0xff))
				return 16;
			got++;
		}
		if (!r && !e)
			vp_net21_wait(n, got < 20000, sent < 20000, 50);
	}
	/* Stay joined until the test has looked (the pipe's write end closes). */
	{
		struct pollfd hp = { .fd = hold_fd, .events = POLLIN };

		poll(&hp, 1, 20000);
	}
	vp_net21_free(n);
	close(s);
	return sent == 20000 && got == 20000 ? 0 : 17;
}

TEST(pair21_design_served_shown_and_full)
{
	struct daemon d;
	char s0[200];
	char *args[] = { "--server", s0, "--control", d.ctl, "--log-level", "debug", NULL };
	pid_t kid[2];
	struct jv *doc;
	const struct jv *p;
	int hold[2];

	REQUIRE(daemon_init(&d));
	snprintf(s0, sizeof(s0), "path=%s,id=pair0,design=2.1", d.net0);
	REQUIRE(daemon_spawn_argv(&d, args));
	REQUIRE(pipe2(hold, O_CLOEXEC) == 0);
	for (unsigned i = 0; i < 2; i++) {
		kid[i] = fork();
		if (kid[i] == 0) {
			unsigned who = 9;

			alarm(60);
			close(hold[1]);
			_exit(pair_peer(d.net0, &who, hold[0]));
		}
	}
	close(hold[0]);
	/* Both joined: shown, and a third is refused. */
	{
		int64_t end = now_ms() + 10000;
		bool both = false;

		while (!both && now_ms() < end) {
			doc = ask(&d, "pairs");
			p = nth(jv_get(doc, "pairs"), 0);
			both = p && bool_is(p, "peer0", true) && bool_is(p, "peer1", true);
			if (both) {
				struct vp_net21_fds f;
				int s;

				CHECK(str_is(p, "id", "pair0") && str_is(p, "design", "2.1"));
				CHECK_EQ(vp_pair21_join(d.net0, 2000, &f, &s), -ECONNREFUSED);
			}
			jv_free(doc);
			if (!both)
				sleep_ms(10);
		}
		CHECK(both);
	}
	close(hold[1]);
	for (unsigned i = 0; i < 2; i++)
		CHECK(exited_with(wait_exit(kid[i], 30000), 0));
	/* Both left: the daemon frees their slots once it sees them go. */
	{
		int64_t end = now_ms() + 5000;
		bool freed = false;

		for (;;) {
			doc = ask(&d, "pairs");
			p = nth(jv_get(doc, "pairs"), 0);
			freed = p && bool_is(p, "peer0", false) && bool_is(p, "peer1", false);
			if (freed || now_ms() > end)
				break;
			jv_free(doc);
			sleep_ms(10);
		}
		CHECK(freed);
		CHECK(p && u64_is(p, "joins", 2) && u64_is(p, "refused", 1));
		jv_free(doc);
	}
	CHECK(exited_with(daemon_stop(&d), 0));
	CHECK(gone(d.net0));
	daemon_cleanup(&d);
}

/* ------------------------------------------------------------------------ */
/* packed rings through the relay (native 1.1: positions in the STOP ack)  */

#define F_PACKED (1ull << VIRTIO_F_RING_PACKED)
#define PK_FEATURES (F_VERSION_1 | F_MRG_RXBUF | F_PACKED)

/* A backend that drives packed rings (as vp-vm's does, lib/port.c): it tells
 * where each ring stopped from its STOPPED callback. */
static struct {
	unsigned n[5];
	uint64_t features;
	uint16_t resume[2];        /* positions at the latest READY */
	uint16_t stop_at[2];       /* what it tells at the next stop */
	int set_rc;
} pb;

static void pb_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
		     void *opaque)
{
	(void)opaque;
	if ((unsigned)ev < 5)
		pb.n[ev]++;
	if (ev == VP_EV_DEVICE_READY) {
		pb.features = dev->driver_features;
		for (unsigned i = 0; i < 2 && i < dev->nrings; i++)
			pb.resume[i] = dev->rings[i].last_avail_idx;
	}
	if (ev == VP_EV_DEVICE_STOPPED)
		for (unsigned i = 0; i < 2; i++)
			pb.set_rc |= vp_server_set_ring_base(srv, dev->id, i, pb.stop_at[i]);
}

static bool pb_wait(struct vp_server *b, enum vp_event ev, unsigned n)
{
	int64_t end = now_ms() + WAIT_MS;

	while (pb.n[ev] < n && now_ms() < end)
		bk_serve(b, NULL, 10);
	return pb.n[ev] >= n;
}

static bool pk_daemon(struct daemon *d, char *bpath, size_t blen)
{
	char spec[400];
	char *args[] = { "--server", spec, "--control", d->ctl, "--log-level", "debug", NULL };

	snprintf(bpath, blen, "%s/backend.sock", d->dir);
	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s,features=0x%llx,stop-timeout=2000",
		 d->net0, bpath, (unsigned long long)PK_FEATURES);
	return daemon_spawn_argv(d, args);
}

static void pk_relay_body(struct daemon *d)
{
	struct vp_server_config bc = { .on_event = pb_event, .stop_timeout_ms = 30000,
				       .features = VP_SERVER_DEFAULT_FEATURES | F_PACKED };
	struct vp_server *b = NULL;
	struct frontend f;
	struct vp_msg rep;
	char bpath[160];
	uint16_t base[2] = { 0x8000, 0x8000 };
	uint64_t id;
	int fd, fds0, call2;

	memset(&pb, 0, sizeof(pb));
	REQUIRE(pk_daemon(d, bpath, sizeof(bpath)));
	fds0 = daemon_fds(d);
	bc.path = bpath;
	REQUIRE(vp_server_new(&b, &bc) == 0);
	REQUIRE(fe_init(&f, UUID0));
	fd = unix_connect(d->net0);
	REQUIRE(fd >= 0);
	/* A stock packed frontend (DPDK packed_vq=1): fresh rings, lap 1. */
	vu_raw_start_feat(fd, &f, base, -1, PK_FEATURES);
	CHECK(pb_wait(b, VP_EV_DEVICE_READY, 1));
	id = newest_dev(d, "vhost-user");
	CHECK(wait_backend(d, id, "attached"));
	CHECK(pb.features & F_PACKED);
	CHECK_EQ(pb.resume[0], 0x8000);
	CHECK_EQ(pb.resume[1], 0x8000);

	/* Stop: the reply carries where the backend said it stopped, in both halves. */
	pb.stop_at[0] = 0x8000 | 37;
	pb.stop_at[1] = 200;  /* lap 0: it wrapped once */
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK(vu_wait_reply(b, fd, WAIT_MS, &rep) >= 0);
	CHECK_EQ(rep.p.state.index, 0);
	CHECK_EQ(rep.p.state.num, 0x8025u | 0x8025u << 16);
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 1, 0);
	CHECK(vu_wait_reply(b, fd, WAIT_MS, &rep) >= 0);
	CHECK_EQ(rep.p.state.index, 1);
	CHECK_EQ(rep.p.state.num, 200u | 200u << 16);
	CHECK_EQ(pb.set_rc, 0);
	CHECK(wait_backend(d, id, "stopped"));
	CHECK(log_has(d, "backend acked STOP"));

	/* It starts again from there; the backend resumes there, same connection. */
	base[0] = 0x8025;
	base[1] = 200;
	vu_raw_start_feat(fd, &f, base, -1, PK_FEATURES);
	CHECK(pb_wait(b, VP_EV_DEVICE_READY, 2));
	CHECK_EQ(pb.resume[0], 0x8025);
	CHECK_EQ(pb.resume[1], 200);
	CHECK_EQ(pb.n[VP_EV_DEVICE_NEW], 1);
	CHECK(wait_backend(d, id, "attached"));

	/* A change while running (a call fd replaced): re-announced from the positions
	 * the backend acked, not the frontend's old bases (packed: none in memory). */
	pb.stop_at[0] = 0x8000 | 90;
	pb.stop_at[1] = 0x8000 | 3;
	call2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, 1, call2);
	CHECK(pb_wait(b, VP_EV_DEVICE_READY, 3));
	CHECK_EQ(pb.n[VP_EV_DEVICE_STOPPED], 2);
	CHECK_EQ(pb.resume[0], 0x805a);
	CHECK_EQ(pb.resume[1], 0x8003);
	CHECK_EQ(pb.n[VP_EV_DEVICE_NEW], 1);
	CHECK(wait_backend(d, id, "attached"));
	/* A stop nobody waits on (a ring disabled, then enabled again): the backend is
	 * still asked where it stopped, and resumes there. */
	pb.stop_at[0] = 0x8000 | 100;
	pb.stop_at[1] = 0x8000 | 7;
	vu_raw_state(fd, VP_VU_SET_VRING_ENABLE, 0, 0);
	CHECK(pb_wait(b, VP_EV_DEVICE_STOPPED, 3));
	vu_raw_state(fd, VP_VU_SET_VRING_ENABLE, 0, 1);
	CHECK(pb_wait(b, VP_EV_DEVICE_READY, 4));
	CHECK_EQ(pb.resume[0], 0x8064);
	CHECK_EQ(pb.resume[1], 0x8007);
	CHECK(wait_backend(d, id, "attached"));
	/* ... and a stop after it answers the next positions. */
	pb.stop_at[0] = 0x8000 | 91;
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK(vu_wait_reply(b, fd, WAIT_MS, &rep) >= 0);
	CHECK_EQ(rep.p.state.num, 0x805bu | 0x805bu << 16);

	close(fd);
	CHECK(pb_wait(b, VP_EV_DEVICE_REMOVED, 1));
	CHECK(wait_state(d, id, "gone"));
	close(call2);
	fe_free(&f);
	vp_server_free(b);
	sleep_ms(50);
	CHECK_EQ(daemon_fds(d), fds0);
}

TEST(packed_relay_resumes_at_acked_positions)
{
	WITH_OWN_DAEMON(pk_relay_body);
}

/* ---- a raw native backend: an old one, a lying one ---- */

static bool raw_recv_ms(int fd, struct vp_msg *m, int ms)
{
	struct vp_rx rx;
	int r = 0;

	vp_rx_init(&rx);
	for (int64_t end = now_ms() + ms; r == 0 && now_ms() < end;) {
		struct pollfd p = { fd, POLLIN, 0 };

		poll(&p, 1, 10);
		r = vp_sock_recv(fd, &rx, m);
	}
	vp_rx_reset(&rx);
	return r == 1;
}

/* The daemon's relay connects: accept it and answer its HELLO as 1.minor. */
static int raw_backend_accept(int lfd, uint16_t minor)
{
	struct pollfd p = { lfd, POLLIN, 0 };
	struct vp_msg m;
	int fd;

	if (poll(&p, 1, WAIT_MS) != 1)
		return -1;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!raw_recv_ms(fd, &m, WAIT_MS) || m.request != VP_PCI_HELLO) {
		close(fd);
		return -1;
	}
	vp_msg_init(&m, VP_PCI_HELLO, VP_MSG_REPLY);
	m.p.hello = (struct vp_pci_hello){ VP_PCI_MAGIC, 1, minor, 0 };
	vp_sock_send(fd, &m);
	return fd;
}

/* Ask the relay for the device until START: the features it wants. */
static uint64_t raw_backend_start(int fd)
{
	static const uint32_t asks[] = { VP_PCI_GET_UUID, VP_PCI_GET_MEMORY_INFO,
					 VP_PCI_GET_DEVICE_INFO, VP_PCI_GET_FEATURE_BITS,
					 VP_PCI_SET_FEATURE_BITS };
	uint64_t want = 0;
	struct vp_msg m;

	for (unsigned i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
		vp_msg_init(&m, asks[i], 0);
		m.p.u64 = want;
		if (vp_sock_send(fd, &m) < 0 || !raw_recv_ms(fd, &m, WAIT_MS) ||
		    m.request != asks[i])
			return 0;
		if (asks[i] == VP_PCI_GET_FEATURE_BITS)
			want = m.p.features.driver_features;
		vp_msg_close_fds(&m);
	}
	vp_msg_init(&m, VP_PCI_START, 0);
	m.p.u64 = 1;
	return vp_sock_send(fd, &m) == 0 ? want : 0;
}

static void pk_lying_body(struct daemon *d)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct frontend f;
	struct vp_msg m, rep;
	char bpath[160], st[32], why[400];
	uint16_t base[2] = { 0x8000, 0x8000 };
	uint64_t id;
	int lfd, bfd, fd, fds0;
	struct jv *doc;

	REQUIRE(pk_daemon(d, bpath, sizeof(bpath)));
	fds0 = daemon_fds(d);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(strlen(bpath) < sizeof(a.sun_path));
	memcpy(a.sun_path, bpath, strlen(bpath) + 1);
	REQUIRE(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 4) == 0);
	REQUIRE(fe_init(&f, UUID0));
	fd = unix_connect(d->net0);
	REQUIRE(fd >= 0);
	vu_raw_start_feat(fd, &f, base, -1, PK_FEATURES);

	/* A 1.0 backend would misread packed rings as split: refused, the reason shown. */
	bfd = raw_backend_accept(lfd, 0);
	REQUIRE(bfd >= 0);
	CHECK(raw_recv_ms(bfd, &m, WAIT_MS) && m.request == VP_PCI_ERROR);
	CHECK(strstr(m.p.error.reason, "the server speaks 1.0") != NULL);
	close(bfd);
	id = newest_dev(d, "vhost-user");
	CHECK(wait_backend(d, id, "waiting"));
	backend_of(d, id, st, sizeof(st), why, sizeof(why));
	CHECK(strstr(why, "need vhost-pci 1.1; the server speaks 1.0") != NULL);
	CHECK(wait_state(d, id, "ready"));  /* the frontend's device lives on */

	/* A 1.1 backend takes it (retried), then lies in its STOP ack. */
	bfd = raw_backend_accept(lfd, 1);
	REQUIRE(bfd >= 0);
	CHECK(raw_backend_start(bfd) & F_PACKED);
	CHECK(wait_backend(d, id, "attached"));
	vu_raw_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK(raw_recv_ms(bfd, &m, WAIT_MS) && m.request == VP_PCI_STOP &&
	      (m.flags & VP_MSG_NEED_REPLY));
	vp_msg_init(&m, VP_PCI_RING_BASE, 0);
	m.p.state = (struct vp_vring_state){ 0, 0x80008000u | (RING_NUM << 16) | RING_NUM };
	vp_sock_send(bfd, &m);
	vp_msg_init(&m, VP_PCI_STOP, VP_MSG_REPLY);
	vp_sock_send(bfd, &m);
	/* Told why, its connection closed; the frontend (whose rings are lost) dropped. */
	CHECK(raw_recv_ms(bfd, &m, WAIT_MS) && m.request == VP_PCI_ERROR);
	CHECK(strstr(m.p.error.reason, "past its 256 descriptors") != NULL);
	CHECK(vu_wait_reply(NULL, fd, WAIT_MS, &rep) < 0);
	CHECK(wait_state(d, id, "gone"));
	CHECK(log_has(d, "where its packed rings stopped is lost"));
	doc = ask(d, "servers");
	CHECK(u64_is(nth(jv_get(doc, "servers"), 0), "packed_lost", 1));
	CHECK(strstr(jv_get_str(nth(jv_get(doc, "servers"), 0), "last_refusal") ?: "",
		     "packed rings stopped is lost") != NULL);
	jv_free(doc);
	close(bfd);
	close(fd);
	close(lfd);
	fe_free(&f);
	sleep_ms(100);
	CHECK_EQ(daemon_fds(d), fds0);
}

TEST(packed_relay_old_or_lying_backend_refused)
{
	WITH_OWN_DAEMON(pk_lying_body);
}
