# Sourced by the benchmarks that compare with the PyTorch peer (peer_ratios.sh, contention.sh):
# the peer's path, the interpreter, whether torch is there, and two helpers.
PEER="$(dirname "$0")/../../shared/peers/torch_unet.py"
PY=/usr/bin/python3
have_torch=1
if [ ! -f "$PEER" ] || ! "$PY" -c "import torch" 2> /dev/null; then
    have_torch=0
fi
# field NAME: the field of the last JSON line on stdin (unet-bench's and the peer's output)
field() { "$PY" -c 'import json, sys; d = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d[sys.argv[1]])' "$1"; }
# median V...: the median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
