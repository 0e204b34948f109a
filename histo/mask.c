/* Tissue mask (see mk_histo.h): HSV saturation of a low-resolution level, median blur, Otsu or a
 * fixed threshold, near-black exclusion. Moved from io/tiff.c (mk_tiff_tissue_mask), which had
 * neither the blur nor the fixed threshold. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_histo.h"

/* Largest mask (pixels): the saturation and the blurred copy are held in memory. */
#define MK_HISTO_MAX_MASK ((int64_t)1 << 26)
/* A pixel whose largest channel is <= this is near-black (pen marks, scanner borders). */
#define MK_HISTO_BLACK 16

void mk_histo_mask_defaults(mk_histo_mask_opts *o)
{
    memset(o, 0, sizeof *o);
    o->level = -1;
    o->median = 7;
    o->threshold = -1;
}

int mk_histo_otsu(const int64_t hist[256])
{
    double total = 0, sum = 0;
    for (int i = 0; i < 256; i++) {
        total += (double)hist[i];
        sum += (double)i * (double)hist[i];
    }
    /* With well-separated modes every t between them gives the same variance: return the middle
     * of that plateau rather than its lower end. */
    double w0 = 0, sum0 = 0, best = -1;
    int t_best = 0, t_last = 0;
    for (int t = 0; t < 255; t++) {
        w0 += (double)hist[t];
        sum0 += (double)t * (double)hist[t];
        double w1 = total - w0;
        if (w0 == 0 || w1 == 0)
            continue;
        double m0 = sum0 / w0, m1 = (sum - sum0) / w1;
        double v = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (v > best * (1 + 1e-12)) {
            best = v;
            t_best = t_last = t;
        } else if (v >= best * (1 - 1e-12)) {
            t_last = t;
        }
    }
    return (t_best + t_last) / 2;
}

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Huang's running-histogram median: per row, the window histogram slides by one column (remove
 * one column of k pixels, add one), and the median moves from its last position. */
mk_status mk_histo_median_u8(mk_ctx *ctx, const uint8_t *in, uint8_t *out, int64_t w, int64_t h,
                             int k)
{
    if (k < 1 || k % 2 == 0)
        return mk_err(ctx, MK_ERR_INVALID,
                      "median blur: kernel side %d: expected an odd number >= 1", k);
    if (w <= 0 || h <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "median blur: image %lld x %lld: expected a size > 0",
                      (long long)w, (long long)h);
    if (k == 1) {
        memcpy(out, in, (size_t)w * (size_t)h);
        return MK_OK;
    }
    const int r = k / 2;
    const int64_t half = ((int64_t)k * k) / 2; /* 0-based rank of the median */
    for (int64_t y = 0; y < h; y++) {
        int64_t hist[256] = {0};
        for (int dy = -r; dy <= r; dy++) {
            const uint8_t *row = in + clamp64(y + dy, 0, h - 1) * w;
            for (int dx = -r; dx <= r; dx++)
                hist[row[clamp64(dx, 0, w - 1)]]++;
        }
        int m = 0;
        int64_t lt = 0; /* window values < m */
        while (lt + hist[m] <= half)
            lt += hist[m++];
        out[y * w] = (uint8_t)m;
        for (int64_t x = 1; x < w; x++) {
            int64_t xo = clamp64(x - r - 1, 0, w - 1), xi = clamp64(x + r, 0, w - 1);
            if (xo != xi)
                for (int dy = -r; dy <= r; dy++) {
                    const uint8_t *row = in + clamp64(y + dy, 0, h - 1) * w;
                    int vo = row[xo], vi = row[xi];
                    hist[vo]--;
                    lt -= vo < m;
                    hist[vi]++;
                    lt += vi < m;
                }
            while (lt > half)
                lt -= hist[--m];
            while (lt + hist[m] <= half)
                lt += hist[m++];
            out[y * w + x] = (uint8_t)m;
        }
    }
    return MK_OK;
}

/* Saturation 0..255 of an RGB8 pixel (rounded), and its largest channel. */
static inline int saturation(const uint8_t *p, int *vmax)
{
    int mx = p[0], mn = p[0];
    for (int c = 1; c < 3; c++) {
        mx = p[c] > mx ? p[c] : mx;
        mn = p[c] < mn ? p[c] : mn;
    }
    *vmax = mx;
    return mx == 0 ? 0 : (255 * (mx - mn) + mx / 2) / mx;
}

/* The smallest level whose larger side is >= 512 px, the smallest level if none. */
static int auto_level(mk_ctx *ctx, mk_tiff_slide *s)
{
    int n = mk_tiff_level_count(s);
    for (int i = n - 1; i >= 0; i--) {
        mk_tiff_level lv;
        if (mk_tiff_level_info(ctx, s, i, &lv) != MK_OK)
            continue;
        if ((lv.width > lv.height ? lv.width : lv.height) >= 512)
            return i;
    }
    return n - 1;
}

mk_status mk_histo_tissue_mask(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_mask_opts *o,
                               mk_histo_mask **out)
{
    *out = NULL;
    mk_histo_mask_opts def;
    if (!o) {
        mk_histo_mask_defaults(&def);
        o = &def;
    }
    const char *path = mk_tiff_path(s);
    if (o->median < 0 || (o->median > 1 && o->median % 2 == 0) || o->median > 255)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: tissue mask: median kernel %d: expected an odd side <= 255 (0 or 1: "
                      "none)",
                      path, o->median);
    if (o->threshold < -1 || o->threshold > 255)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: tissue mask: threshold %d: expected 0..255 (-1: Otsu)", path,
                      o->threshold);
    int level = o->level < 0 ? auto_level(ctx, s) : o->level;
    mk_tiff_level L, L0;
    mk_status st = mk_tiff_level_info(ctx, s, level, &L);
    if (st != MK_OK || (st = mk_tiff_level_info(ctx, s, 0, &L0)) != MK_OK)
        return st;
    if (L.width <= 0 || L.height <= 0 || L.width > MK_HISTO_MAX_MASK / L.height)
        return mk_err(
            ctx, MK_ERR_NOMEM,
            "%s: level %d (%lld x %lld) is too large for a tissue mask; choose a lower level", path,
            level, (long long)L.width, (long long)L.height);
    int64_t npx = L.width * L.height;
    /* decode in bands of whole tile rows (or strips), at most ~16 MB of RGB */
    int64_t band = L.tile_h > 0 ? L.tile_h : L.rows_per_strip > 0 ? L.rows_per_strip : 64;
    int64_t cap = ((int64_t)16 << 20) / (L.width * 3);
    if (cap > band)
        band *= cap / band;
    if (band > L.height)
        band = L.height;
    if (band < 1)
        band = 1;
    mk_histo_mask *m = calloc(1, sizeof *m);
    uint8_t *row = malloc((size_t)L.width * 3 * (size_t)band);
    uint8_t *sat = malloc((size_t)npx);
    uint8_t *black = malloc((size_t)npx);
    uint8_t *blur = NULL;
    if (o->median > 1)
        blur = malloc((size_t)npx);
    if (!m || !row || !sat || !black || (o->median > 1 && !blur)) {
        free(m);
        free(row);
        free(sat);
        free(black);
        free(blur);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for the tissue mask", path);
    }
    for (int64_t y = 0; y < L.height && st == MK_OK; y += band) {
        int rows = (int)(y + band > L.height ? L.height - y : band);
        st = mk_tiff_read_region(ctx, s, level, 0, y, (int)L.width, rows, row);
        for (int64_t i = 0; st == MK_OK && i < (int64_t)rows * L.width; i++) {
            int vmax;
            int sv = saturation(row + 3 * i, &vmax);
            black[y * L.width + i] = vmax <= MK_HISTO_BLACK;
            sat[y * L.width + i] = (uint8_t)(vmax <= MK_HISTO_BLACK ? 0 : sv);
        }
    }
    free(row);
    if (st == MK_OK && blur) {
        st = mk_histo_median_u8(ctx, sat, blur, L.width, L.height, o->median);
        free(sat);
        sat = blur;
        blur = NULL;
    }
    if (st != MK_OK) {
        free(blur);
        free(sat);
        free(black);
        free(m);
        return st;
    }
    /* near-black pixels are neither in the histogram nor tissue */
    int64_t hist[256] = {0};
    for (int64_t i = 0; i < npx; i++)
        if (!black[i])
            hist[sat[i]]++;
    m->threshold = o->threshold >= 0 ? o->threshold : mk_histo_otsu(hist);
    for (int64_t i = 0; i < npx; i++)
        sat[i] = !black[i] && sat[i] > m->threshold;
    free(black);
    m->data = sat;
    m->level = level;
    m->width = L.width;
    m->height = L.height;
    m->scale_x = (double)L0.width / (double)L.width;
    m->scale_y = (double)L0.height / (double)L.height;
    *out = m;
    return MK_OK;
}

void mk_histo_mask_free(mk_histo_mask *m)
{
    if (!m)
        return;
    free(m->data);
    free(m);
}

double mk_histo_mask_fraction(const mk_histo_mask *m, int64_t x0, int64_t y0, int64_t w0,
                              int64_t h0)
{
    /* Mask pixel (i, j) covers level-0 [i*sx, (i+1)*sx); count those whose centre is inside. */
    int64_t i0 = (int64_t)ceil((double)x0 / m->scale_x - 0.5),
            i1 = (int64_t)ceil((double)(x0 + w0) / m->scale_x - 0.5);
    int64_t j0 = (int64_t)ceil((double)y0 / m->scale_y - 0.5),
            j1 = (int64_t)ceil((double)(y0 + h0) / m->scale_y - 0.5);
    if (i1 <= i0)
        i1 = i0 + 1; /* patch smaller than a mask pixel: use the pixel under it */
    if (j1 <= j0)
        j1 = j0 + 1;
    i0 = i0 < 0 ? 0 : i0;
    j0 = j0 < 0 ? 0 : j0;
    i1 = i1 > m->width ? m->width : i1;
    j1 = j1 > m->height ? m->height : j1;
    if (i0 >= i1 || j0 >= j1)
        return 0.0;
    int64_t n = 0;
    for (int64_t j = j0; j < j1; j++)
        for (int64_t i = i0; i < i1; i++)
            n += m->data[j * m->width + i];
    return (double)n / (double)((i1 - i0) * (j1 - j0));
}
