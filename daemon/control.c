/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid's control socket: one command line in, one JSON document out,
 * then the connection is closed.
 *
 * Security model: the socket is mode 0600, so clients run as the daemon's
 * user; still, a client must never stall or crash the daemon. Every socket
 * is non-blocking and driven by the main loop; a client gets
 * VPD_CTL_TIMEOUT_MS to send its line and again to read the answer, its
 * line is bounded (VPD_CTL_LINE_MAX), at most VPD_CTL_MAX_CLIENTS are served
 * at once, and whatever it sends is only ever echoed back JSON-escaped.
 *
 * Reading a frontend's rings for "show" touches memory a frontend controls:
 * vp_device_ring_status() reads it fault-safely, so a frontend that shrank
 * its memory file gets an error in the answer instead of killing us.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/server.h"
#include "daemon.h"
#include "json.h"
#include "names.h"

struct ctl_client {
	struct vpd_watch w;
	struct vpd_control *ctl;
	struct ctl_client *next;
	int fd;
	char in[VPD_CTL_LINE_MAX + 2];  /* line, '\n', NUL */
	size_t inlen;
	char *out;
	size_t outlen, outoff;
	bool sending;
	int64_t deadline;
};

struct vpd_control {
	struct vpd *d;
	struct vpd_watch w;
	int fd;
	char *path;
	dev_t st_dev;
	ino_t st_ino;
	struct ctl_client *clients;
	unsigned nclients;
};

/* ------------------------------------------------------------------------ */
/* JSON rendering */

static void feature_names(struct jw *w, const char *key, uint32_t type, uint64_t f,
			  bool protocol)
{
	jw_arr_begin(w, key);
	for (unsigned b = 0; b < 64; b++) {
		const char *n;

		if (!(f & (1ull << b)))
			continue;
		n = protocol ? vpd_protocol_feature_name(b) : vpd_feature_name(type, b);
		if (n)
			jw_str(w, NULL, n);
		else
			jw_strf(w, NULL, "BIT_%u", b);
	}
	jw_arr_end(w);
}

static const char *status_error(int e)
{
	switch (e) {
	case -ENODATA: return "ring addresses are not known yet";
	case -EFAULT: return "ring lies outside the frontend's memory, or that memory "
			     "is no longer accessible (file shrunk)";
	case -ENOENT: return "no such ring";
	default: return strerror(-e);
	}
}

static void render_live(struct jw *w, const struct vp_device *dev, unsigned ring)
{
	struct vp_ring_status st;
	int e = vp_device_ring_status(dev, ring, &st);

	jw_obj_begin(w, "live");
	if (e < 0) {
		jw_str(w, "error", status_error(e));
		jw_obj_end(w);
		return;
	}
	jw_u64(w, "avail_idx", st.avail_idx);
	jw_u64(w, "used_idx", st.used_idx);
	jw_u64(w, "avail_flags", st.avail_flags);
	jw_u64(w, "used_flags", st.used_flags);
	jw_u64(w, "in_flight", (uint16_t)(st.avail_idx - st.used_idx));
	jw_arr_begin(w, "descriptors");
	for (unsigned i = 0; i < st.ndesc && i < sizeof(st.desc) / sizeof(st.desc[0]); i++) {
		char fl[64];

		vpd_desc_flags(st.desc[i].flags, fl, sizeof(fl));
		jw_obj_begin(w, NULL);
		jw_u64(w, "head", st.desc[i].head);
		jw_hex(w, "addr", st.desc[i].addr);
		jw_u64(w, "len", st.desc[i].len);
		jw_u64(w, "flags", st.desc[i].flags);
		jw_str(w, "flag_names", fl);
		jw_bool(w, "in_memory", st.desc[i].in_memory);
		jw_obj_end(w);
	}
	jw_arr_end(w);
	jw_obj_end(w);
}

/* backend=: who drives the device, and why not. */
static void render_backend(struct jw *w, const struct vpd *d, const struct vp_device *dev)
{
	const struct vpd_server *s = NULL;
	const char *why = NULL, *st;
	uint64_t stop_timeouts = 0;

	for (unsigned i = 0; i < d->nservers; i++)
		if (d->servers[i].srv && !strcmp(d->servers[i].spec.id, dev->server_id))
			s = &d->servers[i];
	if (s && vpd_bevm_render_device(w, d, s, dev->id))
		return;
	if (!s || !s->spec.backend) {
		jw_null(w, "backend");
		return;
	}
	jw_obj_begin(w, "backend");
	jw_str(w, "path", s->spec.backend);
	st = vpd_relay_describe(d, dev->id, &why, &stop_timeouts);
	if (!st) /* not READY yet, or refused at the door */
		st = s->admission_closed ? "refused" : "none";
	jw_str(w, "state", st);
	jw_str(w, "reason", why ? why : s->admission_closed ? s->backend_why : NULL);
	jw_u64(w, "stop_timeouts", stop_timeouts);
	jw_obj_end(w);
}

static void render_device(struct jw *w, const char *key, const struct vpd *d,
			  const struct vp_device *dev, bool live)
{
	char buf[3 * VP_PCI_CONFIG_MAX + 1];

	jw_obj_begin(w, key);
	jw_u64(w, "id", dev->id);
	jw_str(w, "server", dev->server_id);
	jw_str(w, "dialect", vp_dialect_name(dev->dialect));
	jw_str(w, "state", vp_dev_state_name(dev->state));
	render_backend(w, d, dev);
	vp_uuid_format(dev->uuid, buf);
	jw_str(w, "uuid", buf);
	jw_u64(w, "type", dev->type);
	jw_str(w, "type_name", vpd_virtio_type_name(dev->type));
	jw_i64(w, "peer_pid", dev->peer_pid);
	jw_i64(w, "peer_uid", dev->peer_uid == (uid_t)-1 ? -1 : (int64_t)dev->peer_uid);
	jw_u64(w, "generation", dev->generation);
	jw_hex(w, "device_features", dev->device_features);
	jw_hex(w, "driver_features", dev->driver_features);
	jw_hex(w, "protocol_features", dev->protocol_features);
	feature_names(w, "driver_feature_names", dev->type, dev->driver_features, false);
	feature_names(w, "device_feature_names", dev->type, dev->device_features, false);
	feature_names(w, "protocol_feature_names", 0, dev->protocol_features, true);

	unsigned clen = dev->config_len <= VP_PCI_CONFIG_MAX ? dev->config_len : VP_PCI_CONFIG_MAX;

	for (unsigned i = 0; i < clen; i++)
		snprintf(buf + 2 * i, 3, "%02x", dev->config[i]);
	buf[2 * clen] = 0;
	jw_str(w, "config", buf);
	if (dev->type == VP_VIRTIO_ID_NET && clen >= 6) {
		const uint8_t *m = dev->config;

		jw_strf(w, "mac", "%02x:%02x:%02x:%02x:%02x:%02x",
			m[0], m[1], m[2], m[3], m[4], m[5]);
	}

	jw_arr_begin(w, "regions");
	for (unsigned i = 0; i < dev->nregions && i < VP_PCI_MAX_REGIONS; i++) {
		const struct vp_dev_region *r = &dev->regions[i];

		jw_obj_begin(w, NULL);
		jw_u64(w, "index", i);
		jw_hex(w, "gpa", r->gpa);
		jw_hex(w, "size", r->size);
		jw_hex(w, "uaddr", r->uaddr);
		jw_hex(w, "offset", r->fd_offset);
		jw_str(w, "prot", (r->prot & VP_MEM_WRITE) ? "rw" : "r");
		jw_bool(w, "fd", r->fd >= 0);
		jw_obj_end(w);
	}
	jw_arr_end(w);

	jw_arr_begin(w, "rings");
	for (unsigned i = 0; i < dev->nrings && i < VP_DEV_MAX_RINGS; i++) {
		const struct vp_dev_ring *r = &dev->rings[i];

		jw_obj_begin(w, NULL);
		jw_u64(w, "index", i);
		jw_u64(w, "num", r->num);
		jw_bool(w, "addr_set", r->addr_set);
		jw_hex(w, "desc", r->desc);
		jw_hex(w, "avail", r->avail);
		jw_hex(w, "used", r->used);
		if (dev->dialect == VP_DIALECT_VHOST_USER) {
			jw_hex(w, "desc_uva", r->desc_uva);
			jw_hex(w, "avail_uva", r->avail_uva);
			jw_hex(w, "used_uva", r->used_uva);
		}
		jw_u64(w, "last_avail_idx", r->last_avail_idx);
		jw_bool(w, "enabled", r->enabled);
		jw_bool(w, "started", r->started);
		jw_bool(w, "kick_fd", r->kick_fd >= 0);
		jw_bool(w, "call_fd", r->call_fd >= 0);
		if (live)
			render_live(w, dev, i);
		jw_obj_end(w);
	}
	jw_arr_end(w);
	jw_obj_end(w);
}

static void render_server(struct jw *w, const struct vpd_server *s)
{
	const char *last;
	char buf[40];

	jw_obj_begin(w, NULL);
	jw_str(w, "id", s->spec.id);
	jw_str(w, "path", s->spec.path);
	jw_u64(w, "connections", vp_server_connections(s->srv));
	jw_u64(w, "max", vp_server_max_connections(s->srv));
	jw_strf(w, "mode", "%04o", (unsigned)s->spec.mode);
	if (s->spec.have_uid)
		jw_u64(w, "uid", s->spec.uid);
	else
		jw_null(w, "uid");
	if (s->spec.have_uuid) {
		vp_uuid_format(s->spec.uuid, buf);
		jw_str(w, "uuid", buf);
	} else {
		jw_null(w, "uuid");
	}
	jw_hex(w, "features", vpd_spec_features(&s->spec));
	jw_str(w, "backend", s->spec.backend);
	if (s->spec.backend) {
		jw_bool(w, "backend_ok", !s->backend_down);
		jw_bool(w, "admitting", !s->admission_closed);
		jw_str(w, "backend_reason", s->backend_down ? s->backend_why : NULL);
		jw_u64(w, "stop_timeout_ms", s->spec.stop_timeout_ms);
		jw_u64(w, "stop_timeouts", s->stop_timeouts);
		jw_u64(w, "packed_lost", s->packed_lost);
	}
	/* Every frontend refused or dropped with a reason, by the library or by us. */
	jw_u64(w, "refused", vp_server_refused(s->srv, &last));
	jw_str(w, "last_refusal", last);
	vpd_bevm_render_server(w, s);
	jw_obj_end(w);
}

static int cmp_dev(const void *a, const void *b)
{
	const struct vp_device *x = *(const struct vp_device *const *)a;
	const struct vp_device *y = *(const struct vp_device *const *)b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Every device of every server, by id. */
static int render_list(struct vpd *d, struct jw *w)
{
	struct vp_pci_info *info = vp_pci_info_new();
	const struct vp_device **devs = NULL;
	size_t n = 0, cap = 0;
	int e;

	if (!info)
		return -ENOMEM;
	for (unsigned s = 0; s < d->nservers; s++) {
		if (!d->servers[s].srv)  /* a slot a reload emptied */
			continue;
		e = vp_server_info(d->servers[s].srv, info);
		for (unsigned i = 0; e >= 0 && i < (unsigned)e; i++) {
			if (n == cap) {
				const struct vp_device **nd;

				cap = cap ? cap * 2 : 16;
				nd = realloc(devs, cap * sizeof(*devs));
				if (!nd) {
					e = -ENOMEM;
					break;
				}
				devs = nd;
			}
			devs[n++] = vp_pci_info_get(info, i)->dev;
		}
		if (e < 0) {
			free(devs);
			vp_pci_info_free(info);
			return e;
		}
	}
	vp_pci_info_free(info);
	if (n)
		qsort(devs, n, sizeof(*devs), cmp_dev);
	jw_obj_begin(w, NULL);
	jw_arr_begin(w, "devices");
	for (size_t i = 0; i < n; i++)
		render_device(w, NULL, d, devs[i], false);
	jw_arr_end(w);
	jw_obj_end(w);
	free(devs);
	return 0;
}

static const struct vp_device *find_device(struct vpd *d, uint64_t id, struct vpd_server **srv)
{
	for (unsigned s = 0; s < d->nservers; s++) {
		const struct vp_device *dev = d->servers[s].srv ?
					      vp_server_find(d->servers[s].srv, id) : NULL;

		if (dev) {
			*srv = &d->servers[s];
			return dev;
		}
	}
	return NULL;
}

static bool parse_id(const char *s, uint64_t *id)
{
	char *end;

	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 20)
		return false;
	errno = 0;
	*id = strtoull(s, &end, 10);
	return !errno;
}

/*
 * Run one command; returns the answer document (malloc()ed) or NULL when
 * out of memory.
 */
/*
 * "qemu-args SERVER [timeout=SEC] [ID[@SLOT]]...": cold plug (bevm.c).
 * Only checked words reach the log.
 */
static char *qemu_args(struct vpd *d, char **argv, unsigned argc, size_t *len)
{
	struct vpd_cold_dev want[VPD_COLD_MAX];
	struct vpd_server *s = NULL;
	unsigned n = 0, timeout_s = VPD_COLD_TIMEOUT_S;
	char msg[VPD_CTL_LINE_MAX + 256];
	struct jw w;

	if (argc < 2)
		return jw_error_doc("usage: qemu-args SERVER [timeout=SEC] [ID[@SLOT]]...", len);
	for (unsigned i = 0; i < d->nservers; i++)
		if (d->servers[i].srv && !strcmp(d->servers[i].spec.id, argv[1]))
			s = &d->servers[i];  /* not a slot a reload emptied */
	if (!s) {
		snprintf(msg, sizeof(msg), "no server '%s' (see 'servers')", argv[1]);
		return jw_error_doc(msg, len);
	}
	for (unsigned i = 2; i < argc; i++) {
		char *at = strchr(argv[i], '@'), *end;
		unsigned long v;

		if (!strncmp(argv[i], "timeout=", 8)) {
			errno = 0;
			v = strtoul(argv[i] + 8, &end, 10);
			if (errno || *end || end == argv[i] + 8 || v < 1 || v > VPD_COLD_TIMEOUT_MAX_S)
				return jw_error_doc("timeout=SEC: 1..86400 seconds", len);
			timeout_s = (unsigned)v;
			continue;
		}
		if (n == VPD_COLD_MAX) {
			snprintf(msg, sizeof(msg), "at most %u devices per request", VPD_COLD_MAX);
			return jw_error_doc(msg, len);
		}
		if (at)
			*at++ = '\0';
		if (!parse_id(argv[i], &want[n].id))
			return jw_error_doc("invalid device id (ID or ID@SLOT)", len);
		want[n].slot = -1;
		if (at) {
			errno = 0;
			v = strtoul(at, &end, 0);
			if (errno || *end || end == at || v > 31)
				return jw_error_doc("invalid slot in ID@SLOT (0x1..0x1e)", len);
			want[n].slot = (int)v;
		}
		n++;
	}
	vp_log(VP_LOG_DEBUG, "control: qemu-args %s, %u devices, timeout %u s", s->spec.id, n,
	       timeout_s);
	jw_init(&w);
	if (vpd_bevm_qemu_args(d, s, want, n, timeout_s, &w, msg, sizeof(msg)) < 0) {
		jw_free(&w);
		vp_log(VP_LOG_INFO, "control: qemu-args %s refused: %s", s->spec.id, msg);
		return jw_error_doc(msg, len);
	}
	if (!jw_finish(&w, len)) {
		jw_free(&w);
		return jw_error_doc("out of memory", len);
	}
	return w.buf;
}

static char *run_command(struct vpd_control *c, char *line, size_t *len)
{
	char *argv[2 + VPD_COLD_MAX + 1], *save = NULL, *tok, msg[VPD_CTL_LINE_MAX + 128];
	const struct vp_device *dev = NULL;
	struct vpd_server *srv = NULL;
	unsigned argc = 0;
	uint64_t id = 0;
	struct jw w;

	for (tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (argc == sizeof(argv) / sizeof(argv[0]))
			return jw_error_doc("too many arguments", len);
		argv[argc++] = tok;
	}
	if (!argc)
		return jw_error_doc("empty command (commands: list, servers, pairs, show ID, drop ID, "
				    "qemu-args SERVER [ID...])", len);
	if (!strcmp(argv[0], "qemu-args"))
		return qemu_args(c->d, argv, argc, len);
	if (argc > 4)
		return jw_error_doc("too many arguments", len);

	bool list = !strcmp(argv[0], "list"), servers = !strcmp(argv[0], "servers");
	bool show = !strcmp(argv[0], "show"), drop = !strcmp(argv[0], "drop");
	bool pairs = !strcmp(argv[0], "pairs");

	if (!list && !servers && !show && !drop && !pairs) {
		snprintf(msg, sizeof(msg),
			 "unknown command '%s' (commands: list, servers, pairs, show ID, drop ID, "
			 "qemu-args SERVER [ID...])", argv[0]);
		return jw_error_doc(msg, len);
	}
	if ((list || servers || pairs) && argc != 1) {
		snprintf(msg, sizeof(msg), "'%s' takes no argument", argv[0]);
		return jw_error_doc(msg, len);
	}
	if (show || drop) {
		if (argc != 2) {
			snprintf(msg, sizeof(msg), "usage: %s ID", argv[0]);
			return jw_error_doc(msg, len);
		}
		if (!parse_id(argv[1], &id)) {
			snprintf(msg, sizeof(msg), "invalid device id '%s'", argv[1]);
			return jw_error_doc(msg, len);
		}
		dev = find_device(c->d, id, &srv);
		if (!dev) {
			snprintf(msg, sizeof(msg), "no device %" PRIu64, id);
			return jw_error_doc(msg, len);
		}
	}
	/* Only checked words reach the log: no control bytes from a client. */
	vp_log(VP_LOG_DEBUG, "control: %s%s%s", argv[0], argc > 1 ? " " : "",
	       argc > 1 ? argv[1] : "");

	jw_init(&w);
	if (list) {
		if (render_list(c->d, &w) < 0)
			w.err = true;
	} else if (servers) {
		jw_obj_begin(&w, NULL);
		jw_arr_begin(&w, "servers");
		for (unsigned s = 0; s < c->d->nservers; s++)
			if (c->d->servers[s].srv)
				render_server(&w, &c->d->servers[s]);
		jw_arr_end(&w);
		jw_obj_end(&w);
	} else if (pairs) {
		jw_obj_begin(&w, NULL);
		vpd_pair21_render(&w, c->d);
		jw_obj_end(&w);
	} else if (show) {
		jw_obj_begin(&w, NULL);
		render_device(&w, "device", c->d, dev, true);
		jw_obj_end(&w);
	} else {
		vp_log(VP_LOG_INFO, "control: dropping device %" PRIu64 " of server %s", id,
		       srv->spec.id);
		/* The device is gone (REMOVED delivered) when this returns. */
		vp_server_drop(srv->srv, id, "dropped by vhost-pci-ctl");
		jw_obj_begin(&w, NULL);
		jw_u64(&w, "dropped", id);
		jw_obj_end(&w);
	}
	if (!jw_finish(&w, len)) {
		jw_free(&w);
		return jw_error_doc("out of memory", len);
	}
	return w.buf;
}

/* ------------------------------------------------------------------------ */
/* clients */

static void client_close(struct ctl_client *cl)
{
	struct vpd_control *c = cl->ctl;
	char sink[4096];

	/*
	 * Unread input would turn our close into a reset that the client may
	 * see before the end of our answer: swallow what is queued (bounded).
	 */
	for (int i = 0; i < 16 && recv(cl->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	epoll_ctl(c->d->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	for (struct ctl_client **p = &c->clients; *p; p = &(*p)->next) {
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	}
	c->nclients--;
	free(cl->out);
	free(cl);
}

/* Push the answer out; close once it is all sent or the client is gone. */
static void client_send(struct ctl_client *cl)
{
	while (cl->outoff < cl->outlen) {
		ssize_t n = send(cl->fd, cl->out + cl->outoff, cl->outlen - cl->outoff,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			vp_log(VP_LOG_DEBUG, "control: client went away: %s", strerror(errno));
			break;
		}
		cl->outoff += (size_t)n;
	}
	client_close(cl);
}

static void client_answer(struct ctl_client *cl, char *doc, size_t len)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &cl->w };

	if (!doc) {
		vp_log(VP_LOG_WARN, "control: out of memory answering a client");
		client_close(cl);
		return;
	}
	cl->out = doc;
	cl->outlen = len;
	cl->outoff = 0;
	cl->sending = true;
	cl->deadline = vpd_now_ms() + VPD_CTL_TIMEOUT_MS;
	/* From now on we only write; further input is ignored. */
	if (epoll_ctl(cl->ctl->d->epfd, EPOLL_CTL_MOD, cl->fd, &ev) < 0) {
		client_close(cl);
		return;
	}
	client_send(cl);
}

static void client_error(struct ctl_client *cl, const char *msg)
{
	size_t len = 0;
	char *doc;

	vp_log(VP_LOG_DEBUG, "control: refusing a command: %s", msg);
	doc = jw_error_doc(msg, &len);   /* before reading len */
	client_answer(cl, doc, len);
}

static void client_line(struct ctl_client *cl, size_t len)
{
	size_t outlen = 0;
	char *doc;

	if (len > VPD_CTL_LINE_MAX) {
		client_error(cl, "command line longer than 256 bytes");
		return;
	}
	if (len && cl->in[len - 1] == '\r')
		len--;
	cl->in[len] = 0;
	if (memchr(cl->in, 0, len)) {
		client_error(cl, "NUL byte in command line");
		return;
	}
	doc = run_command(cl->ctl, cl->in, &outlen);
	client_answer(cl, doc, outlen);
}

static void client_read(struct ctl_client *cl)
{
	for (;;) {
		size_t room = VPD_CTL_LINE_MAX + 1 - cl->inlen;
		ssize_t n;
		char *nl;

		if (!room) {
			/* 257 bytes and no newline: the line is too long. */
			client_line(cl, cl->inlen);
			return;
		}
		n = recv(cl->fd, cl->in + cl->inlen, room, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_close(cl);
			return;
		}
		if (n == 0) {
			/* A client may shut its side down instead of sending '\n'. */
			if (cl->inlen)
				client_line(cl, cl->inlen);
			else
				client_close(cl);
			return;
		}
		nl = memchr(cl->in + cl->inlen, '\n', (size_t)n);
		cl->inlen += (size_t)n;
		if (nl) {
			client_line(cl, (size_t)(nl - cl->in));
			return;
		}
	}
}

static void accept_clients(struct vpd_control *c)
{
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct ctl_client *cl;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				vp_log(VP_LOG_WARN, "control: accept: %s", strerror(errno));
			return;
		}
		if (c->nclients >= VPD_CTL_MAX_CLIENTS) {
			static const char busy[] =
				"{\n  \"error\": \"too many control clients, try again\"\n}\n";

			vp_log(VP_LOG_WARN, "control: %u clients already connected, refusing one",
			       c->nclients);
			if (send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				vp_log(VP_LOG_DEBUG, "control: %s", strerror(errno));
			close(fd);
			continue;
		}
		cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->ctl = c;
		cl->w.kind = VPD_W_CONTROL_CLIENT;
		cl->w.obj = cl;
		cl->deadline = vpd_now_ms() + VPD_CTL_TIMEOUT_MS;
		ev.data.ptr = &cl->w;
		if (epoll_ctl(c->d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			vp_log(VP_LOG_WARN, "control: epoll: %s", strerror(errno));
			close(fd);
			free(cl);
			continue;
		}
		cl->next = c->clients;
		c->clients = cl;
		c->nclients++;
	}
}

void vpd_control_event(struct vpd_control *c, struct vpd_watch *w, uint32_t events)
{
	struct ctl_client *cl;

	if (w->kind == VPD_W_CONTROL) {
		accept_clients(c);
		return;
	}
	cl = w->obj;
	if (cl->sending) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			client_send(cl);
	} else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		client_read(cl);
	}
}

int vpd_control_timeout(const struct vpd_control *c)
{
	int64_t now = vpd_now_ms(), best = -1;

	for (const struct ctl_client *cl = c->clients; cl; cl = cl->next) {
		int64_t left = cl->deadline - now;

		if (left < 0)
			left = 0;
		if (best < 0 || left < best)
			best = left;
	}
	return (int)best;
}

void vpd_control_expire(struct vpd_control *c)
{
	int64_t now = vpd_now_ms();
	struct ctl_client *cl = c->clients, *next;

	for (; cl; cl = next) {
		next = cl->next;
		if (cl->deadline <= now) {
			vp_log(VP_LOG_INFO, "control: dropping a client that %s within %d ms",
			       cl->sending ? "did not read its answer" : "sent no command",
			       VPD_CTL_TIMEOUT_MS);
			client_close(cl);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* the listening socket */

int vpd_control_open(struct vpd *d, const char *path, int passed_fd, struct vpd_control **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN };
	struct vpd_control *c;
	struct stat st = { 0 };
	int fd = -1, e;

	*out = NULL;
	if (passed_fd >= 0) {
		/* Socket activation: the manager made it (and removes its file). */
		fd = passed_fd;
		e = fcntl(fd, F_GETFL);
		if (e < 0 || fcntl(fd, F_SETFL, e | O_NONBLOCK) < 0) {
			e = -errno;
			close(fd);
			return e;
		}
		goto ready;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		vp_log(VP_LOG_ERR, "control socket path %s is too long (max %zu bytes)", path,
		       sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	e = vpd_mkdir_parents(path);
	if (e < 0) {
		vp_log(VP_LOG_ERR, "cannot create the directory of %s: %s", path, strerror(-e));
		return e;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			vp_log(VP_LOG_ERR, "control socket path %s exists and is not a socket; "
			       "refusing to replace it", path);
			return -EEXIST;
		}
		/* Someone answering means a live daemon: never steal its socket. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		e = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
		close(fd);
		if (e == 0) {
			vp_log(VP_LOG_ERR, "another vhost-pcid is already running: its control "
			       "socket %s answers", path);
			return -EADDRINUSE;
		}
		vp_log(VP_LOG_INFO, "replacing stale control socket %s", path);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Nobody can connect before listen(): chmod after bind is race-free. */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		vp_log(VP_LOG_ERR, "cannot bind control socket %s: %s", path, strerror(-e));
		close(fd);
		return e;
	}
	if (chmod(path, 0600) < 0 || lstat(path, &st) < 0 || listen(fd, 16) < 0) {
		e = -errno;
		vp_log(VP_LOG_ERR, "cannot set up control socket %s: %s", path, strerror(-e));
		goto err;
	}
ready:
	c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path))) {
		free(c);
		e = -ENOMEM;
		goto err;
	}
	c->d = d;
	c->fd = fd;
	c->st_dev = st.st_dev;
	c->st_ino = st.st_ino;
	c->w.kind = VPD_W_CONTROL;
	c->w.obj = c;
	ev.data.ptr = &c->w;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		e = -errno;
		free(c->path);
		free(c);
		goto err;
	}
	*out = c;
	return 0;
err:
	if (passed_fd < 0)
		unlink(path);
	close(fd);
	return e;
}

void vpd_control_close(struct vpd_control *c)
{
	struct stat st;

	if (!c)
		return;
	while (c->clients)
		client_close(c->clients);
	epoll_ctl(c->d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	/* Only our own file: a successor may have replaced it already. */
	if (lstat(c->path, &st) == 0 && st.st_dev == c->st_dev && st.st_ino == c->st_ino)
		unlink(c->path);
	free(c->path);
	free(c);
}
