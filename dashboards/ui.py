"""What the pages share: the store guard, the reference time, cause labels and colours, formats."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import duckdb
import pandas as pd
import streamlit as st

from dashboards import data
from pipeline import causes
from pipeline.errors import StoreError
from pipeline.text import human_duration, utc_text

T = TypeVar("T")

#: Stacking and legend order, and one colour per cause: the registry's (the report uses the same palette).
CAUSE_ORDER: tuple[str, ...] = causes.CAUSE_ORDER
CAUSE_COLORS: dict[str, str] = {cause.value: colour for cause, colour in causes.CAUSE_COLOURS.items()}
ACTION_COLORS = {"added": "#137333", "removed": "#202124"}
VERDICT_ORDER = ("still failing", "recovered", "never affected")


cause_label = causes.cause_label
cause_rank = causes.cause_rank
remediation = causes.remediation
attack_advice = causes.attack_advice


def cause_name(code: str) -> str:
    """The code with its label beside it: "stale_jwks · Stale JWKS cache"."""
    return f"{code} · {cause_label(code)}"


def fmt_ts(value: Any, seconds: bool = False) -> str:
    """ "Mon 23 Nov 04:48 UTC"; a dash for a missing time."""
    if value is None or (not isinstance(value, datetime) and pd.isna(value)):
        return "–"
    return utc_text(pd.Timestamp(value).to_pydatetime(), "dashboard_second" if seconds else "dashboard")


def fmt_seconds(value: Any) -> str:
    """A duration in seconds as "3 h 12 min"; a dash when unknown."""
    if value is None or pd.isna(value):
        return "–"
    return human_duration(float(value))


def code(value: Any) -> str:
    """`value` as inline code for st.markdown, whatever characters it holds (a kid can hold backticks)."""
    text = "(none)" if value is None else str(value).replace("`", "ˋ").replace("\n", " ")
    return f"`{text}`"


def issuer_host(url: Any) -> str:
    """ "login.acme.test" for "https://login.acme.test"."""
    if not isinstance(url, str):
        return "–"
    return url.split("://", 1)[-1].rstrip("/")


def store_path() -> str:
    """The store this session shows (set by app.py from --db / JWTRIAGE_DB, read once per run)."""
    return str(st.session_state.get("store_path", data.DEFAULT_DB))


def require_store() -> data.StoreStatus:
    """The store's status; when there is nothing to show, a friendly message and the page stops here."""
    status = data.cached_status(store_path())
    if status.ok:
        return status
    show_store_problem(status)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def load(loader: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A page's data; when the store cannot be read right now, a warning instead of a traceback, and the page stops."""
    try:
        return loader(*args, **kwargs)
    except (StoreError, duckdb.Error) as exc:
        st.warning(
            f"Cannot read the store right now ({exc}). It is probably busy with its writer; reload in a moment.",
            icon=":material/hourglass_top:",
        )
        st.stop()
        raise AssertionError("unreachable") from exc


def show_store_problem(status: data.StoreStatus) -> None:
    if status.state == "missing":
        st.info(f"**No store yet.** {status.message}", icon=":material/inbox:")
    elif status.state == "empty":
        st.info(f"**Nothing to show yet.** {status.message}", icon=":material/inbox:")
    else:
        st.warning(status.message, icon=":material/warning:")
    st.code(f"jwtriage demo --db {status.path}\njwtriage dashboard --db {status.path}", language="bash")


def reference(status: data.StoreStatus) -> data.Reference:
    assert status.last_ts is not None
    return data.reference_time(status.last_ts, datetime.now(UTC))


def reference_note(ref: data.Reference) -> str:
    if ref.live:
        return f"Times are relative to now, {fmt_ts(ref.at, seconds=True)} (a consumer is writing)."
    return (
        f"Times are relative to the newest event in the store, {fmt_ts(ref.at, seconds=True)}: nothing newer has "
        "arrived, so “last hour” means the last hour of data."
    )


def delta(current: int, previous: int, covered: bool) -> str | None:
    """The change against the previous period, for st.metric; None when that period has no data."""
    if not covered:
        return None
    if previous == 0:
        return f"+{current:,} (none before)" if current else "0"
    change = (current - previous) / previous
    return f"{current - previous:+,} ({change:+.0%})"


def fmt_duration_td(value: timedelta) -> str:
    return human_duration(value.total_seconds())


def relative(when: Any, origin: datetime) -> str:
    """ "+2 h 5 min" after `origin`, "−40 min" before it; a dash for a missing time."""
    if when is None or pd.isna(when):
        return "–"
    seconds = (pd.Timestamp(when) - pd.Timestamp(origin)).total_seconds()
    return f"{'−' if seconds < 0 else '+'}{human_duration(seconds)}"


def table_height(rows: int, most: int = 20) -> int:
    """A data frame's height in pixels that shows `rows` rows (up to `most`) without an inner scroll bar."""
    return 38 + 35 * max(1, min(rows, most))


def counts(*columns: str) -> dict[str, Any]:
    """column_config that shows these columns as counts with thousands separators."""
    return {c: st.column_config.NumberColumn(format="localized") for c in columns}


def options(available: tuple[str, ...], key: str) -> list[str]:
    """A multiselect's options: what is available plus what the widget already holds (so a choice never vanishes)."""
    chosen = st.session_state.get(key) or []
    return sorted(set(available) | set(chosen))
