/* PNG patches through libpng (simplified API: png_image), written atomically. */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "mk_tiff.h"

mk_status mk_io_png_write(mk_ctx *ctx, const char *path, const uint8_t *pix, int width, int height,
                          int samples)
{
    MK_ASSERT(path && pix);
    if (width <= 0 || height <= 0 || (samples != 1 && samples != 3))
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: PNG of %d x %d with %d samples: expected positive size, 1 or 3 samples",
                      path, width, height, samples);
    char tmp[4096];
    mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
    if (st != MK_OK)
        return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        mk_fs_discard(tmp); /* mk_fs_tmp_path may have made it (stream targets) */
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create it: %s", path, strerror(e));
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)width;
    im.height = (png_uint_32)height;
    im.format = samples == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    int ok = png_image_write_to_stdio(&im, f, 0, pix, 0, NULL);
    char msg[128];
    snprintf(msg, sizeof msg, "%s", im.message);
    png_image_free(&im);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        mk_fs_discard(tmp);
        return mk_err(ctx, MK_ERR_IO, "%s: writing PNG failed: %s", path,
                      msg[0] ? msg : strerror(errno));
    }
    return mk_fs_commit(ctx, tmp, path);
}

mk_status mk_io_png_read(mk_ctx *ctx, const char *path, uint8_t **pix, int *width, int *height)
{
    MK_ASSERT(path && pix && width && height);
    *pix = NULL;
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        mk_status st = mk_err(ctx, MK_ERR_FORMAT, "%s: not a readable PNG: %s", path, im.message);
        png_image_free(&im);
        return st;
    }
    if (im.width == 0 || im.height == 0 || (uint64_t)im.width * im.height > ((uint64_t)1 << 30)) {
        png_image_free(&im);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: field IHDR size %u x %u: expected 1..2^30 pixels",
                      path, im.width, im.height);
    }
    im.format = PNG_FORMAT_RGB;
    size_t n = PNG_IMAGE_SIZE(im);
    uint8_t *buf = (uint8_t *)malloc(n);
    if (!buf) {
        png_image_free(&im);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    if (!png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        mk_status st = mk_err(ctx, MK_ERR_FORMAT, "%s: PNG decoding failed: %s", path, im.message);
        free(buf);
        png_image_free(&im);
        return st;
    }
    *width = (int)im.width;
    *height = (int)im.height;
    *pix = buf;
    return MK_OK;
}
