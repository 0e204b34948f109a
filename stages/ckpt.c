/* Multi-model HDF5 checkpoints of the training stages (layout in stage_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "io/mk_hdf5.h"
#include "stage_internal.h"

uint64_t mk__seed(uint64_t seed, uint64_t stream)
{
    uint64_t z =
        seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
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

/* "a.b.c" -> "/<prefix>/a/b/c" */
static void dset_path(char *buf, size_t n, const char *prefix, const char *name)
{
    snprintf(buf, n, "/%s/%s", prefix, name);
    for (char *p = buf + strlen(prefix) + 2; *p; p++)
        if (*p == '.')
            *p = '/';
}

/* checkpoints are rewritten often and read back at once: stored without compression */
static const mk_h5_write_opts PLAIN = {0, 0, {0}};

static mk_status write_arr(mk_ctx *ctx, mk_h5_file *f, const char *dset, mk_dtype dt, int ndim,
                           const int64_t *ne, const void *data)
{
    return mk_h5_write_tensor(ctx, f, dset, dt, ndim, ne, data, &PLAIN);
}

/* read a dataset with exactly numel elements into data */
static mk_status read_arr(mk_ctx *ctx, mk_h5_file *f, const char *path, const char *dset,
                          mk_dtype dt, int64_t numel, void *data)
{
    int rank = 0;
    int64_t shape[MK_H5_MAX_RANK];
    void *buf = NULL;
    mk_status st = mk_h5_read_tensor(ctx, f, dset, dt, &rank, shape, &buf);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "%s: dataset %s", path, dset);
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= shape[i];
    if (n != numel)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: dataset %s: expected %lld elements, got %lld", path,
                    dset, (long long)numel, (long long)n);
    else
        memcpy(data, buf, (size_t)n * mk_dtype_size(dt));
    free(buf);
    return st;
}

static mk_status save_body(mk_ctx *ctx, mk_h5_file *f, const char *stage, long long iteration,
                           const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr)
{
    char dset[512], pre[256];
    double it = (double)iteration;
    mk_status st = mk_h5_attr_set_str(ctx, f, "/", "format", "medkd-stage-checkpoint");
    if (st == MK_OK)
        st = mk_h5_attr_set_str(ctx, f, "/", "stage", stage);
    if (st == MK_OK)
        st = mk_h5_attr_set_f64(ctx, f, "/", "iteration", 1, &it);
    for (int k = 0; k < nm && st == MK_OK; k++) {
        int n = mk_nn_params_count(m[k].params);
        snprintf(pre, sizeof pre, "%s/params", m[k].name);
        for (int i = 0; i < n && st == MK_OK; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            dset_path(dset, sizeof dset, pre, p->name);
            st = write_arr(ctx, f, dset, MK_DT_FLOAT32, p->value.ndim, p->value.ne, p->value.data);
        }
        if (!m[k].opt || st != MK_OK)
            continue;
        double steps = (double)mk_optim_steps(m[k].opt);
        snprintf(pre, sizeof pre, "/%s/optim", m[k].name);
        st = mk_h5_attr_set_f64(ctx, f, pre, "steps", 1, &steps);
        for (int i = 0; i < n && st == MK_OK; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            for (int slot = 0; slot < 2 && st == MK_OK; slot++) {
                float *s = p->is_buffer ? NULL : mk_optim_state(m[k].opt, i, slot);
                if (!s)
                    continue;
                snprintf(pre, sizeof pre, "%s/optim/state%d", m[k].name, slot);
                dset_path(dset, sizeof dset, pre, p->name);
                st = write_arr(ctx, f, dset, MK_DT_FLOAT32, p->value.ndim, p->value.ne, s);
            }
        }
    }
    for (int k = 0; k < nr && st == MK_OK; k++) {
        int64_t four = 4;
        snprintf(dset, sizeof dset, "/rng/%s", r[k].name);
        st = write_arr(ctx, f, dset, MK_DT_UINT64, 1, &four, r[k].rng->s);
    }
    return st;
}

mk_status mk__ckpt_save(mk_ctx *ctx, const char *path, const char *stage, long long iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr)
{
    mk_h5_file *f = NULL;
    mk_status st = mk_h5_create(ctx, path, &f);
    if (st != MK_OK)
        return st;
    if ((st = save_body(ctx, f, stage, iteration, m, nm, r, nr)) != MK_OK) {
        mk_h5_abort(f);
        return st;
    }
    return mk_h5_close(ctx, f);
}

static mk_status load_body(mk_ctx *ctx, mk_h5_file *f, const char *path, const char *stage,
                           long long *iteration, const mk__ck_model *m, int nm, const mk__ck_rng *r,
                           int nr)
{
    char dset[512], pre[256], have[64] = "";
    double it = 0;
    int got = 0;
    if (mk_h5_attr_get_str(ctx, f, "/", "stage", have, sizeof have) != MK_OK)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: not a medkd stage checkpoint (no 'stage' "
                      "attribute)",
                      path);
    if (strcmp(have, stage) != 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute stage: expected '%s', got '%s'", path,
                      stage, have);
    if (mk_h5_attr_get_f64(ctx, f, "/", "iteration", 1, &it, &got) != MK_OK || got != 1 || it < 0 ||
        it > 1e15)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute iteration: missing or out of range", path);
    for (int k = 0; k < nm; k++) {
        int n = mk_nn_params_count(m[k].params);
        snprintf(pre, sizeof pre, "%s/params", m[k].name);
        for (int i = 0; i < n; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            dset_path(dset, sizeof dset, pre, p->name);
            mk_status st = read_arr(ctx, f, path, dset, MK_DT_FLOAT32, mk_tensor_numel(&p->value),
                                    p->value.data);
            if (st != MK_OK)
                return st;
        }
        if (!m[k].opt)
            continue;
        double steps = 0;
        snprintf(pre, sizeof pre, "/%s/optim", m[k].name);
        if (mk_h5_attr_get_f64(ctx, f, pre, "steps", 1, &steps, &got) != MK_OK || got != 1 ||
            steps < 0 || steps > 1e15)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: %s: attribute steps missing or out of range",
                          path, pre);
        for (int i = 0; i < n; i++) {
            mk_param *p = mk_nn_params_at(m[k].params, i);
            for (int slot = 0; slot < 2; slot++) {
                float *s = p->is_buffer ? NULL : mk_optim_state(m[k].opt, i, slot);
                if (!s)
                    continue;
                snprintf(pre, sizeof pre, "%s/optim/state%d", m[k].name, slot);
                dset_path(dset, sizeof dset, pre, p->name);
                mk_status st =
                    read_arr(ctx, f, path, dset, MK_DT_FLOAT32, mk_tensor_numel(&p->value), s);
                if (st != MK_OK)
                    return st;
            }
        }
        mk_optim_set_steps(m[k].opt, (long long)steps);
    }
    for (int k = 0; k < nr; k++) {
        snprintf(dset, sizeof dset, "/rng/%s", r[k].name);
        mk_status st = read_arr(ctx, f, path, dset, MK_DT_UINT64, 4, r[k].rng->s);
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
    mk_h5_file *f = NULL;
    mk_status st = mk_h5_open(ctx, path, &f);
    if (st != MK_OK)
        return st;
    st = load_body(ctx, f, path, stage, iteration, m, nm, r, nr);
    mk_h5_close(ctx, f);
    return st;
}
