/* medkd NIfTI I/O through niftilib (nifti2 API: reads NIfTI-1, NIfTI-2 and ANALYZE 7.5 headers).
 *
 * Files: `.nii`, `.nii.gz`, `.hdr`/`.img` pairs (also `.hdr.gz`/`.img.gz`). Datatypes: uint8, int8,
 * uint16, int16, uint32, int32, uint64, int64, float32, float64, RGB24. Others (complex, float128,
 * RGBA32, binary) are refused with MK_ERR_UNSUPPORTED.
 *
 * Reading (mk_io_nifti_read):
 *   1. The raw header (348 or 540 bytes, either byte order, through zlib so .gz works) is read and
 *      validated by us BEFORE niftilib sees it and before any voxel buffer is allocated:
 *      sizeof_hdr, magic, dim[0] in 1..5 (6 and 7 are refused with MK_ERR_UNSUPPORTED: an mk_image
 *      holds 5 dims and none is dropped silently), dim[i] > 0, the voxel-count product without
 *      overflow and <= MK_IMAGE_MAX_VOXELS, datatype supported, pixdim[1..min(ndim,3)] finite and
 *      non-zero, vox_offset an integer, >= header size for .nii, <= INT_MAX for NIfTI-1/ANALYZE
 *      (niftilib casts the float to int) and for gzip data (its uncompressed size is unknown), and
 *      for uncompressed files vox_offset + data bytes <= file size; the header's own offset is the
 *      one used (niftilib's must agree). scl_slope not +-inf, scl_inter finite when the slope
 *      applies (0 or NaN slope: no scaling, NaN being nibabel's "unset"). Messages read "FILE:
 *      field F: expected ..., got ...".
 *   2. niftilib parses the header (nifti_image_read without data; its stderr chatter is off).
 *   3. The voxels are read with zlib (gzread; plain files pass through), checking for truncation
 *      and gzip corruption (a stream that ends at or before vox_offset names vox_offset),
 *      byte-swapped when the file's byte order differs from ours.
 *   Scaling: when scl_slope is finite, non-zero and (slope, inter) != (1, 0), values become
 *   raw*slope + inter computed in double and stored as float64 if the stored type is float64 or an
 *   integer type of 32 or 64 bits (float32 could not hold them exactly), else float32; a finite raw
 *   value whose scaled value is not finite in that type is refused (field scl_slope). Otherwise
 * the stored type is kept. RGB24 is never scaled. Geometry rule (nibabel's get_best_affine, also
 * ITK's for orthonormal sforms): the voxel->RAS affine is the sform if sform_code > 0, else the
 * qform if qform_code > 0, else niftilib's "no code" qform: diag(pixdim[1..3]) with origin 0 (this
 * last case is what ITK does; nibabel would centre the grid and flip x instead). geom (LPS) = that
 * affine with x and y rows negated; spacing = column norms, direction = normalised columns. The
 * stored qform/sform, their codes, qfac, pixdim and units are kept verbatim in img->nifti.
 *
 * Writing (mk_io_nifti_write): NIfTI-1 when every dim fits in 16 bits, else NIfTI-2; `.nii`,
 *   `.nii.gz` (gzip level 1 like nibabel unless opts say otherwise) or a `.hdr`/`.img` pair (the
 * name may be either). The header is built by niftilib (nifti_convert_nim2n1hdr/n2hdr) from:
 *   - img->nifti when present AND consistent with img->geom (its chosen affine equals the geom's
 *     within 1e-4 x max spacing): qform/sform codes, matrices, pixdim and qfac are written as they
 *     were read, so masks made with mk_image_new_like carry the reference's qform and sform;
 *   - otherwise (no meta, or geometry changed by resampling): from geom like ITK does:
 *     qform_code = sform_code = 1 (scanner) unless the meta had non-zero codes (then kept), sform =
 *     the exact affine, qform = its quaternion (nearest rotation), pixdim = spacing.
 *   Output is atomic: written to "PATH.tmp.PID" (both files of a pair) and renamed at the end;
 *   on any error nothing is left under the final name(s). scl_slope is written as 1, scl_inter 0.
 */
#ifndef MK_NIFTI_H
#define MK_NIFTI_H

#include "mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if the name ends in .nii .nii.gz .hdr .img .hdr.gz .img.gz (case-sensitive, as niftilib). */
int mk_io_nifti_is_path(const char *path);

/* Read a NIfTI/ANALYZE image with its geometry (see above).
 * Ownership: *out new, mk_image_free; NULL on error.
 * Returns MK_OK, MK_ERR_IO (missing/unreadable), MK_ERR_FORMAT (bad header, truncated, corrupt
 * gzip), MK_ERR_UNSUPPORTED (datatype, > 5 dims), MK_ERR_NOMEM (over MK_IMAGE_MAX_VOXELS). */
mk_status mk_io_nifti_read(mk_ctx *ctx, const char *path, mk_image **out);

/* Header only: validated as above, geometry and meta filled, data == NULL (voxels not read).
 * Ownership: *out new, mk_image_free. */
mk_status mk_io_nifti_read_header(mk_ctx *ctx, const char *path, mk_image **out);

typedef struct mk_nifti_write_opts {
    int gzip_level; /* 1..9 for .gz outputs; 0 -> 1 (nibabel's default) */
    int version;    /* 0 auto (NIfTI-1 unless a dim exceeds 32767), 1 or 2 */
    int threads;    /* gzip compression threads; 0 -> 2 */
} mk_nifti_write_opts;

/* Write img (ndim 1..5, any supported dtype) to path; opts may be NULL (defaults).
 * Returns MK_OK, MK_ERR_INVALID (extension, dims over the NIfTI-1 limit with version 1), MK_ERR_IO.
 */
mk_status mk_io_nifti_write(mk_ctx *ctx, const char *path, const mk_image *img);
mk_status mk_io_nifti_write_ex(mk_ctx *ctx, const char *path, const mk_image *img,
                               const mk_nifti_write_opts *opts);

/* Fill meta from a geometry as the writer does without stored meta: both matrices = the RAS
 * affine of g (qform through its quaternion), pixdim = spacing, units mm/s, codes as given.
 * meta->present = 1. Geometry operations call this so a resampled image keeps its codes. */
void mk_nifti_meta_from_geom(const mk_geom *g, int qform_code, int sform_code, mk_nifti_meta *meta);

/* The geometry rule above applied to a meta: sform if sform_code > 0, else qform. Returns
 * MK_ERR_GEOMETRY if the chosen matrix has a zero or non-finite column. */
mk_status mk_nifti_geom_from_meta(mk_ctx *ctx, const mk_nifti_meta *meta, mk_geom *g);

#ifdef __cplusplus
}
#endif
#endif
