"""What the seed-study scripts (coteach_study.py, leuda_study.py) share: reading reports, the
mean ± sd cell, the paired comparison row and the command-line options."""
import argparse
import json
import math
import os
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    with open(path) as f:
        return json.load(f)


def msd(vals, fmt="{:.3f}"):
    """mean ± sd of the finite values ("–" when none, the value alone when one)."""
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return fmt.format(statistics.mean(vals)) + " ± " + fmt.format(statistics.stdev(vals))


def paired(d):
    """The cells of a paired comparison of differences d: pairs, mean, its 95 % t interval,
    the Wilcoxon signed-rank p (scipy, zeros dropped) and wins / losses."""
    from scipy import stats
    n = len(d)
    m = statistics.mean(d)
    sd = statistics.stdev(d) if n > 1 else float("nan")
    h = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    p = stats.wilcoxon(d, zero_method="wilcox").pvalue if any(x != 0 for x in d) else float("nan")
    w = sum(x > 0 for x in d)
    lo = sum(x < 0 for x in d)
    return f"{n} | {m:+.4f} | {m - h:+.4f} to {m + h:+.4f} | {p:.3g} | {w} / {lo}"


def options(doc, tag):
    """The study's command line: --seeds, --jobs, --threads, --tag, --pipeline,
    --summarise-only; args.root = runs/study/TAG (made)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default=tag)
    ap.add_argument("--pipeline", default=os.path.join(ROOT, "build", "pipeline"))
    ap.add_argument("--summarise-only", action="store_true")
    args = ap.parse_args()
    args.root = os.path.join(ROOT, "runs", "study", args.tag)
    os.makedirs(args.root, exist_ok=True)
    return args
