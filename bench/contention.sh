#!/usr/bin/env bash
# Steadiness on a busy machine (issue 24, item 4): a U-Net mode of unet-bench and of the PyTorch
# peer, each run idle and with a competing busy process (a shell spin loop at nice 19, pinned to
# core 0), in rounds (idle medkd, idle torch, busy medkd, busy torch) so a drift of the machine
# hits both. Prints each round's throughputs and busy / idle, then per engine the medians and the
# median of the rounds' paired busy / idle ratios (the figure to quote: the shared VMs drift by
# 10-20 % from minute to minute, which the pairing cancels).
# The engines run as users run them: unet-bench with OMP_WAIT_POLICY=passive (what `pipeline`
# sets for itself, cli/main.c; MEDKD_ENV="..." runs it with other settings), PyTorch with its
# defaults.
# usage: bench/contention.sh [BUILD_DIR] [MODE] [REPEAT] [THREADS]
set -eu
B="${1:-build}"; MODE="${2:-train3d}"; N="${3:-3}"; T="${4:-2}"
U="$B/unet-bench"
. "$(dirname "$0")/peer_common.sh"
[ -x "$U" ] || { echo "contention: $U not built (make build)" >&2; exit 2; }
[ $have_torch = 1 ] ||
    echo "contention: PyTorch peer not available (apt-get install python3-torch; $PEER): medkd only" >&2
# MEDKD_ENV: the OpenMP settings unet-bench runs with (default: what `pipeline` sets)
MEDKD_ENV="${MEDKD_ENV:-OMP_WAIT_POLICY=passive}"
run_medkd() { env $MEDKD_ENV "$U" --mode "$MODE" --threads "$T" --json | field value; }
run_torch() { "$PY" "$PEER" --mode "$MODE" --threads "$T" --json 2> /dev/null | field value; }
busy_pid=
start_busy() {
    nice -n 19 taskset -c 0 sh -c 'while :; do :; done' &
    busy_pid=$!
    sleep 1
}
stop_busy() { kill "$busy_pid" 2> /dev/null || true; wait "$busy_pid" 2> /dev/null || true; busy_pid=; }
trap stop_busy EXIT
declare -a mi mb ti tb mr tr
for r in $(seq "$N"); do
    mi+=("$(run_medkd)")
    [ $have_torch = 1 ] && ti+=("$(run_torch)")
    start_busy
    mb+=("$(run_medkd)")
    [ $have_torch = 1 ] && tb+=("$(run_torch)")
    stop_busy
    mr+=("$(awk -v a="${mi[-1]}" -v b="${mb[-1]}" 'BEGIN {print b / a}')")
    [ $have_torch = 1 ] && tr+=("$(awk -v a="${ti[-1]}" -v b="${tb[-1]}" 'BEGIN {print b / a}')")
    echo "round $r: medkd idle ${mi[-1]} busy ${mb[-1]} (x${mr[-1]})${ti:+; torch idle ${ti[-1]} busy ${tb[-1]} (x${tr[-1]})}"
done
report() { # report NAME RATIO idle... -- busy...
    local name=$1 ratio=$2; shift 2
    local idle=() busy=() side=idle
    for v in "$@"; do
        if [ "$v" = -- ]; then side=busy; continue; fi
        if [ $side = idle ]; then idle+=("$v"); else busy+=("$v"); fi
    done
    local a b
    a=$(median "${idle[@]}"); b=$(median "${busy[@]}")
    awk -v n="$name" -v a="$a" -v b="$b" -v m="$MODE" -v t="$T" -v r="$ratio" \
        'BEGIN {printf "%s %s, %d threads: idle %.4g, busy %.4g (medians); busy / idle paired by round: median %.2f\n", n, m, t, a, b, r}'
}
report medkd "$(median "${mr[@]}")" "${mi[@]}" -- "${mb[@]}"
[ $have_torch = 1 ] && report torch "$(median "${tr[@]}")" "${ti[@]}" -- "${tb[@]}"
exit 0
