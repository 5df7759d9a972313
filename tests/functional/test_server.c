/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The server with real sockets: native and vhost-user frontends, resets,
 * malformed input from a peer, the connection limit, killed frontends, and
 * fd accounting. One process drives the server; frontends that block run in
 * forked children.
 */
#define TESTUTIL_MAIN
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/internal.h"
#include "testutil.h"
#include "vhostpci/vhostpci.h"

#define RAM_SIZE (1u << 20)
#define RING_NUM 256
#define F_VERSION_1 (1ull << VIRTIO_F_VERSION_1)
#define F_PROTOCOL (1ull << VP_VU_F_PROTOCOL_FEATURES)
#define F_MRG_RXBUF (1ull << VIRTIO_NET_F_MRG_RXBUF)
#define F_EVENT_IDX (1ull << VIRTIO_RING_F_EVENT_IDX)

/* ---- event recording ---- */
#define MAX_EV 256
static struct {
	enum vp_event ev;
	uint64_t id;
	unsigned gen;
	enum vp_dev_state state;
} evlog[MAX_EV];
static unsigned nev;

static bool hold_stops;      /* STOPPED callbacks hold the GET_VRING_BASE reply */
static int hold_rc = 1;

static void on_event(struct vp_server *s, enum vp_event ev, const struct vp_device *d, void *o)
{
	(void)o;
	if (nev < MAX_EV)
		evlog[nev++] = (typeof(evlog[0])){ ev, d->id, d->generation, d->state };
	if (hold_stops && ev == VP_EV_DEVICE_STOPPED)
		hold_rc = vp_server_hold_stop(s, d->id);
}

static unsigned count_ev(enum vp_event ev, uint64_t id)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nev; i++)
		n += evlog[i].ev == ev && (id == 0 || evlog[i].id == id);
	return n;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the server (and a client, if any) until cond() or timeout. */
static bool pump_until(struct vp_server *s, struct vp_client *cl, bool (*cond)(void *), void *arg,
		       int ms)
{
	int64_t end = now_ms() + ms;

	do {
		struct pollfd p[2] = { { vp_server_fd(s), POLLIN, 0 },
				       { cl ? vp_client_fd(cl) : -1, POLLIN, 0 } };

		poll(p, 2, 5);
		vp_server_dispatch(s);
		if (cl)
			vp_client_dispatch(cl);
		if (cond && cond(arg))
			return true;
	} while (now_ms() < end);
	return false;
}

static void pump(struct vp_server *s, int ms)
{
	pump_until(s, NULL, NULL, NULL, ms);
}

/* ---- fixtures ---- */
static char tmpdir[64];

static void make_tmpdir(void)
{
	if (!tmpdir[0]) {
		strcpy(tmpdir, "/tmp/vp-server-test-XXXXXX");
		if (!mkdtemp(tmpdir))
			tmpdir[0] = 0;
	}
}

static bool allow_unsealed;  /* for the next new_server() */
static unsigned handshake_ms;  /* for the next new_server(); 0: default */
static unsigned stop_ms;      /* likewise */

static struct vp_server *new_server(const char *name, unsigned maxc)
{
	struct vp_server_config cfg = { .allow_unsealed = allow_unsealed,
					.handshake_timeout_ms = handshake_ms,
					.stop_timeout_ms = stop_ms };
	struct vp_server *s = NULL;
	char path[128];

	make_tmpdir();
	snprintf(path, sizeof(path), "%s/%s.sock", tmpdir, name);
	cfg.path = path;
	cfg.id = name;
	cfg.max_connections = maxc;
	cfg.on_event = on_event;
	cfg.have_uuid = true;
	vp_uuid_parse("11111111-2222-4333-8444-555555555555", cfg.uuid);
	if (vp_server_new(&s, &cfg) < 0)
		return NULL;
	return s;
}

struct ram {
	int fd;
	uint8_t *p;
};

static bool ram_new_sealed(struct ram *r, int seal)
{
	r->fd = tu_memfd("guest-ram", RAM_SIZE, seal);
	if (r->fd < 0)
		return false;
	r->p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	return r->p != MAP_FAILED;
}

static bool ram_new(struct ram *r)
{
	return ram_new_sealed(r, 1);
}

static void ram_free(struct ram *r)
{
	munmap(r->p, RAM_SIZE);
	close(r->fd);
}

/* Ring i: desc at 0x1000 + i*0x3000, avail +0x1000, used +0x2000. */
static void make_info(struct vp_frontend_info *in, struct ram *r, int efd[4], uint64_t feat)
{
	memset(in, 0, sizeof(*in));
	vp_uuid_parse("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", in->uuid);
	in->device_type = VP_VIRTIO_ID_NET;
	in->device_features = feat;
	in->driver_features = feat;
	in->nregions = 1;
	in->regions[0] = (struct vp_dev_region){ .gpa = 0, .size = RAM_SIZE,
		.uaddr = (uint64_t)(uintptr_t)r->p, .fd_offset = 0, .prot = VP_MEM_RW, .fd = r->fd };
	in->nrings = 2;
	for (int i = 0; i < 2; i++) {
		in->rings[i] = (struct vp_frontend_ring){
			.num = RING_NUM, .desc = 0x1000 + i * 0x3000,
			.avail = 0x2000 + i * 0x3000, .used = 0x3000 + i * 0x3000,
			.enabled = true, .kick_fd = efd[2 * i], .call_fd = efd[2 * i + 1],
		};
	}
	in->config_len = 6;
	memcpy(in->config, "\x52\x54\x00\x12\x34\x56", 6);
}

static void eventfds(int efd[4])
{
	for (int i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

static void close4(int efd[4])
{
	for (int i = 0; i < 4; i++)
		close(efd[i]);
}

/* The two fds refer to the same eventfd. */
static bool same_eventfd(int a, int b)
{
	uint64_t v = 5;

	if (a < 0 || b < 0 || write(a, &v, 8) != 8)
		return false;
	v = 0;
	return read(b, &v, 8) == 8 && v == 5;
}

static bool client_settled(void *arg)
{
	return vp_client_state(arg) != VP_CLIENT_HANDSHAKE;
}

static const struct vp_device *only_device(struct vp_server *s)
{
	struct vp_pci_info *info = vp_pci_info_new();
	const struct vp_device *dev = NULL;

	/* The entry's device outlives the registry: it is the server's. */
	if (info && vp_server_info(s, info) == 1)
		dev = vp_pci_info_get(info, 0)->dev;
	vp_pci_info_free(info);
	return dev;
}

/* ---- native dialect ---- */

TEST(native_handshake_stop_restart)
{
	struct vp_server *s = new_server("native", 0);
	struct vp_frontend_info in;
	struct vp_client *cl = NULL;
	const struct vp_device *d;
	struct ram ram;
	int efd[4], efd2[4], before;
	char u[40];

	REQUIRE(s && ram_new(&ram));
	before = tu_count_fds();
	eventfds(efd);
	nev = 0;
	make_info(&in, &ram, efd, F_VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX);
	REQUIRE(vp_client_connect(&cl, vp_server_path(s), &in) == 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	d = only_device(s);
	REQUIRE(d);
	CHECK_EQ(vp_client_device_id(cl), d->id);
	CHECK_EQ(vp_client_features(cl), in.driver_features);
	CHECK_EQ(d->dialect, VP_DIALECT_NATIVE);
	CHECK_EQ(d->state, VP_DEV_READY);
	CHECK_EQ(d->type, VP_VIRTIO_ID_NET);
	vp_uuid_format(d->uuid, u);
	CHECK(!strcmp(u, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"));
	CHECK_EQ(d->nregions, 1);
	CHECK_EQ(d->regions[0].size, RAM_SIZE);
	CHECK_EQ(d->nrings, 2);
	CHECK_EQ(d->rings[1].desc, 0x4000);
	CHECK_EQ(d->rings[1].used, 0x6000);
	CHECK_EQ(d->rings[0].num, RING_NUM);
	CHECK_EQ(d->driver_features, in.driver_features);
	CHECK_EQ(d->config_len, 6);
	CHECK(!memcmp(d->config, in.config, 6));
	CHECK(same_eventfd(efd[0], d->rings[0].kick_fd));
	CHECK(same_eventfd(d->rings[1].call_fd, efd[3]));
	CHECK_EQ(count_ev(VP_EV_DEVICE_NEW, d->id), 1);
	CHECK_EQ(count_ev(VP_EV_DEVICE_READY, d->id), 1);

	/* The device's memory is the frontend's: a write shows through. */
	ram.p[0x2002] = 7;
	struct vp_ring_status st;

	CHECK_EQ(vp_device_ring_status(d, 0, &st), 0);
	CHECK_EQ(st.avail_idx, 7);

	/* Reset (guest reboot): stopped, then announced again with new eventfds. */
	uint64_t id = d->id;

	CHECK_EQ(vp_client_stop(cl, VP_PCI_STOP_RESET), 0);
	pump(s, 50);
	CHECK_EQ(count_ev(VP_EV_DEVICE_STOPPED, id), 1);
	CHECK_EQ(d->state, VP_DEV_STOPPED);
	CHECK_EQ(d->rings[0].kick_fd, -1);
	CHECK_EQ(d->nregions, 0); /* unmapped until the next HELLO */
	CHECK(d->mem == NULL);
	eventfds(efd2);
	make_info(&in, &ram, efd2, F_VERSION_1 | F_MRG_RXBUF);
	CHECK_EQ(vp_client_restart(cl, &in), 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STARTED);
	CHECK_EQ(d->state, VP_DEV_READY);
	CHECK_EQ(d->generation, 2);
	CHECK(same_eventfd(efd2[2], d->rings[1].kick_fd));
	CHECK_EQ(d->driver_features, F_VERSION_1 | F_MRG_RXBUF);

	/* STOP(shutdown): the server closes the connection itself. */
	CHECK_EQ(vp_client_stop(cl, VP_PCI_STOP_SHUTDOWN), 0);
	pump(s, 50);
	CHECK_EQ(count_ev(VP_EV_DEVICE_STOPPED, id), 2);
	CHECK_EQ(count_ev(VP_EV_DEVICE_REMOVED, id), 1);
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(vp_client_dispatch(cl), -ECONNABORTED);
	vp_client_free(cl);
	close4(efd);
	close4(efd2);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}

/* A client whose device the server must refuse: reason given, device gone. */
static void refused(struct vp_frontend_info *in, const char *why)
{
	struct vp_server *s = new_server("refuse", 0);
	struct vp_client *cl = NULL;
	int before = tu_count_fds();

	REQUIRE(s);
	nev = 0;
	REQUIRE(vp_client_connect(&cl, vp_server_path(s), in) == 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_FAILED);
	if (!strstr(vp_client_error(cl), why)) {
		fprintf(stderr, "  reason '%s' lacks '%s'\n", vp_client_error(cl), why);
		CHECK(0);
	}
	pump(s, 30);
	CHECK_EQ(count_ev(VP_EV_DEVICE_REMOVED, 0), 1);
	CHECK_EQ(count_ev(VP_EV_DEVICE_READY, 0), 0);
	vp_client_free(cl);
	vp_server_free(s);
	CHECK_EQ(tu_count_fds(), before - 3); /* the server's socket, epoll fd, timerfd */
}

TEST(native_refusals)
{
	struct vp_frontend_info in;
	struct ram ram;
	int efd[4];

	REQUIRE(ram_new(&ram));
	eventfds(efd);
	make_info(&in, &ram, efd, F_VERSION_1 | (1ull << 0) /* CSUM: not supported */);
	refused(&in, "does not support");
	make_info(&in, &ram, efd, F_MRG_RXBUF);
	refused(&in, "VERSION_1");
	make_info(&in, &ram, efd, F_VERSION_1);
	in.rings[1].used = RAM_SIZE - 16;
	refused(&in, "outside");
	make_info(&in, &ram, efd, F_VERSION_1);
	in.device_type = 2;
	refused(&in, "not supported");
	make_info(&in, &ram, efd, F_VERSION_1);
	in.regions[0].size = 2 * RAM_SIZE; /* larger than the memfd */
	refused(&in, "rejected");
	make_info(&in, &ram, efd, F_VERSION_1);
	in.nrings = 1;
	refused(&in, "rings 0 and 1");
	close4(efd);
	ram_free(&ram);
}

/* ---- stock vhost-user, raw ---- */

static int connect_to(struct vp_server *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, vp_server_path(s));
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_req(int fd, uint32_t req, uint64_t u64, const int *fds, unsigned nfds)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.u64 = u64;
	if (nfds)
		memcpy(m.fds, fds, nfds * sizeof(int));
	m.nfds = nfds;
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

static int send_mem(int fd, struct ram *r, uint64_t size)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_VU_SET_MEM_TABLE, 0);
	m.p.mem.nregions = 1;
	m.p.mem.regions[0] = (struct vp_mem_region_wire){ 0, size, (uint64_t)(uintptr_t)r->p, 0 };
	m.fds[0] = r->fd;
	m.nfds = 1;
	return vp_sock_send(fd, &m);
}

static int send_addr(int fd, struct ram *r, uint32_t idx, uint64_t desc_off)
{
	struct vp_msg m;
	uint64_t base = (uint64_t)(uintptr_t)r->p;

	vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
	m.p.addr.index = idx;
	m.p.addr.desc = base + desc_off;
	m.p.addr.avail = base + desc_off + 0x1000;
	m.p.addr.used = base + desc_off + 0x2000;
	return vp_sock_send(fd, &m);
}

/* What QEMU sends when the guest driver sets DRIVER_OK. */
static void driver_ok(int fd, struct ram *r, int efd[4])
{
	send_req(fd, VP_VU_SET_FEATURES, F_VERSION_1 | F_PROTOCOL | F_MRG_RXBUF, NULL, 0);
	send_mem(fd, r, RAM_SIZE);
	for (uint32_t i = 0; i < 2; i++) {
		send_state(fd, VP_VU_SET_VRING_NUM, i, RING_NUM);
		send_state(fd, VP_VU_SET_VRING_BASE, i, 0);
		send_addr(fd, r, i, 0x1000 + i * 0x3000);
		send_req(fd, VP_VU_SET_VRING_KICK, i, &efd[2 * i], 1);
		send_req(fd, VP_VU_SET_VRING_CALL, i, &efd[2 * i + 1], 1);
	}
	for (uint32_t i = 0; i < 2; i++)
		send_state(fd, VP_VU_SET_VRING_ENABLE, i, 1);
}

/* Read one reply from the server within 1 s. */
static int read_reply(int fd, struct vp_server *s, struct vp_msg *m)
{
	struct vp_rx rx;
	int64_t end = now_ms() + 1000;

	vp_rx_init(&rx);
	while (now_ms() < end) {
		int r = vp_sock_recv(fd, &rx, m);

		if (r)
			return r;
		pump(s, 5);
	}
	return -ETIMEDOUT;
}

TEST(vhost_user_driver_ok_reboot)
{
	struct vp_server *s = new_server("vu", 0);
	const struct vp_device *d;
	struct vp_msg rep;
	struct ram ram;
	int efd[4], efd2[4], fd, before;
	char u[40];

	REQUIRE(s && ram_new(&ram));
	before = tu_count_fds();
	nev = 0;
	eventfds(efd);
	fd = connect_to(s);
	REQUIRE(fd >= 0);
	send_req(fd, VP_VU_GET_FEATURES, 0, NULL, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.p.u64, VP_SERVER_DEFAULT_FEATURES);
	send_req(fd, VP_VU_SET_OWNER, 0, NULL, 0);
	driver_ok(fd, &ram, efd);
	pump(s, 50);
	d = only_device(s);
	REQUIRE(d);
	CHECK_EQ(d->dialect, VP_DIALECT_VHOST_USER);
	CHECK_EQ(d->state, VP_DEV_READY);
	vp_uuid_format(d->uuid, u);
	CHECK(!strcmp(u, "11111111-2222-4333-8444-555555555555"));
	/* Process-virtual ring addresses became guest-physical ones. */
	CHECK_EQ(d->rings[0].desc, 0x1000);
	CHECK_EQ(d->rings[1].avail, 0x5000);
	CHECK_EQ(d->rings[1].desc_uva, (uint64_t)(uintptr_t)ram.p + 0x4000);
	CHECK(same_eventfd(efd[2], d->rings[1].kick_fd));
	CHECK_EQ(count_ev(VP_EV_DEVICE_READY, d->id), 1);

	/* Guest reboot: rings stopped with GET_VRING_BASE, then DRIVER_OK again. */
	uint16_t used_idx = 42;

	memcpy(ram.p + 0x3002, &used_idx, 2); /* used->idx of ring 0 */
	send_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.p.state.index, 0);
	CHECK_EQ(rep.p.state.num, 42);
	send_state(fd, VP_VU_GET_VRING_BASE, 1, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(d->state, VP_DEV_STOPPED);
	CHECK_EQ(count_ev(VP_EV_DEVICE_STOPPED, d->id), 1);
	eventfds(efd2);
	driver_ok(fd, &ram, efd2);
	pump(s, 50);
	CHECK_EQ(d->state, VP_DEV_READY);
	CHECK_EQ(d->generation, 2);
	CHECK(same_eventfd(efd2[0], d->rings[0].kick_fd));

	/* A replaced call fd while running is reported as a change. */
	send_req(fd, VP_VU_SET_VRING_CALL, 1, &efd[3], 1);
	pump(s, 30);
	CHECK_EQ(count_ev(VP_EV_DEVICE_CHANGED, d->id), 1);
	CHECK(same_eventfd(d->rings[1].call_fd, efd[3]));
	/* Polling mode: no fd. */
	send_req(fd, VP_VU_SET_VRING_CALL, 1 | VP_VU_VRING_NOFD, NULL, 0);
	pump(s, 30);
	CHECK_EQ(d->rings[1].call_fd, -1);

	close(fd);
	pump(s, 30);
	CHECK_EQ(vp_server_connections(s), 0);
	close4(efd);
	close4(efd2);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}

static bool readable(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 1;
}

/*
 * A backend holds the GET_VRING_BASE reply until it stopped the ring: the
 * base is read after the release (what it completed meanwhile counts), what
 * the frontend sent meanwhile is answered after it in order, a timeout
 * answers anyway, and a frontend gone while held leaves nothing behind.
 */
TEST(get_vring_base_held_until_released)
{
	struct vp_server *s;
	const struct vp_device *d;
	struct vp_msg rep;
	struct ram ram;
	int efd[4], fd, before;
	uint16_t used_idx = 42;
	uint64_t id;
	int64_t t0;

	stop_ms = 300;
	s = new_server("hold", 0);
	stop_ms = 0;
	REQUIRE(s && ram_new(&ram));
	before = tu_count_fds();
	nev = 0;
	eventfds(efd);
	fd = connect_to(s);
	REQUIRE(fd >= 0);
	send_req(fd, VP_VU_SET_OWNER, 0, NULL, 0);
	driver_ok(fd, &ram, efd);
	pump(s, 50);
	d = only_device(s);
	REQUIRE(d && d->state == VP_DEV_READY);
	id = d->id;
	CHECK_EQ(vp_server_hold_stop(s, id), -EINVAL);   /* not in a callback */
	CHECK_EQ(vp_server_hold_stop(s, id + 1000), -ENOENT);
	CHECK_EQ(vp_server_release_stop(s, id), -EINVAL); /* nothing held */

	memcpy(ram.p + 0x3002, &used_idx, 2);
	hold_stops = true;
	send_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	send_state(fd, VP_VU_GET_VRING_BASE, 1, 0);  /* waits behind the hold */
	pump(s, 100);
	hold_stops = false;
	CHECK_EQ(hold_rc, 0);
	CHECK_EQ(d->state, VP_DEV_STOPPED);
	CHECK(!readable(fd));
	used_idx = 50;  /* the backend completed more before it let go */
	memcpy(ram.p + 0x3002, &used_idx, 2);
	CHECK_EQ(vp_server_release_stop(s, id), 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.request, VP_VU_GET_VRING_BASE);
	CHECK_EQ(rep.p.state.index, 0);
	CHECK_EQ(rep.p.state.num, 50);
	/* Ring 1 of a device already stopped: answered without a hold. */
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.p.state.index, 1);
	CHECK_EQ(count_ev(VP_EV_DEVICE_STOPPED, id), 1);
	CHECK_EQ(vp_server_release_stop(s, id), -EINVAL);

	/* Never released: the reply goes after stop_timeout_ms. */
	driver_ok(fd, &ram, efd);
	pump(s, 50);
	REQUIRE(d->state == VP_DEV_READY);
	hold_rc = 1;
	hold_stops = true;
	t0 = now_ms();
	send_state(fd, VP_VU_GET_VRING_BASE, 1, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	hold_stops = false;
	CHECK_EQ(hold_rc, 0);
	CHECK(now_ms() - t0 >= 280);
	CHECK_EQ(rep.p.state.index, 1);
	send_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.p.state.index, 0);

	/* Gone while held: nothing leaks, the device is removed. */
	driver_ok(fd, &ram, efd);
	pump(s, 50);
	REQUIRE(d->state == VP_DEV_READY);
	hold_rc = 1;
	hold_stops = true;
	send_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	pump(s, 50);
	hold_stops = false;
	CHECK_EQ(hold_rc, 0);
	close(fd);
	pump(s, 50);
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(count_ev(VP_EV_DEVICE_REMOVED, id), 1);
	CHECK_EQ(vp_server_release_stop(s, id), -ENOENT);
	close4(efd);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}

static bool client_stopped(void *arg)
{
	return vp_client_state(arg) != VP_CLIENT_STOPPING;
}

/*
 * Native STOP with NEED_REPLY: acked after the STOPPED callback returned; an
 * asynchronous backend holds the ack until it let go; a timeout acks anyway;
 * the client waits for none of it (STOPPING until the ack is dispatched).
 */
TEST(native_stop_ack_held_until_released)
{
	struct vp_server *s;
	struct vp_frontend_info in;
	struct vp_client *cl = NULL;
	struct ram ram;
	int efd[4], before;
	uint64_t id;
	int64_t t0;

	stop_ms = 300;
	s = new_server("nstop", 0);
	stop_ms = 0;
	REQUIRE(s && ram_new(&ram));
	before = tu_count_fds();
	nev = 0;
	eventfds(efd);
	make_info(&in, &ram, efd, F_VERSION_1);
	REQUIRE(vp_client_connect(&cl, vp_server_path(s), &in) == 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	id = vp_client_device_id(cl);
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STOPPING);
	CHECK_EQ(vp_client_stop_need_reply(cl), -EINVAL);  /* not STARTED */
	/* A synchronous backend: acked once the callback returned. */
	CHECK(pump_until(s, cl, client_stopped, cl, 3000));
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STOPPED);
	CHECK_EQ(count_ev(VP_EV_DEVICE_STOPPED, id), 1);

	/* An asynchronous one holds the ack; nothing else is read meanwhile. */
	CHECK_EQ(vp_client_restart(cl, &in), 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	hold_rc = 1;
	hold_stops = true;
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	pump_until(s, cl, client_stopped, cl, 100);
	hold_stops = false;
	CHECK_EQ(hold_rc, 0);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STOPPING);
	CHECK_EQ(vp_server_release_stop(s, id), 0);
	CHECK(pump_until(s, cl, client_stopped, cl, 3000));
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STOPPED);
	CHECK_EQ(vp_server_release_stop(s, id), -EINVAL);

	/* Never released: acked after stop_timeout_ms. */
	CHECK_EQ(vp_client_restart(cl, &in), 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	REQUIRE(vp_client_state(cl) == VP_CLIENT_STARTED);
	hold_rc = 1;
	hold_stops = true;
	t0 = now_ms();
	CHECK_EQ(vp_client_stop_need_reply(cl), 0);
	CHECK(pump_until(s, cl, client_stopped, cl, 3000));
	hold_stops = false;
	CHECK_EQ(hold_rc, 0);
	CHECK(now_ms() - t0 >= 280);
	CHECK_EQ(vp_client_state(cl), VP_CLIENT_STOPPED);

	/* No ack due (plain STOP, shutdown): nothing to hold. */
	CHECK_EQ(vp_client_restart(cl, &in), 0);
	CHECK(pump_until(s, cl, client_settled, cl, 3000));
	hold_rc = 1;
	hold_stops = true;
	CHECK_EQ(vp_client_stop(cl, VP_PCI_STOP_RESET), 0);
	pump(s, 50);
	hold_stops = false;
	CHECK_EQ(hold_rc, -EINVAL);
	CHECK_EQ(count_ev(VP_EV_DEVICE_STOPPED, id), 4);
	vp_client_free(cl);
	pump(s, 50);
	CHECK_EQ(vp_server_connections(s), 0);
	close4(efd);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}

/* Send bytes with fds attached, bypassing the encoder's checks. */
static ssize_t raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned n)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr a;
	} cb;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n) {
		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

/* A one-region SET_MEM_TABLE as raw bytes. */
static size_t raw_mem_table(uint8_t *b, uint64_t size)
{
	uint32_t h[3] = { VP_VU_SET_MEM_TABLE, VP_MSG_VERSION, 40 };
	uint32_t one = 1;

	memset(b, 0, 52);
	memcpy(b, h, 12);
	memcpy(b + 12, &one, 4);
	memcpy(b + 20 + 8, &size, 8);
	return 52;
}

/* A frontend truncates its RAM under the server, then asks it to read. */
TEST(truncated_memory_does_not_kill_the_server)
{
	struct vp_server *s;

	allow_unsealed = true;  /* the risk this case is about */
	s = new_server("trunc", 0);
	allow_unsealed = false;
	const struct vp_device *d;
	struct vp_ring_status st;
	struct vp_msg rep;
	struct ram ram;
	int efd[4], fd;

	REQUIRE(s && ram_new_sealed(&ram, 0));
	eventfds(efd);
	fd = connect_to(s);
	REQUIRE(fd >= 0);
	driver_ok(fd, &ram, efd);
	pump(s, 50);
	d = only_device(s);
	REQUIRE(d && d->state == VP_DEV_READY);
	CHECK_EQ(vp_device_ring_status(d, 0, &st), 0);
	REQUIRE(ftruncate(ram.fd, 4096) == 0); /* the rings lived past 4 KiB */
	CHECK_EQ(vp_device_ring_status(d, 0, &st), -EFAULT);
	send_state(fd, VP_VU_GET_VRING_BASE, 0, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.p.state.num, 0); /* unreadable: the base it was given */
	CHECK_EQ(d->state, VP_DEV_STOPPED);
	close(fd);
	pump(s, 30);
	CHECK_EQ(vp_server_connections(s), 0);
	close4(efd);
	vp_server_free(s);
	ram_free(&ram);
}

/* Wait for the server to close our end. */
static bool dropped(int fd, struct vp_server *s)
{
	int64_t end = now_ms() + 1000;
	char b[64];

	while (now_ms() < end) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

		if (n == 0)
			return true;
		pump(s, 5);
	}
	return false;
}

TEST(malformed_frontends_dropped_others_unaffected)
{
	struct vp_server *s = new_server("bad", 0);
	struct vp_frontend_info in;
	struct vp_client *good = NULL;
	struct ram ram;
	int efd[4], fd, before, extra;
	const struct vp_device *gd;

	REQUIRE(s && ram_new(&ram));
	eventfds(efd);
	make_info(&in, &ram, efd, F_VERSION_1);
	REQUIRE(vp_client_connect(&good, vp_server_path(s), &in) == 0);
	REQUIRE(pump_until(s, good, client_settled, good, 3000));
	gd = vp_server_find(s, vp_client_device_id(good));
	REQUIRE(gd && gd->state == VP_DEV_READY);
	extra = eventfd(0, EFD_CLOEXEC);
	before = tu_count_fds();

	/* 1. short header, then hang up */
	fd = connect_to(s);
	CHECK_EQ(write(fd, "\x01\x00\x00", 3), 3);
	close(fd);
	pump(s, 30);

	/* 2. payload size over the maximum */
	{
		uint32_t h[3] = { VP_VU_SET_MEM_TABLE, VP_MSG_VERSION, VP_MSG_MAX_PAYLOAD + 1 };

		fd = connect_to(s);
		CHECK_EQ(write(fd, h, 12), 12);
		CHECK(dropped(fd, s));
		close(fd);
	}
	/* 3. unknown request */
	{
		uint32_t h[3] = { 99, VP_MSG_VERSION, 0 };

		fd = connect_to(s);
		CHECK_EQ(write(fd, h, 12), 12);
		CHECK(dropped(fd, s));
		close(fd);
	}
	/* 4. an fd on a message that takes none (raw, the encoder would refuse) */
	{
		uint32_t h[3] = { VP_VU_SET_OWNER, VP_MSG_VERSION, 0 };

		fd = connect_to(s);
		CHECK_EQ(raw_send(fd, h, 12, &extra, 1), 12);
		CHECK(dropped(fd, s));
		close(fd);
	}
	/* 5. overlapping regions */
	{
		struct vp_msg m;

		vp_msg_init(&m, VP_VU_SET_MEM_TABLE, 0);
		m.p.mem.nregions = 2;
		m.p.mem.regions[0] = (struct vp_mem_region_wire){ 0, 0x10000, 0x7f0000000000, 0 };
		m.p.mem.regions[1] = (struct vp_mem_region_wire){ 0x8000, 0x10000, 0x7f1000000000, 0 };
		m.fds[0] = m.fds[1] = ram.fd;
		m.nfds = 2;
		fd = connect_to(s);
		CHECK_EQ(vp_sock_send(fd, &m), 0);
		CHECK(dropped(fd, s));
		close(fd);
	}
	/* 6. a region larger than its fd, 7. zero-size region */
	fd = connect_to(s);
	send_mem(fd, &ram, 4 * RAM_SIZE);
	CHECK(dropped(fd, s));
	close(fd);
	{
		uint8_t b[52];
		size_t n = raw_mem_table(b, 0);

		fd = connect_to(s);
		CHECK_EQ(raw_send(fd, b, n, &ram.fd, 1), (ssize_t)n);
		CHECK(dropped(fd, s));
		close(fd);
	}
	/* 8. ring size not a power of two */
	fd = connect_to(s);
	send_state(fd, VP_VU_SET_VRING_NUM, 0, 100);
	CHECK(dropped(fd, s));
	close(fd);
	/* 9. ring index out of range */
	fd = connect_to(s);
	send_state(fd, VP_VU_SET_VRING_NUM, 5, 256);
	CHECK(dropped(fd, s));
	close(fd);
	/* 10. ring addresses outside memory */
	fd = connect_to(s);
	send_mem(fd, &ram, RAM_SIZE);
	send_state(fd, VP_VU_SET_VRING_NUM, 0, 256);
	send_addr(fd, &ram, 0, RAM_SIZE - 0x1000);
	CHECK(dropped(fd, s));
	close(fd);
	/* 11. wrong state: kick before the ring has addresses */
	fd = connect_to(s);
	send_req(fd, VP_VU_SET_VRING_KICK, 0, &extra, 1);
	CHECK(dropped(fd, s));
	close(fd);
	/* 12. wrong state: ring size changed while started */
	{
		int e2[4];

		eventfds(e2);
		fd = connect_to(s);
		driver_ok(fd, &ram, e2);
		send_state(fd, VP_VU_SET_VRING_NUM, 0, 128);
		CHECK(dropped(fd, s));
		close(fd);
		close4(e2);
	}
	/* 13. acked features never offered */
	fd = connect_to(s);
	send_req(fd, VP_VU_SET_FEATURES, F_VERSION_1 | (1ull << 0), NULL, 0);
	CHECK(dropped(fd, s));
	close(fd);
	/* 14. a native reply as the first message */
	{
		struct vp_msg m;

		vp_msg_init(&m, VP_PCI_GET_UUID, VP_MSG_REPLY);
		fd = connect_to(s);
		CHECK_EQ(vp_sock_send(fd, &m), 0);
		CHECK(dropped(fd, s));
		close(fd);
	}
	/* 15. SET_MEM_TABLE with fewer fds than regions */
	{
		uint8_t b[52];
		size_t n = raw_mem_table(b, RAM_SIZE);

		fd = connect_to(s);
		CHECK_EQ(raw_send(fd, b, n, NULL, 0), (ssize_t)n);
		CHECK(dropped(fd, s));
		close(fd);
	}
	pump(s, 30);
	/* The good device never noticed. */
	CHECK_EQ(vp_server_connections(s), 1);
	CHECK(vp_server_find(s, vp_client_device_id(good)) == gd);
	CHECK_EQ(gd->state, VP_DEV_READY);
	CHECK(same_eventfd(efd[0], gd->rings[0].kick_fd));
	CHECK_EQ(tu_count_fds(), before);
	vp_client_free(good);
	close(extra);
	close4(efd);
	vp_server_free(s);
	ram_free(&ram);
}

/* A native frontend says HELLO, gets asked for its UUID, and vanishes. */
TEST(native_disconnect_mid_handshake)
{
	struct vp_server *s = new_server("midway", 0);
	struct vp_msg m;
	int fd, before;

	REQUIRE(s);
	before = tu_count_fds();
	nev = 0;
	for (int stage = 0; stage < 2; stage++) {
		fd = connect_to(s);
		REQUIRE(fd >= 0);
		vp_msg_init(&m, VP_PCI_HELLO, 0);
		m.p.hello.magic = VP_PCI_MAGIC;
		m.p.hello.major = VP_PCI_VERSION_MAJOR;
		CHECK_EQ(vp_sock_send(fd, &m), 0);
		CHECK_EQ(read_reply(fd, s, &m), 1); /* HELLO reply */
		CHECK_EQ(read_reply(fd, s, &m), 1);
		CHECK_EQ(m.request, VP_PCI_GET_UUID);
		if (stage == 1) {
			/* answer the UUID, then vanish while memory info is asked */
			vp_msg_init(&m, VP_PCI_GET_UUID, VP_MSG_REPLY);
			CHECK_EQ(vp_sock_send(fd, &m), 0);
			CHECK_EQ(read_reply(fd, s, &m), 1);
			CHECK_EQ(m.request, VP_PCI_GET_MEMORY_INFO);
		}
		close(fd);
		pump(s, 30);
		CHECK_EQ(vp_server_connections(s), 0);
	}
	CHECK_EQ(count_ev(VP_EV_DEVICE_NEW, 0), 2);
	CHECK_EQ(count_ev(VP_EV_DEVICE_REMOVED, 0), 2);
	CHECK_EQ(count_ev(VP_EV_DEVICE_READY, 0), 0);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
}

TEST(connection_limit)
{
	struct vp_server *s = new_server("limit", 4);
	int fds[5], before;

	REQUIRE(s);
	before = tu_count_fds();
	for (int i = 0; i < 4; i++)
		fds[i] = connect_to(s);
	pump(s, 30);
	CHECK_EQ(vp_server_connections(s), 4);
	fds[4] = connect_to(s);
	REQUIRE(fds[4] >= 0);
	CHECK(dropped(fds[4], s));
	CHECK_EQ(vp_server_connections(s), 4);
	for (int i = 0; i < 5; i++)
		close(fds[i]);
	pump(s, 30);
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
}

TEST(default_limit_is_32)
{
	struct vp_server *s = new_server("limit32", 0);
	int fds[33];

	REQUIRE(s);
	CHECK_EQ(vp_server_max_connections(s), 32);
	for (int i = 0; i < 33; i++)
		fds[i] = connect_to(s);
	pump(s, 50);
	CHECK_EQ(vp_server_connections(s), 32);
	CHECK(dropped(fds[32], s));
	for (int i = 0; i < 33; i++)
		close(fds[i]);
	vp_server_free(s);
}

static bool dev_count_is(void *arg)
{
	struct vp_pci_info *info = vp_pci_info_new();
	void **a = arg;
	int n = info ? vp_server_info(a[0], info) : -ENOMEM;
	bool ok = n == (int)(uintptr_t)a[1] &&
		  (n == 0 || vp_pci_info_get(info, 0)->dev->state == VP_DEV_READY);

	vp_pci_info_free(info);
	return ok;
}

/* The registry with several devices: walked by index up to its count, found
 * by frontend UUID, refilled after a device goes. */
TEST(registry_by_index_and_uuid)
{
	struct vp_server *s = new_server("registry", 0);
	struct vp_pci_info *info = vp_pci_info_new();
	struct vp_client *cl[3] = { NULL };
	struct vp_frontend_info in;
	const struct vp_pci_dev *e;
	uint8_t u[16];
	unsigned seen = 0;
	struct ram ram;
	int efd[3][4], before;
	void *arg2[2] = { NULL, (void *)(uintptr_t)2 }, *arg0[2] = { NULL, NULL };

	REQUIRE(s && info && ram_new(&ram));
	arg2[0] = arg0[0] = s;
	before = tu_count_fds();
	CHECK_EQ(vp_server_info(s, info), 0);
	CHECK_EQ(vp_pci_info_count(info), 0);
	CHECK(vp_pci_info_get(info, 0) == NULL);
	for (unsigned i = 0; i < 3; i++) {
		eventfds(efd[i]);
		make_info(&in, &ram, efd[i], F_VERSION_1);
		in.uuid[15] = (uint8_t)i;
		REQUIRE(vp_client_connect(&cl[i], vp_server_path(s), &in) == 0);
		REQUIRE(pump_until(s, cl[i], client_settled, cl[i], 3000));
		REQUIRE(vp_client_state(cl[i]) == VP_CLIENT_STARTED);
	}
	CHECK_EQ(vp_server_info(s, info), 3);
	CHECK_EQ(vp_pci_info_count(info), 3);
	for (unsigned i = 0; i < 3; i++) {
		REQUIRE((e = vp_pci_info_get(info, i)) != NULL);
		CHECK_EQ(e->device_type, VP_VIRTIO_ID_NET);
		CHECK(e->dev == vp_server_find(s, e->device_id));
		seen |= 1u << (e->dev->uuid[15] & 7);
	}
	CHECK_EQ(seen, 7);
	CHECK(vp_pci_info_get(info, 3) == NULL);
	CHECK(vp_pci_info_get(info, UINT_MAX) == NULL);
	memcpy(u, in.uuid, 16);
	for (unsigned i = 0; i < 3; i++) {
		u[15] = (uint8_t)i;
		REQUIRE((e = vp_pci_info_find(info, u)) != NULL);
		CHECK_EQ(e->device_id, vp_client_device_id(cl[i]));
	}
	u[15] = 3;
	CHECK(vp_pci_info_find(info, u) == NULL);

	/* One frontend goes: the refilled registry no longer has it. */
	vp_client_free(cl[1]);
	CHECK(pump_until(s, NULL, dev_count_is, arg2, 3000));
	CHECK_EQ(vp_server_info(s, info), 2);
	u[15] = 1;
	CHECK(vp_pci_info_find(info, u) == NULL);
	u[15] = 2;
	REQUIRE((e = vp_pci_info_find(info, u)) != NULL);
	CHECK_EQ(e->device_id, vp_client_device_id(cl[2]));
	CHECK(vp_pci_info_get(info, 2) == NULL);

	vp_client_free(cl[0]);
	vp_client_free(cl[2]);
	CHECK(pump_until(s, NULL, dev_count_is, arg0, 3000));
	CHECK_EQ(vp_server_info(s, info), 0);
	vp_pci_info_free(info);
	for (unsigned i = 0; i < 3; i++)
		close4(efd[i]);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}

TEST(vhost_user_client_killed_and_reconnect)
{
	struct vp_server *s = new_server("kill", 0);
	struct vp_frontend_info in;
	struct ram ram;
	int efd[4];

	REQUIRE(s && ram_new(&ram));
	eventfds(efd);
	make_info(&in, &ram, efd, F_VERSION_1 | F_MRG_RXBUF | F_PROTOCOL);
	for (int round = 0; round < 2; round++) {
		int go[2];

		REQUIRE(pipe(go) == 0);
		pid_t pid = fork();

		if (pid == 0) {
			uint64_t neg = 0;
			int sock = vp_vu_frontend_start(vp_server_path(s), &in, &neg, 3000);
			char b;

			if (sock < 0)
				_exit(3);
			/* Stay READY until the parent has looked (round 0: killed here). */
			if (read(go[0], &b, 1) != 1)
				_exit(5);
			uint16_t last[2];

			_exit(vp_vu_frontend_stop(sock, 2, last, 3000) == 0 ? 0 : 4);
		}
		REQUIRE(pid > 0);
		void *arg1[2] = { s, (void *)1 };

		CHECK(pump_until(s, NULL, dev_count_is, arg1, 5000));
		const struct vp_device *d = only_device(s);

		REQUIRE(d);
		CHECK_EQ(d->dialect, VP_DIALECT_VHOST_USER);
		CHECK_EQ(d->driver_features, F_VERSION_1 | F_MRG_RXBUF | F_PROTOCOL);
		CHECK_EQ(d->protocol_features, 1ull << VP_VU_PROTOCOL_F_REPLY_ACK);
		CHECK_EQ(d->rings[0].desc, 0x1000);
		if (round == 0)
			kill(pid, SIGKILL);
		else
			CHECK_EQ(write(go[1], "g", 1), 1);
		close(go[0]);
		close(go[1]);
		int st = 0;
		int64_t end = now_ms() + 5000;

		/* Keep serving: the child may be waiting for our replies. */
		while (waitpid(pid, &st, WNOHANG) == 0 && now_ms() < end)
			pump(s, 10);
		if (round == 1)
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		void *arg0[2] = { s, (void *)0 };

		CHECK(pump_until(s, NULL, dev_count_is, arg0, 2000));
	}
	close4(efd);
	vp_server_free(s);
	ram_free(&ram);
}

TEST(socket_file_handling)
{
	struct vp_server_config cfg = { 0 };
	struct vp_server *s = NULL, *s2 = NULL;
	char path[128];
	struct stat st;
	int fd;

	make_tmpdir();
	snprintf(path, sizeof(path), "%s/file.sock", tmpdir);
	cfg.path = path;
	/* A regular file is never replaced. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	CHECK_EQ(vp_server_new(&s, &cfg), -EEXIST);
	unlink(path);
	/* A live server's socket is not stolen; a stale one is replaced. */
	CHECK_EQ(vp_server_new(&s, &cfg), 0);
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(vp_server_new(&s2, &cfg), -EADDRINUSE);
	vp_server_free(s);
	CHECK(stat(path, &st) < 0); /* removed on free */
	/* A crashed server leaves a bound socket file nobody listens on. */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int l = socket(AF_UNIX, SOCK_STREAM, 0);

		strcpy(sa.sun_path, path);
		CHECK_EQ(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(l);
	}
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(vp_server_new(&s2, &cfg), 0);
	vp_server_free(s2);
	CHECK(stat(path, &st) < 0); /* removed on free */
	/* Path too long for sockaddr_un */
	char lp[200];

	memset(lp, 'a', sizeof(lp) - 1);
	lp[0] = '/';
	lp[sizeof(lp) - 1] = 0;
	cfg.path = lp;
	CHECK_EQ(vp_server_new(&s2, &cfg), -ENAMETOOLONG);
	cfg.path = "";
	CHECK_EQ(vp_server_new(&s2, &cfg), -EINVAL);
	cfg.path = path;
	cfg.max_connections = VP_SERVER_MAX_CONNECTIONS + 1;
	CHECK_EQ(vp_server_new(&s2, &cfg), -EINVAL);
}

TEST(uuid_format_parse)
{
	uint8_t u[16], v[16];
	char s[40];

	for (int i = 0; i < 16; i++)
		u[i] = (uint8_t)(i * 17);
	vp_uuid_format(u, s);
	CHECK(!strcmp(s, "00112233-4455-6677-8899-aabbccddeeff"));
	CHECK_EQ(vp_uuid_parse(s, v), 0);
	CHECK(!memcmp(u, v, 16));
	CHECK_EQ(vp_uuid_parse("00112233-4455-6677-8899-aabbccddeef", v), -EINVAL);
	CHECK_EQ(vp_uuid_parse("00112233-4455-6677-8899-aabbccddeeff0", v), -EINVAL);
	CHECK_EQ(vp_uuid_parse("0011223304455-6677-8899-aabbccddeeff", v), -EINVAL);
	CHECK_EQ(vp_uuid_parse("g0112233-4455-6677-8899-aabbccddeeff", v), -EINVAL);
}
/* ---- fds of the wrong kind, memory that can shrink ---- */

static unsigned conns_of(struct vp_server *s)
{
	return vp_server_connections(s);
}

/*
 * A kick or call fd that is not an eventfd (a pipe spins a backend that
 * polls it, a full pipe blocks the write of a call) ends that connection
 * with the reason; every fd it sent is closed; a healthy device on the same
 * server stays READY.
 */
TEST(kick_and_call_must_be_eventfds)
{
	struct vp_server *s = new_server("kinds", 0);
	struct ram good, bad;
	int efd[4], gfd, before;

	REQUIRE(s && ram_new(&good) && ram_new(&bad));
	eventfds(efd);
	gfd = connect_to(s);
	driver_ok(gfd, &good, efd);
	pump(s, 50);
	REQUIRE(only_device(s) && only_device(s)->state == VP_DEV_READY);
	before = tu_count_fds();
	for (int which = 0; which < 6; which++) {
		int p[2], sv[2], tfd, wrong, e2[4], fd;
		const char *kind;

		REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		wrong = which % 3 == 0 ? p[0] : which % 3 == 1 ? sv[0] : tfd;
		kind = which % 3 == 0 ? "pipe" : which % 3 == 1 ? "socket" : "timerfd";
		eventfds(e2);
		fd = connect_to(s);
		REQUIRE(fd >= 0);
		send_req(fd, VP_VU_SET_FEATURES, F_VERSION_1 | F_MRG_RXBUF, NULL, 0);
		send_mem(fd, &bad, RAM_SIZE);
		send_state(fd, VP_VU_SET_VRING_NUM, 0, RING_NUM);
		send_state(fd, VP_VU_SET_VRING_BASE, 0, 0);
		send_addr(fd, &bad, 0, 0x1000);
		/* which < 3: the kick fd is wrong; else the call fd. */
		send_req(fd, VP_VU_SET_VRING_KICK, 0, which < 3 ? &wrong : &e2[0], 1);
		send_req(fd, VP_VU_SET_VRING_CALL, 0, which < 3 ? &e2[1] : &wrong, 1);
		pump(s, 50);
		if (conns_of(s) != 1)
			fprintf(stderr, "  %s as %s fd: still connected\n", kind,
				which < 3 ? "kick" : "call");
		CHECK_EQ(conns_of(s), 1);
		close(fd);
		close(p[0]);
		close(p[1]);
		close(sv[0]);
		close(sv[1]);
		close(tfd);
		close4(e2);
		pump(s, 20);
	}
	CHECK_EQ(tu_count_fds(), before);  /* the server kept none of them */
	CHECK(only_device(s) && only_device(s)->state == VP_DEV_READY);
	close(gfd);
	pump(s, 30);
	close4(efd);
	vp_server_free(s);
	ram_free(&good);
	ram_free(&bad);
}

/*
 * Memory that can shrink (an unsealed memfd, a file) is refused unless the
 * server allows it; a frontend that asked for an ack gets a non-zero one.
 */
TEST(memory_that_can_shrink_is_refused)
{
	struct vp_server *s = new_server("seal", 0);
	char path[] = "/tmp/vp-seal-test-XXXXXX";
	struct ram open_ram;
	struct vp_msg m, rep;
	int fd, file, before;

	REQUIRE(s && ram_new_sealed(&open_ram, 0));
	file = mkstemp(path);
	REQUIRE(file >= 0 && ftruncate(file, RAM_SIZE) == 0);
	unlink(path);
	before = tu_count_fds();
	for (int k = 0; k < 2; k++) {
		fd = connect_to(s);
		REQUIRE(fd >= 0);
		/* With REPLY_ACK, as QEMU asks for SET_MEM_TABLE. */
		send_req(fd, VP_VU_SET_PROTOCOL_FEATURES, 1ull << VP_VU_PROTOCOL_F_REPLY_ACK, NULL, 0);
		send_req(fd, VP_VU_SET_FEATURES, F_VERSION_1 | F_PROTOCOL, NULL, 0);
		vp_msg_init(&m, VP_VU_SET_MEM_TABLE, VP_MSG_NEED_REPLY);
		m.p.mem.nregions = 1;
		m.p.mem.regions[0] = (struct vp_mem_region_wire){ 0, RAM_SIZE,
			(uint64_t)(uintptr_t)open_ram.p, 0 };
		m.fds[0] = k ? file : open_ram.fd;
		m.nfds = 1;
		REQUIRE(vp_sock_send(fd, &m) == 0);
		CHECK_EQ(read_reply(fd, s, &rep), 1);
		CHECK_EQ(rep.request, VP_VU_SET_MEM_TABLE);
		CHECK(rep.p.u64 != 0);
		pump(s, 30);
		CHECK_EQ(conns_of(s), 0);
		close(fd);
	}
	pump(s, 20);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	/* Allowed, the same memory is taken. */
	allow_unsealed = true;
	s = new_server("seal2", 0);
	allow_unsealed = false;
	REQUIRE(s);
	fd = connect_to(s);
	send_req(fd, VP_VU_SET_FEATURES, F_VERSION_1 | F_MRG_RXBUF, NULL, 0);
	send_mem(fd, &open_ram, RAM_SIZE);
	pump(s, 50);
	CHECK_EQ(conns_of(s), 1);
	close(fd);
	pump(s, 30);
	vp_server_free(s);
	close(file);
	ram_free(&open_ram);
}

/* ---- handshake deadlines, in the library ---- */

/* Pump until fd is closed by the server; the time it took, -1 if never. */
static int64_t dropped_after(struct vp_server *s, int fd, int64_t t0, int max_ms)
{
	char b[256];

	while (now_ms() - t0 < max_ms) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN))
			return now_ms() - t0;
		/* Wait on the server's own fd: the deadline must wake it. */
		struct pollfd p = { vp_server_fd(s), POLLIN, 0 };

		poll(&p, 1, 20);
		vp_server_dispatch(s);
	}
	return -1;
}

TEST(deadline_idle_trickling_half_finished)
{
	static const char *const what[] = { "idle", "trickling", "vhost-user start",
		"native half" };
	struct vp_server *s;
	struct ram ram;
	int efd[4], before;

	handshake_ms = 300;
	s = new_server("deadline", 0);
	handshake_ms = 0;
	REQUIRE(s && ram_new(&ram));
	eventfds(efd);
	before = tu_count_fds();
	for (int k = 0; k < 4; k++) {
		int fd = connect_to(s);
		int64_t t0 = now_ms(), took;
		struct vp_msg m;

		REQUIRE(fd >= 0);
		if (k == 1) {
			/* A message every 100 ms: never extends the deadline. */
			for (int i = 0; i < 6 && dropped_after(s, fd, t0, 100 * (i + 1)) < 0; i++)
				send_req(fd, VP_VU_GET_FEATURES, 0, NULL, 0);
		} else if (k == 2) {
			/* QEMU's init, then a start that never reaches READY. */
			send_req(fd, VP_VU_GET_FEATURES, 0, NULL, 0);
			send_req(fd, VP_VU_SET_OWNER, 0, NULL, 0);
			pump(s, 400);  /* idle after SET_OWNER: allowed */
			CHECK_EQ(vp_server_connections(s), 1);
			t0 = now_ms();
			send_req(fd, VP_VU_SET_FEATURES, F_VERSION_1 | F_MRG_RXBUF, NULL, 0);
			send_mem(fd, &ram, RAM_SIZE);
			send_state(fd, VP_VU_SET_VRING_NUM, 0, RING_NUM);
		} else if (k == 3) {
			vp_msg_init(&m, VP_PCI_HELLO, 0);
			m.p.hello.magic = VP_PCI_MAGIC;
			m.p.hello.major = VP_PCI_VERSION_MAJOR;
			m.p.hello.minor = VP_PCI_VERSION_MINOR;
			vp_sock_send(fd, &m);  /* then never answers GET_UUID */
		}
		took = dropped_after(s, fd, t0, 2000);
		if (took < 250 || took > 900)
			fprintf(stderr, "  %s: dropped after %lld ms, want ~300\n", what[k],
				(long long)took);
		CHECK(took >= 250 && took <= 900);
		close(fd);
		pump(s, 10);
	}
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(tu_count_fds(), before);
	/* A device that became READY keeps no deadline. */
	int fd = connect_to(s);

	driver_ok(fd, &ram, efd);
	pump(s, 600);
	REQUIRE(only_device(s));
	CHECK_EQ(only_device(s)->state, VP_DEV_READY);
	close(fd);
	pump(s, 20);
	close4(efd);
	vp_server_free(s);
	ram_free(&ram);
}

static unsigned warn_lines;

static void count_warns(enum vp_log_level lvl, const char *msg, void *o)
{
	(void)o;
	if (lvl <= VP_LOG_WARN && strstr(msg, "refus"))
		warn_lines++;
}

/* 500 connection attempts past the limit: a bounded number of log lines. */
TEST(refusals_at_the_door_are_rate_limited)
{
	struct vp_server *s = new_server("flood", 2);
	int keep[2], before;

	REQUIRE(s);
	keep[0] = connect_to(s);
	keep[1] = connect_to(s);
	pump(s, 20);
	REQUIRE(vp_server_connections(s) == 2);
	before = tu_count_fds();
	warn_lines = 0;
	vp_log_set_handler(count_warns, NULL);
	for (int i = 0; i < 500; i++) {
		int fd = connect_to(s);

		vp_server_dispatch(s);
		if (fd >= 0)
			close(fd);
	}
	pump(s, 20);
	vp_log_set_handler(NULL, NULL);
	CHECK(warn_lines >= 1 && warn_lines <= 3);
	CHECK_EQ(vp_server_connections(s), 2);
	CHECK_EQ(tu_count_fds(), before);
	close(keep[0]);
	close(keep[1]);
	pump(s, 20);
	vp_server_free(s);
}

/* ---- the dispatch table and sessions on any fd ---- */

TEST(dispatch_table_agrees_with_codec)
{
	CHECK_EQ(vp_server_check_dispatch_table(), 0);
	CHECK_EQ(vp_msg_max_fds(VP_VU_GET_FEATURES, false), 0);
	CHECK_EQ(vp_msg_max_fds(VP_VU_SET_LOG_FD, false), 1);
	CHECK_EQ(vp_msg_max_fds(VP_VU_REM_MEM_REG, false), 1);
	CHECK_EQ(vp_msg_max_fds(VP_VU_SET_MEM_TABLE, false), VP_MSG_MAX_FDS);
	CHECK_EQ(vp_msg_max_fds(VP_PCI_GET_MEMORY_INFO, false), 0);
	CHECK_EQ(vp_msg_max_fds(VP_PCI_GET_MEMORY_INFO, true), VP_MSG_MAX_FDS);
	CHECK_EQ(vp_msg_max_fds(12345, false), 0);
}

/* A server without a socket file; sessions only through vp_server_adopt(). */
static struct vp_server *new_socketless(void)
{
	struct vp_server_config cfg = { .id = "adopt", .on_event = on_event };
	struct vp_server *s = NULL;

	return vp_server_new(&s, &cfg) == 0 ? s : NULL;
}

/* A socketpair whose first end the server adopted; the second is returned. */
static int adopt_pair(struct vp_server *s)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (vp_server_adopt(s, sv[0]) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	return sv[1];
}

TEST(adopted_session_without_a_listener)
{
	struct vp_server *s = new_socketless();
	const struct vp_device *d;
	struct vp_msg rep;
	struct ram ram;
	int efd[4], p[2], sv[2], fd, before;

	REQUIRE(s && ram_new(&ram));
	CHECK(vp_server_path(s) == NULL);
	CHECK(!strcmp(vp_server_id(s), "adopt"));
	before = tu_count_fds();
	/* Only a Unix stream socket; on refusal the fd stays the caller's. */
	REQUIRE(pipe(p) == 0);
	CHECK_EQ(vp_server_adopt(s, p[0]), -ENOTSOCK);
	CHECK(fcntl(p[0], F_GETFD) >= 0);
	close(p[0]);
	close(p[1]);
	REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	CHECK_EQ(vp_server_adopt(s, sv[0]), -EPROTOTYPE);
	CHECK(fcntl(sv[0], F_GETFD) >= 0);
	close(sv[0]);
	close(sv[1]);
	CHECK_EQ(vp_server_adopt(s, -1), -EINVAL);
	CHECK_EQ(vp_server_connections(s), 0);

	nev = 0;
	fd = adopt_pair(s);
	REQUIRE(fd >= 0);
	CHECK_EQ(vp_server_connections(s), 1);
	CHECK_EQ(count_ev(VP_EV_DEVICE_NEW, 0), 1);
	send_req(fd, VP_VU_GET_FEATURES, 0, NULL, 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.p.u64, VP_SERVER_DEFAULT_FEATURES);
	eventfds(efd);
	driver_ok(fd, &ram, efd);
	pump(s, 50);
	d = only_device(s);
	REQUIRE(d);
	CHECK_EQ(d->state, VP_DEV_READY);
	CHECK_EQ(d->peer_pid, getpid());
	close(fd);
	pump(s, 30);
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(count_ev(VP_EV_DEVICE_REMOVED, 0), 1);
	close4(efd);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}

/* Read messages until an ERROR (its reason into why) or EOF; true on ERROR. */
static bool read_error(int fd, struct vp_server *s, char *why, size_t len)
{
	struct vp_msg m;
	int64_t end = now_ms() + 1000;
	struct vp_rx rx;

	vp_rx_init(&rx);
	while (now_ms() < end) {
		int r = vp_sock_recv(fd, &rx, &m);

		if (r < 0)
			return false;
		if (r == 0) {
			pump(s, 5);
			continue;
		}
		vp_msg_close_fds(&m);
		if (m.request == VP_PCI_ERROR) {
			snprintf(why, len, "%s", m.p.error.reason);
			return true;
		}
	}
	return false;
}

static int send_hello(int fd)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_PCI_HELLO, 0);
	m.p.hello.magic = VP_PCI_MAGIC;
	m.p.hello.major = VP_PCI_VERSION_MAJOR;
	return vp_sock_send(fd, &m);
}

/*
 * A message outside the states its row allows is refused with the reason
 * (ERROR to a native peer, a failing REPLY_ACK to a vhost-user one) and its
 * fds closed; fds a row drops are closed while the session goes on.
 */
TEST(dispatch_refuses_by_state_and_closes_fds)
{
	struct vp_server *s = new_socketless();
	struct vp_msg m, rep;
	struct ram ram;
	char why[VP_PCI_REASON_MAX];
	int fd, before, efd;

	REQUIRE(s && ram_new(&ram));
	before = tu_count_fds();

	/* Native: a second HELLO while the server waits for the UUID. */
	fd = adopt_pair(s);
	REQUIRE(fd >= 0);
	send_hello(fd);
	send_hello(fd);
	CHECK(read_error(fd, s, why, sizeof(why)));
	CHECK(strstr(why, "unexpected VHOST_PCI_HELLO in state wait-uuid") != NULL);
	CHECK(dropped(fd, s));
	close(fd);

	/* Native: memory info with its fd before it was asked for. */
	fd = adopt_pair(s);
	REQUIRE(fd >= 0);
	send_hello(fd);
	vp_msg_init(&m, VP_PCI_GET_MEMORY_INFO, VP_MSG_REPLY);
	m.p.meminfo.nregions = 1;
	m.p.meminfo.regions[0] = (struct vp_pci_region){ 0, RAM_SIZE, 0, 0, VP_MEM_RW, 0 };
	m.fds[0] = ram.fd;
	m.nfds = 1;
	CHECK_EQ(vp_sock_send(fd, &m), 0);
	CHECK(read_error(fd, s, why, sizeof(why)));
	CHECK(strstr(why, "unexpected VHOST_PCI_GET_MEMORY_INFO reply in state wait-uuid"));
	CHECK(dropped(fd, s));
	close(fd);
	pump(s, 20);
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(tu_count_fds(), before);  /* the memfd copy it sent is closed */

	/* vhost-user with REPLY_ACK: SET_LOG_FD's fd is closed and acked... */
	fd = adopt_pair(s);
	REQUIRE(fd >= 0);
	send_req(fd, VP_VU_SET_PROTOCOL_FEATURES, 1ull << VP_VU_PROTOCOL_F_REPLY_ACK, NULL, 0);
	efd = eventfd(0, EFD_CLOEXEC);
	REQUIRE(efd >= 0);
	vp_msg_init(&m, VP_VU_SET_LOG_FD, VP_MSG_NEED_REPLY);
	m.fds[0] = efd;
	m.nfds = 1;
	CHECK_EQ(vp_sock_send(fd, &m), 0);
	close(efd);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.request, VP_VU_SET_LOG_FD);
	CHECK_EQ(rep.p.u64, 0);
	CHECK_EQ(tu_count_fds(), before + 2);  /* both ends of the pair, no eventfd */
	/* ... and a request without a row gets a failing ack, then the drop. */
	vp_msg_init(&m, VP_VU_SET_STATUS, VP_MSG_NEED_REPLY);
	m.p.u64 = 0xf;
	CHECK_EQ(vp_sock_send(fd, &m), 0);
	CHECK_EQ(read_reply(fd, s, &rep), 1);
	CHECK_EQ(rep.request, VP_VU_SET_STATUS);
	CHECK_EQ(rep.p.u64, EOPNOTSUPP);
	CHECK(dropped(fd, s));
	close(fd);
	pump(s, 20);
	CHECK_EQ(vp_server_connections(s), 0);
	CHECK_EQ(tu_count_fds(), before);
	vp_server_free(s);
	ram_free(&ram);
}
