/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid's 2.1 pairs (design=2.1, docs/vhost-pcid.md): one pair broker
 * (vp_pair21, include/vhostpci/net21.h) per such spec, driven by the
 * daemon's loop. The daemon allocates the window (sealed memfds) and holds
 * both halves, so neither peer ever holds a writable fd of the other's
 * section: the permissions of docs/window21.md 5 hold both ways.
 *
 * Security model: a connecting peer is handled by vp_pair21 (one JOIN per
 * connection, ERROR otherwise, never blocks); here nothing a peer sends is
 * read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "daemon.h"
#include "json.h"

struct vpd_pair21 {
	struct vpd_spec spec;
	struct vp_pair21 *b;
	struct vpd_watch w;
};

int vpd_pair21_add(struct vpd *d, struct vpd_spec *spec)
{
	struct vpd_pair21 *p, *np;
	struct epoll_event ev = { .events = EPOLLIN };
	int e;

	np = realloc(d->pairs, (d->npairs + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	d->pairs = np;
	p = &d->pairs[d->npairs];
	memset(p, 0, sizeof(*p));
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
	/* The watches point into d->pairs, which the next add may move: every
	 * registration is made again from the array's current place. */
	for (unsigned i = 0; i < d->npairs; i++) {
		struct vpd_pair21 *q = &d->pairs[i];

		if (!q->b)
			continue;
		q->w.kind = VPD_W_PAIR21;
		q->w.obj = q;
		ev.data.ptr = &q->w;
		if (epoll_ctl(d->epfd, i + 1 == d->npairs ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
			      vp_pair21_fd(q->b), &ev) < 0) {
			e = -errno;
			vp_log(VP_LOG_ERR, "pair %s: epoll: %s", q->spec.id, strerror(-e));
			return e;
		}
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
		jw_obj_end(w);
	}
	jw_arr_end(w);
}
