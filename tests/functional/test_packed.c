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

TEST(native_frontend_cannot_negotiate_packed)
{
	struct vp_server_config c = { .features = VP_SERVER_DEFAULT_FEATURES |
					       (1ull << VIRTIO_F_RING_PACKED) };
	struct vp_frontend_info in;
	struct vp_server *srv;
	struct vp_client *cl;
	int fds = tu_count_fds(), ramfd = tu_memfd("packed-native", RAM_SIZE, 1), efd[4];

	REQUIRE(ramfd >= 0);
	snprintf(sock, sizeof(sock), "/tmp/vp-packed-n%d.sock", (int)getpid());
	c.path = sock;
	REQUIRE(vp_server_new(&srv, &c) == 0);
	memset(&in, 0, sizeof(in));
	in.device_type = VP_VIRTIO_ID_NET;
	in.device_features = in.driver_features = FEATURES;
	in.nregions = 1;
	in.regions[0] = (struct vp_dev_region){ .gpa = 0, .size = RAM_SIZE, .prot = VP_MEM_RW,
						.fd = ramfd };
	in.nrings = 2;
	for (unsigned q = 0; q < 2; q++) {
		efd[2 * q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		efd[2 * q + 1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		in.rings[q] = (struct vp_frontend_ring){ .num = NUM, .last_avail_idx = 0x8000,
			.desc = RING(q), .avail = EV_DRV(q), .used = EV_DEV(q), .enabled = true,
			.kick_fd = efd[2 * q], .call_fd = efd[2 * q + 1] };
	}
	REQUIRE(vp_client_connect(&cl, sock, &in) == 0);
	for (int64_t end = now_ms() + 2000;
	     vp_client_state(cl) == VP_CLIENT_HANDSHAKE && now_ms() < end;) {
		vp_server_dispatch(srv);
		vp_client_dispatch(cl);
		nap();
	}
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_FAILED);
	CHECK(strstr(vp_client_error(cl), "vhost-user frontends only") != NULL);
	vp_client_free(cl);
	vp_server_free(srv);
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	close(ramfd);
	CHECK_EQ(tu_count_fds(), fds);
}
