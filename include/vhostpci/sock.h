/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Message transport over a Unix stream socket: vhost-user framing with fds in
 * SCM_RIGHTS. Receiving is incremental, so a caller's event loop can feed a
 * non-blocking socket and never wait for a slow or hostile peer.
 *
 * Threading: one struct vp_rx per connection, used by one thread.
 */
#ifndef VHOSTPCI_SOCK_H
#define VHOSTPCI_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Receive state of one connection: bytes and fds of a partial message. The
 * caller embeds it (one per connection, no allocation); buf holds one message
 * of the largest size the transport accepts and fds the most fds one message
 * may carry: bounds of the wire, not of the library. */
struct vp_rx {
	uint8_t buf[VP_MSG_HDR_SIZE + VP_MSG_MAX_PAYLOAD];
	size_t have;   /* bytes in buf */
	size_t want;   /* bytes of the whole message, once the header is in */
	int fds[VP_MSG_MAX_FDS];
	unsigned nfds;
};

VP_API void vp_rx_init(struct vp_rx *rx);

/* Close any fds held for a partial message and forget it. */
VP_API void vp_rx_reset(struct vp_rx *rx);

/*
 * Read what the socket has and, once a whole message is in, decode it.
 * Returns 1 with *msg filled (the caller owns msg->fds), 0 if the message is
 * not complete yet (never blocks, whatever the socket mode), or a negative errno:
 * -ECONNRESET when the peer closed (also mid-message), -EMSGSIZE when more
 * than VP_MSG_MAX_FDS fds arrived (ancillary data truncated), or any
 * vp_msg_check_hdr()/vp_msg_decode() error. On every error all fds received
 * for the message are closed and rx is reset; the connection should then be
 * dropped, since the stream is no longer in step.
 */
VP_API int vp_sock_recv(int sock, struct vp_rx *rx, struct vp_msg *msg);

/*
 * Encode and send msg with its fds in one sendmsg(). Blocks on a blocking
 * socket; on a non-blocking one a short write gives -EAGAIN after the fds and
 * the first bytes went out, which breaks the stream: use blocking sends or a
 * send timeout (SO_SNDTIMEO) for control messages, which are small.
 * Returns 0, -EPIPE if the peer is gone, or an encode error.
 */
VP_API int vp_sock_send(int sock, const struct vp_msg *msg);

#ifdef __cplusplus
}
#endif
#endif
