/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The daemon's ivshmem server against a fake QEMU client in this process:
 * the setup sequence value by value and fd by fd, a client that reads
 * nothing, a client that talks, leaving, vector replacement, refusals; and
 * fd counts before and after each case.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#define TESTUTIL_MAIN
#include "testutil.h"

#include "vhostpci/fd.h"
#include "ivshmem.h"

#define SHM_SIZE (1u << 20)
#define MARKER "ivshmem-test-marker"

static char dir[64];
static unsigned seq;

struct fixture {
	int base;                /* fds open before the fixture */
	char path[128];
	struct vpd_ivshmem *s;
	int shm;
	unsigned n;
	int own[VPD_IVSHMEM_MAX_VECTORS], peer[VPD_IVSHMEM_MAX_VECTORS];
};

static void remove_dir(void)
{
	rmdir(dir);
}

static void make_dir(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/vp-ivs-test.XXXXXX");
		if (mkdtemp(dir))
			atexit(remove_dir);
		else
			dir[0] = '\0';
	}
}

static void open_eventfds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A server on a fresh path with n vectors' worth of fds, not yet expecting. */
static int fixture_init(struct fixture *f, unsigned n)
{
	memset(f, 0, sizeof(*f));
	f->base = tu_count_fds();
	make_dir();
	snprintf(f->path, sizeof(f->path), "%s/dev%u.sock", dir, seq++);
	f->n = n;
	f->shm = tu_memfd("ivs-test", SHM_SIZE, 1);
	if (f->shm < 0 || pwrite(f->shm, MARKER, sizeof(MARKER), 0) != sizeof(MARKER))
		return -1;
	open_eventfds(f->own, n);
	open_eventfds(f->peer, n);
	return vpd_ivshmem_create(f->path, &f->s);
}

static int fixture_expect(struct fixture *f, bool with_peer)
{
	struct vpd_ivshmem_client c = {
		.id = 7, .shm_fd = f->shm, .nvectors = f->n, .own_fds = f->own,
		.peer_id = 1, .peer_fds = with_peer ? f->peer : NULL,
	};

	return vpd_ivshmem_expect(f->s, &c);
}

static void fixture_fini(struct fixture *f)
{
	vpd_ivshmem_destroy(f->s);
	close_all(f->own, f->n);
	close_all(f->peer, f->n);
	if (f->shm >= 0)
		close(f->shm);
}

/* End of a case: close the client (if any) and the fixture; no fd may be left. The
 * case closes the fds it opened itself first. */
static void fixture_done(struct fixture *f, int client)
{
	if (client >= 0)
		close(client);
	fixture_fini(f);
	CHECK_EQ(tu_count_fds(), f->base);
}

/* A blocking client socket (2 s receive timeout: a bug fails, never hangs). */
static int client_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 2 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * One message as QEMU reads it: 8 bytes and at most one fd. 1 with *val and
 * *fd (-1: none), 0 on EOF, -EAGAIN (with flags MSG_DONTWAIT), -1 on error.
 */
static int read_msg(int sock, int flags, int64_t *val, int *fd)
{
	uint64_t le;
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &le, sizeof(le) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	ssize_t r = recvmsg(sock, &mh, flags | MSG_WAITALL | MSG_CMSG_CLOEXEC);
	unsigned nfds = 0;

	*fd = -1;
	if (r < 0)
		return errno == EAGAIN && (flags & MSG_DONTWAIT) ? -EAGAIN : -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds += (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
		}
	if (r == 0)
		return 0;
	if (r != sizeof(le) || nfds > 1) {
		fprintf(stderr, "  read_msg: %zd bytes, %u fds\n", r, nfds);
		return -1;
	}
	*val = (int64_t)le64toh(le);
	return 1;
}

/* Expect one message with value val and no fd. */
static bool expect_plain(int sock, int64_t val)
{
	int64_t v = 0;
	int fd;

	if (read_msg(sock, 0, &v, &fd) != 1 || v != val || fd >= 0) {
		fprintf(stderr, "  expected %lld without fd, got %lld fd %d\n", (long long)val,
			(long long)v, fd);
		if (fd >= 0)
			close(fd);
		return false;
	}
	return true;
}

/* Expect one message with value val and an eventfd; returns the fd or -1. */
static int expect_eventfd(int sock, int64_t val)
{
	int64_t v = 0;
	int fd;

	if (read_msg(sock, 0, &v, &fd) != 1 || v != val || vp_fd_check_eventfd(fd) < 0) {
		fprintf(stderr, "  expected %lld with an eventfd, got %lld fd %d\n",
			(long long)val, (long long)v, fd);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Writing a received eventfd must be seen on our copy (the same eventfd). */
static bool same_eventfd(int received, int ours)
{
	uint64_t one = 1, got = 0;

	return write(received, &one, sizeof(one)) == sizeof(one) &&
	       read(ours, &got, sizeof(got)) == sizeof(got) && got == 1;
}

/* Read and check n vectors of id, each the same eventfd as ours[i]. */
static bool expect_vectors(int sock, int64_t id, const int *ours, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int fd = expect_eventfd(sock, id);
		bool same = fd >= 0 && same_eventfd(fd, ours[i]);

		if (fd >= 0)
			close(fd);
		if (!same) {
			fprintf(stderr, "  vector %u of id %lld is not ours\n", i, (long long)id);
			return false;
		}
	}
	return true;
}

/* The first three messages (version, id, shared memory), checked. */
static bool expect_head(int sock, int64_t id)
{
	char buf[sizeof(MARKER)] = "";
	struct stat st;
	int64_t v = 0;
	int fd = -1;
	bool ok;

	if (!expect_plain(sock, 0) || !expect_plain(sock, id))
		return false;
	ok = read_msg(sock, 0, &v, &fd) == 1 && v == -1 && vp_fd_check_memory(fd) == 0 &&
	     fstat(fd, &st) == 0 && st.st_size == SHM_SIZE &&
	     pread(fd, buf, sizeof(buf), 0) == sizeof(buf) && !memcmp(buf, MARKER, sizeof(buf));
	if (!ok)
		fprintf(stderr, "  shared memory message: value %lld fd %d\n", (long long)v, fd);
	if (fd >= 0)
		close(fd);
	return ok;
}

static bool nothing_more(int sock)
{
	int64_t v;
	int fd;

	return read_msg(sock, MSG_DONTWAIT, &v, &fd) == -EAGAIN;
}

/* Connect a client the server was told to expect; it is served at once. -1 on failure. */
static int serve_client(struct fixture *f)
{
	int c = client_connect(f->path);
	int r = c >= 0 ? vpd_ivshmem_dispatch(f->s) : -1;

	if (r != (VPD_IVSHMEM_CONNECTED | VPD_IVSHMEM_SETUP_SENT)) {
		fprintf(stderr, "  serve_client: fd %d, dispatch %d\n", c, r);
		if (c >= 0)
			close(c);
		return -1;
	}
	return c;
}

/* The whole setup of the fixture's expectation with its peer vectors. */
static bool expect_setup(int sock, const struct fixture *f)
{
	return expect_head(sock, 7) && expect_vectors(sock, 1, f->peer, f->n) &&
	       expect_vectors(sock, 7, f->own, f->n);
}

TEST(setup_sequence_values_and_fds)
{
	struct vpd_ivshmem_stats st;
	struct fixture f;
	int c, r;

	REQUIRE(fixture_init(&f, 3) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	vpd_ivshmem_stats(f.s, &st);
	CHECK(st.expecting && !st.connected);
	c = client_connect(f.path);
	REQUIRE(c >= 0);
	/* The listener's readiness reaches the caller through the one fd. */
	CHECK_EQ(poll(&(struct pollfd){ .fd = vpd_ivshmem_fd(f.s), .events = POLLIN }, 1, 1000), 1);
	r = vpd_ivshmem_dispatch(f.s);
	CHECK_EQ(r, VPD_IVSHMEM_CONNECTED | VPD_IVSHMEM_SETUP_SENT);
	CHECK(expect_head(c, 7));
	CHECK(expect_vectors(c, 1, f.peer, 3));   /* the virtual peer first */
	CHECK(expect_vectors(c, 7, f.own, 3));    /* then the client's own */
	CHECK(nothing_more(c));
	vpd_ivshmem_stats(f.s, &st);
	CHECK(!st.expecting && st.connected);
	CHECK_EQ(st.queued, 0);
	CHECK_EQ(st.msgs_sent, 9);
	CHECK_EQ(st.fds_sent, 7);
	CHECK_EQ(st.accepted, 1);
	/* Nothing left to do: the fd is quiet. */
	CHECK_EQ(poll(&(struct pollfd){ .fd = vpd_ivshmem_fd(f.s), .events = POLLIN }, 1, 0), 0);
	fixture_done(&f, c);
}

TEST(no_virtual_peer_until_set_peer)
{
	struct fixture f;
	int c, newpeer[2];

	REQUIRE(fixture_init(&f, 2) == 0);
	CHECK_EQ(fixture_expect(&f, false), 0);
	c = serve_client(&f);
	REQUIRE(c >= 0);
	CHECK(expect_head(c, 7));
	CHECK(expect_vectors(c, 7, f.own, 2));
	CHECK(nothing_more(c));
	/* First vectors of the peer: no disconnect message before them. */
	open_eventfds(newpeer, 2);
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, newpeer), 0);
	CHECK(expect_vectors(c, 1, newpeer, 2));
	CHECK(nothing_more(c));
	close_all(newpeer, 2);
	fixture_done(&f, c);
}

TEST(vector_replacement)
{
	struct fixture f;
	int c, newpeer[3], before[3];

	REQUIRE(fixture_init(&f, 3) == 0);
	open_eventfds(before, 3);
	CHECK_EQ(fixture_expect(&f, true), 0);
	/* Replaced before QEMU connects: it only ever sees the new ones. */
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, before), 0);
	c = serve_client(&f);
	REQUIRE(c >= 0);
	CHECK(expect_head(c, 7));
	CHECK(expect_vectors(c, 1, before, 3));
	CHECK(expect_vectors(c, 7, f.own, 3));
	/* Connected: the new fds come as a new peer, with no disconnect of the old
	 * one (QEMU 7.2 corrupts its heap on a peer id that disconnected and comes
	 * back, see ivshmem.h). */
	CHECK_EQ(vpd_ivshmem_peer_id(f.s), 1);
	open_eventfds(newpeer, 3);
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, newpeer), 0);
	CHECK_EQ(vpd_ivshmem_peer_id(f.s), 2);
	CHECK(expect_vectors(c, 2, newpeer, 3));
	CHECK(nothing_more(c));
	/* Bad replacements are refused and change nothing. */
	{
		int bad[3] = { newpeer[0], f.shm, newpeer[2] };

		CHECK_EQ(vpd_ivshmem_set_peer(f.s, bad), -EINVAL);
		CHECK_EQ(vpd_ivshmem_set_peer(f.s, NULL), -EINVAL);
		CHECK(nothing_more(c));
	}
	close_all(newpeer, 3);
	close_all(before, 3);
	fixture_done(&f, c);
}

TEST(client_leaves_and_device_is_served_again)
{
	struct vpd_ivshmem_stats st;
	struct fixture f;
	int c;

	REQUIRE(fixture_init(&f, 1) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	c = serve_client(&f);
	REQUIRE(c >= 0);
	close(c);
	CHECK_EQ(poll(&(struct pollfd){ .fd = vpd_ivshmem_fd(f.s), .events = POLLIN }, 1, 1000), 1);
	CHECK_EQ(vpd_ivshmem_dispatch(f.s), VPD_IVSHMEM_GONE);
	CHECK_STR(vpd_ivshmem_reason(f.s), "disconnected");
	vpd_ivshmem_stats(f.s, &st);
	CHECK(!st.connected && !st.expecting);
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, f.peer), -ENOTCONN);
	/* Nobody expected now: a connection is refused (closed at once). */
	c = client_connect(f.path);
	REQUIRE(c >= 0);
	CHECK_EQ(vpd_ivshmem_dispatch(f.s), 0);
	{
		int64_t v;
		int fd;

		CHECK_EQ(read_msg(c, 0, &v, &fd), 0);
	}
	close(c);
	/* Served again after a new expect(). */
	CHECK_EQ(fixture_expect(&f, true), 0);
	c = serve_client(&f);
	REQUIRE(c >= 0);
	CHECK(expect_setup(c, &f));
	vpd_ivshmem_stats(f.s, &st);
	CHECK_EQ(st.accepted, 2);
	CHECK_EQ(st.refused, 1);
	/* The daemon unplugs it: the client sees EOF. */
	vpd_ivshmem_drop(f.s);
	{
		int64_t v;
		int fd;

		CHECK_EQ(read_msg(c, 0, &v, &fd), 0);
	}
	fixture_done(&f, c);
}

TEST(second_client_refused_while_one_is_served)
{
	struct vpd_ivshmem_stats st;
	struct fixture f;
	int c, c2;
	int64_t v;
	int fd;

	REQUIRE(fixture_init(&f, 1) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	CHECK_EQ(fixture_expect(&f, true), -EBUSY);
	c = client_connect(f.path);
	c2 = client_connect(f.path);
	REQUIRE(c >= 0 && c2 >= 0);
	CHECK_EQ(vpd_ivshmem_dispatch(f.s), VPD_IVSHMEM_CONNECTED | VPD_IVSHMEM_SETUP_SENT);
	CHECK_EQ(read_msg(c2, 0, &v, &fd), 0);   /* refused: EOF, nothing sent */
	CHECK(expect_head(c, 7));
	vpd_ivshmem_stats(f.s, &st);
	CHECK_EQ(st.refused, 1);
	CHECK(st.connected);
	close(c2);
	fixture_done(&f, c);
}

TEST(expect_checks_fds_and_ids)
{
	int base = tu_count_fds();
	struct fixture f;
	struct vpd_ivshmem_client c;
	int pipefd[2], odd;

	REQUIRE(fixture_init(&f, 2) == 0);
	REQUIRE(pipe2(pipefd, O_CLOEXEC) == 0);
	c = (struct vpd_ivshmem_client){ .id = 7, .shm_fd = f.shm, .nvectors = 2,
					 .own_fds = f.own, .peer_id = 7 };
	CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);          /* id == peer id */
	c.peer_id = 1;
	c.nvectors = 0;
	CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);
	c.nvectors = VPD_IVSHMEM_MAX_VECTORS + 1;
	CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);
	c.nvectors = 2;
	odd = tu_memfd("ivs-odd", 3 * 4096, 1);                  /* QEMU would assert */
	c.shm_fd = odd;
	CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);
	c.shm_fd = pipefd[0];
	CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);
	c.shm_fd = f.shm;
	{
		int own[2] = { f.own[0], pipefd[1] };

		c.own_fds = own;
		CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);
		c.own_fds = f.own;
		c.peer_fds = own;
		CHECK_EQ(vpd_ivshmem_expect(f.s, &c), -EINVAL);
	}
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, f.peer), -ENOTCONN);
	c.peer_fds = f.peer;
	CHECK_EQ(vpd_ivshmem_expect(f.s, &c), 0);
	close(odd);
	close(pipefd[0]);
	close(pipefd[1]);
	fixture_fini(&f);   /* an expectation never met: its dups are closed too */
	CHECK_EQ(tu_count_fds(), base);
}

TEST(create_refuses_existing_path_and_destroy_unlinks)
{
	int base = tu_count_fds();
	struct vpd_ivshmem *s2 = NULL;
	struct fixture f;
	struct stat st;
	char longpath[200];

	REQUIRE(fixture_init(&f, 1) == 0);
	CHECK(stat(f.path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
	CHECK_EQ(vpd_ivshmem_create(f.path, &s2), -EEXIST);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	CHECK_EQ(vpd_ivshmem_create(longpath, &s2), -ENAMETOOLONG);
	fixture_fini(&f);
	CHECK(stat(f.path, &st) < 0 && errno == ENOENT);
	CHECK_EQ(tu_count_fds(), base);
}

/* Raise the soft fd limit: the next cases hold hundreds of eventfds. */
static void more_fds(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(client_that_reads_nothing_never_blocks_the_server)
{
	const unsigned n = VPD_IVSHMEM_MAX_VECTORS;
	int c, newpeer[VPD_IVSHMEM_MAX_VECTORS];
	struct vpd_ivshmem_stats st;
	struct fixture f;
	double t0;
	int r, got = 0, rounds = 0;
	int64_t v;
	int fd;

	more_fds();
	REQUIRE(fixture_init(&f, n) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	c = client_connect(f.path);
	REQUIRE(c >= 0);
	t0 = now_s();
	r = vpd_ivshmem_dispatch(f.s);
	CHECK(now_s() - t0 < 1.0);
	/* 3 + 2n messages do not fit a socket buffer: the rest waits. */
	CHECK_EQ(r, VPD_IVSHMEM_CONNECTED);
	vpd_ivshmem_stats(f.s, &st);
	CHECK(st.queued > 0 && st.connected);
	CHECK_EQ(poll(&(struct pollfd){ .fd = vpd_ivshmem_fd(f.s), .events = POLLIN }, 1, 0), 0);
	/* A replacement while blocked is queued behind the setup. */
	open_eventfds(newpeer, n);
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, newpeer), 0);
	/* The client reads now, the server resumes on writability. */
	CHECK(expect_head(c, 7));
	/* peer 1's vectors, our own (7), then the replacement as peer 2 */
	for (unsigned i = 0; i < 3 * n; i++) {
		int64_t want = i < n ? 1 : i < 2 * n ? 7 : 2;
		bool withfd = true;

		while ((r = read_msg(c, MSG_DONTWAIT, &v, &fd)) == -EAGAIN && rounds < 10000) {
			/* Readiness must come through the one fd, not our guess. */
			if (poll(&(struct pollfd){ .fd = vpd_ivshmem_fd(f.s), .events = POLLIN },
				 1, 1000) != 1)
				break;
			r = vpd_ivshmem_dispatch(f.s);
			if (r & VPD_IVSHMEM_SETUP_SENT)
				got++;
			rounds++;
		}
		if (r != 1 || v != want || (fd >= 0) != withfd) {
			fprintf(stderr, "  message %u: r %d value %lld fd %d\n", i, r, (long long)v, fd);
			CHECK(0);
			if (fd >= 0)
				close(fd);
			break;
		}
		if (fd >= 0) {
			const int *ours = i < n ? f.peer : i < 2 * n ? f.own : newpeer;
			unsigned k = i < n ? i : i < 2 * n ? i - n : i - 2 * n;

			if (!same_eventfd(fd, ours[k])) {
				fprintf(stderr, "  message %u: not our eventfd\n", i);
				CHECK(0);
			}
			close(fd);
		}
	}
	CHECK_EQ(got, 1);   /* SETUP_SENT reported once, when the setup went out */
	CHECK(rounds > 0);
	CHECK(nothing_more(c));
	vpd_ivshmem_stats(f.s, &st);
	CHECK_EQ(st.queued, 0);
	CHECK_EQ(st.msgs_sent, 3 + 3 * n);
	close(c);
	close_all(newpeer, n);
	fixture_done(&f, -1);
}

TEST(client_that_never_reads_is_dropped_not_queued_for_ever)
{
	const unsigned n = VPD_IVSHMEM_MAX_VECTORS;
	int base, c, newpeer[VPD_IVSHMEM_MAX_VECTORS];
	struct vpd_ivshmem_stats st;
	struct fixture f;
	int r = 0, i;

	more_fds();
	base = tu_count_fds();
	REQUIRE(fixture_init(&f, n) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	c = client_connect(f.path);
	REQUIRE(c >= 0);
	CHECK_EQ(vpd_ivshmem_dispatch(f.s), VPD_IVSHMEM_CONNECTED);
	open_eventfds(newpeer, n);
	for (i = 0; i < 20 && (r = vpd_ivshmem_set_peer(f.s, newpeer)) == 0; i++)
		;
	CHECK_EQ(r, -EPIPE);
	CHECK(i >= 1 && i < 20);
	CHECK(strstr(vpd_ivshmem_reason(f.s), "not reading") != NULL);
	vpd_ivshmem_stats(f.s, &st);
	CHECK(!st.connected);
	CHECK_EQ(st.queued, 0);
	close(c);
	close_all(newpeer, n);
	fixture_fini(&f);
	CHECK_EQ(tu_count_fds(), base);   /* every queued dup closed */
}

/* Every replacement takes the next id, skipping the client's own (7), until
 * VPD_IVSHMEM_MAX_PEER_ID; then -ENOSPC, nothing sent, every dup closed. */
TEST(peer_ids_run_out)
{
	struct fixture f;
	int c, newpeer[2], base, id = 1;

	base = tu_count_fds();
	REQUIRE(fixture_init(&f, 2) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	c = serve_client(&f);
	REQUIRE(c >= 0);
	CHECK(expect_head(c, 7));
	CHECK(expect_vectors(c, 1, f.peer, 2));
	CHECK(expect_vectors(c, 7, f.own, 2));
	open_eventfds(newpeer, 2);
	for (int i = 0; i < VPD_IVSHMEM_MAX_PEER_ID - 2; i++) {
		id += id + 1 == 7 ? 2 : 1;
		CHECK_EQ(vpd_ivshmem_set_peer(f.s, newpeer), 0);
		CHECK_EQ(vpd_ivshmem_peer_id(f.s), id);
		CHECK(expect_vectors(c, id, newpeer, 2));
	}
	CHECK_EQ(id, VPD_IVSHMEM_MAX_PEER_ID);
	CHECK_EQ(vpd_ivshmem_set_peer(f.s, newpeer), -ENOSPC);
	CHECK_EQ(vpd_ivshmem_peer_id(f.s), VPD_IVSHMEM_MAX_PEER_ID);
	CHECK(nothing_more(c));
	close_all(newpeer, 2);
	fixture_done(&f, c);
	CHECK_EQ(tu_count_fds(), base);
}

/* Send bytes with an fd attached (a client talking when it should not). */
static bool send_with_fd(int sock, const void *buf, size_t len, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	memset(&u, 0, sizeof(u));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, 0) == (ssize_t)len;
}

TEST(client_garbage_is_discarded_and_a_flood_dropped)
{
	struct vpd_ivshmem_stats st;
	struct fixture f;
	char junk[100];
	int c, efd, r = 0;
	unsigned sent = 0;

	REQUIRE(fixture_init(&f, 1) == 0);
	CHECK_EQ(fixture_expect(&f, true), 0);
	c = serve_client(&f);
	REQUIRE(c >= 0);
	memset(junk, 0xff, sizeof(junk));
	efd = eventfd(0, EFD_CLOEXEC);
	REQUIRE(efd >= 0 && send_with_fd(c, junk, sizeof(junk), efd));
	close(efd);   /* the only reference left is in flight, then the server's */
	CHECK_EQ(vpd_ivshmem_dispatch(f.s), 0);
	vpd_ivshmem_stats(f.s, &st);
	CHECK_EQ(st.junk_bytes, 100);
	CHECK_EQ(st.junk_fds, 1);
	CHECK(st.connected);   /* talking alone is not a reason to lose the device */
	/* The setup still reads fine after it. */
	CHECK(expect_setup(c, &f));
	/* A flood: more than 1 MiB, fed in steps the server reads. */
	{
		char big[65536];
		int fl = fcntl(c, F_GETFL);

		memset(big, 'x', sizeof(big));
		fcntl(c, F_SETFL, fl | O_NONBLOCK);
		for (int i = 0; i < 200 && !(r & VPD_IVSHMEM_GONE); i++) {
			ssize_t w = send(c, big, sizeof(big), MSG_NOSIGNAL);

			if (w > 0)
				sent += (unsigned)w;
			r = vpd_ivshmem_dispatch(f.s);
		}
	}
	CHECK(r & VPD_IVSHMEM_GONE);
	CHECK(sent >= 1024 * 1024);
	CHECK(strstr(vpd_ivshmem_reason(f.s), "flooded") != NULL);
	fixture_done(&f, c);
}
