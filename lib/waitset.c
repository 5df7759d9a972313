/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Wait sets, and the library's one sleep (vp_wait_core()), which
 * vp_net_wait() and vp_netfe_wait() use too.
 *
 * Every object that wants work is armed before the single poll() and
 * disarmed after it. Arming is "request notifications, then look at the
 * ring once more" (vp_net_arm(), vp_netfe_arm()): a buffer posted before
 * the peer saw the request is found by that look; one posted after it
 * kicks the object's eventfd, which stays readable until the poll(). So
 * the objects must stay armed through the sleep: arming, draining the fds
 * and only then sleeping on them lost every wake-up that fell into the gap
 * (a 20 ms stall each, in every irq-mode run, before vmlib got this right).
 * Disarming drains the eventfds and stops asking for kicks: while the
 * caller's loop finds work it polls, which is cheaper.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vhostpci/waitset.h"
#include "util.h"
#include "wait.h"

#define ADAPTIVE_SPIN_NS 50000  /* ADAPTIVE: look this long before sleeping */
#define ADAPTIVE_SPIN_FIRST_NS 2000 /* then yield between looks */
#define YIELD_RAN_OTHERS_NS 10000 /* a yield counts up to this (longer: others ran) */
#define ADAPTIVE_WALL_NS 1000000 /* others' turns included: sleep after this */
#define NAP_BLIND_MS 1          /* a queue without a wake-up fd: look again this soon */
#define NAP_NOT_LIVE_MS 10      /* no rings yet (frontend before start) */

static int cap_timeout(int timeout_ms, int cap)
{
	return timeout_ms < 0 || timeout_ms > cap ? cap : timeout_ms;
}

static bool any_ready(const struct vp_wait_item *it, unsigned nit)
{
	for (unsigned i = 0; i < nit; i++)
		if (it[i].ops->live(it[i].obj) && it[i].ops->ready(it[i].obj, it[i].rx, it[i].tx))
			return true;
	return false;
}

int vp_wait_core(const struct vp_wait_item *it, unsigned nit, struct pollfd *pf,
		 unsigned short *owner, unsigned nfixed, unsigned cap, int timeout_ms)
{
	unsigned n = nfixed, narmed = 0;
	bool adaptive = false, blind = false;
	int64_t hold = -1;	/* the shortest bound a moderated object asked for */
	struct timespec ts;
	int r = 0;

	for (unsigned i = 0; i < nfixed; i++)
		pf[i].revents = 0;
	/* POLL: never sleep. Work already known: do not sleep either. */
	for (unsigned i = 0; i < nit; i++) {
		const struct vp_wait_item *o = &it[i];
		enum vp_net_mode mode = o->ops->mode(o->obj);

		if (mode == VP_NET_POLL)
			return 1;
		if (!o->ops->live(o->obj)) {
			timeout_ms = cap_timeout(timeout_ms, NAP_NOT_LIVE_MS);
			continue;
		}
		adaptive |= mode == VP_NET_ADAPTIVE && (o->rx || o->tx);
		if (o->ops->ready(o->obj, o->rx, o->tx))
			return 1;
	}
	if (adaptive && timeout_ms != 0) {
		/* Look between yields: on a core shared with other runnable
		 * tasks (the VMs of a chain on fewer cores than VMs) they run
		 * meanwhile, and a neighbour that fills our ring while we are
		 * not armed costs no wake-up. Alone on the core, a yield
		 * returns at once and this is the plain spin. Each yield counts
		 * its time up to 10 us against the budget (5 turns of others at
		 * least, then sleep: a futile turn is a context switch), and
		 * 1 ms of wall clock ends it whatever ran. The first 2 us are a
		 * plain spin: an answer due within a microsecond (a ping-pong)
		 * must not wait for another task's time slice. */
		uint64_t t0 = now_ns(), t = t0, spent = 0;

		for (unsigned k = 1;; k++) {
			if (any_ready(it, nit))
				return 1;
			if (spent < ADAPTIVE_SPIN_FIRST_NS) {
				cpu_relax();
				if (k & 15)
					continue;
			} else {
				sched_yield();
			}
			uint64_t t2 = now_ns(), dt = t2 - t;

			t = t2;
			spent += dt > YIELD_RAN_OTHERS_NS ? YIELD_RAN_OTHERS_NS : dt;
			if (spent > ADAPTIVE_SPIN_NS || t - t0 > ADAPTIVE_WALL_NS)
				break;
		}
	}
	for (unsigned i = 0; i < nit; i++) {
		const struct vp_wait_item *o = &it[i];

		if (!o->ops->live(o->obj))
			continue;
		r = o->ops->arm(o->obj, o->rx, o->tx);
		narmed = i + 1;
		if (r != 0)
			goto out;  /* work is there, or broken: no sleep */
		if (o->ops->hold) {
			int64_t h = o->ops->hold(o->obj);

			if (h >= 0 && (hold < 0 || h < hold))
				hold = h;
		}
		for (int side = 0; side < 2; side++) {
			bool tx = side == 1;
			int fd;

			if (!(tx ? o->tx : o->rx))
				continue;
			fd = o->ops->fd(o->obj, tx);
			if (fd < 0 || n >= cap) {
				blind = true;
				continue;
			}
			owner[n] = (unsigned short)i;
			pf[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
		}
	}
	/* A queue nothing can wake us for: nap and look again. */
	if (blind)
		timeout_ms = cap_timeout(timeout_ms, NAP_BLIND_MS);
	/* A moderated object bounds the sleep below the caller's timeout (in
	 * ns: a batch is held for tens of microseconds, not milliseconds). */
	if (hold >= 0 && (timeout_ms < 0 || hold < (int64_t)timeout_ms * 1000000)) {
		ts = (struct timespec){ hold / 1000000000, hold % 1000000000 };
		r = ppoll(pf, n, &ts, NULL);
		if (r == 0)
			r = 1;  /* held long enough: the partial batch is work */
	} else {
		r = poll(pf, n, timeout_ms);
	}
	if (r < 0) {
		r = errno == EINTR ? 1 : -errno;
		for (unsigned i = 0; i < nfixed; i++)
			pf[i].revents = 0;
		goto out;
	}
	/* Count a wake-up once per object, as its own wait would. */
	for (unsigned k = nfixed, last = UINT16_MAX; k < n; k++)
		if ((pf[k].revents & POLLIN) && owner[k] != last) {
			last = owner[k];
			it[last].ops->woken(it[last].obj);
		}
	if (blind)
		r = 1;
out:
	/* Awake: the rings are looked at next, so the kicks can go. */
	for (unsigned i = 0; i < narmed; i++)
		if (it[i].ops->live(it[i].obj))
			it[i].ops->disarm(it[i].obj);
	return r;
}

int vp_wait_one(const struct vp_wait_ops *ops, void *obj, bool rx, bool tx, int timeout_ms)
{
	const struct vp_wait_item it = { ops, obj, rx, tx };
	struct pollfd pf[2];
	unsigned short owner[2];

	return vp_wait_core(&it, 1, pf, owner, 0, 2, timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* Wait sets                                                                */

enum member_kind { M_FREE = 0, M_PORT, M_NET, M_NETFE, M_NET21, M_FD };

struct member {
	enum member_kind kind;
	void *obj;
	bool rx, tx;
	int fd;
	short events, revents;
	unsigned max_items, max_fds;  /* what it may add to a wait */
};

struct vp_waitset {
	struct member *m;
	unsigned nm;
	/* Scratch for a wait, sized at add time: a wait never allocates. */
	struct vp_wait_item *items;
	unsigned cap_items;
	struct pollfd *pf;
	unsigned short *owner;
	unsigned cap_pf;
};

int vp_waitset_new(struct vp_waitset **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void vp_waitset_free(struct vp_waitset *ws)
{
	if (!ws)
		return;
	free(ws->m);
	free(ws->items);
	free(ws->pf);
	free(ws->owner);
	free(ws);
}

/* Room for a wait over every member as it can be at its largest. */
static int resize(struct vp_waitset *ws)
{
	unsigned items = 0, fds = 0;
	void *p;

	for (unsigned i = 0; i < ws->nm; i++) {
		items += ws->m[i].max_items;
		fds += ws->m[i].max_fds + 2 * ws->m[i].max_items;
	}
	if (fds > UINT16_MAX)
		return -ENOSPC;
	if (items > ws->cap_items) {
		p = realloc(ws->items, items * sizeof(*ws->items));
		if (!p)
			return -ENOMEM;
		ws->items = p;
		ws->cap_items = items;
	}
	if (fds > ws->cap_pf) {
		p = realloc(ws->pf, fds * sizeof(*ws->pf));
		if (!p)
			return -ENOMEM;
		ws->pf = p;
		p = realloc(ws->owner, fds * sizeof(*ws->owner));
		if (!p)
			return -ENOMEM;
		ws->owner = p;
		ws->cap_pf = fds;
	}
	return 0;
}

static int add(struct vp_waitset *ws, const struct member *nm)
{
	unsigned id;
	int r;

	for (id = 0; id < ws->nm && ws->m[id].kind != M_FREE; id++)
		;
	if (id == ws->nm) {
		struct member *m = realloc(ws->m, (ws->nm + 1) * sizeof(*m));

		if (!m)
			return -ENOMEM;
		ws->m = m;
		ws->m[ws->nm++].kind = M_FREE;
	}
	ws->m[id] = *nm;
	r = resize(ws);
	if (r < 0) {
		ws->m[id].kind = M_FREE;
		ws->m[id].max_items = ws->m[id].max_fds = 0;
		return r;
	}
	return (int)id;
}

int vp_waitset_add_port(struct vp_waitset *ws, struct vp_port *p)
{
	struct member m = { .kind = M_PORT, .obj = p, .rx = true, .fd = -1 };

	if (!p)
		return -EINVAL;
	vp_port_wait_cap(p, &m.max_items, &m.max_fds);
	return add(ws, &m);
}

int vp_waitset_add_net(struct vp_waitset *ws, struct vp_net *n)
{
	struct member m = { .kind = M_NET, .obj = n, .rx = true, .fd = -1, .max_items = 1 };

	return n ? add(ws, &m) : -EINVAL;
}

int vp_waitset_add_netfe(struct vp_waitset *ws, struct vp_netfe *fe)
{
	struct member m = { .kind = M_NETFE, .obj = fe, .rx = true, .fd = -1, .max_items = 1 };

	return fe ? add(ws, &m) : -EINVAL;
}

int vp_waitset_add_net21(struct vp_waitset *ws, struct vp_net21 *n)
{
	struct member m = { .kind = M_NET21, .obj = n, .rx = true, .fd = -1, .max_items = 1 };

	return n ? add(ws, &m) : -EINVAL;
}

int vp_waitset_add_fd(struct vp_waitset *ws, int fd, short events)
{
	struct member m = { .kind = M_FD, .fd = fd, .events = events, .max_fds = 1 };

	return fd >= 0 ? add(ws, &m) : -EINVAL;
}

static struct member *member(const struct vp_waitset *ws, int id)
{
	if (id < 0 || (unsigned)id >= ws->nm || ws->m[id].kind == M_FREE)
		return NULL;
	return &ws->m[id];
}

int vp_waitset_remove(struct vp_waitset *ws, int id)
{
	struct member *m = member(ws, id);

	if (!m)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	return 0;
}

int vp_waitset_want(struct vp_waitset *ws, int id, bool want_rx, bool want_tx)
{
	struct member *m = member(ws, id);

	if (!m || m->kind == M_FD)
		return -EINVAL;
	m->rx = want_rx;
	m->tx = want_tx;
	return 0;
}

int vp_waitset_revents(const struct vp_waitset *ws, int id)
{
	const struct member *m = member(ws, id);

	return m && m->kind == M_FD ? m->revents : -EINVAL;
}

int vp_waitset_wait(struct vp_waitset *ws, int timeout_ms)
{
	unsigned nit = 0, nfd = 0;
	bool busy = false;
	int r;

	/* A polling port: nothing to prepare, the caller's loop looks again
	 * at once (a polling pass must stay short). */
	for (unsigned i = 0; i < ws->nm; i++) {
		struct member *m = &ws->m[i];

		m->revents = 0;
		busy |= m->kind == M_PORT && (m->rx || m->tx) && vp_port_busy_polls(m->obj);
	}
	if (busy)
		return 1;
	/* Fixed fds first (the caller's, then the ports' control sockets),
	 * the core adds the objects' after them. */
	for (unsigned i = 0; i < ws->nm; i++)
		if (ws->m[i].kind == M_FD)
			ws->pf[nfd++] = (struct pollfd){ .fd = ws->m[i].fd, .events = ws->m[i].events };
	for (unsigned i = 0; i < ws->nm; i++) {
		struct member *m = &ws->m[i];
		unsigned got = 0;

		switch (m->kind) {
		case M_PORT:
			r = vp_port_wait_prep(m->obj, m->rx, m->tx, ws->items + nit,
					      ws->cap_items - nit, ws->pf + nfd, ws->cap_pf - nfd,
					      &got, &timeout_ms);
			if (r < 0)
				return 1;  /* a link needs its port's control now */
			nit += (unsigned)r;
			nfd += got;
			break;
		case M_NET:
		case M_NETFE:
		case M_NET21:
			if (!m->rx && !m->tx)
				break;
			ws->items[nit++] = (struct vp_wait_item){
				m->kind == M_NET ? &vp_net_wait_ops
				: m->kind == M_NETFE ? &vp_netfe_wait_ops : &vp_net21_wait_ops,
				m->obj, m->rx, m->tx };
			break;
		case M_FD:
		case M_FREE:
			break;
		}
	}
	r = vp_wait_core(ws->items, nit, ws->pf, ws->owner, nfd, ws->cap_pf, timeout_ms);
	/* The caller's fds came first, in member order. */
	nfd = 0;
	for (unsigned i = 0; i < ws->nm; i++)
		if (ws->m[i].kind == M_FD)
			ws->m[i].revents = ws->pf[nfd++].revents;
	return r;
}
