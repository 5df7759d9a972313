/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for lib/devinfo.c.
 *
 * The input is an info window (docs/device.md), zero-padded or cut to 8 KiB:
 * page 0 as a hostile daemon (or a scribbling guest) left it for the
 * snapshot, page 1 as a hostile driver left it for the daemon's check. Any
 * crash, sanitizer report or broken promise (a trap below) is a bug:
 *  - an accepted snapshot publishes again unchanged and snapshots again the
 *    same, and when its BAR2 is small enough to allocate, every region goes
 *    into a vp_mem over it and every queue it lists attaches with
 *    lib/vring.c (the snapshot promised rings inside one region each);
 *  - an accepted driver page answers a generation in range, claims no
 *    feature it was not offered and has a terminated reason.
 * tests/fuzz/gen_devinfo_seeds.c writes the committed seeds.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vhostpci/devinfo.h"
#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/vring.h"

#define MUST(x) do { if (!(x)) __builtin_trap(); } while (0)
#define MAX_BAR2 (1u << 20)

static void quiet(enum vp_log_level l, const char *m, void *o)
{
	(void)l;
	(void)m;
	(void)o;
}

/* What the daemon published when the window's own page 0 is garbage. */
static void fixed_pub(struct vp_devinfo *p)
{
	memset(p, 0, sizeof(*p));
	p->generation = 10;
	p->status = VP_INFO_ST_PRESENT | VP_INFO_ST_READY;
	p->num_queues = 2;
	p->nregions = 1;
	p->features = 0x130000000ull;
	p->bar2_size = 1u << 16;
	p->regions[0] = (struct vp_devinfo_region){ .gpa = 0, .size = 1u << 16 };
	for (unsigned q = 0; q < 2; q++)
		p->queues[q] = (struct vp_devinfo_queue){ .num = 64, .kick_vector = (uint16_t)(1 + q),
			.call_doorbell = (uint16_t)q, .desc = 0x1000 * (4 * q + 1),
			.avail = 0x1000 * (4 * q + 2), .used = 0x1000 * (4 * q + 3) };
}

static void attach_rings(const struct vp_devinfo *info)
{
	struct vp_mem *mem;
	uint8_t *bar2;

	if (info->bar2_size > MAX_BAR2)
		return;
	bar2 = calloc(1, info->bar2_size);
	mem = vp_mem_new();
	if (bar2 && mem) {
		MUST(vp_devinfo_mem_add(mem, info, VP_MEM_RW, bar2, info->bar2_size) == 0);
		for (unsigned q = 0; q < info->num_queues; q++) {
			const struct vp_devinfo_queue *vq = &info->queues[q];
			struct vp_vq_dev_config c = { .num = vq->num, .desc = vq->desc,
				.avail = vq->avail, .used = vq->used, .ring_space = VP_ADDR_GPA,
				.last_avail_idx = vq->last_avail_idx,
				.last_used_idx = vq->last_avail_idx };
			struct vp_vq_dev *d = NULL;

			if (!vq->num)
				continue;
			MUST(vp_vq_dev_new(&d, mem, &c) == 0);
			vp_vq_dev_free(d);
		}
	}
	vp_mem_free(mem);
	free(bar2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vp_info_window win, again;
	static bool init;
	struct vp_devinfo info, info2, pub;
	struct vp_devinfo_driver drv;
	char why[256], esc[4 * VP_INFO_DRV_REASON_LEN + 1];
	int err;

	if (!init) {
		vp_log_set_handler(quiet, NULL);
		init = true;
	}
	memset(&win, 0, sizeof(win));
	memcpy(&win, data, size < sizeof(win) ? size : sizeof(win));

	err = vp_devinfo_snapshot(&win, &info, why, sizeof(why));
	MUST(err == 0 || err == -EINVAL || err == -EAGAIN);
	MUST(!err || memchr(why, 0, sizeof(why)));
	if (err == 0) {
		MUST(vp_devinfo_check(&info, NULL, 0) == 0);
		MUST(vp_devinfo_publish(&again, &info) == 0);
		MUST(vp_devinfo_snapshot(&again, &info2, why, sizeof(why)) == 0);
		MUST(info2.generation == info.generation && info2.nregions == info.nregions &&
		     info2.num_queues == info.num_queues && !strcmp(info2.reason, info.reason));
		vp_devinfo_escape(info.reason, sizeof(info.reason), esc, sizeof(esc));
		attach_rings(&info);
		pub = info;
	} else {
		fixed_pub(&pub);
	}

	err = vp_devinfo_read_driver(&win, &pub, pub.generation - 8, &drv, why, sizeof(why));
	MUST(err == 0 || err == -EINVAL);
	if (err == 0) {
		MUST(!(drv.features_accepted & ~pub.features));
		MUST(!(drv.acked_gen & 1) && pub.generation - drv.acked_gen <= 8);
		MUST(memchr(drv.reason, 0, sizeof(drv.reason)));
		vp_devinfo_escape(drv.reason, sizeof(drv.reason), esc, sizeof(esc));
		/* The driver's own writer gives back what was read. */
		vp_devinfo_write_driver(&again, &drv);
		MUST(vp_devinfo_read_driver(&again, &pub, pub.generation - 8, &drv, why,
					    sizeof(why)) == 0);
	}
	return 0;
}
