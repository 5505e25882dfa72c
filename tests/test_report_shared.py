"""The weekly report's connection reads its week's open tail and hits once (issue 21): the counted tail is summed
from the rolled tail's table, and the attack questions read one table of the week's hits summed per service,
client, cause and attack. A connection that shares (`share_days`, the report's) answers as one that does not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import queries
from pipeline.queries.daily import share_days
from tests.test_rollups import ATTACKS, HOURS, START, raw_event, rolled_store

DAY = timedelta(days=1)


def temp_tables(con: duckdb.DuckDBPyConnection, prefix: str) -> int:
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND starts_with(table_name, ?)",
                        [prefix]).fetchone()
    return int(found[0]) if found else 0


def attack_answers(con: duckdb.DuckDBPyConnection, window: queries.Filters) -> list[Any]:
    """The report's attack questions (its table, the kinds per cause), and the same with a service or cause filter."""
    return [
        queries.attacks(con, window),
        queries.attack_kinds_by_cause(con, queries.Filters(window.since, window.until,
                                                           causes=("expired", "stale_jwks"))),
        queries.attacks(con, queries.Filters(window.since, window.until, services=("a",))),
        queries.attack_kinds_by_cause(con, window),
        queries.attacks(con, queries.Filters(window.since, window.until, issuers=("i1",))),  # reads the rows
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_event, max_size=60), st.integers(1, HOURS - 1), st.integers(0, 30), st.integers(1, HOURS))
def test_the_attack_questions_of_a_sharing_connection_read_one_table_of_hits(
    events: list[dict[str, Any]], rolled_hours: int, start: int, length: int
) -> None:
    window = queries.Filters(since=START + timedelta(hours=start), until=START + timedelta(hours=start + length))
    shared, alone = rolled_store(events, rolled_hours, 0), rolled_store(events, rolled_hours, 0)
    share_days(shared)
    assert attack_answers(shared, window) == attack_answers(alone, window)
    # one table for the window (filters of service or cause read it too), when the window starts before the rollups'
    # boundary (after it raw rows answer: no split); none on a connection that does not share
    assert temp_tables(shared, "hits_") == (1 if start < rolled_hours else 0)
    assert temp_tables(alone, "hits_") == 0


def test_the_shared_hits_keep_every_attack_label_of_an_event() -> None:
    """An event with several labels counts once under each (as `unnest(attacks)`), from the shared table too."""
    events = [dict(minute=30 * n, service="ab"[n % 2], issuer="i1", kid="k1", client_id=["c1", "c2", None, "c3"][n % 4],
                   cause="expired", confidence="verified", attacks=list(ATTACKS[: 1 + n % 3]), fetched=False,
                   token=n % 5, skew=None)
              for n in range(2 * HOURS)]
    window = queries.Filters(since=START, until=START + 2 * DAY)
    shared, alone = rolled_store(events, 20, 0), rolled_store(events, 20, 0)
    share_days(shared)
    got = attack_answers(shared, window)
    assert got == attack_answers(alone, window)
    per_label = {row["attack"]: row["events"] for row in got[0]}
    assert per_label == {"alg_none": len(events), "kid_injection": 2 * len(events) // 3,
                         "jku_injection": len(events) // 3}


def counting_answers(con: duckdb.DuckDBPyConnection, week: queries.Filters) -> list[Any]:
    """The report's counting questions of a week, then those that read the rolled tail."""
    first = queries.cause_counts_vs_previous(con, week)  # the report's first question: it makes the tails
    tails = (temp_tables(con, "rolled_tail_"), temp_tables(con, "counted_tail_"))
    return [
        tails,
        first,
        queries.window_time_range(con, week),
        queries.cause_counts(con, week),
        queries.confidence_counts(con, week),
        queries.attacks(con, week),
        queries.algorithms_in_use(con, week),
        queries.token_lifetimes(con, week, 3600),
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_event, max_size=60), st.integers(1, HOURS - 1))
def test_a_sharing_connection_sums_the_counted_tail_from_the_rolled_tail(
    events: list[dict[str, Any]], rolled_hours: int
) -> None:
    """The open tail (raw rows after the rollups' boundary) is rolled once on the report's connection: its first
    counting question makes the rolled tail and sums the counted tail from it (finer rows: alg and the key are keys
    too), with the answers of a connection that rolls each from the raw rows when a question needs it."""
    week = queries.Filters(since=START + DAY, until=START + 2 * DAY)  # with the week before: from START, rolled
    shared, alone = rolled_store(events, rolled_hours, 0), rolled_store(events, rolled_hours, 0)
    share_days(shared)
    got, expected = counting_answers(shared, week), counting_answers(alone, week)
    assert got[1:] == expected[1:]
    assert (got[0], expected[0]) == ((1, 1), (0, 1))
