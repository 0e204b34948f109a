/* medkd evaluate stage: inference with trained students on an evaluation split, masks written as
 * NIfTI with each input's exact geometry, metrics through metrics/, and the reports.
 *
 * For every model and every manifest row of the CT modality in the split:
 *   masks/<model>/<id>.nii.gz     uint8 mask, geometry (qform/sform) of the input CT
 *   reports/<model>.h5|.json|.csv the evaluation report of report/ (docs/report-schema.md)
 * and over all models:
 *   reports/summary.json          per model: mean, std, median of dice, hd95, assd, surface dice
 *   reports/summary.md            the same as a table a radiologist can read
 * Every file is written atomically (temporary name, then rename).
 */
#ifndef MK_EVALUATE_H
#define MK_EVALUATE_H

#include "metrics/mk_metrics.h"
#include "stages/mk_stages.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_eval_model {
    const char *name;     /* "cmedl", "baseline" (folder and report names) */
    const char *model_h5; /* trained student (mk_model_save file) */
    const char *translator_h5; /* NULL, or a translator whose G maps the CT first (the teacher on
                                  pseudo-MRI) */
    int gen_width;             /* G's width when translator_h5 is set */
    const char *input_column;  /* NULL: the model segments the CT; else the manifest column naming
                                  each case's paired MRI (pipeline synth --paired), which it
                                  segments instead (the teacher on the oracle pseudo-MRI). The
                                  paired image must lie on the CT's grid; scored against the CT's
                                  label. Not with translator_h5. */
} mk_eval_model;

typedef struct mk_eval_stage_params {
    const char *split;          /* manifest split to evaluate ("test") */
    double tolerance_mm;        /* surface Dice tolerance */
    mk_metric_conv convention;
    int write_masks;            /* 0: metrics only */
    int largest_component;      /* 1: keep the largest connected component of each mask */
    int write_pmri;             /* 1: models with a translator also write pmri/<case>.nii.gz */
    const char *version;        /* provenance for the reports */
    const char *command_line;
} mk_eval_stage_params;

/* Per-model summary over the cases (NaN-free: infinite distances are counted, not averaged). */
typedef struct mk_eval_model_summary {
    char name[32];
    int cases;
    double dice_mean, dice_std, dice_median;
    double hd95_mean, assd_mean, sdice_mean; /* over cases with finite values */
    int n_infinite;                         /* cases with an empty prediction or reference */
} mk_eval_model_summary;

/* Evaluate `n` models. summaries (may be NULL) receives n entries. */
mk_status mk_stage_evaluate(mk_ctx *ctx, const mk_stage_common *c, const mk_eval_stage_params *ep,
                            const mk_eval_model *models, int n, mk_eval_model_summary *summaries);

#ifdef __cplusplus
}
#endif
#endif
