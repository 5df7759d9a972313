/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The daemon's QMP client against a scripted fake QEMU on a socketpair:
 * handshake, replies out of order, events between them, lines split and
 * merged, error replies, unknown ids, garbage, an over-long line, timeouts,
 * a QEMU that leaves. Time is the test's: every deadline is exact.
 */
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#define TESTUTIL_MAIN
#include "testutil.h"

#include "qmp.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, " \
		 "\"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n"

struct rec {
	unsigned n;
	int64_t tag[16];        /* the opaque each callback got, in order */
	int status[16];
	char ret[16][128];      /* "return" as compact JSON */
	char cls[16][64], desc[16][128], cmd[16][32];
	unsigned events;
	char ev[8][32], evdata[8][128];
};

/* Opaque for on_reply: the recorder and a tag saying which command it was. */
struct tagged {
	struct rec *rc;
	int tag;
};

static struct tagged tags[8];

static void *tag(struct rec *rc, int t)
{
	tags[t] = (struct tagged){ rc, t };
	return &tags[t];
}

static void on_reply(void *opaque, const struct vpd_qmp_reply *r)
{
	struct tagged *tg = opaque;
	struct rec *rc = tg->rc;
	unsigned i = rc->n++;

	if (i >= 16)
		return;
	rc->tag[i] = tg->tag;
	rc->status[i] = r->status;
	if (r->ret) {
		char *t = json_dumps(r->ret, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);

		snprintf(rc->ret[i], sizeof(rc->ret[i]), "%s", t ? t : "?");
		free(t);
	}
	snprintf(rc->cls[i], sizeof(rc->cls[i]), "%s", r->err_class);
	snprintf(rc->desc[i], sizeof(rc->desc[i]), "%s", r->err_desc);
	snprintf(rc->cmd[i], sizeof(rc->cmd[i]), "%s", r->command);
}

static void on_event(void *opaque, const char *name, json_t *data)
{
	struct rec *rc = opaque;
	unsigned i = rc->events++;

	if (i >= 8)
		return;
	snprintf(rc->ev[i], sizeof(rc->ev[i]), "%s", name);
	if (data) {
		char *t = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);

		snprintf(rc->evdata[i], sizeof(rc->evdata[i]), "%s", t ? t : "?");
		free(t);
	}
}

/* The fake QEMU end of a socketpair. */
struct fake {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void fake_send(struct fake *f, const char *s)
{
	size_t n = strlen(s);

	if (send(f->fd, s, n, MSG_NOSIGNAL) != (ssize_t)n)
		fprintf(stderr, "  fake_send failed\n");
}

/* The next line the client sent (without its newline), parsed; NULL if none
 * within the poll (the client never blocks, so everything is there already). */
static json_t *fake_read(struct fake *f)
{
	char *nl;

	for (;;) {
		ssize_t r;

		if ((nl = memchr(f->buf, '\n', f->len))) {
			size_t l = (size_t)(nl - f->buf);
			json_t *v = json_loadb(f->buf, l, 0, NULL);

			memmove(f->buf, nl + 1, f->len - l - 1);
			f->len -= l + 1;
			return v;
		}
		if (poll(&(struct pollfd){ .fd = f->fd, .events = POLLIN }, 1, 200) != 1)
			return NULL;
		r = recv(f->fd, f->buf + f->len, sizeof(f->buf) - f->len, MSG_DONTWAIT);
		if (r <= 0)
			return NULL;
		f->len += (size_t)r;
	}
}

/* The next command: checks its name, returns its id (-1 if wrong). */
static int64_t fake_expect(struct fake *f, const char *execute, json_t **args)
{
	json_t *v = fake_read(f), *id;
	int64_t r = -1;

	if (!v) {
		fprintf(stderr, "  expected %s, got nothing\n", execute);
		return -1;
	}
	id = json_object_get(v, "id");
	if (json_is_string(json_object_get(v, "execute")) &&
	    !strcmp(json_string_value(json_object_get(v, "execute")), execute) &&
	    json_is_integer(id))
		r = json_integer_value(id);
	else
		fprintf(stderr, "  expected %s\n", execute);
	if (args)
		*args = json_incref(json_object_get(v, "arguments"));
	json_decref(v);
	return r;
}

static bool fake_quiet(struct fake *f)
{
	return f->len == 0 &&
	       poll(&(struct pollfd){ .fd = f->fd, .events = POLLIN }, 1, 0) == 0;
}

/* A client on one end of a socketpair, the fake on the other; handshake done
 * when ready is set. */
static struct vpd_qmp *start(struct fake *f, struct rec *rc, bool ready)
{
	struct vpd_qmp *q = NULL;
	int sv[2];

	memset(f, 0, sizeof(*f));
	memset(rc, 0, sizeof(*rc));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		return NULL;
	f->fd = sv[1];
	if (vpd_qmp_open_fd(sv[0], 5000, 1000, &q) < 0) {
		close(sv[0]);
		close(sv[1]);
		return NULL;
	}
	vpd_qmp_set_event_cb(q, on_event, rc);
	if (!ready)
		return q;
	fake_send(f, GREETING);
	vpd_qmp_dispatch(q, 1000);
	if (fake_expect(f, "qmp_capabilities", NULL) != 0)
		fprintf(stderr, "  no qmp_capabilities with id 0\n");
	fake_send(f, "{\"return\": {}, \"id\": 0}\r\n");
	vpd_qmp_dispatch(q, 1000);
	return q;
}

static void stop(struct fake *f, struct vpd_qmp *q)
{
	vpd_qmp_close(q);
	close(f->fd);
}

/* Shorthand: a command whose reply lands in rc with tag t. */
static int64_t cmd(struct vpd_qmp *q, struct rec *rc, int t, const char *name, const char *args,
		   int timeout_ms, int64_t now)
{
	return vpd_qmp_command(q, name, args ? json_loads(args, 0, NULL) : NULL, timeout_ms, now,
			       on_reply, tag(rc, t));
}

TEST(handshake_then_commands_in_order_of_issue)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, false);
	json_t *args = NULL;
	int64_t id;

	REQUIRE(q);
	CHECK_EQ(vpd_qmp_state(q), VPD_QMP_GREETING);
	CHECK_EQ(vpd_qmp_deadline(q), 6000);              /* the handshake's */
	/* Queued before the handshake: held until READY. */
	id = cmd(q, &rc, 1, "chardev-add",
		 "{\"id\": \"c1\", \"backend\": {\"type\": \"socket\", \"data\": {\"addr\": "
		 "{\"type\": \"unix\", \"data\": {\"path\": \"/tmp/x\"}}, \"server\": false}}}",
		 0, 1000);
	CHECK_EQ(id, 1);
	CHECK_EQ(vpd_qmp_dispatch(q, 1000), VPD_QMP_GREETING);
	CHECK(fake_quiet(&f));                             /* nothing before the greeting */
	fake_send(&f, GREETING);
	CHECK_EQ(vpd_qmp_dispatch(q, 1000), VPD_QMP_NEGOTIATING);
	CHECK_EQ(fake_expect(&f, "qmp_capabilities", NULL), 0);
	CHECK(fake_quiet(&f));                             /* chardev-add waits for READY */
	fake_send(&f, "{\"return\": {}, \"id\": 0}\r\n");
	CHECK_EQ(vpd_qmp_dispatch(q, 1001), VPD_QMP_READY);
	CHECK_EQ(vpd_qmp_deadline(q), -1);
	CHECK_EQ(fake_expect(&f, "chardev-add", &args), 1);
	CHECK(json_is_string(json_object_get(args, "id")) &&
	      !strcmp(json_string_value(json_object_get(args, "id")), "c1"));
	json_decref(args);
	fake_send(&f, "{\"return\": {}, \"id\": 1}\r\n");
	vpd_qmp_dispatch(q, 1002);
	CHECK_EQ(rc.n, 1);
	CHECK_EQ(rc.status[0], 0);
	CHECK_STR(rc.ret[0], "{}");
	CHECK_STR(rc.cmd[0], "chardev-add");
	CHECK_EQ(tu_count_fds(), base + 2);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(replies_out_of_order_and_an_error)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	int64_t a, b, c;
	struct vpd_qmp_stats st;

	REQUIRE(q);
	CHECK_EQ(vpd_qmp_state(q), VPD_QMP_READY);
	a = cmd(q, &rc, 1, "object-add", "{\"qom-type\": \"memory-backend-file\", \"id\": \"m\"}",
		0, 1000);
	b = cmd(q, &rc, 2, "device_add", "{\"driver\": \"ivshmem-doorbell\", \"id\": \"d\"}",
		0, 1000);
	c = cmd(q, &rc, 3, "query-pci", NULL, 0, 1000);
	CHECK_EQ(fake_expect(&f, "object-add", NULL), a);
	CHECK_EQ(fake_expect(&f, "device_add", NULL), b);
	CHECK_EQ(fake_expect(&f, "query-pci", NULL), c);
	{
		char t[256];

		snprintf(t, sizeof(t), "{\"return\": [{\"bus\": 0}], \"id\": %lld}\r\n", (long long)c);
		fake_send(&f, t);
		snprintf(t, sizeof(t), "{\"id\": %lld, \"return\": {}}\r\n", (long long)a);
		fake_send(&f, t);
		snprintf(t, sizeof(t), "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", "
			 "\"desc\": \"Duplicate device ID 'd'\"}}\r\n", (long long)b);
		fake_send(&f, t);
	}
	CHECK_EQ(vpd_qmp_dispatch(q, 1001), VPD_QMP_READY);
	REQUIRE(rc.n == 3);
	CHECK_EQ(rc.tag[0], 3);
	CHECK_STR(rc.ret[0], "[{\"bus\":0}]");
	CHECK_EQ(rc.tag[1], 1);
	CHECK_EQ(rc.status[1], 0);
	CHECK_EQ(rc.tag[2], 2);
	CHECK_EQ(rc.status[2], -EREMOTEIO);
	CHECK_STR(rc.cls[2], "GenericError");
	CHECK_STR(rc.desc[2], "Duplicate device ID 'd'");
	CHECK_STR(rc.cmd[2], "device_add");
	vpd_qmp_stats(q, &st);
	CHECK_EQ(st.replies, 2);
	CHECK_EQ(st.errors, 1);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(events_between_replies_split_and_merged_lines)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	int64_t a, b;
	char t[512];

	REQUIRE(q);
	a = cmd(q, &rc, 1, "device_del", "{\"id\": \"d\"}", 0, 1000);
	b = cmd(q, &rc, 2, "chardev-remove", "{\"id\": \"c\"}", 0, 1000);
	CHECK_EQ(fake_expect(&f, "device_del", NULL), a);
	CHECK_EQ(fake_expect(&f, "chardev-remove", NULL), b);
	/* One event in three pieces, a dispatch after each. */
	fake_send(&f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"DEV");
	vpd_qmp_dispatch(q, 1001);
	CHECK_EQ(rc.events, 0);
	fake_send(&f, "ICE_DELETED\", \"data\": {\"device\": \"d\", \"path\": \"/machine/peri");
	vpd_qmp_dispatch(q, 1001);
	CHECK_EQ(rc.events, 0);
	fake_send(&f, "pheral/d\"}}\r");
	vpd_qmp_dispatch(q, 1001);
	CHECK_EQ(rc.events, 0);
	fake_send(&f, "\n");
	vpd_qmp_dispatch(q, 1001);
	CHECK_EQ(rc.events, 1);
	CHECK_STR(rc.ev[0], "DEVICE_DELETED");
	CHECK_STR(rc.evdata[0], "{\"device\":\"d\",\"path\":\"/machine/peripheral/d\"}");
	/* Two replies and an event in one write, the last line cut short. */
	snprintf(t, sizeof(t), "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"SHUTDOWN\", "
		 "\"data\": {\"guest\": true}, \"timestamp\": {}}\r\n{\"return\": {}, \"id\": %lld}"
		 "\r\n{\"event\": \"STOP\"", (long long)b, (long long)a);
	fake_send(&f, t);
	CHECK_EQ(vpd_qmp_dispatch(q, 1002), VPD_QMP_READY);
	REQUIRE(rc.n == 2);
	CHECK_EQ(rc.tag[0], 2);
	CHECK_EQ(rc.tag[1], 1);
	CHECK_EQ(rc.events, 2);
	CHECK_STR(rc.ev[1], "SHUTDOWN");
	fake_send(&f, ", \"timestamp\": {}}\r\n");
	vpd_qmp_dispatch(q, 1003);
	CHECK_EQ(rc.events, 3);
	CHECK_STR(rc.ev[2], "STOP");
	CHECK_STR(rc.evdata[2], "");                     /* no data member */
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(unknown_and_missing_ids_are_ignored)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	struct vpd_qmp_stats st;
	int64_t a;

	REQUIRE(q);
	a = cmd(q, &rc, 1, "query-pci", NULL, 0, 1000);
	CHECK_EQ(fake_expect(&f, "query-pci", NULL), a);
	fake_send(&f, "{\"return\": {}, \"id\": 999}\r\n");
	fake_send(&f, "{\"return\": {}, \"id\": \"1\"}\r\n");        /* a string is not ours */
	fake_send(&f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\r\n");
	fake_send(&f, "{\"return\": {}, \"id\": 0}\r\n");          /* the handshake's, again */
	CHECK_EQ(vpd_qmp_dispatch(q, 1001), VPD_QMP_READY);
	CHECK_EQ(rc.n, 0);
	vpd_qmp_stats(q, &st);
	CHECK_EQ(st.unknown_ids, 4);
	{
		char t[64];

		snprintf(t, sizeof(t), "{\"return\": {}, \"id\": %lld}\r\n", (long long)a);
		fake_send(&f, t);
	}
	vpd_qmp_dispatch(q, 1002);
	CHECK_EQ(rc.n, 1);
	CHECK_EQ(rc.status[0], 0);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

/* Each bad line closes the connection and fails what waits with -ECONNRESET. */
static void garbage_case(const char *line, bool before_greeting, const char *why)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, !before_greeting);

	if (!q) {
		CHECK(0);
		return;
	}
	cmd(q, &rc, 1, "query-pci", NULL, 0, 1000);
	cmd(q, &rc, 2, "device_del", "{\"id\": \"x\"}", 0, 1000);
	fake_send(&f, line);
	CHECK_EQ(vpd_qmp_dispatch(q, 1001), VPD_QMP_CLOSED);
	CHECK_EQ(rc.n, 2);
	CHECK_EQ(rc.status[0], -ECONNRESET);
	CHECK_EQ(rc.status[1], -ECONNRESET);
	if (!strstr(vpd_qmp_error(q), why)) {
		fprintf(stderr, "  for %s: error \"%s\", wanted \"%s\"\n", line, vpd_qmp_error(q), why);
		CHECK(0);
	}
	CHECK_EQ(vpd_qmp_fd(q), -1);
	CHECK_EQ(vpd_qmp_poll_events(q), 0);
	CHECK_EQ(vpd_qmp_deadline(q), -1);
	CHECK_EQ(cmd(q, &rc, 3, "query-pci", NULL, 0, 1000), -ENOTCONN);
	CHECK_EQ(rc.n, 2);                               /* no callback on refusal */
	CHECK_EQ(tu_count_fds(), base + 1);              /* only the fake's end left */
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(garbage_closes_the_connection)
{
	garbage_case("this is not json\r\n", false, "not JSON");
	garbage_case("[1, 2, 3]\r\n", false, "not an object");
	garbage_case("42\n", false, "not JSON");          /* jansson: objects, arrays */
	garbage_case("{\"return\": {}, \"return\": 1, \"id\": 1}\r\n", false, "not JSON");
	garbage_case("{\"hello\": 1}\r\n", false, "no QMP message");
	garbage_case("{\"return\": {}, \"error\": {}, \"id\": 1}\r\n", false, "no QMP message");
	garbage_case("{\"event\": 5}\r\n", false, "wrong shape");
	garbage_case("{\"event\": \"X\", \"data\": [1]}\r\n", false, "wrong shape");
	garbage_case("{\"error\": \"oops\", \"id\": 1}\r\n", false, "not an object");
	garbage_case(GREETING, false, "unexpected greeting");
	garbage_case("{\"event\": \"STOP\"}\r\n", true, "before the greeting");
}

TEST(nul_byte_and_capabilities_refused)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);

	REQUIRE(q);
	REQUIRE(send(f.fd, "{\"a\0\": 1}\n", 10, 0) == 10);
	CHECK_EQ(vpd_qmp_dispatch(q, 1001), VPD_QMP_CLOSED);
	CHECK(strstr(vpd_qmp_error(q), "NUL") != NULL);
	stop(&f, q);

	q = start(&f, &rc, false);
	REQUIRE(q);
	fake_send(&f, GREETING);
	vpd_qmp_dispatch(q, 1000);
	CHECK_EQ(fake_expect(&f, "qmp_capabilities", NULL), 0);
	fake_send(&f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}, "
		  "\"id\": 0}\r\n");
	CHECK_EQ(vpd_qmp_dispatch(q, 1001), VPD_QMP_CLOSED);
	CHECK(strstr(vpd_qmp_error(q), "qmp_capabilities refused: nope") != NULL);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(over_long_line_closes_the_connection)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	static char chunk[65536];
	size_t sent = 0;
	enum vpd_qmp_state s = VPD_QMP_READY;

	REQUIRE(q);
	cmd(q, &rc, 1, "query-pci", NULL, 0, 1000);
	memset(chunk, ' ', sizeof(chunk));
	chunk[0] = '{';
	/* A line that never ends: the client must give up at 1 MiB, not grow. */
	for (int i = 0; i < 64 && s != VPD_QMP_CLOSED; i++) {
		ssize_t w = send(f.fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0)
			sent += (size_t)w;
		chunk[0] = ' ';
		s = vpd_qmp_dispatch(q, 1001);
	}
	CHECK_EQ(s, VPD_QMP_CLOSED);
	CHECK(sent > VPD_QMP_MAX_LINE);
	CHECK(sent < VPD_QMP_MAX_LINE + 4 * sizeof(chunk));
	CHECK(strstr(vpd_qmp_error(q), "longer than") != NULL);
	CHECK_EQ(rc.n, 1);
	CHECK_EQ(rc.status[0], -ECONNRESET);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(a_long_line_under_the_limit_is_fine)
{
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	size_t len = 512 * 1024, off = 0;
	char *big = malloc(len + 64);
	int64_t a;

	REQUIRE(q && big);
	a = cmd(q, &rc, 1, "query-pci", NULL, 0, 1000);
	CHECK_EQ(fake_expect(&f, "query-pci", NULL), a);
	off = (size_t)sprintf(big, "{\"id\": %lld, \"return\": \"", (long long)a);
	memset(big + off, 'z', len - off);
	memcpy(big + len, "\"}\r\n", 5);
	len += 4;
	for (off = 0; off < len && vpd_qmp_state(q) == VPD_QMP_READY;) {
		ssize_t w = send(f.fd, big + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w > 0)
			off += (size_t)w;
		vpd_qmp_dispatch(q, 1001);
	}
	CHECK_EQ(vpd_qmp_state(q), VPD_QMP_READY);
	CHECK_EQ(rc.n, 1);
	CHECK_EQ(rc.status[0], 0);
	free(big);
	stop(&f, q);
}

TEST(timeouts_fire_at_their_deadline)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	struct vpd_qmp_stats st;
	int64_t a, b;
	char t[64];

	REQUIRE(q);
	a = cmd(q, &rc, 1, "device_add", "{\"driver\": \"ivshmem-plain\"}", 100, 2000);
	b = cmd(q, &rc, 2, "query-pci", NULL, 300, 2050);
	cmd(q, &rc, 3, "device_del", "{\"id\": \"y\"}", 0, 2050);   /* no timeout */
	CHECK_EQ(vpd_qmp_deadline(q), 2100);
	CHECK_EQ(vpd_qmp_dispatch(q, 2099), VPD_QMP_READY);
	CHECK_EQ(rc.n, 0);
	/* The server stops answering. */
	CHECK_EQ(vpd_qmp_dispatch(q, 2100), VPD_QMP_READY);
	CHECK_EQ(rc.n, 1);
	CHECK_EQ(rc.tag[0], 1);
	CHECK_EQ(rc.status[0], -ETIMEDOUT);
	CHECK_EQ(vpd_qmp_deadline(q), 2350);
	CHECK_EQ(vpd_qmp_dispatch(q, 2400), VPD_QMP_READY);
	CHECK_EQ(rc.n, 2);
	CHECK_EQ(rc.tag[1], 2);
	CHECK_EQ(rc.status[1], -ETIMEDOUT);
	CHECK_EQ(vpd_qmp_deadline(q), -1);
	/* A late answer finds nobody waiting: ignored and counted. */
	snprintf(t, sizeof(t), "{\"return\": {}, \"id\": %lld}\r\n", (long long)a);
	fake_send(&f, t);
	CHECK_EQ(vpd_qmp_dispatch(q, 2500), VPD_QMP_READY);
	CHECK_EQ(rc.n, 2);
	vpd_qmp_stats(q, &st);
	CHECK_EQ(st.timeouts, 2);
	CHECK_EQ(st.unknown_ids, 1);
	(void)b;
	/* The one without a timeout fails when the connection goes: QEMU closed. */
	close(f.fd);
	f.fd = -1;
	CHECK_EQ(vpd_qmp_dispatch(q, 2600), VPD_QMP_CLOSED);
	CHECK_EQ(rc.n, 3);
	CHECK_EQ(rc.status[2], -ECONNRESET);
	CHECK(strstr(vpd_qmp_error(q), "closed") != NULL);
	vpd_qmp_close(q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(handshake_timeout)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, false);

	REQUIRE(q);
	cmd(q, &rc, 1, "query-pci", NULL, 0, 1000);
	CHECK_EQ(vpd_qmp_deadline(q), 6000);
	CHECK_EQ(vpd_qmp_dispatch(q, 5999), VPD_QMP_GREETING);
	CHECK_EQ(vpd_qmp_dispatch(q, 6000), VPD_QMP_CLOSED);
	CHECK(strstr(vpd_qmp_error(q), "no greeting") != NULL);
	CHECK_EQ(rc.n, 1);
	CHECK_EQ(rc.status[0], -ECONNRESET);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

/* A callback that queues the next step, as the daemon's plug sequence does. */
static struct vpd_qmp *chain_q;
static void chain_next(void *opaque, const struct vpd_qmp_reply *r)
{
	on_reply(opaque, r);
	if (r->status == 0)
		vpd_qmp_command(chain_q, "device_add", NULL, 0, 1000, on_reply, tag(tags[1].rc, 5));
}

TEST(callbacks_may_queue_commands_and_close_cancels)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	int64_t a, b;
	char t[64];

	REQUIRE(q);
	chain_q = q;
	a = vpd_qmp_command(q, "chardev-add", NULL, 0, 1000, chain_next, tag(&rc, 1));
	CHECK_EQ(fake_expect(&f, "chardev-add", NULL), a);
	snprintf(t, sizeof(t), "{\"return\": {}, \"id\": %lld}\r\n", (long long)a);
	fake_send(&f, t);
	vpd_qmp_dispatch(q, 1001);
	b = fake_expect(&f, "device_add", NULL);
	CHECK_EQ(b, a + 1);
	CHECK_EQ(rc.n, 1);
	vpd_qmp_close(q);                                 /* device_add still waits */
	CHECK_EQ(rc.n, 2);
	CHECK_EQ(rc.tag[1], 5);
	CHECK_EQ(rc.status[1], -ECANCELED);
	close(f.fd);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(output_waits_for_a_slow_reader)
{
	int base = tu_count_fds();
	struct fake f;
	struct rec rc;
	struct vpd_qmp *q = start(&f, &rc, true);
	static char val[32768];
	json_t *v;
	int n = 0, got = 0;

	REQUIRE(q);
	memset(val, 'v', sizeof(val) - 1);
	/* Queue far more than the socket holds: nothing blocks, POLLOUT is asked. */
	for (n = 0; n < 64; n++) {
		cmd(q, &rc, 1, "object-add", NULL, 0, 1000);
		vpd_qmp_command(q, "qom-set", json_pack("{s:s}", "value", val), 0, 1000, NULL, NULL);
	}
	CHECK(vpd_qmp_poll_events(q) & POLLOUT);
	while ((v = fake_read(&f))) {
		got++;
		json_decref(v);
		if (vpd_qmp_poll_events(q) & POLLOUT)
			vpd_qmp_dispatch(q, 1001);
	}
	CHECK_EQ(got, 2 * n);
	CHECK_EQ(vpd_qmp_poll_events(q), POLLIN);
	stop(&f, q);
	CHECK_EQ(tu_count_fds(), base);
}

TEST(connect_by_path)
{
	int base = tu_count_fds();
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vpd_qmp *q = NULL;
	char dir[] = "/tmp/vp-qmp-test.XXXXXX";
	int l, c;

	REQUIRE(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/qmp.sock", dir);
	CHECK_EQ(vpd_qmp_connect(sa.sun_path, 1000, 0, &q), -ENOENT);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 1) == 0);
	CHECK_EQ(vpd_qmp_connect(sa.sun_path, 1000, 0, &q), 0);
	c = accept(l, NULL, NULL);
	REQUIRE(c >= 0 && q);
	CHECK(send(c, GREETING, strlen(GREETING), 0) > 0);
	CHECK_EQ(poll(&(struct pollfd){ .fd = vpd_qmp_fd(q), .events = vpd_qmp_poll_events(q) },
		      1, 1000), 1);
	CHECK_EQ(vpd_qmp_dispatch(q, 1), VPD_QMP_NEGOTIATING);
	vpd_qmp_close(q);
	close(c);
	close(l);
	unlink(sa.sun_path);
	rmdir(dir);
	CHECK_EQ(tu_count_fds(), base);
}
