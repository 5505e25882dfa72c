"""`jwtriage jwks-watch`: the command around `pipeline.jwks_watcher.JwksWatcher`.

It picks the issuers and the sink (`--out FILE`: a JSONL file, else the Kafka topic), runs
one round (`--once`, for cron) or polls until SIGTERM/Ctrl-C. The polling, caching, deadline,
discovery and backoff rules are the watcher's; the sinks live in `pipeline/io/`. SIGTERM ends
the process within a second or two even while a server stalls a fetch (the watcher abandons
fetches in flight; the main thread only waits).
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import IO, Any

from pipeline.commands.common import EXIT_BAD_INPUT, EXIT_OK, load_cli_config
from pipeline.config import Config, IssuerConfig
from pipeline.errors import UsageError
from pipeline.io.base import SnapshotSink
from pipeline.io.files import JsonlSnapshotSink
from pipeline.jwks_watcher import DEFAULTS, JwksWatcher, PollResult, WatchSettings
from pipeline.models import JwksSnapshot

log = logging.getLogger(__name__)


def cmd_jwks_watch(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    config = load_cli_config(args)
    for flag in ("interval", "heartbeat"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag} must be a positive number of seconds")
    issuers = _chosen_issuers(config, args.issuer)
    settings = WatchSettings(
        interval=args.interval,
        min_interval=min(DEFAULTS.min_interval, args.interval),
        max_interval=max(DEFAULTS.max_interval, args.interval),
        heartbeat=args.heartbeat,
    )
    sink, seed = _open_sink(config, args.out)
    watcher = JwksWatcher(issuers, sink, settings, seed=seed.values(), one_round=args.once)
    try:
        if args.once:
            results = watcher.poll_all()
            for result in results:
                print(_result_line(result), file=stdout)
            return EXIT_BAD_INPUT if any(r.outcome == "failed" for r in results) else EXIT_OK
        target = args.out or f"Kafka topic {config.kafka.jwks_topic} at {config.kafka.bootstrap_servers}"
        log.warning("watching %d issuer(s) → %s; Ctrl-C to stop", len(issuers), target)
        _run_until_stopped(watcher)
        return EXIT_OK
    finally:
        watcher.close()
        sink.close()


def _chosen_issuers(config: Config, names: list[str] | None) -> list[IssuerConfig]:
    """The configured issuers, or those `--issuer` names (a UsageError for a name not in the config)."""
    issuers = list(config.issuers)
    if not names:
        return issuers
    unknown = [n for n in names if n not in {i.name for i in issuers}]
    if unknown:
        raise UsageError(f"--issuer {', '.join(unknown)}: not in {config.source}")
    return [i for i in issuers if i.name in names]


def _open_sink(config: Config, out: str | None) -> tuple[SnapshotSink, dict[str, JwksSnapshot]]:
    """The sink, and the snapshots it already holds (a JSONL file's last ones: no duplicate at start-up)."""
    if out:
        jsonl = JsonlSnapshotSink(Path(out))
        return jsonl, jsonl.last_snapshots()
    from pipeline.io.kafka_producers import KafkaSnapshotSink  # kafka-python only when it is used

    try:
        return KafkaSnapshotSink(config.kafka), {}
    except Exception as exc:  # kafka-python raises NoBrokersAvailable and friends
        raise UsageError(
            f"cannot reach Kafka at {config.kafka.bootstrap_servers}: {exc} (hint: make kafka-up, "
            "or write a file with --out)"
        ) from None


def _result_line(result: PollResult) -> str:
    if result.outcome == "failed":
        return f"{result.issuer}: failed: {result.error}"
    action = "published" if result.published else "not published"
    return f"{result.issuer}: {result.keys} key(s), {result.outcome}, {action}"


def _run_until_stopped(watcher: JwksWatcher) -> None:
    """Poll on schedule until SIGTERM (Ctrl-C ends the process through `cli.main`)."""

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        watcher.stop()

    try:
        previous = signal.signal(signal.SIGTERM, _on_signal)
    except ValueError:  # not the main thread
        previous = None
    try:
        watcher.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "jwks-watch",
        help="poll each issuer's jwks_uri and publish JwksSnapshots to auth.jwks (or a JSONL file)",
        description="Poll each configured issuer's jwks_uri (or, when it is not set, the one OIDC discovery gives "
        "from issuer + /.well-known/openid-configuration), each issuer in its own thread with a deadline over the "
        "whole request (honouring Cache-Control, ETag and Last-Modified; "
        "backing off with jitter on errors and keeping the last good set) and publish a JwksSnapshot when the "
        "key set changes and on a heartbeat: to the Kafka topic kafka.jwks_topic keyed by issuer, or appended to "
        "--out FILE (the --jwks input of `jwtriage classify`). Private key material is never forwarded. "
        "With --once: exit 0 when every issuer was fetched, 1 when some failed.",
    )
    parser.add_argument("--config", help="config TOML (default: $JWTRIAGE_CONFIG or ./jwtriage.toml)")
    parser.add_argument("--out", metavar="FILE", help="append snapshots to this JSONL file instead of Kafka")
    parser.add_argument("--once", action="store_true", help="poll every issuer once and exit (cron, tests)")
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULTS.interval,
        metavar="S",
        help="poll interval when the server sends no Cache-Control/Expires (default %(default)g s)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=DEFAULTS.heartbeat,
        metavar="S",
        help="republish an unchanged set this often (default %(default)g s)",
    )
    parser.add_argument(
        "--issuer", action="append", metavar="NAME", help="watch only this issuer (repeatable; default: all)"
    )
    parser.set_defaults(handler=cmd_jwks_watch)
