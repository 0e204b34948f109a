#!/usr/bin/python3
"""Writes the fuzzers' seed corpora (fuzz/corpus/<target>/), committed in the tree; kept so the
seeds can be remade and their origin read. Run from the checkout: /usr/bin/python3
fuzz/make_seeds.py (needs numpy, nibabel, PIL). Seeds are small valid or near-valid inputs, each
reaching a different path of its reader; libFuzzer mutates from there.

  nifti         NIfTI-1 and -2 written by nibabel: int16/uint8/float32/float64, 2-D..4-D, qform and
                sform, scaling, an extension, gzip
  toml          the example configs of examples/ and a few hand-written edge cases
  tiff          striped and tiled TIFFs (PIL: RGB, gray, palette, LZW, deflate, JPEG; the tiled
                pyramid written by `pipeline tiles` is added by fuzz/run.sh --seeds when built)
  manifest      the manifests of data-manifests/ and quoting/BOM/CRLF cases, label-name tables
  dataset_json  nnU-Net v2 and MSD dataset.json files
  dicom         DICOM series (explicit VR little endian, written below from the standard's data
                element layout), one folder per input with files split by "MKFUZZ-FILE\\n": a
                3-slice series, a series with a missing slice, two series in one folder, an
                oblique slice, and the real CT_small.dcm of shared/ when present
"""
import io
import os
import struct
import sys

import nibabel as nib
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def nifti_seeds():
    rng = np.random.default_rng(1)
    aff = np.array([[-0.8, 0, 0, 10], [0, 0.8, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    cases = [
        ("i16_3d", nib.Nifti1Image(rng.integers(-1024, 2000, (6, 5, 4)).astype(np.int16), aff)),
        ("u8_label", nib.Nifti1Image(rng.integers(0, 3, (5, 5, 3)).astype(np.uint8), np.eye(4))),
        ("f32_4d", nib.Nifti1Image(rng.random((4, 3, 3, 2)).astype(np.float32), aff)),
        ("f64_2d", nib.Nifti1Image(rng.random((7, 6)).astype(np.float64), aff)),
        ("nifti2", nib.Nifti2Image(rng.integers(0, 9, (4, 4, 3)).astype(np.int32), aff)),
    ]
    scaled = nib.Nifti1Image(rng.integers(0, 100, (4, 4, 2)).astype(np.int16), aff)
    scaled.header.set_slope_inter(0.5, -10)
    cases.append(("scaled", scaled))
    ext = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), aff)
    ext.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"medkd fuzz seed\0"))
    cases.append(("extension", ext))
    qs = nib.Nifti1Image(np.ones((3, 4, 2), np.float32), aff)
    qs.set_qform(aff, code=1)
    qs.set_sform(None, code=0)
    cases.append(("qform_only", qs))
    for name, img in cases:
        b = img.to_bytes()
        put("nifti", name + ".nii", b)
    import gzip
    put("nifti", "i16_3d.nii.gz", gzip.compress(cases[0][1].to_bytes(), mtime=0))


def toml_seeds():
    ex = os.path.join(ROOT, "examples")
    for n in sorted(os.listdir(ex)):
        if n.endswith(".toml"):
            with open(os.path.join(ex, n), "rb") as f:
                put("toml", n, f.read())
    put("toml", "edge.toml", b'''# TOML edge cases
[run]
name = "e\\u00e9\\t"
stages = ["synth", "baseline", 'evaluate']
seed = 0x1F
[synth]
kind = "cardiac"
size = [16, 16, 4]
contrast = 1e0
noise = inf
[data.labels]
1 = "RV"
"2" = """MYO"""
[[extra.list]]
a = 1979-05-27T07:32:00Z
b = { c = [1, 2.5, true], d = 'x' }
''')
    put("toml", "dotted.toml", b'run.stages = ["translate"]\nrun."out_dir" = "r"\n'
        b'translate.iterations = 10\ntranslate.lr = 2e-4\nmodel.width = 4\n')


def tiff_seeds():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (24, 20, 3)).astype(np.uint8)
    rgb[8:16, 6:14] = (180, 60, 140)
    for name, mode, kw in [("rgb_lzw", "RGB", {"compression": "tiff_lzw"}),
                           ("rgb_deflate", "RGB", {"compression": "tiff_adobe_deflate"}),
                           ("rgb_jpeg", "RGB", {"compression": "jpeg", "quality": 80}),
                           ("gray_raw", "L", {}), ("palette", "P", {}), ("rgba", "RGBA", {})]:
        im = Image.fromarray(rgb).convert(mode)
        b = io.BytesIO()
        im.save(b, format="TIFF", **kw)
        put("tiff", name + ".tif", b.getvalue())
    # two pages: a level 0 and a half-size level
    b = io.BytesIO()
    im0 = Image.fromarray(rgb)
    im0.save(b, format="TIFF", save_all=True, append_images=[im0.resize((10, 12))],
             compression="tiff_lzw")
    put("tiff", "two_levels.tif", b.getvalue())


def manifest_seeds():
    dm = os.path.join(ROOT, "data-manifests")
    for n in sorted(os.listdir(dm)):
        if n.endswith(".csv"):
            with open(os.path.join(dm, n), "rb") as f:
                put("manifest", n, f.read()[:4000])
    put("manifest", "quoted.csv", b'\xef\xbb\xbfid,image,label,modality,split,domain,note\r\n'
        b'a,"im,1.nii.gz",lab.nii.gz,CT,train,siteA,"say ""hi""\r\nthere"\r\n'
        b'b,im2.nii.gz,,MR,test,,\r\n\r\n')
    put("manifest", "table.csv", b"id,split,modality\na,val,MR\n")
    put("manifest", "names.csv", b"value,name\n0,background\n1,liver\n2,tumour\n")
    put("manifest", "names.txt", b"# FreeSurfer-style\n0 Unknown 0 0 0 0\n17 Left-Hippocampus 220 216 20 0\n"
        b"53\tRight-Hippocampus\n")


def dataset_json_seeds():
    put("dataset_json", "nnunet_v2.json", b'''{
 "channel_names": {"0": "CT", "1": "PET"},
 "labels": {"background": 0, "liver": 1, "tumour": 2, "region": [1, 2]},
 "numTraining": 2, "file_ending": ".nii.gz", "name": "Fuzz"
}''')
    put("dataset_json", "msd.json", b'''{
 "name": "LA", "modality": {"0": "MRI"},
 "labels": {"0": "background", "1": "left atrium"},
 "numTraining": 1, "numTest": 1,
 "training": [{"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"}],
 "test": ["./imagesTs/la_004.nii.gz"]
}''')
    put("dataset_json", "mha.json", b'{"channel_names": {"0": "MR"}, "labels": {"background": 0, '
        b'"lesion": 1}, "numTraining": 1, "file_ending": ".mha"}')


# ---- DICOM: explicit VR little endian, from the data element layout of PS3.5 section 7.1.2 ----
LONG_VR = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"}


def elem(group, element, vr, value):
    if isinstance(value, str):
        value = value.encode()
        if len(value) % 2:
            value += b"\0" if vr == b"UI" else b" "
    elif len(value) % 2:
        value += b"\0"
    head = struct.pack("<HH", group, element) + vr
    if vr in LONG_VR:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def us(v):
    return struct.pack("<H", v)


def dicom_file(series, instance, ipp, iop="1\\0\\0\\0\\1\\0", rows=6, cols=5, study="2.25.1001"):
    sop_class = "1.2.840.10008.5.1.4.1.1.2"
    sop_inst = "%s.%d" % (series, instance)
    meta_body = (elem(0x0002, 0x0001, b"OB", b"\0\1") + elem(0x0002, 0x0002, b"UI", sop_class) +
                 elem(0x0002, 0x0003, b"UI", sop_inst) +
                 elem(0x0002, 0x0010, b"UI", "1.2.840.10008.1.2.1") +
                 elem(0x0002, 0x0012, b"UI", "2.25.7"))
    meta = elem(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta_body))) + meta_body
    px = (np.arange(rows * cols, dtype=np.int16) * 7 + instance * 100 - 500).tobytes()
    ds = b"".join([
        elem(0x0008, 0x0016, b"UI", sop_class), elem(0x0008, 0x0018, b"UI", sop_inst),
        elem(0x0008, 0x0060, b"CS", "CT"), elem(0x0008, 0x103E, b"LO", "fuzz seed"),
        elem(0x0010, 0x0010, b"PN", "FUZZ^SEED"), elem(0x0018, 0x0050, b"DS", "2.5"),
        elem(0x0020, 0x000D, b"UI", study), elem(0x0020, 0x000E, b"UI", series),
        elem(0x0020, 0x0013, b"IS", str(instance)), elem(0x0020, 0x0032, b"DS", ipp),
        elem(0x0020, 0x0037, b"DS", iop), elem(0x0028, 0x0002, b"US", us(1)),
        elem(0x0028, 0x0004, b"CS", "MONOCHROME2"), elem(0x0028, 0x0010, b"US", us(rows)),
        elem(0x0028, 0x0011, b"US", us(cols)), elem(0x0028, 0x0030, b"DS", "0.8\\0.7"),
        elem(0x0028, 0x0100, b"US", us(16)), elem(0x0028, 0x0101, b"US", us(16)),
        elem(0x0028, 0x0102, b"US", us(15)), elem(0x0028, 0x0103, b"US", us(1)),
        elem(0x0028, 0x1052, b"DS", "-1024"), elem(0x0028, 0x1053, b"DS", "1"),
        elem(0x7FE0, 0x0010, b"OW", px)])
    return b"\0" * 128 + b"DICM" + meta + ds


SEP = b"MKFUZZ-FILE\n"


def dicom_seeds():
    s1 = "2.25.2001"
    put("dicom", "series3", SEP.join(dicom_file(s1, i + 1, "-2\\-3\\%g" % (2.5 * i)) for i in range(3)))
    put("dicom", "gap", SEP.join(dicom_file(s1, i + 1, "0\\0\\%g" % (2.5 * z))
                                 for i, z in enumerate([0, 1, 3, 4])))
    put("dicom", "two_series", SEP.join([dicom_file("2.25.3001", 1, "0\\0\\0"),
                                         dicom_file("2.25.3002", 1, "0\\0\\0", rows=4, cols=4),
                                         dicom_file("2.25.3001", 2, "0\\0\\2.5"),
                                         dicom_file("2.25.3002", 2, "0\\0\\5", rows=4, cols=4)]))
    put("dicom", "oblique", dicom_file("2.25.4001", 1, "1\\2\\3",
                                       iop="0.8660254\\0.5\\0\\-0.5\\0.8660254\\0"))
    small = os.path.join(ROOT, "..", "shared", "data", "real", "ct", "original", "CT_small.dcm")
    if os.path.exists(small):
        with open(small, "rb") as f:
            put("dicom", "CT_small", f.read())


if __name__ == "__main__":
    os.chdir(ROOT)
    for fn in (nifti_seeds, toml_seeds, tiff_seeds, manifest_seeds, dataset_json_seeds, dicom_seeds):
        fn()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))), "seeds")
    sys.exit(0)
