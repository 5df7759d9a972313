/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Networking over vhost-pci (2.0 of the vhost-pci design, RFC 2.0 thread).
 *
 *  - vp_net_*: vhost-pci-net, the BACKEND driver. Attached to a vhost-pci
 *    device, it drives the frontend's virtio-net rings from the device side:
 *    the frontend's RX ring (ring 0, receiveq) is its TX ring and the
 *    frontend's TX ring (ring 1, transmitq) is its RX ring. TX writes each
 *    packet straight into the frontend's RX buffers behind a 12-byte
 *    virtio_net_hdr_v1 (mergeable buffers when negotiated); RX copies each
 *    frontend packet once into the caller's buffer. Nothing in between.
 *
 *  - vp_netfe_*: our own virtio-net FRONTEND driver for userspace VMs (a
 *    process whose RAM is a memfd). It lays its rings and buffers out in that
 *    RAM, and plays the part the guest's stock virtio_net driver plays.
 *
 * Both work in bursts and never allocate on the data path. Threading: one
 * object, one thread. Notification follows Fig. 4 of the 2016 slides: the frontend's
 * kick eventfds wake the backend, the frontend's call eventfds are written by
 * the backend; event-index suppression is honoured both ways.
 */
#ifndef VHOSTPCI_NET_H
#define VHOSTPCI_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "uapi.h"
#include "server.h"
#include "client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* virtio-net queue numbers as the frontend sees them. */
#define VP_NET_Q_RX 0  /* frontend receiveq: the backend transmits into it */
#define VP_NET_Q_TX 1  /* frontend transmitq: the backend receives from it */

#define VP_NET_HDR_LEN 12u  /* sizeof(struct virtio_net_hdr_v1): VERSION_1 always */
#define VP_NET_MAX_BURST 256u
#define VP_NET_MAX_PKT 65562u  /* 64 KiB GSO packet + Ethernet header room */

/* virtio-net features the data path implements. Offload bits (CSUM,
 * GUEST_CSUM) are carried in the header (struct vp_pkt.hdr) untouched;
 * checksums are not computed. A frontend offers VP_NETFE_DEFAULT_FEATURES
 * unless told otherwise (the server's default set, without offloads). */
#define VP_NET_FEATURES                                                    \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |    \
	 (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) | \
	 (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_GUEST_CSUM))
/* TCP segmentation offloads the data path also carries (headers 1:1, frames
 * up to VP_NET_MAX_PKT; toward a frontend that negotiated GUEST_TSO*, in
 * mergeable buffers), checked on receive by vp_net_hdr_check(). Not in
 * VP_NET_FEATURES: a port or guest device takes them only when its features
 * name them, since its application must take 64 KiB frames and hand the
 * metadata to something that honours it (vp-vm's tap app opts in). */
#define VP_NET_TSO_FEATURES                                                 \
	((1ull << VIRTIO_NET_F_HOST_TSO4) | (1ull << VIRTIO_NET_F_HOST_TSO6) |  \
	 (1ull << VIRTIO_NET_F_HOST_ECN) | (1ull << VIRTIO_NET_F_GUEST_TSO4) |   \
	 (1ull << VIRTIO_NET_F_GUEST_TSO6) | (1ull << VIRTIO_NET_F_GUEST_ECN))
#define VP_NETFE_DEFAULT_FEATURES                                          \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |    \
	 (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC))

/* A packet in local memory, with its offload metadata (the virtio-net
 * header as the sender wrote it; num_buffers is the transport's business). */
struct vp_pkt {
	void *data;
	uint32_t len;  /* TX: packet bytes. RX: in = capacity of data, out = length */
	struct virtio_net_hdr_v1 hdr;
};

enum vp_net_mode {
	VP_NET_POLL = 0,    /* never sleep: busy-poll */
	VP_NET_IRQ,         /* sleep in poll() on the eventfds whenever idle */
	VP_NET_ADAPTIVE,    /* poll while busy (yielding), sleep after ~50 us idle */
};

/*
 * Interrupt moderation (coalescing) of a link's wake-ups, both directions
 * (ring-level, with VIRTIO_RING_F_EVENT_IDX; a packed ring or a peer without
 * it: off). frames <= 1: off, a kick per buffer as before (the default).
 * Else a busy queue asks its peer to kick only after up to `frames` buffers
 * (the mark follows the rate measured between two sleeps: rate x usecs / 2,
 * none below 4, so at low load and in a ping-pong it is 1 again)
 * and sleeps at most `usecs` while fewer are there: no batch is stranded,
 * whatever the peer does. An idle queue (nothing taken since its last
 * sleep) kicks on the first buffer and sleeps without a timer. Trades up to
 * usecs of latency per hop under load for fewer wake-ups; the kicks the
 * peer skips when we are awake (event index) are unchanged.
 */
struct vp_net_coalesce {
	unsigned frames;	/* at most VP_NET_COALESCE_MAX_FRAMES */
	unsigned usecs;		/* required when frames > 1; at most VP_NET_COALESCE_MAX_USECS */
};
#define VP_NET_COALESCE_MAX_FRAMES 1024u
#define VP_NET_COALESCE_MAX_USECS 1000000u

struct vp_net_stats {
	uint64_t tx_packets, tx_bytes;   /* delivered into the peer's buffers */
	uint64_t rx_packets, rx_bytes;   /* copied out of the peer's buffers */
	uint64_t tx_drop_no_buf;         /* peer had no (or too few) RX buffers */
	uint64_t tx_drop_too_big;        /* larger than VP_NET_MAX_PKT or the peer's buffers */
	uint64_t rx_drop_too_big;        /* larger than the caller's buffer */
	uint64_t rx_drop_bad;            /* chain shorter than the net header, or a
					  * writable buffer on TX */
	uint64_t rx_drop_offload;        /* a header the negotiated features do not
					  * allow, or inconsistent (vp_net_hdr_check()) */
	uint64_t signals;                /* eventfd writes (or notify hooks) to the peer */
	uint64_t signals_dropped;        /* a signal to the peer that could not be
					  * delivered (its count full, or any error):
					  * never waited for, never retried */
	uint64_t wakeups;                /* returns from a sleep with work */
};

/* tx_burst flags */
#define VP_NET_TX_DROP 0x1u  /* drop (and count) what does not fit instead of
			      * stopping at the first packet that does not */

/*
 * Check the virtio-net header of a frame of len bytes (after the header) from
 * a frontend that negotiated features, as a device must (docs/protocol.md,
 * "Offloads"): flags only NEEDS_CSUM, and only with CSUM, its csum_start +
 * csum_offset + 2 within the frame; gso_type NONE, or TCPV4 / TCPV6 with
 * HOST_TSO4 / HOST_TSO6 (the ECN bit only with HOST_ECN), with NEEDS_CSUM and
 * a gso_size of at least 1 and hdr_len within the frame. 0, or -EPROTO. Pure
 * function, any thread.
 */
VP_API int vp_net_hdr_check(const struct virtio_net_hdr_v1 *h, uint32_t len, uint64_t features);

/* ---- backend: vhost-pci-net ---- */

struct vp_net;

/*
 * Attach to a READY vhost-pci net device. Uses dev->mem, dev->rings[0..1]
 * and dev->driver_features; duplicates the eventfds it needs, so dev may go
 * away afterwards (but the memory mapping must stay: keep the device, or the
 * vp_mem, alive while the backend is). -EINVAL if dev is not a READY net
 * device with VERSION_1, or if a kick or call fd is not an eventfd (logged
 * with its kind), or an error of vp_vq_dev_new(). The eventfds kept are made
 * O_NONBLOCK (the flag is shared with the frontend's copies); a frontend that
 * clears it again later breaks its link.
 */
VP_API int vp_net_new(struct vp_net **out, const struct vp_device *dev,
		      enum vp_net_mode mode);
/*
 * The same for queue pair `pair` of a multiqueue device (VIRTIO_NET_F_MQ:
 * rings 2 * pair and 2 * pair + 1); vp_net_new() is pair 0. Each pair is a
 * vp_net of its own: every call below works on the pair it was made for,
 * queue numbers (VP_NET_Q_*, the notify hook's) are within the pair, and
 * pairs may run on different threads (one object, one thread). -ENOENT: no
 * such pair (pair >= dev->nrings / 2); -ENODEV: the pair is not live
 * (vp_device_pair_live(): a disabled pair is not walked; on the CHANGED
 * event that enables it, attach it then); else as vp_net_new().
 */
VP_API int vp_net_new_queue(struct vp_net **out, const struct vp_device *dev, unsigned pair,
			    enum vp_net_mode mode);
VP_API void vp_net_free(struct vp_net *n);

/*
 * Send up to n packets into the frontend's RX buffers. Returns how many were
 * consumed (delivered, or dropped with VP_NET_TX_DROP), or -EIO if the
 * frontend's ring is broken (the link is then down for good).
 */
VP_API int vp_net_tx_burst(struct vp_net *n, const struct vp_pkt *pkts,
			   unsigned count, unsigned flags);

/*
 * Receive up to count packets the frontend transmitted, copying each into
 * pkts[i].data (capacity pkts[i].len). Returns the number received, or -EIO.
 */
VP_API int vp_net_rx_burst(struct vp_net *n, struct vp_pkt *pkts, unsigned count);

/*
 * The same, into buffers the caller cannot size for any packet (buffers
 * another link lent, e.g. by vp_net_tx_reserve() for an echo, or by
 * vp_netfe_tx_reserve() for a forwarder: the one copy of a hop lands where
 * it is sent from). A packet larger than its pkts[i].len is not dropped:
 * the burst stops before it and it stays in the ring. -EMSGSIZE if that is
 * the first packet (receive it with vp_net_rx_burst() and a big buffer).
 */
VP_API int vp_net_rx_into(struct vp_net *n, struct vp_pkt *pkts, unsigned count);

/* Chains the frontend has made available on its transmit ring and we have
 * not taken: an upper bound of the packets waiting (0 if broken; on a packed
 * ring, its available descriptors, up to VP_NET_MAX_BURST). A relay
 * reserves no more buffers than this, so that what it does not fill need
 * not be given back and walked again. */
VP_API unsigned vp_net_rx_pending(struct vp_net *n);

/*
 * Zero-copy transmit: build packets straight in the frontend's receive
 * buffers. vp_net_tx_reserve() lends up to count of them: pkts[i].data
 * points past the net header room of a buffer in the frontend's RAM,
 * pkts[i].len is its capacity (the buffer's first piece, less the header;
 * a buffer whose first piece holds no more than the header is not lent, and
 * the reservation stops before it), pkts[i].hdr is zeroed. Write each frame,
 * set len and hdr, and vp_net_tx_commit() the first count of them in order;
 * the rest go back to the ring. The frontend can read and write that memory
 * all along (it is its RAM): build there, keep no secrets there.
 * Returns the number lent or committed (0: no buffer posted), -EIO if the
 * ring is broken, -EINVAL from commit if count exceeds the reservation, a
 * data pointer is not the one lent or a len exceeds its capacity (nothing
 * is sent then and the reservation is void). A reservation not committed
 * is given back by the next vp_net_tx_reserve() or vp_net_tx_burst().
 */
VP_API int vp_net_tx_reserve(struct vp_net *n, struct vp_pkt *pkts, unsigned count);
VP_API int vp_net_tx_commit(struct vp_net *n, const struct vp_pkt *pkts, unsigned count);

/*
 * Wait (per the mode) until the frontend sent something (want_rx) or posted
 * RX buffers (want_tx), or timeout_ms passed. Arms notifications with the
 * race check, so no wake-up is lost. Returns > 0 if work may be there, 0 on
 * timeout, or a negative errno. In VP_NET_POLL mode it returns at once.
 * It is vp_waitset_wait() (waitset.h) over this one link.
 */
VP_API int vp_net_wait(struct vp_net *n, bool want_rx, bool want_tx, int timeout_ms);

/*
 * For a caller's own event loop (several links, sockets or TAP fds in one
 * poll/epoll): the eventfds that wake this link, -1 where the frontend gave
 * none (then poll the link). rx_fd: the frontend transmitted; tx_fd: it
 * posted RX buffers. Before sleeping, vp_net_arm(): > 0 means work is
 * already there (do not sleep), 0 armed, -EIO broken. After waking,
 * vp_net_disarm() drains the fds and stops asking for kicks (polling is
 * cheaper while busy). vp_net_wait() is exactly this around one poll().
 */
VP_API int vp_net_rx_fd(const struct vp_net *n);
VP_API int vp_net_tx_fd(const struct vp_net *n);
VP_API int vp_net_arm(struct vp_net *n, bool want_rx, bool want_tx);
VP_API void vp_net_disarm(struct vp_net *n);

/*
 * Moderation (struct vp_net_coalesce): 0, or -EINVAL (out of range, or
 * frames > 1 without usecs). Takes effect at the next arm. After
 * vp_net_arm() returned 0, a caller's own loop must sleep at most
 * vp_net_hold_ns() (-1: no bound needed), then look at the rings again;
 * vp_net_wait() and wait sets do so. Same thread as the data path.
 */
VP_API int vp_net_set_coalesce(struct vp_net *n, const struct vp_net_coalesce *c);
VP_API int64_t vp_net_hold_ns(const struct vp_net *n);

/*
 * Where there is no call eventfd to write (a backend inside a backend VM
 * rings the frontend through a doorbell register, docs/device.md 2.2): fn
 * is called with the frontend's queue number (VP_NET_Q_RX after receive
 * buffers were filled, VP_NET_Q_TX after transmit buffers were returned)
 * instead of the eventfd write, when and only when the event index (or
 * NO_INTERRUPT) says the frontend wants it; counted in signals. fn must not
 * block nor call back into n. NULL: the eventfds again.
 */
typedef void (*vp_net_notify_fn)(void *opaque, unsigned queue);
VP_API void vp_net_set_notify(struct vp_net *n, vp_net_notify_fn fn, void *opaque);

/*
 * The next avail index this link would take on the frontend's queue
 * (VP_NET_Q_RX or VP_NET_Q_TX): where a driver that stops here tells the
 * frontend to resume. Buffers lent by vp_net_tx_reserve() and not committed
 * count as taken: give them back first (vp_net_tx_burst() with count 0).
 */
VP_API uint16_t vp_net_last_avail(const struct vp_net *n, unsigned queue);

VP_API const struct vp_net_stats *vp_net_stats(const struct vp_net *n);
/* acc += s, counter by counter: totals over links that come and go. */
VP_API void vp_net_stats_add(struct vp_net_stats *acc, const struct vp_net_stats *s);
/* The frontend broke a ring rule (reason logged), or shrank the memory we
 * mapped ("frontend memory shrank under us (truncated)": needs the SIGBUS
 * guard, vp_mem_sigbus_guard()); NULL if neither. */
VP_API const char *vp_net_broken(const struct vp_net *n);

/* ---- frontend: our virtio-net driver for userspace VMs ---- */

struct vp_netfe_config {
	void *ram;            /* the VM's RAM, mapped here; guest-physical 0 */
	uint64_t ram_size;
	int ram_fd;           /* its memfd (sent to the server) */
	uint64_t ram_offset;  /* where the driver may lay out rings and buffers */
	uint16_t rx_num;      /* ring sizes; 0 = 256 */
	uint16_t tx_num;
	uint32_t rx_buf_size; /* bytes per RX buffer incl. header; 0 = 2048 */
	uint64_t features;    /* offered and wanted; 0 = VP_NETFE_DEFAULT_FEATURES.
			       * VIRTIO_F_RING_PACKED may be added: the rings
			       * are packed if the backend takes it (a
			       * vhost-user one; the native protocol refuses
			       * it), split otherwise */
	uint8_t mac[6];
	uint8_t uuid[16];
	enum vp_net_mode mode;
	unsigned queue_pairs;  /* 0 or 1: one; up to VP_NETFE_MAX_QUEUE_PAIRS:
				* VIRTIO_NET_F_MQ is offered and each pair gets
				* its rings, buffers and eventfds, one after the
				* other from ram_offset (vp_netfe_queue()) */
};

/* What the native handshake and struct vp_frontend_info carry (rings, and
 * eventfds in one message: VP_MSG_MAX_FDS). */
#define VP_NETFE_MAX_QUEUE_PAIRS (VP_PCI_MAX_RINGS / 2)

struct vp_netfe;

/* Lay out rings and buffers in RAM and create the four eventfds.
 * -ENOSPC if RAM is too small. */
VP_API int vp_netfe_new(struct vp_netfe **out, const struct vp_netfe_config *cfg);
VP_API void vp_netfe_free(struct vp_netfe *fe);

/*
 * Queue pair `pair` of fe: fe itself for 0, NULL past cfg->queue_pairs.
 * Every data call (bursts, reserve, borrow, wait, fds, stats, broken) works
 * on the pair it is given; vp_netfe_info(), _start(), _reset() and _free()
 * take pair 0 and act on all of them (without MQ negotiated, _start()
 * starts pair 0 only and the others answer -ENOTCONN). Pairs may be driven
 * from different threads (one pair, one thread); the handle lives as long
 * as fe.
 */
VP_API struct vp_netfe *vp_netfe_queue(struct vp_netfe *fe, unsigned pair);

/* What to announce to a server (native) or a vhost-user backend. */
VP_API void vp_netfe_info(const struct vp_netfe *fe, struct vp_frontend_info *info);

/* The handshake is done: use the negotiated features, post RX buffers.
 * Features as vp_client_features() or vp_vu_frontend_start() give them (the
 * vhost-user transport bit 30 is ignored). -EINVAL for a feature not offered
 * or without VERSION_1. */
VP_API int vp_netfe_start(struct vp_netfe *fe, uint64_t features);

/* Device reset (link down): forget ring state, recreate the eventfds and
 * rings as a rebooted guest would. Announce again with vp_netfe_info(). */
VP_API int vp_netfe_reset(struct vp_netfe *fe);

VP_API int vp_netfe_tx_burst(struct vp_netfe *fe, const struct vp_pkt *pkts,
			     unsigned count, unsigned flags);
VP_API int vp_netfe_rx_burst(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count);

/*
 * Zero-copy transmit: vp_netfe_tx_reserve() lends up to count free transmit
 * slots (pkts[i].data inside our RAM, pkts[i].len = capacity, 2036 bytes;
 * hdr zeroed); build frames there, set len and hdr, then
 * vp_netfe_tx_commit() the first count of them in order; the rest are
 * freed. Larger frames go through vp_netfe_tx_burst() (which may be called
 * in between: ring order is call order). Returns the number lent or sent,
 * -EIO, -ENOTCONN before start, or -EINVAL from commit for a count over the
 * reservation, a data pointer not lent or a len over capacity (nothing is
 * sent and the reservation is void). The next reserve voids an uncommitted
 * one.
 */
VP_API int vp_netfe_tx_reserve(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count);
VP_API int vp_netfe_tx_commit(struct vp_netfe *fe, const struct vp_pkt *pkts, unsigned count);

/*
 * Zero-copy receive: like vp_netfe_rx_burst(), but pkts[i].data is set to
 * the packet inside its receive buffer (pkts[i].len in is ignored). A packet
 * spanning several buffers (mergeable) is copied into one internal buffer
 * and ends the burst. The packets stay valid, and their buffers unposted,
 * until vp_netfe_rx_release(), the next rx_borrow/rx_burst, a reset or
 * free: release promptly, the device cannot fill what is held.
 */
VP_API int vp_netfe_rx_borrow(struct vp_netfe *fe, struct vp_pkt *pkts, unsigned count);
VP_API int vp_netfe_rx_release(struct vp_netfe *fe);
/*
 * Forward without a copy: send borrowed packets (pkts[i].data as
 * vp_netfe_rx_borrow() set it, len and hdr as the caller wants them, len at
 * most 2036) from their receive buffers, in order; a free transmit slot is
 * posted for receive in each one's place at vp_netfe_rx_release(). Stops at
 * the first packet that cannot go so: not in a held buffer (a multi-buffer
 * packet, one already forwarded), or no free slot; the caller sends the rest
 * another way (vp_netfe_tx_burst() copies them) before releasing. Only with
 * receive buffers of 2048 bytes (rx_buf_size 0 or 2048); otherwise 0.
 * Returns the number sent, -EIO or -ENOTCONN. Threading: as rx_borrow.
 */
VP_API int vp_netfe_tx_forward(struct vp_netfe *fe, const struct vp_pkt *pkts, unsigned count);
/* Wait as vp_net_wait() does (vp_waitset_wait() over this one object):
 * want_rx, packets arrived; want_tx, transmits completed. Before start there
 * are no rings: it naps (up to 10 ms) and returns 0. */
VP_API int vp_netfe_wait(struct vp_netfe *fe, bool want_rx, bool want_tx, int timeout_ms);
/* The same for a caller's own loop: rx_fd is the device's call for the RX
 * queue (packets arrived), tx_fd for the TX queue (transmits completed). */
VP_API int vp_netfe_rx_fd(const struct vp_netfe *fe);
VP_API int vp_netfe_tx_fd(const struct vp_netfe *fe);
VP_API int vp_netfe_arm(struct vp_netfe *fe, bool want_rx, bool want_tx);
VP_API void vp_netfe_disarm(struct vp_netfe *fe);

/* Moderation, as vp_net_set_coalesce() and vp_net_hold_ns() for a backend:
 * the driver asks for the device's call only after up to c->frames used
 * buffers (never more than it has outstanding). Set on pair 0, it applies
 * to every pair of the device. */
VP_API int vp_netfe_set_coalesce(struct vp_netfe *fe, const struct vp_net_coalesce *c);
VP_API int64_t vp_netfe_hold_ns(const struct vp_netfe *fe);
VP_API const struct vp_net_stats *vp_netfe_stats(const struct vp_netfe *fe);
VP_API const char *vp_netfe_broken(const struct vp_netfe *fe);

#ifdef __cplusplus
}
#endif
#endif
