#!/usr/bin/env python3
"""The ACT-Net / CTKD seed study (issue 19): examples/coteach.toml over several seeds.

    scripts/coteach_study.py [--seeds 1 2 3 4 5] [--jobs 2] [--threads 1] [--tag coteach]
                             [--summarise-only]

Per seed, runs/study/TAG/seed-S/:
  base/        the example as it is: the large teacher (e), ACT-Net with CTKD global T (d-global),
               the tiny network alone (a)
  co_only/     the student with the co-teacher only (b: w_kd = 0, Homo-KD)
  kd_only/     the student with the teacher only, fixed T = 4 (c: w_co = 0, Hete-KD)
  act_fixed/   ACT-Net, fixed T = 4 (d-fixed)
  act_inst/    ACT-Net, CTKD instance-wise T (d-instance)
The variants distil base's teacher (coteach.teacher_model) and train nothing else; every arm of
a seed sees the same data (the phantoms' seed is fixed), the same initial student weights and
the same labelled batches. Finished runs are reused. From every run's reports/<model>.json it
prints (and writes to runs/study/TAG/study.md) per arm and structure the mean Dice and HD95 over
the test cases (mean +- sd over seeds), the parameter counts, paired comparisons over the
(seed, case) pairs (mean difference, Wilcoxon signed-rank p with scipy, wins/losses) and the
temperature curves (T at 0, 10, 25, 50, 100 % of training, mean over seeds).
"""
import concurrent.futures as cf
import csv
import math
import os
import statistics
import subprocess
import sys

from study_common import ROOT, load, msd, options, paired
CONFIG = os.path.join(ROOT, "examples", "coteach.toml")
VARIANTS = {
    "co_only": ["coteach.w_kd=0"],
    "kd_only": ["coteach.w_co=0", "coteach.temperature=fixed"],
    "act_fixed": ["coteach.temperature=fixed"],
    "act_inst": ["coteach.temperature=instance"],
}
# arm -> (run, model)
ARMS = [
    ("(a) tiny alone", "base", "coteach_tiny"),
    ("(b) tiny + co-teacher", "co_only", "coteach"),
    ("(c) tiny + teacher KD, T=4", "kd_only", "coteach"),
    ("(d) ACT-Net, T=4", "act_fixed", "coteach"),
    ("(d) ACT-Net, CTKD global", "base", "coteach"),
    ("(d) ACT-Net, CTKD instance", "act_inst", "coteach"),
    ("(e) large teacher", "base", "coteach_teacher"),
    ("co-teacher of (d) CTKD global", "base", "coteach_coteacher"),
]


def run(args, seed, name):
    out = os.path.join(args.root, f"seed-{seed}", name)
    if os.path.exists(os.path.join(out, "reports", "summary.json")):
        return f"seed {seed} {name}: reused"
    cmd = [args.pipeline, "--quiet", "run", CONFIG, "--seed", str(seed), "--threads",
           str(args.threads), "--out", out]
    if name != "base":
        teacher = os.path.join(args.root, f"seed-{seed}", "base", "models", "coteach_teacher.h5")
        cmd += ["--set", 'run.stages=["coteach", "evaluate"]',
                "--set", f"coteach.teacher_model={teacher}"]
        for s in VARIANTS[name]:
            cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"seed {seed} {name}: exit {r.returncode}\n{r.stderr[-3000:]}")
    return f"seed {seed} {name}: done"



def per_case(args, seed, runname, model):
    rep = load(os.path.join(args.root, f"seed-{seed}", runname, "reports", model + ".json"))
    out = {}
    for c in rep["cases"]:
        out[c["id"]] = {int(k): (float(v["dice"]), float(v["hd95"])) for k, v in c["labels"].items()}
    return rep.get("label_names"), [int(x) for x in rep["labels"]], out


def params_of(args, seed, runname, model):
    s = load(os.path.join(args.root, f"seed-{seed}", runname, "reports", "summary.json"))
    for m in s["models"]:
        if m["name"] == model:
            return m["params"]
    return None




def summarise(args):
    lines = []
    seeds = args.seeds
    names, labels, _ = per_case(args, seeds[0], "base", "coteach")
    names = names or [f"label_{v}" for v in labels]
    data = {}  # arm -> seed -> case -> label -> (dice, hd95)
    for arm, runname, model in ARMS:
        data[arm] = {s: per_case(args, s, runname, model)[2] for s in seeds}
    pt = params_of(args, seeds[0], "base", "coteach_teacher")
    ps = params_of(args, seeds[0], "base", "coteach")
    lines.append(f"Seeds {seeds}; {len(next(iter(data[ARMS[0][0]].values())))} test cases per "
                 f"seed; teacher {pt} parameters, student {ps} ({pt / ps:.1f}x fewer).\n")
    # per-arm table: Dice (mean over cases, then mean +- sd over seeds) per structure, HD95
    head = "| arm | " + " | ".join(f"Dice {n}" for n in names) + " | Dice mean | " + \
        " | ".join(f"HD95 {n} mm" for n in names) + " |"
    lines.append(head)
    lines.append("|" + "---|" * (2 + 2 * len(names)))
    for arm, _, _ in ARMS:
        row = [arm]
        per_seed_mean = []
        for li, lab in enumerate(labels):
            vals = []
            for s in seeds:
                cs = data[arm][s]
                vals.append(statistics.mean(cs[c][lab][0] for c in cs))
            row.append(msd(vals))
        for s in seeds:
            cs = data[arm][s]
            per_seed_mean.append(statistics.mean(
                statistics.mean(cs[c][lab][0] for lab in labels) for c in cs))
        row.append(msd(per_seed_mean))
        for lab in labels:
            vals = []
            for s in seeds:
                cs = data[arm][s]
                fin = [cs[c][lab][1] for c in cs if math.isfinite(cs[c][lab][1])]
                vals.append(statistics.mean(fin) if fin else float("nan"))
            row.append(msd(vals))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("\nDice: mean over the test cases, then mean ± sd over seeds. HD95: mean over "
                 "the cases with both masks non-empty.\n")
    # paired comparisons on the mean Dice over structures, per (seed, case)
    def pairs(a, b):
        d = []
        for s in seeds:
            for c in data[a][s]:
                da = statistics.mean(data[a][s][c][lab][0] for lab in labels)
                db = statistics.mean(data[b][s][c][lab][0] for lab in labels)
                d.append(da - db)
        return d
    comps = [("(d) ACT-Net, CTKD global", "(a) tiny alone"),
             ("(d) ACT-Net, CTKD global", "(b) tiny + co-teacher"),
             ("(d) ACT-Net, CTKD global", "(c) tiny + teacher KD, T=4"),
             ("(d) ACT-Net, CTKD global", "(e) large teacher"),
             ("(d) ACT-Net, T=4", "(a) tiny alone"),
             ("(d) ACT-Net, T=4", "(b) tiny + co-teacher"),
             ("(d) ACT-Net, T=4", "(c) tiny + teacher KD, T=4"),
             ("(d) ACT-Net, T=4", "(e) large teacher"),
             ("(d) ACT-Net, CTKD global", "(d) ACT-Net, T=4"),
             ("(d) ACT-Net, CTKD instance", "(d) ACT-Net, T=4"),
             ("(c) tiny + teacher KD, T=4", "(a) tiny alone"),
             ("(b) tiny + co-teacher", "(a) tiny alone")]
    lines.append("| a | b | pairs | mean Dice a − b | 95 % CI (t) | Wilcoxon p | wins / losses |")
    lines.append("|---|---|---|---|---|---|---|")
    for a, b in comps:
        lines.append(f"| {a} | {b} | {paired(pairs(a, b))} |")
    lines.append("\nPairs: (seed, test case), the Dice averaged over the three structures; "
                 "Wilcoxon signed-rank (scipy, zeros dropped).\n")
    # temperature curves
    lines.append("| temperature | T at 0 % | 10 % | 25 % | 50 % | 100 % |")
    lines.append("|---|---|---|---|---|---|")
    for arm, runname in (("CTKD global", "base"), ("CTKD instance (mean over slices)",
                                                   "act_inst")):
        rows = []
        for s in seeds:
            path = os.path.join(args.root, f"seed-{s}", runname, "models", "coteach_temperature.csv")
            with open(path) as f:
                t = [float(r["temperature"]) for r in csv.DictReader(f)]
            rows.append(t)
        n = min(len(r) for r in rows)
        cells = []
        for q in (0, 0.10, 0.25, 0.5, 1.0):
            i = min(n - 1, int(q * (n - 1)))
            vals = [r[i] for r in rows]
            cells.append(f"{statistics.mean(vals):.2f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.root, "study.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    args = options(__doc__, "coteach")
    if not args.summarise_only:
        # the phantoms once (every run reads the same folder), then the base runs (they train
        # the teachers the variants distil), then the variants
        subprocess.run([args.pipeline, "--quiet", "run", CONFIG, "--set", 'run.stages=["synth"]',
                        "--out", os.path.join(args.root, "synth")], check=True)
        with cf.ThreadPoolExecutor(args.jobs) as ex:
            for msg in ex.map(lambda s: run(args, s, "base"), args.seeds):
                print(msg, flush=True)
            jobs = [(s, v) for s in args.seeds for v in VARIANTS]
            for msg in ex.map(lambda sv: run(args, sv[0], sv[1]), jobs):
                print(msg, flush=True)
    summarise(args)


if __name__ == "__main__":
    sys.exit(main())
