"""jwtriage's side of the lab: its config, `jwks-watch` on Keycloak, the shipper, `consume`, the store.

Everything runs through jwtriage's own command line (`python -m pipeline.cli`) on topics named
for this run only (`lab-<run>.*`), which the lab deletes again at the end. The shipper plays
the part of a log shipper: it reads the services' JSON lines and produces them as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.procs import ROOT, Processes
from lab.services import Service
from pipeline.engine.identifiers import generate_key

BOOTSTRAP = "127.0.0.1:9092"
SKEW_WINDOW = 20


def topics(run_id: str) -> dict[str, str]:
    return {name: f"lab-{run_id}.{name}" for name in ("auth.failures", "auth.tokens.sampled", "auth.jwks")}


def write_config(
    path: Path, run_id: str, issuer: str, jwks_uri: str, audience: str, services: list[Service], store: Path
) -> None:
    names = topics(run_id)
    lines = [
        "# written by the lab (lab/jwtriage_side.py) for one run",
        "[[issuers]]",
        'name = "keycloak"',
        f'issuer = "{issuer}"',
        f'jwks_uri = "{jwks_uri}"',
        'algorithms = ["RS256"]',
        "",
    ]
    for service in services:
        lines += [
            "[[services]]",
            f'name = "{service.name}"',
            'issuers = ["keycloak"]',
            f'audience = "{audience}"',
            f"leeway_seconds = {service.leeway}",
            'required_claims = ["exp"]',
            "",
        ]
    lines += [
        "[kafka]",
        f'bootstrap_servers = "{BOOTSTRAP}"',
        f'group_id = "lab-{run_id}"',
        f'failures_topic = "{names["auth.failures"]}"',
        f'samples_topic = "{names["auth.tokens.sampled"]}"',
        f'jwks_topic = "{names["auth.jwks"]}"',
        "",
        "[store]",
        f'path = "{store}"',
        "",
        "[classify]",
        f"skew_window_seconds = {SKEW_WINDOW}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def start_jwks_watch(procs: Processes, config: Path, run_dir: Path) -> None:
    """Poll Keycloak's jwks_uri every second (heartbeat 30 s) into this run's auth.jwks topic."""
    env = {"PYTHONPATH": str(ROOT)}
    argv = cli("jwks-watch", "--config", str(config), "--interval", "1", "--heartbeat", "30")
    procs.start("jwks-watch", argv, env, run_dir / "jwks-watch.log", cwd=ROOT)


def create_topics(run_id: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        admin.create_topics([NewTopic(name, 1, 1) for name in topics(run_id).values()])
    finally:
        admin.close()


def delete_topics(run_id: str) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        admin.delete_topics(list(topics(run_id).values()))
    except Exception as exc:  # a topic that was never created: nothing to remove
        print(f"lab: deleting this run's topics: {exc}", file=sys.stderr)
    finally:
        admin.close()


def ship(run_id: str, run_dir: Path, services: list[Service]) -> tuple[int, int]:
    """Produce every service's rejection lines and sampled-token lines; returns (events, samples)."""
    from kafka import KafkaProducer

    names = topics(run_id)
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20)
    counts = [0, 0]
    try:
        for service in services:
            for index, (suffix, topic) in enumerate(
                (("events", names["auth.failures"]), ("samples", names["auth.tokens.sampled"]))
            ):
                path = run_dir / f"{service.name}.{suffix}.jsonl"
                if not path.exists():
                    continue
                for line in path.read_bytes().splitlines():
                    if line.strip():
                        producer.send(topic, value=line, key=service.name.encode())
                        counts[index] += 1
        producer.flush(timeout=30)
    finally:
        producer.close()
    return counts[0], counts[1]


def consume(config: Path, store: Path, run_dir: Path) -> None:
    """`jwtriage consume --exit-when-idle`: classifies everything shipped into the run's store."""
    log = run_dir / "consume.log"
    with open(log, "ab") as out:
        status = subprocess.run(
            cli(
                "consume",
                "--config",
                str(config),
                "--db",
                str(store),
                "--exit-when-idle",
                "8",
                "--publish-interval",
                "1",
            ),
            cwd=ROOT,
            env={**_env(), "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        ).returncode
    if status != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"jwtriage consume exited with status {status}: " + " | ".join(tail))


#: The run's throwaway key for hashing personal claims (the consumer refuses to start without one); it
#: lives only in this process's memory and the children's environment, like the demo's.
_HASH_KEY = generate_key()


def _env() -> dict[str, str]:
    return {**os.environ, "JWTRIAGE_HASH_KEY": _HASH_KEY}


def stored(store: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every stored classification, and what the report/dashboard queries say about the same store."""
    from pipeline.io.store_readers import connect_readonly
    from pipeline.queries import attacks, cause_counts, rotations

    con = connect_readonly(store)
    try:
        cursor = con.execute("SELECT * FROM classifications")
        columns = [d[0] for d in cursor.description]
        records = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        queries = {
            "cause_counts": cause_counts(con),
            "rotations": rotations(con),
            "attacks": attacks(con),
        }
    finally:
        con.close()
    return records, queries


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
