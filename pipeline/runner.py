"""The loop: source → decode → join sampled tokens → classify → sink → commit, in batches.

`run` is the one loop of `jwtriage classify` (a JSONL-printing sink), the demo (DuckDB) and
the Kafka consumer (DuckDB, committing to its group); its docstring fixes the order of a
step. `Pipeline` is the pure part it drives. It keeps three pieces of bounded state: the
key timeline, recently sampled tokens (fingerprint → token), and recent events that could
not be judged fully yet (their sample had not arrived, or their kid was unknown). When the
missing sample or key arrives, those events are judged again and their row is replaced
(rows are keyed by `event_id`), so the three topics may arrive in any order.

A `Batch` is everything one step produced; the sink writes it in one transaction together
with the source positions it covers, which is what makes a crash and restart exact.
Events are decoded by a named format (`pipeline.io.formats`); samples and key snapshots
are jwtriage's own wire models.
"""

from __future__ import annotations

import gc
import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.bounded import BoundedCache
from pipeline.config import Config
from pipeline.engine import line_reuse
from pipeline.engine.classify import Classifier, Verdict
from pipeline.engine.keys import KeyTimeline
from pipeline.engine.line_reuse import LineReuse, Scan
from pipeline.engine.redaction import without_tokens
from pipeline.engine.tokens import (
    MAX_TOKEN_BYTES,
    excerpt,
    fingerprint,
    header_cache_usage,
    redact_tokens,
)
from pipeline.io.base import CommittingSource, Sink, Source
from pipeline.io.formats import DEFAULT_EVENT_FORMAT, event_decoder
from pipeline.models import AuthFailureEvent, Cause, JwksSnapshot, SampledToken
from pipeline.records import (
    DEFAULT_MAX_RECORD_BYTES,
    Batch,
    DeadLetter,
    Envelope,
    Judged,
    Position,
    RecordError,
    RecordKind,
    decode_record,
)
from pipeline.rejudge import StoredRejudge
from pipeline.write_behind import WriteBehind

log = logging.getLogger(__name__)

#: The wire models of the records jwtriage itself produces; events go through their format's decoder.
_OWN_MODELS: dict[RecordKind, type[SampledToken] | type[JwksSnapshot]] = {
    RecordKind.SAMPLE: SampledToken,
    RecordKind.SNAPSHOT: JwksSnapshot,
}


#: What an event held in the join state costs beyond its strings: the model object, its datetimes, the entry.
_EVENT_OVERHEAD = 400
_UNKNOWN_KID = Cause.UNKNOWN_KID  # read per event: a module constant skips the enum's member lookup
_MIB = 1024 * 1024
_REUSED: Any = object()  # a record whose output line `engine.line_reuse` made: nothing to decode or judge


def event_bytes(event: AuthFailureEvent, token: str | None = None) -> int:
    """Approximate bytes an event (and a token beside it, counted once if it is the event's own) holds."""
    size = _EVENT_OVERHEAD + len(event.event_id) + len(event.service)
    fields = event.__dict__  # read once: a pydantic model's attributes are its `__dict__`'s items
    own = fields["token"]
    if own is not None:
        size += len(own)
    for name in ("token_sha256", "reported_error", "client_id", "request_id"):
        text = fields[name]
        if text is not None:
            size += len(text)
    if token is not None and token is not own:
        size += len(token)
    return size


def _sample_bytes(fingerprint: str, token: str) -> int:
    return len(fingerprint) + len(token) + 100


#: A held event: the event, its token, its position, what it was judged (a kid or a Classification), and its bytes.
#: The byte count is computed once, when the entry is made: the cache asks for it on put and again on eviction.
Held = tuple[AuthFailureEvent, str, Position, Any, int]


def _held(event: AuthFailureEvent, token: str, position: Position, judged: Any) -> Held:
    return (event, token, position, judged, len(event.event_id) + event_bytes(event, token))


def _held_event_bytes(event_id: str, entry: Held) -> int:
    return entry[4]


@dataclass(frozen=True, slots=True)
class PipelineLimits:
    """Caps on the join state, in records and in bytes: memory stays flat however long the stream runs.

    Each structure forgets its oldest entries past either cap (`pipeline.bounded`). Records
    are up to 1 MiB (a sampled token up to 256 KB), so the counts alone would allow tens of
    GB; the byte budgets keep the whole join state under 160 MB (the README's "Memory bounds"
    table lists every cache). With ordinary 1-2 KB tokens the counts bind first: 50,000
    samples, and windows of 10,000 events (a key comes at most a JWKS poll or two after its
    first token, a sample within seconds of its events). `max_waiting` counts events, not
    tokens: a client that keeps sending a token whose sample never comes adds an event per
    request.
    """

    max_samples: int = 50_000
    max_sample_bytes: int = 64 * _MIB
    max_waiting: int = 10_000
    max_waiting_bytes: int = 32 * _MIB
    max_waiting_for_key: int = 10_000
    max_waiting_for_key_bytes: int = 32 * _MIB
    max_recent: int = 10_000
    max_recent_bytes: int = 32 * _MIB
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES


class Pipeline:
    """Decode, join and classify records; the state that makes late arrivals work."""

    def __init__(
        self,
        config: Config,
        timeline: KeyTimeline | None = None,
        limits: PipelineLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        event_format: str = DEFAULT_EVENT_FORMAT,
        source_formats: Mapping[str, str] | None = None,
        snapshots_first: bool = False,
        reused_lines: bool = False,
    ) -> None:
        """`snapshots_first`: the source delivers every key snapshot before any event (`FileSource`).

        Then no snapshot can come to change a verdict already given, so judged events are not
        held for one (`_hold`): in `classify` on an outage stream that bookkeeping was a
        sixth of the CPU per event, and never used. `reused_lines` (with it, for a sink that
        prints `batch.lines` in order with the judged events: `classify`'s): a retry's line
        whose verdict is a learned tail goes straight to its output line (`engine.line_reuse`).
        """
        self.config = config
        self._hold_judged = not snapshots_first
        # Events are in `event_format`, except those of a source (a topic) given its own.
        self._event_format = event_format
        self._decode_event = event_decoder(event_format, config)
        self._source_decoders = {
            source: (name, event_decoder(name, config)) for source, name in (source_formats or {}).items()
        }
        self.limits = limits or PipelineLimits()
        self.timeline = timeline or KeyTimeline()
        self.classifier = Classifier(config, self.timeline)
        self._lines = (
            LineReuse(self.classifier, self.limits.max_record_bytes)
            if reused_lines and snapshots_first and self.classifier.spans is not None
            and event_format == DEFAULT_EVENT_FORMAT and not source_formats
            else None
        )
        self._clock = clock
        limits = self.limits
        # fingerprint → token
        self._samples: BoundedCache[str, str] = BoundedCache(limits.max_samples, limits.max_sample_bytes, _sample_bytes)
        # fingerprint → events whose sample has not arrived yet (at most max_waiting events, max_waiting_bytes, in all)
        self._awaiting_sample: OrderedDict[str, list[tuple[AuthFailureEvent, Position]]] = OrderedDict()
        self._waiting_events = 0
        self._waiting_bytes = 0
        # event_id → (event, token, position, kid) of events judged unknown_kid
        self._awaiting_key: BoundedCache[str, Held] = BoundedCache(
            limits.max_waiting_for_key, limits.max_waiting_for_key_bytes, _held_event_bytes
        )
        # event_id → (event, token, position, classification) of the latest other events with a token
        self._recent: BoundedCache[str, Held] = BoundedCache(
            limits.max_recent, limits.max_recent_bytes, _held_event_bytes
        )
        self._services = {s.name for s in config.services}
        # Re-judging of stored rows a batch's snapshots can change (a consumer with a store attaches one).
        self.stored: StoredRejudge | None = None
        self.counts: dict[str, int] = dict.fromkeys(
            ("events", "samples", "snapshots", "dead_letters", "rejudged", "skipped"), 0
        )

    @property
    def state_sizes(self) -> dict[str, int]:
        return {
            "samples": len(self._samples),
            "awaiting_sample": self._waiting_events,
            "awaiting_key": len(self._awaiting_key),
            "recent_with_token": len(self._recent),
            "signature_cache": len(self.classifier.cache),
        }

    def cache_usage(self) -> dict[str, tuple[int, int, int, int]]:
        """Every cache and queue: (entries, bytes, entry cap, byte cap), as exported and as the README lists them."""
        limits, classifier = self.limits, self.classifier
        parsed, signatures = classifier.parse_cache, classifier.cache.results
        return {
            "samples": (len(self._samples), self._samples.bytes, limits.max_samples, limits.max_sample_bytes),
            "awaiting_sample": (self._waiting_events, self._waiting_bytes, limits.max_waiting,
                                limits.max_waiting_bytes),
            "awaiting_key": (len(self._awaiting_key), self._awaiting_key.bytes, limits.max_waiting_for_key,
                             limits.max_waiting_for_key_bytes),
            "recent_with_token": (len(self._recent), self._recent.bytes, limits.max_recent, limits.max_recent_bytes),
            "parsed_tokens": (len(parsed), parsed.bytes, parsed.capacity, parsed.max_bytes),
            "signature_cache": (len(signatures), signatures.bytes, signatures.capacity, signatures.max_bytes),
            "token_headers": header_cache_usage(),
            **({"judgements": (len(reuse.cache), reuse.cache.bytes, reuse.cache.capacity, reuse.cache.max_bytes)}
               if (reuse := classifier.reuse) is not None else {}),
            **({name: (len(cache), cache.bytes, cache.capacity, cache.max_bytes)
                for name, cache in (("verdict_spans", spans.spans), ("verdict_tails", spans.tails))}
               if (spans := classifier.spans) is not None else {}),
            **({"line_rests": (len(lines), lines.rest_bytes, line_reuse.MAX_RESTS, line_reuse.MAX_REST_BYTES)}
               if (lines := self._lines) is not None else {}),
        }

    def process(self, envelopes: Iterable[Envelope]) -> Batch:
        """Turn raw records into a batch; nothing here raises for bad input.

        The pure work runs in phases over the whole batch, each kind back to back: decode
        every record, then parse and verify the events' inline tokens (`Classifier.prepare`),
        then handle the records one by one, in order, as before (joins, verdicts, dead
        letters), finding the parses and signature results in the caches.
        """
        envelopes = list(envelopes)
        if self._lines is not None and not self._hold_judged:
            return self._process_reusing_lines(envelopes)
        return self._process(envelopes, [self._decode(envelope) for envelope in envelopes])

    def _process_reusing_lines(self, envelopes: list[Envelope]) -> Batch:
        """`process` when retries go from their line to their output line (`engine.line_reuse`).

        The lines `scan` answered are left out of the loop; the others go through it in order:
        a line whose rest is known is not decoded up front, but becomes its output line there
        (`line`) or, when no tail for its time is known yet, is decoded and judged in full. A
        line of the strict form whose rest was new is learned from once judged without error.
        """
        assert self._lines is not None
        scan = self._lines.scan(envelopes)
        loop = [envelopes[index] for index in scan.rest]
        decoded = [self._decode(e) if head is None else _REUSED for e, head in zip(loop, scan.heads, strict=True)]
        batch = self._process(loop, decoded, scan)
        scan.place(batch.lines)
        batch.positions = {(e.position.source, e.position.partition): e.position.offset + 1 for e in envelopes}
        self.counts["events"] += len(envelopes) - len(loop)
        return batch

    def _process(self, envelopes: list[Envelope], decoded: list[Any], scan: Scan | None = None) -> Batch:
        """`process` of decoded records; with line reuse, `scan` is `LineReuse.scan`'s (`_REUSED`: a known rest)."""
        try:
            self.classifier.prepare(
                (record.service, record.token)
                for record in decoded
                if isinstance(record, AuthFailureEvent) and record.token is not None
            )
        except Exception as exc:  # only a head start: judging below parses and verifies again, record by record
            _log_bug("preparing a batch failed; its records are judged one by one", exc)
        batch = Batch()
        for index, (envelope, record) in enumerate(zip(envelopes, decoded, strict=True)):
            if scan is not None:
                scan.marks.append(len(batch.judged))
            position = envelope.position
            batch.positions[(position.source, position.partition)] = position.offset + 1
            if record is _REUSED and scan is not None and self._lines is not None:
                line = self._lines.line(envelope.value, scan.heads[index]) if not self._hold_judged else None
                if line is not None:
                    scan.reused[index] = line
                    self.counts["events"] += 1
                    continue
                record = self._decode(envelope)  # no tail for its time yet: judged in full
            if isinstance(record, str):
                self._dead_letter(envelope, record, batch)
                continue
            if record is None:  # the format skips it: not an auth failure, and not a bad record
                known = self._source_decoders.get(position.source)
                name = known[0] if known is not None else self._event_format
                batch.skipped[name] = batch.skipped.get(name, 0) + 1
                self.counts["skipped"] += 1
                continue
            judged = len(batch.judged)
            try:
                if isinstance(record, AuthFailureEvent):
                    self._on_event(record, position, batch)
                    if scan is not None and index in scan.learn and self._lines is not None:
                        self._lines.learn(*scan.learn[index], record)
                elif isinstance(record, SampledToken):
                    self._on_sample(record, batch)
                else:
                    self._on_snapshot(record, batch)
            except RecordError as exc:
                self._dead_letter(envelope, str(exc), batch)
            except Exception as exc:  # a bug met by one record: that record's dead letter, never the stream's end
                del batch.judged[judged:]  # nothing half-judged is stored for it
                self._dead_letter(envelope, _internal_error(exc), batch)
        if scan is not None:
            scan.marks.append(len(batch.judged))
        if batch.timeline_changed:
            self._rejudge_unknown_kids(batch)
            self._rejudge_overtaken(batch)
            if self.stored is not None and batch.snapshots:
                self.stored.rejudge(self, batch.snapshots, batch)
        return batch

    def _decode(self, envelope: Envelope) -> AuthFailureEvent | SampledToken | JwksSnapshot | str | None:
        """The envelope's record, None when its format skips it, or why it is not one (the dead letter's reason)."""
        try:
            if envelope.kind is RecordKind.EVENT:
                decode = self._decode_event
                if self._source_decoders and envelope.position.source in self._source_decoders:
                    decode = self._source_decoders[envelope.position.source][1]
                return decode(envelope.value, self.limits.max_record_bytes)
            return decode_record(envelope.value, _OWN_MODELS[envelope.kind], self.limits.max_record_bytes)
        except RecordError as exc:
            return str(exc)
        except Exception as exc:  # a decoder's bug is this record's dead letter
            return _internal_error(exc)

    # -- the three kinds -------------------------------------------------------------------

    def _on_event(self, event: AuthFailureEvent, position: Position, batch: Batch) -> None:
        if event.service not in self._services:
            raise RecordError(
                f"service {event.service!r} is not in the config (known: {', '.join(sorted(self._services))})"
            )
        self.counts["events"] += 1
        token = event.token
        if token is None and event.token_sha256:
            fp = event.token_sha256.lower()
            token = self._samples.get(fp)
            if token is None:
                self.await_samples([(event, position)])
        self._judge(event, token, position, batch)

    def await_samples(self, waiting: Iterable[tuple[AuthFailureEvent, Position]]) -> None:
        """Take back events already stored that a sample arriving later judges again (after a restart)."""
        for event, position in waiting:
            if event.token_sha256:
                fp = event.token_sha256.lower()
                self._awaiting_sample.setdefault(fp, []).append((event, position))
                self._awaiting_sample.move_to_end(fp)
                self._waiting_events += 1
                self._waiting_bytes += event_bytes(event)
        limits = self.limits
        while self._waiting_events > limits.max_waiting or self._waiting_bytes > limits.max_waiting_bytes:
            oldest = next(iter(self._awaiting_sample))  # forget the oldest waiting event
            entries = self._awaiting_sample[oldest]
            forgotten, _ = entries.pop(0)
            self._waiting_events -= 1
            self._waiting_bytes -= event_bytes(forgotten)
            if not entries:
                del self._awaiting_sample[oldest]

    def _on_sample(self, sample: SampledToken, batch: Batch) -> None:
        if len(sample.token) > MAX_TOKEN_BYTES:  # never parsed, so never worth holding
            size, limit = len(sample.token), MAX_TOKEN_BYTES
            raise RecordError(f"token: the sampled token is {size:,} bytes, over the {limit:,}-byte token limit")
        self.counts["samples"] += 1
        fp = fingerprint(sample.token)
        self._samples.put(fp, sample.token)
        waiting = self._awaiting_sample.pop(fp, [])
        self._waiting_events -= len(waiting)
        self._waiting_bytes -= sum(event_bytes(event) for event, _ in waiting)
        for event, position in waiting:
            self.counts["rejudged"] += 1
            self._judge(event, sample.token, position, batch)

    def _on_snapshot(self, snapshot: JwksSnapshot, batch: Batch) -> None:
        if not self._hold_judged and self.counts["events"]:  # the source broke its word: hold from now on
            log.warning("a key snapshot came after events from a source that promised them first; "
                        "events judged before it are not judged again")
            self._hold_judged = True
        self.timeline.add(snapshot)
        self.counts["snapshots"] += 1
        batch.snapshots.append(snapshot)
        batch.timeline_changed = True

    # -- judging ---------------------------------------------------------------------------

    def _judge(self, event: AuthFailureEvent, token: str | None, position: Position, batch: Batch) -> None:
        verdict = without_tokens(self.classifier.classify(event, token))
        batch.judged.append(Judged(event, verdict, position))
        if self._hold_judged:
            self._hold(event, token, position, verdict)

    def _hold(self, event: AuthFailureEvent, token: str | None, position: Position, verdict: Verdict) -> None:
        """Keep a judged event with a token where a later snapshot finds it (awaiting its key, or recent)."""
        if token is not None and verdict.classification.cause is _UNKNOWN_KID:
            kid = verdict.header.get("kid") if verdict.header else None
            self._awaiting_key.put(event.event_id, _held(event, token, position, kid))
            self._recent.discard(event.event_id)
        else:
            if self._awaiting_key:
                self._awaiting_key.discard(event.event_id)
            if token is not None:
                self._recent.put(event.event_id, _held(event, token, position, verdict.classification))

    # -- what re-judging from the store (`pipeline.rejudge`) asks of the pipeline ------------

    def holds(self, event_id: str) -> bool:
        """Is the event in memory, where a snapshot's arrival judges it again already?"""
        return event_id in self._awaiting_key or event_id in self._recent

    def decode_event(self, envelope: Envelope) -> AuthFailureEvent | None:
        """An event record read again, decoded as when it first came; None when it is not one."""
        record = self._decode(envelope)
        return record if isinstance(record, AuthFailureEvent) else None

    def sample_token(self, token_sha256: str | None) -> str | None:
        """The sampled token with this fingerprint, when the pipeline still holds it."""
        return self._samples.get(token_sha256.lower()) if token_sha256 else None

    def rejudge_one(self, event: AuthFailureEvent, token: str, position: Position) -> Verdict | None:
        """A stored event judged again (and held from now on like a fresh one); None when judging failed."""
        verdict = self._rejudge(event, token)
        if verdict is None:
            return None
        verdict = without_tokens(verdict)
        self._hold(event, token, position, verdict)
        return verdict

    def _rejudge_unknown_kids(self, batch: Batch) -> None:
        """A snapshot arrived: events judged `unknown_kid` may now find their key."""
        for event_id, entry in list(self._awaiting_key.items()):
            event, token, position, kid, _ = entry
            if kid is not None and not self.timeline.keys_with_kid(kid):
                continue  # cheap skip: still no key under that kid (a flood of made-up kids stays cheap)
            verdict = self._rejudge(event, token)
            if verdict is None:
                self._awaiting_key.discard(event_id)
                continue
            if verdict.classification.cause is not Cause.UNKNOWN_KID:
                self.counts["rejudged"] += 1
                self._awaiting_key.discard(event_id)
                self._recent.put(event_id, _held(event, token, position, verdict.classification))
                batch.judged.append(Judged(event, without_tokens(verdict), position))

    def _rejudge_overtaken(self, batch: Batch) -> None:
        """Snapshots arrived: events dated at or after one of them were judged without it.

        The three topics arrive in no fixed order, so an event can overtake the snapshot that
        says its key was removed (or added) just before it. Only events dated at or after the
        earliest new snapshot can change (a key's interval ends at the first snapshot without
        it); in a steady stream that is the few events that raced ahead, so this stays cheap.
        A row is written again only when its verdict changed.
        """
        since = min(snapshot.fetched_at for snapshot in batch.snapshots)
        for event_id, (event, token, position, before, _) in list(self._recent.items()):
            if event.ts < since:
                continue
            verdict = self._rejudge(event, token)
            if verdict is None:
                self._recent.discard(event_id)
                continue
            if verdict.classification != before:
                self.counts["rejudged"] += 1
                self._recent.put(event_id, _held(event, token, position, verdict.classification), move=False)
                batch.judged.append(Judged(event, without_tokens(verdict), position))

    def _rejudge(self, event: AuthFailureEvent, token: str) -> Verdict | None:
        """The event's new verdict, or None when judging it failed (it keeps its stored row, and is let go)."""
        try:
            return self.classifier.classify(event, token)
        except Exception as exc:
            _log_bug("judging an event again failed; its stored verdict stands", exc)
            return None

    def _dead_letter(self, envelope: Envelope, reason: str, batch: Batch) -> None:
        self.counts["dead_letters"] += 1
        batch.dead_letters.append(
            DeadLetter(envelope.kind, envelope.position, redact_tokens(reason), excerpt(envelope.value), self._clock())
        )


def _internal_error(exc: Exception) -> str:
    """A dead letter's reason for a record that met a bug: what failed and where, never the input."""
    where = _log_bug("a record could not be judged; it is a dead letter", exc)
    return f"internal error while judging this record ({type(exc).__name__} at {where}): please report it"


def _log_bug(what: str, exc: Exception) -> str:
    """Log a bug met by some input: the exception's type and where it was raised, not its message.

    The message may quote the input (a token is a credential), so neither it nor the
    traceback's text is logged; the place is enough to find the bug.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    log.error("%s: %s at %s", what, type(exc).__name__, where)
    return where


@dataclass(slots=True)
class RunStats:
    """What the loop has done so far; `on_batch` hooks see it after each batch."""

    batches: int = 0
    records: int = 0
    events: int = 0  # event records read (good or bad)
    seconds: float = 0.0
    process_seconds: float = 0.0  # `Pipeline.process` of the latest batch (decode, join, classify)


#: Allocations between two collections of the youngest generation while batches stream (CPython's default: 700).
STREAMING_GC_THRESHOLD = 100_000


@contextmanager
def streaming_gc() -> Iterator[None]:
    """Collect the youngest generation every 100,000 allocations instead of 700 while the block runs.

    A batch keeps tens of thousands of objects alive (records, verdicts, the rows being written) for a
    fraction of a second, and reference counting frees nearly all of them once it is written. With the
    default thresholds they outlive two young collections, reach the oldest generation and trigger a full
    collection of the whole heap every couple of batches. With a larger young generation a batch dies young;
    cyclic garbage is still collected. The count is of live objects, and a batch of 2,000 unique tokens
    peaks near 50,000: at 100,000 a collection comes only when the long-lived state has grown.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], STREAMING_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run(
    source: Source,
    pipeline: Pipeline,
    sink: Sink,
    on_batch: Callable[[Batch, RunStats], None] | None = None,
    *,
    on_tick: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
    write_behind: bool = False,
) -> RunStats:
    """Drain `source` through `pipeline` into `sink`: the one loop, one transaction per source batch.

    Each unit of work the source yields goes through these steps, in this order:

    1. `pipeline.process(envelopes)`: decode, join, classify; bad input becomes dead letters, never an exception.
    2. `sink.write(batch, timeline)`: the rows, dead letters, snapshots and the positions they cover, all or nothing.
    3. `source.commit(batch.positions)`, when the source is a `CommittingSource` (a Kafka group). Sink first,
       then offsets: a crash between the two replays a batch the sink already holds (its rows are keyed,
       so they are replaced, not duplicated) and never skips one it does not. The sink's positions are
       the truth on restart; the source's commit is for the next reader and for lag.
    4. `on_batch(batch, stats)`: what observes a stored batch (metrics, the dead-letter topic, progress).

    An empty unit (a waiting source's poll that brought nothing) skips those steps. After every
    unit, empty or not, `on_tick()` does periodic work (publishing for readers), then the loop
    ends if `stop()` says so: a stop request finishes the batch in hand, its commit included. With
    `write_behind`, step 2 runs on a thread of its own while the next batch is judged (`WriteBehind`).
    """
    stats = RunStats()
    started = time.perf_counter()
    commit = source.commit if isinstance(source, CommittingSource) else None
    units = iter(source.batches())

    def stored(batch: Batch, envelopes: list[Envelope]) -> None:  # steps 3 and 4 of a batch the sink holds
        if commit is not None:
            commit(batch.positions)
        stats.batches += 1
        stats.records += len(envelopes)
        stats.events += sum(1 for envelope in envelopes if envelope.kind is RecordKind.EVENT)
        if on_batch is not None:
            on_batch(batch, stats)

    with streaming_gc(), WriteBehind(sink, stored, write_behind) as writer:
        while stop is None or not stop():
            envelopes = next(units, None)
            if envelopes is None:
                break
            if envelopes:
                if any(envelope.kind is RecordKind.SNAPSHOT for envelope in envelopes):
                    writer.settle()  # judging the batch may read the store again (`pipeline.rejudge`)
                processing = time.perf_counter()
                batch = pipeline.process(envelopes)
                stats.process_seconds = time.perf_counter() - processing
                writer.write(batch, envelopes, pipeline.timeline)
            writer.settle()  # the batch before, written while this one was polled and judged
            if on_tick is not None:
                on_tick()  # it uses the sink (publishing): never while a batch is being written
            writer.start()  # this batch, written while the next one is polled and judged
        writer.settle()
    stats.seconds = time.perf_counter() - started
    return stats
