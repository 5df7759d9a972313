/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * net-bench: vhost-pci-net packet rate between two pinned, busy-polling
 * processes: the frontend (parent, vp_netfe on a memfd RAM, vp_client) and
 * the backend (child, vp_server + vp_net). Directions:
 *   be2fe  backend TX -> frontend RX (the backend writes into the frontend's
 *          receive buffers: the 0-copy TX of the vhost-pci design)
 *   fe2be  frontend TX -> backend RX (the backend copies out: 1 copy)
 *   both   the two at once on the same two cores
 *
 * Touch semantics, the same both ways: the sending caller writes an 8-byte
 * sequence number at the start of each packet (the rest is a template
 * written once); the library copies the whole packet into the peer's ring
 * buffers, and on the other side the library copies it whole into the
 * receiving caller's buffer; the receiving caller reads the first 8 bytes
 * and checks the sequence. Only the active direction's queues are polled.
 *
 * Gbit/s counts packet bytes only (no header, no Ethernet framing).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/vhostpci.h"

#define MAX_BURST 256
#define MAX_SIZES 8
#define PROBE_SAMPLES 201
#define PROBE_ROUNDS 50
#define RAM_SIZE (64u << 20)

enum { DIR_BE2FE = 1, DIR_FE2BE = 2, DIR_BOTH = 3 };
enum { CMD_NONE, CMD_RUN, CMD_PROBE, CMD_QUIT };

struct opts {
	double seconds, warmup;
	int cpu_fe, cpu_be;
	unsigned sizes[MAX_SIZES], nsizes;
	unsigned dirs[3], ndirs;
	unsigned burst, qsize, repeat;
	uint64_t features;
};

/* Shared between the processes; the hot words on their own lines. */
struct ctl {
	_Alignas(64) atomic_uint seq;		/* frontend: command number */
	unsigned cmd, dir, size;
	uint64_t t_start, t_end;		/* window, CLOCK_MONOTONIC ns */
	_Alignas(64) atomic_uint ack;		/* backend: command done */
	atomic_int be_ready, be_fail;
	char be_msg[200];
	_Alignas(64) atomic_uint_fast64_t fe_sent;	/* final counts, UINT64_MAX */
	_Alignas(64) atomic_uint_fast64_t be_sent;	/* while still sending */
	_Alignas(64) uint64_t be_rx_pkts, be_rx_ns;	/* window results */
	double be_cpu;
	_Alignas(64) atomic_uint_fast64_t line;	/* latency probe */
	uint64_t probe_base;			/* line's value when a probe starts */
	char path[108];
};

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

static int pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "net-bench: cannot pin to core %d: %s\n", cpu, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the data loop, written once for both sides ---- */

struct side {
	/* Exactly one of these is set. */
	struct vp_net *net;
	struct vp_netfe *fe;
	struct vp_pkt tx[MAX_BURST], rx[MAX_BURST];
	uint8_t *txbuf, *rxbuf;
	unsigned burst;
};

static inline int side_tx(struct side *s, unsigned n)
{
	return s->net ? vp_net_tx_burst(s->net, s->tx, n, 0)
		      : vp_netfe_tx_burst(s->fe, s->tx, n, 0);
}

static inline int side_rx(struct side *s, unsigned n)
{
	return s->net ? vp_net_rx_burst(s->net, s->rx, n) : vp_netfe_rx_burst(s->fe, s->rx, n);
}

static int side_init(struct side *s, unsigned burst)
{
	s->burst = burst;
	s->txbuf = aligned_alloc(64, (size_t)MAX_BURST * 2048);
	s->rxbuf = aligned_alloc(64, (size_t)MAX_BURST * 2048);
	if (!s->txbuf || !s->rxbuf)
		return -1;
	for (unsigned i = 0; i < MAX_BURST * 2048; i++)
		s->txbuf[i] = (uint8_t)(i * 13);
	memset(s->rxbuf, 0, (size_t)MAX_BURST * 2048);
	for (unsigned i = 0; i < MAX_BURST; i++) {
		s->tx[i] = (struct vp_pkt){ .data = s->txbuf + (size_t)i * 2048 };
		s->rx[i] = (struct vp_pkt){ .data = s->rxbuf + (size_t)i * 2048 };
	}
	return 0;
}

struct run_result {
	uint64_t rx_pkts, rx_ns;	/* in the window */
	uint64_t sent;
	double cpu;			/* share of a CPU during the window */
	const char *err;
};

/*
 * One measurement on one side. sending/receiving: which queues this side
 * drives. my_sent is where this side publishes its final sent count;
 * peer_sent is the peer's (UINT64_MAX until final).
 */
static void side_run(struct side *s, unsigned size, bool sending, bool receiving,
		     uint64_t t_start, uint64_t t_end, atomic_uint_fast64_t *my_sent,
		     atomic_uint_fast64_t *peer_sent, struct run_result *res)
{
	uint64_t sent = 0, expect = 0, at_start = 0, ns_start = 0, cpu_start = 0;
	unsigned it = 0, n = s->burst;
	bool in_window = false, window_done = false, stop = !sending;

	memset(res, 0, sizeof(*res));
	for (unsigned i = 0; i < n; i++)
		s->tx[i].len = size;
	for (;;) {
		if (!stop) {
			int r;

			for (unsigned i = 0; i < n; i++) {
				uint64_t q = sent + i;

				memcpy(s->tx[i].data, &q, 8);
			}
			r = side_tx(s, n);
			if (r < 0) {
				res->err = "tx failed";
				break;
			}
			sent += (unsigned)r;
		}
		if (receiving) {
			int r;

			for (unsigned i = 0; i < n; i++)
				s->rx[i].len = 2048;
			r = side_rx(s, n);
			if (r < 0) {
				res->err = "rx failed";
				break;
			}
			for (int i = 0; i < r; i++) {
				uint64_t q;

				memcpy(&q, s->rx[i].data, 8);
				if (q != expect || s->rx[i].len != size) {
					res->err = "bad sequence or length";
					goto out;
				}
				expect++;
			}
		}
		if (!(++it & 63)) {
			uint64_t t = now_ns();

			if (!in_window && !window_done && t >= t_start) {
				in_window = true;
				at_start = expect;
				ns_start = t;
				cpu_start = cpu_ns();
			} else if (in_window && t >= t_end) {
				in_window = false;
				window_done = true;
				res->rx_pkts = expect - at_start;
				res->rx_ns = t - ns_start;
				res->cpu = (double)(cpu_ns() - cpu_start) / (double)(t - ns_start);
			}
			if (window_done && !stop) {
				stop = true;
				atomic_store(my_sent, sent);
			}
			if (window_done && (!receiving || expect == atomic_load(peer_sent)))
				break;
			if (t > t_end + 10000000000ull) {
				res->err = "stalled after the window";
				break;
			}
		}
	}
out:
	if (!stop)
		atomic_store(my_sent, sent);
	res->sent = sent;
}

/* ---- cross-core latency probe ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Spin until the line holds v; false after 5 s (the peer is gone). */
static bool spin_for(struct ctl *c, uint64_t v)
{
	uint64_t end = 0;

	for (uint32_t i = 1; atomic_load_explicit(&c->line, memory_order_acquire) != v; i++) {
		cpu_relax();
		if (!(i & 0xffff)) {
			uint64_t t = now_ns();

			if (!end)
				end = t + 5000000000ull;
			else if (t > end)
				return false;
		}
	}
	return true;
}

/* The frontend's side: one-way ns, the median of PROBE_SAMPLES; < 0 on failure. */
static double probe_ping(struct ctl *c, uint64_t v)
{
	static double smp[PROBE_SAMPLES];

	for (unsigned i = 0; i < PROBE_SAMPLES; i++) {
		uint64_t t0 = now_ns();

		for (unsigned j = 0; j < PROBE_ROUNDS; j++) {
			atomic_store_explicit(&c->line, ++v, memory_order_release);
			if (!spin_for(c, ++v))
				return -1;
		}
		smp[i] = (double)(now_ns() - t0) / (2.0 * PROBE_ROUNDS);
	}
	qsort(smp, PROBE_SAMPLES, sizeof(smp[0]), cmp_double);
	return smp[PROBE_SAMPLES / 2];
}

static void probe_pong(struct ctl *c)
{
	uint64_t v = c->probe_base;

	for (unsigned i = 0; i < PROBE_SAMPLES * PROBE_ROUNDS; i++) {
		if (!spin_for(c, ++v))
			return;
		atomic_store_explicit(&c->line, ++v, memory_order_release);
	}
}

/* ---- backend process ---- */

struct be_state {
	struct vp_net *net;
	int err;
};

static void be_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *d,
		     void *opaque)
{
	struct be_state *b = opaque;

	(void)srv;
	if (ev == VP_EV_DEVICE_READY && !b->net)
		b->err = vp_net_new(&b->net, d, VP_NET_POLL);
	else if (ev == VP_EV_DEVICE_STOPPED && b->net) {
		vp_net_free(b->net);
		b->net = NULL;
	}
}

static int be_main(const struct opts *o, struct ctl *c)
{
	struct vp_server_config cfg = { 0 };
	struct be_state b = { 0 };
	struct vp_server *srv;
	struct side s = { 0 };
	unsigned done = 0;

	if (pin(o->cpu_be) || side_init(&s, o->burst))
		return 1;
	cfg.path = c->path;
	cfg.id = "net-bench";
	cfg.on_event = be_event;
	cfg.opaque = &b;
	if (vp_server_new(&srv, &cfg)) {
		snprintf(c->be_msg, sizeof(c->be_msg), "cannot listen on %s", c->path);
		atomic_store(&c->be_fail, 1);
		return 1;
	}
	atomic_store(&c->be_ready, 1);
	for (;;) {
		unsigned seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		struct run_result r;

		if (seq == done) {
			struct pollfd p = { vp_server_fd(srv), POLLIN, 0 };

			poll(&p, 1, b.net ? 0 : 1);
			vp_server_dispatch(srv);
			if (b.err) {
				snprintf(c->be_msg, sizeof(c->be_msg), "vp_net_new: %d", b.err);
				atomic_store(&c->be_fail, 1);
				break;
			}
			if (b.net && atomic_load(&c->be_ready) == 1)
				atomic_store(&c->be_ready, 2);
			continue;
		}
		if (c->cmd == CMD_QUIT)
			break;
		if (c->cmd == CMD_PROBE) {
			probe_pong(c);
		} else if (c->cmd == CMD_RUN && b.net) {
			s.net = b.net;
			side_run(&s, c->size, c->dir & DIR_BE2FE, c->dir & DIR_FE2BE,
				 c->t_start, c->t_end, &c->be_sent, &c->fe_sent, &r);
			c->be_rx_pkts = r.rx_pkts;
			c->be_rx_ns = r.rx_ns;
			c->be_cpu = r.cpu;
			if (r.err) {
				snprintf(c->be_msg, sizeof(c->be_msg), "backend: %s (%s)", r.err,
					 vp_net_broken(b.net) ? vp_net_broken(b.net) : "link up");
				atomic_store(&c->be_fail, 1);
			}
		}
		done = seq;
		atomic_store_explicit(&c->ack, seq, memory_order_release);
	}
	vp_server_free(srv);
	return 0;
}

/* ---- frontend process (the parent) and the driver of the whole run ---- */

static int command(struct ctl *c, unsigned cmd)
{
	unsigned seq = atomic_load(&c->seq) + 1;

	c->cmd = cmd;
	atomic_store_explicit(&c->seq, seq, memory_order_release);
	return (int)seq;
}

static int wait_ack(struct ctl *c, unsigned seq, double max_s)
{
	uint64_t end = now_ns() + (uint64_t)(max_s * 1e9);

	while (atomic_load_explicit(&c->ack, memory_order_acquire) != seq) {
		if (atomic_load(&c->be_fail) || now_ns() > end)
			return -1;
		cpu_relax();
	}
	return 0;
}

static double probe(struct ctl *c)
{
	uint64_t base = atomic_load(&c->line);
	unsigned seq;
	double ns;

	c->probe_base = base;
	seq = (unsigned)command(c, CMD_PROBE);
	ns = probe_ping(c, base);

	return wait_ack(c, seq, 10) ? -1 : ns;
}

static const char *dir_name(unsigned d)
{
	return d == DIR_BE2FE ? "be2fe" : d == DIR_FE2BE ? "fe2be" : "both";
}

static void line(const char *name, uint64_t pkts, uint64_t ns, unsigned size)
{
	double s = (double)ns / 1e9;

	printf("  %-22s %8.3f Mpps %8.2f Gbit/s  (%" PRIu64 " packets)\n", name,
	       s > 0 ? (double)pkts / s / 1e6 : 0, s > 0 ? (double)pkts * size * 8 / s / 1e9 : 0,
	       pkts);
}

static int fe_run(const struct opts *o, struct ctl *c, struct side *s, unsigned size,
		  unsigned dir)
{
	struct run_result r;
	double lat0, lat1;
	unsigned seq;

	lat0 = probe(c);
	atomic_store(&c->fe_sent, UINT64_MAX);
	atomic_store(&c->be_sent, UINT64_MAX);
	c->dir = dir;
	c->size = size;
	c->t_start = now_ns() + (uint64_t)(o->warmup * 1e9);
	c->t_end = c->t_start + (uint64_t)(o->seconds * 1e9);
	seq = (unsigned)command(c, CMD_RUN);
	side_run(s, size, dir & DIR_FE2BE, dir & DIR_BE2FE, c->t_start, c->t_end,
		 &c->fe_sent, &c->be_sent, &r);
	if (wait_ack(c, seq, 30) || r.err) {
		fprintf(stderr, "net-bench: %s %u B failed: %s%s%s\n", dir_name(dir), size,
			r.err ? r.err : "", r.err ? "; " : "", c->be_msg);
		return -1;
	}
	lat1 = probe(c);
	printf("net-bench: %u B, %s, burst %u, qsize %u, cores fe %d be %d, %.2f s\n",
	       size, dir_name(dir), o->burst, o->qsize, o->cpu_fe, o->cpu_be, o->seconds);
	if (dir & DIR_BE2FE)
		line("be TX -> fe RX", r.rx_pkts, r.rx_ns, size);
	if (dir & DIR_FE2BE)
		line("fe TX -> be RX", c->be_rx_pkts, c->be_rx_ns, size);
	printf("  cross-core one-way latency, median: %.1f ns before, %.1f ns after\n",
	       lat0, lat1);
	printf("  cpu share: frontend %.1f%%, backend %.1f%%%s\n", r.cpu * 100, c->be_cpu * 100,
	       r.cpu < 0.97 || c->be_cpu < 0.97 ? "  (below 97%: do not trust this run)" : "");
	fflush(stdout);
	return 0;
}

/* Guest RAM that cannot shrink under the backend, as the server requires. */
static int sealed_ram(void)
{
	int fd = memfd_create("bench-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd >= 0 && (ftruncate(fd, RAM_SIZE) < 0 ||
			fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int fe_main(const struct opts *o, struct ctl *c, pid_t child)
{
	struct vp_netfe_config cfg = { 0 };
	struct vp_frontend_info info;
	struct vp_netfe *fe = NULL;
	struct vp_client *cl = NULL;
	struct side s = { 0 };
	uint64_t end = now_ns() + 10000000000ull;
	int ramfd, ret = 1;
	void *ram;

	if (pin(o->cpu_fe) || side_init(&s, o->burst))
		return 1;
	ramfd = sealed_ram();
	if (ramfd < 0)
		return 1;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
	if (ram == MAP_FAILED)
		return 1;
	cfg.ram = ram;
	cfg.ram_size = RAM_SIZE;
	cfg.ram_fd = ramfd;
	cfg.ram_offset = 0x10000;
	cfg.rx_num = (uint16_t)o->qsize;
	cfg.tx_num = (uint16_t)o->qsize;
	cfg.features = o->features;
	cfg.mode = VP_NET_POLL;
	if (vp_netfe_new(&fe, &cfg)) {
		fprintf(stderr, "net-bench: vp_netfe_new failed\n");
		goto out;
	}
	while (!atomic_load(&c->be_ready)) {
		if (now_ns() > end || waitpid(child, NULL, WNOHANG) == child)
			goto out;
		usleep(1000);
	}
	vp_netfe_info(fe, &info);
	if (vp_client_connect(&cl, c->path, &info) || vp_client_wait(cl, 5000) ||
	    vp_netfe_start(fe, vp_client_features(cl))) {
		fprintf(stderr, "net-bench: handshake failed\n");
		goto out;
	}
	while (atomic_load(&c->be_ready) != 2) {
		if (now_ns() > end || atomic_load(&c->be_fail))
			goto out;
		usleep(1000);
	}
	s.fe = fe;
	ret = 0;
	for (unsigned rep = 0; rep < o->repeat && !ret; rep++)
		for (unsigned i = 0; i < o->nsizes && !ret; i++)
			for (unsigned d = 0; d < o->ndirs && !ret; d++)
				if (fe_run(o, c, &s, o->sizes[i], o->dirs[d]))
					ret = 1;
out:
	command(c, CMD_QUIT);
	if (atomic_load(&c->be_fail))
		fprintf(stderr, "net-bench: %s\n", c->be_msg);
	vp_client_free(cl);
	vp_netfe_free(fe);
	return ret;
}

/*
 * --single N: both sides in this one process, taking turns: N packets each
 * way through the whole path (frontend and backend, both copies), no
 * polling, no second core. What callgrind should look at: every
 * instruction counted is one the data path needs.
 */
struct single_state {
	struct vp_net *net;
	int err;
};

static void single_event(struct vp_server *srv, enum vp_event ev, const struct vp_device *d,
			 void *opaque)
{
	struct single_state *b = opaque;

	(void)srv;
	if (ev == VP_EV_DEVICE_READY && !b->net)
		b->err = vp_net_new(&b->net, d, VP_NET_POLL);
	else if (ev == VP_EV_DEVICE_STOPPED && b->net) {
		vp_net_free(b->net);
		b->net = NULL;
	}
}

static int single_main(const struct opts *o, const char *path, uint64_t count)
{
	struct vp_server_config cfg = { .path = path, .id = "net-bench" };
	struct vp_netfe_config fc = { 0 };
	struct single_state b = { 0 };
	struct vp_frontend_info info;
	struct vp_server *srv = NULL;
	struct vp_netfe *fe = NULL;
	struct vp_client *cl = NULL;
	struct side be = { 0 }, fes = { 0 };
	uint64_t t0, ns[2] = { 0, 0 }, done[2] = { 0, 0 };
	int ramfd, ret = 1;
	void *ram;

	cfg.on_event = single_event;
	cfg.opaque = &b;
	ramfd = sealed_ram();
	if (ramfd < 0 || side_init(&be, o->burst) ||
	    side_init(&fes, o->burst))
		return 1;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
	fc = (struct vp_netfe_config){ .ram = ram, .ram_size = RAM_SIZE, .ram_fd = ramfd,
		.ram_offset = 0x10000, .rx_num = (uint16_t)o->qsize, .tx_num = (uint16_t)o->qsize,
		.features = o->features, .mode = VP_NET_POLL };
	if (ram == MAP_FAILED || vp_server_new(&srv, &cfg) || vp_netfe_new(&fe, &fc))
		goto out;
	vp_netfe_info(fe, &info);
	if (vp_client_connect(&cl, path, &info))
		goto out;
	for (int i = 0; i < 1000 && vp_client_state(cl) == VP_CLIENT_HANDSHAKE; i++) {
		usleep(1000);
		vp_server_dispatch(srv);
		vp_client_dispatch(cl);
	}
	if (!b.net || vp_netfe_start(fe, vp_client_features(cl)))
		goto out;
	be.net = b.net;
	fes.fe = fe;
	for (unsigned si = 0; si < o->nsizes; si++) {
		unsigned size = o->sizes[si];

		ns[0] = ns[1] = done[0] = done[1] = 0;
		for (unsigned i = 0; i < o->burst; i++)
			be.tx[i].len = fes.tx[i].len = size;
		while (done[0] < count || done[1] < count) {
			int r1, r2;

			/* be TX -> fe RX */
			t0 = now_ns();
			for (unsigned i = 0; i < o->burst; i++)
				memcpy(be.tx[i].data, &(uint64_t){ done[0] + i }, 8);
			r1 = vp_net_tx_burst(b.net, be.tx, o->burst, 0);
			for (unsigned i = 0; i < o->burst; i++)
				fes.rx[i].len = 2048;
			r2 = vp_netfe_rx_burst(fe, fes.rx, o->burst);
			ns[0] += now_ns() - t0;
			if (r1 != r2 || r1 <= 0)
				goto out;
			done[0] += (unsigned)r2;
			/* fe TX -> be RX */
			t0 = now_ns();
			for (unsigned i = 0; i < o->burst; i++)
				memcpy(fes.tx[i].data, &(uint64_t){ done[1] + i }, 8);
			r1 = vp_netfe_tx_burst(fe, fes.tx, o->burst, 0);
			for (unsigned i = 0; i < o->burst; i++)
				be.rx[i].len = 2048;
			r2 = vp_net_rx_burst(b.net, be.rx, o->burst);
			ns[1] += now_ns() - t0;
			if (r1 != r2 || r1 <= 0)
				goto out;
			done[1] += (unsigned)r2;
		}
		printf("net-bench --single: %u B, burst %u: be2fe %.1f ns/packet, fe2be %.1f ns/packet"
		       " (TX and RX on one core, one after the other)\n", size, o->burst,
		       (double)ns[0] / (double)done[0], (double)ns[1] / (double)done[1]);
	}
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "net-bench --single: failed\n");
	vp_client_free(cl);
	vp_server_free(srv);
	vp_netfe_free(fe);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: net-bench [options]\n"
		"  --seconds S     measuring window per run (default 5)\n"
		"  --warmup S      before each window (default 0.5)\n"
		"  --cores A,B     frontend on core A, backend on core B (default 0,1)\n"
		"  --sizes L       packet sizes, comma separated (default 64,1518; max 2036)\n"
		"  --dirs L        be2fe,fe2be,both (default all three)\n"
		"  --burst N       packets per call (default 32)\n"
		"  --qsize N       ring size (default 256)\n"
		"  --repeat N      run the whole set N times, interleaved (default 1)\n"
		"  --no-event-idx  do not negotiate VIRTIO_RING_F_EVENT_IDX\n"
		"  --single N      one process, no pinning: N packets each way, turn by\n"
		"                  turn (for callgrind and instruction counts)\n"
		"  --help\n");
}

static int parse_list(const char *s, unsigned *out, unsigned max, bool dirs)
{
	char buf[128], *save = NULL, *tok;
	unsigned n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return -1;
		if (dirs) {
			if (!strcmp(tok, "be2fe"))
				out[n++] = DIR_BE2FE;
			else if (!strcmp(tok, "fe2be"))
				out[n++] = DIR_FE2BE;
			else if (!strcmp(tok, "both"))
				out[n++] = DIR_BOTH;
			else
				return -1;
		} else {
			unsigned long v = strtoul(tok, NULL, 0);

			if (v < 16 || v > 2048 - VP_NET_HDR_LEN)
				return -1;
			out[n++] = (unsigned)v;
		}
	}
	return (int)n;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", 1, 0, 't' }, { "warmup", 1, 0, 'w' }, { "cores", 1, 0, 'c' },
		{ "sizes", 1, 0, 's' }, { "dirs", 1, 0, 'd' }, { "burst", 1, 0, 'b' },
		{ "qsize", 1, 0, 'q' }, { "repeat", 1, 0, 'r' }, { "no-event-idx", 0, 0, 'e' },
		{ "single", 1, 0, 'S' }, { "help", 0, 0, 'h' }, { 0 },
	};
	uint64_t single = 0;
	struct opts o = {
		.seconds = 5, .warmup = 0.5, .cpu_fe = 0, .cpu_be = 1,
		.sizes = { 64, 1518 }, .nsizes = 2,
		.dirs = { DIR_BE2FE, DIR_FE2BE, DIR_BOTH }, .ndirs = 3,
		.burst = 32, .qsize = 256, .repeat = 1, .features = VP_NETFE_DEFAULT_FEATURES,
	};
	struct ctl *c;
	char dir[] = "/tmp/net-bench-XXXXXX";
	int opt, r, status = 0;
	pid_t pid;

	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 't': o.seconds = atof(optarg); break;
		case 'w': o.warmup = atof(optarg); break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &o.cpu_fe, &o.cpu_be) != 2) {
				usage(stderr);
				return 2;
			}
			break;
		case 's':
			r = parse_list(optarg, o.sizes, MAX_SIZES, false);
			if (r <= 0) {
				usage(stderr);
				return 2;
			}
			o.nsizes = (unsigned)r;
			break;
		case 'd':
			r = parse_list(optarg, o.dirs, 3, true);
			if (r <= 0) {
				usage(stderr);
				return 2;
			}
			o.ndirs = (unsigned)r;
			break;
		case 'b': o.burst = (unsigned)atoi(optarg); break;
		case 'q': o.qsize = (unsigned)atoi(optarg); break;
		case 'r': o.repeat = (unsigned)atoi(optarg); break;
		case 'e': o.features &= ~(1ull << 29); break;
		case 'S': single = strtoull(optarg, NULL, 0); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || o.seconds <= 0 || o.burst < 1 || o.burst > MAX_BURST ||
	    o.qsize < 2 || o.qsize > 32768 || (o.qsize & (o.qsize - 1)) || !o.repeat) {
		usage(stderr);
		return 2;
	}
	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED || !mkdtemp(dir))
		return 1;
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s/s.sock", dir);
	vp_log_set_level(VP_LOG_WARN);
	if (single) {
		r = single_main(&o, c->path, single);
		rmdir(dir);
		return r;
	}
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0)
		_exit(be_main(&o, c));
	r = fe_main(&o, c, pid);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		r = 1;
	rmdir(dir);
	return r;
}
