"""Open a page in Debian's headless Chromium with the network off and ask it what it drew.

Talks the DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-terminated
JSON): no port, no websocket client, no browser download. Returns every URL the page requested,
the JavaScript errors it threw or logged, and the value of a JavaScript expression evaluated once
the page has loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser")


def browser() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _high(fd: int) -> int:
    """The same pipe end at a number above 9, so that moving it to 3 or 4 clobbers nothing."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class _Pipe:
    def __init__(self, exe: str, profile: str, resolve: str = "MAP * ~NOTFOUND") -> None:
        to_r, self._to_w = (_high(fd) for fd in os.pipe())
        self._from_r, from_w = (_high(fd) for fd in os.pipe())
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-features=Translate,OptimizationHints,MediaRouter", f"--user-data-dir={profile}",
                "--proxy-server=127.0.0.1:9", f"--host-resolver-rules={resolve}", "about:blank"]
        # the browser reads fd 3 and writes fd 4: the shell moves the pipe's ends there
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w} {to_r}<&- {from_w}>&-', *args],
            pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the browser did not answer in time")
            ready, _, _ = select.select([self._from_r], [], [], left)
            if ready:
                chunk = os.read(self._from_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed its pipe: " + self.proc.stderr.read().decode()[-2000:])
                self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)
        if self.proc.stderr:
            self.proc.stderr.close()


def open_offline(url: str, expression: str, *, exe: str, settle_s: float = 2.0, timeout: float = 60) -> dict[str, Any]:
    """Load ``url`` with the network emulated offline; evaluate ``expression`` after the load event
    (and ``settle_s`` more for scripts that draw later). Returns {"requests": [...], "errors": [...],
    "value": ...}."""
    with tempfile.TemporaryDirectory() as profile:
        pipe = _Pipe(exe, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                           "uploadThroughput": -1}, session=session)
            pipe.events.clear()
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_for("Page.loadEventFired", timeout)
            time.sleep(settle_s)
            value = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, session=session)
            if "exceptionDetails" in value:
                raise RuntimeError(f"evaluating the check failed: {value['exceptionDetails']}")
            pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)  # collect the events so far
        finally:
            pipe.close()
    ev = pipe.events
    requests = [e["params"]["request"]["url"] for e in ev if e.get("method") == "Network.requestWillBeSent"]
    errors = [json.dumps(e["params"])[:500] for e in ev if e.get("method") == "Runtime.exceptionThrown"]
    errors += [e["params"]["entry"]["text"] for e in ev
               if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"]
    errors += [json.dumps(e["params"].get("args"))[:500] for e in ev
               if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error"]
    return {"requests": requests, "errors": errors, "value": value["result"].get("value")}


class Tab:
    """One page in a headless Chromium that a test drives step by step: open a URL, wait until a
    JavaScript expression is true, evaluate, click. The network is not emulated offline (the page
    talks to a server on 127.0.0.1); every URL it requests is kept in ``requests`` so that a test
    can check nothing went anywhere else, and names other than loopback resolve to nothing.

        with headless.Tab(exe) as tab:
            tab.open("http://127.0.0.1:8080/")
            tab.wait("document.querySelectorAll('tr').length > 3")
    """

    def __init__(self, exe: str) -> None:
        self._profile = tempfile.TemporaryDirectory()
        # no name resolves; 127.0.0.1 itself is let through (the rules apply to addresses too)
        self.pipe = _Pipe(exe, self._profile.name, resolve="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        try:
            target = self.pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.pipe.send(f"{domain}.enable", session=self.session)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Tab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None  # type: ignore[assignment]
        self._profile.cleanup()

    def open(self, url: str, timeout: float = 60) -> None:
        """Navigate and wait for the load event (none comes when only the fragment changed)."""
        self.pipe.events[:] = [e for e in self.pipe.events if e.get("method") != "Page.loadEventFired"]
        got = self.pipe.send("Page.navigate", {"url": url}, session=self.session)
        if "errorText" in got:
            raise RuntimeError(f"{url}: {got['errorText']}")
        if got.get("loaderId"):  # a new document, not a move within this one
            self.pipe.wait_for("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """The value of ``expression`` (a promise is awaited); a JavaScript exception raises."""
        got = self.pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                  "awaitPromise": True}, session=self.session, timeout=timeout)
        if "exceptionDetails" in got:
            raise RuntimeError(f"evaluating {expression[:200]!r} failed: {got['exceptionDetails']}")
        return got["result"].get("value")

    def wait(self, expression: str, timeout: float = 30, every: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; its value. TimeoutError with the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression[:300]!r} still {value!r} after {timeout} s; errors: {self.errors}")
            time.sleep(every)

    def click(self, selector: str) -> None:
        """Click the element ``selector`` picks (a DOM click event, as a user's)."""
        ok = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                           "if (!e) return false; e.click(); return true; })()")
        if not ok:
            raise LookupError(f"nothing on the page matches {selector!r}")

    @property
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.pipe.events if e.get("method") == "Network.requestWillBeSent"]

    @property
    def errors(self) -> list[str]:
        ev = self.pipe.events
        errors = [json.dumps(e["params"])[:800] for e in ev if e.get("method") == "Runtime.exceptionThrown"]
        errors += [e["params"]["entry"]["text"] for e in ev
                   if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"]
        errors += [json.dumps(e["params"].get("args"))[:800] for e in ev
                   if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error"]
        return errors
