#!/usr/bin/python3
"""report/stats.c (through the test-only stats-tool) against independent references on seeded
datasets: scipy 1.10's wilcoxon (method="exact" and "approx", zero_method="wilcox",
correction=False) and a brute-force enumeration of the signed-rank null distribution; numpy's
mean/std(ddof=1)/quantile (linear); Holm's step-down written here from its definition; the
percentile bootstrap against a Python replica of the tool's generator (same numbers), against
scipy.stats.bootstrap(method="percentile") within the Monte-Carlo error, and against the normal
theory interval.

usage: stats_ref.py STATS_TOOL      exit 0 when every check passes, 1 otherwise, 2 on usage
"""
import itertools
import json
import math
import subprocess
import sys
import warnings

import numpy as np
from scipy import stats

warnings.simplefilter("ignore")  # scipy's small-sample and zero-switch warnings

TOOL = None
N_OK = 0
FAILS = []


def tool(args, numbers):
    text = "\n".join(repr(float(v)) for v in numbers) + "\n"
    r = subprocess.run([TOOL] + [str(a) for a in args], input=text, capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("stats-tool %s: exit %d: %s" % (" ".join(map(str, args)),
                                                           r.returncode, r.stderr.strip()))
    return json.loads(r.stdout)


def check(ok, what):
    global N_OK
    if ok:
        N_OK += 1
    else:
        FAILS.append(what)
        print("FAIL:", what)


def close(got, want, rtol, atol, what):
    if isinstance(want, float) and math.isnan(want):
        check(isinstance(got, float) and math.isnan(got), "%s: got %r want NaN" % (what, got))
        return
    if isinstance(want, float) and math.isinf(want):
        check(got == want, "%s: got %r want %r" % (what, got, want))
        return
    check(abs(got - want) <= atol + rtol * abs(want),
          "%s: got %.17g want %.17g (diff %.3g)" % (what, got, want, abs(got - want)))


# ------------------------------------------------------------------------------------ Wilcoxon


def brute_exact_p(d):
    """Two-sided exact p of W+ by enumerating all 2^n sign vectors of the ranks 1..n."""
    n = len(d)
    ranks = stats.rankdata(np.abs(d))
    w = float(np.sum(ranks[d > 0]))
    le = ge = 0
    for signs in itertools.product((0, 1), repeat=n):
        s = sum(r for r, b in zip(range(1, n + 1), signs) if b)
        le += s <= w
        ge += s >= w
    return min(1.0, 2.0 * min(le, ge) / 2.0 ** n)


def wilcoxon_case(d, label):
    d = np.asarray(d, dtype=float)
    nz = d[d != 0]
    m = len(nz)
    tied = len(np.unique(np.abs(nz))) < m
    zeros = int(np.sum(d == 0))
    ours = tool(["wilcoxon"], d)
    check(ours["n"] == m and ours["n_zero"] == zeros and ours["ties"] == int(tied),
          "%s: counts n=%d n_zero=%d ties=%d, want %d %d %d"
          % (label, ours["n"], ours["n_zero"], ours["ties"], m, zeros, int(tied)))
    want_exact = m <= 50 and not tied and zeros == 0
    check(ours["exact"] == int(want_exact), "%s: exact=%d want %d" % (label, ours["exact"],
                                                                      int(want_exact)))
    if m == 0:
        check(math.isnan(ours["p"]), "%s: p of nothing is NaN" % label)
        return
    r = stats.rankdata(np.abs(nz))
    check(ours["w_plus"] == float(np.sum(r[nz > 0])) and ours["w_minus"] == float(np.sum(r[nz < 0])),
          "%s: W+ %r W- %r" % (label, ours["w_plus"], ours["w_minus"]))
    if want_exact:
        ref = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="exact")
        check(ours["statistic"] == float(ref.statistic),
              "%s: statistic %r scipy %r" % (label, ours["statistic"], ref.statistic))
        close(ours["p"], float(ref.pvalue), 1e-12, 0.0, label + ": exact p vs scipy")
        check(math.isnan(ours["z"]), label + ": z NaN when exact")
        if m <= 12:
            close(ours["p"], brute_exact_p(d), 1e-14, 0.0, label + ": exact p vs enumeration")
    else:
        ref = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx")
        check(ours["statistic"] == float(ref.statistic),
              "%s: statistic %r scipy %r" % (label, ours["statistic"], ref.statistic))
        close(ours["p"], float(ref.pvalue), 1e-9, 0.0, label + ": approx p vs scipy")
        close(ours["z"], float(ref.zstatistic), 1e-12, 1e-14, label + ": z vs scipy")
    if not tied:
        # untied data: the rule is scipy's own method="auto" (zeros switch it to approx)
        auto = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="auto")
        close(ours["p"], float(auto.pvalue), 1e-9, 0.0, label + ": p vs scipy auto")


def wilcoxon_checks(rng):
    for n in range(1, 51):  # continuous: untied, no zeros -> exact
        wilcoxon_case(rng.normal(0.15, 1.0, n), "untied n=%d" % n)
    for n in (51, 55, 64, 80, 99, 120):  # n > 50 -> approx
        wilcoxon_case(rng.normal(0.1, 1.0, n), "untied n=%d" % n)
    for n in (1, 2, 3, 5, 8, 13, 20, 33, 50, 51, 77, 120):  # Dice differences: ties, zeros
        a = np.round(rng.uniform(0.70, 0.95, n), 2)
        b = np.clip(np.round(a + rng.normal(-0.01, 0.02, n), 2), 0, 1)
        wilcoxon_case(np.round(a - b, 2), "dice n=%d" % n)
    for n in (3, 6, 10, 25, 49, 60):  # untied, with zeros -> approx after dropping them
        d = rng.normal(0.3, 1.0, n)
        d[rng.choice(n, size=max(1, n // 5), replace=False)] = 0.0
        wilcoxon_case(d, "zeros n=%d" % n)
    wilcoxon_case(np.arange(1.0, 51.0), "50 positive")  # the extreme tail, 2^-49
    wilcoxon_case(-np.arange(1.0, 31.0) / 7.0, "30 negative")
    wilcoxon_case(np.array([0.0, 0.0, 0.0]), "all zero")


# -------------------------------------------------------------------------- describe, quantiles


def quantile_ref(s, q):
    """Type 7 on sorted non-NaN s with the header's rule for infinite ends."""
    n = len(s)
    h = (n - 1) * q
    lo = int(math.floor(h))
    if lo >= n - 1:
        return float(s[-1])
    g = h - lo
    a, b = float(s[lo]), float(s[lo + 1])
    if g == 0 or a == b:
        return a
    if math.isinf(a) and math.isinf(b):
        return math.nan
    if math.isinf(a) or math.isinf(b):
        return a if math.isinf(a) else b
    return float(np.quantile(np.array([a, b]), g))  # numpy's own interpolation of the two


def describe_checks(rng):
    for n in (1, 2, 3, 4, 5, 7, 10, 37, 100, 120):
        for kind in ("plain", "ties", "nan", "inf"):
            x = rng.normal(0.8, 0.1, n)
            if kind == "ties":
                x = np.round(x, 1)
            if kind in ("nan", "inf") and n > 1:
                x[rng.choice(n, size=max(1, n // 4), replace=False)] = np.nan
            if kind == "inf" and n > 2:
                x[rng.integers(n)] = np.inf
                x[rng.integers(n)] = -np.inf
            label = "describe %s n=%d" % (kind, n)
            ours = tool(["describe"], x)
            fin = x[np.isfinite(x)]
            nonnan = np.sort(x[~np.isnan(x)])
            check(ours["n"] == n and ours["n_finite"] == len(fin)
                  and ours["n_nan"] == int(np.isnan(x).sum())
                  and ours["n_inf"] == int(np.isinf(x).sum()), label + ": counts")
            if len(fin):
                close(ours["mean"], float(np.mean(fin)), 1e-13, 1e-15, label + ": mean")
                sd = float(np.std(fin, ddof=1)) if len(fin) > 1 else 0.0
                close(ours["sd"], sd, 1e-11, 1e-15, label + ": sd")
            else:
                check(math.isnan(ours["mean"]) and math.isnan(ours["sd"]), label + ": NaN mean")
            if len(nonnan) == 0:
                check(math.isnan(ours["median"]), label + ": NaN median")
                continue
            close(ours["min"], float(nonnan[0]), 0, 0, label + ": min")
            close(ours["max"], float(nonnan[-1]), 0, 0, label + ": max")
            for key, q in (("q1", 0.25), ("median", 0.5), ("q3", 0.75)):
                if np.all(np.isfinite(nonnan)):
                    want = float(np.percentile(nonnan, 100 * q))
                else:
                    want = quantile_ref(nonnan, q)
                close(ours[key], want, 1e-13, 1e-15, "%s: %s" % (label, key))
    # the quantile function over a grid of q, against numpy.quantile (linear)
    qs = [0.0, 0.01, 0.025, 0.1, 0.25, 1 / 3, 0.5, 0.6, 0.75, 0.9, 0.975, 0.99, 1.0]
    qs += list(rng.uniform(0, 1, 7))
    for n in (1, 2, 3, 6, 11, 50, 101):
        x = np.round(rng.gamma(2.0, 1.0, n), 3)
        ours = tool(["quantile"] + ["%.17g" % q for q in qs], x)["q"]
        for q, got in zip(qs, ours):
            close(got, float(np.quantile(x, q)), 1e-13, 1e-15, "quantile n=%d q=%.4g" % (n, q))


# ---------------------------------------------------------------------------------------- Holm


def holm_ref(p):
    """adj_(i) = min(1, max_{j <= i} (m - j) p_(j)) over the m non-NaN p sorted ascending."""
    idx = sorted((i for i in range(len(p)) if not math.isnan(p[i])), key=lambda i: p[i])
    m = len(idx)
    out = [math.nan] * len(p)
    for pos, i in enumerate(idx):
        out[i] = min(1.0, max((m - j) * p[idx[j]] for j in range(pos + 1)))
    return out


def holm_rejects(p, alpha):
    """Holm's sequential procedure: reject p_(j) while p_(j) <= alpha / (m - j)."""
    idx = sorted((i for i in range(len(p)) if not math.isnan(p[i])), key=lambda i: p[i])
    m = len(idx)
    rej = set()
    for j, i in enumerate(idx):
        if p[i] > alpha / (m - j):
            break
        rej.add(i)
    return rej


def holm_checks(rng):
    for k in (1, 2, 3, 4, 6, 10, 17, 40):
        for kind in ("plain", "ties", "nan"):
            p = rng.beta(0.4, 3.0, k)
            if kind == "ties":
                p = np.round(p, 2)
            if kind == "nan" and k > 1:
                p[rng.choice(k, size=max(1, k // 3), replace=False)] = np.nan
            p = [float(v) for v in p]
            label = "holm %s k=%d" % (kind, k)
            ours = tool(["holm"], p)["adj"]
            for i, (g, w) in enumerate(zip(ours, holm_ref(p))):
                close(g, w, 1e-14, 0.0, "%s [%d]" % (label, i))
            for alpha in (0.0123, 0.0498, 0.1017):
                got = {i for i, a in enumerate(ours) if not math.isnan(a) and a <= alpha}
                check(got == holm_rejects(p, alpha), "%s: rejections at %g" % (label, alpha))


# ----------------------------------------------------------------------------------- bootstrap

M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro:
    def __init__(self, seed):
        st, self.s = seed, []
        for _ in range(4):
            st, z = splitmix64(st)
            self.s.append(z)

    def next(self):
        s = self.s
        out = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return out

    def index(self, n):
        """Lemire: top 32 bits times n, reject low words below 2^32 mod n."""
        thresh = (1 << 32) % n
        while True:
            m = (self.next() >> 32) * n
            if (m & 0xFFFFFFFF) >= thresh:
                return m >> 32


def bootstrap_replica(x, B, seed, level):
    v = [float(t) for t in x if math.isfinite(t)]
    g = Xoshiro(seed)
    means = []
    for _ in range(B):
        s = 0.0
        for _ in range(len(v)):
            s += v[g.index(len(v))]
        means.append(s / len(v))
    means = np.array(means)
    return (float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2)))


def bootstrap_checks(rng):
    # same generator, same numbers
    for n, B, seed, level in ((1, 50, 3, 0.95), (7, 300, 42, 0.9), (30, 500, 2024, 0.95),
                              (100, 200, 18446744073709551615, 0.8), (13, 257, 0, 0.99)):
        x = np.round(rng.uniform(0.6, 0.95, n), 3)
        if n > 5:
            x[2] = np.nan
            x[4] = np.inf
        ours = tool(["bootstrap", B, seed, level], x)
        lo, hi = bootstrap_replica(x, B, seed, level)
        close(ours["lo"], lo, 1e-13, 0.0, "bootstrap replica n=%d B=%d lo" % (n, B))
        close(ours["hi"], hi, 1e-13, 0.0, "bootstrap replica n=%d B=%d hi" % (n, B))
    # against scipy.stats.bootstrap (another generator): each bound must sit, in scipy's own
    # bootstrap distribution, within 5 Monte-Carlo sd of the target level; the position of an
    # empirical q-quantile of B draws has sd sqrt(q(1-q)/B), two independent ones sqrt(2 ...)
    B = 20000
    for n, level in ((5, 0.95), (20, 0.9), (60, 0.95), (100, 0.95), (120, 0.99)):
        x = rng.gamma(3.0, 0.1, n)
        ours = tool(["bootstrap", B, 7 + n, level], x)
        res = stats.bootstrap((x,), np.mean, n_resamples=B, method="percentile",
                              confidence_level=level, random_state=np.random.default_rng(n))
        dist = np.sort(res.bootstrap_distribution)
        for key, q, sc in (("lo", (1 - level) / 2, res.confidence_interval.low),
                           ("hi", (1 + level) / 2, res.confidence_interval.high)):
            delta = 5.0 * math.sqrt(2.0 * q * (1 - q) / B)
            a = np.quantile(dist, max(0.0, q - delta))
            b = np.quantile(dist, min(1.0, q + delta))
            eps = 1e-12 * abs(float(sc))
            check(a - eps <= ours[key] <= b + eps,
                  "bootstrap vs scipy n=%d %s: ours %.6g scipy %.6g, allowed [%.6g, %.6g]"
                  % (n, key, ours[key], sc, a, b))
    # against the normal theory interval, n = 100 normal data (loose: 15 % of s/sqrt(n))
    x = rng.normal(0.8, 0.05, 100)
    ours = tool(["bootstrap", B, 99, 0.95], x)
    se = float(np.std(x, ddof=1)) / 10.0
    m = float(np.mean(x))
    close(ours["lo"], m - 1.96 * se, 0.0, 0.15 * se, "bootstrap vs normal theory lo")
    close(ours["hi"], m + 1.96 * se, 0.0, 0.15 * se, "bootstrap vs normal theory hi")
    # a constant sample has the point interval
    ours = tool(["bootstrap", 1000, 5, 0.95], [0.8125] * 25)
    check(ours["lo"] == 0.8125 and ours["hi"] == 0.8125, "bootstrap of a constant")


def bland_altman_checks(rng):
    for n in (2, 3, 10, 57):
        a = rng.normal(100, 20, n)
        b = a + rng.normal(2, 5, n)
        if n > 3:
            a[1] = np.nan
            b[2] = np.inf
        ours = tool(["bland-altman"], np.column_stack([a, b]).ravel())
        ok = np.isfinite(a) & np.isfinite(b)
        dd = a[ok] - b[ok]
        sd = float(np.std(dd, ddof=1))
        label = "bland-altman n=%d" % n
        check(ours["n"] == int(ok.sum()), label + ": n")
        close(ours["bias"], float(np.mean(dd)), 1e-12, 1e-12, label + ": bias")
        close(ours["sd"], sd, 1e-11, 1e-12, label + ": sd")
        close(ours["loa_lo"], float(np.mean(dd)) - 1.96 * sd, 1e-11, 1e-11, label + ": loa lo")
        close(ours["loa_hi"], float(np.mean(dd)) + 1.96 * sd, 1e-11, 1e-11, label + ": loa hi")


def main():
    global TOOL
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    TOOL = sys.argv[1]
    rng = np.random.default_rng(20240611)
    for name, fn in (("wilcoxon", wilcoxon_checks), ("describe", describe_checks),
                     ("holm", holm_checks), ("bootstrap", bootstrap_checks),
                     ("bland-altman", bland_altman_checks)):
        before = N_OK + len(FAILS)
        fn(rng)
        print("%-13s %d checks" % (name, N_OK + len(FAILS) - before))
    if FAILS:
        print("%d checks failed, %d passed" % (len(FAILS), N_OK))
        return 1
    print("%d checks passed" % N_OK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
