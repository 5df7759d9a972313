/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A tiny host behind a vp_netfe frontend (see kmod_net.h and kmod_proto.h): what the
 * guest's vpnet0 talks to in tests/peers/qemu-kmod-data.sh. Every frame from the guest
 * is parsed with its lengths checked; a wrong checksum, sequence number or data byte
 * is a MISMATCH line and fails kn_host_end().
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmod_net.h"
#include "kmod_proto.h"

#define KN_TXQ 256u	/* frames queued for the frontend's transmitq */
#define KN_FRAME 9216u	/* largest frame we build (MTU 9000 + headers) */
#define KN_RXB 32u
#define ETH 14u
#define IP 20u
#define UDP 8u
#define ICMP 8u
/* A call may trail its used index by the guest's store-to-doorbell time. */
#define KN_GRACE_MS 1000
/* Posted frames the guest has not taken for this long: a kick it did not act on. */
#define KN_STALL_MS 2000

struct kn_host {
	struct vp_netfe *fe;
	unsigned char *ram;
	uint64_t ram_size;
	struct vp_frontend_info fi;
	int kick_fd;
	bool loop;
	uint8_t mac[6], guest_mac[6];
	uint16_t ip_id;
	/* frames waiting for transmit slots */
	unsigned char *txb[KN_TXQ];
	uint32_t txlen[KN_TXQ];
	unsigned qh, qn;
	unsigned char *rxb[KN_RXB];
	/* guest -> host bulk */
	uint32_t next_seq, bad_run;
	uint64_t bytes_run;
	struct kn_msg last_res;	/* answered again to a repeated KN_END */
	bool have_res;
	/* host -> guest pulls */
	/* The guest's UDP port per conversation: a bulk transfer and a pull may run
	 * at once from two sockets (kmod-guest tx and rx side by side). */
	uint16_t pull_port, ping_port;
	uint32_t pull_next, pull_end, pull_size;
	/* host -> guest pings */
	uint32_t ping_n, ping_sent, ping_got, ping_bad, ping_size;
	bool ping_out;
	int64_t ping_deadline;
	uint64_t echo_replied, arp_replied, frames_in;
	unsigned mismatches;
	/* notifications (kn_host_idle()) */
	bool strict, armed_tx;
	unsigned missed_wakeups, missed_kicks, late_calls;
	int64_t txq_since;	/* transmitq frames pending since, at txq_used; 0: none */
	uint16_t txq_used;
	bool hostile_sent;
};

int64_t kn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 2, 3)))
static void mismatch(struct kn_host *kn, const char *fmt, ...)
{
	va_list ap;

	kn->mismatches++;
	if (kn->mismatches > 20)
		return;
	printf("kmod-host: MISMATCH: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static uint32_t csum_add(uint32_t sum, const unsigned char *p, size_t len)
{
	for (; len > 1; len -= 2, p += 2)
		sum += (uint32_t)(p[0] << 8 | p[1]);
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* A slot in the transmit queue, or NULL if it is full. */
static unsigned char *tx_slot(struct kn_host *kn)
{
	if (kn->qn == KN_TXQ)
		return NULL;
	return kn->txb[(kn->qh + kn->qn) % KN_TXQ];
}

static void tx_queue(struct kn_host *kn, uint32_t len)
{
	kn->txlen[(kn->qh + kn->qn) % KN_TXQ] = len;
	kn->qn++;
}

/* Ethernet + IPv4 headers for proto with l4 bytes behind them; returns the L4 start. */
static unsigned char *ip_frame(struct kn_host *kn, unsigned char *f, uint8_t proto, uint32_t l4)
{
	unsigned char *ip = f + ETH;

	memcpy(f, kn->guest_mac, 6);
	memcpy(f + 6, kn->mac, 6);
	put16(f + 12, 0x0800);
	memset(ip, 0, IP);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(IP + l4));
	put16(ip + 4, kn->ip_id++);
	ip[8] = 64;
	ip[9] = proto;
	put32(ip + 12, KN_HOST_IP);
	put32(ip + 16, KN_GUEST_IP);
	put16(ip + 10, csum_fold(csum_add(0, ip, IP)));
	return ip + IP;
}

static uint32_t l4_pseudo(uint8_t proto, uint32_t len, const unsigned char *ip)
{
	uint32_t sum = csum_add(0, ip + 12, 8);

	return sum + proto + len;
}

/* A UDP datagram from KN_PORT to the guest's port: msg, then size pattern bytes of seq. */
static bool send_udp(struct kn_host *kn, uint16_t port, const struct kn_msg *m, uint32_t size,
		     uint32_t seq)
{
	unsigned char *f = tx_slot(kn), *u;
	uint32_t l4 = UDP + sizeof(*m) + size;
	uint16_t c;

	if (!f || ETH + IP + l4 > KN_FRAME)
		return false;
	u = ip_frame(kn, f, 17, l4);
	put16(u, KN_PORT);
	put16(u + 2, port);
	put16(u + 4, (uint16_t)l4);
	put16(u + 6, 0);
	put32(u + 8, m->op);
	put32(u + 12, m->a);
	put32(u + 16, m->b);
	put32(u + 20, m->c);
	for (uint32_t i = 0; i < size; i++)
		u[UDP + sizeof(*m) + i] = kn_pat(seq, i);
	c = csum_fold(csum_add(l4_pseudo(17, l4, f + ETH), u, l4));
	put16(u + 6, c ? c : 0xffff);
	tx_queue(kn, ETH + IP + l4);
	return true;
}

static bool send_ping(struct kn_host *kn)
{
	unsigned char *f = tx_slot(kn), *m;
	uint32_t l4 = ICMP + kn->ping_size;

	if (!f || ETH + IP + l4 > KN_FRAME)
		return false;
	m = ip_frame(kn, f, 1, l4);
	m[0] = 8;
	m[1] = 0;
	put16(m + 2, 0);
	put16(m + 4, KN_PING_ID);
	put16(m + 6, (uint16_t)(kn->ping_sent + 1));
	for (uint32_t i = 0; i < kn->ping_size; i++)
		m[ICMP + i] = kn_pat(kn->ping_sent + 1, i);
	put16(m + 2, csum_fold(csum_add(0, m, l4)));
	tx_queue(kn, ETH + IP + l4);
	return true;
}

/* Post a descriptor outside our RAM (or one chained to itself) on the transmitq and
 * kick: the guest driver must take its link down, nothing else. */
static void go_hostile(struct kn_host *kn)
{
	const struct vp_frontend_ring *r = &kn->fi.rings[VP_NET_Q_TX];
	struct vring_desc *d = (struct vring_desc *)(void *)(kn->ram + r->desc);
	uint16_t *avail = (uint16_t *)(void *)(kn->ram + r->avail);
	uint16_t idx = le16toh(__atomic_load_n(&avail[1], __ATOMIC_ACQUIRE));
	uint16_t head = (uint16_t)(r->num - 1);
	uint64_t one = 1;

	if (kn->loop)	/* inside our RAM, but its own next */
		d[head] = (struct vring_desc){ .addr = htole64(r->desc), .len = htole32(64),
					       .flags = htole16(VRING_DESC_F_NEXT),
					       .next = htole16(head) };
	else
		d[head] = (struct vring_desc){ .addr = htole64(kn->ram_size + 0x10000),
					       .len = htole32(64) };
	avail[2 + idx % r->num] = htole16(head);
	__atomic_store_n(&avail[1], htole16((uint16_t)(idx + 1)), __ATOMIC_RELEASE);
	if (write(kn->kick_fd, &one, sizeof(one)) != sizeof(one))
		printf("kmod-host: hostile kick: %s\n", strerror(errno));
	kn->hostile_sent = true;
	printf("kmod-host: hostile descriptor posted (head %u, %s)\n", head,
	       kn->loop ? "chained to itself" : "outside our RAM");
}

static void on_udp(struct kn_host *kn, const unsigned char *ip, const unsigned char *u,
		   uint32_t l4)
{
	uint32_t len = get16(u + 4), size;
	struct kn_msg m, r = { 0 };
	uint16_t port;

	if (len < UDP || len > l4) {
		mismatch(kn, "UDP length %u in %u bytes", len, l4);
		return;
	}
	if (get16(u + 6) && csum_fold(csum_add(l4_pseudo(17, len, ip), u, len))) {
		mismatch(kn, "UDP checksum");
		return;
	}
	if (get16(u + 2) != KN_PORT || len < UDP + sizeof(m))
		return;
	port = get16(u);
	m = (struct kn_msg){ get32(u + 8), get32(u + 12), get32(u + 16), get32(u + 20) };
	size = len - UDP - (uint32_t)sizeof(m);
	switch (m.op) {
	case KN_DATA:
		kn->have_res = false;
		if (m.a == 0 && kn->next_seq) {
			/* A new transfer: the last one was cut (rmmod under traffic). */
			printf("kmod-host: bulk from the guest restarted; the last was cut at "
			       "datagram %u\n", kn->next_seq);
			kn->next_seq = kn->bad_run = 0;
			kn->bytes_run = 0;
		}
		if (m.a != kn->next_seq) {
			mismatch(kn, "datagram %u where %u was due", m.a, kn->next_seq);
			kn->bad_run++;
			kn->next_seq = m.a + 1;
			return;
		}
		for (uint32_t i = 0; i < size; i++) {
			if (u[UDP + sizeof(m) + i] != kn_pat(m.a, i)) {
				mismatch(kn, "datagram %u byte %u: 0x%02x, not 0x%02x", m.a, i,
					 u[UDP + sizeof(m) + i], kn_pat(m.a, i));
				kn->bad_run++;
				break;
			}
		}
		kn->next_seq++;
		kn->bytes_run += size;
		return;
	case KN_END:
		if (kn->have_res && !kn->next_seq && m.a == kn->last_res.b) {
			send_udp(kn, port, &kn->last_res, 0, 0);
			return;
		}
		r = (struct kn_msg){ KN_RES, m.a == kn->next_seq && !kn->bad_run, kn->next_seq,
				     kn->bad_run };
		printf("kmod-host: bulk from the guest: %u of %u datagrams, %" PRIu64
		       " bytes, %u bad\n", kn->next_seq, m.a, kn->bytes_run, kn->bad_run);
		if (m.a != kn->next_seq)
			mismatch(kn, "bulk from the guest: %u datagrams, %u sent", kn->next_seq, m.a);
		kn->next_seq = kn->bad_run = 0;
		kn->bytes_run = 0;
		kn->last_res = r;
		kn->have_res = true;
		send_udp(kn, port, &r, 0, 0);
		return;
	case KN_PULL:
		kn->pull_port = port;
		kn->pull_next = m.a;
		kn->pull_end = m.a + m.b;
		kn->pull_size = m.c;
		return;
	case KN_PINGME:
		kn->ping_port = port;
		kn->ping_n = m.a;
		kn->ping_size = m.b;
		kn->ping_sent = kn->ping_got = kn->ping_bad = 0;
		kn->ping_out = false;
		return;
	case KN_HOSTILE:
		if (kn->kick_fd >= 0 && !kn->hostile_sent)
			go_hostile(kn);
		return;
	default:
		return;
	}
}

static void on_icmp(struct kn_host *kn, const unsigned char *ip, const unsigned char *m,
		    uint32_t l4)
{
	unsigned char *f, *o;

	if (l4 < ICMP || csum_fold(csum_add(0, m, l4))) {
		mismatch(kn, "ICMP checksum or length (%u)", l4);
		return;
	}
	if (m[0] == 8 && get32(ip + 16) == KN_HOST_IP && (f = tx_slot(kn))) {
		o = ip_frame(kn, f, 1, l4);
		memcpy(o, m, l4);
		o[0] = 0;
		put16(o + 2, 0);
		put16(o + 2, csum_fold(csum_add(0, o, l4)));
		tx_queue(kn, ETH + IP + l4);
		kn->echo_replied++;
	} else if (m[0] == 0 && get16(m + 4) == KN_PING_ID && kn->ping_out &&
		   get16(m + 6) == (uint16_t)kn->ping_sent) {
		bool ok = l4 == ICMP + kn->ping_size;

		for (uint32_t i = 0; ok && i < kn->ping_size; i++)
			ok = m[ICMP + i] == kn_pat(kn->ping_sent, i);
		if (!ok) {
			mismatch(kn, "echo reply %u: wrong data", kn->ping_sent);
			kn->ping_bad++;
		}
		kn->ping_got++;
		kn->ping_out = false;
	}
}

static void on_frame(struct kn_host *kn, const unsigned char *f, uint32_t len)
{
	const unsigned char *ip;
	uint32_t ihl, tot;

	kn->frames_in++;
	if (len < ETH)
		return;
	if (get16(f + 12) == 0x0806 && len >= ETH + 28) {
		const unsigned char *a = f + ETH;
		unsigned char *o = tx_slot(kn);

		if (get16(a + 6) != 1 || get32(a + 24) != KN_HOST_IP || !o)
			return;
		memcpy(kn->guest_mac, a + 8, 6);
		memcpy(o, a + 8, 6);
		memcpy(o + 6, kn->mac, 6);
		put16(o + 12, 0x0806);
		memcpy(o + ETH, a, 6);
		put16(o + ETH + 6, 2);
		memcpy(o + ETH + 8, kn->mac, 6);
		put32(o + ETH + 14, KN_HOST_IP);
		memcpy(o + ETH + 18, a + 8, 10);
		tx_queue(kn, ETH + 28);
		kn->arp_replied++;
		return;
	}
	if (get16(f + 12) != 0x0800 || len < ETH + IP)
		return;
	ip = f + ETH;
	ihl = (ip[0] & 15u) * 4;
	tot = get16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < IP || tot < ihl || tot > len - ETH ||
	    csum_fold(csum_add(0, ip, ihl))) {
		mismatch(kn, "IPv4 header (length %u in a %u-byte frame)", tot, len);
		return;
	}
	memcpy(kn->guest_mac, f + 6, 6);
	if (ip[9] == 17)
		on_udp(kn, ip, ip + ihl, tot - ihl);
	else if (ip[9] == 1)
		on_icmp(kn, ip, ip + ihl, tot - ihl);
}

int kn_host_run(struct kn_host *kn, int wait_ms)
{
	struct vp_pkt p[KN_RXB];
	int r, rounds = 0;

	bool more;

	do {
		for (unsigned i = 0; i < KN_RXB; i++)
			p[i] = (struct vp_pkt){ .data = kn->rxb[i], .len = VP_NET_MAX_PKT };
		r = vp_netfe_rx_burst(kn->fe, p, KN_RXB);
		if (r < 0)
			return kn->hostile_sent ? 0 : r;
		for (int i = 0; i < r; i++)
			on_frame(kn, kn->rxb[i], p[i].len);
	} while (r == (int)KN_RXB && ++rounds < 8);
	/* A full burst may leave frames pulled from the used ring but not yet
	 * handed out (and their buffers not posted again): arming looks at the
	 * ring only, so come back at once instead of sleeping on them. */
	more = r == (int)KN_RXB;

	while (kn->pull_next < kn->pull_end) {
		struct kn_msg m = { KN_PUSHED, kn->pull_next, 0, 0 };

		if (!send_udp(kn, kn->pull_port, &m, kn->pull_size, kn->pull_next))
			break;
		kn->pull_next++;
	}
	if (kn->ping_n) {
		if (kn->ping_out && kn_now_ms() >= kn->ping_deadline)
			kn->ping_out = false;	/* lost: the count tells */
		if (!kn->ping_out && kn->ping_sent < kn->ping_n && send_ping(kn)) {
			kn->ping_sent++;
			kn->ping_out = true;
			kn->ping_deadline = kn_now_ms() + 1000;
		} else if (!kn->ping_out && kn->ping_sent == kn->ping_n) {
			struct kn_msg m = { KN_PINGED, kn->ping_got, kn->ping_bad, 0 };

			printf("kmod-host: pinged the guest: %u of %u replies, %u bad\n",
			       kn->ping_got, kn->ping_n, kn->ping_bad);
			if (kn->ping_got != kn->ping_n)
				mismatch(kn, "%u echo requests unanswered", kn->ping_n - kn->ping_got);
			send_udp(kn, kn->ping_port, &m, 0, 0);
			kn->ping_n = 0;
		}
	}
	while (kn->qn) {
		struct vp_pkt t[32];
		unsigned n = kn->qn < 32 ? kn->qn : 32;

		for (unsigned i = 0; i < n; i++) {
			unsigned s = (kn->qh + i) % KN_TXQ;

			t[i] = (struct vp_pkt){ .data = kn->txb[s], .len = kn->txlen[s] };
		}
		r = vp_netfe_tx_burst(kn->fe, t, n, 0);
		if (r < 0)
			return kn->hostile_sent ? 0 : r;
		kn->qh = (kn->qh + (unsigned)r) % KN_TXQ;
		kn->qn -= (unsigned)r;
		if ((unsigned)r < n)
			break;	/* no transmit slot: wait for completions */
	}
	if (kn->ping_out) {
		int64_t left = kn->ping_deadline - kn_now_ms();

		if (left < wait_ms)
			wait_ms = left > 0 ? (int)left : 0;
	}
	if (more || (kn->pull_next < kn->pull_end && kn->qn < KN_TXQ))
		wait_ms = 0;
	kn->armed_tx = kn->qn > 0;
	r = vp_netfe_arm(kn->fe, true, kn->armed_tx);
	if (r < 0)
		return kn->hostile_sent ? (wait_ms > 100 ? 100 : wait_ms) : r;
	return r > 0 ? 0 : wait_ms;
}

int kn_host_new(struct kn_host **out, struct vp_netfe *fe, void *ram, uint64_t ram_size,
		const struct vp_frontend_info *fi, int kick_fd, bool loop, bool strict)
{
	static const uint8_t mac[6] = KN_HOST_MAC;
	struct kn_host *kn = calloc(1, sizeof(*kn));

	if (!kn)
		return -ENOMEM;
	kn->fe = fe;
	kn->ram = ram;
	kn->ram_size = ram_size;
	kn->fi = *fi;
	kn->kick_fd = kick_fd;
	kn->loop = loop;
	kn->strict = strict;
	memcpy(kn->mac, mac, 6);
	for (unsigned i = 0; i < KN_TXQ; i++)
		if (!(kn->txb[i] = malloc(KN_FRAME)))
			goto nomem;
	for (unsigned i = 0; i < KN_RXB; i++)
		if (!(kn->rxb[i] = malloc(VP_NET_MAX_PKT)))
			goto nomem;
	*out = kn;
	return 0;
nomem:
	kn_host_free(kn);
	return -ENOMEM;
}

void kn_host_free(struct kn_host *kn)
{
	if (!kn)
		return;
	for (unsigned i = 0; i < KN_TXQ; i++)
		free(kn->txb[i]);
	for (unsigned i = 0; i < KN_RXB; i++)
		free(kn->rxb[i]);
	free(kn);
}

bool kn_host_hostile_sent(const struct kn_host *kn)
{
	return kn->hostile_sent;
}

static uint16_t ring16(const struct kn_host *kn, uint64_t gpa)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)(kn->ram + gpa),
				       __ATOMIC_ACQUIRE));
}

/* The four indexes of the frontend's ring q, as they are in its RAM now. */
struct kn_idx {
	uint16_t avail_idx, used_event, used_idx, avail_event;
};

static struct kn_idx ring_idx(const struct kn_host *kn, unsigned q)
{
	const struct vp_frontend_ring *r = &kn->fi.rings[q];

	return (struct kn_idx){
		.avail_idx = ring16(kn, r->avail + 2),
		.used_event = ring16(kn, r->avail + 4 + 2u * r->num),
		.used_idx = ring16(kn, r->used + 2),
		.avail_event = ring16(kn, r->used + 4 + 8u * r->num),
	};
}

void kn_host_dump(const struct kn_host *kn)
{
	for (unsigned q = 0; q < 2; q++) {
		const struct vp_frontend_ring *r = &kn->fi.rings[q];
		struct kn_idx x = ring_idx(kn, q);

		printf("kmod-host: ring %u: avail flags %u idx %u used_event %u; used flags %u "
		       "idx %u avail_event %u\n", q, ring16(kn, r->avail), x.avail_idx,
		       x.used_event, ring16(kn, r->used), x.used_idx, x.avail_event);
	}
	printf("kmod-host: queued %u, pull %u..%u, next_seq %u, ping %u/%u out %d\n", kn->qn,
	       kn->pull_next, kn->pull_end, kn->next_seq, kn->ping_sent, kn->ping_n, kn->ping_out);
}

/* fd readable within ms (EINTR: SIGUSR1 asked for a dump; keep waiting). */
static bool fd_ready(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t end = kn_now_ms() + ms;
	int r;

	while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
		ms = end > kn_now_ms() ? (int)(end - kn_now_ms()) : 0;
	return r > 0;
}

void kn_host_idle(struct kn_host *kn, bool driver_ok)
{
	static const char *const name[2] = { "receiveq", "transmitq" };
	int64_t now = kn_now_ms();
	struct kn_idx x;

	if (kn->hostile_sent)
		return;	/* a broken ring owes nothing */
	/*
	 * Armed means used_event is what we consumed up to (vp_vq_drv_enable_cb()).
	 * A used index past it is an entry the guest published after we armed: its
	 * call is owed. Give a slow vCPU the grace between its used->idx store and
	 * its doorbell; a call in that time is only late.
	 */
	for (unsigned q = 0; q < 2; q++) {
		int fd = q == VP_NET_Q_RX ? vp_netfe_rx_fd(kn->fe) : vp_netfe_tx_fd(kn->fe);

		if (q == VP_NET_Q_TX && !kn->armed_tx)
			continue;
		x = ring_idx(kn, q);
		if (x.used_idx == x.used_event)
			continue;
		if (fd_ready(fd, KN_GRACE_MS)) {
			kn->late_calls++;
			continue;
		}
		x = ring_idx(kn, q);
		kn->missed_wakeups++;
		printf("kmod-host: MISSED WAKE-UP: %s: used idx %u is past used_event %u (what we "
		       "had seen, armed) and no call came in %d ms; avail idx %u, avail_event %u\n",
		       name[q], x.used_idx, x.used_event, KN_GRACE_MS, x.avail_idx, x.avail_event);
	}
	/* Frames on our transmitq the guest does not take: its NAPI missed our kick. */
	x = ring_idx(kn, VP_NET_Q_TX);
	if (!driver_ok || x.avail_idx == x.used_idx) {
		kn->txq_since = 0;
		return;
	}
	if (!kn->txq_since || x.used_idx != kn->txq_used) {
		kn->txq_since = now;
		kn->txq_used = x.used_idx;
		return;
	}
	if (now - kn->txq_since < KN_STALL_MS)
		return;
	kn->missed_kicks++;
	printf("kmod-host: MISSED KICK: transmitq: avail idx %u, used idx %u for %" PRId64
	       " ms, avail_event %u, used_event %u; kicking again\n", x.avail_idx, x.used_idx,
	       now - kn->txq_since, x.avail_event, x.used_event);
	{
		uint64_t one = 1;

		if (write(kn->fi.rings[VP_NET_Q_TX].kick_fd, &one, sizeof(one)) != sizeof(one))
			printf("kmod-host: kick: %s\n", strerror(errno));
	}
	kn->txq_since = now;
}

int kn_host_end(struct kn_host *kn)
{
	const struct vp_net_stats *s = vp_netfe_stats(kn->fe);

	printf("kmod-host: frontend: %" PRIu64 " frames in, %" PRIu64 " out; %" PRIu64
	       " ARP and %" PRIu64 " echo replies; %u mismatches; %u missed wake-ups, %u missed "
	       "kicks, %u late calls (%s)\n", s->rx_packets, s->tx_packets, kn->arp_replied,
	       kn->echo_replied, kn->mismatches, kn->missed_wakeups, kn->missed_kicks,
	       kn->late_calls, kn->strict ? "strict" : "lenient");
	if (kn->strict && (kn->missed_wakeups || kn->missed_kicks))
		printf("kmod-host: FAIL: a notification was lost (strict)\n");
	return kn->mismatches || (kn->strict && (kn->missed_wakeups || kn->missed_kicks)) ?
	       -EIO : 0;
}
