"""`jwtriage explain`: one token, judged in front of you — each check with its evidence, the verdict, the fix.

The token comes only from stdin: an argument would land in shell history and in `ps`. It
is never printed, stored or logged; the output names it by its fingerprint. This module
is the command: reading the token, loading the keys, and drawing the output. What it
draws is `pipeline.explanation`'s, built from the Classifier's own traced run (the same
decision procedure as the pipeline, at `--at`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pipeline.causes import ATTACK_ADVICE, REMEDIATION
from pipeline.commands.common import load_cli_config, parse_time_flag, store_path, terminal
from pipeline.config import Config, ServiceConfig
from pipeline.engine.classify import Classifier, Verdict
from pipeline.engine.keys import KeyTimeline
from pipeline.engine.tokens import EncryptedToken, MalformedToken, fingerprint, parse, segment_count
from pipeline.errors import StoreError, UsageError
from pipeline.explanation import (
    JWT_LIKE,
    TIME_CLAIMS,
    Check,
    Context,
    Focus,
    KeySource,
    build_checks,
    cause_context,
    choose_focus,
    claim_time,
    history_lines,
    judge,
    key_source_warnings,
    shown,
    stamp,
)
from pipeline.io.store_readers import connect_readonly, timeline_from
from pipeline.models import CAUSE_LABELS, Cause, Classification, JwksSnapshot
from pipeline.records import RecordError, decode_record, iter_lines

#: At most this much is read from stdin; a real token is a few KB.
MAX_INPUT_BYTES = 64 * 1024
PIPE_HINT = "paste the token and press Ctrl-D, or: pbpaste | jwtriage explain (xclip -o / wl-paste on Linux)"
ARGUMENT_REFUSAL = (
    "explain reads the token from stdin, never from an argument: an argument lands in your shell history "
    "and in `ps` for every user on the machine. Run it again without the argument, then "
    + PIPE_HINT
    + ". If you passed a real token, delete that line from your shell history (bash: `history -d N`)."
)
#: What people paste around a token: a header line, the scheme.
_PREFIX = re.compile(r"^(authorization:\s*)?(bearer(\s+|$))?", re.IGNORECASE)
_MARK = {"pass": "[green]✓[/]", "fail": "[bold red]✗[/]", "skip": "[dim]·[/]"}


# -- the command line ------------------------------------------------------------------------


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "explain",
        help="explain one token read from stdin: every check with its evidence, the verdict, what to do",
        description="Re-validate one token (read from stdin, never from an argument) the way the pipeline does, "
        "at --at (default: now), and print its decoded header and claims, each check of the re-validation "
        "order with its evidence, the verdict and the remediation. Keys and their history come from the store "
        "(--db / JWTRIAGE_DB) or from --jwks. Works offline; the token is never printed, stored or logged. "
        "Exit 0 with a verdict, 2 for a usage or config error.",
        epilog="Examples: pbpaste | jwtriage explain --service payments-api; "
        "jwtriage explain --at 2026-11-23T10:42:00Z --json < token.txt",
    )
    parser.add_argument("--config", help="config TOML (default: $JWTRIAGE_CONFIG or ./jwtriage.toml)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--db", metavar="PATH", help="store to read the key history from (default: $JWTRIAGE_DB)")
    keys.add_argument("--jwks", metavar="SNAPSHOTS.jsonl", help="JwksSnapshot records instead of the store")
    parser.add_argument("--service", metavar="NAME", help="judge for this service (default: every configured one)")
    parser.add_argument("--at", metavar="RFC3339", help="judge as of this time, with a UTC offset (default: now)")
    parser.add_argument("--json", action="store_true", help="print one Classification JSON line (event_id null)")
    # Swallows stray positionals so argparse never echoes one back (it could be a token).
    parser.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    if args.stray:
        raise UsageError(ARGUMENT_REFUSAL)
    now = datetime.now(UTC)
    at = parse_at(args.at) if args.at else now
    keys = load_keys(args)  # first: a mistyped --db is named as the store it is, not as a config not found
    config = load_cli_config(args)
    services = _services(config, args.service)
    try:
        token = read_token(stdin)
        verdicts = judge(Classifier(config, keys.timeline), services, token, at)
        # --json stays predictable for scripts: the store's history does not pick the service.
        focus = choose_focus(args.service, verdicts, None if args.json else keys.con, fingerprint(token))
        if args.json:
            if focus is None:
                raise UsageError(
                    "--json prints one Classification, and the token's aud names no single service: "
                    "name it with --service "
                    f"(configured: {', '.join(s.name for s in config.services)})"
                )
            stdout.write(classification_json(focus.verdict.classification) + "\n")
            stdout.flush()
            return 0
        ctx = Context(config, keys, at, at_is_now=args.at is None)
        console = terminal(stdout, highlight=False)
        render(console, ctx, token, verdicts, focus, chosen=args.service is not None)
        return 0
    finally:
        keys.close()


def parse_at(text: str) -> datetime:
    """An RFC 3339 time with a UTC offset ('Z' or +hh:mm)."""
    return parse_time_flag("--at", text, shown=_echo(text))


def _echo(text: str) -> str:
    """A flag's value for an error message, unless it could be a token pasted in the wrong place."""
    return "that value" if JWT_LIKE.search(text) or len(text) > 60 else repr(text)


def _services(config: Config, name: str | None) -> list[ServiceConfig]:
    if name is None:
        return list(config.services)
    service = config.service(name)
    if service is None:
        raise UsageError(
            f"--service {_echo(name)} is not in {config.source} "
            f"(configured: {', '.join(s.name for s in config.services)})"
        )
    return [service]


# -- reading the token ------------------------------------------------------------------------


def read_token(stdin: IO[bytes]) -> str:
    """One token from stdin: whitespace, quotes, 'Authorization:' and 'Bearer ' stripped; at most 64 KB."""
    raw = _read_tty(stdin) if _isatty(stdin) else stdin.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise UsageError(f"more than {MAX_INPUT_BYTES // 1024} KB on stdin: that is not one token")
    return clean_token(raw.decode("utf-8", "replace"))


def clean_token(text: str) -> str:
    token = _PREFIX.sub("", text.strip().strip("'\"").strip()).strip()
    if not token:
        raise UsageError(f"no token on stdin: {PIPE_HINT}")
    if any(ch.isspace() for ch in token):
        raise UsageError(
            "stdin holds more than one word or line; explain judges exactly one token "
            "(for many events, use `jwtriage classify`)"
        )
    return token


def _isatty(stream: IO[bytes]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _read_tty(stream: IO[bytes]) -> bytes:
    """Read a pasted token from a terminal without echoing it; Enter or Ctrl-D ends it."""
    prompt = "Paste the token and press Enter (it is not echoed; Ctrl-D also ends it)."
    try:
        import termios
    except ImportError:  # not a POSIX terminal: read to end of input
        print("Paste the token, then press Ctrl-D (Ctrl-Z and Enter on Windows).", file=sys.stderr, flush=True)
        return stream.read(MAX_INPUT_BYTES + 1)
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    # Non-canonical mode: a pasted token longer than the line discipline's limit
    # (1 KB on macOS, 4 KB on Linux) is not cut short.
    quiet[3] &= ~(termios.ECHO | termios.ICANON)
    quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 1, 0
    data = bytearray()
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        print(prompt, file=sys.stderr, flush=True)  # only once echo is off
        while len(data) <= MAX_INPUT_BYTES:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            if b"\x04" in chunk:  # Ctrl-D
                data += chunk.split(b"\x04", 1)[0]
                break
            data += chunk
            if data.strip() and (b"\n" in chunk or b"\r" in chunk):
                break
    finally:
        # Discard anything still typed or pasted, so none of it reaches the shell.
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
    return bytes(data)


# -- where the keys come from -----------------------------------------------------------------


def load_keys(args: argparse.Namespace) -> KeySource:
    """The key timeline from --jwks, else from the store (--db, JWTRIAGE_DB, the config's store.path)."""
    if args.jwks:
        return KeySource(_timeline_from_file(Path(args.jwks)), f"--jwks {args.jwks}")
    path = store_path(args)
    hint = "pass --jwks SNAPSHOTS.jsonl, or --db PATH of a store that a consumer (or the demo) wrote"
    try:
        con = connect_readonly(path)
    except StoreError as exc:
        raise UsageError(f"{exc}; or {hint}") from None
    try:
        timeline = timeline_from(con)
    except duckdb.Error:
        con.close()
        raise UsageError(f"{path} is not a jwtriage store (no jwks_snapshots table); {hint}") from None
    if not timeline.issuers:
        con.close()
        raise UsageError(
            f"the store {path} holds no JWKS snapshots yet, so there are no keys to check against; "
            f"run `jwtriage jwks-watch` (or `jwtriage consume`) to record them, or {hint}"
        )
    return KeySource(timeline, f"store {path}", con)


def _timeline_from_file(path: Path) -> KeyTimeline:
    if not path.is_file():
        raise UsageError(f"cannot open {path}: no such file (--jwks takes JwksSnapshot JSON lines)")
    timeline = KeyTimeline()
    with path.open("rb") as stream:
        for number, line in iter_lines(stream):
            try:
                timeline.add(decode_record(line, JwksSnapshot))
            except RecordError as exc:
                print(f"jwtriage: {path}:{number}: {exc} (skipped)", file=sys.stderr)
    if not timeline.issuers:
        raise UsageError(f"{path} holds no valid JwksSnapshot line, so there are no keys to check against")
    return timeline


# -- the output ------------------------------------------------------------------------------


def render(
    console: Console,
    ctx: Context,
    token: str,
    verdicts: list[tuple[ServiceConfig, Verdict]],
    focus: Focus | None,
    chosen: bool,
) -> None:
    at_label = "now" if ctx.at_is_now else "--at"
    console.print(
        f"[bold]Token[/] sha256 {fingerprint(token)[:16]}… ({len(token):,} chars, {segment_count(token)} segments; "
        "the token itself is not shown)"
    )
    console.print(f"[bold]Judged at[/] {stamp(ctx.at)} ({at_label}) · keys from {escape(ctx.keys.label)}")
    shown_verdicts = verdicts if focus is None else [(focus.service, focus.verdict)]
    for line in key_source_warnings(ctx, shown_verdicts):
        console.print(f"[yellow]note:[/] {escape(line)}")
    console.print(_token_table(ctx, token))

    if not chosen and len(verdicts) > 1:
        console.print(_services_table(ctx, verdicts, focus))
        if focus is None:
            console.print(
                "[dim]The token's aud names no single configured service: pass --service NAME for the "
                "check-by-check evidence.[/]"
            )
    history = history_lines(ctx, fingerprint(token))
    if focus is None:
        attacks = sorted({a for _, v in verdicts for a in v.classification.attacks}, key=list(ATTACK_ADVICE).index)
        for attack in attacks:
            console.print(Text(f"⚠ {attack.value}: {ATTACK_ADVICE[attack]}", style="red"))
        for line in history:
            console.print(escape(line))
        return
    service, verdict = focus.service, focus.verdict
    if not chosen and len(verdicts) > 1:
        console.print(f"\n[bold]Details for {escape(service.name)}[/] ({focus.why}; pass --service to choose another)")
    console.print(_checks_table(build_checks(ctx, service, verdict), service))
    console.print(_verdict_panel(service, verdict))
    console.print(_remediation(ctx, service, verdict))
    for line in history:
        console.print(escape(line))


def _token_table(ctx: Context, token: str) -> Table:
    table = Table(title="Header and claims (decoded, not trusted)", title_justify="left", show_header=False)
    table.add_column("part", style="dim")
    table.add_column("name", style="bold")
    table.add_column("value")
    problem = ""
    try:
        parsed = parse(token)
        header, claims = parsed.header, parsed.claims
    except EncryptedToken:
        table.add_row("", "", "a JWE (5 segments, its header names enc): encrypted, not decoded")
        return table
    except MalformedToken as exc:
        header, claims = exc.header or {}, {}
        problem = f"does not parse: {exc.reason}"
    for part, values in (("header", header), ("claims", claims)):
        for n, (name, value) in enumerate(list(values.items())[:30]):
            text = shown(value)
            if part == "claims" and name in TIME_CLAIMS and (when := claim_time(value)) is not None:
                text = f"{ctx.when(when)}  [{shown(value)}]"
            if part == "claims" and name == "iss" and isinstance(value, str) and ctx.issuer_name(value) != value:
                text += f"  (issuer {ctx.issuer_name(value)})"
            table.add_row(part if n == 0 else "", Text(shown(name, 40)), Text(text))
        if len(values) > 30:
            table.add_row("", "…", f"{len(values) - 30} more")
    if problem:
        table.add_row("", "", Text(problem))
    return table


def _services_table(ctx: Context, verdicts: list[tuple[ServiceConfig, Verdict]], focus: Focus | None) -> Group:
    table = Table(title="Every configured service", title_justify="left")
    for column in ("service", "accepts", "verdict", "why"):
        table.add_column(column)
    accepting = []
    for service, verdict in verdicts:
        c = verdict.classification
        ok = c.cause is Cause.VALID
        if ok:
            accepting.append(service.name)
        name = service.name + (" ◀" if focus is not None and focus.service is service else "")
        table.add_row(
            Text(name),
            "[green]yes[/]" if ok else "[red]no[/]",
            Text(c.cause.value),
            Text(shown(c.detail or "", 300)),
        )
    who = (
        f"Would accept it at {stamp(ctx.at)}: {', '.join(accepting)}."
        if accepting
        else f"No configured service would accept it at {stamp(ctx.at)}."
    )
    return Group(table, Text(who, style="bold"))


def _checks_table(checks: list[Check], service: ServiceConfig) -> Table:
    table = Table(title=f"Checks for {service.name}, in re-validation order", title_justify="left", show_header=False)
    table.add_column("", width=1)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("evidence")
    for check in checks:
        label = f"{check.number}. {check.name}"
        if check.causes:
            label += f"\n   → {', '.join(c.value for c in check.causes)}"
        evidence = "\n".join(shown(line, 400) for line in check.evidence)
        table.add_row(_MARK[check.status], label, Text(evidence, style="dim" if check.status == "skip" else ""))
    return table


def _verdict_panel(service: ServiceConfig, verdict: Verdict) -> Panel:
    c = verdict.classification
    style = "green" if c.cause is Cause.VALID else "red"
    lines = [f"[bold {style}]{c.cause.value}[/] — {escape(CAUSE_LABELS[c.cause])} ({c.confidence.value})"]
    if c.detail:
        lines.append(escape(shown(c.detail, 600)))
    if len(c.findings) > 1:
        lines.append(f"findings in check order: {', '.join(f.value for f in c.findings)}")
    if c.attacks:
        lines.append(f"[bold red]attack patterns:[/] {', '.join(a.value for a in c.attacks)}")
    return Panel("\n".join(lines), title=f"Verdict for {escape(service.name)}", title_align="left", border_style=style)


def _remediation(ctx: Context, service: ServiceConfig, verdict: Verdict) -> Group:
    c = verdict.classification
    lines = [Text("What to do", style="bold"), Text(f"→ {REMEDIATION[c.cause]}")]
    for line in cause_context(ctx, service, verdict):
        lines.append(Text(f"  {line}"))
    for attack in c.attacks:
        lines.append(Text(f"⚠ {attack.value}: {ATTACK_ADVICE[attack]}", style="red"))
    return Group(*lines)


def classification_json(classification: Classification) -> str:
    """The --json line: the Classification contract with `event_id` null."""
    return classification.model_copy(update={"event_id": None}).model_dump_json()
