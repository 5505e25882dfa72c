"""`jwtriage classify`: JSONL files in, one Classification JSON line per event out; no network at all.

The shared loop (`runner.run`) with a file source and a printing sink (`io.files.JsonlVerdictSink`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_OK, check_readable, load_cli_config
from pipeline.io.files import FileSource, JsonlVerdictSink
from pipeline.io.formats import DEFAULT_EVENT_FORMAT, known_formats
from pipeline.runner import Pipeline, run


def cmd_classify(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    config = load_cli_config(args)
    jwks, samples = Path(args.jwks), Path(args.samples) if args.samples else None
    events = Path("/dev/stdin") if args.events == "-" else Path(args.events)
    check_readable(jwks, samples, None if args.events == "-" else events)
    if args.events == "-" and stdin.isatty():  # not a pipe: say what it waits for
        print("jwtriage classify: reading events from standard input, one JSON line each; end with Ctrl-D "
              "(or name the file: jwtriage classify ... EVENTS.jsonl)", file=sys.stderr)
    sink = JsonlVerdictSink(stdout, errors=sys.stderr)
    source = FileSource(events, snapshots=jwks, samples=samples)
    pipeline = Pipeline(
        config, event_format=args.format, snapshots_first=source.snapshots_first, reused_lines=True
    )
    run(source, pipeline, sink)
    stdout.flush()
    if args.format != DEFAULT_EVENT_FORMAT:  # a gateway log: say what was read, judged and skipped
        counts = pipeline.counts
        print(
            f"jwtriage classify: {counts['events']:,} JWT rejections judged, {counts['skipped']:,} lines skipped "
            f"(not a JWT rejection), {counts['dead_letters']:,} dead letters ({args.format} format)",
            file=sys.stderr,
        )
    elif sink.bad:  # the bad lines are above, one each: the total, and a hint when no line was an event
        events_read = pipeline.counts["events"]
        hint = ("; no line was an event: is it a JWKS snapshots file? (those go to --jwks, the events file "
                "is the last argument)") if events_read == 0 and sink.bad > 1 else ""
        print(f"jwtriage classify: {events_read:,} events judged, {sink.bad:,} bad lines{hint}", file=sys.stderr)
    return EXIT_BAD_INPUT if sink.bad else EXIT_OK


def register(commands: Any) -> None:
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
        "--format",
        default=DEFAULT_EVENT_FORMAT,
        choices=sorted(known_formats()),
        help="what the events file holds: jwtriage's AuthFailureEvent JSON (default) or a gateway's own log "
        "(envoy, kong, aws-httpapi, nginx; services are found by their `hosts`; lines that are no JWT "
        "rejection are skipped and counted on stderr)",
    )
    classify.add_argument(
        "events",
        nargs="?",
        default="-",
        metavar="EVENTS.jsonl|-",
        help="AuthFailureEvent records, or gateway log lines with --format (default: stdin)",
    )
    classify.set_defaults(handler=cmd_classify)
