#!/usr/bin/env bash
# The U-Net modes against the PyTorch peer in one run (issue 24): for each mode, unet-bench and
# ../shared/peers/torch_unet.py in turns, REPEAT times each, the same threads; prints every
# figure, the medians, medkd / torch, and the train2d conv GFLOP/s. Bracketed by fma-peak.
# unet-bench runs with OMP_WAIT_POLICY=passive, as `pipeline` runs itself (cli/main.c).
# usage: bench/peer_ratios.sh [BUILD_DIR] [REPEAT] [THREADS] [MODES...]
set -eu
B="${1:-build}"; N="${2:-2}"; T="${3:-2}"
shift $(($# < 3 ? $# : 3))
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(train2d infer2d train3d infer3d)
U="$B/unet-bench"
. "$(dirname "$0")/peer_common.sh"
[ -x "$U" ] || { echo "peer_ratios: $U not built (make build)" >&2; exit 2; }
if [ $have_torch = 0 ]; then
    echo "peer_ratios: the PyTorch peer is needed (apt-get install python3-torch; $PEER)" >&2
    exit 2
fi
[ -x "$B/fma-peak" ] && { echo "fma-peak before:"; "$B/fma-peak" | tail -1; }
for m in "${MODES[@]}"; do
    ours=() theirs=() gf=()
    for r in $(seq "$N"); do
        j=$(OMP_WAIT_POLICY=passive "$U" --mode "$m" --threads "$T" --json)
        ours+=("$(echo "$j" | field value)")
        gf+=("$(echo "$j" | field achieved_gflops)")
        theirs+=("$("$PY" "$PEER" --mode "$m" --threads "$T" --json 2> /dev/null | field value)")
        echo "$m run $r: medkd ${ours[-1]} torch ${theirs[-1]} $(echo "$j" | field unit)"
    done
    a=$(median "${ours[@]}"); b=$(median "${theirs[@]}"); g=$(median "${gf[@]}")
    awk -v m="$m" -v a="$a" -v b="$b" -v g="$g" -v t="$T" \
        'BEGIN {printf "%s, %d threads: medkd %.4g, torch %.4g (medians), ratio %.2f; medkd conv %.1f GFLOP/s\n", m, t, a, b, a / b, g}'
done
[ -x "$B/fma-peak" ] && { echo "fma-peak after:"; "$B/fma-peak" | tail -1; }
exit 0
