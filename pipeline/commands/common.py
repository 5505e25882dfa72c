"""What every command shares: exit codes, finding the config and the store, reading time flags.

Commands take `(args, stdin, stdout) -> int` and raise `JwtriageError` subclasses for
anything a person must fix; `cli.main` prints those as one line and exits 2.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from pipeline.config import Config, load_config, resolve_config_path
from pipeline.errors import UsageError

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2


def config_path(args: argparse.Namespace) -> Path:
    """The config a command reads: `--config`, else JWTRIAGE_CONFIG, else ./jwtriage.toml (DESIGN.md); when
    none of those names an existing file, the config beside the store (`--db`/JWTRIAGE_DB with `.toml` for
    its suffix: `jwtriage demo` writes jwtriage-demo.toml beside jwtriage-demo.duckdb), so the store's readers
    find the services it was classified with.
    """
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    if getattr(args, "config", None) or os.environ.get("JWTRIAGE_CONFIG") or path.exists():
        return path
    db = getattr(args, "db", None) or os.environ.get("JWTRIAGE_DB")
    if db:
        beside = Path(db).with_suffix(".toml")
        if beside.is_file():
            return beside
    return path


def load_cli_config(args: argparse.Namespace) -> Config:
    """The config for a command (`config_path`), the environment, then `--db`."""
    path = config_path(args)
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


def reader_store_flags(parser: argparse.ArgumentParser, config_for: str = "the store path") -> None:
    """`--config` and `--db` of a command that only reads the store; `store_path` resolves them."""
    parser.add_argument("--config", help=f"config TOML, only for {config_for} (optional)")
    parser.add_argument("--db", metavar="PATH", help="the store (default: $JWTRIAGE_DB, else the config's)")


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


def check_readable(*paths: Path | None) -> None:
    """Each path that is given names a readable file (`-` is stdin), else a UsageError."""
    for path in paths:
        if path is not None and str(path) != "-" and not path.is_file():
            raise UsageError(f"cannot open {path}: no such file")


def scenario_flags(parser: argparse.ArgumentParser) -> None:
    """The simulator's knobs, shared by `demo` and `simulate`."""
    parser.add_argument("--seed", type=int, default=7, help="scenario seed; the same seed gives the same output")
    parser.add_argument("--events", type=int, default=20_000, help="number of auth-failure events (default 20000)")
    parser.add_argument("--hours", type=float, default=24.0, help="length of the scenario in hours (default 24)")


class _Terminal(Console):
    """rich's Console, but a reader that goes away (`jwtriage triage | head`) is not an error.

    rich answers a broken pipe with exit status 1; `cli.main` answers it with 0, as for
    `classify` and `report`, whose 1 means something else (bad input lines).
    """

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def terminal(stdout: IO[str] | None = None, **options: Any) -> Console:
    """The Console a command prints through (`stdout`: the command's own; default sys.stdout)."""
    return _Terminal(file=stdout, **options)
