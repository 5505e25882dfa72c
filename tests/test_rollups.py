"""Hourly rollups (issue 21): aggregating them gives what counting raw rows gives, and the readers that
switch to them where raw rows expired answer as the raw queries do.

Until the writer maintains rollups, the stores here are plain DuckDB files with the interface's
tables: `classifications`, `classifications_hourly` (built with `pipeline.rollups.hourly_sql`) and
`store_coverage`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline import queries
from pipeline.io.store_schema import DDL, create_statement
from pipeline.queries.coverage import coverage, expired_note
from pipeline.rollups import (
    CACHE_AGE_EDGES,
    HOURLY_COLUMNS,
    LIFETIME_EDGES,
    create_hourly_sql,
    distinct_tokens_sql,
    histogram_median_sql,
    histogram_over_sql,
    hourly_sql,
    newest_allowed,
    retention_cutoffs,
)

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
HOURS = 48
ATTACKS = ["alg_none", "kid_injection", "jku_injection"]

raw_event = st.fixed_dictionaries(
    {
        "minute": st.integers(0, HOURS * 60 - 1),
        "service": st.sampled_from(["a", "b", "c"]),
        "issuer": st.sampled_from(["i1", "i2", None]),
        "kid": st.sampled_from(["k1", "k2", None]),
        "client_id": st.sampled_from(["c1", "c2", "c3", None]),
        "cause": st.sampled_from(["expired", "stale_jwks", "retired_key", "unknown_kid"]),
        "confidence": st.sampled_from(["verified", "inferred", "reported"]),
        "attacks": st.lists(st.sampled_from(ATTACKS), max_size=3),
        "fetched": st.booleans(),
        "token": st.integers(0, 40) | st.none(),
        "skew": st.floats(-100, 100) | st.none(),
    }
)


#: Per token (its number mod the length): the header's alg, and the lifetime (exp - iat) its claims give.
ALGS = ["RS256", "ES256", "none", None]
LIFETIMES = [None, 60, 300, 3000, 3600, 3601, 86400, 10**6]
#: Per event (its index mod 4): how many minutes old the service's key set was, when it reports one.
CACHE_MINUTES = [1, 7, 30, 200]


def _claims(token: int | None) -> str | None:
    lifetime = None if token is None else LIFETIMES[token % len(LIFETIMES)]
    return None if lifetime is None else json.dumps({"iat": 1_000, "exp": 1_000 + lifetime})


def raw_store(events: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(create_statement("classifications"))
    values = []
    for n, e in enumerate(events):
        ts = START + timedelta(minutes=e["minute"], seconds=n % 60)
        values.append(
            [
                f"e{n}", ts, e["service"], e["cause"], e["confidence"], e["attacks"], e["issuer"], e["kid"],
                e["client_id"], e["skew"], e["token"], e["token"],
                ts - timedelta(minutes=CACHE_MINUTES[n % 4]) if e["fetched"] else None,
                ts - timedelta(hours=1), "thumb" if e["confidence"] == "verified" and e["token"] is not None else None,
                None if e["token"] is None else ALGS[e["token"] % len(ALGS)], _claims(e["token"]), n, ts,
            ]
        )  # fmt: skip
    if values:
        con.executemany(
            """INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, issuer, kid,
                   client_id, skew_seconds, token_sha256, service_jwks_fetched_at, key_first_seen, key_thumbprint,
                   alg, token_claims, source, source_partition, source_offset, classified_at)
               VALUES (?, ?, ?, ?, ?, ?, [], ?, ?, ?, ?, CASE WHEN ? IS NULL THEN NULL ELSE sha256(?::VARCHAR) END,
                       ?, ?, ?, ?, ?::JSON, 'test', 0, ?, ?)""",
            values,
        )
    return con


def rolled_store(events: list[dict[str, Any]], rolled_hours: int, raw_hours: int) -> duckdb.DuckDBPyConnection:
    """The same events, rolled up before START + `rolled_hours`, raw rows kept from START + `raw_hours` on."""
    con = raw_store(events)
    roll_up_and_expire(con, START + timedelta(hours=rolled_hours), START + timedelta(hours=raw_hours))
    return con


def roll_up_and_expire(con: duckdb.DuckDBPyConnection, rolled_through: datetime, raw_since: datetime) -> None:
    """What the writer does to a store: roll the hours before `rolled_through`, drop raw rows before `raw_since`.

    A single-file store's views (rollups computed on read, nothing expired) give way to the tables.
    """
    con.execute("DROP VIEW IF EXISTS classifications_hourly")
    con.execute("DROP VIEW IF EXISTS store_coverage")
    con.execute(create_hourly_sql())
    con.execute(
        f"INSERT INTO classifications_hourly {hourly_sql('(SELECT * FROM classifications WHERE ts < $1)')}",
        [rolled_through],
    )
    con.execute("DELETE FROM classifications WHERE ts < ?", [raw_since])
    con.execute("CREATE TABLE store_coverage (raw_since TIMESTAMPTZ, rolled_through TIMESTAMPTZ)")
    con.execute("INSERT INTO store_coverage VALUES (?, ?)", [raw_since, rolled_through])


events_lists = st.lists(raw_event, min_size=0, max_size=60)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(events_lists)
def test_summing_the_rollups_gives_the_raw_counts(events: list[dict[str, Any]]) -> None:
    con = raw_store(events)
    rollup = f"({hourly_sql('classifications')})"
    raw_total = con.execute("SELECT count(*) FROM classifications").fetchone()
    assert con.execute(f"SELECT coalesce(sum(events), 0) FROM {rollup}").fetchone() == raw_total
    per_key = """SELECT service, issuer, kid, client_id, cause, confidence, {n} FROM {src} GROUP BY ALL ORDER BY ALL"""
    assert (
        con.execute(per_key.format(n="sum(events)::BIGINT", src=rollup)).fetchall()
        == con.execute(per_key.format(n="count(*)", src="classifications")).fetchall()
    )
    per_attack = con.execute(
        "SELECT a, count(*) FROM classifications, unnest(attacks) AS t(a) GROUP BY a ORDER BY a"
    ).fetchall()
    assert (
        con.execute(
            f"SELECT attack, sum(attack_events)::BIGINT FROM {rollup} WHERE attack IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
        == per_attack
    )
    assert (
        con.execute(f"SELECT coalesce(sum(events), 0) FROM {rollup} WHERE attack IS NULL").fetchone()
        == con.execute("SELECT count(*) FILTER (WHERE len(attacks) = 0) FROM classifications").fetchone()
    )
    extremes = "SELECT cause, min({a}), max({b}), min({c}), max({d}) FROM {src} GROUP BY 1 ORDER BY 1"
    assert (
        con.execute(
            extremes.format(a="first_ts", b="last_ts", c="min_skew_seconds", d="max_skew_seconds", src=rollup)
        ).fetchall()
        == con.execute(
            extremes.format(a="ts", b="ts", c="skew_seconds", d="skew_seconds", src="classifications")
        ).fetchall()
    )
    distinct = con.execute(
        "SELECT service, count(DISTINCT token_sha256) FROM classifications GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert (
        con.execute(f"SELECT service, {distinct_tokens_sql()} FROM {rollup} GROUP BY 1 ORDER BY 1").fetchall()
        == distinct
    )


def test_the_rollup_has_the_interfaces_columns_in_order() -> None:
    con = raw_store([])
    names = [d[0] for d in con.execute(hourly_sql("classifications")).description]
    assert names == [name for name, _ in HOURLY_COLUMNS]
    assert HOURLY_COLUMNS[0] == ("hour", "TIMESTAMPTZ")


def test_the_token_sketch_estimates_many_tokens() -> None:
    con = raw_store([])
    con.execute(
        """INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, token_sha256,
               source, source_partition, source_offset, classified_at)
           SELECT 'e' || i, ?::TIMESTAMPTZ + to_seconds(i), 's', 'expired', 'reported', [], [],
                  sha256((i % 5000)::VARCHAR), 't', 0, i, now() FROM range(20000) t(i)""",
        [START],
    )
    estimate = con.execute(f"SELECT {distinct_tokens_sql()} FROM ({hourly_sql('classifications')})").fetchone()
    assert estimate is not None and 3500 < estimate[0] < 6500  # k=32: about 18% error


def _answers(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> dict[str, Any]:
    """What the readers ask, over one window (and the week-style comparisons around it)."""
    window = queries.Filters(since=since, until=until)
    only = queries.Filters(since=since, until=until, services=("a", "b"), causes=("expired", "stale_jwks"))
    clean = queries.Filters(since=since, until=until, without_attacks=True)
    hours = int((until - since) / timedelta(hours=1))  # buckets of whole hours: rollups have no finer time
    return {
        "total": queries.total_events(con, window),
        "causes": queries.cause_counts(con, window),
        "only": queries.cause_counts(con, only),
        "clean": queries.total_events(con, clean),
        "confidence": queries.confidence_counts(con, window),
        "vs_previous": queries.cause_counts_vs_previous(con, window),
        "services": queries.service_counts_vs_previous(con, window),
        "by_day": queries.same_window_by_day(con, until, timedelta(hours=2), 1, only),
        "per_bucket": queries.failures_per_bucket(con, "1 hour", window),
        "over_time": queries.failures_over_time(con, "6 hours", window),
        "buckets": queries.window_buckets(con, since, until, hours, "cause", window),
        "attack_buckets": queries.window_buckets(con, since, until, hours, "attack", window),
        "top": [{k: v for k, v in r.items() if k != "main_cause"} for r in queries.top(con, "client_id", window)],
        "top_by_cause": queries.top_by_cause(con, "kid", window, 2),
        "attacks": queries.attacks(con, window),
        "attack_clients": queries.attack_clients(con, window, 2),
        "attack_kinds": queries.attack_kinds_by_cause(con, window),
        "attack_client_ids": queries.attack_client_ids(con, window, 1),
        "damage": queries.rotation_damage_count(con, window),
        "span": queries.window_time_range(con, window),
        "first": queries.first_event(con, only),
        "values": queries.filter_values(con, window),
    }


ONE_EVENT = {"minute": 30, "service": "a", "issuer": "i1", "kid": "k1", "client_id": None, "cause": "unknown_kid",
             "confidence": "reported", "attacks": ["alg_none", "alg_none"], "fetched": True, "token": 1,
             "skew": 1.0}  # fmt: skip


@SETTINGS
@given(events_lists, st.integers(0, HOURS), st.integers(0, HOURS), st.integers(0, HOURS - 1), st.integers(1, HOURS))
@example(events=[ONE_EVENT], rolled_hours=1, raw_hours=0, start=0, length=24)  # rolled, raw expired
@example(events=[ONE_EVENT, {**ONE_EVENT, "minute": 90}], rolled_hours=1, raw_hours=1, start=0, length=2)  # both parts
def test_readers_over_rollups_answer_as_over_raw_rows(
    events: list[dict[str, Any]], rolled_hours: int, raw_hours: int, start: int, length: int
) -> None:
    raw_hours = min(raw_hours, rolled_hours)  # raw rows expire only once rolled up
    since = START + timedelta(hours=start)
    until = since + timedelta(hours=length)
    raw, rolled = raw_store(events), rolled_store(events, rolled_hours, raw_hours)
    assert _answers(rolled, since, until) == _answers(raw, since, until)
    assert queries.time_range(rolled) == queries.time_range(raw)
    assert queries.store_summary(rolled)["events"] == len(events)
    assert queries.services_seen(rolled) == queries.services_seen(raw)


def test_a_store_without_coverage_is_all_raw() -> None:
    con = raw_store([])
    assert coverage(con).rolled_through is None and coverage(con).raw_since is None
    assert expired_note(con, START) is None


def test_a_store_whose_coverage_names_rollups_it_lacks_is_all_raw() -> None:
    con = raw_store([])
    con.execute("CREATE TABLE store_coverage AS "
                "SELECT NULL::TIMESTAMPTZ AS raw_since, ?::TIMESTAMPTZ AS rolled_through", [START])
    assert coverage(con).rolled_through is None
    con.execute(create_hourly_sql())
    assert coverage(con).rolled_through == START


def test_a_window_before_the_raw_rows_says_they_expired() -> None:
    con = rolled_store([], rolled_hours=24, raw_hours=12)
    note = expired_note(con, START)
    assert note == "raw detail expired before 2026-03-02 12:00 UTC; counts from hourly rollups"
    assert expired_note(con, START + timedelta(hours=12)) is None


@pytest.mark.parametrize("by", ["cause", "service", "client_id", "kid", "issuer"])
def test_window_buckets_split_by_any_key_from_rollups(by: str) -> None:
    events = [
        {"minute": m, "service": "abc"[m % 3], "issuer": "i1", "kid": f"k{m % 2}", "client_id": f"c{m % 4}",
         "cause": "expired", "confidence": "verified", "attacks": [], "fetched": False, "token": m, "skew": None}
        for m in range(0, HOURS * 60, 7)
    ]  # fmt: skip
    until = START + timedelta(hours=HOURS)
    expected = queries.window_buckets(raw_store(events), START, until, 6, by)
    assert queries.window_buckets(rolled_store(events, 30, 20), START, until, 6, by) == expected


def test_charts_finer_than_an_hour_read_raw_rows_where_they_are_kept() -> None:
    events = [
        {"minute": m, "service": "a", "issuer": "i1", "kid": "k1", "client_id": "c1", "cause": "expired",
         "confidence": "verified", "attacks": [], "fetched": False, "token": m, "skew": None}
        for m in range(0, HOURS * 60, 7)
    ]  # fmt: skip
    raw, rolled = raw_store(events), rolled_store(events, rolled_hours=30, raw_hours=20)
    kept = queries.Filters(since=START + timedelta(hours=20), until=START + timedelta(hours=40))
    assert queries.failures_per_bucket(rolled, "5 minutes", kept) == queries.failures_per_bucket(raw, "5 minutes", kept)
    until = START + timedelta(hours=40)
    fine = queries.window_buckets(rolled, kept.since, until, 80, "cause")  # type: ignore[arg-type]
    assert fine == queries.window_buckets(raw, kept.since, until, 80, "cause")  # type: ignore[arg-type]
    expired = queries.Filters(since=START, until=START + timedelta(hours=40))
    minutes = queries.failures_per_bucket(rolled, "5 minutes", expired)
    assert sum(r["events"] for r in minutes) == queries.total_events(raw, expired)  # all counted, coarser early on
    assert minutes != queries.failures_per_bucket(raw, "5 minutes", expired)


KEY_ROTATIONS = DDL[
    DDL.index("CREATE OR REPLACE VIEW key_rotations") : DDL.index(
        ";", DDL.index("CREATE OR REPLACE VIEW key_rotations")
    )
]
damage_event = st.fixed_dictionaries(
    {
        "minute": st.integers(0, HOURS * 60 - 1),
        "service": st.sampled_from(["a", "b"]),
        "issuer": st.just("i1"),
        "kid": st.sampled_from(["k1", "k2"]),
        "client_id": st.sampled_from(["c1", None]),
        "cause": st.sampled_from(["stale_jwks", "unpublished_key", "retired_key", "expired"]),
        "confidence": st.just("verified"),
        "attacks": st.lists(st.just("alg_none"), max_size=1),
        "fetched": st.booleans(),
        "token": st.integers(0, 5),
        "skew": st.none(),
    }
)


def with_keys(con: duckdb.DuckDBPyConnection, steps: list[int]) -> duckdb.DuckDBPyConnection:
    """Key k1 added at START + steps[0] h and removed at + steps[1] h; k2 added at + steps[2] h (on the hour)."""
    con.execute(create_statement("jwks_keys"))
    con.execute(KEY_ROTATIONS)
    at = [START + timedelta(hours=h) for h in steps]
    con.execute(
        """INSERT INTO jwks_keys VALUES ('i1', 'k1', 't1', 'RSA', NULL, 0, ?, ?, ?, false),
                                        ('i1', 'k2', 't2', 'RSA', NULL, 0, ?, ?, NULL, false)""",
        [at[0], at[1], at[1], at[2], START + timedelta(hours=HOURS)],
    )
    return con


@SETTINGS
@given(
    st.lists(damage_event, max_size=40),
    st.lists(st.integers(1, HOURS - 1), min_size=3, max_size=3).map(sorted),
    st.integers(0, HOURS),
    st.integers(0, HOURS - 1),
)
def test_rotation_figures_from_rollups_match_raw_rows_for_steps_on_the_hour(
    events: list[dict[str, Any]], steps: list[int], rolled_hours: int, start: int
) -> None:
    raw = with_keys(raw_store(events), steps)
    rolled = with_keys(rolled_store(events, rolled_hours, 0), steps)
    every_hour = with_keys(rolled_store(events, HOURS, 0), steps)  # every event rolled up
    window = queries.Filters(since=START + timedelta(hours=start), until=START + timedelta(hours=HOURS))
    for con in (raw, rolled):
        con.execute("SET TimeZone = 'UTC'")
    for question in (queries.rotation_effects, queries.rotation_impact, queries.issuer_faults):
        # sorted: two keys' steps at one instant tie in the queries' own order
        assert sorted(map(repr, question(rolled, window))) == sorted(map(repr, question(raw, window)))
    assert queries.step_failure_counts(rolled) == queries.step_failure_counts(raw)
    steps = queries.rotations(raw)
    for step in steps:  # bounded to the steps from `since` on, and still exact
        assert queries.step_failure_counts(rolled, step["ts"]) == queries.step_failure_counts(raw, step["ts"])
    hour, before, after = timedelta(hours=1), timedelta(hours=2), timedelta(hours=12)
    many = queries.rotation_step_series_many(rolled, steps, before, after, hour)
    assert many == queries.rotation_step_series_many(raw, steps, before, after, hour)
    assert queries.rotation_step_series_many(rolled, steps, before, after, hour, hourly=True) == many
    # two writers' rows of one key are two rows: duplicated rollups attribute twice the failures
    every_hour.execute("SET TimeZone = 'UTC'")
    every_hour.execute("INSERT INTO classifications_hourly SELECT * FROM classifications_hourly")
    twice = {key: 2 * n for key, n in queries.step_failure_counts(raw).items()}
    assert queries.step_failure_counts(every_hour) == twice
    for step in steps:  # the same as one query per step
        one = queries.rotation_step_series(raw, step, step["ts"] - before, step["ts"] + after, hour)
        key = (step["issuer"], step["kid"], step["action"], step["ts"])
        assert many.get(key, {}) == {point["bucket"]: point["failures"] for point in one}


def test_a_rotation_attribution_asked_again_on_a_connection_is_read_from_its_first_ask() -> None:
    """The report asks `rotation_effects`, `rotation_impact` and `issuer_faults` of one week: the damage is
    attributed to its steps once per connection (a temp table), and the answers stay the raw rows' ones."""
    events = [{"minute": 60 * h + 7, "service": "a", "issuer": "i1", "kid": "k1" if h < 30 else "k2",
               "client_id": "c1", "cause": ["stale_jwks", "retired_key", "unpublished_key"][h % 3],
               "confidence": "verified", "attacks": [], "fetched": True, "token": 1, "skew": None}
              for h in range(HOURS)]  # fmt: skip
    raw = with_keys(raw_store(events), [6, 30, 20])
    rolled = with_keys(rolled_store(events, HOURS - 6, 0), [6, 30, 20])
    window = queries.Filters(since=START + timedelta(hours=4), until=START + timedelta(hours=HOURS))
    shared = "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name LIKE 'attributed_%'"
    for question in (queries.rotation_effects, queries.rotation_impact, queries.issuer_faults):
        assert question(rolled, window) == question(raw, window)
        assert rolled.execute(shared).fetchone() == (1,)  # one attribution, made at the first question
    assert raw.execute(shared).fetchone() == (0,)  # raw rows alone: attributed in each query, as before
    assert sum(r["failures"] for r in queries.rotation_effects(rolled, window)) > 0


def _by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in rows}


@SETTINGS
@given(events_lists, st.integers(1, HOURS), st.integers(0, HOURS), st.integers(1, HOURS))
def test_algorithms_from_rollups_count_as_raw_rows(
    events: list[dict[str, Any]], rolled_hours: int, raw_hours: int, length: int
) -> None:
    """Events, verified events, issuers and attack events per alg are exact; tokens an upper bound."""
    window = queries.Filters(since=START, until=START + timedelta(hours=length))
    raw = _by(queries.algorithms_in_use(raw_store(events), window), "alg")
    rolled = _by(queries.algorithms_in_use(rolled_store(events, rolled_hours, min(raw_hours, rolled_hours)), window),
                 "alg")  # fmt: skip
    assert rolled.keys() == raw.keys()
    for alg, r in raw.items():
        mine = rolled[alg]
        assert {k: mine[k] for k in ("events", "verified", "issuers", "attack_events")} == {
            k: r[k] for k in ("events", "verified", "issuers", "attack_events")
        }
        assert mine["tokens"] >= r["tokens"]
        assert mine["main_cause"] in {e["cause"] for e in events}


@SETTINGS
@given(events_lists, st.integers(1, HOURS), st.integers(0, HOURS), st.sampled_from([3600.0, 86400.0, 1000.0]))
def test_token_lifetimes_from_rollups_are_the_raw_ones_within_their_buckets(
    events: list[dict[str, Any]], rolled_hours: int, raw_hours: int, policy: float
) -> None:
    """Events (over the policy, when it is a bucket edge) and the longest lifetime are exact; token counts add up
    hours (never fewer than the raw distinct tokens); the median is its bucket's upper edge, never above the max."""
    window = queries.Filters(since=START, until=START + timedelta(hours=HOURS))
    raw = _by(queries.token_lifetimes(raw_store(events), window, policy), "issuer", "client")
    rolled_con = rolled_store(events, rolled_hours, min(raw_hours, rolled_hours))
    rolled = _by(queries.token_lifetimes(rolled_con, window, policy), "issuer", "client")
    assert rolled.keys() == raw.keys()
    for key, r in raw.items():
        mine = rolled[key]
        assert mine["events"] == r["events"] and mine["max_lifetime_s"] == r["max_lifetime_s"]
        assert mine["tokens"] >= r["tokens"] and mine["with_lifetime"] >= r["with_lifetime"]
        assert mine["over_policy"] >= r["over_policy"] and (mine["over_policy"] > 0) == (r["over_policy"] > 0)
        if policy in LIFETIME_EDGES:
            assert mine["events_over_policy"] == r["events_over_policy"]
        assert (mine["median_lifetime_s"] is None) == (r["median_lifetime_s"] is None)
        if r["median_lifetime_s"] is not None:
            assert mine["median_lifetime_s"] <= r["max_lifetime_s"]


@SETTINGS
@given(events_lists, st.integers(1, HOURS), st.integers(0, HOURS), st.booleans())
def test_cache_ages_from_rollups_are_the_raw_ones_and_the_median_within_its_bucket(
    events: list[dict[str, Any]], rolled_hours: int, raw_hours: int, by_issuer: bool
) -> None:
    window = queries.Filters(since=START, until=START + timedelta(hours=HOURS))
    read = queries.cache_lifetime_by_service_issuer if by_issuer else queries.cache_age_by_service
    keys = ("service", "issuer") if by_issuer else ("service",)
    raw = read(raw_store(events), window)
    rolled = read(rolled_store(events, rolled_hours, min(raw_hours, rolled_hours)), window)
    assert [tuple(r[k] for k in keys) for r in rolled] == [tuple(r[k] for k in keys) for r in raw]
    exact = ("events", "events_with_fetch_time", "reported_age_max_s", "stale_jwks", "stale_window_s")
    for mine, r in zip(rolled, raw, strict=True):
        assert {k: mine[k] for k in exact} == {k: r[k] for k in exact}
        if r["reported_age_median_s"] is None:
            assert mine["reported_age_median_s"] is None
            continue
        ages = sorted(60.0 * m for m in CACHE_MINUTES)  # the lower middle age's bucket edge, capped at the max
        assert min(ages) <= mine["reported_age_median_s"] <= r["reported_age_max_s"]
        lower_edge = max([0.0, *(e for e in CACHE_AGE_EDGES if e < mine["reported_age_median_s"])])
        assert lower_edge < r["reported_age_median_s"] or mine["reported_age_median_s"] == r["reported_age_max_s"]


def test_the_median_of_a_histogram_is_its_buckets_upper_edge() -> None:
    con = duckdb.connect()
    edges = (10.0, 20.0, 30.0)
    found = con.execute(
        f"SELECT {histogram_median_sql('[1, 0, 3, 0]::BIGINT[]', edges, '25')}, "
        f"{histogram_median_sql('[0, 0, 0, 5]::BIGINT[]', edges, '99')}, "
        f"{histogram_median_sql('[0, 0, 0, 0]::BIGINT[]', edges, '99')}, "
        f"{histogram_over_sql('[1, 2, 3, 4]::BIGINT[]', edges, 20.0)}, "
        f"{histogram_over_sql('[1, 2, 3, 4]::BIGINT[]', edges, 15.0)}"
    ).fetchone()
    assert found == (25.0, 99.0, None, 7, 9)  # over 15 (no edge): the bucket holding it counts whole


def test_retention_keeps_whole_days_counted_from_the_newest_event_never_far_in_the_future() -> None:
    newest = datetime(2026, 1, 31, 23, 59, tzinfo=UTC)
    newest_us = int(newest.timestamp() * 1_000_000)
    raw_day, rollup_day = retention_cutoffs(newest_us, 30, 400)
    jan_31 = (datetime(2026, 1, 31, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert (raw_day, rollup_day) == (jan_31 - 29, jan_31 - 399)  # the newest event's day is the first of 30
    now = datetime(2026, 2, 1, tzinfo=UTC)
    assert newest_allowed(now) == datetime(2026, 2, 2, tzinfo=UTC)  # a ts in 9999 does not move retention
