#!/bin/bash
# `pipeline run --resume` after SIGKILL mid-training finishes with the same weights and the same
# metrics as an uninterrupted run with the same seed and threads (issue: main job).
set -u
P="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
"$P" --quiet synth --kind lung --out data --cases 5 --size 48,48,12 --seed 3 || exit 1
mk_cfg() { # mk_cfg NAME
    cat >"$1.toml" <<TOML
[run]
stages = ["cmedl", "evaluate"]
out_dir = "$1"
seed = 5
threads = 1
checkpoint_every = 10
[data]
manifest = "data/manifest.csv"
[translate]
iterations = 0
gen_width = 8
disc_width = 8
[cmedl]
iterations = 80
ema = 0.9
[evaluate]
largest_component = true
teacher_on_pmri = true
write_pmri = true
TOML
}
mk_cfg straight
mk_cfg killed
"$P" --quiet run straight.toml || { echo "FAIL: uninterrupted run failed"; exit 1; }

"$P" --quiet run killed.toml &
pid=$!
# wait for the first checkpoint (iteration 10), then kill -9 mid-training
for _ in $(seq 1 600); do
    if [ -f killed/checkpoints/cmedl.h5 ]; then
        sleep 0.5
        break
    fi
    sleep 0.1
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -f killed/stages/cmedl.done ]; then
    echo "FAIL: the run finished before it could be killed (make cmedl.iterations larger)"
    exit 1
fi
[ -f killed/checkpoints/cmedl.h5 ] || { echo "FAIL: no checkpoint before the kill"; exit 1; }
"$P" --quiet run killed.toml --resume || { echo "FAIL: --resume failed"; exit 1; }

fails=0
for m in cmedl_student cmedl_teacher; do
    if ! h5diff -q "straight/models/$m.h5" "killed/models/$m.h5"; then
        echo "FAIL: models/$m.h5 differs between the uninterrupted and the resumed run"
        fails=$((fails + 1))
    fi
done
# the metrics of the two runs agree (the provenance lines with times differ, so compare columns)
for r in cmedl pmri_teacher; do
    if ! diff <(cut -d, -f1,4- "straight/reports/$r.csv" | sed 's#straight/##g') \
              <(cut -d, -f1,4- "killed/reports/$r.csv" | sed 's#killed/##g') >/dev/null; then
        echo "FAIL: reports/$r.csv differs (or is missing)"
        diff <(cut -d, -f1,4- "straight/reports/$r.csv") <(cut -d, -f1,4- "killed/reports/$r.csv") | head
        fails=$((fails + 1))
    fi
done
# the pseudo-MRI volumes written by evaluate agree voxel for voxel
for f in straight/pmri/*.nii.gz; do
    if ! cmp -s <(gzip -dc "$f") <(gzip -dc "killed/pmri/$(basename "$f")"); then
        echo "FAIL: $f differs from the resumed run's (or is missing)"
        fails=$((fails + 1))
        break
    fi
done
ls straight/pmri/*.nii.gz >/dev/null 2>&1 || { echo "FAIL: no pmri/*.nii.gz written"; fails=$((fails + 1)); }
grep -q '"window_blend": "gaussian"' killed/reports/summary.json || { echo "FAIL: summary.json does not record the window blending"; fails=$((fails + 1)); }
grep -q '"largest_component": true' killed/reports/summary.json || { echo "FAIL: summary.json does not record the post-processing"; fails=$((fails + 1)); }
grep -q "already complete\|resum" killed/log.txt || { echo "FAIL: log.txt does not mention the resume"; fails=$((fails + 1)); }
echo "$((9 - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
