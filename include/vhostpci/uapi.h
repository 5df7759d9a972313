/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The kernel UAPI virtio headers the public API is written in (wire structs
 * and feature bits come from them, never retyped), includable from C++ too.
 * They are C headers, and two of their corners are not C++:
 *  - <linux/virtio_ring.h> defines vring_init(), which assigns a void * to
 *    typed pointers. In C++, VIRTIO_RING_NO_LEGACY leaves it out, with the
 *    legacy struct vring and vring_size(); none of them is in this API.
 *  - <linux/virtio_net.h> names a member of struct virtio_net_ctrl_hdr
 *    "class". In C++ it is renamed for the length of the include; this API
 *    does not use that struct, and its layout does not change.
 * In C nothing changes (the library itself uses the legacy ring helpers).
 */
#ifndef VHOSTPCI_UAPI_H
#define VHOSTPCI_UAPI_H

#ifdef __cplusplus
#pragma push_macro("class")
#define class vp_uapi_class_
#ifndef VIRTIO_RING_NO_LEGACY
#define VIRTIO_RING_NO_LEGACY 1
#endif
#endif

#include <linux/types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#ifdef __cplusplus
#pragma pop_macro("class")
#endif

#endif /* VHOSTPCI_UAPI_H */
