"""Hourly rollups of the verdicts: what survives when raw rows expire (issue 21).

The writer (`pipeline.io.store`) builds `classifications_hourly` with `hourly_sql` once an hour is
closed, and again (a new version) when a re-judge replaces a row dated in it; the readers
(`pipeline.queries`) read it for hours before `store_coverage.rolled_through` and raw rows after.
Nothing else defines the columns, so a reader and the writer cannot disagree.

One row per (hour, service, issuer, kid, client_id, cause, confidence, attack). `hour` is the
UTC hour the event's `ts` falls in (epoch arithmetic: no session time zone can move it).

**The double-count rule.** An event with no attack label has one row, `attack` NULL. An event
with attack labels has one row per label (`attack` = the label), so it appears in several rows:

- `events` counts each event exactly once: in its attack-NULL row, or in the row of its *first*
  attack label. `sum(events)` over any selection of rows, grouped by any key but `attack`, is
  the number of events: readers count events with `sum(events)`, never by adding rows.
- `attack_events` counts, per attack row, the events carrying that label (0 in attack-NULL
  rows): `sum(attack_events) GROUP BY attack` is the per-attack count of the raw queries (an
  event with two labels counts once under each, as `unnest(attacks)` does).
- "events without attacks" (`Filters.without_attacks`, rotation damage) is `attack IS NULL`;
  "events with attacks" is `sum(events) FILTER (WHERE attack IS NOT NULL)`.

Every other measure (`with_fetch_time`, `with_key`) follows `events` (counted once); the
extremes (`first_ts`, `last_ts`, the skews and ages) are over all the row's events, which is
the same set whichever row of an event one looks at.

**Distinct tokens.** A count of distinct tokens per hour does not add up across hours, so each
row keeps `token_sketch`: the `TOKEN_SKETCH` smallest 64-bit prefixes of its events' token
fingerprints (a k-minimum-values sketch, no extension needed). Sketches merge by union (take
the smallest again) across hours and rows, and `distinct_tokens_sql` reads the count back:
exact below `TOKEN_SKETCH` distinct tokens, an estimate (about 1/sqrt(k) relative error) above.
The prefixes are of the fingerprint (`token_sha256`), never of a token.

What rollups cannot answer (per-event tables, `explain`, token claims and lifetimes,
algorithms, median cache ages, rotation attribution finer than the hour) is available for the
raw period only; readers say so.
"""

from __future__ import annotations

#: The rollup's grain: an hour, in seconds.
HOUR_SECONDS = 3600

#: How many token fingerprint prefixes a row's sketch keeps (exact distinct counts below this).
TOKEN_SKETCH = 64

#: The key columns of a rollup row, in order (after `hour`).
KEY_COLUMNS: tuple[str, ...] = ("service", "issuer", "kid", "client_id", "cause", "confidence", "attack")

#: (name, DuckDB type) of `classifications_hourly`, in order. The writer creates the table from this.
HOURLY_COLUMNS: list[tuple[str, str]] = [
    ("hour", "TIMESTAMPTZ"),
    ("service", "VARCHAR"),
    ("issuer", "VARCHAR"),
    ("kid", "VARCHAR"),
    ("client_id", "VARCHAR"),
    ("cause", "VARCHAR"),
    ("confidence", "VARCHAR"),
    ("attack", "VARCHAR"),
    ("events", "BIGINT"),  # each event once (the double-count rule)
    ("attack_events", "BIGINT"),  # events carrying `attack` (0 when attack IS NULL)
    ("with_fetch_time", "BIGINT"),  # of `events`: the service reported its JWKS fetch time
    ("with_key", "BIGINT"),  # of `events`: the signature verified with a published key
    ("first_ts", "TIMESTAMPTZ"),
    ("last_ts", "TIMESTAMPTZ"),
    ("min_skew_seconds", "DOUBLE"),
    ("max_skew_seconds", "DOUBLE"),
    ("max_cache_age_s", "DOUBLE"),  # ts - service_jwks_fetched_at, the oldest key set seen
    ("max_key_age_s", "DOUBLE"),  # ts - key_first_seen (a stale_jwks row: the stale window)
    ("token_sketch", "UBIGINT[]"),  # k-minimum-values of the fingerprints (see `distinct_tokens_sql`)
]


def hourly_sql(source: str) -> str:
    """A SELECT over the relation `source` (classifications columns) giving `HOURLY_COLUMNS` rows, for every
    hour present in `source`. `source` is a table, a view or a parenthesised subquery with an alias-free name."""
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
                []::UBIGINT[]) AS token_sketch
FROM (
    SELECT epoch_us(c.ts) // {HOUR_SECONDS * 1_000_000} AS hour_no, c.service, c.issuer, c.kid, c.client_id,
           c.cause, c.confidence, c.attacks[label_no] AS attack, label_no, c.ts, c.service_jwks_fetched_at,
           c.key_thumbprint, c.skew_seconds, c.key_first_seen,
           {token_prefix_sql("c.token_sha256")} AS token_prefix
    FROM {source} AS c, unnest(generate_series(1, greatest(len(c.attacks), 1))) AS n(label_no)
)
GROUP BY hour_no, {keys}"""


def token_prefix_sql(fingerprint: str) -> str:
    """SQL: the first 64 bits of a hex fingerprint as a UBIGINT (NULL for no token or a non-hex value)."""
    return f"try_cast('0x' || left({fingerprint}, 16) AS UBIGINT)"


def merged_sketch_sql(column: str = "token_sketch") -> str:
    """SQL aggregate: the sketches of a group of rows merged into one (their union, smallest k kept)."""
    return f"coalesce(list_sort(list_distinct(flatten(list({column}))))[1:{TOKEN_SKETCH}], []::UBIGINT[])"


def distinct_tokens_sql(column: str = "token_sketch") -> str:
    """SQL aggregate: the distinct tokens of a group of rows, from their sketches (`sketch_count_sql`)."""
    return sketch_count_sql(merged_sketch_sql(column))


def sketch_count_sql(sketch: str) -> str:
    """SQL: the distinct tokens one sketch stands for.

    Exact when it holds fewer than `TOKEN_SKETCH` prefixes; otherwise the k-minimum-values
    estimate (k - 1) / (k-th smallest prefix / 2^64).
    """
    return f"""(CASE WHEN len({sketch}) < {TOKEN_SKETCH} THEN len({sketch})
             ELSE round(({TOKEN_SKETCH} - 1) / (({sketch})[{TOKEN_SKETCH}]::DOUBLE / 18446744073709551616.0))
        END)::BIGINT"""


def create_hourly_sql(table: str = "classifications_hourly") -> str:
    """`CREATE TABLE` for the rollups with `HOURLY_COLUMNS` (the writer's, and the tests' stand-in stores)."""
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in HOURLY_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {columns}\n)"
