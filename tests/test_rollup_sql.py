"""`hourly_sql` (two aggregations, issue 21/22) gives the rows the first version gave (a window per token):
every column, same types, same values, on the simulated day and on generated rows built to hit every
corner (NULL in each nullable column, several labels, a label twice, a NULL label, tokens repeated across
rows and hours, fingerprints sharing a prefix or not hex, claims without a usable lifetime).

The first version is kept here, as the reference, verbatim but for its name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import create_statement
from pipeline.rollups import (
    CACHE_AGE_EDGES,
    HOUR_SECONDS,
    HOURLY_COLUMNS,
    KEY_COLUMNS,
    LIFETIME_EDGES,
    TOKEN_SKETCH,
    hourly_sql,
    token_prefix_sql,
)


def _hourly_sql_reference(source: str) -> str:
    """The first `hourly_sql`: one window over every (event, label), the reference the new one must equal."""
    keys = ", ".join(KEY_COLUMNS)
    return f"""SELECT to_timestamp(hour_no * {HOUR_SECONDS}) AS hour, {keys},
       count(*) FILTER (WHERE label_no = 1)::BIGINT AS events,
       count(attack)::BIGINT AS attack_events,
       count(service_jwks_fetched_at) FILTER (WHERE label_no = 1)::BIGINT AS with_fetch_time,
       count(key_thumbprint) FILTER (WHERE label_no = 1)::BIGINT AS with_key,
       min(ts) AS first_ts, max(ts) AS last_ts,
       min(skew_seconds) AS min_skew_seconds, max(skew_seconds) AS max_skew_seconds,
       max(epoch(ts) - epoch(service_jwks_fetched_at)) AS max_cache_age_s,
       max(epoch(ts) - epoch(key_first_seen)) AS max_key_age_s,
       coalesce(list_sort(list_distinct(list(token_prefix) FILTER (WHERE label_no = 1)))[1:{TOKEN_SKETCH}],
                []::UBIGINT[]) AS token_sketch,
       count(*) FILTER (WHERE label_no = 1 AND token_first)::BIGINT AS tokens,
       {_histogram("lifetime_bucket", LIFETIME_EDGES, "token_first")} AS lifetime_tokens,
       {_histogram("lifetime_bucket", LIFETIME_EDGES)} AS lifetime_events,
       max(lifetime_s) FILTER (WHERE label_no = 1) AS max_lifetime_s,
       {_histogram("cache_bucket", CACHE_AGE_EDGES)} AS cache_age_events,
       min(iat) AS min_iat, max(iat) FILTER (WHERE iat <= epoch(ts)) AS max_iat
FROM (
    SELECT *, {_bucket_sql("lifetime_s", LIFETIME_EDGES)} AS lifetime_bucket,
           {_bucket_sql("cache_age_s", CACHE_AGE_EDGES)} AS cache_bucket,
           -- a token's first event in its row: distinct tokens are counted without a DISTINCT aggregate each
           token_sha256 IS NOT NULL AND row_number() OVER (PARTITION BY hour_no, {keys}, label_no, token_sha256) = 1
               AS token_first
    FROM (
        SELECT epoch_us(c.ts) // {HOUR_SECONDS * 1_000_000} AS hour_no, c.service, c.issuer, c.kid, c.client_id,
               c.cause, c.confidence, c.attacks[label_no] AS attack, c.alg, label_no, c.ts,
               c.service_jwks_fetched_at, c.key_thumbprint, c.skew_seconds, c.key_first_seen, c.token_sha256,
               epoch(c.ts) - epoch(c.service_jwks_fetched_at) AS cache_age_s,
               CASE WHEN c.issuer IS NOT NULL AND c.key_thumbprint IS NOT NULL AND c.token_sha256 IS NOT NULL
                    THEN try_cast(c.token_claims->>'exp' AS DOUBLE) - try_cast(c.token_claims->>'iat' AS DOUBLE)
               END AS lifetime_s,
               -- key hygiene's signed-at range, per event as its raw query reads it
               CASE WHEN c.issuer IS NOT NULL AND c.key_thumbprint IS NOT NULL
                    THEN try_cast(c.token_claims->>'iat' AS DOUBLE) END AS iat,
               {token_prefix_sql("c.token_sha256")} AS token_prefix
        FROM {source} AS c, unnest(generate_series(1, greatest(len(c.attacks), 1))) AS n(label_no)
    )
)
GROUP BY hour_no, {keys}"""


def _bucket_sql(value: str, edges: tuple[float, ...]) -> str:
    return f"CASE WHEN {value} IS NOT NULL THEN len(list_filter({list(edges)}::DOUBLE[], lambda e: {value} > e)) END"


def _histogram(bucket: str, edges: tuple[float, ...], condition: str = "TRUE") -> str:
    cells = ", ".join(f"count(*) FILTER (WHERE label_no = 1 AND {bucket} = {k} AND {condition})"
                      for k in range(len(edges) + 1))
    return f"[{cells}]::BIGINT[]"


ALL_COLUMNS = [name for name, _ in HOURLY_COLUMNS]


def differences(con: duckdb.DuckDBPyConnection, source: str, columns: list[str] = ALL_COLUMNS) -> dict[str, int]:
    """Rows of `columns` each version has that the other has not (EXCEPT ALL both ways), and the rows."""
    listed = ", ".join(columns)
    new, old = f"SELECT {listed} FROM ({hourly_sql(source)})", f"SELECT {listed} FROM ({_hourly_sql_reference(source)})"
    count = "SELECT count(*) FROM ({} EXCEPT ALL {})"
    return {
        "only_new": con.execute(count.format(new, old)).fetchone()[0],  # type: ignore[index]
        "only_old": con.execute(count.format(old, new)).fetchone()[0],  # type: ignore[index]
        "rows": con.execute(f"SELECT count(*) FROM ({old})").fetchone()[0],  # type: ignore[index]
    }


def test_the_types_are_the_interfaces() -> None:
    con = duckdb.connect(":memory:")
    con.execute(create_statement("classifications"))
    described = con.execute(f"DESCRIBE {hourly_sql('classifications')}").fetchall()
    assert [name for name, *_ in described] == ALL_COLUMNS
    assert described == con.execute(f"DESCRIBE {_hourly_sql_reference('classifications')}").fetchall()


def test_the_simulated_day_rolls_up_as_before(simulated_db: Path) -> None:
    con = connect_readonly(simulated_db)
    assert differences(con, "classifications") | {"rows": 0} == {"only_new": 0, "only_old": 0, "rows": 0}
    assert differences(con, "classifications")["rows"] > 100


START = datetime(2026, 3, 2, tzinfo=UTC)
#: Lifetimes (exp - iat) the generated tokens' claims give: edges, just past one, negative, huge.
LIFETIMES = [60, 300, 3600, 3601.5, 86400, 604800, 1e7, -5, 0, 900]


def generated_store(rows: int, thumbprint: str) -> duckdb.DuckDBPyConnection:
    """`rows` events over 30 hours, deterministic, every nullable column NULL somewhere. A token is
    `t`; its fingerprint and claims depend on `t` only (as real ones do). `thumbprint`: SQL for
    key_thumbprint (in terms of i, the event, and t)."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(create_statement("classifications"))
    con.execute(f"""
        INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, issuer, kid, alg,
            client_id, skew_seconds, token_sha256, token_claims, key_thumbprint, key_first_seen,
            service_jwks_fetched_at, source, source_partition, source_offset, classified_at)
        SELECT 'e' || i, ts, ['a', 'b', 'c'][i % 3 + 1], ['expired', 'stale_jwks', 'unknown_kid'][i // 3 % 3 + 1],
               ['verified', 'inferred'][i // 7 % 2 + 1],
               [[], [], [], ['alg_none'], ['kid_injection', 'alg_none'], ['alg_none', 'jku_injection', 'kid_injection'],
                ['alg_none', 'alg_none'], [NULL, 'alg_none'], []][i * 31 % 9 + 1],
               [], CASE WHEN i % 5 = 0 THEN NULL ELSE 'i' || i % 2 END,
               CASE WHEN i % 7 = 0 THEN NULL ELSE 'k' || i % 3 END,
               CASE WHEN i % 11 = 0 THEN NULL ELSE ['RS256', 'none'][i % 2 + 1] END,
               CASE WHEN i % 4 = 0 THEN NULL ELSE 'c' || i % 2 END,
               CASE WHEN i % 6 = 0 THEN NULL ELSE i * 37 % 200 - 100.5 END,
               CASE t % 10 WHEN 0 THEN NULL
                           WHEN 1 THEN '0000000000000000' || sha256(t::VARCHAR)  -- one prefix, the smallest
                           WHEN 2 THEN 'not-hex-' || t
                           WHEN 3 THEN upper(sha256((t + 2)::VARCHAR))  -- the prefix of token t + 2
                           WHEN 4 THEN t::VARCHAR
                           ELSE sha256(t::VARCHAR) END,
               CASE t % 8 WHEN 0 THEN NULL WHEN 1 THEN '{{"iat": 1000}}' WHEN 2 THEN '{{"iat": 1000, "exp": "soon"}}'
                          ELSE json_object('iat', 1000, 'exp', 1000 + {LIFETIMES}[t % {len(LIFETIMES)} + 1]) END,
               {thumbprint},
               CASE WHEN i % 4 = 1 THEN NULL ELSE ts - to_minutes(i % 500) END,
               CASE WHEN i % 3 = 2 THEN NULL ELSE ts - to_seconds(i * 7 % 100000) END,
               'test', 0, i, ts
        FROM (SELECT i, i * 13 % 300 AS t,
                     TIMESTAMPTZ '{START.isoformat()}' + to_microseconds(i * 7919 % 108000 * 1000003) AS ts
              FROM range({rows}) AS r(i))""")  # fmt: skip
    return con


def test_generated_rows_roll_up_as_before() -> None:
    """A token's events agree on key_thumbprint within a row: every column is the reference's."""
    con = generated_store(20_000, "CASE WHEN t % 3 = 0 THEN NULL ELSE 'thumb' END")
    found = differences(con, "classifications")
    assert found["rows"] > 1_000
    assert found | {"rows": 0} == {"only_new": 0, "only_old": 0, "rows": 0}


def test_a_subquery_source_with_a_parameter_rolls_up_as_before() -> None:
    con = generated_store(5_000, "CASE WHEN t % 3 = 0 THEN NULL ELSE 'thumb' END")
    source = "(SELECT * FROM classifications WHERE ts < ?)"  # as `queries.rolled` passes it
    until = [START.replace(hour=9)]
    new = con.execute(f"SELECT * FROM ({hourly_sql(source)}) ORDER BY ALL", until).fetchall()
    old = con.execute(f"SELECT * FROM ({_hourly_sql_reference(source)}) ORDER BY ALL", until).fetchall()
    assert new == old
    assert len(new) > 0


def test_where_a_tokens_events_disagree_on_the_key_only_lifetime_tokens_may_differ() -> None:
    """The reference counted a token's lifetime on an arbitrary event of it; everything else is the same."""
    con = generated_store(20_000, "CASE WHEN i % 5 = 0 THEN NULL ELSE 'thumb' END")
    others = [name for name in ALL_COLUMNS if name != "lifetime_tokens"]
    found = differences(con, "classifications", others)
    assert found["rows"] > 1_000
    assert found | {"rows": 0} == {"only_new": 0, "only_old": 0, "rows": 0}


@pytest.mark.parametrize("keys", [[None, "thumb", None], ["thumb", None], [None, None]])
def test_a_token_counts_in_its_lifetime_bucket_when_any_of_its_events_verified(keys: list[str | None]) -> None:
    con = duckdb.connect(":memory:")
    con.execute(create_statement("classifications"))
    for n, key in enumerate(keys):
        con.execute(
            """INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, issuer,
                   token_sha256, token_claims, key_thumbprint, source, source_partition, source_offset, classified_at)
               VALUES (?, ?, 's', 'expired', 'verified', [], [], 'i', 'ab', '{"iat": 0, "exp": 3600}', ?, 'test', 0,
                       ?, ?)""",
            [f"e{n}", START, key, n, START],
        )
    # the key is a key column (key hygiene): events with and without it are rows of their own, the token in each
    found = con.execute(
        f"SELECT tokens, lifetime_tokens, lifetime_events, max_lifetime_s FROM ({hourly_sql('classifications')})"
    ).fetchall()
    assert len(found) == len(set(keys))
    assert all(tokens == 1 for tokens, *_ in found)
    lifetime_tokens = [sum(cells) for cells in zip(*(row[1] for row in found), strict=True)]
    lifetime_events = [sum(cells) for cells in zip(*(row[2] for row in found), strict=True)]
    longest = max((row[3] for row in found if row[3] is not None), default=None)
    verified = sum(key is not None for key in keys)
    assert lifetime_tokens == [0] * 5 + [1 if verified else 0] + [0] * 7  # 3600 s: bucket (1800, 3600]
    assert lifetime_events == [0] * 5 + [verified] + [0] * 7
    assert longest == (3600.0 if verified else None)
