#!/bin/bash
# CLI behaviour of `pipeline`: exit codes (0 ok, 1 runtime, 2 usage/config), messages naming
# file:line, --help on every verb, and nothing written for a bad config.
set -u
P="$1"
SRC="$2"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
passes=0
check() { # check NAME EXPECTED_RC "fragment" -- command...
    local name="$1" want="$2" frag="$3"
    shift 4
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL $name: exit $rc, expected $want; output: $out"
        fails=$((fails + 1))
    elif [ -n "$frag" ] && ! grep -qF -- "$frag" <<<"$out"; then
        echo "FAIL $name: output lacks '$frag'; output: $out"
        fails=$((fails + 1))
    else
        passes=$((passes + 1))
    fi
}

check "no args" 2 "usage: pipeline" -- "$P"
check "help" 0 "Verbs:" -- "$P" help
check "--help" 0 "Exit codes: 0 success, 1 runtime failure" -- "$P" --help
check "unknown verb" 2 "unknown verb 'frobnicate'" -- "$P" frobnicate
check "help unknown verb" 2 "unknown verb 'nope'" -- "$P" help nope
check "version" 0 "medkd" -- "$P" version
check "version extra arg" 2 "takes no arguments" -- "$P" version x
# every verb in the table answers --help with its usage line
for v in $("$P" help | awk '/^Verbs:/{f=1;next} f&&/^  [a-z]/{print $1}'); do
    check "$v --help" 0 "usage: pipeline $v" -- "$P" "$v" --help
    check "help $v" 0 "usage: pipeline $v" -- "$P" help "$v"
done
check "validate no file" 2 "expected a CONFIG" -- "$P" validate
check "validate missing" 2 "$T/none.toml: config file does not exist" -- "$P" validate "$T/none.toml"
check "validate unknown option" 2 "unknown option '--frob'" -- "$P" validate --frob x.toml

printf 'id,modality,image,label,split,domain\n' >"$T/m.csv"
cat >"$T/typo.toml" <<'TOML'
[run]
stages = ["evaluate"]
out_dir = "out"
sede = 4
[data]
manifest = "m.csv"
TOML
check "misspelt key" 2 "$T/typo.toml:4: unknown key 'sede' in [run] (did you mean 'seed'?)" -- "$P" validate "$T/typo.toml"
check "run misspelt key" 2 "did you mean 'seed'?" -- "$P" run "$T/typo.toml"
if [ -e "$T/out" ]; then
    echo "FAIL bad config wrote its run directory"
    fails=$((fails + 1))
else
    passes=$((passes + 1))
fi
printf '[run\n' >"$T/syntax.toml"
check "toml syntax error" 2 "$T/syntax.toml:1:" -- "$P" validate "$T/syntax.toml"
cat >"$T/ok.toml" <<'TOML'
[run]
stages = ["evaluate"]
[data]
manifest = "m.csv"
TOML
check "explain" 0 "[evaluate]" -- "$P" validate --explain
check "run bad seed override" 2 "run.seed" -- "$P" run "$T/ok.toml" --seed abc
check "run bad threads override" 2 "[0, 256]" -- "$P" run "$T/ok.toml" --threads 999
check "log-json error" 2 '"level":"error"' -- "$P" --log-json validate "$T/typo.toml"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
