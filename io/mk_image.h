/* medkd image type: voxels and geometry, never apart.
 *
 * Axis order (stated once, asserted at every I/O boundary): dim[0] is the fastest-varying voxel
 * axis i (NIfTI "x", ITK index 0), then j, k, t, u. Voxel (i,j,k) is at
 *     data[i + dim[0]*(j + dim[1]*k)]
 * which is the on-disk order of NIfTI, MetaImage and NRRD, and C order [k][j][i] in memory.
 *
 * World coordinates. `geom` holds ITK-style physical geometry in LPS millimetres:
 *     p_LPS = origin + direction * diag(spacing) * (i,j,k)
 * with `direction` row-major 3x3 of unit columns. NIfTI files additionally keep their qform/sform
 * (RAS, as stored) with their codes in `nifti`, so a mask written from a reference image carries
 * the reference's qform and sform untouched, bit for bit. Writers take a reference image's geometry
 * (mk_image_new_like), never loose numbers.
 *
 * Ownership: mk_image_new* returns an image the caller owns; release with mk_image_free (NULL ok).
 * `data` belongs to the image.
 */
#ifndef MK_IMAGE_H
#define MK_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_IMAGE_MAX_DIMS 5

typedef enum mk_dtype {
    MK_DT_UINT8 = 0,
    MK_DT_INT8,
    MK_DT_UINT16,
    MK_DT_INT16,
    MK_DT_UINT32,
    MK_DT_INT32,
    MK_DT_UINT64,
    MK_DT_INT64,
    MK_DT_FLOAT32,
    MK_DT_FLOAT64,
    MK_DT_RGB24, /* 3 interleaved uint8 per voxel */
    MK_DT_COUNT
} mk_dtype;

size_t mk_dtype_size(mk_dtype t);      /* bytes per voxel */
const char *mk_dtype_name(mk_dtype t); /* "uint8", "int16", "float32", ... */

/* NIfTI-specific header fields kept for exact round trips. */
typedef struct mk_nifti_meta {
    int present; /* 1 if the fields below came from (or are meant for) a NIfTI header */
    int qform_code, sform_code;
    double qform[4][4]; /* RAS, as stored (qto_xyz) */
    double sform[4][4]; /* RAS, as stored (sto_xyz) */
    double qfac;
    int xyz_units, time_units;
    double toffset;
    double pixdim[8]; /* as stored (float widened), pixdim[0] = qfac */
} mk_nifti_meta;

typedef struct mk_geom {
    double spacing[3];   /* mm, > 0 */
    double origin[3];    /* LPS mm */
    double direction[9]; /* LPS, row-major, columns are the unit axis vectors */
    double tr;           /* 4th-axis step (seconds) or 0 */
} mk_geom;

typedef struct mk_image {
    mk_dtype dtype;
    int ndim;                       /* 1..5; spatial dims beyond ndim are 1 */
    int64_t dim[MK_IMAGE_MAX_DIMS]; /* unused trailing entries are 1 */
    mk_geom geom;
    mk_nifti_meta nifti;
    int intent_code;
    char descrip[81];
    void *data; /* nvox * mk_dtype_size(dtype) bytes, owned */
} mk_image;

/* Largest voxel count accepted from any header (validated before allocation). */
#define MK_IMAGE_MAX_VOXELS ((int64_t)1 << 34)

/* Number of voxels (product of dims). */
int64_t mk_image_nvox(const mk_image *img);

/* Identity geometry: spacing 1, origin 0, identity direction. */
void mk_geom_identity(mk_geom *g);

/* Allocate a zeroed image with identity geometry. Validates dims (>0, product <= limit). */
mk_status mk_image_new(mk_ctx *ctx, mk_dtype dtype, int ndim, const int64_t *dim, mk_image **out);
/* Allocate a zeroed image with ref's spatial dims, geometry, and NIfTI meta, but another dtype
 * (for masks: MK_DT_UINT8 / MK_DT_INT16). */
mk_status mk_image_new_like(mk_ctx *ctx, const mk_image *ref, mk_dtype dtype, mk_image **out);
void mk_image_free(mk_image *img);

/* Voxel value as double (RGB24: luminance). Index is the linear voxel index. */
double mk_image_get(const mk_image *img, int64_t idx);
/* Store a value, rounding and clamping to the dtype's range for integer types. */
void mk_image_set(mk_image *img, int64_t idx, double v);

/* 4x4 voxel->world matrix in LPS from geom. */
void mk_geom_affine_lps(const mk_geom *g, double m[4][4]);
/* Same in RAS (NIfTI convention: negate x and y rows). */
void mk_geom_affine_ras(const mk_geom *g, double m[4][4]);
/* Three-letter orientation code of the voxel axes in RAS terms as nibabel prints it ("RAS", "LPS").
 */
void mk_geom_orient_code(const mk_geom *g, char code[4]);
/* 1 if the grids agree: same spatial dims, spacing within rel_tol, origin/direction within
 * rel_tol*max(spacing). */
int mk_geom_same_grid(const mk_image *a, const mk_image *b, double rel_tol);
/* The same rule, with the first difference described in why (n bytes; may be NULL): the one
 * "same grid" rule of medkd (training data, evaluate, manifests, `pipeline eval`). */
int mk_geom_grid_diff(const mk_image *a, const mk_image *b, double rel_tol, char *why, size_t n);

/* ---- additions (io core) ------------------------------------------------------------------- */

/* Dtype by name ("int16"); -1 if unknown. 1 if t is an integer type (not float, not RGB24). */
int mk_dtype_parse(const char *name);
int mk_dtype_is_int(mk_dtype t);

/* Validate a shape before any allocation: 1 <= ndim <= 5, every dim > 0, product <=
 * MK_IMAGE_MAX_VOXELS without overflow. `what` names the file or object in the message ("WHAT:
 * field dim[2]: expected > 0, got -3"). *nvox (may be NULL) receives the product. Returns MK_OK,
 * MK_ERR_FORMAT, MK_ERR_NOMEM, MK_ERR_INVALID. */
mk_status mk_dims_check(mk_ctx *ctx, const char *what, int ndim, const int64_t *dim, int64_t *nvox);

/* Deep copy (voxels, geometry, NIfTI meta). Ownership: *out new, mk_image_free. */
mk_status mk_image_clone(mk_ctx *ctx, const mk_image *src, mk_image **out);

/* The axis-order / shape invariant stated at the top of this header, asserted at every I/O
 * boundary (readers before returning, writers on entry): valid dtype, 1 <= ndim <= 5, dims >= 1,
 * dims beyond ndim equal to 1, spacing finite and > 0. A violation is a programmer error (abort).
 */
void mk__image_assert_valid(const mk_image *img, const char *file, int line);
#define mk_image_assert_valid(img) mk__image_assert_valid((img), __FILE__, __LINE__)

/* Inverse of mk_geom_affine_lps: spacing = column norms, direction = normalised columns (kept as
 * they are, not orthogonalised), origin = last column. MK_ERR_GEOMETRY on a zero or non-finite
 * column. */
mk_status mk_geom_from_affine_lps(mk_ctx *ctx, const double m[4][4], mk_geom *g);

/* For each voxel axis c: the RAS world axis it mostly points along (0 = x/R-L, 1 = y/A-P,
 * 2 = z/S-I) and the sign (+1 towards R/A/S). Axes are assigned uniquely. mk_geom_orient_code is
 * built on it. */
void mk_geom_axis_map(const mk_geom *g, int world_axis[3], int sign[3]);

/* Minimum and maximum voxel value (NaN ignored; RGB24 as luminance). */
mk_status mk_image_value_range(const mk_image *img, double *lo, double *hi);

/* ---- generic file I/O (io/image_io.c) -------------------------------------------------------- */

/* Read any supported image, chosen by name: .nii .nii.gz .hdr .img (io/mk_nifti.h); .mha .mhd
 * .nrrd .nhdr .dcm and DICOM folders (ITK bridge, io/mk_itk.h); .tif .tiff (level 0 as RGB24,
 * io/mk_tiff.h). Ownership: *out new, mk_image_free. Returns the reader's status, or
 * MK_ERR_UNSUPPORTED for an unknown name. */
mk_status mk_io_read_image(mk_ctx *ctx, const char *path, mk_image **out);
/* Like mk_io_read_image, but for NIfTI only the header is read (data == NULL); other formats are
 * read whole. */
mk_status mk_io_read_header(mk_ctx *ctx, const char *path, mk_image **out);
/* Write by name: NIfTI flavours, .mha .mhd .nrrd .nhdr (ITK), .tif .tiff (2-D gray/RGB). Atomic. */
mk_status mk_io_write_image(mk_ctx *ctx, const char *path, const mk_image *img);

#ifdef __cplusplus
}
#endif
#endif
