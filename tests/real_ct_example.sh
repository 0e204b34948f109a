#!/usr/bin/env bash
# examples/real-ct.toml end to end on the real cranium CT (../shared/data/real/ct, issue 16):
#   1. the nnU-Net dataset is made from the shared CT (scripts/make-cranium-dataset.py: 6 axial
#      slabs, 4 train, 2 test with labelsTs/ references);
#   2. `pipeline plan` on it writes examples/real-ct.toml as committed (but its paths): the
#      example is the planned config, no hand-tuning;
#   3. `pipeline run` of the example trains (validation on the held-out train slab) and evaluates
#      the 2 test slabs: Dice > 0.9 for soft tissue and bone, validation recorded in run.json,
#      masks on each input's grid (nibabel);
#   4. a mixed-orientation copy of the dataset (one slab stored LSA, one RAS) trains to the same
#      model as the original (every weight equal, h5py).
# usage: real_ct_example.sh PIPELINE SOURCE_DIR [SHARED_DIR]
set -u
P="$1"; S="$2"; SH="${3:-$S/../shared}"
D="$(mktemp -d "${TMPDIR:-/tmp}/real-ct-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$SH/data/real/ct/cranium_ct.nii.gz" ] || fail "the real CT $SH/data/real/ct/cranium_ct.nii.gz is missing"
PY=/usr/bin/python3
mk() { "$PY" "$S/scripts/make-cranium-dataset.py" "$@" --shared "$SH" > "$D/mk.log" 2>&1 || { cat "$D/mk.log"; fail "make-cranium-dataset.py $*"; }; }
mk "$D/runs/real-ct-data/Dataset501_Cranium" --labels-ts

# 2. the example is what the plan writes
mkdir -p "$D/examples"
(cd "$D" && "$P" --quiet plan runs/real-ct-data/Dataset501_Cranium -o examples/real-ct.toml --time-budget 1 \
    --gflops 120) > "$D/plan.log" 2>&1 || { cat "$D/plan.log"; fail "plan"; }
strip() { grep -v -e '^out_dir = ' -e '^# run directory' "$1"; } # the one edit: out_dir
diff <(strip "$S/examples/real-ct.toml") <(strip "$D/examples/real-ct.toml") ||
    fail "examples/real-ct.toml differs from what \`pipeline plan\` writes (re-plan it: see the example's header)"

# 3. train and evaluate the example
t0=$(date +%s)
"$P" --quiet run "$S/examples/real-ct.toml" --out "$D/run" \
    --set data.manifest="$D/runs/real-ct-data/Dataset501_Cranium" > "$D/run.log" 2>&1 || { cat "$D/run.log"; fail "run"; }
echo "real-ct example: $(( $(date +%s) - t0 )) s"
"$PY" - "$D" <<'PY' || fail "summary, run.json or masks"
import json, os, sys
import nibabel as nib
import numpy as np
d = sys.argv[1]
s = json.load(open(os.path.join(d, "run/reports/summary.json")))
m = s["models"][0]
assert m["name"] == "supervised", m
st = {x["name"]: x for x in m["structures"]}
assert sorted(st) == ["bone", "soft_tissue"], st
for x in st.values():
    assert x["cases"] == 2, x
    assert x["dice_mean"] > 0.9, x
r = json.load(open(os.path.join(d, "run/run.json")))
v = r["stages"]["supervised"]["validation"]
it = [h["iteration"] for h in v["history"]]  # ten times a run, and the last iteration
assert v["cases"] == 1 and len(it) in (10, 11) and it == sorted(it) and it[-1] == 750, it
assert v["best_dice"] > 0.9 and 0 < v["best_iteration"] <= v["history"][-1]["iteration"], v
assert os.path.isfile(os.path.join(d, "run/models/supervised_student_best.h5"))
for case in ("cranium_s1", "cranium_s4"):
    img = nib.load(os.path.join(d, "runs/real-ct-data/Dataset501_Cranium/imagesTs", case + "_0000.nii.gz"))
    msk = nib.load(os.path.join(d, "run/masks/supervised", case + ".nii.gz"))
    assert msk.shape == img.shape, (msk.shape, img.shape)
    assert np.array_equal(msk.affine, img.affine), (msk.affine, img.affine)
    assert set(np.unique(np.asarray(msk.dataobj))) <= {0, 1, 2}
print("real-ct: Dice soft tissue %.3f, bone %.3f; validation best %.3f at iteration %d" % (
    st["soft_tissue"]["dice_mean"], st["bone"]["dice_mean"], v["best_dice"], v["best_iteration"]))
PY

# 4. the same model from a mixed-orientation copy (short runs)
mk "$D/mixed/Dataset501_Cranium" --labels-ts --reorient cranium_s2=LSA --reorient cranium_s3=RAS
short=(--set supervised.iterations=12 --set run.validate=false --set data.patch=[64,64]
       --set model.depth=3 --set run.threads=1 --set run.stages=[\"supervised\"])
"$P" --quiet run "$S/examples/real-ct.toml" --out "$D/run_a" "${short[@]}" \
    --set data.manifest="$D/runs/real-ct-data/Dataset501_Cranium" > "$D/a.log" 2>&1 || { cat "$D/a.log"; fail "run a"; }
"$P" --quiet run "$S/examples/real-ct.toml" --out "$D/run_b" "${short[@]}" \
    --set data.manifest="$D/mixed/Dataset501_Cranium" > "$D/b.log" 2>&1 || { cat "$D/b.log"; fail "run b"; }
"$PY" - "$D" <<'PY' || fail "mixed orientations gave another model"
import os, sys
import h5py
import nibabel as nib
import numpy as np
d = sys.argv[1]
codes = [nib.aff2axcodes(nib.load(os.path.join(d, "mixed/Dataset501_Cranium/imagesTr",
                                               c + "_0000.nii.gz")).affine)
         for c in ("cranium_s0", "cranium_s2", "cranium_s3")]
assert len(set(codes)) == 3, codes  # three orientations really are there
a = h5py.File(os.path.join(d, "run_a/models/supervised_student.h5"), "r")
b = h5py.File(os.path.join(d, "run_b/models/supervised_student.h5"), "r")
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert len(names) > 10, names
for n in names:
    assert np.array_equal(a[n][()], b[n][()]), n
print("mixed orientations %s: the same model (%d arrays equal)" % (codes, len(names)))
PY
# 5. the defaults alone (no plan, no data.labels: dataset.json names the structures): before the
#    random sampler and axial slicing, a baseline with the default patch and sampling trained to a
#    low loss and predicted empty masks (Dice 0.000)
printf '%s\n' '[run]' 'stages = ["supervised", "evaluate"]' 'threads = 2' '[data]' \
    'manifest = "runs/real-ct-data/Dataset501_Cranium"' \
    '[model]' 'classes = 3' '[supervised]' 'modality = "CT"' 'iterations = 300' > "$D/defaults.toml"
"$P" --quiet run "$D/defaults.toml" --out "$D/run_defaults" > "$D/d.log" 2>&1 || { cat "$D/d.log"; fail "defaults run"; }
"$PY" - "$D" <<'PY' || fail "the defaults do not train a useful model on the real CT"
import json, os, sys
s = json.load(open(os.path.join(sys.argv[1], "run_defaults/reports/summary.json")))
st = s["models"][0]["structures"]
assert all(x["cases"] == 2 and x["dice_mean"] > 0.9 for x in st), st
assert [x["name"] for x in st] == ["soft_tissue", "bone"], st  # named by dataset.json
print("defaults, 300 iterations: Dice %s" % ", ".join("%s %.3f" % (x["name"], x["dice_mean"]) for x in st))
PY
echo "real_ct_example: ok"
