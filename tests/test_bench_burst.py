"""The burst benchmark's parts that decide what it reports: the loss check and the CPU accounting.

No timing is asserted: the samples here are made up, so the arithmetic is what is tested.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, Any]]:
    sys.path.insert(0, str(BENCH))
    try:
        import batch_timing
        import bench_outage
        import burst_load
        import cpu_share

        yield {"outage": bench_outage, "load": burst_load, "cpu": cpu_share, "batches": batch_timing}
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(
    ("produced", "acknowledged", "read", "rows", "distinct"),
    [
        (1000, 1000, 999, 999, 999),  # one record never read (the old check let 10% go)
        (1000, 1000, 1000, 999, 999),  # read but not stored
        (1000, 1000, 1000, 1000, 999),  # stored twice under one id, one missing
        (1000, 999, 1000, 1000, 1000),  # the broker never acknowledged one
    ],
)
def test_a_burst_that_lost_a_record_fails(bench: dict[str, Any], produced: int, acknowledged: int, read: int,
                                          rows: int, distinct: int) -> None:
    with pytest.raises(RuntimeError, match="produced"):
        bench["outage"].check_every_record_stored(produced, acknowledged, read, rows, distinct)


def test_a_burst_that_stored_every_record_passes_even_if_some_were_read_twice(bench: dict[str, Any]) -> None:
    bench["outage"].check_every_record_stored(1000, 1000, 1003, 1000, 1000)


def test_a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses(bench: dict[str, Any]) -> None:
    cpu = bench["cpu"]
    fields = ["S", "1"] + ["0"] * 9 + [str(3 * cpu.TICK), str(cpu.TICK)] + ["0"] * 30
    assert cpu.stat_cpu("4242 (java (x) y) " + " ".join(fields)) == 4.0


def test_cores_per_role_keep_an_exited_task_and_leave_the_rest_to_other(
    bench: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = bench["cpu"]
    step = {"n": 0}
    readings = {(1, None): [0.0, 1.0, None], (2, 7): [0.0, 0.5, 1.0]}  # task 1 exits before the last sample

    def read(pid: int, tid: int | None) -> float | None:
        return readings[(pid, tid)][step["n"]]

    sampler = cpu.CpuSampler(lambda: {"consumer": [(1, None)], "producer": [(2, 7)]}, read=read,
                             busy=lambda: [0.0, 1.8, 3.6][step["n"]])
    monkeypatch.setattr(cpu.time, "time", lambda: 100.0 + step["n"])
    for n in range(3):
        step["n"] = n
        sampler._sample()
    used = sampler.cores(100.0, 102.0)
    assert used["consumer"] == pytest.approx(0.5)  # 1 s in 2 s, kept after it exited
    assert used["producer"] == pytest.approx(0.5)
    assert used["machine"] == pytest.approx(1.8)
    assert used["other"] == pytest.approx(0.8)
    assert sampler.cores(100.0, 100.5) == {}  # one sample is no interval


def test_the_python_generator_keys_a_record_by_its_service(bench: dict[str, Any]) -> None:
    line = b'{"event_id":"o000000001","ts":"2026-11-23T09:00:00Z","service":"payments-api","token":"x"}'
    assert bench["load"]._service(line) == b"payments-api"
    assert bench["load"]._parse_cpus("0,2-3") == {0, 2, 3}


def test_a_later_cycle_of_the_stream_is_dated_later_and_otherwise_unchanged(bench: dict[str, Any]) -> None:
    load = bench["load"]
    line = b'{"event_id":"o000000001","ts":"2026-11-23T09:00:00.012000Z","service":"payments-api","token":"x"}'
    moved = load.shifted(line, 2 * 780.0)
    assert moved == line.replace(b"09:00:00.012000Z", b"09:26:00.012000Z")
    assert load.shifted(line, 0.0) is line  # the first cycle goes out as the file has it


def test_the_cycle_shift_is_the_streams_span_rounded_up_to_a_minute(bench: dict[str, Any], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"event_id":"o1","ts":"2026-11-23T09:00:00Z"}\n'
                       + b'{"event_id":"o2","ts":"2026-11-23T09:05:00Z","token":"' + b"x" * 70_000 + b'"}\n'
                       + b'{"event_id":"o3","ts":"2026-11-23T09:12:00.500Z"}\n')
    assert bench["load"].cycle_shift(events) == 780.0  # 12 min 0.5 s: no two cycles share a minute


def test_batch_timing_reports_cpu_per_event_of_each_part_per_step(bench: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "batches-1.jsonl"
    rows = [{"events": 5000, "process_cpu": 0.1, "write_cpu": 0.2, "upsert_cpu": 0.05},
            {"events": 5000, "process_cpu": 0.1, "write_cpu": 0.2, "upsert_cpu": 0.15},
            {"events": 0, "publish_cpu": 0.01},  # a batch of snapshots only: its publish counts with the next
            {"events": 2000, "process_cpu": 0.1, "write_cpu": 0.1, "upsert_cpu": 0.02, "loop_cpu": 0.25,
             "main_cpu": 0.24, "filter_cpu": 0.01}]
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first, second = bench["batches"].summarize([log], step=10_000).splitlines()
    assert "+10,000" in first and "process  20.0" in first and "upsert  20.0," in first
    assert "upsert 100.0 ms CPU per batch" in first  # the median of 50 and 150 ms
    assert "filter" not in first and "all" not in first  # parts not logged are not shown
    assert "+2,000" in second and "1 batches" in second and "process  50.0" in second and "publish   5.0" in second
    assert "filter   5.0" in second  # nested in the upsert: not added again for the unnamed rest
    assert "all 125.0 (main thread 120.0), unnamed 20.0" in second  # 125 - (50 + 50 + 5)


def test_batch_timing_by_the_main_threads_cpu_and_the_reuse_counts(bench: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "batches-1.jsonl"
    rows = [{"events": 5000, "process_cpu": 0.1, "process_thread": 0.08, "write_cpu": 0.2, "write_thread": 0.2,
             "loop_cpu": 0.35, "main_cpu": 0.3, "reuse_hits": 4900, "reuse_misses": 100, "span_hits": 4000,
             "partitions": 3}]
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    by_process = bench["batches"].summarize([log], step=10_000)
    by_thread = bench["batches"].summarize([log], step=10_000, thread=True)
    assert "process  20.0" in by_process and "unnamed 10.0" in by_process  # 70 - (20 + 40)
    assert "process  16.0" in by_thread and "unnamed  4.0" in by_thread  # the main thread's 60 - (16 + 40)
    assert "judgement hits 0.980, misses 0.020, span hits 0.800; partitions per batch 3" in by_thread


def test_batch_timing_names_every_thread_by_its_id(bench: dict[str, Any]) -> None:
    import threading

    started = threading.Event()
    stop = threading.Event()

    def spin() -> None:
        started.set()
        stop.wait(5)

    other = threading.Thread(target=spin)
    other.start()
    started.wait(5)
    try:
        threads = bench["batches"]._threads_cpu()
    finally:
        stop.set()
        other.join()
    ids = {int(key.split()[0]) for key in threads}
    assert {threading.get_native_id(), other.native_id} <= ids
    assert all(seconds >= 0 for seconds in threads.values())
