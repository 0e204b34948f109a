/* `pipeline info FILE|DICOMDIR|SLIDE`: what an image file holds (see the verb table). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_image.h"
#include "../io/mk_itk.h"
#include "../io/mk_nifti.h"
#include "../io/mk_tiff.h"
#include "../stages/mk_infer.h"
#include "mk_verbs.h"

/* -0 prints as 0 */
static double nz(double v)
{
    return v == 0 ? 0.0 : v;
}

static void print_mat(const char *name, const double m[4][4])
{
    printf("%s:\n", name);
    for (int r = 0; r < 4; r++)
        printf("  [%12.6f %12.6f %12.6f %12.6f]\n", nz(m[r][0]), nz(m[r][1]), nz(m[r][2]),
               nz(m[r][3]));
}

static const char *xform_name(int code)
{
    static const char *N[] = {"unknown",   "scanner_anat", "aligned_anat",
                              "talairach", "mni_152",      "template_other"};
    return code >= 0 && code <= 5 ? N[code] : "invalid";
}

static void print_image(const char *path, const char *format, const mk_image *img)
{
    char code[4];
    mk_geom_orient_code(&img->geom, code);
    printf("file:        %s\n", path);
    printf("format:      %s\n", format);
    printf("dims:        ");
    for (int d = 0; d < img->ndim; d++)
        printf("%s%lld", d ? " x " : "", (long long)img->dim[d]);
    printf("  (ndim %d, %lld voxels)\n", img->ndim, (long long)mk_image_nvox(img));
    printf("datatype:    %s\n", mk_dtype_name(img->dtype));
    printf("spacing:     %.6g %.6g %.6g mm", img->geom.spacing[0], img->geom.spacing[1],
           img->geom.spacing[2]);
    if (img->geom.tr > 0)
        printf("  (t step %.6g s)", img->geom.tr);
    printf("\norigin:      %.6f %.6f %.6f (LPS mm)\n", nz(img->geom.origin[0]),
           nz(img->geom.origin[1]), nz(img->geom.origin[2]));
    printf("direction:   ");
    for (int i = 0; i < 9; i++)
        printf("%s%.6f", i ? " " : "", nz(img->geom.direction[i]));
    printf(" (LPS, row-major)\n");
    printf("orientation: %s (voxel axes i,j,k point to; RAS letters as nibabel prints them)\n",
           code);
    double a[4][4];
    mk_geom_affine_ras(&img->geom, a);
    print_mat("affine (voxel -> RAS mm, as nibabel's img.affine)", a);
    if (img->nifti.present && strncmp(format, "nifti", 5) == 0) {
        printf("qform_code:  %d (%s)\n", img->nifti.qform_code, xform_name(img->nifti.qform_code));
        printf("sform_code:  %d (%s)\n", img->nifti.sform_code, xform_name(img->nifti.sform_code));
        if (img->nifti.qform_code > 0)
            print_mat("qform (as stored, RAS)", img->nifti.qform);
        if (img->nifti.sform_code > 0)
            print_mat("sform (as stored, RAS)", img->nifti.sform);
        printf("geometry from: %s\n", img->nifti.sform_code > 0   ? "sform"
                                      : img->nifti.qform_code > 0 ? "qform"
                                                                  : "pixdim only (no codes)");
    }
    if (img->intent_code)
        printf("intent_code: %d\n", img->intent_code);
    if (img->descrip[0])
        printf("description: %s\n", img->descrip);
    if (img->data) {
        double lo, hi;
        mk_image_value_range(img, &lo, &hi);
        printf("value range: %.6g .. %.6g%s\n", lo, hi,
               img->dtype == MK_DT_RGB24 ? " (luminance)" : "");
    }
}

static const char *format_of(const char *p)
{
    size_t n = strlen(p);
    if (n >= 7 && strcmp(p + n - 7, ".nii.gz") == 0)
        return "nifti (.nii.gz)";
    if (mk_io_nifti_is_path(p))
        return "nifti";
    if (mk_fs_is_dir(p))
        return "dicom series (ITK/GDCM)";
    const char *dot = strrchr(p, '.');
    return dot ? dot + 1 : "itk";
}

/* A model file: what inference reads from it (stages/mk_infer.h), checked by loading it. */
static mk_status model_info(mk_ctx *ctx, const char *path)
{
    mk_infer_model *m = NULL;
    mk_status st = mk_infer_model_load(ctx, path, &m);
    if (st != MK_OK)
        return st;
    const mk_data_params *p = &m->data;
    static const char *const axes[6] = {"i", "j", "k", "axial", "coronal", "sagittal"};
    printf("file:         %s\n", path);
    printf("format:       medkd model (%s %s, medkd %s)\n", m->method, m->role, m->version);
    printf("network:      2-D U-Net, width %d, depth %d, %d classes, %lld parameters\n",
           m->cfg.base, m->cfg.levels, m->cfg.classes,
           (long long)mk_nn_params_numel(mk_unet_params(m->net)));
    if (m->is_ct)
        printf("input:        %s, CT window [%g, %g] HU -> [-1, 1]\n", m->modality, p->ct_window[0],
               p->ct_window[1]);
    else
        printf("input:        %s, %s per volume\n", m->modality,
               p->mri_norm == MK_MRI_MINMAX ? "min-max" : "z-score");
    printf("geometry:     %s slices", axes[p->slice_axis]);
    if (p->slice_axis >= 3)
        printf(" after reorientation to %s", m->orientation);
    if (p->spacing[0] > 0 || p->spacing[1] > 0 || p->spacing[2] > 0)
        printf(", resampled to [%g, %g, %g] mm", p->spacing[0], p->spacing[1], p->spacing[2]);
    printf("\npatch:        %d x %d, windows step %g, %s blending\n", p->patch[0], p->patch[1],
           p->window_step, p->blend_uniform ? "uniform" : "Gaussian");
    printf("labels:      ");
    for (int c = 1; c < p->classes; c++) {
        char nb[48];
        printf(" %d = %s%s", mk_data_value_of_class(p, c), mk_data_class_name(p, c, nb, sizeof nb),
               c + 1 < p->classes ? "," : "");
    }
    printf("\npostprocess:  %s\n",
           m->largest_component ? "largest component per structure" : "none");
    printf("config hash:  %s\nmodel hash:   %s\n", m->config_hash[0] ? m->config_hash : "-",
           m->model_hash);
    mk_infer_model_free(m);
    return MK_OK;
}

mk_status mk_verb_info(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *path = NULL;
    int header_only = 0;
    mk_dicom_opts dop = {0};
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "--header"))
            header_only = 1;
        else if (mk_args_is(&a, "--allow-gaps"))
            dop.allow_gaps = 1;
        else if (mk_args_is(&a, "--recursive"))
            dop.recursive = 1;
        else if (mk_args_positional(&a) && !path)
            path = a.arg;
        else
            return mk_args_unknown(&a, ctx);
    }
    if (!path)
        return mk_err(ctx, MK_ERR_USAGE,
                      "info: expected a FILE, DICOM folder or slide (see 'pipeline help info')");
    if (!mk_fs_is_file(path) && !mk_fs_is_dir(path)) {
        /* a .img whose .hdr exists is fine; the reader reports the precise problem */
        if (!mk_io_nifti_is_path(path))
            return mk_err(ctx, MK_ERR_IO, "%s: no such file or folder", path);
    }
    if (mk_fs_is_file(path) && mk_tiff_is_tiff(path)) {
        return mk_io_tiff_info(ctx, path, stdout);
    }
    size_t pl = strlen(path);
    if (mk_fs_is_file(path) && pl > 3 && !strcmp(path + pl - 3, ".h5"))
        return model_info(ctx, path);
    if (mk_fs_is_dir(path)) {
        mk_dicom_series *series = NULL;
        int n = 0;
        mk_status st = mk_io_dicom_list_series_ex(ctx, path, dop.recursive, &series, &n);
        if (st != MK_OK)
            return st;
        for (int i = 0; i < n; i++)
            printf("series %d:    %s  %s  %d files  %s\n", i + 1, series[i].uid, series[i].modality,
                   series[i].nfiles, series[i].description);
        free(series);
        if (n > 1)
            return mk_err(ctx, MK_ERR_INVALID,
                          "%s: %d DICOM series in the folder; read one with "
                          "pipeline convert DIR OUT --series UID",
                          path, n);
    }
    mk_image *img = NULL;
    mk_status st = mk_fs_is_dir(path) ? mk_io_dicom_read_ex(ctx, path, &dop, &img)
                   : header_only      ? mk_io_read_header(ctx, path, &img)
                                      : mk_io_read_image(ctx, path, &img);
    if (st != MK_OK)
        return st;
    print_image(path, format_of(path), img);
    mk_image_free(img);
    return MK_OK;
}
