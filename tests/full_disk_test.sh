#!/usr/bin/env bash
# Writes that run out of space (issue 23 D1, D2): a file-size limit (ulimit -f, SIGXFSZ ignored,
# so write(2) fails with EFBIG as it fails with ENOSPC on a full disk) during `eval --out` (HDF5),
# `convert` to .mha / .mhd / .nrrd / .nii.gz and a training checkpoint: exit 1 with one clear
# line naming the output, no crash, nothing half-written (no file under the final name, no
# temporary left), and the same command succeeds once there is room.
# usage: full_disk_test.sh PIPELINE
set -u
P="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
"$P" --quiet synth --kind lung --out data --cases 2 > /dev/null || exit 1
img=$(ls data/ct/*.nii.gz | grep -v _label | grep -v _tissue | head -1)
lab=$(ls data/ct/*_label.nii.gz | head -1)
limited() { # limited KB OUT WANT -- command: exit 1, WANT in the message, nothing left
    local kb="$1" out="$2" want="$3"
    shift 4
    (ulimit -f "$kb"; trap '' XFSZ; "$@") > log 2>&1
    local rc=$?
    [ "$rc" -eq 1 ] || fail "$out: exit $rc under a ${kb} KiB limit, expected 1: $(cat log)"
    grep -qF -- "$want" log || fail "$out: message lacks '$want': $(cat log)"
    [ "$(grep -c . log)" -le 2 ] || fail "$out: more than two lines: $(cat log)"
    local left
    left=$(ls -A | grep -v '^data$\|^log$')
    [ -z "$left" ] || fail "$out: left behind: $left"
    "$@" > /dev/null 2>&1 || fail "$out: fails without the limit"
    [ -e "$out" ] || fail "$out: not written without the limit"
    find . -maxdepth 1 ! -name data ! -name log ! -name . -exec rm -rf {} +
}
limited 8 r.h5 "r.h5: write failed: File too large" -- "$P" --quiet eval --pred "$lab" --ref "$lab" --out r.h5
limited 64 o.mha "o.mha: write failed (disk full?)" -- "$P" --quiet convert "$img" o.mha
limited 64 o.mhd "o.mhd: write failed (disk full?)" -- "$P" --quiet convert "$img" o.mhd
limited 64 o.nrrd "o.nrrd" -- "$P" --quiet convert "$img" o.nrrd
limited 16 o.nii.gz "o.nii.gz: write failed" -- "$P" --quiet convert "$img" o.nii.gz
# a training run whose checkpoint cannot be written: exit 1, and --resume afterwards finishes
cat > c.toml <<TOML
[run]
stages = ["supervised"]
out_dir = "run"
checkpoint_every = 2
[data]
manifest = "data/manifest.csv"
"patch" = [32, 32]
[supervised]
modality = "CT"
iterations = 4
batch = 2
TOML
(ulimit -f 40; trap '' XFSZ; "$P" --quiet run c.toml) > log 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "checkpoint: exit $rc, expected 1: $(cat log)"
grep -q "write failed" log || fail "checkpoint: no write failure named: $(cat log)"
ls run/checkpoints 2>/dev/null | grep -q tmp && fail "checkpoint: a temporary was left: $(ls run/checkpoints)"
"$P" --quiet run c.toml --resume > log 2>&1 || fail "checkpoint: --resume after the failure: $(cat log)"
[ -e run/models/supervised_student.h5 ] || fail "checkpoint: no model after --resume: $(ls run/models)"
[ "$fails" -eq 0 ] && echo "full_disk: ok"
[ "$fails" -eq 0 ]
