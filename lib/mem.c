/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Guest memory: region table and address translation.
 *
 * Security model
 *  - Untrusted: every field of a region description (it comes from the
 *    peer's memory table), the fd behind it, and every address and length
 *    asked for later (they come from descriptors in peer-writable memory).
 *  - Trusted: the table itself. It lives in our memory and only our control
 *    thread changes it, after checking each region in full.
 *  - Promise: a pointer handed out covers all of [addr, addr + len) inside
 *    ONE mapping we made (or the caller gave us) that allows the access
 *    asked for. No check ever computes an end address that could wrap.
 *  - Read-only regions are mapped without PROT_WRITE: even a bug of ours
 *    cannot write them.
 *  - Not covered here: the bytes behind a pointer keep changing under us
 *    (callers copy before they check).
 *  - A peer that shrinks its file after we mapped it turns our next access
 *    into SIGBUS. Peers should send memfds sealed with F_SEAL_SHRINK; for
 *    those who accept memory that can shrink, the application's SIGBUS guard
 *    (below) repairs the fault and marks the table shrunk. Why this design:
 *    docs/threat-model.md.
 *  - Translation failures are not logged here: the caller knows which
 *    queue and descriptor was bad and logs that. Rejected regions are.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef __KERNEL__
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhostpci/fd.h"
#endif
#include "vhostpci/log.h"
#include "mem_internal.h"

/*
 * The guest kernel driver (guest/linux/) builds this file too, through its
 * portability headers, for the table and the translation only: it adds local
 * regions over a BAR mapping, so mmap(), the SIGBUS guard and the checked
 * read are left out of that build (#ifndef __KERNEL__).
 */
#ifndef __KERNEL__

/* ------------------------------------------------------------------------ */
/* The SIGBUS guard (vp_mem_sigbus_guard())                                 */

/*
 * Every mapping of memory that can shrink (an unsealed memfd, a file) is
 * registered here, guard or not: the table is what the handler searches, so
 * it lives in static memory and is lock-free. A slot goes
 *
 *   FREE -> CLAIMED (being filled) -> ARMED -> BUSY (the handler is replacing
 *   the mapping) -> SPENT (zero pages now; cannot fault again) -> FREE
 *
 * and ARMED/SPENT -> FREE when the region is dropped. Dropping waits while
 * a slot is BUSY (one mmap() in another thread), so the handler can never
 * map over an address range that was unmapped and handed to someone else.
 */
#define GUARD_SLOTS 512		/* 32 links x 8 vhost-user regions, twice over */

enum { SLOT_FREE, SLOT_CLAIMED, SLOT_ARMED, SLOT_BUSY, SLOT_SPENT };

struct guard_slot {
	int state;		/* atomic */
	uintptr_t base;		/* the mapping, exactly as mmap() returned it */
	size_t len;
	int prot;
	int *shrunk;		/* the owning table's flag */
};

static struct guard_slot guard_tab[GUARD_SLOTS];
static struct sigaction guard_prev;	/* what SIGBUS did before the guard */
static int guard_on;			/* atomic */

#define LOAD(p)          __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)      __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CAS(p, old, new) __extension__ ({ int o_ = (old); \
	__atomic_compare_exchange_n((p), &o_, (new), false, __ATOMIC_ACQ_REL, \
				    __ATOMIC_ACQUIRE); })

/* Not our fault: hand it to whatever SIGBUS did before the guard. */
static void guard_chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	if (guard_prev.sa_flags & SA_SIGINFO) {
		guard_prev.sa_sigaction(sig, si, uc);
		return;
	}
	if (guard_prev.sa_handler == SIG_IGN && si->si_code <= 0)
		return;		/* an ignored kill(): ignore it */
	if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
		guard_prev.sa_handler(sig);
		return;
	}
	/*
	 * Die as we would have without the guard: a fault re-executes and
	 * kills us with SIGBUS (core and exit status intact); a kill() is
	 * raised again and delivered once we return.
	 */
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	if (si->si_code <= 0)
		raise(SIGBUS);
}

/*
 * Does slot s cover address a? The fields are read racily (a slot may be
 * refilled meanwhile), so atomically; the handler re-checks once it owns
 * the slot.
 */
static inline bool guard_holds(const struct guard_slot *s, uintptr_t a)
{
	return a - __atomic_load_n(&s->base, __ATOMIC_RELAXED) <
	       __atomic_load_n(&s->len, __ATOMIC_RELAXED);
}

/*
 * Only async-signal-safe work here: atomics on the static table, mmap(),
 * sched_yield(), sigaction() and raise(). The handler touches no guest
 * memory, so it cannot fault itself.
 */
static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	int saved_errno = errno;

	/* Only the kernel's "no page behind this address"; never a kill(). */
	if (si->si_code != BUS_ADRERR)
		goto chain;
	for (int i = 0; i < GUARD_SLOTS; i++) {
		struct guard_slot *s = &guard_tab[i];
		int st = LOAD(&s->state);
		void *p;

		if (st < SLOT_ARMED || !guard_holds(s, a))
			continue;
		if (st == SLOT_ARMED) {
			if (!CAS(&s->state, SLOT_ARMED, SLOT_BUSY)) {
				i--;	/* changed under us: this slot again */
				continue;
			}
			/* The slot may have been reused before we took it. */
			if (!guard_holds(s, a)) {
				STORE(&s->state, SLOT_ARMED);
				continue;
			}
			/*
			 * Private zero pages over the whole mapping, same
			 * address and protection: the faulting access and
			 * every later one complete against them, stores go
			 * nowhere, and the peer's file is no longer mapped at
			 * all (re-extending it shows us nothing).
			 */
			p = mmap((void *)s->base, s->len, s->prot,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (p == MAP_FAILED) {
				STORE(&s->state, SLOT_ARMED);
				goto chain;	/* out of memory: die as before */
			}
			__atomic_store_n(s->shrunk, 1, __ATOMIC_RELEASE);
			STORE(&s->state, SLOT_SPENT);
		} else {
			/* Another thread is replacing it (BUSY) or has (SPENT). */
			while (LOAD(&s->state) == SLOT_BUSY)
				sched_yield();
		}
		errno = saved_errno;
		return;		/* the access is retried against the zero pages */
	}
chain:
	errno = saved_errno;
	guard_chain(sig, si, uc);
}

int vp_mem_sigbus_guard(void)
{
	struct sigaction sa = { .sa_sigaction = guard_handler,
				.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART };

	if (LOAD(&guard_on))
		return 0;
	/* Keep the old action before ours can run and chain to it. */
	if (sigaction(SIGBUS, NULL, &guard_prev) < 0)
		return -errno;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		return -errno;
	STORE(&guard_on, 1);
	return 0;
}

/* Register a mapping of memory that can shrink. Slot index, or -ENOSPC. */
static int guard_add_flag(void *base, size_t len, int prot, int *flag)
{
	for (int i = 0; i < GUARD_SLOTS; i++) {
		struct guard_slot *s = &guard_tab[i];

		if (LOAD(&s->state) != SLOT_FREE || !CAS(&s->state, SLOT_FREE, SLOT_CLAIMED))
			continue;
		__atomic_store_n(&s->base, (uintptr_t)base, __ATOMIC_RELAXED);
		__atomic_store_n(&s->len, len, __ATOMIC_RELAXED);
		s->prot = prot;
		s->shrunk = flag;
		STORE(&s->state, SLOT_ARMED);
		return i;
	}
	return -ENOSPC;
}

static int guard_add(struct vp_mem *mem, void *base, size_t len, int prot)
{
	return guard_add_flag(base, len, prot, &mem->shrunk);
}

/* Before the mapping goes: once this returns, no handler will touch it. */
static void guard_del(int i)
{
	struct guard_slot *s = &guard_tab[i];

	for (;;) {
		int st = LOAD(&s->state);

		if (st == SLOT_BUSY)
			sched_yield();	/* one mmap() in another thread */
		else if (CAS(&s->state, st, SLOT_FREE))
			return;
	}
}

int vp_mem_guard_mapping(void *base, size_t len, int prot, int *flag)
{
	long pg = sysconf(_SC_PAGESIZE);

	if (!base || !len || !flag || pg <= 0 || ((uintptr_t)base & (uintptr_t)(pg - 1)))
		return -EINVAL;
	return guard_add_flag(base, len, prot, flag) < 0 ? -ENOSPC : 0;
}

void vp_mem_unguard_mapping(void *base)
{
	for (int i = 0; i < GUARD_SLOTS; i++) {
		struct guard_slot *s = &guard_tab[i];
		int st = LOAD(&s->state);

		if (st >= SLOT_ARMED &&
		    __atomic_load_n(&s->base, __ATOMIC_RELAXED) == (uintptr_t)base) {
			guard_del(i);
			return;
		}
	}
}

bool vp_mem_shrunk(const struct vp_mem *mem)
{
	return mem && vp_mem_is_shrunk(mem);
}

/*
 * Memory that can shrink lets the peer turn our next access into SIGBUS.
 * Say so once per process; it kills us unless the application armed the
 * guard (vp_mem_sigbus_guard()), then it breaks only the links on it.
 */
static void warn_unsealed(const struct vp_mem_region_desc *d, bool guarded)
{
	static bool warned;

	if (warned)
		return;
	warned = true;
	vp_log(VP_LOG_INFO, "mem: region gpa 0x%" PRIx64 ": memory not sealed against "
	       "shrinking (F_SEAL_SHRINK); %s", d->gpa, guarded ?
	       "guarded: a peer that truncates it breaks only its own links" :
	       "a peer that truncates it can crash this process (no SIGBUS guard)");
}
#endif /* !__KERNEL__ */

/* Does [start, start + len) pass 2^64? len 0 counts as 1. */
static inline bool range_wraps(uint64_t start, uint64_t len)
{
	return len > 1 && len - 1 > UINT64_MAX - start;
}

/* Both ranges non-empty and not wrapping: compare last bytes, not ends. */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a <= b + (blen - 1) && b <= a + (alen - 1);
}

/*
 * The region holding gpa, with *off = gpa - region start. At most one
 * region matches since they never overlap. gpa below a region's start
 * makes off wrap to a value >= size, because start + size never wraps:
 * one unsigned compare does both bounds.
 */
static inline const struct mem_reg *find_gpa(const struct vp_mem *mem,
					     uint64_t gpa, uint64_t *off)
{
	for (const struct mem_reg *r = mem->reg; r < mem->reg + mem->n; r++) {
		*off = gpa - r->gpa;
		if (*off < r->size)
			return r;
	}
	return NULL;
}

static inline const struct mem_reg *find_uva(const struct vp_mem *mem,
					     uint64_t uaddr, uint64_t *off)
{
	for (const struct mem_reg *r = mem->reg; r < mem->reg + mem->n; r++) {
		*off = uaddr - r->uaddr;
		if (r->uaddr && *off < r->size)
			return r;
	}
	return NULL;
}

/*
 * 0 if [off, off + len) fits in r (off < r->size already). len 0 passes
 * as len 1 would, since size - off >= 1. A wrapping range never fits.
 */
static inline int fits(const struct mem_reg *r, uint64_t off, uint64_t len,
		       uint32_t access)
{
	if (len > r->size - off)
		return -EFAULT;
	if (access & ~r->prot)
		return -EACCES;
	return 0;
}

__attribute__((format(printf, 3, 4)))
static int reject(const struct vp_mem_region_desc *d, int err,
		  const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vp_log(VP_LOG_WARN, "mem: region gpa 0x%" PRIx64 " size 0x%" PRIx64
	       " uaddr 0x%" PRIx64 " rejected: %s", d->gpa, d->size, d->uaddr,
	       why);
	return err;
}

/* The checks shared by peer and local regions. */
static int check_desc(const struct vp_mem *mem,
		      const struct vp_mem_region_desc *d)
{
	if (d->size == 0)
		return reject(d, -EINVAL, "size 0");
	if (!(d->prot & VP_MEM_READ) || (d->prot & ~VP_MEM_RW))
		return reject(d, -EINVAL, "bad prot 0x%x", d->prot);
	if (range_wraps(d->gpa, d->size))
		return reject(d, -EINVAL, "gpa range wraps");
	if (d->uaddr && range_wraps(d->uaddr, d->size))
		return reject(d, -EINVAL, "uaddr range wraps");
	if (mem->n >= VP_MEM_MAX_REGIONS)
		return reject(d, -ENOSPC, "table full (%u regions)", mem->n);
	for (unsigned i = 0; i < mem->n; i++) {
		const struct mem_reg *r = &mem->reg[i];

		if (ranges_overlap(d->gpa, d->size, r->gpa, r->size))
			return reject(d, -EEXIST,
				      "overlaps region %u in gpa space", i);
		if (d->uaddr && r->uaddr &&
		    ranges_overlap(d->uaddr, d->size, r->uaddr, r->size))
			return reject(d, -EEXIST,
				      "overlaps region %u in uaddr space", i);
	}
	return 0;
}

static int insert(struct vp_mem *mem, const struct vp_mem_region_desc *d,
		  void *host, void *base, size_t len, int guard)
{
	unsigned i = mem->n;

	mem->reg[i] = (struct mem_reg){
		.gpa = d->gpa, .size = d->size, .uaddr = d->uaddr,
		.host = host, .prot = d->prot,
	};
	mem->map[i] = (struct mem_map){
		.fd_offset = base ? d->fd_offset : 0, .base = base, .len = len,
		.guard = guard,
	};
	mem->n++;
	return (int)i;
}

#ifndef __KERNEL__
/*
 * mmap offsets must be page aligned; hugetlbfs needs its huge page size,
 * which it reports as st_blksize.
 */
static uint64_t map_align(const struct stat *st)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t bs = (uint64_t)st->st_blksize;

	if (bs > pg && bs <= (1ull << 30) && !(bs & (bs - 1)))
		return bs;
	return pg;
}
#endif /* !__KERNEL__ */

struct vp_mem *vp_mem_new(void)
{
	return calloc(1, sizeof(struct vp_mem));
}

void vp_mem_free(struct vp_mem *mem)
{
	if (!mem)
		return;
	vp_mem_clear(mem);
	free(mem);
}

#ifndef __KERNEL__
int vp_mem_add_region(struct vp_mem *mem, const struct vp_mem_region_desc *d)
{
	uint64_t align, delta, fsize;
	struct stat st;
	size_t len;
	void *base;
	int err, guard = -1;
	bool can_shrink;

	if (!mem || !d)
		return -EINVAL;
	if (d->fd < 0)
		return reject(d, -EINVAL, "fd %d", d->fd);
	err = check_desc(mem, d);
	if (err)
		return err;
	if (fstat(d->fd, &st) < 0)
		return reject(d, -EBADF, "fstat of fd %d failed (errno %d)",
			      d->fd, errno);
	fsize = st.st_size > 0 ? (uint64_t)st.st_size : 0;
	/* Compare against what is left after the offset: no end computed. */
	if (d->fd_offset > fsize || d->size > fsize - d->fd_offset)
		return reject(d, -ENXIO, "offset 0x%" PRIx64
			      " + size beyond fd size 0x%" PRIx64,
			      d->fd_offset, fsize);
	can_shrink = vp_fd_check_memory(d->fd) != 0;
	align = map_align(&st);
	delta = d->fd_offset & (align - 1);
	/* delta + size <= fsize <= INT64_MAX here; this guards 32-bit size_t. */
	if (delta + d->size > SIZE_MAX - (align - 1))
		return reject(d, -ENOMEM, "too large to map");
	len = (size_t)((delta + d->size + align - 1) & ~(align - 1));
	base = mmap(NULL, len, (d->prot & VP_MEM_WRITE) ?
		    PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, d->fd,
		    (off_t)(d->fd_offset - delta));
	if (base == MAP_FAILED) {
		err = -errno;
		return reject(d, err, "mmap failed (errno %d)", -err);
	}
	if (can_shrink) {
		guard = guard_add(mem, base, len, (d->prot & VP_MEM_WRITE) ?
				  PROT_READ | PROT_WRITE : PROT_READ);
		/* Guarded the application wants it: unguarded is refused. */
		if (guard < 0 && LOAD(&guard_on)) {
			munmap(base, len);
			return reject(d, -ENOSPC, "can shrink, and all %d SIGBUS guard slots "
				      "are in use", GUARD_SLOTS);
		}
		warn_unsealed(d, guard >= 0 && LOAD(&guard_on));
	}
	return insert(mem, d, (uint8_t *)base + delta, base, len, guard);
}
#endif /* !__KERNEL__ */

int vp_mem_add_local(struct vp_mem *mem, const struct vp_mem_region_desc *d,
		     void *host)
{
	int err;

	if (!mem || !d)
		return -EINVAL;
	if (!host)
		return reject(d, -EINVAL, "host address NULL");
	err = check_desc(mem, d);
	if (err)
		return err;
	if (d->size - 1 > UINTPTR_MAX - (uintptr_t)host)
		return reject(d, -EINVAL, "host range wraps");
	return insert(mem, d, host, NULL, 0, -1);
}

static void drop(struct vp_mem *mem, unsigned i)
{
#ifndef __KERNEL__	/* the kernel build has local regions only */
	if (mem->map[i].guard >= 0)
		guard_del(mem->map[i].guard);
	if (mem->map[i].base)
		munmap(mem->map[i].base, mem->map[i].len);
#endif
	/* Keep the others in order so indexes stay meaningful to callers. */
	memmove(&mem->reg[i], &mem->reg[i + 1],
		(mem->n - i - 1) * sizeof(mem->reg[0]));
	memmove(&mem->map[i], &mem->map[i + 1],
		(mem->n - i - 1) * sizeof(mem->map[0]));
	mem->n--;
}

int vp_mem_remove(struct vp_mem *mem, uint64_t gpa, uint64_t size)
{
	if (!mem)
		return -EINVAL;
	for (unsigned i = 0; i < mem->n; i++) {
		if (mem->reg[i].gpa == gpa && mem->reg[i].size == size) {
			drop(mem, i);
			return 0;
		}
	}
	return -ENOENT;
}

void vp_mem_clear(struct vp_mem *mem)
{
	if (!mem)
		return;
	while (mem->n)
		drop(mem, mem->n - 1);
}

unsigned vp_mem_count(const struct vp_mem *mem)
{
	return mem ? mem->n : 0;
}

int vp_mem_get(const struct vp_mem *mem, unsigned idx,
	       struct vp_mem_region_info *info)
{
	const struct mem_reg *r;

	if (!mem || !info)
		return -EINVAL;
	if (idx >= mem->n)
		return -ENOENT;
	r = &mem->reg[idx];
	*info = (struct vp_mem_region_info){
		.gpa = r->gpa, .size = r->size, .uaddr = r->uaddr,
		.fd_offset = mem->map[idx].fd_offset, .prot = r->prot,
		.host = r->host, .mapped_by_table = mem->map[idx].base != NULL,
	};
	return 0;
}

void vp_mem_cursor_load(struct vp_mem_cursor *c, const struct vp_mem *mem, unsigned idx)
{
	const struct mem_reg *r = idx < mem->n ? &mem->reg[idx] : NULL;

	*c = (struct vp_mem_cursor){
		.mem = mem, .idx = r ? idx : 0,
		.gpa = r ? r->gpa : 0, .size = r ? r->size : 0,
		.host = r ? r->host : NULL, .prot = r ? r->prot : 0,
	};
}

void *vp_mem_cursor_miss(struct vp_mem_cursor *c, uint64_t gpa, uint64_t len,
			 uint32_t access)
{
	uint64_t off;
	const struct mem_reg *r = find_gpa(c->mem, gpa, &off);

	vp_mem_cursor_load(c, c->mem, r ? (unsigned)(r - c->mem->reg) : VP_MEM_MAX_REGIONS);
	return vp_mem_cursor_hit(c, gpa, len, access);
}

void *vp_mem_gpa_ptr(const struct vp_mem *mem, uint64_t gpa, uint64_t len,
		     uint32_t access)
{
	const struct mem_reg *r;
	uint64_t off;

	if (!mem || !(r = find_gpa(mem, gpa, &off)) ||
	    fits(r, off, len, access))
		return NULL;
	return r->host + off;
}

void *vp_mem_uva_ptr(const struct vp_mem *mem, uint64_t uaddr, uint64_t len,
		     uint32_t access)
{
	const struct mem_reg *r;
	uint64_t off;

	if (!mem || !(r = find_uva(mem, uaddr, &off)) ||
	    fits(r, off, len, access))
		return NULL;
	return r->host + off;
}

int vp_mem_check_gpa(const struct vp_mem *mem, uint64_t gpa, uint64_t len,
		     uint32_t access)
{
	const struct mem_reg *r;
	uint64_t off;

	if (!mem)
		return -EINVAL;
	if (range_wraps(gpa, len))
		return -EOVERFLOW;
	r = find_gpa(mem, gpa, &off);
	return r ? fits(r, off, len, access) : -EFAULT;
}

int vp_mem_uva_to_gpa(const struct vp_mem *mem, uint64_t uaddr, uint64_t len,
		      uint64_t *gpa)
{
	const struct mem_reg *r;
	uint64_t off;

	if (!mem || !gpa)
		return -EINVAL;
	if (range_wraps(uaddr, len))
		return -EOVERFLOW;
	r = find_uva(mem, uaddr, &off);
	if (!r || fits(r, off, len, 0))
		return -EFAULT;
	*gpa = r->gpa + off;
	return 0;
}

/*
 * Pieces walk upwards through distinct regions, so there are at most
 * VP_MEM_MAX_REGIONS of them. Running out of iovecs does not stop the walk:
 * a bad byte further on still reports -EFAULT/-EACCES, so -ENOBUFS means
 * "valid, give a bigger array" and never hides a peer's bad address.
 */
int vp_mem_gpa_iov(const struct vp_mem *mem, uint64_t gpa, uint64_t len,
		   uint32_t access, struct iovec *iov, unsigned iov_max)
{
	const struct mem_reg *r;
	uint64_t off, piece;
	unsigned n = 0;

	if (!mem || (!iov && iov_max))
		return -EINVAL;
	if (len == 0)
		return 0;
	if (range_wraps(gpa, len))
		return -EOVERFLOW;
	while (len) {
		r = find_gpa(mem, gpa, &off);
		if (!r)
			return -EFAULT;
		if (access & ~r->prot)
			return -EACCES;
		piece = r->size - off < len ? r->size - off : len;
		if (n < iov_max)
			iov[n] = (struct iovec){ r->host + off, (size_t)piece };
		n++;
		gpa += piece;	/* may reach 2^64 only as len reaches 0 */
		len -= piece;
	}
	return n > iov_max ? -ENOBUFS : (int)n;
}

#ifndef __KERNEL__
int vp_mem_read_safe(const struct vp_mem *mem, uint64_t gpa, void *buf, size_t len)
{
	int err = vp_mem_check_gpa(mem, gpa, len, VP_MEM_READ);
	void *src;

	if (err)
		return err;
	if (!len)
		return 0;
	src = vp_mem_gpa_ptr(mem, gpa, len, VP_MEM_READ);
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_base = src, .iov_len = len };

	/* A truncated file faults here as EFAULT instead of SIGBUS. */
	if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)len)
		return -EFAULT;
	/* Zero pages the guard put there are no answer either. */
	return vp_mem_is_shrunk(mem) ? -EFAULT : 0;
}
#endif /* !__KERNEL__ */
