/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Ports: a backend (vp_server + one vp_net per READY device) or a frontend
 * (vp_netfe + a client connection, native or vhost-user) behind one table
 * of operations, with the link policy: refusing what cannot be driven,
 * reconnecting with a backoff, draining after a loss.
 *
 * Security model: everything from the peer reaches us through vp_server,
 * vp_client, vp_net and vp_netfe, which check it; here a peer can only
 * cause a device to be refused, a link to go down or a reconnect. Nothing
 * a peer sends makes a port block: the control side is served without
 * blocking (but see port.h on a vhost-user frontend's handshake).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "vhostpci/guestdev.h"
#include "vhostpci/net21.h"
#include "vhostpci/log.h"
#include "vhostpci/port.h"
#include "internal.h"
#include "util.h"
#include "wait.h"
#include "coalesce.h"

#define RETRY_NS (100 * 1000000ll)  /* frontend: reconnect backoff */
#define DRAIN_NS (100 * 1000000ll)  /* frontend: read what is left this long */
#define CLOSE_NS 1000000000ll        /* frontend: let the device take what we queued */

struct link {
	struct vp_net *net;           /* queue pair 0 */
	struct vp_net *qn[VP_DEV_MAX_QUEUE_PAIRS]; /* live pairs past 0 (MQ); [0] unused */
	unsigned qrr;                 /* the pair the next any-pair receive starts at */
	uint64_t dev_id;
	bool used;                    /* a device holds the slot (up or not) */
	const struct vp_device *dev;  /* valid while used */
	struct vp_guestdev *gdev;     /* guest-pci: the device owns net */
};

struct vp_port;

/* One table per side: the port's calls never test which side they are on. */
struct port_ops {
	int (*control)(struct vp_port *p);
	enum vp_port_state (*state)(const struct vp_port *p);
	bool (*link_up)(const struct vp_port *p, int link);
	int (*rx)(struct vp_port *p, struct vp_pkt *pkts, unsigned n, int *link);
	int (*rx_link)(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n, bool into);
	int (*tx)(struct vp_port *p, int link, const struct vp_pkt *pkts, unsigned n,
		  unsigned flags);
	int (*tx_reserve)(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n);
	int (*tx_commit)(struct vp_port *p, const struct vp_pkt *pkts, unsigned n);
	int (*rx_borrow)(struct vp_port *p, struct vp_pkt *pkts, unsigned n);
	void (*rx_release)(struct vp_port *p);
	int (*tx_forward)(struct vp_port *p, const struct vp_pkt *pkts, unsigned n); /* or NULL */
	unsigned (*rx_pending)(struct vp_port *p, int link);
	uint64_t (*features)(const struct vp_port *p);
	void (*stats)(const struct vp_port *p, struct vp_net_stats *out);
	int (*wait_prep)(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
			 unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
			 int *timeout_ms);
	void (*close)(struct vp_port *p);
};

struct vp_port {
	const struct port_ops *ops;
	enum vp_port_side side;
	char name[16];
	char *path;
	enum vp_net_mode mode;
	struct vp_net_coalesce coal;	/* applied to each link's vp_net / vp_netfe */
	char last_err[160];
	char down_why[200];	/* holds link_broken()'s whole reason */
	struct vp_net_stats acc;      /* totals of links gone (backend), at close (frontend) */
	struct vp_port_counters cnt;

	/* frontend */
	bool vhost_user;
	struct vp_netfe *fe;
	struct vp_client *cl;
	int vu_sock;
	enum vp_port_state fe_state;
	bool fe_started;              /* vp_netfe_start() done since the last reset */
	uint64_t features;            /* negotiated, while up */
	int64_t retry_at_ns, give_up_ns, drain_until_ns;
	bool ever_up;
	uint64_t tx_accepted;         /* frames the frontend driver took */

	/* backend */
	struct vp_server *srv;
	struct vp_guest *guest;       /* guest-pci: devices of our own PCI tree */
	unsigned max_links;           /* devices driven at once; more are refused */
	unsigned rr;
	uint64_t live;                /* bit i: links[i].net is set (links_live()) */
	int resv_link;                /* the link of the last tx_reserve, -1 none */
	struct link links[VP_PORT_MAX_LINKS];

	/* 2.1 peer */
	struct vp_net21 *n21;
	struct vp_pair21 *pair;       /* serve: the broker, in this process */
	int p21_sock;                 /* our JOIN connection: its end = broker gone */
	struct vp_guest21 *g21;       /* guest_pci: our half as PCI functions, owns n21 */
	char *sysfs_root;             /* guest_pci: where to look for them */
	bool p21_up;                  /* the link as last seen, for the counters */
	uint64_t p21_resyncs;         /* vp_net21_resyncs() as last seen */
};

static int64_t now(void)
{
	return (int64_t)now_ns();
}

static void port_log(const struct vp_port *p, enum vp_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void port_log(const struct vp_port *p, enum vp_log_level lvl, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log(lvl, "%s: %s", p->name, msg);
}

/* ------------------------------------------------------------------------ */
/* Backend                                                                  */

_Static_assert(VP_PORT_MAX_LINKS <= 64, "one bit per link in vp_port.live");

/*
 * Which links have a vp_net, for the receive poll: it visits those only
 * instead of testing every slot on every call. Called after each place that
 * can set or clear a link's net (link_down() and the two event handlers).
 */
static void links_live(struct vp_port *p)
{
	uint64_t live = 0;

	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (p->links[i].net)
			live |= 1ull << i;
	p->live = live;
}

static void link_down(struct vp_port *p, struct link *l, const char *why)
{
	struct vp_net *n = l->net;

	if (!n)
		return;
	vp_net_stats_add(&p->acc, vp_net_stats(n));
	l->net = NULL;
	for (unsigned q = 1; q < VP_DEV_MAX_QUEUE_PAIRS; q++) {
		if (l->qn[q]) {
			vp_net_stats_add(&p->acc, vp_net_stats(l->qn[q]));
			vp_net_free(l->qn[q]);
			l->qn[q] = NULL;
		}
	}
	links_live(p);
	p->cnt.link_downs++;
	snprintf(p->down_why, sizeof(p->down_why), "%s", why);
	port_log(p, VP_LOG_INFO, "link down (device %" PRIu64 "): %s", l->dev_id, why);
	/* A guest device's link is its own: failing the device frees it
	 * (its DOWN event finds the link already down here). */
	if (l->gdev)
		vp_guestdev_fail(l->gdev, why);
	else
		vp_net_free(n);
}

/*
 * The data path found a link broken: let go of it AND drop the device with
 * the library's reason. Only letting go would leave the device attached in
 * the sender's eyes (the daemon's relay, or a native frontend), holding a
 * link that nobody drives; dropped, the sender learns why and may offer it
 * again.
 */
static void link_broken(struct vp_port *p, struct link *l, const char *what)
{
	char why[200];
	bool guest = l->gdev != NULL;  /* link_down() fails a guest device itself */

	if (!l->net)
		return;
	snprintf(why, sizeof(why), "%s: %s", what,
		 vp_net_broken(l->net) ? vp_net_broken(l->net) : "broken");
	link_down(p, l, why);
	if (!guest)
		vp_server_drop(p->srv, l->dev_id, why);
}

/* The vp_net of queue pair q of a link, or NULL (no such pair, not live). */
static struct vp_net *link_pair(const struct link *l, unsigned q)
{
	return q >= VP_DEV_MAX_QUEUE_PAIRS ? NULL : q ? l->qn[q] : l->net;
}

/* Pair 0 is up: attach the device's other live pairs (MQ). A pair that
 * cannot be driven is left alone, logged: the frontend's frames on it wait. */
static void link_attach_pairs(struct vp_port *p, struct link *l, const struct vp_device *dev)
{
	for (unsigned q = 1; q < dev->nrings / 2 && q < VP_DEV_MAX_QUEUE_PAIRS; q++) {
		int r;

		if (!vp_device_pair_live(dev, q))
			continue;
		r = vp_net_new_queue(&l->qn[q], dev, q, p->mode);
		if (r == 0)
			(void)vp_net_set_coalesce(l->qn[q], &p->coal);  /* checked at new */
		if (r < 0) {
			l->qn[q] = NULL;
			port_log(p, VP_LOG_WARN, "device %" PRIu64 ": queue pair %u not driven: %s",
				 dev->id, q, strerror(-r));
		}
	}
}

static struct link *find_link(struct vp_port *p, uint64_t id)
{
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (p->links[i].used && p->links[i].dev_id == id)
			return &p->links[i];
	return NULL;
}

/* A link number the caller gave: NULL if out of range or not up. */
static struct link *up_link(const struct vp_port *p, int link)
{
	if (link < 0 || link >= VP_PORT_MAX_LINKS || !p->links[link].net)
		return NULL;
	return (struct link *)&p->links[link];
}

/*
 * Refuse a device, not ignore it: the sender (the daemon's relay, or a
 * native frontend) is told why and may offer it again later.
 */
static void refuse(struct vp_port *p, uint64_t id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void refuse(struct vp_port *p, uint64_t id, const char *fmt, ...)
{
	char why[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	port_log(p, VP_LOG_INFO, "refusing device %" PRIu64 ": %s", id, why);
	p->cnt.refused++;
	vp_server_drop(p->srv, id, why);
}

static unsigned links_in_use(const struct vp_port *p)
{
	unsigned used = 0;

	for (unsigned i = 0; i < p->max_links; i++)
		used += p->links[i].used;
	return used;
}

static void server_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
			 void *opaque)
{
	struct vp_port *p = opaque;
	struct link *l = find_link(p, dev->id);
	char uuid[40];
	int r;

	(void)srv;  /* p->srv: refuse() and link_broken() reach it from there */
	switch (ev) {
	case VP_EV_DEVICE_NEW:
		/* Full: refuse before the handshake, so that the frontend never
		 * sees its device started and sends into rings nobody drives. */
		if (links_in_use(p) >= p->max_links)
			refuse(p, dev->id, "backend full: %u of %u links in use", p->max_links,
			       p->max_links);
		break;
	case VP_EV_DEVICE_READY:
	case VP_EV_DEVICE_CHANGED:
		if (!l) {
			for (unsigned i = 0; i < p->max_links && !l; i++)
				if (!p->links[i].used)
					l = &p->links[i];
			if (!l) {  /* two NEWs raced for the last link */
				refuse(p, dev->id, "backend full: %u of %u links in use",
				       p->max_links, p->max_links);
				return;
			}
			memset(l, 0, sizeof(*l));
			l->used = true;
			l->dev_id = dev->id;
		}
		l->dev = dev;
		if (dev->type != VP_VIRTIO_ID_NET) {
			refuse(p, dev->id, "not a virtio-net device (type %u)", dev->type);
			return;
		}
		if (ev == VP_EV_DEVICE_CHANGED && l->net) {
			/*
			 * Eventfds were replaced while running. vp_net holds copies
			 * of the old ones, so attach again, from where we are:
			 * between bursts vp_net has completed every chain it took,
			 * so each ring's used index is its position. (vp_net_new()
			 * would start from the handshake's last_avail_idx.)
			 */
			struct vp_device cur = *dev;
			struct vp_dev_ring rings[VP_DEV_MAX_RINGS];
			struct vp_ring_status st;

			cur.nrings = dev->nrings < VP_DEV_MAX_RINGS ? dev->nrings
								    : VP_DEV_MAX_RINGS;
			memcpy(rings, dev->rings, cur.nrings * sizeof(rings[0]));
			cur.rings = rings;
			for (unsigned i = 0; i < cur.nrings; i++) {
				struct vp_net *qn = link_pair(l, i / 2);

				if (dev->driver_features & (1ull << VIRTIO_F_RING_PACKED)) {
					/* No index in memory: the walker's. */
					if (qn)
						rings[i].last_avail_idx = vp_net_last_avail(qn, i % 2);
				} else if (vp_device_ring_status(dev, i, &st) == 0) {
					rings[i].last_avail_idx = st.used_idx;
				}
			}
			link_down(p, l, "eventfds replaced: re-attaching");
			r = vp_net_new(&l->net, &cur, p->mode);
			if (r == 0)
				link_attach_pairs(p, l, &cur);
		} else {
			if (l->net)
				link_down(p, l, "device ready again");
			r = vp_net_new(&l->net, dev, p->mode);
			if (r == 0)
				link_attach_pairs(p, l, dev);
		}
		if (r == 0)
			(void)vp_net_set_coalesce(l->net, &p->coal);  /* checked in vp_port_new() */
		if (r < 0) {
			l->net = NULL;
			refuse(p, dev->id, "backend cannot drive the device: %s", strerror(-r));
			return;
		}
		p->cnt.link_ups++;
		vp_uuid_format(dev->uuid, uuid);
		port_log(p, VP_LOG_INFO,
			 "link up: device %" PRIu64 " (%s frontend, uuid %s, pid %d, generation %u, "
			 "features 0x%" PRIx64 ")",
			 dev->id, vp_dialect_name(dev->dialect), uuid, (int)dev->peer_pid,
			 dev->generation, dev->driver_features);
		break;
	case VP_EV_DEVICE_STOPPED:
		/* A packed ring's position lives only in its walker: tell the
		 * server before it goes (GET_VRING_BASE answers it). */
		if (l && l->net && (dev->driver_features & (1ull << VIRTIO_F_RING_PACKED)))
			for (unsigned i = 0; i < dev->nrings; i++)
				if (link_pair(l, i / 2))
					vp_server_set_ring_base(p->srv, dev->id, i,
								vp_net_last_avail(link_pair(l, i / 2),
										  i % 2));
		if (l)
			link_down(p, l, "frontend stopped its rings");
		break;
	case VP_EV_DEVICE_REMOVED:
		if (l) {
			link_down(p, l, "frontend gone");
			l->used = false;
			l->dev = NULL;
			port_log(p, VP_LOG_INFO, "device %" PRIu64 " removed", dev->id);
		}
		break;
	}
}

static void on_server_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
			    void *opaque)
{
	server_event(srv, ev, dev, opaque);
	links_live(opaque);
}

static int be_control(struct vp_port *p)
{
	int r = vp_server_dispatch(p->srv);

	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "server failed: %s", strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++) {
		struct link *l = &p->links[i];

		for (unsigned q = 0; q < VP_DEV_MAX_QUEUE_PAIRS && l->net; q++)
			if (link_pair(l, q) && vp_net_broken(link_pair(l, q)))
				link_broken(p, l, "ring broken");
	}
	return 0;
}

static enum vp_port_state be_state(const struct vp_port *p)
{
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (p->links[i].net)
			return VP_PORT_UP;
	return VP_PORT_DOWN;
}

static bool be_link_up(const struct vp_port *p, int link)
{
	return up_link(p, link) != NULL;
}

static int be_rx(struct vp_port *p, struct vp_pkt *pkts, unsigned n, int *link)
{
	const unsigned nl = VP_PORT_MAX_LINKS, rr = p->rr % VP_PORT_MAX_LINKS;
	/* The live links, rotated so that bit k is link (rr + k) % nl. */
	uint64_t all = nl == 64 ? ~0ull : (1ull << (nl % 64)) - 1;
	uint64_t rot = rr ? ((p->live >> rr) | (p->live << (nl - rr))) & all : p->live;

	while (rot) {
		unsigned i = (rr + (unsigned)__builtin_ctzll(rot)) % nl;
		struct link *l = &p->links[i];
		int r;

		rot &= rot - 1;
		if (!l->net)
			continue;
		/* Every live queue pair, round robin from where the last stopped. */
		for (unsigned j = 0; j < VP_DEV_MAX_QUEUE_PAIRS && l->net; j++) {
			unsigned q = (l->qrr + j) % VP_DEV_MAX_QUEUE_PAIRS;
			struct vp_net *qn = link_pair(l, q);

			if (!qn)
				continue;
			r = vp_net_rx_burst(qn, pkts, n);
			if (r < 0) {
				link_broken(p, l, "frontend's TX ring broken");
				break;
			}
			if (r > 0) {
				l->qrr = (q + 1) % VP_DEV_MAX_QUEUE_PAIRS;
				p->rr = (i + 1) % VP_PORT_MAX_LINKS;
				*link = (int)i;
				return r;
			}
		}
	}
	return 0;
}

/* One link: a copying receive, or (into) into lent buffers. */
static int be_rx_link(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n, bool into)
{
	struct link *l;
	int r;

	if (link < 0 || link >= VP_PORT_MAX_LINKS)
		return -EINVAL;
	l = &p->links[link];
	if (!l->net)
		return 0;
	r = into ? vp_net_rx_into(l->net, pkts, n) : vp_net_rx_burst(l->net, pkts, n);
	if (r == -EIO)
		link_broken(p, l, "frontend's TX ring broken");
	return r;
}

static int be_tx(struct vp_port *p, int link, const struct vp_pkt *pkts, unsigned n,
		 unsigned flags)
{
	struct link *l;
	int r;

	for (unsigned i = 0; i < VP_PORT_MAX_LINKS && link < 0; i++)
		if (p->links[i].net)
			link = (int)i;
	l = up_link(p, link);
	if (!l)
		return 0;
	r = vp_net_tx_burst(l->net, pkts, n, flags);
	if (r < 0)
		link_broken(p, l, "frontend's RX ring broken");
	return r;
}

static int be_tx_reserve(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	int r;

	if (link >= VP_PORT_MAX_LINKS)
		return 0;
	for (unsigned i = link < 0 ? 0 : (unsigned)link; i < VP_PORT_MAX_LINKS; i++) {
		if (!p->links[i].net) {
			if (link >= 0)
				return 0;
			continue;
		}
		r = vp_net_tx_reserve(p->links[i].net, pkts, n);
		if (r < 0) {
			link_broken(p, &p->links[i], "frontend's RX ring broken");
			return r;
		}
		p->resv_link = (int)i;
		return r;
	}
	return 0;
}

static int be_tx_commit(struct vp_port *p, const struct vp_pkt *pkts, unsigned n)
{
	struct link *l = up_link(p, p->resv_link);
	int r;

	if (!l)
		return 0;  /* the link went away in between: nothing was sent */
	r = vp_net_tx_commit(l->net, pkts, n);
	if (r == -EIO)
		link_broken(p, l, "frontend's RX ring broken");
	p->resv_link = -1;
	return r;
}

static int be_rx_borrow(struct vp_port *p, struct vp_pkt *pkts, unsigned n)
{
	(void)p, (void)pkts, (void)n;
	return -ENOTSUP;  /* a backend's receive copies once (or lands in lent buffers) */
}

static void be_rx_release(struct vp_port *p)
{
	(void)p;
}

static unsigned be_rx_pending(struct vp_port *p, int link)
{
	struct link *l = up_link(p, link);

	return l ? vp_net_rx_pending(l->net) : 0;
}

static uint64_t be_features(const struct vp_port *p)
{
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (p->links[i].net)
			return p->links[i].dev->driver_features;
	return 0;
}

static void be_stats(const struct vp_port *p, struct vp_net_stats *out)
{
	*out = p->acc;
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		for (unsigned q = 0; q < VP_DEV_MAX_QUEUE_PAIRS && p->links[i].net; q++)
			if (link_pair(&p->links[i], q))
				vp_net_stats_add(out, vp_net_stats(link_pair(&p->links[i], q)));
}

/* Every link that is up, for a wait. -EAGAIN: one broke, control first. */
static int links_wait_items(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
			    unsigned max_it)
{
	unsigned nit = 0;

	if (!rx && !tx)
		return 0;
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS && nit < max_it; i++) {
		for (unsigned q = 0; q < VP_DEV_MAX_QUEUE_PAIRS && nit < max_it; q++) {
			struct vp_net *n = link_pair(&p->links[i], q);

			if (!n)
				continue;
			if (vp_net_broken(n))
				return -EAGAIN;
			it[nit++] = (struct vp_wait_item){ &vp_net_wait_ops, n, rx, tx };
		}
	}
	return (int)nit;
}

static int be_wait_prep(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
			unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
			int *timeout_ms)
{
	(void)timeout_ms;  /* no timers: the server's own (deadlines) wake its fd */
	*nfd = 0;
	if (max_fd)
		pf[(*nfd)++] = (struct pollfd){ .fd = vp_server_fd(p->srv), .events = POLLIN };
	return links_wait_items(p, rx, tx, it, max_it);
}

static void be_close(struct vp_port *p)
{
	/* REMOVED events free the links (and add their stats). */
	vp_server_free(p->srv);
	p->srv = NULL;
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (p->links[i].net)
			link_down(p, &p->links[i], "shutting down");
}

/* The data path of every port whose links are vp_nets (a server's, a guest's). */
#define LINK_DATA_OPS                                                          \
	.state = be_state, .link_up = be_link_up, .rx = be_rx, .rx_link = be_rx_link, \
	.tx = be_tx, .tx_reserve = be_tx_reserve, .tx_commit = be_tx_commit,   \
	.rx_borrow = be_rx_borrow, .rx_release = be_rx_release,                \
	.rx_pending = be_rx_pending, .features = be_features, .stats = be_stats

static const struct port_ops backend_ops = {
	.control = be_control,
	LINK_DATA_OPS,
	.wait_prep = be_wait_prep,
	.close = be_close,
};

static unsigned config_max_links(const struct vp_port_config *c)
{
	return c->max_links && c->max_links < VP_PORT_MAX_LINKS ? c->max_links : VP_PORT_MAX_LINKS;
}

static int be_new(struct vp_port *p, const struct vp_port_config *c)
{
	struct vp_server_config cfg = { 0 };
	/* Packed rings too: the server and vp_net drive both layouts. */
	uint64_t features = c->features ? c->features
					: VP_NET_FEATURES | (1ull << VIRTIO_F_RING_PACKED);
	int r;

	cfg.path = c->path;
	cfg.id = p->name;
	/* Native frontends (the daemon's relay) are held to these; stock
	 * vhost-user frontends connecting straight here get the transport bit. */
	cfg.features = features | (1ull << VP_VU_F_PROTOCOL_FEATURES);
	cfg.allow_unsealed = c->allow_unsealed;
	cfg.max_queue_pairs = c->queue_pairs;
	p->max_links = config_max_links(c);
	cfg.on_event = on_server_event;
	cfg.opaque = p;
	r = vp_server_new(&p->srv, &cfg);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "cannot listen on %s: %s", c->path,
			 strerror(-r));
		p->srv = NULL;
		return r;
	}
	port_log(p, VP_LOG_INFO, "listening on %s", c->path);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Backend inside a backend VM: vhost-pci devices of our own PCI tree        */

static struct link *find_gdev(struct vp_port *p, const struct vp_guestdev *d)
{
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (p->links[i].used && p->links[i].gdev == d)
			return &p->links[i];
	return NULL;
}

/* A device keeps its link number from NEW to REMOVED (one TAP per link). */
static void guest_event(struct vp_guest *g, enum vp_guest_event ev, struct vp_guestdev *d,
			void *opaque)
{
	struct vp_port *p = opaque;
	struct link *l = find_gdev(p, d);
	char uuid[40];

	(void)g;
	switch (ev) {
	case VP_GUEST_NEW:
		for (unsigned i = 0; i < p->max_links && !l; i++)
			if (!p->links[i].used) {
				l = &p->links[i];
				memset(l, 0, sizeof(*l));
				l->used = true;
				l->gdev = d;
			}
		if (!l) {  /* vp_guest watches no more than max_links devices */
			p->cnt.refused++;
			vp_guestdev_fail(d, "backend full");
		}
		break;
	case VP_GUEST_UP:
		if (!l)
			break;
		l->net = vp_guestdev_net(d);
		l->dev = vp_guestdev_device(d);
		l->dev_id = l->dev->id;
		p->cnt.link_ups++;
		vp_uuid_format(l->dev->uuid, uuid);
		port_log(p, VP_LOG_INFO, "link %d up: device %" PRIu64 " (guest-pci %s, uuid %s, "
			 "generation %u, features 0x%" PRIx64 ")", (int)(l - p->links), l->dev_id,
			 vp_guestdev_name(d), uuid, l->dev->generation, l->dev->driver_features);
		break;
	case VP_GUEST_DOWN:
		if (l && l->net) {
			vp_net_stats_add(&p->acc, vp_net_stats(l->net));
			l->net = NULL;
			p->cnt.link_downs++;
			snprintf(p->down_why, sizeof(p->down_why), "%s", vp_guestdev_reason(d));
			port_log(p, VP_LOG_INFO, "link %d down (device %" PRIu64 "): %s",
				 (int)(l - p->links), l->dev_id, p->down_why);
		}
		break;
	case VP_GUEST_REMOVED:
		if (l)
			memset(l, 0, sizeof(*l));
		break;
	}
}

static void on_guest_event(struct vp_guest *g, enum vp_guest_event ev, struct vp_guestdev *d,
			   void *opaque)
{
	guest_event(g, ev, d, opaque);
	links_live(opaque);
}

static int gu_control(struct vp_port *p)
{
	/* Links whose ring broke are failed by the device's own control pass. */
	vp_guest_control(p->guest);
	return 0;
}

/* No interrupt reaches us: the generations are looked at this often when idle. */
#define GUEST_IDLE_LOOK_MS 10

static int gu_wait_prep(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
			unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
			int *timeout_ms)
{
	int t = vp_guest_timeout(p->guest);

	(void)pf, (void)max_fd;
	*nfd = 0;
	if (t > GUEST_IDLE_LOOK_MS)
		t = GUEST_IDLE_LOOK_MS;
	if (*timeout_ms < 0 || t < *timeout_ms)
		*timeout_ms = t;
	return links_wait_items(p, rx, tx, it, max_it);
}

static void gu_close(struct vp_port *p)
{
	/* DOWN and REMOVED events add the links' stats. */
	vp_guest_free(p->guest);
	p->guest = NULL;
}

static const struct port_ops guest_ops = {
	.control = gu_control,
	LINK_DATA_OPS,
	.wait_prep = gu_wait_prep,
	.close = gu_close,
};

static int gu_new(struct vp_port *p, const struct vp_port_config *c)
{
	struct vp_guest_config gc = { 0 };
	int r;

	p->max_links = config_max_links(c);
	gc.sysfs_root = c->sysfs_root;
	gc.have_uuid = c->guest_uuid_set;
	memcpy(gc.uuid, c->uuid, 16);
	gc.mode = c->mode;
	gc.features = c->features;
	gc.max_devices = p->max_links;
	gc.on_event = on_guest_event;
	gc.opaque = p;
	r = vp_guest_new(&p->guest, &gc);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "%s",
			 r == -ENOTSUP ? "guest-pci: irq mode needs interrupts userspace cannot "
					 "have in this guest; use poll or adaptive"
				       : "guest-pci: cannot watch the PCI tree");
		p->guest = NULL;
		return r;
	}
	port_log(p, VP_LOG_INFO, "watching %s for vhost-pci devices",
		 c->sysfs_root ? c->sysfs_root : VP_GUEST_SYSFS_DEFAULT);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Frontend                                                                 */

static void fe_down(struct vp_port *p, const char *why)
{
	bool was_up = p->fe_state == VP_PORT_UP || p->fe_state == VP_PORT_DRAIN;

	if (p->cl) {
		vp_client_free(p->cl);
		p->cl = NULL;
	}
	close_fd(&p->vu_sock);
	if (p->fe_started) {
		/* The driver's counters survive the reset. */
		const struct vp_net_stats *st = vp_netfe_stats(p->fe);
		int r = vp_netfe_reset(p->fe);

		/* What the old rings never consumed is gone with them. */
		p->tx_accepted = st->tx_packets + st->tx_drop_no_buf + st->tx_drop_too_big;
		if (r < 0)
			port_log(p, VP_LOG_WARN, "device reset failed: %s", strerror(-r));
		p->fe_started = false;
	}
	p->fe_state = VP_PORT_DOWN;
	p->retry_at_ns = now() + RETRY_NS;
	if (was_up) {
		p->cnt.link_downs++;
		if (why != p->down_why)  /* after a drain it is already there */
			snprintf(p->down_why, sizeof(p->down_why), "%s", why);
		port_log(p, VP_LOG_INFO, "link down: %s; reconnecting to %s", why, p->path);
	}
}

/* The connection is gone: read what is left in the RX ring, then reset. */
static void fe_lost(struct vp_port *p, const char *why)
{
	if (p->fe_state != VP_PORT_UP) {
		fe_down(p, why);
		return;
	}
	snprintf(p->down_why, sizeof(p->down_why), "%s", why);
	p->fe_state = VP_PORT_DRAIN;
	p->drain_until_ns = now() + DRAIN_NS;
}

static void fe_started(struct vp_port *p, uint64_t features)
{
	/* Only virtio feature bits reach the driver; the vhost-user transport
	 * bit (PROTOCOL_FEATURES) is the connection's business. */
	features &= ~(1ull << VP_VU_F_PROTOCOL_FEATURES);
	int r = vp_netfe_start(p->fe, features);

	if (r < 0) {
		port_log(p, VP_LOG_WARN, "starting the device failed: %s", strerror(-r));
		p->fe_started = true; /* rings may be half set up: reset them */
		fe_down(p, "start failed");
		return;
	}
	p->fe_started = true;
	p->features = features;
	p->fe_state = VP_PORT_UP;
	p->ever_up = true;
	p->cnt.link_ups++;
	port_log(p, VP_LOG_INFO, "link up: %s %s (features 0x%" PRIx64 ")",
		 p->vhost_user ? "vhost-user backend" : "vhost-pci server", p->path, features);
}

static void fe_try_connect(struct vp_port *p)
{
	struct vp_frontend_info info;
	int r;

	vp_netfe_info(p->fe, &info);
	if (p->vhost_user) {
		uint64_t neg = 0;

		r = vp_vu_frontend_start(p->path, &info, &neg, 5000);
		if (r >= 0) {
			p->vu_sock = r;
			fe_started(p, neg);
			return;
		}
	} else {
		r = vp_client_connect(&p->cl, p->path, &info);
		if (r >= 0) {
			p->fe_state = VP_PORT_HANDSHAKE;
			return;
		}
		p->cl = NULL;
	}
	snprintf(p->last_err, sizeof(p->last_err), "connecting to %s: %s", p->path,
		 strerror(-r));
	p->retry_at_ns = now() + RETRY_NS;
	/* Only the connect itself is retried quietly; the rest is logged. */
	if (r != -ENOENT && r != -ECONNREFUSED)
		port_log(p, VP_LOG_WARN, "%s", p->last_err);
}

/* A stock vhost-user backend has nothing to say unasked: EOF or junk ends it. */
static void fe_vu_check(struct vp_port *p)
{
	struct pollfd pf = { .fd = p->vu_sock, .events = POLLIN };
	char b[256];
	ssize_t n;

	if (poll(&pf, 1, 0) <= 0)
		return;
	n = recv(p->vu_sock, b, sizeof(b), MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		fe_lost(p, "vhost-user backend closed the connection");
	else if (n > 0)
		fe_lost(p, "unexpected message from the vhost-user backend");
}

static int fe_control(struct vp_port *p)
{
	switch (p->fe_state) {
	case VP_PORT_DOWN:
		if (now() < p->retry_at_ns)
			return 0;
		if (!p->ever_up && now() > p->give_up_ns) {
			if (!p->last_err[0])
				snprintf(p->last_err, sizeof(p->last_err), "no link to %s", p->path);
			return -ETIMEDOUT;
		}
		fe_try_connect(p);
		return 0;
	case VP_PORT_HANDSHAKE:
		vp_client_dispatch(p->cl);
		if (vp_client_state(p->cl) == VP_CLIENT_STARTED) {
			fe_started(p, vp_client_features(p->cl));
		} else if (vp_client_state(p->cl) == VP_CLIENT_FAILED) {
			snprintf(p->last_err, sizeof(p->last_err), "handshake with %s failed: %s",
				 p->path, vp_client_error(p->cl));
			port_log(p, VP_LOG_WARN, "%s", p->last_err);
			fe_down(p, "handshake failed");
		} else if (!p->ever_up && now() > p->give_up_ns) {
			snprintf(p->last_err, sizeof(p->last_err), "handshake with %s timed out",
				 p->path);
			return -ETIMEDOUT;
		}
		return 0;
	case VP_PORT_UP:
		if (p->cl) {
			vp_client_dispatch(p->cl);
			if (vp_client_state(p->cl) == VP_CLIENT_FAILED) {
				snprintf(p->last_err, sizeof(p->last_err), "%s",
					 vp_client_error(p->cl));
				fe_lost(p, p->last_err[0] ? p->last_err : "server connection lost");
			}
		} else if (p->vu_sock >= 0) {
			fe_vu_check(p);
		}
		if (p->fe_state == VP_PORT_UP && vp_netfe_broken(p->fe)) {
			snprintf(p->last_err, sizeof(p->last_err), "ring broken: %s",
				 vp_netfe_broken(p->fe));
			fe_down(p, p->last_err);
		}
		return 0;
	case VP_PORT_DRAIN:
		if (now() > p->drain_until_ns)
			fe_down(p, p->down_why);
		return 0;
	}
	return 0;
}

static enum vp_port_state fe_state(const struct vp_port *p)
{
	return p->fe_state;
}

static bool fe_link_up(const struct vp_port *p, int link)
{
	return link == 0 && p->fe_state == VP_PORT_UP;
}

/* After a receive: a broken ring resets; an empty one ends a drain. */
static int fe_rx_done(struct vp_port *p, int r)
{
	if (r < 0)
		fe_down(p, "receive ring broken");
	else if (r == 0 && p->fe_state == VP_PORT_DRAIN)
		fe_down(p, p->down_why);
	return r;
}

static bool fe_can_rx(const struct vp_port *p)
{
	return p->fe_state == VP_PORT_UP || p->fe_state == VP_PORT_DRAIN;
}

/* Our queue pair q while the device has it (MQ negotiated), or NULL. */
static struct vp_netfe *fe_pair(const struct vp_port *p, unsigned q)
{
	if (!p->fe || (q && !(p->features & (1ull << VIRTIO_NET_F_MQ))))
		return NULL;
	return vp_netfe_queue(p->fe, q);
}

static int fe_rx(struct vp_port *p, struct vp_pkt *pkts, unsigned n, int *link)
{
	int r = 0;

	if (!fe_can_rx(p))
		return 0;
	*link = 0;
	/* Every pair the device has, pair 0 last: its emptiness ends a drain. */
	for (unsigned q = 1; fe_pair(p, q) && r == 0; q++)
		r = vp_netfe_rx_burst(fe_pair(p, q), pkts, n);
	if (r != 0)
		return fe_rx_done(p, r);
	return fe_rx_done(p, vp_netfe_rx_burst(p->fe, pkts, n));
}

static int fe_rx_link(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n, bool into)
{
	int l;

	if (link != 0)
		return -EINVAL;
	if (into)
		return -ENOTSUP;  /* our RX buffers are our own: borrow them */
	return fe_rx(p, pkts, n, &l);
}

static int fe_tx(struct vp_port *p, int link, const struct vp_pkt *pkts, unsigned n,
		 unsigned flags)
{
	int r;

	if (link > 0 || p->fe_state != VP_PORT_UP)
		return 0;
	r = vp_netfe_tx_burst(p->fe, pkts, n, flags);
	if (r < 0)
		fe_down(p, "transmit ring broken");
	else
		p->tx_accepted += (uint64_t)r;
	return r;
}

static int fe_tx_reserve(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	int r;

	if (link > 0 || p->fe_state != VP_PORT_UP)
		return 0;
	r = vp_netfe_tx_reserve(p->fe, pkts, n);
	if (r < 0)
		fe_down(p, "transmit ring broken");
	return r;
}

static int fe_tx_commit(struct vp_port *p, const struct vp_pkt *pkts, unsigned n)
{
	int r;

	if (p->fe_state != VP_PORT_UP)
		return 0;
	r = vp_netfe_tx_commit(p->fe, pkts, n);
	if (r == -EIO)
		fe_down(p, "transmit ring broken");
	else if (r > 0)
		p->tx_accepted += (uint64_t)r;
	return r;
}

static int fe_rx_borrow(struct vp_port *p, struct vp_pkt *pkts, unsigned n)
{
	if (!fe_can_rx(p))
		return 0;
	return fe_rx_done(p, vp_netfe_rx_borrow(p->fe, pkts, n));
}

static void fe_rx_release(struct vp_port *p)
{
	if (fe_can_rx(p) && vp_netfe_rx_release(p->fe) == -EIO)
		fe_down(p, "receive ring broken");
}

static int fe_tx_forward(struct vp_port *p, const struct vp_pkt *pkts, unsigned n)
{
	int r;

	if (p->fe_state != VP_PORT_UP)
		return 0;
	r = vp_netfe_tx_forward(p->fe, pkts, n);
	if (r == -EIO)
		fe_down(p, "transmit ring broken");
	else if (r > 0)
		p->tx_accepted += (uint64_t)r;
	return r;
}

static unsigned fe_rx_pending(struct vp_port *p, int link)
{
	(void)p, (void)link;
	return 0;
}

static uint64_t fe_features(const struct vp_port *p)
{
	return p->fe_state == VP_PORT_UP ? p->features : 0;
}

static void fe_stats(const struct vp_port *p, struct vp_net_stats *out)
{
	*out = p->fe ? *vp_netfe_stats(p->fe) : p->acc;
	for (unsigned q = 1; p->fe && vp_netfe_queue(p->fe, q); q++)
		vp_net_stats_add(out, vp_netfe_stats(vp_netfe_queue(p->fe, q)));
}

/* ms until t (>= 0), or the caller's timeout if that is sooner. */
static void lower_timeout(int *timeout_ms, int64_t t)
{
	int64_t ms = (t - now() + 999999) / 1000000;

	if (ms < 0)
		ms = 0;
	if (*timeout_ms < 0 || ms < *timeout_ms)
		*timeout_ms = (int)ms;
}

static int fe_wait_prep(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
			unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
			int *timeout_ms)
{
	int ctl = p->cl ? vp_client_fd(p->cl) : p->vu_sock;

	*nfd = 0;
	if (ctl >= 0 && max_fd)
		pf[(*nfd)++] = (struct pollfd){ .fd = ctl, .events = POLLIN };
	switch (p->fe_state) {
	case VP_PORT_DOWN:
		lower_timeout(timeout_ms, p->retry_at_ns);
		return 0;
	case VP_PORT_HANDSHAKE:
		return 0;
	case VP_PORT_DRAIN:
		lower_timeout(timeout_ms, p->drain_until_ns);
		break;
	case VP_PORT_UP:
		break;
	}
	unsigned nit = 0;

	for (unsigned q = 0; fe_pair(p, q); q++)
		if (vp_netfe_broken(fe_pair(p, q)))
			return -EAGAIN;
	if (!rx && !tx)
		return 0;
	for (unsigned q = 0; fe_pair(p, q) && nit < max_it; q++)
		it[nit++] = (struct vp_wait_item){ &vp_netfe_wait_ops, fe_pair(p, q), rx, tx };
	return (int)nit;
}

static void fe_close(struct vp_port *p)
{
	/* Like a guest shutting down cleanly: let the device take what we
	 * queued (up to 1 s) before we stop it. */
	if (p->fe_state == VP_PORT_UP) {
		int64_t end = now() + CLOSE_NS;
		const struct vp_net_stats *st = vp_netfe_stats(p->fe);

		while (now() < end) {
			if (vp_netfe_tx_burst(p->fe, NULL, 0, 0) < 0)
				break;
			if (st->tx_packets + st->tx_drop_no_buf + st->tx_drop_too_big >=
			    p->tx_accepted)
				break;
			vp_netfe_wait(p->fe, false, true, 10);
			if (p->cl) {
				vp_client_dispatch(p->cl);
				if (vp_client_state(p->cl) != VP_CLIENT_STARTED)
					break;
			}
		}
	}
	if (p->cl && vp_client_state(p->cl) == VP_CLIENT_STARTED)
		vp_client_stop(p->cl, VP_PCI_STOP_SHUTDOWN);
	if (p->vu_sock >= 0 && p->fe_state == VP_PORT_UP)
		vp_vu_frontend_stop(p->vu_sock, 2, NULL, 1000);
	if (p->fe)
		p->acc = *vp_netfe_stats(p->fe);
	vp_client_free(p->cl);
	p->cl = NULL;
	close_fd(&p->vu_sock);
	p->fe_started = false;
	p->fe_state = VP_PORT_DOWN;
	vp_netfe_free(p->fe);
	p->fe = NULL;
}

static const struct port_ops frontend_ops = {
	.control = fe_control,
	.state = fe_state,
	.link_up = fe_link_up,
	.rx = fe_rx,
	.rx_link = fe_rx_link,
	.tx = fe_tx,
	.tx_reserve = fe_tx_reserve,
	.tx_commit = fe_tx_commit,
	.rx_borrow = fe_rx_borrow,
	.rx_release = fe_rx_release,
	.tx_forward = fe_tx_forward,
	.rx_pending = fe_rx_pending,
	.features = fe_features,
	.stats = fe_stats,
	.wait_prep = fe_wait_prep,
	.close = fe_close,
};

static int fe_new(struct vp_port *p, const struct vp_port_config *c)
{
	struct vp_netfe_config cfg = { 0 };
	int r;

	p->vhost_user = c->vhost_user;
	p->max_links = 1;
	cfg.ram = c->ram;
	cfg.ram_size = c->ram_size;
	cfg.ram_fd = c->ram_fd;
	cfg.ram_offset = c->ram_offset;
	cfg.rx_num = c->ring;
	cfg.tx_num = c->ring;
	cfg.rx_buf_size = c->rx_buf_size;
	cfg.features = c->features;
	memcpy(cfg.mac, c->mac, 6);
	memcpy(cfg.uuid, c->uuid, 16);
	cfg.mode = c->mode;
	cfg.queue_pairs = c->queue_pairs;
	r = vp_netfe_new(&p->fe, &cfg);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "cannot create the virtio-net device: %s",
			 strerror(-r));
		p->fe = NULL;
		return r;
	}
	(void)vp_netfe_set_coalesce(p->fe, &c->coalesce);  /* checked in vp_port_new() */
	p->give_up_ns = now() + (int64_t)c->connect_timeout_ms * 1000000;
	fe_try_connect(p);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* 2.1 peer: one vp_net21 over a window a pair broker handed out            */

#define JOIN_TIMEOUT_MS 1000

/* The link that was up is not: counted once, with why (and the detail). */
static void p21_lost(struct vp_port *p, const char *why, const char *detail)
{
	if (!p->p21_up)
		return;
	p->cnt.link_downs++;
	p->p21_up = false;
	snprintf(p->down_why, sizeof(p->down_why), "%s%s%s", why, detail ? ": " : "",
		 detail ? detail : "");
	port_log(p, VP_LOG_INFO, "link down: %s", p->down_why);
}

static void p21_detach(struct vp_port *p, const char *why)
{
	p21_lost(p, why, NULL);
	p->drain_until_ns = 0;
	if (p->n21) {
		vp_net_stats_add(&p->acc, vp_net21_stats(p->n21));
		if (p->g21)
			vp_guest21_close(p->g21);  /* frees n21 */
		else
			vp_net21_free(p->n21);
		p->g21 = NULL;
		p->n21 = NULL;
		p->p21_resyncs = 0;
	}
	close_fd(&p->p21_sock);
	p->retry_at_ns = now() + RETRY_NS;
}

static void p21_try_join(struct vp_port *p)
{
	struct vp_net21_fds f;
	int r;

	if (p->n21 || now() < p->retry_at_ns)
		return;
	p->retry_at_ns = now() + RETRY_NS;
	if (p->sysfs_root) {
		/* In a QEMU guest: the daemon gave us our half as PCI functions. */
		r = vp_guest21_open(&p->g21, p->sysfs_root, p->mode);
		if (r < 0) {
			snprintf(p->last_err, sizeof(p->last_err),
				 "no usable 2.1 slot in %s: %s", p->sysfs_root, strerror(-r));
			p->g21 = NULL;
			return;
		}
		p->n21 = vp_guest21_net(p->g21);
		port_log(p, VP_LOG_INFO, "2.1 peer on PCI slot %s", vp_guest21_name(p->g21));
		return;
	}
	/* Serving: our half straight from our own broker (a JOIN over the
	 * socket would wait for an answer only our own control can give). */
	r = p->pair ? vp_pair21_join_local(p->pair, &f)
		    : vp_pair21_join(p->path, JOIN_TIMEOUT_MS, &f, &p->p21_sock);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "cannot join the pair at %s: %s",
			 p->path, strerror(-r));
		return;
	}
	r = vp_net21_new(&p->n21, &f, p->mode);
	vp_net21_fds_close(&f);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "the window from %s was refused: %s",
			 p->path, strerror(-r));
		p->n21 = NULL;
		close_fd(&p->p21_sock);
		return;
	}
	port_log(p, VP_LOG_INFO, "joined the pair at %s", p->path);
}

/* Our JOIN connection readable: the broker went away (or broke the rules:
 * it has nothing more to say). The window is then the old one: join anew. */
static bool p21_broker_gone(const struct vp_port *p)
{
	struct pollfd pf = { .fd = p->p21_sock, .events = POLLIN };

	return p->p21_sock >= 0 && poll(&pf, 1, 0) == 1;
}

static int p21_control(struct vp_port *p)
{
	bool up;

	if (p->pair) {
		int r = vp_pair21_control(p->pair);

		if (r < 0) {
			snprintf(p->last_err, sizeof(p->last_err), "pair broker: %s",
				 strerror(-r));
			return r;
		}
	}
	if (p->g21 && vp_guest21_revoked(p->g21))
		p21_detach(p, "the 2.1 functions were unplugged");
	/* The broker went away: what the other peer published before is still
	 * in the window, read it first (up to DRAIN_NS), then join anew. */
	if (p->n21 && p21_broker_gone(p)) {
		close_fd(&p->p21_sock);
		p->drain_until_ns = now() + DRAIN_NS;
	}
	if (p->n21 && p->drain_until_ns &&
	    (!vp_net21_rx_pending(p->n21) || now() >= p->drain_until_ns)) {
		p->drain_until_ns = 0;
		p21_detach(p, "the pair broker went away");
	}
	if (p->n21 && vp_net21_broken(p->n21)) {
		p21_lost(p, "the other peer broke the window", vp_net21_broken(p->n21));
		/* A new epoch in our section: the other peer may come back sane. */
		vp_net21_reset(p->n21);
	}
	p21_try_join(p);
	up = p->n21 && vp_net21_up(p->n21);
	/* The other peer restarted between two looks (a new epoch, resynced
	 * at once): a link down and up all the same. */
	if (p->n21 && vp_net21_resyncs(p->n21) != p->p21_resyncs) {
		p->p21_resyncs = vp_net21_resyncs(p->n21);
		p21_lost(p, "the other peer restarted", NULL);
	}
	if (up && !p->p21_up) {
		p->cnt.link_ups++;
		port_log(p, VP_LOG_INFO, "link up (peer %s)", p->path);
	} else if (!up) {
		p21_lost(p, "the other peer left or restarted", NULL);
	}
	p->p21_up = up;
	return 0;
}

static enum vp_port_state p21_state(const struct vp_port *p)
{
	if (!p->n21)
		return VP_PORT_DOWN;
	return p->p21_up ? VP_PORT_UP : VP_PORT_HANDSHAKE;
}

static bool p21_link_up(const struct vp_port *p, int link)
{
	return link == 0 && p->p21_up;
}

/* A data call's result: a broken window is taken care of by control. */
static int p21_done(struct vp_port *p, int r)
{
	(void)p;
	return r == -EIO ? 0 : r;
}

static int p21_rx_link(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n, bool into)
{
	if (link != 0)
		return link < 0 ? -EINVAL : 0;
	if (!p->n21)
		return 0;
	return p21_done(p, into ? vp_net21_rx_into(p->n21, pkts, n)
				: vp_net21_rx_burst(p->n21, pkts, n));
}

static int p21_rx(struct vp_port *p, struct vp_pkt *pkts, unsigned n, int *link)
{
	*link = 0;
	return p21_rx_link(p, 0, pkts, n, false);
}

static int p21_tx(struct vp_port *p, int link, const struct vp_pkt *pkts, unsigned n,
		  unsigned flags)
{
	if ((link != 0 && link != -1) || !p->n21)
		return 0;
	return p21_done(p, vp_net21_tx_burst(p->n21, pkts, n, flags));
}

static int p21_tx_reserve(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	if ((link != 0 && link != -1) || !p->n21)
		return 0;
	return p21_done(p, vp_net21_tx_reserve(p->n21, pkts, n));
}

static int p21_tx_commit(struct vp_port *p, const struct vp_pkt *pkts, unsigned n)
{
	if (!p->n21)
		return n ? -EINVAL : 0;
	return p21_done(p, vp_net21_tx_commit(p->n21, pkts, n));
}

static int p21_rx_borrow(struct vp_port *p, struct vp_pkt *pkts, unsigned n)
{
	(void)p, (void)pkts, (void)n;
	return -ENOTSUP;  /* receiving copies out of the other's section: the check */
}

static void p21_rx_release(struct vp_port *p)
{
	(void)p;
}

static unsigned p21_rx_pending(struct vp_port *p, int link)
{
	return link == 0 && p->n21 ? vp_net21_rx_pending(p->n21) : 0;
}

static uint64_t p21_features(const struct vp_port *p)
{
	/* The frame carries a VERSION_1 net header; no offload is negotiated. */
	return p->p21_up ? 1ull << VIRTIO_F_VERSION_1 : 0;
}

static void p21_stats(const struct vp_port *p, struct vp_net_stats *out)
{
	*out = p->acc;
	if (p->n21)
		vp_net_stats_add(out, vp_net21_stats(p->n21));
}

static int p21_wait_prep(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
			 unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
			 int *timeout_ms)
{
	*nfd = 0;
	if (p->pair && *nfd < max_fd)
		pf[(*nfd)++] = (struct pollfd){ .fd = vp_pair21_fd(p->pair), .events = POLLIN };
	if (p->p21_sock >= 0 && *nfd < max_fd)
		pf[(*nfd)++] = (struct pollfd){ .fd = p->p21_sock, .events = POLLIN };
	if (!p->n21) {
		lower_timeout(timeout_ms, p->retry_at_ns);
		return 0;
	}
	if (p->drain_until_ns)
		lower_timeout(timeout_ms, p->drain_until_ns);
	if (vp_net21_broken(p->n21) || vp_net21_up(p->n21) != p->p21_up)
		return -EAGAIN;  /* control has something to do */
	if ((!rx && !tx) || !max_it)
		return 0;
	it[0] = (struct vp_wait_item){ &vp_net21_wait_ops, p->n21, rx, tx };
	return 1;
}

static void p21_close(struct vp_port *p)
{
	/* Like a frontend shutting down cleanly: let the other peer take what
	 * we published (up to 1 s) before we leave and our broker with us. */
	if (p->n21 && vp_net21_up(p->n21)) {
		int64_t end = now() + CLOSE_NS;

		while (now() < end && vp_net21_tx_pending(p->n21) && vp_net21_up(p->n21)) {
			struct timespec nap = { 0, 1000000 };

			/* A wait for room would return at once: nap instead. */
			if (p->pair)
				vp_pair21_control(p->pair);
			nanosleep(&nap, NULL);
		}
	}
	p21_detach(p, "closed");
	vp_pair21_free(p->pair);
	p->pair = NULL;
	free(p->sysfs_root);
	p->sysfs_root = NULL;
}

static const struct port_ops peer21_ops = {
	.control = p21_control,
	.state = p21_state,
	.link_up = p21_link_up,
	.rx = p21_rx,
	.rx_link = p21_rx_link,
	.tx = p21_tx,
	.tx_reserve = p21_tx_reserve,
	.tx_commit = p21_tx_commit,
	.rx_borrow = p21_rx_borrow,
	.rx_release = p21_rx_release,
	.rx_pending = p21_rx_pending,
	.features = p21_features,
	.stats = p21_stats,
	.wait_prep = p21_wait_prep,
	.close = p21_close,
};

static int p21_new(struct vp_port *p, const struct vp_port_config *c)
{
	p->max_links = 1;
	p->p21_sock = -1;
	if (c->guest_pci) {
		/* irq and adaptive sleep on .0's MSI-X through VFIO where the
		 * guest has it (vp_guest21_open() decides). */
		p->sysfs_root = strdup(c->sysfs_root ? c->sysfs_root : VP_GUEST_SYSFS_DEFAULT);
		if (!p->sysfs_root)
			return -ENOMEM;
	} else if (c->pair21_serve) {
		struct vp_window21_config wc = { .ring_num = c->ring };
		int r = vp_pair21_new(&p->pair, c->path, &wc);

		if (r < 0) {
			snprintf(p->last_err, sizeof(p->last_err),
				 "cannot serve a 2.1 pair at %s: %s", c->path, strerror(-r));
			p->pair = NULL;
			return r;
		}
	}
	p21_try_join(p);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The port                                                                 */

int vp_port_new(struct vp_port **out, const struct vp_port_config *cfg)
{
	struct vp_port *p;
	int r;

	*out = NULL;
	if (!cfg || (!cfg->path && !(cfg->guest_pci && cfg->side != VP_PORT_FRONTEND)) ||
	    (unsigned)cfg->mode > VP_NET_ADAPTIVE ||
	    (cfg->side != VP_PORT_BACKEND && cfg->side != VP_PORT_FRONTEND &&
	     cfg->side != VP_PORT_PEER21) ||
	    (cfg->side == VP_PORT_FRONTEND && !cfg->ram) || coal_check(&cfg->coalesce) < 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->path = strdup(cfg->path ? cfg->path : "guest-pci");
	if (!p->path) {
		free(p);
		return -ENOMEM;
	}
	p->side = cfg->side;
	p->ops = cfg->side == VP_PORT_FRONTEND ? &frontend_ops
		 : cfg->side == VP_PORT_PEER21 ? &peer21_ops
		 : cfg->guest_pci ? &guest_ops : &backend_ops;
	snprintf(p->name, sizeof(p->name), "%s", cfg->name ? cfg->name : "port");
	p->mode = cfg->mode;
	p->coal = cfg->coalesce;
	p->vu_sock = -1;
	p->resv_link = -1;
	r = cfg->side == VP_PORT_FRONTEND ? fe_new(p, cfg)
	    : cfg->side == VP_PORT_PEER21 ? p21_new(p, cfg)
	    : cfg->guest_pci ? gu_new(p, cfg) : be_new(p, cfg);
	if (r < 0) {
		port_log(p, VP_LOG_ERR, "%s", p->last_err);
		free(p->path);
		free(p);
		return r;
	}
	*out = p;
	return 0;
}

void vp_port_free(struct vp_port *p)
{
	if (!p)
		return;
	p->ops->close(p);
	free(p->path);
	free(p);
}

int vp_port_control(struct vp_port *p)
{
	return p->ops->control(p);
}

enum vp_port_side vp_port_side(const struct vp_port *p)
{
	return p->side;
}

const char *vp_port_name(const struct vp_port *p)
{
	return p->name;
}

enum vp_port_state vp_port_state(const struct vp_port *p)
{
	return p->ops->state(p);
}

bool vp_port_up(const struct vp_port *p)
{
	return p->ops->state(p) == VP_PORT_UP;
}

unsigned vp_port_nlinks_up(const struct vp_port *p)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->max_links; i++)
		n += p->ops->link_up(p, (int)i);
	return n;
}

unsigned vp_port_max_links(const struct vp_port *p)
{
	return p->max_links;
}

bool vp_port_link_up(const struct vp_port *p, int link)
{
	return p->ops->link_up(p, link);
}

int vp_port_link_device(const struct vp_port *p, int link, uint64_t *id)
{
	const struct link *l = p->side == VP_PORT_BACKEND ? up_link(p, link) : NULL;

	if (!l)
		return -ENOENT;
	*id = l->dev_id;
	return 0;
}

int vp_port_drop_link(struct vp_port *p, int link, const char *why)
{
	struct link *l = p->side == VP_PORT_BACKEND ? up_link(p, link) : NULL;

	if (!l)
		return -ENOENT;
	link_down(p, l, why);
	return p->srv ? vp_server_drop(p->srv, l->dev_id, why) : 0;
}

const char *vp_port_error(const struct vp_port *p)
{
	return p->last_err;
}

const char *vp_port_down_reason(const struct vp_port *p)
{
	return p->down_why;
}

uint64_t vp_port_features(const struct vp_port *p)
{
	return p->ops->features(p);
}

uint64_t vp_port_link_features(const struct vp_port *p, int link)
{
	const struct link *l;

	if (p->side != VP_PORT_BACKEND)
		return link == 0 ? p->ops->features(p) : 0;
	l = up_link(p, link);
	return l ? l->dev->driver_features : 0;
}

void vp_port_counters(const struct vp_port *p, struct vp_port_counters *out)
{
	*out = p->cnt;
}

void vp_port_stats(const struct vp_port *p, struct vp_net_stats *out)
{
	p->ops->stats(p, out);
}

int vp_port_rx(struct vp_port *p, struct vp_pkt *pkts, unsigned n, int *link)
{
	*link = -1;
	return p->ops->rx(p, pkts, n, link);
}

int vp_port_rx_link(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	return p->ops->rx_link(p, link, pkts, n, false);
}

int vp_port_rx_into(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	return p->ops->rx_link(p, link, pkts, n, true);
}

int vp_port_tx(struct vp_port *p, int link, const struct vp_pkt *pkts, unsigned n,
	       unsigned flags)
{
	return p->ops->tx(p, link, pkts, n, flags);
}

int vp_port_tx_reserve(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	p->resv_link = -1;
	return p->ops->tx_reserve(p, link, pkts, n);
}

int vp_port_tx_commit(struct vp_port *p, const struct vp_pkt *pkts, unsigned n)
{
	return p->ops->tx_commit(p, pkts, n);
}

int vp_port_rx_borrow(struct vp_port *p, struct vp_pkt *pkts, unsigned n)
{
	return p->ops->rx_borrow(p, pkts, n);
}

void vp_port_rx_release(struct vp_port *p)
{
	p->ops->rx_release(p);
}

int vp_port_tx_forward(struct vp_port *p, const struct vp_pkt *pkts, unsigned n)
{
	return p->ops->tx_forward ? p->ops->tx_forward(p, pkts, n) : -ENOTSUP;
}

unsigned vp_port_rx_pending(struct vp_port *p, int link)
{
	return p->ops->rx_pending(p, link);
}

int vp_port_test_post_bad(struct vp_port *p, enum vp_port_test_bad kind)
{
	if (p->side != VP_PORT_FRONTEND || !p->fe)
		return -ENOTSUP;
	if (p->fe_state != VP_PORT_UP)
		return -ENOTCONN;
	return vp_netfe_test_post_bad(p->fe, kind);
}

/* ---- for the wait set (wait.h) ---- */

bool vp_port_busy_polls(const struct vp_port *p)
{
	return p->mode == VP_NET_POLL && p->ops->state(p) == VP_PORT_UP;
}

void vp_port_wait_cap(const struct vp_port *p, unsigned *items, unsigned *fds)
{
	*items = p->side == VP_PORT_BACKEND ? VP_PORT_MAX_LINKS : 1;
	/* the server's epoll fd, or the client's socket; a 2.1 peer's JOIN
	 * socket and its own broker's epoll fd */
	*fds = p->side == VP_PORT_PEER21 ? 2 : 1;
}

int vp_port_wait_prep(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
		      unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
		      int *timeout_ms)
{
	return p->ops->wait_prep(p, rx, tx, it, max_it, pf, max_fd, nfd, timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* Multiqueue: one pair by number                                           */

unsigned vp_port_queue_pairs(const struct vp_port *p, int link)
{
	const struct link *l;

	switch (p->side) {
	case VP_PORT_BACKEND:
		l = up_link(p, link);
		if (!l)
			return 0;
		return l->dev && (l->dev->driver_features & (1ull << VIRTIO_NET_F_MQ)) ?
		       l->dev->nrings / 2 : 1;
	case VP_PORT_FRONTEND: {
		unsigned n = 0;

		if (link != 0 || !fe_can_rx(p))
			return 0;
		while (fe_pair(p, n))
			n++;
		return n;
	}
	default:
		return p->ops->link_up(p, link) ? 1 : 0;
	}
}

/*
 * Where pair of link is, for a receive (rx) or a send: a backend's link *l
 * (its pair's vp_net is link_pair()) or a frontend's pair *f: 1; 0 while
 * the link cannot move data; -EINVAL, -ENODEV (no such pair, not live); or
 * -ENOTSUP for a 2.1 port, whose only pair is 0 (the caller maps it).
 */
static int queue_find(struct vp_port *p, int link, unsigned pair, bool rx, struct link **l,
		      struct vp_netfe **f)
{
	if (link < 0 || link >= VP_PORT_MAX_LINKS)
		return -EINVAL;
	switch (p->side) {
	case VP_PORT_BACKEND:
		*l = up_link(p, link);
		if (!*l)
			return 0;
		return link_pair(*l, pair) ? 1 : -ENODEV;
	case VP_PORT_FRONTEND:
		if (link != 0)
			return -EINVAL;
		if (rx ? !fe_can_rx(p) : p->fe_state != VP_PORT_UP)
			return 0;
		*f = fe_pair(p, pair);
		return *f ? 1 : -ENODEV;
	default:
		return pair ? -ENODEV : -ENOTSUP;
	}
}

int vp_port_rx_queue(struct vp_port *p, int link, unsigned pair, struct vp_pkt *pkts,
		     unsigned n)
{
	struct vp_netfe *f = NULL;
	struct link *l = NULL;
	int r = queue_find(p, link, pair, true, &l, &f);

	if (r == -ENOTSUP)
		return p->ops->rx_link(p, link, pkts, n, false);
	if (r <= 0)
		return r;
	if (l) {
		r = vp_net_rx_burst(link_pair(l, pair), pkts, n);
		if (r == -EIO)
			link_broken(p, l, "frontend's TX ring broken");
		return r;
	}
	/* An empty pair does not end a drain (others may hold frames): the
	 * drain's deadline does. */
	r = vp_netfe_rx_burst(f, pkts, n);
	if (r < 0)
		fe_down(p, "receive ring broken");
	return r;
}

int vp_port_tx_queue(struct vp_port *p, int link, unsigned pair, const struct vp_pkt *pkts,
		     unsigned n, unsigned flags)
{
	struct vp_netfe *f = NULL;
	struct link *l = NULL;
	int r = queue_find(p, link, pair, false, &l, &f);

	if (r == -ENOTSUP)
		return p->ops->tx(p, link, pkts, n, flags);
	if (r <= 0)
		return r;
	if (l) {
		r = vp_net_tx_burst(link_pair(l, pair), pkts, n, flags);
		if (r < 0)
			link_broken(p, l, "frontend's RX ring broken");
		return r;
	}
	r = vp_netfe_tx_burst(f, pkts, n, flags);
	if (r < 0)
		fe_down(p, "transmit ring broken");
	else
		p->tx_accepted += (uint64_t)r;
	return r;
}

int vp_port_queue_stats(const struct vp_port *p, int link, unsigned pair,
			struct vp_net_stats *out)
{
	const struct link *l;
	const struct vp_netfe *f;

	memset(out, 0, sizeof(*out));
	switch (p->side) {
	case VP_PORT_BACKEND:
		l = up_link(p, link);
		if (!l || !link_pair(l, pair))
			return -ENODEV;
		*out = *vp_net_stats(link_pair(l, pair));
		return 0;
	case VP_PORT_FRONTEND:
		f = link == 0 && p->fe_state == VP_PORT_UP ? fe_pair(p, pair) : NULL;
		if (!f)
			return -ENODEV;
		*out = *vp_netfe_stats(f);
		return 0;
	default:
		return -ENODEV;
	}
}
