/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What kind of object a peer's fd is.
 *
 * A peer sends fds with the meaning "this is an eventfd" (kick, call) or
 * "this is your RAM" (memory regions). The kind decides whether using the
 * fd can hurt us: a pipe or a socket given as a kick fd is readable for
 * ever (a spinning backend) and as a call fd blocks our write; memory that
 * can shrink under our mapping kills us with SIGBUS. These calls tell the
 * kinds apart; the server checks every fd a frontend sends with them.
 */
#ifndef VHOSTPCI_FD_H
#define VHOSTPCI_FD_H

#include <stddef.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * 0 if fd is an eventfd. -EBADF if it is not open, -EINVAL for any other
 * kind (pipe, socket, file, timerfd, ...), -ENOTSUP if the kind cannot be
 * told (/proc not mounted: refuse rather than guess).
 */
VP_API int vp_fd_check_eventfd(int fd);

/*
 * 0 if fd is memory that cannot shrink under a mapping: a memfd carrying
 * F_SEAL_SHRINK (QEMU's memory-backend-memfd seals so by default).
 * -EPERM for memory that can shrink: an unsealed memfd, or a file
 * (tmpfs, hugetlbfs, ...: files cannot be sealed). -EINVAL for an fd that
 * is not memory at all (pipe, socket, eventfd, directory), -EBADF if not
 * open.
 */
VP_API int vp_fd_check_memory(int fd);

/* A short name of fd's kind for log lines and refusal reasons: "eventfd",
 * "pipe", "socket", "memfd", "regular file", "anon inode [timerfd]", ...
 * Written into buf (len >= 32 recommended); returns buf. */
VP_API const char *vp_fd_kind(int fd, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
