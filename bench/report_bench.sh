#!/usr/bin/env bash
# How long `pipeline report` takes for 100 cases (issue 18: seconds, not minutes).
# 100 cardiac CT phantoms (three structures, 128x128x32 voxels), three "models" made from the
# references (eroded / dilated / shifted, numpy + scipy.ndimage), scored by `pipeline eval --json`
# (not timed), then the report over the three with the images: summaries, bootstrap intervals,
# 3 pairwise comparisons x 3 structures, box and Bland-Altman plots, 3 x 100 case rows and
# 3 x (3 worst + 1 best) panels (each reading image, reference and prediction). Prints the wall
# time of each of REPEAT runs and the page's size.
# usage: bench/report_bench.sh [BUILD_DIR] [REPEAT]
set -eu
B="${1:-build}"; N="${2:-3}"
P="$B/pipeline"
D="$(mktemp -d "${TMPDIR:-/tmp}/report-bench-XXXXXX")"
trap 'rm -rf "$D"' EXIT
"$P" --quiet synth --kind cardiac --out "$D/data" --cases 100 --size 128,128,32 --seed 3 > /dev/null
/usr/bin/python3 - "$D" <<'PY'
import csv, os, sys
import nibabel as nib
import numpy as np
from scipy import ndimage
d = sys.argv[1]
rows = [r for r in csv.DictReader(open(os.path.join(d, "data/manifest.csv"))) if r["modality"] == "CT"]
for sub in ("ref", "img", "m0", "m1", "m2"):
    os.makedirs(os.path.join(d, sub))
rng = np.random.default_rng(1)
st = ndimage.generate_binary_structure(3, 1)
for k, r in enumerate(rows):
    lab = nib.load(os.path.join(d, "data", r["label"]))
    ref = np.asarray(lab.dataobj).astype(np.uint8)
    hdr = lab.header.copy()
    hdr.set_data_dtype(np.uint8)
    save = lambda a, sub: nib.save(nib.Nifti1Image(a, lab.affine, hdr), os.path.join(d, sub, r["id"] + ".nii.gz"))
    save(ref, "ref")
    os.symlink(os.path.abspath(os.path.join(d, "data", r["image"])), os.path.join(d, "img", r["id"] + ".nii.gz"))
    for m in range(3):
        out = np.zeros_like(ref)
        for v in (1, 2, 3):
            x = ref == v
            if m == 0:
                x = ndimage.binary_erosion(x, st) if rng.random() < 0.5 else x
            elif m == 1:
                x = ndimage.binary_dilation(x, st) if rng.random() < 0.5 else x
            else:
                x = np.roll(x, int(rng.integers(1, 3)), axis=int(rng.integers(0, 2)))
            out[x & (out == 0)] = v
        save(out, "m%d" % m)
PY
for m in 0 1 2; do
    "$P" --quiet eval --pred "$D/m$m" --ref "$D/ref" --json "$D/m$m.json" > /dev/null
done
echo "report_bench: 100 cases x 3 models x 3 structures, 12 panels (128x128x32 volumes)"
for i in $(seq 1 "$N"); do
    t0=$(date +%s.%N)
    "$P" --quiet report "$D/m0.json" "$D/m1.json" "$D/m2.json" --name eroded --name dilated \
        --name shifted --images "$D/img" -o "$D/report.html" > /dev/null
    t1=$(date +%s.%N)
    echo "run $i: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s wall"
done
echo "page: $(du -k "$D/report.html" | cut -f1) KiB"
