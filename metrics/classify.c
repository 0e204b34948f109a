/* Classification metrics: see mk_classify.h.
 *
 * AUC by sorting: the (score, is-positive) pairs are sorted by score (qsort, O(n log n)); each run
 * of equal scores holding p positives and q negatives, with b negatives scored below it, adds
 * p b + p q / 2 to the Mann-Whitney U (the average-rank rule: a tie counts half). 2U is summed as
 * integer-valued doubles, exact while 2 n1 n0 < 2^53 (up to about 10^8 samples), so the result is
 * U / (n1 n0) rounded once. Every input is validated before anything is allocated. */
#include "mk_classify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct mk_cls_scored {
    float s;
    uint8_t pos;
} mk_cls_scored;

static int mk_cls_cmp(const void *a, const void *b)
{
    const float x = ((const mk_cls_scored *)a)->s, y = ((const mk_cls_scored *)b)->s;
    return (x > y) - (x < y);
}

/* AUC of v[0..n-1] holding n1 positives, 0 < n1 < n, no NaN score; sorts v. */
static double mk_cls_auc_pairs(mk_cls_scored *v, int64_t n, int64_t n1)
{
    qsort(v, (size_t)n, sizeof *v, mk_cls_cmp);
    double u2 = 0; /* 2 U: each term an exact integer product */
    int64_t below = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i, p = 0;
        while (j < n && v[j].s == v[i].s)
            p += v[j++].pos != 0;
        const int64_t q = (j - i) - p;
        u2 += (double)p * (double)(2 * below + q);
        below += q;
        i = j;
    }
    return u2 / (2.0 * (double)n1 * (double)(n - n1));
}

double mk_cls_auc(int64_t n, const uint8_t *positive, const float *score)
{
    if (n <= 0 || !positive || !score)
        return NAN;
    int64_t n1 = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(score[i]))
            return NAN;
        n1 += positive[i] != 0;
    }
    if (n1 == 0 || n1 == n || (uint64_t)n > SIZE_MAX / sizeof(mk_cls_scored))
        return NAN;
    mk_cls_scored *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return NAN;
    for (int64_t i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].pos = positive[i] != 0;
    }
    const double a = mk_cls_auc_pairs(v, n, n1);
    free(v);
    return a;
}

void mk_cls_metrics_free(mk_cls_metrics *m)
{
    if (!m)
        return;
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->auc_class);
    free(m->support);
    memset(m, 0, sizeof *m);
}

static double mk_cls_ratio(int64_t num, int64_t den)
{
    return den ? (double)num / (double)den : NAN;
}

mk_status mk_cls_metrics_compute(mk_ctx *ctx, int nclass, int64_t n, const int32_t *truth,
                                 const float *prob, mk_cls_metrics *out)
{
    if (!out)
        return mk_err(ctx, MK_ERR_INVALID, "classification metrics: NULL output");
    memset(out, 0, sizeof *out);
    if (nclass < 2 || nclass > MK_CLS_MAX_CLASSES)
        return mk_err(ctx, MK_ERR_INVALID, "classification metrics: nclass = %d is outside 2..%d",
                      nclass, MK_CLS_MAX_CLASSES);
    if (n < 0)
        return mk_err(ctx, MK_ERR_INVALID, "classification metrics: n = %lld is negative",
                      (long long)n);
    if (n > 0 && (!truth || !prob))
        return mk_err(ctx, MK_ERR_INVALID,
                      "classification metrics: NULL truth or prob for %lld samples", (long long)n);
    if ((uint64_t)n > SIZE_MAX / ((size_t)nclass * sizeof(float) + sizeof(mk_cls_scored)))
        return mk_err(ctx, MK_ERR_NOMEM,
                      "classification metrics: %lld samples of %d classes is over the size limit",
                      (long long)n, nclass);
    for (int64_t i = 0; i < n; i++)
        if (truth[i] < 0 || truth[i] >= nclass)
            return mk_err(ctx, MK_ERR_INVALID,
                          "classification metrics: truth[%lld] = %d is outside 0..%d", (long long)i,
                          (int)truth[i], nclass - 1);
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < nclass; c++)
            if (isnan(prob[i * nclass + c]))
                return mk_err(ctx, MK_ERR_INVALID, "classification metrics: prob[%lld][%d] is NaN",
                              (long long)i, c);

    const size_t C = (size_t)nclass;
    out->nclass = nclass;
    out->n = n;
    out->confusion = calloc(C * C, sizeof *out->confusion);
    out->support = calloc(C, sizeof *out->support);
    out->precision = malloc(C * sizeof(double));
    out->recall = malloc(C * sizeof(double));
    out->f1 = malloc(C * sizeof(double));
    out->auc_class = malloc(C * sizeof(double));
    mk_cls_scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!out->confusion || !out->support || !out->precision || !out->recall || !out->f1 ||
        !out->auc_class || !v) {
        free(v);
        mk_cls_metrics_free(out);
        return mk_err(ctx, MK_ERR_NOMEM,
                      "classification metrics: out of memory (%lld samples, %d classes)",
                      (long long)n, nclass);
    }

    /* predictions: argmax, the lowest index among equal maxima */
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *p = prob + i * nclass;
        int best = 0;
        for (int c = 1; c < nclass; c++)
            if (p[c] > p[best])
                best = c;
        out->confusion[(size_t)truth[i] * C + (size_t)best]++;
        out->support[truth[i]]++;
        correct += truth[i] == best;
    }
    out->accuracy = mk_cls_ratio(correct, n);

    double recall_sum = 0;
    int present = 0;
    for (int c = 0; c < nclass; c++) {
        int64_t predicted = 0;
        for (int t = 0; t < nclass; t++)
            predicted += out->confusion[(size_t)t * C + (size_t)c];
        const int64_t tp = out->confusion[(size_t)c * C + (size_t)c];
        const double P = mk_cls_ratio(tp, predicted), R = mk_cls_ratio(tp, out->support[c]);
        out->precision[c] = P;
        out->recall[c] = R;
        out->f1[c] = isnan(P) || isnan(R) || P + R == 0 ? NAN : 2 * P * R / (P + R);
        if (out->support[c] > 0) {
            recall_sum += R;
            present++;
        }
    }
    out->balanced_accuracy = present ? recall_sum / present : NAN;

    double auc_sum = 0;
    int defined = 0;
    for (int c = 0; c < nclass; c++) {
        const int64_t n1 = out->support[c];
        if (n1 == 0 || n1 == n) {
            out->auc_class[c] = NAN;
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            v[i].s = prob[i * nclass + c];
            v[i].pos = truth[i] == c;
        }
        out->auc_class[c] = mk_cls_auc_pairs(v, n, n1);
        auc_sum += out->auc_class[c];
        defined++;
    }
    if (nclass == 2)
        out->auc = out->auc_class[1];
    else
        out->auc = defined ? auc_sum / defined : NAN;
    free(v);
    return MK_OK;
}
