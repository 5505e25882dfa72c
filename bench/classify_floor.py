"""The floor of `jwtriage classify` on the outage stream: what reading, decoding and writing its lines cost alone.

    python bench/classify_floor.py

CPU per event (`time.process_time`, best of 3, under `streaming_gc`) of each piece over the whole
stream's batches, beside bare PyJWT `jwt.decode` of its first 30,000 events in the same process (the
classify case's baseline): how much of the 10x budget is spent before any judging.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_outage
from outage import outage_stream

from pipeline.io.files import FileSource
from pipeline.models import AuthFailureEvent
from pipeline.records import decode_record
from pipeline.runner import streaming_gc

BATCH = 2_000
#: A stale_jwks verdict's JSON after its `event_id`, as the printing sink appends it to each reused verdict's id.
TAIL = (
    b',"cause":"stale_jwks","confidence":"verified","attacks":[],"findings":["stale_jwks"],'
    b'"issuer":"https://login.outage.test","kid":"k-new","alg":"RS256","audience":"api://payments-api",'
    b'"skew_seconds":null,"detail":"payments-api last fetched its JWKS at 2026-11-23 08:57:00Z (9 min before '
    b'the event), but kid k-new was first published at 2026-11-23 09:02:00Z (4 min before the event)."}'
)


def main() -> None:
    files = outage_stream()
    lines = [envelope.value for batch in FileSource(files.events).batches() for envelope in batch]
    n = len(lines)
    validate = AuthFailureEvent.__pydantic_validator__.validate_json
    ids = [validate(line).event_id.encode() for line in lines]

    def best(work: Callable[[], object], runs: int = 3) -> float:
        spent = []
        for _ in range(runs):
            started = time.process_time()
            work()
            spent.append(time.process_time() - started)
        return min(spent) / n * 1e6

    def read() -> None:
        for _ in FileSource(files.events).batches():
            pass

    def copy() -> None:
        out = io.StringIO()
        for start in range(0, n, BATCH):
            out.write(b"\n".join(lines[start:start + BATCH]).decode())

    def write() -> None:
        out = io.StringIO()
        for start in range(0, n, BATCH):
            printed = [b'{"event_id":"' + i + b'"' + TAIL for i in ids[start:start + BATCH]]
            out.write(b"\n".join([*printed, b""]).decode())

    with streaming_gc():
        figures = {
            "read the lines (FileSource batches; outside the bench's timer)": best(read, 2),
            "copy the input lines to a StringIO": best(copy),
            "pydantic validate_json of each line": best(
                lambda: [[validate(line) for line in lines[s:s + BATCH]] for s in range(0, n, BATCH)]
            ),
            "decode_record of each line (size, UTF-8, nesting, validate_json)": best(
                lambda: [[decode_record(line, AuthFailureEvent) for line in lines[s:s + BATCH]]
                         for s in range(0, n, BATCH)]
            ),
            "write the verdict lines (event_id + a learned tail, per batch)": best(write),
        }
    sample = [json.loads(line) for line in lines[:30_000]]
    bare = bench_outage.bare_decode(files, sample) / len(sample) * 1e6
    for name, micros in figures.items():
        print(f"{name:68s} {micros:6.2f} us/event")
    name = "bare jwt.decode of the first 30,000 events (wall)"
    print(f"{name:68s} {bare:6.2f} us/event: 10x needs <= {bare / 10:.2f}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
