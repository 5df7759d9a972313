/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/stddef.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_STDDEF_H
#define VP_MIMIC_LINUX_STDDEF_H
#include_next <linux/stddef.h>
#ifndef NULL
#define NULL ((void *)0)
#endif
#define offsetof(T, m) __builtin_offsetof(T, m)
#endif
