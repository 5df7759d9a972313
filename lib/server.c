/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-pci server: one vhost-pci device per frontend session.
 *
 * Two parts. The listener (struct vp_server) owns the listening socket, the
 * accept policy (connection limit, uid check, rate-limited refusals), the
 * epoll set and the deadline timerfd. A session (struct conn) is one
 * connected socket, from accept() or from vp_server_adopt(): it detects the
 * dialect from the first message, keeps the handshake state and runs each
 * message through the dispatch table (dispatch_table[] below), which names
 * per (dialect, request) the handler, the states it is allowed in, what
 * becomes of its fds and whether it is acked.
 *
 * Security model: a frontend is untrusted. Everything it sends goes through
 * the codec (sizes, fd counts) and then through the dispatch table (state,
 * fds) and the checks in the handlers (ring indexes, ring sizes, ring
 * addresses inside its memory, feature subsets).
 * Any violation drops that connection only, with a logged reason, after
 * telling a native peer why (ERROR). Fds are owned by exactly one place at a
 * time: the message until taken, then the device until replaced or dropped.
 * The daemon maps the frontend's memory to check ring addresses and to let
 * tools look at the rings; it never touches packet buffers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "vhostpci/fd.h"
#include "vhostpci/log.h"
#include "util.h"
#include "vhostpci/server.h"
#include "vhostpci/sock.h"
#include "vhostpci/vring.h"

/* vhost-user protocol features we offer: acks for NEED_REPLY requests, and
 * MQ (GET_QUEUE_NUM, rings past pair 0) when more than one pair is configured. */
#define VU_PROTOCOL_OFFERED (1ull << VP_VU_PROTOCOL_F_REPLY_ACK)

/* Where a session is, which picks the dispatch rows allowed: a native
 * session's handshake (what the server waits for next), or vhost-user. */
enum nstate {
	N_IDLE,        /* HELLO expected */
	N_WAIT_UUID,
	N_WAIT_MEM,
	N_WAIT_DEV,
	N_WAIT_FEAT,
	N_WAIT_SETFEAT,
	N_RUNNING,     /* START sent */
	VU_OPEN,       /* a vhost-user session: no handshake order */
};

struct conn {
	struct vp_server *srv;
	struct conn *next;
	int sock;
	bool dead;
	struct vp_rx rx;
	struct vp_device dev;
	struct vp_dev_region regions[VP_PCI_MAX_REGIONS]; /* dev.regions */
	struct vp_dev_ring rings[VP_DEV_MAX_RINGS];       /* dev.rings */
	struct vp_mem *mem;
	char name[48];
	uint32_t live_pairs;       /* vp_device_pair_live() bits when last told */
	/* vhost-user */
	bool features_set;
	/* native */
	enum nstate nstate;
	uint16_t peer_minor;       /* the frontend's HELLO minor */
	/* A packed device's STOP ack is preceded by RING_BASE per ring: where
	 * each stopped, kept here since the rings are torn down before a held
	 * ack goes (vp_server_set_ring_base() updates it meanwhile). */
	unsigned stop_nrings;      /* 0: no RING_BASE due */
	uint16_t stop_num[VP_PCI_MAX_RINGS], stop_base[VP_PCI_MAX_RINGS];
	/* Dropped before its first message: the dialect is not known yet, so
	 * the reason waits for it (a native peer is then told, in ERROR). */
	char refuse[VP_PCI_REASON_MAX];
	const struct vp_msg *cur;  /* the message being handled (a refusal answers it) */
	int64_t deadline_ms;       /* READY (or QEMU's init) by then, or dropped; 0: none */
	const char *waiting_for;   /* what the deadline is about, for the reason */
	/* A GET_VRING_BASE reply or STOP ack the backend holds
	 * (vp_server_hold_stop()): nothing more is read from the peer until
	 * it goes. */
	bool in_stop;              /* inside the STOPPED callback it caused */
	bool held;
	uint32_t held_req;         /* VP_VU_GET_VRING_BASE or VP_PCI_STOP */
	bool held_started;         /* the ring ran: its used index is the base */
	uint32_t held_idx;
	uint64_t stop_deadline;    /* now_ns() after which it goes anyway */
	bool resume;               /* messages may wait in rx since the hold */
};

struct vp_server {
	char *path;
	char *id;
	unsigned max_conns;
	mode_t mode;
	bool check_uid;
	uid_t allowed_uid;
	bool have_uuid;
	uint8_t uuid[16];
	uint64_t features;
	unsigned pairs;            /* queue pairs a frontend may use, >= 1 */
	bool allow_unsealed;
	unsigned handshake_ms;     /* 0: no deadline */
	int timerfd;               /* fires at the earliest connection deadline */
	/* Refusals at accept (limit, uid): one line, then a count per interval. */
	int64_t refuse_log_ms;
	unsigned refused_quiet;
	char refuse_last[96];
	/* Every frontend refused or dropped with a reason (vp_server_refused()). */
	uint64_t refused;
	char refused_last[VP_PCI_REASON_MAX + 64];
	unsigned stop_ms;
	vp_event_fn cb;
	void *opaque;
	int lsock;
	bool lsock_adopted;    /* socket activation: the file is not ours to unlink */
	int epfd;
	struct conn *conns;
	unsigned nconns;
	unsigned dispatching;  /* inside vp_server_dispatch(): callbacks may run */
};

static uint64_t next_device_id = 1;

/* ------------------------------------------------------------------------ */
/* names */

const char *vp_dialect_name(enum vp_dialect d)
{
	switch (d) {
	case VP_DIALECT_VHOST_USER: return "vhost-user";
	case VP_DIALECT_NATIVE: return "vhost-pci";
	default: return "unknown";
	}
}

const char *vp_dev_state_name(enum vp_dev_state s)
{
	switch (s) {
	case VP_DEV_CONNECTED: return "connected";
	case VP_DEV_READY: return "ready";
	case VP_DEV_STOPPED: return "stopped";
	default: return "?";
	}
}

const char *vp_event_name(enum vp_event ev)
{
	static const char *const n[] = { "new", "ready", "changed", "stopped", "removed" };

	return (unsigned)ev < sizeof(n) / sizeof(n[0]) ? n[ev] : "?";
}

void vp_uuid_format(const uint8_t u[16], char *buf)
{
	static const char hex[] = "0123456789abcdef";
	char *p = buf;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u[i] >> 4];
		*p++ = hex[u[i] & 15];
	}
	*p = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vp_uuid_parse(const char *s, uint8_t u[16])
{
	int n = 0;

	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash) {
			if (s[i] != '-')
				return -EINVAL;
			continue;
		}
		int hi = hexval(s[i]), lo = hi < 0 ? -1 : hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		u[n++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return s[36] == 0 ? 0 : -EINVAL;
}

static void uuid_generate(uint8_t u[16])
{
	if (getrandom(u, 16, 0) != 16) {
		/* Not security relevant: an identifier. Fall back to time and pid. */
		uint64_t a = (uint64_t)time(NULL), b = (uint64_t)getpid() ^ next_device_id;

		memcpy(u, &a, 8);
		memcpy(u + 8, &b, 8);
	}
	u[6] = (u[6] & 0x0f) | 0x40; /* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80; /* RFC 4122 variant */
}

/* ------------------------------------------------------------------------ */
/* device state */

static void emit(struct conn *c, enum vp_event ev)
{
	if (c->srv->cb)
		c->srv->cb(c->srv, ev, &c->dev, c->srv->opaque);
}

static void drop_memory(struct conn *c)
{
	for (unsigned i = 0; i < c->dev.nregions; i++)
		close_fd(&c->regions[i].fd);
	c->dev.nregions = 0;
	vp_mem_free(c->mem);
	c->mem = NULL;
	c->dev.mem = NULL;
}

static void reset_ring(struct vp_dev_ring *r)
{
	close_fd(&r->kick_fd);
	close_fd(&r->call_fd);
	memset(r, 0, sizeof(*r));
	r->kick_fd = r->call_fd = -1;
}

static int64_t mono_ms(void)
{
	return (int64_t)(now_ns() / 1000000u);
}

/*
 * Handshake deadlines. A connection must get somewhere within
 * handshake_ms, however it trickles: a native peer from HELLO to READY, a
 * vhost-user peer through QEMU's init (up to SET_OWNER) and, once it starts
 * the device (SET_FEATURES, SET_MEM_TABLE), to READY. A vhost-user peer idle
 * after SET_OWNER is QEMU waiting for its guest's driver: no deadline.
 */
static void deadline_set(struct conn *c, const char *what)
{
	if (!c->srv->handshake_ms || c->deadline_ms)
		return;
	c->deadline_ms = mono_ms() + c->srv->handshake_ms;
	c->waiting_for = what;
}

static void deadline_clear(struct conn *c)
{
	c->deadline_ms = 0;
}

bool vp_device_pair_live(const struct vp_device *dev, unsigned pair)
{
	if (!dev || pair >= dev->nrings / 2 ||
	    (pair && !(dev->driver_features & (1ull << VIRTIO_NET_F_MQ))))
		return false;
	for (unsigned i = 2 * pair; i < 2 * pair + 2; i++) {
		const struct vp_dev_ring *r = &dev->rings[i];

		if (!r->addr_set || !r->started || !r->enabled)
			return false;
	}
	return true;
}

static uint32_t live_pairs(const struct conn *c)
{
	uint32_t m = 0;

	for (unsigned q = 0; q < c->dev.nrings / 2; q++)
		if (vp_device_pair_live(&c->dev, q))
			m |= 1u << q;
	return m;
}

static uint32_t vu_ring_base(struct conn *c, uint32_t idx, bool started);

static void stop_device(struct conn *c)
{
	c->dev.state = VP_DEV_STOPPED;
	vp_log(VP_LOG_INFO, "%s: device %llu stopped", c->name, (unsigned long long)c->dev.id);
	emit(c, VP_EV_DEVICE_STOPPED);
}

/*
 * READY when memory, features and queue pair 0 are in place and running.
 * Other pairs come and go under a READY device (CHANGED): a frontend with
 * VIRTIO_NET_F_MQ starts them all and enables those its driver uses.
 */
static void update_ready(struct conn *c)
{
	bool ready = c->mem && c->features_set && vp_device_pair_live(&c->dev, 0);
	uint32_t live = live_pairs(c);

	if (ready && c->dev.state != VP_DEV_READY) {
		c->dev.state = VP_DEV_READY;
		c->dev.generation++;
		c->live_pairs = live;
		deadline_clear(c);
		vp_log(VP_LOG_INFO, "%s: device %llu ready (generation %u, queue pairs 0x%x)",
		       c->name, (unsigned long long)c->dev.id, c->dev.generation, live);
		emit(c, VP_EV_DEVICE_READY);
	} else if (!ready && c->dev.state == VP_DEV_READY) {
		stop_device(c);
	} else if (ready && live != c->live_pairs) {
		uint32_t gone = c->live_pairs & ~live;

		vp_log(VP_LOG_INFO, "%s: device %llu queue pairs 0x%x (were 0x%x)", c->name,
		       (unsigned long long)c->dev.id, live, c->live_pairs);
		c->live_pairs = live;
		emit(c, VP_EV_DEVICE_CHANGED);
		/* The backend let go of those pairs in the callback: a split ring
		 * resumes from its used index when enabled again (a packed one
		 * from what the backend told, vp_server_set_ring_base()). */
		for (unsigned i = 0; i < c->dev.nrings; i++)
			if (gone >> (i / 2) & 1)
				vu_ring_base(c, i, true);
	}
}

static int send_msg(struct conn *c, struct vp_msg *m)
{
	int r = vp_sock_send(c->sock, m);

	if (r < 0 && !c->dead) {
		vp_log(VP_LOG_WARN, "%s: sending %s failed: %s", c->name,
		       vp_msg_name(m->request), strerror(-r));
		c->dead = true;
	}
	return r;
}

/* Drop the connection with a reason; a native peer is told why first. */
static void fail(struct conn *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct conn *c, int code, const char *fmt, ...)
{
	char reason[VP_PCI_REASON_MAX];
	va_list ap;

	if (c->dead)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	vp_log(VP_LOG_WARN, "%s: dropping frontend: %s", c->name, reason);
	c->srv->refused++;
	snprintf(c->srv->refused_last, sizeof(c->srv->refused_last), "%s: %s", c->name, reason);
	if (c->dev.dialect == VP_DIALECT_VHOST_USER && c->cur &&
	    (c->cur->flags & VP_MSG_NEED_REPLY) && !(c->cur->flags & VP_MSG_REPLY) &&
	    (c->dev.protocol_features & (1ull << VP_VU_PROTOCOL_F_REPLY_ACK))) {
		/* The frontend asked whether this worked: say no before closing. */
		struct vp_msg m;

		vp_msg_init(&m, c->cur->request, VP_MSG_REPLY);
		m.p.u64 = (uint64_t)(code < 0 ? -code : EPROTO);
		vp_sock_send(c->sock, &m);
	}
	if (c->dev.dialect == VP_DIALECT_NATIVE) {
		struct vp_msg m;

		vp_msg_init(&m, VP_PCI_ERROR, 0);
		m.p.error.code = code < 0 ? code : -EPROTO;
		memcpy(m.p.error.reason, reason, sizeof(reason));
		vp_sock_send(c->sock, &m);
	}
	c->dead = true;
}

/*
 * Kick and call fds must be eventfds: a pipe or socket as a kick fd stays
 * readable (the backend spins), as a call fd it fills up (the backend's
 * write blocks). false (connection failed) if fd is anything else.
 */
static bool eventfd_ok(struct conn *c, int fd, const char *what, unsigned ring)
{
	char kind[48];
	int e;

	if (fd < 0)
		return true;
	e = vp_fd_check_eventfd(fd);
	if (!e)
		return true;
	fail(c, e, "%s fd of ring %u is a %s, not an eventfd", what, ring,
	     vp_fd_kind(fd, kind, sizeof(kind)));
	return false;
}

static bool vu_proto(struct conn *c, unsigned bit)
{
	return c->dev.protocol_features & (1ull << bit);
}

/* A vhost-user ring index: rings past pair 0 only with the MQ protocol
 * feature (the vhost-user spec), and below the pairs we offer. */
static bool ring_index_ok(struct conn *c, uint32_t idx, const char *what)
{
	unsigned n = vu_proto(c, VP_VU_PROTOCOL_F_MQ) ? c->dev.nrings : 2;

	if (idx < n)
		return true;
	fail(c, -EINVAL, "%s for ring %u: only %u rings (%u queue pairs%s)", what, idx, n, n / 2,
	     n < c->dev.nrings ? ", protocol feature MQ not negotiated" : "");
	return false;
}

static bool conn_packed(const struct conn *c)
{
	return c->dev.driver_features & (1ull << VIRTIO_F_RING_PACKED);
}

/*
 * The three parts of ring idx in the negotiated layout: split (descriptor
 * table, avail ring, used ring) or packed (descriptor ring, driver and device
 * event suppression areas, in the avail and used fields), with their bytes,
 * alignments and the access the backend needs (a packed device writes its
 * used descriptors into the descriptor ring).
 */
struct ring_part {
	uint64_t bytes, align;
	uint32_t prot;
};

static void ring_parts(const struct conn *c, unsigned idx, struct ring_part p[3])
{
	uint16_t num = c->rings[idx].num;

	if (conn_packed(c)) {
		p[0] = (struct ring_part){ VP_VQ_PACKED_DESC_BYTES(num), 16, VP_MEM_RW };
		p[1] = (struct ring_part){ sizeof(struct vring_packed_desc_event), 4, VP_MEM_READ };
		p[2] = (struct ring_part){ sizeof(struct vring_packed_desc_event), 4, VP_MEM_RW };
	} else {
		p[0] = (struct ring_part){ VP_VQ_DESC_BYTES(num), 16, VP_MEM_READ };
		p[1] = (struct ring_part){ VP_VQ_AVAIL_BYTES(num), 2, VP_MEM_READ };
		p[2] = (struct ring_part){ VP_VQ_USED_BYTES(num), 4, VP_MEM_RW };
	}
}

/* Check that a started ring lies in memory with the access the backend needs. */
static int check_ring_gpa(struct conn *c, unsigned idx)
{
	struct vp_dev_ring *r = &c->rings[idx];
	const uint64_t gpa[3] = { r->desc, r->avail, r->used };
	struct ring_part p[3];
	int e = 0;

	ring_parts(c, idx, p);
	for (unsigned i = 0; i < 3; i++) {
		if (gpa[i] % p[i].align) {
			fail(c, -EINVAL, "ring %u: misaligned addresses", idx);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < 3 && !e; i++)
		e = vp_mem_check_gpa(c->mem, gpa[i], p[i].bytes, p[i].prot);
	if (e)
		fail(c, e, "ring %u (%s, size %u) lies outside the frontend's memory: %s",
		     idx, conn_packed(c) ? "packed" : "split", r->num, strerror(-e));
	return e;
}

/* vhost-user: frontend-process addresses to guest-physical. */
static int translate_ring_uva(struct conn *c, unsigned idx)
{
	struct vp_dev_ring *r = &c->rings[idx];
	const uint64_t uva[3] = { r->desc_uva, r->avail_uva, r->used_uva };
	uint64_t *gpa[3] = { &r->desc, &r->avail, &r->used };
	struct ring_part p[3];
	int e = 0;

	ring_parts(c, idx, p);
	for (unsigned i = 0; i < 3 && !e; i++)
		e = vp_mem_uva_to_gpa(c->mem, uva[i], p[i].bytes, gpa[i]);
	if (e) {
		fail(c, e, "ring %u addresses (desc 0x%llx avail 0x%llx used 0x%llx) "
		     "outside the frontend's memory", idx,
		     (unsigned long long)r->desc_uva, (unsigned long long)r->avail_uva,
		     (unsigned long long)r->used_uva);
		return e;
	}
	return check_ring_gpa(c, idx);
}

/* Map a new region table; the old one is replaced only if all of it maps. */
static int set_memory(struct conn *c, const struct vp_dev_region *regs, unsigned n)
{
	struct vp_mem *mem;
	int e = 0;

	/* Memory that can shrink turns the backend's next access into SIGBUS. */
	for (unsigned i = 0; i < n && !c->srv->allow_unsealed; i++) {
		char kind[48];

		e = vp_fd_check_memory(regs[i].fd);
		if (!e)
			continue;
		if (e == -EPERM)
			fail(c, e, "memory region %u (%s) can shrink under the backend: "
			     "no F_SEAL_SHRINK", i, vp_fd_kind(regs[i].fd, kind, sizeof(kind)));
		else
			fail(c, e, "memory region %u (%s) is not memory", i,
			     vp_fd_kind(regs[i].fd, kind, sizeof(kind)));
		for (unsigned k = 0; k < n; k++)
			close(regs[k].fd);
		return e;
	}
	mem = vp_mem_new();
	if (!mem) {
		fail(c, -ENOMEM, "out of memory");
		for (unsigned k = 0; k < n; k++)
			close(regs[k].fd);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n && !e; i++) {
		struct vp_mem_region_desc d = {
			.gpa = regs[i].gpa, .size = regs[i].size, .uaddr = regs[i].uaddr,
			.fd_offset = regs[i].fd_offset, .fd = regs[i].fd, .prot = regs[i].prot,
		};

		e = vp_mem_add_region(mem, &d);
		if (e < 0)
			fail(c, e, "memory region %u (gpa 0x%llx size 0x%llx) rejected: %s",
			     i, (unsigned long long)d.gpa, (unsigned long long)d.size,
			     strerror(-e));
	}
	if (e < 0) {
		vp_mem_free(mem);
		for (unsigned i = 0; i < n; i++)
			close(regs[i].fd);
		return e;
	}
	drop_memory(c);
	c->mem = mem;
	c->dev.mem = mem;
	memcpy(c->regions, regs, n * sizeof(*regs));
	c->dev.nregions = n;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* stock vhost-user dialect */

static void vu_reply_u64(struct conn *c, const struct vp_msg *req, uint64_t v)
{
	struct vp_msg m;

	vp_msg_init(&m, req->request, VP_MSG_REPLY);
	m.p.u64 = v;
	send_msg(c, &m);
}

static bool vu_ring_idle(struct conn *c, uint32_t idx, const char *what)
{
	if (!ring_index_ok(c, idx, what))
		return false;
	if (c->rings[idx].started) {
		fail(c, -EBUSY, "%s for ring %u while it is started", what, idx);
		return false;
	}
	return true;
}

static void vu_set_vring_fd(struct conn *c, struct vp_msg *m)
{
	uint32_t idx = (uint32_t)(m->p.u64 & VP_VU_VRING_IDX_MASK);
	int fd = m->nfds ? m->fds[0] : -1;
	struct vp_dev_ring *r;

	m->nfds = 0; /* ours now */
	if (!ring_index_ok(c, idx, vp_msg_name(m->request)) ||
	    (m->request != VP_VU_SET_VRING_ERR &&
	     !eventfd_ok(c, fd, m->request == VP_VU_SET_VRING_KICK ? "kick" : "call", idx))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	r = &c->rings[idx];
	switch (m->request) {
	case VP_VU_SET_VRING_KICK:
		/* Receiving the kick fd starts the ring (vhost-user spec). */
		close_fd(&r->kick_fd);
		r->kick_fd = fd;
		if (!r->addr_set || !r->num) {
			fail(c, -EINVAL, "SET_VRING_KICK for ring %u before its size/addresses", idx);
			return;
		}
		r->started = true;
		if (!(c->dev.driver_features & (1ull << VP_VU_F_PROTOCOL_FEATURES)))
			r->enabled = true;
		break;
	case VP_VU_SET_VRING_CALL:
		close_fd(&r->call_fd);
		r->call_fd = fd;
		if (c->dev.state == VP_DEV_READY)
			emit(c, VP_EV_DEVICE_CHANGED);
		break;
	default: /* SET_VRING_ERR: we never report errors through it */
		if (fd >= 0)
			close(fd);
		break;
	}
}

/* The ring stops (the backend is told by the STOPPED event). */
static bool vu_stop_ring(struct conn *c, uint32_t idx)
{
	struct vp_dev_ring *r = &c->rings[idx];
	bool was = r->started;

	r->started = false;
	/* With PROTOCOL_FEATURES a ring (re)starts disabled until SET_VRING_ENABLE. */
	if (c->dev.driver_features & (1ull << VP_VU_F_PROTOCOL_FEATURES))
		r->enabled = false;
	close_fd(&r->kick_fd);
	return was;
}

/*
 * Where the frontend should resume, read once the backend stopped: it
 * publishes used entries in order, so used->idx is its last_avail_idx. A
 * packed ring keeps no such index in memory: the backend tells it
 * (vp_server_set_ring_base()), and the reply carries it twice, as the avail
 * (bits 0..15) and used (bits 16..31) position | wrap << 15, since nothing
 * stays in flight.
 */
static uint32_t vu_ring_base(struct conn *c, uint32_t idx, bool started)
{
	struct vp_dev_ring *r = &c->rings[idx];

	if (conn_packed(c))
		return r->last_avail_idx | (uint32_t)r->last_avail_idx << 16;
	if (started && c->mem && r->addr_set) {
		uint16_t used_idx;

		/* Fault-safe: the frontend may have truncated its memory. */
		if (vp_mem_read_safe(c->mem, r->used + 2, &used_idx, 2) == 0)
			r->last_avail_idx = used_idx;
		else
			vp_log(VP_LOG_WARN, "%s: ring %u: used index unreadable", c->name, idx);
	}
	return r->last_avail_idx;
}

static void vu_send_base(struct conn *c, uint32_t idx, bool started)
{
	struct vp_msg rep;

	vp_msg_init(&rep, VP_VU_GET_VRING_BASE, VP_MSG_REPLY);
	rep.p.state.index = idx;
	rep.p.state.num = vu_ring_base(c, idx, started);
	send_msg(c, &rep);
}

static void set_events(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->sock, &ev);
}

/* The STOPPED callback held the reply to req: answer it later. */
static void hold_begin(struct conn *c, uint32_t req, uint32_t idx, bool started)
{
	c->held_req = req;
	c->held_idx = idx;
	c->held_started = started;
	c->stop_deadline = now_ns() + (uint64_t)c->srv->stop_ms * 1000000ull;
	set_events(c, 0);  /* HUP/ERR still wake us */
}

/* The held reply goes (a base is read now), then the peer is read again. */
static void send_stop_ack(struct conn *c);

static void send_held(struct conn *c)
{
	c->held = false;
	if (c->held_req == VP_PCI_STOP) {
		send_stop_ack(c);
	} else {
		vu_send_base(c, c->held_idx, c->held_started);
	}
	set_events(c, EPOLLIN);
	c->resume = true;  /* rx may hold what came before the hold */
	if (c->held_req == VP_VU_GET_VRING_BASE && !c->dead)
		update_ready(c);  /* READY again if only another pair stopped */
}

/*
 * The vhost-user requests, one handler each; the dispatch table below says
 * which run when. A handler that fails the connection returns with c->dead
 * set; the dispatcher then sends no REPLY_ACK of success.
 */
static void vu_get_features(struct conn *c, struct vp_msg *m)
{
	vu_reply_u64(c, m, c->srv->features);
}

static void vu_set_features(struct conn *c, struct vp_msg *m)
{
	if (c->dev.state != VP_DEV_READY)
		deadline_set(c, "device start (SET_FEATURES) to READY");
	if (m->p.u64 & ~c->srv->features) {
		fail(c, -ENOTSUP, "frontend acked features 0x%llx not offered (0x%llx)",
		     (unsigned long long)m->p.u64,
		     (unsigned long long)c->srv->features);
		return;
	}
	c->dev.device_features = c->srv->features;
	c->dev.driver_features = m->p.u64;
	c->features_set = true;
	/* The ring layout may have changed under addresses already given. */
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		if (c->rings[i].addr_set && c->mem && translate_ring_uva(c, i) < 0)
			return;
}

static uint64_t vu_protocol_offered(const struct conn *c)
{
	return VU_PROTOCOL_OFFERED | (c->srv->pairs > 1 ? 1ull << VP_VU_PROTOCOL_F_MQ : 0);
}

static void vu_get_protocol_features(struct conn *c, struct vp_msg *m)
{
	vu_reply_u64(c, m, vu_protocol_offered(c));
}

static void vu_set_protocol_features(struct conn *c, struct vp_msg *m)
{
	if (m->p.u64 & ~vu_protocol_offered(c)) {
		fail(c, -ENOTSUP, "protocol features 0x%llx not offered",
		     (unsigned long long)m->p.u64);
		return;
	}
	c->dev.protocol_features = m->p.u64;
}

static void vu_set_owner(struct conn *c, struct vp_msg *m)
{
	(void)m;
	/* QEMU's init is done; it may wait for its guest for ever. */
	if (c->dev.state != VP_DEV_READY && !c->features_set && !c->mem)
		deadline_clear(c);
}

/* RESET_OWNER, RESET_DEVICE */
static void vu_reset(struct conn *c, struct vp_msg *m)
{
	(void)m;
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		reset_ring(&c->rings[i]);
	c->features_set = false;
	update_ready(c);
}

static void vu_get_queue_num(struct conn *c, struct vp_msg *m)
{
	if (!vu_proto(c, VP_VU_PROTOCOL_F_MQ)) {
		fail(c, -ENOTSUP, "GET_QUEUE_NUM without the MQ protocol feature%s",
		     c->srv->pairs > 1 ? " negotiated" : " (not offered: one queue pair)");
		return;
	}
	vu_reply_u64(c, m, c->srv->pairs);
}

static void vu_set_mem_table(struct conn *c, struct vp_msg *m)
{
	if (c->dev.state != VP_DEV_READY)
		deadline_set(c, "device start (SET_MEM_TABLE) to READY");
	struct vp_dev_region regs[VP_VU_MAX_REGIONS];
	unsigned n = m->p.mem.nregions;

	for (unsigned i = 0; i < n; i++) {
		const struct vp_mem_region_wire *w = &m->p.mem.regions[i];

		regs[i] = (struct vp_dev_region){ w->gpa, w->size, w->uaddr,
			w->mmap_offset, VP_MEM_RW, m->fds[i] };
	}
	m->nfds = 0; /* set_memory owns them now */
	bool was_ready = c->dev.state == VP_DEV_READY;

	if (was_ready) {
		/* Memory moves under the backend: it must let go first. */
		c->dev.state = VP_DEV_STOPPED;
		emit(c, VP_EV_DEVICE_STOPPED);
	}
	if (set_memory(c, regs, n) < 0)
		return;
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		if (c->rings[i].addr_set && translate_ring_uva(c, i) < 0)
			return;
	update_ready(c);
}

/* Accepted and acked, nothing to do: SEND_RARP, NET_SET_MTU, and the
 * not-offered SET_LOG_BASE, SET_LOG_FD, SET_BACKEND_REQ_FD, whose fds the
 * dispatcher closes (FDS_DROP). */
static void vu_nothing(struct conn *c, struct vp_msg *m)
{
	(void)c;
	(void)m;
}

static void vu_set_vring_num(struct conn *c, struct vp_msg *m)
{
	uint32_t idx = m->p.state.index;

	if (!vu_ring_idle(c, idx, "SET_VRING_NUM"))
		return;
	if (!m->p.state.num || m->p.state.num > VP_VQ_MAX_SIZE ||
	    (m->p.state.num & (m->p.state.num - 1))) {
		fail(c, -EINVAL, "ring %u size %u is not a power of two in 1..32768",
		     idx, m->p.state.num);
		return;
	}
	c->rings[idx].num = (uint16_t)m->p.state.num;
	c->rings[idx].addr_set = false;
}

static void vu_set_vring_base(struct conn *c, struct vp_msg *m)
{
	uint32_t idx = m->p.state.index;

	if (!vu_ring_idle(c, idx, "SET_VRING_BASE"))
		return;
	/* Packed: avail position | wrap << 15, and the used one above it;
	 * the walker resumes with nothing in flight, so they must agree. */
	if (conn_packed(c) ? (m->p.state.num >> 16 && m->p.state.num >> 16 !=
			      (m->p.state.num & 0xffff)) : m->p.state.num > 0xffff) {
		fail(c, -EINVAL, "ring %u base 0x%x out of range%s", idx, m->p.state.num,
		     conn_packed(c) ? " (packed: used and avail halves differ: "
				      "buffers in flight)" : "");
		return;
	}
	c->rings[idx].last_avail_idx = (uint16_t)m->p.state.num;
}

static void vu_set_vring_addr(struct conn *c, struct vp_msg *m)
{
	uint32_t idx = m->p.addr.index;
	struct vp_dev_ring *r;

	if (!ring_index_ok(c, idx, "SET_VRING_ADDR"))
		return;
	r = &c->rings[idx];
	if (!r->num || !c->mem) {
		fail(c, -EINVAL, "SET_VRING_ADDR for ring %u before %s", idx,
		     r->num ? "SET_MEM_TABLE" : "SET_VRING_NUM");
		return;
	}
	r->desc_uva = m->p.addr.desc;
	r->avail_uva = m->p.addr.avail;
	r->used_uva = m->p.addr.used;
	if (translate_ring_uva(c, idx) < 0)
		return;
	r->addr_set = true;
	if (c->dev.state == VP_DEV_READY)
		emit(c, VP_EV_DEVICE_CHANGED);
}

/* The ring stops; the reply waits while the backend holds it (no REPLY_ACK:
 * the reply is the answer). */
static void vu_get_vring_base(struct conn *c, struct vp_msg *m)
{
	uint32_t idx;
	bool started;

	idx = m->p.state.index;
	if (!ring_index_ok(c, idx, "GET_VRING_BASE"))
		return;
	started = vu_stop_ring(c, idx);
	c->in_stop = true;
	/* A backend may walk any live ring: the device stops for it to let
	 * go, and is READY again (without that pair) once the base is sent. */
	if (started && c->dev.state == VP_DEV_READY && (c->live_pairs >> (idx / 2) & 1))
		stop_device(c);
	else
		update_ready(c);
	c->in_stop = false;
	if (c->dead)
		return;
	if (c->held) {
		hold_begin(c, VP_VU_GET_VRING_BASE, idx, started);
		return;
	}
	vu_send_base(c, idx, started);
	update_ready(c);
}

/* SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR */
static void vu_set_vring_fds(struct conn *c, struct vp_msg *m)
{
	vu_set_vring_fd(c, m);
	if (c->dead)
		return;
	update_ready(c);
}

static void vu_set_vring_enable(struct conn *c, struct vp_msg *m)
{
	uint32_t idx = m->p.state.index;

	if (!ring_index_ok(c, idx, "SET_VRING_ENABLE"))
		return;
	if (m->p.state.num > 1) {
		fail(c, -EINVAL, "SET_VRING_ENABLE %u for ring %u", m->p.state.num, idx);
		return;
	}
	c->rings[idx].enabled = m->p.state.num;
	update_ready(c);
}

/* ------------------------------------------------------------------------ */
/* native vhost-pci dialect (server side) */

static void n_request(struct conn *c, uint32_t req, enum nstate next)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	if (send_msg(c, &m) == 0)
		c->nstate = next;
}

static const char *nstate_name(enum nstate s)
{
	static const char *const n[] = { "idle", "wait-uuid", "wait-memory-info",
		"wait-device-info", "wait-feature-bits", "wait-set-feature-ack", "running",
		"vhost-user" };

	return (unsigned)s < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

static void n_got_devinfo(struct conn *c, struct vp_msg *m)
{
	const struct vp_pci_devinfo *d = &m->p.devinfo;
	unsigned f = 0;

	if (d->device_type != VP_VIRTIO_ID_NET) {
		fail(c, -EOPNOTSUPP, "virtio device type %u is not supported (only net, 1)",
		     d->device_type);
		return;
	}
	/* Checked before any is taken: on failure the caller closes them all. */
	for (unsigned i = 0, f2 = 0; i < d->nrings && i < VP_PCI_MAX_RINGS; i++) {
		const struct vp_pci_ring *w = &d->rings[i];

		if ((w->flags & VP_PCI_RING_KICKFD) && !eventfd_ok(c, m->fds[f2++], "kick", w->index))
			return;
		if ((w->flags & VP_PCI_RING_CALLFD) && !eventfd_ok(c, m->fds[f2++], "call", w->index))
			return;
	}
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		reset_ring(&c->rings[i]);
	c->dev.type = d->device_type;
	c->dev.nrings = 0;
	/* Queue pairs: what we offer, as far as the message carries. */
	unsigned max = 2 * c->srv->pairs < VP_PCI_MAX_RINGS ? 2 * c->srv->pairs : VP_PCI_MAX_RINGS;
	uint32_t seen = 0;

	for (unsigned i = 0; i < d->nrings; i++) {
		const struct vp_pci_ring *w = &d->rings[i];
		struct vp_dev_ring *r;

		if (w->index >= max || (seen >> w->index & 1)) {
			fail(c, -EINVAL, "ring index %u: %s", w->index, w->index < max ?
			     "announced twice" : max > 2 ? "beyond the queue pairs offered" :
			     "only rings 0 and 1 (one queue pair offered)");
			break;
		}
		seen |= 1u << w->index;
		r = &c->rings[w->index];
		r->num = w->size;
		r->last_avail_idx = w->last_avail_idx;
		r->desc = w->desc;
		r->avail = w->avail;
		r->used = w->used;
		r->addr_set = true;
		r->enabled = w->flags & VP_PCI_RING_ENABLED;
		/* The codec checked that the fd count matches the flags. */
		if (w->flags & VP_PCI_RING_KICKFD)
			r->kick_fd = m->fds[f++];
		if (w->flags & VP_PCI_RING_CALLFD)
			r->call_fd = m->fds[f++];
		if (w->index + 1 > c->dev.nrings)
			c->dev.nrings = w->index + 1;
	}
	/* Fds not yet given to a ring (after a failure) are closed here. */
	for (unsigned i = f; i < m->nfds; i++)
		close(m->fds[i]);
	m->nfds = 0;
	if (c->dead)
		return;
	if (c->dev.nrings < 2 || c->dev.nrings % 2 || c->dev.nrings != d->nrings) {
		fail(c, -EINVAL, "a net device needs rings 0 and 1 (0..2N-1 for N queue "
		     "pairs), got %u rings", d->nrings);
		return;
	}
	c->dev.config_len = d->config_len;
	memcpy(c->dev.config, d->config, d->config_len);
	n_request(c, VP_PCI_GET_FEATURE_BITS, N_WAIT_FEAT);
}

/* STOP, in any state after HELLO: tear the device down to CONNECTED. */
static void n_stop(struct conn *c, const struct vp_msg *m)
{
	bool shutdown = m->p.u64 == VP_PCI_STOP_SHUTDOWN;

	vp_log(VP_LOG_INFO, "%s: frontend stops its device (%s)", c->name,
	       shutdown ? "shutdown" : "reset");
	for (unsigned i = 0; i < c->dev.nrings; i++)
		c->rings[i].started = false;
	/* An ack is due: the STOPPED callback may hold it (vp_server_hold_stop). */
	c->in_stop = !shutdown && (m->flags & VP_MSG_NEED_REPLY);
	c->stop_nrings = 0;
	if (c->in_stop && conn_packed(c)) {
		/* Until the backend tells (in the callback or before it releases
		 * a held ack), a ring is where it was announced. */
		c->stop_nrings = c->dev.nrings < VP_PCI_MAX_RINGS ? c->dev.nrings
								   : VP_PCI_MAX_RINGS;
		for (unsigned i = 0; i < c->stop_nrings; i++) {
			c->stop_num[i] = c->rings[i].num;
			c->stop_base[i] = c->rings[i].last_avail_idx;
		}
	}
	update_ready(c);
	c->in_stop = false;
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		reset_ring(&c->rings[i]);
	drop_memory(c);
	c->features_set = false;
	c->nstate = N_IDLE;
	if (shutdown) {
		c->dead = true;
		return;
	}
	if (c->held) {
		hold_begin(c, VP_PCI_STOP, 0, false);
		return;
	}
	if (m->flags & VP_MSG_NEED_REPLY)
		send_stop_ack(c);
}

/*
 * The STOP ack; for a packed device first RING_BASE per ring, as vhost-user's
 * GET_VRING_BASE encodes it (avail half, used half: equal, as the backend
 * resumes with nothing in flight), since no ring index in memory says it.
 */
static void send_stop_ack(struct conn *c)
{
	struct vp_msg m;

	for (unsigned i = 0; i < c->stop_nrings && !c->dead; i++) {
		vp_msg_init(&m, VP_PCI_RING_BASE, 0);
		m.p.state.index = i;
		m.p.state.num = c->stop_base[i] | (uint32_t)c->stop_base[i] << 16;
		send_msg(c, &m);
	}
	c->stop_nrings = 0;
	vp_msg_init(&m, VP_PCI_STOP, VP_MSG_REPLY);
	send_msg(c, &m);
}

static void n_got_stop(struct conn *c, struct vp_msg *m)
{
	n_stop(c, m);
}

/* ERROR, request or reply, in any state: the frontend gives up. */
static void n_error(struct conn *c, struct vp_msg *m)
{
	vp_log(VP_LOG_WARN, "%s: frontend reports error %d: %s", c->name,
	       m->p.error.code, m->p.error.reason);
	c->dead = true;
}

static void n_hello(struct conn *c, struct vp_msg *m)
{
	struct vp_msg out;

	c->peer_minor = m->p.hello.minor;
	deadline_set(c, "HELLO to READY");
	vp_msg_init(&out, VP_PCI_HELLO, VP_MSG_REPLY);
	out.p.hello.magic = VP_PCI_MAGIC;
	out.p.hello.major = VP_PCI_VERSION_MAJOR;
	out.p.hello.minor = VP_PCI_VERSION_MINOR;
	if (send_msg(c, &out) == 0)
		n_request(c, VP_PCI_GET_UUID, N_WAIT_UUID);
}

static void n_got_uuid(struct conn *c, struct vp_msg *m)
{
	memcpy(c->dev.uuid, m->p.uuid, 16);
	n_request(c, VP_PCI_GET_MEMORY_INFO, N_WAIT_MEM);
}

static void n_got_meminfo(struct conn *c, struct vp_msg *m)
{
	struct vp_dev_region regs[VP_PCI_MAX_REGIONS];
	unsigned n = m->p.meminfo.nregions;

	for (unsigned i = 0; i < n; i++) {
		const struct vp_pci_region *w = &m->p.meminfo.regions[i];

		regs[i] = (struct vp_dev_region){ w->gpa, w->size, w->uaddr,
			w->mmap_offset, w->prot, m->fds[i] };
	}
	m->nfds = 0;
	if (set_memory(c, regs, n) == 0)
		n_request(c, VP_PCI_GET_DEVICE_INFO, N_WAIT_DEV);
}

static void n_got_features(struct conn *c, struct vp_msg *m)
{
	uint64_t want = m->p.features.driver_features;
	struct vp_msg out;

	if (want & ~c->srv->features) {
		fail(c, -ENOTSUP, "frontend driver uses features 0x%llx this backend "
		     "does not support (supported 0x%llx)",
		     (unsigned long long)(want & ~c->srv->features),
		     (unsigned long long)c->srv->features);
		return;
	}
	if (!(want & (1ull << VIRTIO_F_VERSION_1))) {
		fail(c, -ENOTSUP, "frontend did not negotiate VIRTIO_F_VERSION_1");
		return;
	}
	if (c->dev.nrings > 2 && !(want & (1ull << VIRTIO_NET_F_MQ))) {
		fail(c, -EINVAL, "%u rings without VIRTIO_NET_F_MQ", c->dev.nrings);
		return;
	}
	/* Packed positions travel in RING_BASE, which an older peer does not know. */
	if ((want & (1ull << VIRTIO_F_RING_PACKED)) && c->peer_minor < VP_PCI_MINOR_PACKED) {
		fail(c, -ENOTSUP, "packed rings (VIRTIO_F_RING_PACKED) need vhost-pci 1.%u; "
		     "this frontend speaks 1.%u", VP_PCI_MINOR_PACKED, c->peer_minor);
		return;
	}
	c->dev.device_features = m->p.features.device_features;
	c->dev.driver_features = want;
	/* The rings, in the layout now known: where each lies, where it resumes. */
	for (unsigned i = 0; i < c->dev.nrings; i++) {
		if (check_ring_gpa(c, i) < 0)
			return;
		if (conn_packed(c) && (c->rings[i].last_avail_idx & 0x7fff) >= c->rings[i].num) {
			fail(c, -EINVAL, "ring %u: packed position 0x%x past its %u descriptors", i,
			     c->rings[i].last_avail_idx, c->rings[i].num);
			return;
		}
	}
	vp_msg_init(&out, VP_PCI_SET_FEATURE_BITS, 0);
	out.p.u64 = want;
	if (send_msg(c, &out) == 0)
		c->nstate = N_WAIT_SETFEAT;
}

/* The frontend's answer to SET_FEATURE_BITS: 0, or it refuses them. */
static void n_got_setfeat_ack(struct conn *c, struct vp_msg *m)
{
	struct vp_msg out;

	if (m->p.u64) {
		fail(c, -(int)(m->p.u64 & 0xffff), "frontend refused the feature bits (%llu)",
		     (unsigned long long)m->p.u64);
		return;
	}
	vp_msg_init(&out, VP_PCI_START, 0);
	out.p.u64 = c->dev.id;
	if (send_msg(c, &out) < 0)
		return;
	c->nstate = N_RUNNING;
	c->features_set = true;
	for (unsigned i = 0; i < c->dev.nrings; i++)
		c->rings[i].started = true;
	update_ready(c);
}

/* ------------------------------------------------------------------------ */
/* the dispatch table */

/* What becomes of the fds a message carries (how many it carries is the
 * codec's table, lib/proto.c; test_server.c checks the two agree). */
enum row_fds {
	FDS_NONE,  /* it carries none: any fd is a violation */
	FDS_TAKE,  /* the handler takes those it keeps; the rest are closed after */
	FDS_DROP,  /* we do not use them: closed before the handler runs */
};

#define ST(s) (1u << (s))
#define N_HANDSHAKE (ST(N_WAIT_UUID) | ST(N_WAIT_MEM) | ST(N_WAIT_DEV) | ST(N_WAIT_FEAT) | \
		     ST(N_WAIT_SETFEAT))
#define N_ANY (ST(N_IDLE) | N_HANDSHAKE | ST(N_RUNNING))
#define VU_ANY ST(VU_OPEN)

struct dispatch_row {
	enum vp_dialect dialect;
	uint32_t request;
	bool reply;           /* a reply to the server's request (native) */
	unsigned states;      /* ST(enum nstate) bits it is allowed in */
	unsigned char fds;    /* enum row_fds */
	bool ack;             /* vhost-user: a REPLY_ACK of success if asked and it worked */
	void (*handle)(struct conn *c, struct vp_msg *m);
};

#define VU(rq, fds, ack, fn) \
	{ VP_DIALECT_VHOST_USER, VP_VU_##rq, false, VU_ANY, FDS_##fds, ack, fn }
#define N(rq, reply, states, fds, fn) \
	{ VP_DIALECT_NATIVE, VP_PCI_##rq, reply, states, FDS_##fds, false, fn }

/*
 * Every message a frontend may send, per dialect. Anything else is refused:
 * a message without a row, or in a state its row does not list, drops the
 * connection with the reason (a native peer gets ERROR, a vhost-user peer
 * that asked for REPLY_ACK a failing one). vhost-user has no handshake order
 * (QEMU resends any of these at will): its rules are per ring, in the
 * handlers (a started ring takes no new size, an address needs memory).
 */
static const struct dispatch_row dispatch_table[] = {
	VU(GET_FEATURES, NONE, false, vu_get_features),
	VU(SET_FEATURES, NONE, true, vu_set_features),
	VU(GET_PROTOCOL_FEATURES, NONE, false, vu_get_protocol_features),
	VU(SET_PROTOCOL_FEATURES, NONE, true, vu_set_protocol_features),
	VU(SET_OWNER, NONE, true, vu_set_owner),
	VU(RESET_OWNER, NONE, true, vu_reset),
	VU(RESET_DEVICE, NONE, true, vu_reset),
	VU(GET_QUEUE_NUM, NONE, false, vu_get_queue_num),
	VU(SET_MEM_TABLE, TAKE, true, vu_set_mem_table),
	VU(SET_LOG_BASE, DROP, true, vu_nothing),       /* not offered */
	VU(SET_LOG_FD, DROP, true, vu_nothing),         /* not offered */
	VU(SET_BACKEND_REQ_FD, DROP, true, vu_nothing), /* not offered */
	VU(SET_VRING_NUM, NONE, true, vu_set_vring_num),
	VU(SET_VRING_BASE, NONE, true, vu_set_vring_base),
	VU(SET_VRING_ADDR, NONE, true, vu_set_vring_addr),
	VU(GET_VRING_BASE, NONE, false, vu_get_vring_base),
	VU(SET_VRING_KICK, TAKE, true, vu_set_vring_fds),
	VU(SET_VRING_CALL, TAKE, true, vu_set_vring_fds),
	VU(SET_VRING_ERR, DROP, true, vu_set_vring_fds), /* never used to report */
	VU(SET_VRING_ENABLE, NONE, true, vu_set_vring_enable),
	VU(SEND_RARP, NONE, true, vu_nothing),
	VU(NET_SET_MTU, NONE, true, vu_nothing),

	N(HELLO, false, ST(N_IDLE), NONE, n_hello),
	N(GET_UUID, true, ST(N_WAIT_UUID), NONE, n_got_uuid),
	N(GET_MEMORY_INFO, true, ST(N_WAIT_MEM), TAKE, n_got_meminfo),
	N(GET_DEVICE_INFO, true, ST(N_WAIT_DEV), TAKE, n_got_devinfo),
	N(GET_FEATURE_BITS, true, ST(N_WAIT_FEAT), NONE, n_got_features),
	N(SET_FEATURE_BITS, true, ST(N_WAIT_SETFEAT), NONE, n_got_setfeat_ack),
	N(STOP, false, N_HANDSHAKE | ST(N_RUNNING), NONE, n_got_stop),
	N(ERROR, false, N_ANY, NONE, n_error),
	N(ERROR, true, N_ANY, NONE, n_error),
};

static const struct dispatch_row *dispatch_find(enum vp_dialect d, uint32_t request, bool reply)
{
	for (size_t i = 0; i < sizeof(dispatch_table) / sizeof(dispatch_table[0]); i++) {
		const struct dispatch_row *r = &dispatch_table[i];

		if (r->dialect == d && r->request == request && r->reply == reply)
			return r;
	}
	return NULL;
}

/* The one place a message meets the session's state and fd rules. */
static void dispatch(struct conn *c, struct vp_msg *m)
{
	bool reply = m->flags & VP_MSG_REPLY;
	const struct dispatch_row *row = dispatch_find(c->dev.dialect, m->request, reply);

	if (!row || !(row->states & ST(c->nstate))) {
		if (c->dev.dialect == VP_DIALECT_NATIVE)
			fail(c, -EPROTO, "unexpected %s%s in state %s", vp_msg_name(m->request),
			     reply ? " reply" : "", nstate_name(c->nstate));
		else if (reply)
			fail(c, -EPROTO, "unexpected reply %s from a vhost-user frontend",
			     vp_msg_name(m->request));
		else
			fail(c, -EOPNOTSUPP, "%s is not supported on a vhost-user connection",
			     vp_msg_name(m->request));
		return;  /* the caller closes its fds */
	}
	if (m->nfds && row->fds == FDS_NONE) {
		fail(c, -EBADF, "%s%s carries %u fds, it may carry none",
		     vp_msg_name(m->request), reply ? " reply" : "", m->nfds);
		return;
	}
	if (row->fds == FDS_DROP)
		vp_msg_close_fds(m);
	row->handle(c, m);
	if (row->ack && !c->dead && (m->flags & VP_MSG_NEED_REPLY) &&
	    vu_proto(c, VP_VU_PROTOCOL_F_REPLY_ACK))
		vu_reply_u64(c, m, 0);
}

int vp_server_check_dispatch_table(void)
{
	for (size_t i = 0; i < sizeof(dispatch_table) / sizeof(dispatch_table[0]); i++) {
		const struct dispatch_row *r = &dispatch_table[i];
		unsigned max = vp_msg_max_fds(r->request, r->reply);

		if ((r->fds == FDS_NONE) != (max == 0) ||
		    dispatch_find(r->dialect, r->request, r->reply) != r ||
		    (r->dialect == VP_DIALECT_VHOST_USER) != (r->request < VP_PCI_BASE)) {
			vp_log(VP_LOG_ERR, "dispatch row %zu (%s%s) disagrees with the codec "
			       "or repeats a row", i, vp_msg_name(r->request),
			       r->reply ? " reply" : "");
			return -EINVAL;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* sessions: one per connected socket, from any source (accept or adopt) */

static void conn_handle(struct conn *c, struct vp_msg *m)
{
	if (c->refuse[0]) {
		if (m->request == VP_PCI_HELLO && !(m->flags & VP_MSG_REPLY))
			c->dev.dialect = VP_DIALECT_NATIVE;
		fail(c, -ECONNREFUSED, "%s", c->refuse);
		return;
	}
	if (c->dev.dialect == VP_DIALECT_UNKNOWN) {
		if (m->request == VP_PCI_HELLO && !(m->flags & VP_MSG_REPLY)) {
			c->dev.dialect = VP_DIALECT_NATIVE;
		} else if (m->request < VP_PCI_BASE) {
			c->dev.dialect = VP_DIALECT_VHOST_USER;
			c->nstate = VU_OPEN;
			c->dev.type = VP_VIRTIO_ID_NET;
			c->dev.nrings = 2 * c->srv->pairs;
			if (c->srv->have_uuid) {
				memcpy(c->dev.uuid, c->srv->uuid, 16);
			} else {
				char s[40];

				uuid_generate(c->dev.uuid);
				vp_uuid_format(c->dev.uuid, s);
				vp_log(VP_LOG_INFO, "%s: vhost-user frontend given uuid %s",
				       c->name, s);
			}
		} else {
			fail(c, -EPROTO, "first message %s is neither vhost-user nor HELLO",
			     vp_msg_name(m->request));
			return;
		}
		vp_log(VP_LOG_INFO, "%s: %s frontend", c->name, vp_dialect_name(c->dev.dialect));
	}
	vp_log(VP_LOG_DEBUG, "%s: %s%s", c->name, vp_msg_name(m->request),
	       m->flags & VP_MSG_REPLY ? " (reply)" : "");
	c->cur = m;
	dispatch(c, m);
	c->cur = NULL;
}

static void conn_readable(struct conn *c)
{
	struct vp_msg m;
	int r;

	while (!c->dead && !c->held) {
		r = vp_sock_recv(c->sock, &c->rx, &m);
		if (r == 0)
			return;
		if (r < 0) {
			if (r == -ECONNRESET)
				vp_log(VP_LOG_INFO, "%s: frontend disconnected", c->name);
			else
				fail(c, r, "bad message: %s", strerror(-r));
			c->dead = true;
			return;
		}
		conn_handle(c, &m);
		vp_msg_close_fds(&m); /* whatever a handler did not take */
	}
}

static void conn_destroy(struct conn *c)
{
	struct vp_server *s = c->srv;

	if (c->dev.state == VP_DEV_READY) {
		c->dev.state = VP_DEV_STOPPED;
		emit(c, VP_EV_DEVICE_STOPPED);
	}
	emit(c, VP_EV_DEVICE_REMOVED);
	vp_log(VP_LOG_INFO, "%s: device %llu removed", c->name, (unsigned long long)c->dev.id);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->sock, NULL);
	close(c->sock);
	vp_rx_reset(&c->rx);
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		reset_ring(&c->rings[i]);
	drop_memory(c);
	for (struct conn **p = &s->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	s->nconns--;
	free(c);
}

/*
 * A session on a connected socket: it starts with the dialect unknown and
 * the first-message deadline. The listener (accept_one()) or the caller
 * (vp_server_adopt()) has vouched for the peer. On error fd is left open.
 */
static int conn_new(struct vp_server *s, int fd, const struct ucred *cred)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct conn *c;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->srv = s;
	c->sock = fd;
	vp_rx_init(&c->rx);
	c->dev.id = __atomic_fetch_add(&next_device_id, 1, __ATOMIC_RELAXED);
	c->dev.server_id = s->id;
	c->dev.peer_pid = cred->pid;
	c->dev.peer_uid = cred->uid;
	c->dev.regions = c->regions;
	c->dev.rings = c->rings;
	for (unsigned i = 0; i < VP_DEV_MAX_RINGS; i++)
		c->rings[i].kick_fd = c->rings[i].call_fd = -1;
	snprintf(c->name, sizeof(c->name), "%s#%llu", s->id, (unsigned long long)c->dev.id);
	deadline_set(c, "first messages");
	ev.data.ptr = c;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = -errno;

		free(c);
		return e;
	}
	c->next = s->conns;
	s->conns = c;
	s->nconns++;
	vp_log(VP_LOG_INFO, "%s: frontend connected (pid %d uid %u)", c->name,
	       (int)cred->pid, (unsigned)cred->uid);
	emit(c, VP_EV_DEVICE_NEW);
	return 0;
}

static struct ucred peer_cred(int fd)
{
	struct ucred cred = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(cred);

	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
	return cred;
}

/* ------------------------------------------------------------------------ */
/* the listener: who gets a session */

#define REFUSE_LOG_MS 10000

/*
 * Refuse a connection before it is one. A peer connecting in a loop must
 * not fill the log: the first refusal is logged with its reason, the rest
 * are counted and summed up at most once per REFUSE_LOG_MS.
 */
static void refuse_at_door(struct vp_server *s, int fd, pid_t pid, const char *why)
{
	int64_t now = mono_ms();

	close(fd);
	s->refused++;
	snprintf(s->refused_last, sizeof(s->refused_last), "%s: pid %d: %s", s->id, (int)pid, why);
	if (now < s->refuse_log_ms) {
		s->refused_quiet++;
		snprintf(s->refuse_last, sizeof(s->refuse_last), "%s", why);
		return;
	}
	if (s->refused_quiet)
		vp_log(VP_LOG_WARN, "%s: refused %u more connections in the last %d s (last: %s)",
		       s->id, s->refused_quiet, REFUSE_LOG_MS / 1000, s->refuse_last);
	vp_log(VP_LOG_WARN, "%s: refusing pid %d: %s", s->id, (int)pid, why);
	s->refused_quiet = 0;
	s->refuse_log_ms = now + REFUSE_LOG_MS;
}

static void accept_one(struct vp_server *s, int fd)
{
	struct ucred cred = peer_cred(fd);

	if (s->nconns >= s->max_conns) {
		char why[96];

		snprintf(why, sizeof(why), "connection limit %u reached", s->max_conns);
		refuse_at_door(s, fd, cred.pid, why);
		return;
	}
	if (s->check_uid && cred.uid != s->allowed_uid) {
		char why[96];

		snprintf(why, sizeof(why), "uid %u is not the allowed uid %u", (unsigned)cred.uid,
			 (unsigned)s->allowed_uid);
		refuse_at_door(s, fd, cred.pid, why);
		return;
	}
	if (conn_new(s, fd, &cred) < 0)
		close(fd);
}

int vp_server_adopt(struct vp_server *s, int fd)
{
	int type = 0, domain = 0, fl;
	socklen_t tl = sizeof(type), dl = sizeof(domain);
	struct ucred cred;

	if (!s || fd < 0)
		return -EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0)
		return -errno;
	/* Fds travel as SCM_RIGHTS and messages are read as a byte stream. */
	if (domain != AF_UNIX || type != SOCK_STREAM)
		return -EPROTOTYPE;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	cred = peer_cred(fd);
	return conn_new(s, fd, &cred);
}

static void accept_all(struct vp_server *s)
{
	for (;;) {
		int fd = accept4(s->lsock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				vp_log(VP_LOG_WARN, "%s: accept: %s", s->id, strerror(errno));
			if (errno != EINTR)
				return;
			continue;
		}
		accept_one(s, fd);
	}
}

static void reap(struct vp_server *s)
{
	struct conn *c = s->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->dead)
			conn_destroy(c);
	}
}

static void expire_deadlines(struct vp_server *s)
{
	int64_t now = mono_ms();

	for (struct conn *c = s->conns; c; c = c->next)
		if (!c->dead && c->deadline_ms && now >= c->deadline_ms)
			fail(c, -ETIMEDOUT, "handshake timed out: %s not within %u ms",
			     c->waiting_for ? c->waiting_for : "READY", s->handshake_ms);
}

/* The timerfd fires at the earliest deadline of any connection: its
 * handshake, a held stop reply, or at once for messages left waiting. */
static void arm_timer(struct vp_server *s)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	uint64_t when = UINT64_MAX;

	if (s->timerfd < 0)
		return;
	for (const struct conn *c = s->conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->resume)
			when = 1;
		if (c->held && c->stop_deadline < when)
			when = c->stop_deadline;
		if (c->deadline_ms && (uint64_t)c->deadline_ms * 1000000u < when)
			when = (uint64_t)c->deadline_ms * 1000000u;
	}
	if (when != UINT64_MAX) {
		when = when ? when : 1;
		its.it_value.tv_sec = (time_t)(when / 1000000000ull);
		its.it_value.tv_nsec = (long)(when % 1000000000ull);
	}
	timerfd_settime(s->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void timer_fire(struct vp_server *s)
{
	uint64_t now = now_ns();

	drain_fd(s->timerfd);
	for (struct conn *c = s->conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->held && now >= c->stop_deadline && c->held_req == VP_PCI_STOP &&
		    c->stop_nrings) {
			/* Packed: an ack now would carry positions nobody told. */
			c->held = false;
			fail(c, -ETIMEDOUT, "backend did not release its stop within %u ms: where "
			     "the packed rings stopped is unknown", s->stop_ms);
			continue;
		}
		if (c->held && now >= c->stop_deadline) {
			if (c->held_req == VP_PCI_STOP)
				vp_log(VP_LOG_WARN, "%s: backend did not release its stop within "
				       "%u ms; acking STOP anyway", c->name, s->stop_ms);
			else
				vp_log(VP_LOG_WARN, "%s: ring %u: backend did not release its stop "
				       "within %u ms; answering GET_VRING_BASE anyway", c->name,
				       c->held_idx, s->stop_ms);
			send_held(c);
		}
		if (c->resume && !c->held) {
			c->resume = false;
			conn_readable(c);
		}
	}
}

int vp_server_dispatch(struct vp_server *s)
{
	struct epoll_event evs[64];
	int n;

	for (;;) {
		n = epoll_wait(s->epfd, evs, 64, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		s->dispatching++;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				accept_all(s);
				continue;
			}
			if (evs[i].data.ptr == &s->timerfd) {
				timer_fire(s);
				continue;
			}
			if (c->dead)
				continue;
			if (!c->held)
				conn_readable(c);
			if (evs[i].events & (EPOLLHUP | EPOLLERR) && !c->dead) {
				vp_log(VP_LOG_INFO, "%s: frontend hung up", c->name);
				c->dead = true;
			}
		}
		s->dispatching--;
		expire_deadlines(s);
		/* Destroy only after the batch: later events may name a conn. */
		reap(s);
		arm_timer(s);
		if (n < 64)
			return 0;
	}
}

/* ------------------------------------------------------------------------ */
/* the listening socket */

/* A listening socket made by someone else (socket activation). */
static int adopt_listener(struct vp_server *s, int fd)
{
	int type = 0, domain = 0, acc = 0, fl;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain), l3 = sizeof(acc);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l3) < 0)
		return errno == ENOTSOCK ? -ENOTSOCK : -errno;
	if (type != SOCK_STREAM || domain != AF_UNIX || !acc)
		return -EPROTOTYPE;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	s->lsock = fd;
	s->lsock_adopted = true;
	return 0;
}

static int listen_on(struct vp_server *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, e;

	if (strlen(s->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, s->path);
	if (lstat(s->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			vp_log(VP_LOG_ERR, "%s: %s exists and is not a socket", s->id, s->path);
			return -EEXIST;
		}
		/* A socket file nobody listens on is left from a crash: replace it. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		e = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
		close(fd);
		if (e == 0) {
			vp_log(VP_LOG_ERR, "%s: %s is in use by another server", s->id, s->path);
			return -EADDRINUSE;
		}
		unlink(s->path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Nobody can connect before listen(), so chmod after bind is race-free. */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(s->path, s->mode) < 0 || listen(fd, 64) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	s->lsock = fd;
	return 0;
}

int vp_server_new(struct vp_server **out, const struct vp_server_config *cfg)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct epoll_event tev = { .events = EPOLLIN };
	struct vp_server *s;
	int e;

	*out = NULL;
	if (!cfg || (cfg->path && !cfg->path[0]) ||
	    cfg->max_connections > VP_SERVER_MAX_CONNECTIONS ||
	    cfg->max_queue_pairs > VP_DEV_MAX_QUEUE_PAIRS)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lsock = s->epfd = s->timerfd = -1;
	s->path = cfg->path ? strdup(cfg->path) : NULL;
	s->id = strdup(cfg->id && cfg->id[0] ? cfg->id : cfg->path ? cfg->path : "vhost-pci");
	s->max_conns = cfg->max_connections ? cfg->max_connections : VP_SERVER_DEFAULT_CONNECTIONS;
	s->mode = cfg->mode ? cfg->mode : 0600;
	s->check_uid = cfg->check_uid;
	s->allowed_uid = cfg->allowed_uid;
	s->have_uuid = cfg->have_uuid;
	memcpy(s->uuid, cfg->uuid, 16);
	s->features = cfg->features ? cfg->features : VP_SERVER_DEFAULT_FEATURES;
	s->pairs = cfg->max_queue_pairs ? cfg->max_queue_pairs : 1;
	if (s->pairs > 1)
		s->features |= 1ull << VIRTIO_NET_F_MQ;
	else
		s->features &= ~(1ull << VIRTIO_NET_F_MQ);  /* no pairs to offer */
	s->allow_unsealed = cfg->allow_unsealed;
	s->handshake_ms = cfg->handshake_timeout_ms == VP_SERVER_NO_TIMEOUT ? 0 :
			  cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms :
						      VP_SERVER_DEFAULT_HANDSHAKE_MS;
	s->stop_ms = cfg->stop_timeout_ms ? cfg->stop_timeout_ms : VP_SERVER_DEFAULT_STOP_MS;
	s->cb = cfg->on_event;
	s->opaque = cfg->opaque;
	if ((cfg->path && !s->path) || !s->id) {
		e = -ENOMEM;
		goto err;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		e = -errno;
		goto err;
	}
	s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timerfd < 0) {
		e = -errno;
		goto err;
	}
	tev.data.ptr = &s->timerfd;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timerfd, &tev) < 0) {
		e = -errno;
		goto err;
	}
	if (!s->path && !cfg->use_listen_fd) {
		/* Sessions come only from vp_server_adopt(). */
		*out = s;
		return 0;
	}
	e = cfg->use_listen_fd ? adopt_listener(s, cfg->listen_fd) : listen_on(s);
	if (e < 0)
		goto err;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lsock, &ev) < 0) {
		e = -errno;
		if (!s->lsock_adopted)
			unlink(s->path);
		goto err;
	}
	vp_log(VP_LOG_INFO, "%s: listening on %s%s (max %u connections)", s->id,
	       s->path ? s->path : "a passed socket", s->lsock_adopted ? " (passed to us)" : "",
	       s->max_conns);
	*out = s;
	return 0;
err:
	if (s->lsock >= 0 && !s->lsock_adopted)  /* an adopted one stays the caller's */
		close(s->lsock);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->timerfd >= 0)
		close(s->timerfd);
	free(s->path);
	free(s->id);
	free(s);
	return e;
}

void vp_server_free(struct vp_server *s)
{
	if (!s)
		return;
	for (struct conn *c = s->conns; c; c = c->next) {
		if (c->dev.dialect == VP_DIALECT_NATIVE && !c->dead)
			fail(c, -ESHUTDOWN, "server %s shutting down", s->id);
		c->dead = true;
	}
	reap(s);
	if (s->lsock >= 0) {
		close(s->lsock);
		if (!s->lsock_adopted)
			unlink(s->path);
	}
	close(s->epfd);
	close(s->timerfd);
	free(s->path);
	free(s->id);
	free(s);
}

int vp_server_fd(const struct vp_server *s)
{
	return s->epfd;
}

const char *vp_server_id(const struct vp_server *s)
{
	return s->id;
}

const char *vp_server_path(const struct vp_server *s)
{
	return s->path;
}

unsigned vp_server_connections(const struct vp_server *s)
{
	return s->nconns;
}

unsigned vp_server_max_connections(const struct vp_server *s)
{
	return s->max_conns;
}

int vp_server_info(const struct vp_server *s, struct vp_pci_info *info)
{
	int e;

	vp_pci_info_clear(info);
	for (const struct conn *c = s->conns; c; c = c->next) {
		if (c->dead)
			continue;
		e = vp_pci_info_add(info, &c->dev);
		if (e < 0)
			return e;
	}
	return (int)vp_pci_info_count(info);
}

const struct vp_device *vp_server_find(const struct vp_server *s, uint64_t id)
{
	for (const struct conn *c = s->conns; c; c = c->next)
		if (c->dev.id == id && !c->dead)
			return &c->dev;
	return NULL;
}

uint64_t vp_server_refused(const struct vp_server *s, const char **last)
{
	if (last)
		*last = s->refused ? s->refused_last : NULL;
	return s->refused;
}

int vp_server_drop(struct vp_server *s, uint64_t id, const char *reason)
{
	for (struct conn *c = s->conns; c; c = c->next) {
		if (c->dev.id == id && !c->dead) {
			if (c->dev.dialect == VP_DIALECT_UNKNOWN && !c->refuse[0] && s->dispatching) {
				/* Refused at NEW: answer its first message with the reason. */
				snprintf(c->refuse, sizeof(c->refuse), "%s",
					 reason ? reason : "refused");
				vp_log(VP_LOG_DEBUG, "%s: refusing frontend: %s", c->name, c->refuse);
				return 0;
			}
			fail(c, -ECONNABORTED, "%s", reason ? reason : "dropped by request");
			/* From a device callback the connection is still in use up
			 * the stack: the dispatch loop destroys it after the batch. */
			if (!s->dispatching)
				reap(s);
			return 0;
		}
	}
	return -ENOENT;
}

static struct conn *find_conn(struct vp_server *s, uint64_t id)
{
	for (struct conn *c = s->conns; c; c = c->next)
		if (c->dev.id == id && !c->dead)
			return c;
	return NULL;
}

int vp_server_hold_stop(struct vp_server *s, uint64_t id)
{
	struct conn *c = find_conn(s, id);

	if (!c)
		return -ENOENT;
	if (!c->in_stop)
		return -EINVAL;
	c->held = true;
	return 0;
}

int vp_server_release_stop(struct vp_server *s, uint64_t id)
{
	struct conn *c = find_conn(s, id);

	if (!c)
		return -ENOENT;
	if (!c->held)
		return -EINVAL;
	if (c->in_stop) {
		c->held = false;  /* still in the callback: the handler answers */
		return 0;
	}
	send_held(c);
	if (!s->dispatching)
		arm_timer(s);  /* the resume wakes vp_server_fd() */
	return 0;
}

int vp_server_set_ring_base(struct vp_server *s, uint64_t id, unsigned ring, uint16_t base)
{
	struct conn *c = find_conn(s, id);

	if (!c)
		return -ENOENT;
	/* A native STOP ack still due: its rings may be torn down already. */
	if (ring < c->stop_nrings && (c->in_stop || c->held)) {
		if ((base & 0x7fff) >= c->stop_num[ring])
			return -EINVAL;
		c->stop_base[ring] = base;
		if (ring < c->dev.nrings && c->rings[ring].num)
			c->rings[ring].last_avail_idx = base;
		return 0;
	}
	if (ring >= c->dev.nrings ||
	    (c->dev.state == VP_DEV_READY && (c->live_pairs >> (ring / 2) & 1)) ||
	    (conn_packed(c) && (base & 0x7fff) >= c->rings[ring].num))
		return -EINVAL;
	c->rings[ring].last_avail_idx = base;
	return 0;
}

int vp_device_ring_status(const struct vp_device *dev, unsigned ring,
			  struct vp_ring_status *st)
{
	const struct vp_dev_ring *r;
	uint16_t hdr[2];
	int e;

	memset(st, 0, sizeof(*st));
	if (ring >= dev->nrings)
		return -ENOENT;
	r = &dev->rings[ring];
	if (!dev->mem || !r->addr_set || !r->num)
		return -ENODATA;
	if (dev->driver_features & (1ull << VIRTIO_F_RING_PACKED))
		return -EOPNOTSUPP;
	/*
	 * Every read goes through vp_mem_read_safe(): this runs in the control
	 * plane (the daemon) and must survive a frontend that truncated its RAM.
	 */
	e = vp_mem_read_safe(dev->mem, r->avail, hdr, 4);
	if (e)
		return e;
	st->avail_flags = hdr[0];
	st->avail_idx = hdr[1];
	e = vp_mem_read_safe(dev->mem, r->used, hdr, 4);
	if (e)
		return e;
	st->used_flags = hdr[0];
	st->used_idx = hdr[1];
	/* The newest avail entries, up to VP_RING_STATUS_DESC (fewer before the
	 * ring first fills). */
	unsigned n = st->avail_idx < r->num ? st->avail_idx : r->num;

	for (unsigned i = 0; i < VP_RING_STATUS_DESC && i < n; i++) {
		uint16_t slot = (uint16_t)(st->avail_idx - 1 - i) & (r->num - 1);
		struct vring_desc d;
		uint16_t head;

		if (vp_mem_read_safe(dev->mem, r->avail + 4 + 2ull * slot, &head, 2) ||
		    head >= r->num ||
		    vp_mem_read_safe(dev->mem, r->desc + 16ull * head, &d, sizeof(d)))
			continue;
		st->desc[st->ndesc].head = head;
		st->desc[st->ndesc].addr = d.addr;
		st->desc[st->ndesc].len = d.len;
		st->desc[st->ndesc].flags = d.flags;
		st->desc[st->ndesc].in_memory =
			vp_mem_check_gpa(dev->mem, d.addr, d.len, VP_MEM_READ) == 0;
		st->ndesc++;
	}
	return 0;
}
