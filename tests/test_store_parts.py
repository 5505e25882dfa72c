"""A consumer's store as appended Parquet (issue 21): publish appends, readers dedup, merges, retention, rollups."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import queries
from pipeline.engine.tokens import fingerprint
from pipeline.errors import StoreError
from pipeline.io import store_publish
from pipeline.io.memory import ListSource
from pipeline.io.store import WRITER_MEMORY_LIMIT, Store
from pipeline.io.store_parts import (
    APPENDED,
    DAY_LEVEL,
    FANOUT,
    MERGED_ROW_GROUP_SIZE,
    OPEN_FOLDER,
    ROW_GROUP_SIZE,
    part_files,
    raw_relation,
    rollup_name,
    view_sql,
)
from pipeline.io.store_readers import connect_readonly, published_parts
from pipeline.io.store_rollups import rollup_relation
from pipeline.io.store_schema import parts_dir
from pipeline.queries.coverage import coverage
from pipeline.records import RecordKind
from pipeline.rollups import HOURLY_COLUMNS
from pipeline.runner import Pipeline, run
from tests.test_rollups import _answers
from tests.test_runner_store import T0, Feed, ev, snapshot_envelopes
from tests.world import World, good_claims, mint

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
#: The module (the package exports its function of the same name).
coverage_module = importlib.import_module("pipeline.queries.coverage")

#: Where `events` is in a rollup row without its sketch (`SELECT * EXCLUDE (token_sketch)`).
EVENTS = [name for name, _ in HOURLY_COLUMNS if name != "token_sketch"].index("events")


def count(db: Path, sql: str = "SELECT count(*) FROM classifications") -> int:
    con = connect_readonly(db)
    try:
        return int(con.execute(sql).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def add_rows(store: Store, first: int, n: int, ts: datetime, step: timedelta = timedelta(seconds=1)) -> None:
    """`n` verdict rows straight into the writer's live file (one committed batch), as a write would."""
    now = store._now()
    store.con.execute(
        """INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, source,
                                        source_partition, source_offset, classified_at)
           SELECT 'e' || i, ?::TIMESTAMPTZ + to_microseconds((i - ?) * ?), 'payments-api', 'expired', 'verified',
                  [], ['expired'], 't', 0, i, ? FROM range(?, ?) r(i)""",
        [ts, first, int(step.total_seconds() * 1_000_000), now, first, first + n],
    )


def test_publish_appends_and_plain_duckdb_opens_the_store(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        add_rows(store, 0, 100, DAY0)
        store.publish()
        add_rows(store, 100, 50, DAY0 + timedelta(hours=1))
        store.publish()
        store.publish()  # nothing new: no new file
    files = part_files(parts_dir(db) / "classifications" / "2026-01-01", "c1")
    assert [(f.first, f.last) for f in files] == [(1, 1), (2, 2)]
    assert count(db) == 150
    con = duckdb.connect()  # the complaint: `--db k.duckdb` must leave a k.duckdb plain DuckDB opens
    con.execute(f"ATTACH '{db}' AS j (READ_ONLY)")
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM j.classifications").fetchone() == (150, 150)
    assert [p.name for p in published_parts(db)] == ["c1"]


def test_a_publish_repeated_after_a_crash_adds_no_copy(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        add_rows(store, 0, 100, DAY0)
        store.publish()
        store.con.execute("UPDATE store_meta SET value = '1' WHERE key = 'publish_seq'")  # as if it never committed
        store.con.execute("DELETE FROM store_meta WHERE key = 'published_through'")
        add_rows(store, 100, 10, DAY0)
        store.publish()  # the same publish number again: the same file, now a superset
    assert count(db) == 110
    assert count(db, "SELECT count(DISTINCT event_id) FROM classifications") == 110


def test_a_rejudged_row_is_seen_once_with_its_new_verdict(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "k.duckdb"
    token = mint("rsa-2", claims=good_claims(aud="api://orders"))
    pipeline = Pipeline(World().cfg)
    with Store(db, instance="c1") as store:
        run(ListSource([*snapshot_envelopes(feed), feed(RecordKind.EVENT, ev("a", token_sha256=fingerprint(token)))]),
            pipeline, store)
        store.publish()
        assert count(db, "SELECT count(*) FROM classifications WHERE confidence = 'reported'") == 1
        run(ListSource([feed(RecordKind.SAMPLE, json.dumps({"token": token}).encode())]), pipeline, store)
        store.publish()
    con = connect_readonly(db)
    assert con.execute("SELECT event_id, cause, confidence FROM classifications").fetchall() == [
        ("a", "audience_mismatch", "verified")
    ]
    con.close()


def test_small_files_are_merged_and_nothing_is_lost(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        for n in range(FANOUT + 3):
            add_rows(store, n * 10, 10, DAY0 + timedelta(minutes=n))
            store.publish()
    files = part_files(parts_dir(db) / "classifications" / "2026-01-01", "c1")
    assert sorted(f.level for f in files) == [0, 0, 0, 1]
    assert count(db) == (FANOUT + 3) * 10


def test_retention_drops_whole_days_and_rollups_keep_the_counts(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=2, rollup_retention_days=10) as store:
        for day in range(5):  # 5 days of 48 rows, one every 30 minutes
            add_rows(store, day * 48, 48, DAY0 + timedelta(days=day), step=timedelta(minutes=30))
            store.publish()
            assert store.publisher is not None
            store.publisher.maintain()
    days = sorted(p.name for p in (parts_dir(db) / "classifications").iterdir())
    assert days == ["2026-01-04", "2026-01-05", "_schema"]  # the newest event is on 2026-01-05: two days kept
    con = connect_readonly(db)
    raw_since, rolled_through = con.execute("SELECT raw_since, rolled_through FROM store_coverage").fetchone()
    assert raw_since == datetime(2026, 1, 4, tzinfo=UTC)
    # the last hour is not closed yet: rolled (provisionally) up to a minute before the newest event, 23:30
    assert rolled_through == datetime(2026, 1, 5, 23, 29, tzinfo=UTC)
    hourly = dict(con.execute("SELECT hour::DATE, sum(events) FROM classifications_hourly GROUP BY 1").fetchall())
    assert sum(hourly.values()) == 5 * 48 - 1  # every event before that, expired raw days included
    assert con.execute("SELECT count(*) FROM classifications").fetchone() == (96,)
    con.close()


def test_a_pass_killed_while_dropping_days_still_says_what_is_expired(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Coverage is noted before the days go: a pass cut short after the first folder went (a kill, a full
    disk) leaves readers counting the expired hours from rollups, not from what is left of their raw rows."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=2, rollup_retention_days=10) as store:
        for days in (range(2), range(2, 5)):  # the first publish's pass keeps both days; the second is due later
            for day in days:
                add_rows(store, day * 48, 48, DAY0 + timedelta(days=day), step=timedelta(minutes=30))
            store.publish()
        assert store.publisher is not None
        real_drop = store_publish.drop_days_before

        def killed_after_the_last_raw_day(folder: Path, day_no: int) -> bool:
            dropped = real_drop(folder, day_no)
            if folder.name == APPENDED[-1]:
                raise OSError("killed")
            return dropped

        monkeypatch.setattr(store_publish, "drop_days_before", killed_after_the_last_raw_day)
        with pytest.raises(OSError, match="killed"):
            store.publisher.maintain()
        monkeypatch.undo()
    with Store(db, instance="c1", retention_days=2, rollup_retention_days=10) as store:  # the restart
        assert store.publisher is not None
        store.publisher.maintain()
    con = connect_readonly(db)
    assert con.execute("SELECT raw_since FROM store_coverage").fetchone() == (datetime(2026, 1, 4, tzinfo=UTC),)
    # every event before 23:29 (the open rollup's end, a minute before the newest event): all but 23:30's
    assert con.execute("SELECT sum(events) FROM classifications_hourly").fetchone() == (5 * 48 - 1,)
    con.close()


def test_readers_count_only_the_latest_version_of_an_hour_when_an_older_one_is_left(tmp_path: Path) -> None:
    """A crash between writing an hour's new rollup and removing the old one leaves both: readers pick by name."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=2, rollup_retention_days=10) as store:
        add_rows(store, 0, 48, DAY0, step=timedelta(minutes=30))
        add_rows(store, 48, 1, DAY0 + timedelta(days=1))
        store.publish()
        assert store.publisher is not None
        store.publisher.maintain()
    folder = parts_dir(db) / "hourly" / "2026-01-01"
    latest = sorted(folder.glob("c1-h*-v*.parquet"))[0]
    hour_no, version = (int(x) for x in re.findall(r"-[hv](\d+)", latest.name))
    total = "SELECT sum(events) FROM classifications_hourly"
    con = connect_readonly(db)
    (before,) = con.execute(total).fetchone()
    (in_file,) = con.execute(f"SELECT sum(events) FROM '{latest}'").fetchone()
    con.close()
    assert in_file > 0
    shutil.copyfile(latest, folder / rollup_name("c1", hour_no, version - 1))  # the old version, left behind
    con = connect_readonly(db)
    assert con.execute(total).fetchone() == (before,)
    con.close()
    shutil.copyfile(latest, folder / rollup_name("c1", hour_no + 9999, version - 1))  # another hour's latest: counted
    con = connect_readonly(db)
    assert con.execute(total).fetchone() == (before + in_file,)
    con.close()


def test_a_closed_days_merged_file_has_row_groups_of_the_merged_size(tmp_path: Path) -> None:
    """A merged day's rows are in MERGED_ROW_GROUP_SIZE row groups (a short footer for readers to parse), not in
    the small groups of the files a publish writes."""
    db = tmp_path / "k.duckdb"
    rows = ROW_GROUP_SIZE * 2 + 100
    assert rows < MERGED_ROW_GROUP_SIZE
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, rows // 2, DAY0, step=timedelta(seconds=1))
        store.publish()
        add_rows(store, rows // 2, rows - rows // 2, DAY0 + timedelta(hours=12), step=timedelta(seconds=1))
        add_rows(store, rows, 1, DAY0 + timedelta(days=1, hours=2))  # day 0 is closed
        store.publish()
        store.publisher.maintain()
    files = part_files(parts_dir(db) / "classifications" / "2026-01-01", "c1")
    assert [f.level for f in files] == [DAY_LEVEL]
    with duckdb.connect() as con:
        groups = con.execute("SELECT row_group_id, any_value(row_group_num_rows) FROM parquet_metadata(?) "
                             "GROUP BY 1", [str(files[0].path)]).fetchall()
    assert [n for _, n in groups] == [rows]
    assert count(db) == rows + 1


@pytest.fixture
def retire_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaced rollup files removed at the next publish, not `RETIRE_AFTER_SECONDS` later: tests of what a
    folder holds once they are gone."""
    monkeypatch.setattr(store_publish, "RETIRE_AFTER_SECONDS", -1.0)


@pytest.mark.usefixtures("retire_at_once")
def test_a_rolled_day_becomes_one_file_and_a_late_event_rewrites_it(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    folder = parts_dir(db) / "hourly" / "2026-01-01"
    total = "SELECT sum(events) FROM classifications_hourly WHERE hour < '2026-01-02'"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 48, DAY0, step=timedelta(minutes=30))
        add_rows(store, 48, 1, DAY0 + timedelta(days=1, hours=2))  # day 1 is closed and all its hours rolled
        store.publish()
        store.publisher.maintain()
        day_no = (DAY0 - datetime(1970, 1, 1, tzinfo=UTC)).days
        assert [p.name.split("-v")[0] for p in folder.glob("*.parquet")] == [f"c1-d{day_no}"]  # one file, no hours
        assert count(db, total) == 48
        add_rows(store, 49, 1, DAY0 + timedelta(hours=5, minutes=1))  # a late event of a merged day
        store.publish()
        store.publisher.maintain()
        merged = list(folder.glob("*.parquet"))
        assert len(merged) == 1 and "-d" in merged[0].name  # rewritten, not a file of the hour beside it
        assert count(db, total) == 49
        # a merge cut short before removing its inputs: an older hour file beside the merged day is not counted
        shutil.copyfile(merged[0], folder / rollup_name("c1", 490901, 1))
        assert count(db, total) == 49
        store.publisher.maintain()  # and the next pass removes it
        assert [p.name for p in folder.glob("*.parquet")] == [merged[0].name]
    assert count(db, total) == 49


def test_an_event_dated_in_9999_neither_crashes_publishing_nor_expires_real_days(tmp_path: Path) -> None:
    """A hostile `ts` (the poison test sends such events through Kafka) must not move retention past real traffic."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=2, rollup_retention_days=10) as store:
        add_rows(store, 0, 48, DAY0, step=timedelta(minutes=30))
        add_rows(store, 48, 1, datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
        for i, ts in enumerate(("290000-01-01 00:00:00+00", "-4000-01-01 00:00:00+00")):  # past what Python dates
            store.con.execute("UPDATE classifications SET ts = ?::TIMESTAMPTZ WHERE event_id = ?", [ts, f"e{i}"])
        store.publish()
        assert store.publisher is not None
        store.publisher.maintain()
    # The first and last days Python can date are open-ended folders: every row is published, and the one
    # dated 4001 BC then expires with its day like any day older than the retention; the real day stays.
    assert count(db) == 48
    days = {p.name for p in (parts_dir(db) / "classifications").iterdir()}
    assert {"2026-01-01", "9999-12-31"} <= days and "0001-01-01" not in days


def test_a_restart_reads_only_the_recent_rows(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        add_rows(store, 0, 100, DAY0 + timedelta(days=5))  # events of any time: what counts is when they were written
        add_rows(store, 100, 100, DAY0)
        store.publish()
        store.con.execute("UPDATE classifications SET classified_at = classified_at - INTERVAL 7 HOUR "
                          "WHERE source_offset < 100")  # as if written seven hours ago
        assert store.publisher is not None
        store.publisher.maintain()
        live = store.con.execute("SELECT min(source_offset), count(*) FROM classifications").fetchone()
    assert live == (100, 100)  # the rows written long ago are in Parquet only
    assert count(db) == 200


def test_a_consumer_never_replaces_a_single_file_store(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    Store(db).close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="single-file store"):
        Store(db, instance="c1")
    assert db.read_bytes() == before


def test_a_publish_bigger_than_a_sort_fits_is_appended_whole(tmp_path: Path) -> None:
    """A backlog drained between two publishes (100k verdicts of ~1 KB) was sorted whole and ran out of
    the writer's memory limit (DuckDB cannot spill that sort); past `SORTED_APPEND_ROWS` it is appended
    in arrival order, every row once, within the limit."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        add_rows(store, 0, 100_000, DAY0, step=timedelta(milliseconds=10))
        store.con.execute("SET memory_limit = '1GB'")  # the setup's UPDATE, not the publish, needs room
        store.con.execute("UPDATE classifications SET detail = repeat(md5(event_id), 25), "
                          "token_claims = ('{\"jti\":\"' || repeat(md5(event_id), 8) || '\"}')::JSON")
        store.con.execute("CHECKPOINT")
        store.con.execute(f"SET memory_limit = '{WRITER_MEMORY_LIMIT}'")
        store.publish()
    assert count(db) == 100_000
    assert count(db, "SELECT count(DISTINCT event_id) FROM classifications") == 100_000


def test_a_failed_maintenance_pass_is_logged_and_the_consumer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        publisher = store.publisher
        assert publisher is not None
        limit = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
        seen_limits: list[str] = []

        def out_of_memory(*_: object) -> None:
            seen_limits.append(store.con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
            raise duckdb.OutOfMemoryException("failed to pin block of size 256.0 KiB")

        monkeypatch.setattr(publisher, "_roll", out_of_memory)
        add_rows(store, 0, 100, DAY0)
        store.publish()  # must not raise
        assert publisher.maintenance_failures == 1
        assert "store maintenance failed (OutOfMemoryException" in caplog.text
        assert seen_limits == ["953.6 MiB"]  # the pass ran with the maintenance limit ...
        assert store.con.execute("SELECT current_setting('memory_limit')").fetchone() == limit  # ... set back
        add_rows(store, 100, 10, DAY0 + timedelta(hours=2))
        store.publish()  # within the retry wait: no second try
        assert publisher.maintenance_failures == 1
        monkeypatch.setattr(store_publish, "MAINTENANCE_RETRY_SECONDS", 0.0)
        monkeypatch.setattr(store_publish, "MAINTENANCE_SECONDS", 0.0)
        publisher._last_maintenance = float("-inf")
        monkeypatch.undo()
        store.publish()  # the real pass now: the hours roll
    assert count(db) == 110
    assert count(db, "SELECT sum(events) FROM classifications_hourly") == 100  # hour 0 and 1 closed, not 2


def _raw_answers(db: Path, since: datetime, until: datetime) -> dict[str, Any]:
    """`test_rollups._answers` over the store's raw rows only, and over rollups where it has them."""
    con = connect_readonly(db)
    try:
        with_rollups = _answers(con, since, until)
        con.execute("CREATE OR REPLACE VIEW store_coverage AS "
                    "SELECT NULL::TIMESTAMPTZ AS raw_since, NULL::TIMESTAMPTZ AS rolled_through")
        return {"rolled": with_rollups, "raw": _answers(con, since, until)}
    finally:
        con.close()


#: Windows over the rows `add_rows` writes from 10:00 on (a window's edge off the hour is exact only where no
#: closed hour's rollup row straddles it: an hour counts where it starts).
OPEN_WINDOWS = [(DAY0, DAY0 + timedelta(days=1)), (DAY0 + timedelta(hours=10), DAY0 + timedelta(hours=12)),
                (DAY0 + timedelta(hours=11, minutes=15), DAY0 + timedelta(hours=23, minutes=15)),  # starts in 11:00-
                (DAY0 + timedelta(hours=9, minutes=20), DAY0 + timedelta(hours=11, minutes=20))]  # ends in it


def test_a_single_writers_open_hours_are_rolled_and_readers_count_as_over_raw_rows(tmp_path: Path) -> None:
    """Each pass rolls the open hours up to a minute before the newest event into one file: readers roll
    only the raw rows after it, and answer as raw rows do; a late row is counted at the next publish."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 10:00 … 11:39:30
        store.publish()
        store.publisher.maintain()
        opened = list((parts_dir(db) / "hourly" / OPEN_FOLDER).glob("*.parquet"))
        assert 1 <= len(opened) <= 2 and all(p.name.startswith("c1-o") for p in opened)  # the newest, the one before
        con = connect_readonly(db)
        found = coverage(con)
        con.close()
        assert found.closed_through == DAY0 + timedelta(hours=11)  # 11:00 closes 10 minutes after noon
        assert found.rolled_through == DAY0 + timedelta(hours=11, minutes=38)  # a minute before 11:39:30
        assert count(db, "SELECT count(*) FROM classifications WHERE ts >= "
                         "(SELECT rolled_through FROM store_coverage)") == 4  # what a reader rolls itself
        for since, until in OPEN_WINDOWS:
            answers = _raw_answers(db, since, until)
            assert answers["rolled"] == answers["raw"], (since, until)
        add_rows(store, 200, 1, DAY0 + timedelta(hours=11, minutes=5))  # late: before the open rollup's end
        store.publish()  # rolls the open hours again (`_settle`): readers count from that rollup
        total = "SELECT sum(events) FROM classifications_hourly"
        assert count(db, total) == 197
        store.publisher.maintain()
        assert count(db, total) == 197
        assert len(list((parts_dir(db) / "hourly" / OPEN_FOLDER).glob("*.parquet"))) == 2  # and the one before
        answers = _raw_answers(db, DAY0, DAY0 + timedelta(days=1))
        assert answers["rolled"] == answers["raw"]


def test_late_rows_in_rolled_hours_are_rolled_again_within_seconds_and_at_once_when_the_writer_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers count rolled hours from rollups: a late or re-judged row there is rolled again at the next
    publish, at most every `SETTLE_SECONDS`, and by the last publish of a writer that stops (its next pass
    is at its restart). Rows after the rolled span cost no roll."""
    monkeypatch.setattr(store_publish, "SETTLE_SECONDS", 3600.0)  # the second roll waits, however slow the machine
    db = tmp_path / "k.duckdb"
    total = "SELECT sum(events) FROM classifications_hourly"
    opened = parts_dir(db) / "hourly" / OPEN_FOLDER
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 10:00 … 11:39:30
        store.publish()
        store.publisher.maintain()
        files = sorted(opened.iterdir())
        add_rows(store, 300, 1, DAY0 + timedelta(hours=11, minutes=39, seconds=45))  # after the open rollup's end
        store.publish()
        assert sorted(opened.iterdir()) == files  # nothing rolled again
        add_rows(store, 200, 1, DAY0 + timedelta(hours=11, minutes=5))  # in the open rollup's span
        store.publish()
        assert count(db, total) == 197
        add_rows(store, 201, 1, DAY0 + timedelta(hours=9))  # in a closed hour, right after
        store.publish()
        assert count(db, total) == 197  # provisional: the last roll was less than `SETTLE_SECONDS` ago
        store.publish(final=True)
    assert count(db, total) == 198
    answers = _raw_answers(db, DAY0, DAY0 + timedelta(days=1))
    assert answers["rolled"] == answers["raw"]


def test_a_rollup_file_a_newer_version_replaced_stays_readable_for_a_while(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader lists its question's rollup files, then reads them: a re-roll (within seconds of a late row)
    removing the version it listed failed its question ("Cannot open file"). Replaced files go later."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 10:00 … 11:39:30
        store.publish()
        store.publisher.maintain()
        (listed,) = list((parts_dir(db) / "hourly" / "2026-01-01").glob("c1-h*.parquet"))  # 10:00's rollup
        reader = duckdb.connect()
        add_rows(store, 200, 1, DAY0 + timedelta(hours=10, minutes=7))  # late into 10:00: rolled again
        store.publish()
        assert len(list(listed.parent.glob("c1-h*.parquet"))) == 2  # the new version, and the one a reader listed
        assert reader.execute(f"SELECT sum(events) FROM read_parquet('{listed}')").fetchone() == (120,)
        monkeypatch.setattr(store_publish, "RETIRE_AFTER_SECONDS", -1.0)
        store.publish()
        assert not listed.exists()
    assert count(db, "SELECT sum(events) FROM classifications_hourly WHERE hour < '2026-01-01 11:00:00'") == 121


def test_a_verdict_rejudged_at_the_end_is_counted_as_rejudged_once_the_writer_stops(tmp_path: Path) -> None:
    """The lab's case: a late sample re-judges a row the open rollup already counts, in the consumer's last
    batch; the dashboard's cause counts must then be the stored verdicts' (they were a pass behind)."""
    feed, db = Feed(), tmp_path / "k.duckdb"
    token = mint("rsa-2", claims=good_claims(aud="api://orders"))
    pipeline = Pipeline(World().cfg)
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        run(ListSource([*snapshot_envelopes(feed), feed(RecordKind.EVENT, ev("a", token_sha256=fingerprint(token)))]),
            pipeline, store)  # dated T0, 12:00
        add_rows(store, 0, 100, T0, step=timedelta(seconds=12))  # to 12:19:48: the open rollup runs to 12:18
        store.publish()
        store.publisher.maintain()  # ... and counts "a" as reported
        run(ListSource([feed(RecordKind.SAMPLE, json.dumps({"token": token}).encode())]), pipeline, store)
        store.publish(final=True)
    con = connect_readonly(db)
    try:
        stored = dict(con.execute("SELECT cause, count(*) FROM classifications GROUP BY 1").fetchall())
        assert stored["audience_mismatch"] == 1
        assert {row["cause"]: row["events"] for row in queries.cause_counts(con)} == stored
    finally:
        con.close()


def test_a_reader_keeps_counting_the_open_rollup_it_first_saw_while_passes_replace_it(tmp_path: Path) -> None:
    """A pass between a reader's look at the coverage and its question must not make it count a newer open
    rollup (whose rows reach past the end the reader reads raw rows from): the connection pins its own."""
    db = tmp_path / "k.duckdb"
    total = "SELECT sum(events) FROM classifications_hourly"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 10:00 … 11:39:30
        store.publish()
        store.publisher.maintain()
        reader = connect_readonly(db)
        first = coverage(reader).rolled_through
        assert first == DAY0 + timedelta(hours=11, minutes=38)
        add_rows(store, 200, 10, DAY0 + timedelta(hours=11, minutes=40), step=timedelta(seconds=30))
        store.publish()
        store.publisher.maintain()  # a newer open rollup, to 11:43
        assert count(db, total) == 206
        assert coverage(reader).rolled_through == first and reader.execute(total).fetchone() == (196,)
        assert queries.total_events(reader, queries.Filters(since=DAY0)) == 210
        add_rows(store, 210, 1, DAY0 + timedelta(hours=11, minutes=45))
        store.publish()
        store.publisher.maintain()  # the pinned one goes: the reader falls back on the closed hours
        assert coverage(reader).rolled_through == DAY0 + timedelta(hours=11)
        assert queries.total_events(reader, queries.Filters(since=DAY0)) == 211
        reader.close()


def test_a_reader_reads_the_coverage_again_only_when_its_files_change(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A report asks the coverage before each of its ~19 questions: a reader connection reads it once and again
    only when a writer's pass rewrote what it follows (its store_meta, the open rollups)."""
    db = tmp_path / "k.duckdb"
    read: list[Any] = []
    real = coverage_module._coverage
    monkeypatch.setattr(coverage_module, "_coverage", lambda con: read.append(con) or real(con))
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 10:00 … 11:39:30
        store.publish()
        store.publisher.maintain()
        reader, other = connect_readonly(db), connect_readonly(db)
        first = coverage(reader)
        assert [coverage(reader) for _ in range(3)] == [first] * 3 and len(read) == 1
        assert coverage(other) == first and len(read) == 2  # per connection
        add_rows(store, 200, 1, DAY0 + timedelta(hours=12))
        store.publish()
        store.publisher.maintain()  # a newer open rollup: read again (and the reader keeps its pinned one)
        assert coverage(reader).rolled_through == first.rolled_through and len(read) == 3
        add_rows(store, 201, 1, DAY0 + timedelta(hours=12, minutes=5))
        store.publish()
        store.publisher.maintain()  # the pinned one goes: read again, the closed hours
        assert coverage(reader).rolled_through == first.closed_through and len(read) == 4
        reader.close()
        other.close()


@pytest.mark.usefixtures("retire_at_once")
def test_a_reader_reads_only_the_rollup_files_of_its_window_and_the_rows_the_view_gives(tmp_path: Path) -> None:
    """`rollup_relation`: the latest files whose hours can fall in a window, cut at the open rollup as the view
    cuts them, give the view's rows of that window; a window of one day names that day's file only."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 48, DAY0, step=timedelta(minutes=30))  # day 0: merged into one file
        add_rows(store, 48, 1200, DAY0 + timedelta(days=1, hours=2), step=timedelta(seconds=29))  # to 11:39:31
        store.publish()
        store.publisher.maintain()  # day 1: hour files to 11:00, the open rollup from there
        assert writer_relation(store) == "classifications_hourly"  # a writer's connection reads the view
    hourly = parts_dir(db) / "hourly"
    assert [p.name[:3] for p in (hourly / "2026-01-01").glob("*.parquet")] == ["c1-"]
    assert {p.name[:4] for p in (hourly / "2026-01-02").glob("*.parquet")} == {"c1-h"}
    assert len(list((hourly / OPEN_FOLDER).glob("*.parquet"))) >= 1
    late = DAY0 + timedelta(days=1, hours=11)  # a closed file of an hour the open rollup holds: cut, as in the view
    shutil.copyfile(sorted((hourly / OPEN_FOLDER).glob("*.parquet"))[-1], hourly / "2026-01-02" / rollup_name(
        "c1", int(late.timestamp()) // 3600, 1))
    con = connect_readonly(db)
    try:
        coverage(con)  # pins the open rollup, as every question does first
        day = rollup_relation(con, DAY0, DAY0 + timedelta(days=1))
        assert "2026-01-01/" in day and "2026-01-02/" not in day and "/open/" not in day
        assert_naive_times_are_utc(lambda since, until: rollup_relation(con, since, until), day)
        windows = [(DAY0, DAY0 + timedelta(days=1)), (DAY0 + timedelta(hours=5), DAY0 + timedelta(hours=30)),
                   (late - timedelta(hours=1), late + timedelta(hours=1)), (None, None), (None, late),
                   (late + timedelta(minutes=15), None), (DAY0 - timedelta(days=3), DAY0),
                   (DAY0, DAY0 + timedelta(hours=1)),
                   (DAY0 + timedelta(hours=23), DAY0 + timedelta(hours=25))]  # fmt: skip
        for since, until in windows:
            where = "hour >= coalesce(?, '-infinity'::TIMESTAMPTZ) AND hour < coalesce(?, 'infinity'::TIMESTAMPTZ)"
            rows = "SELECT * EXCLUDE (token_sketch) FROM {} WHERE " + where + " ORDER BY ALL"
            mine = con.execute(rows.format(rollup_relation(con, since, until)), [since, until]).fetchall()
            assert mine == con.execute(rows.format("classifications_hourly"), [since, until]).fetchall(), (since, until)
            assert since is not None or until != late or sum(r[EVENTS] for r in mine) == 48 + 1118  # once: before 11:00
    finally:
        con.close()


def test_a_reader_reads_only_the_raw_days_of_its_window_and_anti_joins_only_replaced_rows(tmp_path: Path) -> None:
    """`raw_relation`: the day folders a window can reach, anti-joined with those days' superseded rows, and not
    at all when they have none (a replaced row and its replacement carry the same ts), give the view's rows."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        add_rows(store, 0, 96, DAY0, step=timedelta(minutes=30))  # two days
        store.publish()
        replaced = store.con.execute("SELECT event_id, ts, classified_at FROM classifications WHERE event_id = 'e60'"
                                     ).fetchone()  # fmt: skip
        assert replaced is not None
        now = store._now()  # a re-judge: the row again with a later version, the old version superseded
        store.con.execute("""INSERT INTO classifications SELECT * REPLACE ('stale_jwks' AS cause, ? AS classified_at)
                             FROM classifications WHERE event_id = 'e60'""", [now])
        store.con.execute("INSERT INTO superseded VALUES (?, ?, ?, ?)", [*replaced, now])
        store.publish()
        assert raw_relation(store.con, None, None) == "classifications"  # a writer's connection reads the view
    day1 = DAY0 + timedelta(days=1)
    con = connect_readonly(db)
    try:
        first_day = raw_relation(con, DAY0, day1)
        assert "2026-01-01/" in first_day and "2026-01-02/" not in first_day and "ANTI JOIN" not in first_day
        assert_naive_times_are_utc(lambda since, until: raw_relation(con, since, until), first_day)
        assert "ANTI JOIN" in raw_relation(con, day1 + timedelta(hours=3), None)
        for since, until in [(DAY0, day1), (day1, day1 + timedelta(days=1)), (None, None), (None, day1),
                             (DAY0 + timedelta(hours=12), day1 + timedelta(hours=12)),
                             (day1 + timedelta(hours=6), None), (DAY0 - timedelta(days=2), DAY0)]:  # fmt: skip
            where = "ts >= coalesce(?, '-infinity'::TIMESTAMPTZ) AND ts < coalesce(?, 'infinity'::TIMESTAMPTZ)"
            rows = "SELECT event_id, ts, classified_at, cause FROM {} WHERE " + where + " ORDER BY ALL"
            mine = con.execute(rows.format(raw_relation(con, since, until)), [since, until]).fetchall()
            assert mine == con.execute(rows.format("classifications"), [since, until]).fetchall(), (since, until)
        assert queries.total_events(con, queries.Filters(since=day1, until=day1 + timedelta(days=1))) == 48  # once
    finally:
        con.close()


def test_opening_a_reader_reads_no_raw_days_file_and_its_view_still_reads_every_one(tmp_path: Path) -> None:
    """A reader's connection creates the `classifications` view without parsing a raw day's footer (a full-rate
    day's takes tens of ms, a connection paid it for every day kept); the view still reads every day at use,
    an older file's missing column included, with the columns and rows of the view over the glob."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        add_rows(store, 0, 96, DAY0, step=timedelta(minutes=30))  # two days
        store.publish()
    parts = parts_dir(db)
    older = parts / "classifications" / (DAY0 - timedelta(days=1)).date().isoformat()
    older.mkdir()
    with duckdb.connect() as plain:  # a file from before a column was added: the union binds it as NULL
        plain.execute(f"COPY (SELECT * EXCLUDE (findings) REPLACE ('old' AS event_id, ?::TIMESTAMPTZ AS ts) "
                      f"FROM read_parquet('{parts}/classifications/2026-01-01/*.parquet') LIMIT 1) "
                      f"TO '{older}/old-L0-000000000001-000000000001.parquet'", [DAY0 - timedelta(hours=1)])
    broken = plant_unreadable_day(db)
    con = connect_readonly(db)  # would fail binding the view if it parsed that file
    try:
        day1 = DAY0 + timedelta(days=1)
        assert queries.total_events(con, queries.Filters(since=day1, until=day1 + timedelta(days=1))) == 48
        with pytest.raises(duckdb.Error):
            con.execute("SELECT count(*) FROM classifications").fetchone()
        shutil.rmtree(broken)
        eager = view_sql(parts)["classifications"]
        assert con.execute("DESCRIBE classifications").fetchall() == con.execute(f"DESCRIBE {eager}").fetchall()
        assert (con.execute("SELECT * FROM classifications ORDER BY event_id").fetchall()
                == con.execute(f"SELECT * FROM ({eager}) ORDER BY event_id").fetchall())
        assert con.execute("SELECT count(*), count(findings) FROM classifications").fetchone() == (97, 96)
    finally:
        con.close()


def assert_naive_times_are_utc(relation: Any, of_day_0: str) -> None:
    """A window given without a time zone is UTC, as the readers' DuckDB sessions take it, whatever the machine's."""
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        assert relation(DAY0.replace(tzinfo=None), (DAY0 + timedelta(days=1)).replace(tzinfo=None)) == of_day_0
    finally:
        if zone is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = zone
        time.tzset()


def writer_relation(store: Store) -> str:
    return rollup_relation(store.con, None, None)


def assert_readers_stop_at_the_closed_hours(db: Path) -> None:
    """Coverage ends where the closed hours do (11:00), and every open window answers as its raw rows."""
    con = connect_readonly(db)
    found = coverage(con)
    con.close()
    assert found.rolled_through == found.closed_through == DAY0 + timedelta(hours=11)
    for since, until in OPEN_WINDOWS:
        answers = _raw_answers(db, since, until)
        assert answers["rolled"] == answers["raw"], (since, until)


def test_open_hours_too_big_to_roll_leave_readers_at_the_closed_hours(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage's open hours would cost the writer seconds every pass: an empty open rollup ending where the
    closed hours end, so readers roll the raw rows from there, as before."""
    monkeypatch.setattr(store_publish, "OPEN_ROLL_MAX_ROWS", 50)
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 76 in 11:00-11:38
        store.publish()
        store.publisher.maintain()
    assert_readers_stop_at_the_closed_hours(db)


def test_open_hours_filling_faster_than_the_rate_cap_are_not_rolled(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog drained at thousands of rows a second fills the open span past the row cap within minutes: rolling
    it meanwhile only cost the writer. 200 rows in one publish at a cap of 10 rows/s (50 in a settle's 5 s): the
    publish's pass leaves the same empty open rollup as for too many rows; the next, with nothing new, rolls."""
    monkeypatch.setattr(store_publish, "OPEN_ROLL_MAX_RATE", 10)
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 200, DAY0 + timedelta(hours=10), step=timedelta(seconds=30))  # 76 in 11:00-11:38
        store.publish()  # the first publish runs a maintenance pass
        assert_readers_stop_at_the_closed_hours(db)
        store.publisher.maintain()
    con = connect_readonly(db)
    found = coverage(con)
    con.close()
    assert found.closed_through == DAY0 + timedelta(hours=11)
    assert found.rolled_through == DAY0 + timedelta(hours=11, minutes=38)  # the open hour rolled


def test_with_two_writers_readers_stop_at_the_closed_hours(tmp_path: Path) -> None:
    """Raw rows carry no writer, so one cut per writer cannot be applied: with two, each one's open rollup is
    left out and raw rows answer from the earliest closed hour's end, as before the open hours were rolled."""
    db = tmp_path / "k.duckdb"
    for number, instance in enumerate(("c1", "c2")):
        with Store(db, instance=instance, retention_days=5, rollup_retention_days=10) as store:
            assert store.publisher is not None
            add_rows(store, number * 1000, 200, DAY0 + timedelta(hours=10, seconds=number), step=timedelta(seconds=30))
            store.publish()
            store.publisher.maintain()
    assert_readers_stop_at_the_closed_hours(db)


def test_the_attack_tail_services_and_key_uses_read_no_raw_day_outside_their_window(tmp_path: Path) -> None:
    """`rolled.hits` (a window ending inside an hour: the raw tail, not a rolled one), `services_seen` and key
    hygiene read the day folders from the rollups' boundary on, not the `classifications` view over every day
    (which parses each day's footer, a full-rate day's in tens of ms): a broken file in an old folder is not
    read, and the answers are those of the raw rows."""
    db = tmp_path / "k.duckdb"
    day1 = DAY0 + timedelta(days=1)
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 96, DAY0, step=timedelta(minutes=30))  # two days
        store.con.execute("UPDATE classifications SET attacks = ['alg_none'], client_id = 'c' || (source_offset % 3) "
                          "WHERE source_offset % 4 = 0")
        store.con.execute("UPDATE classifications SET issuer = 'i', key_thumbprint = 't', token_sha256 = 'ab', "
                          """token_claims = '{"iat": 1}' WHERE source_offset % 2 = 1""")
        store.con.execute("INSERT INTO jwks_keys VALUES ('i', 'k', 't', 'RSA', NULL, 0, ?, ?, NULL, true)",
                          [DAY0, day1])
        store.publisher.keys_dirty = True
        store.publish()
        store.publisher.maintain()
    plant_unreadable_day(db)
    con = connect_readonly(db)
    try:
        boundary = coverage(con).rolled_through
        assert boundary is not None and boundary > day1
        window = queries.Filters(since=day1 + timedelta(hours=20), until=day1 + timedelta(hours=23, minutes=50))
        attacks = queries.attacks(con, window)
        assert [(r["attack"], r["events"]) for r in attacks] == [("alg_none", 2)]  # 20:00 and 22:00
        named = queries.attack_client_ids(con, window, 5)
        assert sorted((r["client_id"], r["events"]) for r in named) == [("c1", 1), ("c2", 1)]
        assert queries.services_seen(con) == ["payments-api"]
        hygiene = queries.key_hygiene(con, DAY0, day1 + timedelta(days=1))
        assert [(k["kid"], k["uses"], k["first_use"], k["last_use"]) for k in hygiene] == [
            ("k", 48, DAY0 + timedelta(minutes=30), day1 + timedelta(hours=23, minutes=30))]
        with pytest.raises(duckdb.Error):  # the view reads every day folder
            con.execute("SELECT count(*) FROM classifications").fetchone()
    finally:
        con.close()


def test_a_reader_of_rollups_an_older_writer_wrote_reads_the_new_columns_as_null(tmp_path: Path) -> None:
    """Rollup files (and their schema file) from before `key_thumbprint`, `min_iat` and `max_iat`: the counts
    still answer from them, and key hygiene reads those hours' raw rows."""
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 96, DAY0, step=timedelta(minutes=30))
        store.con.execute("UPDATE classifications SET issuer = 'i', key_thumbprint = 't'")
        store.con.execute("INSERT INTO jwks_keys VALUES ('i', 'k', 't', 'RSA', NULL, 0, ?, ?, NULL, true)",
                          [DAY0, DAY0 + timedelta(days=2)])
        store.publisher.keys_dirty = True
        store.publish()
        store.publisher.maintain()
    with duckdb.connect() as plain:
        for file in (parts_dir(db) / "hourly").rglob("*.parquet"):
            plain.execute(f"COPY (SELECT * EXCLUDE (key_thumbprint, min_iat, max_iat) FROM read_parquet('{file}')) "
                          f"TO '{file}.old' (FORMAT parquet)")
            os.replace(f"{file}.old", file)
    con = connect_readonly(db)
    try:
        assert queries.total_events(con, queries.Filters(since=DAY0, until=DAY0 + timedelta(days=2))) == 96
        hygiene = queries.key_hygiene(con, DAY0, DAY0 + timedelta(days=2))
        assert [(k["kid"], k["uses"]) for k in hygiene] == [("k", 96)]
    finally:
        con.close()


def plant_unreadable_day(db: Path) -> Path:
    """A raw day folder long before any window, holding a file that is not Parquet: a question that opens
    every day's files (the `classifications` view) fails on it, one that reads its window's folders does not."""
    broken = parts_dir(db) / "classifications" / "2025-12-01"
    broken.mkdir()
    (broken / "x-L0-000000000001-000000000001.parquet").write_bytes(b"not parquet")
    return broken
