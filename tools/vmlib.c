/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vmlib: shared code of the userspace-VM tools. See vmlib.h.
 */
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_ring.h>

#include "vhostpci/log.h"
#include "vmlib.h"

/* ------------------------------------------------------------------------ */
/* time */

int64_t vm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t vm_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double vm_mpps(uint64_t pkts, int64_t ns)
{
	return ns > 0 ? (double)pkts * 1e3 / (double)ns : 0.0;
}

double vm_gbps(uint64_t bytes, int64_t ns)
{
	return ns > 0 ? (double)bytes * 8.0 / (double)ns : 0.0;
}

/* ------------------------------------------------------------------------ */
/* parsing */

static int parse_scaled(const char *s, uint64_t *out, bool binary_k)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -ERANGE;
	if (*end) {
		bool bin = binary_k;
		char c = *end++;

		if (*end == 'i') {
			bin = true;
			end++;
		}
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
		switch (c) {
		case 'k': case 'K': mul = bin ? 1024ull : 1000ull; break;
		case 'm': case 'M': mul = bin ? 1048576ull : 1000000ull; break;
		case 'g': case 'G': mul = bin ? 1073741824ull : 1000000000ull; break;
		default: return -EINVAL;
		}
	}
	if (mul > 1 && v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

int vm_parse_u64(const char *s, uint64_t *out)
{
	return parse_scaled(s, out, false);
}

int vm_parse_bytes(const char *s, uint64_t *out)
{
	return parse_scaled(s, out, true);
}

int vm_parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s || isspace((unsigned char)*s) || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 || v > 1e7)
		return -EINVAL;
	*out = v;
	return 0;
}

int vm_parse_range(const char *s, uint64_t *lo, uint64_t *hi)
{
	const char *dash = s ? strchr(s, '-') : NULL;
	char first[32];

	if (!s)
		return -EINVAL;
	if (!dash) {
		if (vm_parse_u64(s, lo) < 0)
			return -EINVAL;
		*hi = *lo;
		return 0;
	}
	if ((size_t)(dash - s) >= sizeof(first))
		return -EINVAL;
	memcpy(first, s, (size_t)(dash - s));
	first[dash - s] = 0;
	if (vm_parse_u64(first, lo) < 0 || vm_parse_u64(dash + 1, hi) < 0 || *lo > *hi)
		return -EINVAL;
	return 0;
}

int vm_parse_mode(const char *s, enum vp_net_mode *out)
{
	if (!strcmp(s, "poll"))
		*out = VP_NET_POLL;
	else if (!strcmp(s, "irq"))
		*out = VP_NET_IRQ;
	else if (!strcmp(s, "adaptive"))
		*out = VP_NET_ADAPTIVE;
	else
		return -EINVAL;
	return 0;
}

const char *vm_mode_name(enum vp_net_mode m)
{
	switch (m) {
	case VP_NET_POLL: return "poll";
	case VP_NET_IRQ: return "irq";
	case VP_NET_ADAPTIVE: return "adaptive";
	}
	return "?";
}

int vm_pin_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

int vm_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

static const struct {
	const char *name;
	unsigned bit;
} feature_names[] = {
	{ "csum", VIRTIO_NET_F_CSUM },
	{ "guest_csum", VIRTIO_NET_F_GUEST_CSUM },
	{ "mrg_rxbuf", VIRTIO_NET_F_MRG_RXBUF },
	{ "indirect_desc", VIRTIO_RING_F_INDIRECT_DESC },
	{ "event_idx", VIRTIO_RING_F_EVENT_IDX },
	{ "ring_packed", VIRTIO_F_RING_PACKED },
	{ "version_1", VIRTIO_F_VERSION_1 },
	{ "host_tso4", VIRTIO_NET_F_HOST_TSO4 },
	{ "host_tso6", VIRTIO_NET_F_HOST_TSO6 },
	{ "host_ecn", VIRTIO_NET_F_HOST_ECN },
	{ "guest_tso4", VIRTIO_NET_F_GUEST_TSO4 },
	{ "guest_tso6", VIRTIO_NET_F_GUEST_TSO6 },
	{ "guest_ecn", VIRTIO_NET_F_GUEST_ECN },
};

int vm_parse_features(const char *s, uint64_t *out)
{
	uint64_t f = 0;
	char buf[256], *save = NULL;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		char *end;

		errno = 0;
		f = strtoull(s + 2, &end, 16);
		if (errno || end == s + 2 || *end)
			return -EINVAL;
	} else {
		if (strlen(s) >= sizeof(buf))
			return -EINVAL;
		strcpy(buf, s);
		for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			unsigned k;

			for (k = 0; k < sizeof(feature_names) / sizeof(feature_names[0]); k++)
				if (strcmp(t, feature_names[k].name) == 0)
					break;
			if (k == sizeof(feature_names) / sizeof(feature_names[0]))
				return -EINVAL;
			f |= 1ull << feature_names[k].bit;
		}
	}
	f |= 1ull << VIRTIO_F_VERSION_1;
	if (f & ~(uint64_t)(VP_NET_FEATURES | VP_NET_TSO_FEATURES | (1ull << VIRTIO_F_RING_PACKED)))
		return -EINVAL;
	*out = f;
	return 0;
}

void vm_random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = getrandom(p, n, 0);

		if (r <= 0) {
			/* Not for secrets: a fallback that still differs per process. */
			uint64_t x = (uint64_t)vm_now_ns() ^ ((uint64_t)getpid() << 32);

			for (size_t i = 0; i < n; i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				p[i] = (uint8_t)x;
			}
			return;
		}
		p += r;
		n -= (size_t)r;
	}
}

void vm_random_uuid(uint8_t uuid[16])
{
	vm_random_bytes(uuid, 16);
	uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
	uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

void vm_mac_from_index(uint8_t mac[6], unsigned idx)
{
	/* 52:54:00 is what QEMU uses; fine for private test links. */
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(getpid() >> 8);
	mac[4] = (uint8_t)getpid();
	mac[5] = (uint8_t)idx;
}

/* ------------------------------------------------------------------------ */
/* RAM */

int vm_ram_new(struct vm_ram *r, uint64_t size, const char *name, bool sealed)
{
	r->fd = -1;
	r->p = NULL;
	r->size = 0;
	if (size < (1u << 20) || (size & (size - 1)) || size > (1ull << 40))
		return -EINVAL;
	r->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (r->fd < 0)
		return -errno;
	if (ftruncate(r->fd, (off_t)size) < 0) {
		int e = -errno;

		close(r->fd);
		r->fd = -1;
		return e;
	}
	/* The backend maps this: it must never shrink under it (unsealed only
	 * for vp-vm's --test-truncate-ram-after hook). */
	if (sealed && fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = -errno;

		close(r->fd);
		r->fd = -1;
		return e;
	}
	r->p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (r->p == MAP_FAILED) {
		int e = -errno;

		r->p = NULL;
		close(r->fd);
		r->fd = -1;
		return e;
	}
	r->size = size;
	return 0;
}

void vm_ram_free(struct vm_ram *r)
{
	if (r->p)
		munmap(r->p, r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->p = NULL;
	r->fd = -1;
}

/* ------------------------------------------------------------------------ */
/* test packets
 *
 * Frame: dst[6] src[6] ethertype[2] | magic u32, type u16, flags u16,
 * stream u32, len u32, seq u64, stamp u64, csum u64, pad u16 | payload.
 * All little-endian. csum = 64-bit sum of the frame read as LE words (tail
 * zero-padded) with the csum field taken as 0, made odd, plus the length.
 * With FLAG_HDR_ONLY (header-only mode, payload untouched by both sides) the
 * sum covers the first VM_PKT_MIN bytes; the length still counts.
 */
#define OFF_MAGIC (VM_HDR_OFF + 0)
#define OFF_TYPE (VM_HDR_OFF + 4)
#define OFF_STREAM (VM_HDR_OFF + 8)
#define OFF_LEN (VM_HDR_OFF + 12)
#define OFF_SEQ (VM_HDR_OFF + 16)
#define OFF_STAMP (VM_HDR_OFF + 24)
#define OFF_CSUM (VM_HDR_OFF + 32)
#define FLAG_HDR_ONLY 0x1u  /* the checksum covers the first VM_PKT_MIN bytes only */

static inline void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint64_t frame_sum(const uint8_t *buf, uint32_t len)
{
	uint64_t a = 0, b = 0, tail = 0;
	uint32_t i = 0;

	for (; i + 16 <= len; i += 16) {
		a += get64(buf + i);
		b += get64(buf + i + 8);
	}
	for (; i + 8 <= len; i += 8)
		a += get64(buf + i);
	if (i < len) {
		memcpy(&tail, buf + i, len - i);
		b += tail;
	}
	return a + b;
}

/* The payload pattern: word k (8 bytes from VM_PKT_MIN on) is x + k * STEP;
 * a last partial word is cut from the next one. Its sum has a closed form,
 * so the generator writes each payload byte once and never reads it back. */
#define PAT_STEP 0xd1b54a32d192ed03ull

static uint64_t pattern_fill(uint8_t *p, uint32_t n, uint64_t x)
{
	uint64_t cnt = n / 8, sum, w;
	uint32_t rest = n % 8;

	for (uint64_t k = 0; k < cnt; k++)
		put64(p + 8 * k, x + k * PAT_STEP);
	/* sum of x + k*STEP for k < cnt, mod 2^64 */
	sum = cnt * x + PAT_STEP * (cnt & 1 ? cnt * ((cnt - 1) / 2) : (cnt / 2) * (cnt - 1));
	if (rest) {
		uint64_t t = 0;

		w = x + cnt * PAT_STEP;
		memcpy(p + 8 * cnt, &w, rest);
		memcpy(&t, p + 8 * cnt, rest);
		sum += t;
	}
	return sum;
}

void vm_pkt_build(uint8_t *buf, uint32_t len, const uint8_t dst[6], const uint8_t src[6],
		  const struct vm_pkt_info *in, bool full)
{
	uint64_t sum;

	memcpy(buf, dst, 6);
	memcpy(buf + 6, src, 6);
	buf[12] = (uint8_t)(VM_ETHERTYPE >> 8);
	buf[13] = (uint8_t)VM_ETHERTYPE;
	put32(buf + OFF_MAGIC, VM_MAGIC);
	put16(buf + OFF_TYPE, in->type);
	put16(buf + OFF_TYPE + 2, full ? 0 : FLAG_HDR_ONLY);
	put32(buf + OFF_STREAM, in->stream);
	put32(buf + OFF_LEN, len);
	put64(buf + OFF_SEQ, in->seq);
	put64(buf + OFF_STAMP, (uint64_t)in->stamp_ns);
	put64(buf + OFF_CSUM, 0);
	put16(buf + OFF_CSUM + 8, 0);
	sum = frame_sum(buf, VM_PKT_MIN);
	if (full)
		sum += pattern_fill(buf + VM_PKT_MIN, len - VM_PKT_MIN,
				    (in->seq + 1) * 0x9e3779b97f4a7c15ull ^ in->stream);
	put64(buf + OFF_CSUM, (sum | 1) + len);
}

/* What a value at byte offset off adds to frame_sum(): its bytes fall into
 * one little-endian word, or straddle two. */
static inline uint64_t sum_part(uint64_t v, unsigned off)
{
	unsigned r = (off & 7) * 8;

	return r ? (v << r) + (v >> (64 - r)) : v;
}

void vm_pkt_tmpl_init(struct vm_pkt_tmpl *t, const uint8_t dst[6], const uint8_t src[6],
		      uint16_t type, uint32_t stream)
{
	struct vm_pkt_info in = { .type = type, .stream = stream };

	/* Built with len, seq and stamp 0, then the checksum taken out. */
	vm_pkt_build(t->b, VM_PKT_MIN, dst, src, &in, false);
	put32(t->b + OFF_LEN, 0);
	put64(t->b + OFF_CSUM, 0);
	t->sum = frame_sum(t->b, VM_PKT_MIN);
}

void vm_pkt_build_tmpl(uint8_t *buf, uint32_t len, const struct vm_pkt_tmpl *t, uint64_t seq,
		       int64_t stamp_ns)
{
	uint64_t sum = t->sum + sum_part(len, OFF_LEN) + sum_part(seq, OFF_SEQ) +
		       sum_part((uint64_t)stamp_ns, OFF_STAMP);

	memcpy(buf, t->b, VM_PKT_MIN);
	put32(buf + OFF_LEN, len);
	put64(buf + OFF_SEQ, seq);
	put64(buf + OFF_STAMP, (uint64_t)stamp_ns);
	put64(buf + OFF_CSUM, (sum | 1) + len);
}

/* frame_sum() of the first VM_PKT_MIN (56) bytes: seven words, no loop. */
static inline uint64_t sum_min(const uint8_t *b)
{
	return (get64(b) + get64(b + 16) + get64(b + 32) + get64(b + 48)) +
	       (get64(b + 8) + get64(b + 24) + get64(b + 40));
}

/*
 * The check reads the frame only: the checksum field's share of the sum is
 * taken out instead of zeroing the field, so a frame checked in place (the
 * peer's buffer) is never stored to. The same arithmetic as the builder's.
 */
static inline enum vm_pkt_verdict pkt_check(const uint8_t *buf, uint32_t len,
					    struct vm_pkt_info *out)
{
	uint64_t want, got;

	if (len < VM_PKT_MIN || get16(buf + 12) != htobe16(VM_ETHERTYPE) ||
	    get32(buf + OFF_MAGIC) != VM_MAGIC)
		return VM_PKT_FOREIGN;
	if (get32(buf + OFF_LEN) != len)
		return VM_PKT_BADLEN;
	want = get64(buf + OFF_CSUM);
	got = (get16(buf + OFF_TYPE + 2) & FLAG_HDR_ONLY) ? sum_min(buf) : frame_sum(buf, len);
	got = ((got - sum_part(want, OFF_CSUM)) | 1) + len;
	if (got != want)
		return VM_PKT_BADSUM;
	out->type = get16(buf + OFF_TYPE);
	out->stream = get32(buf + OFF_STREAM);
	out->len = len;
	out->seq = get64(buf + OFF_SEQ);
	out->stamp_ns = (int64_t)get64(buf + OFF_STAMP);
	return VM_PKT_OK;
}

enum vm_pkt_verdict vm_pkt_check(const uint8_t *buf, uint32_t len, struct vm_pkt_info *out)
{
	return pkt_check(buf, len, out);
}

/* ------------------------------------------------------------------------ */
/* histogram: bucket = (exponent, top 6 bits of the mantissa) */

static unsigned hist_bucket(uint64_t v)
{
	if (v < VM_HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);  /* >= 6 */
	unsigned sub = (unsigned)(v >> (e - 6)) & (VM_HIST_SUB - 1);

	return (e - 5) * VM_HIST_SUB + sub;
}

static uint64_t hist_value(unsigned b)
{
	if (b < VM_HIST_SUB)
		return b;
	unsigned e = b / VM_HIST_SUB + 5, sub = b % VM_HIST_SUB;
	uint64_t lo = ((uint64_t)(VM_HIST_SUB + sub)) << (e - 6);

	return lo + ((1ull << (e - 6)) >> 1);  /* middle of the bucket */
}

static inline void hist_add(struct vm_hist *h, uint64_t v)
{
	unsigned b = hist_bucket(v);

	if (b >= sizeof(h->b) / sizeof(h->b[0]))
		b = sizeof(h->b) / sizeof(h->b[0]) - 1;
	h->b[b]++;
	if (!h->count || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->count++;
	h->sum += v;
}

void vm_hist_add(struct vm_hist *h, uint64_t v)
{
	hist_add(h, v);
}

uint64_t vm_hist_pct(const struct vm_hist *h, double pct)
{
	uint64_t want, seen = 0;

	if (!h->count)
		return 0;
	want = (uint64_t)ceil((double)h->count * pct / 100.0);
	if (want < 1)
		want = 1;
	for (unsigned b = 0; b < sizeof(h->b) / sizeof(h->b[0]); b++) {
		seen += h->b[b];
		if (seen >= want) {
			uint64_t v = hist_value(b);

			return v < h->min ? h->min : v > h->max ? h->max : v;
		}
	}
	return h->max;
}

/* ------------------------------------------------------------------------ */
/* verification */

static struct vm_stream *find_stream(struct vm_verify *v, uint32_t id)
{
	for (unsigned i = 0; i < v->nstreams; i++)
		if (v->s[i].id == id)
			return &v->s[i];
	if (v->nstreams == VM_MAX_STREAMS)
		return NULL;
	struct vm_stream *s = &v->s[v->nstreams++];

	memset(s, 0, sizeof(*s));
	s->id = id;
	return s;
}

static inline enum vm_pkt_verdict verify_pkt(struct vm_verify *v, const uint8_t *buf,
					      uint32_t len, struct vm_pkt_info *info)
{
	enum vm_pkt_verdict r = pkt_check(buf, len, info);
	struct vm_stream *s;

	switch (r) {
	case VM_PKT_FOREIGN: v->foreign++; return r;
	case VM_PKT_BADLEN: v->badlen++; return r;
	case VM_PKT_BADSUM: v->corrupt++; return r;
	case VM_PKT_OK: break;
	}
	v->ok++;
	if (info->type == VM_PKT_PING)
		return r;
	s = find_stream(v, info->stream);
	if (!s) {
		v->too_many_streams++;
		return r;
	}
	if (info->type == VM_PKT_END) {
		if (!s->ended) {
			s->ended = true;
			s->end_count = info->seq;
			v->ended++;
			/* Whatever never arrived before END is lost for good. */
			if (info->seq > s->next_seq)
				s->lost += info->seq - s->next_seq;
			s->next_seq = info->seq > s->next_seq ? info->seq : s->next_seq;
		}
		return r;
	}
	v->data_bytes += len;
	if (info->seq == s->next_seq) {
		s->next_seq++;
		s->received++;
	} else if (info->seq > s->next_seq) {
		s->lost += info->seq - s->next_seq;
		s->next_seq = info->seq + 1;
		s->received++;
	} else if (s->lost) {
		/* Late: it was counted lost when a later one arrived. */
		s->lost--;
		s->reordered++;
		s->received++;
	} else {
		s->dup++;
	}
	return r;
}

enum vm_pkt_verdict vm_verify_pkt(struct vm_verify *v, const uint8_t *buf, uint32_t len,
				  struct vm_pkt_info *info)
{
	return verify_pkt(v, buf, len, info);
}

/* The per-frame work in one loop: no call, and no info copied out, per frame. */
void vm_verify_burst(struct vm_verify *v, const struct vp_pkt *pk, unsigned n, int64_t now,
		     struct vm_hist *lat, uint32_t from, struct vm_burst_seen *seen)
{
	struct vm_pkt_info info;

	memset(seen, 0, sizeof(*seen));
	for (unsigned i = 0; i < n; i++) {
		if (verify_pkt(v, pk[i].data, pk[i].len, &info) != VM_PKT_OK)
			continue;
		if (info.type == VM_PKT_DATA) {
			seen->data_from |= info.stream == from;
			if (lat && now >= info.stamp_ns)
				hist_add(lat, (uint64_t)(now - info.stamp_ns));
		} else if (info.type == VM_PKT_END) {
			seen->ends++;
			seen->end_bytes += pk[i].len;
			seen->end_from |= info.stream == from;
		}
	}
}

uint64_t vm_verify_lost(const struct vm_verify *v)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < v->nstreams; i++)
		n += v->s[i].lost;
	return n;
}

uint64_t vm_verify_received(const struct vm_verify *v)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < v->nstreams; i++)
		n += v->s[i].received;
	return n;
}

uint64_t vm_verify_reordered(const struct vm_verify *v)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < v->nstreams; i++)
		n += v->s[i].reordered;
	return n;
}

uint64_t vm_verify_dup(const struct vm_verify *v)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < v->nstreams; i++)
		n += v->s[i].dup;
	return n;
}

bool vm_verify_clean(const struct vm_verify *v)
{
	return !v->corrupt && !v->badlen && !vm_verify_lost(v) && !vm_verify_reordered(v) &&
	       !vm_verify_dup(v) && !v->too_many_streams;
}

/* ------------------------------------------------------------------------ */
/* signals */

volatile int vm_stop_signal;

static void on_signal(int sig)
{
	vm_stop_signal = sig;
}

void vm_signals_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: poll() and friends return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------------------ */
/* JSON: reports are built and read with jansson */

/* Place v (a new reference, taken) under key in the innermost open object. */
static void jset(struct vm_json *j, const char *key, json_t *v)
{
	if (j->depth < 1 || !v || json_object_set_new(j->stack[j->depth - 1], key, v))
		j->err = true;
}

void vm_json_begin(struct vm_json *j)
{
	memset(j, 0, sizeof(*j));
	j->stack[0] = json_object();
	j->depth = 1;
	j->err = !j->stack[0];
}

void vm_json_obj(struct vm_json *j, const char *key)
{
	json_t *o = json_object();

	if (!o || j->depth >= (int)(sizeof(j->stack) / sizeof(j->stack[0]))) {
		json_decref(o);
		j->err = true;
		return;
	}
	jset(j, key, json_incref(o));
	j->stack[j->depth++] = o;
	json_decref(o);   /* its parent holds it */
}

void vm_json_end_obj(struct vm_json *j)
{
	if (j->depth > 1)
		j->depth--;
	else
		j->err = true;
}

void vm_json_str(struct vm_json *j, const char *key, const char *v)
{
	json_t *s = json_string(v);
	char *c;

	/* Names and paths come from the command line: not necessarily UTF-8,
	 * which jansson refuses. Then the non-ASCII bytes become '?'. */
	if (!s && (c = strdup(v))) {
		for (char *p = c; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		s = json_string(c);
		free(c);
	}
	jset(j, key, s);
}

void vm_json_u64(struct vm_json *j, const char *key, uint64_t v)
{
	jset(j, key, v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v));
}

void vm_json_dbl(struct vm_json *j, const char *key, double v)
{
	/* Four decimals, as the reports always had; no NaN or infinity in JSON. */
	jset(j, key, json_real(isfinite(v) ? round(v * 1e4) / 1e4 : 0.0));
}

void vm_json_bool(struct vm_json *j, const char *key, bool v)
{
	jset(j, key, json_boolean(v));
}

const char *vm_json_finish(struct vm_json *j)
{
	size_t n = 0;

	if (!j->err && j->stack[0])
		n = json_dumpb(j->stack[0], j->buf, sizeof(j->buf) - 1,
			       JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(j->stack[0]);
	memset(j->stack, 0, sizeof(j->stack));
	j->depth = 0;
	if (j->err || !n || n >= sizeof(j->buf))
		snprintf(j->buf, sizeof(j->buf), "{\"error\":\"report could not be written\"}");
	else
		j->buf[n] = 0;
	return j->buf;
}

/* The first member named key, depth first in document order (objects keep
 * their insertion order). */
static json_t *json_find(json_t *v, const char *key, unsigned depth)
{
	const char *k;
	json_t *m, *r;
	size_t i;

	if (depth > 32)
		return NULL;
	if (json_is_object(v)) {
		json_object_foreach(v, k, m) {
			if (!strcmp(k, key))
				return m;
			if ((r = json_find(m, key, depth + 1)))
				return r;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, m)
			if ((r = json_find(m, key, depth + 1)))
				return r;
	}
	return NULL;
}

static json_t *json_lookup(const char *json, const char *key, json_t **doc)
{
	*doc = json_loads(json, 0, NULL);
	return *doc ? json_find(*doc, key, 0) : NULL;
}

int vm_json_get_num(const char *json, const char *key, double *out)
{
	json_t *doc, *v = json_lookup(json, key, &doc);
	int r = -ENOENT;

	if (json_is_number(v)) {
		*out = json_number_value(v);
		r = 0;
	}
	json_decref(doc);
	return r;
}

int vm_json_get_bool(const char *json, const char *key, bool *out)
{
	json_t *doc, *v = json_lookup(json, key, &doc);
	int r = -ENOENT;

	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		r = 0;
	}
	json_decref(doc);
	return r;
}

/* ------------------------------------------------------------------------ */
/* command-line plumbing */

static const char *cli_prog = "vp-vm";

void vm_cli_init(const char *prog)
{
	cli_prog = prog;
}

int vm_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", cli_prog);
	return VM_EXIT_USAGE;
}

int vm_parse_log_level(const char *s, enum vp_log_level *out)
{
	static const char *const names[] = { "err", "warn", "info", "debug" };

	for (int i = 0; i <= VP_LOG_DEBUG; i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum vp_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void vm_log_handler(enum vp_log_level level, const char *msg, void *opaque)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	const char *const *name = opaque;
	const char *lvl = (unsigned)level <= VP_LOG_DEBUG ? names[level] : "?";

	if (name && *name)
		fprintf(stderr, "%s[%s]: %s: %s\n", cli_prog, *name, lvl, msg);
	else
		fprintf(stderr, "%s: %s: %s\n", cli_prog, lvl, msg);
}
