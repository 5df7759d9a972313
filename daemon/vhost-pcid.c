/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid: the vhost-pci server daemon.
 *
 * One thread, one epoll loop: every server's vp_server_fd(), the control
 * socket and its clients, and a signalfd. Frontends (QEMU vhost-user,
 * DPDK virtio-user, native vhost-pci clients) connect to the servers; each
 * becomes a vhost-pci device, logged and visible over the control socket.
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 when starting or running fails,
 * 2 for a bad command line or config file.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/server.h"
#include "daemon.h"
#include "names.h"
#include "spec.h"

#ifndef VPD_VERSION
#define VPD_VERSION "unknown"
#endif

#define DEFAULT_CONTROL "/run/vhost-pci/control.sock"
#define DEFAULT_RUN_DIR "/run/vhost-pci/bevm"

enum { EXIT_USAGE = 2 };

/* The usage text spells the library's default out. */
_Static_assert(VP_SERVER_DEFAULT_FEATURES == 0x170008000ull,
	       "update the features default in usage_text and docs/vhost-pcid.md");

static const char usage_text[] =
"Usage: vhost-pcid [OPTIONS] --server SPEC [--server SPEC ...]\n"
"       vhost-pcid [OPTIONS] --config FILE\n"
"\n"
"The vhost-pci server daemon: accepts virtio frontends (QEMU -netdev vhost-user,\n"
"DPDK virtio-user, native vhost-pci clients) on Unix sockets and turns each into\n"
"a vhost-pci device that a backend VM can drive.\n"
"\n"
"Options:\n"
"  -s, --server SPEC      listen on a socket; repeatable. SPEC is comma-separated\n"
"                         key=value (\",,\" is a literal comma):\n"
"                           path=PATH        socket path (required; a first item\n"
"                                            without '=' is taken as the path)\n"
"                           id=NAME          server id (default: basename of path)\n"
"                           connections=N    most frontends at once, 1..1024 (32)\n"
"                           mode=OCTAL       socket file mode (0600)\n"
"                           uid=USER|N       only this user's frontends may connect;\n"
"                                            the socket file is given to that user\n"
"                           uuid=UUID        uuid reported for vhost-user frontends\n"
"                                            (default: a random one per connection)\n"
"                           features=BITS    virtio features offered to vhost-user\n"
"                                            frontends (default 0x170008000)\n"
"                           backend=PATH     announce each READY device to the\n"
"                                            backend VM listening on PATH (native\n"
"                                            vhost-pci); it then drives the rings\n"
"                           backend-vm=QMP   hot-plug each READY device into the\n"
"                                            running backend VM whose QMP socket\n"
"                                            is QMP (docs/device.md); excludes\n"
"                                            backend=\n"
"  -c, --config FILE      read 'server SPEC' lines from FILE ('#' comments);\n"
"                         may be combined with --server\n"
"  -C, --control PATH     control socket (default " DEFAULT_CONTROL ");\n"
"                         its directory is created if missing\n"
"  -r, --run-dir DIR      per-device files for backend VMs (ivshmem sockets,\n"
"                         info windows) (default " DEFAULT_RUN_DIR ")\n"
"  -t, --handshake-timeout SEC\n"
"                         drop a frontend that is not READY within SEC seconds\n"
"                         (a vhost-user one: through QEMU's init up to SET_OWNER,\n"
"                         then READY within SEC of starting the device; idle in\n"
"                         between is QEMU waiting for its guest); 0: never\n"
"                         (default 10)\n"
"  -l, --log-level LEVEL  err, warn, info (default) or debug\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Example:\n"
"  vhost-pcid --server path=/run/vhost-pci/net0.sock,id=net0,connections=32\n"
"  vhost-pci-ctl list\n"
"\n"
"Logs go to stderr. SIGTERM or SIGINT stops the daemon cleanly (exit 0).\n"
"Exit status: 0 clean stop, 1 start-up or runtime failure, 2 usage error.\n";

/* ------------------------------------------------------------------------ */
/* helpers */

int64_t vpd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vpd_mkdir_parents(const char *path)
{
	char *dir = strdup(path), *p;
	int e = 0;

	if (!dir)
		return -ENOMEM;
	p = strrchr(dir, '/');
	if (!p || p == dir) {
		free(dir);
		return 0;
	}
	*p = 0;
	for (p = dir + 1; ; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;

		*p = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			e = -errno;
			break;
		}
		*p = c;
		if (!c)
			break;
	}
	free(dir);
	return e;
}

static const char *const level_names[] = { "err", "warn", "info", "debug" };

static void log_handler(enum vp_log_level level, const char *msg, void *opaque)
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

static int parse_level(const char *s, enum vp_log_level *out)
{
	for (int i = 0; i <= VP_LOG_DEBUG; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum vp_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/* ------------------------------------------------------------------------ */
/* device events */

static void on_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
		     void *opaque)
{
	struct vpd_server *s = opaque;
	char uuid[40];

	(void)srv;
	if (ev == VP_EV_DEVICE_NEW) {
		vp_log(VP_LOG_INFO, "device %" PRIu64 " new: server %s, peer pid %d uid %d",
		       dev->id, s->spec.id, (int)dev->peer_pid, (int)dev->peer_uid);
		vpd_relay_event(s, ev, dev);
		vpd_bevm_event(s, ev, dev);
		return;
	}
	vpd_relay_event(s, ev, dev);
	vpd_bevm_event(s, ev, dev);
	vp_uuid_format(dev->uuid, uuid);
	vp_log(VP_LOG_INFO, "device %" PRIu64 " %s: server %s, uuid %s, dialect %s, "
	       "state %s, type %s, generation %u, features 0x%" PRIx64 ", %u regions, %u rings",
	       dev->id, vp_event_name(ev), s->spec.id, uuid, vp_dialect_name(dev->dialect),
	       vp_dev_state_name(dev->state), vpd_virtio_type_name(dev->type),
	       dev->generation, dev->driver_features, dev->nregions, dev->nrings);
}

/* ------------------------------------------------------------------------ */
/* servers */

static int start_server(struct vpd *d, struct vpd_server *s)
{
	struct vp_server_config cfg = {
		.path = s->spec.path,
		.id = s->spec.id,
		.max_connections = s->spec.connections,
		.mode = s->spec.mode,
		.check_uid = s->spec.have_uid,
		.allowed_uid = s->spec.uid,
		.have_uuid = s->spec.have_uuid,
		.features = s->spec.features,
		.allow_unsealed = s->spec.allow_unsealed,
		/* The library drops a connection not READY in time (vhost-user:
		 * not through QEMU's init, or not READY once it starts). */
		.handshake_timeout_ms = d->handshake_ms ? (unsigned)d->handshake_ms :
							  VP_SERVER_NO_TIMEOUT,
		/* The relay holds GET_VRING_BASE for the backend's STOP ack; the
		 * library's bound on that is the same stop-timeout. */
		.stop_timeout_ms = s->spec.stop_timeout_ms,
		.on_event = on_event,
		.opaque = s,
	};
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->w };
	int e;

	memcpy(cfg.uuid, s->spec.uuid, sizeof(cfg.uuid));
	e = vpd_mkdir_parents(s->spec.path);
	if (e < 0) {
		vp_log(VP_LOG_ERR, "server %s: cannot create the directory of %s: %s",
		       s->spec.id, s->spec.path, strerror(-e));
		return e;
	}
	e = vp_server_new(&s->srv, &cfg);
	if (e < 0) {
		const char *why = strerror(-e);

		if (e == -EEXIST)
			why = "the path exists and is not a socket; refusing to replace it";
		else if (e == -EADDRINUSE)
			why = "another server is listening there";
		vp_log(VP_LOG_ERR, "server %s: cannot listen on %s: %s", s->spec.id,
		       s->spec.path, why);
		return e;
	}
	/* uid=: that user must be able to open the socket we just made. */
	if (s->spec.have_uid && s->spec.uid != geteuid() &&
	    chown(s->spec.path, s->spec.uid, (gid_t)-1) < 0) {
		e = -errno;
		vp_log(VP_LOG_ERR, "server %s: cannot give %s to uid %u: %s", s->spec.id,
		       s->spec.path, (unsigned)s->spec.uid, strerror(-e));
		return e;
	}
	s->w.kind = VPD_W_SERVER;
	s->w.obj = s;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, vp_server_fd(s->srv), &ev) < 0) {
		e = -errno;
		vp_log(VP_LOG_ERR, "server %s: epoll: %s", s->spec.id, strerror(-e));
		return e;
	}
	return 0;
}

static void stop_servers(struct vpd *d)
{
	for (unsigned i = 0; i < d->nservers; i++) {
		struct vpd_server *s = &d->servers[i];

		if (s->srv) {
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, vp_server_fd(s->srv), NULL);
			/* Tells native peers, drops everyone, unlinks the socket. */
			vp_server_free(s->srv);
			s->srv = NULL;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* main loop */

static int handle_signals(int sigfd)
{
	struct signalfd_siginfo si;

	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			vp_log(VP_LOG_INFO, "%s from pid %u: shutting down",
			       si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", si.ssi_pid);
			return 1;
		default:
			vp_log(VP_LOG_INFO, "SIGHUP ignored (nothing to reload: restart to change "
			       "the configuration)");
			break;
		}
	}
	return 0;
}

static int run(struct vpd *d, struct vpd_control *ctl, int sigfd)
{
	struct epoll_event evs[32];

	for (;;) {
		int n = epoll_wait(d->epfd, evs, 32,
				   min_timeout(min_timeout(vpd_control_timeout(ctl),
							   vpd_relay_timeout(d)),
					       vpd_bevm_timeout(d)));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			vp_log(VP_LOG_ERR, "epoll_wait: %s", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct vpd_watch *w = evs[i].data.ptr;
			struct vpd_server *s;
			int e;

			switch (w->kind) {
			case VPD_W_SIGNAL:
				if (handle_signals(sigfd))
					return 0;
				break;
			case VPD_W_SERVER:
				s = w->obj;
				e = vp_server_dispatch(s->srv);
				if (e < 0) {
					vp_log(VP_LOG_ERR, "server %s failed: %s", s->spec.id,
					       strerror(-e));
					return 1;
				}
				break;
			case VPD_W_CONTROL:
			case VPD_W_CONTROL_CLIENT:
				vpd_control_event(ctl, w, evs[i].events);
				break;
			case VPD_W_RELAY:
				vpd_relay_readable(w->obj);
				break;
			case VPD_W_BEVM:
			case VPD_W_BDEV:
				vpd_bevm_watch(d, w, evs[i].events);
				break;
			case VPD_W_PAIR21:
				if (vpd_pair21_event(w->obj) < 0)
					return 1;
				break;
			}
		}
		vpd_relay_tick(d);
		vpd_relay_reap(d);
		vpd_bevm_tick(d);
		vpd_bevm_reap(d);
		vpd_control_expire(ctl);
	}
}

/* ------------------------------------------------------------------------ */
/* start-up */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	char msg[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vhost-pcid: %s\nTry 'vhost-pcid --help' for more information.\n", msg);
	return EXIT_USAGE;
}

struct opts {
	struct vpd_spec_list specs;
	const char *control;
	const char *run_dir;
	int handshake_s;
	bool have_level;
	enum vp_log_level level;
};

/* 0 to go on, or an exit status (help/version: 0, errors: 2). -1 means exit 0. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "control", required_argument, NULL, 'C' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "handshake-timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char err[600];
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:c:C:r:l:t:hV", lopts, NULL)) != -1) {
		struct vpd_spec s;

		switch (c) {
		case 's':
			if (vpd_spec_parse(optarg, &s, err, sizeof(err)) < 0)
				return usage_error("--server: %s", err);
			if (vpd_spec_list_add(&o->specs, &s, err, sizeof(err)) < 0) {
				vpd_spec_free(&s);
				return usage_error("--server: %s", err);
			}
			break;
		case 'c':
			if (vpd_config_load(optarg, &o->specs, err, sizeof(err)) < 0)
				return usage_error("%s", err);
			break;
		case 'C':
			if (!*optarg)
				return usage_error("--control needs a path");
			o->control = optarg;
			break;
		case 'r':
			if (optarg[0] != '/')
				return usage_error("--run-dir needs an absolute path");
			o->run_dir = optarg;
			break;
		case 'l':
			if (parse_level(optarg, &o->level) < 0)
				return usage_error("unknown log level '%s' (use err, warn, info or debug)",
						   optarg);
			o->have_level = true;
			break;
		case 't': {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 0 || v > 3600)
				return usage_error("handshake timeout '%s' is not a number of "
						   "seconds in 0..3600", optarg);
			o->handshake_s = (int)v;
			break;
		}
		case 'h':
			fputs(usage_text, stdout);
			return -1;
		case 'V':
			printf("vhost-pcid %s\n", VPD_VERSION);
			return -1;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!o->specs.n)
		return usage_error("no server given: use --server SPEC or --config FILE");
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .control = DEFAULT_CONTROL, .run_dir = DEFAULT_RUN_DIR, .handshake_s = VPD_HANDSHAKE_TIMEOUT_S };
	struct vpd d = { .epfd = -1 };
	struct vpd_control *ctl = NULL;
	sigset_t mask;
	int sigfd = -1, status = 1, r;
	struct epoll_event ev = { .events = EPOLLIN };
	struct vpd_watch sigw = { .kind = VPD_W_SIGNAL };

	r = parse_args(argc, argv, &o);
	if (r) {
		vpd_spec_list_free(&o.specs);
		return r < 0 ? 0 : r;
	}
	vp_log_set_handler(log_handler, NULL);
	if (o.have_level)
		vp_log_set_level(o.level);
	d.handshake_ms = o.handshake_s * 1000;
	d.run_dir = o.run_dir;

	signal(SIGPIPE, SIG_IGN);
	/*
	 * A server with allow-unsealed=on maps memory that can shrink. The
	 * control plane reads it through vp_mem_read_safe() (no fault at
	 * all); the guard is for everything else that touches a mapping.
	 */
	for (unsigned i = 0; i < o.specs.n; i++) {
		if (o.specs.v[i].allow_unsealed && (r = vp_mem_sigbus_guard()) < 0) {
			vp_log(VP_LOG_ERR, "cannot install the SIGBUS guard: %s", strerror(-r));
			goto out;
		}
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		vp_log(VP_LOG_ERR, "signalfd: %s", strerror(errno));
		goto out;
	}
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d.epfd < 0) {
		vp_log(VP_LOG_ERR, "epoll_create1: %s", strerror(errno));
		goto out;
	}
	ev.data.ptr = &sigw;
	if (epoll_ctl(d.epfd, EPOLL_CTL_ADD, sigfd, &ev) < 0) {
		vp_log(VP_LOG_ERR, "epoll: %s", strerror(errno));
		goto out;
	}
	/* The control socket first: it tells us whether a daemon already runs. */
	if (vpd_control_open(&d, o.control, &ctl) < 0)
		goto out;
	d.servers = calloc(o.specs.n, sizeof(*d.servers));
	if (!d.servers) {
		vp_log(VP_LOG_ERR, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < o.specs.n; i++) {
		struct vpd_server *s = &d.servers[d.nservers];

		if (o.specs.v[i].pair21) {
			if (vpd_pair21_add(&d, &o.specs.v[i]) < 0)
				goto out;
			continue;
		}
		s->d = &d;
		s->spec = o.specs.v[i];
		memset(&o.specs.v[i], 0, sizeof(o.specs.v[i]));
		d.nservers++;
		if (start_server(&d, s) < 0)
			goto out;
	}
	if (vpd_bevm_init(&d) < 0)
		goto out;
	vp_log(VP_LOG_INFO, "vhost-pcid %s running: %u server%s, control socket %s",
	       VPD_VERSION, d.nservers, d.nservers == 1 ? "" : "s", o.control);
	status = run(&d, ctl, sigfd);
out:
	stop_servers(&d);
	vpd_pair21_free_all(&d);
	vpd_relay_free_all(&d);
	vpd_bevm_free_all(&d);
	vpd_control_close(ctl);
	for (unsigned i = 0; i < d.nservers; i++)
		vpd_spec_free(&d.servers[i].spec);
	free(d.servers);
	vpd_spec_list_free(&o.specs);
	if (d.epfd >= 0)
		close(d.epfd);
	if (sigfd >= 0)
		close(sigfd);
	if (status == 0)
		vp_log(VP_LOG_INFO, "stopped");
	return status;
}
