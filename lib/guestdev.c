/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pci devices in the guest's own PCI tree, driven from userspace
 * (docs/device.md; API and life cycle in include/vhostpci/guestdev.h).
 *
 * Security model
 *  - Untrusted: the info window (both pages can be scribbled on by anyone
 *    with the device; page 0 is the daemon's), the frontend's RAM behind the
 *    memory function's BAR2, and what sysfs says about the functions (a test
 *    or a confused host can make them anything). The window is read only by
 *    vp_devinfo_snapshot() (a checked copy) and the generation word (one
 *    aligned load); the RAM only by vring.c through a vp_mem whose regions
 *    vp_devinfo_mem_add() bounded by the BAR2 mapping; sysfs sizes are
 *    checked against what the window says before anything is mapped or used.
 *  - A bad value fails that device only: its link goes, the reason is logged
 *    and written into the driver page (FAILED), the daemon is rung. A new
 *    generation is another chance.
 *  - Mappings are dropped as soon as a device is GONE, so the kernel never
 *    has to revoke them under us on hot-unplug.
 *  - A 2.1 slot (vp_guest21, at the end): the header function's magic picks
 *    the slot, IVPosition (set by the daemon's ivshmem server) our peer id;
 *    the header and the other's section are mapped PROT_READ and handed to
 *    vp_net21_new_mapped(), which checks the header on a copy and treats the
 *    other's section as it does for any peer.
 *
 * Threading: one vp_guest, one thread; no allocation on the control pass
 * except when a device attaches.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "vhostpci/guestdev.h"
#include "vhostpci/log.h"
#include "internal.h"
#include "vhostpci/net21.h"
#include "util.h"

#define IVSHMEM_VENDOR 0x1af4
#define IVSHMEM_DEVICE 0x1110
#define BAR0_MAP 256u		/* the ivshmem register BAR: its size, exactly */
#define NAME_MAX_SYSFS 64
#define REASON_MAX VP_INFO_DRV_REASON_LEN	/* it goes into the driver page */

enum gstate {
	G_PAIRING,	/* window mapped; waiting for a good snapshot and its memory function */
	G_IDLE,		/* paired; frontend not READY (or another UUID) */
	G_UP,		/* link attached */
	G_STOPPED,	/* answered STOP */
	G_FAILED,	/* until the next generation */
	G_GONE,		/* unmapped; waiting for the sysfs entries to vanish */
};

struct vp_guestdev {
	struct vp_guest *g;
	bool used;
	enum gstate st;
	char info_name[NAME_MAX_SYSFS], mem_name[NAME_MAX_SYSFS];
	char name[2 * NAME_MAX_SYSFS + 2];
	void *window;			/* 8 KiB, info function resource2 */
	volatile uint32_t *bar0;	/* memory function resource0 */
	void *bar2;			/* memory function resource2: the frontend's RAM */
	uint64_t bar2_len;
	uint32_t gen_seen;		/* the last generation word looked at */
	bool have_snap;
	bool foreign;			/* another frontend's (UUID filter): never written */
	struct vp_devinfo snap;		/* last accepted */
	struct vp_mem *mem;
	struct vp_device dev;		/* the view vp_net attaches to */
	struct vp_dev_region regions[VP_INFO_MAX_REGIONS];	/* dev.regions */
	struct vp_dev_ring rings[2];				/* dev.rings */
	struct vp_net *net;
	uint16_t pos[2];		/* where the rings resume / stopped */
	uint32_t driver_gen;
	uint64_t doorbells;
	int revoked;			/* set by the SIGBUS guard: a BAR went away */
	char reason[REASON_MAX];
};

struct vp_guest {
	char *root;
	bool have_uuid;
	uint8_t uuid[16];
	enum vp_net_mode mode;
	uint64_t features;
	unsigned max_devices;
	vp_guest_event_fn on_event;
	void *opaque;
	uint64_t next_scan_ns;
	int events;
	struct vp_guestdev devs[VP_GUEST_MAX_DEVICES];
};

static void gd_log(const struct vp_guestdev *d, enum vp_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void gd_log(const struct vp_guestdev *d, enum vp_log_level lvl, const char *fmt, ...)
{
	char msg[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log(lvl, "guest-pci %s: %s", d->name, msg);
}

static void emit(struct vp_guestdev *d, enum vp_guest_event ev)
{
	struct vp_guest *g = d->g;

	g->events++;
	if (g->on_event)
		g->on_event(g, ev, d, g->opaque);
}

/* ------------------------------------------------------------------------ */
/* sysfs                                                                    */

/* A small sysfs attribute of entry name, NUL-terminated; -errno. */
static int read_attr(const char *root, const char *name, const char *attr, char *buf, size_t len)
{
	char path[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%s", root, name, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

static bool is_ivshmem(const char *root, const char *name)
{
	char v[16], dv[16];

	return read_attr(root, name, "vendor", v, sizeof(v)) == 0 &&
	       read_attr(root, name, "device", dv, sizeof(dv)) == 0 &&
	       strtoul(v, NULL, 16) == IVSHMEM_VENDOR && strtoul(dv, NULL, 16) == IVSHMEM_DEVICE;
}

/* A function nobody enabled decodes no memory: enable it (write 1). */
static void enable_function(const char *root, const char *name)
{
	char path[512], v[8];
	int fd;

	if (read_attr(root, name, "enable", v, sizeof(v)) < 0 || v[0] != '0')
		return;
	snprintf(path, sizeof(path), "%s/%s/enable", root, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1)
		vp_log(VP_LOG_WARN, "guest-pci %s: cannot enable the function: %s", name,
		       strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * Where BAR bar starts inside its page. sysfs maps resource<bar> from the
 * page that holds the BAR's start, so a BAR smaller than a page (ivshmem's
 * 256-byte register BAR0) that the kernel packed behind another function's
 * (it does, on hot-plug) sits at this offset in the mapping: without it we
 * would read and ring the neighbour's registers. From the `resource` file;
 * 0 without one (a fake tree) or for a line we cannot read.
 */
static size_t bar_page_offset(const char *root, const char *name, int bar)
{
	char path[512], line[128];
	unsigned long long start = 0;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/resource", root, name);
	f = fopen(path, "re");
	if (!f)
		return 0;
	for (int i = 0; i <= bar; i++)
		if (!fgets(line, sizeof(line), f) || (i == bar && sscanf(line, "%llx", &start) != 1))
			start = 0;
	fclose(f);
	return (size_t)(start & (pg - 1));
}

/* A short-lived mapping's guard flag: nobody looks at it. */
static int revoked_scratch;

static void *page_base(const volatile void *p)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (void *)((uintptr_t)p & ~(uintptr_t)(pg - 1));
}

/* Undo map_resource(). */
static void unmap_resource(const volatile void *p, uint64_t len)
{
	void *base = page_base(p);

	vp_mem_unguard_mapping(base);
	munmap(base, (size_t)len + (size_t)((uintptr_t)p - (uintptr_t)base));
}

/* A kept mapping's guard now sets the device's flag. */
static void guard_for(const volatile void *p, uint64_t len, int *revoked)
{
	void *base = page_base(p);

	vp_mem_unguard_mapping(base);
	vp_mem_guard_mapping(base, (size_t)len + (size_t)((uintptr_t)p - (uintptr_t)base),
			     PROT_READ | PROT_WRITE, revoked);
}

/*
 * Map resource<bar> of entry name whole, shared with prot (at its offset in
 * its page: bar_page_offset()). want: the size it must have (0: any size
 * from min up). -errno, or -EINVAL for the size. unmap_resource() undoes it.
 * The mapping is under the SIGBUS guard (vp_mem_guard_mapping()): the kernel
 * revokes it when the function is unplugged, and an access after that sets
 * *revoked (NULL: a scratch flag) instead of killing the process, once the
 * application installed the guard.
 */
static int map_resource_prot(const char *root, const char *name, int bar, uint64_t want,
			     uint64_t min, void **out, uint64_t *len, int *revoked, int prot)
{
	char path[512];
	struct stat sb;
	size_t off;
	void *p;
	int fd, e;

	snprintf(path, sizeof(path), "%s/%s/resource%d", root, name, bar);
	fd = open(path, (prot & PROT_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	if (sb.st_size <= 0 || (uint64_t)sb.st_size < min || (want && (uint64_t)sb.st_size != want) ||
	    (uint64_t)sb.st_size > SIZE_MAX) {
		close(fd);
		return -EINVAL;
	}
	off = bar_page_offset(root, name, bar);
	if ((uint64_t)sb.st_size > SIZE_MAX - off) {
		close(fd);
		return -EINVAL;
	}
	p = mmap(NULL, off + (size_t)sb.st_size, prot, MAP_SHARED, fd, 0);
	e = p == MAP_FAILED ? -errno : 0;
	close(fd);
	if (e)
		return e;
	if (vp_mem_guard_mapping(p, off + (size_t)sb.st_size, prot,
				 revoked ? revoked : &revoked_scratch) < 0)
		vp_log(VP_LOG_WARN, "guest-pci %s: resource%d is not under the SIGBUS guard "
		       "(its table is full): an unplug without GONE would kill us", name, bar);
	*out = (char *)p + off;
	*len = (uint64_t)sb.st_size;
	return 0;
}

static int map_resource(const char *root, const char *name, int bar, uint64_t want,
			uint64_t min, void **out, uint64_t *len, int *revoked)
{
	return map_resource_prot(root, name, bar, want, min, out, len, revoked,
				 PROT_READ | PROT_WRITE);
}

static uint32_t load32(const volatile void *base, unsigned off)
{
	/* off is a multiple of 4 in a page-aligned mapping. */
	return __atomic_load_n((const volatile uint32_t *)base + off / 4, __ATOMIC_ACQUIRE);
}

/* The IVPosition of memory function name, or -errno. */
static int ivposition(const char *root, const char *name)
{
	uint64_t len;
	void *p;
	uint32_t v;

	if (map_resource(root, name, 0, BAR0_MAP, 0, &p, &len, NULL) < 0)
		return -ENODEV;
	v = load32(p, VP_IVSHMEM_IVPOSITION);
	unmap_resource(p, len);
	return v > 0xffff ? -ERANGE : (int)v;
}

/* Does sysfs still list entry name? */
static bool entry_exists(const char *root, const char *name)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", root, name);
	return name[0] && stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------------ */
/* One device                                                               */

static void unmap_memfn(struct vp_guestdev *d)
{
	vp_mem_free(d->mem);
	d->mem = NULL;
	if (d->bar2)
		unmap_resource(d->bar2, d->bar2_len);
	if (d->bar0)
		unmap_resource(d->bar0, BAR0_MAP);
	d->bar2 = NULL;
	d->bar0 = NULL;
	d->bar2_len = 0;
	d->mem_name[0] = 0;
}

static void set_name(struct vp_guestdev *d)
{
	char n[sizeof(d->name)];

	snprintf(n, sizeof(n), "%s+%s", d->mem_name[0] ? d->mem_name : "?", d->info_name);
	memcpy(d->name, n, sizeof(n));
}

/* Take the link down (no driver page: the caller writes the answer). */
static void let_go(struct vp_guestdev *d, const char *why)
{
	if (why)
		snprintf(d->reason, sizeof(d->reason), "%s", why);
	if (!d->net)
		return;
	gd_log(d, VP_LOG_INFO, "link down: %s", d->reason);
	/* The owner of the link reads its last stats in the event. */
	emit(d, VP_GUEST_DOWN);
	vp_net_free(d->net);
	d->net = NULL;
	d->dev.state = VP_DEV_STOPPED;
}

static void ring(struct vp_guestdev *d, unsigned vector)
{
	if (!d->bar0 || !d->have_snap)
		return;
	__atomic_store_n(&d->bar0[VP_IVSHMEM_DOORBELL / 4],
			 ((uint32_t)d->snap.daemon_peer << 16) | (vector & 0xffff), __ATOMIC_RELEASE);
	d->doorbells++;
}

/* The frontend's call (vp_net's notify hook): doorbell q to the daemon's peer. */
static void notify_frontend(void *opaque, unsigned q)
{
	struct vp_guestdev *d = opaque;

	ring(d, d->snap.queues[q].call_doorbell);
}

/* Page 1 answering the last snapshot; stopped: answer STOP too. */
static void write_driver(struct vp_guestdev *d, uint32_t status, bool stopped)
{
	struct vp_devinfo_driver p = { 0 };

	if (!d->window || d->foreign)
		return;
	p.driver_gen = ++d->driver_gen;
	p.driver_status = status;
	p.acked_gen = d->have_snap ? d->snap.generation : 0;
	if (!(status & VP_INFO_DS_FAILED))
		p.features_accepted = d->snap.features;
	for (unsigned q = 0; stopped && q < 2 && q < d->snap.num_queues; q++)
		if (d->snap.queues[q].num)
			p.stopped[q] = VP_INFO_STOPPED_VALID | d->pos[q];
	if (status & VP_INFO_DS_FAILED)
		snprintf(p.reason, sizeof(p.reason), "%s", d->reason);
	vp_devinfo_write_driver(d->window, &p);
	ring(d, VP_INFO_DB_DRIVER(d->snap.num_queues));
}

#define DS_OK (VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER | VP_INFO_DS_DRIVER_OK)

static void fail(struct vp_guestdev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct vp_guestdev *d, const char *fmt, ...)
{
	char why[REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	let_go(d, why);
	if (d->st == G_FAILED)
		return;
	d->st = G_FAILED;
	gd_log(d, VP_LOG_WARN, "device failed: %s", d->reason);
	write_driver(d, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_FAILED, false);
}

void vp_guestdev_fail(struct vp_guestdev *d, const char *why)
{
	if (d && d->st != G_GONE)
		fail(d, "%s", why ? why : "failed by the caller");
}

/* GONE, unplugged, or the watcher closing: nothing mapped stays. */
static void remove_dev(struct vp_guestdev *d, const char *why)
{
	bool was_paired = d->st != G_PAIRING;

	let_go(d, why);
	unmap_memfn(d);
	if (d->window)
		unmap_resource(d->window, VP_INFO_WINDOW_SIZE);
	d->window = NULL;
	d->st = G_GONE;
	gd_log(d, was_paired ? VP_LOG_INFO : VP_LOG_DEBUG, "removed: %s", why);
	if (was_paired)
		emit(d, VP_GUEST_REMOVED);
}

/* Find and map the memory function whose IVPosition is peer. */
static int pair(struct vp_guestdev *d, uint16_t peer)
{
	struct vp_guest *g = d->g;
	struct dirent *e;
	uint64_t len;
	void *p;
	DIR *dir;
	int r = -ENODEV, iv;

	dir = opendir(g->root);
	if (!dir)
		return -errno;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) >= NAME_MAX_SYSFS ||
		    !strcmp(e->d_name, d->info_name) || !is_ivshmem(g->root, e->d_name))
			continue;
		enable_function(g->root, e->d_name);
		iv = ivposition(g->root, e->d_name);
		if (iv != peer) {
			vp_log(VP_LOG_DEBUG, "guest-pci %s: IVPosition %d, not %u", e->d_name, iv, peer);
			continue;
		}
		/* Another function may claim the same id (sysfs is not ours to
		 * trust): one whose BAR2 is not the size announced is passed over. */
		if (map_resource(g->root, e->d_name, 0, BAR0_MAP, 0, &p, &len, &d->revoked) < 0)
			continue;
		iv = map_resource(g->root, e->d_name, 2, d->snap.bar2_size, 1, &d->bar2, &d->bar2_len,
				  &d->revoked);
		if (iv < 0) {
			vp_log(VP_LOG_DEBUG, "guest-pci %s: resource2 (want %" PRIu64 " bytes): %s",
			       e->d_name, d->snap.bar2_size, strerror(-iv));
			unmap_resource(p, BAR0_MAP);
			d->bar2 = NULL;
			r = -EMSGSIZE;
			continue;
		}
		d->bar0 = p;
		snprintf(d->mem_name, sizeof(d->mem_name), "%.*s", NAME_MAX_SYSFS - 1, e->d_name);
		r = 0;
		break;
	}
	closedir(dir);
	set_name(d);
	return r;
}

static bool same_layout(const struct vp_devinfo *a, const struct vp_devinfo *b)
{
	if (a->features != b->features || a->bar2_size != b->bar2_size ||
	    a->nregions != b->nregions || a->num_queues != b->num_queues ||
	    memcmp(a->regions, b->regions, sizeof(a->regions[0]) * a->nregions))
		return false;
	for (unsigned q = 0; q < 2; q++) {
		const struct vp_devinfo_queue *x = &a->queues[q], *y = &b->queues[q];

		if (x->num != y->num || x->flags != y->flags || x->desc != y->desc ||
		    x->avail != y->avail || x->used != y->used)
			return false;
	}
	return true;
}

/* The view vp_net_new() takes, from the snapshot and the mapping. */
static int build_view(struct vp_guestdev *d)
{
	const struct vp_devinfo *s = &d->snap;
	struct vp_device *v = &d->dev;
	int r;

	vp_mem_free(d->mem);
	d->mem = vp_mem_new();
	if (!d->mem)
		return -ENOMEM;
	r = vp_devinfo_mem_add(d->mem, s, VP_MEM_RW, d->bar2, d->bar2_len);
	if (r < 0)
		return r;
	memset(v, 0, sizeof(*v));
	v->id = s->device_id;
	v->type = s->device_type;
	memcpy(v->uuid, s->uuid, 16);
	v->dialect = VP_DIALECT_UNKNOWN;
	v->state = VP_DEV_READY;
	v->server_id = "guest-pci";
	v->peer_pid = -1;
	v->device_features = v->driver_features = s->features;
	v->regions = d->regions;
	v->rings = d->rings;
	r = vp_devinfo_regions(s, VP_MEM_RW, d->regions, VP_INFO_MAX_REGIONS);
	if (r < 0)
		return r;
	v->nregions = (unsigned)r;
	v->mem = d->mem;
	v->nrings = 2;
	for (unsigned q = 0; q < 2; q++) {
		const struct vp_devinfo_queue *iq = &s->queues[q];
		struct vp_dev_ring *rg = &d->rings[q];

		rg->num = iq->num;
		rg->last_avail_idx = iq->last_avail_idx;
		rg->desc = iq->desc;
		rg->avail = iq->avail;
		rg->used = iq->used;
		rg->addr_set = true;
		rg->enabled = iq->flags & VP_INFO_Q_ENABLED;
		rg->started = iq->flags & VP_INFO_Q_STARTED;
		rg->kick_fd = rg->call_fd = -1;	/* kicks: polled; calls: doorbells */
	}
	v->config_len = (uint16_t)(s->config_len < VP_PCI_CONFIG_MAX ? s->config_len
								     : VP_PCI_CONFIG_MAX);
	memcpy(v->config, s->config, v->config_len);
	v->generation = s->generation;
	return 0;
}

/* READY: attach from the snapshot's last_avail_idx. */
/*
 * Where a driver that comes to running rings starts: the ring's used index.
 * The window's last_avail_idx is where the rings were when the daemon last
 * heard of them (the handshake, or a STOP); a driver that died without a
 * STOP (vp-vm killed and started again) left them further on, and walking
 * from the older index would hand the frontend its old buffers again. Every
 * buffer taken and not yet used is taken again (a frame may be sent twice,
 * none is lost). The used index comes from the frontend's RAM: taken only
 * when it is at most num behind the avail index, as a ring allows.
 */
static int ring_idx(const struct vp_mem *mem, uint64_t gpa)
{
	/* The idx word of an avail or used ring. A plain load: process_vm_readv()
	 * (vp_mem_read_safe()) cannot read a sysfs BAR mapping. */
	const uint16_t *p = gpa <= UINT64_MAX - 4 ? vp_mem_gpa_ptr(mem, gpa + 2, 2, VP_MEM_READ)
						   : NULL;

	if (!p || ((uintptr_t)p & 1))
		return -1;
	return __atomic_load_n((const volatile uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void resume_at_used(struct vp_guestdev *d)
{
	for (unsigned q = 0; q < 2; q++) {
		struct vp_dev_ring *rg = &d->rings[q];
		int avail = ring_idx(d->mem, rg->avail), used = ring_idx(d->mem, rg->used);

		if (avail < 0 || used < 0 || (uint16_t)(avail - used) > rg->num ||
		    used == rg->last_avail_idx)
			continue;
		gd_log(d, VP_LOG_INFO, "queue %u: resuming at the ring's used index %d, not %u "
		       "(a driver before us left it there)", q, used, rg->last_avail_idx);
		rg->last_avail_idx = (uint16_t)used;
	}
}

static void attach(struct vp_guestdev *d)
{
	const struct vp_devinfo *s = &d->snap;
	char u[40];
	int r;

	for (unsigned q = 0; q < 2; q++)
		if (!s->queues[q].num || s->queues[q].flags != VP_INFO_Q_ALL) {
			let_go(d, "rings not started");
			d->st = G_IDLE;
			write_driver(d, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER, false);
			return;
		}
	r = build_view(d);
	if (r < 0) {
		fail(d, "memory table unusable over BAR2 (%s)", strerror(-r));
		return;
	}
	resume_at_used(d);
	r = vp_net_new(&d->net, &d->dev, d->g->mode);
	if (r < 0) {
		d->net = NULL;
		fail(d, "cannot drive the rings: %s", strerror(-r));
		return;
	}
	vp_net_set_notify(d->net, notify_frontend, d);
	d->pos[0] = d->dev.rings[0].last_avail_idx;
	d->pos[1] = d->dev.rings[1].last_avail_idx;
	d->st = G_UP;
	d->reason[0] = 0;
	write_driver(d, DS_OK, false);
	vp_uuid_format(s->uuid, u);
	gd_log(d, VP_LOG_INFO,
	       "link up: device %" PRIu64 " (uuid %s, generation %u, features 0x%" PRIx64
	       ", resuming at %u/%u)", s->device_id, u, s->generation, s->features, d->pos[0],
	       d->pos[1]);
	emit(d, VP_GUEST_UP);
}

/* STOP: stop walking, say where, ring the daemon. */
static void stop(struct vp_guestdev *d)
{
	if (d->net) {
		/* Lent buffers not committed go back before we say where we are. */
		vp_net_tx_burst(d->net, NULL, 0, 0);
		if (!vp_net_broken(d->net)) {
			d->pos[0] = vp_net_last_avail(d->net, VP_NET_Q_RX);
			d->pos[1] = vp_net_last_avail(d->net, VP_NET_Q_TX);
		}
	} else if (d->st != G_STOPPED) {
		/* Never walked since the last attach point: we are where it said. */
		d->pos[0] = d->snap.queues[0].last_avail_idx;
		d->pos[1] = d->snap.queues[1].last_avail_idx;
	}
	let_go(d, "frontend stopping (STOP)");
	d->st = G_STOPPED;
	gd_log(d, VP_LOG_INFO, "stopped at %u/%u (generation %u)", d->pos[0], d->pos[1],
	       d->snap.generation);
	write_driver(d, DS_OK, true);
}

/* What we can drive, checked on every accepted snapshot. */
static int usable(struct vp_guestdev *d, const struct vp_devinfo *s, char *why, size_t n)
{
	if (s->device_type != VP_VIRTIO_ID_NET)
		return snprintf(why, n, "device type %u is not virtio-net", s->device_type), -1;
	if (s->num_queues < 2)
		return snprintf(why, n, "%u queues: virtio-net needs 2", s->num_queues), -1;
	if (!(s->features & (1ull << VIRTIO_F_VERSION_1)))
		return snprintf(why, n, "frontend driver without VERSION_1"), -1;
	if (s->features & ~d->g->features)
		return snprintf(why, n, "features 0x%" PRIx64 " we do not drive",
				s->features & ~d->g->features), -1;
	if (d->bar2 && s->bar2_size != d->bar2_len)
		return snprintf(why, n, "bar2_size %" PRIu64 " but the memory function's BAR2 is %"
				PRIu64 " bytes", s->bar2_size, d->bar2_len), -1;
	return 0;
}

/* The generation moved: take a snapshot and act on it. */
static void new_generation(struct vp_guestdev *d, uint32_t gen)
{
	struct vp_guest *g = d->g;
	struct vp_devinfo s;
	char why[REASON_MAX];
	int r;

	r = vp_devinfo_snapshot(d->window, &s, why, sizeof(why));
	d->gen_seen = gen;
	if (r == -EAGAIN)
		return;	/* being rewritten: the next change brings us back */
	if (r < 0) {
		if (d->st == G_PAIRING) {
			/* No pair without a trustworthy memory_peer; say so once per generation. */
			snprintf(d->reason, sizeof(d->reason), "window refused: %.100s", why);
			gd_log(d, VP_LOG_WARN, "%s", d->reason);
			write_driver(d, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_FAILED, false);
			return;
		}
		d->st = G_IDLE;	/* fail() below is not a no-op */
		fail(d, "window refused: %.100s", why);
		return;
	}
	d->gen_seen = s.generation;
	/* Another frontend's device: not paired, not written, not reported. */
	d->foreign = g->have_uuid && memcmp(s.uuid, g->uuid, 16);
	if (d->foreign) {
		if (d->st != G_PAIRING) {
			let_go(d, "now another frontend's (UUID)");
			unmap_memfn(d);
			emit(d, VP_GUEST_REMOVED);
		}
		d->st = G_PAIRING;
		d->snap = s;
		d->have_snap = true;
		set_name(d);
		return;
	}
	if (s.status & VP_INFO_ST_GONE) {
		d->snap = s;
		d->have_snap = true;
		write_driver(d, VP_INFO_DS_ACKNOWLEDGE, false);
		remove_dev(d, "frontend gone (GONE)");
		return;
	}
	if (!d->mem_name[0] || s.memory_peer != d->snap.memory_peer) {
		if (d->mem_name[0]) {
			let_go(d, "memory_peer changed");
			unmap_memfn(d);
		}
		d->snap = s;
		d->have_snap = true;
		r = pair(d, s.memory_peer);
		if (r < 0) {
			if (r == -EMSGSIZE)
				snprintf(d->reason, sizeof(d->reason),
					 "memory function (IVPosition %u) has a BAR2 of another size "
					 "than bar2_size %" PRIu64, s.memory_peer, s.bar2_size);
			else
				snprintf(d->reason, sizeof(d->reason),
					 "no memory function with IVPosition %u", s.memory_peer);
			d->st = G_PAIRING;
			d->gen_seen = 0;	/* look again at the next rescan */
			gd_log(d, VP_LOG_DEBUG, "not paired: %s", d->reason);
			if (r == -EMSGSIZE) {
				gd_log(d, VP_LOG_WARN, "%s", d->reason);
				write_driver(d, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_FAILED, false);
			}
			return;
		}
		if (d->st == G_PAIRING) {
			d->st = G_IDLE;
			gd_log(d, VP_LOG_INFO, "found: device %" PRIu64 ", memory function IVPosition %u, "
			       "BAR2 %" PRIu64 " bytes", s.device_id, s.memory_peer, d->bar2_len);
			emit(d, VP_GUEST_NEW);
		}
	}
	if (d->net && !(s.status & VP_INFO_ST_STOP) && (s.status & VP_INFO_ST_READY) &&
	    same_layout(&d->snap, &s) && !memcmp(s.uuid, d->snap.uuid, 16)) {
		d->snap = s;	/* status or config news: the rings go on */
		d->dev.generation = s.generation;
		write_driver(d, DS_OK, false);
		return;
	}
	if (usable(d, &s, why, sizeof(why)) < 0) {
		d->snap = s;
		d->st = G_IDLE;
		fail(d, "%s", why);
		return;
	}
	d->snap = s;
	d->have_snap = true;
	if (s.status & VP_INFO_ST_STOP) {
		stop(d);
	} else if ((s.status & (VP_INFO_ST_PRESENT | VP_INFO_ST_READY)) ==
		   (VP_INFO_ST_PRESENT | VP_INFO_ST_READY)) {
		let_go(d, "device republished: re-attaching");
		attach(d);
	} else {
		let_go(d, "frontend not ready");
		d->st = G_IDLE;
		write_driver(d, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER, false);
	}
}

/* ------------------------------------------------------------------------ */
/* The watcher                                                              */

static struct vp_guestdev *find_info(struct vp_guest *g, const char *name)
{
	for (unsigned i = 0; i < VP_GUEST_MAX_DEVICES; i++)
		if (g->devs[i].used && !strcmp(g->devs[i].info_name, name))
			return &g->devs[i];
	return NULL;
}

static void forget(struct vp_guestdev *d)
{
	if (d->st != G_GONE)
		remove_dev(d, "the function was unplugged");
	memset(d, 0, sizeof(*d));
}

/* A function whose 8 KiB resource2 has the magic: a device to watch. */
static void consider(struct vp_guest *g, const char *name)
{
	struct vp_guestdev *d = NULL;
	uint64_t len;
	void *w;
	int r;

	enable_function(g->root, name);
	r = map_resource(g->root, name, 2, VP_INFO_WINDOW_SIZE, 0, &w, &len, NULL);
	if (r < 0) {
		vp_log(VP_LOG_DEBUG, "guest-pci %s: no info window: resource2: %s", name, strerror(-r));
		return;
	}
	if (__atomic_load_n((const uint64_t *)w, __ATOMIC_ACQUIRE) != VP_INFO_MAGIC) {
		unmap_resource(w, VP_INFO_WINDOW_SIZE);
		return;
	}
	for (unsigned i = 0, n = 0; i < VP_GUEST_MAX_DEVICES && n < g->max_devices; i++) {
		n += g->devs[i].used;
		if (!g->devs[i].used) {
			d = &g->devs[i];
			break;
		}
	}
	if (!d) {
		vp_log(VP_LOG_WARN, "guest-pci %s: ignored: %u devices watched already", name,
		       g->max_devices);
		unmap_resource(w, VP_INFO_WINDOW_SIZE);
		return;
	}
	memset(d, 0, sizeof(*d));
	d->g = g;
	d->used = true;
	d->st = G_PAIRING;
	d->window = w;
	guard_for(w, VP_INFO_WINDOW_SIZE, &d->revoked);
	snprintf(d->info_name, sizeof(d->info_name), "%s", name);
	set_name(d);
	d->driver_gen = load32(w, VP_INFO_DRIVER_OFFSET);
}

/* A device left GONE: has its (cold-plugged) window been published again? */
static void peek_gone(struct vp_guestdev *d)
{
	uint64_t len;
	void *w;

	if (map_resource(d->g->root, d->info_name, 2, VP_INFO_WINDOW_SIZE, 0, &w, &len,
			 &d->revoked) < 0)
		return;
	if (load32(w, offsetof(struct vp_info_daemon_page, generation)) == d->gen_seen) {
		unmap_resource(w, VP_INFO_WINDOW_SIZE);
		return;
	}
	d->window = w;
	d->st = G_PAIRING;
	d->have_snap = false;
	d->gen_seen = 0;
	memset(&d->snap, 0, sizeof(d->snap));
}

static void rescan(struct vp_guest *g)
{
	struct dirent *e;
	DIR *dir;

	for (unsigned i = 0; i < VP_GUEST_MAX_DEVICES; i++) {
		struct vp_guestdev *d = &g->devs[i];

		if (!d->used)
			continue;
		if (!entry_exists(g->root, d->info_name) ||
		    (d->mem_name[0] && !entry_exists(g->root, d->mem_name)))
			forget(d);
		else if (d->st == G_GONE)
			peek_gone(d);
		else if (d->st == G_PAIRING && !d->foreign)
			d->gen_seen = 0;	/* try the pairing again */
	}
	dir = opendir(g->root);
	if (!dir)
		return;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) >= NAME_MAX_SYSFS ||
		    find_info(g, e->d_name) || !is_ivshmem(g->root, e->d_name))
			continue;
		consider(g, e->d_name);
	}
	closedir(dir);
}

int vp_guest_new(struct vp_guest **out, const struct vp_guest_config *cfg)
{
	struct vp_guest *g;

	if (!out || !cfg)
		return -EINVAL;
	*out = NULL;
	if (cfg->mode == VP_NET_IRQ) {
		vp_log(VP_LOG_ERR, "guest-pci: interrupt mode is not available: the frontend's kicks "
		       "are MSI-X interrupts of the memory function, which userspace in this "
		       "guest cannot receive (no VFIO no-IOMMU); use poll or adaptive");
		return -ENOTSUP;
	}
	if ((unsigned)cfg->mode > VP_NET_ADAPTIVE)
		return -EINVAL;
	if (cfg->features & (1ull << VIRTIO_F_RING_PACKED)) {
		vp_log(VP_LOG_ERR, "guest-pci: packed rings (RING_PACKED) cannot be driven here: the "
		       "info window carries split ring positions only");
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->root = strdup(cfg->sysfs_root ? cfg->sysfs_root : VP_GUEST_SYSFS_DEFAULT);
	if (!g->root) {
		free(g);
		return -ENOMEM;
	}
	g->have_uuid = cfg->have_uuid;
	memcpy(g->uuid, cfg->uuid, 16);
	g->mode = cfg->mode;
	g->features = cfg->features ? cfg->features : VP_NET_FEATURES;
	g->max_devices = cfg->max_devices && cfg->max_devices < VP_GUEST_MAX_DEVICES
				 ? cfg->max_devices : VP_GUEST_MAX_DEVICES;
	g->on_event = cfg->on_event;
	g->opaque = cfg->opaque;
	*out = g;
	return 0;
}

void vp_guest_free(struct vp_guest *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < VP_GUEST_MAX_DEVICES; i++)
		if (g->devs[i].used) {
			struct vp_guestdev *d = &g->devs[i];

			if (d->st != G_GONE) {
				if (d->net) {
					/* Leave the rings where a next driver can resume. */
					let_go(d, "shutting down");
				}
				write_driver(d, VP_INFO_DS_ACKNOWLEDGE, false);
				remove_dev(d, "shutting down");
			}
			memset(d, 0, sizeof(*d));
		}
	free(g->root);
	free(g);
}

int vp_guest_control(struct vp_guest *g)
{
	uint64_t t = now_ns();

	g->events = 0;
	if (t >= g->next_scan_ns) {
		rescan(g);
		g->next_scan_ns = t + VP_GUEST_RESCAN_MS * 1000000ull;
	}
	for (unsigned i = 0; i < VP_GUEST_MAX_DEVICES; i++) {
		struct vp_guestdev *d = &g->devs[i];
		uint32_t gen;

		if (d->used && d->st != G_GONE && __atomic_load_n(&d->revoked, __ATOMIC_ACQUIRE)) {
			/* Hot-unplugged without GONE: what we mapped reads zeros now. */
			remove_dev(d, "the kernel took the function's BARs away (unplugged "
				   "without GONE)");
			__atomic_store_n(&d->revoked, 0, __ATOMIC_RELEASE);	/* all unmapped */
			continue;
		}
		if (!d->used || !d->window)
			continue;
		gen = load32(d->window, offsetof(struct vp_info_daemon_page, generation));
		if (gen != d->gen_seen)
			new_generation(d, gen);
		if (d->net && vp_net_broken(d->net))
			fail(d, "ring broken: %s", vp_net_broken(d->net));
	}
	return g->events;
}

int vp_guest_timeout(const struct vp_guest *g)
{
	uint64_t t = now_ns();

	return t >= g->next_scan_ns ? 0 : (int)((g->next_scan_ns - t + 999999) / 1000000);
}

int vp_guest_registry(const struct vp_guest *g, struct vp_pci_info *out)
{
	int e;

	vp_pci_info_clear(out);
	for (unsigned i = 0; i < VP_GUEST_MAX_DEVICES; i++) {
		const struct vp_guestdev *d = &g->devs[i];

		if (!d->used || !d->net)
			continue;
		e = vp_pci_info_add(out, &d->dev);
		if (e < 0)
			return e;
	}
	return (int)vp_pci_info_count(out);
}

struct vp_guestdev *vp_guest_find(const struct vp_guest *g, const uint8_t uuid[16])
{
	for (unsigned i = 0; i < VP_GUEST_MAX_DEVICES; i++) {
		const struct vp_guestdev *d = &g->devs[i];

		if (d->used && d->have_snap && d->st != G_GONE && !memcmp(d->snap.uuid, uuid, 16))
			return (struct vp_guestdev *)d;
	}
	return NULL;
}

struct vp_net *vp_guestdev_net(const struct vp_guestdev *d)
{
	return d->net;
}

const struct vp_device *vp_guestdev_device(const struct vp_guestdev *d)
{
	return &d->dev;
}

const struct vp_devinfo *vp_guestdev_info(const struct vp_guestdev *d)
{
	return &d->snap;
}

const char *vp_guestdev_name(const struct vp_guestdev *d)
{
	return d->name;
}

const char *vp_guestdev_reason(const struct vp_guestdev *d)
{
	return d->reason;
}

bool vp_guestdev_failed(const struct vp_guestdev *d)
{
	return d->st == G_FAILED;
}

uint64_t vp_guestdev_doorbells(const struct vp_guestdev *d)
{
	return d->doorbells;
}

/* ------------------------------------------------------------------------ */
/* A 2.1 peer (docs/window21.md 9, docs/device.md 8)                        */

struct vp_guest21 {
	char slot[NAME_MAX_SYSFS];     /* "0000:00:05": functions .0, .1 and .2 */
	unsigned me;
	volatile uint32_t *bar0;       /* .0: the doorbell function's registers */
	void *my, *hdr, *other;        /* .0 BAR2 (rw), .1 and .2 BAR2 (read-only) */
	uint64_t my_len, hdr_len, other_len;
	struct vp_net21 *net;
	uint64_t doorbells;
	int revoked;
	int vfio_container, vfio_group, vfio_dev;  /* irq: .0 through VFIO, -1 */
};

static void guest21_vfio_close(struct vp_guest21 *g)
{
	close_fd(&g->vfio_dev);  /* VFIO disables MSI-X and lets go of the eventfds */
	close_fd(&g->vfio_group);
	close_fd(&g->vfio_container);
}

/* An MSI-X message is a write by the device: QEMU drops it unless the
 * function is a bus master, which nobody but us sets under VFIO. */
static int vfio_bus_master(int dev)
{
	struct vfio_region_info cfg = { .argsz = sizeof(cfg),
					.index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t cmd;
	off_t at;

	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0)
		return -errno;
	at = (off_t)(cfg.offset + PCI_COMMAND);
	if (pread(dev, &cmd, sizeof(cmd), at) != (ssize_t)sizeof(cmd))
		return -EIO;
	cmd = htole16((uint16_t)(le16toh(cmd) | PCI_COMMAND_MASTER));
	return pwrite(dev, &cmd, sizeof(cmd), at) == (ssize_t)sizeof(cmd) ? 0 : -EIO;
}

/*
 * Our wake-ups (docs/window21.md 9): the other's doorbells are MSI-X vectors
 * 0 (frames for us) and 1 (our slots freed) of .0, which userspace in a
 * guest can have only through VFIO: .0 bound to vfio-pci (its IOMMU group
 * viable: .1 and .2 without a driver), an IOMMU in the guest. The BARs stay
 * mapped through sysfs (VFIO never requests them). -ENOTSUP (said why) when
 * that is not so; *rx and *tx: the two eventfds.
 */
static int guest21_vfio(struct vp_guest21 *g, const char *root, int *rx, int *tx)
{
	char path[512], link[256], f0[NAME_MAX_SYSFS + 2];
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSIX_IRQ_INDEX };

	/* struct vfio_irq_set, then its data: two eventfds */
	uint8_t buf[sizeof(struct vfio_irq_set) + 2 * sizeof(int32_t)] __attribute__((aligned(8)));
	struct vfio_irq_set *irq = (struct vfio_irq_set *)buf;
	int32_t fds[2];
	const char *why = NULL, *grp;
	ssize_t n;
	int r;

	*rx = *tx = -1;
	snprintf(f0, sizeof(f0), "%s.0", g->slot);
	snprintf(path, sizeof(path), "%s/%s/driver", root, f0);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (n <= 0 || strcmp(strrchr(link, '/') ? strrchr(link, '/') + 1 : link, "vfio-pci")) {
		vp_log(VP_LOG_INFO, "guest-pci 2.1 %s: .0 is not bound to vfio-pci: no interrupts "
		       "(bind it, with an IOMMU in the guest, for irq)", g->slot);
		return -ENOTSUP;
	}
	snprintf(path, sizeof(path), "%s/%s/iommu_group", root, f0);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	grp = strrchr(link, '/');
	if (n <= 0 || !grp || !grp[1]) {
		vp_log(VP_LOG_WARN, "guest-pci 2.1 %s: .0 has no IOMMU group", g->slot);
		return -ENOTSUP;
	}
	g->vfio_container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	snprintf(path, sizeof(path), "/dev/vfio/%s", grp + 1);
	g->vfio_group = open(path, O_RDWR | O_CLOEXEC);
	if (g->vfio_container < 0 || g->vfio_group < 0)
		why = "cannot open /dev/vfio";
	else if (ioctl(g->vfio_container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
		 ioctl(g->vfio_container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) <= 0)
		why = "no VFIO type1 IOMMU";
	else if (ioctl(g->vfio_group, VFIO_GROUP_GET_STATUS, &gs) < 0 ||
		 !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		why = "its IOMMU group is not viable (another function has a driver)";
	else if (ioctl(g->vfio_group, VFIO_GROUP_SET_CONTAINER, &g->vfio_container) < 0 ||
		 ioctl(g->vfio_container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		why = "cannot set up the VFIO container";
	else if ((g->vfio_dev = ioctl(g->vfio_group, VFIO_GROUP_GET_DEVICE_FD, f0)) < 0)
		why = "cannot get the VFIO device";
	else if (ioctl(g->vfio_dev, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0 || ii.count < 2 ||
		 !(ii.flags & VFIO_IRQ_INFO_EVENTFD))
		why = "no two MSI-X vectors with eventfds";
	else if (vfio_bus_master(g->vfio_dev) < 0)
		why = "cannot make .0 a bus master (its MSI-X messages would be dropped)";
	if (why) {
		vp_log(VP_LOG_WARN, "guest-pci 2.1 %s: no interrupts through VFIO: %s (%s)", g->slot,
		       why, strerror(errno));
		guest21_vfio_close(g);
		return -ENOTSUP;
	}
	*rx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*tx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	memset(buf, 0, sizeof(buf));
	irq->argsz = sizeof(buf);
	irq->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	irq->index = VFIO_PCI_MSIX_IRQ_INDEX;
	irq->start = 0;
	irq->count = 2;
	fds[0] = *rx;
	fds[1] = *tx;
	memcpy(buf + sizeof(*irq), fds, sizeof(fds));
	if (*rx < 0 || *tx < 0 || ioctl(g->vfio_dev, VFIO_DEVICE_SET_IRQS, buf) < 0) {
		r = -errno;
		vp_log(VP_LOG_WARN, "guest-pci 2.1 %s: cannot route MSI-X to eventfds: %s", g->slot,
		       strerror(-r));
		close_fd(rx);
		close_fd(tx);
		guest21_vfio_close(g);
		return r;
	}
	vp_log(VP_LOG_INFO, "guest-pci 2.1 %s: interrupts: MSI-X vectors 0 and 1 of %s through "
	       "VFIO (IOMMU group %s)", g->slot, f0, grp + 1);
	return 0;
}

/* Ring the other peer: vector 0 its RX (frames for it), 1 its TX (slots freed). */
static void notify21(void *opaque, bool tx)
{
	struct vp_guest21 *g = opaque;

	__atomic_store_n(&g->bar0[VP_IVSHMEM_DOORBELL / 4],
			 ((uint32_t)(1 - g->me) << 16) | (tx ? 1u : 0u), __ATOMIC_RELEASE);
	g->doorbells++;
}

static void guest21_unmap(struct vp_guest21 *g)
{
	if (g->bar0)
		unmap_resource(g->bar0, BAR0_MAP);
	if (g->my)
		unmap_resource(g->my, g->my_len);
	if (g->hdr)
		unmap_resource(g->hdr, g->hdr_len);
	if (g->other)
		unmap_resource(g->other, g->other_len);
	g->bar0 = NULL;
	g->my = g->hdr = g->other = NULL;
}

/* Function .1 of a slot whose BAR2 is a 2.1 header: the slot's name, or false. */
static bool is_header_fn(const char *root, const char *name, char *slot, size_t n)
{
	size_t len = strlen(name);
	uint32_t magic;
	uint64_t blen;
	void *p;

	if (len < 3 || len >= n || strcmp(name + len - 2, ".1") || !is_ivshmem(root, name))
		return false;
	enable_function(root, name);
	if (map_resource_prot(root, name, 2, VP21_HEADER_SIZE, 0, &p, &blen, NULL,
			      PROT_READ) < 0)
		return false;
	magic = le32toh(load32(p, 0));
	unmap_resource(p, blen);
	if (magic != VP21_MAGIC)
		return false;
	memcpy(slot, name, len - 2);
	slot[len - 2] = 0;
	return true;
}

static int guest21_map(struct vp_guest21 *g, const char *root)
{
	char f0[NAME_MAX_SYSFS + 2], f1[NAME_MAX_SYSFS + 2], f2[NAME_MAX_SYSFS + 2];
	uint64_t len;
	void *p;
	int iv, r;

	snprintf(f0, sizeof(f0), "%s.0", g->slot);
	snprintf(f1, sizeof(f1), "%s.1", g->slot);
	snprintf(f2, sizeof(f2), "%s.2", g->slot);
	if (!is_ivshmem(root, f0) || !is_ivshmem(root, f2)) {
		vp_log(VP_LOG_WARN, "guest-pci 2.1 %s: a header at .1 but no ivshmem functions at "
		       ".0 and .2", g->slot);
		return -ENODEV;
	}
	enable_function(root, f0);
	enable_function(root, f2);
	/* Our id is the doorbell function's IVPosition: the daemon's ivshmem
	 * server sets it, the other peer cannot. */
	iv = ivposition(root, f0);
	if (iv < 0 || iv >= (int)VP21_PEERS) {
		vp_log(VP_LOG_WARN, "guest-pci 2.1 %s: IVPosition %d of .0 is not a peer id (0, 1)",
		       g->slot, iv);
		return -EINVAL;
	}
	g->me = (unsigned)iv;
	r = map_resource(root, f0, 0, BAR0_MAP, 0, &p, &len, &g->revoked);
	if (!r) {
		g->bar0 = p;
		r = map_resource(root, f0, 2, 0, VP21_PAGE, &g->my, &g->my_len, &g->revoked);
	}
	if (!r)
		r = map_resource_prot(root, f1, 2, VP21_HEADER_SIZE, 0, &g->hdr, &g->hdr_len,
				      &g->revoked, PROT_READ);
	if (!r)
		r = map_resource_prot(root, f2, 2, 0, VP21_PAGE, &g->other, &g->other_len,
				      &g->revoked, PROT_READ);
	if (r < 0)
		vp_log(VP_LOG_WARN, "guest-pci 2.1 %s: cannot map the functions' BARs: %s",
		       g->slot, strerror(-r));
	return r;
}

int vp_guest21_open(struct vp_guest21 **out, const char *sysfs_root, enum vp_net_mode mode)
{
	const char *root = sysfs_root ? sysfs_root : VP_GUEST_SYSFS_DEFAULT;
	struct vp_net21_map m = { 0 };
	struct vp_guest21 *g;
	struct dirent **ents;
	int n, r = -ENODEV;

	*out = NULL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->vfio_container = g->vfio_group = g->vfio_dev = -1;
	/* Sorted: with several 2.1 slots the first is taken, always the same. */
	n = scandir(root, &ents, NULL, alphasort);
	if (n < 0) {
		r = -errno;
		free(g);
		return r;
	}
	for (int i = 0; i < n; i++) {
		if (!g->slot[0] && ents[i]->d_name[0] != '.')
			is_header_fn(root, ents[i]->d_name, g->slot, sizeof(g->slot));
		free(ents[i]);
	}
	free(ents);
	if (g->slot[0])
		r = guest21_map(g, root);
	if (!r) {
		m = (struct vp_net21_map){
			.peer = g->me, .header = g->hdr, .header_len = g->hdr_len,
			.my = g->my, .my_len = g->my_len, .other = g->other,
			.other_len = g->other_len, .notify = notify21, .opaque = g,
		};
		/* irq: interrupts or nothing; adaptive: interrupts where VFIO
		 * gives them, else polling (said so). */
		if (mode != VP_NET_POLL) {
			r = guest21_vfio(g, root, &m.rx_fd, &m.tx_fd);
			m.wake_fds = !r;
			if (r < 0 && mode == VP_NET_ADAPTIVE) {
				vp_log(VP_LOG_INFO, "guest-pci 2.1 %s: polling", g->slot);
				mode = VP_NET_POLL;
				r = 0;
			}
		}
	}
	if (!r)
		r = vp_net21_new_mapped(&g->net, &m, mode);
	if (r < 0) {
		guest21_vfio_close(g);
		guest21_unmap(g);
		free(g);
		return r;
	}
	vp_log(VP_LOG_INFO, "guest-pci 2.1 %s: peer %u of a window (sections of %" PRIu64
	       " and %" PRIu64 " bytes)", g->slot, g->me, g->my_len, g->other_len);
	*out = g;
	return 0;
}

struct vp_net21 *vp_guest21_net(const struct vp_guest21 *g)
{
	return g->net;
}

const char *vp_guest21_name(const struct vp_guest21 *g)
{
	return g->slot;
}

bool vp_guest21_revoked(const struct vp_guest21 *g)
{
	return __atomic_load_n(&g->revoked, __ATOMIC_RELAXED) != 0;
}

void vp_guest21_close(struct vp_guest21 *g)
{
	if (!g)
		return;
	/* Detaches: writes our section and rings the other. Under the SIGBUS
	 * guard even if a BAR was revoked (the access only sets the flag). */
	vp_net21_free(g->net);
	guest21_vfio_close(g);
	guest21_unmap(g);
	free(g);
}
