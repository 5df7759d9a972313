/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The backend-side interface: a server with backend=PATH announces each of
 * its READY devices to the backend VM listening on PATH, as a native
 * vhost-pci frontend would (HELLO, then the backend asks GET_UUID,
 * GET_MEMORY_INFO, GET_DEVICE_INFO, GET_FEATURE_BITS...). The backend gets
 * the frontend's memory fds, ring addresses and eventfds and drives the rings
 * itself; the daemon stays out of the data path.
 *
 * Policy (one place for it, so that no frontend is left "link up" with
 * nobody driving its rings):
 *  - READY and CHANGED are announced once the device has been quiet for
 *    SETTLE_MS: QEMU replaces a call fd right after it starts the rings, and
 *    one announcement (one backend connection) is enough. A later change is
 *    announced again on the same connection (STOP, then HELLO).
 *  - A backend that cannot be reached, or that refuses the device (its
 *    ERROR reason is kept and shown by vhost-pci-ctl), is tried again with
 *    exponential backoff (RETRY_MIN_MS doubling to RETRY_MAX_MS); a backend
 *    that restarts or starts late so gets every live READY device, from
 *    where its rings got to.
 *  - A frontend stopping a ring (GET_VRING_BASE) waits for the backend: its
 *    reply is held (vp_server_hold_stop()) while the backend is sent STOP
 *    with NEED_REPLY, and goes when the ack comes, so the used index it
 *    carries is where the backend stopped. A backend that does not ack
 *    within stop-timeout ms (dead, wedged, slow) cannot wedge the frontend:
 *    the reply goes anyway, the miss is logged and counted, and its
 *    connection is closed (it is out of step; the next READY opens anew).
 *  - A packed ring (VIRTIO_F_RING_PACKED) keeps no index in memory: where the
 *    backend stopped comes only in its STOP ack (RING_BASE per ring,
 *    docs/protocol.md). The relay keeps those positions, tells the server
 *    (GET_VRING_BASE answers them) and announces from them. A backend that
 *    drove a packed device and left without acking (lost, timed out, refused
 *    positions) took them with it: that frontend is dropped with the reason,
 *    never resumed at a guess, which would replay or skip its buffers.
 *  - A READY device that no backend drives for backend-grace seconds is
 *    dropped: a stock QEMU then marks the guest's link down and reconnects
 *    by itself (chardev reconnect=N). While the server's backend stays
 *    unreachable or refusing, new frontends are refused at once, with the
 *    reason; the backend is probed (a connect, closed at once) with backoff,
 *    and admission reopens when it answers, so traffic resumes with no
 *    manual step.
 *
 * Security model: the backend is a peer too. What it sends passes the client
 * (replies checked against the state); a failing backend costs only its
 * relay, never the frontend's device. The fds we announce are our own dups,
 * so the server replacing a device's eventfds cannot hand the backend a
 * recycled fd number.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "daemon.h"

#define SETTLE_MS 30
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define PROBE_MIN_MS 250
#define PROBE_MAX_MS 2000
#define REOPEN_MAX_MS 30000  /* a backend that answers but refuses: admission
			      * reopens after this at most (doubling per round) */
#define LOG_EVERY_MS 10000   /* repeated refusals: one summary line per this */

enum relay_state {
	R_SETTLING,    /* READY/CHANGED seen, announcing after SETTLE_MS of quiet */
	R_CONNECTING,  /* HELLO sent, the backend is asking */
	R_ATTACHED,    /* the backend started the device */
	R_RETRY,       /* unreachable or refused: trying again at retry_at */
	R_STOPPING,    /* the frontend waits in GET_VRING_BASE for the backend's STOP ack */
	R_STOPPED,     /* the frontend stopped its rings: nothing to drive */
	R_RESTOPPING,  /* a change to announce to a running backend: its STOP ack first */
};

struct vpd_relay {
	struct vpd_relay *next;
	struct vpd *d;
	struct vpd_server *s;
	uint64_t id;
	struct vp_client *cl;
	struct vpd_watch w;
	struct vp_frontend_info info;  /* fds in it are our dups */
	enum relay_state state;
	bool reannounce;               /* changed while the backend was still asking */
	int64_t due_ms;                /* SETTLING/RETRY: when to announce */
	int64_t unattached_ms;         /* READY and not attached since (0: attached) */
	int64_t stop_since_ms;         /* (RE)STOPPING: since, and the ack is due by */
	int64_t stop_due_ms;
	uint64_t stop_timeouts;        /* STOPs the backend did not ack in time */
	unsigned backoff_ms;
	unsigned attempts;
	char why[VP_PCI_REASON_MAX + 64]; /* the last failure, for vhost-pci-ctl */
	bool dead;                     /* freed after the current epoll batch */
	/* Packed: the positions of the last STOP ack, announced instead of the
	 * frontend's bases while the server could not take them (live rings). */
	bool pk_known;
	bool pk_running;               /* a backend started it since: they are stale */
	bool pk_stop_due;              /* RESTOPPING: its STOP goes at the next tick */
	uint16_t pk_base[VP_PCI_MAX_RINGS];
};

static bool packed(const struct vp_device *dev)
{
	return dev && (dev->driver_features & (1ull << VIRTIO_F_RING_PACKED));
}

static const char *const state_names[] = {
	[R_SETTLING] = "settling", [R_CONNECTING] = "connecting", [R_ATTACHED] = "attached",
	[R_RETRY] = "waiting", [R_STOPPING] = "stopping", [R_STOPPED] = "stopped",
	[R_RESTOPPING] = "restopping",
};

static void close_info_fds(struct vp_frontend_info *in)
{
	for (unsigned i = 0; i < in->nregions; i++)
		if (in->regions[i].fd >= 0)
			close(in->regions[i].fd);
	for (unsigned i = 0; i < in->nrings; i++) {
		if (in->rings[i].kick_fd >= 0)
			close(in->rings[i].kick_fd);
		if (in->rings[i].call_fd >= 0)
			close(in->rings[i].call_fd);
	}
	memset(in, 0, sizeof(*in));
}

static int dup_or(int fd)
{
	return fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
}

/* The device as a native frontend describes it, with our own fd dups. */
static int make_info(const struct vpd_relay *rl, const struct vp_device *dev,
		     struct vp_frontend_info *in)
{
	memset(in, 0, sizeof(*in));
	memcpy(in->uuid, dev->uuid, 16);
	in->device_type = dev->type;
	in->device_features = dev->device_features;
	/* vhost-user bit 30 means nothing to a native backend. */
	in->driver_features = dev->driver_features & ~(1ull << VP_VU_F_PROTOCOL_FEATURES);
	in->nregions = dev->nregions;
	for (unsigned i = 0; i < dev->nregions; i++) {
		in->regions[i] = dev->regions[i];
		in->regions[i].fd = dup_or(dev->regions[i].fd);
		if (in->regions[i].fd < 0)
			goto err;
	}
	/* Pair 0, and with MQ each further pair the frontend set up (enabled
	 * or not: the flags say), as far as the native handshake carries. */
	in->nrings = 2;
	while ((dev->driver_features & (1ull << VIRTIO_NET_F_MQ)) && in->nrings + 2 <= dev->nrings &&
	       in->nrings + 2 <= VP_PCI_MAX_RINGS && dev->rings[in->nrings].started &&
	       dev->rings[in->nrings].addr_set && dev->rings[in->nrings + 1].started &&
	       dev->rings[in->nrings + 1].addr_set)
		in->nrings += 2;
	for (unsigned i = 0; i < in->nrings; i++) {
		const struct vp_dev_ring *r = &dev->rings[i];

		uint16_t resume = r->last_avail_idx;

		/*
		 * A running ring has moved on since SET_VRING_BASE: resume where the
		 * backend got to (it completes in order, so used->idx), or a
		 * re-attaching backend would replay old descriptors. A packed one:
		 * where the backend's last STOP ack said.
		 */
		if (packed(dev)) {
			if (rl->pk_known)
				resume = rl->pk_base[i];
		} else if (r->started && dev->mem &&
			   vp_mem_read_safe(dev->mem, r->used + 2, &resume, 2) < 0) {
			resume = r->last_avail_idx;
		}
		in->rings[i] = (struct vp_frontend_ring){
			.num = r->num, .last_avail_idx = resume,
			.desc = r->desc, .avail = r->avail, .used = r->used,
			.enabled = r->enabled,
			.kick_fd = dup_or(r->kick_fd), .call_fd = dup_or(r->call_fd),
		};
		if ((r->kick_fd >= 0 && in->rings[i].kick_fd < 0) ||
		    (r->call_fd >= 0 && in->rings[i].call_fd < 0))
			goto err;
	}
	in->config_len = dev->config_len;
	memcpy(in->config, dev->config, dev->config_len);
	return 0;
err:
	close_info_fds(in);
	return -EMFILE;
}

static struct vpd_relay *find(struct vpd *d, uint64_t id)
{
	for (struct vpd_relay *r = d->relays; r; r = r->next)
		if (r->id == id && !r->dead)
			return r;
	return NULL;
}

static void client_close(struct vpd_relay *r)
{
	if (r->cl) {
		epoll_ctl(r->d->epfd, EPOLL_CTL_DEL, vp_client_fd(r->cl), NULL);
		vp_client_free(r->cl);
		r->cl = NULL;
	}
}

/* Let go of everything now; the struct itself goes in vpd_relay_reap(),
 * since a later event of the same epoll batch may still point at it. */
static void relay_kill(struct vpd_relay *r)
{
	client_close(r);
	close_info_fds(&r->info);
	r->dead = true;
}

void vpd_relay_reap(struct vpd *d)
{
	for (struct vpd_relay **p = &d->relays; *p;) {
		struct vpd_relay *r = *p;

		if (r->dead) {
			*p = r->next;
			free(r);
		} else {
			p = &r->next;
		}
	}
}

/* ---- the backend as a whole (per server) ---- */

static void backend_up(struct vpd_server *s)
{
	if (s->backend_down)
		vp_log(VP_LOG_INFO, "server %s: backend %s answers again%s", s->spec.id,
		       s->spec.backend, s->admission_closed ? ": admitting frontends" : "");
	s->backend_down = false;
	s->admission_closed = false;
	s->probe_backoff_ms = 0;
	s->reopen_delay_ms = 0;
	s->backend_why[0] = '\0';
}

static void backend_failed(struct vpd_server *s, const char *why)
{
	if (!s->backend_down) {
		s->backend_down = true;
		s->down_since_ms = vpd_now_ms();
	}
	snprintf(s->backend_why, sizeof(s->backend_why), "%s", why);
}

/* A connect to the backend's socket, closed at once: is anybody there? */
static bool backend_answers(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool ok;

	if (fd < 0)
		return false;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EAGAIN;
	close(fd);
	return ok;
}

/* ---- one device ---- */

static void schedule_retry(struct vpd_relay *r, const char *why)
{
	int64_t now = vpd_now_ms();

	snprintf(r->why, sizeof(r->why), "%s", why);
	r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : RETRY_MIN_MS;
	if (r->backoff_ms > RETRY_MAX_MS)
		r->backoff_ms = RETRY_MAX_MS;
	r->state = R_RETRY;
	r->due_ms = now + r->backoff_ms;
	if (!r->unattached_ms)
		r->unattached_ms = now;
	backend_failed(r->s, why);
	/* The first failure of a run is worth a warning; the retries are not. */
	vp_log(r->attempts <= 1 ? VP_LOG_WARN : VP_LOG_DEBUG,
	       "device %" PRIu64 ": backend %s: %s (trying again in %u ms)", r->id,
	       r->s->spec.backend, why, r->backoff_ms);
}

/*
 * A packed device whose backend drove it and left without telling where
 * (connection lost, STOP unacked, positions refused): nobody knows where its
 * rings are, so the frontend goes, with the reason (QEMU reconnects and starts
 * its rings afresh). true if it was dropped: r is dead then.
 */
static bool packed_lost(struct vpd_relay *r, const char *why)
{
	const struct vp_device *dev = vp_server_find(r->s->srv, r->id);
	char reason[VP_PCI_REASON_MAX];

	if (!packed(dev) || !r->pk_running)
		return false;
	snprintf(reason, sizeof(reason), "where its packed rings stopped is lost: %s", why);
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": dropping its frontend: backend %s: %s", r->id,
	       r->s->spec.backend, reason);
	r->s->packed_lost++;
	vp_server_drop(r->s->srv, r->id, reason);  /* REMOVED kills r */
	return true;
}

/* The backend acked a STOP: a packed device's positions came with it. */
static void took_positions(struct vpd_relay *r)
{
	const struct vp_device *dev = vp_server_find(r->s->srv, r->id);
	bool all = true;

	if (!packed(dev) || !r->cl)
		return;
	for (unsigned i = 0; i < VP_PCI_MAX_RINGS; i++)
		if (vp_client_ring_base(r->cl, i, &r->pk_base[i]) < 0)
			break;
	r->pk_known = true;
	r->pk_running = false;
	/* Where the server can take them (not live), GET_VRING_BASE answers
	 * them and the next announcement reads them back from the device. */
	for (unsigned i = 0; i < r->info.nrings; i++)
		if (vp_server_set_ring_base(r->s->srv, r->id, i, r->pk_base[i]) < 0)
			all = false;
	if (all)
		r->pk_known = false;
}

/* The frontend's held GET_VRING_BASE reply may go now. */
static void stop_done(struct vpd_relay *r)
{
	/* -EINVAL: the library's own stop-timeout answered already;
	 * -ENOENT: the frontend is gone. Either way nothing is left to send. */
	vp_server_release_stop(r->s->srv, r->id);
	r->state = R_STOPPED;
}

/* The backend is started: tell it to stop, and to ack once it let go. */
static void stop_backend(struct vpd_relay *r)
{
	int e = vp_client_stop_need_reply(r->cl);

	if (e < 0) {
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": cannot send STOP to backend %s: %s; "
		       "answering the frontend now", r->id, r->s->spec.backend, strerror(-e));
		client_close(r);
		if (!packed_lost(r, "cannot send STOP"))
			stop_done(r);
	}
}

/* Announce the device (again), on the connection we have if it is usable. */
static void announce(struct vpd_relay *r, const struct vp_device *dev)
{
	struct vpd *d = r->d;
	struct vp_frontend_info info;
	char why[VP_PCI_REASON_MAX + 64];
	int e;

	r->reannounce = false;
	if (r->cl && vp_client_state(r->cl) == VP_CLIENT_STARTED) {
		/*
		 * The backend runs the rings (a pair enabled, a call fd replaced):
		 * it lets go first, acked, so the used indexes make_info() reads
		 * are where it stopped. Read before, they lag what it consumed
		 * until the STOP arrived, and it would resume behind the frontend.
		 */
		e = vp_client_stop_need_reply(r->cl);
		if (e == 0) {
			r->state = R_RESTOPPING;
			r->stop_since_ms = vpd_now_ms();
			r->stop_due_ms = r->stop_since_ms + r->s->spec.stop_timeout_ms;
			return;
		}
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": cannot send STOP to backend %s: %s; "
		       "connecting anew", r->id, r->s->spec.backend, strerror(-e));
		client_close(r);
		if (packed_lost(r, "cannot send STOP"))
			return;
	}
	r->attempts++;
	if (make_info(r, dev, &info) < 0) {
		schedule_retry(r, "out of fds to relay the device");
		return;
	}
	if (r->cl && vp_client_state(r->cl) == VP_CLIENT_STOPPED) {
		e = vp_client_restart(r->cl, &info);
	} else {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &r->w };

		client_close(r);
		e = vp_client_connect(&r->cl, r->s->spec.backend, &info);
		if (e == 0 && epoll_ctl(d->epfd, EPOLL_CTL_ADD, vp_client_fd(r->cl), &ev) < 0)
			e = -errno;
	}
	/* The client sends these fds while the backend asks: keep them till next time. */
	close_info_fds(&r->info);
	r->info = info;
	if (e < 0) {
		client_close(r);
		snprintf(why, sizeof(why), "not reachable: %s", strerror(-e));
		schedule_retry(r, why);
		return;
	}
	r->state = R_CONNECTING;
	vp_log(VP_LOG_INFO, "device %" PRIu64 ": announced to backend %s", r->id,
	       r->s->spec.backend);
}

static struct vpd_relay *relay_new(struct vpd_server *s, uint64_t id)
{
	struct vpd_relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->d = s->d;
	r->s = s;
	r->id = id;
	r->w.kind = VPD_W_RELAY;
	r->w.obj = r;
	r->next = s->d->relays;
	s->d->relays = r;
	return r;
}

/* Refusing a new frontend while the backend is away: logged once per
 * LOG_EVERY_MS with a count, not once per attempt. */
static void refuse_new(struct vpd_server *s, const struct vp_device *dev)
{
	char why[sizeof(s->backend_why) + 64];
	int64_t now = vpd_now_ms();

	snprintf(why, sizeof(why), "no backend drives this server's devices: %s",
		 s->backend_why[0] ? s->backend_why : "backend unreachable");
	s->refused_new++;
	if (now >= s->refuse_log_ms) {
		vp_log(VP_LOG_WARN, "server %s: refusing frontends (%" PRIu64 " so far): %s",
		       s->spec.id, s->refused_new, why);
		s->refuse_log_ms = now + LOG_EVERY_MS;
	}
	vp_server_drop(s->srv, dev->id, why);
}

void vpd_relay_event(struct vpd_server *s, enum vp_event ev, const struct vp_device *dev)
{
	struct vpd *d = s->d;
	struct vpd_relay *r;

	if (!s->spec.backend)
		return;
	r = find(d, dev->id);
	switch (ev) {
	case VP_EV_DEVICE_NEW:
		if (s->admission_closed)
			refuse_new(s, dev);
		break;
	case VP_EV_DEVICE_READY:
	case VP_EV_DEVICE_CHANGED:
		if (!r && !(r = relay_new(s, dev->id))) {
			vp_log(VP_LOG_WARN, "device %" PRIu64 ": out of memory to relay it", dev->id);
			return;
		}
		if (r->state == R_CONNECTING) {
			/* The backend is still asking about the old set: finish, then redo. */
			r->reannounce = true;
			break;
		}
		if (r->state == R_RESTOPPING)
			break;  /* announced at the ack, from the device as it is then */
		if (r->state != R_ATTACHED && !r->unattached_ms)
			r->unattached_ms = vpd_now_ms();
		if (r->state != R_RETRY || ev == VP_EV_DEVICE_READY) {
			r->state = R_SETTLING;
			r->due_ms = vpd_now_ms() + SETTLE_MS;
		}
		break;
	case VP_EV_DEVICE_STOPPED: {
		enum vp_client_state st;

		if (!r)
			break;
		r->state = R_STOPPED;
		r->unattached_ms = 0;
		r->reannounce = false;
		if (!r->cl)
			break;  /* no backend: the frontend is answered at once */
		st = vp_client_state(r->cl);
		/*
		 * A frontend that waits on this stop (GET_VRING_BASE) waits for the
		 * backend's ack too. A backend still asking is stopped once started.
		 */
		if ((st == VP_CLIENT_STARTED || st == VP_CLIENT_HANDSHAKE ||
		     st == VP_CLIENT_STOPPING) &&
		    vp_server_hold_stop(s->srv, dev->id) == 0) {
			/* STOPPING: a re-announcement's STOP is on its way; its ack
			 * releases this stop too. */
			r->state = R_STOPPING;
			r->stop_since_ms = vpd_now_ms();
			r->stop_due_ms = r->stop_since_ms + s->spec.stop_timeout_ms;
			if (st == VP_CLIENT_STARTED)
				stop_backend(r);
		} else if (st == VP_CLIENT_STARTED && packed(dev)) {
			/*
			 * Nobody waits, but the positions come only with the ack:
			 * announced again from them (READY waits for it). Sent after
			 * this batch: a frontend that hung up is REMOVED in it, and
			 * its backend is then not asked for positions nobody needs.
			 */
			r->state = R_RESTOPPING;
			r->pk_stop_due = true;
			r->stop_since_ms = vpd_now_ms();
			r->stop_due_ms = r->stop_since_ms + s->spec.stop_timeout_ms;
		} else if (st == VP_CLIENT_STARTED) {
			vp_client_stop(r->cl, VP_PCI_STOP_RESET);
		}
		break;
	}
	case VP_EV_DEVICE_REMOVED:
		if (r) {
			if (r->cl && (vp_client_state(r->cl) == VP_CLIENT_STARTED ||
				      vp_client_state(r->cl) == VP_CLIENT_STOPPED))
				vp_client_stop(r->cl, VP_PCI_STOP_SHUTDOWN);
			relay_kill(r);
		}
		break;
	}
}

void vpd_relay_readable(struct vpd_relay *r)
{
	enum vp_client_state st;

	if (r->dead || !r->cl)
		return;
	vp_client_dispatch(r->cl);
	st = vp_client_state(r->cl);
	if (st == VP_CLIENT_STARTED)
		r->pk_running = true;  /* it may have moved the rings on */
	if (st == VP_CLIENT_STOPPED && (r->state == R_STOPPING || r->state == R_RESTOPPING))
		took_positions(r);
	if (st == VP_CLIENT_FAILED) {
		char why[VP_PCI_REASON_MAX + 64];
		const char *e = vp_client_error(r->cl);
		bool was_attached = r->state == R_ATTACHED;

		/* The frontend's device lives on; it is offered again after a pause.
		 * The backend's own words (ERROR) come as "server: REASON". */
		if (e && !strncmp(e, "server: ", 8))
			snprintf(why, sizeof(why), "refused: %s", e + 8);
		else
			snprintf(why, sizeof(why), "%s: %s", was_attached ? "lost" : "failed",
				 e && *e ? e : "connection closed");
		client_close(r);
		if (packed_lost(r, why))
			return;
		if (r->state == R_STOPPING) {
			/* Its server let go of the device with the connection. */
			vp_log(VP_LOG_INFO, "device %" PRIu64 ": backend connection ended while "
			       "stopping (%s)", r->id, why);
			stop_done(r);
		}
		if (r->state == R_STOPPED)
			return;
		r->unattached_ms = vpd_now_ms();
		if (was_attached)
			r->backoff_ms = 0;
		schedule_retry(r, why);
	} else if (st == VP_CLIENT_STOPPED && r->state == R_STOPPING) {
		vp_log(VP_LOG_INFO, "device %" PRIu64 ": backend acked STOP in %" PRId64 " ms",
		       r->id, vpd_now_ms() - r->stop_since_ms);
		stop_done(r);
	} else if (st == VP_CLIENT_STOPPED && r->state == R_RESTOPPING) {
		const struct vp_device *dev = vp_server_find(r->s->srv, r->id);

		vp_log(VP_LOG_DEBUG, "device %" PRIu64 ": backend acked STOP in %" PRId64 " ms; "
		       "announcing the change", r->id, vpd_now_ms() - r->stop_since_ms);
		if (dev && dev->state == VP_DEV_READY)
			announce(r, dev);
		else
			r->state = R_STOPPED;
	} else if (st == VP_CLIENT_STARTED && r->state == R_STOPPING) {
		stop_backend(r);  /* it finished starting a device the frontend stopped */
	} else if (st == VP_CLIENT_STARTED && r->state == R_STOPPED) {
		if (!packed(vp_server_find(r->s->srv, r->id))) {
			vp_client_stop(r->cl, VP_PCI_STOP_RESET);
		} else if (vp_client_stop_need_reply(r->cl) == 0) {
			/* As a stop nobody waits on: the positions come with the ack. */
			r->state = R_RESTOPPING;
			r->stop_since_ms = vpd_now_ms();
			r->stop_due_ms = r->stop_since_ms + r->s->spec.stop_timeout_ms;
		} else {
			client_close(r);
			packed_lost(r, "cannot send STOP");
		}
	} else if (st == VP_CLIENT_STARTED && r->state == R_CONNECTING) {
		const struct vp_device *dev = vp_server_find(r->s->srv, r->id);

		vp_log(r->attempts > 1 ? VP_LOG_INFO : VP_LOG_DEBUG,
		       "device %" PRIu64 ": backend attached (its id %" PRIu64 ", attempt %u)",
		       r->id, vp_client_device_id(r->cl), r->attempts);
		r->state = R_ATTACHED;
		r->unattached_ms = 0;
		r->backoff_ms = 0;
		r->attempts = 0;
		r->why[0] = '\0';
		backend_up(r->s);
		if (r->reannounce && dev && dev->state == VP_DEV_READY)
			announce(r, dev);
	}
}

int vpd_relay_timeout(const struct vpd *d)
{
	int64_t now = vpd_now_ms(), best = -1;

	for (const struct vpd_relay *r = d->relays; r; r = r->next) {
		int64_t t = -1;

		if (r->dead)
			continue;
		if (r->state == R_SETTLING || r->state == R_RETRY)
			t = r->due_ms;
		if (r->state == R_STOPPING || r->state == R_RESTOPPING)
			t = r->stop_due_ms;
		if (r->pk_stop_due)
			t = now;
		if (r->unattached_ms && r->s->spec.backend_grace_ms) {
			int64_t g = r->unattached_ms + r->s->spec.backend_grace_ms;

			t = t < 0 || g < t ? g : t;
		}
		if (t >= 0 && (best < 0 || t < best))
			best = t;
	}
	for (unsigned i = 0; i < d->nservers; i++) {
		const struct vpd_server *s = &d->servers[i];

		if (s->admission_closed && (best < 0 || s->probe_ms < best))
			best = s->probe_ms;
	}
	if (best < 0)
		return -1;
	return best > now ? (int)(best - now) : 0;
}

/* The backend did not ack STOP in time: the frontend must not wait longer. */
static void stop_timed_out(struct vpd_relay *r)
{
	struct vpd_server *s = r->s;

	r->stop_timeouts++;
	s->stop_timeouts++;
	snprintf(r->why, sizeof(r->why), "did not acknowledge STOP within %u ms",
		 s->spec.stop_timeout_ms);
	vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend %s %s: answering the frontend's "
	       "GET_VRING_BASE anyway and closing the backend connection (%" PRIu64
	       " such stops on server %s)", r->id, s->spec.backend, r->why, s->stop_timeouts,
	       s->spec.id);
	/* It may still be using the rings, and is out of step with us: a
	 * fresh connection at the next READY, never this one again. */
	client_close(r);
	if (!packed_lost(r, r->why))
		stop_done(r);
}

void vpd_relay_tick(struct vpd *d)
{
	int64_t now = vpd_now_ms();

	for (struct vpd_relay *r = d->relays; r; r = r->next) {
		struct vpd_server *s = r->s;
		const struct vp_device *dev;

		if (r->dead)
			continue;
		if (r->pk_stop_due) {
			r->pk_stop_due = false;
			if (r->cl && vp_client_state(r->cl) == VP_CLIENT_STARTED &&
			    vp_client_stop_need_reply(r->cl) < 0) {
				client_close(r);
				if (packed_lost(r, "cannot send STOP"))
					continue;
			}
		}
		if (r->state == R_STOPPING && now >= r->stop_due_ms) {
			stop_timed_out(r);
			continue;
		}
		if (r->state == R_RESTOPPING && now >= r->stop_due_ms) {
			r->stop_timeouts++;
			s->stop_timeouts++;
			snprintf(r->why, sizeof(r->why), "did not acknowledge STOP within %u ms",
				 s->spec.stop_timeout_ms);
			vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend %s %s: closing its "
			       "connection, announcing the change on a new one", r->id,
			       s->spec.backend, r->why);
			client_close(r);
			if (packed_lost(r, r->why))
				continue;
			r->state = R_SETTLING;
			r->due_ms = now;
		}
		dev = vp_server_find(s->srv, r->id);
		if (!dev || dev->state != VP_DEV_READY)
			continue;
		if (r->unattached_ms && s->spec.backend_grace_ms &&
		    now >= r->unattached_ms + s->spec.backend_grace_ms) {
			char why[sizeof(r->why) + 96];

			/* Nobody drives its rings: take the link down (QEMU reconnects). */
			snprintf(why, sizeof(why), "no backend attached within %u s (%s)",
				 s->spec.backend_grace_ms / 1000,
				 r->why[0] ? r->why : "backend not reachable");
			vp_log(VP_LOG_WARN, "device %" PRIu64 ": dropping its frontend: %s", r->id, why);
			if (s->backend_down && !s->admission_closed) {
				s->admission_closed = true;
				s->reopen_delay_ms = s->reopen_delay_ms ? s->reopen_delay_ms * 2 :
									  PROBE_MIN_MS;
				if (s->reopen_delay_ms > REOPEN_MAX_MS)
					s->reopen_delay_ms = REOPEN_MAX_MS;
				s->probe_backoff_ms = PROBE_MIN_MS;
				s->probe_ms = now + s->reopen_delay_ms;
				vp_log(VP_LOG_WARN, "server %s: refusing new frontends until backend %s "
				       "answers", s->spec.id, s->spec.backend);
			}
			r->unattached_ms = 0;
			vp_server_drop(s->srv, r->id, why);  /* REMOVED kills r */
			continue;
		}
		if ((r->state == R_SETTLING || r->state == R_RETRY) && now >= r->due_ms)
			announce(r, dev);
	}
	for (unsigned i = 0; i < d->nservers; i++) {
		struct vpd_server *s = &d->servers[i];

		if (!s->admission_closed || now < s->probe_ms)
			continue;
		if (backend_answers(s->spec.backend)) {
			/* Open again; a refusing backend closes it again after a grace. */
			s->admission_closed = false;
			vp_log(VP_LOG_INFO, "server %s: backend %s answers: admitting frontends again",
			       s->spec.id, s->spec.backend);
			continue;
		}
		s->probe_backoff_ms = s->probe_backoff_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS :
								      s->probe_backoff_ms * 2;
		s->probe_ms = now + s->probe_backoff_ms;
	}
}

const char *vpd_relay_describe(const struct vpd *d, uint64_t id, const char **why,
			       uint64_t *stop_timeouts)
{
	*why = NULL;
	*stop_timeouts = 0;
	for (const struct vpd_relay *r = d->relays; r; r = r->next) {
		if (r->id != id || r->dead)
			continue;
		if (r->why[0])
			*why = r->why;
		*stop_timeouts = r->stop_timeouts;
		return state_names[r->state];
	}
	return NULL;
}

void vpd_relay_free_all(struct vpd *d)
{
	for (struct vpd_relay *r = d->relays; r; r = r->next) {
		if (r->cl && vp_client_state(r->cl) == VP_CLIENT_STARTED)
			vp_client_stop(r->cl, VP_PCI_STOP_SHUTDOWN);
		relay_kill(r);
	}
	vpd_relay_reap(d);
}
