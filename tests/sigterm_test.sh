#!/bin/bash
# SIGTERM arriving inside one long training iteration (a batch of 384 64x64 slices, seconds per
# iteration) is acted on within one op, not at the end of the iteration (issue 23, D8): the run
# stops well inside that iteration's time, exit 1 naming the iteration and the checkpoint it
# keeps, the checkpoint of the last whole iteration untouched, and --resume then ends with the
# same weights as an uninterrupted run.
set -u
P="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
"$P" --quiet synth --kind lung --out data --cases 4 --size 64,64,8 --seed 3 || exit 1
mk_cfg() { # mk_cfg NAME
    cat >"$1.toml" <<TOML
[run]
stages = ["supervised"]
out_dir = "$1"
seed = 5
threads = 1
checkpoint_every = 1
[data]
manifest = "data/manifest.csv"
"patch" = [64, 64]
[supervised]
iterations = 4
batch = 384
TOML
}
mk_cfg straight
mk_cfg stopped
now_ms() { date +%s%3N; }
t0=$(now_ms)
"$P" --quiet run straight.toml || { echo "FAIL: uninterrupted run failed"; exit 1; }
per_iter=$(( ($(now_ms) - t0) / 4 ))

"$P" run stopped.toml > stopped.log 2>&1 &
pid=$!
# the first checkpoint is written at the end of iteration 1; then stop inside iteration 2
for _ in $(seq 1 1200); do
    [ -f stopped/checkpoints/supervised.h5 ] && break
    sleep 0.05
done
[ -f stopped/checkpoints/supervised.h5 ] || { echo "FAIL: no checkpoint after iteration 1"; exit 1; }
sleep 0.2
sum1=$(md5sum stopped/checkpoints/supervised.h5)
t1=$(now_ms)
kill -TERM "$pid"
wait "$pid"
rc=$?
latency=$(( $(now_ms) - t1 ))
cat stopped.log | tail -3
fails=0
[ "$rc" -eq 1 ] || { echo "FAIL: exit $rc after SIGTERM, expected 1"; fails=$((fails + 1)); }
grep -q "interrupted inside iteration 2/4; the checkpoint of iteration 1" stopped.log ||
    { echo "FAIL: the message does not name the iteration and the kept checkpoint"; fails=$((fails + 1)); }
# an iteration takes $per_iter ms here; stopping at its end would take the rest of it
echo "one iteration: $per_iter ms; stopped $latency ms after SIGTERM"
if [ "$latency" -ge $((per_iter / 2)) ]; then
    echo "FAIL: SIGTERM took $latency ms, half an iteration is $((per_iter / 2)) ms"
    fails=$((fails + 1))
fi
[ "$(md5sum stopped/checkpoints/supervised.h5)" = "$sum1" ] ||
    { echo "FAIL: the checkpoint changed after a stop inside an iteration"; fails=$((fails + 1)); }
[ -f stopped/stages/supervised.done ] && { echo "FAIL: the stage is marked done"; fails=$((fails + 1)); }
"$P" --quiet run stopped.toml --resume || { echo "FAIL: --resume failed"; exit 1; }
for m in supervised_student supervised_student_best; do
    if ! h5diff -q "straight/models/$m.h5" "stopped/models/$m.h5"; then
        echo "FAIL: models/$m.h5 differs between the uninterrupted and the resumed run"
        fails=$((fails + 1))
    fi
done
[ $fails -eq 0 ] && echo "sigterm inside an iteration: ok"
exit $fails
