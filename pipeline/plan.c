/* Dataset fingerprint and plan (see mk_plan.h; the rules in docs/plan.md). */
#include "mk_plan.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../config/mk_config.h"
#include "../core/mk_fs.h"
#include "../core/mk_log.h"
#include "../io/mk_image.h"
#include "../models/mk_unet.h"
#include "../nn/mk_optim.h"
#include "mk_runner.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

#define PLAN_WIDTH 16         /* channels of the first U-Net level */
#define PLAN_MAX_DEPTH 5      /* U-Net levels */
#define PLAN_FG_SHARE 0.33    /* share of each batch centred on foreground (nnU-Net) */
#define PLAN_VAL_FRACTION 0.2 /* labelled training cases held out when there is no val split */
#define PLAN_BATCH_MIN 2
#define PLAN_BATCH_MAX 16
#define PLAN_CMEDL_FACTOR 3.0 /* cmedl: teacher + student + translator per sample */
/* The compute budget (docs/plan.md) */
#define PLAN_BUDGET_MIN 30.0 /* --time-budget default, minutes */
#define PLAN_BATCH_TIME 4    /* the budget first takes the batch down to this */
#define PLAN_WIDTH_SMALL 8   /* then the width */
#define PLAN_PATCH_FLOOR 32  /* then halves the patch axes, not below this */
#define PLAN_VALIDATIONS 10  /* run.val_every 0: ten validations per validated training stage */
#define PLAN_INFER_SHARE 0.2 /* one sliding window costs this share of a training sample */
#define PLAN_CMEDL_TIME 4.5  /* cmedl: 3 networks, the baseline (1), translate (2, a quarter) */
#define PLAN_ANISO 2.0       /* an axis this much coarser than the others is sliced across */

static const char *SLICE_NAME[3] = {"sagittal", "coronal", "axial"};

static const char *SPLITS[4] = {"train", "val", "test", ""};

void mk_plan_opts_defaults(mk_plan_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = "auto";
    o->iterations = 0;
    o->threads = 0;
    o->memory_gb = 2.0;
    o->max_samples = 1000000;
    o->time_budget_min = PLAN_BUDGET_MIN;
    o->gflops = 0;
}

/* ---- small numerics ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default percentile (linear interpolation between closest ranks) of sorted a[n]. */
static double percentile_sorted(const double *a, int64_t n, double p)
{
    if (n <= 0)
        return NAN;
    double pos = p / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    double f = pos - (double)lo;
    return a[lo] + (a[hi] - a[lo]) * f;
}

/* numpy's median (mean of the two middle values for even n) of a[n] (sorted in place). */
static double median_inplace(double *a, int n)
{
    if (n <= 0)
        return NAN;
    qsort(a, (size_t)n, sizeof *a, cmp_double);
    return n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}

/* Chan's parallel merge of (count, mean, M2): exact and independent of the number of workers,
 * since cases are always merged in manifest order. */
static void merge_stats(int64_t *n, double *mean, double *m2, int64_t nb, double mb, double m2b)
{
    if (nb <= 0)
        return;
    if (*n == 0) {
        *n = nb;
        *mean = mb;
        *m2 = m2b;
        return;
    }
    double na = (double)*n, d = mb - *mean, t = na + (double)nb;
    *mean += d * (double)nb / t;
    *m2 += m2b + d * d * na * (double)nb / t;
    *n += nb;
}

/* ---- opening a dataset ---------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

mk_status mk_plan_open_dataset(mk_ctx *ctx, const char *path, mk_manifest **out)
{
    *out = NULL;
    if (mk_fs_is_dir(path) || ends_with(path, ".json"))
        return mk_manifest_import_nnunet(ctx, path, out);
    if (!mk_fs_is_file(path))
        return mk_err(ctx, MK_ERR_IO,
                      "%s: expected a CSV manifest, an nnU-Net v2 / MSD dataset folder or its "
                      "dataset.json, got no such file or folder",
                      path);
    return mk_manifest_read(ctx, path, out);
}

/* "FILE:LINE" for CSV rows, "FOLDER: case ID" for imported ones. */
static void row_where(const mk_manifest *m, const mk_manifest_row *w, char *buf, size_t n)
{
    if (w->line > 0)
        snprintf(buf, n, "%s:%d", m->source, w->line);
    else
        snprintf(buf, n, "%s: case %s", m->source, w->id);
}

/* ---- one case ------------------------------------------------------------------------------- */

typedef struct case_job {
    mk_fp_case c;
    int64_t budget;  /* percentile sample budget of this case */
    int64_t values;  /* finite voxels (whole-volume statistics) */
    int64_t fg_vals; /* finite foreground voxels (foreground statistics) */
    double m2, fg_m2;
    double *sample;
    mk_status st;
    char msg[MK_ERRMSG_MAX];
} case_job;

static mk_status fp_case(mk_ctx *ctx, const mk_manifest *m, case_job *j)
{
    mk_fp_case *c = &j->c;
    const mk_manifest_row *w = &m->rows[c->row];
    char where[4400];
    row_where(m, w, where, sizeof where);
    mk_image *img = NULL, *lab = NULL;
    unsigned char *lv = NULL;
    mk_status st = mk_io_read_image(ctx, w->image_path, &img);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "%s: column image", where);
    if (img->dtype == MK_DT_RGB24) {
        st = mk_err(ctx, MK_ERR_UNSUPPORTED,
                    "%s: column image: %s: expected a scalar volume (CT, MR), got an RGB image",
                    where, w->image_path);
        goto out;
    }
    const int64_t d0 = img->dim[0], d1 = img->dim[1], d2 = img->dim[2], n = d0 * d1 * d2;
    int wa[3], sg[3];
    mk_geom_axis_map(&img->geom, wa, sg);
    for (int a = 0; a < 3; a++) {
        c->spacing[wa[a]] = img->geom.spacing[a];
        c->size[wa[a]] = img->dim[a];
    }
    mk_geom_orient_code(&img->geom, c->orient);
    c->voxels = n;
    /* whole volume: two passes (mean, then squared deviations) in double; non-finite skipped */
    double s = 0;
    int64_t nv = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = mk_image_get(img, i);
        if (isfinite(x)) {
            s += x;
            nv++;
        }
    }
    c->mean = nv ? s / (double)nv : NAN;
    double m2 = 0;
    for (int64_t i = 0; i < n && nv; i++) {
        double x = mk_image_get(img, i);
        if (isfinite(x))
            m2 += (x - c->mean) * (x - c->mean);
    }
    j->values = nv;
    j->m2 = m2;
    c->sd = nv ? sqrt(m2 / (double)nv) : NAN;
    if (!w->label_path)
        goto out;
    if ((st = mk_io_read_image(ctx, w->label_path, &lab)) != MK_OK) {
        st = mk_err_prefix(ctx, "%s: column label", where);
        goto out;
    }
    char why[400];
    if (!mk_geom_grid_diff(img, lab, 1e-4, why, sizeof why)) {
        st = mk_err(ctx, MK_ERR_GEOMETRY,
                    "%s: column label: image and label on different grids: %s (image %s, label "
                    "%s)",
                    where, why, w->image_path, w->label_path);
        goto out;
    }
    if (!(lv = malloc((size_t)n))) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (%lld voxels)", where, (long long)n);
        goto out;
    }
    /* pass 1: label values (integers 0..255), foreground count, mean, bounding box */
    int64_t bmin[3] = {d0, d1, d2}, bmax[3] = {-1, -1, -1}, fg = 0, fgv = 0;
    double fs = 0;
    for (int64_t k = 0, i = 0; k < d2; k++)
        for (int64_t y = 0; y < d1; y++)
            for (int64_t x = 0; x < d0; x++, i++) {
                double v = mk_image_get(lab, i);
                double r = nearbyint(v);
                if (!(fabs(v - r) <= 1e-3) || r < 0 || r > MK_PLAN_MAX_LABEL) {
                    st = mk_err(ctx, MK_ERR_FORMAT,
                                "%s: column label: %s: voxel (%lld,%lld,%lld): expected an "
                                "integer label value in 0..%d, got %g",
                                where, w->label_path, (long long)x, (long long)y, (long long)k,
                                MK_PLAN_MAX_LABEL, v);
                    goto out;
                }
                lv[i] = (unsigned char)r;
                c->present[lv[i]] = 1;
                if (!lv[i])
                    continue;
                fg++;
                const int64_t p[3] = {x, y, k};
                for (int a = 0; a < 3; a++) {
                    if (p[a] < bmin[a])
                        bmin[a] = p[a];
                    if (p[a] > bmax[a])
                        bmax[a] = p[a];
                }
                double xv = mk_image_get(img, i);
                if (isfinite(xv)) {
                    fs += xv;
                    fgv++;
                }
            }
    c->fg = fg;
    j->fg_vals = fgv;
    for (int a = 0; a < 3 && fg; a++)
        c->extent_mm[wa[a]] = (double)(bmax[a] - bmin[a] + 1) * img->geom.spacing[a];
    c->fg_mean = fgv ? fs / (double)fgv : NAN;
    /* pass 2: squared deviations, and every k-th finite foreground voxel for the percentiles */
    int64_t step = j->budget > 0 && fgv > j->budget ? (fgv + j->budget - 1) / j->budget : 1;
    int64_t ns = fgv ? (fgv + step - 1) / step : 0;
    c->sample_step = step;
    if (ns && !(j->sample = malloc((size_t)ns * sizeof *j->sample))) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (%lld samples)", where, (long long)ns);
        goto out;
    }
    double fm2 = 0;
    int64_t q = 0;
    for (int64_t i = 0; i < n && fgv; i++) {
        if (!lv[i])
            continue;
        double xv = mk_image_get(img, i);
        if (!isfinite(xv))
            continue;
        fm2 += (xv - c->fg_mean) * (xv - c->fg_mean);
        if (q % step == 0)
            j->sample[c->sampled++] = xv;
        q++;
    }
    j->fg_m2 = fm2;
    c->fg_sd = fgv ? sqrt(fm2 / (double)fgv) : NAN;
out:
    free(lv);
    mk_image_free(img);
    mk_image_free(lab);
    return st;
}

/* ---- the whole dataset ---------------------------------------------------------------------- */

void mk_fingerprint_free(mk_fingerprint *fp)
{
    if (!fp)
        return;
    for (int i = 0; i < fp->nmod; i++)
        free(fp->mod[i].name);
    free(fp->mod);
    free(fp->cases);
    free(fp->dataset);
    free(fp->source);
    free(fp);
}

static int split_index(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, SPLITS[i]) == 0)
            return i;
    return 3;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dataset's name: the imported folder's, else the CSV's file name without .csv. */
static char *dataset_name(const mk_manifest *m)
{
    if (m->name)
        return strdup(m->name);
    const char *b = strrchr(m->source, '/');
    b = b ? b + 1 : m->source;
    size_t n = strlen(b);
    if (n > 4 && strcmp(b + n - 4, ".csv") == 0)
        n -= 4;
    return strndup(b, n);
}

static mk_status aggregate(mk_ctx *ctx, const mk_manifest *m, case_job *jobs, mk_fingerprint *fp);

mk_status mk_fingerprint_compute(mk_ctx *ctx, const mk_manifest *m, const mk_plan_opts *o,
                                 mk_fingerprint **out)
{
    *out = NULL;
    if (m->nrows <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: expected at least one case, got none", m->source);
    mk_fingerprint *fp = calloc(1, sizeof *fp);
    case_job *jobs = calloc((size_t)m->nrows, sizeof *jobs);
    char **names = calloc((size_t)m->nrows, sizeof *names);
    mk_status st = MK_OK;
    if (!fp || !jobs || !names) {
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory (%d cases)", m->nrows);
        goto fail;
    }
    fp->max_samples = o->max_samples > 0 ? o->max_samples : 1000000;
    fp->kind = m->layout ? m->layout : "csv";
    fp->dataset = dataset_name(m);
    fp->source = strdup(m->source);
    if (!fp->dataset || !fp->source) {
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* modalities: the distinct names, sorted; a row without one cannot be planned */
    int nn = 0;
    for (int r = 0; r < m->nrows; r++) {
        const mk_manifest_row *w = &m->rows[r];
        if (!*w->modality) {
            char where[4400];
            row_where(m, w, where, sizeof where);
            st = mk_err(ctx, MK_ERR_INVALID,
                        "%s: column modality: expected a modality name (CT, MR, ...), got '' "
                        "(a CSV needs the column; an nnU-Net dataset names it in "
                        "channel_names)",
                        where);
            goto fail;
        }
        int seen = 0;
        for (int i = 0; i < nn && !seen; i++)
            seen = strcmp(names[i], w->modality) == 0;
        if (!seen)
            names[nn++] = w->modality;
    }
    qsort(names, (size_t)nn, sizeof *names, cmp_str_ptr);
    if (!(fp->mod = calloc((size_t)nn, sizeof *fp->mod))) {
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    fp->nmod = nn;
    for (int i = 0; i < nn; i++)
        if (!(fp->mod[i].name = strdup(names[i]))) {
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            goto fail;
        }
    for (int r = 0; r < m->nrows; r++) {
        int k = 0;
        while (strcmp(fp->mod[k].name, m->rows[r].modality) != 0)
            k++;
        jobs[r].c.row = r;
        jobs[r].c.mod = k;
        jobs[r].c.labelled = m->rows[r].label_path != NULL;
        fp->mod[k].labelled += jobs[r].c.labelled;
    }
    for (int r = 0; r < m->nrows; r++) {
        int64_t nl = fp->mod[jobs[r].c.mod].labelled;
        jobs[r].budget = nl > 0 ? (fp->max_samples + nl - 1) / nl : 0;
    }
    /* read the cases, o->threads at a time; the first failure in manifest order is reported */
    int nt = o->threads;
#ifdef _OPENMP
    if (nt <= 0)
        nt = omp_get_num_procs();
#endif
    if (nt < 1)
        nt = 1;
    if (nt > m->nrows)
        nt = m->nrows;
    int stop = 0;
    long long done = 0;
    const int nrows = m->nrows;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int r = 0; r < nrows; r++) {
        int halt;
#pragma omp atomic read
        halt = stop;
        if (halt || ctx->cancel) {
            jobs[r].st = MK_ERR_ABORTED;
            continue;
        }
        mk_ctx local;
        mk_ctx_init(&local);
        jobs[r].st = fp_case(&local, m, &jobs[r]);
        if (jobs[r].st != MK_OK) {
            snprintf(jobs[r].msg, sizeof jobs[r].msg, "%s", mk_ctx_errmsg(&local));
#pragma omp atomic write
            stop = 1;
        }
#pragma omp critical(mk_plan_progress)
        {
            done++;
            mk_progress(ctx, "fingerprint", done, nrows, "case", m->rows[r].id);
        }
    }
    for (int r = 0; r < m->nrows && st == MK_OK; r++)
        if (jobs[r].st != MK_OK && jobs[r].st != MK_ERR_ABORTED)
            st = mk_err(ctx, jobs[r].st, "%s", jobs[r].msg);
    if (st == MK_OK && ctx->cancel)
        st = mk_err(ctx, MK_ERR_ABORTED, "fingerprint: interrupted");
    if (st == MK_OK)
        st = aggregate(ctx, m, jobs, fp);
    if (st != MK_OK)
        goto fail;
    for (int r = 0; r < m->nrows; r++)
        free(jobs[r].sample);
    free(jobs);
    free(names);
    *out = fp;
    return MK_OK;
fail:
    for (int r = 0; jobs && r < m->nrows; r++)
        free(jobs[r].sample);
    free(jobs);
    free(names);
    mk_fingerprint_free(fp);
    return st;
}

static void min_med_max(double *v, int n, double *lo, double *med, double *hi)
{
    *lo = *hi = n ? v[0] : NAN;
    for (int i = 1; i < n; i++) {
        *lo = fmin(*lo, v[i]);
        *hi = fmax(*hi, v[i]);
    }
    *med = median_inplace(v, n);
}

static mk_status aggregate(mk_ctx *ctx, const mk_manifest *m, case_job *jobs, mk_fingerprint *fp)
{
    fp->ncases = m->nrows;
    if (!(fp->cases = calloc((size_t)m->nrows, sizeof *fp->cases)))
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    for (int r = 0; r < m->nrows; r++)
        fp->cases[r] = jobs[r].c;
    double *v = malloc((size_t)m->nrows * sizeof *v);
    if (!v)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    for (int k = 0; k < fp->nmod; k++) {
        mk_fp_modality *md = &fp->mod[k];
        int64_t nv = 0, nf = 0, ns = 0;
        double mean = 0, m2 = 0, fmean = 0, fm2 = 0, lvox = 0, fgvox = 0;
        for (int r = 0; r < m->nrows; r++) {
            const case_job *j = &jobs[r];
            if (j->c.mod != k)
                continue;
            md->cases++;
            int s = split_index(m->rows[r].split);
            md->split_rows[s]++;
            md->labelled_split_rows[s] += j->c.labelled;
            int o = 0;
            while (o < md->norient && strcmp(md->orient[o], j->c.orient) != 0)
                o++;
            if (o == md->norient && o < MK_PLAN_MAX_ORIENT)
                memcpy(md->orient[md->norient++], j->c.orient, 4);
            if (o < MK_PLAN_MAX_ORIENT)
                md->orient_count[o]++;
            merge_stats(&nv, &mean, &m2, j->values, j->c.mean, j->m2);
            md->voxels += j->c.voxels;
            if (!j->c.labelled)
                continue;
            lvox += (double)j->c.voxels;
            fgvox += (double)j->c.fg;
            merge_stats(&nf, &fmean, &fm2, j->fg_vals, j->c.fg_mean, j->fg_m2);
            ns += j->c.sampled;
            md->subsampled |= j->c.sample_step > 1;
            for (int l = 0; l <= MK_PLAN_MAX_LABEL; l++)
                md->label_cases[l] += j->c.present[l];
            md->extent_cases += j->c.fg > 0;
        }
        md->unlabelled = md->cases - md->labelled;
        md->mean = nv ? mean : NAN;
        md->sd = nv ? sqrt(m2 / (double)nv) : NAN;
        md->fg_voxels = (int64_t)fgvox;
        md->labelled_voxels = (int64_t)lvox;
        md->fg_share = lvox > 0 ? fgvox / lvox : NAN;
        md->fg_mean = nf ? fmean : NAN;
        md->fg_sd = nf ? sqrt(fm2 / (double)nf) : NAN;
        md->fg_sampled = ns;
        /* geometry: min / median / max over the modality's cases, per RAS axis */
        for (int a = 0; a < 3; a++) {
            int n = 0;
            for (int r = 0; r < m->nrows; r++)
                if (jobs[r].c.mod == k)
                    v[n++] = jobs[r].c.spacing[a];
            min_med_max(v, n, &md->spacing_min[a], &md->spacing_median[a], &md->spacing_max[a]);
            n = 0;
            for (int r = 0; r < m->nrows; r++)
                if (jobs[r].c.mod == k)
                    v[n++] = (double)jobs[r].c.size[a];
            min_med_max(v, n, &md->size_min[a], &md->size_median[a], &md->size_max[a]);
            n = 0;
            for (int r = 0; r < m->nrows; r++)
                if (jobs[r].c.mod == k && jobs[r].c.labelled && jobs[r].c.fg > 0)
                    v[n++] = jobs[r].c.extent_mm[a];
            double lo;
            min_med_max(v, n, &lo, &md->extent_median[a], &md->extent_max[a]);
        }
        /* percentiles of the concatenated samples (manifest order, then sorted) */
        md->fg_p005 = md->fg_p50 = md->fg_p995 = NAN;
        if (ns > 0) {
            double *smp = malloc((size_t)ns * sizeof *smp);
            if (!smp) {
                free(v);
                return mk_err(ctx, MK_ERR_NOMEM, "out of memory (%lld samples)", (long long)ns);
            }
            int64_t q = 0;
            for (int r = 0; r < m->nrows; r++)
                if (jobs[r].c.mod == k && jobs[r].c.sampled) {
                    memcpy(smp + q, jobs[r].sample, (size_t)jobs[r].c.sampled * sizeof *smp);
                    q += jobs[r].c.sampled;
                }
            qsort(smp, (size_t)ns, sizeof *smp, cmp_double);
            md->fg_p005 = percentile_sorted(smp, ns, 0.5);
            md->fg_p50 = percentile_sorted(smp, ns, 50);
            md->fg_p995 = percentile_sorted(smp, ns, 99.5);
            free(smp);
        }
    }
    free(v);
    return MK_OK;
}

/* ---- the plan ------------------------------------------------------------------------------- */

/* Forward outputs (floats) of one sample of the U-Net on a pu x pv patch. Per level i (width
 * w_i = width * 2^i, area A_i = pu*pv / 4^i), as models/mk_unet.c records them on the tape:
 * encoder 2 x (conv, BN, ReLU) = 6 w_i A_i, the pooled input of the next level w_i A_(i+1);
 * decoder (levels below the bottleneck) transposed conv w_i A_i, concat 2 w_i A_i, 2 x (conv, BN,
 * ReLU) 6 w_i A_i; head: logits, softmax and loss 4 classes A_0; input A_0. */
static double unet_elems(int pu, int pv, int width, int depth, int classes)
{
    double f = 0, a0 = (double)pu * (double)pv;
    for (int i = 0; i < depth; i++) {
        double w = (double)width * (double)(1 << i), a = a0 / (double)(1 << (2 * i));
        f += 6 * w * a;
        if (i + 1 < depth)
            f += w * a / 4 + 9 * w * a;
    }
    return f + 4.0 * classes * a0 + a0;
}

double mk_plan_unet_bytes(int pu, int pv, int width, int depth, int classes)
{
    /* each forward output has a gradient of its size (x 2), plus the largest im2col buffer (3x3
     * over the 2 w_0 channels of the first decoder conv: 18 w_0 A_0); float32 */
    double f = unet_elems(pu, pv, width, depth, classes);
    return 4.0 * (2.0 * f + 18.0 * width * (double)pu * (double)pv);
}

static double unet_conv_gflop(int pu, int pv, int width, int depth, int classes)
{
    mk_unet_cfg u = mk_unet_defaults(2);
    u.in_ch = 1;
    u.classes = classes;
    u.base = width;
    u.levels = depth;
    const int size[2] = {pv, pu};
    return 3.0 * mk_unet_conv_flops(&u, size, NULL) / 1e9;
}

double mk_plan_unet_work(int pu, int pv, int width, int depth, int classes)
{
    return unet_conv_gflop(pu, pv, width, depth, classes) +
           MK_PLAN_ELEM_FLOPS * unet_elems(pu, pv, width, depth, classes) / 1e9;
}

/* ---- the benchmark -------------------------------------------------------------------------- */

#define BENCH_WIDTH 8
#define BENCH_DEPTH 4
#define BENCH_PATCH 128
#define BENCH_BATCH 2
#define BENCH_CLASSES 3
#define BENCH_WARMUP 2
#define BENCH_SECONDS 0.3

mk_status mk_plan_measure_gflops(mk_ctx *ctx, int threads, double *gflops, double *seconds)
{
    *gflops = 0;
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    double t_begin = mk_now_s();
    mk_unet_cfg u = mk_unet_defaults(2);
    u.in_ch = 1;
    u.classes = BENCH_CLASSES;
    u.base = BENCH_WIDTH;
    u.levels = BENCH_DEPTH;
    mk_unet *net = NULL;
    mk_optim *opt = NULL;
    mk_nn_graph *g = NULL;
    mk_tensor x = {0};
    int32_t *y = NULL;
    const int64_t ne[4] = {BENCH_BATCH, 1, BENCH_PATCH, BENCH_PATCH};
    const int64_t n = BENCH_BATCH * BENCH_PATCH * BENCH_PATCH;
    mk_status st = mk_unet_new(ctx, &u, 1, &net);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "plan: benchmark");
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    if (!(opt = mk_optim_new(mk_unet_params(net), &oc)) || !(g = mk_nn_graph_new(threads, 1)) ||
        mk_tensor_new(&x, 4, ne) != 0 || !(y = malloc((size_t)n * sizeof *y))) {
        st = mk_err(ctx, MK_ERR_NOMEM, "plan: benchmark: out of memory");
        goto out;
    }
    /* a fixed batch: a disc (class 1) in a ring (class 2) over a smooth background */
    for (int64_t i = 0; i < n; i++) {
        int64_t xx = i % BENCH_PATCH, yy = i / BENCH_PATCH % BENCH_PATCH;
        double dx = (double)xx - 64, dy = (double)yy - 60, r = sqrt(dx * dx + dy * dy);
        y[i] = r < 20 ? 1 : r < 36 ? 2 : 0;
        x.data[i] = (float)(0.5 * y[i] + 0.1 * sin(0.3 * (double)xx) * cos(0.2 * (double)yy));
    }
    double start = 0, elapsed = 0;
    int steps = 0;
    for (int s = 0;; s++) {
        if (s == BENCH_WARMUP)
            start = mk_now_s();
        mk_nn_graph_begin(g, 1);
        mk_var *logits = mk_unet_forward(net, g, mk_nn_input(g, &x, 0));
        mk_var *l = mk_nn_add(g, mk_nn_scale(g, mk_nn_dice_loss(g, logits, y, 1e-5f), 0.5f),
                              mk_nn_scale(g, mk_nn_cross_entropy(g, logits, y, NULL, -100), 0.5f));
        if (mk_nn_graph_oom(g) || !l) {
            st = mk_err(ctx, MK_ERR_NOMEM, "plan: benchmark: out of memory in the forward pass");
            goto out;
        }
        mk_nn_params_zero_grad(mk_unet_params(net));
        mk_nn_backward(g, l);
        mk_optim_step(opt);
        if (s < BENCH_WARMUP)
            continue;
        steps++;
        elapsed = mk_now_s() - start;
        if ((elapsed >= BENCH_SECONDS && steps >= 3) || steps >= 1000)
            break;
    }
    *gflops = BENCH_BATCH *
              mk_plan_unet_work(BENCH_PATCH, BENCH_PATCH, BENCH_WIDTH, BENCH_DEPTH, BENCH_CLASSES) *
              steps / (elapsed > 0 ? elapsed : 1e-9);
out:
    mk_tensor_free(&x);
    free(y);
    mk_nn_graph_free(g);
    mk_optim_free(opt);
    mk_unet_free(net);
    if (seconds)
        *seconds = mk_now_s() - t_begin;
    return st;
}

static int is_ct(const char *name)
{
    return strcasecmp(name, "CT") == 0;
}

/* 1 if [section] key is in the installed schema; with value: also one of its choices. */
static int schema_has(const char *section, const char *key, const char *value)
{
    mk_pipeline_schema_install();
    int n = 0;
    const mk_cfg_section *s = mk_cfg_schema(&n);
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].name, section) != 0)
            continue;
        for (int k = 0; k < s[i].nkeys; k++)
            if (strcmp(s[i].keys[k].name, key) == 0)
                return !value || !s[i].keys[k].choices ||
                       mk_param_choice_index(s[i].keys[k].choices, value) >= 0;
    }
    return 0;
}

/* cases of the planned modalities */
static int planned(const mk_plan *p, int mod)
{
    return mod == p->mod || (p->cmedl && mod == p->mr);
}

static double planned_median(const mk_fingerprint *fp, const mk_plan *p, double *buf, int what,
                             int a, int *count)
{
    int n = 0;
    for (int r = 0; r < fp->ncases; r++) {
        const mk_fp_case *c = &fp->cases[r];
        if (!planned(p, c->mod))
            continue;
        if (what == 0)
            buf[n++] = c->spacing[a];
        else if (what == 1)
            buf[n++] = (double)c->size[a] * c->spacing[a];
        else if (c->labelled && c->fg > 0)
            buf[n++] = c->extent_mm[a];
    }
    if (count)
        *count = n;
    return median_inplace(buf, n);
}

static int floor_log2(double x)
{
    int k = 0;
    while (x >= 2.0) {
        x /= 2.0;
        k++;
    }
    return k;
}

/* U-Net depth for a patch whose smaller axis is pmin: the bottleneck keeps >= 4 voxels. */
static int depth_for(int pmin)
{
    int d = floor_log2(pmin / 4.0) + 1;
    return d > PLAN_MAX_DEPTH ? PLAN_MAX_DEPTH : d < 2 ? 2 : d;
}

/* Sliding windows along an axis of d voxels (stages/predict.c: stride p/2, the last one flush
 * with the end, one window when d <= p). */
static int window_count(double dv, int p)
{
    int64_t d = (int64_t)floor(dv + 0.5), step = p / 2 > 0 ? p / 2 : 1;
    return d <= p ? 1 : (int)((d - p + step - 1) / step) + 1;
}

/* Validations during training and the evaluation of one candidate, seconds at g GFLOP/s: every
 * window of every slice of the cases scored costs PLAN_INFER_SHARE of a training sample. */
static double fixed_seconds(const mk_plan *p, const mk_plan_candidate *c, double g)
{
    double models = p->cmedl ? 2 : 1; /* cmedl: the student and the baseline */
    double windows = (double)window_count(p->image_vox[0], c->patch[0]) *
                     window_count(p->image_vox[1], c->patch[1]);
    double scored = models * (PLAN_VALIDATIONS * p->val_cases + p->eval_cases) * p->slices;
    return scored * windows * PLAN_INFER_SHARE *
           mk_plan_unet_work(c->patch[0], c->patch[1], c->width, c->depth, p->classes) / g;
}

/* The next smaller candidate (docs/plan.md): the batch down to PLAN_BATCH_TIME, the width to
 * PLAN_WIDTH_SMALL, the patch axes halved (not below PLAN_PATCH_FLOOR; depth re-derived; a
 * multiple of 2^(depth-1) and of 4), the batch down to PLAN_BATCH_MIN. 0: none is smaller. */
static int smaller(mk_plan_candidate *c)
{
    if (c->batch > PLAN_BATCH_TIME) {
        c->batch--;
        return 1;
    }
    if (c->width > PLAN_WIDTH_SMALL) {
        c->width = PLAN_WIDTH_SMALL;
        return 1;
    }
    int raw[2], changed = 0;
    for (int i = 0; i < 2; i++) {
        raw[i] = c->patch[i];
        if (raw[i] > PLAN_PATCH_FLOOR) {
            raw[i] = (raw[i] + 1) / 2 > PLAN_PATCH_FLOOR ? (raw[i] + 1) / 2 : PLAN_PATCH_FLOOR;
            changed = 1;
        }
    }
    if (changed) {
        c->depth = depth_for(raw[0] < raw[1] ? raw[0] : raw[1]);
        int q = 1 << (c->depth - 1);
        if (q < 4)
            q = 4;
        for (int i = 0; i < 2; i++)
            c->patch[i] = (raw[i] + q - 1) / q * q;
        return 1;
    }
    if (c->batch > PLAN_BATCH_MIN) {
        c->batch--;
        return 1;
    }
    return 0;
}

/* The compute budget: from the memory-planned (nnU-Net-style) candidate in p, shrink while fewer
 * than MK_PLAN_MIN_ITERS iterations fit; set the chosen network, the iterations and the
 * estimates. md: the trained modality (its splits give the validation and evaluation cases). */
static mk_status compute_budget(mk_ctx *ctx, const mk_plan_opts *o, mk_plan *p,
                                const mk_fp_modality *md)
{
    double g = o->gflops;
    if (!(g > 0)) {
        double secs = 0;
        mk_status st = mk_plan_measure_gflops(ctx, o->threads, &g, &secs);
        if (st != MK_OK)
            return st;
        p->gflops_measured = 1;
        MK_LOG_I(ctx,
                 "plan: this machine trains at %.1f GFLOP/s (measured in %.2f s; pass --gflops "
                 "for a reproducible plan)",
                 g, secs);
    }
    p->gflops = g;
    p->time_budget_s = 60.0 * (o->time_budget_min > 0 ? o->time_budget_min : PLAN_BUDGET_MIN);
    /* validation cases: the manifest's val rows, else the hold-out (stages/data.c's rule) */
    if (p->has_val_rows) {
        p->val_cases = md->labelled_split_rows[1];
    } else {
        int n = md->labelled_split_rows[0];
        long nv = lround(PLAN_VAL_FRACTION * n);
        if (nv < 1 && n >= 2)
            nv = 1;
        if (nv > n - 1)
            nv = n - 1;
        p->val_cases = nv > 0 ? (int)nv : 0;
    }
    p->eval_cases = strcmp(p->eval_split, "test") == 0 ? md->labelled_split_rows[2] : p->val_cases;
    double tfactor = p->cmedl ? PLAN_CMEDL_TIME : 1.0;
    mk_plan_candidate c = {{p->patch[0], p->patch[1]}, p->depth, p->width, p->batch, 0, 0, 0};
    p->ncand = 0;
    for (;;) {
        c.sec_per_iter = tfactor * c.batch *
                         mk_plan_unet_work(c.patch[0], c.patch[1], c.width, c.depth, p->classes) /
                         g;
        c.fixed_s = fixed_seconds(p, &c, g);
        double fit = floor((p->time_budget_s - c.fixed_s) / c.sec_per_iter);
        c.fit = fit < 0 ? 0 : fit > 1e15 ? (long long)1e15 : (long long)fit;
        p->cand[p->ncand++] = c;
        if (c.fit >= MK_PLAN_MIN_ITERS) {
            p->budget_met = 1;
            break;
        }
        if (p->ncand == MK_PLAN_MAX_CANDIDATES || !smaller(&c))
            break; /* the smallest misses the budget too: keep it, the comments say so */
    }
    const mk_plan_candidate *ch = &p->cand[p->ncand - 1];
    p->patch[0] = ch->patch[0];
    p->patch[1] = ch->patch[1];
    p->depth = ch->depth;
    p->width = ch->width;
    p->batch = ch->batch;
    p->sec_per_iter = ch->sec_per_iter;
    p->fixed_s = ch->fixed_s;
    p->windows =
        window_count(p->image_vox[0], ch->patch[0]) * window_count(p->image_vox[1], ch->patch[1]);
    long long it = ch->fit < MK_PLAN_MIN_ITERS   ? MK_PLAN_MIN_ITERS
                   : ch->fit > MK_PLAN_MAX_ITERS ? MK_PLAN_MAX_ITERS
                                                 : ch->fit;
    p->iterations_given = o->iterations > 0;
    p->iterations = p->iterations_given ? o->iterations : it;
    p->expected_s = (double)p->iterations * p->sec_per_iter + p->fixed_s;
    p->gflop_per_iter = p->sec_per_iter * g;
    p->conv_gflop_per_iter =
        tfactor * p->batch *
        unet_conv_gflop(p->patch[0], p->patch[1], p->width, p->depth, p->classes);
    return MK_OK;
}

mk_status mk_plan_make(mk_ctx *ctx, const mk_manifest *m, const mk_fingerprint *fp,
                       const mk_plan_opts *o, mk_plan *p)
{
    memset(p, 0, sizeof *p);
    p->ct = p->mr = p->mod = -1;
    const char *method = o->method && *o->method ? o->method : "auto";
    if (strcmp(method, "auto") && strcmp(method, "supervised") && strcmp(method, "cmedl"))
        return mk_err(ctx, MK_ERR_USAGE,
                      "plan: --method: expected auto, supervised or cmedl, got "
                      "'%s'",
                      method);
    int other = -1; /* the non-CT modality with the most labelled cases, then the most cases */
    for (int k = 0; k < fp->nmod; k++) {
        const mk_fp_modality *md = &fp->mod[k];
        if (is_ct(md->name)) {
            if (p->ct < 0)
                p->ct = k;
        } else if (other < 0 || md->labelled > fp->mod[other].labelled ||
                   (md->labelled == fp->mod[other].labelled && md->cases > fp->mod[other].cases)) {
            other = k;
        }
    }
    int ct_ok = p->ct >= 0 && fp->mod[p->ct].extent_cases > 0;
    if (strcmp(method, "cmedl") == 0 && (!ct_ok || other < 0))
        return mk_err(ctx, MK_ERR_INVALID,
                      "plan: --method cmedl: expected labelled CT rows (modality CT) and rows of "
                      "an MR modality in %s, got %s%s",
                      fp->source, ct_ok ? "CT" : "no labelled CT", other < 0 ? " and no MR" : "");
    p->cmedl = strcmp(method, "cmedl") == 0 || (strcmp(method, "auto") == 0 && ct_ok && other >= 0);
    if (p->cmedl) {
        p->mod = p->ct;
        p->mr = other;
    } else {
        for (int k = 0; k < fp->nmod; k++)
            if (fp->mod[k].extent_cases > 0 &&
                (p->mod < 0 || fp->mod[k].labelled > fp->mod[p->mod].labelled))
                p->mod = k;
        if (p->mod < 0) {
            int nl = 0;
            for (int r = 0; r < fp->ncases; r++)
                nl += fp->cases[r].labelled;
            return mk_err(ctx, MK_ERR_INVALID,
                          "plan: %s: expected labelled cases with foreground (label > 0) to train "
                          "on, got none (%d cases, %d with a label)",
                          fp->source, fp->ncases, nl);
        }
        if (!is_ct(fp->mod[p->mod].name))
            p->mr = p->mod;
    }
    /* target spacing: the median spacing per RAS axis over the planned cases (nnU-Net) */
    double *buf = malloc((size_t)(fp->ncases > 0 ? fp->ncases : 1) * sizeof *buf);
    if (!buf)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    double img_mm[3], ext_mm[3];
    int next = 0;
    for (int a = 0; a < 3; a++) {
        p->spacing[a] = planned_median(fp, p, buf, 0, a, &p->ncases);
        img_mm[a] = planned_median(fp, p, buf, 1, a, NULL);
        ext_mm[a] = planned_median(fp, p, buf, 2, a, &next);
    }
    free(buf);
    /* slices across z (axial), unless another axis is at least twice as coarse as each of the
     * others (anisotropic data: slice across the coarse axis, as nnU-Net's 2-D configuration) */
    p->slice_axis = 2;
    for (int a = 0; a < 2; a++)
        if (p->spacing[a] >= PLAN_ANISO * p->spacing[(a + 1) % 3] &&
            p->spacing[a] >= PLAN_ANISO * p->spacing[(a + 2) % 3])
            p->slice_axis = a;
    p->plane[0] = p->slice_axis == 0 ? 1 : 0;
    p->plane[1] = p->slice_axis == 2 ? 1 : 2;
    const int *ax = p->plane;
    int p0[2], img_vox[2];
    for (int i = 0; i < 2; i++) {
        p->extent_vox[i] = ext_mm[ax[i]] / p->spacing[ax[i]];
        p->image_vox[i] = img_mm[ax[i]] / p->spacing[ax[i]];
        img_vox[i] = (int)floor(p->image_vox[i] + 0.5);
        p0[i] = (int)ceil(p->extent_vox[i] - 1e-6);
        if (p0[i] > img_vox[i])
            p0[i] = img_vox[i];
        if (p0[i] < 8)
            p0[i] = 8;
    }
    /* depth: bottleneck >= 4 voxels; patch a multiple of 2^(depth-1) (and of 4) */
    p->depth = depth_for(p0[0] < p0[1] ? p0[0] : p0[1]);
    int q = 1 << (p->depth - 1);
    if (q < 4)
        q = 4;
    for (int i = 0; i < 2; i++) {
        int up = (p0[i] + q - 1) / q * q, down = p0[i] / q * q;
        p->patch[i] = up > img_vox[i] && down >= 4 << (p->depth - 1) && down >= 8 ? down : up;
    }
    /* labels: the values found in the planned modalities' label files, named by dataset.json */
    int cases_with[MK_PLAN_MAX_LABEL + 1] = {0};
    for (int k = 0; k < fp->nmod; k++)
        if (planned(p, k))
            for (int l = 1; l <= MK_PLAN_MAX_LABEL; l++)
                cases_with[l] += fp->mod[k].label_cases[l];
    for (int l = 1; l <= MK_PLAN_MAX_LABEL; l++) {
        if (!cases_with[l])
            continue;
        if (p->nstruct == MK_PLAN_MAX_STRUCTURES) {
            int total = 0;
            for (int t = 1; t <= MK_PLAN_MAX_LABEL; t++)
                total += cases_with[t] > 0;
            return mk_err(ctx, MK_ERR_UNSUPPORTED,
                          "plan: %s: %d label values in the label files; medkd's U-Net segments at "
                          "most %d structures (model.classes <= 16)",
                          fp->source, total, MK_PLAN_MAX_STRUCTURES);
        }
        int j = p->nstruct++;
        p->label_values[j] = l;
        snprintf(p->label_names[j], sizeof p->label_names[j], "label_%d", l);
        for (int t = 0; m && t < m->nlabels; t++)
            if (m->label_values[t] == l && m->label_names[t][0]) {
                /* names are at most 31 bytes: cut before a UTF-8 continuation byte */
                const char *nm = m->label_names[t];
                size_t len = strlen(nm);
                if (len > sizeof p->label_names[j] - 1) {
                    len = sizeof p->label_names[j] - 1;
                    while (len > 0 && ((unsigned char)nm[len] & 0xC0) == 0x80)
                        len--;
                }
                memcpy(p->label_names[j], nm, len);
                p->label_names[j][len] = '\0';
            }
    }
    if (p->nstruct == 0)
        return mk_err(ctx, MK_ERR_INVALID,
                      "plan: %s: expected label values > 0 in the label files of %s, got none",
                      fp->source, fp->mod[p->mod].name);
    p->classes = p->nstruct + 1;
    /* batch from the memory budget; the patch shrinks (by q, larger axis first) until 2 fit */
    p->width = PLAN_WIDTH;
    double budget = (o->memory_gb > 0 ? o->memory_gb : 2.0) * 1073741824.0;
    double factor = p->cmedl ? PLAN_CMEDL_FACTOR : 1.0;
    for (;;) {
        p->bytes_per_sample =
            factor * mk_plan_unet_bytes(p->patch[0], p->patch[1], p->width, p->depth, p->classes);
        if (PLAN_BATCH_MIN * p->bytes_per_sample <= budget)
            break;
        int i = p->patch[0] >= p->patch[1] ? 0 : 1;
        if (p->patch[i] - q < 4 * q || p->patch[i] - q < 8)
            break; /* as small as the depth allows: keep it and say so */
        p->patch[i] -= q;
        p->patch_shrunk = 1;
    }
    double b = floor(budget / p->bytes_per_sample);
    p->batch = b < PLAN_BATCH_MIN ? PLAN_BATCH_MIN : b > PLAN_BATCH_MAX ? PLAN_BATCH_MAX : (int)b;
    p->slices = (int)floor(img_mm[p->slice_axis] / p->spacing[p->slice_axis] + 0.5);
    for (int k = 0; k < fp->nmod; k++)
        if (planned(p, k))
            p->has_val_rows |= fp->mod[k].split_rows[1] > 0;
    p->eval_split = fp->mod[p->mod].labelled_split_rows[2] > 0 ? "test" : "val";
    mk_status st = compute_budget(ctx, o, p, &fp->mod[p->mod]);
    if (st != MK_OK)
        return st;
    /* CT window: the 0.5 and 99.5 percentiles of the CT foreground (nnU-Net's CT clipping) */
    if (p->ct >= 0 && planned(p, p->ct) && isfinite(fp->mod[p->ct].fg_p005)) {
        p->has_ct_window = 1;
        p->ct_window[0] = fmax(-3000, fmin(10000, nearbyint(fp->mod[p->ct].fg_p005)));
        p->ct_window[1] = fmax(-3000, fmin(10000, nearbyint(fp->mod[p->ct].fg_p995)));
        if (p->ct_window[1] <= p->ct_window[0]) {
            if (p->ct_window[0] >= 10000)
                p->ct_window[0] -= 1;
            else
                p->ct_window[1] = p->ct_window[0] + 1;
        }
    }
    p->eval_has_model_key = schema_has("evaluate", "model", "best");
    return MK_OK;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void jnum(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.10g", v == 0 ? 0.0 : v);
    else
        fputs("null", f);
}

static void jvec(FILE *f, const double *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        jnum(f, v[i]);
    }
    fputc(']', f);
}

static void jmmm(FILE *f, const char *ind, const char *key, const double *lo, const double *med,
                 const double *hi)
{
    fprintf(f, "%s\"%s\": {\"min\": ", ind, key);
    jvec(f, lo, 3);
    fputs(", \"median\": ", f);
    jvec(f, med, 3);
    fputs(", \"max\": ", f);
    jvec(f, hi, 3);
    fputs("},\n", f);
}

typedef struct print_arg {
    const mk_manifest *m;
    const mk_fingerprint *fp;
    const mk_plan *p;
    const char *dataset_rel; /* data.manifest as written */
    const char *fp_name;     /* the fingerprint's file name */
    const char *config_path;
    const mk_plan_opts *o;
} print_arg;

static void print_json(FILE *f, const void *argp)
{
    const print_arg *A = argp;
    const mk_fingerprint *fp = A->fp;
    const mk_manifest *m = A->m;
    fputs("{\n  \"format\": \"medkd-fingerprint\",\n  \"version\": 1,\n  \"dataset\": ", f);
    mk_json_put(f, fp->dataset);
    fputs(",\n  \"source\": ", f);
    mk_json_put(f, fp->source);
    fprintf(f, ",\n  \"layout\": \"%s\",\n  \"cases\": %d,\n", fp->kind, fp->ncases);
    fputs("  \"axes\": [\"x (R-L)\", \"y (A-P)\", \"z (S-I)\"],\n", f);
    fputs("  \"axes_note\": \"spacing, size and extent are given along the RAS world axes "
          "after reorientation to RAS (the voxel axis pointing mostly along each)\",\n",
          f);
    fprintf(f,
            "  \"sampling\": {\"max_foreground_samples\": %lld, \"rule\": \"percentiles of at "
            "most ceil(max_foreground_samples / labelled cases) foreground voxels per case: every "
            "k-th finite voxel with label > 0 in file order (i fastest), k = ceil(foreground "
            "voxels / that budget); numpy's linear percentile; means and sds are exact over "
            "every voxel; non-finite intensities are ignored\"},\n",
            fp->max_samples);
    fputs("  \"label_names\": {", f);
    for (int l = 0; m && l < m->nlabels; l++) {
        fprintf(f, "%s\"%d\": ", l ? ", " : "", m->label_values[l]);
        mk_json_put(f, m->label_names[l]);
    }
    fputs("},\n  \"modalities\": {\n", f);
    for (int k = 0; k < fp->nmod; k++) {
        const mk_fp_modality *md = &fp->mod[k];
        fputs("    ", f);
        mk_json_put(f, md->name);
        fprintf(f,
                ": {\n      \"cases\": %d,\n      \"labelled\": %d,\n      \"unlabelled\": %d,\n",
                md->cases, md->labelled, md->unlabelled);
        fprintf(f,
                "      \"splits\": {\"train\": %d, \"val\": %d, \"test\": %d, \"none\": %d},\n"
                "      \"labelled_splits\": {\"train\": %d, \"val\": %d, \"test\": %d, "
                "\"none\": %d},\n",
                md->split_rows[0], md->split_rows[1], md->split_rows[2], md->split_rows[3],
                md->labelled_split_rows[0], md->labelled_split_rows[1], md->labelled_split_rows[2],
                md->labelled_split_rows[3]);
        jmmm(f, "      ", "spacing_mm", md->spacing_min, md->spacing_median, md->spacing_max);
        jmmm(f, "      ", "size_voxels", md->size_min, md->size_median, md->size_max);
        fputs("      \"orientations\": {", f);
        for (int o = 0; o < md->norient; o++)
            fprintf(f, "%s\"%s\": %d", o ? ", " : "", md->orient[o], md->orient_count[o]);
        fprintf(f, "},\n      \"intensity\": {\"voxels\": %lld, \"mean\": ", (long long)md->voxels);
        jnum(f, md->mean);
        fputs(", \"sd\": ", f);
        jnum(f, md->sd);
        fprintf(f,
                "},\n      \"foreground_intensity\": {\"voxels\": %lld, \"sampled\": %lld, "
                "\"subsampled\": %s, \"percentile_0_5\": ",
                (long long)md->fg_voxels, (long long)md->fg_sampled,
                md->subsampled ? "true" : "false");
        jnum(f, md->fg_p005);
        fputs(", \"percentile_50\": ", f);
        jnum(f, md->fg_p50);
        fputs(", \"percentile_99_5\": ", f);
        jnum(f, md->fg_p995);
        fputs(", \"mean\": ", f);
        jnum(f, md->fg_mean);
        fputs(", \"sd\": ", f);
        jnum(f, md->fg_sd);
        fputs("},\n      \"labels\": {", f);
        for (int l = 0, first = 1; l <= MK_PLAN_MAX_LABEL; l++)
            if (md->label_cases[l]) {
                fprintf(f, "%s\"%d\": %d", first ? "" : ", ", l, md->label_cases[l]);
                first = 0;
            }
        fprintf(f, "},\n      \"labelled_voxels\": %lld,\n      \"foreground_share\": ",
                (long long)md->labelled_voxels);
        jnum(f, md->fg_share);
        fprintf(
            f, ",\n      \"foreground_extent_mm\": {\"cases\": %d, \"median\": ", md->extent_cases);
        jvec(f, md->extent_median, 3);
        fputs(", \"max\": ", f);
        jvec(f, md->extent_max, 3);
        fprintf(f, "}\n    }%s\n", k + 1 < fp->nmod ? "," : "");
    }
    fputs("  },\n  \"case_list\": [\n", f);
    for (int r = 0; r < fp->ncases; r++) {
        const mk_fp_case *c = &fp->cases[r];
        const mk_manifest_row *w = &m->rows[c->row];
        fputs("    {\"id\": ", f);
        mk_json_put(f, w->id);
        fputs(", \"modality\": ", f);
        mk_json_put(f, w->modality);
        fputs(", \"split\": ", f);
        mk_json_put(f, w->split);
        fprintf(f, ", \"labelled\": %s, \"orientation\": \"%s\", \"spacing_mm\": ",
                c->labelled ? "true" : "false", c->orient);
        jvec(f, c->spacing, 3);
        fprintf(f, ", \"size_voxels\": [%lld, %lld, %lld]", (long long)c->size[0],
                (long long)c->size[1], (long long)c->size[2]);
        if (c->labelled) {
            fprintf(f, ", \"foreground_voxels\": %lld, \"sample_step\": %lld, \"extent_mm\": ",
                    (long long)c->fg, (long long)c->sample_step);
            jvec(f, c->extent_mm, 3);
        }
        fprintf(f, "}%s\n", r + 1 < fp->ncases ? "," : "");
    }
    const mk_plan *p = A->p;
    fprintf(f, "  ],\n  \"plan\": {\"method\": \"%s\", \"modality\": ",
            p->cmedl ? "cmedl" : "supervised");
    mk_json_put(f, fp->mod[p->mod].name);
    fputs(", \"spacing_mm\": ", f);
    jvec(f, p->spacing, 3);
    fprintf(f,
            ", \"slice_axis\": \"%s\", \"patch\": [%d, %d], \"depth\": %d, \"width\": %d, "
            "\"classes\": %d, \"batch\": %d, \"iterations\": %lld, \"iterations_given\": %s, "
            "\"bytes_per_sample\": %.0f, \"memory_gb\": ",
            SLICE_NAME[p->slice_axis], p->patch[0], p->patch[1], p->depth, p->width, p->classes,
            p->batch, p->iterations, p->iterations_given ? "true" : "false", p->bytes_per_sample);
    jnum(f, A->o->memory_gb > 0 ? A->o->memory_gb : 2.0);
    fputs(",\n    \"compute\": {\"time_budget_min\": ", f);
    jnum(f, p->time_budget_s / 60.0);
    fputs(", \"gflops\": ", f);
    jnum(f, p->gflops);
    fprintf(f,
            ", \"gflops_measured\": %s, \"work_model\": \"GFLOP per iteration = batch x (3 x "
            "forward convolution GFLOP + %g x activation elements / 1e9)%s\", ",
            p->gflops_measured ? "true" : "false", MK_PLAN_ELEM_FLOPS,
            p->cmedl ? " x 4.5 (cmedl 3 networks, baseline 1, translate 2 for a quarter)" : "");
    fputs("\"gflop_per_iteration\": ", f);
    jnum(f, p->gflop_per_iter);
    fputs(", \"conv_gflop_per_iteration\": ", f);
    jnum(f, p->conv_gflop_per_iter);
    fputs(", \"seconds_per_iteration\": ", f);
    jnum(f, p->sec_per_iter);
    fprintf(f,
            ", \"validation_cases\": %d, \"validations\": %d, \"evaluation_cases\": %d, "
            "\"slices_per_case\": %d, \"windows_per_slice\": %d, "
            "\"validation_evaluation_seconds\": ",
            p->val_cases, PLAN_VALIDATIONS, p->eval_cases, p->slices, p->windows);
    jnum(f, p->fixed_s);
    fputs(", \"expected_minutes\": ", f);
    jnum(f, p->expected_s / 60.0);
    fprintf(f,
            ", \"budget_met\": %s, \"min_iterations\": %d, \"max_iterations\": %d,\n      "
            "\"candidates\": [",
            p->budget_met ? "true" : "false", MK_PLAN_MIN_ITERS, MK_PLAN_MAX_ITERS);
    for (int i = 0; i < p->ncand; i++) {
        const mk_plan_candidate *c = &p->cand[i];
        fprintf(f,
                "%s\n        {\"patch\": [%d, %d], \"depth\": %d, \"width\": %d, \"batch\": %d, "
                "\"seconds_per_iteration\": ",
                i ? "," : "", c->patch[0], c->patch[1], c->depth, c->width, c->batch);
        jnum(f, c->sec_per_iter);
        fputs(", \"validation_evaluation_seconds\": ", f);
        jnum(f, c->fixed_s);
        fprintf(f, ", \"iterations_fit\": %lld}", c->fit);
    }
    fputs("]},\n    ", f);
    fputs("\"ct_window\": ", f);
    if (p->has_ct_window)
        jvec(f, p->ct_window, 2);
    else
        fputs("null", f);
    fprintf(f, ", \"labels\": {");
    for (int j = 0; j < p->nstruct; j++) {
        fprintf(f, "%s\"%d\": ", j ? ", " : "", p->label_values[j]);
        mk_json_put(f, p->label_names[j]);
    }
    fprintf(f, "}, \"evaluate_split\": \"%s\", \"config\": ", p->eval_split);
    mk_json_put(f, A->config_path);
    fputs("}\n}\n", f);
}

/* ---- TOML ----------------------------------------------------------------------------------- */

static void tstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\u%04X", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* "key = " when the schema has [section].key (with value among its choices), else a comment
 * that says the planned value is not understood by this build. */
static void tkey(FILE *f, const char *section, const char *key, const char *choice)
{
    if (schema_has(section, key, choice))
        fprintf(f, "%s = ", key);
    else
        fprintf(f, "# (not in this build's schema) %s = ", key);
}

static void tnum(FILE *f, double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.9g", v);
    fputs(b, f);
    if (!strpbrk(b, ".eEn"))
        fputs(".0", f);
}

/* A "# ..." comment, word-wrapped at 99 columns. */
static void tc(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tc(FILE *f, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *s = buf;
    while (*s) {
        size_t n = strlen(s);
        if (n > 97) {
            n = 97;
            while (n > 20 && s[n] != ' ')
                n--;
        }
        fprintf(f, "# %.*s\n", (int)n, s);
        s += n;
        while (*s == ' ')
            s++;
    }
}

/* The compute budget's comment block: the rule, the candidates tried, the expected time. */
static void print_budget(FILE *f, const mk_plan *p)
{
    tc(f,
       "Compute budget: `pipeline run` should take at most %.4g min (--time-budget) on this "
       "machine, which trains at %.4g GFLOP/s (%s). One iteration costs batch x (3 x the forward "
       "convolution FLOPs + %g FLOPs per activation element)%s; 10 validations and the "
       "evaluation cost %g of a training sample per sliding window. Starting from the "
       "nnU-Net-style network (the rules below), the batch goes down to %d, the width to %d, "
       "the patch halves (not below %d), the batch goes down to %d, until at least %d iterations "
       "fit. Tried (patch, depth, width, batch: seconds per iteration, iterations that fit):",
       p->time_budget_s / 60.0, p->gflops,
       p->gflops_measured ? "measured by the plan's benchmark; --gflops makes the plan "
                            "reproducible"
                          : "--gflops",
       MK_PLAN_ELEM_FLOPS,
       p->cmedl ? ", x 4.5 for cmedl (3 networks, the baseline, a quarter of translate)" : "",
       PLAN_INFER_SHARE, PLAN_BATCH_TIME, PLAN_WIDTH_SMALL, PLAN_PATCH_FLOOR, PLAN_BATCH_MIN,
       MK_PLAN_MIN_ITERS);
    for (int i = 0; i < p->ncand; i++) {
        const mk_plan_candidate *c = &p->cand[i];
        fprintf(f, "#   %dx%d, depth %d, width %d, batch %d: %.3g s, %lld%s\n", c->patch[0],
                c->patch[1], c->depth, c->width, c->batch, c->sec_per_iter, c->fit,
                i + 1 == p->ncand ? " <- chosen" : "");
    }
    if (!p->budget_met)
        tc(f,
           "Even the smallest network misses the budget: it is kept, with %d iterations, and the "
           "run takes longer than the budget.",
           MK_PLAN_MIN_ITERS);
    tc(f,
       "Expected time: %lld iterations x %.3g s + %.2g min of validations (%d x %d case%s of %d "
       "slices, %d windows each) and evaluation (%d case%s) = %.3g min%s.",
       p->iterations, p->sec_per_iter, p->fixed_s / 60.0, PLAN_VALIDATIONS, p->val_cases,
       p->val_cases == 1 ? "" : "s", p->slices, p->windows, p->eval_cases,
       p->eval_cases == 1 ? "" : "s", p->expected_s / 60.0,
       p->expected_s > p->time_budget_s * (1 + 1e-9) ? " (over the budget)" : "");
}

static void print_toml(FILE *f, const void *argp)
{
    const print_arg *A = argp;
    const mk_fingerprint *fp = A->fp;
    const mk_plan *p = A->p;
    const mk_fp_modality *md = &fp->mod[p->mod];
    const char *mname = md->name;
    char line[1024];
    size_t L;
    tc(f,
       "medkd config planned by `pipeline plan` (medkd %s) from %s. The dataset's fingerprint, "
       "which every choice below is computed from, is %s beside this file; docs/plan.md states "
       "each rule. Edit freely: `pipeline validate` checks the result, and `pipeline run` trains "
       "and evaluates with it as it is.",
       MK_VERSION, fp->source, A->fp_name);
    L = 0;
    line[0] = '\0';
    for (int k = 0; k < fp->nmod && L < sizeof line; k++)
        L +=
            (size_t)snprintf(line + L, sizeof line - L, "%s%s %d cases (%d labelled)",
                             k ? ", " : "", fp->mod[k].name, fp->mod[k].cases, fp->mod[k].labelled);
    tc(f, "Modalities: %s.", line);
    print_budget(f, p);

    fputs("\n[run]\n", f);
    tc(f, "the dataset's name");
    fputs("name = ", f);
    tstr(f, fp->dataset);
    char safe[256];
    size_t k = 0;
    for (const char *c = fp->dataset; *c && k + 1 < sizeof safe; c++)
        safe[k++] = (char)((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                                   (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.'
                               ? *c
                               : '_');
    safe[k] = '\0';
    fputc('\n', f);
    tc(f, "run directory (checkpoints, models, masks, reports), relative to this file");
    fputs("out_dir = ", f);
    char od[300];
    snprintf(od, sizeof od, "runs/%s",
             safe[0] && strcmp(safe, ".") && strcmp(safe, "..") ? safe : "plan");
    tstr(f, od);
    fputc('\n', f);
    if (p->cmedl) {
        const char *mr = fp->mod[p->mr].name;
        tc(f,
           "CMEDL plan (the dataset holds labelled CT and %s rows): translate CT->%s, train the "
           "CT student guided by the %s teacher, the same student on CT alone as the baseline, "
           "evaluate both",
           mr, mr, mr);
        fputs("stages = [\"translate\", \"cmedl\", \"baseline\", \"evaluate\"]\n", f);
    } else {
        tc(f, "supervised plan: a U-Net on the labelled %s cases (%d), then the evaluation", mname,
           md->labelled);
        fputs("stages = [\"supervised\", \"evaluate\"]\n", f);
    }
    tc(f, "master seed (initialisation, data order, augmentation)");
    fputs("seed = 1\n", f);
    tc(f, "worker threads (0: one per core)");
    fprintf(f, "threads = %d\n", A->o->threads);

    fputs("\n[data]\n", f);
    tc(f, "the dataset as given to `pipeline plan`, relative to this file");
    fputs("manifest = ", f);
    tstr(f, A->dataset_rel);
    fputc('\n', f);
    if (p->ct >= 0) {
        tc(f, "the modality named CT: its intensities are HU, normalised with the window below");
        fputs("ct_modality = ", f);
        tstr(f, fp->mod[p->ct].name);
        fputc('\n', f);
    }
    if (p->mr >= 0) {
        tc(f, "the MR modality: normalised by z-score per volume");
        fputs("mri_modality = ", f);
        tstr(f, fp->mod[p->mr].name);
        fputc('\n', f);
    }
    L = 0;
    line[0] = '\0';
    for (int q = 0; q < fp->nmod; q++)
        for (int o = 0; planned(p, q) && o < fp->mod[q].norient && L < sizeof line; o++)
            L += (size_t)snprintf(line + L, sizeof line - L, "%s%s x%d", L ? ", " : "",
                                  fp->mod[q].orient[o], fp->mod[q].orient_count[o]);
    static const char *AXIS_LONG[3] = {"R-L (x)", "A-P (y)", "S-I (z)"};
    if (p->slice_axis == 2)
        tc(f,
           "2-D slices across the S-I axis (no axis is %g times coarser than the others); every "
           "volume is first reoriented to RAS, exactly (a permutation and flips of the voxel "
           "axes, no interpolation), whatever its stored orientation (here %s)",
           PLAN_ANISO, line);
    else
        tc(f,
           "2-D slices across the %s axis, at least %g times coarser than the others (%.3g mm; "
           "nnU-Net's 2-D rule for anisotropic data); every volume is first reoriented to RAS, "
           "exactly (a permutation and flips of the voxel axes, no interpolation), whatever its "
           "stored orientation (here %s)",
           AXIS_LONG[p->slice_axis], PLAN_ANISO, p->spacing[p->slice_axis], line);
    tkey(f, "data", "slice_axis", SLICE_NAME[p->slice_axis]);
    fprintf(f, "\"%s\"\n", SLICE_NAME[p->slice_axis]);
    tkey(f, "data", "orientation", NULL);
    fputs("\"RAS\"\n", f);
    L = 0;
    line[0] = '\0';
    for (int a = 0; a < 3; a++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int q = 0; q < fp->nmod; q++)
            if (planned(p, q)) {
                lo = fmin(lo, fp->mod[q].spacing_min[a]);
                hi = fmax(hi, fp->mod[q].spacing_max[a]);
            }
        L += (size_t)snprintf(line + L, sizeof line - L, "%s%c %.4g..%.4g", a ? ", " : "", "xyz"[a],
                              lo, hi);
    }
    tc(f,
       "target spacing in mm along x, y, z: the median over the %d planned cases per axis, as "
       "nnU-Net (seen: %s); cases at another spacing are resampled (images linear, labels "
       "per-label linear) and predictions go back to each input's own grid",
       p->ncases, line);
    tkey(f, "data", "spacing", NULL);
    fputc('[', f);
    for (int a = 0; a < 3; a++) {
        if (a)
            fputs(", ", f);
        tnum(f, p->spacing[a]);
    }
    fputs("]\n", f);
    if (p->has_ct_window) {
        const mk_fp_modality *c = &fp->mod[p->ct];
        tc(f,
           "CT window: the 0.5 and 99.5 percentiles of the CT foreground intensities (label > 0, "
           "%lld voxels%s; mean %.1f, sd %.1f), rounded; nnU-Net clips CT at the same "
           "percentiles",
           (long long)c->fg_voxels,
           c->subsampled ? ", percentiles from a deterministic subsample" : "", c->fg_mean,
           c->fg_sd);
        fprintf(f, "ct_window = [%.1f, %.1f]\n", p->ct_window[0], p->ct_window[1]);
    }
    if (p->mr >= 0) {
        tc(f, "MR intensities have no absolute scale: z-score per volume (nnU-Net's rule for "
              "non-CT)");
        fputs("mri_norm = \"zscore\"\n", f);
    }
    const mk_plan_candidate *c0 = &p->cand[0];
    int q = 1 << (c0->depth - 1);
    if (q < 4)
        q = 4;
    int halvings = 0;
    for (int i = 1; i < p->ncand; i++)
        halvings += p->cand[i].patch[0] != p->cand[i - 1].patch[0] ||
                    p->cand[i].patch[1] != p->cand[i - 1].patch[1];
    char why_small[200] = "";
    if (halvings)
        snprintf(why_small, sizeof why_small,
                 "; that patch (%dx%d) is halved %d time%s for the compute budget (see the top)",
                 c0->patch[0], c0->patch[1], halvings, halvings == 1 ? "" : "s");
    tc(f,
       "patch (%c, %c voxels at the target spacing): covers the median foreground extent "
       "(%.0f x %.0f) but at most the median image size (%.0f x %.0f), rounded to a multiple "
       "of %d (2^(depth-1), at least 4)%s%s",
       "xyz"[p->plane[0]], "xyz"[p->plane[1]], p -> extent_vox[0], p -> extent_vox[1],
       p -> image_vox[0], p -> image_vox[1], q,
       p -> patch_shrunk ? "; made smaller so that two patches fit the memory budget" : "",
       why_small);
    fprintf(f, "patch = [%d, %d]\n", p->patch[0], p->patch[1]);
    tc(f, "patches at random positions of whole slices, a third of each batch centred on a voxel "
          "of a structure (nnU-Net's foreground oversampling)");
    tkey(f, "data", "sampler", "random");
    fputs("\"random\"\n", f);
    tkey(f, "data", "foreground_share", NULL);
    tnum(f, PLAN_FG_SHARE);
    fputc('\n', f);
    L = 0;
    line[0] = '\0';
    for (int j = 0; j < p->nstruct && L < sizeof line; j++) {
        int n = 0;
        for (int t = 0; t < fp->nmod; t++)
            if (planned(p, t))
                n += fp->mod[t].label_cases[p->label_values[j]];
        L += (size_t)snprintf(line + L, sizeof line - L, "%s%d in %d", j ? ", " : "",
                              p->label_values[j], n);
    }
    tc(f,
       "the structures: the label values found in the label files%s (value in so many labelled "
       "cases: %s)",
       A->m && A->m->nlabels ? ", named as dataset.json names them" : "", line);
    for (int t = 0; A->m && t < A->m->nlabels; t++) {
        int v = A->m->label_values[t], found = 0;
        for (int j = 0; j < p->nstruct; j++)
            found |= p->label_values[j] == v;
        if (v > 0 && !found)
            tc(f, "(dataset.json names label %d '%s', which no label file holds: left out)", v,
               A->m->label_names[t]);
    }
    fputs("labels = {", f);
    for (int j = 0; j < p->nstruct; j++) {
        fprintf(f, "%s%d = ", j ? ", " : "", p->label_values[j]);
        tstr(f, p->label_names[j]);
    }
    fputs("}\n", f);
    if (p->has_val_rows) {
        tc(f, "the manifest has its own val split: no hold-out");
    } else {
        tc(f, "no val split in the dataset: a seeded fifth of each modality's labelled training "
              "cases is held out for validation (and for the evaluation when the test cases have "
              "no labels)");
        tkey(f, "data", "val_fraction", NULL);
        tnum(f, PLAN_VAL_FRACTION);
        fputc('\n', f);
    }

    fputs("\n[model]\n", f);
    if (p->width == c0->width)
        tc(f, "channels of the first level, doubling per level (nnU-Net's 2-D U-Net uses 32; 16 "
              "costs a quarter of its compute on CPUs)");
    else
        tc(f,
           "channels of the first level, doubling per level: %d, %d for the compute budget (see "
           "the top; nnU-Net's 2-D U-Net uses 32)",
           c0->width, p->width);
    fprintf(f, "width = %d\n", p->width);
    tc(f,
       "levels: min(%d, floor(log2(min patch / 4)) + 1) of the patch before its rounding, so "
       "that the bottleneck keeps >= 4 voxels (here %dx%d)",
       PLAN_MAX_DEPTH, p->patch[0] >> (p->depth - 1), p->patch[1] >> (p->depth - 1));
    fprintf(f, "depth = %d\n", p->depth);
    tc(f, "background + %d structure%s", p->nstruct, p->nstruct == 1 ? "" : "s");
    fprintf(f, "classes = %d\n", p->classes);

    double gb = A->o->memory_gb > 0 ? A->o->memory_gb : 2.0;
    char batch_why[900], iter_why[600];
    int n = snprintf(batch_why, sizeof batch_why,
                     "patches per batch: the memory budget (%.3g GiB, --memory-gb) over the "
                     "estimated activation memory of one %s patch of the nnU-Net-style network "
                     "(%.0f MiB), clamped to %d..%d: %d",
                     gb, p->cmedl ? "cmedl (teacher + student + translator)" : "U-Net",
                     p->bytes_per_sample / 1048576.0, PLAN_BATCH_MIN, PLAN_BATCH_MAX, c0->batch);
    if (p->batch != c0->batch && n > 0 && (size_t)n < sizeof batch_why)
        snprintf(batch_why + n, sizeof batch_why - (size_t)n,
                 ", %d for the compute budget (see the top)", p->batch);
    if (p->iterations_given)
        snprintf(iter_why, sizeof iter_why,
                 "training iterations (--iterations; the compute budget alone gives %lld), about "
                 "%.3g GFLOP (%.3g s) each",
                 p->cand[p->ncand - 1].fit < MK_PLAN_MIN_ITERS   ? (long long)MK_PLAN_MIN_ITERS
                 : p->cand[p->ncand - 1].fit > MK_PLAN_MAX_ITERS ? (long long)MK_PLAN_MAX_ITERS
                                                                 : p->cand[p->ncand - 1].fit,
                 p->gflop_per_iter, p->sec_per_iter);
    else
        snprintf(iter_why, sizeof iter_why,
                 "training iterations: floor((%.4g min - %.2g min of validations and evaluation) "
                 "/ %.3g s per iteration) = %lld, clamped to %d..%d (about %.3g GFLOP per "
                 "iteration at %.4g GFLOP/s)",
                 p->time_budget_s / 60.0, p->fixed_s / 60.0, p->sec_per_iter,
                 p->cand[p->ncand - 1].fit, MK_PLAN_MIN_ITERS, MK_PLAN_MAX_ITERS, p->gflop_per_iter,
                 p->gflops);
    if (p->cmedl) {
        long long ti = p->iterations / 4 > 0 ? p->iterations / 4 : 1;
        fputs("\n[translate]\n", f);
        tc(f, "CT->MR warm-up: a quarter of cmedl's iterations (about the defaults' ratio, "
              "400 : 1500)");
        fprintf(f, "iterations = %lld\n", ti);
        tc(f, "%s", batch_why);
        fprintf(f, "batch = %d\n", p->batch);
        fputs("\n[cmedl]\n", f);
        tc(f, "%s", iter_why);
        fprintf(f, "iterations = %lld\n", p->iterations);
        tc(f, "%s", batch_why);
        fprintf(f, "batch = %d\n", p->batch);
        tc(f, "Adam learning rate with the poly schedule (power 0.9, nnU-Net)");
        fputs("lr = 1e-3\nschedule = \"poly\"\n", f);
        fputs("\n[baseline]\n", f);
        tc(f, "0: as many iterations as cmedl");
        fputs("iterations = 0\n", f);
    } else {
        fputs("\n[supervised]\n", f);
        tc(f, "the modality trained on");
        fputs("modality = ", f);
        tstr(f, mname);
        fputc('\n', f);
        tc(f, "%s", iter_why);
        fprintf(f, "iterations = %lld\n", p->iterations);
        tc(f, "%s", batch_why);
        fprintf(f, "batch = %d\n", p->batch);
        tc(f, "Adam learning rate with the poly schedule (power 0.9, nnU-Net)");
        fputs("lr = 1e-3\nschedule = \"poly\"\n", f);
        tc(f, "loss = 0.5 soft Dice + 0.5 cross-entropy (nnU-Net's sum, halved)");
        fputs("dice_weight = 0.5\n", f);
    }
    fputs("\n[evaluate]\n", f);
    if (strcmp(p->eval_split, "test") == 0) {
        tc(f, "the test split has labelled %s cases: score them", mname);
        fputs("split = \"test\"\n", f);
    } else {
        tc(f, "the test split has no labelled %s cases: score the validation cases", mname);
        fputs("split = \"val\"\n", f);
    }
    tc(f, "the checkpoint with the best validation Dice");
    tkey(f, "evaluate", "model", "best");
    fputs("\"best\"\n", f);
}

/* ---- paths ---------------------------------------------------------------------------------- */

void mk_plan_fingerprint_path(const char *config_path, char *buf, size_t n)
{
    size_t L = strlen(config_path);
    if (L > 5 && strcmp(config_path + L - 5, ".toml") == 0)
        L -= 5;
    snprintf(buf, n, "%.*s.fingerprint.json", (int)L, config_path);
}

/* Relative path from folder `from` to `to` (both absolute and canonical, as realpath gives). */
static void rel_path(const char *from, const char *to, char *out, size_t n)
{
    size_t j = 0;
    while (from[j] && from[j] == to[j])
        j++;
    /* back to the last component boundary both share */
    if (!((from[j] == '\0' || from[j] == '/') && (to[j] == '\0' || to[j] == '/')))
        while (j > 0 && from[j - 1] != '/')
            j--;
    size_t k = 0;
    out[0] = '\0';
    for (const char *c = from + j; *c;) {
        while (*c == '/')
            c++;
        if (!*c)
            break;
        while (*c && *c != '/')
            c++;
        if (k + 4 < n) {
            memcpy(out + k, "../", 4);
            k += 3;
        }
    }
    const char *rest = to + j;
    while (*rest == '/')
        rest++;
    if (*rest)
        snprintf(out + k, n - k, "%s", rest);
    else if (k)
        out[k - 1] = '\0'; /* "../.." */
    else
        snprintf(out, n, ".");
}

mk_status mk_plan_write(mk_ctx *ctx, const char *dataset, const char *config_path,
                        const mk_plan_opts *o, mk_plan *plan_out)
{
    mk_pipeline_schema_install();
    mk_plan_opts defaults;
    if (!o) {
        mk_plan_opts_defaults(&defaults);
        o = &defaults;
    }
    char cdir[4096], cabs[4096], dabs[4096], rel[8192], fpath[4300];
    mk_fs_dirname(config_path, cdir, sizeof cdir);
    mk_manifest *m = NULL;
    mk_fingerprint *fp = NULL;
    char *json = NULL, *toml = NULL;
    size_t jlen = 0, tlen = 0;
    mk_plan plan;
    mk_status st = mk_plan_open_dataset(ctx, dataset, &m);
    if (st == MK_OK)
        st = mk_fingerprint_compute(ctx, m, o, &fp);
    if (st == MK_OK)
        st = mk_plan_make(ctx, m, fp, o, &plan);
    if (st == MK_OK && (st = mk_fs_mkdirs(ctx, cdir)) == MK_OK) {
        if (!realpath(cdir, cabs) || !realpath(dataset, dabs))
            st =
                mk_err(ctx, MK_ERR_IO, "%s: cannot resolve the path: %s", dataset, strerror(errno));
    }
    if (st != MK_OK)
        goto out;
    rel_path(cabs, dabs, rel, sizeof rel);
    mk_plan_fingerprint_path(config_path, fpath, sizeof fpath);
    const char *fname = strrchr(fpath, '/') ? strrchr(fpath, '/') + 1 : fpath;
    print_arg A = {m, fp, &plan, rel, fname, config_path, o};
    FILE *f = open_memstream(&json, &jlen);
    if (f) {
        print_json(f, &A);
        fclose(f);
    }
    f = open_memstream(&toml, &tlen);
    if (f) {
        print_toml(f, &A);
        fclose(f);
    }
    if (!json || !toml) {
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* the config must load as it is (schema, ranges, paths) before anything is written */
    mk_cfg *cfg = NULL;
    mk_ctx vctx;
    mk_ctx_init(&vctx);
    if (mk_cfg_load_buffer(&vctx, config_path, toml, tlen, &cfg) != MK_OK ||
        mk_runner_check(&vctx, cfg) != MK_OK) {
        st = mk_err(ctx, MK_ERR_INTERNAL, "plan: the planned config does not validate: %s",
                    mk_ctx_errmsg(&vctx));
        mk_cfg_free(cfg);
        goto out;
    }
    mk_cfg_free(cfg);
    if ((st = mk_fs_write_atomic(ctx, fpath, json, jlen)) != MK_OK)
        goto out;
    if ((st = mk_fs_write_atomic(ctx, config_path, toml, tlen)) != MK_OK) {
        remove(fpath); /* no fingerprint without its config */
        goto out;
    }
    if (plan_out)
        *plan_out = plan;
out:
    free(json);
    free(toml);
    mk_fingerprint_free(fp);
    mk_manifest_free(m);
    return st;
}
