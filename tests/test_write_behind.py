"""The consumer's write-behind: batch N is written on a second thread while N+1 is classified.

Order is what keeps the consumer exactly-once: a batch's follow-up (the group commit) may
run only after its DuckDB commit, one write at a time, and an error in the writer must reach
the loop instead of being lost on the thread.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.consume import WriteBehind, writer_friendly_switching
from pipeline.runner import Pipeline, RecordKind
from pipeline.store import Store
from tests.test_runner_store import Feed, ev, rows, snapshot_envelopes
from tests.world import World, mint


def test_follow_ups_run_after_their_commit_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    log: list[str] = []
    with Store(db) as store:
        commit = store.commit

        def logged_commit(prepared: Any) -> None:
            log.append(f"commit:{threading.current_thread().name.split('_')[0]}")
            commit(prepared)

        monkeypatch.setattr(store, "commit", logged_commit)
        writer = WriteBehind(store)
        try:
            writer.submit(pipeline.process(snapshot_envelopes(feed)), pipeline.timeline, log.append, "after:keys")
            for n in range(3):
                batch = pipeline.process([feed(RecordKind.EVENT, ev(f"e{n}", token=mint("rsa-1")))])
                writer.submit(batch, pipeline.timeline, log.append, f"after:e{n}")
            assert "after:e2" not in log  # the last batch's follow-up waits for settle()
            writer.settle()
        finally:
            writer.close()
    assert log == [
        "commit:store-writer",
        "after:keys",
        "commit:store-writer",
        "after:e0",
        "commit:store-writer",
        "after:e1",
        "commit:store-writer",
        "after:e2",
    ]
    assert [r[0] for r in rows(db)] == ["e0", "e1", "e2"]


def test_a_failed_write_raises_in_the_loop_and_skips_its_follow_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    followed: list[str] = []
    with Store(db) as store:

        def disk_full(prepared: Any) -> None:
            raise OSError("disk full")

        writer = WriteBehind(store)
        try:
            writer.submit(pipeline.process(snapshot_envelopes(feed)), pipeline.timeline, followed.append, "keys")
            writer.settle()
            monkeypatch.setattr(store, "commit", disk_full)
            batch = pipeline.process([feed(RecordKind.EVENT, ev("e0", token=mint("rsa-1")))])
            writer.submit(batch, pipeline.timeline, followed.append, "e0")
            with pytest.raises(OSError, match="disk full"):
                writer.settle()
        finally:
            writer.close()
    assert followed == ["keys"]  # the group never hears of a batch that was not stored
    assert rows(db) == []


def test_close_waits_for_the_write_in_flight_without_its_follow_up(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    followed: list[str] = []
    with Store(db) as store:
        writer = WriteBehind(store)
        writer.submit(pipeline.process(snapshot_envelopes(feed)), pipeline.timeline, followed.append, "keys")
        batch = pipeline.process([feed(RecordKind.EVENT, ev("e0", token=mint("rsa-1")))])
        writer.submit(batch, pipeline.timeline, followed.append, "e0")
        writer.close()
        assert store.positions()[("topic.event", 0)] == 1  # stored: a restart resumes after it
    assert followed == ["keys"]


def test_the_switch_interval_is_restored() -> None:
    before = sys.getswitchinterval()
    with writer_friendly_switching(0.0001):
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    assert sys.getswitchinterval() == before
