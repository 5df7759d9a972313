/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pci-net to vhost-pci-net (2.1 of the vhost-pci design, Fig. 3 of the
 * RFC 2.0 thread): two symmetric peers over an intermediate window
 * (docs/window21.md, layout in window21.h). Each peer writes only its own
 * output section; the other's is mapped read-only through a read-only fd.
 *
 *  - vp_window21_*: the allocator's side. Creates the header and the two
 *    sections (sealed memfds) and the four eventfds, and hands each peer its
 *    set of fds: its section read-write, the header and the other's section
 *    reopened O_RDONLY.
 *  - vp_net21_*: one peer. TX copies each frame into our own buffers and
 *    publishes it; RX copies each frame out of the other's section into the
 *    caller's buffer and checks the copy (the one copy of RX). Everything in
 *    the other's section is hostile: a violation breaks the link (-EIO, the
 *    reason in vp_net21_broken()) and never reads outside the window.
 *
 * Threading: one object, one thread. No call blocks but vp_net21_wait().
 * The data path never allocates.
 */
#ifndef VHOSTPCI_NET21_H
#define VHOSTPCI_NET21_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "net.h"
#include "window21.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one peer is given: its own copies, the receiver closes them. */
struct vp_net21_fds {
	unsigned peer;        /* 0 or 1: my row in the section table */
	int header_fd;        /* read-only */
	int my_fd;            /* my section, read-write */
	int peer_fd;          /* the other's section, read-only */
	int rx_fd, tx_fd;     /* eventfds I wait on: frames for me; my slots freed */
	int peer_rx_fd, peer_tx_fd; /* the other's, which I write */
};

/* Close every fd of the set that is open (>= 0) and mark it -1. */
VP_API void vp_net21_fds_close(struct vp_net21_fds *f);

/* ---- the allocator ---- */

struct vp_window21_config {
	uint16_t ring_num;    /* per direction, power of two; 0: 256 */
	uint32_t slot_size;   /* bytes per buffer incl. the 12-byte header; 0: 2048 */
};

struct vp_window21;

/*
 * Create a window for a pair: three sealed memfds (the header also sealed
 * against writes) and four eventfds. -EINVAL for a bad geometry, or a
 * system call's error.
 */
VP_API int vp_window21_new(struct vp_window21 **out, const struct vp_window21_config *cfg);
VP_API void vp_window21_free(struct vp_window21 *w);
/* Fresh fds for peer (0 or 1), the caller's to close: its section
 * read-write, the header and the other's section reopened O_RDONLY (see
 * docs/window21.md 5), the eventfds duplicated. -EINVAL, or an errno. */
VP_API int vp_window21_peer_fds(const struct vp_window21 *w, unsigned peer,
				struct vp_net21_fds *out);
/* The window's size in bytes (header and both sections). */
VP_API uint64_t vp_window21_size(const struct vp_window21 *w);

/* ---- the pair broker: a socket that hands out a window's two halves ----
 *
 * Native protocol (docs/protocol.md, VHOST_PCI_PAIR21_JOIN): a peer
 * connects and sends PAIR21_JOIN; the broker answers with the peer id it
 * got and that peer's seven fds, and keeps the connection: its end is how
 * the broker frees the slot (a peer that comes back gets its section
 * again). A third peer, or anything but a JOIN, gets ERROR with the reason.
 */

struct vp_pair21;

/*
 * Listen on path (an existing socket file is replaced) with a new window
 * (cfg as vp_window21_new()). -errno, logged.
 */
VP_API int vp_pair21_new(struct vp_pair21 **out, const char *path,
			 const struct vp_window21_config *cfg);
VP_API void vp_pair21_free(struct vp_pair21 *b);
/* One fd to poll (POLLIN) for everything the broker serves: an epoll fd. */
VP_API int vp_pair21_fd(const struct vp_pair21 *b);
/* Serve what is there without blocking. 0, or a fatal -errno. */
VP_API int vp_pair21_control(struct vp_pair21 *b);
/* Peer slot i (0, 1) is held by a connection that joined. */
VP_API bool vp_pair21_joined(const struct vp_pair21 *b, unsigned i);
/* Joins served and refused (pair full, bad messages) so far. */
VP_API void vp_pair21_counts(const struct vp_pair21 *b, uint64_t *joins, uint64_t *refused);

/*
 * The broker's own process as a peer (vp-vm serving a pair itself): the
 * first free slot, held until vp_pair21_free(), and its fds as a JOIN
 * would give them. -EBUSY if both are held.
 */
VP_API int vp_pair21_join_local(struct vp_pair21 *b, struct vp_net21_fds *fds);

/*
 * A peer's side: connect to a broker at path, JOIN, and receive the fds
 * (the caller's: vp_net21_fds_close()). *sock is the connection, kept open
 * for as long as the peer uses the window (the caller closes it; it reads
 * as closed when the broker goes away). Blocks up to timeout_ms. -errno,
 * -ECONNREFUSED with the broker's reason logged when it refuses.
 */
VP_API int vp_pair21_join(const char *path, int timeout_ms, struct vp_net21_fds *fds,
			  int *sock);

/* ---- a peer ---- */

struct vp_net21;

/*
 * Attach as fds->peer: check the header and every fd (docs/window21.md 6),
 * map the header and the other's section read-only and ours read-write,
 * start a new epoch in our section and kick the other. The fds are
 * duplicated: the caller still closes its own. -EINVAL with the reason
 * logged for anything refused, or a system call's error.
 */
VP_API int vp_net21_new(struct vp_net21 **out, const struct vp_net21_fds *fds,
			enum vp_net_mode mode);
/*
 * A window the caller has mapped already: a QEMU guest's PCI BARs
 * (guestdev.h, vp_guest21), where there are no fds to check or eventfds to
 * write. The header is checked as by vp_net21_new() (on a copy); each
 * mapping must hold its section as the header sizes it. The other's
 * section must be mapped so that we cannot write it (in a guest: QEMU's
 * readonly=on behind it); nothing here writes it either way. notify(opaque,
 * tx) wakes the other peer (its TX side if tx, else its RX side) where
 * vp_net21_new() would write an eventfd; it must not block. Poll mode, or
 * irq/adaptive with wake_fds (-ENOTSUP without: nothing to sleep on); a caller
 * that takes the other's wake-ups as interrupts itself (the guest kernel
 * driver) uses poll mode and vp_net21_arm(). The mappings stay the caller's
 * (vp_net21_free() does not unmap them). -EINVAL with the reason logged.
 */
typedef void (*vp_net21_notify_fn)(void *opaque, bool tx);

struct vp_net21_map {
	unsigned peer;              /* 0 or 1: my row in the section table */
	const void *header;
	uint64_t header_len;
	void *my;                   /* my section, read-write */
	uint64_t my_len;
	const void *other;          /* the other's section, read-only */
	uint64_t other_len;
	vp_net21_notify_fn notify;
	void *opaque;
	/* wake_fds: rx_fd and tx_fd are eventfds the other's doorbells make
	 * readable, vector 0 (frames for us) and 1 (our slots freed), e.g. the
	 * doorbell function's MSI-X through VFIO: what mode irq or adaptive
	 * sleeps on (without them: poll only). Taken over whenever wake_fds is
	 * set (closed by vp_net21_free(), or here on failure). */
	bool wake_fds;
	int rx_fd, tx_fd;
};

VP_API int vp_net21_new_mapped(struct vp_net21 **out, const struct vp_net21_map *m,
			       enum vp_net_mode mode);

/* Detach (state 0 in our section, the other is kicked), unmap, close. NULL
 * is fine. */
VP_API void vp_net21_free(struct vp_net21 *n);

/*
 * Start over in our section (a new epoch), as a restarted peer would: what
 * was outstanding is dropped. Also how a broken link is retried. 0.
 */
VP_API int vp_net21_reset(struct vp_net21 *n);

/* Both peers acknowledged each other's epoch (docs/window21.md 4). Looks at
 * the other's section: a resync it asks for is done here. */
VP_API bool vp_net21_up(struct vp_net21 *n);

/* The largest packet (without the net header) a slot holds: of the other's
 * section if rx (an RX buffer of this size never drops a frame as too big),
 * of ours if not (larger ones are dropped by vp_net21_tx_burst()). From the
 * checked header copy. Any thread. */
VP_API uint32_t vp_net21_frame_max(const struct vp_net21 *n, bool rx);

/*
 * Copy up to count frames (pkts[i].hdr, then pkts[i].len bytes at data)
 * into our buffers and publish them. Returns the number consumed (sent, or
 * dropped with VP_NET_TX_DROP when no slot is free; a frame larger than a
 * slot less the header is always dropped and counted), 0 while the link is
 * not up, -EIO once broken.
 */
VP_API int vp_net21_tx_burst(struct vp_net21 *n, const struct vp_pkt *pkts, unsigned count,
			     unsigned flags);

/*
 * Copy up to count frames out of the other's section into pkts[i].data
 * (capacity pkts[i].len in, length out; hdr filled), checking each on the
 * copy. A frame over its buffer is dropped and counted (rx_drop_too_big).
 * Returns the number received, 0 while not up, -EIO once broken.
 */
VP_API int vp_net21_rx_burst(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count);
/* The same, but a frame over its buffer stops the burst and stays
 * (-EMSGSIZE if it is the first), as vp_net_rx_into(). */
VP_API int vp_net21_rx_into(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count);
/* Frames waiting from the other peer (0 if not up or broken). */
VP_API unsigned vp_net21_rx_pending(struct vp_net21 *n);
/* Frames we published that the other peer has not taken yet (0 if not up
 * or broken): a peer that leaves waits for 0 first. */
VP_API unsigned vp_net21_tx_pending(struct vp_net21 *n);

/*
 * Zero copy TX: lend up to count free slots of our own section
 * (pkts[i].data past the header room, len = slot capacity, hdr zeroed);
 * commit publishes the first count of them in order. Our section is ours
 * alone: what is built there cannot be changed by the other peer. Returns
 * the number lent or committed, 0 while not up, -EIO, or -EINVAL from
 * commit for a count over the reservation, a pointer not lent or a len over
 * capacity (nothing is sent and the reservation is void).
 */
VP_API int vp_net21_tx_reserve(struct vp_net21 *n, struct vp_pkt *pkts, unsigned count);
VP_API int vp_net21_tx_commit(struct vp_net21 *n, const struct vp_pkt *pkts, unsigned count);

/*
 * Sleeping, as vp_net (net.h): wait is vp_waitset_wait() over this one
 * object; rx_fd wakes when frames arrived, tx_fd when slots were freed; arm
 * (> 0: work is there, 0 armed, -EIO broken) and disarm for a caller's own
 * loop. While the link is not up there is no work: the other peer's attach
 * and acknowledgement kick both our eventfds.
 */
VP_API int vp_net21_wait(struct vp_net21 *n, bool want_rx, bool want_tx, int timeout_ms);
VP_API int vp_net21_rx_fd(const struct vp_net21 *n);
VP_API int vp_net21_tx_fd(const struct vp_net21 *n);
VP_API int vp_net21_arm(struct vp_net21 *n, bool want_rx, bool want_tx);
VP_API void vp_net21_disarm(struct vp_net21 *n);

VP_API const struct vp_net_stats *vp_net21_stats(const struct vp_net21 *n);
/* The reason the link broke, or NULL. */
VP_API const char *vp_net21_broken(const struct vp_net21 *n);
/* Times the other peer started a new epoch and we resynced. */
VP_API uint64_t vp_net21_resyncs(const struct vp_net21 *n);

#ifdef __cplusplus
}
#endif
#endif
