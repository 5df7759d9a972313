/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pci-ctl: ask a running vhost-pcid about its servers and devices.
 *
 * Sends one command line to the control socket and reads one JSON
 * document back; --json prints it as is, otherwise it is rendered as a
 * table or a description. The daemon's answer is parsed like any input:
 * a missing or mistyped field shows as "-", never as a crash.
 *
 * Exit status: 0 success, 1 daemon not reachable or it answered an error
 * (e.g. no such device), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "json.h"
#include "vp-version.h"


#define DEFAULT_CONTROL "/run/vhost-pci/control.sock"
#define ANSWER_MAX (64u << 20)    /* far above any real answer */
#define IO_TIMEOUT_S 10

static const char usage_text[] =
"Usage: vhost-pci-ctl [--control PATH] [--json] COMMAND\n"
"\n"
"Ask a running vhost-pcid about its servers and vhost-pci devices.\n"
"\n"
"Commands:\n"
"  list        the devices: ID SERVER DIALECT STATE UUID TYPE FEATURES\n"
"  show DEV    one device: features, memory regions, rings (with a live look\n"
"              at the ring indexes and the newest descriptors)\n"
"  servers     the listening servers and how many frontends each has\n"
"  pairs       the 2.1 pairs (design=2.1) and which of their peers joined\n"
"  drop DEV    disconnect a device's frontend\n"
"  qemu-args [--shell] [--timeout SEC] SERVER [DEV[@SLOT]...]\n"
"              cold plug: reserve ready devices of SERVER (default: all that\n"
"              are in no backend VM) for a backend VM started by hand, and\n"
"              print its QEMU arguments, one per line (--shell: one shell-\n"
"              quoted line). QEMU must start within SEC seconds (default 120);\n"
"              @SLOT puts the pair at PCI slots SLOT and SLOT+1\n"
"\n"
"Options:\n"
"  -C, --control PATH  vhost-pcid's control socket\n"
"                      (default " DEFAULT_CONTROL ")\n"
"  -j, --json          print the daemon's JSON answer unchanged\n"
"  -h, --help          show this help and exit\n"
"  -V, --version       show the version and exit\n"
"\n"
"Exit status: 0 success, 1 daemon not reachable or error (e.g. no such\n"
"device), 2 usage error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vhost-pci-ctl: %s\nTry 'vhost-pci-ctl --help' for more information.\n",
		msg);
	return 2;
}

static void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die_msg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vhost-pci-ctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ------------------------------------------------------------------------ */
/* talking to the daemon */

/* The whole answer in *out (NUL-terminated); 0 or 1 (message printed). */
static int ask(const char *path, const char *line, char **out, size_t *outlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	size_t len = 0, cap = 4096, llen = strlen(line);
	char *buf = NULL;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		die_msg("control socket path %s is too long", path);
		return 1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		die_msg("socket: %s", strerror(errno));
		return 1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		die_msg("cannot reach vhost-pcid at %s: %s (is vhost-pcid running?)", path,
			strerror(errno));
		close(fd);
		return 1;
	}
	/* A stuck daemon must not hang us. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (size_t off = 0; off < llen;) {
		ssize_t n = send(fd, line + off, llen - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			die_msg("sending to vhost-pcid at %s: %s", path, strerror(errno));
			close(fd);
			return 1;
		}
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n;

		if (cap - len < 2) {
			char *nb;

			if (cap >= ANSWER_MAX) {
				die_msg("answer from vhost-pcid is too large");
				goto fail;
			}
			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				die_msg("out of memory");
				goto fail;
			}
			buf = nb;
		} else if (!buf && !(buf = malloc(cap))) {
			die_msg("out of memory");
			goto fail;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		/* A reset after the answer still leaves a whole answer to parse. */
		if (n == 0 || (n < 0 && errno == ECONNRESET && len))
			break;
		if (n < 0) {
			die_msg("reading from vhost-pcid: %s", errno == EAGAIN ?
				"timed out" : strerror(errno));
			goto fail;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	*out = buf;
	*outlen = len;
	return 0;
fail:
	free(buf);
	close(fd);
	return 1;
}

/* ------------------------------------------------------------------------ */
/* rendering */

static const char *str_or(const struct jv *v, const char *key, const char *dflt)
{
	const char *s = jv_get_str(v, key);

	return s ? s : dflt;
}

static const char *num_or(const struct jv *v, const char *key, char *buf, size_t len)
{
	const struct jv *m = jv_get(v, key);

	if (!m || m->type != JV_NUM)
		return "-";
	snprintf(buf, len, "%s", m->str);
	return buf;
}

static const char *yes(const struct jv *v, const char *key)
{
	bool b = false;

	return jv_get_bool(v, key, &b) && b ? "yes" : "no";
}

/* Array of strings joined with sep into a malloc()ed string ("-" if empty). */
static char *join(const struct jv *arr, const char *sep)
{
	size_t len = 2;
	char *s;

	if (arr && arr->type == JV_ARR)
		for (const struct jv *e = arr->child; e; e = e->next)
			if (e->type == JV_STR)
				len += strlen(e->str) + strlen(sep);
	s = malloc(len);
	if (!s)
		return NULL;
	s[0] = 0;
	if (arr && arr->type == JV_ARR)
		for (const struct jv *e = arr->child; e; e = e->next)
			if (e->type == JV_STR) {
				if (s[0])
					strcat(s, sep);
				strcat(s, e->str);
			}
	if (!s[0])
		strcpy(s, "-");
	return s;
}

#define LIST_COLS 8

/* "attached", "waiting (refused: backend full: ...)", "plugged 00:04.0+00:03.0" (a
 * backend VM's memory and info functions), or "-" without a backend. */
static char *backend_cell(const struct jv *b)
{
	const char *st, *why, *mem, *info;
	char *out, *tmp = NULL;

	if (!b || b->type != JV_OBJ)
		return strdup("-");
	st = str_or(b, "state", "?");
	mem = str_or(b, "memory_pci", NULL);
	info = str_or(b, "info_pci", NULL);
	if (mem && info) {
		if (asprintf(&tmp, "%s %s+%s", st, mem, info) < 0)
			return NULL;
		st = tmp;
	}
	why = str_or(b, "reason", NULL);
	if (!why || !*why)
		out = strdup(st);
	else if (asprintf(&out, "%s (%s)", st, why) < 0)
		out = NULL;
	free(tmp);
	return out;
}

static int print_list(const struct jv *doc)
{
	static const char *const head[LIST_COLS] = {
		"ID", "SERVER", "DIALECT", "STATE", "BACKEND", "UUID", "TYPE", "FEATURES",
	};
	const struct jv *devs = jv_get(doc, "devices");
	size_t w[LIST_COLS], n, i;
	char *(*cell)[LIST_COLS];
	const struct jv *d;

	if (!devs || devs->type != JV_ARR) {
		die_msg("bad answer from vhost-pcid: no device list");
		return 1;
	}
	n = devs->n;
	cell = calloc(n ? n : 1, sizeof(*cell));
	if (!cell) {
		die_msg("out of memory");
		return 1;
	}
	for (i = 0; i < LIST_COLS; i++)
		w[i] = strlen(head[i]);
	for (d = devs->child, i = 0; d && i < n; d = d->next, i++) {
		char num[32];

		cell[i][0] = strdup(num_or(d, "id", num, sizeof(num)));
		cell[i][1] = strdup(str_or(d, "server", "-"));
		cell[i][2] = strdup(str_or(d, "dialect", "-"));
		cell[i][3] = strdup(str_or(d, "state", "-"));
		cell[i][4] = backend_cell(jv_get(d, "backend"));
		cell[i][5] = strdup(str_or(d, "uuid", "-"));
		cell[i][6] = strdup(str_or(d, "type_name", "-"));
		cell[i][7] = join(jv_get(d, "driver_feature_names"), ",");
		for (size_t c = 0; c < LIST_COLS; c++) {
			if (!cell[i][c])
				cell[i][c] = strdup("?");
			if (cell[i][c] && strlen(cell[i][c]) > w[c])
				w[c] = strlen(cell[i][c]);
		}
	}
	for (size_t c = 0; c < LIST_COLS; c++)
		if (c + 1 < LIST_COLS)
			printf("%-*s  ", (int)w[c], head[c]);
		else
			printf("%s\n", head[c]);
	for (i = 0; i < n; i++) {
		for (size_t c = 0; c < LIST_COLS; c++) {
			const char *s = cell[i][c] ? cell[i][c] : "?";

			if (c + 1 < LIST_COLS)
				printf("%-*s  ", (int)w[c], s);
			else
				printf("%s\n", s);
			free(cell[i][c]);
		}
	}
	free(cell);
	return 0;
}

static int print_servers(const struct jv *doc)
{
	const struct jv *srvs = jv_get(doc, "servers");
	size_t wid = 2, wpath = 4;
	char a[32], b[32], c[32];

	if (!srvs || srvs->type != JV_ARR) {
		die_msg("bad answer from vhost-pcid: no server list");
		return 1;
	}
	for (const struct jv *s = srvs->child; s; s = s->next) {
		size_t l1 = strlen(str_or(s, "id", "-")), l2 = strlen(str_or(s, "path", "-"));

		wid = l1 > wid ? l1 : wid;
		wpath = l2 > wpath ? l2 : wpath;
	}
	printf("%-*s  %-*s  %-11s  %-4s  %-4s  %s\n", (int)wid, "ID", (int)wpath, "PATH",
	       "CONNECTIONS", "MAX", "MODE", "REFUSED");
	for (const struct jv *s = srvs->child; s; s = s->next)
		printf("%-*s  %-*s  %-11s  %-4s  %-4s  %s\n", (int)wid, str_or(s, "id", "-"),
		       (int)wpath, str_or(s, "path", "-"), num_or(s, "connections", a, sizeof(a)),
		       num_or(s, "max", b, sizeof(b)), str_or(s, "mode", "-"),
		       num_or(s, "refused", c, sizeof(c)));
	/* Why, for each server that refused someone. */
	for (const struct jv *s = srvs->child; s; s = s->next)
		if (jv_get_str(s, "last_refusal"))
			printf("%s: last refusal: %s\n", str_or(s, "id", "-"),
			       jv_get_str(s, "last_refusal"));
	return 0;
}

static int print_pairs(const struct jv *doc)
{
	const struct jv *prs = jv_get(doc, "pairs");
	char a[32], b[32];

	if (!prs || prs->type != JV_ARR) {
		die_msg("bad answer from vhost-pcid: no pair list");
		return 1;
	}
	printf("%-16s  %-6s  %-5s  %-5s  %-5s  %-7s  %s\n", "ID", "DESIGN", "PEER0", "PEER1",
	       "JOINS", "REFUSED", "PATH");
	for (const struct jv *p = prs->child; p; p = p->next)
		printf("%-16s  %-6s  %-5s  %-5s  %-5s  %-7s  %s\n", str_or(p, "id", "-"),
		       str_or(p, "design", "-"), yes(p, "peer0"), yes(p, "peer1"),
		       num_or(p, "joins", a, sizeof(a)), num_or(p, "refused", b, sizeof(b)),
		       str_or(p, "path", "-"));
	return 0;
}

/* "2 MiB" for a "0x200000" size. */
static void human_size(const struct jv *v, const char *key, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	uint64_t n;
	unsigned u = 0;

	if (!jv_get_hex(v, key, &n)) {
		snprintf(buf, len, "?");
		return;
	}
	while (u < 6 && n >= 1024 && n % 1024 == 0) {
		n /= 1024;
		u++;
	}
	snprintf(buf, len, "%" PRIu64 " %s", n, unit[u]);
}

static void print_live(const struct jv *live)
{
	const struct jv *descs = jv_get(live, "descriptors");
	char a[32], b[32], c[32], d[32], e[32];

	if (!live) {
		return;
	}
	if (jv_get_str(live, "error")) {
		printf("        live: %s\n", jv_get_str(live, "error"));
		return;
	}
	printf("        live: avail idx %s (flags %s), used idx %s (flags %s), in flight %s\n",
	       num_or(live, "avail_idx", a, sizeof(a)), num_or(live, "avail_flags", b, sizeof(b)),
	       num_or(live, "used_idx", c, sizeof(c)), num_or(live, "used_flags", d, sizeof(d)),
	       num_or(live, "in_flight", e, sizeof(e)));
	if (!descs || descs->type != JV_ARR || !descs->n) {
		printf("        no descriptors made available yet\n");
		return;
	}
	printf("        newest descriptors:\n");
	for (const struct jv *x = descs->child; x; x = x->next) {
		bool in = false;
		const char *fl = str_or(x, "flag_names", "");

		jv_get_bool(x, "in_memory", &in);
		printf("          head %-5s addr %-18s len %-8s %s%s%s\n",
		       num_or(x, "head", a, sizeof(a)), str_or(x, "addr", "-"),
		       num_or(x, "len", b, sizeof(b)), fl, *fl ? " " : "",
		       in ? "(in memory)" : "(OUTSIDE the frontend's memory)");
	}
}

static int print_device(const struct jv *doc)
{
	const struct jv *d = jv_get(doc, "device"), *regs, *rings;
	char a[32], b[32], c[32];
	char *names;

	if (!d || d->type != JV_OBJ) {
		die_msg("bad answer from vhost-pcid: no device");
		return 1;
	}
	printf("device %s\n", num_or(d, "id", a, sizeof(a)));
	printf("  server:     %s\n", str_or(d, "server", "-"));
	printf("  dialect:    %s\n", str_or(d, "dialect", "-"));
	printf("  state:      %s (generation %s)\n", str_or(d, "state", "-"),
	       num_or(d, "generation", a, sizeof(a)));
	names = backend_cell(jv_get(d, "backend"));
	printf("  backend:    %s\n", names ? names : "?");
	free(names);
	if (str_or(jv_get(d, "backend"), "kind", NULL))
		printf("  backend VM: %s, memory function %s (peer %s), info function %s\n",
		       str_or(jv_get(d, "backend"), "path", "-"),
		       str_or(jv_get(d, "backend"), "memory_pci", "-"),
		       num_or(jv_get(d, "backend"), "memory_peer", b, sizeof(b)),
		       str_or(jv_get(d, "backend"), "info_pci", "-"));
	if (jv_get(jv_get(d, "backend"), "stop_timeouts"))
		printf("  stop acks:  %s missed (backend did not ack STOP within stop-timeout)\n",
		       num_or(jv_get(d, "backend"), "stop_timeouts", a, sizeof(a)));
	printf("  uuid:       %s\n", str_or(d, "uuid", "-"));
	printf("  type:       %s (%s)\n", str_or(d, "type_name", "-"),
	       num_or(d, "type", a, sizeof(a)));
	printf("  peer:       pid %s, uid %s\n", num_or(d, "peer_pid", a, sizeof(a)),
	       num_or(d, "peer_uid", b, sizeof(b)));
	if (jv_get_str(d, "mac"))
		printf("  mac:        %s\n", jv_get_str(d, "mac"));
	printf("  features:   device %s, driver %s, protocol %s\n",
	       str_or(d, "device_features", "-"), str_or(d, "driver_features", "-"),
	       str_or(d, "protocol_features", "-"));
	names = join(jv_get(d, "driver_feature_names"), " ");
	printf("  negotiated: %s\n", names ? names : "?");
	free(names);
	names = join(jv_get(d, "protocol_feature_names"), " ");
	if (names && strcmp(names, "-"))
		printf("  protocol:   %s\n", names);
	free(names);

	regs = jv_get(d, "regions");
	printf("  regions:    %zu\n", regs && regs->type == JV_ARR ? regs->n : 0);
	if (regs && regs->type == JV_ARR) {
		for (const struct jv *r = regs->child; r; r = r->next) {
			human_size(r, "size", c, sizeof(c));
			printf("    [%s] gpa %s size %s (%s) uaddr %s offset %s %s%s\n",
			       num_or(r, "index", a, sizeof(a)), str_or(r, "gpa", "-"),
			       str_or(r, "size", "-"), c, str_or(r, "uaddr", "-"),
			       str_or(r, "offset", "-"), str_or(r, "prot", "-"),
			       strcmp(yes(r, "fd"), "yes") ? " (no fd)" : "");
		}
	}
	rings = jv_get(d, "rings");
	printf("  rings:      %zu\n", rings && rings->type == JV_ARR ? rings->n : 0);
	if (rings && rings->type == JV_ARR) {
		for (const struct jv *r = rings->child; r; r = r->next) {
			printf("    [%s] num %s desc %s avail %s used %s\n",
			       num_or(r, "index", a, sizeof(a)), num_or(r, "num", b, sizeof(b)),
			       str_or(r, "desc", "-"), str_or(r, "avail", "-"),
			       str_or(r, "used", "-"));
			printf("        last_avail_idx %s, enabled %s, started %s, kick fd %s, call fd %s\n",
			       num_or(r, "last_avail_idx", c, sizeof(c)), yes(r, "enabled"),
			       yes(r, "started"), yes(r, "kick_fd"), yes(r, "call_fd"));
			print_live(jv_get(r, "live"));
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */

static bool is_id(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 20 && strspn(s, "0123456789") == n;
}

/* A word of the control line: printable, no blank. */
static bool is_word(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* "qemu-args [--shell] [--timeout SEC] SERVER [DEV[@SLOT]...]" into a control line. */
static int qemu_args_line(int argc, char **argv, int optind_, char *line, size_t len,
			  bool *shell)
{
	const char *server = NULL, *timeout = NULL;
	size_t o;

	for (int i = optind_; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--shell")) {
			*shell = true;
		} else if (!strcmp(a, "--timeout")) {
			if (++i >= argc)
				return usage_error("option '--timeout' needs an argument");
			timeout = argv[i];
		} else if (!strncmp(a, "--timeout=", 10)) {
			timeout = a + 10;
		} else if (a[0] == '-') {
			return usage_error("unknown option '%s' of qemu-args", a);
		} else if (!server) {
			if (!is_word(a))
				return usage_error("'%s' is not a server id", a);
			server = a;
		}
	}
	if (!server)
		return usage_error("'qemu-args' needs a server id (see 'vhost-pci-ctl servers')");
	if (timeout && !is_id(timeout))
		return usage_error("--timeout '%s': a number of seconds", timeout);
	o = (size_t)snprintf(line, len, "qemu-args %s", server);
	if (timeout)
		o += (size_t)snprintf(line + o, o < len ? len - o : 0, " timeout=%s", timeout);
	server = NULL;
	for (int i = optind_; i < argc; i++) {
		const char *a = argv[i], *at = strchr(a, '@');
		char id[32];

		if (!strcmp(a, "--timeout")) {
			i++;
			continue;
		}
		if (a[0] == '-')
			continue;
		if (!server) {
			server = a;
			continue;
		}
		snprintf(id, sizeof(id), "%.*s", at ? (int)(at - a) : (int)strlen(a), a);
		if (!is_id(id) || (at && (!at[1] || !is_word(at + 1))))
			return usage_error("'%s' is not DEV or DEV@SLOT (see 'vhost-pci-ctl list')", a);
		o += (size_t)snprintf(line + o, o < len ? len - o : 0, " %s", a);
	}
	if (o + 2 > len)
		return usage_error("too many devices for one request");
	strcpy(line + o, "\n");
	return 0;
}

/* POSIX shell quoting: bare if only safe bytes, else in single quotes. */
static void put_shell(const char *s)
{
	if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		    ",._=/:@+-%") == strlen(s)) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*s);
	}
	putchar('\'');
}

/* The arguments, one per line or as one shell line; what was reserved on stderr. */
static int print_qemu_args(const struct jv *doc, bool shell)
{
	const struct jv *args = jv_get(doc, "args"), *devs = jv_get(doc, "devices");
	uint64_t t = 0;
	bool first = true;

	if (!args || args->type != JV_ARR) {
		die_msg("bad answer from vhost-pcid: no \"args\"");
		return 1;
	}
	jv_get_u64(doc, "timeout_s", &t);
	for (const struct jv *d = devs && devs->type == JV_ARR ? devs->child : NULL; d;
	     d = d->next) {
		char buf[32];

		fprintf(stderr, "vhost-pci-ctl: device %s reserved as %s until QEMU connects to %s "
			"(within %" PRIu64 " s)\n", num_or(d, "id", buf, sizeof(buf)),
			str_or(d, "qemu_id", "-"), str_or(d, "socket", "-"), t);
	}
	for (const struct jv *a = args->child; a; a = a->next) {
		if (a->type != JV_STR)
			continue;
		if (!shell) {
			puts(a->str);
			continue;
		}
		if (!first)
			putchar(' ');
		put_shell(a->str);
		first = false;
	}
	if (shell)
		putchar('\n');
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "control", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *control = DEFAULT_CONTROL, *cmd, *arg = NULL, *err;
	bool json = false, shell = false;
	char line[300], perr[128], *answer = NULL;
	struct jv *doc = NULL;
	size_t len = 0;
	int c, r;

	opterr = 0;
	/* '+': options stop at the command, so "show 3" needs no "--". */
	while ((c = getopt_long(argc, argv, "+:C:jhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			control = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("vhost-pci-ctl %s\n", VP_VERSION);
			return 0;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command given (list, show DEV, servers, pairs, drop DEV, "
				   "qemu-args SERVER)");
	cmd = argv[optind++];
	if (!strcmp(cmd, "qemu-args")) {
		if ((r = qemu_args_line(argc, argv, optind, line, sizeof(line), &shell)))
			return r;
		optind = argc;
	} else if (!strcmp(cmd, "show") || !strcmp(cmd, "drop")) {
		if (optind >= argc)
			return usage_error("'%s' needs a device id (see 'vhost-pci-ctl list')", cmd);
		arg = argv[optind++];
		if (!is_id(arg))
			return usage_error("'%s' is not a device id (a number, see 'vhost-pci-ctl list')",
					   arg);
	} else if (strcmp(cmd, "list") && strcmp(cmd, "servers") && strcmp(cmd, "pairs")) {
		return usage_error("unknown command '%s' (list, show DEV, servers, pairs, drop DEV, "
				   "qemu-args SERVER)", cmd);
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);

	if (strcmp(cmd, "qemu-args"))
		snprintf(line, sizeof(line), "%s%s%s\n", cmd, arg ? " " : "", arg ? arg : "");
	if (ask(control, line, &answer, &len))
		return 1;
	if (jv_parse(answer, len, &doc, perr, sizeof(perr)) < 0) {
		die_msg("bad answer from vhost-pcid: %s", perr);
		free(answer);
		return 1;
	}
	err = jv_get_str(doc, "error");
	if (json)
		fwrite(answer, 1, len, stdout);
	if (err) {
		die_msg("%s", err);
		r = 1;
	} else if (json) {
		r = 0;
	} else if (!strcmp(cmd, "list")) {
		r = print_list(doc);
	} else if (!strcmp(cmd, "servers")) {
		r = print_servers(doc);
	} else if (!strcmp(cmd, "pairs")) {
		r = print_pairs(doc);
	} else if (!strcmp(cmd, "show")) {
		r = print_device(doc);
	} else if (!strcmp(cmd, "qemu-args")) {
		r = print_qemu_args(doc, shell);
	} else {
		uint64_t id = 0;

		jv_get_u64(doc, "dropped", &id);
		printf("dropped device %" PRIu64 "\n", id);
		r = 0;
	}
	jv_free(doc);
	free(answer);
	if (fflush(stdout) != 0 && !r) {
		die_msg("writing output: %s", strerror(errno));
		r = 1;
	}
	return r;
}
