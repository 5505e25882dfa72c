"""`run(..., write_behind=True)`: a batch is written on a second thread while the next one is judged, and the
loop's promises hold as when it wrote in place (`tests/test_runner_store.py` has those for the plain loop):
sink before commit, commits and `on_batch` in order, `on_tick` and a snapshot's judging never while a batch is
being written, a failed write stops the loop with nothing after it committed, the same rows in the store.

No test here times anything: the overlap is shown by a write that waits until the loop has asked for the next
unit, which only a loop that writes behind can do (in place, the write would wait for itself).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.keys import KeyTimeline
from pipeline.io.memory import ListSource
from pipeline.io.store import Store
from pipeline.records import Batch, Envelope, RecordKind
from pipeline.runner import Pipeline, run
from tests.test_runner_store import Feed, ev, snapshot_envelopes
from tests.world import World, mint

#: How long a test's write waits for the loop to move on before it says the loop did not (a failure, not a pace).
PATIENCE_SECONDS = 10.0


class Loop:
    """A source, sink and hooks that log what happens, with the thread each step ran on."""

    def __init__(self, units: list[list[Envelope]], *, failing_write: int | None = None) -> None:
        self.units, self.failing_write = units, failing_write
        self.log: list[str] = []
        self.asked = [threading.Event() for _ in range(len(units) + 1)]  # the loop took unit n from the source
        self.judging = [threading.Event() for _ in range(len(units) + 1)]  # the loop began judging unit n (n: the end)
        self.writing = threading.Lock()  # held while a write runs
        self.writes = self.written = 0  # begun, ended

    def unit(self, envelopes: list[Envelope]) -> int:
        """Which unit these envelopes are (units differ in their positions)."""
        return next(n for n, unit in enumerate(self.units) if unit and _positions(unit) == _positions(envelopes))

    # the source
    def batches(self) -> Any:
        for n, unit in enumerate(self.units):
            self.asked[n].set()
            yield unit
        self.asked[-1].set()
        self.judging[-1].set()  # the loop asked for more: there is none

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        assert not self.writing.locked(), "committed while a write was running"
        self.log.append(f"commit {sorted(positions.items())}")

    # the sink: a write of unit n waits until the loop began judging unit n + 1 (behind: it does, in place: never),
    # or, when unit n + 1 has snapshots, until the loop took it (it then waits for this write before judging it)
    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        with self.writing:
            self.writes += 1
            unit = next(n for n, u in enumerate(self.units) if u and _positions(u) == batch.positions)
            after = self.units[unit + 1] if unit + 1 < len(self.units) else []
            moved = self.asked if any(e.kind is RecordKind.SNAPSHOT for e in after) else self.judging
            moved_on = moved[unit + 1].wait(PATIENCE_SECONDS if not batch.timeline_changed else 0)
            where = "behind" if threading.current_thread() is not threading.main_thread() else "in place"
            self.log.append(f"write unit {unit} {where}, {'after' if moved_on else 'before'} the next began")
            self.written += 1
            if self.writes == self.failing_write:
                raise OSError("disk full")

    def on_batch(self, batch: Batch, stats: Any) -> None:
        self.log.append(f"on_batch {stats.batches}")

    def on_tick(self) -> None:
        assert not self.writing.locked(), "on_tick ran while a write was running"
        self.log.append("tick")


def _positions(unit: list[Envelope]) -> dict[tuple[str, int], int]:
    return {(e.position.source, e.position.partition): e.position.offset + 1 for e in unit}


class WatchedPipeline(Pipeline):
    """Logs each batch it judges, and whether a write was running then."""

    loop: Loop

    def process(self, records: Iterable[Envelope]) -> Batch:
        envelopes = list(records)
        kinds = {e.kind.value for e in envelopes}
        self.loop.log.append(f"judge {'/'.join(sorted(kinds))}, {self.loop.written} written")
        self.loop.judging[self.loop.unit(envelopes)].set()
        return super().process(envelopes)


def event_units(feed: Feed, count: int) -> list[list[Envelope]]:
    return [[feed(RecordKind.EVENT, ev(f"e{n}", token=mint("ec-1")))] for n in range(count)]


def loop_run(loop: Loop, **kwargs: Any) -> Any:
    pipeline = WatchedPipeline(World().cfg)
    pipeline.loop = loop
    return run(loop, pipeline, loop, on_batch=loop.on_batch, on_tick=loop.on_tick, write_behind=True, **kwargs)


def test_a_batch_is_written_while_the_next_is_judged_and_committed_in_order() -> None:
    feed = Feed()
    loop = Loop([snapshot_envelopes(feed), *event_units(feed, 3)])
    stats = loop_run(loop)
    assert loop.log == [
        "judge snapshot, 0 written",
        # the key timeline changed: written at once (its write reads the timeline, which the next batch may change)
        "write unit 0 in place, before the next began",
        "commit [(('topic.snapshot', 0), 5)]",
        "on_batch 1",
        "tick",
        "judge event, 1 written",
        "tick",  # the unit's write starts after the tick
        "judge event, 1 written",  # the next unit, judged while the one before is being written
        "write unit 1 behind, after the next began",
        "commit [(('topic.event', 0), 1)]",
        "on_batch 2",
        "tick",
        "judge event, 2 written",
        "write unit 2 behind, after the next began",
        "commit [(('topic.event', 0), 2)]",
        "on_batch 3",
        "tick",
        "write unit 3 behind, after the next began",  # the source's end
        "commit [(('topic.event', 0), 3)]",
        "on_batch 4",
    ]
    assert (stats.batches, stats.records, stats.events) == (4, 8, 3)


def test_a_batch_with_snapshots_is_judged_only_once_the_write_before_it_ended() -> None:
    """Judging snapshots may read stored rows again (`pipeline.rejudge`): never beside a write of the same store."""
    feed = Feed()
    snapshots = snapshot_envelopes(feed)
    loop = Loop([snapshots[:3], *event_units(feed, 2), snapshots[3:]])
    loop_run(loop)
    judged = [line for line in loop.log if line.startswith("judge")]
    assert judged == ["judge snapshot, 0 written", "judge event, 1 written", "judge event, 1 written",
                      "judge snapshot, 3 written"]  # every write before it had ended


def test_a_failed_write_stops_the_loop_and_nothing_after_it_is_committed() -> None:
    feed = Feed()
    loop = Loop([snapshot_envelopes(feed), *event_units(feed, 4)], failing_write=3)  # unit 2's write
    with pytest.raises(OSError, match="disk full"):
        loop_run(loop)
    commits = [line for line in loop.log if line.startswith("commit")]
    assert commits == ["commit [(('topic.snapshot', 0), 5)]", "commit [(('topic.event', 0), 1)]"]
    assert loop.writes == 3  # unit 3 was judged meanwhile, but never written: it is read again on restart


def test_a_stop_request_commits_the_batches_in_hand() -> None:
    feed = Feed()
    loop = Loop(event_units(feed, 5))
    requested = False

    def on_batch(batch: Batch, stats: Any) -> None:
        nonlocal requested
        requested = stats.batches == 2

    pipeline = WatchedPipeline(World().cfg)
    pipeline.loop = loop
    def stop() -> bool:
        if requested:  # the loop judges no more units: the last write need not wait for one
            for judging in loop.judging:
                judging.set()
        return requested

    stats = run(loop, pipeline, loop, on_batch, write_behind=True, stop=stop)
    # the third unit was judged while the second was written: it is written and committed too, and no more
    assert stats.batches == 3
    assert loop.log[-1] == "commit [(('topic.event', 0), 3)]"


def test_the_switch_interval_is_restored() -> None:
    before = sys.getswitchinterval()
    loop_run(Loop(event_units(Feed(), 2)))
    assert sys.getswitchinterval() == before


def test_the_store_holds_the_same_rows_written_behind_as_in_place(tmp_path: Path) -> None:
    """Events of many batches, a snapshot arriving late that judges some again: the same rows either way."""
    feed = Feed()
    snapshots = snapshot_envelopes(feed)
    units = [snapshots[:2]]
    for n in range(6):
        units.append([feed(RecordKind.EVENT, ev(f"e{n}-{k}", token=mint(("rsa-1", "ec-1", "rsa-2")[k % 3])))
                      for k in range(5)])
    units.insert(4, snapshots[2:])  # rsa-1 removed before T0: events dated T0 judged before it are judged again
    found = []
    for behind, name in ((False, "in-place"), (True, "behind")):
        with Store(tmp_path / f"{name}.duckdb") as store:
            run(ListSource([e for unit in units for e in unit], batch_size=5), Pipeline(World().cfg), store,
                write_behind=behind)
            found.append(store.con.execute(
                "SELECT event_id, ts, cause, confidence, findings FROM classifications ORDER BY event_id").fetchall())
            positions = store.positions()
    assert found[0] == found[1]
    assert len(found[1]) == 30
    # the late snapshot judged the rsa-1 events of the batches before it again: every one is retired_key
    assert {cause for event_id, _, cause, _, _ in found[1] if int(event_id.split("-")[1]) % 3 == 0} == {"retired_key"}
    assert positions[("topic.event", 0)] == 30
