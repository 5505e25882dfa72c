"""Where a benchmark's consumer spends its wall time, by sampling its main thread's stack (no py-spy here).

    JWTRIAGE_BENCH_SAMPLE=/tmp/s python bench/bench_outage.py --cases burst ...   # the worker samples itself
    python bench/stack_sampler.py /tmp/s/stacks-c0-*.json [--from EPOCH] [--to EPOCH] [--top 30]

A daemon thread reads `sys._current_frames()` every `period` seconds and keeps (time, stack) for
the thread it watches: a profile that, unlike cProfile, adds no cost to each call, so the watched
thread runs at about its own pace (the bench worker samples every 10 ms: the GIL taken ~100 times a
second for a few µs). A sample counts wall time, waits included. The report gives, for a window of
time (say a burst's drain), each function's share of it: its own (the leaf) and with what it called.
It also keeps every other thread's stacks (`--thread NAME`) and each thread's CPU once a second.

Bias: the sampler runs when it gets the GIL, which is most often when the watched thread releases it
(a lock wait, a socket), so a thread busy in code that holds the GIL shows up as its next wait. A
thread's real busy time is its `/proc/<pid>/task/<tid>/stat` ticks (bench/results.md, the burst's drain).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType


def _frame_name(frame: FrameType) -> str:
    code = frame.f_code
    parts = Path(code.co_filename).parts
    where = "/".join(parts[-2:])
    return f"{code.co_name} ({where}:{code.co_firstlineno})"


class StackSampler:
    """Samples one thread's stack every `period` seconds until stopped."""

    def __init__(self, thread_id: int, period: float = 0.002) -> None:
        self._target = thread_id
        self._period = period
        self._stop = threading.Event()
        self.stacks: dict[tuple[str, ...], int] = {}  # each distinct stack once (a long run repeats them)
        self.samples: list[tuple[float, int]] = []  # (time, index into the stacks) of the watched thread
        self.others: dict[str, list[tuple[float, int]]] = {}  # the same for every other thread, by its name
        self.cpu: list[tuple[float, dict[str, float]]] = []  # (time, each thread's CPU seconds so far)
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        names: dict[object, str] = {}  # code object -> its name, computed once
        next_cpu = 0.0
        while not self._stop.wait(self._period):
            now = time.time()
            threads = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
            for ident, top in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue  # the sampler itself
                stack: list[str] = []
                frame: FrameType | None = top
                while frame is not None:
                    code = frame.f_code
                    name = names.get(code)
                    if name is None:
                        name = names[code] = _frame_name(frame)
                    stack.append(name)
                    frame = frame.f_back
                index = self.stacks.setdefault(tuple(stack), len(self.stacks))  # leaf first
                if ident == self._target:
                    self.samples.append((now, index))
                else:
                    self.others.setdefault(threads.get(ident, str(ident)), []).append((now, index))
            if now >= next_cpu:  # each thread's CPU seconds so far, once a second
                next_cpu = now + 1.0
                self.cpu.append((now, {name: _thread_cpu(ident) for ident, name in threads.items()}))

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({"period": self._period, "stacks": list(self.stacks), "samples": self.samples,
                                    "others": self.others, "cpu": self.cpu}))


def _thread_cpu(ident: int) -> float:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ValueError):  # the thread ended between the listing and the read
        return 0.0


def report(paths: list[Path], start: float = 0.0, end: float = float("inf"), top: int = 30,
           thread: str | None = None) -> str:
    """Each function's share of the time in [start, end]: leaf (own) and inclusive.

    A sample stands for the time since the one before (at most 5 periods): the sampler waits for
    the GIL while the watched thread runs Python and gets it at once while it is inside C (DuckDB,
    a socket), so counting samples alone would over-weigh the C calls.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total, count = 0.0, 0
    for path in paths:
        data = json.loads(path.read_text())
        period, previous = data["period"], None
        samples = data["samples"] if thread is None else data.get("others", {}).get(thread, [])
        for at, index in samples:
            weight = min(at - previous, 5 * period) if previous is not None else period
            previous = at
            stack = data["stacks"][index]
            if not start <= at <= end or not stack:
                continue
            total += weight
            count += 1
            own[stack[0]] += weight
            for name in set(stack):
                inclusive[name] += weight
    if not count:
        return "no samples in the window"
    lines = [f"{count:,} samples over {total:,.1f} s of {thread or 'the watched thread'}"]
    for path in paths:
        lines += thread_cpu(json.loads(path.read_text()).get("cpu", []), start, end)
    lines.append("own (leaf):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive (with what it called):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def thread_cpu(readings: list[tuple[float, dict[str, float]]], start: float, end: float) -> list[str]:
    """Each thread's CPU in the window, in cores (from the first to the last reading inside it)."""
    inside = [(at, cpu) for at, cpu in readings if start <= at <= end]
    if len(inside) < 2:
        return []
    (first_at, first), (last_at, last) = inside[0], inside[-1]
    used = {name: last[name] - first.get(name, 0.0) for name in last}
    return [f"  CPU {cores / (last_at - first_at):5.2f} cores  thread {name}"
            for name, cores in sorted(used.items(), key=lambda item: -item[1]) if cores > 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+")
    parser.add_argument("--from", dest="start", type=float, default=0.0, help="epoch seconds")
    parser.add_argument("--to", dest="end", type=float, default=float("inf"), help="epoch seconds")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--thread", help="another thread's stacks, by its name (e.g. kafka-io-…)")
    args = parser.parse_args(argv)
    print(report(args.paths, args.start, args.end, args.top, args.thread))
    return 0


if __name__ == "__main__":
    sys.exit(main())
