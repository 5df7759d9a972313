/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Guest memory: the region table of a peer VM and safe address translation.
 *
 * This is the ONLY place in vhost-pci where an address chosen by a peer
 * becomes a local pointer. Every other module asks this one, with the exact
 * length it is going to touch and the access it needs.
 *
 * A region is a piece of the peer's RAM: [gpa, gpa + size) in guest-physical
 * space, also known at [uaddr, uaddr + size) in the frontend *process*
 * (vhost-user's userspace_addr, used for ring addresses sent by stock QEMU),
 * backed by fd at fd_offset. Regions never overlap in either space.
 *
 * Threading: a table is built (add/remove) by one thread; translation
 * functions only read it and may run concurrently with each other, but not
 * with add/remove.
 *
 * Memory that can shrink: see vp_mem_sigbus_guard().
 */
#ifndef VHOSTPCI_MEM_H
#define VHOSTPCI_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most regions one table holds (vhost-user SET_MEM_TABLE carries at most 8). */
#define VP_MEM_MAX_REGIONS 32

/* Access bits: what a region allows and what a translation asks for. */
#define VP_MEM_READ  1u
#define VP_MEM_WRITE 2u
#define VP_MEM_RW    (VP_MEM_READ | VP_MEM_WRITE)

/* A region as described by a peer (or by ourselves for local memory). */
struct vp_mem_region_desc {
	uint64_t gpa;        /* guest-physical start */
	uint64_t size;       /* bytes, > 0 */
	uint64_t uaddr;      /* frontend-process virtual start; 0 = unknown */
	uint64_t fd_offset;  /* offset of gpa in fd (vhost-user mmap_offset) */
	int fd;              /* not owned by the table: the caller closes it */
	uint32_t prot;       /* VP_MEM_READ, optionally | VP_MEM_WRITE */
};

/* What vp_mem_get() reports about a mapped region. */
struct vp_mem_region_info {
	uint64_t gpa, size, uaddr, fd_offset;
	uint32_t prot;
	void *host;          /* local address of gpa */
	bool mapped_by_table; /* true: mmap()ed by vp_mem_add_region() */
};

struct vp_mem;

/* An empty table. NULL on allocation failure. */
VP_API struct vp_mem *vp_mem_new(void);

/* Unmap every region the table mapped, then free it. NULL is fine. */
VP_API void vp_mem_free(struct vp_mem *mem);

/*
 * Map a region from a peer's fd and add it. The mapping is shared and gets
 * PROT_READ, plus PROT_WRITE only if desc->prot has VP_MEM_WRITE, so a
 * read-only region cannot be written even by a bug. fd_offset need not be
 * page aligned. The fd is not kept: the caller may close it afterwards.
 *
 * Returns the region's index, or:
 *  -EINVAL  size 0, prot without VP_MEM_READ or with unknown bits, gpa/uaddr
 *           range wraps around 2^64, fd < 0
 *  -EEXIST  overlaps an existing region in guest-physical or uaddr space
 *  -ENOSPC  the table already holds VP_MEM_MAX_REGIONS regions
 *  -EBADF   fd is not usable (fstat failed)
 *  -ENXIO   [fd_offset, fd_offset + size) does not fit in the fd's size
 *  or the errno of a failed mmap().
 */
VP_API int vp_mem_add_region(struct vp_mem *mem,
			     const struct vp_mem_region_desc *desc);

/*
 * Add memory that is already mapped locally at host (our own RAM, a test
 * buffer, a shared window). Nothing is mapped or unmapped. desc->fd and
 * desc->fd_offset are ignored. Same checks and errors as vp_mem_add_region()
 * except the fd ones.
 */
VP_API int vp_mem_add_local(struct vp_mem *mem,
			    const struct vp_mem_region_desc *desc, void *host);

/* Remove (and unmap) the region that starts at gpa with exactly that size.
 * -ENOENT if there is none. */
VP_API int vp_mem_remove(struct vp_mem *mem, uint64_t gpa, uint64_t size);

/* Remove every region. */
VP_API void vp_mem_clear(struct vp_mem *mem);

VP_API unsigned vp_mem_count(const struct vp_mem *mem);

/* Describe region idx (0 <= idx < vp_mem_count()); -ENOENT past the end.
 * For tools that display a table: the library's data path translates only
 * through this module and never copies info->host out. */
VP_API int vp_mem_get(const struct vp_mem *mem, unsigned idx,
		      struct vp_mem_region_info *info);

/*
 * Translate [gpa, gpa + len) to a local pointer. Succeeds only if the whole
 * range lies in ONE region that allows every bit of access. len 0 is treated
 * as len 1 (the address itself must be mapped). Overflow-safe.
 * Returns NULL if not (use vp_mem_gpa_iov() for ranges that may span
 * regions, or vp_mem_check_gpa() for the reason).
 */
VP_API void *vp_mem_gpa_ptr(const struct vp_mem *mem, uint64_t gpa,
			    uint64_t len, uint32_t access);

/* The same for frontend-process virtual addresses (vhost-user ring addresses). */
VP_API void *vp_mem_uva_ptr(const struct vp_mem *mem, uint64_t uaddr,
			    uint64_t len, uint32_t access);

/* Why vp_mem_gpa_ptr() would fail: 0 if it succeeds, -EOVERFLOW if the range
 * wraps, -EFAULT if not inside one region, -EACCES if the region lacks the
 * access asked for. */
VP_API int vp_mem_check_gpa(const struct vp_mem *mem, uint64_t gpa,
			    uint64_t len, uint32_t access);

/* Convert a frontend-process virtual range to guest-physical: the whole range
 * must lie in one region. 0, -EOVERFLOW or -EFAULT. */
VP_API int vp_mem_uva_to_gpa(const struct vp_mem *mem, uint64_t uaddr,
			     uint64_t len, uint64_t *gpa);

/*
 * Translate [gpa, gpa + len) to iovecs, one per region it crosses: a buffer
 * spanning two adjacent regions comes back as two pieces, and no piece ever
 * reaches past its region's end. len 0 yields 0 pieces.
 * Returns the number of iovecs written (<= iov_max), or -EOVERFLOW (wraps),
 * -EFAULT (some byte not mapped), -EACCES (some byte lacks access),
 * -ENOBUFS (needs more than iov_max pieces).
 */
VP_API int vp_mem_gpa_iov(const struct vp_mem *mem, uint64_t gpa, uint64_t len,
			  uint32_t access, struct iovec *iov, unsigned iov_max);

/*
 * Copy [gpa, gpa + len) out of a region without dying if the peer truncated
 * its file under us: the copy goes through process_vm_readv() on ourselves,
 * which reports such a fault as EFAULT where a plain load raises SIGBUS.
 * One syscall per call: for the control plane (ring indexes at stop, status
 * views), not for packets. 0, or -EFAULT/-EACCES/-EOVERFLOW as
 * vp_mem_check_gpa(), or -EFAULT if the memory went away (also once the
 * SIGBUS guard replaced it with zeros: vp_mem_shrunk()).
 */
VP_API int vp_mem_read_safe(const struct vp_mem *mem, uint64_t gpa, void *buf,
			    size_t len);

/*
 * Survive a peer that shrinks memory we mapped (opt in, once per process).
 *
 * Memory that can shrink (an unsealed memfd, a file) is refused by default
 * (vp_fd_check_memory(), vp_server_config.allow_unsealed). An application
 * that accepts it anyway calls this once, early, from its main thread,
 * before it maps such memory and before it starts threads. The library
 * never installs a signal handler on its own.
 *
 * It installs a SIGBUS handler (SA_SIGINFO | SA_ONSTACK). A fault inside a
 * mapping vp_mem_add_region() made of memory that can shrink is repaired:
 * the handler maps private zero pages over that whole mapping (MAP_FIXED,
 * same address and protection), marks the table shrunk and returns, so the
 * faulting load reads zeros and the faulting store goes nowhere. The rings
 * and nets on that table then break with "frontend memory shrank under us
 * (truncated)" at the end of their burst (vp_mem_shrunk()). Any other
 * SIGBUS goes to the handler that was there before (or kills the process
 * as the default action would). Calling it again does nothing.
 *
 * Threading: the handler is process-wide and lock-free; faults in several
 * threads at once are handled. Each table keeps its own contract (one
 * thread translates, adds and removes). A handler installed later for
 * SIGBUS must chain to this one for the guard to keep working.
 * Returns 0 or the errno of a failed sigaction() (negative).
 */
VP_API int vp_mem_sigbus_guard(void);

/*
 * Put a mapping the caller made itself under the SIGBUS guard: a PCI BAR
 * mapped through sysfs, which the kernel revokes when the device is
 * unplugged (the next access raises SIGBUS). Once vp_mem_sigbus_guard() is
 * installed, a fault in [base, base + len) is repaired as for the memory
 * vp_mem_add_region() maps (private zero pages, same protection) and *flag
 * set to 1 (atomically, from the handler: the caller polls it and lets the
 * device go). base is what mmap() returned. 0, -EINVAL (base not a page
 * boundary, len 0, no flag), or -ENOSPC (the guard's table is full).
 * Threading: the same as for the tables; vp_mem_unguard_mapping() before the
 * caller unmaps it, from the thread that registered it.
 */
VP_API int vp_mem_guard_mapping(void *base, size_t len, int prot, int *flag);

/* Take base (as given to vp_mem_guard_mapping()) out of the guard; no-op if unknown. */
VP_API void vp_mem_unguard_mapping(void *base);

/*
 * True once the SIGBUS guard replaced one of mem's mappings because the peer
 * shrank the memory behind it. Never goes back to false: everything read
 * from mem since is zeros, stores to it were lost. Callers break every link
 * on mem. Cheap (one load); false for NULL.
 */
VP_API bool vp_mem_shrunk(const struct vp_mem *mem);

#ifdef __cplusplus
}
#endif
#endif
