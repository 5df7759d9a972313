/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for lib/vring_packed.c (packed ring, device side).
 *
 * The input is the initial contents of a small guest memory holding a packed
 * ring, plus a script of calls interleaved with writes a hostile driver makes
 * between them. Any crash, sanitizer report or broken invariant (a trap) is
 * a bug. Guest memory is two exactly-sized heap blocks, so any access
 * outside them is an ASan report.
 *
 * Input layout:
 *   0      mode: bit0 INDIRECT, bit1 EVENT_IDX, bit2 region 1 read-only
 *   1      num - 1 (mod 64)
 *   2-3    last_avail_idx (LE, bit 15 the wrap counter; position mod num)
 *   4      number of script ops (<= 64)
 *   5-7    reserved
 *   8...   ops, 4 bytes each: code, a, b, c
 *   then   guest memory image from gpa 0
 * Ring at gpa 0, driver area at 0x400, device area at 0x404. Region 0 is
 * gpa [0, 0xc000) read-write, region 1 16 KiB at 0xc000.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/vring.h"

#define HDR_SIZE   8
#define MAX_OPS    64
#define R0_SIZE    0xc000u
#define R1_SIZE    0x4000u

#define MUST(x) do { if (!(x)) __builtin_trap(); } while (0)

static volatile unsigned char sink;

static void quiet(enum vp_log_level l, const char *m, void *o)
{
	(void)l;
	(void)m;
	(void)o;
}

/* Every iovec inside one block, writable ones in a writable block; touched. */
static void check_iov(unsigned char *r0, unsigned char *r1, bool r1_ro,
		      const struct iovec *v, bool write)
{
	uintptr_t b = (uintptr_t)v->iov_base;

	MUST(v->iov_len > 0);
	if (b >= (uintptr_t)r0 && b < (uintptr_t)r0 + R0_SIZE) {
		MUST(v->iov_len <= (uintptr_t)r0 + R0_SIZE - b);
	} else {
		MUST(b >= (uintptr_t)r1 && b < (uintptr_t)r1 + R1_SIZE);
		MUST(v->iov_len <= (uintptr_t)r1 + R1_SIZE - b);
		MUST(!write || !r1_ro);
	}
	if (write) {
		memset(v->iov_base, 0x5a, v->iov_len);
	} else {
		const unsigned char *p = v->iov_base;

		sink ^= p[0] ^ p[v->iov_len - 1];
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vp_mem_region_desc r = { .gpa = 0, .size = R0_SIZE, .prot = VP_MEM_RW };
	unsigned char *r0 = NULL, *r1 = NULL;
	struct vp_mem *mem = NULL;
	struct vp_vq_packed *q = NULL;
	struct vp_vq_packed_config c = { 0 };
	/* Popped, not yet pushed: id and writable bytes. */
	uint16_t out_id[64];
	uint32_t out_len[64];
	unsigned nout = 0, nops, num;
	const uint8_t *ops;
	bool r1_ro;

	if (size < HDR_SIZE)
		return 0;
	vp_log_set_handler(quiet, NULL);
	r1_ro = data[0] & 4;
	num = (data[1] & 63u) + 1;
	nops = data[4] > MAX_OPS ? MAX_OPS : data[4];
	if (size < HDR_SIZE + nops * 4u)
		return 0;
	ops = data + HDR_SIZE;
	r0 = calloc(1, R0_SIZE);
	r1 = calloc(1, R1_SIZE);
	mem = vp_mem_new();
	if (!r0 || !r1 || !mem)
		goto out;
	if (vp_mem_add_local(mem, &r, r0) < 0)
		goto out;
	r = (struct vp_mem_region_desc){ .gpa = R0_SIZE, .size = R1_SIZE,
		.prot = r1_ro ? VP_MEM_READ : VP_MEM_RW };
	if (vp_mem_add_local(mem, &r, r1) < 0)
		goto out;
	{
		size_t img = size - HDR_SIZE - nops * 4u;
		const uint8_t *p = data + HDR_SIZE + nops * 4u;

		memcpy(r0, p, img < R0_SIZE ? img : R0_SIZE);
		if (img > R0_SIZE)
			memcpy(r1, p + R0_SIZE, img - R0_SIZE < R1_SIZE ? img - R0_SIZE : R1_SIZE);
	}
	c.num = (uint16_t)num;
	c.desc = 0;
	c.driver = 0x400;
	c.device = 0x404;
	c.last_avail_idx = (uint16_t)(((data[2] | data[3] << 8) & 0x8000) |
				      ((data[2] | data[3] << 8) & 0x7fff) % num);
	c.indirect = data[0] & 1;
	c.event_idx = data[0] & 2;
	c.name = "fuzz";
	MUST(vp_vq_packed_new(&q, mem, &c) == 0);

	for (unsigned k = 0; k < nops; k++) {
		const uint8_t *op = ops + 4 * k;
		bool was_broken = vp_vq_packed_broken(q);

		switch (op[0] % 7) {
		case 0: {	/* pop */
			struct vp_chain ch[8];
			struct iovec iov[32];
			unsigned max = op[1] % 8 + 1, iovmax = op[2] % 32 + 1;
			int n = vp_vq_packed_pop_burst(q, ch, max, iov, iovmax);

			MUST(n == -EIO || n == -ENOBUFS || (n >= 0 && (unsigned)n <= max));
			MUST(!was_broken || n == -EIO);
			for (int i = 0; i < n; i++) {
				MUST(ch[i].head < num);
				MUST(ch[i].n_out + ch[i].n_in <= iovmax);
				for (unsigned j = 0; j < ch[i].n_out + ch[i].n_in; j++)
					check_iov(r0, r1, r1_ro, &ch[i].iov[j], j >= ch[i].n_out);
				/* No id twice in flight. */
				for (unsigned j = 0; j < nout; j++)
					MUST(out_id[j] != ch[i].head);
				MUST(nout < 64);
				out_id[nout] = ch[i].head;
				out_len[nout++] = ch[i].len_in;
			}
			break;
		}
		case 1: {	/* push the op[1] % 4 + 1 oldest (or newest) in flight */
			struct vp_used u[4];
			unsigned n = op[1] % 4 + 1, from;
			int rr;

			if (n > nout)
				n = nout;
			from = (op[2] & 1) ? nout - n : 0;
			for (unsigned i = 0; i < n; i++)
				u[i] = (struct vp_used){ out_id[from + i],
							 op[3] % (out_len[from + i] + 1) };
			rr = vp_vq_packed_push_burst(q, u, n);
			MUST(rr == 0 || rr == -EIO);
			MUST(!was_broken || rr == -EIO);
			memmove(out_id + from, out_id + from + n, (nout - from - n) * sizeof(*out_id));
			memmove(out_len + from, out_len + from + n,
				(nout - from - n) * sizeof(*out_len));
			nout -= n;
			break;
		}
		case 2: {	/* unpop */
			unsigned n = op[1] % 4;
			int rr = vp_vq_packed_unpop(q, n);

			MUST(rr == 0 || rr == -EINVAL || rr == -EIO);
			if (rr == 0) {
				MUST(n <= nout);
				nout -= n;	/* the newest popped are the last recorded */
			}
			break;
		}
		case 3:
			(void)vp_vq_packed_need_signal(q);
			(void)vp_vq_packed_avail(q);
			break;
		case 4:
			if (op[1] & 1)
				vp_vq_packed_disable_notify(q);
			else
				(void)vp_vq_packed_enable_notify(q);
			break;
		case 5:		/* the driver writes a flags word */
			memcpy(r0 + (op[1] % num) * 16 + 14, op + 2, 2);
			break;
		default:	/* the driver writes any byte of region 0 */
			r0[((unsigned)op[1] << 8 | op[2]) % R0_SIZE] = op[3];
			break;
		}
		if (was_broken)
			MUST(vp_vq_packed_broken(q));
	}
out:
	vp_vq_packed_free(q);
	vp_mem_free(mem);
	free(r0);
	free(r1);
	vp_log_set_handler(NULL, NULL);
	return 0;
}
