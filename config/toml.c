/* medkd TOML 1.0.0 parser: a single forward pass over the bytes with one byte of look-ahead
 * (a few more for datetimes and string delimiters).
 *
 * Memory: every node, key and string lives in an arena owned by the mk_toml_doc, so freeing is one
 * walk over the chunk list and error paths cannot leak. Growable arrays (table entries, array
 * items) are re-allocated inside the arena by doubling; the abandoned copies stay until the doc is
 * freed, which costs at most a factor two.
 *
 * Redefinition rules follow the spec (and the toml-test suite): every table remembers how it came
 * to exist (see enum tflag) and the header "section" in which dotted keys created it. Dotted keys
 * may extend a table only while still inside the section that created it by dotted keys; a header
 * may define a table that so far exists only implicitly (as the prefix of another header); inline
 * tables and array literals are frozen once written.
 *
 * Positions: lines are counted as newlines are consumed; columns are counted in code points from
 * the start of the line, computed lazily with a per-line cache so long lines stay linear. */
#include "mk_toml.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"

/* ---------------------------------------------------------------------------------- tree */

/* How a table came to exist (it matters for which later definitions are legal). */
enum tflag {
    TF_IMPLICIT = 1, /* prefix of a [header] path: may still be defined by a header once */
    TF_HEADER = 2,   /* defined by [header] or as an element of [[array]] */
    TF_DOTTED = 4,   /* created by a dotted key (a.b = 1 creates a) */
    TF_INLINE = 8,   /* inline table { }: frozen */
    TF_STATIC = 16,  /* array literal [ ]: frozen */
    TF_AOT = 32,     /* array of tables built by [[header]] */
    TF_HEAP = 64     /* entries / items array is malloc'd (listed in doc->owners) */
};

typedef struct entry {
    char *key;
    size_t klen;
    uint32_t hash;
    int line, col; /* of the key */
    mk_toml_value *val;
} entry;

struct mk_toml_value {
    mk_toml_type type;
    int line, col;
    int depth;        /* root = 0 */
    unsigned flags;   /* enum tflag for tables and arrays */
    unsigned section; /* TF_DOTTED tables: header section that created them */
    union {
        struct {
            entry *e;
            size_t len, cap;
            uint64_t *idx; /* open addressing: (hash << 32) | (entry index + 1), 0 = empty;
                            * NULL while the table is small */
            size_t icap;
        } tab;
        struct {
            mk_toml_value **v;
            size_t len, cap;
        } arr;
        struct {
            char *s;
            size_t len;
        } str;
        int64_t i;
        double f;
        int b;
        mk_toml_datetime dt;
    } u;
};

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

struct mk_toml_doc {
    chunk *arena;
    mk_toml_value **owners; /* containers whose arrays or hash index are malloc'd */
    size_t nowners, cowners;
    size_t next_chunk; /* size of the next arena chunk (grows to ARENA_CHUNK_MAX) */
    mk_toml_value *root;
    char *filename;
};

#define ARENA_CHUNK ((size_t)64 * 1024)
#define ARENA_CHUNK_MAX ((size_t)1024 * 1024)
#define SMALL_TABLE 8 /* tables up to this size are searched linearly */
#define ARENA_ITEMS                                                                                \
    64 /* container arrays up to this capacity live in the arena, larger ones are                  \
        * realloc'd on the heap so growth leaves no abandoned copies */

/* n bytes aligned to `align` (a power of two, at most _Alignof(max_align_t)); NULL when out of
 * memory. Strings use align 1 so short keys do not waste a whole max_align_t each. */
static void *arena_alloc_a(mk_toml_doc *doc, size_t n, size_t align)
{
    chunk *c = doc->arena;
    size_t at = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (!c || at > c->cap || c->cap - at < n) {
        size_t csize = doc->next_chunk < ARENA_CHUNK ? ARENA_CHUNK : doc->next_chunk;
        int big = n > csize / 2;
        size_t cap = big ? n : csize;
        chunk *nc = malloc(sizeof(chunk) + cap);
        if (!nc)
            return NULL;
        nc->used = 0;
        nc->cap = cap;
        if (!big && csize < ARENA_CHUNK_MAX)
            doc->next_chunk = 2 * csize;
        if (c && big) {
            /* big block: put it behind the current chunk so the current one keeps filling */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            doc->arena = nc;
        }
        nc->used = n;
        return (char *)nc->data;
    }
    c->used = at + n;
    return (char *)c->data + at;
}

static void *arena_alloc(mk_toml_doc *doc, size_t n)
{
    return arena_alloc_a(doc, n, _Alignof(max_align_t) < 8 ? _Alignof(max_align_t) : 8);
}

static uint32_t hash_key(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static long tab_find(const mk_toml_value *t, const char *k, size_t n, uint32_t h)
{
    if (!t->u.tab.idx) {
        for (size_t i = 0; i < t->u.tab.len; i++) {
            const entry *e = &t->u.tab.e[i];
            if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
                return (long)i;
        }
        return -1;
    }
    size_t mask = t->u.tab.icap - 1;
    for (size_t j = h & mask;; j = (j + 1) & mask) {
        uint64_t x = t->u.tab.idx[j];
        if (x == 0)
            return -1;
        if ((uint32_t)(x >> 32) != h)
            continue; /* the stored hash spares a cache miss on the entry */
        const entry *e = &t->u.tab.e[(uint32_t)x - 1];
        if (e->klen == n && memcmp(e->key, k, n) == 0)
            return (long)((uint32_t)x - 1);
    }
}

/* (Re)build the hash index so it stays at most half full. */
/* Remember that v owns heap blocks (freed by mk_toml_free). */
static int doc_own(mk_toml_doc *doc, mk_toml_value *v)
{
    if (v->flags & TF_HEAP)
        return 0;
    if (doc->nowners == doc->cowners) {
        size_t cap = doc->cowners ? 2 * doc->cowners : 64;
        mk_toml_value **no = realloc(doc->owners, cap * sizeof *no);
        if (!no)
            return -1;
        doc->owners = no;
        doc->cowners = cap;
    }
    doc->owners[doc->nowners++] = v;
    v->flags |= TF_HEAP;
    return 0;
}

/* Grow a container array to `cap` elements of `size` bytes: in the arena while small, then on the
 * heap with realloc. */
static int grow(mk_toml_doc *doc, mk_toml_value *v, void **arr, size_t len, size_t cap, size_t size)
{
    if (cap <= ARENA_ITEMS) {
        void *na = arena_alloc(doc, cap * size);
        if (!na)
            return -1;
        if (len)
            memcpy(na, *arr, len * size);
        *arr = na;
        return 0;
    }
    if (doc_own(doc, v))
        return -1;
    void *old = (v->flags & TF_HEAP) && cap / 2 > ARENA_ITEMS ? *arr : NULL;
    void *na = realloc(old, cap * size);
    if (!na)
        return -1;
    if (!old && len)
        memcpy(na, *arr, len * size);
    *arr = na;
    return 0;
}

static int tab_reindex(mk_toml_doc *doc, mk_toml_value *t)
{
    size_t icap = 16;
    while (icap < 2 * (t->u.tab.len + 1))
        icap *= 2;
    if (doc_own(doc, t))
        return -1;
    uint64_t *idx = calloc(icap, sizeof *idx);
    if (!idx)
        return -1;
    free(t->u.tab.idx);
    for (size_t i = 0; i < t->u.tab.len; i++) {
        size_t j = t->u.tab.e[i].hash & (icap - 1);
        while (idx[j])
            j = (j + 1) & (icap - 1);
        idx[j] = ((uint64_t)t->u.tab.e[i].hash << 32) | (uint64_t)(i + 1);
    }
    t->u.tab.idx = idx;
    t->u.tab.icap = icap;
    return 0;
}

/* ------------------------------------------------------------------------------- parser */

typedef struct gbuf {
    char *p;
    size_t n, cap;
} gbuf;

typedef struct keyseg {
    size_t off, len; /* into parser.kbuf */
    int line, col;
} keyseg;

typedef struct parser {
    mk_ctx *ctx;
    const char *fname;
    mk_toml_doc *doc;
    const unsigned char *p, *end;
    int line;
    const unsigned char *line_start;
    const unsigned char *col_pos; /* column cache: col_val is the column of col_pos */
    int col_val;
    unsigned section;
    mk_toml_value *cur; /* table that key/value lines go into */
    gbuf sbuf;          /* scratch for decoded strings and number text */
    gbuf kbuf;          /* decoded key segments, used as a stack */
    keyseg *segs;
    size_t nseg, segcap;
    int failed;
    char found[48];
    const char *decimal_point; /* the C library's, for strtod (locale dependent) */
    size_t decimal_point_len;
} parser;

static int col_of(parser *P, const unsigned char *q)
{
    const unsigned char *from = P->line_start;
    int col = 1;
    if (P->col_pos >= P->line_start && P->col_pos <= q) {
        from = P->col_pos;
        col = P->col_val;
    }
    for (; from < q; from++)
        if ((*from & 0xC0) != 0x80)
            col++;
    P->col_pos = q;
    P->col_val = col;
    return col;
}

static int errv_at(parser *P, int line, int col, const char *fmt, va_list ap)
{
    char msg[MK_ERRMSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (!P->failed)
        mk_err(P->ctx, MK_ERR_CONFIG, "%s:%d:%d: %s", P->fname, line, col, msg);
    P->failed = 1;
    return -1;
}

static int err_at(parser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int err_at(parser *P, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errv_at(P, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

/* Error at byte q of the current line. */
static int err_q(parser *P, const unsigned char *q, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int err_q(parser *P, const unsigned char *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errv_at(P, P->line, col_of(P, q), fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(parser *P)
{
    if (!P->failed)
        mk_err(P->ctx, MK_ERR_NOMEM, "%s: out of memory while parsing TOML", P->fname);
    P->failed = 1;
    return -1;
}

/* Decode the code point at q (input is already validated UTF-8). */
static uint32_t utf8_at(const unsigned char *q, int *len)
{
    unsigned c = q[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((c & 0x1Fu) << 6) | (q[1] & 0x3Fu);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((c & 0x0Fu) << 12) | ((q[1] & 0x3Fu) << 6) | (q[2] & 0x3Fu);
    }
    *len = 4;
    return ((c & 0x07u) << 18) | ((q[1] & 0x3Fu) << 12) | ((q[2] & 0x3Fu) << 6) | (q[3] & 0x3Fu);
}

/* Human description of the character at q, for "found ..." in messages. */
static const char *found(parser *P, const unsigned char *q)
{
    if (q >= P->end)
        return "end of file";
    unsigned c = *q;
    switch (c) {
    case '\n': return "end of line";
    case '\r': return "carriage return";
    case '\t': return "tab";
    case ' ': return "space";
    default: break;
    }
    if (c < 0x20 || c == 0x7F) {
        snprintf(P->found, sizeof P->found, "control character U+%04X", c);
    } else if (c < 0x80) {
        snprintf(P->found, sizeof P->found, "'%c'", (char)c);
    } else {
        int n;
        uint32_t cp = utf8_at(q, &n);
        snprintf(P->found, sizeof P->found, "'%.*s' (U+%04X)", n, (const char *)q, (unsigned)cp);
    }
    return P->found;
}

static int gbuf_reserve(parser *P, gbuf *b, size_t extra)
{
    if (b->cap - b->n >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < extra) {
        if (cap > SIZE_MAX / 2)
            return oom(P);
        cap *= 2;
    }
    char *np = realloc(b->p, cap);
    if (!np)
        return oom(P);
    b->p = np;
    b->cap = cap;
    return 0;
}

static int gbuf_put(parser *P, gbuf *b, const void *s, size_t n)
{
    if (gbuf_reserve(P, b, n + 1))
        return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static int gbuf_utf8(parser *P, gbuf *b, uint32_t cp)
{
    unsigned char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (unsigned char)(0xC0 | (cp >> 6));
        t[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (unsigned char)(0xE0 | (cp >> 12));
        t[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (unsigned char)(0xF0 | (cp >> 18));
        t[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return gbuf_put(P, b, t, n);
}

static mk_toml_value *new_value(parser *P, mk_toml_type type, int line, int col, int depth)
{
    mk_toml_value *v = arena_alloc(P->doc, sizeof *v);
    if (!v) {
        oom(P);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    v->line = line;
    v->col = col;
    v->depth = depth;
    return v;
}

static char *arena_strdup(parser *P, const char *s, size_t n)
{
    char *d = arena_alloc_a(P->doc, n + 1, 1);
    if (!d) {
        oom(P);
        return NULL;
    }
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Append key k -> v to table t (the caller has checked that k is absent). */
static int tab_add(parser *P, mk_toml_value *t, const char *k, size_t n, uint32_t h, int line,
                   int col, mk_toml_value *v)
{
    if (t->u.tab.len == t->u.tab.cap) {
        size_t cap = t->u.tab.cap ? 2 * t->u.tab.cap : 4;
        void *arr = t->u.tab.e;
        if (grow(P->doc, t, &arr, t->u.tab.len, cap, sizeof(entry)))
            return oom(P);
        t->u.tab.e = arr;
        t->u.tab.cap = cap;
    }
    entry *e = &t->u.tab.e[t->u.tab.len];
    e->key = arena_strdup(P, k, n);
    if (!e->key)
        return -1;
    e->klen = n;
    e->hash = h;
    e->line = line;
    e->col = col;
    e->val = v;
    t->u.tab.len++;
    if (t->u.tab.idx && 2 * t->u.tab.len <= t->u.tab.icap) {
        size_t mask = t->u.tab.icap - 1, j = h & mask;
        while (t->u.tab.idx[j])
            j = (j + 1) & mask;
        t->u.tab.idx[j] = ((uint64_t)h << 32) | (uint64_t)t->u.tab.len;
    } else if (t->u.tab.len > SMALL_TABLE) {
        if (tab_reindex(P->doc, t))
            return oom(P);
    }
    return 0;
}

static int arr_push(parser *P, mk_toml_value *a, mk_toml_value *v)
{
    if (a->u.arr.len == a->u.arr.cap) {
        size_t cap = a->u.arr.cap ? 2 * a->u.arr.cap : 4;
        void *arr = a->u.arr.v;
        if (grow(P->doc, a, &arr, a->u.arr.len, cap, sizeof(mk_toml_value *)))
            return oom(P);
        a->u.arr.v = arr;
        a->u.arr.cap = cap;
    }
    a->u.arr.v[a->u.arr.len++] = v;
    return 0;
}

/* ------------------------------------------------------------------------ lexical bits */

static int at(parser *P, size_t k)
{
    return P->p + k < P->end ? P->p[k] : -1;
}

static void skip_ws(parser *P)
{
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t'))
        P->p++;
}

/* Character classes of the hot scanning loops (bytes >= 0x80 are in none). */
enum {
    CC_BARE = 1,     /* bare key: A-Z a-z 0-9 _ - */
    CC_STOP_BAS = 2, /* ends a run inside a basic string: " \\ and control characters */
    CC_STOP_LIT = 4, /* ends a run inside a literal string: ' and control characters */
    CC_NUM = 8       /* may appear in a number token: bare characters, + and . */
};
static const unsigned char cclass[256] = {
    6, 6, 6, 6, 6, 6, 6, 6, 6, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    0, 0, 2, 0, 0, 0, 0, 4, 0, 0, 0, 8, 0, 9, 8, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0,
    0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 2, 0, 0, 9,
    0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 6,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int is_bare(int c)
{
    return c >= 0 && (cclass[c & 0xFF] & CC_BARE);
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_ctrl(unsigned c)
{
    return (c < 0x20 && c != '\t') || c == 0x7F;
}

/* At a newline (LF or CRLF): consume it and return 1. Bare CR is an error (-1). 0 otherwise. */
static int eat_newline(parser *P)
{
    if (P->p < P->end && *P->p == '\n') {
        P->p++;
    } else if (P->p < P->end && *P->p == '\r') {
        if (at(P, 1) != '\n')
            return err_q(P, P->p,
                         "carriage return not followed by line feed (bare CR is not a "
                         "valid line ending)");
        P->p += 2;
    } else {
        return 0;
    }
    P->line++;
    P->line_start = P->p;
    return 1;
}

/* At '#': skip the comment up to (not including) the end of line. */
static int skip_comment(parser *P)
{
    P->p++;
    while (P->p < P->end) {
        unsigned c = *P->p;
        if (c == '\n')
            break;
        if (c == '\r') {
            if (at(P, 1) == '\n')
                break;
            return err_q(P, P->p, "carriage return in comment (bare CR is not allowed)");
        }
        if (is_ctrl(c))
            return err_q(P, P->p, "control character U+%04X is not allowed in a comment", c);
        P->p++;
    }
    return 0;
}

/* Skip whitespace, comments and newlines (inside arrays). */
static int skip_ws_nl(parser *P)
{
    for (;;) {
        skip_ws(P);
        if (P->p >= P->end)
            return 0;
        if (*P->p == '#') {
            if (skip_comment(P))
                return -1;
            continue;
        }
        int r = eat_newline(P);
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
    }
}

/* After a key/value pair or a header: optional whitespace and comment, then end of line. */
static int expect_eol(parser *P, const char *after)
{
    skip_ws(P);
    if (P->p < P->end && *P->p == '#' && skip_comment(P))
        return -1;
    if (P->p >= P->end)
        return 0;
    int r = eat_newline(P);
    if (r < 0)
        return -1;
    if (r == 0)
        return err_q(P, P->p, "expected end of line after %s, found %s", after, found(P, P->p));
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* At '\\' inside a basic string: decode one escape into b. */
static int parse_escape(parser *P, gbuf *b)
{
    const unsigned char *bs = P->p;
    int c = at(P, 1);
    char out;
    switch (c) {
    case 'b': out = '\b'; break;
    case 't': out = '\t'; break;
    case 'n': out = '\n'; break;
    case 'f': out = '\f'; break;
    case 'r': out = '\r'; break;
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case 'u':
    case 'U': {
        int nd = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int i = 0; i < nd; i++) {
            int h = hexval(at(P, 2 + (size_t)i));
            if (h < 0)
                return err_q(P, bs,
                             "invalid escape: \\%c needs exactly %d hexadecimal digits, found %s",
                             c, nd, found(P, P->p + 2 + i));
            cp = cp * 16 + (uint32_t)h;
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return err_q(P, bs,
                         "invalid escape: U+%04X is not a Unicode scalar value (surrogate or "
                         "above U+10FFFF)",
                         (unsigned)cp);
        P->p += 2 + nd;
        return gbuf_utf8(P, b, cp);
    }
    default:
        if (c < 0)
            return err_q(P, bs, "unterminated string: end of file after '\\'");
        return err_q(P, bs,
                     "invalid escape sequence: expected one of \\b \\t \\n \\f \\r \\\" \\\\ "
                     "\\uXXXX \\UXXXXXXXX, found '\\' followed by %s",
                     found(P, P->p + 1));
    }
    P->p += 2;
    return gbuf_put(P, b, &out, 1);
}

/* Parse a string at P->p (any of the four kinds) into b (appended, not NUL-terminated).
 * allow_multi: 0 for keys. */
static int parse_string(parser *P, gbuf *b, int allow_multi)
{
    const unsigned char *start = P->p;
    int sline = P->line, scol = col_of(P, start);
    const unsigned char q = *P->p;
    const int basic = q == '"';
    if (at(P, 1) == q && at(P, 2) == q) {
        if (!allow_multi)
            return err_q(P, start, "multi-line strings cannot be used as keys");
        P->p += 3;
        /* a newline right after the opening delimiter is trimmed */
        if (eat_newline(P) < 0)
            return -1;
        for (;;) {
            if (P->p >= P->end)
                return err_at(P, sline, scol,
                              "unterminated multi-line string: expected %c%c%c, "
                              "found end of file",
                              q, q, q);
            unsigned c = *P->p;
            if (c == q) {
                size_t n = 0;
                while (P->p + n < P->end && P->p[n] == q)
                    n++;
                if (n >= 3) {
                    if (n > 5)
                        return err_q(P, P->p + 5,
                                     "too many quotes at the end of a multi-line string (at most "
                                     "two may precede the closing delimiter)");
                    if (gbuf_put(P, b, P->p, n - 3))
                        return -1;
                    P->p += n;
                    return 0;
                }
                if (gbuf_put(P, b, P->p, n))
                    return -1;
                P->p += n;
            } else if (c == '\\' && basic) {
                /* line-ending backslash: whitespace, then a newline, then trim all blanks */
                const unsigned char *s = P->p + 1;
                while (s < P->end && (*s == ' ' || *s == '\t'))
                    s++;
                if (s < P->end && (*s == '\n' || *s == '\r')) {
                    P->p = s;
                    for (;;) {
                        skip_ws(P);
                        int r = eat_newline(P);
                        if (r < 0)
                            return -1;
                        if (r == 0)
                            break;
                    }
                } else if (parse_escape(P, b)) {
                    return -1;
                }
            } else if (c == '\n' || c == '\r') {
                if (eat_newline(P) < 0)
                    return -1;
                if (gbuf_put(P, b, "\n", 1))
                    return -1;
            } else if (is_ctrl(c)) {
                return err_q(P, P->p,
                             "control character U+%04X is not allowed in a string (use an escape)",
                             c);
            } else {
                /* a run of ordinary characters (the first one may be a literal backslash) */
                const unsigned char *s = P->p++;
                const unsigned stop = basic ? CC_STOP_BAS : CC_STOP_LIT;
                while (P->p < P->end && !(cclass[*P->p] & stop))
                    P->p++;
                if (gbuf_put(P, b, s, (size_t)(P->p - s)))
                    return -1;
            }
        }
    }
    P->p++;
    for (;;) {
        if (P->p >= P->end)
            return err_at(P, sline, scol,
                          "unterminated string: expected closing %c, found end of "
                          "file",
                          q);
        unsigned c = *P->p;
        if (c == q) {
            P->p++;
            return 0;
        }
        if (c == '\n' || c == '\r')
            return err_q(P, P->p,
                         "unterminated string: expected closing %c before the end of the line "
                         "(use %c%c%c for multi-line strings)",
                         q, q, q, q);
        if (is_ctrl(c))
            return err_q(P, P->p,
                         "control character U+%04X is not allowed in a string (use an escape)", c);
        if (c == '\\' && basic) {
            if (parse_escape(P, b))
                return -1;
            continue;
        }
        const unsigned char *s = P->p++;
        const unsigned stop = basic ? CC_STOP_BAS : CC_STOP_LIT;
        while (P->p < P->end && !(cclass[*P->p] & stop))
            P->p++;
        if (gbuf_put(P, b, s, (size_t)(P->p - s)))
            return -1;
    }
}

/* Parse a (possibly dotted) key; segments are pushed on P->segs. Returns the number pushed. */
static int parse_key(parser *P, size_t *nseg_out)
{
    size_t n0 = P->nseg;
    for (;;) {
        skip_ws(P);
        if (P->nseg == P->segcap) {
            size_t cap = P->segcap ? 2 * P->segcap : 16;
            keyseg *ns = realloc(P->segs, cap * sizeof *ns);
            if (!ns)
                return oom(P);
            P->segs = ns;
            P->segcap = cap;
        }
        keyseg *k = &P->segs[P->nseg];
        k->line = P->line;
        k->col = col_of(P, P->p);
        k->off = P->kbuf.n;
        int c = at(P, 0);
        if (c == '"' || c == '\'') {
            if (parse_string(P, &P->kbuf, 0))
                return -1;
        } else if (c >= 0 && is_bare(c)) {
            const unsigned char *s = P->p;
            while (P->p < P->end && (cclass[*P->p] & CC_BARE))
                P->p++;
            if (gbuf_put(P, &P->kbuf, s, (size_t)(P->p - s)))
                return -1;
        } else {
            return err_q(P, P->p,
                         "expected a key (letters, digits, '_', '-' or a quoted string), found %s",
                         found(P, P->p));
        }
        k->len = P->kbuf.n - k->off;
        P->nseg++;
        skip_ws(P);
        if (at(P, 0) != '.')
            break;
        P->p++;
    }
    *nseg_out = P->nseg - n0;
    return 0;
}

static void pop_key(parser *P, size_t base)
{
    if (base < P->nseg)
        P->kbuf.n = P->segs[base].off;
    P->nseg = base;
}

/* Display form of key segments [base, base+n) (quoted where not bare), for messages. */
static const char *key_str(parser *P, size_t base, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        const keyseg *k = &P->segs[base + i];
        const char *s = P->kbuf.p + k->off;
        int bare = k->len > 0;
        for (size_t j = 0; j < k->len; j++)
            if (!is_bare((unsigned char)s[j]))
                bare = 0;
        if (i)
            out[o++] = '.';
        if (!bare)
            out[o++] = '"';
        /* room kept for a 6-byte escape, the closing quote and the NUL (fuzz_toml found the
         * NUL written one past `out` after an escape that filled it) */
        for (size_t j = 0; j < k->len && o + 9 < cap; j++) {
            unsigned char c = (unsigned char)s[j];
            if (c < 0x20 || c == '"' || c == '\\') {
                o += (size_t)snprintf(out + o, cap - o, "\\u%04X", c);
                if (o >= cap)
                    o = cap - 1;
            } else {
                out[o++] = (char)c;
            }
        }
        if (!bare)
            out[o++] = '"';
        out[o] = '\0';
    }
    if (o + 8 >= cap)
        snprintf(out + (cap > 8 ? cap - 8 : 0), 8, "...");
    return out;
}

static const char *how_defined(const mk_toml_value *v)
{
    if (v->type == MK_TOML_TABLE) {
        if (v->flags & TF_INLINE)
            return "an inline table";
        if (v->flags & TF_HEADER)
            return "a table defined by a [header]";
        if (v->flags & TF_DOTTED)
            return "a table defined by dotted keys";
        return "a table";
    }
    if (v->type == MK_TOML_ARRAY)
        return (v->flags & TF_AOT) ? "an array of tables" : "an array";
    switch (v->type) {
    case MK_TOML_STRING: return "a string";
    case MK_TOML_INTEGER: return "an integer";
    case MK_TOML_FLOAT: return "a float";
    case MK_TOML_BOOL: return "a boolean";
    case MK_TOML_DATETIME: return "an offset date-time";
    case MK_TOML_DATETIME_LOCAL: return "a local date-time";
    case MK_TOML_DATE_LOCAL: return "a local date";
    case MK_TOML_TIME_LOCAL: return "a local time";
    default: return "a value";
    }
}

static mk_toml_value *new_table(parser *P, mk_toml_value *parent, const keyseg *k, unsigned flags,
                                size_t base, size_t i)
{
    const char *ks = P->kbuf.p + k->off;
    if (parent->depth + 1 > MK_TOML_MAX_DEPTH) {
        char kb[256];
        err_at(P, k->line, k->col, "nesting too deep at '%s': more than %d levels",
               key_str(P, base, i + 1, kb, sizeof kb), MK_TOML_MAX_DEPTH);
        return NULL;
    }
    mk_toml_value *t = new_value(P, MK_TOML_TABLE, k->line, k->col, parent->depth + 1);
    if (!t)
        return NULL;
    t->flags = flags;
    t->section = P->section;
    if (tab_add(P, parent, ks, k->len, hash_key(ks, k->len), k->line, k->col, t))
        return NULL;
    return t;
}

/* Key segments [base, base+n) = val, relative to table t (the current table or an inline one). */
static int put_keyval(parser *P, mk_toml_value *t, size_t base, size_t n, mk_toml_value *val)
{
    char kb[256];
    for (size_t i = 0; i + 1 < n; i++) {
        const keyseg *k = &P->segs[base + i];
        const char *ks = P->kbuf.p + k->off;
        long ix = tab_find(t, ks, k->len, hash_key(ks, k->len));
        if (ix < 0) {
            t = new_table(P, t, k, TF_DOTTED, base, i);
            if (!t)
                return -1;
            continue;
        }
        const entry *e = &t->u.tab.e[ix];
        mk_toml_value *v = e->val;
        if (v->type != MK_TOML_TABLE)
            return err_at(P, k->line, k->col,
                          "cannot use '%s' as a table with a dotted key: it is already %s "
                          "(defined at line %d, column %d)",
                          key_str(P, base, i + 1, kb, sizeof kb), how_defined(v), e->line, e->col);
        if ((v->flags & (TF_INLINE | TF_HEADER)) ||
            ((v->flags & TF_DOTTED) && v->section != P->section))
            return err_at(P, k->line, k->col,
                          "cannot add keys to '%s' with a dotted key: it is already %s (defined "
                          "at line %d, column %d)%s",
                          key_str(P, base, i + 1, kb, sizeof kb), how_defined(v), e->line, e->col,
                          (v->flags & TF_INLINE) ? ", and inline tables cannot be extended" : "");
        if (v->flags & TF_IMPLICIT) {
            v->flags = TF_DOTTED;
            v->section = P->section;
        }
        t = v;
    }
    const keyseg *k = &P->segs[base + n - 1];
    const char *ks = P->kbuf.p + k->off;
    uint32_t h = hash_key(ks, k->len);
    long ix = tab_find(t, ks, k->len, h);
    if (ix >= 0) {
        const entry *e = &t->u.tab.e[ix];
        return err_at(P, k->line, k->col,
                      "duplicate key '%s': already defined as %s at line %d, column %d",
                      key_str(P, base, n, kb, sizeof kb), how_defined(e->val), e->line, e->col);
    }
    return tab_add(P, t, ks, k->len, h, k->line, k->col, val);
}

/* --------------------------------------------------------------------------- values */

static int parse_value(parser *P, int depth, mk_toml_value **out);

static int fixed_digits(parser *P, const unsigned char *q, int n, int *val)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (q + i >= P->end || !is_digit(q[i]))
            return -1;
        v = v * 10 + (q[i] - '0');
    }
    *val = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return mdays[m - 1];
}

/* HH:MM:SS[.frac] at P->p. */
static int parse_time(parser *P, mk_toml_datetime *dt)
{
    const unsigned char *q = P->p;
    if (fixed_digits(P, q, 2, &dt->hour) || at(P, 2) != ':' ||
        fixed_digits(P, q + 3, 2, &dt->minute) || at(P, 5) != ':' ||
        fixed_digits(P, q + 6, 2, &dt->second))
        return err_q(P, q, "invalid time: expected HH:MM:SS (two digits each, seconds required)");
    if (dt->hour > 23)
        return err_q(P, q, "invalid time: hour %d is out of range 00-23", dt->hour);
    if (dt->minute > 59)
        return err_q(P, q + 3, "invalid time: minute %d is out of range 00-59", dt->minute);
    if (dt->second > 60)
        return err_q(P, q + 6, "invalid time: second %d is out of range 00-60", dt->second);
    P->p += 8;
    if (at(P, 0) == '.') {
        const unsigned char *f = P->p + 1;
        int nd = 0, ns = 0;
        while (f + nd < P->end && is_digit(f[nd])) {
            if (nd < 9)
                ns = ns * 10 + (f[nd] - '0');
            nd++;
        }
        if (nd == 0)
            return err_q(P, f, "invalid time: expected digits after '.', found %s", found(P, f));
        for (int i = nd; i < 9; i++)
            ns *= 10;
        dt->nanosecond = ns;
        dt->frac_digits = nd;
        P->p = f + nd;
    }
    return 0;
}

static int parse_datetime(parser *P, mk_toml_value *v)
{
    mk_toml_datetime *dt = &v->u.dt;
    const unsigned char *q = P->p;
    if (at(P, 2) == ':') {
        v->type = MK_TOML_TIME_LOCAL;
        return parse_time(P, dt);
    }
    if (fixed_digits(P, q, 4, &dt->year) || at(P, 4) != '-' ||
        fixed_digits(P, q + 5, 2, &dt->month) || at(P, 7) != '-' ||
        fixed_digits(P, q + 8, 2, &dt->day))
        return err_q(P, q,
                     "invalid date: expected YYYY-MM-DD (4-digit year, 2-digit month and day)");
    if (dt->month < 1 || dt->month > 12)
        return err_q(P, q + 5, "invalid date: month %d is out of range 01-12", dt->month);
    if (dt->day < 1 || dt->day > days_in_month(dt->year, dt->month))
        return err_q(P, q + 8, "invalid date: day %d is out of range for %04d-%02d (1-%d)", dt->day,
                     dt->year, dt->month, days_in_month(dt->year, dt->month));
    P->p += 10;
    int c = at(P, 0);
    if (!(c == 'T' || c == 't' || (c == ' ' && is_digit(at(P, 1))))) {
        v->type = MK_TOML_DATE_LOCAL;
        return 0;
    }
    P->p++;
    if (parse_time(P, dt))
        return -1;
    c = at(P, 0);
    if (c == 'Z' || c == 'z') {
        v->type = MK_TOML_DATETIME;
        dt->offset_z = 1;
        P->p++;
        return 0;
    }
    if (c == '+' || c == '-') {
        int oh, om;
        q = P->p;
        if (fixed_digits(P, q + 1, 2, &oh) || at(P, 3) != ':' || fixed_digits(P, q + 4, 2, &om))
            return err_q(P, q, "invalid time offset: expected Z or +HH:MM / -HH:MM");
        if (oh > 23 || om > 59)
            return err_q(P, q,
                         "invalid time offset %c%02d:%02d: hours must be 00-23 and minutes "
                         "00-59",
                         c, oh, om);
        dt->offset_minutes = (c == '-' ? -1 : 1) * (oh * 60 + om);
        v->type = MK_TOML_DATETIME;
        P->p += 6;
        return 0;
    }
    v->type = MK_TOML_DATETIME_LOCAL;
    return 0;
}

/* Digits of `base` with single underscores between digits, starting at s[*i]. Returns the count of
 * digits, or -1 (with an error) on a misplaced underscore. */
static int scan_digits(parser *P, const unsigned char *s, size_t n, size_t *i, int base,
                       const char *what)
{
    int nd = 0;
    while (*i < n) {
        int c = s[*i], d = hexval(c);
        if (c == '_') {
            if (nd == 0 || *i + 1 >= n || hexval(s[*i + 1]) < 0 || hexval(s[*i + 1]) >= base)
                return err_q(P, s + *i, "invalid %s: '_' must be between two digits", what);
            (*i)++;
            continue;
        }
        if (d < 0 || d >= base)
            break;
        nd++;
        (*i)++;
    }
    return nd;
}

/* Exact fast path for decimal floats (Clinger): when the significant digits fit in 53 bits and the
 * power of ten is at most 10^22, both operands are exact doubles and a single IEEE multiply or
 * divide is correctly rounded, so the result equals strtod's. Anything else returns 0 and goes to
 * strtod. `s` is a token already validated by parse_number. */
static int float_fast(const unsigned char *s, size_t n, double *out)
{
#if FLT_EVAL_METHOD == 0
    static const double p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    int neg = 0, nd = 0, in_frac = 0;
    long frac = 0, e = 0;
    uint64_t m = 0;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    for (; i < n; i++) {
        int c = s[i];
        if (c == '_')
            continue;
        if (c == '.') {
            in_frac = 1;
            continue;
        }
        if (c == 'e' || c == 'E')
            break;
        if (in_frac)
            frac++;
        if (m == 0 && c == '0')
            continue; /* leading zeros carry no digits */
        if (++nd > 19)
            return 0;
        m = m * 10 + (uint64_t)(c - '0');
    }
    if (i < n) {
        int eneg = 0;
        i++;
        if (s[i] == '+' || s[i] == '-')
            eneg = s[i++] == '-';
        for (; i < n; i++) {
            if (s[i] == '_')
                continue;
            if (e > 100000)
                return 0;
            e = e * 10 + (s[i] - '0');
        }
        if (eneg)
            e = -e;
    }
    e -= frac;
    double d;
    if (m == 0)
        d = 0.0;
    else if (m > ((uint64_t)1 << 53) || e < -22 || e > 22)
        return 0;
    else
        d = e < 0 ? (double)m / p10[-e] : (double)m * p10[e];
    *out = neg ? -d : d;
    return 1;
#else
    (void)s;
    (void)n;
    (void)out;
    return 0;
#endif
}

static int parse_number(parser *P, mk_toml_value *v)
{
    const unsigned char *s = P->p;
    size_t n = 0;
    while (s + n < P->end && (cclass[s[n]] & CC_NUM))
        n++;
    size_t i = 0;
    int neg = 0, sign = 0;
    if (n && (s[0] == '+' || s[0] == '-')) {
        sign = 1;
        neg = s[0] == '-';
        i = 1;
    }
    if (n - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0)) {
        v->type = MK_TOML_FLOAT;
        v->u.f = s[i] == 'i' ? (neg ? -INFINITY : INFINITY) : (neg ? -NAN : NAN);
        P->p += n;
        return 0;
    }
    if (i == n || !is_digit(s[i]))
        return err_q(P, s + i,
                     "expected a value (string, number, boolean, date-time, array or "
                     "inline table), found %s",
                     found(P, s + i));
    if (n - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o' || s[i + 1] == 'b')) {
        int base = s[i + 1] == 'x' ? 16 : s[i + 1] == 'o' ? 8 : 2;
        const char *what = base == 16  ? "hexadecimal integer"
                           : base == 8 ? "octal integer"
                                       : "binary integer";
        if (sign)
            return err_q(P, s, "invalid %s: a sign is not allowed with the 0%c prefix", what,
                         s[i + 1]);
        size_t j = i + 2;
        if (j < n && s[j] == '_')
            return err_q(P, s + j, "invalid %s: '_' must be between two digits", what);
        int nd = scan_digits(P, s, n, &j, base, what);
        if (nd < 0)
            return -1;
        if (nd == 0 || j != n)
            return err_q(P, s + j, "invalid %s: expected %s digits, found %s", what,
                         base == 16  ? "hexadecimal"
                         : base == 8 ? "octal (0-7)"
                                     : "binary (0/1)",
                         found(P, s + j));
        uint64_t acc = 0;
        for (size_t k = i + 2; k < n; k++) {
            if (s[k] == '_')
                continue;
            uint64_t d = (uint64_t)hexval(s[k]);
            if (acc > ((uint64_t)INT64_MAX - d) / (uint64_t)base)
                return err_q(P, s,
                             "integer %.*s is out of range (must fit a signed 64-bit "
                             "integer, max 9223372036854775807)",
                             (int)n, (const char *)s);
            acc = acc * (uint64_t)base + d;
        }
        v->type = MK_TOML_INTEGER;
        v->u.i = (int64_t)acc;
        P->p += n;
        return 0;
    }
    size_t istart = i;
    int nd = scan_digits(P, s, n, &i, 10, "number");
    if (nd < 0)
        return -1;
    if (s[istart] == '0' && nd > 1)
        return err_q(P, s + istart, "invalid number: leading zeros are not allowed");
    int is_float = 0;
    if (i < n && s[i] == '.') {
        is_float = 1;
        i++;
        if (i >= n || !is_digit(s[i]))
            return err_q(P, s + i, "invalid float: expected a digit after '.', found %s",
                         found(P, s + i));
        if (scan_digits(P, s, n, &i, 10, "float") < 0)
            return -1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        is_float = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return err_q(P, s + i, "invalid float: expected a digit in the exponent, found %s",
                         found(P, s + i));
        if (scan_digits(P, s, n, &i, 10, "float") < 0)
            return -1;
    }
    if (i != n)
        return err_q(P, s + i, "invalid number '%.*s': unexpected %s", (int)(n > 40 ? 40 : n),
                     (const char *)s, found(P, s + i));
    if (!is_float) {
        uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
        for (size_t k = istart; k < n; k++) {
            if (s[k] == '_')
                continue;
            uint64_t d = (uint64_t)(s[k] - '0');
            if (acc > (lim - d) / 10)
                return err_q(P, s,
                             "integer %.*s is out of range (must be between "
                             "-9223372036854775808 and 9223372036854775807)",
                             (int)(n > 40 ? 40 : n), (const char *)s);
            acc = acc * 10 + d;
        }
        v->type = MK_TOML_INTEGER;
        v->u.i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
        P->p += n;
        return 0;
    }
    v->type = MK_TOML_FLOAT;
    P->p += n;
    if (float_fast(s, n, &v->u.f))
        return 0;
    /* strtod on the text without underscores, with the locale's decimal point */
    if (!P->decimal_point) {
        const char *ldp = localeconv()->decimal_point;
        P->decimal_point = ldp && *ldp ? ldp : ".";
        P->decimal_point_len = strlen(P->decimal_point);
    }
    const char *dp = P->decimal_point;
    size_t dpl = P->decimal_point_len;
    P->sbuf.n = 0;
    if (gbuf_reserve(P, &P->sbuf, n + dpl + 1))
        return -1;
    for (size_t k = 0; k < n; k++) {
        if (s[k] == '_')
            continue;
        if (s[k] == '.') {
            memcpy(P->sbuf.p + P->sbuf.n, dp, dpl);
            P->sbuf.n += dpl;
        } else {
            P->sbuf.p[P->sbuf.n++] = (char)s[k];
        }
    }
    P->sbuf.p[P->sbuf.n] = '\0';
    v->u.f = strtod(P->sbuf.p, NULL);
    return 0;
}

static int parse_array(parser *P, mk_toml_value *a)
{
    P->p++; /* '[' */
    for (;;) {
        if (skip_ws_nl(P))
            return -1;
        if (at(P, 0) == ']') {
            P->p++;
            return 0;
        }
        if (P->p >= P->end)
            return err_at(P, a->line, a->col,
                          "unterminated array: expected ']' before the end of file");
        mk_toml_value *item;
        if (parse_value(P, a->depth + 1, &item) || arr_push(P, a, item))
            return -1;
        if (skip_ws_nl(P))
            return -1;
        int c = at(P, 0);
        if (c == ',') {
            P->p++;
            continue;
        }
        if (c == ']') {
            P->p++;
            return 0;
        }
        if (c < 0)
            return err_at(P, a->line, a->col,
                          "unterminated array: expected ']' before the end of file");
        return err_q(P, P->p, "expected ',' or ']' in array, found %s", found(P, P->p));
    }
}

static int parse_inline_table(parser *P, mk_toml_value *t)
{
    P->p++; /* '{' */
    skip_ws(P);
    if (at(P, 0) == '}') {
        P->p++;
        return 0;
    }
    for (;;) {
        skip_ws(P);
        int c = at(P, 0);
        if (c == '\n' || c == '\r')
            return err_q(P, P->p, "newlines are not allowed inside an inline table");
        size_t base = P->nseg, nseg;
        if (parse_key(P, &nseg))
            return -1;
        if (at(P, 0) != '=')
            return err_q(P, P->p, "expected '=' after key in inline table, found %s",
                         found(P, P->p));
        P->p++;
        skip_ws(P);
        mk_toml_value *val;
        if (parse_value(P, t->depth + (int)nseg, &val) || put_keyval(P, t, base, nseg, val))
            return -1;
        pop_key(P, base);
        skip_ws(P);
        c = at(P, 0);
        if (c == '}') {
            P->p++;
            return 0;
        }
        if (c == ',') {
            P->p++;
            skip_ws(P);
            if (at(P, 0) == '}')
                return err_q(P, P->p, "trailing comma is not allowed in an inline table");
            continue;
        }
        if (c == '\n' || c == '\r')
            return err_q(P, P->p,
                         "newlines are not allowed inside an inline table (expected ',' "
                         "or '}')");
        if (c < 0)
            return err_at(P, t->line, t->col,
                          "unterminated inline table: expected '}' before the end of file");
        return err_q(P, P->p, "expected ',' or '}' in inline table, found %s", found(P, P->p));
    }
}

/* Parse the value at P->p; `depth` is the depth the new node will have. */
static int parse_value(parser *P, int depth, mk_toml_value **out)
{
    int c = at(P, 0);
    int line = P->line, col = col_of(P, P->p);
    mk_toml_value *v = new_value(P, MK_TOML_STRING, line, col, depth);
    if (!v)
        return -1;
    *out = v;
    if (c == '"' || c == '\'') {
        P->sbuf.n = 0;
        if (parse_string(P, &P->sbuf, 1))
            return -1;
        v->u.str.s = arena_strdup(P, P->sbuf.p ? P->sbuf.p : "", P->sbuf.n);
        v->u.str.len = P->sbuf.n;
        return v->u.str.s ? 0 : -1;
    }
    if (c == '[' || c == '{') {
        if (depth > MK_TOML_MAX_DEPTH)
            return err_q(P, P->p, "nesting too deep: more than %d levels of arrays and tables",
                         MK_TOML_MAX_DEPTH);
        if (c == '[') {
            v->type = MK_TOML_ARRAY;
            v->flags = TF_STATIC;
            return parse_array(P, v);
        }
        v->type = MK_TOML_TABLE;
        v->flags = TF_INLINE;
        return parse_inline_table(P, v);
    }
    if (c == 't' || c == 'f') {
        const char *w = c == 't' ? "true" : "false";
        size_t n = strlen(w);
        if ((size_t)(P->end - P->p) >= n && memcmp(P->p, w, n) == 0 &&
            !(P->p + n < P->end && is_bare(P->p[n]))) {
            v->type = MK_TOML_BOOL;
            v->u.b = c == 't';
            P->p += n;
            return 0;
        }
        int wn = 0;
        while (wn < 20 && P->p + wn < P->end && is_bare(P->p[wn]))
            wn++;
        return err_q(P, P->p,
                     "expected a value, found '%.*s' (booleans are lower-case true and "
                     "false; strings need quotes)",
                     wn, (const char *)P->p);
    }
    if (is_digit(c) &&
        ((is_digit(at(P, 1)) && at(P, 2) == ':') ||
         (is_digit(at(P, 1)) && is_digit(at(P, 2)) && is_digit(at(P, 3)) && at(P, 4) == '-')))
        return parse_datetime(P, v);
    if (c < 0)
        return err_q(P, P->p, "expected a value, found end of file");
    if (c == '\n' || c == '\r')
        return err_q(P, P->p, "expected a value, found end of line");
    return parse_number(P, v);
}

/* ------------------------------------------------------------------------ documents */

/* [header] or [[header]] at P->p. */
static int parse_header(parser *P)
{
    char kb[256], kb2[256];
    const unsigned char *open = P->p;
    int hline = P->line, hcol = col_of(P, open);
    int aot = at(P, 1) == '[';
    P->p += aot ? 2 : 1;
    size_t base = P->nseg, n;
    if (parse_key(P, &n))
        return -1;
    if (at(P, 0) != ']' || (aot && at(P, 1) != ']'))
        return err_q(P, P->p, "expected '%s' to close the table header, found %s", aot ? "]]" : "]",
                     found(P, P->p));
    P->p += aot ? 2 : 1;
    P->section++;
    mk_toml_value *t = P->doc->root;
    for (size_t i = 0; i + 1 < n; i++) {
        const keyseg *k = &P->segs[base + i];
        const char *ks = P->kbuf.p + k->off;
        long ix = tab_find(t, ks, k->len, hash_key(ks, k->len));
        if (ix < 0) {
            t = new_table(P, t, k, TF_IMPLICIT, base, i);
            if (!t)
                return -1;
            continue;
        }
        const entry *e = &t->u.tab.e[ix];
        mk_toml_value *v = e->val;
        if (v->type == MK_TOML_TABLE && !(v->flags & TF_INLINE)) {
            t = v;
        } else if (v->type == MK_TOML_ARRAY && (v->flags & TF_AOT)) {
            t = v->u.arr.v[v->u.arr.len - 1];
        } else {
            return err_at(P, k->line, k->col,
                          "cannot define table '%s': '%s' is already %s (defined at line %d, "
                          "column %d)%s",
                          key_str(P, base, n, kb, sizeof kb),
                          key_str(P, base, i + 1, kb2, sizeof kb2), how_defined(v), e->line, e->col,
                          v->type == MK_TOML_TABLE || v->type == MK_TOML_ARRAY
                              ? " which cannot be extended"
                              : "");
        }
    }
    const keyseg *k = &P->segs[base + n - 1];
    const char *ks = P->kbuf.p + k->off;
    long ix = tab_find(t, ks, k->len, hash_key(ks, k->len));
    mk_toml_value *v = ix >= 0 ? t->u.tab.e[ix].val : NULL;
    if (!aot) {
        if (!v) {
            v = new_table(P, t, k, TF_HEADER, base, n - 1);
            if (!v)
                return -1;
        } else if (v->type == MK_TOML_TABLE && v->flags == TF_IMPLICIT) {
            v->flags = TF_HEADER;
            entry *e = &t->u.tab.e[ix];
            e->line = k->line;
            e->col = k->col;
        } else {
            const entry *e = &t->u.tab.e[ix];
            if (v->type != MK_TOML_TABLE)
                return err_at(P, hline, hcol,
                              "cannot define table [%s]: the key is already %s (defined at line "
                              "%d, column %d)",
                              key_str(P, base, n, kb, sizeof kb), how_defined(v), e->line, e->col);
            return err_at(P, hline, hcol,
                          "table [%s] defined twice: it is already %s (defined at line %d, "
                          "column %d)",
                          key_str(P, base, n, kb, sizeof kb), how_defined(v), e->line, e->col);
        }
        v->line = hline;
        v->col = hcol;
    } else {
        if (!v) {
            if (t->depth + 1 > MK_TOML_MAX_DEPTH)
                return err_at(P, k->line, k->col, "nesting too deep: more than %d levels",
                              MK_TOML_MAX_DEPTH);
            v = new_value(P, MK_TOML_ARRAY, hline, hcol, t->depth + 1);
            if (!v || tab_add(P, t, ks, k->len, hash_key(ks, k->len), k->line, k->col, v))
                return -1;
            v->flags = TF_AOT;
        } else if (!(v->type == MK_TOML_ARRAY && (v->flags & TF_AOT))) {
            const entry *e = &t->u.tab.e[ix];
            return err_at(P, hline, hcol,
                          "cannot append to [[%s]]: it is already %s (defined at line %d, "
                          "column %d), not an array of tables",
                          key_str(P, base, n, kb, sizeof kb), how_defined(v), e->line, e->col);
        }
        if (v->depth + 1 > MK_TOML_MAX_DEPTH)
            return err_at(P, k->line, k->col, "nesting too deep: more than %d levels",
                          MK_TOML_MAX_DEPTH);
        mk_toml_value *el = new_value(P, MK_TOML_TABLE, hline, hcol, v->depth + 1);
        if (!el || arr_push(P, v, el))
            return -1;
        el->flags = TF_HEADER;
        v = el;
    }
    pop_key(P, base);
    P->cur = v;
    return expect_eol(P, "table header");
}

static int parse_doc(parser *P)
{
    for (;;) {
        skip_ws(P);
        if (P->p >= P->end)
            return 0;
        int c = *P->p;
        if (c == '#') {
            if (skip_comment(P))
                return -1;
            if (expect_eol(P, "comment"))
                return -1;
            continue;
        }
        int r = eat_newline(P);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        if (c == '[') {
            if (parse_header(P))
                return -1;
            continue;
        }
        size_t base = P->nseg, nseg;
        if (parse_key(P, &nseg))
            return -1;
        if (at(P, 0) != '=') {
            char kb[256];
            return err_q(P, P->p, "expected '=' after key '%s', found %s",
                         key_str(P, base, nseg, kb, sizeof kb), found(P, P->p));
        }
        P->p++;
        skip_ws(P);
        mk_toml_value *val;
        if (parse_value(P, P->cur->depth + (int)nseg, &val) ||
            put_keyval(P, P->cur, base, nseg, val))
            return -1;
        pop_key(P, base);
        if (expect_eol(P, "value"))
            return -1;
    }
}

/* Whole-buffer UTF-8 check (overlong forms, surrogates, > U+10FFFF, truncation). Returns the
 * offset of the first bad byte, or len. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* skip ASCII eight bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        if (i + n > len || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n;
    }
    return len;
}

mk_status mk_toml_parse(mk_ctx *ctx, const char *filename, const char *buf, size_t len,
                        mk_toml_doc **out)
{
    MK_ASSERT(out != NULL);
    *out = NULL;
    if (!filename)
        filename = "<toml>";
    if (!buf && len)
        return mk_err(ctx, MK_ERR_INVALID, "%s: no input buffer", filename);
    const unsigned char *s = (const unsigned char *)(buf ? buf : "");
    mk_toml_doc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", filename);
    doc->filename = malloc(strlen(filename) + 1);
    if (!doc->filename) {
        free(doc);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", filename);
    }
    strcpy(doc->filename, filename);

    parser P;
    memset(&P, 0, sizeof P);
    P.ctx = ctx;
    P.fname = doc->filename;
    P.doc = doc;
    P.p = s;
    P.end = s + len;
    P.line = 1;
    if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        P.p += 3; /* a byte-order mark is allowed at the very start */
    P.line_start = P.p;
    P.col_pos = P.p;
    P.col_val = 1;

    size_t bad = utf8_check(s, len);
    /* allocate the scratch buffers up front so empty keys/strings never see a NULL buffer */
    if (gbuf_reserve(&P, &P.sbuf, 256) || gbuf_reserve(&P, &P.kbuf, 256)) {
        /* error recorded */
    } else if (bad < len) {
        /* locate the bad byte: count lines up to it */
        const unsigned char *q = P.p;
        for (; q < s + bad; q++)
            if (*q == '\n') {
                P.line++;
                P.line_start = q + 1;
            }
        P.col_pos = P.line_start;
        err_q(&P, s + bad,
              "invalid UTF-8: byte 0x%02X does not start a valid UTF-8 sequence "
              "(overlong, surrogate, truncated or out of range)",
              s[bad]);
    } else {
        doc->root = new_value(&P, MK_TOML_TABLE, 1, 1, 0);
        if (doc->root) {
            doc->root->flags = TF_HEADER;
            P.cur = doc->root;
            parse_doc(&P);
        }
    }
    free(P.sbuf.p);
    free(P.kbuf.p);
    free(P.segs);
    if (P.failed) {
        mk_status st = ctx ? ctx->status : MK_ERR_CONFIG;
        mk_toml_free(doc);
        return st == MK_OK ? MK_ERR_CONFIG : st;
    }
    *out = doc;
    return MK_OK;
}

mk_status mk_toml_parse_file(mk_ctx *ctx, const char *path, mk_toml_doc **out)
{
    MK_ASSERT(out != NULL);
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &buf, &len);
    if (st != MK_OK)
        return st;
    st = mk_toml_parse(ctx, path, buf, len, out);
    free(buf);
    return st;
}

void mk_toml_free(mk_toml_doc *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->nowners; i++) {
        mk_toml_value *v = doc->owners[i];
        if (v->type == MK_TOML_TABLE) {
            if (v->u.tab.cap > ARENA_ITEMS)
                free(v->u.tab.e);
            free(v->u.tab.idx);
        } else if (v->u.arr.cap > ARENA_ITEMS) {
            free(v->u.arr.v);
        }
    }
    free(doc->owners);
    chunk *c = doc->arena;
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc->filename);
    free(doc);
}

/* ------------------------------------------------------------------------ accessors */

const mk_toml_value *mk_toml_root(const mk_toml_doc *doc)
{
    return doc ? doc->root : NULL;
}

const char *mk_toml_filename(const mk_toml_doc *doc)
{
    return doc ? doc->filename : NULL;
}

mk_toml_type mk_toml_type_of(const mk_toml_value *v)
{
    return v ? v->type : MK_TOML_TYPE_COUNT;
}

const char *mk_toml_type_name(mk_toml_type t)
{
    static const char *const names[MK_TOML_TYPE_COUNT] = {
        [MK_TOML_TABLE] = "table",
        [MK_TOML_ARRAY] = "array",
        [MK_TOML_STRING] = "string",
        [MK_TOML_INTEGER] = "integer",
        [MK_TOML_FLOAT] = "float",
        [MK_TOML_BOOL] = "boolean",
        [MK_TOML_DATETIME] = "offset date-time",
        [MK_TOML_DATETIME_LOCAL] = "local date-time",
        [MK_TOML_DATE_LOCAL] = "local date",
        [MK_TOML_TIME_LOCAL] = "local time",
    };
    _Static_assert(sizeof names / sizeof names[0] == MK_TOML_TYPE_COUNT, "type names");
    return (unsigned)t < MK_TOML_TYPE_COUNT ? names[t] : "invalid";
}

int mk_toml_line(const mk_toml_value *v)
{
    return v ? v->line : 0;
}

int mk_toml_col(const mk_toml_value *v)
{
    return v ? v->col : 0;
}

static int is_table(const mk_toml_value *t)
{
    return t && t->type == MK_TOML_TABLE;
}

size_t mk_toml_table_len(const mk_toml_value *t)
{
    return is_table(t) ? t->u.tab.len : 0;
}

const char *mk_toml_table_key(const mk_toml_value *t, size_t i)
{
    return is_table(t) && i < t->u.tab.len ? t->u.tab.e[i].key : NULL;
}

size_t mk_toml_table_key_len(const mk_toml_value *t, size_t i)
{
    return is_table(t) && i < t->u.tab.len ? t->u.tab.e[i].klen : 0;
}

const mk_toml_value *mk_toml_table_at(const mk_toml_value *t, size_t i)
{
    return is_table(t) && i < t->u.tab.len ? t->u.tab.e[i].val : NULL;
}

const mk_toml_value *mk_toml_table_getn(const mk_toml_value *t, const char *key, size_t len)
{
    if (!is_table(t) || !key)
        return NULL;
    long ix = tab_find(t, key, len, hash_key(key, len));
    return ix >= 0 ? t->u.tab.e[ix].val : NULL;
}

const mk_toml_value *mk_toml_table_get(const mk_toml_value *t, const char *key)
{
    return key ? mk_toml_table_getn(t, key, strlen(key)) : NULL;
}

long mk_toml_table_find(const mk_toml_value *t, const char *key)
{
    if (!is_table(t) || !key)
        return -1;
    size_t n = strlen(key);
    return tab_find(t, key, n, hash_key(key, n));
}

int mk_toml_table_key_line(const mk_toml_value *t, size_t i)
{
    return is_table(t) && i < t->u.tab.len ? t->u.tab.e[i].line : 0;
}

int mk_toml_table_key_col(const mk_toml_value *t, size_t i)
{
    return is_table(t) && i < t->u.tab.len ? t->u.tab.e[i].col : 0;
}

size_t mk_toml_array_len(const mk_toml_value *a)
{
    return a && a->type == MK_TOML_ARRAY ? a->u.arr.len : 0;
}

const mk_toml_value *mk_toml_array_at(const mk_toml_value *a, size_t i)
{
    return a && a->type == MK_TOML_ARRAY && i < a->u.arr.len ? a->u.arr.v[i] : NULL;
}

const char *mk_toml_string(const mk_toml_value *v, size_t *len)
{
    if (!v || v->type != MK_TOML_STRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->u.str.len;
    return v->u.str.s;
}

int64_t mk_toml_int(const mk_toml_value *v)
{
    return v && v->type == MK_TOML_INTEGER ? v->u.i : 0;
}

double mk_toml_float(const mk_toml_value *v)
{
    return v && v->type == MK_TOML_FLOAT ? v->u.f : 0.0;
}

int mk_toml_bool(const mk_toml_value *v)
{
    return v && v->type == MK_TOML_BOOL ? v->u.b : 0;
}

const mk_toml_datetime *mk_toml_dt(const mk_toml_value *v)
{
    if (!v || v->type < MK_TOML_DATETIME || v->type > MK_TOML_TIME_LOCAL)
        return NULL;
    return &v->u.dt;
}
