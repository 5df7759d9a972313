/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The host side of the guest kernel driver test (tests/peers/qemu-kmod.sh): one
 * cold-plugged vhost-pci device for a backend VM, served as vhost-pcid serves one
 * (docs/device.md), with no daemon:
 *
 *   kmod-host DIR [TIMEOUT_S] [data [hostile|loop] [lenient]]
 *
 * - a frontend (lib/netfe.c) in a sealed 64 MiB memfd, started;
 * - its info window published into DIR/info (8 KiB, the ivshmem-plain's memory) with
 *   vp_devinfo_from_device() and vp_devinfo_publish(), memory_peer 5, daemon_peer 9;
 * - the ivshmem-doorbell served on DIR/ivs.sock by daemon/ivshmem.c: BAR2 the memfd,
 *   own vectors 0 = configuration change, 1 + q = the frontend's kick of queue q;
 *   doorbell vector q = its call of queue q, vector 2 = "driver page written".
 *
 * Prints "kmod-host: listening" once QEMU may start, then drives one sequence from
 * the driver's pages: DRIVER_OK; STOP (generation 4) answered with stopped indexes;
 * READY again (generation 6) answered with DRIVER_OK; then counts every later
 * driver page (the guest's rmmod writes status 0, its insmod DRIVER_OK again) until
 * QEMU disconnects. Exits 0 if the sequence completed, 1 with the reason otherwise.
 *
 * "data" (tests/peers/qemu-kmod-data.sh): no STOP; the frontend is a tiny host at
 * 10.77.0.1 behind the guest's vpnet0 (kmod_net.c: ARP, ICMP echo both ways, and the
 * UDP bulk protocol of tests/peers/kmod_guest.c, every byte checked). "hostile": on
 * the guest's request, a descriptor outside the frontend's RAM is posted on its
 * transmitq ("loop": a descriptor chained to itself); the driver must answer FAILED with a reason. Exits 0 if the driver took
 * DRIVER_OK, no byte was wrong, and (hostile) FAILED came after the bad descriptor.
 *
 * Notifications (data): the loop sleeps at most 100 ms, so a lost one cannot hang the
 * run; a sleep that ran out is examined before disarming (kn_host_idle()): a used index
 * past what we had seen with no call within 1 s (a missed wake-up), or transmitq frames
 * the guest does not take for 2 s (a missed kick) is printed with the ring's indexes
 * and fails the run, unless "lenient" (then only counted).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "vhostpci/devinfo.h"
#include "vhostpci/net.h"
#include "vhostpci/server.h"
#include "ivshmem.h"
#include "kmod_net.h"

#define RAM_SIZE (64u << 20)
#define MEM_PEER 5
#define DAEMON_PEER 9
#define NQ 2
#define NVEC (1 + NQ)

static int fail(const char *what, int err)
{
	printf("kmod-host: FAIL: %s (%d)\n", what, err);
	return 1;
}

static volatile sig_atomic_t dump_asked;

static void on_usr1(int sig)
{
	(void)sig;
	dump_asked = 1;
}

static int publish(void *win, struct vp_devinfo *info, uint32_t gen, uint32_t status, int cfg_fd)
{
	uint64_t one = 1;

	info->generation = gen;
	info->status = status;
	if (vp_devinfo_publish(win, info))
		return -EINVAL;
	printf("kmod-host: published generation %u status 0x%x\n", gen, status);
	/* Vector 0: the configuration changed. */
	return write(cfg_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

int main(int argc, char **argv)
{
	static const uint8_t uuid[16] = { 0x6b, 0x6d, 0x6f, 0x64, 0x2d, 0x68, 0x6f, 0x73,
					  0x74, 0x2d, 0x66, 0x72, 0x6f, 0x6e, 0x74, 0x31 };
	struct vp_netfe_config fc = {
		.ram_size = RAM_SIZE, .ram_offset = 1u << 20,
		.mac = { 0x52, 0x54, 0x00, 0x6b, 0x6d, 0x01 },
	};
	struct vp_frontend_info fi;
	struct vp_device dev = { .id = 42, .state = VP_DEV_READY };
	struct vp_dev_region regions[VP_PCI_MAX_REGIONS];	/* dev.regions */
	struct vp_dev_ring rings[VP_PCI_MAX_RINGS];		/* dev.rings */
	struct vp_devinfo info;
	struct vpd_ivshmem *ivs;
	struct vpd_ivshmem_client cl;
	int own[NVEC], peer[NVEC];
	struct vp_netfe *fe;
	char path[512], why[256];
	int step = 0, pages = 0, okays = 0, err, memfd, wfd, timeout_s;
	bool data = argc > 3 && !strcmp(argv[3], "data");
	bool loop = data && argc > 4 && !strcmp(argv[4], "loop");
	bool hostile = loop || (data && argc > 4 && !strcmp(argv[4], "hostile"));
	bool lenient = data && argc > 5 && !strcmp(argv[5], "lenient");
	bool failed_seen = false, driver_ok = false;
	struct kn_host *kn = NULL;
	void *ram, *win;
	int64_t deadline;

	if (argc < 2)
		return fail("usage: kmod-host DIR [TIMEOUT_S]", -EINVAL);
	timeout_s = argc > 2 ? atoi(argv[2]) : 120;
	setvbuf(stdout, NULL, _IOLBF, 0);

	memfd = memfd_create("kmod-fe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, RAM_SIZE) ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		return fail("memfd", -errno);
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (ram == MAP_FAILED)
		return fail("mmap ram", -errno);
	fc.ram = ram;
	fc.ram_fd = memfd;
	memcpy(fc.uuid, uuid, sizeof(uuid));
	err = vp_netfe_new(&fe, &fc);
	if (err)
		return fail("vp_netfe_new", err);
	vp_netfe_info(fe, &fi);
	err = vp_netfe_start(fe, fi.driver_features);
	if (err)
		return fail("vp_netfe_start", err);

	/* The device as lib/server.c would hold it once the frontend is READY. */
	dev.type = fi.device_type;
	memcpy(dev.uuid, fi.uuid, sizeof(dev.uuid));
	dev.device_features = fi.device_features;
	dev.driver_features = fi.driver_features;
	dev.nregions = fi.nregions;
	memcpy(regions, fi.regions, sizeof(fi.regions[0]) * fi.nregions);
	dev.regions = regions;
	dev.nrings = fi.nrings;
	for (unsigned q = 0; q < fi.nrings; q++)
		rings[q] = (struct vp_dev_ring){
			.num = fi.rings[q].num, .last_avail_idx = fi.rings[q].last_avail_idx,
			.desc = fi.rings[q].desc, .avail = fi.rings[q].avail,
			.used = fi.rings[q].used, .addr_set = true, .enabled = true,
			.started = true, .kick_fd = fi.rings[q].kick_fd,
			.call_fd = fi.rings[q].call_fd,
		};
	dev.rings = rings;
	dev.config_len = fi.config_len;
	memcpy(dev.config, fi.config, fi.config_len);
	if (fi.nrings != NQ)
		return fail("frontend rings", (int)fi.nrings);
	err = vp_devinfo_from_device(&dev, &info, why, sizeof(why));
	if (err) {
		printf("kmod-host: %s\n", why);
		return fail("vp_devinfo_from_device", err);
	}
	info.memory_peer = MEM_PEER;
	info.daemon_peer = DAEMON_PEER;

	snprintf(path, sizeof(path), "%s/info", argv[1]);
	wfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (wfd < 0 || ftruncate(wfd, VP_INFO_WINDOW_SIZE))
		return fail("info file", -errno);
	win = mmap(NULL, VP_INFO_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
	if (win == MAP_FAILED)
		return fail("mmap info", -errno);

	/* Own vectors: 0 ours (configuration), 1 + q the frontend's kicks. Peer
	 * vectors: q the frontend's calls, NQ ours (driver page written). */
	own[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	peer[NQ] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned q = 0; q < NQ; q++) {
		own[1 + q] = fi.rings[q].kick_fd;
		peer[q] = fi.rings[q].call_fd;
	}
	if (own[0] < 0 || peer[NQ] < 0)
		return fail("eventfd", -errno);
	err = publish(win, &info, 2, VP_INFO_ST_PRESENT | VP_INFO_ST_READY, own[0]);
	if (err)
		return fail("publish", err);

	snprintf(path, sizeof(path), "%s/ivs.sock", argv[1]);
	err = vpd_ivshmem_create(path, &ivs);
	if (err)
		return fail("vpd_ivshmem_create", err);
	cl = (struct vpd_ivshmem_client){
		.id = MEM_PEER, .shm_fd = memfd, .nvectors = NVEC, .own_fds = own,
		.peer_id = DAEMON_PEER, .peer_fds = peer,
	};
	err = vpd_ivshmem_expect(ivs, &cl);
	if (err)
		return fail("vpd_ivshmem_expect", err);
	printf("kmod-host: listening\n");

	deadline = kn_now_ms() + timeout_s * 1000ll;
	if (data) {
		struct sigaction sa = { .sa_handler = on_usr1 };

		sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART: poll() returns */
		err = kn_host_new(&kn, fe, ram, RAM_SIZE, &fi, hostile ? own[2] : -1, loop,
				  !lenient);
		if (err)
			return fail("kn_host_new", err);
	}
	for (;;) {
		int pr;
		struct pollfd pfd[4] = {
			{ .fd = vpd_ivshmem_fd(ivs), .events = POLLIN },
			{ .fd = peer[NQ], .events = POLLIN },
			{ .fd = vp_netfe_rx_fd(fe), .events = POLLIN },
			{ .fd = vp_netfe_tx_fd(fe), .events = POLLIN },
		};
		int64_t left = deadline - kn_now_ms();
		int wait = (int)left;
		uint64_t v;

		if (left <= 0)
			return fail("timeout", step);
		if (kn) {
			/* Work first; sleep only when the frontend has none. Never
			 * long: a wake-up the guest owed and did not send is then
			 * found (kn_host_idle()) instead of hanging the run. */
			wait = kn_host_run(kn, wait);
			if (wait < 0)
				return fail("frontend", wait);
			if (wait > 100)
				wait = 100;
		}
		pr = poll(pfd, kn ? 4 : 2, wait);
		if (pr < 0 && errno != EINTR)
			return fail("poll", -errno);
		if (dump_asked && kn) {
			dump_asked = 0;
			kn_host_dump(kn);
		}
		if (kn && pr == 0 && wait > 0)
			kn_host_idle(kn, driver_ok);	/* still armed */
		if (kn)
			vp_netfe_disarm(fe);
		if (pfd[0].revents) {
			int r = vpd_ivshmem_dispatch(ivs);

			if (r < 0)
				return fail("ivshmem dispatch", r);
			if (r & VPD_IVSHMEM_CONNECTED)
				printf("kmod-host: QEMU connected\n");
			if (r & VPD_IVSHMEM_GONE) {
				printf("kmod-host: QEMU left (%s); %d driver pages, %d DRIVER_OK\n",
				       vpd_ivshmem_reason(ivs), pages, okays);
				break;
			}
		}
		if (!(pfd[1].revents & POLLIN) || read(peer[NQ], &v, sizeof(v)) != sizeof(v))
			continue;
		{
			struct vp_devinfo_driver d;

			err = vp_devinfo_read_driver(win, &info, 2, &d, why, sizeof(why));
			pages++;
			if (err) {
				printf("kmod-host: driver page refused: %s\n", why);
				continue;
			}
			driver_ok = d.driver_status & VP_INFO_DS_DRIVER_OK;
			printf("kmod-host: driver page gen %u status 0x%x acked %u features 0x%" PRIx64
			       " stopped 0x%x 0x%x\n", d.driver_gen, d.driver_status, d.acked_gen,
			       d.features_accepted, d.stopped[0], d.stopped[1]);
			if (d.driver_status & VP_INFO_DS_FAILED) {
				if (!kn || !kn_host_hostile_sent(kn))
					return fail(d.reason, -EIO);
				printf("kmod-host: FAILED reported: %s\n", d.reason);
				failed_seen = true;
				continue;
			}
			if (d.driver_status & VP_INFO_DS_DRIVER_OK)
				okays++;
			if (step == 0 && data && (d.driver_status & VP_INFO_DS_DRIVER_OK)) {
				printf("kmod-host: DRIVER_OK\n");
				step = 3;
			} else if (step == 0 && (d.driver_status & VP_INFO_DS_DRIVER_OK) &&
				   d.acked_gen == 2) {
				printf("kmod-host: DRIVER_OK\n");
				err = publish(win, &info, 4, VP_INFO_ST_PRESENT | VP_INFO_ST_READY |
					      VP_INFO_ST_STOP, own[0]);
				if (err)
					return fail("publish STOP", err);
				step = 1;
			} else if (step == 1 && d.acked_gen == 4) {
				for (unsigned q = 0; q < NQ; q++) {
					/* The frontend's avail->idx, in its RAM. */
					uint16_t aidx = le16toh(__atomic_load_n((uint16_t *)(void *)
						((char *)ram + fi.rings[q].avail + 2), __ATOMIC_ACQUIRE));

					err = vp_devinfo_check_stopped(d.stopped[q], fi.rings[q].num,
								       aidx, why, sizeof(why));
					if (err) {
						printf("kmod-host: stopped[%u]: %s\n", q, why);
						return fail("STOP answer", err);
					}
				}
				printf("kmod-host: STOP answered\n");
				err = publish(win, &info, 6, VP_INFO_ST_PRESENT | VP_INFO_ST_READY,
					      own[0]);
				if (err)
					return fail("publish READY", err);
				step = 2;
			} else if (step == 2 && (d.driver_status & VP_INFO_DS_DRIVER_OK) &&
				   d.acked_gen == 6) {
				printf("kmod-host: READY again\n");
				step = 3;
			}
		}
	}
	vpd_ivshmem_destroy(ivs);
	if (kn) {
		err = kn_host_end(kn);
		kn_host_free(kn);
		if (err)
			return fail("the data path", err);
		if (hostile && !failed_seen)
			return fail("the bad descriptor was not answered with FAILED", -EIO);
	}
	vp_netfe_free(fe);
	if (step != 3)
		return fail("the sequence did not complete", step);
	printf("kmod-host: PASS\n");
	return 0;
}
