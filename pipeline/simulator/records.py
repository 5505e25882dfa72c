"""What the simulator hands out: one `Record` per message, a `Scenario` per simulated window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """One message of one stream, as a producer would send it.

    `key` is the Kafka key: the service for events (so each service keeps its order), the
    issuer URL for snapshots, None for samples. `value` is one JSON line without newline,
    or deliberately bad bytes. `ts` is when it would be produced, to interleave streams.
    """

    key: str | None
    value: bytes
    ts: datetime


@dataclass(frozen=True)
class Scenario:
    """Everything one simulated window produces, plus the ground truth for the events.

    `truth` has one row per events line: `line` (1-based), `event_id`, `cause`,
    `attacks`, `confidence`, `dead_letter` (the reason for a line that is not a valid
    event, else None) and `scenario` (a short label of what happened).
    """

    config_toml: str
    snapshots: list[Record]
    events: list[Record]
    samples: list[Record]
    truth: list[dict[str, Any]]
