/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pci-net to vhost-pci-net over the 2.1 window (docs/window21.md):
 * two peers in two processes moving a million verified frames of random
 * sizes each way; reset and reconnect of either side (a peer killed and
 * replaced); a hostile peer writing its own section (indexes that run ahead,
 * offsets outside its buffers, lengths past the end, a consumed index ahead
 * of what was published, epochs that keep changing, random garbage); the
 * permissions proved (mprotect refused with EACCES, a write into the other's
 * section kills a child with SIGSEGV); every refusal at attach, fd counts.
 *
 * A frame's size and bytes follow from (sender, sequence), so a receiver
 * knows exactly what it must get.
 */
#define TESTUTIL_MAIN
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fakepci.h"
#include "testutil.h"
#include "vhostpci/guestdev.h"
#include "vhostpci/vhostpci.h"

#define BURST 32
#define FMIN 64u
#define FMAX 1518u
#define CAP 2048u
#define HDR VP21_HDR_LEN

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

/* The frame sender `who` (generation gen) sends as number seq. */
static uint32_t frame_len(unsigned who, uint32_t gen, uint32_t seq)
{
	return FMIN + mix(seq * 2u + who + gen * 0x9e3779b9u) % (FMAX - FMIN + 1);
}

static void frame_fill(struct vp_pkt *p, unsigned who, uint32_t gen, uint32_t seq)
{
	uint8_t *d = p->data;
	uint32_t len = frame_len(who, gen, seq);

	memcpy(d, &seq, 4);
	memcpy(d + 4, &gen, 4);
	for (uint32_t i = 8; i < len; i++)
		d[i] = (uint8_t)(seq * 131u + i * 7u + who);
	p->len = len;
	memset(&p->hdr, 0, sizeof(p->hdr));
	p->hdr.csum_start = (uint16_t)seq;
	p->hdr.csum_offset = (uint16_t)(gen + who);
}

/* 0 if p is frame (who, gen, seq) exactly. */
static int frame_check(const struct vp_pkt *p, unsigned who, uint32_t gen, uint32_t seq)
{
	const uint8_t *d = p->data;
	uint32_t s, g;

	if (p->len != frame_len(who, gen, seq) || p->len < 8)
		return -1;
	memcpy(&s, d, 4);
	memcpy(&g, d + 4, 4);
	if (s != seq || g != gen || p->hdr.csum_start != (uint16_t)seq ||
	    p->hdr.csum_offset != (uint16_t)(gen + who))
		return -2;
	for (uint32_t i = 8; i < p->len; i++)
		if (d[i] != (uint8_t)(seq * 131u + i * 7u + who))
			return -3;
	return 0;
}

struct bufs {
	uint8_t tx[BURST][CAP];
	uint8_t rx[BURST][CAP];
	struct vp_pkt tp[BURST], rp[BURST];
};

static struct bufs *bufs_new(void)
{
	struct bufs *b = calloc(1, sizeof(*b));

	if (b)
		for (unsigned i = 0; i < BURST; i++)
			b->tp[i].data = b->tx[i];
	return b;
}

/*
 * One peer's loop: send `total` frames (sequence from tx_seq) and receive
 * `want` frames from the other (sequence from rx_seq, generation rx_gen),
 * sleeping when idle. Returns 0, or a code saying what went wrong.
 */
static int run_peer(struct vp_net21 *n, unsigned who, uint32_t gen, uint32_t total,
		    uint32_t rx_gen, uint32_t want, int secs)
{
	struct bufs *b = bufs_new();
	uint32_t sent = 0, got = 0, ready = 0;
	int64_t end = now_ms() + secs * 1000;
	int rc = 0;

	if (!b)
		return 90;
	while (sent < total || got < want) {
		bool moved = false;
		int r;

		if (now_ms() > end) {
			fprintf(stderr, "peer %u: timeout, sent %u got %u (%s)\n", who, sent, got,
				vp_net21_up(n) ? "up" : "down");
			rc = 91;
			break;
		}
		if (sent < total) {
			unsigned k = total - sent < BURST ? total - sent : BURST;

			/* Frames not taken are prepared again (same bytes): no loss. */
			for (; ready < k; ready++)
				frame_fill(&b->tp[ready], who, gen, sent + ready);
			r = vp_net21_tx_burst(n, b->tp, k, 0);
			if (r < 0) {
				rc = 92;
				break;
			}
			if (r > 0) {
				ready = 0;
				sent += (uint32_t)r;
				moved = true;
			}
		}
		for (unsigned i = 0; i < BURST; i++) {
			b->rp[i].data = b->rx[i];
			b->rp[i].len = CAP;
		}
		r = vp_net21_rx_burst(n, b->rp, BURST);
		if (r < 0) {
			rc = 93;
			break;
		}
		for (int i = 0; i < r; i++, got++) {
			int e = frame_check(&b->rp[i], who ^ 1, rx_gen, got);

			if (e) {
				fprintf(stderr, "peer %u: frame %u bad (%d, len %u)\n", who, got, e,
					b->rp[i].len);
				rc = 94;
				goto out;
			}
		}
		moved |= r > 0;
		if (!moved &&
		    vp_net21_wait(n, got < want, sent < total, 100) < 0) {
			rc = 95;
			break;
		}
	}
out:
	if (rc && vp_net21_broken(n))
		fprintf(stderr, "peer %u: broken: %s\n", who, vp_net21_broken(n));
	free(b);
	return rc;
}

/* ---- setup ---- */

static struct vp_window21 *win_new(uint16_t num)
{
	struct vp_window21_config c = { .ring_num = num };
	struct vp_window21 *w = NULL;

	return vp_window21_new(&w, &c) == 0 ? w : NULL;
}

static struct vp_net21 *peer_new(struct vp_window21 *w, unsigned who, enum vp_net_mode mode)
{
	struct vp_net21_fds f;
	struct vp_net21 *n = NULL;

	if (vp_window21_peer_fds(w, who, &f) < 0)
		return NULL;
	if (vp_net21_new(&n, &f, mode) < 0)
		n = NULL;
	vp_net21_fds_close(&f);
	return n;
}

static pid_t spawn_peer(struct vp_window21 *w, unsigned who, uint32_t gen, uint32_t total,
			uint32_t rx_gen, uint32_t want, enum vp_net_mode mode)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct vp_net21 *n = peer_new(w, who, mode);
		int rc;

		alarm(240);
		if (!n)
			_exit(80);
		rc = run_peer(n, who, gen, total, rx_gen, want, 200);
		vp_net21_free(n);
		_exit(rc);
	}
	return pid;
}

static int exit_code(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	if (WIFSIGNALED(st))
		return 1000 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* ---- cases ---- */

TEST(window_attach_handshake_and_fds)
{
	int fds0 = tu_count_fds();
	struct vp_window21 *w = win_new(0);
	struct vp_net21 *a, *b;

	REQUIRE(w);
	a = peer_new(w, 0, VP_NET_POLL);
	REQUIRE(a);
	CHECK(!vp_net21_up(a));  /* alone: nobody acknowledged us */
	b = peer_new(w, 1, VP_NET_POLL);
	REQUIRE(b);
	/* b read a's epoch when it attached; a acknowledges b's on its next look. */
	CHECK(vp_net21_up(a));
	CHECK(vp_net21_up(b));
	CHECK_EQ(vp_net21_resyncs(a), 1);
	CHECK_EQ(vp_net21_resyncs(b), 0);
	/* The default 2048-byte slots, less the net header, both ways. */
	CHECK_EQ(vp_net21_frame_max(a, true), 2048 - VP21_HDR_LEN);
	CHECK_EQ(vp_net21_frame_max(b, false), 2048 - VP21_HDR_LEN);
	/* Notifications: a's attach and its acknowledgement kicked b. */
	{
		struct pollfd p = { .fd = vp_net21_rx_fd(b), .events = POLLIN };

		CHECK_EQ(poll(&p, 1, 0), 1);
	}
	vp_net21_free(a);
	vp_net21_free(b);
	vp_window21_free(w);
	CHECK_EQ(tu_count_fds(), fds0);
}

/* Two processes, a million frames each way, in irq mode (every sleep goes
 * through the eventfds and the event indexes) and in adaptive mode. */
static void million(enum vp_net_mode mode, uint32_t count)
{
	struct vp_window21 *w = win_new(256);
	int64_t t0 = now_ms();
	pid_t a, b;

	REQUIRE(w);
	a = spawn_peer(w, 0, 1, count, 1, count, mode);
	b = spawn_peer(w, 1, 1, count, 1, count, mode);
	CHECK_EQ(exit_code(a), 0);
	CHECK_EQ(exit_code(b), 0);
	printf("# %u frames each way in %lld ms\n", count, (long long)(now_ms() - t0));
	vp_window21_free(w);
}

TEST(million_each_way_two_processes_irq)
{
	million(VP_NET_IRQ, 1000000);
}

TEST(million_each_way_two_processes_adaptive)
{
	million(VP_NET_ADAPTIVE, 1000000);
}

/*
 * A peer killed in the middle of traffic and replaced by a new process (a
 * new epoch): the survivor resyncs and the new peer's first frame is its
 * sequence 0; the survivor's frames reach the new peer intact. Then the
 * same with the roles swapped (the survivor is peer 1).
 */
static void reconnect(unsigned survivor)
{
	struct vp_window21 *w = win_new(64);
	unsigned other = survivor ^ 1;
	struct vp_net21 *n;
	struct bufs *bf = bufs_new();
	uint32_t got = 0;
	pid_t pid;
	int64_t end;

	REQUIRE(w && bf);
	n = peer_new(w, survivor, VP_NET_IRQ);
	REQUIRE(n);
	/* Generation 1 sends for ever; we take 5000 and kill it. */
	pid = spawn_peer(w, other, 1, UINT32_MAX, 0, 0, VP_NET_IRQ);
	end = now_ms() + 20000;
	while (got < 5000 && now_ms() < end) {
		int r;

		for (unsigned i = 0; i < BURST; i++) {
			bf->rp[i].data = bf->rx[i];
			bf->rp[i].len = CAP;
		}
		r = vp_net21_rx_burst(n, bf->rp, BURST);
		REQUIRE(r >= 0);
		for (int i = 0; i < r; i++, got++)
			CHECK_EQ(frame_check(&bf->rp[i], other, 1, got), 0);
		if (!r)
			vp_net21_wait(n, true, false, 50);
	}
	CHECK(got >= 5000);
	kill(pid, SIGKILL);
	CHECK_EQ(exit_code(pid), 1000 + SIGKILL);
	/* Generation 2: 20000 frames to us, 20000 from us, all verified. Until
	 * it attaches we would send to the dead peer (frames a resync then
	 * forgets): start once the new epoch is acknowledged. */
	{
		uint64_t rs = vp_net21_resyncs(n);

		pid = spawn_peer(w, other, 2, 20000, 7, 20000, VP_NET_IRQ);
		end = now_ms() + 20000;
		while (vp_net21_resyncs(n) == rs && now_ms() < end)
			if (!vp_net21_up(n) || vp_net21_resyncs(n) == rs)
				vp_net21_wait(n, true, false, 50);
		CHECK(vp_net21_resyncs(n) > rs);
	}
	CHECK_EQ(run_peer(n, survivor, 7, 20000, 2, 20000, 60), 0);
	CHECK_EQ(exit_code(pid), 0);
	CHECK(vp_net21_resyncs(n) >= 2);
	CHECK(!vp_net21_broken(n));
	vp_net21_free(n);
	vp_window21_free(w);
	free(bf);
}

TEST(reconnect_peer1_killed_and_replaced)
{
	reconnect(0);
}

TEST(reconnect_peer0_killed_and_replaced)
{
	reconnect(1);
}

/* A reset (vp_net21_reset(): a new epoch in place) of either side. */
TEST(reset_either_side_in_one_process)
{
	struct vp_window21 *w = win_new(16);
	struct vp_net21 *a, *b;

	REQUIRE(w);
	a = peer_new(w, 0, VP_NET_POLL);
	b = peer_new(w, 1, VP_NET_POLL);
	REQUIRE(a && b);
	for (unsigned round = 0; round < 6; round++) {
		struct vp_net21 *x = round & 1 ? b : a, *y = round & 1 ? a : b;
		unsigned xw = round & 1, gen = round;
		struct bufs *bf = bufs_new();
		int r;

		REQUIRE(bf);
		/* Leave frames outstanding, then reset the receiver: they are
		 * forgotten, the next frame it gets is the sender's next. */
		for (unsigned i = 0; i < 10; i++)
			frame_fill(&bf->tp[i], xw, gen, i);
		CHECK_EQ(vp_net21_tx_burst(x, bf->tp, 10, 0), 10);
		vp_net21_reset(y);
		CHECK(!vp_net21_up(y));      /* x has not acknowledged yet */
		CHECK(vp_net21_up(x));       /* x acknowledges here */
		CHECK(vp_net21_up(y));
		CHECK_EQ(vp_net21_rx_pending(y), 0);
		for (unsigned i = 0; i < 16; i++)
			frame_fill(&bf->tp[i], xw, gen + 100, i);
		CHECK_EQ(vp_net21_tx_burst(x, bf->tp, 16, 0), 16);
		CHECK_EQ(vp_net21_tx_burst(x, bf->tp, 1, 0), 0);  /* ring full */
		for (unsigned i = 0; i < BURST; i++) {
			bf->rp[i].data = bf->rx[i];
			bf->rp[i].len = CAP;
		}
		r = vp_net21_rx_burst(y, bf->rp, BURST);
		CHECK_EQ(r, 16);
		for (int i = 0; i < r; i++)
			CHECK_EQ(frame_check(&bf->rp[i], xw, gen + 100, (uint32_t)i), 0);
		free(bf);
	}
	CHECK(!vp_net21_broken(a) && !vp_net21_broken(b));
	vp_net21_free(a);
	vp_net21_free(b);
	vp_window21_free(w);
}

/* Zero copy: frames built in our own slots, committed, received intact;
 * commits that break the rules send nothing. */
TEST(zero_copy_reserve_commit)
{
	struct vp_window21 *w = win_new(8);
	struct vp_net21 *a, *b;
	struct bufs *bf = bufs_new();
	struct vp_pkt p[8];

	REQUIRE(w && bf);
	a = peer_new(w, 0, VP_NET_POLL);
	b = peer_new(w, 1, VP_NET_POLL);
	REQUIRE(a && b && vp_net21_up(a));
	CHECK_EQ(vp_net21_tx_reserve(a, p, 8), 8);
	CHECK(p[0].len == CAP - HDR);
	for (unsigned i = 0; i < 5; i++)
		frame_fill(&p[i], 0, 3, i);
	CHECK_EQ(vp_net21_tx_commit(a, p, 9), -EINVAL);  /* over the reservation */
	CHECK_EQ(vp_net21_rx_pending(b), 0);
	CHECK_EQ(vp_net21_tx_reserve(a, p, 8), 8);
	for (unsigned i = 0; i < 5; i++)
		frame_fill(&p[i], 0, 3, i);
	p[4].len = CAP;                                   /* over capacity */
	CHECK_EQ(vp_net21_tx_commit(a, p, 5), -EINVAL);
	CHECK_EQ(vp_net21_rx_pending(b), 0);
	CHECK_EQ(vp_net21_tx_reserve(a, p, 8), 8);
	for (unsigned i = 0; i < 5; i++)
		frame_fill(&p[i], 0, 3, i);
	CHECK_EQ(vp_net21_tx_commit(a, p, 5), 5);
	CHECK_EQ(vp_net21_rx_pending(b), 5);
	CHECK_EQ(vp_net21_tx_pending(a), 5);
	for (unsigned i = 0; i < BURST; i++) {
		bf->rp[i].data = bf->rx[i];
		bf->rp[i].len = CAP;
	}
	bf->rp[2].len = 10;  /* too small: rx_into stops there */
	CHECK_EQ(vp_net21_rx_into(b, bf->rp, 5), 2);
	CHECK_EQ(vp_net21_rx_into(b, bf->rp + 2, 3), -EMSGSIZE);
	bf->rp[2].len = CAP;
	CHECK_EQ(vp_net21_rx_into(b, bf->rp + 2, 3), 3);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(frame_check(&bf->rp[i], 0, 3, i), 0);
	CHECK_EQ(vp_net21_tx_pending(a), 0);
	vp_net21_free(a);
	vp_net21_free(b);
	vp_window21_free(w);
	free(bf);
}

/* ---- a hostile peer 1, played by hand in its own (writable) section ---- */

struct hostile {
	struct vp_window21 *w;
	struct vp_net21 *good;         /* peer 0 */
	struct vp_net21_fds f;         /* peer 1's fds */
	uint8_t *sec;                  /* peer 1's section, read-write */
	const uint8_t *other;          /* peer 0's, read-only */
	size_t size, osize;
	struct vp21_ctrl *c;
	struct vp21_desc *ring;
	struct vp21_section geo;
};

static bool hostile_new(struct hostile *h, uint16_t num)
{
	struct vp21_header hd;

	memset(h, 0, sizeof(*h));
	h->w = win_new(num);
	if (!h->w || vp_window21_peer_fds(h->w, 1, &h->f) < 0)
		return false;
	if (pread(h->f.header_fd, &hd, sizeof(hd), 0) != sizeof(hd))
		return false;
	h->geo = hd.sect[1];
	h->size = hd.sect[1].size;
	h->osize = hd.sect[0].size;
	h->sec = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_SHARED, h->f.my_fd, 0);
	h->other = mmap(NULL, h->osize, PROT_READ, MAP_SHARED, h->f.peer_fd, 0);
	if (h->sec == MAP_FAILED || h->other == MAP_FAILED)
		return false;
	h->c = (struct vp21_ctrl *)(void *)h->sec;
	h->ring = (struct vp21_desc *)(void *)(h->sec + h->geo.ring_off);
	h->good = peer_new(h->w, 0, VP_NET_IRQ);
	if (!h->good)
		return false;
	/* Attach as the protocol says, acknowledging peer 0's epoch. */
	h->c->peer_epoch = ((const struct vp21_ctrl *)(const void *)h->other)->epoch;
	h->c->epoch = 1;
	h->c->state = VP21_STATE_ATTACHED;
	return vp_net21_up(h->good);
}

static void hostile_free(struct hostile *h)
{
	vp_net21_free(h->good);
	if (h->sec && h->sec != MAP_FAILED)
		munmap(h->sec, h->size);
	if (h->other && h->other != MAP_FAILED)
		munmap((void *)h->other, h->osize);
	vp_net21_fds_close(&h->f);
	vp_window21_free(h->w);
}

static int good_rx(struct hostile *h, char *reason, size_t rlen)
{
	static uint8_t buf[4][CAP];
	struct vp_pkt p[4];
	int r;

	for (unsigned i = 0; i < 4; i++)
		p[i] = (struct vp_pkt){ .data = buf[i], .len = CAP };
	r = vp_net21_rx_burst(h->good, p, 4);
	snprintf(reason, rlen, "%s", vp_net21_broken(h->good) ? vp_net21_broken(h->good) : "");
	return r;
}

/* One frame the honest way, then one rule broken: -EIO with the reason,
 * and the good peer still answers (-EIO) without touching anything. */
static void hostile_case(void (*spoil)(struct hostile *h), const char *why)
{
	int fds0 = tu_count_fds();
	struct hostile h;
	char reason[200];

	REQUIRE(hostile_new(&h, 16));
	h.ring[0] = (struct vp21_desc){ h.geo.buf_off, HDR + 100 };
	__atomic_store_n(&h.c->avail, 1, __ATOMIC_RELEASE);
	CHECK_EQ(good_rx(&h, reason, sizeof(reason)), 1);
	spoil(&h);
	CHECK_EQ(good_rx(&h, reason, sizeof(reason)), -EIO);
	if (!strstr(reason, why)) {
		fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", reason, why);
		CHECK(0);
	}
	CHECK_EQ(good_rx(&h, reason, sizeof(reason)), -EIO);
	{
		struct vp_pkt p = { .data = reason, .len = 10 };

		CHECK_EQ(vp_net21_tx_burst(h.good, &p, 1, 0), -EIO);
		CHECK_EQ(vp_net21_arm(h.good, true, true), -EIO);
		CHECK_EQ(vp_net21_wait(h.good, true, true, 10), -EIO);
	}
	/* A reset starts over; a well-behaved peer gets the link back. */
	vp_net21_reset(h.good);
	h.c->avail = 0;
	h.c->consumed = 0;
	h.c->epoch++;
	h.c->peer_epoch = ((const struct vp21_ctrl *)(const void *)h.other)->epoch;
	CHECK(vp_net21_up(h.good));
	CHECK(!vp_net21_broken(h.good));
	h.ring[0] = (struct vp21_desc){ h.geo.buf_off, HDR + 60 };
	__atomic_store_n(&h.c->avail, 1, __ATOMIC_RELEASE);
	CHECK_EQ(good_rx(&h, reason, sizeof(reason)), 1);
	hostile_free(&h);
	CHECK_EQ(tu_count_fds(), fds0);
}

static void avail_ahead(struct hostile *h)
{
	h->c->avail = 1 + 17;  /* 17 ahead of a ring of 16 */
}

static void avail_behind(struct hostile *h)
{
	h->c->avail = 0;  /* behind what we consumed: 65535 ahead */
}

static void off_in_ctrl(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ 0, HDR + 60 };  /* its control block */
	h->c->avail = 2;
}

static void off_past_end(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ (uint32_t)h->size, HDR + 60 };
	h->c->avail = 2;
}

static void off_huge(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ 0xfffffff0u, HDR + 60 };
	h->c->avail = 2;
}

static void len_past_end(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ (uint32_t)h->size - 64, HDR + 100 };
	h->c->avail = 2;
}

static void len_over_slot(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ h->geo.buf_off, h->geo.slot_size + 1 };
	h->c->avail = 2;
}

static void len_huge(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ h->geo.buf_off, 0xffffffffu };
	h->c->avail = 2;
}

static void len_short(struct hostile *h)
{
	h->ring[1] = (struct vp21_desc){ h->geo.buf_off, HDR - 1 };
	h->c->avail = 2;
}

TEST(hostile_avail_runs_ahead)
{
	hostile_case(avail_ahead, "avail index ran ahead");
}

TEST(hostile_avail_goes_back)
{
	hostile_case(avail_behind, "avail index ran ahead");
}

TEST(hostile_offset_in_control_block)
{
	hostile_case(off_in_ctrl, "outside the buffers");
}

TEST(hostile_offset_past_section)
{
	hostile_case(off_past_end, "outside the buffers");
}

TEST(hostile_offset_huge)
{
	hostile_case(off_huge, "outside the buffers");
}

TEST(hostile_length_past_section_end)
{
	hostile_case(len_past_end, "length");
}

TEST(hostile_length_over_slot)
{
	hostile_case(len_over_slot, "length");
}

TEST(hostile_length_huge)
{
	hostile_case(len_huge, "length");
}

TEST(hostile_length_shorter_than_header)
{
	hostile_case(len_short, "length");
}

TEST(hostile_consumed_ahead_of_published)
{
	struct hostile h;
	struct bufs *bf = bufs_new();

	REQUIRE(bf && hostile_new(&h, 16));
	for (unsigned i = 0; i < 3; i++)
		frame_fill(&bf->tp[i], 0, 1, i);
	CHECK_EQ(vp_net21_tx_burst(h.good, bf->tp, 3, 0), 3);
	h.c->consumed = 3;                                 /* honest */
	CHECK_EQ(vp_net21_tx_burst(h.good, bf->tp, 1, 0), 1);
	h.c->consumed = 9;                                 /* only 4 published */
	CHECK_EQ(vp_net21_tx_burst(h.good, bf->tp, 1, 0), -EIO);
	CHECK(vp_net21_broken(h.good) &&
	      strstr(vp_net21_broken(h.good), "consumed index ran ahead"));
	hostile_free(&h);
	free(bf);
}

/* A restarting peer is no violation: its indexes go back to 0 with a new
 * epoch, we resync and never break. Many times over. */
TEST(hostile_epoch_churn_resyncs_never_breaks)
{
	struct hostile h;
	char reason[200];

	REQUIRE(hostile_new(&h, 16));
	for (unsigned i = 0; i < 1000; i++) {
		h.ring[i % 16] = (struct vp21_desc){ h.geo.buf_off, HDR + 60 };
		__atomic_store_n(&h.c->avail, h.c->avail + 1, __ATOMIC_RELEASE);
		CHECK(good_rx(&h, reason, sizeof(reason)) >= 0);
		/* restart: DETACHED, indexes 0, new epoch, ATTACHED */
		h.c->state = VP21_STATE_DETACHED;
		h.c->avail = 0;
		h.c->consumed = 0;
		CHECK(good_rx(&h, reason, sizeof(reason)) >= 0);
		h.c->epoch++;
		h.c->peer_epoch = ((const struct vp21_ctrl *)(const void *)h.other)->epoch;
		h.c->state = VP21_STATE_ATTACHED;
		CHECK(good_rx(&h, reason, sizeof(reason)) >= 0);
	}
	CHECK(!vp_net21_broken(h.good));
	CHECK(vp_net21_resyncs(h.good) >= 1000);
	hostile_free(&h);
}

/* Random garbage in every field the good peer reads, racing it from
 * another process: it returns a count or -EIO (then resets), never
 * crashes, never reads outside the other's section (ASan build too). */
TEST(hostile_random_garbage_racing)
{
	struct hostile h;
	char reason[200];
	unsigned broke = 0, moved = 0;
	pid_t pid;

	REQUIRE(hostile_new(&h, 16));
	pid = fork();
	if (pid == 0) {
		/* volatile: every store reaches the section, every load is fresh */
		volatile struct vp21_ctrl *c = h.c;
		volatile const struct vp21_ctrl *o = (const struct vp21_ctrl *)(const void *)h.other;
		volatile struct vp21_desc *ring = h.ring;
		uint32_t x = 12345;

		alarm(60);
		for (uint32_t k = 0;; k++) {
			x = mix(k) ^ x;
			if (!(k & 63)) {
				/* Now and then behave for a moment: a valid frame
				 * proves the link still works between the breaks. */
				uint16_t at = o->consumed;

				c->peer_epoch = o->epoch;
				ring[at % 16].off = h.geo.buf_off;
				ring[at % 16].len = HDR + 60;
				c->avail = (uint16_t)(at + 1);
				usleep(200);
				continue;
			}
			switch (x % 8) {
			case 0: c->avail = (uint16_t)(x >> 8); break;
			case 1: c->consumed = (uint16_t)(x >> 8); break;
			case 2: ring[(x >> 4) % 16].off = mix(x); break;
			case 3: ring[(x >> 4) % 16].len = mix(x) % 4096; break;
			case 4: c->avail = (uint16_t)(c->avail + 1); break;
			case 5: c->peer_epoch = o->epoch; break;
			case 6: {  /* now and then a valid frame: the link must still work */
				uint16_t at = o->consumed;

				ring[at % 16].off = h.geo.buf_off;
				ring[at % 16].len = HDR + 60;
				c->avail = (uint16_t)(at + 1);
				break;
			}
			default:
				ring[(x >> 4) % 16].off = h.geo.buf_off + (x >> 12) % 1024;
				ring[(x >> 4) % 16].len = x % 3000;
				break;
			}
		}
	}
	REQUIRE(pid > 0);
	/* Until both outcomes were seen often, or 5 s (a busy machine may
	 * give the child little time). */
	for (int64_t end = now_ms() + 5000; now_ms() < end && (broke < 100 || moved < 100);) {
		struct vp_pkt p = { .data = reason, .len = 60 };
		int r = good_rx(&h, reason, sizeof(reason));

		if (r > 0)
			moved += (unsigned)r;
		else if (r == 0)
			sched_yield();
		if (r >= 0)
			r = vp_net21_tx_burst(h.good, &p, 1, VP_NET_TX_DROP);
		if (r < 0) {
			CHECK_EQ(r, -EIO);
			CHECK(vp_net21_broken(h.good) != NULL);
			broke++;
			vp_net21_reset(h.good);
		}
	}
	kill(pid, SIGKILL);
	CHECK_EQ(exit_code(pid), 1000 + SIGKILL);
	printf("# garbage: %u breaks, %u frames taken\n", broke, moved);
	CHECK(broke > 0);
	CHECK(moved > 0);  /* the garbage was not all refused at the door */
	hostile_free(&h);
}

/* ---- a window mapped by the caller (a QEMU guest's BARs: vp_net21_new_mapped) ---- */

struct mapped {
	struct vp_net21_fds f;
	void *hdr, *my, *other;
	uint64_t size;
	unsigned notified[2];  /* [tx] */
};

/* A doorbell stand-in: what QEMU does with a guest's doorbell write. */
static void mapped_notify(void *opaque, bool tx)
{
	struct mapped *m = opaque;
	uint64_t one = 1;

	m->notified[tx]++;
	(void)!write(tx ? m->f.peer_tx_fd : m->f.peer_rx_fd, &one, sizeof(one));
}

/* Peer who's half mapped as a guest would: its own section read-write, the
 * header and the other's read-only. */
static bool mapped_new(struct mapped *m, struct vp_window21 *w, unsigned who)
{
	struct stat st;

	memset(m, 0, sizeof(*m));
	if (vp_window21_peer_fds(w, who, &m->f) < 0 || fstat(m->f.my_fd, &st) < 0)
		return false;
	m->size = (uint64_t)st.st_size;
	m->hdr = mmap(NULL, VP21_HEADER_SIZE, PROT_READ, MAP_SHARED, m->f.header_fd, 0);
	m->my = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, m->f.my_fd, 0);
	m->other = mmap(NULL, m->size, PROT_READ, MAP_SHARED, m->f.peer_fd, 0);
	return m->hdr != MAP_FAILED && m->my != MAP_FAILED && m->other != MAP_FAILED;
}

static struct vp_net21_map mapped_map(struct mapped *m)
{
	return (struct vp_net21_map){
		.peer = m->f.peer, .header = m->hdr, .header_len = VP21_HEADER_SIZE,
		.my = m->my, .my_len = m->size, .other = m->other, .other_len = m->size,
		.notify = mapped_notify, .opaque = m,
	};
}

static void mapped_free(struct mapped *m)
{
	munmap(m->hdr, VP21_HEADER_SIZE);
	munmap(m->my, m->size);
	munmap(m->other, m->size);
	vp_net21_fds_close(&m->f);
}

/*
 * A guest-like peer (doorbells) against an fd peer sleeping on its eventfds
 * (irq): frames verified each way, in two processes. The mapped peer polls,
 * or with wake (irq) sleeps on eventfds the fd peer's signals write, as MSI-X
 * through VFIO would be in a guest.
 */
#define WAKE_DELAY_MS 300

static void mapped_against_fd_peer(bool wake, unsigned frames)
{
	struct vp_window21 *w = win_new(256);
	pid_t a, b;

	REQUIRE(w);
	a = fork();
	if (a == 0) {
		struct mapped m;
		struct vp_net21_map mm;
		struct vp_net21 *n;
		int rc;

		alarm(240);
		if (!mapped_new(&m, w, 0))
			_exit(80);
		mm = mapped_map(&m);
		mm.wake_fds = wake;
		mm.rx_fd = wake ? dup(m.f.rx_fd) : -1;
		mm.tx_fd = wake ? dup(m.f.tx_fd) : -1;
		if (vp_net21_new_mapped(&n, &mm, wake ? VP_NET_IRQ : VP_NET_POLL) < 0)
			_exit(81);
		if (wake && (vp_net21_rx_fd(n) != mm.rx_fd || vp_net21_tx_fd(n) != mm.tx_fd))
			_exit(82);
		rc = run_peer(n, 0, 1, frames, 1, frames, 200);
		if (!rc && wake) {
			/*
			 * Whether the traffic above ever slept depends on the
			 * scheduler (a peer that always finds work never does),
			 * so the wake fd is proved on its own: the fd peer sends
			 * one frame WAKE_DELAY_MS after its traffic. Caught
			 * asleep, we must be woken by it (counted), long before
			 * the timeout; a frame already there proves nothing.
			 */
			uint64_t w0 = vp_net21_stats(n)->wakeups;
			bool idle = vp_net21_rx_pending(n) == 0;
			int64_t t0 = now_ms();
			int r = vp_net21_wait(n, true, false, 20000);

			if (r <= 0)
				rc = 83;  /* the frame never woke us: fds not used */
			else if (idle && now_ms() - t0 >= WAKE_DELAY_MS / 2 &&
				 vp_net21_stats(n)->wakeups == w0)
				rc = 86;  /* slept, returned, but not woken by the fd */
			else
				rc = run_peer(n, 0, 2, 1, 2, 1, 20);
		}
		vp_net21_free(n);
		if (!rc && wake && fcntl(mm.rx_fd, F_GETFD) != -1)
			rc = 84;  /* taken over: closed by free */
		/* The mappings are still ours after free (this read would fault
		 * otherwise), and the fd peer slept: it was woken by our doorbells
		 * of both kinds. */
		(void)((const volatile struct vp21_ctrl *)m.other)->state;
		if (!rc && (!m.notified[0] || !m.notified[1]))
			rc = 85;
		mapped_free(&m);
		_exit(rc);
	}
	if (!wake) {
		b = spawn_peer(w, 1, 1, frames, 1, frames, VP_NET_IRQ);
	} else {
		b = fork();
		if (b == 0) {
			struct vp_net21 *n = peer_new(w, 1, VP_NET_IRQ);
			int rc;

			alarm(240);
			if (!n)
				_exit(80);
			rc = run_peer(n, 1, 1, frames, 1, frames, 200);
			if (!rc) {
				usleep(WAKE_DELAY_MS * 1000);
				rc = run_peer(n, 1, 2, 1, 2, 1, 20);  /* the one that wakes */
			}
			vp_net21_free(n);
			_exit(rc);
		}
	}
	CHECK_EQ(exit_code(a), 0);
	CHECK_EQ(exit_code(b), 0);
	vp_window21_free(w);
}

TEST(mapped_peer_against_fd_peer_two_processes)
{
	mapped_against_fd_peer(false, 200000);
}

TEST(mapped_peer_irq_sleeps_on_wake_fds)
{
	mapped_against_fd_peer(true, 100000);
}

TEST(mapped_refusals)
{
	struct vp_window21 *w = win_new(0);
	struct mapped m;
	struct vp_net21_map mm;
	struct vp_net21 *n = NULL;
	uint8_t bad[VP21_HEADER_SIZE];

	REQUIRE(w);
	REQUIRE(mapped_new(&m, w, 1));
	mm = mapped_map(&m);
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_IRQ), -ENOTSUP);  /* nothing to sleep on */
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_ADAPTIVE), -ENOTSUP);
	/* wake fds given and refused: closed all the same (taken over) */
	mm.wake_fds = true;
	mm.rx_fd = eventfd(0, EFD_CLOEXEC);
	mm.tx_fd = eventfd(0, EFD_CLOEXEC);
	mm.peer = 2;
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_IRQ), -EINVAL);
	CHECK(fcntl(mm.rx_fd, F_GETFD) == -1 && fcntl(mm.tx_fd, F_GETFD) == -1);
	mm = mapped_map(&m);
	mm.notify = NULL;
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), -EINVAL);
	mm = mapped_map(&m);
	mm.peer = 2;
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), -EINVAL);
	mm = mapped_map(&m);
	mm.header_len = VP21_HEADER_SIZE - 1;
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), -EINVAL);
	mm = mapped_map(&m);
	mm.other_len = m.size - VP21_PAGE;  /* a BAR smaller than the section */
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), -EINVAL);
	mm = mapped_map(&m);
	mm.my_len = m.size / 2;
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), -EINVAL);
	memcpy(bad, m.hdr, sizeof(bad));
	bad[0] ^= 1;  /* the magic */
	mm = mapped_map(&m);
	mm.header = bad;
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), -EINVAL);
	CHECK(n == NULL);
	mm = mapped_map(&m);
	CHECK_EQ(vp_net21_new_mapped(&n, &mm, VP_NET_POLL), 0);
	REQUIRE(n);
	CHECK_EQ(((const struct vp21_ctrl *)m.my)->state, VP21_STATE_ATTACHED);
	vp_net21_free(n);
	CHECK_EQ(((const struct vp21_ctrl *)m.my)->state, VP21_STATE_DETACHED);
	CHECK(m.notified[0] >= 2 && m.notified[1] >= 2);  /* attach and detach rang both */
	mapped_free(&m);
	vp_window21_free(w);
}

/*
 * vp_guest21 in a fake sysfs tree laid out as vhost-pcid gives a QEMU guest
 * its half (docs/device.md 9): slot 0000:00:10 with .0 (resource0 with
 * IVPosition 0, resource2 our section), .1 the header, .2 the other's
 * section; a decoy .1 elsewhere that is no 2.1 header. Found, attached,
 * frames both ways against an fd peer, the other rung through the doorbell.
 */
static bool fake_link(const char *dir, const char *name, int fd)
{
	char link[64], p[512];

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)getpid(), fd);
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return symlink(link, p) == 0;
}

static bool fake_slot(const char *root, const char *slot, uint16_t ivpos,
		      const struct vp_net21_fds *f, volatile uint8_t **regs)
{
	char d[128];

	snprintf(d, sizeof(d), "%s/%s.0", root, slot);
	*regs = fp_memory_function(d, ivpos, f->my_fd);
	snprintf(d, sizeof(d), "%s/%s.1", root, slot);
	if (!*regs || fp_function(d) < 0 || !fake_link(d, "resource2", f->header_fd))
		return false;
	snprintf(d, sizeof(d), "%s/%s.2", root, slot);
	return fp_function(d) == 0 && fake_link(d, "resource2", f->peer_fd);
}

TEST(guest21_fake_slot_found_attached_frames_both_ways)
{
	char root[] = "/tmp/vp-guest21-XXXXXX", d[128];
	int fds0 = tu_count_fds();
	struct vp_window21 *w = win_new(0);
	struct vp_net21_fds f0, f1;
	struct vp_guest21 *g = NULL;
	struct vp_net21 *a, *b;
	volatile uint8_t *regs;
	struct bufs *bb = bufs_new();
	uint32_t sent[2] = { 0, 0 }, got[2] = { 0, 0 };

	REQUIRE(w && bb && mkdtemp(root));
	REQUIRE(vp_window21_peer_fds(w, 0, &f0) == 0 && vp_window21_peer_fds(w, 1, &f1) == 0);
	CHECK_EQ(vp_guest21_open(&g, root, VP_NET_POLL), -ENODEV);  /* nothing there yet */
	/* A decoy first in sort order: an 8 KiB .1 with no header in it. */
	snprintf(d, sizeof(d), "%s/0000:00:03.1", root);
	REQUIRE(fp_info_function(d));
	REQUIRE(fake_slot(root, "0000:00:10", 0, &f0, &regs));
	/* No VFIO behind .0 (no driver link): irq refused, adaptive polls. */
	CHECK_EQ(vp_guest21_open(&g, root, VP_NET_IRQ), -ENOTSUP);
	REQUIRE(vp_guest21_open(&g, root, VP_NET_ADAPTIVE) == 0);
	CHECK_EQ(vp_net21_rx_fd(vp_guest21_net(g)), -1);  /* nothing to sleep on: polls */
	vp_guest21_close(g);
	REQUIRE(vp_guest21_open(&g, root, VP_NET_POLL) == 0);
	CHECK(!strcmp(vp_guest21_name(g), "0000:00:10"));
	CHECK(!vp_guest21_revoked(g));
	/* The attach rang the other peer (id 1) on both vectors, TX last. */
	CHECK_EQ(*fp_u32(regs, VP_IVSHMEM_DOORBELL), (1u << 16) | 1u);
	a = vp_guest21_net(g);
	b = peer_new(w, 1, VP_NET_POLL);
	REQUIRE(a && b);
	CHECK(vp_net21_up(a) && vp_net21_up(b));
	for (int round = 0; round < 2000 && (got[0] < 5000 || got[1] < 5000); round++) {
		for (unsigned who = 0; who < 2; who++) {
			struct vp_net21 *tx = who ? b : a, *rx = who ? a : b;
			int r;

			for (unsigned i = 0; i < BURST; i++)
				frame_fill(&bb->tp[i], who, 1, sent[who] + i);
			r = vp_net21_tx_burst(tx, bb->tp, sent[who] < 5000 ? BURST : 0, 0);
			CHECK(r >= 0);
			sent[who] += r > 0 ? (uint32_t)r : 0;
			for (unsigned i = 0; i < BURST; i++) {
				bb->rp[i].data = bb->rx[i];
				bb->rp[i].len = CAP;
			}
			r = vp_net21_rx_burst(rx, bb->rp, BURST);
			CHECK(r >= 0);
			for (int i = 0; i < r; i++, got[who]++)
				CHECK_EQ(frame_check(&bb->rp[i], who, 1, got[who]), 0);
		}
	}
	CHECK(got[0] >= 5000 && got[1] >= 5000);
	vp_net21_free(b);
	vp_guest21_close(g);
	/* An IVPosition that is no peer id is refused. */
	{
		char root2[] = "/tmp/vp-guest21-XXXXXX";

		REQUIRE(mkdtemp(root2));
		REQUIRE(fake_slot(root2, "0000:00:10", 5, &f0, &regs));
		CHECK_EQ(vp_guest21_open(&g, root2, VP_NET_POLL), -EINVAL);
		snprintf(d, sizeof(d), "rm -rf %s", root2);
		CHECK_EQ(system(d), 0);
	}
	vp_net21_fds_close(&f0);
	vp_net21_fds_close(&f1);
	vp_window21_free(w);
	free(bb);
	snprintf(d, sizeof(d), "rm -rf %s", root);
	CHECK_EQ(system(d), 0);
	CHECK_EQ(tu_count_fds(), fds0);
}

/* ---- permissions, proved ---- */

TEST(permissions_read_only_fds_refuse_write_mappings)
{
	struct vp_window21 *w = win_new(16);
	struct vp_net21_fds f;
	void *m;

	REQUIRE(w && vp_window21_peer_fds(w, 0, &f) == 0);
	CHECK_EQ(fcntl(f.peer_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	CHECK_EQ(fcntl(f.header_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	CHECK_EQ(fcntl(f.my_fd, F_GETFL) & O_ACCMODE, O_RDWR);
	/* The other's section: no writable shared mapping, and mprotect
	 * cannot make a read-only one writable. */
	errno = 0;
	CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f.peer_fd, 0) == MAP_FAILED &&
	      errno == EACCES);
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, f.peer_fd, 0);
	REQUIRE(m != MAP_FAILED);
	errno = 0;
	CHECK(mprotect(m, 4096, PROT_READ | PROT_WRITE) == -1 && errno == EACCES);
	munmap(m, 4096);
	/* The header likewise, and its memfd is sealed against writes. */
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, f.header_fd, 0);
	REQUIRE(m != MAP_FAILED);
	errno = 0;
	CHECK(mprotect(m, 4096, PROT_READ | PROT_WRITE) == -1 && errno == EACCES);
	munmap(m, 4096);
	CHECK(fcntl(f.header_fd, F_GET_SEALS) & F_SEAL_WRITE);
	/* Our own section is ours. */
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f.my_fd, 0);
	CHECK(m != MAP_FAILED);
	if (m != MAP_FAILED)
		munmap(m, 4096);
	vp_net21_fds_close(&f);
	vp_window21_free(w);
}

/* The library's own mapping of the other's section (found in
 * /proc/self/maps by its memfd name): r--s, and a write into it kills the
 * writer with SIGSEGV. */
static uintptr_t find_mapping(const char *name, char perms[5])
{
	FILE *fp = fopen("/proc/self/maps", "r");
	char line[512];
	uintptr_t lo = 0, hi;

	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp))
		if (strstr(line, name) &&
		    sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) == 3)
			break;
		else
			lo = 0;
	fclose(fp);
	return lo;
}

/* The mapping named name has a PROT_NONE page right before and right after
 * it (the library's guards: a missed bound faults instead of reading a
 * neighbour). */
static bool guarded(const char *name)
{
	FILE *fp = fopen("/proc/self/maps", "r");
	char line[512], prev_perms[5] = "", perms[5];
	uintptr_t lo, hi, prev_hi = 0, sec_hi = 0;
	bool before = false, after = false, in = false;

	if (!fp)
		return false;
	while (fgets(line, sizeof(line), fp)) {
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) != 3)
			continue;
		if (in) {
			after = lo == sec_hi && !strcmp(perms, "---p");
			break;
		}
		if (strstr(line, name)) {
			before = prev_hi == lo && !strcmp(prev_perms, "---p");
			sec_hi = hi;
			in = true;
		}
		prev_hi = hi;
		memcpy(prev_perms, perms, sizeof(perms));
	}
	fclose(fp);
	return before && after;
}

TEST(sections_are_mapped_between_guard_pages)
{
	struct vp_window21 *w = win_new(16);
	struct vp_net21 *n;

	REQUIRE(w);
	n = peer_new(w, 0, VP_NET_POLL);
	REQUIRE(n);
	CHECK(guarded("vp21-section0"));
	CHECK(guarded("vp21-section1"));
	vp_net21_free(n);
	vp_window21_free(w);
}

TEST(permissions_write_into_other_section_dies_of_sigsegv)
{
	struct vp_window21 *w = win_new(16);
	pid_t pid;

	REQUIRE(w);
	pid = fork();
	if (pid == 0) {
		struct vp_net21 *n = peer_new(w, 0, VP_NET_POLL);
		char perms[5] = "";
		uintptr_t a;

		if (!n)
			_exit(80);
		a = find_mapping("vp21-section1", perms);
		if (!a || strcmp(perms, "r--s"))
			_exit(81);
		if (mprotect((void *)a, 4096, PROT_READ | PROT_WRITE) != -1 || errno != EACCES)
			_exit(82);
		/* Our own section is writable, as it must be. */
		a = find_mapping("vp21-section0", perms);
		if (!a || strcmp(perms, "rw-s"))
			_exit(83);
		a = find_mapping("vp21-section1", perms);
		/* Die of the signal itself, not of a sanitizer's report of it. */
		{
			struct sigaction sa = { .sa_handler = SIG_DFL };

			sigaction(SIGSEGV, &sa, NULL);
		}
		*(volatile uint32_t *)(a + 64) = 0xdead;  /* the other's avail */
		_exit(84);                                 /* not reached */
	}
	REQUIRE(pid > 0);
	CHECK_EQ(exit_code(pid), 1000 + SIGSEGV);
	vp_window21_free(w);
}

/* ---- refusals at attach ---- */

static int attach_with(struct vp_net21_fds *f)
{
	struct vp_net21 *n = NULL;
	int r = vp_net21_new(&n, f, VP_NET_POLL);

	vp_net21_free(n);
	return r;
}

static int memfd_with(const void *data, size_t len, size_t size, bool seal, bool ro)
{
	int fd = tu_memfd("test21", size, seal), r;
	char path[64];

	if (fd < 0)
		return -1;
	if (data && pwrite(fd, data, len, 0) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	if (!ro)
		return fd;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = open(path, O_RDONLY | O_CLOEXEC);
	close(fd);
	return r;
}

TEST(refusals_at_attach_close_nothing_of_ours)
{
	struct vp_window21 *w = win_new(16);
	struct vp_net21_fds f;
	struct vp21_header good, bad;
	int fds0, keep, pfd[2];

	REQUIRE(w && vp_window21_peer_fds(w, 0, &f) == 0);
	REQUIRE(pread(f.header_fd, &good, sizeof(good), 0) == sizeof(good));
	fds0 = tu_count_fds();
	/* a writable fd for the other's section (its right size) */
	keep = f.peer_fd;
	{
		struct vp_net21_fds g;

		REQUIRE(vp_window21_peer_fds(w, 1, &g) == 0);
		f.peer_fd = fcntl(g.my_fd, F_DUPFD_CLOEXEC, 0);
		vp_net21_fds_close(&g);
	}
	CHECK_EQ(attach_with(&f), -EINVAL);
	close(f.peer_fd);
	/* an unsealed section of the right size */
	f.peer_fd = memfd_with(NULL, 0, good.sect[1].size, false, true);
	CHECK_EQ(attach_with(&f), -EINVAL);
	close(f.peer_fd);
	/* a sealed one of the wrong size */
	f.peer_fd = memfd_with(NULL, 0, good.sect[1].size - 4096, true, true);
	CHECK_EQ(attach_with(&f), -EINVAL);
	close(f.peer_fd);
	f.peer_fd = keep;
	/* a pipe for an eventfd */
	REQUIRE(pipe(pfd) == 0);
	keep = f.rx_fd;
	f.rx_fd = pfd[0];
	CHECK_EQ(attach_with(&f), -EINVAL);
	f.rx_fd = keep;
	close(pfd[0]);
	close(pfd[1]);
	/* headers that break a rule each */
	keep = f.header_fd;
	for (unsigned k = 0; k < 12; k++) {
		bad = good;
		switch (k) {
		case 0: bad.magic ^= 1; break;
		case 1: bad.version = 2; break;
		case 2: bad.num_peers = 3; break;
		case 3: bad.sect[1].owner = 0; break;
		case 4: bad.sect[1].ring_num = 24; break;
		case 5: bad.sect[1].ring_num = 0; break;
		case 6: bad.sect[1].slot_size = 16; break;
		case 7: bad.sect[1].offset = bad.sect[0].offset; break;   /* overlap */
		case 8: bad.sect[1].size = bad.window_size; break;        /* past the window */
		case 9: bad.sect[1].ring_off = 8; break;                  /* over the ctrl block */
		case 10: bad.sect[1].buf_off = bad.sect[1].ring_off + 8; break; /* over the ring */
		default: bad.sect[1].slot_size = 65536; break;            /* buffers past the end */
		}
		f.header_fd = memfd_with(&bad, sizeof(bad), VP21_HEADER_SIZE, true, true);
		REQUIRE(f.header_fd >= 0);
		if (attach_with(&f) != -EINVAL) {
			fprintf(stderr, "  header case %u accepted\n", k);
			CHECK(0);
		}
		close(f.header_fd);
	}
	/* the good header, as a control: accepted */
	f.header_fd = memfd_with(&good, sizeof(good), VP21_HEADER_SIZE, true, true);
	CHECK_EQ(attach_with(&f), 0);
	close(f.header_fd);
	f.header_fd = keep;
	CHECK_EQ(tu_count_fds(), fds0);
	vp_net21_fds_close(&f);
	vp_window21_free(w);
}

/* ---- the pair broker ---- */

static char sock_dir[64];

static const char *broker_path(void)
{
	static char path[128];

	if (!sock_dir[0]) {
		strcpy(sock_dir, "/tmp/vp-net21-test-XXXXXX");
		if (!mkdtemp(sock_dir))
			sock_dir[0] = 0;
	}
	snprintf(path, sizeof(path), "%s/pair.sock", sock_dir);
	return path;
}

/* A child that joins, and runs `count` frames each way (who from its id). */
static pid_t spawn_joiner(const char *path, uint32_t count)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct vp_net21_fds f;
		struct vp_net21 *n = NULL;
		int s, rc;

		alarm(120);
		if (vp_pair21_join(path, 5000, &f, &s) < 0)
			_exit(70);
		if (vp_net21_new(&n, &f, VP_NET_IRQ) < 0)
			_exit(71);
		vp_net21_fds_close(&f);
		rc = run_peer(n, f.peer, 1, count, 1, count, 100);
		vp_net21_free(n);
		close(s);
		_exit(rc);
	}
	return pid;
}

/* Serve the broker until the children are gone (or 60 s). */
static void serve_until_exit(struct vp_pair21 *b, pid_t *pids, int *codes, unsigned n)
{
	int64_t end = now_ms() + 60000;
	unsigned left = n;

	for (unsigned i = 0; i < n; i++)
		codes[i] = -1;
	while (left && now_ms() < end) {
		struct pollfd p = { .fd = vp_pair21_fd(b), .events = POLLIN };

		poll(&p, 1, 10);
		CHECK_EQ(vp_pair21_control(b), 0);
		for (unsigned i = 0; i < n; i++) {
			int st;

			if (codes[i] < 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				codes[i] = WIFSIGNALED(st) ? 1000 + WTERMSIG(st) : WEXITSTATUS(st);
				left--;
			}
		}
	}
}

TEST(pair_broker_two_peers_traffic_third_refused_fds)
{
	int fds0 = tu_count_fds();
	const char *path = broker_path();
	struct vp_pair21 *b;
	pid_t pid[2];
	int code[2];
	uint64_t joins, refused;

	REQUIRE(vp_pair21_new(&b, path, NULL) == 0);
	pid[0] = spawn_joiner(path, 100000);
	pid[1] = spawn_joiner(path, 100000);
	/* Once both joined, a third is refused with the reason. */
	{
		int64_t end = now_ms() + 10000;

		while (!(vp_pair21_joined(b, 0) && vp_pair21_joined(b, 1)) && now_ms() < end) {
			struct pollfd p = { .fd = vp_pair21_fd(b), .events = POLLIN };

			poll(&p, 1, 10);
			vp_pair21_control(b);
		}
		CHECK(vp_pair21_joined(b, 0) && vp_pair21_joined(b, 1));
	}
	{
		pid_t third = fork();

		if (third == 0) {
			struct vp_net21_fds f;
			int s;

			alarm(20);
			_exit(vp_pair21_join(path, 5000, &f, &s) == -ECONNREFUSED ? 0 : 1);
		}
		serve_until_exit(b, &third, code, 1);
		CHECK_EQ(code[0], 0);
	}
	/* Anything but a JOIN: ERROR, closed. */
	{
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct vp_msg m;
		struct vp_rx rx;
		int r = 0;
		int64_t end = now_ms() + 5000;

		strcpy(sa.sun_path, path);
		REQUIRE(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		vp_msg_init(&m, VP_PCI_HELLO, 0);
		m.p.hello.magic = VP_PCI_MAGIC;
		m.p.hello.major = 1;
		REQUIRE(vp_sock_send(s, &m) == 0);
		fcntl(s, F_SETFL, O_NONBLOCK);
		vp_rx_init(&rx);
		while (r == 0 && now_ms() < end) {
			vp_pair21_control(b);
			r = vp_sock_recv(s, &rx, &m);
			if (!r)
				usleep(1000);
		}
		CHECK_EQ(r, 1);
		CHECK_EQ(m.request, VP_PCI_ERROR);
		close(s);
	}
	serve_until_exit(b, pid, code, 2);
	CHECK_EQ(code[0], 0);
	CHECK_EQ(code[1], 0);
	vp_pair21_counts(b, &joins, &refused);
	CHECK_EQ(joins, 2);
	CHECK_EQ(refused, 2);
	/* Both left: their slots are free again (once the broker has seen
	 * their connections close), a returning peer would join. */
	for (int64_t end = now_ms() + 5000;
	     (vp_pair21_joined(b, 0) || vp_pair21_joined(b, 1)) && now_ms() < end;) {
		struct pollfd p = { .fd = vp_pair21_fd(b), .events = POLLIN };

		poll(&p, 1, 10);
		vp_pair21_control(b);
	}
	CHECK(!vp_pair21_joined(b, 0) && !vp_pair21_joined(b, 1));
	vp_pair21_free(b);
	CHECK_EQ(tu_count_fds(), fds0);
	rmdir(sock_dir);
}
