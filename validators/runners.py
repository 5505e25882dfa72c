"""The runner subprocesses: which commands start them, and the line protocol that drives them.

A runner reads one JSON request per stdin line (`{"case", "token"}`) and answers each with one
JSON line (`{"case", "accepted", "error_class", "message", "logged"}`), after announcing itself
with a `{"ready": true, "library", "version"}` line. Requests go one at a time, so a reply can
never overtake the JWKS phase it was asked in. A runner that dies, answers out of turn or stays
silent past the timeout is a crash (`RunnerCrash`), which fails the whole run.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class RunnerCrash(RuntimeError):
    """A runner process failed: it exited, broke the protocol or timed out."""


@dataclass(frozen=True, slots=True)
class RunnerSpec:
    """How to start one library's runner; `built` is the file that must exist first."""

    name: str
    command: tuple[str, ...]
    cwd: Path
    built: Path


def runner_specs() -> list[RunnerSpec]:
    node, go, java = HERE / "node", HERE / "go", HERE / "java"
    return [
        RunnerSpec("pyjwt", (sys.executable, str(HERE / "python" / "runner.py")), HERE / "python",
                   HERE / "python" / "runner.py"),
        RunnerSpec("jose", ("node", "jose_runner.mjs"), node, node / "node_modules" / "jose" / "package.json"),
        RunnerSpec("jsonwebtoken", ("node", "jsonwebtoken_runner.mjs"), node,
                   node / "node_modules" / "jsonwebtoken" / "package.json"),
        RunnerSpec("golang-jwt", (str(go / "validators-go"),), go, go / "validators-go"),
        RunnerSpec("nimbus", ("java", "-jar", str(java / "target" / "nimbus-runner.jar")), java,
                   java / "target" / "nimbus-runner.jar"),
    ]


class RunnerProcess:
    """One live runner: `wait_ready` reads its ready line, `send` a token, `receive` the verdict on it."""

    def __init__(self, spec: RunnerSpec, args: list[str], timeout: float = 30.0) -> None:
        self.spec, self.timeout = spec, timeout
        if not spec.built.exists():
            raise RunnerCrash(f"{spec.name}: {spec.built} is missing; run `make validators` to build the runners")
        self._proc = subprocess.Popen(
            [*spec.command, *args], cwd=spec.cwd, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()
        self.ready: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        """The runner's ready line: its library and version (started runners warm up in parallel)."""
        self.ready = self._read("its ready line")
        if not self.ready.get("ready"):
            raise RunnerCrash(f"{self.spec.name}: the first line was not a ready line: {self.ready}")
        return self.ready

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _drain(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-20]  # keep the tail, for a crash report

    def _read(self, waiting_for: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise RunnerCrash(f"{self.spec.name}: no answer within {self.timeout:.0f} s ({waiting_for})") from None
        if line is None:
            self._proc.wait(timeout=5)
            tail = "\n".join(self._stderr[-10:])
            raise RunnerCrash(f"{self.spec.name}: exited with {self._proc.returncode} before {waiting_for}\n{tail}")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunnerCrash(f"{self.spec.name}: not a JSON line ({error}): {line[:200]!r}") from None
        if not isinstance(value, dict):
            raise RunnerCrash(f"{self.spec.name}: not a JSON object: {line[:200]!r}")
        return value

    def send(self, case: str, token: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"case": case, "token": token}) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise RunnerCrash(f"{self.spec.name}: its stdin closed before case {case}") from None

    def receive(self, case: str) -> dict[str, Any]:
        reply = self._read(f"the reply to case {case}")
        if reply.get("case") != case:
            raise RunnerCrash(f"{self.spec.name}: answered {reply.get('case')!r} to case {case!r}")
        return reply

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
