/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pci-net to vhost-pci-net over an intermediate window (the 2.1 design,
 * docs/window21.md): the allocator (vp_window21) and a peer (vp_net21).
 *
 * The 2.1 ring is not a virtio split ring (no used ring, no chains, the
 * consumer's index lives in its own section), so it does not go through
 * vring.c; its one walker is rx_walk() below, and the producer side is
 * publish().
 *
 * Security model
 *  - Untrusted: every byte of the other peer's section (control block,
 *    ring, buffers), which it can rewrite at any time, also while we read.
 *    Each descriptor is loaded once into a local copy and checked there;
 *    each frame is copied into the caller's buffer before anyone looks at
 *    it (the one copy of RX); indexes are loaded once per burst and checked
 *    against what they may be. A violation breaks the link (-EIO, logged
 *    reason) unless the other peer is visibly restarting (detached, or a new
 *    epoch: docs/window21.md 4), which only resyncs. No read leaves the
 *    other's section; nothing of it is ever written (it is mapped PROT_READ
 *    through an O_RDONLY fd: a bug would fault, not write).
 *  - The header is the allocator's; it is copied once and checked anyway.
 *  - The eventfds are shared with the other peer: writes never wait, drains
 *    never block (evfd.h).
 *  - A window the caller mapped (vp_net21_new_mapped(): a QEMU guest's BARs)
 *    gets the same checks; what makes the other's section read-only there is
 *    the caller's mapping and QEMU's readonly=on, and the other peer is woken
 *    through the caller's notify hook instead of an eventfd (our own wake
 *    eventfds, if any, are the caller's: MSI-X through VFIO).
 *
 * Threading: one vp_net21, one thread. No allocation or logging on the data
 * path except when a rule is broken.
 *
 * The guest kernel driver's 2.1 mode builds this file as it is
 * (guest/linux/vp_lib_net21.c, through guest/linux/compat/): the data path,
 * the checks and vp_net21_new_mapped(). What needs fds (vp_net21_new(), the
 * eventfds, vp_net21_wait(), the allocator) is left out of that build
 * (#ifndef __KERNEL__); there the notify hook is the only wake-up.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef __KERNEL__
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#include <linux/virtio_ring.h>

#include "vhostpci/log.h"
#include "vhostpci/net21.h"
#ifndef __KERNEL__
#include "evfd.h"
#include "util.h"
#include "wait.h"
#endif

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#define HDR VP21_HDR_LEN
#define STICKY_KICKS_MAX 32
#define MIN_FRAME 60u  /* a slot holds at least the header and a minimum frame */

_Static_assert(HDR == sizeof(struct virtio_net_hdr_v1), "net header");

/* Shared-memory accessors: little-endian words, one load or store each. */
static inline uint16_t ld16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline uint16_t ld16_acq(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline uint32_t ld32(const uint32_t *p)
{
	return le32toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline uint32_t ld32_acq(const uint32_t *p)
{
	return le32toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline void st16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static inline void st16_rel(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

static inline void st32_rel(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, htole32(v), __ATOMIC_RELEASE);
}

/* One side's geometry, from the checked copy of the header. */
struct geom {
	uint64_t size;
	uint32_t ring_off, buf_off, slot;
	uint16_t num;
};

struct vp_net21 {
	/* Hot. */
	struct vp21_ctrl *myc;          /* our control block (read-write) */
	const struct vp21_ctrl *pc;     /* theirs (read-only, hostile) */
	struct vp21_desc *my_ring;
	const struct vp21_desc *p_ring;
	uint8_t *my;                    /* our section */
	const uint8_t *peer;            /* theirs */
	struct geom mg, pg;
	uint16_t avail;                 /* our producer index (what we published) */
	uint16_t recycled;              /* their consumed index, last seen and checked */
	uint16_t consumed;              /* our consumer index of their ring */
	unsigned resv;                  /* slots lent by tx_reserve */
	bool up;
	bool broken;
	enum vp_net_mode mode;
	uint32_t epoch, peer_epoch;
	int rx_fd, tx_fd, peer_rx_fd, peer_tx_fd;
	vp_net21_notify_fn notify;      /* mapped: rings the other peer instead */
	void *notify_opaque;
	bool mapped;                    /* the caller's mappings: not ours to unmap */
	struct vp_net_stats st;
	uint64_t resyncs;
	unsigned sticky;
	/* Cold. */
	unsigned me;
	char reason[200];
};

__attribute__((__cold__, __noinline__, __format__(__printf__, 2, 3)))
static int fail(struct vp_net21 *n, const char *fmt, ...)
{
	va_list ap;

	if (n->broken)
		return -EIO;
	va_start(ap, fmt);
	vsnprintf(n->reason, sizeof(n->reason), fmt, ap);
	va_end(ap);
	n->broken = true;
	n->up = false;
	vp_log(VP_LOG_WARN, "net21 peer %u: link broken: %s", n->me, n->reason);
	return -EIO;
}

/* Wake the other peer: its TX (slots freed) or RX (frames) side. */
static void signal_peer(struct vp_net21 *n, bool tx)
{
#ifndef __KERNEL__
	int fd = tx ? n->peer_tx_fd : n->peer_rx_fd;
#endif

	if (n->broken)
		return;
	if (n->notify) {
		n->notify(n->notify_opaque, tx);
		n->st.signals++;
		return;
	}
#ifndef __KERNEL__	/* the kernel build is mapped only: notify is always set */
	switch (vp_evfd_signal(fd)) {
	case VP_EVFD_SENT:
		n->st.signals++;
		break;
	case VP_EVFD_DROPPED:
		n->st.signals_dropped++;
		break;
	case VP_EVFD_BLOCKING:
		fail(n, "the other peer cleared O_NONBLOCK on an eventfd we write (fd %d)", fd);
		break;
	}
#endif
}

/*
 * Forget the old session and acknowledge epoch pe: our indexes go back to
 * 0 before peer_epoch says which session they belong to (store-release:
 * pairs with the load-acquire of our peer_epoch in the other's link_ok()).
 */
static void resync(struct vp_net21 *n, uint32_t pe)
{
	n->avail = n->recycled = n->consumed = 0;
	n->resv = 0;
	st16(&n->myc->rx_want, 0);
	st16(&n->myc->tx_want, 0);
	st16_rel(&n->myc->avail, 0);
	st16_rel(&n->myc->consumed, 0);
	n->peer_epoch = pe;
	st32_rel(&n->myc->peer_epoch, pe);
	n->resyncs++;
	signal_peer(n, false);
	signal_peer(n, true);
}

/*
 * Is the link up? A new epoch of theirs is acknowledged here. Their
 * indexes are trusted to belong to this session only after the acquire of
 * their peer_epoch matches ours (pairs with the store-release in resync()
 * or attach() on their side). A peer that detached (state 0, same epoch)
 * can still be drained of what it published before (rx true): its section
 * stays with the allocator; only sending to it stops.
 */
static bool session_ok(struct vp_net21 *n, bool rx)
{
	uint32_t pe;
	bool ok;

	if (unlikely(n->broken))
		return false;
	pe = ld32_acq(&n->pc->epoch);
	if (unlikely(pe != n->peer_epoch)) {
		if (pe == 0 || ld32_acq(&n->pc->state) != VP21_STATE_ATTACHED) {
			n->up = false;
			return false;
		}
		resync(n, pe);
	}
	ok = ld32_acq(&n->pc->peer_epoch) == n->epoch;
	n->up = ok && ld32_acq(&n->pc->state) == VP21_STATE_ATTACHED;
	return rx ? ok : n->up;
}

static bool link_ok(struct vp_net21 *n)
{
	return session_ok(n, false);
}

/*
 * An index or descriptor of theirs broke a rule. If they are restarting
 * (detached, or a new epoch: what we read may be half of each session),
 * that is no violation: the link is down until the next handshake. Their
 * restart stores state = DETACHED before resetting its indexes, all with
 * release, so an acquire that read a reset index makes these loads see the
 * restart. Otherwise the link breaks. Returns 0 or -EIO.
 */
__attribute__((__cold__, __noinline__, __format__(__printf__, 2, 3)))
static int violation(struct vp_net21 *n, const char *fmt, ...)
{
	va_list ap;
	char why[160];

	/* A full fence (cold path): one fence primitive for both builds. */
	atomic_thread_fence(memory_order_seq_cst);
	if (ld32_acq(&n->pc->state) != VP21_STATE_ATTACHED ||
	    ld32_acq(&n->pc->epoch) != n->peer_epoch) {
		n->up = false;
		return 0;
	}
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return fail(n, "%s", why);
}

/* ------------------------------------------------------------------------ */
/* Receive: the one walker of the other's ring                              */

static int rx_walk(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count, bool into)
{
	const struct geom *g = &n->pg;
	uint16_t avail, old, pos, pending;
	unsigned got = 0;

	if (unlikely(n->broken))
		return -EIO;
	if (!session_ok(n, true))
		return 0;
	old = pos = n->consumed;  /* after a resync, not before */
	/* Pairs with the store-release of avail in their publish(). */
	avail = ld16_acq(&n->pc->avail);
	pending = (uint16_t)(avail - pos);
	if (unlikely(pending > g->num))
		return violation(n, "avail index ran ahead (%u with %u consumed, ring of %u)",
				 avail, pos, g->num);
	while (pending && got < count) {
		const struct vp21_desc *dp = &n->p_ring[pos & (g->num - 1)];
		/* One load each, then only the copies are used. */
		uint32_t off = ld32(&dp->off), len = ld32(&dp->len), plen;

		if (unlikely(off < g->buf_off || off >= g->size))
			return violation(n, "descriptor %u: offset %" PRIu32
					 " outside the buffers [%u, %" PRIu64 ")",
					 pos, off, g->buf_off, g->size);
		if (unlikely(len < HDR || len > g->slot || len > g->size - off))
			return violation(n, "descriptor %u: length %" PRIu32
					 " (offset %" PRIu32 ", slot %u, section %" PRIu64 ")",
					 pos, len, off, g->slot, g->size);
		plen = len - HDR;
		if (unlikely(plen > pkts[got].len)) {
			if (into) {
				if (!got && pos == old)
					return -EMSGSIZE;
				break;
			}
			n->st.rx_drop_too_big++;
		} else {
			memcpy(&pkts[got].hdr, n->peer + off, HDR);
			memcpy(pkts[got].data, n->peer + off + HDR, plen);
			pkts[got].len = plen;
			n->st.rx_bytes += plen;
			got++;
		}
		pos++;
		pending--;
	}
	if (pos == old)
		return (int)got;
	n->consumed = pos;
	n->st.rx_packets += got;
	/* The copies are done: the slots may be reused. Pairs with the
	 * load-acquire of our consumed in their recycle(). */
	st16_rel(&n->myc->consumed, pos);
	/* Store consumed, then load their tx_want: pairs with the fence in
	 * their vp_net21_arm(). */
	atomic_thread_fence(memory_order_seq_cst);
	if (ld16(&n->pc->tx_want) && vring_need_event(ld16(&n->pc->tx_event), pos, old))
		signal_peer(n, true);
	return n->broken ? -EIO : (int)got;
}

int vp_net21_rx_burst(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count)
{
	return rx_walk(n, pkts, count, false);
}

int vp_net21_rx_into(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count)
{
	return rx_walk(n, pkts, count, true);
}

unsigned vp_net21_rx_pending(struct vp_net21 *n)
{
	uint16_t d;

	if (!session_ok(n, true))
		return 0;
	d = (uint16_t)(ld16_acq(&n->pc->avail) - n->consumed);
	return d <= n->pg.num ? d : 0;
}

unsigned vp_net21_tx_pending(struct vp_net21 *n)
{
	uint16_t d;

	if (!link_ok(n))
		return 0;
	d = (uint16_t)(n->avail - ld16_acq(&n->pc->consumed));
	return d <= n->mg.num ? d : 0;
}

/* ------------------------------------------------------------------------ */
/* Transmit                                                                 */

/* Their consumed index of our ring: slots below it are ours again. Returns
 * the free slots, or < 0 (broken, or -EAGAIN: they are restarting). */
static int recycle(struct vp_net21 *n)
{
	/* Pairs with the store-release of consumed in their rx_walk(). */
	uint16_t c = ld16_acq(&n->pc->consumed);

	if (unlikely((uint16_t)(c - n->recycled) > (uint16_t)(n->avail - n->recycled))) {
		int r = violation(n, "consumed index ran ahead of what was published "
				  "(%u, published %u, recycled %u)", c, n->avail, n->recycled);

		return r ? r : -EAGAIN;
	}
	n->recycled = c;
	return n->mg.num - (uint16_t)(n->avail - c);
}

static inline uint8_t *slot_of(struct vp_net21 *n, uint16_t pos)
{
	return n->my + n->mg.buf_off + (size_t)(pos & (n->mg.num - 1)) * n->mg.slot;
}

static inline void put_desc(struct vp_net21 *n, uint16_t pos, uint32_t len)
{
	struct vp21_desc *d = &n->my_ring[pos & (n->mg.num - 1)];

	d->off = htole32(n->mg.buf_off + (uint32_t)(pos & (n->mg.num - 1)) * n->mg.slot);
	d->len = htole32(len);
}

/* Publish our ring up to n->avail, and kick them if they asked. */
static void publish(struct vp_net21 *n, uint16_t old)
{
	if (n->avail == old)
		return;
	/* Frames and descriptors before the index: pairs with the load-acquire
	 * of avail in their rx_walk(). */
	st16_rel(&n->myc->avail, n->avail);
	/* Store avail, then load their rx_want: pairs with the fence in their
	 * vp_net21_arm(). */
	atomic_thread_fence(memory_order_seq_cst);
	if (ld16(&n->pc->rx_want) && vring_need_event(ld16(&n->pc->rx_event), n->avail, old))
		signal_peer(n, false);
}

static int tx_prep(struct vp_net21 *n)
{
	int room;

	if (unlikely(n->broken))
		return -EIO;
	n->resv = 0;  /* a reservation not committed is void */
	if (!link_ok(n))
		return -EAGAIN;
	room = recycle(n);
	return room;
}

int vp_net21_tx_burst(struct vp_net21 *n, const struct vp_pkt *pkts, unsigned count,
		      unsigned flags)
{
	unsigned done = 0;
	int room = tx_prep(n);
	uint16_t old = n->avail;  /* after a resync, not before */

	if (room < 0)
		return room == -EAGAIN ? 0 : room;
	for (; done < count; done++) {
		const struct vp_pkt *p = &pkts[done];
		uint8_t *s;

		if (p->len > n->mg.slot - HDR) {
			n->st.tx_drop_too_big++;
			continue;
		}
		if (!room) {
			if (!(flags & VP_NET_TX_DROP))
				break;
			n->st.tx_drop_no_buf++;
			continue;
		}
		s = slot_of(n, n->avail);
		memcpy(s, &p->hdr, HDR);
		memcpy(s + HDR, p->data, p->len);
		put_desc(n, n->avail, HDR + p->len);
		n->avail++;
		room--;
		n->st.tx_packets++;
		n->st.tx_bytes += p->len;
	}
	publish(n, old);
	return n->broken ? -EIO : (int)done;
}

int vp_net21_tx_reserve(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count)
{
	int room = tx_prep(n);
	unsigned k;

	if (room < 0)
		return room == -EAGAIN ? 0 : room;
	k = count < (unsigned)room ? count : (unsigned)room;
	for (unsigned i = 0; i < k; i++) {
		pkts[i].data = slot_of(n, (uint16_t)(n->avail + i)) + HDR;
		pkts[i].len = n->mg.slot - HDR;
		memset(&pkts[i].hdr, 0, sizeof(pkts[i].hdr));
	}
	n->resv = k;
	return (int)k;
}

int vp_net21_tx_commit(struct vp_net21 *n, const struct vp_pkt *pkts, unsigned count)
{
	uint16_t old = n->avail;

	if (n->broken)
		return -EIO;
	if (count > n->resv) {
		n->resv = 0;
		return -EINVAL;
	}
	for (unsigned i = 0; i < count; i++)
		if (pkts[i].data != slot_of(n, (uint16_t)(old + i)) + HDR ||
		    pkts[i].len > n->mg.slot - HDR) {
			n->resv = 0;
			return -EINVAL;
		}
	n->resv = 0;
	for (unsigned i = 0; i < count; i++) {
		memcpy(slot_of(n, n->avail), &pkts[i].hdr, HDR);
		put_desc(n, n->avail, HDR + pkts[i].len);
		n->avail++;
		n->st.tx_packets++;
		n->st.tx_bytes += pkts[i].len;
	}
	publish(n, old);
	return n->broken ? -EIO : (int)count;
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */

static bool rx_ready(struct vp_net21 *n)
{
	return session_ok(n, true) && ld16_acq(&n->pc->avail) != n->consumed;
}

static bool tx_ready(struct vp_net21 *n)
{
	return link_ok(n) && (uint16_t)(n->avail - ld16_acq(&n->pc->consumed)) < n->mg.num;
}

int vp_net21_arm(struct vp_net21 *n, bool want_rx, bool want_tx)
{
	if (n->broken)
		return -EIO;
	if (want_rx) {
		st16(&n->myc->rx_event, n->consumed);
		st16(&n->myc->rx_want, 1);
	}
	if (want_tx) {
		st16(&n->myc->tx_event, n->recycled);
		st16(&n->myc->tx_want, 1);
	}
	/* Store the requests, then look again: pairs with the fences in their
	 * publish() and rx_walk(). Their attach and resync kick both our fds,
	 * so a link that is not up needs no look. */
	atomic_thread_fence(memory_order_seq_cst);
	if ((want_rx && rx_ready(n)) || (want_tx && tx_ready(n)))
		return 1;
	return n->broken ? -EIO : 0;
}

void vp_net21_disarm(struct vp_net21 *n)
{
	bool sticky = false;

#ifndef __KERNEL__
	sticky = vp_evfd_drain(n->rx_fd);
	sticky |= vp_evfd_drain(n->tx_fd);
#endif
	st16(&n->myc->rx_want, 0);
	st16(&n->myc->tx_want, 0);
	if (!sticky)
		n->sticky = 0;
	else if (++n->sticky >= STICKY_KICKS_MAX)
		fail(n, "an eventfd stays readable after draining (EFD_SEMAPHORE?): "
		     "it would wake us for ever");
}

#ifndef __KERNEL__
static enum vp_net_mode w_mode(const void *o)
{
	return ((const struct vp_net21 *)o)->mode;
}

static bool w_live(const void *o)
{
	(void)o;
	return true;
}

static bool w_ready(void *o, bool rx, bool tx)
{
	return (rx && rx_ready(o)) || (tx && tx_ready(o));
}

static int w_arm(void *o, bool rx, bool tx)
{
	return vp_net21_arm(o, rx, tx);
}

static void w_disarm(void *o)
{
	vp_net21_disarm(o);
}

static int w_fd(const void *o, bool tx)
{
	return tx ? vp_net21_tx_fd(o) : vp_net21_rx_fd(o);
}

static void w_woken(void *o)
{
	((struct vp_net21 *)o)->st.wakeups++;
}

const struct vp_wait_ops vp_net21_wait_ops = {
	.mode = w_mode, .live = w_live, .ready = w_ready, .arm = w_arm,
	.disarm = w_disarm, .fd = w_fd, .woken = w_woken,
};

int vp_net21_wait(struct vp_net21 *n, bool want_rx, bool want_tx, int timeout_ms)
{
	int r;

	if (n->broken)
		return -EIO;
	r = vp_wait_one(&vp_net21_wait_ops, n, want_rx, want_tx, timeout_ms);
	return n->broken ? -EIO : r;
}

int vp_net21_rx_fd(const struct vp_net21 *n)
{
	return n->rx_fd;
}

int vp_net21_tx_fd(const struct vp_net21 *n)
{
	return n->tx_fd;
}
#endif /* !__KERNEL__ */

const struct vp_net_stats *vp_net21_stats(const struct vp_net21 *n)
{
	return &n->st;
}

const char *vp_net21_broken(const struct vp_net21 *n)
{
	return n->broken ? n->reason : NULL;
}

uint64_t vp_net21_resyncs(const struct vp_net21 *n)
{
	return n->resyncs;
}

bool vp_net21_up(struct vp_net21 *n)
{
	return link_ok(n);
}

uint32_t vp_net21_frame_max(const struct vp_net21 *n, bool rx)
{
	return (rx ? n->pg.slot : n->mg.slot) - HDR;
}

/* ------------------------------------------------------------------------ */
/* Attach, reset, detach                                                    */

/*
 * Start a session in our section (docs/window21.md 4): DETACHED first, then
 * the indexes, then the epoch, then ATTACHED, each a store-release, so that
 * whoever reads a reset index also sees that we are restarting.
 */
static void attach(struct vp_net21 *n)
{
	uint32_t e = ld32(&n->myc->epoch) + 1;

	if (!e)
		e = 1;
	st32_rel(&n->myc->state, VP21_STATE_DETACHED);
	n->avail = n->recycled = n->consumed = 0;
	n->resv = 0;
	n->broken = false;
	n->reason[0] = '\0';
	n->sticky = 0;
	st16(&n->myc->rx_want, 0);
	st16(&n->myc->tx_want, 0);
	st16_rel(&n->myc->avail, 0);
	st16_rel(&n->myc->consumed, 0);
	n->peer_epoch = ld32_acq(&n->pc->epoch);
	st32_rel(&n->myc->peer_epoch, n->peer_epoch);
	n->epoch = e;
	st32_rel(&n->myc->epoch, e);
	st32_rel(&n->myc->state, VP21_STATE_ATTACHED);
	signal_peer(n, false);
	signal_peer(n, true);
}

int vp_net21_reset(struct vp_net21 *n)
{
	attach(n);
	return 0;
}

static int bad(const char *what, unsigned me, const char *fmt, ...)
	__attribute__((__format__(__printf__, 3, 4)));

static int bad(const char *what, unsigned me, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vp_log(VP_LOG_WARN, "net21 peer %u: refused: %s: %s", me, what, why);
	return -EINVAL;
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Check a section row of the header copy (docs/window21.md 6). */
static int check_row(const struct vp21_header *h, unsigned i, unsigned me)
{
	const struct vp21_section *s = &h->sect[i];
	uint64_t off = le64toh(s->offset), size = le64toh(s->size), win = le64toh(h->window_size);
	uint32_t num = le16toh(s->ring_num), slot = le32toh(s->slot_size);
	uint32_t ro = le32toh(s->ring_off), bo = le32toh(s->buf_off);

	if (le16toh(s->owner) != i)
		return bad("header", me, "section %u: owner %u", i, le16toh(s->owner));
	if (off % VP21_PAGE || size % VP21_PAGE || !size || off < VP21_HEADER_SIZE ||
	    off > win || size > win - off)
		return bad("header", me, "section %u: offset %" PRIu64 " size %" PRIu64
			   " in a window of %" PRIu64, i, off, size, win);
	if (num < 2 || num > VP21_RING_MAX || !pow2(num))
		return bad("header", me, "section %u: ring of %u", i, num);
	if (slot < VP21_SLOT_MIN || slot > VP21_SLOT_MAX || slot < HDR + MIN_FRAME)
		return bad("header", me, "section %u: slot size %u", i, slot);
	if (ro < VP21_CTRL_SIZE || ro % 8 || bo < ro || (uint64_t)bo - ro < 8ull * num ||
	    (uint64_t)bo + (uint64_t)num * slot > size)
		return bad("header", me, "section %u: ring at %u, buffers at %u do not fit "
			   "%u slots of %u in %" PRIu64 " bytes", i, ro, bo, num, slot, size);
	return 0;
}

static int check_header(const struct vp21_header *h, unsigned me)
{
	int r;

	if (le32toh(h->magic) != VP21_MAGIC || le16toh(h->version) != VP21_VERSION)
		return bad("header", me, "magic %#x version %u", le32toh(h->magic),
			   le16toh(h->version));
	if (le16toh(h->num_peers) != VP21_PEERS || le32toh(h->header_size) != VP21_HEADER_SIZE ||
	    h->flags)
		return bad("header", me, "%u peers, header of %u, flags %#x",
			   le16toh(h->num_peers), le32toh(h->header_size), le32toh(h->flags));
	for (unsigned i = 0; i < VP21_PEERS; i++) {
		r = check_row(h, i, me);
		if (r)
			return r;
	}
	/* Sections sorted or not, they must not overlap. */
	{
		uint64_t a = le64toh(h->sect[0].offset), as = le64toh(h->sect[0].size);
		uint64_t b = le64toh(h->sect[1].offset), bs = le64toh(h->sect[1].size);

		if (a < b + bs && b < a + as)
			return bad("header", me, "sections overlap");
	}
	return 0;
}

#ifndef __KERNEL__
/* A section fd: sealed memory of exactly size bytes, opened as asked. */
static int check_fd(int fd, uint64_t size, bool writable, const char *what, unsigned me)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL), e;
	char kind[48];

	if (fl < 0)
		return bad(what, me, "fd %d not open", fd);
	e = vp_fd_check_memory(fd);
	if (e)
		return bad(what, me, "a %s, not memory sealed against shrinking",
			   vp_fd_kind(fd, kind, sizeof(kind)));
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != size)
		return bad(what, me, "%lld bytes, the header says %" PRIu64,
			   (long long)st.st_size, size);
	if (writable && (fl & O_ACCMODE) != O_RDWR)
		return bad(what, me, "not open for writing");
	if (!writable && (fl & O_ACCMODE) != O_RDONLY)
		return bad(what, me, "open for writing: the other's section must be read-only");
	return 0;
}

#endif /* !__KERNEL__ */

static void geom_of(struct geom *g, const struct vp21_section *s)
{
	g->size = le64toh(s->size);
	g->ring_off = le32toh(s->ring_off);
	g->buf_off = le32toh(s->buf_off);
	g->slot = le32toh(s->slot_size);
	g->num = le16toh(s->ring_num);
}

#ifndef __KERNEL__
/*
 * Map a section between two PROT_NONE guard pages: a read or write past
 * either end faults at once instead of landing in whatever the kernel put
 * next to it, so a bound missed anywhere shows up in every test instead of
 * reading neighbouring memory.
 */
static void *map_guarded(int fd, uint64_t size, int prot)
{
	uint8_t *r = mmap(NULL, size + 2 * VP21_PAGE, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (r == MAP_FAILED)
		return MAP_FAILED;
	if (mmap(r + VP21_PAGE, size, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
		int e = errno;

		munmap(r, size + 2 * VP21_PAGE);
		errno = e;
		return MAP_FAILED;
	}
	return r + VP21_PAGE;
}

static void unmap_guarded(const void *p, uint64_t size)
{
	munmap((uint8_t *)(uintptr_t)p - VP21_PAGE, size + 2 * VP21_PAGE);
}

#endif /* !__KERNEL__ */

/* A peer of a checked header, nothing mapped or taken yet. */
static struct vp_net21 *net_alloc(const struct vp21_header *h, unsigned me, enum vp_net_mode mode)
{
	struct vp_net21 *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->me = me;
	n->mode = mode;
	n->rx_fd = n->tx_fd = n->peer_rx_fd = n->peer_tx_fd = -1;
	geom_of(&n->mg, &h->sect[me]);
	geom_of(&n->pg, &h->sect[1 - me]);
	return n;
}

/* The control blocks and rings, once both sections are mapped. */
static void set_views(struct vp_net21 *n)
{
	n->myc = (struct vp21_ctrl *)(void *)n->my;
	n->pc = (const struct vp21_ctrl *)(const void *)n->peer;
	n->my_ring = (struct vp21_desc *)(void *)(n->my + n->mg.ring_off);
	n->p_ring = (const struct vp21_desc *)(const void *)(n->peer + n->pg.ring_off);
}

#ifndef __KERNEL__
int vp_net21_new(struct vp_net21 **out, const struct vp_net21_fds *f, enum vp_net_mode mode)
{
	struct vp21_header h;
	struct vp_net21 *n;
	void *m;
	int r;

	*out = NULL;
	if (!f || f->peer >= VP21_PEERS)
		return -EINVAL;
	r = check_fd(f->header_fd, VP21_HEADER_SIZE, false, "header", f->peer);
	if (r)
		return r;
	m = mmap(NULL, VP21_HEADER_SIZE, PROT_READ, MAP_SHARED, f->header_fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	memcpy(&h, m, sizeof(h));  /* checked and used only as this copy */
	munmap(m, VP21_HEADER_SIZE);
	r = check_header(&h, f->peer);
	if (r)
		return r;
	n = net_alloc(&h, f->peer, mode);
	if (!n)
		return -ENOMEM;
	r = check_fd(f->my_fd, n->mg.size, true, "our section", n->me);
	if (!r)
		r = check_fd(f->peer_fd, n->pg.size, false, "the other's section", n->me);
	if (r)
		goto fail;
	m = map_guarded(f->my_fd, n->mg.size, PROT_READ | PROT_WRITE);
	if (m == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	n->my = m;
	m = map_guarded(f->peer_fd, n->pg.size, PROT_READ);
	if (m == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	n->peer = m;
	set_views(n);
	{
		const struct { int *dst; int src; const char *what; } t[4] = {
			{ &n->rx_fd, f->rx_fd, "rx" }, { &n->tx_fd, f->tx_fd, "tx" },
			{ &n->peer_rx_fd, f->peer_rx_fd, "the other's rx" },
			{ &n->peer_tx_fd, f->peer_tx_fd, "the other's tx" },
		};

		for (unsigned i = 0; i < 4; i++) {
			char kind[48];

			r = vp_evfd_take(t[i].src);
			if (r < 0) {
				if (r == -1)
					r = -EINVAL;
				bad("eventfd", n->me, "%s fd is a %s, not an eventfd", t[i].what,
				    vp_fd_kind(t[i].src, kind, sizeof(kind)));
				goto fail;
			}
			*t[i].dst = r;
		}
	}
	attach(n);
	*out = n;
	return 0;
fail:
	vp_net21_free(n);
	return r;
}

#endif /* !__KERNEL__ */

#ifdef __KERNEL__
/* No fds in the kernel: the module takes the other's doorbells as interrupts and maps in
 * poll mode, so wake_fds is never set there. */
static void drop_wake_fd(int *fd)
{
	*fd = -1;
}
#else
static void drop_wake_fd(int *fd)
{
	close_fd(fd);
}
#endif

int vp_net21_new_mapped(struct vp_net21 **out, const struct vp_net21_map *m,
			enum vp_net_mode mode)
{
	int wake[2] = { -1, -1 };
	struct vp21_header h;
	struct vp_net21 *n = NULL;
	int r = -EINVAL;

	*out = NULL;
	if (m && m->wake_fds) {
		wake[0] = m->rx_fd;  /* ours from here on, whatever happens */
		wake[1] = m->tx_fd;
	}
	if (!m || m->peer >= VP21_PEERS || !m->header || !m->my || !m->other || !m->notify)
		goto fail;
	if (mode != VP_NET_POLL && (wake[0] < 0 || wake[1] < 0)) {
		bad("mode", m->peer, "a mapped window without eventfds to sleep on: poll only");
		r = -ENOTSUP;
		goto fail;
	}
	if (m->header_len < VP21_HEADER_SIZE) {
		bad("header", m->peer, "%" PRIu64 " bytes mapped", m->header_len);
		goto fail;
	}
	memcpy(&h, m->header, sizeof(h));  /* checked and used only as this copy */
	if (check_header(&h, m->peer))
		goto fail;
	n = net_alloc(&h, m->peer, mode);
	if (!n) {
		r = -ENOMEM;
		goto fail;
	}
	if (m->my_len < n->mg.size || m->other_len < n->pg.size) {
		bad("sections", n->me, "%" PRIu64 " and %" PRIu64 " bytes mapped, the header says %"
		    PRIu64 " and %" PRIu64, m->my_len, m->other_len, n->mg.size, n->pg.size);
		free(n);
		goto fail;
	}
	if (mode != VP_NET_POLL) {
		n->rx_fd = wake[0];
		n->tx_fd = wake[1];
	} else {
		drop_wake_fd(&wake[0]);  /* nothing sleeps on them */
		drop_wake_fd(&wake[1]);
	}
	n->mapped = true;
	n->my = m->my;
	n->peer = m->other;
	n->notify = m->notify;
	n->notify_opaque = m->opaque;
	set_views(n);
	attach(n);
	*out = n;
	return 0;
fail:
	drop_wake_fd(&wake[0]);
	drop_wake_fd(&wake[1]);
	return r;
}

void vp_net21_free(struct vp_net21 *n)
{
	if (!n)
		return;
	if (n->myc) {
		st32_rel(&n->myc->state, VP21_STATE_DETACHED);
		if (n->peer_rx_fd >= 0 || n->notify)
			signal_peer(n, false);
		if (n->peer_tx_fd >= 0 || n->notify)
			signal_peer(n, true);
	}
#ifndef __KERNEL__
	if (n->my && !n->mapped)
		unmap_guarded(n->my, n->mg.size);
	if (n->peer && !n->mapped)
		unmap_guarded(n->peer, n->pg.size);
	close_fd(&n->rx_fd);
	close_fd(&n->tx_fd);
	close_fd(&n->peer_rx_fd);
	close_fd(&n->peer_tx_fd);
#endif
	free(n);
}

#ifndef __KERNEL__
void vp_net21_fds_close(struct vp_net21_fds *f)
{
	close_fd(&f->header_fd);
	close_fd(&f->my_fd);
	close_fd(&f->peer_fd);
	close_fd(&f->rx_fd);
	close_fd(&f->tx_fd);
	close_fd(&f->peer_rx_fd);
	close_fd(&f->peer_tx_fd);
}

/* ------------------------------------------------------------------------ */
/* The allocator                                                            */

struct vp_window21 {
	int header_fd;
	int sect_fd[VP21_PEERS];
	int rx[VP21_PEERS], tx[VP21_PEERS];
	uint64_t size;
};

static int sealed_memfd(const char *name, uint64_t size, const void *init, size_t init_len,
			int seals)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING), e;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		goto err;
	if (init_len && pwrite(fd, init, init_len, 0) != (ssize_t)init_len)
		goto err;
	if (fcntl(fd, F_ADD_SEALS, seals) < 0)
		goto err;
	return fd;
err:
	e = errno ? -errno : -EIO;
	close(fd);
	return e;
}

int vp_window21_new(struct vp_window21 **out, const struct vp_window21_config *cfg)
{
	uint32_t num = cfg && cfg->ring_num ? cfg->ring_num : 256;
	uint32_t slot = cfg && cfg->slot_size ? cfg->slot_size : 2048;
	struct vp21_header h;
	struct vp_window21 *w;
	uint64_t ro = VP21_CTRL_SIZE, bo, ssize;
	int r;

	*out = NULL;
	if (num < 2 || num > VP21_RING_MAX || !pow2(num) || slot < HDR + MIN_FRAME ||
	    slot < VP21_SLOT_MIN || slot > VP21_SLOT_MAX)
		return -EINVAL;
	bo = (ro + 8ull * num + 63) & ~63ull;
	/* A power of two: a section is a PCI BAR of its own for a QEMU guest
	 * (docs/window21.md 5), and BAR sizes are powers of two. */
	ssize = VP21_PAGE;
	while (ssize < bo + (uint64_t)num * slot)
		ssize <<= 1;
	memset(&h, 0, sizeof(h));
	h.magic = htole32(VP21_MAGIC);
	h.version = htole16(VP21_VERSION);
	h.num_peers = htole16(VP21_PEERS);
	h.header_size = htole32(VP21_HEADER_SIZE);
	h.window_size = htole64(VP21_HEADER_SIZE + VP21_PEERS * ssize);
	for (unsigned i = 0; i < VP21_PEERS; i++) {
		struct vp21_section *s = &h.sect[i];

		s->offset = htole64(VP21_HEADER_SIZE + i * ssize);
		s->size = htole64(ssize);
		s->owner = htole16((uint16_t)i);
		s->ring_num = htole16((uint16_t)num);
		s->slot_size = htole32(slot);
		s->ring_off = htole32((uint32_t)ro);
		s->buf_off = htole32((uint32_t)bo);
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->header_fd = -1;
	for (unsigned i = 0; i < VP21_PEERS; i++)
		w->sect_fd[i] = w->rx[i] = w->tx[i] = -1;
	w->size = le64toh(h.window_size);
	r = sealed_memfd("vp21-header", VP21_HEADER_SIZE, &h, sizeof(h),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	if (r < 0)
		goto fail;
	w->header_fd = r;
	for (unsigned i = 0; i < VP21_PEERS; i++) {
		r = sealed_memfd(i ? "vp21-section1" : "vp21-section0", ssize, NULL, 0,
				 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
		if (r < 0)
			goto fail;
		w->sect_fd[i] = r;
		w->rx[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		w->tx[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (w->rx[i] < 0 || w->tx[i] < 0) {
			r = -errno;
			goto fail;
		}
	}
	*out = w;
	return 0;
fail:
	vp_window21_free(w);
	return r;
}

void vp_window21_free(struct vp_window21 *w)
{
	if (!w)
		return;
	close_fd(&w->header_fd);
	for (unsigned i = 0; i < VP21_PEERS; i++) {
		close_fd(&w->sect_fd[i]);
		close_fd(&w->rx[i]);
		close_fd(&w->tx[i]);
	}
	free(w);
}

uint64_t vp_window21_size(const struct vp_window21 *w)
{
	return w->size;
}

/* A read-only open file of the same memfd: mprotect() cannot make a
 * mapping of it writable (docs/window21.md 5). */
static int reopen_ro(int fd)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = open(path, O_RDONLY | O_CLOEXEC);
	return r < 0 ? -errno : r;
}

static int dup_cloexec(int fd)
{
	int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	return r < 0 ? -errno : r;
}

int vp_window21_peer_fds(const struct vp_window21 *w, unsigned peer, struct vp_net21_fds *out)
{
	struct vp_net21_fds f = { .peer = peer };
	int *dst[7] = { &f.header_fd, &f.my_fd, &f.peer_fd, &f.rx_fd, &f.tx_fd,
			&f.peer_rx_fd, &f.peer_tx_fd };

	if (peer >= VP21_PEERS)
		return -EINVAL;
	for (unsigned i = 0; i < 7; i++)
		*dst[i] = -1;
	{
		const struct { int fd; bool ro; } src[7] = {
			{ w->header_fd, true }, { w->sect_fd[peer], false },
			{ w->sect_fd[1 - peer], true }, { w->rx[peer], false },
			{ w->tx[peer], false }, { w->rx[1 - peer], false },
			{ w->tx[1 - peer], false },
		};

		for (unsigned i = 0; i < 7; i++) {
			int r = src[i].ro ? reopen_ro(src[i].fd) : dup_cloexec(src[i].fd);

			if (r < 0) {
				vp_net21_fds_close(&f);
				return r;
			}
			*dst[i] = r;
		}
	}
	*out = f;
	return 0;
}
#endif /* !__KERNEL__ */
