#!/usr/bin/env bash
# examples/leuda.toml (issue 20): the pre-run checks of bad configs (exit 2, nothing written) and a
# short run of the whole example: translate, the source-only baseline and LE-UDA, every model
# evaluated on the CT test volumes as fake MR (through the run's translator) and as they are, per
# structure; the fake-MR test images written; an ablation without the intra teacher evaluates no
# intra teacher.
# usage: leuda_test.sh PIPELINE SOURCE_DIR
set -u
P="$1"; S="$2"
D="$(mktemp -d "${TMPDIR:-/tmp}/leuda-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cp "$S/examples/leuda.toml" "$D/c.toml"
data=(--set synth.out_dir="$D/data" --set data.manifest="$D/data/manifest.csv")
"$P" --quiet synth --kind cardiac --out "$D/data" --cases 32 --labelled 0.2 --seed 7 > /dev/null ||
    fail "synth"
expect() {  # expect WHAT MESSAGE ARGS...: exit 2, the message, no run directory
    local what="$1" want="$2"; shift 2
    "$P" --quiet run "$D/c.toml" --out "$D/bad" "$@" > "$D/err" 2>&1; rc=$?
    [ "$rc" -eq 2 ] || { cat "$D/err"; fail "$what: exit $rc, expected 2"; }
    grep -q -- "$want" "$D/err" || { cat "$D/err"; fail "$what: message lacks '$want'"; }
    [ ! -e "$D/bad" ] || fail "$what: a run directory was created"
}
nosynth=(--set 'run.stages=["translate", "leuda_source", "leuda", "evaluate"]' --set data.manifest="$D/data/manifest.csv")
expect "no source rows" "no 'XR' rows in split 'train'" "${nosynth[@]}" \
    --set data.mri_modality=XR
expect "no target rows" "no 'PET' rows in split 'train'" "${nosynth[@]}" --set data.ct_modality=PET
expect "too few labelled source volumes" "asks for 6 labelled 'MR' training volumes, manifest" \
    "${nosynth[@]}" --set leuda.source_volumes=6
expect "no translate stage" "stage 'leuda' needs stage 'translate' before it" \
    --set 'run.stages=["leuda", "evaluate"]' --set data.manifest="$D/data/manifest.csv"
expect "no translate stage (baseline)" "stage 'leuda_source' needs stage 'translate' before it" \
    --set 'run.stages=["leuda_source", "evaluate"]' --set data.manifest="$D/data/manifest.csv"
expect "bad feature name" "leuda.adv_feature" "${nosynth[@]}" --set leuda.adv_feature=dec7
# the example, short
t0=$(date +%s)
"$P" --quiet run "$D/c.toml" --out "$D/run" "${data[@]}" --set translate.iterations=40 \
    --set leuda.iterations=40 > "$D/log" 2>&1 || { cat "$D/log"; fail "run failed"; }
echo "leuda example (40 iterations): $(( $(date +%s) - t0 )) s"
# an ablation on the run's translator: no intra teacher, nothing of it evaluated
"$P" --quiet run "$D/c.toml" --out "$D/wo" --set data.manifest="$D/data/manifest.csv" \
    --set 'run.stages=["leuda", "evaluate"]' --set leuda.translator_model="$D/run/models/translator.h5" \
    --set leuda.iterations=10 --set leuda.wo_source=true > "$D/log2" 2>&1 || { cat "$D/log2"; fail "wo_source run"; }
/usr/bin/python3 - "$D/run" "$D/wo" <<'PY' || fail "summary"
import json, os, sys
d, wo = sys.argv[1], sys.argv[2]
s = json.load(open(os.path.join(d, "reports/summary.json")))
names = [m["name"] for m in s["models"]]
assert names == ["leuda_source", "leuda_source_ct", "leuda", "leuda_ct", "leuda_intra",
                 "leuda_intra_ct", "leuda_inter", "leuda_inter_ct"], names
for m in s["models"]:
    assert [x["name"] for x in m["structures"]] == ["RV", "MYO", "LV"], m
    assert m["cases"] == 6, m
# which images each model segmented: through the run's translator, or as stored
tr = {m["name"]: m["translator"] for m in s["models"]}
assert all(tr[n].endswith("models/leuda_translator.h5") for n in names if not n.endswith("_ct")), tr
assert all(tr[n] is None for n in names if n.endswith("_ct")), tr
md = open(os.path.join(d, "reports/summary.md")).read()
assert "Segmented after translation (G of the translator): leuda_source, leuda, leuda_intra, leuda_inter." in md
html = open(os.path.join(d, "reports/report.html")).read()
assert "on the images translated by G of" in html
# the fake-MR and raw-CT scores of one network differ (different inputs)
dm = {m["name"]: m["dice_mean"] for m in s["models"]}
assert dm["leuda"] != dm["leuda_ct"], dm
# the fake-MR test images, on each CT test volume's grid
pm = sorted(os.listdir(os.path.join(d, "pmri")))
assert len(pm) == 6 and all(p.startswith("cardiac_ct_") for p in pm), pm
import nibabel as nib
ct = nib.load(os.path.join(d, "..", "data", "ct", pm[0]))
fk = nib.load(os.path.join(d, "pmri", pm[0]))
assert ct.shape == fk.shape and abs(ct.affine - fk.affine).max() < 1e-4, (ct.shape, fk.shape)
for f in ("leuda_student.h5", "leuda_intra.h5", "leuda_inter.h5", "leuda_source.h5",
          "leuda_translator.h5"):
    assert os.path.exists(os.path.join(d, "models", f)), f
assert os.path.exists(os.path.join(d, "reports/report.html"))
sw = json.load(open(os.path.join(wo, "reports/summary.json")))
wn = [m["name"] for m in sw["models"]]
assert wn == ["leuda", "leuda_ct", "leuda_inter", "leuda_inter_ct"], wn
assert not os.path.exists(os.path.join(wo, "models", "leuda_intra.h5"))
print("ok: Dice (fake MR / raw CT) source-only %.3f / %.3f, LE-UDA %.3f / %.3f" % (
    dm["leuda_source"], dm["leuda_source_ct"], dm["leuda"], dm["leuda_ct"]))
PY
echo "leuda_cli: ok"
