/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Writes the seed corpus of fuzz_pair21, produced by the encoder: valid
 * joins on the broker side (one peer, both, a third refused, a peer that
 * leaves and comes back, a JOIN twice, a JOIN with fds) and valid answers
 * on the joiner side (peer 0, peer 1, an ERROR, the fd sets a hostile
 * broker would try), so the fuzzer starts from attached peers.
 *
 *   ninja -C /tmp/fz tests/fuzz/gen-pair21-seeds
 *   /tmp/fz/tests/fuzz/gen-pair21-seeds tests/fuzz/corpus/pair21
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_pair21.h"
#include "fuzz_session.h"
#include "seeds.h"
#include "vhostpci/proto.h"

static void begin(struct seed *s, unsigned opts)
{
	memset(s, 0, sizeof(*s));
	s->buf[0] = (uint8_t)opts;
	s->len = 1;
	if (opts & FP_OPT_JOINER)
		s->len += FP_HDR_FUZZ;  /* zeros: the header copy is the real one */
}

/* Append m as one record with control byte ctl (and extra bytes first). */
static void add(struct seed *s, struct vp_msg *m, unsigned ctl, const uint8_t *pre, size_t npre)
{
	int n;

	for (unsigned i = 0; i < m->nfds; i++)
		m->fds[i] = (int)i;  /* the encoder counts them; the harness sends real ones */
	n = vp_msg_encode(m, s->buf + s->len + 3 + npre, sizeof(s->buf) - s->len - 3 - npre);
	if (n < 0) {
		fprintf(stderr, "encode %s: %s\n", vp_msg_name(m->request), strerror(-n));
		seed_failed = 1;
		return;
	}
	n += (int)npre;
	s->buf[s->len] = (uint8_t)ctl;
	s->buf[s->len + 1] = (uint8_t)n;
	s->buf[s->len + 2] = (uint8_t)(n >> 8);
	memcpy(s->buf + s->len + 3, pre, npre);
	s->len += 3 + (size_t)n;
}

static void join(struct seed *s, unsigned ctl)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_PCI_PAIR21_JOIN, 0);
	m.p.hello.magic = VP_PCI_MAGIC;
	m.p.hello.major = VP_PCI_VERSION_MAJOR;
	m.p.hello.minor = VP_PCI_VERSION_MINOR;
	add(s, &m, ctl, NULL, 0);
}

static void answer(struct seed *s, unsigned set, uint64_t id, const uint8_t *pre, size_t npre)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_PCI_PAIR21_JOIN, VP_MSG_REPLY);
	m.p.u64 = id;
	m.nfds = VP_PCI_PAIR21_NFDS;
	add(s, &m, set, pre, npre);
}

static void broker_seeds(void)
{
	struct seed s;

	begin(&s, 0);
	join(&s, 0);
	write_seed(&s, "broker_one");

	begin(&s, 0);
	join(&s, 0);
	join(&s, 1);
	write_seed(&s, "broker_pair");

	begin(&s, 0);
	join(&s, 0);
	join(&s, 1);
	join(&s, 2);
	write_seed(&s, "broker_third_refused");

	begin(&s, 0);
	join(&s, 0);
	join(&s, 1 | FP_CTL_CLOSE);
	join(&s, 2);
	join(&s, 1);
	write_seed(&s, "broker_leave_and_back");

	begin(&s, 0);
	join(&s, 0);
	join(&s, 0);
	write_seed(&s, "broker_twice");

	begin(&s, 0);
	join(&s, 0 | FS_FD_MEMFD << 3 | FP_CTL_SEVEN);
	join(&s, 1 | FS_FD_EVENTFD << 3);
	write_seed(&s, "broker_join_with_fds");

	begin(&s, 0);
	for (unsigned i = 0; i < FP_CONNS; i++) {
		size_t rec = s.len;

		join(&s, i);
		s.buf[rec + 1] = 6;  /* half a header each: none has joined yet */
		s.buf[rec + 2] = 0;
		s.len = rec + 3 + 6;
	}
	join(&s, 0);  /* the oldest was dropped: connection 0 comes again and joins */
	write_seed(&s, "broker_many_waiting");
}

static void joiner_seeds(void)
{
	static const uint8_t custom[4] = {
		FP_K_HEADER | FP_K_SEC0_RW << 4, FP_K_SEC1_RO | FP_K_RX0 << 4,
		FP_K_TX0 | FP_K_RX1 << 4, FP_K_TX1 | FP_K_SKIP << 4,
	};
	struct seed s;
	struct vp_msg m;

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_PEER0, 0, NULL, 0);
	write_seed(&s, "joiner_peer0");

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_PEER1, 1, NULL, 0);
	write_seed(&s, "joiner_peer1");

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_FUZZ_HEADER, 0, NULL, 0);
	write_seed(&s, "joiner_fuzz_header");

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_PEER_RW, 0, NULL, 0);
	write_seed(&s, "joiner_peer_writable");

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_SWAPPED, 0, NULL, 0);
	write_seed(&s, "joiner_swapped");

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_CUSTOM, 0, custom, sizeof(custom));
	write_seed(&s, "joiner_custom");

	begin(&s, FP_OPT_JOINER);
	answer(&s, FP_SET_PEER1, 0, NULL, 0);
	write_seed(&s, "joiner_wrong_id");

	begin(&s, FP_OPT_JOINER);
	vp_msg_init(&m, VP_PCI_ERROR, 0);
	m.p.error.code = -EBUSY;
	snprintf(m.p.error.reason, sizeof(m.p.error.reason), "the pair is full");
	add(&s, &m, FP_SET_NONE, NULL, 0);
	write_seed(&s, "joiner_refused");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed_dir = argv[1];
	broker_seeds();
	joiner_seeds();
	return seed_failed;
}
