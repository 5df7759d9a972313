/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The hostile-frontend table of issue #9, end to end (docs/threat-model.md,
 * "The hostile-frontend suite"). Every case, in its own process, starts its
 * own rig in a fresh temp dir:
 *
 *   good frontend (vp-vm --frontend --app gen) --+
 *                                                 +--> vhost-pcid --> backend VM
 *   one hostile frontend (this process) ---------+    (backend=)    (vp-vm --backend
 *                                                                     --app echo --mode irq)
 *
 * The good frontend's frames go to the backend and come back for the whole
 * case. One hostile frontend then does one row of the table. After it, the
 * daemon and the backend are alive, their fd counts are back where they were
 * before the hostile peer, the backend idles (CPU time over one second), and
 * the good frontend kept flowing: its receive ring moved during the attack
 * (read through the control socket), and its own report at the end counts
 * no corrupt frame. Rows where the backend itself goes away (4, 8) restart it
 * inside the case and check that traffic resumes by itself.
 *
 * Only the programs' command lines, the control socket, and raw sockets and
 * fds are used; the hostile peers speak the protocol through libvhostpci's
 * public client and message calls.
 *
 * Usage: test-hostile VHOST_PCID VHOST_PCI_CTL VP_VM [CASE]
 * Prints a TAP line per case; exit 0 if all passed, 77 if the one case asked
 * for was skipped (a known gap, with its reason), 1 on a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "vhostpci/client.h"
#include "vhostpci/log.h"
#include "vhostpci/proto.h"
#include "vhostpci/sock.h"

/* testutil's main() is not used: cases are forked one by one below. */
int tu_main(int argc, char **argv);
#define main tu_main
#define TESTUTIL_MAIN
#include "testutil.h"
#undef main
#include "daemon_testutil.h"

/* The sanitizers slow every program down several times. */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW 3
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW 3
#endif
#endif
#ifndef SLOW
#define SLOW 1
#endif

#define WAIT_MS (5000 * SLOW)
#define CASE_LIMIT_S (60 * SLOW)
/* Backend CPU time over one idle second: an echo of the good frontend's
 * 2000 frames/s costs a few ms; a spinning backend (row 3) cost 0.9 s. */
#define IDLE_CPU_MAX_S 0.2
#define GOOD_RATE "2000"

#define F(bit) (1ull << (bit))
#define CASE_DIR_FMT "/tmp/vp-hostile-%d"

static const char *pcid_bin, *ctl_bin, *vm_bin;
static char *skip_reason;   /* shared with main(): set by a skipped case */

#define SKIP(...)                                                              \
	do {                                                                   \
		snprintf(skip_reason, 256, __VA_ARGS__);                       \
		return;                                                        \
	} while (0)

/* ------------------------------------------------------------------------ */
/* processes */

/* Die with the process that started us: nothing outlives a killed case. */
static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
}

/* fork + exec argv, stdout/stderr appended to the given files (NULL: none). */
static pid_t spawn(char *const argv[], const char *out, const char *err)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		int o = out ? open(out, O_WRONLY | O_CREAT | O_APPEND, 0644) : null;
		int e = err ? open(err, O_WRONLY | O_CREAT | O_APPEND, 0644) : null;

		die_with_parent(parent);
		dup2(null, 0);
		dup2(o, 1);
		dup2(e, 2);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Wait up to timeout_ms for pid: its wait status, or -1 (then it is killed). */
static int reap(pid_t pid, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int st;

	if (pid <= 0)
		return -1;
	while (now_ms() < deadline) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0)
			return -1;
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static bool exited_0(int st)
{
	return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* User + system CPU seconds of pid so far; -1 if unknown. */
static double cpu_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')');
	/* Fields 3..15: state, ppid .. tpgid, flags, 4 fault counts, utime, stime. */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Lines of a file that contain what. */
static unsigned count_lines(const char *path, const char *what)
{
	FILE *f = fopen(path, "re");
	char line[2048];
	unsigned n = 0;

	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, what) != NULL;
	if (f)
		fclose(f);
	return n;
}

static void dump_tail(const char *what, const char *path)
{
	char buf[3000];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
	ssize_t n;

	if (fd < 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, end > (off_t)sizeof(buf) - 1 ?
		  end - (off_t)sizeof(buf) + 1 : 0);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	fprintf(stderr, "  --- %s (tail) ---\n%s\n", what, buf);
}

/* ------------------------------------------------------------------------ */
/* the rig: daemon, backend VM, good frontend VM */

struct rig {
	char dir[64], sock[100], ctl[100], be[100];   /* fit sun_path */
	char dlog[100], blog[100], glog[100], gout[100];
	const char *spec;          /* extra keys of the daemon's server */
	const char *dopt[4];       /* extra daemon options */
	const char *bopt[4];       /* extra backend options */
	bool late;                 /* the backend is not there when the good frontend starts */
	pid_t daemon, backend, good;
	int d_empty, b_empty;      /* fds with no frontend */
	int d_fds, b_fds;          /* with the good frontend: before the hostile peer */
};

/* One per case process; run_case() cleans it up after the case. */
static struct rig the_rig;

static bool rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	/* Named after the case's process, so main() can remove it whatever
	 * became of the case. */
	snprintf(r->dir, sizeof(r->dir), CASE_DIR_FMT, (int)getpid());
	rm_tree(r->dir);
	if (mkdir(r->dir, 0700) < 0)
		return false;
	snprintf(r->sock, sizeof(r->sock), "%s/net0.sock", r->dir);
	snprintf(r->ctl, sizeof(r->ctl), "%s/control.sock", r->dir);
	snprintf(r->be, sizeof(r->be), "%s/backend.sock", r->dir);
	snprintf(r->dlog, sizeof(r->dlog), "%s/daemon.log", r->dir);
	snprintf(r->blog, sizeof(r->blog), "%s/backend.log", r->dir);
	snprintf(r->glog, sizeof(r->glog), "%s/good.log", r->dir);
	snprintf(r->gout, sizeof(r->gout), "%s/good.json", r->dir);
	return true;
}

/* The control socket's answer to cmd, parsed; NULL on failure. */
static struct jv *ask(const struct rig *r, const char *cmd)
{
	char line[300];

	snprintf(line, sizeof(line), "%s\n", cmd);
	return ctl_ask_raw(r->ctl, line, strlen(line), WAIT_MS);
}

static bool is_socket(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool rig_daemon(struct rig *r)
{
	char spec[512];
	char *argv[16] = { (char *)pcid_bin, "--server", spec, "--control", r->ctl,
			   "--log-level", "info" };
	unsigned n = 7;
	int64_t deadline = now_ms() + WAIT_MS;

	snprintf(spec, sizeof(spec), "path=%s,id=net0,backend=%s%s%s", r->sock, r->be,
		 r->spec ? "," : "", r->spec ? r->spec : "");
	for (unsigned i = 0; i < 4 && r->dopt[i]; i++)
		argv[n++] = (char *)r->dopt[i];
	argv[n] = NULL;
	r->daemon = spawn(argv, NULL, r->dlog);
	while (r->daemon > 0 && pid_alive(r->daemon) && now_ms() < deadline) {
		struct jv *doc = ask(r, "servers");

		if (doc) {
			jv_free(doc);
			return true;
		}
		sleep_ms(10);
	}
	fprintf(stderr, "  vhost-pcid did not start\n");
	return false;
}

/* Start the backend VM (again): true once its socket is there. */
static bool rig_backend(struct rig *r)
{
	char *argv[24] = { (char *)vm_bin, "--backend", "--listen", r->be, "--app", "echo",
			   "--mode", "irq", "--quiet", "--name", "backend" };
	unsigned n = 11;
	int64_t deadline = now_ms() + WAIT_MS;

	for (unsigned i = 0; i < 4 && r->bopt[i]; i++)
		argv[n++] = (char *)r->bopt[i];
	argv[n] = NULL;
	r->backend = spawn(argv, NULL, r->blog);
	while (r->backend > 0 && pid_alive(r->backend) && now_ms() < deadline) {
		if (is_socket(r->be))
			return true;
		sleep_ms(5);
	}
	fprintf(stderr, "  the backend VM did not start\n");
	return false;
}

/* SIGTERM the backend VM: it must leave cleanly. */
static void backend_stop(struct rig *r)
{
	kill(r->backend, SIGTERM);
	CHECK(exited_0(reap(r->backend, WAIT_MS)));
	r->backend = 0;
}

static pid_t vm_frontend(const struct rig *r, const char *name, const char *out,
			 const char *err, const char *const *extra)
{
	char *argv[32] = { (char *)vm_bin, "--frontend", "--connect", (char *)r->sock,
			   "--app", "gen", "--mode", "irq", "--json", "--quiet",
			   "--connect-timeout", "30", "--name", (char *)name };
	unsigned n = 14;

	while (extra && *extra && n < 31)
		argv[n++] = (char *)*extra++;
	argv[n] = NULL;
	return spawn(argv, out, err);
}

/* The device whose frontend is process pid (0 if none). */
static uint64_t dev_of_pid(const struct rig *r, pid_t pid)
{
	struct jv *doc = ask(r, "list");
	const struct jv *devs = jv_get(doc, "devices");
	uint64_t id = 0, p;

	for (const struct jv *e = devs ? devs->child : NULL; e; e = e->next)
		if (jv_get_u64(e, "peer_pid", &p) && p == (uint64_t)pid)
			jv_get_u64(e, "id", &id);
	jv_free(doc);
	return id;
}

/* Wait for the (one) vhost-user device to be listed: its id, or 0. */
static uint64_t wait_vu_dev(const struct rig *r)
{
	int64_t deadline = now_ms() + WAIT_MS;
	uint64_t id = 0;

	while (!id && now_ms() < deadline) {
		struct jv *doc = ask(r, "list");
		const struct jv *devs = jv_get(doc, "devices");

		for (const struct jv *e = devs ? devs->child : NULL; e; e = e->next) {
			const char *dl = jv_get_str(e, "dialect");

			if (dl && !strcmp(dl, "vhost-user"))
				jv_get_u64(e, "id", &id);
		}
		jv_free(doc);
		if (!id)
			sleep_ms(10);
	}
	return id;
}

static void backend_of(const struct rig *r, uint64_t id, char *st, size_t stlen, char *why,
		       size_t whylen)
{
	ctl_backend_of(r->ctl, id, st, stlen, why, whylen, WAIT_MS);
}

static bool wait_backend(const struct rig *r, uint64_t id, const char *want)
{
	return ctl_wait_backend(r->ctl, id, want, WAIT_MS);
}

/* Poll until the backend's reason for device id has what in it. */
static bool wait_reason(const struct rig *r, uint64_t id, const char *what)
{
	int64_t deadline = now_ms() + WAIT_MS;
	char st[32], why[400];

	do {
		backend_of(r, id, st, sizeof(st), why, sizeof(why));
		if (strstr(why, what))
			return true;
		sleep_ms(20);
	} while (now_ms() < deadline);
	fprintf(stderr, "  device %" PRIu64 ": backend %s (%s), wanted a reason with '%s'\n", id,
		st, why, what);
	return false;
}

/* The used index of ring 0 (receive) of the device, as the daemon reads it
 * from the frontend's memory; -1 if it cannot be read. */
static int rx_used(const struct rig *r, uint64_t id)
{
	char cmd[64];
	struct jv *doc;
	const struct jv *rings, *live;
	uint64_t v;
	int idx = -1;

	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(r, cmd);
	rings = jv_get(jv_get(doc, "device"), "rings");
	live = rings && rings->child ? jv_get(rings->child, "live") : NULL;
	if (jv_get_u64(live, "used_idx", &v))
		idx = (int)v;
	jv_free(doc);
	return idx;
}

/* The good frontend receives: its receive ring moves within the deadline. */
static bool good_flows(const struct rig *r)
{
	int64_t deadline = now_ms() + WAIT_MS;
	uint64_t id = 0;
	int first = -1, idx = -1;

	do {
		if (!id)
			id = dev_of_pid(r, r->good);
		idx = id ? rx_used(r, id) : -1;
		if (idx < 0)
			id = 0;  /* dropped, or not there yet: it may come back */
		else if (first < 0)
			first = idx;
		else if (idx != first)
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	fprintf(stderr, "  the good frontend does not receive (device %" PRIu64 ", used %d)\n",
		id, idx);
	return false;
}

/* Poll until the daemon's and the backend's fd counts are d and b. */
static bool fds_settle(const struct rig *r, int d, int b)
{
	int64_t deadline = now_ms() + WAIT_MS;
	int dn, bn;

	do {
		dn = pid_fds(r->daemon);
		bn = pid_fds(r->backend);
		if (dn == d && bn == b)
			return true;
		sleep_ms(10);
	} while (now_ms() < deadline);
	fprintf(stderr, "  fds: daemon %d (wanted %d), backend %d (wanted %d)\n", dn, d, bn, b);
	return false;
}

/* Two equal counts 50 ms apart: nothing is opening or closing. */
static void fds_now(const struct rig *r, int *d, int *b)
{
	int64_t deadline = now_ms() + WAIT_MS;

	do {
		*d = pid_fds(r->daemon);
		*b = pid_fds(r->backend);
		sleep_ms(50);
	} while ((*d != pid_fds(r->daemon) || *b != pid_fds(r->backend)) && now_ms() < deadline);
}

static bool rig_good(struct rig *r)
{
	static const char *const opts[] = { "--rate", GOOD_RATE, "--seconds", "3600", NULL };

	r->good = vm_frontend(r, "good", r->gout, r->glog, opts);
	return r->good > 0;
}

/*
 * Daemon, backend and good frontend, traffic flowing; the fd counts before
 * any hostile peer. A late rig starts the backend only to count its fds and
 * stops it again before the good frontend comes: the case brings it back.
 */
static bool rig_up(struct rig *r)
{
	if (!rig_daemon(r) || !rig_backend(r))
		return false;
	fds_now(r, &r->d_empty, &r->b_empty);
	if (r->late) {
		backend_stop(r);
		return rig_good(r);
	}
	if (!rig_good(r) || !good_flows(r))
		return false;
	fds_now(r, &r->d_fds, &r->b_fds);
	return true;
}

/* While the hostile peer does its worst: all alive, the good frontend
 * receives, and the backend idles. */
static void check_during(const struct rig *r)
{
	double c0, c1;

	CHECK(pid_alive(r->daemon));
	CHECK(pid_alive(r->backend));
	CHECK(pid_alive(r->good));
	CHECK(good_flows(r));
	c0 = cpu_of(r->backend);
	sleep_ms(1000);
	c1 = cpu_of(r->backend);
	if (c0 < 0 || c1 < 0 || c1 - c0 > IDLE_CPU_MAX_S)
		fprintf(stderr, "  backend CPU over an idle second: %.3f s\n", c1 - c0);
	CHECK(c0 >= 0 && c1 >= 0 && c1 - c0 <= IDLE_CPU_MAX_S);
	CHECK(good_flows(r));
}

/* After the hostile peer left: fds as before it came, still flowing. */
static void check_after(const struct rig *r)
{
	CHECK(pid_alive(r->daemon));
	CHECK(pid_alive(r->backend));
	CHECK(fds_settle(r, r->d_fds, r->b_fds));
	CHECK(good_flows(r));
}

enum { LOSS_OK = 1, LINK_DOWN = 2 };

/*
 * End the good frontend and read its report: every frame it got back was
 * intact; unless LOSS_OK (the backend was killed with frames in it) none was
 * lost; LINK_DOWN: its link must have gone down at least once (the daemon
 * dropped it while no backend drove it), else never. Then the daemon and
 * the backend are back to their fds without frontends, and stop cleanly.
 */
static void rig_down(struct rig *r, unsigned how)
{
	char buf[8192], err[128];
	struct jv *rep = NULL;
	uint64_t rx = 0, corrupt = 1, lost = 1, downs = 0;
	bool ok = false;
	int fd, st;
	ssize_t n;

	kill(r->good, SIGINT);
	st = reap(r->good, WAIT_MS);
	r->good = 0;
	fd = open(r->gout, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	if (jv_parse(buf, strlen(buf), &rep, err, sizeof(err)) < 0)
		fprintf(stderr, "  no report from the good frontend: %s\n", buf);
	jv_get_u64(rep, "received", &rx);
	jv_get_u64(rep, "corrupt", &corrupt);
	jv_get_u64(rep, "lost", &lost);
	jv_get_u64(rep, "link_downs", &downs);
	jv_get_bool(rep, "ok", &ok);
	if (rx == 0 || corrupt || (!(how & LOSS_OK) && (lost || !ok)))
		fprintf(stderr, "  good frontend: %s\n", buf);
	CHECK(rx > 0);
	CHECK_EQ(corrupt, 0);
	if (!(how & LOSS_OK)) {
		CHECK(exited_0(st));
		CHECK(ok);
		CHECK_EQ(lost, 0);
	}
	if (how & LINK_DOWN)
		CHECK(downs >= 1);
	else
		CHECK_EQ(downs, 0);
	jv_free(rep);

	CHECK(fds_settle(r, r->d_empty, r->b_empty));
	kill(r->daemon, SIGTERM);
	CHECK(exited_0(reap(r->daemon, WAIT_MS)));
	r->daemon = 0;
	backend_stop(r);
}

/* The usual end of a case: checks while the hostile peer f is still there,
 * then without it, then the good frontend's report. */
static void finish(struct rig *r, struct frontend *f)
{
	check_during(r);
	fe_free(f);
	check_after(r);
	rig_down(r, 0);
}

/* Whatever a case left running is killed; the temp dir goes (kept with
 * VP_TEST_KEEP). Logs of a failed case are shown. */
static void rig_cleanup(struct rig *r, bool failed)
{
	pid_t *p[] = { &r->good, &r->backend, &r->daemon };

	for (unsigned i = 0; i < 3; i++)
		if (*p[i] > 0) {
			kill(*p[i], SIGKILL);
			waitpid(*p[i], NULL, 0);
			*p[i] = 0;
		}
	if (failed && r->dir[0]) {
		dump_tail("vhost-pcid", r->dlog);
		dump_tail("backend", r->blog);
		dump_tail("good frontend", r->glog);
	}
	if (getenv("VP_TEST_KEEP"))
		fprintf(stderr, "  kept %s\n", r->dir);
	else if (r->dir[0])
		rm_tree(r->dir);
	r->dir[0] = 0;
}

/* ------------------------------------------------------------------------ */
/* hostile frontends */

#define RX_BUFS 0x20000u      /* receive buffers, 2 KiB each */
#define TX_BUFS 0x80000u      /* frames to send, 128 bytes each */
#define FRAME_LEN (12 + 64)   /* virtio_net_hdr_v1 + a minimal Ethernet frame */

enum { RX = 0, TX = 1 };

static struct vring_desc *desc_of(struct frontend *f, unsigned ring)
{
	return (void *)(f->mem + ring_off(ring));
}

static struct vring_avail *avail_of(struct frontend *f, unsigned ring)
{
	return (void *)(f->mem + ring_off(ring) + 0x1000);
}

static struct vring_used *used_of(struct frontend *f, unsigned ring)
{
	return (void *)(f->mem + ring_off(ring) + 0x2000);
}

/* A native frontend in this process; seal = 0: memory it can still truncate. */
static bool hfe_init(struct frontend *f, int seal, uint64_t features)
{
	if (!fe_setup(f, seal, features, features))
		return false;
	for (unsigned i = 0; i < 16; i++)
		f->info.uuid[i] = (uint8_t)(0x40 + i);
	f->info.config_len = 6;
	memcpy(f->info.config, "\x52\x54\x00\x66\x66\x66", 6);
	return true;
}

#define DEF_FEATURES (F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MRG_RXBUF))

/* Give ring `ring` a kick (is_kick) or call fd of the hostile's choosing. */
static void hfe_set_fd(struct frontend *f, bool is_kick, unsigned ring, int fd)
{
	int *slot = is_kick ? &f->kick[ring] : &f->call[ring];

	close(*slot);
	*slot = fd;
	if (is_kick)
		f->info.rings[ring].kick_fd = fd;
	else
		f->info.rings[ring].call_fd = fd;
}

/* Connect through the daemon and wait for START: the device id, or 0 (the
 * reason is in vp_client_error()). */
static uint64_t hfe_connect(struct frontend *f, const char *path)
{
	if (vp_client_connect(&f->client, path, &f->info) < 0 ||
	    vp_client_wait(f->client, WAIT_MS) < 0)
		return 0;
	return vp_client_device_id(f->client);
}

static const char *hfe_error(const struct frontend *f)
{
	return f->client ? vp_client_error(f->client) : "(no client)";
}

/* Post n receive buffers; the backend's echo needs them to take frames. */
static void hfe_post_rx(struct frontend *f, unsigned n)
{
	struct vring_avail *a = avail_of(f, RX);

	for (unsigned i = 0; i < n; i++) {
		uint16_t slot = (uint16_t)(f->avail[RX] % RING_NUM);

		desc_of(f, RX)[slot] = (struct vring_desc){
			.addr = MEM_GPA + RX_BUFS + slot * 2048u, .len = 2048,
			.flags = VRING_DESC_F_WRITE,
		};
		a->ring[slot] = slot;
		f->avail[RX]++;
	}
	__atomic_store_n(&a->idx, f->avail[RX], __ATOMIC_RELEASE);
}

/* Post n frames to send (a header of zeros and a broadcast frame) and kick. */
static void hfe_send(struct frontend *f, unsigned n)
{
	struct vring_avail *a = avail_of(f, TX);
	uint64_t one = 1;

	for (unsigned i = 0; i < n; i++) {
		uint16_t slot = (uint16_t)(f->avail[TX] % RING_NUM);
		uint8_t *p = f->mem + TX_BUFS + slot * 128u;

		memset(p, 0, FRAME_LEN);
		memset(p + 12, 0xff, 6);
		memcpy(p + 18, "\x52\x54\x00\x66\x66\x66\x88\xb5", 8);
		p[12 + 20] = (uint8_t)slot;
		desc_of(f, TX)[slot] = (struct vring_desc){
			.addr = MEM_GPA + TX_BUFS + slot * 128u, .len = FRAME_LEN,
		};
		a->ring[slot] = slot;
		f->avail[TX]++;
	}
	__atomic_store_n(&a->idx, f->avail[TX], __ATOMIC_RELEASE);
	if (write(f->kick[TX], &one, 8) != 8)
		fprintf(stderr, "  kick: %s\n", strerror(errno));
}

/* Wait until the backend has used n chains of the ring. */
static bool hfe_wait_used(struct frontend *f, unsigned ring, uint16_t n)
{
	int64_t deadline = now_ms() + WAIT_MS;
	uint16_t u;

	do {
		u = __atomic_load_n(&used_of(f, ring)->idx, __ATOMIC_ACQUIRE);
		if (u == n)
			return true;
		sleep_ms(5);
	} while (now_ms() < deadline);
	fprintf(stderr, "  ring %u: %u used, wanted %u\n", ring, u, n);
	return false;
}

/* A blocking pipe with a full buffer: [0] read end, [1] write end. */
static bool full_pipe(int p[2])
{
	char junk[4096] = { 0 };

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return false;
	while (write(p[1], junk, sizeof(junk)) > 0)
		;
	return fcntl(p[1], F_SETFL, 0) == 0 && fcntl(p[0], F_SETFL, 0) == 0;
}

/* ---- raw vhost-user, as QEMU speaks it ---- */

/* The next message from the server (1), or <= 0 (closed, timeout). */
static int vu_recv(int fd, struct vp_msg *m)
{
	int64_t deadline = now_ms() + WAIT_MS;
	struct vp_rx rx;
	int e = 0;

	vp_rx_init(&rx);
	while (now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		poll(&p, 1, 50);
		e = vp_sock_recv(fd, &rx, m);
		if (e != 0 && e != -EAGAIN)
			break;
	}
	vp_rx_reset(&rx);
	if (e == 1)
		vp_msg_close_fds(m);
	return e;
}

/* What QEMU sends first, with REPLY_ACK so refusals come back as acks. */
static bool vu_hello(int fd)
{
	struct vp_msg m;

	return vu_raw_send(fd, VP_VU_GET_FEATURES, 0, 0, -1) == 0 && vu_recv(fd, &m) == 1 &&
	       vu_raw_send(fd, VP_VU_SET_OWNER, 0, 0, -1) == 0 &&
	       vu_raw_send(fd, VP_VU_SET_PROTOCOL_FEATURES, 0, F(VP_VU_PROTOCOL_F_REPLY_ACK), -1) == 0 &&
	       vu_raw_send(fd, VP_VU_SET_FEATURES, 0, DEF_FEATURES | F(VP_VU_F_PROTOCOL_FEATURES),
		       -1) == 0;
}

static int vu_mem(int fd, const struct frontend *f, int memfd, uint32_t flags)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_VU_SET_MEM_TABLE, flags);
	m.p.mem.nregions = 1;
	m.p.mem.regions[0] = (struct vp_mem_region_wire){ MEM_GPA, MEM_SIZE,
		(uint64_t)(uintptr_t)f->mem, 0 };
	m.fds[0] = memfd;
	m.nfds = 1;
	return vp_sock_send(fd, &m);
}

static int vu_ring(int fd, const struct frontend *f, uint32_t i)
{
	struct vp_msg m;

	vu_raw_state(fd, VP_VU_SET_VRING_NUM, i, RING_NUM);
	vu_raw_state(fd, VP_VU_SET_VRING_BASE, i, 0);
	vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
	m.p.addr.index = i;
	m.p.addr.desc = (uint64_t)(uintptr_t)f->mem + ring_off(i);
	m.p.addr.avail = m.p.addr.desc + 0x1000;
	m.p.addr.used = m.p.addr.desc + 0x2000;
	return vp_sock_send(fd, &m);
}

/* The ack of the last message sent with NEED_REPLY: its u64 (0 = taken), or
 * -1 if none came. */
static int64_t vu_ack(int fd, uint32_t req)
{
	struct vp_msg m;

	if (vu_recv(fd, &m) != 1 || m.request != req)
		return -1;
	return (int64_t)m.p.u64;
}

/*
 * A vhost-user frontend whose message req (ring 0's kick or call, or the
 * memory table) carries bad_fd: the server must answer a non-zero ack and
 * close the connection.
 */
static void vu_refused(const struct rig *r, struct frontend *f, uint32_t req, int bad_fd)
{
	int fd = unix_connect(r->sock);
	int64_t ack;

	REQUIRE(fd >= 0);
	CHECK(vu_hello(fd));
	if (req == VP_VU_SET_MEM_TABLE) {
		vu_mem(fd, f, bad_fd, VP_MSG_NEED_REPLY);
	} else {
		vu_mem(fd, f, f->memfd, VP_MSG_NEED_REPLY);
		CHECK_EQ(vu_ack(fd, VP_VU_SET_MEM_TABLE), 0);
		vu_ring(fd, f, 0);
		vu_raw_send(fd, req, VP_MSG_NEED_REPLY, 0, bad_fd);
	}
	ack = vu_ack(fd, req);
	if (ack <= 0)
		fprintf(stderr, "  vhost-user %s: ack %" PRId64 ", wanted a refusal\n",
			vp_msg_name(req), ack);
	CHECK(ack > 0);
	CHECK(closed_by_peer(fd, WAIT_MS));
	close(fd);
}

/* ======================================================================== */
/* the table, row by row */

/* Row 1: a call fd the backend cannot write must not block it. */
TEST(row1_call_eventfd_at_max_never_blocks_backend)
{
	struct rig *r = &the_rig;
	struct frontend f;
	uint64_t v = 0xfffffffffffffffeull, id;
	int efd;

	REQUIRE(rig_init(r) && rig_up(r));
	REQUIRE(hfe_init(&f, 1, DEF_FEATURES));
	/* Blocking, one below the maximum: any write of 1 would block. */
	efd = eventfd(0, EFD_CLOEXEC);
	REQUIRE(efd >= 0 && write(efd, &v, 8) == 8);
	hfe_set_fd(&f, false, RX, dup(efd));
	hfe_set_fd(&f, false, TX, efd);
	hfe_post_rx(&f, 16);
	id = hfe_connect(&f, r->sock);
	REQUIRE(id);
	CHECK(wait_backend(r, id, "attached"));
	/* The echo takes each frame and sends it back: two interrupts each way
	 * that cannot be delivered, round after round. */
	for (unsigned round = 1; round <= 3; round++) {
		if (round > 1)
			hfe_post_rx(&f, 16);
		hfe_send(&f, 16);
		CHECK(hfe_wait_used(&f, TX, (uint16_t)(16 * round)));
		CHECK(hfe_wait_used(&f, RX, (uint16_t)(16 * round)));
	}
	CHECK_EQ(used_of(&f, RX)->ring[0].len, FRAME_LEN);
	CHECK(!memcmp(f.mem + RX_BUFS + 12, f.mem + TX_BUFS + 12, FRAME_LEN - 12));
	check_during(r);
	/* Nothing got through to the counter, and nothing waited on it. */
	v = 0;
	{
		struct pollfd p = { .fd = f.call[TX], .events = POLLIN };

		CHECK(poll(&p, 1, 0) == 1 && read(f.call[TX], &v, 8) == 8 &&
		      v == 0xfffffffffffffffeull);
	}
	fe_free(&f);
	check_after(r);
	rig_down(r, 0);
}

/* Row 1, the other way to block a backend: the frontend clears O_NONBLOCK
 * on the call eventfd it shares with the backend, then fills it. That link
 * breaks with the reason; the backend never waits. */
TEST(row1_call_fd_made_blocking_breaks_only_that_link)
{
	struct rig *r = &the_rig;
	struct frontend f;
	uint64_t v = 0xfffffffffffffffeull, id;

	REQUIRE(rig_init(r) && rig_up(r));
	REQUIRE(hfe_init(&f, 1, DEF_FEATURES));
	hfe_post_rx(&f, 32);
	id = hfe_connect(&f, r->sock);
	REQUIRE(id);
	CHECK(wait_backend(r, id, "attached"));
	hfe_send(&f, 8);
	CHECK(hfe_wait_used(&f, RX, 8));
	/* Fill one to the brim while it is still non-blocking (the backend may
	 * signal it meanwhile), then undo the O_NONBLOCK the backend set. */
	for (int i = 0; i < 100; i++) {
		uint64_t junk;

		if (read(f.call[TX], &junk, 8) < 0 && errno != EAGAIN)
			break;
		if (write(f.call[TX], &v, 8) == 8)
			break;
	}
	CHECK(fcntl(f.call[TX], F_SETFL, 0) == 0 && fcntl(f.call[RX], F_SETFL, 0) == 0);
	hfe_send(&f, 8);
	CHECK(wait_reason(r, id, "frontend cleared O_NONBLOCK on its call eventfd"));
	finish(r, &f);
}

/*
 * Rows 1 and 3: a pipe as ring 1's call fd (full, blocking) or kick fd
 * (readable for ever: what made the backend spin) is refused in both
 * dialects, with the reason. The refused native peer stays connected
 * through the idle second: the old backend spun only while it was.
 */
static void pipe_refused(bool is_kick)
{
	struct rig *r = &the_rig;
	struct frontend f;
	char want[64];
	int p[2], bad;

	REQUIRE(rig_init(r) && rig_up(r));
	REQUIRE(hfe_init(&f, 1, DEF_FEATURES));
	if (is_kick)
		REQUIRE(pipe2(p, O_CLOEXEC) == 0 && write(p[1], "x", 1) == 1);
	else
		REQUIRE(full_pipe(p));
	bad = is_kick ? p[0] : p[1];
	hfe_set_fd(&f, is_kick, TX, bad);
	CHECK(hfe_connect(&f, r->sock) == 0);
	snprintf(want, sizeof(want), "%s fd of ring 1 is a pipe, not an eventfd",
		 is_kick ? "kick" : "call");
	CHECK(strstr(hfe_error(&f), want) != NULL);
	vu_refused(r, &f, is_kick ? VP_VU_SET_VRING_KICK : VP_VU_SET_VRING_CALL, bad);
	close(is_kick ? p[1] : p[0]);
	finish(r, &f);
}

TEST(row1_call_pipe_refused)
{
	pipe_refused(false);
}

/* Row 2: memory that can shrink is refused, and the frontend is told. */
TEST(row2_unsealed_memory_refused_both_dialects)
{
	struct rig *r = &the_rig;
	struct frontend f;
	char path[] = "/tmp/vp-hostile-file-XXXXXX";
	int file;
	unsigned announced;

	REQUIRE(rig_init(r) && rig_up(r));
	announced = count_lines(r->blog, "frontend connected");
	REQUIRE(hfe_init(&f, 0, DEF_FEATURES));
	CHECK(hfe_connect(&f, r->sock) == 0);
	CHECK(strstr(hfe_error(&f), "can shrink under the backend") != NULL);
	vp_client_free(f.client);
	f.client = NULL;
	vu_refused(r, &f, VP_VU_SET_MEM_TABLE, f.memfd);
	/* A plain file can shrink too. */
	file = mkstemp(path);
	REQUIRE(file >= 0 && ftruncate(file, MEM_SIZE) == 0);
	unlink(path);
	vu_refused(r, &f, VP_VU_SET_MEM_TABLE, file);
	close(file);
	CHECK(count_lines(r->dlog, "can shrink under the backend") >= 3);
	check_during(r);
	/* Refused at the daemon: the backend never saw any of it. */
	CHECK_EQ(count_lines(r->blog, "frontend connected"), announced);
	fe_free(&f);
	check_after(r);
	rig_down(r, 0);
}

/*
 * Row 2, opted in (allow-unsealed): the hostile frontend truncates its
 * memory while the backend drives it. Only that link may break.
 */
TEST(row2_opted_in_memory_truncated_breaks_one_link)
{
	struct rig *r = &the_rig;
	struct frontend f;
	siginfo_t si = { 0 };
	uint64_t id, one = 1;
	int64_t deadline;

	REQUIRE(rig_init(r));
	r->spec = "allow-unsealed=on";
	r->bopt[0] = "--allow-unsealed";
	REQUIRE(rig_up(r));
	REQUIRE(hfe_init(&f, 0, DEF_FEATURES));
	hfe_post_rx(&f, 16);
	id = hfe_connect(&f, r->sock);
	REQUIRE(id);
	CHECK(wait_backend(r, id, "attached"));
	hfe_send(&f, 8);
	CHECK(hfe_wait_used(&f, TX, 8));
	/* Pull the memory from under the backend, then make it look. */
	munmap(f.mem, MEM_SIZE);
	f.mem = NULL;
	CHECK(ftruncate(f.memfd, 0) == 0);
	CHECK(write(f.kick[TX], &one, 8) == 8);
	CHECK(write(f.kick[RX], &one, 8) == 8);
	deadline = now_ms() + 1000 * SLOW;
	while (pid_alive(r->backend) && now_ms() < deadline)
		sleep_ms(10);
	if (!pid_alive(r->backend)) {
		bool bus = waitid(P_PID, (id_t)r->backend, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
			   ((si.si_code != CLD_EXITED && si.si_status == SIGBUS) ||
			    count_lines(r->blog, "BUS") > 0);

		CHECK(bus);  /* any other death is a plain failure */
		CHECK(pid_alive(r->daemon));
		fe_free(&f);
		rig_cleanup(r, tu_failed_checks);
		if (bus)
			SKIP("known gap (#9): the backend dies of SIGBUS when opted-in unsealed "
			     "memory is truncated; SIGBUS recovery is not implemented");
		return;
	}
	/* Survived: then only that link is broken, and the daemon shows why. */
	deadline = now_ms() + WAIT_MS;
	{
		char st[32] = "", why[400] = "";

		while (now_ms() < deadline) {
			backend_of(r, id, st, sizeof(st), why, sizeof(why));
			if (strcmp(st, "attached"))
				break;
			sleep_ms(20);
		}
		CHECK(strcmp(st, "attached") != 0);
	}
	finish(r, &f);
}

TEST(row3_kick_pipe_refused)
{
	pipe_refused(true);
}

/* Row 3: an eventfd kick that never empties (EFD_SEMAPHORE with a huge
 * count) passes every fd check; the backend must break that link, not spin. */
TEST(row3_sticky_kick_eventfd_does_not_spin)
{
	struct rig *r = &the_rig;
	struct frontend f;
	uint64_t id, v = 1ull << 40;
	int efd;

	REQUIRE(rig_init(r) && rig_up(r));
	REQUIRE(hfe_init(&f, 1, DEF_FEATURES));
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	REQUIRE(efd >= 0 && write(efd, &v, 8) == 8);
	hfe_set_fd(&f, true, TX, efd);
	id = hfe_connect(&f, r->sock);
	REQUIRE(id);
	/* The backend breaks the link and says why; the daemon retries. */
	CHECK(wait_reason(r, id, "kick eventfd stays readable after draining"));
	finish(r, &f);
}

/* Row 4: the backend is killed and restarted: every READY device is offered
 * to the new one, from where its rings got to, and traffic resumes. */
TEST(row4_backend_restart_gets_ready_devices)
{
	struct rig *r = &the_rig;
	struct frontend f;
	uint64_t id, good;

	REQUIRE(rig_init(r));
	r->spec = "backend-grace=30";   /* this row is about re-offering, not grace */
	REQUIRE(rig_up(r));
	REQUIRE(hfe_init(&f, 1, DEF_FEATURES));
	hfe_post_rx(&f, 32);
	id = hfe_connect(&f, r->sock);
	REQUIRE(id);
	CHECK(wait_backend(r, id, "attached"));
	hfe_send(&f, 8);
	CHECK(hfe_wait_used(&f, TX, 8));
	good = dev_of_pid(r, r->good);

	kill(r->backend, SIGKILL);
	reap(r->backend, WAIT_MS);
	r->backend = 0;
	CHECK(wait_backend(r, good, "waiting"));
	CHECK(wait_backend(r, id, "waiting"));
	REQUIRE(rig_backend(r));
	CHECK(wait_backend(r, good, "attached"));
	CHECK(wait_backend(r, id, "attached"));
	/* The same devices, driven by the new backend: nobody reconnected. */
	CHECK_EQ(dev_of_pid(r, r->good), good);
	CHECK(good_flows(r));
	hfe_send(&f, 8);
	CHECK(hfe_wait_used(&f, TX, 16));
	CHECK(hfe_wait_used(&f, RX, 16));
	vp_client_dispatch(f.client);
	CHECK_EQ(vp_client_state(f.client), VP_CLIENT_STARTED);
	check_during(r);
	fe_free(&f);
	check_after(r);
	rig_down(r, LOSS_OK);
}

/* Row 5: more frontends than the backend has links: the excess is refused
 * visibly (vhost-pci-ctl list says why), and picked up when a link frees. */
TEST(row5_excess_frontends_refused_visibly_then_picked_up)
{
	struct rig *r = &the_rig;
	struct frontend f[4];
	uint64_t id[4];
	char st[32], why[400], out[8192];

	REQUIRE(rig_init(r));
	r->bopt[0] = "--max-links";
	r->bopt[1] = "3";
	r->spec = "backend-grace=30";
	REQUIRE(rig_up(r));
	/* The good frontend has link 1; f[0], f[1] take 2 and 3. */
	for (unsigned i = 0; i < 4; i++) {
		REQUIRE(hfe_init(&f[i], 1, DEF_FEATURES));
		f[i].info.uuid[15] = (uint8_t)i;
		hfe_post_rx(&f[i], 8);
		id[i] = hfe_connect(&f[i], r->sock);
		REQUIRE(id[i]);
		if (i < 2)
			CHECK(wait_backend(r, id[i], "attached"));
	}
	for (unsigned i = 2; i < 4; i++) {
		CHECK(wait_reason(r, id[i], "refused: backend full: 3 of 3 links in use"));
		backend_of(r, id[i], st, sizeof(st), why, sizeof(why));
		CHECK_STR(st, "waiting");
	}
	/* What an operator sees. */
	{
		char *argv[] = { (char *)ctl_bin, "--control", r->ctl, "list", NULL };
		char path[160];
		int fd;
		ssize_t n;

		snprintf(path, sizeof(path), "%.63s/list.txt", r->dir);
		CHECK(exited_0(reap(spawn(argv, path, NULL), WAIT_MS)));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, out, sizeof(out) - 1) : -1;
		if (fd >= 0)
			close(fd);
		out[n > 0 ? n : 0] = 0;
		CHECK(strstr(out, "backend full") != NULL);
		if (!strstr(out, "backend full"))
			fprintf(stderr, "  vhost-pci-ctl list:\n%s", out);
	}
	/* Their frontends are still connected, waiting. */
	for (unsigned i = 2; i < 4; i++) {
		vp_client_dispatch(f[i].client);
		CHECK_EQ(vp_client_state(f[i].client), VP_CLIENT_STARTED);
	}
	/* Links free up: the waiting devices are driven, one per link. */
	fe_free(&f[0]);
	fe_free(&f[1]);
	CHECK(wait_backend(r, id[2], "attached"));
	CHECK(wait_backend(r, id[3], "attached"));
	for (unsigned i = 2; i < 4; i++) {
		hfe_send(&f[i], 4);
		CHECK(hfe_wait_used(&f[i], RX, 4));
	}
	check_during(r);
	fe_free(&f[2]);
	fe_free(&f[3]);
	check_after(r);
	rig_down(r, 0);
}

/* Row 6: peers that never finish the handshake (silent, one GET_FEATURES,
 * trickling, half a native handshake) are dropped by the deadline, and the
 * slots they held take a real frontend again. */
TEST(row6_silent_and_trickling_peers_dropped_by_deadline)
{
	struct rig *r = &the_rig;
	struct frontend h, g;
	struct vp_msg m;
	int s[4], open_n = 5;
	bool closed[5] = { false };
	int64_t t0, took[5] = { 0 }, next_trickle;

	REQUIRE(rig_init(r));
	r->spec = "connections=6";
	r->dopt[0] = "--handshake-timeout";
	r->dopt[1] = "1";
	REQUIRE(rig_up(r));
	REQUIRE(hfe_init(&h, 1, DEF_FEATURES) && hfe_init(&g, 1, DEF_FEATURES));
	t0 = now_ms();
	for (unsigned i = 0; i < 4; i++) {
		s[i] = unix_connect(r->sock);
		REQUIRE(s[i] >= 0);
	}
	/* s[0] says nothing; s[1] one GET_FEATURES, then nothing; s[2] one
	 * message every 200 ms; s[3] QEMU's start without SET_OWNER. */
	CHECK(vu_raw_send(s[1], VP_VU_GET_FEATURES, 0, 0, -1) == 0 && vu_recv(s[1], &m) == 1);
	CHECK(vu_raw_send(s[2], VP_VU_GET_FEATURES, 0, 0, -1) == 0);
	CHECK(vu_raw_send(s[3], VP_VU_GET_FEATURES, 0, 0, -1) == 0 && vu_recv(s[3], &m) == 1);
	CHECK(vu_raw_send(s[3], VP_VU_SET_FEATURES, 0, DEF_FEATURES, -1) == 0);
	CHECK(vu_mem(s[3], &h, h.memfd, 0) == 0);
	/* h: a native HELLO, then no answers. */
	CHECK(vp_client_connect(&h.client, r->sock, &h.info) == 0);
	/* Six of six slots: a real frontend is turned away now. */
	CHECK(hfe_connect(&g, r->sock) == 0);
	vp_client_free(g.client);
	g.client = NULL;
	next_trickle = now_ms() + 200;
	while (open_n && now_ms() - t0 < 4000 * SLOW) {
		struct pollfd p[5];

		for (unsigned i = 0; i < 5; i++)
			p[i] = (struct pollfd){ closed[i] ? -1 : i < 4 ? s[i] :
						vp_client_fd(h.client), POLLIN, 0 };
		poll(p, 5, 20);
		for (unsigned i = 0; i < 5; i++) {
			char b[512];
			ssize_t n;

			if (closed[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = recv(p[i].fd, b, sizeof(b), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				closed[i] = true;
				took[i] = now_ms() - t0;
				open_n--;
			}
		}
		if (!closed[2] && now_ms() >= next_trickle) {
			vu_raw_send(s[2], VP_VU_GET_FEATURES, 0, 0, -1);
			next_trickle += 200;
		}
	}
	for (unsigned i = 0; i < 5; i++) {
		if (!closed[i] || took[i] < 800)
			fprintf(stderr, "  peer %u: %s after %" PRId64 " ms\n", i,
				closed[i] ? "dropped" : "still open", took[i]);
		CHECK(closed[i] && took[i] >= 800);
	}
	/* The slots are free again. */
	uint64_t id = hfe_connect(&g, r->sock);

	CHECK(id != 0);
	if (id)
		CHECK(wait_backend(r, id, "attached"));
	check_during(r);
	for (unsigned i = 0; i < 4; i++)
		close(s[i]);
	fe_free(&h);
	fe_free(&g);
	check_after(r);
	rig_down(r, 0);
}

/* Row 7: a connect loop past the connection limit: refused, and logged a
 * bounded number of times, not once per attempt. */
TEST(row7_connect_flood_logs_bounded)
{
	struct rig *r = &the_rig;
	int fill[2], last;
	unsigned before, lines;

	REQUIRE(rig_init(r));
	r->spec = "connections=3";
	r->dopt[0] = "--handshake-timeout";
	r->dopt[1] = "60";
	REQUIRE(rig_up(r));
	for (unsigned i = 0; i < 2; i++) {
		fill[i] = unix_connect(r->sock);
		REQUIRE(fill[i] >= 0);
	}
	before = count_lines(r->dlog, "refus");
	for (unsigned i = 0; i < 500; i++) {
		int fd = unix_connect(r->sock);

		if (fd >= 0)
			close(fd);
	}
	/* Connections are taken in order: once this one is refused, every
	 * attempt before it was handled. */
	last = unix_connect(r->sock);
	CHECK(last >= 0 && closed_by_peer(last, WAIT_MS));
	if (last >= 0)
		close(last);
	lines = count_lines(r->dlog, "refus") - before;
	if (lines < 1 || lines > 3)
		fprintf(stderr, "  %u log lines for 501 refused connections\n", lines);
	CHECK(lines >= 1 && lines <= 3);
	check_during(r);
	close(fill[0]);
	close(fill[1]);
	check_after(r);
	rig_down(r, 0);
}

/* Poll the log at path until a line has what in it. */
static bool wait_log(const char *path, const char *what)
{
	int64_t deadline = now_ms() + WAIT_MS;

	while (!count_lines(path, what)) {
		if (now_ms() > deadline) {
			fprintf(stderr, "  no '%s' in %s\n", what, path);
			return false;
		}
		sleep_ms(20);
	}
	return true;
}

/*
 * Row 8, the end of each case: past backend-grace the daemon dropped the
 * good frontend's undriven device (so its link went down); a backend that
 * takes the device comes (back), and the frontend's own reconnect brings
 * the traffic back. recount: the fds to come back to are counted now (the
 * case had no backend before).
 */
static void row8_link_down_then_back(struct rig *r, bool recount)
{
	CHECK(wait_log(r->dlog, "no backend attached within 1 s"));
	CHECK(pid_alive(r->good) && pid_alive(r->daemon));
	if (r->backend)
		backend_stop(r);
	r->bopt[0] = NULL;
	REQUIRE(rig_backend(r));
	CHECK(good_flows(r));
	if (recount)
		fds_now(r, &r->d_fds, &r->b_fds);
	check_during(r);
	check_after(r);
	rig_down(r, LOSS_OK | LINK_DOWN);
}

/* Row 8: the backend dies. Past backend-grace the good frontend's link goes
 * down (the daemon drops its connection, as QEMU needs to see it), new
 * frontends are refused with the reason, and when the backend is back the
 * frontend's own reconnect brings traffic back. */
TEST(row8_backend_dead_link_down_then_resumes)
{
	struct rig *r = &the_rig;
	uint64_t good;
	int64_t deadline;

	REQUIRE(rig_init(r));
	r->spec = "backend-grace=1";
	REQUIRE(rig_up(r));
	good = dev_of_pid(r, r->good);
	kill(r->backend, SIGKILL);
	reap(r->backend, WAIT_MS);
	r->backend = 0;
	deadline = now_ms() + WAIT_MS;
	while (dev_of_pid(r, r->good) == good && now_ms() < deadline)
		sleep_ms(20);
	CHECK(dev_of_pid(r, r->good) != good);
	CHECK(wait_log(r->dlog, "refusing new frontends"));
	row8_link_down_then_back(r, false);
}

/* Row 8: the backend is not there when the device becomes READY. */
TEST(row8_backend_late_link_down_then_resumes)
{
	struct rig *r = &the_rig;

	REQUIRE(rig_init(r));
	r->spec = "backend-grace=1";
	r->late = true;
	REQUIRE(rig_up(r));
	row8_link_down_then_back(r, true);
}

/* Row 8: the backend refuses the device (here: features it was told not to
 * take); the daemon shows why, the link goes down, and a backend that takes
 * it brings traffic back. */
TEST(row8_backend_refusing_link_down_then_resumes)
{
	struct rig *r = &the_rig;
	int64_t deadline;
	uint64_t id = 0;

	REQUIRE(rig_init(r));
	r->spec = "backend-grace=1";
	r->bopt[0] = "--features";
	r->bopt[1] = "csum";
	REQUIRE(rig_daemon(r) && rig_backend(r));
	fds_now(r, &r->d_empty, &r->b_empty);
	REQUIRE(rig_good(r));
	deadline = now_ms() + WAIT_MS;
	while (!(id = dev_of_pid(r, r->good)) && now_ms() < deadline)
		sleep_ms(10);
	CHECK(id && wait_reason(r, id, "refused: frontend driver uses features"));
	CHECK(pid_alive(r->backend));
	row8_link_down_then_back(r, true);
}

/* The features device id negotiated, from "show" (0 if none). */
static uint64_t dev_features(const struct rig *r, uint64_t id)
{
	char cmd[64];
	struct jv *doc;
	uint64_t feat = 0;

	snprintf(cmd, sizeof(cmd), "show %" PRIu64, id);
	doc = ask(r, cmd);
	jv_get_hex(jv_get(doc, "device"), "driver_features", &feat);
	jv_free(doc);
	return feat;
}

/* A gen frontend's JSON report: whether it says ok, and how many frames came back. */
static bool gen_report(const char *out, uint64_t *rx)
{
	char buf[8192], err[128];
	struct jv *doc = NULL;
	bool ok = false;
	ssize_t n;
	int fd;

	*rx = 0;
	fd = open(out, O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	if (jv_parse(buf, strlen(buf), &doc, err, sizeof(err)) < 0)
		fprintf(stderr, "  no report in %s: %s\n", out, buf);
	jv_get_u64(doc, "received", rx);
	jv_get_bool(doc, "ok", &ok);
	jv_free(doc);
	return ok;
}

/* Row 9: frontends that negotiate CSUM / GUEST_CSUM (a stock QEMU guest's
 * 0x170008003) are served. */
TEST(row9_csum_guest_csum_accepted)
{
	static const char *const opts[] = {
		"--features", "csum,guest_csum,mrg_rxbuf,event_idx,indirect_desc",
		"--count", "2000", "--rate", "20000", NULL };
	struct rig *r = &the_rig;
	struct frontend f;
	char out[160];
	uint64_t id, feat = 0, rx = 0;
	bool seen = false;
	pid_t gen;
	int vu;

	REQUIRE(rig_init(r));
	r->spec = "features=0x170008003";
	REQUIRE(rig_up(r));
	/* A second VM through the daemon, checksum offloads on. */
	snprintf(out, sizeof(out), "%.63s/csum.json", r->dir);
	gen = vm_frontend(r, "csum", out, r->glog, opts);
	REQUIRE(gen > 0);
	for (int64_t t = now_ms(); !seen && pid_alive(gen) && now_ms() - t < WAIT_MS; sleep_ms(5)) {
		id = dev_of_pid(r, gen);
		feat = id ? dev_features(r, id) : 0;
		seen = (feat & F(VIRTIO_NET_F_CSUM)) && (feat & F(VIRTIO_NET_F_GUEST_CSUM));
	}
	CHECK(seen);
	CHECK(exited_0(reap(gen, WAIT_MS * 2)));
	CHECK(gen_report(out, &rx));
	CHECK_EQ(rx, 2000);
	/* A QEMU guest's vhost-user device with the same features. */
	REQUIRE(hfe_init(&f, 1, 0x170008003ull));
	vu = vp_vu_frontend_start(r->sock, &f.info, &feat, WAIT_MS);
	CHECK(vu >= 0);
	CHECK((feat & 3) == 3);
	id = wait_vu_dev(r);
	CHECK(id != 0);
	if (id)
		CHECK(wait_backend(r, id, "attached"));
	CHECK_EQ(count_lines(r->blog, "does not support"), 0);
	check_during(r);
	if (vu >= 0)
		close(vu);
	fe_free(&f);
	check_after(r);
	rig_down(r, 0);
}

/*
 * Row 11: packed rings through the relay (features= offers them): a vp-vm
 * frontend on packed rings, stock vhost-user and native (1.1), gets every frame
 * back from the backend vp-vm, beside the good (split) one.
 */
TEST(row11_packed_frames_both_ways_both_dialects)
{
	static const char *const vu[] = { "--vhost-user", "--features",
		"ring_packed,mrg_rxbuf,event_idx,indirect_desc", "--count", "2000", "--rate",
		"20000", NULL };
	struct rig *r = &the_rig;
	char out[160];
	uint64_t rx, id;

	REQUIRE(rig_init(r));
	r->spec = "features=0x570008000";
	REQUIRE(rig_up(r));
	for (unsigned k = 0; k < 2; k++) {
		pid_t gen;
		bool seen = false;

		snprintf(out, sizeof(out), "%.63s/packed%u.json", r->dir, k);
		gen = vm_frontend(r, k ? "packed-native" : "packed-vu", out, r->glog, vu + k);
		REQUIRE(gen > 0);
		for (int64_t t = now_ms(); !seen && pid_alive(gen) && now_ms() - t < WAIT_MS;
		     sleep_ms(5)) {
			id = dev_of_pid(r, gen);
			seen = id && (dev_features(r, id) & F(VIRTIO_F_RING_PACKED));
		}
		CHECK(seen);
		CHECK(exited_0(reap(gen, WAIT_MS * 2)));
		CHECK(gen_report(out, &rx));
		CHECK_EQ(rx, 2000);
	}
	CHECK_EQ(count_lines(r->dlog, "packed rings stopped is lost"), 0);
	check_during(r);
	check_after(r);
	rig_down(r, 0);
}

/*
 * Row 11: the backend dies under a packed frontend. Where its rings stopped
 * died with it (no index in memory): that frontend is dropped with the reason
 * (it reconnects and starts afresh), never resumed at a guess; the split one
 * keeps its device and resumes on the new backend.
 */
TEST(row11_packed_backend_killed_drops_only_packed_frontend)
{
	static const char *const vu[] = { "--vhost-user", "--features",
		"ring_packed,mrg_rxbuf,event_idx,indirect_desc", "--rate", "20000", "--seconds",
		"3600", NULL };
	struct rig *r = &the_rig;
	char out[160];
	uint64_t pk = 0, good, rx = 0;
	pid_t gen;

	REQUIRE(rig_init(r));
	r->spec = "features=0x570008000,backend-grace=30";
	REQUIRE(rig_up(r));
	snprintf(out, sizeof(out), "%.63s/packed.json", r->dir);
	gen = vm_frontend(r, "packed", out, r->glog, vu);
	REQUIRE(gen > 0);
	for (int64_t t = now_ms(); !pk && now_ms() - t < WAIT_MS; sleep_ms(5))
		pk = dev_of_pid(r, gen);
	REQUIRE(pk);
	CHECK(wait_backend(r, pk, "attached"));
	good = dev_of_pid(r, r->good);

	kill(r->backend, SIGKILL);
	reap(r->backend, WAIT_MS);
	r->backend = 0;
	CHECK(wait_backend(r, good, "waiting"));
	CHECK(wait_log(r->dlog, "where its packed rings stopped is lost"));
	CHECK(dev_of_pid(r, gen) != pk);  /* dropped: its device is gone */
	REQUIRE(rig_backend(r));
	CHECK(wait_backend(r, good, "attached"));
	CHECK_EQ(dev_of_pid(r, r->good), good);
	/* The packed frontend came back as a new device, served afresh. */
	for (int64_t t = now_ms(); now_ms() - t < WAIT_MS; sleep_ms(10)) {
		uint64_t id = dev_of_pid(r, gen);

		if (id && id != pk && wait_backend(r, id, "attached"))
			break;
	}
	CHECK(dev_of_pid(r, gen) != 0 && dev_of_pid(r, gen) != pk);
	sleep_ms(300);
	kill(gen, SIGINT);
	reap(gen, WAIT_MS);
	gen_report(out, &rx);
	CHECK(rx > 0);
	check_during(r);
	check_after(r);
	rig_down(r, LOSS_OK);
}

/* Row 10: QEMU's start (which replaces a call fd right after the rings
 * started) and a guest driver reset: one backend connection in all. */
TEST(row10_one_ready_one_backend_connection)
{
	struct rig *r = &the_rig;
	struct frontend f;
	struct vp_msg m;
	unsigned before;
	uint64_t id;
	int fd, call2;

	REQUIRE(rig_init(r) && rig_up(r));
	before = count_lines(r->blog, "frontend connected");
	CHECK_EQ(before, 1);
	REQUIRE(hfe_init(&f, 1, DEF_FEATURES));
	fd = unix_connect(r->sock);
	REQUIRE(fd >= 0);
	/* QEMU at DRIVER_OK, no PROTOCOL_FEATURES: rings start enabled. */
	CHECK(vu_raw_send(fd, VP_VU_GET_FEATURES, 0, 0, -1) == 0 && vu_recv(fd, &m) == 1);
	vu_raw_send(fd, VP_VU_SET_OWNER, 0, 0, -1);
	vu_raw_send(fd, VP_VU_SET_FEATURES, 0, DEF_FEATURES, -1);
	vu_mem(fd, &f, f.memfd, 0);
	for (uint32_t i = 0; i < 2; i++) {
		vu_ring(fd, &f, i);
		vu_raw_send(fd, VP_VU_SET_VRING_KICK, 0, i, f.kick[i]);
		vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, i, f.call[i]);
	}
	call2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, 0, call2);
	id = wait_vu_dev(r);
	REQUIRE(id);
	CHECK(wait_backend(r, id, "attached"));
	/* The guest's driver resets the device and starts it again. */
	for (uint32_t i = 0; i < 2; i++) {
		vu_raw_state(fd, VP_VU_GET_VRING_BASE, i, 0);
		CHECK(vu_recv(fd, &m) == 1 && m.request == VP_VU_GET_VRING_BASE);
	}
	CHECK(wait_backend(r, id, "stopped"));
	for (uint32_t i = 0; i < 2; i++) {
		vu_ring(fd, &f, i);
		vu_raw_send(fd, VP_VU_SET_VRING_KICK, 0, i, f.kick[i]);
		vu_raw_send(fd, VP_VU_SET_VRING_CALL, 0, i, f.call[i]);
	}
	CHECK(wait_backend(r, id, "attached"));
	/* A second of quiet: no late second connection either. */
	check_during(r);
	CHECK_EQ(count_lines(r->blog, "frontend connected"), before + 1);
	CHECK_EQ(count_lines(r->blog, "roken pipe"), 0);
	close(fd);
	close(call2);
	fe_free(&f);
	check_after(r);
	CHECK_EQ(count_lines(r->blog, "frontend connected"), before + 1);
	rig_down(r, 0);
}

/* ------------------------------------------------------------------------ */

/* One case in a child process: 0 passed, 1 failed, 77 skipped. */
static int run_case(const struct tu_case *c)
{
	pid_t parent = getpid(), pid;
	int64_t deadline;
	int st;

	skip_reason[0] = 0;
	pid = fork();
	if (pid == 0) {
		die_with_parent(parent);
		alarm(CASE_LIMIT_S);
		c->fn();
		rig_cleanup(&the_rig, tu_failed_checks);
		if (tu_failed_checks)
			_exit(1);
		if (skip_reason[0])
			_exit(77);
		_exit(0);
	}
	if (pid < 0)
		return 1;
	deadline = now_ms() + (CASE_LIMIT_S + 10) * 1000;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			fprintf(stderr, "  %s: no end after %d s, killed\n", c->name, CASE_LIMIT_S);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		sleep_ms(20);
	}
	if (WIFSIGNALED(st)) {
		char dir[64];

		/* It could not clean up after itself. */
		fprintf(stderr, "  %s: killed by signal %d\n", c->name, WTERMSIG(st));
		snprintf(dir, sizeof(dir), CASE_DIR_FMT, (int)pid);
		if (!getenv("VP_TEST_KEEP"))
			rm_tree(dir);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
	unsigned pass = 0, fail = 0, skip = 0, n = 0;
	const char *only = argc > 4 ? argv[4] : NULL;

	if (argc < 4) {
		fprintf(stderr, "usage: %s VHOST_PCID VHOST_PCI_CTL VP_VM [CASE]\n", argv[0]);
		return 2;
	}
	pcid_bin = argv[1];
	ctl_bin = argv[2];
	vm_bin = argv[3];
	if (access(pcid_bin, X_OK) || access(ctl_bin, X_OK) || access(vm_bin, X_OK)) {
		fprintf(stderr, "%s: cannot run %s, %s or %s\n", argv[0], pcid_bin, ctl_bin,
			vm_bin);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	vp_log_set_level(VP_LOG_ERR);
	setvbuf(stdout, NULL, _IOLBF, 0);
	skip_reason = mmap(NULL, 256, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (skip_reason == MAP_FAILED)
		return 1;
	for (unsigned i = 0; i < tu_ncases; i++) {
		int64_t t0 = now_ms();
		int e;

		if (only && strcmp(tu_cases[i].name, only))
			continue;
		e = run_case(&tu_cases[i]);
		n++;
		if (e == 0)
			pass++;
		else if (e == 77)
			skip++;
		else
			fail++;
		printf("%s %u - %s (%.1f s)%s%s\n", e == 0 || e == 77 ? "ok" : "not ok", n,
		       tu_cases[i].name, (double)(now_ms() - t0) / 1000.0,
		       e == 77 ? " # SKIP " : "", e == 77 ? skip_reason : "");
	}
	if (only && !n) {
		fprintf(stderr, "%s: no case named %s\n", argv[0], only);
		return 2;
	}
	printf("# %u cases: %u passed, %u failed, %u skipped\n", n, pass, fail, skip);
	return fail ? 1 : only && skip ? 77 : 0;
}
