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
 * Empty masks (both conventions): both empty -> dice = jaccard = surface_dice = 1, distances 0;
 * one empty -> dice = jaccard = surface_dice = 0, distances +inf.
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

typedef struct mk_metric_opts {
    mk_metric_conv convention; /* default MK_METRIC_DEEPMIND */
    double tolerance_mm;       /* surface Dice tolerance, default 1.0 */
    double percentile;         /* robust Hausdorff percentile, default 95 */
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
 * more than 65535 distinct values. */
mk_status mk_metric_find_labels(mk_ctx *ctx, const mk_metric_vol *pred, const mk_metric_vol *ref,
                                int64_t **labels, int *nlabels);

/* Score `nlabels` labels; out[i] receives label labels[i]. A label absent from both volumes gets
 * the both-empty result. Spacing is taken from ref (pred's must agree to 1e-4 relative).
 * Returns MK_ERR_GEOMETRY on mismatched dims/spacing, MK_ERR_INVALID on non-integral float labels,
 * MK_ERR_NOMEM on allocation failure. */
mk_status mk_metric_eval(mk_ctx *ctx, const mk_metric_vol *pred, const mk_metric_vol *ref,
                         const int64_t *labels, int nlabels, const mk_metric_opts *opts,
                         mk_metric_result *out);

/* Fill `r` with the empty-mask convention for `e` (EMPTY_BOTH or one-empty) and zero counts. */
void mk_metric_result_empty(mk_metric_result *r, int64_t label, mk_metric_empty e);

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

/* Summary statistics of one metric over cases (values may be +inf/NaN). */
typedef struct mk_metric_stats {
    int64_t n;        /* cases */
    int64_t n_finite; /* finite values */
    int64_t n_inf;    /* +inf or -inf */
    int64_t n_nan;
    double mean, std;                /* over all n cases (inf propagates; NaN if any NaN) */
    double median, q1, q3, min, max; /* over non-NaN values, inf ordered last */
    double mean_finite, std_finite;  /* over the finite values only (NaN if none) */
} mk_metric_stats;

void mk_metric_stats_compute(const double *values, int64_t n, mk_metric_stats *out);

#ifdef __cplusplus
}
#endif
#endif
