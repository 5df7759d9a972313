/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Writes the seed corpus for fuzz_vring_packed.c (input layout documented
 * there): hand-built packed rings whose chains the target pops, pushes,
 * gives back and signals, so mutations start from rings that work.
 *
 *   cc -Iinclude tests/fuzz/gen_vring_packed_seeds.c -o gen && ./gen tests/fuzz/corpus/vring_packed
 */
#include <stdint.h>
#include <string.h>
#include <linux/virtio_ring.h>

#include "seeds.h"

enum { POP, PUSH, UNPOP, SIGNAL, NOTIFY, FLAGS, POKE };

#define AV   (1u << VRING_PACKED_DESC_F_AVAIL)
#define NEXT VRING_DESC_F_NEXT
#define WR   VRING_DESC_F_WRITE
#define IND  VRING_DESC_F_INDIRECT
#define HDR  8u
#define IMG  0x2000u	/* image bytes: ring, areas and the buffers used */

static struct seed s;
static unsigned nops;

static void init(uint8_t mode, unsigned num)
{
	memset(&s, 0, sizeof(s));
	nops = 0;
	s.buf[0] = mode;
	s.buf[1] = (uint8_t)(num - 1);
	s.buf[3] = 0x80;	/* position 0, wrap counter 1 */
}

static void op(uint8_t code, uint8_t a, uint8_t b, uint8_t c)
{
	uint8_t *p = s.buf + HDR + 4 * nops++;

	p[0] = code;
	p[1] = a;
	p[2] = b;
	p[3] = c;
}

static void put(uint64_t gpa, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		s.buf[HDR + 4 * nops + gpa + i] = (uint8_t)(v >> (8 * i));
}

/* Descriptors are written after the ops: call once the script is done. */
static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags)
{
	put(16ull * i, addr, 8);
	put(16ull * i + 8, len, 4);
	put(16ull * i + 12, id, 2);
	put(16ull * i + 14, flags, 2);
}

static void done(const char *name)
{
	s.buf[4] = (uint8_t)nops;
	s.len = HDR + 4 * nops + IMG;
	write_seed(&s, name);
}

int main(int argc, char **argv)
{
	seed_dir = argc > 1 ? argv[1] : ".";

	/* A one-descriptor chain, a readable + writable one, another single. */
	init(2, 8);
	op(POP, 3, 31, 0);
	op(PUSH, 3, 0, 7);
	op(SIGNAL, 0, 0, 0);
	op(NOTIFY, 0, 0, 0);
	op(POP, 3, 31, 0);
	op(UNPOP, 1, 0, 0);
	op(POP, 3, 31, 0);
	op(PUSH, 3, 0, 7);
	desc(0, 0x8000, 64, 0, AV);
	desc(1, 0x8100, 10, 1, AV | NEXT);
	desc(2, 0x8200, 100, 1, AV | WR);
	desc(3, 0x8300, 20, 2, AV);
	done("01-chains");

	/* An indirect table of three, then a buffer in region 1. */
	init(3, 4);
	op(POP, 0, 31, 0);
	op(PUSH, 0, 0, 0);
	op(POP, 0, 31, 0);
	op(PUSH, 0, 0, 0);
	op(SIGNAL, 0, 0, 0);
	desc(0, 0x1000, 48, 3, AV | IND);
	desc(1, 0xc000, 8, 0, AV);
	for (unsigned i = 0; i < 3; i++) {
		put(0x1000 + 16 * i, 0x9000 + 0x100 * i, 8);
		put(0x1000 + 16 * i + 8, 30, 4);
		put(0x1000 + 16 * i + 14, i ? WR : 0, 2);
	}
	done("02-indirect");

	/* A full lap of five singles and the driver rewriting a flags word. */
	init(0, 5);
	for (unsigned i = 0; i < 3; i++) {
		op(POP, 0, 31, 0);
		op(PUSH, 0, 0, 0);
	}
	op(FLAGS, 0, 0x80, 0);
	op(POP, 7, 31, 0);
	for (unsigned i = 0; i < 5; i++)
		desc(i, 0x8000, 8, (uint16_t)i, AV);
	done("03-lap");
	return seed_failed;
}
