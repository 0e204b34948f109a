/* The evaluation report in JSON, CSV and HDF5 (layouts: docs/report-schema.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/mk_fs.h"
#include "report_internal.h"

static const char *const METRIC_NAMES[MK_EVAL_NMETRICS] = {
    "dice",         "jaccard",     "hd",         "hd95",           "assd",         "masd",
    "surface_dice", "voxels_pred", "voxels_ref", "volume_pred_ml", "volume_ref_ml"};

const char *mk_eval_metric_name(int m)
{
    return m >= 0 && m < MK_EVAL_NMETRICS ? METRIC_NAMES[m] : "?";
}

double mk_eval_metric_value(const mk_metric_result *r, int m)
{
    switch (m) {
    case 0: return r->dice;
    case 1: return r->jaccard;
    case 2: return r->hd;
    case 3: return r->hd95;
    case 4: return r->assd;
    case 5: return r->masd;
    case 6: return r->surface_dice;
    case 7: return (double)r->voxels_pred;
    case 8: return (double)r->voxels_ref;
    case 9: return r->volume_pred_ml;
    case 10: return r->volume_ref_ml;
    default: return NAN;
    }
}

const char *mk_eval_definition_text(mk_metric_conv c)
{
    if (c == MK_METRIC_MEDPY)
        return "medpy: surface voxels = mask XOR erosion(mask, 6/4-neighbour cross, border 0); "
               "distances "
               "between voxel centres, unweighted; hd = max of both directions; hd95 = "
               "numpy.percentile "
               "(linear) of the union of both directed sets; assd = mean of that union; masd = "
               "mean of the "
               "two directed means; surface_dice = fraction of surface voxels within tolerance "
               "(inclusive)";
    return "deepmind: surfaces on the voxel-corner grid weighted by marching-cubes surfel area "
           "(3D) or "
           "contour length (2D); exact anisotropic Euclidean distances; hd = max of both "
           "directions; hd95 "
           "= max over directions of the area-weighted 95th percentile (cumsum/total, first >= "
           "0.95); "
           "assd = area-weighted mean over both surfaces; masd = mean of the two directed means; "
           "surface_dice = area within tolerance (inclusive) over total area";
}

const char *mk_eval_empty_policy_text(mk_metric_both_empty p)
{
    if (p == MK_METRIC_BOTH_NAN)
        return "both empty (the label in neither mask): every score NaN (nnU-Net), left out of "
               "every summary figure and counted in n_excluded (and n_nan); one empty: "
               "dice=jaccard=surface_dice=0, distances inf; mean/std over the non-NaN cases (inf "
               "propagates), median/quartiles/min/max over the non-NaN values, "
               "mean_finite/std_finite over the finite values, with n_finite/n_inf/n_nan counts";
    return "both empty: dice=jaccard=surface_dice=1, distances 0; one empty: "
           "dice=jaccard=surface_dice=0, "
           "distances inf; every case is kept in the summary: mean/std over all cases (inf "
           "propagates), "
           "median/quartiles/min/max over all non-NaN values, mean_finite/std_finite over finite "
           "values "
           "with n_finite/n_inf/n_nan counts";
}

int mk_eval_excluded(const mk_eval_report *rep, int j)
{
    int k = 0;
    for (int i = 0; i < rep->ncases; i++)
        k += rep->cases[i].res[j].empty == MK_METRIC_EMPTY_BOTH && isnan(rep->cases[i].res[j].dice);
    return k;
}

void mk_eval_report_stamp(mk_eval_report *rep)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(rep->created, sizeof rep->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void mk_eval_report_clear(mk_eval_report *rep)
{
    for (int i = 0; i < rep->ncases; i++) {
        free(rep->cases[i].id);
        free(rep->cases[i].pred);
        free(rep->cases[i].ref);
        free(rep->cases[i].res);
        free(rep->cases[i].image);
    }
    free(rep->cases);
    char **own[] = {
        &rep->split,         &rep->config_hash,       &rep->data,        &rep->model_file,
        &rep->modality,      &rep->window_blend,      &rep->postprocess, &rep->translator,
        &rep->version_owned, &rep->command_line_owned};
    for (size_t k = 0; k < sizeof own / sizeof own[0]; k++) {
        free(*own[k]);
        *own[k] = NULL;
    }
    if (rep->names_owned) {
        for (int j = 0; j < rep->nlabels; j++)
            free(rep->names_owned[j]);
        free(rep->names_owned);
        rep->names_owned = NULL;
        rep->label_names = NULL;
    }
    for (int i = 0; i < rep->nunpaired_pred; i++)
        free(rep->unpaired_pred[i]);
    for (int i = 0; i < rep->nunpaired_ref; i++)
        free(rep->unpaired_ref[i]);
    free(rep->unpaired_pred);
    free(rep->unpaired_ref);
    free(rep->labels);
    rep->cases = NULL;
    rep->ncases = 0;
    rep->unpaired_pred = rep->unpaired_ref = NULL;
    rep->nunpaired_pred = rep->nunpaired_ref = 0;
    rep->labels = NULL;
    rep->nlabels = 0;
}

/* The run fields, in the order JSON "run" and the HDF5 run_<name> attributes list them. */
#define MK__NRUN 8
static const char *const RUN_FIELDS[MK__NRUN] = {"split",       "config_hash", "data",
                                                 "model_file",  "modality",    "window_blend",
                                                 "postprocess", "translator"};

const char *mk__eval_run_field_name(int k)
{
    return k >= 0 && k < MK__NRUN ? RUN_FIELDS[k] : NULL;
}

char **mk__eval_run_field(mk_eval_report *rep, int k)
{
    char **v[MK__NRUN] = {&rep->split,    &rep->config_hash,  &rep->data,        &rep->model_file,
                          &rep->modality, &rep->window_blend, &rep->postprocess, &rep->translator};
    return k >= 0 && k < MK__NRUN ? v[k] : NULL;
}

/* the value of run field k (the writers only read it) */
static const char *run_field(const mk_eval_report *rep, int k)
{
    char **v = mk__eval_run_field((mk_eval_report *)rep, k);
    return v ? *v : NULL;
}

void mk__eval_structure_name(const mk_eval_report *rep, int j, char *buf, size_t n)
{
    if (rep->label_names && rep->label_names[j] && rep->label_names[j][0])
        snprintf(buf, n, "%s", rep->label_names[j]);
    else
        snprintf(buf, n, "label_%lld", (long long)rep->labels[j]);
}

/* per-label summary of one metric */
static void summarize(const mk_eval_report *rep, int label_idx, int m, mk_metric_stats *s)
{
    double *v = malloc((size_t)(rep->ncases > 0 ? rep->ncases : 1) * sizeof *v);
    if (!v) {
        mk_metric_stats_compute(NULL, 0, s);
        return;
    }
    for (int i = 0; i < rep->ncases; i++)
        v[i] = mk_eval_metric_value(&rep->cases[i].res[label_idx], m);
    mk_metric_stats_compute(v, rep->ncases, s);
    free(v);
}

/* ---------------------------------------------------------------- JSON */

typedef struct jw {
    FILE *f;
} jw;

static void jnum(FILE *f, double v)
{
    if (isnan(v))
        fputs("\"nan\"", f);
    else if (isinf(v))
        fputs(v > 0 ? "\"inf\"" : "\"-inf\"", f);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, "%.1f", v);
    else
        fprintf(f, "%.17g", v);
}

static void jdirected(FILE *f, const mk_metric_result *r, int d)
{
    fputs("{\"hd\": ", f);
    jnum(f, r->dir_hd[d]);
    fputs(", \"hd95\": ", f);
    jnum(f, r->dir_hd95[d]);
    fputs(", \"mean\": ", f);
    jnum(f, r->dir_mean[d]);
    fputs(", \"surface\": ", f);
    jnum(f, r->surface[d]);
    fputs(", \"surface_within_tolerance\": ", f);
    jnum(f, r->surface_within[d]);
    fputc('}', f);
}

static void jstrlist(FILE *f, char **s, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        mk_json_put(f, s[i]);
    }
    fputc(']', f);
}

static void write_json(FILE *f, const mk_eval_report *rep)
{
    fputs("{\n  \"convention\": ", f);
    mk_json_put(f, mk_metric_conv_name(rep->convention));
    fputs(",\n  \"tolerance_mm\": ", f);
    jnum(f, rep->tolerance_mm);
    fputs(",\n  \"percentile\": ", f);
    jnum(f, rep->percentile);
    fputs(",\n  \"both_empty\": ", f);
    mk_json_put(f, mk_metric_both_empty_name(rep->both_empty));
    fputs(",\n  \"definitions\": ", f);
    mk_json_put(f, mk_eval_definition_text(rep->convention));
    fputs(",\n  \"version\": ", f);
    mk_json_put(f, rep->version);
    fputs(",\n  \"command_line\": ", f);
    mk_json_put(f, rep->command_line);
    fputs(",\n  \"created\": ", f);
    mk_json_put(f, rep->created);
    fputs(",\n  \"run\": {", f);
    int first = 1;
    for (int k = 0; k < MK__NRUN; k++) {
        const char *v = run_field(rep, k);
        if (!v)
            continue;
        fprintf(f, "%s\"%s\": ", first ? "" : ", ", RUN_FIELDS[k]);
        mk_json_put(f, v);
        first = 0;
    }
    fputs("}", f);
    fputs(",\n  \"labels\": [", f);
    for (int j = 0; j < rep->nlabels; j++)
        fprintf(f, "%s%lld", j ? ", " : "", (long long)rep->labels[j]);
    if (rep->label_names) {
        fputs("],\n  \"label_names\": [", f);
        for (int j = 0; j < rep->nlabels; j++) {
            if (j)
                fputs(", ", f);
            mk_json_put(f, rep->label_names[j]);
        }
    }
    fputs("],\n  \"cases\": [", f);
    for (int i = 0; i < rep->ncases; i++) {
        const mk_eval_case *c = &rep->cases[i];
        fputs(i ? ",\n    {\"id\": " : "\n    {\"id\": ", f);
        mk_json_put(f, c->id);
        fputs(", \"pred\": ", f);
        mk_json_put(f, c->pred);
        fputs(", \"ref\": ", f);
        mk_json_put(f, c->ref);
        if (c->image) {
            fputs(", \"image\": ", f);
            mk_json_put(f, c->image);
        }
        fputs(", \"labels\": {", f);
        for (int j = 0; j < rep->nlabels; j++) {
            const mk_metric_result *r = &c->res[j];
            fprintf(f, "%s\n      \"%lld\": {", j ? "," : "", (long long)rep->labels[j]);
            for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
                fprintf(f, "%s\"%s\": ", m ? ", " : "", METRIC_NAMES[m]);
                if (m == 7 || m == 8)
                    fprintf(f, "%lld", (long long)(m == 7 ? r->voxels_pred : r->voxels_ref));
                else
                    jnum(f, mk_eval_metric_value(r, m));
            }
            fputs(", \"empty\": ", f);
            mk_json_put(f, mk_metric_empty_name(r->empty));
            fprintf(f, ", \"ndim\": %d, \"directed\": {\"ref_to_pred\": ", r->ndim);
            jdirected(f, r, MK_METRIC_REF2PRED);
            fputs(", \"pred_to_ref\": ", f);
            jdirected(f, r, MK_METRIC_PRED2REF);
            fputs("}}", f);
        }
        fputs("}}", f);
    }
    fputs(rep->ncases ? "\n  ],\n" : "],\n", f);
    fputs("  \"unpaired\": {\"pred\": ", f);
    jstrlist(f, rep->unpaired_pred, rep->nunpaired_pred);
    fputs(", \"ref\": ", f);
    jstrlist(f, rep->unpaired_ref, rep->nunpaired_ref);
    fputs("},\n  \"summary\": {\n    \"n_cases\": ", f);
    fprintf(f, "%d,\n    \"empty_policy\": ", rep->ncases);
    mk_json_put(f, mk_eval_empty_policy_text(rep->both_empty));
    fputs(",\n    \"labels\": {", f);
    for (int j = 0; j < rep->nlabels; j++) {
        int64_t ec[4] = {0, 0, 0, 0};
        for (int i = 0; i < rep->ncases; i++)
            ec[rep->cases[i].res[j].empty]++;
        fprintf(f, "%s\n      \"%lld\": {", j ? "," : "", (long long)rep->labels[j]);
        if (rep->label_names) {
            fputs("\"name\": ", f);
            mk_json_put(f, rep->label_names[j]);
            fputs(", ", f);
        }
        fprintf(f,
                "\"n_cases\": %d, \"n_excluded\": %d, \"empty\": {\"none\": %lld, \"pred\": "
                "%lld, \"ref\": %lld, \"both\": %lld}, \"metrics\": {",
                rep->ncases, mk_eval_excluded(rep, j), (long long)ec[0], (long long)ec[1],
                (long long)ec[2], (long long)ec[3]);
        for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
            mk_metric_stats s;
            summarize(rep, j, m, &s);
            fprintf(f, "%s\n        \"%s\": {", m ? "," : "", METRIC_NAMES[m]);
            const char *names[9] = {"mean", "std", "median",      "q1",        "q3",
                                    "min",  "max", "mean_finite", "std_finite"};
            double vals[9] = {s.mean, s.std, s.median,      s.q1,        s.q3,
                              s.min,  s.max, s.mean_finite, s.std_finite};
            for (int k = 0; k < 9; k++) {
                fprintf(f, "%s\"%s\": ", k ? ", " : "", names[k]);
                jnum(f, vals[k]);
            }
            fprintf(f, ", \"n_finite\": %lld, \"n_inf\": %lld, \"n_nan\": %lld}",
                    (long long)s.n_finite, (long long)s.n_inf, (long long)s.n_nan);
        }
        fputs("}}", f);
    }
    fputs(rep->nlabels ? "\n    }\n  }\n}\n" : "}\n  }\n}\n", f);
}

typedef void (*text_fn)(FILE *f, const mk_eval_report *rep);

static mk_status write_text(mk_ctx *ctx, const mk_eval_report *rep, const char *path, text_fn fn)
{
    char tmp[4200];
    mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
    if (st != MK_OK)
        return st;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create (directory missing or not writable?)",
                      path);
    fn(f, rep);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        mk_fs_discard(tmp);
        return mk_err(ctx, MK_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return mk_fs_commit(ctx, tmp, path);
}

mk_status mk_report_eval_json(mk_ctx *ctx, const mk_eval_report *rep, const char *path)
{
    return write_text(ctx, rep, path, write_json);
}

/* ---------------------------------------------------------------- CSV */

static void cfield(FILE *f, const char *s)
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

static void cnum(FILE *f, double v)
{
    if (isnan(v))
        fputs("nan", f);
    else if (isinf(v))
        fputs(v > 0 ? "inf" : "-inf", f);
    else
        fprintf(f, "%.17g", v);
}

static void write_csv(FILE *f, const mk_eval_report *rep)
{
    fputs("case_id,pred,ref,label,empty", f);
    for (int m = 0; m < MK_EVAL_NMETRICS; m++)
        fprintf(f, ",%s", METRIC_NAMES[m]);
    fputs(",hd_ref_to_pred,hd_pred_to_ref,hd95_ref_to_pred,hd95_pred_to_ref,mean_ref_to_pred,mean_"
          "pred_to_ref,label_name\n",
          f);
    for (int i = 0; i < rep->ncases; i++)
        for (int j = 0; j < rep->nlabels; j++) {
            const mk_eval_case *c = &rep->cases[i];
            const mk_metric_result *r = &c->res[j];
            cfield(f, c->id);
            fputc(',', f);
            cfield(f, c->pred);
            fputc(',', f);
            cfield(f, c->ref);
            fprintf(f, ",%lld,%s", (long long)rep->labels[j], mk_metric_empty_name(r->empty));
            for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
                fputc(',', f);
                if (m == 7 || m == 8)
                    fprintf(f, "%lld", (long long)(m == 7 ? r->voxels_pred : r->voxels_ref));
                else
                    cnum(f, mk_eval_metric_value(r, m));
            }
            const double *dv[3] = {r->dir_hd, r->dir_hd95, r->dir_mean};
            for (int k = 0; k < 3; k++) {
                fputc(',', f);
                cnum(f, dv[k][MK_METRIC_REF2PRED]);
                fputc(',', f);
                cnum(f, dv[k][MK_METRIC_PRED2REF]);
            }
            fputc(',', f);
            if (rep->label_names)
                cfield(f, rep->label_names[j]);
            fputc('\n', f);
        }
}

mk_status mk_report_eval_csv(mk_ctx *ctx, const mk_eval_report *rep, const char *path)
{
    return write_text(ctx, rep, path, write_csv);
}

/* ---------------------------------------------------------------- HDF5 */

mk_status mk_report_eval_h5(mk_ctx *ctx, const mk_eval_report *rep, const char *path)
{
    mk_h5w *w;
    mk_status st = mk_h5w_open(ctx, path, &w);
    if (st != MK_OK)
        return st;
    const int64_t N = rep->ncases, L = rep->nlabels;
    size_t cells = (size_t)((N > 1 ? N : 1) * (L > 0 ? L : 1)); /* also >= L: /summary/n_excluded */
    double *buf = malloc(cells * 2 * sizeof *buf);
    int64_t *ibuf = malloc(cells * sizeof *ibuf);
    int8_t *ebuf = malloc(cells);
    const char **sb = malloc((size_t)(N > 0 ? N : 1) * sizeof *sb);
    double *sv = malloc((size_t)(L > 0 ? L : 1) * 9 * sizeof *sv);
    int64_t *sn = malloc((size_t)(L > 0 ? L : 1) * 4 * sizeof *sn);
    if (!buf || !ibuf || !ebuf || !sb || !sv || !sn) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    char name[128];
    mk_h5w_attr_str(w, "/", "schema", "medkd-eval-report/1");
    mk_h5w_attr_str(w, "/", "version", rep->version ? rep->version : "");
    mk_h5w_attr_str(w, "/", "command_line", rep->command_line ? rep->command_line : "");
    mk_h5w_attr_str(w, "/", "convention", mk_metric_conv_name(rep->convention));
    mk_h5w_attr_f64(w, "/", "tolerance_mm", rep->tolerance_mm);
    mk_h5w_attr_f64(w, "/", "percentile", rep->percentile);
    mk_h5w_attr_str(w, "/", "created", rep->created);
    mk_h5w_attr_str(w, "/", "definitions", mk_eval_definition_text(rep->convention));
    mk_h5w_attr_str(w, "/", "empty_policy", mk_eval_empty_policy_text(rep->both_empty));
    mk_h5w_attr_str(w, "/", "both_empty", mk_metric_both_empty_name(rep->both_empty));
    for (int k = 0; k < MK__NRUN; k++)
        if (run_field(rep, k)) {
            snprintf(name, sizeof name, "run_%s", RUN_FIELDS[k]);
            mk_h5w_attr_str(w, "/", name, run_field(rep, k));
        }
    mk_h5w_i64(w, "/labels", 1, &L, rep->labels);
    if (rep->label_names)
        mk_h5w_strings(w, "/label_names", L, rep->label_names);
    for (int i = 0; i < N; i++)
        sb[i] = rep->cases[i].id;
    mk_h5w_strings(w, "/cases/id", N, sb);
    for (int i = 0; i < N; i++)
        sb[i] = rep->cases[i].pred;
    mk_h5w_strings(w, "/cases/pred", N, sb);
    for (int i = 0; i < N; i++)
        sb[i] = rep->cases[i].ref;
    mk_h5w_strings(w, "/cases/ref", N, sb);
    int any_image = 0;
    for (int i = 0; i < N; i++)
        any_image |= rep->cases[i].image != NULL;
    if (any_image) {
        for (int i = 0; i < N; i++)
            sb[i] = rep->cases[i].image ? rep->cases[i].image : "";
        mk_h5w_strings(w, "/cases/image", N, sb);
    }
    mk_h5w_strings(w, "/unpaired/pred", rep->nunpaired_pred,
                   (const char *const *)rep->unpaired_pred);
    mk_h5w_strings(w, "/unpaired/ref", rep->nunpaired_ref, (const char *const *)rep->unpaired_ref);
    const int64_t d2[2] = {N, L}, d3[3] = {N, L, 2};
    for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
        snprintf(name, sizeof name, "/metrics/%s", METRIC_NAMES[m]);
        if (m == 7 || m == 8) {
            for (int i = 0; i < N; i++)
                for (int j = 0; j < L; j++)
                    ibuf[i * L + j] =
                        m == 7 ? rep->cases[i].res[j].voxels_pred : rep->cases[i].res[j].voxels_ref;
            mk_h5w_i64(w, name, 2, d2, ibuf);
        } else {
            for (int i = 0; i < N; i++)
                for (int j = 0; j < L; j++)
                    buf[i * L + j] = mk_eval_metric_value(&rep->cases[i].res[j], m);
            mk_h5w_f64(w, name, 2, d2, buf);
        }
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < L; j++)
            ebuf[i * L + j] = (int8_t)rep->cases[i].res[j].empty;
    mk_h5w_i8(w, "/metrics/empty", 2, d2, ebuf);
    mk_h5w_attr_str(w, "/metrics/empty", "codes", "0=none,1=pred,2=ref,3=both");
    mk_h5w_attr_str(w, "/metrics", "axes", "case, label (see /cases, /labels)");
    const char *dn[5] = {"hd", "hd95", "mean", "surface", "surface_within_tolerance"};
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < L; j++)
                for (int d = 0; d < 2; d++) {
                    const mk_metric_result *r = &rep->cases[i].res[j];
                    const double *src = k == 0   ? r->dir_hd
                                        : k == 1 ? r->dir_hd95
                                        : k == 2 ? r->dir_mean
                                        : k == 3 ? r->surface
                                                 : r->surface_within;
                    buf[(i * L + j) * 2 + d] = src[d];
                }
        snprintf(name, sizeof name, "/directed/%s", dn[k]);
        mk_h5w_f64(w, name, 3, d3, buf);
    }
    mk_h5w_attr_str(w, "/directed", "axes",
                    "case, label, direction (0 = ref_to_pred, 1 = pred_to_ref)");
    /* summary */
    mk_h5w_attr_i64(w, "/summary", "n_cases", N);
    mk_h5w_attr_str(w, "/summary", "empty_policy", mk_eval_empty_policy_text(rep->both_empty));
    for (int j = 0; j < L; j++) {
        for (int e = 0; e < 4; e++)
            sn[j * 4 + e] = 0;
        for (int i = 0; i < N; i++)
            sn[j * 4 + rep->cases[i].res[j].empty]++;
    }
    const int64_t de[2] = {L, 4};
    mk_h5w_i64(w, "/summary/empty_counts", 2, de, sn);
    mk_h5w_attr_str(w, "/summary/empty_counts", "columns", "none,pred,ref,both");
    for (int j = 0; j < L; j++)
        ibuf[j] = mk_eval_excluded(rep, j);
    mk_h5w_i64(w, "/summary/n_excluded", 1, &L, ibuf);
    const char *stn[9] = {"mean", "std", "median",      "q1",        "q3",
                          "min",  "max", "mean_finite", "std_finite"};
    for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
        int64_t cnt[3 * 64];
        int64_t *cn = L <= 64 ? cnt : malloc((size_t)L * 3 * sizeof *cn);
        if (!cn) {
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
            goto out;
        }
        for (int j = 0; j < L; j++) {
            mk_metric_stats s;
            summarize(rep, j, m, &s);
            double vals[9] = {s.mean, s.std, s.median,      s.q1,        s.q3,
                              s.min,  s.max, s.mean_finite, s.std_finite};
            for (int k = 0; k < 9; k++)
                sv[k * L + j] = vals[k];
            cn[0 * L + j] = s.n_finite;
            cn[1 * L + j] = s.n_inf;
            cn[2 * L + j] = s.n_nan;
        }
        for (int k = 0; k < 9; k++) {
            snprintf(name, sizeof name, "/summary/%s/%s", METRIC_NAMES[m], stn[k]);
            mk_h5w_f64(w, name, 1, &L, sv + k * L);
        }
        const char *cnn[3] = {"n_finite", "n_inf", "n_nan"};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "/summary/%s/%s", METRIC_NAMES[m], cnn[k]);
            mk_h5w_i64(w, name, 1, &L, cn + k * L);
        }
        if (cn != cnt)
            free(cn);
    }
out:
    free(buf);
    free(ibuf);
    free(ebuf);
    free(sb);
    free(sv);
    free(sn);
    if (st != MK_OK) {
        mk_h5w_abort(w);
        return st;
    }
    return mk_h5w_commit(w);
}
