/* Post-processing of predicted masks (see mk_stages.h): the largest connected component of one
 * label, or of each label of a multi-structure mask. */
#include <stdlib.h>
#include <string.h>

#include "mk_stages.h"

mk_status mk_stage_keep_largest_component(mk_ctx *ctx, mk_image *mask, int label, int64_t *removed)
{
    if (removed)
        *removed = 0;
    if (mask->dtype != MK_DT_UINT8)
        return mk_err(ctx, MK_ERR_INVALID, "keep_largest_component: expected a uint8 mask");
    const int64_t nx = mask->dim[0], ny = mask->dim[1], nz = mask->dim[2];
    const int64_t n = mk_image_nvox(mask);
    uint8_t *m = mask->data;
    /* comp[i]: 0 = not visited, else component number (1-based) */
    int32_t *comp = calloc((size_t)n, sizeof *comp);
    int64_t *queue = malloc((size_t)n * sizeof *queue);
    int64_t *size = NULL, nsize = 0, cap = 0;
    if (!comp || !queue) {
        free(comp);
        free(queue);
        return mk_err(ctx, MK_ERR_NOMEM, "keep_largest_component: out of memory");
    }
    mk_status st = MK_OK;
    for (int64_t s = 0; s < n && st == MK_OK; s++) {
        if (m[s] != label || comp[s])
            continue;
        if (nsize == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *ns = realloc(size, (size_t)cap * sizeof *ns);
            if (!ns) {
                st = mk_err(ctx, MK_ERR_NOMEM, "keep_largest_component: out of memory");
                break;
            }
            size = ns;
        }
        int32_t id = (int32_t)++nsize;
        int64_t head = 0, tail = 0;
        queue[tail++] = s;
        comp[s] = id;
        while (head < tail) {
            int64_t i = queue[head++];
            int64_t x = i % nx, y = (i / nx) % ny, z = i / (nx * ny);
            /* 6-connectivity (faces), as ITK's ConnectedComponentImageFilter by default */
            int64_t nb[6];
            int k = 0;
            if (x > 0)
                nb[k++] = i - 1;
            if (x + 1 < nx)
                nb[k++] = i + 1;
            if (y > 0)
                nb[k++] = i - nx;
            if (y + 1 < ny)
                nb[k++] = i + nx;
            if (z > 0)
                nb[k++] = i - nx * ny;
            if (z + 1 < nz)
                nb[k++] = i + nx * ny;
            for (int j = 0; j < k; j++)
                if (m[nb[j]] == label && !comp[nb[j]]) {
                    comp[nb[j]] = id;
                    queue[tail++] = nb[j];
                }
        }
        size[id - 1] = tail;
    }
    if (st == MK_OK && nsize > 1) {
        int32_t best = 1;
        for (int64_t c = 1; c < nsize; c++)
            if (size[c] > size[best - 1])
                best = (int32_t)(c + 1); /* ties: the first in voxel order */
        int64_t r = 0;
        for (int64_t i = 0; i < n; i++)
            if (comp[i] && comp[i] != best) {
                m[i] = 0;
                r++;
            }
        if (removed)
            *removed = r;
    }
    free(comp);
    free(queue);
    free(size);
    return st;
}

mk_status mk_stage_keep_largest_components(mk_ctx *ctx, mk_image *mask, const int *labels, int n,
                                           int64_t *removed)
{
    if (removed)
        *removed = 0;
    for (int j = 0; j < n; j++) {
        int64_t r = 0;
        mk_status st = mk_stage_keep_largest_component(ctx, mask, labels[j], &r);
        if (st != MK_OK)
            return st;
        if (removed)
            *removed += r;
    }
    return MK_OK;
}
