/* medkd HDF5 helpers (see mk_hdf5.h). */
#include "mk_hdf5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "../core/mk_fs.h"
#include "mk_nifti.h"

struct mk_h5_file {
    hid_t fid;
    int writing;
    char path[4096];
    char tmp[4200]; /* the in-memory file's name (writing) */
};

static void h5_quiet(void)
{
    /* HDF5 prints its error stack to stderr by default; we report our own messages. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* The innermost HDF5 error description, for a hint in our messages. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *user)
{
    if (n == 0 && e && e->desc)
        snprintf((char *)user, 200, "%s", e->desc);
    return 0;
}

static const char *h5_reason(char buf[200])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf[0] ? buf : "HDF5 error";
}

static mk_status h5_fail(mk_ctx *ctx, mk_status s, const mk_h5_file *f, const char *obj,
                         const char *what)
{
    char r[200];
    return mk_err(ctx, s, "%s: %s%s%s: %s", f->path, obj ? obj : "", obj ? ": " : "", what,
                  h5_reason(r));
}

static hid_t mem_type(mk_dtype t)
{
    switch (t) {
    case MK_DT_UINT8: return H5T_NATIVE_UINT8;
    case MK_DT_INT8: return H5T_NATIVE_INT8;
    case MK_DT_UINT16: return H5T_NATIVE_UINT16;
    case MK_DT_INT16: return H5T_NATIVE_INT16;
    case MK_DT_UINT32: return H5T_NATIVE_UINT32;
    case MK_DT_INT32: return H5T_NATIVE_INT32;
    case MK_DT_UINT64: return H5T_NATIVE_UINT64;
    case MK_DT_INT64: return H5T_NATIVE_INT64;
    case MK_DT_FLOAT32: return H5T_NATIVE_FLOAT;
    case MK_DT_FLOAT64: return H5T_NATIVE_DOUBLE;
    default: return -1;
    }
}

/* mk_dtype of a stored numeric type, -1 if none fits. */
static int dtype_of(hid_t t)
{
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    if (c == H5T_FLOAT)
        return sz == 4 ? MK_DT_FLOAT32 : sz == 8 ? MK_DT_FLOAT64 : -1;
    if (c != H5T_INTEGER)
        return -1;
    int sgn = H5Tget_sign(t) == H5T_SGN_2;
    switch (sz) {
    case 1: return sgn ? MK_DT_INT8 : MK_DT_UINT8;
    case 2: return sgn ? MK_DT_INT16 : MK_DT_UINT16;
    case 4: return sgn ? MK_DT_INT32 : MK_DT_UINT32;
    case 8: return sgn ? MK_DT_INT64 : MK_DT_UINT64;
    default: return -1;
    }
}

/* ---- files ---------------------------------------------------------------------------------- */

mk_status mk_h5_create(mk_ctx *ctx, const char *path, mk_h5_file **out)
{
    *out = NULL;
    h5_quiet();
    mk_h5_file *f = calloc(1, sizeof *f);
    if (!f)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    /* The file is built in memory (core driver, no backing store) and written by mk_h5_close
     * through the atomic-write path: HDF5 itself never writes to disk, so a full disk is one
     * clear error there, and a failed H5Fclose cannot leave HDF5 1.10's exit handler a file it
     * crashes on (HDFGroup/hdf5#2257). */
    snprintf(f->tmp, sizeof f->tmp, "%s.h5mem.%p", path, (void *)f);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        mk_status st = h5_fail(ctx, MK_ERR_IO, f, NULL, "cannot create");
        free(f);
        return st;
    }
    f->fid = H5Fcreate(f->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f->fid < 0) {
        mk_status st = h5_fail(ctx, MK_ERR_IO, f, NULL, "cannot create");
        free(f);
        return st;
    }
    f->writing = 1;
    *out = f;
    return MK_OK;
}

mk_status mk_h5_open(mk_ctx *ctx, const char *path, mk_h5_file **out)
{
    *out = NULL;
    h5_quiet();
    if (!mk_fs_is_file(path))
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open: no such file", path);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field signature: expected an HDF5 file, got another "
                      "format or a damaged superblock",
                      path);
    }
    mk_h5_file *f = calloc(1, sizeof *f);
    if (!f)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->fid < 0) {
        mk_status st = h5_fail(ctx, MK_ERR_FORMAT, f, NULL, "cannot open");
        free(f);
        return st;
    }
    *out = f;
    return MK_OK;
}

mk_status mk_h5_close(mk_ctx *ctx, mk_h5_file *f)
{
    if (!f)
        return MK_OK;
    mk_status st = MK_OK;
    void *image = NULL;
    ssize_t n = 0;
    if (f->writing && f->fid >= 0) {
        /* the finished file's bytes, then the in-memory file is closed and the bytes written */
        if (H5Fflush(f->fid, H5F_SCOPE_GLOBAL) < 0 || (n = H5Fget_file_image(f->fid, NULL, 0)) <= 0)
            st = h5_fail(ctx, MK_ERR_IO, f, NULL, "cannot finish the file");
        else if (!(image = malloc((size_t)n)))
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (%lld bytes)", f->path, (long long)n);
        else if (H5Fget_file_image(f->fid, image, (size_t)n) != n)
            st = h5_fail(ctx, MK_ERR_IO, f, NULL, "cannot finish the file");
    }
    if (f->fid >= 0 && H5Fclose(f->fid) < 0 && st == MK_OK)
        st = h5_fail(ctx, MK_ERR_IO, f, NULL, "close failed");
    if (f->writing && st == MK_OK)
        st = mk_fs_write_atomic(ctx, f->path, image, (size_t)n);
    free(image);
    free(f);
    return st;
}

void mk_h5_abort(mk_h5_file *f)
{
    if (!f)
        return;
    if (f->fid >= 0)
        H5Fclose(f->fid); /* in memory when writing: nothing on disk to remove */
    free(f);
}

const char *mk_h5_path(const mk_h5_file *f)
{
    return f->path;
}

/* ---- groups --------------------------------------------------------------------------------- */

static hid_t lcpl_intermediate(void)
{
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(l, 1);
    H5Pset_char_encoding(l, H5T_CSET_UTF8);
    return l;
}

int mk_h5_exists(mk_h5_file *f, const char *path)
{
    if (strcmp(path, "/") == 0)
        return 1;
    /* H5Lexists needs every parent to exist: check component by component */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            htri_t e = H5Lexists(f->fid, buf, H5P_DEFAULT);
            if (e <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return 0;
            }
            if (!c)
                return 1;
            *p = c;
        }
    }
}

mk_status mk_h5_group(mk_ctx *ctx, mk_h5_file *f, const char *group)
{
    if (group[0] != '/')
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: expected an absolute object path", f->path,
                      group);
    if (mk_h5_exists(f, group))
        return MK_OK;
    hid_t l = lcpl_intermediate();
    hid_t g = H5Gcreate2(f->fid, group, l, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(l);
    if (g < 0)
        return h5_fail(ctx, MK_ERR_IO, f, group, "cannot create group");
    H5Gclose(g);
    return MK_OK;
}

/* ---- tensors -------------------------------------------------------------------------------- */

static void auto_chunk(int rank, const hsize_t *dims, size_t esize, hsize_t *chunk)
{
    const size_t target = (size_t)1 << 20;
    size_t inner = esize;
    for (int r = rank - 1; r >= 0; r--) {
        /* the innermost axes are kept whole while they fit; the axis that crosses the target is
         * cut, and every outer axis gets chunk 1 */
        if (inner * dims[r] <= target) {
            chunk[r] = dims[r];
            inner *= dims[r];
        } else {
            hsize_t c = (hsize_t)(target / inner);
            chunk[r] = c < 1 ? 1 : c;
            for (int q = r - 1; q >= 0; q--)
                chunk[q] = 1;
            return;
        }
    }
}

static mk_status check_writable(mk_ctx *ctx, const mk_h5_file *f, const char *path)
{
    if (!f->writing)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: file is open read-only", f->path, path);
    if (path[0] != '/')
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: expected an absolute object path", f->path,
                      path);
    return MK_OK;
}

/* Create dataset path of file type = memory type mt on dataspace sp with creation properties
 * dcpl, and write its nelem values (none written when nelem is 0). */
static mk_status create_and_write(mk_ctx *ctx, mk_h5_file *f, const char *path, hid_t mt, hid_t sp,
                                  hid_t dcpl, const void *data, int64_t nelem)
{
    hid_t l = lcpl_intermediate();
    hid_t ds = H5Dcreate2(f->fid, path, mt, sp, l, dcpl, H5P_DEFAULT);
    mk_status st = MK_OK;
    if (ds < 0)
        st = h5_fail(ctx, MK_ERR_IO, f, path, "cannot create dataset (exists already?)");
    else if (nelem > 0 && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = h5_fail(ctx, MK_ERR_IO, f, path, "write failed");
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(l);
    return st;
}

mk_status mk_h5_write_tensor(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_dtype dtype, int rank,
                             const int64_t *shape, const void *data, const mk_h5_write_opts *opts)
{
    hid_t mt = mem_type(dtype);
    if (mt < 0)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: %s: field dtype: expected a numeric type, got %s", f->path, path,
                      mk_dtype_name(dtype));
    mk_h5_write_opts o = {.gzip = 4, .shuffle = 1};
    if (opts)
        o = *opts;
    /* contiguous datasets may be scalars and may have empty axes; chunked ones may not */
    const int contiguous = o.gzip == MK_H5_CONTIGUOUS, lo = contiguous ? 0 : 1;
    if (rank < lo || rank > MK_H5_MAX_RANK)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: field rank: expected %d..%d, got %d", f->path,
                      path, lo, MK_H5_MAX_RANK, rank);
    mk_status st = check_writable(ctx, f, path);
    if (st != MK_OK)
        return st;
    hsize_t dims[MK_H5_MAX_RANK], chunk[MK_H5_MAX_RANK];
    int64_t nelem = 1;
    for (int r = 0; r < rank; r++) {
        if (shape[r] < lo)
            return mk_err(ctx, MK_ERR_INVALID, "%s: %s: field shape[%d]: expected %s, got %lld",
                          f->path, path, r, contiguous ? ">= 0" : "> 0", (long long)shape[r]);
        dims[r] = (hsize_t)shape[r];
        nelem *= shape[r];
    }
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (!contiguous) {
        int user_chunk = 0;
        for (int r = 0; r < rank; r++)
            user_chunk |= o.chunk[r] != 0;
        if (user_chunk) {
            for (int r = 0; r < rank; r++) {
                chunk[r] = o.chunk[r] > 0 ? (hsize_t)o.chunk[r] : 1;
                if (chunk[r] > dims[r])
                    chunk[r] = dims[r];
            }
        } else {
            auto_chunk(rank, dims, mk_dtype_size(dtype), chunk);
        }
        H5Pset_chunk(dcpl, rank, chunk);
        if (o.shuffle && o.gzip > 0)
            H5Pset_shuffle(dcpl);
        if (o.gzip > 0)
            H5Pset_deflate(dcpl, (unsigned)(o.gzip > 9 ? 9 : o.gzip));
    }
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    st = create_and_write(ctx, f, path, mt, sp, dcpl, data, nelem);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return st;
}

static hid_t vlen_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

mk_status mk_h5_write_strings(mk_ctx *ctx, mk_h5_file *f, const char *path, int64_t n,
                              const char *const *s)
{
    if (n < 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: field count: expected >= 0, got %lld", f->path,
                      path, (long long)n);
    mk_status st = check_writable(ctx, f, path);
    if (st != MK_OK)
        return st;
    const char **v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: %s: out of memory", f->path, path);
    for (int64_t i = 0; i < n; i++)
        v[i] = s[i] ? s[i] : "";
    hid_t t = vlen_utf8();
    hsize_t d = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    st = create_and_write(ctx, f, path, t, sp, H5P_DEFAULT, v, n);
    H5Sclose(sp);
    H5Tclose(t);
    free(v);
    return st;
}

mk_status mk_h5_write_f32(mk_ctx *ctx, mk_h5_file *f, const char *path, int rank,
                          const int64_t *shape, const float *data)
{
    return mk_h5_write_tensor(ctx, f, path, MK_DT_FLOAT32, rank, shape, data, NULL);
}

/* Open a dataset of any rank 0..8 (0: scalar) and give its dims; *count = element count. */
static mk_status open_any_rank(mk_ctx *ctx, mk_h5_file *f, const char *path, hid_t *ds, int *rank,
                               hsize_t d[MK_H5_MAX_RANK], int64_t *count)
{
    if (!mk_h5_exists(f, path))
        return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: %s: no such dataset", f->path, path);
    *ds = H5Dopen2(f->fid, path, H5P_DEFAULT);
    if (*ds < 0)
        return h5_fail(ctx, MK_ERR_FORMAT, f, path, "not a dataset");
    hid_t sp = H5Dget_space(*ds);
    H5S_class_t cls = H5Sget_simple_extent_type(sp);
    int r = H5Sget_simple_extent_ndims(sp);
    mk_status st = MK_OK;
    if (cls == H5S_NULL)
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: %s: field shape: expected values, got a null dataspace", f->path, path);
    else if (r < 0 || r > MK_H5_MAX_RANK)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field rank: expected 0..%d, got %d", f->path, path,
                    MK_H5_MAX_RANK, r);
    else if (r > 0)
        H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    int64_t n = 1;
    for (int i = 0; st == MK_OK && i < r; i++) {
        if (d[i] > (hsize_t)INT64_MAX || (d[i] && n > INT64_MAX / (int64_t)d[i]))
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field shape: element count overflows", f->path,
                        path);
        n *= (int64_t)d[i];
    }
    if (st != MK_OK) {
        H5Dclose(*ds);
        return st;
    }
    *rank = r;
    *count = n;
    return MK_OK;
}

mk_status mk_h5_dataset_shape(mk_ctx *ctx, mk_h5_file *f, const char *path, int *rank,
                              int64_t shape[MK_H5_MAX_RANK])
{
    hid_t ds;
    hsize_t d[MK_H5_MAX_RANK];
    int64_t n;
    mk_status st = open_any_rank(ctx, f, path, &ds, rank, d, &n);
    if (st != MK_OK)
        return st;
    for (int i = 0; i < *rank; i++)
        shape[i] = (int64_t)d[i];
    H5Dclose(ds);
    return MK_OK;
}

mk_status mk_h5_read_into(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_dtype dtype, int64_t n,
                          void *data)
{
    hid_t mt = mem_type(dtype);
    if (mt < 0)
        return mk_err(ctx, MK_ERR_UNSUPPORTED, "%s: %s: cannot read as %s", f->path, path,
                      mk_dtype_name(dtype));
    hid_t ds;
    hsize_t d[MK_H5_MAX_RANK];
    int rank;
    int64_t have;
    mk_status st = open_any_rank(ctx, f, path, &ds, &rank, d, &have);
    if (st != MK_OK)
        return st;
    if (have != n)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field shape: expected %lld elements, got %lld",
                    f->path, path, (long long)n, (long long)have);
    else if (n > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = h5_fail(ctx, MK_ERR_FORMAT, f, path, "read failed");
    H5Dclose(ds);
    return st;
}

/* Open a dataset and validate its shape. */
static mk_status open_dataset(mk_ctx *ctx, mk_h5_file *f, const char *path, hid_t *ds, int *rank,
                              int64_t shape[MK_H5_MAX_RANK], int64_t *count)
{
    if (!mk_h5_exists(f, path))
        return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: %s: no such dataset", f->path, path);
    *ds = H5Dopen2(f->fid, path, H5P_DEFAULT);
    if (*ds < 0)
        return h5_fail(ctx, MK_ERR_FORMAT, f, path, "not a dataset");
    hid_t sp = H5Dget_space(*ds);
    int r = H5Sget_simple_extent_ndims(sp);
    if (r < 1 || r > MK_H5_MAX_RANK) {
        H5Sclose(sp);
        H5Dclose(*ds);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field rank: expected 1..%d, got %d", f->path,
                      path, MK_H5_MAX_RANK, r);
    }
    hsize_t d[MK_H5_MAX_RANK];
    H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    int64_t n = 1;
    for (int i = 0; i < r; i++) {
        if (d[i] > (hsize_t)MK_IMAGE_MAX_VOXELS ||
            (d[i] && n > MK_IMAGE_MAX_VOXELS / (int64_t)d[i])) {
            H5Dclose(*ds);
            return mk_err(ctx, MK_ERR_NOMEM,
                          "%s: %s: field shape: expected <= %lld elements, got more", f->path, path,
                          (long long)MK_IMAGE_MAX_VOXELS);
        }
        shape[i] = (int64_t)d[i];
        n *= (int64_t)d[i];
    }
    *rank = r;
    *count = n;
    return MK_OK;
}

mk_status mk_h5_read_tensor(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_dtype dtype, int *rank,
                            int64_t shape[MK_H5_MAX_RANK], void **data)
{
    *data = NULL;
    hid_t mt = mem_type(dtype);
    if (mt < 0)
        return mk_err(ctx, MK_ERR_UNSUPPORTED, "%s: %s: cannot read as %s", f->path, path,
                      mk_dtype_name(dtype));
    hid_t ds;
    int64_t n;
    mk_status st = open_dataset(ctx, f, path, &ds, rank, shape, &n);
    if (st != MK_OK)
        return st;
    void *buf = malloc((size_t)(n ? n : 1) * mk_dtype_size(dtype));
    if (!buf) {
        H5Dclose(ds);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: %s: out of memory", f->path, path);
    }
    if (n && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = h5_fail(ctx, MK_ERR_FORMAT, f, path, "read failed");
        free(buf);
        buf = NULL;
    }
    H5Dclose(ds);
    *data = buf;
    return st;
}

/* ---- attributes ----------------------------------------------------------------------------- */

static mk_status open_obj(mk_ctx *ctx, mk_h5_file *f, const char *obj, int create, hid_t *o)
{
    if (!mk_h5_exists(f, obj)) {
        if (!create || !f->writing)
            return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: %s: no such object", f->path, obj);
        mk_status st = mk_h5_group(ctx, f, obj);
        if (st != MK_OK)
            return st;
    }
    *o = H5Oopen(f->fid, obj, H5P_DEFAULT);
    if (*o < 0)
        return h5_fail(ctx, MK_ERR_FORMAT, f, obj, "cannot open object");
    return MK_OK;
}

static mk_status attr_write(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                            hid_t ftype, hid_t mtype, int n, const void *buf)
{
    if (!f->writing)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: file is open read-only", f->path, obj);
    hid_t o = -1;
    mk_status st = open_obj(ctx, f, obj, 1, &o);
    if (st != MK_OK)
        return st;
    if (H5Aexists(o, name) > 0)
        H5Adelete(o, name);
    hsize_t d = (hsize_t)n;
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = H5Acreate2(o, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mtype, buf) < 0)
        st = h5_fail(ctx, MK_ERR_IO, f, obj, "cannot write attribute");
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    return st;
}

mk_status mk_h5_attr_set_str(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                             const char *value)
{
    hid_t t = vlen_utf8();
    mk_status st = attr_write(ctx, f, obj, name, t, t, MK_H5_SCALAR, &value);
    H5Tclose(t);
    return st;
}

mk_status mk_h5_attr_set_fixed_str(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                                   const char *value)
{
    /* as H5LTset_attribute_string: ASCII, size strlen + 1, NUL-terminated */
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    mk_status st = attr_write(ctx, f, obj, name, t, t, MK_H5_SCALAR, value);
    H5Tclose(t);
    return st;
}

mk_status mk_h5_attr_set_f64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             const double *values)
{
    return attr_write(ctx, f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, values);
}

mk_status mk_h5_attr_set_i64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             const int64_t *values)
{
    return attr_write(ctx, f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n, values);
}

static mk_status attr_open(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, hid_t *o,
                           hid_t *a)
{
    mk_status st = open_obj(ctx, f, obj, 0, o);
    if (st != MK_OK)
        return st;
    if (H5Aexists(*o, name) <= 0) {
        H5Oclose(*o);
        H5Eclear2(H5E_DEFAULT);
        return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: %s: no attribute '%s'", f->path, obj, name);
    }
    *a = H5Aopen(*o, name, H5P_DEFAULT);
    if (*a < 0) {
        H5Oclose(*o);
        return h5_fail(ctx, MK_ERR_FORMAT, f, obj, "cannot open attribute");
    }
    return MK_OK;
}

mk_status mk_h5_attr_get_str(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                             char *buf, size_t n)
{
    hid_t o = -1, a = -1;
    mk_status st = attr_open(ctx, f, obj, name, &o, &a);
    if (st != MK_OK)
        return st;
    hid_t t = H5Aget_type(a);
    if (H5Tget_class(t) != H5T_STRING) {
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: %s: field %s: expected a string attribute, got another type", f->path, obj,
                    name);
    } else if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &s) < 0)
            st = h5_fail(ctx, MK_ERR_FORMAT, f, obj, "cannot read attribute");
        else
            snprintf(buf, n, "%s", s ? s : "");
        if (s)
            H5free_memory(s);
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(t);
        char *tmp = calloc(1, sz + 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        if (!tmp || H5Aread(a, mt, tmp) < 0)
            st = h5_fail(ctx, MK_ERR_FORMAT, f, obj, "cannot read attribute");
        else
            snprintf(buf, n, "%s", tmp);
        free(tmp);
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    H5Oclose(o);
    return st;
}

static mk_status attr_get_num(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                              void *values, int *got, hid_t mt, size_t esize)
{
    hid_t o = -1, a = -1;
    mk_status st = attr_open(ctx, f, obj, name, &o, &a);
    if (st != MK_OK)
        return st;
    hid_t sp = H5Aget_space(a);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    if (c != H5T_INTEGER && c != H5T_FLOAT) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field %s: expected a numeric attribute", f->path,
                    obj, name);
    } else if (cnt < 0 || cnt > 1 << 20) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field %s: bad element count", f->path, obj, name);
    } else {
        void *tmp = malloc((size_t)(cnt ? cnt : 1) * esize);
        if (!tmp || H5Aread(a, mt, tmp) < 0) {
            st = h5_fail(ctx, MK_ERR_FORMAT, f, obj, "cannot read attribute");
        } else {
            memcpy(values, tmp, (size_t)(cnt < n ? cnt : n) * esize);
            if (got)
                *got = (int)cnt;
        }
        free(tmp);
    }
    H5Aclose(a);
    H5Oclose(o);
    return st;
}

mk_status mk_h5_attr_get_f64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             double *values, int *got)
{
    return attr_get_num(ctx, f, obj, name, n, values, got, H5T_NATIVE_DOUBLE, sizeof(double));
}

mk_status mk_h5_attr_get_i64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             int64_t *values, int *got)
{
    return attr_get_num(ctx, f, obj, name, n, values, got, H5T_NATIVE_INT64, sizeof(int64_t));
}

/* ---- images --------------------------------------------------------------------------------- */

static const char *axis_order_for(int ndim)
{
    static const char *names[6] = {"", "i", "j,i", "k,j,i", "t,k,j,i", "u,t,k,j,i"};
    return names[ndim];
}

mk_status mk_h5_write_image(mk_ctx *ctx, mk_h5_file *f, const char *path, const mk_image *img,
                            const mk_h5_write_opts *opts)
{
    mk_image_assert_valid(img);
    if (img->dtype == MK_DT_RGB24)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: %s: field dtype: expected a numeric type, got rgb24", f->path, path);
    int64_t shape[MK_IMAGE_MAX_DIMS];
    for (int r = 0; r < img->ndim; r++)
        shape[r] = img->dim[img->ndim - 1 - r];
    mk_status st = mk_h5_write_tensor(ctx, f, path, img->dtype, img->ndim, shape, img->data, opts);
    if (st == MK_OK)
        st = mk_h5_attr_set_str(ctx, f, path, "axis_order", axis_order_for(img->ndim));
    if (st == MK_OK)
        st = mk_h5_attr_set_f64(ctx, f, path, "spacing", 3, img->geom.spacing);
    if (st == MK_OK)
        st = mk_h5_attr_set_f64(ctx, f, path, "origin", 3, img->geom.origin);
    if (st == MK_OK)
        st = mk_h5_attr_set_f64(ctx, f, path, "direction", 9, img->geom.direction);
    if (st == MK_OK)
        st = mk_h5_attr_set_str(ctx, f, path, "dtype", mk_dtype_name(img->dtype));
    if (st == MK_OK && img->geom.tr > 0)
        st = mk_h5_attr_set_f64(ctx, f, path, "tr", 1, &img->geom.tr);
    if (st == MK_OK && img->nifti.present) {
        int64_t q = img->nifti.qform_code, s = img->nifti.sform_code;
        st = mk_h5_attr_set_i64(ctx, f, path, "nifti_qform_code", 1, &q);
        if (st == MK_OK)
            st = mk_h5_attr_set_i64(ctx, f, path, "nifti_sform_code", 1, &s);
    }
    return st;
}

mk_status mk_h5_read_image(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_image **out)
{
    *out = NULL;
    hid_t ds;
    int rank;
    int64_t shape[MK_H5_MAX_RANK], n;
    mk_status st = open_dataset(ctx, f, path, &ds, &rank, shape, &n);
    if (st != MK_OK)
        return st;
    hid_t t = H5Dget_type(ds);
    int dt = dtype_of(t);
    H5Tclose(t);
    H5Dclose(ds);
    if (dt < 0)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: %s: field type: expected an integer or float "
                      "dataset, got another type",
                      f->path, path);
    if (rank > MK_IMAGE_MAX_DIMS)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field rank: expected 1..%d for an image, got %d",
                      f->path, path, MK_IMAGE_MAX_DIMS, rank);
    char order[64] = "";
    if (mk_h5_exists(f, path)) {
        hid_t o = H5Oopen(f->fid, path, H5P_DEFAULT);
        int has = o >= 0 && H5Aexists(o, "axis_order") > 0;
        if (o >= 0)
            H5Oclose(o);
        if (has &&
            (st = mk_h5_attr_get_str(ctx, f, path, "axis_order", order, sizeof order)) != MK_OK)
            return st;
    }
    if (order[0] && strcmp(order, axis_order_for(rank)) != 0)
        return mk_err(
            ctx, MK_ERR_UNSUPPORTED,
            "%s: %s: field axis_order: expected \"%s\" (C order, slowest first), got \"%s\"",
            f->path, path, axis_order_for(rank), order);
    int64_t dim[MK_IMAGE_MAX_DIMS];
    for (int r = 0; r < rank; r++)
        dim[r] = shape[rank - 1 - r];
    mk_image *img = NULL;
    if ((st = mk_image_new(ctx, (mk_dtype)dt, rank, dim, &img)) != MK_OK)
        return mk_err_prefix(ctx, "%s: %s", f->path, path);
    void *data = NULL;
    int r2;
    int64_t s2[MK_H5_MAX_RANK];
    st = mk_h5_read_tensor(ctx, f, path, (mk_dtype)dt, &r2, s2, &data);
    if (st != MK_OK) {
        mk_image_free(img);
        return st;
    }
    free(img->data);
    img->data = data;
    int got = 0;
    hid_t o = H5Oopen(f->fid, path, H5P_DEFAULT);
    int has_sp = H5Aexists(o, "spacing") > 0, has_or = H5Aexists(o, "origin") > 0,
        has_di = H5Aexists(o, "direction") > 0, has_tr = H5Aexists(o, "tr") > 0,
        has_q = H5Aexists(o, "nifti_qform_code") > 0;
    H5Oclose(o);
    if (has_sp &&
        (st = mk_h5_attr_get_f64(ctx, f, path, "spacing", 3, img->geom.spacing, &got)) == MK_OK &&
        got != 3)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field spacing: expected 3 values, got %d", f->path,
                    path, got);
    if (st == MK_OK && has_or &&
        (st = mk_h5_attr_get_f64(ctx, f, path, "origin", 3, img->geom.origin, &got)) == MK_OK &&
        got != 3)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field origin: expected 3 values, got %d", f->path,
                    path, got);
    if (st == MK_OK && has_di &&
        (st = mk_h5_attr_get_f64(ctx, f, path, "direction", 9, img->geom.direction, &got)) ==
            MK_OK &&
        got != 9)
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field direction: expected 9 values, got %d",
                    f->path, path, got);
    if (st == MK_OK && has_tr)
        st = mk_h5_attr_get_f64(ctx, f, path, "tr", 1, &img->geom.tr, NULL);
    for (int i = 0; st == MK_OK && i < 3; i++)
        if (!(img->geom.spacing[i] > 0) || !isfinite(img->geom.spacing[i]))
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: %s: field spacing[%d]: expected a finite value > 0, got %g", f->path,
                        path, i, img->geom.spacing[i]);
    if (st == MK_OK && has_q) {
        int64_t q = 0, s = 0;
        st = mk_h5_attr_get_i64(ctx, f, path, "nifti_qform_code", 1, &q, NULL);
        if (st == MK_OK)
            st = mk_h5_attr_get_i64(ctx, f, path, "nifti_sform_code", 1, &s, NULL);
        if (st == MK_OK)
            mk_nifti_meta_from_geom(&img->geom, (int)q, (int)s, &img->nifti);
    }
    if (st != MK_OK) {
        mk_image_free(img);
        return st;
    }
    mk_image_assert_valid(img);
    *out = img;
    return MK_OK;
}

/* ---- tables --------------------------------------------------------------------------------- */

mk_status mk_h5_write_table(mk_ctx *ctx, mk_h5_file *f, const char *path, const mk_h5_table *t)
{
    if (t->ncols < 1 || t->nrows < 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: table needs >= 1 column and >= 0 rows", f->path,
                      path);
    if (!f->writing)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %s: file is open read-only", f->path, path);
    /* every member is 8 bytes (char*, double, int64): row = 8 * ncols, no padding */
    size_t row = 8 * (size_t)t->ncols;
    hid_t st_str = H5Tcopy(H5T_C_S1);
    H5Tset_size(st_str, H5T_VARIABLE);
    H5Tset_cset(st_str, H5T_CSET_UTF8);
    hid_t ct = H5Tcreate(H5T_COMPOUND, row);
    for (int c = 0; c < t->ncols; c++) {
        hid_t mt = t->cols[c].type == MK_H5_COL_STR   ? st_str
                   : t->cols[c].type == MK_H5_COL_F64 ? H5T_NATIVE_DOUBLE
                                                      : H5T_NATIVE_INT64;
        if (H5Tinsert(ct, t->cols[c].name, 8 * (size_t)c, mt) < 0) {
            H5Tclose(ct);
            H5Tclose(st_str);
            return h5_fail(ctx, MK_ERR_INVALID, f, path, "bad column (duplicate name?)");
        }
    }
    size_t nr = (size_t)t->nrows;
    unsigned char *buf = calloc(nr ? nr : 1, row);
    if (!buf) {
        H5Tclose(ct);
        H5Tclose(st_str);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: %s: out of memory", f->path, path);
    }
    static const char *empty = "";
    for (size_t r = 0; r < nr; r++)
        for (int c = 0; c < t->ncols; c++) {
            unsigned char *p = buf + r * row + 8 * (size_t)c;
            const mk_h5_column *col = &t->cols[c];
            if (col->type == MK_H5_COL_STR) {
                const char *s = col->str && col->str[r] ? col->str[r] : empty;
                memcpy(p, &s, sizeof s);
            } else if (col->type == MK_H5_COL_F64) {
                memcpy(p, &col->f64[r], 8);
            } else {
                memcpy(p, &col->i64[r], 8);
            }
        }
    hsize_t d = nr, maxd = H5S_UNLIMITED, ch = nr > 0 && nr < 1024 ? nr : 1024;
    hid_t sp = H5Screate_simple(1, &d, &maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &ch);
    H5Pset_deflate(dcpl, 4);
    hid_t l = lcpl_intermediate();
    hid_t ds = H5Dcreate2(f->fid, path, ct, sp, l, dcpl, H5P_DEFAULT);
    mk_status st = MK_OK;
    if (ds < 0)
        st = h5_fail(ctx, MK_ERR_IO, f, path, "cannot create table (exists already?)");
    else if (nr && H5Dwrite(ds, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = h5_fail(ctx, MK_ERR_IO, f, path, "table write failed");
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(l);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(ct);
    H5Tclose(st_str);
    free(buf);
    return st;
}

void mk_h5_table_free(mk_h5_table *t)
{
    if (!t)
        return;
    for (int c = 0; c < t->ncols; c++) {
        mk_h5_column *col = &t->cols[c];
        free((char *)col->name);
        if (col->str)
            for (int64_t r = 0; r < t->nrows; r++)
                free(col->str[r]);
        free(col->str);
        free(col->f64);
        free(col->i64);
    }
    free(t->cols);
    free(t);
}

mk_status mk_h5_read_table(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_h5_table **out)
{
    *out = NULL;
    hid_t ds;
    int rank;
    int64_t shape[MK_H5_MAX_RANK], n;
    mk_status st = open_dataset(ctx, f, path, &ds, &rank, shape, &n);
    if (st != MK_OK)
        return st;
    hid_t ft = H5Dget_type(ds);
    if (rank != 1 || H5Tget_class(ft) != H5T_COMPOUND) {
        H5Tclose(ft);
        H5Dclose(ds);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field type: expected a 1-d compound table",
                      f->path, path);
    }
    int nc = H5Tget_nmembers(ft);
    mk_h5_table *t = calloc(1, sizeof *t);
    if (!t || nc < 1 || !(t->cols = calloc((size_t)nc, sizeof *t->cols))) {
        free(t);
        H5Tclose(ft);
        H5Dclose(ds);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: %s: out of memory (or empty compound)", f->path,
                      path);
    }
    t->ncols = nc;
    t->nrows = n;
    size_t row = 8 * (size_t)nc;
    hid_t st_str = H5Tcopy(H5T_C_S1);
    H5Tset_size(st_str, H5T_VARIABLE);
    H5Tset_cset(st_str, H5T_CSET_UTF8);
    hid_t mt = H5Tcreate(H5T_COMPOUND, row);
    for (int c = 0; c < nc && st == MK_OK; c++) {
        char *name = H5Tget_member_name(ft, (unsigned)c);
        H5T_class_t cl = H5Tget_member_class(ft, (unsigned)c);
        t->cols[c].name = strdup(name ? name : "");
        hid_t m;
        if (cl == H5T_STRING) {
            t->cols[c].type = MK_H5_COL_STR;
            m = st_str;
        } else if (cl == H5T_INTEGER) {
            t->cols[c].type = MK_H5_COL_I64;
            m = H5T_NATIVE_INT64;
        } else if (cl == H5T_FLOAT) {
            t->cols[c].type = MK_H5_COL_F64;
            m = H5T_NATIVE_DOUBLE;
        } else {
            st = mk_err(ctx, MK_ERR_UNSUPPORTED,
                        "%s: %s: column '%s': expected string, integer or float", f->path, path,
                        name ? name : "?");
            m = -1;
        }
        if (m >= 0)
            H5Tinsert(mt, name, 8 * (size_t)c, m);
        if (name)
            H5free_memory(name);
    }
    unsigned char *buf = NULL;
    if (st == MK_OK) {
        buf = calloc(n ? (size_t)n : 1, row);
        if (!buf)
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: %s: out of memory", f->path, path);
    }
    if (st == MK_OK && n && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = h5_fail(ctx, MK_ERR_FORMAT, f, path, "table read failed");
        free(buf);
        buf = NULL;
    }
    for (int c = 0; st == MK_OK && c < nc; c++) {
        mk_h5_column *col = &t->cols[c];
        size_t m = n ? (size_t)n : 1;
        if (col->type == MK_H5_COL_STR)
            col->str = calloc(m, sizeof *col->str);
        else if (col->type == MK_H5_COL_F64)
            col->f64 = calloc(m, sizeof *col->f64);
        else
            col->i64 = calloc(m, sizeof *col->i64);
        if (!col->str && !col->f64 && !col->i64) {
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: %s: out of memory", f->path, path);
            break;
        }
        for (int64_t r = 0; r < n; r++) {
            unsigned char *p = buf + (size_t)r * row + 8 * (size_t)c;
            if (col->type == MK_H5_COL_STR) {
                char *s;
                memcpy(&s, p, sizeof s);
                col->str[r] = strdup(s ? s : "");
            } else if (col->type == MK_H5_COL_F64) {
                memcpy(&col->f64[r], p, 8);
            } else {
                memcpy(&col->i64[r], p, 8);
            }
        }
    }
    if (buf) {
        hid_t sp = H5Dget_space(ds);
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
        H5Sclose(sp);
        free(buf);
    }
    H5Tclose(mt);
    H5Tclose(st_str);
    H5Tclose(ft);
    H5Dclose(ds);
    if (st != MK_OK) {
        mk_h5_table_free(t);
        return st;
    }
    *out = t;
    return MK_OK;
}
