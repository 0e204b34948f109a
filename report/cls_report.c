/* Classification reports and probability heat maps: see mk_cls_report.h.
 *
 * mk_cls_report_write validates everything first (no file is touched on bad input), then per
 * model sorts its samples once by (group, slide) with a counting sort, so every slide's and every
 * group's samples are one contiguous range and each scope's metrics is one mk_cls_metrics_compute
 * on it (the metrics do not depend on the order of the samples). The JSON tree (cJSON), the CSV
 * text (a memory stream) and the HDF5 file (report/h5w.c, in memory) are built side by side and
 * then written, each atomically: classification.json, .csv, .h5, in that order.
 *
 * mk_cls_heatmap_png copies the thumbnail into a cairo RGB24 surface, draws the patches opaque
 * into a group (no antialiasing: squares on whole pixels, a later patch over an earlier one) and
 * paints the group once with alpha 0.45, so overlapping patches do not darken; the colour bar is
 * a cairo linear gradient with the same three stops as the patch colours; text through cairo's
 * toy API; the PNG through cairo_surface_write_to_png_stream into memory, written with
 * mk_fs_write_atomic. */
#include "mk_cls_report.h"

#include <cairo.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "mk_report.h"
#include "report_internal.h"

#define MK_CLS_PATH_MAX 4200
#define MK_CLS_MAX_SIDE 32767 /* cairo's largest image surface side */

/* ---- numbers ----------------------------------------------------------------------------- */

/* The shortest of %.15g, %.16g, %.17g that reads back as v (finite v). */
static void mk_cls_fmt(char *buf, size_t n, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* ---- validation -------------------------------------------------------------------------- */

static int mk_cls_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int mk_cls_reserved(const char *name)
{
    return !strcmp(name, "classes") || !strcmp(name, "slides") || !strcmp(name, "slide_group") ||
           !strcmp(name, ".") || !strcmp(name, "..");
}

static mk_status mk_cls_validate_model(mk_ctx *ctx, const mk_cls_eval *e, int j)
{
    const mk_cls_eval_model *m = &e->models[j];
    if (!m->name || !*m->name)
        return mk_err(ctx, MK_ERR_INVALID, "classification report: model %d has no name", j);
    if (strlen(m->name) > 255 || strchr(m->name, '/') || mk_cls_reserved(m->name))
        return mk_err(ctx, MK_ERR_INVALID,
                      "classification report: model name '%.300s' cannot name an HDF5 group (at "
                      "most 255 bytes, no '/', not '.', '..', 'classes', 'slides' or "
                      "'slide_group')",
                      m->name);
    for (int k = 0; k < j; k++)
        if (!strcmp(e->models[k].name, m->name))
            return mk_err(ctx, MK_ERR_INVALID,
                          "classification report: model name '%s' is used twice (models %d and %d)",
                          m->name, k, j);
    if (m->n < 0)
        return mk_err(ctx, MK_ERR_INVALID, "classification report: model '%s': n = %lld", m->name,
                      (long long)m->n);
    if (m->n > 0 && (!m->truth || !m->prob || !m->slide))
        return mk_err(ctx, MK_ERR_INVALID,
                      "classification report: model '%s': NULL truth, prob or slide for %lld "
                      "samples",
                      m->name, (long long)m->n);
    if ((uint64_t)m->n > SIZE_MAX / ((size_t)e->nclass * sizeof(double) + 64))
        return mk_err(ctx, MK_ERR_NOMEM,
                      "classification report: model '%s': %lld samples is over the size limit",
                      m->name, (long long)m->n);
    for (int64_t i = 0; i < m->n; i++) {
        if (m->truth[i] < 0 || m->truth[i] >= e->nclass)
            return mk_err(ctx, MK_ERR_INVALID,
                          "classification report: model '%s': sample %lld: truth %d is outside "
                          "0..%d",
                          m->name, (long long)i, (int)m->truth[i], e->nclass - 1);
        if (m->slide[i] < 0 || m->slide[i] >= e->nslides)
            return mk_err(ctx, MK_ERR_INVALID,
                          "classification report: model '%s': sample %lld: slide index %d is "
                          "outside 0..%d (%d slides)",
                          m->name, (long long)i, (int)m->slide[i], e->nslides - 1, e->nslides);
        for (int c = 0; c < e->nclass; c++)
            if (isnan(m->prob[i * e->nclass + c]))
                return mk_err(ctx, MK_ERR_INVALID,
                              "classification report: model '%s': sample %lld: prob[%d] is NaN",
                              m->name, (long long)i, c);
    }
    return MK_OK;
}

mk_status mk__cls_validate(mk_ctx *ctx, const char *dir, const mk_cls_eval *e)
{
    if (!dir || !e)
        return mk_err(ctx, MK_ERR_INVALID, "classification report: NULL directory or evaluation");
    if (e->nclass < 2 || e->nclass > MK_CLS_MAX_CLASSES)
        return mk_err(ctx, MK_ERR_INVALID, "classification report: nclass = %d is outside 2..%d",
                      e->nclass, MK_CLS_MAX_CLASSES);
    if (e->nslides < 0 || (e->nslides > 0 && !e->slide_ids))
        return mk_err(ctx, MK_ERR_INVALID, "classification report: %d slides and %s slide ids",
                      e->nslides, e->slide_ids ? "some" : "no");
    if (e->nmodels < 0 || (e->nmodels > 0 && !e->models))
        return mk_err(ctx, MK_ERR_INVALID, "classification report: %d models and %s array",
                      e->nmodels, e->models ? "an" : "no");
    for (int s = 0; s < e->nslides; s++)
        if (!e->slide_ids[s])
            return mk_err(ctx, MK_ERR_INVALID, "classification report: slide_ids[%d] is NULL", s);
    if (e->nslides > 1) {
        const char **sorted = malloc((size_t)e->nslides * sizeof *sorted);
        if (!sorted)
            return mk_err(ctx, MK_ERR_NOMEM, "classification report: out of memory");
        memcpy(sorted, e->slide_ids, (size_t)e->nslides * sizeof *sorted);
        qsort(sorted, (size_t)e->nslides, sizeof *sorted, mk_cls_cmp_str);
        for (int s = 1; s < e->nslides; s++)
            if (!strcmp(sorted[s - 1], sorted[s])) {
                mk_status st =
                    mk_err(ctx, MK_ERR_INVALID,
                           "classification report: slide id '%s' is given twice", sorted[s]);
                free(sorted);
                return st;
            }
        free(sorted);
    }
    for (int j = 0; j < e->nmodels; j++) {
        mk_status st = mk_cls_validate_model(ctx, e, j);
        if (st != MK_OK)
            return st;
    }
    return MK_OK;
}

/* ---- JSON and CSV of one scope ----------------------------------------------------------- */

typedef struct mk_cls_out {
    cJSON *root;
    FILE *csv;
    int nomem;
} mk_cls_out;

static cJSON *mk_cls_jnum(double v)
{
    char b[40];
    if (!isfinite(v))
        return cJSON_CreateNull();
    mk_cls_fmt(b, sizeof b, v);
    return cJSON_CreateRaw(b);
}

static cJSON *mk_cls_jint(int64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    return cJSON_CreateRaw(b);
}

/* Adds item to an array (key NULL) or an object; a NULL item or a failure marks o->nomem. */
static void mk_cls_add(mk_cls_out *o, cJSON *to, const char *key, cJSON *item)
{
    int ok =
        item && to && (key ? cJSON_AddItemToObject(to, key, item) : cJSON_AddItemToArray(to, item));
    if (!ok) {
        cJSON_Delete(item);
        o->nomem = 1;
    }
}

static cJSON *mk_cls_jarr(mk_cls_out *o, const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++)
        mk_cls_add(o, a, NULL, mk_cls_jnum(v[k]));
    return a;
}

static cJSON *mk_cls_jints(mk_cls_out *o, const int64_t *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++)
        mk_cls_add(o, a, NULL, mk_cls_jint(v[k]));
    return a;
}

static cJSON *mk_cls_jmetrics(mk_cls_out *o, const mk_cls_metrics *m)
{
    const int C = m->nclass;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    mk_cls_add(o, j, "n", mk_cls_jint(m->n));
    mk_cls_add(o, j, "accuracy", mk_cls_jnum(m->accuracy));
    mk_cls_add(o, j, "balanced_accuracy", mk_cls_jnum(m->balanced_accuracy));
    mk_cls_add(o, j, "auc", mk_cls_jnum(m->auc));
    mk_cls_add(o, j, "auc_class", mk_cls_jarr(o, m->auc_class, C));
    mk_cls_add(o, j, "precision", mk_cls_jarr(o, m->precision, C));
    mk_cls_add(o, j, "recall", mk_cls_jarr(o, m->recall, C));
    mk_cls_add(o, j, "f1", mk_cls_jarr(o, m->f1, C));
    mk_cls_add(o, j, "support", mk_cls_jints(o, m->support, C));
    cJSON *conf = cJSON_CreateArray();
    for (int t = 0; conf && t < C; t++)
        mk_cls_add(o, conf, NULL, mk_cls_jints(o, m->confusion + (size_t)t * C, C));
    mk_cls_add(o, j, "confusion", conf);
    return j;
}

/* A CSV field, quoted when it holds a comma, quote or line break. */
static void mk_cls_cfield(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void mk_cls_cnum(FILE *f, double v)
{
    char b[40];
    fputc(',', f);
    if (isfinite(v)) {
        mk_cls_fmt(b, sizeof b, v);
        fputs(b, f);
    }
}

static void mk_cls_csv_row(FILE *f, const char *model, const char *scope, const char *id,
                           const mk_cls_metrics *m)
{
    mk_cls_cfield(f, model);
    fprintf(f, ",%s,", scope);
    mk_cls_cfield(f, id);
    fprintf(f, ",%lld", (long long)m->n);
    mk_cls_cnum(f, m->accuracy);
    mk_cls_cnum(f, m->balanced_accuracy);
    mk_cls_cnum(f, m->auc);
    for (int c = 0; c < m->nclass; c++) {
        mk_cls_cnum(f, m->precision[c]);
        mk_cls_cnum(f, m->recall[c]);
        mk_cls_cnum(f, m->f1[c]);
    }
    fputc('\n', f);
}

/* ---- the report -------------------------------------------------------------------------- */

typedef struct mk_cls_work {
    int ngroups;
    int *group;         /* [nslides]: group index of each slide */
    const char **gname; /* [ngroups]: borrowed */
    int *rank;          /* [nslides]: position of each slide in (group, slide) order */
    int *gfirst;        /* [ngroups + 1]: first rank of each group */
    int64_t *off;       /* [nslides + 1]: first sorted sample of each rank */
    int32_t *truth;     /* [n]: sorted samples */
    float *prob;        /* [n][nclass] */
    int64_t *i64;       /* [n]: HDF5 buffers */
    double *f64;        /* [n][nclass] */
} mk_cls_work;

static void mk_cls_work_free(mk_cls_work *w)
{
    free(w->group);
    free(w->gname);
    free(w->rank);
    free(w->gfirst);
    free(w->off);
    free(w->truth);
    free(w->prob);
    free(w->i64);
    free(w->f64);
}

static mk_status mk_cls_work_init(mk_ctx *ctx, const mk_cls_eval *e, mk_cls_work *w)
{
    memset(w, 0, sizeof *w);
    const size_t S = (size_t)(e->nslides > 0 ? e->nslides : 1), C = (size_t)e->nclass;
    int64_t nmax = 1;
    for (int j = 0; j < e->nmodels; j++)
        if (e->models[j].n > nmax)
            nmax = e->models[j].n;
    const size_t N = (size_t)nmax;
    w->group = calloc(S, sizeof *w->group);
    w->gname = calloc(S, sizeof *w->gname);
    w->rank = calloc(S, sizeof *w->rank);
    w->gfirst = calloc(S + 1, sizeof *w->gfirst);
    w->off = calloc(S + 1, sizeof *w->off);
    w->truth = malloc(N * sizeof *w->truth);
    w->prob = malloc(N * C * sizeof *w->prob);
    w->i64 = malloc(N * sizeof *w->i64);
    w->f64 = malloc(N * C * sizeof *w->f64);
    if (!w->group || !w->gname || !w->rank || !w->gfirst || !w->off || !w->truth || !w->prob ||
        !w->i64 || !w->f64) {
        mk_cls_work_free(w);
        memset(w, 0, sizeof *w);
        return mk_err(ctx, MK_ERR_NOMEM, "classification report: out of memory");
    }
    /* groups in order of first appearance; slides ranked by (group, index) */
    for (int s = 0; s < e->nslides; s++) {
        if (!e->slide_group) {
            w->rank[s] = s;
            continue;
        }
        const char *g = e->slide_group[s] ? e->slide_group[s] : "";
        int k = 0;
        while (k < w->ngroups && strcmp(w->gname[k], g))
            k++;
        if (k == w->ngroups)
            w->gname[w->ngroups++] = g;
        w->group[s] = k;
    }
    if (e->slide_group) {
        for (int s = 0; s < e->nslides; s++)
            w->gfirst[w->group[s] + 1]++;
        for (int k = 0; k < w->ngroups; k++)
            w->gfirst[k + 1] += w->gfirst[k];
        int *next = calloc((size_t)w->ngroups + 1, sizeof *next);
        if (!next) {
            mk_cls_work_free(w);
            memset(w, 0, sizeof *w);
            return mk_err(ctx, MK_ERR_NOMEM, "classification report: out of memory");
        }
        for (int s = 0; s < e->nslides; s++)
            w->rank[s] = w->gfirst[w->group[s]] + next[w->group[s]]++;
        free(next);
    }
    return MK_OK;
}

/* Sort model m's samples by the rank of their slide into w->truth / w->prob (w->off). */
static void mk_cls_sort(const mk_cls_eval *e, const mk_cls_eval_model *m, mk_cls_work *w)
{
    const int C = e->nclass;
    memset(w->off, 0, ((size_t)e->nslides + 1) * sizeof *w->off);
    for (int64_t i = 0; i < m->n; i++)
        w->off[w->rank[m->slide[i]] + 1]++;
    for (int r = 0; r < e->nslides; r++)
        w->off[r + 1] += w->off[r];
    /* off[r] runs from the start to the end of rank r while its samples are placed */
    for (int64_t i = 0; i < m->n; i++) {
        const int r = w->rank[m->slide[i]];
        const int64_t at = w->off[r]++;
        w->truth[at] = m->truth[i];
        memcpy(w->prob + at * C, m->prob + i * C, (size_t)C * sizeof(float));
    }
    /* off[r] now holds the end of rank r: shift back to starts */
    for (int r = e->nslides; r > 0; r--)
        w->off[r] = w->off[r - 1];
    w->off[0] = 0;
}

static mk_status mk_cls_scope(mk_ctx *ctx, mk_cls_out *o, cJSON *obj, const char *key,
                              const char *model, const char *scope, const char *id, int nclass,
                              int64_t n, const int32_t *truth, const float *prob)
{
    mk_cls_metrics m;
    mk_status st = mk_cls_metrics_compute(ctx, nclass, n, truth, prob, &m);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "classification report: model '%s', %s %s", model, scope, id);
    mk_cls_add(o, obj, key, mk_cls_jmetrics(o, &m));
    mk_cls_csv_row(o->csv, model, scope, id, &m);
    mk_cls_metrics_free(&m);
    return MK_OK;
}

static mk_status mk_cls_model(mk_ctx *ctx, const mk_cls_eval *e, int j, mk_cls_work *w,
                              mk_cls_out *o, cJSON *models, mk_h5w *h5)
{
    const mk_cls_eval_model *m = &e->models[j];
    const int C = e->nclass;
    cJSON *jm = cJSON_CreateObject();
    mk_cls_add(o, models, NULL, jm); /* on failure jm is gone and o->nomem set */
    if (o->nomem)
        return MK_OK;
    mk_cls_add(o, jm, "name", cJSON_CreateString(m->name));

    /* overall, with its HDF5 group */
    mk_cls_metrics all;
    mk_status st = mk_cls_metrics_compute(ctx, C, m->n, m->truth, m->prob, &all);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "classification report: model '%s'", m->name);
    mk_cls_add(o, jm, "overall", mk_cls_jmetrics(o, &all));
    mk_cls_csv_row(o->csv, m->name, "overall", "", &all);
    char name[600];
    const int64_t dn[1] = {m->n}, dp[2] = {m->n, C}, dc[2] = {C, C};
    for (int64_t i = 0; i < m->n; i++)
        w->i64[i] = m->truth[i];
    snprintf(name, sizeof name, "/%s/truth", m->name);
    mk_h5w_i64(h5, name, 1, dn, w->i64);
    for (int64_t i = 0; i < m->n * C; i++)
        w->f64[i] = m->prob[i];
    snprintf(name, sizeof name, "/%s/prob", m->name);
    mk_h5w_f64(h5, name, 2, dp, w->f64);
    for (int64_t i = 0; i < m->n; i++)
        w->i64[i] = m->slide[i];
    snprintf(name, sizeof name, "/%s/slide", m->name);
    mk_h5w_i64(h5, name, 1, dn, w->i64);
    snprintf(name, sizeof name, "/%s/confusion", m->name);
    mk_h5w_i64(h5, name, 2, dc, all.confusion);
    snprintf(name, sizeof name, "/%s", m->name);
    mk_h5w_attr_f64(h5, name, "accuracy", all.accuracy);
    mk_h5w_attr_f64(h5, name, "balanced_accuracy", all.balanced_accuracy);
    mk_h5w_attr_f64(h5, name, "auc", all.auc);
    mk_cls_metrics_free(&all);

    /* groups and slides: contiguous ranges of the (group, slide)-sorted samples */
    mk_cls_sort(e, m, w);
    cJSON *groups = cJSON_CreateObject(), *slides = cJSON_CreateObject();
    mk_cls_add(o, jm, "groups", groups);
    mk_cls_add(o, jm, "slides", slides);
    if (o->nomem)
        return MK_OK;
    for (int g = 0; g < w->ngroups; g++) {
        const int64_t a = w->off[w->gfirst[g]], b = w->off[w->gfirst[g + 1]];
        st = mk_cls_scope(ctx, o, groups, w->gname[g], m->name, "group", w->gname[g], C, b - a,
                          w->truth + a, w->prob + a * C);
        if (st != MK_OK)
            return st;
    }
    for (int s = 0; s < e->nslides; s++) {
        const int64_t a = w->off[w->rank[s]], b = w->off[w->rank[s] + 1];
        st = mk_cls_scope(ctx, o, slides, e->slide_ids[s], m->name, "slide", e->slide_ids[s], C,
                          b - a, w->truth + a, w->prob + a * C);
        if (st != MK_OK)
            return st;
    }
    return MK_OK;
}

mk_status mk_cls_report_write(mk_ctx *ctx, const char *dir, const mk_cls_eval *e)
{
    mk_status st = mk__cls_validate(ctx, dir, e);
    if (st != MK_OK)
        return st;
    char pj[MK_CLS_PATH_MAX], pc[MK_CLS_PATH_MAX], ph[MK_CLS_PATH_MAX];
    if (snprintf(pj, sizeof pj, "%s/classification.json", dir) >= (int)sizeof pj)
        return mk_err(ctx, MK_ERR_INVALID, "classification report: directory path too long: %s",
                      dir);
    snprintf(pc, sizeof pc, "%s/classification.csv", dir);
    snprintf(ph, sizeof ph, "%s/classification.h5", dir);

    const int C = e->nclass;
    char idx[MK_CLS_MAX_CLASSES][12];
    const char *names[MK_CLS_MAX_CLASSES];
    for (int c = 0; c < C; c++) {
        snprintf(idx[c], sizeof idx[c], "%d", c);
        names[c] = e->class_names && e->class_names[c] ? e->class_names[c] : idx[c];
    }

    mk_cls_work w;
    if ((st = mk_cls_work_init(ctx, e, &w)) != MK_OK)
        return st;
    mk_cls_out o = {cJSON_CreateObject(), NULL, 0};
    char *csv = NULL, *json = NULL;
    size_t csv_len = 0;
    mk_h5w *h5 = NULL;
    o.csv = open_memstream(&csv, &csv_len);
    if (!o.root || !o.csv) {
        st = mk_err(ctx, MK_ERR_NOMEM, "classification report: out of memory");
        goto done;
    }
    if ((st = mk_h5w_open(ctx, ph, &h5)) != MK_OK)
        goto done;

    /* file-wide parts */
    cJSON *classes = cJSON_CreateArray();
    for (int c = 0; classes && c < C; c++)
        mk_cls_add(&o, classes, NULL, cJSON_CreateString(names[c]));
    mk_cls_add(&o, o.root, "classes", classes);
    cJSON *models = cJSON_CreateArray();
    mk_cls_add(&o, o.root, "models", models);
    fputs("model,scope,scope_id,n,accuracy,balanced_accuracy,auc", o.csv);
    for (int c = 0; c < C; c++) {
        const char *what[3] = {"precision", "recall", "f1"};
        for (int k = 0; k < 3; k++) {
            char col[600];
            snprintf(col, sizeof col, "%s_%s", what[k], names[c]);
            fputc(',', o.csv);
            mk_cls_cfield(o.csv, col);
        }
    }
    fputc('\n', o.csv);
    mk_h5w_strings(h5, "/classes", C, names);
    mk_h5w_strings(h5, "/slides", e->nslides, e->slide_ids);
    if (e->slide_group)
        mk_h5w_strings(h5, "/slide_group", e->nslides, e->slide_group);

    for (int j = 0; j < e->nmodels && !o.nomem; j++)
        if ((st = mk_cls_model(ctx, e, j, &w, &o, models, h5)) != MK_OK)
            goto done;
    int bad = ferror(o.csv);
    bad |= fclose(o.csv) != 0;
    o.csv = NULL;
    if (o.nomem || bad || !(json = cJSON_Print(o.root))) {
        st = mk_err(ctx, MK_ERR_NOMEM, "classification report: out of memory while formatting");
        goto done;
    }
    /* cJSON_Print leaves no final newline: the buffer is written, then one byte more */
    size_t jl = strlen(json);
    char *jn = realloc(json, jl + 2);
    if (!jn) {
        st = mk_err(ctx, MK_ERR_NOMEM, "classification report: out of memory");
        goto done;
    }
    json = jn;
    json[jl] = '\n';
    json[jl + 1] = '\0';
    if ((st = mk_fs_write_atomic(ctx, pj, json, jl + 1)) != MK_OK)
        goto done;
    if ((st = mk_fs_write_atomic(ctx, pc, csv, csv_len)) != MK_OK)
        goto done;
    st = mk_h5w_commit(h5);
    h5 = NULL;
done:
    if (o.csv)
        fclose(o.csv);
    mk_h5w_abort(h5);
    cJSON_Delete(o.root);
    free(json);
    free(csv);
    mk_cls_work_free(&w);
    return st;
}

/* ---- heat map ---------------------------------------------------------------------------- */

/* 0 blue .. 0.5 yellow .. 1 red, piecewise linear in RGB (the colour bar's three stops). */
static void mk_cls_colour(double p, double rgb[3])
{
    if (p < 0.5) {
        rgb[0] = rgb[1] = 2 * p;
        rgb[2] = 1 - 2 * p;
    } else {
        rgb[0] = 1;
        rgb[1] = 2 * (1 - p);
        rgb[2] = 0;
    }
}

cairo_status_t mk__png_buf_write(void *closure, const unsigned char *data, unsigned int length)
{
    mk__png_buf *b = closure;
    if (b->n + length > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + length)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->nomem = 1;
            return CAIRO_STATUS_WRITE_ERROR;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, length);
    b->n += length;
    return CAIRO_STATUS_SUCCESS;
}

/* s as valid UTF-8 for cairo's toy text: control characters become spaces, bytes that do not
 * form a valid sequence become '?'. */
static void mk_cls_text(const char *s, char *out, size_t n)
{
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (*u && k + 5 < n) {
        int len = *u < 0x80             ? 1
                  : (*u & 0xe0) == 0xc0 ? 2
                  : (*u & 0xf0) == 0xe0 ? 3
                  : (*u & 0xf8) == 0xf0 ? 4
                                        : 0;
        int ok = len > 0 && !(len == 2 && *u < 0xc2) && !(len == 4 && *u > 0xf4);
        for (int i = 1; ok && i < len; i++)
            ok = (u[i] & 0xc0) == 0x80;
        if (ok && len == 3)
            ok = !(*u == 0xe0 && u[1] < 0xa0) && !(*u == 0xed && u[1] >= 0xa0);
        if (ok && len == 4)
            ok = !(*u == 0xf0 && u[1] < 0x90) && !(*u == 0xf4 && u[1] >= 0x90);
        if (!ok) {
            out[k++] = '?';
            u++;
        } else if (len == 1) {
            out[k++] = *u < 0x20 || *u == 0x7f ? ' ' : (char)*u;
            u++;
        } else {
            for (int i = 0; i < len; i++)
                out[k++] = (char)*u++;
        }
    }
    out[k] = '\0';
}

static mk_status mk_cls_cairo_err(mk_ctx *ctx, const char *path, const char *what, cairo_status_t s)
{
    return mk_err(ctx, s == CAIRO_STATUS_NO_MEMORY ? MK_ERR_NOMEM : MK_ERR_IO,
                  "%s: heat map: cairo: %s: %s", path, what, cairo_status_to_string(s));
}

static void mk_cls_draw_bar(cairo_t *cr, int W, int y0)
{
    const double x0 = 12, x1 = W - 12, bh = 10;
    cairo_pattern_t *g = cairo_pattern_create_linear(x0, 0, x1, 0);
    cairo_pattern_add_color_stop_rgb(g, 0, 0, 0, 1);
    cairo_pattern_add_color_stop_rgb(g, 0.5, 1, 1, 0);
    cairo_pattern_add_color_stop_rgb(g, 1, 1, 0, 0);
    cairo_rectangle(cr, x0, y0 + 4, x1 - x0, bh);
    cairo_set_source(cr, g);
    cairo_fill(cr);
    cairo_pattern_destroy(g);
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    cairo_set_line_width(cr, 1);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 10);
    const char *lab[3] = {"0", "0.5", "1"};
    for (int k = 0; k < 3; k++) {
        const double x = floor(x0 + (x1 - x0) * 0.5 * k) + 0.5;
        cairo_move_to(cr, x, y0 + 4 + bh);
        cairo_line_to(cr, x, y0 + 4 + bh + 3);
        cairo_stroke(cr);
        cairo_text_extents_t te;
        cairo_text_extents(cr, lab[k], &te);
        double tx = x - te.x_advance / 2;
        if (tx < 1)
            tx = 1;
        if (tx + te.x_advance > W - 1)
            tx = W - 1 - te.x_advance;
        cairo_move_to(cr, tx, y0 + 4 + bh + 14);
        cairo_show_text(cr, lab[k]);
    }
}

mk_status mk_cls_heatmap_png(mk_ctx *ctx, const char *path, const uint8_t *thumb, int tw, int th,
                             double thumb_scale, int64_t n, const int64_t *xy, int64_t patch0,
                             const float *prob, const char *title)
{
    const char *p = path ? path : "(null)";
    if (!path || !thumb)
        return mk_err(ctx, MK_ERR_INVALID, "%s: heat map: NULL path or thumbnail", p);
    if (tw < 1 || th < 1 || tw > MK_CLS_MAX_SIDE ||
        th > MK_CLS_MAX_SIDE - MK_CLS_HEATMAP_TITLE_H - MK_CLS_HEATMAP_BAR_H)
        return mk_err(
            ctx, MK_ERR_INVALID, "%s: heat map: thumbnail %d x %d is outside 1..%d x 1..%d", p, tw,
            th, MK_CLS_MAX_SIDE, MK_CLS_MAX_SIDE - MK_CLS_HEATMAP_TITLE_H - MK_CLS_HEATMAP_BAR_H);
    if (!isfinite(thumb_scale) || thumb_scale <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: heat map: thumb_scale %g is not a positive number",
                      p, thumb_scale);
    if (n < 0 || patch0 < 1 || (n > 0 && (!xy || !prob)))
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: heat map: %lld patches of side %lld (%s coordinates, %s "
                      "probabilities)",
                      p, (long long)n, (long long)patch0, xy ? "with" : "no", prob ? "with" : "no");

    const int W = tw > MK_CLS_HEATMAP_MIN_W ? tw : MK_CLS_HEATMAP_MIN_W;
    const int H = MK_CLS_HEATMAP_TITLE_H + th + MK_CLS_HEATMAP_BAR_H;
    const int y0 = MK_CLS_HEATMAP_TITLE_H;
    mk_status st = MK_OK;
    mk__png_buf buf = {NULL, 0, 0, 0};
    cairo_t *cr = NULL;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_status_t cs = cairo_surface_status(surf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = mk_cls_cairo_err(ctx, path, "surface", cs);
        goto done;
    }
    cr = cairo_create(surf);
    if ((cs = cairo_status(cr)) != CAIRO_STATUS_SUCCESS) {
        st = mk_cls_cairo_err(ctx, path, "context", cs);
        goto done;
    }
    cairo_set_source_rgb(cr, 0.09, 0.09, 0.1);
    cairo_paint(cr);

    /* the thumbnail, pixel for pixel */
    cairo_surface_flush(surf);
    unsigned char *data = cairo_image_surface_get_data(surf);
    const int stride = cairo_image_surface_get_stride(surf);
    for (int y = 0; y < th; y++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)(y0 + y) * (size_t)stride);
        const uint8_t *src = thumb + (size_t)y * (size_t)tw * 3;
        for (int x = 0; x < tw; x++)
            row[x] = (uint32_t)src[3 * x] << 16 | (uint32_t)src[3 * x + 1] << 8 | src[3 * x + 2];
    }
    cairo_surface_mark_dirty(surf);

    /* the patches: opaque into a group, painted once at alpha 0.45, inside the thumbnail */
    cairo_save(cr);
    cairo_rectangle(cr, 0, y0, tw, th);
    cairo_clip(cr);
    cairo_push_group(cr);
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
    const double side = (double)patch0 / thumb_scale;
    for (int64_t i = 0; i < n; i++) {
        double v = prob[i], rgb[3];
        if (isnan(v))
            continue;
        /* the square cut to the thumbnail (far-off coordinates never reach cairo's fixed
         * point) */
        const double x = (double)xy[2 * i] / thumb_scale, y = (double)xy[2 * i + 1] / thumb_scale;
        const double xa = fmax(x, 0), ya = fmax(y, 0);
        const double xb = fmin(x + side, tw), yb = fmin(y + side, th);
        if (!(xb > xa && yb > ya))
            continue;
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        mk_cls_colour(v, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, xa, y0 + ya, xb - xa, yb - ya);
        cairo_fill(cr);
    }
    cairo_pop_group_to_source(cr);
    cairo_paint_with_alpha(cr, 0.45);
    cairo_restore(cr);

    /* title line and colour bar */
    if (title && *title) {
        char t[1024];
        mk_cls_text(title, t, sizeof t);
        cairo_save(cr);
        cairo_rectangle(cr, 0, 0, W, y0);
        cairo_clip(cr);
        cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
        cairo_set_font_size(cr, 12);
        cairo_set_source_rgb(cr, 0.95, 0.95, 0.95);
        cairo_move_to(cr, 4, y0 - 6);
        cairo_show_text(cr, t);
        cairo_restore(cr);
    }
    mk_cls_draw_bar(cr, W, y0 + th);
    if ((cs = cairo_status(cr)) != CAIRO_STATUS_SUCCESS) {
        st = mk_cls_cairo_err(ctx, path, "drawing", cs);
        goto done;
    }
    cairo_surface_flush(surf);
    cs = cairo_surface_write_to_png_stream(surf, mk__png_buf_write, &buf);
    if (buf.nomem) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: heat map: out of memory for the PNG", path);
        goto done;
    }
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = mk_cls_cairo_err(ctx, path, "PNG encoding", cs);
        goto done;
    }
    st = mk_fs_write_atomic(ctx, path, buf.p, buf.n);
done:
    if (cr)
        cairo_destroy(cr);
    cairo_surface_destroy(surf);
    free(buf.p);
    return st;
}
