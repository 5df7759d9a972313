/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The backend guest's side of tests/peers/qemu-kmod-data.sh: a static program run by
 * tests/guest/tests/kmod-data.sh, talking kmod_proto.h over UDP through vpnet0 to the
 * frontend's tiny host (kmod_net.c).
 *
 *   kmod-guest tx COUNT SIZE      COUNT datagrams of SIZE pattern bytes to the host,
 *                                 which checks every byte; its verdict is the result
 *   kmod-guest rx COUNT SIZE      pull COUNT datagrams from the host a window at a time
 *                                 (16 to 256, by size) and check every byte here (a lost
 *                                 window is pulled again)
 *   kmod-guest pingme COUNT SIZE  the host pings us COUNT times; all must come back
 *   kmod-guest hostile            ask the host to post a descriptor outside its RAM
 *
 * Prints one "kmod-guest: ..." line; exit 0 on success, 1 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kmod_proto.h"

/* Datagrams pulled at a time: what our receive buffer holds with room to spare. */
#define WINDOW_BYTES 160000u
#define WINDOW_MAX 256u
#define MAXD 65536u

static int sock = -1;
static unsigned char buf[MAXD];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "in T s, F frames/s, M Mbit/s" for count datagrams of size bytes since t0. */
static void rate(char *out, size_t len, double t0, uint32_t count, uint32_t size)
{
	double t = now_s() - t0;

	if (t <= 0)
		t = 1e-6;
	snprintf(out, len, "in %.2f s, %.0f frames/s, %.1f Mbit/s", t, count / t,
		 count * (double)size * 8 / t / 1e6);
}

static int die(const char *what)
{
	printf("kmod-guest: FAIL: %s (%s)\n", what, strerror(errno));
	return 1;
}

static int send_msg(uint32_t op, uint32_t a, uint32_t b, uint32_t c, uint32_t size)
{
	struct kn_msg m = { htonl(op), htonl(a), htonl(b), htonl(c) };

	memcpy(buf, &m, sizeof(m));
	for (uint32_t i = 0; i < size; i++)
		buf[sizeof(m) + i] = kn_pat(a, i);
	for (int tries = 0; tries < 1000; tries++) {
		if (send(sock, buf, sizeof(m) + size, 0) >= 0)
			return 0;
		/* A full qdisc says ENOBUFS: wait for room instead of losing it. */
		if (errno != ENOBUFS && errno != EAGAIN)
			return -errno;
		poll(NULL, 0, 1);
	}
	return -ENOBUFS;
}

/* Next datagram within ms, into buf; its length or -1. */
static ssize_t recv_msg(int ms, struct kn_msg *m)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, ms) != 1)
		return -1;
	n = recv(sock, buf, sizeof(buf), 0);
	if (n < (ssize_t)sizeof(*m))
		return -1;
	memcpy(m, buf, sizeof(*m));
	m->op = ntohl(m->op);
	m->a = ntohl(m->a);
	m->b = ntohl(m->b);
	m->c = ntohl(m->c);
	return n;
}

/* Wait for an answer of kind op, asking again (op_ask) up to 5 times. */
static int await(uint32_t op, struct kn_msg *m, uint32_t ask, uint32_t a, uint32_t b, int ms)
{
	for (int tries = 0; tries < 5; tries++) {
		if (send_msg(ask, a, b, 0, 0))
			return -1;
		for (;;) {
			if (recv_msg(ms, m) < 0)
				break;
			if (m->op == op)
				return 0;
		}
	}
	return -1;
}

static int do_tx(uint32_t count, uint32_t size)
{
	double t0 = now_s();
	struct kn_msg m;
	char r[96];

	for (uint32_t s = 0; s < count; s++)
		if (send_msg(KN_DATA, s, 0, 0, size))
			return die("send");
	if (await(KN_RES, &m, KN_END, count, size, 3000))
		return die("no verdict from the host");
	rate(r, sizeof(r), t0, count, size);
	printf("kmod-guest: tx %u datagrams of %u bytes: host got %u, %u bad: %s (%s)\n", count,
	       size, m.b, m.c, m.a ? "ok" : "WRONG", r);
	return m.a ? 0 : 1;
}

static int do_rx(uint32_t count, uint32_t size)
{
	uint32_t window = WINDOW_BYTES / (size + 512u);
	unsigned retries = 0;
	uint32_t first = 0;
	double t0 = now_s();
	struct kn_msg m;
	char r[96];

	window = window < 16 ? 16 : window > WINDOW_MAX ? WINDOW_MAX : window;
	while (first < count) {
		uint32_t n = count - first < window ? count - first : window, want = first;

		if (send_msg(KN_PULL, first, n, size, 0))
			return die("send");
		while (want < first + n) {
			ssize_t len = recv_msg(2000, &m);

			if (len < 0)
				break;
			if (m.op != KN_PUSHED || m.a < want)
				continue;	/* late from a window pulled again */
			if (m.a > want || (size_t)len != sizeof(m) + size)
				break;
			for (uint32_t i = 0; i < size; i++) {
				if (buf[sizeof(m) + i] != kn_pat(m.a, i)) {
					printf("kmod-guest: rx datagram %u byte %u: 0x%02x, not 0x%02x: "
					       "WRONG\n", m.a, i, buf[sizeof(m) + i], kn_pat(m.a, i));
					return 1;
				}
			}
			want++;
		}
		if (want < first + n) {
			if (++retries > 20) {
				printf("kmod-guest: rx stuck at datagram %u: WRONG\n", want);
				return 1;
			}
			continue;
		}
		first += n;
	}
	rate(r, sizeof(r), t0, count, size);
	printf("kmod-guest: rx %u datagrams of %u bytes: ok (%u windows pulled again; %s)\n",
	       count, size, retries, r);
	return 0;
}

static int do_pingme(uint32_t count, uint32_t size)
{
	struct kn_msg m;

	if (await(KN_PINGED, &m, KN_PINGME, count, size, 5000 + (int)count * 1000 / 2))
		return die("no answer to PINGME");
	printf("kmod-guest: the host pinged us %u times: %u replies, %u bad: %s\n", count, m.a,
	       m.b, m.a == count && !m.b ? "ok" : "WRONG");
	return m.a == count && !m.b ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in host = { .sin_family = AF_INET, .sin_port = htons(KN_PORT),
				    .sin_addr.s_addr = htonl(KN_HOST_IP) };
	int rcv = 4 << 20;
	uint32_t count, size;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return die("usage: kmod-guest tx|rx|pingme COUNT SIZE | hostile");
	sock = socket(AF_INET, SOCK_DGRAM, 0);
	if (sock < 0)
		return die("socket");
	setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	if (connect(sock, (struct sockaddr *)&host, sizeof(host)))
		return die("connect");
	if (!strcmp(argv[1], "hostile"))
		return send_msg(KN_HOSTILE, 0, 0, 0, 0) ? die("send") : 0;
	if (argc < 4)
		return die("usage: kmod-guest tx|rx|pingme COUNT SIZE");
	count = (uint32_t)strtoul(argv[2], NULL, 0);
	size = (uint32_t)strtoul(argv[3], NULL, 0);
	if (size + sizeof(struct kn_msg) > MAXD)
		return die("SIZE too large");
	if (!strcmp(argv[1], "tx"))
		return do_tx(count, size);
	if (!strcmp(argv[1], "rx"))
		return do_rx(count, size);
	if (!strcmp(argv[1], "pingme"))
		return do_pingme(count, size);
	return die("unknown command");
}
