/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packed virtqueue tests, device side: a well-behaved driver written here
 * (it posts chains head-flags-last and reads used descriptors back as the
 * spec says) for round trips over many laps, then rings corrupted by hand,
 * each checked for the exact rejection: the split suite's hostile cases
 * (test_vring.c) over the packed layout, plus its own wrap-counter and
 * buffer-id cases.
 */
#define TESTUTIL_MAIN
#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/vring.h"

#define MEM_SIZE   (1u << 20)	/* region 0: gpa [0, 1 MiB) */
#define DATA_GPA   0x80000u	/* buffers live from here up */
#define IND_GPA    0x40000u	/* indirect tables */
#define HI_GPA     MEM_SIZE	/* optional region 1 */
#define HI_SIZE    0x10000u

#define F_AVAIL    (1u << VRING_PACKED_DESC_F_AVAIL)
#define F_USED     (1u << VRING_PACKED_DESC_F_USED)
#define WRAP_BIT   (1u << VRING_PACKED_EVENT_F_WRAP_CTR)

enum { EV = 1, IND = 2, HI_RO = 4, RING_HI = 8 };

struct env {
	unsigned char *buf, *hi;
	struct vp_mem *mem;
	uint16_t num;
	uint64_t desc, drv_ev, dev_ev;
	struct vp_vq_packed *q;
	/* The test's driver. */
	uint16_t apos, upos;		/* next slot to post / to read used from */
	bool awrap, uwrap;
	uint16_t nslots[32768];		/* per id: slots its chain took */
};

static char last_log[512];

static void capture(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level <= VP_LOG_WARN)
		snprintf(last_log, sizeof(last_log), "%s", msg);
}

static int env_queue(struct env *e, unsigned flags, uint16_t last_avail)
{
	struct vp_vq_packed_config c = {
		.num = e->num, .desc = e->desc, .driver = e->drv_ev, .device = e->dev_ev,
		.ring_space = VP_ADDR_GPA, .last_avail_idx = last_avail,
		.event_idx = flags & EV, .indirect = flags & IND, .name = "t0.rx",
	};

	e->apos = e->upos = last_avail & 0x7fff;
	e->awrap = e->uwrap = !!(last_avail & WRAP_BIT);
	return vp_vq_packed_new(&e->q, e->mem, &c);
}

static struct env *env_new(uint16_t num, unsigned flags)
{
	struct vp_mem_region_desc r = { .gpa = 0, .size = MEM_SIZE, .prot = VP_MEM_RW };
	struct env *e = calloc(1, sizeof(*e));

	vp_log_set_handler(capture, NULL);
	last_log[0] = 0;
	if (!e)
		return NULL;
	e->num = num;
	e->desc = 0;
	e->drv_ev = VP_VQ_PACKED_DESC_BYTES(num);
	e->dev_ev = e->drv_ev + 4;
	e->buf = aligned_alloc(4096, MEM_SIZE);
	e->mem = vp_mem_new();
	if (!e->buf || !e->mem || (memset(e->buf, 0, MEM_SIZE), 0) ||
	    vp_mem_add_local(e->mem, &r, e->buf) < 0)
		return NULL;
	if (flags & HI_RO) {
		e->hi = aligned_alloc(4096, HI_SIZE);
		if (!e->hi)
			return NULL;
		memset(e->hi, 0, HI_SIZE);
		r = (struct vp_mem_region_desc){ .gpa = HI_GPA, .size = HI_SIZE,
						 .prot = VP_MEM_READ };
		if (vp_mem_add_local(e->mem, &r, e->hi) < 0)
			return NULL;
	}
	if (flags & RING_HI)
		return e;	/* the test attaches itself */
	/* A fresh ring starts at position 0 with wrap counter 1. */
	if (env_queue(e, flags, WRAP_BIT))
		return NULL;
	return e;
}

static void env_free(struct env *e)
{
	if (!e)
		return;
	vp_vq_packed_free(e->q);
	vp_mem_free(e->mem);
	free(e->buf);
	free(e->hi);
	free(e);
	vp_log_set_handler(NULL, NULL);
}

static struct vring_packed_desc *rdesc(struct env *e, unsigned i)
{
	return (struct vring_packed_desc *)(void *)(e->buf + e->desc) + i;
}

static struct vring_packed_desc_event *drv_area(struct env *e)
{
	return (struct vring_packed_desc_event *)(void *)(e->buf + e->drv_ev);
}

static struct vring_packed_desc_event *dev_area(struct env *e)
{
	return (struct vring_packed_desc_event *)(void *)(e->buf + e->dev_ev);
}

/* Flags marking a descriptor available in the lap with wrap counter w. */
static uint16_t avail_flags(bool w)
{
	return (uint16_t)(w ? F_AVAIL : F_USED);
}

/* Write one descriptor as is (the hostile driver's tool). */
static void raw_desc(struct env *e, unsigned i, uint64_t addr, uint32_t len, uint16_t id,
		     uint16_t flags)
{
	struct vring_packed_desc *d = rdesc(e, i);

	d->addr = addr;
	d->len = len;
	d->id = id;
	d->flags = flags;
}

struct tb {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;		/* VRING_DESC_F_WRITE / INDIRECT; NEXT is added */
};

/*
 * The well-behaved driver: a chain of n descriptors at the next slots, id in
 * each, every flag word but the head's first, the head's last (a release
 * store, as a real driver's).
 */
static void drv_post(struct env *e, const struct tb *b, unsigned n, uint16_t id)
{
	uint16_t pos = e->apos, head_flags = 0;
	bool w = e->awrap;

	for (unsigned k = 0; k < n; k++) {
		uint16_t f = (uint16_t)(b[k].flags | avail_flags(w) |
					(k + 1 < n ? VRING_DESC_F_NEXT : 0));
		struct vring_packed_desc *d = rdesc(e, pos);

		d->addr = b[k].addr;
		d->len = b[k].len;
		d->id = id;
		if (k == 0)
			head_flags = f;
		else
			d->flags = f;
		if (++pos == e->num) {
			pos = 0;
			w = !w;
		}
	}
	__atomic_store_n(&rdesc(e, e->apos)->flags, head_flags, __ATOMIC_RELEASE);
	e->nslots[id] = (uint16_t)n;
	e->apos = pos;
	e->awrap = w;
}

static void drv_post1(struct env *e, uint64_t addr, uint32_t len, bool wr, uint16_t id)
{
	struct tb b = { addr, len, wr ? VRING_DESC_F_WRITE : 0 };

	drv_post(e, &b, 1, id);
}

/* Read the next used descriptor: 1 with *id, *len; 0 if none. */
static int drv_used(struct env *e, uint16_t *id, uint32_t *len)
{
	struct vring_packed_desc *d = rdesc(e, e->upos);
	uint16_t f = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);

	if (!!(f & F_AVAIL) != e->uwrap || !!(f & F_USED) != e->uwrap)
		return 0;
	*id = d->id;
	*len = d->len;
	e->upos = (uint16_t)(e->upos + e->nslots[*id]);
	if (e->upos >= e->num) {
		e->upos = (uint16_t)(e->upos - e->num);
		e->uwrap = !e->uwrap;
	}
	return 1;
}

static uint64_t bufgpa(unsigned i)
{
	return DATA_GPA + (uint64_t)i * 2048;
}

static void *bufptr(struct env *e, unsigned i)
{
	return e->buf + bufgpa(i);
}

#define EXPECT_BROKEN(e, why)                                                \
	do {                                                                 \
		struct vp_chain ch_[4];                                      \
		struct iovec iov_[64];                                       \
		struct vp_used u_ = { 0, 0 };                                \
		CHECK_EQ(vp_vq_packed_pop_burst((e)->q, ch_, 4, iov_, 64), -EIO); \
		CHECK(vp_vq_packed_broken((e)->q));                          \
		CHECK(strstr(vp_vq_packed_broken_reason((e)->q), why) != NULL); \
		if (!strstr(vp_vq_packed_broken_reason((e)->q), why))        \
			fprintf(stderr, "  reason: %s\n",                    \
				vp_vq_packed_broken_reason((e)->q));         \
		CHECK(strstr(last_log, "t0.rx") != NULL);                    \
		CHECK(strstr(last_log, why) != NULL);                        \
		CHECK_EQ(vp_vq_packed_pop_burst((e)->q, ch_, 4, iov_, 64), -EIO); \
		CHECK_EQ(vp_vq_packed_push_burst((e)->q, &u_, 1), -EIO);     \
		CHECK_EQ(vp_vq_packed_unpop((e)->q, 0), -EIO);               \
		CHECK(!vp_vq_packed_need_signal((e)->q));                    \
		CHECK(!vp_vq_packed_avail((e)->q));                          \
		CHECK(!vp_vq_packed_enable_notify((e)->q));                  \
	} while (0)

/* ---- attach ---- */

TEST(new_bad_config)
{
	struct env *e = env_new(8, RING_HI | HI_RO);
	struct vp_vq_packed_config c = {
		.num = 8, .desc = 0, .driver = 0x1000, .device = 0x1004, .name = "t0.rx",
	};
	struct vp_vq_packed *q = NULL;

	REQUIRE(e);
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, NULL), -EINVAL);
	c.num = 0;
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EINVAL);
	c.num = 32769;
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EINVAL);
	c.num = 8;
	c.last_avail_idx = 8;			/* position past the ring */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EINVAL);
	c.last_avail_idx = WRAP_BIT | 7;	/* last slot, wrap 1: fine */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), 0);
	CHECK_EQ(vp_vq_packed_last_avail(q), WRAP_BIT | 7);
	vp_vq_packed_free(q);
	c.last_avail_idx = 0;
	c.desc = 8;				/* misaligned */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EINVAL);
	c.desc = 0;
	c.driver = 0x1002;
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EINVAL);
	c.driver = 0x1000;
	c.device = MEM_SIZE + HI_SIZE;		/* not mapped */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EFAULT);
	c.device = HI_GPA;			/* read-only region */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EACCES);
	c.device = 0x1004;
	c.desc = HI_GPA;			/* the ring takes used entries */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EACCES);
	c.desc = MEM_SIZE - 64;			/* straddles the region's end */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), -EFAULT);
	c.desc = 0;
	c.num = 6;				/* any size, not only powers of two */
	CHECK_EQ(vp_vq_packed_new(&q, e->mem, &c), 0);
	CHECK_EQ(vp_vq_packed_num(q), 6);
	CHECK_EQ(vp_vq_packed_last_avail(q), 0);
	CHECK(q && !vp_vq_packed_avail(q));
	vp_vq_packed_free(q);
	env_free(e);
}

/* ---- a well-behaved driver ---- */

TEST(roundtrip_single_and_chain)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch[4];
	struct iovec iov[8];
	struct vp_used u;
	uint16_t id = 0;
	uint32_t len = 0;
	struct tb b[3] = {
		{ bufgpa(0), 12, 0 }, { bufgpa(1), 100, VRING_DESC_F_WRITE },
		{ bufgpa(2), 200, VRING_DESC_F_WRITE },
	};

	REQUIRE(e);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 0);
	CHECK_EQ(vp_vq_packed_avail_count(e->q, 100), 0);
	drv_post1(e, bufgpa(3), 64, false, 5);
	drv_post(e, b, 3, 2);
	CHECK(vp_vq_packed_avail(e->q));
	/* Descriptors, not chains: an upper bound; and max caps it. */
	CHECK_EQ(vp_vq_packed_avail_count(e->q, 100), 4);
	CHECK_EQ(vp_vq_packed_avail_count(e->q, 3), 3);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 2);
	CHECK_EQ(ch[0].head, 5);
	CHECK_EQ(ch[0].n_out, 1);
	CHECK_EQ(ch[0].n_in, 0);
	CHECK_EQ(ch[0].len_out, 64);
	CHECK(ch[0].iov[0].iov_base == bufptr(e, 3));
	CHECK_EQ(ch[1].head, 2);
	CHECK_EQ(ch[1].n_out, 1);
	CHECK_EQ(ch[1].n_in, 2);
	CHECK_EQ(ch[1].len_out, 12);
	CHECK_EQ(ch[1].len_in, 300);
	CHECK(ch[1].iov == iov + 1);
	CHECK(ch[1].iov[2].iov_base == bufptr(e, 2));
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 4);
	/* Complete the chain first, out of order: it lands in slot 0. */
	u = (struct vp_used){ 2, 77 };
	CHECK_EQ(vp_vq_packed_push_burst(e->q, &u, 1), 0);
	CHECK_EQ(rdesc(e, 0)->id, 2);
	CHECK_EQ(rdesc(e, 0)->len, 77);
	CHECK_EQ(rdesc(e, 0)->flags, F_AVAIL | F_USED | VRING_DESC_F_WRITE);
	CHECK_EQ(drv_used(e, &id, &len), 1);
	CHECK_EQ(id, 2);
	CHECK_EQ(len, 77);
	/* The next used slot is 3 (the chain took three). */
	u = (struct vp_used){ 5, 0 };
	CHECK_EQ(vp_vq_packed_push_burst(e->q, &u, 1), 0);
	CHECK_EQ(rdesc(e, 3)->id, 5);
	CHECK_EQ(rdesc(e, 3)->flags, F_AVAIL | F_USED);
	CHECK_EQ(drv_used(e, &id, &len), 1);
	CHECK_EQ(id, 5);
	CHECK_EQ(len, 0);
	CHECK_EQ(drv_used(e, &id, &len), 0);
	CHECK(!vp_vq_packed_broken(e->q));
	env_free(e);
}

TEST(roundtrip_indirect)
{
	struct env *e = env_new(8, IND);
	/* Entry NEXT flags and ids are ignored in packed tables. */
	const struct vring_packed_desc t[3] = {
		{ bufgpa(0), 10, 99, VRING_DESC_F_NEXT },
		{ bufgpa(1), 20, 0, VRING_DESC_F_WRITE },
		{ bufgpa(2), 30, 0, VRING_DESC_F_WRITE },
	};
	struct vp_chain ch;
	struct iovec iov[8];
	struct tb b = { IND_GPA + 3, 3 * 16, VRING_DESC_F_INDIRECT };

	REQUIRE(e);
	/* An unaligned table: copied in bytes (a typed store there is UB). */
	memcpy(e->buf + IND_GPA + 3, t, sizeof(t));
	drv_post(e, &b, 1, 7);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, &ch, 1, iov, 8), 1);
	CHECK_EQ(ch.head, 7);
	CHECK_EQ(ch.n_out, 1);
	CHECK_EQ(ch.n_in, 2);
	CHECK_EQ(ch.len_out, 10);
	CHECK_EQ(ch.len_in, 50);
	CHECK(iov[2].iov_base == bufptr(e, 2));
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 1);
	env_free(e);
}

/*
 * Many laps of a ring whose size is not a power of two, chains of 1..3
 * descriptors completed in reverse order per burst: ids, lengths and buffer
 * pointers must all come back, and the wrap counters follow.
 */
TEST(laps_out_of_order)
{
	struct env *e = env_new(7, 0);
	unsigned posted = 0, got = 0, id_next = 0;

	REQUIRE(e);
	for (unsigned round = 0; round < 300; round++) {
		struct vp_chain ch[3];
		struct iovec iov[16];
		struct vp_used u[3];
		unsigned nch = 1 + round % 3, used_slots = 0;
		int n;

		for (unsigned c = 0; c < nch; c++) {
			unsigned len = 1 + (round + c) % 3;
			struct tb b[3];

			if (used_slots + len > 7)
				break;
			for (unsigned k = 0; k < len; k++)
				b[k] = (struct tb){ bufgpa(k), 100 + k, k ? VRING_DESC_F_WRITE : 0 };
			drv_post(e, b, len, (uint16_t)(id_next++ % 7));
			used_slots += len;
			posted++;
		}
		n = vp_vq_packed_pop_burst(e->q, ch, 3, iov, 16);
		CHECK(n >= 1);
		if (n < 1)
			break;
		for (int c = 0; c < n; c++) {
			CHECK_EQ(ch[c].len_out, 100);
			CHECK(ch[c].iov[0].iov_base == bufptr(e, 0));
			u[n - 1 - c] = (struct vp_used){ ch[c].head, ch[c].len_in };
		}
		CHECK_EQ(vp_vq_packed_push_burst(e->q, u, (unsigned)n), 0);
		for (int c = 0; c < n; c++) {
			uint16_t id = 0;
			uint32_t len = 0;

			CHECK_EQ(drv_used(e, &id, &len), 1);
			CHECK_EQ(id, u[c].id);
			CHECK_EQ(len, u[c].len);
			got++;
		}
	}
	CHECK_EQ(got, posted);
	CHECK(posted > 400);
	CHECK(!vp_vq_packed_broken(e->q));
	env_free(e);
}

TEST(burst_limits_and_enobufs)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch[4];
	struct iovec iov[4];
	struct tb b[3] = { { bufgpa(0), 1, 0 }, { bufgpa(1), 1, 0 }, { bufgpa(2), 1, 0 } };

	REQUIRE(e);
	drv_post(e, b, 3, 0);
	drv_post(e, b, 3, 1);
	/* The second chain does not fit in the iovecs left: not consumed. */
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 4), 1);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 3);
	/* Not even one fits: -ENOBUFS, nothing consumed, not broken. */
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 2), -ENOBUFS);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 3);
	CHECK(!vp_vq_packed_broken(e->q));
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 4), 1);
	CHECK_EQ(ch[0].head, 1);
	env_free(e);
}

TEST(unpop_gives_chains_back)
{
	struct env *e = env_new(4, 0);
	struct vp_chain ch[4];
	struct iovec iov[8];
	struct vp_used u;
	struct tb b[2] = { { bufgpa(0), 1, 0 }, { bufgpa(1), 1, 0 } };

	REQUIRE(e);
	drv_post1(e, bufgpa(0), 8, false, 0);
	drv_post(e, b, 2, 1);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 2);
	CHECK_EQ(vp_vq_packed_unpop(e->q, 3), -EINVAL);
	CHECK_EQ(vp_vq_packed_unpop(e->q, 1), 0);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 1);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 1);
	CHECK_EQ(ch[0].head, 1);
	CHECK_EQ(ch[0].n_out, 2);
	/* A pushed chain cannot be given back, nor one older than it. */
	u = (struct vp_used){ 1, 0 };
	CHECK_EQ(vp_vq_packed_push_burst(e->q, &u, 1), 0);
	CHECK_EQ(vp_vq_packed_unpop(e->q, 1), -EINVAL);
	CHECK_EQ(vp_vq_packed_unpop(e->q, 2), -EINVAL);
	u = (struct vp_used){ 0, 0 };
	CHECK_EQ(vp_vq_packed_push_burst(e->q, &u, 1), 0);
	/* Across the wrap: a chain in slots 3 and 0 given back, walked again. */
	{
		uint16_t id = 0;
		uint32_t len = 0;

		CHECK_EQ(drv_used(e, &id, &len), 1);
		CHECK_EQ(drv_used(e, &id, &len), 1);
	}
	drv_post(e, b, 2, 2);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 1);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), 1);		/* slot 1, wrap 0 */
	CHECK_EQ(vp_vq_packed_unpop(e->q, 1), 0);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 3);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 1);
	CHECK_EQ(ch[0].head, 2);
	CHECK_EQ(ch[0].n_out, 2);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), 1);
	CHECK(!vp_vq_packed_broken(e->q));
	env_free(e);
}

TEST(push_rejects_bad_ids_writing_nothing)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch[2];
	struct iovec iov[2];
	struct vp_used u[2];

	REQUIRE(e);
	drv_post1(e, bufgpa(0), 8, false, 3);
	drv_post1(e, bufgpa(1), 8, false, 4);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 2, iov, 2), 2);
	u[0] = (struct vp_used){ 3, 0 };
	u[1] = (struct vp_used){ 8, 0 };		/* >= num */
	CHECK_EQ(vp_vq_packed_push_burst(e->q, u, 2), -EINVAL);
	u[1] = (struct vp_used){ 5, 0 };		/* not in flight */
	CHECK_EQ(vp_vq_packed_push_burst(e->q, u, 2), -EINVAL);
	u[1] = (struct vp_used){ 3, 0 };		/* twice */
	CHECK_EQ(vp_vq_packed_push_burst(e->q, u, 2), -EINVAL);
	CHECK_EQ(rdesc(e, 0)->flags, F_AVAIL);	/* still the driver's */
	u[1] = (struct vp_used){ 4, 0 };
	CHECK_EQ(vp_vq_packed_push_burst(e->q, u, 2), 0);
	CHECK_EQ(rdesc(e, 1)->flags, F_AVAIL | F_USED);
	CHECK(!vp_vq_packed_broken(e->q));
	env_free(e);
}

/* push_burst's duplicate check stamps ids with a 16-bit burst counter: once
 * it has come round (70000 bursts), a stale stamp must not pass for "seen in
 * this burst" (id 7 is pushed in the first burst and again in the 65536th,
 * where the counter is back at its first value), and a real duplicate must
 * still be refused. */
TEST(push_duplicate_check_survives_its_counter_wrapping)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch[2];
	struct iovec iov[2];
	struct vp_used u[2];
	unsigned bad = 0;

	REQUIRE(e);
	for (unsigned k = 0; k < 70000; k++) {
		drv_post1(e, bufgpa(0), 8, false, (uint16_t)(k == 0 || k == 65535 ? 7 : k % 7));
		if (vp_vq_packed_pop_burst(e->q, ch, 1, iov, 1) != 1)
			bad++;
		u[0] = (struct vp_used){ ch[0].head, 0 };
		if (vp_vq_packed_push_burst(e->q, u, 1) != 0)
			bad++;
	}
	CHECK_EQ(bad, 0);
	drv_post1(e, bufgpa(0), 8, false, 2);
	drv_post1(e, bufgpa(1), 8, false, 5);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 2, iov, 2), 2);
	u[0] = (struct vp_used){ 5, 0 };
	u[1] = (struct vp_used){ 5, 0 };		/* twice */
	CHECK_EQ(vp_vq_packed_push_burst(e->q, u, 2), -EINVAL);
	u[1] = (struct vp_used){ 2, 0 };
	CHECK_EQ(vp_vq_packed_push_burst(e->q, u, 2), 0);
	CHECK(!vp_vq_packed_broken(e->q));
	env_free(e);
}

/* ---- event suppression ---- */

TEST(notify_flags_written)
{
	struct env *e = env_new(8, 0);

	REQUIRE(e);
	vp_vq_packed_disable_notify(e->q);
	CHECK_EQ(dev_area(e)->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
	CHECK(!vp_vq_packed_enable_notify(e->q));
	CHECK_EQ(dev_area(e)->flags, VRING_PACKED_EVENT_FLAG_ENABLE);
	drv_post1(e, bufgpa(0), 8, false, 0);
	CHECK(vp_vq_packed_enable_notify(e->q));
	env_free(e);

	/* With EVENT_IDX: DESC at the next slot to pop, with its wrap. */
	e = env_new(4, EV);
	REQUIRE(e);
	for (uint16_t i = 0; i < 5; i++) {
		struct vp_chain ch;
		struct iovec iov;
		struct vp_used u = { i % 4, 0 };
		uint16_t id = 0;
		uint32_t len = 0;

		drv_post1(e, bufgpa(0), 8, false, i % 4);
		CHECK_EQ(vp_vq_packed_pop_burst(e->q, &ch, 1, &iov, 1), 1);
		CHECK_EQ(vp_vq_packed_push_burst(e->q, &u, 1), 0);
		CHECK_EQ(drv_used(e, &id, &len), 1);
	}
	CHECK(!vp_vq_packed_enable_notify(e->q));
	CHECK_EQ(dev_area(e)->flags, VRING_PACKED_EVENT_FLAG_DESC);
	CHECK_EQ(dev_area(e)->off_wrap, 1);	/* slot 1, second lap: wrap 0 */
	vp_vq_packed_disable_notify(e->q);
	CHECK_EQ(dev_area(e)->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
	env_free(e);
}

/* Push `n` one-slot chains. */
static void complete(struct env *e, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct vp_chain ch;
		struct iovec iov;
		struct vp_used u;
		uint16_t id = 0;
		uint32_t len = 0;

		drv_post1(e, bufgpa(0), 8, false, 1);
		REQUIRE(vp_vq_packed_pop_burst(e->q, &ch, 1, &iov, 1) == 1);
		u = (struct vp_used){ ch.head, 0 };
		REQUIRE(vp_vq_packed_push_burst(e->q, &u, 1) == 0);
		REQUIRE(drv_used(e, &id, &len) == 1);
	}
}

TEST(need_signal_flags_and_desc)
{
	struct env *e = env_new(8, 0);

	REQUIRE(e);
	CHECK(!vp_vq_packed_need_signal(e->q));	/* nothing pushed */
	complete(e, 1);
	drv_area(e)->flags = VRING_PACKED_EVENT_FLAG_DISABLE;
	CHECK(!vp_vq_packed_need_signal(e->q));
	complete(e, 1);
	drv_area(e)->flags = VRING_PACKED_EVENT_FLAG_ENABLE;
	CHECK(vp_vq_packed_need_signal(e->q));
	CHECK(!vp_vq_packed_need_signal(e->q));	/* that answer covered it */
	/* DESC without EVENT_IDX negotiated, or a reserved value: signal. */
	complete(e, 1);
	drv_area(e)->flags = VRING_PACKED_EVENT_FLAG_DESC;
	CHECK(vp_vq_packed_need_signal(e->q));
	complete(e, 1);
	drv_area(e)->flags = 3;
	CHECK(vp_vq_packed_need_signal(e->q));
	env_free(e);

	/*
	 * With EVENT_IDX, ring of 8: after the first answer, a signal only when
	 * the used slots written cross the driver's off_wrap.
	 */
	e = env_new(8, EV);
	REQUIRE(e);
	drv_area(e)->flags = VRING_PACKED_EVENT_FLAG_DESC;
	drv_area(e)->off_wrap = WRAP_BIT | 6;
	complete(e, 1);
	CHECK(vp_vq_packed_need_signal(e->q));	/* first answer: yes */
	complete(e, 2);				/* slots 1, 2: not 6 */
	CHECK(!vp_vq_packed_need_signal(e->q));
	complete(e, 4);				/* slots 3..6 */
	CHECK(vp_vq_packed_need_signal(e->q));
	/* Event at slot 1 of the next lap (wrap 0): crossed only after the wrap. */
	drv_area(e)->off_wrap = 1;
	complete(e, 1);				/* slot 7 */
	CHECK(!vp_vq_packed_need_signal(e->q));
	complete(e, 1);				/* slot 0, lap 2 */
	CHECK(!vp_vq_packed_need_signal(e->q));
	complete(e, 1);				/* slot 1, lap 2 */
	CHECK(vp_vq_packed_need_signal(e->q));
	/* An event on the lap before, already passed: no. */
	drv_area(e)->off_wrap = WRAP_BIT | 5;
	complete(e, 2);				/* slots 2, 3 */
	CHECK(!vp_vq_packed_need_signal(e->q));
	complete(e, 3);				/* slots 4..6 */
	(void)vp_vq_packed_need_signal(e->q);
	/* Event at slot 7 of this lap, crossed by a burst that wraps. */
	drv_area(e)->off_wrap = 7;
	complete(e, 2);				/* slots 7, 0 (lap 3) */
	CHECK(vp_vq_packed_need_signal(e->q));
	/* A hostile offset past the ring: a yes or a no, never a fault. */
	drv_area(e)->off_wrap = 0x7fff;
	complete(e, 1);
	(void)vp_vq_packed_need_signal(e->q);
	CHECK(!vp_vq_packed_broken(e->q));
	env_free(e);
}

/* ---- wrap-counter games: not available, or broken ---- */

TEST(wrap_counter_games)
{
	struct env *e = env_new(4, 0);
	struct vp_chain ch[4];
	struct iovec iov[8];

	REQUIRE(e);
	/* Wrong lap (wrap 0 while we are at 1), and avail == used: not posted. */
	raw_desc(e, 0, bufgpa(0), 8, 0, F_USED);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 0);
	raw_desc(e, 0, bufgpa(0), 8, 0, F_AVAIL | F_USED);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 0);
	raw_desc(e, 0, bufgpa(0), 8, 0, 0);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 0);
	CHECK(!vp_vq_packed_broken(e->q));
	/* Our own used descriptor is never popped again. */
	drv_post1(e, bufgpa(0), 8, false, 0);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 1);
	CHECK_EQ(vp_vq_packed_push_burst(e->q, &(struct vp_used){ 0, 0 }, 1), 0);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 0);
	CHECK(!vp_vq_packed_broken(e->q));
	/* A head available, the next descriptor of its chain not (wrong lap). */
	raw_desc(e, 2, bufgpa(1), 8, 1, F_USED);
	raw_desc(e, 1, bufgpa(0), 8, 1, F_AVAIL | VRING_DESC_F_NEXT);
	EXPECT_BROKEN(e, "chain at desc 1: desc 2 not available (flags 0x8000, wrap counter 1)");
	env_free(e);

	/* A chain that crosses the wrap must flip its counter there. */
	e = env_new(4, 0);
	REQUIRE(e);
	vp_vq_packed_free(e->q);
	REQUIRE(env_queue(e, 0, WRAP_BIT | 3) == 0);
	raw_desc(e, 0, bufgpa(1), 8, 1, F_AVAIL);	/* still wrap 1: wrong */
	raw_desc(e, 3, bufgpa(0), 8, 1, F_AVAIL | VRING_DESC_F_NEXT);
	EXPECT_BROKEN(e, "chain at desc 3: desc 0 not available");
	env_free(e);

	e = env_new(4, 0);
	REQUIRE(e);
	vp_vq_packed_free(e->q);
	REQUIRE(env_queue(e, 0, WRAP_BIT | 3) == 0);
	raw_desc(e, 0, bufgpa(1), 8, 1, F_USED);		/* wrap 0: right */
	raw_desc(e, 3, bufgpa(0), 8, 1, F_AVAIL | VRING_DESC_F_NEXT);
	/* The count flips its counter at the wrap too, and stops at slot 1. */
	CHECK_EQ(vp_vq_packed_avail_count(e->q, 10), 2);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 4, iov, 8), 1);
	CHECK_EQ(ch[0].n_out, 2);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), 1);		/* slot 1, wrap 0 */
	env_free(e);
}

/* ---- the split suite's hostile cases, packed ---- */

TEST(evil_id_out_of_range)
{
	struct env *e = env_new(8, 0);

	REQUIRE(e);
	drv_post1(e, bufgpa(0), 8, false, 0);
	raw_desc(e, 1, bufgpa(1), 8, 8, F_AVAIL);
	EXPECT_BROKEN(e, "chain at desc 1: buffer id 8 >= num 8");
	env_free(e);
}

TEST(evil_id_already_in_flight)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch;
	struct iovec iov;

	REQUIRE(e);
	/* The same id twice in one burst. */
	drv_post1(e, bufgpa(0), 8, false, 3);
	drv_post1(e, bufgpa(1), 8, false, 3);
	EXPECT_BROKEN(e, "chain at desc 1: buffer id 3 already in flight");
	env_free(e);

	/* Or across bursts, while the first is still out. */
	e = env_new(8, 0);
	REQUIRE(e);
	drv_post1(e, bufgpa(0), 8, false, 3);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, &ch, 1, &iov, 1), 1);
	drv_post1(e, bufgpa(1), 8, false, 3);
	EXPECT_BROKEN(e, "buffer id 3 already in flight");
	env_free(e);
}

/* The id is the chain's last descriptor's, whatever the others say. */
TEST(id_from_last_descriptor)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch;
	struct iovec iov[2];

	REQUIRE(e);
	raw_desc(e, 1, bufgpa(1), 8, 6, F_AVAIL);
	raw_desc(e, 0, bufgpa(0), 8, 9999, F_AVAIL | VRING_DESC_F_NEXT);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, &ch, 1, iov, 2), 1);
	CHECK_EQ(ch.head, 6);
	env_free(e);
}

TEST(evil_chain_loop_and_too_long)
{
	struct env *e = env_new(8, 0);
	struct vp_chain ch[2];
	struct iovec iov[16];
	struct tb b[8];

	REQUIRE(e);
	/* A chain of exactly num descriptors is fine. */
	for (unsigned k = 0; k < 8; k++)
		b[k] = (struct tb){ bufgpa(k), 10, 0 };
	drv_post(e, b, 8, 0);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 2, iov, 16), 1);
	CHECK_EQ(ch[0].n_out, 8);
	CHECK_EQ(ch[0].len_out, 80);
	CHECK_EQ(vp_vq_packed_push_burst(e->q, &(struct vp_used){ 0, 0 }, 1), 0);
	CHECK_EQ(vp_vq_packed_last_avail(e->q), 0);	/* a whole lap */
	/* Every descriptor available and NEXT: round and round. */
	for (unsigned k = 0; k < 8; k++)
		raw_desc(e, k, bufgpa(k), 10, 1, F_USED | VRING_DESC_F_NEXT);
	EXPECT_BROKEN(e, "chain at desc 0 longer than the 8 descriptors not in flight (loop?)");
	env_free(e);

	/* With two in flight, a chain may take six slots only. */
	e = env_new(8, 0);
	REQUIRE(e);
	drv_post1(e, bufgpa(0), 8, false, 0);
	drv_post1(e, bufgpa(0), 8, false, 1);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, ch, 2, iov, 16), 2);
	for (unsigned k = 2; k < 8; k++)
		raw_desc(e, k, bufgpa(k), 10, 2, F_AVAIL | VRING_DESC_F_NEXT);
	/* ... the driver overwrites slots 0 and 1, still ours, to go on. */
	raw_desc(e, 0, bufgpa(0), 10, 2, F_USED | VRING_DESC_F_NEXT);
	raw_desc(e, 1, bufgpa(0), 10, 2, F_USED);
	EXPECT_BROKEN(e, "chain at desc 2 longer than the 6 descriptors not in flight");
	env_free(e);
}

TEST(evil_indirect_not_negotiated)
{
	struct env *e = env_new(8, 0);
	struct tb b = { IND_GPA, 16, VRING_DESC_F_INDIRECT };

	REQUIRE(e);
	*(struct vring_packed_desc *)(void *)(e->buf + IND_GPA) =
		(struct vring_packed_desc){ bufgpa(0), 10, 0, 0 };
	drv_post(e, &b, 1, 0);
	EXPECT_BROKEN(e, "desc 0: INDIRECT not negotiated");
	env_free(e);
}

TEST(evil_nested_indirect)
{
	struct env *e = env_new(8, IND);
	struct vring_packed_desc *t = (void *)(e ? e->buf + IND_GPA : NULL);
	struct tb b = { IND_GPA, 32, VRING_DESC_F_INDIRECT };

	REQUIRE(e);
	t[0] = (struct vring_packed_desc){ bufgpa(0), 10, 0, 0 };
	t[1] = (struct vring_packed_desc){ IND_GPA, 32, 0, VRING_DESC_F_INDIRECT }; /* itself */
	drv_post(e, &b, 1, 0);
	EXPECT_BROKEN(e, "nested indirect in table entry 1 (head 0)");
	env_free(e);
}

TEST(evil_indirect_with_next)
{
	struct env *e = env_new(8, IND);
	struct tb b[2] = { { IND_GPA, 16, VRING_DESC_F_INDIRECT }, { bufgpa(1), 10, 0 } };

	REQUIRE(e);
	*(struct vring_packed_desc *)(void *)(e->buf + IND_GPA) =
		(struct vring_packed_desc){ bufgpa(0), 10, 0, 0 };
	drv_post(e, b, 2, 0);
	EXPECT_BROKEN(e, "desc 0: INDIRECT together with NEXT");
	env_free(e);
}

TEST(evil_indirect_bad_len)
{
	static const struct { uint32_t len; const char *why; } c[] = {
		{ 24, "indirect len 24" }, { 15, "indirect len 15" }, { 0, "indirect len 0" },
		{ 8 * 16 + 16, "indirect len 144" }, { 0xfffffff0u, "indirect len 4294967280" },
	};

	for (unsigned k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		struct env *e = env_new(8, IND);
		struct tb b = { IND_GPA, c[k].len, VRING_DESC_F_INDIRECT };

		REQUIRE(e);
		drv_post(e, &b, 1, 0);
		EXPECT_BROKEN(e, c[k].why);
		env_free(e);
	}
}

TEST(evil_indirect_table_outside_memory)
{
	struct env *e = env_new(8, IND);
	struct tb b = { MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT };

	REQUIRE(e);
	drv_post(e, &b, 1, 0);
	EXPECT_BROKEN(e, "indirect table 0xffff0 len 32 not in readable memory");
	env_free(e);
}

TEST(evil_readable_after_writable)
{
	struct env *e = env_new(8, IND);
	struct tb b[2] = { { bufgpa(0), 10, VRING_DESC_F_WRITE }, { bufgpa(1), 10, 0 } };

	REQUIRE(e);
	drv_post(e, b, 2, 0);
	EXPECT_BROKEN(e, "desc 1: readable after writable (head 0)");
	env_free(e);

	/* Inside an indirect table, and across the switch into it. */
	e = env_new(8, IND);
	REQUIRE(e);
	*(struct vring_packed_desc *)(void *)(e->buf + IND_GPA) =
		(struct vring_packed_desc){ bufgpa(1), 10, 0, 0 };
	b[1] = (struct tb){ IND_GPA, 16, VRING_DESC_F_INDIRECT };
	drv_post(e, b, 2, 0);
	/* NEXT on the writable head, INDIRECT on the second: the table's
	 * readable entry comes after a writable descriptor. */
	EXPECT_BROKEN(e, "indirect entry 0: readable after writable");
	env_free(e);
}

TEST(evil_buffer_outside_memory)
{
	static const uint64_t addr[] = { MEM_SIZE, MEM_SIZE - 5, 0x123456789000ull };

	for (unsigned k = 0; k < 3; k++) {
		struct env *e = env_new(8, 0);
		struct tb b[2] = { { bufgpa(0), 10, 0 }, { addr[k], 10, VRING_DESC_F_WRITE } };

		REQUIRE(e);
		drv_post(e, b, 2, 0);
		EXPECT_BROKEN(e, "outside guest memory");
		env_free(e);
	}
	/* The same inside an indirect table. */
	{
		struct env *e = env_new(8, IND);
		struct tb b = { IND_GPA, 16, VRING_DESC_F_INDIRECT };

		REQUIRE(e);
		*(struct vring_packed_desc *)(void *)(e->buf + IND_GPA) =
			(struct vring_packed_desc){ MEM_SIZE, 10, 0, 0 };
		drv_post(e, &b, 1, 0);
		EXPECT_BROKEN(e, "indirect entry 0: buffer 0x100000 len 10 outside guest memory");
		env_free(e);
	}
}

TEST(evil_write_to_read_only_region)
{
	struct env *e = env_new(8, HI_RO);
	struct vp_chain ch;
	struct iovec iov[2];

	REQUIRE(e);
	drv_post1(e, HI_GPA, 10, false, 0);
	CHECK_EQ(vp_vq_packed_pop_burst(e->q, &ch, 1, iov, 2), 1);
	CHECK(iov[0].iov_base == e->hi);
	drv_post1(e, HI_GPA - 4, 10, true, 1);
	EXPECT_BROKEN(e, "desc 1: buffer 0xffffc len 10 not writable");
	env_free(e);
}

TEST(evil_addr_len_wrap)
{
	struct env *e = env_new(8, 0);

	REQUIRE(e);
	drv_post1(e, 0xfffffffffffffff0ull, 0x20, false, 0);
	EXPECT_BROKEN(e, "wraps");
	env_free(e);
}

TEST(evil_total_length_overflow)
{
	struct vp_mem_region_desc r = { .gpa = 0x100000000ull, .size = 0xc0000000ull,
		.prot = VP_MEM_RW };
	struct env *e = env_new(8, 0);
	struct tb b[2] = { { 0x100000000ull, 0xc0000000u, 0 },
			   { 0x100000000ull, 0xc0000000u, VRING_DESC_F_WRITE } };

	REQUIRE(e);
	/* Two 3 GiB buffers in a region that is never touched. */
	REQUIRE(vp_mem_add_local(e->mem, &r, (void *)(uintptr_t)0x100000000ull) >= 0);
	drv_post(e, b, 2, 0);
	EXPECT_BROKEN(e, "overflows 32 bits");
	env_free(e);
}

/* The first chain of a burst was good; the burst is discarded with the queue. */
TEST(evil_after_good_in_one_burst)
{
	struct env *e = env_new(8, 0);

	REQUIRE(e);
	drv_post1(e, bufgpa(0), 10, false, 0);
	drv_post1(e, MEM_SIZE, 10, false, 1);
	EXPECT_BROKEN(e, "desc 1: buffer 0x100000 len 10 outside guest memory");
	CHECK_EQ(vp_vq_packed_last_avail(e->q), WRAP_BIT | 0);
	env_free(e);
}

/* ---- memory shrinking under the ring (the SIGBUS guard's zeros) ---- */

static void shrunk_body(void)
{
	struct vp_vq_packed_config c = {
		.num = 8, .desc = 0, .driver = 0x1000, .device = 0x1004, .name = "t0.rx",
		.last_avail_idx = WRAP_BIT,
	};
	int fd = tu_memfd("packed", MEM_SIZE, 0);
	struct vp_mem_region_desc r = { .gpa = 0, .size = MEM_SIZE, .fd = fd,
					.prot = VP_MEM_RW };
	struct vp_mem *mem = vp_mem_new();
	struct vp_vq_packed *q = NULL;
	struct vring_packed_desc *d;
	struct vp_chain ch;
	struct iovec iov;
	struct vp_used u = { 4, 0 };

	REQUIRE(fd >= 0 && mem && vp_mem_sigbus_guard() == 0);
	REQUIRE(vp_mem_add_region(mem, &r) == 0);
	d = vp_mem_gpa_ptr(mem, 0, 128, VP_MEM_RW);
	REQUIRE(d && vp_vq_packed_new(&q, mem, &c) == 0);
	d[0] = (struct vring_packed_desc){ DATA_GPA, 64, 4, F_AVAIL | VRING_DESC_F_WRITE };
	CHECK_EQ(vp_vq_packed_pop_burst(q, &ch, 1, &iov, 1), 1);
	/* The peer truncates its memory; our copy into the buffer faults. */
	REQUIRE(ftruncate(fd, 4096) == 0);
	memset(iov.iov_base, 1, iov.iov_len);
	CHECK(vp_vq_packed_broken(q));
	CHECK(strstr(vp_vq_packed_broken_reason(q), "shrank") != NULL);
	/* The used entry went into zeros: the push says so and breaks the queue. */
	CHECK_EQ(vp_vq_packed_push_burst(q, &u, 1), -EIO);
	CHECK(strstr(vp_vq_packed_broken_reason(q), "shrank") != NULL);
	CHECK(strstr(last_log, "shrank") != NULL);
	CHECK_EQ(vp_vq_packed_pop_burst(q, &ch, 1, &iov, 1), -EIO);
	vp_vq_packed_free(q);
	vp_mem_free(mem);
	close(fd);
}

TEST(memory_shrunk_breaks_the_queue)
{
	pid_t pid;
	int st = -1;

	vp_log_set_handler(capture, NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		tu_failed_checks = 0;
		shrunk_body();
		_exit(tu_failed_checks ? 1 : 0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	vp_log_set_handler(NULL, NULL);
}

/* ---- driver side: vp_vq_drv on a packed ring, against the device side ---- */

/* Our packed driver over the env's ring (re-zeroed: the device side attached
 * fresh, so both start at position 0, wrap counter 1). */
static struct vp_vq_drv *pdrv_new(struct env *e, unsigned flags, uint16_t ind_max)
{
	struct vp_vq_drv_config c = {
		.num = e->num, .desc = e->buf + e->desc, .avail = e->buf + e->drv_ev,
		.used = e->buf + e->dev_ev, .event_idx = flags & EV, .name = "t0.drv",
		.packed = true,
	};
	struct vp_vq_drv *d = NULL;

	if (ind_max) {
		c.indirect_area = e->buf + IND_GPA;
		c.indirect_gpa = IND_GPA;
		c.indirect_max = ind_max;
	}
	return vp_vq_drv_new(&d, &c) ? NULL : d;
}

static void *ptok(unsigned i)
{
	return (void *)(uintptr_t)(i + 1);
}

/*
 * Many laps of a small ring: chains of 1..5 buffers (readable ones carrying
 * a pattern the device checks, writable ones it fills), published in
 * batches, completed out of order; every token and length comes back, the
 * data arrives intact, the kick and call answers follow the event areas.
 */
static void laps(unsigned flags, uint16_t ind_max)
{
	struct env *e = env_new(8, flags);
	struct vp_vq_drv *d;
	unsigned seq = 0, done = 0, rnd = 12345;

	REQUIRE(e);
	d = pdrv_new(e, flags, ind_max);
	REQUIRE(d);
	CHECK_EQ(vp_vq_drv_num_free(d), 8);
	for (unsigned it = 0; it < 3000; it++) {
		struct vp_buf out[5], in[5];
		struct vp_chain ch[8];
		struct iovec iov[64];
		struct vp_used u[8];
		void *tok[8];
		uint32_t len[8];
		unsigned posted = 0, base = seq;
		int n, got;

		/* Post until the ring is full or 3 chains are staged. */
		while (posted < 3) {
			unsigned no = (rnd = rnd * 1103515245 + 12345) >> 16 & 3;
			unsigned ni = (rnd = rnd * 1103515245 + 12345) >> 16 & 1;
			unsigned k;
			int r;

			if (no + ni == 0)
				no = 1;
			for (k = 0; k < no; k++) {
				unsigned slot = (seq % 8) * 4 + k;

				out[k] = (struct vp_buf){ bufgpa(slot), 32 };
				memset(bufptr(e, slot), (int)(seq + k) & 0xff, 32);
			}
			for (k = 0; k < ni; k++)
				in[k] = (struct vp_buf){ bufgpa((seq % 8) * 4 + 3), 100 };
			r = vp_vq_drv_add(d, out, no, in, ni, ptok(seq % 64));
			if (r == -ENOSPC)
				break;
			REQUIRE(r == 0);
			seq++;
			posted++;
		}
		if (it % 7 == 0) {
			/* The device polls: no kick asked for. */
			vp_vq_packed_disable_notify(e->q);
			CHECK(!vp_vq_drv_publish(d));
		} else if (it % 7 == 1) {
			/* The device sleeps at its next descriptor: one kick. */
			CHECK(!vp_vq_packed_enable_notify(e->q));
			CHECK(vp_vq_drv_publish(d) == (posted > 0));
		} else {
			vp_vq_drv_publish(d);
		}
		n = vp_vq_packed_pop_burst(e->q, ch, 8, iov, 64);
		REQUIRE(n >= 0);
		CHECK_EQ((unsigned)n, posted);
		for (int i = 0; i < n; i++) {
			unsigned s = base + (unsigned)i;
			unsigned off = 0;

			for (unsigned k = 0; k < ch[i].n_out; k++) {
				const unsigned char *p = iov[off + k].iov_base;

				CHECK_EQ(iov[off + k].iov_len, 32);
				CHECK(p[0] == ((s + k) & 0xff) && p[31] == ((s + k) & 0xff));
			}
			off += ch[i].n_out;
			if (ch[i].n_in)
				memset(iov[off].iov_base, 0xee, 100);
			u[i] = (struct vp_used){ ch[i].head, ch[i].len_in ? 40u + (s % 60) : 0 };
			/* iovecs of one chain follow the last's */
			memmove(iov, iov + off + ch[i].n_in,
				sizeof(iov[0]) * (64 - off - ch[i].n_in));
		}
		/* Completed newest first: ids out of ring order. */
		for (int i = 0; i < n / 2; i++) {
			struct vp_used t = u[i];

			u[i] = u[n - 1 - i];
			u[n - 1 - i] = t;
		}
		REQUIRE(vp_vq_packed_push_burst(e->q, u, (unsigned)n) == 0);
		CHECK(vp_vq_drv_used_pending(d) == (n > 0));
		got = vp_vq_drv_get_used(d, tok, len, 8);
		CHECK_EQ(got, n);
		for (int i = 0; i < got && i < n; i++) {
			unsigned s = base + (unsigned)(n - 1 - i);

			CHECK(tok[i] == ptok(s % 64));
			CHECK_EQ(len[i], u[i].len);
		}
		done += got > 0 ? (unsigned)got : 0;
		CHECK_EQ(vp_vq_drv_used_pending(d), 0);
		CHECK_EQ(vp_vq_drv_num_free(d), 8);
		/* Calls: none while the driver polls, one once it sleeps. */
		vp_vq_drv_disable_cb(d);
		CHECK(!vp_vq_packed_need_signal(e->q) || !(flags & EV) || it == 0);
		CHECK(!vp_vq_drv_enable_cb(d));
		vp_vq_drv_disable_cb(d);
	}
	CHECK(done > 3000);
	CHECK(!vp_vq_drv_broken(d));
	CHECK(!vp_vq_packed_broken(e->q));
	vp_vq_drv_free(d);
	env_free(e);
}

TEST(driver_many_laps)
{
	laps(0, 0);
}

TEST(driver_many_laps_event_idx_indirect)
{
	laps(EV | IND, 4);
}

/* Write a used descriptor over slot i as a (hostile) device would. */
static void used_desc(struct env *e, unsigned i, uint16_t id, uint32_t len, uint16_t flags)
{
	struct vring_packed_desc *p = rdesc(e, i);

	p->id = id;
	p->len = len;
	__atomic_store_n(&p->flags, flags, __ATOMIC_RELEASE);
}

/* Two chains posted (ids 0 and 1, 64 writable bytes each), published. */
static struct vp_vq_drv *two_posted(struct env *e)
{
	struct vp_vq_drv *d = pdrv_new(e, 0, 0);
	struct vp_buf b[2] = { { bufgpa(0), 64 }, { bufgpa(1), 64 } };
	void *t[2] = { ptok(0), ptok(1) };

	if (!d)
		return NULL;
	if (vp_vq_drv_add_burst(d, b, 2, true, t) != 2) {
		vp_vq_drv_free(d);
		return NULL;
	}
	vp_vq_drv_publish(d);
	return d;
}

static void expect_drv_broken(struct vp_vq_drv *d, const char *why)
{
	struct vp_buf b = { bufgpa(2), 8 };
	void *tok[2];
	uint32_t len[2];

	CHECK(vp_vq_drv_broken(d));
	CHECK(strstr(vp_vq_drv_broken_reason(d), why) != NULL);
	if (!strstr(vp_vq_drv_broken_reason(d), why))
		fprintf(stderr, "  reason: %s\n", vp_vq_drv_broken_reason(d));
	CHECK(strstr(last_log, "t0.drv") != NULL && strstr(last_log, why) != NULL);
	CHECK_EQ(vp_vq_drv_get_used(d, tok, len, 2), -EIO);
	CHECK_EQ(vp_vq_drv_add(d, &b, 1, NULL, 0, ptok(9)), -EIO);
	CHECK_EQ(vp_vq_drv_add_burst(d, &b, 1, true, tok), -EIO);
	CHECK(!vp_vq_drv_publish(d));
	CHECK(!vp_vq_drv_enable_cb(d));
	CHECK_EQ(vp_vq_drv_used_pending(d), 0);
}

/* Each hostile used descriptor breaks the queue with its reason, after the
 * good entries before it were handed back. */
TEST(driver_refuses_hostile_used_descriptors)
{
	static const struct {
		unsigned good;		/* good entries (id 0, 8 bytes) before it */
		uint16_t id;
		uint32_t len;
		uint16_t flags;
		const char *why;
	} c[] = {
		{ 0, 11, 0, F_AVAIL | F_USED, "used slot 0: id 11 >= num 8" },
		{ 1, 0, 8, F_AVAIL | F_USED, "used slot 1: id 0 not outstanding" },
		{ 0, 1, 65, F_AVAIL | F_USED | VRING_DESC_F_WRITE,
		  "used slot 0: id 1 len 65 > 64 writable bytes posted" },
		/* Lap 1 (wrap counter 1): a used descriptor has both bits set;
		 * the used bit alone is no descriptor of this lap. */
		{ 0, 0, 0, F_USED,
		  "used slot 0: flags 0x8000 have the wrong wrap bits for wrap counter 1" },
	};

	for (unsigned k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		struct env *e = env_new(8, 0);
		struct vp_vq_drv *d;
		void *tok[2];
		uint32_t len[2];

		REQUIRE(e && (d = two_posted(e)));
		used_desc(e, c[k].good, c[k].id, c[k].len, c[k].flags);
		if (c[k].good)
			used_desc(e, 0, 0, 8, F_AVAIL | F_USED);
		CHECK_EQ(vp_vq_drv_used_pending(d), 1);	/* a peek, not a check */
		if (c[k].good) {
			CHECK_EQ(vp_vq_drv_get_used(d, tok, len, 2), 1);
			CHECK(tok[0] == ptok(0));
			CHECK_EQ(len[0], 8);
		}
		CHECK_EQ(vp_vq_drv_get_used(d, tok, len, 2), -EIO);
		expect_drv_broken(d, c[k].why);
		vp_vq_drv_free(d);
		env_free(e);
	}
}

TEST(driver_reads_no_slot_it_has_not_published)
{
	struct env *e = env_new(8, 0);
	struct vp_vq_drv *d;
	struct vp_buf b = { bufgpa(0), 64 };
	void *t = ptok(0), *tok[2];
	uint32_t len[2];

	REQUIRE(e && (d = pdrv_new(e, 0, 0)));
	/* Nothing outstanding: whatever the device writes is not read. */
	used_desc(e, 0, 0, 0, F_USED);
	CHECK_EQ(vp_vq_drv_get_used(d, tok, len, 2), 0);
	CHECK_EQ(vp_vq_drv_used_pending(d), 0);
	/* Staged, not published: the device cannot have seen it. */
	REQUIRE(vp_vq_drv_add_burst(d, &b, 1, true, &t) == 1);
	used_desc(e, 0, 0, 0, 0);
	CHECK_EQ(vp_vq_drv_get_used(d, tok, len, 2), 0);
	CHECK(!vp_vq_packed_avail(e->q));
	CHECK(!vp_vq_drv_broken(d));
	/* Published: available to the device, and its used entry comes back. */
	vp_vq_drv_publish(d);
	{
		struct vp_chain ch;
		struct iovec iov;
		struct vp_used u;

		REQUIRE(vp_vq_packed_pop_burst(e->q, &ch, 1, &iov, 1) == 1);
		u = (struct vp_used){ ch.head, 64 };
		REQUIRE(vp_vq_packed_push_burst(e->q, &u, 1) == 0);
	}
	CHECK_EQ(vp_vq_drv_get_used(d, tok, len, 2), 1);
	CHECK(tok[0] == t);
	CHECK_EQ(len[0], 64);
	vp_vq_drv_free(d);
	env_free(e);
}

TEST(driver_event_areas)
{
	struct env *e = env_new(8, EV);
	struct vp_vq_drv *d;

	REQUIRE(e && (d = pdrv_new(e, EV, 0)));
	vp_vq_drv_disable_cb(d);
	CHECK_EQ(drv_area(e)->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
	CHECK(!vp_vq_drv_enable_cb(d));
	CHECK_EQ(drv_area(e)->flags, VRING_PACKED_EVENT_FLAG_DESC);
	CHECK_EQ(drv_area(e)->off_wrap, WRAP_BIT | 0);
	/* A reserved device flags value: kick (too often is safe). */
	{
		struct vp_buf b = { bufgpa(0), 8 };

		dev_area(e)->flags = 3;
		REQUIRE(vp_vq_drv_add(d, &b, 1, NULL, 0, ptok(0)) == 0);
		CHECK(vp_vq_drv_publish(d));
		CHECK(!vp_vq_drv_publish(d));	/* nothing new */
	}
	CHECK(!vp_vq_drv_broken(d));
	vp_vq_drv_free(d);
	env_free(e);
}
