/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/string.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_STRING_H
#define VP_MIMIC_LINUX_STRING_H
#include <linux/types.h>
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);
size_t strnlen(const char *s, size_t n);
#endif
