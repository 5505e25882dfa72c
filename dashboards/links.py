"""The view in the URL: every page's filters read from and written to the query string.

A URL pasted into an incident channel opens the same view: `/triage?window=1h&until=2026-11-23T14:00Z`.
A page seeds each widget from its query parameter (`seed`, before the widget is drawn, on the
session's first run of the page) and writes the widget's value back after it (`keep`); a value
equal to the default leaves the URL. The backend writes the URL (not Streamlit's `bind=`), so the
written string is ours (`7d`, an RFC 3339 time, a rotation's `action:kid`) and AppTest sees it.

A parameter that does not parse, or names an option the page no longer offers, is ignored:
the widget falls back to its default, and the next `keep` writes the URL that matches the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from pipeline.text import parse_duration, stamp


def seed(key: str, default: Any, parse: Callable[[list[str]], Any] | None = None) -> None:
    """Put the URL's value for `key` (else `default`) in the widget's state, unless the widget already holds one.

    `parse` gets every value of the parameter (a multiselect repeats it) and raises ValueError
    (or KeyError) for one it does not accept; without `parse`, the last value as a string.
    """
    if key in st.session_state:
        return
    raw = st.query_params.get_all(key)
    value = default
    if raw:
        try:
            value = parse(raw) if parse else raw[-1]
        except (ValueError, KeyError):
            value = default
    st.session_state[key] = value


def keep(key: str, default: Any, dump: Callable[[Any], str | list[str]] = str) -> None:
    """Write the widget's value to the URL (a list as a repeated parameter); the default leaves the URL."""
    value = st.session_state.get(key)
    if value is None or value == default or (isinstance(value, list | tuple) and not value):
        if key in st.query_params:
            del st.query_params[key]
        return
    text = dump(value)
    if st.query_params.get_all(key) != ([text] if isinstance(text, str) else list(text)):
        st.query_params[key] = text


def drop(*keys: str) -> None:
    """Take the parameters of widgets the page does not draw this time out of the URL (a custom range's times)."""
    for key in keys:
        if key in st.query_params:
            del st.query_params[key]


def url_values(key: str) -> list[str]:
    """What the URL holds for `key`, for a filter's options (a pasted value stays offered before it is seeded)."""
    return list(st.query_params.get_all(key))


# -- parsers and writers ---------------------------------------------------------------------


def one_of(options: Sequence[Any], name: Callable[[Any], str] = str) -> Callable[[list[str]], Any]:
    """A choice among `options`, written as `name(option)`; KeyError for anything else."""

    def parse(raw: list[str]) -> Any:
        return {name(option): option for option in options}[raw[-1]]

    return parse


def many(raw: list[str]) -> list[str]:
    """A multiselect's values, in order, each once."""
    return list(dict.fromkeys(v for v in raw if v))


def duration_code(value: timedelta) -> str:
    """`15m`, `1h`, `24h`, `7d`: a window length as the URL (and `triage --window`) writes it (days from a week)."""
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0 and seconds >= 7 * 86400:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(options: Sequence[timedelta]) -> Callable[[list[str]], timedelta]:
    """A window length from the URL (`1h`, `90m`), one of `options`."""

    def parse(raw: list[str]) -> timedelta:
        value = parse_duration(raw[-1])
        if value not in options:
            raise ValueError(raw[-1])
        return value

    return parse


def time_code(value: datetime) -> str:
    """An RFC 3339 UTC time to the minute (`2026-11-23T14:00Z`); a naive widget value is UTC."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = stamp(aware.replace(microsecond=0))
    return text.replace(":00Z", "Z") if aware.second == 0 else text


def naive_utc(raw: list[str]) -> datetime:
    """A time from the URL as the naive UTC value Streamlit's time widgets hold; no offset is taken as UTC."""
    value = datetime.fromisoformat(raw[-1].strip())
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
