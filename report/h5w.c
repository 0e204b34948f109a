/* Small atomic HDF5 writer on libhdf5: datasets of f64/i64/i8 and strings, attributes, groups
 * created on demand. HDF5's own error stack printing is switched off; failures become statuses
 * naming the file and the object. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "mk_report.h"

struct mk_h5w {
    mk_ctx *ctx;
    hid_t file;
    char path[4096];
    char tmp[4200];
    mk_status st; /* first failure: later calls are no-ops */
};

mk_status mk_h5w_open(mk_ctx *ctx, const char *path, mk_h5w **out)
{
    *out = NULL;
    mk_h5w *w = calloc(1, sizeof *w);
    if (!w)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    w->ctx = ctx;
    if (strlen(path) >= sizeof w->path) {
        free(w);
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", path);
    }
    strcpy(w->path, path);
    mk_status st = mk_fs_tmp_path(ctx, path, w->tmp, sizeof w->tmp);
    if (st != MK_OK) {
        free(w);
        return st;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        free(w);
        return mk_err(ctx, MK_ERR_IO,
                      "%s: cannot create HDF5 file (directory missing or not writable?)", path);
    }
    *out = w;
    return MK_OK;
}

static mk_status fail(mk_h5w *w, const char *what, const char *name)
{
    if (w->st == MK_OK)
        w->st = mk_err(w->ctx, MK_ERR_IO, "%s: HDF5 %s '%s' failed", w->path, what, name);
    return w->st;
}

static hid_t lcpl(void)
{
    hid_t p = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(p, 1);
    return p;
}

static mk_status write_ds(mk_h5w *w, const char *name, hid_t mtype, hid_t ftype, int rank,
                          const int64_t *dims, const void *data)
{
    if (w->st != MK_OK)
        return w->st;
    if (rank < 1 || rank > 3)
        return fail(w, "dataset rank", name);
    hsize_t hd[3];
    for (int i = 0; i < rank; i++)
        hd[i] = (hsize_t)dims[i];
    hid_t sp = H5Screate_simple(rank, hd, NULL);
    hid_t lp = lcpl();
    hid_t ds = H5Dcreate2(w->file, name, ftype, sp, lp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(lp);
    H5Sclose(sp);
    return e < 0 ? fail(w, "dataset", name) : MK_OK;
}

mk_status mk_h5w_f64(mk_h5w *w, const char *name, int rank, const int64_t *dims, const double *data)
{
    return write_ds(w, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, rank, dims, data);
}

mk_status mk_h5w_i64(mk_h5w *w, const char *name, int rank, const int64_t *dims,
                     const int64_t *data)
{
    return write_ds(w, name, H5T_NATIVE_INT64, H5T_STD_I64LE, rank, dims, data);
}

mk_status mk_h5w_i8(mk_h5w *w, const char *name, int rank, const int64_t *dims, const int8_t *data)
{
    return write_ds(w, name, H5T_NATIVE_INT8, H5T_STD_I8LE, rank, dims, data);
}

static hid_t vstr_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

mk_status mk_h5w_strings(mk_h5w *w, const char *name, int64_t n, const char *const *s)
{
    if (w->st != MK_OK)
        return w->st;
    hid_t t = vstr_type();
    int64_t d = n;
    const char *dummy = "";
    mk_status st = write_ds(w, name, t, t, 1, &d, n > 0 ? (const void *)s : (const void *)&dummy);
    H5Tclose(t);
    return st;
}

static hid_t open_obj(mk_h5w *w, const char *obj)
{
    if (strcmp(obj, "/") == 0)
        return H5Oopen(w->file, "/", H5P_DEFAULT);
    if (H5Lexists(w->file, obj, H5P_DEFAULT) <= 0) {
        hid_t lp = lcpl();
        hid_t g = H5Gcreate2(w->file, obj, lp, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lp);
        if (g < 0)
            return -1;
        H5Gclose(g);
    }
    return H5Oopen(w->file, obj, H5P_DEFAULT);
}

static mk_status write_attr(mk_h5w *w, const char *obj, const char *name, hid_t type, const void *v)
{
    if (w->st != MK_OK)
        return w->st;
    hid_t o = open_obj(w, obj);
    if (o < 0)
        return fail(w, "object", obj);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, type, v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    return e < 0 ? fail(w, "attribute", name) : MK_OK;
}

mk_status mk_h5w_attr_str(mk_h5w *w, const char *obj, const char *name, const char *value)
{
    hid_t t = vstr_type();
    mk_status st = write_attr(w, obj, name, t, &value);
    H5Tclose(t);
    return st;
}

mk_status mk_h5w_attr_f64(mk_h5w *w, const char *obj, const char *name, double value)
{
    return write_attr(w, obj, name, H5T_NATIVE_DOUBLE, &value);
}

mk_status mk_h5w_attr_i64(mk_h5w *w, const char *obj, const char *name, int64_t value)
{
    return write_attr(w, obj, name, H5T_NATIVE_INT64, &value);
}

mk_status mk_h5w_commit(mk_h5w *w)
{
    mk_status st = w->st;
    if (H5Fclose(w->file) < 0 && st == MK_OK)
        st = mk_err(w->ctx, MK_ERR_IO, "%s: closing the HDF5 file failed", w->path);
    if (st == MK_OK)
        st = mk_fs_commit(w->ctx, w->tmp, w->path);
    else
        mk_fs_discard(w->tmp);
    free(w);
    return st;
}

void mk_h5w_abort(mk_h5w *w)
{
    if (!w)
        return;
    H5Fclose(w->file);
    mk_fs_discard(w->tmp);
    free(w);
}
