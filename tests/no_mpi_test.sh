#!/usr/bin/env bash
# A build without MPI (-DMK_MPI=OFF; the sanitizer build of `make test`) runs everything as one
# process (issue 22): `pipeline version` says MPI is not built in, and started as several
# processes by an MPI launcher every verb but version refuses (exit 2, nothing written) instead of
# running the whole job once per process into the same directory.
# usage: no_mpi_test.sh PIPELINE
set -u
P="$1"
D="$(mktemp -d "${TMPDIR:-/tmp}/no-mpi-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$P" version | grep -q "^  mpi       not built in" || fail "expected a build without MPI: $("$P" version | grep mpi)"
command -v mpirun > /dev/null || fail "mpirun not found (openmpi-bin: make deps)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1
mpirun --oversubscribe --bind-to none -n 2 "$P" --quiet synth --kind lung --out "$D/s" --cases 2 \
    > "$D/s.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "this build has no MPI" "$D/s.log" && [ ! -e "$D/s" ] ||
    { cat "$D/s.log"; fail "2 processes of a build without MPI: rc $rc, expected 2 and nothing written"; }
mpirun --oversubscribe --bind-to none -n 2 "$P" version > "$D/v.log" 2>&1 ||
    { cat "$D/v.log"; fail "version under mpirun"; }
[ "$(grep -c "not built in" "$D/v.log")" = 2 ] || { cat "$D/v.log"; fail "version: expected 2 reports"; }
"$P" --quiet synth --kind lung --out "$D/one" --cases 2 --size 32,32,8 > "$D/one.log" 2>&1 ||
    { cat "$D/one.log"; fail "one process of a build without MPI"; }
echo "PASS"
