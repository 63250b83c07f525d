"""Load a local HTML file in headless Chromium with the network off and report what happened:
console messages, uncaught exceptions, every request and every failed one, the result of a
few DOM expressions, and a full-page screenshot.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no port is opened and no
websocket library is needed. The network is off twice over: DevTools' offline emulation and a
proxy that does not exist, so a request to anything but ``file:`` or ``data:`` fails and is
recorded.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

MISSING = ("chromium is not installed: the report's browser test needs it (run `make toolchain`"
           ", which installs the Debian package chromium, or apt-get install chromium)")


def chromium() -> str:
    """The Chromium binary; a clear test failure (never a skip) when it is missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(MISSING, pytrace=False)


@dataclass
class PageLoad:
    console: list[dict] = field(default_factory=list)     # {"level", "text"}
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)     # every URL requested
    failed: list[str] = field(default_factory=list)       # "url: error"
    values: dict[str, Any] = field(default_factory=dict)  # name -> evaluated expression
    screenshot: Optional[Path] = None

    @property
    def errors(self) -> list[str]:
        return [f"console {m['level']}: {m['text']}" for m in self.console
                if m["level"] in ("error", "warning", "assert")] + \
            [f"exception: {e}" for e in self.exceptions] + [f"failed: {f}" for f in self.failed]


class _Pipe:
    def __init__(self, proc: subprocess.Popen, wfd: int, rfd: int) -> None:
        self.proc, self.wfd, self.rfd = proc, wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read(timeout)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read(timeout)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def drain(self, seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            try:
                self.events.append(self._read(max(0.01, end - time.time())))
            except TimeoutError:
                return

    def _read(self, timeout: float) -> dict:
        end = time.time() + timeout
        while b"\0" not in self.buf:
            left = end - time.time()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)


def load_page(html: Path, expressions: dict[str, str], screenshot: Optional[Path] = None,
              width: int = 1200, settle_s: float = 1.0) -> PageLoad:
    """Open ``html`` (a local file) offline, evaluate ``expressions`` (JavaScript, by name,
    JSON-able results) after the load event, and take a full-page PNG ``screenshot``."""
    exe = chromium()
    cmd_r, cmd_w = os.pipe()      # we write commands, chromium reads fd 3
    out_r, out_w = os.pipe()      # chromium writes fd 4, we read
    hi_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
    hi_w = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)

    def child_fds() -> None:
        os.dup2(hi_r, 3)
        os.dup2(hi_w, 4)

    profile = tempfile.mkdtemp(prefix="kiloml-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-background-networking", "--disable-sync",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         "--hide-scrollbars", "--mute-audio", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        close_fds=False, preexec_fn=child_fds)
    for fd in (cmd_r, out_w, hi_r, hi_w):
        os.close(fd)
    pipe = _Pipe(proc, cmd_w, out_r)
    res = PageLoad()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=sid)
        pipe.send("Network.emulateNetworkConditions",
                  {"offline": True, "latency": 0, "downloadThroughput": -1,
                   "uploadThroughput": -1}, session=sid)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                  session=sid)
        pipe.send("Page.navigate", {"url": html.resolve().as_uri()}, session=sid)
        pipe.wait_event("Page.loadEventFired")
        pipe.drain(settle_s)
        for name, expr in expressions.items():
            r = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                          session=sid)
            if "exceptionDetails" in r:
                raise RuntimeError(f"{name}: {r['exceptionDetails']}")
            res.values[name] = r["result"].get("value")
        if screenshot is not None:
            h = pipe.send("Runtime.evaluate", {"expression":
                                                "document.documentElement.scrollHeight",
                                                "returnByValue": True}, session=sid)
            height = int(h["result"]["value"])
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": False}, session=sid)
            pipe.drain(0.3)
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=sid)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            res.screenshot = screenshot
        pipe.drain(0.2)
        try:
            pipe.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError):
            pass
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(cmd_w)
        os.close(out_r)
        shutil.rmtree(profile, ignore_errors=True)
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in pipe.events
            if e.get("method") == "Network.requestWillBeSent"}
    for e in pipe.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            res.console.append({"level": p["type"], "text": text})
        elif m == "Log.entryAdded":
            res.console.append({"level": p["entry"]["level"], "text": p["entry"]["text"]})
        elif m == "Runtime.exceptionThrown":
            res.exceptions.append(p["exceptionDetails"].get("text", "?"))
        elif m == "Network.requestWillBeSent":
            res.requests.append(p["request"]["url"])
        elif m == "Network.loadingFailed":
            res.failed.append(f"{urls.get(p.get('requestId'), '?')}: {p.get('errorText')}")
    return res
