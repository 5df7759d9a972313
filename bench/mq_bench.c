/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mq-bench: vhost-pci-net packet rate with N queue pairs (VIRTIO_NET_F_MQ).
 *
 * One process sets the link up (a vp_server offering N pairs, a vp_netfe
 * with N pairs over the native handshake, a vp_net per pair from
 * vp_net_new_queue()), then forks two busy-polling workers per pair: the
 * frontend's sender on pair q and the backend's receiver on pair q, pinned
 * round robin over the CPUs (--cpus). No control message moves during the
 * window, so the workers share nothing but their own pair's rings. Frames
 * go frontend -> backend (one copy, as net-bench's fe2be); each carries its
 * pair and a sequence number, checked by the receiver.
 *
 * Reports Mpps per pair and in total; the per-pair rate of one pair on two
 * cores is the per-queue cost that says what more cores would give.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

#define MAXQ VP_NETFE_MAX_QUEUE_PAIRS
#define SLICE (8u << 20)
#define BURST 32

struct shared {
	atomic_int go;            /* 1: run, 2: stop */
	uint64_t rx[MAXQ], bad[MAXQ];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(unsigned cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static struct vp_net *nets[MAXQ];
static unsigned nready;

static void on_event(struct vp_server *s, enum vp_event ev, const struct vp_device *d, void *o)
{
	(void)s;
	(void)o;
	if (ev != VP_EV_DEVICE_READY && ev != VP_EV_DEVICE_CHANGED)
		return;
	for (unsigned q = 0; q < d->nrings / 2 && q < MAXQ; q++)
		if (!nets[q] && vp_device_pair_live(d, q) &&
		    vp_net_new_queue(&nets[q], d, q, VP_NET_POLL) == 0)
			nready++;
}

static void sender(struct vp_netfe *fe, unsigned q, unsigned size, struct shared *sh)
{
	static uint8_t buf[BURST][2048];
	struct vp_pkt pk[BURST];
	uint64_t seq = 0;

	for (unsigned i = 0; i < BURST; i++)
		memset(buf[i], 0x5a, size);
	while (atomic_load(&sh->go) == 0)
		;
	while (atomic_load_explicit(&sh->go, memory_order_relaxed) == 1) {
		for (unsigned i = 0; i < BURST; i++) {
			buf[i][0] = (uint8_t)q;
			memcpy(buf[i] + 1, &(uint64_t){ seq + i }, 8);
			pk[i] = (struct vp_pkt){ .data = buf[i], .len = size };
		}
		int n = vp_netfe_tx_burst(fe, pk, BURST, 0);

		if (n < 0)
			_exit(1);
		seq += (unsigned)n;
	}
	_exit(0);
}

static void receiver(struct vp_net *n, unsigned q, struct shared *sh)
{
	static uint8_t buf[BURST][2048];
	struct vp_pkt pk[BURST];
	uint64_t seq = 0, rx = 0, bad = 0;

	while (atomic_load(&sh->go) == 0)
		;
	while (atomic_load_explicit(&sh->go, memory_order_relaxed) == 1) {
		for (unsigned i = 0; i < BURST; i++)
			pk[i] = (struct vp_pkt){ .data = buf[i], .len = sizeof(buf[i]) };
		int r = vp_net_rx_burst(n, pk, BURST);

		if (r < 0)
			_exit(1);
		for (int i = 0; i < r; i++) {
			uint64_t s;

			memcpy(&s, buf[i] + 1, 8);
			if (buf[i][0] != q || s != seq)
				bad++;
			seq = s + 1;
		}
		rx += (unsigned)r;
	}
	sh->rx[q] = rx;
	sh->bad[q] = bad;
	_exit(0);
}

static int run(unsigned pairs, unsigned size, double seconds, unsigned ncpu)
{
	struct vp_server_config sc = { .id = "mq-bench", .max_queue_pairs = pairs,
				       .on_event = on_event };
	struct vp_netfe_config fc = { 0 };
	struct vp_frontend_info in;
	struct vp_server *srv = NULL;
	struct vp_netfe *fe = NULL;
	struct vp_client *cl = NULL;
	struct shared *sh;
	char path[64];
	pid_t pid[2 * MAXQ];
	int ram_fd, e;
	void *ram;
	uint64_t deadline;

	snprintf(path, sizeof(path), "/tmp/mq-bench-%d.sock", (int)getpid());
	sc.path = path;
	ram_fd = memfd_create("mq-bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ram_fd < 0 || ftruncate(ram_fd, (off_t)pairs * SLICE) < 0 ||
	    fcntl(ram_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		return -errno;
	ram = mmap(NULL, (size_t)pairs * SLICE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED || sh == MAP_FAILED)
		return -ENOMEM;
	memset(sh, 0, sizeof(*sh));
	fc = (struct vp_netfe_config){ .ram = ram, .ram_size = (uint64_t)pairs * SLICE,
		.ram_fd = ram_fd, .ram_offset = 0x1000, .queue_pairs = pairs };
	e = vp_server_new(&srv, &sc);
	if (!e)
		e = vp_netfe_new(&fe, &fc);
	if (e)
		return e;
	vp_netfe_info(fe, &in);
	e = vp_client_connect(&cl, path, &in);
	if (e)
		return e;
	deadline = now_ns() + 3000000000ull;
	while (vp_client_state(cl) == VP_CLIENT_HANDSHAKE && now_ns() < deadline) {
		struct pollfd p = { vp_server_fd(srv), POLLIN, 0 };

		poll(&p, 1, 1);
		vp_server_dispatch(srv);
		vp_client_dispatch(cl);
	}
	if (vp_client_state(cl) != VP_CLIENT_STARTED ||
	    vp_netfe_start(fe, vp_client_features(cl)) || nready != pairs) {
		fprintf(stderr, "mq-bench: link with %u pairs did not come up\n", pairs);
		return -EIO;
	}
	for (unsigned q = 0; q < pairs; q++) {
		for (unsigned side = 0; side < 2; side++) {
			pid_t p = fork();

			if (p == 0) {
				pin((2 * q + side) % ncpu);
				if (side == 0)
					sender(vp_netfe_queue(fe, q), q, size, sh);
				receiver(nets[q], q, sh);
			}
			pid[2 * q + side] = p;
		}
	}
	usleep(100000);
	atomic_store(&sh->go, 1);
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&sh->go, 2);
	for (unsigned i = 0; i < 2 * pairs; i++)
		waitpid(pid[i], NULL, 0);

	double total = 0;

	printf("pairs %u size %u:", pairs, size);
	for (unsigned q = 0; q < pairs; q++) {
		double mpps = (double)sh->rx[q] / seconds / 1e6;

		total += mpps;
		printf(" q%u %.2f Mpps%s", q, mpps, sh->bad[q] ? " (BAD FRAMES)" : "");
	}
	printf(" total %.2f Mpps %.2f Gbit/s\n", total, total * size * 8 / 1000);
	vp_client_free(cl);
	for (unsigned q = 0; q < pairs; q++)
		vp_net_free(nets[q]), nets[q] = NULL;
	nready = 0;
	vp_server_free(srv);
	vp_netfe_free(fe);
	munmap(ram, (size_t)pairs * SLICE);
	munmap(sh, sizeof(*sh));
	close(ram_fd);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned pairs = 0, size = 64, ncpu = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	double seconds = 3;
	int opt;

	vp_log_set_level(VP_LOG_WARN);
	while ((opt = getopt(argc, argv, "q:s:t:c:h")) != -1) {
		switch (opt) {
		case 'q': pairs = (unsigned)atoi(optarg); break;
		case 's': size = (unsigned)atoi(optarg); break;
		case 't': seconds = atof(optarg); break;
		case 'c': ncpu = (unsigned)atoi(optarg); break;
		default:
			printf("Usage: mq-bench [-q PAIRS (default 1 then %u)] [-s SIZE 64] "
			       "[-t SECONDS 3] [-c CPUS]\n", MAXQ);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (size < 9 || size > 2000 || pairs > MAXQ || !ncpu || seconds <= 0) {
		fprintf(stderr, "mq-bench: bad arguments\n");
		return 2;
	}
	for (unsigned p = pairs ? pairs : 1; p <= (pairs ? pairs : MAXQ); p++)
		if (run(p, size, seconds, ncpu) < 0)
			return 1;
	return 0;
}
