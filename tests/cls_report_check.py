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
  cls_report_check.py html HTML JSON H5 IMAGES
      classification.html (mk_cls_report_html) parsed with html.parser: elements balanced, no
      external resource (every src a data: URI, no link/script src); the summary rows
      (data-model, data-scope), the slide rows and the confusion cells equal JSON's figures (as
      printed: 4 decimals, "\u2013" for null); every ROC polyline's data-roc equals the ROC that
      numpy computes from H5's truth/prob over that scope (slides of a group from /slide_group)
      and its trapezoid area equals data-auc and JSON's auc_class; IMAGES = "A:2,B:0" the number
      of embedded heat maps per model, each a PNG that PIL decodes, at most 480 px wide.
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


def fmt(v, dec):
    return "\u2013" if v is None else "%.*f" % (dec, v)


def roc_np(truth, score):
    """(fpr, tpr) at every distinct score, highest first, from (0, 0)."""
    import numpy as np
    order = np.argsort(-score, kind="stable")
    s, t = score[order], truth[order]
    P, N = t.sum(), len(t) - t.sum()
    pts = [(0.0, 0.0)]
    tp = fp = 0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            tp += int(t[j])
            fp += int(1 - t[j])
            j += 1
        pts.append((fp / N, tp / P))
        i = j
    return pts


def check_html(hpath, jpath, h5path, images):
    import base64
    import io
    from html.parser import HTMLParser
    import h5py
    import numpy as np
    from PIL import Image
    VOID = {"meta", "img", "br", "hr", "input", "link", "line", "polyline", "rect", "circle",
            "path"}

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.rows, self.cell, self.cells = [], [], None, None
            self.polys, self.conf, self.imgs, self.fig = [], {}, {}, None
            self.conf_model = None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag not in VOID:
                self.stack.append(tag)
            for k in ("src", "href"):
                v = a.get(k)
                if v is not None and k == "src":
                    check(v.startswith("data:"), "external resource %s=%r" % (k, v[:60]))
                if v is not None and k == "href":
                    check(not v.startswith(("http:", "https:", "//")),
                          "external link %r" % v)
            check(tag != "link", "a <link> element")
            if tag == "tr" and ("data-scope" in a or "data-slide" in a):
                self.cells = []
                self.rows.append((a, self.cells))
            if tag == "td" and self.cells is not None:
                self.cell = []
            if tag == "polyline" and "data-roc" in a:
                self.polys.append(a)
            if tag == "table" and "data-model" in a and "confusion" in a.get("class", ""):
                self.conf_model = a["data-model"]
                self.conf[self.conf_model] = []
            if tag == "tr" and self.conf_model is not None:
                self.conf[self.conf_model].append([])
            if tag == "td" and self.conf_model is not None:
                self.conf[self.conf_model][-1].append(int(a["data-count"]))
            if tag == "figure" and "data-slide" in a:
                self.fig = a["data-model"]
            if tag == "img" and self.fig is not None:
                src = a.get("src", "")
                check(src.startswith("data:image/png;base64,"), "heat map not a PNG data URI")
                im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
                im.load()
                check(im.size[0] <= 480, "heat map %d px wide" % im.size[0])
                check(im.size == (int(a["width"]), int(a["height"])),
                      "heat map size %r vs its attributes" % (im.size,))
                self.imgs[self.fig] = self.imgs.get(self.fig, 0) + 1

        def handle_endtag(self, tag):
            if tag in VOID:
                return
            check(bool(self.stack) and self.stack[-1] == tag,
                  "</%s> closes %r" % (tag, self.stack[-1:] or None))
            if self.stack:
                self.stack.pop()
            if tag == "td" and self.cell is not None:
                self.cells.append("".join(self.cell).strip())
                self.cell = None
            if tag == "tr":
                self.cells = None
            if tag == "table":
                self.conf_model = None
            if tag == "figure":
                self.fig = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    with open(hpath, encoding="utf-8") as f:
        text = f.read()
    p = P()
    p.feed(text)
    p.close()
    check(p.stack == [], "unclosed elements %r" % p.stack)
    with open(jpath, encoding="utf-8") as f:
        js = json.load(f)
    C = len(js["classes"])
    models = {m["name"]: m for m in js["models"]}
    nsum = nsl = 0
    for a, cells in p.rows:
        if "data-scope" in a:
            nsum += 1
            m = models[a["data-model"]]
            sc = m["overall"] if a["data-scope"] == "overall" else m["groups"][a["data-scope"]]
            want = [str(sc["n"]), fmt(sc["accuracy"], 4), fmt(sc["balanced_accuracy"], 4),
                    fmt(sc["auc"], 4)]
            for c in range(C):
                want += [fmt(sc["precision"][c], 3), fmt(sc["recall"][c], 3), fmt(sc["f1"][c], 3)]
            check(cells[2:] == want, "summary %s/%s: %r, JSON %r" %
                  (a["data-model"], a["data-scope"], cells[2:], want))
        else:
            nsl += 1
            want = []
            for m in js["models"]:
                sc = m["slides"][a["data-slide"]]
                want += [str(sc["n"]), fmt(sc["accuracy"], 4), fmt(sc["auc"], 4)]
            check(cells[2:] == want, "slide %s: %r, JSON %r" % (a["data-slide"], cells[2:], want))
    ngroups = len(js["models"][0]["groups"]) if js["models"] else 0
    check(nsum == len(models) * (1 + ngroups), "%d summary rows" % nsum)
    check(nsl == len(js["models"][0]["slides"]), "%d slide rows" % nsl)
    for name, m in models.items():
        rows = [r for r in p.conf.get(name, []) if r]
        check(rows == m["overall"]["confusion"], "confusion %s: %r, JSON %r" %
              (name, rows, m["overall"]["confusion"]))
    h5 = h5py.File(h5path, "r")
    slides = [x.decode() if isinstance(x, bytes) else x for x in h5["slides"][()]]
    groups = ([x.decode() if isinstance(x, bytes) else x for x in h5["slide_group"][()]]
              if "slide_group" in h5 else None)
    npoly = 0
    for a in p.polys:
        npoly += 1
        g = h5[a["data-model"]]
        truth, prob, sl = g["truth"][()], g["prob"][()].astype(np.float32), g["slide"][()]
        c = int(a["data-class"])
        keep = np.ones(len(truth), bool)
        if a["data-scope"] != "overall":
            keep = np.array([groups[s] == a["data-scope"] for s in sl], bool)
        want = roc_np((truth[keep] == c).astype(np.int64), prob[keep, c])
        got = [tuple(float(v) for v in q.split(",")) for q in a["data-roc"].split(" ")]
        check(len(got) == len(want) and
              all(abs(x[0] - y[0]) < 1e-12 and abs(x[1] - y[1]) < 1e-12
                  for x, y in zip(got, want)),
              "ROC %s/%s/%d: %d points vs numpy's %d" % (a["data-model"], a["data-scope"], c,
                                                         len(got), len(want)))
        area = sum((got[k][0] - got[k - 1][0]) * (got[k][1] + got[k - 1][1]) / 2
                   for k in range(1, len(got)))
        m = models[a["data-model"]]
        sc = m["overall"] if a["data-scope"] == "overall" else m["groups"][a["data-scope"]]
        check(abs(area - float(a["data-auc"])) < 1e-9, "ROC %s/%s/%d: trapezoid %r, data-auc %r"
              % (a["data-model"], a["data-scope"], c, area, a["data-auc"]))
        check(sc["auc_class"][c] is not None and abs(float(a["data-auc"]) - sc["auc_class"][c]) <
              1e-12, "ROC %s: data-auc %r, JSON %r" % (a["data-model"], a["data-auc"],
                                                    sc["auc_class"][c]))
    check(npoly > 0, "no ROC curve")
    for kv in images.split(","):
        name, k = kv.split(":")
        check(p.imgs.get(name, 0) == int(k), "model %s: %d heat maps, want %s" %
              (name, p.imgs.get(name, 0), k))


def main(argv):
    if len(argv) >= 5 and argv[1] == "h5":
        check_h5(argv[2], argv[3], argv[4])
    elif len(argv) == 6 and argv[1] == "html":
        check_html(argv[2], argv[3], argv[4], argv[5])
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
