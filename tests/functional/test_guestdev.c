/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The guest side of a vhost-pci device without QEMU: a fake sysfs PCI tree
 * in a temp dir whose functions are files. The memory function's resource2
 * is a symlink to /proc/self/fd/N of a real vp_netfe frontend's RAM memfd
 * (sealed, a power of two), its resource0 a 256-byte file (IVPosition
 * written by the test, the doorbell read back by it); the info function's
 * resource2 an 8 KiB file the test publishes with vp_devinfo_publish() from
 * the frontend's own rings and regions, as vhost-pcid would.
 *
 * Traffic both ways (poll mode), the STOP handshake, re-attach, GONE, two
 * devices told apart by UUID, hostile windows and a hostile ring each
 * failing only their own device; fds and mappings counted before and after.
 */
#define TESTUTIL_MAIN
#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "vhostpci/devinfo.h"
#include "vhostpci/guestdev.h"
#include "vhostpci/log.h"
#include "vhostpci/net.h"
#include "fakepci.h"

#define RAM_SIZE (4u << 20)
#define FRAME 200u
#define DAEMON_PEER 7

struct rig_fe {
	int ramfd;
	void *ram;
	struct vp_netfe *fe;
	struct vp_devinfo pub;
	void *window;			/* the info function's resource2, as the daemon maps it */
	volatile uint8_t *regs;		/* the memory function's resource0 */
	char mem_dir[128], info_dir[128];
	uint64_t sent, got;		/* frontend side: frames sent / received in order */
};

struct rig {
	char root[64];
	struct rig_fe f[2];
	unsigned nf;
	struct vp_guest *g;
	unsigned ev[4];			/* per vp_guest_event */
};

static void publish(struct rig_fe *f)
{
	f->pub.generation = vp_devinfo_next_gen(f->pub.generation);
	if (vp_devinfo_publish(f->window, &f->pub) < 0)
		fprintf(stderr, "  publish refused\n");
}

/* Frontend i: its RAM, the two functions (memory slot 2i+4, info 2i+5). */
static int add_frontend(struct rig *r, unsigned i, uint8_t uuid_byte)
{
	struct rig_fe *f = &r->f[i];
	struct vp_netfe_config c = { 0 };
	struct vp_frontend_info info;
	struct fp_device dev;
	char why[160];

	f->ramfd = tu_memfd("guest-ram", RAM_SIZE, 1);
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->ramfd, 0);
	if (f->ramfd < 0 || f->ram == MAP_FAILED)
		return -1;
	c.ram = f->ram;
	c.ram_size = RAM_SIZE;
	c.ram_fd = f->ramfd;
	c.rx_num = c.tx_num = 256;
	c.mode = VP_NET_POLL;
	memset(c.uuid, uuid_byte, 16);
	c.mac[0] = 2;
	c.mac[5] = (uint8_t)i;
	if (vp_netfe_new(&f->fe, &c) < 0)
		return -1;
	vp_netfe_info(f->fe, &info);
	if (vp_netfe_start(f->fe, info.driver_features) < 0)
		return -1;
	/* The device as the daemon's server would hold it. */
	if (vp_devinfo_from_device(fp_device(&info, 100 + i, &dev), &f->pub, why, sizeof(why)) < 0) {
		fprintf(stderr, "  from_device: %s\n", why);
		return -1;
	}
	f->pub.memory_peer = (uint16_t)(10 + i);
	f->pub.daemon_peer = DAEMON_PEER;

	char root[sizeof(r->root)];

	memcpy(root, r->root, sizeof(root));
	snprintf(f->mem_dir, sizeof(f->mem_dir), "%s/0000:00:%02x.0", root, 2 * i + 4);
	snprintf(f->info_dir, sizeof(f->info_dir), "%s/0000:00:%02x.0", root, 2 * i + 5);
	f->regs = fp_memory_function(f->mem_dir, f->pub.memory_peer, f->ramfd);
	f->window = fp_info_function(f->info_dir);
	if (!f->regs || !f->window)
		return -1;
	fp_put_file(f->mem_dir, "enable", "1\n");
	fp_put_file(f->info_dir, "enable", "0\n");	/* the guest must enable it */
	publish(f);
	r->nf = i + 1 > r->nf ? i + 1 : r->nf;
	return 0;
}

static void on_ev(struct vp_guest *g, enum vp_guest_event ev, struct vp_guestdev *d, void *o)
{
	struct rig *r = o;

	(void)g, (void)d;
	r->ev[ev]++;
}

static void rm_tree(const char *root);

static int rig_new(struct rig *r, unsigned nfe, const uint8_t *only_uuid)
{
	struct vp_guest_config gc = { 0 };

	memset(r, 0, sizeof(*r));
	snprintf(r->root, sizeof(r->root), "/tmp/vp-guestdev.XXXXXX");
	if (!mkdtemp(r->root))
		return -1;
	for (unsigned i = 0; i < nfe; i++)
		if (add_frontend(r, i, (uint8_t)(0x11 * (i + 1))) < 0)
			return -1;
	gc.sysfs_root = r->root;
	gc.mode = VP_NET_POLL;
	gc.on_event = on_ev;
	gc.opaque = r;
	if (only_uuid) {
		gc.have_uuid = true;
		memcpy(gc.uuid, only_uuid, 16);
	}
	return vp_guest_new(&r->g, &gc);
}

static void rig_free(struct rig *r)
{
	vp_guest_free(r->g);
	for (unsigned i = 0; i < r->nf; i++) {
		struct rig_fe *f = &r->f[i];

		vp_netfe_free(f->fe);
		if (f->window)
			munmap(f->window, VP_INFO_WINDOW_SIZE);
		if (f->regs)
			munmap((void *)f->regs, 256);
		if (f->ram && f->ram != MAP_FAILED)
			munmap(f->ram, RAM_SIZE);
		if (f->ramfd >= 0)
			close(f->ramfd);
	}
	rm_tree(r->root);
}

static void rm_tree(const char *root)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "  cannot remove %s\n", root);
}

static int count_maps(const char *needle)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += !needle || strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* Mappings of what a rig makes (its sysfs files, its RAM memfds): a
 * sanitizer's own mappings come and go, ours must all go. */
static int rig_maps(void)
{
	return count_maps("/vp-guestdev.") + count_maps("memfd:guest-ram");
}

static struct vp_guestdev *dev_of(struct rig *r, unsigned i)
{
	uint8_t u[16];

	memset(u, 0x11 * (i + 1), 16);
	return vp_guest_find(r->g, u);
}

static void fill(uint8_t *b, uint64_t seq, unsigned dir)
{
	memset(b, 0, FRAME);
	memcpy(b, &seq, 8);
	b[8] = (uint8_t)dir;
	for (unsigned k = 9; k < FRAME; k++)
		b[k] = (uint8_t)(seq * 7 + k + dir);
}

static bool good(const uint8_t *b, uint32_t len, uint64_t seq, unsigned dir)
{
	uint8_t want[FRAME];

	fill(want, seq, dir);
	return len == FRAME && !memcmp(b, want, FRAME);
}

/*
 * Move n frames each way between frontend i and its guest link, verifying
 * every one, with the control pass run as a backend app would. Returns the
 * frames that arrived in order both ways (2n when all is well).
 */
static uint64_t traffic(struct rig *r, unsigned i, uint64_t n, uint64_t *be_sent,
			uint64_t *be_got)
{
	struct rig_fe *f = &r->f[i];
	uint8_t buf[16][FRAME], rbuf[16][2048];
	uint64_t ok = 0, fe_tx = 0, be_tx = 0, fe_rx = 0, be_rx = 0;

	for (unsigned spin = 0; spin < 200000 && (fe_rx < n || be_rx < n); spin++) {
		struct vp_guestdev *d = dev_of(r, i);
		struct vp_net *net = d ? vp_guestdev_net(d) : NULL;
		struct vp_pkt p[16];
		int k;

		vp_guest_control(r->g);
		if (!net)
			break;
		/* frontend -> guest */
		if (fe_tx < n) {
			unsigned m = n - fe_tx < 16 ? (unsigned)(n - fe_tx) : 16;

			for (unsigned j = 0; j < m; j++) {
				fill(buf[j], f->sent + fe_tx + j, 0);
				p[j] = (struct vp_pkt){ .data = buf[j], .len = FRAME };
			}
			k = vp_netfe_tx_burst(f->fe, p, m, 0);
			if (k > 0)
				fe_tx += (unsigned)k;
		}
		for (unsigned j = 0; j < 16; j++)
			p[j] = (struct vp_pkt){ .data = rbuf[j], .len = sizeof(rbuf[j]) };
		k = vp_net_rx_burst(net, p, 16);
		for (int j = 0; j < k; j++, be_rx++)
			ok += good(rbuf[j], p[j].len, *be_got + be_rx, 0);
		/* guest -> frontend */
		if (be_tx < n) {
			unsigned m = n - be_tx < 16 ? (unsigned)(n - be_tx) : 16;

			for (unsigned j = 0; j < m; j++) {
				fill(buf[j], *be_sent + be_tx + j, 1);
				p[j] = (struct vp_pkt){ .data = buf[j], .len = FRAME };
			}
			k = vp_net_tx_burst(net, p, m, 0);
			if (k > 0)
				be_tx += (unsigned)k;
		}
		for (unsigned j = 0; j < 16; j++)
			p[j] = (struct vp_pkt){ .data = rbuf[j], .len = sizeof(rbuf[j]) };
		k = vp_netfe_rx_burst(f->fe, p, 16);
		for (int j = 0; j < k; j++, fe_rx++)
			ok += good(rbuf[j], p[j].len, f->got + fe_rx, 1);
	}
	f->sent += fe_tx;
	f->got += fe_rx;
	*be_sent += be_tx;
	*be_got += be_rx;
	return ok;
}

static struct vp_devinfo_driver read_page(struct rig_fe *f, int *err)
{
	struct vp_devinfo_driver drv;
	char why[160];

	memset(&drv, 0, sizeof(drv));
	*err = vp_devinfo_read_driver(f->window, &f->pub, 2, &drv, why, sizeof(why));
	if (*err)
		fprintf(stderr, "  driver page: %s\n", why);
	return drv;
}

static uint32_t doorbell(struct rig_fe *f)
{
	return *fp_u32(f->regs, VP_IVSHMEM_DOORBELL);
}

TEST(irq_mode_refused)
{
	struct vp_guest_config gc = { .sysfs_root = "/nonexistent", .mode = VP_NET_IRQ };
	struct vp_guest *g = (struct vp_guest *)1;

	CHECK_EQ(vp_guest_new(&g, &gc), -ENOTSUP);
	CHECK(g == NULL);
}

/* The info window carries split positions: packed rings are refused up front. */
TEST(packed_features_refused)
{
	struct vp_guest_config gc = {
		.sysfs_root = "/nonexistent", .mode = VP_NET_POLL,
		.features = VP_NET_FEATURES | (1ull << VIRTIO_F_RING_PACKED),
	};
	struct vp_guest *g = (struct vp_guest *)1;

	CHECK_EQ(vp_guest_new(&g, &gc), -EINVAL);
	CHECK(g == NULL);
}

TEST(traffic_stop_reattach_gone)
{
	int fds = tu_count_fds(), maps = rig_maps(), err, own;
	uint64_t be_sent = 0, be_got = 0, db;
	struct vp_devinfo_driver drv;
	struct vp_guestdev *d;
	struct rig r;
	char v[8] = "";
	FILE *ef;

	REQUIRE(rig_new(&r, 1, NULL) == 0);
	own = count_maps(r.root);	/* the test's own: window and registers */
	CHECK_EQ(vp_guest_control(r.g), 2);	/* NEW, UP */
	CHECK_EQ(r.ev[VP_GUEST_NEW], 1);
	CHECK_EQ(r.ev[VP_GUEST_UP], 1);
	d = dev_of(&r, 0);
	REQUIRE(d && vp_guestdev_net(d));
	/* The info function was enabled (it said 0). */
	{
		char p[400];

		snprintf(p, sizeof(p), "%s/enable", r.f[0].info_dir);
		ef = fopen(p, "r");
		if (ef) {
			CHECK(fgets(v, sizeof(v), ef) != NULL);
			fclose(ef);
		}
		CHECK(v[0] == '1');
	}
	/* The driver page answers the generation with DRIVER_OK. */
	drv = read_page(&r.f[0], &err);
	CHECK_EQ(err, 0);
	CHECK_EQ(drv.acked_gen, r.f[0].pub.generation);
	CHECK(drv.driver_status & VP_INFO_DS_DRIVER_OK);
	CHECK_EQ(drv.features_accepted, r.f[0].pub.features);
	CHECK_EQ(doorbell(&r.f[0]), (DAEMON_PEER << 16) | 2u);

	/* A few thousand frames each way, every byte checked. */
	db = vp_guestdev_doorbells(d);
	CHECK_EQ(traffic(&r, 0, 3000, &be_sent, &be_got), 6000);
	CHECK_EQ(be_got, 3000);
	CHECK_EQ(r.f[0].got, 3000);
	/* Calls went out as doorbells (event index lets most be skipped, not all). */
	CHECK(vp_guestdev_doorbells(d) > db);
	CHECK_EQ(vp_net_stats(vp_guestdev_net(d))->signals + db + 0, vp_guestdev_doorbells(d));

	/* STOP: the link goes, the driver page says where each ring stopped. */
	r.f[0].pub.status |= VP_INFO_ST_STOP;
	publish(&r.f[0]);
	vp_guest_control(r.g);
	CHECK(vp_guestdev_net(d) == NULL);
	CHECK_EQ(r.ev[VP_GUEST_DOWN], 1);
	drv = read_page(&r.f[0], &err);
	CHECK_EQ(err, 0);
	CHECK_EQ(drv.acked_gen, r.f[0].pub.generation);
	/* receiveq: the 3000 buffers we filled; transmitq: the 3000 frames taken. */
	CHECK_EQ(drv.stopped[0], VP_INFO_STOPPED_VALID | 3000u);
	CHECK_EQ(drv.stopped[1], VP_INFO_STOPPED_VALID | 3000u);
	CHECK_EQ(doorbell(&r.f[0]), (DAEMON_PEER << 16) | 2u);
	/* The daemon checks them against the frontend's avail index as it would. */
	CHECK_EQ(vp_devinfo_check_stopped(drv.stopped[1], 256, (uint16_t)r.f[0].sent, NULL, 0), 0);

	/* READY again: resume from last_avail_idx, traffic goes on in order. */
	r.f[0].pub.status &= ~VP_INFO_ST_STOP;
	r.f[0].pub.queues[0].last_avail_idx = (uint16_t)(drv.stopped[0] & 0xffff);
	r.f[0].pub.queues[1].last_avail_idx = (uint16_t)(drv.stopped[1] & 0xffff);
	publish(&r.f[0]);
	vp_guest_control(r.g);
	REQUIRE(vp_guestdev_net(d) != NULL);
	CHECK_EQ(r.ev[VP_GUEST_UP], 2);
	CHECK_EQ(traffic(&r, 0, 2000, &be_sent, &be_got), 4000);

	/* A new generation with nothing changed keeps the link as it is. */
	{
		struct vp_net *before = vp_guestdev_net(d);

		publish(&r.f[0]);
		vp_guest_control(r.g);
		CHECK(vp_guestdev_net(d) == before);
		CHECK_EQ(r.ev[VP_GUEST_UP], 2);
	}

	/* GONE: everything unmapped at once, REMOVED. */
	r.f[0].pub.status = VP_INFO_ST_GONE;
	publish(&r.f[0]);
	vp_guest_control(r.g);
	CHECK_EQ(r.ev[VP_GUEST_REMOVED], 1);
	CHECK(dev_of(&r, 0) == NULL);
	CHECK_EQ(count_maps(r.root), own);
	CHECK_EQ(count_maps("guest-ram"), 1);	/* the frontend's own mapping only */
	rig_free(&r);
	CHECK_EQ(tu_count_fds(), fds);
	CHECK_EQ(rig_maps(), maps);
}

TEST(unplug_without_gone)
{
	int fds = tu_count_fds(), maps = rig_maps(), own;
	uint64_t a = 0, b = 0;
	struct rig r;
	char cmd[400];

	REQUIRE(rig_new(&r, 1, NULL) == 0);
	own = count_maps(r.root);	/* the test's own: window and registers */
	vp_guest_control(r.g);
	CHECK(count_maps(r.root) > own);
	CHECK_EQ(traffic(&r, 0, 500, &a, &b), 1000);
	/* The kernel removes the functions: the next rescan lets go. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r.f[0].info_dir);
	CHECK_EQ(system(cmd), 0);
	for (int i = 0; i < 300 && !r.ev[VP_GUEST_REMOVED]; i++) {
		vp_guest_control(r.g);
		usleep(1000);
	}
	CHECK_EQ(r.ev[VP_GUEST_DOWN], 1);
	CHECK_EQ(r.ev[VP_GUEST_REMOVED], 1);
	CHECK_EQ(count_maps(r.root), own);
	rig_free(&r);
	CHECK_EQ(tu_count_fds(), fds);
	CHECK_EQ(rig_maps(), maps);
}

TEST(two_devices_by_uuid)
{
	int fds = tu_count_fds(), maps = rig_maps();
	struct vp_pci_info *reg = vp_pci_info_new();
	const struct vp_pci_dev *e;
	uint64_t s0 = 0, g0 = 0, s1 = 0, g1 = 0;
	uint8_t u1[16], u2[16];
	struct rig r;

	REQUIRE(reg);
	REQUIRE(rig_new(&r, 2, NULL) == 0);
	vp_guest_control(r.g);
	CHECK_EQ(r.ev[VP_GUEST_UP], 2);
	CHECK_EQ(vp_guest_registry(r.g, reg), 2);
	CHECK_EQ(vp_pci_info_count(reg), 2);
	for (unsigned i = 0; i < 2; i++) {
		REQUIRE((e = vp_pci_info_get(reg, i)) != NULL);
		CHECK_EQ(e->device_type, VP_VIRTIO_ID_NET);
		CHECK(e->device_id == 100 || e->device_id == 101);
		CHECK_EQ(e->dev->id, e->device_id);
	}
	CHECK(vp_pci_info_get(reg, 2) == NULL);
	/* Found by the frontend's UUID (frontend i has bytes 0x11 * (i + 1)). */
	memset(u1, 0x22, 16);
	REQUIRE((e = vp_pci_info_find(reg, u1)) != NULL);
	CHECK_EQ(e->device_id, 101);
	CHECK(!memcmp(e->dev->uuid, u1, 16));
	memset(u1, 0x33, 16);
	CHECK(vp_pci_info_find(reg, u1) == NULL);
	REQUIRE(dev_of(&r, 0) && dev_of(&r, 1) && dev_of(&r, 0) != dev_of(&r, 1));
	CHECK_EQ(vp_guestdev_info(dev_of(&r, 1))->device_id, 101);
	/* Each pair is its own link: traffic on both, nothing crossing. */
	CHECK_EQ(traffic(&r, 0, 1000, &s0, &g0), 2000);
	CHECK_EQ(traffic(&r, 1, 1000, &s1, &g1), 2000);
	rig_free(&r);

	/* Asked for one UUID: only that device gets a link. */
	memset(u2, 0x22, 16);
	REQUIRE(rig_new(&r, 2, u2) == 0);
	vp_guest_control(r.g);
	CHECK_EQ(r.ev[VP_GUEST_UP], 1);
	CHECK(dev_of(&r, 0) && !vp_guestdev_net(dev_of(&r, 0)));
	CHECK(dev_of(&r, 1) && vp_guestdev_net(dev_of(&r, 1)));
	CHECK_EQ(r.ev[VP_GUEST_NEW], 1);	/* the other one is not ours to report */
	/* Refilled: only the device with a link. */
	CHECK_EQ(vp_guest_registry(r.g, reg), 1);
	REQUIRE((e = vp_pci_info_get(reg, 0)) != NULL);
	CHECK_EQ(e->device_id, 101);
	CHECK(vp_pci_info_get(reg, 1) == NULL);
	vp_guest_free(r.g);
	r.g = NULL;
	/* ... nor to write: its driver page was never touched. */
	CHECK_EQ(*fp_u32(r.f[0].window, VP_INFO_DRIVER_OFFSET), 0);
	CHECK(*fp_u32(r.f[1].window, VP_INFO_DRIVER_OFFSET) != 0);
	rig_free(&r);
	vp_pci_info_free(reg);
	CHECK_EQ(tu_count_fds(), fds);
	CHECK_EQ(rig_maps(), maps);
}

/* Rewrite one field of a published page as a hostile writer would: odd, store, even. */
static void scribble(struct rig_fe *f, unsigned off, const void *val, size_t len)
{
	volatile uint32_t *gen = fp_u32(f->window, 0x10);
	uint32_t g = *gen;

	__atomic_store_n(gen, g + 1, __ATOMIC_RELEASE);
	memcpy((uint8_t *)f->window + off, val, len);
	__atomic_store_n(gen, g + 2, __ATOMIC_RELEASE);
	f->pub.generation = g + 2;	/* the next publish() goes past it */
}

/* As the daemon would after asking the frontend (GET_VRING_BASE): where the
 * rings are now, so that a re-attach neither replays nor skips. */
static void resume_here(struct rig_fe *f, uint64_t be_sent)
{
	f->pub.queues[0].last_avail_idx = (uint16_t)be_sent;
	f->pub.queues[1].last_avail_idx = (uint16_t)f->sent;
}

TEST(hostile_window_and_ring_break_only_their_device)
{
	int fds = tu_count_fds(), maps = rig_maps(), err;
	uint64_t s0 = 0, g0 = 0, s1 = 0, g1 = 0, big = RAM_SIZE * 2;
	struct vp_devinfo_driver drv;
	struct vp_guestdev *bad;
	struct rig r;

	REQUIRE(rig_new(&r, 2, NULL) == 0);
	vp_guest_control(r.g);
	REQUIRE(r.ev[VP_GUEST_UP] == 2);
	bad = dev_of(&r, 1);
	/* A region larger than BAR2. */
	scribble(&r.f[1], 0x100 + 8, &big, 8);
	vp_guest_control(r.g);
	CHECK(vp_guestdev_net(bad) == NULL);
	CHECK(vp_guestdev_failed(bad));
	CHECK(strstr(vp_guestdev_reason(bad), "window refused") != NULL);
	drv = read_page(&r.f[1], &err);
	/* FAILED, with the reason, answering the last generation it accepted. */
	CHECK(drv.driver_status & VP_INFO_DS_FAILED);
	CHECK(strstr(drv.reason, "window refused") != NULL);
	CHECK_EQ(traffic(&r, 0, 1000, &s0, &g0), 2000);

	/* A good generation again: the device comes back. */
	publish(&r.f[1]);
	vp_guest_control(r.g);
	CHECK(vp_guestdev_net(bad) != NULL);
	CHECK(!vp_guestdev_failed(bad));
	CHECK_EQ(traffic(&r, 1, 500, &s1, &g1), 1000);

	/* A ring outside the frontend's RAM. */
	{
		uint64_t far = RAM_SIZE + 0x1000;

		scribble(&r.f[1], 0x200 + 8, &far, 8);
	}
	vp_guest_control(r.g);
	CHECK(vp_guestdev_failed(bad));
	CHECK(strstr(vp_guestdev_reason(bad), "window refused") != NULL);
	CHECK_EQ(traffic(&r, 0, 500, &s0, &g0), 1000);

	/* Good again, then the frontend's RAM lies: its avail index jumps. */
	resume_here(&r.f[1], s1);
	publish(&r.f[1]);
	vp_guest_control(r.g);
	REQUIRE(vp_guestdev_net(bad) != NULL);
	{
		volatile uint16_t *avail_idx = (volatile uint16_t *)(volatile void *)
			((uint8_t *)r.f[1].ram + r.f[1].pub.queues[1].avail + 2);
		uint8_t b[2048];
		struct vp_pkt p = { .data = b, .len = sizeof(b) };

		*avail_idx = (uint16_t)(*avail_idx + 1000);
		CHECK_EQ(vp_net_rx_burst(vp_guestdev_net(bad), &p, 1), -EIO);
	}
	vp_guest_control(r.g);
	CHECK(vp_guestdev_failed(bad));
	CHECK(strstr(vp_guestdev_reason(bad), "ring broken") != NULL);
	drv = read_page(&r.f[1], &err);
	CHECK(drv.driver_status & VP_INFO_DS_FAILED);
	CHECK_EQ(traffic(&r, 0, 1000, &s0, &g0), 2000);

	rig_free(&r);
	CHECK_EQ(tu_count_fds(), fds);
	CHECK_EQ(rig_maps(), maps);
}

TEST(sysfs_lies)
{
	int fds = tu_count_fds(), maps = rig_maps();
	struct rig r;
	char p[400];
	uint32_t peer = 10;

	REQUIRE(rig_new(&r, 1, NULL) == 0);
	/* A second memory function claiming the same IVPosition, BAR2 of the wrong size. */
	snprintf(p, sizeof(p), "%s/0000:00:03.0", r.root);
	REQUIRE(fp_function(p) == 0);
	{
		volatile uint8_t *regs = fp_put_bin(p, "resource0", 256);
		void *bar2 = fp_put_bin(p, "resource2", 1 << 20);

		REQUIRE(regs && bar2);
		*fp_u32(regs, VP_IVSHMEM_IVPOSITION) = peer;
		munmap((void *)regs, 256);
		munmap(bar2, 1 << 20);
	}
	/* Whatever the readdir order, the impostor is passed over. */
	vp_guest_control(r.g);
	{
		struct vp_guestdev *d = dev_of(&r, 0);

		REQUIRE(d && vp_guestdev_net(d));
		CHECK_STR(vp_guestdev_name(d), "0000:00:04.0+0000:00:05.0");
	}
	rig_free(&r);
	CHECK_EQ(tu_count_fds(), fds);
	CHECK_EQ(rig_maps(), maps);
}
