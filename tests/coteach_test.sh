#!/usr/bin/env bash
# examples/coteach.toml (issue 19): the pre-run checks of bad configs (exit 2, nothing written)
# and a short run of the whole example: four models evaluated per structure with their parameter
# counts (teacher >= 100x the student), the temperature curve, the report.
# usage: coteach_test.sh PIPELINE SOURCE_DIR
set -u
P="$1"; S="$2"
D="$(mktemp -d "${TMPDIR:-/tmp}/coteach-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cp "$S/examples/coteach.toml" "$D/c.toml"
data=(--set synth.out_dir="$D/data" --set data.manifest="$D/data/manifest.csv")
# fully labelled phantoms: the co-teacher has nothing to learn from
"$P" --quiet synth --kind cardiac --out "$D/full" --cases 8 > /dev/null || fail "synth"
expect() {  # expect WHAT MESSAGE ARGS...: exit 2, the message, no run directory
    local what="$1" want="$2"; shift 2
    "$P" --quiet run "$D/c.toml" --out "$D/bad" "$@" > "$D/err" 2>&1; rc=$?
    [ "$rc" -eq 2 ] || { cat "$D/err"; fail "$what: exit $rc, expected 2"; }
    grep -q -- "$want" "$D/err" || { cat "$D/err"; fail "$what: message lacks '$want'"; }
    [ ! -e "$D/bad" ] || fail "$what: a run directory was created"
}
full=(--set 'run.stages=["coteach_teacher", "coteach", "evaluate"]' --set data.manifest="$D/full/manifest.csv")
expect "no unlabelled rows" "no unlabelled 'MR' rows in split 'train'" "${full[@]}"
expect "no teacher stage" "stage 'coteach' needs stage 'coteach_teacher' before it" \
    --set 'run.stages=["coteach", "evaluate"]' --set data.manifest="$D/full/manifest.csv"
expect "t_start 0" "coteach.t_start" "${full[@]}" --set coteach.w_co=0 --set coteach.t_start=0.0
expect "softmax-MSE with a learnable T" "coteach.temperature" "${full[@]}" --set coteach.w_co=0 \
    --set coteach.kd_loss=softmax_mse
# a student larger than the teacher: a warning, not an error (dry run)
"$P" run "$D/c.toml" --out "$D/dry" "${full[@]}" --set coteach.w_co=0 --set coteach.width=128 \
    --dry-run > "$D/dry.log" 2>&1 || { cat "$D/dry.log"; fail "dry run with a large student"; }
grep -q "is not smaller than the teacher" "$D/dry.log" || { cat "$D/dry.log"; fail "no warning"; }
# the example, short
t0=$(date +%s)
"$P" --quiet run "$D/c.toml" --out "$D/run" "${data[@]}" --set coteach_teacher.iterations=150 \
    --set coteach.iterations=150 > "$D/log" 2>&1 || { cat "$D/log"; fail "run failed"; }
echo "coteach example (150 iterations): $(( $(date +%s) - t0 )) s"
/usr/bin/python3 - "$D/run" <<'PY' || fail "summary"
import csv, json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "reports/summary.json")))
names = [m["name"] for m in s["models"]]
assert names == ["coteach_teacher", "coteach", "coteach_coteacher", "coteach_tiny"], names
p = {m["name"]: m["params"] for m in s["models"]}
assert p["coteach"] == p["coteach_tiny"] == p["coteach_coteacher"], p
assert p["coteach_teacher"] >= 100 * p["coteach"], p
for m in s["models"]:
    assert [x["name"] for x in m["structures"]] == ["RV", "MYO", "LV"], m
assert any(c["a"] == "coteach" and c["b"] == "coteach_tiny" for c in s["comparisons"])
t = list(csv.DictReader(open(os.path.join(d, "models/coteach_temperature.csv"))))
assert len(t) == 150 and abs(float(t[0]["temperature"]) - 15.6212) < 1e-3, t[:2]
assert os.path.exists(os.path.join(d, "reports/report.html"))
print("ok: params teacher %d, student %d (%.0fx); Dice teacher %.3f, student %.3f, tiny %.3f" % (
    p["coteach_teacher"], p["coteach"], p["coteach_teacher"] / p["coteach"],
    s["models"][0]["dice_mean"], s["models"][1]["dice_mean"], s["models"][3]["dice_mean"]))
PY
echo "coteach_cli: ok"
