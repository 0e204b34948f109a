/* Patch grids in HDF5, CLAM's layout (see mk_histo.h), through io/mk_hdf5.h: the file is built in
 * memory and committed by mk_h5_close with a temporary file and a rename (core/mk_fs.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/mk_hdf5.h"
#include "mk_histo.h"

/* Most patches a grid file may declare (validated before any allocation). */
#define MK_HISTO_MAX_PATCHES ((int64_t)1 << 28)

mk_status mk_histo_grid_save(mk_ctx *ctx, const char *path, const mk_histo_grid *g)
{
    if (g->n < 0 || g->n > MK_HISTO_MAX_PATCHES ||
        (g->n > 0 && (!g->xy || !g->tissue || !g->label || !g->label_frac)))
        return mk_err(ctx, MK_ERR_INVALID, "%s: grid of %lld patches without its arrays", path,
                      (long long)g->n);
    mk_h5_file *f = NULL;
    mk_status st = mk_h5_create(ctx, path, &f);
    if (st != MK_OK)
        return st;
    mk_h5_write_opts wo;
    memset(&wo, 0, sizeof wo);
    wo.gzip = MK_H5_CONTIGUOUS; /* what h5py writes by default; allows n = 0 */
    int64_t shape[2] = {g->n, 2};
    int64_t lv = g->level, sz = g->size, stride = g->stride > 0 ? g->stride : g->size;
    int64_t dim[2] = {g->level_w, g->level_h};
    double ds = g->downsample;
    if ((st = mk_h5_write_tensor(ctx, f, "/coords", MK_DT_INT64, 2, shape, g->xy, &wo)) == MK_OK &&
        (st = mk_h5_attr_set_i64(ctx, f, "/coords", "patch_level", MK_H5_SCALAR, &lv)) == MK_OK &&
        (st = mk_h5_attr_set_i64(ctx, f, "/coords", "patch_size", MK_H5_SCALAR, &sz)) == MK_OK &&
        (st = mk_h5_attr_set_f64(ctx, f, "/coords", "downsample", MK_H5_SCALAR, &ds)) == MK_OK &&
        (st = mk_h5_attr_set_i64(ctx, f, "/coords", "stride", MK_H5_SCALAR, &stride)) == MK_OK &&
        (st = mk_h5_attr_set_i64(ctx, f, "/coords", "level_dim", 2, dim)) == MK_OK &&
        (st = mk_h5_attr_set_str(ctx, f, "/coords", "slide", g->slide ? g->slide : "")) == MK_OK &&
        (st = mk_h5_write_tensor(ctx, f, "/tissue", MK_DT_FLOAT32, 1, shape, g->tissue, &wo)) ==
            MK_OK &&
        (st = mk_h5_write_tensor(ctx, f, "/label", MK_DT_INT32, 1, shape, g->label, &wo)) == MK_OK)
        st = mk_h5_write_tensor(ctx, f, "/label_frac", MK_DT_FLOAT32, 1, shape, g->label_frac, &wo);
    if (st != MK_OK) {
        mk_h5_abort(f);
        return st;
    }
    return mk_h5_close(ctx, f);
}

static mk_status bad(mk_ctx *ctx, const char *path, const char *field, const char *what)
{
    return mk_err(ctx, MK_ERR_FORMAT, "%s: field %s: %s", path, field, what);
}

/* A scalar (or, for CLAM's downsample pair, first-of-two) numeric attribute of /coords. */
static mk_status attr_num(mk_ctx *ctx, mk_h5_file *f, const char *name, int max_n, double *v)
{
    const char *path = mk_h5_path(f);
    double vals[2] = {0, 0};
    int got = 0;
    mk_status st = mk_h5_attr_get_f64(ctx, f, "/coords", name, 2, vals, &got);
    if (st == MK_ERR_NOT_FOUND)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field coords.%s: missing (not a patch grid file of medkd or CLAM)", path,
                      name);
    if (st != MK_OK)
        return st; /* names the file and the object */
    if (got < 1 || got > max_n || !isfinite(vals[0]))
        return mk_err(ctx, MK_ERR_FORMAT, "%s: field coords.%s: expected one finite number", path,
                      name);
    *v = vals[0];
    return MK_OK;
}

/* Shape check of a 1-d dataset of n values; absent is fine (*present 0). */
static mk_status check_1d(mk_ctx *ctx, mk_h5_file *f, const char *field, int64_t n, int *present)
{
    const char *path = mk_h5_path(f);
    char obj[64];
    snprintf(obj, sizeof obj, "/%s", field);
    *present = mk_h5_exists(f, obj);
    if (!*present)
        return MK_OK;
    int rank = 0;
    int64_t shape[MK_H5_MAX_RANK];
    mk_status st = mk_h5_dataset_shape(ctx, f, obj, &rank, shape);
    if (st != MK_OK)
        return st; /* names the file and the dataset */
    if (rank != 1 || shape[0] != n)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field %s: expected shape [%lld] (one value per row of coords), got rank "
                      "%d [%lld%s]",
                      path, field, (long long)n, rank, (long long)(rank > 0 ? shape[0] : 0),
                      rank > 1 ? ", ..." : "");
    return MK_OK;
}

mk_status mk_histo_grid_load(mk_ctx *ctx, const char *path, mk_histo_grid *out)
{
    memset(out, 0, sizeof *out);
    mk_h5_file *f = NULL;
    mk_status st = mk_h5_open(ctx, path, &f);
    if (st != MK_OK)
        return st;
    int rank = 0;
    int64_t shape[MK_H5_MAX_RANK] = {0};
    mk_histo_grid g;
    memset(&g, 0, sizeof g);
    if (!mk_h5_exists(f, "/coords")) {
        st = bad(ctx, path, "coords", "missing (not a patch grid file)");
        goto done;
    }
    if ((st = mk_h5_dataset_shape(ctx, f, "/coords", &rank, shape)) != MK_OK)
        goto done;
    if (rank != 2 || shape[1] != 2) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: field coords: expected shape [n, 2], got rank %d",
                    path, rank);
        if (rank == 2)
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: field coords: expected shape [n, 2], got [%lld, %lld]", path,
                        (long long)shape[0], (long long)shape[1]);
        goto done;
    }
    if (shape[0] < 0 || shape[0] > MK_HISTO_MAX_PATCHES) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: field coords: %lld rows, more than the limit of %lld",
                    path, (long long)shape[0], (long long)MK_HISTO_MAX_PATCHES);
        goto done;
    }
    int64_t n = shape[0];
    double lv, sz, stride, ds;
    if ((st = attr_num(ctx, f, "patch_level", 1, &lv)) != MK_OK ||
        (st = attr_num(ctx, f, "patch_size", 1, &sz)) != MK_OK ||
        (st = attr_num(ctx, f, "downsample", 2, &ds)) != MK_OK)
        goto done;
    if (lv < 0 || lv > 31 || lv != floor(lv)) {
        st = bad(ctx, path, "coords.patch_level", "expected an integer 0..31");
        goto done;
    }
    if (sz < 1 || sz > 8192 || sz != floor(sz)) {
        st = bad(ctx, path, "coords.patch_size", "expected an integer 1..8192");
        goto done;
    }
    if (!(ds > 0 && ds < 1e6)) {
        st = bad(ctx, path, "coords.downsample", "expected a number > 0");
        goto done;
    }
    stride = sz; /* CLAM files have no stride */
    if (mk_h5_attr_get_f64(NULL, f, "/coords", "stride", 1, &stride, NULL) == MK_OK &&
        (stride < 1 || stride > (1 << 20) || stride != floor(stride))) {
        st = bad(ctx, path, "coords.stride", "expected an integer >= 1");
        goto done;
    }
    int64_t dim[2] = {0, 0};
    int got = 0;
    if ((st = mk_h5_attr_get_i64(ctx, f, "/coords", "level_dim", 2, dim, &got)) != MK_OK) {
        if (st == MK_ERR_NOT_FOUND)
            st = bad(ctx, path, "coords.level_dim",
                     "missing (not a patch grid file of medkd or CLAM)");
        goto done;
    }
    if (got != 2 || dim[0] < sz || dim[1] < sz || dim[0] > ((int64_t)1 << 40) ||
        dim[1] > ((int64_t)1 << 40)) {
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: field coords.level_dim: expected [width, height] of at least the patch "
                    "size %.0f",
                    path, sz);
        goto done;
    }
    char slide[4096] = "";
    if (mk_h5_attr_get_str(NULL, f, "/coords", "slide", slide, sizeof slide) != MK_OK)
        slide[0] = 0;
    int has_t, has_l, has_f;
    if ((st = check_1d(ctx, f, "tissue", n, &has_t)) != MK_OK ||
        (st = check_1d(ctx, f, "label", n, &has_l)) != MK_OK ||
        (st = check_1d(ctx, f, "label_frac", n, &has_f)) != MK_OK)
        goto done;
    size_t cnt = (size_t)(n > 0 ? n : 1);
    g.slide = malloc(strlen(slide) + 1);
    g.xy = malloc(cnt * 2 * sizeof *g.xy);
    g.tissue = malloc(cnt * sizeof *g.tissue);
    g.label = malloc(cnt * sizeof *g.label);
    g.label_frac = malloc(cnt * sizeof *g.label_frac);
    if (!g.slide || !g.xy || !g.tissue || !g.label || !g.label_frac) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for %lld patches", path, (long long)n);
        goto done;
    }
    memcpy(g.slide, slide, strlen(slide) + 1);
    g.n = n;
    g.level = (int)lv;
    g.size = (int)sz;
    g.stride = (int)stride;
    g.downsample = ds;
    g.level_w = dim[0];
    g.level_h = dim[1];
    for (int64_t i = 0; i < n; i++) {
        g.tissue[i] = 1.0f; /* a CLAM file keeps only tissue patches */
        g.label[i] = -1;
        g.label_frac[i] = 0.0f;
    }
    if (n > 0 && (st = mk_h5_read_into(ctx, f, "/coords", MK_DT_INT64, 2 * n, g.xy)) != MK_OK) {
        goto done;
    }
    if (n > 0 && has_t &&
        (st = mk_h5_read_into(ctx, f, "/tissue", MK_DT_FLOAT32, n, g.tissue)) != MK_OK) {
        goto done;
    }
    if (n > 0 && has_l &&
        (st = mk_h5_read_into(ctx, f, "/label", MK_DT_INT32, n, g.label)) != MK_OK) {
        goto done;
    }
    if (n > 0 && has_f &&
        (st = mk_h5_read_into(ctx, f, "/label_frac", MK_DT_FLOAT32, n, g.label_frac)) != MK_OK) {
        goto done;
    }
    /* every patch lies inside its level, where mk_histo_read_patch will read it */
    for (int64_t i = 0; i < n; i++) {
        int64_t x0 = g.xy[2 * i], y0 = g.xy[2 * i + 1];
        int64_t x = x0 >= 0 ? (int64_t)llround((double)x0 / ds) : -1;
        int64_t y = y0 >= 0 ? (int64_t)llround((double)y0 / ds) : -1;
        if (x < 0 || y < 0 || x > g.level_w - g.size || y > g.level_h - g.size) {
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: field coords: row %lld (%lld, %lld) is not a patch of %d px inside "
                        "level %d (%lld x %lld, downsample %g)",
                        path, (long long)i, (long long)x0, (long long)y0, g.size, g.level,
                        (long long)g.level_w, (long long)g.level_h, ds);
            goto done;
        }
        if (!(g.tissue[i] >= 0 && g.tissue[i] <= 1)) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: field tissue: row %lld: %g is not in 0..1", path,
                        (long long)i, (double)g.tissue[i]);
            goto done;
        }
        if (g.label[i] < -1) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: field label: row %lld: %d (expected >= -1)", path,
                        (long long)i, (int)g.label[i]);
            goto done;
        }
        if (!(g.label_frac[i] >= 0 && g.label_frac[i] <= 1)) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: field label_frac: row %lld: %g is not in 0..1",
                        path, (long long)i, (double)g.label_frac[i]);
            goto done;
        }
    }
done:
    mk_h5_abort(f); /* opened read-only: closing it writes nothing */
    if (st != MK_OK) {
        mk_histo_grid_free(&g);
        return st;
    }
    *out = g;
    return MK_OK;
}
