#!/usr/bin/env bash
# Every tracked C/C++ source is clang-format clean. usage: format_check.sh CLANG_FORMAT SOURCE_DIR
set -u
CF="$1"; S="$2"
cd "$S" || exit 1
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' | grep -v '^tests/deps_fixture/')
else
    mapfile -t files < <(find . -name '*.c' -o -name '*.h' -o -name '*.cpp' | grep -v '/build\|deps_fixture')
fi
bad=0
for f in "${files[@]}"; do
    if ! "$CF" --dry-run --Werror "$f" > /dev/null 2>&1; then
        echo "FAIL: $f is not clang-format clean (run: make format, or $CF -i $f)"
        bad=$((bad + 1))
    fi
done
echo "${#files[@]} files checked, $bad not formatted"
[ "$bad" -eq 0 ]
