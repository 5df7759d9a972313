/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Server specs and the config file.
 *
 * Everything here comes from the command line or a config file, i.e. from
 * the administrator, but it is still checked fully so that a typo gives a
 * message naming the key (and file:line) instead of a daemon that half
 * starts.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "vhostpci/server.h"
#include "spec.h"


static int spec_err(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int spec_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Ids show up in tables, logs and JSON: keep them plain. */
static bool id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > VPD_ID_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._:+@-", *s))
			return false;
	return true;
}

static bool parse_uint(const char *s, int base, unsigned long long max,
		       unsigned long long *out)
{
	char *end;

	/* strtoull accepts leading blanks and '-': we do not. */
	if (base == 16 ? !isxdigit((unsigned char)s[0]) : !isdigit((unsigned char)s[0]))
		return false;
	errno = 0;
	*out = strtoull(s, &end, base);
	return !errno && !*end && *out <= max;
}

static int parse_uid(const char *v, uid_t *uid)
{
	unsigned long long n;
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (parse_uint(v, 10, UINT_MAX - 1, &n)) {
		*uid = (uid_t)n;
		return 0;
	}
	if (getpwnam_r(v, &pw, buf, sizeof(buf), &res) || !res)
		return -ENOENT;
	*uid = res->pw_uid;
	return 0;
}

static int set_key(struct vpd_spec *s, const char *key, const char *v, unsigned *seen,
		   char *err, size_t errlen)
{
	static const char *const keys[] = {
		"path", "id", "connections", "mode", "uid", "uuid", "features", "backend",
		"allow-unsealed", "backend-grace", "stop-timeout", "backend-vm",
		"unplug-timeout", "design", "qemu", "qemu1", "qmp", "qmp1", "offloads",
		"queues",
	};
	unsigned long long n;
	unsigned k;

	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (!strcmp(key, keys[k]))
			break;
	if (k == sizeof(keys) / sizeof(keys[0]))
		return spec_err(err, errlen, -EINVAL,
				"unknown key '%s' (known: path, id, connections, mode, uid, uuid, "
				"features, backend, allow-unsealed, backend-grace, stop-timeout, "
				"backend-vm, unplug-timeout, design, qemu, qemu1, qmp, qmp1, offloads, "
				"queues)",
				key);
	if (*seen & (1u << k))
		return spec_err(err, errlen, -EINVAL, "key '%s' given twice", key);
	*seen |= 1u << k;
	if (!*v)
		return spec_err(err, errlen, -EINVAL, "key '%s' has an empty value", key);

	switch (k) {
	case 0:
		if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return spec_err(err, errlen, -EINVAL,
					"path '%s' is too long for a Unix socket (max %zu bytes)",
					v, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		s->path = strdup(v);
		return s->path ? 0 : -ENOMEM;
	case 1:
		if (!id_ok(v))
			return spec_err(err, errlen, -EINVAL,
					"id '%s' is invalid: use 1-%d of A-Z a-z 0-9 . _ : + @ -",
					v, VPD_ID_MAX);
		s->id = strdup(v);
		return s->id ? 0 : -ENOMEM;
	case 2:
		if (!parse_uint(v, 10, VP_SERVER_MAX_CONNECTIONS, &n) || n == 0)
			return spec_err(err, errlen, -EINVAL,
					"connections '%s' is not a number in 1..%u", v,
					VP_SERVER_MAX_CONNECTIONS);
		s->connections = (unsigned)n;
		return 0;
	case 3:
		/* 0 would mean "default" to the library: refuse it. */
		if (!parse_uint(v, 8, 0777, &n) || n == 0)
			return spec_err(err, errlen, -EINVAL,
					"mode '%s' is not an octal file mode in 0001..0777", v);
		s->mode = (mode_t)n;
		return 0;
	case 4:
		if (parse_uid(v, &s->uid) < 0)
			return spec_err(err, errlen, -EINVAL,
					"uid '%s' is neither a number nor a known user", v);
		s->have_uid = true;
		return 0;
	case 5:
		if (vp_uuid_parse(v, s->uuid) < 0)
			return spec_err(err, errlen, -EINVAL,
					"uuid '%s' is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
					v);
		s->have_uuid = true;
		return 0;
	case 7:
		if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return spec_err(err, errlen, -EINVAL,
					"backend '%s' is too long for a Unix socket (max %zu bytes)",
					v, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		s->backend = strdup(v);
		return s->backend ? 0 : -ENOMEM;
	case 8:
		if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "1"))
			s->allow_unsealed = true;
		else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "0"))
			s->allow_unsealed = false;
		else
			return spec_err(err, errlen, -EINVAL,
					"allow-unsealed '%s' is neither on nor off", v);
		return 0;
	case 9:
		if (!parse_uint(v, 10, 3600, &n))
			return spec_err(err, errlen, -EINVAL,
					"backend-grace '%s' is not a number of seconds in 0..3600 "
					"(0: never drop)", v);
		s->backend_grace_ms = (unsigned)n * 1000;
		return 0;
	case 10:
		if (!parse_uint(v, 10, VPD_STOP_TIMEOUT_MAX_MS, &n) || n == 0)
			return spec_err(err, errlen, -EINVAL,
					"stop-timeout '%s' is not a number of milliseconds in 1..%d",
					v, VPD_STOP_TIMEOUT_MAX_MS);
		s->stop_timeout_ms = (unsigned)n;
		return 0;
	case 11:
		if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return spec_err(err, errlen, -EINVAL,
					"backend-vm '%s' is too long for a Unix socket (max %zu bytes)",
					v, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		s->backend_vm = strdup(v);
		return s->backend_vm ? 0 : -ENOMEM;
	case 12:
		if (!parse_uint(v, 10, VPD_UNPLUG_TIMEOUT_MAX_MS, &n) || n == 0)
			return spec_err(err, errlen, -EINVAL,
					"unplug-timeout '%s' is not a number of milliseconds in 1..%d",
					v, VPD_UNPLUG_TIMEOUT_MAX_MS);
		s->unplug_timeout_ms = (unsigned)n;
		return 0;
	case 13:
		/* The vhost-pci design's 2.0 (a server for frontends) or 2.1 (a
		 * broker for a symmetric pair, docs/window21.md). */
		if (strcmp(v, "2.0") && strcmp(v, "2.1"))
			return spec_err(err, errlen, -EINVAL, "design '%s' is not 2.0 or 2.1", v);
		s->pair21 = !strcmp(v, "2.1");
		return 0;
	case 14:
	case 15:
	case 16:
	case 17: {
		/* qemu=: peer 0 is a QEMU guest; qemu1=: peer 1 too; qmp=, qmp1=:
		 * where to hot-plug them. */
		char **slot = k < 16 ? &s->qemu[k - 14] : &s->qmp[k - 16];

		if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return spec_err(err, errlen, -EINVAL,
					"%s '%s' is too long for a Unix socket (max %zu bytes)",
					keys[k], v, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		*slot = strdup(v);
		return *slot ? 0 : -ENOMEM;
	}
	case 6:
		if (!(v[0] == '0' && (v[1] == 'x' || v[1] == 'X') ?
		      parse_uint(v + 2, 16, ULLONG_MAX, &n) :
		      parse_uint(v, 10, ULLONG_MAX, &n)))
			return spec_err(err, errlen, -EINVAL,
					"features '%s' is not a number (e.g. 0x140008000)", v);
		if (!(n & (1ull << VIRTIO_F_VERSION_1)))
			return spec_err(err, errlen, -EINVAL,
					"features %s lack VERSION_1 (bit 32), which every frontend must negotiate",
					v);
		s->features = n;
		return 0;
	case 18:
		if (!strcmp(v, "none"))
			s->offloads = 0;
		else if (!strcmp(v, "csum"))
			s->offloads = VP_SERVER_OFFLOAD_CSUM;
		else if (!strcmp(v, "tso"))
			s->offloads = VP_SERVER_OFFLOAD_TSO;
		else
			return spec_err(err, errlen, -EINVAL,
					"offloads '%s' is not none, csum or tso", v);
		return 0;
	case 19:
		if (!parse_uint(v, 10, VP_DEV_MAX_QUEUE_PAIRS, &n) || !n)
			return spec_err(err, errlen, -EINVAL,
					"queues '%s' is not a number of queue pairs in 1..%d", v,
					VP_DEV_MAX_QUEUE_PAIRS);
		s->queues = (unsigned)n;
		return 0;
	}
	return -EINVAL; /* not reached: k indexes keys[] */
}

uint64_t vpd_spec_features(const struct vpd_spec *s)
{
	return s->features ? s->features : VP_SERVER_DEFAULT_FEATURES | s->offloads;
}

int vpd_spec_parse(const char *text, struct vpd_spec *s, char *err, size_t errlen)
{
	size_t len = strlen(text);
	char *tok = malloc(len + 1);
	unsigned seen = 0, item = 0;
	const char *p = text;
	int e = 0;

	memset(s, 0, sizeof(*s));
	s->backend_grace_ms = VPD_BACKEND_GRACE_MS;
	s->stop_timeout_ms = VPD_STOP_TIMEOUT_MS;
	s->unplug_timeout_ms = VPD_UNPLUG_TIMEOUT_MS;
	if (!tok)
		return spec_err(err, errlen, -ENOMEM, "out of memory");
	if (!len) {
		e = spec_err(err, errlen, -EINVAL, "empty server spec (need at least path=...)");
		goto out;
	}
	while (!e) {
		size_t n = 0;
		char *eq;

		/* One item; ",," stands for a comma inside it, as in QEMU. */
		while (*p) {
			if (*p == ',' && p[1] == ',') {
				tok[n++] = ',';
				p += 2;
			} else if (*p == ',') {
				break;
			} else {
				tok[n++] = *p++;
			}
		}
		tok[n] = 0;
		if (!n) {
			e = spec_err(err, errlen, -EINVAL, "empty item in server spec '%s'", text);
			break;
		}
		eq = strchr(tok, '=');
		if (eq) {
			*eq = 0;
			e = set_key(s, tok, eq + 1, &seen, err, errlen);
		} else if (item == 0) {
			e = set_key(s, "path", tok, &seen, err, errlen);
		} else {
			e = spec_err(err, errlen, -EINVAL, "'%s' is not key=value", tok);
		}
		item++;
		if (!*p)
			break;
		p++; /* the separating comma */
		if (!*p)
			e = spec_err(err, errlen, -EINVAL, "server spec '%s' ends with a comma", text);
	}
	if (!e && !s->path)
		e = spec_err(err, errlen, -EINVAL, "server spec '%s' has no path=", text);
	if (!e && s->pair21 && (s->backend || s->backend_vm || s->have_uuid || s->features ||
				s->offloads || s->allow_unsealed))
		e = spec_err(err, errlen, -EINVAL, "design=2.1 serves a pair of peers: no backend=, "
			     "backend-vm=, uuid=, features=, offloads= or allow-unsealed=");
	/*
	 * Packed rings only where a backend can take them: a vp-vm backend on
	 * backend= (the native protocol carries their positions, 1.1). A backend
	 * VM learns positions from split used indexes (the info window's
	 * stopped[] and its kernel driver), and without a backend nobody drives
	 * the rings: not offered there. Never offered by default.
	 */
	if (!e && (s->features & (1ull << VIRTIO_F_RING_PACKED)) && !s->backend)
		e = spec_err(err, errlen, -EINVAL, "features= offers RING_PACKED (bit 34): only "
			     "a backend= (a vp-vm backend) drives packed rings; %s",
			     s->backend_vm ? "a backend VM (backend-vm=: the info window and "
			     "vhost_pci_net.ko) drives split rings only" : "this server has none");
	if (!e && s->features && s->offloads)
		e = spec_err(err, errlen, -EINVAL, "features= and offloads= exclude each other: "
			     "features= names every bit offered");
	if (!e && (s->qemu[0] || s->qemu[1]) && !s->pair21)
		e = spec_err(err, errlen, -EINVAL, "qemu= gives a QEMU guest one half of a 2.1 "
			     "pair: it needs design=2.1");
	if (!e && s->qemu[1] && !s->qemu[0])
		e = spec_err(err, errlen, -EINVAL, "qemu1= makes peer 1 a QEMU guest as well as "
			     "peer 0: it needs qemu= (peer 0) first");
	for (unsigned i = 0; !e && i < 2; i++)
		if (s->qmp[i] && !s->qemu[i])
			e = spec_err(err, errlen, -EINVAL, "%s hot-plugs the slot of the QEMU guest "
				     "of %s: it needs that key too", i ? "qmp1=" : "qmp=",
				     i ? "qemu1=" : "qemu=");
	if (!e && s->qmp[1] && !strcmp(s->qmp[0], s->qmp[1]))
		e = spec_err(err, errlen, -EINVAL, "qmp= and qmp1= name the same socket '%s': "
			     "a guest cannot be both peers of a pair", s->qmp[1]);
	if (!e && s->qemu[1] && !strcmp(s->qemu[0], s->qemu[1]))
		e = spec_err(err, errlen, -EINVAL, "qemu= and qemu1= name the same socket '%s': "
			     "each QEMU guest needs its own", s->qemu[1]);
	/* Multiqueue reaches userspace backends: the native handshake carries
	 * VP_PCI_MAX_RINGS rings, the backend-VM device one pair. */
	if (!e && s->queues > 1 && (s->pair21 || s->backend_vm))
		e = spec_err(err, errlen, -EINVAL, "queues=%u: %s", s->queues, s->pair21 ?
			     "design=2.1 has no virtio queue pairs" :
			     "a backend VM's vhost-pci device carries one queue pair");
	if (!e && s->queues > VP_PCI_MAX_RINGS / 2 && s->backend)
		e = spec_err(err, errlen, -EINVAL, "queues=%u: the native handshake to backend= "
			     "carries at most %d queue pairs", s->queues, VP_PCI_MAX_RINGS / 2);
	if (!e && s->backend && s->backend_vm)
		e = spec_err(err, errlen, -EINVAL, "backend= and backend-vm= exclude each other: "
			     "a device is driven by a userspace backend or by a backend VM");
	if (!e && !s->id) {
		const char *base = strrchr(s->path, '/');

		base = base ? base + 1 : s->path;
		if (!id_ok(base))
			e = spec_err(err, errlen, -EINVAL,
				     "cannot use '%s' (from the path) as server id: give id=", base);
		else if (!(s->id = strdup(base)))
			e = -ENOMEM;
	}
	if (!e) {
		if (!s->connections)
			s->connections = VP_SERVER_DEFAULT_CONNECTIONS;
		if (!s->mode)
			s->mode = 0600;
	}
	if (e == -ENOMEM)
		spec_err(err, errlen, e, "out of memory");
out:
	free(tok);
	if (e)
		vpd_spec_free(s);
	return e;
}

void vpd_spec_free(struct vpd_spec *s)
{
	free(s->path);
	free(s->id);
	free(s->backend);
	free(s->backend_vm);
	free(s->qemu[0]);
	free(s->qemu[1]);
	free(s->qmp[0]);
	free(s->qmp[1]);
	memset(s, 0, sizeof(*s));
}

int vpd_spec_list_add(struct vpd_spec_list *l, struct vpd_spec *s, char *err, size_t errlen)
{
	for (unsigned i = 0; i < l->n; i++) {
		if (!strcmp(l->v[i].id, s->id))
			return spec_err(err, errlen, -EEXIST, "server id '%s' is used twice", s->id);
		if (!strcmp(l->v[i].path, s->path))
			return spec_err(err, errlen, -EEXIST, "socket path '%s' is used twice",
					s->path);
	}
	if (l->n == l->cap) {
		unsigned cap = l->cap ? l->cap * 2 : 4;
		struct vpd_spec *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return spec_err(err, errlen, -ENOMEM, "out of memory");
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *s;
	memset(s, 0, sizeof(*s));
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* A new key changes the size: compare it below, then update the number. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct vpd_spec) == 152,
	       "struct vpd_spec changed: compare the new key in vpd_spec_equal()");

bool vpd_spec_equal(const struct vpd_spec *a, const struct vpd_spec *b)
{
	return str_eq(a->path, b->path) && str_eq(a->id, b->id) &&
	       a->connections == b->connections && a->mode == b->mode &&
	       a->have_uid == b->have_uid && (!a->have_uid || a->uid == b->uid) &&
	       a->have_uuid == b->have_uuid &&
	       (!a->have_uuid || !memcmp(a->uuid, b->uuid, sizeof(a->uuid))) &&
	       a->features == b->features && a->offloads == b->offloads &&
	       a->queues == b->queues &&
	       str_eq(a->backend, b->backend) &&
	       str_eq(a->backend_vm, b->backend_vm) && str_eq(a->qemu[0], b->qemu[0]) &&
	       str_eq(a->qemu[1], b->qemu[1]) && str_eq(a->qmp[0], b->qmp[0]) &&
	       str_eq(a->qmp[1], b->qmp[1]) &&
	       a->allow_unsealed == b->allow_unsealed &&
	       a->backend_grace_ms == b->backend_grace_ms &&
	       a->stop_timeout_ms == b->stop_timeout_ms &&
	       a->unplug_timeout_ms == b->unplug_timeout_ms && a->pair21 == b->pair21;
}

void vpd_spec_list_free(struct vpd_spec_list *l)
{
	for (unsigned i = 0; i < l->n; i++)
		vpd_spec_free(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int vpd_config_load(const char *file, struct vpd_spec_list *l, char *err, size_t errlen)
{
	FILE *f = fopen(file, "re");
	char *line = NULL, msg[512];
	size_t cap = 0;
	unsigned lineno = 0;
	ssize_t n;
	int e = 0;

	if (!f) {
		e = -errno;
		return spec_err(err, errlen, e, "cannot open config file %s: %s", file,
				strerror(-e));
	}
	while (!e && (n = getline(&line, &cap, f)) >= 0) {
		char *p = line, *end = line + n;
		struct vpd_spec s;

		lineno++;
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = 0;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		if (strlen(p) != (size_t)(end - p)) {
			e = spec_err(err, errlen, -EINVAL, "%s:%u: NUL byte in line", file, lineno);
			break;
		}
		if (!strcmp(p, "server")) {
			e = spec_err(err, errlen, -EINVAL, "%s:%u: 'server' needs a SPEC (path=...)",
				     file, lineno);
			break;
		}
		if (strncmp(p, "server", 6) || !isspace((unsigned char)p[6])) {
			e = spec_err(err, errlen, -EINVAL, "%s:%u: expected 'server SPEC', got '%.40s'",
				     file, lineno, p);
			break;
		}
		p += 6;
		while (isspace((unsigned char)*p))
			p++;
		e = vpd_spec_parse(p, &s, msg, sizeof(msg));
		if (!e) {
			e = vpd_spec_list_add(l, &s, msg, sizeof(msg));
			vpd_spec_free(&s);
		}
		if (e)
			spec_err(err, errlen, e, "%s:%u: %s", file, lineno, msg);
	}
	if (!e && ferror(f))
		e = spec_err(err, errlen, -EIO, "%s: read error", file);
	free(line);
	fclose(f);
	return e;
}
