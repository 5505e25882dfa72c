"""Benchmark: what watching for deleted records (`pipeline.io.kafka_gaps`) adds to each poll.

    python bench/bench_gaps.py [--rounds 30] [--records 1250]

`KafkaSource._envelopes` calls `GapWatch.observe` once per partition and poll. With contiguous
offsets (every topic that is neither transactional nor compacted) that is a few integer
compares, whatever the number of records; offsets with gaps among them are walked record by
record. Both are timed here (medians of `--rounds`), beside a bare per-record list comprehension
for scale (what `_envelopes` already does for each record). No broker: the broker's side (a
log start asked once a second while gaps wait) is not per record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

from pipeline.io.kafka_gaps import GapWatch

POLLS = 200


@dataclass(frozen=True, slots=True)
class Record:
    offset: int


def observe_ns(polls: list[list[Record]]) -> float:
    """Nanoseconds per `observe` call (one partition's records of one poll)."""
    gaps = GapWatch(lambda partitions: {})
    gaps.expect(("t", 0), polls[0][0].offset)
    started = time.perf_counter()
    for records in polls:
        gaps.observe(("t", 0), records)
    return (time.perf_counter() - started) / len(polls) * 1e9


def per_record_ns(polls: list[list[Record]]) -> float:
    started = time.perf_counter()
    for records in polls:
        [(record.offset, record) for record in records]  # the work being timed
    return (time.perf_counter() - started) / sum(len(r) for r in polls) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--records", type=int, default=1250, help="records per partition per poll")
    args = parser.parse_args()
    n = args.records
    contiguous = [[Record(p * n + i) for i in range(n)] for p in range(POLLS)]
    gapped = [[Record(p * 2 * n + 2 * i) for i in range(n)] for p in range(POLLS)]  # every other offset missing
    timings: dict[str, list[float]] = {"contiguous": [], "gapped": [], "bare": []}
    for _ in range(args.rounds):
        timings["contiguous"].append(observe_ns(contiguous))
        timings["gapped"].append(observe_ns(gapped))
        timings["bare"].append(per_record_ns(contiguous))
    contiguous_ns, gapped_ns, bare = (statistics.median(timings[k]) for k in ("contiguous", "gapped", "bare"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"observe, contiguous offsets: {contiguous_ns:,.0f} ns per partition and poll "
          f"({contiguous_ns / n:.2f} ns per record at {n:,} records)")
    print(f"observe, a gap after every record (a compacted topic): {gapped_ns / n:.0f} ns per record")
    print(f"for scale, a bare per-record list comprehension: {bare:.0f} ns per record")
    print(f"{args.rounds} rounds of {POLLS} polls, medians; load {load}")


if __name__ == "__main__":
    main()
