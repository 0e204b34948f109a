#!/usr/bin/python3
"""Independent reference for `pipeline eval` (tests/test_eval.c drives it).

  eval_ref.py gen DIR     write NIfTI fixtures (nibabel) and DIR/scenarios.txt (name|eval args)
  eval_ref.py check DIR   compare DIR/out/<name>.json with values computed here

The reference is written from ../shared/docs/metrics.md with numpy/scipy only, sharing no code with
the C library: surfel areas from brute-force enumeration of every triangulation of each minority
component's polygon (keeping the largest-area one, Lorensen's), distances from
scipy.ndimage.distance_transform_edt, percentile/cumsum arithmetic as numpy does it; the medpy
convention exactly as medpy.metric.binary builds its surfaces (binary_erosion with the
connectivity-1 cross, border 0). DeepMind's surface_distance and medpy are not installed here, so
they are not used.
"""
import itertools
import json
import math
import os
import sys

import numpy as np

try:
    import nibabel as nib
    from scipy import ndimage
except ImportError as e:  # pragma: no cover
    print("FAIL: %s (declared in scripts/deps.list; install with 'make deps' as root)" % e)
    sys.exit(1)

# ----------------------------------------------------------------------------- surfel areas


def _corner(n):
    return np.array([n & 1, (n >> 1) & 1, (n >> 2) & 1], float)


def _components(bits):
    left = set(bits)
    out = []
    while left:
        stack = [left.pop()]
        comp = [stack[0]]
        while stack:
            v = stack.pop()
            for k in range(3):
                w = v ^ (1 << k)
                if w in left:
                    left.remove(w)
                    stack.append(w)
                    comp.append(w)
        out.append(comp)
    return out


def _polygon(comp):
    cs = set(comp)
    cuts = [(v, v ^ (1 << k)) for v in comp for k in range(3) if (v ^ (1 << k)) not in cs]
    # consecutive cut edges share a cube face and bound the component's run on that face
    links = {i: [] for i in range(len(cuts))}
    for k in range(3):
        for side in (0, 1):
            on = [i for i, (a, b) in enumerate(cuts) if ((a >> k) & 1) == side and ((b >> k) & 1) == side]
            if len(on) == 2:
                links[on[0]].append(on[1])
                links[on[1]].append(on[0])
    order = [0]
    prev = None
    while True:
        nxt = [j for j in links[order[-1]] if j != prev][0]
        if nxt == 0:
            break
        prev = order[-1]
        order.append(nxt)
    return [(_corner(cuts[i][0]) + _corner(cuts[i][1])) / 2 for i in order]


def _triangulations(idx):
    if len(idx) < 3:
        yield []
        return
    a, b = idx[0], idx[-1]
    for m in range(1, len(idx) - 1):
        for left in _triangulations(idx[: m + 1]):
            for right in _triangulations(idx[m:]):
                yield left + right + [(a, idx[m], b)]


def _area_vectors(code):
    bits = [n for n in range(8) if code >> n & 1]
    if len(bits) in (0, 8):
        return []
    if len(bits) >= 5:
        bits = [n for n in range(8) if not code >> n & 1]
    vecs = []
    for comp in _components(bits):
        P = _polygon(comp)
        best, best_t = -1, None
        for T in _triangulations(list(range(len(P)))):
            vs = [0.5 * np.cross(P[j] - P[i], P[k] - P[i]) for i, j, k in T]
            a = sum(np.linalg.norm(v) for v in vs)
            if a > best + 1e-12:
                best, best_t = a, vs
        vecs += best_t
    return vecs


_VECS = [_area_vectors(c) for c in range(256)]


def area_table(s):
    t = np.zeros(256)
    for c in range(256):
        for n in _VECS[c]:
            t[c] += np.linalg.norm([n[0] * s[1] * s[2], n[1] * s[0] * s[2], n[2] * s[0] * s[1]])
    return t


def length_table(s):
    diag = 0.5 * math.hypot(s[0], s[1])
    t = np.zeros(16)
    for code in range(16):
        b = [(code >> n) & 1 for n in range(4)]  # n = dx + 2 dy
        pop = sum(b)
        if pop in (0, 4):
            continue
        if pop in (1, 3):
            t[code] = diag
        elif b[0] == b[1]:  # rows dy=0 / dy=1 differ: segment along axis 0
            t[code] = s[0]
        elif b[0] == b[2]:
            t[code] = s[1]
        else:
            t[code] = 2 * diag
    return t


# ----------------------------------------------------------------------------- metrics


def _squeeze(mask, spacing):
    axes = [k for k in range(3) if mask.shape[k] > 1]
    if len(axes) == 3:
        return mask, list(spacing)
    while len(axes) < 2:
        axes.append([k for k in range(3) if k not in axes][0])
    keep = axes
    drop = [k for k in range(3) if k not in keep][0]
    m = np.take(mask, 0, axis=drop)
    return m, [spacing[k] for k in keep]


def _dm_surface(m, sp):
    """corner codes + area per border corner, bit n = dx + 2dy (+ 4dz)."""
    nd = m.ndim
    pad = np.pad(m.astype(np.uint8), 1)
    shp = tuple(n + 1 for n in m.shape)
    code = np.zeros(shp, np.int64)
    for n in range(2 ** nd):
        off = [(n >> k) & 1 for k in range(nd)]
        sl = tuple(slice(o, o + s) for o, s in zip(off, shp))
        code += pad[sl].astype(np.int64) << n
    full = 2 ** (2 ** nd) - 1
    border = (code != 0) & (code != full)
    table = area_table(sp) if nd == 3 else length_table(sp)
    return border, table[code]


def _dm_directed(src_border, src_area, tgt_border, sp):
    if not tgt_border.any():
        dist = np.full(src_border.shape, np.inf)
    else:
        dist = ndimage.distance_transform_edt(~tgt_border, sampling=sp)
    d = dist[src_border]
    a = src_area[src_border]
    order = np.lexsort((a, d))
    return d[order], a[order]


def _dm_hd(d, a, pct):
    cum = np.cumsum(a) / np.sum(a)
    idx = np.searchsorted(cum, pct / 100.0)
    return d[min(idx, len(d) - 1)]


def reference(pred, ref, spacing, tol, conv, pct=95.0, both="nan"):
    """both: the both-empty policy, "nan" (nnU-Net: every score undefined) or "one" (DeepMind)"""
    pred = pred.astype(bool)
    ref = ref.astype(bool)
    vox_ml = abs(spacing[0] * spacing[1] * spacing[2]) / 1000.0
    r = {"voxels_pred": int(pred.sum()), "voxels_ref": int(ref.sum())}
    r["volume_pred_ml"] = r["voxels_pred"] * vox_ml
    r["volume_ref_ml"] = r["voxels_ref"] * vox_ml
    if not pred.any() and not ref.any():
        v = 1.0 if both == "one" else math.nan
        d = 0.0 if both == "one" else math.nan
        r.update(dice=v, jaccard=v, hd=d, hd95=d, assd=d, masd=d, surface_dice=v, empty="both")
        return r
    if not pred.any() or not ref.any():
        r.update(dice=0.0, jaccard=0.0, hd=math.inf, hd95=math.inf, assd=math.inf, masd=math.inf,
                 surface_dice=0.0, empty="pred" if not pred.any() else "ref")
        return r
    inter = int((pred & ref).sum())
    r["dice"] = 2 * inter / (r["voxels_pred"] + r["voxels_ref"])
    r["jaccard"] = inter / (r["voxels_pred"] + r["voxels_ref"] - inter)
    r["empty"] = "none"
    p2, sp = _squeeze(pred, spacing)
    g2, _ = _squeeze(ref, spacing)
    if conv == "deepmind":
        bp, ap = _dm_surface(p2, sp)
        bg, ag = _dm_surface(g2, sp)
        d_g, a_g = _dm_directed(bg, ag, bp, sp)
        d_p, a_p = _dm_directed(bp, ap, bg, sp)
        r["hd"] = max(d_g[-1], d_p[-1])
        r["hd95"] = max(_dm_hd(d_g, a_g, pct), _dm_hd(d_p, a_p, pct))
        mg = np.sum(d_g * a_g) / np.sum(a_g)
        mp = np.sum(d_p * a_p) / np.sum(a_p)
        r["masd"] = (mg + mp) / 2
        r["assd"] = (np.sum(d_g * a_g) + np.sum(d_p * a_p)) / (np.sum(a_g) + np.sum(a_p))
        r["surface_dice"] = (np.sum(a_g[d_g <= tol]) + np.sum(a_p[d_p <= tol])) / (np.sum(a_g) + np.sum(a_p))
    else:
        fp = ndimage.generate_binary_structure(p2.ndim, 1)
        sp_b = p2 ^ ndimage.binary_erosion(p2, structure=fp, iterations=1)
        sg_b = g2 ^ ndimage.binary_erosion(g2, structure=fp, iterations=1)
        d_p = ndimage.distance_transform_edt(~sg_b, sampling=sp)[sp_b]
        d_g = ndimage.distance_transform_edt(~sp_b, sampling=sp)[sg_b]
        u = np.hstack((d_p, d_g))
        r["hd"] = max(d_p.max(), d_g.max())
        r["hd95"] = float(np.percentile(u, pct))
        r["assd"] = float(u.mean())
        r["masd"] = (d_p.mean() + d_g.mean()) / 2
        r["surface_dice"] = (np.sum(d_p <= tol) + np.sum(d_g <= tol)) / len(u)
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in r.items()}


# ----------------------------------------------------------------------------- fixtures


def _ball(shape, c, rad, sp):
    g = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((g[k] - c[k]) * sp[k]) ** 2 for k in range(3)) <= rad * rad


def _save(path, arr, aff, dtype):
    img = nib.Nifti1Image(arr.astype(dtype), aff)
    img.header.set_data_dtype(dtype)
    nib.save(img, path)


def _spacing(aff):
    """spacing exactly as a NIfTI reader sees it: |pixdim| as float32 widened"""
    return [float(np.float32(np.linalg.norm(aff[:3, k]))) for k in range(3)]


def gen(d):
    os.makedirs(d, exist_ok=True)
    os.makedirs(os.path.join(d, "out"), exist_ok=True)
    sc = []  # (name, args, [(label, pred_path, ref_path)...], tol, conv)
    shape = (34, 30, 22)
    sp = [0.8, 0.9, 1.5]
    aff = np.diag(sp + [1.0])

    # 1 spheres, anisotropic, uint8 .nii.gz, both conventions and two tolerances
    p = _ball(shape, (16, 15, 11), 7.0, sp)
    r = _ball(shape, (17.5, 14, 11), 6.2, sp)
    _save(f"{d}/sph_p.nii.gz", p, aff, np.uint8)
    _save(f"{d}/sph_r.nii.gz", r, aff, np.uint8)
    for conv in ("deepmind", "medpy"):
        for tol in (1.0, 2.0):
            sc.append((f"sphere_{conv}_{tol:g}", f"--pred {d}/sph_p.nii.gz --ref {d}/sph_r.nii.gz "
                       f"--convention {conv} --tolerance-mm {tol:g}", "sph", tol, conv))
    # 2 multi-label int16 .nii, label 3 only in pred, label 5 requested but absent
    ml_p = np.zeros(shape, np.int16)
    ml_r = np.zeros(shape, np.int16)
    ml_p[_ball(shape, (10, 10, 10), 5.0, sp)] = 1
    ml_r[_ball(shape, (11, 10, 10), 5.5, sp)] = 1
    ml_p[20:27, 18:24, 4:9] = 2
    ml_r[21:28, 17:24, 5:10] = 2
    ml_p[2:4, 25:28, 15:17] = 3
    _save(f"{d}/ml_p.nii", ml_p, aff, np.int16)
    _save(f"{d}/ml_r.nii", ml_r, aff, np.int16)
    for conv in ("deepmind", "medpy"):
        sc.append((f"multilabel_{conv}", f"--pred {d}/ml_p.nii --ref {d}/ml_r.nii --convention {conv} "
                   f"--labels 1,2,3,5", "ml", 1.0, conv))
    # 3 float32 labels, border-touching objects
    fp = np.zeros(shape, np.float32)
    fr = np.zeros(shape, np.float32)
    fp[0:6, 0:5, 0:4] = 4
    fr[0:5, 0:7, 0:3] = 4
    fp[30:34, 26:30, 18:22] = 4
    _save(f"{d}/f_p.nii.gz", fp, aff, np.float32)
    _save(f"{d}/f_r.nii.gz", fr, aff, np.float32)
    sc.append(("float_border", f"--pred {d}/f_p.nii.gz --ref {d}/f_r.nii.gz", "f", 1.0, "deepmind"))
    # 4 flipped (LPS-stored) and oblique affines: spacing is the column norm, metrics unchanged
    flip = np.diag([-0.8, -0.9, 1.5, 1.0])
    flip[:3, 3] = [10, 20, -5]
    _save(f"{d}/flip_p.nii.gz", p, flip, np.uint8)
    _save(f"{d}/flip_r.nii.gz", r, flip, np.uint8)
    sc.append(("flipped", f"--pred {d}/flip_p.nii.gz --ref {d}/flip_r.nii.gz", "sph", 1.0, "deepmind"))
    th = 0.3
    rot = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    obl = np.eye(4)
    obl[:3, :3] = rot @ np.diag(sp)
    obl[:3, 3] = [-3, 4, 5]
    _save(f"{d}/obl_p.nii.gz", p, obl, np.uint8)
    _save(f"{d}/obl_r.nii.gz", r, obl, np.uint8)
    sc.append(("oblique", f"--pred {d}/obl_p.nii.gz --ref {d}/obl_r.nii.gz --convention medpy", "sph", 1.0, "medpy"))
    # 5 2D: (X,Y,1) volume and a dim[0]=2 image
    s2 = [0.7, 1.1, 2.0]
    a2 = np.diag(s2 + [1.0])
    c_p = _ball((40, 30, 1), (20, 15, 0), 8.0, s2)
    c_r = _ball((40, 30, 1), (22, 14, 0), 7.0, s2)
    _save(f"{d}/s2_p.nii.gz", c_p, a2, np.uint8)
    _save(f"{d}/s2_r.nii.gz", c_r, a2, np.uint8)
    _save(f"{d}/d2_p.nii", c_p[:, :, 0], a2, np.uint8)
    _save(f"{d}/d2_r.nii", c_r[:, :, 0], a2, np.uint8)
    for conv in ("deepmind", "medpy"):
        sc.append((f"slice2d_{conv}", f"--pred {d}/s2_p.nii.gz --ref {d}/s2_r.nii.gz --convention {conv}", "s2", 1.0, conv))
        sc.append((f"dim2_{conv}", f"--pred {d}/d2_p.nii --ref {d}/d2_r.nii --convention {conv}", "s2", 1.0, conv))
    # 6 folders: nnU-Net names, one case with a channel suffix, one unpaired file each side
    os.makedirs(f"{d}/fold_p", exist_ok=True)
    os.makedirs(f"{d}/fold_r", exist_ok=True)
    _save(f"{d}/fold_p/case_001.nii.gz", p, aff, np.uint8)
    _save(f"{d}/fold_r/case_001.nii.gz", r, aff, np.uint8)
    _save(f"{d}/fold_p/case_002.nii.gz", np.zeros(shape), aff, np.uint8)  # empty prediction
    _save(f"{d}/fold_r/case_002_0000.nii.gz", r, aff, np.uint8)
    _save(f"{d}/fold_p/case_003.nii.gz", p, aff, np.uint8)
    _save(f"{d}/fold_r/case_004.nii.gz", r, aff, np.uint8)
    with open(f"{d}/fold_p/plans.json", "w") as f:
        f.write("{}")
    sc.append(("folders", f"--pred {d}/fold_p --ref {d}/fold_r", "fold", 1.0, "deepmind"))
    # 7 both-empty pairs (issue 23): label 2 in neither mask of case b2, only in the reference of
    # b3; label 1 everywhere. Under "nan" b2's label 2 is left out of every summary figure, under
    # "one" it scores 1; label 1 must not depend on the policy.
    os.makedirs(f"{d}/be_p", exist_ok=True)
    os.makedirs(f"{d}/be_r", exist_ok=True)
    for k, (p2, r2) in enumerate([(True, True), (False, False), (False, True), (True, True)]):
        bp = np.zeros(shape, np.uint8)
        br = np.zeros(shape, np.uint8)
        bp[_ball(shape, (10 + k, 12, 11), 5.0, sp)] = 1
        br[_ball(shape, (11, 12, 11), 5.0 + 0.3 * k, sp)] = 1
        if p2:
            bp[22:28, 18:25, 6:12 + k] = 2
        if r2:
            br[23:29, 18:24, 6:12] = 2
        _save(f"{d}/be_p/b{k + 1}.nii.gz", bp, aff, np.uint8)
        _save(f"{d}/be_r/b{k + 1}.nii.gz", br, aff, np.uint8)
    sc.append(("bothempty_default", f"--pred {d}/be_p --ref {d}/be_r --labels 1,2,7", "be", 1.0,
               "deepmind", "nan"))
    sc.append(("bothempty_nan", f"--pred {d}/be_p --ref {d}/be_r --both-empty nan --convention medpy",
               "be", 1.0, "medpy", "nan"))
    sc.append(("bothempty_one", f"--pred {d}/be_p --ref {d}/be_r --both-empty one", "be", 1.0,
               "deepmind", "one"))
    sc.append(("multilabel_one", f"--pred {d}/ml_p.nii --ref {d}/ml_r.nii --labels 1,2,3,5 "
               f"--both-empty one", "ml", 1.0, "deepmind", "one"))

    with open(f"{d}/scenarios.txt", "w") as f:
        for name, args, *_ in sc:
            f.write(f"{name}|{args}\n")
    with open(f"{d}/scenarios.json", "w") as f:
        json.dump([{"name": n, "fix": fx, "tol": t, "conv": c, "both": (rest or ["nan"])[0]}
                   for n, _, fx, t, c, *rest in sc], f)

    # bad inputs
    bad = np.zeros(shape, np.float32)
    bad[5:8, 5:8, 5:8] = 1.5
    _save(f"{d}/bad_float.nii.gz", bad, aff, np.float32)
    _save(f"{d}/other_grid.nii.gz", p[:, :, :20], aff, np.uint8)
    sp2 = np.diag([0.8, 0.9, 1.6, 1.0])
    _save(f"{d}/other_spacing.nii.gz", p, sp2, np.uint8)
    _save(f"{d}/flip_grid.nii.gz", p, flip, np.uint8)
    # the pred sphere stored with axis 0 reversed and an affine that keeps every voxel's world
    # position: resampling it onto the reference grid gives back sph_p exactly
    fa = aff.copy()
    fa[:3, 0] = -aff[:3, 0]
    fa[:3, 3] = aff[:3, 3] + aff[:3, 0] * (shape[0] - 1)
    _save(f"{d}/sph_p_rev.nii.gz", p[::-1, :, :], fa, np.uint8)
    with open(f"{d}/garbage.nii.gz", "wb") as f:
        f.write(b"this is not a nifti file" * 10)
    # not label maps (issue 23): an int16 "CT" with 300 distinct non-zero values, a float "MR"
    # with fractions everywhere, and a float image of integral labels (a label map, accepted)
    ct = (np.arange(np.prod(shape)).reshape(shape) * 7919 % 301).astype(np.int16)
    _save(f"{d}/ct_int16.nii.gz", ct, aff, np.int16)
    rng = np.random.default_rng(3)
    _save(f"{d}/mr_float.nii.gz", rng.normal(300.0, 80.0, shape).astype(np.float32), aff, np.float32)
    lab255 = (np.arange(np.prod(shape)).reshape(shape) % 256).astype(np.float32)
    _save(f"{d}/lab255_float.nii.gz", lab255, aff, np.float32)
    os.makedirs(f"{d}/nopair_p", exist_ok=True)
    os.makedirs(f"{d}/nopair_r", exist_ok=True)
    _save(f"{d}/nopair_p/a.nii.gz", p, aff, np.uint8)
    _save(f"{d}/nopair_r/b.nii.gz", r, aff, np.uint8)


def _load(path):
    img = nib.load(path)
    a = np.asanyarray(img.dataobj)
    while a.ndim < 3:
        a = a[..., None]
    pixdim = img.header["pixdim"][1:4]  # as stored, also pixdim[3] of a 2D image
    return a, [float(abs(np.float32(z))) for z in pixdim]


def _close(got, want, kind):
    if isinstance(want, str):
        return got == want
    if isinstance(got, str):
        got = float(got)
    if math.isinf(want) or math.isnan(want):
        return (math.isinf(got) and math.isinf(want)) or (math.isnan(got) and math.isnan(want))
    tol = {"overlap": 1e-12, "volume": 1e-9 * abs(want), "dist": 1e-6 * (1 + abs(want)), "sd": 1e-9}[kind]
    return abs(got - want) <= tol


KIND = {"dice": "overlap", "jaccard": "overlap", "hd": "dist", "hd95": "dist", "assd": "dist", "masd": "dist",
        "surface_dice": "sd", "volume_pred_ml": "volume", "volume_ref_ml": "volume", "voxels_pred": "overlap",
        "voxels_ref": "overlap", "empty": "str"}


def check(d):
    scen = json.load(open(f"{d}/scenarios.json"))
    bad = 0
    nval = 0
    for s in scen:
        out = json.load(open(f"{d}/out/{s['name']}.json"))
        if out["convention"] != s["conv"] or out["tolerance_mm"] != s["tol"]:
            print(f"{s['name']}: header {out['convention']} {out['tolerance_mm']}")
            bad += 1
        for case in out["cases"]:
            pa, spacing = _load(case["pred"])
            ra, _ = _load(case["ref"])
            for lab, got in case["labels"].items():
                want = reference(pa == int(lab), ra == int(lab), spacing, s["tol"], s["conv"],
                                 both=s["both"])
                for k, kind in KIND.items():
                    nval += 1
                    if not _close(got[k], want[k], kind):
                        print(f"{s['name']} case {case['id']} label {lab} {k}: got {got[k]} want {want[k]}")
                        bad += 1
        if s["name"] == "folders":
            ids = sorted(c["id"] for c in out["cases"])
            if ids != ["case_001", "case_002"]:
                print("folders: ids", ids)
                bad += 1
            up = out["unpaired"]
            if [os.path.basename(x) for x in up["pred"]] != ["case_003.nii.gz"] or \
               [os.path.basename(x) for x in up["ref"]] != ["case_004.nii.gz"]:
                print("folders: unpaired", up)
                bad += 1
            summ = out["summary"]["labels"]["1"]
            if summ["empty"] != {"none": 1, "pred": 1, "ref": 0, "both": 0} or summ["n_cases"] != 2:
                print("folders: summary", summ["empty"])
                bad += 1
            if summ["metrics"]["hd95"]["n_inf"] != 1 or summ["metrics"]["hd95"]["mean"] != "inf":
                print("folders: hd95 summary", summ["metrics"]["hd95"])
                bad += 1
            dices = [c["labels"]["1"]["dice"] for c in out["cases"]]
            if not _close(summ["metrics"]["dice"]["mean"], float(np.mean(dices)), "dist"):
                print("folders: dice mean")
                bad += 1
        if s["name"] in ("multilabel_deepmind", "multilabel_one"):
            lab5 = out["cases"][0]["labels"]["5"]
            want5 = 1.0 if s["both"] == "one" else "nan"
            if lab5["empty"] != "both" or lab5["dice"] != want5:
                print(s["name"], "label 5 should be both-empty with dice", want5, lab5)
                bad += 1
        bad += check_summary(s, out)
        if s["fix"] == "be":
            bad += check_both_empty(d, s, out)
    print(f"checked {nval} values in {len(scen)} scenarios, {bad} mismatches")
    return 1 if bad else 0


def _f(x):
    return float(x) if isinstance(x, str) else x


def check_summary(s, out):
    """every summary figure against numpy's nan-functions over the per-case values: NaN (a
    both-empty pair under "nan") is left out of each, and counted in n_excluded / n_nan"""
    bad = 0
    if out.get("both_empty") != s["both"]:
        print(s["name"], "both_empty", out.get("both_empty"), "want", s["both"])
        bad += 1
    for lab in out["labels"]:
        summ = out["summary"]["labels"][str(lab)]
        res = [c["labels"][str(lab)] for c in out["cases"]]
        excl = sum(1 for r in res if r["empty"] == "both" and s["both"] == "nan")
        if summ["n_excluded"] != excl:
            print(s["name"], lab, "n_excluded", summ["n_excluded"], "want", excl)
            bad += 1
        for m in ("dice", "jaccard", "surface_dice", "hd95", "assd", "volume_ref_ml"):
            v = np.array([_f(r[m]) for r in res], float)
            got = summ["metrics"][m]
            keep = v[~np.isnan(v)]
            if got["n_nan"] != int(np.isnan(v).sum()):
                print(s["name"], lab, m, "n_nan", got["n_nan"])
                bad += 1
            if m in ("hd95", "assd"):
                want = {"mean": np.mean(keep) if len(keep) else math.nan}
            else:  # never infinite: every figure
                with np.errstate(all="ignore"):
                    want = {"mean": np.nanmean(v) if len(keep) else math.nan,
                            "std": np.nanstd(v) if len(keep) else math.nan,
                            "median": np.nanmedian(v) if len(keep) else math.nan,
                            "q1": np.nanpercentile(v, 25) if len(keep) else math.nan,
                            "q3": np.nanpercentile(v, 75) if len(keep) else math.nan,
                            "min": np.nanmin(v) if len(keep) else math.nan,
                            "max": np.nanmax(v) if len(keep) else math.nan}
            for k, w in want.items():
                if not _close(_f(got[k]), float(w), "dist"):
                    print(s["name"], "label", lab, m, k, "got", got[k], "want", w)
                    bad += 1
    return bad


def check_both_empty(d, s, out):
    """the be fixture: label 1 does not depend on the policy; label 2 of b2 (and 7 everywhere)
    is the both-empty pair"""
    bad = 0
    lab2 = {c["id"]: c["labels"]["2"] for c in out["cases"]}
    if lab2["b2"]["empty"] != "both" or lab2["b3"]["empty"] != "pred":
        print(s["name"], "be: empty states", lab2)
        bad += 1
    want = 1.0 if s["both"] == "one" else "nan"
    if lab2["b2"]["dice"] != want or lab2["b2"]["hd95"] != (0.0 if s["both"] == "one" else "nan"):
        print(s["name"], "be: b2 label 2", lab2["b2"])
        bad += 1
    if lab2["b3"]["dice"] != 0.0 or lab2["b3"]["hd95"] != "inf":
        print(s["name"], "be: b3 label 2 (one empty: unchanged)", lab2["b3"])
        bad += 1
    summ = out["summary"]["labels"]["2"]
    if summ["empty"]["both"] != 1 or summ["n_excluded"] != (1 if s["both"] == "nan" else 0):
        print(s["name"], "be: summary counts", summ["empty"], summ["n_excluded"])
        bad += 1
    # the dice mean over 3 of the 4 cases under nan, over all 4 under one
    dices = [_f(lab2[k]["dice"]) for k in ("b1", "b2", "b3", "b4")]
    use = dices if s["both"] == "one" else [dices[0], dices[2], dices[3]]
    if not _close(_f(summ["metrics"]["dice"]["mean"]), float(np.mean(use)), "dist"):
        print(s["name"], "be: dice mean", summ["metrics"]["dice"]["mean"], np.mean(use))
        bad += 1
    if "7" in out["summary"]["labels"]:
        s7 = out["summary"]["labels"]["7"]
        if s["both"] == "nan" and (s7["n_excluded"] != 4 or s7["metrics"]["dice"]["mean"] != "nan"):
            print(s["name"], "be: label 7 in no mask", s7)
            bad += 1
    # label 1 is the same under every policy and convention-independent parts agree
    other = "bothempty_one" if s["name"] != "bothempty_one" else "bothempty_default"
    p = os.path.join(d, "out", other + ".json")
    if os.path.exists(p) and s["conv"] == "deepmind":
        o2 = json.load(open(p))
        a = [c["labels"]["1"] for c in out["cases"]]
        b = [c["labels"]["1"] for c in o2["cases"]]
        if a != b or out["summary"]["labels"]["1"] != o2["summary"]["labels"]["1"]:
            print(s["name"], "be: label 1 differs between the policies")
            bad += 1
    return bad


def check_h5(h5path, jsonpath):
    import h5py
    out = json.load(open(jsonpath))
    bad = 0
    with h5py.File(h5path, "r") as f:
        for a in ("version", "command_line", "convention", "tolerance_mm", "created", "schema", "empty_policy",
                  "both_empty"):
            if a not in f.attrs:
                print("missing attribute", a)
                bad += 1
        labels = [int(x) for x in f["labels"][()]]
        if labels != out["labels"]:
            print("labels", labels, out["labels"])
            bad += 1
        ids = [x.decode() if isinstance(x, bytes) else x for x in f["cases/id"][()]]
        if ids != [c["id"] for c in out["cases"]]:
            print("ids", ids)
            bad += 1
        for m in ("dice", "hd95", "assd", "surface_dice", "volume_ref_ml"):
            arr = f["metrics/" + m][()]
            for i, c in enumerate(out["cases"]):
                for j, lab in enumerate(out["labels"]):
                    want = c["labels"][str(lab)][m]
                    want = float(want)
                    got = float(arr[i, j])
                    if not (got == want or (math.isnan(got) and math.isnan(want))):
                        print("h5", m, i, j, got, want)
                        bad += 1
        emp = f["metrics/empty"][()]
        codes = ["none", "pred", "ref", "both"]
        for i, c in enumerate(out["cases"]):
            for j, lab in enumerate(out["labels"]):
                if codes[emp[i, j]] != c["labels"][str(lab)]["empty"]:
                    bad += 1
        med = f["summary/dice/median"][()]
        for j, lab in enumerate(out["labels"]):
            if float(med[j]) != float(out["summary"]["labels"][str(lab)]["metrics"]["dice"]["median"]):
                print("summary median", med[j])
                bad += 1
        if f["directed/hd"].shape != (len(ids), len(labels), 2):
            bad += 1
        if f.attrs.get("both_empty") not in (out["both_empty"], out["both_empty"].encode()):
            print("h5 both_empty", f.attrs.get("both_empty"))
            bad += 1
        nex = [int(x) for x in f["summary/n_excluded"][()]]
        if nex != [out["summary"]["labels"][str(lab)]["n_excluded"] for lab in out["labels"]]:
            print("h5 summary/n_excluded", nex)
            bad += 1
        mean = f["summary/dice/mean"][()]
        for j, lab in enumerate(out["labels"]):
            w = _f(out["summary"]["labels"][str(lab)]["metrics"]["dice"]["mean"])
            if not (float(mean[j]) == w or (math.isnan(mean[j]) and math.isnan(w))):
                print("h5 summary/dice/mean", mean[j], w)
                bad += 1
        if "label_names" in out:
            names = [x.decode() if isinstance(x, bytes) else x for x in f["label_names"][()]]
            if names != out["label_names"]:
                print("h5 label_names", names, out["label_names"])
                bad += 1
    print(f"h5 check: {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    elif sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    elif sys.argv[1] == "table":  # table S0 S1 S2 OUT: 256 surfel areas then 16 contour lengths (S0, S1)
        sp = [float(x) for x in sys.argv[2:5]]
        with open(sys.argv[5], "w") as f:
            for v in area_table(sp):
                f.write("%.17g\n" % v)
            for v in length_table(sp[:2]):
                f.write("%.17g\n" % v)
    elif sys.argv[1] == "h5":
        sys.exit(check_h5(sys.argv[2], sys.argv[3]))
