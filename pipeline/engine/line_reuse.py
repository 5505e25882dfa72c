"""`jwtriage classify`'s retries, from the raw line straight to the output line: no record, no verdict built.

In an outage most event lines repeat an earlier line but for `event_id` and `ts`: the same
user retries the same token at the same service, with the same message and fetch time.
`spans` already proves when such a retry's verdict is a learned tail (every field but
`event_id`); the full path still decodes the line into a model, finds the token's parse and
static judgement, and builds a `Classification`, a `Verdict` and a `Judged` only for the sink
to print `event_id` and that tail. Here a line that starts `{"event_id":"…","ts":"…Z",`
(a plain id, a UTC time with at most microseconds) and whose rest (every byte after that
head) is one a line already decoded and judged had, is answered from the rest's judgement:
the same parse, service policy, static judgement and fetch time, so the same `spans.tail`
question the full path asks, at the time read from the head.

Why the rest stands for the decoded record: a rest is learned only from a line that the wire
model accepted and that was judged without error, with an inline token, whose decoded
`event_id` and `ts` are the head's (checked), and whose rest holds no backslash (so no
escaped key) and no `"event_id"` or `"ts"` string (so no duplicate key can override the
head). Another line with that rest and a head of the strict form decodes to the same record
but for those two fields: its id is printable ASCII without a quote or backslash (JSON that
decodes to itself, and the sink's own condition for printing a tail), its time's minute was
validated by the wire model's own datetime validator. Anything else (a miss, a time outside
the token's span, a line over the size limit, a batch after a late snapshot) takes the full
path, which then learns the rest. Entries are forgotten when the key timeline changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from pipeline.engine.checks import since_epoch
from pipeline.engine.tokens import ParsedToken
from pipeline.records import RecordKind

if TYPE_CHECKING:
    from pipeline.engine.classify import Classifier
    from pipeline.models import AuthFailureEvent
    from pipeline.records import Envelope

#: `{"event_id":"ID","ts":"YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z",` — ID printable ASCII without `"` or `\`.
_HEAD = re.compile(rb'\{"event_id":"([ !#-\[\]-~]+)","ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d):([0-5]\d(?:\.\d{1,6})?)Z",')
#: The seconds (`SS[.ffffff]`, at most 8 digits) in µs: `round(float(seconds) * 1e6)` is exact, as the float's
#: relative error (2**-52 after both roundings) is below 1e-8 µs at 60 s (checked for every SS.ffffff).
_TS = TypeAdapter(AwareDatetime)
_US = timedelta(microseconds=1)
#: Rests kept (an outage stream of 4,500 tokens has ~5,700) and their bytes, with the parse and the judgement
#: each keeps alive (~2.5 KB in all for a 700-byte token); past either cap the oldest go.
MAX_RESTS = 10_000
MAX_REST_BYTES = 32 * 1024 * 1024
MAX_MINUTES = 10_000
_INVALID = -1  # a minute the wire model refuses (month 13); one before 1970 is negative too: both take the full path


@dataclass(slots=True)
class Scan:
    """One batch as `LineReuse.scan` read it, and what `runner.Pipeline`'s loop adds for `place`."""

    made: list[bytes | None]  # per envelope: its output line made from its head, or None (it goes through the loop)
    rest: list[int]  # the envelopes that go through the loop, in order
    heads: list[Any]  # per loop record: what `LineReuse.line` needs (its rest is known), or None
    learn: dict[int, tuple[bytes, bytes, int]]  # per loop record: (rest, id, µs) to learn from once judged
    marks: list[int] = field(default_factory=list)  # judged events before each loop record, then after them all
    reused: dict[int, bytes] = field(default_factory=dict)  # the output lines `line` made in the loop

    def place(self, lines: list[tuple[int, bytes]]) -> None:
        """Every output line made, after the judged events of the records before it (`Batch.lines`)."""
        marks, reused, loop = self.marks, self.reused, 0
        for line in self.made:
            if line is None:
                line = reused.get(loop)
                if line is not None:
                    lines.append((marks[loop], line))
                loop += 1
            else:
                lines.append((marks[loop], line))


class LineReuse:
    """Raw event lines that repeat a judged line's rest → their output lines, for one key timeline version."""

    def __init__(self, classifier: Classifier, max_record_bytes: int) -> None:
        self._classifier = classifier
        self._max_record_bytes = max_record_bytes
        self._version = classifier.timeline.version
        # rest → (static judgement, parse, policy, fetch time, service)
        self._rests: dict[bytes, tuple[Any, ...]] = {}
        self.rest_bytes = 0
        self._minutes: dict[bytes, int] = {}  # "YYYY-MM-DDTHH:MM" → its µs from the epoch, or _INVALID
        self.hits = 0

    def __len__(self) -> int:
        return len(self._rests)

    def scan(self, envelopes: list[Envelope]) -> Scan:
        """Read every event line's head: output lines made here, and what the loop needs for the others.

        A line whose rest is known and whose time lies in its token's last span (`spans`'
        `last_span` memo, with the same fetch time) gets its output line here. Another known
        rest gets what `line` needs, asked in order so that a tail the batch's earlier events
        teach is found by its later ones. A line of the strict form whose rest is new maps to
        (rest, id, µs): once judged in full, `learn` keeps its rest. A snapshot ends the scan:
        the events after it are judged after it, in full.
        """
        classifier = self._classifier
        version = classifier.timeline.version
        if version != self._version:
            self._rests.clear()
            self.rest_bytes = 0
            self._version = version
        lines: list[bytes | None] = [None] * len(envelopes)
        heads: list[Any] = [None] * len(envelopes)
        learn: dict[int, tuple[bytes, bytes, int]] = {}
        rests, minutes, match = self._rests, self._minutes, _HEAD.match
        event, limit = RecordKind.EVENT, self._max_record_bytes
        hits = 0
        for index, envelope in enumerate(envelopes):
            if envelope.kind is not event:
                if envelope.kind is RecordKind.SNAPSHOT:
                    break
                continue
            raw = envelope.value
            head = match(raw)
            if head is None or len(raw) > limit:
                continue
            minute = head[2]
            base = minutes.get(minute)
            if base is None:
                base = self._minute(minute)
            if base < 0:
                continue
            at_us = base + round(float(head[3]) * 1e6)
            rest = raw[head.end():]
            entry = rests.get(rest)
            if entry is None:
                learn[index] = (rest, head[1], at_us)
                continue
            last = entry[0].last_span  # as `spans.tail` reads it first: (first µs, last µs, tail, fetch time)
            if last and entry[0].version == version and last[0] <= at_us <= last[1] and (
                (fetched := entry[3]) is (was_fetched := last[3])
                or (fetched is not None and was_fetched is not None
                    and fetched.tzinfo is was_fetched.tzinfo and fetched == was_fetched)
            ):
                lines[index] = raw[: head.end(1) + 1] + last[2].line_tail
                hits += 1
            else:
                heads[index] = (head.end(1) + 1, at_us, entry)
        if hits:
            self.hits += hits
            for counter in (classifier.reuse, classifier.spans):  # as on the full path: each is a hit of both
                if counter is not None:
                    counter.hits += hits
        loop = [index for index, line in enumerate(lines) if line is None]
        return Scan(lines, loop, [heads[index] for index in loop],
                    {place: learn[index] for place, index in enumerate(loop) if index in learn})

    def line(self, raw: bytes, known: tuple[int, int, tuple[Any, ...]]) -> bytes | None:
        """The output line of `raw` (a line `scan` found a known rest in), or None when it must be judged in full.

        None when the key timeline changed since the rest was learned (a snapshot in the batch)
        or when `spans` has no tail for its time yet.
        """
        head_end, at_us, (static, token, policy, fetched, service) = known
        classifier = self._classifier
        spans = classifier.spans
        if spans is None or static.version != classifier.timeline.version:
            return None
        tail = spans.tail(at_us, fetched, service, token, policy, static)
        if tail is None:
            return None
        self.hits += 1
        classifier.reuse.hits += 1  # type: ignore[union-attr]  # a reused static judgement, as on the full path
        return raw[:head_end] + tail.line_tail

    def _minute(self, minute: bytes) -> int:
        """The minute's µs from the epoch as the wire model reads `minute:00Z`, or _INVALID when it refuses it."""
        try:
            at: int = since_epoch(_TS.validate_json(b'"' + minute + b':00Z"')) // _US
        except (ValidationError, OverflowError):
            at = _INVALID
        if len(self._minutes) >= MAX_MINUTES:
            self._minutes.clear()
        self._minutes[minute] = at
        return at

    def learn(self, rest: bytes, event_id: bytes, at_us: int, event: AuthFailureEvent) -> None:
        """Keep `rest` after its line was decoded into `event` and judged without error (see the module's why)."""
        if (
            event.token is None
            or b"\\" in rest
            or b'"event_id"' in rest
            or b'"ts"' in rest
            or event.event_id != event_id.decode()
            or since_epoch(event.ts) // _US != at_us
        ):
            return
        classifier = self._classifier
        reuse, policy = classifier.reuse, classifier._policies.get(event.service)
        token = classifier.parse_cache.get(event.token)
        if reuse is None or policy is None or not isinstance(token, ParsedToken):
            return
        static = reuse.cache.get((token.fingerprint, event.service))
        if static is None or static.tail_key is None or static.version != classifier.timeline.version:
            return
        size = _entry_bytes(rest, token)
        while self._rests and (len(self._rests) >= MAX_RESTS or self.rest_bytes + size > MAX_REST_BYTES):
            oldest = next(iter(self._rests))
            self.rest_bytes -= _entry_bytes(oldest, self._rests[oldest][1])
            del self._rests[oldest]
        self._rests[rest] = (static, token, policy, event.service_jwks_fetched_at, event.service)
        self.rest_bytes += size


def _entry_bytes(rest: bytes, token: ParsedToken) -> int:
    """A rest's bytes, and its parse's (`classify._parsed_bytes`) and judgement's (`reuse`'s ~500 B)."""
    return len(rest) + len(token.signing_input) + len(token.header_json) + 2 * len(token.claims_json) + 1_100

