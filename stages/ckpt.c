/* Multi-model HDF5 checkpoints of the training stages (layout in stage_internal.h). */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdio.h>
#include <string.h>

#include "core/mk_fs.h"
#include "stage_internal.h"

uint64_t mk__seed(uint64_t seed, uint64_t stream)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

mk_status mk__run_path(mk_ctx *ctx, const char *run_dir, const char *sub, const char *name,
                       char *buf, size_t n)
{
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", run_dir, sub) >= sizeof dir ||
        (size_t)snprintf(buf, n, "%s/%s/%s", run_dir, sub, name) >= n)
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", run_dir);
    return mk_fs_mkdirs(ctx, dir);
}

/* "a.b.c" -> "<prefix>/a/b/c" */
static int dset_path(char *buf, size_t n, const char *prefix, const char *name)
{
    size_t lp = strlen(prefix);
    if ((size_t)snprintf(buf, n, "%s/%s", prefix, name) >= n)
        return -1;
    for (char *p = buf + lp + 1; *p; p++)
        if (*p == '.')
            *p = '/';
    return 0;
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

static int attr_read_double(hid_t f, const char *obj, const char *name, double *v)
{
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0)
        return -1;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        return -1;
    herr_t e = H5Aread(a, H5T_NATIVE_DOUBLE, v);
    H5Aclose(a);
    return e < 0 ? -1 : 0;
}

static int write_arr(hid_t f, hid_t lcpl, const char *dset, int ndim, const int64_t *ne,
                     hid_t ftype, hid_t mtype, const void *data)
{
    hsize_t dims[MK_TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = (hsize_t)ne[i];
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(f, dset, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    return e < 0 ? -1 : 0;
}

/* read dataset with exactly numel elements */
static mk_status read_arr(mk_ctx *ctx, hid_t f, const char *path, const char *dset, int64_t numel,
                          hid_t mtype, void *data)
{
    if (H5LTpath_valid(f, dset, 1) <= 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: missing", path, dset);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    if (d < 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot open", path, dset);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    mk_status st = MK_OK;
    if (n != numel)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: expected %lld elements, got %lld", path,
                    dset, (long long)numel, (long long)n);
    else if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: cannot read", path, dset);
    H5Sclose(sp);
    H5Dclose(d);
    return st;
}

static mk_status save_body(mk_ctx *ctx, hid_t f, const char *path, const char *stage,
                           long long iteration, const mk__ck_model *m, int nm, const mk__ck_rng *r,
                           int nr)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    char dset[512], pre[256];
    mk_status st = MK_OK;
    if (H5LTset_attribute_string(f, "/", "format", "medkd-stage-checkpoint") < 0 ||
        H5LTset_attribute_string(f, "/", "stage", stage) < 0 ||
        attr_double(f, "iteration", (double)iteration) < 0)
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot write root attributes", path);
    for (int k = 0; k < nm && st == MK_OK; k++) {
        int n = mk_nn_params_count(m[k].params);
        snprintf(pre, sizeof pre, "%s/params", m[k].name);
        for (int i = 0; i < n && st == MK_OK; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            if (dset_path(dset, sizeof dset, pre, p->name) ||
                write_arr(f, lcpl, dset, p->value.ndim, p->value.ne, H5T_IEEE_F32LE,
                          H5T_NATIVE_FLOAT, p->value.data))
                st = mk_err(ctx, MK_ERR_IO, "%s: cannot write dataset %s", path, dset);
        }
        if (!m[k].opt || st != MK_OK)
            continue;
        snprintf(pre, sizeof pre, "%s/optim", m[k].name);
        hid_t g = H5Gcreate2(f, pre, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0 || attr_double(g, "steps", (double)mk_optim_steps(m[k].opt)) < 0)
            st = mk_err(ctx, MK_ERR_IO, "%s: cannot write group %s", path, pre);
        if (g >= 0)
            H5Gclose(g);
        for (int i = 0; i < n && st == MK_OK; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            for (int slot = 0; slot < 2 && st == MK_OK; slot++) {
                float *s = p->is_buffer ? NULL : mk_optim_state(m[k].opt, i, slot);
                if (!s)
                    continue;
                snprintf(pre, sizeof pre, "%s/optim/state%d", m[k].name, slot);
                if (dset_path(dset, sizeof dset, pre, p->name) ||
                    write_arr(f, lcpl, dset, p->value.ndim, p->value.ne, H5T_IEEE_F32LE,
                              H5T_NATIVE_FLOAT, s))
                    st = mk_err(ctx, MK_ERR_IO, "%s: cannot write dataset %s", path, dset);
            }
        }
    }
    for (int k = 0; k < nr && st == MK_OK; k++) {
        int64_t four = 4;
        snprintf(dset, sizeof dset, "rng/%s", r[k].name);
        if (write_arr(f, lcpl, dset, 1, &four, H5T_STD_U64LE, H5T_NATIVE_UINT64, r[k].rng->s))
            st = mk_err(ctx, MK_ERR_IO, "%s: cannot write dataset %s", path, dset);
    }
    H5Pclose(lcpl);
    return st;
}

mk_status mk__ckpt_save(mk_ctx *ctx, const char *path, const char *stage, long long iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr)
{
    char tmp[4200];
    mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
    if (st != MK_OK)
        return st;
    H5E_auto2_t fn;
    void *fd;
    H5Eget_auto2(H5E_DEFAULT, &fn, &fd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot create HDF5 file", tmp);
    } else {
        st = save_body(ctx, f, path, stage, iteration, m, nm, r, nr);
        if (H5Fclose(f) < 0 && st == MK_OK)
            st = mk_err(ctx, MK_ERR_IO, "%s: cannot close HDF5 file", tmp);
    }
    H5Eset_auto2(H5E_DEFAULT, fn, fd);
    if (st != MK_OK) {
        mk_fs_discard(tmp);
        return st;
    }
    return mk_fs_commit(ctx, tmp, path);
}

static mk_status load_body(mk_ctx *ctx, hid_t f, const char *path, const char *stage,
                           long long *iteration, const mk__ck_model *m, int nm,
                           const mk__ck_rng *r, int nr)
{
    char dset[512], pre[256], have[64] = "";
    double it = 0;
    hsize_t adims[4] = {0};
    H5T_class_t acls;
    size_t asz = 0;
    if (H5Aexists(f, "stage") <= 0 ||
        H5LTget_attribute_info(f, "/", "stage", adims, &acls, &asz) < 0 || acls != H5T_STRING ||
        asz >= sizeof have || H5LTget_attribute_string(f, "/", "stage", have) < 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: not a medkd stage checkpoint (no 'stage' "
                      "attribute)", path);
    if (strcmp(have, stage) != 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute stage: expected '%s', got '%s'", path,
                      stage, have);
    if (attr_read_double(f, "/", "iteration", &it) || it < 0 || it > 1e15)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute iteration: missing or out of range",
                      path);
    for (int k = 0; k < nm; k++) {
        int n = mk_nn_params_count(m[k].params);
        snprintf(pre, sizeof pre, "%s/params", m[k].name);
        for (int i = 0; i < n; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            dset_path(dset, sizeof dset, pre, p->name);
            mk_status st = read_arr(ctx, f, path, dset, mk_tensor_numel(&p->value),
                                    H5T_NATIVE_FLOAT, p->value.data);
            if (st != MK_OK)
                return st;
        }
        if (!m[k].opt)
            continue;
        double steps = 0;
        snprintf(pre, sizeof pre, "%s/optim", m[k].name);
        if (attr_read_double(f, pre, "steps", &steps) || steps < 0 || steps > 1e15)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: /%s: attribute steps missing or out of range",
                          path, pre);
        for (int i = 0; i < n; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            for (int slot = 0; slot < 2; slot++) {
                float *s = p->is_buffer ? NULL : mk_optim_state(m[k].opt, i, slot);
                if (!s)
                    continue;
                snprintf(pre, sizeof pre, "%s/optim/state%d", m[k].name, slot);
                dset_path(dset, sizeof dset, pre, p->name);
                mk_status st = read_arr(ctx, f, path, dset, mk_tensor_numel(&p->value),
                                        H5T_NATIVE_FLOAT, s);
                if (st != MK_OK)
                    return st;
            }
        }
        mk_optim_set_steps(m[k].opt, (long long)steps);
    }
    for (int k = 0; k < nr; k++) {
        snprintf(dset, sizeof dset, "rng/%s", r[k].name);
        mk_status st = read_arr(ctx, f, path, dset, 4, H5T_NATIVE_UINT64, r[k].rng->s);
        if (st != MK_OK)
            return st;
    }
    if (iteration)
        *iteration = (long long)it;
    return MK_OK;
}

mk_status mk__ckpt_load(mk_ctx *ctx, const char *path, const char *stage, long long *iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr)
{
    if (!mk_fs_is_file(path))
        return mk_err(ctx, MK_ERR_IO, "%s: no such file", path);
    H5E_auto2_t fn;
    void *fd;
    H5Eget_auto2(H5E_DEFAULT, &fn, &fd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    mk_status st;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: not an HDF5 file (or unreadable)", path);
    } else {
        st = load_body(ctx, f, path, stage, iteration, m, nm, r, nr);
        H5Fclose(f);
    }
    H5Eset_auto2(H5E_DEFAULT, fn, fd);
    return st;
}
