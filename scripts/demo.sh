#!/bin/sh
# The demo job of `make demo`: runs the main pipeline on data it generates itself.
set -eu
B=${1:-build}
"$B/pipeline" version
"$B/pipeline" run examples/cmedl.toml
