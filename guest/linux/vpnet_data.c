// SPDX-License-Identifier: GPL-2.0
/*
 * vhost-pci-net data path: we are the device of the frontend's virtio-net
 * rings, as lib/net.c is for a userspace backend, and keep its rules:
 *
 *  - receive (NAPI): pop chains from the frontend's transmitq (queue 1) with
 *    the library's walker, copy each frame once into an skb behind the
 *    12-byte virtio_net_hdr_v1, push every chain back with length 0, signal
 *    if the walker says so (used_event / NO_INTERRUPT). A chain with
 *    device-writable buffers or shorter than the header is only dropped
 *    (rx_drop_bad): it cannot hurt our framing.
 *  - transmit: pop the frontend's receive buffers (queue 0), write the header
 *    (num_buffers) and the frame straight into them, several buffers for one
 *    frame only with MRG_RXBUF, push used entries, signal. A receive buffer
 *    with device-readable descriptors or smaller than the header breaks the
 *    link (lib/net.c's rx_buf_check()).
 *  - a ring the walker refuses breaks the link: carrier off at once, then
 *    the configuration work (vpnet_main.c) detaches the rings and writes the
 *    reason to the kernel log, the driver page and sysfs.
 *
 * Trust: everything in the frontend's RAM is hostile. This file never sees a
 * guest address: only the iovecs the walker produced, which lie inside the
 * frontend's RAM (its region table over BAR2). The net header is copied out
 * before anything looks at it and handed to the kernel's own
 * virtio_net_hdr_to_skb() checks, after our feature checks.
 *
 * Locking: rx.lock is taken by NAPI only (and the configuration side),
 * tx.lock by ndo_start_xmit only (and the configuration side), so a frame
 * received and answered inside the same softirq never takes a lock twice;
 * skbs are handed to the stack after rx.lock is dropped. The configuration
 * side changes the rings only with both held (tx first) and the "on" flags
 * down. Interrupt handlers touch no ring: they schedule NAPI or wake the
 * queue.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/etherdevice.h>
#include <linux/if_vlan.h>
#include <linux/mm.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/uio.h>
#include <linux/virtio_net.h>

#include "vhostpci/net.h"
#include "vpnet.h"

#define HDR VP_NET_HDR_LEN
#define VPNET_RX_BURST 64u

static_assert(sizeof(struct virtio_net_hdr_mrg_rxbuf) == HDR);
/* The walker's iovecs hold kernel pointers: read them as kvecs. */
static_assert(sizeof(struct iovec) == sizeof(struct kvec) &&
	      offsetof(struct iovec, iov_len) == offsetof(struct kvec, iov_len));

static inline const struct kvec *as_kvec(const struct iovec *iov)
{
	return (const struct kvec *)(const void *)iov;
}

static bool has(const struct vpnet *vn, unsigned int bit)
{
	return vn->features & BIT_ULL(bit);
}

static void vpnet_signal(struct vpnet *vn, unsigned int q)
{
	writel(vn->db_peer | q, vn->mem->regs + VP_IVSHMEM_DOORBELL);
	vn->st.dp.signals[q]++;
}

/* A rule broken on the data path: link down now, the rest in process
 * context. Called with the queue's lock held; the caller turns it off. */
static __printf(2, 3) void vpnet_dp_fail(struct vpnet *vn, const char *fmt, ...)
{
	va_list ap;

	spin_lock(&vn->dp_fail_lock);
	if (!vn->dp_failed) {
		va_start(ap, fmt);
		vsnprintf(vn->dp_reason, sizeof(vn->dp_reason), fmt, ap);
		va_end(ap);
		vn->dp_failed = true;
	}
	spin_unlock(&vn->dp_fail_lock);
	netif_carrier_off(vn->ndev);
	schedule_work(&vn->cfg_work);
}

static void vpnet_ring_fail(struct vpnet *vn, struct vpnet_dq *d, unsigned int q)
{
	if (q == 1)
		vn->st.dp.rx_bad_desc++;
	else
		vn->st.dp.tx_bad_desc++;
	d->on = false;
	vpnet_dp_fail(vn, "queue %u: %s", q, vp_vq_dev_broken_reason(d->vq));
}

bool vpnet_dp_take_failure(struct vpnet *vn, char *why, size_t len)
{
	bool failed;

	spin_lock_bh(&vn->dp_fail_lock);
	failed = vn->dp_failed;
	if (failed && why)
		strscpy(why, vn->dp_reason, len);
	vn->dp_failed = false;
	spin_unlock_bh(&vn->dp_fail_lock);
	return failed;
}

/* ---- offloads --------------------------------------------------------------- */

/*
 * The netdev features a negotiated set allows on our transmit side: the
 * frontend finishes checksums only with GUEST_CSUM, takes whole TCP frames
 * only with GUEST_TSO4/6 (which the spec makes depend on GUEST_CSUM), ECN-
 * marked ones only with GUEST_ECN. SG costs nothing: we copy every skb.
 */
netdev_features_t vpnet_offloads(u64 f)
{
	netdev_features_t nf = NETIF_F_SG;

	if (!(f & BIT_ULL(VIRTIO_NET_F_GUEST_CSUM)))
		return nf;
	nf |= NETIF_F_HW_CSUM;
	if (f & BIT_ULL(VIRTIO_NET_F_GUEST_TSO4))
		nf |= NETIF_F_TSO;
	if (f & BIT_ULL(VIRTIO_NET_F_GUEST_TSO6))
		nf |= NETIF_F_TSO6;
	if ((f & BIT_ULL(VIRTIO_NET_F_GUEST_ECN)) && (nf & (NETIF_F_TSO | NETIF_F_TSO6)))
		nf |= NETIF_F_TSO_ECN;
	return nf;
}

/* Only the offloads above follow the frontend: not hw_features, which the
 * core fills with the software ones (GSO, GRO) at registration. */
#define VPNET_OFFLOAD_MASK (NETIF_F_HW_CSUM | NETIF_F_TSO | NETIF_F_TSO6 | NETIF_F_TSO_ECN)

netdev_features_t vpnet_fix_features(struct net_device *ndev, netdev_features_t features)
{
	const struct vpnet *vn = netdev_priv(ndev);

	return features & (~VPNET_OFFLOAD_MASK | READ_ONCE(vn->offloads));
}

/* Per skb: what the frontend negotiated now, before netdev_update_features()
 * has caught up with a renegotiation; the stack does the rest in software. */
netdev_features_t vpnet_features_check(struct sk_buff *skb, struct net_device *ndev,
				       netdev_features_t features)
{
	const struct vpnet *vn = netdev_priv(ndev);

	features = vlan_features_check(skb, features);
	return features & (~VPNET_OFFLOAD_MASK | READ_ONCE(vn->offloads));
}

/* ---- receive: the frontend's transmitq ------------------------------------ */

/*
 * The offloads a frame's header asks for, against what the frontend
 * negotiated and the spec's rules for a driver's header (5.1.6.2): a GSO
 * frame asks for a partial checksum and gives a segment size; ours is at
 * most the interface's MTU (the frontend learnt its MSS from our side of the
 * connection). csum_start/csum_offset and hdr_len are checked against the
 * frame by virtio_net_hdr_to_skb() (skb_partial_csum_set()).
 */
static bool vpnet_rx_offload_ok(const struct vpnet *vn, const struct virtio_net_hdr *h)
{
	u8 gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	u16 gso_size = __virtio16_to_cpu(true, h->gso_size);

	if ((h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM) ||
	    ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(vn, VIRTIO_NET_F_CSUM)))
		return false;
	if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !has(vn, VIRTIO_NET_F_HOST_ECN))
		return false;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return !(h->gso_type & VIRTIO_NET_HDR_GSO_ECN);
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!has(vn, VIRTIO_NET_F_HOST_TSO4))
			return false;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!has(vn, VIRTIO_NET_F_HOST_TSO6))
			return false;
		break;
	default:
		return false;
	}
	return (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && gso_size &&
	       gso_size <= READ_ONCE(vn->ndev->mtu);
}

/* One chain into an skb, or NULL (dropped, counted). rx.lock held. */
static struct sk_buff *vpnet_rx_one(struct vpnet *vn, const struct vp_chain *c)
{
	struct net_device *ndev = vn->ndev;
	struct virtio_net_hdr_mrg_rxbuf h;
	struct sk_buff *skb;
	struct iov_iter it;
	u32 plen;

	if (unlikely(c->n_in || c->len_out < HDR + ETH_HLEN)) {
		vn->st.dp.rx_drop_bad++;
		return NULL;
	}
	plen = c->len_out - HDR;
	iov_iter_kvec(&it, ITER_SOURCE, as_kvec(c->iov), c->n_out, c->len_out);
	if (copy_from_iter(&h, HDR, &it) != HDR) {
		vn->st.dp.rx_drop_bad++;
		return NULL;
	}
	if (unlikely(!vpnet_rx_offload_ok(vn, &h.hdr))) {
		vn->st.dp.rx_drop_offload++;
		return NULL;
	}
	if (unlikely(plen > VP_NET_MAX_PKT ||
		     (h.hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE &&
		      plen > ndev->mtu + ETH_HLEN + VLAN_HLEN))) {
		vn->st.dp.rx_drop_too_big++;
		return NULL;
	}
	skb = napi_alloc_skb(&vn->napi, plen);
	if (unlikely(!skb)) {
		vn->st.dp.rx_drop_nomem++;
		return NULL;
	}
	if (copy_from_iter(skb_put(skb, plen), plen, &it) != plen ||
	    virtio_net_hdr_to_skb(skb, &h.hdr, true)) {
		vn->st.dp.rx_drop_offload++;
		dev_kfree_skb_any(skb);
		return NULL;
	}
	if (skb->ip_summed == CHECKSUM_PARTIAL)
		vn->st.dp.rx_csum_partial++;
	if (skb_is_gso(skb)) {
		vn->st.dp.rx_gso++;
		vn->st.dp.rx_gso_bytes += plen;
	}
	skb->protocol = eth_type_trans(skb, ndev);
	vn->st.dp.rx_packets++;
	vn->st.dp.rx_bytes += plen;
	return skb;
}

static int vpnet_poll(struct napi_struct *napi, int budget)
{
	struct vpnet *vn = container_of(napi, struct vpnet, napi);
	struct vpnet_dq *d = &vn->rx;
	struct sk_buff_head frames;
	struct sk_buff *skb;
	int done = 0, r, k;

	__skb_queue_head_init(&frames);
	spin_lock(&d->lock);
	if (!d->on)
		goto unlock;
	vn->st.dp.napi_polls++;
	/* Polling now: no kicks wanted (with EVENT_IDX avail_event just
	 * stops moving). Re-armed when the poll completes. */
	vp_vq_dev_disable_notify(d->vq);
	while (done < budget) {
		unsigned int want = min_t(unsigned int, budget - done, d->chain_cap);

		r = vp_vq_dev_pop_burst(d->vq, d->chains, want, d->iov, d->iov_cap);
		if (r == 0)
			break;
		if (unlikely(r < 0)) {
			/* -ENOBUFS cannot happen: iov_cap holds any legal chain. */
			vpnet_ring_fail(vn, d, 1);
			break;
		}
		for (k = 0; k < r; k++) {
			const struct vp_chain *c = &d->chains[k];

			d->used[k] = (struct vp_used){ c->head, 0 };
			skb = vpnet_rx_one(vn, c);
			if (skb)
				__skb_queue_tail(&frames, skb);
		}
		if (unlikely(vp_vq_dev_push_burst(d->vq, d->used, (unsigned int)r) < 0)) {
			vpnet_ring_fail(vn, d, 1);
			break;
		}
		if (vp_vq_dev_need_signal(d->vq))
			vpnet_signal(vn, 1);
		done += r;
	}
unlock:
	spin_unlock(&d->lock);
	while ((skb = __skb_dequeue(&frames)))
		napi_gro_receive(napi, skb);
	if (done < budget && napi_complete_done(napi, done)) {
		bool again;

		/* Re-arm, then look once more: frames posted before the
		 * frontend saw the request are caught here. */
		spin_lock(&d->lock);
		again = d->on && vp_vq_dev_enable_notify(d->vq);
		spin_unlock(&d->lock);
		if (again)
			napi_schedule(napi);
	}
	return done;
}

/* ---- transmit: into the frontend's receiveq -------------------------------- */

enum vpnet_claim { CLAIM_OK, CLAIM_NO_BUF, CLAIM_TOO_BIG, CLAIM_BROKEN };

/* lib/net.c's rx_buf_check(): a receive buffer we cannot write into
 * breaks the link. */
static bool vpnet_rx_buf_ok(struct vpnet *vn, const struct vp_chain *c)
{
	if (unlikely(c->n_out)) {
		vn->st.dp.tx_bad_desc++;
		vpnet_dp_fail(vn, "receive buffer %u has device-readable descriptors", c->head);
		return false;
	}
	if (unlikely(c->len_in < HDR)) {
		vn->st.dp.tx_bad_desc++;
		vpnet_dp_fail(vn, "receive buffer %u holds %u bytes, less than the %u-byte header",
			      c->head, c->len_in, HDR);
		return false;
	}
	return true;
}

/* Publish the used entries written so far, signal once, complete BQL. */
static void vpnet_tx_flush(struct vpnet *vn, struct vpnet_dq *d)
{
	if (!d->npend)
		return;
	if (!d->on) {
		/* Broken: nothing more goes into that ring. */
	} else if (unlikely(vp_vq_dev_push_burst(d->vq, d->used, d->npend) < 0)) {
		vpnet_ring_fail(vn, d, 0);
	} else if (vp_vq_dev_need_signal(d->vq)) {
		vpnet_signal(vn, 0);
	}
	netdev_completed_queue(vn->ndev, d->pend_pkts, d->pend_bytes);
	d->npend = d->pend_pkts = d->pend_bytes = 0;
}

/*
 * Claim the receive buffers for one frame of need bytes (header included):
 * chains [0, *nb). Chains popped beyond them are given back. With
 * MRG_RXBUF, buffers popped before the ring ran dry are held for the next
 * try (d->nheld): the walker's avail index then sits past them, so the kick
 * we ask for comes with the frontend's next buffer (re-reading them after
 * an unpop would ask for a kick the frontend already owes none of).
 * tx.lock held.
 */
static enum vpnet_claim vpnet_claim(struct vpnet *vn, struct vpnet_dq *d, u32 need,
				    unsigned int *nb)
{
	bool mrg = has(vn, VIRTIO_NET_F_MRG_RXBUF);
	unsigned int nch = 0, iov_used = 0, got = d->nheld, want = 1, k;
	u64 room = 0;
	int r;

	d->nheld = 0;
	for (;;) {
		if (!got) {
			if (want > d->chain_cap - d->npend - nch && d->npend)
				vpnet_tx_flush(vn, d);	/* room in used[] first */
			want = min(want, d->chain_cap - d->npend - nch);
			if (!want)
				goto too_big;	/* more than the whole ring */
			r = vp_vq_dev_pop_burst(d->vq, d->chains + nch, want, d->iov + iov_used,
						d->iov_cap - iov_used);
			if (r == -ENOBUFS)
				goto too_big;
			if (unlikely(r < 0)) {
				vpnet_ring_fail(vn, d, 0);
				return CLAIM_BROKEN;
			}
			if (r == 0) {
				d->nheld = nch;
				return CLAIM_NO_BUF;
			}
			got = (unsigned int)r;
		}
		for (k = 0; k < got; k++) {
			const struct vp_chain *c = &d->chains[nch];

			if (!vpnet_rx_buf_ok(vn, c)) {
				d->on = false;
				return CLAIM_BROKEN;
			}
			iov_used += c->n_in;
			room += c->len_in;
			nch++;
			if (room >= need)
				break;
		}
		if (room >= need) {
			/* More popped than the frame needs: the rest go back. */
			if (got - k - 1 && vp_vq_dev_unpop(d->vq, got - k - 1) < 0) {
				vpnet_ring_fail(vn, d, 0);
				return CLAIM_BROKEN;
			}
			*nb = nch;
			return CLAIM_OK;
		}
		if (!mrg)
			goto too_big;	/* the whole frame must fit one buffer */
		/* Guess: the rest of the frame in buffers like the last one. */
		want = DIV_ROUND_UP(need - room, max(d->chains[nch - 1].len_in, 1u));
		got = 0;
	}
too_big:
	if (nch && vp_vq_dev_unpop(d->vq, nch) < 0) {
		vpnet_ring_fail(vn, d, 0);
		return CLAIM_BROKEN;
	}
	return CLAIM_TOO_BIG;
}

/*
 * The frontend has no receive buffer left: stop the queue and ask for a
 * kick (vector 1 + 0 wakes it). Returns true if buffers came meanwhile (the
 * queue is running again). tx.lock held.
 */
static bool vpnet_tx_pause(struct vpnet *vn, struct vpnet_dq *d)
{
	vpnet_tx_flush(vn, d);
	netif_stop_queue(vn->ndev);
	if (d->on && vp_vq_dev_enable_notify(d->vq)) {
		netif_start_queue(vn->ndev);
		return true;
	}
	vn->st.dp.tx_queue_stopped++;
	return false;
}

/* Header and frame into chains [0, nb); their used entries join the pending ones. */
static void vpnet_tx_fill(struct vpnet *vn, struct vpnet_dq *d, struct sk_buff *skb,
			  const struct virtio_net_hdr_mrg_rxbuf *h, unsigned int nb)
{
	unsigned int niov = 0, k;
	u32 left = HDR + skb->len;
	struct iov_iter it;

	for (k = 0; k < nb; k++)
		niov += d->chains[k].n_in;
	/* The chains' pieces are consecutive in our iovec array. */
	iov_iter_kvec(&it, ITER_DEST, as_kvec(d->chains[0].iov), niov, left);
	/* Cannot fall short: the buffers hold need bytes and the skb its length. */
	if (copy_to_iter(h, HDR, &it) != HDR || skb_copy_datagram_iter(skb, 0, &it, skb->len))
		netdev_warn_once(vn->ndev, "short copy into a receive buffer\n");
	for (k = 0; k < nb; k++) {
		u32 len = min(d->chains[k].len_in, left);

		d->used[d->npend++] = (struct vp_used){ d->chains[k].head, len };
		left -= len;
	}
}

netdev_tx_t vpnet_dp_xmit(struct sk_buff *skb, struct net_device *ndev)
{
	struct vpnet *vn = netdev_priv(ndev);
	struct vpnet_dq *d = &vn->tx;
	struct virtio_net_hdr_mrg_rxbuf h = { };
	enum vpnet_claim cl;
	unsigned int nb = 0;
	u32 len = skb->len;
	bool flush;

	spin_lock(&d->lock);
	if (unlikely(!d->on)) {
		vn->st.dp.tx_drop_link_down++;
		goto drop;
	}
	/* Checksums the frontend cannot finish are finished here. */
	if (skb->ip_summed == CHECKSUM_PARTIAL && !has(vn, VIRTIO_NET_F_GUEST_CSUM) &&
	    skb_checksum_help(skb)) {
		vn->st.dp.tx_drop_csum++;
		goto drop;
	}
	if (virtio_net_hdr_from_skb(skb, &h.hdr, true, false, 0)) {
		vn->st.dp.tx_drop_csum++;
		goto drop;
	}
	if (h.hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
		vn->st.dp.tx_csum_partial++;

	for (;;) {
		cl = vpnet_claim(vn, d, HDR + len, &nb);
		if (cl != CLAIM_NO_BUF)
			break;
		if (!vpnet_tx_pause(vn, d)) {
			/* Kept by the qdisc until the frontend's kick wakes us. */
			spin_unlock(&d->lock);
			return NETDEV_TX_BUSY;
		}
	}
	if (cl == CLAIM_BROKEN) {
		vn->st.dp.tx_drop_link_down++;
		goto drop;
	}
	if (cl == CLAIM_TOO_BIG) {
		vn->st.dp.tx_drop_too_big++;
		goto drop;
	}
	h.num_buffers = cpu_to_le16(nb);
	vpnet_tx_fill(vn, d, skb, &h, nb);
	d->pend_pkts++;
	d->pend_bytes += len;
	vn->st.dp.tx_packets++;
	vn->st.dp.tx_bytes += len;
	if (h.hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		vn->st.dp.tx_gso++;
		vn->st.dp.tx_gso_bytes += len;
	}
	flush = __netdev_tx_sent_queue(netdev_get_tx_queue(ndev, 0), len, netdev_xmit_more());
	/* Out of buffers: stop before the next frame rather than bounce it. */
	if (!vp_vq_dev_avail_pending(d->vq))
		vpnet_tx_pause(vn, d);
	if (flush || d->npend + 2 > d->chain_cap)
		vpnet_tx_flush(vn, d);
	spin_unlock(&d->lock);
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;

drop:
	vpnet_tx_flush(vn, d);
	spin_unlock(&d->lock);
	dev_kfree_skb_any(skb);
	return NETDEV_TX_OK;
}

/* ---- notifications, open/stop --------------------------------------------- */

/* MSI-X vector 1 + q: the frontend kicked queue q. Hard interrupt. */
void vpnet_dp_kick(struct vpnet *vn, unsigned int q)
{
	if (q == 1) {
		napi_schedule(&vn->napi);
	} else if (q == 0 && netif_queue_stopped(vn->ndev)) {
		vn->st.dp.tx_queue_woken++;
		netif_wake_queue(vn->ndev);
	}
}

int vpnet_dp_open(struct net_device *ndev)
{
	struct vpnet *vn = netdev_priv(ndev);

	napi_enable(&vn->napi);
	/* Frames may have waited while we were down. */
	local_bh_disable();
	napi_schedule(&vn->napi);
	local_bh_enable();
	netif_start_queue(ndev);
	return 0;
}

int vpnet_dp_stop(struct net_device *ndev)
{
	struct vpnet *vn = netdev_priv(ndev);

	netif_tx_disable(ndev);
	napi_disable(&vn->napi);
	return 0;
}

void vpnet_dp_get_stats64(struct net_device *ndev, struct rtnl_link_stats64 *s)
{
	struct vpnet *vn = netdev_priv(ndev);
	const struct vpnet_dp_stats *st = &vn->st.dp;

	s->rx_packets = READ_ONCE(st->rx_packets);
	s->rx_bytes = READ_ONCE(st->rx_bytes);
	s->tx_packets = READ_ONCE(st->tx_packets);
	s->tx_bytes = READ_ONCE(st->tx_bytes);
	s->rx_dropped = READ_ONCE(st->rx_drop_bad) + READ_ONCE(st->rx_drop_too_big) +
			READ_ONCE(st->rx_drop_offload) + READ_ONCE(st->rx_drop_nomem);
	s->rx_length_errors = READ_ONCE(st->rx_drop_too_big);
	/* The length errors and the refused chains that broke the link. */
	s->rx_errors = READ_ONCE(st->rx_drop_too_big) + READ_ONCE(st->rx_bad_desc);
	s->tx_errors = READ_ONCE(st->tx_bad_desc);
	s->tx_dropped = READ_ONCE(st->tx_drop_too_big) + READ_ONCE(st->tx_drop_link_down) +
			READ_ONCE(st->tx_drop_csum);
}

/* ---- attach / detach (process context, vn->lock held) ---------------------- */

static void vpnet_dq_free(struct vpnet_dq *d)
{
	kvfree(d->chains);
	kvfree(d->iov);
	kvfree(d->used);
	d->chains = NULL;
	d->iov = NULL;
	d->used = NULL;
}

/* Arrays for walking a ring of num entries in a region table of nreg. */
static int vpnet_dq_alloc(struct vpnet_dq *d, unsigned int chains, unsigned int num,
			  unsigned int nreg)
{
	d->chain_cap = chains;
	/* As lib/net.c sizes it: any legal chain fits. */
	d->iov_cap = 2 * num * max(nreg, 1u) + 2 * num;
	d->chains = kvcalloc(d->chain_cap, sizeof(*d->chains), GFP_KERNEL);
	d->used = kvcalloc(d->chain_cap, sizeof(*d->used), GFP_KERNEL);
	d->iov = kvcalloc(d->iov_cap, sizeof(*d->iov), GFP_KERNEL);
	if (!d->chains || !d->used || !d->iov) {
		vpnet_dq_free(d);
		return -ENOMEM;
	}
	return 0;
}

void vpnet_dp_init(struct vpnet *vn)
{
	spin_lock_init(&vn->rx.lock);
	spin_lock_init(&vn->tx.lock);
	spin_lock_init(&vn->dp_fail_lock);
	netif_napi_add(vn->ndev, &vn->napi, vpnet_poll);
}

/* Start the data path over vn->vq[0] and vn->vq[1] (both must be there). */
int vpnet_dp_attach(struct vpnet *vn, u64 features, u16 daemon_peer)
{
	struct vp_vq_dev *txq = vn->vq[0], *rxq = vn->vq[1];
	unsigned int nreg = vp_mem_count(vn->vmem);
	struct vpnet_dq *t = &vn->tx, *r = &vn->rx;

	if (!txq || !rxq)
		return -ENODEV;
	vpnet_dp_detach(vn);
	vpnet_dp_take_failure(vn, NULL, 0);
	if (vpnet_dq_alloc(t, vp_vq_dev_num(txq), vp_vq_dev_num(txq), nreg) ||
	    vpnet_dq_alloc(r, min_t(unsigned int, VPNET_RX_BURST, vp_vq_dev_num(rxq)),
			   vp_vq_dev_num(rxq), nreg)) {
		vpnet_dq_free(t);
		return -ENOMEM;
	}
	spin_lock_bh(&t->lock);
	spin_lock(&r->lock);
	vn->features = features;
	vn->db_peer = (u32)daemon_peer << 16;
	t->vq = txq;
	r->vq = rxq;
	t->npend = t->pend_pkts = t->pend_bytes = t->nheld = 0;
	/* No kicks on the receiveq until it runs dry. */
	vp_vq_dev_disable_notify(txq);
	netdev_reset_queue(vn->ndev);
	t->on = r->on = true;
	spin_unlock(&r->lock);
	spin_unlock_bh(&t->lock);
	netif_wake_queue(vn->ndev);
	local_bh_disable();
	napi_schedule(&vn->napi);
	local_bh_enable();
	return 0;
}

/* Stop walking the rings: pending used entries are published first (a STOP
 * answer's indexes then cover every frame written). */
void vpnet_dp_detach(struct vpnet *vn)
{
	spin_lock_bh(&vn->tx.lock);
	/* Held buffers are the newest popped: they go back unused. */
	if (vn->tx.on && vn->tx.nheld && vp_vq_dev_unpop(vn->tx.vq, vn->tx.nheld) < 0)
		vpnet_ring_fail(vn, &vn->tx, 0);
	vn->tx.nheld = 0;
	vpnet_tx_flush(vn, &vn->tx);
	vn->tx.on = false;
	vn->tx.vq = NULL;
	spin_unlock_bh(&vn->tx.lock);
	spin_lock_bh(&vn->rx.lock);
	vn->rx.on = false;
	vn->rx.vq = NULL;
	spin_unlock_bh(&vn->rx.lock);
	vpnet_dq_free(&vn->tx);
	vpnet_dq_free(&vn->rx);
}
