"""A consumer's health as readers see it: its heartbeat, how far behind its topics it is, and what it lost.

Each consumer writes them into `store_meta` at every publish (`Store.beat`, `LakeStore.beat`);
the Live page reads them here. Judged from the consumer's own words, never from event times: a
current consumer on a quiet stream writes no rows, and one 400,000 records behind in an outage
still writes rows stamped seconds ago. Records the broker deleted before a consumer read them
(`kafka_gaps`) are a hole in every picture drawn from the store, so the count stays noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

#: `store_meta` key prefix of each consumer's heartbeat (`Store.beat`; read by `consumer_heartbeat`).
HEARTBEAT_KEY = "heartbeat:"


def consumer_heartbeat(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When a consumer of this store last said it was alive (the newest heartbeat over all parts), or None."""
    row = con.execute("SELECT max(value) FROM store_meta WHERE starts_with(key, ?)", [HEARTBEAT_KEY]).fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


#: `store_meta` key prefix of each consumer's latest lag measurement (`Store.note_lag`; read by `consumer_lag`).
LAG_KEY = "lag:"


@dataclass(frozen=True)
class ConsumerLag:
    """What a consumer last measured: records of its topics not read yet (its whole group's), and its pace."""

    measured_at: datetime
    records: int
    events_per_second: float


def lag_value(lag: ConsumerLag) -> str:
    """`store_meta`'s text for a lag note: the time first, so the newest note is the greatest string."""
    when = lag.measured_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return f"{when}|{lag.records}|{lag.events_per_second:.1f}"


def consumer_lag(con: duckdb.DuckDBPyConnection) -> ConsumerLag | None:
    """The newest lag any consumer of this store noted (each measures its whole group), or None."""
    row = con.execute("SELECT max(value) FROM store_meta WHERE starts_with(key, ?)", [LAG_KEY]).fetchone()
    if not row or not row[0]:
        return None
    try:
        when, records, rate = str(row[0]).split("|")
        return ConsumerLag(datetime.fromisoformat(when), int(records), float(rate))
    except ValueError:
        return None


#: `store_meta` key prefix of a consumer's records lost to the broker's retention, one key per consumer and
#: partition (`Store.note_lost`; read by `records_lost`): `lost:<instance>:<topic>:<partition>`.
LOST_KEY = "lost:"


@dataclass(frozen=True)
class RecordsLost:
    """Records the broker deleted before a consumer read them: how many in all, and the newest hole.

    `records` counts every hole since the store began (a consumer adds to its own note across
    restarts); `first`..`last` are the newest hole's offsets, in `topic`[`partition`].
    """

    noted_at: datetime
    records: int
    topic: str
    partition: int
    first: int
    last: int


def lost_prefix(instance: str) -> str:
    """The start of every loss note's key of one consumer."""
    return f"{LOST_KEY}{instance}:"


def lost_key(instance: str, topic: str, partition: int) -> str:
    return f"{lost_prefix(instance)}{topic}:{partition}"


def lost_value(lost: RecordsLost) -> str:
    """`store_meta`'s text for a loss note: the time first, so the newest note is the greatest string."""
    when = lost.noted_at.astimezone(UTC).isoformat(timespec="milliseconds")
    return f"{when}|{lost.records}|{lost.topic}|{lost.partition}|{lost.first}|{lost.last}"


def parse_lost(value: str) -> RecordsLost | None:
    try:
        when, records, topic, partition, first, last = value.split("|")
        return RecordsLost(datetime.fromisoformat(when), int(records), topic, int(partition), int(first), int(last))
    except ValueError:
        return None


def records_lost(con: duckdb.DuckDBPyConnection) -> RecordsLost | None:
    """Records lost to the broker's retention by this store's consumers, with the newest hole; None when none were.

    Per partition, the largest count any consumer noted: every consumer reads every partition of the
    samples and keys topics (and sees the same loss), while a group's partition is read by one member
    at a time. A partition that lost records under two members is undercounted, never double counted.
    """
    rows = con.execute("SELECT value FROM store_meta WHERE starts_with(key, ?)", [LOST_KEY]).fetchall()
    notes = [lost for (value,) in rows if (lost := parse_lost(str(value))) is not None]
    if not notes:
        return None
    per_partition: dict[tuple[str, int], int] = {}
    for note in notes:
        key = (note.topic, note.partition)
        per_partition[key] = max(per_partition.get(key, 0), note.records)
    newest = max(notes, key=lambda note: note.noted_at)
    return RecordsLost(newest.noted_at, sum(per_partition.values()), newest.topic, newest.partition,
                       newest.first, newest.last)
