/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packed virtqueues (VIRTIO_F_RING_PACKED). Device side: the peer's ring
 * walked by us, with the split walker's design (vring.c) and its shared
 * steps (vring_walk.h). Driver side (at the end): our own ring behind the
 * vp_vq_drv_* calls, with the split driver side's checks on what the device
 * writes back and the same availability rule (pk_is_avail()'s bits).
 *
 * Security model: vring.c's, plus what the packed layout adds.
 *  - Untrusted: every descriptor (addr, len, id, flags) and the driver's
 *    event-suppression words, which may change between any two reads. Each
 *    field is loaded once into a local; only the copy is checked and used.
 *  - Availability is decided by the flags alone (avail bit == our wrap
 *    counter, used bit != it). A chain's head is published last by the
 *    driver, so every later descriptor of the chain must already be
 *    available when we see the head: one that is not breaks the queue.
 *  - A chain can take at most the descriptors not in flight: the walk never
 *    reaches ring slots we popped and have not yet written used entries
 *    over, whatever the wrap bits say (no chain longer than that, hence no
 *    loop).
 *  - Buffer ids are the driver's: < num and not already in flight, or the
 *    queue breaks. Which ids are in flight and how many ring slots each
 *    holds is kept in our memory, never read back from the ring.
 *  - Indirect tables: the split rules (negotiated, never nested nor chained
 *    on, 1..num whole descriptors in readable memory); their entries are
 *    read in order and their NEXT flags and ids ignored, as the spec says.
 *  - Driver side: the device writes used descriptors over our ring. Only
 *    the slot where the next one is due is read, and only while a published
 *    chain is outstanding; it must hold our descriptor of this lap or a used
 *    one with this lap's wrap bits, else the queue breaks. Its id must be
 *    outstanding and its length within the writable bytes posted; how many
 *    slots the chain held (where the next one is due) is ours, never read
 *    back.
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

#define PK_AVAIL  (1u << VRING_PACKED_DESC_F_AVAIL)	/* <linux/virtio_ring.h> */
#define PK_USED   (1u << VRING_PACKED_DESC_F_USED)
#define PK_WRAP   (1u << VRING_PACKED_EVENT_F_WRAP_CTR)

/* Per buffer id. */
struct pk_inflight {
	uint32_t seq;		/* pops counter when popped: finds its log entry */
	uint16_t ndesc;		/* ring slots the chain holds; 0: not in flight */
	uint16_t mark;		/* push_burst's duplicate check: == push_gen */
};

/* The last num chains popped, for unpop. */
struct pk_pop {
	uint16_t id;
	uint16_t pos;
	bool wrap;
};

struct vp_vq_packed {
	/* Hot. */
	struct vring_packed_desc *desc;
	const struct vring_packed_desc_event *drv_ev;	/* driver area: we read */
	struct vring_packed_desc_event *dev_ev;		/* device area: we write */
	const struct vp_mem *mem;
	struct pk_inflight *inflight;	/* num entries, our memory only */
	struct pk_pop *log;		/* num entries */
	uint64_t pops;			/* chains popped since attach, minus unpopped */
	uint16_t num;
	uint16_t last_avail;		/* next slot to pop */
	uint16_t used_idx;		/* next slot to write a used descriptor in */
	uint16_t free;			/* slots not in flight */
	uint16_t unsignalled;		/* slots used since the last signal answer, <= num */
	uint16_t dev_flags;		/* what we last wrote to the device area's flags */
	uint16_t push_gen;		/* stamp of the current push_burst, never 0 */
	uint16_t log_at;		/* next log entry: pops % num, kept without a division */
	bool avail_wrap, used_wrap;
	bool signalled_valid;
	bool event_idx;
	bool indirect;
	bool broken;
	unsigned hot_region;
	/* Cold. */
	char name[VQ_NAME_MAX];
	char reason[VQ_REASON_MAX];
};

/* Mark the queue (a struct vp_vq_packed) broken; returns -EIO. Also
 * vring_walk.h's vq_fail_fn for it. */
__attribute__((cold, __noinline__, format(printf, 2, 3)))
static int pk_fail(void *q, const char *fmt, ...)
{
	struct vp_vq_packed *vq = q;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vq_vfail(vq->mem, &vq->broken, vq->reason, vq->name, fmt, ap);
	va_end(ap);
	return r;
}

static inline bool pk_is_avail(uint16_t flags, bool wrap)
{
	return !!(flags & PK_AVAIL) == wrap && !!(flags & PK_USED) != wrap;
}

/* The rest of a ring descriptor whose flags the caller loaded. */
static inline void pk_fetch_ring(struct vring_packed_desc *d, const struct vring_packed_desc *s)
{
	d->addr = le64toh(LOAD_RELAXED(&s->addr));
	d->len = le32toh(LOAD_RELAXED(&s->len));
	d->id = le16toh(LOAD_RELAXED(&s->id));
}

/* An indirect table entry, which may sit at any address. */
static inline void pk_fetch_table(struct vring_packed_desc *d, const unsigned char *p)
{
	d->addr = le64toh(*(const volatile u64_una *)(p + 0));
	d->len = le32toh(*(const volatile u32_una *)(p + 8));
	d->flags = le16toh(*(const volatile u16_una *)(p + 14));
}

int vp_vq_packed_new(struct vp_vq_packed **out, const struct vp_mem *mem,
		     const struct vp_vq_packed_config *cfg)
{
	const char *name = cfg && cfg->name ? cfg->name : "vq";
	void *desc, *drv_ev, *dev_ev;
	struct vp_vq_packed *vq;
	unsigned num, pos;
	int err;

	if (!out || !mem || !cfg)
		return -EINVAL;
	*out = NULL;
	num = cfg->num;
	pos = cfg->last_avail_idx & ~PK_WRAP;
	if (num == 0 || num > VP_VQ_MAX_SIZE || pos >= num) {
		vp_log(VP_LOG_WARN, "vring %s: bad packed ring size %u or position %u",
		       name, num, pos);
		return -EINVAL;
	}
	if (cfg->ring_space != VP_ADDR_GPA && cfg->ring_space != VP_ADDR_UVA)
		return -EINVAL;
	if ((cfg->desc & 15) || (cfg->driver & 3) || (cfg->device & 3)) {
		vp_log(VP_LOG_WARN, "vring %s: misaligned packed ring desc 0x%" PRIx64
		       " driver 0x%" PRIx64 " device 0x%" PRIx64, name,
		       cfg->desc, cfg->driver, cfg->device);
		return -EINVAL;
	}
	/* Used descriptors are written over the ring: it must be writable. */
	err = map_ring_part(mem, cfg->ring_space, cfg->desc, VP_VQ_PACKED_DESC_BYTES(num),
			    VP_MEM_RW, &desc);
	if (!err)
		err = map_ring_part(mem, cfg->ring_space, cfg->driver,
				    sizeof(struct vring_packed_desc_event), VP_MEM_READ, &drv_ev);
	if (!err)
		err = map_ring_part(mem, cfg->ring_space, cfg->device,
				    sizeof(struct vring_packed_desc_event), VP_MEM_RW, &dev_ev);
	if (err) {
		vp_log(VP_LOG_WARN, "vring %s: packed ring desc 0x%" PRIx64 " driver 0x%"
		       PRIx64 " device 0x%" PRIx64 " num %u: %s", name, cfg->desc,
		       cfg->driver, cfg->device, num,
		       err == -EACCES ? "ring or device area not writable"
				      : "not inside one region");
		return err;
	}
	if (((uintptr_t)desc & 15) || ((uintptr_t)drv_ev & 3) || ((uintptr_t)dev_ev & 3)) {
		vp_log(VP_LOG_WARN, "vring %s: ring misaligned in local memory", name);
		return -EINVAL;
	}

	vq = walk_zalloc_lines(sizeof(*vq));
	if (!vq)
		return -ENOMEM;
	vq->inflight = calloc(num, sizeof(*vq->inflight));
	vq->log = calloc(num, sizeof(*vq->log));
	if (!vq->inflight || !vq->log) {
		vp_vq_packed_free(vq);
		return -ENOMEM;
	}
	vq->desc = desc;
	vq->drv_ev = drv_ev;
	vq->dev_ev = dev_ev;
	vq->mem = mem;
	vq->num = (uint16_t)num;
	vq->last_avail = vq->used_idx = (uint16_t)pos;
	vq->avail_wrap = vq->used_wrap = !!(cfg->last_avail_idx & PK_WRAP);
	vq->free = (uint16_t)num;
	vq->event_idx = cfg->event_idx;
	vq->indirect = cfg->indirect;
	set_name(vq->name, cfg->name);
	*out = vq;
	return 0;
}

void vp_vq_packed_free(struct vp_vq_packed *vq)
{
	if (!vq)
		return;
	free(vq->inflight);
	free(vq->log);
	free(vq);
}

/*
 * Walk the chain whose head at pos (wrap counter wrap) has flags hflags,
 * already seen available. Fills iov[0 .. iov_max) and ch (head = buffer
 * id), *slots = ring descriptors it holds. Returns 0, -ENOBUFS (nothing
 * consumed) or -EIO (queue now broken).
 */
static int pk_walk(struct vp_vq_packed *vq, struct walk_ctx *w, unsigned pos, bool wrap,
		   uint16_t hflags, unsigned free, struct vp_chain *ch, struct iovec *iov,
		   unsigned iov_max, unsigned *slots)
{
	struct walk_acc a = { 0 };
	struct vring_packed_desc d;
	unsigned p = pos, n = 0, num = w->num;
	uint16_t flags = hflags;
	bool wr = wrap;
	int r;

	/* n_out and n_in are 16 bits wide. */
	if (iov_max > UINT16_MAX)
		iov_max = UINT16_MAX;
	for (;;) {
		if (n == free)
			return pk_fail(vq, "chain at desc %u longer than the %u descriptors not in flight (loop?)",
				       pos, free);
		if (n) {
			flags = le16toh(LOAD_RELAXED(&vq->desc[p].flags));
			if (!pk_is_avail(flags, wr))
				return pk_fail(vq, "chain at desc %u: desc %u not available (flags 0x%x, wrap counter %u)",
					       pos, p, flags, (unsigned)wr);
		}
		pk_fetch_ring(&d, &vq->desc[p]);
		n++;
		if (flags & VRING_DESC_F_INDIRECT) {
			const unsigned char *tbl;
			unsigned entries;

			tbl = walk_indirect(vq, pk_fail, w, p, pos, false, flags & VRING_DESC_F_NEXT,
					    d.addr, d.len, &entries);
			if (!tbl)
				return -EIO;
			for (unsigned k = 0; k < entries; k++) {
				struct vring_packed_desc t;

				pk_fetch_table(&t, tbl + (size_t)k * WALK_DESC_SIZE);
				if (t.flags & VRING_DESC_F_INDIRECT) {
					walk_indirect(vq, pk_fail, w, k, pos, true, false, t.addr,
						      t.len, &entries);
					return -EIO;
				}
				r = walk_buf(vq, pk_fail, w, &a, "indirect entry", k, pos, t.addr,
					     t.len, t.flags & VRING_DESC_F_WRITE, iov, iov_max);
				if (r < 0)
					return r;
			}
		} else {
			r = walk_buf(vq, pk_fail, w, &a, "desc", p, pos, d.addr, d.len,
				     flags & VRING_DESC_F_WRITE, iov, iov_max);
			if (r < 0)
				return r;
		}
		if (++p == num) {
			p = 0;
			wr = !wr;
		}
		if (!(flags & VRING_DESC_F_NEXT))
			break;
	}
	/* The buffer id is the last descriptor's. */
	if (d.id >= num)
		return pk_fail(vq, "chain at desc %u: buffer id %u >= num %u", pos, d.id, num);
	if (vq->inflight[d.id].ndesc)
		return pk_fail(vq, "chain at desc %u: buffer id %u already in flight", pos, d.id);
	r = walk_finish(vq, pk_fail, &a, pos, ch, iov);
	if (r < 0)
		return r;
	ch->head = d.id;
	*slots = n;
	return 0;
}

int vp_vq_packed_pop_burst(struct vp_vq_packed *vq, struct vp_chain *chains,
			   unsigned max_chains, struct iovec *iov, unsigned iov_max)
{
	struct walk_ctx w;
	unsigned pos = vq->last_avail, free = vq->free, done, iov_used = 0;
	bool wrap = vq->avail_wrap;
	int r;

	if (unlikely(vq->broken))
		return -EIO;
	/*
	 * Nothing there (a poll loop's usual answer): no walk set-up. The
	 * acquire is repeated for the head in the loop below.
	 */
	if (!max_chains || !pk_is_avail(le16toh(LOAD_ACQUIRE(&vq->desc[pos].flags)), wrap)) {
		if (unlikely(vp_mem_is_shrunk(vq->mem)))
			return pk_fail(vq, "%s", VP_MEM_SHRUNK_REASON);
		return 0;
	}
	w = (struct walk_ctx){
		.desc = (const unsigned char *)vq->desc, .mem = vq->mem,
		.num = vq->num, .indirect = vq->indirect,
	};
	vp_mem_cursor_load(&w.cur, w.mem, vq->hot_region);
	for (done = 0; done < max_chains; done++) {
		/* Acquire: pairs with the driver's release of the head's flags,
		 * written after every other field of the chain. */
		uint16_t flags = le16toh(LOAD_ACQUIRE(&vq->desc[pos].flags));
		struct vp_chain *ch = &chains[done];
		struct pk_pop *lg;
		unsigned slots = 0;

		if (!pk_is_avail(flags, wrap))
			break;
		/*
		 * The common chain, as split's pop_burst has it: one direct,
		 * non-empty descriptor in the hot region with the access it
		 * asks for, and an id not in flight. Anything else, or no room,
		 * takes the full walk, which checks (and refuses) it again.
		 */
		if (likely(!(flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT)) &&
			   iov_used < iov_max && free)) {
			struct vring_packed_desc d;
			bool wr = flags & VRING_DESC_F_WRITE;
			void *p;

			pk_fetch_ring(&d, &vq->desc[pos]);
			if (likely(d.len && d.id < w.num && !vq->inflight[d.id].ndesc &&
				   vp_mem_cursor_fits(&w.cur, d.addr, d.len,
						      wr ? VP_MEM_WRITE : VP_MEM_READ, &p))) {
				iov[iov_used].iov_base = p;
				iov[iov_used].iov_len = d.len;
				ch->head = d.id;
				ch->n_out = !wr;
				ch->n_in = wr;
				ch->len_out = wr ? 0 : d.len;
				ch->len_in = wr ? d.len : 0;
				ch->iov = iov + iov_used;
				slots = 1;
				goto popped;
			}
		}
		r = pk_walk(vq, &w, pos, wrap, flags, free, ch, iov + iov_used,
			    iov_max - iov_used, &slots);
		if (unlikely(r < 0)) {
			if (r == -ENOBUFS && done)
				break;
			/* -ENOBUFS: nothing popped. -EIO: the queue is broken,
			 * the chains recorded above do not matter any more. */
			return r;
		}
popped:
		/* Recorded at once so a repeated id later in the burst is seen. */
		vq->inflight[ch->head].ndesc = (uint16_t)slots;
		vq->inflight[ch->head].seq = (uint32_t)vq->pops;
		lg = &vq->log[vq->log_at];
		vq->log_at = (uint16_t)(vq->log_at + 1u == w.num ? 0 : vq->log_at + 1u);
		lg->id = ch->head;
		lg->pos = (uint16_t)pos;
		lg->wrap = wrap;
		vq->pops++;
		free -= slots;
		pos += slots;
		if (pos >= w.num) {
			pos -= w.num;
			wrap = !wrap;
		}
		iov_used += ch->n_out + ch->n_in;
	}
	if (unlikely(vp_mem_is_shrunk(w.mem)))
		return pk_fail(vq, "%s", VP_MEM_SHRUNK_REASON);
	vq->hot_region = w.cur.idx;
	vq->last_avail = (uint16_t)pos;
	vq->avail_wrap = wrap;
	vq->free = (uint16_t)free;
	return (int)done;
}

int vp_vq_packed_push_burst(struct vp_vq_packed *vq, const struct vp_used *used, unsigned n)
{
	struct vring_packed_desc *first = NULL;
	unsigned pos = vq->used_idx, i, slots = 0;
	bool wrap = vq->used_wrap;
	uint16_t first_flags = 0;

	if (unlikely(vq->broken))
		return -EIO;
	if (unlikely(n && !used))
		return -EINVAL;
	/*
	 * Every id popped and not pushed, none twice: else nothing is written.
	 * An id seen twice carries this burst's stamp; stamps need no clearing
	 * until the 16-bit counter comes round, when all are wiped once.
	 */
	if (unlikely(++vq->push_gen == 0)) {
		for (i = 0; i < vq->num; i++)
			vq->inflight[i].mark = 0;
		vq->push_gen = 1;
	}
	for (i = 0; i < n; i++) {
		struct pk_inflight *f;

		if (unlikely(used[i].id >= vq->num))
			return -EINVAL;
		f = &vq->inflight[used[i].id];
		if (unlikely(!f->ndesc || f->mark == vq->push_gen))
			return -EINVAL;
		f->mark = vq->push_gen;
	}

	for (i = 0; i < n; i++) {
		struct pk_inflight *f = &vq->inflight[used[i].id];
		struct vring_packed_desc *e = &vq->desc[pos];
		uint16_t flags = (uint16_t)((wrap ? PK_AVAIL | PK_USED : 0) |
					    (used[i].len ? VRING_DESC_F_WRITE : 0));

		STORE_RELAXED(&e->id, htole16((uint16_t)used[i].id));
		STORE_RELAXED(&e->len, htole32(used[i].len));
		/*
		 * Each entry's id and len before its flags; the first entry's
		 * flags last of all, so the driver, which reads in ring order,
		 * sees the whole batch at once.
		 */
		if (i == 0) {
			first = e;
			first_flags = flags;
		} else {
			STORE_RELEASE(&e->flags, htole16(flags));
		}
		pos += f->ndesc;
		if (pos >= vq->num) {
			pos -= vq->num;
			wrap = !wrap;
		}
		slots += f->ndesc;
		f->ndesc = 0;
	}
	vq->free = (uint16_t)(vq->free + slots);
	slots += vq->unsignalled;
	vq->unsignalled = (uint16_t)(slots > vq->num ? vq->num : slots);
	if (first)
		STORE_RELEASE(&first->flags, htole16(first_flags));
	vq->used_idx = (uint16_t)pos;
	vq->used_wrap = wrap;
	/* Entries stored into zero pages never reached the peer. */
	if (unlikely(vp_mem_is_shrunk(vq->mem)))
		return pk_fail(vq, "%s", VP_MEM_SHRUNK_REASON);
	return 0;
}

int vp_vq_packed_unpop(struct vp_vq_packed *vq, unsigned n)
{
	unsigned slots = 0;
	const struct pk_pop *oldest = NULL;

	if (unlikely(vq->broken))
		return -EIO;
	if (n > vq->pops || n > vq->num)
		return -EINVAL;
	/* The last n popped, all still in flight (this pop of their id). */
	for (unsigned k = 1; k <= n; k++) {
		uint64_t seq = vq->pops - k;
		const struct pk_pop *lg = &vq->log[seq % vq->num];
		const struct pk_inflight *f = &vq->inflight[lg->id];

		if (!f->ndesc || f->seq != (uint32_t)seq)
			return -EINVAL;
		slots += f->ndesc;
		oldest = lg;
	}
	/* They are the newest in-flight slots, never under a used entry. */
	if (slots > (unsigned)(vq->num - vq->free))
		return -EINVAL;
	if (!n)
		return 0;
	for (unsigned k = 1; k <= n; k++)
		vq->inflight[vq->log[(vq->pops - k) % vq->num].id].ndesc = 0;
	vq->pops -= n;
	vq->log_at = (uint16_t)(vq->pops % vq->num);
	vq->free = (uint16_t)(vq->free + slots);
	vq->last_avail = oldest->pos;
	vq->avail_wrap = oldest->wrap;
	return 0;
}

/*
 * After our ring writes: does the peer's event-suppression area ask to be
 * notified of the slots from old to new (positions modulo 2^16, new on lap
 * wrap of a ring of num)? The full fence first pairs with the peer's fence
 * between writing its area and re-reading the ring (pk_ev_request()).
 * unknown: with EVENT_IDX, we cannot tell what the peer waited for: yes.
 */
static bool pk_ev_wants(const struct vring_packed_desc_event *ev, bool event_idx, bool wrap,
			unsigned num, uint16_t new, uint16_t old, bool unknown)
{
	uint16_t flags, off_wrap, at;

	atomic_thread_fence(memory_order_seq_cst);
	flags = le16toh(LOAD_RELAXED(&ev->flags));
	if (flags == VRING_PACKED_EVENT_FLAG_DISABLE)
		return false;
	/* ENABLE, or anything we do not know: notifying too often is safe. */
	if (flags != VRING_PACKED_EVENT_FLAG_DESC || !event_idx || unknown)
		return true;
	off_wrap = le16toh(LOAD_RELAXED(&ev->off_wrap));
	at = off_wrap & (uint16_t)~PK_WRAP;
	/* An offset on the other lap is num slots back (modulo 2^16). */
	if (!!(off_wrap & PK_WRAP) != wrap)
		at = (uint16_t)(at - num);
	return vring_need_event(at, new, old);
}

/* Our event-suppression area's flags (either side's): stored only when they
 * change, *cur being what we last stored. */
static void pk_ev_set_flags(struct vring_packed_desc_event *ev, uint16_t *cur, uint16_t flags)
{
	if (*cur == flags)
		return;
	*cur = flags;
	STORE_RELAXED(&ev->flags, htole16(flags));
}

/*
 * Ask the peer to notify us: at slot pos of lap wrap with EVENT_IDX, at
 * every one otherwise. Then a full fence, so the caller's re-read of the
 * ring comes after the request: it pairs with the peer's full fence
 * between its ring write and reading this area, so either the peer
 * notifies or the caller sees its write.
 */
static void pk_ev_request(struct vring_packed_desc_event *ev, uint16_t *cur, bool event_idx,
			  uint16_t pos, bool wrap)
{
	if (event_idx) {
		STORE_RELAXED(&ev->off_wrap, htole16((uint16_t)(pos | (wrap ? PK_WRAP : 0))));
		pk_ev_set_flags(ev, cur, VRING_PACKED_EVENT_FLAG_DESC);
	} else {
		pk_ev_set_flags(ev, cur, VRING_PACKED_EVENT_FLAG_ENABLE);
	}
	atomic_thread_fence(memory_order_seq_cst);
}

bool vp_vq_packed_need_signal(struct vp_vq_packed *vq)
{
	uint16_t since = vq->unsignalled, new, old;
	bool valid = vq->signalled_valid;

	/* Nothing pushed since the last answer: that answer covered it. */
	if (unlikely(vq->broken) || !since)
		return false;
	vq->unsignalled = 0;
	vq->signalled_valid = true;
	new = vq->used_idx;
	old = (uint16_t)(new - since);
	/* Our used flags before the driver's area. The first answer since
	 * attach cannot know what the driver waited for. */
	return pk_ev_wants(vq->drv_ev, vq->event_idx, vq->used_wrap, vq->num, new, old, !valid);
}

void vp_vq_packed_disable_notify(struct vp_vq_packed *vq)
{
	if (vq->broken)
		return;
	pk_ev_set_flags(vq->dev_ev, &vq->dev_flags, VRING_PACKED_EVENT_FLAG_DISABLE);
}

bool vp_vq_packed_avail(struct vp_vq_packed *vq)
{
	if (vq->broken)
		return false;
	/* Acquire: pairs with the driver's release of the head's flags. */
	return pk_is_avail(le16toh(LOAD_ACQUIRE(&vq->desc[vq->last_avail].flags)),
			   vq->avail_wrap);
}

unsigned vp_vq_packed_avail_count(struct vp_vq_packed *vq, unsigned max)
{
	uint16_t pos = vq->last_avail;
	bool wrap = vq->avail_wrap;
	unsigned n = 0, lim = max < vq->free ? max : vq->free;

	if (vq->broken)
		return 0;
	/* Acquire each: pairs with the driver's release of a head's flags. Only
	 * flags are read, and nothing is kept: pop checks every chain anew. */
	while (n < lim && pk_is_avail(le16toh(LOAD_ACQUIRE(&vq->desc[pos].flags)), wrap)) {
		n++;
		if (++pos == vq->num) {
			pos = 0;
			wrap = !wrap;
		}
	}
	return n;
}

bool vp_vq_packed_enable_notify(struct vp_vq_packed *vq)
{
	if (vq->broken)
		return false;
	/* Then the next descriptor: the driver's publish fences between making
	 * a chain available and reading our area. */
	pk_ev_request(vq->dev_ev, &vq->dev_flags, vq->event_idx, vq->last_avail, vq->avail_wrap);
	return vp_vq_packed_avail(vq);
}

bool vp_vq_packed_broken(const struct vp_vq_packed *vq)
{
	return vq->broken || vp_mem_is_shrunk(vq->mem);
}

const char *vp_vq_packed_broken_reason(const struct vp_vq_packed *vq)
{
	return !vq->broken && vp_mem_is_shrunk(vq->mem) ? VP_MEM_SHRUNK_REASON : vq->reason;
}

uint16_t vp_vq_packed_last_avail(const struct vp_vq_packed *vq)
{
	return (uint16_t)(vq->last_avail | (vq->avail_wrap ? PK_WRAP : 0));
}

uint16_t vp_vq_packed_num(const struct vp_vq_packed *vq)
{
	return vq->num;
}

/* ------------------------------------------------------------------------ */
/* Driver side: our own packed ring (vp_vq_drv_* with cfg->packed).         */

/* Per buffer id; our memory only. */
struct pd_id {
	void *token;		/* NULL: not outstanding */
	uint32_t len_in;	/* writable bytes posted with it */
	uint16_t ndesc;		/* ring slots the chain holds */
	uint16_t next;		/* free id list */
};

struct vp_vq_pdrv {
	/* Hot. */
	struct vring_packed_desc *desc;
	struct vring_packed_desc_event *drv_ev;		/* driver area: we write */
	const struct vring_packed_desc_event *dev_ev;	/* device area: we read */
	struct pd_id *ids;
	uint16_t num;
	uint16_t avail_pos;		/* next slot to fill */
	uint16_t used_pos;		/* next slot a used descriptor is due in */
	uint16_t num_free;		/* ring slots not in flight */
	uint16_t free_id;		/* head of the free id list */
	uint16_t added;			/* slots staged since the last publish */
	uint16_t pend_pos;		/* the first staged chain's head ... */
	uint16_t pend_flags;		/* ... and the flags it gets at publish */
	uint16_t drv_flags;		/* what we last wrote to the driver area's flags */
	uint16_t ind_max;		/* 0: no indirect tables */
	bool avail_wrap, used_wrap;
	bool pend;
	bool event_idx;
	bool broken;
	unsigned char *ind_area;
	uint64_t ind_gpa;
	/* Cold. */
	char name[VQ_NAME_MAX];
	char reason[VQ_REASON_MAX];
};

__attribute__((cold, __noinline__, format(printf, 2, 3)))
static int pd_fail(struct vp_vq_pdrv *vq, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_broken(&vq->broken, vq->reason, vq->name, fmt, ap);
	va_end(ap);
	return -EIO;
}

/* A slot's flags making it available on lap wrap (avail bit == wrap, used != wrap). */
static inline uint16_t pk_avail_flags(bool wrap)
{
	return (uint16_t)(wrap ? PK_AVAIL : PK_USED);
}

int vp_pdrv_new(struct vp_vq_pdrv **out, const struct vp_vq_drv_config *cfg)
{
	struct vp_vq_pdrv *vq;
	unsigned num = cfg->num;

	*out = NULL;
	if (num == 0 || num > VP_VQ_MAX_SIZE || !cfg->desc || !cfg->avail || !cfg->used ||
	    ((uintptr_t)cfg->desc & 15) || ((uintptr_t)cfg->avail & 3) ||
	    ((uintptr_t)cfg->used & 3))
		return -EINVAL;
	/* Tables never exceed num entries: add() caps every chain at num. */
	if (cfg->indirect_max > 1 &&
	    (!cfg->indirect_area || ((uintptr_t)cfg->indirect_area & 15) ||
	     cfg->indirect_gpa > UINT64_MAX - (uint64_t)num * cfg->indirect_max * WALK_DESC_SIZE))
		return -EINVAL;
	vq = walk_zalloc_lines(sizeof(*vq));
	if (!vq)
		return -ENOMEM;
	vq->ids = calloc(num, sizeof(*vq->ids));
	if (!vq->ids) {
		free(vq);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < num; i++)
		vq->ids[i].next = (uint16_t)(i + 1);	/* the last one is never followed */
	vq->desc = cfg->desc;
	vq->drv_ev = cfg->avail;
	vq->dev_ev = cfg->used;
	vq->num = (uint16_t)num;
	vq->num_free = (uint16_t)num;
	/* Both wrap counters start at 1 (virtio 1.1, 2.7.1). */
	vq->avail_wrap = vq->used_wrap = true;
	vq->event_idx = cfg->event_idx;
	if (cfg->indirect_max > 1) {
		vq->ind_max = cfg->indirect_max;
		vq->ind_area = cfg->indirect_area;
		vq->ind_gpa = cfg->indirect_gpa;
	}
	set_name(vq->name, cfg->name);
	/* Zero flags are neither available nor used on lap 1; zero event areas
	 * are ENABLE. */
	memset(cfg->desc, 0, VP_VQ_PACKED_DESC_BYTES(num));
	memset(cfg->avail, 0, sizeof(struct vring_packed_desc_event));
	memset(cfg->used, 0, sizeof(struct vring_packed_desc_event));
	*out = vq;
	return 0;
}

void vp_pdrv_free(struct vp_vq_pdrv *vq)
{
	if (!vq)
		return;
	free(vq->ids);
	free(vq);
}

/*
 * Write one descriptor of a chain at the next avail slot. A head's flags
 * are written last (release, by the caller or publish()); the others now,
 * relaxed: the head's release orders them.
 */
static inline void pd_put(struct vp_vq_pdrv *vq, uint64_t addr, uint32_t len, uint16_t id,
			  uint16_t flags, bool head, uint16_t *hpos, uint16_t *hflags)
{
	struct vring_packed_desc *d = &vq->desc[vq->avail_pos];

	flags = (uint16_t)(flags | pk_avail_flags(vq->avail_wrap));
	STORE_RELAXED(&d->addr, htole64(addr));
	STORE_RELAXED(&d->len, htole32(len));
	STORE_RELAXED(&d->id, htole16(id));
	if (head) {
		*hpos = vq->avail_pos;
		*hflags = flags;
	} else {
		STORE_RELAXED(&d->flags, htole16(flags));
	}
	if (++vq->avail_pos == vq->num) {
		vq->avail_pos = 0;
		vq->avail_wrap = !vq->avail_wrap;
	}
}

/*
 * Make a chain's head available: the first one staged since the last
 * publish waits for publish() (so nothing is visible before it: the device
 * reads in ring order), the others are released now.
 */
static inline void pd_stage(struct vp_vq_pdrv *vq, uint16_t id, void *token, uint32_t len_in,
			    uint16_t ndesc, uint16_t hpos, uint16_t hflags)
{
	struct pd_id *s = &vq->ids[id];

	vq->free_id = s->next;
	s->token = token;
	s->len_in = len_in;
	s->ndesc = ndesc;
	vq->num_free = (uint16_t)(vq->num_free - ndesc);
	vq->added = (uint16_t)(vq->added + ndesc);
	if (!vq->pend) {
		vq->pend = true;
		vq->pend_pos = hpos;
		vq->pend_flags = hflags;
	} else {
		/* Release: the chain's other descriptors before its head. */
		STORE_RELEASE(&vq->desc[hpos].flags, htole16(hflags));
	}
}

int vp_pdrv_add(struct vp_vq_pdrv *vq, const struct vp_buf *out, unsigned nout,
		const struct vp_buf *in, unsigned nin, void *token)
{
	uint32_t len_in = 0;
	uint16_t id, hpos = 0, hflags = 0, need;
	unsigned n;
	int r;

	if (unlikely(vq->broken))
		return -EIO;
	r = drv_add_check(out, nout, in, nin, token, vq->num, vq->num_free, vq->ind_max, &len_in);
	if (r < 0)
		return r;
	n = nout + nin;
	need = (uint16_t)r;
	id = vq->free_id;
	if (need == 1 && n > 1) {
		size_t off = ((size_t)id * vq->ind_max) * WALK_DESC_SIZE;
		struct vring_packed_desc *t = (struct vring_packed_desc *)(void *)(vq->ind_area + off);

		/* Table entries: no NEXT, no id, no avail bits (the spec's rules). */
		for (unsigned k = 0; k < n; k++) {
			const struct vp_buf *b = k < nout ? &out[k] : &in[k - nout];

			t[k] = (struct vring_packed_desc){
				.addr = htole64(b->addr), .len = htole32(b->len),
				.flags = htole16(k < nout ? 0 : VRING_DESC_F_WRITE),
			};
		}
		pd_put(vq, vq->ind_gpa + off, (uint32_t)(n * WALK_DESC_SIZE), id,
		       VRING_DESC_F_INDIRECT, true, &hpos, &hflags);
	} else {
		for (unsigned k = 0; k < n; k++) {
			const struct vp_buf *b = k < nout ? &out[k] : &in[k - nout];

			pd_put(vq, b->addr, b->len, id,
			       (uint16_t)((k < nout ? 0 : VRING_DESC_F_WRITE) |
					  (k + 1 < n ? VRING_DESC_F_NEXT : 0)),
			       k == 0, &hpos, &hflags);
		}
	}
	pd_stage(vq, id, token, len_in, need, hpos, hflags);
	return 0;
}

int vp_pdrv_add_burst(struct vp_vq_pdrv *vq, const struct vp_buf *bufs, unsigned n,
		      bool device_writable, void *const *tokens)
{
	uint16_t flags = device_writable ? VRING_DESC_F_WRITE : 0;
	unsigned k;

	if (unlikely(vq->broken))
		return -EIO;
	if (n && (!bufs || !tokens))
		return -EINVAL;
	for (k = 0; k < n; k++)
		if (!tokens[k])
			return -EINVAL;
	if (n > vq->num_free)
		n = vq->num_free;
	for (k = 0; k < n; k++) {
		uint16_t id = vq->free_id, hpos = 0, hflags = 0;

		pd_put(vq, bufs[k].addr, bufs[k].len, id, flags, true, &hpos, &hflags);
		pd_stage(vq, id, tokens[k], device_writable ? bufs[k].len : 0, 1, hpos, hflags);
	}
	return (int)n;
}

bool vp_pdrv_publish(struct vp_vq_pdrv *vq)
{
	uint16_t new, old;

	if (unlikely(vq->broken) || !vq->pend)
		return false;
	/*
	 * Every staged descriptor before the first staged head: pairs with the
	 * device's acquire load of the head's flags.
	 */
	STORE_RELEASE(&vq->desc[vq->pend_pos].flags, htole16(vq->pend_flags));
	vq->pend = false;
	new = vq->avail_pos;
	old = (uint16_t)(new - vq->added);	/* modulo 2^16, as need_event() wants */
	vq->added = 0;
	/* The heads before the device's area. */
	return pk_ev_wants(vq->dev_ev, vq->event_idx, vq->avail_wrap, vq->num, new, old, false);
}

/*
 * Is the slot at the used position used? Only asked while a published chain
 * is outstanding, so the slot holds either our descriptor of this lap (avail
 * bit == wrap, used bit != wrap) or the device's used one (both == wrap).
 * 1 used, 0 not yet, -1 anything else (the device wrote a wrong wrap bit).
 */
static inline int pd_slot_used(const struct vp_vq_pdrv *vq, uint16_t *flags)
{
	bool a, u;

	/* Acquire: pairs with the device's release of the used flags, written
	 * after the entry's id and len. */
	*flags = le16toh(LOAD_ACQUIRE(&vq->desc[vq->used_pos].flags));
	a = *flags & PK_AVAIL;
	u = *flags & PK_USED;
	if (a == vq->used_wrap)
		return u == vq->used_wrap;
	return -1;
}

/* A published chain is outstanding (the first staged one is not published). */
static inline bool pd_waiting(const struct vp_vq_pdrv *vq)
{
	return vq->num_free != vq->num && !(vq->pend && vq->pend_pos == vq->used_pos);
}

int vp_pdrv_get_used(struct vp_vq_pdrv *vq, void **tokens, uint32_t *lens, unsigned max)
{
	unsigned k;

	if (unlikely(vq->broken))
		return -EIO;
	for (k = 0; k < max && pd_waiting(vq); k++) {
		const struct vring_packed_desc *e = &vq->desc[vq->used_pos];
		uint16_t flags, id;
		uint32_t len;
		struct pd_id *s;
		int u = pd_slot_used(vq, &flags);

		if (u == 0)
			break;
		if (unlikely(u < 0)) {
			pd_fail(vq, "used slot %u: flags 0x%x have the wrong wrap bits for wrap counter %u",
				vq->used_pos, flags, (unsigned)vq->used_wrap);
			break;
		}
		id = le16toh(LOAD_RELAXED(&e->id));
		len = le32toh(LOAD_RELAXED(&e->len));
		if (unlikely(id >= vq->num)) {
			pd_fail(vq, "used slot %u: id %u >= num %u", vq->used_pos, id, vq->num);
			break;
		}
		s = &vq->ids[id];
		if (unlikely(!s->token)) {
			pd_fail(vq, "used slot %u: id %u not outstanding", vq->used_pos, id);
			break;
		}
		if (unlikely(len > s->len_in)) {
			pd_fail(vq, "used slot %u: id %u len %u > %u writable bytes posted",
				vq->used_pos, id, len, s->len_in);
			break;
		}
		tokens[k] = s->token;
		if (lens)
			lens[k] = len;
		s->token = NULL;
		s->next = vq->free_id;
		vq->free_id = id;
		vq->num_free = (uint16_t)(vq->num_free + s->ndesc);
		/* The next used descriptor is due after this chain's slots, counted
		 * by us: the device cannot move it. */
		vq->used_pos = (uint16_t)(vq->used_pos + s->ndesc);
		if (vq->used_pos >= vq->num) {
			vq->used_pos = (uint16_t)(vq->used_pos - vq->num);
			vq->used_wrap = !vq->used_wrap;
		}
	}
	/* Hand back what was good before a bad entry, so no token leaks. */
	if (unlikely(vq->broken) && k == 0)
		return -EIO;
	return (int)k;
}

unsigned vp_pdrv_used_pending(const struct vp_vq_pdrv *vq)
{
	uint16_t flags;

	/* The next one only: counting more would read ids the device wrote. */
	if (vq->broken || !pd_waiting(vq))
		return 0;
	return pd_slot_used(vq, &flags) != 0;
}

bool vp_pdrv_enable_cb(struct vp_vq_pdrv *vq)
{
	if (vq->broken)
		return false;
	/* Then the used slot: the device's need_signal fences between its used
	 * flags and reading our area. */
	pk_ev_request(vq->drv_ev, &vq->drv_flags, vq->event_idx, vq->used_pos, vq->used_wrap);
	return vp_pdrv_used_pending(vq) != 0;
}

void vp_pdrv_disable_cb(struct vp_vq_pdrv *vq)
{
	if (vq->broken)
		return;
	pk_ev_set_flags(vq->drv_ev, &vq->drv_flags, VRING_PACKED_EVENT_FLAG_DISABLE);
}

unsigned vp_pdrv_num_free(const struct vp_vq_pdrv *vq)
{
	return vq->num_free;
}

bool vp_pdrv_broken(const struct vp_vq_pdrv *vq)
{
	return vq->broken;
}

const char *vp_pdrv_broken_reason(const struct vp_vq_pdrv *vq)
{
	return vq->reason;
}
