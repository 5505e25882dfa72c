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


def top(
    con: duckdb.DuckDBPyConnection, column: str, filters: Filters = Filters(), limit: int = 10
) -> list[dict[str, Any]]:
    """The top values of `column` (service, client_id, kid, issuer, alg) by events, with their main cause."""
    if column not in {"service", "client_id", "kid", "issuer", "alg"}:
        raise ValueError(f"cannot rank by {column!r}")
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
