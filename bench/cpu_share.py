"""Where the machine's cores go during a benchmark: CPU seconds of named processes (and threads), sampled.

    sampler = CpuSampler(roles)    # roles() -> {"consumer": [(pid, None)], "producer": [(pid, tid)], ...}
    sampler.start(); ...; sampler.stop()
    sampler.cores(start, end)      # {"consumer": 0.93, ..., "machine": 1.98, "other": 0.05}

A benchmark that produces, brokers and consumes on the same 2 cores measures whichever of them
starves the others: this says how much each took, from `/proc/<pid>/stat` (and
`/proc/<pid>/task/<tid>/stat` for a thread) and `/proc/stat` for the whole machine, once a second.
"other" is the machine's busy time that no named role accounts for (other people's work, the kernel).
Linux only; elsewhere every figure is 0.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: A process (pid, None) or one thread of it (pid, tid).
Task = tuple[int, int | None]
Roles = Callable[[], dict[str, list[Task]]]


def task_cpu(pid: int, tid: int | None = None) -> float | None:
    """User + system CPU seconds of a process or thread so far; None once it is gone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        return stat_cpu(Path(path).read_text())
    except OSError:
        return None


def stat_cpu(text: str) -> float:
    """User + system CPU seconds from a `/proc/.../stat` line."""
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (every core; idle and iowait left out)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


def children(pid: int, marker: str) -> list[int]:
    """Processes whose parent is `pid` and whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[1]) != pid:
                continue
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


class CpuSampler:
    """Samples every role's CPU seconds once a `period`; a role's tasks may come and go."""

    def __init__(self, roles: Roles, period: float = 1.0, read: Callable[[int, int | None], float | None] = task_cpu,
                 busy: Callable[[], float] = machine_busy) -> None:
        self._roles = roles
        self._period = period
        self._read, self._busy = read, busy
        self._last: dict[tuple[str, Task], float] = {}  # a task that exited keeps its last reading
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._sample()

    def _sample(self) -> None:
        for role, tasks in self._roles().items():
            for task in tasks:
                seconds = self._read(*task)
                if seconds is not None:
                    self._last[(role, task)] = seconds
        totals: dict[str, float] = {}
        for (role, _), seconds in self._last.items():
            totals[role] = totals.get(role, 0.0) + seconds
        totals["machine"] = self._busy()
        self.samples.append((time.time(), totals))

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Average cores each role used between two instants (the samples nearest inside them)."""
        inside = [(t, totals) for t, totals in self.samples if start <= t <= end]
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        used = {role: (last.get(role, 0.0) - first.get(role, 0.0)) / (t1 - t0) for role in last}
        used["other"] = used["machine"] - sum(v for role, v in used.items() if role != "machine")
        return used
