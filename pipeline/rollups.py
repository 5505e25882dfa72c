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
exact below `TOKEN_SKETCH` distinct tokens, an estimate above (about 1/sqrt(k - 2) relative error,
some 18%). k is small because the prefixes are random 64-bit numbers that do not compress (at
most 256 bytes a row; disk per day of rollups in `bench/results.md`).
The prefixes are of the fingerprint (`token_sha256`), never of a token.

Rotation damage is attributed to its step from the rollups too, a row by its first event's time
(`queries.rotations._attributed`): exact when the step is not inside the row's hour.
Algorithms are a key (`alg`). Token lifetimes and cache ages are histograms over fixed buckets
(`LIFETIME_EDGES`, `CACHE_AGE_EDGES`): counts over a lifetime policy are exact when the policy
is an edge; medians are the upper edge of the bucket holding them (`histogram_median_sql`);
"tokens" in a lifetime bucket are the row's distinct tokens, added up across rows and hours (a
token rejected in several hours counts in each). Key hygiene's uses of a key come from the rows of its
`key_thumbprint` (a key column): counts and times exact, the signed-at range from `min_iat`/`max_iat`
(`queries.rotations.key_hygiene`); uses after a removal are exact except in the removal's own hour once
its raw rows expired. What rollups cannot answer (per-event tables, evidence, token claims, charts finer
than an hour) is available for the raw period only; readers say so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: The rollup's grain: an hour, in seconds.
HOUR_SECONDS = 3600

#: How many token fingerprint prefixes a row's sketch keeps (exact distinct counts below this).
TOKEN_SKETCH = 32

#: The key columns of a rollup row, in order (after `hour`).
KEY_COLUMNS: tuple[str, ...] = ("service", "issuer", "kid", "client_id", "cause", "confidence", "attack", "alg",
                                "key_thumbprint")

#: Upper edges (seconds) of the token-lifetime histogram's buckets: bucket k holds lifetimes in
#: (edge k-1, edge k], the last bucket everything longer. Lifetime policies that are an edge
#: (an hour, a day, …) count "over the policy" exactly from the buckets.
LIFETIME_EDGES: tuple[float, ...] = (60, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 604800)

#: Upper edges (seconds) of the cache-age histogram (`service_jwks_fetched_at` to the event).
CACHE_AGE_EDGES: tuple[float, ...] = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)

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
    ("alg", "VARCHAR"),  # the token header's alg as sent (NULL: none readable, or a rollup older than alg)
    # the key that verified the signature (NULL: none, or a rollup older than it: then `with_key` > 0 says so)
    ("key_thumbprint", "VARCHAR"),
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
    ("tokens", "BIGINT"),  # the row's distinct tokens (added across rows: a token counts once per row it is in)
    # Verified tokens with exp and iat, per `LIFETIME_EDGES` bucket: distinct tokens of the row, and their events
    ("lifetime_tokens", "BIGINT[]"),
    ("lifetime_events", "BIGINT[]"),
    ("max_lifetime_s", "DOUBLE"),
    ("cache_age_events", "BIGINT[]"),  # events with a fetch time per `CACHE_AGE_EDGES` bucket of their cache age
    # The signed-at (`iat`) range of the row's tokens whose key verified (key hygiene): the oldest, and the newest
    # not after the time it was rejected at (a token claiming a later iat says nothing of when the key signed)
    ("min_iat", "DOUBLE"),
    ("max_iat", "DOUBLE"),
]


#: How far past the wall clock an event's time may move retention: a hostile or mistaken `ts` (year 9999)
#: must not make every real day "older than the retention" and drop it.
FUTURE_SLACK = timedelta(days=1)
#: Microseconds in a day (`epoch_us(ts) // DAY_US` is its day number).
DAY_US = 86_400_000_000


def newest_allowed(now: datetime) -> datetime:
    """The latest event time retention may count from (the retention policy of every store: files and lake)."""
    return now + FUTURE_SLACK


def retention_cutoffs(newest_us: int, retention_days: int, rollup_retention_days: int) -> tuple[int, int]:
    """The first UTC day numbers kept raw and kept rolled up, the newest event being at `newest_us` (µs since
    the epoch, at most `newest_allowed`): whole days, the newest one's day counting as the first."""
    day = newest_us // DAY_US
    return day - retention_days + 1, day - rollup_retention_days + 1


def hourly_sql(source: str) -> str:
    """A SELECT over the relation `source` (classifications columns) giving `HOURLY_COLUMNS` rows, for every
    hour present in `source`. `source` is a table, a view or a parenthesised subquery with an alias-free name
    (written once: a subquery's `?` parameters stay in order).

    Aggregations, not a window over every event, because the writer runs this inside the consumer's
    publish: the first per (hour, keys, label, token) (`_per_token_sql`), the second adding a row's
    tokens up. A token's lifetime (exp - iat: the token's, whatever the events) is parsed once per token,
    from the largest claims text of its events that verified with a key (`_lifetimes_sql`): a token counts
    in `lifetime_tokens`, and its verified events in `lifetime_events`, in that lifetime's bucket when any
    of its events in the row verified with a key.
    """
    keys = ", ".join(KEY_COLUMNS)
    lifetimes = len(LIFETIME_EDGES) + 1
    lifetime_tokens = ", ".join(f"count(*) FILTER (WHERE lifetime_bucket = {k})" for k in range(lifetimes))
    lifetime_events = ", ".join(f"coalesce(sum(with_key) FILTER (WHERE lifetime_bucket = {k}), 0)"
                                for k in range(lifetimes))
    cache_sums = ", ".join(f"coalesce(sum(cache_{k}) FILTER (WHERE label_no = 1), 0)"
                           for k in range(len(CACHE_AGE_EDGES) + 1))
    return f"""WITH rollup_events AS NOT MATERIALIZED (SELECT * FROM {source} AS c),
     rollup_lifetimes AS ({_lifetimes_sql("rollup_events")})
SELECT to_timestamp(hour_no * {HOUR_SECONDS}) AS hour, {keys},
       sum(events)::BIGINT AS events,
       sum(attack_events)::BIGINT AS attack_events,
       sum(with_fetch_time)::BIGINT AS with_fetch_time,
       sum(with_key)::BIGINT AS with_key,
       min(first_ts) AS first_ts, max(last_ts) AS last_ts,
       min(min_skew_seconds) AS min_skew_seconds, max(max_skew_seconds) AS max_skew_seconds,
       max(max_cache_age_s) AS max_cache_age_s, max(max_key_age_s) AS max_key_age_s,
       coalesce(min(DISTINCT token_prefix, {TOKEN_SKETCH}) FILTER (WHERE label_no = 1), []::UBIGINT[])
           AS token_sketch,
       count(token_sha256) FILTER (WHERE label_no = 1)::BIGINT AS tokens,
       [{lifetime_tokens}]::BIGINT[] AS lifetime_tokens,
       [{lifetime_events}]::BIGINT[] AS lifetime_events,
       max(lifetime_s) AS max_lifetime_s,
       [{cache_sums}]::BIGINT[] AS cache_age_events,
       min(iat) AS min_iat, max(iat) FILTER (WHERE iat <= epoch(last_ts)) AS max_iat
FROM (
    SELECT *, {bucket_sql("lifetime_s", LIFETIME_EDGES)} AS lifetime_bucket,
           {token_prefix_sql("token_sha256")} AS token_prefix
    FROM (
        SELECT * EXCLUDE (token_lifetime_s, token_iat),
               CASE WHEN issuer IS NOT NULL AND with_key > 0 THEN token_lifetime_s END AS lifetime_s,
               -- every label's row of the token's events (the key is a key column: the row's events all verified)
               CASE WHEN issuer IS NOT NULL AND key_thumbprint IS NOT NULL THEN token_iat END AS iat
        FROM ({_per_token_sql("rollup_events")}) LEFT JOIN rollup_lifetimes USING (token_sha256)
    )
)
GROUP BY hour_no, {keys}"""


def _lifetimes_sql(events: str) -> str:
    """SQL: (token_sha256, token_lifetime_s, token_iat) for the tokens of `events` that verified with a key. Its
    own narrow aggregation: a claims text as the state of the wide one below does not spill. A token's claims
    are the same in each of its events, so its `iat` is parsed once, not per event."""
    return f"""SELECT token_sha256, try_cast(claims->>'exp' AS DOUBLE) - try_cast(claims->>'iat' AS DOUBLE)
               AS token_lifetime_s, try_cast(claims->>'iat' AS DOUBLE) AS token_iat
        FROM (SELECT token_sha256, max(token_claims) AS claims FROM {events}
              WHERE issuer IS NOT NULL AND key_thumbprint IS NOT NULL AND token_sha256 IS NOT NULL
              GROUP BY token_sha256)"""


def _per_token_sql(events: str) -> str:
    """SQL: per (hour, keys, label, token) of `events`, the partial measures and events per cache-age bucket
    (`cache_k`). The labels unnest in the select list (numbered, `label_no`; an event without has one row,
    label 1, `attack` NULL): a lateral join there costs a hash join of the whole input."""
    keys = ", ".join(KEY_COLUMNS)
    cache_counts = ", ".join(f"count(*) FILTER (WHERE cache_bucket = {k}) AS cache_{k}"
                             for k in range(len(CACHE_AGE_EDGES) + 1))
    return f"""SELECT hour_no, {keys}, label_no, token_sha256,
                   count(*) FILTER (WHERE label_no = 1) AS events,
                   count(attack) AS attack_events,
                   count(service_jwks_fetched_at) FILTER (WHERE label_no = 1) AS with_fetch_time,
                   count(key_thumbprint) FILTER (WHERE label_no = 1) AS with_key,
                   min(ts) AS first_ts, max(ts) AS last_ts,
                   min(skew_seconds) AS min_skew_seconds, max(skew_seconds) AS max_skew_seconds,
                   max(cache_age_s) AS max_cache_age_s,
                   max(epoch(ts) - epoch(key_first_seen)) AS max_key_age_s,
                   {cache_counts}
            FROM (
                SELECT *, {bucket_sql("cache_age_s", CACHE_AGE_EDGES)} AS cache_bucket
                FROM (
                    SELECT epoch_us(ts) // {HOUR_SECONDS * 1_000_000} AS hour_no, service, issuer, kid, client_id,
                           cause, confidence, alg, ts, service_jwks_fetched_at, key_thumbprint, skew_seconds,
                           key_first_seen, token_sha256, epoch(ts) - epoch(service_jwks_fetched_at) AS cache_age_s,
                           unnest(CASE WHEN len(attacks) = 0 THEN [NULL] ELSE attacks END) AS attack,
                           unnest(range(1, greatest(len(attacks), 1) + 1)) AS label_no
                    FROM {events}
                )
            )
            GROUP BY hour_no, {keys}, label_no, token_sha256"""


def bucket_sql(value: str, edges: tuple[float, ...]) -> str:
    """SQL: the 0-based histogram bucket of `value` (bucket k: (edge k-1, edge k]); NULL for a NULL value.
    A CASE ladder, not a list lambda: it runs once per event."""
    ladder = " ".join(f"WHEN {value} <= {edge} THEN {k}" for k, edge in enumerate(edges))
    return f"CASE WHEN {value} IS NULL THEN NULL {ladder} ELSE {len(edges)} END"


def merged_histogram_sql(column: str, edges: tuple[float, ...]) -> str:
    """SQL aggregate: the histograms of a group of rows added up bucket by bucket (a NULL list counts nothing)."""
    cells = ", ".join(f"coalesce(sum({column}[{k + 1}]), 0)" for k in range(len(edges) + 1))
    return f"[{cells}]::BIGINT[]"


def histogram_over_sql(histogram: str, edges: tuple[float, ...], over: float) -> str:
    """SQL: how many a histogram holds above `over`: exact when `over` is an edge; otherwise the bucket
    holding `over` counts whole (an upper bound)."""
    first = len([e for e in edges if e < over]) + (1 if over in edges else 0) + 1
    return f"coalesce(list_sum(({histogram})[{first}:]), 0)::BIGINT"


def histogram_median_sql(histogram: str, edges: tuple[float, ...], maximum: str) -> str:
    """SQL: the median a histogram stands for, as the upper edge of the bucket holding it, never above
    `maximum` (the group's largest value); NULL for an empty histogram. An approximation: the raw
    median is at most this, and above the edge before."""
    upper = f"{list(edges)}::DOUBLE[]"
    position = (f"list_position(list_transform(range(1, len({histogram}) + 1), "
                f"lambda i: 2 * list_sum(({histogram})[1:i]) >= list_sum({histogram})), true)")
    return (f"CASE WHEN coalesce(list_sum({histogram}), 0) > 0 THEN "
            f"least(coalesce(({upper})[{position}], {maximum}), {maximum}) END")


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


#: A rollup row's counts whose sign a reader filters rows by (`events > 0`, `with_key > 0 AND tokens > 0`, …).
ROW_FLAGS: tuple[str, ...] = ("events", "attack_events", "with_fetch_time", "with_key", "tokens")


def daily_sql(source: str) -> str:
    """A SELECT over `source` (`HOURLY_COLUMNS` rows of one or more closed days) giving the same columns with the
    rows of a day summed per key (`hour`: the day's start): the daily level readers read a whole closed day from
    (`pipeline.io.store_rollups`), a row where the hours had up to 24.

    Every measure aggregates across hours as readers aggregate it across rows: counts and histograms add up,
    extremes take the extreme, sketches merge (`merged_sketch_sql`: the smallest k of the union, the same
    whichever way the rows are grouped first). Hours whose rows differ in the sign of a `ROW_FLAGS` count stay
    apart (an attack row with `events` 0 is not summed into one with events), so a reader's row filter on those
    keeps what it kept of the hours. What it loses is the hour: a question that cuts a day, charts hours or
    places a row by its first event's time reads hours."""
    keys = ", ".join(KEY_COLUMNS)
    flags = ", ".join(f"{name} > 0" for name in ROW_FLAGS)
    return f"""SELECT to_timestamp(epoch_us(hour) // {DAY_US} * 86400) AS hour, {keys},
       sum(events)::BIGINT AS events, sum(attack_events)::BIGINT AS attack_events,
       sum(with_fetch_time)::BIGINT AS with_fetch_time, sum(with_key)::BIGINT AS with_key,
       min(first_ts) AS first_ts, max(last_ts) AS last_ts,
       min(min_skew_seconds) AS min_skew_seconds, max(max_skew_seconds) AS max_skew_seconds,
       max(max_cache_age_s) AS max_cache_age_s, max(max_key_age_s) AS max_key_age_s,
       {merged_sketch_sql()} AS token_sketch, sum(tokens)::BIGINT AS tokens,
       {merged_histogram_sql("lifetime_tokens", LIFETIME_EDGES)} AS lifetime_tokens,
       {merged_histogram_sql("lifetime_events", LIFETIME_EDGES)} AS lifetime_events,
       max(max_lifetime_s) AS max_lifetime_s,
       {merged_histogram_sql("cache_age_events", CACHE_AGE_EDGES)} AS cache_age_events,
       min(min_iat) AS min_iat, max(max_iat) AS max_iat
FROM {source}
GROUP BY epoch_us(hour) // {DAY_US}, {keys}, {flags}"""


def create_hourly_sql(table: str = "classifications_hourly") -> str:
    """`CREATE TABLE` for the rollups with `HOURLY_COLUMNS` (the writer's, and the tests' stand-in stores)."""
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in HOURLY_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {columns}\n)"
