/* Classification metrics (metrics/classify.c, mk_classify.h): hand-derived cases, every expected
 * number worked out in the comment next to it (perfect and all-wrong predictions, tied scores,
 * n = 0, a class absent from the truth, argmax ties, invalid input), and seeded random cases
 * (binary and 4-class, continuous and tied scores, an absent class) against the independent
 * numpy/scipy reference tests/classify_ref.py (scipy.stats.mannwhitneyu and rankdata), to 1e-12.
 * Fails without python3 + numpy + scipy (declared in scripts/deps.list). */
#define _GNU_SOURCE /* nftw (test_tmp.h) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mk_rng.h"
#include "metrics/mk_classify.h"
#include "test_tmp.h"

static char g_tmp[512];

static void near(double got, double want, double tol, const char *what)
{
    if (isnan(want) && isnan(got))
        return;
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: got %.17g want %.17g\n", what, got, want);
        fail();
    }
}

#define EQ(got, want, what) near((got), (want), 1e-12, (what))

static void compute_ok(int nclass, int64_t n, const int32_t *t, const float *p, mk_cls_metrics *m)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_status st = mk_cls_metrics_compute(&ctx, nclass, n, t, p, m);
    if (st != MK_OK)
        fail_msg("mk_cls_metrics_compute: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(m->nclass, nclass);
    assert_int_equal(m->n, n);
}

static void expect_counts(const mk_cls_metrics *m, const int64_t *conf, const int64_t *support)
{
    for (int k = 0; k < m->nclass * m->nclass; k++)
        assert_int_equal(m->confusion[k], conf[k]);
    for (int c = 0; c < m->nclass; c++)
        assert_int_equal(m->support[c], support[c]);
}

static void expect_per_class(const mk_cls_metrics *m, const double *P, const double *R,
                             const double *F, const double *A)
{
    char w[64];
    for (int c = 0; c < m->nclass; c++) {
        snprintf(w, sizeof w, "precision[%d]", c);
        EQ(m->precision[c], P[c], w);
        snprintf(w, sizeof w, "recall[%d]", c);
        EQ(m->recall[c], R[c], w);
        snprintf(w, sizeof w, "f1[%d]", c);
        EQ(m->f1[c], F[c], w);
        snprintf(w, sizeof w, "auc_class[%d]", c);
        EQ(m->auc_class[c], A[c], w);
    }
}

/* ------------------------------------------------------------------------- hand-derived */

static void test_perfect(void **state)
{
    (void)state;
    /* predictions 0 0 1 1 = truth; class 1 scores {.7,.9} all above {.1,.2}; class 0 scores
     * {.9,.8} all above {.3,.1}: every figure 1 */
    const int32_t t[] = {0, 0, 1, 1};
    const float p[] = {0.9f, 0.1f, 0.8f, 0.2f, 0.3f, 0.7f, 0.1f, 0.9f};
    mk_cls_metrics m;
    compute_ok(2, 4, t, p, &m);
    const int64_t conf[] = {2, 0, 0, 2}, sup[] = {2, 2};
    expect_counts(&m, conf, sup);
    const double one[] = {1, 1};
    expect_per_class(&m, one, one, one, one);
    EQ(m.accuracy, 1, "accuracy");
    EQ(m.balanced_accuracy, 1, "balanced");
    EQ(m.auc, 1, "auc");
    mk_cls_metrics_free(&m);
    assert_null(m.confusion);
    assert_int_equal(m.nclass, 0);
}

static void test_all_wrong(void **state)
{
    (void)state;
    /* predictions 1 1 0 0 against truth 0 0 1 1: TP = 0 of every class, P = 0/2, R = 0/2, F1's
     * denominator P + R = 0 -> NaN; every positive scores below every negative: AUC 0 */
    const int32_t t[] = {0, 0, 1, 1};
    const float p[] = {0.1f, 0.9f, 0.2f, 0.8f, 0.7f, 0.3f, 0.9f, 0.1f};
    mk_cls_metrics m;
    compute_ok(2, 4, t, p, &m);
    const int64_t conf[] = {0, 2, 2, 0}, sup[] = {2, 2};
    expect_counts(&m, conf, sup);
    const double zero[] = {0, 0}, nan2[] = {NAN, NAN};
    expect_per_class(&m, zero, zero, nan2, zero);
    EQ(m.accuracy, 0, "accuracy");
    EQ(m.balanced_accuracy, 0, "balanced");
    EQ(m.auc, 0, "auc");
    mk_cls_metrics_free(&m);
}

static void test_tied_scores(void **state)
{
    (void)state;
    /* truth 0 1 0 1 1, class-1 score s = .5 .5 .2 .8 .2 (class 0: 1 - s).
     * AUC of class 1: positives {.5,.8,.2} vs negatives {.5,.2}: .5=.5 -> 1/2, .5>.2 -> 1,
     * .8 -> 1 + 1, .2<.5 -> 0, .2=.2 -> 1/2: 4/6. Class 0: positives {.5,.8} vs {.5,.2,.8}:
     * 1/2 + 1 + 0 + 1 + 1 + 1/2 = 4/6.
     * Predictions (the tie [.5,.5] goes to class 0): 0 0 0 1 0 -> confusion [[2,0],[2,1]];
     * P = 2/4, 1/1; R = 2/2, 1/3; F1 = 2(.5)(1)/1.5 = 2/3, 2(1)(1/3)/(4/3) = 1/2; accuracy 3/5,
     * balanced (1 + 1/3)/2 = 2/3. */
    const int32_t t[] = {0, 1, 0, 1, 1};
    const float p[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.8f, 0.2f, 0.2f, 0.8f, 0.8f, 0.2f};
    mk_cls_metrics m;
    compute_ok(2, 5, t, p, &m);
    const int64_t conf[] = {2, 0, 2, 1}, sup[] = {2, 3};
    expect_counts(&m, conf, sup);
    const double P[] = {0.5, 1}, R[] = {1, 1.0 / 3}, F[] = {2.0 / 3, 0.5}, A[] = {4.0 / 6, 4.0 / 6};
    expect_per_class(&m, P, R, F, A);
    EQ(m.accuracy, 0.6, "accuracy");
    EQ(m.balanced_accuracy, 2.0 / 3, "balanced");
    EQ(m.auc, 4.0 / 6, "auc = auc_class[1]");
    mk_cls_metrics_free(&m);

    /* mk_cls_auc on the same scores; all scores equal: every pair a tie, 1/2 */
    const uint8_t pos[] = {0, 1, 0, 1, 1};
    const float s[] = {0.5f, 0.5f, 0.2f, 0.8f, 0.2f}, same[] = {3, 3, 3, 3, 3};
    EQ(mk_cls_auc(5, pos, s), 4.0 / 6, "mk_cls_auc ties");
    EQ(mk_cls_auc(5, pos, same), 0.5, "mk_cls_auc all tied");
    /* positives {2,9} vs negatives {1,5,7} (distinct): 2>1, 9>1,5,7: 4/6; infinities order */
    const uint8_t pos2[] = {1, 0, 0, 1, 0};
    const float s2[] = {2, 1, 5, 9, 7}, s3[] = {-INFINITY, 1, 5, INFINITY, 7};
    EQ(mk_cls_auc(5, pos2, s2), 4.0 / 6, "mk_cls_auc distinct");
    EQ(mk_cls_auc(5, pos2, s3), 3.0 / 6, "mk_cls_auc infinities");
    /* undefined: n = 0, one class only, a NaN score */
    const uint8_t allpos[] = {1, 1, 1, 1, 1};
    const float nanv[] = {0.1f, NAN, 0.3f, 0.4f, 0.5f};
    assert_true(isnan(mk_cls_auc(0, pos, s)));
    assert_true(isnan(mk_cls_auc(5, allpos, s)));
    assert_true(isnan(mk_cls_auc(5, pos, nanv)));
}

static void test_empty(void **state)
{
    (void)state;
    mk_cls_metrics m;
    compute_ok(3, 0, NULL, NULL, &m);
    const int64_t conf[9] = {0}, sup[3] = {0};
    expect_counts(&m, conf, sup);
    const double nan3[] = {NAN, NAN, NAN};
    expect_per_class(&m, nan3, nan3, nan3, nan3);
    assert_true(isnan(m.accuracy));
    assert_true(isnan(m.balanced_accuracy));
    assert_true(isnan(m.auc));
    mk_cls_metrics_free(&m);
    mk_cls_metrics_free(&m); /* zeroed: a second free is fine */
    mk_cls_metrics_free(NULL);
}

static void test_absent_class(void **state)
{
    (void)state;
    /* 3 classes, truth 0 0 1 1 (class 2 absent); rows .7 .2 .1 | .2 .3 .5 | .1 .8 .1 | .3 .3 .4
     * -> predictions 0 2 1 2, confusion [[1,0,1],[0,1,1],[0,0,0]], support 2 2 0.
     * P = 1/1, 1/1, 0/2; R = 1/2, 1/2, NaN (no sample of class 2); F1 = 2/3, 2/3, NaN (R NaN);
     * accuracy 2/4; balanced = mean recall over classes 0, 1 = 1/2.
     * AUC class 0: {.7,.2} vs {.1,.3}: 1 + 1 + 1 + 0 = 3/4; class 1: {.8,.3} vs {.2,.3}:
     * 1 + 1 + 1 + 1/2 = 3.5/4; class 2 NaN; auc = (3/4 + 7/8) / 2 = 13/16. */
    const int32_t t[] = {0, 0, 1, 1};
    const float p[] = {0.7f, 0.2f, 0.1f, 0.2f, 0.3f, 0.5f, 0.1f, 0.8f, 0.1f, 0.3f, 0.3f, 0.4f};
    mk_cls_metrics m;
    compute_ok(3, 4, t, p, &m);
    const int64_t conf[] = {1, 0, 1, 0, 1, 1, 0, 0, 0}, sup[] = {2, 2, 0};
    expect_counts(&m, conf, sup);
    const double P[] = {1, 1, 0}, R[] = {0.5, 0.5, NAN}, F[] = {2.0 / 3, 2.0 / 3, NAN},
                 A[] = {0.75, 0.875, NAN};
    expect_per_class(&m, P, R, F, A);
    EQ(m.accuracy, 0.5, "accuracy");
    EQ(m.balanced_accuracy, 0.5, "balanced");
    EQ(m.auc, 13.0 / 16, "auc = mean of defined");
    mk_cls_metrics_free(&m);

    /* binary with one class only: no AUC at all; balanced accuracy = recall of class 1 (2/3) */
    const int32_t t1[] = {1, 1, 1};
    const float p1[] = {0.2f, 0.8f, 0.6f, 0.4f, 0.1f, 0.9f};
    compute_ok(2, 3, t1, p1, &m);
    assert_true(isnan(m.auc));
    assert_true(isnan(m.auc_class[0]) && isnan(m.auc_class[1]));
    EQ(m.balanced_accuracy, 2.0 / 3, "balanced, one class");
    EQ(m.recall[1], 2.0 / 3, "recall[1]");
    assert_true(isnan(m.recall[0]));
    EQ(m.precision[0], 0, "precision[0]: one prediction of 0, wrong");
    mk_cls_metrics_free(&m);
}

static void test_argmax_ties(void **state)
{
    (void)state;
    /* rows .4 .4 .2 -> 0; .1 .45 .45 -> 1; .3 .3 .3 -> 0; 0 0 1 -> 2; truth 2 everywhere ->
     * confusion row 2 = [2, 1, 1] */
    const int32_t t[] = {2, 2, 2, 2};
    const float p[] = {0.4f, 0.4f, 0.2f, 0.1f, 0.45f, 0.45f, 0.3f, 0.3f, 0.3f, 0, 0, 1};
    mk_cls_metrics m;
    compute_ok(3, 4, t, p, &m);
    const int64_t conf[] = {0, 0, 0, 0, 0, 0, 2, 1, 1}, sup[] = {0, 0, 4};
    expect_counts(&m, conf, sup);
    EQ(m.accuracy, 0.25, "accuracy");
    EQ(m.precision[0], 0, "precision[0]");
    EQ(m.precision[2], 1, "precision[2]");
    assert_true(isnan(m.recall[0]));
    mk_cls_metrics_free(&m);
}

static void expect_invalid(int nclass, int64_t n, const int32_t *t, const float *p,
                           const char *needle)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_cls_metrics m;
    memset(&m, 0x5a, sizeof m); /* overwritten, not freed */
    assert_int_equal(mk_cls_metrics_compute(&ctx, nclass, n, t, p, &m), MK_ERR_INVALID);
    if (!strstr(mk_ctx_errmsg(&ctx), needle))
        fail_msg("message '%s' does not name '%s'", mk_ctx_errmsg(&ctx), needle);
    assert_null(m.confusion); /* nothing allocated, the output zeroed */
    assert_null(m.auc_class);
    assert_int_equal(m.n, 0);
    mk_cls_metrics_free(&m);
}

static void test_invalid(void **state)
{
    (void)state;
    const int32_t t[] = {0, 1, 3}, tn[] = {0, -1, 1}, ok[] = {0, 1, 2};
    const float p[9] = {0.1f, 0.2f, 0.7f, 0.3f, 0.3f, 0.4f, 0.5f, 0.25f, 0.25f};
    const float pn[9] = {0.1f, 0.2f, 0.7f, 0.3f, 0.3f, 0.4f, 0.5f, NAN, 0.25f};
    expect_invalid(3, 3, t, p, "truth[2] = 3");
    expect_invalid(3, 3, tn, p, "truth[1] = -1");
    expect_invalid(1, 3, ok, p, "nclass = 1");
    expect_invalid(MK_CLS_MAX_CLASSES + 1, 3, ok, p, "nclass = 65");
    expect_invalid(3, -1, ok, p, "n = -1");
    expect_invalid(3, 3, NULL, p, "NULL");
    expect_invalid(3, 3, ok, pn, "prob[2][1]");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_cls_metrics_compute(&ctx, 3, 3, ok, p, NULL), MK_ERR_INVALID);
}

/* --------------------------------------------------------------- against numpy / scipy */

typedef struct ref_line {
    char key[32];
    int nv;
    double v[MK_CLS_MAX_CLASSES * MK_CLS_MAX_CLASSES];
} ref_line;

static uint64_t g_rng[4];

static double unit(void)
{
    return mk_u64_to_unit(mk_xoshiro256ss(g_rng));
}

/* n samples of nclass classes (truth drawn from 0..ntrue-1); each row: a noisy one-hot towards
 * the true class, normalised; quant > 0 rounds to multiples of 1/quant (ties in scores and in
 * the argmax). */
static void make_case(int nclass, int ntrue, int64_t n, int quant, int32_t *t, float *p)
{
    for (int64_t i = 0; i < n; i++) {
        t[i] = (int32_t)(unit() * ntrue);
        double row[MK_CLS_MAX_CLASSES], sum = 0;
        for (int c = 0; c < nclass; c++) {
            row[c] = unit() + (c == t[i] ? 0.6 * unit() : 0);
            sum += row[c];
        }
        for (int c = 0; c < nclass; c++) {
            double v = row[c] / sum;
            if (quant > 0)
                v = floor(v * quant + 0.5) / quant;
            p[i * nclass + c] = (float)v;
        }
    }
}

static int run_ref(const char *file, ref_line *lines, int maxl)
{
    const char *src = getenv("MK_SOURCE_DIR");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/classify_ref.py' '%s'", src ? src : ".",
             file);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    static char buf[1 << 16];
    int nl = 0;
    while (nl < maxl && fgets(buf, sizeof buf, f)) {
        char *s = buf, *end;
        int k = 0;
        while (*s && *s != ' ' && *s != '\n' && k < 31)
            lines[nl].key[k++] = *s++;
        lines[nl].key[k] = '\0';
        lines[nl].nv = 0;
        for (;;) {
            double v = strtod(s, &end);
            if (end == s)
                break;
            lines[nl].v[lines[nl].nv++] = v;
            s = end;
        }
        nl++;
    }
    int rc = pclose(f);
    assert_int_equal(rc, 0);
    return nl;
}

static const ref_line *find(const ref_line *l, int nl, const char *key, int nv)
{
    for (int i = 0; i < nl; i++)
        if (!strcmp(l[i].key, key)) {
            if (l[i].nv != nv)
                fail_msg("reference %s: %d values, expected %d", key, l[i].nv, nv);
            return &l[i];
        }
    fail_msg("reference output has no line '%s'", key);
    return NULL;
}

static void compare_case(const char *name, int nclass, int ntrue, int64_t n, int quant)
{
    int32_t *t = malloc((size_t)n * sizeof *t);
    float *p = malloc((size_t)n * nclass * sizeof *p);
    assert_true(t && p);
    make_case(nclass, ntrue, n, quant, t, p);
    char file[700];
    snprintf(file, sizeof file, "%s/%s.txt", g_tmp, name);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f, "%d %lld\n", nclass, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        fprintf(f, "%d", (int)t[i]);
        for (int c = 0; c < nclass; c++)
            fprintf(f, " %.17g", (double)p[i * nclass + c]); /* the float exactly */
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);

    static ref_line lines[16];
    int nl = run_ref(file, lines, 16);
    mk_cls_metrics m;
    compute_ok(nclass, n, t, p, &m);
    char w[96];
    const int C = nclass;
    assert_int_equal((int64_t)find(lines, nl, "n", 1)->v[0], n);
    const ref_line *conf = find(lines, nl, "confusion", C * C),
                   *sup = find(lines, nl, "support", C);
    for (int k = 0; k < C * C; k++)
        assert_int_equal(m.confusion[k], (int64_t)conf->v[k]);
    for (int c = 0; c < C; c++)
        assert_int_equal(m.support[c], (int64_t)sup->v[c]);
    snprintf(w, sizeof w, "%s accuracy", name);
    EQ(m.accuracy, find(lines, nl, "accuracy", 1)->v[0], w);
    snprintf(w, sizeof w, "%s balanced_accuracy", name);
    EQ(m.balanced_accuracy, find(lines, nl, "balanced_accuracy", 1)->v[0], w);
    const char *keys[] = {"precision", "recall", "f1", "auc_class_mwu", "auc_class_rank"};
    for (int k = 0; k < 5; k++) {
        const ref_line *r = find(lines, nl, keys[k], C);
        const double *mine = k == 0 ? m.precision : k == 1 ? m.recall : k == 2 ? m.f1 : m.auc_class;
        for (int c = 0; c < C; c++) {
            snprintf(w, sizeof w, "%s %s[%d]", name, keys[k], c);
            EQ(mine[c], r->v[c], w);
        }
    }
    snprintf(w, sizeof w, "%s auc (mannwhitneyu)", name);
    EQ(m.auc, find(lines, nl, "auc_mwu", 1)->v[0], w);
    snprintf(w, sizeof w, "%s auc (rankdata)", name);
    EQ(m.auc, find(lines, nl, "auc_rank", 1)->v[0], w);
    /* the two-class entry point agrees with class 1's figure */
    if (nclass == 2) {
        uint8_t *pos = malloc((size_t)n);
        float *s = malloc((size_t)n * sizeof *s);
        assert_true(pos && s);
        for (int64_t i = 0; i < n; i++) {
            pos[i] = t[i] == 1;
            s[i] = p[i * 2 + 1];
        }
        snprintf(w, sizeof w, "%s mk_cls_auc", name);
        EQ(mk_cls_auc(n, pos, s), m.auc, w);
        free(pos);
        free(s);
    }
    /* the data are informative but not separable: no trivial figure hides a mismatch */
    if (n >= 100)
        assert_true(m.auc > 0.5 && m.auc < 1);
    mk_cls_metrics_free(&m);
    free(t);
    free(p);
}

static void test_vs_scipy(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import numpy, scipy' > /dev/null 2>&1") != 0)
        fail_msg("python3 with numpy and scipy is missing (declared in scripts/deps.list; "
                 "'make deps' as root)");
    uint64_t seed = 20240611;
    for (int k = 0; k < 4; k++)
        g_rng[k] = mk_splitmix64(&seed);
    compare_case("binary_continuous", 2, 2, 1000, 0);
    compare_case("binary_tied", 2, 2, 600, 8);
    compare_case("four_continuous", 4, 4, 800, 0);
    compare_case("four_tied_absent", 4, 3, 500, 4); /* class 3 never true */
    compare_case("four_small", 4, 4, 9, 0);
}

static int setup(void **state)
{
    (void)state;
    return mk_test_tmp_make(g_tmp, sizeof g_tmp, "classify");
}

static int teardown(void **state)
{
    (void)state;
    mk_test_tmp_remove(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perfect),      cmocka_unit_test(test_all_wrong),
        cmocka_unit_test(test_tied_scores),  cmocka_unit_test(test_empty),
        cmocka_unit_test(test_absent_class), cmocka_unit_test(test_argmax_ties),
        cmocka_unit_test(test_invalid),      cmocka_unit_test(test_vs_scipy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
