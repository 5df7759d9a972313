/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-pci protocol codec (docs/protocol.md is the specification).
 *
 * Framing is vhost-user's: a 12-byte little-endian header {request, flags,
 * size}, then `size` payload bytes, with file descriptors as SCM_RIGHTS on
 * the same sendmsg(). One socket carries either stock vhost-user requests
 * (what QEMU's -netdev vhost-user and DPDK virtio-user send) or the native
 * vhost-pci dialect (requests VP_PCI_*), told apart by the first message.
 *
 * Decode and encode are pure functions over bytes and fd numbers: no socket,
 * no allocation, no global state, so they are unit-tested and fuzzed alone.
 * Every message type is described once, in one table (lib/proto.c), with its
 * payload layout, the fds it may carry and its direction.
 *
 * This codec assumes a little-endian host (checked at compile time); the
 * payload structs below are the wire layouts.
 */
#ifndef VHOSTPCI_PROTO_H
#define VHOSTPCI_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VP_MSG_HDR_SIZE     12u
#define VP_MSG_MAX_PAYLOAD  4096u  /* larger sizes are rejected before reading */
#define VP_MSG_MAX_FDS      8u     /* per message, as in vhost-user */

/* Header flags. */
#define VP_MSG_VERSION_MASK 0x3u
#define VP_MSG_VERSION      0x1u
#define VP_MSG_REPLY        0x4u
#define VP_MSG_NEED_REPLY   0x8u

/* --- vhost-user requests (front-end -> back-end), numbered as in QEMU --- */
enum {
	VP_VU_GET_FEATURES = 1,
	VP_VU_SET_FEATURES = 2,
	VP_VU_SET_OWNER = 3,
	VP_VU_RESET_OWNER = 4,
	VP_VU_SET_MEM_TABLE = 5,
	VP_VU_SET_LOG_BASE = 6,
	VP_VU_SET_LOG_FD = 7,
	VP_VU_SET_VRING_NUM = 8,
	VP_VU_SET_VRING_ADDR = 9,
	VP_VU_SET_VRING_BASE = 10,
	VP_VU_GET_VRING_BASE = 11,
	VP_VU_SET_VRING_KICK = 12,
	VP_VU_SET_VRING_CALL = 13,
	VP_VU_SET_VRING_ERR = 14,
	VP_VU_GET_PROTOCOL_FEATURES = 15,
	VP_VU_SET_PROTOCOL_FEATURES = 16,
	VP_VU_GET_QUEUE_NUM = 17,
	VP_VU_SET_VRING_ENABLE = 18,
	VP_VU_SEND_RARP = 19,
	VP_VU_NET_SET_MTU = 20,
	VP_VU_SET_BACKEND_REQ_FD = 21,
	VP_VU_GET_CONFIG = 24,
	VP_VU_SET_CONFIG = 25,
	VP_VU_RESET_DEVICE = 34,
	VP_VU_GET_MAX_MEM_SLOTS = 36,
	VP_VU_ADD_MEM_REG = 37,
	VP_VU_REM_MEM_REG = 38,
	VP_VU_SET_STATUS = 39,
	VP_VU_GET_STATUS = 40,
};

/* vhost-user feature and protocol-feature bits we use. */
#define VP_VU_F_PROTOCOL_FEATURES 30
#define VP_VU_PROTOCOL_F_MQ 0
#define VP_VU_PROTOCOL_F_LOG_SHMFD 1
#define VP_VU_PROTOCOL_F_RARP 2
#define VP_VU_PROTOCOL_F_REPLY_ACK 3
#define VP_VU_PROTOCOL_F_MTU 4
#define VP_VU_PROTOCOL_F_BACKEND_REQ 5
#define VP_VU_PROTOCOL_F_CONFIG 9
#define VP_VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VP_VU_PROTOCOL_F_STATUS 16

/* SET_VRING_KICK/CALL/ERR u64: bits 0-7 ring index, bit 8 = no fd (polling). */
#define VP_VU_VRING_IDX_MASK 0xffu
#define VP_VU_VRING_NOFD     0x100u

/* --- native vhost-pci requests --- */
#define VP_PCI_BASE 0x100u
enum {
	VP_PCI_HELLO = VP_PCI_BASE + 1,           /* frontend -> server, replied */
	VP_PCI_GET_UUID = VP_PCI_BASE + 2,        /* server -> frontend, replied */
	VP_PCI_GET_MEMORY_INFO = VP_PCI_BASE + 3, /* server -> frontend, reply has fds */
	VP_PCI_GET_DEVICE_INFO = VP_PCI_BASE + 4, /* server -> frontend, reply has fds */
	VP_PCI_GET_FEATURE_BITS = VP_PCI_BASE + 5,/* server -> frontend, replied */
	VP_PCI_SET_FEATURE_BITS = VP_PCI_BASE + 6,/* server -> frontend, replied (ack) */
	VP_PCI_START = VP_PCI_BASE + 7,           /* server -> frontend: device live */
	VP_PCI_STOP = VP_PCI_BASE + 8,            /* frontend -> server: device gone/reset */
	VP_PCI_ERROR = VP_PCI_BASE + 9,           /* either way, then the sender closes */
	VP_PCI_PAIR21_JOIN = VP_PCI_BASE + 10,    /* 2.1 peer -> pair broker, reply has
						   * the window's fds (docs/window21.md) */
	VP_PCI_RING_BASE = VP_PCI_BASE + 11,      /* server -> frontend, before a STOP ack
						   * of a packed device: where one ring
						   * stopped (minor >= 1) */
};

/* PAIR21_JOIN's reply: u64 peer id, and the fds of struct vp_net21_fds in
 * this order: header, own section, other's section, rx, tx, other's rx,
 * other's tx. */
#define VP_PCI_PAIR21_NFDS 7u

#define VP_PCI_MAGIC 0x49435056u   /* "VPCI" as little-endian bytes */
#define VP_PCI_VERSION_MAJOR 1
#define VP_PCI_VERSION_MINOR 1
/* The first minor that carries packed rings (VIRTIO_F_RING_PACKED): ring
 * positions as position | wrap << 15, RING_BASE before a STOP ack. Neither
 * side negotiates the bit with a peer of a lower minor. */
#define VP_PCI_MINOR_PACKED 1
/* Bounds of the native protocol's messages (GET_MEMORY_INFO and
 * GET_DEVICE_INFO replies below): the arrays sized by them are wire layout,
 * which grows only with a new protocol version. */
#define VP_PCI_MAX_REGIONS 8
#define VP_PCI_MAX_RINGS 4
#define VP_PCI_CONFIG_MAX 64

/* Ring flags in GET_DEVICE_INFO. */
#define VP_PCI_RING_ENABLED 0x1u
#define VP_PCI_RING_KICKFD  0x2u   /* a kick eventfd follows for this ring */
#define VP_PCI_RING_CALLFD  0x4u   /* a call eventfd follows for this ring */

/* STOP reasons. */
#define VP_PCI_STOP_RESET    0u  /* device reset (guest reboot): HELLO follows later */
#define VP_PCI_STOP_SHUTDOWN 1u  /* going away */

/* --- payloads (wire layout, little-endian) --- */
struct vp_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vp_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc;
	uint64_t used;   /* NB: used before avail, as on the wire */
	uint64_t avail;
	uint64_t log;
};

struct vp_mem_region_wire {
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;
	uint64_t mmap_offset;
};

#define VP_VU_MAX_REGIONS 8
struct vp_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vp_mem_region_wire regions[VP_VU_MAX_REGIONS];
};

struct vp_log_base {
	uint64_t size;
	uint64_t offset;
};

#define VP_VU_CONFIG_MAX 256
struct vp_config_space {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[VP_VU_CONFIG_MAX];
};

struct vp_mem_reg {          /* ADD_MEM_REG / REM_MEM_REG */
	uint64_t padding;
	struct vp_mem_region_wire region;
};

struct vp_pci_hello {
	uint32_t magic;
	uint16_t major;
	uint16_t minor;
	uint64_t flags;          /* reserved, 0 */
};

struct vp_pci_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;
	uint64_t mmap_offset;
	uint32_t prot;           /* VP_MEM_READ | VP_MEM_WRITE */
	uint32_t reserved;
};

struct vp_pci_meminfo {
	uint32_t nregions;
	uint32_t padding;
	struct vp_pci_region regions[VP_PCI_MAX_REGIONS];
};

struct vp_pci_ring {
	uint32_t index;
	uint16_t size;           /* power of two, 1..32768 */
	uint16_t last_avail_idx;
	uint64_t desc;           /* guest-physical */
	uint64_t avail;
	uint64_t used;
	uint32_t flags;          /* VP_PCI_RING_* */
	uint32_t reserved;
};

struct vp_pci_devinfo {
	uint32_t device_type;    /* virtio device id: 1 = net */
	uint16_t nrings;
	uint16_t config_len;     /* valid bytes of config[] */
	uint8_t config[VP_PCI_CONFIG_MAX]; /* virtio device config space (net: mac, status, ...) */
	struct vp_pci_ring rings[VP_PCI_MAX_RINGS];
};

struct vp_pci_features {
	uint64_t device_features;  /* offered by the frontend device */
	uint64_t driver_features;  /* acked by the frontend driver */
};

#define VP_PCI_REASON_MAX 120
struct vp_pci_error {
	int32_t code;            /* negative errno */
	uint32_t reserved;
	char reason[VP_PCI_REASON_MAX]; /* NUL-terminated */
};

/* A decoded message: the union is the payloads above, so its size is the
 * largest one's; fds are bounded by the transport (VP_MSG_MAX_FDS). */
struct vp_msg {
	uint32_t request;
	uint32_t flags;
	uint32_t size;           /* payload bytes on the wire */
	union {
		uint64_t u64;
		struct vp_vring_state state;
		struct vp_vring_addr addr;
		struct vp_mem_table mem;
		struct vp_log_base log;
		struct vp_config_space config;
		struct vp_mem_reg mem_reg;
		struct vp_pci_hello hello;
		uint8_t uuid[16];
		struct vp_pci_meminfo meminfo;
		struct vp_pci_devinfo devinfo;
		struct vp_pci_features features;
		struct vp_pci_error error;
	} p;
	int fds[VP_MSG_MAX_FDS];
	unsigned nfds;
};

/* Payload kinds used by the message table. */
enum vp_payload {
	VP_PL_NONE, VP_PL_U64, VP_PL_VRING_STATE, VP_PL_VRING_ADDR, VP_PL_VRING_FD,
	VP_PL_MEM_TABLE, VP_PL_LOG, VP_PL_CONFIG, VP_PL_MEM_REG, VP_PL_HELLO,
	VP_PL_UUID, VP_PL_MEMINFO, VP_PL_DEVINFO, VP_PL_FEATURES, VP_PL_ERROR,
};

/* Who sends the request (replies go the other way). */
enum vp_msg_dir {
	VP_DIR_FRONT_TO_BACK = 1,  /* frontend (vhost-user master / our client) -> server */
	VP_DIR_BACK_TO_FRONT = 2,
	VP_DIR_BOTH = 3,
};

/* One row of the message table. */
struct vp_msg_spec {
	uint32_t request;
	const char *name;
	enum vp_msg_dir dir;
	enum vp_payload req;     /* payload of the request */
	enum vp_payload reply;   /* payload of its reply; VP_PL_NONE: only a
				  * REPLY_ACK u64 may answer it */
	bool has_reply;          /* a reply is always sent */
};

/* The table row for a request, or NULL if unknown. */
VP_API const struct vp_msg_spec *vp_msg_spec(uint32_t request);
/* The most fds a request (or, with reply, its reply) may carry: 0, 1, or
 * VP_MSG_MAX_FDS where the payload says how many. 0 for an unknown request.
 * The server's dispatch table (lib/server.c) says what becomes of them. */
VP_API unsigned vp_msg_max_fds(uint32_t request, bool reply);
/* "GET_FEATURES", "VHOST_PCI_GET_UUID", ... or "UNKNOWN". */
VP_API const char *vp_msg_name(uint32_t request);

/*
 * Check a 12-byte header. Fills *request, *flags, *size.
 * -EBADMSG short buffer; -EPROTO bad version bits or unknown flag bits;
 * -EMSGSIZE size > VP_MSG_MAX_PAYLOAD. (Unknown requests are not an error
 * here, so a transport can skip or answer them.)
 */
VP_API int vp_msg_check_hdr(const void *buf, size_t len, uint32_t *request,
			    uint32_t *flags, uint32_t *size);

/*
 * Decode a whole message (header + payload, len == 12 + size) that arrived
 * with nfds fds. On success the fds are moved into msg->fds. On ANY error
 * every fd in fds[] is closed before returning:
 *  -EBADMSG   len does not match the header, or payload size wrong for the type
 *  -EPROTO    bad header flags, REPLY and NEED_REPLY together
 *  -EMSGSIZE  payload over the maximum
 *  -EOPNOTSUPP unknown request
 *  -EINVAL    a payload field out of range (region count, ring size, bad
 *             magic, unterminated reason, reserved bits set, ...)
 *  -EBADF     wrong number of fds for this message, or a negative fd
 */
VP_API int vp_msg_decode(struct vp_msg *msg, const void *buf, size_t len,
			 const int *fds, unsigned nfds);

/*
 * Encode msg into buf (capacity cap): header (size computed from the payload
 * fields) + payload. msg->fds[0..nfds) are the fds to send with it; their
 * count is checked against the table. Returns the byte count, or -EINVAL
 * (invalid message), -EBADF (fd count), -ENOSPC (cap too small),
 * -EOPNOTSUPP (unknown request). Does not touch the fds.
 */
VP_API int vp_msg_encode(const struct vp_msg *msg, void *buf, size_t cap);

/* Zero msg and set request and flags (VP_MSG_VERSION is always added). */
VP_API void vp_msg_init(struct vp_msg *msg, uint32_t request, uint32_t flags);

/* Close msg's fds and set nfds to 0. */
VP_API void vp_msg_close_fds(struct vp_msg *msg);

#ifdef __cplusplus
}
#endif
#endif
