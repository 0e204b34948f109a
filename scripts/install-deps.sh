#!/bin/sh
# Installs the Debian packages medkd needs (roles `build` and `test` of scripts/deps.list, the one
# list), when run as root; otherwise prints the exact apt-get command and fails.
# MK_DEPS_LIST names another list (the tests use it to show that a missing line is caught).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
list="${MK_DEPS_LIST:-$here/deps.list}"
[ -r "$list" ] || { echo "medkd: $list: cannot read the dependency list" >&2; exit 2; }
# package | role | provides | what for   (comments and blank lines skipped)
PKGS=$(grep -v '^[[:space:]]*#' "$list" | grep '|' | while IFS='|' read -r pkg role _rest; do
    pkg=$(echo "$pkg" | tr -d '[:space:]'); role=$(echo "$role" | tr -d '[:space:]')
    case "$role" in
        build|test) echo "$pkg" ;;
        optional) ;;
        *) echo "medkd: $list: package '$pkg': unknown role '$role' (build, test or optional)" >&2
           echo "!" ;;
    esac
done)
case "$PKGS" in *"!"*) exit 2 ;; esac
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && [ -z "${MK_DEPS_NO_INSTALL:-}" ]; then
    echo "medkd: installing missing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
else
    echo "medkd: missing Debian packages:$missing" >&2
    echo "Install them with:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
fi
