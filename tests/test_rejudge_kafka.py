"""On the real broker: a consumer killed and restarted ends with the verdicts of one that never stopped.

Two consumers read the same topics into two stores (their own groups): one runs throughout,
the other is killed (SIGKILL) once it has stored the events, and started again. Then:

1. while it is down, a late key snapshot arrives, dated before the stored events, without the
   key that signed them (their verdict becomes `retired_key`): the restart reads it and judges
   those stored rows again, re-reading their records from the failures topic by offset (and
   the joined event's token from the samples re-read at start-up);
2. after the restart, a snapshot publishes the kid of a stored inline-token `unknown_kid`
   event (its verdict becomes `unpublished_key`): the running consumer finds it through the
   store's `awaiting_key` index, though its memory never held that event.

What must hold (DESIGN.md, "Rules that hold everywhere": the re-judge promise holds across
restarts): both stores end with the same rows, and those are the verdicts the records call for.
The restarted store without this (its memory emptied) kept `valid` and `unknown_kid`:
tests/test_rejudge_restart.py shows that gap on in-memory sources.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.tokens import fingerprint
from pipeline.io.store_readers import connect_readonly, published_parts
from tests.reliability.kafka_run import KafkaRun, produce_tracked, wait_for
from tests.world import CONFIG_TOML, CORP, T0, default_snapshots, good_claims, mint, snapshot

pytestmark = pytest.mark.kafka

COLUMNS = "event_id, cause, confidence, findings, detail, kid, key_thumbprint, skew_seconds"
EXPECTED = {"before": "valid", "joined": "retired_key", "reported": "expired", "retired": "retired_key",
            "unknown": "unpublished_key"}


def _iso(at: Any) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def event(event_id: str, at: Any = T0, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "ts": _iso(at), "service": "payments-api",
            "service_jwks_fetched_at": _iso(at - timedelta(minutes=5)), **fields}


SAMPLED = mint("rsa-2", claims=good_claims(jti="sampled"))
EVENTS = [
    event("retired", token=mint("rsa-2")),
    event("before", at=T0 - timedelta(minutes=20), token=mint("rsa-2", claims=good_claims(T0 - timedelta(minutes=20)))),
    event("unknown", token=mint("rsa-3")),
    event("joined", token_sha256=fingerprint(SAMPLED)),
    event("reported", reported_error="Jwt is expired"),
]
LATE_WHILE_DOWN = snapshot(CORP, T0 - timedelta(minutes=10), ["rsa-1", "ec-1", "ed-1"])
AFTER_RESTART = default_snapshots()[3]  # T0+1h: publishes rsa-3


@pytest.fixture
def run(tmp_path: Path) -> Iterator[KafkaRun]:
    kafka_run = KafkaRun.create(tmp_path / "run", CONFIG_TOML)
    yield kafka_run
    kafka_run.close()


def rows(db: Path) -> dict[str, tuple[Any, ...]]:
    if not published_parts(db):
        return {}
    try:
        con = connect_readonly(db)
    except Exception:  # a snapshot being replaced: ask again
        return {}
    try:
        return {row[0]: row for row in con.execute(f"SELECT {COLUMNS} FROM classifications").fetchall()}
    finally:
        con.close()


def causes(db: Path) -> dict[str, str]:
    return {event_id: row[1] for event_id, row in rows(db).items()}


def keys(run: KafkaRun, *snapshots: Any) -> None:
    produce_tracked(run.kafka, [(run.kafka.jwks_topic, CORP, s.model_dump_json().encode()) for s in snapshots])


def test_a_killed_consumer_restarted_after_late_snapshots_ends_like_one_that_never_stopped(run: KafkaRun) -> None:
    early = [s for s in default_snapshots() if s != AFTER_RESTART]
    keys(run, *early)
    produce_tracked(run.kafka, [(run.kafka.samples_topic, None, json.dumps({"token": SAMPLED}).encode())])
    produce_tracked(run.kafka, [(run.kafka.failures_topic, "payments-api", json.dumps(e).encode()) for e in EVENTS])
    fast = ["--publish-interval", "0.2", "--batch-size", "50"]

    steady_db = run.tmp / "steady.duckdb"
    steady = run.start(
        ["consume", "--config", str(run.config_path), "--db", str(steady_db), "--instance", "steady",
         "--exit-when-idle", "20", *fast],
        env={"JWTRIAGE_KAFKA__GROUP_ID": f"steady{uuid.uuid4().hex[:8]}"}, name="steady",
    )
    restarted = run.consumer(*fast)
    wait_for(lambda: len(rows(run.db)) == len(EVENTS), 90, "the events stored by the consumer to be killed")
    wait_for(lambda: len(rows(steady_db)) == len(EVENTS), 90, "the events stored by the steady consumer")
    assert causes(run.db)["retired"] == "valid" and causes(run.db)["unknown"] == "unknown_kid"
    restarted.kill()
    assert restarted.process.returncode == -signal.SIGKILL

    keys(run, LATE_WHILE_DOWN)  # arrives while the consumer is down
    again = run.consumer("--exit-when-idle", "8", *fast)
    wait_for(lambda: causes(run.db).get("retired") == "retired_key", 90, "the restart to judge stored rows again")
    assert causes(run.db)["unknown"] == "unknown_kid"  # its key has not come yet
    keys(run, AFTER_RESTART)  # arrives after the restart: memory never held the unknown_kid event
    assert again.wait(timeout=120) == 0, again.output()[-3000:]
    assert steady.wait(timeout=120) == 0, steady.output()[-3000:]

    assert causes(run.db) == EXPECTED, again.output()[-3000:]
    assert rows(run.db) == rows(steady_db)
    assert "judged again and changed" in again.output()
