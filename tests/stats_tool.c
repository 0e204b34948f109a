/* stats-tool: a test-only front end of report/stats.c for tests/stats_ref.py. Reads numbers
 * (strtod syntax: nan, inf accepted) separated by white space from stdin and prints one JSON
 * line (NaN, Infinity, -Infinity as Python's json reads them).
 *
 *   stats-tool describe                 < values
 *   stats-tool quantile Q...            < values   (sorted here, NaN left out)
 *   stats-tool wilcoxon                 < differences
 *   stats-tool bootstrap B SEED LEVEL   < values
 *   stats-tool holm                     < p-values
 *   stats-tool bland-altman             < pairs "a b" (2n numbers)
 *
 * Exit 0 with the line; 1 when the library returns an error (the status and message on stderr);
 * 2 for a bad command line or input. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/mk_stats.h"

static void put_num(double v)
{
    if (isnan(v))
        fputs("NaN", stdout);
    else if (isinf(v))
        fputs(v > 0 ? "Infinity" : "-Infinity", stdout);
    else
        printf("%.17g", v);
}

static void put_field(const char *name, double v, int last)
{
    printf("\"%s\": ", name);
    put_num(v);
    fputs(last ? "}\n" : ", ", stdout);
}

static int read_all(double **out, int *n)
{
    size_t cap = 256, k = 0;
    double *v = malloc(cap * sizeof *v);
    char tok[128];
    if (!v)
        return -1;
    while (scanf("%127s", tok) == 1) {
        char *end;
        double x = strtod(tok, &end);
        if (end == tok || *end != '\0') {
            fprintf(stderr, "stats-tool: not a number: '%s'\n", tok);
            free(v);
            return -1;
        }
        if (k == 100000000) {
            fputs("stats-tool: more than 10^8 numbers\n", stderr);
            free(v);
            return -1;
        }
        if (k == cap) {
            double *w = realloc(v, 2 * cap * sizeof *v);
            if (!w) {
                free(v);
                return -1;
            }
            v = w;
            cap *= 2;
        }
        v[k++] = x;
    }
    *out = v;
    *n = (int)k;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int lib_error(mk_status s, const mk_ctx *ctx)
{
    fprintf(stderr, "stats-tool: %s: %s\n", mk_status_str(s), mk_ctx_errmsg(ctx));
    return 1;
}

static int usage(void)
{
    fputs("usage: stats-tool describe | quantile Q... | wilcoxon | bootstrap B SEED LEVEL | holm | "
          "bland-altman  < numbers\n",
          stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    double *x = NULL;
    int n = 0, rc = 0;
    if (read_all(&x, &n) != 0)
        return 2;
    mk_ctx ctx;
    mk_ctx_init(&ctx);

    if (!strcmp(cmd, "describe") && argc == 2) {
        mk_stats_desc d;
        mk_stats_describe(x, n, &d);
        printf("{\"n\": %d, \"n_finite\": %d, \"n_inf\": %d, \"n_nan\": %d, ", d.n, d.n_finite,
               d.n_inf, d.n_nan);
        put_field("mean", d.mean, 0);
        put_field("sd", d.sd, 0);
        put_field("median", d.median, 0);
        put_field("q1", d.q1, 0);
        put_field("q3", d.q3, 0);
        put_field("min", d.min, 0);
        put_field("max", d.max, 1);
    } else if (!strcmp(cmd, "quantile") && argc >= 3) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (!isnan(x[i]))
                x[k++] = x[i];
        qsort(x, (size_t)k, sizeof *x, cmp_double);
        fputs("{\"q\": [", stdout);
        for (int a = 2; a < argc; a++) {
            put_num(mk_stats_quantile_sorted(x, k, strtod(argv[a], NULL)));
            fputs(a + 1 < argc ? ", " : "]}\n", stdout);
        }
    } else if (!strcmp(cmd, "wilcoxon") && argc == 2) {
        mk_stats_wilcoxon w;
        mk_status s = mk_stats_wilcoxon_test(&ctx, x, n, &w);
        if (s != MK_OK) {
            rc = lib_error(s, &ctx);
        } else {
            printf("{\"n\": %d, \"n_zero\": %d, \"n_nonfinite\": %d, \"exact\": %d, "
                   "\"ties\": %d, ",
                   w.n, w.n_zero, w.n_nonfinite, w.exact, w.ties);
            put_field("w_plus", w.w_plus, 0);
            put_field("w_minus", w.w_minus, 0);
            put_field("statistic", w.statistic, 0);
            put_field("z", w.z, 0);
            put_field("p", w.p, 1);
        }
    } else if (!strcmp(cmd, "bootstrap") && argc == 5) {
        char *e1, *e2, *e3;
        long B = strtol(argv[2], &e1, 10);
        uint64_t seed = strtoull(argv[3], &e2, 10);
        double level = strtod(argv[4], &e3);
        if (*e1 || *e2 || *e3 || B < -2147483647L || B > 2147483647L) {
            free(x);
            return usage();
        }
        double ci[2];
        mk_status s = mk_stats_bootstrap_mean_ci(&ctx, x, n, (int)B, seed, level, ci);
        if (s != MK_OK) {
            rc = lib_error(s, &ctx);
        } else {
            fputs("{", stdout);
            put_field("lo", ci[0], 0);
            put_field("hi", ci[1], 1);
        }
    } else if (!strcmp(cmd, "holm") && argc == 2) {
        mk_stats_holm(x, n, x); /* in place: the aliasing the header allows */
        fputs("{\"adj\": [", stdout);
        for (int i = 0; i < n; i++) {
            put_num(x[i]);
            if (i + 1 < n)
                fputs(", ", stdout);
        }
        fputs("]}\n", stdout);
    } else if (!strcmp(cmd, "bland-altman") && argc == 2 && n % 2 == 0) {
        int m = n / 2;
        double *a = malloc((size_t)(m > 0 ? m : 1) * sizeof *a);
        double *b = malloc((size_t)(m > 0 ? m : 1) * sizeof *b);
        if (!a || !b) {
            free(a);
            free(b);
            free(x);
            return 2;
        }
        for (int i = 0; i < m; i++) {
            a[i] = x[2 * i];
            b[i] = x[2 * i + 1];
        }
        mk_stats_agreement ba;
        mk_stats_bland_altman(a, b, m, &ba);
        printf("{\"n\": %d, ", ba.n);
        put_field("bias", ba.bias, 0);
        put_field("sd", ba.sd, 0);
        put_field("loa_lo", ba.loa_lo, 0);
        put_field("loa_hi", ba.loa_hi, 1);
        free(a);
        free(b);
    } else {
        rc = usage();
    }
    free(x);
    return rc;
}
