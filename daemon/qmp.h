/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * An asynchronous QMP client: how vhost-pcid drives a backend VM's QEMU
 * (chardev-add, object-add, device_add, device_del, query-pci, ...).
 *
 * Non-blocking throughout, driven by the caller's loop: poll vpd_qmp_fd()
 * for vpd_qmp_poll_events(), and call vpd_qmp_dispatch() when it is ready
 * or when vpd_qmp_deadline() has passed. The client reads QEMU's greeting,
 * sends qmp_capabilities, then sends queued commands, each with an id of
 * its own, and matches replies by id (in any order). Every command gets
 * exactly one callback: its reply, an error reply, its timeout, the loss of
 * the connection, or vpd_qmp_close(). Events go to the event callback.
 *
 * The connection is not reconnected here: once state() is VPD_QMP_CLOSED
 * (error() says why), the caller decides whether to connect again.
 *
 * QEMU is a peer: lines are bounded (VPD_QMP_MAX_LINE), each must be one
 * JSON object of a known shape (greeting, return, error, event); anything
 * else is logged and closes the connection. A reply whose id matches no
 * waiting command (e.g. one that already timed out) is logged, counted and
 * ignored.
 *
 * Threading: none inside. One thread owns a client and calls everything;
 * callbacks run inside dispatch()/close()/command() on that thread. A
 * callback may queue commands; it must not close the client.
 */
#ifndef VPD_QMP_H
#define VPD_QMP_H

#include <stdint.h>
#include <jansson.h>

#define VPD_QMP_MAX_LINE (1024 * 1024)

enum vpd_qmp_state {
	VPD_QMP_GREETING,        /* connected, waiting for QEMU's greeting */
	VPD_QMP_NEGOTIATING,     /* qmp_capabilities sent */
	VPD_QMP_READY,           /* commands flow */
	VPD_QMP_CLOSED,          /* gone: see vpd_qmp_error() */
};

struct vpd_qmp;

struct vpd_qmp_reply {
	/* 0: "return"; -EREMOTEIO: QEMU answered "error"; -ETIMEDOUT: no answer
	 * within the command's timeout; -ECONNRESET: the connection closed first
	 * (vpd_qmp_error() says why); -ECANCELED: vpd_qmp_close(). */
	int status;
	json_t *ret;             /* status 0: the "return" value (borrowed) */
	const char *err_class;   /* -EREMOTEIO: QEMU's class and text, "" if absent */
	const char *err_desc;
	const char *command;     /* the command's name */
};

typedef void (*vpd_qmp_reply_fn)(void *opaque, const struct vpd_qmp_reply *r);
/* data is the event's "data" member (borrowed), or NULL. */
typedef void (*vpd_qmp_event_fn)(void *opaque, const char *event, json_t *data);

struct vpd_qmp_stats {
	uint64_t replies, errors, timeouts, events;
	uint64_t unknown_ids;    /* replies matching no waiting command */
};

/*
 * Connect to a QMP unix socket (non-blocking). handshake_ms bounds the time
 * to READY (0: no bound), counted from now_ms (the caller's monotonic clock,
 * milliseconds; every other call takes the same clock). 0 with *out, or a
 * negative errno (-ENOENT, -ECONNREFUSED, -EAGAIN when QEMU's backlog is
 * full: try later).
 */
int vpd_qmp_connect(const char *path, int handshake_ms, int64_t now_ms, struct vpd_qmp **out);

/* The same on a connected stream socket fd (taken over, closed by close()). */
int vpd_qmp_open_fd(int fd, int handshake_ms, int64_t now_ms, struct vpd_qmp **out);

void vpd_qmp_set_event_cb(struct vpd_qmp *q, vpd_qmp_event_fn fn, void *opaque);

/* The fd to poll, and the poll events (POLLIN, plus POLLOUT while output
 * waits) to ask for; -1 and 0 once closed. Ask again after every call. */
int vpd_qmp_fd(const struct vpd_qmp *q);
short vpd_qmp_poll_events(const struct vpd_qmp *q);

/*
 * Queue command name with args (a JSON object, stolen, or NULL). It is sent
 * once the connection is READY. timeout_ms > 0: cb gets -ETIMEDOUT if no
 * answer came within timeout_ms of now_ms. cb may be NULL. Returns the
 * command's id (> 0), or -ENOTCONN (closed), -EINVAL, -ENOMEM; cb is not
 * called when this fails.
 */
int64_t vpd_qmp_command(struct vpd_qmp *q, const char *name, json_t *args, int timeout_ms,
			int64_t now_ms, vpd_qmp_reply_fn cb, void *opaque);

/* Read, parse, deliver, write and expire what is due. Never blocks. Returns
 * the state afterwards. */
enum vpd_qmp_state vpd_qmp_dispatch(struct vpd_qmp *q, int64_t now_ms);

/* The earliest deadline (a command's timeout or the handshake's), -1: none. */
int64_t vpd_qmp_deadline(const struct vpd_qmp *q);

enum vpd_qmp_state vpd_qmp_state(const struct vpd_qmp *q);
/* Why the connection closed ("" while it is open). */
const char *vpd_qmp_error(const struct vpd_qmp *q);
void vpd_qmp_stats(const struct vpd_qmp *q, struct vpd_qmp_stats *st);

/* Fail every waiting command with -ECANCELED, close, free. NULL: no-op. */
void vpd_qmp_close(struct vpd_qmp *q);

#endif
