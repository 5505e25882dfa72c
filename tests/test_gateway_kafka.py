"""Istio access-log lines through the broker: a `[[kafka.sources]]` topic with format envoy, the real consumer.

The issue's "Done when": every jwt_authn rejection classifies to the cause it names, 200s
are skipped and counted, an unknown host is a dead letter, through `jwtriage consume`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.io.kafka import produce
from pipeline.io.store_readers import connect_readonly
from tests.gateway_world import istio_day, write_config
from tests.kafka_helpers import isolated_kafka_env, wait_for_broker

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


def test_envoy_lines_on_a_kafka_source_topic_are_judged_skipped_and_dead_lettered(tmp_path: Path) -> None:
    wait_for_broker()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = isolated_kafka_env(prefix)
    topic = f"{prefix}.envoy"
    config_path = write_config(
        tmp_path / "jwtriage.toml", f'\n[[kafka.sources]]\ntopic = "{topic}"\nformat = "envoy"\n'
    )
    kafka = load_config(config_path, env).kafka
    lines, expected = istio_day()
    produce(kafka, [(topic, "payments", line.encode()) for line in lines])
    db = tmp_path / "store.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "consume",
            "--config",
            str(config_path),
            "--db",
            str(db),
            "--instance",
            "c0",
            "--exit-when-idle",
            "2",
        ],
        env={**os.environ, **env},
        capture_output=True,
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out[-3000:]
    skipped = sum(1 for line in lines if '"200"' in line)
    assert f"{len(lines):,} events, 1 dead letters, {skipped} skipped" in out  # events: records read
    con = connect_readonly(db)
    try:
        stored = dict(con.execute("SELECT event_id, cause FROM classifications").fetchall())
        letters = con.execute("SELECT source, reason FROM dead_letters").fetchall()
        positions = dict(
            con.execute("SELECT source, sum(next_offset) FROM source_positions GROUP BY source").fetchall()
        )
    finally:
        con.close()
    assert stored == expected
    assert [(source, "unknown service" in reason) for source, reason in letters] == [(topic, True)]
    assert positions[topic] == len(lines)  # skipped lines are read too
