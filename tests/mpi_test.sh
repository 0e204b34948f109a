#!/usr/bin/env bash
# MPI (issue 22, first part): `mpirun -n P pipeline infer` shards the cases over the ranks.
#   1. a small model (a short supervised run on the cranium CT slabs; the masks' quality is not the
#      point here, their bytes are);
#   2. infer over 4 cases as one process, then under mpirun with P = 1, 2 and 3 (3: an unequal
#      split, 2 + 1 + 1): every mask byte for byte the
#      single process's, every case exactly once in the one merged infer.json (shard from
#      "MPI, P ranks"), no rank's infer.<r>of<P>.json left;
#   3. a case that fails on one rank: exit 1, one summary naming it; --continue under MPI skips
#      every case; --shard under MPI, and a verb that does not run on
#      several ranks (synth), exit 2 with a message and write nothing;
#   4. `pipeline version` under mpirun names the MPI library and the rank count;
#   2b. `mpirun -n P pipeline eval` (P = 2, 3) writes one process's report and table; a case that
#      cannot be scored on rank 1 stops the job with rank 0 naming it and the rank, no report.
# Open MPI refuses to run as root unless told: the two OMPI_ALLOW_RUN_AS_ROOT variables are set
# here (CI runs as root); --oversubscribe lets 3 ranks share 2 cores.
# usage: mpi_test.sh PIPELINE SOURCE_DIR [SHARED_DIR]
set -u
P="$1"; S="$2"; SH="${3:-$S/../shared}"
D="$(mktemp -d "${TMPDIR:-/tmp}/mpi-test-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3
command -v mpirun > /dev/null || fail "mpirun not found (openmpi-bin: make deps)"
"$P" version | grep -q "^  mpi       Open MPI" || fail "this pipeline was built without MPI: $("$P" version | grep mpi)"
[ -f "$SH/data/real/ct/cranium_ct.nii.gz" ] || fail "the real CT $SH/data/real/ct/cranium_ct.nii.gz is missing"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1
MPI=(mpirun --oversubscribe --bind-to none)

# 1. the model
"$PY" "$S/scripts/make-cranium-dataset.py" "$D/ds" --labels-ts --shared "$SH" > "$D/mk.log" 2>&1 ||
    { cat "$D/mk.log"; fail "make-cranium-dataset.py"; }
"$P" --quiet run "$S/examples/real-ct.toml" --out "$D/run" --set data.manifest="$D/ds" \
    --set supervised.iterations=8 --set data.patch=[64,64] --set model.depth=3 --set run.validate=false \
    --set run.stages=[\"supervised\"] --set run.threads=2 > "$D/run.log" 2>&1 ||
    { cat "$D/run.log"; fail "training the model"; }
M="$D/run/models/supervised_student.h5"
[ -f "$M" ] || fail "no $M"
mkdir -p "$D/four"
cp $(ls "$D"/ds/imagesTr/*_0000.nii.gz | head -2) "$D"/ds/imagesTs/*_0000.nii.gz "$D/four/"
[ "$(ls "$D/four" | wc -l)" = 4 ] || fail "expected 4 cases, got $(ls "$D/four")"

# 2. one process, then P = 1, 2, 3
check() { # INPUT_DIR OUT_DIR REF_DIR RANKS
    "$PY" - "$@" <<'PY' || fail "mpirun -n $4 infer $1: outputs"
import json, os, sys
inp, out, ref, ranks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cases = sorted(f[:-len("_0000.nii.gz")] for f in os.listdir(inp))
masks = sorted(f[:-len(".nii.gz")] for f in os.listdir(out) if f.endswith(".nii.gz"))
assert masks == cases, (masks, cases)
for c in cases:
    a = open(os.path.join(out, c + ".nii.gz"), "rb").read()
    b = open(os.path.join(ref, c + ".nii.gz"), "rb").read()
    assert a == b, "%s: the mask differs from the single process's" % c
left = [f for f in os.listdir(out) if f.startswith("infer.") and f != "infer.json"]
assert not left, left
s = json.load(open(os.path.join(out, "infer.json")))
ids = [x["id"] for x in s["cases"]]
assert ids == cases, ids  # every case once, in order
assert all(x["status"] == "ok" for x in s["cases"]), s["cases"]
assert s["complete"] is True and s["counts"]["ok"] == len(cases), s["counts"]
assert s["shard"]["index"] == 0 and s["shard"]["count"] == 1, s["shard"]
if ranks > 1:
    assert s["shard"]["from"] == "MPI, %d ranks" % ranks, s["shard"]
print("mpirun -n %d: %d cases, masks equal to one process's, one summary" % (ranks, len(cases)))
PY
}
"$P" --quiet infer -m "$M" -i "$D/four" -o "$D/ref" --threads 1 > "$D/ref.log" 2>&1 ||
    { cat "$D/ref.log"; fail "infer as one process"; }
for n in 1 2 3; do
    "${MPI[@]}" -n $n "$P" infer -m "$M" -i "$D/four" -o "$D/four_$n" --threads 1 \
        > "$D/mpi$n.log" 2> "$D/mpi$n.err" || { cat "$D/mpi$n.log" "$D/mpi$n.err"; fail "mpirun -n $n infer"; }
    check "$D/four" "$D/four_$n" "$D/ref" $n
done
# the table is printed once, by rank 0
n_rows=$(grep -c "^cranium_s" "$D/mpi3.log")
[ "$n_rows" = 4 ] || { cat "$D/mpi3.log"; fail "mpirun -n 3: the case table has $n_rows rows, not 4"; }
# every rank logged its own share: 2 + 1 + 1
grep -q "infer: 2 case(s) (shard 0/3 of 4, from MPI)" "$D/mpi3.err" &&
    grep -q "infer: 1 case(s) (shard 2/3 of 4, from MPI)" "$D/mpi3.err" ||
    { cat "$D/mpi3.err"; fail "mpirun -n 3: the ranks' shares are not 2 + 1 + 1"; }

# a case that fails on one rank: exit 1, the others written, one summary naming the failure
mkdir -p "$D/bad"
cp $(ls "$D"/four/* | head -2) "$D/bad/"
printf 'not a nifti file' | gzip > "$D/bad/broken_0000.nii.gz"
"${MPI[@]}" -n 2 "$P" --quiet infer -m "$M" -i "$D/bad" -o "$D/bad_out" --threads 1 > "$D/bad.log" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$D/bad.log"; fail "a failing case under MPI: rc $rc, expected 1"; }
"$PY" - "$D/bad_out/infer.json" <<'PY' || { cat "$D/bad.log"; fail "a failing case under MPI: the summary"; }
import json, sys
s = json.load(open(sys.argv[1]))
st = {x["id"]: x["status"] for x in s["cases"]}
assert len(st) == 3 and st.pop("broken") == "failed" and set(st.values()) == {"ok"}, s["cases"]
assert "broken_0000.nii.gz" in [x for x in s["cases"] if x["id"] == "broken"][0]["error"]
assert s["counts"] == {"ok": 2, "skipped": 0, "failed": 1, "not_run": 0}, s["counts"]
PY
[ "$(grep -c '^case  ' "$D/bad.log")" = 1 ] || { cat "$D/bad.log"; fail "a failing case under MPI: not one table"; }

# 2b. `pipeline eval` sharded: rank r scores every P-th case, rank 0 writes the one report,
# equal to one process's (JSON but its time stamp and command line; the printed table)
mkdir -p "$D/refs"
for f in "$D"/ref/*.nii.gz; do
    c=$(basename "$f")
    cp "$D/ds/labelsTr/$c" "$D/refs/" 2> /dev/null || cp "$D/ds/labelsTs/$c" "$D/refs/" ||
        fail "no reference for $c"
done
"$P" --quiet eval --pred "$D/ref" --ref "$D/refs" --label-names "$D/ds/dataset.json" \
    --json "$D/ev1.json" > "$D/ev1.txt" 2> "$D/ev1.err" || { cat "$D/ev1.err"; fail "eval as one process"; }
for n in 2 3; do
    "${MPI[@]}" -n $n "$P" --quiet eval --pred "$D/ref" --ref "$D/refs" --label-names "$D/ds/dataset.json" \
        --json "$D/ev$n.json" > "$D/ev$n.txt" 2> "$D/ev$n.err" || { cat "$D/ev$n.err"; fail "mpirun -n $n eval"; }
    cmp -s "$D/ev1.txt" "$D/ev$n.txt" || { diff "$D/ev1.txt" "$D/ev$n.txt"; fail "mpirun -n $n eval: another table"; }
    "$PY" - "$D/ev1.json" "$D/ev$n.json" <<'PY' || fail "mpirun -n $n eval: another report"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for d in (a, b):
    for k in ("created", "command_line"):
        d.pop(k, None)
assert a == b, "the reports differ"
assert len(a["cases"]) == 4, len(a["cases"])
PY
done
grep -c "^cranium_s" "$D/ev3.txt" | grep -qx 8 || { cat "$D/ev3.txt"; fail "mpirun -n 3 eval: not 4 cases x 2 labels in one table"; }
echo "mpirun -n 2, 3 eval: the one-process report and table"
# a case that cannot be scored on rank 1: every rank stops, rank 0 names it and the rank
mkdir -p "$D/badref"
cp "$D"/refs/* "$D/badref/"
second=$(ls "$D/badref" | sed -n 2p)
printf 'not a nifti file' | gzip > "$D/badref/$second"
"${MPI[@]}" -n 2 "$P" --quiet eval --pred "$D/ref" --ref "$D/badref" --json "$D/evbad.json" \
    > "$D/evbad.txt" 2> "$D/evbad.err"
rc=$?
[ $rc -ne 0 ] && grep -q "(rank 1 of 2)" "$D/evbad.err" && grep -q "$second" "$D/evbad.err" && [ ! -e "$D/evbad.json" ] ||
    { cat "$D/evbad.err"; fail "eval with a damaged reference on rank 1: rc $rc, expected an error naming it, no report"; }

# 3. --continue; refusals
"${MPI[@]}" -n 2 "$P" infer -m "$M" -i "$D/four" -o "$D/four_2" --threads 1 --continue > "$D/cont.log" 2>&1 ||
    { cat "$D/cont.log"; fail "--continue under MPI"; }
"$PY" - "$D/four_2/infer.json" <<'PY' || fail "--continue under MPI: not every case skipped"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["counts"]["skipped"] == 4 and s["counts"]["ok"] == 0, s["counts"]
PY
"${MPI[@]}" -n 2 "$P" --quiet infer -m "$M" -i "$D/four" -o "$D/sh" --shard 0/2 > "$D/sh.log" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "the ranks already split the cases" "$D/sh.log" && [ ! -e "$D/sh" ] ||
    { cat "$D/sh.log"; fail "--shard under MPI: rc $rc, expected a refusal and nothing written"; }
"${MPI[@]}" -n 2 "$P" --quiet synth --kind lung --out "$D/msynth" --cases 2 > "$D/msynth.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "does not run on 2 MPI ranks yet" "$D/msynth.log" && [ ! -e "$D/msynth" ] ||
    { cat "$D/msynth.log"; fail "synth under MPI: rc $rc, expected 2 and nothing written"; }

# 4. version
"${MPI[@]}" -n 2 "$P" version > "$D/v.log" 2>&1 || { cat "$D/v.log"; fail "version under MPI"; }
grep -q "rank 1 of 2" "$D/v.log" || { cat "$D/v.log"; fail "version under MPI: no 'rank 1 of 2'"; }
echo "mpi_test: ok"
