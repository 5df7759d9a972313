/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The little protocol between tests/peers/kmod_guest.c (a static program in the
 * backend guest, talking through vpnet0) and the frontend's tiny host in
 * tests/peers/kmod_net.c: UDP to KN_HOST_IP:KN_PORT, one struct kn_msg at the
 * start of each datagram (network byte order), data bytes behind it.
 *
 *   guest -> host  KN_DATA  a=seq, size bytes kn_pat(seq, i)   the host checks every one
 *   guest -> host  KN_END   a=count b=size   host answers KN_RES a=ok b=datagrams c=bad
 *   guest -> host  KN_PULL  a=first b=n c=size   host sends KN_PUSHED a=seq, data, n times
 *   guest -> host  KN_PINGME a=n b=size   host pings the guest n times (ICMP echo, one
 *                  at a time), answers KN_PINGED a=replies b=bad
 *   guest -> host  KN_HOSTILE   host posts a descriptor outside its RAM (no answer)
 */
#ifndef KMOD_PROTO_H
#define KMOD_PROTO_H

#include <stdint.h>

#define KN_HOST_IP  0x0a4d0001u	/* 10.77.0.1 */
#define KN_GUEST_IP 0x0a4d0002u	/* 10.77.0.2 */
#define KN_PORT 7001
#define KN_HOST_MAC { 0x52, 0x54, 0x00, 0x6b, 0x6d, 0x99 }
#define KN_PING_ID 0x6b6d

enum { KN_DATA = 1, KN_END, KN_RES, KN_PULL, KN_PUSHED, KN_PINGME, KN_PINGED, KN_HOSTILE };

struct kn_msg {
	uint32_t op, a, b, c;
};

/* Byte i of datagram seq: differs between neighbouring bytes and datagrams. */
static inline uint8_t kn_pat(uint32_t seq, uint32_t i)
{
	return (uint8_t)(seq * 131u + i * 7u + (i >> 8) + 1u);
}

#endif
