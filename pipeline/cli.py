"""`jwtriage`: the command table, the parser built from it, and `main`.

Each command lives in `pipeline/commands/<module>.py` with `register(subparsers)` (its
flags and help) and a handler `(args, stdin, stdout) -> int`. Exit status everywhere: 0
when all went well, 1 when some input was bad (and reported), 2 for a usage, config or
store problem, printed as one line (`pipeline.errors` draws the tree).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.commands.common import EXIT_OK, EXIT_USAGE
from pipeline.errors import JwtriageError

#: Every command, in the order `--help` lists them: (name, module under pipeline/commands/).
COMMANDS: tuple[tuple[str, str], ...] = (
    ("classify", "classify"),
    ("demo", "demo"),
    ("consume", "consume"),
    ("jwks-watch", "jwks_watch"),
    ("report", "report"),
    ("dashboard", "dashboard"),
    ("explain", "explain"),
    ("triage", "triage"),
    ("simulate", "simulate"),
    ("sql", "sql"),
    ("keygen", "keygen"),
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="jwtriage: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python's DEBUG log dumps wire bytes and whole fetch responses, i.e. the records' values with
    # their raw tokens (credentials never go to a log): even with -v it logs at INFO at most.
    logging.getLogger("kafka").setLevel(logging.INFO if verbose else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwtriage",
        description="Explain why JWTs were rejected: re-validate each token without trusting it, "
        "classify the root cause, and track failures around key rotations.",
        epilog="Config: --config, else $JWTRIAGE_CONFIG, else ./jwtriage.toml; JWTRIAGE_* variables "
        "override the file (JWTRIAGE_DB, JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS, ...). "
        "Start with `jwtriage demo`.",
    )
    parser.add_argument("--version", action="version", version=f"jwtriage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens on stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, module in COMMANDS:
        importlib.import_module(f"pipeline.commands.{module}").register(commands)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of the command `name` (argparse keeps the subparsers in its one `_SubParsersAction`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name, parser)
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
    args, extras = parser.parse_known_args(arguments)
    if extras:  # what argparse would refuse, refused by the command's own parser: its usage line, not the top's
        command = _subparser(parser, args.command)
        shown = " ".join("<token>" if _looks_like_token(extra) else extra for extra in extras)
        command.error(f"unrecognized arguments: {shown}")
    _setup_logging(args.verbose)
    try:
        return int(args.handler(args, sys.stdin.buffer, sys.stdout))
    except JwtriageError as exc:
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
