"""A consumer's health as readers see it: its heartbeat and how far behind its topics it is.

Each consumer writes both into `store_meta` at every publish (`Store.beat`, `LakeStore.beat`);
the Live page reads them here. Judged from the consumer's own words, never from event times: a
current consumer on a quiet stream writes no rows, and one 400,000 records behind in an outage
still writes rows stamped seconds ago.
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
