/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/stdarg.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_STDARG_H
#define VP_MIMIC_LINUX_STDARG_H
typedef __builtin_va_list va_list;
#define va_start(v, l) __builtin_va_start(v, l)
#define va_end(v)      __builtin_va_end(v)
#define va_arg(v, T)   __builtin_va_arg(v, T)
#define va_copy(d, s)  __builtin_va_copy(d, s)
#endif
