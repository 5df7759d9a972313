/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-pci server: accepts frontends on a Unix socket (or takes a
 * connected one with vp_server_adopt()) and turns each into a vhost-pci
 * device ("device creation" in the vhost-pci design).
 *
 * Frontends speak one of two dialects, told apart by their first message:
 *  - stock vhost-user (QEMU -netdev vhost-user, DPDK virtio-user): the
 *    device is derived from SET_MEM_TABLE, SET_VRING_* and SET_FEATURES;
 *  - native vhost-pci (our client, see client.h): after HELLO the server
 *    asks GET_UUID, GET_MEMORY_INFO, GET_DEVICE_INFO, GET_FEATURE_BITS,
 *    answers with SET_FEATURE_BITS and START.
 *
 * The caller owns the event loop: vp_server_fd() is an epoll fd that becomes
 * readable when the server has work; vp_server_dispatch() does that work
 * without blocking and reports device events through the callback, on the
 * caller's thread. No threads, no locks.
 *
 * A misbehaving frontend breaks its own connection only (logged reason,
 * every fd it sent closed); other devices keep working.
 */
#ifndef VHOSTPCI_SERVER_H
#define VHOSTPCI_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"
#include "uapi.h"
#include "mem.h"
#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VP_SERVER_DEFAULT_CONNECTIONS 32   /* the design's connections=32 */
#define VP_SERVER_DEFAULT_HANDSHAKE_MS 10000
#define VP_SERVER_NO_TIMEOUT (~0u)
#define VP_SERVER_MAX_CONNECTIONS 1024
/* Queue pairs (VIRTIO_NET_F_MQ) and rings a device has at most in this
 * version. A limit of the library, not of any layout: struct vp_device
 * points at its rings, so it can grow without changing the ABI. Which a
 * session really has is the server's max_queue_pairs (dev->nrings). */
#define VP_DEV_MAX_QUEUE_PAIRS 8
#define VP_DEV_MAX_RINGS (2 * VP_DEV_MAX_QUEUE_PAIRS)
#define VP_VIRTIO_ID_NET VIRTIO_ID_NET

enum vp_dialect {
	VP_DIALECT_UNKNOWN = 0,   /* nothing received yet */
	VP_DIALECT_VHOST_USER,
	VP_DIALECT_NATIVE,
};

enum vp_dev_state {
	VP_DEV_CONNECTED = 0,  /* handshake under way */
	VP_DEV_READY,          /* memory, rings, eventfds known; rings started */
	VP_DEV_STOPPED,        /* frontend stopped its rings (reset, shutdown) */
};

/* One region of the frontend's memory. fd stays owned by the server; a
 * backend that needs it dup()s it or receives a copy over a socket. */
struct vp_dev_region {
	uint64_t gpa, size, uaddr, fd_offset;
	uint32_t prot;
	int fd;
};

/*
 * One ring of the frontend device, as the backend sees it (Fig. 4 of the 2016 slides):
 * kick_fd is written by the frontend when it adds buffers, so it wakes the
 * backend (the backend's "call"); call_fd is what the backend writes to
 * interrupt the frontend (the backend's "kick"). -1 = none (polling).
 */
struct vp_dev_ring {
	uint16_t num;
	uint16_t last_avail_idx;
	uint64_t desc, avail, used;              /* guest-physical */
	uint64_t desc_uva, avail_uva, used_uva;  /* as sent by a vhost-user frontend */
	bool addr_set, enabled, started;
	int kick_fd;
	int call_fd;
};

/*
 * A vhost-pci device: read-only for the caller, valid until the
 * VP_EV_DEVICE_REMOVED event for it returns. regions and rings point at
 * nregions and nrings entries owned by whoever made the view (the server,
 * vp_guest), so a copy of the struct shares them and lives no longer; a
 * caller that builds one (a test, a copy with other ring bases) points them
 * at its own arrays. config keeps its array: its bound is that of
 * both wire formats that carry it (VP_PCI_CONFIG_MAX in GET_DEVICE_INFO,
 * VP_INFO_CONFIG_MAX in the info window), not a limit of the library.
 */
struct vp_device {
	uint64_t id;                 /* unique in this process */
	uint32_t type;               /* virtio device id, VP_VIRTIO_ID_NET */
	uint8_t uuid[16];            /* of the frontend VM */
	enum vp_dialect dialect;
	enum vp_dev_state state;
	const char *server_id;
	pid_t peer_pid;
	uid_t peer_uid;
	uint64_t device_features;    /* offered to / by the frontend device */
	uint64_t driver_features;    /* acked by the frontend driver */
	uint64_t protocol_features;  /* vhost-user protocol features in use */
	unsigned nregions;
	const struct vp_dev_region *regions;  /* nregions of them */
	const struct vp_mem *mem;    /* the regions, mapped in this process */
	unsigned nrings;
	const struct vp_dev_ring *rings;      /* nrings of them */
	uint16_t config_len;
	uint8_t config[VP_PCI_CONFIG_MAX];
	unsigned generation;         /* +1 each time the device becomes READY */
};

/*
 * The vhost-pci design's registry (struct vhost_pci_info of struct
 * vhost_pci_dev entries): a snapshot of the devices of a server
 * (vp_server_info()) or of a backend guest (vp_guest_registry()). Opaque: its
 * size follows the devices it holds, not a maximum. Users find a device by
 * its frontend's UUID, or walk it by index. An entry's dev is valid as long
 * as that device is (see struct vp_device); refill the registry after an
 * event to see changes. Threading: one registry, one thread at a time;
 * reading it does not touch the server or guest it came from.
 */
struct vp_pci_dev {
	uint32_t device_type;
	uint64_t device_id;
	const struct vp_device *dev;
};

struct vp_pci_info;

/* An empty registry, or NULL (out of memory). */
VP_API struct vp_pci_info *vp_pci_info_new(void);
/* NULL is fine. The devices it names are not touched. */
VP_API void vp_pci_info_free(struct vp_pci_info *info);
/* Entries in the registry. */
VP_API unsigned vp_pci_info_count(const struct vp_pci_info *info);
/* Entry i (0 <= i < count), or NULL beyond the count. Valid until the
 * registry is refilled or freed. */
VP_API const struct vp_pci_dev *vp_pci_info_get(const struct vp_pci_info *info, unsigned i);
/* The entry whose device's frontend has this UUID, or NULL. */
VP_API const struct vp_pci_dev *vp_pci_info_find(const struct vp_pci_info *info,
						 const uint8_t uuid[16]);

enum vp_event {
	VP_EV_DEVICE_NEW,      /* a frontend connected */
	VP_EV_DEVICE_READY,    /* rings started: a backend may attach */
	VP_EV_DEVICE_CHANGED,  /* while READY: eventfds or enable state replaced */
	VP_EV_DEVICE_STOPPED,  /* rings stopped: a backend must let go of them */
	VP_EV_DEVICE_REMOVED,  /* frontend gone: last chance to look at dev */
};

struct vp_server;
typedef void (*vp_event_fn)(struct vp_server *srv, enum vp_event ev,
			    const struct vp_device *dev, void *opaque);

struct vp_server_config {
	const char *path;          /* Unix socket path; NULL: no listening socket,
				    * sessions come only from vp_server_adopt() */
	const char *id;            /* name for logs and vhost-pci-ctl; default:
				    * path, or "vhost-pci" without one */
	unsigned max_connections;  /* 0: VP_SERVER_DEFAULT_CONNECTIONS */
	mode_t mode;               /* socket file mode; 0: 0600 */
	bool check_uid;            /* only accept peers with SO_PEERCRED uid == allowed_uid */
	uid_t allowed_uid;
	bool have_uuid;            /* UUID given to stock vhost-user frontends */
	uint8_t uuid[16];          /* (otherwise one is generated and logged) */
	uint64_t features;         /* virtio features offered to vhost-user
				    * frontends; 0: VP_SERVER_DEFAULT_FEATURES */
	unsigned handshake_timeout_ms; /* 0: VP_SERVER_DEFAULT_HANDSHAKE_MS;
				    * VP_SERVER_NO_TIMEOUT: none. A connection not
				    * READY in time is dropped, however it trickles
				    * (see server.c for the vhost-user init rule) */
	bool allow_unsealed;       /* accept memory that can shrink (an unsealed
				    * memfd, a tmpfs or hugetlbfs file): the
				    * backend's access to it may then fault; off,
				    * such memory is refused with the reason */
	unsigned stop_timeout_ms;  /* a held GET_VRING_BASE reply or STOP ack
				    * goes anyway after this (logged);
				    * 0: VP_SERVER_DEFAULT_STOP_MS */
	vp_event_fn on_event;
	void *opaque;
	bool use_listen_fd;        /* listen_fd is an AF_UNIX stream socket already
				    * bound and listening (socket activation):
				    * used instead of creating one at path
				    * (path then only names it, and its file is
				    * left alone: its creator removes it). The
				    * server owns it from a successful
				    * vp_server_new() on. */
	int listen_fd;
	unsigned max_queue_pairs;  /* virtio-net queue pairs a frontend may use:
				    * 0 or 1, one pair and no MQ (rings 0, 1);
				    * 2..VP_DEV_MAX_QUEUE_PAIRS: VIRTIO_NET_F_MQ and
				    * the vhost-user protocol feature MQ are
				    * offered, GET_QUEUE_NUM answers it, rings
				    * 0..2N-1 are accepted (a native frontend
				    * announces at most VP_PCI_MAX_RINGS / 2) */
};

#define VP_SERVER_DEFAULT_STOP_MS 2000

/* VERSION_1, vhost-user PROTOCOL_FEATURES, MRG_RXBUF, EVENT_IDX, INDIRECT_DESC */
#define VP_SERVER_DEFAULT_FEATURES \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VP_VU_F_PROTOCOL_FEATURES) |          \
	 (1ull << VIRTIO_NET_F_MRG_RXBUF) | (1ull << VIRTIO_RING_F_EVENT_IDX) |        \
	 (1ull << VIRTIO_RING_F_INDIRECT_DESC))

/*
 * Offload sets a backend can honour across the link, to add to the features
 * offered (vhost-pcid's offloads=csum|tso, docs/protocol.md "Offloads"). A
 * vhost-pci link joins two virtio-net drivers: a bit offered to the frontend
 * must be one the backend's data path honours both ways. CSUM: partial
 * checksums each way (NEEDS_CSUM headers). TSO: CSUM, plus whole TCP frames
 * each way (HOST_TSO4/6 from the frontend, GUEST_TSO4/6 to it, ECN marks).
 */
#define VP_SERVER_OFFLOAD_CSUM \
	((1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_GUEST_CSUM))
#define VP_SERVER_OFFLOAD_TSO                                                          \
	(VP_SERVER_OFFLOAD_CSUM | (1ull << VIRTIO_NET_F_HOST_TSO4) |                    \
	 (1ull << VIRTIO_NET_F_HOST_TSO6) | (1ull << VIRTIO_NET_F_HOST_ECN) |          \
	 (1ull << VIRTIO_NET_F_GUEST_TSO4) | (1ull << VIRTIO_NET_F_GUEST_TSO6) |       \
	 (1ull << VIRTIO_NET_F_GUEST_ECN))

/*
 * Create the server and its listening socket (none if cfg->path is NULL and
 * no cfg->listen_fd is given). A stale socket file (nobody listening) is
 * replaced; a live one gives -EADDRINUSE. -EINVAL for a bad config,
 * -ENAMETOOLONG for a path too long for sockaddr_un, -ENOTSOCK /
 * -EPROTOTYPE for a listen_fd that is not a listening Unix stream socket
 * (it then stays the caller's).
 */
VP_API int vp_server_new(struct vp_server **out, const struct vp_server_config *cfg);

/*
 * Start a frontend session on fd, a connected AF_UNIX stream socket (one end
 * of a socketpair, a socket accepted elsewhere), as if the listener had
 * accepted it: the dialect is told from its first message, the handshake
 * deadline applies, VP_EV_DEVICE_NEW is delivered before this returns. The
 * listener's admission checks (connection limit, uid) are not applied: the
 * caller vouches for the peer. fd is made non-blocking and close-on-exec.
 * 0: the server owns fd (closed when the session ends). On error fd stays
 * the caller's: -EINVAL, -ENOTSOCK, -EPROTOTYPE (not a Unix stream socket),
 * -ENOMEM. Same thread as vp_server_dispatch(); also from an event callback.
 */
VP_API int vp_server_adopt(struct vp_server *srv, int fd);

/* Tell native peers we are going (ERROR message), drop every connection
 * (REMOVED events are delivered), close the socket and unlink its file (if
 * it has one). */
VP_API void vp_server_free(struct vp_server *srv);

/* An epoll fd: readable when vp_server_dispatch() has work. */
VP_API int vp_server_fd(const struct vp_server *srv);

/* Do all pending work without blocking. Returns 0 or a negative errno for a
 * failure of the server itself (not of a peer). */
VP_API int vp_server_dispatch(struct vp_server *srv);

VP_API const char *vp_server_id(const struct vp_server *srv);
VP_API const char *vp_server_path(const struct vp_server *srv); /* NULL: no socket */
VP_API unsigned vp_server_connections(const struct vp_server *srv);
VP_API unsigned vp_server_max_connections(const struct vp_server *srv);

/* Refill the registry with every connected frontend's device (what it held
 * before is dropped). The number of entries, or -ENOMEM (info then empty). */
VP_API int vp_server_info(const struct vp_server *srv, struct vp_pci_info *info);

/* The device with this id, or NULL. */
VP_API const struct vp_device *vp_server_find(const struct vp_server *srv, uint64_t id);

/* Drop one frontend (as if it misbehaved), with a reason for the log; a
 * native peer is sent the reason in ERROR (a backend refusing a device tells
 * the daemon why this way). Safe inside an event callback: the connection
 * then goes when the current dispatch batch ends. */
VP_API int vp_server_drop(struct vp_server *srv, uint64_t id, const char *reason);

/*
 * How many frontends this server refused or dropped with a reason since it
 * was made: connections refused at the door (connection limit, uid),
 * sessions failed for what the frontend sent (a bad message, fd, memory or
 * ring, a missed deadline) and those dropped with vp_server_drop(). A
 * frontend that hangs up is not counted. last (may be NULL): the newest
 * reason, "NAME: REASON" (NAME as in the log, e.g. "net0#7"), or NULL when
 * the count is 0; valid until the next vp_server_dispatch() or drop. Same
 * thread as vp_server_dispatch().
 */
VP_API uint64_t vp_server_refused(const struct vp_server *srv, const char **last);

/*
 * Only inside a VP_EV_DEVICE_STOPPED callback whose stop the frontend waits
 * on: a vhost-user GET_VRING_BASE, or a native STOP(reset) with NEED_REPLY.
 * Defers that reply (and stops reading the connection) until
 * vp_server_release_stop() or stop_timeout_ms, so the frontend learns where
 * to resume (GET_VRING_BASE) or that its device is let go (STOP's ack) only
 * once the backend has stopped using the rings. For a backend that stops
 * asynchronously; one that lets go inside the callback needs no hold (the
 * reply goes after the callback returns). The device's fds and mapping are
 * released when the callback returns, hold or not: dup or map what is still
 * in use. 0, -ENOENT (no such device), -EINVAL (not in such a callback).
 */
VP_API int vp_server_hold_stop(struct vp_server *srv, uint64_t dev_id);

/* Send the held reply now (a GET_VRING_BASE reply's used index is read after
 * the release, so it counts what the backend completed). 0, -ENOENT (no such
 * device), -EINVAL (no reply held: never held, or stop_timeout_ms already
 * answered). Safe inside or outside a callback. */
VP_API int vp_server_release_stop(struct vp_server *srv, uint64_t dev_id);

/*
 * Where ring `ring` of a stopped device stopped, for a frontend that
 * negotiated VIRTIO_F_RING_PACKED: a packed ring keeps no index in memory, so
 * GET_VRING_BASE answers what the backend tells here (position | wrap << 15,
 * vp_net_last_avail()), and until told, the base the frontend started from.
 * Call it from the VP_EV_DEVICE_STOPPED callback, or before releasing a held
 * stop, or for a queue pair no longer live from the VP_EV_DEVICE_CHANGED
 * callback that told it. Split rings need none (their used index is read)
 * and ignore it. 0, -ENOENT (no such device), -EINVAL (device READY with
 * the ring's pair live, ring out of range, or a packed position >= the
 * ring size). Same thread as vp_server_dispatch().
 */
VP_API int vp_server_set_ring_base(struct vp_server *srv, uint64_t dev_id, unsigned ring,
				   uint16_t base);

/*
 * Queue pair `pair` (rings 2 * pair and 2 * pair + 1) of dev is usable: both
 * rings have addresses, run and are enabled. A READY device has pair 0; the
 * others come and go while it stays READY (a frontend enables them with
 * SET_VRING_ENABLE, e.g. `ethtool -L` in a guest), each change delivered as
 * VP_EV_DEVICE_CHANGED: a backend walks only the pairs this names. Pure
 * function of dev, the caller's thread.
 */
VP_API bool vp_device_pair_live(const struct vp_device *dev, unsigned pair);

/* A live look at one ring of a device through its mapped memory. desc is a
 * sample of bounded size for a log or vhost-pci-ctl, not a table to be
 * complete: its bound is part of this struct's layout, and ndesc says how
 * many entries are filled. */
#define VP_RING_STATUS_DESC 8
struct vp_ring_status {
	uint16_t avail_idx;      /* what the frontend driver published */
	uint16_t used_idx;
	uint16_t avail_flags, used_flags;
	unsigned ndesc;          /* descriptors below (heads of the newest avail entries) */
	struct {
		uint16_t head;
		uint64_t addr;
		uint32_t len;
		uint16_t flags;
		bool in_memory;  /* addr..addr+len lies in the region table */
	} desc[VP_RING_STATUS_DESC];
};
/* 0, -ENOENT (no such ring), -ENODATA (not set up), -EOPNOTSUPP (a packed
 * ring: no avail or used index to show), or a fault-safe read's error. */
VP_API int vp_device_ring_status(const struct vp_device *dev, unsigned ring,
				 struct vp_ring_status *st);

/* Names for logs and JSON. */
VP_API const char *vp_dialect_name(enum vp_dialect d);
VP_API const char *vp_dev_state_name(enum vp_dev_state s);
VP_API const char *vp_event_name(enum vp_event ev);
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" into buf (>= 37 bytes). */
VP_API void vp_uuid_format(const uint8_t uuid[16], char *buf);
/* Parse that form; 0 or -EINVAL. */
VP_API int vp_uuid_parse(const char *s, uint8_t uuid[16]);

#ifdef __cplusplus
}
#endif
#endif
