"""Three consumers on one shared lake (DuckLake: PostgreSQL catalog, Parquet on an S3 server), a kill -9 among them.

The test starts what it needs itself: the lake's venv (scripts/lake-venv.sh: jwtriage[lake], whose
extension wheels pin DuckDB 1.5.x), PostgreSQL and moto's S3 server (scripts/lake-up.sh), a fresh
catalog database and bucket prefix for this test. Consumers, readers and every query of the store
run as processes of that venv; this process only produces to Kafka and compares.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kafka_helpers import isolated_kafka_env, wait_for_broker
from tests.test_consume_kafka import Setup, finish, produce_scenario, scenario, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.lake]
ROOT = Path(__file__).resolve().parent.parent
PG_PORT, S3_PORT = 55432, 55900


@dataclass
class Lake:
    python: str
    env: dict[str, str]
    uri: str

    def cli(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run([self.python, "-m", "pipeline.cli", *args], env=self.env, cwd=ROOT,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def rows(self, sql: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.cli("sql", "--db", self.uri, "--csv", sql))))


def _psql(sql: str) -> None:
    command = ["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "jwtriage", "-d", "postgres", "-qc", sql]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture
def lake() -> Iterator[Lake]:
    with started_lake() as running:
        yield running


@contextlib.contextmanager
def started_lake() -> Iterator[Lake]:
    """The lake's venv, PostgreSQL and the S3 server started (scripts/lake-*.sh), a fresh catalog and prefix."""
    python = subprocess.run([str(ROOT / "scripts" / "lake-venv.sh")], check=True, capture_output=True, text=True,
                            timeout=900).stdout.strip().splitlines()[-1]
    env = {**os.environ, "LAKE_VENV": str(Path(python).parent.parent)}
    up = subprocess.run([str(ROOT / "scripts" / "lake-up.sh")], capture_output=True, text=True, env=env, timeout=180)
    assert up.returncode == 0, f"scripts/lake-up.sh failed: {up.stderr.strip()[-2000:]}"
    name = f"lake_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {name}")
    with contextlib.suppress(OSError):  # the bucket may be there already
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{S3_PORT}/jwtriage", method="PUT"))
    env.update(
        JWTRIAGE_LAKE_S3_ENDPOINT=f"http://127.0.0.1:{S3_PORT}", JWTRIAGE_LAKE_S3_KEY_ID="test",
        JWTRIAGE_LAKE_S3_SECRET="test", JWTRIAGE_LAKE_DATA_PATH=f"s3://jwtriage/{name}/",
    )
    try:
        yield Lake(python, env, f"ducklake:postgres:dbname={name} host=127.0.0.1 port={PG_PORT} user=jwtriage")
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start(lake: Lake, setup: Setup, instance: str, log: Path) -> subprocess.Popen[bytes]:
    args = [lake.python, "-m", "pipeline.cli", "consume", "--config", str(setup.config_path), "--db", lake.uri,
            "--instance", instance, "--batch-size", "50", "--exit-when-idle", "10"]
    with log.open("ab") as stderr:
        return subprocess.Popen(args, env={**lake.env, **setup.env}, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT)


def dashboard_and_report(lake: Lake, setup: Setup) -> dict[str, object]:
    """What the dashboard's Overview and Live pages and `report` read, from the lake while it is written."""
    script = (
        "import json, sys\nfrom datetime import timedelta\nfrom dashboards import data\n"
        "status = data.load_status(sys.argv[1])\nout = {'status': status.state}\n"
        "if status.state == 'ok':\n"
        "    o = data.load_overview(sys.argv[1], status.first_ts, status.last_ts + timedelta(seconds=1))\n"
        "    out['overview_events'] = int(o.causes['events'].sum())\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([lake.python, "-c", script, lake.uri], env={**lake.env, **setup.env}, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = lake.cli("report", "--config", str(setup.config_path), "--db", lake.uri)
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "report": report}


def test_three_consumers_one_killed_share_one_lake_exactly_once(lake: Lake, tmp_path: Path) -> None:
    wait_for_broker()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    from pipeline.config import load_config
    from pipeline.simulator import write_scenario

    sc = scenario(3_000)
    paths = write_scenario(sc, tmp_path / "scenario")
    env = isolated_kafka_env(prefix)
    setup = Setup(env, paths["config"], tmp_path / "unused.duckdb", load_config(paths["config"], env).kafka, sc)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b", "c")}
    procs = {name: start(lake, setup, name, log) for name, log in logs.items()}
    try:
        check_three_consumers(lake, setup, procs, logs)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def check_three_consumers(lake: Lake, setup: Setup, procs: dict[str, subprocess.Popen[bytes]],
                          logs: dict[str, Path]) -> None:
    wait_for(lambda: all("partitions assigned" in log.read_text() for log in logs.values()), 120,
             "three consumers to join")
    produce_scenario(setup)

    def committed(instance: str) -> int:
        rows = lake.rows(f"SELECT count(*) AS n FROM lake_positions WHERE instance = '{instance}'")
        return int(rows[0]["n"])

    wait_for(lambda: committed("b") > 0, 120, "consumer b to commit a batch")
    procs["b"].send_signal(signal.SIGKILL)  # mid-stream: its batches of 50 are far from done
    procs["b"].communicate(timeout=30)  # (closes its stdout pipe before the Popen is replaced)
    seen_while_writing = dashboard_and_report(lake, setup)
    procs["b"] = start(lake, setup, "b", logs["b"])
    for name in ("a", "c", "b"):
        finish(procs[name], timeout=300)

    stored = lake.rows("SELECT event_id, cause FROM classifications")
    truth = setup.good_events
    ids = [r["event_id"] for r in stored]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events stored twice"
    assert set(ids) == set(truth), f"missing {len(set(truth) - set(ids))}, extra {len(set(ids) - set(truth))}"
    agree = sum(1 for r in stored if truth[r["event_id"]] == r["cause"])
    assert agree / len(truth) >= 0.99, f"{agree} of {len(truth)} agree"
    writers = lake.rows("SELECT DISTINCT instance FROM lake_positions ORDER BY 1")
    assert [w["instance"] for w in writers] == ["a", "b", "c"]
    assert seen_while_writing["status"] == "ok", seen_while_writing  # b had committed: there are rows
    assert 0 < int(str(seen_while_writing["overview_events"])) <= len(truth)
    assert str(seen_while_writing["report"]).strip()
    after = dashboard_and_report(lake, setup)
    assert after["status"] == "ok" and after["overview_events"] == len(truth), after
    rolled_once_over_all_writers(lake)


def rolled_once_over_all_writers(lake: Lake) -> None:
    """A maintenance pass rolls each closed hour over every writer's rows once: rollups add up to the raw rows."""
    script = ("import sys\nfrom pipeline.io.lake import LakeStore\n"
              "with LakeStore(sys.argv[1], 'maint') as store:\n    store.maintain()\n")
    result = subprocess.run([lake.python, "-c", script, lake.uri], env=lake.env, cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = lake.rows(
        "SELECT (SELECT coalesce(sum(events), 0) FROM classifications_hourly WHERE hour < c.rolled_through) AS rolled, "
        "(SELECT count(*) FROM classifications WHERE ts < c.rolled_through) AS raw, "
        "(SELECT count(*) FROM classifications_hourly) AS hourly_rows FROM store_coverage AS c"
    )
    assert row["rolled"] == row["raw"] and int(row["hourly_rows"]) > 0, row
