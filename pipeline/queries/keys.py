"""Signing keys' lives and uses: key hygiene (the weekly report's) and one key's use per service (the rotation page).

A key's uses are the verified events whose token it signed, at any time: from the hourly rollups
(`key_thumbprint` a key column, the signed-at range `min_iat`/`max_iat`) where they exist, so the
question reads rollup rows of its keys and the raw tail, never every raw row a key signed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from pipeline.io.store_parts import raw_relation
from pipeline.queries.base import NO_FILTERS, rows
from pipeline.queries.coverage import Split, by_day, coverage, split
from pipeline.rollups import DAY_US, HOUR_SECONDS


def key_usage(con: duckdb.DuckDBPyConnection, kid: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Rejected tokens signed with `kid` in `[since, until)`, per service (e.g. a retired key still in use).

    Raw rows of the window's day folders only (`raw_relation`): distinct tokens and clients are per event."""
    return rows(
        con,
        # main_cause: the cause with most events, ties the first by name (`mode()` breaks ties at random)
        f"""SELECT service, count(*) AS events, count(DISTINCT token_sha256) AS tokens,
                  count(DISTINCT client_id) AS clients, mode(cause ORDER BY cause) AS main_cause,
                  list_distinct(list(client_id ORDER BY client_id) FILTER (WHERE client_id IS NOT NULL))[1:5]
                      AS some_clients,
                  min(ts) AS first_seen, max(ts) AS last_seen
           FROM {raw_relation(con, since, until)} WHERE kid = ? AND ts >= ? AND ts < ?
           GROUP BY service ORDER BY events DESC, service""",
        [kid, since, until],
    )


#: The keys `key_hygiene` lists (published at some time in [?, ?): `until`, `since`), one row per key.
_HYGIENE_KEYS = """SELECT issuer, kid, thumbprint, any_value(kty) AS kty, any_value(crv) AS crv,
                          min(first_seen) AS first_seen, max(last_seen) AS last_seen,
                          arg_max_null(removed_at, interval_no) AS removed_at,
                          bool_or("initial") AS "initial", count(*) AS intervals
                   FROM jwks_keys GROUP BY issuer, kid, thumbprint
                   HAVING min(first_seen) < ? AND (arg_max_null(removed_at, interval_no) IS NULL
                                                   OR arg_max_null(removed_at, interval_no) >= ?)"""
#: The events a key's use counts: verified with it (its thumbprint and issuer), judged on a token.
_USED = "issuer IS NOT NULL AND key_thumbprint IS NOT NULL AND confidence IN ('verified', 'inferred')"
#: The hygiene columns, in order (`key_hygiene`'s rows, whichever way the uses were read).
_HYGIENE_COLUMNS = ("issuer", "kid", "thumbprint", "kty", "crv", "first_seen", "last_seen", "removed_at", "initial",
                    "intervals", "first_use", "last_use", "uses", "uses_after_removal", "first_signed", "last_signed")


def key_hygiene(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Each signing key published at some time in `[since, until)`, with its life and its use.

    From the key timeline: `first_seen` (with `initial` when it was there when history
    began, so its real age is longer), `removed_at` (of its last publication interval).
    From verified events whose token it signed (any time, not only the window): `first_use`
    and `last_use` (event times), `uses`, `uses_after_removal`, and `first_signed` /
    `last_signed` (the tokens' `iat`).

    Where hourly rollups exist the uses come from them (`_rolled_hygiene`), so a report does not read every raw
    row a key ever signed (a month of them at 200 events/s is half a billion).
    """
    if (s := split(con, NO_FILTERS)) is not None:
        try:
            return _rolled_hygiene(con, s, since, until)
        except duckdb.BinderException:  # a lake whose views an older writer made: rollups without the key
            pass
    return rows(
        con,
        f"""WITH keys AS ({_HYGIENE_KEYS}),
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
            ORDER BY k.issuer, k.first_seen, k.kid""",
        [until, since],
    )


def _rolled_hygiene(con: duckdb.DuckDBPyConnection, s: Split, since: datetime, until: datetime
                    ) -> list[dict[str, Any]]:
    """`key_hygiene` with the uses from the rollup rows of each key's thumbprint before the split's boundary and
    the raw rows from it on (rolled per hour and token here: a token's `iat` is parsed once, not per event).

    The same answers as the raw rows give while they are kept. Uses after a removal: every use in the hours
    after the removal's hour, and in that hour each row's events as its first and last times place them; a row
    with uses on both sides of the removal is counted from that hour's raw rows, or, once they expired, as one
    use (a lower bound: the key was used after its removal; an attack row's times also span events counted in
    another row, so its straddling adds nothing to those rows' count but that there was at least one). Hours
    rolled before the rollups had the key (`with_key` without a `key_thumbprint`: an older writer's) are read from
    their raw rows while those are kept.

    The closed days' daily rows (`coverage.by_day`) stand for their hours but on the day of a listed key's
    removal, where a row's hour places its uses before or after it: every other measure is a sum or an extreme.
    """
    kept = coverage(con).raw_since
    removals = frozenset(day for (day,) in con.execute(
        f"SELECT DISTINCT epoch_us(removed_at) // {DAY_US} FROM ({_HYGIENE_KEYS}) WHERE removed_at IS NOT NULL",
        [until, since]).fetchall())
    days = by_day(con, s, hours_on=removals)
    # a day has a daily row rolled without the key when one of its hours has one: then the hours say which hour
    legacy_end = _legacy_end(con, days) and _legacy_end(con, s)
    # the uses from the daily rows only when no hour needs its raw rows (an older writer's, cut by the hour)
    found = _hygiene_rows(con, days if legacy_end is None else s, since, until, legacy_end, kept)
    for key in found:
        in_hour = key.pop("after_in_hour")
        if key.pop("straddles"):
            hour = datetime.fromtimestamp(key["removed_at"].timestamp() // HOUR_SECONDS * HOUR_SECONDS, UTC)
            if kept is None or hour >= kept:  # the removal's hour is still raw: its uses after the removal exactly
                exact = con.execute(
                    f"SELECT count(*) FROM {raw_relation(con, hour, hour + timedelta(hours=1))} "
                    f"WHERE ts >= ? AND ts < ? AND issuer = ? AND key_thumbprint = ? AND {_USED}",
                    [key["removed_at"], hour + timedelta(hours=1), key["issuer"], key["thumbprint"]]).fetchone()
                in_hour = int(exact[0]) if exact else 0
            else:  # a row on both sides of the removal: at least one use after it, maybe counted in another row
                in_hour = max(in_hour, 1)
        key["uses_after_removal"] = key.pop("after_later") + in_hour if key["removed_at"] is not None else 0
    return [{name: key[name] for name in _HYGIENE_COLUMNS} for key in found]


def _legacy_end(con: duckdb.DuckDBPyConnection, s: Split) -> datetime | None:
    """Where the hours rolled before the rollups had the key end (None: there are none)."""
    legacy = con.execute(f"SELECT max(hour) FROM {s.hourly} WHERE hour < ? AND with_key > 0 "
                         "AND key_thumbprint IS NULL AND issuer IS NOT NULL", [s.boundary]).fetchone()
    return None if legacy is None or legacy[0] is None else legacy[0] + timedelta(hours=1)


def _hygiene_rows(con: duckdb.DuckDBPyConnection, s: Split, since: datetime, until: datetime,
                  legacy_end: datetime | None, kept: datetime | None) -> list[dict[str, Any]]:
    """`_rolled_hygiene`'s rows, with the parts of the uses after a removal apart. `legacy_end`: where the hours
    rolled without the key end (their uses: the raw rows kept of them)."""
    hour_us = HOUR_SECONDS * 1_000_000
    # an attack row's first and last times span every event with its label, some counted in another row (their
    # first label's): only a row without attacks spans just its own events
    rolled = f"""SELECT hour, issuer, key_thumbprint, events, first_ts, last_ts, min_iat, max_iat,
                        attack IS NULL AS own_span FROM {s.hourly}
                 WHERE hour < ? AND events > 0 AND {_USED}"""
    params: list[Any] = [until, since, s.boundary]
    if legacy_end is not None:
        rolled += " AND hour >= ?"
        params.append(legacy_end)
    # a token's events per hour: its iat (the same claims in each) parsed once
    tail = f"""SELECT to_timestamp(hour_no * {HOUR_SECONDS}) AS hour, issuer, key_thumbprint, sum(n) AS events,
                      min(first_ts) AS first_ts, max(last_ts) AS last_ts, min(iat) AS min_iat,
                      max(iat) FILTER (WHERE iat <= epoch(last_ts)) AS max_iat, true AS own_span
               FROM (SELECT epoch_us(ts) // {hour_us} AS hour_no, issuer, key_thumbprint, count(*) AS n,
                            min(ts) AS first_ts, max(ts) AS last_ts,
                            try_cast(any_value(token_claims)->>'iat' AS DOUBLE) AS iat
                     FROM {{raw}} WHERE {{bounds}} AND {_USED}
                     GROUP BY hour_no, issuer, key_thumbprint, coalesce(token_sha256, event_id))
               GROUP BY ALL"""
    parts = [rolled, tail.replace("{raw}", s.raw).replace("{bounds}", "ts >= ?")]
    params.append(s.boundary)
    if legacy_end is not None and (kept is None or kept < legacy_end):
        parts.append(tail.replace("{raw}", raw_relation(con, kept, legacy_end))
                     .replace("{bounds}", "ts < ?" if kept is None else "ts >= ? AND ts < ?"))
        params += [*([] if kept is None else [kept]), min(legacy_end, s.boundary)]
    removal_hour = f"to_timestamp(epoch_us(k.removed_at) // {hour_us} * {HOUR_SECONDS})"
    return rows(
        con,
        f"""WITH keys AS ({_HYGIENE_KEYS}),
            used AS ({" UNION ALL ".join(parts)}),
            usage AS (
                SELECT k.issuer, k.thumbprint, min(u.first_ts) AS first_use, max(u.last_ts) AS last_use,
                       sum(u.events)::BIGINT AS uses,
                       coalesce(sum(u.events) FILTER (WHERE u.hour > {removal_hour}), 0)::BIGINT AS after_later,
                       coalesce(sum(CASE WHEN u.first_ts >= k.removed_at THEN u.events
                                         WHEN u.last_ts < k.removed_at OR NOT u.own_span THEN 0 ELSE 1 END)
                                FILTER (WHERE u.hour = {removal_hour}), 0)::BIGINT AS after_in_hour,
                       coalesce(bool_or(u.first_ts < k.removed_at AND u.last_ts >= k.removed_at)
                                FILTER (WHERE u.hour = {removal_hour}), false) AS straddles,
                       to_timestamp(min(u.min_iat)) AS first_signed, to_timestamp(max(u.max_iat)) AS last_signed
                FROM keys k JOIN used u ON u.key_thumbprint = k.thumbprint AND u.issuer = k.issuer
                GROUP BY k.issuer, k.thumbprint
            )
            SELECT k.issuer, k.kid, k.thumbprint, k.kty, k.crv, k.first_seen, k.last_seen, k.removed_at,
                   k."initial", k.intervals, u.first_use, u.last_use, coalesce(u.uses, 0) AS uses,
                   coalesce(u.after_later, 0) AS after_later, coalesce(u.after_in_hour, 0) AS after_in_hour,
                   coalesce(u.straddles, false) AS straddles, u.first_signed, u.last_signed
            FROM keys k LEFT JOIN usage u USING (issuer, thumbprint)
            ORDER BY k.issuer, k.first_seen, k.kid""",
        params,
    )
