"""The counting queries over rollups and raw rows together (a `Split`): the same rows as their raw versions.

Each function here answers what its namesake in `failures`, `events`, `tokens` or `rotations`
answers, for a window that starts before `store_coverage.rolled_through`: hours before it from
`classifications_hourly`, the rest from raw rows, counted by the rollups' double-count rule
(`pipeline.rollups`). Two relations, one definition each:

- `counted`: one row per raw event or per rollup row with `events > 0`: ts (the hour for a
  rollup row), the keys, `attacked`, `events`, `with_fetch_time`, `first_ts`, `last_ts`;
- `hits`: one row per attack label of a raw event or per rollup row with `attack_events > 0`.

The raw rows after the boundary (the open tail: at 200 events/s, up to a million rows) are
rolled once per connection (`rolled_tail`, a temp table) and every question whose time cuts
fall on hours reads that instead of the raw rows, so a report rolls its tail once, not a dozen
times; a question that cuts an hour (5-minute buckets, a window ending at 10:37) reads the raw
rows as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline.io.store_parts import raw_relation
from pipeline.io.store_rollups import rollup_relation
from pipeline.queries.base import BUCKET_SECONDS, Filters, interval, rotation_damage, rows
from pipeline.queries.coverage import Split, by_day
from pipeline.queries.daily import counted_by_day, shares
from pipeline.rollups import (
    CACHE_AGE_EDGES,
    HOUR_SECONDS,
    LIFETIME_EDGES,
    histogram_median_sql,
    histogram_over_sql,
    hourly_sql,
    merged_histogram_sql,
)


def counted(s: Split, tail: str | None = None) -> tuple[str, list[Any]]:
    """SQL: `WITH counted AS (…)` over the split (see the module's docstring). `tail`: the raw rows from the
    boundary on, rolled (`rolled_tail`), read instead of the raw rows (only where no cut falls inside an hour)."""
    hourly, hourly_params = s.filters.where(hourly=True)
    raw, raw_params = s.filters.where()
    rolled = """SELECT hour AS ts, service, issuer, kid, client_id, cause, confidence, attack IS NOT NULL AS attacked,
               events, with_fetch_time, first_ts, last_ts"""
    if tail is not None:
        return _with_tail("counted", rolled, "events > 0", tail, s, hourly, hourly_params)
    sql = f"""WITH counted AS (
        {rolled} FROM {s.hourly} WHERE hour < ? AND events > 0 AND {hourly}
        UNION ALL
        SELECT ts, service, issuer, kid, client_id, cause, confidence, len(attacks) > 0, 1::BIGINT,
               (service_jwks_fetched_at IS NOT NULL)::BIGINT, ts, ts
        FROM {s.raw} WHERE ts >= ? AND {raw}
    )"""
    return sql, [s.boundary, *hourly_params, s.boundary, *raw_params]


def counted_or_by_day(con: duckdb.DuckDBPyConnection, s: Split, *cuts: datetime | float) -> tuple[str, list[Any]]:
    """`counted` with the open tail rolled (`counted_tail`), or its per-day sums when the question's window and cuts
    are whole days (`daily.counted_by_day`: one pass for all of a report's such questions). For questions that read
    no issuer, kid or client_id. The day table is made from the closed days' daily rows (`coverage.by_day`)."""
    tail = counted_tail(con, s, *cuts)
    return counted_by_day(con, s, lambda: counted(by_day(con, s), tail), *cuts) or counted(s, tail)


def _with_tail(name: str, rolled: str, keep: str, tail: str, s: Split, hourly: str, params: list[Any]
               ) -> tuple[str, list[Any]]:
    """SQL: `WITH <name> AS (…)` over the rollups before the boundary and the rolled tail after it."""
    sql = f"""WITH {name} AS (
        {rolled} FROM {s.hourly} WHERE hour < ? AND {keep} AND {hourly}
        UNION ALL {rolled} FROM {tail} WHERE {keep} AND {hourly}
    )"""
    return sql, [s.boundary, *params, *params]


def hits(s: Split, tail: str | None = None) -> tuple[str, list[Any]]:
    """SQL: `WITH hits AS (…)`: ts, service, client_id, cause, attack, events, first_ts, last_ts (`tail`: as in
    `counted`)."""
    hourly, hourly_params = s.filters.where(hourly=True)
    # the raw rows from the boundary on, of the window's day folders only (`Split.raw`, a FROM item named
    # `classifications`: the filter's columns carry that name)
    raw, raw_params = s.filters.where("classifications")
    rolled = "SELECT hour AS ts, service, client_id, cause, attack, attack_events AS events, first_ts, last_ts"
    if tail is not None:
        return _with_tail("hits", rolled, "attack_events > 0", tail, s, hourly, hourly_params)
    sql = f"""WITH hits AS (
        {rolled} FROM {s.hourly} WHERE hour < ? AND attack_events > 0 AND {hourly}
        UNION ALL
        SELECT classifications.ts, classifications.service, classifications.client_id, classifications.cause,
               unnest(classifications.attacks), 1::BIGINT, classifications.ts, classifications.ts
        FROM {s.raw} WHERE classifications.ts >= ? AND len(classifications.attacks) > 0 AND {raw}
    )"""
    return sql, [s.boundary, *hourly_params, s.boundary, *raw_params]


def shared_hits(con: duckdb.DuckDBPyConnection, s: Split) -> tuple[str, list[Any]]:
    """`hits` of the split with its open tail rolled (`counted_tail`); on a connection that shares its tables
    (`daily.shares`: the report, whose attack table and attack kinds per cause read the same week's hits) from a
    temp table of the hits of the split's time window summed per service, client_id, cause and attack, made by
    the first such question from the closed days' daily rows (`coverage.by_day`). Every reader of `hits` sums,
    counts distinct or takes extremes of those columns, so the sums answer as the rows do; the table has no `ts`
    (a day's rows have the day's). A question that filters issuers or events without attacks reads the rows."""
    f = s.filters
    tail = counted_tail(con, s)
    if not shares(con) or f.since is None or f.until is None or f.issuers or f.without_attacks:
        return hits(s, tail)
    window = replace(s, filters=Filters(since=f.since, until=f.until))
    sql, params = hits(by_day(con, window), tail)
    name = "hits_" + hashlib.sha256(repr((sql, params)).encode()).hexdigest()[:16]
    summed = f"""{sql} SELECT service, client_id, cause, attack, sum(events)::BIGINT AS events,
                      min(first_ts) AS first_ts, max(last_ts) AS last_ts FROM hits GROUP BY ALL"""
    if (table := temp_table(con, name, summed, params)) is None:
        return hits(s, tail)
    where, where_params = Filters(services=f.services, causes=f.causes).where()
    return f"WITH hits AS (SELECT * FROM {table} WHERE {where})", where_params


#: The rollup columns `counted` and `hits` read, rolled from raw rows as `hourly_sql` rolls them (no
#: sketch, histogram or distinct count: a quarter of its cost on the open tail).
_COUNTED_TAIL = f"""SELECT to_timestamp(hour_no * {HOUR_SECONDS}) AS hour, service, issuer, kid, client_id, cause,
       confidence, attack, count(*) FILTER (WHERE label_no = 1)::BIGINT AS events,
       count(attack)::BIGINT AS attack_events,
       count(service_jwks_fetched_at) FILTER (WHERE label_no = 1)::BIGINT AS with_fetch_time,
       min(ts) AS first_ts, max(ts) AS last_ts
FROM (SELECT epoch_us(ts) // {HOUR_SECONDS * 1_000_000} AS hour_no, service, issuer, kid, client_id, cause, confidence,
             attacks[label_no] AS attack, label_no, ts, service_jwks_fetched_at
      FROM (SELECT *, unnest(generate_series(1, greatest(len(attacks), 1))) AS label_no
            FROM {{raw}} WHERE ts >= ?))
GROUP BY ALL"""


#: `_COUNTED_TAIL`'s rows from `rolled_tail`'s table: its rows are finer (alg and key_thumbprint are keys too) and
#: every column `counted` and `hits` read is a sum, a minimum or a maximum of them.
_COUNTED_FROM_ROLLED = """SELECT hour, service, issuer, kid, client_id, cause, confidence, attack,
       sum(events)::BIGINT AS events, sum(attack_events)::BIGINT AS attack_events,
       sum(with_fetch_time)::BIGINT AS with_fetch_time, min(first_ts) AS first_ts, max(last_ts) AS last_ts
FROM {rolled} GROUP BY ALL"""


def counted_tail(con: duckdb.DuckDBPyConnection, s: Split, *cuts: datetime | float) -> str | None:
    """`rolled_tail` with only what `counted` and `hits` read (made once per connection the same way).

    On a connection that shares its tables (`daily.shares`: the report, which rolls the tail for its histograms
    anyway) it is summed from `rolled_tail`'s table, so the raw tail is read and rolled once, not twice."""
    if _cuts_an_hour(s, cuts):
        return None
    name = f"counted_tail_{int(s.boundary.timestamp())}"
    if shares(con) and (whole := rolled_tail(con, s, *cuts)) is not None:
        return temp_table(con, name, _COUNTED_FROM_ROLLED.replace("{rolled}", whole), [])
    return temp_table(con, name, _COUNTED_TAIL.replace("{raw}", raw_relation(con, s.boundary, None)), [s.boundary])


def _cuts_an_hour(s: Split, cuts: tuple[datetime | float, ...]) -> bool:
    """True when the tail cannot stand for the raw rows: the window ends before it (its raw part is empty), or
    its end or a cut falls inside an hour."""
    until = s.filters.until
    if until is not None and until <= s.boundary:
        return True
    return any(e is not None and (e.timestamp() if isinstance(e, datetime) else e) % HOUR_SECONDS
               for e in (until, *cuts))


def rolled_tail(con: duckdb.DuckDBPyConnection, s: Split, *cuts: datetime | float) -> str | None:
    """A temp table of the raw rows from the split's boundary on, rolled up (`hourly_sql`) once per connection
    and shared by every question asked on it (a report asks a dozen; at 200 events/s the open tail is a
    million rows). None when it cannot stand for them exactly: when the window's end or one of `cuts` (a
    time, or a bucket width in seconds) falls inside an hour, the raw rows answer as before.

    The table holds the raw rows as they were when first asked: a connection is one page run or one
    report (`dashboards.data`), so its questions agree with each other.
    """
    if _cuts_an_hour(s, cuts):
        return None
    return temp_table(con, f"rolled_tail_{int(s.boundary.timestamp())}",
                      hourly_sql(f"(SELECT * FROM {raw_relation(con, s.boundary, None)} WHERE ts >= ?)"), [s.boundary])


def temp_table(con: duckdb.DuckDBPyConnection, name: str, select: str, params: list[Any]) -> str | None:
    """`name`, a temp table of `select` made at the connection's first call (None if it cannot hold one)."""
    try:
        found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?", [name])
        if (found.fetchone() or (0,))[0] == 0:  # CREATE … IF NOT EXISTS … AS would run `select` all the same
            con.execute(f"CREATE TEMP TABLE {name} AS {select}", params)
    except duckdb.Error:  # a connection that cannot hold temp tables: the raw rows, as before
        return None
    return name


def total_events(con: duckdb.DuckDBPyConnection, s: Split) -> int:
    sql, params = counted_or_by_day(con, s)
    row = con.execute(f"{sql} SELECT coalesce(sum(events), 0)::BIGINT FROM counted", params).fetchone()
    return int(row[0]) if row else 0


def time_span(con: duckdb.DuckDBPyConnection, s: Split) -> tuple[datetime | None, datetime | None]:
    """The first and last event time in the split."""
    sql, params = counted_or_by_day(con, s)
    row = con.execute(f"{sql} SELECT min(first_ts), max(last_ts) FROM counted", params).fetchone()
    return (row[0], row[1]) if row else (None, None)


def cause_counts(con: duckdb.DuckDBPyConnection, s: Split) -> list[dict[str, Any]]:
    sql, params = counted_or_by_day(con, s)
    return rows(
        con,
        f"""{sql} SELECT cause, sum(events)::BIGINT AS events,
                   coalesce(sum(events) FILTER (WHERE confidence = 'verified'), 0)::BIGINT AS verified,
                   coalesce(sum(events) FILTER (WHERE attacked), 0)::BIGINT AS with_attacks,
                   sum(with_fetch_time)::BIGINT AS with_fetch_time,
                   round(100.0 * sum(events)::BIGINT / sum(sum(events)::BIGINT) OVER (), 1) AS percent
            FROM counted GROUP BY cause ORDER BY events DESC, cause""",
        params,
    )


def confidence_counts(con: duckdb.DuckDBPyConnection, s: Split) -> list[dict[str, Any]]:
    sql, params = counted_or_by_day(con, s)
    return rows(
        con,
        f"""{sql} SELECT confidence, sum(events)::BIGINT AS events,
                   round(100.0 * sum(events)::BIGINT / sum(sum(events)::BIGINT) OVER (), 1) AS percent
            FROM counted GROUP BY confidence ORDER BY events DESC, confidence""",
        params,
    )


def cause_counts_vs_previous(con: duckdb.DuckDBPyConnection, s: Split, since: datetime) -> list[dict[str, Any]]:
    """`s` covers the window and the one before it; `since` is where the window starts."""
    s = s.settled(since)
    sql, params = counted_or_by_day(con, s, since)
    return rows(
        con,
        f"""{sql} SELECT cause,
                   coalesce(sum(events) FILTER (WHERE ts >= ?), 0)::BIGINT AS events,
                   coalesce(sum(events) FILTER (WHERE ts < ?), 0)::BIGINT AS previous,
                   coalesce(sum(events) FILTER (WHERE ts >= ? AND confidence = 'verified'), 0)::BIGINT AS verified,
                   coalesce(sum(events) FILTER (WHERE ts >= ? AND attacked), 0)::BIGINT AS with_attacks
            FROM counted GROUP BY cause ORDER BY events DESC, previous DESC, cause""",
        [*params, since, since, since, since],
    )


def service_counts_vs_previous(con: duckdb.DuckDBPyConnection, s: Split, since: datetime) -> list[dict[str, Any]]:
    s = s.settled(since)
    sql, params = counted_or_by_day(con, s, since)
    return rows(
        con,
        f"""{sql}, per AS (
                SELECT service, cause,
                       coalesce(sum(events) FILTER (WHERE ts >= ?), 0)::BIGINT AS events,
                       coalesce(sum(events) FILTER (WHERE ts < ?), 0)::BIGINT AS previous
                FROM counted GROUP BY service, cause
            )
            SELECT service, sum(events)::BIGINT AS events, sum(previous)::BIGINT AS previous,
                   coalesce(list({{'cause': cause, 'events': events}} ORDER BY events DESC, cause)
                                 FILTER (WHERE events > 0), []) AS causes
            FROM per GROUP BY service ORDER BY events DESC, previous DESC, service""",
        [*params, since, since],
    )


def same_window_by_day(
    con: duckdb.DuckDBPyConnection, s: Split, until: datetime, length: timedelta, days: int
) -> list[dict[str, Any]]:
    """`s` spans every day's window; each part counts its own."""
    s = s.settled(*(edge for k in range(days + 1) for edge in (until - timedelta(days=k),
                                                                until - timedelta(days=k) - length)))
    sql, params = counted(s, counted_tail(con, s, until, length.total_seconds()))
    parts, part_params = [], list[Any]()
    for days_ago in range(days + 1):
        end = until - timedelta(days=days_ago)
        parts.append(
            f"SELECT {days_ago} AS days_ago, cause, sum(events)::BIGINT AS events FROM counted "
            "WHERE ts >= ? AND ts < ? GROUP BY cause"
        )
        part_params += [end - length, end]
    return rows(con, f"{sql} {' UNION ALL '.join(parts)} ORDER BY days_ago, events DESC, cause", params + part_params)


def failures_per_bucket(con: duckdb.DuckDBPyConnection, s: Split, bucket: str) -> list[dict[str, Any]]:
    """A rollup row falls in the bucket its hour starts in (finer buckets than an hour: the first of the hour)."""
    width = BUCKET_SECONDS[interval(bucket)]
    sql, params = counted(s, counted_tail(con, s, width))
    return rows(
        con,
        f"""{sql} SELECT to_timestamp(k * {width}) AS bucket, cause, events, verified, with_attacks
            FROM (SELECT epoch_us(ts) // {width * 1_000_000} AS k, cause, sum(events)::BIGINT AS events,
                         coalesce(sum(events) FILTER (WHERE confidence = 'verified'), 0)::BIGINT AS verified,
                         coalesce(sum(events) FILTER (WHERE attacked), 0)::BIGINT AS with_attacks
                  FROM counted GROUP BY k, cause)
            ORDER BY bucket, cause""",
        params,
    )


def failures_over_time(con: duckdb.DuckDBPyConnection, s: Split, bucket: str) -> list[dict[str, Any]]:
    sql, params = counted(s, counted_tail(con, s, BUCKET_SECONDS[interval(bucket)]))
    return rows(
        con,
        f"""{sql} SELECT time_bucket(INTERVAL '{interval(bucket)}', ts) AS bucket, cause,
                   sum(events)::BIGINT AS events
            FROM counted GROUP BY bucket, cause ORDER BY bucket, cause""",
        params,
    )


def window_buckets(
    con: duckdb.DuckDBPyConnection, s: Split, since: datetime, until: datetime, buckets: int, by: str
) -> list[dict[str, Any]]:
    width = (until - since).total_seconds() / buckets
    s = s.settled(since, until)
    if by in ("cause", "service"):  # the columns a day table keeps
        sql, params = counted_or_by_day(con, s, since, width)
    else:
        tail = counted_tail(con, s, since, width)
        sql, params = hits(s, tail) if by == "attack" else counted(s, tail)
    relation = "hits" if by == "attack" else "counted"
    return rows(
        con,
        f"""{sql} SELECT {by} AS key,
                   least(CAST(floor((epoch(ts) - ?) / ?) AS INTEGER), ?) AS bucket,
                   sum(events)::BIGINT AS events
            FROM {relation} GROUP BY ALL ORDER BY key, bucket""",
        [*params, since.timestamp(), width, buckets - 1],
    )


def top(con: duckdb.DuckDBPyConnection, s: Split, column: str, limit: int) -> list[dict[str, Any]]:
    """`main_cause`: the cause with most events (ties: the first by name)."""
    sql, params = counted(s, counted_tail(con, s))
    return rows(
        con,
        f"""{sql}, per AS (SELECT {column} AS value, cause, sum(events)::BIGINT AS n FROM counted
                          WHERE {column} IS NOT NULL GROUP BY ALL)
            SELECT value, sum(n)::BIGINT AS events, (list(cause ORDER BY n DESC, cause))[1] AS main_cause,
                   count(DISTINCT cause) AS causes
            FROM per GROUP BY value ORDER BY events DESC, value LIMIT ?""",
        [*params, limit],
    )


def top_by_cause(con: duckdb.DuckDBPyConnection, s: Split, column: str, limit: int) -> list[dict[str, Any]]:
    sql, params = counted(s, counted_tail(con, s))
    return rows(
        con,
        f"""{sql}, scope AS (SELECT {column} AS value, cause, events FROM counted WHERE {column} IS NOT NULL),
                 ranked AS (SELECT value, sum(events)::BIGINT AS total FROM scope GROUP BY value
                            ORDER BY total DESC, value LIMIT ?)
            SELECT value, cause, sum(events)::BIGINT AS events, any_value(total) AS total
            FROM scope JOIN ranked USING (value)
            GROUP BY value, cause ORDER BY total DESC, value, events DESC, cause""",
        [*params, limit],
    )


def filter_values(con: duckdb.DuckDBPyConnection, s: Split) -> tuple[Any, Any, Any] | None:
    sql, params = counted(s, counted_tail(con, s))
    return con.execute(
        f"""{sql} SELECT list(DISTINCT service ORDER BY service), list(DISTINCT issuer ORDER BY issuer),
                   list(DISTINCT cause ORDER BY cause) FROM counted""",
        params,
    ).fetchone()


def attacks(con: duckdb.DuckDBPyConnection, s: Split) -> list[dict[str, Any]]:
    sql, params = shared_hits(con, s)
    return rows(
        con,
        f"""{sql} SELECT attack, sum(events)::BIGINT AS events,
                   list_distinct(list(service ORDER BY service)) AS services,
                   count(DISTINCT client_id) AS clients, min(first_ts) AS first_seen, max(last_ts) AS last_seen
            FROM hits GROUP BY attack ORDER BY events DESC, attack""",
        params,
    )


def attack_kinds_by_cause(con: duckdb.DuckDBPyConnection, s: Split) -> list[tuple[str, str]]:
    sql, params = shared_hits(con, s)
    return con.execute(
        f"""{sql} SELECT cause, attack FROM (SELECT cause, attack, sum(events) AS events FROM hits GROUP BY ALL)
            ORDER BY cause, events DESC, attack""",
        params,
    ).fetchall()


def attack_clients(con: duckdb.DuckDBPyConnection, s: Split, limit: int, nulls_apart: bool) -> list[dict[str, Any]]:
    """`tokens.attack_clients` (`nulls_apart` False) or `tokens.attack_client_ids` (True)."""
    sql, params = hits(s, counted_tail(con, s))
    partition = "attack, client_id IS NULL" if nulls_apart else "attack"
    keep = "n <= ? OR client_id IS NULL" if nulls_apart else "n <= ?"
    order = "attack, client_id IS NULL, events DESC, client_id" if nulls_apart else "attack, events DESC, client_id"
    return rows(
        con,
        f"""{sql} SELECT attack, client_id, events FROM (
                SELECT attack, client_id, sum(events)::BIGINT AS events,
                       row_number() OVER (PARTITION BY {partition} ORDER BY sum(events) DESC, client_id) AS n
                FROM hits GROUP BY attack, client_id
            ) WHERE {keep} ORDER BY {order}""",
        [*params, limit],
    )


def rotation_damage_count(con: duckdb.DuckDBPyConnection, s: Split) -> int:
    sql, params = counted_or_by_day(con, s)
    damage, damage_params = rotation_damage()
    # `counted` has no attacks list: the damage condition's `len(attacks) = 0` is `NOT attacked` here
    damage = damage.replace("len(attacks) = 0", "NOT attacked")
    row = con.execute(
        f"{sql} SELECT coalesce(sum(events), 0)::BIGINT FROM counted WHERE {damage}", [*params, *damage_params]
    ).fetchone()
    return int(row[0]) if row else 0


def store_totals(con: duckdb.DuckDBPyConnection, boundary: datetime, cap: datetime) -> dict[str, Any]:
    """`events.store_summary` over rollups before `boundary` and raw rows from it on (its last event time
    the newest not past `cap`, unless every event is past it)."""
    return rows(
        con,
        f"""WITH parts AS (
                SELECT sum(events)::BIGINT AS events, min(first_ts) AS first_ts,
                       max(last_ts) FILTER (WHERE last_ts <= ?) AS capped, max(last_ts) AS last_ts,
                       NULL::TIMESTAMPTZ AS last_classified_at
                FROM {rollup_relation(con, None, boundary)} WHERE hour < ?
                UNION ALL
                SELECT count(*), min(ts), max(ts) FILTER (WHERE ts <= ?), max(ts), max(classified_at)
                FROM {raw_relation(con, boundary, None)} WHERE ts >= ?
            )
            SELECT coalesce(sum(events), 0)::BIGINT AS events, min(first_ts) AS first_ts,
                   coalesce(max(capped), max(last_ts)) AS last_ts, max(last_classified_at) AS last_classified_at
            FROM parts""",
        [cap, boundary, cap, boundary],
    )[0]


def services_seen(con: duckdb.DuckDBPyConnection, boundary: datetime) -> list[str]:
    """The services of the rollups before `boundary` and of the raw rows from it on (the raw rows before it are
    rolled: reading them would read every raw day's files)."""
    found = con.execute(
        f"""SELECT service FROM {rollup_relation(con, None, boundary)} WHERE hour < ? AND events > 0
           UNION SELECT service FROM {raw_relation(con, boundary, None)} WHERE ts >= ? ORDER BY service""",
        [boundary, boundary],
    ).fetchall()
    return [row[0] for row in found]


def rolled_rows(s: Split, columns: str, tail: str | None = None) -> tuple[str, list[Any]]:
    """SQL: `WITH rolled AS (…)`: rollup rows (`HOURLY_COLUMNS`) before the boundary, and the raw rows from it on
    rolled up the same way (`hourly_sql`; `tail`: `rolled_tail`'s table of them), so a measure only rollups
    hold reads one relation. `columns`: the rollup columns the reader needs (a sketch or a histogram not
    read is not scanned)."""
    hourly, hourly_params = s.filters.where(hourly=True)
    if tail is not None:
        sql = f"""WITH rolled AS (
        SELECT {columns} FROM {s.hourly} WHERE hour < ? AND {hourly}
        UNION ALL SELECT {columns} FROM {tail} WHERE {hourly}
    )"""
        return sql, [s.boundary, *hourly_params, *hourly_params]
    raw, raw_params = s.filters.where()
    tail_sql = hourly_sql(f"(SELECT * FROM {s.raw} WHERE ts >= ? AND {raw})")
    sql = f"""WITH rolled AS (
        SELECT {columns} FROM {s.hourly} WHERE hour < ? AND {hourly}
        UNION ALL SELECT {columns} FROM ({tail_sql})
    )"""
    return sql, [s.boundary, *hourly_params, s.boundary, *raw_params]


def algorithms(con: duckdb.DuckDBPyConnection, s: Split) -> list[dict[str, Any]]:
    """`tokens.algorithms_in_use` from rollups: `tokens` adds up the rows' distinct tokens (a token in several
    rows, hours or services, counts in each: an upper bound; merging the sketches instead reads every
    prefix of the week, seconds)."""
    sql, params = rolled_rows(by_day(con, s), "alg, cause, events, tokens, with_key, issuer, attack",
                              rolled_tail(con, s))
    # summed per alg, cause, issuer and attacked first: the join and the lists then see dozens of rows, not every
    # rollup row of the window (4x quicker over a week at 200 events/s)
    return rows(
        con,
        f"""{sql}, g AS (
                SELECT alg, cause, issuer, attack IS NOT NULL AS attacked, sum(events) AS events,
                       sum(tokens) AS tokens, sum(with_key) AS with_key
                FROM rolled WHERE events > 0 GROUP BY ALL
            ),
            per AS (SELECT alg, cause, sum(events)::BIGINT AS n FROM g GROUP BY ALL)
            SELECT r.alg, sum(r.events)::BIGINT AS events, sum(r.tokens)::BIGINT AS tokens,
                   sum(r.with_key)::BIGINT AS verified,
                   list_sort(list_distinct(list(r.issuer) FILTER (WHERE r.issuer IS NOT NULL))) AS issuers,
                   any_value(m.main_cause) AS main_cause,
                   coalesce(sum(r.events) FILTER (WHERE r.attacked), 0)::BIGINT AS attack_events
            FROM g r
            JOIN (SELECT alg, (list(cause ORDER BY n DESC, cause))[1] AS main_cause FROM per GROUP BY alg) m
              ON m.alg IS NOT DISTINCT FROM r.alg
            GROUP BY r.alg ORDER BY r.alg IS NULL, events DESC, r.alg""",
        params,
    )


def token_lifetimes(con: duckdb.DuckDBPyConnection, s: Split, max_seconds: float) -> list[dict[str, Any]]:
    """`tokens.token_lifetimes` from the lifetime histograms, per issuer and the events' client_id.

    Approximate (`pipeline.rollups`): token counts add up the rows' distinct tokens (a token in
    several hours counts in each); `over_policy`
    and `events_over_policy` are exact when `max_seconds` is a `LIFETIME_EDGES` edge (an upper
    bound otherwise); the median is its bucket's upper edge.
    """
    columns = "issuer, client_id, with_key, tokens, lifetime_tokens, lifetime_events, max_lifetime_s"
    sql, params = rolled_rows(by_day(con, s), columns, rolled_tail(con, s))
    tokens_hist = merged_histogram_sql("lifetime_tokens", LIFETIME_EDGES)
    events_hist = merged_histogram_sql("lifetime_events", LIFETIME_EDGES)
    return rows(
        con,
        f"""{sql}, per AS (
                SELECT issuer, client_id AS client, sum(with_key)::BIGINT AS events, sum(tokens) AS tokens,
                       {tokens_hist} AS th,
                       {events_hist} AS eh, max(max_lifetime_s) AS max_lifetime_s
                FROM rolled WHERE issuer IS NOT NULL AND with_key > 0 AND tokens > 0 GROUP BY issuer, client_id
            )
            SELECT issuer, client, greatest(tokens, list_sum(th))::BIGINT AS tokens, events,
                   list_sum(th)::BIGINT AS with_lifetime,
                   {histogram_over_sql("th", LIFETIME_EDGES, max_seconds)} AS over_policy,
                   {histogram_over_sql("eh", LIFETIME_EDGES, max_seconds)} AS events_over_policy,
                   max_lifetime_s, {histogram_median_sql("th", LIFETIME_EDGES, "max_lifetime_s")} AS median_lifetime_s
            FROM per ORDER BY over_policy DESC, issuer, max_lifetime_s DESC NULLS LAST, client""",
        params,
    )


def cache_ages(con: duckdb.DuckDBPyConnection, s: Split, stale: str, by_issuer: bool) -> list[dict[str, Any]]:
    """`rotations.cache_age_by_service` (or `…_by_service_issuer`) from rollups; the median from the
    cache-age histogram (its bucket's upper edge, never above the max)."""
    sql, params = rolled_rows(by_day(con, s), "service, issuer, cause, events, with_fetch_time, cache_age_events, "
                                             "max_cache_age_s, max_key_age_s", rolled_tail(con, s))
    keys = "service, issuer" if by_issuer else "service"
    where = "issuer IS NOT NULL" if by_issuer else "TRUE"
    order = "service, issuer" if by_issuer else "stale_jwks DESC, service"
    return rows(
        con,
        f"""{sql}, per AS (
                SELECT {keys}, sum(events)::BIGINT AS events, sum(with_fetch_time)::BIGINT AS events_with_fetch_time,
                       {merged_histogram_sql("cache_age_events", CACHE_AGE_EDGES)} AS h,
                       max(max_cache_age_s) AS reported_age_max_s,
                       coalesce(sum(events) FILTER (WHERE cause = ?), 0)::BIGINT AS stale_jwks,
                       max(max_key_age_s) FILTER (WHERE cause = ? AND events > 0) AS stale_window_s
                FROM rolled WHERE {where} GROUP BY {keys}
            )
            SELECT {keys}, events, events_with_fetch_time,
                   {histogram_median_sql("h", CACHE_AGE_EDGES, "reported_age_max_s")} AS reported_age_median_s,
                   reported_age_max_s, stale_jwks, stale_window_s
            FROM per WHERE events > 0 ORDER BY {order}""",
        [*params, stale, stale],
    )
