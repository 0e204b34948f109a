/* The run summary over several models: reports/summary.json and reports/summary.md of the
 * evaluate stage (layout: docs/report-schema.md, "Run summary"). The figures come from each
 * model's evaluation report (mk_report_model_summarise); the writers only print plain structs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "report_internal.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Accumulated figures of a set of (case, structure) results. A NaN Dice (a both-empty pair under
 * the "nan" policy) is left out of every figure but the volumes and counted in nex. */
typedef struct acc {
    double *dice; /* every Dice value, for the median (NULL: out of memory, median NaN) */
    int n, nf, ninf, nex;
    double sum, sum2, h, a, sd, vref, vpred;
} acc;

static void acc_add(acc *s, const mk_metric_result *r)
{
    s->vref += r->volume_ref_ml;
    s->vpred += r->volume_pred_ml;
    if (isnan(r->dice)) {
        s->nex++;
        return;
    }
    if (s->dice)
        s->dice[s->n] = r->dice;
    s->n++;
    s->sum += r->dice;
    s->sum2 += r->dice * r->dice;
    if (isfinite(r->hd95) && isfinite(r->assd)) {
        s->h += r->hd95;
        s->a += r->assd;
        s->nf++;
    } else {
        s->ninf++;
    }
    s->sd += r->surface_dice;
}

/* mean, sample sd, median of the Dice values; distance means over the finite pairs */
static void acc_finish(acc *s, double *mean, double *sd, double *median, double *hd95, double *assd,
                       double *sdice)
{
    int n = s->n;
    *mean = *sd = *median = *hd95 = *assd = *sdice = NAN;
    if (n == 0)
        return;
    *mean = s->sum / n;
    *sd = n > 1 ? sqrt(fmax(0.0, (s->sum2 - s->sum * s->sum / n) / (n - 1))) : 0.0;
    if (s->dice) {
        qsort(s->dice, (size_t)n, sizeof *s->dice, cmp_double);
        *median = n % 2 ? s->dice[n / 2] : 0.5 * (s->dice[n / 2 - 1] + s->dice[n / 2]);
    }
    *hd95 = s->nf ? s->h / s->nf : NAN;
    *assd = s->nf ? s->a / s->nf : NAN;
    *sdice = s->sd / n;
}

mk_status mk_report_model_summarise(mk_ctx *ctx, const mk_eval_report *rep, const char *model,
                                    int64_t params, mk_report_model_summary *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", model);
    snprintf(s->translator, sizeof s->translator, "%s", rep->translator ? rep->translator : "");
    s->params = params;
    s->cases = rep->ncases;
    if (rep->nlabels < 0 || rep->nlabels > MK_REPORT_MAX_STRUCTURES)
        return mk_err(ctx, MK_ERR_INVALID, "summary of %s: expected at most %d structures, got %d",
                      model, MK_REPORT_MAX_STRUCTURES, rep->nlabels);
    int N = rep->ncases, L = rep->nlabels;
    s->nstructures = L;
    double *buf = malloc(sizeof *buf * (size_t)(N * L + N + 1));
    acc all = {.dice = buf};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < L; j++)
            acc_add(&all, &rep->cases[i].res[j]);
    acc_finish(&all, &s->dice_mean, &s->dice_std, &s->dice_median, &s->hd95_mean, &s->assd_mean,
               &s->sdice_mean);
    s->n_infinite = all.ninf;
    s->n_excluded = all.nex;
    for (int j = 0; j < L; j++) {
        mk_report_structure_summary *t = &s->structures[j];
        acc one = {.dice = buf ? buf + N * L : NULL};
        for (int i = 0; i < N; i++)
            acc_add(&one, &rep->cases[i].res[j]);
        t->label = rep->labels[j];
        mk__eval_structure_name(rep, j, t->name, sizeof t->name);
        t->cases = N;
        acc_finish(&one, &t->dice_mean, &t->dice_std, &t->dice_median, &t->hd95_mean, &t->assd_mean,
                   &t->sdice_mean);
        t->volume_ref_ml_mean = N ? one.vref / N : NAN;
        t->volume_pred_ml_mean = N ? one.vpred / N : NAN;
        t->n_infinite = one.ninf;
        t->n_excluded = one.nex;
    }
    free(buf);
    return MK_OK;
}

/* ---------------------------------------------------------------- JSON */

/* "key": value with 6 decimals, or the string "nan" / "inf" */
static void jnum(FILE *f, const char *key, double v)
{
    fprintf(f, "\"%s\": ", key);
    if (isnan(v))
        fputs("\"nan\"", f);
    else if (isinf(v))
        fputs(v > 0 ? "\"inf\"" : "\"-inf\"", f);
    else
        fprintf(f, "%.6f", v);
}

typedef struct summary_args {
    const mk_report_summary_info *info;
    const mk_report_model_summary *m;
    int n;
} summary_args;

static void print_json(FILE *f, const void *arg)
{
    const summary_args *a = arg;
    const mk_report_summary_info *in = a->info;
    fputs("{\"split\": ", f);
    mk_json_put(f, in->split);
    fprintf(f,
            ", \"convention\": \"%s\", \"tolerance_mm\": %.17g, \"window_blend\": \"%s\", "
            "\"largest_component\": %s, \"models\": [",
            mk_metric_conv_name(in->convention), in->tolerance_mm,
            in->blend_uniform ? "uniform" : "gaussian", in->largest_component ? "true" : "false");
    for (int i = 0; i < a->n; i++) {
        const mk_report_model_summary *s = &a->m[i];
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
        mk_json_put(f, s->name);
        fprintf(f, ", \"cases\": %d, ", s->cases);
        jnum(f, "dice_mean", s->dice_mean);
        fputs(", ", f);
        jnum(f, "dice_std", s->dice_std);
        fputs(", ", f);
        jnum(f, "dice_median", s->dice_median);
        fputs(", ", f);
        jnum(f, "hd95_mean_mm", s->hd95_mean);
        fputs(", ", f);
        jnum(f, "assd_mean_mm", s->assd_mean);
        fputs(", ", f);
        jnum(f, "surface_dice_mean", s->sdice_mean);
        fprintf(f,
                ", \"cases_with_infinite_distance\": %d, \"both_empty_excluded\": %d, "
                "\"params\": ",
                s->n_infinite, s->n_excluded);
        if (s->params >= 0)
            fprintf(f, "%lld", (long long)s->params);
        else
            fputs("null", f);
        fputs(", \"translator\": ", f);
        if (s->translator[0])
            mk_json_put(f, s->translator);
        else
            fputs("null", f);
        fputs(", \"structures\": [", f);
        for (int j = 0; j < s->nstructures; j++) {
            const mk_report_structure_summary *t = &s->structures[j];
            fprintf(f, "%s\n    {\"label\": %lld, \"name\": ", j ? "," : "", (long long)t->label);
            mk_json_put(f, t->name);
            fprintf(f, ", \"cases\": %d, ", t->cases);
            jnum(f, "dice_mean", t->dice_mean);
            fputs(", ", f);
            jnum(f, "dice_std", t->dice_std);
            fputs(", ", f);
            jnum(f, "dice_median", t->dice_median);
            fputs(", ", f);
            jnum(f, "hd95_mean_mm", t->hd95_mean);
            fputs(", ", f);
            jnum(f, "assd_mean_mm", t->assd_mean);
            fputs(", ", f);
            jnum(f, "surface_dice_mean", t->sdice_mean);
            fputs(", ", f);
            jnum(f, "volume_ref_ml_mean", t->volume_ref_ml_mean);
            fputs(", ", f);
            jnum(f, "volume_pred_ml_mean", t->volume_pred_ml_mean);
            fprintf(f, ", \"cases_with_infinite_distance\": %d, \"both_empty_excluded\": %d}",
                    t->n_infinite, t->n_excluded);
        }
        fputs(s->nstructures ? "\n  ]}" : "]}", f);
    }
    fputs("\n], \"comparisons\": ", f);
    mk_report_comparisons_json(f, in->cmp, in->ncmp);
    fputs("}\n", f);
}

mk_status mk_report_summary_json(mk_ctx *ctx, const mk_report_summary_info *info,
                                 const mk_report_model_summary *models, int n, const char *path)
{
    summary_args a = {info, models, n};
    return mk_fs_write_atomic_printed(ctx, path, print_json, &a);
}

/* ---------------------------------------------------------------- Markdown for people */

static void print_md(FILE *f, const void *arg)
{
    const summary_args *a = arg;
    const mk_report_summary_info *in = a->info;
    int multi = 0;
    for (int i = 0; i < a->n; i++)
        multi |= a->m[i].nstructures > 1;
    fprintf(f,
            "# Evaluation on split '%s'\n\nSurface distances: %s convention; surface Dice "
            "tolerance %.2f mm.\nHD95 and ASSD are averaged over cases where both masks are "
            "non-empty; the count of the others is given.\n\n",
            in->split, mk_metric_conv_name(in->convention), in->tolerance_mm);
    fprintf(f, "Overlapping inference windows are blended with %s.\n\n",
            in->blend_uniform ? "equal weights" : "Gaussian weights (sigma = patch / 8)");
    if (in->largest_component)
        fprintf(f, "Every mask keeps only its largest connected component (6-connected) of each "
                   "structure.\n\n");
    if (multi)
        fprintf(f, "With several structures the model rows are over every (case, structure) "
                   "pair: the mean over cases and structures; the empty-mask count counts "
                   "pairs.\n\n");
    fprintf(f,
            "| model | cases | Dice mean ± sd | Dice median | HD95 mm | ASSD mm | surface Dice | "
            "cases with an empty mask | parameters |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < a->n; i++) {
        const mk_report_model_summary *s = &a->m[i];
        fprintf(f, "| %s | %d | %.3f ± %.3f | %.3f | %.2f | %.2f | %.3f | %d | ", s->name, s->cases,
                s->dice_mean, s->dice_std, s->dice_median, s->hd95_mean, s->assd_mean,
                s->sdice_mean, s->n_infinite);
        if (s->params >= 0)
            fprintf(f, "%lld |\n", (long long)s->params);
        else
            fputs("? |\n", f);
    }
    int via = 0;
    for (int i = 0; i < a->n; i++)
        if (a->m[i].translator[0]) {
            fprintf(f, "%s%s", via ? ", " : "\nSegmented after translation (G of the translator): ",
                    a->m[i].name);
            via = 1;
        }
    if (via)
        fputs(". The other models segmented the images as stored.\n", f);
    int excl = 0;
    for (int i = 0; i < a->n; i++)
        if (a->m[i].n_excluded) {
            fprintf(f, "%s%s %d",
                    excl ? ", "
                         : "\nLeft out of the Dice, HD95, ASSD and surface Dice figures as "
                           "both-empty (the structure in neither mask: NaN, nnU-Net's rule), "
                           "(case, structure) pairs: ",
                    a->m[i].name, a->m[i].n_excluded);
            excl = 1;
        }
    if (excl)
        fputs(".\n", f);
    for (int i = 0; i < a->n; i++) {
        const mk_report_model_summary *s = &a->m[i];
        fprintf(f,
                "\n## %s: per structure\n\n| structure | label | cases | Dice mean ± sd | "
                "Dice median | HD95 mm | ASSD mm | surface Dice | volume ref ml | volume pred "
                "ml | cases with an empty mask |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
                s->name);
        for (int j = 0; j < s->nstructures; j++) {
            const mk_report_structure_summary *t = &s->structures[j];
            fprintf(f,
                    "| %s | %lld | %d | %.3f ± %.3f | %.3f | %.2f | %.2f | %.3f | %.3f | %.3f | "
                    "%d |\n",
                    t->name, (long long)t->label, t->cases, t->dice_mean, t->dice_std,
                    t->dice_median, t->hd95_mean, t->assd_mean, t->sdice_mean,
                    t->volume_ref_ml_mean, t->volume_pred_ml_mean, t->n_infinite);
        }
        if (s->n_excluded) {
            fputs("\nLeft out as both-empty (NaN):", f);
            for (int j = 0, k = 0; j < s->nstructures; j++)
                if (s->structures[j].n_excluded)
                    fprintf(f, "%s %s %d case(s)", k++ ? "," : "", s->structures[j].name,
                            s->structures[j].n_excluded);
            fputs(".\n", f);
        }
    }
    fprintf(f, "\nPer-case values: reports/<model>.csv (spreadsheets), reports/<model>.h5 (h5py), "
               "reports/<model>.json.\n");
}

mk_status mk_report_summary_md(mk_ctx *ctx, const mk_report_summary_info *info,
                               const mk_report_model_summary *models, int n, const char *path)
{
    summary_args a = {info, models, n};
    return mk_fs_write_atomic_printed(ctx, path, print_md, &a);
}
