"""`jwtriage` subcommands: parse flags, read the config once, build the objects, pass them in.

Exit status everywhere: 0 when all went well, 1 when some input was bad (and reported),
2 for a usage or configuration error (argparse's own convention).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from pipeline.config import Config, ConfigError, load_config, resolve_config_path
from pipeline.runner import Pipeline
from pipeline.sources import FileSource

log = logging.getLogger("jwtriage")

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or its files; printed with a hint, exit 2."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="jwtriage: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def _load(args: argparse.Namespace, overrides: dict[str, dict[str, object]] | None = None) -> Config:
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    return load_config(path, os.environ, overrides)


# -- classify ------------------------------------------------------------------------------


def _check_readable(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and str(path) != "-" and not path.is_file():
            raise UsageError(f"cannot open {path}: no such file")


def cmd_classify(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    config = _load(args)
    jwks, samples = Path(args.jwks), Path(args.samples) if args.samples else None
    events = Path("/dev/stdin") if args.events == "-" else Path(args.events)
    _check_readable(jwks, samples, None if args.events == "-" else events)
    pipeline = Pipeline(config)
    source = FileSource(events, snapshots=jwks, samples=samples)
    bad = 0
    write = stdout.write
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


# -- the parser ----------------------------------------------------------------------------


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
