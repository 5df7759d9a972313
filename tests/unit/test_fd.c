/* SPDX-License-Identifier: BSD-3-Clause */
/* fd kinds: every kind a peer could pass as a kick/call fd or as memory. */
#define TESTUTIL_MAIN
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "testutil.h"
#include "vhostpci/vhostpci.h"

static const char *kind(int fd)
{
	static char buf[64];

	return vp_fd_kind(fd, buf, sizeof(buf));
}

TEST(eventfds_pass_and_nothing_else_does)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	int sem = eventfd(5, EFD_CLOEXEC | EFD_SEMAPHORE | EFD_NONBLOCK);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	int mfd = tu_memfd("kind", 4096, 1);
	int p[2], sv[2];

	REQUIRE(efd >= 0 && sem >= 0 && tfd >= 0 && mfd >= 0);
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK_EQ(vp_fd_check_eventfd(efd), 0);
	CHECK_EQ(vp_fd_check_eventfd(sem), 0);  /* a kind, not a mode: see net.c */
	CHECK_EQ(vp_fd_check_eventfd(p[0]), -EINVAL);
	CHECK_EQ(vp_fd_check_eventfd(p[1]), -EINVAL);
	CHECK_EQ(vp_fd_check_eventfd(sv[0]), -EINVAL);
	CHECK_EQ(vp_fd_check_eventfd(tfd), -EINVAL);
	CHECK_EQ(vp_fd_check_eventfd(mfd), -EINVAL);
	CHECK_EQ(vp_fd_check_eventfd(-1), -EBADF);
	CHECK_STR(kind(efd), "eventfd");
	CHECK_STR(kind(p[0]), "pipe");
	CHECK_STR(kind(sv[1]), "socket");
	CHECK_STR(kind(tfd), "anon inode timerfd");
	CHECK_STR(kind(mfd), "sealed memfd");
	close(efd);
	close(sem);
	close(tfd);
	close(mfd);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
	CHECK_STR(kind(efd), "closed fd");
}

TEST(memory_must_be_sealed_against_shrinking)
{
	int sealed = tu_memfd("sealed", 8192, 1);
	int open_ = tu_memfd("unsealed", 8192, 0);
	int plain = memfd_create("no-sealing", MFD_CLOEXEC);  /* F_SEAL_SEAL only */
	int grow_only = memfd_create("grow", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	char path[] = "/tmp/vp-fd-test-XXXXXX";
	int file = mkstemp(path);
	int efd = eventfd(0, EFD_CLOEXEC);
	int p[2];

	REQUIRE(sealed >= 0 && open_ >= 0 && plain >= 0 && grow_only >= 0 && file >= 0);
	REQUIRE(pipe2(p, O_CLOEXEC) == 0);
	unlink(path);
	REQUIRE(fcntl(grow_only, F_ADD_SEALS, F_SEAL_GROW) == 0);
	CHECK_EQ(vp_fd_check_memory(sealed), 0);
	CHECK_EQ(vp_fd_check_memory(open_), -EPERM);
	CHECK_EQ(vp_fd_check_memory(plain), -EPERM);
	CHECK_EQ(vp_fd_check_memory(grow_only), -EPERM);
	CHECK_EQ(vp_fd_check_memory(file), -EPERM);
	CHECK_EQ(vp_fd_check_memory(efd), -EINVAL);
	CHECK_EQ(vp_fd_check_memory(p[0]), -EINVAL);
	CHECK_EQ(vp_fd_check_memory(-1), -EBADF);
	CHECK_STR(kind(open_), "unsealed memfd");
	CHECK_STR(kind(file), "regular file");
	/* Sealed means it really cannot shrink. */
	CHECK(ftruncate(sealed, 4096) < 0 && errno == EPERM);
	close(sealed);
	close(open_);
	close(plain);
	close(grow_only);
	close(file);
	close(efd);
	close(p[0]);
	close(p[1]);
}
