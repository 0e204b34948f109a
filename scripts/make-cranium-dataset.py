#!/usr/bin/python3
"""Cut the real cranium CT (shared/data/real/ct) into an nnU-Net v2 dataset of axial slabs.

    scripts/make-cranium-dataset.py DATASET_DIR [--shared DIR] [--slabs 6] [--test 1,4]
                                    [--labels-ts] [--reorient CASE=CODE ...] [--force]

The 256 x 256 x 108 CT (0.957 x 0.957 x 1.5 mm, int16 HU) and its label map (0 background,
1 soft tissue, 2 bone: InVesalius' threshold masks) are cut along k (inferior to superior) into
--slabs slabs of equal thickness (108 / 6 = 18 slices by default), named cranium_s0 .. cranium_sN-1
from the skull base up. Each slab keeps the original voxels and header; its affine is the
original one shifted by k0 slices, so every slab lies where it lay in the volume. The slabs in
--test (indices, default 1 and 4) become imagesTs/CASE_0000.nii.gz (and with --labels-ts also
labelsTs/CASE.nii.gz, outside nnU-Net's layout, for scoring); the others imagesTr/CASE_0000.nii.gz
and labelsTr/CASE.nii.gz. dataset.json: channel_names {"0": "CT"}, labels {"background": 0,
"soft_tissue": 1, "bone": 2}, numTraining, file_ending ".nii.gz".

--reorient CASE=CODE stores that case (image and label alike) in another axis order, e.g.
cranium_s2=LSA: the same voxels in the same places, permuted and flipped (nibabel's
as_closest_canonical inverse), to build mixed-orientation datasets.

DATASET_DIR is written in a temporary folder beside it and renamed into place; an existing
DATASET_DIR is refused unless --force (then replaced). --shared defaults to $MK_SHARED_DIR, else
../shared beside the repository. Exit 0 on success, 1 on bad input, 2 on usage errors.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import nibabel as nib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = {"background": 0, "soft_tissue": 1, "bone": 2}


def reoriented(img, code):
    """img stored with its voxel axes pointing along `code` (e.g. "LSA"); same world positions."""
    cur = nib.orientations.io_orientation(img.affine)
    want = nib.orientations.axcodes2ornt(tuple(code))
    tr = nib.orientations.ornt_transform(cur, want)
    return img.as_reoriented(tr)


def save(img, ref, path):
    """Write img with ref's header codes (qform/sform codes as the source's)."""
    hdr = ref.header.copy()
    out = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, header=hdr)
    out.set_qform(img.affine, code=int(ref.header["qform_code"]) or 1)
    out.set_sform(img.affine, code=int(ref.header["sform_code"]) or 1)
    out.set_data_dtype(ref.get_data_dtype())
    nib.save(out, path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset_dir")
    ap.add_argument("--shared", default=os.environ.get("MK_SHARED_DIR") or
                    os.path.join(os.path.dirname(ROOT), "shared"))
    ap.add_argument("--slabs", type=int, default=6)
    ap.add_argument("--test", default="1,4", help="slab indices for imagesTs (comma-separated)")
    ap.add_argument("--labels-ts", action="store_true", help="also write labelsTs/ for the test slabs")
    ap.add_argument("--reorient", action="append", default=[], metavar="CASE=CODE")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    ct_path = os.path.join(a.shared, "data/real/ct/cranium_ct.nii.gz")
    lab_path = os.path.join(a.shared, "data/real/ct/cranium_labels.nii.gz")
    for p in (ct_path, lab_path):
        if not os.path.isfile(p):
            print("error: %s: no such file (set --shared or MK_SHARED_DIR)" % p, file=sys.stderr)
            return 1
    ct, lab = nib.load(ct_path), nib.load(lab_path)
    nk = ct.shape[2]
    if a.slabs < 2 or nk % a.slabs:
        print("error: --slabs: expected a divisor of %d that is >= 2, got %d" % (nk, a.slabs),
              file=sys.stderr)
        return 2
    try:
        test = sorted({int(t) for t in a.test.split(",") if t.strip()})
    except ValueError:
        print("error: --test: expected slab indices like 1,4, got '%s'" % a.test, file=sys.stderr)
        return 2
    if any(t < 0 or t >= a.slabs for t in test) or len(test) >= a.slabs:
        print("error: --test: expected indices in 0..%d leaving a training slab, got '%s'"
              % (a.slabs - 1, a.test), file=sys.stderr)
        return 2
    reo = {}
    for r in a.reorient:
        case, _, code = r.partition("=")
        if len(code) != 3 or set(code.upper()) - set("RLAPSI"):
            print("error: --reorient: expected CASE=CODE (e.g. cranium_s2=LSA), got '%s'" % r,
                  file=sys.stderr)
            return 2
        reo[case] = code.upper()
    out = os.path.abspath(a.dataset_dir)
    if os.path.exists(out) and not a.force:
        print("error: %s exists (use --force to replace it)" % out, file=sys.stderr)
        return 1
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".cranium-", dir=parent)
    try:
        for sub in ("imagesTr", "labelsTr", "imagesTs") + (("labelsTs",) if a.labels_ts else ()):
            os.mkdir(os.path.join(tmp, sub))
        ctd = np.asarray(ct.dataobj)
        labd = np.asarray(lab.dataobj)
        t = nk // a.slabs
        ntrain = 0
        for s in range(a.slabs):
            case = "cranium_s%d" % s
            shift = np.eye(4)
            shift[2, 3] = s * t
            aff = ct.affine @ shift
            im = nib.Nifti1Image(ctd[:, :, s * t:(s + 1) * t], aff)
            lb = nib.Nifti1Image(labd[:, :, s * t:(s + 1) * t], aff)
            if case in reo:
                im, lb = reoriented(im, reo[case]), reoriented(lb, reo[case])
            is_test = s in test
            save(im, ct, os.path.join(tmp, "imagesTs" if is_test else "imagesTr",
                                      case + "_0000.nii.gz"))
            if not is_test:
                save(lb, lab, os.path.join(tmp, "labelsTr", case + ".nii.gz"))
                ntrain += 1
            elif a.labels_ts:
                save(lb, lab, os.path.join(tmp, "labelsTs", case + ".nii.gz"))
        ds = {
            "name": "Cranium",
            "description": "the real cranium CT of shared/data/real/ct cut into %d axial slabs "
                           "of %d slices (scripts/make-cranium-dataset.py)" % (a.slabs, t),
            "channel_names": {"0": "CT"},
            "labels": LABELS,
            "numTraining": ntrain,
            "file_ending": ".nii.gz",
        }
        with open(os.path.join(tmp, "dataset.json"), "w") as f:
            json.dump(ds, f, indent=2)
            f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print("%s: %d training slabs, %d test slabs of %d slices" % (out, ntrain, len(test), t))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
