/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests of vhost-pcid's pieces: JSON writer/reader, server specs, names. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#define TESTUTIL_MAIN
#include "testutil.h"

#include "json.h"
#include "names.h"
#include "spec.h"
#include "vhostpci/server.h"

/* Parse text, or NULL (and a message on stderr). */
static struct jv *parse(const char *text)
{
	struct jv *v = NULL;
	char err[128];

	if (jv_parse(text, strlen(text), &v, err, sizeof(err)) < 0) {
		fprintf(stderr, "  parse error: %s\n", err);
		return NULL;
	}
	return v;
}

static bool rejects(const char *text)
{
	struct jv *v = NULL;
	char err[128];
	int r = jv_parse(text, strlen(text), &v, err, sizeof(err));

	jv_free(v);
	return r == -EINVAL && v == NULL && err[0];
}

TEST(json_writer_shapes_document)
{
	struct jw w;
	const char *doc;
	struct jv *v;
	uint64_t n = 0;
	bool b = false;

	jw_init(&w);
	jw_obj_begin(&w, NULL);
	jw_str(&w, "s", "x");
	jw_u64(&w, "big", INT64_MAX);  /* jansson's largest integer */
	jw_i64(&w, "neg", -5);
	jw_hex(&w, "h", 0x140008000ull);
	jw_bool(&w, "t", true);
	jw_null(&w, "z");
	jw_arr_begin(&w, "empty");
	jw_arr_end(&w);
	jw_arr_begin(&w, "a");
	jw_u64(&w, NULL, 1);
	jw_obj_begin(&w, NULL);
	jw_obj_end(&w);
	jw_arr_end(&w);
	jw_obj_end(&w);
	doc = jw_finish(&w, NULL);
	REQUIRE(doc);
	CHECK(doc[strlen(doc) - 1] == '\n');
	v = parse(doc);
	REQUIRE(v);
	CHECK(!strcmp(jv_get_str(v, "s"), "x"));
	CHECK(jv_get_u64(v, "big", &n) && n == INT64_MAX);
	CHECK(!jv_get_u64(v, "neg", &n));
	CHECK(jv_get_hex(v, "h", &n) && n == 0x140008000ull);
	CHECK(jv_get_bool(v, "t", &b) && b);
	CHECK(jv_get(v, "z") && jv_get(v, "z")->type == JV_NULL);
	CHECK(jv_get(v, "empty")->type == JV_ARR && jv_get(v, "empty")->n == 0);
	CHECK(jv_get(v, "a")->n == 2);
	CHECK(!jv_get(v, "missing"));
	jv_free(v);
	jw_free(&w);
}

TEST(json_writer_escapes_everything)
{
	/* quote, backslash, newline, tab, ESC, DEL, valid 2- and 4-byte UTF-8,
	 * then bytes that are not UTF-8: a lone continuation, an overlong '/',
	 * an encoded surrogate and a truncated sequence at the end. */
#define FFFD "\xef\xbf\xbd"
	const char in[] = "a\"b\\c\nd\te\x1b" "f\x7f" "\xc3\xa9\xf0\x9f\x98\x80"
		"\x80\xc0\xaf\xed\xa0\x80\xe2\x82";
	const char want[] = "a\"b\\c\nd\te\x1b" "f\x7f" "\xc3\xa9\xf0\x9f\x98\x80"
		FFFD FFFD FFFD FFFD FFFD FFFD FFFD FFFD;
#undef FFFD
	struct jw w;
	const char *doc;
	struct jv *v;

	jw_init(&w);
	jw_obj_begin(&w, NULL);
	jw_str(&w, in, in);    /* keys are escaped too */
	jw_obj_end(&w);
	doc = jw_finish(&w, NULL);
	REQUIRE(doc);
	CHECK(strcasestr(doc, "\\u001b") && strcasestr(doc, "\\u007f"));  /* hex: any case */
	for (const char *p = doc; *p; p++)
		CHECK(*p != '\x1b' && *p != '\x7f');
	v = parse(doc);
	REQUIRE(v);
	REQUIRE(v->child);
	CHECK(!strcmp(v->child->key, want));
	CHECK(!strcmp(v->child->str, want));
	jv_free(v);
	jw_free(&w);
}

TEST(json_writer_refuses_misuse)
{
	struct jw w;

	jw_init(&w);
	jw_arr_begin(&w, NULL);
	jw_str(&w, "key-in-array", "x");
	jw_arr_end(&w);
	CHECK(jw_finish(&w, NULL) == NULL);
	jw_free(&w);

	jw_init(&w);
	jw_obj_begin(&w, NULL);
	jw_str(&w, NULL, "no key in object");
	jw_obj_end(&w);
	CHECK(jw_finish(&w, NULL) == NULL);
	jw_free(&w);

	jw_init(&w);
	jw_obj_begin(&w, NULL);
	CHECK(jw_finish(&w, NULL) == NULL);   /* unclosed */
	jw_free(&w);

	/* Past int64_t: not representable (jw_hex() is for such values). */
	jw_init(&w);
	jw_obj_begin(&w, NULL);
	jw_u64(&w, "big", (uint64_t)INT64_MAX + 1);
	jw_obj_end(&w);
	CHECK(w.err && jw_finish(&w, NULL) == NULL);
	jw_free(&w);

	jw_init(&w);
	for (int i = 0; i < JW_MAX_DEPTH + 2; i++)
		jw_arr_begin(&w, NULL);
	CHECK(w.err);
	jw_free(&w);
}

TEST(json_error_doc)
{
	size_t len = 0;
	char *doc = jw_error_doc("no device \"7\"", &len);
	struct jv *v;

	REQUIRE(doc);
	CHECK(len == strlen(doc));
	v = parse(doc);
	REQUIRE(v);
	CHECK(!strcmp(jv_get_str(v, "error"), "no device \"7\""));
	jv_free(v);
	free(doc);
}

TEST(json_reader_accepts_rfc8259)
{
	struct jv *v = parse(" {\"a\" : [1, -2.5e+3, 0, true, false, null, "
			     "\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\"], \"b\":{}} \n");
	const struct jv *a, *e;

	REQUIRE(v);
	a = jv_get(v, "a");
	REQUIRE(a && a->type == JV_ARR && a->n == 7);
	e = a->child;
	CHECK(e->type == JV_NUM && !strcmp(e->str, "1"));
	e = e->next;
	CHECK(e->type == JV_NUM && strtod(e->str, NULL) == -2500.0);
	e = e->next->next;
	CHECK(e->type == JV_BOOL && e->b);
	e = e->next->next->next;
	CHECK(e->type == JV_STR && !strcmp(e->str, "\xc3\xa9\xf0\x9f\x98\x80/\b\f\n\r\t"));
	CHECK(jv_get(v, "b")->type == JV_OBJ);
	jv_free(v);
}

TEST(json_reader_rejects_malformed)
{
	char deep[2 * (JV_MAX_DEPTH + 10) + 1];

	CHECK(rejects(""));
	CHECK(rejects("{"));
	CHECK(rejects("{\"a\":1,}"));
	CHECK(rejects("[1,]"));
	CHECK(rejects("[1 2]"));
	CHECK(rejects("{\"a\" 1}"));
	CHECK(rejects("{1:2}"));
	CHECK(rejects("{} {}"));
	CHECK(rejects("tru"));
	CHECK(rejects("nul"));
	CHECK(rejects("01"));
	CHECK(rejects("1."));
	CHECK(rejects("-"));
	CHECK(rejects("1e"));
	CHECK(rejects("\"abc"));
	CHECK(rejects("\"a\x01\""));
	CHECK(rejects("\"\\x\""));
	CHECK(rejects("\"\\u12\""));
	CHECK(rejects("\"\\u00zz\""));
	CHECK(rejects("\"\\u0000\""));       /* NUL: our strings are C strings */
	CHECK(rejects("\"\\udc00\""));       /* lone low surrogate */
	CHECK(rejects("\"\\ud800x\""));      /* high surrogate without its pair */
	CHECK(rejects("\"\\ud800\\u0041\""));
	CHECK(rejects("\"\xff\""));          /* not UTF-8 */
	CHECK(rejects("\"\xc0\xaf\""));      /* overlong */
	CHECK(rejects("\"\xed\xa0\x80\""));  /* encoded surrogate */
	CHECK(rejects("\"\xe2\x82\""));      /* truncated */
	CHECK(rejects("{\"big\":18446744073709551616}"));  /* past int64_t */
	memset(deep, '[', JV_MAX_DEPTH + 10);
	memset(deep + JV_MAX_DEPTH + 10, ']', JV_MAX_DEPTH + 10);
	deep[sizeof(deep) - 1] = 0;
	CHECK(rejects(deep));
	/* Embedded NUL in the input buffer is not whitespace. */
	{
		struct jv *v = NULL;
		char err[64];

		CHECK(jv_parse("{}\0", 3, &v, err, sizeof(err)) == -EINVAL && !v);
	}
}

TEST(json_typed_lookups_check_types)
{
	struct jv *v = parse("{\"n\":\"5\",\"h\":\"0x\",\"h2\":\"0x12345678901234567\",\"f\":1.5,"
			     "\"neg\":-1,\"b\":1}");
	uint64_t n;
	bool b;

	REQUIRE(v);
	CHECK(!jv_get_u64(v, "n", &n));
	CHECK(!jv_get_hex(v, "h", &n));
	CHECK(!jv_get_hex(v, "h2", &n));
	CHECK(!jv_get_u64(v, "f", &n));
	CHECK(!jv_get_u64(v, "neg", &n));
	CHECK(!jv_get_bool(v, "b", &b));
	CHECK(!jv_get_str(v, "f"));
	CHECK(!jv_get(jv_get(v, "n"), "x"));
	jv_free(v);
}

TEST(spec_defaults_and_keys)
{
	struct vpd_spec s;
	char err[256];

	REQUIRE(vpd_spec_parse("path=/run/vhost-pci/net0.sock", &s, err, sizeof(err)) == 0);
	CHECK(!strcmp(s.path, "/run/vhost-pci/net0.sock"));
	CHECK(!strcmp(s.id, "net0.sock"));
	CHECK_EQ(s.connections, 32);
	CHECK_EQ(s.mode, 0600);
	CHECK(!s.have_uid && !s.have_uuid && s.features == 0);
	CHECK(s.backend == NULL);
	CHECK_EQ(s.stop_timeout_ms, VPD_STOP_TIMEOUT_MS);
	CHECK_EQ(s.unplug_timeout_ms, VPD_UNPLUG_TIMEOUT_MS);
	CHECK(s.backend_vm == NULL);
	vpd_spec_free(&s);

	REQUIRE(vpd_spec_parse("path=/a.sock,backend=/run/vm2/backend.sock,stop-timeout=250", &s,
			       err, sizeof(err)) == 0);
	CHECK(s.backend && !strcmp(s.backend, "/run/vm2/backend.sock"));
	CHECK_EQ(s.stop_timeout_ms, 250);
	vpd_spec_free(&s);

	/* Packed rings: offered only when asked for, and only to a backend=. */
	CHECK(!(vpd_spec_features(&s) & (1ull << VIRTIO_F_RING_PACKED)));
	REQUIRE(vpd_spec_parse("path=/a.sock,backend=/b.sock,features=0x500000000", &s, err,
			       sizeof(err)) == 0);
	CHECK_EQ(vpd_spec_features(&s), 0x500000000ull);
	vpd_spec_free(&s);

	REQUIRE(vpd_spec_parse("path=/a.sock,backend-vm=/run/vm2/qmp.sock,unplug-timeout=500", &s,
			       err, sizeof(err)) == 0);
	CHECK(s.backend_vm && !strcmp(s.backend_vm, "/run/vm2/qmp.sock") && !s.backend);
	CHECK_EQ(s.unplug_timeout_ms, 500);
	vpd_spec_free(&s);

	REQUIRE(vpd_spec_parse("path=/tmp/a,,b.sock,id=net0,connections=1024,mode=0660,uid=0,"
			       "uuid=12345678-9abc-def0-1234-56789abcdef0,features=0x100000000",
			       &s, err, sizeof(err)) == 0);
	CHECK(!strcmp(s.path, "/tmp/a,b.sock"));
	CHECK(!strcmp(s.id, "net0"));
	CHECK_EQ(s.connections, 1024);
	CHECK_EQ(s.mode, 0660);
	CHECK(s.have_uid && s.uid == 0);
	CHECK(s.have_uuid && s.uuid[0] == 0x12 && s.uuid[15] == 0xf0);
	CHECK(s.features == 0x100000000ull);
	vpd_spec_free(&s);

	/* A bare first item is the path; user names work for uid. */
	REQUIRE(vpd_spec_parse("/tmp/x.sock,uid=root,features=4294967296", &s, err,
			       sizeof(err)) == 0);
	CHECK(!strcmp(s.path, "/tmp/x.sock") && s.have_uid && s.uid == 0);
	CHECK(s.features == 1ull << VIRTIO_F_VERSION_1);
	vpd_spec_free(&s);

	/* offloads=: the backend's offloads on top of the default; none is the
	 * default's own set (a backend that declares nothing). */
	REQUIRE(vpd_spec_parse("path=/o.sock,offloads=tso", &s, err, sizeof(err)) == 0);
	CHECK(s.offloads == VP_SERVER_OFFLOAD_TSO && !s.features);
	CHECK(vpd_spec_features(&s) == (VP_SERVER_DEFAULT_FEATURES | VP_SERVER_OFFLOAD_TSO));
	CHECK(vpd_spec_features(&s) & (1ull << VIRTIO_NET_F_GUEST_TSO6));
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/o.sock,offloads=csum", &s, err, sizeof(err)) == 0);
	CHECK(vpd_spec_features(&s) == (VP_SERVER_DEFAULT_FEATURES | (1ull << VIRTIO_NET_F_CSUM) |
					 (1ull << VIRTIO_NET_F_GUEST_CSUM)));
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/o.sock,offloads=none", &s, err, sizeof(err)) == 0);
	CHECK(vpd_spec_features(&s) == VP_SERVER_DEFAULT_FEATURES);
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/o.sock", &s, err, sizeof(err)) == 0);
	CHECK(vpd_spec_features(&s) == VP_SERVER_DEFAULT_FEATURES);
	CHECK(s.queues == 0);  /* one pair, no MQ */
	vpd_spec_free(&s);

	/* queues=: multiqueue, for userspace backends (docs/protocol.md). */
	REQUIRE(vpd_spec_parse("path=/q.sock,queues=8", &s, err, sizeof(err)) == 0);
	CHECK(s.queues == 8);
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/q.sock,queues=2,backend=/b", &s, err, sizeof(err)) == 0);
	CHECK(s.queues == 2);
	vpd_spec_free(&s);

	/* design=: 2.0 is a server (the default), 2.1 a pair broker. */
	REQUIRE(vpd_spec_parse("path=/p.sock,design=2.1,mode=0660", &s, err, sizeof(err)) == 0);
	CHECK(s.pair21 && s.mode == 0660);
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/p.sock,design=2.0", &s, err, sizeof(err)) == 0);
	CHECK(!s.pair21);
	vpd_spec_free(&s);
	/* qemu=: peer 0 is a QEMU guest; qemu1=: both peers are. */
	REQUIRE(vpd_spec_parse("path=/p.sock,design=2.1,qemu=/q0", &s, err, sizeof(err)) == 0);
	CHECK(s.qemu[0] && !strcmp(s.qemu[0], "/q0") && !s.qemu[1]);
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/p.sock,design=2.1,qemu=/q0,qemu1=/q1", &s, err,
			       sizeof(err)) == 0);
	CHECK(s.qemu[0] && !strcmp(s.qemu[0], "/q0") && s.qemu[1] && !strcmp(s.qemu[1], "/q1"));
	vpd_spec_free(&s);
	/* qmp=: hot-plug that guest's slot. */
	REQUIRE(vpd_spec_parse("path=/p.sock,design=2.1,qemu=/q0,qmp=/m0", &s, err,
			       sizeof(err)) == 0);
	CHECK(s.qmp[0] && !strcmp(s.qmp[0], "/m0") && !s.qmp[1]);
	vpd_spec_free(&s);
}

static bool spec_fails(const char *text, const char *msg_part)
{
	struct vpd_spec s;
	char err[256] = "";
	int r = vpd_spec_parse(text, &s, err, sizeof(err));

	if (r == 0)
		vpd_spec_free(&s);
	if (r != -EINVAL || !strstr(err, msg_part)) {
		fprintf(stderr, "  spec '%s': r=%d err='%s' (wanted '%s')\n", text, r, err,
			msg_part);
		return false;
	}
	return s.path == NULL && s.id == NULL;
}

TEST(spec_errors_name_the_problem)
{
	char longpath[200];

	CHECK(spec_fails("", "empty server spec"));
	CHECK(spec_fails("id=x", "no path"));
	CHECK(spec_fails("path=/a,bogus=1", "unknown key 'bogus'"));
	CHECK(spec_fails("path=/a,path=/b", "given twice"));
	CHECK(spec_fails("path=/a,id=", "empty value"));
	CHECK(spec_fails("path=/a,", "ends with a comma"));
	CHECK(spec_fails(",path=/a", "empty item"));
	CHECK(spec_fails("path=/a,x", "not key=value"));
	CHECK(spec_fails("path=/a,connections=0", "connections"));
	CHECK(spec_fails("path=/a,connections=1025", "connections"));
	CHECK(spec_fails("path=/a,connections=-1", "connections"));
	CHECK(spec_fails("path=/a,connections= 3", "connections"));
	CHECK(spec_fails("path=/a,mode=0", "mode"));
	CHECK(spec_fails("path=/a,mode=0800", "mode"));
	CHECK(spec_fails("path=/a,mode=01777", "mode"));
	CHECK(spec_fails("path=/a,uid=no-such-user-hopefully", "uid"));
	CHECK(spec_fails("path=/a,uuid=1234", "uuid"));
	CHECK(spec_fails("path=/a,features=0x8000", "VERSION_1"));
	CHECK(spec_fails("path=/a,stop-timeout=0", "stop-timeout"));
	CHECK(spec_fails("path=/a,stop-timeout=60001", "stop-timeout"));
	CHECK(spec_fails("path=/a,stop-timeout=1s", "stop-timeout"));
	CHECK(spec_fails("path=/a,backend=", "empty value"));
	CHECK(spec_fails("path=/a,backend=/b,backend-vm=/q", "exclude each other"));
	CHECK(spec_fails("path=/a,design=2.2", "design"));
	CHECK(spec_fails("path=/a,design=2.1,backend=/b", "serves a pair"));
	CHECK(spec_fails("path=/a,design=2.1,backend-vm=/q", "serves a pair"));
	CHECK(spec_fails("path=/a,design=2.1,features=0x100000000", "serves a pair"));
	CHECK(spec_fails("path=/a,qemu=/q", "needs design=2.1"));
	CHECK(spec_fails("path=/a,design=2.1,qemu1=/q", "needs qemu="));
	CHECK(spec_fails("path=/a,design=2.1,qemu=/q,qemu1=/q", "same socket"));
	CHECK(spec_fails("path=/a,design=2.1,qemu=/q,qemu=/r", "given twice"));
	CHECK(spec_fails("path=/a,design=2.1,qmp=/m", "needs that key"));
	CHECK(spec_fails("path=/a,design=2.1,qemu=/q,qmp1=/m", "needs that key"));
	CHECK(spec_fails("path=/a,design=2.1,qemu=/q,qemu1=/r,qmp=/m,qmp1=/m", "same socket"));
	CHECK(spec_fails("path=/a,unplug-timeout=0", "unplug-timeout"));
	CHECK(spec_fails("path=/a,unplug-timeout=600001", "unplug-timeout"));
	CHECK(spec_fails("path=/a,features=0xzz", "not a number"));
	CHECK(spec_fails("path=/a,offloads=gso", "not none, csum or tso"));
	CHECK(spec_fails("path=/a,offloads=tso,features=0x100000000", "exclude each other"));
	/* Packed rings reach a backend= only: no backend VM, nor nobody. */
	CHECK(spec_fails("path=/a,features=0x500000000", "this server has none"));
	CHECK(spec_fails("path=/a,features=0x500000000,backend-vm=/q", "split rings only"));
	CHECK(spec_fails("path=/a,features=0x500000000,design=2.1", "serves a pair"));
	CHECK(spec_fails("path=/a,design=2.1,offloads=csum", "serves a pair"));
	/* queues=: multiqueue reaches userspace backends only. */
	CHECK(spec_fails("path=/a,queues=0", "1..8"));
	CHECK(spec_fails("path=/a,queues=9", "1..8"));
	CHECK(spec_fails("path=/a,queues=3,backend=/b", "at most 2 queue pairs"));
	CHECK(spec_fails("path=/a,queues=2,backend-vm=/m", "carries one queue pair"));
	CHECK(spec_fails("path=/a,design=2.1,queues=2", "no virtio queue pairs"));
	CHECK(spec_fails("path=/a,features=0x", "not a number"));
	CHECK(spec_fails("path=/a,id=bad id", "invalid"));
	CHECK(spec_fails("path=/a,id=\"x\"", "invalid"));
	CHECK(spec_fails("path=/tmp/", "give id="));
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	{
		char spec[256];

		snprintf(spec, sizeof(spec), "path=%s", longpath);
		CHECK(spec_fails(spec, "too long"));
	}
}

TEST(spec_list_refuses_duplicates)
{
	struct vpd_spec_list l = { 0 };
	struct vpd_spec s;
	char err[256];

	REQUIRE(vpd_spec_parse("path=/a,id=x", &s, err, sizeof(err)) == 0);
	CHECK(vpd_spec_list_add(&l, &s, err, sizeof(err)) == 0);
	REQUIRE(vpd_spec_parse("path=/b,id=x", &s, err, sizeof(err)) == 0);
	CHECK(vpd_spec_list_add(&l, &s, err, sizeof(err)) == -EEXIST && strstr(err, "id 'x'"));
	vpd_spec_free(&s);
	REQUIRE(vpd_spec_parse("path=/a,id=y", &s, err, sizeof(err)) == 0);
	CHECK(vpd_spec_list_add(&l, &s, err, sizeof(err)) == -EEXIST && strstr(err, "path '/a'"));
	vpd_spec_free(&s);
	CHECK_EQ(l.n, 1);
	vpd_spec_list_free(&l);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

TEST(config_file_lines)
{
	char path[] = "/tmp/vpd-unit-XXXXXX";
	struct vpd_spec_list l = { 0 };
	char err[512], want[600];
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	close(fd);
	write_file(path, "# vhost-pcid config\n\n   \n"
		   "server path=/run/a.sock,id=a,connections=4\n"
		   "  # indented comment\n"
		   "\tserver   /run/b.sock  \r\n");
	CHECK(vpd_config_load(path, &l, err, sizeof(err)) == 0);
	REQUIRE(l.n == 2);
	CHECK(!strcmp(l.v[0].id, "a") && l.v[0].connections == 4);
	CHECK(!strcmp(l.v[1].path, "/run/b.sock") && !strcmp(l.v[1].id, "b.sock"));
	vpd_spec_list_free(&l);

	write_file(path, "server path=/a\n# ok\nserver path=/b,colour=blue\n");
	CHECK(vpd_config_load(path, &l, err, sizeof(err)) == -EINVAL);
	snprintf(want, sizeof(want), "%s:3: unknown key 'colour'", path);
	CHECK(strstr(err, want) != NULL);
	vpd_spec_list_free(&l);

	write_file(path, "listen /a\n");
	CHECK(vpd_config_load(path, &l, err, sizeof(err)) == -EINVAL);
	snprintf(want, sizeof(want), "%s:1: expected 'server SPEC'", path);
	CHECK(strstr(err, want) != NULL);
	vpd_spec_list_free(&l);

	write_file(path, "\n\nserver\n");
	CHECK(vpd_config_load(path, &l, err, sizeof(err)) == -EINVAL);
	snprintf(want, sizeof(want), "%s:3: 'server' needs a SPEC", path);
	CHECK(strstr(err, want) != NULL);
	vpd_spec_list_free(&l);

	write_file(path, "server path=/a,id=x\nserver path=/b,id=x\n");
	CHECK(vpd_config_load(path, &l, err, sizeof(err)) == -EEXIST);
	snprintf(want, sizeof(want), "%s:2: server id 'x' is used twice", path);
	CHECK(strstr(err, want) != NULL);
	vpd_spec_list_free(&l);

	unlink(path);
	CHECK(vpd_config_load(path, &l, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, "cannot open config file") != NULL);
}

TEST(feature_and_flag_names)
{
	char buf[64];

	CHECK(!strcmp(vpd_feature_name(1, 32), "VERSION_1"));
	CHECK(!strcmp(vpd_feature_name(1, 15), "MRG_RXBUF"));
	CHECK(!strcmp(vpd_feature_name(1, 0), "CSUM"));
	CHECK(!strcmp(vpd_feature_name(1, 28), "INDIRECT_DESC"));
	CHECK(!strcmp(vpd_feature_name(1, 29), "EVENT_IDX"));
	CHECK(!strcmp(vpd_feature_name(1, 63), "SPEED_DUPLEX"));
	CHECK(vpd_feature_name(2, 0) == NULL);       /* net bits mean nothing for block */
	CHECK(!strcmp(vpd_feature_name(2, 32), "VERSION_1"));
	CHECK(vpd_feature_name(1, 4) == NULL);
	CHECK(vpd_feature_name(1, 64) == NULL);
	CHECK(!strcmp(vpd_protocol_feature_name(3), "REPLY_ACK"));
	CHECK(vpd_protocol_feature_name(63) == NULL);
	CHECK(!strcmp(vpd_virtio_type_name(1), "net"));
	CHECK(!strcmp(vpd_virtio_type_name(12345), "unknown"));
	vpd_desc_flags(0, buf, sizeof(buf));
	CHECK(!strcmp(buf, ""));
	vpd_desc_flags(3, buf, sizeof(buf));
	CHECK(!strcmp(buf, "NEXT|WRITE"));
	vpd_desc_flags(0x8004, buf, sizeof(buf));
	CHECK(!strcmp(buf, "INDIRECT|0x8000"));
	vpd_desc_flags(0xffff, buf, 8);
	CHECK(strlen(buf) < 8);
}
