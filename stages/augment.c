/* Random affine augmentation of 2D slices (scale and rotation about the slice centre), as
 * MT-UDA's --sup_aug / --tea_aug (scale 0.9-1.1, rotation +-10 degrees). See stage_internal.h. */
#include <math.h>

#include "stage_internal.h"

mk__affine mk__affine_make(double scale, double angle)
{
    /* output -> input: rotate back by the angle, shrink by the scale */
    double c = cos(angle) / scale, s = sin(angle) / scale;
    mk__affine A = {{c, s, -s, c}};
    return A;
}

mk__affine mk__affine_draw(mk_rng *r, double dscale, double deg)
{
    double scale = 1.0 + dscale * (2.0 * mk_rng_uniform_d(r) - 1.0);
    double angle = deg * (2.0 * mk_rng_uniform_d(r) - 1.0) * M_PI / 180.0;
    return mk__affine_make(scale, angle);
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The source position of output pixel (x, y). */
static void source(const mk__affine *A, int h, int w, int x, int y, double *sx, double *sy)
{
    double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1), dx = x - cx, dy = y - cy;
    *sx = cx + A->a[0] * dx + A->a[1] * dy;
    *sy = cy + A->a[2] * dx + A->a[3] * dy;
}

void mk__affine_image(const mk__affine *A, int h, int w, const float *in, float *out)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sx, sy;
            source(A, h, w, x, y, &sx, &sy);
            sx = sx < 0 ? 0 : sx > w - 1 ? w - 1 : sx;
            sy = sy < 0 ? 0 : sy > h - 1 ? h - 1 : sy;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
            double fx = sx - x0, fy = sy - y0;
            double v = (1 - fy) * ((1 - fx) * in[y0 * w + x0] + fx * in[y0 * w + x1]) +
                       fy * ((1 - fx) * in[y1 * w + x0] + fx * in[y1 * w + x1]);
            out[y * w + x] = (float)v;
        }
}

void mk__affine_labels(const mk__affine *A, int h, int w, const int32_t *in, int32_t *out)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sx, sy;
            source(A, h, w, x, y, &sx, &sy);
            int ix = clampi((int)floor(sx + 0.5), 0, w - 1),
                iy = clampi((int)floor(sy + 0.5), 0, h - 1);
            out[y * w + x] = in[iy * w + ix];
        }
}
