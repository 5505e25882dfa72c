"""Key rotations and what they did: the steps, the failures each caused per service, the keys' lives,
and the services' JWKS cache ages.

One definition of each rotation figure, used by the demo, the report, the dashboard and triage:

- **Rotation damage** (DESIGN.md): `pipeline.causes.ROTATION_DAMAGE` verdicts without an attack
  label (`base.rotation_damage`); `rotation_damage_count` counts them.
- **A step's failures**: each damage event belongs to exactly one step of its key (same issuer
  and kid): stale_jwks to the newest addition at or before it, unpublished_key to the first
  addition after it (the publication it came too early for), retired_key to the newest removal
  at or before it (`_ATTRIBUTED`). No fixed window after the step: a failure counts wherever it
  falls, and a view's time filter narrows the events, never re-attributes them.
- **Time to recover** (`recovered_after_s`): from the step to the service's last failure it
  caused, never negative (a service that failed only before a publication recovered at it).
- **Cache age** (`_CACHE_AGE`): how old a service's key set was when it rejected a token
  (`service_jwks_fetched_at`), and the stale window, the longest time from a key's first
  publication to a stale_jwks failure on it (a lower bound on the cache lifetime).
"""

from __future__ import annotations

import hashlib
import weakref
from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline.causes import STEP_CAUSES, Cause
from pipeline.io.store_parts import raw_relation
from pipeline.queries import rolled
from pipeline.queries.base import NO_FILTERS, Filters, interval, marks, rotation_damage, rows
from pipeline.queries.coverage import Split, split

#: How the stale_jwks evidence of a service's cache lifetime is counted (a parameter, never typed into SQL).
_STALE = Cause.STALE_JWKS.value
_EARLY = Cause.UNPUBLISHED_KEY.value

#: Every rotation step (a key added or removed), as `_attributed` matches damage to them.
_STEPS = "SELECT DISTINCT issuer, kid, action, ts AS step_ts FROM key_rotations"

#: The cache-age columns (one definition); `?` twice for `_STALE`.
_CACHE_AGE = """count(service_jwks_fetched_at) AS events_with_fetch_time,
                   median(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_median_s,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_max_s,
                   count(*) FILTER (WHERE cause = ?) AS stale_jwks,
                   max(epoch(ts) - epoch(key_first_seen)) FILTER (WHERE cause = ?) AS stale_window_s"""


def _attributed(
    filters: Filters,
    s: Split | None = None,
    after: datetime | None = None,
    near: list[tuple[datetime, datetime]] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[str, list[Any]]:
    """SQL (a WITH clause): `steps`, and `attributed`, every rotation-damage event in the filter with its step.

    Columns of `attributed`: event_id, ts, service, cause, issuer, kid, action, step_ts, and `w`,
    `first_ts`, `last_ts`: a raw event weighs 1 (its own ts); with a split `s`, the hours before
    its boundary come from rollup rows (one per hour and key, weighing its events, attributed
    by its first event's time), so counts are `sum(w)`, times `min(first_ts)`/`max(last_ts)`.
    `after`: keep only the damage a step at or after it can own (`step_failure_counts`); `near`:
    only damage in one of these [from, to) ranges (each event is attributed among every step alike).
    `con`: with a split, the raw rows after its boundary are read from `damage_tail`'s table (made once
    per connection), not from every raw row of the open tail again, and an attribution asked again on the
    connection (neither `after` nor `near`) reads the rows of its first ask (`_shared`).
    """
    damage, damage_params = rotation_damage()
    added = STEP_CAUSES["added"]
    if after is not None:
        # stale_jwks / retired_key belong to the key's step at or before them (so from `after` on), unless the key
        # has none of that action before them (then the next one); unpublished_key to the next addition
        first = (f"(SELECT min(k.ts) FROM key_rotations k WHERE k.issuer = §.issuer AND k.kid = §.kid "
                 f"AND k.action = CASE WHEN §.cause IN ({marks(added)}) THEN 'added' ELSE 'removed' END)")
        damage = f"{damage} AND (ts >= ? OR cause = ? OR ts < {first})"
        damage_params = [*damage_params, after, _EARLY, *added]
    if near:
        damage = f"{damage} AND ({' OR '.join('(ts >= ? AND ts < ?)' for _ in near)})"
        damage_params = [*damage_params, *(edge for span in near for edge in span)]
    where, where_params = filters.where()
    # the step series: damage inside a window already attributed on this connection is read from its table
    known = _covering(con, s, filters) if near and s is not None and con is not None else None
    if known is not None:
        where, where_params = f"{where} AND NOT (ts >= ? AND ts < ?)", [*where_params, known[1], known[2]]
    action = f"CASE WHEN cause IN ({marks(added)}) THEN 'added' ELSE 'removed' END AS action"
    ends_before = s is not None and filters.until is not None and filters.until <= s.boundary
    tail = damage_tail(con, s.boundary) if s is not None and con is not None and not ends_before else None
    # the raw rows: the open tail's table, else only the day folders the window reaches (the view would read every
    # raw day's footers: a third of a second on 30 full-rate days, for a week that may have no raw row at all)
    raw, alias = (tail, tail) if tail is not None else (_raw_rows(con, filters, s), "classifications")
    source = f"""SELECT event_id, NULL::TIMESTAMPTZ AS hour, NULL::BIGINT AS row_no, client_id, confidence,
                       ts, ts AS first_ts, ts AS last_ts,
                       1::BIGINT AS w, service, cause, issuer, kid,
                       {action}
                FROM {raw} WHERE {damage.replace("§", alias)} AND {where}"""
    params: list[Any] = [*added, *damage_params, *where_params]
    one_row = "d.event_id"  # what identifies one damage row (a rollup row has no event_id: its keys and hour)
    if s is not None:
        # a rollup row has no event_id: a number of its own (rows of one key from two writers are two rows)
        one_row = "d.event_id, d.hour, d.row_no"
        hourly, hourly_params = s.filters.where(hourly=True)
        if known is not None:
            hourly, hourly_params = f"{hourly} AND NOT (hour >= ? AND hour < ?)", [*hourly_params, known[1], known[2]]
        # a rollup row has no attacks list (its `attack`) and no ts (its first event's time stands for it)
        rolled_damage = (damage.replace("len(attacks) = 0", "attack IS NULL").replace("(ts >= ?", "(first_ts >= ?")
                         .replace("AND ts < ?)", "AND first_ts < ?)").replace("OR ts < (", "OR first_ts < (")
                         .replace("§", "classifications_hourly"))
        source = f"""SELECT NULL AS event_id, hour, row_number() OVER () AS row_no, client_id, confidence,
                       first_ts AS ts, first_ts, last_ts,
                       events AS w, service, cause, issuer, kid, {action}
                FROM {s.hourly}
                WHERE hour < ? AND events > 0 AND {rolled_damage} AND {hourly}
                UNION ALL {source} AND ts >= ?"""
        params = [*added, s.boundary, *damage_params, *hourly_params, *params, s.boundary]
    sql = _ranked(source, one_row, "fresh" if known is not None else "attributed")
    params = [*params, _EARLY]
    if known is not None and near:  # the rows of the known window the series' own query would have read
        spans = " OR ".join("(ts >= ? AND ts < ?)" for _ in near)
        sql += f""", attributed AS (
            SELECT * FROM fresh UNION ALL
            SELECT * FROM {known[3]} WHERE ({spans})
              AND CASE WHEN hour IS NULL THEN ts >= ? AND ts < ? ELSE hour >= ? AND hour < ? END)"""
        params += [*(edge for span in near for edge in span), *(2 * [filters.since, filters.until])]
    asked_again = after is None and not near  # the step series and the step counts are asked once each
    if s is not None and con is not None and asked_again and (shared := _shared(con, sql, params, s, filters)):
        return shared
    return sql, params


def _ranked(source: str, one_row: str, name: str) -> str:
    """`_attributed`'s WITH clause over its damage rows `source` (one `?`: `_EARLY`, after the source's own).

    A damage row with one step of its key and action is that step's; only the others are ranked (the ranking
    sorts every row it sees: most of the attribution's time when it saw them all). `one_row`: what identifies
    one damage row (a rollup row has no event_id: its hour and a row number). `name`: the CTE of the attributed
    rows (their columns: `_attributed`'s and `hour`, the rollup row's, NULL for a raw row)."""
    return f"""WITH steps AS ({_STEPS}),
            damage AS ({source}),
            candidates AS (
                SELECT d.event_id, d.hour, d.row_no, d.ts, d.first_ts, d.last_ts, d.w, d.service, d.cause, d.issuer,
                       d.kid, d.action, s.step_ts, s.n
                FROM damage d JOIN (SELECT *, count(*) OVER (PARTITION BY issuer, kid, action) AS n FROM steps) s
                  ON s.issuer = d.issuer AND s.kid = d.kid AND s.action = d.action
            ),
            {name} AS (
                SELECT * EXCLUDE (row_no, n) FROM candidates WHERE n = 1
                UNION ALL
                SELECT * EXCLUDE (row_no, n) FROM candidates d WHERE n > 1
                QUALIFY row_number() OVER (
                    PARTITION BY {one_row}
                    ORDER BY ((d.cause = ?) <> (d.step_ts > d.ts)), abs(epoch(d.step_ts) - epoch(d.ts))
                ) = 1
            )"""


def _raw_rows(con: duckdb.DuckDBPyConnection | None, filters: Filters, s: Split | None) -> str:
    """The FROM item (named `classifications`) of the raw rows `_attributed` reads without a tail table: the split's
    (its boundary's day on), or the filter's window's day folders (`raw_relation`)."""
    if s is not None:
        return s.raw
    return "classifications" if con is None else raw_relation(con, filters.since, filters.until)


def _shared(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], s: Split, filters: Filters
            ) -> tuple[str, list[Any]] | None:
    """`_attributed`'s clause reading a temp table of its `attributed` rows, made at the connection's first ask of
    the same attribution (SQL and parameters): the report asks `rotation_effects`, `rotation_impact` and
    `issuer_faults` of one week, and the attribution (a window over every damage row) is most of each; its
    step series reads the week's part of its windows from it too (`_covering`). None when the connection
    cannot hold one (then the query attributes, as before)."""
    key = hashlib.sha256(repr((sql, params)).encode()).hexdigest()[:16]
    table = rolled.temp_table(con, f"attributed_{key}", f"{sql} SELECT * FROM attributed", params)
    if table is None:
        return None
    if filters.since is not None and filters.until is not None and filters == Filters(filters.since, filters.until):
        known = _KNOWN.setdefault(con, [])
        if (entry := (s.boundary, filters.since, filters.until, table)) not in known:
            known.append(entry)
    return f"WITH steps AS ({_STEPS}), attributed AS (SELECT * FROM {table})", []


#: A connection's shared attributions of time-only windows: (split boundary, since, until, table).
_KNOWN: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, list[tuple[datetime, datetime, datetime, str]]] = (
    weakref.WeakKeyDictionary())


def _covering(con: duckdb.DuckDBPyConnection, s: Split, filters: Filters
              ) -> tuple[datetime, datetime, datetime, str] | None:
    """A shared attribution of this connection whose damage `filters` (a time-only window) can take from it: the
    same split boundary, so its rows are those the window's own query reads in the shared window."""
    if filters.since is None or filters.until is None or filters != Filters(filters.since, filters.until):
        return None
    return next((k for k in _KNOWN.get(con, []) if k[0] == s.boundary), None)


def damage_tail(con: duckdb.DuckDBPyConnection, boundary: datetime) -> str | None:
    """A temp table of the rotation damage among the raw rows from `boundary` on (the open tail; the columns
    `_attributed` reads), made once per connection: the report attributes it four times. None when the
    connection cannot hold one (then the raw rows, as before)."""
    damage, params = rotation_damage()
    return rolled.temp_table(con, f"damage_tail_{int(boundary.timestamp())}",
                             "SELECT event_id, client_id, confidence, ts, service, cause, issuer, kid, attacks "
                             f"FROM {raw_relation(con, boundary, None)} WHERE ts >= ? AND {damage}",
                             [boundary, *params])


def rotation_damage_count(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> int:
    """How many events in the filter a key rotation caused (DESIGN.md "Rotation damage")."""
    if (s := split(con, filters)) is not None:
        return rolled.rotation_damage_count(con, s)
    damage, params = rotation_damage()
    where, where_params = filters.where()
    row = con.execute(f"SELECT count(*) FROM classifications WHERE {damage} AND {where}", [*params, *where_params])
    found = row.fetchone()
    return int(found[0]) if found else 0


def rotations(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Key added / removed events per issuer, in time order."""
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if filters.since is not None:
        clauses.append("ts >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("ts < ?")
        params.append(filters.until)
    if filters.issuers:
        clauses.append(f"issuer IN ({marks(filters.issuers)})")
        params.extend(filters.issuers)
    return rows(
        con,
        f"SELECT issuer, kid, kty, action, ts FROM key_rotations WHERE {' AND '.join(clauses)} ORDER BY ts, issuer",
        params,
    )


def rotation_effects(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Each rotation step with the failures it caused among the filter's events, per service and cause.

    A step is listed when it lies in the filter's window (or there is no window) or caused
    failures in it; a step without failures has one row with `service` and `cause` NULL and
    0 failures. Rows: issuer, kid, action, step_ts, service, cause, failures, first_failure,
    last_failure, in time order of the steps, most failures first.
    """
    attributed, params = _attributed(filters, split(con, filters), con=con)
    step_where, step_params = "TRUE", list[Any]()
    for clause, value in (("step_ts >= ?", filters.since), ("step_ts < ?", filters.until)):
        if value is not None:
            step_where += f" AND {clause}"
            step_params.append(value)
    if filters.issuers:
        step_where += f" AND issuer IN ({marks(filters.issuers)})"
        step_params.extend(filters.issuers)
    return rows(
        con,
        f"""{attributed},
            hits AS (
                SELECT issuer, kid, action, step_ts, service, cause,
                       sum(w)::BIGINT AS failures, min(first_ts) AS first_failure, max(last_ts) AS last_failure
                FROM attributed GROUP BY ALL
            ),
            listed AS (
                SELECT issuer, kid, action, step_ts FROM steps WHERE {step_where}
                UNION SELECT issuer, kid, action, step_ts FROM hits
            )
            SELECT l.issuer, l.kid, l.action, l.step_ts, h.service, h.cause,
                   coalesce(h.failures, 0) AS failures, h.first_failure, h.last_failure
            FROM listed l LEFT JOIN hits h
              ON h.issuer = l.issuer AND h.kid IS NOT DISTINCT FROM l.kid AND h.action = l.action
             AND h.step_ts = l.step_ts
            ORDER BY l.step_ts, l.issuer, l.action, failures DESC, h.service, h.cause""",
        [*params, *step_params],
    )


def rotation_impact(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """For each rotation step, the failures it caused per service among the filter's events.

    One row per step and affected service: `failures`, `causes` (sorted list) and `by_cause`
    (cause → failures), `first_failure`, `last_failure`, `recovered_after_s`, the time to
    recover (from the step to the last failure, never negative), and `fault`, whose doing
    most of them are: 'issuer' when the issuer's faults (unpublished_key: signed before
    publishing; retired_key: removed while its tokens were valid) are at least half, else
    'service cache' (stale_jwks), with ', issuer' when that step's key was also signed before
    it was published (no cache could have kept up at first).
    """
    attributed, params = _attributed(filters, split(con, filters), con=con)
    return rows(
        con,
        f"""{attributed},
            per_cause AS (
                SELECT issuer, kid, action, step_ts, service, cause, sum(w)::BIGINT AS n, min(first_ts) AS first_ts,
                       max(last_ts) AS last_ts
                FROM attributed GROUP BY ALL
            )
            SELECT issuer, kid, action, step_ts, service, sum(n)::BIGINT AS failures,
                   list(cause ORDER BY cause) AS causes, map(list(cause ORDER BY cause), list(n ORDER BY cause))
                       AS by_cause,
                   min(first_ts) AS first_failure, max(last_ts) AS last_failure,
                   greatest(0, epoch(max(last_ts)) - epoch(step_ts)) AS recovered_after_s,
                   CASE WHEN 2 * coalesce(sum(n) FILTER (WHERE cause = ?), 0) <= sum(n) THEN 'issuer'
                        WHEN bool_or(bool_or(cause = ?)) OVER (PARTITION BY issuer, kid, action, step_ts)
                            THEN 'service cache, issuer'
                        ELSE 'service cache' END AS fault
            FROM per_cause GROUP BY issuer, kid, action, step_ts, service
            ORDER BY step_ts, issuer, failures DESC, service""",
        [*params, _STALE, _EARLY],
    )


def rotation_services(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """For one rotation step (a row of `rotations`), each service seen in `[since, until)`.

    `failures`, `causes`, `first_failure`, `last_failure`, `recovered_after_s`: the events of
    the window the step caused (as `rotation_impact` attributes them); `issuer_events` the
    service's events with the step's issuer or key (a service with those and no failures was
    never affected); `cache_age_*` how old the service's key set was when it rejected tokens
    (from `service_jwks_fetched_at`); `stale_window_s` the time from the key's publication to
    the service's last stale_jwks failure on it, a lower bound on its cache lifetime.
    """
    window = Filters(since=since, until=until)
    attributed, params = _attributed(window, split(con, window, fine=True), con=con)
    where, where_params = window.where()
    return rows(
        con,
        f"""{attributed},
            mine AS (
                SELECT service, sum(w)::BIGINT AS failures, list_distinct(list(cause ORDER BY cause)) AS causes,
                       min(first_ts) AS first_failure, max(last_ts) AS last_failure
                FROM attributed WHERE issuer = ? AND kid IS NOT DISTINCT FROM ? AND action = ? AND step_ts = ?
                GROUP BY service
            ),
            seen AS (
                SELECT service,
                       count(*) FILTER (WHERE issuer = ? OR kid = ?) AS issuer_events,
                       median(epoch(ts) - epoch(service_jwks_fetched_at)) AS cache_age_median_s,
                       max(epoch(ts) - epoch(service_jwks_fetched_at)) AS cache_age_max_s,
                       max(epoch(ts) - epoch(key_first_seen)) FILTER (WHERE kid = ? AND cause = ?) AS stale_window_s
                FROM classifications WHERE {where} GROUP BY service
            )
            SELECT s.service, s.issuer_events, coalesce(m.failures, 0) AS failures, m.causes,
                   m.first_failure, m.last_failure,
                   greatest(0, epoch(m.last_failure) - epoch(?::TIMESTAMPTZ)) AS recovered_after_s,
                   s.cache_age_median_s, s.cache_age_max_s, s.stale_window_s
            FROM seen s LEFT JOIN mine m USING (service)
            WHERE s.issuer_events > 0 OR m.failures > 0
            ORDER BY failures DESC, s.service""",
        [
            *params,
            step["issuer"], step["kid"], step["action"], step["ts"],
            step["issuer"], step["kid"], step["kid"], _STALE,
            *where_params,
            step["ts"],
        ],
    )  # fmt: skip


def _one_step(step: dict[str, Any]) -> tuple[str, list[Any]]:
    return "issuer = ? AND kid IS NOT DISTINCT FROM ? AND action = ? AND step_ts = ?", [
        step["issuer"], step["kid"], step["action"], step["ts"],
    ]  # fmt: skip


def step_failures_over_time(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime, bucket: str = "15 minutes"
) -> list[dict[str, Any]]:
    """The failures one rotation step caused (as `rotation_impact` attributes them), per time bucket and service."""
    window = Filters(since=since, until=until)
    attributed, params = _attributed(window, split(con, window, fine=True), con=con)
    which, which_params = _one_step(step)
    return rows(
        con,
        f"""{attributed}
            SELECT time_bucket(INTERVAL '{interval(bucket)}', ts) AS bucket, service, sum(w)::BIGINT AS events
            FROM attributed WHERE {which}
            GROUP BY bucket, service ORDER BY bucket, service""",
        [*params, *which_params],
    )


def rotation_step_series(
    con: duckdb.DuckDBPyConnection,
    step: dict[str, Any],
    since: datetime,
    until: datetime,
    bucket: timedelta,
    services: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """The failures one rotation step caused (as `rotation_impact` attributes them) per `bucket` from `since`.

    `step` needs issuer, kid, action and ts. `bucket` is the 0-based bucket number; buckets
    without failures are absent.
    """
    window = Filters(since=since, until=until, services=services)
    attributed, params = _attributed(window, split(con, window, fine=True), con=con)
    which, which_params = _one_step(step)
    return rows(
        con,
        f"""{attributed}
            SELECT CAST(floor((epoch(ts) - ?) / ?) AS INTEGER) AS bucket, sum(w)::BIGINT AS failures
            FROM attributed WHERE {which}
            GROUP BY bucket ORDER BY bucket""",
        [*params, since.timestamp(), bucket.total_seconds(), *which_params],
    )


def rotation_step_series_many(
    con: duckdb.DuckDBPyConnection,
    steps: list[dict[str, Any]],
    before: timedelta,
    after: timedelta,
    bucket: timedelta,
    hourly: bool = False,
) -> dict[tuple[str, str | None, str, datetime], dict[int, int]]:
    """`rotation_step_series` of many steps in one query, each from `before` its time to `after` it.

    Keyed by (issuer, kid, action, step_ts) → {bucket: failures}; the same numbers as one call
    per step (a step's failures are attributed the same whatever the window), read once.
    `hourly`: read rollups for every rolled hour, not only where raw rows expired (a week of raw
    rows is too many at scale): a rolled hour's failures fall in the bucket of its first failure.
    """
    if not steps:
        return {}
    window = Filters(since=min(s["ts"] for s in steps) - before, until=max(s["ts"] for s in steps) + after)
    attributed, params = _attributed(window, split(con, window, fine=not hourly), near=_spans(steps, before, after),
                                     con=con)
    found = con.execute(
        f"""{attributed}
            SELECT issuer, kid, action, step_ts,
                   CAST(floor((epoch(ts) - epoch(step_ts) + ?) / ?) AS INTEGER) AS bucket, sum(w)::BIGINT AS failures
            FROM attributed WHERE epoch(ts) >= epoch(step_ts) - ? AND epoch(ts) < epoch(step_ts) + ?
            GROUP BY ALL""",
        [*params, before.total_seconds(), bucket.total_seconds(), before.total_seconds(), after.total_seconds()],
    ).fetchall()
    series: dict[tuple[str, str | None, str, datetime], dict[int, int]] = {}
    for issuer, kid, action, step_ts, n, failures in found:
        series.setdefault((issuer, kid, action, step_ts), {})[n] = int(failures)
    return series


def _spans(steps: list[dict[str, Any]], before: timedelta, after: timedelta) -> list[tuple[datetime, datetime]]:
    """The steps' [ts - before, ts + after) ranges, overlapping ones merged (steps weeks apart: no weeks between)."""
    spans: list[tuple[datetime, datetime]] = []
    for start, end in sorted((s["ts"] - before, s["ts"] + after) for s in steps):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def step_failure_counts(
    con: duckdb.DuckDBPyConnection, since: datetime | None = None
) -> dict[tuple[str, str | None, str, datetime], int]:
    """The failures each rotation step from `since` on caused, whenever they happened.

    Keyed by (issuer, kid, action, step_ts); steps without failures are absent. Only damage a
    step from `since` on can own is read: stale_jwks and retired_key belong to a step at or
    before them (so from `since` on), unpublished_key to the next addition (any time before).
    """
    attributed, params = _attributed(NO_FILTERS, split(con, NO_FILTERS), after=since, con=con)
    clause = "" if since is None else "WHERE step_ts >= ?"
    found = con.execute(
        f"{attributed} SELECT issuer, kid, action, step_ts, sum(w)::BIGINT FROM attributed {clause} GROUP BY ALL",
        [*params, *([] if since is None else [since])],
    ).fetchall()
    return {(issuer, kid, action, ts): int(n) for issuer, kid, action, ts, n in found}


def issuer_faults(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Rotation faults that are the issuer's, not the services': one row per key and fault.

    `signed_before_published`: tokens verified with a key before the issuer published it
    (unpublished_key); `removed_in_use`: the issuer removed a key while tokens signed with it
    were still valid (retired_key); `flapping`: a key that left the JWKS and came back (more
    than one publication interval). `failures` counts the filter's rotation damage of that
    kind on the key (0 for flapping); `lead_s` is, for signing before publishing, how long
    before the publication the first such failure came.
    """
    attributed, params = _attributed(filters, split(con, filters), con=con)
    window_where, window_params = "TRUE", []
    if filters.since is not None:
        window_where += " AND (removed_at IS NULL OR removed_at >= ?)"
        window_params.append(filters.since)
    if filters.until is not None:
        window_where += " AND first_seen < ?"
        window_params.append(filters.until)
    return rows(
        con,
        f"""{attributed},
            faults AS (
                SELECT issuer, kid,
                       CASE WHEN cause = ? THEN 'signed_before_published' ELSE 'removed_in_use' END AS fault,
                       max(step_ts) AS step_ts, sum(w)::BIGINT AS failures,
                       list_distinct(list(service ORDER BY service)) AS services,
                       min(first_ts) AS first_failure, max(last_ts) AS last_failure,
                       CASE WHEN cause = ? THEN epoch(max(step_ts)) - epoch(min(first_ts)) END AS lead_s
                FROM attributed WHERE cause <> ? GROUP BY issuer, kid, fault, cause
            ),
            flaps AS (
                SELECT issuer, kid, 'flapping' AS fault, max(first_seen) AS step_ts, 0 AS failures,
                       []::VARCHAR[] AS services, NULL::TIMESTAMPTZ AS first_failure,
                       NULL::TIMESTAMPTZ AS last_failure, NULL::DOUBLE AS lead_s
                FROM jwks_keys WHERE {window_where}
                GROUP BY issuer, kid, thumbprint HAVING count(*) > 1
            )
            SELECT * FROM faults UNION ALL SELECT * FROM flaps
            ORDER BY step_ts, issuer, fault""",
        [*params, _EARLY, _EARLY, _STALE, *window_params],
    )


def cache_age_by_service(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Each service's JWKS cache age as the events show it (`_CACHE_AGE`, the one definition).

    `reported_age_*`: how old the service's key set was when it rejected a token (from
    `service_jwks_fetched_at`); `stale_window_s`: the longest time from a key's first
    publication to a stale_jwks failure on it, a lower bound on the service's cache lifetime.
    Over rollups (`rolled.cache_ages`) the median is its histogram bucket's upper edge.
    """
    if (s := split(con, filters)) is not None:
        return rolled.cache_ages(con, s, _STALE, by_issuer=False)
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT service, count(*) AS events, {_CACHE_AGE}
            FROM classifications WHERE {where}
            GROUP BY service ORDER BY stale_jwks DESC, service""",
        [_STALE, _STALE, *params],
    )


def cache_lifetime_by_service_issuer(
    con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS
) -> list[dict[str, Any]]:
    """`cache_age_by_service` split by issuer (events whose key verified with one)."""
    if (s := split(con, filters)) is not None:
        return rolled.cache_ages(con, s, _STALE, by_issuer=True)
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT service, issuer, count(*) AS events, {_CACHE_AGE}
            FROM classifications WHERE {where} AND issuer IS NOT NULL
            GROUP BY service, issuer ORDER BY service, issuer""",
        [_STALE, _STALE, *params],
    )
