/* Config loading and validation against the declarative schema (see mk_config.h). */
#include "mk_config.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "mk_toml.h"

typedef struct cfg_val {
    int set;  /* written in the file (or overridden) */
    int line; /* line in the file, 0 when defaulted */
    char *s;  /* STRING / PATH (resolved) */
    long long i;
    double f;
    int b;
    int n;        /* list length */
    char **ss;    /* STRING_LIST */
    double *nums; /* INT_LIST / FLOAT_LIST */
} cfg_val;

struct mk_cfg {
    char *path;
    char dir[4096];
    int nvals;
    cfg_val *vals;        /* one per schema key, in schema order */
    int *section_present; /* one per schema section */
};

/* ---- errors ------------------------------------------------------------------------------ */

#define MAX_ERRORS 20

typedef struct errs {
    char buf[MK_ERRMSG_MAX];
    size_t len;
    int n;
} errs;

__attribute__((format(printf, 2, 3))) static void add_err(errs *e, const char *fmt, ...)
{
    e->n++;
    if (e->n > MAX_ERRORS)
        return;
    if (e->len + 2 >= sizeof e->buf)
        return;
    if (e->len > 0)
        e->buf[e->len++] = '\n';
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(e->buf + e->len, sizeof e->buf - e->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        e->len += (size_t)k < sizeof e->buf - e->len ? (size_t)k : sizeof e->buf - e->len - 1;
}

/* ---- schema lookup ----------------------------------------------------------------------- */

static const mk_cfg_section *g_schema;
static int g_nschema;
#define MK_CFG_SCHEMA g_schema
#define MK_CFG_SCHEMA_COUNT g_nschema

void mk_cfg_set_schema(const mk_cfg_section *sections, int n)
{
    g_schema = sections;
    g_nschema = n;
}

const mk_cfg_section *mk_cfg_schema(int *n)
{
    if (n)
        *n = g_nschema;
    return g_schema;
}

static int section_index(const char *name)
{
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++)
        if (strcmp(MK_CFG_SCHEMA[s].name, name) == 0)
            return s;
    return -1;
}

static int key_base(int sec)
{
    int k = 0;
    for (int s = 0; s < sec; s++)
        k += MK_CFG_SCHEMA[s].nkeys;
    return k;
}

static int key_index_in(int sec, const char *key)
{
    const mk_cfg_section *S = &MK_CFG_SCHEMA[sec];
    for (int i = 0; i < S->nkeys; i++)
        if (strcmp(S->keys[i].name, key) == 0)
            return i;
    return -1;
}

/* "section.key" -> global index, or -1. */
static int lookup(const char *path, const mk_cfg_key **key)
{
    const char *dot = strchr(path, '.');
    if (!dot)
        return -1;
    char sec[64];
    size_t n = (size_t)(dot - path);
    if (n >= sizeof sec)
        return -1;
    memcpy(sec, path, n);
    sec[n] = '\0';
    int s = section_index(sec);
    if (s < 0)
        return -1;
    int k = key_index_in(s, dot + 1);
    if (k < 0)
        return -1;
    if (key)
        *key = &MK_CFG_SCHEMA[s].keys[k];
    return key_base(s) + k;
}

static int total_keys(void)
{
    return key_base(MK_CFG_SCHEMA_COUNT);
}

/* ---- did you mean -------------------------------------------------------------------------- */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    int d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = a[i - 1] == b[j - 1] ? 0 : 1;
            int m = d[i - 1][j - 1] + c;
            if (d[i - 1][j] + 1 < m)
                m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m)
                m = d[i][j - 1] + 1;
            /* adjacent transposition counts as one edit */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < m)
                m = d[i - 2][j - 2] + 1;
            d[i][j] = m;
        }
    return d[la][lb];
}

const char *mk_cfg_suggest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = 1 << 30;
    for (int i = 0; i < n; i++) {
        int dd = edit_distance(word, cands[i]);
        if (dd < bd) {
            bd = dd;
            best = cands[i];
        }
    }
    int len = (int)strlen(word);
    int limit = len <= 4 ? 1 : (len <= 8 ? 2 : 3);
    return (best && bd <= limit) ? best : NULL;
}

static const char *suggest_section(const char *word)
{
    const char *c[64];
    int n = 0;
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT && n < 64; s++)
        c[n++] = MK_CFG_SCHEMA[s].name;
    return mk_cfg_suggest(word, c, n);
}

static const char *suggest_key(int sec, const char *word)
{
    const char *c[128];
    int n = 0;
    const mk_cfg_section *S = &MK_CFG_SCHEMA[sec];
    for (int i = 0; i < S->nkeys && n < 128; i++)
        c[n++] = S->keys[i].name;
    return mk_cfg_suggest(word, c, n);
}

static int choice_ok(const char *choices, const char *v)
{
    size_t lv = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == lv && strncmp(p, v, l) == 0)
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

static const char *suggest_choice(const char *choices, const char *v, char *buf, size_t n)
{
    const char *c[32];
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", choices);
    int k = 0;
    for (char *tok = strtok(tmp, "|"); tok && k < 32; tok = strtok(NULL, "|"))
        c[k++] = tok;
    const char *s = mk_cfg_suggest(v, c, k);
    if (!s)
        return NULL;
    snprintf(buf, n, "%s", s);
    return buf;
}

static void choices_list(const char *choices, char *buf, size_t n)
{
    size_t k = 0;
    for (const char *p = choices; *p && k + 3 < n; p++) {
        if (*p == '|') {
            buf[k++] = ',';
            buf[k++] = ' ';
        } else {
            buf[k++] = *p;
        }
    }
    buf[k] = '\0';
}

/* ---- value conversion ------------------------------------------------------------------- */

static const char *type_word(mk_cfg_type t)
{
    switch (t) {
    case MK_CFG_STRING: return "string";
    case MK_CFG_INT: return "integer";
    case MK_CFG_FLOAT: return "number";
    case MK_CFG_BOOL: return "boolean (true/false)";
    case MK_CFG_PATH: return "path (string)";
    case MK_CFG_STRING_LIST: return "array of strings";
    case MK_CFG_INT_LIST: return "array of integers";
    case MK_CFG_FLOAT_LIST: return "array of numbers";
    case MK_CFG_LABEL_TABLE: return "table {value = \"name\"}";
    default: return "?";
    }
}

static int has_range(const mk_cfg_key *k)
{
    return k->min <= k->max;
}

static void fmt_num(char *buf, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%g", v);
}

static void range_text(const mk_cfg_key *k, char *buf, size_t n)
{
    char a[32], b[32];
    fmt_num(a, sizeof a, k->min);
    fmt_num(b, sizeof b, k->max);
    snprintf(buf, n, "[%s, %s]", a, b);
}

static void free_val(cfg_val *v)
{
    free(v->s);
    if (v->ss)
        for (int i = 0; i < v->n; i++)
            free(v->ss[i]);
    free(v->ss);
    free(v->nums);
    memset(v, 0, sizeof *v);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Convert a TOML value into v for schema key k. On a type/range problem adds an error
 * "where: key 'sec.key': ..." and returns 0. `where` is "FILE:LINE". */
static int convert(const mk_cfg *cfg, errs *e, const char *where, const char *kp,
                   const mk_cfg_key *k, const mk_toml_value *tv, cfg_val *v)
{
    mk_toml_type tt = mk_toml_type_of(tv);
    const char *got = mk_toml_type_name(tt);
    char rb[96];
    switch (k->type) {
    case MK_CFG_STRING:
    case MK_CFG_PATH: {
        if (tt != MK_TOML_STRING) {
            add_err(e, "%s: key '%s': expected %s, got %s", where, kp, type_word(k->type), got);
            return 0;
        }
        const char *s = mk_toml_string(tv, NULL);
        if (k->type == MK_CFG_PATH && !*s) {
            add_err(e, "%s: key '%s': expected a non-empty path, got \"\"", where, kp);
            return 0;
        }
        if (k->choices && !choice_ok(k->choices, s)) {
            char list[512], sb[64];
            choices_list(k->choices, list, sizeof list);
            const char *sg = suggest_choice(k->choices, s, sb, sizeof sb);
            add_err(e, "%s: key '%s': expected one of %s, got \"%s\"%s%s%s", where, kp, list, s,
                    sg ? " (did you mean \"" : "", sg ? sg : "", sg ? "\"?)" : "");
            return 0;
        }
        if (k->type == MK_CFG_PATH) {
            char full[4096];
            if (mk_fs_join(NULL, cfg->dir, s, full, sizeof full) != MK_OK) {
                add_err(e, "%s: key '%s': path too long", where, kp);
                return 0;
            }
            v->s = xstrdup(full);
        } else {
            v->s = xstrdup(s);
        }
        return v->s != NULL;
    }
    case MK_CFG_INT: {
        if (tt != MK_TOML_INTEGER) {
            add_err(e, "%s: key '%s': expected %s, got %s", where, kp, type_word(k->type), got);
            return 0;
        }
        long long x = mk_toml_int(tv);
        if (has_range(k) && ((double)x < k->min || (double)x > k->max)) {
            range_text(k, rb, sizeof rb);
            add_err(e, "%s: key '%s': expected an integer in %s, got %lld", where, kp, rb, x);
            return 0;
        }
        v->i = x;
        return 1;
    }
    case MK_CFG_FLOAT: {
        double x;
        if (tt == MK_TOML_INTEGER)
            x = (double)mk_toml_int(tv);
        else if (tt == MK_TOML_FLOAT)
            x = mk_toml_float(tv);
        else {
            add_err(e, "%s: key '%s': expected %s, got %s", where, kp, type_word(k->type), got);
            return 0;
        }
        if (!isfinite(x)) {
            add_err(e, "%s: key '%s': expected a finite number, got %g", where, kp, x);
            return 0;
        }
        if (has_range(k) && (x < k->min || x > k->max)) {
            range_text(k, rb, sizeof rb);
            add_err(e, "%s: key '%s': expected a number in %s, got %g", where, kp, rb, x);
            return 0;
        }
        v->f = x;
        return 1;
    }
    case MK_CFG_BOOL:
        if (tt != MK_TOML_BOOL) {
            add_err(e, "%s: key '%s': expected %s, got %s", where, kp, type_word(k->type), got);
            return 0;
        }
        v->b = mk_toml_bool(tv);
        return 1;
    case MK_CFG_STRING_LIST:
    case MK_CFG_INT_LIST:
    case MK_CFG_FLOAT_LIST: {
        if (tt != MK_TOML_ARRAY) {
            add_err(e, "%s: key '%s': expected %s, got %s", where, kp, type_word(k->type), got);
            return 0;
        }
        int n = (int)mk_toml_array_len(tv);
        v->n = n;
        if (k->type == MK_CFG_STRING_LIST)
            v->ss = calloc((size_t)n + 1, sizeof *v->ss);
        else
            v->nums = calloc((size_t)n + 1, sizeof *v->nums);
        if ((k->type == MK_CFG_STRING_LIST && !v->ss) ||
            (k->type != MK_CFG_STRING_LIST && !v->nums))
            return 0;
        int ok = 1;
        for (int i = 0; i < n; i++) {
            const mk_toml_value *el = mk_toml_array_at(tv, (size_t)i);
            mk_toml_type et = mk_toml_type_of(el);
            if (k->type == MK_CFG_STRING_LIST) {
                if (et != MK_TOML_STRING) {
                    add_err(e, "%s: key '%s'[%d]: expected string, got %s", where, kp, i,
                            mk_toml_type_name(et));
                    ok = 0;
                    continue;
                }
                const char *s = mk_toml_string(el, NULL);
                if (k->choices && !choice_ok(k->choices, s)) {
                    char list[512], sb[64];
                    choices_list(k->choices, list, sizeof list);
                    const char *sg = suggest_choice(k->choices, s, sb, sizeof sb);
                    add_err(e, "%s: key '%s'[%d]: expected one of %s, got \"%s\"%s%s%s", where, kp,
                            i, list, s, sg ? " (did you mean \"" : "", sg ? sg : "",
                            sg ? "\"?)" : "");
                    ok = 0;
                    continue;
                }
                v->ss[i] = xstrdup(s);
            } else {
                double x;
                if (et == MK_TOML_INTEGER)
                    x = (double)mk_toml_int(el);
                else if (et == MK_TOML_FLOAT && k->type == MK_CFG_FLOAT_LIST)
                    x = mk_toml_float(el);
                else {
                    add_err(e, "%s: key '%s'[%d]: expected %s, got %s", where, kp, i,
                            k->type == MK_CFG_INT_LIST ? "integer" : "number",
                            mk_toml_type_name(et));
                    ok = 0;
                    continue;
                }
                if (!isfinite(x) || (has_range(k) && (x < k->min || x > k->max))) {
                    range_text(k, rb, sizeof rb);
                    add_err(e, "%s: key '%s'[%d]: expected a value in %s, got %g", where, kp, i, rb,
                            x);
                    ok = 0;
                    continue;
                }
                v->nums[i] = x;
            }
        }
        return ok;
    }
    case MK_CFG_LABEL_TABLE: {
        if (tt != MK_TOML_TABLE) {
            add_err(e, "%s: key '%s': expected %s such as {1 = \"RV\", 2 = \"MYO\"}, got %s", where,
                    kp, type_word(k->type), got);
            return 0;
        }
        int n = (int)mk_toml_table_len(tv);
        v->n = n;
        v->ss = calloc((size_t)n + 1, sizeof *v->ss);
        v->nums = calloc((size_t)n + 1, sizeof *v->nums);
        if (!v->ss || !v->nums)
            return 0;
        int ok = 1;
        for (int i = 0; i < n; i++) {
            const char *key = mk_toml_table_key(tv, (size_t)i);
            const mk_toml_value *el = mk_toml_table_at(tv, (size_t)i);
            char *end = NULL;
            long x = strtol(key, &end, 10);
            if (!*key || *end || (has_range(k) && (x < k->min || x > k->max))) {
                range_text(k, rb, sizeof rb);
                add_err(e, "%s: key '%s': label '%s': expected an integer label value in %s", where,
                        kp, key, rb);
                ok = 0;
                continue;
            }
            if (mk_toml_type_of(el) != MK_TOML_STRING || !*mk_toml_string(el, NULL)) {
                add_err(e, "%s: key '%s': label %ld: expected a non-empty name (string), got %s",
                        where, kp, x, mk_toml_type_name(mk_toml_type_of(el)));
                ok = 0;
                continue;
            }
            v->nums[i] = (double)x;
            v->ss[i] = xstrdup(mk_toml_string(el, NULL));
        }
        /* ascending by value (insertion sort: a handful of labels) */
        for (int i = 1; ok && i < n; i++)
            for (int j = i; j > 0 && v->nums[j - 1] > v->nums[j]; j--) {
                double t = v->nums[j];
                v->nums[j] = v->nums[j - 1];
                v->nums[j - 1] = t;
                char *ts = v->ss[j];
                v->ss[j] = v->ss[j - 1];
                v->ss[j - 1] = ts;
            }
        for (int i = 1; ok && i < n; i++)
            if (v->nums[i] == v->nums[i - 1]) {
                add_err(e, "%s: key '%s': label %.0f given twice", where, kp, v->nums[i]);
                ok = 0;
            }
        return ok;
    }
    default: return 0;
    }
}

/* Parse "v = <text>" and convert; used for defaults and overrides. */
static mk_status convert_text(mk_ctx *ctx, const mk_cfg *cfg, const char *kp, const mk_cfg_key *k,
                              const char *text, const char *where, cfg_val *v)
{
    char doc[1024];
    int len = snprintf(doc, sizeof doc, "v = %s\n", text);
    if (len < 0 || (size_t)len >= sizeof doc)
        return mk_err(ctx, MK_ERR_CONFIG, "%s: value for '%s' too long", where, kp);
    mk_ctx tmp;
    mk_ctx_init(&tmp);
    mk_toml_doc *d = NULL;
    if (mk_toml_parse(&tmp, where, doc, (size_t)len, &d) != MK_OK)
        return mk_err(ctx, MK_ERR_CONFIG, "%s: key '%s': cannot parse value %s as TOML (%s)", where,
                      kp, text, mk_ctx_errmsg(&tmp));
    errs e = {0};
    int ok = convert(cfg, &e, where, kp, k, mk_toml_table_get(mk_toml_root(d), "v"), v);
    mk_toml_free(d);
    if (!ok)
        return mk_err(ctx, MK_ERR_CONFIG, "%s", e.buf);
    return MK_OK;
}

/* ---- load ------------------------------------------------------------------------------- */

void mk_cfg_free(mk_cfg *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg->nvals; i++)
        free_val(&cfg->vals[i]);
    free(cfg->vals);
    free(cfg->section_present);
    free(cfg->path);
    free(cfg);
}

static int stage_listed(const mk_cfg *cfg, const char *stage)
{
    int idx = lookup("run.stages", NULL);
    if (idx < 0)
        return 0;
    const cfg_val *v = &cfg->vals[idx];
    for (int i = 0; i < v->n; i++)
        if (v->ss[i] && strcmp(v->ss[i], stage) == 0)
            return 1;
    return 0;
}

/* input paths that must exist (data produced by the synth stage is exempt) */
static void check_paths(const mk_cfg *cfg, const char *path, errs *e)
{
    int inputs_made = 0; /* a listed stage writes the inputs (synth) */
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++)
        inputs_made |= MK_CFG_SCHEMA[s].produces_inputs && stage_listed(cfg, MK_CFG_SCHEMA[s].name);
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++) {
        const mk_cfg_section *S = &MK_CFG_SCHEMA[s];
        for (int k = 0; k < S->nkeys; k++) {
            const mk_cfg_key *K = &S->keys[k];
            const cfg_val *v = &cfg->vals[key_base(s) + k];
            if (K->type != MK_CFG_PATH || !(K->flags & MK_CFG_MUST_EXIST) || !v->s)
                continue;
            if (inputs_made && !S->is_stage)
                continue;
            if (S->is_stage && !stage_listed(cfg, S->name))
                continue;
            if (!mk_fs_is_file(v->s) && !mk_fs_is_dir(v->s)) {
                if (v->line)
                    add_err(e,
                            "%s:%d: key '%s.%s': file or folder '%s' does not exist (paths are "
                            "relative to the config file)",
                            path, v->line, S->name, K->name, v->s);
                else
                    add_err(e, "%s: key '%s.%s' (default): file or folder '%s' does not exist",
                            path, S->name, K->name, v->s);
            }
        }
    }
}

mk_status mk_cfg_check_paths(mk_ctx *ctx, const mk_cfg *cfg)
{
    errs e;
    memset(&e, 0, sizeof e);
    check_paths(cfg, cfg->path, &e);
    if (e.n == 0)
        return MK_OK;
    if (e.n > MAX_ERRORS)
        add_err(&e, "... and %d more problems", e.n - MAX_ERRORS);
    return mk_err(ctx, MK_ERR_CONFIG, "%s", e.buf);
}

static mk_status load_buffer(mk_ctx *ctx, const char *path, const char *buf, size_t len, int flags,
                             mk_cfg **out)
{
    *out = NULL;
    mk_toml_doc *doc = NULL;
    if (mk_toml_parse(ctx, path, buf, len, &doc) != MK_OK) {
        ctx->status = MK_ERR_CONFIG;
        return MK_ERR_CONFIG;
    }
    mk_cfg *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        mk_toml_free(doc);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    cfg->path = xstrdup(path);
    mk_fs_dirname(path, cfg->dir, sizeof cfg->dir);
    cfg->nvals = total_keys();
    cfg->vals = calloc((size_t)cfg->nvals + 1, sizeof *cfg->vals);
    cfg->section_present = calloc((size_t)MK_CFG_SCHEMA_COUNT + 1, sizeof *cfg->section_present);
    if (!cfg->path || !cfg->vals || !cfg->section_present) {
        mk_toml_free(doc);
        mk_cfg_free(cfg);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }

    errs e = {0};
    char where[4200];
    int section_line[256] = {0};
    const mk_toml_value *root = mk_toml_root(doc);
    size_t nroot = mk_toml_table_len(root);
    for (size_t r = 0; r < nroot; r++) {
        const char *sname = mk_toml_table_key(root, r);
        const mk_toml_value *sv = mk_toml_table_at(root, r);
        int line = mk_toml_table_key_line(root, r);
        snprintf(where, sizeof where, "%s:%d", path, line);
        int s = section_index(sname);
        if (s < 0) {
            if (mk_toml_type_of(sv) != MK_TOML_TABLE) {
                add_err(&e,
                        "%s: top-level key '%s' is not allowed: every setting belongs to a section "
                        "such as [run]",
                        where, sname);
            } else {
                const char *sg = suggest_section(sname);
                add_err(&e, "%s: unknown section [%s]%s%s%s", where, sname,
                        sg ? " (did you mean [" : "", sg ? sg : "", sg ? "]?)" : "");
            }
            continue;
        }
        if (mk_toml_type_of(sv) != MK_TOML_TABLE) {
            add_err(&e, "%s: '%s' must be a section [%s], got %s", where, sname, sname,
                    mk_toml_type_name(mk_toml_type_of(sv)));
            continue;
        }
        cfg->section_present[s] = 1;
        if (s < 256)
            section_line[s] = line;
        const mk_cfg_section *S = &MK_CFG_SCHEMA[s];
        size_t nk = mk_toml_table_len(sv);
        for (size_t i = 0; i < nk; i++) {
            const char *kname = mk_toml_table_key(sv, i);
            const mk_toml_value *kv = mk_toml_table_at(sv, i);
            int kl = mk_toml_table_key_line(sv, i);
            snprintf(where, sizeof where, "%s:%d", path, kl);
            char kp[256];
            snprintf(kp, sizeof kp, "%s.%s", S->name, kname);
            int k = key_index_in(s, kname);
            if (k < 0) {
                const char *sg = suggest_key(s, kname);
                add_err(&e, "%s: unknown key '%s' in [%s]%s%s%s", where, kname, S->name,
                        sg ? " (did you mean '" : "", sg ? sg : "", sg ? "'?)" : "");
                continue;
            }
            cfg_val *v = &cfg->vals[key_base(s) + k];
            if (convert(cfg, &e, where, kp, &S->keys[k], kv, v)) {
                v->set = 1;
                v->line = kl;
            } else {
                free_val(v);
            }
        }
    }
    mk_toml_free(doc);

    /* defaults and required keys */
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++) {
        const mk_cfg_section *S = &MK_CFG_SCHEMA[s];
        for (int k = 0; k < S->nkeys; k++) {
            cfg_val *v = &cfg->vals[key_base(s) + k];
            const mk_cfg_key *K = &S->keys[k];
            char kp[256];
            snprintf(kp, sizeof kp, "%s.%s", S->name, K->name);
            if (v->set)
                continue;
            if (K->flags & MK_CFG_REQUIRED) {
                /* a required key of a stage section matters only when that stage runs */
                if (S->is_stage && !stage_listed(cfg, S->name))
                    continue;
                if (cfg->section_present[s])
                    add_err(&e, "%s:%d: missing required key '%s' in [%s] (%s)", path,
                            section_line[s < 256 ? s : 0], K->name, S->name, K->doc);
                else
                    add_err(&e,
                            "%s: missing required key '%s' (add a section [%s] with %s = ...; %s)",
                            path, kp, S->name, K->name, K->doc);
                continue;
            }
            if (K->def) {
                mk_ctx t;
                mk_ctx_init(&t);
                if (convert_text(&t, cfg, kp, K, K->def, "<schema default>", v) != MK_OK)
                    add_err(&e, "internal: bad schema default for '%s': %s", kp, mk_ctx_errmsg(&t));
            }
        }
    }

    /* stages must be known */
    int si = lookup("run.stages", NULL);
    if (si >= 0) {
        const cfg_val *v = &cfg->vals[si];
        for (int i = 0; i < v->n; i++) {
            if (!v->ss[i])
                continue;
            int s = section_index(v->ss[i]);
            if (s < 0 || !MK_CFG_SCHEMA[s].is_stage) {
                const char *c[64];
                int n = 0;
                for (int q = 0; q < MK_CFG_SCHEMA_COUNT && n < 64; q++)
                    if (MK_CFG_SCHEMA[q].is_stage)
                        c[n++] = MK_CFG_SCHEMA[q].name;
                const char *sg = mk_cfg_suggest(v->ss[i], c, n);
                add_err(&e, "%s:%d: key 'run.stages'[%d]: unknown stage \"%s\"%s%s%s", path,
                        v->line, i, v->ss[i], sg ? " (did you mean \"" : "", sg ? sg : "",
                        sg ? "\"?)" : "");
            }
        }
        /* a stage section written in the file but not listed is probably a mistake: warn */
        for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++)
            if (MK_CFG_SCHEMA[s].is_stage && cfg->section_present[s] &&
                !stage_listed(cfg, MK_CFG_SCHEMA[s].name) &&
                !(MK_CFG_SCHEMA[s].used_by && stage_listed(cfg, MK_CFG_SCHEMA[s].used_by)))
                MK_LOG_W(ctx, "%s:%d: section [%s] is configured but '%s' is not in run.stages",
                         path, section_line[s < 256 ? s : 0], MK_CFG_SCHEMA[s].name,
                         MK_CFG_SCHEMA[s].name);
    }

    if (!(flags & MK_CFG_LOAD_DEFER_PATHS))
        check_paths(cfg, path, &e);

    if (e.n > 0) {
        if (e.n > MAX_ERRORS)
            add_err(&e, "... and %d more problems", e.n - MAX_ERRORS);
        mk_err(ctx, MK_ERR_CONFIG, "%s", e.buf);
        mk_cfg_free(cfg);
        return MK_ERR_CONFIG;
    }
    *out = cfg;
    return MK_OK;
}

mk_status mk_cfg_load_buffer(mk_ctx *ctx, const char *path, const char *buf, size_t len,
                             mk_cfg **out)
{
    return load_buffer(ctx, path, buf, len, 0, out);
}

mk_status mk_cfg_load(mk_ctx *ctx, const char *path, mk_cfg **out)
{
    return mk_cfg_load_ex(ctx, path, 0, out);
}

mk_status mk_cfg_load_ex(mk_ctx *ctx, const char *path, int flags, mk_cfg **out)
{
    *out = NULL;
    if (mk_fs_is_dir(path))
        return mk_err(ctx, MK_ERR_CONFIG, "%s: is a folder, expected a TOML config file", path);
    if (!mk_fs_is_file(path))
        return mk_err(ctx, MK_ERR_CONFIG, "%s: config file does not exist", path);
    char *buf = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &buf, &len);
    if (st != MK_OK) {
        ctx->status = MK_ERR_CONFIG;
        return MK_ERR_CONFIG;
    }
    st = load_buffer(ctx, path, buf, len, flags, out);
    free(buf);
    return st;
}

/* ---- accessors --------------------------------------------------------------------------- */

static const cfg_val *get(const mk_cfg *cfg, const char *key, mk_cfg_type want, int list)
{
    const mk_cfg_key *k = NULL;
    int idx = lookup(key, &k);
    MK_ASSERT(idx >= 0 && "config key not in schema");
    if (list)
        MK_ASSERT(k->type == MK_CFG_STRING_LIST || k->type == MK_CFG_INT_LIST ||
                  k->type == MK_CFG_FLOAT_LIST);
    else if (want == MK_CFG_STRING)
        MK_ASSERT(k->type == MK_CFG_STRING || k->type == MK_CFG_PATH);
    else
        MK_ASSERT(k->type == want);
    return &cfg->vals[idx];
}

const char *mk_cfg_str(const mk_cfg *cfg, const char *key)
{
    return get(cfg, key, MK_CFG_STRING, 0)->s;
}
long long mk_cfg_int(const mk_cfg *cfg, const char *key)
{
    return get(cfg, key, MK_CFG_INT, 0)->i;
}
double mk_cfg_float(const mk_cfg *cfg, const char *key)
{
    return get(cfg, key, MK_CFG_FLOAT, 0)->f;
}
int mk_cfg_bool(const mk_cfg *cfg, const char *key)
{
    return get(cfg, key, MK_CFG_BOOL, 0)->b;
}
int mk_cfg_list_len(const mk_cfg *cfg, const char *key)
{
    return get(cfg, key, MK_CFG_STRING_LIST, 1)->n;
}
const char *mk_cfg_list_str(const mk_cfg *cfg, const char *key, int i)
{
    const cfg_val *v = get(cfg, key, MK_CFG_STRING_LIST, 1);
    MK_ASSERT(v->ss && i >= 0 && i < v->n);
    return v->ss[i];
}
double mk_cfg_list_num(const mk_cfg *cfg, const char *key, int i)
{
    const cfg_val *v = get(cfg, key, MK_CFG_FLOAT_LIST, 1);
    MK_ASSERT(v->nums && i >= 0 && i < v->n);
    return v->nums[i];
}
static mk_status bind_err(mk_ctx *ctx, const mk_cfg *cfg, const char *sec, const mk_cfg_key *K,
                          const cfg_val *v, const char *what)
{
    if (v->line)
        return mk_err(ctx, MK_ERR_CONFIG, "%s:%d: key '%s.%s': %s", cfg->path, v->line, sec,
                      K->name, what);
    return mk_err(ctx, MK_ERR_CONFIG, "%s: key '%s.%s': %s", cfg->path, sec, K->name, what);
}

mk_status mk_cfg_bind(mk_ctx *ctx, const mk_cfg *cfg, const char *section, void *obj)
{
    int s = section_index(section);
    MK_ASSERT(s >= 0 && "section not in schema");
    const mk_cfg_section *S = &MK_CFG_SCHEMA[s];
    char *base = obj, msg[256];
    for (int k = 0; k < S->nkeys; k++) {
        const mk_cfg_key *K = &S->keys[k];
        const cfg_val *v = &cfg->vals[key_base(s) + k];
        if (K->bind == MK_BIND_NONE)
            continue;
        void *f = base + K->offset;
        memset(f, 0, K->size);
        switch (K->bind) {
        case MK_BIND_INT: *(int *)f = (int)v->i; break;
        case MK_BIND_FLOAT: *(float *)f = (float)v->f; break;
        case MK_BIND_DOUBLE: *(double *)f = v->f; break;
        case MK_BIND_BOOL: *(int *)f = v->b; break;
        case MK_BIND_STR: *(const char **)f = v->s; break;
        case MK_BIND_CHOICE: *(int *)f = mk_param_choice_index(K->choices, v->s); break;
        case MK_BIND_INTS:
        case MK_BIND_DOUBLES:
            if (v->n != K->count) {
                snprintf(msg, sizeof msg, "expected %d values, got %d", K->count, v->n);
                return bind_err(ctx, cfg, section, K, v, msg);
            }
            for (int i = 0; i < v->n; i++) {
                if (K->bind == MK_BIND_INTS)
                    ((int *)f)[i] = (int)v->nums[i];
                else
                    ((double *)f)[i] = v->nums[i];
            }
            break;
        case MK_BIND_NAMES: {
            mk_names *nm = f;
            if (v->n < 1 || v->n > MK_NAMES_MAX) {
                snprintf(msg, sizeof msg, "expected 1 to %d names, got %d", MK_NAMES_MAX, v->n);
                return bind_err(ctx, cfg, section, K, v, msg);
            }
            nm->n = v->n;
            for (int i = 0; i < v->n; i++) {
                if (strlen(v->ss[i]) >= MK_NAME_LEN) {
                    snprintf(msg, sizeof msg, "name %d is longer than %d characters", i,
                             MK_NAME_LEN - 1);
                    return bind_err(ctx, cfg, section, K, v, msg);
                }
                snprintf(nm->v[i], MK_NAME_LEN, "%s", v->ss[i]);
            }
            break;
        }
        case MK_BIND_LABELS: {
            mk_label_table *lt = f;
            if (v->n > MK_LABELS_MAX) {
                snprintf(msg, sizeof msg, "expected at most %d labels, got %d", MK_LABELS_MAX,
                         v->n);
                return bind_err(ctx, cfg, section, K, v, msg);
            }
            lt->n = v->n;
            for (int i = 0; i < v->n; i++) {
                lt->value[i] = (int)v->nums[i];
                snprintf(lt->name[i], MK_NAME_LEN, "%.*s", MK_NAME_LEN - 1, v->ss[i]);
            }
            break;
        }
        case MK_BIND_NONE: break;
        }
    }
    return MK_OK;
}

int mk_cfg_has_key(const mk_cfg *cfg, const char *key)
{
    (void)cfg;
    return lookup(key, NULL) >= 0;
}

int mk_cfg_is_set(const mk_cfg *cfg, const char *key)
{
    int idx = lookup(key, NULL);
    MK_ASSERT(idx >= 0);
    return cfg->vals[idx].set;
}
int mk_cfg_line(const mk_cfg *cfg, const char *key)
{
    int idx = lookup(key, NULL);
    MK_ASSERT(idx >= 0);
    return cfg->vals[idx].line;
}
int mk_cfg_has_section(const mk_cfg *cfg, const char *section)
{
    int s = section_index(section);
    return s >= 0 && cfg->section_present[s];
}
const char *mk_cfg_path(const mk_cfg *cfg)
{
    return cfg->path;
}

mk_status mk_cfg_override(mk_ctx *ctx, mk_cfg *cfg, const char *key, const char *toml_value)
{
    const mk_cfg_key *k = NULL;
    int idx = lookup(key, &k);
    if (idx < 0)
        return mk_err(ctx, MK_ERR_USAGE, "unknown config key '%s'", key);
    cfg_val nv = {0};
    mk_cfg tmp = *cfg;
    /* overrides given on the command line resolve relative to the current directory */
    snprintf(tmp.dir, sizeof tmp.dir, ".");
    if (convert_text(ctx, &tmp, key, k, toml_value, "command line", &nv) != MK_OK) {
        free_val(&nv);
        ctx->status = MK_ERR_USAGE;
        return MK_ERR_USAGE;
    }
    free_val(&cfg->vals[idx]);
    nv.set = 1;
    nv.line = 0;
    cfg->vals[idx] = nv;
    return MK_OK;
}

/* ---- printing ---------------------------------------------------------------------------- */

static void print_toml_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Shortest decimal that reads back as the same double, as a TOML float (0.3, not
 * 0.29999999999999999; 1.0, not 1). */
static void print_float(FILE *out, double x)
{
    char buf[40];
    if (isnan(x)) {
        fputs("nan", out);
        return;
    }
    if (isinf(x)) {
        fputs(x > 0 ? "inf" : "-inf", out);
        return;
    }
    int done = 0;
    double a = fabs(x);
    if (a == 0 || (a >= 1e-6 && a < 1e15)) /* plain notation: 200.0, 0.001 */
        for (int prec = 1; prec <= 20 && !done; prec++) {
            snprintf(buf, sizeof buf, "%.*f", prec, x);
            done = strtod(buf, NULL) == x;
        }
    for (int prec = 1; prec <= 17 && !done; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        done = strtod(buf, NULL) == x;
    }
    fputs(buf, out);
    if (!strpbrk(buf, ".e"))
        fputs(".0", out);
}

static void print_val(FILE *out, const mk_cfg_key *k, const cfg_val *v)
{
    switch (k->type) {
    case MK_CFG_STRING:
    case MK_CFG_PATH: print_toml_string(out, v->s ? v->s : ""); break;
    case MK_CFG_INT: fprintf(out, "%lld", v->i); break;
    case MK_CFG_FLOAT: print_float(out, v->f); break;
    case MK_CFG_BOOL: fputs(v->b ? "true" : "false", out); break;
    case MK_CFG_LABEL_TABLE:
        fputc('{', out);
        for (int i = 0; i < v->n; i++) {
            fprintf(out, "%s%.0f = ", i ? ", " : "", v->nums[i]);
            print_toml_string(out, v->ss[i] ? v->ss[i] : "");
        }
        fputc('}', out);
        break;
    default:
        fputc('[', out);
        for (int i = 0; i < v->n; i++) {
            if (i)
                fputs(", ", out);
            if (k->type == MK_CFG_STRING_LIST)
                print_toml_string(out, v->ss[i] ? v->ss[i] : "");
            else if (k->type == MK_CFG_INT_LIST)
                fprintf(out, "%.0f", v->nums[i]);
            else
                print_float(out, v->nums[i]);
        }
        fputc(']', out);
    }
}

void mk_cfg_print(const mk_cfg *cfg, FILE *out)
{
    fprintf(out, "# resolved from %s (defaults filled in)\n", cfg->path);
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++) {
        const mk_cfg_section *S = &MK_CFG_SCHEMA[s];
        if (S->is_stage && !stage_listed(cfg, S->name) && !cfg->section_present[s])
            continue;
        fprintf(out, "\n[%s]\n", S->name);
        for (int k = 0; k < S->nkeys; k++) {
            const cfg_val *v = &cfg->vals[key_base(s) + k];
            const mk_cfg_key *K = &S->keys[k];
            int have = v->set || K->def;
            if (K->type == MK_CFG_LABEL_TABLE && !v->set) {
                fprintf(out, "# %s: not set\n", K->name);
                continue;
            }
            if (!have) {
                fprintf(out, "# %s: not set\n", K->name);
                continue;
            }
            fprintf(out, "%s = ", K->name);
            print_val(out, K, v);
            fputc('\n', out);
        }
    }
}

void mk_cfg_explain(FILE *out, int markdown)
{
    if (markdown) {
        fprintf(out,
                "# Configuration reference\n\n"
                "Generated by `pipeline validate --explain --markdown` from the parameter rows\n"
                "declared beside each stage and method (collected by\n"
                "`pipeline/registry_schema.c`); a test keeps this file in step with the code.\n\n"
                "Configs are TOML 1.0. Every setting belongs to a section. Paths resolve\n"
                "relative to the folder of the config file. `run.stages` lists the stages to\n"
                "run, in order; each stage reads the section of the same name.\n");
    }
    for (int s = 0; s < MK_CFG_SCHEMA_COUNT; s++) {
        const mk_cfg_section *S = &MK_CFG_SCHEMA[s];
        if (markdown)
            fprintf(out,
                    "\n## [%s]%s\n\n%s\n\n| key | type | default | allowed | meaning |\n"
                    "|---|---|---|---|---|\n",
                    S->name, S->is_stage ? " (stage)" : "", S->doc);
        else
            fprintf(out, "\n[%s]%s\n  %s\n", S->name, S->is_stage ? "  (stage)" : "", S->doc);
        for (int k = 0; k < S->nkeys; k++) {
            const mk_cfg_key *K = &S->keys[k];
            char allowed[512] = "";
            if (K->choices)
                choices_list(K->choices, allowed, sizeof allowed);
            else if (has_range(K))
                range_text(K, allowed, sizeof allowed);
            const char *req = (K->flags & MK_CFG_REQUIRED) ? "required" : NULL;
            const char *def = K->def ? K->def : (req ? req : "unset");
            if (markdown)
                fprintf(out, "| `%s` | %s | `%s` | %s | %s%s |\n", K->name, type_word(K->type), def,
                        allowed, K->doc, (K->flags & MK_CFG_MUST_EXIST) ? " Must exist." : "");
            else
                fprintf(out, "  %-22s %-18s default %-14s %s%s%s\n", K->name, type_word(K->type),
                        def, allowed[0] ? allowed : "", allowed[0] ? "  " : "", K->doc);
        }
    }
}
