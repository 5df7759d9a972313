/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the fuzz targets that play a peer share (fuzz_session, fuzz_pair21):
 * making an fd of each kind a hostile peer might send (FS_FD_* of
 * fuzz_session.h), and sending bytes with fds in one sendmsg().
 */
#ifndef FUZZ_FDS_H
#define FUZZ_FDS_H

#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../testutil.h"
#include "fuzz_session.h"

/* One fd of this kind (memfds of mem_size bytes), or -1. */
static inline int fz_make_fd(unsigned kind, size_t mem_size)
{
	int p[2], fd = -1;

	switch (kind) {
	case FS_FD_MEMFD:
		return tu_memfd("fuzz-ram", mem_size, 1);
	case FS_FD_MEMFD_UNSEALED:
		return tu_memfd("fuzz-ram", mem_size, 0);
	case FS_FD_EVENTFD:
		return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	case FS_FD_PIPE_READ:
	case FS_FD_PIPE_WRITE:
		if (pipe2(p, O_CLOEXEC) < 0)
			return -1;
		fd = p[kind == FS_FD_PIPE_READ ? 0 : 1];
		close(p[kind == FS_FD_PIPE_READ ? 1 : 0]);
		return fd;
	case FS_FD_DEVNULL:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	case FS_FD_SOCKET:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
			return -1;
		close(p[1]);
		return p[0];
	default:
		return -1;
	}
}

/* Send len bytes with nfds (up to 8) fds in one non-blocking sendmsg(); the
 * fds stay the caller's. Fds without bytes do not travel: nothing is sent
 * for len 0. True if all the bytes went. */
static inline bool fz_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} cb;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (!len)
		return true;
	if (nfds) {
		struct cmsghdr *c;

		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len;
}

#endif
