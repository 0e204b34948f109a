/* HDF5 checkpoints of a parameter store and optimiser state (see mk_unet.h). Uses libhdf5 directly;
 * HDF5's own error stack printing is switched off around every call so failures come back only as
 * status + message. */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "mk_unet.h"

#define MK_H5_MAX_ELEMS ((int64_t)1 << 31)

typedef struct h5_quiet {
    H5E_auto2_t fn;
    void *data;
} h5_quiet;

static void quiet_on(h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_off(const h5_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

/* "enc.0.1.weight" -> "<group>/enc/0/1/weight" */
static void dset_path(char *buf, size_t n, const char *group, const char *name)
{
    snprintf(buf, n, "%s/%s", group, name);
    for (char *p = buf + strlen(group) + 1; *p; p++)
        if (*p == '.')
            *p = '/';
}

static mk_status write_f32(mk_ctx *ctx, hid_t f, hid_t lcpl, const char *path, const char *dset,
                           const mk_tensor *t)
{
    hsize_t dims[MK_TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = (hsize_t)t->ne[i];
    hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(f, dset, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data);
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    if (e < 0)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot write dataset %s", path, dset);
    return MK_OK;
}

static herr_t attr_double(hid_t obj, const char *name, double v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return e;
}

static int attr_read_double(hid_t obj, const char *name, double *v)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    herr_t e = H5Aread(a, H5T_NATIVE_DOUBLE, v);
    H5Aclose(a);
    return e < 0 ? -1 : 0;
}

static mk_status save_body(mk_ctx *ctx, hid_t f, const char *path, mk_nn_params *params,
                           mk_optim *opt)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    mk_status st = MK_OK;
    char dset[256];
    if (H5LTset_attribute_string(f, "/", "format", "medkd-checkpoint") < 0 ||
        attr_double(f, "version", 1) < 0)
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot write root attributes", path);
    int n = mk_nn_params_count(params);
    for (int i = 0; i < n && st == MK_OK; i++) {
        mk_param *p = mk_nn_params_at(params, i);
        dset_path(dset, sizeof dset, "params", p->name);
        st = write_f32(ctx, f, lcpl, path, dset, &p->value);
    }
    if (opt && st == MK_OK) {
        hid_t g = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const mk_optim_cfg *c = mk_optim_config(opt);
        herr_t e = g < 0 ? -1 : 0;
        if (e == 0)
            e = attr_double(g, "kind", c->kind) | attr_double(g, "lr", c->lr) |
                attr_double(g, "beta1", c->beta1) | attr_double(g, "beta2", c->beta2) |
                attr_double(g, "eps", c->eps) | attr_double(g, "weight_decay", c->weight_decay) |
                attr_double(g, "momentum", c->momentum) |
                attr_double(g, "dampening", c->dampening) |
                attr_double(g, "nesterov", c->nesterov) |
                attr_double(g, "steps", (double)mk_optim_steps(opt));
        if (g >= 0)
            H5Gclose(g);
        if (e < 0)
            st = mk_err(ctx, MK_ERR_IO, "%s: cannot write /optim", path);
        for (int i = 0; i < n && st == MK_OK; i++) {
            mk_param *p = mk_nn_params_at(params, i);
            for (int slot = 0; slot < 2 && st == MK_OK; slot++) {
                float *s = p->is_buffer ? NULL : mk_optim_state(opt, i, slot);
                if (!s)
                    continue;
                mk_tensor t = p->value;
                t.data = s;
                dset_path(dset, sizeof dset, slot ? "optim/state1" : "optim/state0", p->name);
                st = write_f32(ctx, f, lcpl, path, dset, &t);
            }
        }
    }
    H5Pclose(lcpl);
    return st;
}

mk_status mk_model_save(mk_ctx *ctx, const char *path, mk_nn_params *params, mk_optim *opt)
{
    char tmp[4096];
    mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
    if (st != MK_OK)
        return st;
    h5_quiet q;
    quiet_on(&q);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        quiet_off(&q);
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create HDF5 file", tmp);
    }
    st = save_body(ctx, f, path, params, opt);
    if (H5Fclose(f) < 0 && st == MK_OK)
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot close HDF5 file", tmp);
    quiet_off(&q);
    if (st != MK_OK) {
        mk_fs_discard(tmp);
        return st;
    }
    return mk_fs_commit(ctx, tmp, path);
}

/* Reads dataset dset into dst, which must have exactly shape t->ne (rank 0 datasets match 1
 * element). */
static mk_status read_into(mk_ctx *ctx, hid_t f, const char *path, const char *dset,
                           const mk_tensor *t)
{
    if (H5LTpath_valid(f, dset, 1) <= 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: missing", path, dset);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (d < 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot open", path, dset);
    hid_t sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    mk_status st = MK_OK;
    if (rank < 0 || rank > 8) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: bad rank", path, dset);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        int same = rank == t->ndim;
        for (int i = 0; same && i < rank; i++)
            same = dims[i] == (hsize_t)t->ne[i];
        if (!same) {
            char want[96] = "", got[96] = "";
            for (int i = 0; i < t->ndim; i++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "x" : "",
                         (long long)t->ne[i]);
            for (int i = 0; i < rank; i++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? "x" : "",
                         (unsigned long long)dims[i]);
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: expected shape %s, got %s", path, dset,
                        want, rank ? got : "scalar");
        } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot read as float32", path, dset);
        }
    }
    H5Sclose(sp);
    H5Dclose(d);
    return st;
}

static mk_status load_body(mk_ctx *ctx, hid_t f, const char *path, const char *group,
                           mk_nn_params *params, mk_optim *opt)
{
    char dset[256];
    int n = mk_nn_params_count(params);
    for (int i = 0; i < n; i++) {
        mk_param *p = mk_nn_params_at(params, i);
        dset_path(dset, sizeof dset, group, p->name);
        mk_status st = read_into(ctx, f, path, dset, &p->value);
        if (st != MK_OK)
            return st;
    }
    if (!opt || H5LTpath_valid(f, "optim", 1) <= 0)
        return MK_OK;
    hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
    if (g < 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: group /optim: cannot open", path);
    double kind = -1, steps = 0;
    int bad = attr_read_double(g, "kind", &kind) || attr_read_double(g, "steps", &steps);
    H5Gclose(g);
    if (bad)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: /optim: attributes kind and steps required", path);
    if ((int)kind != (int)mk_optim_config(opt)->kind)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: /optim: kind %d does not match the optimiser (%d)",
                      path, (int)kind, (int)mk_optim_config(opt)->kind);
    if (steps < 0 || steps > 1e15)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: /optim: steps %g out of range", path, steps);
    for (int i = 0; i < n; i++) {
        mk_param *p = mk_nn_params_at(params, i);
        for (int slot = 0; slot < 2; slot++) {
            float *s = p->is_buffer ? NULL : mk_optim_state(opt, i, slot);
            if (!s)
                continue;
            mk_tensor t = p->value;
            t.data = s;
            dset_path(dset, sizeof dset, slot ? "optim/state1" : "optim/state0", p->name);
            mk_status st = read_into(ctx, f, path, dset, &t);
            if (st != MK_OK)
                return st;
        }
    }
    mk_optim_set_steps(opt, (long long)steps);
    return MK_OK;
}

static mk_status open_ro(mk_ctx *ctx, const char *path, hid_t *f)
{
    if (!mk_fs_is_file(path))
        return mk_err(ctx, MK_ERR_IO, "%s: no such file", path);
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: not an HDF5 file (or unreadable)", path);
    return MK_OK;
}

mk_status mk_model_load(mk_ctx *ctx, const char *path, const char *group, mk_nn_params *params,
                        mk_optim *opt)
{
    h5_quiet q;
    quiet_on(&q);
    hid_t f = -1;
    mk_status st = open_ro(ctx, path, &f);
    if (st == MK_OK) {
        st = load_body(ctx, f, path, group, params, opt);
        H5Fclose(f);
    }
    quiet_off(&q);
    return st;
}

/* shape of dataset dset (rank 0 -> {1}); MK_OK or an error naming it */
static mk_status dset_shape(mk_ctx *ctx, hid_t f, const char *path, const char *dset, int *rank,
                            int64_t *ne, hid_t *d_out)
{
    if (H5LTpath_valid(f, dset, 1) <= 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: missing", path, dset);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (d < 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot open", path, dset);
    hid_t sp = H5Dget_space(d);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[MK_TENSOR_MAX_DIMS];
    if (r < 0 || r > MK_TENSOR_MAX_DIMS) {
        H5Sclose(sp);
        H5Dclose(d);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: rank %d, expected 0..%d", path, dset, r,
                      MK_TENSOR_MAX_DIMS);
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    int64_t tot = 1;
    for (int i = 0; i < r; i++) {
        ne[i] = (int64_t)dims[i];
        tot *= ne[i] > 0 ? ne[i] : 1;
        if (tot > MK_H5_MAX_ELEMS) {
            H5Dclose(d);
            return mk_err(ctx, MK_ERR_NOMEM, "%s: dataset %s: too large", path, dset);
        }
    }
    if (r == 0) {
        r = 1;
        ne[0] = 1;
    }
    *rank = r;
    *d_out = d;
    return MK_OK;
}

mk_status mk_model_h5_read(mk_ctx *ctx, const char *path, const char *dset, mk_tensor *out)
{
    memset(out, 0, sizeof *out);
    h5_quiet q;
    quiet_on(&q);
    hid_t f = -1, d = -1;
    mk_status st = open_ro(ctx, path, &f);
    if (st == MK_OK) {
        int rank;
        int64_t ne[MK_TENSOR_MAX_DIMS];
        st = dset_shape(ctx, f, path, dset, &rank, ne, &d);
        if (st == MK_OK) {
            if (mk_tensor_new(out, rank, ne) != 0)
                st = mk_err(ctx, MK_ERR_NOMEM, "%s: dataset %s: out of memory", path, dset);
            else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data) < 0)
                st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot read as float32", path,
                            dset);
            H5Dclose(d);
        }
        H5Fclose(f);
    }
    quiet_off(&q);
    if (st != MK_OK)
        mk_tensor_free(out);
    return st;
}

mk_status mk_model_h5_read_i32(mk_ctx *ctx, const char *path, const char *dset, int32_t **out,
                               int64_t *n)
{
    *out = NULL;
    *n = 0;
    h5_quiet q;
    quiet_on(&q);
    hid_t f = -1, d = -1;
    mk_status st = open_ro(ctx, path, &f);
    if (st == MK_OK) {
        int rank;
        int64_t ne[MK_TENSOR_MAX_DIMS], tot = 1;
        st = dset_shape(ctx, f, path, dset, &rank, ne, &d);
        if (st == MK_OK) {
            for (int i = 0; i < rank; i++)
                tot *= ne[i];
            *out = malloc((size_t)(tot > 0 ? tot : 1) * sizeof(int32_t));
            if (!*out)
                st = mk_err(ctx, MK_ERR_NOMEM, "%s: dataset %s: out of memory", path, dset);
            else if (H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
                st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot read as int32", path, dset);
            *n = tot;
            H5Dclose(d);
        }
        H5Fclose(f);
    }
    quiet_off(&q);
    if (st != MK_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return st;
}
