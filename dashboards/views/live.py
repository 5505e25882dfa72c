"""Live: the newest failures, refreshed every few seconds while the consumer writes.

Each refresh opens the store read-only for a moment and closes it (no cache: a refresh
costs one small query over the last hour); nothing is held between refreshes.

Whether the consumer is running is judged from its own heartbeat (`store_meta`, written at
every publish, idle or not: `pipeline.io.store.Store.beat`), never from event times: a
consumer that is current on a quiet stream writes no rows, and it is not down.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import streamlit as st

from dashboards import charts, data, ui
from pipeline.errors import StoreError
from pipeline.io.consumer_health import ConsumerLag, RecordsLost, consumer_heartbeat, consumer_lag, records_lost

INTERVALS = {"every 5 s": 5, "every 10 s": 10, "every 30 s": 30, "every minute": 60}
WINDOWS = {"last 15 minutes": timedelta(minutes=15), "last hour": timedelta(hours=1)}
#: A consumer beats at every publish (every 5 s by default, longer while publishing is slow):
#: silent for this long, it is not running, or stuck.
SILENT_AFTER = timedelta(minutes=1)
#: A consumer further behind its topics than this (at its own pace) is said to be behind: what the page
#: shows is that much older than what the services are rejecting now.
BEHIND_AFTER = timedelta(seconds=30)
#: Records lost to the broker's retention are a warning for this long after the newest loss, then a caption:
#: the hole stays in the store's history, but is no longer news.
LOST_NEWS_FOR = timedelta(days=1)

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
    cols = st.columns(5)
    last_5 = "last 5 minutes" if ref.live else "5 minutes up to the newest event"
    cols[0].metric(f"Failures, {last_5}", f"{live.last_5_min:,}")
    cols[1].metric("Failures per minute", f"{live.last_5_min / 5:,.1f}", help=f"Over the {last_5}.")
    cols[2].metric("Newest event", f"{ui.fmt_seconds((now - newest).total_seconds())} ago")
    beat, lag, lost = consumer_word(path)
    seen = beat if beat is not None else written
    cols[3].metric("Last word from the consumer", f"{ui.fmt_seconds((now - seen).total_seconds())} ago",
                   help="Its heartbeat, written at every publish, idle or not (or, for a store without one, "
                   "its last row).")
    cols[4].metric("Behind its topics", "–" if lag is None else f"{lag.records:,} records",
                   help="Records in the consumer group's topics not read yet, as a consumer measured "
                   + ("(none has measured yet)." if lag is None else
                      f"{ui.fmt_seconds((now - lag.measured_at).total_seconds())} ago, at its pace of "
                      f"{lag.events_per_second:,.0f} events/s."))
    kind, text = health(path, now, beat, ref.live, newest, window)
    behind = falling_behind(lag, now, beat)
    if behind:
        st.warning(behind, icon=":material/speed:")
    if lost is not None:
        if now - lost.noted_at <= LOST_NEWS_FOR:
            st.warning(lost_words(lost, now), icon=":material/delete_sweep:")
        else:
            st.caption(lost_words(lost, now))
    if kind == "running":
        st.caption(text)
    elif kind == "silent":
        st.warning(text, icon=":material/warning:")
    else:
        st.info(text, icon=":material/bedtime:")

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


def consumer_word(path: str) -> tuple[datetime | None, ConsumerLag | None, RecordsLost | None]:
    """The consumers' newest heartbeat, lag and loss notes in the published store (None: no consumer wrote one)."""
    try:
        with data.reading(path) as con:
            return consumer_heartbeat(con), consumer_lag(con), records_lost(con)
    except (StoreError, duckdb.Error):
        return None, None, None


def lost_words(lost: RecordsLost, now: datetime) -> str:
    """One line on records the broker deleted before the consumer read them: the picture has a hole."""
    ago = ui.fmt_seconds(max(0.0, (now - lost.noted_at).total_seconds()))
    return (f"{lost.records:,} records lost to broker retention: the broker deleted them before jwtriage read them, "
            f"so no verdict here counts them (the latest: {lost.last - lost.first + 1:,} records of "
            f"{lost.topic}[{lost.partition}], offsets {lost.first:,}–{lost.last:,}, noticed {ago} ago). "
            "The topic's retention is shorter than the consumer's lag: raise retention.ms/bytes or add consumers.")


def falling_behind(lag: ConsumerLag | None, now: datetime, beat: datetime | None) -> str | None:
    """One line when the consumer is running but far behind its topics (an outage's burst), else None.

    Its heartbeat says it runs and its newest rows are seconds old, yet they may be the backlog's
    oldest: without this the page looks current while it shows the world of minutes ago.
    """
    if lag is None or beat is None or now - beat > SILENT_AFTER or lag.records == 0:
        return None
    pace = lag.events_per_second
    catch_up = lag.records / pace if pace > 0 else None
    if catch_up is not None and catch_up < BEHIND_AFTER.total_seconds():
        return None
    measured = ui.fmt_seconds((now - lag.measured_at).total_seconds())
    eta = (f"about {ui.fmt_seconds(catch_up)} to catch up at its pace of {pace:,.0f} events/s"
           if catch_up is not None else "it read nothing in the interval before")
    return (f"The consumer is {lag.records:,} records behind its topics (measured {measured} ago): {eta}. "
            "The failures below are older than what the services are rejecting now.")


def health(
    path: str, now: datetime, beat: datetime | None, live: bool, newest: datetime, window: str
) -> tuple[str, str]:
    """(running | quiet | silent | no_consumer, one line): the consumer's health from its heartbeat.

    The events' times only say whether traffic flows, never whether the consumer runs.
    """
    quiet = f"no event in the last {ui.fmt_seconds(data.LIVE_WITHIN.total_seconds())}"
    data_note = "" if live else f" Showing the {window} of data up to {ui.fmt_ts(newest, seconds=True)}."
    if beat is None:
        traffic = "events are recent" if live else quiet
        return "no_consumer", (f"No consumer has written this store (a demo or a backfill?): {traffic}.{data_note} "
                               f"Start one with `jwtriage consume --db {path}`.")
    ago = ui.fmt_seconds((now - beat).total_seconds())
    if now - beat > SILENT_AFTER:
        return "silent", (f"The consumer has not been heard from for {ago}: it is not running, or stuck "
                          f"(start it with `jwtriage consume --db {path}`; check its logs).{data_note}")
    if live:
        return "running", f"The consumer is running (last heard {ago} ago). Refreshed {ui.fmt_ts(now, seconds=True)}."
    running = f"The consumer is running and current (last heard {ago} ago)"
    return "quiet", f"{running}; {quiet}: the stream is quiet.{data_note}"


live_view()
