/* medkd report statistics (mk_stats.h): descriptive summaries, type-7 quantiles, the percentile
 * bootstrap of the mean, the Wilcoxon signed-rank test, Holm's adjustment and Bland-Altman
 * agreement. The conventions are stated once, in the header. */
#include "mk_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_rng.h"

#define MK_STATS_B_MAX 100000000
#define MK_STATS_EXACT_MAX 50

static int stats_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double mk_stats_quantile_sorted(const double *s, int n, double q)
{
    if (n <= 0 || !s || isnan(q))
        return NAN;
    if (q <= 0.0)
        return s[0];
    double h = (double)(n - 1) * q;
    double lo_f = floor(h);
    if (lo_f >= (double)(n - 1))
        return s[n - 1];
    int lo = (int)lo_f;
    double g = h - lo_f;
    double a = s[lo], b = s[lo + 1];
    if (g == 0.0 || a == b)
        return a;
    if (isinf(a) || isinf(b)) {
        if (isinf(a) && isinf(b))
            return NAN; /* -inf .. +inf: no value in between */
        return isinf(a) ? a : b;
    }
    /* numpy's _lerp: from the nearer end, so the result stays in [a, b] */
    double diff = b - a;
    return g < 0.5 ? a + diff * g : b - diff * (1.0 - g);
}

void mk_stats_describe(const double *x, int n, mk_stats_desc *d)
{
    if (!d)
        return;
    d->n = n > 0 ? n : 0;
    d->n_finite = d->n_inf = d->n_nan = 0;
    d->mean = d->sd = d->median = d->q1 = d->q3 = d->min = d->max = NAN;
    if (n <= 0 || !x)
        return;

    double sum = 0.0, mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        double v = x[i];
        if (isnan(v)) {
            d->n_nan++;
            continue;
        }
        if (v < mn)
            mn = v;
        if (v > mx)
            mx = v;
        if (isinf(v)) {
            d->n_inf++;
            continue;
        }
        d->n_finite++;
        sum += v;
    }
    int nv = n - d->n_nan; /* non-NaN values */
    if (nv > 0) {
        d->min = mn;
        d->max = mx;
    }
    if (d->n_finite > 0) {
        double mean = sum / d->n_finite;
        d->mean = mean;
        if (d->n_finite == 1) {
            d->sd = 0.0;
        } else {
            double ss = 0.0;
            for (int i = 0; i < n; i++)
                if (isfinite(x[i]))
                    ss += (x[i] - mean) * (x[i] - mean);
            d->sd = sqrt(ss / (d->n_finite - 1));
        }
    }
    if (nv == 0)
        return;
    double *s = malloc((size_t)nv * sizeof *s);
    if (!s)
        return; /* the order statistics stay NaN (see the header) */
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]))
            s[k++] = x[i];
    qsort(s, (size_t)nv, sizeof *s, stats_cmp_double);
    d->median = mk_stats_quantile_sorted(s, nv, 0.5);
    d->q1 = mk_stats_quantile_sorted(s, nv, 0.25);
    d->q3 = mk_stats_quantile_sorted(s, nv, 0.75);
    free(s);
}

/* ------------------------------------------------------------------------------ bootstrap */

/* An index uniform in [0, n), 0 < n < 2^31: Lemire's multiply-shift on the top 32 bits of a
 * xoshiro256** output, rejecting the low products below 2^32 mod n, so no index is favoured. */
static uint32_t stats_draw_index(uint64_t s[4], uint32_t n)
{
    uint64_t m = (mk_xoshiro256ss(s) >> 32) * (uint64_t)n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (low < t) {
            m = (mk_xoshiro256ss(s) >> 32) * (uint64_t)n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

mk_status mk_stats_bootstrap_mean_ci(mk_ctx *ctx, const double *x, int n, int B, uint64_t seed,
                                     double level, double ci[2])
{
    if (!ci)
        return mk_err(ctx, MK_ERR_INVALID, "bootstrap: no output array");
    ci[0] = ci[1] = NAN;
    if (n < 0)
        return mk_err(ctx, MK_ERR_INVALID, "bootstrap: negative sample size %d", n);
    if (n > 0 && !x)
        return mk_err(ctx, MK_ERR_INVALID, "bootstrap: no data for %d values", n);
    if (B <= 0 || B > MK_STATS_B_MAX)
        return mk_err(ctx, MK_ERR_INVALID, "bootstrap: %d resamples, expected 1 to %d", B,
                      MK_STATS_B_MAX);
    if (!(level > 0.0 && level < 1.0))
        return mk_err(ctx, MK_ERR_INVALID, "bootstrap: level %g, expected 0 < level < 1", level);

    int nf = 0;
    for (int i = 0; i < n; i++)
        nf += isfinite(x[i]) != 0;
    if (nf == 0)
        return MK_OK;

    double *v = malloc((size_t)nf * sizeof *v);
    double *means = malloc((size_t)B * sizeof *means);
    if (!v || !means) {
        free(v);
        free(means);
        return mk_err(ctx, MK_ERR_NOMEM, "bootstrap: %d resample means of %d values", B, nf);
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]))
            v[k++] = x[i];

    uint64_t sm = seed, s[4];
    for (int i = 0; i < 4; i++)
        s[i] = mk_splitmix64(&sm);
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        for (int i = 0; i < nf; i++)
            sum += v[stats_draw_index(s, (uint32_t)nf)];
        means[b] = sum / nf;
    }
    qsort(means, (size_t)B, sizeof *means, stats_cmp_double);
    ci[0] = mk_stats_quantile_sorted(means, B, (1.0 - level) / 2.0);
    ci[1] = mk_stats_quantile_sorted(means, B, (1.0 + level) / 2.0);
    free(v);
    free(means);
    return MK_OK;
}

/* ------------------------------------------------------------------------------- Wilcoxon */

typedef struct stats_signed {
    double a; /* |d| */
    int pos;  /* d > 0 */
} stats_signed;

static int stats_cmp_abs(const void *p, const void *q)
{
    double x = ((const stats_signed *)p)->a, y = ((const stats_signed *)q)->a;
    return (x > y) - (x < y);
}

/* Exact two-sided p of W+ = w among m untied ranks 1..m: counts of the subsets of {1..m} per
 * sum (at most 2^m <= 2^50, exact in uint64), p = min(1, 2 min(#{W <= w}, #{W >= w}) / 2^m). */
static double stats_wilcoxon_exact_p(int m, int w)
{
    uint64_t c[MK_STATS_EXACT_MAX * (MK_STATS_EXACT_MAX + 1) / 2 + 1];
    int top = m * (m + 1) / 2;
    memset(c, 0, sizeof c);
    c[0] = 1;
    for (int k = 1; k <= m; k++) {
        int hi = k * (k - 1) / 2; /* largest sum with ranks 1..k-1 */
        for (int s = hi; s >= 0; s--)
            c[s + k] += c[s];
    }
    uint64_t below = 0, above = 0;
    for (int s = 0; s <= top; s++) {
        if (s <= w)
            below += c[s];
        if (s >= w)
            above += c[s];
    }
    uint64_t tail = below < above ? below : above;
    double p = ldexp((double)(2 * tail), -m);
    return p < 1.0 ? p : 1.0;
}

mk_status mk_stats_wilcoxon_test(mk_ctx *ctx, const double *d, int n, mk_stats_wilcoxon *out)
{
    if (!out)
        return mk_err(ctx, MK_ERR_INVALID, "wilcoxon: no output");
    memset(out, 0, sizeof *out);
    out->statistic = out->z = out->p = NAN;
    if (n < 0)
        return mk_err(ctx, MK_ERR_INVALID, "wilcoxon: negative sample size %d", n);
    if (n > 0 && !d)
        return mk_err(ctx, MK_ERR_INVALID, "wilcoxon: no data for %d differences", n);

    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(d[i]))
            out->n_nonfinite++;
        else if (d[i] == 0.0)
            out->n_zero++;
        else
            m++;
    }
    out->n = m;
    if (m == 0)
        return MK_OK;

    stats_signed *v = malloc((size_t)m * sizeof *v);
    if (!v)
        return mk_err(ctx, MK_ERR_NOMEM, "wilcoxon: %d differences", m);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(d[i]) && d[i] != 0.0) {
            v[k].a = fabs(d[i]);
            v[k].pos = d[i] > 0.0;
            k++;
        }
    qsort(v, (size_t)m, sizeof *v, stats_cmp_abs);

    /* mean ranks of the tie groups; sum of t^3 - t over the groups for the variance */
    double wp = 0.0, wm = 0.0, tie_sum = 0.0;
    for (int i = 0; i < m;) {
        int j = i + 1;
        while (j < m && v[j].a == v[i].a)
            j++;
        double rank = 0.5 * ((double)(i + 1) + (double)j); /* mean of ranks i+1 .. j */
        for (int t = i; t < j; t++) {
            if (v[t].pos)
                wp += rank;
            else
                wm += rank;
        }
        double t = (double)(j - i);
        if (j - i > 1) {
            out->ties = 1;
            tie_sum += t * (t * t - 1.0);
        }
        i = j;
    }
    free(v);

    out->w_plus = wp;
    out->w_minus = wm;
    out->statistic = wp < wm ? wp : wm;
    if (m <= MK_STATS_EXACT_MAX && !out->ties && out->n_zero == 0) {
        out->exact = 1;
        out->p = stats_wilcoxon_exact_p(m, (int)wp);
        return MK_OK;
    }
    double dm = (double)m;
    double mean = dm * (dm + 1.0) * 0.25;
    double var = dm * (dm + 1.0) * (2.0 * dm + 1.0);
    var -= 0.5 * tie_sum;
    double sd = sqrt(var / 24.0);
    out->z = (out->statistic - mean) / sd;
    out->p = erfc(fabs(out->z) * 0.70710678118654752440);
    if (out->p > 1.0)
        out->p = 1.0;
    return MK_OK;
}

/* ----------------------------------------------------------------------------------- Holm */

typedef struct stats_pidx {
    double p;
    int i;
} stats_pidx;

static int stats_cmp_pidx(const void *a, const void *b)
{
    const stats_pidx *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

void mk_stats_holm(const double *p, int k, double *adj)
{
    if (k <= 0 || !p || !adj)
        return;
    int m = 0;
    for (int i = 0; i < k; i++)
        m += !isnan(p[i]);
    stats_pidx *w = malloc((size_t)(m > 0 ? m : 1) * sizeof *w);
    if (!w) {
        for (int i = 0; i < k; i++)
            adj[i] = NAN;
        return;
    }
    int j = 0;
    for (int i = 0; i < k; i++)
        if (!isnan(p[i])) {
            w[j].p = p[i];
            w[j].i = i;
            j++;
        }
    qsort(w, (size_t)m, sizeof *w, stats_cmp_pidx);
    /* p is read fully into w before adj (which may be p) is written */
    for (int i = 0; i < k; i++)
        if (isnan(p[i]))
            adj[i] = NAN;
    double run = -INFINITY;
    for (int r = 0; r < m; r++) {
        double a = w[r].p * (double)(m - r);
        if (a > run)
            run = a;
        adj[w[r].i] = run < 1.0 ? run : 1.0;
    }
    free(w);
}

/* ---------------------------------------------------------------------------- Bland-Altman */

void mk_stats_bland_altman(const double *a, const double *b, int n, mk_stats_agreement *out)
{
    if (!out)
        return;
    out->n = 0;
    out->bias = out->sd = out->loa_lo = out->loa_hi = NAN;
    if (n <= 0 || !a || !b)
        return;
    double sum = 0.0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(a[i]) && isfinite(b[i])) {
            sum += a[i] - b[i];
            m++;
        }
    out->n = m;
    if (m == 0)
        return;
    double bias = sum / m;
    out->bias = bias;
    if (m == 1)
        return;
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        if (isfinite(a[i]) && isfinite(b[i])) {
            double e = a[i] - b[i] - bias;
            ss += e * e;
        }
    out->sd = sqrt(ss / (m - 1));
    out->loa_lo = bias - 1.96 * out->sd;
    out->loa_hi = bias + 1.96 * out->sd;
}
