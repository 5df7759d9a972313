/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Wait sets: sleep until any of many links, or one of the caller's own fds,
 * may have work. One poll() over everything: ports (every link and control
 * socket of each), bare vp_net / vp_netfe / vp_net21 objects, and fds (a TAP device, a
 * pipe, a timerfd). Nothing is time-sliced: every object is armed before
 * the sleep and disarmed after it, with the race check in between (a
 * buffer posted after the last look and before the sleep is seen by the
 * arm, or its kick stays in its eventfd until the poll), so no wake-up is
 * lost whatever the number of objects.
 *
 * Modes are the objects' own (vp_port_config.mode, vp_net_new(),
 * vp_netfe_config.mode), taken over the objects that want work:
 *  - one in VP_NET_POLL: the wait returns at once (the caller busy-polls,
 *    and reads its own fds itself: they are not looked at, a polling pass
 *    must stay short);
 *  - else one in VP_NET_ADAPTIVE: look at the rings for about 50 us of our
 *    own time, after the first 2 us yielding the CPU between looks (other
 *    runnable tasks on the core run meanwhile; at most 1 ms in all), then
 *    sleep;
 *  - VP_NET_IRQ: arm and sleep at once.
 * vp_net_wait() and vp_netfe_wait() are this same wait over one object.
 *
 * Use: after a pass over the data path found nothing, vp_waitset_wait();
 * then vp_port_control() the ports (cheap when idle) and look again. A
 * wait may return early: the caller just looks again.
 *
 * Threading: one wait set, one thread, the thread that owns its objects.
 */
#ifndef VHOSTPCI_WAITSET_H
#define VHOSTPCI_WAITSET_H

#include <stdbool.h>

#include "common.h"
#include "net.h"
#include "net21.h"
#include "port.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vp_waitset;

VP_API int vp_waitset_new(struct vp_waitset **out);
/* Frees the set only: its ports, objects and fds stay the caller's. */
VP_API void vp_waitset_free(struct vp_waitset *ws);

/*
 * Add a member. Returns its id (>= 0, for vp_waitset_want(),
 * vp_waitset_revents() and vp_waitset_remove()) or -ENOMEM, -EINVAL
 * (NULL object, negative fd). An object member starts wanting rx only.
 * The object must outlive its membership (remove it before freeing it).
 */
VP_API int vp_waitset_add_port(struct vp_waitset *ws, struct vp_port *p);
VP_API int vp_waitset_add_net(struct vp_waitset *ws, struct vp_net *n);
VP_API int vp_waitset_add_netfe(struct vp_waitset *ws, struct vp_netfe *fe);
VP_API int vp_waitset_add_net21(struct vp_waitset *ws, struct vp_net21 *n);
/* events: POLLIN, POLLOUT, ... as for poll(). */
VP_API int vp_waitset_add_fd(struct vp_waitset *ws, int fd, short events);
VP_API int vp_waitset_remove(struct vp_waitset *ws, int id);

/*
 * What an object member waits for: want_rx, frames to receive; want_tx,
 * room to send (the peer posted buffers, or took what we sent). Neither:
 * the member's data path is not waited on (a port's control socket still
 * is). Change it before each wait as the loop's needs change. -EINVAL for
 * an id that is not an object member.
 */
VP_API int vp_waitset_want(struct vp_waitset *ws, int id, bool want_rx, bool want_tx);

/*
 * Wait until a member may have work, or timeout_ms (-1: no limit) passed;
 * a port also ends the wait when its reconnect or drain timer is due.
 * Returns > 0 when something may need a look (work, a control message, a
 * caller's fd ready, a signal), 0 on timeout, or a negative errno: -EIO if
 * a bare object's ring is broken (a port's broken link returns > 0: its
 * control takes it down), or poll()'s error.
 */
VP_API int vp_waitset_wait(struct vp_waitset *ws, int timeout_ms);

/* After a wait: the poll() revents of an fd member (0 if it did not fire,
 * or the wait did not sleep), or -EINVAL for an id that is not an fd. */
VP_API int vp_waitset_revents(const struct vp_waitset *ws, int id);

#ifdef __cplusplus
}
#endif
#endif
