"""Small text helpers every surface shares: how long, when, and how a count moved, in words a person reads.

One helper for each small thing: a duration in words (`human_duration`), a duration typed by
a person (`parse_duration`), a time (`stamp` for RFC 3339, `utc_text` in one of the named
`TIME_FORMATS`), a Unicode sparkline (`sparkline`), and an attack's clients (`attack_clients`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any


def human_duration(seconds: float) -> str:
    """'3 h 12 min', '45 s', '2 d 4 h': how long, for a sentence a person reads."""
    seconds = abs(seconds)  # the bound below only matters for hours and days: `min` is a third of a short call
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    seconds = min(seconds, 10**12)
    minutes = seconds / 60
    hours, minutes = divmod(int(minutes), 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`15m`, `1h`, `1h30m`, `3600` (seconds), `2d`, `1w` → a positive timedelta; ValueError otherwise."""
    cleaned = (text or "").strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration (e.g. 1h, 90m, 1h30m, 3600, 2d)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def stamp(when: datetime) -> str:
    """An aware UTC time as RFC 3339 with `Z` ('2026-11-23T05:05:00Z'), as the verdicts' sentences print it."""
    return when.isoformat().replace("+00:00", "Z")


#: The ways a time is shown, by name (always UTC; a surface says so once in its header or note).
TIME_FORMATS = {
    "minute": "%Y-%m-%d %H:%M UTC",  # triage's header, explain
    "second": "%Y-%m-%d %H:%M:%S UTC",
    "generated": "%Y-%m-%d %H:%M",  # the report's "Generated … UTC"
    "day": "%a %d %b",  # the report's days
    "day_time": "%d %b %H:%M",  # the report's table cells
    "weekday_time": "%a %H:%M",  # the demo's and triage's times off the reference day
    "clock": "%H:%M",  # triage's times on the reference day
    "dashboard": "%a %d %b %H:%M UTC",
    "dashboard_second": "%a %d %b %H:%M:%S UTC",
}


def utc_text(when: datetime | None, style: str = "minute", missing: str = "–") -> str:
    """`when` in UTC in one of `TIME_FORMATS`; `missing` for no time. A naive time is taken as UTC (the store's)."""
    if when is None:
        return missing
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime(TIME_FORMATS[style])


BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], marker: int | None = None) -> str:
    """Unicode blocks scaled to the row's peak: ▁ for an empty bucket, ▂ to █ for any event.

    `marker` puts a ┃ before that bucket (a rotation step, say).
    """
    top = max(values, default=0)
    chars = [BLOCKS[0] if not v else BLOCKS[max(1, min(7, math.ceil(7 * v / top)))] for v in values]
    if marker is not None and 0 <= marker <= len(chars):
        chars.insert(marker, "┃")
    return "".join(chars)


#: How many clients an attack's row names (by events); the rest are counted, and "no client id" always is.
ATTACK_CLIENTS_NAMED = 3


def attack_clients(named: Iterable[Mapping[str, Any]], attack: str, distinct: int) -> tuple[str, int]:
    """One attack's top named clients ("web-app (73), cli (2), +3 more") and its events without a client id.

    `named` holds `queries.attack_client_ids` rows; `distinct` is the attack's count of named clients
    (`queries.attacks`' `clients`). A count of clients alone hides the events that named none, often
    most of an attack's.
    """
    tops: list[str] = []
    missing = 0
    for row in named:
        if row["attack"] != attack:
            continue
        if row["client_id"] is None:
            missing = int(row["events"])
        else:
            tops.append(f"{row['client_id']} ({int(row['events']):,})")
    more = f", +{distinct - len(tops):,} more" if tops and distinct > len(tops) else ""
    return ", ".join(tops) + more, missing


def attack_clients_text(named: Iterable[Mapping[str, Any]], attack: str, distinct: int) -> str:
    """`attack_clients` in one cell: "web-app (73); no client id on 177"."""
    tops, missing = attack_clients(named, attack, distinct)
    return "; ".join(part for part in (tops, f"no client id on {missing:,}" if missing else "") if part) or "–"
