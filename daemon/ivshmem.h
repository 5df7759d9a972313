/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * An ivshmem server for one ivshmem-doorbell device of a backend VM (stock
 * QEMU's protocol, QEMU docs/specs/ivshmem-spec.rst; Debian ships no server).
 *
 * Matching rule: ONE server (one socket path) PER DEVICE. QEMU's ivshmem
 * client says nothing when it connects, so a shared socket could only match
 * connections to devices by the order of chardev-add commands; a failed or
 * timed-out chardev-add, a chardev someone else added, or a reconnect would
 * silently shift every later device onto the wrong frontend's memory. With a
 * path of its own per device, the connection on a path belongs to the device
 * that path was made for, and nothing else is accepted on it.
 *
 * Life of a server: create(path); expect() the client (its peer id, the
 * shared-memory fd, its own vectors and those of the daemon's virtual peer)
 * BEFORE asking QEMU for chardev-add/device_add; when QEMU connects, the
 * whole setup sequence is queued and sent from the caller's loop at once
 * (QEMU reads the first three messages synchronously inside device_add, so
 * nothing may wait on its QMP answer): version 0, the client's id, -1 with
 * the shared-memory fd, the virtual peer's id once per vector with its
 * eventfd, the client's id once per vector with its own eventfd. Later,
 * set_peer() replaces the virtual peer's vectors (a disconnect of its id
 * without fd, then the id again per vector with the new eventfds).
 *
 * Every message is an int64 LE with at most one fd in SCM_RIGHTS. Sending
 * never blocks: a full socket (a QEMU that reads nothing) queues the rest,
 * resumed when the socket is writable; a queue that keeps growing drops the
 * client. Every fd sent is our own dup, closed once sent and on every other
 * path. QEMU sends nothing on this socket: whatever arrives is read,
 * counted, its fds closed, and discarded; a flood drops the client.
 *
 * Threading: none inside. One thread owns a server and calls everything.
 */
#ifndef VPD_IVSHMEM_H
#define VPD_IVSHMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Vectors per device: the daemon uses 1 + queues (docs/device.md); QEMU
 * takes up to its MSI-X limit. */
#define VPD_IVSHMEM_MAX_VECTORS 256

struct vpd_ivshmem;

/* What the next client on this server gets. The fds are borrowed: expect()
 * and set_peer() keep dups of their own. */
struct vpd_ivshmem_client {
	uint16_t id;             /* the client's peer id (its IVPosition) */
	int shm_fd;              /* its BAR2: memory whose size is a power of two */
	unsigned nvectors;       /* 1..VPD_IVSHMEM_MAX_VECTORS */
	const int *own_fds;      /* nvectors eventfds: the client's MSI-X vectors */
	uint16_t peer_id;        /* the daemon's virtual peer, != id */
	const int *peer_fds;     /* nvectors eventfds rung by the doorbell to peer_id,
				  * or NULL: no virtual peer until set_peer() */
};

/* dispatch() results, a bit mask. */
#define VPD_IVSHMEM_CONNECTED  0x1  /* the expected client connected */
#define VPD_IVSHMEM_SETUP_SENT 0x2  /* its whole setup sequence went out */
#define VPD_IVSHMEM_GONE       0x4  /* it left or was dropped: see reason() */

struct vpd_ivshmem_stats {
	bool expecting;          /* an expectation waits for its client */
	bool connected;
	size_t queued;           /* messages not yet (fully) sent */
	uint64_t accepted;       /* clients served */
	uint64_t refused;        /* connections closed at once: none expected */
	uint64_t msgs_sent, fds_sent;
	uint64_t junk_bytes, junk_fds;  /* what a client sent us (all unexpected) */
};

/*
 * Listen on path (which must not exist; made 0600). Returns 0 with *out, or
 * -EEXIST, -ENAMETOOLONG, or another negative errno.
 */
int vpd_ivshmem_create(const char *path, struct vpd_ivshmem **out);

/*
 * The one fd the caller polls for input (POLLIN/EPOLLIN, level-triggered)
 * for the server's whole life; call dispatch() when it is readable. It is an
 * epoll fd of the server's own, so the caller's interest never changes when
 * a client comes or output waits.
 */
int vpd_ivshmem_fd(const struct vpd_ivshmem *s);

/*
 * Expect the next client (see struct vpd_ivshmem_client). Checks the fds'
 * kinds (eventfds; memory of a non-zero power-of-two size, since QEMU
 * asserts on any other BAR size; the seal policy is the caller's) and dups
 * them. 0, or -EBUSY (an expectation or a client already), -EINVAL (a bad
 * value or fd, logged), -ENOMEM, -EMFILE.
 */
int vpd_ivshmem_expect(struct vpd_ivshmem *s, const struct vpd_ivshmem_client *c);

/*
 * Replace the virtual peer's vectors with fds (the expectation's nvectors
 * eventfds, borrowed). Still expecting: the new fds replace the expected
 * ones, same id. Connected: the new vectors are queued under a NEW peer id
 * (vpd_ivshmem_peer_id() says which; the old id's vectors stay with QEMU), and
 * no disconnect is ever sent: QEMU 7.2's ivshmem frees a peer's vector array
 * on a disconnect without forgetting it, writes the peer's next vectors into
 * the freed memory and frees it again when the device goes (heap corruption,
 * then an abort of the whole backend VM). 0, -ENOTCONN (neither), -EINVAL,
 * -ENOMEM, -EMFILE, -ENOSPC (VPD_IVSHMEM_MAX_PEER_ID used up: the caller
 * plugs a new function), or -EPIPE: the client was dropped here (see
 * reason()), e.g. one that stopped reading, rather than queued for without
 * bound.
 */
int vpd_ivshmem_set_peer(struct vpd_ivshmem *s, const int *fds);

/* QEMU keeps an array entry per peer id up to the highest seen: a bound. */
#define VPD_IVSHMEM_MAX_PEER_ID 64

/* The virtual peer's id now: the one a guest rings (docs/device.md daemon_peer). */
uint16_t vpd_ivshmem_peer_id(const struct vpd_ivshmem *s);

/*
 * Do what the fd is ready for: accept the client, send queued messages,
 * discard what the client sent, notice it leaving. Never blocks. Returns a
 * mask of VPD_IVSHMEM_* (0: nothing the caller must act on), or a negative
 * errno if the listening socket itself failed.
 */
int vpd_ivshmem_dispatch(struct vpd_ivshmem *s);

/* Why the last client went (GONE), "" if none did. */
const char *vpd_ivshmem_reason(const struct vpd_ivshmem *s);

void vpd_ivshmem_stats(const struct vpd_ivshmem *s, struct vpd_ivshmem_stats *st);

/* Close the client (if any) and forget the expectation: the device is being
 * unplugged, or is to be served again with a new expect(). */
void vpd_ivshmem_drop(struct vpd_ivshmem *s);

/* Close everything and unlink the socket (if it is still ours). NULL: no-op. */
void vpd_ivshmem_destroy(struct vpd_ivshmem *s);

#endif
