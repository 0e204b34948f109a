/* Exact Euclidean distance transform, separable (Felzenszwalb & Huttenlocher 2012), in double.
 *
 * Pass k replaces f along every line of axis k by min_j ((i-j)*s_k)^2 + f(j): the lower envelope
 * of parabolas. After the three passes f(x) = min over features of sum_k ((x_k-y_k)*s_k)^2, which
 * is exact because squared Euclidean distance is separable. Infinite samples (no feature on the
 * line yet) are left out of the envelope, so a line with no finite sample stays +inf. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mk_metrics.h"

/* 1D transform of n samples with stride `st` in f, spacing s. Scratch: v (n int64), z (n+1),
 * g (n). */
static void edt_line(double *f, int64_t n, int64_t st, double s, int64_t *v, double *z, double *g)
{
    const double w = s * s;
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        double fq = f[q * st];
        g[q] = fq;
        if (isinf(fq))
            continue;
        if (k < 0) {
            k = 0;
            v[0] = q;
            z[0] = -INFINITY;
            z[1] = INFINITY;
            continue;
        }
        double sx;
        for (;;) {
            int64_t p = v[k];
            /* abscissa where the parabolas rooted at p and q meet; z[0] = -inf stops the pops */
            sx = ((fq + w * (double)q * (double)q) - (g[p] + w * (double)p * (double)p)) /
                 (2.0 * w * (double)(q - p));
            if (sx > z[k])
                break;
            k--;
        }
        k++;
        v[k] = q;
        z[k] = sx;
        z[k + 1] = INFINITY;
    }
    if (k < 0)
        return; /* no finite sample: stays +inf */
    int64_t j = 0;
    for (int64_t q = 0; q < n; q++) {
        while (z[j + 1] < (double)q)
            j++;
        double d = (double)(q - v[j]) * s;
        f[q * st] = d * d + g[v[j]];
    }
}

mk_status mk_metric_edt_sq(mk_ctx *ctx, double *f, const int64_t dim[3], const double spacing[3])
{
    const int64_t n0 = dim[0], n1 = dim[1], n2 = dim[2];
    int64_t nmax = n0 > n1 ? n0 : n1;
    if (n2 > nmax)
        nmax = n2;
    int fail = 0;
    for (int ax = 0; ax < 3; ax++) {
        int64_t n = dim[ax];
        if (n <= 1)
            continue; /* a line of one sample is its own transform */
        int64_t st = ax == 0 ? 1 : ax == 1 ? n0 : n0 * n1;
        int64_t nlines = n0 * n1 * n2 / n;
#pragma omp parallel if (nlines * n > 32768) reduction(| : fail)
        {
            int64_t *v = malloc((size_t)nmax * sizeof *v);
            double *z = malloc((size_t)(nmax + 1) * sizeof *z);
            double *g = malloc((size_t)nmax * sizeof *g);
            if (!v || !z || !g) {
                fail = 1;
            } else {
#pragma omp for schedule(static)
                for (int64_t l = 0; l < nlines; l++) {
                    int64_t base;
                    if (ax == 0)
                        base = l * n0;
                    else if (ax == 1)
                        base = (l / n0) * n0 * n1 + (l % n0);
                    else
                        base = l;
                    edt_line(f + base, n, st, spacing[ax], v, z, g);
                }
            }
            free(v);
            free(z);
            free(g);
        }
        if (fail)
            return mk_err(ctx, MK_ERR_NOMEM,
                          "distance transform: out of memory (%lld samples per line)",
                          (long long)nmax);
    }
    return MK_OK;
}
