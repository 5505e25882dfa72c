"""The counting questions of a window of whole UTC days, from one pass over its rows per connection (issue 21).

The weekly report asks eight questions of `rolled.counted` (causes and services against the week before, the
daily chart, confidence, rotation damage, the time span): each read the same week's rollup files again. When a
question filters nothing but time, and its window and every cut it makes (a bucket width, a comparison's
start) fall on whole UTC days, its answer depends on `counted` only through sums, minima and maxima per day,
cause, service, confidence and attack flag. So on a connection that asks many of them (`share_days`: the
report's) the first such question makes a temp table of its split's `counted` rows summed per day; a later one
whose window lies inside that table's (the same split boundary) reads it instead of the files. Elsewhere (a
dashboard page asks one or two, over up to every day kept) making the table costs more than it saves. The
table holds the rows as they were when first asked, as `rolled.rolled_tail` does: a connection is one report.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb

from pipeline.queries.coverage import Split

DAY_SECONDS = 86_400

#: The columns of `counted` a day table keeps (the others, issuer, kid and client_id, are NULL in it).
BY_DAY_COLUMNS = ("ts", "service", "cause", "confidence", "attacked")

#: The connections whose day-aligned counting questions share day tables (`share_days`).
_SHARING: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def share_days(con: duckdb.DuckDBPyConnection) -> None:
    """Let `con`'s counting questions of whole days share day tables (a caller that asks many: the report)."""
    _SHARING.add(con)


def shares(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `con` asks many questions of one window (`share_days`), so tables made once for all of them pay."""
    return con in _SHARING


#: A connection's day tables: (split boundary, window start, window end, table name).
_TABLES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, list[tuple[datetime, datetime, datetime, str]]] = (
    weakref.WeakKeyDictionary())


def whole_days(s: Split, *cuts: datetime | float) -> bool:
    """Whether a question of `s` with these cuts (times, or widths in seconds) can be answered per day: a time-only
    filter over [since, until), both and every cut on a UTC day's edge."""
    f = s.filters
    if f.since is None or f.until is None or f.services or f.issuers or f.causes or f.without_attacks:
        return False
    for cut in (f.since, f.until, *cuts):
        if isinstance(cut, datetime):
            if cut.tzinfo is None or cut.timestamp() % DAY_SECONDS:  # a naive time: the old path, whatever the zone
                return False
        elif cut % DAY_SECONDS:
            return False
    return True


def counted_by_day(con: duckdb.DuckDBPyConnection, s: Split, counted: Callable[[], tuple[str, list[Any]]],
                   *cuts: datetime | float) -> tuple[str, list[Any]] | None:
    """`WITH counted AS (…)` over a day table of the connection (made here from `counted()`, the question's own
    clause, when none holds the window), or None when the connection does not share them (`share_days`), the
    question cannot be answered per day (`whole_days`) or the connection cannot hold a temp table. Only for
    questions that read no issuer, kid or client_id."""
    if not shares(con) or not whole_days(s, *cuts):
        return None
    since, until = s.filters.since, s.filters.until
    assert since is not None and until is not None  # whole_days
    tables = _TABLES.setdefault(con, [])
    found = next((name for boundary, first, end, name in tables
                  if boundary == s.boundary and first <= since and until <= end), None)
    if found is None:
        sql, params = counted()
        found = "counted_days_" + hashlib.sha256(repr((sql, params)).encode()).hexdigest()[:16]
        try:
            con.execute(
                f"""CREATE TEMP TABLE {found} AS {sql}
                    SELECT to_timestamp(epoch_us(ts) // {DAY_SECONDS * 1_000_000} * {DAY_SECONDS}) AS ts, service,
                           cause, confidence, attacked, sum(events)::BIGINT AS events,
                           sum(with_fetch_time)::BIGINT AS with_fetch_time, min(first_ts) AS first_ts,
                           max(last_ts) AS last_ts
                    FROM counted GROUP BY ALL""",
                params,
            )
        except duckdb.Error:  # a connection that cannot hold temp tables (or has this one): the files, as before
            return None
        tables.append((s.boundary, since, until, found))
    return (f"""WITH counted AS (
        SELECT ts, service, NULL::VARCHAR AS issuer, NULL::VARCHAR AS kid, NULL::VARCHAR AS client_id, cause,
               confidence, attacked, events, with_fetch_time, first_ts, last_ts
        FROM {found} WHERE ts >= ? AND ts < ?
    )""", [since, until])
