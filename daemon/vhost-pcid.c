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
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/server.h"
#include "daemon.h"
#include "vp-version.h"
#include "names.h"
#include "service.h"
#include "spec.h"


#define DEFAULT_CONTROL "/run/vhost-pci/control.sock"
#define DEFAULT_RUN_DIR "/run/vhost-pci/bevm"
#ifndef VPD_DEFAULT_CONFIG
#define VPD_DEFAULT_CONFIG "/etc/vhost-pci/vhost-pcid.conf"
#endif

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
"                                            frontends (default 0x170008000; RING_PACKED,\n"
"                                            bit 34, only with backend=)\n"
"                           offloads=none|csum|tso\n"
"                                            offload features the backend honours,\n"
"                                            offered on top of the default (none;\n"
"                                            vhost_pci_net.ko: tso)\n"
"                           queues=N         virtio-net queue pairs offered (MQ),\n"
"                                            1..8 (1: no MQ; backend=: up to 2)\n"
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
"      --log-target TARGET\n"
"                         journal (\"<N>\" priority prefixes, no timestamp),\n"
"                         syslog, stderr, or auto (default: journal when\n"
"                         stderr is the journal stream JOURNAL_STREAM names)\n"
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

/* passed_fd >= 0: the listening socket socket activation gave us for it. */
static int start_server(struct vpd *d, struct vpd_server *s, int passed_fd)
{
	struct vp_server_config cfg = {
		.path = s->spec.path,
		.id = s->spec.id,
		.max_connections = s->spec.connections,
		.mode = s->spec.mode,
		.check_uid = s->spec.have_uid,
		.allowed_uid = s->spec.uid,
		.have_uuid = s->spec.have_uuid,
		.features = vpd_spec_features(&s->spec),
		.max_queue_pairs = s->spec.queues,
		.allow_unsealed = s->spec.allow_unsealed,
		/* The library drops a connection not READY in time (vhost-user:
		 * not through QEMU's init, or not READY once it starts). */
		.handshake_timeout_ms = d->handshake_ms ? (unsigned)d->handshake_ms :
							  VP_SERVER_NO_TIMEOUT,
		/* The relay and a backend VM hold GET_VRING_BASE for the STOP ack
		 * and time it out themselves at stop-timeout (logging why, counting
		 * it, dropping the late backend). The library's bound is only a
		 * backstop: later, or the two timers race and the reason is lost. */
		.stop_timeout_ms = s->spec.stop_timeout_ms + VPD_STOP_BACKSTOP_MS,
		.on_event = on_event,
		.opaque = s,
		.use_listen_fd = passed_fd >= 0,
		.listen_fd = passed_fd,
	};
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->w };
	int e;

	memcpy(cfg.uuid, s->spec.uuid, sizeof(cfg.uuid));
	/*
	 * A server with allow-unsealed=on maps memory that can shrink. The
	 * control plane reads it through vp_mem_read_safe() (no fault at
	 * all); the guard is for everything else that touches a mapping.
	 * Installing it again (a second such server, a reload) does nothing.
	 */
	if (s->spec.allow_unsealed && (e = vp_mem_sigbus_guard()) < 0) {
		vp_log(VP_LOG_ERR, "cannot install the SIGBUS guard: %s", strerror(-e));
		return e;
	}
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

static void stop_server(struct vpd *d, struct vpd_server *s)
{
	if (s->srv) {
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, vp_server_fd(s->srv), NULL);
		/* Tells native peers, drops everyone, unlinks the socket. */
		vp_server_free(s->srv);
		s->srv = NULL;
	}
}

static void stop_servers(struct vpd *d)
{
	for (unsigned i = 0; i < d->nservers; i++)
		stop_server(d, &d->servers[i]);
}

/* ------------------------------------------------------------------------ */
/* socket activation */

static struct vpd_listen_fd *passed;
static int npassed;

/* The passed socket bound to path (taken: the caller owns it), or -1. */
static int take_passed(const char *path)
{
	for (int i = 0; i < npassed; i++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int fd = passed[i].fd;

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
		    sa.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path))
			continue;
		if (strnlen(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path)) ==
			    strlen(path) && !strncmp(sa.sun_path, path, strlen(path))) {
			passed[i].fd = -1;
			return fd;
		}
	}
	return -1;
}

/* Passed sockets no server or control path named: not ours to use. */
static void close_unclaimed(void)
{
	for (int i = 0; i < npassed; i++) {
		if (passed[i].fd < 0)
			continue;
		vp_log(VP_LOG_WARN, "socket activation: fd %d%s%s is bound to no configured "
		       "server or control path: closing it", passed[i].fd,
		       passed[i].name ? " named " : "", passed[i].name ? passed[i].name : "");
		close(passed[i].fd);
		passed[i].fd = -1;
	}
}

/* ------------------------------------------------------------------------ */
/* main loop */

struct opts {
	const char **server_args;      /* --server SPECs, in order */
	const char **config_files;     /* --config FILEs (re-read on SIGHUP) */
	unsigned nserver_args, nconfig_files;
	struct vpd_spec_list specs;
	const char *control;
	const char *run_dir;
	int handshake_s;
	bool have_level;
	enum vp_log_level level;
	enum vpd_log_target log_target;
};

/* The servers the command line and the config files name now. 0, or -errno
 * with the reason in err. */
static int build_specs(const struct opts *o, struct vpd_spec_list *l, char *err, size_t errlen)
{
	char msg[600];
	int e;

	for (unsigned i = 0; i < o->nserver_args; i++) {
		struct vpd_spec s;

		e = vpd_spec_parse(o->server_args[i], &s, msg, sizeof(msg));
		if (!e) {
			e = vpd_spec_list_add(l, &s, msg, sizeof(msg));
			vpd_spec_free(&s);
		}
		if (e) {
			snprintf(err, errlen, "--server: %s", msg);
			return e;
		}
	}
	for (unsigned i = 0; i < o->nconfig_files; i++) {
		e = vpd_config_load(o->config_files[i], l, err, errlen);
		if (e)
			return e;
	}
	if (l->n > VPD_MAX_SERVERS) {
		snprintf(err, errlen, "%u servers: at most %u", l->n, VPD_MAX_SERVERS);
		return -E2BIG;
	}
	return 0;
}

/* A slot of d->servers for a new server. Slots never move: relays, backend
 * VMs, epoll and the library's callbacks hold pointers into them. */
static struct vpd_server *free_slot(struct vpd *d)
{
	for (unsigned i = 0; i < VPD_MAX_SERVERS; i++) {
		if (!d->servers[i].srv && !d->servers[i].spec.id) {
			if (i >= d->nservers)
				d->nservers = i + 1;
			d->servers[i].d = d;
			return &d->servers[i];
		}
	}
	return NULL;
}

static const struct vpd_spec *find_spec(const struct vpd_spec_list *l, const char *id)
{
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].id, id))
			return &l->v[i];
	return NULL;
}

/*
 * SIGHUP: read the config again. Servers whose spec is unchanged keep
 * running with their devices; removed ones stop (their frontends are
 * dropped); changed ones are restarted; new ones start. A server with
 * backend= or backend-vm=, and a design=2.1 pair, cannot come, go or change
 * this way (that state is set up at start-up): such a reload is refused as a
 * whole.
 */
static void reload(struct vpd *d, const struct opts *o)
{
	struct vpd_spec_list nl = { 0 };
	unsigned kept = 0, added = 0, removed = 0, failed = 0, npairs = 0;
	char err[700];

	vpd_notify("RELOADING=1");
	vp_log(VP_LOG_INFO, "SIGHUP: reloading the configuration");
	if (build_specs(o, &nl, err, sizeof(err)) < 0) {
		vp_log(VP_LOG_ERR, "reload failed, configuration unchanged: %s", err);
		goto out;
	}
	for (unsigned i = 0; i < d->nservers; i++) {
		const struct vpd_server *s = &d->servers[i];
		const struct vpd_spec *n;

		if (!s->spec.id)
			continue;
		n = find_spec(&nl, s->spec.id);
		if ((s->spec.backend || s->spec.backend_vm) && (!n || !vpd_spec_equal(n, &s->spec))) {
			vp_log(VP_LOG_ERR, "reload refused, configuration unchanged: server %s has "
			       "a backend (backend= or backend-vm=), which only a restart can "
			       "remove or change", s->spec.id);
			goto out;
		}
	}
	for (unsigned i = 0; i < nl.n; i++)
		npairs += nl.v[i].pair21;
	for (unsigned i = 0; i < nl.n; i++) {
		bool have = false;

		if (npairs != d->npairs || (nl.v[i].pair21 && !vpd_pair21_running(d, &nl.v[i]))) {
			vp_log(VP_LOG_ERR, "reload refused, configuration unchanged: the design=2.1 "
			       "pairs differ from the running ones, which only a restart can change");
			goto out;
		}
		for (unsigned j = 0; j < d->nservers; j++)
			have |= d->servers[j].spec.id && vpd_spec_equal(&d->servers[j].spec, &nl.v[i]);
		if (!have && nl.v[i].backend_vm) {
			vp_log(VP_LOG_ERR, "reload refused, configuration unchanged: new server %s "
			       "has backend-vm=, which only a restart can add", nl.v[i].id);
			goto out;
		}
	}
	/* Stop first: a changed server may reuse its path. */
	for (unsigned i = 0; i < d->nservers; i++) {
		struct vpd_server *s = &d->servers[i];
		const struct vpd_spec *n;

		if (!s->spec.id)
			continue;
		n = find_spec(&nl, s->spec.id);
		if (n && vpd_spec_equal(n, &s->spec)) {
			kept++;
			continue;
		}
		vp_log(VP_LOG_INFO, "server %s: %s", s->spec.id, n ? "changed: restarting it" :
		       "no longer configured: stopping it");
		stop_server(d, s);
		vpd_spec_free(&s->spec);
		memset(s, 0, sizeof(*s));
		removed += !n;
	}
	for (unsigned i = 0; i < nl.n; i++) {
		struct vpd_server *s;
		bool have = false;

		for (unsigned j = 0; j < d->nservers; j++)
			have |= d->servers[j].spec.id && !strcmp(d->servers[j].spec.id, nl.v[i].id);
		if (have || nl.v[i].pair21)  /* pairs: unchanged, checked above */
			continue;
		s = free_slot(d);
		if (!s)
			break;  /* cannot happen: build_specs() bounds the count */
		s->spec = nl.v[i];
		memset(&nl.v[i], 0, sizeof(nl.v[i]));
		if (start_server(d, s, -1) < 0) {
			/* Logged; the others go on. A later SIGHUP may retry it. */
			stop_server(d, s);
			vpd_spec_free(&s->spec);
			memset(s, 0, sizeof(*s));
			failed++;
			continue;
		}
		added++;
	}
	while (d->nservers && !d->servers[d->nservers - 1].spec.id)
		d->nservers--;
	vp_log(VP_LOG_INFO, "reloaded: %u server%s kept, %u started, %u stopped, %u failed",
	       kept, kept == 1 ? "" : "s", added, removed, failed);
out:
	vpd_spec_list_free(&nl);
	vpd_notify("READY=1");
}

/* 1: stop. */
static int handle_signals(struct vpd *d, const struct opts *o, int sigfd)
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
			reload(d, o);
			break;
		}
	}
	return 0;
}

static int run(struct vpd *d, const struct opts *o, struct vpd_control *ctl, int sigfd)
{
	struct epoll_event evs[32];

	for (;;) {
		int n = epoll_wait(d->epfd, evs, 32,
				   min_timeout(min_timeout(min_timeout(vpd_control_timeout(ctl),
								       vpd_relay_timeout(d)),
							   vpd_bevm_timeout(d)),
					       vpd_pair21_timeout(d)));

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
				if (handle_signals(d, o, sigfd))
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
			case VPD_W_PAIR21_QEMU:
				if (vpd_pair21_qemu_event(w->obj) < 0)
					return 1;
				break;
			case VPD_W_PAIR21_QMP:
				vpd_pair21_qmp_event(w->obj);
				break;
			}
		}
		vpd_relay_tick(d);
		vpd_relay_reap(d);
		vpd_bevm_tick(d);
		vpd_bevm_reap(d);
		vpd_pair21_tick(d);
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


/* 0 to go on, or an exit status (help/version: 0, errors: 2). -1 means exit 0. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "control", required_argument, NULL, 'C' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-target", required_argument, NULL, 'L' },
		{ "handshake-timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char err[700];
	int c;

	/* argv outlives the daemon's run: SIGHUP re-reads these. */
	o->server_args = calloc((size_t)argc + 1, sizeof(*o->server_args));
	o->config_files = calloc((size_t)argc + 1, sizeof(*o->config_files));
	if (!o->server_args || !o->config_files)
		return usage_error("out of memory");
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:c:C:r:l:t:hV", lopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->server_args[o->nserver_args++] = optarg;
			break;
		case 'c':
			o->config_files[o->nconfig_files++] = optarg;
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
			if (vpd_log_level_parse(optarg, &o->level) < 0)
				return usage_error("unknown log level '%s' (use err, warn, info or debug)",
						   optarg);
			o->have_level = true;
			break;
		case 'L':
			if (vpd_log_target_parse(optarg, &o->log_target) < 0)
				return usage_error("unknown log target '%s' (use journal, syslog, "
						   "stderr or auto)", optarg);
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
			printf("vhost-pcid %s\n", VP_VERSION);
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
	/* Neither: the installed config, if there is one. */
	if (!o->nserver_args && !o->nconfig_files && access(VPD_DEFAULT_CONFIG, F_OK) == 0)
		o->config_files[o->nconfig_files++] = VPD_DEFAULT_CONFIG;
	if (build_specs(o, &o->specs, err, sizeof(err)) < 0)
		return usage_error("%s", err);
	/* A config file may list no server yet: SIGHUP adds them later. */
	if (!o->specs.n && !o->nconfig_files)
		return usage_error("no server given: use --server SPEC or --config FILE "
				   "(default " VPD_DEFAULT_CONFIG ")");
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
		free(o.server_args);
		free(o.config_files);
		return r < 0 ? 0 : r;
	}
	vpd_log_start(o.log_target);
	if (o.have_level)
		vp_log_set_level(o.level);
	d.handshake_ms = o.handshake_s * 1000;
	d.run_dir = o.run_dir;

	signal(SIGPIPE, SIG_IGN);
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
	npassed = vpd_listen_fds(&passed);
	if (npassed < 0) {
		vp_log(VP_LOG_ERR, "socket activation: bad LISTEN_FDS/LISTEN_PID: %s",
		       strerror(-npassed));
		goto out;
	}
	/* The control socket first: it tells us whether a daemon already runs. */
	if (vpd_control_open(&d, o.control, take_passed(o.control), &ctl) < 0)
		goto out;
	/* Fixed: a reload fills free slots, pointers into it stay valid. */
	d.servers = calloc(VPD_MAX_SERVERS, sizeof(*d.servers));
	if (!d.servers) {
		vp_log(VP_LOG_ERR, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < o.specs.n; i++) {
		struct vpd_server *s;
		int fd;

		if (o.specs.v[i].pair21) {
			if (vpd_pair21_add(&d, &o.specs.v[i]) < 0)
				goto out;
			continue;
		}
		s = free_slot(&d);
		s->spec = o.specs.v[i];
		memset(&o.specs.v[i], 0, sizeof(o.specs.v[i]));
		fd = take_passed(s->spec.path);
		if (start_server(&d, s, fd) < 0) {
			if (fd >= 0 && !s->srv)
				close(fd);
			goto out;
		}
	}
	close_unclaimed();
	if (vpd_bevm_init(&d) < 0)
		goto out;
	if (!d.nservers)
		vp_log(VP_LOG_WARN, "no servers configured: add 'server SPEC' lines to the config "
		       "and send SIGHUP");
	vp_log(VP_LOG_INFO, "vhost-pcid %s running: %u server%s, control socket %s",
	       VP_VERSION, d.nservers, d.nservers == 1 ? "" : "s", o.control);
	/* Every socket listens now: a frontend started after us can connect. */
	if ((r = vpd_notify("READY=1")) < 0)
		vp_log(VP_LOG_WARN, "cannot notify the service manager: %s", strerror(-r));
	status = run(&d, &o, ctl, sigfd);
	vpd_notify("STOPPING=1");
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
	free(o.server_args);
	free(o.config_files);
	close_unclaimed();
	vpd_listen_fds_free(passed, npassed);
	if (d.epfd >= 0)
		close(d.epfd);
	if (sigfd >= 0)
		close(sigfd);
	if (status == 0)
		vp_log(VP_LOG_INFO, "stopped");
	return status;
}
