"""`jwtriage triage`: the first command an on-call engineer runs — what is failing, what changed, since when.

From the store only (no config needed): failures per cause in the window against the
window just before and the same window a day and a week earlier; the causes that spiked,
with their services, clients and onset; the key rotations in or near the window and the
failures they caused; attack bursts; a sparkline for each; and the one or two lines to
read first. The findings live in `pipeline/triage/` (summary, sentences, terminal); this
module is the command.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import duckdb

from pipeline.commands.common import config_path, parse_time_flag, reader_store_flags, store_path, terminal
from pipeline.config import load_config
from pipeline.errors import ConfigError, UsageError
from pipeline.io.store_readers import connect_readonly
from pipeline.text import parse_duration, sparkline, stamp
from pipeline.triage import BUCKETS, SPIKE_MIN_EVENTS, SPIKE_RATIO, read_first, render, summarize

__all__ = ["BUCKETS", "parse_since", "register", "sparkline", "summarize"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "triage",
        help="what is failing now, what changed, since when: the first command to run on call",
        description="A terminal summary from the store: failures per cause in the window against the window "
        "before and the same window a day and a week earlier; the causes that spiked (at least "
        f"{SPIKE_MIN_EVENTS} events and {SPIKE_RATIO:g}x the baseline, or new) with their services, clients and "
        "onset; key rotations in or near the window and the failures they caused; attack bursts; and the one "
        "or two lines to read first. The window ends now while the store is live (its last event within 15 "
        "minutes of now), else at the store's last event (a stopped consumer, old or simulated data), or at --until.",
        epilog="Examples: jwtriage triage; jwtriage triage --since 6h --service payments-api; "
        "jwtriage triage --since 1h --until 2026-11-23T11:00:00Z --json",
    )
    reader_store_flags(parser, "the store path and issuer names")
    parser.add_argument(
        "--since", default="1h", metavar="DURATION", help="window length: 15m, 1h, 6h, 1d, 7d (default 1h)"
    )
    parser.add_argument("--until", metavar="RFC3339", help="end of the window, for a past incident (default: now)")
    parser.add_argument("--service", metavar="NAME", help="only this service's failures")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(handler=cmd_triage)


def cmd_triage(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    window = parse_since(args.since)
    until = parse_time_flag("--until", args.until) if args.until else None
    path = store_path(args)
    con = connect_readonly(path)  # a StoreError is a JwtriageError: one line, exit 2
    try:
        try:
            names = _issuer_names(args)
            summary = summarize(
                con, window, until=until, service=args.service, now=datetime.now(UTC), issuer_names=names
            )
        except duckdb.CatalogException:
            raise UsageError(f"{path} is not a jwtriage store (no classifications table)") from None
        summary.store = str(path)
        summary.read_first = read_first(summary)
    finally:
        con.close()
    if args.json:
        stdout.write(json.dumps(summary.to_json(), default=_json_default) + "\n")
    else:
        render(terminal(stdout, highlight=False), summary)
    stdout.flush()
    return 0


def parse_since(text: str) -> timedelta:
    """'15m', '1h', '6h', '1d', '7d', '1h30m' (the window length)."""
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration such as 15m, 1h, 6h, 1d or 7d") from None


def _issuer_names(args: argparse.Namespace) -> dict[str, str]:
    """Issuer URL → short name, from the config when there is one (triage works without it)."""
    path = config_path(args)
    if not path.exists():
        return {}
    try:
        config = load_config(path, os.environ)
    except ConfigError:
        if args.config:
            raise
        return {}
    return {i.issuer: i.name for i in config.issuers}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return stamp(value.astimezone(UTC))
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
