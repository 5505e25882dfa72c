"""How a reported message is read: normalise it, mask what came from the token, read its times.

`reported` holds the table (one row per known validator message); this module holds the
mechanics the table relies on, so that the table stays data.

1. **Normalise** (`normalise`). A message reaches us through gateways and log shippers that
   rewrite it: Envoy puts its status into `%RESPONSE_CODE_DETAILS%` as
   `jwt_authn_access_denied{Jwt_is_expired}` (spaces turned into underscores by the
   `jwt_authn` filter's `generateRcDetails`); JSON logs escape quotes (`\\"`, `\\u0027`);
   query strings and some headers percent-encode (`%20`, `+`); HTML error pages use
   entities; RFC 6750 puts the message into `WWW-Authenticate: Bearer error="invalid_token",
   error_description="..."`; log pipelines cut long lines (`...`, `…`, `[truncated]`). Each is
   undone once, in a fixed order, on at most `MAX_SCAN_CHARS` characters of input.

2. **Mask** (`SlotMasker`). Validators embed values taken from the token (a kid, an issuer,
   an audience, an alg) after fixed text of their own: `kid "..."`, `matches: "..."`,
   `Issuer: '...'`. Each such place is a *slot*: an anchor (the validator's fixed text just
   before the value) and optionally the fixed text that closes it. The masker scans the
   message left to right; at the leftmost anchor it replaces everything up to the *last*
   occurrence of the closing text (or up to the end, when there is none or the message was
   cut) with one `MASK` character, then goes on after it. Because a validator's own fixed
   text always precedes the value it prints, the first anchor found is the validator's, and
   whatever the token put after it (another message, a closing quote, an IDX code) is
   masked before any row is searched. JSON and logfmt fields that carry token values
   (`"kid":"..."`, `iss=...`) and token-shaped strings are masked the same way, before the
   JSON escapes are undone (while the escaping still delimits them).

3. **Times** (`TimeSpec`, `parse_time`, `go_duration_seconds`). Some messages state the
   failing time (`ValidTo (UTC): '...'`, `Jwt expired at ...`, `token is expired by 1m30s`)
   and sometimes the validator's clock. `overshoot` turns them into seconds beyond the
   leeway, as DESIGN.md step 6 does for a token.

4. **Literal gates** (`LiteralGate`, `fold`). Each row's regex and each slot's anchor has
   fixed words that any match must contain (`kid`, `claim must be a number`). A regex runs
   only on a message whose folded text holds them: on a 2 KB hostile message (`":" * 2000`,
   runs of quotes, a repeated keyword) searching all ~200 rows and anchors cost 11-38 ms,
   gated it is a few substring tests per row (bench/bench_stages.py's reported figures). The
   gate only skips a regex that cannot match, so no verdict changes: the words are read
   from the compiled pattern itself, and `fold` maps every character Python's IGNORECASE
   treats as an ASCII letter (`K` Kelvin, `ı`, `İ`, `ſ`) to that letter.

Safety: every pattern here uses literals, character classes and bounded repeats only;
input is cut to `MAX_SCAN_CHARS` before any of it runs.
"""

from __future__ import annotations

import html
import re
import re._parser as _re_parser  # reads a compiled pattern's fixed text for the literal gates
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

#: Only this many leading characters of a reported message are read.
MAX_SCAN_CHARS = 2_000

#: What a masked value becomes. A control character: input never keeps one (see `normalise`).
MASK = "\x1a"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s{1,2000}")

# -- 1. normalisation -------------------------------------------------------------------------

#: JSON/logfmt fields whose value comes from the token (masked while JSON escaping still delimits them).
_TOKEN_FIELDS = r"kid|iss|issuer|aud|audience|sub|subject|alg|azp|client_id|jti|typ|token|jwt|access_token|id_token"
#: A value quoted inside a quoted string (`\"abc\"`). A bare value stops at any quote: it may be the
#: closing quote of the string around it, which a validator's slot needs to find its value's end.
_ESCAPED_QUOTED = r'\\"(?:[^"\\]|\\[^"]){0,2000}\\"'
_JSON_FIELD = re.compile(
    rf"""(?P<key>\\{{0,2}}"(?:{_TOKEN_FIELDS})\\{{0,2}}"\s{{0,4}}:\s{{0,4}})"""
    rf"""(?:"(?:[^"\\]|\\.){{0,2000}}"|{_ESCAPED_QUOTED}|\[[^\]]{{0,2000}}\]|[^,}}\s"]{{1,200}})""",
    re.IGNORECASE,
)
_LOGFMT_FIELD = re.compile(
    rf"""(?P<key>(?<![\w"])(?:{_TOKEN_FIELDS})=)(?:"(?:[^"\\]|\\.){{0,2000}}"|{_ESCAPED_QUOTED}|[^\s"]{{1,200}})""",
    re.IGNORECASE,
)
#: A compact JWS/JWE anywhere in a message is a token (a credential), never text to match.
_TOKEN_SHAPED = re.compile(r"\beyJ[A-Za-z0-9_-]{4,2000}(?:\.[A-Za-z0-9_-]{0,2000}){1,4}")

_JSON_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/'bfnrt]))")
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "'": "'", "b": " ", "f": " ", "n": " ", "r": " ", "t": " "}
_HTML_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,8});")
_FORM_PLUS = re.compile(r"[A-Za-z]\+[A-Za-z]")
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2}){1,600}")
_ENVOY_DETAILS = re.compile(r"\bjwt_authn_access_denied\{(?P<status>[^{}]{0,400})(?:\}|$)")
_BEARER_CHALLENGE = re.compile(r"^(?:www-authenticate\s{0,4}:\s{0,4})?bearer\b", re.IGNORECASE)
_ERROR_DESCRIPTION = re.compile(
    r"""\berror_description\s{0,4}=\s{0,4}(?:"(?P<text>.{0,2000})|(?P<bare>[^,\s"]{1,400}))""", re.IGNORECASE
)
_TRUNCATION_MARK = re.compile(r"(?:\.{3}|…|\[truncated\]|\(truncated\)|<truncated>)\s{0,4}$", re.IGNORECASE)
_SURROUNDING_QUOTES = (('"', '"'), ("'", "'"), ("`", "`"), ("“", "”"))


@dataclass(frozen=True, slots=True)
class Normalised:
    """A message as the table reads it; `truncated` when its end was cut (by us or upstream)."""

    text: str
    truncated: bool


def _clean(decoded: str) -> str:
    """A decoded piece of text with control characters (MASK among them) turned into spaces."""
    return _CONTROL.sub(" ", decoded)


def _unescape_json(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return _clean(chr(int(match.group(1), 16)))
        return _JSON_SIMPLE[match.group(2)]

    decoded = _JSON_ESCAPE.sub(one, text)
    # Surrogate pairs from \ud83d\ude00 come out as two lone surrogates: join them, drop strays.
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _decode_percent(text: str) -> str:
    if "+" in text and not any(c.isspace() for c in text) and _FORM_PLUS.search(text):
        text = text.replace("+", " ")  # a form-encoded value (one "word" joined by +): `+` is a space
    if not _PERCENT_RUN.search(text):
        return text
    return _PERCENT_RUN.sub(lambda m: _clean(unquote(m.group(0), errors="replace")), text)


def _mask_fields(text: str) -> str:
    text = _JSON_FIELD.sub(lambda m: m.group("key") + f'"{MASK}"', text)
    text = _LOGFMT_FIELD.sub(lambda m: m.group("key") + MASK, text)
    return _TOKEN_SHAPED.sub(MASK, text)


def _bearer_description(text: str) -> str:
    """RFC 6750: a `Bearer ...` challenge reads as its `error_description` when it has one."""
    if not _BEARER_CHALLENGE.match(text):
        return text
    found = _ERROR_DESCRIPTION.search(text)
    if found is None:
        return text
    if found.group("text") is not None:
        inner = found.group("text")
        end = inner.rfind('"')
        return inner[:end] if end >= 0 else inner
    return found.group("bare")


def _strip_quotes(text: str) -> str:
    for _ in range(3):
        text = text.strip()
        for left, right in _SURROUNDING_QUOTES:
            if len(text) >= 2 and text[0] == left and text[-1] == right:
                text = text[1:-1]
                break
        else:
            return text
    return text.strip()


def normalise(message: str | None) -> Normalised:
    """The message as the table matches it: decoded once per layer, token fields masked, one line."""
    if not message:
        return Normalised("", truncated=False)
    cut = len(message) > MAX_SCAN_CHARS
    text = _CONTROL.sub(" ", message[:MAX_SCAN_CHARS])
    text = _mask_fields(text)
    text = _unescape_json(text)
    if "&" in text:
        text = _HTML_ENTITY.sub(lambda m: _clean(html.unescape(m.group(0))), text)
    text = _decode_percent(text)
    text = _ENVOY_DETAILS.sub(lambda m: m.group("status").replace("_", " "), text)
    text = _SPACES.sub(" ", text).strip()
    text = _strip_quotes(_bearer_description(text))
    marked = _TRUNCATION_MARK.search(text)
    if marked is not None:
        text = text[: marked.start()]
    if cut or marked is not None:
        # The last word was cut somewhere inside: it is not a word the validator wrote.
        space = text.rfind(" ")
        text = text[:space] if space >= 0 else ""
    return Normalised(text.strip(), truncated=cut or marked is not None)


# -- literal gates ----------------------------------------------------------------------------

#: The non-ASCII characters that Python's IGNORECASE matches with an ASCII letter (a test scans every
#: code point for them), mapped to that letter; then `str.lower` does the rest.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def fold(text: str) -> str:
    """`text` as the literal gates read it: any character IGNORECASE equates with an ASCII letter, lowered."""
    return text.translate(_FOLD).lower()


def _literal_runs(items: Iterable[tuple[object, object]]) -> list[str]:
    """The runs of ASCII literal characters in one parsed sequence: each occurs in any text it matches.

    Only ASCII: `fold` is exact for what IGNORECASE equates with ASCII characters, not for
    the other equivalences it knows (`µ`/`μ`, `ς`/`σ`, ...).
    """
    runs: list[str] = []
    current: list[str] = []
    for op, arg in items:
        if op is _re_parser.LITERAL and isinstance(arg, int) and arg < 0x80:
            current.append(chr(arg))
            continue
        if current:
            runs.append("".join(current))
            current = []
    if current:
        runs.append("".join(current))
    return [run for run in runs if run.strip()]


#: What a pattern requires of a text: literal runs that must all occur, and groups of alternatives
#: of which one must hold each (`(fixed runs, ((alternative, ...), ...))`).
Requirement = tuple[tuple[str, ...], tuple[tuple["Requirement", ...], ...]]


def _requirement(items: Iterable[tuple[object, Any]]) -> Requirement | None:
    """What any match of a parsed sequence contains, or None when it may contain no fixed text."""
    items = list(items)
    children: list[tuple[Requirement, ...]] = []
    for op, arg in items:
        if op is _re_parser.BRANCH:
            alternatives = [_requirement(branch) for branch in arg[1]]
            if all(alternative is not None for alternative in alternatives):
                children.append(tuple(a for a in alternatives if a is not None))
        elif op is _re_parser.SUBPATTERN:  # a group that is not inside a repeat: it must match
            inner = _requirement(arg[-1])
            if inner is not None:
                children.append((inner,))
    runs = tuple(fold(run) for run in _literal_runs(items))
    if not runs and not children:
        return None
    return runs, tuple(children)


def _holds(requirement: Requirement, folded: str) -> bool:
    runs, children = requirement
    for run in runs:
        if run not in folded:
            return False
    return all(any(_holds(alternative, folded) for alternative in group) for group in children)


@dataclass(frozen=True, slots=True)
class LiteralGate:
    """Fixed text that any match of a pattern contains (`Requirement`), read from the pattern itself.

    `passes(folded)` is False only when the folded text lacks it, that is when the pattern
    cannot match. A pattern whose text cannot be read, or that may match without fixed text,
    gets no gate: it always runs.
    """

    requirement: Requirement | None

    @classmethod
    def of(cls, pattern: re.Pattern[str] | str, flags: int = re.IGNORECASE) -> LiteralGate:
        text, flags = (pattern.pattern, pattern.flags) if isinstance(pattern, re.Pattern) else (pattern, flags)
        if not flags & re.IGNORECASE:  # the gates read folded text
            return cls(None)
        try:
            return cls(_requirement(_re_parser.parse(text, flags)))
        except Exception:  # another Python's parser: no gate, the regex always runs
            return cls(None)

    def passes(self, folded: str) -> bool:
        return self.requirement is None or _holds(self.requirement, folded)


# -- 2. slots and masking ---------------------------------------------------------------------

#: `{name}` or `{name|closing text}` at the end of a slot pattern marks the token value.
_SLOT_MARKER = re.compile(r"\{(?P<name>[a-z_]{1,16})(?:\|(?P<closing>[^{}]{1,64}))?\}$")


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a validator puts a token-derived value: after `anchor`, up to `closing` (or the end)."""

    name: str
    anchor: str  # a regular expression, the validator's fixed text just before the value
    closing: str | None  # literal text that follows the value, if the validator writes any

    @classmethod
    def parse(cls, spec: str) -> Slot:
        """`r"kid is: '{kid|', but did not match}"` → anchor `kid is: '`, closing `', but did not match`."""
        marker = _SLOT_MARKER.search(spec)
        if marker is None:
            raise ValueError(f"slot pattern {spec!r} does not end with a {{name}} or {{name|closing}} marker")
        anchor = spec[: marker.start()]
        if anchor.endswith(" "):
            anchor = anchor[:-1] + " ?"  # an empty value at the end of a line loses the space too
        return cls(marker.group("name"), anchor, marker.group("closing"))


def split_slot_pattern(pattern: str) -> tuple[str, Slot | None]:
    """A row pattern ending in a slot marker → (the pattern matched on masked text, its slot)."""
    marker = _SLOT_MARKER.search(pattern)
    if marker is None:
        return pattern, None
    slot = Slot.parse(pattern)
    return slot.anchor + re.escape(MASK), slot


#: Anchor sets a `SlotMasker` keeps compiled (each a few KB; a message activates one).
_MAX_SUBSETS = 256


class SlotMasker:
    """Masks every slot's value, leftmost anchor first, in one pass over the text."""

    def __init__(self, slots: Iterable[Slot]) -> None:
        self._slots: list[Slot] = []
        seen: set[tuple[str, str | None]] = set()
        for slot in slots:
            key = (slot.anchor.lower(), slot.closing.lower() if slot.closing else None)
            if key not in seen:
                seen.add(key)
                self._slots.append(slot)
        self._anchors = self._compile(range(len(self._slots)))
        self._gates = [LiteralGate.of(slot.anchor) for slot in self._slots]
        # The anchors of the slots whose gates a text passes, compiled per set (bounded: past
        # `_MAX_SUBSETS` sets the full alternation runs, which finds the same anchors).
        self._subsets: dict[tuple[int, ...], re.Pattern[str]] = {}

    def _compile(self, indices: Iterable[int]) -> re.Pattern[str]:
        alternatives = "|".join(f"(?P<s{i}>{self._slots[i].anchor})" for i in indices)
        return re.compile(alternatives or r"(?!)", re.IGNORECASE)

    def _anchors_for(self, text: str) -> re.Pattern[str] | None:
        """The alternation of the anchors that can occur in `text` (in table order), None when none can.

        A slot whose gate fails cannot match anywhere in the text, so leaving it out of the
        alternation finds the same leftmost anchor, and the same alternative at it.
        """
        folded = fold(text)
        active = tuple(i for i, gate in enumerate(self._gates) if gate.passes(folded))
        if not active:
            return None
        if len(active) == len(self._slots):
            return self._anchors
        anchors = self._subsets.get(active)
        if anchors is None:
            if len(self._subsets) >= _MAX_SUBSETS:
                return self._anchors
            anchors = self._subsets[active] = self._compile(active)
        return anchors

    @property
    def slots(self) -> Sequence[Slot]:
        return tuple(self._slots)

    def spans(self, text: str, truncated: bool = False) -> list[tuple[int, int]]:
        """The (start, end) of each value that `mask` replaces, left to right."""
        spans: list[tuple[int, int]] = []
        anchors = self._anchors_for(text)
        if anchors is None:
            return spans
        lowered = text.lower()
        pos = 0
        while pos <= len(text):
            found = anchors.search(text, pos)
            if found is None or found.lastgroup is None:
                break
            slot = self._slots[int(found.lastgroup[1:])]
            start = found.end()
            end = len(text)
            if slot.closing is not None and not truncated:
                last = lowered.rfind(slot.closing.lower(), start)
                end = last if last >= 0 else len(text)
            spans.append((start, end))
            pos = max(end, start + 1)
        return spans

    def mask(self, text: str, truncated: bool = False) -> str:
        """`text` with each slot's value replaced by one `MASK` character."""
        pieces: list[str] = []
        pos = 0
        for start, end in self.spans(text, truncated):
            pieces.append(text[pos:start])
            pieces.append(MASK)
            pos = end
        pieces.append(text[pos:])
        return "".join(pieces)


# -- 3. times ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """Where a row's message states the failing time.

    `kind` is `exp` or `nbf` (iat-in-the-future counts as nbf). `pattern` has a group
    `claim` (the token's time), optionally `clock` (the validator's own time), or instead a
    group `by` (a Go duration: how far past exp the validator's clock was).
    """

    kind: str
    pattern: re.Pattern[str]


def time_spec(kind: str, regex: str) -> TimeSpec:
    if kind not in {"exp", "nbf"}:
        raise ValueError(f"time kind must be exp or nbf, not {kind!r}")
    return TimeSpec(kind, re.compile(regex, re.IGNORECASE))


_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d)(?::(?P<s>\d\d)(?:[.,](?P<f>\d{1,9}))?)?"
    r"\s{0,1}(?P<tz>Z|UTC|[+-]\d\d:?\d\d)?$",
    re.IGNORECASE,
)
_DOTNET = re.compile(
    r"^(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}) (?P<h>\d{1,2}):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<f>\d{1,7}))?"
    r"(?: (?P<ampm>AM|PM))?$",
    re.IGNORECASE,
)
#: Go's time.Time String(): `2006-01-02 15:04:05.999999999 -0700 MST`, maybe with ` m=+1.2`.
_GO_TIME = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?) (?P<off>[+-]\d{4})"
    r"(?: [A-Za-z]{1,6})?(?: m=[+-][0-9.]{1,30})?$"
)
_GO_DURATION_PART = re.compile(r"(?P<n>\d{1,12}(?:\.\d{1,9})?)(?P<unit>ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _fraction(digits: str | None) -> int:
    return int((digits or "0")[:6].ljust(6, "0"))


def parse_time(text: str) -> datetime | None:
    """An aware datetime from a validator's rendering of a time (UTC when none is stated), else None."""
    text = text.strip()
    try:
        if iso := _ISO.match(text):
            tz = (iso.group("tz") or "Z").upper()
            offset = timedelta(0)
            if tz not in {"Z", "UTC"}:
                sign = -1 if tz[0] == "-" else 1
                digits = tz[1:].replace(":", "")
                offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            naive = datetime(  # noqa: DTZ001 - the offset is applied on the next line
                int(iso.group("y")), int(iso.group("mo")), int(iso.group("d")),
                int(iso.group("h")), int(iso.group("mi")), int(iso.group("s") or 0), _fraction(iso.group("f")),
            )  # fmt: skip
            return (naive - offset).replace(tzinfo=UTC)
        if net := _DOTNET.match(text):
            first, second = int(net.group("a")), int(net.group("b"))
            month, day = (second, first) if first > 12 else (first, second)  # M/d unless that cannot be
            hour = int(net.group("h"))
            ampm = (net.group("ampm") or "").upper()
            if ampm:
                hour = hour % 12 + (12 if ampm == "PM" else 0)
            return datetime(
                int(net.group("y")), month, day, hour, int(net.group("mi")), int(net.group("s")),
                _fraction(net.group("f")), tzinfo=UTC,
            )  # fmt: skip
        if go := _GO_TIME.match(text):
            off = go.group("off")
            return parse_time(f"{go.group('date')}{off[:3]}:{off[3:]}")
    except ValueError:  # 2024-02-31 and the like
        return None
    return None


def go_duration_seconds(text: str) -> float | None:
    """Seconds in a Go `time.Duration` string (`1h0m0s`, `1m30.5s`, `250ms`, `-3s`), else None."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, pos = 0.0, 0
    for part in _GO_DURATION_PART.finditer(body):
        if part.start() != pos:
            return None
        total += float(part.group("n")) * _GO_UNITS[part.group("unit")]
        pos = part.end()
    if pos != len(body) or pos == 0:
        return None
    return sign * total


@dataclass(frozen=True, slots=True)
class StatedTime:
    """What a message says about the failing time, in seconds beyond the leeway."""

    kind: str  # exp or nbf
    claim_time: datetime | None  # the token's exp/nbf as the message states it
    clock: datetime | None  # the validator's time as the message states it, else the event's
    clock_stated: bool
    off_by: float  # seconds between the claim time and the clock (positive: the claim failed)
    overshoot: float  # off_by minus the leeway


def read_stated_time(spec: TimeSpec, text: str, ts: datetime, leeway_seconds: float) -> StatedTime | None:
    """The failing time a row's message states, relative to its own clock when it states one, else `ts`."""
    found = spec.pattern.search(text)
    if found is None:
        return None
    groups = found.groupdict()
    if groups.get("by") is not None:
        by = go_duration_seconds(groups["by"])
        if by is None:
            return None
        return StatedTime(spec.kind, None, None, True, by, by - leeway_seconds)
    claim = parse_time(groups.get("claim") or "")
    if claim is None:
        return None
    stated_clock = parse_time(groups["clock"]) if groups.get("clock") else None
    clock = stated_clock or ts
    off_by = (clock - claim).total_seconds() if spec.kind == "exp" else (claim - clock).total_seconds()
    return StatedTime(spec.kind, claim, clock, stated_clock is not None, off_by, off_by - leeway_seconds)
