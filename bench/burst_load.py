"""The burst benchmark's load generators: paced producers of the outage stream's records.

    load = start_load("java" | "python", events_path, topic, plan, keyed=False, cpus=None, ts_shift=0.0)
    load.done.wait(); load.join()      # load.sent, load.acked: [(time, records)], sampled as it runs

`plan` is [(seconds, events/s), ...], one phase after another. Each record is the next line of the
stream (cycled) with its event id made unique (`"event_id":"o…` -> `"event_id":"b<n>-…`), keyed by
its service when `keyed`, else unkeyed (as the burst always was: spread over the partitions).
`ts_shift` (seconds; `cycle_shift(events)` is the stream's own span) dates the n-th cycle's records
n * ts_shift later. Without it every cycle repeats the same minutes of event time, which no real
outage does and which costs the consumer work a real one does not cause (bench/results.md, "the
burst's excess CPU per event"): each batch's upsert then scans the rows of every earlier cycle.

Two generators, so that their cost can be compared in one run:

- `python`: a thread of the launcher calling kafka-python's `send()` per record (the original).
  At a 10x burst of a fast consumer's share it wants most of a core (bench/results.md), taken from the
  consumer it is measuring on a 2-core machine.
- `java`: bench/BurstProducer.java in its own JVM, built once with `javac` against the broker's own
  kafka-clients jar (`.kafka/lib`, as scripts/kafka-up.sh fetched it), sending in 256 KiB batches.

`cpus` pins the generator (taskset's list syntax, e.g. "1"): the JVM with `taskset`, the Python
thread and kafka-python's sender thread with `sched_setaffinity`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import CACHE, ROOT

Plan = list[tuple[float, float]]
Series = list[tuple[float, int]]
ID = b'"event_id":"o'
SERVICE = b'"service":"'
TS = re.compile(rb'"ts":"([^"]*)"')
JAVA_SOURCE = Path(__file__).resolve().parent / "BurstProducer.java"


def kafka_home() -> Path | None:
    """The `.kafka` folder of the broker scripts/kafka-up.sh runs: this tree's, else the main checkout's
    (a git worktree shares the jars and the running broker of the tree it was made from)."""
    candidates = [ROOT / ".kafka"]
    try:
        common = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        candidates.append((ROOT / common).resolve().parent / ".kafka")
    except (OSError, subprocess.CalledProcessError):
        pass
    return next((home for home in candidates if (home / "lib").is_dir()), None)


def broker_pid() -> int | None:
    """The local broker's process (its pid file, if it still names a running `kafka.Kafka`)."""
    home = kafka_home()
    try:
        pid = int((home / "kafka.pid").read_text()) if home else 0
        if pid and b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    except (OSError, ValueError):
        pass
    return None


def java_available() -> bool:
    return bool(shutil.which("java") and shutil.which("javac") and kafka_home())


def _parse_cpus(cpus: str) -> set[int]:
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def _ts(line: bytes) -> datetime:
    match = TS.search(line)
    if match is None:
        raise ValueError("a stream line without a ts")
    return datetime.fromisoformat(match.group(1).decode())


def cycle_shift(events: Path) -> float:
    """Seconds from the stream's first `ts` to its last, rounded up to a whole minute: how much later each
    cycle of it is dated, so that no two cycles share a minute of event time (the lines are in `ts` order)."""
    with events.open("rb") as f:
        first = f.readline()
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - 65_536))  # a line is a few KB: the last one is in the file's last 64 KiB
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    span = (_ts(last) - _ts(first)).total_seconds()
    return 60.0 * max(1, math.ceil(span / 60.0))


def shifted(line: bytes, seconds: float) -> bytes:
    """`line` with its `ts` moved `seconds` later (what BurstProducer.java does to a later cycle's records)."""
    match = TS.search(line)
    if match is None or not seconds:
        return line
    moved = (datetime.fromisoformat(match.group(1).decode()) + timedelta(seconds=seconds)).astimezone(UTC)
    return line[: match.start(1)] + moved.isoformat().replace("+00:00", "Z").encode() + line[match.end(1) :]


def _service(line: bytes) -> bytes:
    start = line.index(SERVICE) + len(SERVICE)
    return line[start:line.index(b'"', start)]


class Load:
    """A running generator: what it has sent and what the broker acknowledged, over time."""

    def __init__(self) -> None:
        self.sent: Series = []
        self.acked: Series = []
        self.done = threading.Event()
        self.error: str | None = None
        self.tasks: list[tuple[int, int | None]] = []  # for bench/cpu_share.py: its process or threads
        self._thread: threading.Thread | None = None

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self.error:
            raise RuntimeError(f"the burst's producer failed: {self.error}")


def start_load(kind: str, events: Path, topic: str, plan: Plan, keyed: bool = False, cpus: str | None = None,
               ts_shift: float = 0.0) -> Load:
    load = Load()
    target = _run_java if kind == "java" else _run_python
    load._thread = threading.Thread(target=target, args=(load, events, topic, plan, keyed, cpus, ts_shift),
                                    daemon=True)
    load._thread.start()
    return load


def _run_python(load: Load, events: Path, topic: str, plan: Plan, keyed: bool, cpus: str | None,
                ts_shift: float) -> None:
    """kafka-python's `send()` per record, paced every 50 ms, on this thread (the original generator)."""
    from bench_e2e import BOOTSTRAP

    from pipeline.config import KafkaConfig
    from pipeline.io.kafka import make_producer

    lines = events.read_bytes().splitlines()
    keys = [_service(line) if keyed else None for line in lines]
    acked = [0]

    def on_ack(_: Any) -> None:
        acked[0] += 1

    try:
        producer = make_producer(KafkaConfig(bootstrap_servers=BOOTSTRAP))
    except Exception as exc:
        load.error = repr(exc)
        load.done.set()
        return
    mine = threading.get_native_id()
    sender = getattr(getattr(producer, "_sender", None), "native_id", None)
    load.tasks = [(os.getpid(), mine)] + ([(os.getpid(), sender)] if sender else [])
    if cpus:
        for _, tid in load.tasks:
            os.sched_setaffinity(tid or 0, _parse_cpus(cpus))
    sent, tick = 0, 0.05
    try:
        for seconds, rate in plan:
            phase_start = time.time()
            phase_sent = 0
            while (now := time.time()) < phase_start + seconds:
                due = int((now - phase_start) * rate) - phase_sent
                for _ in range(max(0, due)):
                    cycle, n = divmod(sent, len(lines))
                    value = lines[n].replace(ID, b'"event_id":"b%d-' % sent, 1)
                    producer.send(topic, key=keys[n], value=shifted(value, cycle * ts_shift) if cycle else value
                                  ).add_callback(on_ack)
                    sent += 1
                    phase_sent += 1
                load.sent.append((time.time(), sent))
                load.acked.append((time.time(), acked[0]))
                time.sleep(tick)
        producer.flush(timeout=120)
        load.sent.append((time.time(), sent))
        load.acked.append((time.time(), acked[0]))
    except Exception as exc:
        load.error = repr(exc)
    finally:
        producer.close(timeout=30)
        load.done.set()


def _java_classes() -> tuple[Path, Path]:
    """BurstProducer compiled once per version of its source (under the bench cache); (classes, jars)."""
    home = kafka_home()
    if home is None:
        raise RuntimeError("no .kafka/lib: run scripts/kafka-up.sh once")
    source = JAVA_SOURCE.read_bytes()
    out = CACHE / f"burst-producer-{hashlib.sha256(source).hexdigest()[:12]}"
    if not (out / "BurstProducer.class").exists():
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(["javac", "-nowarn", "-cp", f"{home / 'lib'}/*", "-d", str(tmp), str(JAVA_SOURCE)],
                       check=True, capture_output=True)
        try:
            tmp.rename(out)
        except OSError:  # another run built it first
            shutil.rmtree(tmp, ignore_errors=True)
    return out, home / "lib"


def _run_java(load: Load, events: Path, topic: str, plan: Plan, keyed: bool, cpus: str | None,
              ts_shift: float) -> None:
    """bench/BurstProducer.java in its own JVM; its progress lines become `sent` and `acked`."""
    from bench_e2e import BOOTSTRAP

    try:
        classes, lib = _java_classes()
        command = ["java", "-Xmx1g", "-XX:+UseSerialGC", "-cp", f"{classes}:{lib}/*", "BurstProducer", BOOTSTRAP,
                   topic, str(events), "1" if keyed else "0", ",".join(f"{s:g}:{r:.3f}" for s, r in plan),
                   f"{ts_shift:g}"]
        proc = subprocess.Popen((["taskset", "-c", cpus] if cpus else []) + command, stdout=subprocess.PIPE,
                                text=True)
    except Exception as exc:
        load.error = repr(exc)
        load.done.set()
        return
    load.tasks = [(proc.pid, None)]
    assert proc.stdout is not None
    final = ""
    try:
        for line in proc.stdout:
            if line.startswith("done"):
                final = line
                continue
            at, sent, acked = line.split()
            load.sent.append((int(at) / 1000, int(sent)))
            load.acked.append((int(at) / 1000, int(acked)))
        if proc.wait() != 0 or not final:
            load.error = f"BurstProducer exited with status {proc.returncode} ({final.strip() or 'no summary'})"
    finally:
        load.done.set()
