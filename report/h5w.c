/* Small atomic HDF5 writer (mk_report.h) on io's HDF5 layer (io/mk_hdf5.h): contiguous datasets of
 * f64/i64/i8 and variable-length strings, scalar attributes, groups created on demand. The first
 * failure is kept: later calls are no-ops returning it, and commit discards the file. */
#include <stdlib.h>
#include <string.h>

#include "../io/mk_hdf5.h"
#include "mk_report.h"

struct mk_h5w {
    mk_ctx *ctx;
    mk_h5_file *file;
    mk_status st; /* first failure: later calls are no-ops */
};

/* reports are small and read whole: stored unchunked and unfiltered, as plain h5py would */
static const mk_h5_write_opts PLAIN = {.gzip = MK_H5_CONTIGUOUS};

mk_status mk_h5w_open(mk_ctx *ctx, const char *path, mk_h5w **out)
{
    *out = NULL;
    if (strlen(path) >= 4096)
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", path);
    mk_h5w *w = calloc(1, sizeof *w);
    if (!w)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    w->ctx = ctx;
    mk_status st = mk_h5_create(ctx, path, &w->file);
    if (st != MK_OK) {
        free(w);
        if (st == MK_ERR_IO)
            return mk_err(ctx, MK_ERR_IO,
                          "%s: cannot create HDF5 file (directory missing or not writable?)", path);
        return st;
    }
    *out = w;
    return MK_OK;
}

static mk_status keep(mk_h5w *w, mk_status st)
{
    if (w->st == MK_OK)
        w->st = st;
    return w->st;
}

static mk_status write_ds(mk_h5w *w, const char *name, mk_dtype dt, int rank, const int64_t *dims,
                          const void *data)
{
    if (w->st != MK_OK)
        return w->st;
    if (rank < 1 || rank > 3)
        return keep(w, mk_err(w->ctx, MK_ERR_IO, "%s: %s: field rank: expected 1..3, got %d",
                              mk_h5_path(w->file), name, rank));
    return keep(w, mk_h5_write_tensor(w->ctx, w->file, name, dt, rank, dims, data, &PLAIN));
}

mk_status mk_h5w_f64(mk_h5w *w, const char *name, int rank, const int64_t *dims, const double *data)
{
    return write_ds(w, name, MK_DT_FLOAT64, rank, dims, data);
}

mk_status mk_h5w_i64(mk_h5w *w, const char *name, int rank, const int64_t *dims,
                     const int64_t *data)
{
    return write_ds(w, name, MK_DT_INT64, rank, dims, data);
}

mk_status mk_h5w_i8(mk_h5w *w, const char *name, int rank, const int64_t *dims, const int8_t *data)
{
    return write_ds(w, name, MK_DT_INT8, rank, dims, data);
}

mk_status mk_h5w_strings(mk_h5w *w, const char *name, int64_t n, const char *const *s)
{
    if (w->st != MK_OK)
        return w->st;
    return keep(w, mk_h5_write_strings(w->ctx, w->file, name, n, s));
}

mk_status mk_h5w_attr_str(mk_h5w *w, const char *obj, const char *name, const char *value)
{
    if (w->st != MK_OK)
        return w->st;
    return keep(w, mk_h5_attr_set_str(w->ctx, w->file, obj, name, value));
}

mk_status mk_h5w_attr_f64(mk_h5w *w, const char *obj, const char *name, double value)
{
    if (w->st != MK_OK)
        return w->st;
    return keep(w, mk_h5_attr_set_f64(w->ctx, w->file, obj, name, MK_H5_SCALAR, &value));
}

mk_status mk_h5w_attr_i64(mk_h5w *w, const char *obj, const char *name, int64_t value)
{
    if (w->st != MK_OK)
        return w->st;
    return keep(w, mk_h5_attr_set_i64(w->ctx, w->file, obj, name, MK_H5_SCALAR, &value));
}

mk_status mk_h5w_commit(mk_h5w *w)
{
    mk_status st = w->st;
    if (st == MK_OK)
        st = mk_h5_close(w->ctx, w->file);
    else
        mk_h5_abort(w->file);
    free(w);
    return st;
}

void mk_h5w_abort(mk_h5w *w)
{
    if (!w)
        return;
    mk_h5_abort(w->file);
    free(w);
}
