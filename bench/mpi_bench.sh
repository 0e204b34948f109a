#!/usr/bin/env bash
# Data-parallel training on one machine (issue 22): throughput of a training stage as 1 rank x T
# threads against R ranks x 1 thread (mpirun), the same global batch, in turns (A B A B ...) so
# that a drift of the machine's speed hits both. Two workloads:
#   demo  the CMEDL demo's cmedl stage (translator + teacher + student, batch 4 of 48 x 48 slices,
#         U-Nets of width 8; the iterations of examples/cmedl.toml scaled down)
#   wide  supervised training of a wider U-Net (width 16, depth 4) on batches of 8 x 128 x 128
# For each: iterations per second (median of REPEAT runs; 1 rank x 1 thread as well), the ratios, and what the
# ranks exchanged per iteration (collectives, MB received by a rank: the run's own log line).
# usage: bench/mpi_bench.sh [BUILD_DIR] [REPEAT] [RANKS]
set -eu
B="${1:-build}"; N="${2:-3}"; R="${3:-2}"
P="$(cd "$(dirname "$B/pipeline")" && pwd)/pipeline"
T=$(nproc)
D="$(mktemp -d "${TMPDIR:-/tmp}/mpi-bench-XXXXXX")"
trap 'rm -rf "$D"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
cd "$D"
"$P" --quiet synth --kind lung --out data --cases 30 --size 64,64,24 --seed 7 > /dev/null
"$P" --quiet synth --kind lung --out wide --cases 12 --size 128,128,16 --seed 7 > /dev/null

cfg() { # cfg NAME WORKLOAD THREADS
    if [ "$2" = demo ]; then
        cat > "$1.toml" << TOML
[run]
stages = ["cmedl"]
out_dir = "$1"
threads = $3
checkpoint_every = 100000
log_every = 100000
validate = false
[data]
manifest = "data/manifest.csv"
patch = [48, 48]
[model]
width = 8
depth = 3
[translate]
iterations = 0
[cmedl]
iterations = 150
batch = 4
TOML
    else
        cat > "$1.toml" << TOML
[run]
stages = ["supervised"]
out_dir = "$1"
threads = $3
checkpoint_every = 100000
log_every = 100000
validate = false
[data]
manifest = "wide/manifest.csv"
patch = [128, 128]
[model]
width = 16
depth = 4
[supervised]
iterations = 12
batch = 8
modality = "CT"
TOML
    fi
}

rate() { # rate LOG: iterations per second of the run's summary line
    sed -n 's/.* iterations in [0-9.]* s (\([0-9.]*\) it\/s.*/\1/p' "$1" | tail -1
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

for w in demo wide; do
    one=""; single=""; many=""; traffic=""
    for i in $(seq 1 "$N"); do
        cfg "a$w$i" "$w" "$T"
        "$P" run "a$w$i.toml" > "a$w$i.log" 2>&1 || { cat "a$w$i.log"; exit 1; }
        one="$one $(rate "a$w$i.log")"
        cfg "b$w$i" "$w" 1
        mpirun -n "$R" --oversubscribe --bind-to none "$P" run "b$w$i.toml" > "b$w$i.log" 2>&1 ||
            { cat "b$w$i.log"; exit 1; }
        many="$many $(rate "b$w$i.log")"
        traffic=$(sed -n 's/.*data-parallel over [0-9]* ranks: \(.*\)/\1/p' "b$w$i.log" | tail -1)
        cfg "c$w$i" "$w" 1
        "$P" run "c$w$i.toml" > "c$w$i.log" 2>&1 || { cat "c$w$i.log"; exit 1; }
        single="$single $(rate "c$w$i.log")"
    done
    m1=$(echo "$one" | median); mr=$(echo "$many" | median); ms=$(echo "$single" | median)
    printf '%-5s 1 rank x %d threads: %s it/s (runs:%s)\n' "$w" "$T" "$m1" "$one"
    printf '%-5s %d ranks x 1 thread:  %s it/s (runs:%s)\n' "$w" "$R" "$mr" "$many"
    printf '%-5s 1 rank x 1 thread:   %s it/s (runs:%s)\n' "$w" "$ms" "$single"
    printf '%-5s %d ranks x 1 thread against 1 rank x %d threads: %.3f; against 1 rank x 1 thread: %.3f\n' \
        "$w" "$R" "$T" "$(echo "$mr $m1" | awk '{print $1 / $2}')" "$(echo "$mr $ms" | awk '{print $1 / $2}')"
    printf '%-5s exchanged: %s\n' "$w" "$traffic"
done
