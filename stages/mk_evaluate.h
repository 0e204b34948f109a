/* medkd evaluate stage: inference with trained students on an evaluation split, masks written as
 * NIfTI with each input's exact geometry, metrics through metrics/, and the reports.
 *
 * For every model and every manifest row of the CT modality in the split:
 *   masks/<model>/<id>.nii.gz     uint8 mask, geometry (qform/sform) of the input CT, holding
 *                                 the label value of each structure (data.labels)
 *   reports/<model>.h5|.json|.csv the evaluation report of report/ (docs/report-schema.md), every
 *                                 structure of the label mapping scored (labels, label_names)
 * and over all models (written by report/summary.c, mk_report_summary_json / _md):
 *   reports/summary.json          per model: mean, std, median of dice, hd95, assd, surface dice
 *                                 over cases and structures, the network's parameter count, and
 *                                 the same per structure (with mean volumes)
 *   reports/summary.md            the same as tables a radiologist can read
 *   reports/report.html           the page for radiologists (report/html.c, when
 *                                 ep->report_html): summaries, plots, paired comparisons of
 *                                 every pair of models (also in summary.json "comparisons"),
 *                                 per-case tables and image panels of the worst cases
 * Every file is written atomically (temporary name, then rename). This file only computes:
 * masks, metrics, summaries (mk_report_model_summarise).
 */
#ifndef MK_EVALUATE_H
#define MK_EVALUATE_H

#include "metrics/mk_metrics.h"
#include "report/mk_report.h"
#include "stages/mk_stages.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_eval_model {
    const char *name;          /* "cmedl", "baseline" (folder and report names) */
    const char *model_h5;      /* trained student (mk_model_save file) */
    const char *translator_h5; /* NULL, or a translator whose G maps the CT first (the teacher on
                                  pseudo-MRI) */
    int gen_width;             /* G's width when translator_h5 is set */
    const char *modality;      /* NULL: the model segments the split's rows of data.ct_modality
                                  (normalised as CT); else the rows of this modality (normalised
                                  as CT when it is data.ct_modality, else as MRI) */
    const char *input_column;  /* NULL: the model segments the CT; else the manifest column naming
                                  each case's paired MRI (pipeline synth --paired), which it
                                  segments instead (the teacher on the oracle pseudo-MRI). The
                                  paired image must lie on the CT's grid; scored against the CT's
                                  label. Not with translator_h5. */
} mk_eval_model;

typedef struct mk_eval_stage_params {
    const char *split;   /* manifest split to evaluate ("test") */
    double tolerance_mm; /* surface Dice tolerance */
    mk_metric_conv convention;
    int write_masks;                 /* 0: metrics only */
    mk_metric_both_empty both_empty; /* a structure in neither mask of a case (docs/metrics.md) */
    int largest_component;           /* 1: keep the largest connected component of each structure */
    int write_pmri;                  /* 1: models with a translator also write pmri/<case>.nii.gz */
    const char *version;             /* provenance for the reports */
    const char *command_line;
    const char *config_hash; /* NULL or the run's config hash (recorded in the reports) */
    int report_html;         /* 1: also reports/report.html (mk_report_html) */
    double report_window[2]; /* CT panels' grey window (MRI: each image's percentiles) */
    int report_worst;        /* image panels of the N worst cases (and the best one) per model */
    int bootstrap;           /* bootstrap resamples of the intervals and comparisons */
} mk_eval_stage_params;

/* Per-model summary over the cases and structures (infinite distances are counted, not
 * averaged): name, cases, dice_mean/std/median, hd95_mean, assd_mean, sdice_mean, n_infinite,
 * params (the U-Net's trainable parameters), nstructures and structures[] (per label value).
 * See report/mk_report.h. */
/* The split evaluation scores for `split` ("auto": "test" when m has labelled rows of modality
 * there, else "val"; any other value as it is). */
const char *mk_eval_split(const mk_manifest *m, const char *modality, const char *split);

typedef mk_report_model_summary mk_eval_model_summary;

/* Evaluate `n` models. summaries (may be NULL) receives n entries. */
mk_status mk_stage_evaluate(mk_ctx *ctx, const mk_stage_common *c, const mk_eval_stage_params *ep,
                            const mk_eval_model *models, int n, mk_eval_model_summary *summaries);

#ifdef __cplusplus
}
#endif
#endif
