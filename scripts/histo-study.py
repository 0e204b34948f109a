#!/usr/bin/python3
"""The 5-seed study of examples/histo.toml (docs/results.md, issue 21).

usage: scripts/histo-study.py STUDY_DIR     (STUDY_DIR/seed<N>/ are runs of examples/histo.toml;
       ctkd-seed<N>/ and meta-seed<N>/ the CTKD and meta curriculum arms, runs/histo-study/run.sh)

Prints per seed and arm the accuracy, balanced accuracy and AUC on site A, site B and overall, the
candidates each filter of histo_synth kept, the KD student's size, and paired comparisons over the
seeds (mean difference, per-seed differences, two-sided exact Wilcoxon signed-rank with scipy).
"""
import glob, json, os, re, sys

from scipy.stats import wilcoxon

ARMS = ["histo_cls", "histo_kd_student", "histo_kd_ctkd", "histo_synth_all", "histo_synth_selected",
        "histo_meta"]
LABEL = {"histo_cls": "supervised", "histo_kd_student": "KD student (T = 4)",
         "histo_kd_ctkd": "KD student (CTKD global T)",
         "histo_synth_all": "all synthetic", "histo_synth_selected": "selected synthetic",
         "histo_meta": "meta curriculum"}


def load(d):
    r = json.load(open(os.path.join(d, "reports/classification.json")))
    out = {}
    for m in r["models"]:
        out[m["name"]] = {"A": m["groups"]["siteA"], "B": m["groups"]["siteB"], "all": m["overall"]}
    log = open(os.path.join(d, "log.txt")).read()
    c = re.search(r"(\d+) candidates: (\d+) pass the confidence filter .*?, (\d+) the feature filter"
                  r".*?, (\d+) both: kept", log)
    k = re.search(r"teacher (\d+) parameters .*?student (\d+) .*?: ([0-9.]+)x fewer", log)
    return out, tuple(map(int, c.groups())), (int(k.group(1)), int(k.group(2)))


def main():
    runs = sorted((p for p in glob.glob(os.path.join(sys.argv[1], "seed*")) if os.path.isdir(p)),
                  key=lambda p: int(p.split("seed")[-1]))
    res = {os.path.basename(p): load(p) for p in runs if os.path.exists(os.path.join(p, "reports/classification.json"))}
    # the CTKD arm: STUDY_DIR/ctkd-seed<N>, histo_kd with temperature = "global" and the seed's teacher
    for s in res:
        c = os.path.join(sys.argv[1], "ctkd-" + s, "reports/classification.json")
        if os.path.exists(c):
            m = json.load(open(c))["models"][0]
            res[s][0]["histo_kd_ctkd"] = {"A": m["groups"]["siteA"], "B": m["groups"]["siteB"], "all": m["overall"]}
    # the meta curriculum arm: STUDY_DIR/meta-seed<N>, histo_meta with the seed's data and seed
    for s in res:
        c = os.path.join(sys.argv[1], "meta-" + s, "reports/classification.json")
        if os.path.exists(c):
            m = json.load(open(c))["models"][0]
            res[s][0]["histo_meta"] = {"A": m["groups"]["siteA"], "B": m["groups"]["siteB"], "all": m["overall"]}
    arms = [a for a in ARMS if all(a in res[s][0] for s in res)]
    seeds = list(res)
    print("seeds:", ", ".join(seeds))
    for metric in ("accuracy", "balanced_accuracy", "auc"):
        print("\n%s (mean over %d seeds; per seed)" % (metric, len(seeds)))
        print("| arm | site A | site B | both | per seed (A / B) |")
        print("|---|---|---|---|---|")
        for a in arms:
            v = {s: [res[s][0][a][g][metric] for g in ("A", "B", "all")] for s in seeds}
            mean = [sum(v[s][i] for s in seeds) / len(seeds) for i in range(3)]
            per = "; ".join("%.3f / %.3f" % (v[s][0], v[s][1]) for s in seeds)
            print("| %s | %.3f | %.3f | %.3f | %s |" % (LABEL[a], mean[0], mean[1], mean[2], per))
    print("\npaired over seeds (difference of the first minus the second; exact Wilcoxon, two-sided)")
    print("| comparison | metric | site | mean diff | per seed | p |")
    print("|---|---|---|---|---|---|")
    pairs = [("histo_synth_selected", "histo_synth_all"), ("histo_synth_selected", "histo_cls"),
             ("histo_synth_all", "histo_cls"), ("histo_kd_student", "histo_cls"),
             ("histo_kd_ctkd", "histo_cls"), ("histo_kd_ctkd", "histo_kd_student"),
             ("histo_meta", "histo_cls"), ("histo_meta", "histo_synth_selected")]
    for a, b in pairs:
        if a not in arms or b not in arms:
            continue
        for metric in ("accuracy", "auc"):
            for g in ("A", "B"):
                d = [res[s][0][a][g][metric] - res[s][0][b][g][metric] for s in seeds]
                nz = [x for x in d if x != 0]
                p = wilcoxon(nz).pvalue if len(nz) >= 1 else float("nan")
                print("| %s - %s | %s | %s | %+.3f | %s | %.3f |" % (
                    LABEL[a], LABEL[b], metric, g, sum(d) / len(d), " ".join("%+.3f" % x for x in d), p))
    print("\nhisto_synth candidates (per seed: generated, pass confidence, pass feature distance, kept)")
    for s in seeds:
        print("  %s: %d, %d, %d, %d" % ((s,) + res[s][1]))
    t, st = res[seeds[0]][2]
    print("\nKD: teacher %d parameters, student %d (%.1fx fewer)" % (t, st, t / st))


if __name__ == "__main__":
    main()
