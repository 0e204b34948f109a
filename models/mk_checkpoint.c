/* HDF5 checkpoints of a parameter store and optimiser state (see mk_unet.h), on io's HDF5 layer
 * (io/mk_hdf5.h). The layout is that of the first version, which called libhdf5 directly, so old
 * files load and new files hold the same objects: contiguous float32 datasets without filters,
 * scalar float64 attributes and a fixed-length ASCII "format" string. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/mk_hdf5.h"
#include "mk_unet.h"

#define MK_H5_MAX_ELEMS ((int64_t)1 << 31)

/* checkpoints are rewritten often and read back whole: stored as plain h5py would */
static const mk_h5_write_opts PLAIN = {.gzip = MK_H5_CONTIGUOUS};

/* "enc.0.1.weight" -> "<group>/enc/0/1/weight" (the name used in messages) */
static void dset_path(char *buf, size_t n, const char *group, const char *name)
{
    snprintf(buf, n, "%s/%s", group, name);
    for (char *p = buf + strlen(group) + 1; *p; p++)
        if (*p == '.')
            *p = '/';
}

/* io wants absolute object paths: "params/x" -> "/params/x" */
static const char *abs_path(char *buf, size_t n, const char *dset)
{
    snprintf(buf, n, "%s%s", dset[0] == '/' ? "" : "/", dset);
    return buf;
}

static mk_status write_f32(mk_ctx *ctx, mk_h5_file *f, const char *dset, const mk_tensor *t)
{
    char ap[260];
    return mk_h5_write_tensor(ctx, f, abs_path(ap, sizeof ap, dset), MK_DT_FLOAT32, t->ndim, t->ne,
                              t->data, &PLAIN);
}

static mk_status attr_double(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                             double v)
{
    return mk_h5_attr_set_f64(ctx, f, obj, name, MK_H5_SCALAR, &v);
}

static mk_status save_body(mk_ctx *ctx, mk_h5_file *f, mk_nn_params *params, mk_optim *opt)
{
    char dset[256];
    mk_status st = mk_h5_attr_set_fixed_str(ctx, f, "/", "format", "medkd-checkpoint");
    if (st == MK_OK)
        st = attr_double(ctx, f, "/", "version", 1);
    int n = mk_nn_params_count(params);
    for (int i = 0; i < n && st == MK_OK; i++) {
        mk_param *p = mk_nn_params_at(params, i);
        dset_path(dset, sizeof dset, "params", p->name);
        st = write_f32(ctx, f, dset, &p->value);
    }
    if (!opt || st != MK_OK)
        return st;
    const mk_optim_cfg *c = mk_optim_config(opt);
    const struct {
        const char *name;
        double v;
    } attrs[] = {{"kind", c->kind},         {"lr", c->lr},
                 {"beta1", c->beta1},       {"beta2", c->beta2},
                 {"eps", c->eps},           {"weight_decay", c->weight_decay},
                 {"momentum", c->momentum}, {"dampening", c->dampening},
                 {"nesterov", c->nesterov}, {"steps", (double)mk_optim_steps(opt)}};
    st = mk_h5_group(ctx, f, "/optim");
    for (size_t k = 0; k < sizeof attrs / sizeof attrs[0] && st == MK_OK; k++)
        st = attr_double(ctx, f, "/optim", attrs[k].name, attrs[k].v);
    for (int i = 0; i < n && st == MK_OK; i++) {
        mk_param *p = mk_nn_params_at(params, i);
        for (int slot = 0; slot < 2 && st == MK_OK; slot++) {
            float *s = p->is_buffer ? NULL : mk_optim_state(opt, i, slot);
            if (!s)
                continue;
            mk_tensor t = p->value;
            t.data = s;
            dset_path(dset, sizeof dset, slot ? "optim/state1" : "optim/state0", p->name);
            st = write_f32(ctx, f, dset, &t);
        }
    }
    return st;
}

mk_status mk_model_save(mk_ctx *ctx, const char *path, mk_nn_params *params, mk_optim *opt)
{
    mk_h5_file *f = NULL;
    mk_status st = mk_h5_create(ctx, path, &f);
    if (st != MK_OK)
        return st;
    st = save_body(ctx, f, params, opt);
    if (st != MK_OK) {
        mk_h5_abort(f);
        return st;
    }
    return mk_h5_close(ctx, f);
}

mk_status mk_model_save_info(mk_ctx *ctx, const char *path, mk_nn_params *params, mk_optim *opt,
                             const char *attr, const char *text)
{
    mk_h5_file *f = NULL;
    mk_status st = mk_h5_create(ctx, path, &f);
    if (st != MK_OK)
        return st;
    st = save_body(ctx, f, params, opt);
    if (st == MK_OK && attr && text)
        st = mk_h5_attr_set_str(ctx, f, "/", attr, text);
    if (st != MK_OK) {
        mk_h5_abort(f);
        return st;
    }
    return mk_h5_close(ctx, f);
}

static mk_status open_ro(mk_ctx *ctx, const char *path, mk_h5_file **f);

mk_status mk_model_read_info(mk_ctx *ctx, const char *path, const char *attr, char **text)
{
    *text = NULL;
    mk_h5_file *f = NULL;
    mk_status st = open_ro(ctx, path, &f);
    if (st != MK_OK)
        return st;
    size_t cap = (size_t)1 << 20;
    char *buf = malloc(cap);
    if (!buf) {
        mk_h5_close(ctx, f);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    mk_ctx quiet;
    mk_ctx_init(&quiet);
    if (mk_h5_attr_get_str(&quiet, f, "/", attr, buf, cap) != MK_OK) {
        free(buf);
        mk_h5_close(ctx, f);
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: expected a model file with the attribute '%s' (what inference needs: "
                      "written by the training stages since medkd 0.1), got none",
                      path, attr);
    }
    *text = buf;
    return mk_h5_close(ctx, f);
}

static mk_status open_ro(mk_ctx *ctx, const char *path, mk_h5_file **f)
{
    mk_status st = mk_h5_open(ctx, path, f);
    if (st == MK_ERR_IO)
        return mk_err(ctx, MK_ERR_IO, "%s: no such file", path);
    if (st == MK_ERR_FORMAT)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: not an HDF5 file (or unreadable)", path);
    return st;
}

/* Shape of dataset dset (rank 0 -> {1}) within the limits of a model tensor; MK_OK or an error
 * naming it. */
static mk_status dset_shape(mk_ctx *ctx, mk_h5_file *f, const char *path, const char *dset,
                            int *rank, int64_t *ne)
{
    char ap[260];
    int r = 0;
    int64_t sh[MK_H5_MAX_RANK];
    if (!mk_h5_exists(f, abs_path(ap, sizeof ap, dset)))
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: missing", path, dset);
    mk_status st = mk_h5_dataset_shape(ctx, f, ap, &r, sh);
    if (st != MK_OK) /* not a dataset, rank > 8: io's message names file and object */
        return st;
    if (r > MK_TENSOR_MAX_DIMS)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: rank %d, expected 0..%d", path, dset, r,
                      MK_TENSOR_MAX_DIMS);
    int64_t tot = 1;
    for (int i = 0; i < r; i++) {
        ne[i] = sh[i];
        tot *= ne[i] > 0 ? ne[i] : 1;
        if (tot > MK_H5_MAX_ELEMS)
            return mk_err(ctx, MK_ERR_NOMEM, "%s: dataset %s: too large", path, dset);
    }
    if (r == 0) {
        r = 1;
        ne[0] = 1;
    }
    *rank = r;
    return MK_OK;
}

/* Read dataset dset (all n elements, converted to dtype) into dst. */
static mk_status read_all(mk_ctx *ctx, mk_h5_file *f, const char *path, const char *dset,
                          mk_dtype dtype, int64_t n, void *dst)
{
    char ap[260];
    if (mk_h5_read_into(ctx, f, abs_path(ap, sizeof ap, dset), dtype, n, dst) != MK_OK)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot read as %s", path, dset,
                      dtype == MK_DT_FLOAT32 ? "float32" : mk_dtype_name(dtype));
    return MK_OK;
}

/* Reads dataset dset into dst, which must have exactly shape t->ne (rank 0 datasets match 1
 * element). */
static mk_status read_into(mk_ctx *ctx, mk_h5_file *f, const char *path, const char *dset,
                           const mk_tensor *t)
{
    char ap[260];
    int rank = 0;
    int64_t dims[MK_H5_MAX_RANK];
    if (!mk_h5_exists(f, abs_path(ap, sizeof ap, dset)))
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: missing", path, dset);
    mk_status st = mk_h5_dataset_shape(ctx, f, ap, &rank, dims);
    if (st != MK_OK)
        return st;
    int same = rank == t->ndim;
    for (int i = 0; same && i < rank; i++)
        same = dims[i] == t->ne[i];
    if (!same) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "x" : "",
                     (long long)t->ne[i]);
        for (int i = 0; i < rank; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "x" : "",
                     (long long)dims[i]);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: expected shape %s, got %s", path, dset,
                      want, rank ? got : "scalar");
    }
    return read_all(ctx, f, path, dset, MK_DT_FLOAT32, mk_tensor_numel(t), t->data);
}

static mk_status load_body(mk_ctx *ctx, mk_h5_file *f, const char *path, const char *group,
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
    if (!opt || !mk_h5_exists(f, "/optim"))
        return MK_OK;
    double kind = -1, steps = 0;
    if (mk_h5_attr_get_f64(ctx, f, "/optim", "kind", 1, &kind, NULL) != MK_OK ||
        mk_h5_attr_get_f64(ctx, f, "/optim", "steps", 1, &steps, NULL) != MK_OK)
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

mk_status mk_model_load(mk_ctx *ctx, const char *path, const char *group, mk_nn_params *params,
                        mk_optim *opt)
{
    mk_h5_file *f = NULL;
    mk_status st = open_ro(ctx, path, &f);
    if (st == MK_OK) {
        st = load_body(ctx, f, path, group, params, opt);
        mk_h5_close(NULL, f); /* read-only: a failing close changes nothing, as before */
    }
    return st;
}

mk_status mk_model_h5_read(mk_ctx *ctx, const char *path, const char *dset, mk_tensor *out)
{
    memset(out, 0, sizeof *out);
    mk_h5_file *f = NULL;
    mk_status st = open_ro(ctx, path, &f);
    if (st != MK_OK)
        return st;
    int rank;
    int64_t ne[MK_TENSOR_MAX_DIMS];
    st = dset_shape(ctx, f, path, dset, &rank, ne);
    if (st == MK_OK) {
        if (mk_tensor_new(out, rank, ne) != 0)
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: dataset %s: out of memory", path, dset);
        else
            st = read_all(ctx, f, path, dset, MK_DT_FLOAT32, mk_tensor_numel(out), out->data);
    }
    mk_h5_close(NULL, f);
    if (st != MK_OK)
        mk_tensor_free(out);
    return st;
}

mk_status mk_model_h5_read_i32(mk_ctx *ctx, const char *path, const char *dset, int32_t **out,
                               int64_t *n)
{
    *out = NULL;
    *n = 0;
    mk_h5_file *f = NULL;
    mk_status st = open_ro(ctx, path, &f);
    if (st != MK_OK)
        return st;
    int rank;
    int64_t ne[MK_TENSOR_MAX_DIMS], tot = 1;
    st = dset_shape(ctx, f, path, dset, &rank, ne);
    if (st == MK_OK) {
        for (int i = 0; i < rank; i++)
            tot *= ne[i];
        *out = malloc((size_t)(tot > 0 ? tot : 1) * sizeof(int32_t));
        if (!*out)
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: dataset %s: out of memory", path, dset);
        else
            st = read_all(ctx, f, path, dset, MK_DT_INT32, tot, *out);
        *n = tot;
    }
    mk_h5_close(NULL, f);
    if (st != MK_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return st;
}
