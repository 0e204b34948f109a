/* medkd report statistics: the descriptive and paired statistics of the evaluation report
 * (report/stats.c). Plain functions over double arrays; nothing here allocates on behalf of the
 * caller except where stated.
 *
 *     mk_stats_desc d;  mk_stats_describe(dice, n, &d);          // n, mean, sd, median, IQR, ...
 *     double ci[2];     mk_stats_bootstrap_mean_ci(ctx, x, n, 2000, 42, 0.95, ci);
 *     mk_stats_wilcoxon w; mk_stats_wilcoxon_test(ctx, diff, n, &w);  // two-sided
 *     mk_stats_holm(p, k, p_adj);
 *     mk_stats_agreement ba; mk_stats_bland_altman(pred_ml, ref_ml, n, &ba);
 *
 * Conventions (docs/report.md states them to the reader):
 *   quantiles   numpy's default (linear interpolation between order statistics, "type 7"):
 *               h = (n - 1) q, s[floor h] + (h - floor h)(s[floor h + 1] - s[floor h]); finite
 *               values give numpy.percentile's number. Where an end of the interpolation is
 *               infinite numpy gives NaN; here the order statistic itself when h is whole or
 *               both ends are equal, else the infinite end (NaN only between -inf and +inf)
 *   sd          sample standard deviation (n - 1); 0 for n = 1, NaN for n = 0
 *   bootstrap   percentile interval of the mean: B resamples of size n drawn with replacement
 *               by core's xoshiro256** seeded through splitmix64 from `seed` (the 4 state words
 *               are the first 4 splitmix64 outputs of the state `seed`); each index is Lemire's
 *               multiply-shift of the top 32 bits of one xoshiro256** output by n, with
 *               rejection of the low products below 2^32 mod n (unbiased); a resample's mean is
 *               its sum in draw order over n. The interval is the (1 - level)/2 and
 *               (1 + level)/2 quantiles (type 7) of the B resampled means, as
 *               scipy.stats.bootstrap(method="percentile") takes them
 *   Wilcoxon    signed-rank test of the paired differences d, two-sided, as scipy 1.10's
 *               wilcoxon(d, zero_method="wilcox", correction=False). Zeros are dropped before
 *               ranking (Wilcoxon's method); ranks of |d| with ties (exact equality) given their
 *               mean rank. Exact null distribution of W+ when n <= 50 and there are no zero and
 *               no tied differences: p = min(1, 2 min(P(W+ <= w), P(W+ >= w))), equal to scipy's
 *               method="exact". Otherwise (n > 50, or any zero, as scipy switches to the
 *               approximation when zeros are present, or ties) the normal approximation
 *               z = (min(W+, W-) - n(n+1)/4) / sqrt((n(n+1)(2n+1) - sum(t^3 - t)/2) / 24), t the
 *               sizes of the tie groups, no continuity correction, p = 2 Phi(-|z|) (scipy
 *               method="approx"). Where scipy 1.10 differs: its method="auto" keeps the exact
 *               branch for tied data (truncating W+ to an integer); here ties always go to the
 *               approximation
 *   Holm        step-down adjustment: sorted p ascending, p_(i) * (k - i) (0-based i), running
 *               maximum, capped at 1, returned in the input order. NaN entries stay NaN and do
 *               not count in k.
 */
#ifndef MK_STATS_H
#define MK_STATS_H

#include <stdint.h>

#include "../core/mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Summary of n values. NaN values are skipped everywhere (counted in n_nan). mean, sd over the
 * finite values (n_finite of them); median, q1, q3, min, max over the non-NaN values (so they
 * may be +-inf). n = total count given. Empty sets give NaN. The quartiles need a sorted copy
 * (n doubles, freed before returning); should it not be allocated, median, q1 and q3 are NaN. */
typedef struct mk_stats_desc {
    int n, n_finite, n_inf, n_nan;
    double mean, sd;
    double median, q1, q3, min, max;
} mk_stats_desc;

void mk_stats_describe(const double *x, int n, mk_stats_desc *d);

/* The q-quantile (0 <= q <= 1) of the n sorted non-NaN values s (numpy linear; infinities as
 * the conventions say). q below 0 gives s[0], above 1 s[n-1]. NaN when n == 0 or q is NaN. */
double mk_stats_quantile_sorted(const double *s, int n, double q);

/* Percentile bootstrap interval of the mean of the finite values of x (non-finite values are
 * left out; the resamples are of the finite count). 1 <= B <= 100000000, 0 < level < 1. No
 * finite value: ci = {NaN, NaN}, MK_OK. MK_ERR_INVALID for n < 0, a bad B or level, NULL x with
 * n > 0 or NULL ci (ci is {NaN, NaN} after any error); MK_ERR_NOMEM. Deterministic for a given
 * seed. Holds B + n doubles while it runs. */
mk_status mk_stats_bootstrap_mean_ci(mk_ctx *ctx, const double *x, int n, int B, uint64_t seed,
                                     double level, double ci[2]);

typedef struct mk_stats_wilcoxon {
    int n;            /* differences used (non-zero, finite) */
    int n_zero;       /* zero differences dropped */
    int n_nonfinite;  /* NaN / inf differences dropped (the caller should report them) */
    int exact;        /* 1: exact null distribution; 0: normal approximation */
    int ties;         /* 1: some |d| tied (mean ranks) */
    double w_plus;    /* sum of the ranks of the positive differences */
    double w_minus;   /* sum of the ranks of the negative differences */
    double statistic; /* min(w_plus, w_minus), scipy's two-sided statistic; NaN when n == 0 */
    double z; /* approximation: (statistic - n(n+1)/4) / sd, so <= 0, as scipy's zstatistic (the
               * direction is w_plus against w_minus); NaN when exact or n == 0 */
    double p; /* two-sided p-value; NaN when n == 0 */
} mk_stats_wilcoxon;

/* Two-sided Wilcoxon signed-rank test of d[0..n-1] (see the conventions above). MK_ERR_INVALID
 * for n < 0, NULL d with n > 0 or NULL out; MK_ERR_NOMEM (n pairs are sorted). */
mk_status mk_stats_wilcoxon_test(mk_ctx *ctx, const double *d, int n, mk_stats_wilcoxon *out);

/* Holm-adjusted p-values of p[0..k-1] into adj[0..k-1] (may alias p). Sorts a copy (k pairs,
 * freed before returning); should it not be allocated, adj is all NaN. */
void mk_stats_holm(const double *p, int k, double *adj);

/* Bland-Altman agreement of a against b (e.g. predicted against reference volume), over the
 * pairs where both are finite: bias = mean(a - b), sd = sample sd of a - b, limits of agreement
 * bias -+ 1.96 sd. n = pairs used. NaN figures when n == 0 (sd, limits NaN when n == 1). */
typedef struct mk_stats_agreement {
    int n;
    double bias, sd, loa_lo, loa_hi;
} mk_stats_agreement;

void mk_stats_bland_altman(const double *a, const double *b, int n, mk_stats_agreement *out);

#ifdef __cplusplus
}
#endif
#endif
