/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * JSON for vhost-pcid's control answers (writer) and vhost-pci-ctl's human
 * views (reader), on jansson (the project's one JSON implementation).
 *
 * The writer escapes every string it is given: ids, paths and echoed control
 * input may hold any byte, so control characters (and DEL) are \u-escaped and
 * bytes that are not valid UTF-8 become U+FFFD. The document is always valid
 * JSON, indented by two spaces. Integers are jansson's: jw_u64() of a value
 * above INT64_MAX fails the document (jw_hex() writes any 64-bit value).
 *
 * The reader is strict RFC 8259 with limits (nesting depth, no NUL in
 * strings, integers within int64_t); anything else is rejected with a message
 * naming the offset.
 */
#ifndef VPD_JSON_H
#define VPD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JW_MAX_DEPTH 16

struct json_t;

struct jw {
	char *buf;                  /* jw_finish()'s document, malloc()ed */
	size_t len;
	bool err;                   /* out of memory or misuse: output unusable */
	unsigned depth;             /* containers open */
	struct json_t *root;        /* the document being built */
	struct json_t *open[JW_MAX_DEPTH];  /* open containers, borrowed from root */
};

void jw_init(struct jw *w);
void jw_free(struct jw *w);

/* key is the member name inside an object, NULL inside an array or at the top. */
void jw_obj_begin(struct jw *w, const char *key);
void jw_obj_end(struct jw *w);
void jw_arr_begin(struct jw *w, const char *key);
void jw_arr_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *val);  /* NULL: null */
void jw_strf(struct jw *w, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void jw_u64(struct jw *w, const char *key, uint64_t v);
void jw_i64(struct jw *w, const char *key, int64_t v);
void jw_hex(struct jw *w, const char *key, uint64_t v);       /* "0x..." string */
void jw_bool(struct jw *w, const char *key, bool v);
void jw_null(struct jw *w, const char *key);

/* The finished document with a trailing newline (w->buf: the caller may take
 * it instead of calling jw_free()), or NULL after an error. */
const char *jw_finish(struct jw *w, size_t *len);

/* One complete document: {"error": msg}. Returns malloc()ed text or NULL. */
char *jw_error_doc(const char *msg, size_t *len);

/* ---- reader ---- */

enum jv_type { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

struct jv {
	enum jv_type type;
	char *key;          /* member name when the parent is an object */
	char *str;          /* JV_STR: decoded UTF-8; JV_NUM: integers as
			     * written, other numbers as %.17g */
	bool b;
	size_t n;           /* JV_ARR / JV_OBJ: number of children */
	struct jv *child;   /* first child */
	struct jv *next;    /* next sibling */
};

#define JV_MAX_DEPTH 64

/* Parse exactly one document (surrounding whitespace allowed). 0, -EINVAL
 * (err says why and where) or -ENOMEM. */
int jv_parse(const char *text, size_t len, struct jv **out, char *err, size_t errlen);
void jv_free(struct jv *v);

/* Member of an object, NULL if v is not an object or has no such member. */
const struct jv *jv_get(const struct jv *v, const char *key);
/* Typed lookups: NULL / false if missing or of another type. */
const char *jv_get_str(const struct jv *v, const char *key);
bool jv_get_u64(const struct jv *v, const char *key, uint64_t *out);
bool jv_get_bool(const struct jv *v, const char *key, bool *out);
/* A JV_NUM that is a plain non-negative integer. */
bool jv_u64(const struct jv *v, uint64_t *out);
/* A "0x..." string (as jw_hex writes). */
bool jv_get_hex(const struct jv *v, const char *key, uint64_t *out);

#endif
