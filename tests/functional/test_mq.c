/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Multiqueue (VIRTIO_NET_F_MQ) end to end in one process: a server offering
 * N queue pairs, a backend with one vp_net per live pair (vp_net_new_queue),
 * and frontends made of vp_netfe pairs, over both dialects:
 *  - vhost-user, N = 4: the frontend side speaks raw vhost-user as QEMU does
 *    (protocol MQ, GET_QUEUE_NUM, eight rings, SET_VRING_ENABLE per ring),
 *    frames tagged with their pair and sequence are checked per pair both
 *    ways; a pair disabled at run time stops (the others go on), and once
 *    enabled again resumes where it was, nothing lost or repeated;
 *  - native, N = 2: vp_netfe with queue_pairs = 2 through vp_client;
 *  - hostile: ring indexes past 2N, SET_VRING_ENABLE on a ring that does not
 *    exist, GET_QUEUE_NUM and protocol MQ when not offered, rings past pair
 *    0 without MQ: each drops the connection with its reason, no fd leaks.
 */
#define TESTUTIL_MAIN
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "vhostpci/vhostpci.h"

#define MAXQ VP_DEV_MAX_QUEUE_PAIRS
#define SLICE (2u << 20)  /* RAM per frontend pair */
#define F_MQ (1ull << VIRTIO_NET_F_MQ)
#define F_PROTOCOL (1ull << VP_VU_F_PROTOCOL_FEATURES)
#define PF_MQ (1ull << VP_VU_PROTOCOL_F_MQ)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the backend: one vp_net per live queue pair ---- */

struct be {
	struct vp_server *srv;
	const struct vp_device *dev;
	struct vp_net *net[MAXQ];
	unsigned ready, changed, stopped, removed;
	int attach_err;
	uint64_t rx[MAXQ], tx[MAXQ];   /* frames verified / sent per pair */
	uint32_t rx_seq[MAXQ];         /* next sequence expected per pair */
	unsigned bad;                  /* frames on the wrong pair or out of order */
};

static void be_sync(struct be *b, const struct vp_device *d)
{
	for (unsigned q = 0; q < MAXQ; q++) {
		bool live = d && vp_device_pair_live(d, q);

		if (!live && b->net[q]) {
			vp_net_free(b->net[q]);
			b->net[q] = NULL;
		} else if (live && !b->net[q]) {
			int e = vp_net_new_queue(&b->net[q], d, q, VP_NET_POLL);

			if (e)
				b->attach_err = e;
		}
	}
}

static void on_event(struct vp_server *s, enum vp_event ev, const struct vp_device *d, void *o)
{
	struct be *b = o;

	(void)s;
	switch (ev) {
	case VP_EV_DEVICE_READY:
		b->ready++;
		b->dev = d;
		be_sync(b, d);
		break;
	case VP_EV_DEVICE_CHANGED:
		b->changed++;
		be_sync(b, d);
		break;
	case VP_EV_DEVICE_STOPPED:
		b->stopped++;
		be_sync(b, NULL);
		break;
	case VP_EV_DEVICE_REMOVED:
		b->removed++;
		b->dev = NULL;
		break;
	default:
		break;
	}
}

static char tmpdir[64];

static bool be_init(struct be *b, unsigned pairs, bool with_path)
{
	struct vp_server_config cfg = { 0 };
	char path[128];

	memset(b, 0, sizeof(*b));
	snprintf(path, sizeof(path), "%s/mq.sock", tmpdir);
	cfg.path = with_path ? path : NULL;
	cfg.id = "mq";
	cfg.max_queue_pairs = pairs;
	cfg.on_event = on_event;
	cfg.opaque = b;
	return vp_server_new(&b->srv, &cfg) == 0;
}

static void be_fini(struct be *b)
{
	vp_server_free(b->srv);  /* STOPPED frees the nets */
	for (unsigned q = 0; q < MAXQ; q++)
		CHECK(!b->net[q]);
}

static void pump(struct be *b, int ms)
{
	int64_t end = now_ms() + ms;

	do {
		struct pollfd p = { vp_server_fd(b->srv), POLLIN, 0 };

		poll(&p, 1, 2);
		vp_server_dispatch(b->srv);
	} while (now_ms() < end);
}

/* ---- frames: [pair][seq le32][pattern] ---- */

#define FRAME_LEN 200u

static void frame_make(uint8_t *p, unsigned q, uint32_t seq)
{
	p[0] = (uint8_t)q;
	memcpy(p + 1, &seq, 4);
	for (unsigned i = 5; i < FRAME_LEN; i++)
		p[i] = (uint8_t)(q * 31 + seq + i);
}

/* The frame's pair and sequence, or false if it is damaged. */
static bool frame_check(const uint8_t *p, uint32_t len, unsigned *q, uint32_t *seq)
{
	if (len != FRAME_LEN)
		return false;
	*q = p[0];
	memcpy(seq, p + 1, 4);
	for (unsigned i = 5; i < FRAME_LEN; i++)
		if (p[i] != (uint8_t)(*q * 31 + *seq + i))
			return false;
	return true;
}

/* Frames received on pair q: each must be q's, next in its sequence.
 * Returns how many were; the others are counted in *bad. */
static unsigned take(unsigned q, const struct vp_pkt *pk, int n, uint32_t *next,
		     uint64_t *count, unsigned *bad)
{
	unsigned good = 0;

	for (int i = 0; i < n; i++) {
		unsigned fq;
		uint32_t seq;

		if (!frame_check(pk[i].data, pk[i].len, &fq, &seq) || fq != q || seq != *next) {
			(*bad)++;
			continue;
		}
		(*next)++;
		(*count)++;
		good++;
	}
	return good;
}

/* The backend drains every pair it drives, checking each frame is its own
 * pair's, in order; returns the frames received. */
static unsigned be_rx(struct be *b)
{
	static uint8_t buf[16][2048];
	struct vp_pkt pk[16];
	unsigned total = 0;

	for (unsigned q = 0; q < MAXQ; q++) {
		int n;

		if (!b->net[q])
			continue;
		do {
			for (unsigned i = 0; i < 16; i++)
				pk[i] = (struct vp_pkt){ .data = buf[i], .len = sizeof(buf[i]) };
			n = vp_net_rx_burst(b->net[q], pk, 16);
			total += take(q, pk, n, &b->rx_seq[q], &b->rx[q], &b->bad);
		} while (n > 0);
		CHECK(n >= 0);
	}
	return total;
}

/* Up to 16 frames of pair q from sequence first into pk; how many. */
static unsigned frames(struct vp_pkt *pk, unsigned q, uint64_t first, unsigned count)
{
	static uint8_t buf[16][FRAME_LEN];

	if (count > 16)
		count = 16;
	for (unsigned i = 0; i < count; i++) {
		frame_make(buf[i], q, (uint32_t)(first + i));
		pk[i] = (struct vp_pkt){ .data = buf[i], .len = FRAME_LEN };
	}
	return count;
}

/* A send's result n: added to *tx, and returned (0 for an error, checked). */
static unsigned sent(int n, uint64_t *tx)
{
	CHECK(n >= 0);
	if (n <= 0)
		return 0;
	*tx += (unsigned)n;
	return (unsigned)n;
}

/* The backend sends count frames on pair q; returns how many went. */
static unsigned be_tx(struct be *b, unsigned q, unsigned count)
{
	struct vp_pkt pk[16];
	unsigned c = frames(pk, q, b->tx[q], count);

	return sent(vp_net_tx_burst(b->net[q], pk, c, 0), &b->tx[q]);
}

/* ---- a frontend: pairs of vp_netfe over one memfd ---- */

struct fe {
	int ram_fd;
	uint8_t *ram;
	size_t ram_size;
	struct vp_netfe *nfe[MAXQ];   /* vhost-user: one per pair; native: pair 0 owns all */
	struct vp_netfe *pair[MAXQ];  /* each pair's handle */
	unsigned npairs;
	uint64_t tx[MAXQ], rx[MAXQ];
	uint32_t rx_seq[MAXQ];
	unsigned bad;
};

static bool fe_ram(struct fe *f, size_t size)
{
	memset(f, 0, sizeof(*f));
	f->ram_size = size;
	f->ram_fd = tu_memfd("mq-fe", size, 1);
	if (f->ram_fd < 0)
		return false;
	f->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f->ram_fd, 0);
	return f->ram != MAP_FAILED;
}

static struct vp_netfe_config fe_cfg(struct fe *f, uint64_t offset, unsigned pairs)
{
	struct vp_netfe_config c = {
		.ram = f->ram, .ram_size = f->ram_size, .ram_fd = f->ram_fd,
		.ram_offset = offset, .rx_num = 64, .tx_num = 64, .queue_pairs = pairs,
		.mac = { 0x52, 0x54, 0, 0, 0, 9 },
	};

	return c;
}

static void fe_free(struct fe *f)
{
	for (unsigned q = 0; q < MAXQ; q++)
		vp_netfe_free(f->nfe[q]);
	munmap(f->ram, f->ram_size);
	close(f->ram_fd);
}

/* Frontend pair q sends count tagged frames; returns how many went. */
static unsigned fe_tx(struct fe *f, unsigned q, unsigned count)
{
	struct vp_pkt pk[16];
	unsigned c = frames(pk, q, f->tx[q], count);

	return sent(vp_netfe_tx_burst(f->pair[q], pk, c, 0), &f->tx[q]);
}

static unsigned fe_rx(struct fe *f)
{
	static uint8_t buf[16][2048];
	struct vp_pkt pk[16];
	unsigned total = 0;

	for (unsigned q = 0; q < f->npairs; q++) {
		int n;

		do {
			for (unsigned i = 0; i < 16; i++)
				pk[i] = (struct vp_pkt){ .data = buf[i], .len = sizeof(buf[i]) };
			n = vp_netfe_rx_burst(f->pair[q], pk, 16);
			total += take(q, pk, n, &f->rx_seq[q], &f->rx[q], &f->bad);
		} while (n > 0);
		CHECK(n >= 0);
	}
	return total;
}

/* Every pair in mask sends `per` frames each way; the rest stay silent.
 * True when each arrived on its own pair (checked per frame). */
static bool traffic(struct be *b, struct fe *f, uint32_t mask, unsigned per)
{
	uint64_t want_b[MAXQ], want_f[MAXQ];
	int64_t end = now_ms() + 5000;

	for (unsigned q = 0; q < f->npairs; q++) {
		want_b[q] = b->rx[q] + ((mask >> q & 1) ? per : 0);
		want_f[q] = f->rx[q] + ((mask >> q & 1) ? per : 0);
	}
	for (unsigned q = 0; q < f->npairs; q++) {
		if (!(mask >> q & 1))
			continue;
		for (unsigned sent = 0; sent < per && now_ms() < end;) {
			sent += fe_tx(f, q, per - sent);
			be_rx(b);
		}
		for (unsigned sent = 0; sent < per && b->net[q] && now_ms() < end;) {
			sent += be_tx(b, q, per - sent);
			fe_rx(f);
		}
	}
	for (;;) {
		bool done = true;

		be_rx(b);
		fe_rx(f);
		for (unsigned q = 0; q < f->npairs; q++)
			done = done && b->rx[q] >= want_b[q] && f->rx[q] >= want_f[q];
		if (done || now_ms() > end)
			return done && !b->bad && !f->bad;
		pump(b, 1);
	}
}

/* ---- raw vhost-user, as QEMU speaks it ---- */

static int send_u64(int fd, uint32_t req, uint64_t v, int efd)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.u64 = v;
	if (efd >= 0) {
		m.fds[0] = efd;
		m.nfds = 1;
	}
	return vp_sock_send(fd, &m);
}

static int send_state(int fd, uint32_t req, uint32_t idx, uint32_t num)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.state.index = idx;
	m.p.state.num = num;
	return vp_sock_send(fd, &m);
}

/* A request with a u64 reply: the server runs until it answers. */
static int call_u64(struct be *b, int fd, uint32_t req, uint64_t *out)
{
	struct vp_rx rx;
	struct vp_msg m;
	int64_t end = now_ms() + 2000;
	int r = send_u64(fd, req, 0, -1);

	if (r < 0)
		return r;
	vp_rx_init(&rx);
	while (now_ms() < end) {
		r = vp_sock_recv(fd, &rx, &m);
		if (r < 0)
			break;
		if (r > 0) {
			vp_msg_close_fds(&m);
			*out = m.p.u64;
			r = m.request == req && (m.flags & VP_MSG_REPLY) ? 0 : -EPROTO;
			break;
		}
		pump(b, 2);
		r = -ETIMEDOUT;
	}
	vp_rx_reset(&rx);
	return r;
}

/* Set the rings of pair q up from what its netfe announces. */
static void vu_pair(int fd, struct fe *f, unsigned q, const struct vp_frontend_info *in)
{
	for (unsigned j = 0; j < 2; j++) {
		const struct vp_frontend_ring *g = &in->rings[j];
		uint32_t idx = 2 * q + j;
		uint64_t base = (uint64_t)(uintptr_t)f->ram;
		struct vp_msg m;

		send_state(fd, VP_VU_SET_VRING_NUM, idx, g->num);
		send_state(fd, VP_VU_SET_VRING_BASE, idx, 0);
		vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
		m.p.addr.index = idx;
		m.p.addr.desc = base + g->desc;
		m.p.addr.avail = base + g->avail;
		m.p.addr.used = base + g->used;
		vp_sock_send(fd, &m);
		send_u64(fd, VP_VU_SET_VRING_KICK, idx, g->kick_fd);
		send_u64(fd, VP_VU_SET_VRING_CALL, idx, g->call_fd);
	}
}

static bool ready_with(void *arg, unsigned ready, uint32_t live)
{
	struct be *b = arg;
	uint32_t m = 0;

	if (!b->dev || b->ready < ready)
		return false;
	for (unsigned q = 0; q < MAXQ; q++)
		m |= (uint32_t)vp_device_pair_live(b->dev, q) << q;
	return m == live;
}

static bool wait_live(struct be *b, uint32_t live)
{
	int64_t end = now_ms() + 2000;

	while (now_ms() < end) {
		pump(b, 2);
		if (ready_with(b, 1, live)) {
			bool attached = true;

			for (unsigned q = 0; q < MAXQ; q++)
				attached = attached && !!b->net[q] == !!(live >> q & 1);
			if (attached)
				return true;
		}
	}
	return false;
}

TEST(vhost_user_four_pairs_per_queue_and_enable_at_run_time)
{
	const unsigned N = 4;
	struct be b;
	struct fe f;
	struct vp_frontend_info in[MAXQ];
	uint64_t v, feat;
	int sv[2], before;

	REQUIRE(be_init(&b, N, false));
	REQUIRE(fe_ram(&f, N * SLICE));
	before = tu_count_fds();
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	REQUIRE(vp_server_adopt(b.srv, sv[1]) == 0);
	f.npairs = N;
	for (unsigned q = 0; q < N; q++) {
		struct vp_netfe_config c = fe_cfg(&f, q * SLICE + 0x1000, 1);

		REQUIRE(vp_netfe_new(&f.nfe[q], &c) == 0);
		f.pair[q] = f.nfe[q];
		vp_netfe_info(f.nfe[q], &in[q]);
	}

	/* QEMU's order: features, owner, protocol features, queue count. */
	REQUIRE(call_u64(&b, sv[0], VP_VU_GET_FEATURES, &v) == 0);
	CHECK(v & F_MQ);
	CHECK(v & F_PROTOCOL);
	feat = (in[0].driver_features | F_MQ | F_PROTOCOL) & v;
	send_u64(sv[0], VP_VU_SET_OWNER, 0, -1);
	REQUIRE(call_u64(&b, sv[0], VP_VU_GET_PROTOCOL_FEATURES, &v) == 0);
	CHECK(v & PF_MQ);
	send_u64(sv[0], VP_VU_SET_PROTOCOL_FEATURES, PF_MQ, -1);
	REQUIRE(call_u64(&b, sv[0], VP_VU_GET_QUEUE_NUM, &v) == 0);
	CHECK_EQ(v, N);

	/* Driver OK: every pair set up, all enabled (the guest uses them all). */
	send_u64(sv[0], VP_VU_SET_FEATURES, feat, -1);
	{
		struct vp_msg m;

		vp_msg_init(&m, VP_VU_SET_MEM_TABLE, 0);
		m.p.mem.nregions = 1;
		m.p.mem.regions[0] = (struct vp_mem_region_wire){
			0, f.ram_size, (uint64_t)(uintptr_t)f.ram, 0 };
		m.fds[0] = f.ram_fd;
		m.nfds = 1;
		vp_sock_send(sv[0], &m);
	}
	for (unsigned q = 0; q < N; q++)
		vu_pair(sv[0], &f, q, &in[q]);
	for (unsigned i = 0; i < 2 * N; i++)
		send_state(sv[0], VP_VU_SET_VRING_ENABLE, i, 1);
	CHECK(wait_live(&b, 0xf));
	CHECK_EQ(b.ready, 1);
	CHECK_EQ(b.attach_err, 0);
	/* Each netfe here is one pair of its own: MQ is this test's business. */
	for (unsigned q = 0; q < N; q++)
		CHECK_EQ(vp_netfe_start(f.pair[q], feat & ~F_MQ), 0);

	/* Each pair carries its own frames both ways. */
	CHECK(traffic(&b, &f, 0xf, 40));
	for (unsigned q = 0; q < N; q++) {
		CHECK_EQ(b.rx[q], 40);
		CHECK_EQ(f.rx[q], 40);
	}

	/* ethtool -L: pair 2 disabled; its frames stay in its ring, the
	 * others flow; the backend may not attach to it. */
	unsigned changed = b.changed;

	send_state(sv[0], VP_VU_SET_VRING_ENABLE, 4, 0);
	send_state(sv[0], VP_VU_SET_VRING_ENABLE, 5, 0);
	CHECK(wait_live(&b, 0xb));
	CHECK(b.changed > changed);
	CHECK_EQ(b.stopped, 0);
	{
		struct vp_net *n = NULL;

		CHECK_EQ(vp_net_new_queue(&n, b.dev, 2, VP_NET_POLL), -ENODEV);
		CHECK_EQ(vp_net_new_queue(&n, b.dev, N, VP_NET_POLL), -ENOENT);
	}
	CHECK_EQ(fe_tx(&f, 2, 10), 10);  /* sits in the disabled pair's ring */
	CHECK(traffic(&b, &f, 0xb, 30));
	pump(&b, 20);
	be_rx(&b);
	CHECK_EQ(b.rx[2], 40);  /* not walked */
	CHECK_EQ(b.rx[0], 70);
	CHECK_EQ(b.rx[3], 70);

	/* Enabled again: the 10 waiting frames come first, none repeated. */
	send_state(sv[0], VP_VU_SET_VRING_ENABLE, 4, 1);
	send_state(sv[0], VP_VU_SET_VRING_ENABLE, 5, 1);
	CHECK(wait_live(&b, 0xf));
	CHECK(traffic(&b, &f, 0xf, 20));
	CHECK_EQ(b.rx[2], 40 + 10 + 20);
	CHECK_EQ(f.rx[2], 60);
	CHECK_EQ(b.bad, 0);
	CHECK_EQ(f.bad, 0);
	CHECK_EQ(b.ready, 1);  /* pair 0 never stopped: one READY throughout */

	/* Stopping a ring of a live pair past 0 stops the device first. */
	{
		uint64_t base;
		struct vp_msg m;
		struct vp_rx rx;
		int64_t end = now_ms() + 2000;
		int r = 0;

		send_state(sv[0], VP_VU_GET_VRING_BASE, 6, 0);
		vp_rx_init(&rx);
		while (now_ms() < end && (r = vp_sock_recv(sv[0], &rx, &m)) == 0)
			pump(&b, 2);
		vp_rx_reset(&rx);
		CHECK_EQ(r, 1);
		base = m.p.state.num;
		CHECK_EQ(base, b.tx[3]);  /* the used index: all the backend filled */
		CHECK_EQ(b.stopped, 1);
		CHECK(wait_live(&b, 0x7));  /* READY again without pair 3 */
		CHECK_EQ(b.ready, 2);
	}

	close(sv[0]);
	pump(&b, 30);
	CHECK_EQ(b.removed, 1);
	for (unsigned q = 0; q < N; q++) {
		vp_netfe_free(f.nfe[q]);
		f.nfe[q] = NULL;
	}
	CHECK_EQ(tu_count_fds(), before);  /* the session's fds, and our netfes' eventfds */
	be_fini(&b);
	fe_free(&f);
}

static bool client_settled(struct be *b, struct vp_client *cl)
{
	int64_t end = now_ms() + 3000;

	while (now_ms() < end) {
		pump(b, 2);
		vp_client_dispatch(cl);
		if (vp_client_state(cl) != VP_CLIENT_HANDSHAKE)
			return true;
	}
	return false;
}

TEST(native_two_pairs_per_queue)
{
	struct be b;
	struct fe f;
	struct vp_client *cl = NULL;
	struct vp_frontend_info in;
	int before;

	REQUIRE(be_init(&b, 2, true));
	REQUIRE(fe_ram(&f, 2 * SLICE));
	before = tu_count_fds();
	{
		struct vp_netfe_config c = fe_cfg(&f, 0x1000, 2);

		REQUIRE(vp_netfe_new(&f.nfe[0], &c) == 0);
	}
	f.npairs = 2;
	f.pair[0] = vp_netfe_queue(f.nfe[0], 0);
	f.pair[1] = vp_netfe_queue(f.nfe[0], 1);
	CHECK(f.pair[0] == f.nfe[0]);
	CHECK(f.pair[1] && f.pair[1] != f.pair[0]);
	CHECK(!vp_netfe_queue(f.nfe[0], 2));
	vp_netfe_info(f.nfe[0], &in);
	CHECK_EQ(in.nrings, 4);
	CHECK(in.driver_features & F_MQ);
	REQUIRE(vp_client_connect(&cl, vp_server_path(b.srv), &in) == 0);
	CHECK(client_settled(&b, cl));
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	CHECK(vp_client_features(cl) & F_MQ);
	CHECK_EQ(vp_netfe_start(f.nfe[0], vp_client_features(cl)), 0);
	CHECK(wait_live(&b, 0x3));
	CHECK(traffic(&b, &f, 0x3, 100));
	CHECK_EQ(b.rx[0], 100);
	CHECK_EQ(b.rx[1], 100);
	CHECK_EQ(f.rx[0], 100);
	CHECK_EQ(f.rx[1], 100);
	vp_client_free(cl);
	pump(&b, 30);
	CHECK_EQ(b.removed, 1);
	vp_netfe_free(f.nfe[0]);
	f.nfe[0] = NULL;
	CHECK_EQ(tu_count_fds(), before);
	be_fini(&b);
	fe_free(&f);
}

/* Two pairs to a server that offers one: refused with the reason. */
TEST(native_two_pairs_to_one_pair_server_refused)
{
	struct be b;
	struct fe f;
	struct vp_client *cl = NULL;
	struct vp_frontend_info in;
	struct vp_netfe_config c;
	const char *last = NULL;

	REQUIRE(be_init(&b, 1, true));
	REQUIRE(fe_ram(&f, 2 * SLICE));
	c = fe_cfg(&f, 0x1000, 2);
	REQUIRE(vp_netfe_new(&f.nfe[0], &c) == 0);
	vp_netfe_info(f.nfe[0], &in);
	REQUIRE(vp_client_connect(&cl, vp_server_path(b.srv), &in) == 0);
	CHECK(client_settled(&b, cl));
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_FAILED);
	CHECK(strstr(vp_client_error(cl), "one queue pair offered") != NULL);
	CHECK_EQ(vp_server_refused(b.srv, &last), 1);
	CHECK_EQ(b.ready, 0);
	vp_client_free(cl);
	be_fini(&b);
	fe_free(&f);
}

/* ---- hostile vhost-user peers ---- */

/* A session on an adopted socket that sends what `script` does and must be
 * dropped with a reason containing `why`; every fd comes back. */
static void hostile(unsigned pairs, void (*script)(int fd, struct be *b), const char *why)
{
	struct be b;
	const char *last = NULL;
	int sv[2], before;
	int64_t end;
	char c;

	REQUIRE(be_init(&b, pairs, false));
	before = tu_count_fds();
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	REQUIRE(vp_server_adopt(b.srv, sv[1]) == 0);
	script(sv[0], &b);
	end = now_ms() + 2000;
	while (vp_server_refused(b.srv, NULL) == 0 && now_ms() < end)
		pump(&b, 2);
	CHECK_EQ(vp_server_refused(b.srv, &last), 1);
	if (!last || !strstr(last, why)) {
		fprintf(stderr, "  reason '%s' lacks '%s'\n", last ? last : "(none)", why);
		CHECK(0);
	}
	pump(&b, 10);
	CHECK_EQ(b.removed, 1);
	CHECK_EQ(b.ready, 0);
	CHECK_EQ(recv(sv[0], &c, 1, MSG_DONTWAIT), 0);  /* the server hung up */
	close(sv[0]);
	CHECK_EQ(tu_count_fds(), before);  /* its end, and every fd we sent, closed */
	be_fini(&b);
}

static void mq_on(int fd, struct be *b)
{
	uint64_t v;

	CHECK_EQ(call_u64(b, fd, VP_VU_GET_FEATURES, &v), 0);
	send_u64(fd, VP_VU_SET_OWNER, 0, -1);
	send_u64(fd, VP_VU_SET_PROTOCOL_FEATURES, PF_MQ, -1);
	CHECK_EQ(call_u64(b, fd, VP_VU_GET_QUEUE_NUM, &v), 0);
}

static void ring_past_2n(int fd, struct be *b)
{
	int efd = eventfd(0, EFD_CLOEXEC);

	mq_on(fd, b);
	send_state(fd, VP_VU_SET_VRING_NUM, 3, 64);  /* fine: 2 pairs */
	send_u64(fd, VP_VU_SET_VRING_KICK, 4, efd);  /* ring 4 of 4: not */
	close(efd);
}

static void enable_missing_ring(int fd, struct be *b)
{
	mq_on(fd, b);
	send_state(fd, VP_VU_SET_VRING_ENABLE, 8, 1);
}

static void queue_num_not_offered(int fd, struct be *b)
{
	(void)b;
	send_u64(fd, VP_VU_SET_PROTOCOL_FEATURES, 1ull << VP_VU_PROTOCOL_F_REPLY_ACK, -1);
	send_u64(fd, VP_VU_GET_QUEUE_NUM, 0, -1);
}

static void mq_protocol_not_offered(int fd, struct be *b)
{
	(void)b;
	send_u64(fd, VP_VU_SET_PROTOCOL_FEATURES, PF_MQ, -1);
}

static void ring2_without_mq(int fd, struct be *b)
{
	(void)b;
	send_u64(fd, VP_VU_SET_PROTOCOL_FEATURES, 0, -1);  /* MQ offered, not taken */
	send_state(fd, VP_VU_SET_VRING_NUM, 2, 64);
}

static void queue_num_before_mq(int fd, struct be *b)
{
	(void)b;
	send_u64(fd, VP_VU_GET_QUEUE_NUM, 0, -1);
}

TEST(hostile_ring_index_past_2n)
{
	hostile(2, ring_past_2n, "SET_VRING_KICK for ring 4: only 4 rings");
}

TEST(hostile_enable_nonexistent_ring)
{
	hostile(4, enable_missing_ring, "SET_VRING_ENABLE for ring 8: only 8 rings");
}

TEST(hostile_get_queue_num_not_offered)
{
	hostile(1, queue_num_not_offered, "GET_QUEUE_NUM without the MQ protocol feature "
		"(not offered");
}

TEST(hostile_get_queue_num_not_negotiated)
{
	hostile(2, queue_num_before_mq, "GET_QUEUE_NUM without the MQ protocol feature "
		"negotiated");
}

TEST(hostile_protocol_mq_not_offered)
{
	hostile(1, mq_protocol_not_offered, "protocol features 0x1 not offered");
}

TEST(hostile_ring_past_pair0_without_mq)
{
	hostile(2, ring2_without_mq, "ring 2: only 2 rings (1 queue pairs, protocol feature "
		"MQ not negotiated)");
}

/* The configuration's bounds, and a server without MQ offers none of it. */
TEST(config_bounds_and_default_offers_no_mq)
{
	struct vp_server_config cfg = { .max_queue_pairs = VP_DEV_MAX_QUEUE_PAIRS + 1 };
	struct vp_server *s = NULL;
	struct be b;
	int sv[2];
	uint64_t v;

	CHECK_EQ(vp_server_new(&s, &cfg), -EINVAL);
	REQUIRE(be_init(&b, 0, false));
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	REQUIRE(vp_server_adopt(b.srv, sv[1]) == 0);
	CHECK_EQ(call_u64(&b, sv[0], VP_VU_GET_FEATURES, &v), 0);
	CHECK(!(v & F_MQ));
	CHECK_EQ(call_u64(&b, sv[0], VP_VU_GET_PROTOCOL_FEATURES, &v), 0);
	CHECK(!(v & PF_MQ));
	close(sv[0]);
	pump(&b, 10);
	be_fini(&b);
}

__attribute__((constructor)) static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vp-mq-test-XXXXXX");
	if (!mkdtemp(tmpdir))
		tmpdir[0] = 0;
}

__attribute__((destructor)) static void remove_tmpdir(void)
{
	if (tmpdir[0])
		rmdir(tmpdir);
}
