#!/usr/bin/env bash
# examples/histo.toml (issue 21), short: bad configs (exit 2, nothing written); the three methods
# and evaluate on small phantoms (classification reports with per-site and per-slide scopes
# recomputed from the stored predictions, heat maps, the candidate log against its filters, the
# KD student >= 10x smaller); the same seed gives the same classifier; inference on the real IHC
# slides (tiled LZW, JPEG pyramid) and on a folder with a truncated slide (reported, the others
# go on, exit 1).
# usage: histo_test.sh PIPELINE SOURCE_DIR SHARED_DIR
set -u
P="$1"; S="$2"; SH="${3:-$2/../shared}"
D="$(mktemp -d "${TMPDIR:-/tmp}/histo-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cp "$S/examples/histo.toml" "$D/h.toml"
"$P" --quiet synth --kind histo --out "$D/data" --cases 5 --size 512,512 > /dev/null || fail "synth"
short=(--set data.manifest="$D/data/manifest.csv" --set 'run.stages=["histo_cls", "histo_kd", "histo_synth", "histo_meta", "evaluate"]'
       --set histo.iterations=40 --set histo.labelled_per_class=8 --set histo.batch=16
       --set histo_synth.gan_iterations=40 --set histo_synth.candidates_per_class=16
       --set histo_kd.transfer_per_slide=64)
expect() {  # expect WHAT MESSAGE ARGS...: exit 2, the message, no run directory
    local what="$1" want="$2"; shift 2
    "$P" --quiet run "$D/h.toml" --out "$D/bad" "$@" > "$D/err" 2>&1; rc=$?
    [ "$rc" -eq 2 ] || { cat "$D/err"; fail "$what: exit $rc, expected 2"; }
    grep -q -- "$want" "$D/err" || { cat "$D/err"; fail "$what: message lacks '$want'"; }
    [ ! -e "$D/bad" ] || fail "$what: a run directory was created"
}
expect "synth with a normalisation" "histo.norm" "${short[@]}" --set histo.norm=standardize
expect "three class names" "histo.class_names" "${short[@]}" --set 'histo.class_names=["a", "b", "c"]'
expect "patch not divisible" "histo.patch" "${short[@]}" --set histo.patch=36
expect "kd without its teacher" "histo_cls" "${short[@]}" --set 'run.stages=["histo_kd", "evaluate"]'

t0=$(date +%s)
"$P" --quiet run "$D/h.toml" --out "$D/run" "${short[@]}" > "$D/log" 2>&1 || { cat "$D/log"; fail "run failed"; }
echo "histo example (short): $(( $(date +%s) - t0 )) s"
/usr/bin/python3 - "$D/run" "$S" <<'PY' || fail "reports"
import csv, json, os, sys
import h5py, numpy as np
from PIL import Image
d = sys.argv[1]
r = json.load(open(os.path.join(d, "reports/classification.json")))
names = [m["name"] for m in r["models"]]
assert names == ["histo_cls", "histo_kd_student", "histo_synth_selected", "histo_synth_all",
                 "histo_meta"], names
assert r["classes"] == ["non-tumour", "tumour"], r["classes"]
h = h5py.File(os.path.join(d, "reports/classification.h5"), "r")
slides = [s.decode() if isinstance(s, bytes) else s for s in h["slides"][()]]
groups = [s.decode() if isinstance(s, bytes) else s for s in h["slide_group"][()]]
assert set(groups) == {"siteA", "siteB"}, groups
for m in r["models"]:
    g = h[m["name"]]
    t, p, sl = g["truth"][()], g["prob"][()], g["slide"][()]
    assert len(t) == m["overall"]["n"] > 50, (m["name"], len(t))
    pred = p.argmax(1)
    acc = float((pred == t).mean())
    assert abs(acc - m["overall"]["accuracy"]) < 1e-9, (acc, m["overall"]["accuracy"])
    # AUC by ranks, independently of the C code
    from scipy.stats import rankdata
    pos = t == 1
    rk = rankdata(p[:, 1])
    auc = (rk[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
    assert abs(auc - m["overall"]["auc"]) < 1e-9, (auc, m["overall"]["auc"])
    for site in ("siteA", "siteB"):
        sel = np.isin(sl, [i for i, g2 in enumerate(groups) if g2 == site])
        a2 = float((pred[sel] == t[sel]).mean())
        assert abs(a2 - m["groups"][site]["accuracy"]) < 1e-9, (site, a2)
    assert set(m["slides"]) == set(slides), (m["slides"].keys(), slides)
    for s in slides:
        png = os.path.join(d, "reports/heatmaps", m["name"], s + ".png")
        im = Image.open(png); im.load()
        assert im.size[0] >= 64, (png, im.size)
c = list(csv.DictReader(open(os.path.join(d, "models/histo_synth_candidates.csv"))))
assert len(c) == 32, len(c)
for row in c:
    keep = float(row["confidence"]) >= 0.9 and float(row["distance"]) <= float(row["distance_threshold"])
    assert keep == (row["kept"] == "1"), row
print("ok: accuracy " + ", ".join("%s %.3f (A %.3f, B %.3f)" % (m["name"], m["overall"]["accuracy"],
      m["groups"]["siteA"]["accuracy"], m["groups"]["siteB"]["accuracy"]) for m in r["models"]))
print("ok: %d of %d candidates kept" % (sum(r["kept"] == "1" for r in c), len(c)))
PY
# the HTML page beside them: its figures against the JSON and HDF5, ROC curves against numpy,
# the worst and best slide's heat map of each model embedded
/usr/bin/python3 "$S/tests/cls_report_check.py" html "$D/run/reports/classification.html" \
    "$D/run/reports/classification.json" "$D/run/reports/classification.h5" \
    histo_cls:2,histo_kd_student:2,histo_synth_selected:2,histo_synth_all:2,histo_meta:2 || fail "classification.html"
grep -q "report: .*classification.html" "$D/run/log.txt" || fail "the page is not in the log"
# evaluate goes on past a slide without tissue (a blank slide: it opens and decodes, so the
# pre-run checks pass; its grid finds no tissue): the slide is named in a warning and left out
cp -r "$D/data" "$D/data_bad"
bad=$(awk -F, 'NR > 1 && $0 ~ /,test,/ { print $1; exit }' "$D/data/manifest.csv")
[ -n "$bad" ] || fail "no test slide in the phantom manifest"
badtif="$D/data_bad/$(awk -F, -v id="$bad" '$1 == id { print $3 }' "$D/data/manifest.csv")"
[ -f "$badtif" ] || fail "the slide file of $bad ($badtif)"
/usr/bin/python3 -c "import sys; from PIL import Image; Image.new('RGB', (512, 512), (255, 255, 255)).save(sys.argv[1], compression='tiff_deflate')" "$badtif"
"$P" --quiet run "$D/h.toml" --out "$D/runbad" "${short[@]}" --set data.manifest="$D/data_bad/manifest.csv" \
    --set 'run.stages=["histo_cls", "evaluate"]' --set histo.iterations=5 > "$D/logbad" 2>&1 \
    || { cat "$D/logbad"; fail "evaluate with a blank slide"; }
grep -q "slide $bad.*(skipped)" "$D/runbad/log.txt" || { cat "$D/logbad"; fail "the blank slide $bad is not named"; }
grep -q "1 slide(s) could not be read" "$D/runbad/log.txt" || fail "no count of unread slides"
/usr/bin/python3 - "$D/runbad/reports/classification.json" "$bad" <<'PY' || fail "reports with a blank slide"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["models"][0]["slides"]
assert sys.argv[2] not in s and len(s) > 0, (sys.argv[2], list(s))
print("ok: evaluate left out the blank slide %s and scored %d others" % (sys.argv[2], len(s)))
PY
grep -q "histo_kd: teacher .* parameters .*x fewer" "$D/run/log.txt" || { cat "$D/log"; fail "no parameter counts"; }
ratio=$(grep -o "student [0-9]* (width [0-9]*, depth [0-9]*): [0-9.]*x fewer" "$D/run/log.txt" | grep -o "[0-9.]*x" | tr -d x)
awk -v r="$ratio" 'BEGIN { exit !(r >= 10) }' || fail "the KD student is only ${ratio}x smaller"
# the same seed, the same classifier
"$P" --quiet run "$D/h.toml" --out "$D/run2" "${short[@]}" --set 'run.stages=["histo_cls"]' > "$D/log2" 2>&1 \
    || { cat "$D/log2"; fail "second run"; }
/usr/bin/python3 - "$D/run/models/histo_cls.h5" "$D/run2/models/histo_cls.h5" <<'PY' || fail "not deterministic"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
n = []
a["params"].visit(lambda k: n.append(k) if isinstance(a["params"][k], h5py.Dataset) else None)
assert n and all(np.array_equal(a["params"][k][()], b["params"][k][()]) for k in n)
PY
# inference on the real IHC slides and on a folder with a truncated slide
mkdir -p "$D/slides"
cp "$SH/data/real/histo/ihc_tiled_lzw.tif" "$SH/data/real/histo/ihc_pyramid_jpeg.tif" "$D/slides/"
head -c 20000 "$SH/data/real/histo/ihc_tiled_lzw.tif" > "$D/slides/broken.tif"
"$P" --quiet infer -m "$D/run/models/histo_kd_student.h5" -i "$SH/data/real/histo/ihc_pyramid_jpeg.tif" \
    -o "$D/inf1" > "$D/inf1.log" 2>&1 || { cat "$D/inf1.log"; fail "infer on the JPEG pyramid"; }
"$P" infer -m "$D/run/models/histo_cls.h5" -i "$D/slides" -o "$D/inf" > "$D/inf.log" 2>&1; rc=$?
[ "$rc" -eq 1 ] || { cat "$D/inf.log"; fail "infer with a broken slide: exit $rc, expected 1"; }
grep -q "broken.tif" "$D/inf.log" || { cat "$D/inf.log"; fail "the broken slide is not named"; }
for s in ihc_tiled_lzw ihc_pyramid_jpeg; do
    [ -s "$D/inf/${s}_heatmap.png" ] && [ -s "$D/inf/${s}_patches.csv" ] && [ -s "$D/inf/${s}_coords.h5" ] \
        || fail "no output for $s"
done
[ ! -e "$D/inf/broken_patches.csv" ] || fail "outputs of the broken slide"
/usr/bin/python3 - "$D/inf/ihc_tiled_lzw_patches.csv" "$D/inf/ihc_tiled_lzw_coords.h5" <<'PY' || fail "patch CSV"
import csv, sys, h5py
rows = list(csv.DictReader(open(sys.argv[1])))
c = h5py.File(sys.argv[2], "r")["coords"]
assert c.dtype == "int64" and c.shape == (len(rows), 2), (c.dtype, c.shape)
assert [list(map(int, (r["x"], r["y"]))) for r in rows] == c[()].tolist()
assert c.attrs["patch_size"] == 32 and c.attrs["patch_level"] == 0
assert len(rows) > 10, len(rows)
for r in rows:
    p = float(r["p_non-tumour"]) + float(r["p_tumour"])
    assert abs(p - 1) < 1e-4 and 0 <= int(r["x"]) < 512 and 0 <= int(r["y"]) < 512, r
print("ok: %d IHC patches classified" % len(rows))
PY
grep "(skipped)" "$D/runbad/log.txt" | head -1
echo "histo_cli: ok"
