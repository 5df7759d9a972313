/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Eventfds shared with a peer (internal, not installed): taking one, writing
 * it without ever waiting, draining it without ever blocking. Used by
 * vp_net (net.c) and vp_net21 (net21.c), whose peers share the open file
 * descriptions and so can change their flags and counts.
 */
#ifndef VP_LIB_EVFD_H
#define VP_LIB_EVFD_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vhostpci/fd.h"
#include "util.h"

/*
 * Duplicate a peer's eventfd and make the duplicate O_NONBLOCK (the flag is
 * shared with the peer's copies). Returns the duplicate, -1 for fd -1, or
 * -EINVAL (not an eventfd), -ENOTSUP (kind unknown), an errno.
 */
static inline int vp_evfd_take(int fd)
{
	int e, d, fl;

	if (fd < 0)
		return -1;
	e = vp_fd_check_eventfd(fd);
	if (e)
		return e == -ENOTSUP ? -ENOTSUP : -EINVAL;
	d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (d < 0)
		return -errno;
	fl = fcntl(d, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(d, F_SETFL, fl | O_NONBLOCK) < 0)) {
		e = -errno;
		close(d);
		return e;
	}
	return d;
}

enum vp_evfd_sent { VP_EVFD_SENT, VP_EVFD_DROPPED, VP_EVFD_BLOCKING };

/*
 * Write 1 to a peer's eventfd without ever waiting on it. An eventfd write
 * blocks when the count would overflow unless the file is O_NONBLOCK, and
 * the kernel offers no per-call NOWAIT for eventfd writes; the peer can
 * clear the shared flag after we set it. So the flag is checked first (a
 * peer that cleared it breaks the rules: VP_EVFD_BLOCKING, the caller
 * breaks the link and writes no more), then room in the count (POLLOUT).
 * A failed write is a dropped signal, never retried.
 */
static inline enum vp_evfd_sent vp_evfd_signal(int fd)
{
	static const uint64_t one = 1;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return VP_EVFD_DROPPED;
	if (!(fl & O_NONBLOCK))
		return VP_EVFD_BLOCKING;
	if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) &&
	    write(fd, &one, sizeof(one)) == sizeof(one))
		return VP_EVFD_SENT;
	return VP_EVFD_DROPPED;
}

/*
 * Empty an eventfd without ever blocking, whatever the peer did to the
 * shared O_NONBLOCK flag: eventfd reads honour RWF_NOWAIT. Older kernels
 * without it: read only if poll() says readable.
 * Returns true if the fd is still readable right after a successful read:
 * a normal eventfd read takes the whole count, but an EFD_SEMAPHORE one
 * takes 1, so a huge count would wake every sleep for ever.
 */
static inline bool vp_evfd_drain(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v;
	struct iovec iov = { &v, sizeof(v) };

	if (fd < 0)
		return false;
	if (preadv2(fd, &iov, 1, -1, RWF_NOWAIT) >= 0)
		return preadv2(fd, &iov, 1, -1, RWF_NOWAIT) >= 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return false;
	if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
		drain_fd(fd);
		return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
	}
	return false;
}

#endif
