#!/usr/bin/env bash
# `pipeline import` and `pipeline plan` on a real dataset: the cranium CT of shared/data/real cut
# into 6 axial slabs (scripts/make-cranium-dataset.py: 4 in imagesTr/labelsTr, 2 in imagesTs).
# The manifest is checked against the folder, the fingerprint against figures computed here with
# nibabel/numpy (spacing and size along RAS, orientation codes, whole-volume and foreground
# intensity statistics, percentiles with the documented subsampling and without it, label values,
# foreground share and extent), the config against the planning rules, and `pipeline validate`
# must accept it; the compute budget (--time-budget, --gflops) against the rule recomputed here;
# --gflops makes two plans byte-identical; a mixed-orientation copy gives the same geometry, CT +
# MR rows give the CMEDL plan, bad data and bad usage give the documented exit codes and write
# nothing.
# usage: plan_test.sh PIPELINE SOURCE_DIR SHARED_DIR   (fails when the shared data is absent)
set -u
P="$1"; S="$2"; SH="$3"
if [ ! -f "$SH/data/real/ct/cranium_ct.nii.gz" ]; then
    echo "FAIL: $SH/data/real/ct/cranium_ct.nii.gz not found (the shared data; set MK_SHARED_DIR)"
    exit 1
fi
D="$(mktemp -d "${TMPDIR:-/tmp}/plan-XXXXXX")"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
DS="$D/data/Dataset501_Cranium"
/usr/bin/python3 "$S/scripts/make-cranium-dataset.py" "$DS" --shared "$SH" > /dev/null \
    || fail "make-cranium-dataset.py"
/usr/bin/python3 "$S/scripts/make-cranium-dataset.py" "$D/data/Mixed" --shared "$SH" \
    --reorient cranium_s2=LSA --reorient cranium_s1=RAS > /dev/null || fail "mixed dataset"

# ---- import ----------------------------------------------------------------------------------
"$P" --quiet import "$DS" -o "$D/m.csv" > "$D/import.out" 2>&1 || { cat "$D/import.out"; fail "import"; }
"$P" --quiet import "$DS/dataset.json" -o "$D/sub/m2.csv" --modality MR > "$D/import2.out" 2>&1 \
    || { cat "$D/import2.out"; fail "import of dataset.json"; }
/usr/bin/python3 - "$D" "$DS" <<'PY' || fail "imported manifest"
import csv, os, sys
d, ds = sys.argv[1:]
def rows(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))
tr = sorted(f[:-len("_0000.nii.gz")] for f in os.listdir(ds + "/imagesTr"))
ts = sorted(f[:-len("_0000.nii.gz")] for f in os.listdir(ds + "/imagesTs"))
assert len(tr) == 4 and len(ts) == 2, (tr, ts)
for path, mod in ((d + "/m.csv", "CT"), (d + "/sub/m2.csv", "MR")):
    r = rows(path)
    base = os.path.dirname(path)
    assert [x["id"] for x in r] == tr + ts, r
    assert [x["split"] for x in r] == ["train"] * 4 + ["test"] * 2, r
    assert all(x["modality"] == mod for x in r), r
    for x in r:
        img = os.path.normpath(os.path.join(base, x["image"]))
        sub = "imagesTr" if x["split"] == "train" else "imagesTs"
        assert img == os.path.join(ds, sub, x["id"] + "_0000.nii.gz"), (img, x)
        if x["split"] == "train":
            lab = os.path.normpath(os.path.join(base, x["label"]))
            assert lab == os.path.join(ds, "labelsTr", x["id"] + ".nii.gz"), (lab, x)
        else:
            assert x["label"] == "", x
print("ok: import")
PY
grep -q "1=soft_tissue 2=bone" "$D/import.out" || fail "import does not print the label names"
rc=0; "$P" --quiet import "$DS" > "$D/e.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "import without -o: exit $rc, expected 2"
rc=0; "$P" --quiet import "$D/nothing" -o "$D/x.csv" > "$D/e.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "$D/nothing" "$D/e.out" && [ ! -e "$D/x.csv" ] \
    || fail "import of a missing folder: exit $rc, $(cat "$D/e.out")"

# ---- plan ------------------------------------------------------------------------------------
HUGE="--gflops 100 --time-budget 100000"  # the nnU-Net-style network is kept
"$P" --quiet plan "$DS" -o "$D/cfg/plan.toml" $HUGE > "$D/plan.out" 2>&1 || { cat "$D/plan.out"; fail "plan"; }
[ -f "$D/cfg/plan.toml" ] && [ -f "$D/cfg/plan.fingerprint.json" ] || fail "plan outputs missing"
"$P" --quiet validate "$D/cfg/plan.toml" > "$D/v.out" 2>&1 || { cat "$D/v.out"; fail "validate rejects the plan"; }
# the same plan from the imported CSV; exact percentiles with --samples large enough; the mixed
# orientation copy
"$P" --quiet plan "$D/m.csv" -o "$D/cfg2/plan.toml" $HUGE > "$D/plan2.out" 2>&1 || { cat "$D/plan2.out"; fail "plan of the CSV"; }
"$P" --quiet validate "$D/cfg2/plan.toml" > "$D/v.out" 2>&1 || { cat "$D/v.out"; fail "validate rejects the CSV plan"; }
"$P" --quiet plan "$DS/dataset.json" -o "$D/cfg3/all.toml" --samples 100000000 --threads 1 $HUGE \
    --iterations 77 > "$D/plan3.out" 2>&1 || { cat "$D/plan3.out"; fail "plan --samples"; }
"$P" --quiet plan "$D/data/Mixed" -o "$D/cfg4/mixed.toml" $HUGE > "$D/plan4.out" 2>&1 || { cat "$D/plan4.out"; fail "plan of the mixed dataset"; }
"$P" --quiet validate "$D/cfg4/mixed.toml" > "$D/v.out" 2>&1 || { cat "$D/v.out"; fail "validate rejects the mixed plan"; }

/usr/bin/python3 - "$D" "$DS" <<'PY' || fail "fingerprint or config"
import glob, json, math, os, sys, tomllib
import nibabel as nib
import numpy as np
d, ds = sys.argv[1:]

def close(a, b, rel=1e-6, what=""):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape and np.allclose(a, b, rtol=rel, atol=1e-9), (what, a.tolist(), b.tolist())

def reference(ds, max_samples):
    """The fingerprint of an nnU-Net folder, computed independently."""
    cases = []
    for sub in ("imagesTr", "imagesTs"):
        for f in sorted(glob.glob(os.path.join(ds, sub, "*_0000.nii.gz"))):
            cid = os.path.basename(f)[:-len("_0000.nii.gz")]
            lab = os.path.join(ds, "labelsTr", cid + ".nii.gz")
            cases.append((cid, f, lab if sub == "imagesTr" else None))
    nl = sum(1 for c in cases if c[2])
    budget = -(-max_samples // nl)
    sp, sz, ori, allv, fgv, smp, ext, labels = [], [], {}, [], [], [], [], {}
    nfg = nvox_l = 0
    for cid, f, lf in cases:
        im = nib.load(f)
        code = "".join(nib.aff2axcodes(im.affine))
        ori[code] = ori.get(code, 0) + 1
        can = nib.as_closest_canonical(im)  # RAS
        sp.append(can.header.get_zooms()[:3])
        sz.append(can.shape[:3])
        x = np.asarray(im.dataobj).astype(np.float64)
        allv.append(x.ravel())
        if lf is None:
            continue
        l = np.asarray(nib.load(lf).dataobj)
        for v in np.unique(l):
            labels[str(int(v))] = labels.get(str(int(v)), 0) + 1
        m = l > 0
        nfg += int(m.sum()); nvox_l += m.size
        vals = x.ravel(order="F")[m.ravel(order="F")]  # file order, i fastest
        fgv.append(vals)
        k = max(1, -(-len(vals) // budget))
        smp.append(vals[::k])
        lc = np.asarray(nib.as_closest_canonical(nib.load(lf)).dataobj) > 0
        idx = np.nonzero(lc)
        z = can.header.get_zooms()[:3]
        ext.append([(idx[a].max() - idx[a].min() + 1) * z[a] for a in range(3)])
    allv, fgv, smp = np.concatenate(allv), np.concatenate(fgv), np.concatenate(smp)
    return dict(sp=np.array(sp), sz=np.array(sz), ori=ori, mean=allv.mean(), sd=allv.std(),
                fg_mean=fgv.mean(), fg_sd=fgv.std(), nfg=nfg, share=nfg / nvox_l,
                pct=np.percentile(smp, [0.5, 50, 99.5]), nsmp=len(smp),
                pct_all=np.percentile(fgv, [0.5, 50, 99.5]), labels=labels, ext=np.array(ext),
                subsampled=len(smp) < len(fgv))

ref = reference(ds, 1000000)
fp = json.load(open(os.path.join(d, "cfg/plan.fingerprint.json")))
assert fp["format"] == "medkd-fingerprint" and fp["layout"] == "nnunet-v2", fp["format"]
assert fp["dataset"] == "Dataset501_Cranium" and fp["cases"] == 6
assert fp["label_names"] == {"0": "background", "1": "soft_tissue", "2": "bone"}, fp["label_names"]
ct = fp["modalities"]["CT"]
assert list(fp["modalities"]) == ["CT"]
assert (ct["cases"], ct["labelled"], ct["unlabelled"]) == (6, 4, 2), ct
assert ct["splits"] == {"train": 4, "val": 0, "test": 2, "none": 0}, ct["splits"]
for key, arr in (("spacing_mm", ref["sp"]), ("size_voxels", ref["sz"])):
    close(ct[key]["min"], arr.min(0), what=key)
    close(ct[key]["median"], np.median(arr, 0), what=key)
    close(ct[key]["max"], arr.max(0), what=key)
assert ct["orientations"] == ref["ori"] == {"LPS": 6}, ct["orientations"]
close([ct["intensity"]["mean"], ct["intensity"]["sd"]], [ref["mean"], ref["sd"]], what="intensity")
fi = ct["foreground_intensity"]
assert fi["voxels"] == ref["nfg"] and fi["sampled"] == ref["nsmp"], (fi, ref["nfg"], ref["nsmp"])
assert fi["subsampled"] is True and ref["subsampled"], "1.5 M foreground voxels must be subsampled"
close([fi["percentile_0_5"], fi["percentile_50"], fi["percentile_99_5"]], ref["pct"], what="pct")
close([fi["mean"], fi["sd"]], [ref["fg_mean"], ref["fg_sd"]], what="fg mean/sd")
assert ct["labels"] == ref["labels"] == {"0": 4, "1": 4, "2": 4}, ct["labels"]
close(ct["foreground_share"], ref["share"], what="share")
assert ct["foreground_extent_mm"]["cases"] == 4
close(ct["foreground_extent_mm"]["median"], np.median(ref["ext"], 0), what="extent")
close(ct["foreground_extent_mm"]["max"], ref["ext"].max(0), what="extent max")

# exact percentiles when every foreground voxel fits the sample
fp3 = json.load(open(os.path.join(d, "cfg3/all.fingerprint.json")))
f3 = fp3["modalities"]["CT"]["foreground_intensity"]
assert f3["subsampled"] is False and f3["sampled"] == ref["nfg"], f3
close([f3["percentile_0_5"], f3["percentile_50"], f3["percentile_99_5"]], ref["pct_all"], what="exact pct")

# the config: the planning rules, recomputed
cfg = tomllib.load(open(os.path.join(d, "cfg/plan.toml"), "rb"))
run, data, model, sup, ev = cfg["run"], cfg["data"], cfg["model"], cfg["supervised"], cfg["evaluate"]
assert run["stages"] == ["supervised", "evaluate"] and run["name"] == "Dataset501_Cranium", run
assert run["seed"] == 1 and run["threads"] == 0 and run["out_dir"] == "runs/Dataset501_Cranium", run
assert os.path.normpath(os.path.join(d, "cfg", data["manifest"])) == ds, data["manifest"]
assert data["manifest"] == "../data/Dataset501_Cranium", data["manifest"]
assert data["ct_modality"] == "CT" and "mri_modality" not in data, data
assert data["slice_axis"] == "axial" and data["orientation"] == "RAS", data
spacing = np.median(ref["sp"], 0)
close(data["spacing"], spacing, rel=1e-8, what="target spacing")
assert data["ct_window"] == [float(round(ref["pct"][0])), float(round(ref["pct"][2]))], data["ct_window"]
assert data["labels"] == {"1": "soft_tissue", "2": "bone"}, data["labels"]
assert model["classes"] == 3 and model["width"] == 16, model
assert data["sampler"] == "random" and data["foreground_share"] == 0.33 and data["val_fraction"] == 0.2
depth, (pu, pv) = model["depth"], data["patch"]
q = max(4, 2 ** (depth - 1))
ext_vox = np.median(ref["ext"], 0)[:2] / spacing[:2]
img_vox = np.median(ref["sz"] * ref["sp"], 0)[:2] / spacing[:2]
raw = [min(math.ceil(e - 1e-6), round(i)) for e, i in zip(ext_vox, img_vox)]
assert depth == min(5, int(math.floor(math.log2(min(raw) / 4))) + 1), (depth, raw)
for p, r, i in zip((pu, pv), raw, img_vox):
    assert p % q == 0 and p >= r and p < r + q and p <= round(i), (p, r, q, i)
assert min(pu, pv) // 2 ** (depth - 1) >= 4, (pu, pv, depth)
assert 2 <= sup["batch"] <= 16 and sup["modality"] == "CT" and sup["iterations"] == 4000, sup
comp = fp["plan"]["compute"]  # the huge budget: the first candidate, 4000 iterations (the cap)
assert len(comp["candidates"]) == 1 and comp["budget_met"] and comp["gflops"] == 100, comp
assert comp["gflops_measured"] is False and comp["time_budget_min"] == 100000, comp
assert ev["split"] == "val", ev  # the test slabs have no labels
pl = fp["plan"]
assert pl["patch"] == [pu, pv] and pl["depth"] == depth and pl["batch"] == sup["batch"], pl
assert tomllib.load(open(os.path.join(d, "cfg3/all.toml"), "rb"))["supervised"]["iterations"] == 77
assert json.load(open(os.path.join(d, "cfg3/all.fingerprint.json")))["plan"]["iterations_given"] is True
assert tomllib.load(open(os.path.join(d, "cfg3/all.toml"), "rb"))["run"]["threads"] == 1
text = open(os.path.join(d, "cfg/plan.toml")).read()
lines = text.splitlines()
for i, line in enumerate(lines):  # every setting explained: a comment above it (or its group)
    if line and not line.startswith(("#", "[")):
        j = i - 1
        while j >= 0 and lines[j] and not lines[j].startswith(("#", "[")):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), "no comment above: " + line

# the CSV gives the same fingerprint and config (but for the manifest path)
fp2 = json.load(open(os.path.join(d, "cfg2/plan.fingerprint.json")))
assert fp2["layout"] == "csv" and fp2["modalities"] == fp["modalities"], "CSV fingerprint differs"
c2 = tomllib.load(open(os.path.join(d, "cfg2/plan.toml"), "rb"))
assert c2["data"]["manifest"] == "../m.csv" and c2["model"] == model and c2["data"]["patch"] == data["patch"]

# mixed orientations: the same geometry along RAS, the same statistics
fp4 = json.load(open(os.path.join(d, "cfg4/mixed.fingerprint.json")))
mixed = fp4["modalities"]["CT"]
assert mixed["orientations"] == {"LPS": 4, "LSA": 1, "RAS": 1}, mixed["orientations"]
for key in ("spacing_mm", "size_voxels", "foreground_extent_mm"):
    assert mixed[key] == ct[key], (key, mixed[key], ct[key])
close([mixed["intensity"]["mean"], mixed["foreground_intensity"]["mean"], mixed["foreground_intensity"]["sd"]],
      [ct["intensity"]["mean"], fi["mean"], fi["sd"]], rel=1e-9, what="mixed statistics")
c4 = tomllib.load(open(os.path.join(d, "cfg4/mixed.toml"), "rb"))
assert c4["data"]["patch"] == data["patch"] and c4["data"]["spacing"] == data["spacing"], c4["data"]
print("ok: fingerprint and config (p0.5 %.1f p99.5 %.1f, patch %dx%d, depth %d, batch %d)"
      % (ref["pct"][0], ref["pct"][2], pu, pv, depth, sup["batch"]))
PY

# ---- CT + MR rows: the CMEDL plan -----------------------------------------------------------------
/usr/bin/python3 - "$D" <<'PY' || fail "making the CT + MR manifest"
import csv, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/m.csv", newline="")))
with open(d + "/ctmr.csv", "w", newline="") as f:
    out = csv.DictWriter(f, fieldnames=list(rows[0]))
    out.writeheader()
    for r in rows:
        out.writerow(r)
    for r in rows:  # the same volumes standing in for MR (the plan only reads them)
        out.writerow(dict(r, id=r["id"] + "_mr", modality="MR"))
PY
"$P" --quiet plan "$D/ctmr.csv" -o "$D/cm/c.toml" --iterations 40 > "$D/cm.out" 2>&1 || { cat "$D/cm.out"; fail "cmedl plan"; }
"$P" --quiet validate "$D/cm/c.toml" > "$D/v.out" 2>&1 || { cat "$D/v.out"; fail "validate rejects the cmedl plan"; }
"$P" --quiet plan "$D/ctmr.csv" -o "$D/cm/s.toml" --method supervised > "$D/cm.out" 2>&1 || { cat "$D/cm.out"; fail "--method supervised"; }
/usr/bin/python3 - "$D" <<'PY' || fail "cmedl config"
import sys, tomllib
d = sys.argv[1]
c = tomllib.load(open(d + "/cm/c.toml", "rb"))
assert c["run"]["stages"] == ["translate", "cmedl", "baseline", "evaluate"], c["run"]
assert c["data"]["ct_modality"] == "CT" and c["data"]["mri_modality"] == "MR", c["data"]
assert c["data"]["mri_norm"] == "zscore" and "ct_window" in c["data"], c["data"]
assert c["cmedl"]["iterations"] == 40 and c["translate"]["iterations"] == 10, c
s = tomllib.load(open(d + "/cm/s.toml", "rb"))
assert s["run"]["stages"] == ["supervised", "evaluate"] and s["supervised"]["modality"] == "CT", s
print("ok: cmedl plan")
PY
rc=0; "$P" --quiet plan "$DS" -o "$D/cm/x.toml" --method cmedl > "$D/e.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "expected labelled CT rows" "$D/e.out" && [ ! -e "$D/cm/x.toml" ] \
    || fail "--method cmedl on CT alone: exit $rc, $(cat "$D/e.out")"

# ---- the compute budget ------------------------------------------------------------------------
# --gflops 5 --time-budget 2: even the smallest network misses (the rule keeps it and says so);
# --gflops 100 --time-budget 3: a network in between fits. Both recomputed here, candidate by
# candidate, from the documented rule and FLOP model; --gflops makes the plan byte-identical.
"$P" --quiet plan "$DS" -o "$D/bud/slow.toml" --gflops 5 --time-budget 2 > "$D/b.out" 2>&1 || { cat "$D/b.out"; fail "plan --gflops 5"; }
cp "$D/bud/slow.toml" "$D/bud/slow1.toml"; cp "$D/bud/slow.fingerprint.json" "$D/bud/slow1.json"
"$P" --quiet plan "$DS" -o "$D/bud/slow.toml" --gflops 5 --time-budget 2 > "$D/b.out" 2>&1 || { cat "$D/b.out"; fail "plan --gflops 5 (again)"; }
cmp "$D/bud/slow.toml" "$D/bud/slow1.toml" || fail "--gflops: two plans differ (config)"
cmp "$D/bud/slow.fingerprint.json" "$D/bud/slow1.json" || fail "--gflops: two plans differ (fingerprint)"
grep -q "even the smallest network misses it" "$D/b.out" || fail "no budget warning: $(cat "$D/b.out")"
"$P" --quiet plan "$DS" -o "$D/bud/mid.toml" --gflops 100 --time-budget 3 > "$D/b.out" 2>&1 || { cat "$D/b.out"; fail "plan --gflops 100"; }
"$P" --quiet validate "$D/bud/mid.toml" > "$D/v.out" 2>&1 || { cat "$D/v.out"; fail "validate rejects the budget plan"; }
"$P" --quiet plan "$DS" -o "$D/bud/meas.toml" > "$D/meas.out" 2>&1 || { cat "$D/meas.out"; fail "plan (measured GFLOP/s)"; }
grep -q "GFLOP/s (measured)" "$D/meas.out" || fail "the measured GFLOP/s is not printed: $(cat "$D/meas.out")"
/usr/bin/python3 - "$D" <<'PY' || fail "compute budget"
import json, math, sys, tomllib
d = sys.argv[1]

def conv_flops(base, levels, pu, pv, classes):  # models/mk_unet.c, 2-D, 1 input channel
    vox, c, tot = pu * pv, 1, 0.0
    for i in range(levels):
        w, v = base << i, vox / 4 ** i
        tot += 2 * v * w * c * 9 + 2 * v * w * w * 9
        c = w
    for j in range(levels - 1):
        lvl = levels - 2 - j
        w, v = base << lvl, vox / 4 ** lvl
        tot += 2 * (c * v / 4) * w * 4 + 2 * v * w * 2 * w * 9 + 2 * v * w * w * 9
        c = w
    return tot + 2 * vox * classes * c

def elems(pu, pv, width, depth, classes):  # forward outputs of one sample
    a0, f = pu * pv, 0.0
    for i in range(depth):
        w, a = width * 2 ** i, a0 / 4 ** i
        f += 6 * w * a + ((w * a / 4 + 9 * w * a) if i + 1 < depth else 0)
    return f + 4 * classes * a0 + a0

def work(c, classes):  # GFLOP of one training sample
    pu, pv = c["patch"]
    return (3 * conv_flops(c["width"], c["depth"], pu, pv, classes)
            + 300 * elems(pu, pv, c["width"], c["depth"], classes)) / 1e9

def depth_for(pmin):
    return max(2, min(5, int(math.floor(math.log2(pmin / 4))) + 1))

def windows(dv, p):
    n, step = int(math.floor(dv + 0.5)), max(1, p // 2)
    return 1 if n <= p else -(-(n - p) // step) + 1

def smaller(c):
    c = dict(c, patch=list(c["patch"]))
    if c["batch"] > 4:
        c["batch"] -= 1
    elif c["width"] > 8:
        c["width"] = 8
    elif max(c["patch"]) > 32:
        raw = [max(32, (p + 1) // 2) if p > 32 else p for p in c["patch"]]
        c["depth"] = depth_for(min(raw))
        q = max(4, 2 ** (c["depth"] - 1))
        c["patch"] = [-(-r // q) * q for r in raw]
    elif c["batch"] > 2:
        c["batch"] -= 1
    else:
        return None
    return c

base = tomllib.load(open(d + "/cfg/plan.toml", "rb"))  # the nnU-Net-style network (huge budget)
fp = json.load(open(d + "/cfg/plan.fingerprint.json"))
ct = fp["modalities"]["CT"]
sp = base["data"]["spacing"]
img = [ct["size_voxels"]["median"][a] * ct["spacing_mm"]["median"][a] / sp[a] for a in range(2)]
first = {"patch": base["data"]["patch"], "depth": base["model"]["depth"],
         "width": base["model"]["width"], "batch": base["supervised"]["batch"]}
assert first["width"] == 16, first
classes = base["model"]["classes"]
for name, g, budget_min in (("slow", 5.0, 2.0), ("mid", 100.0, 3.0)):
    cfg = tomllib.load(open("%s/bud/%s.toml" % (d, name), "rb"))
    comp = json.load(open("%s/bud/%s.fingerprint.json" % (d, name)))["plan"]["compute"]
    assert comp["gflops"] == g and comp["time_budget_min"] == budget_min, comp
    # a fifth of the 4 labelled training cases is held out and evaluated (test has no labels)
    assert (comp["validation_cases"], comp["evaluation_cases"], comp["slices_per_case"]) == (1, 1, 18), comp
    budget, c, chain = 60 * budget_min, dict(first), []
    while True:
        t = c["batch"] * work(c, classes) / g
        nw = windows(img[0], c["patch"][0]) * windows(img[1], c["patch"][1])
        fixed = (10 * 1 + 1) * 18 * nw * 0.2 * work(c, classes) / g
        fit = max(0, math.floor((budget - fixed) / t))
        chain.append(dict(c, t=t, fixed=fixed, fit=fit))
        nxt = smaller(c)
        if fit >= 600 or nxt is None:
            break
        c = nxt
    got = comp["candidates"]
    assert len(got) == len(chain), (name, len(got), len(chain), got)
    for a, b in zip(got, chain):
        assert [a["patch"], a["depth"], a["width"], a["batch"]] == [b["patch"], b["depth"], b["width"], b["batch"]], (a, b)
        assert math.isclose(a["seconds_per_iteration"], b["t"], rel_tol=1e-6), (a, b)
        assert math.isclose(a["validation_evaluation_seconds"], b["fixed"], rel_tol=1e-6), (a, b)
        assert a["iterations_fit"] == b["fit"], (a, b)
    ch = chain[-1]
    assert cfg["data"]["patch"] == ch["patch"] and cfg["model"]["depth"] == ch["depth"], (cfg, ch)
    assert cfg["model"]["width"] == ch["width"] and cfg["supervised"]["batch"] == ch["batch"], (cfg, ch)
    it = cfg["supervised"]["iterations"]
    assert it == min(4000, max(600, ch["fit"])), (it, ch)
    expected = it * ch["t"] + ch["fixed"]
    assert math.isclose(comp["expected_minutes"] * 60, expected, rel_tol=1e-6), (comp, expected)
    if name == "slow":  # the smallest network, over the budget, said so
        assert smaller(ch) is None and not comp["budget_met"] and expected > budget, comp
        assert ch["patch"] == [32, 32] and ch["width"] == 8 and ch["batch"] == 2, ch
    else:  # a smaller network that fits
        assert comp["budget_met"] and expected <= budget and len(chain) > 1, comp
    text = open("%s/bud/%s.toml" % (d, name)).read()
    assert "%g GFLOP/s (--gflops)" % g in text and "<- chosen" in text and "Expected time" in text, text
    assert ("Even the smallest network misses the budget" in text) == (name == "slow"), text
    print("ok: budget %s (%d candidates, patch %s width %d batch %d, %d iterations, %.2f min)"
          % (name, len(chain), ch["patch"], ch["width"], ch["batch"], it, expected / 60))
meas = json.load(open(d + "/bud/meas.fingerprint.json"))["plan"]["compute"]
assert meas["gflops_measured"] is True and meas["gflops"] > 0, meas
PY

# ---- bad data and bad usage: exit codes, messages naming the file, nothing written -------------
/usr/bin/python3 - "$D" "$DS" <<'PY' || fail "making the bad datasets"
import os, sys
import nibabel as nib
import numpy as np
d, ds = sys.argv[1:]
img = nib.load(ds + "/imagesTr/cranium_s0_0000.nii.gz")
lab = np.asarray(nib.load(ds + "/labelsTr/cranium_s0.nii.gz").dataobj)
nib.save(nib.Nifti1Image(lab[:, :, :17], img.affine), d + "/short_label.nii.gz")
big = lab.astype(np.int16); big[0, 0, 0] = 300
nib.save(nib.Nifti1Image(big, img.affine), d + "/big_label.nii.gz")
with open(d + "/grid.csv", "w") as f:
    f.write("id,modality,image,label,split\na,CT,%s,short_label.nii.gz,train\n" % img.get_filename())
with open(d + "/big.csv", "w") as f:
    f.write("id,modality,image,label,split\na,CT,%s,big_label.nii.gz,train\n" % img.get_filename())
with open(d + "/nomod.csv", "w") as f:
    f.write("id,image,label,split\na,%s,big_label.nii.gz,train\n" % img.get_filename())
# anisotropic: x spacing 4 mm (more than twice y and z): slices are cut across x (sagittal)
aff = img.affine.copy()
aff[:3, 0] *= 4.0 / np.linalg.norm(aff[:3, 0])
with open(d + "/aniso.csv", "w") as f:
    f.write("id,modality,image,label,split\n")
    for i in range(2):
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), d + "/aniso%d.nii.gz" % i)
        nib.save(nib.Nifti1Image(lab, aff), d + "/aniso%d_label.nii.gz" % i)
        f.write("a%d,CT,aniso%d.nii.gz,aniso%d_label.nii.gz,train\n" % (i, i, i))
PY
"$P" --quiet plan "$D/aniso.csv" -o "$D/an/a.toml" $HUGE > "$D/an.out" 2>&1 || { cat "$D/an.out"; fail "plan of the anisotropic dataset"; }
"$P" --quiet validate "$D/an/a.toml" > "$D/v.out" 2>&1 || { cat "$D/v.out"; fail "validate rejects the anisotropic plan"; }
/usr/bin/python3 - "$D" <<'PY' || fail "anisotropic plan"
import json, math, sys, tomllib
d = sys.argv[1]
c = tomllib.load(open(d + "/an/a.toml", "rb"))
fp = json.load(open(d + "/an/a.fingerprint.json"))["modalities"]["CT"]
assert c["data"]["slice_axis"] == "sagittal", c["data"]
assert abs(c["data"]["spacing"][0] - 4.0) < 1e-6, c["data"]["spacing"]
# in-plane axes y and z: z holds 18 slices, so the patch is 16 there (a multiple of 4 within the
# image), and depth 3 keeps a bottleneck of 4
ext = fp["foreground_extent_mm"]["median"]
sp = c["data"]["spacing"]
pu, pv = c["data"]["patch"]
assert c["model"]["depth"] == 3 and pv == 16, (c["model"], c["data"]["patch"])
assert pu % 4 == 0 and pu >= math.ceil(ext[1] / sp[1] - 1e-6) and pu < ext[1] / sp[1] + 4, (pu, ext)
print("ok: anisotropic plan (sagittal, patch %dx%d)" % (pu, pv))
PY
expect() { # expect RC PATTERN ARGS...: exit code, a message, no config written
    local want="$1" pat="$2"; shift 2
    local rc=0; "$P" --quiet "$@" -o "$D/bad/out.toml" > "$D/e.out" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "pipeline $*: exit $rc, expected $want: $(cat "$D/e.out")"
    grep -q -- "$pat" "$D/e.out" || fail "pipeline $*: message lacks '$pat': $(cat "$D/e.out")"
    [ ! -e "$D/bad/out.toml" ] && [ ! -e "$D/bad/out.fingerprint.json" ] || fail "pipeline $*: wrote output"
}
expect 1 "short_label.nii.gz" plan "$D/grid.csv"
expect 1 "different grids" plan "$D/grid.csv"
expect 1 "expected an integer label value in 0..255, got 300" plan "$D/big.csv"
expect 1 "column modality" plan "$D/nomod.csv"
expect 1 "$D/nothing" plan "$D/nothing"
expect 2 "method" plan "$DS" --method best
expect 2 "iterations" plan "$DS" --iterations 0
expect 2 "time-budget" plan "$DS" --time-budget 0
expect 2 "gflops" plan "$DS" --gflops abc
expect 2 "unknown option" plan "$DS" --bogus
rc=0; "$P" --quiet plan "$DS" > "$D/e.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "plan without -o: exit $rc, expected 2"
echo "ok: import and plan"
