"""Simulated scenarios, built once per session, and what a correct store must hold after them."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from pipeline.config import KafkaConfig
from pipeline.simulator import Scenario, simulate

_CACHE: dict[tuple[int, int], Scenario] = {}


def scenario(events: int, seed: int) -> Scenario:
    """`simulate(seed, events)` over 24 h, computed once per session (100k events take ~15 s)."""
    if (events, seed) not in _CACHE:
        _CACHE[(events, seed)] = simulate(seed=seed, events=events, hours=24)
    return _CACHE[(events, seed)]


@dataclass(frozen=True)
class Tagged:
    """One record to produce, and the events line (index into `scenario.truth`) it carries, if any."""

    topic: str
    key: str | None
    value: bytes
    line: int | None


def tagged_records(sc: Scenario, kafka: KafkaConfig) -> list[Tagged]:
    """The scenario's three streams merged in production order (as `pipeline.io.kafka.scenario_records`)."""
    streams = (
        ((r.ts, 0, n, kafka.jwks_topic, r.key, r.value, None) for n, r in enumerate(sc.snapshots)),
        ((r.ts, 1, n, kafka.samples_topic, None, r.value, None) for n, r in enumerate(sc.samples)),
        ((r.ts, 2, n, kafka.failures_topic, r.key, r.value, n) for n, r in enumerate(sc.events)),
    )
    merged = heapq.merge(*streams, key=lambda item: item[0])
    return [Tagged(topic, key, value, line) for _, _, _, topic, key, value, line in merged]


@dataclass(frozen=True)
class Expected:
    """What the store must hold: each good event once with its true cause, and the bad lines as dead letters."""

    causes: dict[str, str]
    dead_letters: int

    @classmethod
    def of(cls, sc: Scenario, lines: Any = None) -> Expected:
        rows = sc.truth if lines is None else [sc.truth[n] for n in lines]
        causes = {t["event_id"]: t["cause"] for t in rows if not t.get("dead_letter")}
        return cls(causes, sum(1 for t in rows if t.get("dead_letter")))


@dataclass(frozen=True)
class StoreCheck:
    rows: int
    distinct: int
    missing: int
    extra: int
    dead_letters: int
    distinct_dead_letters: int
    agreement: float

    def problems(self, expected: Expected) -> list[str]:
        found = []
        if self.missing or self.extra:
            found.append(f"missing {self.missing:,} events, {self.extra:,} unexpected")
        if self.rows != self.distinct:
            found.append(f"{self.rows - self.distinct:,} duplicate rows")
        if self.rows != len(expected.causes):
            found.append(f"{self.rows:,} rows for {len(expected.causes):,} events")
        if self.dead_letters != expected.dead_letters or self.distinct_dead_letters != self.dead_letters:
            found.append(f"{self.dead_letters:,} dead letters for {expected.dead_letters:,} bad lines")
        return found


def check_store(run: Any, expected: Expected) -> StoreCheck:
    """Compare the store (as every reader sees it) with the truth."""
    stored = dict(run.query("SELECT event_id, cause FROM classifications"))
    (rows, distinct), = run.query("SELECT count(*), count(DISTINCT event_id) FROM classifications")
    (letters, distinct_letters), = run.query(
        "SELECT count(*), count(DISTINCT (source, source_partition, source_offset)) FROM dead_letters"
    )
    truth = expected.causes
    agree = sum(1 for event_id, cause in truth.items() if stored.get(event_id) == cause)
    return StoreCheck(
        rows=rows,
        distinct=distinct,
        missing=len(truth.keys() - stored.keys()),
        extra=len(stored.keys() - truth.keys()),
        dead_letters=letters,
        distinct_dead_letters=distinct_letters,
        agreement=agree / max(1, len(truth)),
    )


def assert_exactly_once(run: Any, expected: Expected, min_agreement: float = 0.99) -> StoreCheck:
    check = check_store(run, expected)
    problems = check.problems(expected)
    assert not problems, f"the store does not hold every event exactly once: {'; '.join(problems)} ({check})"
    assert check.agreement >= min_agreement, f"only {check.agreement:.2%} of causes agree with the truth"
    return check
