"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``), for the
tests that measure report.html as a browser lays it out: no WebDriver, no websocket client, no network.

Chromium reads NUL-terminated JSON commands on its file descriptor 3 and writes replies and events on 4.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""A headless browser that reaches nothing on the network and keeps no state beyond its profile."""
FLAGS = (*HEADLESS, "--hide-scrollbars", "--remote-debugging-pipe")


class Chromium:
    """One headless browser with one page; ``open`` a file at a window width, ``evaluate`` JavaScript in
    it (DevTools evaluation is not a page script, so the report's CSP still applies to the page itself),
    ``screenshot`` what the window shows."""

    def __init__(self, binary: Path, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def as_fds_3_and_4() -> None:  # in the child, before exec: fd numbers may collide, so go high first
            high_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        profile.mkdir(parents=True, exist_ok=True)
        self._log = profile / "chromium.log"  # a file, not a pipe: a chatty browser must never block on it
        with self._log.open("wb") as log:
            self.process = self._start(binary, profile, log, as_fds_3_and_4)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=self.session)

    @staticmethod
    def _start(binary: Path, profile: Path, log: Any, before_exec: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(binary), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=before_exec,
            close_fds=False,  # Python's own descriptors are not inheritable; 3 and 4 must stay open
        )

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_for(self, event: str) -> None:
        while True:
            for index, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: index + 1]
                    return
            self._events.append(self._read())

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer over the DevTools pipe")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self._log.read_text(errors='replace')[-2000:]}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, page: Path, width: int, height: int = 900) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=self.session,
        )
        self.send("Page.navigate", {"url": page.as_uri()}, session=self.session)
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"the page's measurement failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


LAYOUT = """(() => {
  const view = document.documentElement;
  const rect = (element) => element.getBoundingClientRect();
  // A check's section has a status in its heading (the Run section shares the style, not the role).
  const shown = [...document.querySelectorAll('section.check')]
    .filter((s) => s.querySelector('h2 .status') && !s.closest('details.passed'));
  return {
    viewport: view.clientWidth,
    overflow: view.scrollWidth - view.clientWidth,
    bar: rect(document.getElementById('summary-bar')).top + window.scrollY,
    sections: shown.map((s) => ({id: s.id, status: s.querySelector('h2 .status').classList[1],
                                 top: rect(s).top + window.scrollY})),
    passed_open: document.getElementById('passed') ? document.getElementById('passed').open : null,
    images: shown.flatMap((s) => [...s.querySelectorAll('figure img')]).map((img) =>
      ({width: rect(img).width, height: rect(img).height, natural: img.naturalWidth,
        rendering: getComputedStyle(img).imageRendering})),
    captions: [...document.querySelectorAll('figcaption')].filter((c) => !c.closest('details.passed'))
      .map((c) => parseFloat(getComputedStyle(c).fontSize)),
    clipped: [...document.querySelectorAll('.meta span, .meta code, h1, .verdict')]
      .filter((e) => rect(e).right > view.clientWidth + 0.5 || e.scrollWidth > e.clientWidth + 1)
      .map((e) => e.textContent.slice(0, 80)),
    wide: [...document.querySelectorAll('table')].filter((t) => !t.closest('.scroll')
      && rect(t).right > view.clientWidth + 0.5).map((t) => t.id || t.textContent.slice(0, 40)),
  };
})()"""
"""Measures what a reader sees: the order of the checks' sections, the evidence images' rendered size,
and anything wider than the window (the page, the metadata, a table outside a scrolling box)."""
