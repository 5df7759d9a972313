/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The info window of a vhost-pci device (docs/device.md), both ends.
 *
 *  - Host side (vhost-pcid): build a struct vp_devinfo from a struct
 *    vp_device, publish it into page 0 as a seqlock, and read page 1 (the
 *    driver's, hostile) through one checked copy.
 *  - Guest side (the backend in the backend VM): take a consistent, checked
 *    snapshot of page 0, write page 1, and turn the snapshot's memory table
 *    into regions of a struct vp_mem over the memory function's BAR2 mapping,
 *    so lib/vring.c walks the frontend's rings there unchanged.
 *
 * The wire layout is include/vhostpci/device.h; the structs here are its
 * decoded, host-endian form. Nothing here allocates, blocks or starts a
 * thread; the read paths do no system calls. Rejections come back as -EINVAL
 * with the reason in the caller's buffer (why, whylen; may be NULL/0): the
 * caller logs it with the device it concerns.
 *
 * Threading: one writer per page (the daemon for page 0, the driver for page
 * 1), any number of readers, in any processes or VMs: the window is the only
 * shared state and every access to it is atomic at word size.
 */
#ifndef VHOSTPCI_DEVINFO_H
#define VHOSTPCI_DEVINFO_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "device.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* server.h, not included: its kernel UAPI headers do not build as C++. */
struct vp_device;
struct vp_dev_region;

/* How many times vp_devinfo_snapshot() retries a page being rewritten. */
#define VP_DEVINFO_SNAPSHOT_TRIES 64

struct vp_devinfo_region {
	uint64_t gpa, size;
	uint64_t offset;	/* in the memory function's BAR2 */
	uint64_t flags;		/* 0 */
};

struct vp_devinfo_queue {
	uint16_t num;		/* 0: absent */
	uint16_t flags;		/* VP_INFO_Q_* */
	uint16_t last_avail_idx;
	uint16_t kick_vector, call_doorbell;
	uint64_t desc, avail, used;	/* frontend guest-physical */
};

/* Page 0, decoded. magic, abi_version and page_size are implied. The arrays
 * are the window's (device.h): their bounds are device ABI 1, not limits of
 * the library, and change only with a new abi_version (and a new struct).
 * The guest kernel module uses these structs as they are. */
struct vp_devinfo {
	uint32_t generation;	/* even, non-zero (see vp_devinfo_next_gen()) */
	uint32_t status;	/* VP_INFO_ST_* */
	uint64_t device_id;
	uint8_t uuid[16];
	uint32_t device_type;
	uint16_t num_queues, memory_peer, daemon_peer, nregions;
	uint64_t features;
	uint64_t bar2_size;
	uint32_t config_len;
	uint8_t config[VP_INFO_CONFIG_MAX];
	struct vp_devinfo_region regions[VP_INFO_MAX_REGIONS];
	struct vp_devinfo_queue queues[VP_INFO_MAX_QUEUES];
	uint32_t reason_gen;
	char reason[VP_INFO_REASON_LEN];	/* NUL-terminated */
};

/* Page 1, decoded (bounds: the window's, as above). */
struct vp_devinfo_driver {
	uint32_t driver_gen;
	uint32_t driver_status;	/* VP_INFO_DS_* */
	uint64_t features_accepted;
	uint32_t acked_gen;
	uint32_t stopped[VP_INFO_MAX_QUEUES];	/* VP_INFO_STOPPED_* */
	char reason[VP_INFO_DRV_REASON_LEN];	/* NUL-terminated */
};

/*
 * Every rule docs/device.md 4.4 sets for a daemon page, on a decoded one:
 * generation even and non-zero, known status bits, num_queues and nregions
 * <= 8, bar2_size a power of two, each region non-empty with flags 0, inside
 * BAR2 and not wrapping in either space, no two regions overlapping in BAR2
 * or in gpa space, config_len <= 64, reason terminated; each present queue
 * with known flags, its own vectors, a power-of-two size <= 32768, and each
 * ring part (desc 16 num, avail 6 + 2 num, used 6 + 8 num bytes) aligned (16,
 * 2, 4) and inside one region. 0 or -EINVAL with the first rule broken.
 */
VP_API int vp_devinfo_check(const struct vp_devinfo *info, char *why, size_t whylen);

/* ---- host side (vhost-pcid) --------------------------------------------- */

/* The generation after prev: +2, skipping 0 when it wraps. */
VP_API uint32_t vp_devinfo_next_gen(uint32_t prev);

/*
 * Describe dev for a backend VM. The memory function's BAR2 is the frontend's
 * RAM fd, whole: bar2_size is that fd's size, and each region's BAR2 offset
 * its offset in the fd, which means something only if every region is of that
 * one file (checked with fstat()). Fills the four answers (uuid, memory
 * table, queue table, features = the frontend driver's), status PRESENT
 * (| READY when dev is READY); leaves generation, memory_peer, daemon_peer
 * and reason 0 for the caller. The result passes vp_devinfo_check() once
 * generation is set, or this fails: -EINVAL with why (no regions, more
 * regions or rings than the window holds, a region without fd or of another
 * file, an fd whose size is not a power of two, a table the guest would
 * refuse).
 */
VP_API int vp_devinfo_from_device(const struct vp_device *dev, struct vp_devinfo *out,
				  char *why, size_t whylen);

/*
 * Write page 0 of window (VP_INFO_WINDOW_SIZE bytes, 8-byte aligned: -EINVAL
 * otherwise, as for every function here that takes a window) as the
 * seqlock of docs/device.md 4.4: generation in->generation - 1 (odd), the
 * fields, then in->generation. The page is rewritten whole (reserved bytes 0),
 * whatever a guest scribbled on it; page 1 is not touched. in must pass
 * vp_devinfo_check(), else -EINVAL and nothing is written. The caller keeps
 * the generation (vp_devinfo_next_gen()): page 0 is never read back.
 * One writer per window.
 */
VP_API int vp_devinfo_publish(void *window, const struct vp_devinfo *in);

/*
 * Copy page 1 of window once, then check the copy against pub (the newest
 * generation published) and the oldest generation still acceptable as an
 * answer: acked_gen even and within [oldest_gen, pub->generation] (modulo
 * 2^32), driver_status of known bits, features_accepted a subset of
 * pub->features, each stopped entry either 0 or valid with bits 16-30 clear,
 * for a queue present in pub, reason NUL-terminated within its field.
 * 0 with *out filled, or -EINVAL with why (*out then undefined). No system
 * call, no allocation.
 */
VP_API int vp_devinfo_read_driver(const volatile void *window, const struct vp_devinfo *pub,
				  uint32_t oldest_gen, struct vp_devinfo_driver *out,
				  char *why, size_t whylen);

/*
 * The ring-relative check of one accepted stopped[] entry, for a daemon that
 * read the frontend's avail->idx of that queue (e.g. vp_device_ring_status()):
 * the driver cannot have taken entries the frontend never published, so
 * avail_idx - index (mod 2^16) must be <= num. 0, or -EINVAL with why (also
 * for an entry without VP_INFO_STOPPED_VALID).
 */
VP_API int vp_devinfo_check_stopped(uint32_t stopped, uint16_t num, uint16_t avail_idx,
				    char *why, size_t whylen);

/* ---- guest side (the backend) ------------------------------------------- */

/*
 * A consistent snapshot of page 0: up to VP_DEVINFO_SNAPSHOT_TRIES seqlock
 * reads (generation, acquire; the page; acquire fence; generation again,
 * equal and even), then magic, abi_version and page_size, then
 * vp_devinfo_check(). 0, -EAGAIN (the daemon kept writing: try again after
 * the next configuration interrupt) or -EINVAL with why.
 */
VP_API int vp_devinfo_snapshot(const volatile void *window, struct vp_devinfo *out,
			       char *why, size_t whylen);

/*
 * Write page 1: every field of in but driver_gen, then driver_gen with a
 * release store, so a daemon that sees the new driver_gen sees the rest.
 * reason is cut to fit and always terminated; reserved bytes become 0. Ring
 * the doorbell VP_INFO_DB_DRIVER(num_queues) afterwards. One writer. A NULL
 * or misaligned window is left alone.
 */
VP_API void vp_devinfo_write_driver(volatile void *window, const struct vp_devinfo_driver *in);

/*
 * The snapshot's memory table as the library's regions: gpa and size as
 * given, fd_offset = the BAR2 offset, uaddr 0, fd -1 (the memory is reached
 * through the BAR2 mapping, not an fd), prot as asked. Returns the number of
 * regions, or -ENOSPC if max is too small.
 */
VP_API int vp_devinfo_regions(const struct vp_devinfo *info, uint32_t prot,
			      struct vp_dev_region *out, unsigned max);

/*
 * Add the snapshot's regions to mem over bar2, the local mapping of the
 * memory function's BAR2 (bar2_len bytes, e.g. an mmap of sysfs resource2),
 * with vp_mem_add_local(): the rings and buffers are then reached with
 * vp_mem_gpa_ptr() and vp_vq_dev_new(..., VP_ADDR_GPA) as for any frontend.
 * mem must be empty. -EINVAL if a region is outside bar2_len (the snapshot
 * said a bigger BAR than the one mapped) or with vp_mem_add_local()'s errors,
 * leaving mem empty.
 */
VP_API int vp_devinfo_mem_add(struct vp_mem *mem, const struct vp_devinfo *info, uint32_t prot,
			      void *bar2, uint64_t bar2_len);

/*
 * A reason string from either page, for a log: at most maxlen bytes of s up
 * to its NUL, with backslash, quote and every byte outside 0x20-0x7e as \xNN.
 * Always terminates buf (buflen > 0); returns buf.
 */
VP_API char *vp_devinfo_escape(const char *s, size_t maxlen, char *buf, size_t buflen);

#ifdef __cplusplus
}
#endif
#endif
