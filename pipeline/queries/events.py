"""The events themselves and the store around them: the newest events, one event's evidence, filter values,
dead letters, the consumer's positions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb

from pipeline.io.store_parts import raw_relation
from pipeline.queries import rolled
from pipeline.queries.base import NO_FILTERS, Filters, marks, rows
from pipeline.queries.coverage import coverage, split
from pipeline.rollups import newest_allowed


def store_summary(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> dict[str, Any]:
    """Events, the first and last event time, and the last write: one scan for a page header.

    The last event time is the newest one not past `newest_allowed(now)` (the wall clock by default):
    one hostile or mistaken `ts` in year 9999 would otherwise make "the latest week" and "the last hour"
    of every page and report a window with nothing in it. Only when every event is past it (this
    machine's clock is behind the data's) is it the newest of all."""
    cap = newest_allowed(now or datetime.now(UTC))
    if (rolled_through := coverage(con).rolled_through) is not None:
        return rolled.store_totals(con, rolled_through, cap)
    return rows(
        con,
        """SELECT count(*) AS events, min(ts) AS first_ts, coalesce(max(ts) FILTER (WHERE ts <= ?), max(ts)) AS last_ts,
                  max(classified_at) AS last_classified_at
           FROM classifications""",
        [cap],
    )[0]


def filter_values(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> dict[str, list[str]]:
    """The services, issuers and causes that occur within the filter (its window, typically), sorted.

    For filter widgets that offer what the chosen time range holds: on a large store a window
    of a day reads a sliver of the table. Without a window, every value in the store.
    """
    where, params = filters.where()
    s = split(con, filters)
    row = rolled.filter_values(con, s) if s is not None else con.execute(
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


def services_seen(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every service that has at least one event in the store."""
    if (rolled_through := coverage(con).rolled_through) is not None:
        return rolled.services_seen(con, rolled_through)
    return [row[0] for row in con.execute("SELECT DISTINCT service FROM classifications ORDER BY service").fetchall()]


def events(
    con: duckdb.DuckDBPyConnection,
    filters: Filters = NO_FILTERS,
    limit: int = 200,
    client_ids: tuple[str, ...] = (),
    kids: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The most recent events with their evidence (never a token: only its fingerprint), also narrowed to
    some clients and kids (a drill-down)."""
    where, params = filters.where()
    for column, values in (("client_id", client_ids), ("kid", kids)):
        if values:
            where += f" AND {column} IN ({marks(values)})"
            params.extend(values)
    return rows(
        con,
        f"""SELECT ts, event_id, service, cause, confidence, attacks, issuer, kid, alg, client_id,
                   skew_seconds, detail, left(token_sha256, 12) AS token_fp
            FROM {raw_relation(con, filters.since, filters.until)} WHERE {where} ORDER BY ts DESC, event_id LIMIT ?""",
        [*params, limit],
    )


def event_evidence(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any] | None:
    """Everything stored about one event except its token (only the fingerprint's first 12 hex chars)."""
    found = rows(
        con,
        """SELECT event_id, ts, service, cause, confidence, findings, attacks, issuer, kid, alg, audience,
                  skew_seconds, detail, client_id, request_id, left(token_sha256, 12) AS token_fp,
                  token_header, token_claims, key_first_seen, service_jwks_fetched_at, reported_error
           FROM classifications WHERE event_id = ?""",
        [event_id],
    )
    return found[0] if found else None


def token_history(con: duckdb.DuckDBPyConnection, token_sha256: str) -> list[dict[str, Any]]:
    """Every stored rejection of one token (by fingerprint), per service and cause: how often, first, last."""
    return rows(
        con,
        """SELECT service, cause, count(*) AS events, min(ts) AS first_seen, max(ts) AS last_seen
           FROM classifications WHERE token_sha256 = ?
           GROUP BY service, cause ORDER BY events DESC, service, cause""",
        [token_sha256.lower()],
    )


def dead_letter_counts(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return rows(
        con,
        """SELECT kind, regexp_replace(reason, '[0-9]+', 'N', 'g') AS reason, count(*) AS records
           FROM dead_letters GROUP BY ALL ORDER BY records DESC, kind LIMIT 20""",
    )


def dead_letters_received(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Dead letters received (wall-clock time of the consumer) in `[since, until)`, per kind."""
    return rows(
        con,
        """SELECT kind, count(*) AS records FROM dead_letters
           WHERE received_at >= ? AND received_at < ? GROUP BY kind ORDER BY records DESC, kind""",
        [since, until],
    )


#: A dead letter's time (one definition): the event time of the record just before it on its partition (the
#: stream runs in about event time; a dead letter may have no readable time of its own), else when it was received.
_DEAD_LETTER_TIME = """WITH neighbours AS (
                SELECT source, source_partition, source_offset, ts FROM classifications
                WHERE source IN (SELECT DISTINCT source FROM dead_letters)
            ),
            dated AS (
                SELECT d.*, coalesce(n.ts, d.received_at) AS dated_at, n.ts IS NOT NULL AS by_event_time
                FROM dead_letters d ASOF LEFT JOIN neighbours n
                  ON n.source = d.source AND n.source_partition = d.source_partition
                 AND n.source_offset <= d.source_offset
            )"""


def dead_letters_in(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Dead letters dated in `[since, until)` by `_DEAD_LETTER_TIME`, per kind and reason (digits as N).

    `by_event_time` counts those dated by their neighbours' event time (the rest by when they
    were received); `example` is one redacted excerpt (never a token: excerpts are redacted
    when stored).
    """
    found = con.execute("SELECT EXISTS (SELECT 1 FROM dead_letters)").fetchone()
    if not (found and found[0]):  # none to date: the neighbours' positions would be read from every raw row
        return []
    return rows(
        con,
        f"""{_DEAD_LETTER_TIME}
            SELECT kind, regexp_replace(reason, '[0-9]+', 'N', 'g') AS reason, count(*) AS records,
                   count(*) FILTER (WHERE by_event_time) AS by_event_time,
                   min(dated_at) AS first_at, max(dated_at) AS last_at, min(excerpt) AS example
            FROM dated WHERE dated_at >= ? AND dated_at < ?
            GROUP BY ALL ORDER BY records DESC, kind, reason""",
        [since, until],
    )


#: How a dead letter's reason is grouped: its numbers (offsets, columns, bytes) as N.
_REASON_PATTERN = "regexp_replace(reason, '[0-9]+', 'N', 'g')"


def dead_letter_reasons(con: duckdb.DuckDBPyConnection, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Dead letters per kind and reason (numbers as N), with one reason as written, and when they arrived."""
    kind_clause = f"kind IN ({marks(kinds)})" if kinds else "TRUE"
    return rows(
        con,
        f"""SELECT kind, {_REASON_PATTERN} AS reason, min(reason) AS example, count(*) AS records,
                   list_distinct(list(source ORDER BY source)) AS sources,
                   min(received_at) AS first_received, max(received_at) AS last_received
            FROM dead_letters WHERE {kind_clause}
            GROUP BY kind, {_REASON_PATTERN} ORDER BY records DESC, kind, reason""",
        list(kinds),
    )


def dead_letter_records(
    con: duckdb.DuckDBPyConnection, kinds: Sequence[str] = (), reasons: Sequence[str] = (), limit: int = 200
) -> list[dict[str, Any]]:
    """The newest dead letters (of these kinds, with these grouped reasons), with their redacted excerpts, and
    the event time the excerpt shows as written (`written_ts`, text: the record could not be read as an event)."""
    clauses, params = ["TRUE"], []
    if kinds:
        clauses.append(f"kind IN ({marks(kinds)})")
        params += list(kinds)
    if reasons:
        clauses.append(f"{_REASON_PATTERN} IN ({marks(reasons)})")
        params += list(reasons)
    return rows(
        con,
        f"""SELECT received_at, source, source_partition, source_offset, kind, reason, excerpt,
                   coalesce(nullif(regexp_extract(excerpt, '"ts"\\s*:\\s*"([^"]*)"', 1), ''),
                            nullif(regexp_extract(excerpt, '^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9:.]+Z?)', 1), ''))
                     AS written_ts
            FROM dead_letters WHERE {' AND '.join(clauses)}
            ORDER BY received_at DESC, source, source_partition, source_offset DESC LIMIT ?""",
        [*params, limit],
    )


def source_positions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Where the consumer stands on each source partition, and when it last wrote."""
    return rows(
        con,
        """SELECT source, source_partition, next_offset, updated_at
           FROM source_positions ORDER BY source, source_partition""",
    )
