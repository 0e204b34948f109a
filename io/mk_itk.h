/* medkd ITK bridge: DICOM series, MetaImage (.mha/.mhd) and NRRD through ITK 5 (C API).
 *
 * The implementation (io/itk_bridge.cpp) is the project's only C++ file; no C++ exception
 * crosses this header: every ITK error becomes an mk_status with a message naming the file.
 *
 * Geometry: ITK's physical space is LPS, like mk_geom, so spacing, origin and direction are
 * copied exactly (no flips). Voxel order is the one stated in mk_image.h: dim[0] = ITK index 0
 * (DICOM column), dim[1] = ITK index 1 (DICOM row), dim[2] = slice (sorted along the normal).
 *
 *     mk_image *img = NULL;
 *     if (mk_io_itk_read(&ctx, "ct_series_dir", &img) != MK_OK) ... mk_ctx_errmsg(&ctx) ...
 *     mk_io_itk_write(&ctx, "ct.nrrd", img);
 *     mk_image_free(img);
 */
#ifndef MK_ITK_H
#define MK_ITK_H

#include "mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if `path` looks like something mk_io_itk_read handles: a directory, or a name ending in
 * .mha .mhd .nrrd .nhdr .dcm (case-insensitive), or a file with the DICOM "DICM" magic at 128.
 * Cheap: no ITK call. */
int mk_io_itk_can_read(const char *path);

/* 1 if `path` ends in a format mk_io_itk_write writes: .mha .mhd .nrrd .nhdr. */
int mk_io_itk_can_write(const char *path);

/* Read a volume through ITK.
 *   path: a .mha/.mhd/.nrrd/.nhdr file, a DICOM series folder (must hold exactly one series,
 *         otherwise MK_ERR_INVALID listing the series UIDs), or a single .dcm file (2D: ndim 2,
 *         or a multi-frame object).
 * Pixel type follows the file's component type (uint8 .. float64; RGB uint8 -> MK_DT_RGB24).
 * DICOM: rescale slope/intercept applied (HU); int16 when the rescaled values fit, else float32.
 * Ownership: *out is new, caller frees with mk_image_free. On error *out is NULL.
 * Returns MK_OK, MK_ERR_IO (missing), MK_ERR_FORMAT (unreadable/corrupt), MK_ERR_UNSUPPORTED
 * (pixel type), MK_ERR_INVALID (several series), MK_ERR_NOMEM. */
mk_status mk_io_itk_read(mk_ctx *ctx, const char *path, mk_image **out);

/* Write an image (ndim 2..4; RGB24 as 3-component uchar) to .mha/.mhd/.nrrd/.nhdr.
 * Spacing/origin/direction are written exactly from img->geom. Atomic: written to a temporary
 * folder beside the target and renamed (so .mhd + .raw pairs appear together, never half).
 * Returns MK_OK, MK_ERR_INVALID (extension), MK_ERR_IO. */
mk_status mk_io_itk_write(mk_ctx *ctx, const char *path, const mk_image *img);

/* One DICOM series found in a folder. */
typedef struct mk_dicom_series {
    char uid[128];         /* SeriesInstanceUID (as GDCM reports it, may carry a suffix) */
    char description[128]; /* SeriesDescription, "" if absent */
    char modality[16];     /* Modality (CT, MR, ...), "" if absent */
    int nfiles;            /* number of files (slices) in the series */
} mk_dicom_series;

/* List the series of a DICOM folder (not its sub-folders). Each file is first checked without
 * GDCM: a file in which an element declares more bytes than the file holds (a damaged or foreign
 * file; GDCM would allocate the declared size) is skipped with a warning naming the element, as
 * are files that are not DICOM images; series are then grouped by SeriesInstanceUID from one
 * header scan that stops before the pixel data.
 * Ownership: *out is a malloc'd array of *n entries, caller frees with free(). *n may be 0
 * (then *out is NULL and the status is MK_ERR_NOT_FOUND with a message naming the folder, and
 * saying --recursive when it has sub-folders). */
mk_status mk_io_dicom_list_series(mk_ctx *ctx, const char *dir, mk_dicom_series **out, int *n);
/* Same; recursive != 0 scans the sub-folders too (8 levels, links to folders not followed): a
 * series is then all files with its UID wherever they lie. */
mk_status mk_io_dicom_list_series_ex(mk_ctx *ctx, const char *dir, int recursive,
                                     mk_dicom_series **out, int *n);

/* Options of mk_io_dicom_read_ex. Zero-initialise, then set what you need. */
typedef struct mk_dicom_opts {
    const char *series_uid; /* NULL: the folder must hold exactly one series */
    double spacing_tol;     /* relative tolerance on slice spacing; 0 -> 0.01 (1 %) */
    int strict;     /* 1: non-uniform spacing is MK_ERR_GEOMETRY, not a warning (and gaps too,
                       whatever allow_gaps says) */
    int allow_gaps; /* 1: missing slices are a warning and the slices are stacked with the mean
                       spacing (those after a gap then lie off their true position); 0: the
                       default, MK_ERR_GEOMETRY naming the gap */
    int recursive; /* 1: the series is looked for in sub-folders too (mk_io_dicom_list_series_ex) */
} mk_dicom_opts;

/* Read one series of a DICOM folder into a volume.
 * Slices are sorted by their position along the slice normal (IPP . (row x col)); the slice
 * spacing is the mean distance between consecutive positions; the direction matrix keeps oblique
 * orientations. Gaps (a step > 1.5x the median step: missing slices) fail with MK_ERR_GEOMETRY
 * naming the slices on each side (file names and positions) unless opts->allow_gaps (then a
 * warning); non-uniform spacing (deviation > spacing_tol) is a warning naming the slices, or
 * MK_ERR_GEOMETRY when opts->strict. Slices with trailing zero padding (megabytes on real GE
 * series) are read from temporary copies without it ($TMPDIR), removed before returning.
 * Ownership: as mk_io_itk_read. */
mk_status mk_io_dicom_read_ex(mk_ctx *ctx, const char *dir, const mk_dicom_opts *opts,
                              mk_image **out);

/* Shorthand: mk_io_dicom_read_ex with series_uid and the defaults (gaps refused, uneven spacing
 * a warning, no sub-folders). */
mk_status mk_io_dicom_read(mk_ctx *ctx, const char *dir, const char *series_uid, mk_image **out);

#ifdef __cplusplus
}
#endif
#endif
