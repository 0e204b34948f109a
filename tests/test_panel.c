/* Report panels (report/panel.c) on synthetic cases built in memory. Each PNG is decoded back
 * with cairo and its pixels classified: a red-tinted pixel (FP fill) has R above both G and B by
 * 40, a blue-tinted one (FN fill) B above R and G by 40. The grey image, green reference and
 * magenta prediction contours and the white text all have R == B, so neither class can come from
 * them. Expected slices and counts are derived from the blob placed in each case. Orientation
 * against an independent reader is tests/panel_ref.py. MK_PANEL_SAMPLE=FILE writes the
 * realistic case's PNG there; the 512x512x300 case prints its render time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cairo.h>
#ifdef MK_TEST_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/mk_image.h"
#include "report/mk_panel.h"

static mk_image *mkimg(mk_dtype t, int64_t nx, int64_t ny, int64_t nz, double sx, double sy,
                       double sz)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {nx, ny, nz};
    mk_image *im = NULL;
    assert_int_equal(mk_image_new(&ctx, t, 3, dim, &im), MK_OK);
    im->geom.spacing[0] = sx;
    im->geom.spacing[1] = sy;
    im->geom.spacing[2] = sz;
    im->geom.origin[0] = -12.5;
    im->geom.origin[1] = 7.25;
    im->geom.origin[2] = 30;
    return im;
}

static int64_t vidx(const mk_image *im, int64_t i, int64_t j, int64_t k)
{
    return i + im->dim[0] * (j + im->dim[1] * k);
}

/* ball of radius r (voxel units) around (ci, cj, ck), value v */
static void ball(mk_image *im, double ci, double cj, double ck, double r, double v)
{
    for (int64_t k = 0; k < im->dim[2]; k++)
        for (int64_t j = 0; j < im->dim[1]; j++)
            for (int64_t i = 0; i < im->dim[0]; i++) {
                double a = i - ci, b = j - cj, c = k - ck;
                if (a * a + b * b + c * c <= r * r)
                    mk_image_set(im, vidx(im, i, j, k), v);
            }
}

static void box(mk_image *im, int64_t i0, int64_t j0, int64_t k0, int64_t n, double v)
{
    for (int64_t k = k0; k < k0 + n; k++)
        for (int64_t j = j0; j < j0 + n; j++)
            for (int64_t i = i0; i < i0 + n; i++)
                mk_image_set(im, vidx(im, i, j, k), v);
}

/* an image with structure: smooth gradient plus a bright ball */
static mk_image *grey_image(mk_dtype t, int64_t nx, int64_t ny, int64_t nz, double sx, double sy,
                            double sz)
{
    mk_image *im = mkimg(t, nx, ny, nz, sx, sy, sz);
    for (int64_t k = 0; k < nz; k++)
        for (int64_t j = 0; j < ny; j++)
            for (int64_t i = 0; i < nx; i++)
                mk_image_set(im, vidx(im, i, j, k), 20 + (double)((i + 2 * j + 3 * k) % 150));
    ball(im, nx / 2.0, ny / 2.0, nz / 2.0, nx / 4.0, 220);
    return im;
}

static mk_image *clone(const mk_image *a)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *b = NULL;
    assert_int_equal(mk_image_clone(&ctx, a, &b), MK_OK);
    return b;
}

/* ---- PNG decoding --------------------------------------------------------------------------- */

typedef struct rd {
    const unsigned char *p;
    size_t n, at;
} rd;

static cairo_status_t rd_cb(void *c, unsigned char *data, unsigned int len)
{
    rd *r = c;
    if (r->at + len > r->n)
        return CAIRO_STATUS_READ_ERROR;
    memcpy(data, r->p + r->at, len);
    r->at += len;
    return CAIRO_STATUS_SUCCESS;
}

typedef struct pix {
    cairo_surface_t *s;
    int w, h, stride;
    const unsigned char *d;
} pix;

static pix decode(const unsigned char *png, size_t len, const mk_panel_info *info)
{
    rd r = {png, len, 0};
    pix p;
    p.s = cairo_image_surface_create_from_png_stream(rd_cb, &r);
    assert_int_equal(cairo_surface_status(p.s), CAIRO_STATUS_SUCCESS);
    p.w = cairo_image_surface_get_width(p.s);
    p.h = cairo_image_surface_get_height(p.s);
    p.stride = cairo_image_surface_get_stride(p.s);
    p.d = cairo_image_surface_get_data(p.s);
    assert_int_equal(p.w, info->width);
    assert_int_equal(p.h, info->height);
    return p;
}

static void rgb(const pix *p, int x, int y, int *r, int *g, int *b)
{
    uint32_t v = ((const uint32_t *)(const void *)(p->d + y * p->stride))[x];
    *r = (int)(v >> 16 & 255);
    *g = (int)(v >> 8 & 255);
    *b = (int)(v & 255);
}

enum { RED, BLUE, GREEN, MAGENTA };

static int is_kind(int r, int g, int b, int kind)
{
    switch (kind) {
    case RED: return r > g + 40 && r > b + 40;
    case BLUE: return b > r + 40 && b > g + 40;
    case GREEN: return g > r + 60 && g > b + 60;
    default: return r > g + 60 && b > g + 60;
    }
}

/* pixels of a kind in rectangle (x, y, w, h); centroid to cx, cy (may be NULL) */
static int count_kind(const pix *p, int x0, int y0, int w, int h, int kind, double *cx, double *cy)
{
    int n = 0;
    double sx = 0, sy = 0;
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) {
            int r, g, b;
            rgb(p, x, y, &r, &g, &b);
            if (is_kind(r, g, b, kind)) {
                n++;
                sx += x - x0;
                sy += y - y0;
            }
        }
    if (cx)
        *cx = n ? sx / n : -1;
    if (cy)
        *cy = n ? sy / n : -1;
    return n;
}

static int count_all(const pix *p, int kind)
{
    return count_kind(p, 0, 0, p->w, p->h, kind, NULL, NULL);
}

static mk_status render(const mk_image *img, const mk_image *ref, const mk_image *pred,
                        const int64_t *labels, int nl, const mk_panel_opts *o, unsigned char **png,
                        size_t *len, mk_panel_info *info, mk_ctx *ctx)
{
    mk_panel_opts def;
    if (!o) {
        mk_panel_opts_default(&def);
        def.window_auto = 0;
        def.window[0] = 0;
        def.window[1] = 255;
        o = &def;
    }
    return mk_panel_render(ctx, img, ref, pred, labels, nl, o, png, len, info);
}

/* ---- cases ---------------------------------------------------------------------------------- */

static void test_agree(void **state)
{
    (void)state;
    mk_image *img = grey_image(MK_DT_INT16, 40, 36, 20, 1, 1, 2);
    mk_image *ref = mkimg(MK_DT_UINT8, 40, 36, 20, 1, 1, 2);
    ball(ref, 20, 18, 10, 7, 1);
    mk_image *pred = clone(ref);
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(render(img, ref, pred, lab, 1, NULL, &png, &len, &info, &ctx), MK_OK);
    assert_non_null(png);
    assert_true(len > 8 && memcmp(png, "\x89PNG", 4) == 0);
    pix p = decode(png, len, &info);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(info.errors[t], 0);
        assert_true(info.tile_w[t] > 0);
        /* no disagreement: the slice with most reference foreground, the ball's centre */
        assert_int_equal(info.slice[t], t == 0 ? 10 : t == 1 ? 18 : 20);
        int x = info.tile_x[t], y = info.tile_y[t], w = info.tile_w[t], h = info.tile_h[t];
        assert_true(x + w <= p.w && y + h <= p.h);
        assert_true(count_kind(&p, x, y, w, h, GREEN, NULL, NULL) > 20);
        assert_true(count_kind(&p, x, y, w, h, MAGENTA, NULL, NULL) > 20);
    }
    /* identity LPS direction: i runs R->L, j A->P, k I->S; axial cuts k, coronal j, sagittal i */
    assert_int_equal(info.axis[0], 2);
    assert_int_equal(info.axis[1], 1);
    assert_int_equal(info.axis[2], 0);
    assert_int_equal(count_all(&p, RED), 0);
    assert_int_equal(count_all(&p, BLUE), 0);
    cairo_surface_destroy(p.s);
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* FP only: a 3x3x3 cube predicted outside the reference ball; ties between its three slices go
 * to the first, and each of them holds 9 differing voxels. */
static void test_fp_blob(void **state)
{
    (void)state;
    mk_image *img = grey_image(MK_DT_FLOAT32, 40, 36, 20, 1, 1, 2);
    mk_image *ref = mkimg(MK_DT_UINT8, 40, 36, 20, 1, 1, 2);
    ball(ref, 20, 18, 10, 6, 1);
    mk_image *pred = mkimg(MK_DT_INT16, 40, 36, 20, 1, 1, 2);
    ball(pred, 20, 18, 10, 6, 1);
    box(pred, 30, 5, 13, 3, 1);
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    assert_int_equal(render(img, ref, pred, lab, 1, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.slice[0], 13); /* k */
    assert_int_equal(info.slice[1], 5);  /* j */
    assert_int_equal(info.slice[2], 30); /* i */
    pix p = decode(png, len, &info);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(info.errors[t], 9);
        int n = count_kind(&p, info.tile_x[t], info.tile_y[t], info.tile_w[t], info.tile_h[t], RED,
                           NULL, NULL);
        assert_true(n > 9);
    }
    assert_int_equal(count_all(&p, BLUE), 0);
    cairo_surface_destroy(p.s);
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* FN only, float32 labels, where the blob is on the patient's right (low i, LPS identity):
 * the axial and coronal tiles show it on their left half. */
static void test_fn_blob(void **state)
{
    (void)state;
    mk_image *img = grey_image(MK_DT_UINT8, 40, 36, 20, 1, 1, 2);
    mk_image *ref = mkimg(MK_DT_FLOAT32, 40, 36, 20, 1, 1, 2);
    ball(ref, 20, 18, 10, 6, 1);
    mk_image *pred = clone(ref);
    ball(ref, 5, 18, 10, 3, 1); /* ball of radius 3: 29 voxels on its central slices */
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    assert_int_equal(render(img, ref, pred, lab, 1, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.slice[0], 10);
    assert_int_equal(info.slice[1], 18);
    assert_int_equal(info.slice[2], 5);
    for (int t = 0; t < 3; t++)
        assert_int_equal(info.errors[t], 29);
    pix p = decode(png, len, &info);
    assert_int_equal(count_all(&p, RED), 0);
    for (int t = 0; t < 3; t++) {
        double cx, cy;
        int n = count_kind(&p, info.tile_x[t], info.tile_y[t], info.tile_w[t], info.tile_h[t], BLUE,
                           &cx, &cy);
        assert_true(n > 29);
        if (t < 2)
            assert_true(cx < info.tile_w[t] / 2.0);
    }
    cairo_surface_destroy(p.s);
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* Only scored labels count: value 7 is background; 1 vs 2 (both scored) is a difference and
 * gives both fills. Without disagreement or foreground: the middle slices. */
static void test_labels_and_fallbacks(void **state)
{
    (void)state;
    mk_image *ref = mkimg(MK_DT_INT16, 30, 30, 12, 1, 1, 1);
    mk_image *pred = mkimg(MK_DT_INT16, 30, 30, 12, 1, 1, 1);
    box(pred, 3, 3, 3, 4, 7); /* unscored */
    int64_t lab[2] = {1, 2};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    assert_int_equal(render(NULL, ref, pred, lab, 2, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.slice[0], 6);
    assert_int_equal(info.slice[1], 15);
    assert_int_equal(info.slice[2], 15);
    for (int t = 0; t < 3; t++)
        assert_int_equal(info.errors[t], 0);
    free(png);
    png = NULL;

    /* most reference foreground: k = 8 has 9 voxels, k = 4 has 4 */
    box(ref, 20, 20, 4, 2, 1);
    for (int64_t j = 0; j < 3; j++)
        for (int64_t i = 0; i < 3; i++)
            mk_image_set(ref, vidx(ref, 10 + i, 12 + j, 8), 2);
    mk_image_free(pred);
    pred = clone(ref);
    assert_int_equal(render(NULL, ref, pred, lab, 2, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.slice[0], 8);
    assert_int_equal(info.errors[0], 0);
    free(png);
    png = NULL;

    /* label 1 where the reference has 2: FP and FN at once */
    for (int64_t j = 0; j < 3; j++)
        for (int64_t i = 0; i < 3; i++)
            mk_image_set(pred, vidx(pred, 10 + i, 12 + j, 8), 1);
    assert_int_equal(render(NULL, ref, pred, lab, 2, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.slice[0], 8);
    assert_int_equal(info.errors[0], 9);
    assert_int_equal(info.slice[1], 12);
    assert_int_equal(info.errors[1], 3);
    free(png);
    png = NULL;

    /* scoring only label 1: the reference's 2 is background, the prediction's 1 a FP */
    assert_int_equal(render(NULL, ref, pred, lab, 1, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.errors[0], 9);
    pix p = decode(png, len, &info);
    assert_true(count_all(&p, RED) > 0);
    assert_int_equal(count_all(&p, BLUE), 0);
    cairo_surface_destroy(p.s);
    free(png);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* Physical aspect and window_auto on the realistic grid: 64x64x24 at 5.47x5.47x10 mm. Axial
 * 350x350 mm -> 256x256; coronal and sagittal 350x240 mm -> 256 x 175.5 -> 176. Voxel values
 * idx % 1000 over 98304 voxels: the 0.5 / 99.5 percentiles are 4..5 and 994..995. */
static void test_aspect_window_sample(void **state)
{
    (void)state;
    mk_image *img = mkimg(MK_DT_INT16, 64, 64, 24, 5.47, 5.47, 10);
    for (int64_t x = 0; x < mk_image_nvox(img); x++)
        mk_image_set(img, x, (double)(x % 1000));
    mk_image *ref = mkimg(MK_DT_UINT8, 64, 64, 24, 5.47, 5.47, 10);
    mk_image *pred = mkimg(MK_DT_UINT8, 64, 64, 24, 5.47, 5.47, 10);
    mk_panel_opts o;
    mk_panel_opts_default(&o);
    assert_int_equal(o.tile_px, 256);
    assert_int_equal(o.window_auto, 1);
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    assert_int_equal(render(img, ref, pred, lab, 1, &o, &png, &len, &info, NULL), MK_OK);
    assert_true(info.window[0] >= 4 && info.window[0] <= 5);
    assert_true(info.window[1] >= 994 && info.window[1] <= 995);
    assert_int_equal(info.tile_w[0], 256);
    assert_int_equal(info.tile_h[0], 256);
    for (int t = 1; t < 3; t++) {
        assert_int_equal(info.tile_w[t], 256);
        assert_int_equal(info.tile_h[t], 176);
    }
    free(png);
    png = NULL;

    /* the sample: a body-like image, a sphere reference and a shifted sphere prediction */
    for (int64_t k = 0; k < 24; k++)
        for (int64_t j = 0; j < 64; j++)
            for (int64_t i = 0; i < 64; i++) {
                double a = (i - 31.5) / 27, b = (j - 33.0) / 22, c = (k - 11.5) / 14;
                double v = a * a + b * b + c * c <= 1 ? 40 + 8 * sin(i * 0.7) * cos(j * 0.5) : -900;
                mk_image_set(img, vidx(img, i, j, k), v);
            }
    ball(img, 22, 28, 12, 9, 120);
    /* physical sphere of 45 mm radius, prediction shifted 11 mm to the left and 10 mm up */
    for (int64_t k = 0; k < 24; k++)
        for (int64_t j = 0; j < 64; j++)
            for (int64_t i = 0; i < 64; i++) {
                double a = (i - 24) * 5.47, b = (j - 30) * 5.47, c = (k - 11) * 10.0;
                double a2 = (i - 26) * 5.47, c2 = (k - 12) * 10.0;
                if (a * a + b * b + c * c <= 45 * 45)
                    mk_image_set(ref, vidx(ref, i, j, k), 1);
                if (a2 * a2 + b * b + c2 * c2 <= 45 * 45)
                    mk_image_set(pred, vidx(pred, i, j, k), 1);
            }
    o.window_auto = 0;
    o.window[0] = -160;
    o.window[1] = 240;
    assert_int_equal(render(img, ref, pred, lab, 1, &o, &png, &len, &info, NULL), MK_OK);
    pix p = decode(png, len, &info);
    assert_true(count_all(&p, RED) > 0);
    assert_true(count_all(&p, BLUE) > 0);
    cairo_surface_destroy(p.s);
    const char *out = getenv("MK_PANEL_SAMPLE");
    if (out) {
        FILE *f = fopen(out, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(png, 1, len, f), len);
        fclose(f);
    }
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* 2-D: one tile (the axial plane across k), the others absent. */
static void test_2d(void **state)
{
    (void)state;
    mk_image *img = grey_image(MK_DT_UINT8, 50, 40, 1, 0.5, 0.5, 1);
    mk_image *ref = mkimg(MK_DT_UINT8, 50, 40, 1, 0.5, 0.5, 1);
    box(ref, 10, 10, 0, 1, 1);
    mk_image *pred = mkimg(MK_DT_UINT8, 50, 40, 1, 0.5, 0.5, 1);
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    assert_int_equal(render(img, ref, pred, lab, 1, NULL, &png, &len, &info, NULL), MK_OK);
    assert_int_equal(info.tile_w[0], 256);
    assert_int_equal(info.tile_h[0], 205); /* 40 / 50 * 256 = 204.8 */
    assert_int_equal(info.slice[0], 0);
    assert_int_equal(info.errors[0], 1);
    for (int t = 1; t < 3; t++) {
        assert_int_equal(info.tile_w[t], 0);
        assert_int_equal(info.slice[t], -1);
    }
    pix p = decode(png, len, &info);
    assert_true(p.w < 256 + 20);
    assert_true(count_all(&p, BLUE) > 0);
    cairo_surface_destroy(p.s);
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

static void expect_fail(const mk_image *img, const mk_image *ref, const mk_image *pred,
                        const mk_panel_opts *o, mk_status want, const char *msg_part)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t lab[1] = {1};
    unsigned char *png = (unsigned char *)"x";
    size_t len = 99;
    mk_panel_info info;
    mk_status st = render(img, ref, pred, lab, 1, o, &png, &len, &info, &ctx);
    if (st != want || !strstr(ctx.msg, msg_part)) {
        print_error("status %d (want %d), message '%s' (want '%s')\n", (int)st, (int)want, ctx.msg,
                    msg_part);
        fail();
    }
    assert_null(png);
    assert_int_equal(len, 0);
}

static void test_errors(void **state)
{
    (void)state;
    mk_image *img = grey_image(MK_DT_INT16, 20, 20, 10, 1, 1, 2);
    mk_image *ref = mkimg(MK_DT_UINT8, 20, 20, 10, 1, 1, 2);
    mk_image *pred = mkimg(MK_DT_UINT8, 20, 20, 10, 1, 1, 2);
    mk_image *bad_sp = mkimg(MK_DT_UINT8, 20, 20, 10, 1, 1, 2.5);
    mk_image *bad_dim = mkimg(MK_DT_UINT8, 20, 20, 11, 1, 1, 2);
    expect_fail(img, bad_sp, pred, NULL, MK_ERR_GEOMETRY, "reference and image");
    expect_fail(img, ref, bad_dim, NULL, MK_ERR_GEOMETRY, "prediction and image");
    expect_fail(NULL, ref, bad_sp, NULL, MK_ERR_GEOMETRY, "prediction and reference");
    expect_fail(NULL, ref, bad_sp, NULL, MK_ERR_GEOMETRY, "spacing");

    mk_panel_opts o;
    mk_panel_opts_default(&o);
    o.window_auto = 0;
    o.window[0] = 100;
    o.window[1] = 100;
    expect_fail(img, ref, pred, &o, MK_ERR_INVALID, "window");
    o.window[1] = NAN;
    expect_fail(img, ref, pred, &o, MK_ERR_INVALID, "window");
    o.window_auto = 1; /* window[] then unused */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    assert_int_equal(mk_panel_render(&ctx, img, ref, pred, lab, 1, &o, &png, &len, NULL), MK_OK);
    free(png);
    o.tile_px = 31;
    expect_fail(img, ref, pred, &o, MK_ERR_INVALID, "tile_px");
    o.tile_px = 4097;
    expect_fail(img, ref, pred, &o, MK_ERR_INVALID, "tile_px");

    int64_t d4[4] = {20, 20, 10, 2};
    mk_image *four = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 4, d4, &four), MK_OK);
    four->geom = ref->geom;
    expect_fail(NULL, four, pred, NULL, MK_ERR_UNSUPPORTED, "4");
    expect_fail(four, ref, pred, NULL, MK_ERR_UNSUPPORTED, "image has shape 20x20x10x2x1");

    ctx.cancel = 1;
    png = NULL;
    assert_int_equal(mk_panel_render(&ctx, img, ref, pred, lab, 1, &o, &png, &len, NULL),
                     MK_ERR_INVALID); /* tile_px still 4097: validation comes first */
    o.tile_px = 256;
    assert_int_equal(mk_panel_render(&ctx, img, ref, pred, lab, 1, &o, &png, &len, NULL),
                     MK_ERR_ABORTED);
    assert_null(png);
    mk_image_free(four);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
    mk_image_free(bad_sp);
    mk_image_free(bad_dim);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* 512x512x300 int16 CT-like image, uint8 masks; the blob slice is found and the time printed. */
static void test_large(void **state)
{
    (void)state;
    const int64_t n0 = 512, n1 = 512, n2 = 300;
    mk_image *img = mkimg(MK_DT_INT16, n0, n1, n2, 0.7, 0.7, 1.5);
    mk_image *ref = mkimg(MK_DT_UINT8, n0, n1, n2, 0.7, 0.7, 1.5);
    mk_image *pred = mkimg(MK_DT_UINT8, n0, n1, n2, 0.7, 0.7, 1.5);
    int16_t *g = img->data;
    for (int64_t x = 0; x < mk_image_nvox(img); x++)
        g[x] = (int16_t)((x * 7919) % 2000 - 1000);
    for (int64_t k = 100; k < 200; k++)
        for (int64_t j = 150; j < 350; j++) {
            memset((uint8_t *)ref->data + vidx(ref, 150, j, k), 1, 200);
            memset((uint8_t *)pred->data + vidx(pred, 150, j, k), 1, 200);
        }
    box(pred, 400, 60, 250, 5, 1); /* FP cube: first slices 250 / 60 / 400 */
    mk_panel_opts o;
    mk_panel_opts_default(&o);
    int64_t lab[1] = {1};
    unsigned char *png = NULL;
    size_t len = 0;
    mk_panel_info info;
    double t0 = now_s();
    assert_int_equal(render(img, ref, pred, lab, 1, &o, &png, &len, &info, NULL), MK_OK);
    double t1 = now_s();
    print_message("panel 512x512x300 int16 image, uint8 masks, window_auto: %.3f s, PNG %zu "
                  "bytes %dx%d\n",
                  t1 - t0, len, info.width, info.height);
    assert_int_equal(info.slice[0], 250);
    assert_int_equal(info.slice[1], 60);
    assert_int_equal(info.slice[2], 400);
    assert_int_equal(info.errors[0], 25);
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* cairo keeps its toy font faces (fontconfig patterns) in static caches and fontconfig its
 * configuration for the life of the process; release both (in that order) so LeakSanitizer
 * reports only leaks of ours. */
static int group_teardown(void **state)
{
    (void)state;
    cairo_debug_reset_static_data();
#ifdef MK_TEST_HAVE_FONTCONFIG
    FcFini();
#endif
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agree),
        cmocka_unit_test(test_fp_blob),
        cmocka_unit_test(test_fn_blob),
        cmocka_unit_test(test_labels_and_fallbacks),
        cmocka_unit_test(test_aspect_window_sample),
        cmocka_unit_test(test_2d),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
