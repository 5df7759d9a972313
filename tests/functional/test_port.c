// SPDX-License-Identifier: BSD-3-Clause
/*
 * vp_port and vp_waitset driven directly: backend and frontend ports over
 * real sockets, traffic both ways (copying and zero-copy calls) verified
 * frame by frame, a frontend that reconnects when its server goes and comes
 * back, a backend that refuses a device over max_links with the reason and
 * takes it when a link frees, and a wait set over two ports and a pipe in
 * one process while another process sends with random pauses: every frame
 * arrives, no wait sleeps through work (a lost wake-up), the pipe is
 * reported when and only when it is readable; the same with interrupt
 * moderation on both ends, every frame in time. Every case counts its fds.
 */
#define TESTUTIL_MAIN
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "vhostpci/vhostpci.h"

#define RAM_SIZE (16u << 20)
#define FE_SPAN  (4u << 20)  /* RAM per frontend port */
#define BURST    32
#define CAP      2048

static char tmpdir[64];

static const char *sock_path(const char *name)
{
	static char p[4][128];
	static unsigned k;
	char *s = p[k++ % 4];

	if (!tmpdir[0]) {
		strcpy(tmpdir, "/tmp/vp-port-test-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(s, 128, "%s/%s", tmpdir, name);
	return s;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct ram {
	int fd;
	uint8_t *p;
};

static int ram_new(struct ram *r)
{
	r->fd = tu_memfd("port-test", RAM_SIZE, 1);
	if (r->fd < 0)
		return -1;
	r->p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (r->p == MAP_FAILED) {
		close(r->fd);
		return -1;
	}
	return 0;
}

static void ram_free(struct ram *r)
{
	munmap(r->p, RAM_SIZE);
	close(r->fd);
}

static int backend(struct vp_port **p, const char *path, unsigned max_links,
		   enum vp_net_mode mode)
{
	struct vp_port_config c = { .side = VP_PORT_BACKEND, .name = "be", .path = path,
				    .mode = mode, .max_links = max_links };

	return vp_port_new(p, &c);
}

static int frontend_f(struct vp_port **p, const char *path, struct ram *r, unsigned slot,
		      enum vp_net_mode mode, uint64_t features)
{
	struct vp_port_config c = { .side = VP_PORT_FRONTEND, .name = "fe", .path = path,
				    .mode = mode, .ram = r->p, .ram_size = RAM_SIZE,
				    .ram_fd = r->fd, .ram_offset = slot * FE_SPAN,
				    .connect_timeout_ms = 5000, .features = features };

	c.mac[0] = 2;
	c.mac[5] = (uint8_t)slot;
	for (unsigned i = 0; i < 16; i++)
		c.uuid[i] = (uint8_t)(slot * 16 + i + 1);
	return vp_port_new(p, &c);
}

static int frontend(struct vp_port **p, const char *path, struct ram *r, unsigned slot,
		    enum vp_net_mode mode)
{
	return frontend_f(p, path, r, slot, mode, 0);
}

/* Serve every port's control side and sleep a little in the set. */
static void pump(struct vp_waitset *ws, struct vp_port *const *ports, unsigned n, int ms)
{
	for (unsigned i = 0; i < n; i++)
		if (ports[i])
			vp_port_control(ports[i]);
	vp_waitset_wait(ws, ms);
}

#define PUMP_UNTIL(ws, ports, n, cond, limit_ms)                                  \
	({                                                                        \
		int64_t pu_end = now_ms() + (limit_ms);                           \
		while (!(cond) && now_ms() < pu_end)                              \
			pump(ws, ports, n, 5);                                    \
		(cond);                                                           \
	})

/* A frame: stream (1 byte), sequence (8), then a pattern of both. */
static uint32_t frame_len(uint64_t seq)
{
	return 60 + (uint32_t)(seq % 140);
}

static void frame_fill(uint8_t *b, uint8_t stream, uint64_t seq)
{
	uint32_t len = frame_len(seq);

	b[0] = stream;
	memcpy(b + 1, &seq, 8);
	for (uint32_t i = 9; i < len; i++)
		b[i] = (uint8_t)(seq * 7 + i + stream);
}

static bool frame_ok(const uint8_t *b, uint32_t len, uint8_t stream, uint64_t seq)
{
	uint64_t s;

	if (len != frame_len(seq) || b[0] != stream)
		return false;
	memcpy(&s, b + 1, 8);
	if (s != seq)
		return false;
	for (uint32_t i = 9; i < len; i++)
		if (b[i] != (uint8_t)(seq * 7 + i + stream))
			return false;
	return true;
}

static uint8_t bufs[2 * BURST][CAP];

static void caps(struct vp_pkt *pk, unsigned n, unsigned base)
{
	for (unsigned i = 0; i < n; i++) {
		memset(&pk[i], 0, sizeof(pk[i]));
		pk[i].data = bufs[base + i];
		pk[i].len = CAP;
	}
}

/*
 * Send total frames of stream from one port to another, verifying each in
 * order. zc: send through tx_reserve/tx_commit and receive with rx_borrow
 * (frontend receiver) or rx_into-free copies (backend receiver); else the
 * copying burst calls. Returns the frames verified.
 */
static uint64_t move(struct vp_waitset *ws, struct vp_port **all, unsigned nall,
		     struct vp_port *from, struct vp_port *to, uint8_t stream, uint64_t total,
		     bool zc)
{
	struct vp_pkt tx[BURST], rx[BURST];
	uint64_t sent = 0, got = 0;
	int64_t end = now_ms() + 10000;

	while (got < total && now_ms() < end) {
		unsigned want = total - sent < BURST ? (unsigned)(total - sent) : BURST;
		int n, link;

		if (want && zc) {
			n = vp_port_tx_reserve(from, -1, tx, want);
			for (int i = 0; i < n; i++) {
				frame_fill(tx[i].data, stream, sent + (unsigned)i);
				tx[i].len = frame_len(sent + (unsigned)i);
			}
			if (n > 0)
				n = vp_port_tx_commit(from, tx, (unsigned)n);
			sent += n > 0 ? (unsigned)n : 0;
		} else if (want) {
			caps(tx, want, 0);
			for (unsigned i = 0; i < want; i++) {
				frame_fill(tx[i].data, stream, sent + i);
				tx[i].len = frame_len(sent + i);
			}
			n = vp_port_tx(from, -1, tx, want, 0);
			sent += n > 0 ? (unsigned)n : 0;
		}
		if (zc && vp_port_side(to) == VP_PORT_FRONTEND) {
			n = vp_port_rx_borrow(to, rx, BURST);
			for (int i = 0; i < n; i++, got++)
				if (!frame_ok(rx[i].data, rx[i].len, stream, got))
					return got;
			vp_port_rx_release(to);
		} else {
			caps(rx, BURST, BURST);
			n = vp_port_rx(to, rx, BURST, &link);
			for (int i = 0; i < n; i++, got++)
				if (!frame_ok(rx[i].data, rx[i].len, stream, got))
					return got;
		}
		if (n <= 0)
			pump(ws, all, nall, 1);
	}
	return got;
}

static struct vp_waitset *set_of(struct vp_port *const *ports, unsigned n)
{
	struct vp_waitset *ws;

	if (vp_waitset_new(&ws) < 0)
		return NULL;
	for (unsigned i = 0; i < n; i++)
		if (vp_waitset_add_port(ws, ports[i]) < 0) {
			vp_waitset_free(ws);
			return NULL;
		}
	return ws;
}

/* ------------------------------------------------------------------------ */

TEST(traffic_both_ways)
{
	int fds = tu_count_fds();
	const char *path = sock_path("both.sock");
	struct vp_port *p[2] = { 0 };
	struct vp_port_counters cnt;
	struct vp_net_stats st;
	struct vp_waitset *ws;
	struct ram ram;

	REQUIRE(ram_new(&ram) == 0);
	REQUIRE(backend(&p[0], path, 0, VP_NET_IRQ) == 0);
	REQUIRE(frontend(&p[1], path, &ram, 0, VP_NET_IRQ) == 0);
	REQUIRE((ws = set_of(p, 2)) != NULL);
	CHECK(PUMP_UNTIL(ws, p, 2, vp_port_up(p[0]) && vp_port_up(p[1]), 5000));
	CHECK_EQ(vp_port_side(p[0]), VP_PORT_BACKEND);
	CHECK_EQ(vp_port_side(p[1]), VP_PORT_FRONTEND);
	CHECK_EQ(vp_port_state(p[1]), VP_PORT_UP);
	CHECK_EQ(vp_port_nlinks_up(p[0]), 1);
	CHECK_EQ(vp_port_max_links(p[0]), VP_PORT_MAX_LINKS);
	CHECK(vp_port_features(p[1]) & (1ull << VIRTIO_F_VERSION_1));
	CHECK_EQ(vp_port_features(p[0]), vp_port_features(p[1]));

	/* Both ways, copying and zero copy. */
	CHECK_EQ(move(ws, p, 2, p[1], p[0], 1, 3000, false), 3000);
	CHECK_EQ(move(ws, p, 2, p[1], p[0], 2, 3000, true), 3000);
	CHECK_EQ(move(ws, p, 2, p[0], p[1], 3, 3000, false), 3000);
	CHECK_EQ(move(ws, p, 2, p[0], p[1], 4, 3000, true), 3000);
	vp_port_stats(p[0], &st);
	CHECK_EQ(st.rx_packets, 6000);
	CHECK_EQ(st.tx_packets, 6000);
	CHECK_EQ(vp_port_tx(p[1], -1, NULL, 0, 0), 0);  /* reaps what the backend took */
	vp_port_stats(p[1], &st);
	CHECK_EQ(st.rx_packets, 6000);
	CHECK_EQ(st.tx_packets, 6000);

	/* What one side cannot do is refused, not faked. */
	CHECK_EQ(vp_port_rx_borrow(p[0], NULL, 1), -ENOTSUP);
	CHECK_EQ(vp_port_rx_into(p[1], 0, NULL, 1), -ENOTSUP);
	CHECK_EQ(vp_port_rx_link(p[0], VP_PORT_MAX_LINKS, NULL, 1), -EINVAL);
	CHECK(!vp_port_link_up(p[0], -1));
	vp_port_counters(p[0], &cnt);
	CHECK_EQ(cnt.link_ups, 1);
	CHECK_EQ(cnt.link_downs, 0);
	CHECK_EQ(cnt.refused, 0);
	vp_waitset_free(ws);
	vp_port_free(p[1]);
	vp_port_free(p[0]);
	ram_free(&ram);
	CHECK_EQ(tu_count_fds(), fds);
}

TEST(frontend_reconnects)
{
	int fds = tu_count_fds();
	const char *path = sock_path("re.sock");
	struct vp_port *p[2] = { 0 };
	struct vp_port_counters cnt;
	struct vp_waitset *ws, *ws_fe;
	struct ram ram;

	REQUIRE(ram_new(&ram) == 0);
	REQUIRE(backend(&p[0], path, 0, VP_NET_IRQ) == 0);
	REQUIRE(frontend(&p[1], path, &ram, 0, VP_NET_IRQ) == 0);
	REQUIRE((ws = set_of(p, 2)) != NULL);
	REQUIRE((ws_fe = set_of(&p[1], 1)) != NULL);
	CHECK(PUMP_UNTIL(ws, p, 2, vp_port_up(p[0]) && vp_port_up(p[1]), 5000));
	CHECK_EQ(move(ws, p, 2, p[1], p[0], 1, 500, true), 500);

	/* The server goes: the frontend drains, goes down and retries. */
	vp_waitset_free(ws);
	vp_port_free(p[0]);
	p[0] = NULL;
	CHECK(PUMP_UNTIL(ws_fe, &p[1], 1, vp_port_state(p[1]) == VP_PORT_DOWN, 3000));
	CHECK(vp_port_down_reason(p[1])[0] != 0);
	vp_port_counters(p[1], &cnt);
	CHECK_EQ(cnt.link_downs, 1);
	/* Nothing listens: still down after several retry periods. */
	(void)PUMP_UNTIL(ws_fe, &p[1], 1, false, 300);
	CHECK(!vp_port_up(p[1]));
	CHECK_EQ(vp_port_tx(p[1], -1, NULL, 0, 0), 0);

	/* It comes back: the frontend finds it on its own. */
	REQUIRE(backend(&p[0], path, 0, VP_NET_IRQ) == 0);
	REQUIRE((ws = set_of(p, 2)) != NULL);
	CHECK(PUMP_UNTIL(ws, p, 2, vp_port_up(p[0]) && vp_port_up(p[1]), 5000));
	vp_port_counters(p[1], &cnt);
	CHECK_EQ(cnt.link_ups, 2);
	CHECK_EQ(move(ws, p, 2, p[1], p[0], 2, 500, true), 500);
	CHECK_EQ(move(ws, p, 2, p[0], p[1], 3, 500, true), 500);
	vp_waitset_free(ws);
	vp_waitset_free(ws_fe);
	vp_port_free(p[1]);
	vp_port_free(p[0]);
	ram_free(&ram);
	CHECK_EQ(tu_count_fds(), fds);
}

TEST(backend_refuses_over_max_links_then_takes_it)
{
	int fds = tu_count_fds();
	const char *path = sock_path("max.sock");
	struct vp_port *p[4] = { 0 };
	struct vp_port_counters cnt;
	struct vp_waitset *ws;
	struct ram ram;

	REQUIRE(ram_new(&ram) == 0);
	REQUIRE(backend(&p[0], path, 2, VP_NET_IRQ) == 0);
	CHECK_EQ(vp_port_max_links(p[0]), 2);
	REQUIRE(frontend(&p[1], path, &ram, 0, VP_NET_IRQ) == 0);
	REQUIRE(frontend(&p[2], path, &ram, 1, VP_NET_IRQ) == 0);
	REQUIRE((ws = set_of(p, 3)) != NULL);
	CHECK(PUMP_UNTIL(ws, p, 3, vp_port_nlinks_up(p[0]) == 2 && vp_port_up(p[1]) &&
					     vp_port_up(p[2]), 5000));

	/* A third: refused, and its port is told why. */
	REQUIRE(frontend(&p[3], path, &ram, 2, VP_NET_IRQ) == 0);
	REQUIRE(vp_waitset_add_port(ws, p[3]) >= 0);
	CHECK(PUMP_UNTIL(ws, p, 4, strstr(vp_port_error(p[3]), "backend full: 2 of 2"), 5000));
	vp_port_counters(p[0], &cnt);
	CHECK(cnt.refused >= 1);
	CHECK(!vp_port_up(p[3]));
	CHECK_EQ(vp_port_nlinks_up(p[0]), 2);

	/* A link frees: the waiting frontend is taken on its next try. */
	vp_waitset_free(ws);
	vp_port_free(p[1]);
	p[1] = NULL;
	REQUIRE(vp_waitset_new(&ws) == 0);
	REQUIRE(vp_waitset_add_port(ws, p[0]) >= 0 && vp_waitset_add_port(ws, p[2]) >= 0 &&
		vp_waitset_add_port(ws, p[3]) >= 0);
	CHECK(PUMP_UNTIL(ws, p, 4, vp_port_up(p[3]) && vp_port_nlinks_up(p[0]) == 2, 5000));
	CHECK_EQ(move(ws, p, 4, p[3], p[0], 5, 300, false), 300);
	vp_port_counters(p[0], &cnt);
	CHECK_EQ(cnt.link_ups, 3);
	CHECK_EQ(cnt.link_downs, 1);

	/* A switch with no room drops a link with a reason: its frontend hears it. */
	for (int i = 0; i < 2; i++) {
		uint64_t id;

		CHECK_EQ(vp_port_link_device(p[0], i, &id), 0);
	}
	CHECK_EQ(vp_port_link_device(p[0], 2, &(uint64_t){ 0 }), -ENOENT);
	CHECK_EQ(vp_port_drop_link(p[0], 1, "test: no room"), 0);
	CHECK_EQ(vp_port_nlinks_up(p[0]), 1);
	CHECK_EQ(vp_port_drop_link(p[0], 1, "again"), -ENOENT);
	vp_waitset_free(ws);
	for (int i = 3; i >= 0; i--)
		vp_port_free(p[i]);
	ram_free(&ram);
	CHECK_EQ(tu_count_fds(), fds);
}

/* ------------------------------------------------------------------------ */
/* Wait set: two ports and a pipe, a sender in another process */

#define WS_FRAMES 20000u
#define WS_MARKS  20u  /* pipe bytes the sender writes along the way */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void pause_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };

	nanosleep(&ts, NULL);
}

/*
 * The child: two frontend ports in IRQ mode, WS_FRAMES frames spread over
 * both in random bursts with random pauses; WS_MARKS bytes on the pipe along
 * the way. Exit status: 0, or 1 + what went wrong.
 */
static int sender(const char *path_a, const char *path_b, int pipe_w)
{
	struct vp_port *p[2] = { 0 };
	uint64_t seq[2] = { 0 }, sent = 0, rng = 0x9e3779b97f4a7c15ull, next_mark = 0;
	struct vp_waitset *ws;
	int id[2];
	struct ram ram;
	int64_t end;

	/* One link with event-index suppression, one with the flags (whose
	 * disarm does take the request back): both kinds in one set. */
	if (ram_new(&ram) < 0 || frontend(&p[0], path_a, &ram, 0, VP_NET_IRQ) < 0 ||
	    frontend_f(&p[1], path_b, &ram, 1, VP_NET_IRQ,
		       VP_NETFE_DEFAULT_FEATURES & ~(1ull << VIRTIO_RING_F_EVENT_IDX)) < 0 ||
	    vp_waitset_new(&ws) < 0 ||
	    (id[0] = vp_waitset_add_port(ws, p[0])) < 0 ||
	    (id[1] = vp_waitset_add_port(ws, p[1])) < 0)
		return 2;
	end = now_ms() + 20000;
	while (!(vp_port_up(p[0]) && vp_port_up(p[1])) && now_ms() < end)
		pump(ws, p, 2, 5);
	if (now_ms() >= end)
		return 3;
	while (sent < WS_FRAMES && now_ms() < end) {
		/* Stretches on one link: the other's wake-ups do not mask it. */
		unsigned k = (unsigned)((sent / 1000) & 1);
		unsigned want = 1 + (unsigned)(rng_next(&rng) % BURST);
		struct vp_pkt tx[BURST];
		int n;

		if (want > WS_FRAMES - sent)
			want = (unsigned)(WS_FRAMES - sent);
		n = vp_port_tx_reserve(p[k], -1, tx, want);
		for (int i = 0; i < n; i++) {
			frame_fill(tx[i].data, (uint8_t)k, seq[k] + (unsigned)i);
			tx[i].len = frame_len(seq[k] + (unsigned)i);
		}
		if (n > 0 && (n = vp_port_tx_commit(p[k], tx, (unsigned)n)) > 0) {
			seq[k] += (unsigned)n;
			sent += (unsigned)n;
		}
		if (n < 0)
			return 4;
		if (n == 0) {
			/* Ring full: sleep until the backend takes some. */
			vp_waitset_want(ws, id[k], false, true);
			vp_waitset_want(ws, id[!k], false, false);
			pump(ws, p, 2, 50);
		}
		if (sent >= next_mark && next_mark < WS_FRAMES) {
			if (write(pipe_w, "m", 1) != 1)
				return 5;
			next_mark += WS_FRAMES / WS_MARKS;
		}
		/* Random pauses: the receiver goes to sleep, and is woken. */
		if (rng_next(&rng) & 1)
			pause_us((unsigned)(rng_next(&rng) % 300));
	}
	if (sent < WS_FRAMES)
		return 6;
	/* Let the receiver take everything before we go. */
	pause_us(200000);
	vp_waitset_free(ws);
	vp_port_free(p[0]);
	vp_port_free(p[1]);
	ram_free(&ram);
	return 0;
}

TEST(waitset_two_ports_and_a_pipe_lose_no_wakeup)
{
	int fds = tu_count_fds();
	const char *pa = sock_path("ws-a.sock"), *pb = sock_path("ws-b.sock");
	struct vp_port *p[2] = { 0 };
	uint64_t next[2] = { 0 }, got = 0, bad = 0, lost_wakeups = 0, marks = 0, false_fd = 0;
	uint64_t rng = 0x243f6a8885a308d3ull, sleeps = 0;
	bool hup = false;
	struct vp_waitset *ws;
	int pfd[2], id_pipe, status = -1;
	pid_t pid;
	int64_t end;

	REQUIRE(pipe2(pfd, O_CLOEXEC | O_NONBLOCK) == 0);
	REQUIRE(backend(&p[0], pa, 0, VP_NET_IRQ) == 0);
	REQUIRE(backend(&p[1], pb, 0, VP_NET_IRQ) == 0);
	REQUIRE((ws = set_of(p, 2)) != NULL);
	REQUIRE((id_pipe = vp_waitset_add_fd(ws, pfd[0], POLLIN)) >= 0);
	CHECK_EQ(vp_waitset_revents(ws, 0), -EINVAL);  /* a port, not an fd */
	CHECK_EQ(vp_waitset_want(ws, id_pipe, true, false), -EINVAL);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		_exit(sender(pa, pb, pfd[1]));
	}
	close(pfd[1]);

	end = now_ms() + 30000;
	while (got < WS_FRAMES && now_ms() < end) {
		bool did = false;

		for (unsigned k = 0; k < 2; k++) {
			struct vp_pkt rx[BURST];
			int n, link;

			caps(rx, BURST, 0);
			n = vp_port_rx(p[k], rx, BURST, &link);
			for (int i = 0; i < n; i++, got++)
				bad += !frame_ok(rx[i].data, rx[i].len, (uint8_t)k, next[k]++);
			did |= n > 0;
		}
		if (did) {
			if (!(rng_next(&rng) & 15))
				pause_us((unsigned)(rng_next(&rng) % 200));
			continue;
		}
		for (unsigned k = 0; k < 2; k++)
			vp_port_control(p[k]);
		int r = vp_waitset_wait(ws, 1000);
		int ev = vp_waitset_revents(ws, id_pipe);

		sleeps++;
		if (ev & POLLIN) {
			char c[64];
			ssize_t n = read(pfd[0], c, sizeof(c));

			if (n > 0)
				marks += (uint64_t)n;
			else if (n < 0)
				false_fd++;  /* reported readable, was not */
		}
		if ((ev & POLLHUP) && !hup) {  /* the sender is gone: stop watching */
			hup = true;
			CHECK_EQ(vp_waitset_remove(ws, id_pipe), 0);
		}
		if (r == 0) {
			/* A full second asleep: anything in the rings now was
			 * there unannounced (the sender never pauses that long). */
			for (unsigned k = 0; k < 2; k++)
				if (vp_port_rx_pending(p[k], 0))
					lost_wakeups++;
		}
	}
	CHECK_EQ(got, WS_FRAMES);
	CHECK_EQ(bad, 0);
	CHECK_EQ(lost_wakeups, 0);
	CHECK_EQ(false_fd, 0);
	CHECK(next[0] > 0 && next[1] > 0);
	CHECK(sleeps > 10);  /* the sender's pauses put us to sleep */
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The last marks: read what the pipe still holds, through the set. */
	while (!hup && marks < WS_MARKS && vp_waitset_wait(ws, 100) > 0 &&
	       (vp_waitset_revents(ws, id_pipe) & POLLIN)) {
		char c[64];
		ssize_t n = read(pfd[0], c, sizeof(c));

		if (n <= 0)
			break;
		marks += (uint64_t)n;
	}
	CHECK_EQ(marks, WS_MARKS);
	/* The writer is gone: the set reports the pipe's hang-up. */
	if (!hup) {
		CHECK(vp_waitset_wait(ws, 100) > 0);
		CHECK(vp_waitset_revents(ws, id_pipe) & POLLHUP);
		CHECK_EQ(vp_waitset_remove(ws, id_pipe), 0);
	}
	CHECK_EQ(vp_waitset_remove(ws, id_pipe), -EINVAL);
	vp_waitset_free(ws);
	vp_port_free(p[0]);
	vp_port_free(p[1]);
	close(pfd[0]);
	CHECK_EQ(tu_count_fds(), fds);
}

/*
 * Moderation (struct vp_net_coalesce) on both ends of a link in IRQ mode:
 * random bursts (partial batches below the mark), random short pauses and
 * a few long ones (longer than the bound), a ring small enough that the
 * sender waits for room (the driver's moderated call), and a last partial
 * batch after which the sender stays quiet: every frame must arrive within
 * MOD_BOUND_MS of being sent. A lost wake-up shows as a frame that waited
 * for the next burst (a long pause) or for the sender to leave.
 */
#define MOD_FRAMES   6000u
#define MOD_BOUND_MS 100
#define MOD_LEN      64u

static const struct vp_net_coalesce mod_coal = { 32, 300 };

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int mod_sender(const char *path)
{
	struct vp_port_config c = { .side = VP_PORT_FRONTEND, .name = "fe", .path = path,
				    .mode = VP_NET_IRQ, .ring = 64, .connect_timeout_ms = 5000,
				    .coalesce = mod_coal };
	uint64_t sent = 0, rng = 0x853c49e6748fea9bull;
	struct vp_waitset *ws;
	struct vp_port *p;
	struct ram ram;
	int id;
	int64_t end;

	if (ram_new(&ram) < 0)
		return 2;
	c.ram = ram.p;
	c.ram_size = RAM_SIZE;
	c.ram_fd = ram.fd;
	c.mac[0] = 2;
	if (vp_port_new(&p, &c) < 0 || vp_waitset_new(&ws) < 0 ||
	    (id = vp_waitset_add_port(ws, p)) < 0)
		return 3;
	end = now_ms() + 20000;
	while (!vp_port_up(p) && now_ms() < end)
		pump(ws, &p, 1, 5);
	if (!vp_port_up(p))
		return 4;
	while (sent < MOD_FRAMES && now_ms() < end) {
		unsigned want = 1 + (unsigned)(rng_next(&rng) % BURST);
		struct vp_pkt tx[BURST];
		uint64_t r;
		int n;

		if (want > MOD_FRAMES - sent)
			want = (unsigned)(MOD_FRAMES - sent);
		n = vp_port_tx_reserve(p, -1, tx, want);
		for (int i = 0; i < n; i++) {
			uint64_t seq = sent + (unsigned)i;
			int64_t t = now_ns();

			memset(tx[i].data, (int)(seq & 0xff), MOD_LEN);
			memcpy(tx[i].data, &seq, 8);
			memcpy((uint8_t *)tx[i].data + 8, &t, 8);
			tx[i].len = MOD_LEN;
		}
		if (n > 0 && (n = vp_port_tx_commit(p, tx, (unsigned)n)) > 0)
			sent += (unsigned)n;
		if (n < 0)
			return 5;
		if (n == 0) {
			/* Ring full: the moderated wait for room (bounded). */
			vp_waitset_want(ws, id, false, true);
			pump(ws, &p, 1, 1000);
			continue;
		}
		r = rng_next(&rng) % 64;
		if (r < 2)
			pause_us(150000 + (unsigned)(rng_next(&rng) % 100000));
		else if (r < 32)
			pause_us((unsigned)(rng_next(&rng) % 300));
	}
	if (sent < MOD_FRAMES)
		return 6;
	/* The last batch is partial: quiet, but still here, while it is taken. */
	end = now_ms() + 1000;
	while (now_ms() < end)
		pump(ws, &p, 1, 50);
	vp_waitset_free(ws);
	vp_port_free(p);
	ram_free(&ram);
	return 0;
}

TEST(moderated_link_irq_random_pauses_every_frame_in_time)
{
	int fds = tu_count_fds();
	const char *path = sock_path("mod.sock");
	struct vp_port_config c = { .side = VP_PORT_BACKEND, .name = "be", .path = path,
				    .mode = VP_NET_IRQ, .coalesce = mod_coal };
	struct vp_port *p = NULL;
	struct vp_waitset *ws;
	uint64_t got = 0, bad = 0, late = 0;
	int64_t worst = 0, end;
	int status = -1;
	pid_t pid;

	/* A moderation that could strand a batch is refused. */
	c.coalesce = (struct vp_net_coalesce){ 8, 0 };
	CHECK_EQ(vp_port_new(&p, &c), -EINVAL);
	c.coalesce = mod_coal;
	REQUIRE(vp_port_new(&p, &c) == 0);
	REQUIRE((ws = set_of(&p, 1)) != NULL);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(mod_sender(path));
	end = now_ms() + 40000;
	while (got < MOD_FRAMES && now_ms() < end) {
		struct vp_pkt rx[BURST];
		int n, link;

		caps(rx, BURST, 0);
		n = vp_port_rx(p, rx, BURST, &link);
		for (int i = 0; i < n; i++, got++) {
			uint64_t seq;
			int64_t t, lat;
			uint8_t fill = (uint8_t)(got & 0xff);
			bool ok = rx[i].len == MOD_LEN;

			memcpy(&seq, rx[i].data, 8);
			memcpy(&t, (uint8_t *)rx[i].data + 8, 8);
			for (unsigned k = 16; ok && k < MOD_LEN; k++)
				ok = ((uint8_t *)rx[i].data)[k] == fill;
			bad += !ok || seq != got;
			lat = now_ns() - t;
			worst = lat > worst ? lat : worst;
			late += lat > (int64_t)MOD_BOUND_MS * 1000000;
		}
		if (n > 0)
			continue;
		vp_port_control(p);
		/* No short timeout of our own: it would hide a lost wake-up. */
		vp_waitset_wait(ws, 5000);
	}
	if (late)
		fprintf(stderr, "  %llu frames later than %d ms, worst %.1f ms\n",
			(unsigned long long)late, MOD_BOUND_MS, (double)worst / 1e6);
	CHECK_EQ(got, MOD_FRAMES);
	CHECK_EQ(bad, 0);
	CHECK_EQ(late, 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	vp_waitset_free(ws);
	vp_port_free(p);
	CHECK_EQ(tu_count_fds(), fds);
}

/* Bare objects: a vp_netfe and a pipe in one set; vp_netfe_wait() agrees. */
TEST(waitset_bare_netfe_and_fd)
{
	int fds = tu_count_fds();
	struct vp_netfe_config c = { 0 };
	struct vp_netfe *fe;
	struct vp_waitset *ws;
	struct ram ram;
	int pfd[2], id_fe, id_fd;
	int64_t t0;

	REQUIRE(ram_new(&ram) == 0);
	REQUIRE(pipe2(pfd, O_CLOEXEC | O_NONBLOCK) == 0);
	c.ram = ram.p;
	c.ram_size = RAM_SIZE;
	c.ram_fd = ram.fd;
	c.mode = VP_NET_IRQ;
	REQUIRE(vp_netfe_new(&fe, &c) == 0);
	REQUIRE(vp_waitset_new(&ws) == 0);
	REQUIRE((id_fe = vp_waitset_add_netfe(ws, fe)) >= 0);
	REQUIRE((id_fd = vp_waitset_add_fd(ws, pfd[0], POLLIN)) >= 0);
	CHECK(id_fe != id_fd);
	CHECK_EQ(vp_waitset_add_fd(ws, -1, POLLIN), -EINVAL);
	CHECK_EQ(vp_waitset_add_net(ws, NULL), -EINVAL);
	/* Not started: no rings, the wait is a short nap that reports nothing. */
	t0 = now_ms();
	CHECK_EQ(vp_waitset_wait(ws, 1000), 0);
	CHECK(now_ms() - t0 < 500);
	CHECK_EQ(vp_waitset_revents(ws, id_fd), 0);
	CHECK_EQ(vp_netfe_wait(fe, true, false, 5), 0);
	/* Started with nobody on the other side: the pipe wakes the set. */
	REQUIRE(vp_netfe_start(fe, VP_NETFE_DEFAULT_FEATURES) == 0);
	CHECK_EQ(vp_waitset_want(ws, id_fe, true, true), 0);
	CHECK_EQ(vp_waitset_wait(ws, 20), 0);
	CHECK(write(pfd[1], "x", 1) == 1);
	t0 = now_ms();
	CHECK(vp_waitset_wait(ws, 2000) > 0);
	CHECK(now_ms() - t0 < 1000);
	CHECK(vp_waitset_revents(ws, id_fd) & POLLIN);
	vp_waitset_free(ws);
	vp_netfe_free(fe);
	close(pfd[0]);
	close(pfd[1]);
	ram_free(&ram);
	CHECK_EQ(tu_count_fds(), fds);
}

__attribute__((destructor)) static void cleanup(void)
{
	if (tmpdir[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			return;
	}
}
