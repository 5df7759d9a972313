/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Asynchronous QMP client (see qmp.h).
 *
 * Security model: QEMU's QMP output is peer input. A line is buffered up to
 * VPD_QMP_MAX_LINE bytes and no further; reading stops after READ_BUDGET
 * bytes per dispatch so a chatty QEMU cannot hold the loop. Each line is
 * parsed by jansson (strict, duplicate keys rejected) and must be an object
 * of one of QMP's shapes, each member checked for its type before use; any
 * other line closes the connection with the reason logged. Replies are
 * matched only against ids we issued and still wait for.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "qmp.h"

#define READ_BUDGET (2 * VPD_QMP_MAX_LINE)
#define CAPS_ID 0  /* qmp_capabilities; commands count from 1 */

struct qmp_cmd {
	struct qmp_cmd *next;
	int64_t id;
	int64_t deadline;        /* -1: none */
	char *name;
	char *text;              /* the line to send; NULL once queued for output */
	vpd_qmp_reply_fn cb;
	void *opaque;
};

struct vpd_qmp {
	int fd;
	enum vpd_qmp_state state;
	int64_t handshake_deadline;
	int64_t next_id;
	struct qmp_cmd *cmds, **cmds_tail;  /* waiting, in issue order */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off, out_cap;
	vpd_qmp_event_fn event_fn;
	void *event_opaque;
	char error[256];
	struct vpd_qmp_stats st;
};

static void finish(struct qmp_cmd *c, struct vpd_qmp_reply *r)
{
	r->command = c->name;
	if (c->cb)
		c->cb(c->opaque, r);
	free(c->name);
	free(c->text);
	free(c);
}

/* Unlink the waiting command with id (NULL if none). */
static struct qmp_cmd *take(struct vpd_qmp *q, int64_t id)
{
	for (struct qmp_cmd **p = &q->cmds; *p; p = &(*p)->next) {
		struct qmp_cmd *c = *p;

		if (c->id != id)
			continue;
		*p = c->next;
		if (!*p)
			q->cmds_tail = p;
		c->next = NULL;
		return c;
	}
	return NULL;
}

/* Fail every waiting command with status; callbacks may queue new ones,
 * which fail too if the connection is closed by then. */
static void fail_all(struct vpd_qmp *q, int status)
{
	while (q->cmds) {
		struct qmp_cmd *c = take(q, q->cmds->id);
		struct vpd_qmp_reply r = { .status = status, .err_class = "", .err_desc = "" };

		finish(c, &r);
	}
}

static void shut(struct vpd_qmp *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void shut(struct vpd_qmp *q, const char *fmt, ...)
{
	va_list ap;

	if (q->state == VPD_QMP_CLOSED)
		return;
	va_start(ap, fmt);
	vsnprintf(q->error, sizeof(q->error), fmt, ap);
	va_end(ap);
	vp_log(VP_LOG_WARN, "qmp: closing: %s", q->error);
	q->state = VPD_QMP_CLOSED;
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->out_len = q->out_off = 0;
	fail_all(q, -ECONNRESET);
}

static int out_append(struct vpd_qmp *q, const char *s, size_t n)
{
	if (q->out_off && q->out_off == q->out_len)
		q->out_off = q->out_len = 0;
	if (q->out_len + n + 1 > q->out_cap) {
		size_t cap = q->out_cap ? q->out_cap : 4096;
		char *p;

		while (cap < q->out_len + n + 1)
			cap *= 2;
		if (!(p = realloc(q->out, cap)))
			return -ENOMEM;
		q->out = p;
		q->out_cap = cap;
	}
	memcpy(q->out + q->out_len, s, n);
	q->out_len += n;
	q->out[q->out_len++] = '\n';
	return 0;
}

/* Write what the socket takes. */
static void flush(struct vpd_qmp *q)
{
	while (q->fd >= 0 && q->out_off < q->out_len) {
		ssize_t r = send(q->fd, q->out + q->out_off, q->out_len - q->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				shut(q, "write: %s", strerror(errno));
			return;
		}
		q->out_off += (size_t)r;
	}
}

/* Move the commands not yet sent to the output (once READY). */
static void send_waiting(struct vpd_qmp *q)
{
	for (struct qmp_cmd *c = q->cmds; c && q->state == VPD_QMP_READY; c = c->next) {
		if (!c->text)
			continue;
		if (out_append(q, c->text, strlen(c->text)) < 0) {
			shut(q, "out of memory queueing %s", c->name);
			return;
		}
		free(c->text);
		c->text = NULL;
	}
	flush(q);
}

static int64_t make_id(const json_t *v, bool *ok)
{
	*ok = json_is_integer(v);
	return *ok ? (int64_t)json_integer_value(v) : 0;
}

static void on_reply(struct vpd_qmp *q, json_t *msg, json_t *ret, json_t *err)
{
	struct vpd_qmp_reply r = { .err_class = "", .err_desc = "" };
	json_t *jid = json_object_get(msg, "id");
	struct qmp_cmd *c = NULL;
	bool ok;
	int64_t id = make_id(jid, &ok);

	if (err && !json_is_object(err)) {
		shut(q, "an \"error\" that is not an object");
		return;
	}
	if (q->state == VPD_QMP_NEGOTIATING) {
		if (!ok || id != CAPS_ID) {
			shut(q, "a reply before qmp_capabilities was answered");
			return;
		}
		if (err) {
			json_t *d = json_object_get(err, "desc");

			shut(q, "qmp_capabilities refused: %.160s",
			     json_is_string(d) ? json_string_value(d) : "(no desc)");
			return;
		}
		q->state = VPD_QMP_READY;
		q->handshake_deadline = -1;
		vp_log(VP_LOG_DEBUG, "qmp: ready");
		send_waiting(q);
		return;
	}
	if (ok && id != CAPS_ID)
		c = take(q, id);
	if (!c) {
		char *t = jid ? json_dumps(jid, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

		q->st.unknown_ids++;
		vp_log(VP_LOG_WARN, "qmp: ignoring a reply with %s id %.40s", jid ? "unknown" : "no",
		       t ? t : "");
		free(t);
		return;
	}
	if (err) {
		json_t *cl = json_object_get(err, "class"), *d = json_object_get(err, "desc");

		r.status = -EREMOTEIO;
		r.err_class = json_is_string(cl) ? json_string_value(cl) : "";
		r.err_desc = json_is_string(d) ? json_string_value(d) : "";
		q->st.errors++;
	} else {
		r.ret = ret;
		q->st.replies++;
	}
	finish(c, &r);
}

/* One line of QEMU's output (NUL-terminated at len). */
static void on_line(struct vpd_qmp *q, char *line, size_t len)
{
	json_error_t jerr;
	json_t *msg, *v, *ret, *err;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	if (!len)
		return;
	msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!msg) {
		shut(q, "not JSON (%.100s at column %d)", jerr.text, jerr.column);
		return;
	}
	if (!json_is_object(msg)) {
		shut(q, "a JSON value that is not an object");
		goto out;
	}
	ret = json_object_get(msg, "return");
	err = json_object_get(msg, "error");
	if ((v = json_object_get(msg, "QMP"))) {
		if (q->state != VPD_QMP_GREETING || !json_is_object(v)) {
			shut(q, "an unexpected greeting");
			goto out;
		}
		q->state = VPD_QMP_NEGOTIATING;
		if (out_append(q, "{\"execute\":\"qmp_capabilities\",\"id\":0}", 37) < 0)
			shut(q, "out of memory");
		flush(q);
	} else if (q->state == VPD_QMP_GREETING) {
		shut(q, "a message before the greeting");
	} else if ((v = json_object_get(msg, "event"))) {
		json_t *data = json_object_get(msg, "data");

		if (!json_is_string(v) || (data && !json_is_object(data))) {
			shut(q, "an event of the wrong shape");
			goto out;
		}
		q->st.events++;
		if (q->event_fn)
			q->event_fn(q->event_opaque, json_string_value(v), data);
	} else if ((ret != NULL) != (err != NULL)) {
		on_reply(q, msg, ret, err);
	} else {
		shut(q, "a JSON object that is no QMP message");
	}
out:
	json_decref(msg);
}

/* Read what is there (bounded), handle every complete line. */
static void do_read(struct vpd_qmp *q)
{
	size_t budget = READ_BUDGET;

	while (q->state != VPD_QMP_CLOSED && budget) {
		size_t start = 0, want;
		ssize_t r;
		char *nl;

		if (q->in_cap - q->in_len < 4096 + 1) {
			size_t cap = q->in_cap ? q->in_cap * 2 : 16384;
			char *p;

			if (cap > VPD_QMP_MAX_LINE + 8192)
				cap = VPD_QMP_MAX_LINE + 8192;
			if (cap <= q->in_cap || !(p = realloc(q->in, cap))) {
				shut(q, "out of memory for input");
				return;
			}
			q->in = p;
			q->in_cap = cap;
		}
		want = q->in_cap - q->in_len - 1;
		if (want > budget)
			want = budget;
		r = recv(q->fd, q->in + q->in_len, want, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != ECONNRESET)
				shut(q, "read: %s", strerror(errno));
			if (errno != ECONNRESET)
				return;
		}
		if (r <= 0) {  /* ECONNRESET: it closed with our commands unread */
			shut(q, "QEMU closed the connection");
			return;
		}
		budget -= (size_t)r;
		q->in_len += (size_t)r;
		q->in[q->in_len] = '\0';
		if (memchr(q->in + q->in_len - r, '\0', (size_t)r)) {
			shut(q, "a NUL byte in QMP output");
			return;
		}
		while (q->state != VPD_QMP_CLOSED &&
		       (nl = memchr(q->in + start, '\n', q->in_len - start))) {
			*nl = '\0';
			on_line(q, q->in + start, (size_t)(nl - (q->in + start)));
			start = (size_t)(nl - q->in) + 1;
		}
		if (q->state == VPD_QMP_CLOSED)
			return;
		memmove(q->in, q->in + start, q->in_len - start);
		q->in_len -= start;
		if (q->in_len > VPD_QMP_MAX_LINE) {
			shut(q, "a line longer than %d bytes", VPD_QMP_MAX_LINE);
			return;
		}
	}
}

static void expire(struct vpd_qmp *q, int64_t now)
{
	if (q->state == VPD_QMP_CLOSED)
		return;
	if (q->handshake_deadline >= 0 && now >= q->handshake_deadline) {
		shut(q, "no %s from QEMU in time", q->state == VPD_QMP_GREETING ?
		     "greeting" : "answer to qmp_capabilities");
		return;
	}
	for (struct qmp_cmd *c = q->cmds, *next; c; c = next) {
		struct vpd_qmp_reply r = { .status = -ETIMEDOUT, .err_class = "", .err_desc = "" };

		next = c->next;
		if (c->deadline < 0 || now < c->deadline)
			continue;
		vp_log(VP_LOG_WARN, "qmp: %s (id %lld) timed out", c->name, (long long)c->id);
		q->st.timeouts++;
		take(q, c->id);
		/* The callback may queue commands (they go to the tail, after next),
		 * and sending them may close us, which fails and frees the rest. */
		finish(c, &r);
		if (q->state == VPD_QMP_CLOSED)
			return;
	}
}

int vpd_qmp_open_fd(int fd, int handshake_ms, int64_t now_ms, struct vpd_qmp **out)
{
	struct vpd_qmp *q;

	if (fd < 0 || !out)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->fd = fd;
	q->state = VPD_QMP_GREETING;
	q->handshake_deadline = handshake_ms > 0 ? now_ms + handshake_ms : -1;
	q->next_id = CAPS_ID + 1;
	q->cmds_tail = &q->cmds;
	*out = q;
	return 0;
}

int vpd_qmp_connect(const char *path, int handshake_ms, int64_t now_ms, struct vpd_qmp **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (!path || !out)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A unix connect completes at once or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		close(fd);
		return e;
	}
	e = vpd_qmp_open_fd(fd, handshake_ms, now_ms, out);
	if (e < 0)
		close(fd);
	return e;
}

void vpd_qmp_set_event_cb(struct vpd_qmp *q, vpd_qmp_event_fn fn, void *opaque)
{
	q->event_fn = fn;
	q->event_opaque = opaque;
}

int vpd_qmp_fd(const struct vpd_qmp *q)
{
	return q->fd;
}

short vpd_qmp_poll_events(const struct vpd_qmp *q)
{
	if (q->fd < 0)
		return 0;
	return POLLIN | (q->out_off < q->out_len ? POLLOUT : 0);
}

int64_t vpd_qmp_command(struct vpd_qmp *q, const char *name, json_t *args, int timeout_ms,
			int64_t now_ms, vpd_qmp_reply_fn cb, void *opaque)
{
	struct qmp_cmd *c;
	json_t *doc;

	if (q->state == VPD_QMP_CLOSED) {
		json_decref(args);
		return -ENOTCONN;
	}
	if (!name || !*name || (args && !json_is_object(args))) {
		json_decref(args);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	doc = json_object();
	if (!c || !doc || json_object_set_new(doc, "execute", json_string(name)) < 0 ||
	    (args && json_object_set(doc, "arguments", args) < 0) ||
	    json_object_set_new(doc, "id", json_integer(q->next_id)) < 0 ||
	    !(c->name = strdup(name)) || !(c->text = json_dumps(doc, JSON_COMPACT))) {
		json_decref(doc);
		json_decref(args);
		if (c) {
			free(c->name);
			free(c);
		}
		return -ENOMEM;
	}
	json_decref(doc);
	json_decref(args);
	c->id = q->next_id++;
	c->deadline = timeout_ms > 0 ? now_ms + timeout_ms : -1;
	c->cb = cb;
	c->opaque = opaque;
	*q->cmds_tail = c;
	q->cmds_tail = &c->next;
	if (q->state == VPD_QMP_READY)
		send_waiting(q);
	return c->id;
}

enum vpd_qmp_state vpd_qmp_dispatch(struct vpd_qmp *q, int64_t now_ms)
{
	if (q->state != VPD_QMP_CLOSED) {
		flush(q);
		do_read(q);
		flush(q);
	}
	expire(q, now_ms);
	return q->state;
}

int64_t vpd_qmp_deadline(const struct vpd_qmp *q)
{
	int64_t best = q->state == VPD_QMP_CLOSED ? -1 : q->handshake_deadline;

	for (const struct qmp_cmd *c = q->cmds; c; c = c->next)
		if (c->deadline >= 0 && (best < 0 || c->deadline < best))
			best = c->deadline;
	return best;
}

enum vpd_qmp_state vpd_qmp_state(const struct vpd_qmp *q)
{
	return q->state;
}

const char *vpd_qmp_error(const struct vpd_qmp *q)
{
	return q->error;
}

void vpd_qmp_stats(const struct vpd_qmp *q, struct vpd_qmp_stats *st)
{
	*st = q->st;
}

void vpd_qmp_close(struct vpd_qmp *q)
{
	if (!q)
		return;
	if (q->state != VPD_QMP_CLOSED) {
		snprintf(q->error, sizeof(q->error), "closed by the daemon");
		q->state = VPD_QMP_CLOSED;
	}
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	fail_all(q, -ECANCELED);
	free(q->in);
	free(q->out);
	free(q);
}
