"""Write-behind: the store writes batch N on a thread of its own while the loop polls and judges batch N+1.

The consumer's main thread is CPU-bound, and DuckDB releases the GIL while it executes a
statement or commits, so a write on another thread overlaps the next poll and
`Pipeline.process`. `runner.run` drives it (a `WriteBehind` as its sink); what makes it
safe is written down here once:

- At most one batch is in flight. The loop waits for write(N) before it starts write(N+1),
  commits N's offsets to the group and calls `on_batch(N)` only after write(N) finished
  (sink first, then offsets), and all polls and commits stay on the main thread
  (kafka-python's consumer is not thread-safe).
- The store's connection is never used by two threads at once: everything else reaches the
  store through `guarded` (a proxy whose every attribute waits for the write in flight
  first): start-up, publishing, heartbeats, re-judging stored rows while a batch with key
  snapshots is processed, closing. Only the main thread starts writes, so once it waited,
  nothing writes until it starts the next one.
- What write(N) reads is fixed before the hand-over. `Batch` is new per step and its
  `Judged` entries hold frozen models and verdicts that `without_tokens` has finished with
  (it only ever changes a verdict it has not seen); the key timeline, which processing the
  next batch changes, is read by a write only when `batch.timeline_changed`, and such a
  batch is written on the main thread, nothing in flight (key snapshots are rare).
- A failed write raises at the next wait, on the main thread, which stops the loop as a
  failed write did before; nothing after it is written or committed (`failed` stays set).

A rebalance during the poll that overlaps write(N) finds N stored but not yet committed to
the group: the partition's next owner reads N again (as after a crash between the two
commits). Into the same store that replaces the rows; another consumer instance stores them
too. `jwtriage consume --no-write-behind` keeps the strictly sequential loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pipeline.engine.keys import KeyTimeline
from pipeline.io.base import Sink
from pipeline.records import Batch

if TYPE_CHECKING:
    from pipeline.runner import RunStats

T = TypeVar("T")


class WriteBehind:
    """A sink whose `start` writes a batch on its own thread; `wait` is the join (and re-raises its failure)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jwtriage-writer")
        self._in_flight: Future[None] | None = None
        self._owner = threading.get_ident()
        self.failed = False  # a write raised: nothing may be written or committed after it

    def start(self, batch: Batch, timeline: KeyTimeline) -> None:
        """Write `batch` on the writer thread; the previous write must have been waited for.

        A batch that changed the key timeline must go through `write` instead: its write reads
        the timeline, which processing the next batch changes.
        """
        self._check_caller()
        if self._in_flight is not None or self.failed:
            raise RuntimeError("a write is still in flight, or one failed: wait() first")
        if batch.timeline_changed:
            raise ValueError("a batch that changed the key timeline is written by write(), not in the background")
        self._in_flight = self._executor.submit(self.sink.write, batch, timeline)

    def wait(self) -> None:
        """Block until the write in flight (if any) finished; raise its exception, once."""
        future = self._in_flight
        if future is None:
            return
        self._in_flight = None
        try:
            future.result()
        except BaseException:
            self.failed = True
            raise

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        """`Sink.write` on the calling thread, after the write in flight: what `start` may not take."""
        self._check_caller()
        self.wait()
        if self.failed:
            raise RuntimeError("an earlier write failed: nothing is written after it")
        self.sink.write(batch, timeline)

    def close(self) -> None:
        """Wait for the write in flight (its exception is not raised here) and end the writer thread."""
        future, self._in_flight = self._in_flight, None
        if future is not None and future.exception() is not None:
            self.failed = True
        self._executor.shutdown(wait=True)

    def _check_caller(self) -> None:
        # Writes are started by one thread only: it alone may then use the store without waiting.
        if threading.get_ident() != self._owner:
            raise RuntimeError("writes are started by the thread that made the WriteBehind")


class _Guarded:
    """Every attribute of the wrapped object, fetched after the write in flight finished."""

    __slots__ = ("_target", "_writer")

    def __init__(self, target: Any, writer: WriteBehind) -> None:
        self._target, self._writer = target, writer

    def __getattr__(self, name: str) -> Any:
        self._writer.wait()
        return getattr(self._target, name)


def guarded(store: T, writer: WriteBehind) -> T:
    """`store` for the main thread's other uses: each method or attribute waits for the write in flight first.

    An attribute is fetched after the wait, and only the main thread starts writes, so a method
    fetched this way runs with nothing in flight (keep no bound method across a loop's step).
    """
    return cast(T, _Guarded(store, writer))


class HandOver:
    """Steps 2-4 of `runner.run` for each batch: write it, commit its positions to the source, `on_batch`.

    With a plain sink, at once, as `run`'s docstring orders them. With a `WriteBehind`, `write`
    starts the batch's write and returns; its commit and `on_batch` come at `finish`, which the
    next batch's `write`, an empty unit and the loop's end call (so a stop request or the end of
    the source finishes the batch in flight, its commit included).
    """

    def __init__(
        self,
        sink: Sink,
        timeline: KeyTimeline,
        commit: Callable[[dict[tuple[str, int], int]], None] | None,
        on_batch: Callable[[Batch, RunStats], None] | None,
        stats: RunStats,
    ) -> None:
        self.sink, self.timeline, self.commit, self.on_batch, self.stats = sink, timeline, commit, on_batch, stats
        self.behind = sink if isinstance(sink, WriteBehind) else None
        self._pending: tuple[Batch, int, int] | None = None  # in flight: the batch, its records, its events

    def write(self, batch: Batch, records: int, events: int) -> None:
        behind = self.behind
        if behind is None:
            self.sink.write(batch, self.timeline)
            self._stored(batch, records, events)
            return
        self.finish()
        if batch.timeline_changed:  # its write reads the timeline, which the next batch may change
            behind.write(batch, self.timeline)
            self._stored(batch, records, events)
        else:
            behind.start(batch, self.timeline)
            self._pending = (batch, records, events)

    def finish(self) -> None:
        """Wait for the batch in flight; once it is stored, commit its positions and call `on_batch`."""
        pending, self._pending = self._pending, None
        if pending is None or self.behind is None:
            return
        self.behind.wait()  # raises the write's exception (unless a guarded store's wait raised it already)
        if not self.behind.failed:
            self._stored(*pending)

    def _stored(self, batch: Batch, records: int, events: int) -> None:
        if self.commit is not None:
            self.commit(batch.positions)
        stats = self.stats
        stats.batches += 1
        stats.records += records
        stats.events += events
        if self.on_batch is not None:
            self.on_batch(batch, stats)
