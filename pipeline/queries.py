"""The questions the dashboard, the weekly report, `triage` and the demo ask of the store.

One module, so every view counts the same way. Each function takes a DuckDB connection
(read-only is enough) and returns plain rows; aggregation happens in DuckDB, never in
Python, so a 10M-row store stays fast. Time windows are half-open: `since <= ts < until`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

#: Causes a key rotation produces.
ROTATION_CAUSES = ("stale_jwks", "unpublished_key", "retired_key", "unknown_kid")


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters every view shares; None means "any"."""

    since: datetime | None = None
    until: datetime | None = None
    services: tuple[str, ...] | None = None
    issuers: tuple[str, ...] | None = None
    causes: tuple[str, ...] | None = None

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        """A SQL condition and its parameters."""
        p = f"{alias}." if alias else ""
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if self.since is not None:
            clauses.append(f"{p}ts >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{p}ts < ?")
            params.append(self.until)
        for column, values in (("service", self.services), ("issuer", self.issuers), ("cause", self.causes)):
            if values:
                clauses.append(f"{p}{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        return " AND ".join(clauses), params


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def time_range(con: duckdb.DuckDBPyConnection) -> tuple[datetime | None, datetime | None]:
    row = con.execute("SELECT min(ts), max(ts) FROM classifications").fetchone()
    return (row[0], row[1]) if row else (None, None)


def total_events(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> int:
    where, params = filters.where()
    row = con.execute(f"SELECT count(*) FROM classifications WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def cause_counts(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Events per cause, most first, with the share of all events in the filter."""
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT cause, count(*) AS events,
                   count(*) FILTER (WHERE confidence = 'verified') AS verified,
                   round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
            FROM classifications WHERE {where}
            GROUP BY cause ORDER BY events DESC, cause""",
        params,
    )


def failures_over_time(
    con: duckdb.DuckDBPyConnection, bucket: str = "1 hour", filters: Filters = Filters()
) -> list[dict[str, Any]]:
    """Events per time bucket and cause (for the stacked trend chart)."""
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT time_bucket(INTERVAL '{_interval(bucket)}', ts) AS bucket, cause, count(*) AS events
            FROM classifications WHERE {where}
            GROUP BY bucket, cause ORDER BY bucket, cause""",
        params,
    )


def _interval(bucket: str) -> str:
    allowed = {"1 minute", "5 minutes", "15 minutes", "1 hour", "6 hours", "1 day"}
    if bucket not in allowed:
        raise ValueError(f"bucket must be one of {sorted(allowed)}")
    return bucket


def rotations(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> list[dict[str, Any]]:
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
        clauses.append(f"issuer IN ({', '.join('?' for _ in filters.issuers)})")
        params.extend(filters.issuers)
    return _rows(
        con,
        f"SELECT issuer, kid, kty, action, ts FROM key_rotations WHERE {' AND '.join(clauses)} ORDER BY ts, issuer",
        params,
    )


def rotation_impact(con: duckdb.DuckDBPyConnection, window: timedelta = timedelta(hours=12)) -> list[dict[str, Any]]:
    """For each rotation step, the rotation-caused failures per service in the window after it.

    A failure belongs to a step when it concerns that step's key (the kid in the token) and
    happened within `window` after it: stale_jwks / unpublished_key after a key was added,
    retired_key after it was removed. `recovered_after` is the time from the step to the
    service's last such failure in the window.
    """
    return _rows(
        con,
        """WITH steps AS (SELECT issuer, kid, action, ts AS step_ts FROM key_rotations),
                hits AS (
                    SELECT s.issuer, s.kid, s.action, s.step_ts, c.service, c.cause, c.ts
                    FROM steps s JOIN classifications c
                      ON c.kid = s.kid AND c.ts >= s.step_ts - INTERVAL 1 DAY AND c.ts < s.step_ts + ?
                     AND ((s.action = 'added' AND c.cause IN ('stale_jwks', 'unpublished_key'))
                       OR (s.action = 'removed' AND c.cause = 'retired_key'))
                )
           SELECT issuer, kid, action, step_ts, service,
                  count(*) AS failures,
                  list_distinct(list(cause ORDER BY cause)) AS causes,
                  min(ts) AS first_failure, max(ts) AS last_failure,
                  max(ts) - step_ts AS recovered_after
           FROM hits GROUP BY issuer, kid, action, step_ts, service ORDER BY step_ts, issuer, failures DESC""",
        [window],
    )


def cache_age_by_service(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Each service's JWKS cache age as the events show it.

    `reported_age_*`: how old the service's key set was when it rejected a token (from
    `service_jwks_fetched_at`); `stale_window`: for services that do not report it, the time
    from a key's first publication to the last stale_jwks failure on that key, a lower bound
    on the service's cache lifetime.
    """
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT service,
                   count(*) AS events,
                   count(service_jwks_fetched_at) AS events_with_fetch_time,
                   median(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_median_s,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_max_s,
                   count(*) FILTER (WHERE cause = 'stale_jwks') AS stale_jwks,
                   max(epoch(ts) - epoch(key_first_seen)) FILTER (WHERE cause = 'stale_jwks') AS stale_window_s
            FROM classifications WHERE {where}
            GROUP BY service ORDER BY stale_jwks DESC, service""",
        params,
    )


#: Columns that views may rank by (they are put into SQL, so only these).
RANKABLE = frozenset({"service", "client_id", "kid", "issuer", "alg"})


def _check_rankable(column: str) -> None:
    if column not in RANKABLE:
        raise ValueError(f"cannot rank by {column!r}; choose from {sorted(RANKABLE)}")


def top(
    con: duckdb.DuckDBPyConnection, column: str, filters: Filters = Filters(), limit: int = 10
) -> list[dict[str, Any]]:
    """The top values of `column` (service, client_id, kid, issuer, alg) by events, with their main cause."""
    _check_rankable(column)
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT {column} AS value, count(*) AS events, mode(cause) AS main_cause,
                   count(DISTINCT cause) AS causes
            FROM classifications WHERE {where} AND {column} IS NOT NULL
            GROUP BY {column} ORDER BY events DESC, value LIMIT ?""",
        [*params, limit],
    )


def attacks(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Each attack label: how often, against which services, from which clients, when."""
    where, params = filters.where("c")
    return _rows(
        con,
        f"""SELECT attack, count(*) AS events,
                   list_distinct(list(c.service ORDER BY c.service)) AS services,
                   count(DISTINCT c.client_id) AS clients,
                   min(c.ts) AS first_seen, max(c.ts) AS last_seen
            FROM classifications c, unnest(c.attacks) AS a(attack)
            WHERE {where}
            GROUP BY attack ORDER BY events DESC, attack""",
        params,
    )


def events(con: duckdb.DuckDBPyConnection, filters: Filters = Filters(), limit: int = 200) -> list[dict[str, Any]]:
    """The most recent events with their evidence (never a token: only its fingerprint)."""
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT ts, event_id, service, cause, confidence, attacks, issuer, kid, alg, client_id,
                   skew_seconds, detail, left(token_sha256, 12) AS token_fp
            FROM classifications WHERE {where} ORDER BY ts DESC, event_id LIMIT ?""",
        [*params, limit],
    )


def dead_letter_counts(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return _rows(
        con,
        """SELECT kind, regexp_replace(reason, '[0-9]+', 'N', 'g') AS reason, count(*) AS records
           FROM dead_letters GROUP BY ALL ORDER BY records DESC, kind LIMIT 20""",
    )


# -- added for the dashboard ----------------------------------------------------------------

#: The causes a rotation step produces on the step's own key, by the step's action.
STEP_CAUSES: dict[str, tuple[str, ...]] = {"added": ("stale_jwks", "unpublished_key"), "removed": ("retired_key",)}


def store_summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Events, the first and last event time, and the last write: one scan for a page header."""
    return _rows(
        con,
        """SELECT count(*) AS events, min(ts) AS first_ts, max(ts) AS last_ts,
                  max(classified_at) AS last_classified_at
           FROM classifications""",
    )[0]


def distinct_values(con: duckdb.DuckDBPyConnection, column: str) -> list[str]:
    """The values a filter can offer for `column` (service, issuer, cause, client_id, kid), sorted."""
    if column not in {"service", "issuer", "cause", "client_id", "kid"}:
        raise ValueError(f"cannot list values of {column!r}")
    rows = con.execute(
        f"SELECT DISTINCT {column} FROM classifications WHERE {column} IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


def cause_counts_vs_previous(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per cause: events in the filter's window and in the window of the same length just before it.

    The filter must have both `since` and `until`. One scan covers both windows.
    """
    if filters.since is None or filters.until is None:
        raise ValueError("cause_counts_vs_previous needs a window with since and until")
    since = filters.since
    both = Filters(
        since=since - (filters.until - since),
        until=filters.until,
        services=filters.services,
        issuers=filters.issuers,
        causes=filters.causes,
    )
    where, params = both.where()
    return _rows(
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


def rotation_services(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """For one rotation step (a row of `rotations`), each service seen in `[since, until)`.

    `failures` are the events the step caused (its key in the token, a cause of `STEP_CAUSES`);
    `issuer_events` the service's events with the step's issuer or key (a service with those
    and no failures was never affected); `cache_age_*` how old the service's key set was when
    it rejected tokens (from `service_jwks_fetched_at`); `stale_window_s` the time from the
    step to the service's last stale_jwks failure on the key, a lower bound on its cache lifetime.
    """
    causes = STEP_CAUSES[step["action"]]
    marks = ", ".join("?" for _ in causes)
    hit = f"kid = ? AND cause IN ({marks})"
    hit_params = [step["kid"], *causes]
    return _rows(
        con,
        f"""SELECT service,
                   count(*) FILTER (WHERE issuer = ? OR kid = ?) AS issuer_events,
                   count(*) FILTER (WHERE {hit}) AS failures,
                   list_distinct(list(cause ORDER BY cause) FILTER (WHERE {hit})) AS causes,
                   min(ts) FILTER (WHERE {hit}) AS first_failure,
                   max(ts) FILTER (WHERE {hit}) AS last_failure,
                   median(epoch(ts) - epoch(service_jwks_fetched_at)) AS cache_age_median_s,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS cache_age_max_s,
                   epoch(max(ts) FILTER (WHERE kid = ? AND cause = 'stale_jwks')) - epoch(?::TIMESTAMPTZ)
                       AS stale_window_s
            FROM classifications WHERE ts >= ? AND ts < ?
            GROUP BY service
            HAVING issuer_events > 0 OR failures > 0
            ORDER BY failures DESC, service""",
        [step["issuer"], step["kid"], *hit_params * 4, step["kid"], step["ts"], since, until],
    )


def step_failures_over_time(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime, bucket: str = "15 minutes"
) -> list[dict[str, Any]]:
    """The failures one rotation step caused, per time bucket and service."""
    causes = STEP_CAUSES[step["action"]]
    return _rows(
        con,
        f"""SELECT time_bucket(INTERVAL '{_interval(bucket)}', ts) AS bucket, service, count(*) AS events
            FROM classifications
            WHERE ts >= ? AND ts < ? AND kid = ? AND cause IN ({", ".join("?" for _ in causes)})
            GROUP BY bucket, service ORDER BY bucket, service""",
        [since, until, step["kid"], *causes],
    )


def key_usage(con: duckdb.DuckDBPyConnection, kid: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Rejected tokens signed with `kid` in `[since, until)`, per service (e.g. a retired key still in use)."""
    return _rows(
        con,
        """SELECT service, count(*) AS events, count(DISTINCT token_sha256) AS tokens,
                  count(DISTINCT client_id) AS clients, mode(cause) AS main_cause,
                  list_distinct(list(client_id ORDER BY client_id) FILTER (WHERE client_id IS NOT NULL))[1:5]
                      AS some_clients,
                  min(ts) AS first_seen, max(ts) AS last_seen
           FROM classifications WHERE kid = ? AND ts >= ? AND ts < ?
           GROUP BY service ORDER BY events DESC, service""",
        [kid, since, until],
    )


def same_window_by_day(
    con: duckdb.DuckDBPyConnection, until: datetime, length: timedelta, days: int, filters: Filters = Filters()
) -> list[dict[str, Any]]:
    """Events per cause in `[until - length, until)` (days_ago 0) and the same window on each of `days` past days.

    The filter's own `since`/`until` are ignored; its services, issuers and causes apply.
    """
    base = Filters(services=filters.services, issuers=filters.issuers, causes=filters.causes)
    where, params = base.where()
    parts, all_params = [], []
    for days_ago in range(days + 1):
        end = until - timedelta(days=days_ago)
        parts.append(
            f"SELECT {days_ago} AS days_ago, cause, count(*) AS events FROM classifications "
            f"WHERE ts >= ? AND ts < ? AND {where} GROUP BY cause"
        )
        all_params += [end - length, end, *params]
    return _rows(con, " UNION ALL ".join(parts) + " ORDER BY days_ago, events DESC, cause", all_params)


def top_by_cause(
    con: duckdb.DuckDBPyConnection, column: str, filters: Filters = Filters(), limit: int = 10
) -> list[dict[str, Any]]:
    """The top values of `column` (as `top`), each split by cause: value, cause, events, total."""
    _check_rankable(column)
    where, params = filters.where()
    return _rows(
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


def drill_down(
    con: duckdb.DuckDBPyConnection,
    filters: Filters = Filters(),
    client_ids: tuple[str, ...] = (),
    kids: tuple[str, ...] = (),
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The most recent events (as `events`), also narrowed to some clients and kids."""
    where, params = filters.where()
    for column, values in (("client_id", client_ids), ("kid", kids)):
        if values:
            where += f" AND {column} IN ({', '.join('?' for _ in values)})"
            params.extend(values)
    return _rows(
        con,
        f"""SELECT ts, event_id, service, cause, confidence, attacks, issuer, kid, alg, client_id,
                   skew_seconds, detail, left(token_sha256, 12) AS token_fp
            FROM classifications WHERE {where} ORDER BY ts DESC, event_id LIMIT ?""",
        [*params, limit],
    )


def event_evidence(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any] | None:
    """Everything stored about one event except its token (only the fingerprint's first 12 hex chars)."""
    rows = _rows(
        con,
        """SELECT event_id, ts, service, cause, confidence, findings, attacks, issuer, kid, alg, audience,
                  skew_seconds, detail, client_id, request_id, left(token_sha256, 12) AS token_fp,
                  token_header, token_claims, key_first_seen, service_jwks_fetched_at, reported_error
           FROM classifications WHERE event_id = ?""",
        [event_id],
    )
    return rows[0] if rows else None


def source_positions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Where the consumer stands on each source partition, and when it last wrote."""
    return _rows(
        con,
        """SELECT source, source_partition, next_offset, updated_at
           FROM source_positions ORDER BY source, source_partition""",
    )


# -- windows, sparklines, rotation effects and token history (triage, explain; for the dashboard and report too) --

#: Columns `window_buckets` can split by; "attack" unnests the attacks list.
_BUCKET_KEYS = {"cause", "service", "client_id", "kid", "issuer", "attack"}


def window_buckets(
    con: duckdb.DuckDBPyConnection,
    since: datetime,
    until: datetime,
    buckets: int = 12,
    by: str = "cause",
    filters: Filters = Filters(),
) -> list[dict[str, Any]]:
    """Events per (`by` value, bucket) over `since <= ts < until` cut into `buckets` equal buckets (sparklines).

    `bucket` is 0-based; buckets with no events are absent. `filters` adds services, issuers
    and causes; its own since/until are replaced by the window.
    """
    if by not in _BUCKET_KEYS:
        raise ValueError(f"cannot split by {by!r}")
    if until <= since or buckets < 1:
        raise ValueError("the window must be non-empty and have at least one bucket")
    window = Filters(since, until, filters.services, filters.issuers, filters.causes)
    width = (until - since).total_seconds() / buckets
    if by == "attack":
        where, params = window.where("c")
        source, key = "classifications c, unnest(c.attacks) AS a(attack)", "a.attack"
    else:
        where, params = window.where("c")
        source, key = "classifications c", f"c.{by}"
    return _rows(
        con,
        f"""SELECT {key} AS key,
                   least(CAST(floor((epoch(c.ts) - ?) / ?) AS INTEGER), ?) AS bucket,
                   count(*) AS events
            FROM {source} WHERE {where}
            GROUP BY ALL ORDER BY key, bucket""",
        [since.timestamp(), width, buckets - 1, *params],
    )


def first_event(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> datetime | None:
    """The time of the earliest event in the filter (when did it start?)."""
    where, params = filters.where()
    row = con.execute(f"SELECT min(ts) FROM classifications WHERE {where}", params).fetchone()
    return row[0] if row else None


def rotation_effects(
    con: duckdb.DuckDBPyConnection,
    since: datetime,
    until: datetime,
    near: timedelta = timedelta(hours=24),
    services: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Rotation steps in or near `[since, until)` and the failures each caused inside that window.

    A step is listed when it lies in the window, or within `near` of it and caused failures
    in the window. A failure belongs to a step as in `rotation_impact` (the token's kid and
    the verifying issuer are the step's; stale_jwks / unpublished_key for an added key, from
    a day before the step on; retired_key for a removed one). One row per step, service and
    cause; a step without failures in the window has one row with `service` and `cause` NULL
    and 0 failures.
    """
    service_clause = ""
    params: list[Any] = [since - near, until + near, since, until]
    if services:
        service_clause = f" AND c.service IN ({', '.join('?' for _ in services)})"
        params.extend(services)
    params.extend([since, until])
    return _rows(
        con,
        f"""WITH steps AS (
                SELECT DISTINCT issuer, kid, action, ts AS step_ts FROM key_rotations WHERE ts >= ? AND ts < ?
            ),
            hits AS (
                SELECT s.issuer, s.kid, s.action, s.step_ts, c.service, c.cause, c.ts
                FROM steps s JOIN classifications c
                  ON c.kid = s.kid AND c.issuer = s.issuer AND c.ts >= ? AND c.ts < ?
                 AND c.ts >= s.step_ts - INTERVAL 1 DAY
                 AND ((s.action = 'added' AND c.cause IN ('stale_jwks', 'unpublished_key'))
                   OR (s.action = 'removed' AND c.cause = 'retired_key')){service_clause}
            )
            SELECT s.issuer, s.kid, s.action, s.step_ts, h.service, h.cause,
                   count(h.ts) AS failures, min(h.ts) AS first_failure, max(h.ts) AS last_failure
            FROM steps s LEFT JOIN hits h
              ON h.issuer = s.issuer AND h.kid IS NOT DISTINCT FROM s.kid AND h.action = s.action
             AND h.step_ts = s.step_ts
            GROUP BY s.issuer, s.kid, s.action, s.step_ts, h.service, h.cause
            HAVING count(h.ts) > 0 OR (s.step_ts >= ? AND s.step_ts < ?)
            ORDER BY s.step_ts, s.issuer, failures DESC, h.service, h.cause""",
        params,
    )


def attack_clients(
    con: duckdb.DuckDBPyConnection, filters: Filters = Filters(), limit: int = 3
) -> list[dict[str, Any]]:
    """For each attack label, its top clients by events (client_id NULL counts as one client, shown as NULL)."""
    where, params = filters.where("c")
    return _rows(
        con,
        f"""SELECT attack, client_id, events FROM (
                SELECT attack, c.client_id, count(*) AS events,
                       row_number() OVER (PARTITION BY attack ORDER BY count(*) DESC, c.client_id) AS n
                FROM classifications c, unnest(c.attacks) AS a(attack)
                WHERE {where} GROUP BY attack, c.client_id
            ) WHERE n <= ? ORDER BY attack, events DESC, client_id""",
        [*params, limit],
    )


def token_history(con: duckdb.DuckDBPyConnection, token_sha256: str) -> list[dict[str, Any]]:
    """Every stored rejection of one token (by fingerprint), per service and cause: how often, first, last."""
    return _rows(
        con,
        """SELECT service, cause, count(*) AS events, min(ts) AS first_seen, max(ts) AS last_seen
           FROM classifications WHERE token_sha256 = ?
           GROUP BY service, cause ORDER BY events DESC, service, cause""",
        [token_sha256.lower()],
    )


def services_seen(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every service that has at least one event in the store."""
    return [row[0] for row in con.execute("SELECT DISTINCT service FROM classifications ORDER BY service").fetchall()]


# -- added for the weekly report (pipeline/report.py) ---------------------------------------


def _previous_window(filters: Filters) -> Filters:
    """The filter widened back by one window length (the window and the one just before it)."""
    if filters.since is None or filters.until is None:
        raise ValueError("a comparison with the previous window needs since and until")
    return Filters(
        since=filters.since - (filters.until - filters.since),
        until=filters.until,
        services=filters.services,
        issuers=filters.issuers,
        causes=filters.causes,
    )


def service_counts_vs_previous(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per service: events in the window and in the window of the same length before it, and its causes.

    `causes` is the window's events per cause, most first (a list of {cause, events}).
    """
    where, params = _previous_window(filters).where()
    return _rows(
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


def key_hygiene(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Each signing key published at some time in `[since, until)`, with its life and its use.

    From the key timeline: `first_seen` (with `initial` when it was there when history
    began, so its real age is longer), `removed_at` (of its last publication interval).
    From verified events whose token it signed (any time, not only the window): `first_use`
    and `last_use` (event times), `uses`, `uses_after_removal`, and `first_signed` /
    `last_signed` (the tokens' `iat`).
    """
    return _rows(
        con,
        """WITH keys AS (
                SELECT issuer, kid, thumbprint, any_value(kty) AS kty, any_value(crv) AS crv,
                       min(first_seen) AS first_seen, max(last_seen) AS last_seen,
                       arg_max_null(removed_at, interval_no) AS removed_at,
                       bool_or("initial") AS "initial", count(*) AS intervals
                FROM jwks_keys GROUP BY issuer, kid, thumbprint
            ),
            usage AS (
                SELECT k.issuer, k.thumbprint, min(c.ts) AS first_use, max(c.ts) AS last_use, count(*) AS uses,
                       count(*) FILTER (WHERE k.removed_at IS NOT NULL AND c.ts >= k.removed_at)
                           AS uses_after_removal,
                       to_timestamp(min(try_cast(c.token_claims->>'iat' AS DOUBLE))) AS first_signed,
                       -- a token claiming to be issued after it was rejected (clock trouble) says nothing here
                       to_timestamp(max(try_cast(c.token_claims->>'iat' AS DOUBLE))
                                    FILTER (WHERE try_cast(c.token_claims->>'iat' AS DOUBLE) <= epoch(c.ts)))
                           AS last_signed
                FROM keys k JOIN classifications c
                  ON c.key_thumbprint = k.thumbprint AND c.issuer = k.issuer AND c.confidence = 'verified'
                GROUP BY k.issuer, k.thumbprint
            )
            SELECT k.issuer, k.kid, k.thumbprint, k.kty, k.crv, k.first_seen, k.last_seen, k.removed_at,
                   k."initial", k.intervals, u.first_use, u.last_use, coalesce(u.uses, 0) AS uses,
                   coalesce(u.uses_after_removal, 0) AS uses_after_removal, u.first_signed, u.last_signed
            FROM keys k LEFT JOIN usage u USING (issuer, thumbprint)
            WHERE k.first_seen < ? AND (k.removed_at IS NULL OR k.removed_at >= ?)
            ORDER BY k.issuer, k.first_seen, k.kid""",
        [until, since],
    )


def token_lifetimes(
    con: duckdb.DuckDBPyConnection, filters: Filters = Filters(), max_seconds: float = 3600.0
) -> list[dict[str, Any]]:
    """Lifetimes (`exp - iat`) of the distinct verified tokens in the filter, per issuer and client.

    Only tokens whose signature verified (their claims are the issuer's, not an attacker's).
    `client` is the token's `azp`, else its `client_id` claim, else the event's client_id.
    `with_lifetime` counts the tokens that have both exp and iat; `over_policy` those living
    longer than `max_seconds`, and `events_over_policy` their events.
    """
    where, params = filters.where()
    return _rows(
        con,
        f"""WITH tokens AS (
                SELECT issuer,
                       coalesce(token_claims->>'azp', token_claims->>'client_id', client_id) AS client,
                       token_sha256,
                       any_value(try_cast(token_claims->>'exp' AS DOUBLE)
                                 - try_cast(token_claims->>'iat' AS DOUBLE)) AS lifetime_s,
                       count(*) AS events
                FROM classifications
                WHERE {where} AND issuer IS NOT NULL AND key_thumbprint IS NOT NULL AND token_sha256 IS NOT NULL
                GROUP BY issuer, client, token_sha256
            )
            SELECT issuer, client, count(*) AS tokens, sum(events)::BIGINT AS events,
                   count(lifetime_s) AS with_lifetime,
                   count(*) FILTER (WHERE lifetime_s > ?) AS over_policy,
                   coalesce(sum(events) FILTER (WHERE lifetime_s > ?), 0)::BIGINT AS events_over_policy,
                   max(lifetime_s) AS max_lifetime_s, median(lifetime_s) AS median_lifetime_s
            FROM tokens GROUP BY issuer, client
            ORDER BY over_policy DESC, issuer, max_lifetime_s DESC NULLS LAST, client""",
        [*params, max_seconds, max_seconds],
    )


def algorithms_in_use(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Events per header `alg` (as the token states it): tokens, how many verified, issuers, main cause, attacks.

    Events without a readable alg (no token, malformed) come last with `alg` NULL.
    """
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT alg, count(*) AS events, count(DISTINCT token_sha256) AS tokens,
                   count(*) FILTER (WHERE key_thumbprint IS NOT NULL) AS verified,
                   list_sort(list_distinct(list(issuer) FILTER (WHERE issuer IS NOT NULL))) AS issuers,
                   mode(cause) AS main_cause,
                   count(*) FILTER (WHERE len(attacks) > 0) AS attack_events
            FROM classifications WHERE {where}
            GROUP BY alg ORDER BY alg IS NULL, events DESC, alg""",
        params,
    )


def cache_lifetime_by_service_issuer(
    con: duckdb.DuckDBPyConnection, filters: Filters = Filters()
) -> list[dict[str, Any]]:
    """Evidence of each service's JWKS cache lifetime per issuer (as `cache_age_by_service`, split by issuer).

    `reported_age_max_s` from `service_jwks_fetched_at`; `stale_window_s` the longest time
    from a key's first publication to a stale_jwks failure on it (a lower bound).
    """
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT service, issuer, count(*) AS events,
                   count(service_jwks_fetched_at) AS with_fetch_time,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_max_s,
                   count(*) FILTER (WHERE cause = 'stale_jwks') AS stale_jwks,
                   max(epoch(ts) - epoch(key_first_seen)) FILTER (WHERE cause = 'stale_jwks') AS stale_window_s
            FROM classifications WHERE {where} AND issuer IS NOT NULL
            GROUP BY service, issuer ORDER BY service, issuer""",
        params,
    )


def rotation_step_series(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime, bucket: timedelta
) -> list[dict[str, Any]]:
    """The failures one rotation step caused (as `rotation_effects` counts them) per `bucket` from `since`.

    `bucket` is the 0-based bucket number; buckets without failures are absent.
    """
    causes = STEP_CAUSES[step["action"]]
    return _rows(
        con,
        f"""SELECT CAST(floor((epoch(ts) - ?) / ?) AS INTEGER) AS bucket, count(*) AS failures
            FROM classifications
            WHERE kid = ? AND issuer = ? AND cause IN ({", ".join("?" for _ in causes)}) AND ts >= ? AND ts < ?
            GROUP BY bucket ORDER BY bucket""",
        [since.timestamp(), bucket.total_seconds(), step["kid"], step["issuer"], *causes, since, until],
    )


def dead_letters_received(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Dead letters received (wall-clock time of the consumer) in `[since, until)`, per kind."""
    return _rows(
        con,
        """SELECT kind, count(*) AS records FROM dead_letters
           WHERE received_at >= ? AND received_at < ? GROUP BY kind ORDER BY records DESC, kind""",
        [since, until],
    )


def window_time_range(con: duckdb.DuckDBPyConnection, filters: Filters) -> tuple[datetime | None, datetime | None]:
    """The first and last event time inside the filter (how much of a window the data covers)."""
    where, params = filters.where()
    row = con.execute(f"SELECT min(ts), max(ts) FROM classifications WHERE {where}", params).fetchone()
    return (row[0], row[1]) if row else (None, None)


def failures_per_bucket(
    con: duckdb.DuckDBPyConnection, bucket: str = "1 hour", filters: Filters = Filters()
) -> list[dict[str, Any]]:
    """The rows of `failures_over_time` (bucket, cause, events) plus `verified` and `with_attacks`.

    3-5x faster on a large store: buckets are cut by integer arithmetic on the epoch instead
    of `time_bucket` on a TIMESTAMPTZ (which goes through the time-zone library row by row).
    For every width `_interval` allows, the edges are the same: whole minutes, hours, and
    UTC midnights. Summing the rows per cause gives `cause_counts` for the window, so a
    page needs one scan for both its chart and its totals.
    """
    width = _BUCKET_SECONDS[_interval(bucket)]
    where, params = filters.where()
    return _rows(
        con,
        f"""SELECT to_timestamp(k * {width}) AS bucket, cause, events, verified, with_attacks
            FROM (SELECT epoch_us(ts) // {width * 1_000_000} AS k, cause, count(*) AS events,
                         sum((confidence = 'verified')::INTEGER) AS verified,
                         sum((len(attacks) > 0)::INTEGER) AS with_attacks
                  FROM classifications WHERE {where} GROUP BY k, cause)
            ORDER BY bucket, cause""",
        params,
    )


_BUCKET_SECONDS = {
    "1 minute": 60,
    "5 minutes": 300,
    "15 minutes": 900,
    "1 hour": 3600,
    "6 hours": 21600,
    "1 day": 86400,
}


def filter_values(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The services, issuers and causes in the store, sorted (for filter widgets)."""
    # Three DISTINCT scans are about twice as fast as one scan with three list(DISTINCT …).
    return {column: distinct_values(con, column) for column in ("service", "issuer", "cause")}


def step_failure_counts(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """Failures each rotation step caused, whenever they happened, by (kid, action).

    A key is added once and removed once, so its stale_jwks / unpublished_key failures belong
    to its `added` step and its retired_key failures to its `removed` step. One filtered scan,
    where `rotation_impact` joins every step with the events around it.
    """
    rows = con.execute(
        """SELECT kid, CASE WHEN cause = 'retired_key' THEN 'removed' ELSE 'added' END AS action, count(*)
           FROM classifications
           WHERE cause IN ('stale_jwks', 'unpublished_key', 'retired_key') AND kid IS NOT NULL
           GROUP BY ALL"""
    ).fetchall()
    return {(kid, action): int(n) for kid, action, n in rows}


def attack_summary(con: duckdb.DuckDBPyConnection, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """The rows of `attacks`, with the window applied before the lists are unnested (fast on a large store)."""
    where, params = filters.where()
    return _rows(
        con,
        f"""WITH hit AS (SELECT service, client_id, ts, attacks FROM classifications
                         WHERE {where} AND len(attacks) > 0)
            SELECT attack, count(*) AS events,
                   list_distinct(list(hit.service ORDER BY hit.service)) AS services,
                   count(DISTINCT hit.client_id) AS clients,
                   min(hit.ts) AS first_seen, max(hit.ts) AS last_seen
            FROM hit, unnest(hit.attacks) AS a(attack)
            GROUP BY attack ORDER BY events DESC, attack""",
        params,
    )


def filter_values_in(con: duckdb.DuckDBPyConnection, filters: Filters) -> dict[str, list[str]]:
    """The services, issuers and causes that occur within the filter (its window, typically), sorted.

    For filter widgets that offer what the chosen time range holds: on a large store a window
    of a day reads a sliver of the table, where `filter_values` reads all of it.
    """
    where, params = filters.where()
    row = con.execute(
        f"""SELECT list(DISTINCT service ORDER BY service), list(DISTINCT issuer ORDER BY issuer),
                   list(DISTINCT cause ORDER BY cause)
            FROM classifications WHERE {where}""",
        params,
    ).fetchone()
    services, issuers, causes = row if row else ([], [], [])
    return {
        "service": [v for v in services or [] if v is not None],
        "issuer": [v for v in issuers or [] if v is not None],
        "cause": [v for v in causes or [] if v is not None],
    }


def step_failure_counts_since(con: duckdb.DuckDBPyConnection, since: datetime) -> dict[tuple[str, str], int]:
    """`step_failure_counts` over the events from `since` on (for the rotations of a recent time range)."""
    rows = con.execute(
        """SELECT kid, CASE WHEN cause = 'retired_key' THEN 'removed' ELSE 'added' END AS action, count(*)
           FROM classifications
           WHERE ts >= ? AND cause IN ('stale_jwks', 'unpublished_key', 'retired_key') AND kid IS NOT NULL
           GROUP BY ALL""",
        [since],
    ).fetchall()
    return {(kid, action): int(n) for kid, action, n in rows}
