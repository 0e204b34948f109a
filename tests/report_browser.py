#!/usr/bin/python3
"""Load a medkd HTML report in headless Chromium and check that it rendered.

Talks the DevTools protocol over --remote-debugging-pipe (file descriptors 3 and 4, messages
separated by NUL bytes), so nothing but Chromium and the standard library is needed. Checks:
no console error or uncaught exception, no failed resource load and no request leaving the
file (the page must be self-contained), the expected numbers of case tables, case rows and
panel images, every image decoded (naturalWidth > 0), that clicking a column heading sorts its
table, a full-page screenshot that is not blank, and that the page prints to PDF.

usage: report_browser.py REPORT.html --models N --cases N --panels N [--screenshot OUT.png]
"""
import argparse
import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image


class Browser:
    def __init__(self):
        exe = shutil.which("chromium")
        if not exe:
            sys.exit("FAIL: chromium not found (Debian package chromium, scripts/deps.list)")
        self.profile = tempfile.mkdtemp(prefix="medkd-chromium-")
        r_cmd, w_cmd = os.pipe()  # we write commands -> chromium reads fd 3
        r_ev, w_ev = os.pipe()    # chromium writes fd 4 -> we read
        # the child's ends, moved above 4 so that the dup2 onto 3 and 4 below always happens
        for fd in (r_cmd, w_ev):
            hi = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
            os.close(fd)
            if fd == r_cmd:
                r_cmd = hi
            else:
                w_ev = hi
        def child():
            os.dup2(r_cmd, 3)
            os.dup2(w_ev, 4)
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--disable-sync",
             "--hide-scrollbars", "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
             "about:blank"],
            pass_fds=(3, 4, r_cmd, w_ev), preexec_fn=child, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_ev)
        self.w = os.fdopen(w_cmd, "wb", buffering=0)
        self.r = os.fdopen(r_ev, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read(self, deadline):
        while b"\0" not in self.buf:
            if time.time() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = self.r.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        m = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        self.w.write(json.dumps(m).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name, timeout=60):
        deadline = time.time() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == name:
                return self.events.pop(i)
        while True:
            e = self._read(deadline)
            if e.get("method") == name:
                return e
            self.events.append(e)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("html")
    ap.add_argument("--models", type=int, required=True)
    ap.add_argument("--cases", type=int, required=True, help="case rows per model")
    ap.add_argument("--panels", type=int, required=True, help="panel images in the page")
    ap.add_argument("--screenshot")
    a = ap.parse_args()
    url = "file://" + os.path.abspath(a.html)
    b = Browser()
    failures = []
    try:
        targets = b.send("Target.getTargets")["targetInfos"]
        page = [t for t in targets if t["type"] == "page"][0]
        s = b.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        for dom in ("Page", "Runtime", "Log", "Network"):
            b.send(dom + ".enable", session=s)
        b.send("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
        b.send("Page.navigate", {"url": url}, session=s)
        b.wait_event("Page.loadEventFired")
        time.sleep(0.3)

        def js(expr):
            r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=s)
            if "exceptionDetails" in r:
                raise RuntimeError("script failed: %s" % r["exceptionDetails"])
            return r["result"].get("value")

        info = js("""(function(){
          var t = document.querySelectorAll('table.cases');
          var rows = []; for (var i = 0; i < t.length; i++) rows.push(t[i].tBodies[0].rows.length);
          var imgs = document.querySelectorAll('img');
          var bad = 0; for (var k = 0; k < imgs.length; k++)
            if (!imgs[k].complete || imgs[k].naturalWidth == 0) bad++;
          return {tables: t.length, rows: rows, images: imgs.length, broken: bad,
                  svgs: document.querySelectorAll('svg.plot').length,
                  comparisons: document.querySelectorAll('#comparisons tbody tr').length,
                  height: document.documentElement.scrollHeight,
                  title: document.title};
        })()""")
        print("page:", json.dumps(info))
        if info["tables"] != a.models:
            failures.append("case tables: %d, expected %d" % (info["tables"], a.models))
        if info["rows"] != [a.cases] * a.models:
            failures.append("case rows %s, expected %d per model" % (info["rows"], a.cases))
        if info["images"] != a.panels:
            failures.append("panel images: %d, expected %d" % (info["images"], a.panels))
        if info["broken"]:
            failures.append("%d images did not decode" % info["broken"])
        if info["svgs"] < 2:
            failures.append("plots: %d inline SVG" % info["svgs"])
        # sorting: click "case" (ascending by id), then "mean Dice" twice (descending)
        order = js("""(function(){
          var t = document.querySelectorAll('table.cases')[0];
          function col(i){ var r = t.tBodies[0].rows, v = [];
            for (var k = 0; k < r.length; k++) v.push(r[k].cells[i].getAttribute('data-v')); return v; }
          var before = col(1);
          t.querySelector("th[data-col=\x270\x27]").click(); var ids = col(0);
          var h1 = t.querySelector("th[data-col=\x271\x27]"); h1.click(); h1.click(); var desc = col(1);
          return {before: before, ids: ids, desc: desc};
        })()""")
        ids = order["ids"]
        if ids != sorted(ids):
            failures.append("clicking 'case' did not sort by id: %s" % ids)
        before = [float(x) for x in order["before"]]
        desc = [float(x) for x in order["desc"]]
        if before != sorted(before):
            failures.append("the case table does not open worst first: %s" % before)
        if desc != sorted(desc, reverse=True):
            failures.append("clicking 'mean Dice' twice did not sort descending: %s" % desc)
        # screenshot of the whole page
        h = min(int(info["height"]), 16000)
        b.send("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": h, "deviceScaleFactor": 1, "mobile": False}, session=s)
        shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                      session=s, timeout=120)
        png = base64.b64decode(shot["data"])
        im = Image.open(io.BytesIO(png)).convert("RGB")
        if a.screenshot:
            with open(a.screenshot, "wb") as f:
                f.write(png)
        small = im.resize((64, max(1, im.height // 20)))
        colours = len(set(small.getdata()))
        lo, hi = im.convert("L").getextrema()
        print("screenshot: %dx%d, %d colours (downsampled), grey range %d..%d" %
              (im.width, im.height, colours, lo, hi))
        if im.height < 1000 or colours < 20 or hi - lo < 100:
            failures.append("the screenshot looks blank")
        pdf = base64.b64decode(b.send("Page.printToPDF", {"printBackground": True}, session=s,
                                      timeout=120)["data"])
        pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
        print("print: PDF of %d bytes, %d pages" % (len(pdf), pages))
        if not pdf.startswith(b"%PDF") or pages < 2:
            failures.append("printing to PDF failed")
        # what the browser said while loading
        for e in b.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                failures.append("console error: %s" % p.get("args"))
            elif m == "Runtime.exceptionThrown":
                failures.append("uncaught exception: %s" % p.get("exceptionDetails", {}).get("text"))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                failures.append("browser error: %s" % p["entry"].get("text"))
            elif m == "Network.loadingFailed":
                failures.append("failed load: %s" % p.get("errorText"))
            elif m == "Network.requestWillBeSent":
                u = p.get("request", {}).get("url", "")
                if not (u.startswith("file://") or u.startswith("data:")):
                    failures.append("request outside the file: %s" % u)
    finally:
        b.close()
    if failures:
        for f in failures:
            print("FAIL:", f)
        sys.exit(1)
    print("report_browser: the page rendered: %d case tables of %s rows, %d images decoded, "
          "sorting, screenshot and PDF; no console error, exception or failed load"
          % (info["tables"], info["rows"], info["images"]))


if __name__ == "__main__":
    main()
