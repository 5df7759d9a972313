/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid's 2.1 pairs (design=2.1, docs/vhost-pcid.md): one pair broker
 * (vp_pair21, include/vhostpci/net21.h) per such spec, driven by the
 * daemon's loop. The daemon allocates the window (sealed memfds) and holds
 * both halves, so neither peer ever holds a writable fd of the other's
 * section: the permissions of docs/window21.md 5 hold both ways.
 *
 * With qemu=SOCK, peer 0 is a QEMU guest (docs/window21.md 9), and with
 * qemu1=SOCK1 as well peer 1 is another: the daemon takes each such half
 * itself (vp_pair21_join_local()) and serves it on an ivshmem server at its
 * socket: the guest's ivshmem-doorbell gets our section as
 * BAR2, IVPosition 0, its two eventfds as vectors and the other peer's as
 * the virtual peer 1 (Fig. 4's wiring, symmetric); its two read-only
 * ivshmem-plain functions open the header and the other's section through
 * /proc/<our pid>/fd (shown by vhost-pci-ctl pairs), with readonly=on.
 *
 * Security model: a connecting peer is handled by vp_pair21 (one JOIN per
 * connection, ERROR otherwise, never blocks); QEMU's ivshmem connection by
 * vpd_ivshmem (one-way, whatever arrives is discarded); here nothing a peer
 * sends is read.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "daemon.h"
#include "ivshmem.h"
#include "json.h"
#include "qmp.h"

#define QEMU_VECTORS 2  /* vector 0: frames for you (RX), 1: your slots freed (TX) */
#define QEMU_PEERS 2    /* qemu= (peer 0) and qemu1= (peer 1) */

/* Hot-plug (qmp=): the slot's life in the guest. */
enum hp_state {
	HP_NONE,       /* not in the guest */
	HP_PLUGGING,   /* query-pci, then the QMP commands of plug_step() in turn */
	HP_PLUGGED,
	HP_UNPLUGGING, /* device_del of function 0 sent, waiting for DEVICE_DELETED */
};

enum hp_step {
	HP_QUERY,      /* query-pci: pick a free slot on bus 0 */
	HP_OBJ_HDR,    /* object-add memory-backend-file readonly=on: the header */
	HP_OBJ_OTHER,  /* the same: the other's section */
	HP_DEV1,       /* device_add ivshmem-plain at S.1 (no event yet: no function 0) */
	HP_DEV2,       /* ... at S.2 */
	HP_CHR,        /* chardev-add: a socket to our ivshmem server */
	HP_DEV0,       /* device_add ivshmem-doorbell at S.0: the guest is told now */
	HP_NSTEPS,
};

#define HP_RETRY_MS 1000       /* QMP not there (yet): try again */
#define HP_REPLUG_MS 5000      /* a plug failed: try again (in another slot) */
#define HP_GRACE_MS 1000       /* the other peer gone this long: unplug */
#define HP_CMD_MS 5000         /* one QMP command */
#define HP_HANDSHAKE_MS 5000

/* One QEMU guest's half, held here for the pair's life. */
struct vpd_pair21_qemu {
	struct vpd_pair21 *pair;  /* set again wherever the pairs array moves */
	const char *sock;         /* the spec's qemu= or qemu1= */
	struct vpd_ivshmem *ivs;
	struct vpd_watch w;
	struct vp_net21_fds qf;
	bool connected;
	/* qmp=: hot-plug */
	const char *qmp_path;
	struct vpd_qmp *q;
	struct vpd_watch qw;
	int reg_fd;               /* the QMP fd in our epoll set, -1 */
	uint32_t reg_ev;
	enum hp_state hs;
	unsigned gen;             /* in the QEMU ids: a plug never meets an old one's leftovers */
	unsigned slot;
	bool made[HP_NSTEPS];     /* what QEMU has of this generation */
	bool deleted[3];          /* DEVICE_DELETED seen, by function */
	int64_t retry_ms;         /* next QMP connect or plug attempt, 0: now */
	int64_t absent_ms;        /* since when the other peer is gone, 0: it is there */
	int64_t deadline_ms;      /* the unplug gives up, 0: none */
	uint64_t plugs, unplugs, plug_failures;
	char why[256];            /* the last hot-plug failure */
};

struct vpd_pair21 {
	struct vpd *d;
	struct vpd_spec spec;
	struct vp_pair21 *b;
	struct vpd_watch w;
	struct vpd_pair21_qemu q[QEMU_PEERS];
	unsigned nq;              /* QEMU peers: 0, 1 (peer 0) or 2 (both) */
};

/* The guest's ivshmem-doorbell, for the next QEMU that connects. */
static int qemu_expect(struct vpd_pair21_qemu *g)
{
	const int own[QEMU_VECTORS] = { g->qf.rx_fd, g->qf.tx_fd };
	const int peer[QEMU_VECTORS] = { g->qf.peer_rx_fd, g->qf.peer_tx_fd };
	struct vpd_ivshmem_client c = {
		.id = (uint16_t)g->qf.peer, .shm_fd = g->qf.my_fd, .nvectors = QEMU_VECTORS,
		.own_fds = own, .peer_id = (uint16_t)(1 - g->qf.peer), .peer_fds = peer,
	};

	return vpd_ivshmem_expect(g->ivs, &c);
}

static void hp_sync(struct vpd_pair21_qemu *g);

/* Take the next free half (peer 0 first) for the QEMU guest at g->sock. */
static int qemu_add(struct vpd_pair21 *p, struct vpd_pair21_qemu *g)
{
	int e = vp_pair21_join_local(p->b, &g->qf);

	if (!e)
		e = vpd_ivshmem_create(g->sock, &g->ivs);
	if (!e)
		e = qemu_expect(g);
	if (e < 0)
		vp_log(VP_LOG_ERR, "pair %s: cannot serve its QEMU peer on %s: %s", p->spec.id,
		       g->sock, strerror(-e));
	else
		vp_log(VP_LOG_INFO, "pair %s: peer %u is a QEMU guest (ivshmem server %s)",
		       p->spec.id, g->qf.peer, g->sock);
	return e;
}

static int watch(struct vpd *d, void *obj, struct vpd_watch *w, enum vpd_watch_kind kind,
		 int fd, int op)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	w->kind = kind;
	w->obj = obj;
	if (epoll_ctl(d->epfd, op, fd, &ev) < 0) {
		int e = -errno;

		vp_log(VP_LOG_ERR, "pair: epoll: %s", strerror(-e));
		return e;
	}
	return 0;
}

int vpd_pair21_add(struct vpd *d, struct vpd_spec *spec)
{
	struct vpd_pair21 *p, *np;
	int e;

	np = realloc(d->pairs, (d->npairs + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	d->pairs = np;
	p = &d->pairs[d->npairs];
	memset(p, 0, sizeof(*p));
	for (unsigned i = 0; i < QEMU_PEERS; i++)
		p->q[i].qf = (struct vp_net21_fds){ .header_fd = -1, .my_fd = -1, .peer_fd = -1,
						    .rx_fd = -1, .tx_fd = -1, .peer_rx_fd = -1,
						    .peer_tx_fd = -1 };
	p->d = d;
	p->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	d->npairs++;
	e = vpd_mkdir_parents(p->spec.path);
	if (!e)
		e = vp_pair21_new(&p->b, p->spec.path, NULL);
	if (e < 0) {
		vp_log(VP_LOG_ERR, "pair %s: cannot serve %s: %s", p->spec.id, p->spec.path,
		       strerror(-e));
		p->b = NULL;
		return e;
	}
	if (chmod(p->spec.path, p->spec.mode) < 0 ||
	    (p->spec.have_uid && p->spec.uid != geteuid() &&
	     chown(p->spec.path, p->spec.uid, (gid_t)-1) < 0)) {
		e = -errno;
		vp_log(VP_LOG_ERR, "pair %s: cannot set the owner or mode of %s: %s", p->spec.id,
		       p->spec.path, strerror(-e));
		return e;
	}
	/* qemu= before qemu1= (the spec's check): the guests take halves 0 and 1. */
	for (unsigned i = 0; i < QEMU_PEERS && p->spec.qemu[i]; i++) {
		p->q[i].sock = p->spec.qemu[i];
		p->q[i].qmp_path = p->spec.qmp[i];
		p->q[i].reg_fd = -1;
		p->nq = i + 1;
		e = qemu_add(p, &p->q[i]);
		if (e < 0)
			return e;
	}
	/* The watches point into d->pairs, which the next add may move: every
	 * registration is made again from the array's current place. */
	for (unsigned i = 0; i < d->npairs; i++) {
		struct vpd_pair21 *q = &d->pairs[i];
		int op = i + 1 == d->npairs ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;

		if (!q->b)
			continue;
		e = watch(d, q, &q->w, VPD_W_PAIR21, vp_pair21_fd(q->b), op);
		for (unsigned g = 0; !e && g < q->nq; g++) {
			q->q[g].pair = q;
			if (q->q[g].ivs)
				e = watch(d, &q->q[g], &q->q[g].w, VPD_W_PAIR21_QEMU,
					  vpd_ivshmem_fd(q->q[g].ivs), op);
		}
		if (e < 0)
			return e;
	}
	for (unsigned g = 0; g < p->nq; g++)
		hp_sync(&p->q[g]);  /* qmp=: connect (or plan to) */
	return 0;
}

int vpd_pair21_event(struct vpd_pair21 *p)
{
	int e = vp_pair21_control(p->b);

	if (e < 0)
		vp_log(VP_LOG_ERR, "pair %s failed: %s", p->spec.id, strerror(-e));
	for (unsigned g = 0; g < p->nq; g++)
		hp_sync(&p->q[g]);  /* the other peer may have come or gone */
	return e;
}

/* ---- hot-plug (qmp=): the slot goes into the running guest while the other
 * peer is there, and out when it leaves (docs/vhost-pcid.md, qmp=) ----
 *
 * QEMU is a peer: its replies only move this state machine, a bad or late one
 * fails the plug (logged, tried again in another slot) and nothing else. */

static void hp_watch(struct vpd_pair21_qemu *g)
{
	g->qw.kind = VPD_W_PAIR21_QMP;
	g->qw.obj = g;
	vpd_qmp_watch(g->pair->d, g->q, &g->qw, &g->reg_fd, &g->reg_ev);
}

static void hp_id(const struct vpd_pair21_qemu *g, const char *what, char *out, size_t len)
{
	snprintf(out, len, "vp21-%s-p%u-g%u-%s", g->pair->spec.id, g->qf.peer, g->gen, what);
}

struct hp_cmd {
	struct vpd_pair21_qemu *g;
	enum hp_step step;
	unsigned gen;
};

static void hp_reply(void *opaque, const struct vpd_qmp_reply *r);

static int hp_send(struct vpd_pair21_qemu *g, enum hp_step step, const char *name, json_t *args)
{
	struct hp_cmd *c = malloc(sizeof(*c));
	int64_t id;

	if (!c) {
		json_decref(args);
		return -ENOMEM;
	}
	*c = (struct hp_cmd){ g, step, g->gen };
	id = vpd_qmp_command(g->q, name, args, HP_CMD_MS, vpd_now_ms(), hp_reply, c);
	if (id < 0) {
		free(c);
		return (int)id;
	}
	return 0;
}

/* A removal nobody waits on (its failure changes nothing). */
static void hp_forget(struct vpd_pair21_qemu *g, const char *cmd, const char *what)
{
	char id[96];

	hp_id(g, what, id, sizeof(id));
	if (g->q)
		vpd_qmp_command(g->q, cmd, json_pack("{s:s}", "id", id), HP_CMD_MS, vpd_now_ms(),
				NULL, NULL);
}

static int plug_step(struct vpd_pair21_qemu *g, enum hp_step step)
{
	char id[96], dep[96], addr[16];
	struct stat st;

	switch (step) {
	case HP_QUERY:
		return hp_send(g, step, "query-pci", NULL);
	case HP_OBJ_HDR:
	case HP_OBJ_OTHER: {
		int fd = step == HP_OBJ_HDR ? g->qf.header_fd : g->qf.peer_fd;
		char path[64];

		if (fstat(fd, &st) < 0)
			return -errno;
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), fd);
		hp_id(g, step == HP_OBJ_HDR ? "hdr" : "other", id, sizeof(id));
		return hp_send(g, step, "object-add",
			       json_pack("{s:s, s:s, s:s, s:I, s:b, s:b}", "qom-type",
					 "memory-backend-file", "id", id, "mem-path", path, "size",
					 (json_int_t)st.st_size, "share", 1, "readonly", 1));
	}
	case HP_DEV1:
	case HP_DEV2:
		hp_id(g, step == HP_DEV1 ? "f1" : "f2", id, sizeof(id));
		hp_id(g, step == HP_DEV1 ? "hdr" : "other", dep, sizeof(dep));
		snprintf(addr, sizeof(addr), "0x%x.%d", g->slot, step == HP_DEV1 ? 1 : 2);
		return hp_send(g, step, "device_add",
			       json_pack("{s:s, s:s, s:s, s:s}", "driver", "ivshmem-plain", "id", id,
					 "memdev", dep, "addr", addr));
	case HP_CHR:
		hp_id(g, "chr", id, sizeof(id));
		return hp_send(g, step, "chardev-add",
			       json_pack("{s:s, s:{s:s, s:{s:{s:s, s:{s:s}}, s:b}}}", "id", id,
					 "backend", "type", "socket", "data", "addr", "type", "unix",
					 "data", "path", g->sock, "server", 0));
	case HP_DEV0:
		hp_id(g, "f0", id, sizeof(id));
		hp_id(g, "chr", dep, sizeof(dep));
		snprintf(addr, sizeof(addr), "0x%x.0", g->slot);
		return hp_send(g, step, "device_add",
			       json_pack("{s:s, s:s, s:s, s:i, s:s, s:b}", "driver",
					 "ivshmem-doorbell", "id", id, "chardev", dep, "vectors",
					 QEMU_VECTORS, "addr", addr, "multifunction", 1));
	case HP_NSTEPS:
		break;
	}
	return -EINVAL;
}

/* The lowest slot of bus 0 with no function in query-pci's answer, 0 if none. */
static unsigned free_slot(json_t *ret)
{
	bool used[32] = { true };  /* slot 0: the host bridge */
	size_t i, j;
	json_t *bus, *dev;

	json_array_foreach(ret, i, bus) {
		if (json_integer_value(json_object_get(bus, "bus")) != 0)
			continue;
		json_array_foreach(json_object_get(bus, "devices"), j, dev)
			used[json_integer_value(json_object_get(dev, "slot")) & 31] = true;
	}
	for (unsigned s = 1; s < 32; s++)
		if (!used[s])
			return s;
	return 0;
}

/* Remove whatever this generation made; the next plug uses new names. */
static void hp_teardown(struct vpd_pair21_qemu *g)
{
	static const char *const dev[] = { "f0", "f1", "f2" };
	static const enum hp_step dev_step[] = { HP_DEV0, HP_DEV1, HP_DEV2 };

	for (unsigned f = 0; f < 3; f++)
		if (g->made[dev_step[f]] && !g->deleted[f])
			hp_forget(g, "device_del", dev[f]);
	if (g->made[HP_CHR])
		hp_forget(g, "chardev-remove", "chr");
	if (g->made[HP_OBJ_HDR])
		hp_forget(g, "object-del", "hdr");
	if (g->made[HP_OBJ_OTHER])
		hp_forget(g, "object-del", "other");
	memset(g->made, 0, sizeof(g->made));
	memset(g->deleted, 0, sizeof(g->deleted));
	g->gen++;
	g->hs = HP_NONE;
	g->deadline_ms = 0;
}

static void hp_failed(struct vpd_pair21_qemu *g, const char *why)
{
	snprintf(g->why, sizeof(g->why), "%.*s", (int)sizeof(g->why) - 1, why); /* cut, not an error */
	g->plug_failures++;
	vp_log(VP_LOG_WARN, "pair %s: cannot plug peer %u's slot into %s: %s (again in %d s)",
	       g->pair->spec.id, g->qf.peer, g->qmp_path, why, HP_REPLUG_MS / 1000);
	hp_teardown(g);
	g->retry_ms = vpd_now_ms() + HP_REPLUG_MS;
}

static void hp_unplug(struct vpd_pair21_qemu *g, const char *why)
{
	char id[96];

	hp_id(g, "f0", id, sizeof(id));
	vp_log(VP_LOG_INFO, "pair %s: unplugging peer %u's slot 0x%x from %s: %s",
	       g->pair->spec.id, g->qf.peer, g->slot, g->qmp_path, why);
	g->hs = HP_UNPLUGGING;
	g->deadline_ms = vpd_now_ms() + (int64_t)g->pair->spec.unplug_timeout_ms;
	/* Function 0's eject takes the slot: every function goes (DEVICE_DELETED each). */
	if (hp_send(g, HP_DEV0, "device_del", json_pack("{s:s}", "id", id)) < 0)
		hp_teardown(g);
}

/* Every function of the slot went: their backends go too. */
static void hp_unplugged(struct vpd_pair21_qemu *g)
{
	vp_log(VP_LOG_INFO, "pair %s: peer %u's slot 0x%x left %s", g->pair->spec.id, g->qf.peer,
	       g->slot, g->qmp_path);
	g->unplugs++;
	g->deleted[0] = g->deleted[1] = g->deleted[2] = true;
	hp_teardown(g);
}

static void hp_reply(void *opaque, const struct vpd_qmp_reply *r)
{
	struct hp_cmd *c = opaque;
	struct vpd_pair21_qemu *g = c->g;
	enum hp_step step = c->step;
	bool stale = c->gen != g->gen;
	char why[400];

	free(c);
	if (r->status == -ECANCELED || r->status == -ECONNRESET || stale)
		return;  /* hp_lost() or shutdown, or an older generation's answer */
	if (g->hs == HP_UNPLUGGING) {
		/* device_del: DeviceNotFound means it went already. */
		if (r->status == -EREMOTEIO && !strcmp(r->err_class, "DeviceNotFound"))
			hp_unplugged(g);
		else if (r->status)
			vp_log(VP_LOG_WARN, "pair %s: device_del of peer %u's slot: %s",
			       g->pair->spec.id, g->qf.peer,
			       r->status == -EREMOTEIO ? r->err_desc : strerror(-r->status));
		return;  /* otherwise the events, or the unplug timeout, decide */
	}
	if (g->hs != HP_PLUGGING)
		return;
	if (r->status) {
		if (r->status == -EREMOTEIO)
			snprintf(why, sizeof(why), "%s: %s: %s", r->command, r->err_class,
				 r->err_desc);
		else
			snprintf(why, sizeof(why), "%s: %s", r->command, strerror(-r->status));
		hp_failed(g, why);
		return;
	}
	if (step == HP_QUERY) {
		g->slot = free_slot(r->ret);
		if (!g->slot) {
			hp_failed(g, "no free slot on the guest's PCI bus 0");
			return;
		}
	}
	g->made[step] = true;
	if (step == HP_DEV0) {
		g->hs = HP_PLUGGED;
		g->plugs++;
		g->why[0] = '\0';
		vp_log(VP_LOG_INFO, "pair %s: peer %u's slot plugged into %s at 00:%02x (.0 doorbell, "
		       ".1 header, .2 the other's section)", g->pair->spec.id, g->qf.peer,
		       g->qmp_path, g->slot);
		hp_sync(g);  /* the other may have left meanwhile */
		return;
	}
	if (plug_step(g, (enum hp_step)(step + 1)) < 0)
		hp_failed(g, "cannot send the next QMP command");
}

static void hp_event(void *opaque, const char *event, json_t *data)
{
	static const char *const dev[] = { "f0", "f1", "f2" };
	struct vpd_pair21_qemu *g = opaque;
	json_t *dv = data ? json_object_get(data, "device") : NULL;
	char id[96];
	bool all = true, ours = false;

	if (strcmp(event, "DEVICE_DELETED") || !json_is_string(dv) || g->hs == HP_NONE)
		return;
	for (unsigned f = 0; f < 3; f++) {
		hp_id(g, dev[f], id, sizeof(id));
		if (!strcmp(json_string_value(dv), id))
			ours = g->deleted[f] = true;
		all = all && g->deleted[f];
	}
	if (!ours)
		return;
	if (g->hs != HP_UNPLUGGING) {
		/* The guest ejected it itself (or someone at the monitor did). */
		vp_log(VP_LOG_WARN, "pair %s: peer %u's guest removed %s by itself", g->pair->spec.id,
		       g->qf.peer, json_string_value(dv));
		snprintf(g->why, sizeof(g->why), "the guest removed %s", json_string_value(dv));
		hp_unplug(g, g->why);
		return;
	}
	if (all)
		hp_unplugged(g);
}

/* QMP went (QEMU exited or restarted): the slot went with it. */
static void hp_lost(struct vpd_pair21_qemu *g, const char *why)
{
	struct vpd_qmp *q = g->q;

	if (g->hs != HP_NONE)
		vp_log(VP_LOG_INFO, "pair %s: QMP of peer %u's guest %s closed: %s", g->pair->spec.id,
		       g->qf.peer, g->qmp_path, why);
	g->q = NULL;
	hp_watch(g);
	vpd_qmp_close(q);  /* the replies see a new generation */
	memset(g->made, 0, sizeof(g->made));
	g->gen++;
	g->hs = HP_NONE;
	g->deadline_ms = 0;
	g->retry_ms = vpd_now_ms() + HP_RETRY_MS;
}

/* Bring the guest's slot in line with the other peer's presence. */
static void hp_sync(struct vpd_pair21_qemu *g)
{
	int64_t now = vpd_now_ms();
	bool want;

	if (!g->qmp_path)
		return;
	if (!g->q) {
		if (now < g->retry_ms)
			return;
		if (vpd_qmp_connect(g->qmp_path, HP_HANDSHAKE_MS, now, &g->q) < 0) {
			g->q = NULL;
			g->retry_ms = now + HP_RETRY_MS;
			return;
		}
		vpd_qmp_set_event_cb(g->q, hp_event, g);
		hp_watch(g);
	}
	if (vpd_qmp_state(g->q) != VPD_QMP_READY)
		return;
	want = vp_pair21_joined(g->pair->b, 1 - g->qf.peer);
	g->absent_ms = want ? 0 : g->absent_ms ? g->absent_ms : now;
	if (want && g->hs == HP_NONE && now >= g->retry_ms) {
		g->hs = HP_PLUGGING;
		if (plug_step(g, HP_QUERY) < 0)
			hp_failed(g, "cannot send query-pci");
	} else if (!want && g->hs == HP_PLUGGED && now - g->absent_ms >= HP_GRACE_MS) {
		hp_unplug(g, "the other peer left");
	} else if (g->hs == HP_UNPLUGGING && g->deadline_ms && now >= g->deadline_ms) {
		vp_log(VP_LOG_WARN, "pair %s: peer %u's guest did not release slot 0x%x within %u ms:"
		       " given up (its functions may stay)", g->pair->spec.id, g->qf.peer, g->slot,
		       g->pair->spec.unplug_timeout_ms);
		snprintf(g->why, sizeof(g->why), "the guest did not release slot 0x%x", g->slot);
		hp_teardown(g);
	}
	hp_watch(g);  /* commands queued above need POLLOUT */
}

void vpd_pair21_qmp_event(struct vpd_pair21_qemu *g)
{
	if (g->q && vpd_qmp_dispatch(g->q, vpd_now_ms()) == VPD_QMP_CLOSED)
		hp_lost(g, vpd_qmp_error(g->q));
	else
		hp_watch(g);
	hp_sync(g);
	hp_watch(g);
}

static void earliest(int64_t *best, int64_t t)
{
	if (t > 0 && (*best < 0 || t < *best))
		*best = t;
}

int vpd_pair21_timeout(const struct vpd *d)
{
	int64_t best = -1, now = vpd_now_ms();

	for (unsigned i = 0; i < d->npairs; i++) {
		for (unsigned k = 0; k < d->pairs[i].nq; k++) {
			const struct vpd_pair21_qemu *g = &d->pairs[i].q[k];

			if (!g->qmp_path)
				continue;
			/* A retry time in the past was acted on (hp_sync()): not a
			 * deadline, or the loop would spin. */
			if ((!g->q || g->hs == HP_NONE) && g->retry_ms > now)
				earliest(&best, g->retry_ms);
			if (g->q)
				earliest(&best, vpd_qmp_deadline(g->q));
			if (g->absent_ms && g->hs == HP_PLUGGED)
				earliest(&best, g->absent_ms + HP_GRACE_MS);
			earliest(&best, g->deadline_ms);
		}
	}
	if (best < 0)
		return -1;
	return best <= now ? 0 : (int)(best - now > 60000 ? 60000 : best - now);
}

void vpd_pair21_tick(struct vpd *d)
{
	int64_t now = vpd_now_ms();

	for (unsigned i = 0; i < d->npairs; i++) {
		for (unsigned k = 0; k < d->pairs[i].nq; k++) {
			struct vpd_pair21_qemu *g = &d->pairs[i].q[k];

			if (!g->qmp_path)
				continue;
			if (g->q && vpd_qmp_deadline(g->q) >= 0 && now >= vpd_qmp_deadline(g->q)) {
				vpd_pair21_qmp_event(g);
				continue;
			}
			hp_sync(g);
		}
	}
}

int vpd_pair21_qemu_event(struct vpd_pair21_qemu *g)
{
	struct vpd_pair21 *p = g->pair;
	int r = vpd_ivshmem_dispatch(g->ivs);

	if (r < 0) {
		vp_log(VP_LOG_ERR, "pair %s: ivshmem server %s failed: %s", p->spec.id, g->sock,
		       strerror(-r));
		return r;
	}
	if (r & VPD_IVSHMEM_CONNECTED) {
		g->connected = true;
		vp_log(VP_LOG_INFO, "pair %s: QEMU connected for peer %u", p->spec.id, g->qf.peer);
	}
	if (r & VPD_IVSHMEM_GONE) {
		/* The guest's QEMU went (shut down, restarted): its section stays
		 * ours, for the next QEMU that comes. */
		g->connected = false;
		vp_log(VP_LOG_INFO, "pair %s: QEMU of peer %u left: %s", p->spec.id, g->qf.peer,
		       vpd_ivshmem_reason(g->ivs));
		vpd_ivshmem_drop(g->ivs);
		r = qemu_expect(g);
		if (r < 0)
			vp_log(VP_LOG_ERR, "pair %s: cannot wait for another QEMU: %s", p->spec.id,
			       strerror(-r));
	}
	return 0;
}

bool vpd_pair21_running(const struct vpd *d, const struct vpd_spec *spec)
{
	for (unsigned i = 0; i < d->npairs; i++)
		if (vpd_spec_equal(&d->pairs[i].spec, spec))
			return true;
	return false;
}

/* Shutdown: the pair ends, so a plugged slot is asked to go (device_del,
 * sent within HP_FLUSH_MS; its objects stay with QEMU until it exits). */
#define HP_FLUSH_MS 500
static void hp_close(struct vpd_pair21_qemu *g)
{
	int64_t end = vpd_now_ms() + HP_FLUSH_MS;

	if (!g->q)
		return;
	if (g->hs == HP_PLUGGED)
		hp_unplug(g, "the pair ends");
	while (vpd_qmp_state(g->q) != VPD_QMP_CLOSED &&
	       (vpd_qmp_poll_events(g->q) & POLLOUT) && vpd_now_ms() < end) {
		struct pollfd pf = { .fd = vpd_qmp_fd(g->q), .events = POLLOUT };

		if (poll(&pf, 1, (int)(end - vpd_now_ms())) <= 0)
			break;
		vpd_qmp_dispatch(g->q, vpd_now_ms());
	}
	g->gen++;  /* the replies (cancelled) belong to no one */
	g->reg_fd = -1;  /* closed with the client */
	vpd_qmp_close(g->q);
	g->q = NULL;
}

void vpd_pair21_free_all(struct vpd *d)
{
	for (unsigned i = 0; i < d->npairs; i++) {
		struct vpd_pair21 *p = &d->pairs[i];

		for (unsigned g = 0; g < p->nq; g++) {
			hp_close(&p->q[g]);
			if (p->q[g].ivs) {
				epoll_ctl(d->epfd, EPOLL_CTL_DEL, vpd_ivshmem_fd(p->q[g].ivs),
					  NULL);
				vpd_ivshmem_destroy(p->q[g].ivs);
			}
			vp_net21_fds_close(&p->q[g].qf);
		}
		if (p->b) {
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, vp_pair21_fd(p->b), NULL);
			vp_pair21_free(p->b);  /* unlinks the socket */
		}
		vpd_spec_free(&p->spec);
	}
	free(d->pairs);
	d->pairs = NULL;
	d->npairs = 0;
}

/* What a QEMU command line needs (docs/vhost-pcid.md, design=2.1 qemu=):
 * "qemu" for qemu= (peer 0), "qemu1" for qemu1= (peer 1). */
static void render_qemu(struct jw *w, const char *key, const struct vpd_pair21_qemu *g)
{
	char path[64];
	struct stat st;

	jw_obj_begin(w, key);
	jw_u64(w, "peer", g->qf.peer);
	jw_str(w, "ivshmem", g->sock);
	jw_bool(w, "connected", g->connected);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), g->qf.header_fd);
	jw_str(w, "header", path);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), g->qf.peer_fd);
	jw_str(w, "other_section", path);
	/* The guest's own section goes to QEMU over the ivshmem socket; its
	 * path is shown for inspection (and tests without QEMU). */
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), g->qf.my_fd);
	jw_str(w, "section", path);
	jw_u64(w, "section_size", fstat(g->qf.peer_fd, &st) == 0 ? (uint64_t)st.st_size : 0);
	if (g->qmp_path) {
		static const char *const hs[] = { "none", "plugging", "plugged", "unplugging" };

		jw_str(w, "qmp", g->qmp_path);
		jw_bool(w, "qmp_connected", g->q && vpd_qmp_state(g->q) == VPD_QMP_READY);
		jw_str(w, "slot_state", hs[g->hs]);
		snprintf(path, sizeof(path), "00:%02x", g->slot);
		jw_str(w, "slot", g->hs == HP_NONE ? "" : path);
		jw_u64(w, "plugs", g->plugs);
		jw_u64(w, "unplugs", g->unplugs);
		jw_u64(w, "plug_failures", g->plug_failures);
		jw_str(w, "why", g->why);
	}
	jw_obj_end(w);
}

void vpd_pair21_render(struct jw *w, const struct vpd *d)
{
	jw_arr_begin(w, "pairs");
	for (unsigned i = 0; i < d->npairs; i++) {
		const struct vpd_pair21 *p = &d->pairs[i];
		uint64_t joins = 0, refused = 0;

		if (!p->b)
			continue;
		vp_pair21_counts(p->b, &joins, &refused);
		jw_obj_begin(w, NULL);
		jw_str(w, "id", p->spec.id);
		jw_str(w, "path", p->spec.path);
		jw_str(w, "design", "2.1");
		jw_bool(w, "peer0", vp_pair21_joined(p->b, 0));
		jw_bool(w, "peer1", vp_pair21_joined(p->b, 1));
		jw_u64(w, "joins", joins);
		jw_u64(w, "refused", refused);
		for (unsigned g = 0; g < p->nq; g++)
			if (p->q[g].ivs)
				render_qemu(w, g ? "qemu1" : "qemu", &p->q[g]);
		jw_obj_end(w);
	}
	jw_arr_end(w);
}
