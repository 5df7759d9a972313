/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for both ends of VHOST_PCI_PAIR21_JOIN (lib/pair21.c)
 * and what a joiner does with the answer (vp_net21_new()'s checks of the
 * header and of every fd, lib/net21.c). Input format in fuzz_pair21.h.
 *
 * Broker side: up to 8 clients send records (bytes and fds) to a fresh
 * vp_pair21, which is dispatched until idle after each. Properties (a
 * violation traps):
 *  - vp_pair21_control() never fails;
 *  - every JOIN answer carries a peer id < 2 and 7 fds: the header and the
 *    other's section open read-only, the own section read-write (the broker
 *    never hands out write access to the other's section);
 *  - no two live clients hold the same id, and after dispatching the
 *    broker's held slots are exactly those of live clients;
 *  - after vp_pair21_free() and closing our ends, the process has exactly
 *    the fds it had before (none leaked, none closed twice).
 *
 * Joiner side: a hostile broker (a thread of this harness, on a socket it
 * listens on for the whole run) answers one vp_pair21_join() with the
 * records, fds of real and fake windows attached, then closes. Properties:
 *  - the join returns (libFuzzer's -timeout catches a hang);
 *  - a join that succeeds gives an id < 2 and 7 fds;
 *  - vp_net21_new() on them succeeds only if the other's section fd is not
 *    writable and the header has the right magic; then a burst each way and
 *    vp_net21_free() run clean;
 *  - the fd count is the same before and after.
 *
 *   CC=clang meson setup /tmp/fz -Dfuzz=true && ninja -C /tmp/fz
 *   /tmp/fz/tests/fuzz/fuzz-pair21 /tmp/work tests/fuzz/corpus/pair21
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../testutil.h"
#include "fuzz_fds.h"
#include "fuzz_pair21.h"
#include "vhostpci/log.h"
#include "vhostpci/net21.h"
#include "vhostpci/sock.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL() __builtin_trap()

static char broker_path[108], hostile_path[108];
static int hostile_lsock = -1;

static void quiet(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)level;
	(void)msg;
	(void)opaque;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (s < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(s);
		return -1;
	}
	return s;
}

static int accmode(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fl & O_ACCMODE;
}

/* ---- broker side ---- */

struct client {
	int fd;
	int id;          /* the peer id a JOIN answer gave, -1 before */
	struct vp_rx rx;
};

static void client_close(struct client *c)
{
	if (c->fd < 0)
		return;
	vp_rx_reset(&c->rx);
	close(c->fd);
	c->fd = -1;
	c->id = -1;
}

/* Read the broker's answers; check a JOIN answer's fds, then close them. */
static void client_drain(struct client *c)
{
	while (c->fd >= 0) {
		struct vp_msg m;
		int r = vp_sock_recv(c->fd, &c->rx, &m);

		if (r == 0)
			return;
		if (r < 0) {
			if (r != -ECONNRESET)
				FAIL();  /* the broker's own messages are well formed */
			client_close(c);  /* the broker dropped us */
			return;
		}
		if (m.request == VP_PCI_PAIR21_JOIN) {
			if (!(m.flags & VP_MSG_REPLY) || m.nfds != VP_PCI_PAIR21_NFDS ||
			    m.p.u64 >= VP21_PEERS || c->id >= 0)
				FAIL();
			if (accmode(m.fds[0]) != O_RDONLY || accmode(m.fds[1]) != O_RDWR ||
			    accmode(m.fds[2]) != O_RDONLY)
				FAIL();
			c->id = (int)m.p.u64;
		} else if (m.request != VP_PCI_ERROR) {
			FAIL();  /* the broker sends nothing else */
		}
		vp_msg_close_fds(&m);
	}
}

static void pump_broker(struct vp_pair21 *b, struct client *cl)
{
	for (int i = 0; i < 64; i++) {
		struct pollfd p = { vp_pair21_fd(b), POLLIN, 0 };

		if (vp_pair21_control(b) < 0)
			FAIL();
		if (poll(&p, 1, 0) != 1)
			break;
	}
	for (unsigned i = 0; i < FP_CONNS; i++)
		client_drain(&cl[i]);
	/* The slots held are exactly those of live clients that joined. */
	for (unsigned k = 0; k < VP21_PEERS; k++) {
		unsigned holders = 0;

		for (unsigned i = 0; i < FP_CONNS; i++)
			holders += cl[i].fd >= 0 && cl[i].id == (int)k;
		if (holders > 1 || (holders == 1) != vp_pair21_joined(b, k))
			FAIL();
	}
}

static void run_broker(const uint8_t *data, size_t size)
{
	struct vp_window21_config cfg = { .ring_num = FP_RING_NUM, .slot_size = FP_SLOT_SIZE };
	struct client cl[FP_CONNS];
	struct vp_pair21 *b;
	size_t off = 1;

	if (vp_pair21_new(&b, broker_path, &cfg) < 0)
		FAIL();
	for (unsigned i = 0; i < FP_CONNS; i++) {
		cl[i].fd = -1;
		cl[i].id = -1;
		vp_rx_init(&cl[i].rx);
	}
	while (off + 3 <= size) {
		unsigned ctl = data[off];
		struct client *c = &cl[ctl & 7];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
		unsigned n = (ctl & FP_CTL_SEVEN) ? 7 : 1, nfds = 0;
		int fds[8];

		off += 3;
		if (len > FP_MAX_RECORD)
			len = FP_MAX_RECORD;
		if (len > size - off)
			len = size - off;
		if (c->fd < 0) {
			c->fd = connect_to(broker_path);
			if (c->fd < 0)
				FAIL();
			pump_broker(b, cl);  /* accepted (or the oldest waiting one dropped) */
		}
		for (unsigned i = 0; ((ctl >> 3) & 7) != FS_FD_NONE && i < n; i++) {
			fds[nfds] = fz_make_fd((ctl >> 3) & 7, 16384);
			if (fds[nfds] >= 0)
				nfds++;
		}
		if (c->fd >= 0)
			fz_send(c->fd, data + off, len, fds, nfds);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		off += len;
		pump_broker(b, cl);
		if (ctl & FP_CTL_CLOSE) {
			client_close(c);
			pump_broker(b, cl);
		}
	}
	vp_pair21_free(b);
	for (unsigned i = 0; i < FP_CONNS; i++)
		client_close(&cl[i]);
}

/* ---- joiner side ---- */

struct hostile {
	const uint8_t *data;
	size_t size, off;
	struct vp_net21_fds f[2];    /* both halves of a real window */
	int fuzz_header;             /* a sealed copy of its header, changed by the input */
};

static int hostile_fd(struct hostile *h, unsigned kind)
{
	int src = -1;

	switch (kind) {
	case FP_K_HEADER: src = h->f[0].header_fd; break;
	case FP_K_FUZZ_HEADER: src = h->fuzz_header; break;
	case FP_K_SEC0_RW: src = h->f[0].my_fd; break;
	case FP_K_SEC0_RO: src = h->f[1].peer_fd; break;
	case FP_K_SEC1_RW: src = h->f[1].my_fd; break;
	case FP_K_SEC1_RO: src = h->f[0].peer_fd; break;
	case FP_K_RX0: src = h->f[0].rx_fd; break;
	case FP_K_TX0: src = h->f[0].tx_fd; break;
	case FP_K_RX1: src = h->f[1].rx_fd; break;
	case FP_K_TX1: src = h->f[1].tx_fd; break;
	case FP_K_MEMFD: return fz_make_fd(FS_FD_MEMFD, 16384);
	case FP_K_MEMFD_UNSEALED: return fz_make_fd(FS_FD_MEMFD_UNSEALED, 16384);
	case FP_K_DEVNULL: return fz_make_fd(FS_FD_DEVNULL, 0);
	case FP_K_PIPE: return fz_make_fd(FS_FD_PIPE_READ, 0);
	case FP_K_SOCKET: return fz_make_fd(FS_FD_SOCKET, 0);
	default: return -1;
	}
	return src < 0 ? -1 : fcntl(src, F_DUPFD_CLOEXEC, 0);
}

static const uint8_t fd_sets[][7] = {
	[FP_SET_PEER0] = { FP_K_HEADER, FP_K_SEC0_RW, FP_K_SEC1_RO, FP_K_RX0, FP_K_TX0,
			   FP_K_RX1, FP_K_TX1 },
	[FP_SET_PEER1] = { FP_K_HEADER, FP_K_SEC1_RW, FP_K_SEC0_RO, FP_K_RX1, FP_K_TX1,
			   FP_K_RX0, FP_K_TX0 },
	[FP_SET_FUZZ_HEADER] = { FP_K_FUZZ_HEADER, FP_K_SEC0_RW, FP_K_SEC1_RO, FP_K_RX0,
				 FP_K_TX0, FP_K_RX1, FP_K_TX1 },
	[FP_SET_PEER_RW] = { FP_K_HEADER, FP_K_SEC0_RW, FP_K_SEC1_RW, FP_K_RX0, FP_K_TX0,
			     FP_K_RX1, FP_K_TX1 },
	[FP_SET_SWAPPED] = { FP_K_HEADER, FP_K_SEC1_RO, FP_K_SEC0_RW, FP_K_RX0, FP_K_TX0,
			     FP_K_RX1, FP_K_TX1 },
	[FP_SET_DEVNULL] = { FP_K_DEVNULL, FP_K_DEVNULL, FP_K_DEVNULL, FP_K_DEVNULL,
			     FP_K_DEVNULL, FP_K_DEVNULL, FP_K_DEVNULL },
};

/* The hostile broker: accept the joiner, read its JOIN, send the records, close. */
static void *hostile_main(void *arg)
{
	struct hostile *h = arg;
	struct pollfd p = { hostile_lsock, POLLIN, 0 };
	uint8_t junk[4096];
	int s;

	if (poll(&p, 1, 5000) != 1)
		FAIL();
	s = accept4(hostile_lsock, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		FAIL();
	p.fd = s;
	/* The JOIN (the joiner sends it first); left unread, our close could reset it. */
	if (poll(&p, 1, 5000) == 1)
		(void)!recv(s, junk, sizeof(junk), MSG_DONTWAIT);
	while (h->off + 3 <= h->size) {
		const uint8_t *d = h->data + h->off;
		unsigned set = d[0] & 7;
		size_t len = (size_t)d[1] | (size_t)d[2] << 8;
		uint8_t kinds[7] = { 0 };
		int fds[7];
		unsigned nfds = 0;
		bool sent;

		h->off += 3;
		if (len > FP_MAX_RECORD)
			len = FP_MAX_RECORD;
		if (len > h->size - h->off)
			len = h->size - h->off;
		if (set == FP_SET_CUSTOM) {
			size_t k = len < 4 ? len : 4;

			for (unsigned i = 0; i < 7; i++)
				kinds[i] = i / 2 < k ? (h->data[h->off + i / 2] >> (i % 2 * 4)) & 15 :
						     FP_K_SKIP;
			h->off += k;
			len -= k;
		} else if (set != FP_SET_NONE) {
			memcpy(kinds, fd_sets[set], 7);
		}
		for (unsigned i = 0; set != FP_SET_NONE && i < 7; i++) {
			fds[nfds] = hostile_fd(h, kinds[i]);
			if (fds[nfds] >= 0)
				nfds++;
		}
		sent = fz_send(s, h->data + h->off, len, fds, nfds);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		h->off += len;
		if (!sent)
			break;
	}
	close(s);
	return NULL;
}

/* A sealed copy of the real header, XOR'ed with the input's bytes, opened
 * read-only as a broker would give it. */
static int make_fuzz_header(int real, const uint8_t *x, size_t n)
{
	uint8_t hdr[VP21_HEADER_SIZE];
	char path[64];
	int fd, ro;

	if (pread(real, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		FAIL();
	for (size_t i = 0; i < n; i++)
		hdr[i] ^= x[i];
	fd = memfd_create("fuzz-pair21-header", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		FAIL();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	close(fd);
	if (ro < 0)
		FAIL();
	return ro;
}

static void attach(const struct vp_net21_fds *f, uint32_t real_magic)
{
	struct vp_net21 *n;
	uint8_t buf[FP_SLOT_SIZE];
	struct vp_pkt pkt = { .data = buf, .len = 64 };
	uint32_t magic = 0;
	int r;

	memset(buf, 0xa5, sizeof(buf));
	if (vp_net21_new(&n, f, VP_NET_POLL) < 0)
		return;
	vp_log(VP_LOG_DEBUG, "fuzz: attached as peer %u", f->peer);
	/* Attached: the checks let through only a read-only peer section and a
	 * header that at least starts right. */
	if (accmode(f->peer_fd) != O_RDONLY)
		FAIL();
	if (pread(f->header_fd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
	    magic != real_magic)
		FAIL();
	r = vp_net21_tx_burst(n, &pkt, 1, 0);
	if (r < 0 && r != -EIO)
		FAIL();
	pkt.len = sizeof(buf);
	r = vp_net21_rx_burst(n, &pkt, 1);
	if (r < 0 && r != -EIO)
		FAIL();
	vp_net21_free(n);
}

static void run_joiner(const uint8_t *data, size_t size)
{
	struct vp_window21_config cfg = { .ring_num = FP_RING_NUM, .slot_size = FP_SLOT_SIZE };
	struct hostile h = { .data = data, .size = size, .off = 1 };
	struct vp_window21 *w;
	struct vp_net21_fds f;
	pthread_t t;
	uint32_t real_magic = 0;
	int sock = -1, r;

	if (vp_window21_new(&w, &cfg) < 0 || vp_window21_peer_fds(w, 0, &h.f[0]) < 0 ||
	    vp_window21_peer_fds(w, 1, &h.f[1]) < 0)
		FAIL();
	vp_window21_free(w);  /* the fds keep it */
	if (pread(h.f[0].header_fd, &real_magic, sizeof(real_magic), 0) != sizeof(real_magic))
		FAIL();
	h.fuzz_header = make_fuzz_header(h.f[0].header_fd, data + 1,
					 size - 1 < FP_HDR_FUZZ ? size - 1 : FP_HDR_FUZZ);
	h.off += size - 1 < FP_HDR_FUZZ ? size - 1 : FP_HDR_FUZZ;
	if (pthread_create(&t, NULL, hostile_main, &h))
		FAIL();
	r = vp_pair21_join(hostile_path, 2000, &f, &sock);
	if (pthread_join(t, NULL))
		FAIL();
	if (r == 0) {
		if (f.peer >= VP21_PEERS || sock < 0)
			FAIL();
		attach(&f, real_magic);
		vp_net21_fds_close(&f);
		close(sock);
	} else if (sock != -1) {
		FAIL();
	}
	vp_net21_fds_close(&h.f[0]);
	vp_net21_fds_close(&h.f[1]);
	close(h.fuzz_header);
}

static void unlink_hostile(void)
{
	unlink(hostile_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	(void)argc;
	(void)argv;
	if (!getenv("FUZZ_PAIR21_LOG"))
		vp_log_set_handler(quiet, NULL);
	vp_log_set_level(VP_LOG_DEBUG);  /* format every line: format bugs are bugs */
	snprintf(broker_path, sizeof(broker_path), "/tmp/fuzz-pair21-b.%d", (int)getpid());
	snprintf(hostile_path, sizeof(hostile_path), "/tmp/fuzz-pair21-h.%d", (int)getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", hostile_path);
	unlink(hostile_path);
	hostile_lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (hostile_lsock < 0 || bind(hostile_lsock, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(hostile_lsock, 4) < 0)
		FAIL();
	atexit(unlink_hostile);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int before;

	if (size < 1)
		return 0;
	before = tu_count_fds();
	if (before < 0)
		FAIL();
	if (data[0] & FP_OPT_JOINER)
		run_joiner(data, size);
	else
		run_broker(data, size);
	if (tu_count_fds() != before)
		FAIL();
	return 0;
}
