#!/usr/bin/python3
"""Independent references for tests/test_histo.c (histo/mk_histo.h), numpy / scipy / h5py.

usage: histo_ref.py COMMAND ARGS...   (raw files: C order, little-endian, no header)
  median IN OUT W H K          uint8 [H,W] -> scipy.ndimage.median_filter(size=K, mode='nearest')
  mask RGB OUT W H K T         uint8 [H,W,3] -> the tissue mask: HSV saturation
                               (255 (max - min) + max // 2) // max, near-black (max <= 16) 0,
                               median K (K > 1), tissue = not near-black and S > T
  dihedral IN OUT CH N         float32 [CH,N,N] -> float32 [8,CH,N,N]: fliplr(rot90(p, d & 3))
                               when d & 4, else rot90(p, d & 3)
  reinhard IN OUT N M0 M1 M2 S0 S1 S2
                               uint8 [N,N,3] -> float64 [3,N,N]: Reinhard in CIE L*a*b*
  labstats IN N                float32 [3,N,N] in 0..1 -> prints the L*, a*, b* means and
                               standard deviations (6 numbers)
  h5check PATH XY N LEVEL SIZE STRIDE DS W H SLIDE
                               a grid file: coords int64 [N,2] equal to XY (int64 raw), its
                               attributes, tissue/label_frac float32 [N], label int32 [N]
  clam PATH                    writes a CLAM-style file (coords and CLAM's attributes only)
Exit 0 on success; 1 with a message on a failed check.
"""
import sys

import numpy as np

# sRGB D65 (IEC 61966-2-1) and the CIE L*a*b* white point
M = np.array([[0.4124564, 0.3575761, 0.1804375],
              [0.2126729, 0.7151522, 0.0721750],
              [0.0193339, 0.1191920, 0.9503041]])
MINV = np.array([[3.2404542, -1.5371385, -0.4985314],
                 [-0.9692660, 1.8760108, 0.0415560],
                 [0.0556434, -0.2040259, 1.0572252]])
WHITE = np.array([0.95047, 1.0, 1.08883])
D = 6.0 / 29.0


def rgb01_to_lab(rgb):
    """rgb [..., 3] in 0..1 -> L*a*b* [..., 3]"""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ M.T / WHITE
    f = np.where(xyz > D ** 3, np.cbrt(xyz), xyz / (3 * D * D) + 4.0 / 29.0)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def lab_to_rgb255(lab):
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f > D, f ** 3, 3 * D * D * (f - 4.0 / 29.0)) * WHITE
    lin = xyz @ MINV.T
    with np.errstate(invalid="ignore"):
        srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.abs(lin) ** (1 / 2.4) - 0.055)
    return np.clip(255 * srgb, 0, 255)


def fail(msg):
    print(msg)
    sys.exit(1)


def main(a):
    cmd = a[0]
    if cmd == "median":
        from scipy import ndimage
        w, h, k = int(a[3]), int(a[4]), int(a[5])
        img = np.fromfile(a[1], dtype=np.uint8).reshape(h, w)
        ndimage.median_filter(img, size=k, mode="nearest").astype(np.uint8).tofile(a[2])
    elif cmd == "mask":
        from scipy import ndimage
        w, h, k, t = int(a[3]), int(a[4]), int(a[5]), int(a[6])
        rgb = np.fromfile(a[1], dtype=np.uint8).reshape(h, w, 3).astype(np.int64)
        mx, mn = rgb.max(axis=2), rgb.min(axis=2)
        sat = np.where(mx > 0, (255 * (mx - mn) + mx // 2) // np.maximum(mx, 1), 0)
        black = mx <= 16
        sat[black] = 0
        sat = sat.astype(np.uint8)
        if k > 1:
            sat = ndimage.median_filter(sat, size=k, mode="nearest")
        ((~black) & (sat > t)).astype(np.uint8).tofile(a[2])
    elif cmd == "dihedral":
        ch, n = int(a[3]), int(a[4])
        x = np.fromfile(a[1], dtype=np.float32).reshape(ch, n, n)
        out = []
        for d in range(8):
            planes = []
            for c in range(ch):
                p = np.rot90(x[c], d & 3)
                if d & 4:
                    p = np.fliplr(p)
                planes.append(p)
            out.append(np.stack(planes))
        np.ascontiguousarray(np.stack(out), dtype=np.float32).tofile(a[2])
    elif cmd == "reinhard":
        n = int(a[3])
        tm = np.array([float(v) for v in a[4:7]])
        ts = np.array([float(v) for v in a[7:10]])
        rgb = np.fromfile(a[1], dtype=np.uint8).reshape(n, n, 3).astype(np.float64) / 255
        lab = rgb01_to_lab(rgb)
        mean = lab.reshape(-1, 3).mean(axis=0)
        sd = lab.reshape(-1, 3).std(axis=0)
        sd = np.where(sd < 1e-6, 1.0, sd)
        out = lab_to_rgb255((lab - mean) / sd * ts + tm) / 255
        np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float64).tofile(a[2])
    elif cmd == "labstats":
        n = int(a[2])
        chw = np.fromfile(a[1], dtype=np.float32).reshape(3, n, n).astype(np.float64)
        lab = rgb01_to_lab(chw.transpose(1, 2, 0)).reshape(-1, 3)
        print(" ".join("%.9f" % v for v in list(lab.mean(axis=0)) + list(lab.std(axis=0))))
    elif cmd == "h5check":
        import h5py
        path, n = a[1], int(a[3])
        xy = np.fromfile(a[2], dtype=np.int64).reshape(n, 2)
        with h5py.File(path, "r") as f:
            c = f["coords"]
            if c.dtype != np.int64 or c.shape != (n, 2):
                fail("coords: dtype %s shape %s, expected int64 (%d, 2)" % (c.dtype, c.shape, n))
            if not np.array_equal(c[()], xy):
                fail("coords: values differ")
            want = {"patch_level": int(a[4]), "patch_size": int(a[5]), "stride": int(a[6])}
            for k, v in want.items():
                got = c.attrs[k]
                if np.ndim(got) != 0 or int(got) != v:
                    fail("coords.%s: %r, expected the scalar %d" % (k, got, v))
            if abs(float(c.attrs["downsample"]) - float(a[7])) > 1e-12:
                fail("coords.downsample: %r, expected %s" % (c.attrs["downsample"], a[7]))
            ld = np.asarray(c.attrs["level_dim"])
            if ld.shape != (2,) or list(ld) != [int(a[8]), int(a[9])]:
                fail("coords.level_dim: %r, expected [%s, %s]" % (ld, a[8], a[9]))
            s = c.attrs["slide"]
            s = s.decode() if isinstance(s, bytes) else str(s)
            if s != a[10]:
                fail("coords.slide: %r, expected %r" % (s, a[10]))
            for name, dt in (("tissue", np.float32), ("label", np.int32),
                             ("label_frac", np.float32)):
                d = f[name]
                if d.dtype != dt or d.shape != (n,):
                    fail("%s: dtype %s shape %s, expected %s (%d,)" % (name, d.dtype, d.shape,
                                                                       np.dtype(dt), n))
        print("ok")
    elif cmd == "clam":
        import h5py
        with h5py.File(a[1], "w") as f:
            d = f.create_dataset("coords", data=np.array([[0, 0], [64, 32], [128, 96]], np.int64))
            d.attrs["patch_level"] = 1
            d.attrs["patch_size"] = 32
            d.attrs["downsample"] = np.array([2.0, 2.0])
            d.attrs["downsampled_level_dim"] = np.array([256, 192])
            d.attrs["level_dim"] = np.array([256, 192])
            d.attrs["name"] = "slide"
    else:
        fail("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
