/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Two-process ring harness: see harness.h.
 *
 * Guest RAM layout (gpa = offset in the memfd):
 *   0          control page: harness-only (stop flag, latency cache line)
 *   per queue  desc | avail | used (page aligned) | indirect tables | pool
 * A pool has one slot per ring entry; a chain's buffers are carved from
 * its slot back to front, so a device that read past one descriptor into
 * the next address would see the wrong bytes.
 *
 * Payload of packet seq on queue q is a counter-based PRNG stream keyed by
 * (seed, q, seq): the receiver recomputes any byte without shared state,
 * and the ring must deliver packets in order for the keys to agree.
 *
 * Liveness: the driver polls a pipe the device writes (EOF = device gone),
 * the device polls a pipe the driver holds (EOF = driver gone) and has
 * PR_SET_PDEATHSIG; every wait has a stall limit and the run a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/vhostpci.h"
#include "harness.h"

#define HX_BURST 32
#define HX_PAGE 4096u
#define HX_RAM_MIN (16ull << 20)
#define HX_IOV_MAX (HX_BURST * HX_MAX_CHAIN)
#define GOLDEN 0x9e3779b97f4a7c15ull
#define PROBE_SAMPLES 401
#define PROBE_ROUNDS 50

enum { Q_TX = 0, Q_RX = 1 };
static const char *const qname[2] = { "tx", "rx" };

/* Harness-only control block at gpa 0; not part of any virtio layout. */
struct hx_ctl {
	uint64_t line __attribute__((aligned(64)));	/* latency ping-pong */
	uint32_t stop __attribute__((aligned(64)));	/* set by the driver */
};

struct hx_qlay {
	uint64_t desc, avail, used, indirect, pool;
};

struct hx_layout {
	uint64_t ram_size, slot_size;
	struct hx_qlay q[2];
};

/* Device -> driver messages on the back pipe. */
enum { MSG_HELLO = 1, MSG_RESULT = 2 };
struct hx_msg {
	uint32_t type;
	uint64_t base;			/* device's address of gpa 0 */
	uint64_t pkts[2], bytes[2];
	uint64_t calls, sleeps;
	double cpu;
};

/* What both processes share, set up before fork(). */
struct hx {
	const struct hx_opts *o;
	struct hx_layout lay;
	int memfd;
	int kick[2], call[2];	/* eventfds per queue */
	int go[2];		/* driver -> device: start; EOF = driver gone */
	int back[2];		/* device -> driver: messages; EOF = device gone */
	uint64_t count[2];	/* buffers per queue; UINT64_MAX = until stop */
	uint64_t deadline;
	uint64_t inject_at;	/* packet seq a fault is injected at */
	struct hx_ctl *ctl;
	uint64_t probe_val;	/* both sides step it in lockstep */
	uint8_t *tmpl;		/* stamp mode: outgoing payload */
	uint8_t *sink;		/* stamp mode: where received payload goes */
};

static const char *who = "driver";

__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "harness %s: FAIL: %s\n", who, buf);
	return -1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* A self-inflicted fault of kind k is due at packet seq. */
static bool inject_now(const struct hx *h, enum hx_inject k, uint64_t seq)
{
	return h->o->inject == k && seq == h->inject_at;
}

/* ---------------------------------------------------------------------- */
/* Payload                                                                */

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t pkt_key(const struct hx_opts *o, unsigned q, uint64_t seq)
{
	return mix64(o->seed ^ mix64(seq * 2 + q));
}

static uint32_t pkt_size(const struct hx_opts *o, uint64_t key)
{
	uint32_t span = o->max_size - o->min_size + 1;

	return o->min_size + (uint32_t)(mix64(key ^ GOLDEN) % span);
}

static inline uint64_t pay_word(uint64_t key, uint64_t k)
{
	return mix64(key + k * GOLDEN);
}

/* Payload bytes [off, off + len) of key into p. */
static void fill_span(uint64_t key, uint64_t off, uint8_t *p, size_t len)
{
	while (len) {
		uint64_t w = pay_word(key, off >> 3);
		size_t b = off & 7, n;

		if (!b && len >= 8) {
			memcpy(p, &w, 8);
			n = 8;
		} else {
			n = min_sz(8 - b, len);
			memcpy(p, (uint8_t *)&w + b, n);
		}
		p += n;
		off += n;
		len -= n;
	}
}

/* Offset of the first wrong byte of [off, off + len), or UINT64_MAX. */
static uint64_t check_span(uint64_t key, uint64_t off, const uint8_t *p,
			   size_t len, uint8_t *got, uint8_t *want)
{
	while (len) {
		uint64_t w = pay_word(key, off >> 3);
		const uint8_t *wb = (const uint8_t *)&w;
		size_t b = off & 7, n = min_sz(8 - b, len);

		if (n == 8 ? memcmp(p, wb, 8) : memcmp(p, wb + b, n)) {
			for (size_t i = 0; i < n; i++) {
				if (p[i] != wb[b + i]) {
					*got = p[i];
					*want = wb[b + i];
					return off + i;
				}
			}
		}
		p += n;
		off += n;
		len -= n;
	}
	return UINT64_MAX;
}

/* Write packet (q, seq) of len bytes across iov (which holds >= len). */
static void pkt_put(struct hx *h, unsigned q, uint64_t seq,
		    const struct iovec *iov, unsigned n, size_t len)
{
	uint64_t key = pkt_key(h->o, q, seq);
	size_t off = 0;

	if (h->o->verify == HX_VERIFY_STAMP)
		memcpy(h->tmpl, &seq, min_sz(8, len));
	for (unsigned i = 0; i < n && off < len; i++) {
		size_t l = min_sz(iov[i].iov_len, len - off);

		if (h->o->verify == HX_VERIFY_STAMP)
			memcpy(iov[i].iov_base, h->tmpl + off, l);
		else
			fill_span(key, off, iov[i].iov_base, l);
		off += l;
	}
	if (inject_now(h, q == Q_TX ? HX_INJ_CORRUPT_TX : HX_INJ_CORRUPT_RX, seq))
		*(uint8_t *)iov[0].iov_base ^= 0x5a;
}

static int stamp_check(struct hx *h, unsigned q, uint64_t seq,
		       const struct iovec *iov, unsigned n, size_t len)
{
	size_t off = 0;

	for (unsigned i = 0; i < n && off < len; i++) {
		size_t l = min_sz(iov[i].iov_len, len - off);

		memcpy(h->sink + off, iov[i].iov_base, l);
		off += l;
	}
	if (memcmp(h->sink, &seq, min_sz(8, len)))
		return fail("%s seq %" PRIu64 ": wrong sequence stamp",
			    qname[q], seq);
	return 0;
}

/* 0 if iov holds packet (q, seq) of len bytes; else say where not. */
static int pkt_check(struct hx *h, unsigned q, uint64_t seq,
		     const struct iovec *iov, unsigned n, size_t len)
{
	uint64_t key = pkt_key(h->o, q, seq), bad;
	uint8_t got, want;
	size_t off = 0;

	if (h->o->verify == HX_VERIFY_STAMP)
		return stamp_check(h, q, seq, iov, n, len);
	for (unsigned i = 0; i < n && off < len; i++) {
		size_t l = min_sz(iov[i].iov_len, len - off);

		bad = check_span(key, off, iov[i].iov_base, l, &got, &want);
		if (bad != UINT64_MAX)
			return fail("%s seq %" PRIu64 ": byte %" PRIu64
				    " of %zu (iov %u of %u) is 0x%02x, want 0x%02x",
				    qname[q], seq, bad, len, i, n, got, want);
		off += l;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Set-up shared by both sides                                            */

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static void layout(const struct hx_opts *o, struct hx_layout *l)
{
	uint64_t at = HX_PAGE;	/* page 0: control block */

	l->slot_size = align_up(o->max_size, 64);
	for (unsigned q = 0; q < 2; q++) {
		struct hx_qlay *ql = &l->q[q];

		ql->desc = at = align_up(at, HX_PAGE);
		at += VP_VQ_DESC_BYTES(o->qsize);
		ql->avail = at;
		at += VP_VQ_AVAIL_BYTES(o->qsize);
		ql->used = at = align_up(at, HX_PAGE);
		at += VP_VQ_USED_BYTES(o->qsize);
		ql->indirect = at = align_up(at, 64);
		at += (uint64_t)o->qsize * o->max_chain * 16;
		ql->pool = at = align_up(at, HX_PAGE);
		at += (uint64_t)o->qsize * l->slot_size;
	}
	l->ram_size = at > HX_RAM_MIN ? align_up(at, 2ull << 20) : HX_RAM_MIN;
}

static int check_opts(const struct hx_opts *o)
{
	if (!o->qsize || o->qsize > VP_VQ_MAX_SIZE || (o->qsize & (o->qsize - 1)))
		return fail("qsize %u: want a power of two <= %u", o->qsize,
			    VP_VQ_MAX_SIZE);
	if (!o->max_chain || o->max_chain > HX_MAX_CHAIN ||
	    o->max_chain > o->qsize || o->bufs > o->max_chain)
		return fail("max chain %u, bufs %u: want bufs <= max chain <= %u"
			    " and <= qsize", o->max_chain, o->bufs, HX_MAX_CHAIN);
	if (!o->min_size || o->min_size > o->max_size || o->max_size > (1u << 20))
		return fail("sizes %u..%u: want 1 <= min <= max <= 1 MiB",
			    o->min_size, o->max_size);
	if (!o->tx && !o->rx)
		return fail("no direction to run");
	if (!o->count && o->seconds <= 0)
		return fail("need a count or a duration");
	return 0;
}

static int make_fds(struct hx *h)
{
	h->memfd = memfd_create("hx-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	/* Sealed like QEMU's RAM: the device side may trust the size it maps. */
	if (h->memfd < 0 || ftruncate(h->memfd, (off_t)h->lay.ram_size) < 0 ||
	    fcntl(h->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		return fail("guest RAM memfd: %s", strerror(errno));
	for (unsigned q = 0; q < 2; q++) {
		h->kick[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		h->call[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (h->kick[q] < 0 || h->call[q] < 0)
			return fail("eventfd: %s", strerror(errno));
	}
	if (pipe2(h->go, O_CLOEXEC) || pipe2(h->back, O_CLOEXEC))
		return fail("pipe: %s", strerror(errno));
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void close_all(struct hx *h)
{
	close_fd(&h->memfd);
	for (unsigned q = 0; q < 2; q++) {
		close_fd(&h->kick[q]);
		close_fd(&h->call[q]);
		close_fd(&h->go[q]);
		close_fd(&h->back[q]);
	}
}

static int pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	if (cpu >= CPU_SETSIZE)
		return fail("core %d out of range", cpu);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return fail("cannot pin to core %d: %s", cpu, strerror(errno));
	return 0;
}

static void notify(int fd)
{
	uint64_t one = 1;

	/* Cannot block: the counter would need 2^64 - 2 unread kicks. */
	if (write(fd, &one, sizeof(one)) != sizeof(one))
		fail("eventfd write: %s", strerror(errno));
}

static void drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == sizeof(v))
		;
}

/* ---------------------------------------------------------------------- */
/* Cross-core latency probe: one cache line bounced between the two.      */

/* Spin until *p == want; -1 past the deadline. */
static int spin_until(const uint64_t *p, uint64_t want, uint64_t deadline)
{
	for (uint32_t i = 1;; i++) {
		if (__atomic_load_n(p, __ATOMIC_ACQUIRE) == want)
			return 0;
		cpu_relax();
		/* Rare: lets the peer run if both share a core. */
		if (!(i & 0xffff)) {
			if (now_ns() > deadline)
				return -1;
			sched_yield();
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Driver: one-way ns, median of PROBE_SAMPLES; < 0 on failure. */
static double probe_ping(struct hx *h)
{
	static double s[PROBE_SAMPLES];
	uint64_t dl = now_ns() + (uint64_t)h->o->stall_ms * 1000000ull;

	for (unsigned i = 0; i < PROBE_SAMPLES; i++) {
		uint64_t t0 = now_ns();

		for (unsigned j = 0; j < PROBE_ROUNDS; j++) {
			__atomic_store_n(&h->ctl->line, ++h->probe_val,
					 __ATOMIC_RELEASE);
			if (spin_until(&h->ctl->line, ++h->probe_val, dl))
				return fail("latency probe: device silent");
		}
		s[i] = (double)(now_ns() - t0) / (2.0 * PROBE_ROUNDS);
	}
	qsort(s, PROBE_SAMPLES, sizeof(s[0]), cmp_double);
	return s[PROBE_SAMPLES / 2];
}

/* Device: answer every ping of one probe. */
static int probe_pong(struct hx *h)
{
	uint64_t dl = now_ns() + (uint64_t)h->o->stall_ms * 1000000ull;

	for (unsigned i = 0; i < PROBE_SAMPLES * PROBE_ROUNDS; i++) {
		if (spin_until(&h->ctl->line, ++h->probe_val, dl))
			return fail("latency probe: driver silent");
		__atomic_store_n(&h->ctl->line, ++h->probe_val, __ATOMIC_RELEASE);
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Driver side (parent): our own rings in our own mapping of the RAM.     */

struct shape {
	uint32_t len;		/* bytes in the chain */
	uint16_t k;		/* buffers */
	struct vp_buf b[HX_MAX_CHAIN];
};

struct drv_q {
	struct vp_vq_drv *vq;
	uint64_t pool;		/* gpa of slot 0 */
	uint16_t *free_slots;
	unsigned nfree;
	uint16_t *fifo;		/* outstanding slots in add order */
	unsigned fifo_head, fifo_n;
	struct shape *shape;	/* per slot */
	uint64_t seq;		/* TX: next to send; RX: next expected */
	uint64_t done, bytes;
};

struct drv {
	struct hx *h;
	uint8_t *ram;
	struct drv_q q[2];
	uint64_t rng;
	uint64_t kicks, sleeps;
	bool dev_gone, have_result;
	struct hx_msg result;
};

static uint64_t rnd(struct drv *d)
{
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return d->rng * 0x2545f4914f6cdd1dull;
}

static void *token(unsigned slot)
{
	return (void *)(uintptr_t)(slot + 1);
}

static bool fixed_size(const struct hx_opts *o)
{
	return o->min_size == o->max_size;
}

/* Fixed-size one-buffer chains go through vp_vq_drv_add_burst(). */
static bool one_buf(const struct hx_opts *o)
{
	return fixed_size(o) && o->bufs <= 1;
}

static unsigned chain_len(struct drv *d, uint32_t total)
{
	const struct hx_opts *o = d->h->o;

	if (o->bufs)
		return (unsigned)min_sz(o->bufs, total);
	if (fixed_size(o))
		return 1;
	return 1 + (unsigned)(rnd(d) % min_sz(o->max_chain, total));
}

/* Length of the next piece when left bytes go into pieces >= 2 buffers. */
static uint32_t piece_len(struct drv *d, uint32_t left, unsigned pieces)
{
	uint32_t most = left - (pieces - 1), avg = left / pieces;
	uint32_t len = 1 + (uint32_t)(rnd(d) % (2ull * avg));

	return len < most ? len : most;
}

/* Carve total bytes from the slot's end backwards, in 1..max_chain pieces. */
static struct shape *shape_make(struct drv *d, struct drv_q *dq,
				unsigned slot, uint32_t total)
{
	struct shape *s = &dq->shape[slot];
	uint64_t end = dq->pool + (uint64_t)(slot + 1) * d->h->lay.slot_size;
	unsigned k = chain_len(d, total);
	uint32_t left = total;

	for (unsigned i = 0; i < k; i++) {
		uint32_t len = i == k - 1 ? left : piece_len(d, left, k - i);

		end -= len;
		s->b[i] = (struct vp_buf){ .addr = end, .len = len };
		left -= len;
	}
	s->k = (uint16_t)k;
	s->len = total;
	return s;
}

static unsigned shape_iov(const struct drv *d, const struct shape *s,
			  struct iovec *iov)
{
	for (unsigned i = 0; i < s->k; i++)
		iov[i] = (struct iovec){ d->ram + s->b[i].addr, s->b[i].len };
	return s->k;
}

static void fifo_push(struct drv_q *dq, unsigned qsize, unsigned slot)
{
	dq->fifo[(dq->fifo_head + dq->fifo_n++) & (qsize - 1)] = (uint16_t)slot;
}

static int drv_broken(struct drv_q *dq, unsigned q, const char *op, int err)
{
	return fail("%s %s: %d (%s)", qname[q], op, err,
		    vp_vq_drv_broken_reason(dq->vq));
}

/* TX, random shape: one chain. 1 staged, 0 ring full, -1 failure. */
static int drv_tx_one(struct drv *d)
{
	struct drv_q *dq = &d->q[Q_TX];
	unsigned slot = dq->free_slots[--dq->nfree];
	uint64_t key = pkt_key(d->h->o, Q_TX, dq->seq);
	struct shape *s = shape_make(d, dq, slot, pkt_size(d->h->o, key));
	struct iovec iov[HX_MAX_CHAIN];
	int r;

	pkt_put(d->h, Q_TX, dq->seq, iov, shape_iov(d, s, iov), s->len);
	r = vp_vq_drv_add(dq->vq, s->b, s->k, NULL, 0, token(slot));
	if (r == -ENOSPC) {
		/* Retried later with a new shape; the payload is by seq. */
		dq->free_slots[dq->nfree++] = (uint16_t)slot;
		return 0;
	}
	if (r < 0)
		return drv_broken(dq, Q_TX, "add", r);
	fifo_push(dq, d->h->o->qsize, slot);
	dq->seq++;
	return 1;
}

/*
 * Stage up to n one-buffer chains with vp_vq_drv_add_burst(): TX packets
 * (payload written first) or RX buffers. Chains it did not stage give
 * their slots back, and TX rewinds seq to the first of them.
 */
static int drv_burst(struct drv *d, unsigned q, unsigned n)
{
	struct drv_q *dq = &d->q[q];
	struct vp_buf bufs[HX_BURST];
	void *tok[HX_BURST];
	unsigned slots[HX_BURST];
	int r;

	for (unsigned i = 0; i < n; i++) {
		struct shape *s;
		struct iovec iov;

		slots[i] = dq->free_slots[--dq->nfree];
		s = shape_make(d, dq, slots[i], d->h->o->max_size);
		if (q == Q_TX)
			pkt_put(d->h, q, dq->seq + i, &iov,
				shape_iov(d, s, &iov), s->len);
		bufs[i] = s->b[0];
		tok[i] = token(slots[i]);
	}
	r = vp_vq_drv_add_burst(dq->vq, bufs, n, q == Q_RX, tok);
	if (r < 0)
		return drv_broken(dq, q, "add_burst", r);
	for (unsigned i = 0; i < n; i++) {
		if (i < (unsigned)r)
			fifo_push(dq, d->h->o->qsize, slots[i]);
		else
			dq->free_slots[dq->nfree++] = (uint16_t)slots[n - 1 - i + r];
	}
	if (q == Q_TX)
		dq->seq += (unsigned)r;
	return r;
}

/* How many chains to stage before publishing: random, to vary timing. */
static unsigned drv_batch(struct drv *d)
{
	return fixed_size(d->h->o) ? HX_BURST : 1 + (unsigned)(rnd(d) % HX_BURST);
}

static int drv_publish(struct drv *d, unsigned q, int added)
{
	if (added > 0 && vp_vq_drv_publish(d->q[q].vq)) {
		notify(d->h->kick[q]);
		d->kicks++;
	}
	return added;
}

static int drv_tx_fill(struct drv *d)
{
	struct drv_q *dq = &d->q[Q_TX];
	unsigned batch = drv_batch(d);
	int added = 0, r;

	while ((unsigned)added < batch && dq->nfree &&
	       dq->seq < d->h->count[Q_TX]) {
		if (one_buf(d->h->o)) {
			uint64_t n = min_sz(batch - (unsigned)added, dq->nfree);

			n = min_sz(n, d->h->count[Q_TX] - dq->seq);
			n = min_sz(n, vp_vq_drv_num_free(dq->vq));
			r = n ? drv_burst(d, Q_TX, (unsigned)n) : 0;
		} else {
			r = drv_tx_one(d);
		}
		if (r < 0)
			return r;
		if (r == 0)
			break;
		added += r;
	}
	return drv_publish(d, Q_TX, added);
}

/* RX, random shape: one chain of max_size writable bytes. As drv_tx_one. */
static int drv_rx_one(struct drv *d)
{
	struct drv_q *dq = &d->q[Q_RX];
	unsigned slot = dq->free_slots[--dq->nfree];
	struct shape *s = shape_make(d, dq, slot, d->h->o->max_size);
	int r = vp_vq_drv_add(dq->vq, NULL, 0, s->b, s->k, token(slot));

	if (r == -ENOSPC) {
		dq->free_slots[dq->nfree++] = (uint16_t)slot;
		return 0;
	}
	if (r < 0)
		return drv_broken(dq, Q_RX, "add", r);
	fifo_push(dq, d->h->o->qsize, slot);
	return 1;
}

/* Keep the RX ring stocked with buffers of max_size bytes. */
static int drv_rx_post(struct drv *d)
{
	struct drv_q *dq = &d->q[Q_RX];
	unsigned batch = drv_batch(d);
	int added = 0, r;

	while ((unsigned)added < batch && dq->nfree && d->h->count[Q_RX]) {
		if (one_buf(d->h->o)) {
			uint64_t n = min_sz(batch - (unsigned)added, dq->nfree);

			n = min_sz(n, vp_vq_drv_num_free(dq->vq));
			r = n ? drv_burst(d, Q_RX, (unsigned)n) : 0;
		} else {
			r = drv_rx_one(d);
		}
		if (r < 0)
			return r;
		if (r == 0)
			break;
		added += r;
	}
	return drv_publish(d, Q_RX, added);
}

/* One used RX buffer: the device wrote packet seq into slot. */
static int drv_rx_got(struct drv *d, unsigned slot, uint32_t len)
{
	struct drv_q *dq = &d->q[Q_RX];
	const struct hx_opts *o = d->h->o;
	uint32_t want = pkt_size(o, pkt_key(o, Q_RX, dq->seq));
	struct iovec iov[HX_MAX_CHAIN];
	const struct shape *s = &dq->shape[slot];

	if (dq->seq >= d->h->count[Q_RX])
		return fail("rx: more packets than the device was to send");
	if (inject_now(d->h, HX_INJ_DRV_EXIT, dq->seq))
		_exit(4);
	if (len != want)
		return fail("rx seq %" PRIu64 ": used len %u, want %u",
			    dq->seq, len, want);
	if (pkt_check(d->h, Q_RX, dq->seq, iov, shape_iov(d, s, iov), len))
		return -1;
	dq->seq++;
	dq->bytes += len;
	return 0;
}

/* Collect used chains of queue q, in order, checking ids and lengths. */
static int drv_reap(struct drv *d, unsigned q)
{
	struct drv_q *dq = &d->q[q];
	unsigned qsize = d->h->o->qsize;
	void *tok[HX_BURST];
	uint32_t lens[HX_BURST];
	int n = vp_vq_drv_get_used(dq->vq, tok, lens, HX_BURST);

	if (n < 0)
		return drv_broken(dq, q, "get_used", n);
	for (int i = 0; i < n; i++) {
		unsigned slot = (unsigned)((uintptr_t)tok[i] - 1);
		unsigned want = dq->fifo[dq->fifo_head];

		if (!dq->fifo_n || slot != want)
			return fail("%s: used token %u out of order, want %u",
				    qname[q], slot, want);
		dq->fifo_head = (dq->fifo_head + 1) & (qsize - 1);
		dq->fifo_n--;
		if (q == Q_TX && lens[i] != 0)
			return fail("tx: used len %u for a read-only chain",
				    lens[i]);
		if (q == Q_TX)
			dq->bytes += dq->shape[slot].len;
		else if (drv_rx_got(d, slot, lens[i]))
			return -1;
		dq->done++;
		dq->free_slots[dq->nfree++] = (uint16_t)slot;
	}
	return n;
}

static bool drv_q_done(const struct drv *d, unsigned q)
{
	return d->q[q].done >= d->h->count[q];
}

/* A message from the device, or EOF. -1 if the device died silently. */
static int drv_read_back(struct drv *d)
{
	struct hx_msg m;
	ssize_t n = read(d->h->back[0], &m, sizeof(m));

	if (n == 0) {
		d->dev_gone = true;
		return d->have_result ? 0 : fail("device exited early");
	}
	if (n != sizeof(m) || m.type != MSG_RESULT)
		return fail("bad message from device (%zd bytes)", n);
	d->result = m;
	d->have_result = true;
	return 0;
}

/* Nothing to do: ask for calls, then sleep unless work raced in. */
static int drv_wait(struct drv *d)
{
	struct hx *h = d->h;
	struct pollfd p[3] = {
		{ .fd = h->call[Q_TX], .events = POLLIN },
		{ .fd = h->call[Q_RX], .events = POLLIN },
		{ .fd = d->dev_gone ? -1 : h->back[0], .events = POLLIN },
	};
	bool pending = false;
	int r = 0;

	for (unsigned q = 0; q < 2; q++)
		if (!drv_q_done(d, q) && vp_vq_drv_enable_cb(d->q[q].vq))
			pending = true;
	if (!pending) {
		d->sleeps++;
		r = poll(p, 3, (int)h->o->stall_ms);
		if (r == 0)
			r = fail("stalled: no call for %u ms (tx %" PRIu64
				 " done, rx %" PRIu64 " done)", h->o->stall_ms,
				 d->q[Q_TX].done, d->q[Q_RX].done);
		else if (r > 0 && (p[2].revents & (POLLIN | POLLHUP)))
			r = drv_read_back(d);
		else
			r = r < 0 && errno != EINTR ? fail("poll: %s", strerror(errno)) : 0;
		drain(h->call[Q_TX]);
		drain(h->call[Q_RX]);
	}
	for (unsigned q = 0; q < 2; q++)
		vp_vq_drv_disable_cb(d->q[q].vq);
	return r;
}

/* Every 1024 rounds: deadline, duration, device alive. 1 = time is up. */
static int drv_tick(struct drv *d, uint64_t t0)
{
	struct hx *h = d->h;
	struct pollfd p = { .fd = h->back[0], .events = POLLIN };
	uint64_t t = now_ns();

	if (t > h->deadline)
		return fail("timeout after %u s (tx %" PRIu64 " done, rx %"
			    PRIu64 " done)", h->o->timeout_s,
			    d->q[Q_TX].done, d->q[Q_RX].done);
	if (!d->dev_gone && poll(&p, 1, 0) > 0 && drv_read_back(d))
		return -1;
	return h->o->seconds > 0 && t - t0 >= (uint64_t)(h->o->seconds * 1e9);
}

static int drv_loop(struct drv *d, uint64_t t0)
{
	for (uint64_t iter = 1;; iter++) {
		int work = 0, r = 0;

		for (unsigned q = 0; q < 2 && r >= 0; q++) {
			r = drv_reap(d, q);
			work += r;
		}
		if (r >= 0 && (r = drv_tx_fill(d)) >= 0)
			work += r;
		if (r >= 0 && (r = drv_rx_post(d)) >= 0)
			work += r;
		if (r < 0)
			return -1;
		if (drv_q_done(d, Q_TX) && drv_q_done(d, Q_RX))
			return 0;
		if (!(iter & 1023) && (r = drv_tick(d, t0)) != 0)
			return r < 0 ? -1 : 0;
		if (!work && !d->h->o->busy_poll && drv_wait(d))
			return -1;
	}
}

static int drv_q_init(struct drv *d, unsigned q)
{
	const struct hx_opts *o = d->h->o;
	const struct hx_qlay *ql = &d->h->lay.q[q];
	struct drv_q *dq = &d->q[q];
	struct vp_vq_drv_config cfg = {
		.num = (uint16_t)o->qsize, .event_idx = o->event_idx,
		.desc = d->ram + ql->desc, .avail = d->ram + ql->avail,
		.used = d->ram + ql->used, .name = q ? "drv.rx" : "drv.tx",
	};
	int r;

	if (o->indirect) {
		cfg.indirect_area = d->ram + ql->indirect;
		cfg.indirect_gpa = ql->indirect;
		cfg.indirect_max = (uint16_t)o->max_chain;
	}
	r = vp_vq_drv_new(&dq->vq, &cfg);
	if (r < 0)
		return fail("%s: vp_vq_drv_new: %d", qname[q], r);
	vp_vq_drv_disable_cb(dq->vq);
	dq->pool = ql->pool;
	dq->free_slots = calloc(o->qsize, sizeof(*dq->free_slots));
	dq->fifo = calloc(o->qsize, sizeof(*dq->fifo));
	dq->shape = calloc(o->qsize, sizeof(*dq->shape));
	if (!dq->free_slots || !dq->fifo || !dq->shape)
		return fail("out of memory");
	for (unsigned i = 0; i < o->qsize; i++)
		dq->free_slots[dq->nfree++] = (uint16_t)(o->qsize - 1 - i);
	return 0;
}

static void drv_fini(struct drv *d)
{
	for (unsigned q = 0; q < 2; q++) {
		vp_vq_drv_free(d->q[q].vq);
		free(d->q[q].free_slots);
		free(d->q[q].fifo);
		free(d->q[q].shape);
	}
	if (d->ram && d->ram != MAP_FAILED)
		munmap(d->ram, d->h->lay.ram_size);
}

/* Wait up to the stall limit for one message from the device. */
static int drv_wait_msg(struct drv *d, struct hx_msg *m, uint32_t type)
{
	struct pollfd p = { .fd = d->h->back[0], .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, (int)d->h->o->stall_ms) <= 0)
		return fail("no %s from the device within %u ms",
			    type == MSG_HELLO ? "hello" : "result",
			    d->h->o->stall_ms);
	n = read(d->h->back[0], m, sizeof(*m));
	if (n == 0)
		return fail("device exited early");
	if (n != sizeof(*m) || m->type != type)
		return fail("bad message from device (%zd bytes)", n);
	return 0;
}

static int drv_start(struct drv *d, struct hx_result *res)
{
	struct hx *h = d->h;
	struct hx_msg hello;

	d->ram = mmap(NULL, h->lay.ram_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, h->memfd, 0);
	if (d->ram == MAP_FAILED)
		return fail("mmap guest RAM: %s", strerror(errno));
	h->ctl = (struct hx_ctl *)(void *)d->ram;
	if (drv_q_init(d, Q_TX) || drv_q_init(d, Q_RX) || drv_rx_post(d) < 0)
		return -1;
	/* Rings are initialised: now the device may attach. */
	if (write(h->go[1], "g", 1) != 1)
		return fail("cannot start the device: %s", strerror(errno));
	if (drv_wait_msg(d, &hello, MSG_HELLO))
		return -1;
	res->drv_base = (uintptr_t)d->ram;
	res->dev_base = hello.base;
	if (res->drv_base == res->dev_base)
		return fail("both sides mapped guest RAM at 0x%" PRIx64
			    ": translation would go unchecked", res->dev_base);
	return 0;
}

static void drv_results(struct drv *d, struct hx_result *r)
{
	r->tx_pkts = d->q[Q_TX].done;
	r->tx_bytes = d->q[Q_TX].bytes;
	r->rx_pkts = d->q[Q_RX].done;
	r->rx_bytes = d->q[Q_RX].bytes;
	r->kicks = d->kicks;
	r->drv_sleeps = d->sleeps;
	r->dev_tx_pkts = d->result.pkts[Q_TX];
	r->dev_tx_bytes = d->result.bytes[Q_TX];
	r->dev_rx_pkts = d->result.pkts[Q_RX];
	r->dev_rx_bytes = d->result.bytes[Q_RX];
	r->calls = d->result.calls;
	r->dev_sleeps = d->result.sleeps;
	r->dev_cpu = d->result.cpu;
}

/* Counts must agree exactly when the run was by count. */
static int drv_compare(const struct hx *h, const struct hx_result *r)
{
	if (h->o->seconds > 0)
		return 0;
	if (r->tx_pkts != h->count[Q_TX] || r->dev_tx_pkts != h->count[Q_TX] ||
	    r->dev_tx_bytes != r->tx_bytes)
		return fail("tx counts differ: driver %" PRIu64 " bufs %" PRIu64
			    " B, device %" PRIu64 " bufs %" PRIu64 " B, want %"
			    PRIu64, r->tx_pkts, r->tx_bytes, r->dev_tx_pkts,
			    r->dev_tx_bytes, h->count[Q_TX]);
	if (r->rx_pkts != h->count[Q_RX] || r->dev_rx_pkts != h->count[Q_RX] ||
	    r->dev_rx_bytes != r->rx_bytes)
		return fail("rx counts differ: driver %" PRIu64 " bufs %" PRIu64
			    " B, device %" PRIu64 " bufs %" PRIu64 " B, want %"
			    PRIu64, r->rx_pkts, r->rx_bytes, r->dev_rx_pkts,
			    r->dev_rx_bytes, h->count[Q_RX]);
	return 0;
}

static int drv_main(struct hx *h, struct hx_result *res)
{
	struct drv d = { .h = h, .rng = h->o->seed * 2 + 1 };
	uint64_t t0, c0;
	int r = -1;

	if (pin(h->o->cpu_drv) || drv_start(&d, res))
		goto out;
	if (h->o->probe && (res->lat_before_ns = probe_ping(h)) < 0)
		goto out;
	t0 = now_ns();
	c0 = cpu_ns();
	r = drv_loop(&d, t0);
	res->elapsed_s = (double)(now_ns() - t0) / 1e9;
	res->drv_cpu = (double)(cpu_ns() - c0) / 1e9 / res->elapsed_s;
	if (r)
		goto out;
	/* Seconds mode: stop the device, wake it if it sleeps. */
	__atomic_store_n(&h->ctl->stop, 1, __ATOMIC_RELEASE);
	notify(h->kick[Q_TX]);
	notify(h->kick[Q_RX]);
	r = -1;
	if (h->o->probe && (res->lat_after_ns = probe_ping(h)) < 0)
		goto out;
	if (!d.have_result && drv_wait_msg(&d, &d.result, MSG_RESULT))
		goto out;
	drv_results(&d, res);
	r = drv_compare(h, res);
out:
	drv_fini(&d);
	return r;
}

/* ---------------------------------------------------------------------- */
/* Device side (child): the peer's rings, through a vp_mem region table.  */

struct dev {
	struct hx *h;
	struct vp_mem *mem;
	struct vp_vq_dev *vq[2];
	uint64_t seq[2], bytes[2];
	uint64_t calls, sleeps;
	struct vp_chain chains[HX_BURST];
	struct vp_used used[HX_BURST];
	struct iovec iov[HX_IOV_MAX];
};

static int dev_broken(struct dev *v, unsigned q, const char *op, int err)
{
	return fail("%s %s: %d (%s)", qname[q], op, err,
		    vp_vq_dev_broken_reason(v->vq[q]));
}

/* Device faults, all on the RX path. */
static void dev_inject(const struct hx *h, uint64_t seq, uint32_t *len)
{
	if (inject_now(h, HX_INJ_BAD_LEN, seq))
		(*len)--;
	if (inject_now(h, HX_INJ_DEV_EXIT, seq))
		_exit(3);
	if (inject_now(h, HX_INJ_DEV_ABORT, seq)) {
		struct rlimit no_core = { 0, 0 };

		setrlimit(RLIMIT_CORE, &no_core);
		signal(SIGABRT, SIG_DFL);
		raise(SIGABRT);
	}
}

/* One popped chain: check (TX) or fill (RX) packet seq; its used entry. */
static int dev_chain(struct dev *v, unsigned q, const struct vp_chain *c,
		     struct vp_used *u)
{
	const struct hx_opts *o = v->h->o;
	uint64_t seq = v->seq[q];
	uint32_t len = pkt_size(o, pkt_key(o, q, seq));

	if (seq >= v->h->count[q])
		return fail("%s: more chains than the driver sent", qname[q]);
	if (q == Q_TX && (c->n_in || !c->n_out || c->len_out != len))
		return fail("tx seq %" PRIu64 ": chain %u out (%u B) %u in, "
			    "want %u B out only", seq, c->n_out, c->len_out,
			    c->n_in, len);
	if (q == Q_RX && (c->n_out || !c->n_in || c->len_in < len))
		return fail("rx seq %" PRIu64 ": chain %u out %u in (%u B), "
			    "want >= %u B in only", seq, c->n_out, c->n_in,
			    c->len_in, len);
	if (q == Q_TX && pkt_check(v->h, q, seq, c->iov, c->n_out, len))
		return -1;
	if (q == Q_RX)
		pkt_put(v->h, q, seq, c->iov, c->n_in, len);
	if (q == Q_RX)
		dev_inject(v->h, seq, &len);
	*u = (struct vp_used){ .id = c->head, .len = q == Q_TX ? 0 : len };
	v->seq[q]++;
	v->bytes[q] += len;
	return 0;
}

/* Pop a burst on queue q, handle it, push it back, call if asked to. */
static int dev_step(struct dev *v, unsigned q)
{
	uint64_t left = v->h->count[q] - v->seq[q];
	unsigned max = (unsigned)min_sz(HX_BURST, left);
	int n, r;

	if (q == Q_RX && !max)
		return 0;	/* more would be a driver bug, caught on TX */
	n = vp_vq_dev_pop_burst(v->vq[q], v->chains, max ? max : 1, v->iov,
				HX_IOV_MAX);
	if (n < 0)
		return dev_broken(v, q, "pop_burst", n);
	for (int i = 0; i < n; i++)
		if (dev_chain(v, q, &v->chains[i], &v->used[i]))
			return -1;
	if (!n)
		return 0;
	r = vp_vq_dev_push_burst(v->vq[q], v->used, (unsigned)n);
	if (r < 0)
		return dev_broken(v, q, "push_burst", r);
	if (v->h->o->inject == HX_INJ_NO_CALL && v->seq[Q_RX] > v->h->inject_at)
		return n;
	if (vp_vq_dev_need_signal(v->vq[q])) {
		notify(v->h->call[q]);
		v->calls++;
	}
	return n;
}

static bool dev_q_done(const struct dev *v, unsigned q)
{
	return v->seq[q] >= v->h->count[q];
}

static bool dev_stopped(const struct dev *v)
{
	return __atomic_load_n(&v->h->ctl->stop, __ATOMIC_ACQUIRE) != 0;
}

/* Nothing to do: ask for kicks, then sleep unless work raced in. */
static int dev_wait(struct dev *v)
{
	struct hx *h = v->h;
	struct pollfd p[3] = {
		{ .fd = h->kick[Q_TX], .events = POLLIN },
		{ .fd = h->kick[Q_RX], .events = POLLIN },
		{ .fd = h->go[0], .events = POLLIN },
	};
	bool pending = false;
	int r = 0;

	for (unsigned q = 0; q < 2; q++)
		if (!dev_q_done(v, q) && vp_vq_dev_enable_notify(v->vq[q]))
			pending = true;
	if (!pending && !dev_stopped(v)) {
		v->sleeps++;
		r = poll(p, 3, (int)h->o->stall_ms);
		if (r == 0)
			r = fail("stalled: no kick for %u ms (tx %" PRIu64
				 " done, rx %" PRIu64 " done)", h->o->stall_ms,
				 v->seq[Q_TX], v->seq[Q_RX]);
		else if (r > 0 && p[2].revents)
			r = fail("driver went away");
		else
			r = r < 0 && errno != EINTR ? fail("poll: %s", strerror(errno)) : 0;
		drain(h->kick[Q_TX]);
		drain(h->kick[Q_RX]);
	}
	for (unsigned q = 0; q < 2; q++)
		vp_vq_dev_disable_notify(v->vq[q]);
	return r;
}

static int dev_tick(struct dev *v)
{
	struct pollfd p = { .fd = v->h->go[0], .events = POLLIN };

	if (now_ns() > v->h->deadline)
		return fail("timeout after %u s", v->h->o->timeout_s);
	if (poll(&p, 1, 0) > 0)
		return fail("driver went away");
	return 0;
}

static int dev_loop(struct dev *v)
{
	for (uint64_t iter = 1;; iter++) {
		int tx = dev_step(v, Q_TX), rx = tx < 0 ? -1 : dev_step(v, Q_RX);

		if (tx < 0 || rx < 0)
			return -1;
		if ((dev_q_done(v, Q_TX) && dev_q_done(v, Q_RX)) || dev_stopped(v))
			return 0;
		if (!(iter & 1023) && dev_tick(v))
			return -1;
		if (!tx && !rx && !v->h->o->busy_poll && dev_wait(v))
			return -1;
	}
}

static int dev_q_init(struct dev *v, unsigned q)
{
	const struct hx_opts *o = v->h->o;
	const struct hx_qlay *ql = &v->h->lay.q[q];
	struct vp_vq_dev_config cfg = {
		.num = (uint16_t)o->qsize, .desc = ql->desc, .avail = ql->avail,
		.used = ql->used, .ring_space = VP_ADDR_GPA,
		.event_idx = o->event_idx, .indirect = o->indirect,
		.name = q ? "dev.rx" : "dev.tx",
	};
	int r = vp_vq_dev_new(&v->vq[q], v->mem, &cfg);

	if (r < 0)
		return fail("%s: vp_vq_dev_new: %d", qname[q], r);
	vp_vq_dev_disable_notify(v->vq[q]);
	return 0;
}

/* Wait for the driver's go, then map the RAM elsewhere than it did. */
static int dev_attach(struct dev *v)
{
	struct hx *h = v->h;
	struct pollfd p = { .fd = h->go[0], .events = POLLIN };
	struct vp_mem_region_desc rd = {
		.gpa = 0, .size = h->lay.ram_size, .fd = h->memfd,
		.prot = VP_MEM_RW,
	};
	/* Takes the address the driver's mapping gets (same layout after fork). */
	void *decoy = mmap(NULL, h->lay.ram_size + (2u << 20), PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char c;
	int r;

	if (poll(&p, 1, (int)h->o->stall_ms) <= 0 || read(h->go[0], &c, 1) != 1)
		return fail("no go from the driver");
	v->mem = vp_mem_new();
	if (!v->mem)
		return fail("out of memory");
	r = vp_mem_add_region(v->mem, &rd);
	if (decoy != MAP_FAILED)
		munmap(decoy, h->lay.ram_size + (2u << 20));
	close_fd(&h->memfd);	/* the mapping must not need it */
	if (r < 0)
		return fail("vp_mem_add_region: %d", r);
	h->ctl = vp_mem_gpa_ptr(v->mem, 0, sizeof(*h->ctl), VP_MEM_RW);
	if (!h->ctl)
		return fail("control block not mapped");
	return dev_q_init(v, Q_TX) || dev_q_init(v, Q_RX) ? -1 : 0;
}

static int dev_send(struct dev *v, struct hx_msg *m)
{
	if (write(v->h->back[1], m, sizeof(*m)) != sizeof(*m))
		return fail("cannot reach the driver: %s", strerror(errno));
	return 0;
}

static int dev_run(struct dev *v)
{
	struct vp_mem_region_info info;
	struct hx_msg m = { .type = MSG_HELLO };
	uint64_t t0, c0;

	if (pin(v->h->o->cpu_dev) || dev_attach(v))
		return -1;
	vp_mem_get(v->mem, 0, &info);
	m.base = (uintptr_t)info.host;
	if (dev_send(v, &m) || (v->h->o->probe && probe_pong(v->h)))
		return -1;
	t0 = now_ns();
	c0 = cpu_ns();
	if (dev_loop(v))
		return -1;
	m = (struct hx_msg){ .type = MSG_RESULT, .calls = v->calls,
		.sleeps = v->sleeps, .pkts = { v->seq[0], v->seq[1] },
		.bytes = { v->bytes[0], v->bytes[1] },
		.cpu = (double)(cpu_ns() - c0) / (double)(now_ns() - t0) };
	if (v->h->o->probe && probe_pong(v->h))
		return -1;
	return dev_send(v, &m);
}

/* The child: never returns. */
__attribute__((noreturn))
static void dev_main(struct hx *h, pid_t parent)
{
	struct dev *v = calloc(1, sizeof(*v));
	int r = -1;

	who = "device";
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);	/* the driver died before prctl took effect */
	close_fd(&h->go[1]);
	close_fd(&h->back[0]);
	if (v) {
		v->h = h;
		r = dev_run(v);
		for (unsigned q = 0; q < 2; q++)
			vp_vq_dev_free(v->vq[q]);
		vp_mem_free(v->mem);
		free(v);
	}
	_exit(r ? 1 : 0);
}

/* ---------------------------------------------------------------------- */

/* Reap the device; kill it first if the run already failed. */
static int reap(struct hx *h, pid_t pid, bool failed)
{
	struct pollfd p = { .fd = h->back[0], .events = POLLIN };
	int status;

	/* Success: it exits right after its result; EOF says it did. */
	if (failed || poll(&p, 1, (int)h->o->stall_ms) <= 0)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return fail("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status) && !(failed && WTERMSIG(status) == SIGKILL))
		return fail("device killed by signal %d (%s)", WTERMSIG(status),
			    strsignal(WTERMSIG(status)));
	if (WIFEXITED(status) && WEXITSTATUS(status))
		return fail("device exited with status %d",
			    WEXITSTATUS(status));
	return failed ? -1 : 0;
}

void hx_opts_default(struct hx_opts *o)
{
	*o = (struct hx_opts){
		.count = 1000000, .qsize = 256, .max_chain = 8,
		.min_size = 1, .max_size = 4096, .tx = true, .rx = true,
		.verify = HX_VERIFY_FULL, .cpu_drv = -1, .cpu_dev = -1,
		.seed = 0x5eed, .stall_ms = 10000, .timeout_s = 600,
	};
}

int hx_parse_inject(const char *s)
{
	static const char *const names[] = {
		[HX_INJ_NONE] = "none", [HX_INJ_CORRUPT_TX] = "corrupt-tx",
		[HX_INJ_CORRUPT_RX] = "corrupt-rx", [HX_INJ_BAD_LEN] = "bad-len",
		[HX_INJ_DEV_EXIT] = "dev-exit", [HX_INJ_DEV_ABORT] = "dev-abort",
		[HX_INJ_NO_CALL] = "no-call", [HX_INJ_DRV_EXIT] = "drv-exit",
	};

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i]))
			return (int)i;
	return -1;
}

int hx_parse_cores(const char *s, int *a, int *b)
{
	char *end;
	long x = strtol(s, &end, 10), y;

	if (end == s || *end != ',' || x < 0 || x >= CPU_SETSIZE)
		return -1;
	s = end + 1;
	y = strtol(s, &end, 10);
	if (end == s || *end || y < 0 || y >= CPU_SETSIZE)
		return -1;
	*a = (int)x;
	*b = (int)y;
	return 0;
}

static int hx_init(struct hx *h, const struct hx_opts *o)
{
	uint64_t n = o->seconds > 0 ? UINT64_MAX : o->count;

	*h = (struct hx){ .o = o, .memfd = -1, .kick = { -1, -1 },
		.call = { -1, -1 }, .go = { -1, -1 }, .back = { -1, -1 } };
	if (check_opts(o))
		return -1;
	layout(o, &h->lay);
	h->count[Q_TX] = o->tx ? n : 0;
	h->count[Q_RX] = o->rx ? n : 0;
	h->deadline = now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
	h->inject_at = o->seconds > 0 ? 100000 : o->count / 2;
	h->tmpl = calloc(1, o->max_size);
	h->sink = calloc(1, o->max_size);
	if (!h->tmpl || !h->sink)
		return fail("out of memory");
	fill_span(o->seed, 0, h->tmpl, o->max_size);
	return make_fds(h);
}

int hx_run(const struct hx_opts *o, struct hx_result *res)
{
	struct hx h;
	pid_t pid, parent = getpid();
	int r = -1;

	*res = (struct hx_result){ .lat_before_ns = -1, .lat_after_ns = -1,
		.drv_cpu = -1, .dev_cpu = -1 };
	signal(SIGPIPE, SIG_IGN);	/* a dead peer is an error, not a kill */
	if (hx_init(&h, o))
		goto out;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		dev_main(&h, parent);
	close_fd(&h.go[0]);
	close_fd(&h.back[1]);
	r = drv_main(&h, res);
	/* Reap before closing go: a device we kill need not report that. */
	r = reap(&h, pid, r != 0);
out:
	close_all(&h);
	free(h.tmpl);
	free(h.sink);
	return r;
}
