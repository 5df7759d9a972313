/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Ports: one network port of a (userspace) VM, either side of a vhost-pci
 * link, with the link policy the VM would otherwise write itself.
 *
 *  - A BACKEND port is a vp_server listening on a socket. Every device that
 *    becomes READY gets a vp_net ("link", numbered 0..max_links-1);
 *    STOPPED and REMOVED let go of it. A device the port cannot drive (full,
 *    not virtio-net, features) is refused with the reason (vp_server_drop()),
 *    so its sender can offer it again; a link that frees up takes the next.
 *  - A backend port with guest_pci runs INSIDE a backend VM: its links are
 *    the vhost-pci devices of the guest's own PCI tree (guestdev.h), one
 *    link per device, each keeping its link number until it is removed.
 *    Poll and adaptive modes only (irq: -ENOTSUP, see guestdev.h).
 *  - A PEER21 port is one side of a symmetric 2.1 pair (net21.h,
 *    docs/window21.md): a vp_net21 over a window from a pair broker at path
 *    (joined; rejoined when the broker goes away), or from the broker the
 *    port runs itself (pair21_serve). One link, number 0; a window the
 *    other peer broke is reset (a new epoch) until it behaves. With
 *    guest_pci, the window is the 2.1 slot of this QEMU guest instead
 *    (found in sysfs, looked for again while there is none).
 *  - A FRONTEND port is a vp_netfe in the caller's RAM, announced to a
 *    vhost-pci server (native protocol) or to a stock vhost-user backend. A
 *    lost connection is re-announced after a backoff; frames the backend
 *    delivered before it went are drained first (state DRAIN).
 *
 * All sides have the same calls; a frontend or 2.1 port has one link, number 0.
 * The data path calls never block and never allocate; a broken ring takes
 * its link down (logged, counted) and the port reconnects or waits for the
 * next device by itself, driven by vp_port_control().
 *
 * Sleeping: put ports in a vp_waitset (waitset.h), with the caller's own fds.
 *
 * Threading: a port belongs to one thread (the caller's loop); no call
 * blocks except vp_port_free() (a frontend lets its peer take what it
 * queued, up to 1 s) and a vhost-user frontend's connection attempts in
 * vp_port_new() and vp_port_control() (the stock vhost-user handshake is
 * synchronous: up to 5 s against a backend that accepts and stays silent).
 */
#ifndef VHOSTPCI_PORT_H
#define VHOSTPCI_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "net.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A backend port serves what its server admits. */
#define VP_PORT_MAX_LINKS VP_SERVER_DEFAULT_CONNECTIONS

enum vp_port_side { VP_PORT_BACKEND = 1, VP_PORT_FRONTEND, VP_PORT_PEER21 };

/*
 * Link state. A backend port is UP while any link is up, else DOWN.
 * A frontend port: DOWN (connecting, or waiting to retry), HANDSHAKE
 * (native: connected, not started yet), UP, DRAIN (connection gone, frames
 * still in our RX ring: the receive calls return them, then the port goes
 * DOWN and reconnects).
 */
enum vp_port_state { VP_PORT_DOWN = 0, VP_PORT_HANDSHAKE, VP_PORT_UP, VP_PORT_DRAIN };

struct vp_port_config {
	enum vp_port_side side;
	const char *name;          /* for logs (up to 15 characters kept) */
	const char *path;          /* backend: socket to listen on; frontend: to
				    * connect to (copied) */
	enum vp_net_mode mode;     /* how a vp_waitset sleeps on this port */

	/* backend */
	unsigned max_links;        /* devices driven at once, 0 or over
				    * VP_PORT_MAX_LINKS: VP_PORT_MAX_LINKS; more
				    * are refused with the reason */
	bool allow_unsealed;       /* accept frontend memory that can shrink */
	bool guest_pci;            /* backend inside a backend VM: devices found in
				    * sysfs_root, path unused (may be NULL). A 2.1
				    * peer: our half is the PCI slot a QEMU guest
				    * was given (guestdev.h, vp_guest21): irq needs
				    * .0's MSI-X through VFIO, adaptive polls without
				    * it; path unused */
	const char *sysfs_root;    /* NULL: VP_GUEST_SYSFS_DEFAULT */
	bool guest_uuid_set;       /* guest_pci: only the frontend whose UUID is
				    * uuid (below) */

	/* 2.1 peer */
	bool pair21_serve;         /* run the pair broker at path ourselves (and
				    * take one half); else join the broker there.
				    * ring: descriptors per direction (0: 256) */

	/* both: backend, features accepted from frontends (0: VP_NET_FEATURES
	 * and VIRTIO_F_RING_PACKED);
	 * frontend, features offered (0: VP_NETFE_DEFAULT_FEATURES) */
	uint64_t features;

	/* frontend */
	bool vhost_user;           /* path is a stock vhost-user backend */
	void *ram;                 /* the VM's RAM (see struct vp_netfe_config) */
	uint64_t ram_size;
	int ram_fd;
	uint64_t ram_offset;       /* where the port may lay out its rings */
	uint16_t ring;             /* virtqueue size, 0: library default */
	uint8_t mac[6];
	uint8_t uuid[16];
	int connect_timeout_ms;    /* vp_port_control() fails with -ETIMEDOUT if
				    * the link never came up within this long */
	uint32_t rx_buf_size;      /* bytes per RX buffer and TX slot incl. the
				    * header, 0: 2048 (see vp_netfe_config) */

	/* both: interrupt moderation of every link (net.h, struct
	 * vp_net_coalesce; zero: off, a kick per buffer) */
	struct vp_net_coalesce coalesce;
	/* backend (server) and frontend: virtio-net queue pairs (MQ). 0 or 1:
	 * one. A backend offers that many (vp_server_config.max_queue_pairs)
	 * and drives each live pair of a link; a frontend has that many
	 * (vp_netfe_config.queue_pairs, at most VP_NETFE_MAX_QUEUE_PAIRS) and
	 * uses them if the peer takes MQ, else pair 0 only. */
	unsigned queue_pairs;
};

struct vp_port;

/*
 * Create a port. A backend listens at once; a frontend makes its first
 * connection attempt (a failure is retried from vp_port_control()).
 * Returns 0, or a negative errno with the reason logged (e.g. the socket
 * cannot be bound, RAM too small for the rings).
 */
VP_API int vp_port_new(struct vp_port **out, const struct vp_port_config *cfg);

/*
 * Close the port: a frontend that is up lets the device take what it queued
 * (up to 1 s) and says goodbye (STOP or vhost-user GET_VRING_BASE); a
 * backend tells its native peers and lets every link go. Every fd it
 * opened is closed. NULL is fine.
 */
VP_API void vp_port_free(struct vp_port *p);

/*
 * Serve the control side without blocking: server or client messages,
 * reconnects, links whose ring broke. Call it when a vp_waitset wait woke
 * (or returned early), and at least every few milliseconds while busy.
 * Returns 0, or a negative errno for a fatal error (the server failed; a
 * frontend whose first link did not come up within connect_timeout_ms:
 * -ETIMEDOUT); the reason is in vp_port_error().
 */
VP_API int vp_port_control(struct vp_port *p);

/* ---- state (accessors: the port's structure is its own) ---- */

VP_API enum vp_port_side vp_port_side(const struct vp_port *p);
VP_API const char *vp_port_name(const struct vp_port *p);
VP_API enum vp_port_state vp_port_state(const struct vp_port *p);
/* Data can move (frontend UP, or a backend with a link up). */
VP_API bool vp_port_up(const struct vp_port *p);
/* Links up now: a backend's count; a frontend's 0 or 1. */
VP_API unsigned vp_port_nlinks_up(const struct vp_port *p);
/* Link numbers are 0..vp_port_max_links()-1 (a frontend: 1). */
VP_API unsigned vp_port_max_links(const struct vp_port *p);
VP_API bool vp_port_link_up(const struct vp_port *p, int link);
/* The server's device id behind a backend link that is up, or -ENOENT. */
VP_API int vp_port_link_device(const struct vp_port *p, int link, uint64_t *id);
/* Take a backend link down and drop its device, telling its sender why
 * (e.g. a switch that has no room for one more). -ENOENT if not up. */
VP_API int vp_port_drop_link(struct vp_port *p, int link, const char *why);
/* The last error (failed connect, handshake, fatal control error), or "". */
VP_API const char *vp_port_error(const struct vp_port *p);
/* Why the link last went down, or "". */
VP_API const char *vp_port_down_reason(const struct vp_port *p);
/* Negotiated virtio features of the (first) link that is up; 0 if none. */
VP_API uint64_t vp_port_features(const struct vp_port *p);
/* Those of one link (a backend's links each have their own frontend); 0 if
 * it is not up. */
VP_API uint64_t vp_port_link_features(const struct vp_port *p, int link);

struct vp_port_counters {
	uint64_t link_ups, link_downs;
	uint64_t refused;          /* backend: devices refused (full, unusable) */
};
VP_API void vp_port_counters(const struct vp_port *p, struct vp_port_counters *out);
/* Data path totals, links that went away (and frontend resets) included. */
VP_API void vp_port_stats(const struct vp_port *p, struct vp_net_stats *out);

/* ---- data path ----
 * Counts as vp_net_* / vp_netfe_*: the number of packets, 0 when no link is
 * up (or the link named is not), or a negative errno (the link's ring
 * broke: it is taken down, the reason logged).
 */

/* Receive from any link (backend: round robin); *link gets the link. */
VP_API int vp_port_rx(struct vp_port *p, struct vp_pkt *pkts, unsigned n, int *link);
/* Receive from one link. -EINVAL for a link number out of range. */
VP_API int vp_port_rx_link(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n);
/* Send on a link; -1: the first link that is up. flags: VP_NET_TX_*. */
VP_API int vp_port_tx(struct vp_port *p, int link, const struct vp_pkt *pkts, unsigned n,
		      unsigned flags);

/*
 * Multiqueue (queue_pairs > 1). vp_port_rx() receives from every live pair
 * of every link; vp_port_tx(), the zero-copy calls and rx_borrow use pair 0.
 * These name a pair: an application spreads flows over the pairs itself
 * (e.g. a hash of the flow -> pair, as RSS would). vp_port_queue_pairs():
 * the pairs the link's device has (1 without MQ, 0 if the link is down);
 * some may be disabled by the peer at any time (then -ENODEV below, until
 * enabled again). rx/tx_queue: counts as vp_port_rx/tx, -ENODEV for a pair
 * not live, -EINVAL for a link out of range. queue_stats: that pair's
 * counters while it is live (0), else -ENODEV. A 2.1 port has pair 0 only.
 */
VP_API unsigned vp_port_queue_pairs(const struct vp_port *p, int link);
VP_API int vp_port_rx_queue(struct vp_port *p, int link, unsigned pair, struct vp_pkt *pkts,
			    unsigned n);
VP_API int vp_port_tx_queue(struct vp_port *p, int link, unsigned pair,
			    const struct vp_pkt *pkts, unsigned n, unsigned flags);
VP_API int vp_port_queue_stats(const struct vp_port *p, int link, unsigned pair,
			       struct vp_net_stats *out);

/*
 * Zero copy. tx_reserve lends buffers of a link (-1: the first one up; a
 * frontend: our TX slots; a backend: the frontend's RX buffers), tx_commit
 * sends the first n of them (see vp_net_tx_reserve(), vp_netfe_tx_reserve()).
 * Receiving without a copy of our own: a frontend borrows its RX buffers
 * (rx_borrow / rx_release, see vp_netfe_rx_borrow(); -ENOTSUP on a
 * backend, whose receive copies once); a backend receives straight into
 * buffers another port lent (rx_into, see vp_net_rx_into(); -ENOTSUP on a
 * frontend). rx_pending: frames waiting on a backend link (upper bound).
 * tx_forward sends borrowed frames back out of their RX buffers, no copy
 * (see vp_netfe_tx_forward(); -ENOTSUP but on a frontend).
 */
VP_API int vp_port_tx_reserve(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n);
VP_API int vp_port_tx_commit(struct vp_port *p, const struct vp_pkt *pkts, unsigned n);
VP_API int vp_port_rx_borrow(struct vp_port *p, struct vp_pkt *pkts, unsigned n);
VP_API void vp_port_rx_release(struct vp_port *p);
VP_API int vp_port_tx_forward(struct vp_port *p, const struct vp_pkt *pkts, unsigned n);
VP_API int vp_port_rx_into(struct vp_port *p, int link, struct vp_pkt *pkts, unsigned n);
VP_API unsigned vp_port_rx_pending(struct vp_port *p, int link);

/*
 * Test facility, not for applications: make this frontend port hostile, to
 * test that a backend survives one (vp-vm --test-bad-desc). Posts one TX
 * chain a device must refuse and kicks: RANGE, a descriptor whose address is
 * outside the frontend's memory table; LOOP, a descriptor whose next is
 * itself; LEN, a buffer in our RAM whose length runs past its end. The link
 * stays up on our side (the backend breaks its device). HDR: not a bad chain
 * but VP_PORT_TEST_BAD_HDRS good 60-byte frames whose virtio-net headers a
 * device must drop (lib/netfe.c's bad_hdrs[]): the backend gives them back
 * and its link goes on. 0; -ENOTSUP on a backend or 2.1 port, -ENOTCONN while
 * the link is down, -ENOSPC without enough free TX slots, -EINVAL for another
 * kind. Same thread as the data path.
 */
enum vp_port_test_bad {
	VP_PORT_TEST_BAD_RANGE = 1,
	VP_PORT_TEST_BAD_LOOP,
	VP_PORT_TEST_BAD_LEN,
	VP_PORT_TEST_BAD_HDR,
};
#define VP_PORT_TEST_BAD_HDRS 6u
VP_API int vp_port_test_post_bad(struct vp_port *p, enum vp_port_test_bad kind);

#ifdef __cplusplus
}
#endif
#endif
