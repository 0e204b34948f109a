/* The report library: evaluation reports written as JSON and read back field for field
 * (mk_report_eval_read), the paired comparison on hand-made Dice values (pairing by case id,
 * excluded cases, wins/ties/losses, Holm), the HTML page with a case whose files are missing
 * (listed, not fatal) and the atomic write, and the reader's errors naming file and field. */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mk_fs.h"
#include "report/mk_report.h"
#include "test_tmp.h"

static char g_tmp[512];

static int setup(void **s)
{
    (void)s;
    return mk_test_tmp_make(g_tmp, sizeof g_tmp, "report");
}

static int teardown(void **s)
{
    (void)s;
    mk_test_tmp_remove(g_tmp);
    return 0;
}

static char *dupz(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

/* A report of ncases cases "c<i>" (ids[i] when given) and labels {1, 2}, Dice dice[i][j]. */
static void make_report(mk_eval_report *r, int ncases, const char *const *ids,
                        const double (*dice)[2])
{
    memset(r, 0, sizeof *r);
    r->version = "test";
    r->command_line = "test_report";
    r->convention = MK_METRIC_DEEPMIND;
    r->tolerance_mm = 1.5;
    r->percentile = 95;
    r->nlabels = 2;
    r->labels = malloc(2 * sizeof *r->labels);
    r->labels[0] = 1;
    r->labels[1] = 2;
    r->cases = calloc((size_t)ncases, sizeof *r->cases);
    r->ncases = ncases;
    for (int i = 0; i < ncases; i++) {
        char id[32];
        snprintf(id, sizeof id, "c%d", i);
        r->cases[i].id = dupz(ids ? ids[i] : id);
        r->cases[i].pred = dupz("/nonexistent/pred.nii.gz");
        r->cases[i].ref = dupz("/nonexistent/ref.nii.gz");
        r->cases[i].res = calloc(2, sizeof *r->cases[i].res);
        for (int j = 0; j < 2; j++) {
            mk_metric_result *m = &r->cases[i].res[j];
            m->label = r->labels[j];
            m->dice = dice ? dice[i][j] : 0.5 + 0.1 * i + 0.01 * j;
            m->jaccard = m->dice / (2 - m->dice);
            m->hd = 3.25 + i;
            m->hd95 = 2.5 + i;
            m->assd = 0.75;
            m->masd = 0.8;
            m->surface_dice = 0.9;
            m->voxels_pred = 100 + i;
            m->voxels_ref = 110 + j;
            m->volume_pred_ml = 0.1 * (100 + i);
            m->volume_ref_ml = 0.1 * (110 + j);
            m->ndim = 3;
            for (int d = 0; d < 2; d++) {
                m->dir_hd[d] = 3 + d;
                m->dir_hd95[d] = 2 + d;
                m->dir_mean[d] = 0.5 + d;
                m->surface[d] = 400 + d;
                m->surface_within[d] = 300 + d;
            }
        }
    }
}

static void test_json_roundtrip(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_eval_report r;
    make_report(&r, 3, NULL, NULL);
    /* non-finite values, an empty state, names, the run fields, an image, unpaired files */
    r.cases[1].res[0].hd95 = INFINITY;
    r.cases[1].res[0].empty = MK_METRIC_EMPTY_PRED;
    r.cases[1].res[0].dir_mean[1] = NAN;
    r.cases[2].image = dupz("img/c2.nii.gz");
    const char *names[2] = {"RV", "needs \"quotes\", and commas"};
    r.label_names = names;
    r.split = dupz("test");
    r.config_hash = dupz("abc123");
    r.model_file = dupz("models/x.h5");
    r.postprocess = dupz("none");
    r.nunpaired_ref = 1;
    r.unpaired_ref = malloc(sizeof *r.unpaired_ref);
    r.unpaired_ref[0] = dupz("R/lonely.nii.gz");
    mk_eval_report_stamp(&r);
    char path[600];
    snprintf(path, sizeof path, "%s/r.json", g_tmp);
    assert_int_equal(mk_report_eval_json(&ctx, &r, path), MK_OK);
    mk_eval_report b;
    assert_int_equal(mk_report_eval_read(&ctx, path, &b), MK_OK);
    assert_int_equal(b.ncases, 3);
    assert_int_equal(b.nlabels, 2);
    assert_int_equal(b.convention, MK_METRIC_DEEPMIND);
    assert_true(b.tolerance_mm == 1.5);
    assert_string_equal(b.created, r.created);
    assert_string_equal(b.label_names[1], names[1]);
    assert_string_equal(b.split, "test");
    assert_string_equal(b.config_hash, "abc123");
    assert_string_equal(b.model_file, "models/x.h5");
    assert_null(b.data);
    assert_null(b.cases[0].image);
    assert_string_equal(b.cases[2].image, "img/c2.nii.gz");
    assert_int_equal(b.nunpaired_ref, 1);
    assert_string_equal(b.unpaired_ref[0], "R/lonely.nii.gz");
    for (int i = 0; i < 3; i++) {
        assert_string_equal(b.cases[i].id, r.cases[i].id);
        for (int j = 0; j < 2; j++) {
            const mk_metric_result *x = &r.cases[i].res[j], *y = &b.cases[i].res[j];
            assert_int_equal(x->empty, y->empty);
            assert_int_equal(x->voxels_pred, y->voxels_pred);
            assert_int_equal(x->voxels_ref, y->voxels_ref);
            for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
                double u = mk_eval_metric_value(x, m), v = mk_eval_metric_value(y, m);
                assert_true(u == v || (isnan(u) && isnan(v)));
            }
            for (int d = 0; d < 2; d++) {
                assert_true(x->dir_hd95[d] == y->dir_hd95[d]);
                assert_true(x->dir_mean[d] == y->dir_mean[d] ||
                            (isnan(x->dir_mean[d]) && isnan(y->dir_mean[d])));
                assert_true(x->surface_within[d] == y->surface_within[d]);
            }
        }
    }
    assert_true(isinf(b.cases[1].res[0].hd95));
    r.label_names = NULL;
    mk_eval_report_clear(&r);
    mk_eval_report_clear(&b);
}

static void test_reader_errors(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_eval_report r;
    char path[600];
    snprintf(path, sizeof path, "%s/bad.json", g_tmp);
    const char *docs[][2] = {
        {"{\"convention\": \"deepmind\"", "not valid JSON"},
        {"[1, 2]", "expected an evaluation report object"},
        {"{\"convention\": \"sideways\", \"tolerance_mm\": 1}", "convention"},
        {"{\"convention\": \"medpy\", \"tolerance_mm\": 1, \"labels\": [1], \"cases\": [{\"id\": "
         "\"a\", \"pred\": \"p\", \"ref\": \"r\", \"labels\": {\"1\": {\"dice\": \"high\"}}}]}",
         "field 'cases[0].labels.1.dice': expected a number"},
        {"{\"convention\": \"medpy\", \"tolerance_mm\": 1, \"labels\": [1, 2], \"cases\": "
         "[{\"id\": "
         "\"a\", \"pred\": \"p\", \"ref\": \"r\", \"labels\": {}}]}",
         "field 'cases[0].labels.1': expected the metrics of this label (missing)"},
        {"{\"convention\": \"medpy\", \"tolerance_mm\": 1, \"labels\": [1.5], \"cases\": []}",
         "field 'labels': expected integer label values"},
    };
    for (size_t k = 0; k < sizeof docs / sizeof docs[0]; k++) {
        FILE *f = fopen(path, "w");
        fputs(docs[k][0], f);
        fclose(f);
        mk_ctx_init(&ctx);
        assert_int_not_equal(mk_report_eval_read(&ctx, path, &r), MK_OK);
        if (!strstr(ctx.msg, docs[k][1]) || !strstr(ctx.msg, "bad.json"))
            fail_msg("document %zu: message '%s' lacks '%s'", k, ctx.msg, docs[k][1]);
        assert_int_equal(r.ncases, 0);
        assert_null(r.cases);
    }
    snprintf(path, sizeof path, "%s/none.json", g_tmp);
    assert_int_not_equal(mk_report_eval_read(&ctx, path, &r), MK_OK);
    assert_non_null(strstr(ctx.msg, "none.json"));
}

static void test_compare(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    /* a: cases c0..c3; b: the same in another order plus one a lacks */
    const double da[4][2] = {{0.9, 0.5}, {0.8, 0.5}, {0.7, 0.5}, {0.6, 0.5}};
    const char *ib[5] = {"c3", "extra", "c1", "c0", "c2"};
    const double db[5][2] = {{0.5, 0.5}, {0.1, 0.1}, {0.8, 0.5}, {0.8, 0.5}, {0.75, 0.5}};
    mk_eval_report a, b;
    make_report(&a, 4, NULL, da);
    make_report(&b, 5, ib, db);
    mk_report_model m[2] = {{"a", &a}, {"b", &b}};
    mk_report_comparison *c = NULL;
    int nc = 0;
    assert_int_equal(mk_report_compare(&ctx, m, 2, 2000, 1, &c, &nc), MK_OK);
    assert_int_equal(nc, 2);
    assert_string_equal(c[0].a, "a");
    assert_string_equal(c[0].b, "b");
    assert_int_equal(c[0].label, 1);
    assert_int_equal(c[0].n, 4);
    assert_int_equal(c[0].n_excluded, 1);
    /* d = 0.1, 0, -0.05, 0.1 */
    assert_int_equal(c[0].wins, 2);
    assert_int_equal(c[0].ties, 1);
    assert_int_equal(c[0].losses, 1);
    assert_true(fabs(c[0].mean_diff - 0.0375) < 1e-12);
    assert_true(c[0].ci95[0] <= c[0].mean_diff && c[0].mean_diff <= c[0].ci95[1]);
    assert_true(c[0].ci95[0] >= -0.05 - 1e-12 && c[0].ci95[1] <= 0.1 + 1e-12);
    assert_int_equal(c[0].n_zero, 1);
    assert_int_equal(c[0].exact, 0); /* a zero difference: the normal approximation */
    /* label 2: every difference zero: no test, ties only */
    assert_int_equal(c[1].ties, 4);
    assert_true(isnan(c[1].wilcoxon_p));
    assert_true(isnan(c[1].p_holm));
    /* Holm with one finite p: unchanged */
    assert_true(fabs(c[0].p_holm - c[0].wilcoxon_p) < 1e-15);
    /* the JSON form */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    mk_report_comparisons_json(f, c, nc);
    fclose(f);
    assert_non_null(
        strstr(buf, "\"a\": \"a\", \"b\": \"b\", \"metric\": \"dice\", \"structure\": 1"));
    assert_non_null(strstr(buf, "\"wins\": 2, \"ties\": 1, \"losses\": 1"));
    free(buf);
    free(c);
    mk_eval_report_clear(&a);
    mk_eval_report_clear(&b);
}

static void test_html_missing_files(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_eval_report a;
    make_report(&a, 3, NULL, NULL);
    a.cases[0].res[1].empty = MK_METRIC_EMPTY_BOTH;
    mk_report_model m[1] = {{"only", &a}};
    mk_report_html_opts o;
    mk_report_html_opts_default(&o);
    o.version = "test";
    o.source = "unit test";
    o.bootstrap = 500;
    char path[600], bad[700];
    snprintf(path, sizeof path, "%s/page.html", g_tmp);
    assert_int_equal(mk_report_html(&ctx, &o, m, 1, NULL, 0, path), MK_OK);
    char *html = NULL;
    size_t len = 0;
    assert_int_equal(mk_fs_read_all(&ctx, path, &html, &len), MK_OK);
    /* the masks do not exist: no panel, the reason in the appendix; nothing dropped */
    assert_null(strstr(html, "<img"));
    assert_non_null(strstr(html, "image panel: no panel:"));
    assert_non_null(strstr(html, "both masks empty"));
    assert_non_null(strstr(html, "For research use only"));
    assert_non_null(strstr(html, "One model only"));
    int rows = 0; /* one row per case in the case table: the id cell carries data-v="c<i>" */
    for (const char *p = html; (p = strstr(p, "<td class=\"l\" data-v=\"c")); p++)
        rows++;
    assert_int_equal(rows, 3);
    free(html);
    /* a folder that does not exist: an error naming the file, nothing written */
    snprintf(bad, sizeof bad, "%s/missing/page.html", g_tmp);
    assert_int_not_equal(mk_report_html(&ctx, &o, m, 1, NULL, 0, bad), MK_OK);
    assert_false(mk_fs_is_file(bad));
    /* bad options: before anything is read */
    o.window[0] = 10;
    o.window[1] = 10;
    assert_int_equal(mk_report_html(&ctx, &o, m, 1, NULL, 0, path), MK_ERR_INVALID);
    assert_non_null(strstr(ctx.msg, "window"));
    mk_eval_report_clear(&a);
}

/* Issue 23: both-empty pairs scored NaN ("nan" policy) are left out of the model and structure
 * summaries (counted in n_excluded, not as infinite), of the paired comparison (n_nan) and of the
 * case ranking; the policy survives the JSON round trip. The other structure's figures are
 * those of a report without the pair. */
static void test_both_empty_nan(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const double da[4][2] = {{0.9, 0.5}, {0.8, 0.6}, {0.7, 0.7}, {0.6, 0.8}};
    mk_eval_report a, b;
    make_report(&a, 4, NULL, da);
    make_report(&b, 4, NULL, da);
    a.both_empty = MK_METRIC_BOTH_NAN;
    /* case c1, label 2: in neither mask */
    mk_metric_result_empty(&a.cases[1].res[1], 2, MK_METRIC_EMPTY_BOTH);
    mk_metric_result_both_empty(&a.cases[1].res[1], MK_METRIC_BOTH_NAN);
    assert_true(isnan(a.cases[1].res[1].dice));
    assert_int_equal(mk_eval_excluded(&a, 1), 1);
    assert_int_equal(mk_eval_excluded(&a, 0), 0);
    mk_report_model_summary sa;
    assert_int_equal(mk_report_model_summarise(&ctx, &a, "a", 10, &sa), MK_OK);
    const mk_report_structure_summary *t = &sa.structures[1];
    assert_int_equal(t->n_excluded, 1);
    assert_int_equal(t->n_infinite, 0);
    assert_int_equal(t->cases, 4);
    assert_true(fabs(t->dice_mean - (0.5 + 0.7 + 0.8) / 3) < 1e-12);
    assert_true(fabs(t->dice_median - 0.7) < 1e-12);
    double m = (0.5 + 0.7 + 0.8) / 3, v = 0;
    for (int i = 0; i < 3; i++) {
        double x = (double[]){0.5, 0.7, 0.8}[i] - m;
        v += x * x / 2;
    }
    assert_true(fabs(t->dice_std - sqrt(v)) < 1e-12);
    assert_true(fabs(t->hd95_mean - (2.5 + 4.5 + 5.5) / 3) < 1e-12);
    assert_true(fabs(t->volume_ref_ml_mean - (3 * 11.1 + 0) / 4) < 1e-12); /* every case */
    assert_int_equal(sa.n_excluded, 1);
    assert_int_equal(sa.n_infinite, 0);
    assert_true(fabs(sa.dice_mean - (0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 0.7 + 0.8) / 7) < 1e-12);
    /* structure 1 is as without the pair */
    mk_report_model_summary sb;
    assert_int_equal(mk_report_model_summarise(&ctx, &b, "b", 10, &sb), MK_OK);
    assert_memory_equal(&sa.structures[0], &sb.structures[0], sizeof sa.structures[0]);
    mk_report_summary_info info = {.split = "test", .tolerance_mm = 1};
    char path[700];
    snprintf(path, sizeof path, "%s/summary.json", g_tmp);
    mk_report_model_summary both[2] = {sa, sb};
    assert_int_equal(mk_report_summary_json(&ctx, &info, both, 2, path), MK_OK);
    char *text = NULL;
    size_t len;
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    assert_non_null(
        strstr(text, "\"cases_with_infinite_distance\": 0, \"both_empty_excluded\": 1"));
    free(text);
    snprintf(path, sizeof path, "%s/summary.md", g_tmp);
    assert_int_equal(mk_report_summary_md(&ctx, &info, both, 2, path), MK_OK);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    assert_non_null(strstr(text, "(case, structure) pairs: a 1."));
    assert_non_null(strstr(text, "Left out as both-empty (NaN): label_2 1 case(s)."));
    free(text);
    /* the comparison leaves the pair out */
    mk_report_model mm[2] = {{"a", &a}, {"b", &b}};
    mk_report_comparison *c = NULL;
    int nc = 0;
    assert_int_equal(mk_report_compare(&ctx, mm, 2, 500, 1, &c, &nc), MK_OK);
    assert_int_equal(nc, 2);
    assert_int_equal(c[0].n, 4);
    assert_int_equal(c[0].n_nan, 0);
    assert_int_equal(c[1].n, 3);
    assert_int_equal(c[1].n_nan, 1);
    assert_int_equal(c[1].ties, 3);
    assert_true(c[1].mean_diff == 0);
    free(c);
    /* the JSON round trip keeps the policy and the NaN */
    snprintf(path, sizeof path, "%s/nan.json", g_tmp);
    assert_int_equal(mk_report_eval_json(&ctx, &a, path), MK_OK);
    mk_eval_report r;
    assert_int_equal(mk_report_eval_read(&ctx, path, &r), MK_OK);
    assert_int_equal(r.both_empty, MK_METRIC_BOTH_NAN);
    assert_true(isnan(r.cases[1].res[1].dice));
    assert_int_equal(r.cases[1].res[1].empty, MK_METRIC_EMPTY_BOTH);
    assert_int_equal(mk_eval_excluded(&r, 1), 1);
    mk_eval_report_clear(&r);
    snprintf(path, sizeof path, "%s/one.json", g_tmp);
    assert_int_equal(mk_report_eval_json(&ctx, &b, path), MK_OK);
    assert_int_equal(mk_report_eval_read(&ctx, path, &r), MK_OK);
    assert_int_equal(r.both_empty, MK_METRIC_BOTH_ONE);
    mk_eval_report_clear(&r);
    mk_eval_report_clear(&a);
    mk_eval_report_clear(&b);
}

/* mk_report_label_names_read: values sorted, found by value; formats by the file's extension. */
static void test_label_names_read(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char path[700];
    snprintf(path, sizeof path, "%s/lut.txt", g_tmp);
    FILE *f = fopen(path, "w");
    fputs("  0   Unknown   0 0 0 0\n17 Left-Hippocampus 220 216 20 0\n2 Left-WM 245 245 245 0\n"
          "-3 negative\n",
          f);
    fclose(f);
    mk_report_label_names ln;
    assert_int_equal(mk_report_label_names_read(&ctx, path, &ln), MK_OK);
    assert_int_equal(ln.n, 4);
    assert_int_equal(ln.values[0], -3);
    assert_int_equal(ln.values[3], 17);
    assert_string_equal(mk_report_label_names_find(&ln, 17), "Left-Hippocampus");
    assert_string_equal(mk_report_label_names_find(&ln, 0), "Unknown");
    assert_null(mk_report_label_names_find(&ln, 5));
    mk_report_label_names_clear(&ln);
    snprintf(path, sizeof path, "%s/msd.json", g_tmp);
    f = fopen(path, "w");
    fputs("{\"labels\": {\"0\": \"background\", \"1\": \"edema\", \"2\": \"tumour\"}}", f);
    fclose(f);
    assert_int_equal(mk_report_label_names_read(&ctx, path, &ln), MK_OK);
    assert_int_equal(ln.n, 3);
    assert_string_equal(mk_report_label_names_find(&ln, 2), "tumour");
    mk_report_label_names_clear(&ln);
    f = fopen(path, "w");
    fputs("{\"labels\": {\"0\": \"background\", \"one\": \"edema\"}}", f);
    fclose(f);
    assert_int_equal(mk_report_label_names_read(&ctx, path, &ln), MK_ERR_FORMAT);
    assert_non_null(strstr(ctx.msg, "msd.json:1: labels.\"one\""));
    assert_int_equal(ln.n, 0);
    mk_report_label_names_clear(&ln);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_roundtrip), cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_compare),        cmocka_unit_test(test_html_missing_files),
        cmocka_unit_test(test_both_empty_nan), cmocka_unit_test(test_label_names_read),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
