"""`runner.run`'s DuckDB write on a thread of its own, so that a batch is written while the next is judged."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.engine.keys import KeyTimeline
from pipeline.io.base import Sink
from pipeline.records import Batch, Envelope

#: The interpreter's thread switch interval while a batch is written behind (CPython's default: 5 ms). The
#: writer releases the GIL inside each DuckDB statement and needs it back between them; at 5 ms it waited up to
#: that long each time for the judging thread to give it up, and a batch's write outlasted the next batch's
#: judging. Measured in bench/results.md (issue 22, "write behind").
WRITE_BEHIND_SWITCH_SECONDS = 0.0005


class WriteBehind:
    """`run`'s step 2 on a thread of its own, one batch at a time, with steps 3 and 4 after it on the caller's.

    A batch's write is mostly DuckDB (the WAL at commit, the insert, the checkpoint), which runs without the
    GIL; judging is Python, which holds it. Written behind, the two overlap on two cores. Order is kept: one
    batch is written at a time, and the next is handed over only once the previous one is settled (stored,
    committed, observed). A batch is written at once (and settled) instead when it changed the key timeline
    (its write reads the timeline, which the next batch may change). `settle` also waits before anything else
    uses the sink: `on_tick`, and a batch with snapshots (judging it may read stored rows). A write that failed
    raises at `settle`, so the loop stops as it did when the write ran in place; the batch judged meanwhile is
    neither stored nor committed and is read again on restart, like any batch in hand at a crash.

    Without `behind`, every batch is written and settled at once: the loop as it always ran.
    """

    def __init__(self, sink: Sink, stored: Callable[[Batch, list[Envelope]], None], behind: bool) -> None:
        self.sink, self.stored = sink, stored
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="jwtriage-write") if behind else None
        self._pending: tuple[Future[None], Batch, list[Envelope]] | None = None
        self._next: tuple[Batch, list[Envelope], KeyTimeline] | None = None
        self._interval = sys.getswitchinterval()

    def __enter__(self) -> WriteBehind:
        if self._executor is not None:
            sys.setswitchinterval(WRITE_BEHIND_SWITCH_SECONDS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown()  # waits for a write still running (an error left the loop) before the sink closes
            sys.setswitchinterval(self._interval)

    def write(self, batch: Batch, envelopes: list[Envelope], timeline: KeyTimeline) -> None:
        """Store `batch`: at once, or (behind) when `start` hands it to the writer."""
        if self._executor is None or batch.timeline_changed:
            self.settle()
            self.sink.write(batch, timeline)
            self.stored(batch, envelopes)
        else:
            self._next = (batch, envelopes, timeline)

    def start(self) -> None:
        """Hand the waiting batch to the writer, after settling the one it is writing."""
        if self._next is None or self._executor is None:
            return
        self.settle()
        batch, envelopes, timeline = self._next
        self._next = None
        self._pending = (self._executor.submit(self.sink.write, batch, timeline), batch, envelopes)

    def settle(self) -> None:
        """Wait for the batch being written, then commit and observe it (steps 3 and 4); raise if it failed."""
        if self._pending is None:
            return
        writing, batch, envelopes = self._pending
        self._pending = None
        writing.result()
        self.stored(batch, envelopes)
