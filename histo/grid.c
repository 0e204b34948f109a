/* Patch grid and patch labels (see mk_histo.h). The walk was io/tiff.c's mk_tiff_patch_grid. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_histo.h"

/* Largest patch (pixels of one side squared): one RGB patch buffer is held. */
#define MK_HISTO_MAX_PATCH_PX ((int64_t)1 << 26)

void mk_histo_grid_defaults(mk_histo_grid_opts *o)
{
    memset(o, 0, sizeof *o);
    o->level = 0;
    o->size = 256;
    o->stride = 0;
    o->min_tissue = 0.5;
    mk_histo_mask_defaults(&o->mask);
}

void mk_histo_label_defaults(mk_histo_label_opts *o)
{
    memset(o, 0, sizeof *o);
    o->positive = 2;
    o->centre = 0.5;
    o->min_frac = 0.0;
}

void mk_histo_grid_free(mk_histo_grid *g)
{
    if (!g)
        return;
    free(g->slide);
    free(g->xy);
    free(g->tissue);
    free(g->label);
    free(g->label_frac);
    memset(g, 0, sizeof *g);
}

/* The checks shared by the walk and the build; fills the level's description. */
static mk_status check_opts(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid_opts *o,
                            mk_tiff_level *L, mk_tiff_level *L0)
{
    const char *path = mk_tiff_path(s);
    mk_status st = mk_tiff_level_info(ctx, s, o->level, L);
    if (st != MK_OK || (st = mk_tiff_level_info(ctx, s, 0, L0)) != MK_OK)
        return st;
    if (o->size <= 0 || o->stride < 0)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: patch size %d / stride %d: expected size > 0 and stride >= 0", path,
                      o->size, o->stride);
    if (o->size > L->width || o->size > L->height)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: patch size %d is larger than level %d (%lld x %lld px): no patch fits",
                      path, o->size, o->level, (long long)L->width, (long long)L->height);
    if (!(o->min_tissue >= 0 && o->min_tissue <= 1))
        return mk_err(ctx, MK_ERR_INVALID, "%s: min_tissue %g: expected 0..1", path, o->min_tissue);
    if ((int64_t)o->size * o->size > MK_HISTO_MAX_PATCH_PX)
        return mk_err(ctx, MK_ERR_INVALID, "%s: patch size %d is too large (at most %d)", path,
                      o->size, 1 << 13);
    return MK_OK;
}

/* The walk; *threshold receives the mask's threshold. */
static mk_status walk(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid_opts *o, int read_pixels,
                      mk_histo_patch_fn fn, void *user, int *threshold)
{
    mk_tiff_level L, L0;
    mk_status st = check_opts(ctx, s, o, &L, &L0);
    if (st != MK_OK)
        return st;
    const char *path = mk_tiff_path(s);
    int stride = o->stride > 0 ? o->stride : o->size;
    mk_histo_mask *mask = NULL;
    if ((st = mk_histo_tissue_mask(ctx, s, &o->mask, &mask)) != MK_OK)
        return st;
    if (threshold)
        *threshold = mask->threshold;
    uint8_t *pix = NULL;
    if (read_pixels && !(pix = malloc((size_t)o->size * (size_t)o->size * 3))) {
        mk_histo_mask_free(mask);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for a patch", path);
    }
    double ds = (double)L0.width / (double)L.width;
    int64_t side0 = (int64_t)llround(o->size * ds);
    long long nrows = (L.height - o->size) / stride + 1;
    long long index = 0, row = 0;
    for (int64_t y = 0; y + o->size <= L.height && st == MK_OK; y += stride, row++) {
        if (ctx && ctx->cancel) {
            st = mk_err(ctx, MK_ERR_ABORTED, "%s: patch extraction interrupted", path);
            break;
        }
        for (int64_t x = 0; x + o->size <= L.width; x += stride) {
            mk_histo_patch p;
            memset(&p, 0, sizeof p);
            p.level = o->level;
            p.x = x;
            p.y = y;
            p.x0 = (int64_t)llround((double)x * ds);
            p.y0 = (int64_t)llround((double)y * ds);
            p.width = p.height = o->size;
            p.tissue = mk_histo_mask_fraction(mask, p.x0, p.y0, side0, side0);
            if (p.tissue < o->min_tissue)
                continue;
            if (pix) {
                if ((st = mk_tiff_read_region(ctx, s, o->level, x, y, o->size, o->size, pix)) !=
                    MK_OK)
                    break;
                p.rgb = pix;
            }
            p.index = index++;
            if ((st = fn(user, &p)) != MK_OK)
                break;
        }
        mk_progress(ctx, "tiles", row + 1, nrows, "row", NULL);
    }
    free(pix);
    mk_histo_mask_free(mask);
    return st;
}

mk_status mk_histo_patch_walk(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid_opts *o,
                              int read_pixels, mk_histo_patch_fn fn, void *user)
{
    return walk(ctx, s, o, read_pixels, fn, user, NULL);
}

typedef struct collect {
    mk_ctx *ctx;
    const char *path;
    int64_t n, cap;
    int64_t *xy;
    float *tissue;
} collect;

static mk_status collect_patch(void *user, const mk_histo_patch *p)
{
    collect *c = user;
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 1024;
        int64_t *xy = realloc(c->xy, (size_t)cap * 2 * sizeof *xy);
        if (xy)
            c->xy = xy;
        float *t = realloc(c->tissue, (size_t)cap * sizeof *t);
        if (t)
            c->tissue = t;
        if (!xy || !t)
            return mk_err(c->ctx, MK_ERR_NOMEM, "%s: out of memory for %lld grid patches", c->path,
                          (long long)cap);
        c->cap = cap;
    }
    c->xy[2 * c->n] = p->x0;
    c->xy[2 * c->n + 1] = p->y0;
    c->tissue[c->n] = (float)p->tissue;
    c->n++;
    return MK_OK;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

mk_status mk_histo_grid_build(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid_opts *o,
                              mk_histo_grid *out)
{
    memset(out, 0, sizeof *out);
    const char *path = mk_tiff_path(s);
    collect c = {ctx, path, 0, 0, NULL, NULL};
    int threshold = -1;
    mk_status st = walk(ctx, s, o, 0, collect_patch, &c, &threshold);
    if (st == MK_OK && c.n == 0)
        st = mk_err(ctx, MK_ERR_INVALID,
                    "%s: no tissue found at level %d (threshold %d, min_tissue %g)", path, o->level,
                    threshold, o->min_tissue);
    mk_tiff_level L, L0;
    if (st == MK_OK && (st = mk_tiff_level_info(ctx, s, o->level, &L)) == MK_OK)
        st = mk_tiff_level_info(ctx, s, 0, &L0);
    if (st != MK_OK) {
        free(c.xy);
        free(c.tissue);
        return st;
    }
    out->slide = dup_str(path);
    out->label = malloc((size_t)c.n * sizeof *out->label);
    out->label_frac = calloc((size_t)c.n, sizeof *out->label_frac);
    out->xy = c.xy;
    out->tissue = c.tissue;
    out->n = c.n;
    if (!out->slide || !out->label || !out->label_frac) {
        mk_histo_grid_free(out);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for the grid", path);
    }
    for (int64_t i = 0; i < c.n; i++)
        out->label[i] = -1;
    out->level = o->level;
    out->size = o->size;
    out->stride = o->stride > 0 ? o->stride : o->size;
    out->downsample = (double)L0.width / (double)L.width;
    out->level_w = L.width;
    out->level_h = L.height;
    return MK_OK;
}

void mk_histo_grid_label_all(mk_histo_grid *g, int32_t label)
{
    for (int64_t i = 0; i < g->n; i++)
        g->label[i] = label;
}

/* ---- labels from a mask -------------------------------------------------------------------- */

/* Mask pixels [i0, i1) along one axis whose centres ((i + 0.5) k) lie in level-0 [lo, hi); the
 * pixel under the centre c when the range is narrower than a pixel. Clipped to [0, n). */
static void centre_range(double lo, double hi, double c, double k, int64_t n, int64_t *i0,
                         int64_t *i1)
{
    int64_t a = (int64_t)ceil(lo / k - 0.5), b = (int64_t)ceil(hi / k - 0.5);
    if (b <= a) {
        a = (int64_t)floor(c / k);
        b = a + 1;
    }
    *i0 = a < 0 ? 0 : a > n ? n : a;
    *i1 = b < 0 ? 0 : b > n ? n : b;
}

mk_status mk_histo_grid_label_mask(mk_ctx *ctx, mk_histo_grid *g, const char *mask_path,
                                   const mk_histo_label_opts *o)
{
    mk_histo_label_opts def;
    if (!o) {
        mk_histo_label_defaults(&def);
        o = &def;
    }
    if (o->positive < 0 || o->positive > 255 || !(o->centre > 0 && o->centre <= 1) ||
        !(o->min_frac >= 0 && o->min_frac < 1))
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: label options: positive %d, centre %g, min_frac %g: expected 0..255, "
                      "0 < centre <= 1, 0 <= min_frac < 1",
                      mask_path, o->positive, o->centre, o->min_frac);
    if (!(g->downsample > 0) || g->size <= 0 || g->level_w <= 0 || g->level_h <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: labels: the grid of %s is empty or invalid",
                      mask_path, g->slide ? g->slide : "?");
    mk_tiff_slide *m = NULL;
    mk_status st = mk_tiff_open(ctx, mask_path, &m);
    if (st != MK_OK)
        return st;
    mk_tiff_level ml;
    if ((st = mk_tiff_level_info(ctx, m, 0, &ml)) != MK_OK) {
        mk_tiff_close(m);
        return st;
    }
    /* the slide's level 0 from the grid's level (exact in width, within a downsample in height:
     * pyramid levels round their sizes) */
    double ds = g->downsample;
    double W0 = (double)llround((double)g->level_w * ds), H0 = (double)g->level_h * ds;
    int64_t k = ml.width > 0 ? (int64_t)llround(W0 / (double)ml.width) : 0;
    if (k < 1 || fabs((double)(ml.width * k) - W0) >= (double)k ||
        fabs((double)(ml.height * k) - H0) >= (double)k + ds) {
        mk_tiff_close(m);
        return mk_err(ctx, MK_ERR_GEOMETRY,
                      "%s: mask size %lld x %lld matches no scale of the slide %s (%.0f x %.0f at "
                      "level 0): expected the slide's size divided by an integer",
                      mask_path, (long long)ml.width, (long long)ml.height,
                      g->slide ? g->slide : "?", W0, H0);
    }
    double side0 = g->size * ds, half = 0.5 * o->centre * side0, kd = (double)k;
    /* the largest centre region in mask pixels, read in bands of at most ~4 MB */
    int64_t span = (int64_t)ceil(2 * half / kd) + 2;
    if (span > ml.width)
        span = ml.width;
    int64_t band = ((int64_t)4 << 20) / (span * 3);
    if (band < 1)
        band = 1;
    uint8_t *buf = malloc((size_t)(span * band * 3));
    if (!buf) {
        mk_tiff_close(m);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", mask_path);
    }
    for (int64_t p = 0; p < g->n && st == MK_OK; p++) {
        if (ctx && ctx->cancel) {
            st = mk_err(ctx, MK_ERR_ABORTED, "%s: labelling interrupted", mask_path);
            break;
        }
        double cx = (double)g->xy[2 * p] + 0.5 * side0, cy = (double)g->xy[2 * p + 1] + 0.5 * side0;
        int64_t i0, i1, j0, j1;
        centre_range(cx - half, cx + half, cx, kd, ml.width, &i0, &i1);
        centre_range(cy - half, cy + half, cy, kd, ml.height, &j0, &j1);
        int64_t pos = 0, tot = (i1 - i0) * (j1 - j0);
        if (i1 - i0 > span) /* cannot happen: span bounds the range */
            st = mk_err(ctx, MK_ERR_INTERNAL, "%s: centre region wider than expected", mask_path);
        for (int64_t j = j0; tot > 0 && j < j1 && st == MK_OK; j += band) {
            int rows = (int)(j + band > j1 ? j1 - j : band);
            st = mk_tiff_read_region(ctx, m, 0, i0, j, (int)(i1 - i0), rows, buf);
            for (int64_t q = 0; st == MK_OK && q < (int64_t)rows * (i1 - i0); q++)
                pos += buf[3 * q] == o->positive;
        }
        if (st != MK_OK)
            break;
        double frac = tot > 0 ? (double)pos / (double)tot : 0.0;
        g->label_frac[p] = (float)frac;
        g->label[p] = frac > o->min_frac ? 1 : 0;
    }
    free(buf);
    mk_tiff_close(m);
    if (st != MK_OK)
        for (int64_t p = 0; p < g->n; p++) { /* no half-labelled grid */
            g->label[p] = -1;
            g->label_frac[p] = 0;
        }
    return st;
}
