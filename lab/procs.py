"""Processes the lab starts, and stops in every case: Keycloak, the four services, jwks-watch.

Each child runs in its own process group so that stopping it ends its children too (kc.sh
starts a JVM); only the groups the lab started are ever signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = ROOT / ".lab"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    """The children started so far, stopped in reverse order by `stop_all`."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        self.started.append((name, proc))
        with open(LAB_DIR / "pids", "a", encoding="utf-8") as pids:  # for scripts/lab-down.sh after a crash
            pids.write(f"{name} {proc.pid}\n")

    def check_alive(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} (see .lab/run/{name}.log)")

    def stop_all(self, grace: float = 20.0) -> None:
        for _name, proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _name, proc in reversed(self.started):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.started.clear()
        (LAB_DIR / "pids").unlink(missing_ok=True)


def wait_until(what: str, ready: Callable[[], bool], timeout: float, procs: Processes) -> float:
    """Poll `ready` until true; returns the seconds it took (an error once `timeout` passes or a child died)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        procs.check_alive()
        try:
            if ready():
                return time.monotonic() - start
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2.0).status_code == 200
