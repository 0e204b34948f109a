/* medkd classification metrics: confusion matrix, accuracy, balanced accuracy, per-class
 * precision / recall / F1, ROC AUC (binary; multi-class: macro one-vs-rest).
 *
 * Conventions (scikit-learn's, stated so they can be checked): the prediction of a sample is the
 * argmax of its probabilities (ties: the lowest class index); confusion[t * nclass + p] counts
 * samples of true class t predicted p; precision of class c = TP / (TP + FP), recall = TP /
 * (TP + FN), F1 = 2PR / (P + R), each NaN when its denominator is 0 (so F1 is NaN when P or R is,
 * and when P = R = 0, where scikit-learn's 2TP / (2TP + FP + FN) gives 0); balanced accuracy = mean
 * recall over the classes present in the truth; AUC of class c = P(score of a sample of c >
 * score of a sample not of c) + 0.5 P(equal) (the Mann-Whitney U / (n1 n0)), score = prob[c];
 * NaN when c or its complement is absent. Binary (nclass 2): auc = auc_class[1]. Multi-class:
 * auc = mean of the defined auc_class. */
#ifndef MK_CLASSIFY_H
#define MK_CLASSIFY_H

#include <stdint.h>

#include "core/mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_CLS_MAX_CLASSES 64

typedef struct mk_cls_metrics {
    int nclass;
    int64_t n;
    int64_t *confusion; /* [nclass][nclass], owned */
    double accuracy, balanced_accuracy, auc;
    double *precision, *recall, *f1, *auc_class; /* [nclass] each, owned */
    int64_t *support;                            /* [nclass]: samples of each true class */
} mk_cls_metrics;

/* truth: n class indices in 0..nclass-1; prob: [n][nclass] (rows need not sum to 1: scores;
 * +-inf are ordinary scores, NaN is refused). n may be 0 (every metric NaN, counts 0; truth and
 * prob may then be NULL). Errors: MK_ERR_INVALID (nclass outside 2..MK_CLS_MAX_CLASSES, n < 0,
 * NULL arrays, a truth value out of range or a NaN probability: the message names its index),
 * MK_ERR_NOMEM; everything is checked before anything is allocated. out is overwritten (zeroed
 * on failure); free with mk_cls_metrics_free. */
mk_status mk_cls_metrics_compute(mk_ctx *ctx, int nclass, int64_t n, const int32_t *truth,
                                 const float *prob, mk_cls_metrics *out);
void mk_cls_metrics_free(mk_cls_metrics *m); /* zeroes; NULL ok */

/* AUC of scores with binary truth (positive[i] != 0): Mann-Whitney U / (n1 n0), ties counted
 * half, O(n log n); NaN when either class is absent, n <= 0, a score is NaN, or memory for the
 * sort (8 n bytes) is not available. */
double mk_cls_auc(int64_t n, const uint8_t *positive, const float *score);

#ifdef __cplusplus
}
#endif
#endif
