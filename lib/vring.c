/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Split virtqueues: the device side walks a peer's ring, the driver side
 * drives our own.
 *
 * Security model
 *  - Untrusted: every byte of a peer's ring (descriptors, avail ring and
 *    index, event words) and of our own ring once the peer can map it
 *    (used entries, used index, avail_event, used flags). All of it may
 *    change between any two of our reads.
 *  - Copy before check: each descriptor is loaded once, field by field,
 *    into a local; each avail slot and used entry is loaded once. Only the
 *    local copy is checked and used.
 *  - Guest addresses become pointers only through struct vp_mem: the ring
 *    parts once at attach time, each buffer and indirect table per use, with
 *    the exact length and access needed (buffers through mem_internal.h's
 *    cursor, which caches the last region hit).
 *  - Memory that shrank under us (the SIGBUS guard replaced it with zero
 *    pages, vp_mem_sigbus_guard()) breaks the queue at the end of the burst
 *    that saw it, whatever the zeros looked like.
 *  - A violation breaks that queue only: a reason is kept and logged, and
 *    every later call returns -EIO. Nothing here asserts or exits.
 *  - Driver side state (free list, tokens, posted lengths) lives in our own
 *    malloc'd memory, never in the ring, so a device cannot forge it.
 *  - Not covered: a device that withholds used entries, or a driver that
 *    stops posting; both only starve their own queue.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhostpci/log.h"
#include "vhostpci/vring.h"
#include "mem_internal.h"

#include "vring_walk.h"
#include "vring_internal.h"

#define DESC_SIZE     ((uint32_t)sizeof(struct vring_desc))  /* <linux/virtio_ring.h> */

/*
 * Copy one descriptor out of shared memory: each field loaded exactly once.
 * The ring table is always 16-byte aligned (checked at attach); an indirect
 * table may be anywhere, so it falls back to volatile unaligned loads.
 */
static inline void desc_fetch(struct vring_desc *d, const unsigned char *p)
{
	if (likely(((uintptr_t)p & 7) == 0)) {
		const struct vring_desc *s = (const void *)p;

		d->addr = le64toh(LOAD_RELAXED(&s->addr));
		d->len = le32toh(LOAD_RELAXED(&s->len));
		d->flags = le16toh(LOAD_RELAXED(&s->flags));
		d->next = le16toh(LOAD_RELAXED(&s->next));
	} else {
		d->addr = le64toh(*(const volatile u64_una *)(p + 0));
		d->len = le32toh(*(const volatile u32_una *)(p + 8));
		d->flags = le16toh(*(const volatile u16_una *)(p + 12));
		d->next = le16toh(*(const volatile u16_una *)(p + 14));
	}
}

/* ------------------------------------------------------------------------ */
/* Device side                                                              */

struct vp_vq_dev {
	/* Hot: what pop/push/need_signal touch, first cache line. */
	struct vring vr;		/* local views of the peer's ring parts */
	const struct vp_mem *mem;
	uint16_t mask;			/* num - 1 */
	uint16_t last_avail;		/* next avail slot to pop */
	uint16_t shadow_avail;		/* avail->idx as last read and checked */
	uint16_t used_idx;		/* next used slot to fill */
	uint16_t signalled_used;	/* used_idx at the last signal decision */
	uint16_t used_flags;		/* what we last wrote to used->flags */
	bool signalled_valid;
	bool event_idx;
	bool indirect;
	bool broken;
	unsigned hot_region;		/* region the last buffer was in: a hint */
	/* Cold. */
	char name[VQ_NAME_MAX];
	char reason[VQ_REASON_MAX];
};

/* The memory shrank: checked at the end of each burst. */
__attribute__((cold, __noinline__))
static int dev_fail_shrunk(struct vp_vq_dev *vq)
{
	set_broken_shrunk(&vq->broken, vq->reason, vq->name);
	return -EIO;
}

/*
 * Mark the queue (a struct vp_vq_dev) broken; returns -EIO so callers can
 * `return dev_fail()`. Also vring_walk.h's vq_fail_fn for it.
 */
__attribute__((cold, __noinline__, format(printf, 2, 3)))
static int dev_fail(void *q, const char *fmt, ...)
{
	struct vp_vq_dev *vq = q;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vq_vfail(vq->mem, &vq->broken, vq->reason, vq->name, fmt, ap);
	va_end(ap);
	return r;
}

/*
 * Re-read avail->idx. The acquire pairs with the driver's release store of
 * avail->idx (or its write barrier before it): slots and descriptors it
 * published are visible once we see the index.
 */
static inline int dev_refresh_avail(struct vp_vq_dev *vq)
{
	uint16_t idx = le16toh(LOAD_ACQUIRE(&vq->vr.avail->idx));
	uint16_t pending = (uint16_t)(idx - vq->last_avail);

	if (unlikely(pending > vq->vr.num))
		return dev_fail(vq, "avail idx %u is %u ahead of last_avail %u (num %u)",
				idx, pending, vq->last_avail, vq->vr.num);
	vq->shadow_avail = idx;
	return pending;
}

int vp_vq_dev_new(struct vp_vq_dev **out, const struct vp_mem *mem,
		  const struct vp_vq_dev_config *cfg)
{
	const char *name = cfg && cfg->name ? cfg->name : "vq";
	void *desc, *avail, *used;
	struct vp_vq_dev *vq;
	unsigned num;
	int err;

	if (!out || !mem || !cfg)
		return -EINVAL;
	*out = NULL;
	num = cfg->num;
	if (!is_pow2(num) || num > VP_VQ_MAX_SIZE) {
		vp_log(VP_LOG_WARN, "vring %s: bad ring size %u", name, num);
		return -EINVAL;
	}
	if (cfg->ring_space != VP_ADDR_GPA && cfg->ring_space != VP_ADDR_UVA)
		return -EINVAL;
	if ((cfg->desc & (VRING_DESC_ALIGN_SIZE - 1)) ||
	    (cfg->avail & (VRING_AVAIL_ALIGN_SIZE - 1)) ||
	    (cfg->used & (VRING_USED_ALIGN_SIZE - 1))) {
		vp_log(VP_LOG_WARN, "vring %s: misaligned ring desc 0x%" PRIx64
		       " avail 0x%" PRIx64 " used 0x%" PRIx64, name,
		       cfg->desc, cfg->avail, cfg->used);
		return -EINVAL;
	}
	err = map_ring_part(mem, cfg->ring_space, cfg->desc,
			    VP_VQ_DESC_BYTES(num), VP_MEM_READ, &desc);
	if (!err)
		err = map_ring_part(mem, cfg->ring_space, cfg->avail,
				    VP_VQ_AVAIL_BYTES(num), VP_MEM_READ, &avail);
	if (!err)
		err = map_ring_part(mem, cfg->ring_space, cfg->used,
				    VP_VQ_USED_BYTES(num), VP_MEM_RW, &used);
	if (err) {
		vp_log(VP_LOG_WARN, "vring %s: ring desc 0x%" PRIx64 " avail 0x%"
		       PRIx64 " used 0x%" PRIx64 " num %u: %s", name, cfg->desc,
		       cfg->avail, cfg->used, num,
		       err == -EACCES ? "used ring not writable"
				      : "not inside one region");
		return err;
	}
	/* A region's host address need not share the gpa's alignment. */
	if (((uintptr_t)desc & (VRING_DESC_ALIGN_SIZE - 1)) ||
	    ((uintptr_t)avail & (VRING_AVAIL_ALIGN_SIZE - 1)) ||
	    ((uintptr_t)used & (VRING_USED_ALIGN_SIZE - 1))) {
		vp_log(VP_LOG_WARN, "vring %s: ring misaligned in local memory", name);
		return -EINVAL;
	}

	vq = walk_zalloc_lines(sizeof(*vq));
	if (!vq)
		return -ENOMEM;
	vq->vr.num = num;
	vq->vr.desc = desc;
	vq->vr.avail = avail;
	vq->vr.used = used;
	vq->mem = mem;
	vq->mask = (uint16_t)(num - 1);
	vq->last_avail = cfg->last_avail_idx;
	vq->shadow_avail = cfg->last_avail_idx;
	vq->used_idx = cfg->last_used_idx;
	vq->signalled_used = cfg->last_used_idx;
	vq->event_idx = cfg->event_idx;
	vq->indirect = cfg->indirect;
	set_name(vq->name, cfg->name);
	*out = vq;
	return 0;
}

void vp_vq_dev_free(struct vp_vq_dev *vq)
{
	free(vq);
}

/*
 * The one descriptor walker, for direct and indirect chains alike: an
 * indirect descriptor only switches the table being walked. Fills iov[0 ..
 * iov_max) and ch. Returns 0, -ENOBUFS (does not fit; nothing consumed) or
 * -EIO (queue now broken).
 */
static inline __attribute__((always_inline)) int
dev_walk(struct vp_vq_dev *vq, struct walk_ctx *w, uint16_t head,
	 struct vp_chain *ch, struct iovec *iov, unsigned iov_max)
{
	const unsigned char *tbl = w->desc;
	unsigned tsize = w->num;	/* entries in tbl */
	unsigned left = tsize;		/* visits left in tbl before it must be a loop */
	unsigned i = head;
	struct walk_acc a = { 0 };
	bool indirect = false;
	struct vring_desc d;
	int r;

	/* n_out and n_in are 16 bits wide. */
	if (unlikely(iov_max > UINT16_MAX))
		iov_max = UINT16_MAX;
	for (;;) {
		if (unlikely(left-- == 0))
			return dev_fail(vq, "chain at head %u longer than %u descriptors%s (loop?)",
					head, tsize, indirect ? " in indirect table" : "");
		desc_fetch(&d, tbl + (size_t)i * DESC_SIZE);

		if (unlikely(d.flags & VRING_DESC_F_INDIRECT)) {
			tbl = walk_indirect(vq, dev_fail, w, i, head, indirect,
					    d.flags & VRING_DESC_F_NEXT, d.addr, d.len, &tsize);
			if (!tbl)
				return -EIO;
			left = tsize;
			indirect = true;
			i = 0;
			continue;
		}
		r = walk_buf(vq, dev_fail, w, &a, indirect ? "indirect entry" : "desc", i,
			     head, d.addr, d.len, d.flags & VRING_DESC_F_WRITE, iov, iov_max);
		if (unlikely(r < 0))
			return r;
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		if (unlikely(d.next >= tsize))
			return dev_fail(vq, "%s %u: next %u >= %u (head %u)",
					indirect ? "indirect entry" : "desc", i,
					d.next, tsize, head);
		i = d.next;
	}
	return walk_finish(vq, dev_fail, &a, head, ch, iov);
}

/* The full walk, out of line: keeps the fast path's loop small. */
__attribute__((__noinline__))
static int dev_walk_slow(struct vp_vq_dev *vq, struct walk_ctx *w, uint16_t head,
			 struct vp_chain *ch, struct iovec *iov, unsigned iov_max)
{
	return dev_walk(vq, w, head, ch, iov, iov_max);
}

int vp_vq_dev_pop_burst(struct vp_vq_dev *vq, struct vp_chain *chains,
			unsigned max_chains, struct iovec *iov, unsigned iov_max)
{
	const uint16_t *ring = vq->vr.avail->ring;
	struct walk_ctx w = {
		.desc = (const unsigned char *)vq->vr.desc, .mem = vq->mem,
		.num = vq->vr.num, .indirect = vq->indirect,
	};
	const uint16_t mask = vq->mask;
	uint16_t last = vq->last_avail;
	unsigned pending, done, iov_used = 0;
	int r;

	if (unlikely(vq->broken))
		return -EIO;
	pending = (uint16_t)(vq->shadow_avail - last);
	if (pending < max_chains) {
		r = dev_refresh_avail(vq);
		if (unlikely(r < 0))
			return r;
		pending = (unsigned)r;
	}
	if (max_chains > pending)
		max_chains = pending;
	if (max_chains)
		vp_mem_cursor_load(&w.cur, w.mem, vq->hot_region);
	for (done = 0; done < max_chains; done++) {
		/* One load of the slot: the head we check is the head we walk. */
		uint16_t head = le16toh(LOAD_RELAXED(&ring[last & mask]));
		struct vp_chain *ch = &chains[done];

		struct vring_desc d;
		void *p;

		if (unlikely(head >= w.num))
			return dev_fail(vq, "avail slot %u: head %u >= num %u",
					last, head, w.num);
		/*
		 * The common chain: one direct descriptor, non-empty, in the
		 * hot region with the access it asks for. Anything else, or
		 * no room, takes the full walk (which fetches its own copy).
		 */
		desc_fetch(&d, w.desc + (size_t)head * DESC_SIZE);
		if (likely(!(d.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT)) &&
			   d.len && iov_used < iov_max)) {
			bool wr = d.flags & VRING_DESC_F_WRITE;

			if (likely(vp_mem_cursor_fits(&w.cur, d.addr, d.len,
						      wr ? VP_MEM_WRITE : VP_MEM_READ, &p))) {
				iov[iov_used].iov_base = p;
				iov[iov_used].iov_len = d.len;
				ch->head = head;
				ch->n_out = !wr;
				ch->n_in = wr;
				ch->len_out = wr ? 0 : d.len;
				ch->len_in = wr ? d.len : 0;
				ch->iov = iov + iov_used;
				iov_used++;
				last++;
				continue;
			}
		}
		r = dev_walk_slow(vq, &w, head, ch, iov + iov_used, iov_max - iov_used);
		if (unlikely(r < 0)) {
			if (r == -ENOBUFS && done)
				break;
			return r;
		}
		iov_used += ch->n_out + ch->n_in;
		last++;
	}
	if (unlikely(vp_mem_is_shrunk(w.mem)))
		return dev_fail_shrunk(vq);
	if (max_chains)
		vq->hot_region = w.cur.idx;
	vq->last_avail = last;
	return (int)done;
}

int vp_vq_dev_push_burst(struct vp_vq_dev *vq, const struct vp_used *used,
			 unsigned n)
{
	vring_used_elem_t *ring = vq->vr.used->ring;
	uint16_t idx = vq->used_idx;

	if (unlikely(vq->broken))
		return -EIO;
	if (unlikely(n && !used))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (unlikely(used[i].id >= vq->vr.num))
			return -EINVAL;
	if (!n)
		return 0;
	for (unsigned i = 0; i < n; i++, idx++) {
		vring_used_elem_t *e = &ring[idx & vq->mask];

		STORE_RELAXED(&e->id, htole32(used[i].id));
		STORE_RELAXED(&e->len, htole32(used[i].len));
	}
	/*
	 * Entries before index: pairs with the driver's acquire load of
	 * used->idx (its read barrier after reading the index).
	 */
	STORE_RELEASE(&vq->vr.used->idx, htole16(idx));
	/* Entries stored into zero pages never reached the peer. */
	if (unlikely(vp_mem_is_shrunk(vq->mem)))
		return dev_fail_shrunk(vq);
	vq->used_idx = idx;
	return 0;
}

int vp_vq_dev_unpop(struct vp_vq_dev *vq, unsigned n)
{
	if (unlikely(vq->broken))
		return -EIO;
	/*
	 * Every popped chain gets exactly one used entry: the difference is
	 * what is in flight, and nothing older than that may be re-popped.
	 */
	if (n > (uint16_t)(vq->last_avail - vq->used_idx))
		return -EINVAL;
	vq->last_avail = (uint16_t)(vq->last_avail - n);
	return 0;
}

bool vp_vq_dev_need_signal(struct vp_vq_dev *vq)
{
	uint16_t old = vq->signalled_used, new = vq->used_idx;
	bool valid = vq->signalled_valid;

	/* Nothing pushed since the last answer: that answer covered it. */
	if (unlikely(vq->broken) || old == new)
		return false;
	vq->signalled_used = new;
	vq->signalled_valid = true;
	/*
	 * Our used->idx store before reading used_event / flags: pairs with
	 * the driver's full fence between writing used_event (or clearing
	 * NO_INTERRUPT) and re-reading used->idx, so one of us sees the other.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	if (vq->event_idx) {
		uint16_t ev = le16toh(LOAD_RELAXED(&vring_used_event(&vq->vr)));

		/* First answer since attach: we cannot know what it waited for. */
		return !valid || vring_need_event(ev, new, old);
	}
	return !(le16toh(LOAD_RELAXED(&vq->vr.avail->flags)) &
		 VRING_AVAIL_F_NO_INTERRUPT);
}

void vp_vq_dev_disable_notify(struct vp_vq_dev *vq)
{
	if (vq->broken)
		return;
	/*
	 * With EVENT_IDX the flags word must stay 0; avail_event is simply not
	 * moved any more, so the driver kicks at most once more.
	 */
	if (vq->event_idx || (vq->used_flags & VRING_USED_F_NO_NOTIFY))
		return;
	vq->used_flags |= VRING_USED_F_NO_NOTIFY;
	STORE_RELAXED(&vq->vr.used->flags, htole16(vq->used_flags));
}

bool vp_vq_dev_enable_notify(struct vp_vq_dev *vq)
{
	return vp_vq_dev_enable_notify_ahead(vq, 1) != 0;
}

unsigned vp_vq_dev_enable_notify_ahead(struct vp_vq_dev *vq, unsigned ahead)
{
	uint16_t idx;

	if (vq->broken)
		return 0;
	if (ahead < 1)
		ahead = 1;
	if (ahead > vq->vr.num)
		ahead = vq->vr.num;
	if (vq->event_idx) {
		/* The driver kicks when its avail->idx passes this value. */
		STORE_RELAXED(&vring_avail_event(&vq->vr),
			      htole16((uint16_t)(vq->last_avail + ahead - 1)));
	} else {
		vq->used_flags &= (uint16_t)~VRING_USED_F_NO_NOTIFY;
		STORE_RELAXED(&vq->vr.used->flags, htole16(vq->used_flags));
	}
	/*
	 * Request before re-reading avail->idx: pairs with the driver's full
	 * fence between its avail->idx store and reading avail_event / flags,
	 * so either it sees our request and kicks, or we see its buffers here.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	/* Acquire: pairs with the driver's release store of avail->idx. */
	idx = le16toh(LOAD_ACQUIRE(&vq->vr.avail->idx));
	return (uint16_t)(idx - vq->last_avail);
}

unsigned vp_vq_dev_avail_pending(struct vp_vq_dev *vq)
{
	int r;

	if (vq->broken)
		return 0;
	r = dev_refresh_avail(vq);
	return r < 0 ? 0 : (unsigned)r;
}

bool vp_vq_dev_broken(const struct vp_vq_dev *vq)
{
	return vq->broken || vp_mem_is_shrunk(vq->mem);
}

const char *vp_vq_dev_broken_reason(const struct vp_vq_dev *vq)
{
	return !vq->broken && vp_mem_is_shrunk(vq->mem) ? VP_MEM_SHRUNK_REASON : vq->reason;
}

uint16_t vp_vq_dev_last_avail(const struct vp_vq_dev *vq)
{
	return vq->last_avail;
}

uint16_t vp_vq_dev_num(const struct vp_vq_dev *vq)
{
	return (uint16_t)vq->vr.num;
}

/* ------------------------------------------------------------------------ */
/* Driver side                                                              */

/* Per descriptor index; the token fields are meaningful for heads only. */
struct drv_slot {
	void *token;		/* NULL: not outstanding */
	uint32_t len_in;	/* writable bytes posted in this chain */
	uint16_t ndesc;		/* ring descriptors the chain holds */
	uint16_t next;		/* free list link, or next in the chain */
};

struct vp_vq_drv {
	/* Hot. */
	struct vp_vq_pdrv *pk;		/* a packed ring: every call goes there */
	struct vring vr;
	struct drv_slot *slot;		/* num entries, our memory only */
	uint16_t mask;
	uint16_t free_head;
	uint16_t num_free;
	uint16_t avail_idx;		/* next avail slot to stage */
	uint16_t published;		/* avail->idx at the last publish */
	uint16_t last_used;		/* next used slot to collect */
	uint16_t avail_flags;		/* what we last wrote to avail->flags */
	uint16_t ind_max;		/* 0: no indirect tables */
	bool event_idx;
	bool broken;
	unsigned char *ind_area;
	uint64_t ind_gpa;
	/* Cold. */
	char name[VQ_NAME_MAX];
	char reason[VQ_REASON_MAX];
	struct drv_slot slots[];
};

__attribute__((cold, __noinline__, format(printf, 2, 3)))
static int drv_fail(struct vp_vq_drv *vq, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_broken(&vq->broken, vq->reason, vq->name, fmt, ap);
	va_end(ap);
	return -EIO;
}

int vp_vq_drv_new(struct vp_vq_drv **out, const struct vp_vq_drv_config *cfg)
{
	struct vp_vq_drv *vq;
	unsigned num;
	size_t sz;

	if (!out || !cfg)
		return -EINVAL;
	*out = NULL;
	if (cfg->packed) {
		struct vp_vq_pdrv *pk;
		int err = vp_pdrv_new(&pk, cfg);

		if (err)
			return err;
		vq = calloc(1, sizeof(*vq));
		if (!vq) {
			vp_pdrv_free(pk);
			return -ENOMEM;
		}
		vq->pk = pk;
		*out = vq;
		return 0;
	}
	num = cfg->num;
	if (!is_pow2(num) || num > VP_VQ_MAX_SIZE ||
	    !cfg->desc || !cfg->avail || !cfg->used)
		return -EINVAL;
	if (((uintptr_t)cfg->desc & (VRING_DESC_ALIGN_SIZE - 1)) ||
	    ((uintptr_t)cfg->avail & (VRING_AVAIL_ALIGN_SIZE - 1)) ||
	    ((uintptr_t)cfg->used & (VRING_USED_ALIGN_SIZE - 1)))
		return -EINVAL;
	/* Tables never exceed num entries: add() caps every chain at num. */
	if (cfg->indirect_max > 1) {
		if (!cfg->indirect_area ||
		    ((uintptr_t)cfg->indirect_area & (VRING_DESC_ALIGN_SIZE - 1)) ||
		    cfg->indirect_gpa > UINT64_MAX -
		    (uint64_t)num * cfg->indirect_max * DESC_SIZE)
			return -EINVAL;
	}

	sz = sizeof(*vq) + num * sizeof(struct drv_slot);
	vq = walk_zalloc_lines(sz);
	if (!vq)
		return -ENOMEM;
	vq->vr.num = num;
	vq->vr.desc = cfg->desc;
	vq->vr.avail = cfg->avail;
	vq->vr.used = cfg->used;
	vq->slot = vq->slots;
	vq->mask = (uint16_t)(num - 1);
	vq->num_free = (uint16_t)num;
	vq->event_idx = cfg->event_idx;
	if (cfg->indirect_max > 1) {
		vq->ind_max = cfg->indirect_max;
		vq->ind_area = cfg->indirect_area;
		vq->ind_gpa = cfg->indirect_gpa;
	}
	for (unsigned i = 0; i < num; i++)
		vq->slot[i].next = (uint16_t)(i + 1);	/* the last one is never followed */
	set_name(vq->name, cfg->name);

	memset(cfg->desc, 0, VP_VQ_DESC_BYTES(num));
	memset(cfg->avail, 0, VP_VQ_AVAIL_BYTES(num));
	memset(cfg->used, 0, VP_VQ_USED_BYTES(num));
	*out = vq;
	return 0;
}

void vp_vq_drv_free(struct vp_vq_drv *vq)
{
	if (vq)
		vp_pdrv_free(vq->pk);
	free(vq);
}

/*
 * Our own ring: plain stores, published later by the release in publish().
 * A descriptor that already holds these values (a buffer posted again in
 * the slot it had) is not stored to: the store would take the line out of
 * the device's cache for nothing, and it must fetch it back across cores.
 */
static inline void desc_put(struct vring_desc *d, uint64_t addr, uint32_t len,
			    uint16_t flags, uint16_t next)
{
	struct vring_desc v = {
		.addr = htole64(addr), .len = htole32(len),
		.flags = htole16(flags), .next = htole16(next),
	};

	if (memcmp(d, &v, sizeof(v)))
		memcpy(d, &v, sizeof(v));
}

static inline void drv_stage(struct vp_vq_drv *vq, uint16_t head, void *token,
			     uint32_t len_in, uint16_t ndesc)
{
	struct drv_slot *s = &vq->slot[head];

	s->token = token;
	s->len_in = len_in;
	s->ndesc = ndesc;
	/* Same reason as desc_put(): leave an unchanged slot alone. */
	if (vq->vr.avail->ring[vq->avail_idx & vq->mask] != htole16(head))
		vq->vr.avail->ring[vq->avail_idx & vq->mask] = htole16(head);
	vq->avail_idx++;
}

int vp_vq_drv_add(struct vp_vq_drv *vq, const struct vp_buf *out,
		  unsigned nout, const struct vp_buf *in, unsigned nin,
		  void *token)
{
	uint32_t len_in = 0;
	uint16_t head, idx, need;
	unsigned n;
	int r;

	if (vq->pk)
		return vp_pdrv_add(vq->pk, out, nout, in, nin, token);
	if (unlikely(vq->broken))
		return -EIO;
	r = drv_add_check(out, nout, in, nin, token, vq->vr.num, vq->num_free, vq->ind_max,
			  &len_in);
	if (r < 0)
		return r;
	n = nout + nin;
	need = (uint16_t)r;
	head = vq->free_head;
	if (need == 1 && n > 1) {
		size_t off = ((size_t)head * vq->ind_max) * DESC_SIZE;
		struct vring_desc *t = (struct vring_desc *)(void *)(vq->ind_area + off);

		for (unsigned k = 0; k < n; k++) {
			const struct vp_buf *b = k < nout ? &out[k] : &in[k - nout];

			desc_put(&t[k], b->addr, b->len,
				 (uint16_t)((k < nout ? 0 : VRING_DESC_F_WRITE) |
					    (k + 1 < n ? VRING_DESC_F_NEXT : 0)),
				 (uint16_t)(k + 1 < n ? k + 1 : 0));
		}
		desc_put(&vq->vr.desc[head], vq->ind_gpa + off,
			 (uint32_t)(n * DESC_SIZE), VRING_DESC_F_INDIRECT, 0);
		idx = vq->slot[head].next;
	} else {
		idx = head;
		for (unsigned k = 0; k < n; k++) {
			const struct vp_buf *b = k < nout ? &out[k] : &in[k - nout];
			uint16_t nx = vq->slot[idx].next;

			desc_put(&vq->vr.desc[idx], b->addr, b->len,
				 (uint16_t)((k < nout ? 0 : VRING_DESC_F_WRITE) |
					    (k + 1 < n ? VRING_DESC_F_NEXT : 0)),
				 k + 1 < n ? nx : 0);
			idx = nx;
		}
	}
	vq->free_head = idx;
	vq->num_free = (uint16_t)(vq->num_free - need);
	drv_stage(vq, head, token, len_in, need);
	return 0;
}

int vp_vq_drv_add_burst(struct vp_vq_drv *vq, const struct vp_buf *bufs,
			unsigned n, bool device_writable, void *const *tokens)
{
	uint16_t flags = device_writable ? VRING_DESC_F_WRITE : 0;
	uint16_t head = vq->free_head;
	unsigned k;

	if (vq->pk)
		return vp_pdrv_add_burst(vq->pk, bufs, n, device_writable, tokens);
	if (unlikely(vq->broken))
		return -EIO;
	if (n && (!bufs || !tokens))
		return -EINVAL;
	for (k = 0; k < n; k++)
		if (!tokens[k])
			return -EINVAL;
	if (n > vq->num_free)
		n = vq->num_free;
	{
		/* Locals: stores to the rings would otherwise force reloads. */
		struct drv_slot *slot = vq->slot;
		struct vring_desc *desc = vq->vr.desc;
		__virtio16 *ring = vq->vr.avail->ring;
		uint16_t mask = vq->mask, aidx = vq->avail_idx;

		for (k = 0; k < n; k++) {
			struct drv_slot *sl = &slot[head];
			uint16_t nx = sl->next;
			__virtio16 h = htole16(head);

			desc_put(&desc[head], bufs[k].addr, bufs[k].len, flags, 0);
			sl->token = tokens[k];
			sl->len_in = device_writable ? bufs[k].len : 0;
			sl->ndesc = 1;
			/* As in drv_stage(): leave an unchanged slot alone. */
			if (ring[aidx & mask] != h)
				ring[aidx & mask] = h;
			aidx++;
			head = nx;
		}
		vq->avail_idx = aidx;
	}
	vq->free_head = head;
	vq->num_free = (uint16_t)(vq->num_free - n);
	return (int)n;
}

bool vp_vq_drv_publish(struct vp_vq_drv *vq)
{
	uint16_t old = vq->published, new = vq->avail_idx;

	if (vq->pk)
		return vp_pdrv_publish(vq->pk);
	if (unlikely(vq->broken) || old == new)
		return false;
	/*
	 * Descriptors and slots before the index: pairs with the device's
	 * acquire load of avail->idx.
	 */
	STORE_RELEASE(&vq->vr.avail->idx, htole16(new));
	vq->published = new;
	/*
	 * Index before avail_event / flags: pairs with the device's full fence
	 * between writing avail_event (clearing NO_NOTIFY) and re-reading
	 * avail->idx in enable_notify.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	if (vq->event_idx)
		return vring_need_event(le16toh(LOAD_RELAXED(&vring_avail_event(&vq->vr))),
					new, old);
	return !(le16toh(LOAD_RELAXED(&vq->vr.used->flags)) & VRING_USED_F_NO_NOTIFY);
}

int vp_vq_drv_get_used(struct vp_vq_drv *vq, void **tokens, uint32_t *lens,
		       unsigned max)
{
	const vring_used_elem_t *ring;
	uint16_t last = vq->last_used, idx, pending;
	/* Locals: stores through tokens[] would otherwise force reloads. */
	struct drv_slot *slot = vq->slot;
	uint16_t mask = vq->mask, free_head = vq->free_head, num_free = vq->num_free;
	unsigned num = vq->vr.num;
	unsigned k;

	if (vq->pk)
		return vp_pdrv_get_used(vq->pk, tokens, lens, max);
	if (unlikely(vq->broken))
		return -EIO;
	ring = vq->vr.used->ring;
	/*
	 * Acquire: pairs with the device's release store of used->idx, so the
	 * entries below it are visible.
	 */
	idx = le16toh(LOAD_ACQUIRE(&vq->vr.used->idx));
	pending = (uint16_t)(idx - last);
	if (unlikely(pending > vq->vr.num))
		return drv_fail(vq, "used idx %u is %u ahead of last_used %u (num %u)",
				idx, pending, last, vq->vr.num);
	if (max > pending)
		max = pending;
	for (k = 0; k < max; k++, last++) {
		const vring_used_elem_t *e = &ring[last & mask];
		uint32_t id = le32toh(LOAD_RELAXED(&e->id));
		uint32_t len = le32toh(LOAD_RELAXED(&e->len));
		struct drv_slot *s;
		uint16_t tail;

		if (unlikely(id >= num)) {
			drv_fail(vq, "used slot %u: id %u >= num %u", last, id, num);
			break;
		}
		s = &slot[id];
		if (unlikely(!s->token)) {
			drv_fail(vq, "used slot %u: id %u not outstanding", last, id);
			break;
		}
		if (unlikely(len > s->len_in)) {
			drv_fail(vq, "used slot %u: id %u len %u > %u writable bytes posted",
				 last, id, len, s->len_in);
			break;
		}
		tokens[k] = s->token;
		if (lens)
			lens[k] = len;
		s->token = NULL;
		/* Our links still chain the descriptors: splice them back. */
		tail = (uint16_t)id;
		for (unsigned j = 1; j < s->ndesc; j++)
			tail = slot[tail].next;
		slot[tail].next = free_head;
		free_head = (uint16_t)id;
		num_free = (uint16_t)(num_free + s->ndesc);
	}
	vq->free_head = free_head;
	vq->num_free = num_free;
	vq->last_used = last;
	/* Hand back what was good before a bad entry, so no token leaks. */
	if (unlikely(vq->broken) && k == 0)
		return -EIO;
	return (int)k;
}

unsigned vp_vq_drv_used_pending(const struct vp_vq_drv *vq)
{
	if (vq->pk)
		return vp_pdrv_used_pending(vq->pk);
	if (vq->broken)
		return 0;
	/* Acquire: pairs with the device's release store of used->idx. */
	return (uint16_t)(le16toh(LOAD_ACQUIRE(&vq->vr.used->idx)) - vq->last_used);
}

bool vp_vq_drv_enable_cb(struct vp_vq_drv *vq)
{
	return vp_vq_drv_enable_cb_ahead(vq, 1, NULL) != 0;
}

unsigned vp_vq_drv_enable_cb_ahead(struct vp_vq_drv *vq, unsigned ahead, unsigned *mark)
{
	/* Heads given to the device and not yet collected: more never come. */
	unsigned out = (uint16_t)(vq->published - vq->last_used);
	uint16_t idx;

	if (vq->pk) {
		/* Not moderated (the packed event area): a call per buffer. */
		if (mark)
			*mark = 1;
		return vp_pdrv_enable_cb(vq->pk) ? 1 : 0;
	}
	if (ahead > out)
		ahead = out;
	if (ahead < 1 || !vq->event_idx)
		ahead = 1;
	if (mark)
		*mark = ahead;
	if (vq->broken)
		return 0;
	if (vq->event_idx) {
		/* The device calls when its used->idx passes this value. */
		STORE_RELAXED(&vring_used_event(&vq->vr),
			      htole16((uint16_t)(vq->last_used + ahead - 1)));
	} else {
		vq->avail_flags &= (uint16_t)~VRING_AVAIL_F_NO_INTERRUPT;
		STORE_RELAXED(&vq->vr.avail->flags, htole16(vq->avail_flags));
	}
	/*
	 * Request before re-reading used->idx: pairs with the device's full
	 * fence between its used->idx store and reading used_event / flags.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	/* Acquire: pairs with the device's release store of used->idx. */
	idx = le16toh(LOAD_ACQUIRE(&vq->vr.used->idx));
	return (uint16_t)(idx - vq->last_used);
}

void vp_vq_drv_disable_cb(struct vp_vq_drv *vq)
{
	if (vq->pk) {
		vp_pdrv_disable_cb(vq->pk);
		return;
	}
	if (vq->broken)
		return;
	if (vq->event_idx) {
		/*
		 * An index already passed: no interrupt until the used index
		 * comes round again. A hint, as the spec allows.
		 */
		STORE_RELAXED(&vring_used_event(&vq->vr),
			      htole16((uint16_t)(vq->last_used - 1)));
		return;
	}
	if (vq->avail_flags & VRING_AVAIL_F_NO_INTERRUPT)
		return;
	vq->avail_flags |= VRING_AVAIL_F_NO_INTERRUPT;
	STORE_RELAXED(&vq->vr.avail->flags, htole16(vq->avail_flags));
}

unsigned vp_vq_drv_num_free(const struct vp_vq_drv *vq)
{
	if (vq->pk)
		return vp_pdrv_num_free(vq->pk);
	return vq->num_free;
}

bool vp_vq_drv_broken(const struct vp_vq_drv *vq)
{
	if (vq->pk)
		return vp_pdrv_broken(vq->pk);
	return vq->broken;
}

const char *vp_vq_drv_broken_reason(const struct vp_vq_drv *vq)
{
	if (vq->pk)
		return vp_pdrv_broken_reason(vq->pk);
	return vq->reason;
}
