"""What the tokens say: attack patterns and who sends them, algorithms in use, token lifetimes.

An event's attack labels are unnested in the select list, never by a lateral join
(`FROM classifications c, unnest(c.attacks)`): DuckDB materialises a lateral join's whole input
and joins it back (3 s for an hour of raw rows at 200 events/s, against 0.14 s).
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline.queries import rolled
from pipeline.queries.base import NO_FILTERS, Filters, rows
from pipeline.queries.coverage import split


def attacks(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Each attack label: how often, against which services, from which clients, when.

    The filter applies before the attack lists are unnested (fast on a large store).
    """
    if (s := split(con, filters)) is not None:
        return rolled.attacks(con, s)
    where, params = filters.where()
    return rows(
        con,
        f"""WITH hit AS (SELECT service, client_id, ts, unnest(attacks) AS attack FROM classifications
                         WHERE {where} AND len(attacks) > 0)
            SELECT attack, count(*) AS events,
                   list_distinct(list(hit.service ORDER BY hit.service)) AS services,
                   count(DISTINCT hit.client_id) AS clients,
                   min(hit.ts) AS first_seen, max(hit.ts) AS last_seen
            FROM hit
            GROUP BY attack ORDER BY events DESC, attack""",
        params,
    )


def attack_kinds_by_cause(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> dict[str, list[str]]:
    """Per cause, the attack labels its events carry, most events first (causes without attacks absent)."""
    if (s := split(con, filters)) is not None:
        found = rolled.attack_kinds_by_cause(con, s)
    else:
        where, params = filters.where("c")
        found = con.execute(
            f"""SELECT cause, attack FROM (
                    SELECT cause, attack, count(*) AS events
                    FROM (SELECT c.cause, unnest(c.attacks) AS attack FROM classifications c
                          WHERE {where} AND len(c.attacks) > 0) GROUP BY ALL
                ) ORDER BY cause, events DESC, attack""",
            params,
        ).fetchall()
    kinds: dict[str, list[str]] = {}
    for cause, attack in found:
        kinds.setdefault(cause, []).append(attack)
    return kinds


def attack_clients(
    con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS, limit: int = 3
) -> list[dict[str, Any]]:
    """For each attack label, its top clients by events (client_id NULL counts as one client, shown as NULL)."""
    if (s := split(con, filters)) is not None:
        return rolled.attack_clients(con, s, limit, nulls_apart=False)
    where, params = filters.where("c")
    return rows(
        con,
        f"""SELECT attack, client_id, events FROM (
                SELECT attack, client_id, count(*) AS events,
                       row_number() OVER (PARTITION BY attack ORDER BY count(*) DESC, client_id) AS n
                FROM (SELECT unnest(c.attacks) AS attack, c.client_id FROM classifications c
                      WHERE {where} AND len(c.attacks) > 0) GROUP BY attack, client_id
            ) WHERE n <= ? ORDER BY attack, events DESC, client_id""",
        [*params, limit],
    )


def attack_client_ids(
    con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS, limit: int = 3
) -> list[dict[str, Any]]:
    """For each attack label, its top `limit` named clients by events, and one row (`client_id` NULL) counting
    the events that carried no client id, whatever the limit: a table can name clients and say how many
    events had none.
    """
    if (s := split(con, filters)) is not None:
        return rolled.attack_clients(con, s, limit, nulls_apart=True)
    where, params = filters.where("c")
    return rows(
        con,
        f"""SELECT attack, client_id, events FROM (
                SELECT attack, client_id, count(*) AS events,
                       row_number() OVER (PARTITION BY attack, client_id IS NULL
                                          ORDER BY count(*) DESC, client_id) AS n
                FROM (SELECT unnest(c.attacks) AS attack, c.client_id FROM classifications c
                      WHERE {where} AND len(c.attacks) > 0) GROUP BY attack, client_id
            ) WHERE n <= ? OR client_id IS NULL
            ORDER BY attack, client_id IS NULL, events DESC, client_id""",
        [*params, limit],
    )


def algorithms_in_use(con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    """Events per header `alg` (as the token states it): tokens, how many verified, issuers, main cause, attacks.

    Events without a readable alg (no token, malformed) come last with `alg` NULL. Over rollups
    (`rolled.algorithms`), `tokens` is the sketches' count (exact below `rollups.TOKEN_SKETCH`).
    """
    if (s := split(con, filters)) is not None:
        return rolled.algorithms(con, s)
    where, params = filters.where()
    # main_cause as `rolled.algorithms` picks it (ties: the first by name); `mode()` breaks ties at random
    return rows(
        con,
        f"""WITH per AS (SELECT alg, cause, count(*) AS n FROM classifications WHERE {where} GROUP BY ALL),
            main AS (SELECT alg, (list(cause ORDER BY n DESC, cause))[1] AS main_cause FROM per GROUP BY alg),
            counted AS (
                SELECT alg, count(*) AS events, count(DISTINCT token_sha256) AS tokens,
                       count(*) FILTER (WHERE key_thumbprint IS NOT NULL) AS verified,
                       list_sort(list_distinct(list(issuer) FILTER (WHERE issuer IS NOT NULL))) AS issuers,
                       count(*) FILTER (WHERE len(attacks) > 0) AS attack_events
                FROM classifications WHERE {where} GROUP BY alg
            )
            SELECT c.alg, c.events, c.tokens, c.verified, c.issuers, m.main_cause, c.attack_events
            FROM counted c JOIN main m ON m.alg IS NOT DISTINCT FROM c.alg
            ORDER BY c.alg IS NULL, c.events DESC, c.alg""",
        [*params, *params],
    )


def token_lifetimes(
    con: duckdb.DuckDBPyConnection, filters: Filters = NO_FILTERS, max_seconds: float = 3600.0
) -> list[dict[str, Any]]:
    """Lifetimes (`exp - iat`) of the distinct verified tokens in the filter, per issuer and client.

    Only tokens whose signature verified (their claims are the issuer's, not an attacker's).
    `client` is the token's `azp`, else its `client_id` claim, else the event's client_id.
    `with_lifetime` counts the tokens that have both exp and iat; `over_policy` those living
    longer than `max_seconds`, and `events_over_policy` their events. Over rollups
    (`rolled.token_lifetimes`): from the lifetime histograms, approximate as it says.
    """
    if (s := split(con, filters)) is not None:
        return rolled.token_lifetimes(con, s, max_seconds)
    where, params = filters.where()
    return rows(
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
