/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for a whole server session (lib/server.c): dialect
 * detection, the dispatch table, every handler, held stops, refusals.
 *
 * Each input (format in fuzz_session.h) is played into a fresh server with
 * no listening socket, over a socketpair whose one end the server adopted
 * (vp_server_adopt()): records are sent one sendmsg() each with the fds they
 * name (sealed or unsealed memfds, eventfds, pipe ends, /dev/null, sockets),
 * and the server is dispatched until idle after each, its answers read and
 * dropped. Properties checked (a violation traps, so libFuzzer keeps it):
 *  - after vp_server_free() and closing our end, the process has exactly
 *    the fds it had before the input: every fd sent was closed or owned
 *    and then released, none leaked, none closed twice (that would close one
 *    of ours, and the count would drop);
 *  - vp_server_dispatch() never fails;
 *  - ASan/UBSan: no bad access or undefined behaviour in the server.
 *
 *   CC=clang meson setup /tmp/fz -Dfuzz=true && ninja -C /tmp/fz
 *   /tmp/fz/tests/fuzz/fuzz-session /tmp/work tests/fuzz/corpus/session
 */
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../testutil.h"
#include "fuzz_fds.h"
#include "fuzz_session.h"
#include "vhostpci/log.h"
#include "vhostpci/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL() __builtin_trap()

static unsigned opts;
static uint64_t dev_id;

static void quiet(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)level;
	(void)msg;
	(void)opaque;
}

static void on_event(struct vp_server *s, enum vp_event ev, const struct vp_device *d, void *o)
{
	(void)o;
	if (ev == VP_EV_DEVICE_NEW) {
		dev_id = d->id;
		if (opts & FS_OPT_REFUSE)
			vp_server_drop(s, d->id, "refused by the fuzzer");
	}
	if (ev == VP_EV_DEVICE_STOPPED && (opts & FS_OPT_HOLD))
		vp_server_hold_stop(s, d->id);  /* -EINVAL outside a GET_VRING_BASE */
}

/* Send one record; false when the server no longer takes any. */
static bool send_record(int sock, const uint8_t *buf, size_t len, unsigned kind, unsigned n)
{
	int fds[8];
	unsigned nfds = 0;
	bool ok;

	for (unsigned i = 0; kind != FS_FD_NONE && i < n; i++) {
		fds[nfds] = fz_make_fd(kind, FS_MEM_SIZE);
		if (fds[nfds] >= 0)
			nfds++;
	}
	ok = fz_send(sock, buf, len, fds, nfds);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);  /* the server has its own copies now */
	return ok;
}

/* Read and drop whatever the server sent us, fds included. */
static void drain(int sock)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} cb;
	uint8_t buf[8192];

	for (;;) {
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cb.b, .msg_controllen = sizeof(cb.b) };
		ssize_t r = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (r <= 0)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				close(fd);
			}
		}
	}
}

/* Dispatch until the server has nothing more to do right now. */
static void pump(struct vp_server *s, int sock)
{
	for (int i = 0; i < 64; i++) {
		struct pollfd p = { vp_server_fd(s), POLLIN, 0 };

		if (vp_server_dispatch(s) < 0)
			FAIL();
		drain(sock);
		if (poll(&p, 1, 0) != 1)
			return;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* FUZZ_SESSION_LOG=1 shows the server's log (to see what a seed reaches). */
	if (!getenv("FUZZ_SESSION_LOG"))
		vp_log_set_handler(quiet, NULL);
	vp_log_set_level(VP_LOG_DEBUG);  /* format every line: format bugs are bugs */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vp_server_config cfg = {
		.id = "fuzz", .handshake_timeout_ms = VP_SERVER_NO_TIMEOUT,
		.on_event = on_event,
	};
	struct vp_server *s;
	int before, sv[2];
	size_t off = 1;

	if (size < 1)
		return 0;
	opts = data[0];
	dev_id = 0;
	cfg.allow_unsealed = opts & FS_OPT_UNSEALED;
	before = tu_count_fds();
	if (before < 0)
		FAIL();
	if (vp_server_new(&s, &cfg) < 0)
		FAIL();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		FAIL();
	if (vp_server_adopt(s, sv[0]) < 0)
		FAIL();
	pump(s, sv[1]);
	while (off + 3 <= size) {
		unsigned ctl = data[off];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;

		off += 3;
		if (len > FS_MAX_RECORD)
			len = FS_MAX_RECORD;
		if (len > size - off)
			len = size - off;
		if (ctl & FS_CTL_RELEASE)
			vp_server_release_stop(s, dev_id);
		if (!send_record(sv[1], data + off, len, ctl & 7, ((ctl >> 3) & 7) + 1))
			break;
		off += len;
		pump(s, sv[1]);
		if (ctl & FS_CTL_DROP)
			vp_server_drop(s, dev_id, "dropped by the fuzzer");
	}
	vp_server_release_stop(s, dev_id);
	pump(s, sv[1]);
	vp_server_free(s);
	close(sv[1]);
	if (tu_count_fds() != before)
		FAIL();
	return 0;
}
