/* SPDX-License-Identifier: BSD-3-Clause */
/* Small helpers shared by the library's modules (internal, not installed). */
#ifndef VP_LIB_UTIL_H
#define VP_LIB_UTIL_H

#include <stdint.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Polite busy-wait step: lets the sibling hyperthread run. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Empty an eventfd with one read. Only call it on a non-blocking eventfd, or
 * after poll() said it is readable: a blocking one with a zero count would
 * block. */
static inline void drain_fd(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
}

/* Close *fd if open and mark it closed. */
static inline void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

#endif
