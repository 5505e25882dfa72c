"""The weekly report's quicker paths answer as the slower ones did (issue 21): its questions read only the files of
their window (a report of an old week on a store of 30 full-rate raw days must not parse those days' footers), and
the rotation attribution ranks only the damage whose key has several steps."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import queries
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import create_statement
from pipeline.queries.coverage import coverage
from pipeline.queries.daily import share_days
from pipeline.report.model import SPARK_AFTER, SPARK_BEFORE, SPARK_BUCKET
from tests.test_rollups import HOURS, KEY_ROTATIONS, START, damage_event, raw_event, raw_store, rolled_store
from tests.test_store_parts import DAY0, add_rows, plant_unreadable_day

DAY1 = DAY0 + timedelta(days=1)


def damage_store(db: Path) -> None:
    """Two days of rows every 30 minutes; key `k` of issuer `i` added at 01:00 on day 0 and removed at 06:00 on day 1
    (two rotation steps), with stale_jwks, unpublished_key and retired_key rows on it (one attacked) around them."""
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 96, DAY0, step=timedelta(minutes=30))
        store.con.execute("""UPDATE classifications SET issuer = 'i', kid = 'k', key_thumbprint = 't',
                                    service = CASE WHEN source_offset % 3 = 0 THEN 'orders' ELSE 'payments-api' END,
                                    cause = CASE WHEN source_offset < 2 THEN 'unpublished_key'
                                                 WHEN source_offset < 8 THEN 'stale_jwks'
                                                 WHEN source_offset >= 60 THEN 'retired_key' ELSE 'expired' END
                             WHERE source_offset % 2 = 0 OR source_offset < 8""")
        store.con.execute("UPDATE classifications SET attacks = ['alg_none'] WHERE source_offset = 4")
        store.con.execute("INSERT INTO jwks_keys VALUES ('i', 'k', 't', 'RSA', NULL, 0, ?, ?, ?, false)",
                          [DAY0 + timedelta(hours=1), DAY1 + timedelta(hours=5), DAY1 + timedelta(hours=6)])
        store.con.execute("INSERT INTO jwks_keys VALUES ('i', 'k0', 't0', 'RSA', NULL, 0, ?, ?, NULL, true)",
                          [DAY0, DAY1 + timedelta(hours=23)])
        store.publisher.keys_dirty = True
        store.publish()
        store.publisher.maintain()


def rotation_answers(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The report's rotation questions over a day before the rollups' boundary, and over one across it."""
    found: dict[str, Any] = {}
    for name, window in (("old", queries.Filters(since=DAY0, until=DAY1)),
                         ("across", queries.Filters(since=DAY0, until=DAY1 + timedelta(days=1)))):  # fmt: skip
        effects = queries.rotation_effects(con, window)
        steps = [{"issuer": r["issuer"], "kid": r["kid"], "action": r["action"], "ts": r["step_ts"]} for r in effects]
        found[name] = {
            "effects": effects,
            "impact": queries.rotation_impact(con, window),
            "faults": queries.issuer_faults(con, window),
            "damage": queries.rotation_damage_count(con, window),
            "series": queries.rotation_step_series_many(con, steps, SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET,
                                                        hourly=True),
        }
    return found


def test_the_rotation_questions_read_no_raw_day_outside_their_window(tmp_path: Path) -> None:
    """The rotation attribution's raw rows come from the day folders from the rollups' boundary on (or the open
    tail's table), not the `classifications` view over every day: a broken file in an old folder is not read, and
    the answers are those a connection reading the views gives."""
    db = tmp_path / "k.duckdb"
    damage_store(db)
    plain = duckdb.connect(str(db), read_only=True)  # plain DuckDB: the catalog's views over every file
    try:
        expected = rotation_answers(plain)
    finally:
        plain.close()
    assert sum(r["failures"] for r in expected["old"]["effects"]) == 2 + 5  # unpublished, stale (one attacked)
    assert sum(r["failures"] for r in expected["across"]["effects"]) == 7 + 18  # and retired_key from offset 60
    assert expected["across"]["series"]
    plant_unreadable_day(db)
    con = connect_readonly(db)
    try:
        boundary = coverage(con).rolled_through
        assert boundary is not None and DAY1 < boundary < DAY1 + timedelta(days=1)
        assert rotation_answers(con) == expected
        with pytest.raises(duckdb.Error):  # the view reads every day folder
            con.execute("SELECT count(*) FROM classifications").fetchone()
    finally:
        con.close()


key_life = st.tuples(st.sampled_from(["k1", "k2"]), st.integers(0, HOURS * 60), st.integers(1, HOURS * 60) | st.none(),
                     st.booleans())  # kid, added at (minutes), removed after (None: never), in the first snapshot


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(damage_event, max_size=40), st.lists(key_life, min_size=1, max_size=6))
def test_each_damage_event_is_attributed_to_the_step_the_rule_names(
    events: list[dict[str, Any]], lives: list[tuple[str, int, int | None, bool]]
) -> None:
    """A key may be added and removed many times (a flapping key, two keys of one kid): stale_jwks and retired_key
    belong to the newest step of their action at or before them (else the first after), unpublished_key to the first
    addition after it (else the newest before). Checked against that rule in Python, whichever way the query ranks
    (a key and action with one step skips the ranking)."""
    con = raw_store(events)
    con.execute(create_statement("jwks_keys"))
    con.execute(KEY_ROTATIONS)
    steps: dict[tuple[str, str], set[datetime]] = {}
    for n, (kid, added, lasted, initial) in enumerate(lives):
        first = START + timedelta(minutes=added)
        removed = None if lasted is None else first + timedelta(minutes=lasted)
        con.execute("INSERT INTO jwks_keys VALUES ('i1', ?, ?, 'RSA', NULL, 0, ?, ?, ?, ?)",
                    [kid, f"t{n}", first, removed or first, removed, initial])
        if not initial:
            steps.setdefault((kid, "added"), set()).add(first)
        if removed is not None:
            steps.setdefault((kid, "removed"), set()).add(removed)
    expected: dict[tuple[Any, ...], int] = {}
    for n, e in enumerate(events):
        ts = START + timedelta(minutes=e["minute"], seconds=n % 60)  # as `raw_store` dates it
        action = "removed" if e["cause"] == "retired_key" else "added"
        candidates = steps.get((e["kid"], action), set())
        if e["cause"] == "expired" or e["attacks"] or not candidates:
            continue
        early = e["cause"] == "unpublished_key"
        step = min(candidates, key=lambda at: (early != (at > ts), abs((at - ts).total_seconds())))
        key = ("i1", e["kid"], action, step, e["service"], e["cause"])
        expected[key] = expected.get(key, 0) + 1
    con.execute("SET TimeZone = 'UTC'")
    found = {(r["issuer"], r["kid"], r["action"], r["step_ts"], r["service"], r["cause"]): r["failures"]
             for r in queries.rotation_effects(con) if r["failures"]}
    assert found == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_event, max_size=60), st.integers(0, HOURS), st.integers(0, HOURS))
def test_questions_of_whole_days_answer_from_one_day_table_as_from_the_rows(
    events: list[dict[str, Any]], rolled_hours: int, raw_hours: int
) -> None:
    """A report's counting questions of whole UTC days (a week, the week before, its daily chart) read one temp table
    of the rows summed per day, made at the first and read by every question whose window lies inside it; the
    answers are the raw rows'. A window or cut off a day's edge, or a question that filters more than time, reads
    the rows as before."""
    raw, rolled = raw_store(events), rolled_store(events, rolled_hours, min(raw_hours, rolled_hours))
    day = timedelta(days=1)
    second = queries.Filters(since=START + day, until=START + 2 * day)  # with the day before: the whole store

    def answers(con: duckdb.DuckDBPyConnection) -> list[Any]:
        first = queries.Filters(since=START, until=START + day)
        return [
            queries.cause_counts_vs_previous(con, second),
            queries.service_counts_vs_previous(con, second),
            queries.window_buckets(con, START, START + 2 * day, 2, "service"),
            queries.window_buckets(con, second.since, second.until, 1, "cause"),  # type: ignore[arg-type]
            queries.confidence_counts(con, first),
            queries.rotation_damage_count(con, first),
            queries.window_time_range(con, second),
            queries.total_events(con, first),
            queries.cause_counts(con, second),
            queries.cause_counts(con, queries.Filters(since=START, until=START + timedelta(hours=30))),  # off a day
            queries.total_events(con, queries.Filters(since=START, until=START + day, services=("a",))),
        ]

    tables = "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name LIKE 'counted_days_%'"
    assert answers(rolled) == answers(raw)
    assert rolled.execute(tables).fetchone() == (0,)  # a connection that does not share days (a dashboard page's)
    for con in (rolled, raw):
        share_days(con)  # as the report does
    assert answers(rolled) == answers(raw)
    # one day table, of the first question's two days, when any hour was rolled (else raw rows answer: no split)
    assert rolled.execute(tables).fetchone() == ((1 if rolled_hours else 0),)
    assert raw.execute(tables).fetchone() == (0,)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(damage_event, max_size=40), st.lists(key_life, min_size=1, max_size=5), st.integers(1, HOURS),
       st.integers(0, HOURS - 1), st.integers(1, HOURS))
def test_the_step_series_reads_the_weeks_attribution_and_answers_as_its_own_query(
    events: list[dict[str, Any]], lives: list[tuple[str, int, int | None, bool]], rolled_hours: int, start: int,
    length: int
) -> None:
    """The report's step series reads the damage inside its week from the week's shared attribution and attributes
    only the rest of its windows (2 h before a step to 12 h after, steps anywhere): the same series as a connection
    that attributed nothing before it."""
    def store() -> duckdb.DuckDBPyConnection:
        con = rolled_store(events, rolled_hours, 0)
        con.execute(create_statement("jwks_keys"))
        con.execute(KEY_ROTATIONS)
        for n, (kid, added, lasted, initial) in enumerate(lives):
            first = START + timedelta(minutes=added)
            removed = None if lasted is None else first + timedelta(minutes=lasted)
            con.execute("INSERT INTO jwks_keys VALUES ('i1', ?, ?, 'RSA', NULL, 0, ?, ?, ?, ?)",
                        [kid, f"t{n}", first, removed or first, removed, initial])
        con.execute("SET TimeZone = 'UTC'")
        return con

    week = queries.Filters(since=START + timedelta(hours=start), until=START + timedelta(hours=start + length))
    shared, alone = store(), store()
    effects = queries.rotation_effects(shared, week)  # makes the week's attribution on `shared`
    steps = [{"issuer": r["issuer"], "kid": r["kid"], "action": r["action"], "ts": r["step_ts"]} for r in effects]
    series = queries.rotation_step_series_many(shared, steps, SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET, hourly=True)
    assert series == queries.rotation_step_series_many(alone, steps, SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET,
                                                       hourly=True)
    made = "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name LIKE 'attributed_%'"
    assert shared.execute(made).fetchone() == (1 if start < rolled_hours else 0,)  # a week after the rollups: raw
    assert alone.execute(made).fetchone() == (0,)
