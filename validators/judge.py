"""Feed what the runners saw through `python -m pipeline.cli classify`, twice per observation.

Each rejection becomes a reported-only AuthFailureEvent (`reported_error` = the library's
logged text, no token), and each token, rejected or not, an inline-token event, whose verdict
(confidence `verified`) is the one the reported cause is scored against. The config and the
JWKS snapshots (one per rotation phase, dated when the harness published it) are written next
to the events, so `classify` judges offline exactly what the libraries were shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ISSUER = "https://issuer.validators.test"
AUDIENCE = "api://validators"
SERVICE = "validators-api"


@dataclass(frozen=True, slots=True)
class Observation:
    """One library's answer on one case, and when it gave it."""

    runner: str
    case: str
    token: str
    ts: datetime
    reply: dict[str, Any]
    jwks_fetched_at: datetime | None

    @property
    def rejected(self) -> bool:
        return not self.reply.get("accepted")

    def event_id(self, kind: str) -> str:
        return f"{self.runner}/{self.case}/{kind}"


def config_toml(algorithms: tuple[str, ...]) -> str:
    algs = ", ".join(f'"{alg}"' for alg in algorithms)
    return f"""# Written by validators/harness.py: the issuer and service the runners were configured as.
[[issuers]]
name = "validators"
issuer = "{ISSUER}"
jwks_uri = "http://127.0.0.1/jwks.json"
algorithms = [{algs}]

[[services]]
name = "{SERVICE}"
issuers = ["validators"]
audience = "{AUDIENCE}"
leeway_seconds = 0
required_claims = ["exp"]

[classify]
skew_window_seconds = 300
"""


def snapshot(fetched_at: datetime, jwks: dict[str, Any]) -> dict[str, Any]:
    return {"issuer": ISSUER, "fetched_at": fetched_at.isoformat(), "jwks": jwks}


def events(observations: list[Observation]) -> list[dict[str, Any]]:
    """A reported-only event per rejection, and an inline-token event per observation."""
    out: list[dict[str, Any]] = []
    for seen in observations:
        base = {"ts": seen.ts.isoformat(), "service": SERVICE}
        if seen.rejected:
            out.append({"event_id": seen.event_id("reported"), **base, "reported_error": seen.reply.get("logged")})
        fetched = {"service_jwks_fetched_at": seen.jwks_fetched_at.isoformat()} if seen.jwks_fetched_at else {}
        out.append({"event_id": seen.event_id("token"), **base, "token": seen.token, **fetched})
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def classify(
    workdir: Path, algorithms: tuple[str, ...], snapshots: list[dict[str, Any]], observations: list[Observation]
) -> dict[str, dict[str, Any]]:
    """Run jwtriage's classify over the observations; the Classifications by event id."""
    workdir.mkdir(parents=True, exist_ok=True)
    config, jwks, events_path = workdir / "jwtriage.toml", workdir / "jwks.jsonl", workdir / "events.jsonl"
    config.write_text(config_toml(algorithms), encoding="utf-8")
    _write_jsonl(jwks, snapshots)
    _write_jsonl(events_path, events(observations))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "pipeline.cli", "classify", "--config", str(config), "--jwks", str(jwks),
               str(events_path)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"jwtriage classify exited {done.returncode}:\n{done.stderr.strip()[-2000:]}")
    verdicts = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {verdict["event_id"]: verdict for verdict in verdicts}
