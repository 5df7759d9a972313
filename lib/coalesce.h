/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Interrupt moderation (internal, not installed): how many buffers a queue
 * asks its peer for before the next kick, per struct vp_net_coalesce.
 *
 * A queue that did some work since its last sleep is busy: it asks for a
 * mark of N buffers and bounds its sleep by usecs, so a batch the peer never
 * completes is still taken after that long (no lost wake-up, whatever the
 * peer does). N follows the rate the queue measured between its last two
 * sleeps: N = rate x usecs / 2, up to frames (below 4: 1), so waiting for
 * the mark costs at most about half the bound. Under load N grows to frames; at
 * low load (a ping-pong, a trickle) it is 1: the plain kick per buffer and
 * its latency. A queue that did nothing since its last sleep is idle: kick
 * on the first buffer, no timer (an idle link costs no wake-ups).
 */
#ifndef VP_LIB_COALESCE_H
#define VP_LIB_COALESCE_H

#include <errno.h>
#include <stdint.h>

#include "vhostpci/net.h"

#define COAL_MIN_MARK 4u

struct coal_state {
	uint16_t mark;	/* the queue's progress counter at the last arm */
	int64_t t_ns;	/* and when (monotonic) */
};

/* Buffers to ask for, given the queue's progress counter now (any counter
 * that moves with each buffer taken; it may wrap) and the time. */
static inline unsigned coal_ahead(const struct vp_net_coalesce *c, struct coal_state *s,
				  uint16_t progress, int64_t now_ns)
{
	uint64_t done = (uint16_t)(progress - s->mark), n;
	int64_t dt = now_ns - s->t_ns;

	s->mark = progress;
	s->t_ns = now_ns;
	if (c->frames <= 1 || !done)
		return 1;
	if (dt <= 0)
		return c->frames;
	/* done / dt is the rate; usecs * 500 is half the bound in ns. */
	n = done * c->usecs * 500u / (uint64_t)dt;
	/* A mark of 2 or 3 saves little, and a closed loop (one frame in
	 * flight) would pay the bound for it: below 4, no moderation. */
	return n < COAL_MIN_MARK ? 1 : n > c->frames ? c->frames : (unsigned)n;
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
