#!/usr/bin/env bash
# Writes that run out of space (issue 23 D1, D2): a file-size limit (ulimit -f, SIGXFSZ ignored,
# so write(2) fails with EFBIG as it fails with ENOSPC on a full disk) during `eval --out` (HDF5),
# `convert` to .mha / .mhd / .nrrd / .nii.gz, a training checkpoint and `infer`: exit 1 with one clear
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
# infer: the per-case summary cannot be written after the first cases (1 KiB limit: the masks
# fit, masks/infer.json outgrows it): exit 1 naming it, every file left whole (masks read back,
# the summary is the last complete one), no temporary left; --continue then finishes the rest
(ulimit -f 1; trap '' XFSZ; "$P" --quiet infer -m run -i data/ct -o masks) > log 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "infer: exit $rc, expected 1: $(cat log)"
grep -q "masks/infer.json: write failed" log || fail "infer: the summary's failure not named: $(cat log)"
ls -A masks | grep -q -i "tmp" && fail "infer: a temporary was left: $(ls -A masks)"
python3 -m json.tool masks/infer.json > /dev/null || fail "infer: masks/infer.json is not whole JSON"
for m in masks/*.nii.gz; do
    "$P" --quiet info "$m" > /dev/null 2>&1 || fail "infer: $m does not read back"
done
"$P" --quiet infer -m run -i data/ct -o masks --continue > log 2>&1 || fail "infer: --continue: $(cat log)"
n_img=$(ls data/ct/*.nii.gz | wc -l)
n_ok=$(python3 -c "import json; d = json.load(open('masks/infer.json')); print(sum(c['status'] in ('ok', 'skipped') for c in d['cases']))" 2>&1)
[ "$n_ok" = "$n_img" ] || fail "infer: after --continue $n_ok of $n_img cases done: $(cat log)"
[ "$fails" -eq 0 ] && echo "full_disk: ok"
[ "$fails" -eq 0 ]
