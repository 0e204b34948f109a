#!/usr/bin/env bash
# `pipeline infer` (issue 17) on the real volumes of ../shared, nibabel as the independent reader:
#   0. a small supervised model trained on the cranium CT slabs (scripts/make-cranium-dataset.py);
#   1. geometry: the test slabs, reoriented and resampled copies of one (flipped axis, RAS instead
#      of LPS, permuted axes, anisotropic spacing; .nii and .nii.gz, int16 and float32), the
#      oblique GE MR and the Colin27 T1: every mask has its input's shape, affine (1e-4) and
#      qform/sform codes and only the model's label values; the exactly reoriented copies give
#      the original's mask once reoriented back (voxel for voxel); a DICOM series folder too;
#   2. SIGKILL in the middle of a batch of 6, then --continue: the masks of an uninterrupted run
#      byte for byte, no temporary file left; a truncated mask (and a touched input) redo exactly
#      that case;
#   3. an unreadable and a 4-D file in the folder: the others are written, exit 1, the failures
#      name the files; usage errors exit 2; duplicate ids stop before anything runs;
#   4. --shard 0/3, 1/3, 2/3 (concurrently, one OUTDIR) and SLURM_ARRAY_TASK_ID/COUNT/MIN=1:
#      the unsharded masks byte for byte, every case exactly once;
#   5. the loop `pipeline infer` then `pipeline eval --pred OUTDIR --ref labelsTs`: Dice > 0.9;
#      -m with the run directory, a manifest and a single file as input.
# usage: infer_test.sh PIPELINE SOURCE_DIR [SHARED_DIR]
set -u
P="$1"; S="$2"; SH="${3:-$S/../shared}"
D="$(mktemp -d "${TMPDIR:-/tmp}/infer-test-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3
R="$SH/data/real"
[ -f "$R/ct/cranium_ct.nii.gz" ] || fail "the real CT $R/ct/cranium_ct.nii.gz is missing"
T=(--threads 2)

# 0. the model
"$PY" "$S/scripts/make-cranium-dataset.py" "$D/ds" --labels-ts --shared "$SH" > "$D/mk.log" 2>&1 ||
    { cat "$D/mk.log"; fail "make-cranium-dataset.py"; }
"$P" --quiet run "$S/examples/real-ct.toml" --out "$D/run" --set data.manifest="$D/ds" \
    --set supervised.iterations=300 --set data.patch=[64,64] --set model.depth=3 \
    --set run.stages=[\"supervised\"] --set run.threads=2 > "$D/run.log" 2>&1 ||
    { cat "$D/run.log"; fail "training the model"; }
M="$D/run/models/supervised_student_best.h5"
[ -f "$M" ] || fail "no $M"
# the model describes itself: pipeline info prints it, h5py reads the same attribute
"$P" info "$M" > "$D/info.txt" 2>&1 || { cat "$D/info.txt"; fail "pipeline info MODEL"; }
grep -q "format:       medkd model (supervised student" "$D/info.txt" &&
    grep -q "labels:       1 = soft_tissue, 2 = bone" "$D/info.txt" &&
    grep -q "patch:        64 x 64" "$D/info.txt" || { cat "$D/info.txt"; fail "pipeline info MODEL: content"; }
"$PY" - "$M" "$D/run/provenance.json" <<'PY' || fail "the model's description (h5py)"
import json, sys
import h5py
d = json.loads(h5py.File(sys.argv[1], "r").attrs["medkd_inference"])
p = json.load(open(sys.argv[2]))
assert d["format"] == "medkd-model" and d["network"]["depth"] == 3, d
assert d["input"]["modality"] == "CT" and d["geometry"]["slice_axis"] == "axial", d
assert d["patch"] == [64, 64] and [l["name"] for l in d["labels"]] == ["soft_tissue", "bone"], d
assert d["config_hash"] == p["config_hash"], (d["config_hash"], p["config_hash"])
PY

# 1. geometry
mkdir -p "$D/geo"
"$PY" - "$D" "$R" <<'PY' || fail "making the reoriented copies"
import os, shutil, sys
import nibabel as nib
import numpy as np
import scipy.ndimage
d, r = sys.argv[1], sys.argv[2]
g = os.path.join(d, "geo")
src = os.path.join(d, "ds/imagesTs/cranium_s1_0000.nii.gz")
shutil.copy(src, os.path.join(g, "s1_0000.nii.gz"))
shutil.copy(os.path.join(d, "ds/imagesTs/cranium_s4_0000.nii.gz"), os.path.join(g, "s4.nii.gz"))
shutil.copy(os.path.join(r, "mri/gepd_brain_dicom/gepd_brain.nii.gz"), os.path.join(g, "gepd.nii.gz"))
shutil.copy(os.path.join(r, "mri/colin27_aal/ch2.nii.gz"), os.path.join(g, "ch2.nii.gz"))
img = nib.load(src)
assert nib.aff2axcodes(img.affine) == ("L", "P", "S")

def save(data, aff, name, dtype):
    out = nib.Nifti1Image(np.asarray(data).astype(dtype), aff)
    out.set_qform(aff, code=1)
    out.set_sform(aff, code=1)
    nib.save(out, os.path.join(g, name))

def reorient(code):
    tr = nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine),
                                         nib.orientations.axcodes2ornt(code))
    return img.as_reoriented(tr)

data = np.asarray(img.dataobj)
# flipped i axis: voxel i becomes n-1-i, the affine moves the origin to the other end
fl = np.eye(4); fl[0, 0] = -1; fl[0, 3] = data.shape[0] - 1
save(data[::-1], img.affine @ fl, "s1_flip.nii.gz", np.int16)
save(np.asarray(reorient(("R", "A", "S")).dataobj), reorient(("R", "A", "S")).affine, "s1_ras.nii", np.int16)
p = reorient(("S", "L", "A"))
save(np.asarray(p.dataobj), p.affine, "s1_perm.nii", np.float32)
p = reorient(("A", "S", "R"))
save(np.asarray(p.dataobj), p.affine, "s1_asr.nii.gz", np.float32)
# anisotropic: 1.3 x 0.8 x 2.2 mm, linear resampling of the world image (scipy)
zoom = np.array(img.header.get_zooms()[:3]) / np.array([1.3, 0.8, 2.2])
res = scipy.ndimage.zoom(data.astype(np.float32), zoom, order=1)
sc = np.diag([1 / zoom[0], 1 / zoom[1], 1 / zoom[2], 1.0])
save(res, img.affine @ sc, "s1_aniso.nii.gz", np.int16)
PY
"$P" infer -m "$M" -i "$D/geo" -o "$D/geo_out" "${T[@]}" > "$D/geo.out" 2> "$D/geo.err" ||
    { cat "$D/geo.out" "$D/geo.err"; fail "infer on the geometry folder"; }
mkdir -p "$D/dcm" && ln -s "$R/mri/gepd_brain_dicom/dicom" "$D/dcm/gepd_series"
"$P" --quiet infer -m "$M" -i "$D/dcm" -o "$D/dcm_out" "${T[@]}" > "$D/dcm.out" 2>&1 ||
    { cat "$D/dcm.out"; fail "infer on a folder holding a DICOM series folder"; }
# two series in one folder (the oblique MR and the first 20 slices of the cranium CT)
mkdir -p "$D/mdcm/mix"
for f in "$R"/mri/gepd_brain_dicom/dicom/*.dcm; do ln -s "$f" "$D/mdcm/mix/mr_$(basename "$f")"; done
for k in $(seq -w 1 20); do ln -s "$R/ct/cranium_dicom/IM00$k.dcm" "$D/mdcm/mix/ct_IM00$k.dcm"; done
"$P" --quiet infer -m "$M" -i "$D/mdcm" -o "$D/mdcm_out" "${T[@]}" > "$D/mdcm.out" 2>&1 ||
    { cat "$D/mdcm.out"; fail "infer on a folder of two DICOM series"; }
"$PY" - "$D" "$R" <<'PY' || fail "geometry of the masks"
import json, os, sys
import nibabel as nib
import numpy as np
d, r = sys.argv[1], sys.argv[2]
g, o = os.path.join(d, "geo"), os.path.join(d, "geo_out")
cases = {"s1": "s1_0000.nii.gz", "s4": "s4.nii.gz", "gepd": "gepd.nii.gz", "ch2": "ch2.nii.gz",
         "s1_flip": "s1_flip.nii.gz", "s1_ras": "s1_ras.nii", "s1_perm": "s1_perm.nii",
         "s1_asr": "s1_asr.nii.gz", "s1_aniso": "s1_aniso.nii.gz"}
s = json.load(open(os.path.join(o, "infer.json")))
assert sorted(c["id"] for c in s["cases"]) == sorted(cases), s["cases"]
assert all(c["status"] == "ok" for c in s["cases"]) and s["failures"] == 0, s
assert s["peak_rss_mb"] > 0 and s["model_hash"].startswith("fnv1a64:"), s
for c in s["cases"]:
    assert set(c["seconds"]) >= {"read", "preprocess", "network", "postprocess", "write"}, c
labels = {0, 1, 2}

def check(img, msk, what):
    assert msk.shape == img.shape, (what, msk.shape, img.shape)
    assert np.allclose(msk.affine, img.affine, atol=1e-4), (what, msk.affine, img.affine)
    for k in ("qform_code", "sform_code"):
        assert int(msk.header[k]) == int(img.header[k]), (what, k, msk.header[k], img.header[k])
    for k in ("get_qform", "get_sform"):
        a, b = getattr(msk, k)(), getattr(img, k)()
        if int(img.header[k[4:] + "_code"]):
            assert np.allclose(a, b, atol=1e-4), (what, k, a, b)
    assert msk.get_data_dtype() == np.uint8, (what, msk.get_data_dtype())
    v = set(np.unique(np.asarray(msk.dataobj)).tolist())
    assert v <= labels, (what, v)
    return v

masks = {}
for cid, f in cases.items():
    img = nib.load(os.path.join(g, f))
    msk = nib.load(os.path.join(o, cid + ".nii.gz"))
    v = check(img, msk, cid)
    masks[cid] = (img, msk)
    print("%-9s %-16s %s %s values %s" % (cid, str(img.shape), "".join(nib.aff2axcodes(img.affine)),
                                          img.get_data_dtype(), sorted(v)))
# the CT slabs are segmented (both structures present)
for cid in ("s1", "s4"):
    assert set(np.unique(np.asarray(masks[cid][1].dataobj)).tolist()) == labels, cid
# the exactly reoriented copies: the same mask once reoriented back onto s1's grid
ref_img, ref_msk = masks["s1"]
ref = np.asarray(ref_msk.dataobj)
for cid in ("s1_flip", "s1_ras", "s1_perm", "s1_asr"):
    img, msk = masks[cid]
    tr = nib.orientations.ornt_transform(nib.orientations.io_orientation(msk.affine),
                                         nib.orientations.io_orientation(ref_msk.affine))
    back = msk.as_reoriented(tr)
    assert np.allclose(back.affine, ref_msk.affine, atol=1e-4), (cid, back.affine)
    diff = int(np.count_nonzero(np.asarray(back.dataobj) != ref))
    assert diff == 0, "%s: %d voxels differ from the original's mask" % (cid, diff)
# the anisotropic copy: the same anatomy (nearest voxel of the original's mask), most voxels
img, msk = masks["s1_aniso"]
a = np.asarray(msk.dataobj)
ijk = np.indices(a.shape).reshape(3, -1)
vox = np.linalg.inv(ref_msk.affine) @ msk.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
n = np.rint(vox[:3]).astype(int)
inside = np.all((n >= 0) & (n < np.array(ref.shape)[:, None]), axis=0)
agree = np.mean(a.reshape(-1)[inside] == ref[tuple(n[:, inside])])
assert agree > 0.95, ("s1_aniso agreement with the original's mask", agree)
# the DICOM series: one case named after its folder, on the series' grid (gepd_brain.nii.gz)
ds = json.load(open(os.path.join(d, "dcm_out/infer.json")))
assert [c["id"] for c in ds["cases"]] == ["gepd_series"] and ds["cases"][0]["status"] == "ok", ds
dm = nib.load(os.path.join(d, "dcm_out/gepd_series.nii.gz"))
ni = nib.load(os.path.join(r, "mri/gepd_brain_dicom/gepd_brain.nii.gz"))
assert dm.shape == ni.shape and np.allclose(dm.affine, ni.affine, atol=1e-3), (dm.shape, dm.affine, ni.affine)
assert set(np.unique(np.asarray(dm.dataobj)).tolist()) <= labels
# two series in one folder: one case each, id mix_<SeriesInstanceUID>, each on its own grid
ms = json.load(open(os.path.join(d, "mdcm_out/infer.json")))
ids = [c["id"] for c in ms["cases"]]
assert len(ids) == 2 and all(i.startswith("mix_") for i in ids), ids
assert all(c["status"] == "ok" and c["series_uid"] for c in ms["cases"]), ms["cases"]
ct = nib.load(os.path.join(r, "ct/cranium_ct.nii.gz"))
seen = set()
for i in ids:
    m = nib.load(os.path.join(d, "mdcm_out", i + ".nii.gz"))
    if m.shape == (256, 256, 20) and np.allclose(m.affine, ni.affine, atol=1e-3):
        seen.add("mr")
        assert np.array_equal(np.asarray(m.dataobj), np.asarray(dm.dataobj)), "MR series mask"
    elif m.shape == (256, 256, 20) and np.allclose(m.affine, ct.affine, atol=1e-3):
        seen.add("ct")
        assert set(np.unique(np.asarray(m.dataobj)).tolist()) == labels
    else:
        raise AssertionError((i, m.shape, m.affine))
assert seen == {"mr", "ct"}, seen
print("geometry: %d masks on their inputs' grids, reoriented copies exact, anisotropic %.3f, "
      "DICOM series ok (one folder, two series)" % (len(cases), agree))
PY
grep -q "channels other than _0000" "$D/geo.err" && fail "a note about other channels with none there"

# 2. SIGKILL mid-batch, then --continue
mkdir -p "$D/six"
for f in "$D"/ds/imagesTr/*.nii.gz "$D"/ds/imagesTs/*.nii.gz; do cp "$f" "$D/six/"; done
cp "$D/ds/imagesTr/cranium_s0_0000.nii.gz" "$D/six/cranium_s0_0001.nii.gz" # a second channel
"$P" --quiet infer -m "$M" -i "$D/six" -o "$D/ref" "${T[@]}" > "$D/ref.log" 2>&1 ||
    { cat "$D/ref.log"; fail "uninterrupted run"; }
[ "$(ls "$D/ref"/*.nii.gz | wc -l)" = 6 ] || fail "the uninterrupted run wrote $(ls "$D/ref" | wc -l) masks"
"$P" infer -m "$M" -i "$D/six" -o "$D/kill" "${T[@]}" > "$D/kill.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
    n=$(ls "$D/kill"/*.nii.gz 2>/dev/null | wc -l)
    [ "$n" -ge 1 ] && break
    sleep 0.01
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
n=$(ls "$D/kill"/*.nii.gz 2>/dev/null | wc -l)
[ "$n" -ge 1 ] && [ "$n" -lt 6 ] || fail "the kill came at $n masks of 6 (expected in the middle)"
grep -q "channels other than _0000" "$D/kill.log" || fail "no note about the skipped channel file"
# what a crash in the middle of a write leaves behind
: > "$D/kill/cranium_s5.nii.gz.tmp.999999"
: > "$D/kill/.medkd-infer/cranium_s5.json.tmp.999999"
"$P" --quiet infer -m "$M" -i "$D/six" -o "$D/kill" "${T[@]}" --continue > "$D/cont.log" 2>&1 ||
    { cat "$D/cont.log"; fail "--continue after SIGKILL"; }
left=$(find "$D/kill" -name '*.tmp.*' | wc -l)
[ "$left" = 0 ] || fail "temporary files survive --continue: $(find "$D/kill" -name '*.tmp.*')"
for f in "$D"/ref/*.nii.gz; do
    cmp -s "$f" "$D/kill/$(basename "$f")" || fail "$(basename "$f") differs after SIGKILL + --continue"
done
[ "$(ls "$D/kill"/*.nii.gz | wc -l)" = 6 ] || fail "masks after --continue: $(ls "$D/kill")"
"$PY" - "$D/kill/infer.json" "$n" <<'PY' || fail "--continue summary after SIGKILL"
import json, sys
s = json.load(open(sys.argv[1]))
st = [c["status"] for c in s["cases"]]
assert len(st) == 6 and s["complete"] and s["failures"] == 0, s
# the masks finished before the kill (and recorded) are skipped, the rest redone
assert 1 <= st.count("skipped") <= int(sys.argv[2]) and st.count("ok") == 6 - st.count("skipped"), st
PY
# a truncated mask and a touched input: exactly those two cases are redone
head -c 1000 "$D/ref/cranium_s2.nii.gz" > "$D/kill/cranium_s2.nii.gz"
touch "$D/six/cranium_s4_0000.nii.gz"
"$P" infer -m "$M" -i "$D/six" -o "$D/kill" "${T[@]}" --continue > "$D/cont2.log" 2>&1 ||
    { cat "$D/cont2.log"; fail "--continue after truncating a mask"; }
"$PY" - "$D/kill/infer.json" <<'PY' || fail "--continue redid other cases than the truncated and the touched one"
import json, sys
s = json.load(open(sys.argv[1]))
st = {c["id"]: c["status"] for c in s["cases"]}
want = {c: "skipped" for c in st}
want["cranium_s2"] = want["cranium_s4"] = "ok"
assert st == want, st
PY
grep -q "cranium_s2: redone: the mask's checksum differs" "$D/cont2.log" || { cat "$D/cont2.log"; fail "no reason for redoing cranium_s2"; }
grep -q "cranium_s4: redone: its record differs in input_mtime_ns" "$D/cont2.log" || { cat "$D/cont2.log"; fail "no reason for redoing cranium_s4"; }
for f in "$D"/ref/*.nii.gz; do
    cmp -s "$f" "$D/kill/$(basename "$f")" || fail "$(basename "$f") differs after the truncated mask was redone"
done
# another option that changes the mask (--step) redoes every case's record check
"$P" --quiet infer -m "$M" -i "$D/ds/imagesTs" -o "$D/step" "${T[@]}" > /dev/null 2>&1 || fail "step run"
"$P" infer -m "$M" -i "$D/ds/imagesTs" -o "$D/step" "${T[@]}" --continue --step 0.75 > /dev/null 2> "$D/step.log" ||
    fail "--continue --step"
[ "$(grep -c "redone: its record differs in step" "$D/step.log")" = 2 ] || { cat "$D/step.log"; fail "--step did not redo both cases"; }

# 3. failures go on; usage errors
mkdir -p "$D/bad"
cp "$D/ds/imagesTs/cranium_s1_0000.nii.gz" "$D/ds/imagesTs/cranium_s4_0000.nii.gz" "$D/bad/"
head -c 40000 "$D/ds/imagesTr/cranium_s0_0000.nii.gz" > "$D/bad/broken.nii.gz"
echo "not an image" > "$D/bad/notes.txt"
"$PY" - "$D/bad/fourd.nii.gz" <<'PY' || fail "making a 4-D file"
import sys
import nibabel as nib
import numpy as np
nib.save(nib.Nifti1Image(np.zeros((16, 16, 4, 3), np.int16), np.eye(4)), sys.argv[1])
PY
"$P" infer -m "$M" -i "$D/bad" -o "$D/bad_out" "${T[@]}" > "$D/bad.out" 2> "$D/bad.err"
rc=$?
[ "$rc" = 1 ] || { cat "$D/bad.out" "$D/bad.err"; fail "a folder with broken files: exit $rc, expected 1"; }
grep -q "broken.nii.gz" "$D/bad.err" || { cat "$D/bad.err"; fail "the error does not name broken.nii.gz"; }
grep -q "fourd.nii.gz" "$D/bad.err" || { cat "$D/bad.err"; fail "the error does not name fourd.nii.gz"; }
[ -f "$D/bad_out/cranium_s1.nii.gz" ] && [ -f "$D/bad_out/cranium_s4.nii.gz" ] || fail "the good cases were not written"
[ -e "$D/bad_out/broken.nii.gz" ] || [ -e "$D/bad_out/fourd.nii.gz" ] && fail "a mask for a failed case"
"$PY" - "$D/bad_out/infer.json" <<'PY' || fail "summary of the failures"
import json, sys
s = json.load(open(sys.argv[1]))
st = {c["id"]: c for c in s["cases"]}
assert s["failures"] == 2 and s["complete"], s
assert st["broken"]["status"] == "failed" and "broken.nii.gz" in st["broken"]["error"], st["broken"]
assert st["fourd"]["status"] == "failed" and "fourd.nii.gz" in st["fourd"]["error"], st["fourd"]
assert st["cranium_s1"]["status"] == st["cranium_s4"]["status"] == "ok", st
PY
"$P" --quiet infer -m "$M" -i "$D/bad" -o "$D/bad_ff" "${T[@]}" --fail-fast > /dev/null 2> "$D/ff.err"
[ $? = 1 ] || fail "--fail-fast: exit code"
grep -q "broken.nii.gz" "$D/ff.err" || fail "--fail-fast: the error does not name broken.nii.gz"
[ -e "$D/bad_ff/fourd.nii.gz" ] || [ -e "$D/bad_ff/cranium_s4.nii.gz" ] && fail "--fail-fast went on"
usage() { # usage WHAT ARGS...: exit 2, nothing written
    local what="$1"; shift
    "$P" --quiet infer "$@" > /dev/null 2>&1
    local rc=$?
    [ "$rc" = 2 ] || fail "$what: exit $rc, expected 2"
}
usage "missing -o" -m "$M" -i "$D/bad"
usage "missing -m" -i "$D/bad" -o "$D/u"
usage "bad shard" -m "$M" -i "$D/bad" -o "$D/u" --shard 3/3
usage "bad shard syntax" -m "$M" -i "$D/bad" -o "$D/u" --shard 1
usage "bad step" -m "$M" -i "$D/bad" -o "$D/u" --step 0
usage "unknown option" -m "$M" -i "$D/bad" -o "$D/u" --frobnicate
usage "output = input" -m "$M" -i "$D/bad" -o "$D/bad"
SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=1 usage "Slurm task out of range" -m "$M" -i "$D/bad" -o "$D/u"
[ -e "$D/u" ] && fail "a usage error wrote $D/u"
mkdir -p "$D/dup" && cp "$D/ds/imagesTs/cranium_s1_0000.nii.gz" "$D/dup/a.nii.gz" &&
    cp "$D/ds/imagesTs/cranium_s4_0000.nii.gz" "$D/dup/a_0000.nii.gz"
"$P" --quiet infer -m "$M" -i "$D/dup" -o "$D/dup_out" > /dev/null 2> "$D/dup.err"
[ $? = 1 ] || fail "duplicate ids: exit code"
grep -q "two cases with the id 'a'" "$D/dup.err" || { cat "$D/dup.err"; fail "duplicate ids: message"; }
[ -e "$D/dup_out" ] && fail "duplicate ids: something was written"

# 4. shards: concurrently into one folder, and from Slurm's variables
for i in 0 1 2; do
    "$P" --quiet infer -m "$M" -i "$D/six" -o "$D/sh" --threads 2 --shard $i/3 > "$D/sh$i.log" 2>&1 &
    eval "p$i=\$!"
done
for i in 0 1 2; do eval "wait \$p$i" || { cat "$D/sh$i.log"; fail "shard $i/3"; }; done
for i in 1 2 3; do
    SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=1 \
        "$P" --quiet infer -m "$M" -i "$D/six" -o "$D/slurm" "${T[@]}" > "$D/sl$i.log" 2>&1 ||
        { cat "$D/sl$i.log"; fail "Slurm task $i"; }
done
for o in sh slurm; do
    [ "$(ls "$D/$o"/*.nii.gz | wc -l)" = 6 ] || fail "$o: $(ls "$D/$o")"
    for f in "$D"/ref/*.nii.gz; do
        cmp -s "$f" "$D/$o/$(basename "$f")" || fail "$o: $(basename "$f") differs from the unsharded run"
    done
done
"$PY" - "$D" <<'PY' || fail "shard summaries"
import json, os, sys
d = sys.argv[1]
every = sorted(f[:-7] for f in os.listdir(os.path.join(d, "ref")) if f.endswith(".nii.gz"))
split = {}
for o in ("sh", "slurm"):
    ids = []
    for i in range(3):
        s = json.load(open(os.path.join(d, o, "infer.%dof3.json" % i)))
        assert s["shard"]["index"] == i and s["shard"]["count"] == 3, s["shard"]
        assert all(c["status"] == "ok" for c in s["cases"]), s["cases"]
        got = [c["id"] for c in s["cases"]]
        assert got == every[i::3], (o, i, got, every[i::3])
        ids += got
    assert sorted(ids) == every and len(set(ids)) == len(ids), (o, ids)
    assert not os.path.exists(os.path.join(d, o, "infer.json")), o
print("shards: %s" % ", ".join("%d/3 %s" % (i, every[i::3]) for i in range(3)))
PY

# 5. infer, then eval; -m a run directory; a manifest; a single file
"$P" --quiet infer -m "$D/run" -i "$D/ds/imagesTs" -o "$D/loop" "${T[@]}" > "$D/loop.log" 2>&1 ||
    { cat "$D/loop.log"; fail "infer -m RUN_DIR"; }
"$P" --quiet eval --pred "$D/loop" --ref "$D/ds/labelsTs" --json "$D/loop.json" > "$D/eval.log" 2>&1 ||
    { cat "$D/eval.log"; fail "eval of the infer output"; }
printf 'id,image,modality\nfirst,%s,CT\nsecond,%s,MR\n' "$D/ds/imagesTs/cranium_s4_0000.nii.gz" \
    "$D/ds/imagesTs/cranium_s1_0000.nii.gz" > "$D/m.csv"
"$P" --quiet infer -m "$M" -i "$D/m.csv" -o "$D/man" "${T[@]}" > /dev/null 2> "$D/man.err"
[ $? = 1 ] || fail "manifest with an MR row: exit code"
grep -q "m.csv:3" "$D/man.err" && grep -q "modality MR" "$D/man.err" || { cat "$D/man.err"; fail "manifest: the MR row's failure"; }
cmp -s "$D/ref/cranium_s4.nii.gz" "$D/man/first.nii.gz" || fail "manifest: first.nii.gz differs"
"$P" --quiet infer -m "$M" -i "$D/ds/imagesTs/cranium_s1_0000.nii.gz" -o "$D/one" "${T[@]}" > /dev/null 2>&1 ||
    fail "a single file"
cmp -s "$D/ref/cranium_s1.nii.gz" "$D/one/cranium_s1.nii.gz" || fail "single file: mask differs"
# a run directory without config.resolved.toml: its one *_student_best.h5; two: exit 2 naming both
mkdir -p "$D/bare/models" "$D/two/models"
cp "$M" "$D/bare/models/" && cp "$D/run/models/supervised_student.h5" "$D/bare/models/"
cp "$M" "$D/two/models/a_student_best.h5" && cp "$M" "$D/two/models/b_student_best.h5"
"$P" --quiet infer -m "$D/bare" -i "$D/ds/imagesTs/cranium_s1_0000.nii.gz" -o "$D/bare_out" "${T[@]}" > /dev/null 2>&1 ||
    fail "-m a run directory without its config"
cmp -s "$D/ref/cranium_s1.nii.gz" "$D/bare_out/cranium_s1.nii.gz" || fail "-m bare run directory: another mask"
"$P" --quiet infer -m "$D/two" -i "$D/ds/imagesTs" -o "$D/two_out" > /dev/null 2> "$D/two.err"
[ $? = 2 ] || fail "-m with two candidate models: exit code"
grep -q "a_student_best.h5, b_student_best.h5" "$D/two.err" || { cat "$D/two.err"; fail "-m with two models: not listed"; }
"$PY" - "$D" "$M" <<'PY' || fail "the infer-then-eval loop"
import json, os, sys
d, m = sys.argv[1], sys.argv[2]
s = json.load(open(os.path.join(d, "loop/infer.json")))
assert os.path.realpath(s["model"]) == os.path.realpath(m), (s["model"], m)
e = json.load(open(os.path.join(d, "loop.json")))
dice = {(c["id"], int(k)): v["dice"] for c in e["cases"] for k, v in c["labels"].items()}
assert len(dice) == 4, dice
assert all(v > 0.9 for v in dice.values()), dice
print("infer + eval: Dice %s" % ", ".join("%s/%d %.3f" % (k[0], k[1], v) for k, v in sorted(dice.items())))
PY
echo "infer_test: ok"
