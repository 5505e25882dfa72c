"""The pages' note when a window reaches before the raw rows (issue 21): counts come from hourly rollups,
and per-event views say their detail expired instead of showing nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from dashboards import data
from pipeline import queries

#: How long a page reuses the store's coverage (it moves once an hour, when the writer rolls one up).
COVERAGE_TTL = 60


def load_coverage(path: str | Path) -> queries.Coverage:
    """`store_coverage` of the store; `Coverage()` (everything raw) for a store without rollups."""
    with data.reading(path) as con:
        return queries.coverage(con)


cached_coverage = st.cache_data(ttl=COVERAGE_TTL, show_spinner=False)(load_coverage)


def note(coverage: queries.Coverage, since: datetime | None, per_event: bool = False) -> str | None:
    """The caption for a window starting at `since`, or None when its raw rows are all there."""
    expired = coverage.expired_before(since)
    if expired is None:
        return None
    text = queries.expired_text(expired, per_event)
    return f"{text[0].upper()}{text[1:]}."


def show(path: str, since: datetime | None, per_event: bool = False) -> None:
    """A caption under the page's window when part of it has no raw rows left (nothing otherwise)."""
    text = note(cached_coverage(path), since, per_event)
    if text:
        st.caption(text)
