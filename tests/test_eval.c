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

/* "-" is standard output for --csv/--json/--out (issue 23, D7): the report alone goes there,
 * byte for byte what a file gets, nothing named "-" is created; one output at most; a folder as
 * the output is refused and left as it is. */
static void test_report_to_stdout(void **state)
{
    (void)state;
    const char *fold = "--pred fold_p --ref fold_r";
    assert_int_equal(
        sh("cd '%s' && '%s' --quiet eval %s --csv file.csv > /dev/null 2>&1", g_dir, g_bin, fold),
        0);
    assert_int_equal(sh("cd '%s' && '%s' --quiet eval %s --csv - > stdout.csv 2> stdout.log", g_dir,
                        g_bin, fold),
                     0);
    char path[2048];
    snprintf(path, sizeof path, "%s/file.csv", g_dir);
    char *want = slurp(path);
    snprintf(path, sizeof path, "%s/stdout.csv", g_dir);
    char *got = slurp(path);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
    snprintf(path, sizeof path, "%s/-", g_dir);
    assert_false(exists(path));
    /* the JSON report on stdout parses as the whole stream */
    assert_int_equal(
        sh("cd '%s' && '%s' --quiet eval %s --json - 2>/dev/null | /usr/bin/python3 -c "
           "\"import json,sys; json.load(sys.stdin)\"",
           g_dir, g_bin, fold),
        0);
    assert_false(exists(path));
    /* two reports on one stream: a usage error */
    assert_int_equal(
        sh("cd '%s' && '%s' --quiet eval %s --json - --csv - > both.log 2>&1", g_dir, g_bin, fold),
        2);
    snprintf(path, sizeof path, "%s/both.log", g_dir);
    char *msg = slurp(path);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "standard output"));
    free(msg);
    /* a folder under the output name */
    assert_int_equal(sh("cd '%s' && mkdir -p outdir.csv && '%s' --quiet eval %s --csv outdir.csv > "
                        "dir.log 2>&1",
                        g_dir, g_bin, fold),
                     1);
    snprintf(path, sizeof path, "%s/dir.log", g_dir);
    msg = slurp(path);
    assert_non_null(msg);
    if (!strstr(msg, "outdir.csv: not a regular file"))
        fail_msg("message '%s' should say 'outdir.csv: not a regular file'", msg);
    free(msg);
    struct stat st;
    snprintf(path, sizeof path, "%s/outdir.csv", g_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
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

/* Run `pipeline eval ARGS` in the fixture folder; its exit code, and its output in *log (caller
 * frees). */
static int eval_run(const char *args, char **log)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/run.log", g_dir);
    int rc = sh("cd '%s' && '%s' eval %s > run.log 2>&1", g_dir, g_bin, args);
    *log = slurp(path);
    assert_non_null(*log);
    return rc;
}

static void want_in(const char *text, const char *what, const char *args)
{
    if (!strstr(text, what))
        fail_msg("eval %s: output lacks '%s':\n%s", args, what, text);
}

/* Issue 23: an intensity image is no label map. An int16 "CT" with 300 distinct values and a
 * float "MR" given as --pred (or --ref) are refused before anything is scored (exit 1, the file
 * and what was found in the message, no report); --max-labels raises the limit and --force
 * scores anyway, but never non-integer values; 255 integral labels in a float image pass. */
static void test_not_a_label_map(void **state)
{
    (void)state;
    bad_case("--pred ct_int16.nii.gz --ref sph_r.nii.gz", 1,
             "ct_int16.nii.gz: not a label map: 300 distinct non-zero values",
             "expected at most 255 integer labels; --max-labels");
    bad_case("--pred sph_p.nii.gz --ref ct_int16.nii.gz", 1, "ct_int16.nii.gz: not a label map",
             "--force scores anyway");
    bad_case("--pred mr_float.nii.gz --ref sph_r.nii.gz", 1, "mr_float.nii.gz: not a label map: ",
             "distinct non-zero values, non-integer values present in 22440 voxels (voxel "
             "(0,0,0) = ");
    bad_case("--pred mr_float.nii.gz --ref sph_r.nii.gz --force", 1, "non-integer values present",
             "also with --force");
    bad_case("--pred bad_float.nii.gz --ref sph_r.nii.gz", 1,
             "bad_float.nii.gz: not a label map: 1 distinct non-zero value, non-integer", NULL);
    bad_case("--pred ct_int16.nii.gz --ref sph_r.nii.gz --max-labels 299", 1, "300 distinct", NULL);
    bad_case("--pred sph_p.nii.gz --ref sph_r.nii.gz --max-labels 0", 2, "--max-labels", NULL);
    bad_case("--pred sph_p.nii.gz --ref sph_r.nii.gz --max-labels 70000", 2, "--max-labels", NULL);
    /* a folder: the bad case is named, nothing is written */
    assert_int_equal(sh("cd '%s' && rm -rf img_p && mkdir img_p && cp fold_p/case_001.nii.gz "
                        "img_p/ && cp ct_int16.nii.gz img_p/case_002.nii.gz",
                        g_dir),
                     0);
    bad_case("--pred img_p --ref fold_r", 1, "img_p/case_002.nii.gz: not a label map", NULL);
    char *log = NULL;
    const char *args = "--pred ct_int16.nii.gz --ref sph_r.nii.gz --max-labels 300 --json ok.json";
    assert_int_equal(eval_run(args, &log), 0);
    free(log);
    args = "--pred ct_int16.nii.gz --ref sph_r.nii.gz --force --json ok.json";
    assert_int_equal(eval_run(args, &log), 0);
    want_in(log, "scored anyway (--force)", args);
    free(log);
    args = "--pred lab255_float.nii.gz --ref lab255_float.nii.gz --json ok.json";
    assert_int_equal(eval_run(args, &log), 0);
    want_in(log, "255 label(s)", args);
    free(log);
    args = "--help";
    assert_int_equal(eval_run(args, &log), 0);
    want_in(log, "--max-labels N", args);
    want_in(log, "--both-empty P", args);
    want_in(log, "--label-names FILE", args);
    want_in(log, "--force", args);
    free(log);
}

/* Issue 23: a label in neither mask of a case is NaN and left out of every summary by default
 * (nnU-Net); --both-empty one keeps the old rule. The per-case values and the summaries of both
 * policies are checked against numpy in eval_ref.py (scenarios bothempty_*); here the CSV, the
 * HDF5 report, the console summary and the option's errors. */
static void test_both_empty_reports(void **state)
{
    (void)state;
    char *log = NULL;
    const char *args = "--pred be_p --ref be_r --csv be.csv --out be.h5 --json be.json";
    assert_int_equal(eval_run(args, &log), 0);
    want_in(log, "means per label (both-empty cases: NaN, left out (--both-empty nan))", args);
    char row[128];
    snprintf(row, sizeof row, "%-24s %6d", "mean of 3/4 cases", 2); /* label 2: b2 left out */
    want_in(log, row, args);
    free(log);
    assert_int_equal(sh("/usr/bin/python3 '%s' h5 '%s/be.h5' '%s/be.json'", g_py, g_dir, g_dir), 0);
    char path[2048];
    snprintf(path, sizeof path, "%s/be.csv", g_dir);
    char *csv = slurp(path);
    assert_non_null(csv);
    want_in(csv, ",2,both,nan,nan,nan,nan,nan,nan,nan,0,0,0,0,nan,nan,nan,nan,nan,nan,", args);
    want_in(csv, "mean_pred_to_ref,label_name\n", args);
    free(csv);
    args = "--pred be_p --ref be_r --both-empty one --csv be1.csv";
    assert_int_equal(eval_run(args, &log), 0);
    want_in(log, "(both-empty cases: dice 1, distances 0 (--both-empty one))", args);
    snprintf(row, sizeof row, "%-24s %6d", "mean of 4/4 cases", 2);
    want_in(log, row, args);
    free(log);
    snprintf(path, sizeof path, "%s/be1.csv", g_dir);
    csv = slurp(path);
    assert_non_null(csv);
    want_in(csv, ",2,both,1,1,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,", args);
    free(csv);
    bad_case("--pred be_p --ref be_r --both-empty zero", 2, "--both-empty", "zero");
    bad_case("--pred be_p --ref be_r --both-empty", 2, "--both-empty", NULL);
}

static void write_text(const char *name, const char *text)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Issue 23: --label-names from an AAL-style .txt, an nnU-Net dataset.json and a CSV: the names
 * in the JSON (label_names, summary), CSV, HDF5 (/label_names) and console outputs; labels the
 * file does not name are label_<value> with a warning. Malformed files: exit 1, FILE:LINE and
 * what is wrong, no report. */
static void test_label_names(void **state)
{
    (void)state;
    write_text("aal.txt", "# AAL-style\n1 Precentral_L 2001\n\n2\tPrecentral_R\t2002\n"
                          "3 Frontal_Sup_L 2101\n4 Frontal_Sup_R 2102\n");
    write_text("dataset.json", "{\n  \"name\": \"x\",\n  \"labels\": {\n    \"background\": 0,\n"
                               "    \"liver\": 1,\n    \"spleen\": 2,\n    \"kidney\": 3\n  },\n"
                               "  \"numTraining\": 2\n}\n");
    write_text("names.csv", "value,name,colour\r\n1,\"Left, ventricle\",red\r\n2,MYO,green\r\n"
                            "3,RV,blue\r\n");
    write_text("partial.csv", "2,MYO\n1,LV\n");
    const char *file[4] = {"aal.txt", "dataset.json", "names.csv", "partial.csv"};
    const char *want[4] = {"[\"Precentral_L\", \"Precentral_R\", \"Frontal_Sup_L\"]",
                           "[\"liver\", \"spleen\", \"kidney\"]",
                           "[\"Left, ventricle\", \"MYO\", \"RV\"]",
                           "[\"LV\", \"MYO\", \"label_3\"]"};
    const char *csvrow[4] = {",Precentral_L\n", ",liver\n", ",\"Left, ventricle\"\n", ",label_3\n"};
    const char *row1[4] = {"  Precentral_L\n", "  liver\n", "  Left, ventricle\n", "  LV\n"};
    for (int k = 0; k < 4; k++) {
        char args[1024], path[2048];
        snprintf(args, sizeof args,
                 "--pred ml_p.nii --ref ml_r.nii --label-names %s --json ln.json --csv ln.csv "
                 "--out ln.h5",
                 file[k]);
        char *log = NULL;
        assert_int_equal(eval_run(args, &log), 0);
        want_in(log, "  name\n", args);
        want_in(log, row1[k], args); /* label 1's rows in the table */
        if (k == 3)
            want_in(log, "names no structure for 1 scored label(s) (3): named label_<value>", args);
        free(log);
        snprintf(path, sizeof path, "%s/ln.json", g_dir);
        char *js = slurp(path);
        assert_non_null(js);
        char key[256];
        snprintf(key, sizeof key, "\"label_names\": %s", want[k]);
        want_in(js, key, args);
        want_in(js, "\"1\": {\"name\": ", args);
        free(js);
        snprintf(path, sizeof path, "%s/ln.csv", g_dir);
        char *csv = slurp(path);
        assert_non_null(csv);
        want_in(csv, csvrow[k], args);
        free(csv);
        assert_int_equal(
            sh("/usr/bin/python3 '%s' h5 '%s/ln.h5' '%s/ln.json' > /dev/null", g_py, g_dir, g_dir),
            0);
    }
    /* malformed: one per format, and the common errors */
    write_text("bad.txt", "1 Precentral_L 2001\nx Precentral_R 2002\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names bad.txt", 1,
             "bad.txt:2:", "integer VALUE");
    write_text("lonely.txt", "1 Precentral_L\n\n7\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names lonely.txt", 1,
             "lonely.txt:3:", "the value 7 alone");
    write_text("twice.txt", "1 A\n2 B\n1 C\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names twice.txt", 1,
             "twice.txt:3:", "named twice ('C', and 'A' on line 1)");
    write_text("regions.json", "{\n  \"labels\": {\n    \"background\": 0,\n"
                               "    \"whole_tumor\": [1, 2, 3],\n    \"enhancing\": 3\n  }\n}\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names regions.json", 1,
             "regions.json:4: labels.\"whole_tumor\" is a region (the list of values [1, 2, 3])",
             NULL);
    write_text("syntax.json", "{\n  \"labels\": {\n    \"liver\": 1,\n    \"spleen\" 2\n  }\n}\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names syntax.json", 1,
             "syntax.json:4:", "not valid JSON");
    write_text("frac.json", "{\"labels\": {\"background\": 0,\n \"liver\": 1.5}}\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names frac.json", 1,
             "frac.json:2:", "integer label value, got 1.5");
    write_text("nolabels.json", "{\"name\": \"x\"}\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names nolabels.json", 1,
             "nolabels.json:1:", "\"labels\"");
    write_text("bad.csv", "value,name\n1,LV\ntwo,MYO\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names bad.csv", 1,
             "bad.csv:3:", "column 1 (value)");
    write_text("short.csv", "name,value\nLV,1\nMYO\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names short.csv", 1,
             "short.csv:3:", "at least 2 columns");
    write_text("quote.csv", "1,\"LV\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names quote.csv", 1,
             "quote.csv:1:", "unterminated");
    write_text("empty.txt", "# nothing\n");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names empty.txt", 1, "empty.txt",
             "no label names");
    bad_case("--pred ml_p.nii --ref ml_r.nii --label-names absent.txt", 1, "absent.txt", NULL);
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
        cmocka_unit_test(test_tables_vs_python),   cmocka_unit_test(test_scenarios_vs_reference),
        cmocka_unit_test(test_reports_h5_csv),     cmocka_unit_test(test_report_to_stdout),
        cmocka_unit_test(test_bad_input),          cmocka_unit_test(test_not_a_label_map),
        cmocka_unit_test(test_both_empty_reports), cmocka_unit_test(test_label_names),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
