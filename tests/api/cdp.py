"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Chromium reads NUL-terminated JSON commands from file descriptor 3 and writes
replies and events to descriptor 4, so no websocket library is needed. Used by
the dashboard browser test to open a page once and read its DOM repeatedly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary (``PGENRM_CHROMIUM`` first), or None."""
    env = os.environ.get("PGENRM_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    """The browser answered a command with an error, or went away."""


class ScriptError(CdpError):
    """The evaluated JavaScript threw."""


class Browser:
    """A headless Chromium driven through the DevTools pipe."""

    def __init__(self, binary: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="pgenrm-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()
        # The child sees our pipe ends as fds 3 (commands in) and 4 (replies out).
        self._proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: _remap(to_child_r, from_child_w),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child_r, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout_s: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply's ``result``."""
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while msg_id not in self._replies:
                if self._closed:
                    raise CdpError(f"browser exited during {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"no reply to {method} within {timeout_s}s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def open(self, url: str) -> Page:
        """Open ``url`` in a new tab and attach to it."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        return Page(self, session)

    def close(self) -> None:
        with contextlib.suppress(CdpError):
            self.send("Browser.close", timeout_s=5)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_child_w, self._from_child_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Page:
    """One attached tab."""

    def __init__(self, browser: Browser, session: str) -> None:
        self._browser = browser
        self._session = session

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page and return its JSON value."""
        res = self._browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self._session,
        )
        if "exceptionDetails" in res:
            raise ScriptError(str(res["exceptionDetails"]))
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout_s: float = 30.0, every_s: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; return its value (or raise)."""
        deadline = time.monotonic() + timeout_s
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except ScriptError as exc:  # the page may still be loading
                value = exc
            if value and not isinstance(value, ScriptError):
                return value
            time.sleep(every_s)
        raise CdpError(f"{expression!r} stayed falsy for {timeout_s}s (last: {value!r})")


def _remap(to_child_r: int, from_child_w: int) -> None:  # pragma: no cover - in child
    # Move both ends above 4 first so that neither dup2 clobbers the other.
    r, w = os.dup(to_child_r), os.dup(from_child_w)
    while r <= 4 or w <= 4:
        r2, w2 = os.dup(r), os.dup(w)
        r, w = r2, w2
    os.dup2(r, 3, inheritable=True)
    os.dup2(w, 4, inheritable=True)
