/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Writes the seed corpus for fuzz_vring.c (input layout documented there).
 * Each seed is a hand-built ring that reaches one interesting path: valid
 * chains of each kind, then one of each rejection.
 *
 *   cc -Iinclude tests/fuzz/gen_vring_seeds.c -o gen && ./gen tests/fuzz/corpus/vring
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/virtio_ring.h>

enum {
	M_INDIRECT = 1, M_EVENT = 2, M_R1_RO = 4, M_HOLE = 8, M_RAW_NUM = 16,
	M_RAW_ADDR = 32, M_UVA = 64, M_DRIVER = 128,
};

/* Device-side ops */
enum { POP, PUSH, SIGNAL, ENABLE, DISABLE, PENDING, SET_IDX, ADD_IDX, POKE, POST,
       UNPOP };
/* Driver-side ops */
enum { ADD, ADD_BURST, PUBLISH, COLLECT, ENABLE_CB, DISABLE_CB, DEV_ROUND,
       FORGE_USED, SCRIBBLE, SET_USED_IDX };

#define NEXT VRING_DESC_F_NEXT
#define WR   VRING_DESC_F_WRITE
#define IND  VRING_DESC_F_INDIRECT

struct seed {
	uint8_t hdr[16];
	uint8_t ops[64 * 4];
	unsigned nops;
	uint8_t img[0x10000];
	size_t imglen;
	unsigned num;
	uint64_t desc, avail, used;
};

static void put(struct seed *s, uint64_t gpa, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		s->img[gpa + i] = (uint8_t)(v >> (8 * i));
	if (gpa + bytes > s->imglen)
		s->imglen = gpa + bytes;
}

static void init(struct seed *s, uint8_t mode, unsigned log2num)
{
	memset(s, 0, sizeof(*s));
	s->hdr[0] = mode;
	s->hdr[1] = (uint8_t)log2num;
	s->num = 1u << log2num;
	s->desc = 0;
	s->avail = 16ull * s->num;
	s->used = (s->avail + 6 + 2ull * s->num + 3) & ~3ull;
	/* The image covers the whole ring so mutations reach every field. */
	put(s, s->used + 6 + 8ull * s->num, 0, 2);
}

static void resume(struct seed *s, uint16_t last_avail)
{
	s->hdr[3] = (uint8_t)last_avail;
	s->hdr[4] = (uint8_t)(last_avail >> 8);
	s->hdr[5] = (uint8_t)last_avail;
	s->hdr[6] = (uint8_t)(last_avail >> 8);
	put(s, s->avail + 2, last_avail, 2);
	put(s, s->used + 2, last_avail, 2);
}

static void op(struct seed *s, uint8_t code, uint8_t a, uint8_t b, uint8_t c)
{
	uint8_t *p = s->ops + 4 * s->nops++;

	p[0] = code;
	p[1] = a;
	p[2] = b;
	p[3] = c;
}

static void desc_at(struct seed *s, uint64_t table, unsigned i, uint64_t addr,
		    uint32_t len, uint16_t flags, uint16_t next)
{
	put(s, table + 16ull * i, addr, 8);
	put(s, table + 16ull * i + 8, len, 4);
	put(s, table + 16ull * i + 12, flags, 2);
	put(s, table + 16ull * i + 14, next, 2);
}

static void desc(struct seed *s, unsigned i, uint64_t addr, uint32_t len,
		 uint16_t flags, uint16_t next)
{
	desc_at(s, s->desc, i, addr, len, flags, next);
}

static void post(struct seed *s, uint16_t head)
{
	uint16_t idx = (uint16_t)(s->img[s->avail + 2] | s->img[s->avail + 3] << 8);

	put(s, s->avail + 4 + 2ull * (idx & (s->num - 1)), head, 2);
	put(s, s->avail + 2, (uint16_t)(idx + 1), 2);
}

static void used_event(struct seed *s, uint16_t v)
{
	put(s, s->avail + 4 + 2ull * s->num, v, 2);
}

/* The usual device loop: pop, complete, decide, re-arm. */
static void dev_loop(struct seed *s)
{
	op(s, POP, 8, 32, 0);
	op(s, PUSH, 8, 1, 2);
	op(s, SIGNAL, 0, 0, 0);
	op(s, ENABLE, 0, 0, 0);
	op(s, POP, 8, 32, 0);
	op(s, DISABLE, 0, 0, 0);
}

static int write_seed(const char *dir, const char *name, struct seed *s)
{
	char path[512];
	FILE *f;

	s->hdr[13] = (uint8_t)s->nops;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return -1;
	}
	fwrite(s->hdr, 1, sizeof(s->hdr), f);
	fwrite(s->ops, 4, s->nops, f);
	fwrite(s->img, 1, s->imglen, f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	static struct seed s;
	const char *dir = argc > 1 ? argv[1] : ".";
	int err = 0;

	/* One readable 64 B buffer, then the driver posts the same head again. */
	init(&s, 0, 3);
	desc(&s, 0, 0x4000, 64, 0, 0);
	post(&s, 0);
	dev_loop(&s);
	op(&s, POST, 0, 0, 0);
	op(&s, POP, 1, 1, 0);
	op(&s, PUSH, 1, 0, 0);
	op(&s, SIGNAL, 0, 0, 0);
	err |= write_seed(dir, "01-single", &s);

	/* Two chains: header + payload + writable status, and an RX buffer. */
	init(&s, 0, 4);
	desc(&s, 0, 0x4000, 12, NEXT, 5);
	desc(&s, 5, 0x4100, 1500, NEXT, 2);
	desc(&s, 2, 0x4800, 1, WR, 0);
	desc(&s, 3, 0x5000, 2048, WR, 0);
	post(&s, 0);
	post(&s, 3);
	dev_loop(&s);
	err |= write_seed(dir, "02-multi", &s);

	/* Indirect table of three, after one direct descriptor. */
	init(&s, M_INDIRECT, 4);
	desc_at(&s, 0x400, 0, 0x4000, 12, NEXT, 1);
	desc_at(&s, 0x400, 1, 0x4100, 100, NEXT, 2);
	desc_at(&s, 0x400, 2, 0x4800, 200, WR, 0);
	desc(&s, 1, 0x600, 10, NEXT, 4);
	desc(&s, 4, 0x400, 48, IND, 0);
	desc(&s, 6, 0x400, 48, IND, 0);
	post(&s, 1);
	post(&s, 6);
	dev_loop(&s);
	err |= write_seed(dir, "03-indirect", &s);

	/* Event index: used_event asks for the second entry. */
	init(&s, M_EVENT | M_INDIRECT, 3);
	for (unsigned i = 0; i < 8; i++)
		desc(&s, i, 0x4000 + 0x100 * i, 64, WR, 0);
	for (unsigned i = 0; i < 6; i++)
		post(&s, (uint16_t)i);
	used_event(&s, 1);
	op(&s, POP, 2, 8, 0);
	op(&s, PUSH, 1, 0, 64);
	op(&s, SIGNAL, 0, 0, 0);
	op(&s, PUSH, 1, 0, 64);
	op(&s, SIGNAL, 0, 0, 0);
	op(&s, ENABLE, 0, 0, 0);
	op(&s, POP, 8, 8, 0);
	op(&s, PUSH, 8, 0, 64);
	op(&s, SIGNAL, 0, 0, 0);
	op(&s, ENABLE, 0, 0, 0);
	err |= write_seed(dir, "04-event-idx", &s);

	/* Buffers crossing from region 0 into region 1 (two iovecs each). */
	init(&s, 0, 3);
	desc(&s, 0, 0xc000 - 100, 300, NEXT, 1);
	desc(&s, 1, 0xc000 - 8, 16, WR, 0);
	post(&s, 0);
	op(&s, POP, 1, 3, 0);	/* -ENOBUFS: four pieces needed */
	op(&s, POP, 1, 4, 0);
	op(&s, PUSH, 1, 0, 16);
	err |= write_seed(dir, "05-two-regions", &s);

	/* Writable buffer in the read-only region 1. */
	init(&s, M_R1_RO, 3);
	desc(&s, 0, 0xc100, 64, 0, 0);
	desc(&s, 1, 0xc200, 64, WR, 0);
	post(&s, 0);
	post(&s, 1);
	dev_loop(&s);
	err |= write_seed(dir, "06-write-read-only", &s);

	/* A descriptor loop. */
	init(&s, 0, 3);
	desc(&s, 0, 0x4000, 64, NEXT, 1);
	desc(&s, 1, 0x4100, 64, NEXT, 0);
	post(&s, 0);
	dev_loop(&s);
	err |= write_seed(dir, "07-loop", &s);

	/* An indirect table that points at itself. */
	init(&s, M_INDIRECT, 3);
	desc_at(&s, 0x400, 0, 0x4000, 12, NEXT, 1);
	desc_at(&s, 0x400, 1, 0x400, 32, IND, 0);
	desc(&s, 0, 0x400, 32, IND, 0);
	post(&s, 0);
	dev_loop(&s);
	err |= write_seed(dir, "08-nested-indirect", &s);

	/* Resume near the 16-bit wrap; three chains cross it. */
	init(&s, 0, 3);
	resume(&s, 65534);
	for (unsigned i = 0; i < 8; i++)
		desc(&s, i, 0x4000 + 0x100 * i, 64, i & 1 ? WR : 0, 0);
	post(&s, 5);
	post(&s, 6);
	post(&s, 7);
	dev_loop(&s);
	op(&s, POST, 1, 0, 0);
	op(&s, POST, 2, 0, 0);
	dev_loop(&s);
	err |= write_seed(dir, "09-wrap", &s);

	/* The avail index jumps more than num ahead mid-run. */
	init(&s, 0, 3);
	desc(&s, 0, 0x4000, 64, 0, 0);
	post(&s, 0);
	op(&s, POP, 4, 4, 0);
	op(&s, ADD_IDX, 9, 0, 0);
	op(&s, PENDING, 0, 0, 0);
	op(&s, POP, 4, 4, 0);
	err |= write_seed(dir, "10-avail-jump", &s);

	/* next out of range; then head out of range; then INDIRECT unasked. */
	init(&s, 0, 3);
	desc(&s, 0, 0x4000, 64, NEXT, 8);
	desc(&s, 1, 0x400, 16, IND, 0);
	desc_at(&s, 0x400, 0, 0x4000, 64, 0, 0);
	post(&s, 0);
	dev_loop(&s);
	err |= write_seed(dir, "11-next-out-of-range", &s);
	put(&s, s.avail + 4, 9, 2);
	err |= write_seed(dir, "19-head-out-of-range", &s);
	put(&s, s.avail + 4, 1, 2);
	err |= write_seed(dir, "20-indirect-not-negotiated", &s);

	/* Ring addresses given raw, in UVA space, used ring in region 1. */
	init(&s, M_RAW_ADDR | M_UVA | M_EVENT, 2);
	s.hdr[7] = 0x00; s.hdr[8] = 0x10;	/* desc  0x1000 */
	s.hdr[9] = 0x00; s.hdr[10] = 0x20;	/* avail 0x2000 */
	s.hdr[11] = 0x00; s.hdr[12] = 0xc0;	/* used  0xc000 */
	s.desc = 0x1000;
	s.avail = 0x2000;
	s.num = 4;
	desc(&s, 0, 0x4000, 64, WR, 0);
	post(&s, 0);
	dev_loop(&s);
	err |= write_seed(dir, "12-uva-raw-addr", &s);

	/* A ring size that is not a power of two, then the largest one. */
	init(&s, M_RAW_NUM, 0);
	s.hdr[1] = 12;
	s.hdr[2] = 0;
	dev_loop(&s);
	err |= write_seed(dir, "13-num-not-pow2", &s);
	s.hdr[1] = 0;
	s.hdr[2] = 0x80;
	err |= write_seed(dir, "14-num-32768", &s);

	/* Indirect table at an odd address, buffer in region 1 after a hole. */
	init(&s, M_INDIRECT | M_HOLE, 3);
	desc_at(&s, 0x403, 0, 0x4000, 12, NEXT, 1);
	desc_at(&s, 0x403, 1, 0xd000, 64, WR, 0);
	desc(&s, 0, 0x403, 32, IND, 0);
	desc(&s, 1, 0xc800, 64, WR, 0);	/* in the hole */
	post(&s, 0);
	post(&s, 1);
	dev_loop(&s);
	err |= write_seed(dir, "15-odd-indirect-hole", &s);

	/* Burst limits: chains of three iovecs, small iovec arrays. */
	init(&s, 0, 4);
	for (unsigned i = 0; i < 15; i += 3) {
		desc(&s, i, 0x4000 + 0x100 * i, 10, NEXT, (uint16_t)(i + 1));
		desc(&s, i + 1, 0x4800 + 0x100 * i, 10, NEXT | WR, (uint16_t)(i + 2));
		desc(&s, i + 2, 0x5000 + 0x100 * i, 10, WR, 0);
		post(&s, (uint16_t)i);
	}
	op(&s, POP, 16, 2, 0);
	op(&s, POP, 16, 7, 0);
	op(&s, UNPOP, 1, 0, 0);	/* the second chain comes out again */
	op(&s, POP, 1, 64, 0);
	op(&s, UNPOP, 9, 0, 0);	/* more than in flight */
	op(&s, PUSH, 3, 0, 5);
	op(&s, POP, 16, 64, 0);
	op(&s, PUSH, 16, 0, 30);
	op(&s, PUSH, 0, 20, 0x80);	/* made-up id 20 >= num */
	op(&s, SIGNAL, 0, 0, 0);
	err |= write_seed(dir, "16-burst-limits", &s);

	/* Driver side: add, publish, honest device, collect. */
	init(&s, M_DRIVER | M_INDIRECT | M_EVENT, 4);
	s.hdr[14] = 4;
	s.imglen = 0;
	op(&s, ADD, 1, 0, 0);
	op(&s, ADD, 1, 3, 7);
	op(&s, ADD, 4, 4, 9);
	op(&s, ADD_BURST, 5, 1, 3);
	op(&s, PUBLISH, 0, 0, 0);
	op(&s, DEV_ROUND, 16, 0, 0);
	op(&s, ENABLE_CB, 0, 0, 0);
	op(&s, COLLECT, 16, 0, 0);
	op(&s, DISABLE_CB, 0, 0, 0);
	op(&s, ADD_BURST, 8, 0, 1);
	op(&s, PUBLISH, 0, 0, 0);
	op(&s, DEV_ROUND, 4, 2, 0);
	op(&s, COLLECT, 16, 0, 0);
	err |= write_seed(dir, "17-driver", &s);

	/* Driver side: the device forges entries and lengths. */
	init(&s, M_DRIVER, 3);
	s.imglen = 0;
	op(&s, ADD, 0, 1, 0);
	op(&s, ADD, 0, 1, 1);
	op(&s, PUBLISH, 0, 0, 0);
	op(&s, DEV_ROUND, 1, 1, 0);	/* len one more than posted */
	op(&s, COLLECT, 4, 0, 0);
	op(&s, FORGE_USED, 1, 0, 0);
	op(&s, COLLECT, 4, 0, 0);
	op(&s, FORGE_USED, 9, 0, 0);
	op(&s, COLLECT, 4, 0, 0);
	op(&s, SET_USED_IDX, 40, 0, 0);
	op(&s, COLLECT, 4, 0, 0);
	err |= write_seed(dir, "18-driver-evil-device", &s);

	/* Driver side, packed ring of 5 (not a power of two): add, publish,
	 * honest device, collect, round the ring's end more than once. */
	init(&s, M_DRIVER | M_INDIRECT | M_EVENT, 0);
	s.hdr[1] = 4;	/* num 5 */
	s.hdr[14] = 3;
	s.hdr[15] = 1;
	s.imglen = 0;
	for (unsigned lap = 0; lap < 4; lap++) {
		op(&s, ADD, 1, 0, (uint8_t)lap);
		op(&s, ADD, 1, 2, 7);
		op(&s, ADD_BURST, 3, 1, 3);
		op(&s, PUBLISH, 0, 0, 0);
		op(&s, DEV_ROUND, 16, 0, 0);
		op(&s, ENABLE_CB, 0, 0, 0);
		op(&s, COLLECT, 16, 0, 0);
	}
	err |= write_seed(dir, "21-driver-packed", &s);

	/* Driver side, packed: the device forges descriptors, lengths and its
	 * event area. */
	init(&s, M_DRIVER, 0);
	s.hdr[1] = 7;	/* num 8 */
	s.hdr[15] = 1;
	s.imglen = 0;
	op(&s, ADD, 0, 1, 0);
	op(&s, ADD, 0, 1, 1);
	op(&s, PUBLISH, 0, 0, 0);
	op(&s, DEV_ROUND, 1, 1, 0);	/* len one more than posted */
	op(&s, COLLECT, 4, 0, 0);
	op(&s, FORGE_USED, 1, 0, 3);	/* id 0 at slot 1, both wrap bits set */
	op(&s, COLLECT, 4, 0, 0);
	op(&s, FORGE_USED, 0, 9, 3);	/* id out of range at the due slot */
	op(&s, COLLECT, 4, 0, 0);
	op(&s, SET_USED_IDX, 2, 0x80, 1);	/* event area */
	op(&s, COLLECT, 4, 0, 0);
	err |= write_seed(dir, "22-driver-packed-evil-device", &s);

	return err ? 1 : 0;
}
