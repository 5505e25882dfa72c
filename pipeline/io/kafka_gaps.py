"""Records the broker deleted before jwtriage read them: jumps in a partition's offsets, told from the harmless ones.

A consumer reads each partition's offsets in order, so the next record's offset should be the
one it expects: the last one read + 1, or where it started (its stored or committed position).
A record further on leaves a gap, for one of three reasons:

- **transaction markers**: a transactional producer's commit or abort takes an offset that no
  consumer is ever handed (and `read_committed` also hides aborted records);
- **compaction**: a compacted topic keeps only the newest record of each key;
- **deletion**: retention (`retention.ms` / `retention.bytes`) or a `DeleteRecords` moved the
  log's start past records nobody had read. The consumer's position is then out of range and
  kafka-python resets it to the earliest offset still there (`auto_offset_reset`), saying so
  only in its own log.

Only deletion moves the partition's log start offset, so a gap is confirmed by asking the broker
for it (after the gap was seen): the part of the gap below the log start was deleted, the part at
or above it is still in the log and was left out by markers or compaction. Asking costs a round
trip, so gaps wait for at most `CHECK_EVERY_SECONDS` and are confirmed together; seeing one costs
an integer compare per partition and poll (`observe`), nothing per record.

Where a consumer starts with no position of its own (a new store and group, or a partition it
never read a record from) it starts at the earliest offset by design, and nothing before it is
judged: records deleted before jwtriage was there are not a hole in its picture.

A gap counts offsets, not records: markers inside a deleted range count too (a transactional
producer writes one per transaction and partition). A harmless gap whose offsets retention also
deleted before the check is counted as deleted: only a consumer lagging at the very start of the
log can see that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

#: A partition, as (topic, partition); kafka-python's `TopicPartition` is such a tuple.
Partition = tuple[str, int]

#: How long a gap may wait for the broker's log start before it is confirmed (one request for all).
CHECK_EVERY_SECONDS = 1.0

#: Gaps waiting beyond this many are confirmed at the next chance, whatever the time.
MAX_WAITING = 1_024

HINT = ("hint: the topic's retention is shorter than the consumer's lag — raise retention.ms/bytes "
        "or add consumers")


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Hole:
    """Offsets `first`..`last` of one partition, deleted by the broker before jwtriage read them."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def records(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        return (f"broker deleted {self.records:,} records of {self.topic}[{self.partition}] "
                f"(offsets {self.first:,}–{self.last:,}) before jwtriage read them; {HINT}")


class GapWatch:
    """Follows the next offset expected on each partition; `check` confirms gaps against the log start.

    `log_starts` asks the broker for the log start offset of some partitions (it may raise: the
    gaps then wait for the next check). Confirmed holes are logged as warnings, added to `lost`
    (records per partition since start) and handed out once by `take_holes`.

    `counted_through` is, per partition, the last offset a hole already counted (the store's note
    from an earlier run): a hole is counted only past it. When every new record of a partition was
    deleted, nothing was read there, so no position moved past the hole, and the next start finds
    the same hole again.
    """

    def __init__(
        self,
        log_starts: Callable[[list[Partition]], Mapping[Partition, int]],
        check_every: float = CHECK_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        counted_through: Mapping[Partition, int] | None = None,
    ) -> None:
        self._log_starts = log_starts
        self._check_every = check_every
        self._clock = clock
        self._next: dict[Partition, int] = {}
        self._waiting: list[tuple[Partition, int, int]] = []  # (partition, first offset missing, next offset read)
        self._last_check = clock()
        self._holes: list[Hole] = []
        self._counted_through: dict[Partition, int] = dict(counted_through or {})
        self.lost: dict[Partition, int] = {}

    # -- where each partition is -----------------------------------------------------------

    def expect(self, partition: Partition, offset: int) -> None:
        """The next offset read from `partition` should be `offset` (where the consumer starts or seeks to)."""
        self._next[partition] = offset

    def knows(self, partition: Partition) -> bool:
        return partition in self._next

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions another consumer may read meanwhile (a rebalance): their next offset is asked again."""
        for partition in partitions:
            self._next.pop(partition, None)

    def observe(self, partition: Partition, records: Sequence[HasOffset]) -> None:
        """One poll's records of one partition, in offset order: note any gap before or among them."""
        if not records:
            return
        first, last = records[0].offset, records[-1].offset
        expected = self._next.get(partition)
        if expected is not None and first > expected:
            self._waiting.append((partition, expected, first))
        if last - first + 1 != len(records):  # offsets missing among them: markers or compaction, mostly
            previous = first
            for record in records:
                if record.offset > previous + 1:
                    self._waiting.append((partition, previous + 1, record.offset))
                previous = record.offset
        self._next[partition] = last + 1 if expected is None else max(expected, last + 1)

    def deleted(self, partition: Partition, first: int, last: int) -> None:
        """A hole already known to be deleted (a start position below the log start: nothing to confirm)."""
        if last >= first:
            self._confirm(Hole(partition[0], partition[1], first, last))

    # -- confirming ------------------------------------------------------------------------

    def due(self) -> bool:
        """Gaps are waiting and it is time to ask (or too many wait)."""
        return bool(self._waiting) and (
            len(self._waiting) >= MAX_WAITING or self._clock() - self._last_check >= self._check_every
        )

    def check(self) -> list[Hole]:
        """Ask the log starts of the partitions with waiting gaps; the holes found (also kept for `take_holes`)."""
        if not self._waiting:
            return []
        self._last_check = self._clock()  # a broker that cannot answer is asked again a second later, not every poll
        starts = self._log_starts(sorted({partition for partition, _, _ in self._waiting}))
        waiting, self._waiting = self._waiting, []
        found: list[Hole] = []
        for partition, first, after in waiting:
            start = starts.get(partition)
            if start is None:
                continue
            end = min(start, after)  # below the log start: deleted; from it on: still in the log
            hole = self._confirm(Hole(partition[0], partition[1], first, end - 1))
            if hole is not None:
                found.append(hole)
        return found

    def _confirm(self, hole: Hole) -> Hole | None:
        """Count, log and keep the part of `hole` no earlier hole counted; None when nothing is left."""
        key = (hole.topic, hole.partition)
        counted = self._counted_through.get(key)
        if counted is not None and hole.first <= counted:
            hole = Hole(hole.topic, hole.partition, counted + 1, hole.last)
        if hole.last < hole.first:
            return None
        log.warning(hole.describe())
        self._counted_through[key] = hole.last
        self.lost[key] = self.lost.get(key, 0) + hole.records
        self._holes.append(hole)
        return hole

    def take_holes(self) -> list[Hole]:
        """The holes confirmed since the last call (each handed out once)."""
        holes, self._holes = self._holes, []
        return holes
