/* Non-learned difficulty checks on phantoms (best single-threshold Dice). */
#include <stdlib.h>
#include <string.h>

#include "phantom_internal.h"

typedef struct vl {
    double v;
    int fg;
} vl;

static int cmp_vl(const void *a, const void *b)
{
    double x = ((const vl *)a)->v, y = ((const vl *)b)->v;
    return x < y ? -1 : x > y ? 1 : 0;
}

mk_status mk_phantom_best_threshold_dice(mk_ctx *ctx, const mk_image *img, const mk_image *label,
                                         const uint8_t *roi, double *dice, double *thr)
{
    int64_t nv = mk_image_nvox(img);
    if (mk_image_nvox(label) != nv)
        return mk_err(ctx, MK_ERR_INVALID, "threshold dice: image has %lld voxels, label %lld",
                      (long long)nv, (long long)mk_image_nvox(label));
    vl *a = malloc((size_t)nv * sizeof *a);
    if (!a)
        return mk_err(ctx, MK_ERR_NOMEM, "threshold dice: out of memory (%lld voxels)",
                      (long long)nv);
    int64_t n = 0, nfg = 0;
    for (int64_t q = 0; q < nv; q++) {
        if (roi && !roi[q])
            continue;
        a[n].v = mk_image_get(img, q);
        a[n].fg = mk_image_get(label, q) > 0;
        nfg += a[n].fg;
        n++;
    }
    *dice = 0;
    if (thr)
        *thr = 0;
    if (nfg == 0 || n == 0) {
        free(a);
        return MK_OK;
    }
    qsort(a, (size_t)n, sizeof *a, cmp_vl);
    /* sweep t from high to low: predicted = voxels strictly above t; evaluate only between
     * distinct values so ties move together */
    int64_t tp = 0, pred = 0;
    double best = 0, best_t = a[n - 1].v;
    for (int64_t q = n - 1; q >= 0; q--) {
        tp += a[q].fg;
        pred++;
        if (q > 0 && a[q - 1].v == a[q].v)
            continue;
        double d = 2.0 * (double)tp / (double)(pred + nfg);
        if (d > best) {
            best = d;
            best_t = q > 0 ? 0.5 * (a[q].v + a[q - 1].v) : a[q].v - 1;
        }
    }
    free(a);
    *dice = best;
    if (thr)
        *thr = best_t;
    return MK_OK;
}

int mk_phantom_label_box_roi(const mk_image *label, double margin_mm, uint8_t *roi)
{
    int64_t n[3] = {label->dim[0], label->ndim > 1 ? label->dim[1] : 1,
                    label->ndim > 2 ? label->dim[2] : 1};
    int64_t lo[3] = {n[0], n[1], n[2]}, hi[3] = {-1, -1, -1};
    int64_t q = 0;
    for (int64_t k = 0; k < n[2]; k++)
        for (int64_t j = 0; j < n[1]; j++)
            for (int64_t i = 0; i < n[0]; i++, q++)
                if (mk_image_get(label, q) > 0) {
                    int64_t c[3] = {i, j, k};
                    for (int a = 0; a < 3; a++) {
                        if (c[a] < lo[a])
                            lo[a] = c[a];
                        if (c[a] > hi[a])
                            hi[a] = c[a];
                    }
                }
    memset(roi, 0, (size_t)(n[0] * n[1] * n[2]));
    if (hi[0] < 0)
        return 0;
    for (int a = 0; a < 3; a++) {
        int64_t g = (int64_t)(margin_mm / label->geom.spacing[a] + 0.5);
        lo[a] = lo[a] - g < 0 ? 0 : lo[a] - g;
        hi[a] = hi[a] + g >= n[a] ? n[a] - 1 : hi[a] + g;
    }
    for (int64_t k = lo[2]; k <= hi[2]; k++)
        for (int64_t j = lo[1]; j <= hi[1]; j++)
            memset(roi + (size_t)((k * n[1] + j) * n[0] + lo[0]), 1, (size_t)(hi[0] - lo[0] + 1));
    return 1;
}
