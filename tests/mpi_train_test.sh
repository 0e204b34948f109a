#!/usr/bin/env bash
# MPI data-parallel training (issue 22): `mpirun -n P pipeline run` splits every batch over the
# ranks and trains the same models as one process, bit for bit.
#   1. the CMEDL demo's stages (translate, cmedl, baseline, evaluate) on small lung phantoms with a
#      global batch of 3: one process (2 threads) against mpirun with P = 1, 2 (2 + 1) and 3
#      (1 + 1 + 1), after 1 and after 10 iterations: every model and every checkpoint (weights,
#      Adam moments, batch-norm statistics, RNG states) equal (h5diff, no tolerance);
#   2. a negative control: another seed gives other weights (the comparison can fail);
#   3. a rank killed (SIGKILL) mid-training stops the whole job (no hang) with a message, and
#      `--resume` under mpirun continues from rank 0's last checkpoint to the uninterrupted
#      single-process models;
#   1b. the same for every other training method: coteach (global and instance-wise CTKD
#      temperature), leuda, the four histology methods (dropout on) and cmedl's tumour term;
#   4. a batch smaller than the ranks stops the job with a message.
# Open MPI's root flags are set here (CI runs as root); --oversubscribe lets 3 ranks share 2 cores.
#   0. the same binary built without MPI (pipeline-nompi: the same engine objects, the
#      one-process world) trains the same models as the MPI build run without a launcher and as
#      mpirun -n 1.
# usage: mpi_train_test.sh PIPELINE [PIPELINE_WITHOUT_MPI]
set -u
P="$1"; PN="${2:-}"
D="$(mktemp -d "${TMPDIR:-/tmp}/mpi-train-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v mpirun > /dev/null || fail "mpirun not found (openmpi-bin: make deps)"
"$P" version | grep -q "^  mpi       Open MPI" || fail "this pipeline was built without MPI"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1
MPI=(mpirun --oversubscribe --bind-to none)
cd "$D" || exit 1
"$P" --quiet synth --kind lung --out data --cases 6 --size 48,48,12 --seed 3 > synth.log 2>&1 ||
    { cat synth.log; fail "synth"; }

mk_cfg() { # mk_cfg NAME ITERATIONS THREADS SEED [STAGES]
    local stages='["translate", "cmedl", "baseline", "evaluate"]'
    [ $# -ge 5 ] && stages="$5"
    cat > "$1.toml" << TOML
[run]
stages = $stages
out_dir = "$1"
seed = $4
threads = $3
checkpoint_every = 5
[data]
manifest = "data/manifest.csv"
[translate]
iterations = $2
batch = 3
[cmedl]
iterations = $2
batch = 3
ema = 0.9
[evaluate]
largest_component = true
TOML
}

same_models() { # same_models A B [MIN]: every model and checkpoint of run A equals run B's
    local n=0 f b
    for f in "$1"/models/*.h5 "$1"/checkpoints/*.h5; do
        b="${f#"$1"/}"
        [ -f "$2/$b" ] || { echo "  $2/$b missing"; return 1; }
        h5diff -q "$f" "$2/$b" > /dev/null || { echo "  $b differs"; return 1; }
        n=$((n + 1))
    done
    [ "$n" -ge "${3:-10}" ] || { echo "  only $n files compared"; return 1; }
    echo "  $n model and checkpoint files equal"
}

# 1. one process against P = 1, 2, 3
for it in 1 10; do
    mk_cfg "one$it" "$it" 2 5
    "$P" --quiet run "one$it.toml" > "one$it.log" 2>&1 || { cat "one$it.log"; fail "one process, $it iterations"; }
    for n in 1 2 3; do
        mk_cfg "mpi${n}_$it" "$it" 1 5
        "${MPI[@]}" -n "$n" "$P" --quiet run "mpi${n}_$it.toml" > "mpi${n}_$it.log" 2>&1 ||
            { cat "mpi${n}_$it.log"; fail "mpirun -n $n run, $it iterations"; }
        echo "mpirun -n $n, $it iteration(s) (batch of 3 split $( [ $n = 2 ] && echo 2+1 || { [ $n = 3 ] && echo 1+1+1 || echo 3; } )):"
        same_models "one$it" "mpi${n}_$it" || fail "mpirun -n $n, $it iterations: not the single process's models"
        [ -f "mpi${n}_$it/stages/evaluate.done" ] && [ -n "$(ls "mpi${n}_$it"/reports 2> /dev/null)" ] ||
            fail "mpirun -n $n: evaluate did not run (no reports)"
    done
done

# 1b. the other segmentation methods: ACT-Net co-teaching (teacher, student with the CTKD
# temperature, global and instance-wise; the co-teacher on noisy copies) and LE-UDA (translator,
# source model, self-ensembling teachers on noisy copies, augmentation, adversarial alignment), on
# small cardiac phantoms: batches of 3 labelled and 3 unlabelled slices
"$P" --quiet synth --kind cardiac --out cdata --cases 12 --labelled 0.5 --seed 7 > csynth.log 2>&1 ||
    { cat csynth.log; fail "synth cardiac"; }
E="$(dirname "$0")/../examples"
[ -f "$E/coteach.toml" ] || E="$(cd "$(dirname "$P")/../examples" 2> /dev/null && pwd)"
CO=(--set 'run.stages=["coteach_teacher", "coteach", "coteach_tiny"]' --set 'data.manifest="cdata/manifest.csv"'
    --set coteach_teacher.width=8 --set coteach_teacher.depth=3 --set coteach_teacher.iterations=4
    --set coteach_teacher.batch=3 --set coteach.iterations=4 --set coteach.batch=3
    --set coteach.unlabelled_batch=3 --set run.checkpoint_every=2)
LE=(--set 'run.stages=["translate", "leuda_source", "leuda"]' --set 'data.manifest="cdata/manifest.csv"'
    --set translate.iterations=3 --set translate.batch=3 --set leuda.iterations=6 --set leuda.batch=3
    --set leuda.unlabelled_batch=3 --set leuda.source_volumes=2 --set leuda.warmup=0.0
    --set run.checkpoint_every=3)
# histology: the patch classifier with dropout, KD with CTKD's temperature, the conditional GAN
# with selective augmentation, the meta curriculum (batches of 6 patches)
HI=(--set 'synth.out_dir="hdata"' --set 'data.manifest="hdata/manifest.csv"'
    --set 'run.stages=["synth", "histo_cls", "histo_kd", "histo_synth", "histo_meta"]'
    --set histo.iterations=4 --set histo.batch=6 --set histo.dropout=0.3
    --set histo_synth.gan_iterations=3 --set histo_synth.candidates_per_class=8
    --set 'histo_kd.temperature="global"' --set run.checkpoint_every=2)
# cmedl's tumour-contrast term (its weight counts the whole batch's tumour voxels)
TU=(--set 'run.stages=["translate", "cmedl"]' --set cmedl.lambda_tumour_i2i=0.1)
for m in coteach-global coteach-instance leuda histo cmedl-tumour; do
    case $m in
        coteach-global) cfg="$E/coteach.toml"; args=("${CO[@]}") ;;
        coteach-instance) cfg="$E/coteach.toml"; args=("${CO[@]}" --set 'coteach.temperature="instance"') ;;
        leuda) cfg="$E/leuda.toml"; args=("${LE[@]}") ;;
        histo) cfg="$E/histo.toml"; args=("${HI[@]}") ;;
        cmedl-tumour) cfg="mpi1_10.toml"; args=("${TU[@]}") ;;
    esac
    "$P" --quiet run "$cfg" --out "$D/$m-1" --threads 2 "${args[@]}" > "$m-1.log" 2>&1 ||
        { cat "$m-1.log"; fail "$m as one process"; }
    for n in 2 3; do
        "${MPI[@]}" -n $n "$P" --quiet run "$cfg" --out "$D/$m-mpi$n" --threads 1 "${args[@]}" > "$m-mpi$n.log" 2>&1 ||
            { cat "$m-mpi$n.log"; fail "$m under mpirun -n $n"; }
        echo "$m, mpirun -n $n:"
        same_models "$m-1" "$m-mpi$n" 5 || fail "$m, mpirun -n $n: not the single process's models"
    done
    if [ "${m%-*}" = coteach ]; then
        cmp -s "$m-1/models/coteach_temperature.csv" "$m-mpi3/models/coteach_temperature.csv" ||
            fail "$m: the temperature curve differs under mpirun -n 3"
    fi
done

# 0. the build without MPI
if [ -n "$PN" ]; then
    "$PN" version | grep -q "^  mpi       not built in" || fail "$PN is built with MPI"
    "$PN" --quiet run one10.toml --out nompi10 > nompi10.log 2>&1 || { cat nompi10.log; fail "the build without MPI"; }
    echo "the build without MPI against the MPI build (one process):"
    same_models one10 nompi10 || fail "the build without MPI trains other models"
    echo "the build without MPI against mpirun -n 1:"
    same_models nompi10 mpi1_10 || fail "mpirun -n 1 trains other models than the build without MPI"
fi

# 2. the comparison can fail: another seed
mk_cfg other 10 1 6
"${MPI[@]}" -n 2 "$P" --quiet run other.toml > other.log 2>&1 || { cat other.log; fail "seed 6"; }
if same_models one10 other > /dev/null; then fail "seed 6 gave seed 5's models: the comparison cannot fail"; fi
echo "negative control: another seed gives other models"

# 3. a rank killed mid-training; --resume under MPI
mk_cfg straight 40 2 5 '["translate", "cmedl"]'
"$P" --quiet run straight.toml > straight.log 2>&1 || { cat straight.log; fail "uninterrupted run"; }
mk_cfg killed 40 1 5 '["translate", "cmedl"]'
"${MPI[@]}" -n 2 "$P" --quiet run killed.toml > killed.log 2>&1 &
mp=$!
victim=""
for _ in $(seq 1 600); do
    if [ -f killed/checkpoints/cmedl.h5 ]; then
        for d in /proc/[0-9]*; do # rank 1 of the job: its command line and Open MPI's rank
            tr '\0' ' ' < "$d/cmdline" 2> /dev/null | grep -q "^$P --quiet run killed.toml" || continue
            tr '\0' '\n' < "$d/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=${d#/proc/}
        done
        [ -n "$victim" ] && break
    fi
    sleep 0.1
done
[ -n "$victim" ] || { kill "$mp"; fail "no rank 1 found after the first cmedl checkpoint"; }
kill -9 "$victim"
t0=$(date +%s)
for _ in $(seq 1 600); do kill -0 "$mp" 2> /dev/null || break; sleep 0.1; done
if kill -0 "$mp" 2> /dev/null; then kill -9 "$mp"; fail "the job still ran 60 s after rank 1 was killed (a hang)"; fi
wait "$mp"
rc=$?
echo "rank 1 killed: mpirun exited with $rc after $(($(date +%s) - t0)) s"
[ "$rc" -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
grep -q "process rank 1 .* exited on signal 9" killed.log || { cat killed.log; fail "no message naming the killed rank"; }
[ ! -f killed/stages/cmedl.done ] || fail "cmedl finished before the kill (make its iterations larger)"
grep "exited on signal" killed.log
"${MPI[@]}" -n 2 "$P" --quiet run killed.toml --resume > resume.log 2>&1 || { cat resume.log; fail "--resume under mpirun"; }
grep -q "resuming from" killed/log.txt || fail "the resumed run did not resume from a checkpoint"
echo "--resume under mpirun -n 2:"
same_models straight killed 7 || fail "the resumed models differ from the uninterrupted run's"

# 4. a batch smaller than the ranks
mk_cfg small 2 1 5 '["translate"]'
sed -i 's/^batch = 3/batch = 2/' small.toml
timeout 60 "${MPI[@]}" -n 3 "$P" --quiet run small.toml --out small_run > small.log 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "small.toml:[0-9]*: key 'translate.batch': stage 'translate' splits a batch of 2 over 3 MPI ranks" small.log ||
    { cat small.log; fail "batch 2 on 3 ranks: rc $rc, expected a refusal (2) with the key"; }
[ ! -e small_run ] || fail "batch 2 on 3 ranks: the refused run created its directory"
echo "a batch smaller than the ranks: refused before the run directory, naming the key"
echo "PASS"
