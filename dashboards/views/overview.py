"""Overview: failures over time stacked by cause, key rotations marked, totals against the previous period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from dashboards import charts, coverage, data, links, ui
from pipeline.causes import ROTATION_DAMAGE

#: time range → its length (None: all data, or the custom slider) and its code in the URL (`?range=6h`)
RANGES: dict[str, tuple[timedelta | None, str]] = {
    "Last hour": (timedelta(hours=1), "1h"),
    "Last 6 hours": (timedelta(hours=6), "6h"),
    "Last 24 hours": (timedelta(hours=24), "24h"),
    "Last 7 days": (timedelta(days=7), "7d"),
    "Last 30 days": (timedelta(days=30), "30d"),
    "All data": (None, "all"),
    "Custom…": (None, "custom"),
}
DEFAULT_RANGE = "Last 24 hours"


def range_code(name: str) -> str:
    return RANGES[name][1]


st.title("Overview")
status = ui.require_store()
ref = ui.reference(status)
assert status.first_ts is not None and status.last_ts is not None


def custom_range(first: datetime, last: datetime) -> Callable[[list[str]], tuple[datetime, datetime]]:
    """`?custom=FROM&custom=TO` (RFC 3339), kept inside the slider's bounds."""

    def parse(raw: list[str]) -> tuple[datetime, datetime]:
        start, stop = (links.naive_utc([r]) for r in raw[-2:])
        start, stop = max(first, min(start, last)), max(first, min(stop, last))
        if stop <= start:
            raise ValueError(raw)
        return start, stop

    return parse


with st.sidebar:
    st.subheader("Filters")
    links.seed("range", DEFAULT_RANGE, links.one_of(list(RANGES), range_code))
    choice = st.selectbox("Time range", list(RANGES), key="range")
    links.keep("range", DEFAULT_RANGE, range_code)
    if choice != "Custom…":
        links.drop("custom")
    if choice == "All data":
        since, until = status.first_ts, ref.end
    elif choice == "Custom…":
        first = status.first_ts.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        last = (ref.at + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0, tzinfo=None)
        links.seed("custom", (max(first, last - timedelta(hours=6)), last), custom_range(first, last))
        start, stop = st.slider(
            "From – to (UTC)",
            min_value=first,
            max_value=last,
            step=timedelta(minutes=15),
            format="ddd D MMM HH:mm",
            key="custom",
        )
        links.keep("custom", None, lambda v: [links.time_code(t) for t in v])
        since, until = pd.Timestamp(start, tz="UTC").to_pydatetime(), pd.Timestamp(stop, tz="UTC").to_pydatetime()
        if until <= since:
            until = since + timedelta(minutes=15)
    else:
        length = RANGES[choice][0]
        assert length is not None
        since, until = ref.end - length, ref.end
    # The filters offer what the time range holds, and keep what is already chosen (or pasted in a URL).
    choices = ui.load(data.cached_choices, ui.store_path(), since, until)
    for key in ("issuer", "service", "cause"):
        links.seed(key, [], links.many)
    issuers = st.multiselect(
        "Issuer", ui.options(choices.issuers, "issuer"), format_func=ui.issuer_host, key="issuer"
    )
    services = st.multiselect("Service", ui.options(choices.services, "service"), key="service")
    causes = st.multiselect(
        "Cause",
        sorted(ui.options(choices.causes, "cause"), key=ui.cause_rank),
        format_func=ui.cause_name,
        key="cause",
    )
    for key in ("issuer", "service", "cause"):
        links.keep(key, [], list)

length = until - since
covered = status.first_ts < since
view = ui.load(
    data.cached_overview, ui.store_path(), since, until, tuple(services), tuple(issuers), tuple(causes), covered
)
partly = covered and status.first_ts > since - length
st.caption(
    f"{ui.fmt_ts(since)} – {ui.fmt_ts(until)} ({ui.fmt_seconds(length.total_seconds())}), compared with the "
    f"{ui.fmt_seconds(length.total_seconds())} before"
    + (" (only partly in the store)" if partly else "" if covered else ": no data that early, so no comparison")
    + f". {ui.reference_note(ref)}"
)
coverage.show(ui.store_path(), since - length if covered else since)

by_cause = view.causes
total, previous = int(by_cause["events"].sum()), int(by_cause["previous"].sum())
# Rotation damage (DESIGN.md): its causes, never an event with an attack label.
rotation = by_cause[by_cause["cause"].isin(ROTATION_DAMAGE)]
damage = int((rotation["events"] - rotation["with_attacks"]).sum())
damage_before = int((rotation["previous"] - rotation["previous_with_attacks"]).sum())
verified = int(by_cause["verified"].sum())
attacks = int(by_cause["with_attacks"].sum())
cols = st.columns(4)
cols[0].metric("Failures", f"{total:,}", ui.delta(total, previous, covered), delta_color="inverse")
cols[1].metric(
    "Caused by key rotation",
    f"{damage:,}",
    ui.delta(damage, damage_before, covered),
    delta_color="inverse",
    help=f"{', '.join(ROTATION_DAMAGE)}, without an attack label (unknown_kid is not rotation damage)",
)
inferred = view.confidence.get("inferred", 0)
cols[2].metric(
    "Verified by jwtriage",
    f"{verified / total:.0%}" if total else "–",
    f"{inferred / total:.0%} inferred" if total and inferred else None,
    delta_color="off",
    help="Share of failures whose token jwtriage re-validated itself; inferred: stale_jwks judged from a "
    "service's JWKS cache TTL because it reports no fetch time (likely, not proven); the rest rely on the "
    "validator's message.",
)
cols[3].metric("With an attack pattern", f"{attacks:,}", help="See Triage → Attacks for the patterns and advice.")

st.subheader("Failures over time, by cause")
if view.series.empty or total == 0:
    st.info("No failures match these filters in this time range.")
else:
    if not view.rotations.empty:
        st.altair_chart(charts.rotation_lane(view.rotations, since, until), width="stretch")
    st.altair_chart(charts.failures_chart(view.series, view.rotations, since, until, view.bucket), width="stretch")
    st.caption(
        f"Failures per minute in {view.bucket} buckets, stacked by cause, the causes a rotation produces at the "
        "bottom. Key rotations are marked per issuer above the chart (▲ key added, ▼ key removed) and as vertical "
        "lines across it (green: added, black dashed: removed). Hover for details."
    )

st.subheader("Causes")
if not by_cause.empty:
    table = pd.DataFrame(
        {
            "cause": by_cause["cause"],
            "meaning": by_cause["cause"].map(ui.cause_label),
            "failures": by_cause["events"],
            "share": by_cause["events"] / max(total, 1) * 100,
            "verified": by_cause["verified"],
        }
    )
    if covered:
        table["previous period"] = by_cause["previous"]
        table["change"] = [
            ui.delta(int(n), int(p), covered) for n, p in zip(by_cause["events"], by_cause["previous"], strict=True)
        ]
    st.dataframe(
        table,
        hide_index=True,
        height=ui.table_height(len(table)),
        column_config={
            "share": st.column_config.ProgressColumn("share", format="%.1f%%", min_value=0, max_value=100),
            "failures": st.column_config.NumberColumn(format="localized"),
            "previous period": st.column_config.NumberColumn(format="localized"),
            "verified": st.column_config.NumberColumn(
                format="localized", help="Failures whose token jwtriage re-validated itself"
            ),
        },
    )

    st.subheader("What to do")
    shown = by_cause[by_cause["events"] > 0]
    for cause, events in zip(shown["cause"][:5], shown["events"][:5], strict=True):
        st.markdown(f"**`{cause}` {ui.cause_label(cause)}** ({events:,}): {ui.remediation(cause)}")
    if len(shown) > 5:
        with st.expander(f"… and the other {len(shown) - 5} causes"):
            for cause, events in zip(shown["cause"][5:], shown["events"][5:], strict=True):
                st.markdown(f"**`{cause}` {ui.cause_label(cause)}** ({events:,}): {ui.remediation(cause)}")
