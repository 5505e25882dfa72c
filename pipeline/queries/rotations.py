"""Key rotations and what they did: the steps, the failures each caused per service, the keys' lives,
and the services' JWKS cache ages.

A failure belongs to a rotation step when the token's key is the step's and it is the
step's rotation damage (`pipeline.causes.STEP_CAUSES`, never an event with an attack label).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline.causes import STEP_CAUSES, Cause
from pipeline.queries.base import NO_FILTERS, Filters, damage_of_step, interval, marks, rotation_damage, rows

#: How the stale_jwks evidence of a service's cache lifetime is counted (a parameter, never typed into SQL).
_STALE = Cause.STALE_JWKS.value


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


def rotation_impact(con: duckdb.DuckDBPyConnection, window: timedelta = timedelta(hours=12)) -> list[dict[str, Any]]:
    """For each rotation step, the rotation-caused failures per service in the window after it.

    A failure belongs to a step when it concerns that step's key (the kid in the token) and
    happened within `window` after it: stale_jwks / unpublished_key after a key was added,
    retired_key after it was removed. `recovered_after` is the time from the step to the
    service's last such failure in the window.
    """
    caused, caused_params = damage_of_step("s.action", "c")
    return rows(
        con,
        f"""WITH steps AS (SELECT issuer, kid, action, ts AS step_ts FROM key_rotations),
                hits AS (
                    SELECT s.issuer, s.kid, s.action, s.step_ts, c.service, c.cause, c.ts
                    FROM steps s JOIN classifications c
                      ON c.kid = s.kid AND c.ts >= s.step_ts - INTERVAL 1 DAY AND c.ts < s.step_ts + ?
                     AND {caused}
                )
           SELECT issuer, kid, action, step_ts, service,
                  count(*) AS failures,
                  list_distinct(list(cause ORDER BY cause)) AS causes,
                  min(ts) AS first_failure, max(ts) AS last_failure,
                  max(ts) - step_ts AS recovered_after
           FROM hits GROUP BY issuer, kid, action, step_ts, service ORDER BY step_ts, issuer, failures DESC""",
        [window, *caused_params],
    )


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
    caused, caused_params = damage_of_step("s.action", "c")
    service_clause = ""
    params: list[Any] = [since - near, until + near, since, until, *caused_params]
    if services:
        service_clause = f" AND c.service IN ({marks(services)})"
        params.extend(services)
    params.extend([since, until])
    return rows(
        con,
        f"""WITH steps AS (
                SELECT DISTINCT issuer, kid, action, ts AS step_ts FROM key_rotations WHERE ts >= ? AND ts < ?
            ),
            hits AS (
                SELECT s.issuer, s.kid, s.action, s.step_ts, c.service, c.cause, c.ts
                FROM steps s JOIN classifications c
                  ON c.kid = s.kid AND c.issuer = s.issuer AND c.ts >= ? AND c.ts < ?
                 AND c.ts >= s.step_ts - INTERVAL 1 DAY
                 AND {caused}{service_clause}
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


def rotation_services(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """For one rotation step (a row of `rotations`), each service seen in `[since, until)`.

    `failures` are the events the step caused (its key in the token, its rotation damage);
    `issuer_events` the service's events with the step's issuer or key (a service with those
    and no failures was never affected); `cache_age_*` how old the service's key set was when
    it rejected tokens (from `service_jwks_fetched_at`); `stale_window_s` the time from the
    step to the service's last stale_jwks failure on the key, a lower bound on its cache lifetime.
    """
    damage, damage_params = Filters.step_damage(step["action"]).where()
    hit = f"kid = ? AND {damage}"
    hit_params = [step["kid"], *damage_params]
    return rows(
        con,
        f"""SELECT service,
                   count(*) FILTER (WHERE issuer = ? OR kid = ?) AS issuer_events,
                   count(*) FILTER (WHERE {hit}) AS failures,
                   list_distinct(list(cause ORDER BY cause) FILTER (WHERE {hit})) AS causes,
                   min(ts) FILTER (WHERE {hit}) AS first_failure,
                   max(ts) FILTER (WHERE {hit}) AS last_failure,
                   median(epoch(ts) - epoch(service_jwks_fetched_at)) AS cache_age_median_s,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS cache_age_max_s,
                   epoch(max(ts) FILTER (WHERE kid = ? AND cause = ?)) - epoch(?::TIMESTAMPTZ)
                       AS stale_window_s
            FROM classifications WHERE ts >= ? AND ts < ?
            GROUP BY service
            HAVING issuer_events > 0 OR failures > 0
            ORDER BY failures DESC, service""",
        [step["issuer"], step["kid"], *hit_params * 4, step["kid"], _STALE, step["ts"], since, until],
    )


def step_failures_over_time(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime, bucket: str = "15 minutes"
) -> list[dict[str, Any]]:
    """The failures one rotation step caused, per time bucket and service."""
    damage, damage_params = Filters.step_damage(step["action"]).where()
    return rows(
        con,
        f"""SELECT time_bucket(INTERVAL '{interval(bucket)}', ts) AS bucket, service, count(*) AS events
            FROM classifications
            WHERE ts >= ? AND ts < ? AND kid = ? AND {damage}
            GROUP BY bucket, service ORDER BY bucket, service""",
        [since, until, step["kid"], *damage_params],
    )


def rotation_step_series(
    con: duckdb.DuckDBPyConnection, step: dict[str, Any], since: datetime, until: datetime, bucket: timedelta
) -> list[dict[str, Any]]:
    """The failures one rotation step caused (as `rotation_effects` counts them) per `bucket` from `since`.

    `bucket` is the 0-based bucket number; buckets without failures are absent.
    """
    damage, damage_params = Filters.step_damage(step["action"]).where()
    return rows(
        con,
        f"""SELECT CAST(floor((epoch(ts) - ?) / ?) AS INTEGER) AS bucket, count(*) AS failures
            FROM classifications
            WHERE kid = ? AND issuer = ? AND {damage} AND ts >= ? AND ts < ?
            GROUP BY bucket ORDER BY bucket""",
        [since.timestamp(), bucket.total_seconds(), step["kid"], step["issuer"], *damage_params, since, until],
    )


def step_failure_counts(con: duckdb.DuckDBPyConnection, since: datetime | None = None) -> dict[tuple[str, str], int]:
    """Failures each rotation step caused, by (kid, action): whenever they happened, or from `since` on.

    A key is added once and removed once, so its stale_jwks / unpublished_key failures belong
    to its `added` step and its retired_key failures to its `removed` step. One filtered scan,
    where `rotation_impact` joins every step with the events around it.
    """
    damage, params = rotation_damage()
    if since is not None:
        damage += " AND ts >= ?"
        params.append(since)
    found = con.execute(
        f"SELECT kid, cause, count(*) FROM classifications WHERE {damage} AND kid IS NOT NULL GROUP BY ALL", params
    ).fetchall()
    step_of = {cause: step for step, causes in STEP_CAUSES.items() for cause in causes}
    counts: dict[tuple[str, str], int] = {}
    for kid, cause, n in found:
        key = (kid, step_of[cause])
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def key_usage(con: duckdb.DuckDBPyConnection, kid: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Rejected tokens signed with `kid` in `[since, until)`, per service (e.g. a retired key still in use)."""
    return rows(
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


def key_hygiene(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Each signing key published at some time in `[since, until)`, with its life and its use.

    From the key timeline: `first_seen` (with `initial` when it was there when history
    began, so its real age is longer), `removed_at` (of its last publication interval).
    From verified events whose token it signed (any time, not only the window): `first_use`
    and `last_use` (event times), `uses`, `uses_after_removal`, and `first_signed` /
    `last_signed` (the tokens' `iat`).
    """
    return rows(
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
                  ON c.key_thumbprint = k.thumbprint AND c.issuer = k.issuer
                     AND c.confidence IN ('verified', 'inferred')
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


def cache_age_by_service(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Each service's JWKS cache age as the events show it.

    `reported_age_*`: how old the service's key set was when it rejected a token (from
    `service_jwks_fetched_at`); `stale_window`: for services that do not report it, the time
    from a key's first publication to the last stale_jwks failure on that key, a lower bound
    on the service's cache lifetime.
    """
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT service,
                   count(*) AS events,
                   count(service_jwks_fetched_at) AS events_with_fetch_time,
                   median(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_median_s,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_max_s,
                   count(*) FILTER (WHERE cause = ?) AS stale_jwks,
                   max(epoch(ts) - epoch(key_first_seen)) FILTER (WHERE cause = ?) AS stale_window_s
            FROM classifications WHERE {where}
            GROUP BY service ORDER BY stale_jwks DESC, service""",
        [_STALE, _STALE, *params],
    )


def cache_lifetime_by_service_issuer(
    con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS
) -> list[dict[str, Any]]:
    """Evidence of each service's JWKS cache lifetime per issuer (as `cache_age_by_service`, split by issuer).

    `reported_age_max_s` from `service_jwks_fetched_at`; `stale_window_s` the longest time
    from a key's first publication to a stale_jwks failure on it (a lower bound).
    """
    where, params = filters.where()
    return rows(
        con,
        f"""SELECT service, issuer, count(*) AS events,
                   count(service_jwks_fetched_at) AS with_fetch_time,
                   max(epoch(ts) - epoch(service_jwks_fetched_at)) AS reported_age_max_s,
                   count(*) FILTER (WHERE cause = ?) AS stale_jwks,
                   max(epoch(ts) - epoch(key_first_seen)) FILTER (WHERE cause = ?) AS stale_window_s
            FROM classifications WHERE {where} AND issuer IS NOT NULL
            GROUP BY service, issuer ORDER BY service, issuer""",
        [_STALE, _STALE, *params],
    )
