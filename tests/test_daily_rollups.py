"""The daily rollup level (issue 21): a closed day's rows summed per key (`rollups.daily_sql`), written by the
writer beside its merged day file (`store_rollups`), read instead of the day's hours by the questions that only
add rows up, and swept with the hourly rollups.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import example, given

from pipeline import queries
from pipeline.io import store_publish, store_rollups
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_rollups import DAILY
from pipeline.io.store_schema import parts_dir
from pipeline.queries.coverage import by_day, split
from pipeline.report.build import build_report
from pipeline.report.markdown import render_markdown
from pipeline.rollups import HOURLY_COLUMNS, KEY_COLUMNS, ROW_FLAGS, daily_sql, hourly_sql
from tests.test_rollups import SETTINGS, START, events_lists, raw_store

#: The measures of a rollup row and how readers combine them across rows (the sketch: `merged_sketch_sql`).
_SUMMED = ("events", "attack_events", "with_fetch_time", "with_key", "tokens")
_LOWEST = ("first_ts", "min_skew_seconds", "min_iat")
_HIGHEST = ("last_ts", "max_skew_seconds", "max_cache_age_s", "max_key_age_s", "max_lifetime_s", "max_iat")
_LISTS = ("lifetime_tokens", "lifetime_events", "cache_age_events")


def _per_day(source: str, where: str = "TRUE") -> str:
    """SQL: the rows of `source` (rollup rows) passing `where`, combined per UTC day and key as readers combine
    rows (sums, extremes, histograms cell by cell, sketches merged)."""
    keys = ", ".join(KEY_COLUMNS)
    lists = ", ".join(f"[{', '.join(f'coalesce(sum({c}[{k}]), 0)' for k in range(1, 14))}] AS {c}" for c in _LISTS)
    return f"""SELECT epoch_us(hour) // 86400000000 AS day, {keys},
                      {", ".join(f"sum({c}) AS {c}" for c in _SUMMED)},
                      {", ".join(f"min({c}) AS {c}" for c in _LOWEST)},
                      {", ".join(f"max({c}) AS {c}" for c in _HIGHEST)},
                      {lists},
                      coalesce(list_sort(list_distinct(flatten(list(token_sketch))))[1:32], []) AS token_sketch
               FROM {source} WHERE {where} GROUP BY ALL ORDER BY ALL"""


_BARE = {"service": "a", "issuer": None, "kid": None, "client_id": None, "cause": "expired", "confidence": "verified",
         "fetched": False, "token": None, "skew": None}
#: Hour 1: an event labelled [a, b] (b's row: no `events`); hour 2: one labelled [b].
TWO_LABELS = [{**_BARE, "minute": 10, "attacks": ["alg_none", "kid_injection"]},
              {**_BARE, "minute": 70, "attacks": ["kid_injection"]}]


@SETTINGS
@given(events_lists)
@example(events=TWO_LABELS)
def test_a_days_daily_rows_are_the_sum_of_its_hours_and_keep_what_row_filters_keep(
        events: list[dict[str, Any]]) -> None:
    """Per day and key, the daily rows combine to what the hours combine to, measure by measure; and so do the rows
    a reader's filter on a `ROW_FLAGS` count keeps (an attack row of an event's second label has no `events`: it
    must not be summed into a row that has)."""
    con = raw_store(events)
    con.execute(f"CREATE TABLE hourly AS {hourly_sql('classifications')}")
    con.execute(f"CREATE TABLE daily AS {daily_sql('hourly')}")
    assert [d[0] for d in con.execute("SELECT * FROM daily LIMIT 0").description] == [n for n, _ in HOURLY_COLUMNS]
    assert con.execute("SELECT count(*) FROM daily WHERE epoch_us(hour) % 86400000000 <> 0").fetchone() == (0,)
    for where in ["TRUE", *(f"{flag} > 0" for flag in ROW_FLAGS), "issuer IS NOT NULL AND with_key > 0 AND tokens > 0"]:
        assert (con.execute(_per_day("daily", where)).fetchall()
                == con.execute(_per_day("hourly", where)).fetchall()), where


def test_an_attack_row_without_events_stays_apart_from_one_with_events() -> None:
    """The case the flags are for, spelt out: hour 1 has an event labelled [a, b] (b's row: 0 events), hour 2 one
    labelled [b]; the day's b rows are two, and `events > 0` keeps hour 2's first time, as over hours."""
    con = raw_store(TWO_LABELS)
    con.execute(f"CREATE TABLE hourly AS {hourly_sql('classifications')}")
    rows = con.execute(f"SELECT events, first_ts FROM ({daily_sql('hourly')}) WHERE attack = 'kid_injection' "
                       "ORDER BY events").fetchall()
    assert rows == [(0, START + timedelta(minutes=10)), (1, START + timedelta(minutes=70, seconds=1))]


DAY0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: 2026-W02
REMOVED = DAY0 + timedelta(days=1, hours=12, minutes=30)  # k1's removal, inside a closed day


def add_events(store: Store, first: int, n: int, since: datetime, step: timedelta) -> None:
    """`n` varied verdicts from `since` on, `step` apart, straight into the writer's live file: services, causes,
    confidences, attacks (an event with two labels too), issuers, keys (k1 until `REMOVED`, then k2; some k1 uses
    after it), clients, tokens with lifetimes, cache ages, skews."""
    store.con.execute(
        """INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, issuer, kid,
                                        alg, client_id, token_sha256, token_claims, key_thumbprint, key_first_seen,
                                        service_jwks_fetched_at, skew_seconds, source, source_partition,
                                        source_offset, classified_at)
           SELECT 'e' || i, ts, 'svc-' || (h % 3), ['expired', 'stale_jwks', 'retired_key', 'unknown_kid'][1 + h % 4],
                  ['verified', 'inferred', 'reported'][1 + (h >> 3) % 3],
                  CASE WHEN h % 17 = 0 THEN ['alg_none', 'kid_injection'] WHEN h % 13 = 0 THEN ['kid_injection']
                       ELSE []::VARCHAR[] END, ['x'], issuer, kid, ['RS256', 'none'][1 + (h >> 9) % 2],
                  CASE WHEN h % 11 <> 0 THEN 'client-' || (h >> 4) % 5 END, token,
                  CASE WHEN token IS NOT NULL THEN json_object('iat', epoch(ts)::BIGINT - 100,
                       'exp', epoch(ts)::BIGINT - 100 + [300, 3600, 86400, 1000000][1 + (h >> 6) % 4]) END,
                  CASE WHEN kid IS NOT NULL AND (h >> 3) % 3 < 2 THEN 'thumb-' || kid END, ts - INTERVAL 2 HOUR,
                  CASE WHEN h % 2 = 0 THEN ts - to_seconds((h >> 5) % 5000) END, ((h >> 12) % 200) - 100.0,
                  't', 0, i, ?
           FROM (SELECT *, CASE WHEN h % 7 = 0 THEN NULL WHEN ts < ? OR h % 19 = 0 THEN 'k1' ELSE 'k2' END AS kid,
                        CASE WHEN h % 23 <> 0 THEN sha256('client-' || (h >> 4) % 5 || '/' || (i // 9)) END AS token,
                        CASE WHEN h % 7 <> 0 THEN 'iss-1' END AS issuer
                 FROM (SELECT i, ?::TIMESTAMPTZ + to_microseconds((i - ?) * ?) AS ts, (hash(i) >> 1)::BIGINT AS h
                       FROM range(?, ?) r(i)))""",
        [store._now(), REMOVED, since, first, int(step.total_seconds() * 1_000_000), first, first + n],
    )
    store.con.execute(
        """INSERT OR REPLACE INTO jwks_keys VALUES
               ('iss-1', 'k1', 'thumb-k1', 'RSA', NULL, 0, ?, ?, ?, true),
               ('iss-1', 'k2', 'thumb-k2', 'RSA', NULL, 0, ?, ?, NULL, false)""",
        [DAY0 - timedelta(days=1), REMOVED, REMOVED, REMOVED - timedelta(hours=6), DAY0 + timedelta(days=3)],
    )
    store.publisher.keys_dirty = True  # type: ignore[union-attr]


def store_of_three_days(db: Path) -> Store:
    """Two closed days (their daily rows written) and the third open at 10:00, as a writer leaves them."""
    store = Store(db, instance="c1", retention_days=30, rollup_retention_days=30)
    assert store.publisher is not None
    add_events(store, 0, 7_000, DAY0, timedelta(seconds=30))  # to 2026-01-07 10:20
    store.publish()
    store.publisher.maintain()
    return store


def answers(db: Path) -> dict[str, Any]:
    """The report's questions that read daily rows, of whole days, of a window that cuts a day and of one that
    ends in the open day; and the report."""
    con = connect_readonly(db)
    try:
        found: dict[str, Any] = {}
        for since, until in [(DAY0, DAY0 + timedelta(days=7)), (DAY0, DAY0 + timedelta(days=2)),
                             (DAY0 + timedelta(hours=5), DAY0 + timedelta(days=1, hours=20)),
                             (DAY0 + timedelta(days=1), DAY0 + timedelta(days=2, hours=9))]:
            window = queries.Filters(since=since, until=until)
            only = queries.Filters(since=since, until=until, services=("svc-1",), causes=("expired", "stale_jwks"))
            found[f"{since}/{until}"] = {
                "lifetimes": queries.token_lifetimes(con, window, 3600),
                "lifetimes_only": queries.token_lifetimes(con, only, 3600),
                "cache": queries.cache_lifetime_by_service_issuer(con, window),
                "cache_services": queries.cache_age_by_service(con, only),
                "algorithms": queries.algorithms_in_use(con, window),
                "attacks": queries.attacks(con, window),
                "hygiene": queries.key_hygiene(con, since, until),
            }
        found["report"] = render_markdown(build_report(con, "2026-W02", store="<store>", now=DAY0 + timedelta(days=3)))
        return found
    finally:
        con.close()


def without_daily(db: Path) -> dict[str, Any]:
    """`answers` with the store's daily rows moved aside (a store written before the level), then put back."""
    daily = parts_dir(db) / DAILY
    aside = daily.with_name("daily-aside")
    daily.rename(aside)
    try:
        return answers(db)
    finally:
        aside.rename(daily)


def daily_files_read(db: Path, since: datetime, until: datetime) -> list[str]:
    con = connect_readonly(db)
    try:
        s = split(con, queries.Filters(since=since, until=until))
        assert s is not None
        return sorted(part.split("/")[-2] for part in by_day(con, s).hourly.split("'") if f"/{DAILY}/" in part)
    finally:
        con.close()


def test_readers_answer_the_same_with_and_without_the_daily_rows(tmp_path: Path) -> None:
    """The closed days' daily rows give the report and its day-summing questions the hours' answers: whole days, a
    window that cuts a day (its hours read), the open day (no daily rows), a key removed inside a closed day (that
    day's hours read for key hygiene); then a late event rolls a closed day again: its old daily rows no longer
    count (hours, until the next pass writes the new ones)."""
    db = tmp_path / "k.duckdb"
    with store_of_three_days(db) as store:
        daily = parts_dir(db) / DAILY
        assert sorted(p.name for p in daily.iterdir()) == ["2026-01-05", "2026-01-06"]  # the open day has none
        assert daily_files_read(db, DAY0, DAY0 + timedelta(days=7)) == ["2026-01-05", "2026-01-06"]
        assert daily_files_read(db, DAY0 + timedelta(hours=5), DAY0 + timedelta(days=2)) == ["2026-01-06"]
        mine = answers(db)
        assert mine == without_daily(db)
        assert mine["report"].count("k1") > 0 and "svc-1" in mine["report"]
        add_events(store, 7_000, 1, DAY0 + timedelta(days=1, hours=3, minutes=7), timedelta(seconds=1))  # late
        store.publish(final=True)  # the day's hours rolled again: a new day file, its daily rows not yet written
        assert daily_files_read(db, DAY0, DAY0 + timedelta(days=7)) == ["2026-01-05"]
        late = answers(db)
        assert late != mine and late == without_daily(db)
        store.publisher.maintain()  # type: ignore[union-attr]
        assert daily_files_read(db, DAY0, DAY0 + timedelta(days=7)) == ["2026-01-05", "2026-01-06"]
        assert answers(db) == late


def test_a_pass_writes_a_few_days_daily_rows_newest_first_and_an_upgraded_store_fills_in(tmp_path: Path,
                                                                                          monkeypatch: Any) -> None:
    db = tmp_path / "k.duckdb"
    monkeypatch.setattr(store_publish, "DAILY_PER_PASS", 1)
    with store_of_three_days(db) as store:
        daily = parts_dir(db) / DAILY
        shutil.rmtree(daily)  # as a store a writer without the level left
        store.publisher._last_maintenance = float("-inf")  # type: ignore[union-attr]
        add_events(store, 7_000, 1, DAY0 + timedelta(days=2, hours=10, minutes=30), timedelta(seconds=1))
        store.publish()  # a pass: one day, the newest
        assert sorted(p.name for p in daily.iterdir()) == ["2026-01-06"]
        store.publisher._last_maintenance = float("-inf")  # type: ignore[union-attr]
        add_events(store, 7_001, 1, DAY0 + timedelta(days=2, hours=10, minutes=31), timedelta(seconds=1))
        store.publish()
        assert sorted(p.name for p in daily.iterdir()) == ["2026-01-05", "2026-01-06"]


def test_retention_sweeps_the_daily_rows_with_the_hourly_ones(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1", retention_days=1, rollup_retention_days=2) as store:
        assert store.publisher is not None
        add_events(store, 0, 3_000, DAY0, timedelta(minutes=1))  # to 2026-01-07 02:00: two closed days
        store.publish()
        store.publisher.maintain()
        parts = parts_dir(db)
        assert sorted(p.name for p in (parts / DAILY).iterdir()) == ["2026-01-06"]  # 2026-01-05 is past retention
        assert sorted(p.name for p in (parts / "hourly").iterdir() if p.name[0] == "2") == ["2026-01-06", "2026-01-07"]
        add_events(store, 3_000, 1, DAY0 + timedelta(days=3, hours=2), timedelta(seconds=1))
        store.publish()
        store.publisher.maintain()
        assert sorted(p.name for p in (parts / DAILY).iterdir()) == ["2026-01-07"]
        assert sorted(p.name for p in (parts / "hourly").iterdir() if p.name[0] == "2") == ["2026-01-07"]


def test_a_daily_file_that_cannot_be_written_holds_up_no_pass(tmp_path: Path, monkeypatch: Any,
                                                              caplog: Any) -> None:
    """The daily level only saves readers work: a day it cannot sum (out of memory, a full disk) is logged and its
    hours read, and the rest of the pass (the open rollup, retention) goes on."""
    def fail(*_: Any) -> Path:
        raise duckdb.OutOfMemoryException("no room")

    monkeypatch.setattr(store_rollups, "write_daily", fail)
    db = tmp_path / "k.duckdb"
    with store_of_three_days(db):
        assert not (parts_dir(db) / DAILY).exists()
        assert list((parts_dir(db) / "hourly" / "open").glob("*.parquet"))  # rolled after the failure
        assert "daily rollup rows failed" in caplog.text
    monkeypatch.undo()
    assert answers(db)["report"].count("svc-1") > 0
