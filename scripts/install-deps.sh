#!/bin/sh
# Installs the Debian packages medkd needs, when run as root; otherwise prints the exact command.
set -eu
PKGS="cmake make gcc g++ pkg-config libnifti2-dev libinsighttoolkit5-dev libtiff-dev libhdf5-dev \
libopenblas-dev libopenmpi-dev openmpi-bin libcmocka-dev libcjson-dev libpng-dev zlib1g-dev \
hdf5-tools libdeflate-dev python3 python3-numpy python3-nibabel python3-h5py python3-pydicom nifti-bin"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
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
