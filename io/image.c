/* medkd image type: allocation, voxel access, geometry helpers (see mk_image.h). */
#include "mk_image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} MK_DTYPES[MK_DT_COUNT] = {
    [MK_DT_UINT8] = {"uint8", 1},     [MK_DT_INT8] = {"int8", 1},
    [MK_DT_UINT16] = {"uint16", 2},   [MK_DT_INT16] = {"int16", 2},
    [MK_DT_UINT32] = {"uint32", 4},   [MK_DT_INT32] = {"int32", 4},
    [MK_DT_UINT64] = {"uint64", 8},   [MK_DT_INT64] = {"int64", 8},
    [MK_DT_FLOAT32] = {"float32", 4}, [MK_DT_FLOAT64] = {"float64", 8},
    [MK_DT_RGB24] = {"rgb24", 3},
};
_Static_assert(sizeof MK_DTYPES / sizeof MK_DTYPES[0] == MK_DT_COUNT, "dtype table incomplete");

size_t mk_dtype_size(mk_dtype t)
{
    return (unsigned)t < MK_DT_COUNT ? MK_DTYPES[t].size : 0;
}

const char *mk_dtype_name(mk_dtype t)
{
    return (unsigned)t < MK_DT_COUNT ? MK_DTYPES[t].name : "invalid";
}

int mk_dtype_parse(const char *name)
{
    for (int i = 0; i < MK_DT_COUNT; i++)
        if (strcmp(MK_DTYPES[i].name, name) == 0)
            return i;
    return -1;
}

int mk_dtype_is_int(mk_dtype t)
{
    return t != MK_DT_FLOAT32 && t != MK_DT_FLOAT64 && t != MK_DT_RGB24 &&
           (unsigned)t < MK_DT_COUNT;
}

int64_t mk_image_nvox(const mk_image *img)
{
    int64_t n = 1;
    for (int d = 0; d < MK_IMAGE_MAX_DIMS; d++)
        n *= img->dim[d];
    return n;
}

void mk_geom_identity(mk_geom *g)
{
    memset(g, 0, sizeof *g);
    for (int i = 0; i < 3; i++) {
        g->spacing[i] = 1.0;
        g->direction[i * 3 + i] = 1.0;
    }
}

mk_status mk_dims_check(mk_ctx *ctx, const char *what, int ndim, const int64_t *dim, int64_t *nvox)
{
    if (ndim < 1 || ndim > MK_IMAGE_MAX_DIMS)
        return mk_err(ctx, MK_ERR_INVALID, "%s: field ndim: expected 1..%d, got %d", what,
                      MK_IMAGE_MAX_DIMS, ndim);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (dim[d] <= 0)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: field dim[%d]: expected > 0, got %lld", what,
                          d + 1, (long long)dim[d]);
        if (dim[d] > MK_IMAGE_MAX_VOXELS || n > MK_IMAGE_MAX_VOXELS / dim[d])
            return mk_err(ctx, MK_ERR_NOMEM,
                          "%s: field dim: expected a voxel count <= %lld, got a product over it "
                          "(dim[%d] = %lld)",
                          what, (long long)MK_IMAGE_MAX_VOXELS, d + 1, (long long)dim[d]);
        n *= dim[d];
    }
    if (nvox)
        *nvox = n;
    return MK_OK;
}

mk_status mk_image_new(mk_ctx *ctx, mk_dtype dtype, int ndim, const int64_t *dim, mk_image **out)
{
    *out = NULL;
    if ((unsigned)dtype >= MK_DT_COUNT)
        return mk_err(ctx, MK_ERR_INVALID, "image: field dtype: expected 0..%d, got %d",
                      MK_DT_COUNT - 1, (int)dtype);
    int64_t nvox;
    mk_status st = mk_dims_check(ctx, "image", ndim, dim, &nvox);
    if (st != MK_OK)
        return st;
    mk_image *img = calloc(1, sizeof *img);
    if (!img)
        return mk_err(ctx, MK_ERR_NOMEM, "image: out of memory");
    img->dtype = dtype;
    img->ndim = ndim;
    for (int d = 0; d < MK_IMAGE_MAX_DIMS; d++)
        img->dim[d] = d < ndim ? dim[d] : 1;
    mk_geom_identity(&img->geom);
    img->data = calloc((size_t)nvox, mk_dtype_size(dtype));
    if (!img->data) {
        free(img);
        return mk_err(ctx, MK_ERR_NOMEM, "image: out of memory for %lld voxels of %s",
                      (long long)nvox, mk_dtype_name(dtype));
    }
    *out = img;
    return MK_OK;
}

mk_status mk_image_new_like(mk_ctx *ctx, const mk_image *ref, mk_dtype dtype, mk_image **out)
{
    mk_image_assert_valid(ref);
    int ndim = ref->ndim < 3 ? ref->ndim : 3;
    mk_status st = mk_image_new(ctx, dtype, ndim, ref->dim, out);
    if (st != MK_OK)
        return st;
    (*out)->geom = ref->geom;
    (*out)->geom.tr = 0;
    (*out)->nifti = ref->nifti;
    (*out)->intent_code = 0;
    return MK_OK;
}

mk_status mk_image_clone(mk_ctx *ctx, const mk_image *src, mk_image **out)
{
    mk_image_assert_valid(src);
    mk_status st = mk_image_new(ctx, src->dtype, src->ndim, src->dim, out);
    if (st != MK_OK)
        return st;
    void *data = (*out)->data;
    **out = *src;
    (*out)->data = data;
    memcpy(data, src->data, (size_t)mk_image_nvox(src) * mk_dtype_size(src->dtype));
    return MK_OK;
}

void mk_image_free(mk_image *img)
{
    if (!img)
        return;
    free(img->data);
    free(img);
}

void mk__image_assert_valid(const mk_image *img, const char *file, int line)
{
    int ok = img && (unsigned)img->dtype < MK_DT_COUNT && img->ndim >= 1 &&
             img->ndim <= MK_IMAGE_MAX_DIMS;
    for (int d = 0; ok && d < MK_IMAGE_MAX_DIMS; d++)
        ok = img->dim[d] >= 1 && (d < img->ndim || img->dim[d] == 1);
    for (int d = 0; ok && d < 3; d++)
        ok = img->geom.spacing[d] > 0 && isfinite(img->geom.spacing[d]);
    if (!ok)
        mk__assert_fail("image invariant (dtype, 1<=ndim<=5, dims>=1, trailing dims 1, spacing>0)",
                        file, line);
}

double mk_image_get(const mk_image *img, int64_t i)
{
    const void *p = img->data;
    switch (img->dtype) {
    case MK_DT_UINT8: return ((const uint8_t *)p)[i];
    case MK_DT_INT8: return ((const int8_t *)p)[i];
    case MK_DT_UINT16: return ((const uint16_t *)p)[i];
    case MK_DT_INT16: return ((const int16_t *)p)[i];
    case MK_DT_UINT32: return ((const uint32_t *)p)[i];
    case MK_DT_INT32: return ((const int32_t *)p)[i];
    case MK_DT_UINT64: return (double)((const uint64_t *)p)[i];
    case MK_DT_INT64: return (double)((const int64_t *)p)[i];
    case MK_DT_FLOAT32: return ((const float *)p)[i];
    case MK_DT_FLOAT64: return ((const double *)p)[i];
    case MK_DT_RGB24: {
        const uint8_t *c = (const uint8_t *)p + 3 * i;
        return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    }
    default: return 0;
    }
}

static double clampr(double v, double lo, double hi)
{
    if (!(v == v))
        return 0;
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

void mk_image_set(mk_image *img, int64_t i, double v)
{
    void *p = img->data;
    switch (img->dtype) {
    case MK_DT_UINT8: ((uint8_t *)p)[i] = (uint8_t)clampr(v, 0, 255); break;
    case MK_DT_INT8: ((int8_t *)p)[i] = (int8_t)clampr(v, -128, 127); break;
    case MK_DT_UINT16: ((uint16_t *)p)[i] = (uint16_t)clampr(v, 0, 65535); break;
    case MK_DT_INT16: ((int16_t *)p)[i] = (int16_t)clampr(v, -32768, 32767); break;
    case MK_DT_UINT32: ((uint32_t *)p)[i] = (uint32_t)clampr(v, 0, 4294967295.0); break;
    case MK_DT_INT32: ((int32_t *)p)[i] = (int32_t)clampr(v, -2147483648.0, 2147483647.0); break;
    /* 2^64 and 2^63 are exact doubles; the largest double below them converts safely. */
    case MK_DT_UINT64: ((uint64_t *)p)[i] = (uint64_t)clampr(v, 0, 18446744073709549568.0); break;
    case MK_DT_INT64:
        ((int64_t *)p)[i] = (int64_t)clampr(v, -9223372036854775808.0, 9223372036854774784.0);
        break;
    case MK_DT_FLOAT32: ((float *)p)[i] = (float)v; break;
    case MK_DT_FLOAT64: ((double *)p)[i] = v; break;
    case MK_DT_RGB24: {
        uint8_t *c = (uint8_t *)p + 3 * i;
        c[0] = c[1] = c[2] = (uint8_t)clampr(v, 0, 255);
        break;
    }
    default: break;
    }
}

void mk_geom_affine_lps(const mk_geom *g, double m[4][4])
{
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 3; c++)
            m[r][c] = g->direction[r * 3 + c] * g->spacing[c];
        m[r][3] = g->origin[r];
    }
    m[3][0] = m[3][1] = m[3][2] = 0;
    m[3][3] = 1;
}

void mk_geom_affine_ras(const mk_geom *g, double m[4][4])
{
    mk_geom_affine_lps(g, m);
    for (int c = 0; c < 4; c++) {
        m[0][c] = -m[0][c];
        m[1][c] = -m[1][c];
    }
}

mk_status mk_geom_from_affine_lps(mk_ctx *ctx, const double m[4][4], mk_geom *g)
{
    mk_geom_identity(g);
    for (int c = 0; c < 3; c++) {
        double n = sqrt(m[0][c] * m[0][c] + m[1][c] * m[1][c] + m[2][c] * m[2][c]);
        if (!(n > 0) || !isfinite(n))
            return mk_err(ctx, MK_ERR_GEOMETRY,
                          "affine column %d: expected a finite non-zero voxel axis, got norm %g", c,
                          n);
        g->spacing[c] = n;
        for (int r = 0; r < 3; r++)
            g->direction[r * 3 + c] = m[r][c] / n;
    }
    for (int r = 0; r < 3; r++) {
        if (!isfinite(m[r][3]))
            return mk_err(ctx, MK_ERR_GEOMETRY, "affine origin[%d]: expected finite, got %g", r,
                          m[r][3]);
        g->origin[r] = m[r][3];
    }
    return MK_OK;
}

/* Greedy unique assignment: the largest |component| picks its world axis first, so an oblique
 * axis can never take the same letter twice (what nibabel's io_orientation guarantees too). */
void mk_geom_axis_map(const mk_geom *g, int world_axis[3], int sign[3])
{
    double ras[3][3];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            ras[r][c] = (r < 2 ? -1.0 : 1.0) * g->direction[r * 3 + c];
    int used_r[3] = {0, 0, 0}, used_c[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        int br = 0, bc = 0;
        double best = -1;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
                if (!used_r[r] && !used_c[c] && fabs(ras[r][c]) > best) {
                    best = fabs(ras[r][c]);
                    br = r;
                    bc = c;
                }
        used_r[br] = used_c[bc] = 1;
        world_axis[bc] = br;
        sign[bc] = ras[br][bc] < 0 ? -1 : 1;
    }
}

void mk_geom_orient_code(const mk_geom *g, char code[4])
{
    static const char POS[3] = {'R', 'A', 'S'}, NEG[3] = {'L', 'P', 'I'};
    int ax[3], sg[3];
    mk_geom_axis_map(g, ax, sg);
    for (int c = 0; c < 3; c++)
        code[c] = sg[c] > 0 ? POS[ax[c]] : NEG[ax[c]];
    code[3] = '\0';
}

int mk_geom_grid_diff(const mk_image *a, const mk_image *b, double rel_tol, char *why, size_t n)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        n = sizeof dummy;
    }
    double smax = 0;
    for (int d = 0; d < 3; d++)
        if (a->dim[d] != b->dim[d]) {
            snprintf(why, n, "shape %lldx%lldx%lld vs %lldx%lldx%lld", (long long)a->dim[0],
                     (long long)a->dim[1], (long long)a->dim[2], (long long)b->dim[0],
                     (long long)b->dim[1], (long long)b->dim[2]);
            return 0;
        }
    for (int d = 0; d < 3; d++) {
        double sa = a->geom.spacing[d], sb = b->geom.spacing[d];
        double m = fmax(sa, sb);
        if (fabs(sa - sb) > rel_tol * m) {
            snprintf(why, n, "spacing %.9g,%.9g,%.9g vs %.9g,%.9g,%.9g mm (tolerance %g relative)",
                     a->geom.spacing[0], a->geom.spacing[1], a->geom.spacing[2], b->geom.spacing[0],
                     b->geom.spacing[1], b->geom.spacing[2], rel_tol);
            return 0;
        }
        smax = fmax(smax, m);
    }
    for (int d = 0; d < 3; d++)
        if (fabs(a->geom.origin[d] - b->geom.origin[d]) > rel_tol * smax) {
            snprintf(why, n, "origin %.6g,%.6g,%.6g vs %.6g,%.6g,%.6g mm (LPS)", a->geom.origin[0],
                     a->geom.origin[1], a->geom.origin[2], b->geom.origin[0], b->geom.origin[1],
                     b->geom.origin[2]);
            return 0;
        }
    for (int d = 0; d < 9; d++)
        if (fabs(a->geom.direction[d] - b->geom.direction[d]) > rel_tol * fmax(smax, 1.0)) {
            char ca[4], cb[4];
            mk_geom_orient_code(&a->geom, ca);
            mk_geom_orient_code(&b->geom, cb);
            snprintf(why, n, "direction matrices differ (orientation %s vs %s)", ca, cb);
            return 0;
        }
    return 1;
}

int mk_geom_same_grid(const mk_image *a, const mk_image *b, double rel_tol)
{
    return mk_geom_grid_diff(a, b, rel_tol, NULL, 0);
}

mk_status mk_image_value_range(const mk_image *img, double *lo, double *hi)
{
    int64_t n = mk_image_nvox(img);
    double mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double v = mk_image_get(img, i);
        if (v < mn)
            mn = v;
        if (v > mx)
            mx = v;
    }
    *lo = mn;
    *hi = mx;
    return MK_OK;
}
