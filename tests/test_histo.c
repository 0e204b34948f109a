/* Histology (histo/mk_histo.h): tissue mask and patch grid on a slide with a known tissue
 * rectangle (moved from test_tiff.c), Otsu on analytic histograms and a two-colour slide, the
 * median blur and the whole mask against scipy (median_filter, mode='nearest'), grid counts, the
 * centre-region label rule on hand-built masks (full and half size), HDF5 round trip read by
 * h5py and a CLAM-style file, the dihedral transforms against numpy.rot90 / fliplr, Reinhard
 * against an independent numpy implementation (and the output's L*a*b* statistics against the
 * target), standardisation, and bad slides, masks and grid files (status + the file named).
 * References: tests/histo_ref.py (numpy, scipy, h5py). Fails without python3 + numpy + scipy +
 * h5py (declared in scripts/deps.list). */
#define _GNU_SOURCE /* nftw (test_tmp.h) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "histo/mk_histo.h"
#include "io/mk_hdf5.h"
#include "io/mk_tiff.h"
#include "phantoms/mk_phantoms.h"
#include "test_tmp.h"

#if defined(__GNUC__) && !defined(__clang__) /* clang has no such warning */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static char g_tmp[1024];

/* ---- helpers ------------------------------------------------------------------------------- */

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_tmp, name);
}

static void run_ref(const char *args)
{
    const char *src = getenv("MK_SOURCE_DIR"); /* set by ctest; else the configured tree */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/histo_ref.py' %s",
             src ? src : MK_TEST_SOURCE_DIR, args);
    if (system(cmd) != 0)
        fail_msg("reference failed: %s", cmd);
}

static void write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void *read_raw(const char *path, size_t n)
{
    void *p = malloc(n);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(p, 1, n, f), n);
    fclose(f);
    return p;
}

static uint32_t g_rng = 12345;
static uint32_t rnd(void)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return g_rng >> 8;
}

/* Write an RGB (samples 3) or gray (1) TIFF, tiled 64, lossless; levels 0: full pyramid. */
static void write_tiff(const char *path, const uint8_t *pix, int w, int h, int samples, int levels)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_write_opts o = {0};
    o.tile = 64;
    o.comp = MK_TIFF_COMP_DEFLATE;
    o.levels = levels;
    if (mk_tiff_write(&ctx, path, pix, w, h, samples, &o) != MK_OK)
        fail_msg("write %s: %s", path, mk_ctx_errmsg(&ctx));
}

static mk_tiff_slide *open_slide(const char *path)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_slide *s = NULL;
    if (mk_tiff_open(&ctx, path, &s) != MK_OK)
        fail_msg("open %s: %s", path, mk_ctx_errmsg(&ctx));
    return s;
}

/* The message names the file and holds `what`. */
static void assert_msg(const mk_ctx *ctx, const char *file, const char *what)
{
    const char *m = mk_ctx_errmsg(ctx);
    if (!strstr(m, file) || (what && !strstr(m, what)))
        fail_msg("message \"%s\" does not name %s or lacks \"%s\"", m, file, what ? what : "");
}

/* 1024x768 slide: near-white background, a pink "tissue" rectangle [256,768) x [128,512). */
static uint8_t *tissue_slide(int *w, int *h)
{
    *w = 1024;
    *h = 768;
    uint8_t *p = malloc((size_t)*w * *h * 3);
    uint32_t s = 99;
    for (int y = 0; y < *h; y++)
        for (int x = 0; x < *w; x++) {
            s = s * 1664525u + 1013904223u;
            int n = (int)(s >> 28) - 8; /* -8..7 noise */
            int in = x >= 256 && x < 768 && y >= 128 && y < 512;
            int r = in ? 190 : 236, g = in ? 110 : 234, b = in ? 160 : 238;
            uint8_t *q = p + ((size_t)y * *w + x) * 3;
            q[0] = (uint8_t)(r + n / 2);
            q[1] = (uint8_t)(g + n);
            q[2] = (uint8_t)(b + n / 2);
        }
    return p;
}

/* A flat slide of one colour, w x h, pyramid. */
static void flat_slide(const char *path, int w, int h, uint8_t r, uint8_t g, uint8_t b)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        p[3 * i] = r;
        p[3 * i + 1] = g;
        p[3 * i + 2] = b;
    }
    write_tiff(path, p, w, h, 3, 0);
    free(p);
}

/* ---- moved from test_tiff.c: tissue mask and patch walk ------------------------------------- */

typedef struct grid_log {
    int n;
    int64_t x0[256], y0[256];
    double tissue[256];
    int pix_ok;
    const uint8_t *ref;
    int ref_w, level;
} grid_log;

static mk_status grid_cb(void *user, const mk_histo_patch *p)
{
    grid_log *g = user;
    if (g->n < 256) {
        g->x0[g->n] = p->x0;
        g->y0[g->n] = p->y0;
        g->tissue[g->n] = p->tissue;
    }
    g->n++;
    if (p->rgb && g->ref && g->level == 0)
        for (int y = 0; y < p->height; y++)
            if (memcmp(p->rgb + (size_t)y * p->width * 3,
                       g->ref + ((size_t)(p->y + y) * g->ref_w + p->x) * 3, (size_t)p->width * 3))
                g->pix_ok = 0;
    return MK_OK;
}

static void grid_opts(mk_histo_grid_opts *go, int level, int size, int stride, double min_tissue)
{
    mk_histo_grid_defaults(go);
    go->level = level;
    go->size = size;
    go->stride = stride;
    go->min_tissue = min_tissue;
    go->mask.median = 0; /* the rectangle's corners stay exact */
}

static void test_tissue_mask_and_walk(void **state)
{
    (void)state;
    char p[1400];
    tmp_path(p, sizeof p, "tissue.tif");
    int W, H;
    uint8_t *src = tissue_slide(&W, &H);
    mk_tiff_write_opts o = {0};
    o.tile = 128;
    o.comp = MK_TIFF_COMP_LZW;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_tiff_write(&ctx, p, src, W, H, 3, &o), MK_OK);
    mk_tiff_slide *s = open_slide(p);
    assert_int_equal(mk_tiff_level_count(s), 4); /* 1024, 512, 256, 128 */

    mk_histo_mask_opts mo;
    mk_histo_mask_defaults(&mo);
    mo.median = 0;
    mk_histo_mask *m = NULL;
    assert_int_equal(mk_histo_tissue_mask(&ctx, s, &mo, &m), MK_OK);
    assert_int_equal(m->level, 1); /* smallest level with a side >= 512 */
    assert_int_equal(m->width, 512);
    assert_true(m->scale_x == 2.0 && m->scale_y == 2.0);
    /* Saturation: background ~2/255*255 ~ 2..8, tissue (190-110)/190*255 ~ 107: threshold between.
     */
    if (!(m->threshold > 10 && m->threshold < 100))
        fail_msg("Otsu threshold %d", m->threshold);
    assert_true(mk_histo_mask_fraction(m, 256, 128, 512, 384) == 1.0);
    assert_true(mk_histo_mask_fraction(m, 0, 0, 256, 768) == 0.0);
    assert_true(mk_histo_mask_fraction(m, 192, 128, 128, 128) == 0.5);
    mk_histo_mask_free(m);

    /* Level 0, 128 px patches, no overlap: 8 x 6 grid, 12 fully inside the rectangle. */
    grid_log g = {0};
    g.pix_ok = 1;
    g.ref = src;
    g.ref_w = W;
    mk_histo_grid_opts go;
    grid_opts(&go, 0, 128, 0, 0.0);
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 1, grid_cb, &g), MK_OK);
    assert_int_equal(g.n, 48);
    assert_true(g.pix_ok);
    int full = 0;
    for (int i = 0; i < g.n; i++) {
        int in = g.x0[i] >= 256 && g.x0[i] < 768 && g.y0[i] >= 128 && g.y0[i] < 512;
        assert_true(g.tissue[i] == (in ? 1.0 : 0.0));
        full += in;
    }
    assert_int_equal(full, 12);
    memset(&g, 0, sizeof g);
    go.min_tissue = 0.5;
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 0, grid_cb, &g), MK_OK);
    assert_int_equal(g.n, 12);
    /* Stride 64: columns x0 = 192 and 704 and rows y0 = 64 and 448 are half inside. */
    memset(&g, 0, sizeof g);
    go.stride = 64;
    go.min_tissue = 0.2; /* corner patches are a quarter inside (0.25), edge ones half */
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 0, grid_cb, &g), MK_OK);
    /* x0 in {192..704} step 64 (9 values), y0 in {64..448} step 64 (7 values). */
    assert_int_equal(g.n, 9 * 7);
    assert_true(g.tissue[0] == 0.25 && g.x0[0] == 192 && g.y0[0] == 64);
    assert_true(g.tissue[1] == 0.5 && g.x0[1] == 256);
    memset(&g, 0, sizeof g);
    go.min_tissue = 0.4;
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 0, grid_cb, &g), MK_OK);
    assert_int_equal(g.n, 9 * 7 - 4);
    /* Level 2 (256x192), 32 px patches: x, y reported in level-0 pixels. */
    memset(&g, 0, sizeof g);
    grid_opts(&go, 2, 32, 0, 1.0);
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 1, grid_cb, &g), MK_OK);
    assert_int_equal(g.n, 12);
    assert_true(g.x0[0] == 256 && g.y0[0] == 128);
    /* Bad options. */
    grid_opts(&go, 7, 32, 0, 0.0);
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 0, grid_cb, &g), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "levels 0..3"));
    grid_opts(&go, 0, 32, 0, 0.0);
    go.mask.median = 4;
    assert_int_equal(mk_histo_patch_walk(&ctx, s, &go, 0, grid_cb, &g), MK_ERR_INVALID);
    assert_msg(&ctx, p, "median kernel 4");
    mk_tiff_close(s);
    free(src);
}

/* ---- Otsu, median blur --------------------------------------------------------------------- */

static void test_otsu_analytic(void **state)
{
    (void)state;
    /* two values 20 and 120: every t in [20, 119] separates them equally: the middle, 69 */
    int64_t h[256] = {0};
    h[20] = 300;
    h[120] = 100;
    assert_int_equal(mk_histo_otsu(h), 69);
    /* 0 (1), 100 (1), 200 (2): t in [0, 99] gives w0 w1 (m0 - m1)^2 = 1/4 3/4 (500/3)^2 = 5208.3,
     * t in [100, 199] gives 1/2 1/2 150^2 = 5625: the middle of [100, 199] */
    memset(h, 0, sizeof h);
    h[0] = 10;
    h[100] = 10;
    h[200] = 20;
    assert_int_equal(mk_histo_otsu(h), 149);
    memset(h, 0, sizeof h);
    assert_int_equal(mk_histo_otsu(h), 0);

    /* a two-colour slide: background (230,230,230) S = 0, tissue (200,100,150)
     * S = (255*100 + 100) / 200 = 128; Otsu: the middle of [0, 127] = 63, with or without the
     * blur (it keeps the two values). A 7 x 7 median keeps straight edges (an edge pixel sees
     * 28 of 49 of its side) and removes 5 pixels at each corner of the square ((i+4)(j+4) < 25
     * for the pixel (i, j) from the corner). */
    char p[1400];
    tmp_path(p, sizeof p, "bimodal.tif");
    int W = 256, H = 256;
    uint8_t *pix = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int in = x >= 64 && x < 192 && y >= 96 && y < 224;
            uint8_t *q = pix + ((size_t)y * W + x) * 3;
            q[0] = in ? 200 : 230;
            q[1] = in ? 100 : 230;
            q[2] = in ? 150 : 230;
        }
    write_tiff(p, pix, W, H, 3, 1);
    free(pix);
    mk_tiff_slide *s = open_slide(p);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    for (int med = 0; med <= 7; med += 7) {
        mk_histo_mask_opts mo;
        mk_histo_mask_defaults(&mo);
        mo.median = med;
        mk_histo_mask *m = NULL;
        assert_int_equal(mk_histo_tissue_mask(&ctx, s, &mo, &m), MK_OK);
        assert_int_equal(m->level, 0);
        assert_int_equal(m->threshold, 63);
        int64_t n = 0;
        for (int64_t i = 0; i < m->width * m->height; i++)
            n += m->data[i];
        assert_int_equal(n, 128 * 128 - (med ? 4 * 5 : 0));
        assert_true(mk_histo_mask_fraction(m, 64 + 3, 96 + 3, 122, 122) == 1.0);
        assert_true(mk_histo_mask_fraction(m, 64, 96, 128, 128) == (med ? 1 - 20.0 / 16384 : 1));
        mk_histo_mask_free(m);
        /* a fixed threshold above the tissue's saturation: nothing */
        mo.threshold = 128;
        assert_int_equal(mk_histo_tissue_mask(&ctx, s, &mo, &m), MK_OK);
        assert_int_equal(m->threshold, 128);
        assert_true(mk_histo_mask_fraction(m, 0, 0, 256, 256) == 0.0);
        mk_histo_mask_free(m);
    }
    mk_tiff_close(s);
}

static void test_median_vs_scipy(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const int sizes[][2] = {{37, 23}, {5, 9}, {1, 6}, {64, 1}};
    const int ks[] = {1, 3, 5, 7, 11};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int w = sizes[si][0], h = sizes[si][1];
        uint8_t *in = malloc((size_t)w * h), *out = malloc((size_t)w * h);
        for (int i = 0; i < w * h; i++)
            in[i] = (uint8_t)(i % 7 == 0 ? 255 * (rnd() & 1) : rnd() & 255); /* salt and noise */
        char a[1400], b[1400], args[3000];
        tmp_path(a, sizeof a, "median_in.raw");
        tmp_path(b, sizeof b, "median_out.raw");
        write_raw(a, in, (size_t)w * h);
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            int k = ks[ki];
            assert_int_equal(mk_histo_median_u8(&ctx, in, out, w, h, k), MK_OK);
            snprintf(args, sizeof args, "median '%s' '%s' %d %d %d", a, b, w, h, k);
            run_ref(args);
            uint8_t *ref = read_raw(b, (size_t)w * h);
            for (int i = 0; i < w * h; i++)
                if (out[i] != ref[i])
                    fail_msg("median %dx%d k %d: pixel (%d, %d): %d, scipy %d", w, h, k, i % w,
                             i / w, out[i], ref[i]);
            free(ref);
        }
        free(in);
        free(out);
    }
    uint8_t one = 0, o2;
    assert_int_equal(mk_histo_median_u8(&ctx, &one, &o2, 1, 1, 4), MK_ERR_INVALID);
    assert_int_equal(mk_histo_median_u8(&ctx, &one, &o2, 1, 1, 0), MK_ERR_INVALID);
}

/* The whole mask at level 0 of a random slide (dark, grey and coloured pixels) against the
 * reference: saturation, near-black, median 5, S > 60. */
static void test_mask_vs_scipy(void **state)
{
    (void)state;
    int W = 96, H = 80;
    uint8_t *pix = malloc((size_t)W * H * 3);
    for (int i = 0; i < W * H; i++) {
        int kind = (int)(rnd() % 4);
        uint8_t *q = pix + 3 * i;
        for (int c = 0; c < 3; c++)
            q[c] = kind == 0   ? (uint8_t)(rnd() % 20)        /* near-black or not */
                   : kind == 1 ? (uint8_t)(200 + rnd() % 40)  /* greyish */
                               : (uint8_t)(60 + rnd() % 190); /* coloured */
    }
    char slide[1400], raw[1400], ref[1400], args[4000];
    tmp_path(slide, sizeof slide, "random.tif");
    tmp_path(raw, sizeof raw, "random_rgb.raw");
    tmp_path(ref, sizeof ref, "random_mask.raw");
    write_tiff(slide, pix, W, H, 3, 1);
    write_raw(raw, pix, (size_t)W * H * 3);
    mk_tiff_slide *s = open_slide(slide);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    for (int k = 0; k <= 5; k += 5) {
        mk_histo_mask_opts mo;
        mk_histo_mask_defaults(&mo);
        mo.median = k;
        mo.threshold = 60;
        mk_histo_mask *m = NULL;
        assert_int_equal(mk_histo_tissue_mask(&ctx, s, &mo, &m), MK_OK);
        snprintf(args, sizeof args, "mask '%s' '%s' %d %d %d 60", raw, ref, W, H, k);
        run_ref(args);
        uint8_t *want = read_raw(ref, (size_t)W * H);
        int64_t ones = 0;
        for (int i = 0; i < W * H; i++) {
            if (m->data[i] != want[i])
                fail_msg("mask (median %d) pixel (%d, %d): %d, reference %d", k, i % W, i / W,
                         m->data[i], want[i]);
            ones += want[i];
        }
        assert_true(ones > 0 && ones < W * H); /* the comparison is not trivial */
        free(want);
        mk_histo_mask_free(m);
    }
    mk_tiff_close(s);
    free(pix);
}

/* ---- grid ---------------------------------------------------------------------------------- */

static void test_grid_counts(void **state)
{
    (void)state;
    char p[1400];
    tmp_path(p, sizeof p, "grid.tif");
    int W, H;
    uint8_t *src = tissue_slide(&W, &H);
    write_tiff(p, src, W, H, 3, 0);
    free(src);
    mk_tiff_slide *s = open_slide(p);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_grid g;
    /* defaults (median 7): level 0, 128 px, min 0.5: the 4 x 3 patches inside the rectangle */
    mk_histo_grid_opts go;
    mk_histo_grid_defaults(&go);
    assert_int_equal(go.mask.median, 7);
    assert_int_equal(go.mask.threshold, -1);
    assert_int_equal(go.mask.level, -1);
    assert_true(go.min_tissue == 0.5 && go.size == 256 && go.stride == 0 && go.level == 0);
    go.size = 128;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    assert_int_equal(g.n, 12);
    assert_string_equal(g.slide, p);
    assert_true(g.level == 0 && g.size == 128 && g.stride == 128 && g.downsample == 1.0);
    assert_true(g.level_w == 1024 && g.level_h == 768);
    for (int64_t i = 0; i < g.n; i++) {
        assert_int_equal(g.xy[2 * i], 256 + 128 * (i % 4));
        assert_int_equal(g.xy[2 * i + 1], 128 + 128 * (i / 4));
        assert_true(g.tissue[i] > 0.99f);
        assert_int_equal(g.label[i], -1);
        assert_true(g.label_frac[i] == 0.0f);
    }
    mk_histo_grid_free(&g);
    assert_null(g.xy);
    /* stride 64, min 0.2 (no blur): 9 x 7 patches; 0.4: less the 4 corners (0.25) */
    grid_opts(&go, 0, 128, 64, 0.2);
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    assert_int_equal(g.n, 63);
    assert_true(g.stride == 64 && g.tissue[0] == 0.25f && g.xy[0] == 192 && g.xy[1] == 64);
    mk_histo_grid_free(&g);
    go.min_tissue = 0.4;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    assert_int_equal(g.n, 59);
    mk_histo_grid_free(&g);
    /* level 1 (512 x 384), 64 px: level-0 corners at multiples of 128, downsample 2 */
    grid_opts(&go, 1, 64, 0, 1.0);
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    assert_int_equal(g.n, 12);
    assert_true(g.downsample == 2.0 && g.level_w == 512 && g.level_h == 384);
    assert_true(g.xy[0] == 256 && g.xy[1] == 128 && g.xy[2] == 384);
    /* read_patch at level 1: the region at (x0/2, y0/2), / 255 */
    mk_histo_read_opts ro;
    mk_histo_read_defaults(&ro);
    float *chw = malloc(3 * 64 * 64 * sizeof *chw);
    uint8_t *reg = malloc(64 * 64 * 3);
    assert_int_equal(mk_histo_read_patch(&ctx, s, &g, 5, &ro, chw), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 1, g.xy[10] / 2, g.xy[11] / 2, 64, 64, reg),
                     MK_OK);
    for (int c = 0; c < 3; c++)
        for (int q = 0; q < 64 * 64; q++)
            assert_true(chw[c * 64 * 64 + q] == (float)(reg[3 * q + c] / 255.0));
    /* index out of range; a slide whose level differs from the grid's */
    assert_int_equal(mk_histo_read_patch(&ctx, s, &g, 12, &ro, chw), MK_ERR_INVALID);
    assert_msg(&ctx, p, "patch index 12");
    g.level_w = 500;
    assert_int_equal(mk_histo_read_patch(&ctx, s, &g, 0, &ro, chw), MK_ERR_GEOMETRY);
    assert_msg(&ctx, p, "level 1 is 512 x 384");
    free(chw);
    free(reg);
    mk_histo_grid_free(&g);
    mk_tiff_close(s);
}

/* ---- labels -------------------------------------------------------------------------------- */

/* A 128 x 128 all-tissue slide, its grid at level 0 (32 px, 16 patches, row-major). */
static void label_slide(const char *path, mk_histo_grid *g)
{
    flat_slide(path, 128, 128, 190, 110, 160);
    mk_tiff_slide *s = open_slide(path);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_grid_opts go;
    grid_opts(&go, 0, 32, 0, 0.5);
    if (mk_histo_grid_build(&ctx, s, &go, g) != MK_OK)
        fail_msg("grid: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(g->n, 16);
    mk_tiff_close(s);
}

static void test_labels_centre_rule(void **state)
{
    (void)state;
    char slide[1400], mask[1400];
    tmp_path(slide, sizeof slide, "label_slide.tif");
    tmp_path(mask, sizeof mask, "label_mask.tif");
    mk_histo_grid g;
    label_slide(slide, &g);
    /* patch side 32, centre 0.5: the central region is [8, 24) of the patch */
    uint8_t *m = malloc(128 * 128);
    memset(m, 1, 128 * 128);
#define M(x, y) m[(y)*128 + (x)]
    M(8, 16) = 2;                          /* patch 0 (0, 0): just inside (left edge) */
    M(32 + 7, 16) = 2;                     /* patch 1 (32, 0): just outside */
    M(64 + 23, 23) = 2;                    /* patch 2 (64, 0): just inside (bottom-right corner) */
    M(96 + 24, 10) = 2;                    /* patch 3 (96, 0): just outside */
    M(10, 32 + 7) = 2;                     /* patch 4 (0, 32): just outside (top) */
    for (int y = 32 + 8; y < 32 + 16; y++) /* patch 5 (32, 32): 8 x 8 of the 16 x 16 centre */
        for (int x = 32 + 8; x < 32 + 16; x++)
            M(x, y) = 2;
#undef M
    write_tiff(mask, m, 128, 128, 1, 1);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_label_opts lo;
    mk_histo_label_defaults(&lo);
    assert_true(lo.positive == 2 && lo.centre == 0.5 && lo.min_frac == 0.0);
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    const int32_t want[16] = {1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++)
        if (g.label[i] != want[i])
            fail_msg("patch %d: label %d, expected %d", i, g.label[i], want[i]);
    assert_true(g.label_frac[0] == 1.0f / 256 && g.label_frac[1] == 0.0f);
    assert_true(g.label_frac[5] == 0.25f);
    /* min_frac: positive only when the share is above it */
    lo.min_frac = 0.25;
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    assert_true(g.label[5] == 0 && g.label[0] == 0);
    lo.min_frac = 0.2;
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    assert_true(g.label[5] == 1 && g.label[0] == 0);
    /* centre 1: the whole patch; patches 1, 3, 4 become positive */
    lo.min_frac = 0;
    lo.centre = 1.0;
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    assert_true(g.label[1] == 1 && g.label[3] == 1 && g.label[4] == 1 && g.label[6] == 0);
    assert_true(g.label_frac[1] == 1.0f / 1024);
    /* positive value 1 (tissue): everything positive; 3: nothing */
    lo.centre = 0.5;
    lo.positive = 1;
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    for (int i = 0; i < 16; i++)
        assert_int_equal(g.label[i], 1);
    assert_true(g.label_frac[15] == 1.0f && g.label_frac[5] == 0.75f);
    lo.positive = 3;
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    for (int i = 0; i < 16; i++)
        assert_int_equal(g.label[i], 0);
    /* a slide-level label column */
    mk_histo_grid_label_all(&g, 7);
    for (int i = 0; i < 16; i++)
        assert_int_equal(g.label[i], 7);
    /* bad options */
    lo.positive = 2;
    lo.centre = 0;
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_ERR_INVALID);
    assert_msg(&ctx, mask, "centre");
    free(m);
    mk_histo_grid_free(&g);
}

static void test_labels_half_mask(void **state)
{
    (void)state;
    char slide[1400], mask[1400], bad[1400], none[1400];
    tmp_path(slide, sizeof slide, "half_slide.tif");
    tmp_path(mask, sizeof mask, "half_mask.tif");
    tmp_path(bad, sizeof bad, "half_mask_bad.tif");
    tmp_path(none, sizeof none, "no_such_mask.tif");
    mk_histo_grid g;
    label_slide(slide, &g);
    /* 64 x 64 mask: pixel i covers level-0 [2i, 2i + 2); the centre region [8, 24) of patch 0 is
     * mask pixels 4..11, that of patch 1 ([40, 56)) pixels 20..27 */
    uint8_t m[64 * 64];
    memset(m, 1, sizeof m);
    m[8 * 64 + 4] = 2;  /* patch 0: just inside */
    m[8 * 64 + 19] = 2; /* patch 1: just outside */
    m[8 * 64 + 28] = 2; /* patch 1: just outside on the other side */
    m[20 * 64 + 8] = 2; /* patch 4 (0, 32): mask row 20 = level-0 40..41: inside */
    write_tiff(mask, m, 64, 64, 1, 1);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_label_opts lo;
    mk_histo_label_defaults(&lo);
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mask, &lo), MK_OK);
    assert_int_equal(g.label[0], 1);
    assert_true(g.label_frac[0] == 1.0f / 64);
    assert_int_equal(g.label[1], 0);
    assert_int_equal(g.label[4], 1);
    for (int i = 5; i < 16; i++)
        assert_int_equal(g.label[i], 0);
    /* a 48 x 48 mask (3/8) matches no integer scale: an error naming the mask */
    write_tiff(bad, m, 48, 48, 1, 1);
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, bad, &lo), MK_ERR_GEOMETRY);
    assert_msg(&ctx, bad, "matches no scale");
    for (int i = 0; i < 16; i++) /* the grid keeps its labels */
        assert_int_equal(g.label[i], 1 * (i == 0 || i == 4));
    /* 64 x 48: width fits scale 2, height does not */
    write_tiff(bad, m, 64, 48, 1, 1);
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, bad, &lo), MK_ERR_GEOMETRY);
    assert_msg(&ctx, bad, "64 x 48");
    assert_int_not_equal(mk_histo_grid_label_mask(&ctx, &g, none, &lo), MK_OK);
    assert_msg(&ctx, none, NULL);
    mk_histo_grid_free(&g);
}

/* A phantom slide and its mask (phantoms/, written as `pipeline synth --kind histo` writes them):
 * the labels equal a direct count on the in-memory mask, and the tissue mask agrees with the
 * phantom's tissue. */
static void test_phantom_slide(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_phantom_params pp;
    mk_phantom_params_default(&pp, MK_PHANTOM_HISTO);
    pp.size[0] = pp.size[1] = 512;
    mk_image *rgb = NULL, *mask = NULL;
    mk_phantom_info info;
    memset(&info, 0, sizeof info);
    for (int idx = 0; idx < 16; idx++) {
        mk_image_free(rgb);
        mk_image_free(mask);
        assert_int_equal(
            mk_phantom_slide(&ctx, &pp, MK_PHANTOM_DOMAIN_SITE_A, idx, &rgb, &mask, &info), MK_OK);
        if (info.hard)
            break;
    }
    assert_true(info.hard); /* a slide with tumour */
    const int W = (int)mask->dim[0], H = (int)mask->dim[1];
    const uint8_t *M = mask->data;
    char slide[1400], mpath[1400];
    tmp_path(slide, sizeof slide, "phantom.tif");
    tmp_path(mpath, sizeof mpath, "phantom_mask.tif");
    write_tiff(slide, rgb->data, W, H, 3, 0);
    write_tiff(mpath, M, W, H, 1, 1);
    mk_tiff_slide *s = open_slide(slide);
    mk_histo_grid_opts go;
    mk_histo_grid_defaults(&go);
    go.size = 32;
    mk_histo_grid g;
    if (mk_histo_grid_build(&ctx, s, &go, &g) != MK_OK)
        fail_msg("grid: %s", mk_ctx_errmsg(&ctx));
    mk_tiff_close(s);
    mk_histo_label_opts lo;
    mk_histo_label_defaults(&lo);
    assert_int_equal(mk_histo_grid_label_mask(&ctx, &g, mpath, &lo), MK_OK);
    int64_t pos = 0, tissue_ok = 0;
    for (int64_t i = 0; i < g.n; i++) {
        int64_t x0 = g.xy[2 * i], y0 = g.xy[2 * i + 1], n2 = 0, fg = 0;
        for (int64_t y = y0 + 8; y < y0 + 24; y++)
            for (int64_t x = x0 + 8; x < x0 + 24; x++)
                n2 += M[y * W + x] == 2;
        for (int64_t y = y0; y < y0 + 32; y++)
            for (int64_t x = x0; x < x0 + 32; x++)
                fg += M[y * W + x] > 0;
        if (g.label[i] != (n2 > 0) || g.label_frac[i] != (float)(n2 / 256.0))
            fail_msg("patch %lld (%lld, %lld): label %d frac %g, the mask has %lld of 256",
                     (long long)i, (long long)x0, (long long)y0, g.label[i],
                     (double)g.label_frac[i], (long long)n2);
        pos += n2 > 0;
        tissue_ok += fg >= 512;
    }
    /* both classes, and the kept patches are the phantom's tissue */
    if (!(pos > 0 && pos < g.n && tissue_ok >= 0.9 * (double)g.n))
        fail_msg("%lld patches, %lld positive, %lld on the phantom's tissue", (long long)g.n,
                 (long long)pos, (long long)tissue_ok);
    mk_histo_grid_free(&g);
    mk_image_free(rgb);
    mk_image_free(mask);
}

/* ---- HDF5 ---------------------------------------------------------------------------------- */

static void expect_load_error(const char *path, const char *what)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_grid g;
    memset(&g, 0xab, sizeof g);
    mk_status st = mk_histo_grid_load(&ctx, path, &g);
    if (st == MK_OK)
        fail_msg("%s loaded (expected an error about %s)", path, what);
    assert_null(g.xy); /* *out zeroed */
    assert_msg(&ctx, path, what);
}

/* A grid file written field by field: coords shape [n][cols], attributes as given. */
static void write_bad_grid(const char *path, int cols, int with_size, int64_t x_last)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_h5_file *f = NULL;
    assert_int_equal(mk_h5_create(&ctx, path, &f), MK_OK);
    int64_t xy[6] = {0, 0, 32, 0, x_last, 0};
    int64_t shape[2] = {cols == 2 ? 3 : 2, cols};
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/coords", MK_DT_INT64, 2, shape, xy, NULL),
                     MK_OK);
    int64_t lv = 0, sz = 32, dim[2] = {128, 128};
    double ds = 1.0;
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/coords", "patch_level", MK_H5_SCALAR, &lv),
                     MK_OK);
    if (with_size)
        assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/coords", "patch_size", MK_H5_SCALAR, &sz),
                         MK_OK);
    assert_int_equal(mk_h5_attr_set_f64(&ctx, f, "/coords", "downsample", MK_H5_SCALAR, &ds),
                     MK_OK);
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/coords", "level_dim", 2, dim), MK_OK);
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);
}

static void test_h5_roundtrip(void **state)
{
    (void)state;
    char slide[1400], h5[1400], xyraw[1400], args[5000];
    tmp_path(slide, sizeof slide, "h5_slide.tif");
    tmp_path(h5, sizeof h5, "grid.h5");
    tmp_path(xyraw, sizeof xyraw, "grid_xy.raw");
    int W, H;
    uint8_t *src = tissue_slide(&W, &H);
    write_tiff(slide, src, W, H, 3, 0);
    free(src);
    mk_tiff_slide *s = open_slide(slide);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_grid g, back;
    mk_histo_grid_opts go;
    grid_opts(&go, 1, 32, 48, 0.2);
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    mk_tiff_close(s);
    assert_true(g.n > 20);
    for (int64_t i = 0; i < g.n; i++) {
        g.label[i] = (int32_t)(i % 3) - 1;
        g.label_frac[i] = (float)(i % 5) / 4;
    }
    assert_int_equal(mk_histo_grid_save(&ctx, h5, &g), MK_OK);
    assert_int_equal(access(h5, F_OK), 0);
    char tmpname[1500];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", h5, (long)getpid());
    assert_int_not_equal(access(tmpname, F_OK), 0); /* the temporary is gone */
    assert_int_equal(mk_histo_grid_load(&ctx, h5, &back), MK_OK);
    assert_int_equal(back.n, g.n);
    assert_string_equal(back.slide, slide);
    assert_true(back.level == 1 && back.size == 32 && back.stride == 48);
    assert_true(back.downsample == 2.0 && back.level_w == 512 && back.level_h == 384);
    assert_memory_equal(back.xy, g.xy, (size_t)g.n * 2 * sizeof *g.xy);
    assert_memory_equal(back.tissue, g.tissue, (size_t)g.n * sizeof *g.tissue);
    assert_memory_equal(back.label, g.label, (size_t)g.n * sizeof *g.label);
    assert_memory_equal(back.label_frac, g.label_frac, (size_t)g.n * sizeof *g.label_frac);
    mk_histo_grid_free(&back);
    /* h5py: dtypes, shapes, attributes */
    write_raw(xyraw, g.xy, (size_t)g.n * 2 * sizeof *g.xy);
    snprintf(args, sizeof args, "h5check '%s' '%s' %lld 1 32 48 2.0 512 384 '%s'", h5, xyraw,
             (long long)g.n, slide);
    run_ref(args);
    mk_histo_grid_free(&g);

    /* a CLAM-style file: coords and CLAM's attributes only (downsample a pair) */
    char clam[1400];
    tmp_path(clam, sizeof clam, "clam.h5");
    snprintf(args, sizeof args, "clam '%s'", clam);
    run_ref(args);
    assert_int_equal(mk_histo_grid_load(&ctx, clam, &back), MK_OK);
    assert_true(back.n == 3 && back.level == 1 && back.size == 32 && back.stride == 32);
    assert_true(back.downsample == 2.0 && back.level_w == 256 && back.level_h == 192);
    assert_true(back.xy[2] == 64 && back.xy[3] == 32 && back.label[2] == -1);
    assert_string_equal(back.slide, "");
    mk_histo_grid_free(&back);

    /* bad files: each error names the file and the field */
    char bad[1400];
    tmp_path(bad, sizeof bad, "bad_text.h5");
    write_raw(bad, "not hdf5\n", 9);
    expect_load_error(bad, "HDF5");
    tmp_path(bad, sizeof bad, "bad_cols.h5");
    write_bad_grid(bad, 3, 1, 64);
    expect_load_error(bad, "coords: expected shape [n, 2], got [2, 3]");
    tmp_path(bad, sizeof bad, "bad_attr.h5");
    write_bad_grid(bad, 2, 0, 64);
    expect_load_error(bad, "coords.patch_size");
    tmp_path(bad, sizeof bad, "bad_outside.h5");
    write_bad_grid(bad, 2, 1, 100); /* 100 + 32 > 128 */
    expect_load_error(bad, "coords: row 2");
    tmp_path(bad, sizeof bad, "bad_none.h5");
    expect_load_error(bad, "no such file");
    /* a label column of another length */
    tmp_path(bad, sizeof bad, "bad_label.h5");
    mk_h5_file *f = NULL;
    assert_int_equal(mk_h5_create(&ctx, bad, &f), MK_OK);
    int64_t xy[6] = {0, 0, 32, 0, 64, 0}, sh[2] = {3, 2}, one = 1, sz = 32, dim[2] = {128, 128};
    int32_t lab[2] = {0, 1};
    double ds = 1;
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/coords", MK_DT_INT64, 2, sh, xy, NULL), MK_OK);
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/coords", "patch_level", MK_H5_SCALAR, &one),
                     MK_OK);
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/coords", "patch_size", MK_H5_SCALAR, &sz),
                     MK_OK);
    assert_int_equal(mk_h5_attr_set_f64(&ctx, f, "/coords", "downsample", MK_H5_SCALAR, &ds),
                     MK_OK);
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/coords", "level_dim", 2, dim), MK_OK);
    int64_t lsh[1] = {2};
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/label", MK_DT_INT32, 1, lsh, lab, NULL), MK_OK);
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);
    expect_load_error(bad, "field label: expected shape [3]");
}

/* ---- patches: dihedral, normalisation ------------------------------------------------------ */

static void test_dihedral_vs_numpy(void **state)
{
    (void)state;
    const int ch = 2, n = 5;
    float in[2 * 5 * 5], out[2 * 5 * 5];
    for (int i = 0; i < ch * n * n; i++)
        in[i] = (float)i + 0.5f;
    char a[1400], b[1400], args[3000];
    tmp_path(a, sizeof a, "dihedral_in.raw");
    tmp_path(b, sizeof b, "dihedral_out.raw");
    write_raw(a, in, sizeof in);
    snprintf(args, sizeof args, "dihedral '%s' '%s' %d %d", a, b, ch, n);
    run_ref(args);
    float *ref = read_raw(b, 8 * sizeof in);
    for (int d = 0; d < 8; d++) {
        mk_histo_dihedral(in, out, ch, n, d);
        for (int i = 0; i < ch * n * n; i++)
            if (out[i] != ref[d * ch * n * n + i])
                fail_msg("dihedral %d: element %d: %g, numpy %g", d, i, out[i],
                         ref[d * ch * n * n + i]);
    }
    /* d = 1 by hand: rot90 counter-clockwise moves the top-right element to the top-left */
    mk_histo_dihedral(in, out, 1, n, 1);
    assert_true(out[0] == in[n - 1]);
    free(ref);
}

/* A pinkish random patch (H&E-like colours, away from the gamut's edges). */
static void pink_patch(uint8_t *rgb, int n)
{
    for (int i = 0; i < n * n; i++) {
        rgb[3 * i] = (uint8_t)(170 + rnd() % 50);
        rgb[3 * i + 1] = (uint8_t)(90 + rnd() % 60);
        rgb[3 * i + 2] = (uint8_t)(140 + rnd() % 50);
    }
}

static void test_reinhard_vs_numpy(void **state)
{
    (void)state;
    const int n = 48;
    uint8_t rgb[48 * 48 * 3];
    pink_patch(rgb, n);
    float chw[3 * 48 * 48];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_read_opts ro;
    mk_histo_read_defaults(&ro);
    ro.norm = MK_HISTO_NORM_REINHARD;
    const double tm[3] = {60.0, 22.0, -8.0}, ts[3] = {6.0, 5.0, 4.0};
    for (int c = 0; c < 3; c++) {
        ro.target_mean[c] = tm[c];
        ro.target_std[c] = ts[c];
    }
    assert_int_equal(mk_histo_normalize(&ctx, rgb, n, &ro, chw), MK_OK);
    char a[1400], b[1400], c3[1400], args[4000];
    tmp_path(a, sizeof a, "reinhard_in.raw");
    tmp_path(b, sizeof b, "reinhard_out.raw");
    tmp_path(c3, sizeof c3, "reinhard_c.raw");
    write_raw(a, rgb, sizeof rgb);
    snprintf(args, sizeof args, "reinhard '%s' '%s' %d %g %g %g %g %g %g", a, b, n, tm[0], tm[1],
             tm[2], ts[0], ts[1], ts[2]);
    run_ref(args);
    double *ref = read_raw(b, sizeof chw / sizeof *chw * sizeof(double));
    double worst = 0;
    for (int i = 0; i < 3 * n * n; i++) {
        double d = fabs(chw[i] - ref[i]);
        worst = d > worst ? d : worst;
    }
    if (!(worst <= 1e-4))
        fail_msg("Reinhard: largest difference to numpy %g", worst);
    free(ref);
    /* the output's L*a*b* statistics are the target's (no value is clamped for this patch) */
    write_raw(c3, chw, sizeof chw);
    snprintf(args, sizeof args, "labstats '%s' %d > '%s/labstats.txt'", c3, n, g_tmp);
    run_ref(args);
    char st[1400];
    snprintf(st, sizeof st, "%s/labstats.txt", g_tmp);
    FILE *f = fopen(st, "r");
    assert_non_null(f);
    double v[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(fscanf(f, "%lf", &v[i]), 1);
    fclose(f);
    for (int k = 0; k < 3; k++) {
        if (fabs(v[k] - tm[k]) > 1e-3 || fabs(v[3 + k] - ts[k]) > 1e-3)
            fail_msg("Lab channel %d: mean %g std %g, target %g %g", k, v[k], v[3 + k], tm[k],
                     ts[k]);
    }
    /* a bad target */
    ro.target_std[1] = 0;
    assert_int_equal(mk_histo_normalize(&ctx, rgb, n, &ro, chw), MK_ERR_INVALID);
    ro.norm = (mk_histo_norm)9;
    assert_int_equal(mk_histo_normalize(&ctx, rgb, n, &ro, chw), MK_ERR_INVALID);
}

static void test_standardize_and_none(void **state)
{
    (void)state;
    const int n = 40;
    uint8_t rgb[40 * 40 * 3];
    pink_patch(rgb, n);
    float chw[3 * 40 * 40];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_read_opts ro;
    mk_histo_read_defaults(&ro);
    assert_int_equal(ro.norm, MK_HISTO_NORM_NONE);
    assert_int_equal(ro.dihedral, 0);
    assert_true(ro.target_mean[0] == 65 && ro.target_mean[2] == -15 && ro.target_std[1] == 10);
    assert_int_equal(mk_histo_normalize(&ctx, rgb, n, &ro, chw), MK_OK);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < n * n; p++)
            assert_true(chw[c * n * n + p] == (float)(rgb[3 * p + c] / 255.0));
    ro.norm = MK_HISTO_NORM_STANDARDIZE;
    assert_int_equal(mk_histo_normalize(&ctx, rgb, n, &ro, chw), MK_OK);
    for (int c = 0; c < 3; c++) {
        double s = 0, ss = 0;
        for (int p = 0; p < n * n; p++)
            s += chw[c * n * n + p];
        double mean = s / (n * n);
        for (int p = 0; p < n * n; p++)
            ss += (chw[c * n * n + p] - mean) * (chw[c * n * n + p] - mean);
        double sd = sqrt(ss / (n * n));
        if (fabs(mean) > 1e-5 || fabs(sd - 1) > 1e-5)
            fail_msg("standardize channel %d: mean %g std %g", c, mean, sd);
    }
    /* a flat channel: std < 1e-6 counts as 1, so the output is 0 */
    memset(rgb, 77, sizeof rgb);
    assert_int_equal(mk_histo_normalize(&ctx, rgb, n, &ro, chw), MK_OK);
    for (int i = 0; i < 3 * n * n; i++)
        assert_true(fabsf(chw[i]) < 1e-6f);
    /* names */
    assert_int_equal(mk_histo_norm_parse("none"), MK_HISTO_NORM_NONE);
    assert_int_equal(mk_histo_norm_parse("standardize"), MK_HISTO_NORM_STANDARDIZE);
    assert_int_equal(mk_histo_norm_parse("reinhard"), MK_HISTO_NORM_REINHARD);
    assert_int_equal(mk_histo_norm_parse("macenko"), -1);
    assert_int_equal(mk_histo_norm_parse(NULL), -1);
    for (int i = 0; i < MK_HISTO_NORM_COUNT; i++)
        assert_int_equal(mk_histo_norm_parse(mk_histo_norm_name((mk_histo_norm)i)), i);
}

/* read_patch = normalise(read_region) then dihedral */
static void test_read_patch_pipeline(void **state)
{
    (void)state;
    char p[1400];
    tmp_path(p, sizeof p, "read_slide.tif");
    int W = 256, H = 192;
    uint8_t *pix = malloc((size_t)W * H * 3);
    for (int i = 0; i < W * H; i++) {
        pix[3 * i] = (uint8_t)(170 + rnd() % 50);
        pix[3 * i + 1] = (uint8_t)(90 + rnd() % 60);
        pix[3 * i + 2] = (uint8_t)(140 + rnd() % 50);
    }
    write_tiff(p, pix, W, H, 3, 0);
    free(pix);
    mk_tiff_slide *s = open_slide(p);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_grid g;
    mk_histo_grid_opts go;
    grid_opts(&go, 1, 24, 0, 0.0); /* keep all: 5 x 4 patches of 24 in 128 x 96 */
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    assert_int_equal(g.n, 5 * 4);
    const int n = 24;
    float got[3 * 24 * 24], norm[3 * 24 * 24], want[3 * 24 * 24];
    uint8_t reg[24 * 24 * 3];
    mk_histo_read_opts ro;
    mk_histo_read_defaults(&ro);
    ro.norm = MK_HISTO_NORM_REINHARD;
    int64_t i = 7;
    assert_int_equal(
        mk_tiff_read_region(&ctx, s, 1, g.xy[2 * i] / 2, g.xy[2 * i + 1] / 2, n, n, reg), MK_OK);
    assert_int_equal(mk_histo_normalize(&ctx, reg, n, &ro, norm), MK_OK);
    for (int d = 0; d < 8; d++) {
        ro.dihedral = d;
        assert_int_equal(mk_histo_read_patch(&ctx, s, &g, i, &ro, got), MK_OK);
        mk_histo_dihedral(norm, want, 3, n, d);
        assert_memory_equal(got, want, sizeof got);
    }
    ro.dihedral = 8;
    assert_int_equal(mk_histo_read_patch(&ctx, s, &g, i, &ro, got), MK_ERR_INVALID);
    mk_histo_grid_free(&g);
    mk_tiff_close(s);
}

/* ---- bad slides ---------------------------------------------------------------------------- */

static void test_bad_slides(void **state)
{
    (void)state;
    char p[1400], white[1400], cut[1400];
    tmp_path(p, sizeof p, "bad_slide.tif");
    tmp_path(white, sizeof white, "white_slide.tif");
    tmp_path(cut, sizeof cut, "cut_slide.tif");
    int W, H;
    uint8_t *src = tissue_slide(&W, &H);
    write_tiff(p, src, W, H, 3, 0);
    write_tiff(cut, src, W, H, 3, 0);
    free(src);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_histo_grid g;
    mk_histo_grid_opts go;
    mk_tiff_slide *s = open_slide(p);
    /* a level that does not exist */
    mk_histo_grid_defaults(&go);
    go.level = 9;
    go.size = 32;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_ERR_INVALID);
    assert_msg(&ctx, p, "level 9 out of range");
    assert_null(g.xy);
    /* a patch larger than the level */
    go.level = 0;
    go.size = 10000;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_ERR_INVALID);
    assert_msg(&ctx, p, "patch size 10000 is larger than level 0 (1024 x 768 px)");
    go.size = 300;
    go.level = 2; /* 256 x 192 */
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_ERR_INVALID);
    assert_msg(&ctx, p, "larger than level 2");
    /* a min_tissue nothing reaches */
    go.level = 0;
    go.size = 700; /* one patch, (0, 0): a third of it is tissue */
    go.min_tissue = 0.9;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_ERR_INVALID);
    assert_msg(&ctx, p, "no tissue found at level 0 (threshold ");
    mk_tiff_close(s);
    /* a white slide: no tissue */
    flat_slide(white, 512, 512, 255, 255, 255);
    s = open_slide(white);
    mk_histo_grid_defaults(&go);
    go.size = 64;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_ERR_INVALID);
    assert_msg(&ctx, white, "no tissue found at level 0 (threshold 0, min_tissue 0.5)");
    assert_null(g.xy);
    mk_tiff_close(s);

    /* truncated to half its size: the error (at open, or at the first tile read) names it */
    FILE *f = fopen(cut, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    assert_int_equal(truncate(cut, len / 2), 0);
    s = NULL;
    mk_status st = mk_tiff_open(&ctx, cut, &s);
    if (st == MK_OK) {
        mk_histo_grid_defaults(&go);
        go.size = 128;
        go.min_tissue = 0;
        st = mk_histo_grid_build(&ctx, s, &go, &g);
        mk_tiff_close(s);
    }
    assert_int_not_equal(st, MK_OK);
    assert_msg(&ctx, cut, NULL);

    /* a corrupt level-0 tile under a grid built when the file was sound: read_patch fails with
     * the tile error naming the slide */
    s = open_slide(p);
    mk_histo_grid_defaults(&go);
    go.size = 128;
    go.min_tissue = 0;
    assert_int_equal(mk_histo_grid_build(&ctx, s, &go, &g), MK_OK);
    mk_tiff_close(s);
    f = fopen(p, "r+b");
    assert_non_null(f);
    uint8_t junk[4096];
    for (size_t k = 0; k < sizeof junk; k++)
        junk[k] = (uint8_t)(rnd() & 255);
    fseek(f, 64, SEEK_SET); /* level 0's first tiles follow the 8-byte header */
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
    s = open_slide(p);
    mk_histo_read_opts ro;
    mk_histo_read_defaults(&ro);
    float *chw = malloc(3 * 128 * 128 * sizeof *chw);
    st = MK_OK;
    for (int64_t i = 0; i < g.n && st == MK_OK; i++)
        st = mk_histo_read_patch(&ctx, s, &g, i, &ro, chw);
    assert_int_equal(st, MK_ERR_FORMAT);
    assert_msg(&ctx, p, "level 0 tile");
    /* the tissue mask over the same corrupt level fails with the tile error, and frees what it
     * allocated for the median blur (a leak the fuzzer found; the sanitizer build checks it) */
    mk_histo_mask_opts mo;
    mk_histo_mask_defaults(&mo);
    mo.level = 0;
    mo.median = 7;
    mk_histo_mask *m = NULL;
    assert_int_equal(mk_histo_tissue_mask(&ctx, s, &mo, &m), MK_ERR_FORMAT);
    assert_msg(&ctx, p, "level 0 tile");
    assert_null(m);
    free(chw);
    mk_histo_grid_free(&g);
    mk_tiff_close(s);
}

int main(void)
{
    if (mk_test_tmp_make(g_tmp, sizeof g_tmp, "histo") != 0)
        return 1;
    if (system("/usr/bin/python3 -c 'import numpy, scipy, h5py' > /dev/null 2>&1") != 0) {
        fprintf(stderr, "python3 with numpy, scipy and h5py is missing (declared in "
                        "scripts/deps.list; make deps)\n");
        mk_test_tmp_remove(g_tmp);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tissue_mask_and_walk), cmocka_unit_test(test_otsu_analytic),
        cmocka_unit_test(test_median_vs_scipy),      cmocka_unit_test(test_mask_vs_scipy),
        cmocka_unit_test(test_grid_counts),          cmocka_unit_test(test_labels_centre_rule),
        cmocka_unit_test(test_labels_half_mask),     cmocka_unit_test(test_phantom_slide),
        cmocka_unit_test(test_h5_roundtrip),         cmocka_unit_test(test_dihedral_vs_numpy),
        cmocka_unit_test(test_reinhard_vs_numpy),    cmocka_unit_test(test_standardize_and_none),
        cmocka_unit_test(test_read_patch_pipeline),  cmocka_unit_test(test_bad_slides),
    };
    const char *flt = getenv("MK_TEST_FILTER");
    if (flt)
        cmocka_set_test_filter(flt);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mk_test_tmp_remove(g_tmp);
    return rc;
}
