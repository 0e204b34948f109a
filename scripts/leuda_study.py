#!/usr/bin/python3
"""The LE-UDA seed study (issue 20): examples/leuda.toml over several seeds.

    scripts/leuda_study.py [--seeds 1 2 3 4 5] [--jobs 2] [--threads 1] [--tag leuda]
                           [--summarise-only]

Per seed, runs/study/TAG/seed-S/:
  base/       the example as it is: translate, the source-only baseline (leuda_source) and LE-UDA
  mtuda/      MT-UDA-style: leuda.adversarial = false
  wo_source/  LE-UDA without the intra-domain teacher (leuda.wo_source = true)
  wo_target/  LE-UDA without the inter-domain teacher (leuda.wo_target = true)
  target/     the target-supervised upper bound: `supervised` on CT with the labels of all 20 CT
              training volumes (a copy of the manifest with them filled in; used only here)
The variants reuse base's translator (leuda.translator_model), so every arm of a seed sees the
same translated sets, the same initial student weights and the same labelled batches. Every
model is scored on the 6 CT test volumes translated to fake MR (the authors' protocol) and as
they are (raw CT). Finished runs are reused. Prints (and writes runs/study/TAG/study.md) per arm
and structure the Dice and ASSD (mean over test cases, then mean +- sd over seeds) and paired
comparisons over the (seed, case) pairs (mean difference, t CI, Wilcoxon signed-rank with scipy,
wins/losses).
"""
import concurrent.futures as cf
import csv
import math
import os
import statistics
import subprocess
import sys

from study_common import ROOT, load, msd, options, paired
CONFIG = os.path.join(ROOT, "examples", "leuda.toml")
DATA = os.path.join(ROOT, "demo-data-leuda")
VARIANTS = {
    "mtuda": ["leuda.adversarial=false"],
    "wo_source": ["leuda.wo_source=true"],
    "wo_target": ["leuda.wo_target=true"],
}
# arm -> (run, model on fake MR, model on raw CT)
ARMS = [
    ("source-only", "base", "leuda_source", "leuda_source_ct"),
    ("MT-UDA-style", "mtuda", "leuda", "leuda_ct"),
    ("LE-UDA", "base", "leuda", "leuda_ct"),
    ("LE-UDA wo_source", "wo_source", "leuda", "leuda_ct"),
    ("LE-UDA wo_target", "wo_target", "leuda", "leuda_ct"),
    ("LE-UDA intra teacher", "base", "leuda_intra", "leuda_intra_ct"),
    ("LE-UDA inter teacher", "base", "leuda_inter", "leuda_inter_ct"),
    ("target-supervised bound", "target", None, "supervised"),
]
COMPARISONS = [
    ("LE-UDA", "MT-UDA-style"),
    ("MT-UDA-style", "source-only"),
    ("LE-UDA", "source-only"),
    ("LE-UDA wo_source", "LE-UDA"),
    ("LE-UDA wo_target", "LE-UDA"),
    ("LE-UDA inter teacher", "LE-UDA"),
    ("target-supervised bound", "LE-UDA"),
]


def target_manifest(args):
    """The manifest with every CT training row's label filled in (absolute paths)."""
    src = os.path.join(DATA, "manifest.csv")
    dst = os.path.join(args.root, "manifest_target_labels.csv")
    with open(src) as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0].keys())
    for r in rows:
        for k in ("image", "label"):
            if r[k]:
                r[k] = os.path.join(DATA, r[k])
        if r["modality"] == "CT" and r["split"] == "train" and not r["label"]:
            r["label"] = r["image"].replace(".nii.gz", "_label.nii.gz")
    with open(dst + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(dst + ".tmp", dst)
    return dst


def run(args, seed, name):
    out = os.path.join(args.root, f"seed-{seed}", name)
    if os.path.exists(os.path.join(out, "reports", "summary.json")):
        return f"seed {seed} {name}: reused"
    cmd = [args.pipeline, "--quiet", "run", CONFIG, "--seed", str(seed), "--threads",
           str(args.threads), "--out", out]
    if name == "target":
        cmd += ["--set", 'run.stages=["supervised", "evaluate"]',
                "--set", f"data.manifest={args.target_manifest}",
                "--set", "supervised.modality=CT", "--set", "supervised.iterations=1500",
                "--set", "supervised.batch=8", "--set", "supervised.lr=2e-3",
                "--set", "supervised.schedule=constant"]
    elif name != "base":
        tr = os.path.join(args.root, f"seed-{seed}", "base", "models", "translator.h5")
        cmd += ["--set", 'run.stages=["leuda", "evaluate"]',
                "--set", f"leuda.translator_model={tr}"]
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
        out[c["id"]] = {int(k): (float(v["dice"]), float(v["assd"]))
                        for k, v in c["labels"].items()}
    return rep.get("label_names"), [int(x) for x in rep["labels"]], out




def translation_check(args, names, labels):
    """Mean intensity per class of the images the segmenters see (the pipeline's normalisation:
    MRI (x - mean) / (3 sd) clipped to [-1, 1]): real MR test volumes, and the fake MR that each
    seed's translator G makes of the CT test volumes (evaluate.write_pmri)."""
    import nibabel as nib
    import numpy as np
    with open(os.path.join(DATA, "manifest.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]

    def per_class(img, lab):
        return [float(img[lab == c].mean()) for c in [0] + labels]

    def label_of(r):
        return np.asarray(nib.load(os.path.join(DATA, r["image"].replace(".nii.gz", "_label.nii.gz"))).dataobj)
    real = []
    for r in rows:
        if r["modality"] == "MR":
            x = np.asarray(nib.load(os.path.join(DATA, r["image"])).dataobj).astype(np.float64)
            z = np.clip((x - x.mean()) / (3 * x.std()), -1, 1)
            real.append(per_class(z, label_of(r)))
    fake = {}
    for s in args.seeds:
        v = []
        for r in rows:
            if r["modality"] == "CT":
                p = os.path.join(args.root, f"seed-{s}", "base", "pmri", r["id"] + ".nii.gz")
                v.append(per_class(np.asarray(nib.load(p).dataobj), label_of(r)))
        fake[s] = np.mean(v, axis=0)
    out = ["| mean normalised intensity | background | " + " | ".join(names) + " |",
           "|---|" + "---|" * (1 + len(names))]
    out.append("| real MR (test) | " + " | ".join(f"{v:.3f}" for v in np.mean(real, axis=0)) + " |")
    fk = np.array([fake[s] for s in args.seeds])
    out.append("| fake MR = G(CT test), mean ± sd over seeds | " + " | ".join(
        f"{m:.3f} ± {d:.3f}" for m, d in zip(fk.mean(axis=0), fk.std(axis=0, ddof=1) if
                                              len(args.seeds) > 1 else 0 * fk.mean(axis=0))) + " |")
    out.append("\nThe segmenters learn the real MR contrast; a structure whose fake-MR intensity is "
               "far from its real-MR one is mistaken for its neighbours.\n")
    return out


def summarise(args):
    lines = []
    seeds = args.seeds
    names, labels, _ = per_case(args, seeds[0], "base", "leuda")
    names = names or [f"label_{v}" for v in labels]
    data = {}  # (arm, protocol) -> seed -> case -> label -> (dice, assd)
    for arm, runname, fake, raw in ARMS:
        for proto, model in (("fake MR", fake), ("raw CT", raw)):
            if model:
                data[(arm, proto)] = {s: per_case(args, s, runname, model)[2] for s in seeds}
    ncases = len(next(iter(data.values()))[seeds[0]])
    lines.append(f"Seeds {seeds}; {ncases} CT test cases per seed.\n")
    head = "| arm | test images | " + " | ".join(f"Dice {n}" for n in names) + \
        " | Dice mean | " + " | ".join(f"ASSD {n} mm" for n in names) + " |"
    lines.append(head)
    lines.append("|" + "---|" * (3 + 2 * len(names)))
    for key in data:
        arm, proto = key
        row = [arm, proto]
        for lab in labels:
            row.append(msd([statistics.mean(cs[c][lab][0] for c in cs)
                            for cs in (data[key][s] for s in seeds)]))
        row.append(msd([statistics.mean(statistics.mean(cs[c][lab][0] for lab in labels)
                                        for c in cs) for cs in (data[key][s] for s in seeds)]))
        for lab in labels:
            vals = []
            for s in seeds:
                cs = data[key][s]
                fin = [cs[c][lab][1] for c in cs if math.isfinite(cs[c][lab][1])]
                vals.append(statistics.mean(fin) if fin else float("nan"))
            row.append(msd(vals, "{:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("\nDice: mean over the test cases, then mean ± sd over seeds. ASSD: mean over "
                 "the cases with both masks non-empty. fake MR: the CT test volumes translated "
                 "by the translator's G (the authors' protocol); raw CT: as they are.\n")

    def diffs(a, b, proto):
        d = []
        for s in seeds:
            for c in data[(a, proto)][s]:
                da = statistics.mean(data[(a, proto)][s][c][lab][0] for lab in labels)
                db = statistics.mean(data[(b, proto)][s][c][lab][0] for lab in labels)
                d.append(da - db)
        return d
    lines.append("| a | b | test images | pairs | mean Dice a − b | 95 % CI (t) | Wilcoxon p | "
                 "wins / losses |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for a, b in COMPARISONS:
        for proto in ("fake MR", "raw CT"):
            if (a, proto) not in data or (b, proto) not in data:
                continue
            lines.append(f"| {a} | {b} | {proto} | {paired(diffs(a, b, proto))} |")
    lines.append("\nPairs: (seed, test case), the Dice averaged over the three structures; "
                 "Wilcoxon signed-rank (scipy, zeros dropped).\n")
    lines += translation_check(args, names, labels)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.root, "study.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    args = options(__doc__, "leuda")
    if not args.summarise_only:
        # the phantoms once (every run reads the same folder), then the base runs (they train
        # the translators the variants reuse), then the variants and the bound
        subprocess.run([args.pipeline, "--quiet", "run", CONFIG, "--set", 'run.stages=["synth"]',
                        "--out", os.path.join(args.root, "synth")], check=True)
        args.target_manifest = target_manifest(args)
        with cf.ThreadPoolExecutor(args.jobs) as ex:
            for msg in ex.map(lambda s: run(args, s, "base"), args.seeds):
                print(msg, flush=True)
            jobs = [(s, v) for s in args.seeds for v in list(VARIANTS) + ["target"]]
            for msg in ex.map(lambda sv: run(args, sv[0], sv[1]), jobs):
                print(msg, flush=True)
    summarise(args)


if __name__ == "__main__":
    sys.exit(main())
