/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pci-net: the backend side of the vhost-pci design's 2.0 model (RFC 2.0 thread). We are the
 * device of the frontend's virtio-net rings: TX writes straight into the
 * frontend's receive buffers (ring 0), RX copies the frontend's transmitted
 * packets (ring 1) once into the caller's buffers.
 *
 * Security model
 *  - Untrusted: the frontend's rings and buffers (all of its RAM). Rings are
 *    walked only by vring.c, which checks every descriptor and turns guest
 *    addresses into iovecs through the region table; this file never sees a
 *    guest address, only iovecs that lie inside the frontend's memory.
 *  - The net header of a received packet is copied into the caller's struct
 *    before anything looks at it; nothing we do depends on its contents.
 *  - Rule breaks: a broken ring, or a receive chain with device-readable
 *    buffers, or a receive buffer smaller than the net header (an empty
 *    one included). Each breaks this vp_net for good (-EIO, logged reason).
 *    A transmit chain with device-writable buffers or shorter than the net
 *    header is only dropped (rx_drop_bad): it cannot hurt our framing.
 *  - Memory that shrank under us (opted in: vp_mem_sigbus_guard()) reads
 *    as zeros and swallows stores; the rings see it at the end of the burst
 *    (vring.c) and the link breaks with that reason, whatever else the zeros
 *    made look wrong.
 *  - Not covered: a frontend that rewrites its buffers while we copy them
 *    gets garbage packets, as it would from real hardware.
 *
 * Threading: one vp_net, one thread. Nothing here allocates or logs on the
 * data path except when a rule is broken.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vhostpci/fd.h"
#include "vhostpci/log.h"
#include "util.h"
#include "mem_internal.h"
#include "wait.h"
#include "evfd.h"
#include "coalesce.h"
#include "vhostpci/net.h"
#include "vhostpci/vring.h"

_Static_assert(VP_NET_HDR_LEN == sizeof(struct virtio_net_hdr_v1), "VERSION_1 net header");

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define HDR            VP_NET_HDR_LEN
#define REASON_MAX     256
#define STICKY_KICKS_MAX 32	/* sticky drains in a row that break a link */

/* A frontend receive buffer lent to the caller to build a packet in. */
struct net_resv {
	unsigned char *base;	/* its first piece, in the frontend's RAM */
	uint32_t cap;		/* bytes of that piece */
	uint16_t head;
};

/*
 * One of the frontend's rings, in the layout it negotiated: split, or packed
 * (VIRTIO_F_RING_PACKED). The data path below is written once against the
 * nq_* calls; both walkers share the contract (struct vp_chain in, struct
 * vp_used out, unpop, -EIO once broken), so only the call differs.
 */
struct nq {
	bool packed;
	union {
		struct vp_vq_dev *s;
		struct vp_vq_packed *p;
	};
};

static inline int nq_pop(struct nq *q, struct vp_chain *ch, unsigned max, struct iovec *iov,
			 unsigned iov_max)
{
	return q->packed ? vp_vq_packed_pop_burst(q->p, ch, max, iov, iov_max)
			 : vp_vq_dev_pop_burst(q->s, ch, max, iov, iov_max);
}

static inline int nq_push(struct nq *q, const struct vp_used *u, unsigned n)
{
	return q->packed ? vp_vq_packed_push_burst(q->p, u, n) : vp_vq_dev_push_burst(q->s, u, n);
}

static inline int nq_unpop(struct nq *q, unsigned n)
{
	return q->packed ? vp_vq_packed_unpop(q->p, n) : vp_vq_dev_unpop(q->s, n);
}

static inline bool nq_need_signal(struct nq *q)
{
	return q->packed ? vp_vq_packed_need_signal(q->p) : vp_vq_dev_need_signal(q->s);
}

static inline void nq_disable_notify(struct nq *q)
{
	if (q->packed)
		vp_vq_packed_disable_notify(q->p);
	else
		vp_vq_dev_disable_notify(q->s);
}

static inline bool nq_enable_notify(struct nq *q)
{
	return q->packed ? vp_vq_packed_enable_notify(q->p) : vp_vq_dev_enable_notify(q->s);
}

/* Arm moderated (lib/coalesce.h; split rings only): true if the batch asked
 * for is there, else *hold lowered to how long the sleep may last. */
static bool nq_arm(struct nq *q, const struct vp_net_coalesce *c, struct coal_state *cs,
		   int64_t *hold)
{
	unsigned ahead, pending;
	int64_t h;

	if (q->packed || c->frames <= 1)
		return nq_enable_notify(q);
	ahead = coal_ahead(c, cs, vp_vq_dev_last_avail(q->s), (int64_t)now_ns());
	if (ahead > vp_vq_dev_num(q->s) / 2u)
		ahead = vp_vq_dev_num(q->s) / 2u ? vp_vq_dev_num(q->s) / 2u : 1u;
	pending = vp_vq_dev_enable_notify_ahead(q->s, ahead);
	if (pending >= ahead)
		return true;
	h = coal_hold_ns(c, ahead, pending);
	if (h >= 0 && (*hold < 0 || h < *hold))
		*hold = h;
	return false;
}

/* Chains waiting, at most: a packed ring counts its available descriptors
 * (a chain takes one or more), up to what one burst can take. */
static inline unsigned nq_pending(struct nq *q)
{
	return q->packed ? vp_vq_packed_avail_count(q->p, VP_NET_MAX_BURST)
			 : vp_vq_dev_avail_pending(q->s);
}

static inline bool nq_broken(const struct nq *q)
{
	return q->packed ? vp_vq_packed_broken(q->p) : vp_vq_dev_broken(q->s);
}

static const char *nq_broken_reason(const struct nq *q)
{
	return q->packed ? vp_vq_packed_broken_reason(q->p) : vp_vq_dev_broken_reason(q->s);
}

static uint16_t nq_last_avail(const struct nq *q)
{
	return q->packed ? vp_vq_packed_last_avail(q->p) : vp_vq_dev_last_avail(q->s);
}

static void nq_free(struct nq *q)
{
	if (q->packed)
		vp_vq_packed_free(q->p);
	else
		vp_vq_dev_free(q->s);
}

struct vp_net {
	/* Hot. */
	struct nq txq;			/* ring 0: the frontend's receiveq */
	struct nq rxq;			/* ring 1: the frontend's transmitq */
	struct vp_chain *chains;	/* chain_cap, shared by TX and RX bursts */
	struct vp_used *used;		/* chain_cap */
	struct iovec *iov;		/* iov_cap */
	unsigned chain_cap, iov_cap;
	struct net_resv *resv;		/* chain_cap: buffers lent by vp_net_tx_reserve() */
	unsigned nresv;
	bool mrg;
	uint64_t features;	/* the frontend's negotiated ones: vp_net_hdr_check() */
	bool broken;
	enum vp_net_mode mode;
	unsigned sticky_kicks;	/* drains in a row that left a kick fd readable */
	int tx_call, rx_call;		/* we write these to interrupt the frontend */
	int tx_kick, rx_kick;		/* the frontend writes these to wake us */
	vp_net_notify_fn notify;	/* set: called instead of the call eventfd writes */
	void *notify_opaque;
	struct vp_net_stats st;
	struct vp_net_coalesce coal;	/* moderation, off by default */
	struct coal_state cs_rx, cs_tx;
	int64_t hold_ns;		/* the last arm's sleep bound, -1: none */
	/* Cold. */
	const struct vp_mem *mem;	/* the frontend's RAM: shrunk? */
	uint64_t dev_id;
	char reason[REASON_MAX];
};

/* Break the link for good; keeps the first reason. Returns -EIO. */
__attribute__((cold, noinline, format(printf, 2, 3)))
static int net_fail(struct vp_net *n, const char *fmt, ...)
{
	va_list ap;

	if (n->broken)
		return -EIO;
	if (vp_mem_is_shrunk(n->mem)) {
		snprintf(n->reason, sizeof(n->reason), "%s", VP_MEM_SHRUNK_REASON);
	} else {
		va_start(ap, fmt);
		vsnprintf(n->reason, sizeof(n->reason), fmt, ap);
		va_end(ap);
	}
	n->broken = true;
	vp_log(VP_LOG_WARN, "net dev%" PRIu64 ": link down: %s", n->dev_id, n->reason);
	return -EIO;
}

/* A ring broke inside vring.c: take its reason as ours. */
__attribute__((cold, noinline))
static int ring_fail(struct vp_net *n, const struct nq *vq)
{
	return net_fail(n, "%s", nq_broken_reason(vq));
}

/*
 * Interrupt the frontend without ever waiting on it (vp_evfd_signal()).
 * What remains is a peer that both clears O_NONBLOCK and fills the count
 * inside the few hundred nanoseconds between its checks and the write; it
 * gets one try per link, since the next signal sees the flag.
 */
static inline void signal_fd(struct vp_net *n, int fd)
{
	if (fd < 0 || n->broken)
		return;
	switch (vp_evfd_signal(fd)) {
	case VP_EVFD_SENT:
		n->st.signals++;
		break;
	case VP_EVFD_DROPPED:
		n->st.signals_dropped++;
		break;
	case VP_EVFD_BLOCKING:
		net_fail(n, "frontend cleared O_NONBLOCK on its call eventfd (fd %d)", fd);
		break;
	}
}

/*
 * Interrupt the frontend about queue q (VP_NET_Q_*): its call eventfd, or
 * the caller's hook (a doorbell register, where there is no eventfd). The
 * decision to signal at all (event index, NO_INTERRUPT) is made before.
 */
static inline void signal_peer(struct vp_net *n, unsigned q)
{
	if (unlikely(n->notify != NULL)) {
		if (!n->broken) {
			n->notify(n->notify_opaque, q);
			n->st.signals++;
		}
		return;
	}
	signal_fd(n, q == VP_NET_Q_RX ? n->tx_call : n->rx_call);
}

/*
 * Take a peer's kick or call fd: it must be an eventfd (a pipe or socket
 * would block our writes or stay readable for ever). Our duplicate shares
 * the frontend's open file description; it is made O_NONBLOCK.
 * Returns the duplicate, -1 if fd is -1, or a negative errno (-EINVAL for
 * the wrong kind, logged).
 */
static int take_fd(struct vp_net *n, int fd, const char *what)
{
	char kind[48];
	int d = vp_evfd_take(fd);

	if (d == -EINVAL)
		vp_log(VP_LOG_WARN, "net dev%" PRIu64 ": refused: %s fd is a %s, not an eventfd",
		       n->dev_id, what, vp_fd_kind(fd, kind, sizeof(kind)));
	return d;
}

/*
 * Attach to ring `ring` of dev in the layout the frontend negotiated. For a
 * packed ring the device's avail and used addresses are its driver and
 * device event suppression areas, and last_avail_idx carries the wrap
 * counter in bit 15 (vhost-user's SET_VRING_BASE for packed rings).
 */
static int nq_new(struct nq *q, const struct vp_device *dev, unsigned ring, const char *name)
{
	const struct vp_dev_ring *r = &dev->rings[ring];
	bool event_idx = dev->driver_features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	bool indirect = dev->driver_features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);

	q->packed = dev->driver_features & (1ull << VIRTIO_F_RING_PACKED);
	if (q->packed) {
		const struct vp_vq_packed_config c = {
			.num = r->num, .desc = r->desc, .driver = r->avail, .device = r->used,
			.ring_space = VP_ADDR_GPA, .last_avail_idx = r->last_avail_idx,
			.event_idx = event_idx, .indirect = indirect, .name = name,
		};

		return vp_vq_packed_new(&q->p, dev->mem, &c);
	}

	const struct vp_vq_dev_config c = {
		.num = r->num, .desc = r->desc, .avail = r->avail, .used = r->used,
		.ring_space = VP_ADDR_GPA,
		.last_avail_idx = r->last_avail_idx, .last_used_idx = r->last_avail_idx,
		.event_idx = event_idx, .indirect = indirect, .name = name,
	};

	return vp_vq_dev_new(&q->s, dev->mem, &c);
}

int vp_net_new(struct vp_net **out, const struct vp_device *dev, enum vp_net_mode mode)
{
	return vp_net_new_queue(out, dev, 0, mode);
}

int vp_net_new_queue(struct vp_net **out, const struct vp_device *dev, unsigned pair,
		     enum vp_net_mode mode)
{
	const struct vp_dev_ring *rq, *tq;  /* the pair's receiveq and transmitq */
	char name[2][40];
	struct vp_net *n;
	unsigned num, nreg;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!dev || dev->state != VP_DEV_READY || dev->type != VP_VIRTIO_ID_NET ||
	    !(dev->driver_features & (1ull << VIRTIO_F_VERSION_1)) || !dev->mem ||
	    dev->nrings < 2 || (unsigned)mode > VP_NET_ADAPTIVE)
		return -EINVAL;
	if (pair >= dev->nrings / 2)
		return -ENOENT;
	/* Pair 0 of a READY device always is; a disabled pair is not walked. */
	if (pair && !vp_device_pair_live(dev, pair))
		return -ENODEV;
	rq = &dev->rings[2 * pair + VP_NET_Q_RX];
	tq = &dev->rings[2 * pair + VP_NET_Q_TX];

	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->dev_id = dev->id;
	n->mem = dev->mem;
	n->mode = mode;
	n->hold_ns = -1;
	n->mrg = dev->driver_features & (1ull << VIRTIO_NET_F_MRG_RXBUF);
	n->features = dev->driver_features;
	n->tx_call = n->rx_call = n->tx_kick = n->rx_kick = -1;

	snprintf(name[0], sizeof(name[0]), "dev%" PRIu64 ".rxq%u", dev->id, pair);
	snprintf(name[1], sizeof(name[1]), "dev%" PRIu64 ".txq%u", dev->id, pair);
	err = nq_new(&n->txq, dev, 2 * pair + VP_NET_Q_RX, name[0]);
	if (!err)
		err = nq_new(&n->rxq, dev, 2 * pair + VP_NET_Q_TX, name[1]);
	if (err)
		goto fail;

	/*
	 * Enough chains for a whole ring, and enough iovecs that any chain
	 * the walker accepts fits into an empty array: fewer than num direct
	 * descriptors, then at most num indirect entries, each cut into at
	 * most one piece per region. Plus slack so that bursts of one- or
	 * two-piece chains rarely run out first. Untouched pages cost nothing.
	 */
	num = rq->num > tq->num ? rq->num : tq->num;
	nreg = vp_mem_count(dev->mem);
	n->chain_cap = num;
	n->iov_cap = 2 * num * (nreg ? nreg : 1) + 2 * num;
	n->chains = calloc(n->chain_cap, sizeof(*n->chains));
	n->used = calloc(n->chain_cap, sizeof(*n->used));
	n->iov = calloc(n->iov_cap, sizeof(*n->iov));
	n->resv = calloc(n->chain_cap, sizeof(*n->resv));
	if (!n->chains || !n->used || !n->iov || !n->resv) {
		err = -ENOMEM;
		goto fail;
	}

	{
		const struct { int *dst; int src; const char *what; } t[4] = {
			{ &n->tx_kick, rq->kick_fd, "receiveq kick" },
			{ &n->tx_call, rq->call_fd, "receiveq call" },
			{ &n->rx_kick, tq->kick_fd, "transmitq kick" },
			{ &n->rx_call, tq->call_fd, "transmitq call" },
		};

		for (unsigned i = 0; i < 4; i++) {
			int d = take_fd(n, t[i].src, t[i].what);

			if (d < -1) {
				err = d;
				goto fail;
			}
			*t[i].dst = d;
		}
	}

	/* Busy until told otherwise: vp_net_wait() arms kicks only to sleep. */
	nq_disable_notify(&n->txq);
	nq_disable_notify(&n->rxq);
	*out = n;
	return 0;
fail:
	vp_net_free(n);
	return err;
}

void vp_net_free(struct vp_net *n)
{
	if (!n)
		return;
	nq_free(&n->txq);
	nq_free(&n->rxq);
	close_fd(&n->tx_kick);
	close_fd(&n->tx_call);
	close_fd(&n->rx_kick);
	close_fd(&n->rx_call);
	free(n->chains);
	free(n->used);
	free(n->iov);
	free(n->resv);
	free(n);
}

/* ------------------------------------------------------------------------ */
/* TX: into the frontend's receive buffers                                  */

/*
 * Copy len bytes into the iovecs at (*piov, *poff) and advance. The caller
 * has checked that they hold enough; pieces are never empty.
 */
static inline void iov_put(struct iovec **piov, size_t *poff, const void *src, size_t len)
{
	const unsigned char *s = src;
	struct iovec *iov = *piov;
	size_t off = *poff;

	while (len) {
		size_t room = iov->iov_len - off;
		size_t k = len < room ? len : room;

		memcpy((unsigned char *)iov->iov_base + off, s, k);
		s += k;
		len -= k;
		off += k;
		if (off == iov->iov_len) {
			iov++;
			off = 0;
		}
	}
	*piov = iov;
	*poff = off;
}

/*
 * The rules every receive buffer the frontend posts must keep before we
 * write into it: device-writable only, and room for the net header (an
 * empty chain, all descriptors zero-length, has no piece of its own: its
 * iov[0] would be another chain's). -EIO (link down) if not.
 */
static inline int rx_buf_check(struct vp_net *n, const struct vp_chain *c)
{
	if (unlikely(c->n_out))
		return net_fail(n, "receive buffer %u has device-readable descriptors", c->head);
	if (unlikely(c->len_in < HDR))
		return net_fail(n, "receive buffer %u holds %u bytes, less than the %u-byte header",
				c->head, c->len_in, HDR);
	return 0;
}

/* What tx_burst() carries from one packet to the next. */
struct tx_state {
	unsigned nch;		/* chains popped in this burst */
	unsigned ci;		/* first chain not yet used */
	unsigned iov_used;
	bool dry;		/* the ring had nothing more to give */
	bool full;		/* our arrays are full: end the burst */
};

/*
 * Pop up to want more chains behind the ones we hold. Returns how many
 * (0: ring empty, or our arrays full) or -EIO.
 */
static int tx_pop_more(struct vp_net *n, struct tx_state *s, unsigned want)
{
	int r;

	if (want > n->chain_cap - s->nch)
		want = n->chain_cap - s->nch;
	if (!want) {
		s->full = true;
		return 0;
	}
	r = nq_pop(&n->txq, n->chains + s->nch, want,
				n->iov + s->iov_used, n->iov_cap - s->iov_used);
	if (likely(r > 0)) {
		for (int k = 0; k < r; k++) {
			const struct vp_chain *c = &n->chains[s->nch + k];

			s->iov_used += c->n_out + c->n_in;
			/* Checked here once: the copy below relies on it. */
			if (unlikely(rx_buf_check(n, c) < 0))
				return -EIO;
		}
		s->nch += (unsigned)r;
		return r;
	}
	if (r == -ENOBUFS) {
		s->full = true;
		return 0;
	}
	if (r < 0)
		return ring_fail(n, &n->txq);
	s->dry = true;
	return 0;
}

/* Why a packet was not delivered. */
enum tx_miss { TX_OK, TX_NO_BUF, TX_TOO_BIG, TX_END };

/*
 * Find the chains for one packet of need bytes (header included), popping
 * more when the ones held run out: chains [s->ci, *last]. -EIO if a ring
 * broke.
 */
static inline int tx_claim(struct vp_net *n, struct tx_state *s, unsigned left_pkts,
			   uint32_t need, unsigned *last, enum tx_miss *miss)
{
	unsigned k = s->ci;
	uint64_t room = 0;
	int r;

	for (;;) {
		if (unlikely(k == s->nch)) {
			/* Guess: the rest of this packet in buffers like the
			 * last one, plus one buffer for each packet after it. */
			uint32_t unit = k > s->ci ? n->chains[k - 1].len_in : 2048;
			unsigned want = left_pkts;

			if (n->mrg)
				want += (unsigned)((need - room) / (unit ? unit : 1));

			if (s->dry || s->full) {
				r = 0;
			} else {
				r = tx_pop_more(n, s, want);
				if (unlikely(r < 0))
					return r;
			}
			if (!r) {
				/*
				 * Not from the ring but from our arrays: if this
				 * packet had them all to itself, it will never fit.
				 */
				if (s->dry)
					*miss = TX_NO_BUF;
				else
					*miss = s->ci == 0 ? TX_TOO_BIG : TX_END;
				return 0;
			}
		}
		room += n->chains[k].len_in;
		if (room >= need)
			break;
		if (!n->mrg) {
			*miss = TX_TOO_BIG;	/* the whole packet must fit one chain */
			return 0;
		}
		k++;
	}
	*last = k;
	*miss = TX_OK;
	return 0;
}

/* Write one packet into chains [first, last]; queue their used entries. */
static inline void tx_fill(struct vp_net *n, const struct vp_pkt *p, unsigned first,
			   unsigned last, unsigned *nu)
{
	const struct vp_chain *c = &n->chains[first];
	struct virtio_net_hdr_v1 h = p->hdr;
	unsigned nb = last - first + 1;
	uint32_t left = HDR + p->len;

	h.num_buffers = htole16((uint16_t)nb);
	if (likely(nb == 1 && c->iov[0].iov_len >= left)) {
		/* The common case: one buffer, one piece. */
		unsigned char *d = c->iov[0].iov_base;

		memcpy(d, &h, HDR);
		memcpy(d + HDR, p->data, p->len);
	} else {
		/* The buffers' pieces are consecutive in our iovec array. */
		struct iovec *iov = c->iov;
		size_t off = 0;

		iov_put(&iov, &off, &h, HDR);
		iov_put(&iov, &off, p->data, p->len);
	}
	for (unsigned k = first; k <= last; k++, c++) {
		uint32_t len = c->len_in < left ? c->len_in : left;

		n->used[(*nu)++] = (struct vp_used){ c->head, len };
		left -= len;
	}
}

/* Push what was used, give back what was not, signal once. */
static int tx_finish(struct vp_net *n, struct tx_state *s, unsigned nu)
{
	int r;

	if (s->nch > s->ci && nq_unpop(&n->txq, s->nch - s->ci) < 0)
		return ring_fail(n, &n->txq);
	if (!nu)
		return 0;
	r = nq_push(&n->txq, n->used, nu);
	if (unlikely(r < 0))
		return ring_fail(n, &n->txq);
	if (nq_need_signal(&n->txq))
		signal_peer(n, VP_NET_Q_RX);
	return 0;
}

/*
 * Give back the buffers of a reservation not (wholly) committed: they are
 * the last chains popped, so the ring takes them back in one step.
 */
static int tx_unreserve(struct vp_net *n, unsigned from)
{
	unsigned k = n->nresv - from;

	n->nresv = 0;
	if (k && nq_unpop(&n->txq, k) < 0)
		return ring_fail(n, &n->txq);
	return 0;
}

int vp_net_tx_reserve(struct vp_net *n, struct vp_pkt *pkts, unsigned count)
{
	unsigned got = 0;
	int r;

	if (unlikely(n->broken))
		return -EIO;
	if (unlikely(tx_unreserve(n, 0) < 0))
		return -EIO;
	if (count > n->chain_cap)
		count = n->chain_cap;
	if (!count)
		return 0;
	r = nq_pop(&n->txq, n->chains, count, n->iov, n->iov_cap);
	if (unlikely(r < 0 && r != -ENOBUFS))
		return ring_fail(n, &n->txq);
	for (int k = 0; k < r; k++) {
		const struct vp_chain *c = &n->chains[k];

		/* The link is down for good after this: no need to unpop. */
		if (unlikely(rx_buf_check(n, c) < 0))
			return -EIO;
		/* Only the first piece is lent, and only past the header: the
		 * caller sees one flat buffer. A buffer whose first piece is no
		 * more than a header ends the reservation. */
		if (c->iov[0].iov_len <= HDR)
			break;
		/* The frontend last touched this buffer on its core: ask for its
		 * first lines for writing now, while the caller builds earlier
		 * frames (header and a small frame: two lines). */
		__builtin_prefetch(c->iov[0].iov_base, 1);
		__builtin_prefetch((unsigned char *)c->iov[0].iov_base + 64, 1);
		n->resv[got] = (struct net_resv){ c->iov[0].iov_base, (uint32_t)c->iov[0].iov_len,
						  c->head };
		pkts[got].data = (unsigned char *)c->iov[0].iov_base + HDR;
		pkts[got].len = (uint32_t)c->iov[0].iov_len - HDR;
		memset(&pkts[got].hdr, 0, sizeof(pkts[got].hdr));
		got++;
	}
	/* Chains not lent (a short first piece) go back for vp_net_tx_burst(). */
	if (r > 0 && (unsigned)r > got && nq_unpop(&n->txq, (unsigned)r - got) < 0)
		return ring_fail(n, &n->txq);
	n->nresv = got;
	return (int)got;
}

int vp_net_tx_commit(struct vp_net *n, const struct vp_pkt *pkts, unsigned count)
{
	int r;

	if (unlikely(n->broken))
		return -EIO;
	if (unlikely(count > n->nresv)) {
		tx_unreserve(n, 0);
		return -EINVAL;
	}
	for (unsigned i = 0; i < count; i++) {
		if (unlikely(pkts[i].data != n->resv[i].base + HDR ||
			     pkts[i].len > n->resv[i].cap - HDR)) {
			tx_unreserve(n, 0);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < count; i++) {
		struct virtio_net_hdr_v1 h = pkts[i].hdr;

		h.num_buffers = htole16(1);
		memcpy(n->resv[i].base, &h, HDR);
		n->used[i] = (struct vp_used){ n->resv[i].head, HDR + pkts[i].len };
		n->st.tx_packets++;
		n->st.tx_bytes += pkts[i].len;
	}
	if (unlikely(tx_unreserve(n, count) < 0))
		return -EIO;
	if (!count)
		return 0;
	r = nq_push(&n->txq, n->used, count);
	if (unlikely(r < 0))
		return ring_fail(n, &n->txq);
	if (nq_need_signal(&n->txq))
		signal_peer(n, VP_NET_Q_RX);
	return (int)count;
}

int vp_net_tx_burst(struct vp_net *n, const struct vp_pkt *pkts, unsigned count,
		    unsigned flags)
{
	struct tx_state s = { 0 };
	unsigned i, nu = 0, last = 0;
	enum tx_miss miss;
	int r;

	if (unlikely(n->broken))
		return -EIO;
	/* Buffers lent and not committed are given back first. */
	if (unlikely(n->nresv) && tx_unreserve(n, 0) < 0)
		return -EIO;
	if (unlikely(!count))
		return 0;
	for (i = 0; i < count; i++) {
		const struct vp_pkt *p = &pkts[i];
		uint32_t need = HDR + p->len;

		/* Never deliverable: dropped even without VP_NET_TX_DROP, or
		 * the caller would retry it for ever. */
		if (unlikely(p->len > VP_NET_MAX_PKT)) {
			n->st.tx_drop_too_big++;
			continue;
		}
		/* The common case: the next buffer's first piece holds it all. */
		if (likely(s.ci < s.nch && n->chains[s.ci].iov[0].iov_len >= need)) {
			const struct vp_chain *c = &n->chains[s.ci++];
			unsigned char *d = c->iov[0].iov_base;
			struct virtio_net_hdr_v1 h = p->hdr;

			/* The frontend last read that buffer on its core: ask for
			 * a later one for writing while this one is filled. */
			if (s.ci + 2 < s.nch) {
				unsigned char *d2 = n->chains[s.ci + 2].iov[0].iov_base;

				__builtin_prefetch(d2, 1);
				__builtin_prefetch(d2 + 64, 1);
			}
			h.num_buffers = htole16(1);
			memcpy(d, &h, HDR);
			memcpy(d + HDR, p->data, p->len);
			n->used[nu++] = (struct vp_used){ c->head, need };
			n->st.tx_packets++;
			n->st.tx_bytes += p->len;
			continue;
		}
		r = tx_claim(n, &s, count - i, need, &last, &miss);
		if (unlikely(r < 0))
			return r;
		if (unlikely(miss != TX_OK)) {
			if (miss == TX_END || !(flags & VP_NET_TX_DROP))
				break;
			if (miss == TX_NO_BUF)
				n->st.tx_drop_no_buf++;
			else
				n->st.tx_drop_too_big++;
			continue;
		}
		tx_fill(n, p, s.ci, last, &nu);
		s.ci = last + 1;
		n->st.tx_packets++;
		n->st.tx_bytes += p->len;
	}
	r = tx_finish(n, &s, nu);
	return r < 0 ? r : (int)i;
}

/* ------------------------------------------------------------------------ */
/* RX: out of the frontend's transmit buffers                               */

/* Copy len bytes out of the iovecs at (*piov, *poff) and advance. */
static inline void iov_get(const struct iovec **piov, size_t *poff, void *dst, size_t len)
{
	const struct iovec *iov = *piov;
	unsigned char *d = dst;
	size_t off = *poff;

	while (len) {
		size_t room = iov->iov_len - off;
		size_t k = len < room ? len : room;

		memcpy(d, (const unsigned char *)iov->iov_base + off, k);
		d += k;
		len -= k;
		off += k;
		if (off == iov->iov_len) {
			iov++;
			off = 0;
		}
	}
	*piov = iov;
	*poff = off;
}

/* fit: stop before a packet larger than its buffer instead of dropping it. */
static inline int rx_do(struct vp_net *n, struct vp_pkt *pkts, unsigned count, bool fit)
{
	struct vp_used *used = n->used;
	unsigned got = 0;
	int r;

	if (unlikely(n->broken))
		return -EIO;
	if (count > n->chain_cap)
		count = n->chain_cap;
	r = nq_pop(&n->rxq, n->chains, count, n->iov, n->iov_cap);
	if (unlikely(r <= 0)) {
		/* -ENOBUFS cannot happen: iov_cap holds any legal chain. */
		return r == 0 ? 0 : ring_fail(n, &n->rxq);
	}
	for (int k = 0; k < r; k++) {
		const struct vp_chain *c = &n->chains[k];
		struct vp_pkt *p = &pkts[got];
		uint32_t plen = c->len_out - HDR;

		used[k] = (struct vp_used){ c->head, 0 };
		/* Written on the frontend's core: ask for a later frame's first
		 * lines while this one is copied (a hint; n_out: iov[0] is its). */
		if (k + 2 < r && n->chains[k + 2].n_out) {
			const unsigned char *s2 = n->chains[k + 2].iov[0].iov_base;

			__builtin_prefetch(s2);
			__builtin_prefetch(s2 + 64);
		}
		/* Device-writable buffers on the transmitq, or no room for a
		 * header: a frontend bug that cannot hurt us. Drop it. */
		if (unlikely(c->n_in || c->len_out < HDR)) {
			n->st.rx_drop_bad++;
			continue;
		}
		if (unlikely(plen > p->len)) {
			if (fit) {
				/* It stays in the ring, and so does what follows. */
				if (nq_unpop(&n->rxq, (unsigned)(r - k)) < 0)
					return ring_fail(n, &n->rxq);
				r = k;
				if (!r)
					return -EMSGSIZE;
				break;
			}
			n->st.rx_drop_too_big++;
			continue;
		}
		if (likely(c->n_out == 1)) {
			const unsigned char *s = c->iov[0].iov_base;

			memcpy(&p->hdr, s, HDR);
			memcpy(p->data, s + HDR, plen);
		} else {
			const struct iovec *iov = c->iov;
			size_t off = 0;

			iov_get(&iov, &off, &p->hdr, HDR);
			iov_get(&iov, &off, p->data, plen);
		}
		p->hdr.num_buffers = 0;
		/* Offload metadata the frontend may not send, or that lies
		 * about the frame: whoever takes the header (a TAP, a peer)
		 * must not see it. */
		if (unlikely((p->hdr.flags || p->hdr.gso_type) &&
			     vp_net_hdr_check(&p->hdr, plen, n->features) < 0)) {
			n->st.rx_drop_offload++;
			continue;
		}
		p->len = plen;
		n->st.rx_packets++;
		n->st.rx_bytes += plen;
		got++;
	}
	if (unlikely(nq_push(&n->rxq, used, (unsigned)r) < 0))
		return ring_fail(n, &n->rxq);
	if (nq_need_signal(&n->rxq))
		signal_peer(n, VP_NET_Q_TX);
	return (int)got;
}

int vp_net_rx_burst(struct vp_net *n, struct vp_pkt *pkts, unsigned count)
{
	return rx_do(n, pkts, count, false);
}

int vp_net_rx_into(struct vp_net *n, struct vp_pkt *pkts, unsigned count)
{
	return rx_do(n, pkts, count, true);
}

unsigned vp_net_rx_pending(struct vp_net *n)
{
	return n->broken ? 0 : nq_pending(&n->rxq);
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */

static bool work_pending(struct vp_net *n, bool want_rx, bool want_tx)
{
	return (want_rx && nq_pending(&n->rxq)) ||
	       (want_tx && nq_pending(&n->txq));
}

/* What the library's one sleep (lib/waitset.c) needs of a link. */
static enum vp_net_mode w_mode(const void *o)
{
	return ((const struct vp_net *)o)->mode;
}

static bool w_live(const void *o)
{
	(void)o;
	return true;
}

static bool w_ready(void *o, bool rx, bool tx)
{
	return work_pending(o, rx, tx);
}

static int w_arm(void *o, bool rx, bool tx)
{
	return vp_net_arm(o, rx, tx);
}

static void w_disarm(void *o)
{
	vp_net_disarm(o);
}

static int w_fd(const void *o, bool tx)
{
	return tx ? vp_net_tx_fd(o) : vp_net_rx_fd(o);
}

static void w_woken(void *o)
{
	((struct vp_net *)o)->st.wakeups++;
}

static int64_t w_hold(const void *o)
{
	return vp_net_hold_ns(o);
}

const struct vp_wait_ops vp_net_wait_ops = {
	.mode = w_mode, .live = w_live, .ready = w_ready, .arm = w_arm,
	.disarm = w_disarm, .fd = w_fd, .woken = w_woken, .hold = w_hold,
};

int vp_net_wait(struct vp_net *n, bool want_rx, bool want_tx, int timeout_ms)
{
	const struct vp_wait_item it = { &vp_net_wait_ops, n, want_rx, want_tx };
	struct pollfd pf[2];
	unsigned short owner[2];
	int r;

	if (n->broken)
		return -EIO;
	r = vp_wait_core(&it, 1, pf, owner, 0, 2, timeout_ms);
	if (n->broken)
		return -EIO;
	if (nq_broken(&n->rxq))
		return ring_fail(n, &n->rxq);
	if (nq_broken(&n->txq))
		return ring_fail(n, &n->txq);
	return r;
}

int vp_net_rx_fd(const struct vp_net *n)
{
	return n->rx_kick;
}

int vp_net_tx_fd(const struct vp_net *n)
{
	return n->tx_kick;
}

int vp_net_arm(struct vp_net *n, bool want_rx, bool want_tx)
{
	bool hit = false;

	n->hold_ns = -1;
	if (n->broken)
		return -EIO;
	/* Arm, then look once more: a kick sent before the frontend saw our
	 * request is caught here instead of being waited for. */
	if (want_rx)
		hit |= nq_arm(&n->rxq, &n->coal, &n->cs_rx, &n->hold_ns);
	if (want_tx)
		hit |= nq_arm(&n->txq, &n->coal, &n->cs_tx, &n->hold_ns);
	return hit ? 1 : 0;
}

int vp_net_set_coalesce(struct vp_net *n, const struct vp_net_coalesce *c)
{
	int r = coal_check(c);

	if (r == 0)
		n->coal = *c;
	return r;
}

int64_t vp_net_hold_ns(const struct vp_net *n)
{
	return n->hold_ns;
}

void vp_net_disarm(struct vp_net *n)
{
	bool sticky = vp_evfd_drain(n->rx_kick);

	sticky |= vp_evfd_drain(n->tx_kick);
	nq_disable_notify(&n->rxq);
	nq_disable_notify(&n->txq);
	/* A kick between our two reads can make one drain look sticky; many in
	 * a row, whatever the rings hold, is a kick fd that never empties. */
	if (!sticky)
		n->sticky_kicks = 0;
	else if (++n->sticky_kicks >= STICKY_KICKS_MAX && !n->broken)
		net_fail(n, "frontend's kick eventfd stays readable after draining "
			 "(EFD_SEMAPHORE?): it would wake us for ever");
}

void vp_net_set_notify(struct vp_net *n, vp_net_notify_fn fn, void *opaque)
{
	n->notify = fn;
	n->notify_opaque = opaque;
}

uint16_t vp_net_last_avail(const struct vp_net *n, unsigned queue)
{
	return nq_last_avail(queue == VP_NET_Q_RX ? &n->txq : &n->rxq);
}

const struct vp_net_stats *vp_net_stats(const struct vp_net *n)
{
	return &n->st;
}

const char *vp_net_broken(const struct vp_net *n)
{
	if (n->broken)
		return n->reason;
	/* Seen by the guard but by no burst yet (a store into a lent buffer). */
	return vp_mem_is_shrunk(n->mem) ? VP_MEM_SHRUNK_REASON : NULL;
}

int vp_net_hdr_check(const struct virtio_net_hdr_v1 *h, uint32_t len, uint64_t f)
{
	uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	bool csum = h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;

	if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return -EPROTO;
	if (csum && (!(f & (1ull << VIRTIO_NET_F_CSUM)) ||
		     (uint32_t)le16toh(h->csum_start) + le16toh(h->csum_offset) + 2u > len))
		return -EPROTO;
	if (gso == VIRTIO_NET_HDR_GSO_NONE)
		return h->gso_type ? -EPROTO : 0;	/* ECN without GSO */
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(f & (1ull << VIRTIO_NET_F_HOST_ECN)))
		return -EPROTO;
	if (!(gso == VIRTIO_NET_HDR_GSO_TCPV4 && (f & (1ull << VIRTIO_NET_F_HOST_TSO4))) &&
	    !(gso == VIRTIO_NET_HDR_GSO_TCPV6 && (f & (1ull << VIRTIO_NET_F_HOST_TSO6))))
		return -EPROTO;
	if (!csum || !le16toh(h->gso_size) || le16toh(h->hdr_len) > len)
		return -EPROTO;
	return 0;
}

void vp_net_stats_add(struct vp_net_stats *acc, const struct vp_net_stats *s)
{
	acc->tx_packets += s->tx_packets;
	acc->tx_bytes += s->tx_bytes;
	acc->rx_packets += s->rx_packets;
	acc->rx_bytes += s->rx_bytes;
	acc->tx_drop_no_buf += s->tx_drop_no_buf;
	acc->tx_drop_too_big += s->tx_drop_too_big;
	acc->rx_drop_too_big += s->rx_drop_too_big;
	acc->rx_drop_bad += s->rx_drop_bad;
	acc->rx_drop_offload += s->rx_drop_offload;
	acc->signals += s->signals;
	acc->signals_dropped += s->signals_dropped;
	acc->wakeups += s->wakeups;
}
