/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * lib/net21.c as the guest kernel module builds it (-D__KERNEL__ through
 * guest/linux/compat/, tests/unit/kmod-mimic/ standing in for the kernel
 * headers): two peers over a window in plain memory, each attached with
 * vp_net21_new_mapped() as the module does (guest/linux/vpnet21.c). Frames
 * both ways, the event-index doorbells, and the other's section hostile:
 * each rule of docs/window21.md 6 breaks the link with its reason, and a
 * reset brings it back. The sections are heap blocks of exactly their size:
 * under ASan a read outside either one fails the test.
 */
#define TESTUTIL_MAIN
#include "testutil.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "vhostpci/log.h"
#include "vhostpci/net21.h"

#define NUM 16u
#define SLOT 2048u
#define SSIZE (64u * 1024)	/* 256 + 8 * 16 for the ring, buffers at 512: fits */
#define BUF_OFF 512u

struct win {
	struct vp21_header *hdr;
	uint8_t *sect[2];
	unsigned rang[2][2];	/* [peer rung][tx] */
};

struct side {
	struct win *w;
	unsigned me;
};

static void ring_other(void *opaque, bool tx)
{
	struct side *s = opaque;

	s->w->rang[1 - s->me][tx]++;
}

static void win_init(struct win *w)
{
	memset(w, 0, sizeof(*w));
	w->hdr = calloc(1, VP21_HEADER_SIZE);
	w->hdr->magic = htole32(VP21_MAGIC);
	w->hdr->version = htole16(VP21_VERSION);
	w->hdr->num_peers = htole16(VP21_PEERS);
	w->hdr->header_size = htole32(VP21_HEADER_SIZE);
	w->hdr->window_size = htole64(VP21_HEADER_SIZE + 2ull * SSIZE);
	for (unsigned i = 0; i < 2; i++) {
		struct vp21_section *s = &w->hdr->sect[i];

		s->offset = htole64(VP21_HEADER_SIZE + (uint64_t)i * SSIZE);
		s->size = htole64(SSIZE);
		s->owner = htole16((uint16_t)i);
		s->ring_num = htole16(NUM);
		s->slot_size = htole32(SLOT);
		s->ring_off = htole32(VP21_CTRL_SIZE);
		s->buf_off = htole32(BUF_OFF);
		w->sect[i] = calloc(1, SSIZE);
	}
}

static void win_free(struct win *w)
{
	free(w->hdr);
	free(w->sect[0]);
	free(w->sect[1]);
}

static int attach(struct vp_net21 **n, struct win *w, struct side *s, unsigned me)
{
	struct vp_net21_map m = {
		.peer = me, .header = w->hdr, .header_len = VP21_HEADER_SIZE,
		.my = w->sect[me], .my_len = SSIZE, .other = w->sect[1 - me], .other_len = SSIZE,
		.notify = ring_other, .opaque = s,
	};

	s->w = w;
	s->me = me;
	return vp_net21_new_mapped(n, &m, VP_NET_POLL);
}

static struct vp21_ctrl *ctrl(struct win *w, unsigned i)
{
	return (struct vp21_ctrl *)(void *)w->sect[i];
}

static struct vp21_desc *desc(struct win *w, unsigned i, unsigned k)
{
	return (struct vp21_desc *)(void *)(w->sect[i] + VP21_CTRL_SIZE) + k;
}

/* Send count frames a -> b of sizes 1..1514 with a pattern, receive and check them. */
static int stream(struct vp_net21 *a, struct vp_net21 *b, unsigned count, unsigned seed)
{
	static uint8_t tx[1514], rx[SLOT];
	unsigned sent = 0, got = 0;

	while (got < count) {
		if (sent < count) {
			struct vp_pkt p = { .data = tx, .len = 1 + (sent * 7919 + seed) % 1514 };
			int r;

			for (unsigned i = 0; i < p.len; i++)
				tx[i] = (uint8_t)(sent + i + seed);
			memset(&p.hdr, 0, sizeof(p.hdr));
			r = vp_net21_tx_burst(a, &p, 1, 0);
			if (r < 0)
				return r;
			sent += (unsigned)r;
		}
		for (;;) {
			struct vp_pkt p = { .data = rx, .len = sizeof(rx) };
			unsigned want = 1 + (got * 7919 + seed) % 1514;
			int r = vp_net21_rx_burst(b, &p, 1);

			if (r < 0)
				return r;
			if (!r)
				break;
			if (p.len != want)
				return -1000 - (int)got;
			for (unsigned i = 0; i < p.len; i++)
				if (rx[i] != (uint8_t)(got + i + seed))
					return -2000 - (int)got;
			got++;
		}
	}
	return (int)got;
}

static void pair(struct win *w, struct side *sa, struct side *sb, struct vp_net21 **a,
		 struct vp_net21 **b)
{
	win_init(w);
	*a = *b = NULL;
	CHECK_EQ(attach(a, w, sa, 0), 0);
	CHECK_EQ(attach(b, w, sb, 1), 0);
	if (*a && *b) {
		CHECK(vp_net21_up(*a));	/* acknowledges b's epoch */
		CHECK(vp_net21_up(*b));
	}
}

TEST(frames_both_ways_and_doorbells)
{
	struct side sa, sb;
	struct vp_net21 *a, *b;
	struct win w;

	pair(&w, &sa, &sb, &a, &b);
	if (!a || !b)
		return;
	CHECK_EQ(vp_net21_frame_max(a, true), SLOT - VP21_HDR_LEN);
	CHECK_EQ(stream(a, b, 5000, 1), 5000);
	CHECK_EQ(stream(b, a, 5000, 2), 5000);
	/* b asks for the RX doorbell: a's next publish rings it, once. */
	w.rang[1][0] = 0;
	CHECK_EQ(vp_net21_arm(b, true, false), 0);
	CHECK_EQ(stream(a, b, 1, 3), 1);
	CHECK_EQ(w.rang[1][0], 1);
	/* Not asked again (the event index passed): no more doorbells. */
	CHECK_EQ(stream(a, b, 3, 4), 3);
	CHECK_EQ(w.rang[1][0], 1);
	/* a's ring full: a asks for TX; b's copies ring it. */
	{
		uint8_t f[60] = { 0 };
		struct vp_pkt p[NUM + 1];

		for (unsigned i = 0; i <= NUM; i++)
			p[i] = (struct vp_pkt){ .data = f, .len = sizeof(f) };
		CHECK_EQ(vp_net21_tx_burst(a, p, NUM + 1, 0), NUM);
		CHECK_EQ(vp_net21_arm(a, false, true), 0);
		w.rang[0][1] = 0;
		CHECK_EQ(vp_net21_rx_burst(b, p, NUM), NUM);
		CHECK_EQ(w.rang[0][1], 1);
	}
	CHECK(!vp_net21_broken(a) && !vp_net21_broken(b));
	vp_net21_free(a);
	vp_net21_free(b);
	CHECK_EQ(le32toh(ctrl(&w, 0)->state), VP21_STATE_DETACHED);
	win_free(&w);
}

/* Each hostile value b can write into its own section breaks a's link with its reason. */
TEST(hostile_section_breaks_the_link_with_a_reason)
{
	static const char *const why[] = {
		"avail index ran ahead", "outside the buffers", "outside the buffers",
		"length", "length", "consumed index ran ahead",
	};

	for (unsigned k = 0; k < sizeof(why) / sizeof(why[0]); k++) {
		struct side sa, sb;
		struct vp_net21 *a, *b;
		uint8_t buf[SLOT];
		struct vp_pkt p = { .data = buf, .len = sizeof(buf) };
		struct win w;
		const char *r;

		pair(&w, &sa, &sb, &a, &b);
		if (!a || !b)
			return;
		CHECK_EQ(stream(b, a, 3, 5), 3);	/* a consumed 3 of b's */
		if (k == 5) {
			/* b claims to have consumed what a never published. */
			ctrl(&w, 1)->consumed = htole16(7);
			CHECK_EQ(vp_net21_tx_burst(a, &p, 1, 0), -EIO);
		} else {
			CHECK_EQ(stream(b, a, 0, 0), 0);
			memset(&p.hdr, 0, sizeof(p.hdr));
			p.len = 100;
			CHECK_EQ(vp_net21_tx_burst(b, &p, 1, 0), 1);	/* descriptor 3 */
			switch (k) {
			case 0: ctrl(&w, 1)->avail = htole16(3 + NUM + 1); break;
			case 1: desc(&w, 1, 3)->off = htole32(BUF_OFF - 1); break;
			case 2: desc(&w, 1, 3)->off = htole32(SSIZE); break;
			case 3: desc(&w, 1, 3)->len = htole32(SLOT + 1); break;
			default: desc(&w, 1, 3)->len = htole32(VP21_HDR_LEN - 1); break;
			}
			p.len = sizeof(buf);
			CHECK_EQ(vp_net21_rx_burst(a, &p, 1), -EIO);
		}
		r = vp_net21_broken(a);
		CHECK(r && strstr(r, why[k]));
		if (r && !strstr(r, why[k]))
			fprintf(stderr, "  case %u: %s\n", k, r);
		CHECK_EQ(vp_net21_rx_burst(a, &p, 1), -EIO);	/* until reset */
		CHECK(!vp_net21_up(a));
		/* A reset is a new epoch: b resyncs (its indexes back to 0), the link is up. */
		CHECK_EQ(vp_net21_reset(a), 0);
		CHECK(!vp_net21_broken(a));
		CHECK(vp_net21_up(b));
		CHECK(vp_net21_up(a));
		CHECK_EQ(stream(b, a, 100, 6), 100);
		CHECK_EQ(stream(a, b, 100, 7), 100);
		vp_net21_free(a);
		vp_net21_free(b);
		win_free(&w);
	}
}

/* A header the allocator got wrong, or sections mapped short: refused, nothing attached. */
TEST(mapped_refusals)
{
	struct side sa;
	struct vp_net21 *a;
	struct win w;

	win_init(&w);
	w.hdr->magic = 0;
	CHECK_EQ(attach(&a, &w, &sa, 0), -EINVAL);
	w.hdr->magic = htole32(VP21_MAGIC);
	w.hdr->sect[1].ring_num = htole16(24);	/* not a power of two */
	CHECK_EQ(attach(&a, &w, &sa, 0), -EINVAL);
	w.hdr->sect[1].ring_num = htole16(NUM);
	w.hdr->sect[1].buf_off = htole32(SSIZE - SLOT);	/* buffers past the end */
	CHECK_EQ(attach(&a, &w, &sa, 0), -EINVAL);
	w.hdr->sect[1].buf_off = htole32(BUF_OFF);
	CHECK_EQ(attach(&a, &w, &sa, 0), 0);
	vp_net21_free(a);
	CHECK_EQ(ctrl(&w, 1)->state, 0);	/* nothing of the other's was written */
	win_free(&w);
}
