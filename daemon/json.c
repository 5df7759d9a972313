/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * JSON writer and reader (see json.h).
 *
 * Security model: the reader parses what a daemon sent; the writer formats
 * strings a control client or a config file chose. Neither trusts its
 * input: the reader bounds nesting and checks every escape and UTF-8
 * sequence; the writer escapes every byte that could end a string or break
 * the encoding.
 */
#include <errno.h>
#include <inttypes.h>
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
	free(w->buf);
	jw_init(w);
}

static void put(struct jw *w, const char *s, size_t n)
{
	if (w->err)
		return;
	if (n + 1 > w->cap - w->len || !w->buf) {
		size_t cap = w->cap ? w->cap : 1024;
		char *p;

		while (cap - w->len < n + 1) {
			if (cap > SIZE_MAX / 2) {
				w->err = true;
				return;
			}
			cap *= 2;
		}
		p = realloc(w->buf, cap);
		if (!p) {
			w->err = true;
			return;
		}
		w->buf = p;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = 0;
}

static void puts_(struct jw *w, const char *s)
{
	put(w, s, strlen(s));
}

static void put_string(struct jw *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);

	put(w, "\"", 1);
	while (left) {
		unsigned n = utf8_len(p, left);
		char esc[8];

		if (n == 0) {
			/* Not UTF-8: say so rather than emit an invalid document. */
			puts_(w, "\\ufffd");
			n = 1;
		} else if (n > 1) {
			put(w, (const char *)p, n);
		} else if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			put(w, esc, 2);
		} else if (*p == '\n') {
			puts_(w, "\\n");
		} else if (*p == '\t') {
			puts_(w, "\\t");
		} else if (*p == '\r') {
			puts_(w, "\\r");
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			puts_(w, esc);
		} else {
			put(w, (const char *)p, 1);
		}
		p += n;
		left -= n;
	}
	put(w, "\"", 1);
}


/* Separator, newline, indentation and "key": before a value. */
static void prefix(struct jw *w, const char *key)
{
	if (w->depth == 0) {
		/* One top-level value, without a key. */
		if (w->len || key)
			w->err = true;
		return;
	}
	if (!!(w->is_obj & 1u << w->depth) != (key != NULL)) {
		w->err = true;
		return;
	}
	if (!w->first[w->depth])
		put(w, ",", 1);
	w->first[w->depth] = false;
	put(w, "\n", 1);
	for (unsigned i = 0; i < w->depth; i++)
		put(w, "  ", 2);
	if (key) {
		put_string(w, key);
		put(w, ": ", 2);
	}
}

static void open_(struct jw *w, const char *key, bool obj)
{
	prefix(w, key);
	if (w->depth + 1 >= JW_MAX_DEPTH) {
		w->err = true;
		return;
	}
	put(w, obj ? "{" : "[", 1);
	w->depth++;
	w->first[w->depth] = true;
	if (obj)
		w->is_obj |= 1u << w->depth;
	else
		w->is_obj &= ~(1u << w->depth);
}

static void close_(struct jw *w, bool obj)
{
	if (w->depth == 0 || !!(w->is_obj & 1u << w->depth) != obj) {
		w->err = true;
		return;
	}
	if (!w->first[w->depth]) {
		put(w, "\n", 1);
		for (unsigned i = 1; i < w->depth; i++)
			put(w, "  ", 2);
	}
	put(w, obj ? "}" : "]", 1);
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
	prefix(w, key);
	if (val)
		put_string(w, val);
	else
		puts_(w, "null");
}

void jw_strf(struct jw *w, const char *key, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	jw_str(w, key, buf);
}

void jw_u64(struct jw *w, const char *key, uint64_t v)
{
	char buf[24];

	prefix(w, key);
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	puts_(w, buf);
}

void jw_i64(struct jw *w, const char *key, int64_t v)
{
	char buf[24];

	prefix(w, key);
	snprintf(buf, sizeof(buf), "%" PRId64, v);
	puts_(w, buf);
}

void jw_hex(struct jw *w, const char *key, uint64_t v)
{
	char buf[24];

	/* A string: JSON numbers lose precision past 2^53 in most readers. */
	prefix(w, key);
	snprintf(buf, sizeof(buf), "\"0x%" PRIx64 "\"", v);
	puts_(w, buf);
}

void jw_bool(struct jw *w, const char *key, bool v)
{
	prefix(w, key);
	puts_(w, v ? "true" : "false");
}

void jw_null(struct jw *w, const char *key)
{
	prefix(w, key);
	puts_(w, "null");
}

const char *jw_finish(struct jw *w, size_t *len)
{
	if (w->depth || !w->len)
		w->err = true;
	put(w, "\n", 1);
	if (w->err)
		return NULL;
	if (len)
		*len = w->len;
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

struct jp {
	const unsigned char *s;
	size_t len, pos;
	unsigned depth;
	int err;            /* 0, -EINVAL or -ENOMEM */
	char *msg;
	size_t msglen;
};

static int jp_fail(struct jp *p, const char *what)
{
	if (!p->err) {
		p->err = -EINVAL;
		if (p->msglen)
			snprintf(p->msg, p->msglen, "%s at offset %zu", what, p->pos);
	}
	return p->err;
}

static int jp_oom(struct jp *p)
{
	if (!p->err) {
		p->err = -ENOMEM;
		if (p->msglen)
			snprintf(p->msg, p->msglen, "out of memory");
	}
	return p->err;
}

static void skip_ws(struct jp *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
				   p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
		p->pos++;
}

static bool lit(struct jp *p, const char *word)
{
	size_t n = strlen(word);

	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n))
		return false;
	p->pos += n;
	return true;
}

/* A growing byte buffer for decoded strings. */
struct sbuf {
	char *b;
	size_t len, cap;
};

static bool sb_put(struct sbuf *sb, const void *d, size_t n)
{
	if (sb->cap - sb->len < n + 1) {
		size_t cap = sb->cap ? sb->cap * 2 : 32;
		char *b;

		while (cap - sb->len < n + 1)
			cap *= 2;
		b = realloc(sb->b, cap);
		if (!b)
			return false;
		sb->b = b;
		sb->cap = cap;
	}
	memcpy(sb->b + sb->len, d, n);
	sb->len += n;
	sb->b[sb->len] = 0;
	return true;
}

static int hex4(struct jp *p, unsigned *out)
{
	unsigned v = 0;

	if (p->len - p->pos < 4)
		return jp_fail(p, "short \\u escape");
	for (int i = 0; i < 4; i++) {
		unsigned char c = p->s[p->pos++];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return jp_fail(p, "bad \\u escape");
	}
	*out = v;
	return 0;
}

static size_t utf8_encode(unsigned cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* p->pos is at the opening quote. */
static int parse_string(struct jp *p, char **out)
{
	struct sbuf sb = { 0 };

	p->pos++;
	if (!sb_put(&sb, "", 0))
		return jp_oom(p);
	for (;;) {
		unsigned char c;
		unsigned cp, lo;
		char enc[4];

		if (p->pos >= p->len) {
			jp_fail(p, "unterminated string");
			goto fail;
		}
		c = p->s[p->pos];
		if (c == '"') {
			p->pos++;
			break;
		}
		if (c < 0x20) {
			jp_fail(p, "control character in string");
			goto fail;
		}
		if (c >= 0x80) {
			unsigned n = utf8_len(p->s + p->pos, p->len - p->pos);

			if (!n) {
				jp_fail(p, "invalid UTF-8 in string");
				goto fail;
			}
			if (!sb_put(&sb, p->s + p->pos, n))
				goto oom;
			p->pos += n;
			continue;
		}
		p->pos++;
		if (c != '\\') {
			if (!sb_put(&sb, &c, 1))
				goto oom;
			continue;
		}
		if (p->pos >= p->len) {
			jp_fail(p, "unterminated escape");
			goto fail;
		}
		c = p->s[p->pos++];
		switch (c) {
		case '"': case '\\': case '/':
			break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u':
			if (hex4(p, &cp))
				goto fail;
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				jp_fail(p, "lone low surrogate");
				goto fail;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (!lit(p, "\\u") || hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff) {
					jp_fail(p, "unpaired high surrogate");
					goto fail;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0) {
				/* Our strings are C strings. */
				jp_fail(p, "NUL in string");
				goto fail;
			}
			if (!sb_put(&sb, enc, utf8_encode(cp, enc)))
				goto oom;
			continue;
		default:
			jp_fail(p, "unknown escape");
			goto fail;
		}
		if (!sb_put(&sb, &c, 1))
			goto oom;
	}
	*out = sb.b;
	return 0;
oom:
	jp_oom(p);
fail:
	free(sb.b);
	return p->err;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int parse_number(struct jp *p, struct jv *v)
{
	size_t start = p->pos;

	if (p->pos < p->len && p->s[p->pos] == '-')
		p->pos++;
	if (p->pos >= p->len || !is_digit(p->s[p->pos]))
		return jp_fail(p, "bad number");
	if (p->s[p->pos] == '0')
		p->pos++;
	else
		while (p->pos < p->len && is_digit(p->s[p->pos]))
			p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '.') {
		p->pos++;
		if (p->pos >= p->len || !is_digit(p->s[p->pos]))
			return jp_fail(p, "bad fraction");
		while (p->pos < p->len && is_digit(p->s[p->pos]))
			p->pos++;
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		if (p->pos >= p->len || !is_digit(p->s[p->pos]))
			return jp_fail(p, "bad exponent");
		while (p->pos < p->len && is_digit(p->s[p->pos]))
			p->pos++;
	}
	v->type = JV_NUM;
	v->str = strndup((const char *)p->s + start, p->pos - start);
	return v->str ? 0 : jp_oom(p);
}

static int parse_value(struct jp *p, struct jv *v);

/* Objects and arrays: children are appended in order. */
static int parse_container(struct jp *p, struct jv *v, bool obj)
{
	struct jv **tail = &v->child;
	char close = obj ? '}' : ']';

	v->type = obj ? JV_OBJ : JV_ARR;
	if (++p->depth > JV_MAX_DEPTH)
		return jp_fail(p, "nesting too deep");
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
		p->pos++;
		p->depth--;
		return 0;
	}
	for (;;) {
		struct jv *c = calloc(1, sizeof(*c));

		if (!c)
			return jp_oom(p);
		*tail = c;
		tail = &c->next;
		v->n++;
		skip_ws(p);
		if (obj) {
			if (p->pos >= p->len || p->s[p->pos] != '"')
				return jp_fail(p, "expected a member name");
			if (parse_string(p, &c->key))
				return p->err;
			skip_ws(p);
			if (p->pos >= p->len || p->s[p->pos] != ':')
				return jp_fail(p, "expected ':'");
			p->pos++;
			skip_ws(p);
		}
		if (parse_value(p, c))
			return p->err;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
			p->pos++;
			break;
		}
		return jp_fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
	}
	p->depth--;
	return 0;
}

static int parse_value(struct jp *p, struct jv *v)
{
	if (p->pos >= p->len)
		return jp_fail(p, "unexpected end of input");
	switch (p->s[p->pos]) {
	case '{':
		return parse_container(p, v, true);
	case '[':
		return parse_container(p, v, false);
	case '"':
		v->type = JV_STR;
		return parse_string(p, &v->str);
	case 't':
	case 'f':
		v->type = JV_BOOL;
		v->b = p->s[p->pos] == 't';
		if (!lit(p, v->b ? "true" : "false"))
			return jp_fail(p, "bad literal");
		return 0;
	case 'n':
		v->type = JV_NULL;
		if (!lit(p, "null"))
			return jp_fail(p, "bad literal");
		return 0;
	default:
		return parse_number(p, v);
	}
}

int jv_parse(const char *text, size_t len, struct jv **out, char *err, size_t errlen)
{
	struct jp p = { .s = (const unsigned char *)text, .len = len, .msg = err,
			.msglen = errlen };
	struct jv *v = calloc(1, sizeof(*v));

	*out = NULL;
	if (errlen)
		err[0] = 0;
	if (!v)
		return jp_oom(&p);
	skip_ws(&p);
	if (!parse_value(&p, v)) {
		skip_ws(&p);
		if (p.pos != p.len)
			jp_fail(&p, "trailing data");
	}
	if (p.err) {
		jv_free(v);
		return p.err;
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
