#!/bin/bash
# Pre-run checks that match the run (issue 16, item 5): `run --dry-run` and `validate` make the
# checks `run` makes; a label on another grid, a missing file and a label value present in no
# label file stop a run before its directory exists; `--resume` refuses a changed config or
# manifest (naming what changed, leaving the run directory as it was) unless --force.
set -u
P="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
passes=0
ok() { passes=$((passes + 1)); }
fail() {
    echo "FAIL $*"
    fails=$((fails + 1))
}
check() { # check NAME EXPECTED_RC "fragment" -- command...
    local name="$1" want="$2" frag="$3"
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$name: exit $rc, expected $want; output: $out"
    elif [ -n "$frag" ] && ! grep -qF -- "$frag" <<<"$out"; then
        fail "$name: output lacks '$frag'; output: $out"
    else
        ok
    fi
}
absent() { # absent NAME DIR
    if [ -e "$2" ]; then fail "$1: $2 was written"; else ok; fi
}

"$P" --quiet synth --kind lung --out data --cases 4 --size 32,32,8 || exit 1
# a tiny supervised run on the lung CT (3 labelled train rows, label value 1), scored on val;
# keys that are also program names are quoted ("patch"), which TOML allows and deps_check skips
mk_cfg() { # mk_cfg FILE OUT_DIR [EXTRA_DATA_TOML [EXTRA_MODEL_TOML]]
    cat >"$1" <<TOML
[run]
stages = ["supervised", "evaluate"]
out_dir = "$2"
threads = 1
[data]
manifest = "data/manifest.csv"
"patch" = [32, 32]
${3:-}
[model]
width = 4
depth = 2
${4:-}
[supervised]
modality = "CT"
iterations = 2
batch = 2
[evaluate]
split = "val"
TOML
}
mk_cfg ok.toml run-ok
check "validate ok" 0 "ok.toml: ok" -- "$P" validate ok.toml
check "dry-run ok" 0 "# plan: run directory run-ok" -- "$P" run ok.toml --dry-run
absent "dry-run" run-ok

# --dry-run and validate refuse what run refuses (they used to accept these)
check "dry-run patch [50, 50]" 2 "key 'data.patch': expected multiples of 4" -- \
    "$P" run ok.toml --dry-run --set model.depth=3 --set 'data.patch=[50, 50]'
sed 's/^depth = 2/depth = 3/; s/^"patch" = .*/"patch" = [50, 50]/' ok.toml >patch50.toml
check "validate patch [50, 50]" 2 "patch50.toml:7: key 'data.patch': expected multiples of 4" -- \
    "$P" validate patch50.toml
check "dry-run patch [50, 50] in the file" 2 "patch50.toml:7: key 'data.patch'" -- "$P" run patch50.toml --dry-run
mk_cfg classes.toml run-classes 'labels = {1 = "tumour"}' 'classes = 3'
check "dry-run classes = 3 with one label" 2 "key 'data.labels': names 1 structure but model.classes = 3" -- \
    "$P" run classes.toml --dry-run
check "dry-run classes = 3, no value 2" 2 "model.classes = 3 (class 2 is label value 2): no label file of the 3 labelled CT train rows holds the value 2 (values found: 1)" -- \
    "$P" run ok.toml --dry-run --set model.classes=3
check "run classes = 3, no value 2" 2 "no label file of the 3 labelled CT train rows holds the value 2" -- \
    "$P" run ok.toml --set model.classes=3
absent "classes = 3" run-ok

# the data: found before the run directory is created, naming file, line and field
"$P" --quiet convert data/ct/lung_ct_001_label.nii.gz data/ct/other_grid.nii.gz --spacing 2 \
    --interp nearest || exit 1
sed 's#ct/lung_ct_001_label.nii.gz#ct/other_grid.nii.gz#' data/manifest.csv >data/grid.csv
mk_cfg grid.toml run-grid
sed -i 's#data/manifest.csv#data/grid.csv#' grid.toml
check "label on another grid" 2 "data/grid.csv:3: column label: image and label on different grids" -- "$P" run grid.toml
check "label on another grid, dry-run" 2 "data/grid.csv:3: column label" -- "$P" run grid.toml --dry-run
check "label on another grid, validate" 2 "data/grid.csv:3: column label" -- "$P" validate grid.toml
absent "label on another grid" run-grid
sed 's#ct/lung_ct_002_label.nii.gz#ct/no_such_label.nii.gz#' data/manifest.csv >data/missing.csv
mk_cfg missing.toml run-missing
sed -i 's#data/manifest.csv#data/missing.csv#' missing.toml
check "missing label file" 2 "data/missing.csv:4: column label: expected an existing file" -- "$P" run missing.toml
check "missing label file, validate" 2 "data/missing.csv:4: column label" -- "$P" validate missing.toml
absent "missing label file" run-missing
mk_cfg label5.toml run-label5 'label = 5'
check "data.label = 5 in no label file" 2 "label5.toml:8: data.label = 5: no label file of the 3 labelled CT train rows holds the value 5 (values found: 1)" -- \
    "$P" run label5.toml
check "data.label = 5, dry-run" 2 "data.label = 5: no label file" -- "$P" run label5.toml --dry-run
check "data.label = 5, validate" 2 "data.label = 5: no label file" -- "$P" validate label5.toml
absent "data.label = 5" run-label5
# a patch larger than every training slice along an axis would only ever be padded there
sed 's/^"patch" = .*/"patch" = [64, 32]/; s/run-ok/run-patch64/' ok.toml >patch64.toml
check "patch over every slice" 2 "patch64.toml:7: key 'data.patch': [64, 32] is larger than every training slice" -- \
    "$P" run patch64.toml
check "patch over every slice, size named" 2 "32 x 32 voxels across data.slice_axis" -- "$P" run patch64.toml
check "patch over every slice, dry-run" 2 "is larger than every training slice" -- "$P" run patch64.toml --dry-run
check "patch over every slice, validate" 2 "is larger than every training slice" -- "$P" validate patch64.toml
absent "patch over every slice" run-patch64

# data an earlier stage writes (synth) is checked as soon as it exists, still before training
cat >synth5.toml <<'TOML'
[run]
stages = ["synth", "supervised", "evaluate"]
out_dir = "run-synth5"
threads = 1
[synth]
out_dir = "syn"
cases = 4
"size" = [32, 32, 8]
[data]
manifest = "syn/manifest.csv"
"patch" = [32, 32]
label = 5
[model]
width = 4
depth = 2
[supervised]
modality = "CT"
iterations = 2
[evaluate]
split = "val"
TOML
check "synth data, validate" 0 "synth5.toml: ok" -- "$P" validate synth5.toml
check "synth data, data.label = 5" 2 "data.label = 5: no label file" -- "$P" run synth5.toml
[ -f run-synth5/stages/synth.done ] && ok || fail "synth data: synth did not run first"
absent "synth data: training" run-synth5/models

# --resume compares the config and the manifest with the run's (provenance.json)
check "first run" 0 "" -- "$P" --quiet run ok.toml
grep -q '"config_hash": "fnv1a64:' run-ok/provenance.json && ok || fail "provenance.json lacks config_hash"
grep -q '"manifest_hash": "fnv1a64:' run-ok/provenance.json && ok || fail "provenance.json lacks manifest_hash"
check "resume unchanged" 0 "" -- "$P" --quiet run ok.toml --resume
check "resume, other threads" 0 "" -- "$P" --quiet run ok.toml --resume --threads 2
cp run-ok/config.resolved.toml resolved.before
cp run-ok/run.json run.before
sed -i 's/^iterations = 2/iterations = 3/' ok.toml
check "resume, config edited" 2 "--resume: the config differs from the run's (key supervised.iterations: 2 -> 3); use --force to resume anyway" -- \
    "$P" run ok.toml --resume
check "resume, config edited, dry-run" 2 "key supervised.iterations: 2 -> 3" -- "$P" run ok.toml --resume --dry-run
cmp -s resolved.before run-ok/config.resolved.toml && ok || fail "a refused resume rewrote config.resolved.toml"
cmp -s run.before run-ok/run.json && ok || fail "a refused resume rewrote run.json"
check "--force without --resume" 2 "--force is only meaningful with --resume" -- "$P" run ok.toml --force
sed -i 's/^iterations = 3/iterations = 2/' ok.toml
cp data/manifest.csv manifest.before
sed -i 's/^\(lung_mr_003,.*\),mr$/\1,mr2/' data/manifest.csv
check "resume, manifest edited" 2 "--resume: the manifest differs from the run's (data.manifest data/manifest.csv" -- \
    "$P" run ok.toml --resume
cmp -s resolved.before run-ok/config.resolved.toml && ok || fail "a refused resume rewrote config.resolved.toml"
sed -i 's/^iterations = 2/iterations = 3/' ok.toml
check "resume --force" 0 "--resume --force: the config differs from the run's (key supervised.iterations: 2 -> 3) and the manifest differs" -- \
    "$P" run ok.toml --resume --force
grep -q '"forced": true' run-ok/run.json && ok || fail "run.json does not record the forced resume"
grep -q '"what": "the config differs from the run.s (key supervised.iterations: 2 -> 3)' run-ok/provenance.json &&
    ok || fail "provenance.json does not record the forced resume"
grep -q 'warning --resume --force' run-ok/log.txt && ok || fail "log.txt does not record the forced resume"
check "resume after --force" 0 "" -- "$P" --quiet run ok.toml --resume
grep -c '"time": ' run-ok/provenance.json | grep -qx 1 && ok || fail "provenance.json lost or doubled the forced resume"

# --resume on a folder that holds something other than a run: refused, nothing written there
mkdir -p notarun && echo "keep me" > notarun/notes.txt
check "resume, not a run directory" 2 "--resume: 'notarun' is not a run directory (no config.resolved.toml) and is not empty" -- \
    "$P" run ok.toml --resume --out notarun
[ "$(ls notarun)" = "notes.txt" ] && ok || fail "a refused resume wrote into notarun: $(ls notarun)"
# an empty folder is a new run
mkdir -p emptydir
check "resume, empty directory" 0 "" -- "$P" --quiet run ok.toml --resume --out emptydir --dry-run
# a stage listed twice
check "duplicated stage" 2 "is already listed at [0] (a stage runs once per run)" -- \
    "$P" run ok.toml --out dup --set 'run.stages=["supervised", "supervised", "evaluate"]'
absent "duplicated stage" dup

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
