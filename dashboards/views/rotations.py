"""Rotations: pick a key rotation, see which services failed after it, how long they took to recover, and why."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboards import charts, coverage, data, links, ui
from pipeline.causes import STEP_CAUSES

WINDOWS = [timedelta(hours=h) for h in (1, 3, 6, 12, 24, 48, 72)]
QUIET = [timedelta(minutes=m) for m in (5, 15, 30, 60, 120)]

#: which rotations the picker lists → how far back, and the code in the URL (`?rotations=7d`)
RANGES: dict[str, tuple[timedelta | None, str]] = {
    "Last 24 hours": (timedelta(hours=24), "24h"),
    "Last 7 days": (timedelta(days=7), "7d"),
    "Last 30 days": (timedelta(days=30), "30d"),
    "All": (None, "all"),
}
DEFAULT_RANGE, DEFAULT_WINDOW, DEFAULT_QUIET = "Last 7 days", timedelta(hours=24), timedelta(minutes=30)

st.title("Rotations")
status = ui.require_store()
ref = ui.reference(status)
with st.sidebar:
    st.subheader("Rotations")
    links.seed("rotations", DEFAULT_RANGE, links.one_of(list(RANGES), lambda name: RANGES[name][1]))
    shown = st.selectbox("Rotations in the", list(RANGES), key="rotations")
    links.keep("rotations", DEFAULT_RANGE, lambda name: RANGES[name][1])
    span = RANGES[shown][0]
    links.seed("follow", DEFAULT_WINDOW, links.duration(WINDOWS))
    window = st.select_slider("Follow each for", WINDOWS, format_func=ui.fmt_duration_td, key="follow")
    links.keep("follow", DEFAULT_WINDOW, links.duration_code)
    links.seed("quiet", DEFAULT_QUIET, links.duration(QUIET))
    quiet = st.select_slider(
        "Recovered after this long without failures", QUIET, format_func=ui.fmt_duration_td, key="quiet"
    )
    links.keep("quiet", DEFAULT_QUIET, links.duration_code)
steps = ui.load(data.cached_rotations, ui.store_path(), None if span is None else ref.end - span)
if steps.empty:
    st.info(
        f"No key rotations {shown.lower()}: every issuer's JWKS holds the keys it held before. Rotations appear "
        "here once `jwtriage jwks-watch` (or the consumer's auth.jwks stream) sees a key added or removed; "
        "pick a longer range in the sidebar to look further back."
    )
    st.stop()


def step_id(row: pd.Series) -> str:
    """A rotation step as the URL names it: `removed:corp-rs-2025@login.acme.test` (stable as rotations arrive)."""
    return f"{row['action']}:{row['kid'] or ''}@{ui.issuer_host(row['issuer'])}"


def step_label(row: pd.Series) -> str:
    caused = f"{row['failures']:,} failures" if row["failures"] else "no failures"
    kid = row["kid"] or "(no kid)"
    return f"{ui.fmt_ts(row['ts'])} · {row['action']} {kid} · {ui.issuer_host(row['issuer'])} · {caused}"


ids: list[str] = []
for _, row in steps.iterrows():  # a kid added twice in the range: the second by its time too
    ids.append(step_id(row) if step_id(row) not in ids else f"{step_id(row)}~{links.time_code(row['ts'])}")
labels = {i: step_label(row) for i, (_, row) in zip(ids, steps.iterrows(), strict=True)}
# Start on the rotation the URL names, else the newest that caused failures (else the newest).
with_failures = steps.index[steps["failures"] > 0]
newest = ids[int(with_failures[0]) if len(with_failures) else 0]
linked = links.url_values("rotation")
links.seed("rotation", newest, links.one_of(ids))
if st.session_state["rotation"] not in labels:  # chosen in another range
    st.session_state["rotation"] = newest
if linked and linked[-1] not in labels:
    st.warning(
        f"The link names rotation {ui.code(linked[-1])}, which is not among the rotations {shown.lower()}: "
        "showing the newest instead. Choose a longer range in the sidebar to find it.",
        icon=":material/link_off:",
    )
chosen = st.selectbox(
    "Key rotation (newest first)",
    ids,
    format_func=labels.__getitem__,
    key="rotation",
    help="With the failures each step caused: stale_jwks and unpublished_key on an added key, retired_key on a "
    "removed one.",
)
links.keep("rotation", None)  # always in the URL: the newest rotation changes as rotations arrive
n = ids.index(chosen)
step = {k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for k, v in steps.iloc[n].to_dict().items()}
detail = ui.load(data.cached_rotation, ui.store_path(), step, window, ref.end, quiet)
services = detail.services
causes = STEP_CAUSES[step["action"]]

st.markdown(
    f"#### Key **{step['action']}** {ui.code(step['kid'])} ({step['kty']}) by {ui.issuer_host(step['issuer'])}, "
    f"{ui.fmt_ts(step['ts'], seconds=True)}"
)
cut = detail.until < step["ts"] + window
st.caption(
    f"Failures caused by this step: {', '.join(ui.code(c) for c in causes)} on tokens signed with "
    f"{ui.code(step['kid'])}, "
    f"from {ui.fmt_seconds(window.total_seconds())} before the step to "
    + (f"the end of the data ({ui.fmt_ts(detail.until)})" if cut else f"{ui.fmt_seconds(window.total_seconds())} after")
    + f". A service has recovered when it has had no such failure for {ui.fmt_seconds(quiet.total_seconds())}"
    " before the end of the window. " + ui.reference_note(ref)
)
coverage.show(ui.store_path(), step["ts"] - window, per_event=True)  # attribution needs each event's time

counts = services["verdict"].value_counts()
affected = services[services["failures"] > 0]
cols = st.columns(4)
cols[0].metric("Failures caused", f"{int(services['failures'].sum()):,}")
cols[1].metric("Services still failing", int(counts.get("still failing", 0)))
cols[2].metric("Services recovered", int(counts.get("recovered", 0)))
slowest = affected["recovered_after_s"].max() if not affected.empty else None
cols[3].metric("Slowest recovery", ui.fmt_seconds(slowest), help="From the step to the service's last failure.")

st.subheader("Failures per service")
if detail.series.empty:
    st.success("No service failed because of this rotation.")
else:
    start = min(step["ts"], detail.series["bucket"].min()) - data.BUCKET_WIDTH[detail.bucket]
    st.altair_chart(charts.step_chart(detail.series, step, start, detail.until, detail.bucket), width="stretch")

st.subheader("Verdict per service")
order = {verdict: n for n, verdict in enumerate(ui.VERDICT_ORDER)}
services = services.sort_values(
    ["verdict", "failures"], key=lambda c: c.map(order) if c.name == "verdict" else -c
).reset_index(drop=True)
table = pd.DataFrame(
    {
        "service": services["service"],
        "verdict": services["verdict"],
        "failures": services["failures"],
        "causes": services["causes"].map(lambda c: ", ".join(c) if isinstance(c, list | tuple) else ""),
        "first failure": [ui.relative(f, step["ts"]) for f in services["first_failure"]],
        "time to recover": [
            ui.fmt_seconds(r) if v == "recovered" else ("not yet" if v == "still failing" else "–")
            for v, r in zip(services["verdict"], services["recovered_after_s"], strict=True)
        ],
        "JWKS cache age (reported median / max)": [
            f"{ui.fmt_seconds(a)} / {ui.fmt_seconds(b)}" if pd.notna(b) else "not reported"
            for a, b in zip(services["cache_age_median_s"], services["cache_age_max_s"], strict=True)
        ],
        "cache lifetime inferred ≥": services["stale_window_s"].map(ui.fmt_seconds),
        f"events from {ui.issuer_host(step['issuer'])}": services["issuer_events"],
    }
)
if step["action"] == "removed":  # one cause (retired_key) and no stale_jwks to infer a cache lifetime from
    table = table.drop(columns=["causes", "cache lifetime inferred ≥"])
st.dataframe(
    table,
    hide_index=True,
    height=ui.table_height(len(table)),
    column_config={
        **ui.counts("failures", f"events from {ui.issuer_host(step['issuer'])}"),
        "first failure": st.column_config.TextColumn(help="Relative to the rotation step"),
        "time to recover": st.column_config.TextColumn(help="From the step to the service's last failure"),
    },
)
st.caption(
    "JWKS cache age: how old the service's key set was when it rejected a token (from the event's "
    "`service_jwks_fetched_at`; not every service reports it)."
    + (
        " Cache lifetime inferred: the time from the key's publication to the service's last `stale_jwks` "
        "failure on it, a lower bound on how long the service keeps a JWKS."
        if step["action"] == "added"
        else ""
    )
)

# Only the tables a step's kind has: an added key's failures are stale_jwks/unpublished_key (the verdict
# table above, with the cache lifetimes they bound); a removed key's are retired_key, and its tokens below.
retired = detail.retired if step["action"] == "removed" else None
if retired is not None:
    st.subheader("Tokens still signed by the retired key")
    usage = detail.retired_usage
    st.markdown(
        f"{ui.code(retired['kid'])} was removed from {ui.issuer_host(retired['issuer'])}'s JWKS at "
        f"{ui.fmt_ts(retired['ts'], seconds=True)}. Since then, **{int(usage['events'].sum()):,}** rejected "
        "requests carried a token signed by it"
        + (": the clients below still hold such tokens (or mint them)." if len(usage) else ".")
    )
    if not usage.empty:
        st.dataframe(
            pd.DataFrame(
                {
                    "service": usage["service"],
                    "rejections": usage["events"],
                    "distinct tokens": usage["tokens"],
                    "clients": usage["clients"],
                    "some clients": usage["some_clients"].map(lambda c: ", ".join(c) if c is not None else ""),
                    "main cause": usage["main_cause"].map(ui.cause_name),
                    "last seen": usage["last_seen"].map(ui.fmt_ts),
                }
            ),
            hide_index=True,
            height=ui.table_height(len(usage)),
            column_config=ui.counts("rejections", "distinct tokens", "clients"),
        )

with st.expander("What to do", expanded=not affected.empty):
    for cause in causes:
        st.markdown(f"**`{cause}` {ui.cause_label(cause)}**: {ui.remediation(cause)}")
