/* Histology phantom: H&E-like brightfield slide.
 *
 * Rendering follows the Beer-Lambert stain model used by colour deconvolution: each pixel holds a
 * hematoxylin and an eosin concentration, and RGB = 255 exp(-(cH h + cE e + bg)) with stain
 * optical-density vectors h, e. Stroma is eosin (pink) with a fibrous texture, nuclei are
 * hematoxylin ellipses (purple), the background is glass (white). Tumour regions have denser,
 * larger, darker and more elongated nuclei. Site B perturbs the stain vectors (domain shift). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phantom_internal.h"

#define LOWRES 8 /* the tissue and tumour fields are drawn at 1/8 resolution and interpolated */

static double U(mk_phantom_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * mk_phantom_rng_uniform(r);
}

static double bilinear(const float *f, int lw, int lh, double x, double y)
{
    x = mk__ph_clamp(x, 0, lw - 1.000001);
    y = mk__ph_clamp(y, 0, lh - 1.000001);
    int x0 = (int)x, y0 = (int)y;
    double fx = x - x0, fy = y - y0;
    const float *r0 = f + (size_t)y0 * lw, *r1 = r0 + lw;
    return (1 - fy) * ((1 - fx) * r0[x0] + fx * r0[x0 + 1]) +
           fy * ((1 - fx) * r1[x0] + fx * r1[x0 + 1]);
}

static void normalise3(double v[3])
{
    double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (int a = 0; a < 3; a++)
        v[a] /= n;
}

mk_status mk_phantom_slide(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                           int index, mk_image **rgb, mk_image **mask, mk_phantom_info *info)
{
    *rgb = NULL;
    *mask = NULL;
    mk_status st = mk_phantom_params_check(ctx, p);
    if (st != MK_OK)
        return st;
    if (p->kind != MK_PHANTOM_HISTO)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: slides are made by kind histo, not %s",
                      mk_phantom_kind_name(p->kind));
    if (dom != MK_PHANTOM_DOMAIN_SITE_A && dom != MK_PHANTOM_DOMAIN_SITE_B)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: histo domains are siteA and siteB, got %s",
                      mk_phantom_domain_name(dom));
    if (index < 0)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: case index must be >= 0, got %d", index);
    mk_phantom_info tmp;
    if (!info)
        info = &tmp;
    memset(info, 0, sizeof *info);

    mk_phantom_rng r;
    mk_phantom_rng_seed(&r, p->seed, mk_phantom_case_stream(p->kind, dom, index));
    const int W = p->size[0], Hh = p->size[1];
    const int lw = W / LOWRES + 2, lh = Hh / LOWRES + 2;
    size_t np = (size_t)W * (size_t)Hh, nl = (size_t)lw * (size_t)lh;

    mk_image *im = NULL, *mk = NULL;
    float *tis_f = NULL, *tum_f = NULL, *cH = NULL, *cE = NULL, *fib = NULL;
    int64_t dims[2] = {W, Hh};
    if ((st = mk_image_new(ctx, MK_DT_RGB24, 2, dims, &im)) != MK_OK)
        return st;
    im->geom.spacing[0] = im->geom.spacing[1] = 0.001; /* 1 um pixels */
    im->geom.spacing[2] = 1.0;
    snprintf(im->descrip, sizeof im->descrip, "medkd phantom histo %s case %d",
             mk_phantom_domain_name(dom), index);
    if ((st = mk_image_new_like(ctx, im, MK_DT_UINT8, &mk)) != MK_OK)
        goto fail;
    tis_f = malloc(nl * sizeof *tis_f);
    tum_f = malloc(nl * sizeof *tum_f);
    cH = malloc(np * sizeof *cH);
    cE = malloc(np * sizeof *cE);
    fib = malloc(np * sizeof *fib);
    if (!tis_f || !tum_f || !cH || !cE || !fib) {
        st = mk_err(ctx, MK_ERR_NOMEM, "phantom: out of memory for a %dx%d slide", W, Hh);
        goto fail;
    }

    /* tissue: a blob around the slide centre with a noisy outline */
    int nlow[3] = {lw, lh, 1}, rlow[3] = {6, 6, 0};
    if ((st = mk__ph_smooth_noise(ctx, &r, nlow, rlow, tis_f)) != MK_OK)
        goto fail;
    double ca = U(&r, 0.36, 0.46) * lw, cb = U(&r, 0.36, 0.46) * lh;
    double ccx = lw * U(&r, 0.45, 0.55), ccy = lh * U(&r, 0.45, 0.55);
    for (int y = 0; y < lh; y++)
        for (int x = 0; x < lw; x++) {
            double dx = (x - ccx) / ca, dy = (y - ccy) / cb;
            float *t = &tis_f[(size_t)y * lw + x];
            *t = (float)(1.0 - sqrt(dx * dx + dy * dy) + 0.25 * *t);
        }
    /* tumour: 0-3 Gaussian blobs inside the tissue, roughened by noise */
    if ((st = mk__ph_smooth_noise(ctx, &r, nlow, rlow, tum_f)) != MK_OK)
        goto fail;
    int ntum = mk_phantom_rng_uniform(&r) < 0.8 ? 1 + (int)(mk_phantom_rng_u64(&r) % 3) : 0;
    double bx[3] = {0}, by[3] = {0}, br[3] = {0};
    for (int b = 0; b < ntum; b++) {
        for (int tries = 0; tries < 100; tries++) {
            bx[b] = U(&r, 0.15, 0.85) * lw;
            by[b] = U(&r, 0.15, 0.85) * lh;
            if (bilinear(tis_f, lw, lh, bx[b], by[b]) > 0.35)
                break;
        }
        br[b] = U(&r, 0.07, 0.15) * (lw + lh) * 0.5;
    }
    for (int y = 0; y < lh; y++)
        for (int x = 0; x < lw; x++) {
            double g = 0;
            for (int b = 0; b < ntum; b++) {
                double dx = (x - bx[b]) / br[b], dy = (y - by[b]) / br[b];
                g += exp(-0.5 * (dx * dx + dy * dy));
            }
            float *t = &tum_f[(size_t)y * lw + x];
            *t = (float)(ntum ? g + 0.2 * *t : -1.0);
        }
    /* region mask at full resolution */
    uint8_t *M = mk->data;
    int64_t n_tis = 0, n_tum = 0;
    for (int y = 0; y < Hh; y++)
        for (int x = 0; x < W; x++) {
            double lx = (x + 0.5) / LOWRES, ly = (y + 0.5) / LOWRES;
            uint8_t m = 0;
            if (bilinear(tis_f, lw, lh, lx, ly) > 0)
                m = bilinear(tum_f, lw, lh, lx, ly) > 0.55 ? 2 : 1;
            M[(size_t)y * W + x] = m;
            n_tis += m > 0;
            n_tum += m == 2;
        }
    /* stroma: eosin with fibres (noise blurred mostly along one axis) */
    int nf[3] = {W, Hh, 1}, rfib[3] = {5, 1, 0};
    if ((st = mk__ph_smooth_noise(ctx, &r, nf, rfib, fib)) != MK_OK)
        goto fail;
    for (size_t q = 0; q < np; q++) {
        if (M[q] == 0) {
            cH[q] = 0;
            cE[q] = 0;
        } else {
            cE[q] = (float)mk__ph_clamp(0.55 + 0.15 * fib[q], 0.1, 1.2);
            cH[q] = (float)(M[q] == 2 ? 0.12 : 0.05);
        }
    }
    /* nuclei */
    double excess = p->contrast; /* 0: tumour nuclei look like normal ones */
    double area = (double)n_tis;
    double dens_n = 0.0012, dens_t = 0.0012 + 0.0023 * excess;
    long n_try = (long)(area * (dens_t > dens_n ? dens_t : dens_n));
    for (long q = 0; q < n_try; q++) {
        double x = U(&r, 0, W), y = U(&r, 0, Hh);
        int m = M[(size_t)y * W + (size_t)x];
        double keep = m == 2 ? dens_t : m == 1 ? dens_n : 0.0;
        double u = mk_phantom_rng_uniform(&r);
        double rad, elong, h, ang = U(&r, 0, M_PI);
        if (m == 2) {
            rad = U(&r, 3.2, 4.2) * (1.0 + 0.45 * excess * U(&r, 0.8, 1.2));
            elong = U(&r, 1.0, 1.0 + 0.5 * excess + 0.1);
            h = U(&r, 0.9, 1.1) * (1.0 + 0.3 * excess);
        } else {
            rad = U(&r, 3.0, 4.2);
            elong = U(&r, 1.0, 1.3);
            h = U(&r, 0.85, 1.1);
        }
        if (u * (dens_t > dens_n ? dens_t : dens_n) >= keep)
            continue; /* thinning: the draws above keep the stream aligned */
        double ra = rad * elong, rb = rad / elong;
        double c = cos(ang), s = sin(ang);
        int x0 = (int)floor(x - ra - 2), x1 = (int)ceil(x + ra + 2);
        int y0 = (int)floor(y - ra - 2), y1 = (int)ceil(y + ra + 2);
        for (int yy = y0 > 0 ? y0 : 0; yy <= y1 && yy < Hh; yy++)
            for (int xx = x0 > 0 ? x0 : 0; xx <= x1 && xx < W; xx++) {
                double dx = xx + 0.5 - x, dy = yy + 0.5 - y;
                double a = (c * dx + s * dy) / ra, b = (-s * dx + c * dy) / rb;
                double d = sqrt(a * a + b * b);
                double cov = mk__ph_clamp((1.0 - d) * rad + 0.5, 0, 1);
                if (cov <= 0)
                    continue;
                size_t qq = (size_t)yy * W + xx;
                /* chromatin: darker rim and speckle */
                double hv = h * (0.85 + 0.25 * d) * (1.0 + 0.15 * fib[qq]);
                cH[qq] = (float)(cH[qq] * (1 - cov) + hv * cov);
                cE[qq] = (float)(cE[qq] * (1 - 0.7 * cov));
            }
    }
    /* stains: Ruifrok-Johnston hematoxylin OD vector and a pinker eosin one, perturbed per site and
     * a little per slide */
    double hv[3] = {0.650, 0.704, 0.286}, ev[3] = {0.13, 0.85, 0.50};
    double sh = dom == MK_PHANTOM_DOMAIN_SITE_B ? p->shift : 0.0;
    double dh[3] = {-0.15, 0.10, 0.25}, de[3] = {0.25, -0.10, 0.20};
    for (int a = 0; a < 3; a++) {
        hv[a] += sh * dh[a] + 0.03 * mk_phantom_rng_normal(&r);
        ev[a] += sh * de[a] + 0.03 * mk_phantom_rng_normal(&r);
        hv[a] = hv[a] < 0.01 ? 0.01 : hv[a];
        ev[a] = ev[a] < 0.01 ? 0.01 : ev[a];
    }
    normalise3(hv);
    normalise3(ev);
    double hs = 1.0 + 0.25 * sh, es = 1.0 - 0.2 * sh;
    uint8_t *out = im->data;
    for (size_t q = 0; q < np; q++) {
        double bg = 0.03 + 0.01 * mk__ph_fast_normal(&r);
        for (int a = 0; a < 3; a++) {
            double od = hs * cH[q] * hv[a] + es * cE[q] * ev[a] + bg;
            double val = 255.0 * exp(-od) + 1.5 * p->noise * mk__ph_fast_normal(&r);
            out[3 * q + a] = (uint8_t)lrint(mk__ph_clamp(val, 0, 255));
        }
    }
    info->hard = n_tum > 0;
    info->fg_voxels = n_tum;
    info->fg_ml = n_tis ? (double)n_tum / (double)n_tis : 0.0;
    free(tis_f);
    free(tum_f);
    free(cH);
    free(cE);
    free(fib);
    *rgb = im;
    *mask = mk;
    return MK_OK;
fail:
    free(tis_f);
    free(tum_f);
    free(cH);
    free(cE);
    free(fib);
    mk_image_free(im);
    mk_image_free(mk);
    return st;
}
