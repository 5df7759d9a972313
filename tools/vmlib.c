/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vmlib: shared code of the userspace-VM tools. See vmlib.h.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
	{ "version_1", VIRTIO_F_VERSION_1 },
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
	if (f & ~(uint64_t)VP_NET_FEATURES)
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

int vm_ram_new(struct vm_ram *r, uint64_t size, const char *name)
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
	/* The backend maps this: it must never shrink under it. */
	if (fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
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

enum vm_pkt_verdict vm_pkt_check(uint8_t *buf, uint32_t len, struct vm_pkt_info *out)
{
	uint64_t want, got;

	if (len < VM_PKT_MIN || buf[12] != (uint8_t)(VM_ETHERTYPE >> 8) ||
	    buf[13] != (uint8_t)VM_ETHERTYPE || get32(buf + OFF_MAGIC) != VM_MAGIC)
		return VM_PKT_FOREIGN;
	if (get32(buf + OFF_LEN) != len)
		return VM_PKT_BADLEN;
	want = get64(buf + OFF_CSUM);
	put64(buf + OFF_CSUM, 0);
	got = (frame_sum(buf, (get16(buf + OFF_TYPE + 2) & FLAG_HDR_ONLY) ? VM_PKT_MIN : len) | 1) +
	      len;
	put64(buf + OFF_CSUM, want);
	if (got != want)
		return VM_PKT_BADSUM;
	out->type = get16(buf + OFF_TYPE);
	out->stream = get32(buf + OFF_STREAM);
	out->len = len;
	out->seq = get64(buf + OFF_SEQ);
	out->stamp_ns = (int64_t)get64(buf + OFF_STAMP);
	return VM_PKT_OK;
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

void vm_hist_add(struct vm_hist *h, uint64_t v)
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

enum vm_pkt_verdict vm_verify_pkt(struct vm_verify *v, uint8_t *buf, uint32_t len,
				  struct vm_pkt_info *info)
{
	enum vm_pkt_verdict r = vm_pkt_check(buf, len, info);
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
/* ports */

static void add_stats(struct vp_net_stats *a, const struct vp_net_stats *b)
{
	a->tx_packets += b->tx_packets;
	a->tx_bytes += b->tx_bytes;
	a->rx_packets += b->rx_packets;
	a->rx_bytes += b->rx_bytes;
	a->tx_drop_no_buf += b->tx_drop_no_buf;
	a->tx_drop_too_big += b->tx_drop_too_big;
	a->rx_drop_too_big += b->rx_drop_too_big;
	a->rx_drop_bad += b->rx_drop_bad;
	a->signals += b->signals;
	a->wakeups += b->wakeups;
}

/* ADAPTIVE spinning is done by vm_wait() over all objects at once. */
static enum vp_net_mode lib_mode(enum vp_net_mode m)
{
	return m == VP_NET_ADAPTIVE ? VP_NET_IRQ : m;
}

static void port_log(const struct vm_port *p, enum vp_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void port_log(const struct vm_port *p, enum vp_log_level lvl, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vp_log(lvl, "%s: %s", p->name, msg);
}

/* -- backend -- */

static void link_down(struct vm_port *p, struct vm_link *l, const char *why)
{
	if (!l->net)
		return;
	add_stats(&p->acc, vp_net_stats(l->net));
	vp_net_free(l->net);
	l->net = NULL;
	p->link_downs++;
	port_log(p, VP_LOG_INFO, "link down (device %" PRIu64 "): %s", l->dev_id, why);
}

/*
 * The data path found a link broken: let go of it and drop the device with
 * the library's reason. Only letting go would leave the device attached in
 * the sender's eyes (the daemon's relay, or a native frontend), holding a
 * link that nobody drives; dropped, the sender learns why and may offer it
 * again.
 */
static void link_broken(struct vm_port *p, struct vm_link *l, const char *what)
{
	char why[200];

	if (!l->net)
		return;
	snprintf(why, sizeof(why), "%s: %s", what,
		 vp_net_broken(l->net) ? vp_net_broken(l->net) : "broken");
	link_down(p, l, why);
	vp_server_drop(p->srv, l->dev_id, why);
}

static struct vm_link *find_link(struct vm_port *p, uint64_t id)
{
	for (unsigned i = 0; i < VM_MAX_LINKS; i++)
		if (p->links[i].used && p->links[i].dev_id == id)
			return &p->links[i];
	return NULL;
}

/*
 * Refuse a device, not ignore it: the sender (the daemon's relay, or a
 * native frontend) is told why and may offer it again later.
 */
static void refuse(struct vm_port *p, uint64_t id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void refuse(struct vm_port *p, uint64_t id, const char *fmt, ...)
{
	char why[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	port_log(p, VP_LOG_INFO, "refusing device %" PRIu64 ": %s", id, why);
	p->refused++;
	vp_server_drop(p->srv, id, why);
}

static unsigned links_in_use(const struct vm_port *p)
{
	unsigned used = 0;

	for (unsigned i = 0; i < p->max_links; i++)
		used += p->links[i].used;
	return used;
}

static void on_server_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
			    void *opaque)
{
	struct vm_port *p = opaque;
	struct vm_link *l = find_link(p, dev->id);
	char uuid[40];
	int r;

	(void)srv;  /* p->srv: refuse() and link_broken() reach it from there */
	switch (ev) {
	case VP_EV_DEVICE_NEW:
		/* Full: refuse before the handshake, so that the frontend never
		 * sees its device started and sends into rings nobody drives. */
		if (links_in_use(p) >= p->max_links)
			refuse(p, dev->id, "backend full: %u of %u links in use", p->max_links,
			       p->max_links);
		break;
	case VP_EV_DEVICE_READY:
	case VP_EV_DEVICE_CHANGED:
		if (!l) {
			for (unsigned i = 0; i < p->max_links && !l; i++)
				if (!p->links[i].used)
					l = &p->links[i];
			if (!l) {  /* two NEWs raced for the last link */
				refuse(p, dev->id, "backend full: %u of %u links in use",
				       p->max_links, p->max_links);
				return;
			}
			memset(l, 0, sizeof(*l));
			l->used = true;
			l->dev_id = dev->id;
		}
		l->dev = dev;
		if (dev->type != VP_VIRTIO_ID_NET) {
			refuse(p, dev->id, "not a virtio-net device (type %u)", dev->type);
			return;
		}
		if (ev == VP_EV_DEVICE_CHANGED && l->net) {
			/*
			 * Eventfds were replaced while running. vp_net holds copies
			 * of the old ones, so attach again, from where we are:
			 * between bursts vp_net has completed every chain it took,
			 * so each ring's used index is its position. (vp_net_new()
			 * would start from the handshake's last_avail_idx.)
			 */
			struct vp_device cur = *dev;
			struct vp_ring_status st;

			for (unsigned i = 0; i < cur.nrings && i < VP_DEV_MAX_RINGS; i++)
				if (vp_device_ring_status(dev, i, &st) == 0)
					cur.rings[i].last_avail_idx = st.used_idx;
			link_down(p, l, "eventfds replaced: re-attaching");
			r = vp_net_new(&l->net, &cur, lib_mode(p->mode));
		} else {
			if (l->net)
				link_down(p, l, "device ready again");
			r = vp_net_new(&l->net, dev, lib_mode(p->mode));
		}
		if (r < 0) {
			l->net = NULL;
			refuse(p, dev->id, "backend cannot drive the device: %s", strerror(-r));
			return;
		}
		l->generation = dev->generation;
		p->link_ups++;
		vp_uuid_format(dev->uuid, uuid);
		port_log(p, VP_LOG_INFO,
			 "link up: device %" PRIu64 " (%s frontend, uuid %s, pid %d, generation %u, "
			 "features 0x%" PRIx64 ")",
			 dev->id, vp_dialect_name(dev->dialect), uuid, (int)dev->peer_pid,
			 dev->generation, dev->driver_features);
		break;
	case VP_EV_DEVICE_STOPPED:
		if (l)
			link_down(p, l, "frontend stopped its rings");
		break;
	case VP_EV_DEVICE_REMOVED:
		if (l) {
			link_down(p, l, "frontend gone");
			l->used = false;
			l->dev = NULL;
			port_log(p, VP_LOG_INFO, "device %" PRIu64 " removed", dev->id);
		}
		break;
	}
}

int vm_port_backend(struct vm_port *p, const char *name, const char *path,
		    enum vp_net_mode mode, const struct vm_be_opts *o)
{
	struct vp_server_config cfg = { 0 };
	uint64_t features = o && o->features ? o->features : VP_NET_FEATURES;
	int r;

	memset(p, 0, sizeof(*p));
	p->kind = VM_PORT_BACKEND;
	p->vu_sock = -1;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->path = path;
	p->mode = mode;
	cfg.path = path;
	cfg.id = name;
	/* Native frontends (the daemon's relay) are held to these; stock
	 * vhost-user frontends connecting straight here get the transport bit. */
	cfg.features = features | (1ull << VP_VU_F_PROTOCOL_FEATURES);
	cfg.allow_unsealed = o && o->allow_unsealed;
	p->max_links = o && o->max_links && o->max_links < VM_MAX_LINKS ? o->max_links : VM_MAX_LINKS;
	cfg.on_event = on_server_event;
	cfg.opaque = p;
	r = vp_server_new(&p->srv, &cfg);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "cannot listen on %s: %s", path,
			 strerror(-r));
		p->kind = VM_PORT_NONE;
		p->srv = NULL;
		return r;
	}
	port_log(p, VP_LOG_INFO, "listening on %s", path);
	return 0;
}

/* -- frontend -- */

static void fe_down(struct vm_port *p, const char *why)
{
	bool was_up = p->fe_state == VM_FE_UP || p->fe_state == VM_FE_DRAIN;

	if (p->cl) {
		vp_client_free(p->cl);
		p->cl = NULL;
	}
	if (p->vu_sock >= 0) {
		close(p->vu_sock);
		p->vu_sock = -1;
	}
	if (p->fe_started) {
		/* The driver's counters survive the reset. */
		const struct vp_net_stats *st = vp_netfe_stats(p->fe);
		int r = vp_netfe_reset(p->fe);

		/* What the old rings never consumed is gone with them. */
		p->tx_accepted = st->tx_packets + st->tx_drop_no_buf + st->tx_drop_too_big;
		if (r < 0)
			port_log(p, VP_LOG_WARN, "device reset failed: %s", strerror(-r));
		p->fe_started = false;
	}
	p->fe_state = VM_FE_DOWN;
	p->retry_at_ns = vm_now_ns() + p->retry_ns;
	if (was_up) {
		p->link_downs++;
		port_log(p, VP_LOG_INFO, "link down: %s; reconnecting to %s", why, p->path);
	}
}

/* The connection is gone: read what is left in the RX ring, then reset. */
static void fe_lost(struct vm_port *p, const char *why)
{
	if (p->fe_state != VM_FE_UP) {
		fe_down(p, why);
		return;
	}
	snprintf(p->down_why, sizeof(p->down_why), "%s", why);
	p->fe_state = VM_FE_DRAIN;
	p->drain_until_ns = vm_now_ns() + 100 * 1000000ll;
}

static void fe_started(struct vm_port *p, uint64_t features)
{
	/* Only virtio feature bits reach the driver; the vhost-user transport
	 * bit (PROTOCOL_FEATURES, 30) is the connection's business. */
	features &= ~(1ull << 30);
	int r = vp_netfe_start(p->fe, features);

	if (r < 0) {
		port_log(p, VP_LOG_WARN, "starting the device failed: %s", strerror(-r));
		p->fe_started = true; /* rings may be half set up: reset them */
		fe_down(p, "start failed");
		return;
	}
	p->fe_started = true;
	p->features = features;
	p->fe_state = VM_FE_UP;
	p->ever_up = true;
	p->link_ups++;
	port_log(p, VP_LOG_INFO, "link up: %s %s (features 0x%" PRIx64 ")",
		 p->vhost_user ? "vhost-user backend" : "vhost-pci server", p->path, features);
}

static void fe_try_connect(struct vm_port *p)
{
	struct vp_frontend_info info;
	int r;

	vp_netfe_info(p->fe, &info);
	if (p->vhost_user) {
		uint64_t neg = 0;

		r = vp_vu_frontend_start(p->path, &info, &neg, 5000);
		if (r >= 0) {
			p->vu_sock = r;
			fe_started(p, neg);
			return;
		}
	} else {
		r = vp_client_connect(&p->cl, p->path, &info);
		if (r >= 0) {
			p->fe_state = VM_FE_HANDSHAKE;
			return;
		}
		p->cl = NULL;
	}
	snprintf(p->last_err, sizeof(p->last_err), "connecting to %s: %s", p->path,
		 strerror(-r));
	p->retry_at_ns = vm_now_ns() + p->retry_ns;
	/* Only the connect itself is retried quietly; the rest is logged. */
	if (r != -ENOENT && r != -ECONNREFUSED)
		port_log(p, VP_LOG_WARN, "%s", p->last_err);
}

int vm_port_frontend(struct vm_port *p, const char *name, const struct vm_fe_opts *o)
{
	struct vp_netfe_config cfg = { 0 };
	int r;

	memset(p, 0, sizeof(*p));
	p->kind = VM_PORT_FRONTEND;
	p->vu_sock = -1;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->path = o->path;
	p->mode = o->mode;
	p->vhost_user = o->vhost_user;
	p->retry_ns = 100 * 1000000ll;
	cfg.ram = o->ram->p;
	cfg.ram_size = o->ram->size;
	cfg.ram_fd = o->ram->fd;
	cfg.ram_offset = o->ram_offset;
	cfg.rx_num = o->ring;
	cfg.tx_num = o->ring;
	cfg.features = o->features;
	memcpy(cfg.mac, o->mac, 6);
	memcpy(cfg.uuid, o->uuid, 16);
	cfg.mode = lib_mode(o->mode);
	r = vp_netfe_new(&p->fe, &cfg);
	if (r < 0) {
		snprintf(p->last_err, sizeof(p->last_err), "cannot create the virtio-net device: %s",
			 strerror(-r));
		p->fe = NULL;
		p->kind = VM_PORT_NONE;
		return r;
	}
	p->give_up_ns = vm_now_ns() + (int64_t)o->connect_timeout_ms * 1000000;
	fe_try_connect(p);
	return 0;
}

static int fe_control(struct vm_port *p)
{
	switch (p->fe_state) {
	case VM_FE_DOWN:
		if (vm_now_ns() < p->retry_at_ns)
			return 0;
		if (!p->ever_up && vm_now_ns() > p->give_up_ns) {
			if (!p->last_err[0])
				snprintf(p->last_err, sizeof(p->last_err), "no link to %s", p->path);
			return -ETIMEDOUT;
		}
		fe_try_connect(p);
		return 0;
	case VM_FE_HANDSHAKE:
		vp_client_dispatch(p->cl);
		if (vp_client_state(p->cl) == VP_CLIENT_STARTED) {
			fe_started(p, vp_client_features(p->cl));
		} else if (vp_client_state(p->cl) == VP_CLIENT_FAILED) {
			snprintf(p->last_err, sizeof(p->last_err), "handshake with %s failed: %s",
				 p->path, vp_client_error(p->cl));
			port_log(p, VP_LOG_WARN, "%s", p->last_err);
			fe_down(p, "handshake failed");
		} else if (!p->ever_up && vm_now_ns() > p->give_up_ns) {
			snprintf(p->last_err, sizeof(p->last_err), "handshake with %s timed out",
				 p->path);
			return -ETIMEDOUT;
		}
		return 0;
	case VM_FE_UP:
		if (p->cl) {
			vp_client_dispatch(p->cl);
			if (vp_client_state(p->cl) == VP_CLIENT_FAILED) {
				snprintf(p->last_err, sizeof(p->last_err), "%s",
					 vp_client_error(p->cl));
				fe_lost(p, p->last_err[0] ? p->last_err : "server connection lost");
			}
		} else if (p->vu_sock >= 0) {
			struct pollfd pf = { .fd = p->vu_sock, .events = POLLIN };

			if (poll(&pf, 1, 0) > 0) {
				char b[256];
				ssize_t n = recv(p->vu_sock, b, sizeof(b), MSG_DONTWAIT);

				/* A backend has nothing to say unasked: EOF or junk ends it. */
				if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
					fe_lost(p, "vhost-user backend closed the connection");
				else if (n > 0)
					fe_lost(p, "unexpected message from the vhost-user backend");
			}
		}
		if (p->fe_state == VM_FE_UP && vp_netfe_broken(p->fe)) {
			snprintf(p->last_err, sizeof(p->last_err), "ring broken: %s",
				 vp_netfe_broken(p->fe));
			fe_down(p, p->last_err);
		}
		return 0;
	case VM_FE_DRAIN:
		if (vm_now_ns() > p->drain_until_ns)
			fe_down(p, p->down_why);
		return 0;
	}
	return 0;
}

int vm_port_control(struct vm_port *p)
{
	switch (p->kind) {
	case VM_PORT_FRONTEND:
		return fe_control(p);
	case VM_PORT_BACKEND: {
		int r = vp_server_dispatch(p->srv);

		if (r < 0) {
			snprintf(p->last_err, sizeof(p->last_err), "server failed: %s", strerror(-r));
			return r;
		}
		for (unsigned i = 0; i < VM_MAX_LINKS; i++) {
			struct vm_link *l = &p->links[i];

			if (l->net && vp_net_broken(l->net))
				link_broken(p, l, "ring broken");
		}
		return 0;
	}
	case VM_PORT_NONE:
		break;
	}
	return 0;
}

bool vm_port_up(const struct vm_port *p)
{
	if (p->kind == VM_PORT_FRONTEND)
		return p->fe_state == VM_FE_UP;
	return vm_port_nlinks_up(p) > 0;
}

unsigned vm_port_nlinks_up(const struct vm_port *p)
{
	unsigned n = 0;

	if (p->kind == VM_PORT_FRONTEND)
		return p->fe_state == VM_FE_UP;
	for (unsigned i = 0; i < VM_MAX_LINKS; i++)
		n += p->links[i].net != NULL;
	return n;
}

int vm_port_rx(struct vm_port *p, struct vp_pkt *pkts, unsigned n, int *link)
{
	int r;

	*link = -1;
	if (p->kind == VM_PORT_FRONTEND) {
		if (p->fe_state != VM_FE_UP && p->fe_state != VM_FE_DRAIN)
			return 0;
		r = vp_netfe_rx_burst(p->fe, pkts, n);
		if (r < 0)
			fe_down(p, "receive ring broken");
		else if (r > 0)
			p->last_rx_ns = vm_now_ns();
		else if (p->fe_state == VM_FE_DRAIN)
			fe_down(p, p->down_why);
		*link = 0;
		return r;
	}
	for (unsigned k = 0; k < VM_MAX_LINKS; k++) {
		unsigned i = (p->rr + k) % VM_MAX_LINKS;
		struct vm_link *l = &p->links[i];

		if (!l->net)
			continue;
		r = vp_net_rx_burst(l->net, pkts, n);
		if (r < 0) {
			link_broken(p, l, "frontend's TX ring broken");
			continue;
		}
		if (r > 0) {
			p->rr = (i + 1) % VM_MAX_LINKS;
			l->last_rx_ns = vm_now_ns();
			*link = (int)i;
			return r;
		}
	}
	return 0;
}

/* Backend port, one link: a copying receive, or (fit) into lent buffers. */
static int link_rx(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n, bool fit)
{
	struct vm_link *l;
	int r;

	if (p->kind != VM_PORT_BACKEND || link < 0 || link >= VM_MAX_LINKS)
		return -EINVAL;
	l = &p->links[link];
	if (!l->net)
		return 0;
	r = fit ? vp_net_rx_into(l->net, pkts, n) : vp_net_rx_burst(l->net, pkts, n);
	if (r == -EIO)
		link_broken(p, l, "frontend's TX ring broken");
	else if (r > 0)
		l->last_rx_ns = vm_now_ns();
	return r;
}

int vm_port_rx_link(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	return link_rx(p, link, pkts, n, false);
}

int vm_port_tx(struct vm_port *p, int link, const struct vp_pkt *pkts, unsigned n,
	       unsigned flags)
{
	int r;

	if (p->kind == VM_PORT_FRONTEND) {
		if (p->fe_state != VM_FE_UP)
			return 0;
		r = vp_netfe_tx_burst(p->fe, pkts, n, flags);
		if (r < 0) {
			fe_down(p, "transmit ring broken");
		} else {
			p->tx_accepted += (uint64_t)r;
			if (r > 0)
				p->last_tx_ns = vm_now_ns();
		}
		return r;
	}
	if (link < 0) {
		for (unsigned i = 0; i < VM_MAX_LINKS && link < 0; i++)
			if (p->links[i].net)
				link = (int)i;
		if (link < 0)
			return 0;
	}
	if (link >= VM_MAX_LINKS || !p->links[link].net)
		return 0;
	r = vp_net_tx_burst(p->links[link].net, pkts, n, flags);
	if (r < 0)
		link_broken(p, &p->links[link], "frontend's RX ring broken");
	return r;
}

int vm_port_tx_reserve(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	int r;

	p->resv_link = -1;
	if (p->kind == VM_PORT_FRONTEND) {
		if (p->fe_state != VM_FE_UP)
			return 0;
		r = vp_netfe_tx_reserve(p->fe, pkts, n);
		if (r < 0)
			fe_down(p, "transmit ring broken");
		return r;
	}
	if (link >= VM_MAX_LINKS)
		return 0;
	for (unsigned i = link < 0 ? 0 : (unsigned)link; i < VM_MAX_LINKS; i++) {
		if (!p->links[i].net) {
			if (link >= 0)
				return 0;
			continue;
		}
		r = vp_net_tx_reserve(p->links[i].net, pkts, n);
		if (r < 0) {
			link_broken(p, &p->links[i], "frontend's RX ring broken");
			return r;
		}
		p->resv_link = (int)i;
		return r;
	}
	return 0;
}

int vm_port_tx_commit(struct vm_port *p, const struct vp_pkt *pkts, unsigned n)
{
	int r;

	if (p->kind == VM_PORT_FRONTEND) {
		if (p->fe_state != VM_FE_UP)
			return 0;
		r = vp_netfe_tx_commit(p->fe, pkts, n);
		if (r == -EIO) {
			fe_down(p, "transmit ring broken");
		} else if (r > 0) {
			p->tx_accepted += (uint64_t)r;
			p->last_tx_ns = vm_now_ns();
		}
		return r;
	}
	if (p->resv_link < 0 || !p->links[p->resv_link].net)
		return 0;  /* the link went away in between: nothing was sent */
	r = vp_net_tx_commit(p->links[p->resv_link].net, pkts, n);
	if (r == -EIO)
		link_broken(p, &p->links[p->resv_link], "frontend's RX ring broken");
	p->resv_link = -1;
	return r;
}

int vm_port_rx_borrow(struct vm_port *p, struct vp_pkt *pkts, unsigned n)
{
	int r;

	if (p->kind != VM_PORT_FRONTEND)
		return -ENOTSUP;
	if (p->fe_state != VM_FE_UP && p->fe_state != VM_FE_DRAIN)
		return 0;
	r = vp_netfe_rx_borrow(p->fe, pkts, n);
	if (r < 0)
		fe_down(p, "receive ring broken");
	else if (r > 0)
		p->last_rx_ns = vm_now_ns();
	else if (p->fe_state == VM_FE_DRAIN)
		fe_down(p, p->down_why);
	return r;
}

void vm_port_rx_release(struct vm_port *p)
{
	if (p->kind == VM_PORT_FRONTEND && p->fe &&
	    (p->fe_state == VM_FE_UP || p->fe_state == VM_FE_DRAIN) &&
	    vp_netfe_rx_release(p->fe) == -EIO)
		fe_down(p, "receive ring broken");
}

int vm_port_rx_into(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n)
{
	return link_rx(p, link, pkts, n, true);
}

unsigned vm_port_rx_pending(struct vm_port *p, int link)
{
	if (p->kind != VM_PORT_BACKEND || link < 0 || link >= VM_MAX_LINKS || !p->links[link].net)
		return 0;
	return vp_net_rx_pending(p->links[link].net);
}

uint64_t vm_port_features(const struct vm_port *p)
{
	if (p->kind == VM_PORT_FRONTEND)
		return p->fe_state == VM_FE_UP ? p->features : 0;
	for (unsigned i = 0; i < VM_MAX_LINKS; i++)
		if (p->links[i].net)
			return p->links[i].dev->driver_features;
	return 0;
}

void vm_port_stats(const struct vm_port *p, struct vp_net_stats *out)
{
	*out = p->acc;
	if (p->kind == VM_PORT_FRONTEND) {
		if (p->fe)
			*out = *vp_netfe_stats(p->fe);
		return;
	}
	for (unsigned i = 0; i < VM_MAX_LINKS; i++)
		if (p->links[i].net)
			add_stats(out, vp_net_stats(p->links[i].net));
}

void vm_port_close(struct vm_port *p)
{
	switch (p->kind) {
	case VM_PORT_FRONTEND:
		/* Like a guest shutting down cleanly: let the device take what we
		 * queued (up to 1 s) before we stop it. */
		if (p->fe_state == VM_FE_UP) {
			int64_t end = vm_now_ns() + 1000000000ll;
			const struct vp_net_stats *st = vp_netfe_stats(p->fe);

			while (vm_now_ns() < end) {
				if (vp_netfe_tx_burst(p->fe, NULL, 0, 0) < 0)
					break;
				if (st->tx_packets + st->tx_drop_no_buf + st->tx_drop_too_big >=
				    p->tx_accepted)
					break;
				vp_netfe_wait(p->fe, false, true, 10);
				if (p->cl) {
					vp_client_dispatch(p->cl);
					if (vp_client_state(p->cl) != VP_CLIENT_STARTED)
						break;
				}
			}
		}
		if (p->cl && vp_client_state(p->cl) == VP_CLIENT_STARTED)
			vp_client_stop(p->cl, VP_PCI_STOP_SHUTDOWN);
		if (p->vu_sock >= 0 && p->fe_state == VM_FE_UP)
			vp_vu_frontend_stop(p->vu_sock, 2, NULL, 1000);
		if (p->fe)
			p->acc = *vp_netfe_stats(p->fe);
		if (p->cl)
			vp_client_free(p->cl);
		if (p->vu_sock >= 0)
			close(p->vu_sock);
		p->cl = NULL;
		p->vu_sock = -1;
		p->fe_started = false;
		p->fe_state = VM_FE_DOWN;
		vp_netfe_free(p->fe);
		p->fe = NULL;
		break;
	case VM_PORT_BACKEND:
		/* REMOVED events free the links (and add their stats). */
		vp_server_free(p->srv);
		p->srv = NULL;
		for (unsigned i = 0; i < VM_MAX_LINKS; i++)
			if (p->links[i].net)
				link_down(p, &p->links[i], "shutting down");
		break;
	case VM_PORT_NONE:
		break;
	}
	p->kind = VM_PORT_NONE;
}

/* ------------------------------------------------------------------------ */
/* waiting
 *
 * vp_net_wait()/vp_netfe_wait() arm notifications, sleep in their own poll()
 * and disarm before returning: only one data object can sleep at a time and
 * nothing else (server socket, TAP fd, another link) can share its poll. So:
 *
 *  - ADAPTIVE is done here, over every object at once: the data objects are
 *    made in IRQ mode, and we busy-poll (the caller's loop) until the ports
 *    were idle for VM_SPIN_NS, then sleep.
 *  - A backend link whose frontend negotiated EVENT_IDX is "armable": a
 *    zero-timeout vp_net_wait() arms it and checks the race; its disarm
 *    cannot take the request back (with EVENT_IDX, avail_event just stays
 *    where it was, so the frontend kicks once more). Its kick eventfds then
 *    go into one poll() with the control sockets and extra fds.
 *  - Anything else (our frontend driver, links without EVENT_IDX) can only
 *    sleep inside the library: we sleep on the most urgent one in short
 *    slices and look at the rest between slices. A frontend's receive side
 *    that has been idle for a while is only looked at every
 *    LAZY_MS, so that it does not steal the sleep from the busy direction.
 */

#define VM_SPIN_NS 50000
#define SLICE_ALONE_MS 20  /* one object: control sockets are served this often */
#define SLICE_SHARED_MS 1  /* several: the others are looked at this often */
#define LAZY_MS 20
#define RECENT_NS 100000000ll
#define WAIT_MAX_FDS 64

static unsigned control_fds(const struct vm_port *p, struct pollfd *pf, unsigned max)
{
	unsigned n = 0;

	if (p->kind == VM_PORT_BACKEND && p->srv && n < max)
		pf[n++] = (struct pollfd){ vp_server_fd(p->srv), POLLIN, 0 };
	if (p->kind == VM_PORT_FRONTEND) {
		if (p->cl && n < max)
			pf[n++] = (struct pollfd){ vp_client_fd(p->cl), POLLIN, 0 };
		if (p->vu_sock >= 0 && n < max)
			pf[n++] = (struct pollfd){ p->vu_sock, POLLIN, 0 };
	}
	return n;
}

struct wobj {
	struct vm_port *port;
	struct vm_link *link;  /* NULL: the port's frontend driver */
	bool rx, tx;
	int64_t last;
};

static int wobj_wait(const struct wobj *o, int ms)
{
	if (!o->link)
		return vp_netfe_wait(o->port->fe, o->rx, o->tx, ms);
	return vp_net_wait(o->link->net, o->rx, o->tx, ms);
}

static bool armable(const struct vm_link *l)
{
	return l->dev && (l->dev->driver_features & (1ull << VIRTIO_RING_F_EVENT_IDX));
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

int vm_wait(struct vm_wait_port *wp, unsigned nports, const int *extra_fds, unsigned nextra,
	    int timeout_ms, int64_t last_work_ns)
{
	struct pollfd pf[WAIT_MAX_FDS];
	struct wobj must[2 * VM_MAX_LINKS + 2], *best = NULL;
	struct vp_net *armed[2 * VM_MAX_LINKS];
	struct vm_port *pf_port[WAIT_MAX_FDS];  /* the port whose link armed pf[i] */
	unsigned n = 0, nmust = 0, narmed = 0, nctl;
	int64_t now = 0;
	bool lazy = false;
	int r;

	/* Any data object at all? POLL: never sleep; ADAPTIVE: not yet. The
	 * clock is read only when needed: a polling pass must stay short. */
	for (unsigned i = 0; i < nports; i++) {
		struct vm_port *p = wp[i].port;

		if ((wp[i].want_rx || wp[i].want_tx) && vm_port_up(p)) {
			if (p->mode == VP_NET_POLL)
				return 1;
			if (!now)
				now = vm_now_ns();
			if (p->mode == VP_NET_ADAPTIVE && now - last_work_ns < VM_SPIN_NS) {
				for (int k = 0; k < 16; k++)
					cpu_pause();
				return 1;
			}
		}
	}
	if (!now)
		now = vm_now_ns();
	for (unsigned i = 0; i < nports; i++) {
		struct vm_port *p = wp[i].port;
		bool rx = wp[i].want_rx, tx = wp[i].want_tx;

		nctl = control_fds(p, pf + n, WAIT_MAX_FDS - n);
		for (unsigned k = 0; k < nctl; k++)
			pf_port[n + k] = NULL;
		n += nctl;
		if (!rx && !tx)
			continue;
		if (p->kind == VM_PORT_FRONTEND && p->fe_state == VM_FE_UP) {
			/* A blocked transmit, or a receive side in use: sleep on it.
			 * A quiet receive side (the reverse direction of a chain)
			 * is only looked at every LAZY_MS. */
			if (tx || now - p->last_rx_ns < RECENT_NS)
				must[nmust++] = (struct wobj){ p, NULL, rx, tx, p->last_rx_ns };
			else
				lazy = true;
			continue;
		}
		if (p->kind != VM_PORT_BACKEND)
			continue;
		for (unsigned k = 0; k < VM_MAX_LINKS; k++) {
			struct vm_link *l = &p->links[k];

			if (!l->net)
				continue;
			if (!armable(l)) {
				must[nmust++] = (struct wobj){ p, l, rx, tx, l->last_rx_ns };
				continue;
			}
			/*
			 * Armed until after the sleep: a kick that comes between
			 * arming and poll() stays in its eventfd. (Waiting here
			 * with vp_net_wait(.., 0) disarmed and drained the fds
			 * before the sleep: buffers posted in that gap were a
			 * lost wake-up, 20 ms each, in every irq-mode run.)
			 */
			r = vp_net_arm(l->net, rx, tx);
			if (r != 0) {
				vp_net_disarm(l->net);
				goto out;
			}
			armed[narmed++] = l->net;
			/* Kick fds: the frontend writes them when it adds buffers. */
			if (rx && n < WAIT_MAX_FDS) {
				pf_port[n] = p;
				pf[n++] = (struct pollfd){ vp_net_rx_fd(l->net), POLLIN, 0 };
			}
			if (tx && n < WAIT_MAX_FDS) {
				pf_port[n] = p;
				pf[n++] = (struct pollfd){ vp_net_tx_fd(l->net), POLLIN, 0 };
			}
		}
	}
	for (unsigned i = 0; i < nextra && n < WAIT_MAX_FDS; i++) {
		pf_port[n] = NULL;
		pf[n++] = (struct pollfd){ extra_fds[i], POLLIN, 0 };
	}
	if (lazy && (timeout_ms < 0 || timeout_ms > LAZY_MS))
		timeout_ms = LAZY_MS;
	if (nmust == 0) {
		r = poll(pf, n, timeout_ms);
		if (r < 0) {
			r = errno == EINTR ? 1 : -errno;
		} else {
			/* A kick woke us: counted as the library's own waits count. */
			for (unsigned i = 0; i < n; i++)
				if (pf_port[i] && (pf[i].revents & POLLIN)) {
					pf_port[i]->acc.wakeups++;
					break;
				}
		}
		goto out;
	}
	for (unsigned i = 0; i < nmust; i++) {
		struct wobj *o = &must[i];

		if (!best || (o->tx && !best->tx) || (o->tx == best->tx && o->last > best->last))
			best = o;
	}
	/* Control sockets can wait a slice; other data cannot wait long. */
	int slice = nmust == 1 && !narmed && !nextra && !lazy ? SLICE_ALONE_MS : SLICE_SHARED_MS;

	if (timeout_ms >= 0 && timeout_ms < slice)
		slice = timeout_ms;
	r = wobj_wait(best, slice);
	if (r == 0 && n) {
		r = poll(pf, n, 0);
		if (r < 0)
			r = 0;
	}
out:
	/* Awake: the rings are looked at next, so the kicks can go. */
	for (unsigned i = 0; i < narmed; i++)
		vp_net_disarm(armed[i]);
	return r;
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
/* JSON */

static void jput(struct vm_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jput(struct vm_json *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->len >= sizeof(j->buf) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->buf + j->len, sizeof(j->buf) - j->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->len = j->len + (size_t)n < sizeof(j->buf) ? j->len + (size_t)n
							     : sizeof(j->buf) - 1;
}

static void jkey(struct vm_json *j, const char *key)
{
	jput(j, "%s\"%s\":", j->first ? "" : ",", key);
	j->first = false;
}

void vm_json_begin(struct vm_json *j)
{
	j->len = 0;
	j->buf[0] = 0;
	j->first = true;
	j->depth = 1;
	jput(j, "{");
}

void vm_json_obj(struct vm_json *j, const char *key)
{
	jkey(j, key);
	jput(j, "{");
	j->first = true;
	j->depth++;
}

void vm_json_end_obj(struct vm_json *j)
{
	jput(j, "}");
	j->first = false;
	j->depth--;
}

void vm_json_str(struct vm_json *j, const char *key, const char *v)
{
	jkey(j, key);
	jput(j, "\"");
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\')
			jput(j, "\\%c", *c);
		else if ((unsigned char)*c < 0x20)
			jput(j, "\\u%04x", (unsigned char)*c);
		else
			jput(j, "%c", *c);
	}
	jput(j, "\"");
}

void vm_json_u64(struct vm_json *j, const char *key, uint64_t v)
{
	jkey(j, key);
	jput(j, "%" PRIu64, v);
}

void vm_json_dbl(struct vm_json *j, const char *key, double v)
{
	jkey(j, key);
	jput(j, "%.4f", isfinite(v) ? v : 0.0);
}

void vm_json_bool(struct vm_json *j, const char *key, bool v)
{
	jkey(j, key);
	jput(j, "%s", v ? "true" : "false");
}

const char *vm_json_finish(struct vm_json *j)
{
	while (j->depth-- > 0)
		jput(j, "}");
	return j->buf;
}

static const char *json_find(const char *json, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	return p ? p + strlen(pat) : NULL;
}

int vm_json_get_num(const char *json, const char *key, double *out)
{
	const char *p = json_find(json, key);
	char *end;

	if (!p)
		return -ENOENT;
	*out = strtod(p, &end);
	return end == p ? -ENOENT : 0;
}

int vm_json_get_bool(const char *json, const char *key, bool *out)
{
	const char *p = json_find(json, key);

	if (!p)
		return -ENOENT;
	if (!strncmp(p, "true", 4))
		*out = true;
	else if (!strncmp(p, "false", 5))
		*out = false;
	else
		return -ENOENT;
	return 0;
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
