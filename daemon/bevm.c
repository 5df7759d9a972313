/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Backend VMs under stock QEMU (backend-vm=QMP_SOCKET): each READY device of
 * such a server is hot-plugged into the running backend VM as the vhost-pci
 * device of docs/device.md, made of two stock ivshmem functions, and
 * hot-unplugged when its frontend goes.
 *
 *  - A device that became READY is plugged once it has been quiet for
 *    SETTLE_MS (QEMU replaces a call fd right after starting the rings).
 *    First its memory is checked: ONE fd, a power of two in size (QEMU
 *    asserts on any other BAR), sealed against shrinking unless
 *    allow-unsealed=on (a memfd that shrinks kills the backend VM with
 *    SIGBUS). Otherwise the frontend is dropped with the reason.
 *  - Plugging: an 8 KiB info window (a file in the run directory, mapped
 *    here, published with vp_devinfo_publish()), an ivshmem server of the
 *    device's own (daemon/ivshmem.c) expecting QEMU with the frontend's RAM
 *    fd, own vectors [config, kick q0, kick q1] and the virtual peer's
 *    [call q0, call q1, "driver wrote"]; then over QMP, one command after
 *    the other from the loop: object-add (memory-backend-file on the
 *    window's file), device_add ivshmem-plain (info first), chardev-add,
 *    device_add ivshmem-doorbell, query-pci for the two addresses. QEMU
 *    reads the ivshmem setup synchronously inside device_add, so nothing
 *    here ever waits on QMP: the same loop serves the ivshmem socket.
 *  - The window's file is unlinked as soon as object-add answered (QEMU
 *    has it mapped; so do we): nothing is left behind if the daemon dies.
 *    A /proc/PID/fd/N path was the other way to name a memfd to QEMU; it
 *    needs QEMU to pass the ptrace access check on the daemon (same uid,
 *    dumpable), which a daemon running as root and QEMU as a user fail.
 *  - STOP (GET_VRING_BASE while plugged): the reply is held, STOP is
 *    published, the config vector fires; the driver's page answering that
 *    generation (each stopped index checked against the avail index read
 *    at the stop) releases it, or stop-timeout does (logged, counted).
 *  - New rings or eventfds while plugged: republished. ivshmem cannot
 *    replace a client's own vectors, so a new kick eventfd is relayed into
 *    the original one (one read and one write here per kick); new call
 *    eventfds replace the virtual peer's vectors (set_peer). New memory (a
 *    new file) cannot be swapped under a BAR: the pair is unplugged and
 *    plugged again.
 *  - Frontend gone: GONE, config vector, device_del of both functions,
 *    chardev-remove / object-del once QEMU reports DEVICE_DELETED. A guest
 *    that does not release them within unplug-timeout is given up on: the
 *    daemon's side is freed, the miss logged and counted, and the QEMU
 *    objects are removed if DEVICE_DELETED comes later.
 *  - QMP lost: every device of that VM is unattached (its daemon side freed)
 *    and, still READY after backend-grace, its frontend dropped (the guest's
 *    link goes down, QEMU reconnects); the QMP socket is tried again with
 *    backoff and live devices are plugged again when it answers.
 *
 * Security model: the backend guest writes the driver page and rings the
 * doorbells; both are hostile. The page is copied once and checked
 * (vp_devinfo_read_driver()), at most once per loop wake-up and only when
 * driver_gen moved; a refused page is logged (rate-limited), counted and
 * its reason published, and after BAD_PAGES_MAX refusals in a row the
 * device is unplugged with the reason. A doorbell flood (more than
 * DOORBELL_MAX_PER_S) mutes the "driver wrote" eventfd for a second.
 * QEMU's QMP answers are parsed by qmp.c (bounded, shape-checked).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "vhostpci/devinfo.h"
#include "vhostpci/log.h"
#include "daemon.h"
#include "ivshmem.h"
#include "json.h"
#include "qmp.h"

#define SETTLE_MS 30
#define CMD_TIMEOUT_MS 10000       /* one QMP command */
#define HANDSHAKE_MS 5000          /* QMP greeting and capabilities */
#define RETRY_MIN_MS 100           /* QMP reconnect and plug retry backoff */
#define RETRY_MAX_MS 5000
#define BAD_PAGES_MAX 8            /* refused driver pages in a row: unplug */
#define DOORBELL_MAX_PER_S 4096    /* "driver wrote" rings: more mutes it 1 s */
#define LOG_EVERY_MS 10000
#define FLUSH_MS 500               /* shutdown: time to send the last device_dels */

enum plug_state {
	P_NONE,        /* nothing in QEMU: settling, waiting for QMP, or held off */
	P_PLUGGING,    /* QMP commands under way */
	P_PLUGGED,
	P_UNPLUGGING,  /* device_del sent, waiting for DEVICE_DELETED */
	P_RESERVED,    /* cold plug: waiting for QEMU started with qemu-args */
};

static const char *const plug_names[] = {
	[P_NONE] = "waiting", [P_PLUGGING] = "plugging", [P_PLUGGED] = "plugged",
	[P_UNPLUGGING] = "unplugging", [P_RESERVED] = "reserved",
};

enum step { S_OBJ, S_INFO, S_CHR, S_MEM, S_QUERY, S_DEL_INFO, S_DEL_MEM };

/* QEMU objects of an unplug that timed out, removed if DEVICE_DELETED comes. */
struct stale {
	struct stale *next;
	char name[48];
	bool info_gone, mem_gone;
};

struct vpd_bevm {
	struct vpd_bevm *next;
	struct vpd *d;
	char *path;                  /* the QMP socket */
	struct vpd_qmp *q;
	struct vpd_watch w;
	int reg_fd;                  /* registered with epoll, -1: none */
	uint32_t reg_ev;
	bool up;                     /* QMP READY */
	int64_t retry_ms;            /* next connect attempt (q == NULL) */
	unsigned backoff_ms;
	int64_t log_ms;              /* next "still unreachable" line */
	char why[256];
	uint16_t next_peer;          /* memory functions' peer ids */
	unsigned serial;             /* QEMU object names */
	uint64_t connects, unplug_timeouts;
	struct stale *stale;
	bool noqmp;                  /* cold plug only: VMs started by hand, no QMP */
};

struct vpd_bdev {
	struct vpd_bdev *next;
	struct vpd_bevm *vm;
	struct vpd_server *s;
	uint64_t id;
	enum plug_state st;
	unsigned pending;            /* QMP callbacks still to come (keep b alive) */
	bool ready, gone, dead;
	bool replug;                 /* unplug, then plug again */
	bool held_off;               /* not plugged again before the next READY */
	bool stopping;               /* a GET_VRING_BASE reply is held */
	bool unplug_asked;           /* while plugging: unplug at the next reply */
	int64_t due_ms;              /* P_NONE: plug at (0: not scheduled) */
	unsigned backoff_ms;
	int64_t unattached_ms;       /* READY and not plugged since */
	int64_t stop_due_ms, stop_since_ms, unplug_due_ms;
	/* QEMU side */
	char name[48];
	bool have_obj, have_info, have_chr, have_mem, info_gone, mem_gone;
	char info_pci[16], mem_pci[16];
	uint16_t mem_peer;
	char sock_path[160], info_path[160];
	struct vpd_ivshmem *ivs;
	struct vpd_watch ivs_w, drv_w, kick_w[VP_DEV_MAX_RINGS];
	uint8_t *win;
	int ram_fd;
	dev_t ram_dev;
	ino_t ram_ino;
	int cfg_fd, drv_fd;          /* daemon-owned vectors */
	bool drv_watched;
	int own_kick[VP_DEV_MAX_RINGS];  /* the memory function's kick vectors */
	int relay_kick[VP_DEV_MAX_RINGS]; /* a newer kick fd relayed into own_kick, -1 */
	int peer_call[VP_DEV_MAX_RINGS];  /* the virtual peer's call vectors */
	unsigned nq;
	/* the window */
	struct vp_devinfo pub;
	uint32_t first_gen, stop_gen;
	uint16_t avail_at_stop[VP_DEV_MAX_RINGS];
	uint32_t drv_gen_seen;
	uint32_t driver_status;
	unsigned bad_run;
	uint64_t bad_total, stop_timeouts, floods;
	int64_t bad_log_ms, db_win_ms, unmute_ms;
	uint64_t db_count;
	char why[320];               /* the last failure, for vhost-pci-ctl */
	char reason_pub[VP_INFO_REASON_LEN];
	/* cold plug (qemu-args) */
	bool cold;                   /* on QEMU's command line, not hot-plugged */
	int cold_slot;               /* PCI slot of the info function, -1: QEMU's choice */
	int64_t cold_due_ms;         /* P_RESERVED: the reservation lapses */
	unsigned cold_timeout_s;
};

struct cmd_ctx {
	struct vpd_bdev *b;
	enum step step;
};

static void unplug_start(struct vpd_bdev *b, const char *why);
static void plug_start(struct vpd_bdev *b);
/* cold plug (qemu-args), at the end */
static void cold_cancel(struct vpd_bdev *b, const char *why);
static void cold_lapsed(struct vpd_bdev *b);
static void cold_connected(struct vpd_bdev *b);
static void cold_let_go(struct vpd_bdev *b, const char *why);
static void cold_vm_left(struct vpd_bdev *b);
static void vm_lost(struct vpd_bevm *vm, const char *why);

/* ---- small helpers ---- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Do a and b name the same open file description (the same eventfd)? */
static bool same_file(int a, int b)
{
	pid_t p = getpid();

	if (a < 0 || b < 0)
		return false;
	return syscall(SYS_kcmp, p, p, KCMP_FILE, a, b) == 0;
}

static void fire(int efd)
{
	uint64_t one = 1;

	if (efd >= 0 && write(efd, &one, sizeof(one)) < 0)
		return;  /* a full counter already wakes the guest */
}

static int watch_add(struct vpd *d, int fd, struct vpd_watch *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void watch_del(struct vpd *d, int fd)
{
	if (fd >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void set_why(struct vpd_bdev *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_why(struct vpd_bdev *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->why, sizeof(b->why), fmt, ap);
	va_end(ap);
}

static struct vpd_bdev *find(struct vpd *d, uint64_t id)
{
	for (struct vpd_bdev *b = d->bdevs; b; b = b->next)
		if (b->id == id && !b->dead)
			return b;
	return NULL;
}

static unsigned next_backoff(unsigned ms)
{
	ms = ms ? ms * 2 : RETRY_MIN_MS;
	return ms > RETRY_MAX_MS ? RETRY_MAX_MS : ms;
}

/* ---- the frontend's memory: what a BAR can be ---- */

/*
 * docs/device.md section 7: one file, a power of two in size, sealed against
 * shrinking (unless allow-unsealed). vp_devinfo_from_device() checks the
 * rest (one file, its size, the tables). 0 or -EINVAL with why.
 */
static int check_memory(const struct vpd_server *s, const struct vp_device *dev,
			struct vp_devinfo *out, char *why, size_t whylen)
{
	int seals;

	if (dev->nregions == 0 || dev->regions[0].fd < 0) {
		snprintf(why, whylen, "frontend RAM has no memory fd a backend VM could map");
		return -EINVAL;
	}
	for (unsigned i = 1; i < dev->nregions; i++) {
		struct stat a, c;

		if (dev->regions[i].fd < 0 || fstat(dev->regions[0].fd, &a) < 0 ||
		    fstat(dev->regions[i].fd, &c) < 0 || a.st_dev != c.st_dev ||
		    a.st_ino != c.st_ino) {
			snprintf(why, whylen, "frontend RAM is %u memory fds; a backend VM maps "
				 "ONE (one memory backend, e.g. memory-backend-memfd)", dev->nregions);
			return -EINVAL;
		}
	}
	seals = fcntl(dev->regions[0].fd, F_GET_SEALS);
	if (!s->spec.allow_unsealed && (seals < 0 || !(seals & F_SEAL_SHRINK))) {
		snprintf(why, whylen, "frontend RAM is not sealed against shrinking (a shrunk "
			 "memfd would kill the backend VM with SIGBUS; use memory-backend-memfd, "
			 "or allow-unsealed=on to take the risk)");
		return -EINVAL;
	}
	if (vp_devinfo_from_device(dev, out, why, whylen) < 0)
		return -EINVAL;
	return 0;
}

static void refuse(struct vpd_bdev *b, const char *why)
{
	struct vpd_server *s = b->s;

	/* Counted (and shown in "servers") by the library, as every refusal is. */
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": refusing the frontend for backend VM %s: %s",
	       b->id, b->vm->path, why);
	vp_server_drop(s->srv, b->id, why);
}

/* ---- the info window ---- */

static void publish(struct vpd_bdev *b)
{
	const struct vp_device *dev = b->gone ? NULL : vp_server_find(b->s->srv, b->id);
	struct vp_devinfo in;
	uint32_t gen = b->pub.generation, rgen = b->pub.reason_gen;
	char why[160];

	if (!b->win)
		return;
	if (dev && vp_devinfo_from_device(dev, &in, why, sizeof(why)) == 0) {
		/* Republished whole; the generation and reason carry on. */
		memcpy(in.reason, b->pub.reason, sizeof(in.reason));
		b->pub = in;
		b->pub.reason_gen = rgen;
	}
	b->pub.status = VP_INFO_ST_PRESENT;
	if (b->ready)
		b->pub.status |= VP_INFO_ST_READY;
	if (b->stopping || (!b->ready && !b->gone))
		b->pub.status |= VP_INFO_ST_STOP;
	if (b->gone)
		b->pub.status = VP_INFO_ST_GONE;
	b->pub.memory_peer = b->mem_peer;
	b->pub.daemon_peer = b->ivs ? vpd_ivshmem_peer_id(b->ivs) : 0;
	b->pub.generation = vp_devinfo_next_gen(gen);
	if (strcmp(b->pub.reason, b->reason_pub)) {
		snprintf(b->pub.reason, sizeof(b->pub.reason), "%s", b->reason_pub);
		b->pub.reason_gen = b->pub.generation;
	}
	if (vp_devinfo_publish(b->win, &b->pub) < 0) {
		/* The tables were checked when the device came: not reached. */
		vp_log(VP_LOG_ERR, "device %" PRIu64 ": cannot publish generation %u", b->id,
		       b->pub.generation);
		return;
	}
	fire(b->cfg_fd);
}

/* ---- the daemon side of one plugged device ---- */

static void stop_relay(struct vpd_bdev *b, unsigned q)
{
	watch_del(b->vm->d, b->relay_kick[q]);
	close_fd(&b->relay_kick[q]);
}

static void local_free(struct vpd_bdev *b)
{
	struct vpd *d = b->vm->d;

	if (b->ivs) {
		watch_del(d, vpd_ivshmem_fd(b->ivs));
		vpd_ivshmem_destroy(b->ivs);
		b->ivs = NULL;
	}
	if (b->drv_watched)
		watch_del(d, b->drv_fd);
	b->drv_watched = false;
	for (unsigned q = 0; q < VP_DEV_MAX_RINGS; q++) {
		stop_relay(b, q);
		close_fd(&b->own_kick[q]);
		close_fd(&b->peer_call[q]);
	}
	close_fd(&b->cfg_fd);
	close_fd(&b->drv_fd);
	close_fd(&b->ram_fd);
	if (b->win)
		munmap(b->win, VP_INFO_WINDOW_SIZE);
	b->win = NULL;
	if (b->info_path[0])
		unlink(b->info_path);
	b->info_path[0] = b->sock_path[0] = '\0';
	b->have_obj = b->have_info = b->have_chr = b->have_mem = false;
	b->info_gone = b->mem_gone = false;
	b->info_pci[0] = b->mem_pci[0] = '\0';
	b->st = P_NONE;
	b->cold = false;
}

static int new_eventfd(void)
{
	return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/*
 * The frontend's current kick and call fds onto the plugged function. 0, or
 * -ENOSPC: no peer id left for new call fds, the caller plugs a new pair.
 */
static int follow_fds(struct vpd_bdev *b, const struct vp_device *dev)
{
	int e;
	int calls[VP_DEV_MAX_RINGS + 1];
	bool new_calls = false;

	for (unsigned q = 0; q < b->nq; q++) {
		int k = q < dev->nrings ? dev->rings[q].kick_fd : -1;
		int c = q < dev->nrings ? dev->rings[q].call_fd : -1;

		/* ivshmem keeps its own vectors: a new kick fd goes through us. */
		if (k >= 0 && !same_file(k, b->own_kick[q]) && !same_file(k, b->relay_kick[q])) {
			stop_relay(b, q);
			b->relay_kick[q] = fcntl(k, F_DUPFD_CLOEXEC, 0);
			b->kick_w[q] = (struct vpd_watch){ .kind = VPD_W_BDEV, .obj = b };
			if (b->relay_kick[q] >= 0 &&
			    watch_add(b->vm->d, b->relay_kick[q], &b->kick_w[q]) < 0)
				close_fd(&b->relay_kick[q]);
			vp_log(VP_LOG_INFO, "device %" PRIu64 ": queue %u kick fd replaced: relayed "
			       "into the function's vector until it is unplugged", b->id, q);
		} else if (same_file(k, b->own_kick[q])) {
			stop_relay(b, q);
		}
		if (c >= 0 && !same_file(c, b->peer_call[q])) {
			int n = fcntl(c, F_DUPFD_CLOEXEC, 0);

			if (n >= 0) {
				close_fd(&b->peer_call[q]);
				b->peer_call[q] = n;
				new_calls = true;
			}
		}
	}
	if (!new_calls || !b->ivs)
		return 0;
	for (unsigned q = 0; q < b->nq; q++)
		calls[q] = b->peer_call[q];
	calls[b->nq] = b->drv_fd;
	e = vpd_ivshmem_set_peer(b->ivs, calls);
	if (e == -ENOSPC)
		return e;
	if (e < 0)
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": cannot hand QEMU the new call fds: %s",
		       b->id, strerror(-e));
	else
		vp_log(VP_LOG_INFO, "device %" PRIu64 ": new call fds: the guest rings peer %u now",
		       b->id, vpd_ivshmem_peer_id(b->ivs));
	return 0;
}

/* Everything the device needs before QEMU is asked: 0 or -errno with b->why. */
static int local_setup(struct vpd_bdev *b, const struct vp_device *dev)
{
	struct vpd_bevm *vm = b->vm;
	struct vpd *d = vm->d;
	struct stat st;
	int own[VP_DEV_MAX_RINGS + 1], peer[VP_DEV_MAX_RINGS + 1], fd, e;
	char why[200];

	if (check_memory(b->s, dev, &b->pub, why, sizeof(why)) < 0) {
		set_why(b, "%s", why);
		return -EINVAL;
	}
	/* The device ABI (the info window, vhost_pci_net.ko) drives one pair;
	 * the spec refuses queues= with backend-vm=, this guards the ABI. */
	if (dev->nrings > 2) {
		set_why(b, "%u queue pairs: a backend VM's vhost-pci device carries one",
			dev->nrings / 2);
		return -EOPNOTSUPP;
	}
	b->nq = dev->nrings;
	if (!vm->next_peer)
		vm->next_peer = 1;  /* 0 is the daemon's virtual peer */
	b->mem_peer = vm->next_peer++;
	snprintf(b->name, sizeof(b->name), "vpd%" PRIu64 "v%u", b->id, ++vm->serial);
	snprintf(b->sock_path, sizeof(b->sock_path), "%s/%s.sock", d->run_dir, b->name);
	snprintf(b->info_path, sizeof(b->info_path), "%s/%s.info", d->run_dir, b->name);
	b->ram_fd = fcntl(dev->regions[0].fd, F_DUPFD_CLOEXEC, 0);
	if (b->ram_fd < 0 || fstat(b->ram_fd, &st) < 0)
		goto sys;
	b->ram_dev = st.st_dev;
	b->ram_ino = st.st_ino;
	b->cfg_fd = new_eventfd();
	b->drv_fd = new_eventfd();
	if (b->cfg_fd < 0 || b->drv_fd < 0)
		goto sys;
	for (unsigned q = 0; q < b->nq; q++) {
		int k = dev->rings[q].kick_fd, c = dev->rings[q].call_fd;

		/* A polling frontend has no eventfd: the function gets one that
		 * nobody writes, and a later kick fd is relayed into it. */
		b->own_kick[q] = k >= 0 ? fcntl(k, F_DUPFD_CLOEXEC, 0) : new_eventfd();
		b->peer_call[q] = c >= 0 ? fcntl(c, F_DUPFD_CLOEXEC, 0) : new_eventfd();
		if (b->own_kick[q] < 0 || b->peer_call[q] < 0)
			goto sys;
		own[1 + q] = b->own_kick[q];
		peer[q] = b->peer_call[q];
	}
	own[0] = b->cfg_fd;
	peer[b->nq] = b->drv_fd;

	/* The info window: a file QEMU maps (memory-backend-file), mapped here too. */
	fd = open(b->info_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		goto sys;
	if (ftruncate(fd, VP_INFO_WINDOW_SIZE) < 0) {
		close(fd);
		goto sys;
	}
	b->win = mmap(NULL, VP_INFO_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (b->win == MAP_FAILED) {
		b->win = NULL;
		goto sys;
	}
	b->pub.generation = 0;
	b->reason_pub[0] = '\0';
	b->pub.reason[0] = '\0';
	publish(b);
	b->first_gen = b->pub.generation;
	b->drv_gen_seen = 0;

	e = vpd_ivshmem_create(b->sock_path, &b->ivs);
	if (e < 0) {
		set_why(b, "cannot create the ivshmem socket %s: %s", b->sock_path, strerror(-e));
		return e;
	}
	b->ivs_w = (struct vpd_watch){ .kind = VPD_W_BDEV, .obj = b };
	b->drv_w = (struct vpd_watch){ .kind = VPD_W_BDEV, .obj = b };
	if ((e = watch_add(d, vpd_ivshmem_fd(b->ivs), &b->ivs_w)) < 0 ||
	    (e = watch_add(d, b->drv_fd, &b->drv_w)) < 0) {
		set_why(b, "epoll: %s", strerror(-e));
		return e;
	}
	b->drv_watched = true;
	e = vpd_ivshmem_expect(b->ivs, &(struct vpd_ivshmem_client){
		.id = b->mem_peer, .shm_fd = b->ram_fd, .nvectors = 1 + b->nq,
		.own_fds = own, .peer_id = 0, .peer_fds = peer,
	});
	if (e < 0) {
		set_why(b, "the ivshmem server refused the device: %s", strerror(-e));
		return e;
	}
	return 0;
sys:
	e = -errno;
	set_why(b, "cannot set the device up: %s", strerror(errno));
	return e;
}

/* ---- QMP commands ---- */

static void on_reply(void *opaque, const struct vpd_qmp_reply *r);

static int send_cmd(struct vpd_bdev *b, enum step step, const char *name, json_t *args)
{
	struct cmd_ctx *c = malloc(sizeof(*c));
	int64_t id;

	if (!c) {
		json_decref(args);
		return -ENOMEM;
	}
	*c = (struct cmd_ctx){ b, step };
	id = vpd_qmp_command(b->vm->q, name, args, CMD_TIMEOUT_MS, vpd_now_ms(), on_reply, c);
	if (id < 0) {
		free(c);
		return (int)id;
	}
	b->pending++;
	return 0;
}

/* A removal nobody waits on (its failure changes nothing). */
static void send_forget(struct vpd_bevm *vm, const char *name, const char *key, const char *id)
{
	if (vm->q)
		vpd_qmp_command(vm->q, name, json_pack("{s:s}", key, id), CMD_TIMEOUT_MS,
				vpd_now_ms(), NULL, NULL);
}

static void qname(const struct vpd_bdev *b, const char *suffix, char *out, size_t len)
{
	snprintf(out, len, "%s-%s", b->name, suffix);
}

static int plug_step(struct vpd_bdev *b, enum step step)
{
	char id[64], dep[64];

	switch (step) {
	case S_OBJ:
		qname(b, "im", id, sizeof(id));
		return send_cmd(b, step, "object-add",
				json_pack("{s:s, s:s, s:s, s:I, s:b}", "qom-type",
					  "memory-backend-file", "id", id, "mem-path", b->info_path,
					  "size", (json_int_t)VP_INFO_WINDOW_SIZE, "share", 1));
	case S_INFO:
		qname(b, "i", id, sizeof(id));
		qname(b, "im", dep, sizeof(dep));
		return send_cmd(b, step, "device_add",
				json_pack("{s:s, s:s, s:s}", "driver", "ivshmem-plain", "id", id,
					  "memdev", dep));
	case S_CHR:
		qname(b, "c", id, sizeof(id));
		return send_cmd(b, step, "chardev-add",
				json_pack("{s:s, s:{s:s, s:{s:{s:s, s:{s:s}}, s:b}}}", "id", id,
					  "backend", "type", "socket", "data", "addr", "type", "unix",
					  "data", "path", b->sock_path, "server", 0));
	case S_MEM:
		qname(b, "m", id, sizeof(id));
		qname(b, "c", dep, sizeof(dep));
		return send_cmd(b, step, "device_add",
				json_pack("{s:s, s:s, s:s, s:i}", "driver", "ivshmem-doorbell",
					  "id", id, "chardev", dep, "vectors", (int)(1 + b->nq)));
	case S_QUERY:
		return send_cmd(b, step, "query-pci", NULL);
	case S_DEL_INFO:
	case S_DEL_MEM:
		qname(b, step == S_DEL_INFO ? "i" : "m", id, sizeof(id));
		return send_cmd(b, step, "device_del", json_pack("{s:s}", "id", id));
	}
	return -EINVAL;
}

/* query-pci: "BB:SS.F" of qdev id name, or "" (QEMU's answer is a peer's). */
static void find_pci(json_t *ret, const char *name, char *out, size_t len)
{
	size_t i, j;
	json_t *bus, *dev;

	out[0] = '\0';
	json_array_foreach(ret, i, bus) {
		json_array_foreach(json_object_get(bus, "devices"), j, dev) {
			json_t *qid = json_object_get(dev, "qdev_id");

			if (!json_is_string(qid) || strcmp(json_string_value(qid), name))
				continue;
			snprintf(out, len, "%02x:%02x.%x",
				 (unsigned)(json_integer_value(json_object_get(dev, "bus")) & 0xff),
				 (unsigned)(json_integer_value(json_object_get(dev, "slot")) & 0x1f),
				 (unsigned)(json_integer_value(json_object_get(dev, "function")) & 7));
			return;
		}
	}
}

static void plug_failed(struct vpd_bdev *b, const char *why)
{
	set_why(b, "%s", why);
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": cannot plug into backend VM %s: %s", b->id,
	       b->vm->path, why);
	b->backoff_ms = next_backoff(b->backoff_ms);
	b->replug = true;
	unplug_start(b, why);
}

static void plugged(struct vpd_bdev *b)
{
	b->st = P_PLUGGED;
	b->unattached_ms = 0;
	b->backoff_ms = 0;
	b->why[0] = '\0';
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": plugged into backend VM %s: memory function "
	       "%s (peer %u), info function %s, generation %u", b->id, b->vm->path,
	       b->mem_pci[0] ? b->mem_pci : "?", b->mem_peer, b->info_pci[0] ? b->info_pci : "?",
	       b->pub.generation);
	if (b->unplug_asked || b->gone)
		unplug_start(b, b->gone ? "frontend gone" : b->why);
}

static void unplug_done(struct vpd_bdev *b);

static void deleted(struct vpd_bdev *b)
{
	char id[64];

	if ((b->have_info && !b->info_gone) || (b->have_mem && !b->mem_gone))
		return;
	/* The functions are gone: their backends may go too. */
	if (b->have_chr) {
		qname(b, "c", id, sizeof(id));
		send_forget(b->vm, "chardev-remove", "id", id);
	}
	if (b->have_obj) {
		qname(b, "im", id, sizeof(id));
		send_forget(b->vm, "object-del", "id", id);
	}
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": unplugged from backend VM %s", b->id,
	       b->vm->path);
	unplug_done(b);
}

static void on_reply(void *opaque, const struct vpd_qmp_reply *r)
{
	struct cmd_ctx *c = opaque;
	struct vpd_bdev *b = c->b;
	enum step step = c->step;
	char why[400], id[64];

	free(c);
	b->pending--;
	if (r->status == -ECANCELED || r->status == -ECONNRESET || !b->vm->q)
		return;  /* vm_lost() or shutdown resets the device */
	if (step == S_DEL_INFO || step == S_DEL_MEM) {
		/* DeviceNotFound: it went already (or never was): as deleted. */
		if (r->status == 0 || b->st != P_UNPLUGGING)
			return;
		if (r->status == -EREMOTEIO && strcmp(r->err_class, "DeviceNotFound"))
			vp_log(VP_LOG_WARN, "device %" PRIu64 ": device_del: %s: %s", b->id,
			       r->err_class, r->err_desc);
		if (r->status == -EREMOTEIO && !strcmp(r->err_class, "DeviceNotFound")) {
			if (step == S_DEL_INFO)
				b->info_gone = true;
			else
				b->mem_gone = true;
			deleted(b);
		}
		return;  /* a timeout: the unplug timeout decides */
	}
	if (b->st != P_PLUGGING)
		return;
	if (step == S_OBJ && b->info_path[0]) {
		/* QEMU has the file open and mapped (or failed to): no name needed now. */
		unlink(b->info_path);
		b->info_path[0] = '\0';
	}
	if (r->status) {
		if (r->status == -EREMOTEIO)
			snprintf(why, sizeof(why), "%s: %s: %s", r->command, r->err_class,
				 r->err_desc);
		else
			snprintf(why, sizeof(why), "%s: %s", r->command, strerror(-r->status));
		plug_failed(b, why);
		return;
	}
	if (step == S_QUERY) {
		qname(b, "i", id, sizeof(id));
		find_pci(r->ret, id, b->info_pci, sizeof(b->info_pci));
		qname(b, "m", id, sizeof(id));
		find_pci(r->ret, id, b->mem_pci, sizeof(b->mem_pci));
		plugged(b);
		return;
	}
	/* What QEMU now has, so that an unplug removes exactly that. */
	*(step == S_OBJ ? &b->have_obj : step == S_INFO ? &b->have_info :
	  step == S_CHR ? &b->have_chr : &b->have_mem) = true;
	if (b->unplug_asked || b->gone) {
		unplug_start(b, b->gone ? "frontend gone" : b->why);
		return;
	}
	if (plug_step(b, (enum step)(step + 1)) < 0)
		plug_failed(b, "cannot send the next QMP command");
}

static void plug_start(struct vpd_bdev *b)
{
	const struct vp_device *dev = vp_server_find(b->s->srv, b->id);
	int e;

	b->due_ms = 0;
	if (!dev || dev->state != VP_DEV_READY || b->st != P_NONE || b->held_off)
		return;
	if (!b->vm->up) {
		if (!b->why[0])
			set_why(b, "backend VM not reachable: %s",
				b->vm->why[0] ? b->vm->why : "connecting");
		return;  /* plugged when QMP is up */
	}
	b->replug = b->unplug_asked = false;
	b->st = P_PLUGGING;
	e = local_setup(b, dev);
	if (e == -EINVAL && !b->ivs) {
		char why[sizeof(b->why)];

		/* Its memory cannot be a BAR: nothing will change that. */
		snprintf(why, sizeof(why), "%s", b->why);
		local_free(b);
		refuse(b, why);
		return;
	}
	if (e < 0 || (e = plug_step(b, S_OBJ)) < 0) {
		char why[sizeof(b->why)];

		snprintf(why, sizeof(why), "%s", b->why[0] ? b->why : strerror(-e));
		local_free(b);
		b->backoff_ms = next_backoff(b->backoff_ms);
		b->due_ms = vpd_now_ms() + b->backoff_ms;
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": cannot plug it: %s (again in %u ms)",
		       b->id, why, b->backoff_ms);
		return;
	}
	vp_log(VP_LOG_DEBUG, "device %" PRIu64 ": plugging into backend VM %s as %s", b->id,
	       b->vm->path, b->name);
}

static void unplug_done(struct vpd_bdev *b)
{
	local_free(b);
	if (b->gone || b->vm->noqmp) {
		b->dead = true;
		return;
	}
	if (!b->ready)
		return;
	if (!b->unattached_ms)
		b->unattached_ms = vpd_now_ms();
	if (b->replug && !b->held_off)
		b->due_ms = vpd_now_ms() + (b->backoff_ms ? b->backoff_ms : SETTLE_MS);
	b->replug = false;
}

static void unplug_start(struct vpd_bdev *b, const char *why)
{
	switch (b->st) {
	case P_NONE:
		if (b->gone)
			b->dead = true;
		return;
	case P_PLUGGING:
		if (b->pending) {
			b->unplug_asked = true;  /* the reply under way decides */
			return;
		}
		break;
	case P_PLUGGED:
		break;
	case P_UNPLUGGING:
		return;
	case P_RESERVED:
		cold_cancel(b, why);
		return;
	}
	if (b->stopping) {
		vp_server_release_stop(b->s->srv, b->id);
		b->stopping = false;
	}
	if (b->vm->noqmp) {
		cold_let_go(b, why);
		return;
	}
	if (!b->have_info && !b->have_mem) {
		deleted(b);
		return;
	}
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": unplugging from backend VM %s: %s", b->id,
	       b->vm->path, why);
	snprintf(b->reason_pub, sizeof(b->reason_pub), "%s", why);
	publish(b);
	b->st = P_UNPLUGGING;
	b->unplug_due_ms = vpd_now_ms() + b->s->spec.unplug_timeout_ms;
	if (b->have_mem && plug_step(b, S_DEL_MEM) < 0)
		b->mem_gone = true;
	if (b->have_info && plug_step(b, S_DEL_INFO) < 0)
		b->info_gone = true;
	deleted(b);
}

/* The guest did not let go: free our side, keep the names for a late DEVICE_DELETED. */
static void unplug_timed_out(struct vpd_bdev *b)
{
	struct stale *st = calloc(1, sizeof(*st));

	b->vm->unplug_timeouts++;
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend VM %s did not release %s within %u ms "
	       "(%" PRIu64 " such unplugs): freeing the daemon's side; its QEMU objects go if "
	       "it ever does", b->id, b->vm->path, b->name, b->s->spec.unplug_timeout_ms,
	       b->vm->unplug_timeouts);
	if (st) {
		snprintf(st->name, sizeof(st->name), "%s", b->name);
		st->info_gone = !b->have_info || b->info_gone;
		st->mem_gone = !b->have_mem || b->mem_gone;
		st->next = b->vm->stale;
		b->vm->stale = st;
	}
	unplug_done(b);
}

/* ---- the driver page and doorbells ---- */

static void bad_page(struct vpd_bdev *b, const char *why)
{
	int64_t now = vpd_now_ms();
	char esc[200];

	b->bad_run++;
	b->bad_total++;
	vp_devinfo_escape(why, strlen(why), esc, sizeof(esc));
	set_why(b, "driver page refused: %s", esc);
	vp_log(now >= b->bad_log_ms ? VP_LOG_WARN : VP_LOG_DEBUG, "device %" PRIu64
	       ": backend VM %s: driver page refused (%" PRIu64 " so far): %s", b->id,
	       b->vm->path, b->bad_total, esc);
	if (now >= b->bad_log_ms)
		b->bad_log_ms = now + LOG_EVERY_MS;
	/* Cut to the window's field: the log has it whole. */
	strcpy(b->reason_pub, "driver page refused: ");
	vp_devinfo_escape(why, strlen(why), b->reason_pub + strlen(b->reason_pub),
			  sizeof(b->reason_pub) - strlen(b->reason_pub));
	if (b->bad_run >= BAD_PAGES_MAX) {
		char r[sizeof(b->why)];

		snprintf(r, sizeof(r), "driver wrote %u bad pages in a row; last: %s", b->bad_run,
			 esc);
		set_why(b, "%s", r);
		b->held_off = true;  /* until the frontend's next READY */
		unplug_start(b, r);
		return;
	}
	publish(b);
}

static void stop_done(struct vpd_bdev *b)
{
	b->stopping = false;
	vp_server_release_stop(b->s->srv, b->id);
}

static void read_driver(struct vpd_bdev *b)
{
	const volatile uint32_t *gp = (const volatile uint32_t *)(const volatile void *)
				      (b->win + VP_INFO_DRIVER_OFFSET);
	struct vp_devinfo_driver drv;
	char why[200];
	uint32_t g;

	if (!b->win || b->st == P_UNPLUGGING)
		return;
	g = le32toh(__atomic_load_n(gp, __ATOMIC_ACQUIRE));  /* driver_gen */
	if (g == b->drv_gen_seen)
		return;  /* a doorbell without a new page */
	b->drv_gen_seen = g;
	if (vp_devinfo_read_driver(b->win, &b->pub, b->first_gen, &drv, why, sizeof(why)) < 0) {
		bad_page(b, why);
		return;
	}
	if (b->stopping && (int32_t)(drv.acked_gen - b->stop_gen) >= 0) {
		for (unsigned q = 0; q < b->nq; q++) {
			if (!drv.stopped[q] || !b->pub.queues[q].num)
				continue;
			if (vp_devinfo_check_stopped(drv.stopped[q], b->pub.queues[q].num,
						     b->avail_at_stop[q], why, sizeof(why)) < 0) {
				char w[260];

				snprintf(w, sizeof(w), "queue %u: %s", q, why);
				bad_page(b, w);
				return;
			}
		}
		vp_log(VP_LOG_INFO, "device %" PRIu64 ": backend VM driver acked STOP in %" PRId64
		       " ms", b->id, vpd_now_ms() - b->stop_since_ms);
		stop_done(b);
	}
	b->bad_run = 0;
	if (drv.driver_status != b->driver_status) {
		char esc[200];

		vp_devinfo_escape(drv.reason, sizeof(drv.reason), esc, sizeof(esc));
		vp_log((drv.driver_status & VP_INFO_DS_FAILED) ? VP_LOG_WARN : VP_LOG_INFO,
		       "device %" PRIu64 ": backend VM driver status 0x%x%s%s", b->id,
		       drv.driver_status, (drv.driver_status & VP_INFO_DS_FAILED) ? ": failed: " : "",
		       (drv.driver_status & VP_INFO_DS_FAILED) ? esc : "");
		if (drv.driver_status & VP_INFO_DS_FAILED)
			set_why(b, "driver failed the device: %s", esc);
		b->driver_status = drv.driver_status;
	}
	if (b->reason_pub[0]) {
		b->reason_pub[0] = '\0';  /* a good page: the complaint is answered */
		publish(b);
	}
}

static void doorbell(struct vpd_bdev *b)
{
	int64_t now = vpd_now_ms();
	uint64_t n = 0;

	if (read(b->drv_fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return;
	if (now - b->db_win_ms >= 1000) {
		b->db_win_ms = now;
		b->db_count = 0;
	}
	b->db_count += n;
	if (b->db_count > DOORBELL_MAX_PER_S) {
		b->floods++;
		vp_log(b->floods == 1 ? VP_LOG_WARN : VP_LOG_DEBUG, "device %" PRIu64 ": backend "
		       "VM rings the daemon more than %u times a second: not listening for 1 s "
		       "(%" PRIu64 " floods)", b->id, DOORBELL_MAX_PER_S, b->floods);
		watch_del(b->vm->d, b->drv_fd);
		b->drv_watched = false;
		b->unmute_ms = now + 1000;
	}
	read_driver(b);
}

static void relay_kick(struct vpd_bdev *b, unsigned q)
{
	uint64_t n;

	/* The cost of a replaced kick fd: this read and write per kick. */
	if (read(b->relay_kick[q], &n, sizeof(n)) == (ssize_t)sizeof(n))
		fire(b->own_kick[q]);
}

/* ---- device events ---- */

static void on_ready(struct vpd_bdev *b, const struct vp_device *dev, bool first)
{
	struct vp_devinfo tmp;
	char why[200];
	struct stat st;

	b->ready = true;
	if (first)
		b->held_off = false;
	if (check_memory(b->s, dev, &tmp, why, sizeof(why)) < 0) {
		unplug_start(b, why);
		refuse(b, why);
		return;
	}
	if (!b->unattached_ms && b->st != P_PLUGGED && b->st != P_RESERVED)
		b->unattached_ms = vpd_now_ms();
	switch (b->st) {
	case P_NONE:
		if (!b->held_off)
			b->due_ms = vpd_now_ms() + SETTLE_MS;
		break;
	case P_UNPLUGGING:
		b->replug = true;
		break;
	case P_PLUGGING:
	case P_PLUGGED:
	case P_RESERVED:
		if (fstat(dev->regions[0].fd, &st) < 0 || st.st_dev != b->ram_dev ||
		    st.st_ino != b->ram_ino) {
			/* A BAR cannot change its memory: a new pair. */
			b->replug = true;
			unplug_start(b, "frontend memory replaced");
			break;
		}
		if (follow_fds(b, dev) == -ENOSPC) {
			b->replug = true;
			unplug_start(b, "the function ran out of peer ids for new call fds");
			break;
		}
		if (b->stopping)
			stop_done(b);
		publish(b);
		break;
	}
}

static void on_stopped(struct vpd_bdev *b, const struct vp_device *dev)
{
	struct vp_ring_status rs;

	b->ready = false;
	b->due_ms = 0;
	b->unattached_ms = 0;
	if (b->st != P_PLUGGED) {
		publish(b);
		return;  /* no driver runs the rings: answered at once */
	}
	for (unsigned q = 0; q < b->nq; q++)
		b->avail_at_stop[q] = vp_device_ring_status(dev, q, &rs) == 0 ? rs.avail_idx : 0;
	if (vp_server_hold_stop(b->s->srv, b->id) < 0) {
		publish(b);
		return;
	}
	b->stopping = true;
	b->stop_since_ms = vpd_now_ms();
	b->stop_due_ms = b->stop_since_ms + b->s->spec.stop_timeout_ms;
	publish(b);  /* STOP, and the config vector */
	b->stop_gen = b->pub.generation;
}

static struct vpd_bdev *bdev_new(struct vpd_server *s, struct vpd_bevm *vm, uint64_t id)
{
	struct vpd_bdev *b = calloc(1, sizeof(*b));

	if (!b) {
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": out of memory", id);
		return NULL;
	}
	b->vm = vm;
	b->s = s;
	b->id = id;
	b->ram_fd = b->cfg_fd = b->drv_fd = -1;
	b->cold_slot = -1;
	for (unsigned q = 0; q < VP_DEV_MAX_RINGS; q++)
		b->own_kick[q] = b->relay_kick[q] = b->peer_call[q] = -1;
	b->next = s->d->bdevs;
	s->d->bdevs = b;
	return b;
}

void vpd_bevm_event(struct vpd_server *s, enum vp_event ev, const struct vp_device *dev)
{
	struct vpd *d = s->d;
	struct vpd_bdev *b;

	b = find(d, dev->id);
	if (!s->bevm && (!b || b->s != s))
		return;  /* neither hot- nor cold-plugged */
	switch (ev) {
	case VP_EV_DEVICE_NEW:
		break;
	case VP_EV_DEVICE_READY:
	case VP_EV_DEVICE_CHANGED:
		if (!b && !(b = bdev_new(s, s->bevm, dev->id)))
			return;
		on_ready(b, dev, ev == VP_EV_DEVICE_READY);
		break;
	case VP_EV_DEVICE_STOPPED:
		if (b)
			on_stopped(b, dev);
		break;
	case VP_EV_DEVICE_REMOVED:
		if (!b)
			break;
		b->gone = true;
		b->ready = false;
		b->stopping = false;  /* its held reply went with it */
		unplug_start(b, "frontend gone");
		break;
	}
}

/* ---- the QMP connection ---- */

void vpd_qmp_watch(struct vpd *d, struct vpd_qmp *q, struct vpd_watch *w, int *reg_fd,
		   uint32_t *reg_ev)
{
	int fd = q ? vpd_qmp_fd(q) : -1;
	short pe = q ? vpd_qmp_poll_events(q) : 0;
	uint32_t ev = ((pe & POLLIN) ? EPOLLIN : 0) | ((pe & POLLOUT) ? EPOLLOUT : 0);
	struct epoll_event e = { .events = ev, .data.ptr = w };

	if (*reg_fd >= 0 && *reg_fd != fd) {
		watch_del(d, *reg_fd);
		*reg_fd = -1;
	}
	if (fd < 0)
		return;
	if (*reg_fd < 0) {
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &e) == 0) {
			*reg_fd = fd;
			*reg_ev = ev;
		}
	} else if (*reg_ev != ev && epoll_ctl(d->epfd, EPOLL_CTL_MOD, fd, &e) == 0) {
		*reg_ev = ev;
	}
}

static void vm_sync(struct vpd_bevm *vm)
{
	vpd_qmp_watch(vm->d, vm->q, &vm->w, &vm->reg_fd, &vm->reg_ev);
}

static struct vpd_bdev *by_name(struct vpd_bevm *vm, const char *qdev, bool *info)
{
	size_t n;

	for (struct vpd_bdev *b = vm->d->bdevs; b; b = b->next) {
		if (b->vm != vm || b->dead || !b->name[0] || b->st == P_NONE)
			continue;
		n = strlen(b->name);
		if (strncmp(qdev, b->name, n) || qdev[n] != '-')
			continue;
		if (!strcmp(qdev + n + 1, "i") || !strcmp(qdev + n + 1, "m")) {
			*info = qdev[n + 1] == 'i';
			return b;
		}
	}
	return NULL;
}

static void stale_deleted(struct vpd_bevm *vm, const char *qdev)
{
	for (struct stale **p = &vm->stale; *p; p = &(*p)->next) {
		struct stale *st = *p;
		size_t n = strlen(st->name);
		char id[64];

		if (strncmp(qdev, st->name, n) || qdev[n] != '-' || qdev[n + 2])
			continue;
		if (qdev[n + 1] == 'i')
			st->info_gone = true;
		else if (qdev[n + 1] == 'm')
			st->mem_gone = true;
		if (!st->info_gone || !st->mem_gone)
			return;
		vp_log(VP_LOG_INFO, "backend VM %s released %s late: removing its backends",
		       vm->path, st->name);
		snprintf(id, sizeof(id), "%s-c", st->name);
		send_forget(vm, "chardev-remove", "id", id);
		snprintf(id, sizeof(id), "%s-im", st->name);
		send_forget(vm, "object-del", "id", id);
		*p = st->next;
		free(st);
		return;
	}
}

static void on_qmp_event(void *opaque, const char *event, json_t *data)
{
	struct vpd_bevm *vm = opaque;
	json_t *dv = data ? json_object_get(data, "device") : NULL;
	struct vpd_bdev *b;
	bool info = false;

	if (strcmp(event, "DEVICE_DELETED") || !json_is_string(dv))
		return;
	b = by_name(vm, json_string_value(dv), &info);
	if (!b) {
		stale_deleted(vm, json_string_value(dv));
		return;
	}
	if (info)
		b->info_gone = true;
	else
		b->mem_gone = true;
	if (b->st == P_UNPLUGGING) {
		deleted(b);
		return;
	}
	/* The guest (or someone at QEMU's monitor) unplugged it: plug again later. */
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend VM %s removed %s by itself", b->id,
	       vm->path, json_string_value(dv));
	b->backoff_ms = next_backoff(b->backoff_ms);
	b->replug = true;
	set_why(b, "the backend VM removed %s", json_string_value(dv));
	unplug_start(b, b->why);
}

static void vm_connect(struct vpd_bevm *vm)
{
	int64_t now = vpd_now_ms();
	int e = vpd_qmp_connect(vm->path, HANDSHAKE_MS, now, &vm->q);

	vm->retry_ms = 0;
	if (e < 0) {
		vm->q = NULL;
		snprintf(vm->why, sizeof(vm->why), "QMP %s: %s", vm->path, strerror(-e));
		vm->backoff_ms = next_backoff(vm->backoff_ms);
		vm->retry_ms = now + vm->backoff_ms;
		if (now >= vm->log_ms) {
			vp_log(VP_LOG_WARN, "backend VM %s not reachable: %s (trying again with "
			       "backoff)", vm->path, strerror(-e));
			vm->log_ms = now + LOG_EVERY_MS;
		}
		return;
	}
	vm->connects++;
	vpd_qmp_set_event_cb(vm->q, on_qmp_event, vm);
	vm_sync(vm);
}

static void vm_up(struct vpd_bevm *vm)
{
	vm->up = true;
	vm->backoff_ms = 0;
	vm->log_ms = 0;
	vm->why[0] = '\0';
	vp_log(VP_LOG_INFO, "backend VM %s: QMP ready", vm->path);
	for (struct vpd_bdev *b = vm->d->bdevs; b; b = b->next)
		if (b->vm == vm && !b->dead && b->st == P_NONE && b->ready && !b->held_off) {
			b->why[0] = '\0';
			plug_start(b);
		}
}

static void vm_dispatch(struct vpd_bevm *vm)
{
	enum vpd_qmp_state st;

	if (!vm->q)
		return;
	st = vpd_qmp_dispatch(vm->q, vpd_now_ms());
	if (st == VPD_QMP_CLOSED) {
		vm_lost(vm, vpd_qmp_error(vm->q));
		return;
	}
	if (st == VPD_QMP_READY && !vm->up)
		vm_up(vm);
	vm_sync(vm);
}

static void vm_lost(struct vpd_bevm *vm, const char *why)
{
	struct vpd_qmp *q = vm->q;
	int64_t now = vpd_now_ms();

	snprintf(vm->why, sizeof(vm->why), "QMP lost: %s", why && *why ? why : "closed");
	vp_log(VP_LOG_WARN, "backend VM %s: %s; its devices are unattached until it is back",
	       vm->path, vm->why);
	watch_del(vm->d, vm->reg_fd);
	vm->reg_fd = -1;
	vm->q = NULL;
	vm->up = false;
	vpd_qmp_close(q);  /* callbacks see vm->q == NULL */
	while (vm->stale) {
		struct stale *st = vm->stale;

		vm->stale = st->next;
		free(st);
	}
	for (struct vpd_bdev *b = vm->d->bdevs; b; b = b->next) {
		if (b->vm != vm || b->dead)
			continue;
		if (b->stopping)
			stop_done(b);  /* nobody can answer it now */
		if (b->st != P_NONE)
			local_free(b);
		if (b->gone) {
			b->dead = true;
			continue;
		}
		snprintf(b->why, sizeof(b->why), "backend VM %s", vm->why);
		if (b->ready && !b->unattached_ms)
			b->unattached_ms = now;
		b->due_ms = 0;
	}
	vm->backoff_ms = next_backoff(vm->backoff_ms);
	vm->retry_ms = now + vm->backoff_ms;
}

/* ---- the loop ---- */

void vpd_bevm_watch(struct vpd *d, struct vpd_watch *w, uint32_t events)
{
	(void)d;
	(void)events;
	if (w->kind == VPD_W_BEVM) {
		vm_dispatch(w->obj);
		return;
	}

	struct vpd_bdev *b = w->obj;

	if (b->dead)
		return;
	if (w == &b->ivs_w && b->ivs) {
		int m = vpd_ivshmem_dispatch(b->ivs);

		if (m & VPD_IVSHMEM_SETUP_SENT)
			vp_log(VP_LOG_DEBUG, "device %" PRIu64 ": QEMU has its ivshmem setup", b->id);
		if ((m & VPD_IVSHMEM_CONNECTED) && b->st == P_RESERVED)
			cold_connected(b);
		if ((m & VPD_IVSHMEM_GONE) && b->st == P_PLUGGED) {
			vp_log(VP_LOG_INFO, "device %" PRIu64 ": QEMU closed its ivshmem connection "
			       "(%s)", b->id, vpd_ivshmem_reason(b->ivs));
			if (b->vm->noqmp)
				cold_vm_left(b);
		}
	} else if (w == &b->drv_w && b->drv_watched) {
		doorbell(b);
	} else {
		for (unsigned q = 0; q < b->nq; q++)
			if (w == &b->kick_w[q] && b->relay_kick[q] >= 0)
				relay_kick(b, q);
	}
}

static void earliest(int64_t *best, int64_t t)
{
	if (t > 0 && (*best < 0 || t < *best))
		*best = t;
}

int vpd_bevm_timeout(const struct vpd *d)
{
	int64_t best = -1, now = vpd_now_ms();

	for (const struct vpd_bevm *vm = d->bevms; vm; vm = vm->next) {
		earliest(&best, vm->retry_ms);
		if (vm->q)
			earliest(&best, vpd_qmp_deadline(vm->q));
	}
	for (const struct vpd_bdev *b = d->bdevs; b; b = b->next) {
		if (b->dead)
			continue;
		earliest(&best, b->due_ms);
		if (b->stopping)
			earliest(&best, b->stop_due_ms);
		if (b->st == P_UNPLUGGING)
			earliest(&best, b->unplug_due_ms);
		if (b->st == P_RESERVED)
			earliest(&best, b->cold_due_ms);
		if (!b->drv_watched && b->unmute_ms)
			earliest(&best, b->unmute_ms);
		if (b->ready && b->unattached_ms && b->s->spec.backend_grace_ms)
			earliest(&best, b->unattached_ms + b->s->spec.backend_grace_ms);
	}
	if (best < 0)
		return -1;
	return best > now ? (int)(best - now) : 0;
}

void vpd_bevm_tick(struct vpd *d)
{
	int64_t now = vpd_now_ms();

	for (struct vpd_bevm *vm = d->bevms; vm; vm = vm->next) {
		if (!vm->q && vm->retry_ms && now >= vm->retry_ms)
			vm_connect(vm);
		else if (vm->q && vpd_qmp_deadline(vm->q) >= 0 && now >= vpd_qmp_deadline(vm->q))
			vm_dispatch(vm);
	}
	for (struct vpd_bdev *b = d->bdevs; b; b = b->next) {
		if (b->dead)
			continue;
		if (b->stopping && now >= b->stop_due_ms) {
			b->stop_timeouts++;
			b->s->stop_timeouts++;
			set_why(b, "driver did not acknowledge STOP within %u ms",
				b->s->spec.stop_timeout_ms);
			vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend VM %s %s: answering the "
			       "frontend's GET_VRING_BASE anyway (%" PRIu64 " such stops)", b->id,
			       b->vm->path, b->why, b->stop_timeouts);
			stop_done(b);
		}
		if (b->st == P_UNPLUGGING && now >= b->unplug_due_ms) {
			unplug_timed_out(b);
			continue;
		}
		if (b->st == P_RESERVED && now >= b->cold_due_ms) {
			cold_lapsed(b);
			continue;
		}
		if (!b->drv_watched && b->unmute_ms && now >= b->unmute_ms && b->drv_fd >= 0) {
			b->unmute_ms = 0;
			if (watch_add(d, b->drv_fd, &b->drv_w) == 0)
				b->drv_watched = true;
			read_driver(b);
		}
		if (b->ready && b->st != P_PLUGGED && b->unattached_ms &&
		    b->s->spec.backend_grace_ms &&
		    now >= b->unattached_ms + b->s->spec.backend_grace_ms) {
			char why[sizeof(b->why) + 96];

			snprintf(why, sizeof(why), "no backend VM took the device within %u s (%s)",
				 b->s->spec.backend_grace_ms / 1000,
				 b->why[0] ? b->why : "backend VM not reachable");
			vp_log(VP_LOG_WARN, "device %" PRIu64 ": dropping its frontend: %s", b->id,
			       why);
			b->unattached_ms = 0;
			vp_server_drop(b->s->srv, b->id, why);
			continue;
		}
		if (b->due_ms && now >= b->due_ms && b->st == P_NONE)
			plug_start(b);
	}
}

void vpd_bevm_reap(struct vpd *d)
{
	for (struct vpd_bdev **p = &d->bdevs; *p;) {
		struct vpd_bdev *b = *p;

		if (b->dead && !b->pending) {
			*p = b->next;
			local_free(b);
			free(b);
		} else {
			p = &b->next;
		}
	}
}

int vpd_bevm_init(struct vpd *d)
{
	bool any = false;
	int e;

	for (unsigned i = 0; i < d->nservers; i++) {
		struct vpd_server *s = &d->servers[i];
		struct vpd_bevm *vm;

		if (!s->spec.backend_vm)
			continue;
		any = true;
		for (vm = d->bevms; vm; vm = vm->next)
			if (!strcmp(vm->path, s->spec.backend_vm))
				break;
		if (!vm) {
			vm = calloc(1, sizeof(*vm));
			if (!vm || !(vm->path = strdup(s->spec.backend_vm))) {
				free(vm);
				return -ENOMEM;
			}
			vm->d = d;
			vm->reg_fd = -1;
			vm->w = (struct vpd_watch){ .kind = VPD_W_BEVM, .obj = vm };
			vm->next = d->bevms;
			d->bevms = vm;
		}
		s->bevm = vm;
	}
	if (!any)
		return 0;
	/* Sockets of sun_path size: "DIR/vpdNNNvNNN.sock" must fit. */
	if (strlen(d->run_dir) > 80) {
		vp_log(VP_LOG_ERR, "run directory %s is too long (80 bytes at most: the ivshmem "
		       "sockets in it must fit a Unix socket address)", d->run_dir);
		return -ENAMETOOLONG;
	}
	{
		char probe[200];

		snprintf(probe, sizeof(probe), "%s/x", d->run_dir);
		e = vpd_mkdir_parents(probe);
	}
	if (e < 0) {
		vp_log(VP_LOG_ERR, "cannot create the run directory %s: %s", d->run_dir,
		       strerror(-e));
		return e;
	}
	for (struct vpd_bevm *vm = d->bevms; vm; vm = vm->next)
		vm_connect(vm);
	return 0;
}

/* Shutdown: the device_del commands the frontends' REMOVED events queued go
 * out, for at most FLUSH_MS: the guest then releases the pairs by itself. */
static void vm_flush(struct vpd_bevm *vm)
{
	int64_t end = vpd_now_ms() + FLUSH_MS;

	while (vm->q && vm->up && (vpd_qmp_poll_events(vm->q) & POLLOUT)) {
		struct pollfd p = { .fd = vpd_qmp_fd(vm->q), .events = POLLOUT };
		int64_t left = end - vpd_now_ms();

		if (left <= 0 || poll(&p, 1, (int)left) != 1 ||
		    vpd_qmp_dispatch(vm->q, vpd_now_ms()) == VPD_QMP_CLOSED)
			break;
	}
}

void vpd_bevm_free_all(struct vpd *d)
{
	for (struct vpd_bevm *vm = d->bevms; vm; vm = vm->next) {
		struct vpd_qmp *q;

		vm_flush(vm);
		q = vm->q;

		watch_del(d, vm->reg_fd);
		vm->q = NULL;
		vpd_qmp_close(q);
	}
	for (struct vpd_bdev *b = d->bdevs; b; b = b->next)
		b->dead = true;
	vpd_bevm_reap(d);
	while (d->bevms) {
		struct vpd_bevm *vm = d->bevms;

		d->bevms = vm->next;
		while (vm->stale) {
			struct stale *st = vm->stale;

			vm->stale = st->next;
			free(st);
		}
		free(vm->path);
		free(vm);
	}
}

/* ---- the control socket ---- */

bool vpd_bevm_render_device(struct jw *w, const struct vpd *d, const struct vpd_server *s,
			    uint64_t id)
{
	const struct vpd_bdev *b = NULL;
	const struct vpd_bevm *vm;

	for (const struct vpd_bdev *x = d->bdevs; x; x = x->next)
		if (x->id == id && !x->dead && x->s == s)
			b = x;
	if (!s->bevm && !b)
		return false;
	vm = b ? b->vm : s->bevm;
	jw_obj_begin(w, "backend");
	jw_str(w, "kind", "vm");
	jw_str(w, "path", vm->noqmp ? NULL : vm->path);
	jw_str(w, "state", !b ? (vm->up ? "none" : "waiting") :
		   b->stopping ? "stopping" : plug_names[b->st]);
	jw_str(w, "reason", b && b->why[0] ? b->why : !vm->up && vm->why[0] ? vm->why : NULL);
	jw_u64(w, "stop_timeouts", b ? b->stop_timeouts : 0);
	jw_bool(w, "cold", b && b->cold);
	if (b && b->st != P_NONE) {
		jw_str(w, "qemu_id", b->name);
		jw_str(w, "memory_pci", b->mem_pci[0] ? b->mem_pci : NULL);
		jw_str(w, "info_pci", b->info_pci[0] ? b->info_pci : NULL);
		jw_u64(w, "memory_peer", b->mem_peer);
		jw_u64(w, "generation", b->pub.generation);
	}
	if (b) {
		jw_hex(w, "driver_status", b->driver_status);
		jw_u64(w, "bad_pages", b->bad_total);
		jw_u64(w, "doorbell_floods", b->floods);
	}
	jw_obj_end(w);
	return true;
}

void vpd_bevm_render_server(struct jw *w, const struct vpd_server *s)
{
	if (!s->bevm)
		return;
	jw_str(w, "backend_vm", s->bevm->path);
	jw_bool(w, "backend_vm_ok", s->bevm->up);
	jw_str(w, "backend_vm_reason", s->bevm->up ? NULL : s->bevm->why);
	jw_u64(w, "unplug_timeouts", s->bevm->unplug_timeouts);
	jw_u64(w, "stop_timeout_ms", s->spec.stop_timeout_ms);
	jw_u64(w, "stop_timeouts", s->stop_timeouts);
}

/* ---- cold plug: backend VMs started by hand (vhost-pci-ctl qemu-args) ----
 *
 * QEMU reads an ivshmem-doorbell's shared memory once, when the device is
 * realized (at QEMU's start for -device), and never again: a cold-plugged
 * memory function can only carry a frontend whose RAM exists now. So
 * qemu-args takes READY devices, makes their window and ivshmem server at
 * once (as plug_start() does) and prints the QEMU arguments naming them,
 * with the QEMU ids the hot-plug uses. The device stays P_RESERVED until
 * QEMU connects to its socket (then P_PLUGGED, handled like a hot-plugged
 * device) or the reservation lapses (logged; the files go). In a backend VM
 * with QMP (backend-vm= too) the unplug is the usual device_del; without,
 * nothing can remove the pair: GONE is published and the daemon lets go.
 * The window's file stays in the run directory while the device is ours:
 * QEMU opens memory backends after connecting its chardevs, so the ivshmem
 * connection does not tell that the file was mapped.
 */

/* The one backend "VM" of cold plugs without QMP: every VM started by hand
 * for servers without backend-vm= (peer ids stay unique in the daemon). */
static struct vpd_bevm *cold_vm(struct vpd *d)
{
	struct vpd_bevm *vm;

	for (vm = d->bevms; vm; vm = vm->next)
		if (vm->noqmp)
			return vm;
	vm = calloc(1, sizeof(*vm));
	if (!vm || !(vm->path = strdup("(started by hand, no QMP)"))) {
		free(vm);
		return NULL;
	}
	vm->d = d;
	vm->reg_fd = -1;
	vm->noqmp = true;
	vm->w = (struct vpd_watch){ .kind = VPD_W_BEVM, .obj = vm };
	vm->next = d->bevms;
	d->bevms = vm;
	return vm;
}

/* The reservation ends before QEMU came: files and socket go; with QMP,
 * the device is hot-plugged as usual. */
static void cold_cancel(struct vpd_bdev *b, const char *why)
{
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": cold-plug reservation %s ended: %s", b->id,
	       b->name, why);
	set_why(b, "cold-plug reservation ended: %s", why);
	b->replug = !b->vm->noqmp && !b->held_off;
	unplug_done(b);
}

static void cold_lapsed(struct vpd_bdev *b)
{
	char why[sizeof(b->sock_path) + 96];

	snprintf(why, sizeof(why), "no QEMU connected to %s within %u s", b->sock_path,
		 b->cold_timeout_s);
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": %s: its cold-plug reservation lapsed (run "
	       "vhost-pci-ctl qemu-args again)", b->id, why);
	cold_cancel(b, why);
}

/* QEMU started with the arguments: its ivshmem client came. */
static void cold_connected(struct vpd_bdev *b)
{
	b->cold_due_ms = 0;
	/* What QEMU has, so that a device_del (with QMP) removes exactly that. */
	b->have_obj = b->have_info = b->have_chr = b->have_mem = true;
	if (b->cold_slot >= 0) {
		snprintf(b->info_pci, sizeof(b->info_pci), "00:%02x.0", (unsigned)b->cold_slot);
		snprintf(b->mem_pci, sizeof(b->mem_pci), "00:%02x.0", (unsigned)b->cold_slot + 1);
	}
	plugged(b);
}

/*
 * Without QMP the pair cannot be removed: GONE (and why) is published, the
 * config vector fires, and the daemon lets go. The guest's driver drops the
 * device; the functions stay in the VM (its BAR2 still maps the frontend's
 * old RAM) until the backend VM restarts.
 */
static void cold_let_go(struct vpd_bdev *b, const char *why)
{
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": %s: published GONE; the backend VM started by "
	       "hand keeps its functions %s-i/%s-m (no QMP to remove them) until it restarts",
	       b->id, why, b->name, b->name);
	snprintf(b->reason_pub, sizeof(b->reason_pub), "%s", why);
	b->gone = true;
	publish(b);
	unplug_done(b);
}

/* The backend VM without QMP went (QEMU closed its ivshmem connection). */
static void cold_vm_left(struct vpd_bdev *b)
{
	if (b->stopping)
		stop_done(b);
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": the backend VM started by hand let go of %s: "
	       "the device can be cold-plugged again", b->id, b->name);
	unplug_done(b);
}

/* QEMU option syntax: a ',' in a value is written ",,". */
static void qopt(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 2 < len; s++) {
		if (*s == ',')
			out[o++] = ',';
		out[o++] = *s;
	}
	out[o] = '\0';
}

static void cold_args(struct jw *w, const struct vpd_bdev *b)
{
	char sock[2 * sizeof(b->sock_path)], info[2 * sizeof(b->info_path)], addr[2][24];

	qopt(sock, sizeof(sock), b->sock_path);
	qopt(info, sizeof(info), b->info_path);
	addr[0][0] = addr[1][0] = '\0';
	if (b->cold_slot >= 0) {
		snprintf(addr[0], sizeof(addr[0]), ",addr=0x%02x", (unsigned)b->cold_slot);
		snprintf(addr[1], sizeof(addr[1]), ",addr=0x%02x", (unsigned)b->cold_slot + 1);
	}
	/* The chardev first: QEMU connects it before any -device is realized. */
	jw_str(w, NULL, "-chardev");
	jw_strf(w, NULL, "socket,id=%s-c,path=%s", b->name, sock);
	jw_str(w, NULL, "-object");
	jw_strf(w, NULL, "memory-backend-file,id=%s-im,mem-path=%s,size=%u,share=on", b->name,
		info, (unsigned)VP_INFO_WINDOW_SIZE);
	jw_str(w, NULL, "-device");
	jw_strf(w, NULL, "ivshmem-plain,id=%s-i,memdev=%s-im%s", b->name, b->name, addr[0]);
	jw_str(w, NULL, "-device");
	jw_strf(w, NULL, "ivshmem-doorbell,id=%s-m,chardev=%s-c,vectors=%u%s", b->name, b->name,
		1 + b->nq, addr[1]);
}

/* Why device want->id of s cannot be cold-plugged now ("" if it can). */
static int cold_check(struct vpd *d, struct vpd_server *s, const struct vpd_cold_dev *want,
		      char *err, size_t errlen)
{
	const struct vp_device *dev = vp_server_find(s->srv, want->id);
	const struct vpd_bdev *b = find(d, want->id);
	struct vp_devinfo tmp;
	char why[200];

	if (!dev) {
		snprintf(err, errlen, "no device %" PRIu64 " on server %s", want->id, s->spec.id);
		return -ENOENT;
	}
	if (dev->state != VP_DEV_READY) {
		snprintf(err, errlen, "device %" PRIu64 " is %s, not ready: its RAM and rings must "
			 "exist when the backend VM starts (a memory function's BAR never changes)",
			 want->id, vp_dev_state_name(dev->state));
		return -EAGAIN;
	}
	if (b && b->st != P_NONE) {
		snprintf(err, errlen, "device %" PRIu64 " is already %s in backend VM %s (as %s)",
			 want->id, plug_names[b->st], b->vm->path, b->name);
		return -EBUSY;
	}
	if (check_memory(s, dev, &tmp, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "device %" PRIu64 ": %s", want->id, why);
		return -EINVAL;
	}
	if (want->slot >= 0 && (want->slot < 1 || want->slot > 30)) {
		snprintf(err, errlen, "device %" PRIu64 ": slot %d: a pair takes slots SLOT and "
			 "SLOT+1, 1..31", want->id, want->slot);
		return -EINVAL;
	}
	return 0;
}

/* Make the device's window and ivshmem server and reserve it. 0 or -errno. */
static int cold_reserve(struct vpd_server *s, const struct vpd_cold_dev *want,
			unsigned timeout_s, char *err, size_t errlen)
{
	struct vpd *d = s->d;
	const struct vp_device *dev = vp_server_find(s->srv, want->id);
	struct vpd_bdev *b = find(d, want->id);
	struct vpd_bevm *vm = s->bevm ? s->bevm : cold_vm(d);
	bool fresh = !b;
	int e;

	if (!vm || (!b && !(b = bdev_new(s, vm, want->id)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->ready = true;
	b->why[0] = '\0';
	e = local_setup(b, dev);
	if (e < 0) {
		snprintf(err, errlen, "device %" PRIu64 ": %s", want->id, b->why);
		local_free(b);
		if (fresh)
			b->dead = true;
		return e;
	}
	b->unattached_ms = 0;  /* the reservation's timeout rules now, not backend-grace */
	b->due_ms = 0;
	b->held_off = false;   /* asked for by hand */
	b->st = P_RESERVED;
	b->cold = true;
	b->cold_slot = want->slot;
	b->cold_timeout_s = timeout_s;
	b->cold_due_ms = vpd_now_ms() + (int64_t)timeout_s * 1000;
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": reserved for a backend VM started by hand as %s "
	       "(ivshmem socket %s, peer %u) for %u s", b->id, b->name, b->sock_path, b->mem_peer,
	       timeout_s);
	return 0;
}

int vpd_bevm_qemu_args(struct vpd *d, struct vpd_server *s, const struct vpd_cold_dev *want,
		       unsigned n, unsigned timeout_s, struct jw *w, char *err, size_t errlen)
{
	struct vpd_cold_dev all[VPD_COLD_MAX];
	struct vpd_bdev *done[VPD_COLD_MAX];
	char probe[200];
	int e;

	if (s->spec.backend) {
		snprintf(err, errlen, "server %s hands its devices to a host backend (backend=); "
			 "cold plug is for servers without one or with backend-vm=", s->spec.id);
		return -EINVAL;
	}
	if (s->bevm && s->bevm->up) {
		/* Its QEMU is running: a command line can no longer matter. */
		snprintf(err, errlen, "backend VM %s is running (QMP answers): server %s's devices "
			 "are hot-plugged into it", s->bevm->path, s->spec.id);
		return -EBUSY;
	}
	if (n > VPD_COLD_MAX) {
		snprintf(err, errlen, "at most %u devices per request", VPD_COLD_MAX);
		return -E2BIG;
	}
	if (!n) {
		struct vp_pci_info *info = vp_pci_info_new();
		int count = info ? vp_server_info(s->srv, info) : -ENOMEM;

		if (count < 0) {
			vp_pci_info_free(info);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		for (unsigned i = 0; i < (unsigned)count && n < VPD_COLD_MAX; i++) {
			const struct vp_device *dev = vp_pci_info_get(info, i)->dev;
			const struct vpd_bdev *b = find(d, dev->id);

			if (dev->state == VP_DEV_READY && (!b || b->st == P_NONE))
				all[n++] = (struct vpd_cold_dev){ .id = dev->id, .slot = -1 };
		}
		vp_pci_info_free(info);
		if (!n) {
			snprintf(err, errlen, "server %s has no ready device that is in no backend "
				 "VM (a frontend's RAM must exist when the backend VM starts)",
				 s->spec.id);
			return -ENOENT;
		}
		want = all;
	}
	/* All checked before anything is made: all or nothing. */
	for (unsigned i = 0; i < n; i++) {
		if ((e = cold_check(d, s, &want[i], err, errlen)) < 0)
			return e;
		for (unsigned j = 0; j < i; j++) {
			if (want[j].id == want[i].id) {
				snprintf(err, errlen, "device %" PRIu64 " named twice", want[i].id);
				return -EINVAL;
			}
			if (want[i].slot >= 0 && want[j].slot >= 0 &&
			    want[i].slot - want[j].slot <= 1 && want[j].slot - want[i].slot <= 1) {
				snprintf(err, errlen, "devices %" PRIu64 " and %" PRIu64 ": slots %d "
					 "and %d overlap (each pair takes SLOT and SLOT+1)", want[j].id,
					 want[i].id, want[j].slot, want[i].slot);
				return -EINVAL;
			}
		}
	}
	/* Sockets of sun_path size: "DIR/vpdNNNvNNN.sock" must fit. */
	if (strlen(d->run_dir) > 80) {
		snprintf(err, errlen, "run directory %s is too long (80 bytes at most)", d->run_dir);
		return -ENAMETOOLONG;
	}
	snprintf(probe, sizeof(probe), "%s/x", d->run_dir);
	if ((e = vpd_mkdir_parents(probe)) < 0) {
		snprintf(err, errlen, "cannot create the run directory %s: %s", d->run_dir,
			 strerror(-e));
		return e;
	}
	for (unsigned i = 0; i < n; i++) {
		if ((e = cold_reserve(s, &want[i], timeout_s, err, errlen)) < 0) {
			for (unsigned j = 0; j < i; j++)
				cold_cancel(done[j], "another device of the request failed");
			return e;
		}
		done[i] = find(d, want[i].id);
	}
	jw_obj_begin(w, NULL);
	jw_str(w, "server", s->spec.id);
	jw_str(w, "backend_vm", s->bevm ? s->bevm->path : NULL);
	jw_u64(w, "timeout_s", timeout_s);
	jw_arr_begin(w, "devices");
	for (unsigned i = 0; i < n; i++) {
		const struct vpd_bdev *b = done[i];

		jw_obj_begin(w, NULL);
		jw_u64(w, "id", b->id);
		jw_str(w, "qemu_id", b->name);
		jw_str(w, "socket", b->sock_path);
		jw_str(w, "window", b->info_path);
		jw_u64(w, "memory_peer", b->mem_peer);
		jw_u64(w, "vectors", 1 + b->nq);
		if (b->cold_slot >= 0)
			jw_u64(w, "slot", (unsigned)b->cold_slot);
		else
			jw_null(w, "slot");
		jw_obj_end(w);
	}
	jw_arr_end(w);
	jw_arr_begin(w, "args");
	for (unsigned i = 0; i < n; i++)
		cold_args(w, done[i]);
	jw_arr_end(w);
	jw_obj_end(w);
	return 0;
}
