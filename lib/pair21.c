/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The 2.1 pair broker (vp_pair21) and a peer's join (vp_pair21_join()):
 * how two 2.1 peers get their halves of one window (docs/window21.md,
 * docs/protocol.md VHOST_PCI_PAIR21_JOIN).
 *
 * Security model: a connecting peer controls what it sends and when. The
 * broker reads through vp_sock_recv() (never blocks, fds of a wrong message
 * closed by the codec), accepts exactly one JOIN per connection, and sends
 * with a send timeout. A connection that has not joined holds no slot; at
 * most MAX_PENDING such connections are kept (the oldest is dropped). What
 * a peer sends cannot reach the window: it only ever gets its own fds. The
 * window itself stays the broker's for the pair's life, so a peer that
 * comes back gets its own section again.
 *
 * Threading: one broker, one thread; vp_pair21_join() blocks up to its
 * timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/net21.h"
#include "vhostpci/sock.h"
#include "internal.h"
#include "util.h"

#define MAX_CONN 6          /* two peers and a few not joined yet */
#define SEND_TIMEOUT_MS 1000

struct conn {
	int fd;
	int slot;               /* peer id once joined, -1 before */
	struct vp_rx rx;
	uint64_t since;         /* ns: the oldest unjoined is dropped first */
};

struct vp_pair21 {
	int ep;                 /* epoll: listener and connections */
	int lsock;
	char *path;
	struct vp_window21 *w;
	struct conn conn[MAX_CONN];
	bool held[VP21_PEERS];
	uint64_t joins, refused;
};

static void conn_close(struct vp_pair21 *b, struct conn *c)
{
	if (c->fd < 0)
		return;
	if (c->slot >= 0) {
		b->held[c->slot] = false;
		vp_log(VP_LOG_INFO, "pair21 %s: peer %d left", b->path, c->slot);
	}
	epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
	vp_rx_reset(&c->rx);
	close(c->fd);
	c->fd = -1;
	c->slot = -1;
}

/* Tell the peer why, then drop it. */
static void refuse(struct vp_pair21 *b, struct conn *c, int code, const char *why)
{
	struct vp_msg m;

	vp_log(VP_LOG_INFO, "pair21 %s: refused a peer: %s", b->path, why);
	vp_msg_init(&m, VP_PCI_ERROR, 0);
	m.p.error.code = code;
	snprintf(m.p.error.reason, sizeof(m.p.error.reason), "%s", why);
	vp_sock_send(c->fd, &m);
	b->refused++;
	conn_close(b, c);
}

static void on_join(struct vp_pair21 *b, struct conn *c, const struct vp_msg *m)
{
	struct vp_net21_fds f;
	struct vp_msg r;
	int slot = -1, e;

	if (c->slot >= 0) {
		refuse(b, c, -EPROTO, "joined twice");
		return;
	}
	if (m->p.hello.magic != VP_PCI_MAGIC || m->p.hello.major != VP_PCI_VERSION_MAJOR) {
		refuse(b, c, -EPROTO, "bad magic or major version");
		return;
	}
	for (unsigned i = 0; i < VP21_PEERS && slot < 0; i++)
		if (!b->held[i])
			slot = (int)i;
	if (slot < 0) {
		refuse(b, c, -EBUSY, "the pair is full");
		return;
	}
	e = vp_window21_peer_fds(b->w, (unsigned)slot, &f);
	if (e < 0) {
		refuse(b, c, e, "cannot open the window's fds");
		return;
	}
	vp_msg_init(&r, VP_PCI_PAIR21_JOIN, VP_MSG_REPLY);
	r.p.u64 = (uint64_t)slot;
	r.fds[0] = f.header_fd;
	r.fds[1] = f.my_fd;
	r.fds[2] = f.peer_fd;
	r.fds[3] = f.rx_fd;
	r.fds[4] = f.tx_fd;
	r.fds[5] = f.peer_rx_fd;
	r.fds[6] = f.peer_tx_fd;
	r.nfds = VP_PCI_PAIR21_NFDS;
	e = vp_sock_send(c->fd, &r);
	vp_net21_fds_close(&f);  /* ours were copies: the peer has its own now */
	if (e < 0) {
		vp_log(VP_LOG_INFO, "pair21 %s: sending the window failed: %s", b->path,
		       strerror(-e));
		conn_close(b, c);
		return;
	}
	c->slot = slot;
	b->held[slot] = true;
	b->joins++;
	vp_log(VP_LOG_INFO, "pair21 %s: peer %d joined", b->path, slot);
}

static void conn_readable(struct vp_pair21 *b, struct conn *c)
{
	for (int k = 0; k < 4 && c->fd >= 0; k++) {
		struct vp_msg m;
		int r = vp_sock_recv(c->fd, &c->rx, &m);

		if (r == 0)
			return;
		if (r < 0) {
			if (r != -ECONNRESET)
				b->refused++;
			conn_close(b, c);
			return;
		}
		if (m.request != VP_PCI_PAIR21_JOIN || (m.flags & VP_MSG_REPLY) || m.nfds) {
			vp_msg_close_fds(&m);
			refuse(b, c, -EPROTO, "only PAIR21_JOIN is served here");
			return;
		}
		on_join(b, c, &m);
	}
}

static void accept_all(struct vp_pair21 *b)
{
	for (;;) {
		struct timeval tv = { 0, SEND_TIMEOUT_MS * 1000 };
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c = NULL, *oldest = NULL;
		int fd = accept4(b->lsock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		for (unsigned i = 0; i < MAX_CONN && !c; i++)
			if (b->conn[i].fd < 0)
				c = &b->conn[i];
		if (!c) {
			/* Full of connections: the oldest that has not joined goes. */
			for (unsigned i = 0; i < MAX_CONN; i++)
				if (b->conn[i].slot < 0 &&
				    (!oldest || b->conn[i].since < oldest->since))
					oldest = &b->conn[i];
			if (!oldest) {
				close(fd);
				b->refused++;
				continue;
			}
			refuse(b, oldest, -EBUSY, "too many connections waiting");
			c = oldest;
		}
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		c->fd = fd;
		c->slot = -1;
		c->since = now_ns();
		vp_rx_init(&c->rx);
		ev.data.ptr = c;
		if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			c->fd = -1;
		}
	}
}

int vp_pair21_control(struct vp_pair21 *b)
{
	struct epoll_event ev[8];
	int n = epoll_wait(b->ep, ev, 8, 0);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		if (!ev[i].data.ptr)
			accept_all(b);
		else
			conn_readable(b, ev[i].data.ptr);
	}
	return 0;
}

int vp_pair21_new(struct vp_pair21 **out, const char *path,
		  const struct vp_window21_config *cfg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct vp_pair21 *b;
	int r;

	*out = NULL;
	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ep = b->lsock = -1;
	for (unsigned i = 0; i < MAX_CONN; i++)
		b->conn[i].fd = -1;
	b->path = strdup(path);
	r = b->path ? vp_window21_new(&b->w, cfg) : -ENOMEM;
	if (r < 0)
		goto fail;
	strcpy(sa.sun_path, path);
	unlink(path);
	b->lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	b->ep = epoll_create1(EPOLL_CLOEXEC);
	/* Nobody can connect before listen(), so chmod after bind is race-free. */
	if (b->lsock < 0 || b->ep < 0 || bind(b->lsock, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(b->lsock, 8) < 0 ||
	    epoll_ctl(b->ep, EPOLL_CTL_ADD, b->lsock, &ev) < 0) {
		r = -errno;
		vp_log(VP_LOG_ERR, "pair21 %s: cannot listen: %s", path, strerror(-r));
		goto fail;
	}
	vp_log(VP_LOG_INFO, "pair21 %s: serving a window of %" PRIu64 " bytes", path,
	       vp_window21_size(b->w));
	*out = b;
	return 0;
fail:
	vp_pair21_free(b);
	return r;
}

void vp_pair21_free(struct vp_pair21 *b)
{
	if (!b)
		return;
	for (unsigned i = 0; i < MAX_CONN; i++)
		conn_close(b, &b->conn[i]);
	if (b->lsock >= 0) {
		close(b->lsock);
		unlink(b->path);
	}
	close_fd(&b->ep);
	vp_window21_free(b->w);
	free(b->path);
	free(b);
}

int vp_pair21_fd(const struct vp_pair21 *b)
{
	return b->ep;
}

bool vp_pair21_joined(const struct vp_pair21 *b, unsigned i)
{
	return i < VP21_PEERS && b->held[i];
}

void vp_pair21_counts(const struct vp_pair21 *b, uint64_t *joins, uint64_t *refused)
{
	*joins = b->joins;
	*refused = b->refused;
}

int vp_pair21_join_local(struct vp_pair21 *b, struct vp_net21_fds *fds)
{
	for (unsigned i = 0; i < VP21_PEERS; i++) {
		int r;

		if (b->held[i])
			continue;
		r = vp_window21_peer_fds(b->w, i, fds);
		if (r < 0)
			return r;
		b->held[i] = true;  /* ours for the broker's life */
		b->joins++;
		return 0;
	}
	return -EBUSY;
}

static int64_t mono_ms(void)
{
	return (int64_t)(now_ns() / 1000000);
}

int vp_pair21_join(const char *path, int timeout_ms, struct vp_net21_fds *fds, int *sock)
{
	struct vp_msg m;
	struct vp_rx rx;
	int s, r, fl;

	*sock = -1;
	s = vp_unix_connect(path);
	if (s < 0)
		return s;
	fl = fcntl(s, F_GETFL);
	if (fl < 0 || fcntl(s, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	vp_msg_init(&m, VP_PCI_PAIR21_JOIN, 0);
	m.p.hello.magic = VP_PCI_MAGIC;
	m.p.hello.major = VP_PCI_VERSION_MAJOR;
	m.p.hello.minor = VP_PCI_VERSION_MINOR;
	r = vp_sock_send(s, &m);
	if (r < 0)
		goto fail;
	vp_rx_init(&rx);
	r = vp_sock_recv_until(s, &rx, &m, mono_ms() + timeout_ms);
	if (r < 0)
		goto fail;
	if (m.request == VP_PCI_ERROR) {
		vp_log(VP_LOG_WARN, "pair21 %s: the broker refused us: %s", path,
		       m.p.error.reason);
		vp_msg_close_fds(&m);
		r = -ECONNREFUSED;
		goto fail;
	}
	/* The codec checked the fd count; the id is ours to check. */
	if (m.request != VP_PCI_PAIR21_JOIN || !(m.flags & VP_MSG_REPLY) ||
	    m.p.u64 >= VP21_PEERS) {
		vp_log(VP_LOG_WARN, "pair21 %s: unexpected answer %s (id %" PRIu64 ")", path,
		       vp_msg_name(m.request), m.p.u64);
		vp_msg_close_fds(&m);
		r = -EPROTO;
		goto fail;
	}
	*fds = (struct vp_net21_fds){
		.peer = (unsigned)m.p.u64, .header_fd = m.fds[0], .my_fd = m.fds[1],
		.peer_fd = m.fds[2], .rx_fd = m.fds[3], .tx_fd = m.fds[4],
		.peer_rx_fd = m.fds[5], .peer_tx_fd = m.fds[6],
	};
	*sock = s;
	return 0;
fail:
	close(s);
	return r;
}
