/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Interrupt moderation (internal, not installed): how many buffers a queue
 * asks its peer for before the next kick, per struct vp_net_coalesce.
 *
 * A queue that did some work since its last sleep is busy: it asks for
 * `cur` buffers and bounds its sleep by usecs, so a batch the peer never
 * completes is still taken after that long (no lost wake-up, whatever the
 * peer does). `cur` grows (x2, up to frames) while each wake finds at least
 * twice the mark waiting, and shrinks (/2) while it finds less (the timer
 * ended the sleep): at low load it settles at 1, which is the plain kick
 * per buffer and its latency. A queue that did nothing since its last sleep is idle: kick on
 * the first buffer, no timer (an idle link costs no wake-ups).
 */
#ifndef VP_LIB_COALESCE_H
#define VP_LIB_COALESCE_H

#include <errno.h>
#include <stdint.h>

#include "vhostpci/net.h"

struct coal_state {
	uint16_t mark;	/* the queue's progress counter at the last arm */
	uint16_t cur;	/* buffers asked for when busy; 0: not started */
};

/* Buffers to ask for, given the queue's progress counter now (any counter
 * that moves with each buffer taken; it may wrap). */
static inline unsigned coal_ahead(const struct vp_net_coalesce *c, struct coal_state *s,
				  uint16_t progress)
{
	unsigned done = (uint16_t)(progress - s->mark);

	s->mark = progress;
	if (c->frames <= 1)
		return 1;
	if (!s->cur)
		s->cur = 1;
	if (!done)
		return 1;
	if (done >= 2u * s->cur)
		s->cur = (uint16_t)(2u * s->cur > c->frames ? c->frames : 2u * s->cur);
	else if (done < s->cur)
		s->cur = (uint16_t)(s->cur / 2u ? s->cur / 2u : 1u);
	return s->cur;
}

/* The longest a moderated queue may sleep, in ns: asked for more than one
 * buffer and fewer are there. -1: no bound needed. */
static inline int64_t coal_hold_ns(const struct vp_net_coalesce *c, unsigned ahead,
				   unsigned pending)
{
	return ahead > 1 && pending < ahead ? (int64_t)c->usecs * 1000 : -1;
}

/* Checks a configuration: 0 or -EINVAL. */
static inline int coal_check(const struct vp_net_coalesce *c)
{
	if (c->frames > VP_NET_COALESCE_MAX_FRAMES || c->usecs > VP_NET_COALESCE_MAX_USECS)
		return -EINVAL;
	/* Moderation without a time bound could strand a partial batch. */
	if (c->frames > 1 && !c->usecs)
		return -EINVAL;
	return 0;
}

#endif
