/* medkd report image panels: see mk_panel.h.
 *
 * Steps: validate everything (before any allocation); one pass over ref and pred counting, per
 * slice of each voxel axis, the voxels whose scored label differs and the reference foreground;
 * pick the slice of each plane; then per tile: the windowed grey slice in a small cairo image
 * surface painted scaled (NEAREST) into the tile, FN and FP fills as merged-run rectangles (one
 * path and one fill per colour), reference and prediction contours as merged voxel-edge
 * segments (one path and one stroke per label per colour), orientation letters and a caption
 * with cairo's toy text API; the PNG through cairo_surface_write_to_png_stream.
 *
 * Screen frame. Every screen axis runs towards a negative RAS direction: axial x to the
 * patient's left, y to posterior; coronal x left, y inferior; sagittal x posterior, y inferior.
 * So a voxel axis whose RAS sign is negative (pointing L, P or I) is drawn in index order and
 * one pointing R, A or S is drawn reversed. Oblique images use each voxel axis's nearest world
 * axis (mk_geom_axis_map); nothing is resampled.
 */
#include "mk_panel.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MK_PANEL_GAP 4         /* px around and between tiles */
#define MK_PANEL_CAPTION 16    /* px of the caption strip under the tiles */
#define MK_PANEL_FONT 11.0     /* px, captions and orientation letters */
#define MK_PANEL_MAX_DIM 32767 /* cairo's largest image surface side */
#define MK_PANEL_MAX_LABELS 65535
#define MK_PANEL_SAMPLES ((int64_t)1 << 20) /* window_auto: voxels sampled at most */

static const char *const MK_PANEL_PLANE[3] = {"axial", "coronal", "sagittal"};
/* RAS world axis fixed by each plane, shown across the screen (x) and down it (y). */
static const int MK_PANEL_FIXED_W[3] = {2, 1, 0};
static const int MK_PANEL_X_W[3] = {0, 0, 1};
static const int MK_PANEL_Y_W[3] = {1, 2, 2};
static const char MK_PANEL_POS[3] = {'R', 'A', 'S'}, MK_PANEL_NEG[3] = {'L', 'P', 'I'};

void mk_panel_opts_default(mk_panel_opts *o)
{
    memset(o, 0, sizeof *o);
    o->window[0] = 0;
    o->window[1] = 1;
    o->window_auto = 1;
    o->tile_px = 256;
}

/* ---- labels: voxel value -> class (0 background, 1 + index of the first matching label) ---- */

typedef struct mk_panel_lab {
    const mk_image *im;
    const int64_t *labels;
    int nl;
    uint16_t *lut; /* 8- and 16-bit integer dtypes: class of value v at lut[v + off] */
    int64_t off;
} mk_panel_lab;

static uint16_t mk_panel_class_i(const mk_panel_lab *l, int64_t v)
{
    for (int c = 0; c < l->nl; c++)
        if (l->labels[c] == v)
            return (uint16_t)(c + 1);
    return 0;
}

/* Float voxels: a label only when exactly equal to a scored value (NaN: background). */
static uint16_t mk_panel_class_d(const mk_panel_lab *l, double v)
{
    for (int c = 0; c < l->nl; c++)
        if ((double)l->labels[c] == v)
            return (uint16_t)(c + 1);
    return 0;
}

static mk_status mk_panel_lab_init(mk_ctx *ctx, mk_panel_lab *l, const mk_image *im,
                                   const int64_t *labels, int nl)
{
    memset(l, 0, sizeof *l);
    l->im = im;
    l->labels = labels;
    l->nl = nl;
    int64_t n = 0;
    switch (im->dtype) {
    case MK_DT_UINT8: n = 256; break;
    case MK_DT_INT8:
        n = 256;
        l->off = 128;
        break;
    case MK_DT_UINT16: n = 65536; break;
    case MK_DT_INT16:
        n = 65536;
        l->off = 32768;
        break;
    default: return MK_OK;
    }
    l->lut = calloc((size_t)n, sizeof *l->lut);
    if (!l->lut)
        return mk_err(ctx, MK_ERR_NOMEM, "mk_panel: out of memory for a label table");
    for (int c = nl - 1; c >= 0; c--) /* backwards: the first of duplicates wins */
        if (labels[c] + l->off >= 0 && labels[c] + l->off < n)
            l->lut[labels[c] + l->off] = (uint16_t)(c + 1);
    return MK_OK;
}

/* Classes of voxels start .. start+n-1 into out. */
static void mk_panel_lab_row(const mk_panel_lab *l, int64_t start, int64_t n, uint16_t *out)
{
    const void *d = l->im->data;
    const uint16_t *lut = l->lut;
    switch (l->im->dtype) {
    case MK_DT_UINT8: {
        const uint8_t *s = (const uint8_t *)d + start;
        for (int64_t i = 0; i < n; i++)
            out[i] = lut[s[i]];
        return;
    }
    case MK_DT_INT8: {
        const int8_t *s = (const int8_t *)d + start;
        for (int64_t i = 0; i < n; i++)
            out[i] = lut[s[i] + 128];
        return;
    }
    case MK_DT_UINT16: {
        const uint16_t *s = (const uint16_t *)d + start;
        for (int64_t i = 0; i < n; i++)
            out[i] = lut[s[i]];
        return;
    }
    case MK_DT_INT16: {
        const int16_t *s = (const int16_t *)d + start;
        for (int64_t i = 0; i < n; i++)
            out[i] = lut[s[i] + 32768];
        return;
    }
    default: break;
    }
    /* wider types: label maps are piecewise constant, so remember the last value's class */
    int is_int = mk_dtype_is_int(l->im->dtype);
    double last = NAN;
    uint16_t lc = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t idx = start + i;
        if (is_int) {
            int64_t v;
            if (l->im->dtype == MK_DT_UINT64) {
                uint64_t u = ((const uint64_t *)d)[idx];
                out[i] = u > (uint64_t)INT64_MAX ? 0 : mk_panel_class_i(l, (int64_t)u);
                continue;
            }
            v = l->im->dtype == MK_DT_INT64 ? ((const int64_t *)d)[idx]
                                            : (int64_t)mk_image_get(l->im, idx);
            if ((double)v != last) {
                last = (double)v;
                lc = mk_panel_class_i(l, v);
            }
            out[i] = lc;
        } else {
            double v = mk_image_get(l->im, idx);
            if (v != last) {
                last = v;
                lc = mk_panel_class_d(l, v);
            }
            out[i] = lc;
        }
    }
}

/* ---- window: 0.5 / 99.5 percentiles of a fixed-stride subsample ---------------------------- */

static int64_t mk_panel_gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Partially sort a[0..n-1] so that a[k] is the k-th smallest (Hoare partition quickselect). */
static void mk_panel_select(double *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        /* median of three as pivot */
        double x = a[lo], y = a[mid], z = a[hi];
        double piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < piv)
                i++;
            while (a[j] > piv)
                j--;
            if (i <= j) {
                double t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* q-quantile with linear interpolation between order statistics at q*(n-1); reorders a. */
static double mk_panel_quantile(double *a, int64_t n, double q)
{
    double pos = q * (double)(n - 1);
    int64_t k = (int64_t)floor(pos);
    double f = pos - (double)k;
    mk_panel_select(a, n, k);
    double v = a[k];
    if (f > 0 && k + 1 < n) {
        double nx = a[k + 1];
        for (int64_t i = k + 2; i < n; i++)
            if (a[i] < nx)
                nx = a[i];
        v += f * (nx - v);
    }
    return v;
}

static mk_status mk_panel_window_auto(mk_ctx *ctx, const mk_image *img, double w[2])
{
    int64_t nvox = mk_image_nvox(img);
    int64_t stride = (nvox + MK_PANEL_SAMPLES - 1) / MK_PANEL_SAMPLES;
    /* coprime with the row and slice lengths, so the samples do not line up on a few columns */
    while (stride > 1 && mk_panel_gcd(stride, img->dim[0] * img->dim[1]) != 1)
        stride++;
    int64_t cap = (nvox + stride - 1) / stride;
    double *s = malloc((size_t)cap * sizeof *s);
    if (!s)
        return mk_err(ctx, MK_ERR_NOMEM, "mk_panel: out of memory for the window sample");
    int64_t n = 0;
    for (int64_t i = 0; i < nvox; i += stride) {
        double v = mk_image_get(img, i);
        if (isfinite(v))
            s[n++] = v;
    }
    if (n == 0) {
        w[0] = 0;
        w[1] = 1;
    } else {
        w[0] = mk_panel_quantile(s, n, 0.005);
        w[1] = mk_panel_quantile(s, n, 0.995);
    }
    free(s);
    if (!(w[1] > w[0])) /* a constant image: any window above its value shows it black */
        w[1] = w[0] + 1;
    return MK_OK;
}

/* ---- validation -------------------------------------------------------------------------- */

static mk_status mk_panel_check_image(mk_ctx *ctx, const mk_image *im, const char *what, int label)
{
    if (!im->data)
        return mk_err(ctx, MK_ERR_INVALID, "mk_panel: %s has no voxel data (header only)", what);
    if ((unsigned)im->dtype >= MK_DT_COUNT || (label && im->dtype == MK_DT_RGB24))
        return mk_err(ctx, MK_ERR_UNSUPPORTED, "mk_panel: %s: dtype %s is not a label type", what,
                      mk_dtype_name(im->dtype));
    if (im->dim[3] != 1 || im->dim[4] != 1)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "mk_panel: %s has shape %lldx%lldx%lldx%lldx%lld; only 3-D images (dims 4 "
                      "and 5 equal to 1) can be drawn",
                      what, (long long)im->dim[0], (long long)im->dim[1], (long long)im->dim[2],
                      (long long)im->dim[3], (long long)im->dim[4]);
    for (int d = 0; d < 3; d++)
        if (im->dim[d] < 1 || im->dim[d] > MK_PANEL_MAX_DIM)
            return mk_err(ctx, MK_ERR_UNSUPPORTED,
                          "mk_panel: %s: dim[%d] = %lld is outside 1..%d (cairo's limit)", what, d,
                          (long long)im->dim[d], MK_PANEL_MAX_DIM);
    return MK_OK;
}

static mk_status mk_panel_check_grid(mk_ctx *ctx, const mk_image *a, const char *an,
                                     const mk_image *b, const char *bn)
{
    char why[512];
    if (!mk_geom_grid_diff(a, b, 1e-4, why, sizeof why))
        return mk_err(ctx, MK_ERR_GEOMETRY, "mk_panel: %s and %s are not on the same grid: %s", an,
                      bn, why);
    return MK_OK;
}

static mk_status mk_panel_validate(mk_ctx *ctx, const mk_image *img, const mk_image *ref,
                                   const mk_image *pred, const int64_t *labels, int nlabels,
                                   const mk_panel_opts *o)
{
    if (o->tile_px < 32 || o->tile_px > 4096)
        return mk_err(ctx, MK_ERR_INVALID, "mk_panel: tile_px %d is outside 32..4096", o->tile_px);
    if (!o->window_auto &&
        !(isfinite(o->window[0]) && isfinite(o->window[1]) && o->window[0] < o->window[1]))
        return mk_err(ctx, MK_ERR_INVALID, "mk_panel: window [%g, %g]: need finite lo < hi",
                      o->window[0], o->window[1]);
    if (nlabels < 0 || nlabels > MK_PANEL_MAX_LABELS || (nlabels > 0 && !labels))
        return mk_err(ctx, MK_ERR_INVALID, "mk_panel: %d labels: need 0..%d and a label array",
                      nlabels, MK_PANEL_MAX_LABELS);
    mk_status st;
    if (img && (st = mk_panel_check_image(ctx, img, "image", 0)) != MK_OK)
        return st;
    if ((st = mk_panel_check_image(ctx, ref, "reference", 1)) != MK_OK ||
        (st = mk_panel_check_image(ctx, pred, "prediction", 1)) != MK_OK)
        return st;
    if (img) {
        if ((st = mk_panel_check_grid(ctx, ref, "reference", img, "image")) != MK_OK ||
            (st = mk_panel_check_grid(ctx, pred, "prediction", img, "image")) != MK_OK)
            return st;
    }
    return mk_panel_check_grid(ctx, pred, "prediction", ref, "reference");
}

/* ---- counting pass ----------------------------------------------------------------------- */

/* cnt[c][x]: differing voxels on slice x of voxel axis c; fg[c][x]: reference foreground. */
static mk_status mk_panel_count(mk_ctx *ctx, const mk_panel_lab *lr, const mk_panel_lab *lp,
                                const int64_t d[3], int64_t *cnt[3], int64_t *fg[3])
{
    uint16_t *rrow = malloc((size_t)d[0] * 2 * sizeof *rrow);
    if (!rrow)
        return mk_err(ctx, MK_ERR_NOMEM, "mk_panel: out of memory for a row");
    uint16_t *prow = rrow + d[0];
    int64_t *ci = cnt[0], *fi = fg[0];
    for (int64_t k = 0; k < d[2]; k++) {
        if (ctx && ctx->cancel) {
            free(rrow);
            return mk_err(ctx, MK_ERR_ABORTED, "mk_panel: cancelled");
        }
        for (int64_t j = 0; j < d[1]; j++) {
            int64_t base = d[0] * (j + d[1] * k);
            mk_panel_lab_row(lr, base, d[0], rrow);
            mk_panel_lab_row(lp, base, d[0], prow);
            int64_t nd = 0, nf = 0;
            for (int64_t i = 0; i < d[0]; i++) {
                int64_t df = rrow[i] != prow[i], f = rrow[i] != 0;
                ci[i] += df;
                fi[i] += f;
                nd += df;
                nf += f;
            }
            cnt[1][j] += nd;
            cnt[2][k] += nd;
            fg[1][j] += nf;
            fg[2][k] += nf;
        }
    }
    free(rrow);
    return MK_OK;
}

static int64_t mk_panel_pick(const int64_t *cnt, const int64_t *fg, int64_t n)
{
    int64_t best = 0;
    for (int64_t x = 1; x < n; x++)
        if (cnt[x] > cnt[best])
            best = x;
    if (cnt[best] > 0)
        return best;
    for (int64_t x = 1; x < n; x++)
        if (fg[x] > fg[best])
            best = x;
    return fg[best] > 0 ? best : n / 2;
}

/* ---- tiles ------------------------------------------------------------------------------- */

typedef struct mk_panel_tile {
    int present;
    int fixed, ax_u, ax_v; /* voxel axes: cut, across the screen, down the screen */
    int flip_u, flip_v;    /* 1: screen coordinate = n - 1 - voxel index */
    int64_t nu, nv, slice, errors;
    int x, y, w, h; /* pixel rectangle */
} mk_panel_tile;

/* Linear voxel index of screen voxel (u, v) of tile t. */
static int64_t mk_panel_vox(const mk_panel_tile *t, const int64_t st[3], int64_t u, int64_t v)
{
    int64_t iu = t->flip_u ? t->nu - 1 - u : u, iv = t->flip_v ? t->nv - 1 - v : v;
    return t->slice * st[t->fixed] + iu * st[t->ax_u] + iv * st[t->ax_v];
}

/* Device pixel edge of voxel edge u (v) of tile t: fills and contours snap to whole pixels, where
 * the NEAREST-scaled grey slice changes voxel too, so they stay crisp and seamless. */
static double mk_panel_px(const mk_panel_tile *t, int64_t u)
{
    return t->x + floor((double)u * t->w / (double)t->nu + 0.5);
}

static double mk_panel_py(const mk_panel_tile *t, int64_t v)
{
    return t->y + floor((double)v * t->h / (double)t->nv + 0.5);
}

static mk_status mk_panel_cairo_err(mk_ctx *ctx, const char *what, cairo_status_t s)
{
    if (s == CAIRO_STATUS_NO_MEMORY)
        return mk_err(ctx, MK_ERR_NOMEM, "mk_panel: cairo: %s: %s", what,
                      cairo_status_to_string(s));
    return mk_err(ctx, MK_ERR_IO, "mk_panel: cairo: %s: %s", what, cairo_status_to_string(s));
}

/* The windowed grey slice painted into the tile (black without an image). */
static mk_status mk_panel_draw_grey(mk_ctx *ctx, cairo_t *cr, const mk_panel_tile *t,
                                    const mk_image *img, const int64_t st[3], const double w[2])
{
    cairo_rectangle(cr, t->x, t->y, t->w, t->h);
    if (!img) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_fill(cr);
        return MK_OK;
    }
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)t->nu, (int)t->nv);
    cairo_status_t cs = cairo_surface_status(s);
    if (cs != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        cairo_new_path(cr);
        return mk_panel_cairo_err(ctx, "slice surface", cs);
    }
    cairo_surface_flush(s);
    unsigned char *px = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    double scale = 255.0 / (w[1] - w[0]);
    for (int64_t v = 0; v < t->nv; v++) {
        uint32_t *row = (uint32_t *)(void *)(px + v * stride);
        for (int64_t u = 0; u < t->nu; u++) {
            double g = (mk_image_get(img, mk_panel_vox(t, st, u, v)) - w[0]) * scale;
            uint32_t b = g >= 255 ? 255 : g > 0 ? (uint32_t)(g + 0.5) : 0; /* NaN: 0 */
            row[u] = b * 0x010101u;
        }
    }
    cairo_surface_mark_dirty(s);
    cairo_save(cr);
    cairo_clip(cr);
    cairo_translate(cr, t->x, t->y);
    cairo_scale(cr, (double)t->w / (double)t->nu, (double)t->h / (double)t->nv);
    cairo_set_source_surface(cr, s, 0, 0);
    cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_paint(cr);
    cairo_restore(cr);
    cairo_surface_destroy(s);
    return MK_OK;
}

/* FN (which == 0: reference label not predicted) or FP (which == 1) runs, one fill. */
static void mk_panel_draw_fill(cairo_t *cr, const mk_panel_tile *t, const uint16_t *rs,
                               const uint16_t *ps, int which)
{
    for (int64_t v = 0; v < t->nv; v++) {
        const uint16_t *r = rs + v * t->nu, *p = ps + v * t->nu;
        int64_t u = 0;
        while (u < t->nu) {
            int on = which ? (p[u] && p[u] != r[u]) : (r[u] && r[u] != p[u]);
            if (!on) {
                u++;
                continue;
            }
            int64_t u0 = u;
            while (u < t->nu && (which ? (p[u] && p[u] != r[u]) : (r[u] && r[u] != p[u])))
                u++;
            double x0 = mk_panel_px(t, u0), y0 = mk_panel_py(t, v);
            cairo_rectangle(cr, x0, y0, mk_panel_px(t, u) - x0, mk_panel_py(t, v + 1) - y0);
        }
    }
    if (which)
        cairo_set_source_rgba(cr, 1.0, 0.1, 0.1, 0.42);
    else
        cairo_set_source_rgba(cr, 0.0, 0.4, 1.0, 0.42);
    cairo_fill(cr);
}

/* Voxel-edge contour of class c of slice s (nu x nv; outside the slice is outside) as merged
 * segments, on pixel edges shifted by off (0.5: centred on a pixel, for odd line widths). */
static void mk_panel_contour_path(cairo_t *cr, const mk_panel_tile *t, const uint16_t *s,
                                  uint16_t c, double off)
{
    int64_t nu = t->nu, nv = t->nv;
    /* horizontal edges on line y = v, between rows v-1 and v */
    for (int64_t v = 0; v <= nv; v++) {
        int64_t u = 0;
        while (u < nu) {
            int a = v > 0 && s[(v - 1) * nu + u] == c, b = v < nv && s[v * nu + u] == c;
            if (a == b) {
                u++;
                continue;
            }
            int64_t u0 = u;
            while (u < nu && (v > 0 && s[(v - 1) * nu + u] == c) == a &&
                   (v < nv && s[v * nu + u] == c) == b)
                u++;
            double y = mk_panel_py(t, v) + off;
            cairo_move_to(cr, mk_panel_px(t, u0) + off, y);
            cairo_line_to(cr, mk_panel_px(t, u) + off, y);
        }
    }
    /* vertical edges on line x = u, between columns u-1 and u */
    for (int64_t u = 0; u <= nu; u++) {
        int64_t v = 0;
        while (v < nv) {
            int a = u > 0 && s[v * nu + u - 1] == c, b = u < nu && s[v * nu + u] == c;
            if (a == b) {
                v++;
                continue;
            }
            int64_t v0 = v;
            while (v < nv && (u > 0 && s[v * nu + u - 1] == c) == a &&
                   (u < nu && s[v * nu + u] == c) == b)
                v++;
            double x = mk_panel_px(t, u) + off;
            cairo_move_to(cr, x, mk_panel_py(t, v0) + off);
            cairo_line_to(cr, x, mk_panel_py(t, v) + off);
        }
    }
}

static void mk_panel_draw_contours(cairo_t *cr, const mk_panel_tile *t, const uint16_t *s, int nl,
                                   unsigned char *present, double lw, double r, double g, double b)
{
    memset(present, 0, (size_t)nl + 1);
    for (int64_t x = 0; x < t->nu * t->nv; x++)
        present[s[x]] = 1;
    for (int c = 1; c <= nl; c++) {
        if (!present[c])
            continue;
        /* odd widths centred on a pixel, even ones on a pixel edge */
        mk_panel_contour_path(cr, t, s, (uint16_t)c, fmod(lw, 2) >= 1 ? 0.5 : 0);
        cairo_set_line_width(cr, lw);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
        cairo_set_source_rgb(cr, r, g, b);
        cairo_stroke(cr);
    }
}

/* Text with a dark shadow at (x, y) (baseline left). */
static void mk_panel_text(cairo_t *cr, double x, double y, const char *s)
{
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, x + 1, y + 1);
    cairo_show_text(cr, s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s);
}

static void mk_panel_draw_letters(cairo_t *cr, const mk_panel_tile *t, int plane)
{
    char l[4][2] = {{MK_PANEL_POS[MK_PANEL_X_W[plane]], 0},
                    {MK_PANEL_NEG[MK_PANEL_X_W[plane]], 0},
                    {MK_PANEL_POS[MK_PANEL_Y_W[plane]], 0},
                    {MK_PANEL_NEG[MK_PANEL_Y_W[plane]], 0}};
    cairo_text_extents_t e[4];
    for (int q = 0; q < 4; q++)
        cairo_text_extents(cr, l[q], &e[q]);
    double x = t->x, y = t->y, w = t->w, h = t->h, m = 3;
    cairo_save(cr);
    cairo_rectangle(cr, x, y, w, h);
    cairo_clip(cr);
    mk_panel_text(cr, x + m - e[0].x_bearing, y + h / 2 - e[0].y_bearing / 2, l[0]);
    mk_panel_text(cr, x + w - m - e[1].x_advance, y + h / 2 - e[1].y_bearing / 2, l[1]);
    mk_panel_text(cr, x + w / 2 - e[2].x_advance / 2, y + m - e[2].y_bearing, l[2]);
    mk_panel_text(cr, x + w / 2 - e[3].x_advance / 2, y + h - m - e[3].height - e[3].y_bearing,
                  l[3]);
    cairo_restore(cr);
}

static void mk_panel_draw_caption(cairo_t *cr, const mk_panel_tile *t, int plane, int y0)
{
    char cap[128];
    snprintf(cap, sizeof cap, "%s %c=%lld  (err %lld vox)", MK_PANEL_PLANE[plane], "ijk"[t->fixed],
             (long long)t -> slice, (long long)t -> errors);
    cairo_save(cr);
    cairo_rectangle(cr, t->x, y0, t->w, MK_PANEL_CAPTION);
    cairo_clip(cr);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    cairo_move_to(cr, t->x + 2, y0 + MK_PANEL_CAPTION - 4);
    cairo_show_text(cr, cap);
    cairo_restore(cr);
}

/* Everything of one tile: grey, fills, contours, letters, caption. */
static mk_status mk_panel_draw_tile(mk_ctx *ctx, cairo_t *cr, const mk_panel_tile *t, int plane,
                                    const mk_image *img, const mk_panel_lab *lr,
                                    const mk_panel_lab *lp, int nl, const int64_t st[3],
                                    const double w[2], int cap_y)
{
    mk_status stt = mk_panel_draw_grey(ctx, cr, t, img, st, w);
    if (stt != MK_OK)
        return stt;
    size_t n = (size_t)(t->nu * t->nv);
    uint16_t *rs = malloc(2 * n * sizeof *rs);
    unsigned char *present = malloc((size_t)nl + 1);
    if (!rs || !present) {
        free(rs);
        free(present);
        return mk_err(ctx, MK_ERR_NOMEM, "mk_panel: out of memory for a %lldx%lld slice",
                      (long long)t->nu, (long long)t->nv);
    }
    uint16_t *ps = rs + n;
    for (int64_t v = 0; v < t->nv; v++)
        for (int64_t u = 0; u < t->nu; u++) {
            int64_t idx = mk_panel_vox(t, st, u, v);
            mk_panel_lab_row(lr, idx, 1, &rs[v * t->nu + u]);
            mk_panel_lab_row(lp, idx, 1, &ps[v * t->nu + u]);
        }
    cairo_save(cr);
    cairo_rectangle(cr, t->x, t->y, t->w, t->h);
    cairo_clip(cr);
    mk_panel_draw_fill(cr, t, rs, ps, 0);
    mk_panel_draw_fill(cr, t, rs, ps, 1);
    /* a 3-px green reference under a 1-px magenta prediction on the same pixel line: where they
     * agree both show (magenta between green) */
    mk_panel_draw_contours(cr, t, rs, nl, present, 3, 0.1, 0.95, 0.2);
    mk_panel_draw_contours(cr, t, ps, nl, present, 1, 1.0, 0.1, 1.0);
    cairo_restore(cr);
    mk_panel_draw_letters(cr, t, plane);
    mk_panel_draw_caption(cr, t, plane, cap_y);
    free(rs);
    free(present);
    return MK_OK;
}

/* ---- PNG stream -------------------------------------------------------------------------- */

typedef struct mk_panel_buf {
    unsigned char *p;
    size_t n, cap;
    int nomem;
} mk_panel_buf;

static cairo_status_t mk_panel_write(void *closure, const unsigned char *data, unsigned int length)
{
    mk_panel_buf *b = closure;
    if (b->n + length > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + length)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->nomem = 1;
            return CAIRO_STATUS_WRITE_ERROR;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, length);
    b->n += length;
    return CAIRO_STATUS_SUCCESS;
}

/* ---- entry ------------------------------------------------------------------------------- */

mk_status mk_panel_render(mk_ctx *ctx, const mk_image *img, const mk_image *ref,
                          const mk_image *pred, const int64_t *labels, int nlabels,
                          const mk_panel_opts *o, unsigned char **png, size_t *len,
                          mk_panel_info *info)
{
    if (png)
        *png = NULL;
    if (len)
        *len = 0;
    if (!ref || !pred || !o || !png || !len)
        return mk_err(ctx, MK_ERR_INVALID,
                      "mk_panel: NULL reference, prediction, options or "
                      "output");
    mk_panel_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    mk_status st = mk_panel_validate(ctx, img, ref, pred, labels, nlabels, o);
    if (st != MK_OK)
        return st;

    const mk_image *grid = img ? img : ref;
    const int64_t d[3] = {grid->dim[0], grid->dim[1], grid->dim[2]};
    const int64_t strides[3] = {1, d[0], d[0] * d[1]};
    double win[2] = {o->window[0], o->window[1]};
    if (o->window_auto) {
        win[0] = 0;
        win[1] = 1;
        if (img && (st = mk_panel_window_auto(ctx, img, win)) != MK_OK)
            return st;
    }
    info->window[0] = win[0];
    info->window[1] = win[1];

    /* planes: voxel axis of each world axis (nearest, unique) and its sign */
    int wax[3], sgn[3], vax[3];
    mk_geom_axis_map(&grid->geom, wax, sgn);
    for (int c = 0; c < 3; c++)
        vax[wax[c]] = c;
    int any_flat = d[0] == 1 || d[1] == 1 || d[2] == 1;
    mk_panel_tile tiles[3];
    memset(tiles, 0, sizeof tiles);
    for (int p = 0; p < 3; p++) {
        mk_panel_tile *t = &tiles[p];
        t->fixed = vax[MK_PANEL_FIXED_W[p]];
        t->ax_u = vax[MK_PANEL_X_W[p]];
        t->ax_v = vax[MK_PANEL_Y_W[p]];
        t->flip_u = sgn[t->ax_u] > 0; /* screen runs towards L / P / I */
        t->flip_v = sgn[t->ax_v] > 0;
        t->nu = d[t->ax_u];
        t->nv = d[t->ax_v];
        t->present = !any_flat || d[t->fixed] == 1;
        t->slice = -1;
        info->axis[p] = t->fixed;
        info->slice[p] = -1;
    }

    /* one pass: per-slice disagreement and reference foreground along every voxel axis */
    mk_panel_lab lr, lp;
    memset(&lp, 0, sizeof lp);
    int64_t *counts = NULL;
    cairo_surface_t *surf = NULL;
    cairo_t *cr = NULL;
    mk_panel_buf buf = {NULL, 0, 0, 0};
    if ((st = mk_panel_lab_init(ctx, &lr, ref, labels, nlabels)) != MK_OK)
        return st;
    if ((st = mk_panel_lab_init(ctx, &lp, pred, labels, nlabels)) != MK_OK)
        goto done;
    counts = calloc((size_t)(2 * (d[0] + d[1] + d[2])), sizeof *counts);
    if (!counts) {
        st = mk_err(ctx, MK_ERR_NOMEM, "mk_panel: out of memory for slice counts");
        goto done;
    }
    int64_t *cnt[3] = {counts, counts + d[0], counts + d[0] + d[1]};
    int64_t *fg[3] = {cnt[2] + d[2], cnt[2] + d[2] + d[0], cnt[2] + d[2] + d[0] + d[1]};
    if ((st = mk_panel_count(ctx, &lr, &lp, d, cnt, fg)) != MK_OK)
        goto done;

    /* layout: tiles left to right, top aligned, captions on one strip below */
    int x = MK_PANEL_GAP, maxh = 0;
    for (int p = 0; p < 3; p++) {
        mk_panel_tile *t = &tiles[p];
        if (!t->present)
            continue;
        t->slice = mk_panel_pick(cnt[t->fixed], fg[t->fixed], d[t->fixed]);
        t->errors = cnt[t->fixed][t->slice];
        double wmm = (double)t->nu * grid->geom.spacing[t->ax_u];
        double hmm = (double)t->nv * grid->geom.spacing[t->ax_v];
        double sc = o->tile_px / fmax(wmm, hmm);
        t->w = (int)fmax(1, floor(wmm * sc + 0.5));
        t->h = (int)fmax(1, floor(hmm * sc + 0.5));
        t->x = x;
        t->y = MK_PANEL_GAP;
        x += t->w + MK_PANEL_GAP;
        if (t->h > maxh)
            maxh = t->h;
        info->slice[p] = t->slice;
        info->errors[p] = t->errors;
        info->tile_x[p] = t->x;
        info->tile_y[p] = t->y;
        info->tile_w[p] = t->w;
        info->tile_h[p] = t->h;
    }
    int width = x, height = MK_PANEL_GAP + maxh + MK_PANEL_CAPTION + 2;

    surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_status_t cs = cairo_surface_status(surf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = mk_panel_cairo_err(ctx, "output surface", cs);
        goto done;
    }
    cr = cairo_create(surf);
    if ((cs = cairo_status(cr)) != CAIRO_STATUS_SUCCESS) {
        st = mk_panel_cairo_err(ctx, "context", cs);
        goto done;
    }
    cairo_set_source_rgb(cr, 0.09, 0.09, 0.1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, MK_PANEL_FONT);
    for (int p = 0; p < 3; p++) {
        if (!tiles[p].present)
            continue;
        st = mk_panel_draw_tile(ctx, cr, &tiles[p], p, img, &lr, &lp, nlabels, strides, win,
                                MK_PANEL_GAP + maxh);
        if (st != MK_OK)
            goto done;
    }
    if ((cs = cairo_status(cr)) != CAIRO_STATUS_SUCCESS) {
        st = mk_panel_cairo_err(ctx, "drawing", cs);
        goto done;
    }
    cairo_surface_flush(surf);
    cs = cairo_surface_write_to_png_stream(surf, mk_panel_write, &buf);
    if (buf.nomem) {
        st = mk_err(ctx, MK_ERR_NOMEM, "mk_panel: out of memory for the PNG (%zu bytes so far)",
                    buf.n);
        goto done;
    }
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = mk_panel_cairo_err(ctx, "PNG encoding", cs);
        goto done;
    }
    *png = buf.p;
    *len = buf.n;
    buf.p = NULL;
    info->width = width;
    info->height = height;
    st = MK_OK;
done:
    if (cr)
        cairo_destroy(cr);
    if (surf)
        cairo_surface_destroy(surf);
    free(buf.p);
    free(counts);
    free(lr.lut);
    free(lp.lut);
    return st;
}
