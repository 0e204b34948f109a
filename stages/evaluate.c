/* The evaluate stage (see mk_evaluate.h). */
#include "mk_evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "stages/mk_infer.h"
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

/* The trainable parameter count of a model's U-Net, loaded from its file. */
static mk_status model_params(mk_ctx *ctx, const mk_unet_cfg *cfg, const mk_eval_model *model,
                              int64_t *out)
{
    mk_unet *net = NULL;
    mk_unet_cfg own = *cfg; /* the shape the file describes, when it does */
    int described = 0;
    mk_status st = mk_infer_model_shape(ctx, model->model_h5, &own, &described);
    if (st == MK_OK)
        st = mk_unet_new(ctx, &own, 0, &net);
    if (st == MK_OK &&
        (st = mk_model_load(ctx, model->model_h5, "params", mk_unet_params(net), NULL)) == MK_OK)
        *out = mk_nn_params_numel(mk_unet_params(net));
    mk_unet_free(net);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "evaluate %s", model->name);
    return MK_OK;
}

/* Evaluate one model on every CT row of the split. */
static mk_status eval_model(mk_ctx *ctx, const mk_stage_common *c, const mk_eval_stage_params *ep,
                            const mk_manifest *m, const mk_eval_model *model, mk_eval_report *rep)
{
    const mk_data_params *dp = &c->data;
    /* the rows it segments: its modality's (normalised as CT when that is the CT modality) */
    const char *mod = model->modality ? model->modality : dp->ct_modality;
    int is_ct = strcmp(mod, dp->ct_modality) == 0;
    const char *split = mk_eval_split(m, mod, ep->split);
    mk_status st = MK_OK;
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/masks/%s", c->run_dir, model->name);
    if (ep->write_masks && (st = mk_fs_mkdirs(ctx, dir)) != MK_OK)
        return st;
    int total = 0;
    for (int r = 0; r < m->nrows; r++)
        if (!strcmp(m->rows[r].modality, mod) && !strcmp(m->rows[r].split, split))
            total++;
    if (total == 0)
        return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: no %s rows in split '%s' to evaluate", m->source,
                      mod, split);
    if (strcmp(split, ep->split))
        MK_LOG_I(ctx,
                 "evaluate %s: split '%s' (evaluate.split = \"%s\": the test split has no "
                 "labelled %s case)",
                 model->name, split, ep->split, mod);
    /* every structure of the label mapping, in class order (ascending label values) */
    int L = mk_data_nstructures(dp), values[MK_MAX_CLASSES];
    rep->cases = calloc((size_t)total, sizeof *rep->cases);
    rep->labels = malloc(sizeof *rep->labels * (size_t)L);
    if (!rep->cases || !rep->labels)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    for (int j = 0; j < L; j++)
        rep->labels[j] = values[j] = mk_data_value_of_class(dp, j + 1);
    rep->nlabels = L;
    mk_metric_opts mo;
    mk_metric_opts_default(&mo);
    mo.convention = ep->convention;
    mo.tolerance_mm = ep->tolerance_mm;
    mo.both_empty = ep->both_empty;
    int pcol = -1;
    if (model->input_column) {
        if (model->translator_h5)
            return mk_err(ctx, MK_ERR_INVALID,
                          "evaluate %s: input_column and a translator "
                          "exclude each other",
                          model->name);
        pcol = mk_manifest_extra_index(m, model->input_column);
        if (pcol < 0)
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: expected a column '%s' naming each %s case's "
                          "paired MRI for model %s (`pipeline synth --paired` writes it), found "
                          "none",
                          m->source, model->input_column, dp->ct_modality, model->name);
    }
    char what[64];
    snprintf(what, sizeof what, "evaluate %s", model->name);
    for (int r = 0; r < m->nrows && st == MK_OK; r++) {
        const mk_manifest_row *row = &m->rows[r];
        if (strcmp(row->modality, mod) || strcmp(row->split, split))
            continue;
        if (!row->label_path) {
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s:%d: label: the evaluation split needs a reference "
                        "mask for case '%s'",
                        m->source, row->line, row->id);
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
                st = mk_stage_predict_volume_mr(ctx, model->model_h5, &c->unet, mr, dp, c->threads,
                                                &mask);
            mk_image_free(mr);
            if (st != MK_OK)
                goto next;
        } else if (!is_ct) {
            if (model->translator_h5) {
                st = mk_err(ctx, MK_ERR_INVALID, "evaluate %s: a translator maps CT, not %s",
                            model->name, mod);
                goto next;
            }
            if ((st = mk_stage_predict_volume_mr(ctx, model->model_h5, &c->unet, ct, dp, c->threads,
                                                 &mask)) != MK_OK)
                goto next;
        } else if ((st = mk_stage_predict_volume_via(
                        ctx, model->model_h5, &c->unet, model->translator_h5, model->gen_width, ct,
                        dp, c->threads, &mask, want_pmri ? &pmri : NULL)) != MK_OK)
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
            (st = mk_stage_keep_largest_components(ctx, mask, values, L, NULL)) != MK_OK)
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
        ec->image = dup(row->image_path);
        ec->res = calloc((size_t)L, sizeof *ec->res);
        rep->ncases++;
        if (!ec->id || !ec->pred || !ec->ref || !ec->image || !ec->res) {
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            goto next;
        }
        st = mk_metric_eval(ctx, &pv, &rv, rep->labels, L, &mo, ec->res);
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

const char *mk_eval_split(const mk_manifest *m, const char *modality, const char *split)
{
    if (strcmp(split, "auto"))
        return split;
    for (int r = 0; r < m->nrows; r++)
        if (!strcmp(m->rows[r].split, "test") && !strcmp(m->rows[r].modality, modality) &&
            m->rows[r].label_path)
            return "test";
    return "val";
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
    mk_status st = mk_data_check_labels(ctx, &c->data);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "evaluate");
    /* structure names of the reports, in label order */
    char names[MK_MAX_CLASSES][32];
    const char *name_of[MK_MAX_CLASSES];
    for (int j = 0; j < mk_data_nstructures(&c->data); j++)
        name_of[j] = mk_data_class_name(&c->data, j + 1, names[j], sizeof names[j]);
    mk_manifest *m = NULL;
    if ((st = mk_data_manifest(ctx, &c->data, &m)) != MK_OK)
        return st;
    char rdir[4200];
    snprintf(rdir, sizeof rdir, "%s/reports", c->run_dir);
    if ((st = mk_fs_mkdirs(ctx, rdir)) != MK_OK) {
        mk_manifest_free(m);
        return st;
    }
    mk_eval_model_summary *sum = calloc((size_t)n, sizeof *sum);
    mk_eval_report *reps = calloc((size_t)n, sizeof *reps);
    if (!sum || !reps) {
        free(sum);
        free(reps);
        mk_manifest_free(m);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n && st == MK_OK; i++) {
        mk_eval_report *rp = &reps[i];
        mk_eval_report rep;
        memset(&rep, 0, sizeof rep);
        rep.version = ep->version;
        rep.command_line = ep->command_line;
        rep.convention = ep->convention;
        rep.tolerance_mm = ep->tolerance_mm;
        rep.both_empty = ep->both_empty;
        rep.percentile = 95.0;
        rep.label_names = name_of;
        mk_eval_report_stamp(&rep);
        const char *blend = c->data.blend_uniform ? "uniform" : "gaussian";
        const char *post =
            ep->largest_component ? "largest connected component per structure" : "none";
        const char *mod = models[i].modality ? models[i].modality : c->data.ct_modality;
        if ((ep->config_hash && !(rep.config_hash = dup(ep->config_hash))) ||
            !(rep.split = dup(mk_eval_split(m, mod, ep->split))) ||
            !(rep.data = dup(c->data.manifest)) || !(rep.model_file = dup(models[i].model_h5)) ||
            !(rep.modality = dup(models[i].input_column ? models[i].input_column : mod)) ||
            !(rep.window_blend = dup(blend)) || !(rep.postprocess = dup(post)) ||
            (models[i].translator_h5 && !(rep.translator = dup(models[i].translator_h5))))
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        int64_t params = -1;
        if (st == MK_OK)
            st = model_params(ctx, &c->unet, &models[i], &params);
        if (st == MK_OK)
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
        if (st == MK_OK)
            st = mk_report_model_summarise(ctx, &rep, models[i].name, params, &sum[i]);
        if (st == MK_OK) {
            MK_LOG_I(ctx,
                     "evaluate %s: %d cases, Dice %.3f ± %.3f (median %.3f), HD95 %.2f mm, "
                     "ASSD %.2f mm, surface Dice %.3f",
                     sum[i].name, sum[i].cases, sum[i].dice_mean, sum[i].dice_std,
                     sum[i].dice_median, sum[i].hd95_mean, sum[i].assd_mean, sum[i].sdice_mean);
            for (int j = 0; sum[i].nstructures > 1 && j < sum[i].nstructures; j++) {
                const mk_report_structure_summary *t = &sum[i].structures[j];
                MK_LOG_I(ctx, "evaluate %s: %s (label %lld): Dice %.3f ± %.3f, HD95 %.2f mm",
                         sum[i].name, t->name, (long long)t->label, t->dice_mean, t->dice_std,
                         t->hd95_mean);
            }
        }
        *rp = rep; /* kept for the comparisons and the page */
    }
    mk_report_model *rm = calloc((size_t)n, sizeof *rm);
    mk_report_comparison *cmp = NULL;
    int ncmp = 0;
    if (st == MK_OK && !rm)
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    for (int i = 0; st == MK_OK && i < n; i++)
        rm[i] = (mk_report_model){models[i].name, &reps[i]};
    int B = ep->bootstrap > 0 ? ep->bootstrap : 2000;
    mk_report_html_opts ho;
    mk_report_html_opts_default(&ho);
    ho.bootstrap = B;
    if (st == MK_OK)
        st = mk_report_compare(ctx, rm, n, B, ho.seed, &cmp, &ncmp);
    mk_report_summary_info info = {ep->split,
                                   ep->convention,
                                   ep->tolerance_mm,
                                   c->data.blend_uniform,
                                   ep->largest_component,
                                   cmp,
                                   ncmp};
    char path[4400];
    if (st == MK_OK) {
        snprintf(path, sizeof path, "%s/summary.json", rdir);
        st = mk_report_summary_json(ctx, &info, sum, n, path);
    }
    if (st == MK_OK) {
        snprintf(path, sizeof path, "%s/summary.md", rdir);
        st = mk_report_summary_md(ctx, &info, sum, n, path);
    }
    if (st == MK_OK && ep->report_html) {
        snprintf(path, sizeof path, "%s/report.html", rdir);
        ho.version = ep->version;
        ho.source = c->run_dir;
        ho.title = "Segmentation evaluation";
        ho.worst = ep->report_worst;
        ho.best = ep->report_worst > 0 ? 1 : 0;
        /* CT at the configured window; any other modality at each image's percentiles */
        int ct = !strcmp(reps[0].modality ? reps[0].modality : "", c->data.ct_modality);
        ho.window_auto = !ct;
        ho.window[0] = ep->report_window[0];
        ho.window[1] = ep->report_window[1];
        if (ct && !(ho.window[0] < ho.window[1])) {
            ho.window[0] = -160;
            ho.window[1] = 240;
        }
        st = mk_report_html(ctx, &ho, rm, n, cmp, ncmp, path);
        if (st == MK_OK)
            MK_LOG_I(ctx, "report: %s", path);
    }
    if (st == MK_OK && summaries)
        memcpy(summaries, sum, sizeof *sum * (size_t)n);
    for (int i = 0; i < n; i++)
        mk_eval_report_clear(&reps[i]);
    free(reps);
    free(rm);
    free(cmp);
    free(sum);
    mk_manifest_free(m);
    return st;
}
