/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/processor.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_PROCESSOR_H
#define VP_MIMIC_LINUX_PROCESSOR_H
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}
#endif
