/* SPDX-License-Identifier: BSD-3-Clause */
/* <linux/slab.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_LINUX_SLAB_H
#define VP_MIMIC_LINUX_SLAB_H
#include <linux/types.h>

void *malloc(size_t size);
void *calloc(size_t n, size_t size);
void free(void *p);
#define GFP_KERNEL 0
static inline void *kmalloc(size_t size, int gfp)
{
	(void)gfp;
	return malloc(size);
}

static inline void *kcalloc(size_t n, size_t size, int gfp)
{
	(void)gfp;
	return calloc(n, size);
}

static inline void kfree(const void *p)
{
	free((void *)p);
}
#endif
