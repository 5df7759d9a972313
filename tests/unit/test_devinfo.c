/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The info window (docs/device.md): a QEMU-like device published by the host
 * side and snapshotted by the guest side, the frontend's ring walked through
 * the "BAR2" mapping; each validation rule broken once in the raw window with
 * its exact reason; torn reads put exactly where a racing daemon would land;
 * the driver page's checks; and a writer process racing a reader process.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/devinfo.h"
#include "vhostpci/log.h"
#include "vhostpci/server.h"
#include "vhostpci/vring.h"
#include "../../lib/devinfo_internal.h"

#define TESTUTIL_MAIN
#include "testutil.h"

/*
 * QEMU's pc machine with 4 GiB of RAM splits it at 3 GiB: gpa [0, 3G) is fd
 * [0, 3G), gpa [4G, 5G) is fd [3G, 4G). The same shape, in MiB.
 */
#define MIB        (1ull << 20)
#define RAM_SIZE   (4 * MIB)
#define LOW_SIZE   (3 * MIB)
#define HIGH_GPA   0x100000000ull
#define HIGH_SIZE  (RAM_SIZE - LOW_SIZE)
#define QNUM       256u

static char why[256];

__attribute__((constructor)) static void quiet_logs(void)
{
	vp_log_set_level(VP_LOG_ERR);
}

/* An 8 KiB window in a memfd, so another process can map it elsewhere. */
static void *new_window(int *fdp)
{
	int fd = tu_memfd("devinfo-window", VP_INFO_WINDOW_SIZE, 1);
	void *w;

	if (fd < 0)
		return NULL;
	w = mmap(NULL, VP_INFO_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (w == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	if (fdp)
		*fdp = fd;
	else
		close(fd);
	return w;
}

static void free_window(void *w)
{
	munmap(w, VP_INFO_WINDOW_SIZE);
}

/* The arrays make_device()'s view points at (one device at a time). */
static struct vp_dev_region dev_regions[2];
static struct vp_dev_ring dev_rings[2];

/* The daemon's view of a frontend: two regions of one memfd (two fds for it,
 * as vhost-user sends one per region), receiveq low, transmitq high. */
static void make_device(struct vp_device *dev, int fd0, int fd1)
{
	static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
					  1, 2, 3, 4, 5, 6, 7, 8 };

	memset(dev, 0, sizeof(*dev));
	dev->id = 42;
	dev->type = VIRTIO_ID_NET;
	memcpy(dev->uuid, uuid, sizeof(uuid));
	dev->state = VP_DEV_READY;
	/* As QEMU negotiates them: vhost-user's PROTOCOL_FEATURES too. */
	dev->driver_features = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |
			       (1ull << VP_VU_F_PROTOCOL_FEATURES);
	dev->regions = dev_regions;
	dev->rings = dev_rings;
	dev->nregions = 2;
	dev_regions[0] = (struct vp_dev_region){ .gpa = 0, .size = LOW_SIZE, .fd_offset = 0,
						  .prot = VP_MEM_RW, .fd = fd0 };
	dev_regions[1] = (struct vp_dev_region){ .gpa = HIGH_GPA, .size = HIGH_SIZE,
						  .fd_offset = LOW_SIZE, .prot = VP_MEM_RW,
						  .fd = fd1 };
	dev->nrings = 2;
	dev_rings[0] = (struct vp_dev_ring){ .num = QNUM, .last_avail_idx = 7,
		.desc = 0x100000, .avail = 0x101000, .used = 0x102000,
		.addr_set = true, .enabled = true, .started = true, .kick_fd = -1, .call_fd = -1 };
	dev_rings[1] = (struct vp_dev_ring){ .num = QNUM,
		.desc = HIGH_GPA + 0x10000, .avail = HIGH_GPA + 0x11000, .used = HIGH_GPA + 0x12000,
		.addr_set = true, .enabled = true, .started = true, .kick_fd = -1, .call_fd = -1 };
	dev->config_len = 10;
	for (unsigned i = 0; i < dev->config_len; i++)
		dev->config[i] = (uint8_t)(0xa0 + i);
}

/* A good device info, as the daemon would publish it. */
static int good_info(struct vp_devinfo *info)
{
	struct vp_device dev;
	int fd = tu_memfd("devinfo-ram", RAM_SIZE, 1), err;

	if (fd < 0)
		return -1;
	make_device(&dev, fd, fd);
	err = vp_devinfo_from_device(&dev, info, why, sizeof(why));
	close(fd);
	info->generation = 2;
	info->memory_peer = 3;
	info->daemon_peer = 0;
	return err;
}

/* Field by field: the structs have padding, which no copy promises to keep. */
static bool same_info(const struct vp_devinfo *a, const struct vp_devinfo *b)
{
	bool same = a->generation == b->generation && a->status == b->status &&
		    a->device_id == b->device_id && !memcmp(a->uuid, b->uuid, 16) &&
		    a->device_type == b->device_type && a->num_queues == b->num_queues &&
		    a->memory_peer == b->memory_peer && a->daemon_peer == b->daemon_peer &&
		    a->nregions == b->nregions && a->features == b->features &&
		    a->bar2_size == b->bar2_size && a->config_len == b->config_len &&
		    !memcmp(a->config, b->config, a->config_len) &&
		    a->reason_gen == b->reason_gen && !strcmp(a->reason, b->reason);

	for (unsigned i = 0; same && i < a->nregions; i++)
		same = !memcmp(&a->regions[i], &b->regions[i], sizeof(a->regions[i]));
	for (unsigned q = 0; same && q < a->num_queues; q++) {
		const struct vp_devinfo_queue *x = &a->queues[q], *y = &b->queues[q];

		same = x->num == y->num && x->flags == y->flags &&
		       x->last_avail_idx == y->last_avail_idx && x->kick_vector == y->kick_vector &&
		       x->call_doorbell == y->call_doorbell && x->desc == y->desc &&
		       x->avail == y->avail && x->used == y->used;
	}
	return same;
}

static bool same_driver(const struct vp_devinfo_driver *a, const struct vp_devinfo_driver *b)
{
	return a->driver_gen == b->driver_gen && a->driver_status == b->driver_status &&
	       a->features_accepted == b->features_accepted && a->acked_gen == b->acked_gen &&
	       !memcmp(a->stopped, b->stopped, sizeof(a->stopped)) &&
	       !strcmp(a->reason, b->reason);
}

static uint64_t rd_le(const void *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)((const uint8_t *)p)[i] << (8 * i);
	return v;
}

TEST(round_trip_qemu_like_device)
{
	int fd = tu_memfd("devinfo-ram", RAM_SIZE, 1), fd1 = dup(fd), fds = tu_count_fds();
	struct vp_device dev;
	struct vp_devinfo pub, got;
	uint8_t *w = new_window(NULL);

	REQUIRE(fd >= 0 && fd1 >= 0 && w);
	make_device(&dev, fd, fd1);
	CHECK_EQ(vp_devinfo_from_device(&dev, &pub, why, sizeof(why)), 0);
	CHECK_EQ(pub.generation, 0);
	pub.generation = vp_devinfo_next_gen(0);
	pub.memory_peer = 5;
	pub.daemon_peer = 1;
	snprintf(pub.reason, sizeof(pub.reason), "hello");
	pub.reason_gen = 2;
	CHECK_EQ(vp_devinfo_publish(w, &pub), 0);
	CHECK_EQ(tu_count_fds(), fds);

	/* The bytes on the wire, read as docs/device.md gives them. */
	CHECK(memcmp(w, "VHOSTPCI", 8) == 0);
	CHECK_EQ(rd_le(w + 0x008, 4), 1);
	CHECK_EQ(rd_le(w + 0x00c, 4), 4096);
	CHECK_EQ(rd_le(w + 0x010, 4), 2);
	CHECK_EQ(rd_le(w + 0x014, 4), VP_INFO_ST_PRESENT | VP_INFO_ST_READY);
	CHECK_EQ(rd_le(w + 0x018, 8), 42);
	CHECK_EQ(w[0x020], 0x12);
	CHECK_EQ(rd_le(w + 0x030, 4), VIRTIO_ID_NET);
	CHECK_EQ(rd_le(w + 0x034, 2), 2);
	CHECK_EQ(rd_le(w + 0x036, 2), 5);
	CHECK_EQ(rd_le(w + 0x038, 2), 1);
	CHECK_EQ(rd_le(w + 0x03a, 2), 2);
	/* virtio features only: a guest driver refuses a device with bit 30 */
	CHECK_EQ(rd_le(w + 0x040, 8), (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MRG_RXBUF));
	CHECK_EQ(rd_le(w + 0x048, 8), RAM_SIZE);
	CHECK_EQ(rd_le(w + 0x050, 4), 10);
	CHECK_EQ(w[0x058], 0xa0);
	CHECK_EQ(rd_le(w + 0x100 + 32 + 0, 8), HIGH_GPA);
	CHECK_EQ(rd_le(w + 0x100 + 32 + 8, 8), HIGH_SIZE);
	CHECK_EQ(rd_le(w + 0x100 + 32 + 16, 8), LOW_SIZE);
	CHECK_EQ(rd_le(w + 0x200 + 0, 2), QNUM);
	CHECK_EQ(rd_le(w + 0x200 + 2, 2), VP_INFO_Q_ENABLED | VP_INFO_Q_STARTED);
	CHECK_EQ(rd_le(w + 0x200 + 4, 2), 7);
	CHECK_EQ(rd_le(w + 0x200 + 48 + 8, 8), HIGH_GPA + 0x10000);
	CHECK_EQ(rd_le(w + 0x200 + 48 + 32, 2), 2);	/* kick vector 1 + q */
	CHECK_EQ(rd_le(w + 0x200 + 48 + 34, 2), 1);	/* call doorbell q */
	CHECK_EQ(rd_le(w + 0x380, 4), 2);
	CHECK_STR((const char *)w + 0x384, "hello");

	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), 0);
	CHECK(same_info(&got, &pub));

	/* Guest side: the frontend's rings through a "BAR2" mapping of the fd at
	 * another address than the frontend's own mapping. */
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	uint8_t *bar2 = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct vp_mem *mem = vp_mem_new();
	struct vp_dev_region regs[VP_INFO_MAX_REGIONS];
	struct vp_vq_drv *drv = NULL;
	struct vp_vq_dev *vq = NULL;

	REQUIRE(ram != MAP_FAILED && bar2 != MAP_FAILED && mem);
	CHECK_EQ(vp_devinfo_regions(&got, VP_MEM_RW, regs, 1), -ENOSPC);
	CHECK_EQ(vp_devinfo_regions(&got, VP_MEM_RW, regs, VP_INFO_MAX_REGIONS), 2);
	CHECK_EQ(regs[1].gpa, HIGH_GPA);
	CHECK_EQ(regs[1].fd_offset, LOW_SIZE);
	CHECK_EQ(regs[1].fd, -1);
	CHECK_EQ(vp_devinfo_mem_add(mem, &got, VP_MEM_RW, bar2, RAM_SIZE / 2), -EINVAL);
	CHECK_EQ(vp_mem_count(mem), 0);
	CHECK_EQ(vp_devinfo_mem_add(mem, &got, VP_MEM_RW, bar2, RAM_SIZE), 0);
	CHECK_EQ(vp_mem_count(mem), 2);
	CHECK(vp_mem_gpa_ptr(mem, HIGH_GPA + 0x10, 1, VP_MEM_READ) == bar2 + LOW_SIZE + 0x10);
	CHECK(vp_mem_gpa_ptr(mem, LOW_SIZE, 1, VP_MEM_READ) == NULL);	/* the hole */

	/* The frontend's driver posts a buffer above 4 GiB on its transmitq... */
	const struct vp_devinfo_queue *q = &got.queues[1];
	uint64_t fe_off = LOW_SIZE - HIGH_GPA;	/* frontend gpa -> fd offset, high region */
	struct vp_vq_drv_config dc = { .num = q->num, .desc = ram + q->desc + fe_off,
		.avail = ram + q->avail + fe_off, .used = ram + q->used + fe_off, .name = "fe" };
	struct vp_buf b = { .addr = HIGH_GPA + 0x20000, .len = 6 };
	int token;

	memcpy(ram + b.addr + fe_off, "packet", 6);
	REQUIRE(vp_vq_drv_new(&drv, &dc) == 0);
	CHECK_EQ(vp_vq_drv_add(drv, &b, 1, NULL, 0, &token), 0);
	vp_vq_drv_publish(drv);

	/* ...and the backend pops it with lib/vring.c, from the snapshot alone. */
	struct vp_vq_dev_config vc = { .num = q->num, .desc = q->desc, .avail = q->avail,
		.used = q->used, .ring_space = VP_ADDR_GPA, .last_avail_idx = q->last_avail_idx,
		.last_used_idx = q->last_avail_idx, .name = "be" };
	struct vp_chain ch;
	struct iovec iov[4];

	REQUIRE(vp_vq_dev_new(&vq, mem, &vc) == 0);
	CHECK_EQ(vp_vq_dev_pop_burst(vq, &ch, 1, iov, 4), 1);
	CHECK_EQ(ch.n_out, 1);
	CHECK(iov[0].iov_base == bar2 + LOW_SIZE + 0x20000);
	CHECK(memcmp(iov[0].iov_base, "packet", 6) == 0);

	vp_vq_dev_free(vq);
	vp_vq_drv_free(drv);
	vp_mem_free(mem);
	munmap(ram, RAM_SIZE);
	munmap(bar2, RAM_SIZE);
	free_window(w);
	close(fd);
	close(fd1);
}

TEST(from_device_refusals)
{
	int fd = tu_memfd("devinfo-ram", RAM_SIZE, 1), other = tu_memfd("other", RAM_SIZE, 1);
	struct vp_device dev;
	struct vp_devinfo out;

	REQUIRE(fd >= 0 && other >= 0);
	make_device(&dev, fd, other);
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "region 1 is in another file than region 0: BAR2 maps one");

	make_device(&dev, fd, -1);
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "region 1: no usable fd");

	make_device(&dev, fd, fd);
	dev.nrings = 9;
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "9 rings, the window holds 8");

	make_device(&dev, fd, fd);
	dev.nregions = 9;
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "9 memory regions, the window holds 8");

	make_device(&dev, fd, fd);
	dev.nregions = 0;
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "no memory regions");

	/* A RAM fd smaller than the ranges the regions claim, and one whose size
	 * QEMU would assert on as a BAR: refused here, not published for the
	 * guest to refuse. */
	int fd2 = tu_memfd("small", 2 * MIB, 1), fd3 = tu_memfd("odd", 3 * MIB, 1);

	REQUIRE(fd2 >= 0 && fd3 >= 0);
	make_device(&dev, fd2, fd2);
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "region 0: BAR2 0x0+0x300000 outside bar2_size 0x200000");
	make_device(&dev, fd3, fd3);
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "bar2_size 0x300000 not a power of two");
	close(fd2);
	close(fd3);

	/* A ring that is not set is absent; a stopped device is not READY. */
	make_device(&dev, fd, fd);
	dev_rings[1].addr_set = false;
	dev.state = VP_DEV_STOPPED;
	CHECK_EQ(vp_devinfo_from_device(&dev, &out, why, sizeof(why)), 0);
	CHECK_EQ(out.queues[1].num, 0);
	CHECK_EQ(out.num_queues, 2);
	CHECK_EQ(out.status, VP_INFO_ST_PRESENT);
	close(fd);
	close(other);
}

TEST(publish_refuses_what_the_guest_would)
{
	struct vp_devinfo info, info2;
	uint8_t *w = new_window(NULL);

	REQUIRE(w && good_info(&info) == 0);
	CHECK_EQ(vp_devinfo_publish(w + 4, &info), -EINVAL);
	CHECK_EQ(vp_devinfo_publish(NULL, &info), -EINVAL);
	CHECK_EQ(vp_devinfo_snapshot(w + 4, &info2, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "no window, or not 8-byte aligned");
	info.generation = 3;
	CHECK_EQ(vp_devinfo_publish(w, &info), -EINVAL);
	info.generation = 2;
	info.queues[0].num = 3;
	CHECK_EQ(vp_devinfo_publish(w, &info), -EINVAL);
	/* Nothing was written. */
	for (unsigned i = 0; i < VP_INFO_WINDOW_SIZE; i++)
		if (w[i]) {
			CHECK(!"window written");
			break;
		}
	CHECK_EQ(vp_devinfo_next_gen(2), 4);
	CHECK_EQ(vp_devinfo_next_gen(0xfffffffe), 2);
	CHECK_EQ(vp_devinfo_next_gen(5), 6);
	free_window(w);
}

/* A page whose every byte a guest scribbled over is rewritten whole. */
TEST(publish_rewrites_scribbles)
{
	struct vp_devinfo info, got;
	uint8_t *w = new_window(NULL);

	REQUIRE(w && good_info(&info) == 0);
	memset(w, 0xff, VP_INFO_WINDOW_SIZE);
	CHECK_EQ(vp_devinfo_publish(w, &info), 0);
	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), 0);
	CHECK_EQ(w[0x3c], 0);			/* reserved */
	CHECK_EQ(w[0x200 + 2 * 48], 0);		/* queue 2: absent, zero */
	CHECK_EQ(w[0xfff], 0);
	CHECK_EQ(w[0x1000], 0xff);		/* the driver page is the driver's */
	free_window(w);
}

/* ---- every rule of docs/device.md 4.4, broken in the raw window --------- */

typedef void (*mutate_fn)(struct vp_info_daemon_page *p);

#define MUT(name, body) static void name(struct vp_info_daemon_page *p) { body; }
#define R1 p->regions[1]
#define Q0 p->queues[0]
#define Q1 p->queues[1]
MUT(m_magic, p->magic = htole64(VP_INFO_MAGIC + 1))
MUT(m_abi, p->abi_version = htole32(2))
MUT(m_page, p->page_size = htole32(8192))
MUT(m_gen0, p->generation = 0)
MUT(m_status, p->status = htole32(0x10))
MUT(m_nq, p->num_queues = htole16(9))
MUT(m_nr, p->nregions = htole16(9))
MUT(m_cfg, p->config_len = htole32(65))
MUT(m_reason, memset(p->reason, 'A', sizeof(p->reason)))
MUT(m_bar2, p->bar2_size = htole64(3 * MIB))
MUT(m_rflags, R1.flags = htole64(1))
MUT(m_rsize0, R1.size = 0)
MUT(m_rout, R1.size = htole64(2 * MIB))
MUT(m_ralign, R1.offset = htole64(LOW_SIZE + 8))
MUT(m_roffwrap, R1.offset = htole64(UINT64_MAX - 0xfff))
MUT(m_gpawrap, R1.gpa = htole64(UINT64_MAX - 0xfff))
MUT(m_bar_overlap, R1.offset = htole64(2 * MIB))
MUT(m_gpa_overlap, R1.gpa = htole64(2 * MIB))
MUT(m_qnum, Q0.num = htole16(3))
MUT(m_qnum_max, Q0.num = htole16(0xffff))
MUT(m_qflags, Q0.flags = htole16(4))
MUT(m_qabsent, Q1.num = 0)
MUT(m_kick, Q1.kick_vector = htole16(1))
MUT(m_call, Q0.call_doorbell = htole16(1))
MUT(m_desc_align, Q0.desc = htole64(0x100008))
MUT(m_avail_align, Q0.avail = htole64(0x101001))
MUT(m_used_align, Q0.used = htole64(0x102002))
MUT(m_desc_straddle, Q0.desc = htole64(LOW_SIZE - 16 * QNUM + 16))
MUT(m_avail_hole, Q1.avail = htole64(LOW_SIZE + 0x1000))
MUT(m_used_end, Q1.used = htole64(HIGH_GPA + HIGH_SIZE - 8 * QNUM))
MUT(m_desc_wrap, Q1.desc = htole64(UINT64_MAX - 0xf))

static const struct {
	const char *name;
	mutate_fn fn;
	const char *reason;
} rules[] = {
	{ "magic", m_magic, "magic 0x49435054534f4857 is not an info window" },
	{ "abi", m_abi, "ABI version 2, this driver knows 1" },
	{ "page_size", m_page, "page_size 8192, not 4096" },
	{ "generation 0", m_gen0, "generation 0 not even and non-zero" },
	{ "status", m_status, "unknown status bits 0x10" },
	{ "num_queues", m_nq, "9 queues, at most 8" },
	{ "nregions", m_nr, "9 regions, at most 8" },
	{ "config_len", m_cfg, "config_len 65, at most 64" },
	{ "reason", m_reason, "reason not terminated within 124 bytes" },
	{ "bar2_size", m_bar2, "bar2_size 0x300000 not a power of two" },
	{ "region flags", m_rflags, "region 1: unknown flags 0x1" },
	{ "region size 0", m_rsize0, "region 1: size 0" },
	{ "region unaligned", m_ralign, "region 1: gpa 0x100000000 size 0x100000 offset "
	  "0x300008 not all 4 KiB aligned" },
	{ "region past BAR2", m_rout,
	  "region 1: BAR2 0x300000+0x200000 outside bar2_size 0x400000" },
	{ "region offset wraps", m_roffwrap,
	  "region 1: BAR2 0xfffffffffffff000+0x100000 outside bar2_size 0x400000" },
	{ "region gpa wraps", m_gpawrap, "region 1: gpa 0xfffffffffffff000+0x100000 wraps" },
	{ "BAR2 overlap", m_bar_overlap, "region 1 overlaps region 0 in BAR2" },
	{ "gpa overlap", m_gpa_overlap, "region 1 overlaps region 0 in gpa" },
	{ "ring size", m_qnum, "queue 0: size 3 not a power of two <= 32768" },
	{ "ring size max", m_qnum_max, "queue 0: size 65535 not a power of two <= 32768" },
	{ "queue flags", m_qflags, "queue 0: unknown flags 0x4" },
	{ "absent queue flags", m_qabsent, "queue 1: absent but flags 0x3" },
	{ "kick vector", m_kick, "queue 1: kick vector 1 / call doorbell 1, not 2 / 1" },
	{ "call doorbell", m_call, "queue 0: kick vector 1 / call doorbell 1, not 1 / 0" },
	{ "desc align", m_desc_align, "queue 0: desc ring 0x100008 not 16-byte aligned" },
	{ "avail align", m_avail_align, "queue 0: avail ring 0x101001 not 2-byte aligned" },
	{ "used align", m_used_align, "queue 0: used ring 0x102002 not 4-byte aligned" },
	{ "desc straddles", m_desc_straddle,
	  "queue 0: desc ring 0x2ff010+0x1000 not inside one region" },
	{ "avail in a hole", m_avail_hole,
	  "queue 1: avail ring 0x301000+0x206 not inside one region" },
	{ "used past the end", m_used_end,
	  "queue 1: used ring 0x1000ff800+0x806 not inside one region" },
	{ "desc wraps", m_desc_wrap,
	  "queue 1: desc ring 0xfffffffffffffff0+0x1000 not inside one region" },
};

TEST(every_rule_has_its_reason)
{
	struct vp_devinfo info, got;
	struct vp_info_daemon_page *p;
	uint8_t *w = new_window(NULL);

	REQUIRE(w && good_info(&info) == 0);
	p = (struct vp_info_daemon_page *)(void *)w;
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		REQUIRE(vp_devinfo_publish(w, &info) == 0);
		REQUIRE(vp_devinfo_snapshot(w, &got, why, sizeof(why)) == 0);
		rules[i].fn(p);
		why[0] = 0;
		if (vp_devinfo_snapshot(w, &got, why, sizeof(why)) != -EINVAL ||
		    strcmp(why, rules[i].reason)) {
			tu_failed_checks++;
			fprintf(stderr, "  rule %s: got \"%s\", want \"%s\"\n", rules[i].name, why,
				rules[i].reason);
		}
	}
	free_window(w);
}

/* The edges that are allowed stay allowed. */
TEST(edges_accepted)
{
	struct vp_devinfo info, got;
	struct vp_info_daemon_page *p;
	uint8_t *w = new_window(NULL);

	REQUIRE(w && good_info(&info) == 0);
	p = (struct vp_info_daemon_page *)(void *)w;
	/* Rings flush with the end of a region; the largest ring; a config of 64. */
	info.queues[1].used = HIGH_GPA + HIGH_SIZE - (6 + 8 * QNUM);
	info.queues[1].used &= ~3ull;
	info.config_len = 64;
	info.queues[0].num = 32768;
	info.queues[0].desc = 0;		/* 512 KiB of descriptors from gpa 0 */
	info.queues[0].avail = 0x80000;
	info.queues[0].used = 0xa0000;
	memset(info.reason, 'x', sizeof(info.reason) - 1);
	info.reason[sizeof(info.reason) - 1] = 0;
	CHECK_EQ(vp_devinfo_publish(w, &info), 0);
	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), 0);
	CHECK(same_info(&got, &info));
	/* Regions touching in both spaces are not overlapping. */
	info.regions[1].gpa = LOW_SIZE;
	info.queues[1].desc = LOW_SIZE + 0x10000;
	info.queues[1].avail = LOW_SIZE + 0x11000;
	info.queues[1].used = LOW_SIZE + 0x12000;
	CHECK_EQ(vp_devinfo_publish(w, &info), 0);
	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), 0);
	/* A ring part across two gpa-adjacent regions is still refused: one
	 * region each, as vring.c needs. */
	p->queues[1].used = htole64(LOW_SIZE - 0x10);
	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "queue 1: used ring 0x2ffff0+0x806 not inside one region");
	/* No regions, no queues: a device that is PRESENT but not set up. */
	memset(&info, 0, sizeof(info));
	info.generation = 4;
	info.status = VP_INFO_ST_PRESENT;
	info.bar2_size = 4096;
	CHECK_EQ(vp_devinfo_publish(w, &info), 0);
	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), 0);
	free_window(w);
}

/* ---- torn reads --------------------------------------------------------- */

struct tear {
	struct vp_info_daemon_page *p;
	int left;		/* how many more tries to tear */
	unsigned calls;
};

/* Runs where a racing daemon's write lands: bump the generation (and a
 * field) as a whole publish would. */
static void tear_between(void *arg)
{
	struct tear *t = arg;

	t->calls++;
	if (t->left <= 0)
		return;
	t->left--;
	t->p->generation = htole32(le32toh(t->p->generation) + 2);
	t->p->device_id = htole64(le64toh(t->p->device_id) + 1);
}

TEST(torn_reads_retry_then_eagain)
{
	struct vp_devinfo info, got;
	struct vp_info_daemon_page *p;
	uint8_t *w = new_window(NULL);
	struct tear t;

	REQUIRE(w && good_info(&info) == 0);
	p = (struct vp_info_daemon_page *)(void *)w;
	CHECK_EQ(vp_devinfo_publish(w, &info), 0);

	/* Odd: the daemon is writing, every try sees it. */
	p->generation = htole32(3);
	CHECK_EQ(vp_devinfo_snapshot(w, &got, why, sizeof(why)), -EAGAIN);
	CHECK_STR(why, "the daemon kept rewriting the page (64 tries)");

	/* Changed between the two reads, every time. */
	p->generation = htole32(2);
	t = (struct tear){ .p = p, .left = 1000 };
	CHECK_EQ(vp_devinfo_snapshot_seam(w, &got, why, sizeof(why), tear_between, &t), -EAGAIN);
	CHECK_EQ(t.calls, VP_DEVINFO_SNAPSHOT_TRIES);

	/* Changed three times, then quiet: the fourth try gives the newest page. */
	p->generation = htole32(2);
	p->device_id = htole64(42);
	t = (struct tear){ .p = p, .left = 3 };
	CHECK_EQ(vp_devinfo_snapshot_seam(w, &got, why, sizeof(why), tear_between, &t), 0);
	CHECK_EQ(t.calls, 4);
	CHECK_EQ(got.generation, 8);
	CHECK_EQ(got.device_id, 45);
	free_window(w);
}

/* ---- the driver page ---------------------------------------------------- */

static void good_driver(const struct vp_devinfo *pub, struct vp_devinfo_driver *d)
{
	memset(d, 0, sizeof(*d));
	d->driver_gen = 1;
	d->driver_status = VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER | VP_INFO_DS_DRIVER_OK;
	d->features_accepted = 1ull << VIRTIO_F_VERSION_1;
	d->acked_gen = pub->generation;
	d->stopped[0] = VP_INFO_STOPPED_VALID | 0xfff7;
	d->stopped[1] = VP_INFO_STOPPED_VALID;
}

static int drv_expect(const struct vp_devinfo *pub, uint32_t oldest,
		      const struct vp_devinfo_driver *d, uint8_t *w, const char *reason)
{
	struct vp_devinfo_driver got;
	int err;

	vp_devinfo_write_driver(w, d);
	why[0] = 0;
	err = vp_devinfo_read_driver(w, pub, oldest, &got, why, sizeof(why));
	if (reason && (err != -EINVAL || strcmp(why, reason))) {
		fprintf(stderr, "  want \"%s\", got %d \"%s\"\n", reason, err, why);
		return -1;
	}
	if (!reason && (err || !same_driver(&got, d))) {
		fprintf(stderr, "  want a clean copy, got %d \"%s\"\n", err, why);
		return -1;
	}
	return 0;
}

TEST(driver_page_checks)
{
	struct vp_devinfo pub;
	struct vp_devinfo_driver d, got;
	uint8_t *w = new_window(NULL);

	REQUIRE(w && good_info(&pub) == 0);
	pub.generation = 10;
	good_driver(&pub, &d);
	CHECK_EQ(drv_expect(&pub, 6, &d, w, NULL), 0);
	CHECK_EQ(rd_le(w + 0x1000, 4), 1);
	CHECK_EQ(rd_le(w + 0x1010, 4), 10);
	CHECK_EQ(rd_le(w + 0x1018, 4), VP_INFO_STOPPED_VALID | 0xfff7);
	d.acked_gen = 6;
	CHECK_EQ(drv_expect(&pub, 6, &d, w, NULL), 0);

	d.acked_gen = 4;
	CHECK_EQ(drv_expect(&pub, 6, &d, w, "acked_gen 4 is not a generation published (6..10)"), 0);
	d.acked_gen = 12;
	CHECK_EQ(drv_expect(&pub, 6, &d, w, "acked_gen 12 is not a generation published (6..10)"),
		 0);
	d.acked_gen = 7;
	CHECK_EQ(drv_expect(&pub, 6, &d, w, "acked_gen 7 is not a generation published (6..10)"), 0);
	d.acked_gen = 0;
	CHECK_EQ(drv_expect(&pub, 0, &d, w, "acked_gen 0 is not a generation published (0..10)"), 0);

	/* Across the wrap of the generation counter. */
	pub.generation = 4;
	d.acked_gen = 0xfffffffe;
	CHECK_EQ(drv_expect(&pub, 0xfffffffc, &d, w, NULL), 0);
	d.acked_gen = 0xfffffffa;
	CHECK_EQ(drv_expect(&pub, 0xfffffffc, &d, w,
			    "acked_gen 4294967290 is not a generation published "
			    "(4294967292..4)"), 0);
	pub.generation = 10;

	good_driver(&pub, &d);
	d.driver_status |= 0x40;
	CHECK_EQ(drv_expect(&pub, 2, &d, w, "unknown driver_status bits 0x40"), 0);

	good_driver(&pub, &d);
	d.features_accepted |= 1ull << VIRTIO_NET_F_CSUM;
	CHECK_EQ(drv_expect(&pub, 2, &d, w,
			    "features_accepted has bits 0x1 that were not offered"), 0);

	good_driver(&pub, &d);
	d.stopped[1] = 5;
	CHECK_EQ(drv_expect(&pub, 2, &d, w,
			    "stopped[1] = 0x5: neither 0 nor valid with an index"), 0);
	d.stopped[1] = VP_INFO_STOPPED_VALID | 0x10000;
	CHECK_EQ(drv_expect(&pub, 2, &d, w,
			    "stopped[1] = 0x80010000: neither 0 nor valid with an index"), 0);
	d.stopped[1] = 0;
	d.stopped[2] = VP_INFO_STOPPED_VALID | 1;
	CHECK_EQ(drv_expect(&pub, 2, &d, w, "stopped[2] for a queue that is absent"), 0);
	d.stopped[2] = 0;
	pub.queues[1].num = 0;
	d.stopped[1] = VP_INFO_STOPPED_VALID | 1;
	CHECK_EQ(drv_expect(&pub, 2, &d, w, "stopped[1] for a queue that is absent"), 0);
	pub.queues[1].num = QNUM;

	/* Against the frontend's ring: taken no further than it published, and
	 * no more than num behind it, across the 16-bit wrap. */
	CHECK_EQ(vp_devinfo_check_stopped(VP_INFO_STOPPED_VALID | 10, 256, 10, why, sizeof(why)), 0);
	CHECK_EQ(vp_devinfo_check_stopped(VP_INFO_STOPPED_VALID | 10, 256, 266, why, sizeof(why)),
		 0);
	CHECK_EQ(vp_devinfo_check_stopped(VP_INFO_STOPPED_VALID | 0xfff0, 256, 0x20, why,
					  sizeof(why)), 0);
	CHECK_EQ(vp_devinfo_check_stopped(VP_INFO_STOPPED_VALID | 11, 256, 10, why, sizeof(why)),
		 -EINVAL);
	CHECK_STR(why, "stopped at 11, but the frontend's avail index is 10 (ring of 256)");
	CHECK_EQ(vp_devinfo_check_stopped(VP_INFO_STOPPED_VALID | 10, 256, 267, why, sizeof(why)),
		 -EINVAL);
	CHECK_EQ(vp_devinfo_check_stopped(10, 256, 10, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "stopped 0xa not valid");

	/* A reason that fills its field: written cut and terminated by the writer,
	 * refused when a hostile driver leaves it unterminated. */
	good_driver(&pub, &d);
	memset(d.reason, 'r', sizeof(d.reason));
	vp_devinfo_write_driver(w, &d);
	CHECK_EQ(vp_devinfo_read_driver(w, &pub, 2, &got, why, sizeof(why)), 0);
	CHECK_EQ(strlen(got.reason), VP_INFO_DRV_REASON_LEN - 1);
	memset(w + 0x1040, 'r', VP_INFO_DRV_REASON_LEN);
	CHECK_EQ(vp_devinfo_read_driver(w, &pub, 2, &got, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "reason not terminated within 128 bytes");

	/* Formatted for a log, escaped. */
	char buf[64];
	const char hostile[] = "bad\x1b[2J\\\"\xff\n";

	CHECK_STR(vp_devinfo_escape(hostile, sizeof(hostile), buf, sizeof(buf)),
		  "bad\\x1b[2J\\x5c\\x22\\xff\\x0a");
	CHECK_STR(vp_devinfo_escape(hostile, 3, buf, sizeof(buf)), "ba" "d");
	CHECK_STR(vp_devinfo_escape(hostile, sizeof(hostile), buf, 6), "bad");
	CHECK_STR(vp_devinfo_escape(NULL, 10, buf, sizeof(buf)), "");
	free_window(w);
}

/* ---- a writer process racing a reader process --------------------------- */

#define RACE_SNAPSHOTS 100000u
#define RACE_CHANGES   1000u
#define RACE_SECONDS   60

/* Everything in the page follows from the generation: a snapshot that mixes
 * two writes shows up as a field that does not match its generation. */
static void race_info(struct vp_devinfo *in, uint32_t gen)
{
	uint32_t k = gen / 2;
	uint64_t base = 0x1000ull * (k % 256);

	memset(in, 0, sizeof(*in));
	in->generation = gen;
	in->status = VP_INFO_ST_PRESENT | ((k & 1) ? VP_INFO_ST_READY : 0);
	in->device_id = 0x1000000000ull + k;
	for (unsigned i = 0; i < 16; i++)
		in->uuid[i] = (uint8_t)(k + i);
	in->device_type = VIRTIO_ID_NET;
	in->num_queues = 2;
	in->memory_peer = (uint16_t)k;
	in->nregions = 2;
	in->features = 0x9e3779b97f4a7c15ull * k;
	in->bar2_size = RAM_SIZE;
	in->config_len = k % 65;
	for (unsigned i = 0; i < in->config_len; i++)
		in->config[i] = (uint8_t)(k * 3 + i);
	in->regions[0] = (struct vp_devinfo_region){ .gpa = 0, .size = LOW_SIZE };
	in->regions[1] = (struct vp_devinfo_region){ .gpa = HIGH_GPA, .size = HIGH_SIZE,
						     .offset = LOW_SIZE };
	for (unsigned q = 0; q < 2; q++)
		in->queues[q] = (struct vp_devinfo_queue){ .num = 16, .flags = VP_INFO_Q_ENABLED,
			.last_avail_idx = (uint16_t)(k + q), .kick_vector = (uint16_t)(1 + q),
			.call_doorbell = (uint16_t)q,
			.desc = base + 0x400 * q, .avail = base + 0x100000 + 0x400 * q,
			.used = base + 0x200000 + 0x400 * q };
	in->reason_gen = gen;
	snprintf(in->reason, sizeof(in->reason), "generation %u", gen);
}

TEST(two_processes_never_see_a_mixed_page)
{
	int wfd, status;
	uint8_t *w = new_window(&wfd);
	volatile uint32_t *stop;
	struct vp_devinfo info, want;
	unsigned ok = 0, eagain = 0, mixed = 0, changes = 0;
	uint32_t last = 0;
	time_t deadline;
	pid_t pid;

	REQUIRE(w);
	stop = (volatile uint32_t *)(void *)(w + VP_INFO_WINDOW_SIZE - 4);	/* driver page tail */
	race_info(&info, 2);
	REQUIRE(vp_devinfo_publish(w, &info) == 0);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* The writer maps the window again, at another address. */
		uint8_t *ww = mmap(NULL, VP_INFO_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				   wfd, 0);
		uint32_t gen = 2;

		alarm(RACE_SECONDS + 10);
		if (ww == MAP_FAILED)
			_exit(2);
		while (!__atomic_load_n((uint32_t *)(void *)(ww + VP_INFO_WINDOW_SIZE - 4),
					__ATOMIC_ACQUIRE)) {
			gen = vp_devinfo_next_gen(gen);
			race_info(&info, gen);
			if (vp_devinfo_publish(ww, &info))
				_exit(3);
			/* A pause of varying length, so the reader also gets whole
			 * pages and not only the daemon's writes. */
			for (volatile unsigned spin = 0; spin < (gen % 8) * 300; spin++)
				;
		}
		_exit(0);
	}
	deadline = time(NULL) + RACE_SECONDS;
	/* Under load the two may not run at once for a while: go on until the
	 * reader has also seen the writer's generations change often. */
	while ((ok < RACE_SNAPSHOTS || changes < RACE_CHANGES) && time(NULL) < deadline) {
		int err = vp_devinfo_snapshot(w, &info, why, sizeof(why));

		if (err == -EAGAIN) {
			/* As a driver waits for the next interrupt: let the
			 * writer, maybe preempted mid-page, finish. */
			eagain++;
			sched_yield();
			continue;
		}
		if (err) {
			/* A mixed page may also break a rule: that is a mix too. */
			if (mixed++ < 3)
				fprintf(stderr, "  snapshot refused: %s\n", why);
			continue;
		}
		ok++;
		race_info(&want, info.generation);
		if (!same_info(&info, &want)) {
			if (mixed++ < 3)
				fprintf(stderr, "  mixed snapshot at generation %u\n",
					info.generation);
		}
		changes += info.generation != last;
		last = info.generation;
	}
	__atomic_store_n(stop, 1, __ATOMIC_RELEASE);
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(mixed, 0);
	CHECK(ok >= RACE_SNAPSHOTS);
	/* The writer really ran beside the reader. */
	CHECK(changes >= RACE_CHANGES);
	printf("# %u snapshots, %u generations seen change, %u EAGAIN\n", ok, changes, eagain);
	free_window(w);
	close(wfd);
}
