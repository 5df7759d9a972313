/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packed virtqueues through the real path: a stock vhost-user frontend that
 * negotiates VIRTIO_F_RING_PACKED (as DPDK's virtio-user packed_vq=1 or QEMU's
 * packed=on do) against a backend vp_port (vp-vswitch's), whose server and
 * vp_net drive the packed walker. The frontend's driver side is written here
 * from the virtio spec (section 2.8), so nothing of the library checks
 * itself. The backend runs in a forked child that echoes every frame back
 * on its link; the parent checks frames both ways across several wraps of
 * the ring, the GET_VRING_BASE answer, and that a second frontend's bad
 * descriptor breaks only its own link (the child counts its fds). Then raw
 * sessions against an in-process server try bad packed set-ups.
 */
#define TESTUTIL_MAIN
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "vhostpci/vhostpci.h"

#define RAM_SIZE  (1u << 20)
#define NUM       16u              /* small: a hundred frames wrap it often */
#define RING(q)   (0x1000u + (q) * 0x1000u)  /* descriptor ring of queue q */
#define EV_DRV(q) (0x4000u + (q) * 0x100u)   /* driver event suppression */
#define EV_DEV(q) (0x4800u + (q) * 0x100u)   /* device event suppression */
#define BUF(q, i) (0x10000u + (q) * 0x10000u + (i) * 0x800u)
#define HDR       12u
#define F_AVAIL   (1u << VRING_PACKED_DESC_F_AVAIL)
#define F_USED    (1u << VRING_PACKED_DESC_F_USED)
#define FEATURES  ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_RING_PACKED))

static char sock[108];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(void)
{
	struct timespec ts = { 0, 200000 };

	nanosleep(&ts, NULL);
}

/* ---- the backend: a vp_port that echoes, in a child ---------------------- */

/* Exit status: 0 all well, 1 setup, 2 fds leaked. Runs until stop is readable. */
static int backend_main(int stop)
{
	struct vp_port_config c = { .side = VP_PORT_BACKEND, .name = "packed-be",
				    .path = sock, .mode = VP_NET_POLL };
	struct vp_port *p;
	int fds = tu_count_fds();
	static uint8_t frames[8][2048];
	struct pollfd pf = { .fd = stop, .events = POLLIN };

	if (vp_port_new(&p, &c) < 0)
		return 1;
	while (poll(&pf, 1, 0) == 0) {
		struct vp_pkt pk[8];
		int link = -1, n;

		vp_port_control(p);
		for (unsigned i = 0; i < 8; i++)
			pk[i] = (struct vp_pkt){ .data = frames[i], .len = sizeof(frames[i]) };
		n = vp_port_rx(p, pk, 8, &link);
		if (n > 0)
			vp_port_tx(p, link, pk, (unsigned)n, VP_NET_TX_DROP);
		else
			nap();
	}
	vp_port_free(p);
	return tu_count_fds() == fds ? 0 : 2;
}

/* ---- the frontend: a packed driver over a memfd ------------------------ */

struct pq {
	struct vring_packed_desc *desc;
	uint16_t next, used_next;   /* positions */
	bool wrap, used_wrap;       /* driver's avail and used wrap counters */
	unsigned out;               /* posted, not yet used */
};

struct fe {
	int fd, sock, efd[4];
	uint8_t *ram;
	struct pq q[2];             /* 0: receiveq, 1: transmitq */
	uint64_t negotiated;
};

/* Make one single-descriptor chain available: id, then the flags last. */
static void pq_post(struct pq *q, uint64_t addr, uint32_t len, bool writable, uint16_t id)
{
	struct vring_packed_desc *d = &q->desc[q->next];
	uint16_t f = (writable ? VRING_DESC_F_WRITE : 0) | (q->wrap ? F_AVAIL : F_USED);

	d->addr = htole64(addr);
	d->len = htole32(len);
	d->id = htole16(id);
	__atomic_store_n(&d->flags, htole16(f), __ATOMIC_RELEASE);
	if (++q->next == NUM) {
		q->next = 0;
		q->wrap = !q->wrap;
	}
	q->out++;
}

/* The next used descriptor, or false. */
static bool pq_used(struct pq *q, uint16_t *id, uint32_t *len)
{
	struct vring_packed_desc *d = &q->desc[q->used_next];
	uint16_t f = le16toh(__atomic_load_n(&d->flags, __ATOMIC_ACQUIRE));
	bool a = f & F_AVAIL, u = f & F_USED;

	if (!q->out || a != u || u != q->used_wrap)
		return false;
	*id = le16toh(d->id);
	*len = le32toh(d->len);
	if (++q->used_next == NUM) {
		q->used_next = 0;
		q->used_wrap = !q->used_wrap;
	}
	q->out--;
	return true;
}

static void kick(struct fe *f, unsigned q)
{
	uint64_t one = 1;

	CHECK_EQ(write(f->efd[2 * q], &one, 8), 8);
}

static int fe_open(struct fe *f)
{
	struct vp_frontend_info in;

	*f = (struct fe){ .sock = -1, .efd = { -1, -1, -1, -1 } };
	f->fd = tu_memfd("packed-ram", RAM_SIZE, 1);
	if (f->fd < 0)
		return -1;
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (f->ram == MAP_FAILED) {
		f->ram = NULL;
		return -1;
	}
	memset(&in, 0, sizeof(in));
	in.device_type = VP_VIRTIO_ID_NET;
	in.device_features = in.driver_features = FEATURES;
	in.nregions = 1;
	in.regions[0] = (struct vp_dev_region){ .gpa = 0, .size = RAM_SIZE,
		.uaddr = (uint64_t)(uintptr_t)f->ram, .prot = VP_MEM_RW, .fd = f->fd };
	in.nrings = 2;
	for (unsigned q = 0; q < 2; q++) {
		f->q[q] = (struct pq){ .desc = (void *)(f->ram + RING(q)), .wrap = true,
				       .used_wrap = true };
		f->efd[2 * q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		f->efd[2 * q + 1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		/* A fresh packed ring resumes at position 0 with wrap counter 1. */
		in.rings[q] = (struct vp_frontend_ring){ .num = NUM, .last_avail_idx = 0x8000,
			.desc = RING(q), .avail = EV_DRV(q), .used = EV_DEV(q), .enabled = true,
			.kick_fd = f->efd[2 * q], .call_fd = f->efd[2 * q + 1] };
	}
	f->sock = vp_vu_frontend_start(sock, &in, &f->negotiated, 3000);
	return f->sock < 0 ? -1 : 0;
}

/* Also after a failed fe_open(). */
static void fe_close(struct fe *f)
{
	if (f->sock >= 0)
		close(f->sock);
	for (unsigned i = 0; i < 4; i++)
		if (f->efd[i] >= 0)
			close(f->efd[i]);
	if (f->ram)
		munmap(f->ram, RAM_SIZE);
	if (f->fd >= 0)
		close(f->fd);
}

/* Send n frames of distinct sizes and contents, get each back. */
static bool echo(struct fe *f, unsigned n, unsigned seq)
{
	uint16_t id;
	uint32_t len;
	unsigned got = 0, sent = 0;
	int64_t end = now_ms() + 5000;

	for (unsigned i = 0; i < n; i++)
		pq_post(&f->q[0], BUF(0, i), 2048, true, (uint16_t)i);
	kick(f, 0);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *b = f->ram + BUF(1, i);
		uint32_t plen = 60 + (seq + i) * 7 % 1400;

		memset(b, 0, HDR);
		for (uint32_t k = 0; k < plen; k++)
			b[HDR + k] = (uint8_t)(seq + i + k);
		pq_post(&f->q[1], BUF(1, i), HDR + plen, false, (uint16_t)i);
	}
	kick(f, 1);
	while ((got < n || sent < n) && now_ms() < end) {
		bool any = false;

		while (pq_used(&f->q[1], &id, &len)) {
			CHECK(id < n);
			sent++;
			any = true;
		}
		while (pq_used(&f->q[0], &id, &len)) {
			/* Frames come back in order, each into the buffer it was given. */
			uint32_t plen = 60 + (seq + got) * 7 % 1400;
			const uint8_t *b = f->ram + BUF(0, id);
			bool same = true;

			CHECK(id < n);
			CHECK_EQ(len, HDR + plen);
			for (uint32_t k = 0; k < plen && k + HDR < len; k++)
				same &= b[HDR + k] == (uint8_t)(seq + got + k);
			CHECK(same);
			got++;
			any = true;
		}
		if (!any)
			nap();
	}
	CHECK_EQ(got, n);
	CHECK_EQ(sent, n);
	return got == n && sent == n;
}

static bool sock_closed(int s, int ms)
{
	struct pollfd pf = { .fd = s, .events = POLLIN };
	char c;

	return poll(&pf, 1, ms) == 1 && recv(s, &c, 1, MSG_DONTWAIT) == 0;
}

TEST(packed_frames_both_ways_and_hostile_link)
{
	struct fe a, b;
	int stop[2], status = -1;
	uint16_t base[2] = { 0, 0 };
	pid_t pid;

	snprintf(sock, sizeof(sock), "/tmp/vp-packed-%d.sock", (int)getpid());
	REQUIRE(pipe(stop) == 0);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(stop[1]);
		_exit(backend_main(stop[0]));
	}
	close(stop[0]);
	/* The child listens soon (its socket file may show before listen()):
	 * the frontend's connect retries are ours. */
	for (int64_t end = now_ms() + 5000; fe_open(&a) < 0;) {
		fe_close(&a);
		REQUIRE(now_ms() < end);
		nap();
	}
	CHECK(a.negotiated & (1ull << VIRTIO_F_RING_PACKED));
	/* 120 frames in bursts of 12 on a ring of 16: every burst after the
	 * first straddles a wrap somewhere. */
	for (unsigned r = 0; r < 10; r++)
		if (!echo(&a, 12, r * 12))
			break;

	/* A second frontend hands the backend a descriptor outside its memory. */
	REQUIRE(fe_open(&b) == 0);
	pq_post(&b.q[1], RAM_SIZE + 0x1000, 100, false, 0);
	kick(&b, 1);
	CHECK(sock_closed(b.sock, 3000));
	/* The first link does not notice. */
	CHECK(echo(&a, 12, 500));

	/* Where each ring stopped: the backend's walker, as position | wrap << 15.
	 * 120 + 12 chains each: position 132 % 16 = 4, 8 wraps: counter 1 again. */
	REQUIRE(vp_vu_frontend_stop(a.sock, 2, base, 3000) == 0);
	CHECK_EQ(base[0], (uint16_t)(a.q[0].next | (a.q[0].wrap ? 0x8000 : 0)));
	CHECK_EQ(base[1], (uint16_t)(a.q[1].next | (a.q[1].wrap ? 0x8000 : 0)));
	CHECK_EQ(base[1], 0x8004);

	fe_close(&b);
	fe_close(&a);
	close(stop[1]);
	REQUIRE(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);  /* 2: the backend leaked fds */
	unlink(sock);
}

/* ---- hostile set-up, one raw vhost-user session each ------------------- */

/*
 * Set ring 0 up as a packed-ring frontend would, with the given base and
 * descriptor ring offset, then let the server run: true if it dropped us.
 */
static bool setup_dropped(struct vp_server *srv, uint32_t base, uint64_t desc_off)
{
	int sv[2], ramfd = tu_memfd("packed-hostile", RAM_SIZE, 1);
	uint8_t *ram;
	struct vp_msg m;
	bool dropped = false;

	if (ramfd < 0)
		return false;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
	CHECK(ram != MAP_FAILED);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(vp_server_adopt(srv, sv[0]), 0);
	vp_msg_init(&m, VP_VU_SET_OWNER, 0);
	CHECK_EQ(vp_sock_send(sv[1], &m), 0);
	vp_msg_init(&m, VP_VU_SET_FEATURES, 0);
	m.p.u64 = FEATURES;
	CHECK_EQ(vp_sock_send(sv[1], &m), 0);
	vp_msg_init(&m, VP_VU_SET_MEM_TABLE, 0);
	m.p.mem.nregions = 1;
	m.p.mem.regions[0] = (struct vp_mem_region_wire){ 0, RAM_SIZE, (uint64_t)(uintptr_t)ram, 0 };
	m.fds[0] = ramfd;
	m.nfds = 1;
	CHECK_EQ(vp_sock_send(sv[1], &m), 0);
	for (unsigned i = 0; i < 2; i++) {
		vp_msg_init(&m, i ? VP_VU_SET_VRING_BASE : VP_VU_SET_VRING_NUM, 0);
		m.p.state = (struct vp_vring_state){ .index = 0, .num = i ? base : NUM };
		CHECK_EQ(vp_sock_send(sv[1], &m), 0);
	}
	vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
	m.p.addr.index = 0;
	m.p.addr.desc = (uint64_t)(uintptr_t)ram + desc_off;
	m.p.addr.avail = (uint64_t)(uintptr_t)ram + EV_DRV(0);
	m.p.addr.used = (uint64_t)(uintptr_t)ram + EV_DEV(0);
	CHECK_EQ(vp_sock_send(sv[1], &m), 0);
	for (int64_t end = now_ms() + 500; !dropped && now_ms() < end;) {
		CHECK(vp_server_dispatch(srv) >= 0);
		dropped = sock_closed(sv[1], 5);
	}
	close(sv[1]);
	munmap(ram, RAM_SIZE);
	close(ramfd);
	for (int i = 0; i < 5; i++)
		vp_server_dispatch(srv);
	return dropped;
}

TEST(packed_setup_hostile_inputs_drop_only_that_session)
{
	struct vp_server_config c = { .features = VP_SERVER_DEFAULT_FEATURES |
					       (1ull << VIRTIO_F_RING_PACKED) };
	struct vp_server *srv;
	int fds = tu_count_fds();

	REQUIRE(vp_server_new(&srv, &c) == 0);
	/* Fresh, in both encodings: accepted. */
	CHECK(!setup_dropped(srv, 0x8000, RING(0)));
	CHECK(!setup_dropped(srv, 0x80008000u, RING(0)));
	/* Used half behind the avail half: buffers in flight the walker cannot own. */
	CHECK(setup_dropped(srv, 0x80008003u, RING(0)));
	/* A packed descriptor ring must be 16-byte aligned. */
	CHECK(setup_dropped(srv, 0x8000, RING(0) + 8));
	/* ... and lie inside the memory (16 descriptors of 16 bytes). */
	CHECK(setup_dropped(srv, 0x8000, RAM_SIZE - 0x80));
	vp_server_free(srv);
	CHECK_EQ(tu_count_fds(), fds);
}

/* ---- the native protocol (1.1): packed positions in the STOP ack ------ */

/* What a backend tells at its stop: ring 0 at position 5 of lap 1, ring 1 at 3 of lap 0. */
static const uint16_t stop_at[2] = { 0x8005, 3 };
static struct {
	bool hold;                 /* hold the ack, tell the positions after the callback */
	uint64_t id;
	int set_rc[2];
	unsigned ready;
	uint16_t resume[2];        /* the last READY's ring positions */
} nb;

static void nb_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *dev,
		     void *opaque)
{
	(void)opaque;
	if (ev == VP_EV_DEVICE_READY) {
		nb.ready++;
		nb.id = dev->id;
		for (unsigned i = 0; i < 2; i++)
			nb.resume[i] = dev->rings[i].last_avail_idx;
	}
	if (ev != VP_EV_DEVICE_STOPPED)
		return;
	if (nb.hold) {
		vp_server_hold_stop(srv, dev->id);
		return;
	}
	for (unsigned i = 0; i < 2; i++)
		nb.set_rc[i] = vp_server_set_ring_base(srv, dev->id, i, stop_at[i]);
}

static void native_info(struct vp_frontend_info *in, int ramfd, const int efd[4],
			uint16_t base0, uint16_t base1)
{
	memset(in, 0, sizeof(*in));
	in->device_type = VP_VIRTIO_ID_NET;
	in->device_features = in->driver_features = FEATURES;
	in->nregions = 1;
	in->regions[0] = (struct vp_dev_region){ .gpa = 0, .size = RAM_SIZE, .prot = VP_MEM_RW,
						 .fd = ramfd };
	in->nrings = 2;
	for (unsigned q = 0; q < 2; q++)
		in->rings[q] = (struct vp_frontend_ring){ .num = NUM,
			.last_avail_idx = q ? base1 : base0, .desc = RING(q), .avail = EV_DRV(q),
			.used = EV_DEV(q), .enabled = true, .kick_fd = efd[2 * q],
			.call_fd = efd[2 * q + 1] };
}

/* Serve srv and dispatch cl until cl leaves state from (or 2 s pass). */
static void pump(struct vp_server *srv, struct vp_client *cl, enum vp_client_state from)
{
	for (int64_t end = now_ms() + 2000; vp_client_state(cl) == from && now_ms() < end;) {
		if (srv)
			vp_server_dispatch(srv);
		vp_client_dispatch(cl);
		nap();
	}
}

TEST(native_frontend_packed_positions_travel_in_stop_ack)
{
	struct vp_server_config c = { .features = VP_SERVER_DEFAULT_FEATURES |
					       (1ull << VIRTIO_F_RING_PACKED), .on_event = nb_event,
				      .stop_timeout_ms = 300 };
	struct vp_frontend_info in;
	struct vp_server *srv;
	struct vp_client *cl;
	int fds = tu_count_fds(), ramfd = tu_memfd("packed-native", RAM_SIZE, 1), efd[4];
	uint16_t b;

	REQUIRE(ramfd >= 0);
	memset(&nb, 0, sizeof(nb));
	snprintf(sock, sizeof(sock), "/tmp/vp-packed-n%d.sock", (int)getpid());
	c.path = sock;
	REQUIRE(vp_server_new(&srv, &c) == 0);
	for (unsigned i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	native_info(&in, ramfd, efd, 0x8000, 0x8000);
	REQUIRE(vp_client_connect(&cl, sock, &in) == 0);
	pump(srv, cl, VP_CLIENT_HANDSHAKE);
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	CHECK(vp_client_features(cl) & (1ull << VIRTIO_F_RING_PACKED));
	for (int i = 0; i < 50 && nb.ready < 1; i++)
		vp_server_dispatch(srv);
	CHECK_EQ(nb.ready, 1);
	CHECK_EQ(nb.resume[0], 0x8000);
	CHECK_EQ(vp_client_ring_base(cl, 0, &b), -ENODATA);  /* nothing acked yet */

	/* The backend tells where it stopped in its callback: RING_BASE, then the ack. */
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	pump(srv, cl, VP_CLIENT_STOPPING);
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STOPPED);
	CHECK_EQ(nb.set_rc[0], 0);
	CHECK_EQ(nb.set_rc[1], 0);
	CHECK_EQ(vp_client_ring_base(cl, 0, &b), 0);
	CHECK_EQ(b, stop_at[0]);
	CHECK_EQ(vp_client_ring_base(cl, 1, &b), 0);
	CHECK_EQ(b, stop_at[1]);
	CHECK_EQ(vp_client_ring_base(cl, 2, &b), -ENODATA);

	/* Announced again from there, the backend resumes there. */
	native_info(&in, ramfd, efd, stop_at[0], stop_at[1]);
	CHECK_EQ(vp_client_restart(cl, &in), 0);
	pump(srv, cl, VP_CLIENT_HANDSHAKE);
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	for (int i = 0; i < 50 && nb.ready < 2; i++)
		vp_server_dispatch(srv);
	CHECK_EQ(nb.resume[0], stop_at[0]);
	CHECK_EQ(nb.resume[1], stop_at[1]);

	/* An asynchronous backend: positions told after the callback, before the release
	 * (the rings are torn down by then); a position past the ring is refused. */
	nb.hold = true;
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	for (int i = 0; i < 50; i++) {
		vp_server_dispatch(srv);
		vp_client_dispatch(cl);
	}
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STOPPING);
	CHECK_EQ(vp_server_set_ring_base(srv, nb.id, 0, NUM), -EINVAL);
	CHECK_EQ(vp_server_set_ring_base(srv, nb.id, 0, 0x800a), 0);
	CHECK_EQ(vp_server_release_stop(srv, nb.id), 0);
	pump(srv, cl, VP_CLIENT_STOPPING);
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STOPPED);
	CHECK_EQ(vp_client_ring_base(cl, 0, &b), 0);
	CHECK_EQ(b, 0x800a);
	CHECK_EQ(vp_client_ring_base(cl, 1, &b), 0);
	CHECK_EQ(b, stop_at[1]);  /* not told: where it was announced */

	/* A position past the ring in the announcement: refused with the reason. */
	native_info(&in, ramfd, efd, NUM, 0);
	CHECK_EQ(vp_client_restart(cl, &in), 0);
	pump(srv, cl, VP_CLIENT_HANDSHAKE);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_FAILED);
	CHECK(strstr(vp_client_error(cl), "past its 16 descriptors") != NULL);
	vp_client_free(cl);

	/* A backend that never releases its hold: no ack with untold positions. */
	native_info(&in, ramfd, efd, 0x8000, 0x8000);
	REQUIRE(vp_client_connect(&cl, sock, &in) == 0);
	pump(srv, cl, VP_CLIENT_HANDSHAKE);
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	pump(srv, cl, VP_CLIENT_STOPPING);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_FAILED);
	CHECK(strstr(vp_client_error(cl), "where the packed rings stopped is unknown") != NULL);
	vp_client_free(cl);
	vp_server_free(srv);
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	close(ramfd);
	unlink(sock);
	CHECK_EQ(tu_count_fds(), fds);
}

/* ---- a raw native peer: an older one, and a lying one -------------------- */

/* Receive one message on fd within 2 s, dispatching cl meanwhile: 1, or 0. */
static int raw_recv(int fd, struct vp_client *cl, struct vp_msg *m)
{
	struct vp_rx rx;
	int r = 0;

	vp_rx_init(&rx);
	for (int64_t end = now_ms() + 2000; r == 0 && now_ms() < end;) {
		if (cl)
			vp_client_dispatch(cl);
		r = vp_sock_recv(fd, &rx, m);
		if (r == 0)
			nap();
	}
	vp_rx_reset(&rx);
	return r == 1;
}

/* A server's request, answered by cl: true if the reply came. */
static bool raw_ask(int fd, struct vp_client *cl, uint32_t req, uint64_t arg)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.u64 = arg;
	if (vp_sock_send(fd, &m) < 0)
		return false;
	if (req == VP_PCI_START)
		return true;
	if (!raw_recv(fd, cl, &m))
		return false;
	vp_msg_close_fds(&m);
	return m.request == req && (m.flags & VP_MSG_REPLY);
}

/* A native server speaking 1.minor on one end of a socketpair, to START. */
static bool raw_server_start(int fd, struct vp_client *cl, uint16_t minor)
{
	struct vp_msg m;

	if (!raw_recv(fd, cl, &m) || m.request != VP_PCI_HELLO)
		return false;
	vp_msg_init(&m, VP_PCI_HELLO, VP_MSG_REPLY);
	m.p.hello = (struct vp_pci_hello){ VP_PCI_MAGIC, 1, minor, 0 };
	return vp_sock_send(fd, &m) == 0 && raw_ask(fd, cl, VP_PCI_GET_UUID, 0) &&
	       raw_ask(fd, cl, VP_PCI_GET_MEMORY_INFO, 0) &&
	       raw_ask(fd, cl, VP_PCI_GET_DEVICE_INFO, 0) &&
	       raw_ask(fd, cl, VP_PCI_GET_FEATURE_BITS, 0) &&
	       raw_ask(fd, cl, VP_PCI_SET_FEATURE_BITS, FEATURES) &&
	       raw_ask(fd, cl, VP_PCI_START, 7);
}

/*
 * A client on a socketpair whose other end is srv_fd (the test plays the
 * server), as vp_client_connect() would be on a listening socket.
 */
static struct vp_client *client_on(int srv_fd_out[1], const struct vp_frontend_info *in)
{
	struct vp_client *cl = NULL;
	char path[108];
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	snprintf(path, sizeof(path), "/tmp/vp-packed-raw%d.sock", (int)getpid());
	unlink(path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	srv_fd_out[0] = -1;
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    vp_client_connect(&cl, path, in) < 0)
		goto out;
	srv_fd_out[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
out:
	if (l >= 0)
		close(l);
	unlink(path);
	return cl;
}

/* A server that acks STOP after these RING_BASEs (n of them): the client's verdict. */
static bool lying_ack_refused(const struct vp_frontend_info *in, const uint32_t (*rb)[2],
			      unsigned n, const char *why)
{
	int fd;
	struct vp_client *cl = client_on(&fd, in);
	struct vp_msg m;
	bool refused;

	if (!cl || fd < 0 || !raw_server_start(fd, cl, 1)) {
		fprintf(stderr, "  no session for '%s'\n", why);
		vp_client_free(cl);
		if (fd >= 0)
			close(fd);
		return false;
	}
	pump(NULL, cl, VP_CLIENT_HANDSHAKE);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STARTED);
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	CHECK(raw_recv(fd, cl, &m) && m.request == VP_PCI_STOP);
	for (unsigned i = 0; i < n; i++) {
		vp_msg_init(&m, VP_PCI_RING_BASE, 0);
		m.p.state = (struct vp_vring_state){ rb[i][0], rb[i][1] };
		vp_sock_send(fd, &m);
	}
	vp_msg_init(&m, VP_PCI_STOP, VP_MSG_REPLY);
	vp_sock_send(fd, &m);
	pump(NULL, cl, VP_CLIENT_STOPPING);
	refused = vp_client_state(cl) == VP_CLIENT_FAILED && strstr(vp_client_error(cl), why);
	if (!refused && why[0] != '-')
		fprintf(stderr, "  state %d, error '%s', wanted '%s'\n", vp_client_state(cl),
			vp_client_error(cl), why);
	vp_client_free(cl);
	close(fd);
	return refused;
}

TEST(packed_native_old_peers_and_lying_positions_refused)
{
	struct vp_server_config c = { .features = VP_SERVER_DEFAULT_FEATURES |
					       (1ull << VIRTIO_F_RING_PACKED) };
	struct vp_frontend_info in;
	struct vp_server *srv;
	struct vp_client *cl;
	struct vp_msg m;
	int fds = tu_count_fds(), ramfd = tu_memfd("packed-raw", RAM_SIZE, 1), efd[4], sv[2], fd;

	REQUIRE(ramfd >= 0);
	for (unsigned i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	native_info(&in, ramfd, efd, 0x8000, 0x8000);

	/* A 1.0 server would take packed rings for split ones: the client refuses it. */
	cl = client_on(&fd, &in);
	REQUIRE(cl && fd >= 0);
	CHECK(raw_recv(fd, cl, &m) && m.request == VP_PCI_HELLO);
	vp_msg_init(&m, VP_PCI_HELLO, VP_MSG_REPLY);
	m.p.hello = (struct vp_pci_hello){ VP_PCI_MAGIC, 1, 0, 0 };
	CHECK_EQ(vp_sock_send(fd, &m), 0);
	CHECK(raw_recv(fd, cl, &m) && m.request == VP_PCI_ERROR);  /* it tells why */
	CHECK(strstr(m.p.error.reason, "the server speaks 1.0") != NULL);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_FAILED);
	CHECK(strstr(vp_client_error(cl), "the server speaks 1.0") != NULL);
	vp_client_free(cl);
	close(fd);

	/* A 1.0 frontend negotiating packed: the server refuses it, with the reason. */
	REQUIRE(vp_server_new(&srv, &c) == 0);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(vp_server_adopt(srv, sv[0]), 0);
	vp_msg_init(&m, VP_PCI_HELLO, 0);
	m.p.hello = (struct vp_pci_hello){ VP_PCI_MAGIC, 1, 0, 0 };
	CHECK_EQ(vp_sock_send(sv[1], &m), 0);
	for (bool done = false; !done;) {
		struct vp_msg r;

		vp_server_dispatch(srv);
		if (!raw_recv(sv[1], NULL, &m))
			break;
		vp_msg_init(&r, m.request, VP_MSG_REPLY);
		switch (m.request) {
		case VP_PCI_HELLO:
			continue;
		case VP_PCI_GET_UUID:
			break;
		case VP_PCI_GET_MEMORY_INFO:
			r.p.meminfo.nregions = 1;
			r.p.meminfo.regions[0] = (struct vp_pci_region){ 0, RAM_SIZE, 0, 0, 3, 0 };
			r.fds[r.nfds++] = ramfd;
			break;
		case VP_PCI_GET_DEVICE_INFO:
			r.p.devinfo.device_type = VP_VIRTIO_ID_NET;
			r.p.devinfo.nrings = 2;
			for (unsigned q = 0; q < 2; q++)
				r.p.devinfo.rings[q] = (struct vp_pci_ring){ .index = q, .size = NUM,
					.last_avail_idx = 0x8000, .desc = RING(q), .avail = EV_DRV(q),
					.used = EV_DEV(q), .flags = VP_PCI_RING_ENABLED };
			break;
		case VP_PCI_GET_FEATURE_BITS:
			r.p.features = (struct vp_pci_features){ FEATURES, FEATURES };
			break;
		default:
			done = true;
			continue;
		}
		vp_msg_close_fds(&m);
		CHECK_EQ(vp_sock_send(sv[1], &r), 0);
	}
	CHECK_EQ(m.request, VP_PCI_ERROR);
	CHECK(strstr(m.p.error.reason, "need vhost-pci 1.1; this frontend speaks 1.0") != NULL);
	close(sv[1]);
	for (int i = 0; i < 5; i++)
		vp_server_dispatch(srv);
	vp_server_free(srv);

	/* A 1.1 server whose STOP ack lies about the positions: refused, with the reason. */
	static const uint32_t past[2][2] = { { 0, 0x80108010u }, { 1, 0 } };
	static const uint32_t split[2][2] = { { 0, 0x80008003u }, { 1, 0 } };
	static const uint32_t wrap[2][2] = { { 0, 0x00038003u }, { 1, 0 } };
	static const uint32_t nosuch[2][2] = { { 0, 0 }, { 2, 0 } };
	static const uint32_t twice[2][2] = { { 0, 0 }, { 0, 0 } };
	static const uint32_t good[2][2] = { { 1, 0x00040004u }, { 0, 0x80038003u } };

	CHECK(lying_ack_refused(&in, past, 2, "a position past its 16 descriptors"));
	CHECK(lying_ack_refused(&in, split, 2, "differ: buffers in flight"));
	CHECK(lying_ack_refused(&in, wrap, 2, "differ: buffers in flight"));
	CHECK(lying_ack_refused(&in, nosuch, 2, "ring 2: no such ring"));
	CHECK(lying_ack_refused(&in, twice, 2, "ring 0: told twice"));
	CHECK(lying_ack_refused(&in, good, 1, "without the packed position of ring 0"));
	CHECK(lying_ack_refused(&in, good, 0, "without the packed position of ring 0"));
	CHECK(!lying_ack_refused(&in, good, 2, "-"));  /* the truth is taken */
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	close(ramfd);
	CHECK_EQ(tu_count_fds(), fds);
}
