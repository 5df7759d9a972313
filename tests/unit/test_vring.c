/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Split virtqueue tests: our driver ring and our device view over one local
 * buffer seen at gpa 0, round trips and notification decisions, then rings
 * corrupted by hand, each checked for the exact rejection.
 */
#define TESTUTIL_MAIN
#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/vring.h"
#include "../../lib/coalesce.h"

#define MEM_SIZE   (1u << 20)	/* region 0: gpa [0, 1 MiB) */
#define DATA_GPA   0x80000u	/* buffers live from here up */
#define IND_GPA    0x40000u	/* driver's indirect tables */
#define HI_GPA     MEM_SIZE	/* optional region 1: gpa [1 MiB, 1 MiB + 64 KiB) */
#define HI_SIZE    0x10000u

enum { EV = 1, IND_DEV = 2, IND_DRV = 4, HI_RO = 8, HI_RW = 16, NO_DRV = 32 };

struct env {
	unsigned char *buf;	/* host view of gpa 0 */
	unsigned char *hi;	/* host view of HI_GPA, a separate allocation */
	struct vp_mem *mem;
	uint16_t num;
	uint64_t desc, avail, used;
	struct vp_vq_drv *drv;
	struct vp_vq_dev *dev;
};

/* ---- log capture: rejections must name the queue and give values ---- */

static char last_log[512];

static void capture(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level <= VP_LOG_WARN)
		snprintf(last_log, sizeof(last_log), "%s", msg);
}

/* ---- set-up ---- */

static void env_layout(struct env *e, uint16_t num)
{
	e->num = num;
	e->desc = 0;
	e->avail = VP_VQ_DESC_BYTES(num);
	e->used = (e->avail + VP_VQ_AVAIL_BYTES(num) + 63) & ~63ull;
}

static int env_mem(struct env *e, unsigned flags)
{
	struct vp_mem_region_desc r = { .gpa = 0, .size = MEM_SIZE, .prot = VP_MEM_RW };

	vp_log_set_handler(capture, NULL);
	last_log[0] = 0;
	e->buf = aligned_alloc(4096, MEM_SIZE);
	e->mem = vp_mem_new();
	if (!e->buf || !e->mem)
		return -1;
	memset(e->buf, 0, MEM_SIZE);
	if (vp_mem_add_local(e->mem, &r, e->buf) < 0)
		return -1;
	if (flags & (HI_RO | HI_RW)) {
		e->hi = aligned_alloc(4096, HI_SIZE);
		if (!e->hi)
			return -1;
		memset(e->hi, 0, HI_SIZE);
		r = (struct vp_mem_region_desc){ .gpa = HI_GPA, .size = HI_SIZE,
			.prot = (flags & HI_RO) ? VP_MEM_READ : VP_MEM_RW };
		if (vp_mem_add_local(e->mem, &r, e->hi) < 0)
			return -1;
	}
	return 0;
}

static int env_dev(struct env *e, unsigned flags, uint16_t last_avail,
		   uint16_t last_used)
{
	struct vp_vq_dev_config dc = {
		.num = e->num, .desc = e->desc, .avail = e->avail, .used = e->used,
		.ring_space = VP_ADDR_GPA, .last_avail_idx = last_avail,
		.last_used_idx = last_used, .event_idx = flags & EV,
		.indirect = flags & IND_DEV, .name = "t0.rx",
	};

	return vp_vq_dev_new(&e->dev, e->mem, &dc);
}

/* Driver and device over one ring; flags as above. */
static int env_init(struct env *e, uint16_t num, unsigned flags, uint16_t ind_max)
{
	memset(e, 0, sizeof(*e));
	env_layout(e, num);
	if (env_mem(e, flags))
		return -1;
	if (!(flags & NO_DRV)) {
		struct vp_vq_drv_config c = {
			.num = num, .desc = e->buf + e->desc,
			.avail = e->buf + e->avail, .used = e->buf + e->used,
			.event_idx = flags & EV, .name = "t0.drv",
		};

		if (flags & IND_DRV) {
			c.indirect_area = e->buf + IND_GPA;
			c.indirect_gpa = IND_GPA;
			c.indirect_max = ind_max;
		}
		if (vp_vq_drv_new(&e->drv, &c))
			return -1;
	}
	return env_dev(e, flags, 0, 0);
}

static void env_fini(struct env *e)
{
	vp_vq_dev_free(e->dev);
	vp_vq_drv_free(e->drv);
	vp_mem_free(e->mem);
	free(e->buf);
	free(e->hi);
	vp_log_set_handler(NULL, NULL);
}

/* ---- raw ring access: the test plays a (possibly malicious) driver ---- */

static struct vring_desc *rdesc(struct env *e, unsigned i)
{
	return (struct vring_desc *)(void *)(e->buf + e->desc) + i;
}

static struct vring_avail *ravail(struct env *e)
{
	return (struct vring_avail *)(void *)(e->buf + e->avail);
}

static struct vring_used *rused(struct env *e)
{
	return (struct vring_used *)(void *)(e->buf + e->used);
}

static void put_desc(struct vring_desc *d, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static void raw_desc(struct env *e, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	put_desc(rdesc(e, i), addr, len, flags, next);
}

static void raw_post(struct env *e, uint16_t head)
{
	struct vring_avail *a = ravail(e);

	a->ring[a->idx & (e->num - 1)] = head;
	a->idx++;
}

static uint16_t *used_event(struct env *e)
{
	return &ravail(e)->ring[e->num];
}

static uint16_t *avail_event(struct env *e)
{
	return (uint16_t *)(void *)&rused(e)->ring[e->num];
}

/* A hand-built device-only ring with the listed features. */
static int raw_init(struct env *e, uint16_t num, unsigned flags)
{
	return env_init(e, num, flags | NO_DRV, 0);
}

/*
 * The queue must now be broken with a reason containing `why`, logged with
 * the queue name, and stay broken for every call.
 */
#define EXPECT_BROKEN(e, why)                                                \
	do {                                                                 \
		struct vp_chain ch_[4];                                      \
		struct iovec iov_[64];                                       \
		struct vp_used u_ = { 0, 0 };                                \
		CHECK_EQ(vp_vq_dev_pop_burst((e)->dev, ch_, 4, iov_, 64), -EIO); \
		CHECK(vp_vq_dev_broken((e)->dev));                           \
		CHECK(strstr(vp_vq_dev_broken_reason((e)->dev), why) != NULL); \
		CHECK(strstr(last_log, "t0.rx") != NULL);                    \
		CHECK(strstr(last_log, why) != NULL);                        \
		CHECK_EQ(vp_vq_dev_pop_burst((e)->dev, ch_, 4, iov_, 64), -EIO); \
		CHECK_EQ(vp_vq_dev_push_burst((e)->dev, &u_, 1), -EIO);      \
		CHECK(!vp_vq_dev_need_signal((e)->dev));                     \
		CHECK_EQ(vp_vq_dev_avail_pending((e)->dev), 0);              \
		CHECK(!vp_vq_dev_enable_notify((e)->dev));                   \
	} while (0)

#define EXPECT_DRV_BROKEN(e, why)                                            \
	do {                                                                 \
		void *t_[4];                                                 \
		uint32_t l_[4];                                              \
		CHECK_EQ(vp_vq_drv_get_used((e)->drv, t_, l_, 4), -EIO);     \
		CHECK(vp_vq_drv_broken((e)->drv));                           \
		CHECK(strstr(vp_vq_drv_broken_reason((e)->drv), why) != NULL); \
		CHECK(strstr(last_log, "t0.drv") != NULL);                   \
		CHECK_EQ(vp_vq_drv_get_used((e)->drv, t_, l_, 4), -EIO);     \
		CHECK_EQ(vp_vq_drv_add((e)->drv, &(struct vp_buf){ DATA_GPA, 1 }, 1, \
				       NULL, 0, t_), -EIO);                  \
		CHECK(!vp_vq_drv_publish((e)->drv));                         \
	} while (0)

static int tok[40000];
#define TOK(i) ((void *)&tok[i])

static uint64_t bufgpa(unsigned i)
{
	return DATA_GPA + (uint64_t)i * 2048;
}

/* ---- attach checks ---- */

TEST(dev_new_bad_num_and_alignment)
{
	static const unsigned bad[] = { 0, 3, 6, 100, 255, 40000, 65535, 32767 };
	struct vp_vq_dev_config c;
	struct vp_vq_dev *dev = (void *)1;
	struct env e = { 0 };

	REQUIRE(env_mem(&e, 0) == 0);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = (struct vp_vq_dev_config){ .num = (uint16_t)bad[i], .desc = 0,
			.avail = 0x10000, .used = 0x20000 };
		CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EINVAL);
		CHECK(dev == NULL);
	}
	c = (struct vp_vq_dev_config){ .num = 256, .desc = 8, .avail = 0x10000, .used = 0x20000 };
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EINVAL);
	c.desc = 0;
	c.avail = 0x10001;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EINVAL);
	c.avail = 0x10000;
	c.used = 0x20002;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EINVAL);
	c.used = 0x20000;
	c.ring_space = (enum vp_addr_space)7;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EINVAL);
	CHECK_EQ(vp_vq_dev_new(NULL, e.mem, &c), -EINVAL);
	CHECK_EQ(vp_vq_dev_new(&dev, NULL, &c), -EINVAL);
	/* The largest ring fits: 512 KiB + 64 KiB + 256 KiB. */
	c = (struct vp_vq_dev_config){ .num = 32768, .desc = 0, .avail = 0x80000,
		.used = 0x90004 };
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), 0);
	CHECK_EQ(vp_vq_dev_num(dev), 32768);
	vp_vq_dev_free(dev);
	c.num = 1;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), 0);
	vp_vq_dev_free(dev);
	env_fini(&e);
}

TEST(dev_new_ring_not_mapped)
{
	struct vp_vq_dev_config c = { .num = 256, .desc = 0, .avail = 0x1000, .used = 0x2000 };
	struct vp_vq_dev *dev = NULL;
	struct env e = { 0 };

	REQUIRE(env_mem(&e, 0) == 0);
	c.desc = MEM_SIZE + 0x1000;			/* nowhere */
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EFAULT);
	c.desc = MEM_SIZE - 0x800;			/* straddles the end */
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EFAULT);
	c.desc = 0;
	c.avail = MEM_SIZE - 4;				/* event word outside */
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EFAULT);
	c.avail = 0x1000;
	/* Highest 4-aligned start that fits, + 4: avail_event sticks out. */
	c.used = ((MEM_SIZE - VP_VQ_USED_BYTES(256)) & ~3ull) + 4;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EFAULT);
	c.used = 0xfffffffffffff000ull;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EFAULT);
	/* uaddr unknown for this region: nothing matches in UVA space. */
	c.used = 0x2000;
	c.ring_space = VP_ADDR_UVA;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EFAULT);
	CHECK(dev == NULL);
	c.ring_space = VP_ADDR_GPA;
	c.used = (MEM_SIZE - VP_VQ_USED_BYTES(256)) & ~3ull;	/* at the end: fine */
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), 0);
	vp_vq_dev_free(dev);
	env_fini(&e);
}

TEST(dev_new_used_read_only)
{
	struct vp_vq_dev_config c = { .num = 64, .desc = HI_GPA, .avail = HI_GPA + 0x400,
		.used = 0x2000 };
	struct vp_vq_dev *dev = NULL;
	struct env e = { 0 };

	REQUIRE(env_mem(&e, HI_RO) == 0);
	/* desc and avail only need READ: a read-only region is fine. */
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), 0);
	vp_vq_dev_free(dev);
	dev = NULL;
	c.used = HI_GPA + 0x1000;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EACCES);
	CHECK(dev == NULL);
	env_fini(&e);
}

/* Ring addresses in frontend-process space, buffers in guest-physical space. */
TEST(dev_ring_in_uva_space)
{
	struct vp_mem_region_desc r = { .gpa = 0, .size = MEM_SIZE,
		.uaddr = 0x7f0000000000ull, .prot = VP_MEM_RW };
	struct vp_vq_dev_config c;
	struct vp_vq_dev *dev = NULL;
	struct vp_chain ch;
	struct iovec iov[4];
	struct env e;

	REQUIRE(env_init(&e, 64, 0, 0) == 0);
	vp_mem_free(e.mem);
	e.mem = vp_mem_new();
	REQUIRE(e.mem && vp_mem_add_local(e.mem, &r, e.buf) == 0);
	c = (struct vp_vq_dev_config){ .num = 64, .desc = r.uaddr + e.desc,
		.avail = r.uaddr + e.avail, .used = r.uaddr + e.used,
		.ring_space = VP_ADDR_UVA, .name = "t0.rx" };
	REQUIRE(vp_vq_dev_new(&dev, e.mem, &c) == 0);
	REQUIRE(vp_vq_drv_add(e.drv, &(struct vp_buf){ bufgpa(1), 64 }, 1, NULL, 0, TOK(1)) == 0);
	vp_vq_drv_publish(e.drv);
	CHECK_EQ(vp_vq_dev_pop_burst(dev, &ch, 1, iov, 4), 1);
	CHECK(iov[0].iov_base == e.buf + bufgpa(1));
	/* Used ring in a read-only region, UVA flavour. */
	vp_vq_dev_free(dev);
	vp_mem_free(e.mem);
	e.mem = vp_mem_new();
	r.prot = VP_MEM_READ;
	REQUIRE(e.mem && vp_mem_add_local(e.mem, &r, e.buf) == 0);
	dev = NULL;
	CHECK_EQ(vp_vq_dev_new(&dev, e.mem, &c), -EACCES);
	env_fini(&e);
}

/* ---- round trips ---- */

TEST(roundtrip_single)
{
	struct vp_chain ch[2];
	struct iovec iov[4];
	void *t[2];
	uint32_t l[2];
	struct env e;

	REQUIRE(env_init(&e, 256, 0, 0) == 0);
	memset(e.buf + bufgpa(3), 0xab, 64);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 256);
	CHECK_EQ(vp_vq_drv_add(e.drv, &(struct vp_buf){ bufgpa(3), 64 }, 1, NULL, 0, TOK(3)), 0);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 255);
	/* Staged, not yet visible. */
	CHECK_EQ(ravail(&e)->idx, 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 2, iov, 4), 0);
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 0);
	CHECK(vp_vq_drv_publish(e.drv));
	CHECK_EQ(ravail(&e)->idx, 1);
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 1);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 2, iov, 4), 1);
	CHECK_EQ(ch[0].n_out, 1);
	CHECK_EQ(ch[0].n_in, 0);
	CHECK_EQ(ch[0].len_out, 64);
	CHECK_EQ(ch[0].len_in, 0);
	CHECK(ch[0].iov == iov);
	CHECK(iov[0].iov_base == e.buf + bufgpa(3));
	CHECK_EQ(iov[0].iov_len, 64);
	CHECK_EQ(((unsigned char *)iov[0].iov_base)[63], 0xab);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 1);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 2, iov, 4), 0);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 2), 0);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ ch[0].head, 0 }, 1), 0);
	CHECK(vp_vq_dev_need_signal(e.dev));
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 2), 1);
	CHECK(t[0] == TOK(3));
	CHECK_EQ(l[0], 0);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 256);
	CHECK(!vp_vq_drv_broken(e.drv));
	CHECK(!vp_vq_dev_broken(e.dev));
	CHECK_EQ(vp_vq_dev_broken_reason(e.dev)[0], 0);
	env_fini(&e);
}

TEST(roundtrip_multi_descriptor)
{
	struct vp_buf out[2] = { { bufgpa(0), 12 }, { bufgpa(1), 1500 } };
	struct vp_buf in[3] = { { bufgpa(2), 10 }, { bufgpa(3), 2000 }, { bufgpa(4), 7 } };
	struct vp_chain ch;
	struct iovec iov[8];
	void *t;
	uint32_t l;
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	CHECK_EQ(vp_vq_drv_add(e.drv, out, 2, in, 3, TOK(7)), 0);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 3);
	/* The ring as a device sees it. */
	CHECK_EQ(rdesc(&e, 0)->flags, VRING_DESC_F_NEXT);
	CHECK_EQ(rdesc(&e, 1)->flags, VRING_DESC_F_NEXT);
	CHECK_EQ(rdesc(&e, 2)->flags, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
	CHECK_EQ(rdesc(&e, 4)->flags, VRING_DESC_F_WRITE);
	CHECK_EQ(rdesc(&e, 3)->len, 2000);
	vp_vq_drv_publish(e.drv);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 8), 1);
	CHECK_EQ(ch.head, 0);
	CHECK_EQ(ch.n_out, 2);
	CHECK_EQ(ch.n_in, 3);
	CHECK_EQ(ch.len_out, 1512);
	CHECK_EQ(ch.len_in, 2017);
	for (unsigned i = 0; i < 5; i++) {
		uint64_t g = i < 2 ? out[i].addr : in[i - 2].addr;
		uint32_t n = i < 2 ? out[i].len : in[i - 2].len;

		CHECK(iov[i].iov_base == e.buf + g);
		CHECK_EQ(iov[i].iov_len, n);
	}
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ 0, 2017 }, 1), 0);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, &t, &l, 1), 1);
	CHECK(t == TOK(7));
	CHECK_EQ(l, 2017);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 8);
	/* A chain as long as the ring, then one longer: -ENOSPC. */
	{
		struct vp_buf b[9];

		for (unsigned i = 0; i < 9; i++)
			b[i] = (struct vp_buf){ bufgpa(i), 100 };
		CHECK_EQ(vp_vq_drv_add(e.drv, b, 9, NULL, 0, TOK(1)), -ENOSPC);
		CHECK_EQ(vp_vq_drv_add(e.drv, b, 4, b + 4, 4, TOK(1)), 0);
		CHECK_EQ(vp_vq_drv_num_free(e.drv), 0);
		CHECK_EQ(vp_vq_drv_add(e.drv, b, 1, NULL, 0, TOK(2)), -ENOSPC);
		vp_vq_drv_publish(e.drv);
		CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 8), 1);
		CHECK_EQ(ch.n_out, 4);
		CHECK_EQ(ch.n_in, 4);
	}
	env_fini(&e);
}

TEST(roundtrip_indirect)
{
	struct vp_buf out[1] = { { bufgpa(0), 12 } };
	struct vp_buf in[3] = { { bufgpa(1), 100 }, { bufgpa(2), 200 }, { bufgpa(3), 300 } };
	struct vp_chain ch;
	struct iovec iov[8];
	void *t;
	uint32_t l;
	struct env e;

	REQUIRE(env_init(&e, 16, IND_DEV | IND_DRV, 4) == 0);
	CHECK_EQ(vp_vq_drv_add(e.drv, out, 1, in, 3, TOK(1)), 0);
	/* One ring descriptor for four buffers. */
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 15);
	CHECK_EQ(rdesc(&e, 0)->flags, VRING_DESC_F_INDIRECT);
	CHECK_EQ(rdesc(&e, 0)->len, 64);
	CHECK_EQ(rdesc(&e, 0)->addr, IND_GPA);
	vp_vq_drv_publish(e.drv);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 8), 1);
	CHECK_EQ(ch.head, 0);
	CHECK_EQ(ch.n_out, 1);
	CHECK_EQ(ch.n_in, 3);
	CHECK_EQ(ch.len_out, 12);
	CHECK_EQ(ch.len_in, 600);
	CHECK(iov[3].iov_base == e.buf + bufgpa(3));
	CHECK_EQ(iov[3].iov_len, 300);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ 0, 600 }, 1), 0);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, &t, &l, 1), 1);
	CHECK(t == TOK(1));
	CHECK_EQ(l, 600);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 16);
	/* Five buffers exceed indirect_max: a direct chain. */
	{
		struct vp_buf b[5] = { { bufgpa(0), 1 }, { bufgpa(1), 1 }, { bufgpa(2), 1 },
				       { bufgpa(3), 1 }, { bufgpa(4), 1 } };

		CHECK_EQ(vp_vq_drv_add(e.drv, b, 5, NULL, 0, TOK(2)), 0);
		CHECK_EQ(vp_vq_drv_num_free(e.drv), 11);
		vp_vq_drv_publish(e.drv);
		CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 8), 1);
		CHECK_EQ(ch.n_out, 5);
	}
	env_fini(&e);
}

/* Single, multi, indirect, mixed in one burst; completions out of order. */
TEST(roundtrip_mixed_out_of_order)
{
	struct vp_chain ch[8];
	struct iovec iov[32];
	struct vp_used u[8];
	void *t[8];
	uint32_t l[8];
	struct env e;
	int n;

	REQUIRE(env_init(&e, 32, IND_DEV | IND_DRV, 8) == 0);
	for (unsigned round = 0; round < 50; round++) {
		unsigned free0 = vp_vq_drv_num_free(e.drv);

		for (unsigned k = 0; k < 6; k++) {
			struct vp_buf b[10];
			unsigned nb = k == 0 ? 1 : k == 1 ? 3 : k == 2 ? 10 : k == 3 ? 2 : k + 1;

			for (unsigned i = 0; i < nb; i++)
				b[i] = (struct vp_buf){ bufgpa(k * 10 + i), 64 + i };
			/* First buffer readable, the rest writable. */
			REQUIRE(vp_vq_drv_add(e.drv, b, 1, b + 1, nb - 1, TOK(100 + k)) == 0);
		}
		/* 1 + 1 (indirect) + 10 (direct, > 8) + 1 + 1 + 1 */
		CHECK_EQ(vp_vq_drv_num_free(e.drv), free0 - 15);
		vp_vq_drv_publish(e.drv);
		n = vp_vq_dev_pop_burst(e.dev, ch, 8, iov, 32);
		REQUIRE(n == 6);
		CHECK_EQ(ch[2].n_out, 1);
		CHECK_EQ(ch[2].n_in, 9);
		CHECK(ch[2].iov == ch[1].iov + 3);
		CHECK_EQ(ch[5].n_in, 5);
		/* Complete in reverse. */
		for (int i = 0; i < n; i++)
			u[i] = (struct vp_used){ ch[n - 1 - i].head, ch[n - 1 - i].len_in };
		CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, (unsigned)n), 0);
		CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 8), 6);
		for (int i = 0; i < 6; i++)
			CHECK(t[i] == TOK(100 + 5 - i));
		CHECK_EQ(l[0], 65 + 66 + 67 + 68 + 69);
		CHECK_EQ(l[5], 0);
		CHECK_EQ(vp_vq_drv_num_free(e.drv), 32);
	}
	CHECK(!vp_vq_dev_broken(e.dev));
	env_fini(&e);
}

TEST(burst_limits_and_enobufs)
{
	struct vp_chain ch[16];
	struct iovec iov[16];
	struct env e;

	REQUIRE(env_init(&e, 64, 0, 0) == 0);
	for (unsigned i = 0; i < 10; i++) {
		struct vp_buf b[2] = { { bufgpa(2 * i), 10 }, { bufgpa(2 * i + 1), 20 } };

		REQUIRE(vp_vq_drv_add(e.drv, b, 1, b + 1, 1, TOK(i)) == 0);
	}
	vp_vq_drv_publish(e.drv);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 0, iov, 16), 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 16), 4);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 4);
	/* 5 iovecs: two chains fit, the third is not consumed. */
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 16, iov, 5), 2);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 6);
	CHECK(ch[1].iov == iov + 2);
	/* Not even one fits. */
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 16, iov, 1), -ENOBUFS);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 16, iov, 0), -ENOBUFS);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 6);
	CHECK(!vp_vq_dev_broken(e.dev));
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 4);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 16, iov, 16), 4);
	CHECK_EQ(ch[0].head, 12);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 16, iov, 16), 0);
	env_fini(&e);
}

/* Chains popped but not used go back and come out again, re-checked. */
TEST(unpop_gives_chains_back)
{
	struct vp_chain ch[8];
	struct iovec iov[8];
	void *t[8];
	uint32_t l[8];
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	for (unsigned i = 0; i < 6; i++)
		REQUIRE(vp_vq_drv_add(e.drv, NULL, 0, &(struct vp_buf){ bufgpa(i), 100 + i },
				      1, TOK(i)) == 0);
	vp_vq_drv_publish(e.drv);
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 0), 0);
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 1), -EINVAL);	/* nothing in flight */
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 8), 4);
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 5), -EINVAL);
	/* Use the first, give the last three back. */
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 3), 0);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 1);
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 5);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ ch[0].head, 7 }, 1), 0);
	/* In flight is now 0: nothing more may be given back. */
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 1), -EINVAL);
	/* A driver rewrote a given-back descriptor: the new one is what counts. */
	rdesc(&e, 1)->len = 50;
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 8, iov, 8), 5);
	CHECK_EQ(ch[0].head, 1);
	CHECK_EQ(ch[0].len_in, 50);
	CHECK_EQ(ch[4].head, 5);
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 5), 0);
	/* And a rewrite the walker must reject is rejected on the second walk. */
	rdesc(&e, 2)->addr = 1ull << 40;
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 8, iov, 8), -EIO);
	CHECK(strstr(vp_vq_dev_broken_reason(e.dev), "outside guest memory") != NULL);
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 1), -EIO);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 8), 1);
	CHECK(t[0] == TOK(0));
	CHECK_EQ(l[0], 7);
	env_fini(&e);
}

/* The driver's peek at used entries follows used->idx, not validated. */
TEST(drv_used_pending)
{
	struct vp_chain ch[4];
	struct iovec iov[4];
	void *t[4];
	uint32_t l[4];
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	for (unsigned i = 0; i < 3; i++)
		REQUIRE(vp_vq_drv_add(e.drv, NULL, 0, &(struct vp_buf){ bufgpa(i), 64 },
				      1, TOK(i)) == 0);
	vp_vq_drv_publish(e.drv);
	CHECK_EQ(vp_vq_drv_used_pending(e.drv), 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 4), 3);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, (struct vp_used[]){ { ch[0].head, 1 },
			{ ch[1].head, 2 } }, 2), 0);
	CHECK_EQ(vp_vq_drv_used_pending(e.drv), 2);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 1), 1);
	CHECK_EQ(vp_vq_drv_used_pending(e.drv), 1);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), 1);
	CHECK_EQ(vp_vq_drv_used_pending(e.drv), 0);
	/* A bogus index shows through; get_used() is what rejects it. */
	rused(&e)->idx = 100;
	CHECK_EQ(vp_vq_drv_used_pending(e.drv), 98);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), -EIO);
	CHECK_EQ(vp_vq_drv_used_pending(e.drv), 0);
	env_fini(&e);
}

/* Unpop across the 16-bit index wrap. */
TEST(unpop_across_index_wrap)
{
	struct vp_chain ch[4];
	struct iovec iov[4];
	struct env e;

	memset(&e, 0, sizeof(e));
	env_layout(&e, 4);
	REQUIRE(env_mem(&e, 0) == 0);
	REQUIRE(env_dev(&e, 0, 65534, 65534) == 0);
	for (unsigned i = 0; i < 4; i++) {
		raw_desc(&e, i, bufgpa(i), 64, VRING_DESC_F_WRITE, 0);
		ravail(&e)->ring[(65534 + i) & 3] = (uint16_t)i;
	}
	ravail(&e)->idx = (uint16_t)(65534 + 4);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 4), 4);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 2);
	CHECK_EQ(vp_vq_dev_unpop(e.dev, 4), 0);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 65534);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 4), 4);
	CHECK_EQ(ch[0].head, 0);
	CHECK_EQ(ch[3].head, 3);
	env_fini(&e);
}

TEST(iov_split_across_two_regions)
{
	struct vp_buf out = { HI_GPA - 100, 300 };
	struct vp_buf in = { HI_GPA - 8, 16 };
	struct vp_chain ch;
	struct iovec iov[4];
	struct env e;

	REQUIRE(env_init(&e, 16, HI_RW, 0) == 0);
	REQUIRE(vp_vq_drv_add(e.drv, &out, 1, &in, 1, TOK(0)) == 0);
	vp_vq_drv_publish(e.drv);
	/* Two buffers, four pieces: three iovecs are not enough. */
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 3), -ENOBUFS);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 4), 1);
	CHECK_EQ(ch.n_out, 2);
	CHECK_EQ(ch.n_in, 2);
	CHECK_EQ(ch.len_out, 300);
	CHECK_EQ(ch.len_in, 16);
	CHECK(iov[0].iov_base == e.buf + HI_GPA - 100);
	CHECK_EQ(iov[0].iov_len, 100);
	CHECK(iov[1].iov_base == e.hi);
	CHECK_EQ(iov[1].iov_len, 200);
	CHECK(iov[2].iov_base == e.buf + HI_GPA - 8);
	CHECK_EQ(iov[2].iov_len, 8);
	CHECK(iov[3].iov_base == e.hi);
	CHECK_EQ(iov[3].iov_len, 8);
	env_fini(&e);
}

TEST(used_ring_contents)
{
	struct vp_used u[3] = { { 5, 100 }, { 2, 0 }, { 7, 4096 } };
	struct vring_used *used;
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	used = rused(&e);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 0), 0);
	CHECK_EQ(used->idx, 0);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 3), 0);
	CHECK_EQ(used->idx, 3);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(used->ring[i].id, u[i].id);
		CHECK_EQ(used->ring[i].len, u[i].len);
	}
	/* id >= num: -EINVAL and nothing written, queue still fine. */
	u[1].id = 8;
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 3), -EINVAL);
	CHECK_EQ(used->idx, 3);
	CHECK_EQ(used->ring[3].id, 0);
	CHECK(!vp_vq_dev_broken(e.dev));
	/* Wrap inside the ring: slots 3..7 then 0..1. */
	u[1].id = 1;
	for (unsigned i = 0; i < 2; i++)
		CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 3), 0);
	CHECK_EQ(used->idx, 9);
	CHECK_EQ(used->ring[0].id, 7);
	CHECK_EQ(used->ring[0].len, 4096);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, NULL, 1), -EINVAL);
	env_fini(&e);
}

/* ---- notification decisions ---- */

struct ev_case {
	uint16_t start;		/* used/avail index before the step */
	uint16_t event;		/* the peer's event index */
	uint16_t n;		/* entries in the step */
	bool expect;
};

/* Known vring_need_event() answers, including 16-bit wrap. */
static const struct ev_case ev_cases[] = {
	{ 10, 10, 1, true },	/* exactly the awaited entry */
	{ 10, 9, 1, false },	/* awaited entry already passed */
	{ 10, 11, 1, false },	/* not there yet */
	{ 10, 11, 2, true },	/* crossed inside a burst */
	{ 10, 12, 2, false },
	{ 0, 0, 1, true },
	{ 65535, 65535, 1, true },	/* new index wraps to 0 */
	{ 65535, 0, 1, false },
	{ 65534, 0, 3, true },		/* event 0 crossed by the wrap */
	{ 65534, 1, 3, false },
	{ 65530, 2, 10, true },
	{ 65535, 65534, 2, false },
};

TEST(event_idx_need_signal)
{
	for (unsigned k = 0; k < sizeof(ev_cases) / sizeof(ev_cases[0]); k++) {
		const struct ev_case *c = &ev_cases[k];
		struct vp_used u[16];
		struct env e;

		REQUIRE(raw_init(&e, 16, 0) == 0);
		vp_vq_dev_free(e.dev);
		REQUIRE(env_dev(&e, EV, 0, (uint16_t)(c->start - 1)) == 0);
		for (unsigned i = 0; i < 16; i++)
			u[i] = (struct vp_used){ i, 0 };
		/* Nothing pushed yet: nothing to signal. */
		CHECK(!vp_vq_dev_need_signal(e.dev));
		/* The first answer after attach is always yes. */
		*used_event(&e) = (uint16_t)(c->start + 100);
		REQUIRE(vp_vq_dev_push_burst(e.dev, u, 1) == 0);
		CHECK(vp_vq_dev_need_signal(e.dev));
		CHECK_EQ(rused(&e)->idx, c->start);
		*used_event(&e) = c->event;
		REQUIRE(vp_vq_dev_push_burst(e.dev, u, c->n) == 0);
		if (vp_vq_dev_need_signal(e.dev) != c->expect) {
			tu_failed_checks++;
			fprintf(stderr, "  need_signal start %u event %u n %u: expected %d\n",
				c->start, c->event, c->n, c->expect);
		}
		/* Each answer covers everything so far. */
		CHECK(!vp_vq_dev_need_signal(e.dev));
		env_fini(&e);
	}
}

/* Bring both sides' indexes to `start` with complete round trips. */
static void cycle(struct env *e, unsigned count)
{
	struct vp_chain ch[32];
	struct iovec iov[32];
	struct vp_used u[32];
	void *t[32];
	uint32_t l[32];
	struct vp_buf b[32];
	void *tk[32];

	for (unsigned i = 0; i < 32; i++) {
		b[i] = (struct vp_buf){ bufgpa(i), 64 };
		tk[i] = TOK(i);
	}
	while (count) {
		unsigned n = count < 32 ? count : 32;

		if (n > e->num)
			n = e->num;
		int p;

		if (vp_vq_drv_add_burst(e->drv, b, n, true, tk) != (int)n)
			break;
		vp_vq_drv_publish(e->drv);
		p = vp_vq_dev_pop_burst(e->dev, ch, 32, iov, 32);
		if (p != (int)n)
			break;
		for (int i = 0; i < p; i++)
			u[i] = (struct vp_used){ ch[i].head, 64 };
		vp_vq_dev_push_burst(e->dev, u, (unsigned)p);
		vp_vq_dev_need_signal(e->dev);
		if (vp_vq_drv_get_used(e->drv, t, l, 32) != p)
			break;
		count -= n;
	}
	CHECK_EQ(count, 0);
}

TEST(event_idx_publish_kick)
{
	for (unsigned k = 0; k < sizeof(ev_cases) / sizeof(ev_cases[0]); k++) {
		const struct ev_case *c = &ev_cases[k];
		struct vp_buf b = { bufgpa(0), 64 };
		struct env e;
		bool kick;

		REQUIRE(env_init(&e, 16, EV, 0) == 0);
		cycle(&e, c->start);
		REQUIRE(ravail(&e)->idx == c->start);
		/* The device's enable_notify wrote avail_event; override it. */
		*avail_event(&e) = c->event;
		for (unsigned i = 0; i < c->n; i++)
			REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(i)) == 0);
		kick = vp_vq_drv_publish(e.drv);
		if (kick != c->expect) {
			tu_failed_checks++;
			fprintf(stderr, "  publish start %u event %u n %u: expected %d\n",
				c->start, c->event, c->n, c->expect);
		}
		/* Nothing new: no kick. */
		CHECK(!vp_vq_drv_publish(e.drv));
		env_fini(&e);
	}
}

TEST(flags_no_notify_no_interrupt)
{
	struct vp_buf b = { bufgpa(0), 64 };
	struct vp_chain ch[4];
	struct iovec iov[4];
	void *t[4];
	uint32_t l[4];
	struct env e;

	REQUIRE(env_init(&e, 16, 0, 0) == 0);
	/* Device polls: no kicks wanted. */
	vp_vq_dev_disable_notify(e.dev);
	CHECK_EQ(rused(&e)->flags, VRING_USED_F_NO_NOTIFY);
	REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(0)) == 0);
	CHECK(!vp_vq_drv_publish(e.drv));
	/* Device wants kicks again, but buffers are already there. */
	CHECK(vp_vq_dev_enable_notify(e.dev));
	CHECK_EQ(rused(&e)->flags, 0);
	REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(1)) == 0);
	CHECK(vp_vq_drv_publish(e.drv));
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 4), 2);
	CHECK(!vp_vq_dev_enable_notify(e.dev));

	/* Driver polls: no interrupts wanted. */
	vp_vq_drv_disable_cb(e.drv);
	CHECK_EQ(ravail(&e)->flags, VRING_AVAIL_F_NO_INTERRUPT);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ ch[0].head, 0 }, 1), 0);
	CHECK(!vp_vq_dev_need_signal(e.dev));
	/* Re-enabled with an entry already pending: poll, do not sleep. */
	CHECK(vp_vq_drv_enable_cb(e.drv));
	CHECK_EQ(ravail(&e)->flags, 0);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), 1);
	CHECK(!vp_vq_drv_enable_cb(e.drv));
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ ch[1].head, 0 }, 1), 0);
	CHECK(vp_vq_dev_need_signal(e.dev));
	CHECK(!vp_vq_dev_need_signal(e.dev));
	env_fini(&e);
}

TEST(event_idx_enable_notify_and_cb)
{
	struct vp_buf b = { bufgpa(0), 64 };
	struct vp_chain ch[4];
	struct iovec iov[4];
	void *t[4];
	uint32_t l[4];
	struct env e;

	REQUIRE(env_init(&e, 16, EV, 0) == 0);
	/* Empty ring: may sleep; avail_event asks for the next buffer. */
	*avail_event(&e) = 1234;
	CHECK(!vp_vq_dev_enable_notify(e.dev));
	CHECK_EQ(*avail_event(&e), 0);
	vp_vq_dev_disable_notify(e.dev);
	CHECK_EQ(rused(&e)->flags, 0);	/* flags stay 0 with EVENT_IDX */
	REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(0)) == 0);
	CHECK(vp_vq_drv_publish(e.drv));
	REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(1)) == 0);
	CHECK(!vp_vq_drv_publish(e.drv));	/* event 0 already passed */
	/* The race: buffers came before our request; we must poll. */
	CHECK(vp_vq_dev_enable_notify(e.dev));
	CHECK_EQ(*avail_event(&e), 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 4, iov, 4), 2);
	CHECK(!vp_vq_dev_enable_notify(e.dev));
	CHECK_EQ(*avail_event(&e), 2);

	/* Driver side: used_event follows what we consumed. */
	CHECK(!vp_vq_drv_enable_cb(e.drv));
	CHECK_EQ(*used_event(&e), 0);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ ch[0].head, 0 }, 1), 0);
	CHECK(vp_vq_dev_need_signal(e.dev));
	vp_vq_drv_disable_cb(e.drv);
	CHECK_EQ(*used_event(&e), 0xffff);
	CHECK_EQ(ravail(&e)->flags, 0);
	CHECK_EQ(vp_vq_dev_push_burst(e.dev, &(struct vp_used){ ch[1].head, 0 }, 1), 0);
	CHECK(!vp_vq_dev_need_signal(e.dev));
	CHECK(vp_vq_drv_enable_cb(e.drv));
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), 2);
	CHECK(!vp_vq_drv_enable_cb(e.drv));
	CHECK_EQ(*used_event(&e), 2);
	env_fini(&e);
}

/* ---- indexes: resume and wrap ---- */

TEST(last_avail_resume_and_wrap)
{
	struct vp_chain ch[8];
	struct iovec iov[8];
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	vp_vq_dev_free(e.dev);
	REQUIRE(env_dev(&e, 0, 65534, 65534) == 0);
	for (unsigned i = 0; i < 8; i++)
		raw_desc(&e, i, bufgpa(i), 100 + i, 0, 0);
	ravail(&e)->idx = 65534;
	rused(&e)->idx = 65534;
	raw_post(&e, 5);
	raw_post(&e, 6);
	raw_post(&e, 7);
	CHECK_EQ(ravail(&e)->idx, 1);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 65534);
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 3);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, ch, 8, iov, 8), 3);
	CHECK_EQ(ch[0].head, 5);
	CHECK_EQ(ch[1].head, 6);
	CHECK_EQ(ch[2].head, 7);
	CHECK_EQ(ch[2].len_out, 107);
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 1);
	{
		struct vp_used u[3] = { { 7, 0 }, { 6, 0 }, { 5, 0 } };

		CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 3), 0);
	}
	CHECK_EQ(rused(&e)->idx, 1);
	CHECK_EQ(rused(&e)->ring[65534 & 7].id, 7);
	CHECK_EQ(rused(&e)->ring[0].id, 5);
	/* Exactly num ahead of a wrapped index is fine... */
	for (unsigned i = 0; i < 8; i++)
		raw_post(&e, (uint16_t)i);
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 8);
	CHECK(!vp_vq_dev_broken(e.dev));
	env_fini(&e);
}

/* Both sides together well past 65535, with odd burst sizes. */
TEST(index_wrap_full_cycle)
{
	struct vp_chain ch[8];
	struct iovec iov[16];
	struct vp_used u[8];
	void *t[8];
	uint32_t l[8];
	unsigned sent = 0, got = 0;
	struct env e;

	REQUIRE(env_init(&e, 8, EV, 0) == 0);
	while (got < 70000) {
		unsigned burst = 1 + (sent % 7);
		int n;

		for (unsigned i = 0; i < burst; i++) {
			struct vp_buf b = { bufgpa(sent % 64), 64 };

			if (vp_vq_drv_add(e.drv, NULL, 0, &b, 1, TOK(sent % 40000)) < 0)
				break;
			sent++;
		}
		vp_vq_drv_publish(e.drv);
		n = vp_vq_dev_pop_burst(e.dev, ch, 8, iov, 16);
		REQUIRE(n >= 0);
		for (int i = 0; i < n; i++)
			u[i] = (struct vp_used){ ch[i].head, (uint32_t)(got + (unsigned)i) % 65 };
		REQUIRE(vp_vq_dev_push_burst(e.dev, u, (unsigned)n) == 0);
		vp_vq_dev_need_signal(e.dev);
		n = vp_vq_drv_get_used(e.drv, t, l, 8);
		REQUIRE(n >= 0);
		for (int i = 0; i < n; i++, got++) {
			if (t[i] != TOK(got % 40000) || l[i] != got % 65) {
				tu_failed_checks++;
				fprintf(stderr, "  entry %u: wrong token or len\n", got);
				break;
			}
		}
	}
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), (uint16_t)sent);
	CHECK(!vp_vq_dev_broken(e.dev));
	CHECK(!vp_vq_drv_broken(e.drv));
	env_fini(&e);
}

/* Indirect tables at odd addresses are legal: read safely. */
TEST(indirect_table_unaligned)
{
	static const uint64_t where[] = { DATA_GPA + 0x10000, DATA_GPA + 0x10008,
					  DATA_GPA + 0x10003 };
	struct vp_chain ch;
	struct iovec iov[4];

	for (unsigned k = 0; k < 3; k++) {
		struct vring_desc t[2];
		struct env e;

		REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
		put_desc(&t[0], bufgpa(1), 10, VRING_DESC_F_NEXT, 1);
		put_desc(&t[1], bufgpa(2), 20, VRING_DESC_F_WRITE, 0);
		memcpy(e.buf + where[k], t, sizeof(t));
		/* The device ignores WRITE on the descriptor naming a table. */
		raw_desc(&e, 3, where[k], 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
		raw_post(&e, 3);
		CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 4), 1);
		CHECK_EQ(ch.head, 3);
		CHECK_EQ(ch.n_out, 1);
		CHECK_EQ(ch.n_in, 1);
		CHECK(iov[1].iov_base == e.buf + bufgpa(2));
		CHECK_EQ(iov[1].iov_len, 20);
		env_fini(&e);
	}
}

/* Direct descriptors, then an indirect one as the last: one chain. */
TEST(direct_then_indirect)
{
	struct vp_chain ch;
	struct iovec iov[4];
	struct vring_desc t[1];
	struct env e;

	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	put_desc(&t[0], bufgpa(5), 50, VRING_DESC_F_WRITE, 0);
	memcpy(e.buf + DATA_GPA + 0x10000, t, sizeof(t));
	raw_desc(&e, 0, bufgpa(1), 10, VRING_DESC_F_NEXT, 4);
	raw_desc(&e, 4, DATA_GPA + 0x10000, 16, VRING_DESC_F_INDIRECT, 0);
	raw_post(&e, 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 4), 1);
	CHECK_EQ(ch.n_out, 1);
	CHECK_EQ(ch.n_in, 1);
	CHECK_EQ(ch.len_in, 50);
	env_fini(&e);
}

/* Zero-length descriptors give no iovec and touch nothing. */
TEST(zero_length_descriptor)
{
	struct vp_chain ch;
	struct iovec iov[4];
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	raw_desc(&e, 0, 0xdead000000000000ull, 0, VRING_DESC_F_NEXT, 1);
	raw_desc(&e, 1, bufgpa(1), 10, 0, 0);
	raw_post(&e, 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 4), 1);
	CHECK_EQ(ch.n_out, 1);
	CHECK_EQ(ch.len_out, 10);
	env_fini(&e);
}

/* ---- a malicious driver: each rejection exactly ---- */

TEST(evil_head_out_of_range)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	raw_desc(&e, 0, bufgpa(0), 10, 0, 0);
	raw_post(&e, 0);
	raw_post(&e, 8);
	EXPECT_BROKEN(&e, "head 8 >= num 8");
	/* The first chain was fine but the burst is discarded with the queue. */
	CHECK_EQ(vp_vq_dev_last_avail(e.dev), 0);
	env_fini(&e);
}

TEST(evil_next_out_of_range)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	raw_desc(&e, 2, bufgpa(0), 10, VRING_DESC_F_NEXT, 9);
	raw_post(&e, 2);
	EXPECT_BROKEN(&e, "next 9 >= 8");
	env_fini(&e);
}

TEST(evil_loop)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	raw_desc(&e, 1, bufgpa(0), 10, VRING_DESC_F_NEXT, 2);
	raw_desc(&e, 2, bufgpa(1), 10, VRING_DESC_F_NEXT, 1);
	raw_post(&e, 1);
	EXPECT_BROKEN(&e, "longer than 8 descriptors");
	CHECK(strstr(vp_vq_dev_broken_reason(e.dev), "loop") != NULL);
	env_fini(&e);
}

/* Every descriptor once, then back to the first: num + 1 visits. */
TEST(evil_chain_too_long)
{
	struct chain_ok { unsigned num; bool ok; };
	struct env e;

	/* A chain of exactly num descriptors is fine. */
	REQUIRE(raw_init(&e, 8, 0) == 0);
	for (unsigned i = 0; i < 8; i++)
		raw_desc(&e, i, bufgpa(i), 10, i < 7 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	raw_post(&e, 0);
	{
		struct vp_chain ch;
		struct iovec iov[8];

		CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 8), 1);
		CHECK_EQ(ch.n_out, 8);
		CHECK_EQ(ch.len_out, 80);
	}
	/* Then the last one points back to the start. */
	raw_desc(&e, 7, bufgpa(7), 10, VRING_DESC_F_NEXT, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "chain at head 0 longer than 8");
	env_fini(&e);
}

TEST(evil_loop_in_indirect_table)
{
	struct vring_desc t[4];
	struct env e;

	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	for (unsigned i = 0; i < 4; i++)
		put_desc(&t[i], bufgpa(i), 10, VRING_DESC_F_NEXT, (uint16_t)((i + 1) % 4));
	memcpy(e.buf + DATA_GPA + 0x10000, t, sizeof(t));
	raw_desc(&e, 0, DATA_GPA + 0x10000, sizeof(t), VRING_DESC_F_INDIRECT, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "longer than 4 descriptors in indirect table");
	env_fini(&e);
}

TEST(evil_next_out_of_indirect_table)
{
	struct vring_desc t[2];
	struct env e;

	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	put_desc(&t[0], bufgpa(0), 10, VRING_DESC_F_NEXT, 1);
	put_desc(&t[1], bufgpa(1), 10, VRING_DESC_F_NEXT, 2);	/* < num, >= table */
	memcpy(e.buf + DATA_GPA + 0x10000, t, sizeof(t));
	raw_desc(&e, 0, DATA_GPA + 0x10000, sizeof(t), VRING_DESC_F_INDIRECT, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "indirect entry 1: next 2 >= 2");
	env_fini(&e);
}

TEST(evil_indirect_not_negotiated)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	put_desc((struct vring_desc *)(void *)(e.buf + DATA_GPA), bufgpa(1), 10, 0, 0);
	raw_desc(&e, 0, DATA_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "INDIRECT not negotiated");
	env_fini(&e);
}

TEST(evil_nested_indirect)
{
	struct vring_desc t[2];
	struct env e;

	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	put_desc(&t[0], bufgpa(1), 10, VRING_DESC_F_NEXT, 1);
	put_desc(&t[1], DATA_GPA + 0x10000, 32, VRING_DESC_F_INDIRECT, 0); /* itself */
	memcpy(e.buf + DATA_GPA + 0x10000, t, sizeof(t));
	raw_desc(&e, 0, DATA_GPA + 0x10000, sizeof(t), VRING_DESC_F_INDIRECT, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "nested indirect");
	env_fini(&e);
}

TEST(evil_indirect_with_next)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	put_desc((struct vring_desc *)(void *)(e.buf + DATA_GPA), bufgpa(1), 10, 0, 0);
	raw_desc(&e, 0, DATA_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	raw_desc(&e, 1, bufgpa(2), 10, 0, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "INDIRECT together with NEXT");
	env_fini(&e);
}

TEST(evil_indirect_bad_len)
{
	static const struct { uint32_t len; const char *why; } c[] = {
		{ 24, "indirect len 24" },	/* not a multiple of 16 */
		{ 15, "indirect len 15" },
		{ 0, "indirect len 0" },
		{ 8 * 16 + 16, "indirect len 144" },	/* more than num entries */
		{ 0xfffffff0u, "indirect len 4294967280" },
	};

	for (unsigned k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		struct env e;

		REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
		raw_desc(&e, 0, DATA_GPA, c[k].len, VRING_DESC_F_INDIRECT, 0);
		raw_post(&e, 0);
		EXPECT_BROKEN(&e, c[k].why);
		env_fini(&e);
	}
}

TEST(evil_indirect_table_outside_memory)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	raw_desc(&e, 0, MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);	/* straddles */
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "indirect table 0xffff0 len 32 not in readable memory");
	env_fini(&e);
}

TEST(evil_readable_after_writable)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	raw_desc(&e, 0, bufgpa(0), 10, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	raw_desc(&e, 1, bufgpa(1), 10, 0, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "desc 1: readable after writable");
	env_fini(&e);

	/* The same across the switch into an indirect table. */
	REQUIRE(raw_init(&e, 8, IND_DEV) == 0);
	put_desc((struct vring_desc *)(void *)(e.buf + DATA_GPA), bufgpa(1), 10, 0, 0);
	raw_desc(&e, 0, bufgpa(0), 10, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	raw_desc(&e, 1, DATA_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "indirect entry 0: readable after writable");
	env_fini(&e);
}

TEST(evil_buffer_outside_memory)
{
	static const uint64_t addr[] = { MEM_SIZE, MEM_SIZE - 5, 0x123456789000ull };

	for (unsigned k = 0; k < 3; k++) {
		struct env e;

		REQUIRE(raw_init(&e, 8, 0) == 0);
		raw_desc(&e, 0, bufgpa(0), 10, VRING_DESC_F_NEXT, 1);
		raw_desc(&e, 1, addr[k], 10, VRING_DESC_F_WRITE, 0);
		raw_post(&e, 0);
		EXPECT_BROKEN(&e, "outside guest memory");
		env_fini(&e);
	}
}

TEST(evil_write_to_read_only_region)
{
	struct vp_chain ch;
	struct iovec iov[4];
	struct env e;

	REQUIRE(raw_init(&e, 8, HI_RO) == 0);
	/* Reading a read-only region is fine. */
	raw_desc(&e, 0, HI_GPA, 10, 0, 0);
	raw_post(&e, 0);
	CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 4), 1);
	CHECK(iov[0].iov_base == e.hi);
	/* Writing into it is not, even partly. */
	raw_desc(&e, 1, HI_GPA - 4, 10, VRING_DESC_F_WRITE, 0);
	raw_post(&e, 1);
	EXPECT_BROKEN(&e, "desc 1: buffer 0xffffc len 10 not writable");
	env_fini(&e);
}

TEST(evil_addr_len_wrap)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	raw_desc(&e, 0, 0xfffffffffffffff0ull, 0x20, 0, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "wraps");
	env_fini(&e);
}

TEST(evil_total_length_overflow)
{
	struct vp_mem_region_desc r = { .gpa = 0x100000000ull, .size = 0xc0000000ull,
		.prot = VP_MEM_RW };
	struct env e;

	/* Two 3 GiB buffers in a region that is never touched. */
	REQUIRE(raw_init(&e, 8, 0) == 0);
	REQUIRE(vp_mem_add_local(e.mem, &r, (void *)(uintptr_t)0x100000000ull) >= 0);
	raw_desc(&e, 0, 0x100000000ull, 0xc0000000u, VRING_DESC_F_NEXT, 1);
	raw_desc(&e, 1, 0x100000000ull, 0xc0000000u, VRING_DESC_F_WRITE, 0);
	raw_post(&e, 0);
	EXPECT_BROKEN(&e, "overflows 32 bits");
	env_fini(&e);
}

TEST(evil_avail_idx_jump)
{
	struct env e;

	REQUIRE(raw_init(&e, 8, 0) == 0);
	vp_vq_dev_free(e.dev);
	REQUIRE(env_dev(&e, 0, 65530, 65530) == 0);
	ravail(&e)->idx = (uint16_t)(65530 + 9);
	EXPECT_BROKEN(&e, "avail idx 3 is 9 ahead of last_avail 65530");
	env_fini(&e);

	/* Going backwards is a jump of almost 65536. */
	REQUIRE(raw_init(&e, 8, 0) == 0);
	ravail(&e)->idx = 0xffff;
	CHECK_EQ(vp_vq_dev_avail_pending(e.dev), 0);
	CHECK(vp_vq_dev_broken(e.dev));
	CHECK(strstr(vp_vq_dev_broken_reason(e.dev), "avail idx 65535") != NULL);
	env_fini(&e);
}

/* ---- a malicious device, seen from our driver ring ---- */

static void post_two(struct env *e)
{
	struct vp_buf in = { bufgpa(0), 100 };

	REQUIRE(vp_vq_drv_add(e->drv, NULL, 0, &in, 1, TOK(1)) == 0);
	REQUIRE(vp_vq_drv_add(e->drv, NULL, 0, &in, 1, TOK(2)) == 0);
	vp_vq_drv_publish(e->drv);
}

static void raw_used(struct env *e, uint32_t id, uint32_t len)
{
	struct vring_used *u = rused(e);

	u->ring[u->idx & (e->num - 1)].id = id;
	u->ring[u->idx & (e->num - 1)].len = len;
	u->idx++;
}

TEST(evil_used_id_out_of_range)
{
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	post_two(&e);
	raw_used(&e, 8, 0);
	EXPECT_DRV_BROKEN(&e, "id 8 >= num 8");
	env_fini(&e);
}

TEST(evil_used_id_returned_twice)
{
	void *t[4];
	uint32_t l[4];
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	post_two(&e);
	raw_used(&e, 0, 10);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), 1);
	CHECK(t[0] == TOK(1));
	raw_used(&e, 0, 10);
	EXPECT_DRV_BROKEN(&e, "id 0 not outstanding");
	env_fini(&e);
}

TEST(evil_used_len_too_big)
{
	void *t[4];
	uint32_t l[4];
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	post_two(&e);
	/* A good entry, then a bad one: the good one is still handed back. */
	raw_used(&e, 1, 100);
	raw_used(&e, 0, 101);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), 1);
	CHECK(t[0] == TOK(2));
	CHECK_EQ(l[0], 100);
	EXPECT_DRV_BROKEN(&e, "id 0 len 101 > 100");
	env_fini(&e);

	/* A readable-only chain has no room for any length. */
	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	REQUIRE(vp_vq_drv_add(e.drv, &(struct vp_buf){ bufgpa(0), 100 }, 1, NULL, 0, TOK(1)) == 0);
	vp_vq_drv_publish(e.drv);
	raw_used(&e, 0, 1);
	EXPECT_DRV_BROKEN(&e, "len 1 > 0");
	env_fini(&e);
}

TEST(evil_used_idx_jump)
{
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	post_two(&e);
	rused(&e)->idx = 9;
	EXPECT_DRV_BROKEN(&e, "used idx 9 is 9 ahead");
	env_fini(&e);
}

/* The device scribbling on descriptors does not change our bookkeeping. */
TEST(drv_ignores_ring_read_back)
{
	void *t[4];
	uint32_t l[4];
	struct vp_buf b[3] = { { bufgpa(0), 10 }, { bufgpa(1), 10 }, { bufgpa(2), 10 } };
	struct env e;

	REQUIRE(env_init(&e, 8, 0, 0) == 0);
	REQUIRE(vp_vq_drv_add(e.drv, b, 1, b + 1, 2, TOK(1)) == 0);
	vp_vq_drv_publish(e.drv);
	{
		struct vp_chain ch;
		struct iovec iov[4];

		CHECK_EQ(vp_vq_dev_pop_burst(e.dev, &ch, 1, iov, 4), 1);
	}
	for (unsigned i = 0; i < 8; i++)
		raw_desc(&e, i, 0, 0xffffffff, VRING_DESC_F_NEXT, 0);
	raw_used(&e, 0, 20);
	CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 4), 1);
	CHECK_EQ(vp_vq_drv_num_free(e.drv), 8);
	/* All eight descriptors come back usable. */
	for (unsigned i = 0; i < 8; i++)
		CHECK_EQ(vp_vq_drv_add(e.drv, b, 1, NULL, 0, TOK(i)), 0);
	CHECK_EQ(vp_vq_drv_add(e.drv, b, 1, NULL, 0, TOK(9)), -ENOSPC);
	vp_vq_drv_publish(e.drv);
	{
		struct vp_chain ch[8];
		struct iovec iov[8];
		unsigned seen = 0;

		REQUIRE(vp_vq_dev_pop_burst(e.dev, ch, 8, iov, 8) == 8);
		for (unsigned i = 0; i < 8; i++)
			seen |= 1u << (ch[i].head & 31);
		CHECK_EQ(seen, 0xff);
	}
	env_fini(&e);
}

/* ---- driver API checks ---- */

TEST(drv_new_and_add_errors)
{
	unsigned char *m = aligned_alloc(64, 65536);
	struct vp_vq_drv_config c = { .num = 16, .desc = m, .avail = m + 4096,
		.used = m + 8192 };
	struct vp_vq_drv *d = NULL;
	void *tk[4] = { TOK(0), TOK(1), NULL, TOK(3) };
	struct vp_buf b[4] = { { 0, 1 }, { 0, 1 }, { 0, 1 }, { 0, 1 } };

	REQUIRE(m);
	c.num = 0;
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.num = 12;
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.num = 16;
	c.desc = m + 8;
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.desc = m;
	c.used = m + 8194;
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.used = NULL;
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.used = m + 8192;
	c.indirect_max = 4;	/* no area */
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.indirect_area = m + 16388;	/* misaligned */
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.indirect_area = m + 16384;
	c.indirect_gpa = UINT64_MAX - 16 * 4 * 16 + 2;	/* last table wraps */
	CHECK_EQ(vp_vq_drv_new(&d, &c), -EINVAL);
	c.indirect_gpa = 0x4000;
	REQUIRE(vp_vq_drv_new(&d, &c) == 0);

	CHECK_EQ(vp_vq_drv_add(d, b, 0, NULL, 0, TOK(0)), -EINVAL);
	CHECK_EQ(vp_vq_drv_add(d, b, 1, NULL, 0, NULL), -EINVAL);
	CHECK_EQ(vp_vq_drv_add(d, NULL, 1, NULL, 0, TOK(0)), -EINVAL);
	CHECK_EQ(vp_vq_drv_add(d, &(struct vp_buf){ 0, 0x80000000u }, 1,
			       &(struct vp_buf){ 0, 0x80000000u }, 1, TOK(0)), -EINVAL);
	CHECK_EQ(vp_vq_drv_add_burst(d, b, 4, false, tk), -EINVAL);
	CHECK_EQ(vp_vq_drv_num_free(d), 16);
	tk[2] = TOK(2);
	CHECK_EQ(vp_vq_drv_add_burst(d, b, 4, false, tk), 4);
	CHECK_EQ(vp_vq_drv_add_burst(d, b, 4, true, tk), 4);
	CHECK_EQ(vp_vq_drv_add_burst(d, b, 4, true, tk), 4);
	CHECK_EQ(vp_vq_drv_add_burst(d, b, 4, true, tk), 4);
	CHECK_EQ(vp_vq_drv_add_burst(d, b, 4, true, tk), 0);
	CHECK_EQ(vp_vq_drv_num_free(d), 0);
	CHECK(vp_vq_drv_publish(d));
	CHECK_EQ(((struct vring_avail *)(void *)(m + 4096))->idx, 16);
	CHECK_EQ(((struct vring_desc *)(void *)m)[5].flags, VRING_DESC_F_WRITE);
	CHECK(!vp_vq_drv_broken(d));
	CHECK_EQ(vp_vq_drv_broken_reason(d)[0], 0);
	vp_vq_drv_free(d);
	free(m);
}

/* ---- throughput, for the record (not a pass/fail criterion) ---- */

TEST(throughput_single_thread)
{
	enum { B = 32, ROUNDS = 200000 };
	struct vp_chain ch[B];
	struct iovec iov[B];
	struct vp_used u[B];
	struct vp_buf b[B];
	void *tk[B], *t[B];
	uint32_t l[B];
	struct timespec t0, t1;
	uint64_t chains = 0, bytes = 0;
	struct env e;

	REQUIRE(env_init(&e, 256, EV, 0) == 0);
	for (unsigned i = 0; i < B; i++) {
		b[i] = (struct vp_buf){ bufgpa(i), 64 };
		tk[i] = TOK(i);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned r = 0; r < ROUNDS; r++) {
		int n;

		n = vp_vq_drv_add_burst(e.drv, b, B, false, tk);
		vp_vq_drv_publish(e.drv);
		n = vp_vq_dev_pop_burst(e.dev, ch, B, iov, B);
		for (int i = 0; i < n; i++) {
			bytes += iov[i].iov_len;
			u[i] = (struct vp_used){ ch[i].head, 0 };
		}
		vp_vq_dev_push_burst(e.dev, u, (unsigned)n);
		vp_vq_dev_need_signal(e.dev);
		n = vp_vq_drv_get_used(e.drv, t, l, B);
		if (n != B)
			break;
		chains += (unsigned)n;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_EQ(chains, (uint64_t)B * ROUNDS);
	CHECK_EQ(bytes, chains * 64);
	{
		double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

		printf("# single thread, 64 B one-descriptor chains, bursts of %d:"
		       " %.1f M chains/s (add+publish+pop+push+get_used, %.1f ns/chain)\n",
		       B, (double)chains / s / 1e6, s * 1e9 / (double)chains);
	}
	env_fini(&e);
}

/*
 * Moderation: the device asks for a kick only `ahead` buffers on, the
 * driver asks for a call only `ahead` used entries on (at most what it has
 * outstanding), across the 16-bit index wrap; the race check returns what
 * is already there.
 */
TEST(event_idx_moderated_marks)
{
	static const uint16_t starts[] = { 16, 65530 };

	for (unsigned k = 0; k < 2; k++) {
		struct vp_buf b = { bufgpa(0), 64 };
		struct vp_chain ch[16];
		struct iovec iov[16];
		struct vp_used u[16];
		void *t[16];
		uint32_t l[16];
		unsigned mark = 0;
		struct env e;
		int p;

		REQUIRE(env_init(&e, 16, EV, 0) == 0);
		cycle(&e, starts[k]);
		/* Device: kick after 4 more; 3 published are not enough. */
		CHECK_EQ(vp_vq_dev_enable_notify_ahead(e.dev, 4), 0);
		CHECK_EQ(*avail_event(&e), (uint16_t)(starts[k] + 3));
		for (unsigned i = 0; i < 3; i++) {
			REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(i)) == 0);
			CHECK(!vp_vq_drv_publish(e.drv));
		}
		/* The race check sees the 3: fewer than asked, so bound the sleep. */
		CHECK_EQ(vp_vq_dev_enable_notify_ahead(e.dev, 4), 3);
		REQUIRE(vp_vq_drv_add(e.drv, &b, 1, NULL, 0, TOK(3)) == 0);
		CHECK(vp_vq_drv_publish(e.drv));  /* the 4th: the mark */
		/* ahead 0 is 1; more than the ring is the ring. */
		CHECK_EQ(vp_vq_dev_enable_notify_ahead(e.dev, 0), 4);
		CHECK_EQ(*avail_event(&e), (uint16_t)(starts[k]));
		CHECK_EQ(vp_vq_dev_enable_notify_ahead(e.dev, 1000), 4);
		CHECK_EQ(*avail_event(&e), (uint16_t)(starts[k] + 15));
		p = vp_vq_dev_pop_burst(e.dev, ch, 16, iov, 16);
		REQUIRE(p == 4);

		/* Driver: 4 outstanding, asks for 8: capped at 4. */
		CHECK_EQ(vp_vq_drv_enable_cb_ahead(e.drv, 8, &mark), 0);
		CHECK_EQ(mark, 4);
		CHECK_EQ(*used_event(&e), (uint16_t)(starts[k] + 3));
		for (int i = 0; i < 3; i++) {
			u[0] = (struct vp_used){ ch[i].head, 0 };
			CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 1), 0);
			CHECK(!vp_vq_dev_need_signal(e.dev));
		}
		CHECK_EQ(vp_vq_drv_enable_cb_ahead(e.drv, 4, &mark), 3);
		u[0] = (struct vp_used){ ch[3].head, 0 };
		CHECK_EQ(vp_vq_dev_push_burst(e.dev, u, 1), 0);
		CHECK(vp_vq_dev_need_signal(e.dev));  /* the 4th: the mark */
		CHECK_EQ(vp_vq_drv_get_used(e.drv, t, l, 16), 4);
		/* Nothing outstanding: the plain request (call on the next). */
		CHECK_EQ(vp_vq_drv_enable_cb_ahead(e.drv, 8, &mark), 0);
		CHECK_EQ(mark, 1);
		CHECK_EQ(*used_event(&e), (uint16_t)(starts[k] + 4));
		env_fini(&e);
	}
}

/* The adaptive mark (lib/coalesce.h): idle asks for 1; busy asks for the
 * measured rate times half the bound, between 1 and frames; a partial batch
 * is held at most usecs; configurations that could strand a batch refused. */
TEST(coalesce_policy)
{
	struct vp_net_coalesce c = { 64, 200 }, off = { 0, 0 };
	struct coal_state s = { 0 };
	uint16_t prog = 65500;
	int64_t t = 1000000000;

	CHECK_EQ(coal_check(&c), 0);
	CHECK_EQ(coal_check(&off), 0);
	CHECK_EQ(coal_check(&(struct vp_net_coalesce){ 2, 0 }), -EINVAL);
	CHECK_EQ(coal_check(&(struct vp_net_coalesce){ VP_NET_COALESCE_MAX_FRAMES + 1, 1 }),
		 -EINVAL);
	CHECK_EQ(coal_check(&(struct vp_net_coalesce){ 8, VP_NET_COALESCE_MAX_USECS + 1 }),
		 -EINVAL);
	CHECK_EQ(coal_ahead(&off, &s, 5, t), 1);
	s = (struct coal_state){ .mark = prog, .t_ns = t };
	CHECK_EQ(coal_ahead(&c, &s, prog, t + 1000), 1);  /* idle */
	/* 100 buffers in 1 ms, across the wrap: 0.1 per us x 100 us = 10. */
	t += 1000;
	prog = (uint16_t)(prog + 100);
	CHECK_EQ(coal_ahead(&c, &s, prog, t + 1000000), 10);
	t += 1000000;
	/* 2 Mpps: 400 in the half bound, capped at frames. */
	prog = (uint16_t)(prog + 2000);
	CHECK_EQ(coal_ahead(&c, &s, prog, t + 1000000), 64);
	t += 1000000;
	/* A ping-pong: one frame per 40 us round trip (2.5 in the half
	 * bound): below the least mark, no moderation. */
	prog++;
	CHECK_EQ(coal_ahead(&c, &s, prog, t + 40000), 1);
	t += 40000;
	/* 4 in the half bound: the least mark. */
	prog = (uint16_t)(prog + 4);
	CHECK_EQ(coal_ahead(&c, &s, prog, t + 100000), 4);
	t += 100000;
	/* No time passed (a coarse clock): the cap, the bound still holds. */
	prog++;
	CHECK_EQ(coal_ahead(&c, &s, prog, t), 64);
	CHECK_EQ(coal_hold_ns(&c, 64, 10), 200000);
	CHECK_EQ(coal_hold_ns(&c, 64, 64), -1);
	CHECK_EQ(coal_hold_ns(&c, 1, 0), -1);
}
