/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * JSON writer and reader (see json.h), on jansson: it parses, checks and
 * prints; this file keeps the writer's streaming calls and the reader's
 * tree, and the rules jansson does not have (see below).
 *
 * Security model: the reader parses what a daemon sent; the writer formats
 * strings a control client or a config file chose. Neither trusts its
 * input: jansson checks every escape and UTF-8 sequence and rejects NUL in
 * strings, and the conversion below bounds nesting; the writer replaces
 * bytes that are not UTF-8 (jansson would refuse the whole string) and has
 * jansson escape every byte that could end a string or break the encoding.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/*
 * Length of the valid UTF-8 sequence at p (at most avail bytes), or 0 if
 * it is not one (overlong forms, surrogates and values past U+10FFFF are
 * invalid).
 */
static unsigned utf8_len(const unsigned char *p, size_t avail)
{
	unsigned n, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (!avail)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	/* Only the second byte has a lead-dependent range. */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* ------------------------------------------------------------------------ */
/* writer */

void jw_init(struct jw *w)
{
	memset(w, 0, sizeof(*w));
}

void jw_free(struct jw *w)
{
	json_decref(w->root);
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

/* s with every byte that does not start a valid UTF-8 sequence replaced by
 * U+FFFD (one per byte); malloc()ed, NULL without memory. */
static char *clean_utf8(const char *s)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(3 * n + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		unsigned l = utf8_len((const unsigned char *)s + i, n - i);

		if (l) {
			memcpy(out + o, s + i, l);
			o += l;
			i += l;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = 0;
	return out;
}

/* Place v (a new reference, taken even on failure) at the current level. */
static bool add(struct jw *w, const char *key, json_t *v)
{
	json_t *parent;
	char *k;
	int r;

	if (!v || w->err)
		goto fail;
	if (w->depth == 0) {
		/* One top-level value, without a key. */
		if (w->root || key)
			goto fail;
		w->root = v;
		return true;
	}
	parent = w->open[w->depth - 1];
	if (json_is_object(parent) != (key != NULL))
		goto fail;
	if (!key)
		return json_array_append_new(parent, v) == 0 || (w->err = true, false);
	k = clean_utf8(key);
	if (!k)
		goto fail;
	r = json_object_set_new(parent, k, v);
	free(k);
	return r == 0 || (w->err = true, false);
fail:
	json_decref(v);
	w->err = true;
	return false;
}

static void open_(struct jw *w, const char *key, bool obj)
{
	json_t *v;

	if (w->depth >= JW_MAX_DEPTH) {
		w->err = true;
		return;
	}
	v = obj ? json_object() : json_array();
	if (add(w, key, v))
		w->open[w->depth++] = v;    /* borrowed: its parent owns it */
}

static void close_(struct jw *w, bool obj)
{
	if (!w->depth || json_is_object(w->open[w->depth - 1]) != obj) {
		w->err = true;
		return;
	}
	w->depth--;
}

void jw_obj_begin(struct jw *w, const char *key)
{
	open_(w, key, true);
}

void jw_obj_end(struct jw *w)
{
	close_(w, true);
}

void jw_arr_begin(struct jw *w, const char *key)
{
	open_(w, key, false);
}

void jw_arr_end(struct jw *w)
{
	close_(w, false);
}

void jw_str(struct jw *w, const char *key, const char *val)
{
	char *c;

	if (!val) {
		add(w, key, json_null());
		return;
	}
	c = clean_utf8(val);
	add(w, key, c ? json_string(c) : NULL);
	free(c);
}

void jw_strf(struct jw *w, const char *key, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		w->err = true;
		return;
	}
	jw_str(w, key, s);
	free(s);
}

void jw_u64(struct jw *w, const char *key, uint64_t v)
{
	/* jansson's integers are int64_t: a larger value cannot be written. */
	add(w, key, v <= INT64_MAX ? json_integer((json_int_t)v) : NULL);
}

void jw_i64(struct jw *w, const char *key, int64_t v)
{
	add(w, key, json_integer(v));
}

void jw_hex(struct jw *w, const char *key, uint64_t v)
{
	char buf[24];

	/* A string: JSON numbers lose precision past 2^53 in most readers. */
	snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
	add(w, key, json_string(buf));
}

void jw_bool(struct jw *w, const char *key, bool v)
{
	add(w, key, json_boolean(v));
}

void jw_null(struct jw *w, const char *key)
{
	add(w, key, json_null());
}

const char *jw_finish(struct jw *w, size_t *len)
{
	char *text = NULL;
	size_t n = 0, dels = 0, o = 0;

	if (w->depth || !w->root)
		w->err = true;
	if (!w->err)
		text = json_dumps(w->root, JSON_INDENT(2) | JSON_ENCODE_ANY);
	json_decref(w->root);
	w->root = NULL;
	free(w->buf);
	w->buf = NULL;
	if (!text) {
		w->err = true;
		return NULL;
	}
	/* jansson leaves DEL raw; escape it like the other control bytes so the
	 * document is safe on a terminal. DEL can only be inside a string. */
	for (n = 0; text[n]; n++)
		dels += text[n] == 0x7f;
	w->buf = malloc(n + 5 * dels + 2);
	if (!w->buf) {
		free(text);
		w->err = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (text[i] == 0x7f) {
			memcpy(w->buf + o, "\\u007F", 6);  /* upper-case hex, as jansson writes */
			o += 6;
		} else {
			w->buf[o++] = text[i];
		}
	}
	free(text);
	w->buf[o++] = '\n';
	w->buf[o] = 0;
	w->len = o;
	if (len)
		*len = o;
	return w->buf;
}

char *jw_error_doc(const char *msg, size_t *len)
{
	struct jw w;
	char *doc;

	jw_init(&w);
	jw_obj_begin(&w, NULL);
	jw_str(&w, "error", msg);
	jw_obj_end(&w);
	if (!jw_finish(&w, len)) {
		jw_free(&w);
		return NULL;
	}
	doc = w.buf; /* handed over */
	return doc;
}

/* ------------------------------------------------------------------------ */
/* reader */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int convert(json_t *j, struct jv *v, unsigned depth, char *err, size_t errlen);

/* Append m (member key, or NULL in an array) to v's children at *tail. */
static int convert_child(json_t *m, const char *key, struct jv *v, struct jv ***tail,
			 unsigned depth, char *err, size_t errlen)
{
	struct jv *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	**tail = c;
	*tail = &c->next;
	v->n++;
	if (key && !(c->key = strdup(key)))
		return -ENOMEM;
	return convert(m, c, depth + 1, err, errlen);
}

/* jansson's value j as the tree node v (zeroed by the caller). */
static int convert(json_t *j, struct jv *v, unsigned depth, char *err, size_t errlen)
{
	struct jv **tail = &v->child;
	const char *key;
	json_t *m;
	size_t i;
	int r;

	switch (json_typeof(j)) {
	case JSON_NULL:
		v->type = JV_NULL;
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		v->type = JV_BOOL;
		v->b = json_is_true(j);
		return 0;
	case JSON_INTEGER:
		v->type = JV_NUM;
		return asprintf(&v->str, "%" JSON_INTEGER_FORMAT, json_integer_value(j)) < 0 ?
			-ENOMEM : 0;
	case JSON_REAL:
		v->type = JV_NUM;
		return asprintf(&v->str, "%.17g", json_real_value(j)) < 0 ? -ENOMEM : 0;
	case JSON_STRING:
		v->type = JV_STR;
		v->str = strdup(json_string_value(j));
		return v->str ? 0 : -ENOMEM;
	case JSON_ARRAY:
	case JSON_OBJECT:
		break;
	}
	if (depth >= JV_MAX_DEPTH) {
		snprintf(err, errlen, "nesting deeper than %d", JV_MAX_DEPTH);
		return -EINVAL;
	}
	v->type = json_is_object(j) ? JV_OBJ : JV_ARR;
	if (v->type == JV_OBJ) {
		/* Members in document order: jansson keeps insertion order. */
		json_object_foreach(j, key, m)
			if ((r = convert_child(m, key, v, &tail, depth, err, errlen)))
				return r;
	} else {
		json_array_foreach(j, i, m)
			if ((r = convert_child(m, NULL, v, &tail, depth, err, errlen)))
				return r;
	}
	return 0;
}

int jv_parse(const char *text, size_t len, struct jv **out, char *err, size_t errlen)
{
	json_error_t e;
	json_t *root;
	struct jv *v;
	int r;

	*out = NULL;
	if (errlen)
		err[0] = 0;
	/* Strict: one document, nothing after it, no NUL in strings. jansson
	 * rejects integers outside int64_t too. */
	root = json_loadb(text, len, JSON_DECODE_ANY, &e);
	if (!root) {
		snprintf(err, errlen, "%s at offset %d", e.text, e.position);
		return json_error_code(&e) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	r = v ? convert(root, v, 0, err, errlen) : -ENOMEM;
	json_decref(root);
	if (r) {
		if (r == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		jv_free(v);
		return r;
	}
	*out = v;
	return 0;
}

void jv_free(struct jv *v)
{
	while (v) {
		struct jv *next = v->next;

		jv_free(v->child);
		free(v->key);
		free(v->str);
		free(v);
		v = next;
	}
}

const struct jv *jv_get(const struct jv *v, const char *key)
{
	if (!v || v->type != JV_OBJ)
		return NULL;
	for (const struct jv *c = v->child; c; c = c->next)
		if (!strcmp(c->key, key))
			return c;
	return NULL;
}

const char *jv_get_str(const struct jv *v, const char *key)
{
	const struct jv *m = jv_get(v, key);

	return m && m->type == JV_STR ? m->str : NULL;
}

bool jv_u64(const struct jv *v, uint64_t *out)
{
	char *end;

	if (!v || v->type != JV_NUM || !is_digit((unsigned char)v->str[0]))
		return false;
	errno = 0;
	*out = strtoull(v->str, &end, 10);
	return !errno && !*end;
}

bool jv_get_u64(const struct jv *v, const char *key, uint64_t *out)
{
	return jv_u64(jv_get(v, key), out);
}

bool jv_get_bool(const struct jv *v, const char *key, bool *out)
{
	const struct jv *m = jv_get(v, key);

	if (!m || m->type != JV_BOOL)
		return false;
	*out = m->b;
	return true;
}

bool jv_get_hex(const struct jv *v, const char *key, uint64_t *out)
{
	const char *s = jv_get_str(v, key);
	char *end;
	size_t n;

	if (!s || s[0] != '0' || s[1] != 'x')
		return false;
	n = strspn(s + 2, "0123456789abcdefABCDEF");
	if (n == 0 || n > 16 || s[2 + n])
		return false;
	*out = strtoull(s + 2, &end, 16);
	return true;
}
