/* medkd geometry operations (see mk_resample.h). */
#include "mk_resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mk_nifti.h"

int mk_interp_parse(const char *name)
{
    if (!strcmp(name, "nearest"))
        return MK_INTERP_NEAREST;
    if (!strcmp(name, "linear"))
        return MK_INTERP_LINEAR;
    if (!strcmp(name, "label"))
        return MK_INTERP_LABEL;
    return -1;
}

static int64_t vol_count(const mk_image *img)
{
    return img->dim[3] * img->dim[4];
}

static void rebuild_meta(mk_image *img, const mk_image *in)
{
    if (in->nifti.present) {
        mk_nifti_meta_from_geom(&img->geom, in->nifti.qform_code, in->nifti.sform_code,
                                &img->nifti);
        img->nifti.toffset = in->nifti.toffset;
        img->nifti.time_units = in->nifti.time_units;
        img->nifti.xyz_units = in->nifti.xyz_units ? in->nifti.xyz_units : img->nifti.xyz_units;
    } else {
        memset(&img->nifti, 0, sizeof img->nifti);
    }
}

/* ---- reorientation -------------------------------------------------------------------------- */

static mk_status parse_code(mk_ctx *ctx, const char *code, int world[3], int sign[3])
{
    static const char *POS = "RAS", *NEG = "LPI";
    int used[3] = {0, 0, 0};
    if (!code || strlen(code) != 3)
        return mk_err(ctx, MK_ERR_INVALID,
                      "orientation code: expected 3 letters like RAS or LPS, got '%s'",
                      code ? code : "(null)");
    for (int a = 0; a < 3; a++) {
        char ch = code[a];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        const char *p = strchr(POS, ch), *n = strchr(NEG, ch);
        if (!ch || (!p && !n))
            return mk_err(ctx, MK_ERR_INVALID,
                          "orientation code: expected letters R/L, A/P, S/I, got '%s'", code);
        world[a] = (int)(p ? p - POS : n - NEG);
        sign[a] = p ? 1 : -1;
        if (used[world[a]]++)
            return mk_err(ctx, MK_ERR_INVALID,
                          "orientation code: expected each axis once, got '%s'", code);
    }
    return MK_OK;
}

/* out axis a takes input axis src[a], flipped when flip[a]. */
static mk_status permute(mk_ctx *ctx, const mk_image *in, const int src[3], const int flip[3],
                         mk_image **out)
{
    int64_t dim[MK_IMAGE_MAX_DIMS];
    for (int d = 0; d < MK_IMAGE_MAX_DIMS; d++)
        dim[d] = in->dim[d];
    for (int a = 0; a < 3; a++)
        dim[a] = in->dim[src[a]];
    int ndim = in->ndim < 3 ? 3 : in->ndim;
    mk_status st = mk_image_new(ctx, in->dtype, ndim, dim, out);
    if (st != MK_OK)
        return st;
    mk_image *o = *out;
    o->intent_code = in->intent_code;
    memcpy(o->descrip, in->descrip, sizeof o->descrip);
    /* geometry: column a = +-column src[a]; origin = world position of the new voxel 0 */
    o->geom = in->geom;
    double start[3];
    for (int a = 0; a < 3; a++) {
        int c = src[a];
        o->geom.spacing[a] = in->geom.spacing[c];
        for (int r = 0; r < 3; r++)
            o->geom.direction[r * 3 + a] = (flip[a] ? -1.0 : 1.0) * in->geom.direction[r * 3 + c];
    }
    int64_t idx0[3] = {0, 0, 0};
    for (int a = 0; a < 3; a++)
        idx0[src[a]] = flip[a] ? in->dim[src[a]] - 1 : 0;
    for (int r = 0; r < 3; r++) {
        start[r] = in->geom.origin[r];
        for (int c = 0; c < 3; c++)
            start[r] += in->geom.direction[r * 3 + c] * in->geom.spacing[c] * (double)idx0[c];
        o->geom.origin[r] = start[r];
    }
    rebuild_meta(o, in);
    /* voxels: input strides per output axis */
    int64_t istr[3] = {1, in->dim[0], in->dim[0] * in->dim[1]};
    int64_t step[3], base = 0;
    for (int a = 0; a < 3; a++) {
        step[a] = flip[a] ? -istr[src[a]] : istr[src[a]];
        base += idx0[src[a]] * istr[src[a]];
    }
    size_t es = mk_dtype_size(in->dtype);
    int64_t nv3 = in->dim[0] * in->dim[1] * in->dim[2];
    const unsigned char *ip = in->data;
    unsigned char *op = o->data;
    for (int64_t v = 0; v < vol_count(in); v++) {
        int64_t q = v * nv3;
        for (int64_t k = 0; k < dim[2]; k++)
            for (int64_t j = 0; j < dim[1]; j++) {
                int64_t s = base + k * step[2] + j * step[1];
                for (int64_t i = 0; i < dim[0]; i++, q++, s += step[0])
                    memcpy(op + (size_t)q * es, ip + (size_t)(v * nv3 + s) * es, es);
            }
    }
    mk_image_assert_valid(o);
    return MK_OK;
}

mk_status mk_reorient(mk_ctx *ctx, const mk_image *in, const char *code, mk_image **out)
{
    *out = NULL;
    mk_image_assert_valid(in);
    int tw[3], ts[3];
    mk_status st = parse_code(ctx, code, tw, ts);
    if (st != MK_OK)
        return st;
    int iw[3], is[3];
    mk_geom_axis_map(&in->geom, iw, is);
    int src[3], flip[3];
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            if (iw[c] == tw[a]) {
                src[a] = c;
                flip[a] = is[c] != ts[a];
            }
    return permute(ctx, in, src, flip, out);
}

mk_status mk_reorient_to(mk_ctx *ctx, const mk_image *in, const mk_image *ref, mk_image **out)
{
    *out = NULL;
    char code[4];
    mk_geom_orient_code(&ref->geom, code);
    mk_status st = mk_reorient(ctx, in, code, out);
    if (st != MK_OK)
        return st;
    if (!mk_geom_same_grid(*out, ref, 1e-4)) {
        mk_image_free(*out);
        *out = NULL;
        return mk_err(ctx, MK_ERR_GEOMETRY,
                      "reorient back: the image is not a reorientation of the "
                      "reference grid (dims, spacing, origin or direction differ)");
    }
    (*out)->geom = ref->geom;
    (*out)->nifti = ref->nifti;
    return MK_OK;
}

/* ---- resampling ----------------------------------------------------------------------------- */

static void inv4(const double m[4][4], double r[4][4])
{
    /* affine inverse: [R t; 0 1]^-1 = [R^-1, -R^-1 t] */
    double a = m[0][0], b = m[0][1], c = m[0][2], d = m[1][0], e = m[1][1], f = m[1][2],
           g = m[2][0], h = m[2][1], k = m[2][2];
    double det = a * (e * k - f * h) - b * (d * k - f * g) + c * (d * h - e * g);
    double R[3][3] = {{(e * k - f * h) / det, (c * h - b * k) / det, (b * f - c * e) / det},
                      {(f * g - d * k) / det, (a * k - c * g) / det, (c * d - a * f) / det},
                      {(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det}};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            r[i][j] = R[i][j];
        r[i][3] = -(R[i][0] * m[0][3] + R[i][1] * m[1][3] + R[i][2] * m[2][3]);
    }
    r[3][0] = r[3][1] = r[3][2] = 0;
    r[3][3] = 1;
}

static double clampd(double x, double hi)
{
    return x < 0 ? 0 : x > hi ? hi : x;
}

mk_status mk_resample_like(mk_ctx *ctx, const mk_image *in, const mk_image *grid, mk_interp interp,
                           mk_image **out)
{
    return mk_resample_like_ex(ctx, in, grid, interp, MK_OUTSIDE_CLAMP, out);
}

mk_status mk_resample_like_ex(mk_ctx *ctx, const mk_image *in, const mk_image *grid,
                              mk_interp interp, mk_outside outside, mk_image **out)
{
    *out = NULL;
    mk_image_assert_valid(in);
    MK_ASSERT(in->data != NULL);
    if (in->dtype == MK_DT_RGB24 && interp != MK_INTERP_NEAREST)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "resample: rgb24 images support nearest interpolation only");
    int64_t dim[MK_IMAGE_MAX_DIMS] = {grid->dim[0], grid->dim[1], grid->dim[2], in->dim[3],
                                      in->dim[4]};
    int ndim = in->ndim < 3 ? 3 : in->ndim;
    mk_status st = mk_image_new(ctx, in->dtype, ndim, dim, out);
    if (st != MK_OK)
        return st;
    mk_image *o = *out;
    o->geom = grid->geom;
    o->geom.tr = in->geom.tr;
    o->intent_code = in->intent_code;
    memcpy(o->descrip, in->descrip, sizeof o->descrip);
    if (grid->nifti.present)
        o->nifti = grid->nifti;
    else
        rebuild_meta(o, in);

    double ai[4][4], ao[4][4], ii[4][4], M[3][4];
    mk_geom_affine_lps(&in->geom, ai);
    mk_geom_affine_lps(&o->geom, ao);
    inv4(ai, ii);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            M[r][c] = ii[r][0] * ao[0][c] + ii[r][1] * ao[1][c] + ii[r][2] * ao[2][c] +
                      (c == 3 ? ii[r][3] : 0);

    const int64_t nx = in->dim[0], ny = in->dim[1], nz = in->dim[2];
    const int64_t onx = dim[0], ony = dim[1], onz = dim[2];
    const int64_t inv3 = nx * ny * nz, onv3 = onx * ony * onz;
    const size_t es = mk_dtype_size(in->dtype);
    const int integer = mk_dtype_is_int(in->dtype);
    for (int64_t v = 0; v < vol_count(in); v++) {
        mk_image src = *in, dst = *o;
        src.data = (unsigned char *)in->data + (size_t)(v * inv3) * es;
        dst.data = (unsigned char *)o->data + (size_t)(v * onv3) * es;
        for (int64_t k = 0; k < onz; k++) {
            if (ctx && ctx->cancel) {
                mk_image_free(o);
                *out = NULL;
                return mk_err(ctx, MK_ERR_ABORTED, "resample: cancelled");
            }
            for (int64_t j = 0; j < ony; j++) {
                int64_t q = onx * (j + ony * k);
                for (int64_t i = 0; i < onx; i++, q++) {
                    double c[3];
                    for (int r = 0; r < 3; r++)
                        c[r] = M[r][0] * (double)i + M[r][1] * (double)j + M[r][2] * (double)k +
                               M[r][3];
                    if (outside == MK_OUTSIDE_ZERO &&
                        (c[0] < -0.5 || c[0] >= (double)nx - 0.5 || c[1] < -0.5 ||
                         c[1] >= (double)ny - 0.5 || c[2] < -0.5 || c[2] >= (double)nz - 0.5)) {
                        memset((unsigned char *)dst.data + (size_t)q * es, 0, es);
                        continue;
                    }
                    double x = clampd(c[0], (double)(nx - 1)), y = clampd(c[1], (double)(ny - 1)),
                           z = clampd(c[2], (double)(nz - 1));
                    if (interp == MK_INTERP_NEAREST) {
                        int64_t s = (int64_t)floor(x + 0.5) +
                                    nx * ((int64_t)floor(y + 0.5) + ny * (int64_t)floor(z + 0.5));
                        memcpy((unsigned char *)dst.data + (size_t)q * es,
                               (unsigned char *)src.data + (size_t)s * es, es);
                        continue;
                    }
                    int64_t x0 = (int64_t)floor(x), y0 = (int64_t)floor(y), z0 = (int64_t)floor(z);
                    int64_t x1 = x0 + 1 < nx ? x0 + 1 : x0, y1 = y0 + 1 < ny ? y0 + 1 : y0,
                            z1 = z0 + 1 < nz ? z0 + 1 : z0;
                    double fx = x - (double)x0, fy = y - (double)y0, fz = z - (double)z0;
                    int64_t idx[8] = {x0 + nx * (y0 + ny * z0), x1 + nx * (y0 + ny * z0),
                                      x0 + nx * (y1 + ny * z0), x1 + nx * (y1 + ny * z0),
                                      x0 + nx * (y0 + ny * z1), x1 + nx * (y0 + ny * z1),
                                      x0 + nx * (y1 + ny * z1), x1 + nx * (y1 + ny * z1)};
                    double w[8] = {(1 - fx) * (1 - fy) * (1 - fz),
                                   fx * (1 - fy) * (1 - fz),
                                   (1 - fx) * fy * (1 - fz),
                                   fx * fy * (1 - fz),
                                   (1 - fx) * (1 - fy) * fz,
                                   fx * (1 - fy) * fz,
                                   (1 - fx) * fy * fz,
                                   fx * fy * fz};
                    if (interp == MK_INTERP_LINEAR) {
                        double s = 0;
                        for (int n = 0; n < 8; n++)
                            if (w[n] != 0)
                                s += w[n] * mk_image_get(&src, idx[n]);
                        mk_image_set(&dst, q, s);
                    } else {
                        /* per-label: accumulate the weight of each distinct label of the 8 */
                        double lab[8], lw[8];
                        int nl = 0;
                        for (int n = 0; n < 8; n++) {
                            double l = mk_image_get(&src, idx[n]);
                            int f = 0;
                            for (int m = 0; m < nl; m++)
                                if (lab[m] == l) {
                                    lw[m] += w[n];
                                    f = 1;
                                }
                            if (!f) {
                                lab[nl] = l;
                                lw[nl++] = w[n];
                            }
                        }
                        int best = 0;
                        for (int m = 1; m < nl; m++)
                            if (lw[m] > lw[best] + 1e-12 ||
                                (fabs(lw[m] - lw[best]) <= 1e-12 && lab[m] < lab[best]))
                                best = m;
                        mk_image_set(&dst, q, lab[best]);
                    }
                }
            }
            mk_progress(ctx, "resample", v * onz + k + 1, vol_count(in) * onz, "slices", NULL);
        }
    }
    (void)integer;
    mk_image_assert_valid(o);
    return MK_OK;
}

mk_status mk_resample_spacing(mk_ctx *ctx, const mk_image *in, const double spacing[3],
                              mk_interp interp, mk_image **out)
{
    *out = NULL;
    mk_image grid;
    memset(&grid, 0, sizeof grid);
    grid.dtype = in->dtype;
    grid.ndim = 3;
    grid.geom = in->geom;
    for (int d = 0; d < MK_IMAGE_MAX_DIMS; d++)
        grid.dim[d] = 1;
    for (int d = 0; d < 3; d++) {
        if (!(spacing[d] > 0) || !isfinite(spacing[d]))
            return mk_err(ctx, MK_ERR_INVALID,
                          "resample: field spacing[%d]: expected a finite value > 0, got %g", d,
                          spacing[d]);
        double n = nearbyint((double)in->dim[d] * in->geom.spacing[d] / spacing[d]);
        grid.dim[d] = n < 1 ? 1 : (int64_t)n;
        grid.geom.spacing[d] = spacing[d];
    }
    int64_t nv;
    mk_status st = mk_dims_check(ctx, "resample", 3, grid.dim, &nv);
    if (st != MK_OK)
        return st;
    st = mk_resample_like(ctx, in, &grid, interp, out);
    if (st == MK_OK)
        rebuild_meta(*out, in);
    return st;
}
