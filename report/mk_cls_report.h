/* medkd classification reports: the metrics of metrics/mk_classify.h per model, overall, per
 * group (e.g. staining site) and per slide, written as JSON, CSV and HDF5 beside the
 * segmentation reports, and a per-slide probability heat map over the slide thumbnail (PNG,
 * drawn by cairo).
 *
 *     mk_cls_eval e = {.nclass = 2, .class_names = names, .nslides = ns, .slide_ids = ids,
 *                      .slide_group = sites, .nmodels = 1, .models = &m};
 *     mk_cls_report_write(ctx, "run/reports", &e);  // classification.json/.csv/.h5
 */
#ifndef MK_CLS_REPORT_H
#define MK_CLS_REPORT_H

#include <stdint.h>

#include "core/mk_status.h"
#include "metrics/mk_classify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One model's predictions (borrowed arrays of n samples). */
typedef struct mk_cls_eval_model {
    const char *name;
    int64_t n;
    const int32_t *truth; /* class index, 0..nclass-1 */
    const float *prob;    /* [n][nclass] */
    const int32_t *slide; /* index into mk_cls_eval.slide_ids */
} mk_cls_eval_model;

typedef struct mk_cls_eval {
    int nclass;
    const char *const *class_names; /* nclass names (NULL: "0", "1", ...) */
    int nslides;
    const char *const *slide_ids;
    const char *const *slide_group; /* per slide, e.g. "siteA" (NULL: no groups) */
    int nmodels;
    const mk_cls_eval_model *models;
} mk_cls_eval;

/* Write dir/classification.json, dir/classification.csv and dir/classification.h5, each
 * atomically (in that order, after every input was checked and every figure computed):
 *   JSON  {"classes": [...], "models": [{"name", "overall": M, "groups": {g: M},
 *          "slides": {id: M}}]} with M = {"n", "accuracy", "balanced_accuracy", "auc",
 *          "auc_class", "precision", "recall", "f1", "support", "confusion"} (NaN as null);
 *   CSV   one row per model and scope: model,scope,scope_id,n,accuracy,balanced_accuracy,auc,
 *          then precision_<c>,recall_<c>,f1_<c> per class (NaN as empty);
 *   HDF5  /classes (strings), /slides (strings), /slide_group (strings, when given), and per
 *          model a group /<name> with truth int64 [n], prob float64 [n][nclass], slide int64 [n],
 *          confusion int64 [nclass][nclass] and attributes accuracy, balanced_accuracy, auc.
 * Scopes: "overall" (every sample of the model), "group" (one per distinct slide_group value, in
 * order of first appearance over slide_ids; a NULL entry is the group ""; none when slide_group
 * is NULL: "groups" is {} then) and "slide" (every slide of slide_ids, in its order). A model
 * without samples in a group or slide still has that scope, with n 0 and every figure NaN. CSV
 * rows: per model, overall, then the groups, then the slides; scope_id is "" for overall; <c> is
 * the class name; numbers in the shortest form that reads back exactly (also in the JSON).
 * dir must exist. Errors: MK_ERR_INVALID (a slide index or truth out of range or a NaN
 * probability, naming the model and sample; nclass outside 2..MK_CLS_MAX_CLASSES; a NULL slide
 * id or one given twice; a model name that is empty, used twice, longer than 255 bytes, holds
 * '/' or is ".", "..", "classes", "slides" or "slide_group"), MK_ERR_NOMEM, MK_ERR_IO (naming
 * the file). Nothing is written on an MK_ERR_INVALID. */
mk_status mk_cls_report_write(mk_ctx *ctx, const char *dir, const mk_cls_eval *e);

/* A probability heat map over a slide thumbnail, written atomically as PNG:
 * the thumbnail (tw x th RGB8, thumb_scale level-0 pixels per thumbnail pixel), each patch's
 * square (level-0 top-left xy[i] = (xy[2i], xy[2i+1]), level-0 side patch0) filled with a colour
 * map of prob[i] (0 blue .. 0.5 yellow .. 1 red, alpha 0.45), a colour bar with 0 / 0.5 / 1, and
 * a title line.
 * Layout (pixels): the image is max(tw, MK_CLS_HEATMAP_MIN_W) wide and MK_CLS_HEATMAP_TITLE_H +
 * th + MK_CLS_HEATMAP_BAR_H high; the title strip on top (title may be NULL), the thumbnail at
 * (0, MK_CLS_HEATMAP_TITLE_H) unscaled, so a pixel no patch covers is the thumbnail's own, the
 * colour bar strip below it. Patch squares are drawn on whole pixels (no antialiasing) and
 * clipped to the thumbnail; where patches overlap the later one is shown (the overlay's alpha
 * stays 0.45); prob is clamped to 0..1 and a NaN patch is not drawn.
 * Errors: MK_ERR_INVALID (sizes: tw or th < 1 or the image over 32767 px a side, thumb_scale not
 * > 0, n < 0, patch0 < 1, NULL arrays), MK_ERR_NOMEM, MK_ERR_IO (naming the file). */
#define MK_CLS_HEATMAP_TITLE_H 20
#define MK_CLS_HEATMAP_BAR_H 32
#define MK_CLS_HEATMAP_MIN_W 200

mk_status mk_cls_heatmap_png(mk_ctx *ctx, const char *path, const uint8_t *thumb, int tw, int th,
                             double thumb_scale, int64_t n, const int64_t *xy, int64_t patch0,
                             const float *prob, const char *title);

/* The classification HTML page: one self-contained file (no external resource: plots are inline
 * SVG, heat maps PNG data URIs), for pathologists and researchers. Contents (docs/report.md):
 * header (medkd version, date, what was evaluated, classes, models), conventions (patch label,
 * decision, metric definitions), summary per model and scope (overall, each group) with
 * accuracy, balanced accuracy, AUC and per-class precision / recall / F1, ROC curves (inline
 * SVG; two classes: class 1 against class 0, overall and per group; more: each class against the
 * rest, overall; each curve carries its points in data-roc="fpr,tpr ..." and its AUC in
 * data-auc), confusion matrices (counts and row percentages), a sortable per-slide table
 * (accuracy and AUC per model) and, per model, the heat maps of its worst and best slide by
 * accuracy (read from heatmap_dir/<model>/<slide>.png when present, scaled by cairo to at most
 * heatmap_width px wide; the other slides' maps linked under heatmap_href).
 * The figures are mk_cls_metrics_compute's over the same scopes as mk_cls_report_write's, so the
 * page agrees with classification.json. Written atomically. Errors: those of
 * mk_cls_report_write's validation (MK_ERR_INVALID, nothing written), MK_ERR_NOMEM, MK_ERR_IO. A
 * heat map that is missing or does not decode is noted on the page, not an error. */
typedef struct mk_cls_html_opts {
    const char *title;              /* NULL: "Patch classification evaluation" */
    const char *version;            /* medkd's version, shown in the header */
    const char *source;             /* what was evaluated (the run directory) */
    const char *split;              /* the manifest split evaluated (NULL: not shown) */
    const char *const *model_files; /* [nmodels] model files (NULL: not shown) */
    const char *heatmap_dir;        /* where <model>/<slide>.png are read (NULL: no heat maps) */
    const char *heatmap_href; /* the same folder relative to the page, for links (NULL: none) */
    int heatmaps;             /* heat maps embedded per model: worst, then best slide (0..2) */
    int heatmap_width;        /* px, > 0 */
} mk_cls_html_opts;
void mk_cls_html_opts_default(mk_cls_html_opts *o); /* heatmaps 2, heatmap_width 480 */
mk_status mk_cls_report_html(mk_ctx *ctx, const mk_cls_eval *e, const mk_cls_html_opts *o,
                             const char *path);

#ifdef __cplusplus
}
#endif
#endif
