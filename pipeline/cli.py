"""`jwtriage` subcommands: parse flags, read the config once, build the objects, pass them in.

Exit status everywhere: 0 when all went well, 1 when some input was bad (and reported),
2 for a usage or configuration error (argparse's own convention).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pipeline.config import Config, ConfigError, load_config, resolve_config_path
from pipeline.runner import Pipeline, streaming_gc
from pipeline.sources import FileSource

log = logging.getLogger("jwtriage")

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2

#: Modules that add their own subcommand with `register(commands)`; each gets
#: `handler(args, stdin, stdout) -> int` through `set_defaults(handler=...)`.
COMMAND_MODULES = ("consume", "jwks_watch", "report", "dashboard_cmd", "explain", "triage")


class UsageError(Exception):
    """A problem with the command line or its files; printed with a hint, exit 2."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="jwtriage: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python's DEBUG log dumps wire bytes and whole fetch responses, i.e. the records' values with
    # their raw tokens (credentials never go to a log): even with -v it logs at INFO at most.
    logging.getLogger("kafka").setLevel(max(logging.INFO, logging.getLogger("kafka").level))


def load_cli_config(args: argparse.Namespace) -> Config:
    """The config for a command: `--config`/JWTRIAGE_CONFIG/./jwtriage.toml, the environment, then `--db`."""
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    db = getattr(args, "db", None)
    return load_config(path, os.environ, {"store": {"path": db}} if db else None)


def parse_time_flag(flag: str, text: str, shown: str | None = None) -> datetime:
    """An RFC 3339 time with a UTC offset ('Z' or +hh:mm), for `--at`/`--until`; `shown` is how to quote it."""
    quoted = shown if shown is not None else repr(text)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{flag}: {quoted} is not an RFC 3339 time (e.g. 2026-11-23T10:42:00Z)") from None
    if value.tzinfo is None:
        raise UsageError(f"{flag}: {quoted} needs a UTC offset (e.g. 2026-11-23T10:42:00Z)")
    return value.astimezone(UTC)


def store_path(args: argparse.Namespace) -> Path:
    """The store a reader opens: `--db`, else JWTRIAGE_DB, else the config's (when there is one), else the default.

    Readers (dashboard, report, triage) need no config file when the store path is given.
    """
    if getattr(args, "db", None):
        return Path(args.db)
    if os.environ.get("JWTRIAGE_DB"):
        return Path(os.environ["JWTRIAGE_DB"])
    config_path = resolve_config_path(getattr(args, "config", None), os.environ)
    if config_path.exists() or getattr(args, "config", None):
        return Path(load_config(config_path, os.environ).store.path)
    return Path("jwtriage.duckdb")


# -- classify ------------------------------------------------------------------------------


def _check_readable(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and str(path) != "-" and not path.is_file():
            raise UsageError(f"cannot open {path}: no such file")


def cmd_classify(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    config = load_cli_config(args)
    jwks, samples = Path(args.jwks), Path(args.samples) if args.samples else None
    events = Path("/dev/stdin") if args.events == "-" else Path(args.events)
    _check_readable(jwks, samples, None if args.events == "-" else events)
    pipeline = Pipeline(config)
    source = FileSource(events, snapshots=jwks, samples=samples)
    bad = 0
    write = stdout.write
    with streaming_gc():
        for envelopes in source.batches():
            batch = pipeline.process(envelopes)
            for letter in batch.dead_letters:
                bad += 1
                print(f"jwtriage: {letter.position.source}:{letter.position.offset}: {letter.reason}", file=sys.stderr)
            for judged in batch.judged:
                write(judged.verdict.classification.model_dump_json())
                write("\n")
    stdout.flush()
    return EXIT_BAD_INPUT if bad else EXIT_OK


# -- simulate and demo ----------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.simulate import simulate, write_scenario

    scenario = simulate(seed=args.seed, events=args.events, hours=args.hours, unique_tokens=args.unique_tokens)
    written = write_scenario(scenario, Path(args.out))
    for name, path in written.items():
        print(f"wrote {path} ({name})", file=stdout)
    if args.kafka:
        from pipeline.kafka_io import produce, scenario_records

        kafka = load_config(written["config"], os.environ).kafka  # the scenario's services, your [kafka] env
        sent = produce(kafka, scenario_records(scenario, kafka))
        print(
            f"produced {sent:,} records to {kafka.bootstrap_servers} ({kafka.failures_topic}, "
            f"{kafka.samples_topic}, {kafka.jwks_topic})",
            file=stdout,
        )
        print(f"next: jwtriage consume --config {written['config']} --exit-when-idle 10", file=stdout)
        return EXIT_OK
    print(
        f"next: jwtriage classify --config {written['config']} --jwks {written['jwks']} "
        f"--samples {written['samples']} {written['events']}",
        file=stdout,
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from rich.console import Console

    from pipeline.demo import run_demo

    db = Path(args.db or os.environ.get("JWTRIAGE_DB") or "jwtriage-demo.duckdb")
    result = run_demo(Console(), db=db, seed=args.seed, events=args.events, hours=args.hours)
    return EXIT_OK if result.stored else EXIT_BAD_INPUT


# -- the parser ----------------------------------------------------------------------------


def _scenario_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="scenario seed; the same seed gives the same output")
    parser.add_argument("--events", type=int, default=20_000, help="number of auth-failure events (default 20000)")
    parser.add_argument("--hours", type=float, default=24.0, help="length of the scenario in hours (default 24)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwtriage",
        description="Explain why JWTs were rejected: re-validate each token without trusting it, "
        "classify the root cause, and track failures around key rotations.",
        epilog="Config: --config, else $JWTRIAGE_CONFIG, else ./jwtriage.toml; JWTRIAGE_* variables "
        "override the file (JWTRIAGE_DB, JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS, ...). "
        "Start with `jwtriage demo`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens on stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    classify = commands.add_parser(
        "classify",
        help="classify events from JSONL files, offline; one Classification JSON line per event",
        description="Re-validate every event's token at the event's time and print one Classification "
        "JSON line per event on stdout. No network access. A bad input line is reported on stderr "
        "(file:line: reason) and skipped. Exit 0 when every line was good, 1 when some were bad, 2 for "
        "a usage or config error.",
    )
    classify.add_argument("--config", help="config TOML (default: $JWTRIAGE_CONFIG or ./jwtriage.toml)")
    classify.add_argument("--jwks", required=True, metavar="SNAPSHOTS.jsonl", help="JwksSnapshot records")
    classify.add_argument("--samples", metavar="SAMPLES.jsonl", help="SampledToken records, joined by token_sha256")
    classify.add_argument(
        "events",
        nargs="?",
        default="-",
        metavar="EVENTS.jsonl|-",
        help="AuthFailureEvent records (default: stdin)",
    )
    classify.set_defaults(handler=cmd_classify)

    demo = commands.add_parser(
        "demo",
        help="simulate a key-rotation scenario, classify it into ./jwtriage-demo.duckdb, print the triage summary",
        description="The embedded default: simulate a day of auth failures around key rotations (stale JWKS "
        "caches, clock skew, wrong audiences, attacks, malformed input), run them through the same pipeline as "
        "the Kafka consumer into a fresh DuckDB store, and print the triage summary with the accuracy against "
        "the simulator's ground truth.",
    )
    demo.add_argument("--db", help="store to (re)create (default: ./jwtriage-demo.duckdb)")
    _scenario_flags(demo)
    demo.set_defaults(handler=cmd_demo)

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"pipeline.{name}") is not None:
            importlib.import_module(f"pipeline.{name}").register(commands)

    sim = commands.add_parser(
        "simulate",
        help="write a simulated scenario (config, JWKS snapshots, samples, events, ground truth) as JSONL",
        description="Write a deterministic key-rotation scenario: jwtriage.toml, jwks.jsonl, samples.jsonl, "
        "events.jsonl and truth.jsonl (the true cause of each event, kept apart from the events).",
    )
    sim.add_argument("--out", default="scenario", help="directory to write (default: ./scenario)")
    sim.add_argument(
        "--kafka",
        action="store_true",
        help="also produce the scenario to Kafka (bootstrap servers from JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS, "
        "default 127.0.0.1:9092); consume it with the written jwtriage.toml",
    )
    sim.add_argument("--unique-tokens", action="store_true", help="a freshly signed token for every event")
    _scenario_flags(sim)
    sim.set_defaults(handler=cmd_simulate)
    return parser


def _looks_like_token(arg: str) -> bool:
    return arg.count(".") >= 2 and len(arg) > 40 and not arg.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and _looks_like_token(arguments[0]):
        # Never echo a credential back (argparse's "invalid choice" would print it).
        print(
            "jwtriage: that looks like a token; tokens never go on the command line (shell history). "
            "Pipe it in: pbpaste | jwtriage explain",
            file=sys.stderr,
        )
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(arguments)
    _setup_logging(args.verbose)
    try:
        return int(args.handler(args, sys.stdin.buffer, sys.stdout))
    except (ConfigError, UsageError) as exc:
        print(f"jwtriage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
