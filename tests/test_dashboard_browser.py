"""The dashboard in a real headless Chromium, served by `jwtriage dashboard` (`streamlit run`).

Each page is opened by URL; once Streamlit has rendered it (the app reports its script as
not running and the page heading is there), the test fails on any exception or error
element, checks that the page's charts drew and that no token appears in the text, and
keeps a screenshot per page under test-artifacts/dashboard/ (git-ignored).

Chromium is driven through the DevTools protocol over a websocket (`websockets`, which
streamlit already depends on). Debian's `chromium` is required: when it is missing the
test fails and says how to install it (CI installs it; it is never skipped).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{10,}")

#: screenshot name → (URL path and query, heading, (charts, tables) at least, texts the page must show).
#: Every page is opened by a URL that carries its filters, as one pasted into an incident channel would.
PAGES: dict[str, tuple[str, str, int, int, tuple[str, ...]]] = {
    "overview": ("?range=custom&custom=2026-11-23T02:00Z&custom=2026-11-23T14:00Z", "Overview", 1, 1,
                 ("Mon 23 Nov 02:00 UTC – Mon 23 Nov 14:00 UTC",)),
    "rotations": ("rotations?rotation=added:corp-rs-2026-11@login.acme.test&follow=12h", "Rotations", 1, 1,
                  ("Key added corp-rs-2026-11", "from 12 h before the step")),
    "triage-past-window": ("triage?window=3h&until=2026-11-23T12:00Z", "Triage", 2, 3,
                           ("3 hours to Mon 23 Nov 12:00 UTC: Mon 23 Nov 09:00 UTC – Mon 23 Nov 12:00 UTC",)),
    "triage-attacks": ("triage?window=24h", "Triage", 2, 3, ("carry an attack pattern",)),
    "live": ("live", "Live", 1, 1, ()),
    "dead-letters": ("dead-letters?kind=event", "Dead letters", 0, 2, ("Why", "The records")),
}  # fmt: skip

STATE_JS = """(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const texts = (sel) => Array.from(document.querySelectorAll(sel)).map((e) => e.innerText.slice(0, 800));
  // Charts in a tab that is not open are not drawn until it is; count the visible ones.
  const charts = Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]'));
  const visible = charts.filter((c) => c.offsetParent !== null);
  const drawn = visible.filter((c) => c.querySelector('canvas, svg')).length;
  const main = document.querySelector('[data-testid="stMain"]');
  return JSON.stringify({
    script: app && app.getAttribute('data-test-script-state'),
    connection: app && app.getAttribute('data-test-connection-state'),
    headings: texts('h1'),
    exceptions: texts('[data-testid="stException"]'),
    errors: texts('[data-testid="stAlertContentError"]'),
    charts: charts.length,
    visible: visible.length,
    drawn: drawn,
    tables: document.querySelectorAll('[data-testid="stDataFrame"]').length,
    skeletons: document.querySelectorAll('[data-testid="stSkeleton"], [data-testid="stAppSkeleton"]').length,
    deploy: document.querySelectorAll('[data-testid="stAppDeployButton"]').length,
    url: location.href,
    height: main ? main.scrollHeight : 0,
    text: document.body ? document.body.innerText : '',
  });
})()"""


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "headless Chromium is needed for the browser tests and was not found on PATH: install Debian's "
            "package (`apt-get install -y chromium`; `make test` does) or deselect with -m 'not browser'",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def dashboard_server(db: Path, log: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """`jwtriage dashboard --db DB --port P [extra]` until the block ends; yields its base URL."""
    port = port or free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "dashboard", "--db", str(db), "--port", str(port), *extra],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 45
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the dashboard exited with {process.returncode}:\n{log.read_text()}", pytrace=False)
                try:
                    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                        if response.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not become healthy in 45 s:\n{log.read_text()}", pytrace=False)
                time.sleep(0.2)
            yield base
        finally:
            _stop_group(process)


class Chromium:
    """Headless Chromium and one page, driven by the DevTools protocol."""

    def __init__(self, binary: str, profile: Path, width: int = 1440, height: int = 1000) -> None:
        self.width = width
        self.errors: list[str] = []
        self.console: list[str] = []
        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._id = 0
        self._stack = contextlib.ExitStack()
        try:
            port = self._devtools_port(profile / "DevToolsActivePort")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                targets = json.load(response)
            page = next(t for t in targets if t.get("type") == "page")
            url = page["webSocketDebuggerUrl"]
            self.ws: ClientConnection = self._stack.enter_context(connect(url, max_size=None, open_timeout=10))
            for domain in ("Page", "Runtime"):
                self.call(f"{domain}.enable")
            self.resize(height)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, marker: Path) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"chromium exited with {self.process.returncode} at start-up", pytrace=False)
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        pytest.fail("chromium did not open its DevTools port in 20 s", pytrace=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
            if message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                self.console.append(
                    f"{message['params']['type']}: "
                    + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                )
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def resize(self, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1, mobile=False
        )

    def state(self) -> dict[str, Any]:
        result = self.call("Runtime.evaluate", expression=STATE_JS, returnByValue=True)
        return dict(json.loads(result["result"]["value"]))

    def open(self, url: str, heading: str, charts: int, timeout: float = 40) -> dict[str, Any]:
        """Navigate and wait until Streamlit has rendered the page (and its charts drew)."""
        self.errors.clear()
        self.call("Page.navigate", url=url)
        deadline, state, settled = time.monotonic() + timeout, {}, 0
        while time.monotonic() < deadline:
            state = self.state()
            done = (
                state["script"] == "notRunning"
                and state["connection"] == "CONNECTED"
                and heading in state["headings"]
                and state["drawn"] >= max(charts, state["visible"])
                and not state["skeletons"]
            )
            if state["exceptions"] or state["errors"]:
                return state
            settled = settled + 1 if done else 0
            if settled >= 3:  # rendered, and still so 0.6 s later
                return state
            time.sleep(0.2)
        raise AssertionError(f"{url} did not finish rendering in {timeout:.0f} s; last state: {_brief(state)}")

    def screenshot(self, path: Path, height: int) -> None:
        """The whole page: the viewport is made as tall as the main column first (Streamlit scrolls inside it)."""
        self.resize(min(max(height + 40, 800), 8000))
        time.sleep(0.6)  # let charts re-lay out at the new size
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        _stop_group(self.process)


def _brief(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:300] if isinstance(v, str) else v) for k, v in state.items()}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chrome = Chromium(chromium_path(), tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chrome
    finally:
        chrome.close()


def test_every_page_renders_in_chromium(simulated_db: Path, browser: Chromium, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()
    problems = []
    with dashboard_server(simulated_db, tmp_path / "streamlit.log") as base:
        for name, (path, heading, charts, tables, texts) in PAGES.items():
            state = browser.open(f"{base}/{path}", heading, charts)
            browser.screenshot(ARTIFACTS / f"{name}.png", state["height"])
            browser.resize(1000)
            where = f"page {name} ({base}/{path})"
            problems += [f"{where}: exception element: {e}" for e in state["exceptions"]]
            problems += [f"{where}: error element: {e}" for e in state["errors"]]
            problems += [f"{where}: JavaScript exception: {e}" for e in browser.errors]
            if state["charts"] < charts or state["tables"] < tables:
                problems.append(f"{where}: {state['charts']} charts, {state['tables']} tables; want {charts}, {tables}")
            problems += [f"{where}: does not show {text!r}" for text in texts if text not in state["text"]]
            if state["deploy"]:
                problems.append(f"{where}: Streamlit's Deploy button shows (the toolbar should be in viewer mode)")
            kept = urllib.parse.unquote(state["url"])
            problems += [
                f"{where}: the URL lost {param!r} (now {kept})"
                for param in urllib.parse.unquote(path.partition("?")[2]).split("&")
                if param and param not in kept
            ]
            if TOKEN.search(state["text"]):
                problems.append(f"{where}: something that looks like a raw token is on the page")
    assert not problems, "\n".join(problems) + f"\n(screenshots in {ARTIFACTS})"
    shots = {p.name for p in ARTIFACTS.glob("*.png")}
    assert shots == {f"{name}.png" for name in PAGES}
