/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Message transport over Unix stream sockets.
 *
 * Security model: the peer controls every byte and every fd it sends, and
 * when it sends them. A message is read in two steps, header then exactly
 * `size` payload bytes, so we never read into the next message. Fds may come
 * with any fragment; they are collected (at most VP_MSG_MAX_FDS, close-on-exec)
 * and handed to the decoder, which owns them from then on. On every error
 * path each fd received for the message is closed.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/sock.h"
#include "internal.h"

void vp_rx_init(struct vp_rx *rx)
{
	rx->have = 0;
	rx->want = 0;
	rx->nfds = 0;
}

void vp_rx_reset(struct vp_rx *rx)
{
	for (unsigned i = 0; i < rx->nfds; i++)
		close(rx->fds[i]);
	vp_rx_init(rx);
}

/* Keep the fds of one recvmsg(); false if there were more than fit. */
static bool take_fds(struct vp_rx *rx, struct msghdr *mh)
{
	bool ok = !(mh->msg_flags & MSG_CTRUNC);

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *p = CMSG_DATA(c);

		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, p + i * sizeof(int), sizeof(fd));
			if (rx->nfds < VP_MSG_MAX_FDS) {
				rx->fds[rx->nfds++] = fd;
			} else {
				close(fd);
				ok = false;
			}
		}
	}
	return ok;
}

int vp_sock_recv(int sock, struct vp_rx *rx, struct vp_msg *msg)
{
	int r;

	for (;;) {
		size_t need = rx->want ? rx->want : VP_MSG_HDR_SIZE;

		if (rx->have == need && !rx->want) {
			uint32_t req, flags, size;

			r = vp_msg_check_hdr(rx->buf, rx->have, &req, &flags, &size);
			if (r < 0)
				goto fail;
			rx->want = VP_MSG_HDR_SIZE + size;
			continue;
		}
		if (rx->have == need) {
			/* The decoder owns the fds now, on success and on error. */
			r = vp_msg_decode(msg, rx->buf, rx->have, rx->fds, rx->nfds);
			rx->nfds = 0;
			vp_rx_init(rx);
			return r < 0 ? r : 1;
		}

		union {
			char buf[CMSG_SPACE(sizeof(int) * VP_MSG_MAX_FDS)];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = {
			.iov_base = rx->buf + rx->have,
			.iov_len = need - rx->have,
		};
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cbuf.buf,
			.msg_controllen = sizeof(cbuf.buf),
		};
		/* Never block, whatever the socket mode: the caller owns the loop. */
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			r = -errno;
			goto fail;
		}
		if (!take_fds(rx, &mh)) {
			vp_log(VP_LOG_WARN, "peer sent more than %u fds with one message",
			       VP_MSG_MAX_FDS);
			r = -EMSGSIZE;
			goto fail;
		}
		if (n == 0) {
			r = -ECONNRESET;
			goto fail;
		}
		rx->have += (size_t)n;
	}
fail:
	if (r != -ECONNRESET || rx->have)
		vp_log(VP_LOG_WARN, "receive failed: %s", strerror(-r));
	vp_rx_reset(rx);
	return r;
}

int vp_sock_send(int sock, const struct vp_msg *msg)
{
	uint8_t buf[VP_MSG_HDR_SIZE + VP_MSG_MAX_PAYLOAD];
	union {
		char buf[CMSG_SPACE(sizeof(int) * VP_MSG_MAX_FDS)];
		struct cmsghdr align;
	} cbuf;
	int len = vp_msg_encode(msg, buf, sizeof(buf));
	size_t off = 0;

	if (len < 0)
		return len;
	while (off < (size_t)len) {
		struct iovec iov = { .iov_base = buf + off, .iov_len = (size_t)len - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		/* The fds ride on the first byte only. */
		if (off == 0 && msg->nfds) {
			size_t fl = sizeof(int) * msg->nfds;
			struct cmsghdr *c;

			memset(&cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(fl);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(fl);
			memcpy(CMSG_DATA(c), msg->fds, fl);
		}
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)n;
	}
	return 0;
}

int vp_unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vp_sock_recv_until(int sock, struct vp_rx *rx, struct vp_msg *m, int64_t deadline_ms)
{
	for (;;) {
		int r = vp_sock_recv(sock, rx, m);
		int64_t left = deadline_ms - mono_ms();
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (r != 0)
			return r < 0 ? r : 1;
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
	}
}
