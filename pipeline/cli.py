"""`jwtriage` subcommands: parse flags, read the config once, build the objects, pass them in.

Exit status everywhere: 0 when all went well, 1 when some input was bad (and reported),
2 for a usage or configuration error (argparse's own convention).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO

from pipeline.classify import Classifier
from pipeline.config import Config, ConfigError, load_config, resolve_config_path
from pipeline.keys import KeyTimeline
from pipeline.models import AuthFailureEvent, JwksSnapshot, SampledToken
from pipeline.records import BadRecord, open_input, read_jsonl
from pipeline.tokens import fingerprint

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


def _report_bad(bad: BadRecord) -> None:
    print(f"jwtriage: {bad}", file=sys.stderr)


def _open(path: str, stdin: IO[bytes]) -> IO[bytes]:
    try:
        return open_input(path, stdin)
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def load_timeline_file(path: str, stdin: IO[bytes], on_bad: Callable[[BadRecord], None]) -> KeyTimeline:
    """A key timeline from a JSONL file of JwksSnapshot records."""
    timeline = KeyTimeline()
    with _open(path, stdin) as stream:
        for record in read_jsonl(stream, JwksSnapshot, path):
            if isinstance(record, BadRecord):
                on_bad(record)
            else:
                timeline.add(record)
    return timeline


def load_samples_file(path: str, stdin: IO[bytes], on_bad: Callable[[BadRecord], None]) -> dict[str, str]:
    """fingerprint → token, from a JSONL file of SampledToken records."""
    samples: dict[str, str] = {}
    with _open(path, stdin) as stream:
        for record in read_jsonl(stream, SampledToken, path):
            if isinstance(record, BadRecord):
                on_bad(record)
            else:
                samples[fingerprint(record.token)] = record.token
    return samples


# -- classify ------------------------------------------------------------------------------


def cmd_classify(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    config = _load(args)
    bad_count = 0

    def on_bad(bad: BadRecord) -> None:
        nonlocal bad_count
        bad_count += 1
        _report_bad(bad)

    timeline = load_timeline_file(args.jwks, stdin, on_bad)
    samples = load_samples_file(args.samples, stdin, on_bad) if args.samples else {}
    classifier = Classifier(config, timeline)
    write = stdout.write
    with _open(args.events, stdin) as stream:
        for record in read_jsonl(stream, AuthFailureEvent, args.events):
            if isinstance(record, BadRecord):
                on_bad(record)
                continue
            if config.service(record.service) is None:
                known = ", ".join(s.name for s in config.services)
                on_bad(
                    BadRecord(
                        args.events,
                        record.event_id,
                        f"service {record.service!r} is not in the config (known: {known})",
                        "",
                    )
                )
                continue
            token = record.token or (samples.get(record.token_sha256.lower()) if record.token_sha256 else None)
            verdict = classifier.classify(record, token)
            write(verdict.classification.model_dump_json())
            write("\n")
    stdout.flush()
    return EXIT_BAD_INPUT if bad_count else EXIT_OK


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
