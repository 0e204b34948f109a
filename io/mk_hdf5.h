/* medkd HDF5 helpers (libhdf5 1.10): tensors, images with geometry, string tables, attributes,
 * groups; chunking + gzip; atomic writes. The one HDF5 layer of medkd: reports (report/h5w.c),
 * model checkpoints (models/mk_checkpoint.c) and stage checkpoints (stages/ckpt.c) use it.
 *
 * Files. mk_h5_create builds the file in memory (HDF5's core driver, no backing store) and
 * mk_h5_close writes its bytes with mk_fs_write_atomic (temporary file, then rename), so a crash or
 * an error never leaves a half-written file under PATH, a full disk is one error naming PATH, and
 * HDF5 never holds a file it failed to write (mk_h5_abort discards it). A written file must fit
 * in memory (reports and checkpoints do). mk_h5_open
 * opens an existing file read-only. HDF5's automatic error-stack printing is switched off; every
 * failure becomes an mk_status with a message naming the file and the object.
 *
 * Objects are named by absolute paths ("/cases/c001/image"); groups along the path are created as
 * needed when writing.
 *
 * Tensors are C-order (row-major, last index fastest) n-d arrays of one mk_dtype (RGB24 excluded).
 * Images are stored as 3-d (or up to 5-d) datasets in C order, i.e. shape [k][j][i] for a 3-D
 * mk_image (the reverse of mk_image.dim), with attributes:
 *     axis_order = "k,j,i" (names of the dataset axes, slowest first; "u,t,k,j,i" for 5-D)
 *     spacing[3], origin[3] (LPS mm), direction[9] (LPS, row-major) : float64
 *     dtype = "int16" ..., and when present nifti_qform_code, nifti_sform_code : int64
 * so that h5py users read `f["img"][k, j, i]` with the same geometry as ITK.
 *
 *     mk_h5_file *f = NULL;
 *     mk_h5_create(&ctx, "run.h5", &f);
 *     mk_h5_write_image(&ctx, f, "/cases/c001/mask", mask, NULL);
 *     mk_h5_attr_set_str(&ctx, f, "/meta", "tool_version", "0.1.0");
 *     if (mk_h5_close(&ctx, f) != MK_OK) ...   // commits run.h5
 */
#ifndef MK_HDF5_H
#define MK_HDF5_H

#include <stdint.h>

#include "mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_h5_file mk_h5_file;

#define MK_H5_MAX_RANK 8

/* Create a new file (atomic: see above). Ownership: *out new; finish with mk_h5_close or
 * mk_h5_abort. Returns MK_OK, MK_ERR_IO. */
mk_status mk_h5_create(mk_ctx *ctx, const char *path, mk_h5_file **out);
/* Open an existing file read-only. Returns MK_OK, MK_ERR_IO (missing), MK_ERR_FORMAT (not HDF5). */
mk_status mk_h5_open(mk_ctx *ctx, const char *path, mk_h5_file **out);
/* Close; for a created file write it into place (atomic write). Frees f (NULL ok). On failure of a
 * created file nothing is left under the final name. */
mk_status mk_h5_close(mk_ctx *ctx, mk_h5_file *f);
/* Close and discard a created file (nothing is left); frees f (NULL ok). */
void mk_h5_abort(mk_h5_file *f);
/* Path given at open/create (borrowed). */
const char *mk_h5_path(const mk_h5_file *f);

/* Create a group and its parents ("/a/b/c"); existing groups are fine. */
mk_status mk_h5_group(mk_ctx *ctx, mk_h5_file *f, const char *group);
/* 1 if an object (group or dataset) exists at path. */
int mk_h5_exists(mk_h5_file *f, const char *path);

/* gzip = MK_H5_CONTIGUOUS: the dataset is stored contiguously (no chunks, no filters: what
 * h5py's create_dataset and plain H5Dcreate write by default). Only such datasets may have
 * zero-length axes or rank 0 (a scalar dataset holding one value). */
#define MK_H5_CONTIGUOUS (-1)

typedef struct mk_h5_write_opts {
    int gzip;    /* 0..9 deflate level; 0 = none; MK_H5_CONTIGUOUS. Default (opts NULL) 4 */
    int shuffle; /* 1: byte shuffle before gzip (default with opts NULL: 1) */
    int64_t
        chunk[MK_H5_MAX_RANK]; /* chunk shape; all 0 = automatic (about 1 MiB, last axes whole) */
} mk_h5_write_opts;

/* Write an n-d C-order tensor (rank 1..8, or 0..8 when contiguous) as dataset `path` (which must
 * not exist). data holds prod(shape) values of `dtype`; every axis > 0 (>= 0 when contiguous).
 * Returns MK_OK, MK_ERR_INVALID, MK_ERR_UNSUPPORTED (dtype), MK_ERR_IO. */
mk_status mk_h5_write_tensor(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_dtype dtype, int rank,
                             const int64_t *shape, const void *data, const mk_h5_write_opts *opts);
/* Write n (>= 0) strings as a 1-d contiguous dataset of variable-length UTF-8 strings (h5py:
 * h5py.string_dtype()); NULL entries are stored as "". s is only read (NULL ok when n is 0).
 * Returns MK_OK, MK_ERR_INVALID, MK_ERR_NOMEM, MK_ERR_IO. */
mk_status mk_h5_write_strings(mk_ctx *ctx, mk_h5_file *f, const char *path, int64_t n,
                              const char *const *s);
/* Shorthand for float32. */
mk_status mk_h5_write_f32(mk_ctx *ctx, mk_h5_file *f, const char *path, int rank,
                          const int64_t *shape, const float *data);

/* Read a dataset converted to `dtype` (HDF5 converts numeric types). Shape validated (rank <= 8,
 * element count <= MK_IMAGE_MAX_VOXELS) before allocation. Ownership: *data malloc'd, caller
 * frees. *rank and shape[0..rank-1] receive the shape. Returns MK_OK, MK_ERR_NOT_FOUND,
 * MK_ERR_FORMAT, MK_ERR_NOMEM. */
mk_status mk_h5_read_tensor(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_dtype dtype, int *rank,
                            int64_t shape[MK_H5_MAX_RANK], void **data);
/* Shape of the dataset at path without reading it: *rank (0 for a scalar dataset) and
 * shape[0..rank-1]. No size limit is applied. Returns MK_OK, MK_ERR_NOT_FOUND, MK_ERR_FORMAT
 * (not a dataset, rank > 8, or a null dataspace). */
mk_status mk_h5_dataset_shape(mk_ctx *ctx, mk_h5_file *f, const char *path, int *rank,
                              int64_t shape[MK_H5_MAX_RANK]);
/* Read the whole dataset at path, converted to `dtype`, into the caller's buffer `data` of n
 * values; the dataset must have exactly n elements (a scalar dataset has 1). Nothing is
 * allocated. Returns MK_OK, MK_ERR_NOT_FOUND, MK_ERR_FORMAT (another element count, or not
 * readable as dtype), MK_ERR_UNSUPPORTED (dtype). */
mk_status mk_h5_read_into(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_dtype dtype, int64_t n,
                          void *data);

/* Write an image with its geometry attributes (layout above). Returns as mk_h5_write_tensor. */
mk_status mk_h5_write_image(mk_ctx *ctx, mk_h5_file *f, const char *path, const mk_image *img,
                            const mk_h5_write_opts *opts);
/* Read an image written by mk_h5_write_image (or any dataset with those attributes; missing
 * geometry attributes mean identity). The stored dtype is kept. axis_order must be C order
 * ("k,j,i"-style) if present. Ownership: *out new, mk_image_free. */
mk_status mk_h5_read_image(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_image **out);

/* n for mk_h5_attr_set_f64 / _i64: one value stored as a scalar attribute (h5py reads a number,
 * not an array of one). */
#define MK_H5_SCALAR (-1)

/* Attributes on a group or dataset at obj (created if it is a missing group). Overwrites.
 * Strings: scalar variable-length UTF-8. Numbers: a 1-d array of n values, or MK_H5_SCALAR. */
mk_status mk_h5_attr_set_str(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                             const char *value);
/* A scalar fixed-length, NUL-terminated ASCII string attribute (what H5LTset_attribute_string and
 * h5py's np.bytes_ write); mk_h5_attr_get_str reads both kinds. */
mk_status mk_h5_attr_set_fixed_str(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                                   const char *value);
mk_status mk_h5_attr_set_f64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             const double *values);
mk_status mk_h5_attr_set_i64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             const int64_t *values);
/* Read a string attribute into buf (size n, NUL-terminated, truncated to fit). */
mk_status mk_h5_attr_get_str(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name,
                             char *buf, size_t n);
/* Read up to n numbers; *got (may be NULL) receives the attribute's element count. */
mk_status mk_h5_attr_get_f64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             double *values, int *got);
mk_status mk_h5_attr_get_i64(mk_ctx *ctx, mk_h5_file *f, const char *obj, const char *name, int n,
                             int64_t *values, int *got);

/* ---- tables ------------------------------------------------------------------------------- */

typedef enum mk_h5_col_type { MK_H5_COL_STR = 0, MK_H5_COL_F64, MK_H5_COL_I64 } mk_h5_col_type;

/* A column-oriented table, stored as a 1-d compound dataset (one member per column; strings as
 * variable-length UTF-8), which h5py reads as a structured array and pandas as a DataFrame.
 * Exactly one of str/f64/i64 is used per column according to type. */
typedef struct mk_h5_column {
    const char *name;
    mk_h5_col_type type;
    char **str;   /* nrows strings (NULL entries stored as "") */
    double *f64;  /* nrows values */
    int64_t *i64; /* nrows values */
} mk_h5_column;

typedef struct mk_h5_table {
    int ncols;
    int64_t nrows;
    mk_h5_column *cols;
} mk_h5_table;

/* Write a table at path (gzip 4, chunked). Returns MK_OK, MK_ERR_INVALID, MK_ERR_IO. */
mk_status mk_h5_write_table(mk_ctx *ctx, mk_h5_file *f, const char *path, const mk_h5_table *t);
/* Read a compound table written by mk_h5_write_table (string, integer and float members).
 * Ownership: *out new, free with mk_h5_table_free. */
mk_status mk_h5_read_table(mk_ctx *ctx, mk_h5_file *f, const char *path, mk_h5_table **out);
void mk_h5_table_free(mk_h5_table *t); /* NULL ok; frees names, strings and columns */

#ifdef __cplusplus
}
#endif
#endif
