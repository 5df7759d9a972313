/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/kernel.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_KERNEL_H
#define VP_MIMIC_LINUX_KERNEL_H
#include <linux/types.h>
#include <linux/stdarg.h>

int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif
