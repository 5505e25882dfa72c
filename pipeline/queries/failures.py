"""How many failures, of what, where and when: counts, trends, comparisons with earlier windows, top lists."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline.io.store_parts import raw_relation
from pipeline.queries import rolled
from pipeline.queries.base import BUCKET_SECONDS, NO_FILTERS, Filters, check_rankable, interval, rows
from pipeline.queries.coverage import finer_than_an_hour, split
from pipeline.queries.events import store_summary


def time_range(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """The first and last event time in the store (rollups included; the last as `events.store_summary` says)."""
    summary = store_summary(con, now)
    return summary["first_ts"], summary["last_ts"]


def window_time_range(con: duckdb.DuckDBPyConnection, filters: Filters) -> tuple[datetime | None, datetime | None]:
    """The first and last event time inside the filter (how much of a window the data covers)."""
    if (s := split(con, filters)) is not None:
        return rolled.time_span(con, s)
    where, params = filters.where()
    row = con.execute(f"SELECT min(ts), max(ts) FROM classifications WHERE {where}", params).fetchone()
    return (row[0], row[1]) if row else (None, None)


def first_event(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> datetime | None:
    """The time of the earliest event in the filter (when did it start?)."""
    if (s := split(con, filters)) is not None:
        return rolled.time_span(con, s)[0]
    where, params = filters.where()
    row = con.execute(f"SELECT min(ts) FROM classifications WHERE {where}", params).fetchone()
    return row[0] if row else None


def total_events(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> int:
    if (s := split(con, filters)) is not None:
        return rolled.total_events(con, s)
    where, params = filters.where()
    row = con.execute(f"SELECT count(*) FROM {raw_relation(con, filters.since, filters.until)} WHERE {where}",
                      params).fetchone()
    return int(row[0]) if row else 0


def cause_counts(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Events per cause, most first, with the share of all events in the filter."""
    if (s := split(con, filters)) is not None:
        return rolled.cause_counts(con, s)
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT cause, count(*) AS events,
                   count(*) FILTER (WHERE confidence = 'verified') AS verified,
                   count(*) FILTER (WHERE len(attacks) > 0) AS with_attacks,
                   count(service_jwks_fetched_at) AS with_fetch_time,
                   round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
            FROM classifications WHERE {where}
            GROUP BY cause ORDER BY events DESC, cause""",
        params,
    )


def confidence_counts(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Events per confidence (`verified`, `inferred`, `reported`), with the share of all events in the filter.

    Every surface shows `inferred` (stale_jwks resting on a cache TTL, not a fetch time) apart from `verified`.
    """
    if (s := split(con, filters)) is not None:
        return rolled.confidence_counts(con, s)
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT confidence, count(*) AS events, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
            FROM classifications WHERE {where}
            GROUP BY confidence ORDER BY events DESC, confidence""",
        params,
    )


def cause_counts_vs_previous(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per cause: events in the filter's window and in the window of the same length just before it.

    The filter must have both `since` and `until`. One scan covers both windows.
    """
    since = filters.since
    both = filters.with_previous()
    if since is not None and (s := split(con, both)) is not None:
        return rolled.cause_counts_vs_previous(con, s, since)
    where, params = both.where()
    return rows(
        con,
        f"""SELECT cause,
                   count(*) FILTER (WHERE ts >= ?) AS events,
                   count(*) FILTER (WHERE ts < ?) AS previous,
                   count(*) FILTER (WHERE ts >= ? AND confidence = 'verified') AS verified,
                   count(*) FILTER (WHERE ts >= ? AND len(attacks) > 0) AS with_attacks
            FROM classifications WHERE {where}
            GROUP BY cause ORDER BY events DESC, previous DESC, cause""",
        [since, since, since, since, *params],
    )


def service_counts_vs_previous(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per service: events in the window and in the window of the same length before it, and its causes.

    `causes` is the window's events per cause, most first (a list of {cause, events}).
    """
    if filters.since is not None and (s := split(con, filters.with_previous())) is not None:
        return rolled.service_counts_vs_previous(con, s, filters.since)
    where, params = filters.with_previous().where()
    return rows(
        con,
        f"""WITH per AS (
                SELECT service, cause,
                       count(*) FILTER (WHERE ts >= ?) AS events,
                       count(*) FILTER (WHERE ts < ?) AS previous
                FROM classifications WHERE {where} GROUP BY service, cause
            )
            SELECT service, sum(events)::BIGINT AS events, sum(previous)::BIGINT AS previous,
                   coalesce(list({{'cause': cause, 'events': events}} ORDER BY events DESC, cause)
                                 FILTER (WHERE events > 0), []) AS causes
            FROM per GROUP BY service ORDER BY events DESC, previous DESC, service""",
        [filters.since, filters.since, *params],
    )


def same_window_by_day(
    con: duckdb.DuckDBPyConnection, until: datetime, length: timedelta, days: int, filters: Filters = NO_FILTERS
) -> list[dict[str, Any]]:
    """Events per cause in `[until - length, until)` (days_ago 0) and the same window on each of `days` past days.

    The filter's own `since`/`until` are ignored; its services, issuers and causes apply.
    """
    base = filters.window(None, None)
    if (s := split(con, base.window(until - timedelta(days=days) - length, until))) is not None:
        return rolled.same_window_by_day(con, s, until, length, days)
    where, params = base.where()
    parts, all_params = [], []
    for days_ago in range(days + 1):
        end = until - timedelta(days=days_ago)
        parts.append(
            f"SELECT {days_ago} AS days_ago, cause, count(*) AS events FROM classifications "
            f"WHERE ts >= ? AND ts < ? AND {where} GROUP BY cause"
        )
        all_params += [end - length, end, *params]
    return rows(con, " UNION ALL ".join(parts) + " ORDER BY days_ago, events DESC, cause", all_params)


def failures_over_time(
    con: duckdb.DuckDBPyConnection, bucket: str = "1 hour", filters: Filters = NO_FILTERS
) -> list[dict[str, Any]]:
    """Events per time bucket and cause (for the stacked trend chart)."""
    if (s := split(con, filters, finer_than_an_hour(BUCKET_SECONDS[interval(bucket)]))) is not None:
        return rolled.failures_over_time(con, s, bucket)
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT time_bucket(INTERVAL '{interval(bucket)}', ts) AS bucket, cause, count(*) AS events
            FROM classifications WHERE {where}
            GROUP BY bucket, cause ORDER BY bucket, cause""",
        params,
    )


def failures_per_bucket(
    con: duckdb.DuckDBPyConnection, bucket: str = "1 hour", filters: Filters = NO_FILTERS
) -> list[dict[str, Any]]:
    """The rows of `failures_over_time` (bucket, cause, events) plus `verified` and `with_attacks`.

    3-5x faster on a large store: buckets are cut by integer arithmetic on the epoch instead
    of `time_bucket` on a TIMESTAMPTZ (which goes through the time-zone library row by row).
    For every width `interval` allows, the edges are the same: whole minutes, hours, and
    UTC midnights. Summing the rows per cause gives `cause_counts` for the window, so a
    page needs one scan for both its chart and its totals.
    """
    if (s := split(con, filters, finer_than_an_hour(BUCKET_SECONDS[interval(bucket)]))) is not None:
        return rolled.failures_per_bucket(con, s, bucket)
    width = BUCKET_SECONDS[interval(bucket)]
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT to_timestamp(k * {width}) AS bucket, cause, events, verified, with_attacks
            FROM (SELECT epoch_us(ts) // {width * 1_000_000} AS k, cause, count(*) AS events,
                         sum((confidence = 'verified')::INTEGER) AS verified,
                         sum((len(attacks) > 0)::INTEGER) AS with_attacks
                  FROM {raw_relation(con, filters.since, filters.until)} WHERE {where} GROUP BY k, cause)
            ORDER BY bucket, cause""",
        params,
    )


#: Columns `window_buckets` can split by; "attack" unnests the attacks list.
_BUCKET_KEYS = {"cause", "service", "client_id", "kid", "issuer", "attack"}


def window_buckets(
    con: duckdb.DuckDBPyConnection,
    since: datetime,
    until: datetime,
    buckets: int = 12,
    by: str = "cause",
    filters: Filters = NO_FILTERS,
) -> list[dict[str, Any]]:
    """Events per (`by` value, bucket) over `since <= ts < until` cut into `buckets` equal buckets (sparklines).

    `bucket` is 0-based; buckets with no events are absent. `filters` adds services, issuers
    and causes; its own since/until are replaced by the window.
    """
    if by not in _BUCKET_KEYS:
        raise ValueError(f"cannot split by {by!r}")
    if until <= since or buckets < 1:
        raise ValueError("the window must be non-empty and have at least one bucket")
    window = filters.window(since, until)
    fine = finer_than_an_hour((until - since).total_seconds() / buckets, since)
    if (s := split(con, window, fine)) is not None:
        return rolled.window_buckets(con, s, since, until, buckets, by)
    width = (until - since).total_seconds() / buckets
    where, params = window.where("c")
    # an event's labels unnested in the select list: a lateral unnest join materialises its whole input
    key, source = ("unnest(c.attacks)", f"classifications c WHERE {where} AND len(c.attacks) > 0") \
        if by == "attack" else (f"c.{by}", f"classifications c WHERE {where}")
    return rows(
        con,
        f"""SELECT key, bucket, count(*) AS events FROM (
                SELECT {key} AS key, least(CAST(floor((epoch(c.ts) - ?) / ?) AS INTEGER), ?) AS bucket
                FROM {source})
            GROUP BY ALL ORDER BY key, bucket""",
        [since.timestamp(), width, buckets - 1, *params],
    )


def top(
    con: duckdb.DuckDBPyConnection, column: str, filters: Filters = NO_FILTERS, limit: int = 10
) -> list[dict[str, Any]]:
    """The top values of `column` (service, client_id, kid, issuer, alg) by events, with their main cause."""
    check_rankable(column)
    if column != "alg" and (s := split(con, filters)) is not None:
        return rolled.top(con, s, column, limit)
    where, params = filters.where()
    return rows(
        con,
        # main_cause as `rolled.top` picks it (ties: the first by name); `mode()` breaks ties at random
        f"""SELECT value, sum(n)::BIGINT AS events, (list(cause ORDER BY n DESC, cause))[1] AS main_cause,
                   count(*) AS causes
            FROM (SELECT {column} AS value, cause, count(*) AS n
                  FROM classifications WHERE {where} AND {column} IS NOT NULL GROUP BY ALL)
            GROUP BY value ORDER BY events DESC, value LIMIT ?""",
        [*params, limit],
    )


def top_by_cause(
    con: duckdb.DuckDBPyConnection, column: str, filters: Filters = NO_FILTERS, limit: int = 10
) -> list[dict[str, Any]]:
    """The top values of `column` (as `top`), each split by cause: value, cause, events, total."""
    check_rankable(column)
    if column != "alg" and (s := split(con, filters)) is not None:
        return rolled.top_by_cause(con, s, column, limit)
    where, params = filters.where()
    return rows(
        con,
        f"""WITH scope AS (SELECT {column} AS value, cause FROM classifications
                           WHERE {where} AND {column} IS NOT NULL),
                 ranked AS (SELECT value, count(*) AS total FROM scope GROUP BY value
                            ORDER BY total DESC, value LIMIT ?)
            SELECT value, cause, count(*) AS events, any_value(total) AS total
            FROM scope JOIN ranked USING (value)
            GROUP BY value, cause ORDER BY total DESC, value, events DESC, cause""",
        [*params, limit],
    )
