/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host half of a backend-VM test: a frontend (vp_netfe) whose RAM is a
 * sealed power-of-two memfd, published as a vhost-pci device (docs/device.md)
 * the way vhost-pcid will publish it, sending COUNT test frames and checking
 * that every one comes back unchanged (a backend running `vp-vm --backend
 * --guest-pci --app echo` on the other side).
 *
 *   guestbe-host fake SYSFS_DIR COUNT [TIMEOUT_S]
 *       a fake sysfs PCI tree in SYSFS_DIR (made here): the memory function's
 *       resource2 a symlink to our RAM memfd, resource0 a 256-byte file, the
 *       info function's resource2 an 8 KiB file (no QEMU: the doorbell is
 *       memory, so the frontend polls);
 *   guestbe-host qemu IVSHMEM_SOCK INFO_FILE COUNT [TIMEOUT_S]
 *       the same device for a real guest, cold-plugged by the caller:
 *       INFO_FILE (8 KiB, made here) for `-object memory-backend-file
 *       ...,share=on` + `-device ivshmem-plain`, and the daemon's ivshmem
 *       server (daemon/ivshmem.c) on IVSHMEM_SOCK for `-device
 *       ivshmem-doorbell`: BAR2 = our RAM, own vectors = configuration + our
 *       kick eventfds, the doorbell peer's vectors = our call eventfds + the
 *       "driver wrote" notice.
 *
 * Prints "guestbe-host: ready" once the device is published, progress lines,
 * and "guestbe-host: PASS ..." (exit 0) or "guestbe-host: FAIL ..." (exit 1)
 * within TIMEOUT_S (default 120). Either way it publishes GONE at the end, so
 * the backend lets the device go.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/devinfo.h"
#include "vhostpci/log.h"
#include "vhostpci/net.h"
#include "ivshmem.h"
#include "fakepci.h"

#define RAM_SIZE (4u << 20)
#define FRAME 128u
#define INFLIGHT 64u	/* frames out at once: a TCG guest echoes slowly */
#define MEMORY_PEER 1
#define DAEMON_PEER 2

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("guestbe-host: ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static void fill(uint8_t *b, uint64_t seq)
{
	static const uint8_t hdr[14] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5 };

	memcpy(b, hdr, sizeof(hdr));
	memcpy(b + 14, &seq, 8);
	for (unsigned k = 22; k < FRAME; k++)
		b[k] = (uint8_t)(seq * 13 + k);
}

static int usage(void)
{
	fprintf(stderr, "usage: guestbe-host fake SYSFS_DIR COUNT [TIMEOUT_S]\n"
			"       guestbe-host qemu IVSHMEM_SOCK INFO_FILE COUNT [TIMEOUT_S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	bool qemu = argc >= 5 && !strcmp(argv[1], "qemu");
	bool fake = argc >= 4 && !strcmp(argv[1], "fake");
	struct vp_netfe_config c = { 0 };
	struct vp_frontend_info info;
	struct fp_device dev;
	struct vp_devinfo pub;
	struct vpd_ivshmem *ivs = NULL;
	uint64_t count, sent = 0, got = 0, bad = 0;
	int64_t deadline, next_say;
	int ramfd, own[3], peer[3], e;
	char why[200];
	void *ram, *window;
	struct vp_netfe *fe;

	if (!qemu && !fake)
		return usage();
	count = strtoull(argv[qemu ? 4 : 3], NULL, 10);
	deadline = now_ms() + 1000 * (argc > (qemu ? 5 : 4) ? atoi(argv[qemu ? 5 : 4]) : 120);
	if (!count)
		return usage();
	vp_log_set_level(VP_LOG_WARN);

	/* The frontend: RAM as QEMU's memory-backend-memfd makes it. */
	ramfd = memfd_create("guestbe-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ramfd < 0 || ftruncate(ramfd, RAM_SIZE) < 0 ||
	    fcntl(ramfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		say("FAIL: RAM: %s", strerror(errno));
		return 1;
	}
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
	if (ram == MAP_FAILED) {
		say("FAIL: mmap RAM: %s", strerror(errno));
		return 1;
	}
	c.ram = ram;
	c.ram_size = RAM_SIZE;
	c.ram_fd = ramfd;
	c.rx_num = c.tx_num = 256;
	c.mode = VP_NET_POLL;
	c.mac[0] = 2;
	c.mac[5] = 1;
	memset(c.uuid, 0x5a, 16);
	if ((e = vp_netfe_new(&fe, &c)) < 0) {
		say("FAIL: frontend: %s", strerror(-e));
		return 1;
	}
	vp_netfe_info(fe, &info);
	if ((e = vp_netfe_start(fe, info.driver_features)) < 0) {
		say("FAIL: frontend start: %s", strerror(-e));
		return 1;
	}

	/* The device as vhost-pcid's server holds it, then its window. */
	if (vp_devinfo_from_device(fp_device(&info, 1, &dev), &pub, why, sizeof(why)) < 0) {
		say("FAIL: device info: %s", why);
		return 1;
	}
	pub.memory_peer = MEMORY_PEER;
	pub.daemon_peer = DAEMON_PEER;
	pub.generation = vp_devinfo_next_gen(0);

	if (fake) {
		char mem[400], inf[400];

		snprintf(mem, sizeof(mem), "%s/0000:00:04.0", argv[2]);
		snprintf(inf, sizeof(inf), "%s/0000:00:05.0", argv[2]);
		if ((mkdir(argv[2], 0700) < 0 && errno != EEXIST) ||
		    !fp_memory_function(mem, MEMORY_PEER, ramfd)) {
			say("FAIL: memory function: %s", strerror(errno));
			return 1;
		}
		window = fp_info_function(inf);
	} else {
		struct vpd_ivshmem_client cl;

		char dir[400], *slash;

		snprintf(dir, sizeof(dir), "%s", argv[3]);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
		window = fp_put_bin(slash ? dir : ".", slash ? slash + 1 : dir, VP_INFO_WINDOW_SIZE);
		for (unsigned i = 0; i < 3; i++) {
			own[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			peer[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		}
		/* Vector 1 + q: our kick of queue q; doorbell q: our call of queue q. */
		for (unsigned q = 0; q < 2; q++) {
			if (info.rings[q].kick_fd >= 0)
				dup2(info.rings[q].kick_fd, own[1 + q]);
			if (info.rings[q].call_fd >= 0)
				dup2(info.rings[q].call_fd, peer[q]);
		}
		cl = (struct vpd_ivshmem_client){ .id = MEMORY_PEER, .shm_fd = ramfd, .nvectors = 3,
			.own_fds = own, .peer_id = DAEMON_PEER, .peer_fds = peer };
		if ((e = vpd_ivshmem_create(argv[2], &ivs)) < 0 ||
		    (e = vpd_ivshmem_expect(ivs, &cl)) < 0) {
			say("FAIL: ivshmem server on %s: %s", argv[2], strerror(-e));
			return 1;
		}
	}
	if (!window || vp_devinfo_publish(window, &pub) < 0) {
		say("FAIL: cannot publish the window");
		return 1;
	}
	say("ready: %" PRIu64 " frames to send, device uuid 5a5a5a5a-...", count);

	next_say = now_ms() + 5000;
	while (got < count && now_ms() < deadline) {
		uint8_t buf[16][FRAME], rbuf[16][2048];
		struct vp_pkt p[16];
		int k;

		if (ivs) {
			struct pollfd pf = { .fd = vpd_ivshmem_fd(ivs), .events = POLLIN };

			if (poll(&pf, 1, 0) > 0) {
				int r = vpd_ivshmem_dispatch(ivs);

				if (r & VPD_IVSHMEM_SETUP_SENT)
					say("ivshmem: QEMU's memory function is set up");
				if (r & VPD_IVSHMEM_GONE)
					say("ivshmem: client gone (%s)", vpd_ivshmem_reason(ivs));
			}
		}
		if (sent < count && sent - got < INFLIGHT) {
			unsigned m = (unsigned)(count - sent < 16 ? count - sent : 16);

			if (m > INFLIGHT - (sent - got))
				m = (unsigned)(INFLIGHT - (sent - got));
			for (unsigned j = 0; j < m; j++) {
				fill(buf[j], sent + j);
				p[j] = (struct vp_pkt){ .data = buf[j], .len = FRAME };
			}
			k = vp_netfe_tx_burst(fe, p, m, 0);
			if (k > 0)
				sent += (unsigned)k;
		}
		for (unsigned j = 0; j < 16; j++)
			p[j] = (struct vp_pkt){ .data = rbuf[j], .len = sizeof(rbuf[j]) };
		k = vp_netfe_rx_burst(fe, p, 16);
		for (int j = 0; j < k; j++, got++) {
			uint8_t want[FRAME];

			fill(want, got);
			if (p[j].len != FRAME || memcmp(rbuf[j], want, FRAME))
				bad++;
		}
		if (k < 0 || vp_netfe_broken(fe)) {
			say("FAIL: our rings broke: %s", vp_netfe_broken(fe));
			return 1;
		}
		if (now_ms() >= next_say) {
			say("sent %" PRIu64 ", back %" PRIu64, sent, got);
			next_say = now_ms() + 5000;
		}
		if (!k)
			usleep(sent - got ? 50 : 1000);
	}
	{
		struct vp_devinfo_driver drv;
		int r = vp_devinfo_read_driver(window, &pub, pub.generation, &drv, why, sizeof(why));

		if (r == 0)
			say("driver page: status 0x%x, acked generation %u, features 0x%" PRIx64,
			    drv.driver_status, drv.acked_gen, drv.features_accepted);
		else
			say("driver page: %s", why);
		if (r || !(drv.driver_status & VP_INFO_DS_DRIVER_OK))
			bad++;
	}
	/* Done: the frontend leaves (GONE), as vhost-pcid says it before an unplug. */
	pub.status = VP_INFO_ST_GONE;
	pub.generation = vp_devinfo_next_gen(pub.generation);
	if (vp_devinfo_publish(window, &pub) == 0)
		say("published GONE (generation %u)", pub.generation);
	vpd_ivshmem_destroy(ivs);
	vp_netfe_free(fe);
	munmap(window, VP_INFO_WINDOW_SIZE);
	munmap(ram, RAM_SIZE);
	close(ramfd);
	if (got < count || bad) {
		say("FAIL: %" PRIu64 " of %" PRIu64 " frames came back, %" PRIu64 " wrong",
		    got, count, bad);
		return 1;
	}
	say("PASS: %" PRIu64 " frames came back through the guest's echo, every byte checked",
	    got);
	return 0;
}
