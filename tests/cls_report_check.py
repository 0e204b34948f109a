#!/usr/bin/python3
"""Independent readers for tests/test_cls_report.c (report/cls_report.c, mk_cls_report.h).

usage:
  cls_report_check.py h5 H5 JSON INPUTS
      classification.h5 read with h5py: /classes, /slides, /slide_group (strings), per model a
      group with truth int64 [n], prob float64 [n][nclass], slide int64 [n], confusion int64
      [nclass][nclass] and the attributes accuracy, balanced_accuracy, auc; the arrays must equal
      the inputs the test wrote (INPUTS: "classes c0 c1 ...", "slides ...", "groups ...", then per
      model "model NAME N" and N lines "truth slide p_0 ... p_{nclass-1}"), confusion and the
      attributes must equal JSON's "overall" (null there = NaN here).
  cls_report_check.py png PNG THUMB TW TH W H TOP RX RY BX BY PX PY
      the heat map read with PIL: size W x H, RGB; THUMB is the thumbnail's raw RGB8 bytes
      (TW x TH), drawn at (0, TOP): every thumbnail pixel with x >= PX or y >= PY (outside every
      patch) equals the thumbnail's; the pixel of thumbnail (RX, RY) is reddish (R > B + 40), the
      one at (BX, BY) bluish (B > R + 40), each raised over the thumbnail's by more than 40.
exit 0 when every check passes, 1 otherwise (one line per failure), 2 on usage
"""
import json
import math
import sys

FAILS = []


def check(ok, what):
    if not ok:
        FAILS.append(what)


def read_inputs(path):
    out = {"models": []}
    with open(path, encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f]
    i = 0
    while i < len(lines):
        w = lines[i].split(" ")
        if w[0] in ("classes", "slides", "groups"):
            out[w[0]] = w[1:]
            i += 1
        elif w[0] == "model":
            name, n = w[1], int(w[2])
            rows = [lines[i + 1 + k].split() for k in range(n)]
            out["models"].append({
                "name": name,
                "truth": [int(r[0]) for r in rows],
                "slide": [int(r[1]) for r in rows],
                "prob": [[float(v) for v in r[2:]] for r in rows],
            })
            i += 1 + n
        else:
            raise ValueError("%s: line %d: unexpected '%s'" % (path, i + 1, w[0]))
    return out


def same(a, b):
    if b is None:
        return math.isnan(a)
    return a == b


def check_h5(h5path, jpath, ipath):
    import h5py
    import numpy as np
    inp = read_inputs(ipath)
    with open(jpath, encoding="utf-8") as f:
        rep = json.load(f)
    nclass = len(inp["classes"])
    with h5py.File(h5path, "r") as h:
        for key, want in (("classes", inp["classes"]), ("slides", inp["slides"]),
                          ("slide_group", inp.get("groups"))):
            if want is None:
                check(key not in h, "/%s present without groups" % key)
                continue
            check(key in h, "/%s missing" % key)
            if key in h:
                got = [s.decode() if isinstance(s, bytes) else s for s in h[key][()]]
                check(got == want, "/%s: %r, want %r" % (key, got, want))
        check(sorted(h.keys()) == sorted(["classes", "slides", "slide_group"] +
                                         [m["name"] for m in inp["models"]]),
              "root members %r" % sorted(h.keys()))
        for m, jm in zip(inp["models"], rep["models"]):
            g = h[m["name"]]
            n = len(m["truth"])
            for key, dt, shape in (("truth", np.int64, (n,)), ("prob", np.float64, (n, nclass)),
                                   ("slide", np.int64, (n,)),
                                   ("confusion", np.int64, (nclass, nclass))):
                d = g[key]
                check(d.dtype == dt, "%s/%s dtype %s, want %s" % (m["name"], key, d.dtype,
                                                                  np.dtype(dt)))
                check(d.shape == shape, "%s/%s shape %s, want %s" % (m["name"], key, d.shape,
                                                                     shape))
            check(g["truth"][()].tolist() == m["truth"], "%s/truth values" % m["name"])
            check(g["slide"][()].tolist() == m["slide"], "%s/slide values" % m["name"])
            check(np.array_equal(g["prob"][()], np.array(m["prob"], dtype=np.float64)
                                 .reshape(n, nclass)), "%s/prob values" % m["name"])
            check(g["confusion"][()].tolist() == jm["overall"]["confusion"],
                  "%s/confusion %r vs JSON %r" % (m["name"], g["confusion"][()].tolist(),
                                                  jm["overall"]["confusion"]))
            conf = np.zeros((nclass, nclass), dtype=np.int64)
            for t, p in zip(m["truth"], m["prob"]):
                conf[t, int(np.argmax(p))] += 1
            check(g["confusion"][()].tolist() == conf.tolist(),
                  "%s/confusion vs numpy argmax" % m["name"])
            for a in ("accuracy", "balanced_accuracy", "auc"):
                check(a in g.attrs, "%s: attribute %s missing" % (m["name"], a))
                if a in g.attrs:
                    check(same(float(g.attrs[a]), jm["overall"][a]),
                          "%s.%s = %r, JSON %r" % (m["name"], a, g.attrs[a], jm["overall"][a]))


def check_png(args):
    from PIL import Image
    path, thumb = args[0], args[1]
    tw, th, W, H, top, rx, ry, bx, by, px, py = (int(v) for v in args[2:13])
    im = Image.open(path)
    check(im.size == (W, H), "size %r, want %r" % (im.size, (W, H)))
    im = im.convert("RGB")
    with open(thumb, "rb") as f:
        raw = f.read()
    check(len(raw) == tw * th * 3, "thumbnail file: %d bytes" % len(raw))

    def tpix(x, y):
        o = (y * tw + x) * 3
        return tuple(raw[o:o + 3])

    bad = 0
    for y in range(th):
        for x in range(tw):
            if x >= px or y >= py:
                if im.getpixel((x, y + top)) != tpix(x, y):
                    bad += 1
                    if bad <= 3:
                        FAILS.append("pixel (%d, %d): %r, thumbnail %r" %
                                     (x, y, im.getpixel((x, y + top)), tpix(x, y)))
    check(bad == 0, "%d pixels outside the patches differ from the thumbnail" % bad)
    r = im.getpixel((rx, ry + top))
    b = im.getpixel((bx, by + top))
    check(r[0] > r[2] + 40, "prob-1 patch pixel %r is not reddish" % (r,))
    check(b[2] > b[0] + 40, "prob-0 patch pixel %r is not bluish" % (b,))
    check(r[0] > tpix(rx, ry)[0] + 40, "prob-1 patch pixel %r: red not raised over the "
          "thumbnail's %r" % (r, tpix(rx, ry)))
    check(b[2] > tpix(bx, by)[2] + 40, "prob-0 patch pixel %r: blue not raised over the "
          "thumbnail's %r" % (b, tpix(bx, by)))


def main(argv):
    if len(argv) >= 5 and argv[1] == "h5":
        check_h5(argv[2], argv[3], argv[4])
    elif len(argv) == 15 and argv[1] == "png":
        check_png(argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for f in FAILS:
        print("cls_report_check: " + f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
