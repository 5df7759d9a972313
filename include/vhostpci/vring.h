/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Split virtqueues (VIRTIO 1.x, little-endian layout), driven from both sides,
 * and packed virtqueues: their device side (vp_vq_packed_*, below) and their
 * driver side (vp_vq_drv_* on a ring made with vp_vq_drv_config.packed).
 *
 *  - Device side (struct vp_vq_dev): the "exotic ring". The ring and the
 *    buffers live in a PEER's memory, reached only through a struct vp_mem
 *    region table. We pop descriptor chains the peer made available and push
 *    used entries back. Every descriptor is copied locally before it is
 *    checked; any violation marks the queue broken (with a logged reason) and
 *    every later call returns -EIO. Nothing the peer writes can make us touch
 *    memory outside its region table.
 *
 *  - Driver side (struct vp_vq_drv): the "local ring", allocated by us in our
 *    own memory (which the peer device also maps). We add buffers, decide
 *    whether to kick, and collect used entries, validating each used id and
 *    length against our own shadow state: ring memory the peer can write is
 *    never trusted on read-back.
 *
 * Memory ordering follows the virtio spec with C11/GNU atomics: acquire loads
 * of the peer's index, release stores of ours, and a full fence before every
 * event-index / flags check that decides a notification.
 *
 * Threading: one queue object, one thread. The two sides of one ring run in
 * different threads or processes by design.
 */
#ifndef VHOSTPCI_VRING_H
#define VHOSTPCI_VRING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common.h"
#include "uapi.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest split ring the spec allows. */
#define VP_VQ_MAX_SIZE 32768u

/* Bytes each part of a split ring of num entries occupies (with the event-idx
 * words included, whether or not EVENT_IDX is negotiated). */
#define VP_VQ_DESC_BYTES(num)  ((uint64_t)(num) * (uint64_t)sizeof(struct vring_desc))
#define VP_VQ_AVAIL_BYTES(num) (6u + (uint64_t)(num) * 2u)
#define VP_VQ_USED_BYTES(num)  (6u + (uint64_t)(num) * (uint64_t)sizeof(struct vring_used_elem))

/* ------------------------------------------------------------------------ */
/* Device side: the peer's ring, walked by us.                              */

/* Which address space the ring addresses below are in. Buffer addresses in
 * descriptors are always guest-physical. */
enum vp_addr_space {
	VP_ADDR_GPA = 0,   /* guest-physical (native vhost-pci, our own frontends) */
	VP_ADDR_UVA = 1,   /* frontend-process virtual (stock vhost-user) */
};

struct vp_vq_dev_config {
	uint16_t num;              /* ring size: power of two, 1..32768 (0 = 32768 is rejected) */
	uint64_t desc, avail, used; /* ring addresses, in ring_space */
	enum vp_addr_space ring_space;
	uint16_t last_avail_idx;   /* where to resume (vhost-user SET_VRING_BASE) */
	uint16_t last_used_idx;    /* normally == last_avail_idx on (re)start */
	bool event_idx;            /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;             /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	const char *name;          /* for log messages, e.g. "dev3.rx"; may be NULL */
};

/* One descriptor chain popped from the avail ring. Its buffers are iov[0 ..
 * n_out) readable (driver -> device) followed by iov[n_out .. n_out + n_in)
 * writable (device -> driver). A descriptor that crosses a region boundary
 * gives more than one iovec. */
struct vp_chain {
	uint16_t head;     /* id to push back in the used ring */
	uint16_t n_out;    /* readable iovecs */
	uint16_t n_in;     /* writable iovecs */
	uint32_t len_out;  /* total readable bytes */
	uint32_t len_in;   /* total writable bytes */
	struct iovec *iov; /* points into the caller's iovec array */
};

/* What the device hands back: the chain's head and bytes written. */
struct vp_used {
	uint32_t id;
	uint32_t len;
};

struct vp_vq_dev;

/*
 * Attach to a peer's ring. mem must outlive the queue.
 * -EINVAL  num not a power of two or > 32768 (or 0), misaligned ring address
 *          (desc 16, avail 2, used 4 bytes)
 * -EFAULT  a ring part is not entirely inside one region
 * -EACCES  the used ring is not in a writable region
 * -ENOMEM
 */
VP_API int vp_vq_dev_new(struct vp_vq_dev **out, const struct vp_mem *mem,
			 const struct vp_vq_dev_config *cfg);
VP_API void vp_vq_dev_free(struct vp_vq_dev *vq);

/*
 * Pop up to max_chains available chains, filling iov[] (capacity iov_max)
 * front to back. A chain that does not fit in the iovecs left is not
 * consumed: the burst stops before it. If not even the first chain fits,
 * -ENOBUFS is returned and nothing is consumed (give a bigger array).
 *
 * Returns the number of chains popped (0 = ring empty), or -EIO if the queue
 * is (or has just become) broken. Chains are checked in full: head and next
 * < num, chain length <= num (no loops), indirect only if negotiated, no
 * nested indirect, indirect table length a multiple of 16 and <= num * 16, no
 * readable descriptor after a writable one, every buffer inside the region
 * table with the right access, avail index never more than num ahead.
 */
VP_API int vp_vq_dev_pop_burst(struct vp_vq_dev *vq, struct vp_chain *chains,
			       unsigned max_chains, struct iovec *iov,
			       unsigned iov_max);

/*
 * Publish n used entries (in the order given) and advance used->idx once.
 * ids must be heads previously popped; id >= num gives -EINVAL without
 * writing anything. -EIO if broken.
 */
VP_API int vp_vq_dev_push_burst(struct vp_vq_dev *vq, const struct vp_used *used,
				unsigned n);

/*
 * Give back the last n chains popped and not yet pushed, newest first: the
 * next pop walks them again (and checks them again, since the driver may
 * have rewritten them meanwhile). For a caller that popped more than it
 * could use, e.g. a receive buffer burst that fell short of one packet.
 * -EINVAL if n exceeds the chains in flight (popped minus pushed), -EIO if
 * broken.
 */
VP_API int vp_vq_dev_unpop(struct vp_vq_dev *vq, unsigned n);

/*
 * After pushing: must the driver be signalled (its "call")? Honours
 * VRING_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX. Each true answer
 * covers everything pushed so far. Always false when broken.
 */
VP_API bool vp_vq_dev_need_signal(struct vp_vq_dev *vq);

/* Ask the driver not to kick us (we are polling). */
VP_API void vp_vq_dev_disable_notify(struct vp_vq_dev *vq);

/*
 * Ask the driver to kick us on new buffers. Returns true if buffers are
 * already available (the caller must poll again instead of sleeping: this
 * closes the race with a driver that added buffers before it saw the
 * request).
 */
VP_API bool vp_vq_dev_enable_notify(struct vp_vq_dev *vq);

/*
 * Interrupt moderation: ask the driver to kick us only once `ahead` (>= 1)
 * buffers past the ones we popped are available (with EVENT_IDX: avail_event
 * = last_avail + ahead - 1; without it, or for ahead <= 1, exactly as
 * vp_vq_dev_enable_notify()). Returns how many are available after the
 * request (the race check; not validated, pop does that): >= ahead, do not
 * sleep; fewer, the caller must bound its sleep, since a driver may never
 * publish enough to reach the mark.
 */
VP_API unsigned vp_vq_dev_enable_notify_ahead(struct vp_vq_dev *vq, unsigned ahead);

/* Chains available but not yet popped (0 if broken). */
VP_API unsigned vp_vq_dev_avail_pending(struct vp_vq_dev *vq);

/* True once the queue broke, or once its memory shrank under it (the SIGBUS
 * guard, vp_mem_sigbus_guard(): the next pop or push breaks it for good). */
VP_API bool vp_vq_dev_broken(const struct vp_vq_dev *vq);
/* Why the queue broke ("" if it did not). */
VP_API const char *vp_vq_dev_broken_reason(const struct vp_vq_dev *vq);

/* Next avail index to pop (vhost-user GET_VRING_BASE answer). */
VP_API uint16_t vp_vq_dev_last_avail(const struct vp_vq_dev *vq);
VP_API uint16_t vp_vq_dev_num(const struct vp_vq_dev *vq);

/* ------------------------------------------------------------------------ */
/* Device side of a packed ring (VIRTIO_F_RING_PACKED).                     */

/*
 * The same contract as struct vp_vq_dev over the packed layout: one
 * descriptor ring (struct vring_packed_desc) plus the driver's and the
 * device's event-suppression words (struct vring_packed_desc_event), all in
 * the peer's memory. Chains are popped into the same struct vp_chain, with
 * head = the buffer id the driver put in the chain's last descriptor; used
 * entries are pushed with that id, in any order. Every descriptor is copied
 * before it is checked, with the split ring's rules (buffers inside the
 * region table with the right access, no readable part after a writable
 * one, indirect only if negotiated, never nested nor chained on, tables of
 * 1..num whole descriptors, totals within 32 bits) and the packed ones:
 * every descriptor of a chain made available with the current wrap
 * counter, no chain longer than the ring's free descriptors, buffer id <
 * num and not already in flight. A violation breaks the queue (reason kept
 * and logged), every later call returns -EIO.
 *
 * Indexes given to and read from these functions (vhost-user's
 * SET/GET_VRING_BASE for packed rings) carry the ring position in bits 0..14
 * and the wrap counter in bit 15.
 */
struct vp_vq_packed_config {
	uint16_t num;              /* ring size: 1..32768, any value */
	uint64_t desc;             /* descriptor ring, 16-byte aligned */
	uint64_t driver;           /* driver event suppression, 4-byte aligned */
	uint64_t device;           /* device event suppression, 4-byte aligned */
	enum vp_addr_space ring_space;
	uint16_t last_avail_idx;   /* where to resume: position | wrap << 15 (0x8000 fresh) */
	bool event_idx;            /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;             /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	const char *name;          /* for log messages; may be NULL */
};

/* Bytes of a packed ring's descriptor table of num entries. */
#define VP_VQ_PACKED_DESC_BYTES(num) ((uint64_t)(num) * (uint64_t)sizeof(struct vring_packed_desc))

struct vp_vq_packed;

/*
 * Attach to a peer's packed ring. mem must outlive the queue. Resumes at
 * last_avail_idx with nothing in flight.
 * -EINVAL  num 0 or > 32768, a position >= num, misaligned ring address
 * -EFAULT  a ring part is not entirely inside one region
 * -EACCES  the descriptor ring or device event area is not writable
 * -ENOMEM
 */
VP_API int vp_vq_packed_new(struct vp_vq_packed **out, const struct vp_mem *mem,
			    const struct vp_vq_packed_config *cfg);
VP_API void vp_vq_packed_free(struct vp_vq_packed *vq);

/* As vp_vq_dev_pop_burst(); ch->head is the chain's buffer id. */
VP_API int vp_vq_packed_pop_burst(struct vp_vq_packed *vq, struct vp_chain *chains,
				  unsigned max_chains, struct iovec *iov, unsigned iov_max);

/*
 * Write n used descriptors (in the order given), the first one's flags last
 * so the driver sees the batch at once. Each id must be a buffer popped and
 * not yet pushed: otherwise -EINVAL without writing anything. -EIO if broken.
 */
VP_API int vp_vq_packed_push_burst(struct vp_vq_packed *vq, const struct vp_used *used,
				   unsigned n);

/*
 * Give back the last n chains popped, newest first, as vp_vq_dev_unpop().
 * -EINVAL if one of them was pushed, or a used descriptor written since
 * covers their ring slots; -EIO if broken.
 */
VP_API int vp_vq_packed_unpop(struct vp_vq_packed *vq, unsigned n);

/*
 * After pushing: must the driver be signalled? Honours the driver's event
 * suppression flags (ENABLE, DISABLE, and DESC with EVENT_IDX). Each true
 * answer covers everything pushed so far. Always false when broken.
 */
VP_API bool vp_vq_packed_need_signal(struct vp_vq_packed *vq);
/* Ask the driver not to kick us (we are polling). */
VP_API void vp_vq_packed_disable_notify(struct vp_vq_packed *vq);
/* Ask for kicks (at the next descriptor with EVENT_IDX); true if a chain is
 * already available (poll again instead of sleeping). */
VP_API bool vp_vq_packed_enable_notify(struct vp_vq_packed *vq);
/* Is the next chain available? (false if broken) */
VP_API bool vp_vq_packed_avail(struct vp_vq_packed *vq);
/* Descriptors available in a row from the next one, at most max and the
 * slots not in flight: an upper bound of the chains waiting, read from the
 * flags alone (0 if broken). Nothing is checked or consumed. */
VP_API unsigned vp_vq_packed_avail_count(struct vp_vq_packed *vq, unsigned max);

VP_API bool vp_vq_packed_broken(const struct vp_vq_packed *vq);
VP_API const char *vp_vq_packed_broken_reason(const struct vp_vq_packed *vq);
/* Next descriptor to pop, position | wrap << 15 (vhost-user GET_VRING_BASE). */
VP_API uint16_t vp_vq_packed_last_avail(const struct vp_vq_packed *vq);
VP_API uint16_t vp_vq_packed_num(const struct vp_vq_packed *vq);

/* ------------------------------------------------------------------------ */
/* Driver side: our own ring.                                               */

/* A buffer in guest-physical space. */
struct vp_buf {
	uint64_t addr;
	uint32_t len;
};

struct vp_vq_drv_config {
	uint16_t num;               /* power of two, 1..32768 (packed: any 1..32768) */
	void *desc, *avail, *used;  /* local pointers to the ring parts; the
				     * device sees them at the GPAs we tell it.
				     * Packed: the descriptor ring (16-byte
				     * aligned), the driver and the device event
				     * areas (4 bytes each, 4-byte aligned), the
				     * spec's "driver area" and "device area" */
	bool event_idx;
	/*
	 * Indirect descriptors: if indirect_max > 1, a chain of 2..indirect_max
	 * buffers is written as one indirect table. Table i (one per ring slot)
	 * lives at indirect_area + i * indirect_max * 16 locally and at
	 * indirect_gpa + i * indirect_max * 16 for the device; the area must
	 * hold num * indirect_max descriptors. Leave 0/NULL for none.
	 */
	void *indirect_area;
	uint64_t indirect_gpa;
	uint16_t indirect_max;
	const char *name;
	/*
	 * VIRTIO_F_RING_PACKED: the same calls drive a packed ring, with the
	 * same checks on what the device writes back (used id < num and
	 * outstanding, length within the writable bytes posted) and the packed
	 * layout's: the used descriptor due next must carry this lap's wrap
	 * bits, and where the next one is due is counted by us from each
	 * chain's slots. The ring starts at position 0 with wrap counter 1
	 * (0x8000 as a vhost-user ring base). Indirect tables are one per
	 * buffer id, laid out as above.
	 */
	bool packed;
};

struct vp_vq_drv;

/* Initialise the ring memory (zeroed avail and used rings, free list) and the
 * shadow state. -EINVAL on bad num / NULL pointers / misalignment, -ENOMEM. */
VP_API int vp_vq_drv_new(struct vp_vq_drv **out, const struct vp_vq_drv_config *cfg);
VP_API void vp_vq_drv_free(struct vp_vq_drv *vq);

/*
 * Stage one chain: nout readable buffers then nin writable ones. token is
 * returned by vp_vq_drv_get_used() (must not be NULL). Staged chains become
 * visible to the device only at vp_vq_drv_publish().
 * -EINVAL (nout + nin == 0, token NULL), -ENOSPC (not enough free
 * descriptors), -EIO (broken).
 */
VP_API int vp_vq_drv_add(struct vp_vq_drv *vq, const struct vp_buf *out,
			 unsigned nout, const struct vp_buf *in, unsigned nin,
			 void *token);

/* Stage n one-buffer chains (RX posting, small TX). Returns how many were
 * staged (may be < n when the ring fills), or -EIO. */
VP_API int vp_vq_drv_add_burst(struct vp_vq_drv *vq, const struct vp_buf *bufs,
			       unsigned n, bool device_writable, void *const *tokens);

/* Make all staged chains visible (one release store of avail->idx) and say
 * whether the device must be kicked (VRING_USED_F_NO_NOTIFY, or avail_event
 * with EVENT_IDX). */
VP_API bool vp_vq_drv_publish(struct vp_vq_drv *vq);

/*
 * Collect up to max used chains: tokens[i] and lens[i] (bytes the device
 * wrote). Returns the count, or -EIO if the device returned an id that is out
 * of range or not outstanding, or a length larger than the chain's writable
 * bytes (the queue is then broken).
 */
VP_API int vp_vq_drv_get_used(struct vp_vq_drv *vq, void **tokens,
			      uint32_t *lens, unsigned max);

/* Used entries the device published that get_used() has not collected yet
 * (a peek for busy-polling; 0 if broken; a packed ring says 1 while the next
 * one is there). Not validated: get_used() is. */
VP_API unsigned vp_vq_drv_used_pending(const struct vp_vq_drv *vq);

/* Ask for / stop interrupts (the device's "call"). enable returns true if
 * used entries are already pending (poll again instead of sleeping). */
VP_API bool vp_vq_drv_enable_cb(struct vp_vq_drv *vq);
/*
 * Moderated: ask for the call only once `ahead` (>= 1) more used entries
 * came, at most as many as are outstanding (with EVENT_IDX; else as
 * vp_vq_drv_enable_cb()). Returns the used entries pending after the
 * request: >= the mark (returned in *mark if not NULL), do not sleep.
 */
VP_API unsigned vp_vq_drv_enable_cb_ahead(struct vp_vq_drv *vq, unsigned ahead,
					  unsigned *mark);
VP_API void vp_vq_drv_disable_cb(struct vp_vq_drv *vq);

VP_API unsigned vp_vq_drv_num_free(const struct vp_vq_drv *vq);
VP_API bool vp_vq_drv_broken(const struct vp_vq_drv *vq);
VP_API const char *vp_vq_drv_broken_reason(const struct vp_vq_drv *vq);

#ifdef __cplusplus
}
#endif
#endif
