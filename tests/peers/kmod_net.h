/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A tiny host behind a vp_netfe frontend for the guest kernel driver's data test
 * (kmod_host.c "data"): ARP and ICMP echo for KN_HOST_IP, the kmod_proto.h UDP
 * bulk protocol, host-initiated pings, and on request a hostile descriptor.
 * One thread, the caller's loop.
 */
#ifndef KMOD_NET_H
#define KMOD_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "vhostpci/net.h"

struct kn_host;

/* kick_fd: the frontend's transmitq kick (written after the hostile
 * descriptor), or -1 for no hostile request; loop: that descriptor chains to
 * itself instead of pointing outside our RAM; strict: a lost notification
 * (kn_host_idle()) fails kn_host_end(). */
int kn_host_new(struct kn_host **out, struct vp_netfe *fe, void *ram, uint64_t ram_size,
		const struct vp_frontend_info *fi, int kick_fd, bool loop, bool strict);
void kn_host_free(struct kn_host *kn);
/* Receive, answer, send what is queued. Returns how long the caller may
 * sleep in poll() on the frontend's fds (<= wait_ms; armed), or -EIO. */
int kn_host_run(struct kn_host *kn, int wait_ms);
/* The caller's sleep ran out with no fd ready, still armed (before
 * vp_netfe_disarm()): look for notifications the guest owed and did not
 * send. A used index past our armed used_event with no call within 1 s is
 * a missed wake-up; transmitq frames not taken for 2 s while driver_ok (the
 * driver page has DRIVER_OK) a missed kick (kicked again, so the run goes
 * on). Each is printed with the ring's indexes. May block up to 1 s. */
void kn_host_idle(struct kn_host *kn, bool driver_ok);
bool kn_host_hostile_sent(const struct kn_host *kn);
/* The rings' indexes and our state, for a test that hangs (SIGUSR1). */
void kn_host_dump(const struct kn_host *kn);
/* CLOCK_MONOTONIC in ms. */
int64_t kn_now_ms(void);
/* Summary; -EIO if any frame was wrong. */
int kn_host_end(struct kn_host *kn);

#endif
