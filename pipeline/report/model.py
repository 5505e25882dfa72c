"""The weekly report as data: sections of typed cells, and the small formats every renderer shares.

`build` fills a `Report`; `markdown` and `html_page` render it. A cell is plain text, a `Code`
(a cause or attack code, a kid, an alg; a cause gets its registry colour), `Prose` (our own
text with `code` spans) or a `Spark` (failures around a rotation step).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.causes import Cause, cause_colour
from pipeline.errors import JwtriageError
from pipeline.text import human_duration, utc_text
from pipeline.text import parse_duration as text_parse_duration

WEEK = timedelta(days=7)
DEFAULT_MAX_TOKEN_LIFETIME = timedelta(hours=1)
DEFAULT_MAX_KEY_AGE = timedelta(days=90)
#: The rotation sparkline: from this long before a step to this long after, in buckets of this size.
SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET = timedelta(hours=2), timedelta(hours=12), timedelta(minutes=30)

_WEEK = re.compile(r"^(\d{4})-W(\d{1,2})$")


class ReportError(JwtriageError, ValueError):
    """A bad argument (week, duration); the CLI turns it into a usage error."""


def parse_week(text: str) -> tuple[datetime, datetime]:
    """`2026-W47` → [Monday 00:00 UTC, next Monday 00:00 UTC)."""
    match = _WEEK.match(text.strip())
    if not match:
        raise ReportError(f"--week {text!r}: expected an ISO week like 2026-W47")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        monday = datetime.fromisocalendar(year, week, 1).replace(tzinfo=UTC)
    except ValueError:
        raise ReportError(f"--week {text!r}: {year} has no ISO week {week}") from None
    return monday, monday + WEEK


def week_name(when: datetime) -> str:
    year, week, _ = when.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def parse_duration(text: str) -> timedelta:
    """`1h`, `90m`, `1h30m`, `3600` (seconds), `2d`, `1w` → timedelta (positive)."""
    try:
        return text_parse_duration(text)
    except ValueError as exc:
        raise ReportError(str(exc)) from None


# -- the report as data --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A cell shown as code (a cause or attack code, a kid, an alg), with a colour swatch for a cause."""

    text: str
    colour: str | None = None
    note: str = ""  # plain text after the code (a key's type)


@dataclass(frozen=True, slots=True)
class Prose:
    """Our own text (a remediation line) whose `backtick` spans are shown as code."""

    text: str


@dataclass(frozen=True, slots=True)
class Spark:
    """A cell shown as a small line: failures per bucket, with the step at `marker`."""

    values: tuple[int, ...]
    marker: int
    caption: str


Cell = str | Code | Prose | Spark


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    numeric: bool = False
    nowrap: bool = False  # names and times: never broken across lines


@dataclass
class Section:
    key: str
    title: str
    intro: str
    columns: list[Column] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    empty: str = "Nothing this week."
    notes: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # per row: a sub-table heading (one table per value)
    facts: dict[str, Any] = field(default_factory=dict)  # raw figures for the summary

    def tables(self) -> list[tuple[str, list[list[Cell]]]]:
        """The rows cut into (heading, rows) runs; one run with heading "" when the section has no groups."""
        if not self.groups:
            return [("", self.rows)]
        runs: list[tuple[str, list[list[Cell]]]] = []
        for heading, row in zip(self.groups, self.rows, strict=True):
            if not runs or runs[-1][0] != heading:
                runs.append((heading, []))
            runs[-1][1].append(row)
        return runs


@dataclass
class DayStack:
    """Events per day and cause for the stacked bar chart."""

    days: list[datetime]
    counts: dict[Cause, list[int]]


@dataclass
class Report:
    week: str
    since: datetime
    until: datetime
    generated_at: datetime
    store: str
    events: int
    previous_events: int
    summary: list[str] = field(default_factory=list)
    daily: DayStack | None = None
    sections: list[Section] = field(default_factory=list)
    no_data: str | None = None  # set for a week without events: the one thing to say


def cause_code(cause: str) -> Code:
    """A cause code as a cell, with its colour from the registry."""
    return Code(cause, cause_colour(cause))


# -- formatting helpers --------------------------------------------------------------------


def count_text(value: int | float | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def change_text(current: int, previous: int) -> str:
    if previous == 0:
        return "new" if current else "–"
    if current == 0:
        return "gone"
    return f"{(current - previous) / previous:+.0%}"


def duration_text(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    return ("−" if seconds < 0 else "") + human_duration(seconds)


def when_text(value: datetime | None) -> str:
    return utc_text(value, "day_time")


def day_text(value: datetime) -> str:
    return utc_text(value, "day")


def untrusted(text: Any, limit: int = 40) -> str:
    """A string that came from a token (alg, client id): control characters out, shortened."""
    if text is None:
        return "–"
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def seconds_between(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()
