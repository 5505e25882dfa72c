"""The simulator's clock: integer epoch milliseconds inside, RFC 3339 on the wire.

Integers, because float seconds make edge cases (an exp exactly at a leeway boundary) depend
on rounding; every time the simulator plans, compares or judges is an `int` of ms.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

#: The default start: a fixed instant, so a seed alone fixes every byte of the output.
DEFAULT_START = datetime(2026, 11, 23, tzinfo=UTC)

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def dt(millis: int) -> datetime:
    return EPOCH + timedelta(milliseconds=millis)


def iso(millis: int, offset_min: int = 0) -> str:
    """RFC 3339 with milliseconds, in the writer's own offset (UTC as `Z`)."""
    when = dt(millis)
    if offset_min:
        when = when.astimezone(timezone(timedelta(minutes=offset_min)))
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
