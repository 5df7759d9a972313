/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for lib/vring.c.
 *
 * The input is the initial contents of a small guest memory holding a split
 * ring, plus a script of calls interleaved with writes a hostile peer makes
 * between them. Any crash, sanitizer report or broken invariant (a trap
 * below) is a bug. Guest memory is two exactly-sized heap blocks, so any
 * access outside them is an ASan report.
 *
 * Input layout (tests/fuzz/gen_vring_seeds.c writes the same):
 *   0      mode: bit0 INDIRECT, bit1 EVENT_IDX, bit2 region 1 read-only,
 *          bit3 a 4 KiB hole before region 1, bit4 num raw from bytes 1-2,
 *          bit5 ring addresses from bytes 7-12, bit6 ring in UVA space,
 *          bit7 driver side (our ring, hostile device) instead of device side
 *   1      log2(num) (mod 12), or the low byte of a raw num
 *   2      high byte of a raw num
 *   3-4    last_avail_idx (LE)      5-6   last_used_idx (LE)
 *   7-8    desc gpa   9-10 avail gpa   11-12 used gpa (LE, with bit5)
 *   13     number of script ops (<= 64)
 *   14     driver side: indirect_max
 *   15     driver side: bit0 a packed ring (VIRTIO_F_RING_PACKED), num from
 *          byte 1 as 1..256 (any value); the honest device is then
 *          vp_vq_packed and the forged writes are used descriptors
 *   16...  ops, 4 bytes each: code, a, b, c (see run_device / run_driver)
 *   then   guest memory image from gpa 0
 * Guest memory: region 0 is gpa [0, 0xc000) read-write; region 1 is 16 KiB
 * at gpa 0xc000 (0xd000 with the hole).
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

#define HDR_SIZE   16
#define MAX_OPS    64
#define R0_SIZE    0xc000u
#define R1_SIZE    0x4000u
#define UVA_BASE   0x7f0000000000ull

enum {
	M_INDIRECT = 1, M_EVENT = 2, M_R1_RO = 4, M_HOLE = 8, M_RAW_NUM = 16,
	M_RAW_ADDR = 32, M_UVA = 64, M_DRIVER = 128,
};

/* A violated invariant: stop loudly so libFuzzer keeps the input. */
#define MUST(x) do { if (!(x)) __builtin_trap(); } while (0)

struct gmem {
	unsigned char *r0, *r1;
	uint64_t r1_gpa;
	bool r1_ro;
	struct vp_mem *mem;
};

static volatile unsigned char sink;

static void quiet(enum vp_log_level l, const char *m, void *o)
{
	(void)l;
	(void)m;
	(void)o;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* The harness plays the peer: it may write any of its memory, even RO. */
static unsigned char *host_of(struct gmem *g, uint64_t gpa, uint64_t len)
{
	if (gpa < R0_SIZE && len <= R0_SIZE - gpa)
		return g->r0 + gpa;
	if (gpa >= g->r1_gpa && gpa - g->r1_gpa < R1_SIZE &&
	    len <= R1_SIZE - (gpa - g->r1_gpa))
		return g->r1 + (gpa - g->r1_gpa);
	return NULL;
}

/* Every iovec lies inside one block, writable ones in a writable block. */
static void check_iov(struct gmem *g, const struct iovec *v, bool write)
{
	uintptr_t b = (uintptr_t)v->iov_base;

	MUST(v->iov_len > 0);
	if (b >= (uintptr_t)g->r0 && b < (uintptr_t)g->r0 + R0_SIZE) {
		MUST(v->iov_len <= (uintptr_t)g->r0 + R0_SIZE - b);
	} else {
		MUST(b >= (uintptr_t)g->r1 && b < (uintptr_t)g->r1 + R1_SIZE);
		MUST(v->iov_len <= (uintptr_t)g->r1 + R1_SIZE - b);
		MUST(!write || !g->r1_ro);
	}
	/* Touch it all: ASan tells if the library handed out bad memory. */
	if (write) {
		memset(v->iov_base, 0x5a, v->iov_len);
	} else {
		const unsigned char *p = v->iov_base;

		sink ^= p[0] ^ p[v->iov_len - 1];
	}
}

static int gmem_init(struct gmem *g, uint8_t mode, const uint8_t *img, size_t n)
{
	struct vp_mem_region_desc r = { .gpa = 0, .size = R0_SIZE, .prot = VP_MEM_RW };

	memset(g, 0, sizeof(*g));
	g->r0 = calloc(1, R0_SIZE);
	g->r1 = calloc(1, R1_SIZE);
	g->mem = vp_mem_new();
	if (!g->r0 || !g->r1 || !g->mem)
		return -1;
	g->r1_gpa = (mode & M_HOLE) ? R0_SIZE + 0x1000 : R0_SIZE;
	g->r1_ro = mode & M_R1_RO;
	if (mode & M_UVA)
		r.uaddr = UVA_BASE;
	if (vp_mem_add_local(g->mem, &r, g->r0) < 0)
		return -1;
	r = (struct vp_mem_region_desc){ .gpa = g->r1_gpa, .size = R1_SIZE,
		.uaddr = (mode & M_UVA) ? UVA_BASE + g->r1_gpa : 0,
		.prot = g->r1_ro ? VP_MEM_READ : VP_MEM_RW };
	if (vp_mem_add_local(g->mem, &r, g->r1) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char *h = host_of(g, i, 1);

		if (h)
			*h = img[i];
	}
	return 0;
}

static void gmem_fini(struct gmem *g)
{
	vp_mem_free(g->mem);
	free(g->r0);
	free(g->r1);
}

/* ---- device side: a hostile driver's ring ---- */

struct devrun {
	struct gmem *g;
	struct vp_vq_dev *vq;
	unsigned num;
	uint16_t *avail_idx;	/* the peer's avail->idx, NULL if unmapped */
	uint16_t *avail_ring;
	uint16_t heads[65536];	/* popped, not yet pushed (FIFO) */
	unsigned h_first, h_count;
	uint16_t used_idx;	/* what the device's used index must be */
};

static void dev_pop(struct devrun *d, unsigned max, unsigned iov_max)
{
	/* Exactly sized, so a write past the end is an ASan report. */
	struct vp_chain *ch = malloc((max ? max : 1) * sizeof(*ch));
	struct iovec *iov = malloc((iov_max ? iov_max : 1) * sizeof(*iov));
	uint16_t before = vp_vq_dev_last_avail(d->vq);
	bool was_broken = vp_vq_dev_broken(d->vq);
	unsigned used = 0;
	int r;

	if (!ch || !iov)
		goto out;
	r = vp_vq_dev_pop_burst(d->vq, ch, max, iov, iov_max);
	if (r < 0) {
		MUST(r == -EIO || r == -ENOBUFS);
		MUST(r != -EIO || vp_vq_dev_broken(d->vq));
		MUST(r == -EIO || !vp_vq_dev_broken(d->vq));
		MUST(vp_vq_dev_last_avail(d->vq) == before);
		if (r == -EIO)
			MUST(vp_vq_dev_broken_reason(d->vq)[0]);
		goto out;
	}
	MUST(!was_broken);
	MUST((unsigned)r <= max);
	MUST(vp_vq_dev_last_avail(d->vq) == (uint16_t)(before + r));
	for (int i = 0; i < r; i++) {
		uint64_t lo = 0, li = 0;

		MUST(ch[i].head < d->num);
		MUST(ch[i].iov == iov + used);
		used += ch[i].n_out + ch[i].n_in;
		MUST(used <= iov_max);
		for (unsigned k = 0; k < ch[i].n_out; k++) {
			check_iov(d->g, &ch[i].iov[k], false);
			lo += ch[i].iov[k].iov_len;
		}
		for (unsigned k = ch[i].n_out; k < ch[i].n_out + ch[i].n_in; k++) {
			check_iov(d->g, &ch[i].iov[k], true);
			li += ch[i].iov[k].iov_len;
		}
		MUST(lo == ch[i].len_out && li == ch[i].len_in);
		MUST(lo + li <= UINT32_MAX);
		if (d->h_count < 65536) {
			d->heads[(d->h_first + d->h_count) & 0xffff] = ch[i].head;
			d->h_count++;
		}
	}
out:
	free(ch);
	free(iov);
}

static void dev_push(struct devrun *d, unsigned k, uint8_t b, uint8_t c)
{
	struct vp_used u[16];
	bool bad = false;
	int r;

	if (c & 0x80) {
		/* A made-up id, maybe out of range. */
		u[0] = (struct vp_used){ (uint32_t)(b | (c & 0x7f) << 8), b };
		bad = u[0].id >= d->num;
		k = 1;
	} else {
		if (k > d->h_count)
			k = d->h_count;
		for (unsigned i = 0; i < k; i++)
			u[i] = (struct vp_used){ d->heads[(d->h_first + i) & 0xffff],
						 (uint32_t)b * 977u + c };
	}
	r = vp_vq_dev_push_burst(d->vq, u, k);
	if (vp_vq_dev_broken(d->vq)) {
		MUST(r == -EIO);
		return;
	}
	MUST(r == (bad ? -EINVAL : 0));
	if (!r)
		d->used_idx = (uint16_t)(d->used_idx + k);
	if (!(c & 0x80) && !r) {
		d->h_first += k;
		d->h_count -= k;
	}
}

/* Give back the newest n chains: in flight is popped minus pushed. */
static void dev_unpop(struct devrun *d, unsigned n)
{
	uint16_t last = vp_vq_dev_last_avail(d->vq);
	bool broken = vp_vq_dev_broken(d->vq);
	int r = vp_vq_dev_unpop(d->vq, n);

	if (broken) {
		MUST(r == -EIO);
		return;
	}
	if (n > (uint16_t)(last - d->used_idx)) {
		MUST(r == -EINVAL && vp_vq_dev_last_avail(d->vq) == last);
		return;
	}
	MUST(r == 0 && vp_vq_dev_last_avail(d->vq) == (uint16_t)(last - n));
	d->h_count -= n < d->h_count ? n : d->h_count;
}

static void run_device(struct gmem *g, const uint8_t *hdr, const uint8_t *ops,
		       unsigned nops)
{
	uint8_t mode = hdr[0];
	struct vp_vq_dev_config cfg = { 0 };
	struct devrun *d = calloc(1, sizeof(*d));
	unsigned num;
	int r;

	if (!d)
		return;
	d->g = g;
	num = (mode & M_RAW_NUM) ? le16(hdr + 1) : 1u << (hdr[1] % 12);
	cfg.num = (uint16_t)num;
	if (mode & M_RAW_ADDR) {
		cfg.desc = le16(hdr + 7);
		cfg.avail = le16(hdr + 9);
		cfg.used = le16(hdr + 11);
	} else {
		cfg.desc = 0;
		cfg.avail = VP_VQ_DESC_BYTES(num);
		cfg.used = (cfg.avail + VP_VQ_AVAIL_BYTES(num) + 3) & ~3ull;
	}
	cfg.last_avail_idx = le16(hdr + 3);
	cfg.last_used_idx = le16(hdr + 5);
	cfg.indirect = mode & M_INDIRECT;
	cfg.event_idx = mode & M_EVENT;
	cfg.name = "fuzz";
	if (mode & M_UVA) {
		cfg.ring_space = VP_ADDR_UVA;
		cfg.desc += UVA_BASE;
		cfg.avail += UVA_BASE;
		cfg.used += UVA_BASE;
	}
	r = vp_vq_dev_new(&d->vq, g->mem, &cfg);
	if (r) {
		MUST(r == -EINVAL || r == -EFAULT || r == -EACCES);
		MUST(d->vq == NULL);
		free(d);
		return;
	}
	MUST(vp_vq_dev_num(d->vq) == num);
	d->num = num;
	d->used_idx = cfg.last_used_idx;
	if (mode & M_UVA) {
		cfg.avail -= UVA_BASE;
		cfg.used -= UVA_BASE;
	}
	d->avail_idx = (uint16_t *)(void *)host_of(g, cfg.avail + 2, 2);
	d->avail_ring = (uint16_t *)(void *)host_of(g, cfg.avail + 4, 2u * num);
	MUST(d->avail_idx && d->avail_ring);

	for (unsigned i = 0; i < nops; i++) {
		const uint8_t *op = ops + 4 * i;
		uint8_t a = op[1], b = op[2], c = op[3];
		bool broken = vp_vq_dev_broken(d->vq);

		switch (op[0] % 11) {
		case 0:
			dev_pop(d, a % 17, b % 65);
			break;
		case 1:
			dev_push(d, a % 17, b, c);
			break;
		case 2:
			MUST(!(vp_vq_dev_need_signal(d->vq) && broken));
			break;
		case 3:
			MUST(!(vp_vq_dev_enable_notify(d->vq) && broken));
			break;
		case 4:
			vp_vq_dev_disable_notify(d->vq);
			break;
		case 5: {
			unsigned p = vp_vq_dev_avail_pending(d->vq);

			MUST(p <= num);
			MUST(!(p && vp_vq_dev_broken(d->vq)));
			break;
		}
		case 6:		/* the driver rewrites avail->idx */
			*d->avail_idx = (uint16_t)(a | b << 8);
			break;
		case 7:
			*d->avail_idx = (uint16_t)(*d->avail_idx + a % (num + 2));
			break;
		case 8: {	/* the driver scribbles on its memory */
			unsigned char *h = host_of(g, (uint64_t)(a | b << 8), 1);

			if (h)
				*h = c;
			break;
		}
		case 9:		/* the driver posts a head */
			d->avail_ring[*d->avail_idx & (num - 1)] = (uint16_t)(a | b << 8);
			*d->avail_idx = (uint16_t)(*d->avail_idx + 1);
			break;
		case 10:
			dev_unpop(d, a % 17);
			break;
		}
		/* Broken stays broken. */
		MUST(!broken || vp_vq_dev_broken(d->vq));
	}
	vp_vq_dev_free(d->vq);
	free(d);
}

/* ---- driver side: our ring, a hostile device ---- */

#define DRV_RING   0x0000u	/* desc, avail, used of up to 256 entries */
#define DRV_IND    0x2000u	/* indirect tables */
#define DRV_DATA   0x6000u	/* buffers */

struct drvrun {
	struct vp_vq_drv *vq;
	struct vp_vq_dev *dev;	/* an honest device on the same ring (split) */
	struct vp_vq_packed *pdev;	/* or (packed) */
	unsigned num;
	uint32_t posted[4096];	/* writable bytes per token */
	bool out[4096];		/* token outstanding */
	unsigned ndesc[4096];
	unsigned next_tok, outstanding_desc;
	struct vring_used *used;
};

static void drv_collect(struct drvrun *d, unsigned max)
{
	void *t[16];
	uint32_t l[16];
	bool was_broken = vp_vq_drv_broken(d->vq);
	int r = vp_vq_drv_get_used(d->vq, t, l, max);

	if (r < 0) {
		MUST(r == -EIO && vp_vq_drv_broken(d->vq));
		MUST(vp_vq_drv_broken_reason(d->vq)[0]);
		return;
	}
	MUST(!was_broken && (unsigned)r <= max);
	for (int i = 0; i < r; i++) {
		size_t k = (size_t)((bool *)t[i] - d->out);

		MUST(k < 4096 && d->out[k]);
		MUST(l[i] <= d->posted[k]);
		d->out[k] = false;
		d->outstanding_desc -= d->ndesc[k];
	}
	MUST(vp_vq_drv_num_free(d->vq) + d->outstanding_desc == d->num);
}

static void drv_add(struct drvrun *d, unsigned nout, unsigned nin, uint8_t c,
		    unsigned ind_max)
{
	struct vp_buf b[8];
	unsigned n = nout + nin, k = d->next_tok++ % 4096;
	uint32_t in_len = 0;
	int r;

	if (d->out[k] || n > 8)
		return;
	for (unsigned i = 0; i < n; i++) {
		b[i] = (struct vp_buf){ DRV_DATA + 256u * ((c + i) % 16), 1u + (c + i * 31u) % 256 };
		if (i >= nout)
			in_len += b[i].len;
	}
	r = vp_vq_drv_add(d->vq, b, nout, b + nout, nin, &d->out[k]);
	if (vp_vq_drv_broken(d->vq)) {
		MUST(r == -EIO);
		return;
	}
	if (n == 0) {
		MUST(r == -EINVAL);
		return;
	}
	if (r == -ENOSPC)
		return;
	MUST(r == 0);
	d->out[k] = true;
	d->posted[k] = in_len;
	d->ndesc[k] = (n > 1 && n <= ind_max) ? 1 : n;
	d->outstanding_desc += d->ndesc[k];
	MUST(vp_vq_drv_num_free(d->vq) + d->outstanding_desc == d->num);
}

static void drv_add_burst(struct drvrun *d, unsigned n, bool writable, uint8_t c)
{
	struct vp_buf b[8];
	void *t[8];
	unsigned k[8];
	int r;

	for (unsigned i = 0; i < n; i++) {
		k[i] = d->next_tok++ % 4096;
		if (d->out[k[i]]) {
			n = i;
			break;
		}
		b[i] = (struct vp_buf){ DRV_DATA + 256u * ((c + i) % 16), 1u + (c + i * 7u) % 256 };
		t[i] = &d->out[k[i]];
	}
	r = vp_vq_drv_add_burst(d->vq, b, n, writable, t);
	if (vp_vq_drv_broken(d->vq)) {
		MUST(r == -EIO);
		return;
	}
	MUST(r >= 0 && (unsigned)r <= n);
	for (int i = 0; i < r; i++) {
		d->out[k[i]] = true;
		d->posted[k[i]] = writable ? b[i].len : 0;
		d->ndesc[k[i]] = 1;
		d->outstanding_desc++;
	}
	MUST(vp_vq_drv_num_free(d->vq) + d->outstanding_desc == d->num);
	MUST((unsigned)r == n || vp_vq_drv_num_free(d->vq) == 0);
}

static void drv_device_round(struct drvrun *d, unsigned max, uint8_t lenmode)
{
	struct vp_chain ch[16];
	struct iovec iov[64];
	struct vp_used u[16];
	int r = d->pdev ? vp_vq_packed_pop_burst(d->pdev, ch, max, iov, 64) :
		vp_vq_dev_pop_burst(d->dev, ch, max, iov, 64);

	if (r <= 0)
		return;
	for (int i = 0; i < r; i++)
		u[i] = (struct vp_used){ ch[i].head,
					 lenmode ? ch[i].len_in + (lenmode == 1) : ch[i].len_in / 2 };
	if (d->pdev) {
		vp_vq_packed_push_burst(d->pdev, u, (unsigned)r);
		vp_vq_packed_need_signal(d->pdev);
	} else {
		vp_vq_dev_push_burst(d->dev, u, (unsigned)r);
		vp_vq_dev_need_signal(d->dev);
	}
}

/* Packed: the device writes a used descriptor at any slot, with any id,
 * length and wrap bits (the driver reads only the slot due next). */
static void drv_forge_packed(struct drvrun *d, unsigned char *ring, uint8_t a, uint8_t b,
			     uint8_t cc)
{
	struct vring_packed_desc *e = (struct vring_packed_desc *)(void *)ring + a % d->num;
	uint16_t fl = 0;

	if (cc & 1)
		fl |= 1u << VRING_PACKED_DESC_F_AVAIL;
	if (cc & 2)
		fl |= 1u << VRING_PACKED_DESC_F_USED;
	e->id = (uint16_t)(b % (d->num + 2));	/* now and then out of range */
	e->len = (uint32_t)(cc >> 2) << (b >> 7 ? 8 : 0);
	__atomic_store_n(&e->flags, fl, __ATOMIC_RELEASE);
}

static void run_driver(struct gmem *g, const uint8_t *hdr, const uint8_t *ops,
		       unsigned nops)
{
	uint8_t mode = hdr[0];
	bool packed = hdr[15] & 1;
	unsigned num = packed ? hdr[1] + 1u : 1u << (hdr[1] % 9);
	unsigned ind_max = (mode & M_INDIRECT) ? hdr[14] % 9 : 0;
	/* Packed: the descriptor ring, then the driver and device event areas. */
	uint64_t avail = packed ? VP_VQ_PACKED_DESC_BYTES(num) : VP_VQ_DESC_BYTES(num);
	uint64_t used = packed ? avail + 4 : (avail + VP_VQ_AVAIL_BYTES(num) + 3) & ~3ull;
	struct vp_vq_drv_config c = {
		.num = (uint16_t)num, .desc = g->r0 + DRV_RING, .avail = g->r0 + avail,
		.used = g->r0 + used, .event_idx = mode & M_EVENT,
		.indirect_area = g->r0 + DRV_IND, .indirect_gpa = DRV_IND,
		.indirect_max = (uint16_t)ind_max, .name = "fuzz-drv", .packed = packed,
	};
	struct vp_vq_dev_config dc = {
		.num = (uint16_t)num, .desc = DRV_RING, .avail = avail, .used = used,
		.event_idx = mode & M_EVENT, .indirect = true, .name = "fuzz-dev",
	};
	struct vp_vq_packed_config pc = {
		.num = (uint16_t)num, .desc = DRV_RING, .driver = avail, .device = used,
		.last_avail_idx = 0x8000, .event_idx = mode & M_EVENT, .indirect = true,
		.name = "fuzz-dev",
	};
	struct drvrun *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return;
	d->num = num;
	/* Tables: num * indirect_max * 16 bytes must fit below DRV_DATA. */
	if ((uint64_t)num * ind_max * 16 > DRV_DATA - DRV_IND)
		c.indirect_max = 0, ind_max = 0;
	r = vp_vq_drv_new(&d->vq, &c);
	MUST(r == 0);
	if (packed)
		MUST(vp_vq_packed_new(&d->pdev, g->mem, &pc) == 0);
	else
		MUST(vp_vq_dev_new(&d->dev, g->mem, &dc) == 0);
	d->used = (struct vring_used *)(void *)(g->r0 + used);
	if (ind_max < 2)
		ind_max = 0;

	for (unsigned i = 0; i < nops; i++) {
		const uint8_t *op = ops + 4 * i;
		uint8_t a = op[1], b = op[2], cc = op[3];
		bool broken = vp_vq_drv_broken(d->vq);

		switch (op[0] % 10) {
		case 0:
			drv_add(d, a % 5, b % 5, cc, ind_max);
			break;
		case 1:
			drv_add_burst(d, a % 9u, b & 1, cc);
			break;
		case 2:
			MUST(!(vp_vq_drv_publish(d->vq) && broken));
			break;
		case 3:
			drv_collect(d, a % 17);
			break;
		case 4:
			MUST(!(vp_vq_drv_enable_cb(d->vq) && broken));
			break;
		case 5:
			vp_vq_drv_disable_cb(d->vq);
			break;
		case 6:
			drv_device_round(d, a % 17, b % 3);
			break;
		case 7: {	/* the device forges a used entry */
			vring_used_elem_t *e;

			if (packed) {
				drv_forge_packed(d, g->r0 + DRV_RING, a, b, cc);
				break;
			}
			e = &d->used->ring[d->used->idx & (num - 1)];

			e->id = (uint32_t)(a | (b & 0x7f) << 8);
			e->len = (uint32_t)cc << (b >> 7 ? 8 : 0);
			d->used->idx++;
			break;
		}
		case 8: {	/* the device scribbles anywhere in the ring area */
			unsigned char *h = host_of(g, (uint64_t)(a | (b & 0x7f) << 8), 1);

			if (h)
				*h = cc;
			break;
		}
		case 9:
			if (packed) {	/* the device's event area: any offset, wrap, flags */
				struct vring_packed_desc_event *ev = (void *)d->used;

				ev->off_wrap = (uint16_t)(a | b << 8);
				ev->flags = cc % 4;
			} else {
				d->used->idx = (uint16_t)(a | b << 8);
			}
			break;
		}
		MUST(!broken || vp_vq_drv_broken(d->vq));
		MUST(vp_vq_drv_num_free(d->vq) <= num);
	}
	vp_vq_dev_free(d->dev);
	vp_vq_packed_free(d->pdev);
	vp_vq_drv_free(d->vq);
	free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *ops;
	unsigned nops;
	size_t off;
	struct gmem g;

	/* FUZZ_VRING_LOG=1 shows the rejections when replaying one input. */
	if (!getenv("FUZZ_VRING_LOG"))
		vp_log_set_handler(quiet, NULL);
	if (size < HDR_SIZE)
		return 0;
	nops = data[13] % (MAX_OPS + 1);
	off = HDR_SIZE + 4u * nops;
	if (off > size) {
		nops = (unsigned)((size - HDR_SIZE) / 4);
		off = HDR_SIZE + 4u * nops;
	}
	ops = data + HDR_SIZE;
	if (gmem_init(&g, data[0], data + off, size - off) == 0) {
		if (data[0] & M_DRIVER)
			run_driver(&g, data, ops, nops);
		else
			run_device(&g, data, ops, nops);
	}
	gmem_fini(&g);
	return 0;
}
