/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the protocol codec (lib/proto.c).
 *
 * Input: byte 0 selects how many fds (0..8) arrive with the message, as
 * dups of /dev/null; the rest is the message as read from the socket.
 * Properties checked (a violation traps, so libFuzzer keeps the input):
 *  - vp_msg_check_hdr() and vp_msg_decode() agree on header errors, and
 *    every error is one of the documented errnos;
 *  - on error every fd passed in is closed and msg holds none;
 *  - on success msg owns exactly the fds passed in, encode(decode(x)) == x
 *    byte for byte, and decoding that again gives the same message.
 * ASan/UBSan catch reads outside the input (which ends exactly at the
 * message's end) and misaligned accesses (the message starts at an odd
 * address).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *       lib/log.c lib/proto.c tests/fuzz/fuzz_proto.c -o /tmp/fuzz_proto
 *   cp -r tests/fuzz/corpus/proto /tmp/corpus && /tmp/fuzz_proto /tmp/corpus
 *
 * Built with -DVP_FUZZ_STANDALONE (no libFuzzer) it replays the files named
 * on the command line instead, e.g. the seed corpus under gcc.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL() __builtin_trap()

static int devnull = -1;

/* Swallow log lines but still format them: format bugs are bugs too. */
static void quiet(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)level;
	(void)msg;
	(void)opaque;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		FAIL();
	vp_log_set_handler(quiet, NULL);
	vp_log_set_level(VP_LOG_DEBUG);
	return 0;
}

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static bool new_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		fds[i] = dup(devnull);
		if (fds[i] < 0) {
			while (i--)
				close(fds[i]);
			return false;
		}
	}
	return true;
}

static void check_closed(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (is_open(fds[i]))
			FAIL();
}

static bool documented(int err)
{
	switch (err) {
	case -EBADMSG: case -EPROTO: case -EMSGSIZE: case -EOPNOTSUPP:
	case -EINVAL: case -EBADF:
		return true;
	default:
		return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[VP_MSG_HDR_SIZE + VP_MSG_MAX_PAYLOAD];
	int fds[VP_MSG_MAX_FDS], fds2[VP_MSG_MAX_FDS];
	uint32_t request, flags, psize;
	struct vp_msg m, m2;
	unsigned nfds;
	int hret, ret, n;

	if (size < 1)
		return 0;
	if (devnull < 0)
		LLVMFuzzerInitialize(NULL, NULL);
	nfds = data[0] % (VP_MSG_MAX_FDS + 1);
	data++;
	size--;
	if (!new_fds(fds, nfds))
		return 0;

	hret = vp_msg_check_hdr(data, size, &request, &flags, &psize);
	ret = vp_msg_decode(&m, data, size, fds, nfds);
	if (hret && ret != hret)
		FAIL();
	if (ret) {
		if (!documented(ret) || m.nfds)
			FAIL();
		check_closed(fds, nfds);
		return 0;
	}

	/* Success: msg owns our fds, in order, and describes the input. */
	if (m.nfds != nfds || memcmp(m.fds, fds, nfds * sizeof(fds[0])) ||
	    m.request != request || m.flags != flags || m.size != psize ||
	    VP_MSG_HDR_SIZE + (size_t)m.size != size || !vp_msg_spec(request))
		FAIL();
	n = vp_msg_encode(&m, out, sizeof(out));
	if (n < 0 || (size_t)n != size || memcmp(out, data, size))
		FAIL();

	if (!new_fds(fds2, nfds)) {
		vp_msg_close_fds(&m);
		return 0;
	}
	if (vp_msg_decode(&m2, out, (size_t)n, fds2, nfds))
		FAIL();
	if (m2.request != m.request || m2.flags != m.flags ||
	    m2.size != m.size || m2.nfds != m.nfds ||
	    memcmp(&m2.p, &m.p, sizeof(m.p)))
		FAIL();

	vp_msg_close_fds(&m);
	vp_msg_close_fds(&m2);
	check_closed(fds, nfds);
	check_closed(fds2, nfds);
	return 0;
}

#ifdef VP_FUZZ_STANDALONE
int main(int argc, char **argv)
{
	static uint8_t buf[1 + VP_MSG_HDR_SIZE + VP_MSG_MAX_PAYLOAD + 64];

	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		size_t len;
		uint8_t *copy;

		if (!f) {
			perror(argv[i]);
			return 1;
		}
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		/* An exact-size copy, so ASan sees reads past the end. */
		copy = malloc(len ? len : 1);
		if (!copy)
			return 1;
		memcpy(copy, buf, len);
		LLVMFuzzerTestOneInput(copy, len);
		free(copy);
	}
	printf("%d inputs ok\n", argc - 1);
	return 0;
}
#endif
