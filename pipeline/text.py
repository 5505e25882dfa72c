"""Small text helpers every surface shares: how long, and when, in words a person reads."""

from __future__ import annotations

from datetime import datetime


def human_duration(seconds: float) -> str:
    """'3 h 12 min', '45 s', '2 d 4 h': how long, for a sentence a person reads."""
    seconds = min(abs(seconds), 10**12)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(int(minutes), 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def stamp(when: datetime) -> str:
    """An aware UTC time as RFC 3339 with `Z` ('2026-11-23T05:05:00Z'), as the verdicts' sentences print it."""
    return when.isoformat().replace("+00:00", "Z")
