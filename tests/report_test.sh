#!/usr/bin/env bash
# `pipeline report` with no training run (issue 18): cardiac phantoms (three structures), two
# "models" made from the references (nibabel + scipy.ndimage: one eroded/dilated per case, one
# shifted, with a missed LV and a false-positive RV), scored by `pipeline eval --json`, reported
# with the images. Checks
#   - the comparisons of --json against scipy (Wilcoxon signed-rank p, bootstrap percentile CI
#     within Monte-Carlo tolerance, Holm, mean difference, wins/ties/losses), recomputed from the
#     per-case Dice values of the two evaluation reports;
#   - empty-mask cases in the counts and the appendix;
#   - the page in headless Chromium (tests/report_browser.py): no console error, no failed load,
#     one row per case, one panel image per worst/best case, all images decoded, sorting works,
#     a non-blank screenshot (kept as BUILD/report_screenshot.png) and a PDF print;
#   - bad input: a missing or corrupt report, a bad --window: clear error, non-zero exit, and an
#     earlier report left untouched.
# usage: report_test.sh PIPELINE SOURCE_DIR BUILD_DIR
set -u
P="$1"; S="$2"; B="$3"
D="$(mktemp -d "${TMPDIR:-/tmp}/report-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3

"$P" --quiet synth --kind cardiac --out "$D/data" --cases 8 --seed 5 > /dev/null ||
    fail "synth"
$PY - "$D" <<'PY' || fail "making the predictions"
import csv, os, sys
import nibabel as nib
import numpy as np
from scipy import ndimage
d = sys.argv[1]
rows = [r for r in csv.DictReader(open(os.path.join(d, "data/manifest.csv"))) if r["modality"] == "CT"]
assert len(rows) >= 8, len(rows)
for sub in ("ref", "img", "predA", "predB"):
    os.makedirs(os.path.join(d, sub))
rng = np.random.default_rng(7)
for k, r in enumerate(rows):
    lab = nib.load(os.path.join(d, "data", r["label"]))
    img = nib.load(os.path.join(d, "data", r["image"]))
    ref = np.asarray(lab.dataobj).astype(np.uint8)
    saved = ref.copy()
    if k == 6:
        saved[saved == 1] = 0       # case 6's reference has no RV: both models' RV is a false positive
    hdr = lab.header.copy()
    hdr.set_data_dtype(np.uint8)
    nib.save(nib.Nifti1Image(saved, lab.affine, hdr), os.path.join(d, "ref", r["id"] + ".nii.gz"))
    nib.save(img, os.path.join(d, "img", r["id"] + ".nii.gz"))
    a = np.zeros_like(ref)
    for v in (1, 2, 3):
        m = ref == v
        op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        m2 = op(m, iterations=1, structure=ndimage.generate_binary_structure(3, 1)) if rng.random() < 0.7 else m
        a[m2 & (a == 0)] = v
    b = np.roll(ref, shift=1 + (k % 2), axis=0)
    if k == 2:
        b[b == 3] = 0               # model B misses the LV of case 2
    nib.save(nib.Nifti1Image(a, lab.affine, hdr), os.path.join(d, "predA", r["id"] + ".nii.gz"))
    nib.save(nib.Nifti1Image(b, lab.affine, hdr), os.path.join(d, "predB", r["id"] + ".nii.gz"))
PY
"$P" --quiet eval --pred "$D/predA" --ref "$D/ref" --json "$D/A.json" > /dev/null || fail "eval A"
"$P" --quiet eval --pred "$D/predB" --ref "$D/ref" --json "$D/B.json" > /dev/null || fail "eval B"
mkdir -p "$D/out"
"$P" --quiet report "$D/A.json" "$D/B.json" --name eroded --name shifted --images "$D/img" \
    --worst 3 --best 1 --bootstrap 4000 --seed 11 -o "$D/out/report.html" --json "$D/out/summary.json" \
    > "$D/report.log" 2>&1 || { cat "$D/report.log"; fail "report"; }
cat "$D/report.log"
[ -s "$D/out/report.html" ] || fail "no report.html"
ls "$D/out" | grep -q tmp && fail "a temporary file was left in the output folder"

$PY - "$D" <<'PY' || fail "comparisons against scipy"
import json, os, sys
import numpy as np
from scipy import stats
d = sys.argv[1]
A = json.load(open(os.path.join(d, "A.json")))
Bj = json.load(open(os.path.join(d, "B.json")))
S = json.load(open(os.path.join(d, "out/summary.json")))
cmp = S["comparisons"]
assert [c["structure"] for c in cmp] == [1, 2, 3], cmp
assert all(c["a"] == "eroded" and c["b"] == "shifted" for c in cmp), cmp
dice = lambda R, lab: {c["id"]: float(c["labels"][str(lab)]["dice"]) for c in R["cases"]}
pvals = []
checks = 0
for c in cmp:
    da, db = dice(A, c["structure"]), dice(Bj, c["structure"])
    ids = sorted(set(da) & set(db))
    diff = np.array([da[i] - db[i] for i in ids])
    assert c["n"] == len(ids) == 8, c
    assert abs(c["mean_diff"] - diff.mean()) < 1e-12, (c, diff.mean())
    assert (c["wins"], c["ties"], c["losses"]) == (int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())), c
    nz = diff[diff != 0]
    tied = len(np.unique(np.abs(nz))) < len(nz)
    # scipy 1.10's rule: exact for n <= 50 without zeros or ties, else the normal approximation
    method = "exact" if len(nz) <= 50 and not tied and len(nz) == len(diff) else "approx"
    ref = stats.wilcoxon(diff, zero_method="wilcox", correction=False, method=method)
    assert c["wilcoxon_method"] == ("exact" if method == "exact" else "normal"), c
    assert abs(c["wilcoxon_p"] - ref.pvalue) < 1e-9 * max(1, ref.pvalue), (c, ref.pvalue)
    pvals.append(c["wilcoxon_p"])
    # percentile bootstrap CI: scipy with many resamples; bounds agree within Monte-Carlo error
    bs = stats.bootstrap((diff,), np.mean, n_resamples=40000, method="percentile",
                         confidence_level=0.95, random_state=np.random.default_rng(3))
    lo, hi = bs.confidence_interval
    tol = 0.06 * diff.std(ddof=1) + 1e-12
    assert abs(c["ci95"][0] - lo) < tol and abs(c["ci95"][1] - hi) < tol, (c, lo, hi, tol)
    assert c["ci95"][0] <= c["mean_diff"] <= c["ci95"][1], c
    checks += 5
# Holm over the three structures, written here independently
order = np.argsort(pvals)
adj = np.empty(3)
run = 0.0
for rank, i in enumerate(order):
    run = max(run, min(1.0, pvals[i] * (3 - rank)))
    adj[i] = run
for c, a in zip(cmp, adj):
    assert abs(c["p_holm"] - a) < 1e-12, (c, a)
    checks += 1
# the model summaries and the empty-mask counts
names = [m["name"] for m in S["models"]]
assert names == ["eroded", "shifted"], names
lv_b = [c for c in Bj["cases"] if c["labels"]["3"]["empty"] == "pred"]
assert len(lv_b) == 1, "expected one missed LV in model B"
assert S["models"][1]["cases_with_infinite_distance"] >= 1, S["models"][1]
html = open(os.path.join(d, "out/report.html")).read()
assert "missed (empty prediction)" in html and lv_b[0]["id"] in html
fp = [c["id"] for c in A["cases"] if c["labels"]["1"]["empty"] == "ref"]
assert len(fp) == 1, fp
assert "false positive (empty reference)" in html
for word in ("Bland-Altman", "Wilcoxon", "Holm", "For research use only", "bootstrap",
             "deepmind", "surface Dice tolerance", "empty masks", "Appendix"):
    assert word in html, word
assert "http://" not in html and "https://" not in html, "the page must not reference the network"
print("report comparisons: %d checks against scipy passed" % checks)
PY

# the page in a real browser
$PY "$S/tests/report_browser.py" "$D/out/report.html" --models 2 --cases 8 --panels 8 \
    --screenshot "$B/report_screenshot.png" || fail "browser check"

# a run directory: its models from reports/summary.json, its page settings from
# config.resolved.toml ([evaluate] report_worst, bootstrap), options overriding them
R="$D/run"
mkdir -p "$R/reports"
cp "$D/A.json" "$R/reports/eroded.json"
cp "$D/B.json" "$R/reports/shifted.json"
cp "$D/out/summary.json" "$R/reports/summary.json"
printf '[evaluate]\nreport_worst = 1\nbootstrap = 500\nreport_window = [-100.0, 100.0]\n' > "$R/config.resolved.toml"
"$P" --quiet report "$R" --images "$D/img" > /dev/null 2>&1 || fail "report RUN"
[ "$(grep -o '<img ' "$R/reports/report.html" | wc -l)" -eq 4 ] || fail "report RUN: expected 2 x (1 worst + 1 best) panels"
grep -q "B = 500 resamples" "$R/reports/report.html" || fail "report RUN: the run's bootstrap"
"$P" --quiet report "$R" --images "$D/img" --worst 2 > /dev/null 2>&1 || fail "report RUN --worst 2"
[ "$(grep -o '<img ' "$R/reports/report.html" | wc -l)" -eq 6 ] || fail "report RUN --worst 2: expected 6 panels"

# bad input: a clear error, non-zero exit, the earlier report untouched
cp "$D/out/report.html" "$D/keep.html"
expect_fail() {
    local what="$1" want="$2"; shift 2
    "$P" --quiet report "$@" > "$D/err.log" 2>&1 && fail "$what: accepted"
    grep -q -- "$want" "$D/err.log" || { cat "$D/err.log"; fail "$what: message lacks '$want'"; }
    cmp -s "$D/out/report.html" "$D/keep.html" || fail "$what: the earlier report was changed"
}
expect_fail "missing report" "no such file" "$D/nope.json" -o "$D/out/report.html"
printf '{"convention": "deepmind", "tolerance_mm": 1, "labels": [1], "cases": [{"id": "x"}]}' > "$D/bad.json"
expect_fail "corrupt report" "bad.json: field 'cases\[0\].pred'" "$D/bad.json" -o "$D/out/report.html"
printf '{"convention": ' > "$D/trunc.json"
expect_fail "truncated JSON" "not valid JSON" "$D/trunc.json" -o "$D/out/report.html"
expect_fail "bad window" "expected LOW,HIGH" "$D/A.json" --window 300,100 -o "$D/out/report.html"
expect_fail "duplicate names" "two models are named" "$D/A.json" "$D/A.json" -o "$D/out/report.html"
expect_fail "no output" "expected -o" "$D/A.json"
echo "report_cli: ok"
