/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The client side: a frontend announces its virtio device to a server.
 *
 *  - Native dialect (vp_client_*): connect to a vhost-pci server, send HELLO,
 *    then answer the server's GET_UUID, GET_MEMORY_INFO, GET_DEVICE_INFO,
 *    GET_FEATURE_BITS and SET_FEATURE_BITS from a struct vp_frontend_info,
 *    until START. Event-loop driven like the server: vp_client_fd() +
 *    vp_client_dispatch(); vp_client_wait() is a blocking convenience.
 *
 *  - Stock vhost-user (vp_vu_frontend_*): the same device set up on a
 *    vhost-user backend (DPDK's vhost PMD, OVS-DPDK dpdkvhostuser ports, or
 *    a vhost-pci server) as QEMU would: features, memory table, rings,
 *    eventfds, enable. Blocking, with a timeout on every reply.
 *
 * Everything the server sends is checked like any peer input.
 */
#ifndef VHOSTPCI_CLIENT_H
#define VHOSTPCI_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "proto.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * What a frontend tells about its device. Fds stay owned by the caller (they
 * are sent as copies). Region uaddr is where this process mapped the region:
 * vhost-user ring addresses are derived from it. The arrays keep fixed
 * bounds on purpose: this is what the native handshake carries (GET_MEMORY_INFO,
 * GET_DEVICE_INFO; proto.h), and a device cannot be announced with more than
 * those messages hold, so the bounds are the protocol's, not the library's.
 */
struct vp_frontend_ring {
	uint16_t num;
	uint16_t last_avail_idx;     /* where the backend resumes: split, the used
				      * index; packed (native, minor >= 1),
				      * position | wrap << 15 */
	uint64_t desc, avail, used;  /* guest-physical (packed: desc, driver and
				      * device event areas) */
	bool enabled;
	int kick_fd;                 /* we write it when we add buffers; -1: none */
	int call_fd;                 /* the backend writes it to interrupt us; -1: none */
};

struct vp_frontend_info {
	uint8_t uuid[16];
	uint32_t device_type;        /* VP_VIRTIO_ID_NET */
	uint64_t device_features;    /* what our device offers */
	uint64_t driver_features;    /* what our driver wants */
	unsigned nregions;
	struct vp_dev_region regions[VP_PCI_MAX_REGIONS];
	unsigned nrings;
	struct vp_frontend_ring rings[VP_PCI_MAX_RINGS];
	uint16_t config_len;
	uint8_t config[VP_PCI_CONFIG_MAX];
};

enum vp_client_state {
	VP_CLIENT_HANDSHAKE = 0,  /* HELLO sent, answering GET_* */
	VP_CLIENT_STARTED,        /* START received: a device exists on the server */
	VP_CLIENT_STOPPED,        /* we sent STOP */
	VP_CLIENT_FAILED,         /* connection broken; see vp_client_error() */
	VP_CLIENT_STOPPING,       /* we sent STOP with NEED_REPLY; STOPPED once acked */
};

struct vp_client;

/* Connect to a server's socket and send HELLO. info is copied (fds are not
 * duplicated: keep them open while the client lives). -errno of connect(). */
VP_API int vp_client_connect(struct vp_client **out, const char *path,
			     const struct vp_frontend_info *info);
VP_API void vp_client_free(struct vp_client *c);

/* The connected socket (poll it for input, then call dispatch). */
VP_API int vp_client_fd(const struct vp_client *c);

/* Handle what the server sent, without blocking. 0, or a negative errno
 * once the connection has failed. */
VP_API int vp_client_dispatch(struct vp_client *c);

/* Dispatch until the state is no longer HANDSHAKE or timeout_ms passes
 * (-ETIMEDOUT). Returns 0 when STARTED, else a negative errno. */
VP_API int vp_client_wait(struct vp_client *c, int timeout_ms);

VP_API enum vp_client_state vp_client_state(const struct vp_client *c);
/* The server's reason when FAILED (ERROR message or local check), else "". */
VP_API const char *vp_client_error(const struct vp_client *c);
/* After START: the device id the server assigned, and the features it accepted. */
VP_API uint64_t vp_client_device_id(const struct vp_client *c);
VP_API uint64_t vp_client_features(const struct vp_client *c);

/* Tell the server the device stopped (VP_PCI_STOP_RESET or _SHUTDOWN). */
VP_API int vp_client_stop(struct vp_client *c, uint32_t reason);

/*
 * STOP(reset) with NEED_REPLY: the server acks once its backend has let go of
 * the rings. Never waits: the state is VP_CLIENT_STOPPING until the ack comes
 * through vp_client_dispatch() (then VP_CLIENT_STOPPED; a refusing ack fails
 * the client). The caller bounds the wait with its own timeout. 0, -EINVAL
 * (not STARTED), or the send's negative errno.
 */
VP_API int vp_client_stop_need_reply(struct vp_client *c);

/*
 * A packed device (VIRTIO_F_RING_PACKED negotiated), once STOPPED by an acked
 * vp_client_stop_need_reply(): where ring stopped, position | wrap << 15, as
 * the server told in RING_BASE before its ack (checked: within the ring,
 * nothing in flight; an ack without every ring's fails the client). 0, or
 * -ENODATA (split, not acked since the STOP, or no such ring). Event-loop
 * thread, like the rest of vp_client.
 */
VP_API int vp_client_ring_base(const struct vp_client *c, unsigned ring, uint16_t *base);

/* After a reset: announce the device again with new info (HELLO again). */
VP_API int vp_client_restart(struct vp_client *c, const struct vp_frontend_info *info);

/* ---- stock vhost-user frontend ---- */

/*
 * Connect to a vhost-user backend at path and set the device up: GET_FEATURES,
 * SET_OWNER, protocol features (REPLY_ACK if offered), SET_FEATURES with
 * info->driver_features & offered (VERSION_1 required), SET_MEM_TABLE,
 * per ring NUM/BASE/ADDR/KICK/CALL and ENABLE. Every reply waits at most
 * timeout_ms. Returns the connected socket (>= 0) or a negative errno;
 * *negotiated gets the features in use. With VIRTIO_F_RING_PACKED
 * negotiated the rings are packed and start fresh: BASE is
 * VP_VU_PACKED_FRESH_BASE (position 0, wrap counter 1), whatever
 * last_avail_idx says; split rings that a packed offer fell back to start
 * fresh too (0), since last_avail_idx then names a packed position.
 */
#define VP_VU_PACKED_FRESH_BASE 0x8000u
VP_API int vp_vu_frontend_start(const char *path, const struct vp_frontend_info *info,
				uint64_t *negotiated, int timeout_ms);

/* Stop every ring (GET_VRING_BASE), giving back where each ring stopped. */
VP_API int vp_vu_frontend_stop(int sock, unsigned nrings, uint16_t *last_avail,
			       int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
