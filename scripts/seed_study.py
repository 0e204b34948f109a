#!/usr/bin/env python3
"""Seed study: run one config over several seeds and compare the models it evaluates.

    scripts/seed_study.py CONFIG --seeds 1 2 3 [--jobs 2] [--threads 1] [--tag NAME]
                          [--set KEY=VALUE ...] [--from TAG] [--summarise-only]

Each seed runs `build/pipeline run CONFIG --seed S --threads T --out runs/study/NAME/seed-S
--set ...` (up to --jobs at once; results do not depend on --jobs). Finished runs are reused.
Then, from every run's reports/<model>.json and the phantoms' cases.csv (if present beside the
manifest), it prints a Markdown table: per seed the mean tumour Dice of each model over the
evaluated cases, the CMEDL - baseline difference, then the mean and sample standard deviation
over seeds, the sign count over seeds and over (seed, case) pairs, and the means on the easy and
hard (mediastinum-touching) cases. The table is also written to runs/study/NAME/study.md.
--from TAG copies the runs of study TAG without their evaluation and only evaluates again (for
evaluation settings such as evaluate.split or evaluate.largest_component).
"""
import argparse
import concurrent.futures as cf
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stages_of(args):
    """run.stages of the config, after any --set run.stages=[...]"""
    import tomllib
    for s in args.set:
        if s.startswith("run.stages="):
            return tomllib.loads("v = " + s.split("=", 1)[1])["v"]
    with open(args.config, "rb") as f:
        return tomllib.load(f).get("run", {}).get("stages", [])


def run_seed(args, seed):
    out = os.path.join(args.root, f"seed-{seed}")
    if os.path.exists(os.path.join(out, "reports", "summary.json")):
        return seed, 0, "reused"
    if args.from_tag and not os.path.isdir(out):
        # re-evaluate the models of another study: its run without the evaluate stage's output
        src = os.path.join(ROOT, "runs", "study", args.from_tag, f"seed-{seed}")
        shutil.copytree(src, out, ignore=lambda d, names: [
            n for n in names if n in ("reports", "masks", "evaluate.done")])
    cmd = [args.pipeline, "--quiet", "run", args.config, "--seed", str(seed), "--threads",
           str(args.threads), "--out", out]
    if os.path.isdir(out):
        cmd.append("--resume")
    for s in args.set:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return seed, p.returncode, (p.stderr or p.stdout)[-2000:]


def load_cases(run_dir):
    """{model: {case_id: dice}} from reports/<model>.json, and the manifest path."""
    res = {}
    rep = os.path.join(run_dir, "reports")
    with open(os.path.join(rep, "summary.json")) as f:
        models = [m["name"] for m in json.load(f)["models"]]
    for m in models:
        with open(os.path.join(rep, m + ".json")) as f:
            d = json.load(f)
        res[m] = {c["id"]: c["labels"][next(iter(c["labels"]))]["dice"] for c in d["cases"]}
    return res


def hard_flags(run_dir, sets):
    """case id -> 1 (hard) / 0 (easy) from cases.csv beside the run's manifest, if any."""
    flags = {}
    try:
        import tomllib
        man = next((s.split("=", 1)[1] for s in sets if s.startswith("data.manifest=")), None)
        if man is None:
            with open(os.path.join(run_dir, "config.resolved.toml"), "rb") as f:
                man = tomllib.load(f)["data"]["manifest"]
        with open(os.path.join(os.path.dirname(man), "cases.csv")) as f:
            for r in csv.DictReader(f):
                flags[r["id"]] = int(r["hard"])
    except (OSError, KeyError, ValueError, ImportError):
        pass
    return flags


def sign_p(wins, losses):
    """Two-sided exact sign test (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * p)


def fmt_sd(v):
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else \
        f"{v[0]:.3f}"


def summarise(args):
    rows, pairs, sub = [], [], {0: {}, 1: {}}
    models = None
    for seed in args.seeds:
        rd = os.path.join(args.root, f"seed-{seed}")
        try:
            cases = load_cases(rd)
        except OSError:
            print(f"seed {seed}: no reports in {rd}", file=sys.stderr)
            continue
        models = models or list(cases)
        flags = hard_flags(rd, args.set)
        means = {m: statistics.mean(cases[m].values()) for m in models}
        rows.append((seed, means, len(next(iter(cases.values())))))
        if "cmedl" in cases and "baseline" in cases:
            for cid, d in cases["cmedl"].items():
                pairs.append(d - cases["baseline"][cid])
        for m in models:
            for cid, d in cases[m].items():
                if cid in flags:
                    sub[flags[cid]].setdefault(m, []).append(d)
    if not rows:
        return 1
    lines = [f"Seed study `{args.tag}`: {args.config}" +
             (" with " + " ".join(f"`--set {s}`" for s in args.set) if args.set else ""), ""]
    diff = "cmedl" in models and "baseline" in models
    head = "| seed | cases | " + " | ".join(f"{m} Dice" for m in models) + \
        (" | CMEDL - baseline |" if diff else " |")
    lines += [head, "|" + "---|" * (len(models) + 2 + diff)]
    for seed, means, n in rows:
        cells = " | ".join(f"{means[m]:.3f}" for m in models)
        d = f" | {means['cmedl'] - means['baseline']:+.3f} |" if diff else " |"
        lines.append(f"| {seed} | {n} | {cells}{d}")
    cells = " | ".join(fmt_sd([r[1][m] for r in rows]) for m in models)
    dv = [r[1]["cmedl"] - r[1]["baseline"] for r in rows] if diff else []
    lines.append(f"| mean ± sd over seeds | | {cells}" +
                 (f" | {fmt_sd(dv)} |" if diff else " |"))
    lines.append("")
    if diff:
        w = sum(d > 0 for d in dv)
        lo = sum(d < 0 for d in dv)
        pw = sum(d > 0 for d in pairs)
        pl = sum(d < 0 for d in pairs)
        lines.append(f"CMEDL ahead on {w} of {len(dv)} seeds (behind on {lo}); over (seed, case) "
                     f"pairs ahead on {pw}, behind on {pl} (two-sided sign test p = "
                     f"{sign_p(pw, pl):.3g}); mean per-case difference {statistics.mean(pairs):+.3f}.")
    for h, name in ((0, "easy (tumour inside the lung)"), (1, "hard (touching the mediastinum)")):
        if sub[h]:
            lines.append(f"- {name}: " + ", ".join(
                f"{m} {statistics.mean(v):.3f} (n={len(v)})" for m, v in sub[h].items()))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(args.root, "study.md"), "w") as f:
        f.write(text)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="default")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--pipeline", default=os.path.join(ROOT, "build", "pipeline"))
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--from", dest="from_tag", metavar="TAG",
                    help="re-evaluate the trained models of study TAG (only evaluate runs)")
    args = ap.parse_args()
    args.root = os.path.join(ROOT, "runs", "study", args.tag)
    os.makedirs(args.root, exist_ok=True)
    if not args.summarise_only:
        # the phantoms first, once, so parallel runs only read them
        out = os.path.join(args.root, "synth")
        cmd = [args.pipeline, "--quiet", "run", args.config, "--out", out, "--set",
               'run.stages=["synth"]'] + [x for s in args.set for x in ("--set", s)]
        if os.path.isdir(out):
            cmd.append("--resume")
        if not args.from_tag and "synth" in stages_of(args) and subprocess.run(cmd).returncode != 0:
            return 1
        failed = 0
        with cf.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            for seed, rc, msg in ex.map(lambda s: run_seed(args, s), args.seeds):
                print(f"seed {seed}: {'ok' if rc == 0 else 'FAILED (exit %d)' % rc} {msg if rc else ''}",
                      file=sys.stderr)
                failed += rc != 0
        if failed:
            return 1
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
