"""The lake store over time: a restart re-judges stored rows, maintenance rolls hours up, expires and bounds.

One consumer (the lake's venv, as tests/test_lake_kafka.py starts it) stores the re-judge world's
events (tests/test_rejudge_kafka.py) and one event 40 days older; it is killed, a late key
snapshot arrives, and the restart judges the stored rows that snapshot changes (found through
the lake's awaiting_key and classifications, re-read from Kafka by offset); a snapshot after the
restart publishes the kid of a stored unknown_kid event. Then a maintenance pass with 30 days of
raw retention: hourly rollups and store_coverage filled, the old day's raw rows gone but counted
in its rollup, one row per key left in the version tables, old snapshots expired. Last, the notes of
records the broker deleted, as two writers leave them and a reader sums them.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.kafka_run import KafkaRun, produce_tracked, wait_for
from tests.test_lake_kafka import ROOT, Lake, started_lake
from tests.test_rejudge_kafka import AFTER_RESTART, EVENTS, EXPECTED, LATE_WHILE_DOWN, SAMPLED, event, keys
from tests.world import CONFIG_TOML, T0, default_snapshots, good_claims, mint

pytestmark = [pytest.mark.kafka, pytest.mark.lake]

EARLY = event("early", at=T0 - timedelta(hours=3), token=mint("rsa-2", claims=good_claims(T0 - timedelta(hours=3))))
#: Late into EARLY's hour, closed and rolled by the first consumer: the restart must roll it again by its stop.
LATE = event("late", at=T0 - timedelta(hours=2, minutes=55),
             token=mint("rsa-2", claims=good_claims(T0 - timedelta(hours=2, minutes=55))))
OLD = event("old", at=T0 - timedelta(days=40), token=mint("rsa-2", claims=good_claims(T0 - timedelta(days=40))))
MAINTAIN = (
    "import sys\nfrom datetime import timedelta\nfrom pipeline.io.lake import LakeStore\n"
    "with LakeStore(sys.argv[1], 'maint', retention_days=30) as store:\n"
    "    store.con.execute('INSERT INTO lake_snapshots SELECT * FROM lake_snapshots LIMIT 1')\n"  # a repeat
    "    store.con.execute(\"INSERT INTO lake_positions SELECT * REPLACE (updated_at - INTERVAL 1 HOUR AS updated_at) "
    "FROM lake_positions LIMIT 1\")\n"  # an old version (the consumers' own passes may have bounded theirs)
    "    store.con.execute(\"INSERT INTO lake_rows BY NAME SELECT * REPLACE ('future' AS event_id, "
    "TIMESTAMPTZ '9999-01-01' AS ts) FROM lake_rows LIMIT 1\")\n"  # a hostile ts: must not move retention
    "    store.maintain(expire_after=timedelta(0))\n    print(store.maintenance.lost)\n"
)
#: Two writers note records the broker deleted (`LakeStore.note_lost`, written with a heartbeat); a reader sums
#: the largest note per partition (both read samples[0]), a restarted writer reads its own notes back, and a
#: later running total replaces the earlier one.
LOST = (
    "import json, sys\nfrom datetime import UTC, datetime\nfrom pipeline.io.consumer_health import RecordsLost, "
    "records_lost\nfrom pipeline.io.lake import LakeStore\nfrom pipeline.io.store_readers import connect_readonly\n"
    "def note(instance, *losses):\n    with LakeStore(sys.argv[1], instance) as store:\n"
    "        for records, topic, partition, second in losses:\n"
    "            at = datetime(2026, 12, 6, 9, 0, second, tzinfo=UTC)\n"
    "            store.note_lost(RecordsLost(at, records, topic, partition, 100, 99 + records))\n"
    "        store.beat()\n"
    "def read():\n    con = connect_readonly(sys.argv[1])\n    lost = records_lost(con)\n    con.close()\n"
    "    return [lost.records, lost.topic, lost.partition, lost.first, lost.last]\n"
    "note('la', (25, 'failures', 0, 1), (7, 'samples', 0, 2))\n"
    "note('lb', (7, 'samples', 0, 3), (5, 'failures', 1, 4))\n"
    "out = {'first': read()}\nwith LakeStore(sys.argv[1], 'la') as again:\n"
    "    out['own'] = sorted([t, p, n.records] for (t, p), n in again.records_lost().items())\n"
    "note('la', (40, 'failures', 0, 5))\nout['later'] = read()\nprint(json.dumps(out))\n"
)


def consume(lake: Lake, run: KafkaRun, name: str, *extra: str) -> subprocess.Popen[bytes]:
    args = [lake.python, "-m", "pipeline.cli", "consume", "--config", str(run.config_path), "--db", lake.uri,
            "--instance", "c0", "--publish-interval", "0.2", "--batch-size", "50", *extra]
    with (run.tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(args, env={**lake.env, **run.env}, stdout=log, stderr=log, cwd=ROOT)


def causes(lake: Lake) -> dict[str, str]:
    return {r["event_id"]: r["cause"] for r in lake.rows("SELECT event_id, cause FROM classifications")}


def stored_causes(lake: Lake) -> dict[str, str]:
    """`causes`, or none while the first consumer has not created the lake's tables yet."""
    try:
        return causes(lake)
    except AssertionError:
        return {}


def one(lake: Lake, sql: str) -> Any:
    return next(iter(lake.rows(sql)[0].values()))


def test_a_lake_consumer_restarted_rejudges_and_maintenance_rolls_expires_and_bounds(tmp_path: Path) -> None:
    run = KafkaRun.create(tmp_path / "run", CONFIG_TOML, JWTRIAGE_STORE__RETENTION_DAYS="30")
    try:
        with started_lake() as lake:
            restart_and_maintain(lake, run)
    finally:
        run.close()


def restart_and_maintain(lake: Lake, run: KafkaRun) -> None:
    keys(run, *[s for s in default_snapshots() if s != AFTER_RESTART])
    produce_tracked(run.kafka, [(run.kafka.samples_topic, None, json.dumps({"token": SAMPLED}).encode())])
    produce_tracked(run.kafka, [(run.kafka.failures_topic, "payments-api", json.dumps(e).encode())
                                for e in [OLD, EARLY, *EVENTS]])
    first = consume(lake, run, "first")
    try:
        # (the consumer's own maintenance may have expired "old" already: it is 40 days before the rest)
        wanted = {e["event_id"] for e in [EARLY, *EVENTS]}
        wait_for(lambda: wanted <= set(stored_causes(lake)), 120, "the events stored")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert causes(lake)["retired"] == "valid" and causes(lake)["unknown"] == "unknown_kid"
    assert one(lake, "SELECT count(*) FROM awaiting_key WHERE event_id = 'unknown'") == "1"

    keys(run, LATE_WHILE_DOWN)  # while it is down: the restart judges stored rows again
    produce_tracked(run.kafka, [(run.kafka.failures_topic, "payments-api", json.dumps(LATE).encode())])
    again = consume(lake, run, "again", "--exit-when-idle", "8")
    wait_for(lambda: causes(lake).get("retired") == "retired_key", 120, "the restart to judge stored rows again")
    keys(run, AFTER_RESTART)  # publishes the kid of the stored unknown_kid event
    assert again.wait(timeout=180) == 0, (run.tmp / "again.log").read_text()[-3000:]
    log = (run.tmp / "again.log").read_text()
    assert "judged again and changed" in log, log[-3000:]
    assert "not judged again" not in log
    assert {k: v for k, v in causes(lake).items() if k not in {"old", "early", "late"}} == EXPECTED, log[-3000:]
    # The stopped consumer left rollups that count the late row (a pass, or its last publish, rolled it).
    rolled, raw = closed_hours_rolled_and_raw(lake)  # ("old" too, if no pass has expired it yet)
    assert rolled == raw and int(raw) >= 2, (rolled, raw)
    stored = [r["event_id"] for r in lake.rows("SELECT event_id FROM classifications")]
    assert len(stored) == len(set(stored))  # every event once: the re-judged versions replaced theirs
    assert one(lake, "SELECT count(*) FROM awaiting_key") == "0"  # unknown is unpublished_key now
    check_maintenance(lake)


def closed_hours_rolled_and_raw(lake: Lake) -> tuple[str, str]:
    """Events of the raw period's closed hours: in their rollups, and as raw rows."""
    rolled = one(lake, "SELECT coalesce(sum(events), 0) FROM classifications_hourly WHERE hour >= coalesce("
                       "(SELECT raw_since FROM store_coverage), '-infinity') "
                       "AND hour < (SELECT rolled_through FROM store_coverage)")
    raw = one(lake, "SELECT count(*) FROM classifications WHERE ts < (SELECT rolled_through FROM store_coverage) "
                    "AND ts >= coalesce((SELECT raw_since FROM store_coverage), '-infinity')")
    return rolled, raw


def check_maintenance(lake: Lake) -> None:
    keys_now = int(one(lake, "SELECT count(*) FROM (SELECT DISTINCT instance, source, source_partition "
                             "FROM lake_positions)"))
    snapshots_before = int(one(lake, "SELECT count(*) FROM ducklake_snapshots('lake')"))
    repeated = "SELECT count(*) - count(DISTINCT (issuer, fetched_at)) FROM lake_snapshots"
    result = subprocess.run([lake.python, "-c", MAINTAIN, lake.uri], env=lake.env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"  # nothing lost to a concurrent writer: none ran

    assert one(lake, "SELECT count(*) FROM lake_positions") == str(keys_now)  # bounded: the latest per key
    assert one(lake, "SELECT count(*) FROM lake_meta WHERE starts_with(key, 'heartbeat:')") == "1"
    assert one(lake, repeated) == "0"
    assert int(one(lake, "SELECT count(*) FROM ducklake_snapshots('lake')")) < snapshots_before  # expired
    # Retention: the day 40 days before the rest is gone from the raw rows, and counted in its rollup.
    kept = set(causes(lake))
    assert "old" not in kept and {"early", "retired", "future"} <= kept  # (a year-9999 ts moved nothing)
    coverage = lake.rows("SELECT raw_since, rolled_through FROM store_coverage")[0]
    assert coverage["raw_since"] and coverage["rolled_through"], coverage
    old_hour = lake.rows("SELECT sum(events) AS n, min(service) AS service FROM classifications_hourly "
                         "WHERE hour < (SELECT raw_since FROM store_coverage)")[0]
    assert old_hour == {"n": "1", "service": "payments-api"}, old_hour
    # The closed hours of the raw period are rolled: their events add up to the raw rows of those hours.
    assert closed_hours_rolled_and_raw(lake) == ("2", "2")  # "early" and "late", 3 hours before the rest
    versions = lake.rows("SELECT hour, count(DISTINCT version) AS n FROM lake_hourly GROUP BY hour")
    assert versions and all(v["n"] == "1" for v in versions), versions
    check_records_lost(lake)


def check_records_lost(lake: Lake) -> None:
    """The lake keeps the consumers' notes of records the broker deleted, as the Parquet-parts store does."""
    assert one(lake, "SELECT count(*) FROM store_meta WHERE starts_with(key, 'lost:')") == "0"  # c0 lost none
    result = subprocess.run([lake.python, "-c", LOST, lake.uri], env=lake.env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["first"] == [25 + 7 + 5, "failures", 1, 100, 104], out  # samples[0] once; the newest hole is lb's
    assert out["own"] == [["failures", 0, 25], ["samples", 0, 7]], out
    assert out["later"] == [40 + 7 + 5, "failures", 0, 100, 139], out
