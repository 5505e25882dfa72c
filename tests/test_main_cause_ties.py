"""A value's main cause is the cause with most events, ties broken by name, from raw rows as from rollups.

DuckDB's `mode()` breaks a tie at random (by its threads' hash tables), so the raw-row questions once named a
different main cause for the same rows from one call to the next, and a report's table differed from itself
(found by `test_report_shared`'s property test, 2 runs in 8).
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline import queries
from tests.test_rollups import raw_store

CALLS = 12


def tied_store() -> duckdb.DuckDBPyConnection:
    """120,000 raw RS256 events of one service and kid, half `stale_jwks` (stored first) and half `expired`."""
    base = dict(minute=5, service="a", issuer="i1", kid="k1", client_id="c1", confidence="verified", attacks=[],
                fetched=False, token=0, skew=None)  # token 0: RS256 (tests.test_rollups.ALGS)
    con = raw_store([{**base, "cause": "stale_jwks"}, {**base, "cause": "expired"}])
    for cause in ("stale_jwks", "expired"):
        con.execute("""INSERT INTO classifications
                       SELECT c.* REPLACE (c.event_id || '-' || i::VARCHAR AS event_id)
                       FROM classifications c, range(1, 60000) r(i)
                       WHERE c.cause = ? AND NOT contains(c.event_id, '-')""", [cause])
    con.execute("SET threads = 4")
    return con


def main_causes(answer: list[dict[str, Any]]) -> set[str]:
    return {row["main_cause"] for row in answer}


def test_a_tie_between_two_causes_names_the_first_by_name_every_time() -> None:
    con = tied_store()
    assert con.execute("SELECT cause, count(*) FROM classifications GROUP BY cause ORDER BY cause").fetchall() == [
        ("expired", 60_000), ("stale_jwks", 60_000)]
    for _ in range(CALLS):
        assert main_causes(queries.algorithms_in_use(con)) == {"expired"}
        assert main_causes(queries.top(con, "service")) == {"expired"}
        assert main_causes(queries.top(con, "alg")) == {"expired"}
