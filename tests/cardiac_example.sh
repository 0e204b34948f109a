#!/usr/bin/env bash
# examples/cardiac-baseline.toml end to end: three structures (RV, MYO, LV) from the cardiac
# phantoms, a supervised U-Net; per-structure figures in summary.json / summary.md, masks with
# all three labels on each input's grid (nibabel); reports/report.html in headless Chromium. usage: cardiac_example.sh PIPELINE SOURCE_DIR
set -u
P="$1"; S="$2"
D="$(mktemp -d "${TMPDIR:-/tmp}/cardiac-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cp "$S/examples/cardiac-baseline.toml" "$D/c.toml"
t0=$(date +%s)
"$P" --quiet run "$D/c.toml" --out "$D/run" --set synth.out_dir="$D/data" \
    --set data.manifest="$D/data/manifest.csv" > "$D/log" 2>&1 || { cat "$D/log"; fail "run failed"; }
echo "cardiac example: $(( $(date +%s) - t0 )) s"
/usr/bin/python3 - "$D" <<'PY' || fail "summary or masks"
import glob, json, os, sys
import nibabel as nib
import numpy as np
d = sys.argv[1]
s = json.load(open(os.path.join(d, "run/reports/summary.json")))
models = s["models"]
assert [m["name"] for m in models] == ["supervised"], models
m = models[0]
st = m["structures"]
assert [(x["label"], x["name"]) for x in st] == [(1, "RV"), (2, "MYO"), (3, "LV")], st
for x in st:
    assert x["cases"] >= 1 and 0.5 < x["dice_mean"] <= 1.0, x
assert abs(m["dice_mean"] - sum(x["dice_mean"] for x in st) / 3) < 1e-4
assert m["params"] > 0
md = open(os.path.join(d, "run/reports/summary.md")).read()
for name in ("| RV | 1 |", "| MYO | 2 |", "| LV | 3 |"):
    assert name in md, name
masks = sorted(glob.glob(os.path.join(d, "run/masks/supervised/*.nii.gz")))
assert masks
for f in masks:
    mk = nib.load(f)
    ref = nib.load(os.path.join(d, "data/mr", os.path.basename(f)))
    assert mk.shape == ref.shape and np.allclose(mk.affine, ref.affine, atol=1e-5), f
    v = set(np.unique(np.asarray(mk.dataobj)).tolist())
    assert v == {0, 1, 2, 3}, (f, v)
print("ok: %d masks, Dice RV %.3f MYO %.3f LV %.3f" % ((len(masks),) + tuple(x["dice_mean"] for x in st)))
PY
# the evaluate stage's page for radiologists (issue 18) in a real browser: one model, its test
# cases, three worst + one best panel; and `pipeline report RUN` makes the same page again
n=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["models"][0]["cases"])' \
    "$D/run/reports/summary.json")
w=$(( n < 3 ? n : 3 )); b=$(( n - w > 0 ? 1 : 0 ))
/usr/bin/python3 "$S/tests/report_browser.py" "$D/run/reports/report.html" --models 1 --cases "$n" \
    --panels $(( w + b )) || fail "report.html in the browser"
grep -q '<b>RV</b>' "$D/run/reports/report.html" || fail "report.html: no structure names"
"$P" --quiet report "$D/run" -o "$D/again.html" > /dev/null || fail "pipeline report RUN"
grep -c '<img ' "$D/again.html" | grep -qx $(( w + b )) || fail "pipeline report RUN: panels"
