"""The write-behind loop (`pipeline.write_behind`): the order `runner.run` promises, with the write on its own thread.

Stand-in parts record what happened on which thread: the sink's write of batch N must
overlap the processing of batch N+1, yet the group commit and `on_batch` of N come only
after write(N) ended, one write at a time; a failed write stops the loop with nothing
committed after it; a stop request finishes the write in flight and its commit; the store's
other users wait for the write in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.engine.keys import KeyTimeline
from pipeline.io.memory import ListSource
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.records import Batch, Envelope, Position, RecordKind
from pipeline.rejudge import StoredRejudge
from pipeline.runner import Pipeline, PipelineLimits, run
from pipeline.write_behind import WriteBehind, guarded
from tests.test_runner_store import Feed, ev, snapshot_envelopes
from tests.world import T0, World, good_claims, mint

MAIN = threading.get_ident()
WAIT = 5.0  # seconds a stand-in waits for the other thread before it gives up (a failure, not a timing)


class Log:
    """What happened, in order, and on which thread ("main" or "writer")."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[str, str]] = []

    def __call__(self, what: str) -> None:
        with self.lock:
            self.entries.append((what, "main" if threading.get_ident() == MAIN else "writer"))

    def index(self, what: str) -> int:
        return [w for w, _ in self.entries].index(what)

    def thread(self, what: str) -> str:
        return dict(self.entries)[what]


class Source:
    """A committing source of one-record units, numbered from 1, with an empty unit after `idle_after`."""

    def __init__(self, log: Log, units: int, idle_after: int | None = None) -> None:
        self.log, self.units, self.idle_after = log, units, idle_after

    def batches(self) -> Iterator[list[Envelope]]:
        for n in range(1, self.units + 1):
            self.log(f"poll {n}")
            yield [Envelope(RecordKind.EVENT, str(n).encode(), Position("t", 0, n))]
            if n == self.idle_after:
                yield []

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        self.log(f"commit {positions[('t', 0)]}")


class StubPipeline:
    """`Pipeline.process` as the loop sees it: a batch per unit; processing N+1 lets write(N) finish."""

    def __init__(self, log: Log, snapshots_at: int | None = None) -> None:
        self.log, self.snapshots_at = log, snapshots_at
        self.timeline = KeyTimeline()
        self.processed: dict[int, threading.Event] = {}

    def process(self, envelopes: list[Envelope]) -> Batch:
        n = envelopes[0].position.offset
        self.log(f"process {n}")
        self.processed.setdefault(n, threading.Event()).set()
        return Batch(positions={("t", 0): n}, timeline_changed=n == self.snapshots_at)


class Sink:
    """Writes slowly: write(N) waits (up to WAIT s) until batch N+1 was processed, and notes whether it came."""

    def __init__(self, log: Log, pipeline: StubPipeline, fail_at: int | None = None, last: int = 0) -> None:
        self.log, self.pipeline, self.fail_at, self.last = log, pipeline, fail_at, last
        self.idle_at: int | None = None
        self.wait = WAIT
        self.overlapped: dict[int, bool] = {}
        self.in_flight = 0

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        n = batch.positions[("t", 0)]
        self.in_flight += 1
        assert self.in_flight == 1, "two writes at once"
        self.log(f"write {n} start")
        if not batch.timeline_changed and n < self.last and n != self.idle_at:  # no next batch to wait for
            self.overlapped[n] = self.pipeline.processed.setdefault(n + 1, threading.Event()).wait(self.wait)
        self.in_flight -= 1
        if n == self.fail_at:
            self.log(f"write {n} failed")
            raise OSError(f"disk full at batch {n}")
        self.log(f"write {n} end")


def _run(units: int, *, behind: bool = True, fail_at: int | None = None, snapshots_at: int | None = None,
         stop_after: int | None = None, idle_after: int | None = None) -> tuple[Log, Sink, WriteBehind | None]:
    log = Log()
    pipeline = StubPipeline(log, snapshots_at)
    sink = Sink(log, pipeline, fail_at, last=min(units, stop_after or units, fail_at or units))
    sink.idle_at, sink.wait = idle_after, WAIT if behind else 0.5  # sequential: it cannot come, whatever the wait
    writer = WriteBehind(sink) if behind else None
    on_batch_seen: list[int] = []

    def on_batch(batch: Batch, stats: Any) -> None:
        on_batch_seen.append(batch.positions[("t", 0)])
        log(f"on_batch {batch.positions[('t', 0)]}")

    def stop() -> bool:
        return stop_after is not None and any(w == f"process {stop_after}" for w, _ in log.entries)

    try:
        run(Source(log, units, idle_after), pipeline, writer or sink,  # type: ignore[arg-type]
            on_batch=on_batch, stop=stop)
    finally:
        if writer is not None:
            writer.close()
    return log, sink, writer


def test_the_write_of_a_batch_overlaps_the_next_batch_on_its_own_thread() -> None:
    log, sink, _ = _run(4)
    assert sink.overlapped == {1: True, 2: True, 3: True}  # write(N) saw batch N+1 processed while it ran
    assert {log.thread(f"write {n} start") for n in (1, 2, 3, 4)} == {"writer"}
    assert {thread for what, thread in log.entries if not what.startswith("write")} == {"main"}


def test_sequential_loop_never_overlaps() -> None:
    """Without a WriteBehind the loop is as it was: the same stand-ins see no overlap (the test above can fail)."""
    _, sink, _ = _run(2, behind=False)
    assert sink.overlapped == {1: False}


def test_commit_and_on_batch_come_after_their_write_in_order() -> None:
    log, _, _ = _run(4)
    for n in (1, 2, 3, 4):
        assert log.index(f"write {n} end") < log.index(f"commit {n}") < log.index(f"on_batch {n}")
        if n > 1:
            assert log.index(f"commit {n - 1}") < log.index(f"commit {n}")
            assert log.index(f"write {n - 1} end") < log.index(f"write {n} start")  # one in flight at most
    assert [w for w, _ in log.entries if w.startswith("commit")] == ["commit 1", "commit 2", "commit 3", "commit 4"]


def test_a_failed_write_stops_the_loop_and_nothing_after_it_is_committed() -> None:
    with pytest.raises(OSError, match="disk full at batch 2"):
        _run(5, fail_at=2)


def test_nothing_is_committed_or_written_after_a_failed_write() -> None:
    log = Log()
    pipeline = StubPipeline(log)
    sink = Sink(log, pipeline, fail_at=2, last=2)
    writer = WriteBehind(sink)
    with pytest.raises(OSError):
        run(Source(log, 5), pipeline, writer)  # type: ignore[arg-type]
    writer.close()
    done = [w for w, _ in log.entries]
    assert "commit 1" in done and "commit 2" not in done and "write 3 start" not in done
    assert writer.failed
    with pytest.raises(RuntimeError):
        writer.write(Batch(), KeyTimeline())


def test_a_stop_request_finishes_the_write_in_flight_and_its_commit() -> None:
    log, _, _ = _run(5, stop_after=2)
    done = [w for w, _ in log.entries]
    assert "process 3" not in done
    assert done[-3:] == ["write 2 end", "commit 2", "on_batch 2"]


def test_an_idle_unit_commits_the_batch_in_flight() -> None:
    log, _, _ = _run(3, idle_after=1)
    assert log.index("commit 1") < log.index("poll 2")


def test_a_batch_that_changed_the_timeline_is_written_on_the_main_thread_with_nothing_in_flight() -> None:
    log, _, _ = _run(4, snapshots_at=2)
    assert log.thread("write 2 start") == "main"
    assert log.index("commit 1") < log.index("write 2 start")
    assert log.index("write 2 end") < log.index("commit 2") < log.index("write 3 start")


def test_the_guarded_store_waits_for_the_write_in_flight() -> None:
    log = Log()
    release = threading.Event()

    class SlowStore:
        def write(self, batch: Batch, timeline: KeyTimeline) -> None:
            log("write start")
            release.wait(WAIT)
            log("write end")

        def publish(self) -> None:
            log("publish")

    store = SlowStore()
    writer = WriteBehind(store)
    writer.start(Batch(), KeyTimeline())
    timer = threading.Timer(0.2, release.set)
    timer.start()
    guarded(store, writer).publish()
    timer.join()
    writer.close()
    assert [w for w, _ in log.entries] == ["write start", "write end", "publish"]


def test_the_guarded_store_raises_a_failed_write_once_then_lets_the_store_close() -> None:
    class FailingStore:
        closed = False

        def write(self, batch: Batch, timeline: KeyTimeline) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            self.closed = True

    store = FailingStore()
    writer = WriteBehind(store)
    writer.start(Batch(), KeyTimeline())
    with pytest.raises(OSError):
        guarded(store, writer).close()
    guarded(store, writer).close()
    writer.close()
    assert store.closed and writer.failed


def test_a_batch_that_changed_the_timeline_is_refused_in_the_background() -> None:
    writer = WriteBehind(Sink(Log(), StubPipeline(Log())))
    with pytest.raises(ValueError):
        writer.start(Batch(timeline_changed=True), KeyTimeline())
    writer.close()


def _stored_rows(path: Any) -> list[Any]:
    con = connect_readonly(path)
    try:
        columns = [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'classifications' "
            "AND column_name <> 'classified_at' ORDER BY ordinal_position").fetchall()]
        rows = con.execute(f"SELECT {', '.join(columns)} FROM classifications ORDER BY event_id").fetchall()
        positions = con.execute("SELECT * EXCLUDE (updated_at) FROM source_positions ORDER BY ALL").fetchall()
        return [rows, positions]
    finally:
        con.close()


def test_the_store_holds_the_same_rows_with_and_without_the_writer_thread(tmp_path: Any) -> None:
    """A real Pipeline and Store; keys arrive mid-stream, so stored rows are judged again (through the guard)."""
    cfg = World().cfg
    feed = Feed()
    envelopes: list[Envelope] = []
    for n in range(600):
        claims = good_claims(exp=int(T0.timestamp()) - 60) if n % 3 else good_claims()
        token = mint("rsa-9" if n % 7 == 0 else "rsa-2", claims, signer="rsa-2")
        envelopes.append(feed(RecordKind.EVENT, ev(f"e{n:04d}", token=token)))
        if n == 250:
            envelopes.extend(snapshot_envelopes(feed))
    stored = []
    for behind in (False, True):
        path = tmp_path / f"{behind}.duckdb"
        store = Store(path)
        writer = WriteBehind(store) if behind else None
        source = ListSource(envelopes, batch_size=50)
        pipeline = Pipeline(cfg, limits=PipelineLimits(max_recent=10, max_waiting_for_key=10))
        pipeline.stored = StoredRejudge(guarded(store, writer) if writer is not None else store, source)
        try:
            run(source, pipeline, writer or store)
        finally:
            if writer is not None:
                writer.close()
            store.close()
        stored.append(_stored_rows(path))
    assert stored[0] == stored[1]
    assert len(stored[0][0]) == 600
    assert len({row[3] for row in stored[0][0]}) >= 3  # causes: the stream is not all one verdict
