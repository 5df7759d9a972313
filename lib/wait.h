/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The one sleep of the library (internal, not installed): vp_net_wait(),
 * vp_netfe_wait() and vp_waitset_wait() all go through vp_wait_core().
 *
 * A data object (a vp_net, a vp_netfe) is waited on through its ops; a
 * port hands the core its objects and control fds (vp_port_wait_prep()).
 */
#ifndef VP_LIB_WAIT_H
#define VP_LIB_WAIT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "vhostpci/net.h"
#include "vhostpci/port.h"

struct vp_wait_ops {
	enum vp_net_mode (*mode)(const void *obj);
	/* Has rings to wait on (a frontend before start has none). */
	bool (*live)(const void *obj);
	/* Work visible without arming: a cheap look, also the adaptive spin. */
	bool (*ready)(void *obj, bool rx, bool tx);
	/* Ask for notifications, then look once more: > 0 work is there, 0
	 * armed, < 0 broken. Then disarm, whatever arm returned. */
	int (*arm)(void *obj, bool rx, bool tx);
	void (*disarm)(void *obj);
	/* The fd that wakes the rx (tx false) or tx side, -1 if none. */
	int (*fd)(const void *obj, bool tx);
	/* One of its fds woke the sleep: count it in its stats. */
	void (*woken)(void *obj);
	/* After an arm that returned 0: the longest the sleep may last, in ns
	 * (moderation: a partial batch is taken after that), -1 unbounded.
	 * NULL: always unbounded. */
	int64_t (*hold)(const void *obj);
};

extern const struct vp_wait_ops vp_net_wait_ops;
extern const struct vp_wait_ops vp_netfe_wait_ops;
extern const struct vp_wait_ops vp_net21_wait_ops;

struct vp_wait_item {
	const struct vp_wait_ops *ops;
	void *obj;
	bool rx, tx;
};

/*
 * Wait on nit objects plus pf[0..nfixed) (the caller's and control fds;
 * their revents are filled, or zeroed when no sleep happened). pf and
 * owner have room for cap entries: nfixed + 2 per item; item fds go after
 * the fixed ones. Returns > 0 (may have work), 0 (timeout) or a negative
 * errno (an object is broken, or poll() failed; EINTR counts as > 0).
 */
int vp_wait_core(const struct vp_wait_item *it, unsigned nit, struct pollfd *pf,
		 unsigned short *owner, unsigned nfixed, unsigned cap, int timeout_ms);

/* vp_wait_core() over one object and no fixed fds: a bare object's wait. */
int vp_wait_one(const struct vp_wait_ops *ops, void *obj, bool rx, bool tx, int timeout_ms);

/* A port in VP_NET_POLL mode with a link up: a wait returns at once. */
bool vp_port_busy_polls(const struct vp_port *p);

/* How many items and fixed fds a port may hand the core at most. */
void vp_port_wait_cap(const struct vp_port *p, unsigned *items, unsigned *fds);

/*
 * A port's part of a wait: its objects that want work (up to max_it) and
 * its control fds (up to max_fd, POLLIN); *timeout_ms lowered to its next
 * timer. Returns the number of items, or -EAGAIN if the port needs
 * control now (a broken link): do not sleep.
 */
int vp_port_wait_prep(struct vp_port *p, bool rx, bool tx, struct vp_wait_item *it,
		      unsigned max_it, struct pollfd *pf, unsigned max_fd, unsigned *nfd,
		      int *timeout_ms);

#endif
