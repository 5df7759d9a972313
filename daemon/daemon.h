/* SPDX-License-Identifier: BSD-3-Clause */
/* vhost-pcid internals shared by the main loop and the control socket. */
#ifndef VPD_DAEMON_H
#define VPD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "vhostpci/net21.h"
#include "vhostpci/server.h"
#include "spec.h"

/* What an epoll event is about: every registration points at one of these. */
enum vpd_watch_kind {
	VPD_W_SERVER,
	VPD_W_SIGNAL,
	VPD_W_CONTROL,
	VPD_W_CONTROL_CLIENT,
	VPD_W_RELAY,
	VPD_W_BEVM,            /* obj: a struct vpd_bevm (its QMP connection) */
	VPD_W_BDEV,            /* obj: a struct vpd_bdev (one of its fds) */
	VPD_W_PAIR21,          /* obj: a struct vpd_pair21 (its broker's epoll fd) */
	VPD_W_PAIR21_QEMU,     /* obj: a struct vpd_pair21_qemu (one QEMU peer's ivshmem server) */
	VPD_W_PAIR21_QMP,      /* obj: a struct vpd_pair21_qemu (its guest's QMP, qmp=) */
};

struct vpd_watch {
	enum vpd_watch_kind kind;
	void *obj;
};

struct vpd;

struct vpd_server {
	struct vpd *d;
	struct vpd_spec spec;
	struct vp_server *srv;
	struct vpd_watch w;
	/* backend= state (relay.c) */
	bool backend_down;             /* the last attempt failed: unreachable or refused */
	bool admission_closed;         /* new frontends refused until it answers */
	int64_t down_since_ms;
	int64_t probe_ms;              /* next look at the backend while closed */
	unsigned probe_backoff_ms, reopen_delay_ms;
	char backend_why[320];
	uint64_t refused_new;          /* frontends refused while closed */
	uint64_t stop_timeouts;        /* STOPs the backend did not ack in time */
	uint64_t packed_lost;          /* packed frontends dropped: positions lost */
	int64_t refuse_log_ms;         /* next summary line about them */
	/* backend-vm= state (bevm.c) */
	struct vpd_bevm *bevm;         /* shared by the servers naming one QMP socket */
};

#define VPD_HANDSHAKE_TIMEOUT_S 10
#define VPD_MAX_SERVERS 64        /* d->servers is this many slots, never moved */

struct vpd {
	int epfd;
	struct vpd_server *servers;    /* VPD_MAX_SERVERS slots; one whose spec.id is
					* NULL is free (a reload emptied it) */
	unsigned nservers;             /* slots in use: the last used one + 1 */
	int handshake_ms;              /* 0: no limit (passed to each vp_server) */
	struct vpd_relay *relays;      /* devices announced to backends (relay.c) */
	const char *run_dir;           /* per-device files for backend VMs (bevm.c) */
	struct vpd_bevm *bevms;        /* backend VMs (bevm.c) */
	struct vpd_bdev *bdevs;        /* devices given to them */
	struct vpd_pair21 *pairs;      /* design=2.1 specs: pair brokers (pair21.c) */
	unsigned npairs;
};

/* ---- pair21.c: 2.1 pairs (design=2.1) ---- */

struct vpd_pair21;
struct vpd_pair21_qemu;
struct jw;

/* Serve a design=2.1 spec (taken over: *spec is cleared). -errno, logged. */
int vpd_pair21_add(struct vpd *d, struct vpd_spec *spec);
/* Its broker's fd fired. A negative errno is fatal for the daemon. */
int vpd_pair21_event(struct vpd_pair21 *p);
/* Its QEMU peer's ivshmem server is readable. <0: fatal. */
int vpd_pair21_qemu_event(struct vpd_pair21_qemu *g);
/* qmp=: its guest's QMP connection is ready (never fatal). */
void vpd_pair21_qmp_event(struct vpd_pair21_qemu *g);
/* qmp=: milliseconds until the next hot-plug deadline, -1 if none;
 * vpd_pair21_tick() does what is due. */
int vpd_pair21_timeout(const struct vpd *d);
void vpd_pair21_tick(struct vpd *d);
void vpd_pair21_free_all(struct vpd *d);
/* Is a pair broker running with exactly this spec? (SIGHUP: pairs only
 * change with a restart.) */
bool vpd_pair21_running(const struct vpd *d, const struct vpd_spec *spec);
/* "pairs": [ {id, path, design, peer0, peer1, joins, refused} ] */
void vpd_pair21_render(struct jw *w, const struct vpd *d);

/* ---- relay.c: announcing devices to backend VMs (backend=PATH) ---- */

struct vpd_relay;

/* A device event of server s: announce, re-announce, stop or close. */
void vpd_relay_event(struct vpd_server *s, enum vp_event ev, const struct vp_device *dev);
/* The backend connection of r has input. */
void vpd_relay_readable(struct vpd_relay *r);
/* Milliseconds until the next relay deadline (announce, retry, grace,
 * probe), -1 if none; vpd_relay_tick() does what is due. */
int vpd_relay_timeout(const struct vpd *d);
void vpd_relay_tick(struct vpd *d);
/* A device's relay state ("settling", "connecting", "attached", "waiting",
 * "stopping", "stopped"; NULL: not relayed), the last failure (*why, may be
 * NULL) and how many of its STOPs the backend did not ack in time. */
const char *vpd_relay_describe(const struct vpd *d, uint64_t id, const char **why,
			       uint64_t *stop_timeouts);
/* Free relays that ended during the last epoll batch. */
void vpd_relay_reap(struct vpd *d);
/* Shutdown: tell every backend, close everything. */
void vpd_relay_free_all(struct vpd *d);

/* ---- bevm.c: backend VMs under stock QEMU (backend-vm=QMP_SOCKET) ---- */

struct vpd_bevm;
struct vpd_bdev;
struct jw;

/* Make the run directory and one backend VM per QMP socket named by the
 * servers, and start connecting. 0 or -errno (logged). */
int vpd_bevm_init(struct vpd *d);
/* A device event of a server with backend-vm=. */
void vpd_bevm_event(struct vpd_server *s, enum vp_event ev, const struct vp_device *dev);
/* An epoll event of a VPD_W_BEVM or VPD_W_BDEV watch. */
void vpd_bevm_watch(struct vpd *d, struct vpd_watch *w, uint32_t events);
/* Keep a QMP client's fd in d's epoll set with the events it asks for now
 * (w as the watch; *reg_fd and *reg_ev: what is registered, -1 none). Call
 * after every QMP call; a closed client (q NULL or closed) is removed. */
struct vpd_qmp;
void vpd_qmp_watch(struct vpd *d, struct vpd_qmp *q, struct vpd_watch *w, int *reg_fd,
		   uint32_t *reg_ev);
/* Milliseconds until the next deadline, -1 if none; vpd_bevm_tick() does it. */
int vpd_bevm_timeout(const struct vpd *d);
void vpd_bevm_tick(struct vpd *d);
/* Free what ended during the last epoll batch. */
void vpd_bevm_reap(struct vpd *d);
/* Shutdown: close every QMP connection and free everything. */
void vpd_bevm_free_all(struct vpd *d);
/* The "backend" object of one device / the backend-VM keys of one server,
 * for the control socket. false: the device is not the backend VM's. */
bool vpd_bevm_render_device(struct jw *w, const struct vpd *d, const struct vpd_server *s,
			    uint64_t id);
void vpd_bevm_render_server(struct jw *w, const struct vpd_server *s);

/* Cold plug (vhost-pci-ctl qemu-args): one device to put on the command
 * line of a backend VM started by hand. */
struct vpd_cold_dev {
	uint64_t id;
	int slot;                  /* PCI slot of its info function (the memory
				    * function takes slot + 1), -1: QEMU's choice */
};

#define VPD_COLD_MAX 16                /* devices per request */
#define VPD_COLD_TIMEOUT_S 120         /* default reservation */
#define VPD_COLD_TIMEOUT_MAX_S 86400

/*
 * Reserve devices of server s (n == 0: every READY device of s that is in
 * no backend VM) for a backend VM started by hand: for each, the info
 * window and an ivshmem server expecting QEMU, reserved for timeout_s
 * seconds. Writes the answer ({"server", "devices", "args"}) into w. All or
 * nothing: 0, or -errno with the reason in err (unknown device, not READY,
 * already plugged or reserved, RAM a BAR cannot be, a host backend= server).
 */
int vpd_bevm_qemu_args(struct vpd *d, struct vpd_server *s, const struct vpd_cold_dev *want,
		       unsigned n, unsigned timeout_s, struct jw *w, char *err, size_t errlen);

/* mkdir -p of the directory that will hold path (mode 0755). 0 or -errno. */
int vpd_mkdir_parents(const char *path);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t vpd_now_ms(void);

/* ---- control.c ---- */

#define VPD_CTL_LINE_MAX 256      /* bytes of one command, without '\n' */
#define VPD_CTL_MAX_CLIENTS 16
#define VPD_CTL_TIMEOUT_MS 5000   /* a client gets this long per step */

struct vpd_control;

/* Create the control socket at path (replacing a stale one), or take
 * passed_fd (>= 0: a listening socket from socket activation, whose file is
 * then never removed by us), and register it with d->epfd. Logs why on
 * failure: -EADDRINUSE (a live daemon answers), -EEXIST (not a socket), or
 * another -errno. */
int vpd_control_open(struct vpd *d, const char *path, int passed_fd, struct vpd_control **out);

/* Drop every client, close the socket and remove its file (if still ours). */
void vpd_control_close(struct vpd_control *c);

/* An epoll event for the listening socket or one client. */
void vpd_control_event(struct vpd_control *c, struct vpd_watch *w, uint32_t events);

/* Milliseconds until the earliest client deadline, -1 if none. */
int vpd_control_timeout(const struct vpd_control *c);

/* Drop clients whose deadline passed. */
void vpd_control_expire(struct vpd_control *c);

#endif
