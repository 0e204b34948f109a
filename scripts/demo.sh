#!/bin/sh
# The demo job of `make demo`: the main pipeline on phantom data it generates itself
# (demo-data/, reused while its parameters stay the same). Each demo gets a new run directory.
set -eu
B=${1:-build}
OUT="runs/cmedl-demo-$(date -u +%Y%m%d-%H%M%S)"
"$B/pipeline" version
"$B/pipeline" run examples/cmedl.toml --out "$OUT"
echo
echo "Run directory: $OUT (masks/, pmri/, reports/*.h5|json|csv, log.txt)"
cat "$OUT/reports/summary.md"
echo
echo "Report for radiologists: $OUT/reports/report.html (open it in a browser)"
