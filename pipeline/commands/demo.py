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
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import queries
from pipeline.causes import ROTATION_DAMAGE, cause_label, confidence_text, issuer_fault_text
from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_OK, scenario_flags, terminal
from pipeline.config import Config
from pipeline.engine.identifiers import generate_key, hasher_from
from pipeline.errors import UsageError
from pipeline.io.memory import ListSource, TimedRecord, interleave
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import parts_dir
from pipeline.records import Batch, Position, RecordKind
from pipeline.runner import Pipeline, RunStats, run
from pipeline.simulator import Record, Scenario, simulate
from pipeline.simulator.output import CONFIG_HEADER, with_tables
from pipeline.tables import keep_words_whole, summary_table
from pipeline.text import ATTACK_CLIENTS_NAMED, attack_clients_text, human_duration, utc_text

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
    config: Path | None = None  # the scenario's config, written beside the store

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


def write_demo_config(scenario: Scenario, db: Path) -> Path:
    """The scenario's config beside the store (`jwtriage-demo.toml` beside `jwtriage-demo.duckdb`).

    Every reader given `--db` finds it there when no `--config`, JWTRIAGE_CONFIG or
    ./jwtriage.toml is in the way (`commands.common.config_path`), so `explain`, `triage` and
    `report` know the demo's services; a ./jwtriage.toml of your own is never touched.
    """
    path = db.with_suffix(".toml")
    path.write_text(with_tables(scenario.config_toml, store=str(db)), encoding="utf-8")
    return path


def check_demo_target(db: Path) -> None:
    """Refuse a `--db` (or JWTRIAGE_DB) whose store or config the demo did not write: it replaces both.

    A demo store is a plain file with the scenario's config beside it (`write_demo_config`). A
    consumer's store has a `.parts` folder; a config of your own, or any other file at the path,
    has not the scenario's first line. Nothing is deleted until this has passed.
    """
    config = db.with_suffix(".toml")
    hint = "hint: choose another path, e.g. --db jwtriage-demo.duckdb, or delete it yourself if it is a demo's"
    if parts_dir(db).exists():
        raise UsageError(f"{db} is a consumer's store (it has {parts_dir(db)}): the demo replaces only its own "
                         f"stores ({hint})")
    if config.is_dir():
        raise UsageError(f"{config} is a folder, and the demo writes its config there ({hint})")
    if config.exists():
        with config.open(encoding="utf-8", errors="replace") as text:
            if not text.readline().startswith(CONFIG_HEADER):
                raise UsageError(f"{config} was not written by jwtriage demo, and the demo writes its config "
                                 f"there: not overwriting it ({hint})")
    elif db.exists():
        raise UsageError(f"{db} exists without the demo's config beside it ({config}): not replacing it ({hint})")


def run_demo(
    console: Console, db: Path = DEMO_DB, seed: int = 7, events: int = 20_000, hours: float = 24.0
) -> DemoResult:
    """Simulate, run the pipeline into a fresh store at `db`, and print the summary."""
    check_demo_target(db)
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
    config_file = write_demo_config(scenario, db)
    correct, compared, confusions = accuracy(db, scenario.truth)
    con = connect_readonly(db)
    try:
        stored = queries.total_events(con)
        dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()
        result = DemoResult(
            db, len(scenario.events), stored, int(dead[0]) if dead else 0, correct, compared, stats.seconds,
            config_file,
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
        f"[bold]jwtriage demo[/]: {result.events:,} events → {result.stored:,} classified, "
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
    config = f" (its config: {result.config}, found beside the store)" if result.config else ""
    console.print(
        f"\nNext{config}:\n"
        f"  jwtriage triage --db {result.db} --since 6h\n"
        f"  jwtriage report --db {result.db}\n"
        f"  jwtriage dashboard --db {result.db}   (http://127.0.0.1:8501)\n"
        f'  jwtriage sql --db {result.db} "SUMMARIZE classifications"',
        highlight=False,
    )


def _table(title: str, *columns: tuple[str, str]) -> Table:
    """A summary table (`tables.summary_table`) with these columns."""
    table = summary_table(title)
    for n, (name, justify) in enumerate(columns):
        # the first column names the row (a service, a cause): never broken
        table.add_column(name, justify=justify, overflow="fold", no_wrap=n == 0)  # type: ignore[arg-type]
    return table


def _print_causes(console: Console, con: Any) -> None:
    """Events per cause, with the label (when there is room) and how many were verified."""
    wide = console.width >= 100
    columns = [("cause", "left"), *([("", "left")] if wide else []), ("events", "right"), ("share", "right"),
               ("verified", "right")]  # fmt: skip
    causes = _table("Why were tokens rejected?", *columns)
    for row in queries.cause_counts(con):
        label = [cause_label(row["cause"])] if wide else []
        causes.add_row(row["cause"], *label, f"{row['events']:,}", f"{row['percent']}%", f"{row['verified']:,}")
    console.print(causes)
    confidence = queries.confidence_counts(con)
    console.print(f"Confidence: {confidence_text(confidence)}")
    if any(r["confidence"] == "inferred" for r in confidence):
        console.print(
            "[dim]  inferred: stale_jwks judged from the service's JWKS cache TTL, as it reports no fetch time[/]"
        )


def _print_rotations(console: Console, con: Any) -> None:
    """Rotation damage, then each rotation step with the failures it caused per service and whose fault they are."""
    damage = queries.rotation_damage_count(con)
    console.print("[bold]Key rotations and the failures each caused[/]")
    console.print(
        f"[bold]Caused by key rotations[/]: {damage:,} failures ({', '.join(ROTATION_DAMAGE)}; never an event with "
        "an attack label, never unknown_kid)."
    )
    for fault in queries.issuer_faults(con):
        console.print(f"  [yellow]Issuer's fault[/]: {issuer_fault_text(fault)}")
    hits: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in queries.rotation_impact(con):
        hits.setdefault((row["issuer"], row["kid"], row["action"], row["step_ts"]), []).append(row)
    for step in queries.rotations(con):
        affected = hits.get((step["issuer"], step["kid"], step["action"], step["ts"]), [])
        total = sum(int(r["failures"]) for r in affected)
        title = (
            f"{utc_text(step['ts'], 'weekday_time')} · {urlsplit(step['issuer']).netloc or step['issuer']} "
            f"{step['action']} {step['kid']} · {total:,} failures"
        )
        if not affected:
            console.print(f"[dim]{escape(title)}: none affected[/]")
            continue
        table = _table(title, ("service", "left"), ("failures", "right"), ("causes", "left"),
                       ("time to recover", "right"), ("fault", "left"))  # fmt: skip
        for row in affected:
            table.add_row(
                row["service"],
                f"{row['failures']:,}",
                "\n".join(f"{c} {n:,}" for c, n in sorted(row["by_cause"].items(), key=lambda kv: -kv[1])),
                _seconds(row["recovered_after_s"]),
                row["fault"].replace(", ", "\n"),  # a line each: narrow enough for the causes at 80 columns
            )
        keep_words_whole(table, console.width)
        console.print(table)
    console.print(
        "[dim]Each failure belongs to the step of its key: stale_jwks to the key's addition, unpublished_key to the "
        "publication it came too early for, retired_key to the key's removal. Time to recover: from the step to "
        "the service's last such failure.[/]\n"
    )


def _print_cache_ages(console: Console, con: Any) -> None:
    """Each service's JWKS cache age as its events show it."""
    caches = _table("JWKS cache age per service, as the events show it", ("service", "left"),
                    ("events", "right"), ("reported age median", "right"), ("max", "right"),
                    ("stale_jwks", "right"), ("stale window", "right"))  # fmt: skip
    for column in caches.columns[2:4] + caches.columns[5:]:  # a duration is one value: never "21 h 12" over "min"
        column.no_wrap = True
    caches.columns[2].header, caches.columns[5].header = "reported\nage median", "stale\nwindow"
    caches.collapse_padding = True  # one space less between columns: the six fit 80 columns whole
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
        named = queries.attack_client_ids(con, limit=ATTACK_CLIENTS_NAMED)
        table = _table("Attacks seen", ("attack", "left"), ("events", "right"), ("services", "left"),
                       ("clients", "left"), ("first–last", "left"))  # fmt: skip
        table.columns[-1].no_wrap = True  # "Mon 17:16–17:46" is one value
        for row in attack_rows:
            table.add_row(
                row["attack"],
                f"{row['events']:,}",
                ", ".join(row["services"]),
                attack_clients_text(named, row["attack"], int(row["clients"])),
                f"{utc_text(row['first_seen'], 'weekday_time')}–{utc_text(row['last_seen'], 'clock')}",
            )
        keep_words_whole(table, console.width)
        console.print(table)


def _seconds(value: float | None) -> str:
    return "–" if value is None else _duration(timedelta(seconds=float(value)))


def _duration(value: timedelta | None) -> str:
    return "–" if value is None else human_duration(value.total_seconds())


def cmd_demo(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    db = Path(args.db or os.environ.get("JWTRIAGE_DB") or DEMO_DB)
    result = run_demo(terminal(), db=db, seed=args.seed, events=args.events, hours=args.hours)
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
