/* medkd dataset manifests: a CSV file listing the cases, and import of the nnU-Net v2 / Medical
 * Segmentation Decathlon folder layouts.
 *
 * CSV format (RFC 4180): first line = header; fields separated by ',', optionally quoted with '"'
 * (a quote inside a quoted field is doubled; quoted fields may hold commas and newlines); a UTF-8
 * BOM and CRLF line ends are accepted; blank lines are skipped. Columns:
 *     id        required, unique, non-empty
 *     image     required, non-empty path
 *     label     optional column; empty for unlabeled cases
 *     modality  optional (CT, MR, ...); split optional: "train", "val" or "test" (or empty);
 *     domain    optional (scanner/site/dataset name, used by domain adaptation stages)
 *   Any other column is kept verbatim as an extra column (order preserved).
 * Paths are relative to the folder of the manifest file (absolute paths are kept).
 * Errors name FILE:LINE and the column: "m.csv:7: column split: expected train, val, test or
 * empty, got 'training'".
 *
 *     mk_manifest *m = NULL;
 *     if (mk_manifest_read(&ctx, "data-manifests/example.csv", &m) != MK_OK) ...;
 *     for (int i = 0; i < m->nrows; i++) ... m->rows[i].image_path ...;
 *     mk_manifest_free(m);
 */
#ifndef MK_MANIFEST_H
#define MK_MANIFEST_H

#include "mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_manifest_row {
    char *id, *modality, *image, *label, *split, *domain; /* as written ("" when absent) */
    char *image_path; /* image resolved against the manifest folder */
    char *label_path; /* label resolved, NULL when the label is empty */
    char **extra;     /* nextra values, "" when absent */
    int line;         /* 1-based line of the row in the CSV (0 for imported rows) */
} mk_manifest_row;

typedef struct mk_manifest {
    char *source; /* the CSV file or the dataset folder */
    char *dir;    /* folder relative paths are resolved against */
    int nrows;
    mk_manifest_row *rows;
    int nextra;
    char **extra_names; /* names of the extra columns */
    /* Imported datasets only (mk_manifest_import_nnunet); NULL / 0 for CSV manifests: */
    char *name;         /* the dataset folder's name ("Dataset501_Cranium", "Task04_Hippocampus") */
    const char *layout; /* "nnunet-v2" or "msd" (static) */
    int nlabels;        /* dataset.json "labels" with a single integer value, ascending by value
                           (background 0 included); region entries (lists of values) are skipped */
    int *label_values;  /* nlabels values, each 0..255 */
    char **label_names; /* nlabels names */
} mk_manifest;

/* Parse and validate a CSV manifest. Ownership: *out new, mk_manifest_free.
 * Returns MK_OK, MK_ERR_IO, MK_ERR_FORMAT (syntax, missing/duplicate column, bad value). */
mk_status mk_manifest_read(mk_ctx *ctx, const char *path, mk_manifest **out);

/* Write as CSV (atomic). Paths are written relative to the output file's folder when the image
 * lies under it, else absolute. Fields are quoted when needed. */
mk_status mk_manifest_write(mk_ctx *ctx, const char *path, const mk_manifest *m);

/* Import an nnU-Net v2 dataset folder (dataset.json with channel_names/labels/file_ending;
 * imagesTr/CASE_0000.ext, labelsTr/CASE.ext, imagesTs/CASE_0000.ext) or an MSD task folder
 * (dataset.json with "training": [{image, label}] and "test": [...]). `dataset` is the folder or
 * its dataset.json (any path ending in .json, or any regular file: the folder is its directory).
 * Rows: split "train" for training cases, "test" for test cases (labelled when labelsTs/CASE.ext
 * exists: outside nnU-Net's layout, a common place for test references); modality = channel 0's
 * name;
 * further channels become extra columns image_0001, image_0002, ... A training case without its
 * label, or a channel file missing, is MK_ERR_FORMAT naming the file. The label names of
 * dataset.json ("labels": nnU-Net v2 {"name": value}, MSD {"value": "name"}) fill nlabels,
 * label_values and label_names; a value that is not an integer in 0..255 is MK_ERR_FORMAT naming
 * the field. Ownership: *out new, mk_manifest_free. */
mk_status mk_manifest_import_nnunet(mk_ctx *ctx, const char *dataset, mk_manifest **out);

/* Check that every row's image (and label) file exists: MK_ERR_IO naming FILE:LINE and column. */
mk_status mk_manifest_check_files(mk_ctx *ctx, const mk_manifest *m);

/* Check that the image and the label of row `row` lie on the same grid (dims, spacing, origin,
 * direction within 1e-4 relative, mk_geom_same_grid). Only headers are read for NIfTI. Rows
 * without a label pass. Returns MK_OK or MK_ERR_GEOMETRY ("m.csv:4: label: grid differs from the
 * image: field spacing: expected ..., got ..."), or the read error. */
mk_status mk_manifest_check_grid(mk_ctx *ctx, const mk_manifest *m, int row);

/* Override rows' modality, domain and split from a case table: a CSV with column id and at least
 * one of modality, domain, split (other columns ignored); each id must be a case of m. Errors name
 * FILE:LINE and the column. */
mk_status mk_manifest_apply_table(mk_ctx *ctx, mk_manifest *m, const char *path);

/* Index of the row with this id, -1 if none. */
int mk_manifest_find(const mk_manifest *m, const char *id);

/* Index into extra_names / row->extra of the extra column with this name, -1 if none. */
int mk_manifest_extra_index(const mk_manifest *m, const char *name);

void mk_manifest_free(mk_manifest *m); /* NULL ok */

#ifdef __cplusplus
}
#endif
#endif
