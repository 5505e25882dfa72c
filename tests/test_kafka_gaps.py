"""Gaps in a partition's offsets (`pipeline.io.kafka_gaps`), without a broker: deleted records or harmless gaps.

The broker is a dict of log start offsets; records are anything with an `offset`. The real broker's
side (an offset reset after `DeleteRecords`) is in tests/test_kafka_retention.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.io.consumer_health import RecordsLost, lost_value, parse_lost, records_lost
from pipeline.io.kafka_gaps import GapWatch, Hole, Partition
from pipeline.io.store import Store
from pipeline.metrics import Metrics

P0: Partition = ("auth.failures", 0)
P1: Partition = ("auth.failures", 1)


@dataclass(frozen=True)
class Record:
    offset: int


def records(*offsets: int) -> list[Record]:
    return [Record(o) for o in offsets]


class Broker:
    """Log start offsets per partition, and how often they were asked."""

    def __init__(self) -> None:
        self.starts: dict[Partition, int] = {}
        self.asked = 0
        self.down = False

    def log_starts(self, partitions: list[Partition]) -> dict[Partition, int]:
        self.asked += 1
        if self.down:
            raise ConnectionError("broker down")
        return {p: self.starts.get(p, 0) for p in partitions}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watch(broker: Broker, clock: Clock | None = None) -> GapWatch:
    return GapWatch(broker.log_starts, check_every=1.0, clock=clock or Clock())


def test_contiguous_reads_ask_nothing_and_lose_nothing() -> None:
    broker = Broker()
    gaps = watch(broker)
    gaps.expect(P0, 0)
    gaps.observe(P0, records(*range(0, 500)))
    gaps.observe(P0, records(*range(500, 1000)))
    assert not gaps.due() and gaps.check() == [] and broker.asked == 0
    assert gaps.lost == {} and gaps.take_holes() == []


def test_a_reset_past_deleted_records_is_a_hole_with_its_offsets_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The 120 s burst: the consumer was at 392,018, retention deleted up to 593,701, kafka-python went on there."""
    broker, clock = Broker(), Clock()
    gaps = watch(broker, clock)
    gaps.expect(P0, 380_000)
    gaps.observe(P0, records(*range(380_000, 392_018)))
    gaps.observe(P0, records(*range(593_702, 594_000)))  # reset to the earliest offset still there
    assert not gaps.due()  # gaps wait for the next check, up to a second
    clock.now = 1.5
    assert gaps.due()
    broker.starts[P0] = 593_702
    with caplog.at_level(logging.WARNING, logger="pipeline.io.kafka_gaps"):
        assert gaps.check() == [Hole("auth.failures", 0, 392_018, 593_701)]
    assert gaps.lost == {P0: 201_684}
    assert ("broker deleted 201,684 records of auth.failures[0] (offsets 392,018–593,701) before jwtriage read "
            "them; hint: the topic's retention is shorter than the consumer's lag — raise retention.ms/bytes or "
            "add consumers") in caplog.messages
    assert [h.records for h in gaps.take_holes()] == [201_684]
    assert gaps.take_holes() == []  # handed out once


def test_transaction_markers_and_compaction_leave_gaps_the_log_still_holds() -> None:
    """A commit marker takes one offset; compaction leaves holes anywhere; neither moves the log start."""
    broker, clock = Broker(), Clock()
    gaps = watch(broker, clock)
    gaps.expect(P0, 0)
    gaps.observe(P0, records(*range(0, 10)))
    gaps.observe(P0, records(*range(11, 21)))  # offset 10: a transaction's commit marker
    gaps.observe(P0, records(21, 22, 30, 31, 40))  # compacted: 23–29 and 32–39 are gone, among the records
    clock.now = 2
    assert gaps.due()
    assert gaps.check() == [] and broker.asked == 1
    assert gaps.lost == {} and not gaps.due()


def test_only_the_part_of_a_gap_below_the_log_start_was_deleted() -> None:
    broker, clock = Broker(), Clock()
    gaps = watch(broker, clock)
    gaps.expect(P0, 100)
    gaps.expect(P1, 100)
    gaps.observe(P0, records(200, 201))  # 100–149 deleted, 150–199 markers still in the log
    gaps.observe(P1, records(200, 201))  # the log start moved on past 200 before the check: 100–199 in all
    broker.starts.update({P0: 150, P1: 260})
    clock.now = 1
    assert gaps.check() == [Hole("auth.failures", 0, 100, 149), Hole("auth.failures", 1, 100, 199)]
    assert gaps.lost == {P0: 50, P1: 100}


def test_a_partition_without_a_known_start_is_not_judged_and_a_moved_one_is_asked_again() -> None:
    """A new group starts at the earliest offset by design; a partition back from a rebalance resumes elsewhere."""
    broker, clock = Broker(), Clock()
    gaps = watch(broker, clock)
    gaps.observe(P0, records(5_000, 5_001))  # never told where it starts: nothing to compare
    gaps.forget([P0])  # revoked: another member reads it meanwhile
    gaps.observe(P0, records(9_000, 9_001))
    clock.now = 5
    broker.starts[P0] = 9_000
    assert gaps.check() == [] and broker.asked == 0


def test_gaps_wait_for_a_broker_that_cannot_answer() -> None:
    broker, clock = Broker(), Clock()
    gaps = watch(broker, clock)
    gaps.expect(P0, 0)
    gaps.observe(P0, records(40, 41))
    clock.now = 1
    broker.down = True
    with pytest.raises(ConnectionError):
        gaps.check()
    assert not gaps.due()  # asked again a second later, not at every poll
    clock.now = 2.5
    assert gaps.due()
    broker.down, broker.starts[P0] = False, 40
    assert gaps.check() == [Hole("auth.failures", 0, 0, 39)]


def test_a_start_below_the_log_start_is_a_hole_at_once() -> None:
    """A restart finds its stored position deleted while it was down (the follower topics' case)."""
    gaps = watch(Broker())
    gaps.deleted(P0, 1_000, 1_499)
    gaps.deleted(P1, 1_000, 999)  # the log starts at the stored position: nothing lost
    assert gaps.take_holes() == [Hole("auth.failures", 0, 1_000, 1_499)] and gaps.lost == {P0: 500}


# -- where the count goes: the store's note, the Live page's sum, the counter -------------------


def test_the_store_keeps_each_consumers_note_across_restarts_and_readers_sum_partitions(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    at = datetime(2026, 12, 6, 4, 5, tzinfo=UTC)
    with Store(db) as writer:
        writer.instance = "c0"
        assert writer.records_lost() == {}
        writer.note_lost(RecordsLost(at, 201_684, "auth.failures", 0, 392_018, 593_701))
        writer.note_lost(RecordsLost(at, 7, "auth.tokens.sampled", 2, 10, 16))
        writer.beat(at)
        assert records_lost(writer.con) == RecordsLost(at, 201_691, "auth.failures", 0, 392_018, 593_701)
    with Store(db) as writer:
        writer.instance = "c0"
        assert writer.records_lost()[P0].records == 201_684  # what a restarted consumer adds to
        writer.instance = "c1"  # another consumer saw the same samples lost: counted once
        later = at.replace(hour=5)
        writer.note_lost(RecordsLost(at, 7, "auth.tokens.sampled", 2, 10, 16))
        writer.note_lost(RecordsLost(later, 119_552, "auth.failures", 1, 474_262, 593_813))
        writer.beat(later)
        total = records_lost(writer.con)
    assert total == RecordsLost(later, 201_684 + 7 + 119_552, "auth.failures", 1, 474_262, 593_813)
    assert parse_lost(lost_value(total)) == total and parse_lost("not|a|note") is None


def test_the_counter_starts_at_zero_for_every_partition_whose_lag_is_known() -> None:
    metrics = Metrics()
    metrics.set_lag({("auth.failures", 0): 10, ("auth.failures", 1): 0})
    assert metrics.registry.get_sample_value("jwtriage_records_lost_total", {"topic": "auth.failures",
                                                                            "partition": "1"}) == 0
    metrics.count_lost("auth.failures", 0, 201_684)
    assert metrics.registry.get_sample_value("jwtriage_records_lost_total", {"topic": "auth.failures",
                                                                            "partition": "0"}) == 201_684


def test_a_hole_an_earlier_run_counted_is_not_counted_again() -> None:
    """Every new record of a partition deleted: nothing read, no position moved, the next start meets the hole again."""
    broker, clock = Broker(), Clock()
    gaps = GapWatch(broker.log_starts, clock=clock, counted_through={P0: 1_499})
    gaps.deleted(P0, 1_000, 1_499)  # the same hole, found again at start-up
    gaps.deleted(P0, 1_000, 1_599)  # ... and 100 more deleted since
    assert gaps.take_holes() == [Hole("auth.failures", 0, 1_500, 1_599)] and gaps.lost == {P0: 100}
    gaps.expect(P0, 1_000)
    gaps.observe(P0, records(1_700))
    clock.now, broker.starts[P0] = 2, 1_700
    assert gaps.check() == [Hole("auth.failures", 0, 1_600, 1_699)]
