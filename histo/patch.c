/* Patches read on demand (see mk_histo.h): region read at the grid's level, colour normalisation
 * (none, per-channel standardisation, Reinhard in CIE L*a*b*), the 8 dihedral transforms. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_histo.h"

static const char *const norm_names[MK_HISTO_NORM_COUNT] = {
    [MK_HISTO_NORM_NONE] = "none",
    [MK_HISTO_NORM_STANDARDIZE] = "standardize",
    [MK_HISTO_NORM_REINHARD] = "reinhard",
};

int mk_histo_norm_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < MK_HISTO_NORM_COUNT; i++)
        if (strcmp(name, norm_names[i]) == 0)
            return i;
    return -1;
}

const char *mk_histo_norm_name(mk_histo_norm n)
{
    return (int)n >= 0 && n < MK_HISTO_NORM_COUNT ? norm_names[n] : "?";
}

void mk_histo_read_defaults(mk_histo_read_opts *o)
{
    memset(o, 0, sizeof *o);
    o->norm = MK_HISTO_NORM_NONE;
    static const double mean[3] = {65.0, 25.0, -15.0}, sd[3] = {15.0, 10.0, 8.0};
    for (int c = 0; c < 3; c++) {
        o->target_mean[c] = mean[c];
        o->target_std[c] = sd[c];
    }
    o->dihedral = 0;
}

/* ---- colour: sRGB <-> CIE L*a*b* (D65) ------------------------------------------------------ */

#define XN 0.95047
#define YN 1.0
#define ZN 1.08883
#define LAB_D (6.0 / 29.0)

static double srgb_to_linear(double v)
{
    return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
}

static double linear_to_srgb(double v)
{
    return v <= 0.0031308 ? 12.92 * v : 1.055 * pow(v, 1.0 / 2.4) - 0.055;
}

static double lab_f(double t)
{
    return t > LAB_D * LAB_D * LAB_D ? cbrt(t) : t / (3 * LAB_D * LAB_D) + 4.0 / 29.0;
}

static double lab_finv(double t)
{
    return t > LAB_D ? t * t * t : 3 * LAB_D * LAB_D * (t - 4.0 / 29.0);
}

static void rgb8_to_lab(const uint8_t *p, double lab[3])
{
    double r = srgb_to_linear(p[0] / 255.0), g = srgb_to_linear(p[1] / 255.0),
           b = srgb_to_linear(p[2] / 255.0);
    double X = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b;
    double Y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
    double Z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b;
    double fx = lab_f(X / XN), fy = lab_f(Y / YN), fz = lab_f(Z / ZN);
    lab[0] = 116 * fy - 16;
    lab[1] = 500 * (fx - fy);
    lab[2] = 200 * (fy - fz);
}

/* L*a*b* to sRGB 0..255 (clamped) */
static void lab_to_rgb255(const double lab[3], double rgb[3])
{
    double fy = (lab[0] + 16) / 116, fx = fy + lab[1] / 500, fz = fy - lab[2] / 200;
    double X = XN * lab_finv(fx), Y = YN * lab_finv(fy), Z = ZN * lab_finv(fz);
    double lin[3] = {3.2404542 * X - 1.5371385 * Y - 0.4985314 * Z,
                     -0.9692660 * X + 1.8760108 * Y + 0.0415560 * Z,
                     0.0556434 * X - 0.2040259 * Y + 1.0572252 * Z};
    for (int c = 0; c < 3; c++) {
        double v = 255.0 * linear_to_srgb(lin[c]);
        rgb[c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
}

mk_status mk_histo_normalize(mk_ctx *ctx, const uint8_t *rgb, int size, const mk_histo_read_opts *o,
                             float *chw)
{
    if (size <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "normalise: patch size %d: expected > 0", size);
    const int64_t P = (int64_t)size * size;
    switch (o->norm) {
    case MK_HISTO_NORM_NONE:
        for (int64_t p = 0; p < P; p++)
            for (int c = 0; c < 3; c++)
                chw[c * P + p] = (float)(rgb[3 * p + c] / 255.0);
        return MK_OK;
    case MK_HISTO_NORM_STANDARDIZE:
        for (int c = 0; c < 3; c++) {
            double sum = 0, ss = 0;
            for (int64_t p = 0; p < P; p++)
                sum += rgb[3 * p + c] / 255.0;
            double mean = sum / (double)P;
            for (int64_t p = 0; p < P; p++) {
                double d = rgb[3 * p + c] / 255.0 - mean;
                ss += d * d;
            }
            double sd = sqrt(ss / (double)P);
            if (sd < 1e-6)
                sd = 1;
            for (int64_t p = 0; p < P; p++)
                chw[c * P + p] = (float)((rgb[3 * p + c] / 255.0 - mean) / sd);
        }
        return MK_OK;
    case MK_HISTO_NORM_REINHARD: {
        for (int c = 0; c < 3; c++)
            if (!(o->target_std[c] > 0 && isfinite(o->target_std[c]) &&
                  isfinite(o->target_mean[c])))
                return mk_err(ctx, MK_ERR_INVALID,
                              "normalise: Reinhard target of channel %d: mean %g, std %g: "
                              "expected finite numbers, std > 0",
                              c, o->target_mean[c], o->target_std[c]);
        /* three passes over the pixels (mean, std, mapping), the Lab values recomputed each
         * time rather than held (3 * size^2 doubles) */
        double mean[3] = {0, 0, 0}, ss[3] = {0, 0, 0}, lab[3];
        for (int64_t p = 0; p < P; p++) {
            rgb8_to_lab(rgb + 3 * p, lab);
            for (int c = 0; c < 3; c++)
                mean[c] += lab[c];
        }
        for (int c = 0; c < 3; c++)
            mean[c] /= (double)P;
        for (int64_t p = 0; p < P; p++) {
            rgb8_to_lab(rgb + 3 * p, lab);
            for (int c = 0; c < 3; c++)
                ss[c] += (lab[c] - mean[c]) * (lab[c] - mean[c]);
        }
        double sd[3];
        for (int c = 0; c < 3; c++) {
            sd[c] = sqrt(ss[c] / (double)P);
            if (sd[c] < 1e-6)
                sd[c] = 1;
        }
        for (int64_t p = 0; p < P; p++) {
            rgb8_to_lab(rgb + 3 * p, lab);
            for (int c = 0; c < 3; c++)
                lab[c] = (lab[c] - mean[c]) / sd[c] * o->target_std[c] + o->target_mean[c];
            double out[3];
            lab_to_rgb255(lab, out);
            for (int c = 0; c < 3; c++)
                chw[c * P + p] = (float)(out[c] / 255.0);
        }
        return MK_OK;
    }
    default:
        return mk_err(ctx, MK_ERR_INVALID, "normalise: unknown normalisation %d", (int)o->norm);
    }
}

/* ---- dihedral transforms -------------------------------------------------------------------- */

void mk_histo_dihedral(const float *in, float *out, int ch, int size, int d)
{
    const int64_t n = size, P = n * n;
    const int rot = d & 3, flip = (d & 4) != 0;
    for (int c = 0; c < ch; c++) {
        const float *src = in + c * P;
        float *dst = out + c * P;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                /* out = fliplr(rot90(in, rot)): undo the flip, then the rotation
                 * (rot90 once: r[i][j] = a[j][n-1-i]) */
                int64_t jj = flip ? n - 1 - j : j, si, sj;
                switch (rot) {
                case 0:
                    si = i;
                    sj = jj;
                    break;
                case 1:
                    si = jj;
                    sj = n - 1 - i;
                    break;
                case 2:
                    si = n - 1 - i;
                    sj = n - 1 - jj;
                    break;
                default:
                    si = n - 1 - jj;
                    sj = i;
                    break;
                }
                dst[i * n + j] = src[si * n + sj];
            }
    }
}

/* ---- reading -------------------------------------------------------------------------------- */

mk_status mk_histo_read_patch(mk_ctx *ctx, mk_tiff_slide *s, const mk_histo_grid *g, int64_t i,
                              const mk_histo_read_opts *o, float *chw)
{
    const char *path = mk_tiff_path(s);
    if (i < 0 || i >= g->n)
        return mk_err(ctx, MK_ERR_INVALID, "%s: patch index %lld out of range (the grid has %lld)",
                      path, (long long)i, (long long)g->n);
    if (o->dihedral < 0 || o->dihedral > 7)
        return mk_err(ctx, MK_ERR_INVALID, "%s: dihedral transform %d: expected 0..7", path,
                      o->dihedral);
    if (g->size <= 0 || g->size > 8192 || !(g->downsample > 0))
        return mk_err(ctx, MK_ERR_INVALID, "%s: grid with patch size %d, downsample %g", path,
                      g->size, g->downsample);
    mk_tiff_level L;
    mk_status st = mk_tiff_level_info(ctx, s, g->level, &L);
    if (st != MK_OK)
        return st;
    if (L.width != g->level_w || L.height != g->level_h)
        return mk_err(ctx, MK_ERR_GEOMETRY,
                      "%s: level %d is %lld x %lld px, the grid was cut from a level of %lld x "
                      "%lld (grid of %s)",
                      path, g->level, (long long)L.width, (long long)L.height,
                      (long long)g->level_w, (long long)g->level_h, g->slide ? g->slide : "?");
    int64_t x = (int64_t)llround((double)g->xy[2 * i] / g->downsample);
    int64_t y = (int64_t)llround((double)g->xy[2 * i + 1] / g->downsample);
    const int64_t P = (int64_t)g->size * g->size;
    uint8_t *rgb = malloc((size_t)P * 3);
    float *tmp = o->dihedral ? malloc((size_t)P * 3 * sizeof *tmp) : NULL;
    if (!rgb || (o->dihedral && !tmp)) {
        free(rgb);
        free(tmp);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for a patch of %d px", path, g->size);
    }
    st = mk_tiff_read_region(ctx, s, g->level, x, y, g->size, g->size, rgb);
    if (st == MK_OK)
        st = mk_histo_normalize(ctx, rgb, g->size, o, tmp ? tmp : chw);
    if (st == MK_OK && tmp)
        mk_histo_dihedral(tmp, chw, 3, g->size, o->dihedral);
    if (st != MK_OK && ctx && !strstr(mk_ctx_errmsg(ctx), path))
        mk_err_prefix(ctx, "%s: patch %lld", path, (long long)i);
    free(rgb);
    free(tmp);
    return st;
}
