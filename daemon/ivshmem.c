/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The ivshmem server of one backend-VM device (see ivshmem.h).
 *
 * Security model: the client is QEMU of a backend VM, and a guest owns that
 * QEMU's behaviour only as far as QEMU lets it; still, this socket is a peer
 * like any other. The protocol is one-way (we talk, QEMU listens), so any
 * byte or fd arriving is unexpected: read, counted, fds closed, discarded,
 * at most JUNK_PER_DISPATCH bytes per wake-up, and a client past JUNK_MAX is
 * dropped. A client that stops reading costs at most QUEUE_MAX(n) queued
 * messages before it is dropped. A connection nobody expects is closed at
 * once. The fds we send are dups made at expect()/set_peer() time, so the
 * caller closing or replacing its own fds never hands QEMU a recycled number.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhostpci/fd.h"
#include "vhostpci/log.h"
#include "ivshmem.h"

#define JUNK_PER_DISPATCH (64 * 1024)
#define JUNK_MAX (1024 * 1024)
/* Setup (3 + 2n) plus a few peer replacements (n + 1 each): more means the
 * client is not reading. */
#define QUEUE_MAX(n) (3 + 2 * (size_t)(n) + 4 * ((size_t)(n) + 1))

struct ivs_msg {
	int64_t val;
	int fd;                  /* ours, -1: none; closed once sent */
};

struct vpd_ivshmem {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t st_dev;
	ino_t st_ino;
	int epfd, lfd, cfd;
	bool out_armed;          /* EPOLLOUT on cfd */

	/* the expectation, then the connected client's parameters */
	bool expecting, peer_live;
	uint16_t id, peer_id;
	unsigned n;
	int shm_fd;
	int *own_fds, *peer_fds; /* n each, ours; -1 once queued */

	struct ivs_msg *q;
	size_t qhead, qlen, qcap;
	size_t sent;             /* bytes of q[qhead] already out (its fd went first) */
	size_t setup_left;       /* messages of the setup sequence still queued */
	uint64_t junk_conn;      /* junk bytes from the current client */
	char reason[160];
	struct vpd_ivshmem_stats st;
};

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; fds && i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

static void forget_expectation(struct vpd_ivshmem *s)
{
	close_fds(&s->shm_fd, 1);
	close_fds(s->own_fds, s->n);
	close_fds(s->peer_fds, s->n);
	free(s->own_fds);
	free(s->peer_fds);
	s->own_fds = s->peer_fds = NULL;
	s->expecting = s->peer_live = false;
	s->n = 0;
}

static void queue_clear(struct vpd_ivshmem *s)
{
	for (size_t i = s->qhead; i < s->qlen; i++)
		close_fds(&s->q[i].fd, 1);
	s->qhead = s->qlen = s->sent = s->setup_left = 0;
}

/* Take ownership of fd (even on failure, when it is closed). */
static int queue_push(struct vpd_ivshmem *s, int64_t val, int fd)
{
	if (s->qhead > 0 && s->qhead == s->qlen)
		s->qhead = s->qlen = 0;
	if (s->qlen == s->qcap) {
		size_t cap = s->qcap ? s->qcap * 2 : 64;
		struct ivs_msg *q;

		if (s->qhead > 0) {  /* reuse the sent prefix first */
			memmove(s->q, s->q + s->qhead, (s->qlen - s->qhead) * sizeof(*s->q));
			s->qlen -= s->qhead;
			s->qhead = 0;
		} else if (!(q = realloc(s->q, cap * sizeof(*q)))) {
			if (fd >= 0)
				close(fd);
			return -ENOMEM;
		} else {
			s->q = q;
			s->qcap = cap;
		}
	}
	s->q[s->qlen++] = (struct ivs_msg){ .val = val, .fd = fd };
	return 0;
}

static int dup_fds(const int *src, unsigned n, int **out)
{
	int *fds = malloc(n * sizeof(*fds));

	if (!fds)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		fds[i] = -1;
	for (unsigned i = 0; i < n; i++)
		if ((fds[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 0)) < 0) {
			int e = -errno;

			close_fds(fds, n);
			free(fds);
			return e;
		}
	*out = fds;
	return 0;
}

static int check_eventfds(const char *what, const int *fds, unsigned n)
{
	char kind[48];

	for (unsigned i = 0; i < n; i++)
		if (vp_fd_check_eventfd(fds[i]) < 0) {
			vp_log(VP_LOG_ERR, "ivshmem: %s vector %u is a %s, not an eventfd", what, i,
			       vp_fd_kind(fds[i], kind, sizeof(kind)));
			return -EINVAL;
		}
	return 0;
}

int vpd_ivshmem_create(const char *path, struct vpd_ivshmem **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN };
	struct vpd_ivshmem *s;
	struct stat st;
	int e;

	if (!path || !out)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	snprintf(s->path, sizeof(s->path), "%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	s->cfd = s->shm_fd = -1;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->lfd < 0 || s->epfd < 0) {
		e = -errno;
		goto err;
	}
	/* Nobody can connect before listen(): chmod after bind is race-free. */
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno == EADDRINUSE ? -EEXIST : -errno;
		goto err;
	}
	if (chmod(path, 0600) < 0 || lstat(path, &st) < 0 || listen(s->lfd, 4) < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0) {
		e = -errno;
		unlink(path);
		goto err;
	}
	s->st_dev = st.st_dev;
	s->st_ino = st.st_ino;
	*out = s;
	return 0;
err:
	vp_log(VP_LOG_ERR, "ivshmem: cannot listen on %s: %s", path, strerror(-e));
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s);
	return e;
}

int vpd_ivshmem_fd(const struct vpd_ivshmem *s)
{
	return s->epfd;
}

int vpd_ivshmem_expect(struct vpd_ivshmem *s, const struct vpd_ivshmem_client *c)
{
	struct stat st;
	char kind[48];
	int e, m;

	if (s->expecting || s->cfd >= 0)
		return -EBUSY;
	if (!c || !c->own_fds || c->nvectors == 0 || c->nvectors > VPD_IVSHMEM_MAX_VECTORS ||
	    c->id == c->peer_id) {
		vp_log(VP_LOG_ERR, "ivshmem %s: bad client (vectors %u, id %u, peer %u)", s->path,
		       c ? c->nvectors : 0, c ? c->id : 0, c ? c->peer_id : 0);
		return -EINVAL;
	}
	m = vp_fd_check_memory(c->shm_fd);
	if ((m < 0 && m != -EPERM) || fstat(c->shm_fd, &st) < 0 || st.st_size <= 0 ||
	    (st.st_size & (st.st_size - 1))) {
		vp_log(VP_LOG_ERR, "ivshmem %s: shared memory must be memory of a power-of-two "
		       "size (QEMU asserts on any other BAR), got a %s", s->path,
		       vp_fd_kind(c->shm_fd, kind, sizeof(kind)));
		return -EINVAL;
	}
	if (check_eventfds("own", c->own_fds, c->nvectors) < 0 ||
	    (c->peer_fds && check_eventfds("peer", c->peer_fds, c->nvectors) < 0))
		return -EINVAL;

	s->n = c->nvectors;
	if ((s->shm_fd = fcntl(c->shm_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		e = -errno;
		goto err;
	}
	if ((e = dup_fds(c->own_fds, s->n, &s->own_fds)) < 0 ||
	    (c->peer_fds && (e = dup_fds(c->peer_fds, s->n, &s->peer_fds)) < 0))
		goto err;
	s->id = c->id;
	s->peer_id = c->peer_id;
	s->expecting = true;
	s->reason[0] = '\0';
	return 0;
err:
	forget_expectation(s);
	return e;
}

static void set_out(struct vpd_ivshmem *s, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0) };

	if (s->out_armed == on)
		return;
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->cfd, &ev) == 0)
		s->out_armed = on;
}

/* Close the client with a logged reason; its queued fds too. */
static void drop_client(struct vpd_ivshmem *s, enum vp_log_level lvl, const char *why)
{
	if (s->cfd < 0)
		return;
	snprintf(s->reason, sizeof(s->reason), "%s", why);
	vp_log(lvl, "ivshmem %s: client %u gone: %s", s->path, s->id, why);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->cfd, NULL);
	close(s->cfd);
	s->cfd = -1;
	s->out_armed = false;
	queue_clear(s);
	forget_expectation(s);
}

/* Send what the socket takes; 0, or -1 after dropping the client. */
static int flush(struct vpd_ivshmem *s)
{
	while (s->qhead < s->qlen) {
		struct ivs_msg *m = &s->q[s->qhead];
		uint64_t le = htole64((uint64_t)m->val);
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = { (char *)&le + s->sent, sizeof(le) - s->sent };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t r;

		if (m->fd >= 0) {  /* only ever on the message's first bytes */
			struct cmsghdr *cm;

			memset(&u, 0, sizeof(u));
			mh.msg_control = u.buf;
			mh.msg_controllen = sizeof(u.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &m->fd, sizeof(int));
		}
		r = sendmsg(s->cfd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			char why[96];

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				set_out(s, true);
				return 0;
			}
			snprintf(why, sizeof(why), "send: %s", strerror(errno));
			drop_client(s, VP_LOG_WARN, why);
			return -1;
		}
		if (m->fd >= 0) {
			close(m->fd);
			m->fd = -1;
			s->st.fds_sent++;
		}
		s->sent += (size_t)r;
		if (s->sent == sizeof(le)) {
			s->sent = 0;
			s->qhead++;
			s->st.msgs_sent++;
			if (s->setup_left)
				s->setup_left--;
		}
	}
	s->qhead = s->qlen = 0;
	set_out(s, false);
	return 0;
}

/* Queue the virtual peer's vectors (s->peer_fds, moved into the queue). */
static int queue_peer(struct vpd_ivshmem *s)
{
	int e = 0;

	for (unsigned i = 0; i < s->n; i++) {
		int r = queue_push(s, s->peer_id, s->peer_fds[i]);

		s->peer_fds[i] = -1;
		if (r < 0)
			e = r;
	}
	free(s->peer_fds);
	s->peer_fds = NULL;
	s->peer_live = true;
	return e;
}

/* 1: the expected client, queued for; 2: a connection refused; 0: none
 * waiting (or a transient failure); negative errno: the listener broke. */
static int accept_client(struct vpd_ivshmem *s)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int e = 0;

	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return 0;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			vp_log(VP_LOG_ERR, "ivshmem %s: accept: %s", s->path, strerror(errno));
			return 0;  /* transient: QEMU's connect waits in the backlog */
		}
		return -errno;
	}
	if (!s->expecting || s->cfd >= 0) {
		s->st.refused++;
		vp_log(VP_LOG_WARN, "ivshmem %s: refusing a connection: %s", s->path,
		       s->cfd >= 0 ? "this device already has its client" :
		       "no device expects a client here");
		close(fd);
		return 2;
	}
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		vp_log(VP_LOG_ERR, "ivshmem %s: epoll: %s", s->path, strerror(errno));
		close(fd);
		return 0;
	}
	s->cfd = fd;
	s->out_armed = false;
	s->expecting = false;
	s->junk_conn = 0;
	s->st.accepted++;
	queue_clear(s);
	e |= queue_push(s, 0, -1);            /* protocol version */
	e |= queue_push(s, s->id, -1);
	e |= queue_push(s, -1, s->shm_fd);
	s->shm_fd = -1;
	if (s->peer_fds)
		e |= queue_peer(s);
	for (unsigned i = 0; i < s->n; i++) {
		e |= queue_push(s, s->id, s->own_fds[i]);
		s->own_fds[i] = -1;
	}
	s->setup_left = s->qlen;
	if (e) {
		drop_client(s, VP_LOG_ERR, "out of memory queueing the setup");
		return 0;
	}
	vp_log(VP_LOG_INFO, "ivshmem %s: client %u connected (%u vectors)", s->path, s->id, s->n);
	return 1;
}

/* Read and discard whatever the client sent; 0, or -1 if it was dropped. */
static int discard_input(struct vpd_ivshmem *s)
{
	size_t got = 0;

	while (got < JUNK_PER_DISPATCH) {
		char buf[4096];
		union {
			char buf[CMSG_SPACE(16 * sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *cm;
		ssize_t r = recvmsg(s->cfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (r < 0) {
			char why[96];

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			if (errno == ECONNRESET) {  /* closed with our messages unread */
				drop_client(s, VP_LOG_INFO, "disconnected");
				return -1;
			}
			snprintf(why, sizeof(why), "recv: %s", strerror(errno));
			drop_client(s, VP_LOG_WARN, why);
			return -1;
		}
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(fd);
				s->st.junk_fds++;
			}
		}
		if (r == 0) {
			drop_client(s, VP_LOG_INFO, "disconnected");
			return -1;
		}
		if (s->junk_conn == 0)
			vp_log(VP_LOG_WARN, "ivshmem %s: client %u sent data (the protocol has "
			       "none from clients): discarded", s->path, s->id);
		got += (size_t)r;
		s->junk_conn += (uint64_t)r;
		s->st.junk_bytes += (uint64_t)r;
		if (s->junk_conn > JUNK_MAX) {
			drop_client(s, VP_LOG_WARN, "flooded the server with unexpected data");
			return -1;
		}
	}
	return 0;
}

int vpd_ivshmem_dispatch(struct vpd_ivshmem *s)
{
	struct epoll_event evs[2];
	int res = 0;

	/* Two fds at most: serve both, whatever is ready (every step stops at
	 * EAGAIN). The wait only lets the epoll fd re-evaluate its readiness. */
	if (epoll_wait(s->epfd, evs, 2, 0) < 0 && errno != EINTR)
		return -errno;
	if (s->cfd >= 0) {
		size_t setup_before = s->setup_left;

		if (discard_input(s) == 0 && flush(s) == 0 && setup_before && !s->setup_left)
			res |= VPD_IVSHMEM_SETUP_SENT;
		if (s->cfd < 0)
			res |= VPD_IVSHMEM_GONE;
	}
	for (;;) {
		int r = accept_client(s);

		if (r < 0) {
			vp_log(VP_LOG_ERR, "ivshmem %s: accept: %s", s->path, strerror(-r));
			return r;
		}
		if (r == 0)
			break;
		if (r == 2)  /* refused: there may be more waiting */
			continue;
		res |= VPD_IVSHMEM_CONNECTED;
		if (flush(s) < 0)
			res |= VPD_IVSHMEM_GONE;
		else if (!s->setup_left)
			res |= VPD_IVSHMEM_SETUP_SENT;
	}
	return res;
}

uint16_t vpd_ivshmem_peer_id(const struct vpd_ivshmem *s)
{
	return s->peer_id;
}

int vpd_ivshmem_set_peer(struct vpd_ivshmem *s, const int *fds)
{
	int *nfds;
	int e;

	if (!s->expecting && s->cfd < 0)
		return -ENOTCONN;
	if (!fds || check_eventfds("peer", fds, s->n) < 0)
		return -EINVAL;
	if ((e = dup_fds(fds, s->n, &nfds)) < 0)
		return e;
	if (s->peer_fds) {  /* not sent yet: replace */
		close_fds(s->peer_fds, s->n);
		free(s->peer_fds);
	}
	s->peer_fds = nfds;
	if (s->cfd < 0)
		return 0;
	if (s->qlen - s->qhead + s->n + 1 > QUEUE_MAX(s->n)) {
		drop_client(s, VP_LOG_WARN, "not reading its socket (too many messages queued)");
		return -EPIPE;
	}
	if (s->peer_live) {
		/* A new id, never a disconnect: see ivshmem.h. */
		uint16_t id = (uint16_t)(s->peer_id + 1 + (s->peer_id + 1 == s->id));

		if (id > VPD_IVSHMEM_MAX_PEER_ID) {
			close_fds(s->peer_fds, s->n);
			free(s->peer_fds);
			s->peer_fds = NULL;
			return -ENOSPC;
		}
		s->peer_id = id;
	}
	e = queue_peer(s);
	if (e < 0) {
		drop_client(s, VP_LOG_ERR, "out of memory queueing peer vectors");
		return -EPIPE;
	}
	return flush(s) < 0 ? -EPIPE : 0;
}

const char *vpd_ivshmem_reason(const struct vpd_ivshmem *s)
{
	return s->reason;
}

void vpd_ivshmem_stats(const struct vpd_ivshmem *s, struct vpd_ivshmem_stats *st)
{
	*st = s->st;
	st->expecting = s->expecting;
	st->connected = s->cfd >= 0;
	st->queued = s->qlen - s->qhead;
}

void vpd_ivshmem_drop(struct vpd_ivshmem *s)
{
	if (s->cfd >= 0)
		drop_client(s, VP_LOG_INFO, "dropped by the daemon");
	queue_clear(s);
	forget_expectation(s);
}

void vpd_ivshmem_destroy(struct vpd_ivshmem *s)
{
	struct stat st;

	if (!s)
		return;
	vpd_ivshmem_drop(s);
	close(s->lfd);
	close(s->epfd);
	/* Only our own file: a successor may have replaced it already. */
	if (lstat(s->path, &st) == 0 && st.st_dev == s->st_dev && st.st_ino == s->st_ino)
		unlink(s->path);
	free(s->q);
	free(s);
}
