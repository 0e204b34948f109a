/* medkd geometry operations: exact reorientation and resampling (slab by slab).
 *
 * Reorientation permutes and flips voxel axes so that they point along a three-letter RAS-style
 * code ("RAS": i towards Right, j Anterior, k Superior; "LPS" is ITK/DICOM's). It is exact: no
 * interpolation, the physical position of every voxel is unchanged, only the index order changes.
 * Going back: mk_reorient_to(img, original) restores the original order and copies the original's
 * geometry and NIfTI meta bit for bit.
 *
 * Resampling maps every output voxel centre to a continuous input index through the two
 * voxel->world affines (inv(A_in) * A_out), so any grids can be related (oblique ones too):
 *   MK_INTERP_LINEAR   trilinear (images); integer outputs are rounded and clamped
 *   MK_INTERP_NEAREST  nearest voxel (masks, fast)
 *   MK_INTERP_LABEL    per-label linear: each label's indicator is interpolated trilinearly and the
 *                      label with the largest weight wins (smoother than nearest, never invents a
 *                      label absent from the 8 neighbours; ties go to the smaller label)
 * Positions outside the input are clamped to the nearest edge voxel (no zero padding), so
 * resampling back to the original grid never darkens the border. Memory: the output is written slab
 * by slab (one k-slice of output at a time, each reading at most the input slices it touches);
 * besides input and output no full-size buffer is allocated, so a 512x512x600 int16 CT needs its
 * own 300 MiB plus the output, not several float copies. Cancel (ctx->cancel) is checked and
 * progress ("resample", slices) reported per slab. Dimensions 4 and 5 (time, channels) are carried
 * along: each 3-D volume is resampled alike. The output keeps the input's dtype; NIfTI meta is
 * rebuilt from the new geometry with the input's qform/sform codes.
 */
#ifndef MK_RESAMPLE_H
#define MK_RESAMPLE_H

#include "mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_interp { MK_INTERP_NEAREST = 0, MK_INTERP_LINEAR, MK_INTERP_LABEL } mk_interp;

/* Parse "nearest", "linear", "label"; -1 if unknown. */
int mk_interp_parse(const char *name);

/* Reorient to `code` (3 letters, one of R/L, A/P, S/I each). Ownership: *out new.
 * Returns MK_OK, MK_ERR_INVALID (bad code). */
mk_status mk_reorient(mk_ctx *ctx, const mk_image *in, const char *code, mk_image **out);

/* Reorient `in` to the orientation of `ref` (its original) and give it ref's geometry and NIfTI
 * meta exactly. `in` must be ref reoriented (same voxel count per axis up to permutation and the
 * same physical grid within 1e-4 mm): else MK_ERR_GEOMETRY. */
mk_status mk_reorient_to(mk_ctx *ctx, const mk_image *in, const mk_image *ref, mk_image **out);

/* Resample to a new spacing (mm) keeping origin and direction: new dim = round(old dim * old
 * spacing / new spacing) (at least 1). */
mk_status mk_resample_spacing(mk_ctx *ctx, const mk_image *in, const double spacing[3],
                              mk_interp interp, mk_image **out);

/* Resample onto the grid of `grid` (its dims, spacing, origin, direction; its voxels are not
 * used and may be NULL, e.g. a header read with mk_io_read_header). The output carries grid's
 * geometry and NIfTI meta when grid has it, so resampling back to the original grid gives a mask
 * whose header equals the original's. */
mk_status mk_resample_like(mk_ctx *ctx, const mk_image *in, const mk_image *grid, mk_interp interp,
                           mk_image **out);

/* What an output voxel whose centre falls outside the input gets: the nearest border voxel's
 * interpolation (clamp, mk_resample_like), or 0 (zero: the input's extent is half a voxel beyond
 * its first and last centres on each axis; for label maps, where outside means background, as
 * `pipeline eval --resample-to-ref` uses it). */
typedef enum mk_outside { MK_OUTSIDE_CLAMP = 0, MK_OUTSIDE_ZERO } mk_outside;
mk_status mk_resample_like_ex(mk_ctx *ctx, const mk_image *in, const mk_image *grid,
                              mk_interp interp, mk_outside outside, mk_image **out);

#ifdef __cplusplus
}
#endif
#endif
