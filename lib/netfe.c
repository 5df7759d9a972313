/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Our virtio-net frontend driver, for a userspace VM whose RAM is a memfd:
 * it plays the part a guest's virtio_net driver plays, on rings and buffers
 * it lays out in that RAM.
 *
 * RAM layout from cfg->ram_offset (gpa = offset in RAM), each ring part on
 * its own page so that the two sides' writes never share a cache line:
 *   receiveq (q0) desc | avail | used, transmitq (q1) desc | avail | used,
 *   (with VIRTIO_F_RING_PACKED the same places hold the descriptor ring and
 *   the driver and device event areas: one layout serves both, so the ring
 *   addresses told before negotiation hold whichever the peer takes),
 *   rx_num receive buffers of rx_buf_size bytes,
 *   tx_num transmit slots of fe->slot bytes (the receive buffer size, at
 *   least TX_SLOT, rounded up to a cache line),
 *   with INDIRECT_DESC offered: one indirect table per transmitq entry.
 * A packet larger than one slot takes several slots, sent as one chain
 * (one indirect descriptor when negotiated).
 *
 * With receive buffers as big as a slot (the default 2048 bytes, or any
 * multiple of 64 above), the two pools are one array of rx_num + tx_num
 * equal buffers: buffer id u lies at rx_pool + u * slot, and vp_netfe_tx_forward() sends a borrowed receive
 * buffer as it is, posting a free slot in its place. Which ids are receive
 * buffers and which are slots then changes as packets are forwarded.
 *
 * Security model
 *  - Untrusted: everything the device writes, i.e. the used rings (checked
 *    by vring.c against our own shadow state) and the contents of the
 *    receive buffers. The net header is copied out once and only the copy
 *    is looked at; num_buffers and every used length are checked against
 *    what we posted before a byte is copied. A lie costs the liar packets
 *    (rx_drop_bad), never our memory.
 *  - Not covered: the device maps all of our RAM read-write by design
 *    (vhost-pci 2.0), so it can scribble anywhere in it. What we guarantee
 *    is that nothing it writes makes us touch memory outside our buffers
 *    or the caller's.
 *
 * Counters: tx_packets/tx_bytes count packets the device has consumed (used
 * entries collected), so that after a reset the packets accepted by
 * vp_netfe_tx_burst() but never consumed are the difference. tx_drop_no_buf
 * counts packets dropped (VP_NET_TX_DROP) for want of a free transmit slot.
 * All counters survive a reset.
 *
 * Threading: one vp_netfe, one thread.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/port.h"
#include "internal.h"
#include "util.h"
#include "wait.h"
#include "coalesce.h"
#include "vhostpci/net.h"
#include "vhostpci/vring.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define HDR          VP_NET_HDR_LEN
#define TX_SLOT      2048u		/* the smallest slot */
#define TX_MAX_SLOTS ((VP_NET_MAX_PKT + HDR + TX_SLOT - 1) / TX_SLOT)
#define PAGE         4096u
#define REASON_MAX   256

enum { EFD_RX_KICK, EFD_RX_CALL, EFD_TX_KICK, EFD_TX_CALL, NEFD };

struct ring_gpa {
	uint64_t desc, avail, used;
};

struct vp_netfe {
	/* Hot. */
	struct vp_vq_drv *rxq;		/* q0, receiveq */
	struct vp_vq_drv *txq;		/* q1, transmitq */
	unsigned char *ram;
	uint64_t rx_pool, tx_pool;	/* gpa of buffer 0 / slot 0 */
	uint32_t rx_buf_size;
	uint16_t rx_num, tx_num;
	uint16_t ind_max;		/* slots one indirect table may take; 0: none */
	uint32_t slot;			/* bytes per transmit slot */
	bool swap;			/* one pool: tx_forward() may swap buffers */
	uint64_t slot_base;		/* gpa of slot id 0 (rx_pool when swap) */
	unsigned slot0;			/* first slot id after a reset */
	unsigned fwd_at;		/* tx_forward(): next held entry to match */
	bool mrg;
	bool started;
	bool rx_partial;		/* the oldest used entries are part of a packet */
	enum vp_net_mode mode;
	int efd[NEFD];

	/* Used receive entries collected but not yet made into packets: a
	 * ring of emask + 1 (>= rx_num) entries starting at ehead. */
	void **etok;
	uint32_t *elen;
	unsigned emask, ehead, ecount;
	/* Receive buffers to post again, staged for one add_burst(). */
	struct vp_buf *post;
	void **post_tok;
	unsigned rx_held;		/* borrowed: staged at the top of post[] */
	unsigned char *scratch;		/* a borrowed multi-buffer packet, linearised */

	/* Transmit slots: a free stack, and per slot the next slot of its
	 * packet; per head slot, the packet's length and slot count. */
	uint16_t *tx_free;
	unsigned tx_nfree;
	uint16_t *tx_link;
	uint16_t *tx_nslots;
	uint32_t *tx_plen;
	void **tx_tok;			/* tx_num: staging and reclaim scratch */
	struct vp_buf *tx_buf;		/* tx_num: one-slot chains staged */
	uint16_t *tx_resv;		/* tx_num: slots lent by vp_netfe_tx_reserve() */
	unsigned tx_nresv;

	struct vp_net_stats st;
	struct vp_net_coalesce coal;	/* moderation, off by default */
	struct coal_state cs_rx, cs_tx;
	int64_t hold_ns;		/* the last arm's sleep bound, -1: none */

	/* Cold. */
	uint64_t ram_size;
	int ram_fd;
	uint64_t features;		/* offered and wanted */
	uint64_t negotiated;
	struct ring_gpa q[2];
	uint64_t ind_gpa;
	uint16_t ind_cfg;		/* tables laid out for this many slots */
	bool ring_evidx, ring_ind;	/* what the rings were made with */
	bool ring_packed;
	uint8_t mac[6];
	uint8_t uuid[16];
	uint64_t end;			/* gpa past our layout: the next pair's */
	/* Queue pairs past 0 (VIRTIO_NET_F_MQ): each a vp_netfe of its own
	 * rings, buffers and eventfds, laid out after the previous one. Only
	 * pair 0 holds them; vp_netfe_queue() hands them out. */
	struct vp_netfe *pair[VP_NETFE_MAX_QUEUE_PAIRS];
	unsigned npairs;		/* pair 0: how many; others: 0 */
	char reason[REASON_MAX];
};

static inline void *tok_of(unsigned i)
{
	return (void *)(uintptr_t)(i + 1);
}

static inline unsigned idx_of(const void *tok)
{
	return (unsigned)((uintptr_t)tok - 1);
}

static inline bool is_pow2(unsigned x)
{
	return x && !(x & (x - 1));
}

static inline uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static inline void notify(struct vp_netfe *fe, int fd)
{
	static const uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) == sizeof(one))
		fe->st.signals++;
}

/* A ring broke (the device lied): keep vring's reason, log once. */
__attribute__((cold, noinline))
static int fe_fail(struct vp_netfe *fe, const struct vp_vq_drv *vq)
{
	if (!fe->reason[0]) {
		snprintf(fe->reason, sizeof(fe->reason), "%s", vp_vq_drv_broken_reason(vq));
		vp_log(VP_LOG_WARN, "netfe: link down: %s", fe->reason);
	}
	return -EIO;
}

static inline bool fe_broken(const struct vp_netfe *fe)
{
	return fe->reason[0] != 0;
}

/* ------------------------------------------------------------------------ */
/* Set-up                                                                   */

static void close_efds(struct vp_netfe *fe)
{
	for (int i = 0; i < NEFD; i++) {
		if (fe->efd[i] >= 0)
			close(fe->efd[i]);
		fe->efd[i] = -1;
	}
}

static int open_efds(struct vp_netfe *fe)
{
	for (int i = 0; i < NEFD; i++) {
		fe->efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fe->efd[i] < 0) {
			int e = -errno;

			close_efds(fe);
			return e;
		}
	}
	return 0;
}

/* Compute the layout; -ENOSPC if it does not fit in RAM. */
static int layout(struct vp_netfe *fe, uint64_t ram_offset)
{
	uint64_t off = align_up(ram_offset, PAGE);
	uint16_t num[2] = { fe->rx_num, fe->tx_num };

	if (ram_offset > fe->ram_size || fe->ram_size - ram_offset < PAGE)
		return -ENOSPC;
	for (int q = 0; q < 2; q++) {
		fe->q[q].desc = off;
		off = align_up(off + VP_VQ_DESC_BYTES(num[q]), PAGE);
		fe->q[q].avail = off;
		off = align_up(off + VP_VQ_AVAIL_BYTES(num[q]), PAGE);
		fe->q[q].used = off;
		off = align_up(off + VP_VQ_USED_BYTES(num[q]), PAGE);
	}
	fe->rx_pool = off;
	off = align_up(off + (uint64_t)fe->rx_num * fe->rx_buf_size, 64);
	fe->tx_pool = off;
	off += (uint64_t)fe->tx_num * fe->slot;
	fe->ind_cfg = 0;
	if (fe->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC)) {
		/* vring.c refuses tables longer than the ring. */
		fe->ind_cfg = TX_MAX_SLOTS < fe->tx_num ? TX_MAX_SLOTS : fe->tx_num;
		if (fe->ind_cfg > 1) {
			fe->ind_gpa = align_up(off, 64);
			off = fe->ind_gpa + (uint64_t)fe->tx_num * fe->ind_cfg * 16;
		} else {
			fe->ind_cfg = 0;
		}
	}
	fe->end = off;
	return off > fe->ram_size ? -ENOSPC : 0;
}

static void free_rings(struct vp_netfe *fe)
{
	vp_vq_drv_free(fe->rxq);
	vp_vq_drv_free(fe->txq);
	fe->rxq = fe->txq = NULL;
}

/* (Re)create both rings: zeroed ring memory, fresh shadow state. */
static int make_rings(struct vp_netfe *fe, bool evidx, bool ind, bool packed)
{
	struct vp_vq_drv_config c;
	int err;

	free_rings(fe);
	c = (struct vp_vq_drv_config){
		.num = fe->rx_num, .desc = fe->ram + fe->q[0].desc,
		.avail = fe->ram + fe->q[0].avail, .used = fe->ram + fe->q[0].used,
		.event_idx = evidx, .name = "netfe.rxq", .packed = packed,
	};
	err = vp_vq_drv_new(&fe->rxq, &c);
	if (err)
		return err;
	c = (struct vp_vq_drv_config){
		.num = fe->tx_num, .desc = fe->ram + fe->q[1].desc,
		.avail = fe->ram + fe->q[1].avail, .used = fe->ram + fe->q[1].used,
		.event_idx = evidx, .name = "netfe.txq", .packed = packed,
	};
	if (ind && fe->ind_cfg) {
		c.indirect_area = fe->ram + fe->ind_gpa;
		c.indirect_gpa = fe->ind_gpa;
		c.indirect_max = fe->ind_cfg;
	}
	err = vp_vq_drv_new(&fe->txq, &c);
	if (err) {
		free_rings(fe);
		return err;
	}
	fe->ring_evidx = evidx;
	fe->ring_packed = packed;
	fe->ring_ind = ind && fe->ind_cfg;
	fe->ind_max = fe->ring_ind ? fe->ind_cfg : 0;
	return 0;
}

/* Forget all buffer state: every receive buffer unposted, every slot free. */
static void reset_pools(struct vp_netfe *fe)
{
	fe->ehead = fe->ecount = 0;
	fe->rx_partial = false;
	fe->rx_held = 0;
	fe->tx_nresv = 0;
	fe->tx_nfree = fe->tx_num;
	/* Stack top is the first slot: the lowest slots are used first. */
	for (unsigned i = 0; i < fe->tx_num; i++)
		fe->tx_free[i] = (uint16_t)(fe->slot0 + fe->tx_num - 1 - i);
}

static int netfe_new_one(struct vp_netfe **out, const struct vp_netfe_config *cfg,
			 uint64_t ram_offset, uint64_t features);

int vp_netfe_new(struct vp_netfe **out, const struct vp_netfe_config *cfg)
{
	uint64_t features, mq = 1ull << VIRTIO_NET_F_MQ;
	unsigned n;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg || cfg->queue_pairs > VP_NETFE_MAX_QUEUE_PAIRS)
		return -EINVAL;
	n = cfg->queue_pairs ? cfg->queue_pairs : 1;
	features = cfg->features ? cfg->features : VP_NETFE_DEFAULT_FEATURES;
	features = n > 1 ? features | mq : features & ~mq;
	err = netfe_new_one(out, cfg, cfg->ram_offset, features);
	if (err)
		return err;
	(*out)->npairs = n;
	(*out)->pair[0] = *out;
	for (unsigned q = 1; q < n; q++) {
		err = netfe_new_one(&(*out)->pair[q], cfg, (*out)->pair[q - 1]->end, features);
		if (err) {
			vp_netfe_free(*out);
			*out = NULL;
			return err;
		}
	}
	return 0;
}

struct vp_netfe *vp_netfe_queue(struct vp_netfe *fe, unsigned pair)
{
	return fe && pair < fe->npairs ? fe->pair[pair] : NULL;
}

static int netfe_new_one(struct vp_netfe **out, const struct vp_netfe_config *cfg,
			 uint64_t ram_offset, uint64_t features)
{
	struct vp_netfe *fe;
	unsigned ecap, nid;
	int err;

	if (!cfg->ram || !cfg->ram_size || cfg->ram_fd < 0 ||
	    (unsigned)cfg->mode > VP_NET_ADAPTIVE)
		return -EINVAL;
	fe = calloc(1, sizeof(*fe));
	if (!fe)
		return -ENOMEM;
	for (int i = 0; i < NEFD; i++)
		fe->efd[i] = -1;
	fe->ram = cfg->ram;
	fe->ram_size = cfg->ram_size;
	fe->ram_fd = cfg->ram_fd;
	fe->rx_num = cfg->rx_num ? cfg->rx_num : 256;
	fe->tx_num = cfg->tx_num ? cfg->tx_num : 256;
	fe->rx_buf_size = cfg->rx_buf_size ? cfg->rx_buf_size : 2048;
	fe->features = features;
	fe->mode = cfg->mode;
	fe->hold_ns = -1;
	memcpy(fe->mac, cfg->mac, 6);
	memcpy(fe->uuid, cfg->uuid, 16);
	err = -EINVAL;
	if (!is_pow2(fe->rx_num) || !is_pow2(fe->tx_num) ||
	    fe->rx_num > VP_VQ_MAX_SIZE || fe->tx_num > VP_VQ_MAX_SIZE ||
	    fe->rx_buf_size < 64 || fe->rx_buf_size > (1u << 24) ||
	    (fe->features & ~(VP_NET_FEATURES | VP_NET_TSO_FEATURES | (1ull << VIRTIO_NET_F_MQ) |
			      (1ull << VIRTIO_F_RING_PACKED))) ||
	    !(fe->features & (1ull << VIRTIO_F_VERSION_1)))
		goto fail;
	/* Slots as big as a receive buffer: a frame that fits one fits the other. */
	fe->slot = (uint32_t)align_up(fe->rx_buf_size > TX_SLOT ? fe->rx_buf_size : TX_SLOT, 64);
	err = layout(fe, ram_offset);
	if (err)
		goto fail;
	/* Equal buffers, back to back: one pool. Ids fit the 16-bit slot arrays. */
	fe->swap = fe->rx_buf_size == fe->slot && fe->tx_pool == fe->rx_pool +
		   (uint64_t)fe->rx_num * fe->slot && fe->rx_num + fe->tx_num <= 65536;
	fe->slot_base = fe->swap ? fe->rx_pool : fe->tx_pool;
	fe->slot0 = fe->swap ? fe->rx_num : 0;
	nid = fe->slot0 + fe->tx_num;

	ecap = fe->rx_num;
	fe->emask = ecap - 1;
	fe->etok = calloc(ecap, sizeof(*fe->etok));
	fe->elen = calloc(ecap, sizeof(*fe->elen));
	fe->post = calloc(fe->rx_num, sizeof(*fe->post));
	fe->post_tok = calloc(fe->rx_num, sizeof(*fe->post_tok));
	fe->tx_free = calloc(fe->tx_num, sizeof(*fe->tx_free));
	fe->tx_link = calloc(nid, sizeof(*fe->tx_link));
	fe->tx_nslots = calloc(nid, sizeof(*fe->tx_nslots));
	fe->tx_plen = calloc(nid, sizeof(*fe->tx_plen));
	fe->tx_tok = calloc(fe->tx_num, sizeof(*fe->tx_tok));
	fe->tx_buf = calloc(fe->tx_num, sizeof(*fe->tx_buf));
	fe->tx_resv = calloc(fe->tx_num, sizeof(*fe->tx_resv));
	/* Only mergeable buffers make packets that span buffers. */
	if (fe->features & (1ull << VIRTIO_NET_F_MRG_RXBUF))
		fe->scratch = malloc(VP_NET_MAX_PKT);
	err = -ENOMEM;
	if (!fe->etok || !fe->elen || !fe->post || !fe->post_tok || !fe->tx_free ||
	    !fe->tx_link || !fe->tx_nslots || !fe->tx_plen || !fe->tx_tok || !fe->tx_buf ||
	    !fe->tx_resv || ((fe->features & (1ull << VIRTIO_NET_F_MRG_RXBUF)) && !fe->scratch))
		goto fail;
	err = open_efds(fe);
	if (err)
		goto fail;
	err = make_rings(fe, fe->features & (1ull << VIRTIO_RING_F_EVENT_IDX),
			 fe->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC),
			 fe->features & (1ull << VIRTIO_F_RING_PACKED));
	if (err)
		goto fail;
	reset_pools(fe);
	*out = fe;
	return 0;
fail:
	vp_netfe_free(fe);
	return err;
}

void vp_netfe_free(struct vp_netfe *fe)
{
	if (!fe)
		return;
	for (unsigned q = 1; q < fe->npairs; q++)
		vp_netfe_free(fe->pair[q]);
	free_rings(fe);
	close_efds(fe);
	free(fe->etok);
	free(fe->elen);
	free(fe->post);
	free(fe->post_tok);
	free(fe->tx_free);
	free(fe->tx_link);
	free(fe->tx_nslots);
	free(fe->tx_plen);
	free(fe->tx_tok);
	free(fe->tx_buf);
	free(fe->tx_resv);
	free(fe->scratch);
	free(fe);
}

void vp_netfe_info(const struct vp_netfe *fe, struct vp_frontend_info *info)
{
	memset(info, 0, sizeof(*info));
	memcpy(info->uuid, fe->uuid, 16);
	info->device_type = VP_VIRTIO_ID_NET;
	info->device_features = fe->features;
	info->driver_features = fe->features;
	info->nregions = 1;
	info->regions[0] = (struct vp_dev_region){
		.gpa = 0, .size = fe->ram_size, .uaddr = (uint64_t)(uintptr_t)fe->ram,
		.fd_offset = 0, .prot = VP_MEM_RW, .fd = fe->ram_fd,
	};
	info->nrings = 2 * fe->npairs;
	for (unsigned p = 0; p < fe->npairs; p++) {
		const struct vp_netfe *f = fe->pair[p];

		for (int q = 0; q < 2; q++) {
			info->rings[2 * p + q] = (struct vp_frontend_ring){
				.num = q == VP_NET_Q_RX ? f->rx_num : f->tx_num,
				/* Fresh: a packed ring starts on lap 1 (a native
				 * server takes the features as offered or refuses). */
				.last_avail_idx = (fe->features & (1ull << VIRTIO_F_RING_PACKED)) ?
						  VP_VU_PACKED_FRESH_BASE : 0,
				.desc = f->q[q].desc, .avail = f->q[q].avail, .used = f->q[q].used,
				.enabled = true,
				.kick_fd = f->efd[q == VP_NET_Q_RX ? EFD_RX_KICK : EFD_TX_KICK],
				.call_fd = f->efd[q == VP_NET_Q_RX ? EFD_RX_CALL : EFD_TX_CALL],
			};
		}
	}
	info->config_len = 6;
	memcpy(info->config, fe->mac, 6);
}

static int netfe_start_one(struct vp_netfe *fe, uint64_t features);

int vp_netfe_start(struct vp_netfe *fe, uint64_t features)
{
	/* Without MQ the device has pair 0 only: the others stay unstarted. */
	unsigned n = features & (1ull << VIRTIO_NET_F_MQ) ? fe->npairs : 1;
	int err = 0;

	if (!fe->npairs)
		return -EINVAL;  /* a pair past 0: its pair 0 starts it */
	for (unsigned q = 0; q < n && !err; q++)
		err = netfe_start_one(fe->pair[q], features);
	return err;
}

static int netfe_start_one(struct vp_netfe *fe, uint64_t features)
{
	bool evidx = features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	bool ind = features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	bool packed = features & (1ull << VIRTIO_F_RING_PACKED);
	int n, err;

	/* vhost-user's PROTOCOL_FEATURES (bit 30) is the transport's, not the device's. */
	features &= ~(1ull << VP_VU_F_PROTOCOL_FEATURES);
	if (fe->started || (features & ~fe->features) || !(features & (1ull << VIRTIO_F_VERSION_1)))
		return -EINVAL;
	/*
	 * The rings were laid out for what we offered. Only if the peer took
	 * less do we make them again; the device may have attached already,
	 * and the re-zeroing forgets at most its kick-suppression hint, which
	 * costs kicks, never a wake-up.
	 */
	if (evidx != fe->ring_evidx || (ind && fe->ind_cfg) != fe->ring_ind ||
	    packed != fe->ring_packed) {
		err = make_rings(fe, evidx, ind, packed);
		if (err)
			return err;
	}
	fe->negotiated = features;
	fe->mrg = features & (1ull << VIRTIO_NET_F_MRG_RXBUF);
	reset_pools(fe);
	for (unsigned i = 0; i < fe->rx_num; i++) {
		fe->post[i] = (struct vp_buf){ fe->rx_pool + (uint64_t)i * fe->rx_buf_size,
					       fe->rx_buf_size };
		fe->post_tok[i] = tok_of(i);
	}
	n = vp_vq_drv_add_burst(fe->rxq, fe->post, fe->rx_num, true, fe->post_tok);
	if (n != fe->rx_num)
		return n < 0 ? fe_fail(fe, fe->rxq) : -ENOSPC;
	/* Busy until told otherwise: vp_netfe_wait() asks for calls only to sleep. */
	vp_vq_drv_disable_cb(fe->rxq);
	vp_vq_drv_disable_cb(fe->txq);
	fe->started = true;
	if (vp_vq_drv_publish(fe->rxq))
		notify(fe, fe->efd[EFD_RX_KICK]);
	return 0;
}

static int netfe_reset_one(struct vp_netfe *fe);

int vp_netfe_reset(struct vp_netfe *fe)
{
	int err = fe->npairs ? 0 : -EINVAL;

	for (unsigned q = 0; q < fe->npairs && !err; q++)
		err = netfe_reset_one(fe->pair[q]);
	return err;
}

static int netfe_reset_one(struct vp_netfe *fe)
{
	int err;

	/* What the device consumed before it stopped still counts as sent. */
	if (fe->started && !fe_broken(fe))
		vp_netfe_tx_burst(fe, NULL, 0, 0);
	fe->started = false;
	close_efds(fe);
	err = open_efds(fe);
	if (err)
		return err;
	err = make_rings(fe, fe->features & (1ull << VIRTIO_RING_F_EVENT_IDX),
			 fe->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC),
			 fe->features & (1ull << VIRTIO_F_RING_PACKED));
	if (err)
		return err;
	fe->reason[0] = 0;
	fe->negotiated = 0;
	reset_pools(fe);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* TX                                                                       */

/* Collect consumed packets and free their slots. */
static inline int tx_reclaim(struct vp_netfe *fe)
{
	int r = vp_vq_drv_get_used(fe->txq, fe->tx_tok, NULL, fe->tx_num);

	if (unlikely(r < 0))
		return fe_fail(fe, fe->txq);
	for (int k = 0; k < r; k++) {
		unsigned s = idx_of(fe->tx_tok[k]);
		unsigned ns = fe->tx_nslots[s];

		fe->st.tx_packets++;
		fe->st.tx_bytes += fe->tx_plen[s];
		fe->tx_free[fe->tx_nfree++] = (uint16_t)s;
		while (--ns) {
			s = fe->tx_link[s];
			fe->tx_free[fe->tx_nfree++] = (uint16_t)s;
		}
	}
	return 0;
}

static inline uint64_t slot_gpa(const struct vp_netfe *fe, unsigned s)
{
	return fe->slot_base + (uint64_t)s * fe->slot;
}

static inline unsigned char *slot_ptr(const struct vp_netfe *fe, unsigned s)
{
	return fe->ram + slot_gpa(fe, s);
}

/* Write a packet that spans ns > 1 slots, and describe them in b[]. */
static void tx_fill_slots(struct vp_netfe *fe, const struct vp_pkt *p,
			  const struct virtio_net_hdr_v1 *h, unsigned head,
			  unsigned ns, struct vp_buf *b)
{
	const unsigned char *src = p->data;
	uint32_t left = p->len;
	unsigned s = head;

	for (unsigned k = 0; k < ns; k++) {
		unsigned char *d = slot_ptr(fe, s);
		uint32_t room = fe->slot, take;

		if (k == 0) {
			memcpy(d, h, HDR);
			d += HDR;
			room -= HDR;
		}
		take = left < room ? left : room;
		memcpy(d, src, take);
		src += take;
		left -= take;
		b[k] = (struct vp_buf){ slot_gpa(fe, s), take + (k == 0 ? HDR : 0) };
		s = fe->tx_link[s];
	}
}

/*
 * A one-slot packet whose bytes are in slot s: write its header there and
 * stage it as entry nb of the next tx_flush(). (Its bytes were copied in by
 * tx_burst, or written in place by the caller of tx_commit.)
 */
static inline void tx_stage_slot(struct vp_netfe *fe, unsigned s, const struct vp_pkt *p,
				 unsigned nb)
{
	struct virtio_net_hdr_v1 h = p->hdr;

	h.num_buffers = 0;
	memcpy(slot_ptr(fe, s), &h, HDR);
	fe->tx_nslots[s] = 1;
	fe->tx_plen[s] = p->len;
	fe->tx_buf[nb] = (struct vp_buf){ slot_gpa(fe, s), HDR + p->len };
	fe->tx_tok[nb] = tok_of(s);
}

/* Stage the one-slot chains gathered so far. */
static inline int tx_flush(struct vp_netfe *fe, unsigned *nb)
{
	int r;

	if (!*nb)
		return 0;
	r = vp_vq_drv_add_burst(fe->txq, fe->tx_buf, *nb, false, fe->tx_tok);
	/* Slots never outnumber descriptors: all of them fit. */
	if (unlikely(r != (int)*nb))
		return fe_fail(fe, fe->txq);
	*nb = 0;
	return 0;
}

/* Stage what is gathered, publish (if publish) and kick if asked; ret on success. */
static inline int tx_push(struct vp_netfe *fe, unsigned *nb, bool publish, unsigned ret)
{
	int r = tx_flush(fe, nb);

	if (unlikely(r < 0))
		return r;
	if (publish && vp_vq_drv_publish(fe->txq))
		notify(fe, fe->efd[EFD_TX_KICK]);
	return (int)ret;
}

int vp_netfe_tx_burst(struct vp_netfe *fe, const struct vp_pkt *pkts, unsigned count,
		      unsigned flags)
{
	unsigned i, nb = 0;
	int r;

	if (unlikely(fe_broken(fe)))
		return -EIO;
	if (unlikely(!fe->started))
		return -ENOTCONN;
	r = tx_reclaim(fe);
	if (unlikely(r < 0))
		return r;
	for (i = 0; i < count; i++) {
		const struct vp_pkt *p = &pkts[i];
		uint32_t need = HDR + p->len;
		unsigned ns = (need + fe->slot - 1) / fe->slot;
		struct virtio_net_hdr_v1 h;
		unsigned head;

		/* Never sendable: dropped even without VP_NET_TX_DROP. */
		if (unlikely(p->len > VP_NET_MAX_PKT || ns > fe->tx_num)) {
			fe->st.tx_drop_too_big++;
			continue;
		}
		if (unlikely(ns > fe->tx_nfree)) {
			if (!(flags & VP_NET_TX_DROP))
				break;
			fe->st.tx_drop_no_buf++;
			continue;
		}
		head = fe->tx_free[--fe->tx_nfree];
		if (likely(ns == 1)) {
			memcpy(slot_ptr(fe, head) + HDR, p->data, p->len);
			tx_stage_slot(fe, head, p, nb++);
		} else {
			struct vp_buf b[TX_MAX_SLOTS];
			unsigned s = head;

			h = p->hdr;
			h.num_buffers = 0;
			fe->tx_nslots[head] = (uint16_t)ns;
			fe->tx_plen[head] = p->len;
			for (unsigned k = 1; k < ns; k++) {
				unsigned t = fe->tx_free[--fe->tx_nfree];

				fe->tx_link[s] = (uint16_t)t;
				s = t;
			}
			tx_fill_slots(fe, p, &h, head, ns, b);
			/* Keep the ring in packet order. */
			r = tx_flush(fe, &nb);
			if (!r && vp_vq_drv_add(fe->txq, b, ns, NULL, 0, tok_of(head)))
				r = fe_fail(fe, fe->txq);
			if (unlikely(r < 0))
				return r;
		}
	}
	return tx_push(fe, &nb, true, i);
}

/* Give back the slots of a reservation that was not (wholly) committed,
 * from the last one lent, so the free stack is as it was. */
static void tx_unreserve(struct vp_netfe *fe, unsigned from)
{
	while (fe->tx_nresv > from)
		fe->tx_free[fe->tx_nfree++] = fe->tx_resv[--fe->tx_nresv];
	fe->tx_nresv = 0;
}

int vp_netfe_tx_reserve(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count)
{
	unsigned n;
	int r;

	if (unlikely(fe_broken(fe)))
		return -EIO;
	if (unlikely(!fe->started))
		return -ENOTCONN;
	tx_unreserve(fe, 0);
	r = tx_reclaim(fe);
	if (unlikely(r < 0))
		return r;
	n = count < fe->tx_nfree ? count : fe->tx_nfree;
	for (unsigned i = 0; i < n; i++) {
		unsigned s = fe->tx_free[--fe->tx_nfree];

		fe->tx_resv[i] = (uint16_t)s;
		pkts[i].data = slot_ptr(fe, s) + HDR;
		pkts[i].len = fe->slot - HDR;
		memset(&pkts[i].hdr, 0, sizeof(pkts[i].hdr));
	}
	fe->tx_nresv = n;
	return (int)n;
}

int vp_netfe_tx_commit(struct vp_netfe *fe, const struct vp_pkt *pkts, unsigned count)
{
	unsigned nb;

	if (unlikely(fe_broken(fe)))
		return -EIO;
	if (unlikely(!fe->started))
		return -ENOTCONN;
	/* A caller bug, not a peer's: check before anything reaches the ring. */
	if (unlikely(count > fe->tx_nresv)) {
		tx_unreserve(fe, 0);
		return -EINVAL;
	}
	for (unsigned i = 0; i < count; i++) {
		if (unlikely(pkts[i].data != slot_ptr(fe, fe->tx_resv[i]) + HDR ||
			     pkts[i].len > fe->slot - HDR)) {
			tx_unreserve(fe, 0);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < count; i++)
		tx_stage_slot(fe, fe->tx_resv[i], &pkts[i], i);
	tx_unreserve(fe, count);
	nb = count;
	return tx_push(fe, &nb, count, count);
}

/* The held (borrowed) entry whose buffer is id, from the hint down; -1: none. */
static int held_entry(const struct vp_netfe *fe, unsigned id)
{
	int lo = (int)(fe->rx_num - fe->rx_held), hint = (int)fe->fwd_at;
	void *tok = tok_of(id);

	for (int k = hint; k >= lo; k--)
		if (fe->post_tok[k] == tok)
			return k;
	for (int k = (int)fe->rx_num - 1; k > hint && k >= lo; k--)
		if (fe->post_tok[k] == tok)
			return k;
	return -1;
}

int vp_netfe_tx_forward(struct vp_netfe *fe, const struct vp_pkt *pkts, unsigned count)
{
	uintptr_t base;
	unsigned i, nb = 0;
	int r;

	if (unlikely(fe_broken(fe)))
		return -EIO;
	if (unlikely(!fe->started))
		return -ENOTCONN;
	if (!fe->swap || !fe->rx_held)
		return 0;
	r = tx_reclaim(fe);
	if (unlikely(r < 0))
		return r;
	base = (uintptr_t)(fe->ram + fe->rx_pool + HDR);
	for (i = 0; i < count && fe->tx_nfree; i++) {
		const struct vp_pkt *p = &pkts[i];
		uintptr_t d = (uintptr_t)p->data;
		size_t off;
		unsigned id, f;
		int k;

		/* Only a whole borrowed buffer, still held, goes as it is. */
		if (d < base || p->len > fe->slot - HDR)
			break;
		off = (size_t)(d - base);
		if (off % fe->slot || off / fe->slot >= fe->slot0 + fe->tx_num)
			break;
		id = (unsigned)(off / fe->slot);
		k = held_entry(fe, id);
		if (k < 0)
			break;
		/* A free slot takes the buffer's place among the receive buffers. */
		f = fe->tx_free[--fe->tx_nfree];
		fe->post[k] = (struct vp_buf){ fe->rx_pool + (uint64_t)f * fe->slot, fe->slot };
		fe->post_tok[k] = tok_of(f);
		fe->fwd_at = (unsigned)(k > 0 ? k - 1 : 0);
		tx_stage_slot(fe, id, p, nb++);
	}
	return tx_push(fe, &nb, i, i);
}

/*
 * Test facility (vp_port_test_post_bad(), vp-vm --test-bad-desc): post one
 * TX chain a device must refuse, as a hostile frontend would, and kick.
 * Only the frontend's own ring and RAM are touched; our shadow state keeps
 * the chain as one slot in flight (the device never gives it back).
 */
/*
 * The headers of VP_PORT_TEST_BAD_HDR, each on a 60-byte frame: whatever
 * the frontend negotiated, a device must drop every one (docs/protocol.md,
 * "Offloads"): csum_start past the frame, csum_offset past it, a GSO frame
 * with gso_size 0, one without NEEDS_CSUM, an unknown GSO type, an unknown
 * flag.
 */
static const struct virtio_net_hdr_v1 bad_hdrs[VP_PORT_TEST_BAD_HDRS] = {
	{ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 200, .csum_offset = 16 },
	{ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 0xfff0 },
	{ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
	  .hdr_len = 54, .gso_size = 0, .csum_start = 34, .csum_offset = 16 },
	{ .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .hdr_len = 54, .gso_size = 1448 },
	{ .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = 0x33, .gso_size = 1448,
	  .csum_start = 34, .csum_offset = 16 },
	{ .flags = 0x80 },
};

/* Post the frames of VP_PORT_TEST_BAD_HDR: good chains, hostile headers. */
static int post_bad_hdrs(struct vp_netfe *fe)
{
	struct vp_buf b;

	if (fe->tx_nfree < VP_PORT_TEST_BAD_HDRS)
		return -ENOSPC;
	for (unsigned k = 0; k < VP_PORT_TEST_BAD_HDRS; k++) {
		unsigned s = fe->tx_free[--fe->tx_nfree];
		struct virtio_net_hdr_v1 h = bad_hdrs[k];
		unsigned char *d = slot_ptr(fe, s);

		/* Little-endian on the wire (VERSION_1). */
		h.csum_start = htole16(h.csum_start);
		h.csum_offset = htole16(h.csum_offset);
		h.hdr_len = htole16(h.hdr_len);
		h.gso_size = htole16(h.gso_size);
		memcpy(d, &h, HDR);
		memset(d + HDR, 0, 60);
		memset(d + HDR, 0xff, 6);	/* broadcast: nobody's frame in particular */
		d[HDR + 12] = 0x08;		/* IPv4 */
		fe->tx_nslots[s] = 1;
		fe->tx_plen[s] = 60;
		b = (struct vp_buf){ slot_gpa(fe, s), HDR + 60 };
		if (vp_vq_drv_add(fe->txq, &b, 1, NULL, 0, tok_of(s)))
			return fe_fail(fe, fe->txq);
	}
	vp_vq_drv_publish(fe->txq);
	notify(fe, fe->efd[EFD_TX_KICK]);
	vp_log(VP_LOG_WARN, "netfe: test: posted %u frames with bad headers",
	       VP_PORT_TEST_BAD_HDRS);
	return 0;
}

int vp_netfe_test_post_bad(struct vp_netfe *fe, enum vp_port_test_bad kind)
{
	const struct ring_gpa *q = &fe->q[VP_NET_Q_TX];
	unsigned mask = fe->tx_num - 1u, s;
	uint16_t idx, head;
	struct vring_desc *d;
	struct vp_buf b;
	int r;

	if ((unsigned)kind < VP_PORT_TEST_BAD_RANGE || (unsigned)kind > VP_PORT_TEST_BAD_HDR)
		return -EINVAL;
	if (fe_broken(fe))
		return -EIO;
	if (!fe->started)
		return -ENOTCONN;
	tx_unreserve(fe, 0);
	r = tx_reclaim(fe);
	if (r < 0)
		return r;
	if (kind == VP_PORT_TEST_BAD_HDR)
		return post_bad_hdrs(fe);
	if (!fe->tx_nfree)
		return -ENOSPC;
	s = fe->tx_free[--fe->tx_nfree];
	memset(slot_ptr(fe, s), 0, HDR + 60);
	fe->tx_nslots[s] = 1;
	fe->tx_plen[s] = 60;
	b = (struct vp_buf){ slot_gpa(fe, s), HDR + 60 };
	if (kind == VP_PORT_TEST_BAD_RANGE)
		b.addr = fe->ram_size + PAGE;  /* past the one region of the memory table */
	else if (kind == VP_PORT_TEST_BAD_LEN)
		b.len = (uint32_t)(fe->ram_size - b.addr + PAGE);  /* runs past its end */
	/* Nothing is staged (tx_burst and tx_commit publish what they add), so
	 * the chain's head goes to the avail slot at the published index. */
	idx = le16toh(((const struct vring_avail *)(const void *)(fe->ram + q->avail))->idx);
	if (vp_vq_drv_add(fe->txq, &b, 1, NULL, 0, tok_of(s)))
		return fe_fail(fe, fe->txq);
	if (kind == VP_PORT_TEST_BAD_LOOP) {
		head = le16toh(((const struct vring_avail *)(const void *)
				(fe->ram + q->avail))->ring[idx & mask]);
		d = (struct vring_desc *)(void *)(fe->ram + q->desc) + (head & mask);
		d->flags = htole16(VRING_DESC_F_NEXT);  /* a chain that never ends */
		d->next = htole16(head);
	}
	vp_vq_drv_publish(fe->txq);
	notify(fe, fe->efd[EFD_TX_KICK]);  /* whatever the suppression says */
	vp_log(VP_LOG_WARN, "netfe: test: posted a bad TX chain (%s)",
	       kind == VP_PORT_TEST_BAD_RANGE ? "address outside our memory" :
	       kind == VP_PORT_TEST_BAD_LOOP ? "descriptor loop" : "length past our memory");
	return 0;
}

/* ------------------------------------------------------------------------ */
/* RX                                                                       */

/*
 * Collect used receive entries into our ring of them, up to want in all:
 * what one burst will use, so that the buffers posted again are exactly
 * the descriptors just freed (see rx_consume()).
 */
static inline int rx_pull(struct vp_netfe *fe, unsigned want)
{
	unsigned cap = fe->emask + 1;

	if (want > cap)
		want = cap;
	while (fe->ecount < want) {
		unsigned tail = (fe->ehead + fe->ecount) & fe->emask;
		unsigned room = want - fe->ecount;
		int r;

		if (room > cap - tail)
			room = cap - tail;	/* up to the wrap; then again */
		r = vp_vq_drv_get_used(fe->rxq, fe->etok + tail, fe->elen + tail, room);
		if (unlikely(r < 0))
			return fe_fail(fe, fe->rxq);
		fe->ecount += (unsigned)r;
		if ((unsigned)r < room)
			break;
	}
	return 0;
}

static inline unsigned char *rx_buf(const struct vp_netfe *fe, unsigned b)
{
	return fe->ram + fe->rx_pool + (size_t)b * fe->rx_buf_size;
}

/*
 * Take n entries off the front, staging their buffers to be posted again.
 * The staging arrays fill from the top down, so the buffer collected last
 * is posted first: vring.c hands freed descriptors back newest first, and
 * so each buffer lands in the descriptor it had, which then need not be
 * written (see desc_put() in vring.c).
 */
static inline void rx_consume(struct vp_netfe *fe, unsigned n, unsigned *npost)
{
	for (unsigned k = 0; k < n; k++) {
		unsigned e = (fe->ehead + k) & fe->emask;
		unsigned b = idx_of(fe->etok[e]);
		unsigned at = fe->rx_num - 1 - (*npost)++;

		fe->post[at] = (struct vp_buf){
			fe->rx_pool + (uint64_t)b * fe->rx_buf_size, fe->rx_buf_size };
		fe->post_tok[at] = fe->etok[e];
	}
	fe->ehead = (fe->ehead + n) & fe->emask;
	fe->ecount -= n;
}

/*
 * A packet of nb > 1 buffers: check it is whole and fits, then copy it.
 * Returns 1 (delivered into p), 0 (dropped, counted), -EAGAIN (the rest
 * of its buffers is still to come) or -EIO.
 */
static int rx_gather(struct vp_netfe *fe, struct vp_pkt *p, unsigned nb,
		     uint32_t len0, unsigned *npost)
{
	/* The device can still return only what is posted in the ring. */
	unsigned outstanding = fe->rx_num - vp_vq_drv_num_free(fe->rxq);
	uint64_t total = len0 - HDR;
	unsigned char *d = p->data;

	if (unlikely(nb > fe->ecount + outstanding)) {
		fe->st.rx_drop_bad++;
		rx_consume(fe, 1, npost);
		return 0;
	}
	if (nb > fe->ecount) {
		int r = rx_pull(fe, nb);

		if (unlikely(r < 0))
			return r;
		if (nb > fe->ecount) {
			fe->rx_partial = true;
			return -EAGAIN;
		}
	}
	for (unsigned k = 1; k < nb; k++)
		total += fe->elen[(fe->ehead + k) & fe->emask];
	if (unlikely(total > p->len)) {
		fe->st.rx_drop_too_big++;
		rx_consume(fe, nb, npost);
		return 0;
	}
	memcpy(d, rx_buf(fe, idx_of(fe->etok[fe->ehead])) + HDR, len0 - HDR);
	d += len0 - HDR;
	for (unsigned k = 1; k < nb; k++) {
		unsigned e = (fe->ehead + k) & fe->emask;

		memcpy(d, rx_buf(fe, idx_of(fe->etok[e])), fe->elen[e]);
		d += fe->elen[e];
	}
	p->len = (uint32_t)total;
	rx_consume(fe, nb, npost);
	return 1;
}

/* Post the staged receive buffers again. Every one was posted before:
 * there is a descriptor for each. */
static int rx_post_held(struct vp_netfe *fe)
{
	unsigned at = fe->rx_num - fe->rx_held;
	int r;

	if (!fe->rx_held)
		return 0;
	r = vp_vq_drv_add_burst(fe->rxq, fe->post + at, fe->rx_held, true, fe->post_tok + at);
	if (unlikely(r != (int)fe->rx_held))
		return fe_fail(fe, fe->rxq);
	fe->rx_held = 0;
	if (vp_vq_drv_publish(fe->rxq))
		notify(fe, fe->efd[EFD_RX_KICK]);
	return 0;
}

/*
 * Receive up to count packets. Copying: into pkts[i].data (capacity
 * pkts[i].len). Borrowing: pkts[i].data is pointed at the packet in its
 * receive buffer, or for a packet spanning buffers at fe->scratch (then the
 * burst ends with it); the buffers stay staged until rx_post_held().
 */
static inline int rx_do(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count, bool borrow)
{
	unsigned got = 0, npost = 0;
	bool last = false;
	int r;

	if (unlikely(fe_broken(fe)))
		return -EIO;
	if (unlikely(!fe->started))
		return -ENOTCONN;
	r = rx_post_held(fe);
	if (unlikely(r < 0))
		return r;
	/*
	 * One entry per packet; a packet that spans buffers pulls the rest
	 * itself (rx_gather()). Pulling more here, as a guess for such packets,
	 * would free descriptors that this burst does not post again, and then
	 * every buffer lands in another buffer's descriptor: each one written
	 * again (a line the device must fetch across cores) where it could stay.
	 * Entries dropped on the way are made up for by pulling again.
	 */
	fe->rx_partial = false;
	while (got < count) {
		struct vp_pkt *p = &pkts[got];
		struct virtio_net_hdr_v1 h;
		const unsigned char *b;
		unsigned e, nb;
		uint32_t len;

		if (!fe->ecount) {
			r = rx_pull(fe, count - got);
			if (unlikely(r < 0))
				return r;
			if (!fe->ecount)
				break;
		}
		e = fe->ehead;
		len = fe->elen[e];
		b = rx_buf(fe, idx_of(fe->etok[e]));

		/* The device wrote these lines on its core: ask for a later
		 * packet's while this one is copied. */
		if (fe->ecount > 2) {
			const unsigned char *b2 = rx_buf(fe, idx_of(fe->etok[(e + 2) & fe->emask]));

			__builtin_prefetch(b2);
			__builtin_prefetch(b2 + 64);
		}

		if (unlikely(len < HDR)) {
			fe->st.rx_drop_bad++;
			rx_consume(fe, 1, &npost);
			continue;
		}
		/* One copy of the header; only the copy is looked at. */
		memcpy(&h, b, HDR);
		nb = fe->mrg ? le16toh(h.num_buffers) : 1;
		if (likely(nb == 1)) {
			if (borrow) {
				p->data = (unsigned char *)b + HDR;
			} else {
				if (unlikely(len - HDR > p->len)) {
					fe->st.rx_drop_too_big++;
					rx_consume(fe, 1, &npost);
					continue;
				}
				memcpy(p->data, b + HDR, len - HDR);
			}
			p->len = len - HDR;
			rx_consume(fe, 1, &npost);
		} else {
			void *data = p->data;

			if (unlikely(nb == 0)) {
				fe->st.rx_drop_bad++;
				rx_consume(fe, 1, &npost);
				continue;
			}
			if (borrow) {
				p->data = fe->scratch;
				p->len = VP_NET_MAX_PKT;
			}
			r = rx_gather(fe, p, nb, len, &npost);
			if (borrow && r != 1)
				p->data = data;
			if (r == -EAGAIN)
				break;
			if (unlikely(r < 0))
				return r;
			if (!r)
				continue;
			/* One scratch buffer: a borrowing burst ends here. */
			last = borrow;
		}
		h.num_buffers = 0;
		p->hdr = h;
		fe->st.rx_packets++;
		fe->st.rx_bytes += p->len;
		got++;
		if (last)
			break;
	}
	/* Staged at the top of post[]: a copying burst posts them at once,
	 * a borrowing one when they are released. */
	fe->rx_held = npost;
	fe->fwd_at = fe->rx_num - 1;
	if (!borrow) {
		r = rx_post_held(fe);
		if (unlikely(r < 0))
			return r;
	}
	return (int)got;
}

int vp_netfe_rx_burst(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count)
{
	return rx_do(fe, pkts, count, false);
}

int vp_netfe_rx_borrow(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count)
{
	return rx_do(fe, pkts, count, true);
}

int vp_netfe_rx_release(struct vp_netfe *fe)
{
	if (unlikely(fe_broken(fe)))
		return -EIO;
	if (unlikely(!fe->started))
		return -ENOTCONN;
	return rx_post_held(fe);
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */

/* Work we know of without asking the device: whole packets already pulled. */
static bool rx_ready(const struct vp_netfe *fe)
{
	return fe->ecount && !fe->rx_partial;
}

/* What the library's one sleep (lib/waitset.c) needs of the driver. */
static enum vp_net_mode w_mode(const void *o)
{
	return ((const struct vp_netfe *)o)->mode;
}

static bool w_live(const void *o)
{
	return ((const struct vp_netfe *)o)->started;
}

static bool w_ready(void *o, bool rx, bool tx)
{
	struct vp_netfe *fe = o;

	return (rx && (rx_ready(fe) || vp_vq_drv_used_pending(fe->rxq))) ||
	       (tx && vp_vq_drv_used_pending(fe->txq));
}

static int w_arm(void *o, bool rx, bool tx)
{
	return vp_netfe_arm(o, rx, tx);
}

static void w_disarm(void *o)
{
	vp_netfe_disarm(o);
}

static int w_fd(const void *o, bool tx)
{
	return tx ? vp_netfe_tx_fd(o) : vp_netfe_rx_fd(o);
}

static void w_woken(void *o)
{
	((struct vp_netfe *)o)->st.wakeups++;
}

static int64_t w_hold(const void *o)
{
	return vp_netfe_hold_ns(o);
}

const struct vp_wait_ops vp_netfe_wait_ops = {
	.mode = w_mode, .live = w_live, .ready = w_ready, .arm = w_arm,
	.disarm = w_disarm, .fd = w_fd, .woken = w_woken, .hold = w_hold,
};

int vp_netfe_wait(struct vp_netfe *fe, bool want_rx, bool want_tx, int timeout_ms)
{
	const struct vp_wait_item it = { &vp_netfe_wait_ops, fe, want_rx, want_tx };
	struct pollfd pf[2];
	unsigned short owner[2];

	if (fe_broken(fe))
		return -EIO;
	return vp_wait_core(&it, 1, pf, owner, 0, 2, timeout_ms);
}

int vp_netfe_rx_fd(const struct vp_netfe *fe)
{
	return fe->efd[EFD_RX_CALL];
}

int vp_netfe_tx_fd(const struct vp_netfe *fe)
{
	return fe->efd[EFD_TX_CALL];
}

/* Arm one ring moderated (lib/coalesce.h): true if the batch asked for is
 * there, else *hold lowered to how long the sleep may last. */
static bool fe_arm_q(struct vp_netfe *fe, struct vp_vq_drv *vq, struct coal_state *cs,
		     uint64_t progress)
{
	unsigned ahead, pending;
	int64_t h;

	if (fe->coal.frames <= 1)
		return vp_vq_drv_enable_cb(vq);
	ahead = coal_ahead(&fe->coal, cs, (uint16_t)progress, (int64_t)now_ns());
	pending = vp_vq_drv_enable_cb_ahead(vq, ahead, &ahead);
	if (pending >= ahead)
		return true;
	h = coal_hold_ns(&fe->coal, ahead, pending);
	if (h >= 0 && (fe->hold_ns < 0 || h < fe->hold_ns))
		fe->hold_ns = h;
	return false;
}

int vp_netfe_arm(struct vp_netfe *fe, bool want_rx, bool want_tx)
{
	bool hit = false;

	fe->hold_ns = -1;
	if (fe_broken(fe))
		return -EIO;
	if (!fe->started)
		return 0;
	/* Arm, then look once more (enable_cb does): no lost wake-up. Progress:
	 * what the device returned, as packets (a heuristic, for the mark). */
	if (want_rx)
		hit |= fe_arm_q(fe, fe->rxq, &fe->cs_rx, fe->st.rx_packets);
	if (want_tx)
		hit |= fe_arm_q(fe, fe->txq, &fe->cs_tx, fe->st.tx_packets);
	return hit ? 1 : 0;
}

int vp_netfe_set_coalesce(struct vp_netfe *fe, const struct vp_net_coalesce *c)
{
	int r = coal_check(c);

	if (r < 0)
		return r;
	fe->coal = *c;
	/* Pair 0 holds the others (MQ): one setting for the device. */
	for (unsigned q = 1; q < fe->npairs; q++)
		fe->pair[q]->coal = *c;
	return 0;
}

int64_t vp_netfe_hold_ns(const struct vp_netfe *fe)
{
	return fe->hold_ns;
}

void vp_netfe_disarm(struct vp_netfe *fe)
{
	/* Our own non-blocking eventfds: one read empties each. */
	drain_fd(fe->efd[EFD_RX_CALL]);
	drain_fd(fe->efd[EFD_TX_CALL]);
	if (fe->started) {
		vp_vq_drv_disable_cb(fe->rxq);
		vp_vq_drv_disable_cb(fe->txq);
	}
}

const struct vp_net_stats *vp_netfe_stats(const struct vp_netfe *fe)
{
	return &fe->st;
}

const char *vp_netfe_broken(const struct vp_netfe *fe)
{
	return fe_broken(fe) ? fe->reason : NULL;
}
