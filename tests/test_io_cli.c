/* `pipeline info` and `pipeline convert` end to end: output fields, exit codes, no partial output
 * on bad input. Skips when the pipeline binary has not been built in this build folder. */
#include "test_io_util.h"

#include <math.h>
#include <sys/wait.h>

#include "io/mk_image.h"
#include "io/mk_nifti.h"

static char g_bin[1200];

static int run(const char *args, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", g_bin, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t k = fread(out, 1, n - 1, p);
    out[k] = '\0';
    int rc = pclose(p);
    /* a sanitizer report in a sanitizer build would also exit non-zero: never accept one */
    if (strstr(out, "Sanitizer") || strstr(out, "runtime error"))
        fail_msg("sanitizer report from '%s':\n%s", args, out);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int have_bin(void)
{
    const char *b = getenv("MK_BUILD_DIR");
    snprintf(g_bin, sizeof g_bin, "%s/pipeline", b ? b : ".");
    return access(g_bin, X_OK) == 0;
}

static void test_info_and_convert(void **state)
{
    (void)state;
    if (!have_bin())
        fail_msg("the pipeline binary is missing in this build folder (build the target pipeline)");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {6, 5, 4};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img), MK_OK);
    for (int64_t i = 0; i < 120; i++)
        ((int16_t *)img->data)[i] = (int16_t)(i - 20);
    img->geom.spacing[2] = 2.5;
    char p[1200], q[1200], args[2600], out[16384];
    assert_int_equal(mk_io_nifti_write(&ctx, tio_path(p, sizeof p, "c.nii.gz"), img), MK_OK);
    snprintf(args, sizeof args, "info '%s'", p);
    assert_int_equal(run(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "dims:        6 x 5 x 4"));
    assert_non_null(strstr(out, "datatype:    int16"));
    assert_non_null(strstr(out, "spacing:     1 1 2.5 mm"));
    /* identity LPS direction: i points to L, j to P, k to S */
    assert_non_null(strstr(out, "orientation: LPS"));
    assert_non_null(strstr(out, "qform_code:  1"));
    assert_non_null(strstr(out, "value range: -20 .. 99"));
    /* convert to NRRD and back, then compare voxels and grid */
    snprintf(args, sizeof args, "convert '%s' '%s' --dtype float32", p,
             tio_path(q, sizeof q, "c.nrrd"));
    assert_int_equal(run(args, out, sizeof out), 0);
    char r[1200];
    snprintf(args, sizeof args, "convert '%s' '%s'", q, tio_path(r, sizeof r, "c2.nii"));
    assert_int_equal(run(args, out, sizeof out), 0);
    mk_image *back = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, r, &back), MK_OK);
    assert_int_equal(back->dtype, MK_DT_FLOAT32);
    for (int64_t i = 0; i < 120; i++)
        assert_true(((float *)back->data)[i] == (float)(i - 20));
    assert_true(mk_geom_same_grid(img, back, 1e-6));
    mk_image_free(back);
    /* resampling through the CLI */
    snprintf(args, sizeof args, "convert '%s' '%s' --spacing 0.5,0.5,1.25 --interp nearest", p,
             tio_path(r, sizeof r, "fine.nii.gz"));
    assert_int_equal(run(args, out, sizeof out), 0);
    assert_int_equal(mk_io_nifti_read_header(&ctx, r, &back), MK_OK);
    assert_int_equal(back->dim[0], 12);
    assert_int_equal(back->dim[2], 8);
    mk_image_free(back);
    mk_image_free(img);
}

static void test_bad_input_exit_codes(void **state)
{
    (void)state;
    if (!have_bin())
        fail_msg("the pipeline binary is missing in this build folder (build the target pipeline)");
    char p[1200], q[1200], args[2600], out[16384];
    tio_path(p, sizeof p, "bad.nii");
    FILE *f = fopen(p, "wb");
    unsigned char junk[400];
    memset(junk, 0, sizeof junk);
    int32_t sz = 348;
    memcpy(junk, &sz, 4);
    int16_t dims[8] = {3, 10, -4, 2, 1, 1, 1, 1};
    memcpy(junk + 40, dims, sizeof dims);
    memcpy(junk + 344, "n+1", 4);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    snprintf(args, sizeof args, "info '%s'", p);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "field dim[2]"));
    snprintf(args, sizeof args, "convert '%s' '%s'", p, tio_path(q, sizeof q, "out.nii.gz"));
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, p));
    assert_false(tio_exists(q));
    /* no temporaries either */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -q 'out.nii.gz'", g_tmp);
    assert_int_not_equal(system(cmd), 0);
    /* usage errors exit 2 */
    assert_int_equal(run("convert onlyone.nii", out, sizeof out), 2);
    assert_int_equal(run("convert a.nii b.nii --dtype int13", out, sizeof out), 2);
    assert_non_null(strstr(out, "--dtype"));
    assert_int_equal(run("info", out, sizeof out), 2);
}

/* A DICOM folder with two series (3 cranium CT slices, 2 GE MR slices): info and a plain convert
 * refuse it naming both UIDs and `--series UID`; `convert --series UID` reads the one asked for;
 * an unknown UID and --series on a file are errors (issue 23, DICOM items). */
static void test_convert_series(void **state)
{
    (void)state;
    if (!have_bin())
        fail_msg("the pipeline binary is missing in this build folder (build the target pipeline)");
    char dir[1200], src[1200], cmd[4000], out[16384], args[4000], q[1200];
    tio_path(dir, sizeof dir, "two_series");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    assert_int_equal(system(cmd), 0);
    for (int k = 1; k <= 3; k++) {
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/'",
                 tio_shared(src, sizeof src,
                            k == 1   ? "data/real/ct/cranium_dicom/IM0001.dcm"
                            : k == 2 ? "data/real/ct/cranium_dicom/IM0002.dcm"
                                     : "data/real/ct/cranium_dicom/IM0003.dcm"),
                 dir);
        assert_int_equal(system(cmd), 0);
    }
    for (int k = 2; k <= 3; k++) {
        char rel[200];
        snprintf(rel, sizeof rel, "data/real/mri/gepd_brain_dicom/dicom/brain_00%d.dcm", k);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", tio_shared(src, sizeof src, rel), dir);
        assert_int_equal(system(cmd), 0);
    }
    const char *ct_uid = "1.2.826.0.1.3680043.8.498.12546678883644950169536818330484350221";
    snprintf(args, sizeof args, "info '%s'", dir);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, ct_uid));
    assert_non_null(strstr(out, "--series UID"));
    tio_path(q, sizeof q, "series_ct.nii.gz");
    snprintf(args, sizeof args, "convert '%s' '%s'", dir, q);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "--series UID"));
    assert_false(tio_exists(q));
    snprintf(args, sizeof args, "convert '%s' '%s' --series %s", dir, q, ct_uid);
    if (run(args, out, sizeof out) != 0)
        fail_msg("%s", out);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, q, &img), MK_OK);
    assert_int_equal(img->dim[0], 256);
    assert_int_equal(img->dim[2], 3);
    assert_true(fabs(img->geom.spacing[2] - 1.5) < 1e-6);
    mk_image_free(img);
    snprintf(args, sizeof args, "convert '%s' '%s.x.nii.gz' --series 1.2.3", dir, q);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "no series with UID 1.2.3"));
    snprintf(args, sizeof args, "convert '%s' '%s.y.nii.gz' --series %s", q, q, ct_uid);
    assert_int_equal(run(args, out, sizeof out), 2);
}

/* A series with a missing slice is refused by convert and info, naming the gap and --allow-gaps
 * (exit 1, nothing written); --allow-gaps reads it. A series in sub-folders needs --recursive,
 * which the error names. (issue 23, DICOM items) */
static void test_convert_gaps_recursive(void **state)
{
    (void)state;
    if (!have_bin())
        fail_msg("the pipeline binary is missing in this build folder (build the target pipeline)");
    char dir[1200], src[1200], cmd[4000], out[16384], args[4000], q[1200];
    tio_path(dir, sizeof dir, "gap_series");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/sub'", dir, dir);
    assert_int_equal(system(cmd), 0);
    const int keep[] = {1, 2, 4, 5}; /* IM0003 missing */
    for (int k = 0; k < 4; k++) {
        char rel[200];
        snprintf(rel, sizeof rel, "data/real/ct/cranium_dicom/IM%04d.dcm", keep[k]);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/sub/'", tio_shared(src, sizeof src, rel), dir);
        assert_int_equal(system(cmd), 0);
    }
    tio_path(q, sizeof q, "gap.nii.gz");
    snprintf(args, sizeof args, "convert '%s' '%s'", dir, q);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "--recursive"));
    snprintf(args, sizeof args, "convert '%s/sub' '%s'", dir, q);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "missing slices"));
    assert_non_null(strstr(out, "IM0002.dcm"));
    assert_non_null(strstr(out, "IM0004.dcm"));
    assert_non_null(strstr(out, "--allow-gaps"));
    assert_false(tio_exists(q));
    snprintf(args, sizeof args, "info '%s' --recursive", dir);
    assert_int_equal(run(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "missing slices"));
    snprintf(args, sizeof args, "info '%s' --recursive --allow-gaps", dir);
    if (run(args, out, sizeof out) != 0)
        fail_msg("%s", out);
    assert_non_null(strstr(out, "4 files"));
    assert_non_null(strstr(out, "dims:        256 x 256 x 4"));
    snprintf(args, sizeof args, "convert '%s' '%s' --recursive --allow-gaps", dir, q);
    if (run(args, out, sizeof out) != 0)
        fail_msg("%s", out);
    assert_non_null(strstr(out, "missing slices"));
    assert_true(tio_exists(q));
    /* the DICOM options on a file are usage errors */
    snprintf(args, sizeof args, "convert '%s' '%s.z.nii.gz' --allow-gaps", q, q);
    assert_int_equal(run(args, out, sizeof out), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_and_convert),
        cmocka_unit_test(test_bad_input_exit_codes),
        cmocka_unit_test(test_convert_series),
        cmocka_unit_test(test_convert_gaps_recursive),
    };
    return cmocka_run_group_tests(tests, tio_setup, tio_cleanup);
}
