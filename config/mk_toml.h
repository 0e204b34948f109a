/* medkd TOML 1.0 parser (strict, small, no dependencies).
 *
 * Parses a whole document into a tree of mk_toml_value nodes owned by one mk_toml_doc. Every node
 * remembers the line and column where it was defined so later schema checks can report
 * `file:line:col`. Errors are reported as "FILE:LINE:COL: message" through the mk_ctx.
 *
 *     mk_toml_doc *doc = NULL;
 *     if (mk_toml_parse_file(&ctx, "run.toml", &doc) != MK_OK) { ... mk_ctx_errmsg(&ctx) ... }
 *     const mk_toml_value *v = mk_toml_table_get(mk_toml_root(doc), "seed");
 *     mk_toml_free(doc);
 *
 * Ownership: the doc owns every node and string; pointers returned by accessors are borrowed and
 * valid until mk_toml_free(doc).
 */
#ifndef MK_TOML_H
#define MK_TOML_H

#include <stddef.h>
#include <stdint.h>

#include "../core/mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_toml_type {
    MK_TOML_TABLE = 0,
    MK_TOML_ARRAY,
    MK_TOML_STRING,
    MK_TOML_INTEGER,
    MK_TOML_FLOAT,
    MK_TOML_BOOL,
    MK_TOML_DATETIME,       /* offset date-time */
    MK_TOML_DATETIME_LOCAL, /* local date-time */
    MK_TOML_DATE_LOCAL,
    MK_TOML_TIME_LOCAL,
    MK_TOML_TYPE_COUNT
} mk_toml_type;

/* Calendar value of the four date/time types. Unused fields are 0. */
typedef struct mk_toml_datetime {
    int year, month, day;
    int hour, minute, second;
    int nanosecond;     /* fractional seconds, truncated to nanoseconds */
    int frac_digits;    /* digits written in the source (0 = none) */
    int offset_minutes; /* MK_TOML_DATETIME only: offset from UTC */
    int offset_z;       /* 1 when written as Z */
} mk_toml_datetime;

typedef struct mk_toml_value mk_toml_value;
typedef struct mk_toml_doc mk_toml_doc;

/* Deepest nesting of tables and arrays (headers, dotted keys, inline tables and arrays all count);
 * deeper documents are rejected with an error instead of exhausting the stack. */
#define MK_TOML_MAX_DEPTH 256

/* Parse a buffer of `len` bytes (no terminating NUL needed). `filename` is used only in messages.
 * *out owned by caller (release with mk_toml_free); *out is NULL on error.
 * Returns: MK_OK; MK_ERR_CONFIG for invalid TOML, with the message "FILE:LINE:COL: what was
 * expected / found"; MK_ERR_NOMEM when out of memory. mk_toml_parse_file adds MK_ERR_IO (message
 * names the path) when the file cannot be read. See docs/toml.md for the accepted language. */
mk_status mk_toml_parse(mk_ctx *ctx, const char *filename, const char *buf, size_t len,
                        mk_toml_doc **out);
/* Read and parse a file. */
mk_status mk_toml_parse_file(mk_ctx *ctx, const char *path, mk_toml_doc **out);
void mk_toml_free(mk_toml_doc *doc); /* NULL ok */

const mk_toml_value *mk_toml_root(const mk_toml_doc *doc);
const char *mk_toml_filename(const mk_toml_doc *doc);

mk_toml_type mk_toml_type_of(const mk_toml_value *v);
const char *mk_toml_type_name(mk_toml_type t); /* "table", "array", "string", "integer", ... */
int mk_toml_line(const mk_toml_value *v); /* 1-based line where the value (or table) was defined */
int mk_toml_col(const mk_toml_value *v);

/* Tables: key order is insertion order. */
size_t mk_toml_table_len(const mk_toml_value *t);
const char *mk_toml_table_key(const mk_toml_value *t, size_t i);
const mk_toml_value *mk_toml_table_at(const mk_toml_value *t, size_t i);
const mk_toml_value *mk_toml_table_get(const mk_toml_value *t,
                                       const char *key); /* NULL if absent */
/* Length of key i in bytes (a quoted key may contain "\u0000"; mk_toml_table_key stops there). */
size_t mk_toml_table_key_len(const mk_toml_value *t, size_t i);
/* Index of `key` in t (0..len-1), or -1 if absent; use it with mk_toml_table_key_line/_col. */
long mk_toml_table_find(const mk_toml_value *t, const char *key);
/* Like mk_toml_table_get with an explicit key length (keys may contain NUL bytes). */
const mk_toml_value *mk_toml_table_getn(const mk_toml_value *t, const char *key, size_t len);
/* Line/column of the key itself (where `key = value` or `[key]` was written). */
int mk_toml_table_key_line(const mk_toml_value *t, size_t i);
int mk_toml_table_key_col(const mk_toml_value *t, size_t i);

/* Arrays. */
size_t mk_toml_array_len(const mk_toml_value *a);
const mk_toml_value *mk_toml_array_at(const mk_toml_value *a, size_t i);

/* Scalars (behaviour undefined if the type does not match: check mk_toml_type_of first; this
 * implementation returns NULL / 0 in that case, and every accessor accepts NULL). */
const char *mk_toml_string(const mk_toml_value *v,
                           size_t *len); /* NUL-terminated; len may be NULL */
int64_t mk_toml_int(const mk_toml_value *v);
double mk_toml_float(const mk_toml_value *v);
int mk_toml_bool(const mk_toml_value *v);
const mk_toml_datetime *mk_toml_dt(const mk_toml_value *v);

#ifdef __cplusplus
}
#endif
#endif
