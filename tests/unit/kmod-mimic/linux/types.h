/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/types.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_TYPES_H
#define VP_MIMIC_LINUX_TYPES_H
#include_next <linux/types.h>

/* The kernel's integer types: u64 and uint64_t are unsigned long long
 * (glibc's uint64_t is unsigned long), so format strings are checked as the
 * kernel build checks them. */
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef __u8 uint8_t;
typedef __u16 uint16_t;
typedef __u32 uint32_t;
typedef __u64 uint64_t;
typedef __s8 int8_t;
typedef __s16 int16_t;
typedef __s32 int32_t;
typedef __s64 int64_t;
typedef unsigned long uintptr_t;
typedef __SIZE_TYPE__ size_t;
typedef long ssize_t;
typedef int pid_t;
typedef unsigned int uid_t;	/* the kernel's, for vhostpci/server.h (lib/net21.c) */
typedef unsigned int mode_t;
typedef _Bool bool;
#define true 1
#define false 0
#define __force
#endif
