#!/bin/sh
# Runs the fuzzers of a fuzz build for a bounded time each (make test-fuzz: CI's short run; the
# long runs of docs/reliability.md use the same script with more time).
#   fuzz/run.sh BUILD SECONDS [TARGET...]        (default: every target; BUILD: build-asan, as make fuzz)
# Each target starts from its seeds (fuzz/corpus/T, left untouched) plus the corpus it grew in
# earlier runs in BUILD/fuzz-corpus/T; a crash, sanitizer report, leak, timeout (> 10 s an input)
# or an allocation over 1 GiB fails the run, leaving the input in BUILD/fuzz-artifacts/ and
# printing how to replay it. Prints one line per target: executions, coverage, corpus size.
# FUZZ_RUNS=N stops a target after N executions (SECONDS stays the upper bound).
# FUZZ_SEED=N seeds libFuzzer's mutations (default 1, so that CI's short run tries the same inputs
# as a local run of the same length and a failure there replays here; 0: a new seed each run).
set -u
build=${1:?usage: fuzz/run.sh BUILD SECONDS [TARGET...]}
secs=${2:?usage: fuzz/run.sh BUILD SECONDS [TARGET...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=${*:-"nifti toml tiff manifest dataset_json dicom"}
fail=0
mkdir -p "$build/fuzz-artifacts"
for t in $targets; do
    bin="$build/fuzz/fuzz_$t"
    [ -x "$bin" ] || { echo "fuzz: $bin: not built (make fuzz)" >&2; exit 2; }
    corpus="$build/fuzz-corpus/$t"
    mkdir -p "$corpus"
    log="$build/fuzz-artifacts/$t.log"
    # the first directory receives new inputs; the seeds are only read
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1 \
    LSAN_OPTIONS=suppressions=$here/../tests/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=1024 \
        -print_final_stats=1 -seed="${FUZZ_SEED:-1}" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -artifact_prefix="$build/fuzz-artifacts/$t-" \
        "$corpus" "$here/corpus/$t" > "$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    size=$(ls "$corpus" | wc -l)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*')
    if [ $rc -ne 0 ]; then
        fail=1
        art=$(grep -o "Test unit written to .*" "$log" | sed 's/Test unit written to //' | tail -1)
        echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; log $log"
        grep -E "ERROR: |SUMMARY: |runtime error" "$log" | head -5
        [ -n "$art" ] && echo "  replay: $bin $art"
    else
        echo "fuzz $t: ok, ${execs:-0} executions in ${took:-$secs} s, $cov, corpus $size (+ seeds)"
    fi
done
exit $fail
