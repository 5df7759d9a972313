/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Hot-plug an ivshmem-doorbell into a running QEMU with the daemon's own
 * QMP client and ivshmem server (daemon/qmp.c, daemon/ivshmem.c), in one
 * single-threaded loop as vhost-pcid will run them:
 *
 *   ivshmem-smoke QMP_SOCK IVSHMEM_SOCK MARKER ID PEER [TIMEOUT_S]
 *
 * 1. shared memory: a sealed 1 MiB memfd with MARKER (u64) at offset 0 and
 *    ~MARKER in its last 8 bytes; 3 own vectors and 3 virtual-peer vectors;
 * 2. chardev-add (socket client to IVSHMEM_SOCK), device_add ivshmem-doorbell
 *    vectors=3 with id vpivs0; query-pci must list it as 1af4:1110 with a
 *    1 MiB BAR2 (the guest reads the marker, tests/guest/tests/ivshmem.sh);
 * 3. the guest rings the virtual peer's vector 2: our eventfd must fire;
 * 4. device_del; wait for DEVICE_DELETED; chardev-remove; the ivshmem client
 *    must disconnect.
 *
 * Prints "ivshmem-smoke: ..." progress lines; exits 0 when all went so,
 * 1 otherwise (with the reason), never later than TIMEOUT_S (default 60).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "ivshmem.h"
#include "qmp.h"

#define NVEC 3
#define SHM_SIZE (1u << 20)
#define CMD_TIMEOUT_MS 10000
#define DEV_ID "vpivs0"
#define CHR_ID "vpivschr0"

enum step {
	S_CONNECTING, S_CHARDEV, S_DEVICE, S_QUERY, S_DOORBELL, S_UNPLUG, S_REMOVE, S_DONE,
};

static struct {
	enum step step;
	bool waiting;            /* a command of this step is in flight */
	bool deleted, setup_sent, gone, del_sent;
	const char *fail;
	char why[256];
	struct vpd_qmp *q;
	struct vpd_ivshmem *ivs;
	const char *ivs_path;
} st;

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
	printf("ivshmem-smoke: ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
	va_list ap;

	if (st.fail)
		return;
	va_start(ap, fmt);
	vsnprintf(st.why, sizeof(st.why), fmt, ap);
	va_end(ap);
	st.fail = st.why;
}

/* query-pci: our device on bus 0 as 1af4:1110 with a 1 MiB BAR2. */
static bool find_device(json_t *ret)
{
	size_t i, j, k;
	json_t *bus, *dev, *bar;

	json_array_foreach(ret, i, bus) {
		json_array_foreach(json_object_get(bus, "devices"), j, dev) {
			json_t *ids = json_object_get(dev, "id");
			int64_t vendor, device, bar2 = -1;

			if (!json_is_string(json_object_get(dev, "qdev_id")) ||
			    strcmp(json_string_value(json_object_get(dev, "qdev_id")), DEV_ID))
				continue;
			vendor = json_integer_value(json_object_get(ids, "vendor"));
			device = json_integer_value(json_object_get(ids, "device"));
			json_array_foreach(json_object_get(dev, "regions"), k, bar)
				if (json_integer_value(json_object_get(bar, "bar")) == 2)
					bar2 = json_integer_value(json_object_get(bar, "size"));
			say("query-pci: %s is %04" PRIx64 ":%04" PRIx64 " at slot %" PRId64
			    ", BAR2 %" PRId64 " bytes", DEV_ID, vendor, device,
			    (int64_t)json_integer_value(json_object_get(dev, "slot")), bar2);
			return vendor == 0x1af4 && device == 0x1110 && bar2 == SHM_SIZE;
		}
	}
	return false;
}

static void on_reply(void *opaque, const struct vpd_qmp_reply *r)
{
	enum step s = (enum step)(intptr_t)opaque;

	st.waiting = false;
	if (r->status) {
		failf("%s: %s%s%s (%s)", r->command, r->err_class, *r->err_class ? ": " : "",
		      r->err_desc, strerror(-r->status));
		return;
	}
	say("%s: ok", r->command);
	switch (s) {
	case S_CHARDEV:
		st.step = S_DEVICE;
		break;
	case S_DEVICE:
		if (!st.setup_sent)
			failf("device_add returned before the ivshmem setup went out");
		st.step = S_QUERY;
		break;
	case S_QUERY:
		if (!find_device(r->ret))
			failf("query-pci does not list %s as 1af4:1110 with a 1 MiB BAR2", DEV_ID);
		st.step = S_DOORBELL;
		say("plugged; waiting for the guest's doorbell");
		break;
	case S_UNPLUG:
		break;  /* done when DEVICE_DELETED arrives */
	case S_REMOVE:
		st.step = S_DONE;
		break;
	default:
		break;
	}
}

static void on_event(void *opaque, const char *name, json_t *data)
{
	json_t *dev = data ? json_object_get(data, "device") : NULL;

	(void)opaque;
	say("event %s%s%s", name, json_is_string(dev) ? " " : "",
	    json_is_string(dev) ? json_string_value(dev) : "");
	if (!strcmp(name, "DEVICE_DELETED") && json_is_string(dev) &&
	    !strcmp(json_string_value(dev), DEV_ID))
		st.deleted = true;
	/* The guest powers off once it saw the device ejected. QEMU runs on
	 * (-no-shutdown), and may send DEVICE_DELETED after SHUTDOWN: it
	 * finishes the unplug in its main loop. Before device_del, it is a
	 * failure; after, the step deadline decides. */
	if (!strcmp(name, "SHUTDOWN") && !st.del_sent)
		failf("the guest shut down before the unplug");
}

/* Issue the command of the current step (one at a time). */
static void advance(void)
{
	json_t *args = NULL;
	const char *cmd = NULL;

	if (st.waiting || st.fail || vpd_qmp_state(st.q) != VPD_QMP_READY)
		return;
	switch (st.step) {
	case S_CONNECTING:
		st.step = S_CHARDEV;
		/* fall through */
	case S_CHARDEV:
		cmd = "chardev-add";
		args = json_pack("{s:s, s:{s:s, s:{s:{s:s, s:{s:s}}, s:b}}}", "id", CHR_ID,
				 "backend", "type", "socket", "data", "addr", "type", "unix",
				 "data", "path", st.ivs_path, "server", 0);
		break;
	case S_DEVICE:
		cmd = "device_add";
		args = json_pack("{s:s, s:s, s:s, s:i}", "driver", "ivshmem-doorbell",
				 "id", DEV_ID, "chardev", CHR_ID, "vectors", NVEC);
		break;
	case S_QUERY:
		cmd = "query-pci";
		break;
	case S_UNPLUG:
		if (st.deleted) {
			st.step = S_REMOVE;
			advance();
			return;
		}
		if (st.del_sent)
			return;  /* the guest has to release it: DEVICE_DELETED */
		st.del_sent = true;
		cmd = "device_del";
		args = json_pack("{s:s}", "id", DEV_ID);
		break;
	case S_REMOVE:
		cmd = "chardev-remove";
		args = json_pack("{s:s}", "id", CHR_ID);
		break;
	default:
		return;
	}
	if (vpd_qmp_command(st.q, cmd, args, CMD_TIMEOUT_MS, now_ms(), on_reply,
			    (void *)(intptr_t)st.step) < 0)
		failf("cannot queue %s", cmd);
	else
		st.waiting = true;
}

int main(int argc, char **argv)
{
	int own[NVEC], peer[NVEC], shm, e, id, peer_id;
	uint64_t marker, v;
	int64_t deadline, connect_until;
	void *p;

	if (argc < 6) {
		fprintf(stderr, "usage: %s QMP_SOCK IVSHMEM_SOCK MARKER ID PEER [TIMEOUT_S]\n",
			argv[0]);
		return 2;
	}
	marker = strtoull(argv[3], NULL, 0);
	id = atoi(argv[4]);
	peer_id = atoi(argv[5]);
	deadline = now_ms() + 1000 * (argc > 6 ? atoi(argv[6]) : 60);
	connect_until = now_ms() + 10000;
	st.ivs_path = argv[2];

	shm = memfd_create("ivshmem-smoke", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (shm < 0 || ftruncate(shm, SHM_SIZE) < 0 ||
	    fcntl(shm, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0 ||
	    (p = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0)) == MAP_FAILED) {
		perror("ivshmem-smoke: shared memory");
		return 1;
	}
	memcpy(p, &marker, 8);
	v = ~marker;
	memcpy((char *)p + SHM_SIZE - 8, &v, 8);
	munmap(p, SHM_SIZE);
	for (int i = 0; i < NVEC; i++) {
		own[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		peer[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	e = vpd_ivshmem_create(st.ivs_path, &st.ivs);
	if (e == 0) {
		struct vpd_ivshmem_client c = {
			.id = (uint16_t)id, .shm_fd = shm, .nvectors = NVEC, .own_fds = own,
			.peer_id = (uint16_t)peer_id, .peer_fds = peer,
		};

		e = vpd_ivshmem_expect(st.ivs, &c);
	}
	if (e < 0) {
		say("FAIL: ivshmem server: %s", strerror(-e));
		return 1;
	}
	/* QEMU's -qmp socket appears a moment after it starts. */
	while ((e = vpd_qmp_connect(argv[1], 10000, now_ms(), &st.q)) < 0) {
		if (now_ms() > connect_until) {
			say("FAIL: cannot connect to %s: %s", argv[1], strerror(-e));
			return 1;
		}
		poll(NULL, 0, 50);
	}
	vpd_qmp_set_event_cb(st.q, on_event, NULL);
	say("QMP connected, ivshmem server on %s (client id %d, virtual peer %d)", st.ivs_path,
	    id, peer_id);

	while (!st.fail && st.step != S_DONE) {
		struct pollfd pfd[2 + NVEC];
		int64_t now = now_ms(), dl = vpd_qmp_deadline(st.q);
		int timeout, r;

		if (now >= deadline) {
			failf("timed out at step %d", st.step);
			break;
		}
		advance();
		timeout = (int)(deadline - now);
		if (dl >= 0 && dl - now < timeout)
			timeout = dl > now ? (int)(dl - now) : 0;
		pfd[0] = (struct pollfd){ .fd = vpd_qmp_fd(st.q), .events = vpd_qmp_poll_events(st.q) };
		pfd[1] = (struct pollfd){ .fd = vpd_ivshmem_fd(st.ivs), .events = POLLIN };
		for (int i = 0; i < NVEC; i++)
			pfd[2 + i] = (struct pollfd){ .fd = peer[i], .events = POLLIN };
		r = poll(pfd, 2 + NVEC, timeout);
		if (r < 0 && errno != EINTR) {
			failf("poll: %s", strerror(errno));
			break;
		}
		/* The ivshmem socket first: QEMU may be waiting on it inside device_add. */
		if (pfd[1].revents) {
			r = vpd_ivshmem_dispatch(st.ivs);
			if (r < 0)
				failf("ivshmem server: %s", strerror(-r));
			if (r > 0 && (r & VPD_IVSHMEM_CONNECTED))
				say("ivshmem: QEMU connected");
			if (r > 0 && (r & VPD_IVSHMEM_SETUP_SENT)) {
				st.setup_sent = true;
				say("ivshmem: setup sent");
			}
			if (r > 0 && (r & VPD_IVSHMEM_GONE)) {
				st.gone = true;
				say("ivshmem: client gone (%s)", vpd_ivshmem_reason(st.ivs));
				if (st.step < S_UNPLUG)
					failf("QEMU left the ivshmem socket before the unplug");
			}
		}
		if (vpd_qmp_dispatch(st.q, now_ms()) == VPD_QMP_CLOSED) {
			failf("QMP closed: %s", vpd_qmp_error(st.q));
			break;
		}
		for (int i = 0; i < NVEC; i++) {
			uint64_t n;

			if (!(pfd[2 + i].revents & POLLIN) || read(peer[i], &n, sizeof(n)) != 8)
				continue;
			say("doorbell: virtual peer vector %d rung (%" PRIu64 ")", i, n);
			if (i != 2)
				failf("the guest rang vector 2, vector %d fired", i);
			else if (st.step == S_DOORBELL)
				st.step = S_UNPLUG;
		}
		if (st.step == S_UNPLUG && st.deleted && !st.waiting) {
			st.step = S_REMOVE;
			say("guest released %s", DEV_ID);
		}
	}
	/* chardev-remove closes QEMU's end: see the server notice it. */
	for (int64_t until = now_ms() + 5000; !st.fail && !st.gone && now_ms() < until;) {
		int r;

		poll(&(struct pollfd){ .fd = vpd_ivshmem_fd(st.ivs), .events = POLLIN }, 1, 100);
		r = vpd_ivshmem_dispatch(st.ivs);
		if (r > 0 && (r & VPD_IVSHMEM_GONE)) {
			st.gone = true;
			say("ivshmem: client gone (%s)", vpd_ivshmem_reason(st.ivs));
		}
	}
	if (!st.fail && !st.gone)
		failf("the ivshmem client did not disconnect after chardev-remove");
	vpd_qmp_close(st.q);
	vpd_ivshmem_destroy(st.ivs);
	for (int i = 0; i < NVEC; i++) {
		close(own[i]);
		close(peer[i]);
	}
	close(shm);
	if (st.fail) {
		say("FAIL: %s", st.fail);
		return 1;
	}
	say("PASS");
	return 0;
}
