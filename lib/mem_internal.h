/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Guest memory, the library's inside view (internal, not installed).
 *
 * mem.c and this header are the only places where a guest address becomes a
 * local pointer. The ring walker's fast path translates through a cursor: a
 * copy of the last region hit, checked inline, so a buffer in the same
 * region as the one before costs a subtract and two compares. A miss goes
 * out of line to mem.c, which looks the address up in the table.
 *
 * A cursor is a view of the table at the time it was loaded: load it at the
 * start of each burst (the table cannot change during one: no add/remove
 * concurrent with translation, mem.h) and throw it away at the end. Keep
 * only its index between bursts.
 */
#ifndef VP_LIB_MEM_INTERNAL_H
#define VP_LIB_MEM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vhostpci/mem.h"

/* Why links on a table the SIGBUS guard had to repair break. */
#define VP_MEM_SHRUNK_REASON "frontend memory shrank under us (truncated)"

/* Hot: read by every translation, so small and contiguous. */
struct mem_reg {
	uint64_t gpa;
	uint64_t size;		/* > 0, gpa + size never wraps */
	uint64_t uaddr;		/* 0: unknown, never matches */
	uint8_t *host;		/* local address of gpa */
	uint32_t prot;
};

/* Cold: only add, remove and get look at this. */
struct mem_map {
	uint64_t fd_offset;
	void *base;		/* what mmap() returned; NULL for local memory */
	size_t len;
	int guard;		/* slot in the SIGBUS guard table, -1: none */
};

struct vp_mem {
	/*
	 * Set (to 1) by the SIGBUS guard's handler when one of our mappings
	 * lost its file pages and was replaced by zero pages. Never cleared:
	 * whatever was read from this table since is worthless.
	 */
	int shrunk;
	unsigned n;
	struct mem_reg reg[VP_MEM_MAX_REGIONS];
	struct mem_map map[VP_MEM_MAX_REGIONS];
};

/* One region of a table, copied: the walker's translation cache. */
struct vp_mem_cursor {
	const struct vp_mem *mem;
	uint64_t gpa, size;	/* size 0: empty, matches nothing */
	uint8_t *host;
	uint32_t prot;
	unsigned idx;		/* the region it copies, a hint for the next load */
};

/* Point c at region idx of mem (empty if there is none). */
void vp_mem_cursor_load(struct vp_mem_cursor *c, const struct vp_mem *mem, unsigned idx);

/* Out of line: move c to the region holding gpa, then translate as
 * vp_mem_cursor_hit(). c is left empty if no region holds gpa. */
void *vp_mem_cursor_miss(struct vp_mem_cursor *c, uint64_t gpa, uint64_t len,
			 uint32_t access);

/*
 * Is [gpa, gpa + len) inside the cursor's region with every bit of access?
 * If so, *p is its local address. gpa below the region makes off wrap past
 * size; off < size and len <= size - off mean the end is inside without
 * computing it (no wrap). len 0 counts as 1, as in vp_mem_gpa_ptr(). A
 * bool, not a pointer, so that callers branch on the bounds test itself.
 */
static inline bool vp_mem_cursor_fits(const struct vp_mem_cursor *c, uint64_t gpa,
				      uint64_t len, uint32_t access, void **p)
{
	uint64_t off = gpa - c->gpa;

	if (__builtin_expect(off < c->size && len <= c->size - off &&
			     !(access & ~c->prot), 1)) {
		*p = c->host + off;
		return true;
	}
	return false;
}

/* The same as a pointer, NULL if it does not fit. */
static inline void *vp_mem_cursor_hit(const struct vp_mem_cursor *c, uint64_t gpa,
				      uint64_t len, uint32_t access)
{
	void *p;

	return vp_mem_cursor_fits(c, gpa, len, access, &p) ? p : (void *)0;
}

/* The same, falling back to the table on a miss. NULL: not inside one region
 * with that access (vp_mem_gpa_iov() tells spanning buffers from bad ones). */
static inline void *vp_mem_cursor_ptr(struct vp_mem_cursor *c, uint64_t gpa, uint64_t len,
				      uint32_t access)
{
	void *p;

	return vp_mem_cursor_fits(c, gpa, len, access, &p) ? p :
	       vp_mem_cursor_miss(c, gpa, len, access);
}

/* Did the SIGBUS guard replace one of mem's mappings (vp_mem_shrunk())? */
static inline bool vp_mem_is_shrunk(const struct vp_mem *mem)
{
	return __atomic_load_n(&mem->shrunk, __ATOMIC_RELAXED) != 0;
}

#endif
