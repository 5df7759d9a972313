/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The libc and compiler facilities lib/vring.c, lib/mem.c, lib/devinfo.c and
 * lib/net21.c use, in kernel terms, so that those files build into
 * vhost_pci_net.ko as they are: one ring walker and one set of window checks for userspace and
 * the kernel alike (docs/architecture.md, "The guest kernel driver").
 *
 * This directory is first on the module's include path. Its files are named
 * like the libc headers the lib/ sources include (<endian.h>, <stdlib.h>,
 * <sys/uio.h>, ...) and each includes only this header, so nothing else of
 * the kernel is shadowed: kernel headers include <linux/...> and <asm/...>.
 *
 * Memory ordering. The frontend is another VM, so even a uniprocessor
 * backend guest needs real barriers: the virt_*() flavours, never the
 * smp_*() ones (which become compiler barriers on !CONFIG_SMP). Pairs, as
 * lib/vring.c's comments give them from the device side:
 *  - LOAD_ACQUIRE(&avail->idx) = virt_load_acquire(): pairs with the
 *    frontend driver's write barrier (virtio_wmb) before its avail->idx store;
 *  - STORE_RELEASE(&used->idx) = virt_store_release(): pairs with the
 *    frontend's read barrier (virtio_rmb) after its used->idx load;
 *  - atomic_thread_fence(seq_cst) = virt_mb(): between our used->idx store
 *    and the used_event/flags load (need_signal), and between the
 *    avail_event/flags store and the avail->idx re-load (enable_notify);
 *    each pairs with the frontend's virtio_mb() on its side of the same
 *    store-then-load race. A lost call or kick follows if virt_mb() is no
 *    fence on the host: QEMU < 8.1's TCG with one possible vCPU drops it
 *    (guest/linux/README.md, "Barriers").
 * lib/net21.c (the 2.1 mode) fences with atomic_thread_fence() too (virt_mb()
 * here: the other peer is another VM); its acquire loads and release stores
 * of the indexes are __atomic builtins like these:
 * lib/devinfo.c and lib/mem_internal.h keep their GCC __atomic builtins:
 * acquire and release loads and stores of naturally aligned words, which GCC
 * emits as the same instructions as virt_load_acquire()/virt_store_release()
 * on SMP (plain MOVs on x86, LDAR/STLR on arm64).
 *
 * Allocation: aligned_alloc()/calloc() are kmalloc(GFP_KERNEL), so the
 * library's constructors (vp_vq_dev_new(), vp_mem_new()) may sleep: the
 * driver calls them from process context only. aligned_alloc()'s alignment
 * is a cache-line hint in lib/vring.c, not a correctness requirement.
 */
#ifndef VP_KCOMPAT_H
#define VP_KCOMPAT_H

#include <linux/types.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/processor.h>
#include <linux/slab.h>
#include <linux/stdarg.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <linux/uio.h>
#include <asm/barrier.h>
#include <asm/byteorder.h>

/* <stdint.h> */
#ifndef UINT16_MAX
#define UINT16_MAX ((u16)~0U)
#endif
#ifndef UINT32_MAX
#define UINT32_MAX ((u32)~0U)
#endif
#ifndef UINT64_MAX
#define UINT64_MAX ((u64)~0ULL)
#endif
#ifndef UINTPTR_MAX
#define UINTPTR_MAX ((uintptr_t)~0UL)
#endif
#ifndef SIZE_MAX
#define SIZE_MAX (~(size_t)0)
#endif

/* <inttypes.h>: the kernel's u64 is unsigned long long on every arch. */
#define PRIu32 "u"
#define PRIx32 "x"
#define PRIu64 "llu"
#define PRIx64 "llx"

/* <endian.h>: the wire is little-endian. Callers load __le/__virtio words. */
#define le16toh(x) le16_to_cpu((__force __le16)(x))
#define le32toh(x) le32_to_cpu((__force __le32)(x))
#define le64toh(x) le64_to_cpu((__force __le64)(x))
#define htole16(x) ((__force u16)cpu_to_le16(x))
#define htole32(x) ((__force u32)cpu_to_le32(x))
#define htole64(x) ((__force u64)cpu_to_le64(x))

/* <errno.h>: the kernel has no ENOTSUP (userspace's equals EOPNOTSUPP). */
#ifndef ENOTSUP
#define ENOTSUP EOPNOTSUPP
#endif

/* <stdlib.h> */
#define aligned_alloc(align, size) kmalloc((size), GFP_KERNEL)
#define calloc(n, size) kcalloc((n), (size), GFP_KERNEL)
#define free(p) kfree(p)

/* <stdatomic.h>: lib/vring.c uses sequentially consistent fences only. */
enum vp_kcompat_memory_order { memory_order_seq_cst = 5 };
#define atomic_thread_fence(order) \
	do { BUILD_BUG_ON((order) != memory_order_seq_cst); virt_mb(); } while (0)

/* lib/vring.c's shared-memory accessors (see above for the pairing). */
#define LOAD_RELAXED(p)     READ_ONCE(*(p))
#define LOAD_ACQUIRE(p)     virt_load_acquire(p)
#define STORE_RELAXED(p, v) WRITE_ONCE(*(p), (v))
#define STORE_RELEASE(p, v) virt_store_release((p), (v))

#endif
