/* medkd manifests: CSV parsing/writing and nnU-Net / MSD import (see mk_manifest.h). */
#include "mk_manifest.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../core/mk_fs.h"

enum { COL_ID, COL_MODALITY, COL_IMAGE, COL_LABEL, COL_SPLIT, COL_DOMAIN, NSTD };
static const char *STD_COLS[NSTD] = {"id", "modality", "image", "label", "split", "domain"};

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

void mk_manifest_free(mk_manifest *m)
{
    if (!m)
        return;
    for (int r = 0; r < m->nrows; r++) {
        mk_manifest_row *w = &m->rows[r];
        free(w->id);
        free(w->modality);
        free(w->image);
        free(w->label);
        free(w->split);
        free(w->domain);
        free(w->image_path);
        free(w->label_path);
        if (w->extra)
            for (int e = 0; e < m->nextra; e++)
                free(w->extra[e]);
        free(w->extra);
    }
    free(m->rows);
    for (int e = 0; e < m->nextra; e++)
        free(m->extra_names[e]);
    free(m->extra_names);
    for (int l = 0; l < m->nlabels; l++)
        free(m->label_names[l]);
    free(m->label_names);
    free(m->label_values);
    free(m->name);
    free(m->source);
    free(m->dir);
    free(m);
}

int mk_manifest_find(const mk_manifest *m, const char *id)
{
    for (int r = 0; r < m->nrows; r++)
        if (strcmp(m->rows[r].id, id) == 0)
            return r;
    return -1;
}

int mk_manifest_extra_index(const mk_manifest *m, const char *name)
{
    for (int e = 0; e < m->nextra; e++)
        if (strcmp(m->extra_names[e], name) == 0)
            return e;
    return -1;
}

static char *resolve(const char *dir, const char *rel)
{
    if (!rel || !*rel)
        return NULL;
    char buf[8192];
    if (rel[0] == '/')
        snprintf(buf, sizeof buf, "%s", rel);
    else
        snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    return strdup(buf);
}

/* ---- CSV ------------------------------------------------------------------------------------ */

typedef struct csv {
    const char *s, *end;
    int line; /* line of the cursor */
    const char *path;
} csv;

/* Parse one record into fields (malloc'd strings). Returns 1 if a record was read, 0 at end,
 * -1 on error (message set). *rec_line = line where the record starts. */
static int csv_record(mk_ctx *ctx, csv *c, char ***fields, int *nf, int *rec_line)
{
    *fields = NULL;
    *nf = 0;
    /* skip blank lines */
    while (c->s < c->end && (*c->s == '\n' || *c->s == '\r')) {
        if (*c->s == '\n')
            c->line++;
        c->s++;
    }
    if (c->s >= c->end)
        return 0;
    *rec_line = c->line;
    int cap = 8;
    char **f = malloc((size_t)cap * sizeof *f);
    size_t bcap = 256;
    char *b = malloc(bcap);
    if (!f || !b)
        goto nomem;
    for (;;) {
        size_t bn = 0;
        int quoted = 0;
        if (c->s < c->end && *c->s == '"') {
            quoted = 1;
            c->s++;
        }
        for (;;) {
            if (c->s >= c->end) {
                if (quoted) {
                    mk_err(ctx, MK_ERR_FORMAT,
                           "%s:%d: field %d: expected a closing '\"', got the end of the file",
                           c->path, *rec_line, *nf + 1);
                    goto fail;
                }
                break;
            }
            char ch = *c->s;
            if (quoted) {
                if (ch == '"') {
                    if (c->s + 1 < c->end && c->s[1] == '"') {
                        c->s += 2;
                    } else {
                        c->s++;
                        quoted = 0;
                        /* only a separator or line end may follow a closing quote */
                        if (c->s < c->end && *c->s != ',' && *c->s != '\n' && *c->s != '\r') {
                            mk_err(ctx, MK_ERR_FORMAT,
                                   "%s:%d: field %d: expected ',' or a line end after a closing "
                                   "quote, got '%c'",
                                   c->path, c->line, *nf + 1, *c->s);
                            goto fail;
                        }
                        continue;
                    }
                } else {
                    if (ch == '\n')
                        c->line++;
                    c->s++;
                }
            } else {
                if (ch == ',' || ch == '\n' || ch == '\r')
                    break;
                c->s++;
            }
            if (bn + 2 > bcap) {
                bcap *= 2;
                char *nb = realloc(b, bcap);
                if (!nb)
                    goto nomem;
                b = nb;
            }
            b[bn++] = ch;
        }
        b[bn] = '\0';
        if (*nf == cap) {
            cap *= 2;
            char **nf2 = realloc(f, (size_t)cap * sizeof *f);
            if (!nf2)
                goto nomem;
            f = nf2;
        }
        if (!(f[(*nf)++] = strdup(b)))
            goto nomem;
        if (c->s < c->end && *c->s == ',') {
            c->s++;
            continue;
        }
        /* end of record */
        if (c->s < c->end && *c->s == '\r')
            c->s++;
        if (c->s < c->end && *c->s == '\n') {
            c->s++;
            c->line++;
        }
        break;
    }
    free(b);
    *fields = f;
    return 1;
nomem:
    mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", c->path);
fail:
    for (int i = 0; f && i < *nf; i++)
        free(f[i]);
    free(f);
    free(b);
    *nf = 0;
    return -1;
}

static void free_fields(char **f, int n)
{
    for (int i = 0; i < n; i++)
        free(f[i]);
    free(f);
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t k = 0;
    while (s[k] && isspace((unsigned char)s[k]))
        k++;
    if (k)
        memmove(s, s + k, n - k + 1);
}

static mk_manifest *manifest_new(const char *source, const char *dir)
{
    mk_manifest *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->source = xstrdup(source);
    m->dir = xstrdup(dir);
    if (!m->source || !m->dir) {
        mk_manifest_free(m);
        return NULL;
    }
    return m;
}

static mk_manifest_row *add_row(mk_manifest *m)
{
    mk_manifest_row *r = realloc(m->rows, (size_t)(m->nrows + 1) * sizeof *r);
    if (!r)
        return NULL;
    m->rows = r;
    memset(&r[m->nrows], 0, sizeof r[0]);
    return &r[m->nrows++];
}

static mk_status validate_row(mk_ctx *ctx, const mk_manifest *m, const mk_manifest_row *w,
                              const char *where)
{
    if (!*w->id)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: column id: expected a non-empty case id, got ''",
                      where);
    for (const char *p = w->id; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 32)
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: column id: expected no '/', '\\' or control characters, got '%s'",
                          where, w->id);
    if (!*w->image)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: column image: expected a path, got ''", where);
    if (*w->split && strcmp(w->split, "train") && strcmp(w->split, "val") &&
        strcmp(w->split, "test"))
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: column split: expected train, val, test or empty, got '%s'", where,
                      w->split);
    for (int r = 0; r < m->nrows - 1; r++)
        if (&m->rows[r] != w && strcmp(m->rows[r].id, w->id) == 0)
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: column id: expected a unique id, got '%s' (also on line %d)", where,
                          w->id, m->rows[r].line);
    return MK_OK;
}

mk_status mk_manifest_read(mk_ctx *ctx, const char *path, mk_manifest **out)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &text, &len);
    if (st != MK_OK)
        return st;
    char dir[4096];
    mk_fs_dirname(path, dir, sizeof dir);
    mk_manifest *m = manifest_new(path, dir);
    int *colmap = NULL; /* file column -> std index or NSTD + extra index */
    char **f = NULL;
    int nf = 0, ncols = 0, line = 0;
    if (!m) {
        free(text);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    csv c = {text, text + len, 1, path};
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        c.s += 3;
    int rc = csv_record(ctx, &c, &f, &nf, &line);
    if (rc <= 0) {
        st = rc < 0 ? ctx->status
                    : mk_err(ctx, MK_ERR_FORMAT,
                             "%s:1: header: expected the column names "
                             "(id,modality,image,label,split,domain), got an empty file",
                             path);
        goto fail;
    }
    ncols = nf;
    colmap = calloc((size_t)ncols, sizeof *colmap);
    m->extra_names = calloc((size_t)ncols, sizeof *m->extra_names);
    if (!colmap || !m->extra_names) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int seen[NSTD] = {0};
    for (int i = 0; i < ncols; i++) {
        trim(f[i]);
        int k = -1;
        for (int s = 0; s < NSTD; s++)
            if (strcmp(f[i], STD_COLS[s]) == 0)
                k = s;
        for (int j = 0; j < i; j++)
            if (strcmp(f[i], f[j]) == 0) {
                st = mk_err(ctx, MK_ERR_FORMAT,
                            "%s:%d: column %s: expected unique column names, got it twice", path,
                            line, f[i]);
                goto fail;
            }
        if (!*f[i]) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s:%d: column %d: expected a column name, got ''",
                        path, line, i + 1);
            goto fail;
        }
        if (k >= 0) {
            colmap[i] = k;
            seen[k] = 1;
        } else {
            colmap[i] = NSTD + m->nextra;
            m->extra_names[m->nextra++] = xstrdup(f[i]);
        }
    }
    for (int s = COL_ID; s <= COL_IMAGE; s += 2)
        if (!seen[s]) {
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s:%d: column %s: expected in the header (required), got "
                        "no such column",
                        path, line, STD_COLS[s]);
            goto fail;
        }
    free_fields(f, nf);
    f = NULL;
    while ((rc = csv_record(ctx, &c, &f, &nf, &line)) == 1) {
        if (nf == 1 && !*f[0]) {
            free_fields(f, nf);
            f = NULL;
            continue;
        }
        if (nf != ncols) {
            st =
                mk_err(ctx, MK_ERR_FORMAT, "%s:%d: row: expected %d fields (as the header), got %d",
                       path, line, ncols, nf);
            goto fail;
        }
        mk_manifest_row *w = add_row(m);
        if (!w || !(w->extra = calloc((size_t)(m->nextra ? m->nextra : 1), sizeof *w->extra))) {
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        w->line = line;
        char **std[NSTD] = {&w->id, &w->modality, &w->image, &w->label, &w->split, &w->domain};
        for (int i = 0; i < ncols; i++) {
            if (colmap[i] < NSTD) {
                trim(f[i]);
                *std[colmap[i]] = f[i];
            } else {
                w->extra[colmap[i] - NSTD] = f[i];
            }
            f[i] = NULL;
        }
        for (int s = 0; s < NSTD; s++)
            if (!*std[s])
                *std[s] = xstrdup("");
        for (int e = 0; e < m->nextra; e++)
            if (!w->extra[e])
                w->extra[e] = xstrdup("");
        free_fields(f, nf);
        f = NULL;
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, line);
        if ((st = validate_row(ctx, m, w, where)) != MK_OK)
            goto fail;
        w->image_path = resolve(dir, w->image);
        w->label_path = resolve(dir, w->label);
    }
    if (rc < 0) {
        st = ctx->status;
        goto fail;
    }
    free(colmap);
    free(text);
    *out = m;
    return MK_OK;
fail:
    if (f)
        free_fields(f, nf);
    free(colmap);
    free(text);
    mk_manifest_free(m);
    return st;
}

static void put_field(FILE *fp, const char *s)
{
    if (!strpbrk(s, ",\"\n\r") && !(s[0] == ' ' || (*s && s[strlen(s) - 1] == ' '))) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

static void put_path(FILE *fp, const char *outdir, const char *abs)
{
    if (!abs) {
        put_field(fp, "");
        return;
    }
    size_t n = strlen(outdir);
    if (strcmp(outdir, ".") != 0 && strncmp(abs, outdir, n) == 0 && abs[n] == '/')
        put_field(fp, abs + n + 1);
    else if (strcmp(outdir, ".") == 0 && abs[0] != '/' && strncmp(abs, "./", 2) == 0)
        put_field(fp, abs + 2);
    else
        put_field(fp, abs);
}

mk_status mk_manifest_write(mk_ctx *ctx, const char *path, const mk_manifest *m)
{
    char tmp[4200], outdir[4096];
    mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
    if (st != MK_OK)
        return st;
    mk_fs_dirname(path, outdir, sizeof outdir);
    FILE *fp = fopen(tmp, "w");
    if (!fp)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fputs("id,modality,image,label,split,domain", fp);
    for (int e = 0; e < m->nextra; e++) {
        fputc(',', fp);
        put_field(fp, m->extra_names[e]);
    }
    fputc('\n', fp);
    for (int r = 0; r < m->nrows; r++) {
        const mk_manifest_row *w = &m->rows[r];
        put_field(fp, w->id);
        fputc(',', fp);
        put_field(fp, w->modality);
        fputc(',', fp);
        put_path(fp, outdir, w->image_path);
        fputc(',', fp);
        put_path(fp, outdir, w->label_path);
        fputc(',', fp);
        put_field(fp, w->split);
        fputc(',', fp);
        put_field(fp, w->domain);
        for (int e = 0; e < m->nextra; e++) {
            fputc(',', fp);
            const char *v = w->extra[e];
            /* imported extra channels are paths too */
            if (strncmp(m->extra_names[e], "image_", 6) == 0 && v[0] == '/')
                put_path(fp, outdir, v);
            else
                put_field(fp, v);
        }
        fputc('\n', fp);
    }
    if (ferror(fp) | (fclose(fp) != 0)) {
        mk_fs_discard(tmp);
        return mk_err(ctx, MK_ERR_IO, "%s: write failed", path);
    }
    return mk_fs_commit(ctx, tmp, path);
}

mk_status mk_manifest_check_files(mk_ctx *ctx, const mk_manifest *m)
{
    for (int r = 0; r < m->nrows; r++) {
        const mk_manifest_row *w = &m->rows[r];
        if (!mk_fs_is_file(w->image_path) && !mk_fs_is_dir(w->image_path))
            return mk_err(ctx, MK_ERR_IO,
                          "%s:%d: column image: expected an existing file, got '%s'", m->source,
                          w->line, w->image_path);
        if (w->label_path && !mk_fs_is_file(w->label_path) && !mk_fs_is_dir(w->label_path))
            return mk_err(ctx, MK_ERR_IO,
                          "%s:%d: column label: expected an existing file, got '%s'", m->source,
                          w->line, w->label_path);
    }
    return MK_OK;
}

mk_status mk_manifest_check_grid(mk_ctx *ctx, const mk_manifest *m, int row)
{
    MK_ASSERT(row >= 0 && row < m->nrows);
    const mk_manifest_row *w = &m->rows[row];
    if (!w->label_path)
        return MK_OK;
    char where[4200];
    if (w->line > 0)
        snprintf(where, sizeof where, "%s:%d", m->source, w->line);
    else
        snprintf(where, sizeof where, "%s: case %s", m->source, w->id);
    mk_image *a = NULL, *b = NULL;
    mk_status st = mk_io_read_header(ctx, w->image_path, &a);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "%s: column image", where);
    st = mk_io_read_header(ctx, w->label_path, &b);
    if (st != MK_OK) {
        mk_image_free(a);
        return mk_err_prefix(ctx, "%s: column label", where);
    }
    if (!mk_geom_same_grid(a, b, 1e-4)) {
        const char *field = "direction";
        char e[200] = "", g[200] = "";
        if (a->dim[0] != b->dim[0] || a->dim[1] != b->dim[1] || a->dim[2] != b->dim[2]) {
            field = "dim";
            snprintf(e, sizeof e, "%lldx%lldx%lld", (long long)a->dim[0], (long long)a->dim[1],
                     (long long)a->dim[2]);
            snprintf(g, sizeof g, "%lldx%lldx%lld", (long long)b->dim[0], (long long)b->dim[1],
                     (long long)b->dim[2]);
        } else {
            int sp = 0, orr = 0;
            for (int d = 0; d < 3; d++) {
                sp |= fabs(a->geom.spacing[d] - b->geom.spacing[d]) >
                      1e-4 * fmax(a->geom.spacing[d], b->geom.spacing[d]);
                orr |= fabs(a->geom.origin[d] - b->geom.origin[d]) > 1e-4;
            }
            const double *x = sp ? a->geom.spacing : orr ? a->geom.origin : a->geom.direction;
            const double *y = sp ? b->geom.spacing : orr ? b->geom.origin : b->geom.direction;
            field = sp ? "spacing" : orr ? "origin" : "direction";
            int n = sp || orr ? 3 : 9;
            for (int d = 0, ke = 0, kg = 0; d < n; d++) {
                ke += snprintf(e + ke, sizeof e - (size_t)ke, "%s%g", d ? "," : "", x[d]);
                kg += snprintf(g + kg, sizeof g - (size_t)kg, "%s%g", d ? "," : "", y[d]);
            }
        }
        st = mk_err(
            ctx, MK_ERR_GEOMETRY,
            "%s: column label: image and label on different grids: field %s: expected %s (image "
            "%s), got %s (label %s)",
            where, field, e, w->image_path, g, w->label_path);
    }
    mk_image_free(a);
    mk_image_free(b);
    return st;
}

/* ---- nnU-Net / MSD import ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Case ids of a folder: names "CASE_XXXX<ending>" with channel 0000; sorted. */
static mk_status list_cases(mk_ctx *ctx, const char *dir, const char *ending, char ***ids, int *n)
{
    *ids = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return MK_OK; /* missing folder = no cases */
    struct dirent *e;
    int cap = 0;
    size_t el = strlen(ending);
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        size_t L = strlen(nm);
        if (L < el + 5 || !ends_with(nm, ending) || strncmp(nm + L - el - 5, "_0000", 5) != 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **x = realloc(*ids, (size_t)cap * sizeof *x);
            if (!x) {
                closedir(d);
                return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", dir);
            }
            *ids = x;
        }
        (*ids)[*n] = strndup(nm, L - el - 5);
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*ids, (size_t)*n, sizeof **ids, cmp_str);
    return MK_OK;
}

static mk_status import_v2(mk_ctx *ctx, const char *root, cJSON *js, mk_manifest *m)
{
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(js, "file_ending");
    const char *ending = cJSON_IsString(fe) ? fe->valuestring : ".nii.gz";
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(js, "channel_names");
    if (!ch)
        ch = cJSON_GetObjectItemCaseSensitive(js, "modality");
    int nch = cJSON_IsObject(ch) ? cJSON_GetArraySize(ch) : 1;
    if (nch < 1)
        nch = 1;
    const cJSON *c0 = cJSON_IsObject(ch) ? cJSON_GetObjectItemCaseSensitive(ch, "0") : NULL;
    const char *mod = cJSON_IsString(c0) ? c0->valuestring : "";
    if (nch > 1) {
        m->extra_names = calloc((size_t)nch - 1, sizeof *m->extra_names);
        if (!m->extra_names)
            return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        for (int c = 1; c < nch; c++) {
            char nm[32];
            snprintf(nm, sizeof nm, "image_%04d", c);
            m->extra_names[m->nextra++] = xstrdup(nm);
        }
    }
    static const char *sets[2][3] = {{"imagesTr", "labelsTr", "train"}, {"imagesTs", NULL, "test"}};
    for (int s = 0; s < 2; s++) {
        char idir[4200], ldir[4200];
        snprintf(idir, sizeof idir, "%s/%s", root, sets[s][0]);
        if (sets[s][1])
            snprintf(ldir, sizeof ldir, "%s/%s", root, sets[s][1]);
        char **ids;
        int n;
        mk_status st = list_cases(ctx, idir, ending, &ids, &n);
        if (st != MK_OK)
            return st;
        for (int i = 0; i < n && st == MK_OK; i++) {
            mk_manifest_row *w = add_row(m);
            if (!w || !(w->extra = calloc((size_t)(m->nextra ? m->nextra : 1), sizeof *w->extra))) {
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
                break;
            }
            char p[8400];
            w->id = xstrdup(ids[i]);
            w->modality = xstrdup(mod);
            w->split = xstrdup(sets[s][2]);
            w->domain = xstrdup("");
            snprintf(p, sizeof p, "%s/%s_0000%s", idir, ids[i], ending);
            w->image_path = xstrdup(p);
            snprintf(p, sizeof p, "%s/%s_0000%s", sets[s][0], ids[i], ending);
            w->image = xstrdup(p);
            for (int c = 1; c < nch && st == MK_OK; c++) {
                snprintf(p, sizeof p, "%s/%s_%04d%s", idir, ids[i], c, ending);
                if (!mk_fs_is_file(p))
                    st = mk_err(ctx, MK_ERR_FORMAT,
                                "%s: channel %d of case %s: expected the file, got "
                                "nothing (dataset.json lists %d channels)",
                                p, c, ids[i], nch);
                w->extra[c - 1] = xstrdup(p);
            }
            if (sets[s][1]) {
                snprintf(p, sizeof p, "%s/%s%s", ldir, ids[i], ending);
                if (!mk_fs_is_file(p) && st == MK_OK)
                    st = mk_err(ctx, MK_ERR_FORMAT,
                                "%s: label of training case %s: expected the file, "
                                "got nothing",
                                p, ids[i]);
                w->label_path = xstrdup(p);
                snprintf(p, sizeof p, "%s/%s%s", sets[s][1], ids[i], ending);
                w->label = xstrdup(p);
            } else {
                /* labelsTs/CASE.ext (outside nnU-Net's layout, common for scoring): when
                 * present, the test case is labelled */
                snprintf(p, sizeof p, "%s/labelsTs/%s%s", root, ids[i], ending);
                if (mk_fs_is_file(p)) {
                    w->label_path = xstrdup(p);
                    snprintf(p, sizeof p, "labelsTs/%s%s", ids[i], ending);
                    w->label = xstrdup(p);
                } else
                    w->label = xstrdup("");
            }
            for (int e = 0; e < m->nextra; e++)
                if (!w->extra[e])
                    w->extra[e] = xstrdup("");
        }
        for (int i = 0; i < n; i++)
            free(ids[i]);
        free(ids);
        if (st != MK_OK)
            return st;
    }
    const cJSON *nt = cJSON_GetObjectItemCaseSensitive(js, "numTraining");
    int ntr = 0;
    for (int r = 0; r < m->nrows; r++)
        ntr += strcmp(m->rows[r].split, "train") == 0;
    if (cJSON_IsNumber(nt) && nt->valueint != ntr)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s/dataset.json: field numTraining: expected %d (cases found in "
                      "imagesTr), got %d",
                      root, ntr, nt->valueint);
    return MK_OK;
}

static char *strip_dot_slash(const char *s)
{
    while (s[0] == '.' && s[1] == '/')
        s += 2;
    return xstrdup(s);
}

static char *case_id_of(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *id = xstrdup(b);
    if (!id)
        return NULL;
    static const char *exts[] = {".nii.gz", ".nii", ".mha", ".nrrd", ".mhd"};
    for (int i = 0; i < 5; i++)
        if (ends_with(id, exts[i])) {
            id[strlen(id) - strlen(exts[i])] = '\0';
            break;
        }
    return id;
}

static mk_status import_msd(mk_ctx *ctx, const char *root, cJSON *js, mk_manifest *m)
{
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(js, "modality");
    const cJSON *c0 = cJSON_IsObject(mo) ? cJSON_GetObjectItemCaseSensitive(mo, "0") : NULL;
    const char *mod = cJSON_IsString(c0) ? c0->valuestring : "";
    static const char *keys[3] = {"training", "validation", "test"};
    static const char *splits[3] = {"train", "val", "test"};
    for (int s = 0; s < 3; s++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(js, keys[s]);
        if (!arr)
            continue;
        if (!cJSON_IsArray(arr))
            return mk_err(ctx, MK_ERR_FORMAT, "%s/dataset.json: field %s: expected an array", root,
                          keys[s]);
        const cJSON *it;
        int idx = 0;
        cJSON_ArrayForEach(it, arr)
        {
            const char *img = NULL, *lab = NULL;
            if (cJSON_IsString(it)) {
                img = it->valuestring;
            } else {
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(it, "image");
                const cJSON *b = cJSON_GetObjectItemCaseSensitive(it, "label");
                img = cJSON_IsString(a) ? a->valuestring : NULL;
                lab = cJSON_IsString(b) ? b->valuestring : NULL;
            }
            if (!img)
                return mk_err(ctx, MK_ERR_FORMAT,
                              "%s/dataset.json: field %s[%d].image: expected a path string", root,
                              keys[s], idx);
            mk_manifest_row *w = add_row(m);
            if (!w)
                return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            w->extra = calloc(1, sizeof *w->extra);
            w->image = strip_dot_slash(img);
            w->label = strip_dot_slash(lab ? lab : "");
            w->id = case_id_of(w->image);
            w->modality = xstrdup(mod);
            w->split = xstrdup(splits[s]);
            w->domain = xstrdup("");
            w->image_path = resolve(root, w->image);
            w->label_path = resolve(root, w->label);
            if (!w->extra || !w->image || !w->label || !w->id || !w->modality || !w->split ||
                !w->domain)
                return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            idx++;
        }
    }
    return MK_OK;
}

/* dataset.json "labels": nnU-Net v2 {"background": 0, "liver": 1} (a list value is a region of
 * several labels: skipped), MSD / nnU-Net v1 {"0": "background", "1": "liver"}. Sorted by value. */
static mk_status import_labels(mk_ctx *ctx, const char *jp, const cJSON *js, mk_manifest *m)
{
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(js, "labels");
    if (!lab)
        return MK_OK;
    if (!cJSON_IsObject(lab))
        return mk_err(ctx, MK_ERR_FORMAT, "%s: field labels: expected an object, got another type",
                      jp);
    int n = cJSON_GetArraySize(lab);
    m->label_values = calloc((size_t)(n ? n : 1), sizeof *m->label_values);
    m->label_names = calloc((size_t)(n ? n : 1), sizeof *m->label_names);
    if (!m->label_values || !m->label_names)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", jp);
    const cJSON *it;
    cJSON_ArrayForEach(it, lab)
    {
        const char *name;
        double v;
        if (cJSON_IsNumber(it)) { /* nnU-Net v2: name -> value */
            name = it->string;
            v = it->valuedouble;
        } else if (cJSON_IsString(it)) { /* MSD: "value" -> name */
            char *end = NULL;
            v = strtod(it->string, &end);
            if (!*it->string || (end && *end))
                return mk_err(ctx, MK_ERR_FORMAT,
                              "%s: field labels.%s: expected a label value (an integer) as the "
                              "key of an MSD label name, got '%s'",
                              jp, it->string, it->string);
            name = it->valuestring;
        } else if (cJSON_IsArray(it)) {
            continue; /* a region (several labels): not a class of its own here */
        } else {
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: field labels.%s: expected an integer label value, got another type",
                          jp, it->string);
        }
        if (!(v >= 0 && v <= 255 && v == floor(v)))
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: field labels.%s: expected an integer label value in 0..255, got %g",
                          jp, it->string, v);
        for (int l = 0; l < m->nlabels; l++)
            if (m->label_values[l] == (int)v)
                return mk_err(ctx, MK_ERR_FORMAT,
                              "%s: field labels.%s: expected a value of its own, got %d (also "
                              "label '%s')",
                              jp, it->string, (int)v, m->label_names[l]);
        int k = m->nlabels;
        while (k > 0 && m->label_values[k - 1] > (int)v) { /* insertion keeps values ascending */
            m->label_values[k] = m->label_values[k - 1];
            m->label_names[k] = m->label_names[k - 1];
            k--;
        }
        m->label_values[k] = (int)v;
        m->nlabels++;
        if (!(m->label_names[k] = xstrdup(name)))
            return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", jp);
    }
    return MK_OK;
}

/* The dataset's name: the folder's last component (after resolving "." and ".."), else
 * dataset.json's "name", else "dataset". */
static char *dataset_name(const char *root, const cJSON *js)
{
    char buf[4096];
    const char *r = realpath(root, buf) ? buf : root;
    size_t n = strlen(r);
    while (n > 1 && r[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && r[b - 1] != '/')
        b--;
    if (n > b && !(n - b == 1 && r[b] == '.') && !(n - b == 2 && r[b] == '.' && r[b + 1] == '.'))
        return strndup(r + b, n - b);
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(js, "name");
    return xstrdup(cJSON_IsString(nm) && *nm->valuestring ? nm->valuestring : "dataset");
}

mk_status mk_manifest_import_nnunet(mk_ctx *ctx, const char *dataset, mk_manifest **out)
{
    *out = NULL;
    char jp[4300], root[4200];
    /* the folder, or its dataset.json (the folder is then the file's directory) */
    size_t dl = strlen(dataset);
    if ((dl >= 5 && strcmp(dataset + dl - 5, ".json") == 0) || mk_fs_is_file(dataset)) {
        snprintf(jp, sizeof jp, "%s", dataset);
        mk_fs_dirname(dataset, root, sizeof root);
    } else {
        snprintf(root, sizeof root, "%s", dataset);
        while (strlen(root) > 1 && root[strlen(root) - 1] == '/')
            root[strlen(root) - 1] = '\0';
        snprintf(jp, sizeof jp, "%s/dataset.json", root);
        if (!mk_fs_is_dir(root))
            return mk_err(ctx, MK_ERR_IO,
                          "%s: expected an nnU-Net v2 or MSD dataset folder (or its "
                          "dataset.json), got no such folder",
                          dataset);
    }
    const char *dataset_dir = root;
    char *text = NULL;
    size_t len;
    mk_status st = mk_fs_read_all(ctx, jp, &text, &len);
    if (st != MK_OK)
        return st;
    cJSON *js = cJSON_ParseWithLength(text, len);
    if (!js || !cJSON_IsObject(js)) {
        const char *e = cJSON_GetErrorPtr();
        long off = e && e >= text && e <= text + len ? (long)(e - text) : -1;
        int line = 1;
        for (long i = 0; i < off; i++)
            line += text[i] == '\n';
        cJSON_Delete(js);
        free(text);
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s:%d: expected a JSON object, got a syntax error near byte %ld", jp, line,
                      off);
    }
    free(text);
    mk_manifest *m = manifest_new(dataset_dir, dataset_dir);
    if (!m) {
        cJSON_Delete(js);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    if (!(m->name = dataset_name(dataset_dir, js)))
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    else if (cJSON_GetObjectItemCaseSensitive(js, "training")) {
        m->layout = "msd";
        st = import_msd(ctx, dataset_dir, js, m);
    } else {
        m->layout = "nnunet-v2";
        st = import_v2(ctx, dataset_dir, js, m);
    }
    if (st == MK_OK)
        st = import_labels(ctx, jp, js, m);
    cJSON_Delete(js);
    if (st == MK_OK) {
        char where[4400];
        for (int r = 0; r < m->nrows && st == MK_OK; r++) {
            snprintf(where, sizeof where, "%s: case %d", jp, r);
            st = validate_row(ctx, m, &m->rows[r], where);
        }
    }
    if (st != MK_OK) {
        mk_manifest_free(m);
        return st;
    }
    *out = m;
    return MK_OK;
}

/* ---- case table ---------------------------------------------------------------------------- */

mk_status mk_manifest_apply_table(mk_ctx *ctx, mk_manifest *m, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &text, &len);
    if (st != MK_OK)
        return st;
    csv c = {text, text + len, 1, path};
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        c.s += 3;
    char **hdr = NULL, **f = NULL;
    int nh = 0, nf = 0, line = 0, idcol = -1;
    int col[3] = {-1, -1, -1}; /* modality, domain, split */
    static const char *const names[3] = {"modality", "domain", "split"};
    int rc = csv_record(ctx, &c, &hdr, &nh, &line);
    if (rc <= 0) {
        st = rc < 0 ? ctx->status
                    : mk_err(ctx, MK_ERR_FORMAT,
                             "%s:1: header: expected the columns id and any of modality, domain, "
                             "split, got an empty file",
                             path);
        goto out;
    }
    for (int i = 0; i < nh; i++) {
        trim(hdr[i]);
        if (!strcmp(hdr[i], "id"))
            idcol = i;
        for (int k = 0; k < 3; k++)
            if (!strcmp(hdr[i], names[k]))
                col[k] = i;
    }
    if (idcol < 0 || (col[0] < 0 && col[1] < 0 && col[2] < 0)) {
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s:%d: header: expected the column id and at least one of modality, domain, "
                    "split",
                    path, line);
        goto out;
    }
    while ((rc = csv_record(ctx, &c, &f, &nf, &line)) > 0) {
        if (nf != nh) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s:%d: expected %d fields like the header, got %d",
                        path, line, nh, nf);
            goto out;
        }
        trim(f[idcol]);
        int r = mk_manifest_find(m, f[idcol]);
        if (r < 0) {
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s:%d: column id: expected a case of %s, got '%s' (no such case)", path,
                        line, m->source, f[idcol]);
            goto out;
        }
        mk_manifest_row *w = &m->rows[r];
        char **dst[3] = {&w->modality, &w->domain, &w->split};
        for (int k = 0; k < 3; k++) {
            if (col[k] < 0)
                continue;
            trim(f[col[k]]);
            char *v = xstrdup(f[col[k]]);
            if (!v) {
                st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
                goto out;
            }
            free(*dst[k]);
            *dst[k] = v;
        }
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, line);
        if ((st = validate_row(ctx, m, w, where)) != MK_OK)
            goto out;
        free_fields(f, nf);
        f = NULL;
        nf = 0;
    }
    if (rc < 0)
        st = ctx->status;
out:
    free_fields(hdr, nh);
    free_fields(f, nf);
    free(text);
    return st;
}
