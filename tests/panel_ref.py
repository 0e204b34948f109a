#!/usr/bin/python3
"""Orientation of the report panels against an independent writer (nibabel).

usage: panel_ref.py PANEL_TOOL

One anatomy (an asymmetric grey volume, a label-1 "organ" in reference and prediction alike and a
label-2 ball only in the reference, in the patient's right-anterior-superior region) is written
by nibabel in RAS voxel order and in other storage orders (flipped and permuted axes, obtained
with nibabel.orientations so data and affine change together). panel-tool (the project's reader
and mk_panel_render) draws each. Checks:
  * every orientation gives the same tiles, pixel for pixel (captions name voxel axes and
    indices, which differ by storage order, so the caption strip is not compared), the same tile
    rectangles and the same error counts;
  * tiles keep the physical aspect (mm) of their two in-plane axes;
  * the blue (false-negative) ball lies where the radiological convention puts the patient's
    right-anterior-superior region: axial left and upper half, coronal left and upper half,
    sagittal left (anterior) and upper (superior) half, each near the quarter of the tile
    predicted from the ball's position.
Exit 0 when all hold, 1 otherwise.
"""
import json
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
from nibabel import orientations as no
from PIL import Image

SHAPE = (40, 34, 26)          # RAS voxel order: x to the right, y anterior, z superior
SPACING = (1.0, 1.5, 2.0)     # mm
BALL = (30, 25, 19)           # voxel centre of the FN ball: right, anterior, superior (~3/4)
CODES = ["RAS", "LPS", "LAS", "ASL", "PIR", "SLP"]


def volumes():
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    # asymmetric grey: gradients along every axis plus a bright off-centre bar
    grey = (20 + 3 * x + 2 * y + 4 * z) % 200
    grey[(x > 5) & (x < 12) & (y > 8) & (y < 28)] = 240
    grey = grey.astype(np.int16)
    ref = np.zeros(SHAPE, np.uint8)
    organ = ((x - 15) / 9.0) ** 2 + ((y - 14) / 8.0) ** 2 + ((z - 10) / 6.0) ** 2 <= 1
    ref[organ] = 1
    pred = ref.copy()
    ball = (x - BALL[0]) ** 2 + (y - BALL[1]) ** 2 + (z - BALL[2]) ** 2 <= 9  # radius 3 voxels
    ref[ball] = 2
    aff = np.diag(list(SPACING) + [1.0])
    aff[:3, 3] = (-20.0, -30.0, -25.0)
    return grey, ref, pred, aff


def reorient(arr, aff, code):
    t = no.ornt_transform(no.axcodes2ornt("RAS"), no.axcodes2ornt(tuple(code)))
    out = no.apply_orientation(arr, t)
    new_aff = aff @ no.inv_ornt_aff(t, arr.shape)
    got = "".join(nib.aff2axcodes(new_aff))
    if got != code:
        raise SystemExit("internal: reoriented affine is %s, wanted %s" % (got, code))
    return np.ascontiguousarray(out), new_aff


def save(arr, aff, path):
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, path)


def blue_mask(rgb):
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    return (b > r + 40) & (b > g + 40)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    grey, ref, pred, aff = volumes()
    problems = []
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for code in CODES:
            paths = []
            for name, arr in (("img", grey), ("ref", ref), ("pred", pred)):
                a, na = reorient(arr, aff, code)
                p = os.path.join(tmp, "%s_%s.nii.gz" % (name, code))
                save(a, na, p)
                paths.append(p)
            out = os.path.join(tmp, "panel_%s.png" % code)
            r = subprocess.run([tool] + paths + [out, "0", "255"], capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL %s: panel-tool exit %d: %s" % (code, r.returncode, r.stderr.strip()))
                return 1
            info = json.loads(r.stdout)
            rgb = np.asarray(Image.open(out).convert("RGB"))
            if rgb.shape[:2] != (info["height"], info["width"]):
                problems.append("%s: PNG %s vs info %dx%d" % (code, rgb.shape, info["width"],
                                                               info["height"]))
            runs[code] = (info, rgb)

    base_info, base_rgb = runs["RAS"]
    tiles = base_info["tiles"]
    # the RAS frame: which in-plane world axes each plane shows (x across, y down), in mm
    plane_axes = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
    for t in tiles:
        if t["w"] <= 0:
            problems.append("RAS: no %s tile" % t["plane"])
            continue
        ax, ay = plane_axes[t["plane"]]
        want = SHAPE[ax] * SPACING[ax] / (SHAPE[ay] * SPACING[ay])
        got = t["w"] / t["h"]
        if abs(got - want) > 2.0 / min(t["w"], t["h"]):
            problems.append("%s: aspect %.4f (%dx%d), want %.4f" % (t["plane"], got, t["w"],
                                                                    t["h"], want))
        if t["errors"] != 29:  # central slice of a radius-3 ball: 29 voxels
            problems.append("%s: %d errors, want 29" % (t["plane"], t["errors"]))
    for code in CODES[1:]:
        info, rgb = runs[code]
        for tb, tc in zip(tiles, info["tiles"]):
            rect_b = [tb[k] for k in ("x", "y", "w", "h", "errors")]
            rect_c = [tc[k] for k in ("x", "y", "w", "h", "errors")]
            if rect_b != rect_c:
                problems.append("%s %s: tile x,y,w,h,errors %s, RAS gives %s" % (
                    code, tb["plane"], rect_c, rect_b))
                continue
            x, y, w, h = rect_b[:4]
            a = base_rgb[y:y + h, x:x + w]
            b = rgb[y:y + h, x:x + w]
            if a.shape != b.shape or not np.array_equal(a, b):
                n = int(np.any(a != b, axis=-1).sum()) if a.shape == b.shape else -1
                problems.append("%s %s: tile differs from RAS in %d pixels" % (code, tb["plane"],
                                                                                n))
        if (info["width"], info["height"]) != (base_info["width"], base_info["height"]):
            problems.append("%s: panel %dx%d, RAS %dx%d" % (code, info["width"], info["height"],
                                                             base_info["width"],
                                                             base_info["height"]))

    # where the ball must appear (fractions of the tile): screen x runs to L (axial, coronal) or
    # P (sagittal), screen y to P (axial) or I (coronal, sagittal)
    frac = [(b + 0.5) / n for b, n in zip(BALL, SHAPE)]   # towards R, A, S
    expect = {"axial": (1 - frac[0], 1 - frac[1]), "coronal": (1 - frac[0], 1 - frac[2]),
              "sagittal": (1 - frac[1], 1 - frac[2])}
    for t in tiles:
        if t["w"] <= 0:
            continue
        x, y, w, h = t["x"], t["y"], t["w"], t["h"]
        m = blue_mask(base_rgb[y:y + h, x:x + w])
        if m.sum() < 20:
            problems.append("%s: only %d blue pixels" % (t["plane"], int(m.sum())))
            continue
        ys, xs = np.nonzero(m)
        cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
        ex, ey = expect[t["plane"]]
        if not (cx < 0.5 and cy < 0.5):
            problems.append("%s: blue ball centroid at (%.2f, %.2f) of the tile, want the upper "
                            "left quarter" % (t["plane"], cx, cy))
        if abs(cx - ex) > 0.06 or abs(cy - ey) > 0.06:
            problems.append("%s: blue ball centroid at (%.3f, %.3f), want (%.3f, %.3f)"
                            % (t["plane"], cx, cy, ex, ey))
        # a red (FP) pixel would mean the prediction was misread
        r, g, b = (base_rgb[y:y + h, x:x + w, c].astype(int) for c in range(3))
        if ((r > g + 40) & (r > b + 40)).any():
            problems.append("%s: red pixels in an FN-only case" % t["plane"])

    for p in problems:
        print("FAIL " + p)
    if problems:
        return 1
    print("ok: %d orientations (%s) give the same tiles; blob positions and aspect hold"
          % (len(CODES), ", ".join(CODES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
