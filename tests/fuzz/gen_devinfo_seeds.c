/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Writes the seed corpus for fuzz_devinfo.c: whole 8 KiB info windows, made
 * with the library's own writers so they start valid, then one rule broken
 * each.
 *
 *   build/tests/fuzz/gen-devinfo-seeds tests/fuzz/corpus/devinfo
 */
#include <endian.h>
#include <stdio.h>
#include <string.h>

#include "vhostpci/devinfo.h"

static struct vp_info_window win;

/* QEMU's pc split in small: gpa [0, 3M) at BAR2 0, gpa [4G, 5G) at BAR2 3M. */
static void qemu_like(struct vp_devinfo *in)
{
	memset(in, 0, sizeof(*in));
	in->generation = 4;
	in->status = VP_INFO_ST_PRESENT | VP_INFO_ST_READY;
	in->device_id = 7;
	in->device_type = 1;
	in->num_queues = 2;
	in->nregions = 2;
	in->features = 0x130008000ull;
	in->bar2_size = 4u << 20;
	in->config_len = 10;
	in->regions[0] = (struct vp_devinfo_region){ .gpa = 0, .size = 3u << 20 };
	in->regions[1] = (struct vp_devinfo_region){ .gpa = 1ull << 32, .size = 1u << 20,
						     .offset = 3u << 20 };
	in->queues[0] = (struct vp_devinfo_queue){ .num = 256, .flags = 3, .kick_vector = 1,
		.desc = 0x100000, .avail = 0x101000, .used = 0x102000 };
	in->queues[1] = (struct vp_devinfo_queue){ .num = 256, .flags = 3, .kick_vector = 2,
		.call_doorbell = 1, .desc = (1ull << 32) + 0x10000,
		.avail = (1ull << 32) + 0x11000, .used = (1ull << 32) + 0x12000 };
}

/* Small enough for the fuzzer to attach the rings to a heap BAR2. */
static void small(struct vp_devinfo *in)
{
	memset(in, 0, sizeof(*in));
	in->generation = 2;
	in->status = VP_INFO_ST_PRESENT | VP_INFO_ST_READY;
	in->num_queues = 8;
	in->nregions = 8;
	in->features = 0x100000000ull;
	in->bar2_size = 1u << 16;
	for (unsigned i = 0; i < 8; i++) {
		in->regions[i] = (struct vp_devinfo_region){ .gpa = 0x10000ull * i,
			.size = 0x2000, .offset = 0x2000ull * i };
		in->queues[i] = (struct vp_devinfo_queue){ .num = 16, .flags = 1,
			.kick_vector = (uint16_t)(1 + i), .call_doorbell = (uint16_t)i,
			.desc = 0x10000ull * i, .avail = 0x10000ull * i + 0x100,
			.used = 0x10000ull * i + 0x200 };
	}
	snprintf(in->reason, sizeof(in->reason), "refused: stopped[1] for a queue that is absent");
}

static void driver(const struct vp_devinfo *in, uint32_t acked)
{
	struct vp_devinfo_driver d = { .driver_gen = 1, .driver_status = 7,
		.features_accepted = in->features & 0x100000000ull, .acked_gen = acked };

	d.stopped[0] = VP_INFO_STOPPED_VALID | 5;
	snprintf(d.reason, sizeof(d.reason), "ok");
	vp_devinfo_write_driver(&win, &d);
}

static int put(const char *dir, const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return -1;
	}
	fwrite(&win, 1, sizeof(win), f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	struct vp_devinfo in;
	int err = 0;

	qemu_like(&in);
	vp_devinfo_publish(&win, &in);
	driver(&in, 4);
	err |= put(dir, "01-qemu-like");

	small(&in);
	memset(&win, 0, sizeof(win));
	vp_devinfo_publish(&win, &in);
	driver(&in, 2);
	err |= put(dir, "02-eight-regions-eight-queues");

	win.daemon.queues[3].used = htole64(0x30000 + 0x1ff0);	/* past its region */
	win.driver.acked_gen = htole32(3);
	err |= put(dir, "03-bad-ring-bad-ack");

	qemu_like(&in);
	memset(&win, 0, sizeof(win));
	vp_devinfo_publish(&win, &in);
	win.daemon.generation = htole32(5);			/* mid-write */
	win.daemon.regions[1].offset = htole64(2u << 20);	/* overlaps in BAR2 */
	memset(win.driver.reason, 'x', sizeof(win.driver.reason));
	win.driver.stopped[6] = htole32(VP_INFO_STOPPED_VALID | 0x10000);
	err |= put(dir, "04-odd-overlap-unterminated");
	return err ? 1 : 0;
}
