/* Histology stages' shared part (see mk_histo_stage.h). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "core/mk_log.h"
#include "io/mk_manifest.h"
#include "mk_histo_stage.h"
#include "models/mk_unet.h"
#include "report/mk_cls_report.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define P mk_histo_params

static const mk_param_row ROWS[] = {
    MK_P_STR(P, modality, "modality", "SM", "manifest modality of the slides"),
    MK_P_STR(P, train_domain, "train_domain", "siteA",
             "manifest domain (site) the classifiers learn from; \"\": every domain"),
    MK_P_INT(P, level, "level", "0", 0, 32, "pyramid level the patches are cut at"),
    MK_P_INT(P, patch, "patch", "32", 8, 1024, "patch side in pixels of that level"),
    MK_P_INT(P, stride, "stride", "0", 0, 1024, "grid step in level pixels (0: the patch side)"),
    MK_P_DOUBLE(P, min_tissue, "min_tissue", "0.5", 0, 1,
                "patches with at least this tissue fraction are kept"),
    MK_P_INT(P, mask_level, "mask_level", "-1", -1, 32,
             "level of the tissue mask (-1: the smallest level of at least 512 px)"),
    MK_P_INT(P, mask_median, "mask_median", "7", 0, 101,
             "median-blur kernel of the tissue mask (odd; 0: none)"),
    MK_P_INT(P, mask_threshold, "mask_threshold", "-1", -1, 255,
             "saturation threshold of the tissue mask (-1: Otsu)"),
    MK_P_INT(P, label_positive, "label_positive", "2", 0, 255,
             "value of the label mask that makes a patch positive (the phantoms' tumour: 2)"),
    MK_P_DOUBLE(P, label_centre, "label_centre", "0.5", 1e-3, 1,
                "side fraction of the central region the label rule looks at (PatchCamelyon)"),
    MK_P_DOUBLE(P, label_min_frac, "label_min_frac", "0", 0, 0.999,
                "a patch is positive when more than this share of its centre region is positive"),
    MK_P_INT(P, labelled_per_class, "labelled_per_class", "16", 0, 1000000,
             "labelled training patches of each class (0: every labelled patch)"),
    MK_P_CHOICE(P, norm, "norm", "none", "none|standardize|reinhard",
                "colour normalisation of every patch"),
    MK_P_DOUBLES(P, reinhard_mean, 3, "reinhard_mean", "[65.0, 25.0, -15.0]", -200, 200,
                 "norm = \"reinhard\": target mean of L*, a*, b*"),
    MK_P_DOUBLES(P, reinhard_std, 3, "reinhard_std", "[15.0, 10.0, 8.0]", 1e-3, 200,
                 "norm = \"reinhard\": target standard deviation of L*, a*, b*"),
    MK_P_BOOL(P, augment, "augment", "true",
              "a random rotation by 90 degrees / flip of every training patch"),
    MK_P_INT(P, batch, "batch", "32", 1, 4096, "training batch"),
    MK_P_INT(P, iterations, "iterations", "300", 0, 1e9, "iterations of a classifier"),
    MK_P_INT(P, width, "width", "16", 1, 1024, "channels of the classifier's first level"),
    MK_P_INT(P, depth, "depth", "3", 1, 6, "levels of the classifier"),
    MK_P_FLOAT(P, lr, "lr", "0.002", 1e-8, 10, "Adam learning rate of the classifiers"),
    MK_P_FLOAT(P, dropout, "dropout", "0", 0, 0.99, "dropout before the classifier's head"),
    MK_P_NAMES(P, class_names, "class_names", "[\"non-tumour\", \"tumour\"]",
               "names of class 0 and class 1"),
    MK_P_BOOL(P, heatmaps, "heatmaps", "true",
              "evaluate: a probability heat map over each slide's thumbnail"),
    MK_P_INT(P, eval_max_patches, "eval_max_patches", "0", 0, 1e9,
             "evaluate: at most this many patches a slide (seeded choice; 0: all)"),
};
const mk_param_section mk_histo_section = {
    "histo",
    "histology patches: slides, tissue mask, patch grid, labels and the classifiers' training",
    ROWS, N(ROWS)};

mk_status mk_histo_params_check(mk_ctx *ctx, const mk_histo_params *p)
{
    if (p->patch % (1 << (p->depth - 1)) != 0)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "histo.patch: expected a multiple of 2^(depth - 1) = %d, got %d",
                      1 << (p->depth - 1), p->patch);
    if (p->mask_median > 1 && p->mask_median % 2 == 0)
        return mk_err(ctx, MK_ERR_CONFIG, "histo.mask_median: expected an odd kernel, got %d",
                      p->mask_median);
    if (p->class_names.n != MK_HISTO_CLASSES)
        return mk_err(ctx, MK_ERR_CONFIG, "histo.class_names: expected %d names, got %d",
                      MK_HISTO_CLASSES, p->class_names.n);
    return MK_OK;
}

/* ---------------------------------------------------------------- patch sets */

void mk_histo_set_free(mk_histo_set *s)
{
    if (!s)
        return;
    free(s->x);
    free(s->y);
    free(s->slide);
    free(s->xy);
    for (int i = 0; i < s->nslides; i++) {
        free(s->slide_id[i]);
        free(s->slide_path[i]);
        free(s->slide_domain[i]);
    }
    free(s->slide_id);
    free(s->slide_path);
    free(s->slide_domain);
    memset(s, 0, sizeof *s);
}

static char *dup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s ? s : "", n);
    return d;
}

static void grid_opts(const mk_histo_params *p, mk_histo_grid_opts *go)
{
    mk_histo_grid_defaults(go);
    go->level = p->level;
    go->size = p->patch;
    go->stride = p->stride;
    go->min_tissue = p->min_tissue;
    go->mask.level = p->mask_level;
    go->mask.median = p->mask_median;
    go->mask.threshold = p->mask_threshold;
}

static void read_opts(const mk_histo_params *p, mk_histo_read_opts *ro)
{
    mk_histo_read_defaults(ro);
    ro->norm = (mk_histo_norm)p->norm;
    for (int a = 0; a < 3; a++) {
        ro->target_mean[a] = p->reinhard_mean[a];
        ro->target_std[a] = p->reinhard_std[a];
    }
}

/* A candidate patch before its pixels are read. */
typedef struct cand {
    int slide;
    int64_t gi; /* index in that slide's grid */
    int32_t y;
} cand;

typedef struct slide_grid {
    mk_histo_grid g;
    int row;
} slide_grid;

mk_status mk_histo_set_load(mk_ctx *ctx, const mk_data_params *d, const mk_histo_params *p,
                            const char *split, const char *domain, int per_class, int labelled,
                            int64_t max_per_slide, uint64_t seed, int tolerate, mk_histo_set *out,
                            int *failed)
{
    memset(out, 0, sizeof *out);
    if (failed)
        *failed = 0;
    mk_manifest *m = NULL;
    mk_status st = mk_manifest_read(ctx, d->manifest, &m);
    if (st != MK_OK)
        return st;
    slide_grid *sg = calloc((size_t)m->nrows + 1, sizeof *sg);
    cand *cs = NULL;
    int64_t ncs = 0, cap = 0;
    int ns = 0;
    mk_rng r;
    mk_rng_seed(&r, seed);
    mk_histo_grid_opts go;
    grid_opts(p, &go);
    mk_histo_label_opts lo;
    mk_histo_label_defaults(&lo);
    lo.positive = p->label_positive;
    lo.centre = p->label_centre;
    lo.min_frac = p->label_min_frac;
    if (!sg) {
        st = mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory");
        goto fail;
    }
    for (int i = 0; i < m->nrows; i++) {
        const mk_manifest_row *row = &m->rows[i];
        if (strcmp(row->modality, p->modality) || strcmp(row->split, split) ||
            (domain && domain[0] && strcmp(row->domain, domain)))
            continue;
        if (labelled && !row->label_path)
            continue;
        mk_tiff_slide *s = NULL;
        slide_grid *G = &sg[ns];
        st = mk_tiff_open(ctx, row->image_path, &s);
        if (st == MK_OK)
            st = mk_histo_grid_build(ctx, s, &go, &G->g);
        mk_tiff_close(s);
        if (st == MK_OK && row->label_path)
            st = mk_histo_grid_label_mask(ctx, &G->g, row->label_path, &lo);
        if (st != MK_OK) {
            mk_err_prefix(ctx, "%s:%d: slide %s", m->source, row->line, row->id);
            mk_histo_grid_free(&G->g);
            if (!tolerate)
                goto fail;
            MK_LOG_W(ctx, "%s (skipped)", ctx->msg);
            if (failed)
                (*failed)++;
            mk_err_clear(ctx);
            st = MK_OK;
            continue;
        }
        G->row = i;
        int64_t keep0 = ncs;
        for (int64_t k = 0; k < G->g.n; k++) {
            int32_t y = G->g.label[k];
            if (labelled && y < 0)
                continue;
            if (ncs == cap) {
                cap = cap ? 2 * cap : 1024;
                cand *t = realloc(cs, (size_t)cap * sizeof *t);
                if (!t) {
                    st = mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory");
                    goto fail;
                }
                cs = t;
            }
            cs[ncs++] = (cand){ns, k, y};
        }
        if (max_per_slide > 0 && ncs - keep0 > max_per_slide) {
            /* seeded partial shuffle of this slide's candidates, keep the first max */
            for (int64_t k = 0; k < max_per_slide; k++) {
                int64_t j = k + (int64_t)mk_rng_below(&r, (uint64_t)(ncs - keep0 - k));
                cand t = cs[keep0 + k];
                cs[keep0 + k] = cs[keep0 + j];
                cs[keep0 + j] = t;
            }
            ncs = keep0 + max_per_slide;
        }
        ns++;
    }
    if (ns == 0) {
        st = mk_err(ctx, MK_ERR_CONFIG, "%s: no %sslide of modality %s in split %s%s%s%s",
                    m->source, labelled ? "labelled " : "", p->modality, split,
                    domain && domain[0] ? " of domain " : "", domain && domain[0] ? domain : "",
                    failed && *failed ? " that could be read" : "");
        goto fail;
    }
    /* per_class: a seeded choice of that many of each class */
    int64_t *pick = NULL, npick = 0;
    if (per_class > 0) {
        pick = malloc((size_t)(ncs > 0 ? ncs : 1) * sizeof *pick);
        int64_t *idx = malloc((size_t)(ncs > 0 ? ncs : 1) * sizeof *idx);
        if (!pick || !idx) {
            free(pick);
            free(idx);
            st = mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory");
            goto fail;
        }
        for (int c = 0; c < MK_HISTO_CLASSES; c++) {
            int64_t k = 0;
            for (int64_t i = 0; i < ncs; i++)
                if (cs[i].y == c)
                    idx[k++] = i;
            if (k == 0) {
                free(pick);
                free(idx);
                st = mk_err(ctx, MK_ERR_CONFIG,
                            "%s: no patch of class %d (%s) in the %s slides%s%s (histo.level %d, "
                            "histo.patch %d, histo.label_positive %d)",
                            m->source, c, p->class_names.v[c], split,
                            domain && domain[0] ? " of domain " : "", domain ? domain : "",
                            p->level, p->patch, p->label_positive);
                goto fail;
            }
            mk_rng_shuffle(&r, idx, k);
            int64_t take = k < per_class ? k : per_class;
            if (take < per_class)
                MK_LOG_W(ctx, "histo: only %lld patches of class %s (asked for %d)", (long long)k,
                         p->class_names.v[c], per_class);
            /* in grid order, so the set does not depend on the shuffle beyond its choice */
            for (int64_t i = 0; i < take; i++)
                pick[npick++] = idx[i];
        }
        free(idx);
    }
    int64_t n = per_class > 0 ? npick : ncs;
    int size = p->patch;
    int64_t plane = 3 * (int64_t)size * size;
    out->size = size;
    out->n = n;
    out->x = malloc((size_t)(n > 0 ? n : 1) * (size_t)plane * sizeof *out->x);
    out->y = malloc((size_t)(n > 0 ? n : 1) * sizeof *out->y);
    out->slide = malloc((size_t)(n > 0 ? n : 1) * sizeof *out->slide);
    out->xy = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *out->xy);
    out->slide_id = calloc((size_t)ns, sizeof(char *));
    out->slide_path = calloc((size_t)ns, sizeof(char *));
    out->slide_domain = calloc((size_t)ns, sizeof(char *));
    if (!out->x || !out->y || !out->slide || !out->xy || !out->slide_id || !out->slide_path ||
        !out->slide_domain) {
        free(pick);
        st = mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory (%lld patches)", (long long)n);
        goto fail;
    }
    out->nslides = ns;
    for (int i = 0; i < ns; i++) {
        const mk_manifest_row *row = &m->rows[sg[i].row];
        out->slide_id[i] = dup(row->id);
        out->slide_path[i] = dup(row->image_path);
        out->slide_domain[i] = dup(row->domain);
        if (!out->slide_id[i] || !out->slide_path[i] || !out->slide_domain[i]) {
            free(pick);
            st = mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory");
            goto fail;
        }
    }
    mk_histo_read_opts ro;
    read_opts(p, &ro);
    /* read slide by slide (one open slide at a time) */
    for (int sl = 0; sl < ns && st == MK_OK; sl++) {
        mk_tiff_slide *s = NULL;
        for (int64_t i = 0; i < n && st == MK_OK; i++) {
            const cand *c = &cs[pick ? pick[i] : i];
            if (c->slide != sl)
                continue;
            if (!s && (st = mk_tiff_open(ctx, out->slide_path[sl], &s)) != MK_OK)
                break;
            st = mk_histo_read_patch(ctx, s, &sg[sl].g, c->gi, &ro, out->x + i * plane);
            out->y[i] = c->y;
            out->slide[i] = sl;
            out->xy[2 * i] = sg[sl].g.xy[2 * c->gi];
            out->xy[2 * i + 1] = sg[sl].g.xy[2 * c->gi + 1];
        }
        mk_tiff_close(s);
        if (st != MK_OK)
            mk_err_prefix(ctx, "slide %s", out->slide_id[sl]);
    }
    free(pick);
    if (st != MK_OK)
        goto fail;
    for (int i = 0; i < ns; i++)
        mk_histo_grid_free(&sg[i].g);
    free(sg);
    free(cs);
    mk_manifest_free(m);
    return MK_OK;
fail:
    if (sg)
        for (int i = 0; i <= ns && i < m->nrows + 1; i++)
            mk_histo_grid_free(&sg[i].g);
    free(sg);
    free(cs);
    mk_manifest_free(m);
    mk_histo_set_free(out);
    return st;
}

mk_status mk_histo_set_append(mk_ctx *ctx, mk_histo_set *a, const float *x, const int32_t *y,
                              int64_t n)
{
    int64_t plane = 3 * (int64_t)a->size * a->size, tot = a->n + n;
    float *nx = realloc(a->x, (size_t)(tot > 0 ? tot : 1) * (size_t)plane * sizeof *nx);
    if (nx)
        a->x = nx;
    int32_t *ny = realloc(a->y, (size_t)(tot > 0 ? tot : 1) * sizeof *ny);
    if (ny)
        a->y = ny;
    int32_t *ns = realloc(a->slide, (size_t)(tot > 0 ? tot : 1) * sizeof *ns);
    if (ns)
        a->slide = ns;
    int64_t *nxy = realloc(a->xy, (size_t)(tot > 0 ? tot : 1) * 2 * sizeof *nxy);
    if (nxy)
        a->xy = nxy;
    if (!nx || !ny || !ns || !nxy)
        return mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory (%lld patches)", (long long)tot);
    memcpy(a->x + a->n * plane, x, (size_t)n * (size_t)plane * sizeof *x);
    memcpy(a->y + a->n, y, (size_t)n * sizeof *y);
    for (int64_t i = a->n; i < tot; i++) {
        a->slide[i] = -1; /* synthetic */
        a->xy[2 * i] = a->xy[2 * i + 1] = -1;
    }
    a->n = tot;
    return MK_OK;
}

void mk_histo_batch(const mk_histo_set *s, mk_rng *r, int batch, int augment, float *x, int32_t *y)
{
    int64_t plane = 3 * (int64_t)s->size * s->size;
    for (int b = 0; b < batch; b++) {
        int64_t i = (int64_t)mk_rng_below(r, (uint64_t)s->n);
        int d = augment ? (int)mk_rng_below(r, 8) : 0;
        if (d)
            mk_histo_dihedral(s->x + i * plane, x + b * plane, 3, s->size, d);
        else
            memcpy(x + b * plane, s->x + i * plane, (size_t)plane * sizeof *x);
        y[b] = s->y[i];
    }
}

/* ---------------------------------------------------------------- models */

mk_classifier_cfg mk_histo_classifier_cfg(const mk_histo_params *p, int width, int depth)
{
    mk_classifier_cfg c = mk_classifier_defaults();
    c.in_ch = 3;
    c.classes = MK_HISTO_CLASSES;
    c.base = width > 0 ? width : p->width;
    c.depth = depth > 0 ? depth : p->depth;
    c.dropout = p->dropout;
    return c;
}

static void free_classifier(void *c)
{
    mk_classifier_free(c);
}

int mk_histo_loop_classifier(mk_loop *L, const char *name, const mk_classifier_cfg *cfg,
                             uint64_t seed)
{
    mk_classifier *c = NULL;
    if (mk_classifier_new(mk_loop_ctx(L), cfg, seed, &c) != MK_OK)
        return -1;
    return mk_loop_add_model(L, name, c, mk_classifier_params(c), free_classifier);
}

static cJSON *nums(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* The histo parameters a classifier file records (the ones a reader of slides needs). */
static char *model_json(const mk_classifier_cfg *cc, const mk_histo_params *p, const char *method,
                        const char *role, const mk_stage_common *c)
{
    cJSON *js = cJSON_CreateObject();
    if (!js)
        return NULL;
    cJSON_AddStringToObject(js, "kind", "patch_classifier");
    cJSON_AddStringToObject(js, "method", method);
    cJSON_AddStringToObject(js, "role", role);
    cJSON_AddStringToObject(js, "version", c && c->version ? c->version : "unknown");
    cJSON_AddStringToObject(js, "config_hash", c && c->config_hash ? c->config_hash : "");
    cJSON_AddNumberToObject(js, "width", cc->base);
    cJSON_AddNumberToObject(js, "depth", cc->depth);
    cJSON_AddNumberToObject(js, "classes", cc->classes);
    cJSON_AddNumberToObject(js, "in_channels", cc->in_ch);
    cJSON_AddNumberToObject(js, "level", p->level);
    cJSON_AddNumberToObject(js, "patch", p->patch);
    cJSON_AddNumberToObject(js, "stride", p->stride);
    cJSON_AddNumberToObject(js, "min_tissue", p->min_tissue);
    cJSON_AddNumberToObject(js, "mask_level", p->mask_level);
    cJSON_AddNumberToObject(js, "mask_median", p->mask_median);
    cJSON_AddNumberToObject(js, "mask_threshold", p->mask_threshold);
    cJSON_AddStringToObject(js, "norm", mk_histo_norm_name((mk_histo_norm)p->norm));
    cJSON_AddItemToObject(js, "reinhard_mean", nums(p->reinhard_mean, 3));
    cJSON_AddItemToObject(js, "reinhard_std", nums(p->reinhard_std, 3));
    cJSON *names = cJSON_CreateArray();
    for (int i = 0; names && i < p->class_names.n; i++)
        cJSON_AddItemToArray(names, cJSON_CreateString(p->class_names.v[i]));
    cJSON_AddItemToObject(js, "class_names", names);
    char *text = cJSON_PrintUnformatted(js);
    cJSON_Delete(js);
    return text;
}

mk_status mk_histo_save_classifier(mk_loop *L, const mk_histo_params *p, const char *file, int net,
                                   const char *role)
{
    mk_ctx *ctx = mk_loop_ctx(L);
    if (!mk_loop_primary(L))
        return MK_OK; /* rank 0 writes the job's models */
    mk_classifier *cl = mk_loop_model(L, net);
    char *text = model_json(mk_classifier_config(cl), p, mk_loop_stage(L), role, mk_loop_common(L));
    if (!text)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", mk_loop_stage(L));
    char path[4200];
    mk_status st = mk__run_path(ctx, mk_loop_common(L)->run_dir, "models", file, path, sizeof path);
    if (st == MK_OK)
        st = mk_model_save_info(ctx, path, mk_classifier_params(cl), NULL, MK_HISTO_ATTR, text);
    free(text);
    return st;
}

int mk_histo_is_model(const char *path)
{
    mk_ctx quiet;
    mk_ctx_init(&quiet);
    char *text = NULL;
    int yes = mk_model_read_info(&quiet, path, MK_HISTO_ATTR, &text) == MK_OK;
    free(text);
    return yes;
}

static int jint(const cJSON *js, const char *k, int *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(js, k);
    if (!cJSON_IsNumber(x))
        return 0;
    *v = (int)x->valuedouble;
    return 1;
}

mk_status mk_histo_model_load(mk_ctx *ctx, const char *path, mk_histo_model *out)
{
    memset(out, 0, sizeof *out);
    mk_status st = mk_model_read_info(ctx, path, MK_HISTO_ATTR, &out->json);
    if (st != MK_OK)
        return st;
    cJSON *js = cJSON_Parse(out->json);
    if (!js) {
        mk_histo_model_free(out);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute %s: not JSON", path, MK_HISTO_ATTR);
    }
    mk_histo_params *p = &out->p;
    mk_param_defaults(ROWS, N(ROWS), p);
    int width = 0, depth = 0, classes = 0, in_ch = 0, ok = 1;
    ok &= jint(js, "width", &width) && jint(js, "depth", &depth) && jint(js, "classes", &classes) &&
          jint(js, "in_channels", &in_ch) && jint(js, "level", &p->level) &&
          jint(js, "patch", &p->patch);
    jint(js, "stride", &p->stride);
    jint(js, "mask_level", &p->mask_level);
    jint(js, "mask_median", &p->mask_median);
    jint(js, "mask_threshold", &p->mask_threshold);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(js, "min_tissue");
    if (cJSON_IsNumber(x))
        p->min_tissue = x->valuedouble;
    x = cJSON_GetObjectItemCaseSensitive(js, "norm");
    if (cJSON_IsString(x)) {
        int nm = mk_histo_norm_parse(x->valuestring);
        ok &= nm >= 0;
        p->norm = nm;
    }
    for (int a = 0; a < 3; a++) {
        const cJSON *m =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(js, "reinhard_mean"), a);
        const cJSON *s =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(js, "reinhard_std"), a);
        if (cJSON_IsNumber(m))
            p->reinhard_mean[a] = m->valuedouble;
        if (cJSON_IsNumber(s))
            p->reinhard_std[a] = s->valuedouble;
    }
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(js, "class_names");
    if (cJSON_IsArray(names) && cJSON_GetArraySize(names) <= MK_NAMES_MAX) {
        p->class_names.n = cJSON_GetArraySize(names);
        for (int i = 0; i < p->class_names.n; i++) {
            const cJSON *nm = cJSON_GetArrayItem(names, i);
            snprintf(p->class_names.v[i], MK_NAME_LEN, "%s",
                     cJSON_IsString(nm) ? nm->valuestring : "?");
        }
    }
    x = cJSON_GetObjectItemCaseSensitive(js, "method");
    snprintf(out->method, sizeof out->method, "%s", cJSON_IsString(x) ? x->valuestring : "");
    cJSON_Delete(js);
    if (!ok || classes != MK_HISTO_CLASSES || p->class_names.n != classes || p->patch < 8) {
        mk_histo_model_free(out);
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: attribute %s: expected width, depth, classes (%d), in_channels, level, "
                      "patch, norm and %d class names",
                      path, MK_HISTO_ATTR, MK_HISTO_CLASSES, MK_HISTO_CLASSES);
    }
    mk_classifier_cfg cc = mk_classifier_defaults();
    cc.base = width;
    cc.depth = depth;
    cc.classes = classes;
    cc.in_ch = in_ch;
    if ((st = mk_classifier_new(ctx, &cc, 0, &out->net)) != MK_OK ||
        (st = mk_model_load(ctx, path, "params", mk_classifier_params(out->net), NULL)) != MK_OK) {
        mk_histo_model_free(out);
        return st;
    }
    return MK_OK;
}

void mk_histo_model_free(mk_histo_model *m)
{
    if (!m)
        return;
    mk_classifier_free(m->net);
    free(m->json);
    memset(m, 0, sizeof *m);
}

mk_status mk_histo_predict(mk_ctx *ctx, mk_classifier *net, const mk_histo_set *s, int threads,
                           float *prob)
{
    const int B = 64;
    int C = mk_classifier_config(net)->classes;
    int64_t plane = 3 * (int64_t)s->size * s->size;
    mk_nn_graph *g = mk_nn_graph_new(threads > 0 ? threads : 1, 0);
    if (!g)
        return mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory (graph)");
    mk_nn_graph_set_cancel(g, &ctx->cancel);
    mk_nn_graph_set_no_grad(g, 1);
    mk_status st = MK_OK;
    for (int64_t i0 = 0; i0 < s->n && st == MK_OK; i0 += B) {
        int64_t nb = s->n - i0 < B ? s->n - i0 : B;
        mk_tensor x;
        memset(&x, 0, sizeof x);
        mk_tensor_set_shape(&x, 4, (int64_t[4]){nb, 3, s->size, s->size});
        x.data = s->x + i0 * plane; /* borrowed: mk_nn_input copies it */
        mk_nn_graph_begin(g, 0);
        mk_var *lg = mk_classifier_forward(net, g, mk_nn_input(g, &x, 0), NULL);
        mk_var *pr = mk_nn_softmax(g, lg);
        if (!pr || mk_nn_graph_oom(g)) {
            st = mk_nn_graph_cancelled(g)
                     ? mk_err(ctx, MK_ERR_ABORTED, "histo: interrupted")
                     : mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory in the forward pass");
            break;
        }
        for (int64_t b = 0; b < nb; b++)
            for (int c = 0; c < C; c++)
                prob[(i0 + b) * C + c] = pr->t.data[b * C + c];
    }
    mk_nn_graph_free(g);
    return st;
}

/* ---------------------------------------------------------------- evaluation and inference */

/* The largest level whose larger side is <= 1024 (level 0 when none): the heat map's canvas. */
static mk_status thumbnail(mk_ctx *ctx, mk_tiff_slide *s, mk_image **img, double *scale)
{
    int L = mk_tiff_level_count(s), best = 0;
    mk_tiff_level lv;
    for (int l = 0; l < L; l++) {
        if (mk_tiff_level_info(ctx, s, l, &lv) != MK_OK)
            return ctx->status;
        if ((lv.width > lv.height ? lv.width : lv.height) <= 1024) {
            best = l;
            break;
        }
        best = l;
    }
    mk_status st = mk_tiff_level_info(ctx, s, best, &lv);
    if (st == MK_OK)
        st = mk_tiff_read_level(ctx, s, best, (int64_t)1 << 24, img);
    *scale = lv.downsample;
    return st;
}

/* Heat map of the patches of slide `sl` of set s with probabilities prob (class 1). */
static mk_status heatmap(mk_ctx *ctx, const char *path, const mk_histo_set *s, int sl,
                         const mk_histo_params *hp, const float *prob, int C, const char *title)
{
    mk_tiff_slide *t = NULL;
    mk_image *img = NULL;
    double scale = 1;
    mk_tiff_level lv;
    mk_status st = mk_tiff_open(ctx, s->slide_path[sl], &t);
    if (st == MK_OK)
        st = mk_tiff_level_info(ctx, t, hp->level, &lv);
    if (st == MK_OK)
        st = thumbnail(ctx, t, &img, &scale);
    mk_tiff_close(t);
    int64_t n = 0;
    for (int64_t i = 0; i < s->n; i++)
        n += s->slide[i] == sl;
    int64_t *xy = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *xy);
    float *pr = malloc((size_t)(n > 0 ? n : 1) * sizeof *pr);
    if (st == MK_OK && (!xy || !pr))
        st = mk_err(ctx, MK_ERR_NOMEM, "histo: out of memory (heat map)");
    if (st == MK_OK) {
        int64_t k = 0;
        for (int64_t i = 0; i < s->n; i++)
            if (s->slide[i] == sl) {
                xy[2 * k] = s->xy[2 * i];
                xy[2 * k + 1] = s->xy[2 * i + 1];
                pr[k++] = prob[i * C + 1];
            }
        st = mk_cls_heatmap_png(ctx, path, img->data, (int)img->dim[0], (int)img->dim[1], scale, n,
                                xy, (int64_t)llround(hp->patch * lv.downsample), pr, title);
    }
    free(xy);
    free(pr);
    mk_image_free(img);
    return st;
}

/* The run's [histo] with the reading parameters of the model file. */
static mk_histo_params model_params(const mk_histo_params *run, const mk_histo_model *m)
{
    mk_histo_params hp = *run;
    hp.level = m->p.level;
    hp.patch = m->p.patch;
    hp.stride = m->p.stride;
    hp.min_tissue = m->p.min_tissue;
    hp.mask_level = m->p.mask_level;
    hp.mask_median = m->p.mask_median;
    hp.mask_threshold = m->p.mask_threshold;
    hp.norm = m->p.norm;
    memcpy(hp.reinhard_mean, m->p.reinhard_mean, sizeof hp.reinhard_mean);
    memcpy(hp.reinhard_std, m->p.reinhard_std, sizeof hp.reinhard_std);
    hp.class_names = m->p.class_names;
    return hp;
}

#define MAX_EVAL 16
#define MAX_SLIDES 4096

mk_status mk_histo_evaluate(mk_ctx *ctx, const mk_stage_common *c, const mk_histo_params *p,
                            const char *split, const mk_histo_eval_model *models, int n, int html,
                            const char *version)
{
    if (n > MAX_EVAL)
        return mk_err(ctx, MK_ERR_INVALID, "evaluate: at most %d classifiers", MAX_EVAL);
    char dir[4200], path[4400];
    mk_status st = mk__run_path(ctx, c->run_dir, "reports", "", dir, sizeof dir);
    if (st != MK_OK)
        return st;
    snprintf(dir, sizeof dir, "%s/reports", c->run_dir);
    mk_histo_set sets[MAX_EVAL];
    float *probs[MAX_EVAL] = {0};
    int32_t *truth[MAX_EVAL] = {0}, *sidx[MAX_EVAL] = {0};
    mk_cls_eval_model em[MAX_EVAL];
    memset(sets, 0, sizeof sets);
    const char *ids[MAX_SLIDES], *groups[MAX_SLIDES];
    int nsl = 0, nm = 0;
    for (int j = 0; j < n && st == MK_OK; j++) {
        mk_histo_model m;
        if ((st = mk_histo_model_load(ctx, models[j].path, &m)) != MK_OK)
            break;
        mk_histo_params hp = model_params(p, &m);
        int failed = 0;
        st = mk_histo_set_load(ctx, &c->data, &hp, split, NULL, 0, 0, p->eval_max_patches,
                               mk__seed(c->seed, 700), 1, &sets[j], &failed);
        if (st == MK_OK && failed)
            MK_LOG_W(ctx, "evaluate %s: %d slide(s) could not be read (see above)", models[j].name,
                     failed);
        int64_t N = sets[j].n;
        if (st == MK_OK &&
            !(probs[j] = malloc((size_t)(N > 0 ? N : 1) * MK_HISTO_CLASSES * sizeof(float))))
            st = mk_err(ctx, MK_ERR_NOMEM, "evaluate: out of memory");
        if (st == MK_OK)
            st = mk_histo_predict(ctx, m.net, &sets[j], c->threads, probs[j]);
        /* the labelled patches enter the metrics; slides mapped onto one list by id */
        truth[j] = malloc((size_t)(N > 0 ? N : 1) * sizeof(int32_t));
        sidx[j] = malloc((size_t)(N > 0 ? N : 1) * sizeof(int32_t));
        float *pl = malloc((size_t)(N > 0 ? N : 1) * MK_HISTO_CLASSES * sizeof(float));
        if (st == MK_OK && (!truth[j] || !sidx[j] || !pl))
            st = mk_err(ctx, MK_ERR_NOMEM, "evaluate: out of memory");
        int64_t k = 0;
        for (int64_t i = 0; st == MK_OK && i < N; i++) {
            if (sets[j].y[i] < 0)
                continue;
            const char *id = sets[j].slide_id[sets[j].slide[i]];
            int q = 0;
            while (q < nsl && strcmp(ids[q], id))
                q++;
            if (q == nsl) {
                if (nsl == MAX_SLIDES) {
                    st = mk_err(ctx, MK_ERR_INVALID, "evaluate: more than %d slides", MAX_SLIDES);
                    break;
                }
                ids[nsl] = id;
                groups[nsl++] = sets[j].slide_domain[sets[j].slide[i]];
            }
            truth[j][k] = sets[j].y[i];
            sidx[j][k] = q;
            memcpy(pl + k * MK_HISTO_CLASSES, probs[j] + i * MK_HISTO_CLASSES,
                   MK_HISTO_CLASSES * sizeof(float));
            k++;
        }
        if (st == MK_OK) {
            em[nm++] = (mk_cls_eval_model){models[j].name, k, truth[j], pl, sidx[j]};
            MK_LOG_I(ctx, "evaluate %s: %lld patches of %d slides (%lld labelled)", models[j].name,
                     (long long)N, sets[j].nslides, (long long)k);
        } else {
            free(pl);
        }
        /* heat maps of every slide (labelled or not) */
        for (int sl = 0; st == MK_OK && p->heatmaps && sl < sets[j].nslides; sl++) {
            char sub[4400];
            snprintf(sub, sizeof sub, "%.4000s/heatmaps/%.200s", dir, models[j].name);
            if ((st = mk_fs_mkdirs(ctx, sub)) != MK_OK)
                break;
            snprintf(path, sizeof path, "%.4200s/%.190s.png", sub, sets[j].slide_id[sl]);
            char title[256];
            snprintf(title, sizeof title, "%s: P(%s) on %s", models[j].name, hp.class_names.v[1],
                     sets[j].slide_id[sl]);
            st = heatmap(ctx, path, &sets[j], sl, &hp, probs[j], MK_HISTO_CLASSES, title);
        }
        mk_histo_model_free(&m);
    }
    if (st == MK_OK) {
        const char *names[MK_HISTO_CLASSES] = {p->class_names.v[0], p->class_names.v[1]};
        mk_cls_eval e = {MK_HISTO_CLASSES, names, nsl, ids, groups, nm, em};
        st = mk_cls_report_write(ctx, dir, &e);
        for (int j = 0; st == MK_OK && j < nm; j++) {
            mk_cls_metrics cm;
            if (mk_cls_metrics_compute(ctx, MK_HISTO_CLASSES, em[j].n, em[j].truth, em[j].prob,
                                       &cm) == MK_OK) {
                MK_LOG_I(ctx,
                         "evaluate %s: %lld patches: accuracy %.4f, balanced accuracy %.4f, "
                         "AUC %.4f",
                         em[j].name, (long long)em[j].n, cm.accuracy, cm.balanced_accuracy, cm.auc);
                mk_cls_metrics_free(&cm);
            }
        }
        if (st == MK_OK)
            MK_LOG_I(ctx, "evaluate: %s/classification.json, .csv, .h5%s", dir,
                     p->heatmaps ? " and heatmaps/" : "");
        if (st == MK_OK && html) {
            const char *files[MAX_EVAL];
            for (int j = 0; j < nm; j++)
                files[j] = models[j].path;
            char hdir[4400];
            snprintf(hdir, sizeof hdir, "%.4200s/heatmaps", dir);
            mk_cls_html_opts ho;
            mk_cls_html_opts_default(&ho);
            ho.version = version;
            ho.source = c->run_dir;
            ho.split = split;
            ho.model_files = files;
            ho.heatmap_dir = p->heatmaps ? hdir : NULL;
            ho.heatmap_href = p->heatmaps ? "heatmaps" : NULL;
            snprintf(path, sizeof path, "%.4200s/classification.html", dir);
            st = mk_cls_report_html(ctx, &e, &ho, path);
            if (st == MK_OK)
                MK_LOG_I(ctx, "report: %s", path);
        }
    }
    for (int j = 0; j < nm; j++)
        free((void *)em[j].prob);
    for (int j = 0; j < n; j++) {
        free(probs[j]);
        free(truth[j]);
        free(sidx[j]);
        mk_histo_set_free(&sets[j]);
    }
    return st;
}

/* One slide's grid (no labels) read into a set. */
static mk_status slide_set(mk_ctx *ctx, const char *path, const mk_histo_params *hp,
                           mk_histo_set *out, mk_histo_grid *g)
{
    memset(out, 0, sizeof *out);
    mk_tiff_slide *s = NULL;
    mk_histo_grid_opts go;
    grid_opts(hp, &go);
    mk_histo_read_opts ro;
    read_opts(hp, &ro);
    mk_status st = mk_tiff_open(ctx, path, &s);
    if (st == MK_OK)
        st = mk_histo_grid_build(ctx, s, &go, g);
    int64_t plane = 3 * (int64_t)hp->patch * hp->patch, n = st == MK_OK ? g->n : 0;
    if (st == MK_OK) {
        out->size = hp->patch;
        out->n = n;
        out->nslides = 1;
        out->x = malloc((size_t)(n > 0 ? n : 1) * (size_t)plane * sizeof(float));
        out->y = calloc((size_t)(n > 0 ? n : 1), sizeof(int32_t));
        out->slide = calloc((size_t)(n > 0 ? n : 1), sizeof(int32_t));
        out->xy = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof(int64_t));
        out->slide_id = calloc(1, sizeof(char *));
        out->slide_path = calloc(1, sizeof(char *));
        out->slide_domain = calloc(1, sizeof(char *));
        if (!out->x || !out->y || !out->slide || !out->xy || !out->slide_id || !out->slide_path ||
            !out->slide_domain || !(out->slide_path[0] = dup(path)) ||
            !(out->slide_id[0] = dup(path)) || !(out->slide_domain[0] = dup("")))
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (%lld patches)", path, (long long)n);
    }
    for (int64_t i = 0; st == MK_OK && i < n; i++) {
        st = mk_histo_read_patch(ctx, s, g, i, &ro, out->x + i * plane);
        out->xy[2 * i] = g->xy[2 * i];
        out->xy[2 * i + 1] = g->xy[2 * i + 1];
        out->y[i] = -1;
    }
    mk_tiff_close(s);
    if (st != MK_OK) {
        mk_histo_set_free(out);
        mk_histo_grid_free(g);
    }
    return st;
}

typedef struct csv_arg {
    const mk_histo_grid *g;
    const float *prob;
    const mk_histo_params *hp;
} csv_arg;

static void print_csv(FILE *f, const void *argp)
{
    const csv_arg *a = argp;
    fprintf(f, "x,y,level,size,downsample,tissue");
    for (int c = 0; c < MK_HISTO_CLASSES; c++)
        fprintf(f, ",p_%s", a->hp->class_names.v[c]);
    fprintf(f, "\n");
    for (int64_t i = 0; i < a->g->n; i++) {
        fprintf(f, "%lld,%lld,%d,%d,%.17g,%.6g", (long long)a->g->xy[2 * i],
                (long long)a->g->xy[2 * i + 1], a->g->level, a->g->size, a->g->downsample,
                a->g->tissue[i]);
        for (int c = 0; c < MK_HISTO_CLASSES; c++)
            fprintf(f, ",%.6g", a->prob[i * MK_HISTO_CLASSES + c]);
        fprintf(f, "\n");
    }
}

mk_status mk_histo_infer(mk_ctx *ctx, const char *model_path, const char *const *slides, int n,
                         const char *out_dir, int threads, int *failed)
{
    *failed = 0;
    mk_histo_model m;
    mk_status st = mk_histo_model_load(ctx, model_path, &m);
    if (st != MK_OK)
        return st;
    if ((st = mk_fs_mkdirs(ctx, out_dir)) != MK_OK) {
        mk_histo_model_free(&m);
        return st;
    }
    mk_histo_params hp = m.p;
    for (int i = 0; i < n; i++) {
        mk_histo_set s;
        mk_histo_grid g;
        memset(&g, 0, sizeof g);
        float *prob = NULL;
        const char *base = strrchr(slides[i], '/');
        base = base ? base + 1 : slides[i];
        char stem[1024], path[4400];
        snprintf(stem, sizeof stem, "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot && dot != stem)
            *dot = 0;
        st = slide_set(ctx, slides[i], &hp, &s, &g);
        if (st == MK_OK &&
            !(prob = malloc((size_t)(s.n > 0 ? s.n : 1) * MK_HISTO_CLASSES * sizeof *prob)))
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", slides[i]);
        if (st == MK_OK)
            st = mk_histo_predict(ctx, m.net, &s, threads, prob);
        if (st == MK_OK) {
            snprintf(path, sizeof path, "%s/%s_patches.csv", out_dir, stem);
            csv_arg a = {&g, prob, &hp};
            st = mk_fs_write_atomic_printed(ctx, path, print_csv, &a);
        }
        if (st == MK_OK) { /* the patch coordinates, CLAM's layout (histo/mk_histo.h) */
            snprintf(path, sizeof path, "%s/%s_coords.h5", out_dir, stem);
            st = mk_histo_grid_save(ctx, path, &g);
        }
        if (st == MK_OK) {
            snprintf(path, sizeof path, "%s/%s_heatmap.png", out_dir, stem);
            char title[300];
            snprintf(title, sizeof title, "P(%s) on %s", hp.class_names.v[1], base);
            st = heatmap(ctx, path, &s, 0, &hp, prob, MK_HISTO_CLASSES, title);
        }
        if (st == MK_OK) {
            double mean = 0;
            for (int64_t k = 0; k < s.n; k++)
                mean += prob[k * MK_HISTO_CLASSES + 1];
            MK_LOG_I(ctx,
                     "infer %s: %lld patches, mean P(%s) %.3f -> %s/%s_patches.csv, "
                     "%s_heatmap.png (coordinates: _coords.h5)",
                     slides[i], (long long)s.n, hp.class_names.v[1], s.n ? mean / s.n : 0.0,
                     out_dir, stem, stem);
        }
        free(prob);
        mk_histo_set_free(&s);
        mk_histo_grid_free(&g);
        if (st == MK_ERR_ABORTED)
            break;
        if (st != MK_OK) {
            MK_LOG_E(ctx, "%s (slide skipped)", ctx->msg);
            (*failed)++;
            mk_err_clear(ctx);
            st = MK_OK;
        }
    }
    mk_histo_model_free(&m);
    if (st == MK_OK && *failed)
        st = mk_err(ctx, MK_ERR_IO, "infer: %d of %d slides failed (see above)", *failed, n);
    return st;
}

mk_status mk_histo_precheck(mk_ctx *ctx, const mk_manifest *m, const mk_histo_params *p)
{
    int train = 0;
    for (int i = 0; i < m->nrows; i++) {
        const mk_manifest_row *row = &m->rows[i];
        if (strcmp(row->modality, p->modality))
            continue;
        mk_tiff_slide *s = NULL;
        mk_tiff_level lv;
        mk_status st = mk_tiff_open(ctx, row->image_path, &s);
        if (st == MK_OK && p->level >= mk_tiff_level_count(s))
            st = mk_err(ctx, MK_ERR_CONFIG,
                        "histo.level: %s has %d level(s) (0..%d), level %d does not exist",
                        row->image_path, mk_tiff_level_count(s), mk_tiff_level_count(s) - 1,
                        p->level);
        if (st == MK_OK && (st = mk_tiff_level_info(ctx, s, p->level, &lv)) == MK_OK &&
            (lv.width < p->patch || lv.height < p->patch))
            st = mk_err(ctx, MK_ERR_CONFIG,
                        "histo.patch: %d px is larger than level %d of %s (%lld x %lld)", p->patch,
                        p->level, row->image_path, (long long)lv.width, (long long)lv.height);
        mk_tiff_close(s);
        if (st == MK_OK && row->label_path) {
            s = NULL;
            st = mk_tiff_open(ctx, row->label_path, &s);
            mk_tiff_close(s);
            if (st != MK_OK)
                return mk_err_prefix(ctx, "%s:%d: column label", m->source, row->line);
        }
        if (st != MK_OK)
            return ctx->status == MK_ERR_CONFIG
                       ? st
                       : mk_err_prefix(ctx, "%s:%d: column image", m->source, row->line);
        train += !strcmp(row->split, "train") && row->label_path &&
                 (!p->train_domain[0] || !strcmp(row->domain, p->train_domain));
    }
    if (train == 0)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "histo.train_domain: manifest %s has no labelled '%s' train row%s%s",
                      m->source, p->modality, p->train_domain[0] ? " of domain " : "",
                      p->train_domain);
    return MK_OK;
}
