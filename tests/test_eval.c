/* `pipeline eval` end to end: NIfTI fixtures written by nibabel (tests/eval_ref.py gen), the
 * binary run on each scenario, and its JSON compared with the independent numpy/scipy reference
 * in eval_ref.py (spheres, multi-label int16 .nii, float32 border-touching, flipped and oblique
 * affines, 2D slices and dim[0]=2 images, folders with nnU-Net names and unpaired files, empty
 * predictions, both conventions). Also: the HDF5 report read back with h5py and h5dump, CSV shape,
 * and bad input (non-integral floats, mismatched grids, unreadable files, no pairs, usage) giving a
 * clear error, the right exit code and no output file. Fails without python3+nibabel+scipy+h5py
 * (declared in scripts/deps.list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../metrics/mk_metrics.h"

static char g_dir[1024], g_bin[1024], g_py[1024];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    return b;
}

static int setup(void **state)
{
    (void)state;
    const char *bd = getenv("MK_BUILD_DIR"), *sd = getenv("MK_SOURCE_DIR");
    if (!bd || !sd)
        return -1;
    snprintf(g_bin, sizeof g_bin, "%s/pipeline", bd);
    snprintf(g_py, sizeof g_py, "%s/tests/eval_ref.py", sd);
    snprintf(g_dir, sizeof g_dir, "%s/tests/eval_fixtures", bd);
    sh("rm -rf '%s'", g_dir);
    int rc = sh("/usr/bin/python3 '%s' gen '%s' > '%s.gen.log' 2>&1", g_py, g_dir, g_dir);
    return rc == 0 ? 0 : -1;
}

static void test_scenarios_vs_reference(void **state)
{
    (void)state;
    char path[2048];
    snprintf(path, sizeof path, "%s/scenarios.txt", g_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *bar = strchr(line, '|');
        assert_non_null(bar);
        *bar = '\0';
        int rc = sh("'%s' --quiet eval %s --json '%s/out/%s.json' > '%s/out/%s.stdout' 2>&1", g_bin,
                    bar + 1, g_dir, line, g_dir, line);
        if (rc != 0) {
            print_error("scenario %s: exit %d\n", line, rc);
            fail();
        }
        n++;
    }
    fclose(f);
    assert_true(n >= 10);
    assert_int_equal(sh("/usr/bin/python3 '%s' check '%s'", g_py, g_dir), 0);
}

static void test_reports_h5_csv(void **state)
{
    (void)state;
    int rc = sh("'%s' --quiet eval --pred '%s/fold_p' --ref '%s/fold_r' --json '%s/rep.json' --csv "
                "'%s/rep.csv' "
                "--out '%s/rep.h5' > /dev/null 2>&1",
                g_bin, g_dir, g_dir, g_dir, g_dir, g_dir);
    assert_int_equal(rc, 0);
    assert_int_equal(sh("h5dump -H '%s/rep.h5' > /dev/null 2>&1", g_dir), 0);
    assert_int_equal(sh("/usr/bin/python3 '%s' h5 '%s/rep.h5' '%s/rep.json'", g_py, g_dir, g_dir),
                     0);
    char path[2048];
    snprintf(path, sizeof path, "%s/rep.csv", g_dir);
    char *csv = slurp(path);
    assert_non_null(csv);
    /* header + 2 cases x 1 label; the empty prediction's distances are "inf" */
    int lines = 0;
    for (char *p = csv; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    assert_non_null(strstr(csv, "case_id,pred,ref,label,empty,dice"));
    assert_non_null(strstr(csv, ",pred,0,0,inf,inf,inf,inf,0,"));
    free(csv);
    snprintf(path, sizeof path, "%s/rep.json", g_dir);
    char *js = slurp(path);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"hd95\": \"inf\""));
    assert_non_null(strstr(js, "\"empty\": \"pred\""));
    free(js);
    /* the JSON parses as strict JSON (Python's parser refuses bare inf/nan with this hook) */
    assert_int_equal(sh("/usr/bin/python3 -c \"import json,sys; json.load(open(sys.argv[1]), "
                        "parse_constant=lambda c: sys.exit(3))\" '%s/rep.json'",
                        g_dir),
                     0);
}

/* bad input: exit code, message naming the files, no output file */
static void bad_case(const char *args, int want_rc, const char *want1, const char *want2)
{
    char out[2048], log[2048];
    snprintf(out, sizeof out, "%s/bad.json", g_dir);
    snprintf(log, sizeof log, "%s/bad.log", g_dir);
    unlink(out);
    int rc = sh("cd '%s' && '%s' eval %s --json '%s' > '%s' 2>&1", g_dir, g_bin, args, out, log);
    char *msg = slurp(log);
    assert_non_null(msg);
    if (rc != want_rc || (want1 && !strstr(msg, want1)) || (want2 && !strstr(msg, want2))) {
        print_error("eval %s: exit %d (want %d), output:\n%s\n", args, rc, want_rc, msg);
        free(msg);
        fail();
    }
    free(msg);
    assert_false(exists(out));
}

static void test_bad_input(void **state)
{
    (void)state;
    bad_case("--pred bad_float.nii.gz --ref sph_r.nii.gz", 1, "bad_float.nii.gz", "not an integer");
    bad_case("--pred other_grid.nii.gz --ref sph_r.nii.gz", 1, "other_grid.nii.gz", "sph_r.nii.gz");
    bad_case("--pred other_spacing.nii.gz --ref sph_r.nii.gz", 1, "other_spacing.nii.gz",
             "spacing");
    bad_case("--pred flip_grid.nii.gz --ref sph_r.nii.gz", 1, "flip_grid.nii.gz", "sph_r.nii.gz");
    bad_case("--pred garbage.nii.gz --ref sph_r.nii.gz", 1, "garbage.nii.gz", NULL);
    bad_case("--pred missing.nii.gz --ref sph_r.nii.gz", 1, "missing.nii.gz", NULL);
    bad_case("--pred nopair_p --ref nopair_r", 1, "no case pairs", "nopair_r");
    bad_case("--pred nopair_p --ref sph_r.nii.gz", 2, "both be files or both be folders", NULL);
    bad_case("--pred sph_p.nii.gz", 2, "--ref", NULL);
    bad_case("--pred sph_p.nii.gz --ref sph_r.nii.gz --convention itk", 2, "--convention", "itk");
    bad_case("--pred sph_p.nii.gz --ref sph_r.nii.gz --labels 1,x", 2, "--labels", NULL);
    bad_case("--pred sph_p.nii.gz --ref sph_r.nii.gz --tolerance-mm -1", 2, "--tolerance-mm", NULL);
    /* another grid is refused, and accepted with --resample-to-ref (nearest neighbour onto the
     * reference): sph_p_rev is sph_p stored with axis 0 reversed and a matching affine, so the
     * result must equal the plain sphere scenario */
    bad_case("--pred sph_p_rev.nii.gz --ref sph_r.nii.gz", 1, "grids differ", "sph_p_rev.nii.gz");
    char out[2048];
    snprintf(out, sizeof out, "%s/resampled.json", g_dir);
    assert_int_equal(sh("cd '%s' && '%s' --quiet eval --pred sph_p_rev.nii.gz --ref sph_r.nii.gz "
                        "--resample-to-ref "
                        "--json '%s' > /dev/null 2>&1",
                        g_dir, g_bin, out),
                     0);
    char path[2048];
    snprintf(path, sizeof path, "%s/out/sphere_deepmind_1.json", g_dir);
    assert_int_equal(sh("/usr/bin/python3 -c \"import json,sys; "
                        "a=json.load(open(sys.argv[1]))['cases'][0]['labels']"
                        "['1']; b=json.load(open(sys.argv[2]))['cases'][0]['labels']['1']; "
                        "sys.exit(0 if all(a[k]==b[k] for k in "
                        "('dice','hd','hd95','assd','surface_dice')) else 1)\" "
                        "'%s' '%s'",
                        out, path),
                     0);
    /* a label list naming a label present in neither file: documented both-empty result */
    assert_int_equal(
        sh("cd '%s' && '%s' --quiet eval --pred sph_p.nii.gz --ref sph_r.nii.gz --labels 9 "
           "--json '%s' > /dev/null 2>&1",
           g_dir, g_bin, out),
        0);
    char *js = slurp(out);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"empty\": \"both\""));
    free(js);
}

/* The C surfel/contour tables (DP over triangulations) against the Python ones (brute-force
 * enumeration of every triangulation), all 256 + 16 codes, anisotropic spacing. */
static void test_tables_vs_python(void **state)
{
    (void)state;
    const double sp[3] = {0.7, 1.3, 2.9};
    char path[2048];
    snprintf(path, sizeof path, "%s/tables.txt", g_dir);
    assert_int_equal(sh("/usr/bin/python3 '%s' table 0.7 1.3 2.9 '%s'", g_py, path), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    double t3[256], t2[16];
    mk_metric_surfel_areas_3d(sp, t3);
    mk_metric_contour_lengths_2d(sp, t2);
    for (int i = 0; i < 256 + 16; i++) {
        double v;
        assert_int_equal(fscanf(f, "%lf", &v), 1);
        double c = i < 256 ? t3[i] : t2[i - 256];
        if (!(fabs(c - v) <= 1e-12)) {
            print_error("code %d (%s): C %.17g python %.17g\n", i < 256 ? i : i - 256,
                        i < 256 ? "3D" : "2D", c, v);
            fail();
        }
    }
    fclose(f);
}

int main(void)
{
    if (system("/usr/bin/python3 -c 'import nibabel, scipy, h5py' > /dev/null 2>&1") != 0) {
        /* declared test dependencies (scripts/deps.list): missing is a failure, not a skip */
        printf("FAIL: python3 with nibabel, scipy and h5py is missing (declared in "
               "scripts/deps.list; install with 'make deps' as root)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_vs_python),
        cmocka_unit_test(test_scenarios_vs_reference),
        cmocka_unit_test(test_reports_h5_csv),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
