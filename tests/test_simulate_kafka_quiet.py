"""Issue 18: `simulate --kafka` is quiet on a normal run (-v for the client's logs) and writes the broker and
topics it produced to into the config it writes, so `consume --config` reads exactly those."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.config import load_config
from tests.kafka_helpers import DEFAULT_BOOTSTRAP

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


def _simulate(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    topics = {
        "JWTRIAGE_KAFKA__FAILURES_TOPIC": f"quiet.{run}.failures",
        "JWTRIAGE_KAFKA__SAMPLES_TOPIC": f"quiet.{run}.samples",
        "JWTRIAGE_KAFKA__JWKS_TOPIC": f"quiet.{run}.jwks",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    env.update(topics, PYTHONPATH=str(ROOT), JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS=DEFAULT_BOOTSTRAP)
    command = [sys.executable, "-m", "pipeline.cli", *flags, "simulate", "--kafka", "--out", str(tmp_path / "s")]
    done = subprocess.run([*command, "--events", "200"], env=env, capture_output=True, text=True, timeout=180)
    return done, topics


def test_quiet_by_default_and_the_config_names_broker_and_topics(tmp_path: Path) -> None:
    done, topics = _simulate(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no kafka-python INFO lines, no "Topic … not found" ERROR
    config = load_config(tmp_path / "s" / "jwtriage.toml", {})  # no environment: the file alone
    assert config.kafka.failures_topic == topics["JWTRIAGE_KAFKA__FAILURES_TOPIC"]
    assert config.kafka.samples_topic == topics["JWTRIAGE_KAFKA__SAMPLES_TOPIC"]
    assert config.kafka.jwks_topic == topics["JWTRIAGE_KAFKA__JWKS_TOPIC"]
    assert DEFAULT_BOOTSTRAP in str(config.kafka.bootstrap_servers)
    assert config.kafka.group_id == "jwtriage-simulated"  # never the default group a real deployment uses
    assert "jwtriage consume --config" in done.stdout


def test_the_next_steps_it_prints_run_as_written(tmp_path: Path) -> None:
    """A newcomer copies them: make a hash key, then consume what was produced into ./jwtriage.duckdb."""
    import duckdb

    done, _ = _simulate(tmp_path)
    assert done.returncode == 0, done.stderr
    steps = [line.removeprefix("next:").strip() for line in done.stdout.splitlines()[-2:]]
    assert steps[0].startswith("jwtriage keygen --out ") and "jwtriage consume --config" in steps[1], done.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    env.update(PYTHONPATH=str(ROOT), JWTRIAGE_KAFKA__GROUP_ID=f"quiet-{uuid.uuid4().hex[:8]}")
    for step in steps:
        command = step.split("   (")[0].replace("jwtriage ", f"{sys.executable} -m pipeline.cli ", 1)
        ran = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert ran.returncode == 0, f"{step}\n{ran.stdout[-1500:]}\n{ran.stderr[-1500:]}"
    with duckdb.connect(str(tmp_path / "jwtriage.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM classifications").fetchone()[0] > 150  # of 200 events


def test_verbose_shows_the_client_logs(tmp_path: Path) -> None:
    done, _ = _simulate(tmp_path, "-v")
    assert done.returncode == 0, done.stderr
    assert "INFO" in done.stderr and "DEBUG" not in done.stderr  # never DEBUG: it dumps records with tokens
