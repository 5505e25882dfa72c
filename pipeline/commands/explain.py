"""`jwtriage explain`: one token, judged in front of you — each check with its evidence, the verdict, the fix.

The token comes only from stdin: an argument would land in shell history and in `ps`. It
is never printed, stored or logged; the output names it by its fingerprint. The verdict is
always the Classifier's (the same decision procedure as the pipeline, at `--at`); this
module lays out the evidence for each check of DESIGN.md's order from the same key timeline
and config, and adds what the store knows: earlier rejections of this very token and the
service's JWKS cache age.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import duckdb
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pipeline import queries
from pipeline.commands.common import load_cli_config, parse_time_flag, store_path
from pipeline.config import Config, ServiceConfig
from pipeline.engine.classify import Classifier, Verdict
from pipeline.engine.keys import KeyTimeline, TimelineKey
from pipeline.engine.tokens import MalformedToken, ParsedToken, fingerprint, parse, segment_count
from pipeline.errors import StoreError, UsageError
from pipeline.io.store_readers import connect_readonly, timeline_from
from pipeline.models import (
    CAUSE_LABELS,
    KEY_TIMING_CAUSES,
    AuthFailureEvent,
    Cause,
    Classification,
    JwksSnapshot,
)
from pipeline.records import RecordError, decode_record, iter_lines
from pipeline.remediation import ATTACK_ADVICE, REMEDIATION
from pipeline.text import human_duration

#: At most this much is read from stdin; a real token is a few KB.
MAX_INPUT_BYTES = 64 * 1024
PIPE_HINT = "paste the token and press Ctrl-D, or: pbpaste | jwtriage explain (xclip -o / wl-paste on Linux)"
ARGUMENT_REFUSAL = (
    "explain reads the token from stdin, never from an argument: an argument lands in your shell history "
    "and in `ps` for every user on the machine. Run it again without the argument, then "
    + PIPE_HINT
    + ". If you passed a real token, delete that line from your shell history (bash: `history -d N`)."
)
#: How far back the store's events are read for the service's JWKS cache age.
CACHE_AGE_LOOKBACK = timedelta(days=7)
EVENT_ID = "explain"

_TIME_CLAIMS = ("exp", "nbf", "iat")
_TIME_CAUSES = frozenset({Cause.CLOCK_SKEW, Cause.EXPIRED, Cause.NOT_YET_VALID})
#: What people paste around a token: a header line, the scheme.
_PREFIX = re.compile(r"^(authorization:\s*)?(bearer(\s+|$))?", re.IGNORECASE)
_JWT_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
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
    config = load_cli_config(args)
    services = _services(config, args.service)
    keys = load_keys(args)
    try:
        token = read_token(stdin)
        classifier = Classifier(config, keys.timeline)
        verdicts = [
            (service, classifier.classify(AuthFailureEvent(event_id=EVENT_ID, ts=at, service=service.name), token))
            for service in services
        ]
        # --json stays predictable for scripts: the store's history does not pick the service.
        focus = _focus(config, args.service, verdicts, token, None if args.json else keys)
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
        console = Console(file=stdout, highlight=False)
        render(console, ctx, token, verdicts, focus, chosen=args.service is not None)
        return 0
    finally:
        keys.close()


def parse_at(text: str) -> datetime:
    """An RFC 3339 time with a UTC offset ('Z' or +hh:mm)."""
    return parse_time_flag("--at", text, shown=_echo(text))


def _echo(text: str) -> str:
    """A flag's value for an error message, unless it could be a token pasted in the wrong place."""
    return "that value" if _JWT_LIKE.search(text) or len(text) > 60 else repr(text)


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


@dataclass
class KeySource:
    timeline: KeyTimeline
    label: str
    con: duckdb.DuckDBPyConnection | None = None

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


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


# -- which service gets the detailed listing ---------------------------------------------------


def _audiences(token: str) -> list[str]:
    try:
        aud = parse(token).claims.get("aud")
    except MalformedToken:
        return []
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


@dataclass(frozen=True)
class Focus:
    """The service explained check by check, and why that one."""

    service: ServiceConfig
    verdict: Verdict
    why: str


def _focus(
    config: Config,
    chosen: str | None,
    verdicts: list[tuple[ServiceConfig, Verdict]],
    token: str,
    keys: KeySource | None,
) -> Focus | None:
    """The chosen or only service, the one the token's aud (and iss) names, or the one that rejected it most."""
    if chosen is not None or len(verdicts) == 1:
        return Focus(*verdicts[0], "chosen" if chosen else "the only configured service")
    named = [pair for pair in verdicts if pair[0].audience in _audiences(token)]
    if len(named) > 1:  # several services share the audience: the ones that accept the token's iss
        iss = _claim(token, "iss")
        named = [pair for pair in named if iss in {config.issuer_by_name(n).issuer for n in pair[0].issuers}]
    if len(named) == 1:
        return Focus(*named[0], "the only service whose audience the token names")
    if keys is not None and keys.con is not None:
        seen = queries.token_history(keys.con, fingerprint(token))
        by_service = dict(verdicts)
        for row in seen:  # most rejections first
            service = next((s for s in by_service if s.name == row["service"]), None)
            if service is not None:
                return Focus(service, by_service[service], "the service that rejected this token most often")
    return None


def _claim(token: str, name: str) -> Any:
    try:
        return parse(token).claims.get(name)
    except MalformedToken:
        return None


# -- the evidence ----------------------------------------------------------------------------


@dataclass
class Context:
    config: Config
    keys: KeySource
    at: datetime
    at_is_now: bool

    @property
    def timeline(self) -> KeyTimeline:
        return self.keys.timeline

    def relative(self, when: datetime) -> str:
        seconds = (when - self.at).total_seconds()
        if abs(seconds) < 1:
            return "now" if self.at_is_now else "at --at"
        span = human_duration(seconds)
        if self.at_is_now:
            return f"{span} ago" if seconds < 0 else f"in {span}"
        return f"{span} before --at" if seconds < 0 else f"{span} after --at"

    def when(self, when: datetime) -> str:
        return f"{stamp(when)} ({self.relative(when)})"

    def issuer_name(self, url: str | None) -> str:
        for issuer in self.config.issuers:
            if issuer.issuer == url:
                return issuer.name
        return str(url)

    def service_issuer_urls(self, service: ServiceConfig) -> list[str]:
        return [self.config.issuer_by_name(n).issuer for n in service.issuers]

    def service_algorithms(self, service: ServiceConfig) -> list[str]:
        algs = {a for n in service.issuers for a in self.config.issuer_by_name(n).algorithms}
        return sorted(algs)


@dataclass
class Check:
    """One step of the re-validation order, with its outcome and the evidence for it."""

    number: int
    name: str
    status: str  # "pass", "fail" or "skip"
    evidence: list[str] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shown(value: Any, limit: int = 100) -> str:
    """A value from the token, safe to print: no control characters, no embedded JWT, cut to `limit`."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = _JWT_LIKE.sub(lambda m: f"<a JWT, sha256 {fingerprint(m.group(0))[:12]}…>", text)
    text = "".join(
        ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _notes(verdict: Verdict) -> dict[Cause, str]:
    """The classifier's evidence sentence per failed check.

    Uses `Verdict.notes` when classify.py exposes it; until then, the first finding's
    sentence is the classification's `detail` (without its "Also failed" tail).
    """
    exposed = getattr(verdict, "notes", None)
    if isinstance(exposed, dict) and exposed:
        return dict(exposed)
    c = verdict.classification
    if c.cause is Cause.VALID or not c.detail:
        return {}
    sentence = c.detail.split(" Also failed: ")[0].rstrip(".")
    if len(sentence) > 1 and sentence[1].islower():  # the classifier capitalised the note's first letter
        sentence = sentence[0].lower() + sentence[1:]
    return {c.cause: sentence}


def build_checks(ctx: Context, token: str, service: ServiceConfig, verdict: Verdict) -> list[Check]:
    """Each check of DESIGN.md's order: status from the Classifier's findings, evidence from the timeline and config."""
    c = verdict.classification
    found = set(c.findings)
    notes = _notes(verdict)
    names = ["parse", "alg policy", "key and signature", "issuer (iss)", "audience", "time", "required claims"]
    names.append("key timing")

    annotated: set[Cause] = set()

    def failed(check: Check, *causes: Cause) -> Check:
        check.status = "fail"
        check.causes = [cause for cause in c.findings if cause in causes]
        # The classifier's sentence goes with the first check that failed for that cause.
        lines = [notes[cause] for cause in check.causes if cause in notes and cause not in annotated]
        annotated.update(check.causes)
        check.evidence = [*lines, *check.evidence]
        return check

    def rest(first: int, why: str) -> list[Check]:
        return [Check(n, names[n - 1], "skip", [why]) for n in range(first, 9)]

    if c.cause is Cause.UNVERIFIABLE:
        jwe = Check(1, "parse", "fail", [f"{segment_count(token)} segments: a JWE (encrypted), unreadable here"])
        return [failed(jwe, Cause.UNVERIFIABLE), *rest(2, "not checked: the token is encrypted")]
    try:
        parsed = parse(token)
    except MalformedToken as exc:
        bad = Check(1, "parse", "fail", [] if Cause.MALFORMED in notes else [f"not a compact JWS: {exc.reason}"])
        return [failed(bad, Cause.MALFORMED), *rest(2, "not checked: the token does not parse")]

    checks = [
        Check(1, "parse", "pass", ["a compact JWS: 3 segments, header and claims are JSON objects, times are numbers"])
    ]
    alg = parsed.alg
    algs = ctx.service_algorithms(service)
    alg_refused = Cause.BAD_ALG in found and (alg.lower() == "none" or alg not in algs)
    policy = Check(
        2,
        "alg policy",
        "pass",
        [f"alg {shown(alg)}; {service.name} accepts {', '.join(algs)} (issuers {', '.join(service.issuers)})"],
    )
    checks.append(failed(policy, Cause.BAD_ALG) if alg_refused else policy)

    if alg_refused:
        checks.append(Check(3, names[2], "skip", ["not checked: the alg is refused first"]))
    else:
        checks.append(_key_check(ctx, parsed, service, verdict, found, failed))
    checks.append(_issuer_check(ctx, parsed, service, verdict, found, failed))
    checks.append(_audience_check(parsed, service, found, failed))
    checks.append(_time_check(ctx, parsed, service, found, failed))
    missing = [claim for claim in service.required_claims if claim not in parsed.claims]
    required = Check(
        7,
        "required claims",
        "pass",
        [
            f"{service.name} requires {', '.join(service.required_claims) or 'nothing'}"
            + (f"; missing: {', '.join(missing)}" if missing else "; all present")
        ],
    )
    checks.append(failed(required, Cause.MISSING_CLAIM) if Cause.MISSING_CLAIM in found else required)
    checks.append(_timing_check(ctx, service, verdict, found, failed))
    return checks


def _verifying_key(ctx: Context, verdict: Verdict) -> TimelineKey | None:
    issuer = verdict.classification.issuer
    if issuer is None or verdict.key_thumbprint is None:
        return None
    return next((k for k in ctx.timeline.all_keys(issuer) if k.thumbprint == verdict.key_thumbprint), None)


def _intervals(ctx: Context, key: TimelineKey) -> str:
    spans = []
    earliest = ctx.timeline.earliest_snapshot(key.issuer)
    for interval in key.intervals:
        start = (
            f"already in the first snapshot ({stamp(interval.first_seen)}, {ctx.relative(interval.first_seen)})"
            if interval.first_seen == earliest
            else f"published {ctx.when(interval.first_seen)}"
        )
        end = (
            f"removed {ctx.when(interval.removed_at)}"
            if interval.removed_at is not None
            else f"still published at the last snapshot ({stamp(interval.last_seen)})"
        )
        spans.append(f"{start}, {end}")
    return "; then ".join(spans)


def _key_check(
    ctx: Context, token: ParsedToken, service: ServiceConfig, verdict: Verdict, found: set[Cause], failed: Any
) -> Check:
    c = verdict.classification
    configured = {i.issuer for i in ctx.config.issuers}
    accepted = ctx.service_issuer_urls(service)
    kid = token.kid
    evidence: list[str] = []
    signer = _verifying_key(ctx, verdict)
    if kid is None:
        evidence.append(f"no kid in the header: every configured key that fits {shown(token.alg)} was tried")
    else:
        matches = ctx.timeline.keys_with_kid(kid)
        known = [k for k in matches if k.issuer in configured]
        others = [k for k in matches if k.issuer not in configured]
        if not known:
            history = ", ".join(
                f"{ctx.issuer_name(url)} since {stamp(first)}"
                for url in ctx.timeline.issuers
                if url in configured and (first := ctx.timeline.earliest_snapshot(url)) is not None
            )
            evidence.append(f"kid {shown(kid)}: no configured issuer ever published it (JWKS history: {history})")
        for key in known:
            kind = key.kty + (f"/{key.crv}" if key.crv else "")
            mark = "  ← verifies the signature" if signer is not None and key is signer else ""
            evidence.append(f"kid {shown(kid)} of {ctx.issuer_name(key.issuer)} ({kind}): {_intervals(ctx, key)}{mark}")
        if others:
            strangers = ", ".join(sorted({k.issuer for k in others}))
            evidence.append(f"also published by issuers not in the config: {strangers}")
    if signer is not None:
        whose = "accepts" if signer.issuer in accepted else "does NOT accept"
        evidence.append(
            f"the signature verifies with {ctx.issuer_name(signer.issuer)}'s key "
            f"(thumbprint {signer.thumbprint[:12]}…), an issuer {service.name} {whose}"
        )
    elif kid is not None and ctx.timeline.keys_with_kid(kid) and not (found & {Cause.BAD_ALG}):
        evidence.append("the signature verifies with none of these keys")
    check = Check(3, "key and signature", "pass", evidence)
    causes = {Cause.UNKNOWN_KID, Cause.BAD_SIGNATURE, Cause.BAD_ALG}
    if c.issuer is not None and c.issuer not in accepted:
        causes.add(Cause.ISSUER_MISMATCH)
    return failed(check, *causes) if found & causes else check


def _issuer_check(
    ctx: Context, token: ParsedToken, service: ServiceConfig, verdict: Verdict, found: set[Cause], failed: Any
) -> Check:
    iss = token.claims.get("iss")
    accepted = ctx.service_issuer_urls(service)
    signer = verdict.classification.issuer
    label = f" ({ctx.issuer_name(iss)})" if isinstance(iss, str) and ctx.issuer_name(iss) != iss else ""
    evidence = [
        f"iss {shown(iss) if iss is not None else '(missing)'}{label}; {service.name} accepts {', '.join(accepted)}"
    ]
    if signer is not None and signer != iss:
        evidence.append(f"but the key that verifies belongs to {signer}")
    mismatch = not isinstance(iss, str) or iss not in accepted or (signer is not None and signer != iss)
    check = Check(4, "issuer (iss)", "pass", evidence)
    return failed(check, Cause.ISSUER_MISMATCH) if Cause.ISSUER_MISMATCH in found and mismatch else check


def _audience_check(token: ParsedToken, service: ServiceConfig, found: set[Cause], failed: Any) -> Check:
    aud = token.claims.get("aud")
    evidence = [f"aud {shown(aud) if aud is not None else '(missing)'}; {service.name} expects {service.audience}"]
    if service.authorized_parties is not None:
        party = token.claims.get("azp", token.claims.get("client_id"))
        evidence.append(
            f"azp/client_id {shown(party) if party is not None else '(missing)'}; authorized parties: "
            f"{', '.join(service.authorized_parties)}"
        )
    check = Check(5, "audience", "pass", evidence)
    return failed(check, Cause.AUDIENCE_MISMATCH) if Cause.AUDIENCE_MISMATCH in found else check


def _time_check(ctx: Context, token: ParsedToken, service: ServiceConfig, found: set[Cause], failed: Any) -> Check:
    leeway = service.leeway_seconds
    evidence = []
    for claim in _TIME_CLAIMS:
        value = token.claims.get(claim)
        if value is None:
            continue
        when = _claim_time(value)
        evidence.append(f"{claim} {ctx.when(when)}" if when else f"{claim} {shown(value)} (out of range)")
    if not evidence:
        evidence.append("no exp, nbf or iat")
    evidence.append(
        f"{service.name}'s leeway {leeway:g} s; a miss of up to {ctx.config.classify.skew_window_seconds:g} s "
        "beyond it counts as clock skew"
    )
    check = Check(6, "time", "pass", evidence)
    return failed(check, *_TIME_CAUSES) if found & _TIME_CAUSES else check


def _timing_check(ctx: Context, service: ServiceConfig, verdict: Verdict, found: set[Cause], failed: Any) -> Check:
    key = _verifying_key(ctx, verdict)
    if key is None:
        return Check(8, "key timing", "skip", ["not checked: no configured key verified the signature"])
    published = key.interval_start(ctx.at)
    evidence = [f"kid {shown(key.kid)}: {_intervals(ctx, key)}"]
    ttl = ctx.config.classify.max_jwks_cache_ttl_seconds
    young = ctx.timeline.is_young(key) and timedelta(0) <= ctx.at - published < timedelta(seconds=ttl)
    if young and Cause.STALE_JWKS not in _notes(verdict):
        evidence.append(
            f"no fetch time for {service.name}'s JWKS here: a key published less than {human_duration(ttl)} "
            f"(max_jwks_cache_ttl) before --at may be missing from its cache"
        )
    check = Check(8, "key timing", "pass", evidence)
    if not found & KEY_TIMING_CAUSES:
        return check
    failed(check, *KEY_TIMING_CAUSES)
    if verdict.classification.cause not in KEY_TIMING_CAUSES:
        check.evidence.append("not the verdict: key timing decides only for a token that passes every other check")
    return check


def _claim_time(value: Any) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


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
    for line in _key_source_warnings(ctx, token, shown_verdicts):
        console.print(f"[yellow]note:[/] {escape(line)}")
    console.print(_token_table(ctx, token))

    if not chosen and len(verdicts) > 1:
        console.print(_services_table(ctx, verdicts, focus))
        if focus is None:
            console.print(
                "[dim]The token's aud names no single configured service: pass --service NAME for the "
                "check-by-check evidence.[/]"
            )
    history = _history_lines(ctx, token)
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
    console.print(_checks_table(build_checks(ctx, token, service, verdict), service))
    console.print(_verdict_panel(service, verdict))
    console.print(_remediation(ctx, service, verdict))
    for line in history:
        console.print(escape(line))


def _key_source_warnings(ctx: Context, token: str, verdicts: Iterable[tuple[ServiceConfig, Verdict]]) -> list[str]:
    """When a kid is unknown, is the key history to blame? (none for an issuer, or it ends long before --at)"""
    unknown = [s for s, v in verdicts if v.classification.cause is Cause.UNKNOWN_KID]
    if not unknown:
        return []
    lines = []
    iss = _claim(token, "iss")
    urls = sorted({url for s in unknown for url in ctx.service_issuer_urls(s) if url == iss or iss is None})
    for url in urls or sorted({url for s in unknown for url in ctx.service_issuer_urls(s)}):
        first, last = ctx.timeline.earliest_snapshot(url), ctx.timeline.latest_snapshot(url)
        name = ctx.issuer_name(url)
        if first is None or last is None:
            lines.append(f"no JWKS snapshot of {name} ({url}) at all: every token it signs looks like an unknown kid")
        elif ctx.at < first:
            lines.append(f"the key history of {name} starts at {stamp(first)}, after {stamp(ctx.at)}: keys are unknown")
        elif ctx.at - last > timedelta(hours=1):
            lines.append(
                f"the last JWKS snapshot of {name} here is from {stamp(last)}, "
                f"{human_duration((ctx.at - last).total_seconds())} before the judging time: a key it published since "
                "would look unknown (is jwks-watch running?)"
            )
    return lines


def _token_table(ctx: Context, token: str) -> Table:
    table = Table(title="Header and claims (decoded, not trusted)", title_justify="left", show_header=False)
    table.add_column("part", style="dim")
    table.add_column("name", style="bold")
    table.add_column("value")
    if segment_count(token) == 5:
        table.add_row("", "", "a JWE (5 segments): encrypted, not decoded")
        return table
    problem = ""
    try:
        parsed = parse(token)
        header, claims = parsed.header, parsed.claims
    except MalformedToken as exc:
        header, claims = exc.header or {}, {}
        problem = f"does not parse: {exc.reason}"
    for part, values in (("header", header), ("claims", claims)):
        for n, (name, value) in enumerate(list(values.items())[:30]):
            text = shown(value)
            if part == "claims" and name in _TIME_CLAIMS and (when := _claim_time(value)) is not None:
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
    for line in _cause_context(ctx, service, verdict):
        lines.append(Text(f"  {line}"))
    for attack in c.attacks:
        lines.append(Text(f"⚠ {attack.value}: {ATTACK_ADVICE[attack]}", style="red"))
    return Group(*lines)


def _cause_context(ctx: Context, service: ServiceConfig, verdict: Verdict) -> list[str]:
    """The numbers behind the remediation line, for the causes where they change what to do."""
    c = verdict.classification
    key = _verifying_key(ctx, verdict)
    if c.cause is Cause.STALE_JWKS and key is not None:
        age = human_duration((ctx.at - key.interval_start(ctx.at)).total_seconds())
        return [f"kid {shown(key.kid)} was {age} old at {stamp(ctx.at)}; {_cache_age(ctx, service)}"]
    if c.cause is Cause.UNPUBLISHED_KEY and key is not None:
        return [f"kid {shown(key.kid)} was first published {ctx.when(key.first_seen)}: it was signed with before that"]
    if c.cause is Cause.RETIRED_KEY and key is not None:
        removed = key.removed_before(ctx.at)
        if removed is not None:
            line = f"kid {shown(key.kid)} was removed {ctx.when(removed)}"
            expires = _claim_time(verdict.claims.get("exp")) if verdict.claims else None
            if expires is not None and expires > removed:
                later = human_duration((expires - removed).total_seconds())
                line += (
                    f", but this token stays valid until {stamp(expires)}, {later} later: "
                    "the key should have stayed published at least that long"
                )
            return [line]
    if c.cause in (Cause.CLOCK_SKEW, Cause.EXPIRED, Cause.NOT_YET_VALID) and c.skew_seconds is not None:
        return [
            f"off by {human_duration(c.skew_seconds)} beyond {service.name}'s {service.leeway_seconds:g} s leeway "
            f"(skew window {ctx.config.classify.skew_window_seconds:g} s)"
        ]
    return []


def _cache_age(ctx: Context, service: ServiceConfig) -> str:
    unknown = (
        f"jwtriage does not know {service.name}'s JWKS cache age here; compare its cache TTL with the key's age, "
        "and have it refetch the JWKS once on an unknown kid"
    )
    if ctx.keys.con is None:
        return unknown + " (pass --db to use the store's events)"
    since = ctx.at - CACHE_AGE_LOOKBACK
    window = queries.Filters(since=since, until=ctx.at + timedelta(seconds=1), services=(service.name,))
    rows = queries.cache_age_by_service(ctx.keys.con, window)
    row = rows[0] if rows else None
    if row and row["reported_age_max_s"] is not None:
        return (
            f"{service.name}'s JWKS cache was up to {human_duration(row['reported_age_max_s'])} old "
            f"(median {human_duration(row['reported_age_median_s'])}) in the {row['events_with_fetch_time']:,} "
            "rejections that reported a fetch time in the 7 days up to then: a cache that old can predate the key"
        )
    if row and row["stale_window_s"] is not None:
        return (
            f"{service.name} does not report its fetch time, but it rejected new keys as stale up to "
            f"{human_duration(row['stale_window_s'])} after their publication: its cache lives at least that long"
        )
    return unknown


def _history_lines(ctx: Context, token: str) -> list[str]:
    if ctx.keys.con is None:
        return []
    rows = queries.token_history(ctx.keys.con, fingerprint(token))
    if not rows:
        return ["The store holds no earlier rejection of this token."]
    total = sum(r["events"] for r in rows)
    first = min(r["first_seen"] for r in rows)
    last = max(r["last_seen"] for r in rows)
    parts = ", ".join(f"{r['service']} {r['events']:,}× {r['cause']}" for r in rows[:6])
    return [
        f"In the store: this token was rejected {total:,} time(s) between {stamp(first)} and {stamp(last)}: {parts}"
        + (" …" if len(rows) > 6 else "")
    ]


def classification_json(classification: Classification) -> str:
    """The --json line: the Classification contract with `event_id` null."""
    return classification.model_copy(update={"event_id": None}).model_dump_json()
