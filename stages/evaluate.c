/* The evaluate stage (see mk_evaluate.h). */
#include "mk_evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "io/mk_manifest.h"
#include "report/mk_report.h"

static char *dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarise(const mk_eval_report *rep, const char *name, mk_eval_model_summary *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->cases = rep->ncases;
    if (rep->ncases == 0)
        return;
    double *d = malloc(sizeof *d * (size_t)rep->ncases);
    double sum = 0, sum2 = 0, h = 0, a = 0, sd = 0;
    int nf = 0;
    for (int i = 0; i < rep->ncases; i++) {
        const mk_metric_result *r = &rep->cases[i].res[0];
        if (d)
            d[i] = r->dice;
        sum += r->dice;
        sum2 += r->dice * r->dice;
        if (isfinite(r->hd95) && isfinite(r->assd)) {
            h += r->hd95;
            a += r->assd;
            nf++;
        } else {
            s->n_infinite++;
        }
        sd += r->surface_dice;
    }
    int n = rep->ncases;
    s->dice_mean = sum / n;
    s->dice_std = n > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / n) / (n - 1))) : 0.0;
    if (d) {
        qsort(d, (size_t)n, sizeof *d, cmp_double);
        s->dice_median = n % 2 ? d[n / 2] : 0.5 * (d[n / 2 - 1] + d[n / 2]);
        free(d);
    }
    s->hd95_mean = nf ? h / nf : NAN;
    s->assd_mean = nf ? a / nf : NAN;
    s->sdice_mean = sd / n;
}

/* Evaluate one model on every CT row of the split. */
static mk_status eval_model(mk_ctx *ctx, const mk_stage_common *c, const mk_eval_stage_params *ep,
                            const mk_manifest *m, const mk_eval_model *model, mk_eval_report *rep)
{
    const mk_data_params *dp = &c->data;
    mk_status st = MK_OK;
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/masks/%s", c->run_dir, model->name);
    if (ep->write_masks && (st = mk_fs_mkdirs(ctx, dir)) != MK_OK)
        return st;
    int total = 0;
    for (int r = 0; r < m->nrows; r++)
        if (!strcmp(m->rows[r].modality, dp->ct_modality) && !strcmp(m->rows[r].split, ep->split))
            total++;
    if (total == 0)
        return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: no %s rows in split '%s' to evaluate",
                      m->source, dp->ct_modality, ep->split);
    rep->cases = calloc((size_t)total, sizeof *rep->cases);
    rep->labels = malloc(sizeof *rep->labels);
    if (!rep->cases || !rep->labels)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    rep->labels[0] = dp->label;
    rep->nlabels = 1;
    mk_metric_opts mo;
    mk_metric_opts_default(&mo);
    mo.convention = ep->convention;
    mo.tolerance_mm = ep->tolerance_mm;
    int pcol = -1;
    if (model->input_column) {
        if (model->translator_h5)
            return mk_err(ctx, MK_ERR_INVALID, "evaluate %s: input_column and a translator "
                          "exclude each other", model->name);
        pcol = mk_manifest_extra_index(m, model->input_column);
        if (pcol < 0)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: expected a column '%s' naming each %s case's "
                          "paired MRI for model %s (`pipeline synth --paired` writes it), found "
                          "none", m->source, model->input_column, dp->ct_modality, model->name);
    }
    char what[64];
    snprintf(what, sizeof what, "evaluate %s", model->name);
    for (int r = 0; r < m->nrows && st == MK_OK; r++) {
        const mk_manifest_row *row = &m->rows[r];
        if (strcmp(row->modality, dp->ct_modality) || strcmp(row->split, ep->split))
            continue;
        if (!row->label_path) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s:%d: label: the evaluation split needs a reference "
                        "mask for case '%s'", m->source, row->line, row->id);
            break;
        }
        mk_image *ct = NULL, *ref = NULL, *mask = NULL, *pmri = NULL;
        int want_pmri = ep->write_pmri && model->translator_h5;
        if ((st = mk_io_read_image(ctx, row->image_path, &ct)) != MK_OK ||
            (st = mk_io_read_image(ctx, row->label_path, &ref)) != MK_OK)
            goto next;
        if (!mk_geom_same_grid(ct, ref, 1e-4)) {
            st = mk_err(ctx, MK_ERR_GEOMETRY, "%s:%d: image %s and label %s are on different grids",
                        m->source, row->line, row->image_path, row->label_path);
            goto next;
        }
        if (pcol >= 0) {
            mk_image *mr = NULL;
            st = mk_data_read_paired(ctx, m, row, pcol, ct, &mr);
            if (st == MK_OK)
                st = mk_stage_predict_volume_mr(ctx, model->model_h5, &c->unet, mr, dp,
                                                c->threads, &mask);
            mk_image_free(mr);
            if (st != MK_OK)
                goto next;
        } else if ((st = mk_stage_predict_volume_via(ctx, model->model_h5, &c->unet,
                                                     model->translator_h5, model->gen_width, ct,
                                                     dp, c->threads, &mask,
                                                     want_pmri ? &pmri : NULL)) != MK_OK)
            goto next;
        if (want_pmri) {
            char pdir[4200], ppath[4400];
            snprintf(pdir, sizeof pdir, "%s/pmri", c->run_dir);
            snprintf(ppath, sizeof ppath, "%s/%s.nii.gz", pdir, row->id);
            if ((st = mk_fs_mkdirs(ctx, pdir)) != MK_OK ||
                (st = mk_io_write_image(ctx, ppath, pmri)) != MK_OK)
                goto next;
        }
        if (ep->largest_component &&
            (st = mk_stage_keep_largest_component(ctx, mask, dp->label, NULL)) != MK_OK)
            goto next;
        snprintf(path, sizeof path, "%s/%s.nii.gz", dir, row->id);
        if (ep->write_masks && (st = mk_io_write_image(ctx, path, mask)) != MK_OK)
            goto next;
        mk_metric_vol pv, rv;
        if ((st = mk_report_metric_vol(ctx, mask, path, &pv)) != MK_OK ||
            (st = mk_report_metric_vol(ctx, ref, row->label_path, &rv)) != MK_OK)
            goto next;
        mk_eval_case *ec = &rep->cases[rep->ncases];
        ec->id = dup(row->id);
        ec->pred = dup(ep->write_masks ? path : "(not written)");
        ec->ref = dup(row->label_path);
        ec->res = calloc(1, sizeof *ec->res);
        rep->ncases++;
        if (!ec->id || !ec->pred || !ec->ref || !ec->res) {
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            goto next;
        }
        st = mk_metric_eval(ctx, &pv, &rv, rep->labels, 1, &mo, ec->res);
        if (st == MK_OK)
            mk_progress(ctx, what, rep->ncases, total, "case", NULL);
    next:
        if (st != MK_OK)
            mk_err_prefix(ctx, "case %s", row->id);
        mk_image_free(ct);
        mk_image_free(ref);
        mk_image_free(mask);
        mk_image_free(pmri);
        if (ctx->cancel && st == MK_OK)
            st = mk_err(ctx, MK_ERR_ABORTED, "interrupted");
    }
    return st;
}

typedef struct summary_args {
    const mk_eval_stage_params *ep;
    int blend_uniform;
    const mk_eval_model_summary *s;
    int n;
} summary_args;

static void print_summary_json(FILE *f, const void *arg)
{
    const summary_args *a = arg;
    const mk_eval_stage_params *ep = a->ep;
    const mk_eval_model_summary *s = a->s;
    fprintf(f, "{\"split\": \"%s\", \"convention\": \"%s\", \"tolerance_mm\": %.17g, "
               "\"window_blend\": \"%s\", \"largest_component\": %s, \"models\": [",
            ep->split, mk_metric_conv_name(ep->convention), ep->tolerance_mm,
            a->blend_uniform ? "uniform" : "gaussian", ep->largest_component ? "true" : "false");
    for (int i = 0; i < a->n; i++) {
        fprintf(f,
                "%s\n  {\"name\": \"%s\", \"cases\": %d, \"dice_mean\": %.6f, \"dice_std\": %.6f, "
                "\"dice_median\": %.6f, ",
                i ? "," : "", s[i].name, s[i].cases, s[i].dice_mean, s[i].dice_std,
                s[i].dice_median);
        if (isfinite(s[i].hd95_mean))
            fprintf(f, "\"hd95_mean_mm\": %.6f, \"assd_mean_mm\": %.6f, ", s[i].hd95_mean,
                    s[i].assd_mean);
        else
            fprintf(f, "\"hd95_mean_mm\": \"nan\", \"assd_mean_mm\": \"nan\", ");
        fprintf(f, "\"surface_dice_mean\": %.6f, \"cases_with_infinite_distance\": %d}",
                s[i].sdice_mean, s[i].n_infinite);
    }
    fprintf(f, "\n]}\n");
}

/* Markdown for people */
static void print_summary_md(FILE *f, const void *arg)
{
    const summary_args *a = arg;
    const mk_eval_stage_params *ep = a->ep;
    const mk_eval_model_summary *s = a->s;
    fprintf(f, "# Evaluation on split '%s'\n\nSurface distances: %s convention; surface Dice "
               "tolerance %.2f mm.\nHD95 and ASSD are averaged over cases where both masks are "
               "non-empty; the count of the others is given.\n\n",
            ep->split, mk_metric_conv_name(ep->convention), ep->tolerance_mm);
    fprintf(f, "Overlapping inference windows are blended with %s.\n\n",
            a->blend_uniform ? "equal weights" : "Gaussian weights (sigma = patch / 8)");
    if (ep->largest_component)
        fprintf(f, "Every mask keeps only its largest connected component (6-connected).\n\n");
    fprintf(f, "| model | cases | Dice mean ± sd | Dice median | HD95 mm | ASSD mm | surface Dice | "
               "cases with an empty mask |\n|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < a->n; i++)
        fprintf(f, "| %s | %d | %.3f ± %.3f | %.3f | %.2f | %.2f | %.3f | %d |\n", s[i].name,
                s[i].cases, s[i].dice_mean, s[i].dice_std, s[i].dice_median, s[i].hd95_mean,
                s[i].assd_mean, s[i].sdice_mean, s[i].n_infinite);
    fprintf(f, "\nPer-case values: reports/<model>.csv (spreadsheets), reports/<model>.h5 (h5py), "
               "reports/<model>.json.\n");
}

static mk_status write_summary(mk_ctx *ctx, const char *run_dir, const mk_eval_stage_params *ep,
                               int blend_uniform, const mk_eval_model_summary *s, int n)
{
    char path[4200];
    summary_args a = {ep, blend_uniform, s, n};
    snprintf(path, sizeof path, "%s/reports/summary.json", run_dir);
    mk_status st = mk_fs_write_atomic_printed(ctx, path, print_summary_json, &a);
    if (st != MK_OK)
        return st;
    snprintf(path, sizeof path, "%s/reports/summary.md", run_dir);
    return mk_fs_write_atomic_printed(ctx, path, print_summary_md, &a);
}

mk_status mk_stage_evaluate(mk_ctx *ctx, const mk_stage_common *c, const mk_eval_stage_params *ep,
                            const mk_eval_model *models, int n, mk_eval_model_summary *summaries)
{
    if (n <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "evaluate: no trained model to evaluate");
    for (int i = 0; i < n; i++)
        if (!mk_fs_is_file(models[i].model_h5))
            return mk_err(ctx, MK_ERR_NOT_FOUND,
                          "evaluate: model '%s' has no trained weights at %s (run its training "
                          "stage first)",
                          models[i].name, models[i].model_h5);
    mk_manifest *m = NULL;
    mk_status st = mk_manifest_read(ctx, c->data.manifest, &m);
    if (st != MK_OK)
        return st;
    char rdir[4200];
    snprintf(rdir, sizeof rdir, "%s/reports", c->run_dir);
    if ((st = mk_fs_mkdirs(ctx, rdir)) != MK_OK) {
        mk_manifest_free(m);
        return st;
    }
    mk_eval_model_summary *sum = calloc((size_t)n, sizeof *sum);
    if (!sum) {
        mk_manifest_free(m);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n && st == MK_OK; i++) {
        mk_eval_report rep;
        memset(&rep, 0, sizeof rep);
        rep.version = ep->version;
        rep.command_line = ep->command_line;
        rep.convention = ep->convention;
        rep.tolerance_mm = ep->tolerance_mm;
        rep.percentile = 95.0;
        mk_eval_report_stamp(&rep);
        st = eval_model(ctx, c, ep, m, &models[i], &rep);
        char path[4400];
        if (st == MK_OK) {
            snprintf(path, sizeof path, "%s/%s.h5", rdir, models[i].name);
            st = mk_report_eval_h5(ctx, &rep, path);
        }
        if (st == MK_OK) {
            snprintf(path, sizeof path, "%s/%s.json", rdir, models[i].name);
            st = mk_report_eval_json(ctx, &rep, path);
        }
        if (st == MK_OK) {
            snprintf(path, sizeof path, "%s/%s.csv", rdir, models[i].name);
            st = mk_report_eval_csv(ctx, &rep, path);
        }
        if (st == MK_OK) {
            summarise(&rep, models[i].name, &sum[i]);
            MK_LOG_I(ctx,
                     "evaluate %s: %d cases, Dice %.3f ± %.3f (median %.3f), HD95 %.2f mm, "
                     "ASSD %.2f mm, surface Dice %.3f",
                     sum[i].name, sum[i].cases, sum[i].dice_mean, sum[i].dice_std,
                     sum[i].dice_median, sum[i].hd95_mean, sum[i].assd_mean, sum[i].sdice_mean);
        }
        mk_eval_report_clear(&rep);
    }
    if (st == MK_OK)
        st = write_summary(ctx, c->run_dir, ep, c->data.blend_uniform, sum, n);
    if (st == MK_OK && summaries)
        memcpy(summaries, sum, sizeof *sum * (size_t)n);
    free(sum);
    mk_manifest_free(m);
    return st;
}
