/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Frontend side of the vhost-pci protocol (native) and of vhost-user.
 *
 * Security model: the server is a peer like any other. Its messages pass the
 * codec, then must be the one expected in the current state; features it
 * sets must be a subset of what we offered. A violation fails the client
 * with a reason; nothing is trusted beyond that.
 */
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "internal.h"
#include "vhostpci/log.h"
#include "vhostpci/sock.h"

struct vp_client {
	int sock;
	struct vp_rx rx;
	struct vp_frontend_info info;
	enum vp_client_state state;
	bool hello_acked;
	uint64_t dev_id;
	uint64_t features;
	/* Packed rings: where each stopped, from the RING_BASEs before the
	 * last STOP ack (position | wrap << 15). */
	uint16_t base[VP_PCI_MAX_RINGS];
	unsigned base_seen;        /* bit per ring, since the STOP was sent */
	bool base_valid;           /* the last ack came with every ring's */
	char error[VP_PCI_REASON_MAX + 16];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool check_info(const struct vp_frontend_info *info)
{
	if (info->nregions < 1 || info->nregions > VP_PCI_MAX_REGIONS ||
	    info->nrings < 1 || info->nrings > VP_PCI_MAX_RINGS ||
	    info->config_len > VP_PCI_CONFIG_MAX)
		return false;
	return true;
}

/* ------------------------------------------------------------------------ */
/* native dialect */

static void client_fail(struct vp_client *c, bool tell, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void client_fail(struct vp_client *c, bool tell, const char *fmt, ...)
{
	va_list ap;

	if (c->state == VP_CLIENT_FAILED)
		return;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	vp_log(VP_LOG_WARN, "client: %s", c->error);
	if (tell) {
		struct vp_msg m;

		vp_msg_init(&m, VP_PCI_ERROR, 0);
		m.p.error.code = -EPROTO;
		snprintf(m.p.error.reason, sizeof(m.p.error.reason), "%.*s",
			 (int)sizeof(m.p.error.reason) - 1, c->error);
		vp_sock_send(c->sock, &m);
	}
	c->state = VP_CLIENT_FAILED;
}

static int send_hello(struct vp_client *c)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_PCI_HELLO, 0);
	m.p.hello.magic = VP_PCI_MAGIC;
	m.p.hello.major = VP_PCI_VERSION_MAJOR;
	m.p.hello.minor = VP_PCI_VERSION_MINOR;
	c->hello_acked = false;
	c->state = VP_CLIENT_HANDSHAKE;
	return vp_sock_send(c->sock, &m);
}

int vp_client_connect(struct vp_client **out, const char *path,
		      const struct vp_frontend_info *info)
{
	struct vp_client *c;
	int fd, e;

	*out = NULL;
	if (!path || !info || !check_info(info))
		return -EINVAL;
	fd = vp_unix_connect(path);
	if (fd < 0)
		return fd;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->sock = fd;
	c->info = *info;
	vp_rx_init(&c->rx);
	e = send_hello(c);
	if (e < 0) {
		close(fd);
		free(c);
		return e;
	}
	*out = c;
	return 0;
}

void vp_client_free(struct vp_client *c)
{
	if (!c)
		return;
	vp_rx_reset(&c->rx);
	close(c->sock);
	free(c);
}

int vp_client_fd(const struct vp_client *c)
{
	return c->sock;
}

enum vp_client_state vp_client_state(const struct vp_client *c)
{
	return c->state;
}

const char *vp_client_error(const struct vp_client *c)
{
	return c->error;
}

uint64_t vp_client_device_id(const struct vp_client *c)
{
	return c->dev_id;
}

uint64_t vp_client_features(const struct vp_client *c)
{
	return c->features;
}

static void reply_meminfo(struct vp_client *c, struct vp_msg *r)
{
	const struct vp_frontend_info *in = &c->info;

	r->p.meminfo.nregions = in->nregions;
	for (unsigned i = 0; i < in->nregions; i++) {
		const struct vp_dev_region *g = &in->regions[i];

		r->p.meminfo.regions[i] = (struct vp_pci_region){
			.gpa = g->gpa, .size = g->size, .uaddr = g->uaddr,
			.mmap_offset = g->fd_offset, .prot = g->prot,
		};
		r->fds[r->nfds++] = g->fd;
	}
}

static void reply_devinfo(struct vp_client *c, struct vp_msg *r)
{
	const struct vp_frontend_info *in = &c->info;
	struct vp_pci_devinfo *d = &r->p.devinfo;

	d->device_type = in->device_type;
	d->nrings = (uint16_t)in->nrings;
	d->config_len = in->config_len;
	memcpy(d->config, in->config, in->config_len);
	for (unsigned i = 0; i < in->nrings; i++) {
		const struct vp_frontend_ring *g = &in->rings[i];
		struct vp_pci_ring *w = &d->rings[i];

		*w = (struct vp_pci_ring){
			.index = i, .size = g->num, .last_avail_idx = g->last_avail_idx,
			.desc = g->desc, .avail = g->avail, .used = g->used,
			.flags = g->enabled ? VP_PCI_RING_ENABLED : 0,
		};
		if (g->kick_fd >= 0) {
			w->flags |= VP_PCI_RING_KICKFD;
			r->fds[r->nfds++] = g->kick_fd;
		}
		if (g->call_fd >= 0) {
			w->flags |= VP_PCI_RING_CALLFD;
			r->fds[r->nfds++] = g->call_fd;
		}
	}
}

/*
 * Where a packed ring stopped: vhost-user's GET_VRING_BASE encoding, the avail
 * position | wrap << 15 and the used one above it. Both within the ring, and
 * equal: the backend resumes with nothing in flight, so a ring that stopped
 * with buffers out cannot be resumed by anybody and the server is wrong.
 */
static void got_ring_base(struct vp_client *c, const struct vp_vring_state *st)
{
	uint32_t i = st->index;
	uint16_t avail = (uint16_t)st->num, used = (uint16_t)(st->num >> 16);

	if (i >= c->info.nrings || (c->base_seen >> i & 1)) {
		client_fail(c, true, "RING_BASE for ring %u: %s", i, i < c->info.nrings ?
			    "told twice" : "no such ring");
		return;
	}
	if ((avail & 0x7fff) >= c->info.rings[i].num || (used & 0x7fff) >= c->info.rings[i].num) {
		client_fail(c, true, "RING_BASE 0x%08x for ring %u: a position past its %u "
			    "descriptors", st->num, i, c->info.rings[i].num);
		return;
	}
	if (avail != used) {
		client_fail(c, true, "RING_BASE 0x%08x for ring %u: avail and used positions "
			    "(and wrap counters) differ: buffers in flight", st->num, i);
		return;
	}
	c->base[i] = avail;
	c->base_seen |= 1u << i;
}

static void client_handle(struct vp_client *c, const struct vp_msg *m)
{
	bool reply = m->flags & VP_MSG_REPLY;
	struct vp_msg r;

	if (m->request == VP_PCI_ERROR) {
		snprintf(c->error, sizeof(c->error), "server: %s", m->p.error.reason);
		vp_log(VP_LOG_WARN, "client: server reports error %d: %s", m->p.error.code,
		       m->p.error.reason);
		c->state = VP_CLIENT_FAILED;
		return;
	}
	if (m->request == VP_PCI_RING_BASE && !reply && c->state == VP_CLIENT_STOPPING &&
	    (c->features & (1ull << VIRTIO_F_RING_PACKED))) {
		got_ring_base(c, &m->p.state);
		return;
	}
	if (m->request == VP_PCI_STOP && reply && c->state == VP_CLIENT_STOPPING) {
		if (m->p.u64) {
			client_fail(c, false, "server refused STOP: %s",
				    strerror((int)(m->p.u64 & 0xffff)));
			return;
		}
		if ((c->features & (1ull << VIRTIO_F_RING_PACKED)) &&
		    c->base_seen != (1u << c->info.nrings) - 1) {
			client_fail(c, true, "STOP ack without the packed position of ring %u "
				    "(RING_BASE)", (unsigned)__builtin_ctz(~c->base_seen));
			return;
		}
		c->base_valid = c->features & (1ull << VIRTIO_F_RING_PACKED);
		c->state = VP_CLIENT_STOPPED;
		return;
	}
	if (m->request == VP_PCI_HELLO && reply && !c->hello_acked &&
	    c->state == VP_CLIENT_HANDSHAKE) {
		/* An older server would misread packed rings as split: refuse it. */
		if ((c->info.driver_features & (1ull << VIRTIO_F_RING_PACKED)) &&
		    m->p.hello.minor < VP_PCI_MINOR_PACKED) {
			client_fail(c, true, "packed rings (VIRTIO_F_RING_PACKED) need vhost-pci "
				    "1.%u; the server speaks 1.%u", VP_PCI_MINOR_PACKED,
				    m->p.hello.minor);
			return;
		}
		c->hello_acked = true;
		return;
	}
	if (reply || !c->hello_acked || c->state != VP_CLIENT_HANDSHAKE) {
		client_fail(c, true, "unexpected %s%s from the server", vp_msg_name(m->request),
			    reply ? " reply" : "");
		return;
	}
	vp_msg_init(&r, m->request, VP_MSG_REPLY);
	switch (m->request) {
	case VP_PCI_GET_UUID:
		memcpy(r.p.uuid, c->info.uuid, 16);
		break;
	case VP_PCI_GET_MEMORY_INFO:
		reply_meminfo(c, &r);
		break;
	case VP_PCI_GET_DEVICE_INFO:
		reply_devinfo(c, &r);
		break;
	case VP_PCI_GET_FEATURE_BITS:
		r.p.features.device_features = c->info.device_features;
		r.p.features.driver_features = c->info.driver_features;
		break;
	case VP_PCI_SET_FEATURE_BITS:
		if (m->p.u64 & ~c->info.driver_features) {
			r.p.u64 = EINVAL;
			vp_log(VP_LOG_WARN, "client: server set features 0x%llx we did not ask for",
			       (unsigned long long)m->p.u64);
		} else {
			c->features = m->p.u64;
			r.p.u64 = 0;
		}
		break;
	case VP_PCI_START:
		c->dev_id = m->p.u64;
		c->state = VP_CLIENT_STARTED;
		vp_log(VP_LOG_INFO, "client: device %llu started",
		       (unsigned long long)c->dev_id);
		return;
	default:
		client_fail(c, true, "unexpected %s from the server", vp_msg_name(m->request));
		return;
	}
	if (vp_sock_send(c->sock, &r) < 0)
		client_fail(c, false, "sending %s reply failed", vp_msg_name(m->request));
}

int vp_client_dispatch(struct vp_client *c)
{
	struct vp_msg m;

	while (c->state != VP_CLIENT_FAILED) {
		/* vp_sock_recv never blocks; sends stay blocking (small replies). */
		int r = vp_sock_recv(c->sock, &c->rx, &m);

		if (r == 0)
			return 0;
		if (r < 0) {
			client_fail(c, false, "connection to the server failed: %s", strerror(-r));
			break;
		}
		client_handle(c, &m);
		vp_msg_close_fds(&m);
	}
	return -ECONNABORTED;
}

int vp_client_wait(struct vp_client *c, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (c->state == VP_CLIENT_HANDSHAKE) {
		struct pollfd p = { .fd = c->sock, .events = POLLIN };
		int64_t left = deadline - now_ms();

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
		vp_client_dispatch(c);
	}
	return c->state == VP_CLIENT_STARTED ? 0 : -ECONNABORTED;
}

static int send_stop(struct vp_client *c, uint32_t reason, uint32_t flags,
		     enum vp_client_state next)
{
	struct vp_msg m;
	int r;

	if (c->state != VP_CLIENT_STARTED)
		return -EINVAL;
	vp_msg_init(&m, VP_PCI_STOP, flags);
	m.p.u64 = reason;
	c->base_seen = 0;
	c->base_valid = false;
	r = vp_sock_send(c->sock, &m);
	if (r == 0)
		c->state = next;
	return r;
}

int vp_client_stop(struct vp_client *c, uint32_t reason)
{
	return send_stop(c, reason, 0, VP_CLIENT_STOPPED);
}

int vp_client_stop_need_reply(struct vp_client *c)
{
	return send_stop(c, VP_PCI_STOP_RESET, VP_MSG_NEED_REPLY, VP_CLIENT_STOPPING);
}

int vp_client_ring_base(const struct vp_client *c, unsigned ring, uint16_t *base)
{
	if (!c->base_valid || ring >= c->info.nrings)
		return -ENODATA;
	*base = c->base[ring];
	return 0;
}

int vp_client_restart(struct vp_client *c, const struct vp_frontend_info *info)
{
	if (c->state != VP_CLIENT_STOPPED || !info || !check_info(info))
		return -EINVAL;
	c->info = *info;
	return send_hello(c);
}

/* ------------------------------------------------------------------------ */
/* stock vhost-user frontend */

struct vu {
	int sock;
	struct vp_rx rx;
	int timeout_ms;
	bool ack;  /* REPLY_ACK negotiated */
};

/* Send a request; wait for its reply (or ack) when one is due. */
static int vu_call(struct vu *v, struct vp_msg *m, struct vp_msg *reply)
{
	const struct vp_msg_spec *sp = vp_msg_spec(m->request);
	bool want_reply = sp && sp->has_reply;
	struct vp_msg r;
	int e;

	if (!want_reply && v->ack)
		m->flags |= VP_MSG_NEED_REPLY;
	e = vp_sock_send(v->sock, m);
	if (e < 0)
		return e;
	if (!want_reply && !v->ack)
		return 0;
	e = vp_sock_recv_until(v->sock, &v->rx, &r, now_ms() + v->timeout_ms);
	if (e < 0)
		return e;
	if (!(r.flags & VP_MSG_REPLY) || r.request != m->request) {
		vp_log(VP_LOG_WARN, "vhost-user: expected a reply to %s, got %s",
		       vp_msg_name(m->request), vp_msg_name(r.request));
		vp_msg_close_fds(&r);
		return -EPROTO;
	}
	vp_msg_close_fds(&r); /* no reply we use carries fds */
	if (!want_reply)
		return r.p.u64 ? -EIO : 0;
	if (reply)
		*reply = r;
	return 0;
}

static int vu_simple(struct vu *v, uint32_t req, uint64_t val)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.u64 = val;
	return vu_call(v, &m, NULL);
}

static int vu_ring_state(struct vu *v, uint32_t req, uint32_t idx, uint32_t num)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.state.index = idx;
	m.p.state.num = num;
	return vu_call(v, &m, NULL);
}

static int vu_ring_fd(struct vu *v, uint32_t req, uint32_t idx, int fd)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.u64 = idx | (fd < 0 ? VP_VU_VRING_NOFD : 0);
	if (fd >= 0) {
		m.fds[0] = fd;
		m.nfds = 1;
	}
	return vu_call(v, &m, NULL);
}

/* Our process address of a guest-physical range, via the region table. */
static int gpa_to_uva(const struct vp_frontend_info *in, uint64_t gpa, uint64_t *uva)
{
	for (unsigned i = 0; i < in->nregions; i++) {
		const struct vp_dev_region *g = &in->regions[i];

		if (gpa >= g->gpa && gpa - g->gpa < g->size) {
			*uva = g->uaddr + (gpa - g->gpa);
			return 0;
		}
	}
	return -EFAULT;
}

/*
 * Where a ring starts: packed rings fresh; split ones at the info's base, which
 * names a split position only if the info offered split rings (a packed offer
 * the backend turned down starts fresh split rings).
 */
static uint32_t vu_base(const struct vp_frontend_info *in, uint64_t feat,
			const struct vp_frontend_ring *g)
{
	if (feat & (1ull << VIRTIO_F_RING_PACKED))
		return VP_VU_PACKED_FRESH_BASE;
	return (in->driver_features & (1ull << VIRTIO_F_RING_PACKED)) ? 0 : g->last_avail_idx;
}

static int vu_setup(struct vu *v, const struct vp_frontend_info *in, uint64_t *negotiated)
{
	struct vp_msg m, r;
	uint64_t offered, feat;
	bool mq = false;  /* protocol feature MQ in use */
	unsigned nrings = in->nrings;
	int e;

	vp_msg_init(&m, VP_VU_GET_FEATURES, 0);
	e = vu_call(v, &m, &r);
	if (e < 0)
		return e;
	offered = r.p.u64;
	feat = in->driver_features & offered;
	if (!(feat & (1ull << VIRTIO_F_VERSION_1))) {
		vp_log(VP_LOG_WARN, "vhost-user: backend does not offer VIRTIO_F_VERSION_1");
		return -ENOTSUP;
	}
	e = vu_simple(v, VP_VU_SET_OWNER, 0);
	if (e < 0)
		return e;
	if (offered & (1ull << VP_VU_F_PROTOCOL_FEATURES)) {
		feat |= 1ull << VP_VU_F_PROTOCOL_FEATURES;
		vp_msg_init(&m, VP_VU_GET_PROTOCOL_FEATURES, 0);
		e = vu_call(v, &m, &r);
		if (e < 0)
			return e;
		uint64_t pf = r.p.u64 & (1ull << VP_VU_PROTOCOL_F_REPLY_ACK);

		if (in->nrings > 2)
			pf |= r.p.u64 & (1ull << VP_VU_PROTOCOL_F_MQ);
		e = vu_simple(v, VP_VU_SET_PROTOCOL_FEATURES, pf);
		if (e < 0)
			return e;
		v->ack = pf & (1ull << VP_VU_PROTOCOL_F_REPLY_ACK);
		mq = pf & (1ull << VP_VU_PROTOCOL_F_MQ);
		if (mq) {
			vp_msg_init(&m, VP_VU_GET_QUEUE_NUM, 0);
			e = vu_call(v, &m, &r);
			if (e < 0)
				return e;
			if (r.p.u64 < in->nrings / 2) {
				vp_log(VP_LOG_WARN, "vhost-user: backend has %llu queue pairs, "
				       "we need %u", (unsigned long long)r.p.u64, in->nrings / 2);
				return -EOPNOTSUPP;
			}
		}
	}
	/* Rings past pair 0 need MQ both ways (the virtio and vhost-user specs);
	 * without, the device has one pair, as a guest's would. */
	if (!(feat & (1ull << VIRTIO_NET_F_MQ)) || !mq) {
		if (in->nrings > 2)
			vp_log(VP_LOG_INFO, "vhost-user: backend without multiqueue: 1 of %u "
			       "queue pairs", in->nrings / 2);
		feat &= ~(1ull << VIRTIO_NET_F_MQ);
		nrings = 2 < in->nrings ? 2 : in->nrings;
	}
	e = vu_simple(v, VP_VU_SET_FEATURES, feat);
	if (e < 0)
		return e;

	vp_msg_init(&m, VP_VU_SET_MEM_TABLE, 0);
	m.p.mem.nregions = in->nregions;
	for (unsigned i = 0; i < in->nregions; i++) {
		const struct vp_dev_region *g = &in->regions[i];

		m.p.mem.regions[i] = (struct vp_mem_region_wire){
			.gpa = g->gpa, .size = g->size, .uaddr = g->uaddr,
			.mmap_offset = g->fd_offset,
		};
		m.fds[i] = g->fd;
	}
	m.nfds = in->nregions;
	e = vu_call(v, &m, NULL);
	if (e < 0)
		return e;

	for (unsigned i = 0; i < nrings; i++) {
		const struct vp_frontend_ring *g = &in->rings[i];

		vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
		m.p.addr.index = i;
		if (gpa_to_uva(in, g->desc, &m.p.addr.desc) < 0 ||
		    gpa_to_uva(in, g->avail, &m.p.addr.avail) < 0 ||
		    gpa_to_uva(in, g->used, &m.p.addr.used) < 0)
			return -EFAULT;
		if ((e = vu_ring_state(v, VP_VU_SET_VRING_NUM, i, g->num)) < 0 ||
		    (e = vu_ring_state(v, VP_VU_SET_VRING_BASE, i, vu_base(in, feat, g))) < 0 ||
		    (e = vu_call(v, &m, NULL)) < 0 ||
		    (e = vu_ring_fd(v, VP_VU_SET_VRING_KICK, i, g->kick_fd)) < 0 ||
		    (e = vu_ring_fd(v, VP_VU_SET_VRING_CALL, i, g->call_fd)) < 0)
			return e;
	}
	if (feat & (1ull << VP_VU_F_PROTOCOL_FEATURES)) {
		for (unsigned i = 0; i < nrings; i++) {
			e = vu_ring_state(v, VP_VU_SET_VRING_ENABLE, i, in->rings[i].enabled);
			if (e < 0)
				return e;
		}
	}
	/* Without acks, a GET is the barrier that proves all of it was taken. */
	if (!v->ack) {
		vp_msg_init(&m, VP_VU_GET_FEATURES, 0);
		e = vu_call(v, &m, &r);
		if (e < 0)
			return e;
	}
	*negotiated = feat;
	return 0;
}

int vp_vu_frontend_start(const char *path, const struct vp_frontend_info *info,
			 uint64_t *negotiated, int timeout_ms)
{
	struct vu v = { .timeout_ms = timeout_ms > 0 ? timeout_ms : 5000 };
	uint64_t feat = 0;
	int e;

	if (!path || !info || !check_info(info) || info->nrings > 8)
		return -EINVAL;
	v.sock = vp_unix_connect(path);
	if (v.sock < 0)
		return v.sock;
	vp_rx_init(&v.rx);
	e = vu_setup(&v, info, &feat);
	vp_rx_reset(&v.rx);
	if (e < 0) {
		vp_log(VP_LOG_WARN, "vhost-user: setting up %s failed: %s", path, strerror(-e));
		close(v.sock);
		return e;
	}
	if (negotiated)
		*negotiated = feat;
	return v.sock;
}

int vp_vu_frontend_stop(int sock, unsigned nrings, uint16_t *last_avail, int timeout_ms)
{
	struct vu v = { .sock = sock, .timeout_ms = timeout_ms > 0 ? timeout_ms : 5000 };
	int e = 0;

	vp_rx_init(&v.rx);
	for (unsigned i = 0; i < nrings && e == 0; i++) {
		struct vp_msg m, r = { 0 };

		vp_msg_init(&m, VP_VU_GET_VRING_BASE, 0);
		m.p.state.index = i;
		e = vu_call(&v, &m, &r);
		if (e == 0 && last_avail)
			last_avail[i] = (uint16_t)r.p.state.num;
	}
	vp_rx_reset(&v.rx);
	return e;
}
