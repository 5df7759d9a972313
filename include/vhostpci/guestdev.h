/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The backend inside a backend VM: vhost-pci devices (docs/device.md) found
 * in the guest's own PCI tree and driven from userspace through sysfs
 * resource mmaps, with the library's one data path (vp_net) on top.
 *
 * A struct vp_guest watches a sysfs PCI root (default /sys/bus/pci/devices)
 * for 1af4:1110 functions. An info function is one whose resource2 is an
 * 8 KiB window with the magic; it is paired with the memory function whose
 * IVPosition (resource0, 0x08) is the window's memory_peer. For each pair
 * (a "device") the library takes checked snapshots of the window, maps the
 * memory function's resource2 (the frontend's RAM), builds a vp_mem and a
 * struct vp_device view over it, and attaches a vp_net: a "link". The
 * frontend's call is a doorbell write ((daemon_peer << 16) | q at BAR0
 * 0x0c, vp_net_set_notify()); the frontend's kicks are MSI-X interrupts
 * that userspace in a guest cannot receive (no VFIO no-IOMMU in Debian's
 * guest kernel), so links run in POLL or ADAPTIVE mode only (ADAPTIVE naps
 * a millisecond at a time when idle).
 *
 * Life cycle, served by vp_guest_control() (docs/device.md 5): a new
 * generation is re-read; STOP stops the link, writes the driver page
 * (stopped indexes, acked_gen) and rings the "driver wrote" doorbell; READY
 * again re-attaches from the new last_avail_idx; GONE, or the sysfs entries
 * vanishing, unmaps everything at once and removes the device.
 *
 * Security model: the window and the frontend's RAM are hostile. The window
 * is read only through vp_devinfo_snapshot() (a checked copy); the RAM only
 * through vring.c via the vp_mem. Anything wrong breaks that device only,
 * with a logged reason that is also written to the driver page (FAILED),
 * until the daemon publishes a new generation. sysfs content (ids, sizes,
 * IVPosition) is checked before use. Not covered: the kernel revoking a
 * mapping under us (hot-unplug with no GONE first) faults like any revoked
 * mapping.
 *
 * Threading: one vp_guest, one thread (the caller's loop); no threads, no
 * signal handlers. vp_guest_control() does system calls only for a rescan
 * (every VP_GUEST_RESCAN_MS) and for attaching or letting go.
 */
#ifndef VHOSTPCI_GUESTDEV_H
#define VHOSTPCI_GUESTDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "devinfo.h"
#include "net.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VP_GUEST_SYSFS_DEFAULT "/sys/bus/pci/devices"
#define VP_GUEST_MAX_DEVICES 32
#define VP_GUEST_RESCAN_MS 100  /* sysfs looked at again this often */

struct vp_guest;
struct vp_guestdev;

enum vp_guest_event {
	VP_GUEST_NEW,      /* a pair found and its window accepted once */
	VP_GUEST_UP,       /* a link: vp_guestdev_net() valid until DOWN */
	VP_GUEST_DOWN,     /* the link goes (STOP, not ready, broken, GONE):
			    * vp_guestdev_net() is still valid for its stats
			    * during the event, freed after it returns;
			    * vp_guestdev_reason() says why */
	VP_GUEST_REMOVED,  /* GONE or unplugged: last look at the device */
};

/* Called from vp_guest_control() and vp_guest_free() (and vp_guestdev_fail()
 * for its DOWN); it must not call vp_guest_control() or vp_guest_free(). */
typedef void (*vp_guest_event_fn)(struct vp_guest *g, enum vp_guest_event ev,
				  struct vp_guestdev *d, void *opaque);

struct vp_guest_config {
	const char *sysfs_root;    /* NULL: VP_GUEST_SYSFS_DEFAULT (tests: a fake tree) */
	bool have_uuid;            /* only the device of this frontend UUID */
	uint8_t uuid[16];
	enum vp_net_mode mode;     /* VP_NET_POLL or VP_NET_ADAPTIVE */
	uint64_t features;         /* what we drive; 0: VP_NET_FEATURES (never
				    * RING_PACKED: -EINVAL). A device
				    * whose frontend negotiated more is failed */
	unsigned max_devices;      /* 0 or more than VP_GUEST_MAX_DEVICES: that */
	vp_guest_event_fn on_event;
	void *opaque;
};

/*
 * Create the watcher and scan once (events for what is there are delivered
 * by the first vp_guest_control()). -ENOTSUP for VP_NET_IRQ (logged: the
 * kicks are MSI-X interrupts userspace in this guest cannot have), -EINVAL
 * for a bad config, -ENOMEM.
 */
VP_API int vp_guest_new(struct vp_guest **out, const struct vp_guest_config *cfg);

/* Let every device go (DOWN and REMOVED delivered), unmap, free. NULL is fine. */
VP_API void vp_guest_free(struct vp_guest *g);

/*
 * The control pass, without blocking: rescan sysfs when due, look at every
 * device's generation, serve STOP/READY/GONE, fail devices whose link broke.
 * Call it every few milliseconds (the generation is one load per device).
 * Returns the number of events delivered.
 */
VP_API int vp_guest_control(struct vp_guest *g);

/* Milliseconds until the next rescan is due (>= 0): a bound for a sleep. */
VP_API int vp_guest_timeout(const struct vp_guest *g);

/* Refill the design's registry (server.h; vp_pci_info_new()) with one entry
 * per device with a link up (device_type, device_id, dev = its struct
 * vp_device view, valid until its DOWN). The number of entries, or -ENOMEM
 * (out then empty). */
VP_API int vp_guest_registry(const struct vp_guest *g, struct vp_pci_info *out);

/* The device of a frontend UUID (whatever its state), or NULL. */
VP_API struct vp_guestdev *vp_guest_find(const struct vp_guest *g, const uint8_t uuid[16]);

/* ---- one device (valid until VP_GUEST_REMOVED returns) ---- */

/* The link, or NULL when down. Owned by the device: do not free it; a ring
 * that broke is reported with vp_guestdev_fail(). */
VP_API struct vp_net *vp_guestdev_net(const struct vp_guestdev *d);
/* The struct vp_device view the link was made from (state READY while up). */
VP_API const struct vp_device *vp_guestdev_device(const struct vp_guestdev *d);
/* The last accepted snapshot of the window (zeros before the first). */
VP_API const struct vp_devinfo *vp_guestdev_info(const struct vp_guestdev *d);
/* "0000:00:04.0+0000:00:05.0": the memory and info functions' sysfs names. */
VP_API const char *vp_guestdev_name(const struct vp_guestdev *d);
/* Why the link is down or the device failed, or "". */
VP_API const char *vp_guestdev_reason(const struct vp_guestdev *d);
/* The device is failed (until the next generation). */
VP_API bool vp_guestdev_failed(const struct vp_guestdev *d);
/* Doorbells rung (frontend calls and driver-page notices), for tests. */
VP_API uint64_t vp_guestdev_doorbells(const struct vp_guestdev *d);

/*
 * Fail the device with why (a broken link, a caller's refusal): the link is
 * freed (DOWN delivered), the driver page says FAILED with the reason and
 * the daemon is rung. It is tried again when the daemon publishes a new
 * generation.
 */
VP_API void vp_guestdev_fail(struct vp_guestdev *d, const char *why);

/* ---- a 2.1 peer inside a QEMU guest (docs/window21.md 9) ----
 *
 * The daemon gives a guest its half of a 2.1 window as three functions of
 * one PCI slot (docs/device.md 8): .0 an ivshmem-doorbell whose BAR2 is our
 * section (read-write) and whose IVPosition is our peer id, .1 an
 * ivshmem-plain whose BAR2 is the window's header, .2 an ivshmem-plain
 * whose BAR2 is the other's section; .1 and .2 are read-only by QEMU
 * (memory-backend-file readonly=on: a guest write is dropped), and mapped
 * PROT_READ here too. The header's section table gives the geometry; no BAR
 * address is needed. The link is a vp_net21 over those mappings
 * (vp_net21_new_mapped()), the other peer woken by doorbells (vector 0 its
 * RX, 1 its TX). Our own wake-ups are .0's MSI-X vectors, which userspace in
 * a guest gets only through VFIO: with .0 bound to vfio-pci (an IOMMU in the
 * guest, .1 and .2 without a driver) they become the eventfds mode irq and
 * adaptive sleep on; otherwise poll (adaptive falls back to it, saying so).
 *
 * Threading: one thread; no calls after vp_guest21_close().
 */
struct vp_guest21;
struct vp_net21;

/*
 * Find the first 2.1 slot (sorted by name) under sysfs_root (NULL:
 * VP_GUEST_SYSFS_DEFAULT), map it and attach. -ENODEV (none), -ENOTSUP
 * (mode irq without interrupts through VFIO, logged), -EINVAL (the header or
 * the functions refused, logged), or an errno.
 */
VP_API int vp_guest21_open(struct vp_guest21 **out, const char *sysfs_root,
			   enum vp_net_mode mode);
/* The link (owned by g). */
VP_API struct vp_net21 *vp_guest21_net(const struct vp_guest21 *g);
/* "0000:00:05": the slot. */
VP_API const char *vp_guest21_name(const struct vp_guest21 *g);
/* A function went away under us (unplugged): close and open again. */
VP_API bool vp_guest21_revoked(const struct vp_guest21 *g);
/* Detach (state 0 in our section, the other rung), unmap, free. NULL is fine. */
VP_API void vp_guest21_close(struct vp_guest21 *g);

#ifdef __cplusplus
}
#endif
#endif
