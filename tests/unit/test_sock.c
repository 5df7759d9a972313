/* SPDX-License-Identifier: BSD-3-Clause */
/* Transport: whole and fragmented messages, fds, and every error closing them. */
#define TESTUTIL_MAIN
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "vhostpci/vhostpci.h"

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void pair(int sv[2], bool nonblock)
{
	int type = SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0);

	if (socketpair(AF_UNIX, type, 0, sv) < 0)
		sv[0] = sv[1] = -1;
}

/* Send raw bytes with n fds attached (bypassing the encoder). */
static ssize_t raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned n)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr a;
	} cb;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n) {
		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

static void hdr(uint8_t *b, uint32_t req, uint32_t flags, uint32_t size)
{
	memcpy(b, &req, 4);
	memcpy(b + 4, &flags, 4);
	memcpy(b + 8, &size, 4);
}

TEST(roundtrip_u64)
{
	int sv[2], before = tu_count_fds();
	struct vp_msg m, got;
	struct vp_rx rx;

	pair(sv, false);
	REQUIRE(sv[0] >= 0);
	vp_rx_init(&rx);
	vp_msg_init(&m, VP_VU_SET_FEATURES, 0);
	m.p.u64 = 0x140008000ull;
	CHECK_EQ(vp_sock_send(sv[0], &m), 0);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 1);
	CHECK_EQ(got.request, VP_VU_SET_FEATURES);
	CHECK_EQ(got.p.u64, 0x140008000ull);
	CHECK_EQ(got.nfds, 0);
	close(sv[0]);
	close(sv[1]);
	CHECK_EQ(tu_count_fds(), before);
}

TEST(fd_travels_and_is_owned_by_msg)
{
	int sv[2], efd = eventfd(0, EFD_CLOEXEC), before;
	struct vp_msg m, got;
	struct vp_rx rx;
	uint64_t v = 7;

	pair(sv, false);
	REQUIRE(sv[0] >= 0 && efd >= 0);
	before = tu_count_fds();
	vp_rx_init(&rx);
	vp_msg_init(&m, VP_VU_SET_VRING_KICK, 0);
	m.p.u64 = 1;
	m.fds[0] = efd;
	m.nfds = 1;
	CHECK_EQ(vp_sock_send(sv[0], &m), 0);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 1);
	REQUIRE(got.nfds == 1);
	CHECK(got.fds[0] != efd);
	/* Same eventfd: a write on the received one is read on ours. */
	CHECK_EQ(write(got.fds[0], &v, 8), 8);
	v = 0;
	CHECK_EQ(read(efd, &v, 8), 8);
	CHECK_EQ(v, 7);
	CHECK_EQ(fcntl(got.fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	vp_msg_close_fds(&got);
	CHECK_EQ(tu_count_fds(), before);
	close(efd);
	close(sv[0]);
	close(sv[1]);
}

TEST(fragments_nonblocking)
{
	int sv[2], efd = eventfd(0, 0);
	uint8_t b[VP_MSG_HDR_SIZE + 8];
	struct vp_msg got;
	struct vp_rx rx;
	uint64_t idx = 3;

	pair(sv, true);
	REQUIRE(sv[0] >= 0 && efd >= 0);
	vp_rx_init(&rx);
	hdr(b, VP_VU_SET_VRING_CALL, VP_MSG_VERSION, 8);
	memcpy(b + VP_MSG_HDR_SIZE, &idx, 8);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 0); /* nothing yet */
	CHECK_EQ(raw_send(sv[0], b, 5, NULL, 0), 5);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 0);
	/* The fd comes with a later fragment: still collected. */
	CHECK_EQ(raw_send(sv[0], b + 5, 10, &efd, 1), 10);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 0);
	CHECK_EQ(raw_send(sv[0], b + 15, sizeof(b) - 15, NULL, 0), (ssize_t)sizeof(b) - 15);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 1);
	CHECK_EQ(got.request, VP_VU_SET_VRING_CALL);
	CHECK_EQ(got.p.u64, 3);
	CHECK_EQ(got.nfds, 1);
	vp_msg_close_fds(&got);
	close(efd);
	close(sv[0]);
	close(sv[1]);
}

TEST(two_messages_back_to_back)
{
	int sv[2];
	struct vp_msg m, got;
	struct vp_rx rx;

	pair(sv, true);
	REQUIRE(sv[0] >= 0);
	vp_rx_init(&rx);
	vp_msg_init(&m, VP_VU_SET_OWNER, 0);
	CHECK_EQ(vp_sock_send(sv[0], &m), 0);
	vp_msg_init(&m, VP_VU_SET_VRING_NUM, 0);
	m.p.state.index = 1;
	m.p.state.num = 256;
	CHECK_EQ(vp_sock_send(sv[0], &m), 0);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 1);
	CHECK_EQ(got.request, VP_VU_SET_OWNER);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 1);
	CHECK_EQ(got.request, VP_VU_SET_VRING_NUM);
	CHECK_EQ(got.p.state.num, 256);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), 0);
	close(sv[0]);
	close(sv[1]);
}

TEST(eof_mid_message_closes_fds)
{
	int sv[2], efd = eventfd(0, 0), before;
	uint8_t b[VP_MSG_HDR_SIZE];
	struct vp_msg got;
	struct vp_rx rx;

	pair(sv, false);
	REQUIRE(sv[0] >= 0 && efd >= 0);
	before = tu_count_fds();
	vp_rx_init(&rx);
	hdr(b, VP_VU_SET_VRING_KICK, VP_MSG_VERSION, 8);
	CHECK_EQ(raw_send(sv[0], b, sizeof(b), &efd, 1), (ssize_t)sizeof(b));
	close(sv[0]);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), -ECONNRESET);
	CHECK_EQ(rx.nfds, 0);
	CHECK_EQ(tu_count_fds(), before - 1); /* sv[0] closed, received fd too */
	close(efd);
	close(sv[1]);
}

TEST(clean_eof)
{
	int sv[2];
	struct vp_msg got;
	struct vp_rx rx;

	pair(sv, false);
	REQUIRE(sv[0] >= 0);
	vp_rx_init(&rx);
	close(sv[0]);
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), -ECONNRESET);
	close(sv[1]);
}

TEST(too_many_fds_closed)
{
	int sv[2], fds[12], before;
	uint8_t b[VP_MSG_HDR_SIZE];
	struct vp_msg got;
	struct vp_rx rx;

	pair(sv, false);
	REQUIRE(sv[0] >= 0);
	for (int i = 0; i < 12; i++)
		fds[i] = eventfd(0, 0);
	before = tu_count_fds();
	vp_rx_init(&rx);
	hdr(b, VP_VU_SET_OWNER, VP_MSG_VERSION, 0);
	CHECK_EQ(raw_send(sv[0], b, sizeof(b), fds, 12), (ssize_t)sizeof(b));
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), -EMSGSIZE);
	CHECK_EQ(tu_count_fds(), before);
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	close(sv[0]);
	close(sv[1]);
}

TEST(bad_header_rejected_fds_closed)
{
	int sv[2], efd = eventfd(0, 0), before;
	uint8_t b[VP_MSG_HDR_SIZE];
	struct vp_msg got;
	struct vp_rx rx;

	pair(sv, false);
	REQUIRE(sv[0] >= 0 && efd >= 0);
	before = tu_count_fds();
	vp_rx_init(&rx);
	/* size beyond the maximum: rejected before any payload is read */
	hdr(b, VP_VU_SET_MEM_TABLE, VP_MSG_VERSION, VP_MSG_MAX_PAYLOAD + 1);
	CHECK_EQ(raw_send(sv[0], b, sizeof(b), &efd, 1), (ssize_t)sizeof(b));
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), -EMSGSIZE);
	CHECK_EQ(tu_count_fds(), before);
	/* bad version bits */
	hdr(b, VP_VU_SET_OWNER, 2, 0);
	CHECK_EQ(raw_send(sv[0], b, sizeof(b), NULL, 0), (ssize_t)sizeof(b));
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), -EPROTO);
	close(efd);
	close(sv[0]);
	close(sv[1]);
}

TEST(fd_on_message_that_takes_none)
{
	int sv[2], efd = eventfd(0, 0), before;
	uint8_t b[VP_MSG_HDR_SIZE];
	struct vp_msg got;
	struct vp_rx rx;

	pair(sv, false);
	REQUIRE(sv[0] >= 0 && efd >= 0);
	before = tu_count_fds();
	vp_rx_init(&rx);
	hdr(b, VP_VU_SET_OWNER, VP_MSG_VERSION, 0);
	CHECK_EQ(raw_send(sv[0], b, sizeof(b), &efd, 1), (ssize_t)sizeof(b));
	CHECK_EQ(vp_sock_recv(sv[1], &rx, &got), -EBADF);
	CHECK_EQ(tu_count_fds(), before);
	CHECK(fd_open(efd));
	close(efd);
	close(sv[0]);
	close(sv[1]);
}

TEST(send_to_closed_peer)
{
	int sv[2];
	struct vp_msg m;

	pair(sv, false);
	REQUIRE(sv[0] >= 0);
	close(sv[1]);
	vp_msg_init(&m, VP_VU_SET_OWNER, 0);
	CHECK_EQ(vp_sock_send(sv[0], &m), -EPIPE);
	close(sv[0]);
}
