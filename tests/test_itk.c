/* ITK bridge: DICOM series (real CT and oblique MR), JPEG-lossless DICOM, MetaImage/NRRD read of
 * hand-written files and round trips, bad input. References are independent of the bridge: the
 * NIfTI conversions in shared/data/real read with niftilib, the README's stated geometry, and
 * header files written by hand here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h> /* before nifti2_io.h, whose DT_ macros clash with its enum */
#include <math.h>
#include <nifti2_io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/mk_image.h"
#include "io/mk_itk.h"

/* Test paths are short; snprintf truncation cannot happen in practice. */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no such warning */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static char g_real[1024], g_tmp[1024];

/* ---- helpers ----------------------------------------------------------------------------------
 */

typedef struct logbuf {
    char text[8192];
    int nwarn;
} logbuf;

static void log_sink(void *user, mk_log_level level, const char *msg)
{
    logbuf *b = (logbuf *)user;
    if (level >= MK_LOG_WARN)
        b->nwarn++;
    size_t n = strlen(b->text);
    snprintf(b->text + n, sizeof b->text - n, "%s\n", msg);
}

static void ctx_with_log(mk_ctx *ctx, logbuf *b)
{
    mk_ctx_init(ctx);
    memset(b, 0, sizeof *b);
    ctx->log = log_sink;
    ctx->log_user = b;
    ctx->log_level = MK_LOG_DEBUG;
}

static void path_join(char *out, size_t n, const char *a, const char *b)
{
    snprintf(out, n, "%s/%s", a, b);
}

static void copy_file(const char *from, const char *to, long max_bytes)
{
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    FILE *g = fopen(to, "wb");
    assert_non_null(g);
    char buf[65536];
    long total = 0;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        if (max_bytes >= 0 && total + (long)k > max_bytes)
            k = (size_t)(max_bytes - total);
        assert_int_equal(fwrite(buf, 1, k, g), k);
        total += (long)k;
        if (max_bytes >= 0 && total >= max_bytes)
            break;
    }
    fclose(f);
    fclose(g);
}

static void fresh_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_tmp, name);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    assert_int_equal(system(cmd), 0);
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* NIfTI sform (RAS) -> LPS affine: negate the first two rows. */
static void nifti_lps(const nifti_image *nim, double m[4][4])
{
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            m[r][c] = nim->sto_xyz.m[r][c] * (r < 2 ? -1.0 : 1.0);
}

static void assert_affine_near(double a[4][4], double b[4][4], double tol)
{
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            if (fabs(a[r][c] - b[r][c]) > tol)
                fail_msg("affine[%d][%d]: %.6f vs %.6f", r, c, a[r][c], b[r][c]);
        }
}

/* ---- DICOM ------------------------------------------------------------------------------------
 */

/* Files are checked before GDCM reads them (fuzz/fuzz_dicom found a 40 kB file costing 1.2 GB:
 * GDCM allocates an element at its declared length); series in sub-folders; trailing padding. */
static void test_dicom_precheck_recursive_padding(void **state)
{
    (void)state;
    char dir[1200], f[1400], g[1400];
    mk_ctx ctx;
    logbuf lb;
    ctx_with_log(&ctx, &lb);
    mk_image *img = NULL, *ref = NULL;

    /* CT_small.dcm with its Pixel Data length raised to 2 GB: refused, naming file and element */
    snprintf(f, sizeof f, "%s/ct/original/CT_small.dcm", g_real);
    long sz = file_size(f);
    assert_true(sz > 132 && sz < (1L << 24));
    FILE *fp = fopen(f, "rb");
    assert_non_null(fp);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    assert_int_equal(fread(b, 1, (size_t)sz, fp), (size_t)sz);
    fclose(fp);
    long at = -1;
    for (long i = 132; i + 12 <= sz; i++)
        if (!memcmp(b + i, "\xe0\x7f\x10\x00OW\0\0", 8))
            at = i;
    assert_true(at > 0);
    memcpy(b + at + 8, "\xf0\xff\xff\x7f", 4);
    fresh_dir(dir, sizeof dir, "huge_element");
    snprintf(g, sizeof g, "%s/CT_small.dcm", dir);
    fp = fopen(g, "wb");
    fwrite(b, 1, (size_t)sz, fp);
    fclose(fp);
    assert_int_equal(mk_io_dicom_read(&ctx, dir, NULL, &img), MK_ERR_FORMAT);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "CT_small.dcm: damaged DICOM file"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "(7FE0,0010)"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "declares 2147483632 bytes"));
    /* the same bytes without the preamble are not taken for DICOM: skipped with the reason */
    fp = fopen(g, "wb");
    fwrite(b + 132, 1, (size_t)(sz - 132), fp);
    fclose(fp);
    free(b);
    ctx_with_log(&ctx, &lb);
    assert_int_equal(mk_io_dicom_read(&ctx, dir, NULL, &img), MK_ERR_NOT_FOUND);
    assert_non_null(strstr(lb.text, "1 file not read as DICOM and skipped: CT_small.dcm (element "
                                    "(7FE0,0010) at byte"));
    assert_non_null(strstr(lb.text, "declares 2147483632 bytes"));

    /* one series spread over sub-folders: found with --recursive, named without it */
    char flat[1200], rec[1200], sub[1400], sub2[1600];
    fresh_dir(flat, sizeof flat, "flat6");
    fresh_dir(rec, sizeof rec, "rec6");
    snprintf(sub, sizeof sub, "%s/a", rec);
    snprintf(sub2, sizeof sub2, "%s/a/b", rec);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkdir(sub2, 0755), 0);
    for (int k = 1; k <= 6; k++) {
        snprintf(f, sizeof f, "%s/ct/cranium_dicom/IM%04d.dcm", g_real, k);
        snprintf(g, sizeof g, "%s/IM%04d.dcm", flat, k);
        copy_file(f, g, -1);
        snprintf(g, sizeof g, "%s/IM%04d.dcm", k <= 3 ? sub : sub2, k);
        copy_file(f, g, -1);
    }
    assert_int_equal(mk_io_dicom_read(&ctx, flat, NULL, &ref), MK_OK);
    assert_int_equal(ref->dim[2], 6);
    assert_int_equal(mk_io_dicom_read(&ctx, rec, NULL, &img), MK_ERR_NOT_FOUND);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "--recursive"));
    mk_dicom_opts o = {0};
    o.recursive = 1;
    assert_int_equal(mk_io_dicom_read_ex(&ctx, rec, &o, &img), MK_OK);
    assert_int_equal(mk_image_nvox(img), mk_image_nvox(ref));
    assert_memory_equal(img->data, ref->data, (size_t)mk_image_nvox(ref) * 2);
    assert_memory_equal(&img->geom, &ref->geom, sizeof ref->geom);
    mk_image_free(img);
    mk_dicom_series *ser = NULL;
    int n = 0;
    assert_int_equal(mk_io_dicom_list_series_ex(&ctx, rec, 1, &ser, &n), MK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ser[0].nfiles, 6);
    free(ser);

    /* a slice with 1 MB of zero padding after its data set reads the same, through a temporary
     * copy in $TMPDIR that is gone afterwards */
    char tmpd[1200];
    fresh_dir(tmpd, sizeof tmpd, "tmpdir");
    snprintf(g, sizeof g, "%s/IM0002.dcm", flat);
    fp = fopen(g, "ab");
    for (int k = 0; k < (1 << 20); k++)
        fputc(0, fp);
    fclose(fp);
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TMPDIR", tmpd, 1);
    assert_int_equal(mk_io_dicom_read(&ctx, flat, NULL, &img), MK_OK);
    if (saved) {
        setenv("TMPDIR", saved, 1);
        free(saved);
    } else {
        unsetenv("TMPDIR");
    }
    assert_memory_equal(img->data, ref->data, (size_t)mk_image_nvox(ref) * 2);
    assert_memory_equal(&img->geom, &ref->geom, sizeof ref->geom);
    mk_image_free(img);
    mk_image_free(ref);
    DIR *d = opendir(tmpd);
    assert_non_null(d);
    int left = 0;
    for (struct dirent *e; (e = readdir(d));)
        left += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(left, 0);
}

static void test_cranium_series_matches_nifti(void **state)
{
    (void)state;
    char dir[1200], nii[1200];
    path_join(dir, sizeof dir, g_real, "ct/cranium_dicom");
    path_join(nii, sizeof nii, g_real, "ct/cranium_ct.nii.gz");
    mk_ctx ctx;
    logbuf lb;
    ctx_with_log(&ctx, &lb);
    mk_image *img = NULL;
    assert_int_equal(mk_io_itk_read(&ctx, dir, &img), MK_OK);
    assert_int_equal(lb.nwarn, 0); /* uniform 1.5 mm series */
    assert_int_equal(img->dtype, MK_DT_INT16);
    assert_int_equal(img->ndim, 3);
    assert_int_equal(img->dim[0], 256);
    assert_int_equal(img->dim[1], 256);
    assert_int_equal(img->dim[2], 108);
    /* README: 0.9570312 mm in-plane, 1.5 mm slices, IPP (-122.0215, -122.0215, 1.5 k), IOP axial.
     */
    assert_true(fabs(img->geom.spacing[0] - 0.9570312) < 1e-6);
    assert_true(fabs(img->geom.spacing[1] - 0.9570312) < 1e-6);
    assert_true(fabs(img->geom.spacing[2] - 1.5) < 1e-9);
    assert_true(fabs(img->geom.origin[0] + 122.0215) < 1e-3);
    assert_true(fabs(img->geom.origin[1] + 122.0215) < 1e-3);
    assert_true(fabs(img->geom.origin[2]) < 1e-9);
    for (int i = 0; i < 9; i++)
        assert_true(fabs(img->geom.direction[i] - (i % 4 == 0 ? 1.0 : 0.0)) < 1e-12);

    nifti_image *nim = nifti_image_read(nii, 1);
    assert_non_null(nim);
    assert_int_equal(nim->datatype, DT_INT16);
    assert_int_equal(nim->nvox, mk_image_nvox(img));
    assert_memory_equal(nim->data, img->data, (size_t)nim->nvox * 2);
    double a[4][4], b[4][4];
    nifti_lps(nim, a);
    mk_geom_affine_lps(&img->geom, b);
    assert_affine_near(a, b, 1e-4);
    /* HU range stated in the README. */
    double lo = 1e9, hi = -1e9;
    const int16_t *p = (const int16_t *)img->data;
    for (int64_t i = 0; i < mk_image_nvox(img); i++) {
        lo = p[i] < lo ? p[i] : lo;
        hi = p[i] > hi ? p[i] : hi;
    }
    assert_true(lo == -1024 && hi == 2986);
    nifti_image_free(nim);
    mk_image_free(img);

    /* The same series through the explicit API, listing first. */
    mk_dicom_series *ser = NULL;
    int n = 0;
    assert_int_equal(mk_io_dicom_list_series(&ctx, dir, &ser, &n), MK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ser[0].nfiles, 108);
    assert_string_equal(ser[0].modality, "CT");
    free(ser);
}

static void test_cranium_missing_slice_and_series_choice(void **state)
{
    (void)state;
    char src[1200], dir[1200], f[1400], g[1400];
    path_join(src, sizeof src, g_real, "ct/cranium_dicom");
    fresh_dir(dir, sizeof dir, "cranium_gap");
    for (int k = 1; k <= 12; k++) {
        if (k == 6 || k == 7)
            continue; /* two missing slices */
        snprintf(f, sizeof f, "%s/IM%04d.dcm", src, k);
        snprintf(g, sizeof g, "%s/IM%04d.dcm", dir, k);
        copy_file(f, g, -1);
    }
    mk_ctx ctx;
    logbuf lb;
    ctx_with_log(&ctx, &lb);
    mk_image *img = NULL;
    /* refused by default: stacked on one grid, the slices after the gap would be 5 mm off */
    assert_int_equal(mk_io_dicom_read(&ctx, dir, NULL, &img), MK_ERR_GEOMETRY);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "missing slices"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0005.dcm"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0008.dcm"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "--allow-gaps"));
    mk_dicom_opts gaps = {0};
    gaps.allow_gaps = 1;
    assert_int_equal(mk_io_dicom_read_ex(&ctx, dir, &gaps, &img), MK_OK);
    assert_int_equal(img->dim[2], 10);
    assert_true(lb.nwarn >= 1);
    assert_non_null(strstr(lb.text, "missing slices"));
    assert_non_null(strstr(lb.text, "IM0005.dcm"));
    assert_non_null(strstr(lb.text, "IM0008.dcm"));
    assert_non_null(strstr(lb.text, "about 2 slice(s) missing"));
    assert_null(strstr(lb.text, "not read as DICOM"));
    mk_image_free(img);

    /* a file of random bytes among the slices is said, not skipped silently */
    snprintf(g, sizeof g, "%s/junk.dcm", dir);
    FILE *jf = fopen(g, "wb");
    assert_non_null(jf);
    for (int k = 0; k < 4096; k++)
        fputc((k * 7919 + 13) & 0xff, jf);
    fclose(jf);
    ctx_with_log(&ctx, &lb);
    assert_int_equal(mk_io_dicom_read_ex(&ctx, dir, &gaps, &img), MK_OK);
    assert_int_equal(img->dim[2], 10);
    assert_non_null(strstr(lb.text, "1 file not read as DICOM and skipped: junk.dcm"));
    mk_image_free(img);
    remove(g);

    mk_dicom_opts o = {0};
    o.strict = 1;
    o.allow_gaps = 1; /* strict wins */
    assert_int_equal(mk_io_dicom_read_ex(&ctx, dir, &o, &img), MK_ERR_GEOMETRY);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0005.dcm"));

    /* Add one slice of the MR series: two series in one folder. */
    snprintf(f, sizeof f, "%s/mri/gepd_brain_dicom/dicom/brain_002.dcm", g_real);
    snprintf(g, sizeof g, "%s/brain_002.dcm", dir);
    copy_file(f, g, -1);
    assert_int_equal(mk_io_dicom_read(&ctx, dir, NULL, &img), MK_ERR_INVALID);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "2 DICOM series"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "10 files"));
    mk_dicom_series *ser = NULL;
    int n = 0;
    assert_int_equal(mk_io_dicom_list_series(&ctx, dir, &ser, &n), MK_OK);
    assert_int_equal(n, 2);
    int ct = ser[0].nfiles == 10 ? 0 : 1;
    assert_int_equal(ser[ct].nfiles, 10);
    assert_int_equal(ser[1 - ct].nfiles, 1);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), ser[ct].uid));
    assert_int_equal(mk_io_dicom_read(&ctx, dir, ser[1 - ct].uid, &img), MK_OK);
    assert_int_equal(img->dim[2], 1);
    assert_int_equal(img->dim[0], 256);
    mk_image_free(img);
    assert_int_equal(mk_io_dicom_read(&ctx, dir, "1.2.3.4.5", &img), MK_ERR_NOT_FOUND);
    free(ser);
}

static void test_gepd_oblique_nonuniform(void **state)
{
    (void)state;
    char dir[1200], nii[1200];
    path_join(dir, sizeof dir, g_real, "mri/gepd_brain_dicom/dicom");
    path_join(nii, sizeof nii, g_real, "mri/gepd_brain_dicom/gepd_brain.nii.gz");
    mk_ctx ctx;
    logbuf lb;
    ctx_with_log(&ctx, &lb);
    mk_image *img = NULL;
    assert_int_equal(mk_io_itk_read(&ctx, dir, &img), MK_OK);
    /* README: IPP rounded, steps 6.958 .. 7.071 mm -> non-uniform spacing warning. */
    assert_int_equal(lb.nwarn, 1);
    assert_non_null(strstr(lb.text, "non-uniform slice spacing"));
    assert_non_null(strstr(lb.text, "brain_0"));
    assert_int_equal(img->dim[0], 256);
    assert_int_equal(img->dim[1], 256);
    assert_int_equal(img->dim[2], 20);
    assert_true(fabs(img->geom.spacing[0] - 0.859375) < 1e-9);
    assert_true(fabs(img->geom.spacing[2] - 7.0005) < 1e-3);
    /* Oblique: IOP column vector (0, 0.991, 0.134) kept. */
    assert_true(fabs(img->geom.direction[0 * 3 + 1]) < 1e-9);
    assert_true(fabs(img->geom.direction[1 * 3 + 1] - 0.991) < 1e-3);
    assert_true(fabs(img->geom.direction[2 * 3 + 1] - 0.134) < 1e-3);

    nifti_image *nim = nifti_image_read(nii, 1);
    assert_non_null(nim);
    assert_int_equal(nim->datatype, DT_INT16);
    assert_int_equal(nim->nvox, mk_image_nvox(img));
    assert_memory_equal(nim->data, img->data, (size_t)nim->nvox * 2);
    double a[4][4], b[4][4];
    nifti_lps(nim, a);
    mk_geom_affine_lps(&img->geom, b);
    assert_affine_near(a, b, 2e-3);
    nifti_image_free(nim);
    mk_image_free(img);

    /* Strict mode and tolerance on a copy without brain_001.dcm (that slice carries 2.4 MB of
     * zero padding that GDCM parses slowly); the remaining steps still jitter by 0.6 %. */
    char copy[1200], f[1400], g[1400];
    fresh_dir(copy, sizeof copy, "gepd19");
    for (int k = 2; k <= 20; k++) {
        snprintf(f, sizeof f, "%s/brain_%03d.dcm", dir, k);
        snprintf(g, sizeof g, "%s/brain_%03d.dcm", copy, k);
        copy_file(f, g, -1);
    }
    mk_dicom_opts o = {0};
    o.strict = 1;
    o.spacing_tol = 0.005; /* the 7.071 mm step was brain_001's; 6.958 mm is 0.6 % off the mean */
    assert_int_equal(mk_io_dicom_read_ex(&ctx, copy, &o, &img), MK_ERR_GEOMETRY);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "non-uniform"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "brain_0"));
    /* A loose tolerance (2 %) accepts it silently. */
    o.spacing_tol = 0.02;
    lb.nwarn = 0;
    assert_int_equal(mk_io_dicom_read_ex(&ctx, copy, &o, &img), MK_OK);
    assert_int_equal(lb.nwarn, 0);
    assert_int_equal(img->dim[2], 19);
    mk_image_free(img);
}

static void test_jpeg_lossless_single_file(void **state)
{
    (void)state;
    char dcm[1200], nii[1200];
    path_join(dcm, sizeof dcm, g_real, "ct/original/CT_chest_jpeg_lossless.dcm");
    path_join(nii, sizeof nii, g_real, "ct/original/CT_chest_jpeg_lossless.nii.gz");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_itk_read(&ctx, dcm, &img), MK_OK);
    assert_int_equal(img->dim[0], 512);
    assert_int_equal(img->dim[1], 400);
    assert_true(img->ndim == 2 || img->dim[2] == 1);
    assert_true(fabs(img->geom.spacing[0] - 1.0) < 1e-9 && fabs(img->geom.spacing[1] - 1.0) < 1e-9);
    /* Coronal: rows run along -z (LPS), columns along x. */
    assert_true(fabs(img->geom.direction[0 * 3 + 0] - 1.0) < 1e-9);
    assert_true(fabs(img->geom.direction[2 * 3 + 1] + 1.0) < 1e-9);

    /* dcm2niix's conversion flips the rows: dicom (i, j) == nifti (i, 399 - j). */
    nifti_image *nim = nifti_image_read(nii, 1);
    assert_non_null(nim);
    assert_int_equal(nim->datatype, DT_INT16);
    const int16_t *q = (const int16_t *)nim->data;
    int64_t diff = 0;
    for (int j = 0; j < 400; j++)
        for (int i = 0; i < 512; i++) {
            double v = mk_image_get(img, i + 512 * j);
            if (v != (double)q[i + 512 * (399 - j)])
                diff++;
        }
    assert_int_equal(diff, 0);
    nifti_image_free(nim);
    mk_image_free(img);
}

/* Transfer syntaxes: pydicom's MR_small in RLE, JPEG-LS, JPEG 2000 lossless, big endian and
 * implicit VR must decode to the same pixels as the uncompressed file (pydicom's test files,
 * /usr/lib/python3/dist-packages/pydicom/data/test_files, from python3-pydicom). */
/* CT_small.dcm (GE, one slice) starts with a TIFF header in its preamble ("II*\0", a
 * dual-personality file): it is read as DICOM, with SliceThickness as its z spacing (5 mm, as
 * dcm2niix), and its voxels land where dcm2niix's CT_small.nii.gz puts them (dcm2niix flips the
 * rows: compared through the world coordinates of every voxel). Issue 23, DICOM items. */
static void test_dual_tiff_single_slice(void **state)
{
    (void)state;
    char dcm[1200], nii[1200];
    path_join(dcm, sizeof dcm, g_real, "ct/original/CT_small.dcm");
    path_join(nii, sizeof nii, g_real, "ct/original/CT_small.nii.gz");
    FILE *f = fopen(dcm, "rb");
    assert_non_null(f);
    unsigned char m[132];
    assert_int_equal(fread(m, 1, 132, f), 132);
    fclose(f);
    assert_memory_equal(m, "II*\0", 4);
    assert_memory_equal(m + 128, "DICM", 4);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    if (mk_io_read_image(&ctx, dcm, &img) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(img->dim[0], 128);
    assert_int_equal(img->dim[1], 128);
    assert_int_equal(img->dim[2], 1);
    assert_true(fabs(img->geom.spacing[2] - 5.0) < 1e-9);
    nifti_image *nim = nifti_image_read(nii, 1);
    assert_non_null(nim);
    assert_true(fabs(nim->dz - 5.0) < 1e-6);
    double a[4][4], b[4][4];
    nifti_lps(nim, a);
    mk_geom_affine_lps(&img->geom, b);
    /* the same z column (spacing) and the same world position of every voxel */
    for (int r = 0; r < 3; r++)
        assert_true(fabs(fabs(a[r][2]) - fabs(b[r][2])) < 1e-4);
    mk_image *ref = NULL; /* dcm2niix's values, scaled by our NIfTI reader (niftilib) */
    assert_int_equal(mk_io_read_image(&ctx, nii, &ref), MK_OK);
    int64_t checked = 0;
    for (int j = 0; j < 128; j++)
        for (int i = 0; i < 128; i++) {
            double w[3];
            for (int r = 0; r < 3; r++)
                w[r] = b[r][0] * i + b[r][1] * j + b[r][3];
            /* the NIfTI voxel at w: solve the in-plane 2x2 system of a */
            double det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
            double x = w[0] - a[0][3], y = w[1] - a[1][3];
            double ni = (x * a[1][1] - y * a[0][1]) / det, nj = (a[0][0] * y - a[1][0] * x) / det;
            int ii = (int)lround(ni), jj = (int)lround(nj);
            assert_true(fabs(ni - ii) < 1e-3 && fabs(nj - jj) < 1e-3);
            assert_true(ii >= 0 && ii < 128 && jj >= 0 && jj < 128);
            double v = mk_image_get(img, (int64_t)j * 128 + i);
            double rv = mk_image_get(ref, (int64_t)jj * 128 + ii);
            if (fabs(v - rv) > 1e-3)
                fail_msg("voxel (%d, %d): %g, dcm2niix %g", i, j, v, rv);
            checked++;
        }
    assert_int_equal(checked, 128 * 128);
    nifti_image_free(nim);
    mk_image_free(ref);
    mk_image_free(img);
}

static void test_transfer_syntaxes(void **state)
{
    (void)state;
    const char *dir = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
    char ref_path[1200];
    snprintf(ref_path, sizeof ref_path, "%s/MR_small.dcm", dir);
    /* python3-pydicom is a declared test dependency (scripts/deps.list): missing is a failure */
    if (access(ref_path, R_OK) != 0)
        fail_msg("%s is missing: install python3-pydicom (make deps)", ref_path);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *ref = NULL;
    assert_int_equal(mk_io_itk_read(&ctx, ref_path, &ref), MK_OK);
    assert_int_equal(ref->dim[0], 64);
    assert_int_equal(ref->dim[1], 64);
    const char *variants[] = {"MR_small_RLE.dcm",          "MR_small_jpeg_ls_lossless.dcm",
                              "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm",
                              "MR_small_expb.dcm",         "MR_small_implicit.dcm",
                              "MR_small_padded.dcm"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, variants[i]);
        if (access(p, R_OK) != 0)
            continue;
        mk_image *img = NULL;
        if (mk_io_itk_read(&ctx, p, &img) != MK_OK)
            fail_msg("%s: %s", variants[i], mk_ctx_errmsg(&ctx));
        assert_int_equal(mk_image_nvox(img), mk_image_nvox(ref));
        int64_t diff = 0;
        for (int64_t k = 0; k < mk_image_nvox(ref); k++)
            diff += mk_image_get(img, k) != mk_image_get(ref, k);
        if (diff)
            fail_msg("%s: %lld voxels differ from MR_small.dcm", variants[i], (long long)diff);
        for (int k = 0; k < 9; k++)
            assert_true(fabs(img->geom.direction[k] - ref->geom.direction[k]) < 1e-9);
        mk_image_free(img);
    }
    mk_image_free(ref);
}

static void test_dicom_bad_input(void **state)
{
    (void)state;
    char dir[1200], f[1400], g[1400];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;

    /* A folder without DICOM. */
    fresh_dir(dir, sizeof dir, "no_dicom");
    snprintf(g, sizeof g, "%s/readme.txt", dir);
    FILE *fp = fopen(g, "w");
    fputs("not dicom\n", fp);
    fclose(fp);
    assert_int_equal(mk_io_itk_read(&ctx, dir, &img), MK_ERR_NOT_FOUND);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "no DICOM series"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), dir));

    /* A missing path. */
    snprintf(g, sizeof g, "%s/nope", dir);
    assert_int_equal(mk_io_itk_read(&ctx, g, &img), MK_ERR_IO);

    /* DICOM whose pixel data was cut off: header kept, pixel element truncated. */
    fresh_dir(dir, sizeof dir, "no_pixels");
    snprintf(f, sizeof f, "%s/ct/cranium_dicom/IM0001.dcm", g_real);
    long sz = file_size(f);
    assert_true(sz > 256 * 256 * 2);
    snprintf(g, sizeof g, "%s/IM0001.dcm", dir);
    copy_file(f, g, sz - 256 * 256 * 2 + 100); /* keeps 100 bytes of the pixel data */
    assert_int_not_equal(mk_io_itk_read(&ctx, g, &img), MK_OK);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0001.dcm"));
    /* As a series folder with a second, intact slice. */
    snprintf(f, sizeof f, "%s/ct/cranium_dicom/IM0002.dcm", g_real);
    snprintf(g, sizeof g, "%s/IM0002.dcm", dir);
    copy_file(f, g, -1);
    assert_int_not_equal(mk_io_itk_read(&ctx, dir, &img), MK_OK);
    assert_null(img);
    /* Header only (no pixel element at all). */
    fresh_dir(dir, sizeof dir, "header_only");
    snprintf(g, sizeof g, "%s/IM0001.dcm", dir);
    snprintf(f, sizeof f, "%s/ct/cranium_dicom/IM0001.dcm", g_real);
    copy_file(f, g, sz - 256 * 256 * 2 - 12);
    assert_int_not_equal(mk_io_itk_read(&ctx, g, &img), MK_OK);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0001.dcm"));
}

/* A damaged length field (fuzz_dicom: one flipped bit makes a VR "QI", and GDCM then reads a
 * value length of 775 MB from a file of 668 bytes): refused, and the probe that parses it in a
 * child process stays within a bound of memory (before the bound the child allocated and zeroed
 * the 775 MB, 30 s under ASan). ru_maxrss of the children is the largest child's peak. */
static void test_dicom_damaged_length(void **state)
{
    (void)state;
    const char *src = getenv("MK_SOURCE_DIR");
    char seed[1200], dir[1200], g[1400];
    snprintf(seed, sizeof seed, "%s/fuzz/corpus/dicom/regress_vr_length", src ? src : ".");
    long sz = file_size(seed);
    assert_int_equal(sz, 668);
    fresh_dir(dir, sizeof dir, "damaged_length");
    snprintf(g, sizeof g, "%s/IM0001.dcm", dir);
    copy_file(seed, g, -1);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_not_equal(mk_io_itk_read(&ctx, g, &img), MK_OK);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0001.dcm: damaged DICOM file"));
    assert_int_not_equal(mk_io_itk_read(&ctx, dir, &img), MK_OK);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "IM0001.dcm"));
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_CHILDREN, &ru), 0);
    printf("damaged length: %s; largest child %ld MB\n", mk_ctx_errmsg(&ctx), ru.ru_maxrss / 1024);
    assert_true(ru.ru_maxrss < 500L * 1024); /* KB */
}

/* ---- MetaImage / NRRD -------------------------------------------------------------------------
 */

/* Hand-written MetaImage: 4x3x2 int16, oblique direction, known origin and spacing. */
static void test_mha_handwritten(void **state)
{
    (void)state;
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "mha_hand");
    snprintf(p, sizeof p, "%s/hand.mha", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    /* TransformMatrix is written row by row of ITK's direction transposed (MetaIO stores the
     * columns one after another): columns (0,1,0), (-1,0,0), (0,0,1). */
    fputs("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
          "TransformMatrix = 0 1 0 -1 0 0 0 0 1\nOffset = 10.5 -20 30.25\n"
          "ElementSpacing = 0.5 0.75 2.5\nDimSize = 4 3 2\nElementType = MET_SHORT\n"
          "ElementDataFile = LOCAL\n",
          f);
    int16_t v[24];
    for (int i = 0; i < 24; i++)
        v[i] = (int16_t)(i * 100 - 1000);
    fwrite(v, 2, 24, f);
    fclose(f);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_itk_read(&ctx, p, &img), MK_OK);
    assert_int_equal(img->dtype, MK_DT_INT16);
    assert_int_equal(img->dim[0], 4);
    assert_int_equal(img->dim[1], 3);
    assert_int_equal(img->dim[2], 2);
    assert_memory_equal(img->data, v, sizeof v);
    assert_true(img->geom.spacing[0] == 0.5 && img->geom.spacing[1] == 0.75 &&
                img->geom.spacing[2] == 2.5);
    assert_true(img->geom.origin[0] == 10.5 && img->geom.origin[1] == -20 &&
                img->geom.origin[2] == 30.25);
    /* Column 0 = (0,1,0), column 1 = (-1,0,0). */
    assert_true(img->geom.direction[0 * 3 + 0] == 0 && img->geom.direction[1 * 3 + 0] == 1);
    assert_true(img->geom.direction[0 * 3 + 1] == -1 && img->geom.direction[1 * 3 + 1] == 0);
    assert_true(img->geom.direction[2 * 3 + 2] == 1);
    mk_image_free(img);
}

/* Hand-written NRRD (LPS space directions = direction * spacing). */
static void test_nrrd_handwritten(void **state)
{
    (void)state;
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "nrrd_hand");
    snprintf(p, sizeof p, "%s/hand.nrrd", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 3 2 2\n"
          "space directions: (0,0,-2) (0.5,0,0) (0,1.5,0)\nendian: little\nencoding: raw\n"
          "space origin: (1,2,3)\n\n",
          f);
    float v[12];
    for (int i = 0; i < 12; i++)
        v[i] = (float)i * 0.25f - 1.0f;
    fwrite(v, 4, 12, f);
    fclose(f);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_itk_read(&ctx, p, &img), MK_OK);
    assert_int_equal(img->dtype, MK_DT_FLOAT32);
    assert_memory_equal(img->data, v, sizeof v);
    assert_true(img->geom.spacing[0] == 2 && img->geom.spacing[1] == 0.5 &&
                img->geom.spacing[2] == 1.5);
    assert_true(img->geom.origin[0] == 1 && img->geom.origin[1] == 2 && img->geom.origin[2] == 3);
    assert_true(img->geom.direction[2 * 3 + 0] == -1); /* axis 0 along -S */
    assert_true(img->geom.direction[0 * 3 + 1] == 1);  /* axis 1 along L */
    assert_true(img->geom.direction[1 * 3 + 2] == 1);  /* axis 2 along P */
    mk_image_free(img);
}

static mk_image *make_test_image(mk_dtype dt, int64_t nx, int64_t ny, int64_t nz)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {nx, ny, nz};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, dt, 3, dim, &img), MK_OK);
    unsigned char *b = (unsigned char *)img->data;
    size_t n = (size_t)mk_image_nvox(img) * mk_dtype_size(dt);
    uint32_t s = 12345u + (uint32_t)dt;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        b[i] = (unsigned char)(s >> 24);
    }
    if (dt == MK_DT_FLOAT32) { /* keep floats finite */
        float *fp = (float *)img->data;
        for (int64_t i = 0; i < mk_image_nvox(img); i++)
            fp[i] = (float)((int)(i % 97) - 40) * 0.37f;
    }
    if (dt == MK_DT_FLOAT64) {
        double *dp = (double *)img->data;
        for (int64_t i = 0; i < mk_image_nvox(img); i++)
            dp[i] = (double)((int)(i % 89) - 30) * 1.0 / 3.0;
    }
    /* Oblique rotation about z by 30 degrees, then a small tilt: exact unit columns. */
    double c = cos(M_PI / 6), sn = sin(M_PI / 6);
    double d[9] = {c, -sn, 0, sn, c, 0, 0, 0, 1};
    memcpy(img->geom.direction, d, sizeof d);
    img->geom.spacing[0] = 0.7;
    img->geom.spacing[1] = 0.9;
    img->geom.spacing[2] = 2.2;
    img->geom.origin[0] = -101.3;
    img->geom.origin[1] = 17.0 / 3.0;
    img->geom.origin[2] = 42.125;
    return img;
}

static void roundtrip(const char *name, mk_dtype dt)
{
    char dir[1200], p[1400];
    fresh_dir(dir, sizeof dir, "roundtrip");
    snprintf(p, sizeof p, "%s/%s", dir, name);
    mk_image *a = make_test_image(dt, 7, 5, 3);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    if (mk_io_itk_write(&ctx, p, a) != MK_OK)
        fail_msg("write %s: %s", p, mk_ctx_errmsg(&ctx));
    mk_image *b = NULL;
    if (mk_io_itk_read(&ctx, p, &b) != MK_OK)
        fail_msg("read %s: %s", p, mk_ctx_errmsg(&ctx));
    assert_int_equal(b->dtype, dt);
    assert_int_equal(b->ndim, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b->dim[i], a->dim[i]);
    assert_memory_equal(a->data, b->data, (size_t)mk_image_nvox(a) * mk_dtype_size(dt));
    for (int i = 0; i < 3; i++) {
        if (fabs(a->geom.spacing[i] - b->geom.spacing[i]) > 1e-12 * a->geom.spacing[i])
            fail_msg("%s spacing[%d] %.17g vs %.17g", name, i, a->geom.spacing[i],
                     b->geom.spacing[i]);
        if (fabs(a->geom.origin[i] - b->geom.origin[i]) > 1e-12 * fabs(a->geom.origin[i]))
            fail_msg("%s origin[%d] %.17g vs %.17g", name, i, a->geom.origin[i], b->geom.origin[i]);
    }
    for (int i = 0; i < 9; i++)
        if (fabs(a->geom.direction[i] - b->geom.direction[i]) > 1e-12)
            fail_msg("%s direction[%d] %.17g vs %.17g", name, i, a->geom.direction[i],
                     b->geom.direction[i]);
    /* No temporary folder left behind. */
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q tmp", dir);
    assert_int_not_equal(system(cmd), 0);
    mk_image_free(a);
    mk_image_free(b);
}

static void test_roundtrips(void **state)
{
    (void)state;
    const mk_dtype types[] = {MK_DT_UINT8, MK_DT_INT8,    MK_DT_UINT16,  MK_DT_INT16, MK_DT_UINT32,
                              MK_DT_INT32, MK_DT_FLOAT32, MK_DT_FLOAT64, MK_DT_RGB24};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        roundtrip("a.mha", types[t]);
        roundtrip("a.nrrd", types[t]);
    }
    roundtrip("b.mhd", MK_DT_INT16);
    roundtrip("b.nhdr", MK_DT_FLOAT32);
}

static void test_mha_bad_input(void **state)
{
    (void)state;
    char dir[1200], p[1400], q[1400];
    fresh_dir(dir, sizeof dir, "mha_bad");
    snprintf(p, sizeof p, "%s/full.mha", dir);
    mk_image *a = make_test_image(MK_DT_INT16, 16, 16, 8);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_io_itk_write(&ctx, p, a), MK_OK);
    long sz = file_size(p);
    snprintf(q, sizeof q, "%s/trunc.mha", dir);
    copy_file(p, q, sz - 1000);
    mk_image *b = NULL;
    assert_int_not_equal(mk_io_itk_read(&ctx, q, &b), MK_OK);
    assert_null(b);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "trunc.mha"));
    /* Header only, cut inside the header. */
    copy_file(p, q, 40);
    assert_int_not_equal(mk_io_itk_read(&ctx, q, &b), MK_OK);
    assert_null(b);
    /* Garbage. */
    FILE *f = fopen(q, "wb");
    fputs("hello world\n", f);
    fclose(f);
    assert_int_not_equal(mk_io_itk_read(&ctx, q, &b), MK_OK);
    /* Truncated NRRD. */
    snprintf(p, sizeof p, "%s/full.nrrd", dir);
    assert_int_equal(mk_io_itk_write(&ctx, p, a), MK_OK);
    snprintf(q, sizeof q, "%s/trunc.nrrd", dir);
    copy_file(p, q, file_size(p) - 999);
    assert_int_not_equal(mk_io_itk_read(&ctx, q, &b), MK_OK);
    assert_null(b);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "trunc.nrrd"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "truncated"));
    /* Writer: unknown extension, unwritable folder. */
    snprintf(q, sizeof q, "%s/x.vtk", dir);
    assert_int_equal(mk_io_itk_write(&ctx, q, a), MK_ERR_INVALID);
    snprintf(q, sizeof q, "%s/no/such/dir/x.mha", dir);
    assert_int_equal(mk_io_itk_write(&ctx, q, a), MK_ERR_IO);
    mk_image_free(a);
}

static void test_can_read(void **state)
{
    (void)state;
    char p[1200];
    path_join(p, sizeof p, g_real, "ct/cranium_dicom/IM0001.dcm");
    assert_true(mk_io_itk_can_read(p));
    assert_true(mk_io_itk_can_read("x.MHA"));
    assert_true(mk_io_itk_can_read("x.nrrd"));
    assert_false(mk_io_itk_can_read("x.nii.gz"));
    assert_true(mk_io_itk_can_write("a/b.mhd"));
    assert_false(mk_io_itk_can_write("a/b.dcm"));
}

int main(void)
{
    const char *sh = getenv("MK_SHARED_DIR");
    const char *bd = getenv("MK_BUILD_DIR");
    snprintf(g_real, sizeof g_real, "%s/data/real", sh ? sh : "/work/shared");
    snprintf(g_tmp, sizeof g_tmp, "%s/tests/tmp_itk", bd ? bd : ".");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_tmp);
    if (system(cmd) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dicom_damaged_length),
        cmocka_unit_test(test_can_read),
        cmocka_unit_test(test_mha_handwritten),
        cmocka_unit_test(test_nrrd_handwritten),
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_mha_bad_input),
        cmocka_unit_test(test_jpeg_lossless_single_file),
        cmocka_unit_test(test_dual_tiff_single_slice),
        cmocka_unit_test(test_transfer_syntaxes),
        cmocka_unit_test(test_dicom_bad_input),
        cmocka_unit_test(test_gepd_oblique_nonuniform),
        cmocka_unit_test(test_cranium_missing_slice_and_series_choice),
        cmocka_unit_test(test_cranium_series_matches_nifti),
        cmocka_unit_test(test_dicom_precheck_recursive_padding),
    };
    const char *flt = getenv("MK_TEST_FILTER"); /* e.g. MK_TEST_FILTER='test_gepd*' */
    if (flt)
        cmocka_set_test_filter(flt);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
