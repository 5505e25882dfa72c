"""Re-judging stored rows when a late key snapshot can change them, across restarts.

DESIGN.md: a verdict that a later record can change is judged again when that record
arrives, and the promise holds across restarts. `Pipeline` keeps recent events in memory and
judges them again when a snapshot comes (`runner`); a restart empties that memory, and memory
is bounded by a count while a late snapshot's effect is not. This module covers the rest from
the store: when a batch brings snapshots, it selects the stored rows those snapshots can
change, and only those:

- events judged `unknown_kid` whose kid a snapshot now holds (the `awaiting_key` table, an
  index kept in the same transaction as the rows, so no scan of `classifications`);
- events dated at or after the earliest snapshot of the batch (a snapshot dated before an
  event can make its key unpublished, retired or young): `ts >= since`, which the store's
  row groups skip by their ts range;

minus those the pipeline still holds in memory (already judged again there).

**What is read to judge them again.** The raw token is never stored (it is a credential), and
what is stored instead cannot rebuild it for this purpose: header, claims and fingerprint do
not verify a signature, and keeping the signature beside the header and claims would keep the
token itself (an RSA or ECDSA signature with the exact header and claims *is* the token). So
nothing new is kept: each row carries its source position (topic, partition, offset, or file
and line), and the event's record is read again from the source by that position
(`RecordFetcher`: a short-lived Kafka consumer that assigns and seeks, or the file's line).
An event that named its token by `token_sha256` takes the token from the samples the pipeline
holds (the consumer re-reads the recent samples at start-up); a sample no longer held is
counted, not guessed.

**Bounds.** At most `max_rows` rows and `max_bytes` of re-read records per batch of
snapshots; rows beyond them, records past the topic's retention (or a record at that position
that is not the same event: a topic recreated), and samples no longer held are counted in
`counts` and logged once per batch, never dropped silently. A row is rewritten only when its
verdict changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.engine.tokens import redact_tokens
from pipeline.models import AuthFailureEvent, Cause, Confidence, JwksSnapshot
from pipeline.records import Batch, Envelope, Judged, Position, RecordKind

if TYPE_CHECKING:
    import duckdb

    from pipeline.runner import Pipeline

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


class RejudgeStore(Protocol):
    """What re-judging needs of a store: `store.Store` as it is; a lake store (`io.lake.LakeStore`) also narrows
    the relations read (`rejudge_relations`) and remembers the versions it replaces (`note_candidates`)."""

    con: duckdb.DuckDBPyConnection

    def forget_awaiting_key(self, event_ids: list[str]) -> None: ...


def _relations(store: RejudgeStore) -> tuple[str, str]:
    """The (awaiting_key, classifications) relations to select candidates from: the tables, unless the store says."""
    narrowed = getattr(store, "rejudge_relations", None)
    return narrowed() if narrowed is not None else ("awaiting_key", "classifications")


class RecordFetcher(Protocol):
    """Reads records again by position; a position it cannot serve (gone, past retention) is left out."""

    def fetch(self, positions: Sequence[Position], max_bytes: int) -> dict[Position, bytes]: ...


@dataclass(frozen=True, slots=True)
class RejudgeLimits:
    """Per batch of snapshots: rows judged again from the store, and bytes of records read again for them."""

    max_rows: int = 20_000
    max_bytes: int = 32 * _MIB
    chunk: int = 500  # positions fetched at a time (the byte budget is checked between chunks)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored row a batch's snapshots can change, and what it holds now."""

    event_id: str
    ts: datetime
    position: Position
    token_sha256: str | None
    stored: tuple[Any, ...]  # (cause, confidence, findings, detail) as stored
    indexed: bool  # found through awaiting_key


def snapshot_kids(snapshots: Sequence[JwksSnapshot]) -> list[str]:
    """Every kid the snapshots publish."""
    kids: set[str] = set()
    for snapshot in snapshots:
        keys = snapshot.jwks.get("keys")
        for jwk in keys if isinstance(keys, list) else []:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                kids.add(jwk["kid"])
    return sorted(kids)


_COUNTS = ("selected", "rejudged", "unchanged", "held", "gone", "no_sample", "beyond_bound")


class StoredRejudge:
    """Judges stored rows again when snapshots arrive; attach to a `Pipeline` as `pipeline.stored`."""

    def __init__(self, store: RejudgeStore, fetcher: RecordFetcher, limits: RejudgeLimits | None = None) -> None:
        self.store, self.fetcher = store, fetcher
        self.limits = limits or RejudgeLimits()
        self.counts: dict[str, int] = dict.fromkeys(_COUNTS, 0)

    def candidates(self, snapshots: Sequence[JwksSnapshot]) -> tuple[list[Candidate], int]:
        """The stored rows these snapshots can change (at most `max_rows`, oldest first), and how many more."""
        if not snapshots:
            return [], 0
        con, limit = self.store.con, self.limits.max_rows
        since = min(snapshot.fetched_at for snapshot in snapshots)
        found: dict[str, Candidate] = {}
        kids = snapshot_kids(snapshots)
        awaiting, current = _relations(self.store)
        if kids:
            for event_id, ts, source, partition, offset, sha in con.execute(
                f"SELECT event_id, ts, source, source_partition, source_offset, token_sha256 FROM {awaiting} "
                "WHERE kid IN (SELECT unnest(?::VARCHAR[])) ORDER BY ts LIMIT ?",
                [kids, limit + 1],
            ).fetchall():
                position = Position(source, partition, offset)
                found[event_id] = Candidate(event_id, ts, position, sha, (Cause.UNKNOWN_KID.value,), True)
        # A snapshot changes no verdict of an event without a token, nor of a malformed token or a JWE.
        overtaken = (
            f"FROM {current} WHERE ts >= ? AND confidence <> ? AND cause NOT IN (SELECT unnest(?::VARCHAR[]))"
        )
        fixed = [Confidence.REPORTED.value, [Cause.MALFORMED.value, Cause.UNVERIFIABLE.value]]
        for event_id, ts, source, partition, offset, sha, *stored in con.execute(
            "SELECT event_id, ts, source, source_partition, source_offset, token_sha256, cause, confidence, "
            f"findings, detail {overtaken} ORDER BY ts LIMIT ?",
            [since, *fixed, limit + 1],
        ).fetchall():
            if event_id not in found:
                position = Position(source, partition, offset)
                found[event_id] = Candidate(event_id, ts, position, sha, tuple(stored), False)
        ordered = sorted(found.values(), key=lambda c: (c.ts, c.position))
        beyond = 0
        if len(ordered) > limit:
            [(total,)] = con.execute(f"SELECT count(*) {overtaken}", [since, *fixed]).fetchall()
            beyond = max(total, len(ordered)) - limit
            ordered = ordered[:limit]
        note = getattr(self.store, "note_candidates", None)
        if note is not None:
            note([(c.event_id, c.ts) for c in ordered])
        return ordered, beyond

    def rejudge(self, pipeline: Pipeline, snapshots: Sequence[JwksSnapshot], batch: Batch) -> None:
        """Judge again the stored rows `snapshots` can change; the changed ones join `batch` (same transaction)."""
        candidates, beyond = self.candidates(snapshots)
        before = dict(self.counts)
        self.counts["selected"] += len(candidates)
        self.counts["beyond_bound"] += beyond
        pending = [c for c in candidates if not pipeline.holds(c.event_id)]
        self.counts["held"] += len(candidates) - len(pending)
        spent, forget = 0, []
        for start in range(0, len(pending), self.limits.chunk):
            chunk = pending[start : start + self.limits.chunk]
            if spent >= self.limits.max_bytes:
                self.counts["beyond_bound"] += len(pending) - start
                break
            records = self.fetcher.fetch([c.position for c in chunk], self.limits.max_bytes - spent)
            spent += sum(len(value) for value in records.values())
            for candidate in chunk:
                outcome = self._one(pipeline, candidate, records.get(candidate.position), batch)
                self.counts[outcome] += 1
                if outcome in {"gone", "no_sample"} and candidate.indexed:
                    forget.append(candidate.event_id)
        self.store.forget_awaiting_key(forget)
        self._report(before)

    def _one(self, pipeline: Pipeline, candidate: Candidate, value: bytes | None, batch: Batch) -> str:
        if value is None:
            return "gone"
        event = pipeline.decode_event(Envelope(RecordKind.EVENT, value, candidate.position))
        if not isinstance(event, AuthFailureEvent) or event.event_id != candidate.event_id:
            return "gone"  # not the record the row was judged from (a topic recreated, a file rewritten)
        token = event.token or pipeline.sample_token(candidate.token_sha256 or event.token_sha256)
        if token is None:
            return "no_sample"
        verdict = pipeline.rejudge_one(event, token, candidate.position)
        if verdict is None:
            return "unchanged"
        c = verdict.classification
        if candidate.indexed:
            changed = c.cause is not Cause.UNKNOWN_KID
        else:
            changed = (c.cause.value, c.confidence.value, list(c.findings), redact_tokens(c.detail or "") or None) != (
                candidate.stored[0], candidate.stored[1], list(candidate.stored[2]), candidate.stored[3]
            )
        if not changed:
            return "unchanged"
        pipeline.counts["rejudged"] += 1
        batch.judged.append(Judged(event, verdict, candidate.position))
        return "rejudged"

    def _report(self, before: dict[str, int]) -> None:
        delta = {name: self.counts[name] - before[name] for name in _COUNTS}
        if delta["selected"]:
            log.info(
                "late snapshots: %d stored rows they can change, %d judged again and changed, %d unchanged, "
                "%d still in memory", delta["selected"], delta["rejudged"], delta["unchanged"], delta["held"],
            )
        lost = delta["gone"] + delta["no_sample"] + delta["beyond_bound"]
        if lost:
            log.warning(
                "late snapshots: %d stored rows keep their verdict unjudged: %d records no longer in the source "
                "(retention), %d samples no longer held, %d beyond the bound (%d rows, %d MiB per batch)",
                lost, delta["gone"], delta["no_sample"], delta["beyond_bound"], self.limits.max_rows,
                self.limits.max_bytes // _MIB,
            )
