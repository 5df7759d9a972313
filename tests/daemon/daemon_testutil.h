/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the daemon's test programs (test_daemon.c, test_hostile.c) share:
 * time, other processes seen from outside (alive? how many fds?), raw Unix
 * sockets, the control socket's one-JSON-document answers, and a frontend's
 * guest RAM and rings. Include it after testutil.h (tu_memfd).
 */
#ifndef VP_DAEMON_TESTUTIL_H
#define VP_DAEMON_TESTUTIL_H

#include <errno.h>
#include <inttypes.h>
#include <ftw.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "vhostpci/sock.h"
#include "json.h"

static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Our child pid still running? (Leaves its exit status to be reaped.) */
static inline bool pid_alive(pid_t pid)
{
	siginfo_t si = { 0 };

	return pid > 0 && waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid == 0;
}

/* Open fds of process pid (its first 1024). */
static inline int pid_fds(pid_t pid)
{
	char path[64];
	struct stat st;
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		n += lstat(path, &st) == 0;
	}
	return n;
}

static inline int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.107s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* True once the peer closed fd (EOF or reset) within timeout_ms; what it
 * sent before is read and thrown away. */
static inline bool closed_by_peer(int fd, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char buf[512];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
	}
}

/* Read one control answer from fd until EOF (within timeout_ms), parsed;
 * NULL on failure. */
static inline struct jv *ctl_read(int fd, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t cap = 1 << 20, have = 0;
	char *buf = malloc(cap), err[128];
	struct jv *doc = NULL;

	if (!buf)
		return NULL;
	while (have < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			goto out;
		n = recv(fd, buf + have, cap - 1 - have, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			goto out;
		if (n > 0)
			have += (size_t)n;
	}
	buf[have] = 0;
	if (jv_parse(buf, have, &doc, err, sizeof(err)) < 0)
		fprintf(stderr, "  bad JSON from the daemon (%s): %.200s\n", err, buf);
out:
	free(buf);
	return doc;
}

/* Send raw bytes to the control socket at path: its answer, parsed. */
static inline struct jv *ctl_ask_raw(const char *path, const void *data, size_t len,
				     int timeout_ms)
{
	struct jv *doc = NULL;
	int fd = unix_connect(path);

	if (fd < 0)
		return NULL;
	if (send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len)
		doc = ctl_read(fd, timeout_ms);
	close(fd);
	return doc;
}

/* Backend state and reason of device id from "show ID" at the control socket
 * ctl ("gone" if it is not listed, "" if it has no backend). */
static inline void ctl_backend_of(const char *ctl, uint64_t id, char *st, size_t stlen,
				  char *why, size_t whylen, int timeout_ms)
{
	char cmd[64];
	struct jv *doc;
	const struct jv *dev, *b;

	snprintf(cmd, sizeof(cmd), "show %" PRIu64 "\n", id);
	doc = ctl_ask_raw(ctl, cmd, strlen(cmd), timeout_ms);
	dev = jv_get(doc, "device");
	b = jv_get(dev, "backend");
	snprintf(st, stlen, "%s", !dev ? "gone" : b && jv_get_str(b, "state") ?
		 jv_get_str(b, "state") : "");
	snprintf(why, whylen, "%s", b && jv_get_str(b, "reason") ? jv_get_str(b, "reason") : "");
	jv_free(doc);
}

/* Poll until device id's backend state is want (within timeout_ms). */
static inline bool ctl_wait_backend(const char *ctl, uint64_t id, const char *want,
				    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char st[32], why[400];

	do {
		ctl_backend_of(ctl, id, st, sizeof(st), why, sizeof(why), timeout_ms);
		if (!strcmp(st, want))
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	fprintf(stderr, "  device %" PRIu64 ": backend %s (%s), wanted %s\n", id, st, why, want);
	return false;
}

/* One raw vhost-user message with a u64 payload and at most one fd. */
static inline int vu_raw_send(int fd, uint32_t req, uint32_t flags, uint64_t u64, int pass_fd)
{
	struct vp_msg m;

	vp_msg_init(&m, req, flags);
	m.p.u64 = u64;
	if (pass_fd >= 0) {
		m.fds[0] = pass_fd;
		m.nfds = 1;
	}
	return vp_sock_send(fd, &m);
}

static inline int vu_raw_state(int fd, uint32_t req, uint32_t idx, uint32_t num)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.state.index = idx;
	m.p.state.num = num;
	return vp_sock_send(fd, &m);
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* rm -r dir */
static inline void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- a frontend in the test process: 1 MiB of "guest RAM", two rings ---- */

#define MEM_GPA 0x40000000ull
#define MEM_SIZE (1u << 20)
#define RING_NUM 256

struct frontend {
	int memfd;
	uint8_t *mem;
	int kick[2], call[2];
	uint16_t avail[2];      /* next avail index of each ring, for tests that post */
	struct vp_frontend_info info;
	struct vp_client *client;
};

/* Ring i's desc table; its avail ring is 0x1000 and its used ring 0x2000 on. */
static inline uint64_t ring_off(unsigned ring)
{
	return (uint64_t)ring * 0x4000;
}

/*
 * A virtio-net device with its RAM in a memfd (seal = 0: RAM the frontend
 * can still truncate, a hostile frontend's), both rings enabled, and
 * non-blocking eventfds; no uuid, no config. False on error (fe_free() it).
 */
static inline bool fe_setup(struct frontend *f, int seal, uint64_t device_features,
			    uint64_t driver_features)
{
	memset(f, 0, sizeof(*f));
	f->memfd = tu_memfd("vp-test-ram", MEM_SIZE, seal);
	if (f->memfd < 0)
		return false;
	f->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	if (f->mem == MAP_FAILED) {
		f->mem = NULL;
		return false;
	}
	f->info.device_type = VP_VIRTIO_ID_NET;
	f->info.device_features = device_features;
	f->info.driver_features = driver_features;
	f->info.nregions = 1;
	f->info.regions[0] = (struct vp_dev_region){
		.gpa = MEM_GPA, .size = MEM_SIZE, .uaddr = (uint64_t)(uintptr_t)f->mem,
		.fd_offset = 0, .prot = VP_MEM_RW, .fd = f->memfd,
	};
	f->info.nrings = 2;
	for (unsigned i = 0; i < 2; i++) {
		f->kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		f->call[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (f->kick[i] < 0 || f->call[i] < 0)
			return false;
		f->info.rings[i] = (struct vp_frontend_ring){
			.num = RING_NUM, .enabled = true,
			.desc = MEM_GPA + ring_off(i),
			.avail = MEM_GPA + ring_off(i) + 0x1000,
			.used = MEM_GPA + ring_off(i) + 0x2000,
			.kick_fd = f->kick[i], .call_fd = f->call[i],
		};
	}
	return true;
}

static inline void fe_free(struct frontend *f)
{
	vp_client_free(f->client);
	for (unsigned i = 0; i < 2; i++) {
		if (f->kick[i] > 0)
			close(f->kick[i]);
		if (f->call[i] > 0)
			close(f->call[i]);
	}
	if (f->mem)
		munmap(f->mem, MEM_SIZE);
	if (f->memfd > 0)
		close(f->memfd);
	memset(f, 0, sizeof(*f));
}

#endif
