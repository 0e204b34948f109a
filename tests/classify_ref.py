#!/usr/bin/python3
"""Independent reference of metrics/classify.c (mk_classify.h) for tests/test_classify.c.

Reads a case file written by the test:
    nclass n
    truth p_0 p_1 ... p_{nclass-1}        (n lines; the probabilities are float32 values printed
                                            exactly, so float64 here holds the same numbers)
and prints one line per figure, "key v_0 v_1 ..." with repr() of each value ("nan" when
undefined):
    n, support, confusion (row-major, [true][predicted]), accuracy, balanced_accuracy,
    precision, recall, f1, auc_class_mwu, auc_class_rank, auc_mwu, auc_rank
computed with numpy from the definitions in the header (prediction = np.argmax, the first maximum;
precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2PR/(P+R), each NaN when its denominator is 0;
balanced accuracy = mean recall over the classes present in the truth) and the AUC of each class
twice: scipy.stats.mannwhitneyu's U of the positives divided by n1 n0, and from
scipy.stats.rankdata's average ranks, (R1 - n1 (n1 + 1) / 2) / (n1 n0). Binary: auc = auc_class[1];
more classes: the mean of the defined auc_class.

usage: classify_ref.py CASE_FILE      exit 0 (results on stdout), 2 on usage or a bad file
"""
import sys
import warnings

import numpy as np
from scipy import stats

warnings.simplefilter("ignore")


def read_case(path):
    with open(path, encoding="ascii") as f:
        head = f.readline().split()
        nclass, n = int(head[0]), int(head[1])
        truth = np.zeros(n, dtype=np.int64)
        prob = np.zeros((n, nclass), dtype=np.float64)
        for i in range(n):
            row = f.readline().split()
            if len(row) != nclass + 1:
                raise ValueError("%s: line %d: expected %d fields" % (path, i + 2, nclass + 1))
            truth[i] = int(row[0])
            prob[i] = [float(v) for v in row[1:]]
    return nclass, truth, prob


def div(num, den):
    return num / den if den != 0 else float("nan")


def metrics(nclass, truth, prob):
    n = len(truth)
    pred = np.argmax(prob, axis=1) if n else np.zeros(0, dtype=np.int64)
    conf = np.zeros((nclass, nclass), dtype=np.int64)
    np.add.at(conf, (truth, pred), 1)
    support = conf.sum(axis=1)
    predicted = conf.sum(axis=0)
    tp = np.diag(conf)
    precision = [div(float(tp[c]), float(predicted[c])) for c in range(nclass)]
    recall = [div(float(tp[c]), float(support[c])) for c in range(nclass)]
    f1 = []
    for p, r in zip(precision, recall):
        f1.append(float("nan") if np.isnan(p) or np.isnan(r) or p + r == 0 else 2 * p * r / (p + r))
    present = [recall[c] for c in range(nclass) if support[c] > 0]
    out = {
        "n": [n],
        "support": support.tolist(),
        "confusion": conf.ravel().tolist(),
        "accuracy": [div(float(np.trace(conf)), float(n))],
        "balanced_accuracy": [float(np.mean(present)) if present else float("nan")],
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
    mwu, rank = [], []
    for c in range(nclass):
        pos = truth == c
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if n1 == 0 or n0 == 0:
            mwu.append(float("nan"))
            rank.append(float("nan"))
            continue
        s = prob[:, c]
        u = stats.mannwhitneyu(s[pos], s[~pos], alternative="two-sided",
                               method="asymptotic").statistic
        mwu.append(float(u) / (n1 * n0))
        r1 = float(stats.rankdata(s)[pos].sum())
        rank.append((r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0))
    out["auc_class_mwu"] = mwu
    out["auc_class_rank"] = rank
    for key, vals in (("auc_mwu", mwu), ("auc_rank", rank)):
        if nclass == 2:
            out[key] = [vals[1]]
        else:
            d = [v for v in vals if not np.isnan(v)]
            out[key] = [float(np.mean(d)) if d else float("nan")]
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        nclass, truth, prob = read_case(argv[1])
    except (OSError, ValueError, IndexError) as e:
        print("classify_ref: %s" % e, file=sys.stderr)
        return 2
    for key, vals in metrics(nclass, truth, prob).items():
        print(key, " ".join(repr(v) if isinstance(v, float) else str(int(v)) for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
