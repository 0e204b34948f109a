/* medkd metrics: overlap and surface-distance scores of label volumes.
 *
 * Stands on core alone: arrays + spacing in, numbers out. The definitions follow
 * docs/metrics.md (user doc) and ../shared/docs/metrics.md (normative):
 *
 *   - MK_METRIC_DEEPMIND (default): surfaces on the corner grid (dual grid), each border corner
 *     weighted by its marching-cubes surfel area (3D) or contour length (2D); exact anisotropic
 *     Euclidean distances to the other mask's border corners; area-weighted percentiles/means.
 *     Identical to DeepMind's surface-distance library.
 *   - MK_METRIC_MEDPY: surface voxels = mask XOR erosion(mask, 6/4-neighbour cross, border 0);
 *     distances between voxel centres, unweighted; hd95 = linear percentile of the union of both
 *     directed distance sets (numpy.percentile), assd = mean of that union.
 *
 * Empty masks (both conventions): one empty -> dice = jaccard = surface_dice = 0, distances +inf.
 * Both empty (the label is in neither mask) follows mk_metric_opts.both_empty: MK_METRIC_BOTH_ONE
 * (the default of this library: dice = jaccard = surface_dice = 1, distances 0) or
 * MK_METRIC_BOTH_NAN (nnU-Net: every score NaN, so summaries leave the pair out).
 *
 * Axes of length 1 are dropped: a (X,Y,1) volume is scored in 2D (contours). Volumes in ml always
 * use all three spacings.
 *
 * Usage:
 *     mk_metric_vol p = {.type = MK_METRIC_U8, .data = pred, .dim = {nx, ny, nz},
 *                        .spacing = {0.8, 0.8, 1.5}, .name = "pred.nii.gz"};
 *     mk_metric_vol r = ... same for the reference ...;
 *     mk_metric_opts o; mk_metric_opts_default(&o);
 *     int64_t *labels; int n;
 *     mk_metric_find_labels(ctx, &p, &r, &labels, &n);          // every non-zero value
 *     mk_metric_result *res = calloc(n, sizeof *res);
 *     mk_metric_eval(ctx, &p, &r, labels, n, &o, res);
 *
 * Threads: mk_metric_eval runs OpenMP over labels, and over lines/slices inside one label.
 */
#ifndef MK_METRICS_H
#define MK_METRICS_H

#include <stdint.h>

#include "../core/mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_metric_vtype {
    MK_METRIC_U8 = 0,
    MK_METRIC_I8,
    MK_METRIC_U16,
    MK_METRIC_I16,
    MK_METRIC_U32,
    MK_METRIC_I32,
    MK_METRIC_U64,
    MK_METRIC_I64,
    MK_METRIC_F32,
    MK_METRIC_F64,
    MK_METRIC_VTYPE_COUNT
} mk_metric_vtype;

/* A label volume of dims `dim` (axis 0 fastest). Only the box [box_lo, box_lo + box_dim) is
 * stored (data holds box_dim[0]*box_dim[1]*box_dim[2] values, axis 0 fastest); every voxel
 * outside the box is 0. A volume stored whole has box_lo = 0 and box_dim = dim; set box_dim[0]
 * to 0 to mean exactly that. Borrowed: the caller keeps data alive during the call. */
typedef struct mk_metric_vol {
    mk_metric_vtype type;
    const void *data;
    int64_t dim[3];
    int64_t box_lo[3];
    int64_t box_dim[3];
    double spacing[3]; /* mm, > 0 */
    const char *name;  /* file name used in error messages (may be NULL) */
} mk_metric_vol;

typedef enum mk_metric_conv {
    MK_METRIC_DEEPMIND = 0,
    MK_METRIC_MEDPY,
    MK_METRIC_CONV_COUNT
} mk_metric_conv;

/* "deepmind" / "medpy". */
const char *mk_metric_conv_name(mk_metric_conv c);
/* Parse a name; returns MK_ERR_USAGE naming the option on an unknown value. */
mk_status mk_metric_conv_parse(mk_ctx *ctx, const char *s, mk_metric_conv *out);

typedef enum mk_metric_empty {
    MK_METRIC_EMPTY_NONE = 0, /* both masks have voxels */
    MK_METRIC_EMPTY_PRED,     /* prediction empty, reference not */
    MK_METRIC_EMPTY_REF,      /* reference empty, prediction not */
    MK_METRIC_EMPTY_BOTH
} mk_metric_empty;

/* "none", "pred", "ref", "both". */
const char *mk_metric_empty_name(mk_metric_empty e);

/* What a label absent from both masks of a case scores. */
typedef enum mk_metric_both_empty {
    MK_METRIC_BOTH_ONE = 0, /* dice = jaccard = surface_dice = 1, distances 0 (DeepMind's
                               surface-distance); the pair counts in every summary */
    MK_METRIC_BOTH_NAN,     /* dice, jaccard, surface_dice and every distance NaN (nnU-Net): the
                               pair is left out of every summary and counted as excluded */
    MK_METRIC_BOTH_COUNT
} mk_metric_both_empty;

/* "one" / "nan". */
const char *mk_metric_both_empty_name(mk_metric_both_empty p);
/* Parse a name; returns MK_ERR_USAGE naming --both-empty on an unknown value. */
mk_status mk_metric_both_empty_parse(mk_ctx *ctx, const char *s, mk_metric_both_empty *out);

typedef struct mk_metric_opts {
    mk_metric_conv convention;       /* default MK_METRIC_DEEPMIND */
    double tolerance_mm;             /* surface Dice tolerance, default 1.0 */
    double percentile;               /* robust Hausdorff percentile, default 95 */
    mk_metric_both_empty both_empty; /* default MK_METRIC_BOTH_ONE (`pipeline eval`: nan) */
} mk_metric_opts;

void mk_metric_opts_default(mk_metric_opts *o);

/* Directed values, index MK_METRIC_REF2PRED (reference surface -> prediction surface, the
 * "gt->pred" direction of surface-distance) and MK_METRIC_PRED2REF. */
enum { MK_METRIC_REF2PRED = 0, MK_METRIC_PRED2REF = 1 };

typedef struct mk_metric_result {
    int64_t label;
    mk_metric_empty empty;
    int64_t voxels_pred, voxels_ref, voxels_both;
    double volume_pred_ml, volume_ref_ml;
    double dice, jaccard;
    double hd, hd95, assd, masd, surface_dice;
    /* Directed: maximum, percentile, (area-weighted) mean distance, total surface measure
     * (mm^2 in 3D, mm in 2D for deepmind; voxel count for medpy) and the part of it within the
     * tolerance. NaN when the source surface is empty, +inf when only the target is empty. */
    double dir_hd[2], dir_hd95[2], dir_mean[2], surface[2], surface_within[2];
    int ndim; /* 2 or 3: dimensionality the label was scored in */
} mk_metric_result;

/* Every non-zero value present in either volume, sorted ascending; caller frees *labels.
 * Errors: mismatched dims, non-integral float values (naming the volume and voxel),
 * more than MK_METRIC_MAX_DISTINCT distinct values. */
mk_status mk_metric_find_labels(mk_ctx *ctx, const mk_metric_vol *pred, const mk_metric_vol *ref,
                                int64_t **labels, int *nlabels);

/* Score `nlabels` labels; out[i] receives label labels[i]. A label absent from both volumes gets
 * the both-empty result of opts->both_empty. Spacing is taken from ref (pred's must agree to 1e-4
 * relative). Returns MK_ERR_GEOMETRY on mismatched dims/spacing, MK_ERR_INVALID on non-integral
 * float labels, MK_ERR_NOMEM on allocation failure. */
mk_status mk_metric_eval(mk_ctx *ctx, const mk_metric_vol *pred, const mk_metric_vol *ref,
                         const int64_t *labels, int nlabels, const mk_metric_opts *opts,
                         mk_metric_result *out);

/* Fill `r` with the empty-mask convention for `e` (EMPTY_BOTH or one-empty) and zero counts.
 * EMPTY_BOTH gets the MK_METRIC_BOTH_ONE scores; mk_metric_result_both_empty applies a policy. */
void mk_metric_result_empty(mk_metric_result *r, int64_t label, mk_metric_empty e);

/* Apply policy `p` to a result: when r->empty is EMPTY_BOTH and p is MK_METRIC_BOTH_NAN, dice,
 * jaccard, surface_dice, hd, hd95, assd, masd and the directed hd/hd95/mean become NaN (counts,
 * volumes and surfaces stay 0). Any other result is left as it is. */
void mk_metric_result_both_empty(mk_metric_result *r, mk_metric_both_empty p);

/* What one image holds, to tell a label map from an intensity image or a probability map. */
typedef struct mk_metric_census {
    int64_t n_distinct;   /* distinct non-zero values; MK_METRIC_MAX_DISTINCT + 1 means "more" */
    int64_t n_nonint;     /* voxels whose value is no integral label (a fraction, NaN, inf, beyond
                             +-2^53, or a uint64 above INT64_MAX) */
    int64_t bad_voxel[3]; /* the first of them in storage order (x fastest); -1 when none */
    double bad_value;
} mk_metric_census;

#define MK_METRIC_MAX_DISTINCT 65535

/* Count the distinct non-zero values and the non-integral voxels of `v` (its stored box; the
 * rest is 0). Distinct values are counted as stored (a float image's 0.25 and 0.5 are two), up
 * to MK_METRIC_MAX_DISTINCT. One pass, no allocation for 8/16-bit types. MK_ERR_NOMEM. */
mk_status mk_metric_label_census(mk_ctx *ctx, const mk_metric_vol *v, mk_metric_census *out);

/* ---- building blocks (exposed for tests and other modules) ---- */

/* Exact squared Euclidean distance transform in place. On entry f[i] = 0 at feature points and
 * +INFINITY elsewhere; on exit f[i] = squared distance (mm^2) to the nearest feature, computed as
 * sum((d_k * spacing_k)^2) in double (Felzenszwalb-Huttenlocher, separable, linear time), or
 * +INFINITY when there is no feature. dim[k] may be 1. Returns MK_ERR_NOMEM on failure. */
mk_status mk_metric_edt_sq(mk_ctx *ctx, double *f, const int64_t dim[3], const double spacing[3]);

/* Marching-cubes surfel area (mm^2) of every 2x2x2 neighbourhood code for the given spacing.
 * Bit b = dx + 2*dy + 4*dz of the code is voxel (dx,dy,dz) of the cell. Derived from geometry
 * (see surface.c): minority-class components, polygons through edge midpoints, triangulated with
 * the largest total area (Lorensen's triangulation). */
void mk_metric_surfel_areas_3d(const double spacing[3], double table[256]);
/* Contour length (mm) of every 2x2 neighbourhood code (bit b = dx + 2*dy). */
void mk_metric_contour_lengths_2d(const double spacing[2], double table[16]);

/* numpy-compatible helpers used by the report summary. */
/* numpy.percentile(x, q) with linear interpolation on an ascending-sorted array (n >= 1). */
double mk_metric_percentile_sorted(const double *x, int64_t n, double q);
/* numpy.sum's pairwise summation. */
double mk_metric_pairwise_sum(const double *x, int64_t n);

/* Summary statistics of one metric over cases (values may be +inf/NaN). NaN marks a value that
 * is not defined (a both-empty pair under MK_METRIC_BOTH_NAN): it is left out of every figure
 * and counted in n_nan. */
typedef struct mk_metric_stats {
    int64_t n;        /* cases */
    int64_t n_finite; /* finite values */
    int64_t n_inf;    /* +inf or -inf */
    int64_t n_nan;    /* left out of every figure below */
    double mean, std; /* over the n - n_nan non-NaN values (inf propagates); NaN if there is none */
    double median, q1, q3, min, max; /* over the non-NaN values, inf ordered last */
    double mean_finite, std_finite;  /* over the finite values only (NaN if none) */
} mk_metric_stats;

void mk_metric_stats_compute(const double *values, int64_t n, mk_metric_stats *out);

#ifdef __cplusplus
}
#endif
#endif
