/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The info window of a vhost-pci device: publish, snapshot, check.
 *
 * Security model
 *  - Untrusted, guest side: all of page 0. The daemon is the only writer by
 *    contract, but the window is shared memory another VM's host process
 *    writes; the snapshot is copied out first and every rule of
 *    docs/device.md 4.4 is checked on the copy, never on the window.
 *  - Untrusted, host side: all of page 1 (a guest writes it whenever it
 *    likes). It is copied once and the copy is checked; nothing in page 0 is
 *    ever read back by the daemon (a guest may scribble there too).
 *  - Promise: a snapshot that passes describes regions inside the BAR and
 *    rings inside those regions; an accepted driver page answers a
 *    generation the daemon published and claims nothing it was not offered.
 *  - Not covered: the frontend's RAM behind the regions changes under the
 *    backend all the time; lib/vring.c copies and checks every ring entry.
 *
 * Every access to the window is an atomic load or store of an aligned word
 * (relaxed unless said otherwise), so that a concurrent writer is a data race
 * the memory model allows, and no access is torn below 4 or 8 bytes.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#ifndef __KERNEL__	/* the guest kernel driver builds the guest side (guest/linux/) */
#include <sys/stat.h>
#endif

#include "vhostpci/devinfo.h"
#include "vhostpci/server.h"
#include "devinfo_internal.h"
#ifndef __KERNEL__
#include "util.h"
#endif

#define PAGE_WORDS (VP_INFO_PAGE_SIZE / 8)
/* The driver page bytes that carry fields; the rest is reserved. */
#define DRV_USED offsetof(struct vp_info_driver_page, reserved2)

__attribute__((format(printf, 3, 4)))
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* NULL, or not aligned for the word-sized atomics every access is made of. */
static bool misaligned(const volatile void *window)
{
	return !window || ((uintptr_t)window & 7);
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* [a, a + alen) and [b, b + blen), both non-empty and not wrapping. */
static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a <= b + (blen - 1) && b <= a + (alen - 1);
}

/* Is [addr, addr + len) inside one region? No end is computed that could wrap. */
static bool in_one_region(const struct vp_devinfo *in, uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < in->nregions; i++) {
		const struct vp_devinfo_region *r = &in->regions[i];
		uint64_t off = addr - r->gpa;	/* wraps to >= size below gpa */

		if (off < r->size && len <= r->size - off)
			return true;
	}
	return false;
}

static int check_ring(const struct vp_devinfo *in, unsigned q, const char *part, uint64_t addr,
		      uint64_t len, uint64_t align, char *why, size_t whylen)
{
	if (addr % align)
		return fail(why, whylen, "queue %u: %s ring 0x%" PRIx64 " not %" PRIu64
			    "-byte aligned", q, part, addr, align);
	if (!in_one_region(in, addr, len))
		return fail(why, whylen, "queue %u: %s ring 0x%" PRIx64 "+0x%" PRIx64
			    " not inside one region", q, part, addr, len);
	return 0;
}

static int check_queue(const struct vp_devinfo *in, unsigned q, char *why, size_t whylen)
{
	const struct vp_devinfo_queue *vq = &in->queues[q];
	int err;

	if (vq->num == 0) {
		if (vq->flags)
			return fail(why, whylen, "queue %u: absent but flags 0x%x", q, vq->flags);
		return 0;
	}
	if (!pow2(vq->num) || vq->num > VP_INFO_MAX_RING)
		return fail(why, whylen, "queue %u: size %u not a power of two <= %u", q,
			    vq->num, VP_INFO_MAX_RING);
	if (vq->flags & ~VP_INFO_Q_ALL)
		return fail(why, whylen, "queue %u: unknown flags 0x%x", q, vq->flags);
	if (vq->kick_vector != VP_INFO_VEC_KICK(q) || vq->call_doorbell != VP_INFO_DB_CALL(q))
		return fail(why, whylen, "queue %u: kick vector %u / call doorbell %u, not %u / %u",
			    q, vq->kick_vector, vq->call_doorbell, VP_INFO_VEC_KICK(q),
			    VP_INFO_DB_CALL(q));
	/* The split ring's parts (VIRTIO 1.x 2.7), event words included. */
	err = check_ring(in, q, "desc", vq->desc, 16ull * vq->num, 16, why, whylen);
	if (!err)
		err = check_ring(in, q, "avail", vq->avail, 6 + 2ull * vq->num, 2, why, whylen);
	if (!err)
		err = check_ring(in, q, "used", vq->used, 6 + 8ull * vq->num, 4, why, whylen);
	return err;
}

int vp_devinfo_check(const struct vp_devinfo *in, char *why, size_t whylen)
{
	int err;

	if (!in)
		return fail(why, whylen, "no device info");
	if (in->generation == 0 || (in->generation & 1))
		return fail(why, whylen, "generation %" PRIu32 " not even and non-zero",
			    in->generation);
	if (in->status & ~VP_INFO_ST_ALL)
		return fail(why, whylen, "unknown status bits 0x%" PRIx32, in->status);
	if (in->num_queues > VP_INFO_MAX_QUEUES)
		return fail(why, whylen, "%u queues, at most %u", in->num_queues,
			    VP_INFO_MAX_QUEUES);
	if (in->nregions > VP_INFO_MAX_REGIONS)
		return fail(why, whylen, "%u regions, at most %u", in->nregions,
			    VP_INFO_MAX_REGIONS);
	if (in->config_len > VP_INFO_CONFIG_MAX)
		return fail(why, whylen, "config_len %" PRIu32 ", at most %u", in->config_len,
			    VP_INFO_CONFIG_MAX);
	if (!memchr(in->reason, 0, sizeof(in->reason)))
		return fail(why, whylen, "reason not terminated within %zu bytes",
			    sizeof(in->reason));
	if (!pow2(in->bar2_size))
		return fail(why, whylen, "bar2_size 0x%" PRIx64 " not a power of two",
			    in->bar2_size);
	for (unsigned i = 0; i < in->nregions; i++) {
		const struct vp_devinfo_region *r = &in->regions[i];

		if (r->flags)
			return fail(why, whylen, "region %u: unknown flags 0x%" PRIx64, i, r->flags);
		if (r->size == 0)
			return fail(why, whylen, "region %u: size 0", i);
		/* Page-aligned in both spaces, so a ring aligned in gpa is
		 * aligned in the BAR2 mapping too (vring.c needs both). */
		if ((r->gpa | r->size | r->offset) % VP_INFO_PAGE_SIZE)
			return fail(why, whylen, "region %u: gpa 0x%" PRIx64 " size 0x%" PRIx64
				    " offset 0x%" PRIx64 " not all 4 KiB aligned", i, r->gpa,
				    r->size, r->offset);
		if (r->offset > in->bar2_size || r->size > in->bar2_size - r->offset)
			return fail(why, whylen, "region %u: BAR2 0x%" PRIx64 "+0x%" PRIx64
				    " outside bar2_size 0x%" PRIx64, i, r->offset, r->size,
				    in->bar2_size);
		if (r->size - 1 > UINT64_MAX - r->gpa)
			return fail(why, whylen, "region %u: gpa 0x%" PRIx64 "+0x%" PRIx64
				    " wraps", i, r->gpa, r->size);
		for (unsigned j = 0; j < i; j++) {
			const struct vp_devinfo_region *o = &in->regions[j];

			if (overlap(r->gpa, r->size, o->gpa, o->size))
				return fail(why, whylen, "region %u overlaps region %u in gpa",
					    i, j);
			if (overlap(r->offset, r->size, o->offset, o->size))
				return fail(why, whylen, "region %u overlaps region %u in BAR2",
					    i, j);
		}
	}
	for (unsigned q = 0; q < in->num_queues; q++) {
		err = check_queue(in, q, why, whylen);
		if (err)
			return err;
	}
	return 0;
}

/* ---- encode / decode (host-endian <-> little-endian wire) --------------- */

#ifndef __KERNEL__	/* host side: publish() only */
static void encode(const struct vp_devinfo *in, struct vp_info_daemon_page *p)
{
	memset(p, 0, sizeof(*p));
	p->magic = htole64(VP_INFO_MAGIC);
	p->abi_version = htole32(VP_INFO_ABI_VERSION);
	p->page_size = htole32(VP_INFO_PAGE_SIZE);
	p->generation = htole32(in->generation);
	p->status = htole32(in->status);
	p->device_id = htole64(in->device_id);
	memcpy(p->uuid, in->uuid, sizeof(p->uuid));
	p->device_type = htole32(in->device_type);
	p->num_queues = htole16(in->num_queues);
	p->memory_peer = htole16(in->memory_peer);
	p->daemon_peer = htole16(in->daemon_peer);
	p->nregions = htole16(in->nregions);
	p->features = htole64(in->features);
	p->bar2_size = htole64(in->bar2_size);
	p->config_len = htole32(in->config_len);
	memcpy(p->config, in->config, in->config_len);
	for (unsigned i = 0; i < in->nregions; i++) {
		p->regions[i].gpa = htole64(in->regions[i].gpa);
		p->regions[i].size = htole64(in->regions[i].size);
		p->regions[i].offset = htole64(in->regions[i].offset);
		p->regions[i].flags = htole64(in->regions[i].flags);
	}
	for (unsigned q = 0; q < in->num_queues; q++) {
		const struct vp_devinfo_queue *s = &in->queues[q];
		struct vp_info_queue *d = &p->queues[q];

		d->num = htole16(s->num);
		d->flags = htole16(s->flags);
		d->last_avail_idx = htole16(s->last_avail_idx);
		d->desc = htole64(s->desc);
		d->avail = htole64(s->avail);
		d->used = htole64(s->used);
		d->kick_vector = htole16(s->kick_vector);
		d->call_doorbell = htole16(s->call_doorbell);
	}
	p->reason_gen = htole32(in->reason_gen);
	memcpy(p->reason, in->reason, sizeof(p->reason));
}
#endif

/* Every table entry is decoded, counts included as they are: the check that
 * follows judges them, and entries past a count are never looked at. */
static void decode(const struct vp_info_daemon_page *p, struct vp_devinfo *out)
{
	memset(out, 0, sizeof(*out));
	out->generation = le32toh(p->generation);
	out->status = le32toh(p->status);
	out->device_id = le64toh(p->device_id);
	memcpy(out->uuid, p->uuid, sizeof(out->uuid));
	out->device_type = le32toh(p->device_type);
	out->num_queues = le16toh(p->num_queues);
	out->memory_peer = le16toh(p->memory_peer);
	out->daemon_peer = le16toh(p->daemon_peer);
	out->nregions = le16toh(p->nregions);
	out->features = le64toh(p->features);
	out->bar2_size = le64toh(p->bar2_size);
	out->config_len = le32toh(p->config_len);
	memcpy(out->config, p->config, sizeof(out->config));
	for (unsigned i = 0; i < VP_INFO_MAX_REGIONS; i++) {
		out->regions[i].gpa = le64toh(p->regions[i].gpa);
		out->regions[i].size = le64toh(p->regions[i].size);
		out->regions[i].offset = le64toh(p->regions[i].offset);
		out->regions[i].flags = le64toh(p->regions[i].flags);
	}
	for (unsigned q = 0; q < VP_INFO_MAX_QUEUES; q++) {
		const struct vp_info_queue *s = &p->queues[q];
		struct vp_devinfo_queue *d = &out->queues[q];

		d->num = le16toh(s->num);
		d->flags = le16toh(s->flags);
		d->last_avail_idx = le16toh(s->last_avail_idx);
		d->desc = le64toh(s->desc);
		d->avail = le64toh(s->avail);
		d->used = le64toh(s->used);
		d->kick_vector = le16toh(s->kick_vector);
		d->call_doorbell = le16toh(s->call_doorbell);
	}
	out->reason_gen = le32toh(p->reason_gen);
	memcpy(out->reason, p->reason, sizeof(out->reason));
}

/* ---- host side ---------------------------------------------------------- */

uint32_t vp_devinfo_next_gen(uint32_t prev)
{
	uint32_t next = (prev & ~1u) + 2;

	return next ? next : 2;
}

#ifndef __KERNEL__
int vp_devinfo_from_device(const struct vp_device *dev, struct vp_devinfo *out, char *why,
			   size_t whylen)
{
	struct stat first, st;
	int err;

	if (!dev || !out)
		return fail(why, whylen, "no device");
	if (!dev->nregions)
		return fail(why, whylen, "no memory regions");
	if (dev->nregions > VP_INFO_MAX_REGIONS)
		return fail(why, whylen, "%u memory regions, the window holds %u",
			    dev->nregions, VP_INFO_MAX_REGIONS);
	if (dev->nrings > VP_INFO_MAX_QUEUES)
		return fail(why, whylen, "%u rings, the window holds %u", dev->nrings,
			    VP_INFO_MAX_QUEUES);
	if (dev->config_len > VP_INFO_CONFIG_MAX)
		return fail(why, whylen, "config of %u bytes, the window holds %u",
			    dev->config_len, VP_INFO_CONFIG_MAX);
	memset(out, 0, sizeof(*out));
	/* BAR2 is ONE fd from offset 0: a region's BAR2 offset is its fd offset,
	 * which means something only if every region is of that same file. */
	for (unsigned i = 0; i < dev->nregions; i++) {
		const struct vp_dev_region *r = &dev->regions[i];

		if (r->fd < 0 || fstat(r->fd, i ? &st : &first) < 0)
			return fail(why, whylen, "region %u: no usable fd", i);
		if (i && (st.st_dev != first.st_dev || st.st_ino != first.st_ino))
			return fail(why, whylen, "region %u is in another file than region 0: "
				    "BAR2 maps one", i);
		out->regions[i] = (struct vp_devinfo_region){
			.gpa = r->gpa, .size = r->size, .offset = r->fd_offset,
		};
	}
	out->nregions = (uint16_t)dev->nregions;
	for (unsigned q = 0; q < dev->nrings; q++) {
		const struct vp_dev_ring *r = &dev->rings[q];

		if (!r->addr_set || !r->num)
			continue;	/* absent: num 0 */
		out->queues[q] = (struct vp_devinfo_queue){
			.num = r->num,
			.flags = (uint16_t)((r->enabled ? VP_INFO_Q_ENABLED : 0) |
					    (r->started ? VP_INFO_Q_STARTED : 0)),
			.last_avail_idx = r->last_avail_idx,
			.kick_vector = (uint16_t)VP_INFO_VEC_KICK(q),
			.call_doorbell = (uint16_t)VP_INFO_DB_CALL(q),
			.desc = r->desc, .avail = r->avail, .used = r->used,
		};
	}
	out->num_queues = (uint16_t)dev->nrings;
	out->status = VP_INFO_ST_PRESENT | (dev->state == VP_DEV_READY ? VP_INFO_ST_READY : 0);
	out->device_id = dev->id;
	memcpy(out->uuid, dev->uuid, sizeof(out->uuid));
	out->device_type = dev->type;
	/* vhost-user's PROTOCOL_FEATURES (bit 30) was the socket's business, not a
	 * virtio feature: a driver that saw it would refuse the device. */
	out->features = dev->driver_features & ~(1ull << VP_VU_F_PROTOCOL_FEATURES);
	out->bar2_size = first.st_size > 0 ? (uint64_t)first.st_size : 0;
	out->config_len = dev->config_len;
	memcpy(out->config, dev->config, dev->config_len);
	/* Refuse here what the guest would refuse there. */
	out->generation = 2;
	err = vp_devinfo_check(out, why, whylen);
	out->generation = 0;
	return err;
}

int vp_devinfo_publish(void *window, const struct vp_devinfo *in)
{
	struct vp_info_daemon_page page;
	struct vp_info_daemon_page *w = window;
	const uint64_t *src = (const uint64_t *)&page;
	uint64_t *dst = (uint64_t *)window;
	const unsigned gen_word = offsetof(struct vp_info_daemon_page, generation) / 8;

	if (misaligned(window) || vp_devinfo_check(in, NULL, 0))
		return -EINVAL;
	encode(in, &page);
	__atomic_store_n(&w->generation, htole32(in->generation - 1), __ATOMIC_RELAXED);
	/* Orders the odd generation before every field store below; pairs with
	 * the acquire fence in vp_devinfo_snapshot() before its second read. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned i = 0; i < PAGE_WORDS; i++)
		if (i != gen_word)
			__atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
	/* generation shares its word with status: status alone, then generation. */
	__atomic_store_n(&w->status, page.status, __ATOMIC_RELAXED);
	/* Release: the fields before the even generation; pairs with the acquire
	 * load of the first generation read in vp_devinfo_snapshot(). */
	__atomic_store_n(&w->generation, page.generation, __ATOMIC_RELEASE);
	return 0;
}

int vp_devinfo_read_driver(const volatile void *window, const struct vp_devinfo *pub,
			   uint32_t oldest_gen, struct vp_devinfo_driver *out,
			   char *why, size_t whylen)
{
	const volatile struct vp_info_window *w = window;
	const volatile uint64_t *src = (const volatile uint64_t *)&w->driver;
	struct vp_info_driver_page p;
	uint64_t *dst = (uint64_t *)&p;
	uint64_t extra;

	if (misaligned(window) || !pub || !out)
		return fail(why, whylen, "no window, or not 8-byte aligned");
	/* One copy, checked below; the guest may rewrite the page meanwhile. The
	 * acquire pairs with the release store of driver_gen in
	 * vp_devinfo_write_driver(): a complete page for that driver_gen. */
	p.driver_gen = __atomic_load_n(&w->driver.driver_gen, __ATOMIC_ACQUIRE);
	p.driver_status = __atomic_load_n(&w->driver.driver_status, __ATOMIC_RELAXED);
	for (unsigned i = 1; i < DRV_USED / 8; i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);

	memset(out, 0, sizeof(*out));
	out->driver_gen = le32toh(p.driver_gen);
	out->driver_status = le32toh(p.driver_status);
	out->features_accepted = le64toh(p.features_accepted);
	out->acked_gen = le32toh(p.acked_gen);
	for (unsigned q = 0; q < VP_INFO_MAX_QUEUES; q++)
		out->stopped[q] = le32toh(p.stopped[q]);
	memcpy(out->reason, p.reason, sizeof(out->reason));

	/* acked_gen in [oldest_gen, pub->generation], modulo 2^32. */
	if (!out->acked_gen || (out->acked_gen & 1) ||
	    pub->generation - out->acked_gen > pub->generation - oldest_gen)
		return fail(why, whylen, "acked_gen %" PRIu32 " is not a generation published "
			    "(%" PRIu32 "..%" PRIu32 ")", out->acked_gen, oldest_gen,
			    pub->generation);
	if (out->driver_status & ~VP_INFO_DS_ALL)
		return fail(why, whylen, "unknown driver_status bits 0x%" PRIx32,
			    out->driver_status & ~VP_INFO_DS_ALL);
	extra = out->features_accepted & ~pub->features;
	if (extra)
		return fail(why, whylen, "features_accepted has bits 0x%" PRIx64
			    " that were not offered", extra);
	for (unsigned q = 0; q < VP_INFO_MAX_QUEUES; q++) {
		uint32_t s = out->stopped[q];

		if (!s)
			continue;
		if (!(s & VP_INFO_STOPPED_VALID) || (s & ~(VP_INFO_STOPPED_VALID |
							   VP_INFO_STOPPED_IDX_MASK)))
			return fail(why, whylen, "stopped[%u] = 0x%" PRIx32 ": neither 0 nor "
				    "valid with an index", q, s);
		if (q >= pub->num_queues || !pub->queues[q].num)
			return fail(why, whylen, "stopped[%u] for a queue that is absent", q);
	}
	if (!memchr(out->reason, 0, sizeof(out->reason)))
		return fail(why, whylen, "reason not terminated within %zu bytes",
			    sizeof(out->reason));
	return 0;
}
#endif /* !__KERNEL__ */

int vp_devinfo_check_stopped(uint32_t stopped, uint16_t num, uint16_t avail_idx, char *why,
			     size_t whylen)
{
	uint16_t idx = (uint16_t)(stopped & VP_INFO_STOPPED_IDX_MASK);

	if (!(stopped & VP_INFO_STOPPED_VALID))
		return fail(why, whylen, "stopped 0x%" PRIx32 " not valid", stopped);
	if ((uint16_t)(avail_idx - idx) > num)
		return fail(why, whylen, "stopped at %u, but the frontend's avail index is %u "
			    "(ring of %u)", idx, avail_idx, num);
	return 0;
}

/* ---- guest side --------------------------------------------------------- */

int vp_devinfo_snapshot_seam(const volatile void *window, struct vp_devinfo *out, char *why,
			     size_t whylen, void (*between)(void *arg), void *arg)
{
	const volatile struct vp_info_daemon_page *w = window;
	const volatile uint64_t *src = window;
	struct vp_info_daemon_page p;
	uint64_t *dst = (uint64_t *)&p;
	uint32_t g1, g2;
	int tries;

	if (misaligned(window) || !out)
		return fail(why, whylen, "no window, or not 8-byte aligned");
	for (tries = 0; tries < VP_DEVINFO_SNAPSHOT_TRIES; tries++) {
		/* Acquire pairs with the release store of the even generation in
		 * vp_devinfo_publish(): the fields of g1 are visible below. */
		if (tries)
			cpu_relax();
		g1 = le32toh(__atomic_load_n(&w->generation, __ATOMIC_ACQUIRE));
		if (g1 & 1)
			continue;
		for (unsigned i = 0; i < PAGE_WORDS; i++)
			dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
		/* Pairs with the release fence after the odd generation in
		 * vp_devinfo_publish(): if any load above saw the next write,
		 * the load below sees its odd (or a later) generation. */
		if (between)
			between(arg);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		g2 = le32toh(__atomic_load_n(&w->generation, __ATOMIC_RELAXED));
		if (g1 == g2)
			break;
	}
	if (tries == VP_DEVINFO_SNAPSHOT_TRIES) {
		fail(why, whylen, "the daemon kept rewriting the page (%d tries)", tries);
		return -EAGAIN;
	}
	if (le64toh(p.magic) != VP_INFO_MAGIC)
		return fail(why, whylen, "magic 0x%016" PRIx64 " is not an info window",
			    le64toh(p.magic));
	if (le32toh(p.abi_version) != VP_INFO_ABI_VERSION)
		return fail(why, whylen, "ABI version %" PRIu32 ", this driver knows %u",
			    le32toh(p.abi_version), VP_INFO_ABI_VERSION);
	if (le32toh(p.page_size) != VP_INFO_PAGE_SIZE)
		return fail(why, whylen, "page_size %" PRIu32 ", not %u", le32toh(p.page_size),
			    VP_INFO_PAGE_SIZE);
	decode(&p, out);
	return vp_devinfo_check(out, why, whylen);
}

int vp_devinfo_snapshot(const volatile void *window, struct vp_devinfo *out, char *why,
			size_t whylen)
{
	return vp_devinfo_snapshot_seam(window, out, why, whylen, NULL, NULL);
}

void vp_devinfo_write_driver(volatile void *window, const struct vp_devinfo_driver *in)
{
	volatile struct vp_info_window *w = window;
	volatile uint64_t *dst = (volatile uint64_t *)&w->driver;
	struct vp_info_driver_page p;
	const uint64_t *src = (const uint64_t *)&p;
	size_t n;

	if (misaligned(window) || !in)
		return;
	memset(&p, 0, sizeof(p));
	p.driver_gen = htole32(in->driver_gen);
	p.driver_status = htole32(in->driver_status);
	p.features_accepted = htole64(in->features_accepted);
	p.acked_gen = htole32(in->acked_gen);
	for (unsigned q = 0; q < VP_INFO_MAX_QUEUES; q++)
		p.stopped[q] = htole32(in->stopped[q]);
	n = strnlen(in->reason, sizeof(p.reason) - 1);
	memcpy(p.reason, in->reason, n);
	for (unsigned i = 1; i < PAGE_WORDS; i++)
		__atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
	__atomic_store_n(&w->driver.driver_status, p.driver_status, __ATOMIC_RELAXED);
	/* Release: the page before driver_gen; pairs with the acquire load of
	 * driver_gen in vp_devinfo_read_driver(). */
	__atomic_store_n(&w->driver.driver_gen, p.driver_gen, __ATOMIC_RELEASE);
}

int vp_devinfo_regions(const struct vp_devinfo *info, uint32_t prot, struct vp_dev_region *out,
		       unsigned max)
{
	if (!info || (!out && max) || info->nregions > VP_INFO_MAX_REGIONS)
		return -EINVAL;
	if (info->nregions > max)
		return -ENOSPC;
	for (unsigned i = 0; i < info->nregions; i++)
		out[i] = (struct vp_dev_region){
			.gpa = info->regions[i].gpa, .size = info->regions[i].size,
			.uaddr = 0, .fd_offset = info->regions[i].offset,
			.prot = prot, .fd = -1,
		};
	return info->nregions;
}

int vp_devinfo_mem_add(struct vp_mem *mem, const struct vp_devinfo *info, uint32_t prot,
		       void *bar2, uint64_t bar2_len)
{
	struct vp_dev_region r[VP_INFO_MAX_REGIONS];
	int n, err;

	if (!mem || !bar2 || vp_mem_count(mem))
		return -EINVAL;
	n = vp_devinfo_regions(info, prot, r, VP_INFO_MAX_REGIONS);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		struct vp_mem_region_desc d = {
			.gpa = r[i].gpa, .size = r[i].size, .uaddr = 0,
			.fd_offset = r[i].fd_offset, .fd = -1, .prot = prot,
		};

		if (d.fd_offset > bar2_len || d.size > bar2_len - d.fd_offset) {
			vp_mem_clear(mem);
			return -EINVAL;
		}
		err = vp_mem_add_local(mem, &d, (uint8_t *)bar2 + d.fd_offset);
		if (err < 0) {
			vp_mem_clear(mem);
			return err;
		}
	}
	return 0;
}

char *vp_devinfo_escape(const char *s, size_t maxlen, char *buf, size_t buflen)
{
	size_t o = 0;

	if (!buf || !buflen)
		return buf;
	for (size_t i = 0; s && i < maxlen && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		bool plain = c >= 0x20 && c < 0x7f && c != '\\' && c != '"';

		if (o + (plain ? 1 : 4) >= buflen)
			break;
		if (plain)
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", c);
	}
	buf[o] = 0;
	return buf;
}
