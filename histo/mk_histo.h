/* medkd histology: slide -> tissue mask -> patch grid -> labels -> patches read on demand.
 *
 * The layer between io/ (libtiff region reads, io/mk_tiff.h) and the histology methods
 * (stages/method_histo_*.c). Conventions follow the field:
 *   - tissue mask as CLAM: HSV saturation S = 255 (max - min) / max of a low-resolution level,
 *     median-blurred, thresholded at a fixed value or by Otsu; near-black pixels (max <= 16)
 *     are never tissue;
 *   - a patch grid is coordinates only (no pixels): level-0 top-left corners with the level they
 *     are cut at, its downsample and the patch size in level pixels, stored in HDF5 like CLAM's
 *     `coords` dataset (int64 [N, 2], attributes patch_level, patch_size, downsample);
 *   - labels from a mask image by the PatchCamelyon rule: a patch is positive when its central
 *     region (a fraction of the patch side) holds tumour;
 *   - patches read on demand through libtiff (only the tiles they touch), as float CHW, with
 *     colour normalisation and the 8 dihedral transforms (rotations by 90 degrees, flips).
 *
 *     mk_tiff_slide *s;  mk_tiff_open(ctx, "slide.tif", &s);
 *     mk_histo_grid_opts go;  mk_histo_grid_defaults(&go);  go.level = 1;  go.size = 32;
 *     mk_histo_grid g;  mk_histo_grid_build(ctx, s, &go, &g);      // tissue patches
 *     mk_histo_label_opts lo;  mk_histo_label_defaults(&lo);
 *     mk_histo_grid_label_mask(ctx, &g, "slide_mask.tif", &lo);    // g.label[i] 0 / 1
 *     float *x = malloc(3 * 32 * 32 * sizeof *x);
 *     mk_histo_read_opts ro;  mk_histo_read_defaults(&ro);
 *     mk_histo_read_patch(ctx, s, &g, 0, &ro, x);
 *     mk_histo_grid_free(&g);  mk_tiff_close(s);
 *
 * Errors name the slide (or mask) file: a level that does not exist, a patch larger than the
 * level, no tissue found, a truncated or corrupt TIFF. */
#ifndef MK_HISTO_H
#define MK_HISTO_H

#include <stdint.h>

#include "core/mk_status.h"
#include "io/mk_tiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- tissue mask */

typedef struct mk_histo_mask_opts {
    int level;     /* level the mask is computed at; -1: the smallest level whose larger side is
                      >= 512 px (the smallest level if none) */
    int median;    /* median-blur kernel side at that level (odd; 0 or 1: none); default 7 */
    int threshold; /* saturation threshold 0..255 (tissue: S > threshold); -1: Otsu (default) */
} mk_histo_mask_opts;
void mk_histo_mask_defaults(mk_histo_mask_opts *o);

typedef struct mk_histo_mask {
    int level;               /* level the mask was computed at */
    int64_t width, height;   /* mask size = that level's size */
    double scale_x, scale_y; /* level-0 pixels per mask pixel */
    int threshold;           /* the threshold used (Otsu's or the given one) */
    uint8_t *data;           /* width*height, 1 tissue, 0 background; owned */
} mk_histo_mask;

/* Ownership: *out new, mk_histo_mask_free. */
mk_status mk_histo_tissue_mask(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_mask_opts *o,
                               mk_histo_mask **out);
void mk_histo_mask_free(mk_histo_mask *m); /* NULL ok */
/* Fraction (0..1) of mask pixels that are tissue inside the level-0 rectangle
 * [x0,x0+w0)x[y0,y0+h0). */
double mk_histo_mask_fraction(const mk_histo_mask *m, int64_t x0, int64_t y0, int64_t w0,
                              int64_t h0);

/* The two steps of the mask, for reuse and tests. Otsu's threshold of a 256-bin histogram: the t
 * maximising the between-class variance of {v <= t} and {v > t}; when a plateau of t gives the
 * same variance (modes separated by empty bins), its middle. 0 for an empty histogram. */
int mk_histo_otsu(const int64_t hist[256]);
/* Median of the k x k window around every pixel of a w x h uint8 image (k odd >= 1; borders
 * replicate the edge pixels, as cv2.medianBlur and scipy.ndimage.median_filter(mode='nearest'))
 * into out (w*h, must not overlap in). Returns MK_ERR_INVALID for an even or non-positive k. */
mk_status mk_histo_median_u8(mk_ctx *ctx, const uint8_t *in, uint8_t *out, int64_t w, int64_t h,
                             int k);

/* ---------------------------------------------------------------- patch grid */

typedef struct mk_histo_grid_opts {
    int level;         /* level the patches are cut at (default 0) */
    int size;          /* patch side in level pixels (> 0; default 256) */
    int stride;        /* step in level pixels; 0: size (default) */
    double min_tissue; /* keep patches whose tissue fraction is >= this (default 0.5; 0 keeps
                          all) */
    mk_histo_mask_opts mask;
} mk_histo_grid_opts;
void mk_histo_grid_defaults(mk_histo_grid_opts *o);

/* Coordinates only. Arrays have n entries, owned (mk_histo_grid_free). */
typedef struct mk_histo_grid {
    char *slide; /* the slide's path (owned copy) */
    int level, size, stride;
    double downsample; /* level-0 pixels per level pixel (level-0 width / level width) */
    int64_t level_w, level_h;
    int64_t n;
    int64_t *xy;       /* [n][2]: level-0 top-left x, y */
    float *tissue;     /* tissue fraction (0..1) */
    int32_t *label;    /* class, -1: none (after build: all -1) */
    float *label_frac; /* fraction of positive pixels in the centre region (0 when no mask) */
} mk_histo_grid;

/* The patches fully inside the level on the stride grid (row-major, top to bottom) whose tissue
 * fraction is >= min_tissue. Errors (MK_ERR_INVALID / MK_ERR_FORMAT naming the slide): a level
 * that does not exist, a size larger than the level, no patch with enough tissue ("no tissue
 * found"), a corrupt tile. Progress on ctx as "tiles". out is overwritten (not freed first);
 * on an error it is left zeroed (mk_histo_grid_free is safe). */
mk_status mk_histo_grid_build(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid_opts *o,
                              mk_histo_grid *out);
void mk_histo_grid_free(mk_histo_grid *g); /* zeroes *g; NULL ok */

/* One patch of mk_histo_patch_walk (borrowed; valid during the callback only). */
typedef struct mk_histo_patch {
    int level;
    int64_t x, y;       /* top-left in level pixels */
    int64_t x0, y0;     /* top-left in level-0 pixels (round(x * downsample)) */
    int width, height;  /* patch size in level pixels (= opts size) */
    double tissue;      /* tissue fraction from the mask (0..1) */
    const uint8_t *rgb; /* width*height*3 RGB8 pixels, NULL unless read_pixels */
    long long index;    /* 0-based index among delivered patches */
} mk_histo_patch;
/* Return non-OK to stop the walk (that status is returned by mk_histo_patch_walk). */
typedef mk_status (*mk_histo_patch_fn)(void *user, const mk_histo_patch *p);
/* The patches of mk_histo_grid_build, in the same order, streamed to fn one at a time (one patch
 * buffer in memory; read_pixels 1: each patch decoded and passed as rgb). The same errors, except
 * that no patch with enough tissue is not one: the walk then delivers nothing and returns MK_OK.
 * Progress on ctx as "tiles"; ctx->cancel stops it (MK_ERR_ABORTED). */
mk_status mk_histo_patch_walk(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid_opts *o,
                              int read_pixels, mk_histo_patch_fn fn, void *user);

typedef struct mk_histo_label_opts {
    int positive;    /* mask value counted as positive (default 2: the phantoms' tumour) */
    double centre;   /* side fraction of the central region (0 < c <= 1; default 0.5) */
    double min_frac; /* positive when the centre region's positive fraction is > min_frac
                        (default 0: any positive pixel, PatchCamelyon's rule) */
} mk_histo_label_opts;
void mk_histo_label_defaults(mk_histo_label_opts *o);

/* Label every patch from a mask image (a TIFF read through io/mk_tiff.h; its first sample is the
 * class value) whose level 0 has the slide's level-0 size, or an integer fraction of it (the
 * mask is then read at that scale). label[i] = 1 positive, 0 not; label_frac[i] set. Errors name
 * the mask file (missing, corrupt, size that matches no scale of the slide: MK_ERR_GEOMETRY); on
 * an error the labels are left as they were (a failure part way resets them to -1). */
mk_status mk_histo_grid_label_mask(mk_ctx *ctx, mk_histo_grid *g, const char *mask_path,
                                   const mk_histo_label_opts *o);
/* Every patch gets `label` (a slide-level label column). */
void mk_histo_grid_label_all(mk_histo_grid *g, int32_t label);

/* HDF5, CLAM's layout: dataset `coords` int64 [n,2] with attributes patch_level, patch_size,
 * downsample, stride, level_dim [w,h], slide (string); datasets `tissue` float32 [n], `label`
 * int32 [n], `label_frac` float32 [n]. Written atomically (temp + rename). The reader checks
 * shapes and attributes (errors name the file and the field). */
mk_status mk_histo_grid_save(mk_ctx *ctx, const char *path, const mk_histo_grid *g);
mk_status mk_histo_grid_load(mk_ctx *ctx, const char *path, mk_histo_grid *out);

/* ---------------------------------------------------------------- patches */

typedef enum mk_histo_norm {
    MK_HISTO_NORM_NONE = 0,    /* rgb / 255 */
    MK_HISTO_NORM_STANDARDIZE, /* per patch and channel: (v - mean) / std (std < 1e-6: 1) of
                                  rgb / 255 */
    MK_HISTO_NORM_REINHARD,    /* Reinhard et al. 2001: the patch's CIE L*a*b* channels shifted
                                  and scaled to target_mean / target_std, back to sRGB, / 255 */
    MK_HISTO_NORM_COUNT
} mk_histo_norm;
/* "none", "standardize", "reinhard"; -1 if unknown. */
int mk_histo_norm_parse(const char *name);
const char *mk_histo_norm_name(mk_histo_norm n);

typedef struct mk_histo_read_opts {
    mk_histo_norm norm;
    double target_mean[3], target_std[3]; /* Reinhard target (L*, a*, b*) */
    int dihedral;                         /* 0..7, see mk_histo_dihedral */
} mk_histo_read_opts;
/* none, dihedral 0; Reinhard target L*a*b* mean [65, 25, -15], std [15, 10, 8] (the [histo]
 * defaults of stages/histo.c) */
void mk_histo_read_defaults(mk_histo_read_opts *o);

/* Normalise one size x size RGB8 patch (interleaved, rows top to bottom) by o->norm into chw
 * (3*size*size floats, channel-major); o->dihedral is not applied. Reinhard: sRGB -> linear
 * (IEC 61966-2-1) -> XYZ (D65, white 0.95047 1 1.08883) -> CIE L*a*b*; each channel
 * (v - mean) / std * target_std + target_mean (std < 1e-6: 1); back the same way; clamped to
 * [0, 255] before / 255. Returns MK_ERR_INVALID for an unknown norm, size <= 0, or a target std
 * that is not > 0. */
mk_status mk_histo_normalize(mk_ctx *ctx, const uint8_t *rgb, int size, const mk_histo_read_opts *o,
                             float *chw);

/* Patch i of g from slide s as float [3][size][size] (channel-major, rows top to bottom) into
 * chw (caller's, 3*size*size floats): read at g->level, normalised, then transformed by
 * o->dihedral. Errors name the slide (corrupt tile) or the index. */
mk_status mk_histo_read_patch(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid *g, int64_t i,
                              const mk_histo_read_opts *o, float *chw);
/* Dihedral transform d (0..7) of ch planes of size x size: rotate by (d & 3) x 90 degrees
 * counter-clockwise (numpy.rot90(plane, d & 3)), then, when d & 4, flip left-right
 * (numpy.fliplr). in and out must not overlap. */
void mk_histo_dihedral(const float *in, float *out, int ch, int size, int d);

#ifdef __cplusplus
}
#endif
#endif
