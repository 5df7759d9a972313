/* SPDX-License-Identifier: BSD-3-Clause */
/* <asm/barrier.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_ASM_BARRIER_H
#define VP_MIMIC_ASM_BARRIER_H
/* What the kernel's virt_*() compile to on an SMP build, as C11 atomics. */
#define READ_ONCE(x)     (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define virt_mb()        __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define virt_load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define virt_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif
