/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The backend-side interface: a server with backend=PATH announces each of
 * its READY devices to the backend VM listening on PATH, as a native
 * vhost-pci frontend would (HELLO, then the backend asks GET_UUID,
 * GET_MEMORY_INFO, GET_DEVICE_INFO, GET_FEATURE_BITS...). The backend gets
 * the frontend's memory fds, ring addresses and eventfds and drives the rings
 * itself; the daemon stays out of the data path.
 *
 *   device READY    -> connect + HELLO (or HELLO again after a STOP)
 *   device CHANGED  -> STOP(reset) + HELLO with the new eventfds
 *   device STOPPED  -> STOP(reset): the backend lets go of the rings
 *   device REMOVED  -> STOP(shutdown), close
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
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "daemon.h"

struct vpd_relay {
	struct vpd_relay *next;
	struct vpd *d;
	struct vpd_server *s;
	uint64_t id;
	struct vp_client *cl;
	struct vpd_watch w;
	struct vp_frontend_info info;  /* fds in it are our dups */
	bool dead;                     /* freed after the current epoll batch */
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
static int make_info(const struct vp_device *dev, struct vp_frontend_info *in)
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
	in->nrings = dev->nrings;
	for (unsigned i = 0; i < dev->nrings; i++) {
		const struct vp_dev_ring *r = &dev->rings[i];

		uint16_t resume = r->last_avail_idx;

		/*
		 * A running ring has moved on since SET_VRING_BASE: resume where the
		 * backend got to (it completes in order, so used->idx), or a
		 * re-attaching backend would replay old descriptors.
		 */
		if (r->started && dev->mem &&
		    vp_mem_read_safe(dev->mem, r->used + 2, &resume, 2) < 0)
			resume = r->last_avail_idx;
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

/* Let go of everything now; the struct itself goes in vpd_relay_reap(),
 * since a later event of the same epoll batch may still point at it. */
static void relay_kill(struct vpd_relay *r)
{
	if (r->cl) {
		epoll_ctl(r->d->epfd, EPOLL_CTL_DEL, vp_client_fd(r->cl), NULL);
		vp_client_free(r->cl);
		r->cl = NULL;
	}
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

/* Announce the device (again). */
static void announce(struct vpd_relay *r, const struct vp_device *dev)
{
	struct vpd *d = r->d;
	struct vp_frontend_info info;
	int e;

	if (make_info(dev, &info) < 0) {
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": out of fds to relay it", r->id);
		return;
	}
	if (r->cl && vp_client_state(r->cl) == VP_CLIENT_STARTED)
		vp_client_stop(r->cl, VP_PCI_STOP_RESET);
	if (r->cl && vp_client_state(r->cl) == VP_CLIENT_STOPPED) {
		e = vp_client_restart(r->cl, &info);
	} else {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &r->w };

		if (r->cl) {
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, vp_client_fd(r->cl), NULL);
			vp_client_free(r->cl);
			r->cl = NULL;
		}
		e = vp_client_connect(&r->cl, r->s->spec.backend, &info);
		if (e == 0 && epoll_ctl(d->epfd, EPOLL_CTL_ADD, vp_client_fd(r->cl), &ev) < 0)
			e = -errno;
	}
	/* The client sends these fds while the backend asks: keep them till next time. */
	close_info_fds(&r->info);
	r->info = info;
	if (e < 0)
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend %s not reachable: %s", r->id,
		       r->s->spec.backend, strerror(-e));
	else
		vp_log(VP_LOG_INFO, "device %" PRIu64 ": announced to backend %s", r->id,
		       r->s->spec.backend);
}

void vpd_relay_event(struct vpd_server *s, enum vp_event ev, const struct vp_device *dev)
{
	struct vpd *d = s->d;
	struct vpd_relay *r;

	if (!s->spec.backend)
		return;
	r = find(d, dev->id);
	switch (ev) {
	case VP_EV_DEVICE_READY:
	case VP_EV_DEVICE_CHANGED:
		if (!r) {
			r = calloc(1, sizeof(*r));
			if (!r)
				return;
			r->d = d;
			r->s = s;
			r->id = dev->id;
			r->w.kind = VPD_W_RELAY;
			r->w.obj = r;
			r->next = d->relays;
			d->relays = r;
		}
		announce(r, dev);
		break;
	case VP_EV_DEVICE_STOPPED:
		if (r && r->cl && vp_client_state(r->cl) == VP_CLIENT_STARTED)
			vp_client_stop(r->cl, VP_PCI_STOP_RESET);
		break;
	case VP_EV_DEVICE_REMOVED:
		if (r) {
			if (r->cl && (vp_client_state(r->cl) == VP_CLIENT_STARTED ||
				      vp_client_state(r->cl) == VP_CLIENT_STOPPED))
				vp_client_stop(r->cl, VP_PCI_STOP_SHUTDOWN);
			relay_kill(r);
		}
		break;
	default:
		break;
	}
}

void vpd_relay_readable(struct vpd_relay *r)
{
	if (r->dead || !r->cl)
		return;
	vp_client_dispatch(r->cl);
	if (vp_client_state(r->cl) == VP_CLIENT_FAILED) {
		/* The frontend's device lives on; the next READY tries again. */
		vp_log(VP_LOG_WARN, "device %" PRIu64 ": backend %s: %s", r->id,
		       r->s->spec.backend, vp_client_error(r->cl));
		epoll_ctl(r->d->epfd, EPOLL_CTL_DEL, vp_client_fd(r->cl), NULL);
		vp_client_free(r->cl);
		r->cl = NULL;
	} else if (vp_client_state(r->cl) == VP_CLIENT_STARTED) {
		vp_log(VP_LOG_DEBUG, "device %" PRIu64 ": backend attached (id %" PRIu64 ")",
		       r->id, vp_client_device_id(r->cl));
	}
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
