/* Report statistics (report/stats.c) against hand-derived values: every expected number is worked
 * out in the comment next to it. The seeded comparison with numpy/scipy is tests/stats_ref.py. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "report/mk_stats.h"

static void near(double got, double want, double tol, const char *what)
{
    if (isnan(want) && isnan(got))
        return;
    if (isinf(want) && got == want)
        return;
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: got %.17g want %.17g\n", what, got, want);
        fail();
    }
}

#define EQ(got, want, what) near((got), (want), 1e-12, (what))

/* ------------------------------------------------------------------------------ quantiles */

static void test_quantile_type7(void **state)
{
    (void)state;
    const double s4[] = {1, 2, 3, 4};
    /* h = 3q: q=.25 -> h=.75 -> 1 + .75*1; q=.5 -> 2.5; q=.75 -> h=2.25 -> 3.25 */
    EQ(mk_stats_quantile_sorted(s4, 4, 0.0), 1.0, "q0");
    EQ(mk_stats_quantile_sorted(s4, 4, 0.25), 1.75, "q.25");
    EQ(mk_stats_quantile_sorted(s4, 4, 0.5), 2.5, "q.5");
    EQ(mk_stats_quantile_sorted(s4, 4, 0.75), 3.25, "q.75");
    EQ(mk_stats_quantile_sorted(s4, 4, 1.0), 4.0, "q1");
    const double s5[] = {1, 3, 7, 15, 31};
    /* h = 4q: q=.1 -> h=.4 -> 1 + .4*2 = 1.8; q=.9 -> h=3.6 -> 15 + .6*16 = 24.6; q=.5 -> 7 */
    EQ(mk_stats_quantile_sorted(s5, 5, 0.1), 1.8, "s5 q.1");
    EQ(mk_stats_quantile_sorted(s5, 5, 0.9), 24.6, "s5 q.9");
    EQ(mk_stats_quantile_sorted(s5, 5, 0.5), 7.0, "s5 median");
    const double one[] = {10};
    EQ(mk_stats_quantile_sorted(one, 1, 0.3), 10.0, "single");
    assert_true(isnan(mk_stats_quantile_sorted(one, 0, 0.5)));
    assert_true(isnan(mk_stats_quantile_sorted(s4, 4, NAN)));

    /* infinite ends: whole h gives the order statistic, else the infinite end */
    const double a[] = {1, 2, INFINITY};
    EQ(mk_stats_quantile_sorted(a, 3, 0.5), 2.0, "h=1 whole");
    EQ(mk_stats_quantile_sorted(a, 3, 0.75), INFINITY, "2..inf");
    const double b[] = {-INFINITY, 1};
    EQ(mk_stats_quantile_sorted(b, 2, 0.5), -INFINITY, "-inf..1");
    EQ(mk_stats_quantile_sorted(b, 2, 1.0), 1.0, "q1 of -inf,1");
    const double c[] = {-INFINITY, INFINITY};
    assert_true(isnan(mk_stats_quantile_sorted(c, 2, 0.5)));
    const double e[] = {INFINITY, INFINITY};
    EQ(mk_stats_quantile_sorted(e, 2, 0.3), INFINITY, "inf..inf");
}

/* ------------------------------------------------------------------------------- describe */

static void test_describe(void **state)
{
    (void)state;
    mk_stats_desc d;
    /* mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, sd = sqrt(32/7) */
    const double x[] = {2, 4, 4, 4, 5, 5, 7, 9};
    mk_stats_describe(x, 8, &d);
    assert_int_equal(d.n, 8);
    assert_int_equal(d.n_finite, 8);
    EQ(d.mean, 5.0, "mean");
    EQ(d.sd, sqrt(32.0 / 7.0), "sd");
    EQ(d.median, 4.5, "median"); /* h = 3.5 between 4 and 5 */
    EQ(d.q1, 4.0, "q1");         /* h = 1.75 between 4 and 4 */
    EQ(d.q3, 5.5, "q3");         /* h = 5.25: 5 + .25*2 */
    EQ(d.min, 2.0, "min");
    EQ(d.max, 9.0, "max");

    /* finite {1,3,2,6}: mean 3, deviations 4+0+1+9 = 14, sd = sqrt(14/3); non-NaN sorted
     * {-inf,1,2,3,6,inf}: median h=2.5 -> 2.5, q1 h=1.25 -> 1.25, q3 h=3.75 -> 3 + .75*3 = 5.25 */
    const double y[] = {1, NAN, 3, INFINITY, 2, -INFINITY, NAN, 6};
    mk_stats_describe(y, 8, &d);
    assert_int_equal(d.n, 8);
    assert_int_equal(d.n_nan, 2);
    assert_int_equal(d.n_inf, 2);
    assert_int_equal(d.n_finite, 4);
    EQ(d.mean, 3.0, "mean with nan/inf");
    EQ(d.sd, sqrt(14.0 / 3.0), "sd with nan/inf");
    EQ(d.median, 2.5, "median with nan/inf");
    EQ(d.q1, 1.25, "q1 with nan/inf");
    EQ(d.q3, 5.25, "q3 with nan/inf");
    EQ(d.min, -INFINITY, "min -inf");
    EQ(d.max, INFINITY, "max inf");

    const double one[] = {5};
    mk_stats_describe(one, 1, &d);
    EQ(d.sd, 0.0, "sd n=1");
    EQ(d.median, 5.0, "median n=1");

    mk_stats_describe(NULL, 0, &d);
    assert_int_equal(d.n, 0);
    assert_true(isnan(d.mean) && isnan(d.sd) && isnan(d.median) && isnan(d.min));

    const double nans[] = {NAN, NAN, NAN};
    mk_stats_describe(nans, 3, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.n_nan, 3);
    assert_true(isnan(d.mean) && isnan(d.sd) && isnan(d.median) && isnan(d.q1) && isnan(d.max));

    /* only infinities: no finite mean, but order statistics */
    const double infs[] = {INFINITY, -INFINITY, INFINITY};
    mk_stats_describe(infs, 3, &d);
    assert_int_equal(d.n_finite, 0);
    assert_true(isnan(d.mean) && isnan(d.sd));
    EQ(d.median, INFINITY, "median of -inf,inf,inf");
    EQ(d.min, -INFINITY, "min of infs");
}

/* ----------------------------------------------------------------------------------- Holm */

static void test_holm(void **state)
{
    (void)state;
    /* sorted 0.005*4 = .02, 0.01*3 = .03, 0.03*2 = .06, 0.04*1 = .04 -> running max .06 */
    const double p[] = {0.01, 0.04, 0.03, 0.005};
    double adj[4];
    mk_stats_holm(p, 4, adj);
    EQ(adj[0], 0.03, "holm 0.01");
    EQ(adj[1], 0.06, "holm 0.04 (running max)");
    EQ(adj[2], 0.06, "holm 0.03");
    EQ(adj[3], 0.02, "holm 0.005");

    /* NaN does not count: k = 3; .01*3 = .03, .02*2 = .04, .5*1 = .5 */
    double q[] = {0.02, NAN, 0.5, 0.01};
    mk_stats_holm(q, 4, q); /* in place */
    EQ(q[0], 0.04, "holm nan k");
    assert_true(isnan(q[1]));
    EQ(q[2], 0.5, "holm nan .5");
    EQ(q[3], 0.03, "holm nan .01");

    /* capped: .6*2 = 1.2 -> 1, .9 under the running max 1.2 -> 1 */
    const double r[] = {0.9, 0.6};
    double ra[2];
    mk_stats_holm(r, 2, ra);
    EQ(ra[0], 1.0, "holm cap");
    EQ(ra[1], 1.0, "holm cap");

    /* ties: .02*3 = .06, .02*2 = .04 -> running max .06 for both; .5 */
    const double t[] = {0.02, 0.5, 0.02};
    double ta[3];
    mk_stats_holm(t, 3, ta);
    EQ(ta[0], 0.06, "holm tie");
    EQ(ta[2], 0.06, "holm tie");
    EQ(ta[1], 0.5, "holm tie top");
}

/* --------------------------------------------------------------------------- Bland-Altman */

static void test_bland_altman(void **state)
{
    (void)state;
    /* differences {1,-1,2,3}: bias 1.25; deviations^2 .0625+5.0625+.5625+3.0625 = 8.75;
     * sd = sqrt(8.75/3); limits 1.25 -+ 1.96 sd. The NaN pair is left out. */
    const double a[] = {10, 12, 9, NAN, 15, 4};
    const double b[] = {9, 13, 7, 3, 12, INFINITY};
    mk_stats_agreement ba;
    mk_stats_bland_altman(a, b, 6, &ba);
    assert_int_equal(ba.n, 4);
    double sd = sqrt(8.75 / 3.0);
    EQ(ba.bias, 1.25, "bias");
    EQ(ba.sd, sd, "sd");
    EQ(ba.loa_lo, 1.25 - 1.96 * sd, "loa lo");
    EQ(ba.loa_hi, 1.25 + 1.96 * sd, "loa hi");

    mk_stats_bland_altman(a, b, 1, &ba);
    assert_int_equal(ba.n, 1);
    EQ(ba.bias, 1.0, "bias n=1");
    assert_true(isnan(ba.sd) && isnan(ba.loa_lo) && isnan(ba.loa_hi));
    mk_stats_bland_altman(a, b, 0, &ba);
    assert_int_equal(ba.n, 0);
    assert_true(isnan(ba.bias));
}

/* ------------------------------------------------------------------------------- Wilcoxon */

static mk_stats_wilcoxon wil(const double *d, int n)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_stats_wilcoxon w;
    assert_int_equal(mk_stats_wilcoxon_test(&ctx, d, n, &w), MK_OK);
    return w;
}

static void test_wilcoxon_exact_small(void **state)
{
    (void)state;
    /* all positive, n = 5: W+ = 15 is the one subset of 32 at the top: p = 2/32 */
    const double d5[] = {0.5, 1.5, 0.25, 3, 2};
    mk_stats_wilcoxon w = wil(d5, 5);
    assert_int_equal(w.exact, 1);
    assert_int_equal(w.n, 5);
    EQ(w.w_plus, 15.0, "w+");
    EQ(w.w_minus, 0.0, "w-");
    EQ(w.statistic, 0.0, "stat");
    EQ(w.p, 0.0625, "p n=5");
    assert_true(isnan(w.z));

    /* n = 3, subset sums of {1,2,3}: 0,1,2,3,3,4,5,6 -> counts [1,1,1,2,1,1,1] of 8.
     * p(W+) = min(1, 2 min(#<=W, #>=W)/8): 0:.25 1:.5 2:.75 3:1 (5 and 5) 4:.75 5:.5 6:.25 */
    const double p3[7] = {0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25};
    const double mag3[3] = {0.7, 0.2, 1.9}; /* ranks 2, 1, 3 */
    const int rank3[3] = {2, 1, 3};
    for (int mask = 0; mask < 8; mask++) {
        double d[3];
        int wp = 0;
        for (int i = 0; i < 3; i++) {
            d[i] = (mask >> i) & 1 ? mag3[i] : -mag3[i];
            wp += (mask >> i) & 1 ? rank3[i] : 0;
        }
        w = wil(d, 3);
        assert_int_equal(w.exact, 1);
        EQ(w.w_plus, wp, "n=3 w+");
        EQ(w.w_minus, 6 - wp, "n=3 w-");
        EQ(w.p, p3[wp], "n=3 p");
    }

    /* n = 4, counts per sum 0..10 of subsets of {1,2,3,4}: 1,1,1,2,2,2,2,2,1,1,1 (16);
     * #<=W: 1,2,3,5,7,9,11,13,14,15,16; p = min(1, 2 min(#<=W, #<=10-W)/16):
     * 0:2/16 1:4/16 2:6/16 3:10/16 4:14/16 5:1 (9 and 9) then symmetric */
    const double p4[11] = {0.125, 0.25, 0.375, 0.625, 0.875, 1.0, 0.875, 0.625, 0.375, 0.25, 0.125};
    const double mag4[4] = {2.2, 0.3, 9.0, 1.7}; /* ranks 3, 1, 4, 2 */
    const int rank4[4] = {3, 1, 4, 2};
    for (int mask = 0; mask < 16; mask++) {
        double d[4];
        int wp = 0;
        for (int i = 0; i < 4; i++) {
            d[i] = (mask >> i) & 1 ? mag4[i] : -mag4[i];
            wp += (mask >> i) & 1 ? rank4[i] : 0;
        }
        w = wil(d, 4);
        assert_int_equal(w.exact, 1);
        EQ(w.w_plus, wp, "n=4 w+");
        EQ(w.statistic, wp < 10 - wp ? wp : 10 - wp, "n=4 statistic");
        EQ(w.p, p4[wp], "n=4 p");
    }

    /* n = 1: W+ = 1 of {0, 1}: 2 min(1, 1/2) = 1 */
    const double d1[] = {-3};
    w = wil(d1, 1);
    EQ(w.p, 1.0, "n=1");

    /* 50 positive: exact, p = 2 / 2^50; 51: the approximation */
    double big[51];
    for (int i = 0; i < 51; i++)
        big[i] = i + 1.0;
    w = wil(big, 50);
    assert_int_equal(w.exact, 1);
    EQ(w.p / ldexp(1.0, -49), 1.0, "n=50 p / 2^-49");
    w = wil(big, 51);
    assert_int_equal(w.exact, 0);
    /* z = (0 - 51*52/4) / sqrt(51*52*103/24) */
    EQ(w.z, -663.0 / sqrt(51.0 * 52.0 * 103.0 / 24.0), "n=51 z");
}

static void test_wilcoxon_approx_ties_zeros(void **state)
{
    (void)state;
    /* |d| = 1,1,1,2 -> ranks 2,2,2,4; W+ = 2+2+4 = 8, W- = 2; mean 4*5/4 = 5;
     * var = (4*5*9 - (27 - 3)/2) / 24 = 168/24 = 7; z = (2 - 5)/sqrt 7; p = 2 Phi(-3/sqrt 7)
     * = erfc(3/sqrt 14) (scipy 1.10 wilcoxon(..., method="approx"): 0.25683925795785...) */
    const double d[] = {1, 1, -1, 2};
    mk_stats_wilcoxon w = wil(d, 4);
    assert_int_equal(w.exact, 0);
    assert_int_equal(w.ties, 1);
    EQ(w.w_plus, 8.0, "ties w+");
    EQ(w.w_minus, 2.0, "ties w-");
    EQ(w.statistic, 2.0, "ties stat");
    EQ(w.z, -3.0 / sqrt(7.0), "ties z");
    EQ(w.p, erfc(3.0 / sqrt(14.0)), "ties p");
    near(w.p, 0.25683925795785, 1e-13, "ties p (scipy)");

    /* zeros dropped before ranking: {1,2,3,-4} ranks 1..4, W+ = 6, W- = 4; zeros present, so the
     * approximation: z = (4 - 5)/sqrt(4*5*9/24) = -1/sqrt 7.5 */
    const double dz[] = {0, 1, 2, 3, -0.0, -4};
    w = wil(dz, 6);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.n_zero, 2);
    assert_int_equal(w.exact, 0);
    assert_int_equal(w.ties, 0);
    EQ(w.w_plus, 6.0, "zeros w+");
    EQ(w.w_minus, 4.0, "zeros w-");
    EQ(w.z, -1.0 / sqrt(7.5), "zeros z");
    EQ(w.p, erfc(1.0 / sqrt(15.0)), "zeros p");

    /* non-finite dropped and counted; {1, 2} exact: W+ = 3 of sums {0,1,2,3}: 2 min(4, 1)/4 */
    const double dn[] = {NAN, 1, INFINITY, 2, -INFINITY};
    w = wil(dn, 5);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.n_nonfinite, 3);
    assert_int_equal(w.exact, 1);
    EQ(w.p, 0.5, "nonfinite dropped p");

    /* nothing left */
    const double d0[] = {0, 0};
    w = wil(d0, 2);
    assert_int_equal(w.n, 0);
    assert_int_equal(w.n_zero, 2);
    assert_true(isnan(w.p) && isnan(w.statistic) && isnan(w.z));
    w = wil(NULL, 0);
    assert_true(isnan(w.p));

    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_stats_wilcoxon_test(&ctx, d, -1, &w), MK_ERR_INVALID);
    assert_true(strlen(mk_ctx_errmsg(&ctx)) > 0);
    assert_int_equal(mk_stats_wilcoxon_test(&ctx, NULL, 3, &w), MK_ERR_INVALID);
    assert_int_equal(mk_stats_wilcoxon_test(&ctx, d, 4, NULL), MK_ERR_INVALID);
}

/* ------------------------------------------------------------------------------ bootstrap */

static void fill(double *x, int n, uint32_t seed)
{
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = 0.6 + 0.3 * (double)(s >> 8) / 16777216.0;
    }
}

static void test_bootstrap(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    double x[100], a[2], b[2], c[2];
    fill(x, 100, 7);
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 100, 2000, 42, 0.95, a), MK_OK);
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 100, 2000, 42, 0.95, b), MK_OK);
    assert_true(a[0] == b[0] && a[1] == b[1]); /* same seed, same interval */
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 100, 2000, 43, 0.95, c), MK_OK);
    assert_true(a[0] != c[0] || a[1] != c[1]); /* another seed, other resamples */

    /* around the mean, about 1.96 s/sqrt(n) each side (s of uniform(.6,.9) ~ .0866, so the half
     * width is ~.017; loose: between .01 and .025) */
    mk_stats_desc d;
    mk_stats_describe(x, 100, &d);
    assert_true(a[0] < d.mean && d.mean < a[1]);
    double half = 1.96 * d.sd / 10.0;
    near(d.mean - a[0], half, 0.25 * half, "lower half width vs normal theory");
    near(a[1] - d.mean, half, 0.25 * half, "upper half width vs normal theory");
    /* a wider level gives a wider interval from the same resamples */
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 100, 2000, 42, 0.99, c), MK_OK);
    assert_true(c[0] <= a[0] && c[1] >= a[1]);

    /* non-finite values are left out before resampling: the same draws over the same values */
    double y[103];
    memcpy(y, x, 50 * sizeof *y);
    y[50] = NAN;
    y[51] = INFINITY;
    memcpy(y + 52, x + 50, 50 * sizeof *y);
    y[102] = -INFINITY;
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, y, 103, 2000, 42, 0.95, b), MK_OK);
    assert_true(a[0] == b[0] && a[1] == b[1]);

    /* a constant: every resample mean is the constant (0.8125 is dyadic, so exactly) */
    double k[37];
    for (int i = 0; i < 37; i++)
        k[i] = 0.8125;
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, k, 37, 500, 1, 0.9, b), MK_OK);
    assert_true(b[0] == 0.8125 && b[1] == 0.8125);
    for (int i = 0; i < 37; i++)
        k[i] = 0.1;
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, k, 37, 500, 1, 0.9, b), MK_OK);
    near(b[0], 0.1, 1e-15, "constant 0.1 lo");
    near(b[1], 0.1, 1e-15, "constant 0.1 hi");

    /* one value */
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 1, 10, 1, 0.95, b), MK_OK);
    assert_true(b[0] == x[0] && b[1] == x[0]);

    /* nothing finite: NaN, MK_OK */
    const double nn[] = {NAN, INFINITY};
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, nn, 2, 10, 1, 0.95, b), MK_OK);
    assert_true(isnan(b[0]) && isnan(b[1]));
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, NULL, 0, 10, 1, 0.95, b), MK_OK);
    assert_true(isnan(b[0]) && isnan(b[1]));
}

static void test_bootstrap_invalid(void **state)
{
    (void)state;
    mk_ctx ctx;
    double x[4] = {1, 2, 3, 4}, ci[2];
    const struct {
        int n, B;
        double level;
    } bad[] = {{-1, 100, 0.95}, {4, 0, 0.95},      {4, -5, 0.95}, {4, 100000001, 0.95},
               {4, 100, 0.0},   {4, 100, 1.0},     {4, 100, NAN}, {4, 100, -0.5},
               {4, 100, 1.5},   {4, 100, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mk_ctx_init(&ctx);
        ci[0] = ci[1] = 0.0;
        assert_int_equal(
            mk_stats_bootstrap_mean_ci(&ctx, x, bad[i].n, bad[i].B, 1, bad[i].level, ci),
            MK_ERR_INVALID);
        assert_true(strlen(mk_ctx_errmsg(&ctx)) > 0);
        assert_true(isnan(ci[0]) && isnan(ci[1]));
    }
    mk_ctx_init(&ctx);
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, NULL, 3, 100, 1, 0.95, ci), MK_ERR_INVALID);
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 4, 100, 1, 0.95, NULL), MK_ERR_INVALID);
    /* the limits themselves are accepted */
    assert_int_equal(mk_stats_bootstrap_mean_ci(&ctx, x, 4, 1, 1, 0.5, ci), MK_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantile_type7),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_holm),
        cmocka_unit_test(test_bland_altman),
        cmocka_unit_test(test_wilcoxon_exact_small),
        cmocka_unit_test(test_wilcoxon_approx_ties_zeros),
        cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_bootstrap_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
