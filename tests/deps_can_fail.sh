#!/usr/bin/env bash
# The dependency check must be able to fail (issue: a test used Pillow, the install script did not
# install it). usage: deps_can_fail.sh SOURCE_DIR SCRATCH_DIR
set -u
S="$1"; D="$2"
rm -rf "$D"; mkdir -p "$D"
fail() { echo "FAIL: $*"; exit 1; }
chk=(/usr/bin/python3 "$S/tests/deps_check.py")

# 1. the real list passes on the real tests (the deps_declared test does the full run)
# 2. the list without python3-pil: the check fails naming PIL and its Debian package
grep -v '^python3-pil ' "$S/scripts/deps.list" > "$D/no-pil.list"
! grep -q python3-pil "$D/no-pil.list" || fail "could not remove python3-pil from the list copy"
"${chk[@]}" --list "$D/no-pil.list" --scan "$S/tests" "$S" > "$D/out1" 2>&1
rc=$?
[ "$rc" -eq 1 ] || { cat "$D/out1"; fail "without python3-pil: exit $rc, expected 1"; }
grep -Eq "[A-Za-z0-9_.]+:[0-9]+: Python module 'PIL' (\(Debian package python3-pil\) is not declared|is not installed and not declared)" "$D/out1" \
    || { cat "$D/out1"; fail "without python3-pil: PIL not named"; }
# the install script reads the same list: with python3-pil in it, a machine without the package
# gets it in the apt-get line (checked without installing anything: MK_DEPS_NO_INSTALL)
MK_DEPS_LIST="$S/scripts/deps.list" MK_DEPS_NO_INSTALL=1 sh "$S/scripts/install-deps.sh" > "$D/out2" 2>&1
if dpkg-query -W -f='${Status}' python3-pil 2>/dev/null | grep -q "install ok installed"; then
    ! grep -q python3-pil "$D/out2" || fail "install-deps names python3-pil although it is installed"
else
    grep -q "apt-get install -y.* python3-pil" "$D/out2" || { cat "$D/out2"; fail "install-deps does not name python3-pil"; }
fi
# and a list with an unknown role is refused
printf 'foo | sometimes | | x\n' > "$D/bad.list"
MK_DEPS_LIST="$D/bad.list" MK_DEPS_NO_INSTALL=1 sh "$S/scripts/install-deps.sh" > "$D/out3" 2>&1
[ $? -eq 2 ] && grep -q "unknown role 'sometimes'" "$D/out3" || { cat "$D/out3"; fail "bad role accepted"; }

# 3. a test source that imports an undeclared module and runs an undeclared program
"${chk[@]}" --scan "$S/tests/deps_fixture" "$S" > "$D/out4" 2>&1
rc=$?
[ "$rc" -eq 1 ] || { cat "$D/out4"; fail "undeclared module: exit $rc, expected 1"; }
grep -q "test_x.c:8: Python module 'medkd_no_such_mod' is not installed and not declared" "$D/out4" \
    || { cat "$D/out4"; fail "undeclared module in a C string not named"; }
grep -q "helper.py:2: Python module 'medkd_other_mod'" "$D/out4" || { cat "$D/out4"; fail "from-import not named"; }
grep -q "program 'zzz_absent_tool' is not installed and not declared" "$D/out4" \
    || { cat "$D/out4"; fail "absent program not named"; }
! grep -q "'json'\|'xmlrpc'\|'os'" "$D/out4" || { cat "$D/out4"; fail "standard library reported"; }

# 4. a stale README paragraph fails
cp "$S/README.md" "$D/README.md"
sed -i 's/^Build and demo: `cmake`/Build and demo: `cmake`, `left-over`/' "$D/README.md"
"${chk[@]}" --readme "$D/README.md" --scan "$D/empty-does-not-exist" "$S" > "$D/out5" 2>&1
grep -q "README.md: the dependency paragraph is not the one scripts/deps.list gives" "$D/out5" \
    || { cat "$D/out5"; fail "stale README not found"; }
rm -rf "$D"
echo "ok: the dependency check fails without python3-pil, on an undeclared module or program, and on a stale README"
