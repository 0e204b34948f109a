#!/bin/bash
# CLI behaviour of `pipeline`: exit codes (0 ok, 1 runtime, 2 usage/config), messages naming
# file:line, --help on every verb, and nothing written for a bad config.
set -u
P="$1"
SRC="$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
passes=0
check() { # check NAME EXPECTED_RC "fragment" -- command...
    local name="$1" want="$2" frag="$3"
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL $name: exit $rc, expected $want; output: $out"
        fails=$((fails + 1))
    elif [ -n "$frag" ] && ! grep -qF -- "$frag" <<<"$out"; then
        echo "FAIL $name: output lacks '$frag'; output: $out"
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
}

check "no args" 2 "usage: pipeline" -- "$P"
check "help" 0 "Verbs:" -- "$P" help
check "--help" 0 "Exit codes: 0 success, 1 runtime failure" -- "$P" --help
check "unknown verb" 2 "unknown verb 'frobnicate'" -- "$P" frobnicate
check "help unknown verb" 2 "unknown verb 'nope'" -- "$P" help nope
check "version" 0 "medkd" -- "$P" version
check "version extra arg" 2 "takes no arguments" -- "$P" version x
# every verb in the table answers --help with its usage line
for v in $("$P" help | awk '/^Verbs:/{f=1;next} f&&/^  [a-z]/{print $1}'); do
    check "$v --help" 0 "usage: pipeline $v" -- "$P" "$v" --help
    check "help $v" 0 "usage: pipeline $v" -- "$P" help "$v"
done
check "validate no file" 2 "expected a CONFIG" -- "$P" validate
check "validate missing" 2 "$T/none.toml: config file does not exist" -- "$P" validate "$T/none.toml"
check "validate unknown option" 2 "unknown option '--frob'" -- "$P" validate --frob x.toml

printf 'id,modality,image,label,split,domain\n' >"$T/m.csv"
cat >"$T/typo.toml" <<'TOML'
[run]
stages = ["evaluate"]
out_dir = "out"
sede = 4
[data]
manifest = "m.csv"
TOML
check "misspelt key" 2 "$T/typo.toml:4: unknown key 'sede' in [run] (did you mean 'seed'?)" -- "$P" validate "$T/typo.toml"
check "run misspelt key" 2 "did you mean 'seed'?" -- "$P" run "$T/typo.toml"
if [ -e "$T/out" ]; then
    echo "FAIL bad config wrote its run directory"
    fails=$((fails + 1))
else
    passes=$((passes + 1))
fi
printf '[run\n' >"$T/syntax.toml"
check "toml syntax error" 2 "$T/syntax.toml:1:" -- "$P" validate "$T/syntax.toml"
# a config that passes every pre-run check (--dry-run runs them all): its data comes from synth
cat >"$T/ok.toml" <<'TOML'
[run]
stages = ["synth", "supervised", "evaluate"]
[synth]
kind = "cardiac"
out_dir = "syn"
[data]
manifest = "syn/manifest.csv"
TOML
check "explain" 0 "[evaluate]" -- "$P" validate --explain
check "run bad seed override" 2 "run.seed" -- "$P" run "$T/ok.toml" --seed abc
check "run bad threads override" 2 "[0, 256]" -- "$P" run "$T/ok.toml" --threads 999
check "run --set" 0 "tolerance_mm = 0.3" -- "$P" run "$T/ok.toml" --dry-run --set evaluate.tolerance_mm=0.3
check "run --set bare string" 0 'split = "val"' -- "$P" run "$T/ok.toml" --dry-run --set evaluate.split=val
check "run --set list" 0 'patch = [32, 32]' -- "$P" run "$T/ok.toml" --dry-run --set 'data.patch=[32, 32]'
check "run --set unknown key" 2 "unknown config key 'cmedl.lambda_hnt'" -- "$P" run "$T/ok.toml" --set cmedl.lambda_hnt=1
check "run --set wrong type" 2 "cmedl.lambda_hint" -- "$P" run "$T/ok.toml" --set cmedl.lambda_hint=abc
check "run --set out of range" 2 "cmedl.lambda_hint" -- "$P" run "$T/ok.toml" --set cmedl.lambda_hint=-1
check "run --set no =" 2 "expected SECTION.KEY=VALUE" -- "$P" run "$T/ok.toml" --set cmedl.lambda_hint
check "log-json error" 2 '"level":"error"' -- "$P" --log-json validate "$T/typo.toml"

# stage checks stop a run before training, and before anything is written
mkdir -p "$T/d"
for f in ct1 ct2 mr1 lab1 lab2; do : >"$T/d/$f.nii.gz"; done
cat >"$T/d/manifest.csv" <<'CSV'
id,modality,image,label,split,domain
c1,CT,ct1.nii.gz,lab1.nii.gz,train,ct
c2,CT,ct2.nii.gz,lab2.nii.gz,test,ct
m1,MR,mr1.nii.gz,,train,mr
CSV
stage_cfg() { # stage_cfg FILE EXTRA_TOML
    printf '[run]\nstages = ["cmedl", "baseline", "evaluate"]\nout_dir = "run-%s"\n[data]\nmanifest = "d/manifest.csv"\n%b' "$(basename "$1" .toml)" "$2" >"$1"
}
stage_cfg "$T/hint.toml" '[cmedl]\nhint_layers = ["dec_last", "decoder9"]\n'
check "unknown hint layer" 2 "decoder9" -- "$P" run "$T/hint.toml"
check "hint layer lists valid names" 2 "dec_last" -- "$P" validate "$T/hint.toml"
stage_cfg "$T/split.toml" '[evaluate]\nsplit = "val"\n'
check "split with no cases" 2 "no labelled 'CT' rows in split 'val'" -- "$P" run "$T/split.toml"
# input paths are checked after --set: an override can point a missing manifest elsewhere
printf '[run]\nstages = ["supervised"]\nout_dir = "run-moved"\n[data]\nmanifest = "moved/manifest.csv"\n' >"$T/moved.toml"
check "missing manifest" 2 "moved.toml:5: key 'data.manifest': file or folder" -- "$P" run "$T/moved.toml" --dry-run
out=$("$P" run "$T/moved.toml" --dry-run --set data.manifest="$T/d/manifest.csv" 2>&1)
if grep -qF "does not exist (paths are relative" <<<"$out"; then
    echo "FAIL --set manifest: the file's own missing path was checked before the override: $out"
    fails=$((fails + 1))
fi
stage_cfg "$T/modality.toml" 'mri_modality = "T2"\n'
check "modality missing from manifest" 2 "no 'T2' rows in split 'train'" -- "$P" run "$T/modality.toml"
stage_cfg "$T/oracle.toml" '[cmedl]\noracle_pmri = true\n'
check "oracle without a paired column" 2 "oracle.toml:7: key 'cmedl.oracle_pmri': stage cmedl: manifest $T/d/manifest.csv has no column 'paired_mr'" -- "$P" run "$T/oracle.toml"
stage_cfg "$T/oraclef.toml" '[cmedl]\noracle_pmri = true\nteacher_learns_pmri = false\n'
check "oracle with a frozen teacher" 2 "needs cmedl.teacher_learns_pmri = true" -- "$P" validate "$T/oraclef.toml"
printf '[run]\nstages = ["evaluate"]\n[data]\nmanifest = "d/manifest.csv"\n' >"$T/evalonly.toml"
check "evaluate without training" 2 "'evaluate' needs a training stage before it" -- "$P" validate "$T/evalonly.toml"
# multi-class keys: data.labels must name model.classes - 1 structures, classes >= 2
stage_cfg "$T/labels.toml" 'labels = {1 = "RV", 2 = "MYO", 3 = "LV"}\n[model]\nclasses = 3\n'
check "labels beyond model.classes" 2 "labels.toml:6: key 'data.labels': names 3 structures but model.classes = 3 segments 2" -- "$P" run "$T/labels.toml"
stage_cfg "$T/classes.toml" '[model]\nclasses = 1\n'
check "classes below 2" 2 "classes.toml:7: key 'model.classes': expected an integer in [2, 16], got 1" -- "$P" run "$T/classes.toml"
stage_cfg "$T/labelname.toml" 'labels = {1 = "RV", two = "MYO"}\n'
check "label value not an integer" 2 "labelname.toml:6: key 'data.labels': label 'two': expected an integer label value" -- "$P" validate "$T/labelname.toml"
for r in hint split modality oracle oraclef labels classes labelname; do
    if [ -e "$T/run-$r" ]; then
        echo "FAIL $r: a run directory was written for a config that failed its checks"
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
done

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
