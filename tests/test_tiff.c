/* Whole-slide TIFF: the real IHC slides (tiled LZW equals the PNG; JPEG pyramid), self-written
 * pyramids (compressions x gray/RGB x IFD chain/SubIFD, striped), the `tiles` verb on a slide with
 * a known tissue rectangle, and bad input (tissue mask and patch grid: tests/test_histo.c).
 * References: libpng's decoding of ihc.png, box means computed here independently, and Pillow (when
 * present) reading our files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "io/mk_tiff.h"
#include "cli/mk_verbs.h"

#if defined(__GNUC__) && !defined(__clang__) /* clang has no such warning */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static char g_real[1024], g_tmp[1024];

static void fresh_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_tmp, name);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    assert_int_equal(system(cmd), 0);
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        se += d * d;
    }
    if (se == 0)
        return 99.0;
    return 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

/* Reference 2x2 box mean (rounded half up) of an RGB or gray buffer; odd edges average the
 * pixels that exist. Written independently of the library's reduce_rows. */
static uint8_t *box_half(const uint8_t *src, int w, int h, int spp, int *w2, int *h2)
{
    *w2 = (w + 1) / 2;
    *h2 = (h + 1) / 2;
    uint8_t *d = malloc((size_t)*w2 * *h2 * spp);
    for (int y = 0; y < *h2; y++)
        for (int x = 0; x < *w2; x++)
            for (int c = 0; c < spp; c++) {
                int sum = 0, n = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int sx = 2 * x + dx, sy = 2 * y + dy;
                        if (sx < w && sy < h) {
                            sum += src[((size_t)sy * w + sx) * spp + c];
                            n++;
                        }
                    }
                d[((size_t)y * *w2 + x) * spp + c] = (uint8_t)((sum + n / 2) / n);
            }
    return d;
}

static uint8_t *gray_to_rgb(const uint8_t *g, size_t n)
{
    uint8_t *r = malloc(n * 3);
    for (size_t i = 0; i < n; i++)
        r[3 * i] = r[3 * i + 1] = r[3 * i + 2] = g[i];
    return r;
}

static uint8_t *read_level(mk_tiff_slide *s, int level, int *w, int *h)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_level lv;
    assert_int_equal(mk_tiff_level_info(&ctx, s, level, &lv), MK_OK);
    *w = (int)lv.width;
    *h = (int)lv.height;
    uint8_t *buf = malloc((size_t)*w * *h * 3);
    if (mk_tiff_read_region(&ctx, s, level, 0, 0, *w, *h, buf) != MK_OK)
        fail_msg("read level %d: %s", level, mk_ctx_errmsg(&ctx));
    return buf;
}

static int have_pillow(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = system("/usr/bin/python3 -c 'import PIL' >/dev/null 2>&1") == 0;
    return cached;
}

/* ---- real slides ------------------------------------------------------------------------------
 */

static void test_ihc_lzw_equals_png(void **state)
{
    (void)state;
    char tif[1200], png[1200];
    snprintf(tif, sizeof tif, "%s/histo/ihc_tiled_lzw.tif", g_real);
    snprintf(png, sizeof png, "%s/histo/ihc.png", g_real);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    uint8_t *ref = NULL;
    int pw, ph;
    assert_int_equal(mk_io_png_read(&ctx, png, &ref, &pw, &ph), MK_OK);
    assert_int_equal(pw, 512);
    assert_int_equal(ph, 512);
    assert_true(mk_tiff_is_tiff(tif));
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&ctx, tif, &s), MK_OK);
    assert_int_equal(mk_tiff_level_count(s), 1);
    mk_tiff_level lv;
    assert_int_equal(mk_tiff_level_info(&ctx, s, 0, &lv), MK_OK);
    assert_int_equal(lv.width, 512);
    assert_int_equal(lv.tile_w, 128);
    assert_int_equal(lv.tile_h, 128);
    assert_int_equal(lv.compression, COMPRESSION_LZW);
    int w, h;
    uint8_t *all = read_level(s, 0, &w, &h);
    assert_memory_equal(all, ref, (size_t)512 * 512 * 3);
    /* A region at an odd offset spanning 4 tiles, and one hanging over the corner (white pad). */
    uint8_t reg[150 * 200 * 3];
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 101, 77, 200, 150, reg), MK_OK);
    for (int y = 0; y < 150; y++)
        assert_memory_equal(reg + (size_t)y * 200 * 3, ref + ((size_t)(77 + y) * 512 + 101) * 3,
                            200 * 3);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 462, 500, 100, 20, reg), MK_OK);
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 100; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t want = (462 + x < 512 && 500 + y < 512)
                                   ? ref[((size_t)(500 + y) * 512 + 462 + x) * 3 + c]
                                   : 255;
                assert_int_equal(reg[((size_t)y * 100 + x) * 3 + c], want);
            }
    free(all);
    free(ref);
    mk_tiff_close(s);
}

static void test_ihc_jpeg_pyramid(void **state)
{
    (void)state;
    char tif[1200], png[1200];
    snprintf(tif, sizeof tif, "%s/histo/ihc_pyramid_jpeg.tif", g_real);
    snprintf(png, sizeof png, "%s/histo/ihc.png", g_real);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    uint8_t *ref = NULL;
    int pw, ph;
    assert_int_equal(mk_io_png_read(&ctx, png, &ref, &pw, &ph), MK_OK);
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&ctx, tif, &s), MK_OK);
    assert_int_equal(mk_tiff_level_count(s), 3);
    const int sizes[3] = {512, 256, 128};
    const double ds[3] = {1, 2, 4};
    uint8_t *cur = ref;
    int cw = 512, chh = 512;
    for (int l = 0; l < 3; l++) {
        mk_tiff_level lv;
        assert_int_equal(mk_tiff_level_info(&ctx, s, l, &lv), MK_OK);
        assert_int_equal(lv.width, sizes[l]);
        assert_int_equal(lv.height, sizes[l]);
        assert_true(lv.downsample == ds[l]);
        assert_int_equal(lv.tile_w, 128);
        assert_int_equal(lv.compression, COMPRESSION_JPEG);
        int w, h;
        uint8_t *px = read_level(s, l, &w, &h);
        double p = psnr(px, cur, (size_t)w * h * 3);
        /* README: level 0 is 38.9 dB from the PNG (JPEG q90); reduced levels are box means. */
        if (p < (l == 0 ? 38.0 : 30.0))
            fail_msg("level %d PSNR %.2f dB", l, p);
        free(px);
        int nw, nh;
        uint8_t *next = box_half(cur, cw, chh, 3, &nw, &nh);
        if (cur != ref)
            free(cur);
        cur = next;
        cw = nw;
        chh = nh;
    }
    free(cur);
    free(ref);
    /* Info text names every level. */
    char out[1300];
    snprintf(out, sizeof out, "%s/info.txt", g_tmp);
    FILE *f = fopen(out, "w+");
    assert_int_equal(mk_io_tiff_info(&ctx, tif, f), MK_OK);
    rewind(f);
    char text[2048] = {0};
    size_t nr = fread(text, 1, sizeof text - 1, f);
    (void)nr;
    fclose(f);
    assert_non_null(strstr(text, "3 levels"));
    assert_non_null(strstr(text, "128 x 128  downsample 4"));
    assert_non_null(strstr(text, "jpeg"));
    mk_tiff_close(s);
}

/* ---- writer round trips -----------------------------------------------------------------------
 */

static uint8_t *synth(int w, int h, int spp, int seed)
{
    uint8_t *p = malloc((size_t)w * h * spp);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < spp; c++) {
                double v = 128 + 90 * sin(0.05 * x + 0.9 * c + seed) * cos(0.037 * y - 0.4 * c) +
                           0.1 * ((x * 7 + y * 3) % 13);
                p[((size_t)y * w + x) * spp + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static void check_written(const char *path, const uint8_t *src, int w, int h, int spp, int lossless,
                          int expect_levels, int subifd)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_slide *s = NULL;
    if (mk_tiff_open(&ctx, path, &s) != MK_OK)
        fail_msg("open %s: %s", path, mk_ctx_errmsg(&ctx));
    assert_int_equal(mk_tiff_level_count(s), expect_levels);
    uint8_t *ref = spp == 3 ? NULL : NULL;
    const uint8_t *cur = src;
    uint8_t *own = NULL;
    int cw = w, ch = h;
    for (int l = 0; l < expect_levels; l++) {
        mk_tiff_level lv;
        assert_int_equal(mk_tiff_level_info(&ctx, s, l, &lv), MK_OK);
        assert_int_equal(lv.width, cw);
        assert_int_equal(lv.height, ch);
        assert_int_equal(lv.subifd, l > 0 && subifd);
        int rw, rh;
        uint8_t *px = read_level(s, l, &rw, &rh);
        uint8_t *want = spp == 1 ? gray_to_rgb(cur, (size_t)cw * ch) : NULL;
        const uint8_t *cmp = want ? want : cur;
        if (lossless) {
            if (memcmp(px, cmp, (size_t)cw * ch * 3) != 0)
                fail_msg("%s level %d differs", path, l);
        } else {
            double p = psnr(px, cmp, (size_t)cw * ch * 3);
            if (p < 30)
                fail_msg("%s level %d PSNR %.2f", path, l, p);
        }
        free(want);
        free(px);
        int nw, nh;
        uint8_t *next = box_half(cur, cw, ch, spp, &nw, &nh);
        free(own);
        own = next;
        cur = next;
        cw = nw;
        ch = nh;
    }
    free(own);
    free(ref);
    mk_tiff_close(s);
}

static void test_writer_roundtrip(void **state)
{
    (void)state;
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "writer");
    const int W = 300, H = 200;
    for (int spp = 1; spp <= 3; spp += 2) {
        uint8_t *src = synth(W, H, spp, spp);
        for (int comp = 0; comp < MK_TIFF_COMP_COUNT; comp++)
            for (int sub = 0; sub <= 1; sub++) {
                mk_tiff_write_opts o = {0};
                o.tile = 64;
                o.comp = (mk_tiff_compression)comp;
                o.subifd = sub;
                snprintf(p, sizeof p, "%s/s%d_c%d_sub%d.tif", dir, spp, comp, sub);
                mk_ctx ctx;
                mk_ctx_init(&ctx);
                if (mk_tiff_write(&ctx, p, src, W, H, spp, &o) != MK_OK)
                    fail_msg("write %s: %s", p, mk_ctx_errmsg(&ctx));
                /* 300x200 -> 150x100 -> 75x50 -> 38x25 (largest side <= 64). */
                check_written(p, src, W, H, spp, comp != MK_TIFF_COMP_JPEG, 4, sub);
            }
        /* Striped, one level. */
        mk_tiff_write_opts o = {0};
        o.striped = 1;
        o.rows_per_strip = 16;
        o.comp = spp == 3 ? MK_TIFF_COMP_LZW : MK_TIFF_COMP_DEFLATE;
        snprintf(p, sizeof p, "%s/striped%d.tif", dir, spp);
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        assert_int_equal(mk_tiff_write(&ctx, p, src, W, H, spp, &o), MK_OK);
        check_written(p, src, W, H, spp, 1, 1, 0);
        mk_tiff_slide *s = NULL;
        assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
        mk_tiff_level lv;
        assert_int_equal(mk_tiff_level_info(&ctx, s, 0, &lv), MK_OK);
        assert_int_equal(lv.tile_w, 0);
        assert_int_equal(lv.rows_per_strip, 16);
        mk_tiff_close(s);
        free(src);
    }
    /* mk_image adapters. */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    snprintf(p, sizeof p, "%s/s3_c1_sub0.tif", dir);
    assert_int_equal(mk_io_tiff_read_image(&ctx, p, 1, &img), MK_OK);
    assert_int_equal(img->dtype, MK_DT_RGB24);
    assert_int_equal(img->dim[0], 150);
    assert_int_equal(img->dim[1], 100);
    snprintf(p, sizeof p, "%s/from_image.tif", dir);
    assert_int_equal(mk_io_tiff_write_image(&ctx, p, img, NULL), MK_OK);
    mk_image *back = NULL;
    assert_int_equal(mk_io_tiff_read_image(&ctx, p, 0, &back), MK_OK);
    assert_memory_equal(back->data, img->data, (size_t)150 * 100 * 3);
    mk_image_free(back);
    back = NULL;
    assert_int_equal(mk_io_tiff_read_image(&ctx, p, 1, &back), MK_ERR_INVALID);
    assert_null(back);
    mk_image_free(img);
}

/* Pillow reads our pyramid (IFD chain) independently: page count, sizes, SubfileType, pixels. */
static void test_pillow_reads_writer_output(void **state)
{
    (void)state;
    if (!have_pillow()) {
        fail_msg("python3 module PIL is missing: Debian package python3-pil, declared in "
                 "scripts/deps.list; install it with 'make deps' (as root)");
        return;
    }
    char dir[1200], p[1400], raw[1400], cmd[4400];
    fresh_dir(dir, sizeof dir, "pillow");
    const int W = 300, H = 200;
    uint8_t *src = synth(W, H, 3, 7);
    mk_tiff_write_opts o = {0};
    o.tile = 64;
    o.comp = MK_TIFF_COMP_DEFLATE;
    snprintf(p, sizeof p, "%s/pyr.tif", dir);
    snprintf(raw, sizeof raw, "%s/pyr.raw", dir);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_tiff_write(&ctx, p, src, W, H, 3, &o), MK_OK);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\n"
             "from PIL import Image\n"
             "im = Image.open('%s')\n"
             "assert im.n_frames == 4, im.n_frames\n"
             "sizes = []\n"
             "for i in range(4):\n"
             "    im.seek(i); sizes.append(im.size)\n"
             "    assert im.tag_v2.get(254, 0) == (1 if i else 0)\n"
             "assert sizes == [(300, 200), (150, 100), (75, 50), (38, 25)], sizes\n"
             "im.seek(0); open('%s', 'wb').write(im.convert('RGB').tobytes())\n\"",
             p, raw);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(raw, "rb");
    assert_non_null(f);
    uint8_t *got = malloc((size_t)W * H * 3);
    assert_int_equal(fread(got, 1, (size_t)W * H * 3, f), (size_t)W * H * 3);
    fclose(f);
    assert_memory_equal(got, src, (size_t)W * H * 3);
    /* And a PNG from the PNG writer. */
    snprintf(p, sizeof p, "%s/x.png", dir);
    assert_int_equal(mk_io_png_write(&ctx, p, src, W, H, 3), MK_OK);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"\nfrom PIL import Image\nim = Image.open('%s')\nassert im.size "
             "== (300, 200) and "
             "im.mode == 'RGB'\nopen('%s', 'wb').write(im.tobytes())\n\"",
             p, raw);
    assert_int_equal(system(cmd), 0);
    f = fopen(raw, "rb");
    assert_int_equal(fread(got, 1, (size_t)W * H * 3, f), (size_t)W * H * 3);
    fclose(f);
    assert_memory_equal(got, src, (size_t)W * H * 3);
    free(got);
    free(src);
}

/* ---- the slide of the tiles verb (tissue mask and grid: tests/test_histo.c)
 * ----------------------
 */

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

/* ---- the tiles verb ---------------------------------------------------------------------------
 */

static int count_files(const char *dir, const char *suffix)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls -A '%s' 2>/dev/null | grep -c '%s$' > '%s/count.txt'", dir,
             suffix, g_tmp);
    int rc = system(cmd);
    (void)rc;
    snprintf(cmd, sizeof cmd, "%s/count.txt", g_tmp);
    FILE *f = fopen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

static mk_status run_tiles(mk_ctx *ctx, char *args)
{
    char *argv[32];
    int argc = 0;
    for (char *t = strtok(args, " "); t && argc < 32; t = strtok(NULL, " "))
        argv[argc++] = t;
    mk_cli cli = {ctx, NULL, "pipeline"};
    FILE *saved = stdout;
    (void)saved;
    return mk_verb_tiles(&cli, argc, argv);
}

static void test_tiles_verb(void **state)
{
    (void)state;
    char dir[1200], slide[1400], out[1400], args[4000];
    fresh_dir(dir, sizeof dir, "verb");
    int W, H;
    uint8_t *src = tissue_slide(&W, &H);
    mk_tiff_write_opts o = {0};
    o.tile = 128;
    o.comp = MK_TIFF_COMP_DEFLATE;
    o.subifd = 1;
    snprintf(slide, sizeof slide, "%s/slide.tif", dir);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_tiff_write(&ctx, slide, src, W, H, 3, &o), MK_OK);
    snprintf(out, sizeof out, "%s/patches", dir);
    snprintf(args, sizeof args, "tiles %s --level 1 --size 64 --min-tissue 0.9 --out %s", slide,
             out);
    if (run_tiles(&ctx, args) != MK_OK)
        fail_msg("tiles: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(count_files(out, ".png"), 12);
    assert_int_equal(count_files(out, "tmp.*"), 0);
    char csv[1500];
    snprintf(csv, sizeof csv, "%s/tiles.csv", out);
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    char line[256];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "file,level,x,y,width,height,tissue\n");
    int rows = 0;
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&ctx, slide, &s), MK_OK);
    while (fgets(line, sizeof line, f)) {
        char name[128];
        int lvl, x, y, w, h;
        double t;
        assert_int_equal(
            sscanf(line, "%127[^,],%d,%d,%d,%d,%d,%lf", name, &lvl, &x, &y, &w, &h, &t), 7);
        assert_int_equal(lvl, 1);
        assert_true(w == 64 && h == 64 && t == 1.0);
        assert_true(x >= 256 && x + 128 <= 768 && y >= 128 && y + 128 <= 512 && x % 128 == 0 &&
                    y % 128 == 0);
        /* The PNG holds the level-1 region at (x/2, y/2). */
        char png[1700];
        snprintf(png, sizeof png, "%s/%s", out, name);
        uint8_t *px = NULL;
        int pw, ph;
        assert_int_equal(mk_io_png_read(&ctx, png, &px, &pw, &ph), MK_OK);
        assert_true(pw == 64 && ph == 64);
        uint8_t reg[64 * 64 * 3];
        assert_int_equal(mk_tiff_read_region(&ctx, s, 1, x / 2, y / 2, 64, 64, reg), MK_OK);
        assert_memory_equal(px, reg, sizeof reg);
        free(px);
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, 12);
    mk_tiff_close(s);

    /* Errors: level out of range, bad option, missing slide; no output left behind. */
    char out2[1400];
    snprintf(out2, sizeof out2, "%s/bad", dir);
    snprintf(args, sizeof args, "tiles %s --level 9 --size 64 --out %s", slide, out2);
    assert_int_equal(run_tiles(&ctx, args), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "level 9 out of range"));
    assert_int_equal(count_files(out2, ".png"), 0);
    assert_int_equal(count_files(out2, ".csv"), 0);
    snprintf(args, sizeof args, "tiles %s --size 64 --stride -3 --out %s", slide, out2);
    assert_int_equal(run_tiles(&ctx, args), MK_ERR_USAGE);
    /* a patch larger than the level: no patch fits, an error (it was exit 0 with 0 patches) */
    snprintf(args, sizeof args, "tiles %s --level 2 --size 4096 --out %s", slide, out2);
    assert_int_equal(run_tiles(&ctx, args), MK_ERR_USAGE);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "--size 4096: larger than level 2"));
    assert_int_equal(count_files(out2, ".csv"), 0);
    snprintf(args, sizeof args, "tiles %s --size 64 --min-tissue 1.5 --out %s", slide, out2);
    assert_int_equal(run_tiles(&ctx, args), MK_ERR_USAGE);
    snprintf(args, sizeof args, "tiles %s --size 64", slide);
    assert_int_equal(run_tiles(&ctx, args), MK_ERR_USAGE);
    snprintf(args, sizeof args, "tiles %s/none.tif --size 64 --out %s", dir, out2);
    assert_int_equal(run_tiles(&ctx, args), MK_ERR_IO);
    free(src);
}

/* ---- bad input --------------------------------------------------------------------------------
 */

/* A tiled RGB file written with libtiff directly, leaving tile `skip` unwritten (offset and byte
 * count 0 in the directory). */
static void write_with_missing_tile(const char *path, int skip)
{
    TIFF *t = TIFFOpen(path, "w");
    assert_non_null(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 128);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 128);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_TILEWIDTH, 64);
    TIFFSetField(t, TIFFTAG_TILELENGTH, 64);
    uint8_t tile[64 * 64 * 3];
    for (int i = 0; i < 4; i++) {
        if (i == skip)
            continue;
        memset(tile, 40 * (i + 1), sizeof tile);
        assert_true(TIFFWriteEncodedTile(t, (uint32_t)i, tile, sizeof tile) > 0);
    }
    TIFFClose(t);
}

static void test_bad_input(void **state)
{
    (void)state;
    char dir[1200], p[1400], q[1400];
    fresh_dir(dir, sizeof dir, "bad");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_slide *s = NULL;
    uint8_t buf[128 * 128 * 3];

    /* Missing tile: tiles 0, 1, 3 read; tile 2 (column 0, row 1) is named in the error. */
    snprintf(p, sizeof p, "%s/missing.tif", dir);
    write_with_missing_tile(p, 2);
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 128, 64, buf), MK_OK);
    assert_int_equal(buf[0], 40);
    assert_int_equal(buf[64 * 3], 80);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 64, 64, 64, 64, buf), MK_OK);
    assert_int_equal(buf[0], 160);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 128, 128, buf), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "tile 2 (column 0, row 1)"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "missing"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "missing.tif"));
    /* Level out of range. */
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 0, 5, buf), MK_ERR_INVALID);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 1, 0, 0, 8, 8, buf), MK_ERR_INVALID);
    assert_non_null(
        strstr(mk_ctx_errmsg(&ctx), "level 1 out of range (the slide has levels 0..0)"));
    mk_tiff_level lv;
    assert_int_equal(mk_tiff_level_info(&ctx, s, -1, &lv), MK_ERR_INVALID);
    mk_tiff_close(s);

    /* Truncated file: the directory (written after the data) is gone. */
    const int W = 256, H = 256;
    uint8_t *src = synth(W, H, 3, 3);
    mk_tiff_write_opts o = {0};
    o.tile = 64;
    o.comp = MK_TIFF_COMP_DEFLATE;
    snprintf(p, sizeof p, "%s/full.tif", dir);
    assert_int_equal(mk_tiff_write(&ctx, p, src, W, H, 3, &o), MK_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    snprintf(q, sizeof q, "%s/trunc.tif", dir);
    FILE *fi = fopen(p, "rb"), *fo = fopen(q, "wb");
    uint8_t *all = malloc((size_t)st.st_size);
    assert_int_equal(fread(all, 1, (size_t)st.st_size, fi), (size_t)st.st_size);
    fwrite(all, 1, (size_t)st.st_size * 6 / 10, fo);
    fclose(fi);
    fclose(fo);
    assert_int_equal(mk_tiff_open(&ctx, q, &s), MK_ERR_FORMAT);
    assert_null(s);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "trunc.tif"));

    /* Corrupt tile data (deflate stream overwritten): a decode error naming the tile. */
    TIFF *t = TIFFOpen(p, "r");
    uint64_t off = TIFFGetStrileOffset(t, 5);
    TIFFClose(t);
    memset(all + off, 0xff, 16);
    snprintf(q, sizeof q, "%s/corrupt.tif", dir);
    fo = fopen(q, "wb");
    fwrite(all, 1, (size_t)st.st_size, fo);
    fclose(fo);
    assert_int_equal(mk_tiff_open(&ctx, q, &s), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 64, 64, buf), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 64, 64, 64, 64, buf), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "tile 5"));
    mk_tiff_close(s);
    free(all);

    /* Not a TIFF; no file; 16-bit samples. */
    snprintf(q, sizeof q, "%s/text.tif", dir);
    fo = fopen(q, "w");
    fputs("plain text, not a TIFF\n", fo);
    fclose(fo);
    assert_int_equal(mk_tiff_open(&ctx, q, &s), MK_ERR_FORMAT);
    snprintf(q, sizeof q, "%s/none.tif", dir);
    assert_int_equal(mk_tiff_open(&ctx, q, &s), MK_ERR_IO);
    snprintf(q, sizeof q, "%s/u16.tif", dir);
    t = TIFFOpen(q, "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 8);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 16);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 8);
    uint16_t px[64] = {0};
    TIFFWriteEncodedStrip(t, 0, px, sizeof px);
    TIFFClose(t);
    assert_int_equal(mk_tiff_open(&ctx, q, &s), MK_ERR_UNSUPPORTED);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "BitsPerSample"));

    /* Writer argument checks; no output file on failure. */
    o.tile = 100;
    snprintf(q, sizeof q, "%s/w.tif", dir);
    assert_int_equal(mk_tiff_write(&ctx, q, src, W, H, 3, &o), MK_ERR_INVALID);
    o.tile = 64;
    assert_int_equal(mk_tiff_write(&ctx, q, src, W, H, 2, &o), MK_ERR_INVALID);
    assert_int_equal(mk_tiff_write(&ctx, q, src, 0, H, 3, &o), MK_ERR_INVALID);
    assert_int_not_equal(stat(q, &st), 0);
    snprintf(q, sizeof q, "%s/no/such/dir/w.tif", dir);
    assert_int_equal(mk_tiff_write(&ctx, q, src, W, H, 3, &o), MK_ERR_IO);
    assert_int_equal(mk_tiff_compression_parse("zip"), MK_TIFF_COMP_DEFLATE);
    assert_int_equal(mk_tiff_compression_parse("jpeg"), MK_TIFF_COMP_JPEG);
    assert_int_equal(mk_tiff_compression_parse("webp"), -1);
    free(src);
}

/* A 64x64 gray TIFF with four 32x32 uncompressed tiles, laid out by hand (IFD first, then the
 * tile data), so a test can zero a tile's offset/byte count or cut the file inside tile data. */
static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *b, uint32_t v)
{
    put16(b, (uint16_t)v);
    put16(b + 2, (uint16_t)(v >> 16));
}
static uint8_t hand_px(int tile, int x, int y)
{
    return (uint8_t)(tile * 50 + x + 2 * y);
}

static size_t hand_tiff(uint8_t *b, int zero_tile)
{
    const uint16_t tags[10] = {256, 257, 258, 259, 262, 277, 322, 323, 324, 325};
    const uint32_t vals[8] = {64, 64, 8, 1, 1, 1, 32, 32};
    const uint32_t offs_at = 8 + 2 + 10 * 12 + 4, counts_at = offs_at + 16,
                   data_at = counts_at + 16;
    memcpy(b, "II*\0", 4);
    put32(b + 4, 8);
    put16(b + 8, 10);
    for (int i = 0; i < 10; i++) {
        uint8_t *e = b + 10 + 12 * i;
        put16(e, tags[i]);
        put16(e + 2, i < 8 ? 3 : 4);
        put32(e + 4, i < 8 ? 1 : 4);
        put32(e + 8, i < 8 ? vals[i] : i == 8 ? offs_at : counts_at);
    }
    put32(b + 10 + 120, 0); /* no next IFD */
    for (int t = 0; t < 4; t++) {
        put32(b + offs_at + 4 * t, t == zero_tile ? 0 : data_at + 1024u * (uint32_t)t);
        put32(b + counts_at + 4 * t, t == zero_tile ? 0 : 1024);
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                b[data_at + 1024 * t + 32 * y + x] = hand_px(t, x, y);
    }
    return data_at + 4 * 1024;
}

static void test_hand_made_tiff(void **state)
{
    (void)state;
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "hand");
    static uint8_t b[8192];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_slide *s = NULL;
    uint8_t px[64 * 64 * 3];
    /* Intact: every pixel as laid out (gray replicated to RGB). */
    size_t n = hand_tiff(b, -1);
    snprintf(p, sizeof p, "%s/ok.tif", dir);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 64, 64, px), MK_OK);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            uint8_t want = hand_px((y / 32) * 2 + x / 32, x % 32, y % 32);
            assert_int_equal(px[(y * 64 + x) * 3], want);
            assert_int_equal(px[(y * 64 + x) * 3 + 2], want);
        }
    mk_tiff_close(s);
    /* Tile 1 with offset and byte count zeroed. */
    n = hand_tiff(b, 1);
    snprintf(p, sizeof p, "%s/zeroed.tif", dir);
    f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 32, 64, 32, px), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 64, 64, px), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "tile 1 (column 1, row 0): missing"));
    mk_tiff_close(s);
    /* Cut inside tile 3's data: tiles 0..2 read, tile 3 is an error naming it. */
    n = hand_tiff(b, -1);
    snprintf(p, sizeof p, "%s/cut.tif", dir);
    f = fopen(p, "wb");
    fwrite(b, 1, n - 700, f);
    fclose(f);
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 64, 32, px), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 32, 32, 32, px), MK_OK);
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 32, 32, 32, 32, px), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "tile 3"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "cut.tif"));
    mk_tiff_close(s);
}

/* A strip whose declared size overflows 64 bits when multiplied out (4,143,906,820 x 1,073,741,828
 * pixels x 4 bytes: found by fuzz_tiff, signed overflow under UBSan): refused as too large, no
 * undefined behaviour (the sanitizer build halts on it). The input is the fuzz seed. */
static void test_block_size_overflow(void **state)
{
    (void)state;
    char p[1400];
    const char *src = getenv("MK_SOURCE_DIR");
    snprintf(p, sizeof p, "%s/fuzz/corpus/tiff/regress_tile_size_overflow.tif", src ? src : ".");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_ERR_UNSUPPORTED);
    assert_null(s);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "strip of 4143906820 x 1073741828 pixels is too "
                                                "large to decode (limit 256 MiB)"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "regress_tile_size_overflow.tif"));
}

/* A JPEG tile with damaged entropy-coded data: libjpeg only warns ("Corrupt JPEG data", "Premature
 * end of JPEG file") and libtiff hands back garbage pixels; the read must fail naming the tile, and
 * the undamaged tiles still read (issue 23 D4). */
static void test_corrupt_jpeg_tile(void **state)
{
    (void)state;
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "corrupt_jpeg");
    const int W = 256, H = 128;
    uint8_t *src = synth(W, H, 3, 5);
    mk_tiff_write_opts o = {0};
    o.tile = 64;
    o.comp = MK_TIFF_COMP_JPEG;
    snprintf(p, sizeof p, "%s/c.tif", dir);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_tiff_write(&ctx, p, src, W, H, 3, &o), MK_OK);
    /* tile 1 of level 0 (column 1, row 0): overwrite the second half of its bytes */
    TIFF *t = TIFFOpen(p, "r");
    assert_non_null(t);
    uint64_t off = TIFFGetStrileOffset(t, 1), cnt = TIFFGetStrileByteCount(t, 1);
    TIFFClose(t);
    assert_true(off > 0 && cnt > 64);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)(off + cnt / 2), SEEK_SET), 0);
    for (uint64_t k = cnt / 2; k + 2 < cnt; k++)
        fputc((int)((k * 37u) & 0x7f), f); /* no 0xFF: no marker, just wrong Huffman data */
    fclose(f);
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
    uint8_t *rgb = malloc(64 * 64 * 3);
    /* tile 0 is intact */
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 0, 0, 64, 64, rgb), MK_OK);
    mk_status st = mk_tiff_read_region(&ctx, s, 0, 64, 0, 64, 64, rgb);
    if (st == MK_OK)
        fail_msg("a corrupt JPEG tile decoded without an error");
    const char *m = mk_ctx_errmsg(&ctx);
    assert_non_null(strstr(m, "c.tif: level 0 tile 1 (column 1, row 0): corrupt compressed data"));
    assert_non_null(strstr(m, "JPEG"));
    /* the tile after it reads again */
    assert_int_equal(mk_tiff_read_region(&ctx, s, 0, 128, 0, 64, 64, rgb), MK_OK);
    free(rgb);
    mk_tiff_close(s);
    free(src);
}

static void count_warn(void *user, mk_log_level level, const char *msg)
{
    char *buf = (char *)user;
    if (level >= MK_LOG_WARN)
        snprintf(buf + strlen(buf), 2048 - strlen(buf), "%s\n", msg);
}

/* A second directory with level 0's aspect ratio but larger than it is no pyramid level: skipped
 * with a warning naming it, not silently (issue 23, smaller items). */
static void test_level_larger_than_level0(void **state)
{
    (void)state;
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "big_level");
    snprintf(p, sizeof p, "%s/b.tif", dir);
    TIFF *t = TIFFOpen(p, "w");
    assert_non_null(t);
    const int sizes[2][2] = {{128, 64}, {256, 128}};
    uint8_t tile[64 * 64 * 3];
    memset(tile, 200, sizeof tile);
    for (int d = 0; d < 2; d++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, sizes[d][0]);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, sizes[d][1]);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_TILEWIDTH, 64);
        TIFFSetField(t, TIFFTAG_TILELENGTH, 64);
        for (int k = 0; k < (sizes[d][0] / 64) * (sizes[d][1] / 64); k++)
            assert_true(TIFFWriteEncodedTile(t, (uint32_t)k, tile, sizeof tile) > 0);
        assert_true(TIFFWriteDirectory(t));
    }
    TIFFClose(t);
    char log[2048] = "";
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    ctx.log = count_warn;
    ctx.log_user = log;
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&ctx, p, &s), MK_OK);
    assert_int_equal(mk_tiff_level_count(s), 1);
    assert_non_null(strstr(log, "directory 1 (256 x 128) is not smaller than level 0 (128 x 64)"));
    mk_tiff_close(s);
}

int main(void)
{
    const char *sh = getenv("MK_SHARED_DIR");
    const char *bd = getenv("MK_BUILD_DIR");
    snprintf(g_real, sizeof g_real, "%s/data/real", sh ? sh : "/work/shared");
    snprintf(g_tmp, sizeof g_tmp, "%s/tests/tmp_tiff", bd ? bd : ".");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_tmp);
    if (system(cmd) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ihc_lzw_equals_png),
        cmocka_unit_test(test_ihc_jpeg_pyramid),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_pillow_reads_writer_output),
        cmocka_unit_test(test_tiles_verb),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_hand_made_tiff),
        cmocka_unit_test(test_corrupt_jpeg_tile),
        cmocka_unit_test(test_level_larger_than_level0),
        cmocka_unit_test(test_block_size_overflow),
    };
    const char *flt = getenv("MK_TEST_FILTER"); /* e.g. MK_TEST_FILTER='test_gepd*' */
    if (flt)
        cmocka_set_test_filter(flt);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
