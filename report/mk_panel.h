/* medkd report image panels (report/panel.c): one case's reference and prediction over its
 * image in three planes, drawn with cairo and encoded as PNG in memory for the HTML report.
 *
 *     mk_panel_opts o; mk_panel_opts_default(&o);      // window_auto = 1, tile_px = 256
 *     o.window_auto = 0; o.window[0] = -160; o.window[1] = 240;   // CT W400 / L40
 *     unsigned char *png; size_t len; mk_panel_info info;
 *     mk_panel_render(ctx, img, ref, pred, labels, nlabels, &o, &png, &len, &info);
 *     ... free(png);
 *
 * Layout of the PNG: three tiles side by side, axial | coronal | sagittal, each the slice where
 * the prediction and the reference disagree most (count of voxels whose label differs, over the
 * scored labels; no disagreement: the slice with most reference foreground, then the middle
 * slice). Planes are anatomical: the voxel axis nearest each RAS world axis (from the image's
 * direction matrix) is shown, in radiological convention: axial and coronal with the patient's
 * right on the left of the tile, axial anterior up, coronal and sagittal superior up, sagittal
 * anterior on the left. Pixels keep their physical aspect (spacing). The image is drawn in grey
 * at the window [lo, hi] (linear, clamped); false-positive voxels (predicted a scored label the
 * reference does not have there) filled translucent red, false-negative voxels (reference label
 * not predicted there) translucent blue; then reference contours solid green, prediction
 * contours magenta, both along the voxel edges between inside and outside of each label; each
 * tile is captioned (plane, slice index of the voxel axis, orientation letters at the edges).
 * All drawing goes through cairo (rectangles, paths, toy text); the PNG through
 * cairo_surface_write_to_png_stream.
 */
#ifndef MK_PANEL_H
#define MK_PANEL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/mk_status.h"
#include "../io/mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_panel_opts {
    double window[2]; /* grey window [lo, hi] of the image, lo < hi */
    int window_auto;  /* 1 (the default): window = 0.5 and 99.5 percentiles of the image's finite
                         voxels (a fixed-stride subsample of at most 2^20 voxels; written to
                         info.window) instead of window[] */
    int tile_px;      /* longest side of each tile in pixels, 32..4096 (default 256) */
} mk_panel_opts;

void mk_panel_opts_default(mk_panel_opts *o);

typedef struct mk_panel_info {
    int axis[3];       /* voxel axis the plane cuts (fixed in the tile, 0..2 = i, j, k):
                          [0] axial, [1] coronal, [2] sagittal */
    int64_t slice[3];  /* the slice index along axis[p] of each tile */
    int64_t errors[3]; /* voxels whose label differs on that slice */
    double window[2];  /* window used */
    int width, height; /* of the PNG */
    int tile_x[3], tile_y[3], tile_w[3], tile_h[3]; /* pixel rectangle of each tile in the PNG
                         (its caption strip below it is not included); tile_w[p] == 0: no tile for
                         that plane (then slice[p] == -1) */
} mk_panel_info;

/* Render the panel. img may be NULL (a black background); ref and pred are label images on
 * img's grid (or each other's when img is NULL): MK_ERR_GEOMETRY naming the two otherwise.
 * labels[0..nlabels-1]: the label values scored (voxels of other values count as background).
 * 2-D images (dim[2] == 1) give one tile: when a spatial dim is 1, only the planes across such an
 * axis are drawn. Oblique directions: each voxel axis is shown as its nearest world axis
 * (mk_geom_axis_map), not resampled. *png: malloc'd PNG bytes (caller frees), *len its
 * size. info may be NULL. MK_ERR_INVALID for a bad window or tile_px, MK_ERR_UNSUPPORTED for
 * dims 3/4 other than 1, RGB24 label maps or a dim over 32767 (cairo's limit), MK_ERR_NOMEM,
 * MK_ERR_IO when cairo fails (its status string in the message), MK_ERR_ABORTED on ctx->cancel. */
mk_status mk_panel_render(mk_ctx *ctx, const mk_image *img, const mk_image *ref,
                          const mk_image *pred, const int64_t *labels, int nlabels,
                          const mk_panel_opts *o, unsigned char **png, size_t *len,
                          mk_panel_info *info);

#ifdef __cplusplus
}
#endif
#endif
