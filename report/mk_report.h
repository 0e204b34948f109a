/* medkd reports: the evaluation report (JSON, CSV, HDF5) and a small HDF5 writer other stages
 * reuse.
 *
 * Layouts are specified in docs/report-schema.md. Every writer is atomic: it writes PATH.tmp.PID
 * and renames it over PATH only when everything succeeded, so a failed run leaves no partial file.
 *
 *     mk_eval_report rep = {...};              // filled by `pipeline eval`
 *     mk_report_eval_json(ctx, &rep, "r.json");
 *     mk_report_eval_csv(ctx, &rep, "r.csv");
 *     mk_report_eval_h5(ctx, &rep, "r.h5");
 *
 * Run summary over several models (the evaluate stage's reports/summary.json and summary.md,
 * report/summary.c): plain structs filled by the caller, per model and per structure.
 *     mk_report_summary_json(ctx, &info, models, n, "reports/summary.json");
 *     mk_report_summary_md(ctx, &info, models, n, "reports/summary.md");
 *
 * Generic HDF5 writer (opaque handle):
 *     mk_h5w *w; mk_h5w_open(ctx, "x.h5", &w);
 *     mk_h5w_f64(w, "/metrics/loss", 1, dims, values);   // intermediate groups are created
 *     mk_h5w_attr_str(w, "/", "version", "0.1.0");
 *     mk_h5w_commit(w);                                  // or mk_h5w_abort(w) on error
 */
#ifndef MK_REPORT_H
#define MK_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "../core/mk_status.h"
#include "../io/mk_image.h"
#include "../metrics/mk_metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- generic HDF5 writer ---- */
typedef struct mk_h5w mk_h5w;

/* Create a new file at a temporary name next to `path`. Ownership: *out until commit/abort. */
mk_status mk_h5w_open(mk_ctx *ctx, const char *path, mk_h5w **out);
/* Datasets (row-major, rank 1..2); groups in `name` are created as needed. */
mk_status mk_h5w_f64(mk_h5w *w, const char *name, int rank, const int64_t *dims,
                     const double *data);
mk_status mk_h5w_i64(mk_h5w *w, const char *name, int rank, const int64_t *dims,
                     const int64_t *data);
mk_status mk_h5w_i8(mk_h5w *w, const char *name, int rank, const int64_t *dims, const int8_t *data);
/* 1-D dataset of variable-length UTF-8 strings. */
mk_status mk_h5w_strings(mk_h5w *w, const char *name, int64_t n, const char *const *s);
/* Attributes on an existing object ("/" for the root; groups are created if missing). */
mk_status mk_h5w_attr_str(mk_h5w *w, const char *obj, const char *name, const char *value);
mk_status mk_h5w_attr_f64(mk_h5w *w, const char *obj, const char *name, double value);
mk_status mk_h5w_attr_i64(mk_h5w *w, const char *obj, const char *name, int64_t value);
/* Close and rename into place; frees w (also on failure). */
mk_status mk_h5w_commit(mk_h5w *w);
/* Close, delete the temporary file, free w. NULL ok. */
void mk_h5w_abort(mk_h5w *w);

/* ---- evaluation report ---- */
typedef struct mk_eval_case {
    char *id, *pred, *ref; /* owned by the report */
    char *image;           /* owned; NULL: not known. The image the prediction was made from
                              (the evaluate stage records it; the HTML report draws it under the
                              contours) */
    mk_metric_result *res; /* nlabels results, res[j] is labels[j] */
} mk_eval_case;

typedef struct mk_eval_report {
    const char *version;      /* medkd version */
    const char *command_line; /* as typed */
    mk_metric_conv convention;
    double tolerance_mm;
    double percentile;
    mk_metric_both_empty both_empty; /* how the both-empty pairs were scored (0: "one", the
                                        evaluate stage's; `pipeline eval`'s default: "nan") */
    int64_t *labels;
    int nlabels;
    const char *const *label_names; /* NULL, or nlabels structure names (non-NULL strings) of
                                       labels[], borrowed; written as JSON "label_names" and
                                       HDF5 /label_names when set */
    mk_eval_case *cases;
    int ncases;
    char **unpaired_pred; /* files without a partner */
    int nunpaired_pred;
    char **unpaired_ref;
    int nunpaired_ref;
    char created[32]; /* ISO 8601 UTC, filled by mk_eval_report_stamp */
    /* What was evaluated and how (owned, NULL when not known; the evaluate stage sets them):
     * JSON "run": {...}, HDF5 root attributes run_<name>. */
    char *split;        /* manifest split ("test") */
    char *config_hash;  /* the run's config hash (provenance.json) */
    char *data;         /* the dataset (data.manifest) */
    char *model_file;   /* the network evaluated (models/<model>.h5) */
    char *modality;     /* modality of the segmented images ("CT") */
    char *window_blend; /* "gaussian" | "uniform" */
    char *postprocess;  /* "none" | "largest_component" */
    char *translator;   /* the images went through this translator's G first (e.g. the target
                           domain's test images as fake MR, LE-UDA's protocol); NULL: as stored */
    char **names_owned; /* label names read back by mk_report_eval_read (label_names points here) */
    char *version_owned, *command_line_owned; /* the same for version and command_line */
} mk_eval_report;

/* Fill rep->created with the current UTC time. */
void mk_eval_report_stamp(mk_eval_report *rep);
/* Free every owned string and array (not the struct itself). */
void mk_eval_report_clear(mk_eval_report *rep);

/* Metric columns in report order, for writers and readers: name and accessor. */
#define MK_EVAL_NMETRICS 11
const char *mk_eval_metric_name(int m);
double mk_eval_metric_value(const mk_metric_result *r, int m);

/* The fixed text the reports carry about the definitions used. */
const char *mk_eval_definition_text(mk_metric_conv c);
const char *mk_eval_empty_policy_text(mk_metric_both_empty p);
/* Pairs of label j left out of the summaries: cases whose result is both-empty with a NaN Dice
 * (the "nan" policy). */
int mk_eval_excluded(const mk_eval_report *rep, int j);

/* ---- structure names (`pipeline eval --label-names FILE`) ---- */
typedef struct mk_report_label_names {
    int n;
    int64_t *values; /* ascending, distinct */
    char **names;    /* non-empty */
} mk_report_label_names;

/* Read structure names for label values from
 *   - an nnU-Net dataset.json (name ending .json): "labels": {"background": 0, "liver": 1}, or
 *     the MSD form {"0": "background", "1": "liver"}; a region label (a list of values) is
 *     refused;
 *   - a CSV (name ending .csv): columns value and name (a header naming them, in any order with
 *     other columns, or no header: value,name first);
 *   - anything else: whitespace-separated lines "VALUE NAME [other columns]" (AAL's .txt,
 *     FreeSurfer's LUT), '#' comments and blank lines skipped.
 * Values are integers (0 included: the background, never scored), each named once. Errors name
 * FILE:LINE: MK_ERR_IO, MK_ERR_FORMAT, MK_ERR_NOMEM (and *out is left empty). Ownership: *out,
 * freed with mk_report_label_names_clear (which accepts an empty one). */
mk_status mk_report_label_names_read(mk_ctx *ctx, const char *path, mk_report_label_names *out);
/* The name of `value`, or NULL. Borrowed from ln. */
const char *mk_report_label_names_find(const mk_report_label_names *ln, int64_t value);
void mk_report_label_names_clear(mk_report_label_names *ln);

/* ---- images as metric volumes ---- */
/* The metric value type of an image datatype; 0 for types that cannot hold labels (RGB24). */
int mk_report_vtype_of(mk_dtype t, mk_metric_vtype *out);
/* A whole image as a metric volume (borrows img->data; spacing from the image's geometry).
 * MK_ERR_UNSUPPORTED naming `name` for RGB images or images with a 4th dimension > 1. */
mk_status mk_report_metric_vol(mk_ctx *ctx, const mk_image *img, const char *name,
                               mk_metric_vol *v);

mk_status mk_report_eval_json(mk_ctx *ctx, const mk_eval_report *rep, const char *path);
mk_status mk_report_eval_csv(mk_ctx *ctx, const mk_eval_report *rep, const char *path);
mk_status mk_report_eval_h5(mk_ctx *ctx, const mk_eval_report *rep, const char *path);

/* Read an evaluation report written by mk_report_eval_json (`pipeline eval --json`, the evaluate
 * stage's reports/<model>.json) back into *rep (zeroed first; mk_eval_report_clear frees it):
 * cases, labels, label names, per-case metrics (directed figures included), unpaired files, the
 * run fields and the convention. Errors name the file and the field: MK_ERR_IO, MK_ERR_FORMAT
 * ("cases[3].labels.2.dice: expected a number or \"inf\"/\"nan\""). */
mk_status mk_report_eval_read(mk_ctx *ctx, const char *path, mk_eval_report *rep);

/* ---- run summary (reports/summary.json, reports/summary.md; docs/report-schema.md) ---- */
#define MK_REPORT_MAX_STRUCTURES 16

/* One structure (label value) of one model, over its cases. */
typedef struct mk_report_structure_summary {
    int64_t label; /* label value in the masks */
    char name[32]; /* structure name (e.g. "LV"; "label_<value>" when unnamed) */
    int cases;
    double dice_mean, dice_std, dice_median; /* std: sample standard deviation (n - 1) */
    double hd95_mean, assd_mean;             /* over the cases with finite distances; NaN: none */
    double sdice_mean;
    double volume_ref_ml_mean, volume_pred_ml_mean;
    int n_infinite; /* cases with an empty prediction or reference of this structure */
    int n_excluded; /* both-empty cases left out of the Dice/distance figures (NaN Dice: the
                       "nan" policy); the volume means are over every case */
} mk_report_structure_summary;

/* One model: the model-level figures are over every (case, structure) pair, so with one
 * structure they are that structure's; with several, dice_mean is the mean of the structures'
 * dice_mean and n_infinite the sum of theirs. */
typedef struct mk_report_model_summary {
    char name[32];
    int cases;
    int64_t params;       /* trainable parameters of the model's network (< 0: not known) */
    char translator[512]; /* rep->translator ("": the images as stored) */
    double dice_mean, dice_std, dice_median;
    double hd95_mean, assd_mean, sdice_mean; /* over the pairs with finite distances */
    int n_infinite; /* (case, structure) pairs with an empty prediction or reference */
    int n_excluded; /* (case, structure) pairs left out as both-empty (NaN Dice) */
    int nstructures;
    mk_report_structure_summary structures[MK_REPORT_MAX_STRUCTURES];
} mk_report_model_summary;

/* How the masks were made and scored (recorded in both files). */
typedef struct mk_report_summary_info {
    const char *split;
    mk_metric_conv convention;
    double tolerance_mm;
    int blend_uniform;     /* inference windows: 1 equal weights, 0 Gaussian */
    int largest_component; /* 1: each structure kept its largest connected component */
    const struct mk_report_comparison *cmp; /* paired comparisons (mk_report_compare) written as
                                               "comparisons"; NULL / 0: an empty list */
    int ncmp;
} mk_report_summary_info;

/* Fill s from one model's evaluation report: one structure per label of rep, in its order, named
 * by rep->label_names (NULL or "" entries: "label_<value>"). At most MK_REPORT_MAX_STRUCTURES
 * labels (MK_ERR_INVALID otherwise). params is copied. */
mk_status mk_report_model_summarise(mk_ctx *ctx, const mk_eval_report *rep, const char *model,
                                    int64_t params, mk_report_model_summary *s);
/* Atomic writers of the run summary over n models. */
mk_status mk_report_summary_json(mk_ctx *ctx, const mk_report_summary_info *info,
                                 const mk_report_model_summary *models, int n, const char *path);
mk_status mk_report_summary_md(mk_ctx *ctx, const mk_report_summary_info *info,
                               const mk_report_model_summary *models, int n, const char *path);

/* ---- paired comparison of models (report/compare.c; docs/report.md) ---- */
/* One structure of one pair of models scored on the same cases: the per-case Dice difference
 * d = dice(a) - dice(b) over the cases both reports have (matched by case id; the structure
 * matched by label value). */
typedef struct mk_report_comparison {
    char a[32], b[32]; /* model names */
    int64_t label;
    char structure[32];
    int n;                  /* paired cases with a Dice in both */
    int n_excluded;         /* cases of a or b not in the other */
    int n_nan;              /* paired cases left out: a NaN Dice in a or b (both-empty, "nan") */
    double mean_diff;       /* mean of d */
    double ci95[2];         /* percentile bootstrap interval of the mean of d (B resamples, seed) */
    double wilcoxon_p;      /* two-sided signed-rank p (zeros dropped); NaN when every d is 0 */
    int exact;              /* 1: exact null distribution, 0: normal approximation */
    int n_zero;             /* zero differences (ties of the pair) */
    double p_holm;          /* Holm-adjusted over the structures of this pair */
    int wins, ties, losses; /* d > 0, d == 0, d < 0 */
} mk_report_comparison;

typedef struct mk_report_model {
    const char *name;          /* "cmedl" */
    const mk_eval_report *rep; /* borrowed */
} mk_report_model;

/* Every pair (i < j) of the n models, every structure both have: *out (malloc'd, caller frees)
 * of *nout entries, in pair order then label order. B bootstrap resamples with seed. Pairs with
 * no case in common are left out (none is an error). */
mk_status mk_report_compare(mk_ctx *ctx, const mk_report_model *models, int n, int B, uint64_t seed,
                            mk_report_comparison **out, int *nout);

/* ---- the HTML report (report/html.c; docs/report.md) ---- */
typedef struct mk_report_html_opts {
    const char *title;       /* NULL: "Segmentation evaluation" */
    const char *version;     /* medkd version */
    const char *source;      /* what was evaluated: the run directory or the report files */
    double window[2];        /* grey window of the image panels */
    int window_auto;         /* 1: each image's 0.5..99.5 percentiles instead */
    const char *window_text; /* how the window was chosen, stated in the page (NULL: derived) */
    int worst, best;         /* image panels per model: the worst and best cases (mean Dice) */
    int bootstrap;           /* B (e.g. 2000) */
    uint64_t seed;           /* bootstrap seed */
    const char *images_dir;  /* NULL, or a folder of images matched by case id for cases whose
                                report has no image path */
} mk_report_html_opts;

void mk_report_html_opts_default(mk_report_html_opts *o);

/* Write the self-contained HTML page over n models' reports (at least one) to path (atomically):
 * summaries with bootstrap intervals, box plots, volumes with Bland-Altman agreement, the paired
 * comparisons cmp[0..ncmp-1] (from mk_report_compare), sortable per-case tables, image panels of
 * the worst and best cases (images that cannot be read are listed in the appendix, not an
 * error), the appendix of excluded cases and the disclaimer. */
mk_status mk_report_html(mk_ctx *ctx, const mk_report_html_opts *o, const mk_report_model *models,
                         int n, const mk_report_comparison *cmp, int ncmp, const char *path);

/* The comparisons as the JSON array of reports/summary.json ("comparisons": [...]); printed to f.
 */
void mk_report_comparisons_json(FILE *f, const mk_report_comparison *cmp, int n);

#ifdef __cplusplus
}
#endif
#endif
