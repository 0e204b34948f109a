/* medkd whole-slide TIFF: pyramidal tiled/striped TIFF reading by region and a tiled pyramidal
 * TIFF writer (libtiff). Plus a small PNG writer (libpng) for patches. The tissue mask and the
 * patch grid built on these reads are histo/mk_histo.h.
 *
 * Levels. Level 0 is the full-resolution image (the first directory that is not a
 * reduced-resolution image). The other levels are, in order of decreasing size, every further
 * directory with the same photometric layout and a smaller size (SubfileType=1 or not), and the
 * SubIFDs of level 0 when it has them. A slide with one directory has one level. downsample =
 * level-0 width / level width.
 *
 * Pixels. All reads return RGB8 interleaved (R,G,B per pixel, rows top to bottom): gray is
 * replicated, palette/YCbCr/JPEG converted. A region read decodes only the tiles (or strips) it
 * touches. Pixels outside the level are white (255,255,255).
 *
 *     mk_tiff_slide *s = NULL;
 *     if (mk_tiff_open(&ctx, "slide.tif", &s) != MK_OK) ...;
 *     mk_tiff_level lv; mk_tiff_level_info(&ctx, s, 1, &lv);
 *     uint8_t *rgb = malloc(256 * 256 * 3);
 *     mk_tiff_read_region(&ctx, s, 1, 0, 0, 256, 256, rgb);   // x, y in level-1 pixels
 *     mk_tiff_close(s);
 */
#ifndef MK_TIFF_H
#define MK_TIFF_H

#include <stdint.h>
#include <stdio.h>

#include "mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle of an open slide (libtiff TIFF* plus the level table and a tile cache). */
typedef struct mk_tiff_slide mk_tiff_slide;

/* Description of one level (a value, filled by mk_tiff_level_info). */
typedef struct mk_tiff_level {
    int64_t width, height; /* pixels */
    int tile_w, tile_h;    /* tile size, 0 0 for a striped level */
    int rows_per_strip;    /* striped levels only, else 0 */
    int samples;           /* samples per pixel (1 gray, 3 RGB, 4 RGBA) */
    int bits;              /* bits per sample (8) */
    int compression;       /* libtiff COMPRESSION_* value */
    int photometric;       /* libtiff PHOTOMETRIC_* value */
    int subifd;            /* 1 if the level is a SubIFD of level 0 */
    double downsample;     /* level-0 width / width */
} mk_tiff_level;

/* 1 if the file starts with a TIFF or BigTIFF magic ("II*\0", "MM\0*", "II+\0", "MM\0+"). */
int mk_tiff_is_tiff(const char *path);

/* Open a slide and build its level table (headers only; no pixel is decoded).
 * Supported: 8-bit gray/RGB(A)/YCbCr/palette, contiguous or separate planes, tiled or striped,
 * any compression libtiff decodes (none, LZW, deflate, JPEG, ...).
 * Ownership: *out is new, close with mk_tiff_close. Returns MK_OK, MK_ERR_IO, MK_ERR_FORMAT,
 * MK_ERR_UNSUPPORTED (e.g. 16-bit samples). */
mk_status mk_tiff_open(mk_ctx *ctx, const char *path, mk_tiff_slide **out);
void mk_tiff_close(mk_tiff_slide *s); /* NULL ok */

int mk_tiff_level_count(const mk_tiff_slide *s);
/* Level description. Returns MK_ERR_INVALID (message names the valid range) for a bad level. */
mk_status mk_tiff_level_info(mk_ctx *ctx, const mk_tiff_slide *s, int level, mk_tiff_level *out);
/* Path given to mk_tiff_open (borrowed). */
const char *mk_tiff_path(const mk_tiff_slide *s);

/* Read the w x h region with top-left (x, y) in LEVEL pixels into rgb (w*h*3 bytes, caller's).
 * Only the tiles/strips that intersect the region are decoded. Parts outside the level are white.
 * Returns MK_ERR_INVALID (bad level, w/h <= 0), MK_ERR_FORMAT (a tile missing or corrupt: the
 * message names the file, level and tile index). */
mk_status mk_tiff_read_region(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t x, int64_t y, int w,
                              int h, uint8_t *rgb);

/* Whole level as an RGB24 image (ndim 2, identity geometry). Refuses levels above `max_pixels`
 * (0: 1<<28) with MK_ERR_NOMEM. Ownership: *out new, mk_image_free. */
mk_status mk_tiff_read_level(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t max_pixels,
                             mk_image **out);

/* ---- writer ---------------------------------------------------------------------------------- */

typedef enum mk_tiff_compression {
    MK_TIFF_COMP_NONE = 0,
    MK_TIFF_COMP_LZW,
    MK_TIFF_COMP_DEFLATE,
    MK_TIFF_COMP_JPEG,
    MK_TIFF_COMP_COUNT
} mk_tiff_compression;

/* Parse "none", "lzw", "deflate"/"zip", "jpeg". Returns -1 if unknown. */
int mk_tiff_compression_parse(const char *name);

typedef struct mk_tiff_write_opts {
    int tile;                 /* tile side (multiple of 16); 0 -> 256 */
    mk_tiff_compression comp; /* default NONE */
    int jpeg_quality;         /* 1..100; 0 -> 90 */
    int levels;         /* total levels incl. level 0; 0 -> halve until the larger side <= tile */
    int subifd;         /* 1: reduced levels as SubIFDs of level 0; 0: as following IFDs */
    int striped;        /* 1: one striped level-0 image, no pyramid (for tests/tools) */
    int rows_per_strip; /* striped only; 0 -> 64 */
} mk_tiff_write_opts;

/* Delivers level-0 pixels: fill dst (w*h*samples bytes, rows of w*samples) with the block whose
 * top-left is (x, y). Called in row-major tile order, each block exactly once. */
typedef mk_status (*mk_tiff_tile_fn)(void *user, int64_t x, int64_t y, int w, int h, uint8_t *dst);

/* Write a pyramidal TIFF from a level-0 buffer (width*height*samples bytes, samples 1 = gray or
 * 3 = RGB). Reduced levels are 2x2 box means (rounded) of the level above, SubfileType=1.
 * opts NULL = defaults. Atomic (temp + rename). Returns MK_OK, MK_ERR_INVALID, MK_ERR_IO. */
mk_status mk_tiff_write(mk_ctx *ctx, const char *path, const uint8_t *pix, int64_t width,
                        int64_t height, int samples, const mk_tiff_write_opts *opts);

/* Same, pulling level-0 pixels by tile through fn (large slides): memory holds one tile row of
 * level 0 plus level 1 (a quarter of level 0). */
mk_status mk_tiff_write_cb(mk_ctx *ctx, const char *path, int64_t width, int64_t height,
                           int samples, mk_tiff_tile_fn fn, void *user,
                           const mk_tiff_write_opts *opts);

/* mk_image adapters for `convert`: a 2D uint8 (gray) or RGB24 image (ndim 2, or 3 with dim[2]=1)
 * to a pyramidal TIFF; and level `level` of a TIFF to an RGB24 image (identity geometry). */
mk_status mk_io_tiff_write_image(mk_ctx *ctx, const char *path, const mk_image *img,
                                 const mk_tiff_write_opts *opts);
mk_status mk_io_tiff_read_image(mk_ctx *ctx, const char *path, int level, mk_image **out);

/* Human-readable description for `pipeline info`: levels (size, tile size or strips, samples,
 * compression, downsample), one line each. Writes to out. */
mk_status mk_io_tiff_info(mk_ctx *ctx, const char *path, FILE *out);

/* ---- PNG ------------------------------------------------------------------------------------- */

/* Write 8-bit gray (samples 1) or RGB (samples 3) pixels as PNG, atomically (temp + rename). */
mk_status mk_io_png_write(mk_ctx *ctx, const char *path, const uint8_t *pix, int width, int height,
                          int samples);
/* Read an 8-bit PNG as RGB8 (gray and palette expanded, alpha dropped, 16-bit reduced).
 * Ownership: *pix malloc'd, caller frees. */
mk_status mk_io_png_read(mk_ctx *ctx, const char *path, uint8_t **pix, int *width, int *height);

#ifdef __cplusplus
}
#endif
#endif
