/* numpy-compatible reductions (so hd95 / means agree with the Python libraries bit for bit where
 * it matters: a cumulative area fraction that lands exactly on 0.95), and summary statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mk_metrics.h"

/* numpy's pairwise_sum: blocks of 128 summed with 8 accumulators, larger ranges halved at a
 * multiple of 8. */
static double pairwise(const double *a, int64_t n)
{
    if (n < 8) {
        double r = 0.0;
        for (int64_t i = 0; i < n; i++)
            r += a[i];
        return r;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

double mk_metric_pairwise_sum(const double *x, int64_t n)
{
    /* add.reduce starts from the first element and sums the rest pairwise */
    if (n <= 0)
        return 0.0;
    return x[0] + pairwise(x + 1, n - 1);
}

double mk_metric_percentile_sorted(const double *x, int64_t n, double q)
{
    MK_ASSERT(n >= 1);
    double qq = q / 100.0;
    /* numpy's linear method: virtual index n*q + (alpha + q*(1-alpha-beta)) - 1, alpha=beta=1 */
    double vi = (double)n * qq + (1.0 + qq * (1.0 - 1.0 - 1.0)) - 1.0;
    double prev = floor(vi);
    double gamma = vi - prev;
    int64_t ip = (int64_t)prev, in = ip + 1;
    if (ip < 0)
        ip = 0;
    if (ip > n - 1)
        ip = n - 1;
    if (in < 0)
        in = 0;
    if (in > n - 1)
        in = n - 1;
    double a = x[ip], b = x[in];
    if (a == b)
        return a; /* also inf == inf, where numpy's lerp would give NaN */
    if (isinf(b))
        return gamma > 0.0 ? b : a;
    double d = b - a;
    return gamma >= 0.5 ? b - d * (1.0 - gamma) : a + d * gamma;
}

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

void mk_metric_stats_compute(const double *values, int64_t n, mk_metric_stats *o)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    double nan = NAN;
    o->mean = o->std = o->median = o->q1 = o->q3 = o->min = o->max = nan;
    o->mean_finite = o->std_finite = nan;
    if (n <= 0)
        return;
    double *s = malloc((size_t)n * sizeof *s);
    double *fin = malloc((size_t)n * sizeof *fin);
    if (!s || !fin) {
        free(s);
        free(fin);
        return; /* left NaN: summary of a huge run without memory is not worth an error path */
    }
    int64_t ns = 0, nf = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = values[i];
        if (isnan(v)) {
            o->n_nan++;
            continue;
        }
        s[ns++] = v;
        if (isinf(v))
            o->n_inf++;
        else
            fin[nf++] = v;
    }
    o->n_finite = nf;
    if (ns > 0) {
        /* numpy.nanmean / numpy.nanstd (ddof 0): NaN marks an undefined value (a both-empty
         * pair under the nan policy), left out */
        double sum = mk_metric_pairwise_sum(s, ns);
        o->mean = sum / (double)ns;
        if (isinf(o->mean)) {
            o->std = NAN;
        } else {
            double *dev = malloc((size_t)ns * sizeof *dev);
            if (dev) {
                for (int64_t i = 0; i < ns; i++)
                    dev[i] = (s[i] - o->mean) * (s[i] - o->mean);
                o->std = sqrt(mk_metric_pairwise_sum(dev, ns) / (double)ns);
                free(dev);
            }
        }
    }
    if (ns > 0) {
        qsort(s, (size_t)ns, sizeof *s, cmp_double);
        o->min = s[0];
        o->max = s[ns - 1];
        o->median = mk_metric_percentile_sorted(s, ns, 50.0);
        o->q1 = mk_metric_percentile_sorted(s, ns, 25.0);
        o->q3 = mk_metric_percentile_sorted(s, ns, 75.0);
    }
    if (nf > 0) {
        double sum = mk_metric_pairwise_sum(fin, nf);
        o->mean_finite = sum / (double)nf;
        for (int64_t i = 0; i < nf; i++)
            fin[i] = (fin[i] - o->mean_finite) * (fin[i] - o->mean_finite);
        o->std_finite = sqrt(mk_metric_pairwise_sum(fin, nf) / (double)nf);
    }
    free(s);
    free(fin);
}
