"""Live: the newest failures, refreshed every few seconds while the consumer writes.

Each refresh opens the store read-only for a moment and closes it (no cache: a refresh
costs one small query over the last hour); nothing is held between refreshes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import streamlit as st

from dashboards import charts, data, ui
from pipeline.errors import StoreError

INTERVALS = {"every 5 s": 5, "every 10 s": 10, "every 30 s": 30, "every minute": 60}
WINDOWS = {"last 15 minutes": timedelta(minutes=15), "last hour": timedelta(hours=1)}

st.title("Live")
with st.sidebar:
    st.subheader("Refresh")
    auto = st.toggle("Refresh automatically", value=True, key="live_auto")
    every = st.selectbox("How often", list(INTERVALS), index=1, key="live_every", disabled=not auto)
    window = st.selectbox("Show", list(WINDOWS), index=1, key="live_window")

interval = INTERVALS[every]


@st.fragment(run_every=interval if auto else None)
def live_view() -> None:
    with data.one_connection_per_run():  # a timed refresh runs only this function: one connection for it
        refresh()


def refresh() -> None:
    path = ui.store_path()
    now = datetime.now(UTC)
    status = data.load_status(path)
    if not status.ok:
        ui.show_store_problem(status)
        if auto:
            st.caption(f"Checking again {every} (last check {ui.fmt_ts(now, seconds=True)}).")
        return
    try:
        live = data.load_live(path, now, WINDOWS[window])
    except (StoreError, duckdb.Error) as exc:
        st.warning(f"The store is busy, retrying {every}: {exc}", icon=":material/hourglass_top:")
        return
    summary = live.summary
    newest, written = summary["last_ts"], summary["last_classified_at"]
    ref = data.reference_time(newest, now)
    cols = st.columns(4)
    last_5 = "last 5 minutes" if ref.live else "5 minutes up to the newest event"
    cols[0].metric(f"Failures, {last_5}", f"{live.last_5_min:,}")
    cols[1].metric("Failures per minute", f"{live.last_5_min / 5:,.1f}", help=f"Over the {last_5}.")
    cols[2].metric("Newest event", f"{ui.fmt_seconds((now - newest).total_seconds())} ago")
    cols[3].metric("Last write by the consumer", f"{ui.fmt_seconds((now - written).total_seconds())} ago")
    if ref.live:
        st.caption(f"A consumer is writing. Refreshed {ui.fmt_ts(now, seconds=True)}.")
    else:
        st.info(
            f"No event in the last {ui.fmt_seconds(data.LIVE_WITHIN.total_seconds())}: the consumer is idle or not "
            f"running (start it with `jwtriage consume --db {path}`). Showing the {window} of data up to "
            f"{ui.fmt_ts(newest, seconds=True)}.",
            icon=":material/bedtime:",
        )

    st.subheader(f"Failures per minute, {window}")
    if live.series.empty:
        st.info("No failures in this window.")
    else:
        st.altair_chart(charts.live_chart(live.series, live.since, live.until), width="stretch")

    st.subheader("Newest events")
    recent = live.recent.assign(
        time=live.recent["ts"].map(lambda t: ui.fmt_ts(t, seconds=True)),
        meaning=live.recent["cause"].map(ui.cause_label),
    )
    st.dataframe(
        recent[["time", "service", "cause", "meaning", "detail", "client_id", "kid", "token_fp"]],
        hide_index=True,
        column_config={"detail": st.column_config.TextColumn(width="large")},
    )
    if not live.positions.empty:
        with st.expander("Consumer positions"):
            positions = live.positions.assign(updated=live.positions["updated_at"].map(ui.fmt_ts))
            st.dataframe(positions[["source", "source_partition", "next_offset", "updated"]], hide_index=True)


live_view()
