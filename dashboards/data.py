"""Every read the dashboard makes of the store: one `load_*` function per page question.

Each `load_*` opens a short-lived read-only connection (`connect_readonly`), asks
`pipeline.queries` (aggregation stays in DuckDB), closes the connection, and returns small
data frames. The `cached_*` twins wrap them in `st.cache_data` with a TTL, so a page
re-run or a second viewer costs nothing while a consumer keeps writing; the benchmark
(`bench/bench_dashboard.py`) times the uncached `load_*` functions.

Times are UTC throughout (the connection's TimeZone is set to UTC, so bucket edges and
returned timestamps do not depend on the machine's zone).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import streamlit as st

from pipeline import queries
from pipeline.errors import StoreError
from pipeline.io.store_readers import connect_readonly, published_parts
from pipeline.queries import Filters
from pipeline.text import ATTACK_CLIENTS_NAMED, attack_clients
from pipeline.triage.window import LIVE_WITHIN as LIVE_WITHIN  # re-exported for the pages
from pipeline.triage.window import window_end

DEFAULT_DB = "jwtriage.duckdb"
CACHE_TTL = timedelta(seconds=30)
STATUS_TTL = timedelta(seconds=10)
CHOICES_TTL = timedelta(minutes=2)
#: Bucket width for a window of up to this length (about 100-350 buckets per chart).
BUCKETS: tuple[tuple[timedelta, str], ...] = (
    (timedelta(hours=2), "1 minute"),
    (timedelta(hours=12), "5 minutes"),
    (timedelta(days=2), "15 minutes"),
    (timedelta(days=14), "1 hour"),
    (timedelta(days=90), "6 hours"),
)
BUCKET_WIDTH = {
    "1 minute": timedelta(minutes=1),
    "5 minutes": timedelta(minutes=5),
    "15 minutes": timedelta(minutes=15),
    "1 hour": timedelta(hours=1),
    "6 hours": timedelta(hours=6),
    "1 day": timedelta(days=1),
}
#: DuckDB's time_bucket origin for widths under a month.
_BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)


def store_path_from(argv: Sequence[str], environ: Mapping[str, str]) -> Path:
    """The store to show: `--db PATH` after `--` on the streamlit command line, else JWTRIAGE_DB, else the default."""
    args = list(argv)
    for n, arg in enumerate(args):
        if arg == "--db" and n + 1 < len(args):
            return Path(args[n + 1])
        if arg.startswith("--db="):
            return Path(arg.removeprefix("--db="))
    return Path(environ.get("JWTRIAGE_DB") or DEFAULT_DB)


#: How often, and how long apart, `reading` tries again when the store cannot be opened (a writer holds it).
OPEN_ATTEMPTS, OPEN_PAUSE = 4, 0.15

_run = threading.local()


@contextmanager
def one_connection_per_run() -> Iterator[None]:
    """Within the block, every `reading` of a store on this thread shares one connection, closed at its end.

    app.py wraps each page run in it: a page asks three or four questions, and opening and
    closing a DuckDB connection costs more than most of them (about 40-100 ms each).
    """
    if getattr(_run, "connections", None) is not None:  # nested: the outer block owns them
        yield
        return
    _run.connections = {}
    try:
        yield
    finally:
        connections, _run.connections = _run.connections, None
        for con in connections.values():
            con.close()


def _open(path: str | Path) -> duckdb.DuckDBPyConnection:
    for attempt in range(OPEN_ATTEMPTS):
        try:
            con = connect_readonly(path)
        except StoreError:
            if attempt == OPEN_ATTEMPTS - 1 or not store_exists(path):
                raise
            time.sleep(OPEN_PAUSE * (attempt + 1))
        else:
            return con  # its session is UTC (`connect_readonly`)
    raise AssertionError("unreachable")


@contextmanager
def reading(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for one question: the page run's (see `one_connection_per_run`), else a
    fresh one closed right after. Never held between page runs.

    A store that cannot be opened at this instant is tried again a few times over about half a
    second before `StoreError` reaches the page.
    """
    shared = getattr(_run, "connections", None)
    if shared is not None:
        key = str(path)
        if key not in shared:
            shared[key] = _open(path)
        yield shared[key]
        return
    con = _open(path)
    try:
        yield con
    finally:
        con.close()


def store_exists(path: str | Path) -> bool:
    """The store file itself (demo, backfill) or the snapshots consumers publish beside it (`<path>.parts/`)."""
    return Path(path).exists() or bool(published_parts(path))


def frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns))


# -- the store and the reference time -------------------------------------------------------


@dataclass(frozen=True)
class StoreStatus:
    """What is in the store, or why there is nothing to show (`state` other than "ok")."""

    path: str
    state: str  # ok | empty | missing | not_a_store | unreadable
    message: str = ""
    events: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    last_classified_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def how_to_fill(path: str) -> str:
    return (
        f"Fill it with a simulated day: `jwtriage demo --db {path}`, or from Kafka: `jwtriage consume --db {path}`. "
        "To look at another store: `jwtriage dashboard --db PATH`."
    )


def load_status(path: str) -> StoreStatus:
    """Whether the store exists and holds events; its time range and the values the filters offer."""
    if not store_exists(path):
        return StoreStatus(path, "missing", f"There is no store at `{path}` yet. {how_to_fill(path)}")
    try:
        with reading(path) as con:
            summary = queries.store_summary(con)
            if not summary["events"]:
                return StoreStatus(
                    path, "empty", f"The store `{path}` holds no classified events yet. {how_to_fill(path)}"
                )
    except duckdb.CatalogException:
        return StoreStatus(
            path, "not_a_store", f"`{path}` is a DuckDB file but not a jwtriage store (no classifications table)."
        )
    except (StoreError, duckdb.Error) as exc:
        return StoreStatus(path, "unreadable", f"Cannot read the store right now: {exc}")
    return StoreStatus(
        path,
        "ok",
        events=int(summary["events"]),
        first_ts=summary["first_ts"],
        last_ts=summary["last_ts"],
        last_classified_at=summary["last_classified_at"],
    )


@dataclass(frozen=True)
class Choices:
    """What the filter widgets offer: the services, issuers and causes in a time range."""

    services: tuple[str, ...]
    issuers: tuple[str, ...]
    causes: tuple[str, ...]


def load_choices(path: str, since: datetime | None = None, until: datetime | None = None) -> Choices:
    """The values seen in `[since, until)`: a filter offers what the chosen time range holds."""
    with reading(path) as con:
        values = queries.filter_values(con, Filters(since=since, until=until))
    return Choices(tuple(values["service"]), tuple(values["issuer"]), tuple(values["cause"]))


@dataclass(frozen=True)
class Reference:
    """The moment "last hour" and "now" mean: the wall clock while a consumer writes, else the newest event."""

    at: datetime
    end: datetime  # exclusive end of windows that end "now"
    live: bool


def reference_time(last_ts: datetime, now: datetime) -> Reference:
    """Triage's rule (`pipeline.triage.window.window_end`): now while live (`LIVE_WITHIN`), else the newest event."""
    at, live = window_end(last_ts, now)
    if live:  # rounded up to the minute so that cached answers are reused within it
        return Reference(at=at, end=at.replace(second=0, microsecond=0) + timedelta(minutes=1), live=True)
    return Reference(at=at, end=at + timedelta(microseconds=1), live=False)


def choose_bucket(length: timedelta) -> str:
    for limit, bucket in BUCKETS:
        if length <= limit:
            return bucket
    return "1 day"


def bucket_grid(since: datetime, until: datetime, bucket: str) -> pd.DatetimeIndex:
    """Every bucket start of `[since, until)`, aligned as DuckDB's time_bucket aligns them."""
    width = BUCKET_WIDTH[bucket]
    first = _BUCKET_ORIGIN + ((since - _BUCKET_ORIGIN) // width) * width
    return pd.date_range(first, until, freq=width, inclusive="left", tz=UTC, unit="us")


def zero_filled(rows: list[dict[str, Any]], key: str, since: datetime, until: datetime, bucket: str) -> pd.DataFrame:
    """bucket × `key` counts with the empty buckets present as zeros (stacked areas need them)."""
    counts = frame(rows, ["bucket", key, "events"])
    if counts.empty:
        return counts.astype({"events": "int64"})
    counts["bucket"] = pd.to_datetime(counts["bucket"], utc=True).dt.as_unit("us")
    grid = bucket_grid(since, until, bucket).union(pd.DatetimeIndex(counts["bucket"].unique()))
    full = pd.MultiIndex.from_product([grid, sorted(counts[key].unique())], names=["bucket", key])
    events = counts.groupby(["bucket", key])["events"].sum().reindex(full, fill_value=0)
    return events.astype("int64").reset_index()


# -- Overview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    bucket: str
    series: pd.DataFrame  # bucket, cause, events, per_minute (zero-filled)
    causes: pd.DataFrame  # cause, events, previous, verified, with_attacks, previous_with_attacks
    rotations: pd.DataFrame  # issuer, kid, kty, action, ts
    confidence: dict[str, int] = field(default_factory=dict)  # events per confidence (verified, inferred, reported)


def load_overview(
    path: str,
    since: datetime,
    until: datetime,
    services: tuple[str, ...] = (),
    issuers: tuple[str, ...] = (),
    causes: tuple[str, ...] = (),
    compare: bool = True,
) -> Overview:
    """The trend, the totals per cause (and, with `compare`, for the period as long just before), the rotations."""
    filters = Filters(since, until, services or None, issuers or None, causes or None)
    bucket = choose_bucket(until - since)
    with reading(path) as con:
        series = queries.failures_per_bucket(con, bucket, filters)  # one scan: the chart and the totals
        before = Filters(since - (until - since), since, filters.services, filters.issuers, filters.causes)
        earlier = queries.cause_counts(con, before) if compare else []
        steps = queries.rotations(con, Filters(since=since, until=until, issuers=issuers or None))
        confidence = {r["confidence"]: int(r["events"]) for r in queries.confidence_counts(con, filters)}
    totals = frame(series, ["bucket", "cause", "events", "verified", "with_attacks"])
    by_cause = totals.groupby("cause", as_index=False)[["events", "verified", "with_attacks"]].sum()
    previous = {r["cause"]: int(r["events"]) for r in earlier}
    previous_attacks = {r["cause"]: int(r["with_attacks"]) for r in earlier}
    for cause in set(previous) - set(by_cause["cause"]):
        by_cause.loc[len(by_cause)] = [cause, 0, 0, 0]
    by_cause["previous"] = by_cause["cause"].map(previous).fillna(0).astype("int64")
    by_cause["previous_with_attacks"] = by_cause["cause"].map(previous_attacks).fillna(0).astype("int64")
    by_cause = by_cause.sort_values(["events", "previous", "cause"], ascending=[False, False, True])
    filled = zero_filled(
        [{k: r[k] for k in ("bucket", "cause", "events")} for r in series], "cause", since, until, bucket
    )
    filled["per_minute"] = filled["events"] / (BUCKET_WIDTH[bucket].total_seconds() / 60)
    return Overview(
        bucket=bucket,
        series=filled,
        causes=by_cause[
            ["cause", "events", "previous", "verified", "with_attacks", "previous_with_attacks"]
        ].reset_index(drop=True),
        rotations=frame(steps, ["issuer", "kid", "kty", "action", "ts"]),
        confidence=confidence,
    )


# -- Rotations -------------------------------------------------------------------------------


def load_rotations(path: str, since: datetime | None = None) -> pd.DataFrame:
    """The rotation steps (key added, key removed) from `since` on, newest first, with the failures each caused."""
    with reading(path) as con:
        steps = queries.rotations(con, Filters(since=since))
        caused = queries.step_failure_counts(con, since)
    table = frame(steps, ["issuer", "kid", "kty", "action", "ts"])
    table["failures"] = [caused.get((s["issuer"], s["kid"], s["action"], s["ts"]), 0) for s in steps]
    return table.iloc[::-1].reset_index(drop=True)


@dataclass(frozen=True)
class RotationDetail:
    step: dict[str, Any]
    since: datetime
    until: datetime
    bucket: str
    services: pd.DataFrame  # one row per service, with verdict
    series: pd.DataFrame  # bucket, service, events
    retired: dict[str, Any] | None  # the removal step of the key this rotation retires, if any
    retired_usage: pd.DataFrame  # rejected tokens signed by the retired key after its removal, per service
    steps_after: int = 0


SERVICE_COLUMNS = (
    "service",
    "issuer_events",
    "failures",
    "causes",
    "first_failure",
    "last_failure",
    "cache_age_median_s",
    "cache_age_max_s",
    "stale_window_s",
    "recovered_after_s",
)


def verdict(failures: int, last_failure: datetime | None, end: datetime, quiet: timedelta) -> str:
    """recovered / still failing / never affected, for one service after one rotation step."""
    if not failures or last_failure is None:
        return "never affected"
    return "still failing" if last_failure >= end - quiet else "recovered"


def retired_by(step: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The removal the step belongs to: itself when it removes a key, else the issuer's next removal."""
    if step["action"] == "removed":
        return step
    later = [s for s in steps if s["issuer"] == step["issuer"] and s["action"] == "removed" and s["ts"] >= step["ts"]]
    return min(later, key=lambda s: s["ts"]) if later else None


def load_rotation(
    path: str, step: dict[str, Any], window: timedelta, end: datetime, quiet: timedelta = timedelta(minutes=30)
) -> RotationDetail:
    """One step's impact: the failures it caused (as `queries.rotation_impact` attributes them) per service in
    `window` after it (and as long before it), verdicts, old key."""
    since = step["ts"] - window
    until = min(step["ts"] + window, end)
    bucket = choose_bucket(until - since)
    with reading(path) as con:
        services = queries.rotation_services(con, step, since, until)
        series = queries.step_failures_over_time(con, step, since, until, bucket)
        retired = retired_by(step, queries.rotations(con, Filters(issuers=(step["issuer"],))))
        usage = queries.key_usage(con, retired["kid"], retired["ts"], end) if retired else []
    table = frame(services, SERVICE_COLUMNS)
    table["verdict"] = [
        verdict(int(f), last, until, quiet) for f, last in zip(table["failures"], table["last_failure"], strict=True)
    ]
    # time to recover: the shared definition (`queries.rotation_impact`), shown once the service has recovered
    recover = zip(table["verdict"], table["recovered_after_s"], strict=True)
    table["recovered_after_s"] = [float(r) if v == "recovered" else None for v, r in recover]
    return RotationDetail(
        step=step,
        since=since,
        until=until,
        bucket=bucket,
        services=table,
        series=frame(series, ["bucket", "service", "events"]),
        retired=retired,
        retired_usage=frame(
            usage, ["service", "events", "tokens", "clients", "main_cause", "some_clients", "first_seen", "last_seen"]
        ),
    )


# -- Triage ----------------------------------------------------------------------------------

TOP_COLUMNS = ("service", "client_id", "kid")


@dataclass(frozen=True)
class Triage:
    by_day: pd.DataFrame  # days_ago, cause, events
    top: dict[str, pd.DataFrame] = field(default_factory=dict)  # column → value, cause, events, total
    attacks: pd.DataFrame = field(default_factory=pd.DataFrame)
    last_attacks: pd.DataFrame = field(default_factory=pd.DataFrame)  # over the past days, when none in the window
    attack_events: int = 0  # events in the window with any attack label (one event may carry several)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # drill-down options in the window


def with_client_ids(attacks: pd.DataFrame, named: list[dict[str, Any]]) -> pd.DataFrame:
    """The attack table with `top_clients` ("web-app (13), cli (2)") and `no_client_id` (events without one)."""
    out = attacks.copy()
    found = [attack_clients(named, a, int(n)) for a, n in zip(out["attack"], out["clients"], strict=True)]
    out["top_clients"] = [tops for tops, _ in found]
    out["no_client_id"] = [missing for _, missing in found]
    return out


def load_triage(
    path: str,
    end: datetime,
    length: timedelta,
    days: int,
    services: tuple[str, ...] = (),
    issuers: tuple[str, ...] = (),
) -> Triage:
    window = Filters(end - length, end, services or None, issuers or None)
    with reading(path) as con:
        by_day = queries.same_window_by_day(con, end, length, days, window)
        top = {
            column: frame(queries.top_by_cause(con, column, window, 12), ["value", "cause", "events", "total"])
            for column in TOP_COLUMNS
        }
        attack_rows = queries.attacks(con, window)
        attacked = sum(int(r["with_attacks"]) for r in queries.cause_counts(con, window)) if attack_rows else 0
        earlier = Filters(end - timedelta(days=days), end, services or None, issuers or None)
        last_rows = [] if attack_rows else queries.attacks(con, earlier)
        named = queries.attack_client_ids(con, window if attack_rows else earlier, ATTACK_CLIENTS_NAMED)
        choices = {
            column: tuple(str(r["value"]) for r in queries.top(con, column, window, 500)) for column in TOP_COLUMNS
        }
    choices["cause"] = tuple(r["cause"] for r in by_day if r["days_ago"] == 0)
    attack_columns = ["attack", "events", "services", "clients", "first_seen", "last_seen"]
    return Triage(
        by_day=frame(by_day, ["days_ago", "cause", "events"]),
        top=top,
        attacks=with_client_ids(frame(attack_rows, attack_columns), named),
        last_attacks=with_client_ids(frame(last_rows, attack_columns), named),
        attack_events=attacked,
        choices=choices,
    )


EVENT_COLUMNS = (
    "ts",
    "event_id",
    "service",
    "cause",
    "confidence",
    "attacks",
    "issuer",
    "kid",
    "alg",
    "client_id",
    "skew_seconds",
    "detail",
    "token_fp",
)


def load_events(
    path: str,
    since: datetime,
    until: datetime,
    services: tuple[str, ...] = (),
    issuers: tuple[str, ...] = (),
    causes: tuple[str, ...] = (),
    client_ids: tuple[str, ...] = (),
    kids: tuple[str, ...] = (),
    limit: int = 500,
) -> pd.DataFrame:
    """The newest events of a drill-down, with their `detail` evidence and the token's fingerprint only."""
    filters = Filters(since, until, services or None, issuers or None, causes or None)
    with reading(path) as con:
        rows = queries.events(con, filters, limit, client_ids, kids)
    return frame(rows, EVENT_COLUMNS)


def load_evidence(path: str, event_id: str) -> dict[str, Any] | None:
    with reading(path) as con:
        return queries.event_evidence(con, event_id)


# -- Dead letters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetters:
    total: int  # every dead letter in the store, whatever the filters
    reasons: pd.DataFrame  # kind, reason (numbers as N), example, records, sources, first/last_received
    records: pd.DataFrame  # the newest matching records, with their redacted excerpts


DEAD_LETTER_COLUMNS = (
    "received_at", "source", "source_partition", "source_offset", "kind", "reason", "excerpt", "written_ts"
)  # fmt: skip


def load_dead_letters(
    path: str, kinds: tuple[str, ...] = (), reasons: tuple[str, ...] = (), limit: int = 200
) -> DeadLetters:
    """The records the consumer set aside, per reason, and the newest of them (excerpts are token-free)."""
    with reading(path) as con:
        try:
            every = queries.dead_letter_reasons(con)
            records = queries.dead_letter_records(con, kinds, reasons, limit)
        except duckdb.CatalogException:  # a store from before dead letters were kept
            every, records = [], []
    columns = ["kind", "reason", "example", "records", "sources", "first_received", "last_received"]
    table = frame(every, columns)
    shown = table[table["kind"].isin(kinds)] if kinds else table
    return DeadLetters(
        total=int(table["records"].sum()) if len(table) else 0,
        reasons=shown.reset_index(drop=True),
        records=frame(records, DEAD_LETTER_COLUMNS),
    )


# -- Live ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    since: datetime
    until: datetime
    summary: dict[str, Any]
    series: pd.DataFrame  # bucket (minute), cause, events (zero-filled)
    recent: pd.DataFrame
    positions: pd.DataFrame
    last_5_min: int


def load_live(path: str, now: datetime, length: timedelta = timedelta(hours=1)) -> Live:
    """The last `length` of events per minute and cause, the newest events, and the consumer's positions.

    The window ends at `now` while a consumer writes, else at the newest event (see `reference_time`).
    """
    with reading(path) as con:
        summary = queries.store_summary(con)
        last_ts = summary["last_ts"]
        until = reference_time(last_ts, now).end if last_ts else now
        since = until - length
        window = Filters(since=since, until=until)
        series = [
            {k: r[k] for k in ("bucket", "cause", "events")}
            for r in queries.failures_per_bucket(con, "1 minute", window)
        ]
        recent = queries.events(con, window, limit=25)
        last_5 = queries.total_events(con, Filters(since=until - timedelta(minutes=5), until=until))
        try:
            positions = queries.source_positions(con)
        except duckdb.CatalogException:
            positions = []
    return Live(
        since=since,
        until=until,
        summary=summary,
        series=zero_filled(series, "cause", since, until, "1 minute"),
        recent=frame(recent, EVENT_COLUMNS),
        positions=frame(positions, ["source", "source_partition", "next_offset", "updated_at"]),
        last_5_min=last_5,
    )


# -- the cached twins (the pages call these) -------------------------------------------------

cached_status = st.cache_data(ttl=STATUS_TTL, show_spinner=False)(load_status)
cached_choices = st.cache_data(ttl=CHOICES_TTL, show_spinner=False)(load_choices)
cached_overview = st.cache_data(ttl=CACHE_TTL, show_spinner="Counting failures…")(load_overview)
cached_rotations = st.cache_data(ttl=CACHE_TTL, show_spinner=False)(load_rotations)
cached_rotation = st.cache_data(ttl=CACHE_TTL, show_spinner="Following the rotation…")(load_rotation)
cached_triage = st.cache_data(ttl=CACHE_TTL, show_spinner="Comparing with past days…")(load_triage)
cached_events = st.cache_data(ttl=CACHE_TTL, show_spinner=False)(load_events)
cached_evidence = st.cache_data(ttl=CACHE_TTL, show_spinner=False)(load_evidence)
cached_dead_letters = st.cache_data(ttl=CACHE_TTL, show_spinner=False)(load_dead_letters)
