/* Structure names for label values, read from an nnU-Net / MSD dataset.json, a CSV (value,name)
 * or a whitespace-separated table (AAL's .txt, FreeSurfer's LUT): mk_report_label_names_read
 * (mk_report.h). Every error names FILE:LINE. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "../core/mk_fs.h"
#include "report_internal.h"

/* the entries as read, with the line each came from (for "named twice" messages) */
typedef struct rd {
    mk_ctx *ctx;
    const char *path;
    mk_report_label_names *ln;
    int *lines;
    int cap;
} rd;

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* An integer label value: the whole of s (surrounding blanks allowed). */
static int parse_value(const char *s, int64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return 0;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno == ERANGE)
        return 0;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return 0;
    *out = v;
    return 1;
}

static mk_status add(rd *r, int line, int64_t value, const char *name, size_t len)
{
    mk_report_label_names *ln = r->ln;
    while (len > 0 && isspace((unsigned char)name[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*name)) {
        name++;
        len--;
    }
    if (len == 0)
        return mk_err(r->ctx, MK_ERR_FORMAT, "%s:%d: label %lld: expected a name, got none",
                      r->path, line, (long long)value);
    for (int i = 0; i < ln->n; i++)
        if (ln->values[i] == value)
            return mk_err(r->ctx, MK_ERR_FORMAT,
                          "%s:%d: label %lld is named twice ('%.*s', and '%s' on line %d)", r->path,
                          line, (long long)value, (int)(len > 200 ? 200 : len), name, ln->names[i],
                          r->lines[i]);
    if (ln->n == r->cap) {
        int nc = r->cap ? r->cap * 2 : 64;
        int64_t *v = realloc(ln->values, sizeof *v * (size_t)nc);
        if (v)
            ln->values = v;
        char **nm = realloc(ln->names, sizeof *nm * (size_t)nc);
        if (nm)
            ln->names = nm;
        int *li = realloc(r->lines, sizeof *li * (size_t)nc);
        if (li)
            r->lines = li;
        if (!v || !nm || !li)
            return mk_err(r->ctx, MK_ERR_NOMEM, "%s: out of memory", r->path);
        r->cap = nc;
    }
    char *s = malloc(len + 1);
    if (!s)
        return mk_err(r->ctx, MK_ERR_NOMEM, "%s: out of memory", r->path);
    memcpy(s, name, len);
    s[len] = '\0';
    ln->values[ln->n] = value;
    ln->names[ln->n] = s;
    r->lines[ln->n] = line;
    ln->n++;
    return MK_OK;
}

/* ---------------------------------------------------------------- whitespace table */

static mk_status read_table(rd *r, char *text)
{
    int line = 0;
    for (char *p = text; *p;) {
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (eol)
            *eol = '\0';
        line++;
        char *q = p;
        while (isspace((unsigned char)*q))
            q++;
        if (*q && *q != '#') {
            char *v = q;
            while (*q && !isspace((unsigned char)*q))
                q++;
            char vend = *q;
            *q = '\0';
            int64_t value;
            if (!parse_value(v, &value))
                return mk_err(r->ctx, MK_ERR_FORMAT,
                              "%s:%d: expected \"VALUE NAME [other columns]\" with an integer "
                              "VALUE, got '%.80s'",
                              r->path, line, v);
            *q = vend;
            while (isspace((unsigned char)*q))
                q++;
            char *n = q;
            while (*q && !isspace((unsigned char)*q))
                q++;
            if (n == q)
                return mk_err(r->ctx, MK_ERR_FORMAT,
                              "%s:%d: expected \"VALUE NAME [other columns]\", got the value %lld "
                              "alone",
                              r->path, line, (long long)value);
            mk_status st = add(r, line, value, n, (size_t)(q - n));
            if (st != MK_OK)
                return st;
        }
        p = next;
    }
    return MK_OK;
}

/* ---------------------------------------------------------------- CSV */

/* Split one CSV line (RFC 4180 quoting, no newline inside a field) into at most nf fields, in
 * place. Returns the field count, or -1 on an unterminated quote. */
static int csv_split(char *s, char **f, int nf)
{
    int n = 0;
    for (;;) {
        char *w = s, *start = s;
        if (*s == '"') {
            s++;
            for (;;) {
                if (!*s)
                    return -1;
                if (*s == '"' && s[1] == '"') {
                    *w++ = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else {
                    *w++ = *s++;
                }
            }
            while (*s && *s != ',')
                s++; /* anything after the closing quote is dropped */
        } else {
            while (*s && *s != ',')
                *w++ = *s++;
        }
        char sep = *s;
        *w = '\0';
        if (n < nf)
            f[n] = start;
        n++;
        if (sep != ',')
            break;
        s++;
    }
    return n;
}

static mk_status read_csv(rd *r, char *text)
{
    int line = 0, vcol = 0, ncol = 1, header_seen = 0;
    for (char *p = text; *p;) {
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (eol)
            *eol = '\0';
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r')
            p[--l] = '\0';
        line++;
        if (line == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
            (unsigned char)p[2] == 0xBF)
            p += 3; /* UTF-8 byte order mark of spreadsheet exports */
        char *q = p;
        while (isspace((unsigned char)*q))
            q++;
        if (!*q) {
            p = next;
            continue;
        }
        char *f[64];
        int n = csv_split(p, f, 64);
        if (n < 0)
            return mk_err(r->ctx, MK_ERR_FORMAT, "%s:%d: unterminated quoted field", r->path, line);
        if (n > 64)
            n = 64;
        int64_t value;
        if (!header_seen) {
            header_seen = 1;
            int vc = -1, nc = -1;
            for (int k = 0; k < n; k++) {
                char *t = f[k];
                while (isspace((unsigned char)*t))
                    t++;
                size_t tl = strlen(t);
                while (tl && isspace((unsigned char)t[tl - 1]))
                    t[--tl] = '\0';
                if (!strcasecmp(t, "value") && vc < 0)
                    vc = k;
                else if (!strcasecmp(t, "name") && nc < 0)
                    nc = k;
            }
            if (vc >= 0 && nc >= 0) {
                vcol = vc;
                ncol = nc;
                p = next;
                continue;
            }
            if (!parse_value(f[0], &value))
                return mk_err(r->ctx, MK_ERR_FORMAT,
                              "%s:%d: expected a header with the columns value and name (or "
                              "value,name rows without a header), got '%.80s'",
                              r->path, line, f[0]);
        }
        int need = (vcol > ncol ? vcol : ncol) + 1;
        if (n < need)
            return mk_err(r->ctx, MK_ERR_FORMAT,
                          "%s:%d: expected at least %d columns (value, name), got %d", r->path,
                          line, need, n);
        if (!parse_value(f[vcol], &value))
            return mk_err(r->ctx, MK_ERR_FORMAT,
                          "%s:%d: column %d (value): expected an integer label value, got "
                          "'%.80s'",
                          r->path, line, vcol + 1, f[vcol]);
        mk_status st = add(r, line, value, f[ncol], strlen(f[ncol]));
        if (st != MK_OK)
            return st;
        p = next;
    }
    return MK_OK;
}

/* ---------------------------------------------------------------- dataset.json */

static int line_at(const char *text, const char *at)
{
    int line = 1;
    for (const char *c = text; c < at && *c; c++)
        line += *c == '\n';
    return line;
}

/* The line of the first `"key"` used as an object key (followed by ':') at or after from. */
static int key_line(const char *text, const char *from, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = strchr(from, '"'); p; p = strchr(p + 1, '"')) {
        if (strncmp(p + 1, key, kl) == 0 && p[kl + 1] == '"') {
            const char *q = p + kl + 2;
            while (isspace((unsigned char)*q))
                q++;
            if (*q == ':')
                return line_at(text, p);
        }
    }
    return line_at(text, from);
}

static mk_status read_json(rd *r, const char *text, size_t len)
{
    cJSON *js = cJSON_ParseWithLength(text, len);
    if (!js) {
        const char *e = cJSON_GetErrorPtr();
        int line = e && e >= text && e <= text + len ? line_at(text, e) : 1;
        return mk_err(r->ctx, MK_ERR_FORMAT, "%s:%d: not valid JSON (a syntax error here)", r->path,
                      line);
    }
    mk_status st = MK_OK;
    const cJSON *lab = cJSON_IsObject(js) ? cJSON_GetObjectItemCaseSensitive(js, "labels") : NULL;
    int lline = key_line(text, text, "labels");
    const char *lpos = strstr(text, "\"labels\"");
    if (!cJSON_IsObject(lab)) {
        st = mk_err(r->ctx, MK_ERR_FORMAT,
                    "%s:%d: expected an object \"labels\" (nnU-Net's {\"background\": 0, "
                    "\"liver\": 1} or MSD's {\"0\": \"background\"}), got %s",
                    r->path, lab ? lline : 1, lab ? "another type" : "none");
        cJSON_Delete(js);
        return st;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, lab)
    {
        int line = key_line(text, lpos ? lpos : text, it->string);
        int64_t value;
        const char *name;
        if (cJSON_IsNumber(it)) { /* nnU-Net v2: name -> value */
            double v = it->valuedouble;
            if (!(v == floor(v)) || fabs(v) > 9007199254740992.0) {
                st = mk_err(r->ctx, MK_ERR_FORMAT,
                            "%s:%d: labels.\"%s\": expected an integer label value, got %g",
                            r->path, line, it->string, v);
                break;
            }
            value = (int64_t)v;
            name = it->string;
        } else if (cJSON_IsString(it)) { /* MSD / nnU-Net v1: "value" -> name */
            if (!parse_value(it->string, &value)) {
                st = mk_err(r->ctx, MK_ERR_FORMAT,
                            "%s:%d: labels.\"%s\": expected an integer label value (nnU-Net: "
                            "\"name\": value; MSD: \"value\": \"name\"), got the string \"%s\"",
                            r->path, line, it->string, it->valuestring);
                break;
            }
            name = it->valuestring;
        } else if (cJSON_IsArray(it)) {
            char vals[200] = "";
            size_t w = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, it)
            {
                if (w < sizeof vals - 24)
                    w += (size_t)snprintf(vals + w, sizeof vals - w, "%s%g", w ? ", " : "",
                                          cJSON_IsNumber(e) ? e->valuedouble : NAN);
            }
            st = mk_err(r->ctx, MK_ERR_FORMAT,
                        "%s:%d: labels.\"%s\" is a region (the list of values [%s]), not one "
                        "label value: --label-names names single label values (score the "
                        "region's values one by one, or merge them into one value first)",
                        r->path, line, it->string, vals);
            break;
        } else {
            st = mk_err(r->ctx, MK_ERR_FORMAT,
                        "%s:%d: labels.\"%s\": expected an integer label value, got another type",
                        r->path, line, it->string);
            break;
        }
        if ((st = add(r, line, value, name, strlen(name))) != MK_OK)
            break;
    }
    cJSON_Delete(js);
    return st;
}

/* ---------------------------------------------------------------- API */

mk_status mk_report_label_names_read(mk_ctx *ctx, const char *path, mk_report_label_names *out)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &text, &len);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "--label-names");
    if (strlen(text) != len) {
        free(text);
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: holds a NUL byte: expected a text file (dataset.json, CSV or "
                      "\"VALUE NAME\" lines)",
                      path);
    }
    rd r = {ctx, path, out, NULL, 0};
    if (ends_with(path, ".json"))
        st = read_json(&r, text, len);
    else if (ends_with(path, ".csv"))
        st = read_csv(&r, text);
    else
        st = read_table(&r, text);
    free(text);
    free(r.lines);
    if (st == MK_OK && out->n == 0)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: no label names in it", path);
    if (st != MK_OK) {
        mk_report_label_names_clear(out);
        return st;
    }
    /* ascending values (insertion sort: tables have at most a few hundred rows) */
    for (int i = 1; i < out->n; i++)
        for (int j = i; j > 0 && out->values[j - 1] > out->values[j]; j--) {
            int64_t t = out->values[j];
            out->values[j] = out->values[j - 1];
            out->values[j - 1] = t;
            char *s = out->names[j];
            out->names[j] = out->names[j - 1];
            out->names[j - 1] = s;
        }
    return MK_OK;
}

const char *mk_report_label_names_find(const mk_report_label_names *ln, int64_t value)
{
    int lo = 0, hi = ln->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (ln->values[mid] == value)
            return ln->names[mid];
        if (ln->values[mid] < value)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

void mk_report_label_names_clear(mk_report_label_names *ln)
{
    for (int i = 0; i < ln->n; i++)
        free(ln->names[i]);
    free(ln->names);
    free(ln->values);
    memset(ln, 0, sizeof *ln);
}
