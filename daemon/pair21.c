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

#define QEMU_VECTORS 2  /* vector 0: frames for you (RX), 1: your slots freed (TX) */
#define QEMU_PEERS 2    /* qemu= (peer 0) and qemu1= (peer 1) */

/* One QEMU guest's half, held here for the pair's life. */
struct vpd_pair21_qemu {
	struct vpd_pair21 *pair;  /* set again wherever the pairs array moves */
	const char *sock;         /* the spec's qemu= or qemu1= */
	struct vpd_ivshmem *ivs;
	struct vpd_watch w;
	struct vp_net21_fds qf;
	bool connected;
};

struct vpd_pair21 {
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
	return 0;
}

int vpd_pair21_event(struct vpd_pair21 *p)
{
	int e = vp_pair21_control(p->b);

	if (e < 0)
		vp_log(VP_LOG_ERR, "pair %s failed: %s", p->spec.id, strerror(-e));
	return e;
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

void vpd_pair21_free_all(struct vpd *d)
{
	for (unsigned i = 0; i < d->npairs; i++) {
		struct vpd_pair21 *p = &d->pairs[i];

		for (unsigned g = 0; g < p->nq; g++) {
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
