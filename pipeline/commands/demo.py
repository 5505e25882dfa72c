"""`jwtriage demo`: the embedded default, end to end on the same path the consumer uses.

simulate a key-rotation scenario → interleave its three streams as a consumer would see
them → the runner → a fresh DuckDB store → a triage summary, with the accuracy against
the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import queries
from pipeline.causes import cause_label
from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_OK, scenario_flags
from pipeline.config import Config
from pipeline.engine.identifiers import generate_key, hasher_from
from pipeline.io.memory import ListSource, TimedRecord, interleave
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.records import Batch, Position, RecordKind
from pipeline.runner import Pipeline, RunStats, run
from pipeline.simulator import Record, Scenario, simulate
from pipeline.text import human_duration, utc_text

DEMO_DB = Path("jwtriage-demo.duckdb")
#: The topic names the demo's positions use, as the Kafka consumer would.
TOPICS = {RecordKind.EVENT: "auth.failures", RecordKind.SAMPLE: "auth.tokens.sampled", RecordKind.SNAPSHOT: "auth.jwks"}


@dataclass(frozen=True)
class DemoResult:
    db: Path
    events: int
    stored: int
    dead_letters: int
    correct: int
    judged_against_truth: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.judged_against_truth if self.judged_against_truth else 0.0


def _timed(records: list[Record], kind: RecordKind) -> list[TimedRecord]:
    topic = TOPICS[kind]
    return [TimedRecord(r.ts, kind, r.value, Position(topic, 0, n)) for n, r in enumerate(records)]


def scenario_envelopes(scenario: Scenario) -> list[Any]:
    """The scenario's three streams merged by production time, as a consumer receives them."""
    return list(
        interleave(
            _timed(scenario.snapshots, RecordKind.SNAPSHOT),
            _timed(scenario.samples, RecordKind.SAMPLE),
            _timed(scenario.events, RecordKind.EVENT),
        )
    )


def scenario_config(scenario: Scenario, db: Path) -> Config:
    """The scenario's config, storing at `db`, with a throwaway hash key: random per call, never saved."""
    raw = tomllib.loads(scenario.config_toml)
    raw["store"] = {"path": str(db), "hash_key": generate_key()}
    return Config.model_validate({**raw, "source": "<demo scenario>"})


def accuracy(db: Path, truth: list[dict[str, Any]]) -> tuple[int, int, Counter[tuple[str, str]]]:
    """(correct, compared, confusions) of stored causes against the ground truth."""
    con = connect_readonly(db)
    try:
        stored = dict(con.execute("SELECT event_id, cause FROM classifications").fetchall())
    finally:
        con.close()
    correct, compared, confusions = 0, 0, Counter[tuple[str, str]]()
    for row in truth:
        if row.get("dead_letter") or row.get("event_id") is None:
            continue
        compared += 1
        got = stored.get(row["event_id"])
        if got == row["cause"]:
            correct += 1
        else:
            confusions[(row["cause"], str(got))] += 1
    return correct, compared, confusions


def run_demo(
    console: Console, db: Path = DEMO_DB, seed: int = 7, events: int = 20_000, hours: float = 24.0
) -> DemoResult:
    """Simulate, run the pipeline into a fresh store at `db`, and print the summary."""
    with console.status(f"Simulating {events:,} auth-failure events over {hours:g} h (seed {seed})…"):
        scenario = simulate(seed=seed, events=events, hours=hours)
    envelopes = scenario_envelopes(scenario)
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    config = scenario_config(scenario, db)
    pipeline = Pipeline(config)
    progress = Progress(
        TextColumn("[bold]Classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress, Store(db) as store:
        hasher = hasher_from(config.store.hash_key)
        if hasher is not None:
            store.note_hash_key(hasher.kid)
        task = progress.add_task("classify", total=len(envelopes))

        def advance(batch: Batch, stats: RunStats) -> None:
            progress.update(task, completed=stats.records)

        stats = run(ListSource(envelopes, batch_size=2_000), pipeline, store, on_batch=advance)
    correct, compared, confusions = accuracy(db, scenario.truth)
    con = connect_readonly(db)
    try:
        stored = queries.total_events(con)
        dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()
        result = DemoResult(
            db, len(scenario.events), stored, int(dead[0]) if dead else 0, correct, compared, stats.seconds
        )
        print_summary(console, con, result, confusions)
        console.print(
            f"[dim]Personal claims (sub, email, ...) are stored as HMACs under a throwaway key (id "
            f"{hasher.kid if hasher else '-'}): random for this run and not saved anywhere, so nobody can "
            "reverse them, nor join these rows with another store's. `consume` needs a kept key (jwtriage keygen).[/]"
        )
    finally:
        con.close()
    return result


def print_summary(
    console: Console, con: Any, result: DemoResult, confusions: Counter[tuple[str, str]] | None = None
) -> None:
    """The triage summary: causes, rotations and what they caused, cache ages, attacks, accuracy."""
    rate = result.events / result.seconds if result.seconds else 0.0
    console.print(
        f"\n[bold]jwtriage demo[/]: {result.events:,} events → {result.stored:,} classified, "
        f"{result.dead_letters:,} dead letters, in {result.seconds:.1f} s ({rate:,.0f} events/s) → {result.db}\n"
    )
    for section in (_print_causes, _print_rotations, _print_cache_ages, _print_attacks):
        section(console, con)

    verdict = "[green]" if result.accuracy >= 0.99 else "[red]"
    console.print(
        f"Accuracy against the simulator's ground truth: {verdict}{result.accuracy:.2%}[/] "
        f"({result.correct:,} of {result.judged_against_truth:,} events)"
    )
    for (want, got), count in (confusions or Counter()).most_common(5):
        console.print(f"  [dim]{count:,} × truth {want} → classified {got}[/]")
    console.print(
        f"\nNext: [bold]jwtriage dashboard --db {result.db}[/] (http://127.0.0.1:8501), or query it: "
        f'duckdb {result.db} "SELECT cause, count(*) FROM classifications GROUP BY ALL"'
    )


def _print_causes(console: Console, con: Any) -> None:
    """Events per cause, with the label and how many were verified."""
    causes = Table(title="Why were tokens rejected?", title_justify="left")
    for column, justify in (
        ("cause", "left"),
        ("", "left"),
        ("events", "right"),
        ("share", "right"),
        ("verified", "right"),
    ):
        causes.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in queries.cause_counts(con):
        causes.add_row(
            row["cause"],
            cause_label(row["cause"]),
            f"{row['events']:,}",
            f"{row['percent']}%",
            f"{row['verified']:,}",
        )
    console.print(causes)


def _print_rotations(console: Console, con: Any) -> None:
    """Each rotation step and the failures it caused per service in the 12 h after it."""
    impact = Table(title="Key rotations and the failures each caused (12 h after the step)", title_justify="left")
    for column in ("when", "issuer", "step", "service", "failures", "causes", "last failure after"):
        impact.add_column(column)
    steps = queries.rotations(con)
    hits: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in queries.rotation_impact(con, timedelta(hours=12)):
        hits.setdefault((row["issuer"], row["kid"], row["action"], row["step_ts"]), []).append(row)
    for step in steps:
        key = (step["issuer"], step["kid"], step["action"], step["ts"])
        label = f"{step['action']} {step['kid']}"
        when = utc_text(step["ts"], "weekday_time")
        affected = hits.get(key, [])
        if not affected:
            impact.add_row(when, step["issuer"], label, "[dim]none affected[/]", "", "", "")
        for n, row in enumerate(affected):
            impact.add_row(
                when if n == 0 else "",
                step["issuer"] if n == 0 else "",
                label if n == 0 else "",
                row["service"],
                f"{row['failures']:,}",
                ", ".join(row["causes"]),
                _duration(row["recovered_after"]),
            )
    console.print(impact)


def _print_cache_ages(console: Console, con: Any) -> None:
    """Each service's JWKS cache age as its events show it."""
    caches = Table(title="JWKS cache age per service, as the events show it", title_justify="left")
    for column in ("service", "events", "median reported age", "max reported age", "stale_jwks", "stale window"):
        caches.add_column(column, justify="left" if column == "service" else "right")
    for row in queries.cache_age_by_service(con):
        caches.add_row(
            row["service"],
            f"{row['events']:,}",
            _seconds(row["reported_age_median_s"]),
            _seconds(row["reported_age_max_s"]),
            f"{row['stale_jwks']:,}",
            _seconds(row["stale_window_s"]),
        )
    console.print(caches)


def _print_attacks(console: Console, con: Any) -> None:
    """The attack patterns seen, when any."""
    attack_rows = queries.attacks(con)
    if attack_rows:
        table = Table(title="Attacks seen", title_justify="left")
        for column in ("attack", "events", "services", "clients", "first", "last"):
            table.add_column(column)
        for row in attack_rows:
            table.add_row(
                row["attack"],
                f"{row['events']:,}",
                ", ".join(row["services"]),
                str(row["clients"]),
                utc_text(row["first_seen"], "weekday_time"),
                utc_text(row["last_seen"], "weekday_time"),
            )
        console.print(table)


def _seconds(value: float | None) -> str:
    return "–" if value is None else _duration(timedelta(seconds=float(value)))


def _duration(value: timedelta | None) -> str:
    return "–" if value is None else human_duration(value.total_seconds())


def cmd_demo(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    db = Path(args.db or os.environ.get("JWTRIAGE_DB") or DEMO_DB)
    result = run_demo(Console(), db=db, seed=args.seed, events=args.events, hours=args.hours)
    return EXIT_OK if result.stored else EXIT_BAD_INPUT


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="simulate a key-rotation scenario, classify it into ./jwtriage-demo.duckdb, print the triage summary",
        description="The embedded default: simulate a day of auth failures around key rotations (stale JWKS "
        "caches, clock skew, wrong audiences, attacks, malformed input), run them through the same pipeline as "
        "the Kafka consumer into a fresh DuckDB store, and print the triage summary with the accuracy against "
        "the simulator's ground truth.",
    )
    demo.add_argument("--db", help="store to (re)create (default: ./jwtriage-demo.duckdb)")
    scenario_flags(demo)
    demo.set_defaults(handler=cmd_demo)
