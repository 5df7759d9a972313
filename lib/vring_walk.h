/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the split (vring.c) and packed (vring_packed.c) walkers share: the
 * shared-memory access rules, the broken-queue bookkeeping, ring mapping and
 * the per-descriptor steps (buffer, indirect table, chain totals), so both
 * layouts apply the same checks with the same reasons. Private to lib/.
 *
 * The steps report a violation through the queue's fail callback, which
 * records the reason, logs it and returns -EIO; they are always_inline so the
 * callback is a direct call in each walker.
 */
#ifndef VP_VRING_WALK_H
#define VP_VRING_WALK_H

#ifndef __KERNEL__	/* the kernel's own in the guest driver's build (guest/linux/) */
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#define VQ_NAME_MAX   32
#define VQ_REASON_MAX 192

/*
 * Shared ring memory is read and written only through these, so each access
 * happens exactly once (no re-read after a check) and races with the peer
 * are defined behaviour. The guest kernel driver maps them (and
 * atomic_thread_fence()) to READ_ONCE(), virt_load_acquire(), WRITE_ONCE(),
 * virt_store_release() and virt_mb(): guest/linux/compat/vp_kcompat.h.
 */
#ifndef __KERNEL__
#define LOAD_RELAXED(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define LOAD_ACQUIRE(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif

/* Unaligned views, for indirect tables a driver placed at odd addresses. */
typedef uint64_t __attribute__((aligned(1))) u64_una;
typedef uint32_t __attribute__((aligned(1))) u32_una;
typedef uint16_t __attribute__((aligned(1))) u16_una;

static inline bool is_pow2(unsigned x)
{
	return x && !(x & (x - 1));
}

/* A ring's private state: zeroed, on its own cache lines (the hot indexes
 * must not share a line with anything the other core writes). */
static inline void *walk_zalloc_lines(size_t size)
{
	void *p = aligned_alloc(64, (size + 63) & ~(size_t)63);

	if (p)
		memset(p, 0, size);
	return p;
}

static void set_name(char *dst, const char *name)
{
	snprintf(dst, VQ_NAME_MAX, "%s", name ? name : "vq");
}

/* Keep the first reason only: later ones are usually consequences. */
__attribute__((format(printf, 4, 0)))
static void set_broken(bool *broken, char *reason, const char *name,
		       const char *fmt, va_list ap)
{
	if (*broken)
		return;
	vsnprintf(reason, VQ_REASON_MAX, fmt, ap);
	*broken = true;
	vp_log(VP_LOG_WARN, "vring %s: broken: %s", name, reason);
}

/* Memory that shrank under us breaks the queue with that reason. */
__attribute__((cold))
static void set_broken_shrunk(bool *broken, char *reason, const char *name)
{
	if (*broken)
		return;
	snprintf(reason, VQ_REASON_MAX, "%s", VP_MEM_SHRUNK_REASON);
	*broken = true;
	vp_log(VP_LOG_WARN, "vring %s: broken: %s", name, reason);
}

/*
 * A violation seen by a device-side walker. Zeros the SIGBUS guard put in
 * place of shrunk memory make any rule look broken; the real reason is the
 * shrinking (vp_mem_sigbus_guard()), so it wins. Returns -EIO.
 */
__attribute__((cold, format(printf, 5, 0)))
static int vq_vfail(const struct vp_mem *mem, bool *broken, char *reason, const char *name,
		    const char *fmt, va_list ap)
{
	if (vp_mem_is_shrunk(mem))
		set_broken_shrunk(broken, reason, name);
	else
		set_broken(broken, reason, name, fmt, ap);
	return -EIO;
}

/*
 * Map one ring part. Errors are told apart for the caller: -EFAULT (not in
 * one region), -EACCES (region lacks the access).
 */
static int map_ring_part(const struct vp_mem *mem, enum vp_addr_space space,
			 uint64_t addr, uint64_t len, uint32_t access,
			 void **out)
{
	uint64_t gpa = addr;
	int err;

	*out = space == VP_ADDR_UVA ? vp_mem_uva_ptr(mem, addr, len, access)
				    : vp_mem_gpa_ptr(mem, addr, len, access);
	if (*out)
		return 0;
	if (space == VP_ADDR_UVA && vp_mem_uva_to_gpa(mem, addr, len, &gpa))
		return -EFAULT;
	err = vp_mem_check_gpa(mem, gpa, len, access);
	return err == -EACCES ? -EACCES : -EFAULT;
}

/*
 * What the walker reads from the queue, copied into locals once per burst:
 * stores through the caller's chain and iovec arrays could alias *vq, which
 * would otherwise make the compiler reload these for every descriptor.
 */
struct walk_ctx {
	const unsigned char *desc;
	const struct vp_mem *mem;
	unsigned num;
	bool indirect;
	/*
	 * The region the last buffer was in, loaded at the start of the burst:
	 * buffers inside it are translated inline. The table cannot change
	 * during a call (mem.h: no add/remove concurrent with translation).
	 */
	struct vp_mem_cursor cur;
};

/* Both layouts' descriptors are 16 bytes; indirect tables are counted in them. */
#define WALK_DESC_SIZE 16u
_Static_assert(sizeof(struct vring_desc) == WALK_DESC_SIZE, "split descriptor size");
_Static_assert(sizeof(struct vring_packed_desc) == WALK_DESC_SIZE, "packed descriptor size");

/* Marks the queue q broken with a formatted reason; returns -EIO. */
typedef int (*vq_fail_fn)(void *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A chain being collected. */
struct walk_acc {
	unsigned n, nout;	/* iovecs filled, of which readable */
	uint64_t len_out, len_in;
	bool writable;		/* a writable descriptor was seen */
};

/*
 * One buffer descriptor (already copied out of shared memory): order of
 * readable and writable parts, translation with the access it needs, iovec
 * room. what/i/head only name it in a reason. Returns 0, -ENOBUFS (does not
 * fit; nothing consumed) or -EIO (queue broken).
 */
static inline __attribute__((always_inline)) int
walk_buf(void *q, vq_fail_fn fail, struct walk_ctx *w, struct walk_acc *a,
	 const char *what, unsigned i, unsigned head, uint64_t addr, uint32_t len,
	 bool wr, struct iovec *iov, unsigned iov_max)
{
	uint32_t access;
	void *p;
	int r;

	if (wr) {
		a->writable = true;
		access = VP_MEM_WRITE;
	} else {
		if (unlikely(a->writable))
			return fail(q, "%s %u: readable after writable (head %u)", what, i, head);
		access = VP_MEM_READ;
	}
	if (unlikely(!len))
		return 0;
	/* Inside one region with the access needed: one piece. A miss moves
	 * the cursor to the region holding addr. */
	p = vp_mem_cursor_ptr(&w->cur, addr, len, access);
	if (likely(p)) {
		if (unlikely(a->n >= iov_max))
			return -ENOBUFS;
		iov[a->n].iov_base = p;
		iov[a->n].iov_len = len;
		r = 1;
	} else {
		if (unlikely(addr + len - 1 < addr))
			return fail(q, "%s %u: addr 0x%" PRIx64 " + len %u wraps", what, i,
				    addr, len);
		r = vp_mem_gpa_iov(w->mem, addr, len, access, iov + a->n, iov_max - a->n);
		if (unlikely(r < 0)) {
			if (r == -ENOBUFS)
				return -ENOBUFS;
			return fail(q, "%s %u: buffer 0x%" PRIx64 " len %u %s", what, i, addr, len,
				    r == -EACCES ? (access == VP_MEM_WRITE ?
				    "not writable (read-only region)" : "not readable")
				    : r == -EOVERFLOW ? "wraps" : "outside guest memory");
		}
	}
	a->n += (unsigned)r;
	if (wr) {
		a->len_in += len;
	} else {
		a->len_out += len;
		a->nout = a->n;
	}
	return 0;
}

/*
 * An indirect descriptor (already copied): negotiated, not inside a table,
 * not chained on, a table of 1..num whole descriptors in readable memory.
 * Returns the table (*entries set) or NULL once the queue is broken.
 */
static inline __attribute__((always_inline)) const unsigned char *
walk_indirect(void *q, vq_fail_fn fail, struct walk_ctx *w, unsigned i, unsigned head, bool in_table, bool next, uint64_t addr,
	      uint32_t len, unsigned *entries)
{
	const unsigned char *tbl;

	if (!w->indirect) {
		fail(q, "desc %u: INDIRECT not negotiated", i);
		return NULL;
	}
	if (in_table) {
		fail(q, "nested indirect in table entry %u (head %u)", i, head);
		return NULL;
	}
	if (next) {
		fail(q, "desc %u: INDIRECT together with NEXT", i);
		return NULL;
	}
	if (len == 0 || len % WALK_DESC_SIZE || len > w->num * WALK_DESC_SIZE) {
		fail(q, "desc %u: indirect len %u not a non-zero multiple of 16 <= %u",
		     i, len, w->num * WALK_DESC_SIZE);
		return NULL;
	}
	tbl = vp_mem_cursor_ptr(&w->cur, addr, len, VP_MEM_READ);
	if (!tbl) {
		fail(q, "desc %u: indirect table 0x%" PRIx64 " len %u not in readable memory",
		     i, addr, len);
		return NULL;
	}
	*entries = len / WALK_DESC_SIZE;
	return tbl;
}

/* The chain's totals into ch; -EIO if they overflow the used length's 32 bits. */
static inline __attribute__((always_inline)) int
walk_finish(void *q, vq_fail_fn fail, const struct walk_acc *a, unsigned head,
	    struct vp_chain *ch, struct iovec *iov)
{
	/* Sums of <= 2 * 32768 32-bit lengths cannot wrap 64 bits. */
	if (unlikely(a->len_out + a->len_in > UINT32_MAX))
		return fail(q, "chain at head %u: total length %" PRIu64 " overflows 32 bits",
			    head, a->len_out + a->len_in);
	ch->head = (uint16_t)head;
	ch->n_out = (uint16_t)a->nout;
	ch->n_in = (uint16_t)(a->n - a->nout);
	ch->len_out = (uint32_t)a->len_out;
	ch->len_in = (uint32_t)a->len_in;
	ch->iov = iov;
	return 0;
}

/*
 * The driver sides' checks of a chain to add (vp_vq_drv_add() on either
 * layout): nout readable then nin writable buffers on a ring of num with
 * free descriptors free, chains of 2..ind_max as one indirect descriptor.
 * Returns the ring descriptors it takes (*len_in: its writable bytes),
 * -EINVAL or -ENOSPC.
 */
static inline int drv_add_check(const struct vp_buf *out, unsigned nout, const struct vp_buf *in,
				unsigned nin, const void *token, unsigned num, unsigned free,
				unsigned ind_max, uint32_t *len_in)
{
	uint64_t lo = 0, li = 0;
	unsigned n, need;

	if (!token || (nout && !out) || (nin && !in))
		return -EINVAL;
	if (nout > VP_VQ_MAX_SIZE || nin > VP_VQ_MAX_SIZE)
		return -ENOSPC;
	n = nout + nin;
	if (n == 0)
		return -EINVAL;
	if (n > num)
		return -ENOSPC;	/* no chain may be longer than the ring */
	for (unsigned k = 0; k < nout; k++)
		lo += out[k].len;
	for (unsigned k = 0; k < nin; k++)
		li += in[k].len;
	/* The device breaks the queue on chains whose total exceeds 32 bits. */
	if (lo + li > UINT32_MAX)
		return -EINVAL;
	need = (n > 1 && n <= ind_max) ? 1 : n;
	if (need > free)
		return -ENOSPC;
	*len_in = (uint32_t)li;
	return (int)need;
}

#endif
