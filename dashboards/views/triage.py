"""Triage: the last hour against the same hour on past days, who fails and why, attacks, and the events themselves."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import charts, coverage, data, links, ui

#: window length → what "the same …" calls it on past days (the URL writes the length: `?window=1h`)
WINDOWS = {
    timedelta(minutes=15): "15 minutes",
    timedelta(hours=1): "hour",
    timedelta(hours=3): "3 hours",
    timedelta(hours=6): "6 hours",
    timedelta(hours=12): "12 hours",
    timedelta(hours=24): "24 hours",
}
DEFAULT_WINDOW, DEFAULT_DAYS = timedelta(hours=1), 7
TOP_TABS = {"service": "Services", "client_id": "Clients", "kid": "Key ids (kid)"}
#: The drill-down's filters: widget key (and URL parameter) → label, and the `choices` column it offers.
EVENT_FILTERS = {
    "ev_cause": ("Cause", "cause"),
    "ev_service": ("Service", "service"),
    "ev_client": ("Client", "client_id"),
    "ev_kid": ("Key id (kid)", "kid"),
}


def window_name(length: timedelta) -> str:
    """ "15 minutes", "1 hour", "24 hours" """
    return "1 hour" if WINDOWS[length] == "hour" else WINDOWS[length]


st.title("Triage")
status = ui.require_store()
ref = ui.reference(status)
assert status.first_ts is not None

with st.sidebar:
    links.seed("window", DEFAULT_WINDOW, links.duration(list(WINDOWS)))
    length = st.selectbox("Window", list(WINDOWS), format_func=window_name, key="window")
    links.keep("window", DEFAULT_WINDOW, links.duration_code)
    first = status.first_ts.replace(second=0, microsecond=0, tzinfo=None)
    latest = ref.at.replace(tzinfo=None)
    links.seed("until", None, links.naive_utc)
    if st.session_state["until"] is not None:  # a pasted time outside the store: the nearest end of it
        st.session_state["until"] = max(first, min(st.session_state["until"], latest))
    ending = st.datetime_input(
        "Ending at (UTC)",
        value=None,
        min_value=first,
        max_value=latest,
        step=timedelta(minutes=15),
        format="YYYY-MM-DD",
        key="until",
        help="Look at a past window, as `jwtriage triage --until` does. Empty: the window ends now.",
    )
    links.keep("until", None, links.time_code)
    links.seed("days", DEFAULT_DAYS, lambda raw: max(1, min(14, int(raw[-1]))))
    days = st.slider("Compare with the same window on the past … days", 1, 14, key="days")
    links.keep("days", DEFAULT_DAYS)

noun = WINDOWS[length]
past = ending is not None
until = pd.Timestamp(ending, tz="UTC").to_pydatetime() if past else ref.end
since = until - length
window_label = f"{window_name(length)} to {ui.fmt_ts(until)}" if past else f"Last {noun}"
window_lower = window_label[0].lower() + window_label[1:]  # "last hour", "3 hours to Mon 23 Nov 12:00 UTC"
path = ui.store_path()
tri = ui.load(data.cached_triage, path, until, length, days)
st.caption(
    f"{window_label}: {ui.fmt_ts(since)} – {ui.fmt_ts(until if past else ref.at)}. "
    + ("A past window (clear “Ending at” for the latest). " if past else "")
    + ui.reference_note(ref)
)
coverage.show(path, since - timedelta(days=days))

# -- this window against past days ------------------------------------------------------------
st.subheader(f"{window_label} against the same {noun} on past days")
covered = [d for d in range(1, days + 1) if until - timedelta(days=d) - length >= status.first_ts]
wide = tri.by_day.pivot_table(index="cause", columns="days_ago", values="events", aggfunc="sum", fill_value=0)
wide = wide.reindex(columns=[0, *covered], fill_value=0)
compare = pd.DataFrame({"cause": wide.index, "now": wide[0].to_numpy()})
if covered:
    compare["yesterday"] = wide[1].to_numpy() if 1 in covered else None
    compare["past_median"] = wide[covered].median(axis=1).to_numpy()
compare = compare.sort_values("now", ascending=False, key=lambda s: s.astype(float)).reset_index(drop=True)
total_now = int(compare["now"].sum())
cols = st.columns(3)
cols[0].metric(f"Failures, {window_lower}", f"{total_now:,}")
if covered:
    usual = float(wide[covered].sum(axis=0).median())
    cols[1].metric(
        f"Usual for this {noun} (median of {len(covered)} days)",
        f"{usual:,.0f}",
        f"{total_now - usual:+,.0f} now" if usual and round(total_now - usual) else None,
        delta_color="inverse",
    )
    rise = (compare["now"] - compare["past_median"]).astype(float)
    if len(rise) and rise.max() > 0:
        worst = compare.loc[rise.idxmax()]
        cols[2].metric(
            "Biggest rise against usual", ui.cause_name(worst["cause"]), f"{rise.max():+,.0f}", delta_color="inverse"
        )
    else:
        cols[2].metric("Biggest rise against usual", "none")
else:
    cols[1].metric(f"Usual for this {noun}", "–")
    st.info(
        f"No past days to compare with: the store begins {ui.fmt_ts(status.first_ts)}, less than a day before "
        f"this window. The comparison appears once the store holds the same {noun} on earlier days.",
        icon=":material/history:",
    )
if total_now:
    past_label = f"median of the past {len(covered)} days" if covered else None
    left, right = st.columns([3, 2])
    left.altair_chart(charts.same_window_chart(compare, window_lower, past_label), width="stretch")
    table = pd.DataFrame({"cause": compare["cause"], "now": compare["now"]})  # the chart beside it has the labels
    if covered:
        table["yesterday"] = compare["yesterday"]
        table["usual (median)"] = compare["past_median"]
    right.dataframe(
        table,
        hide_index=True,
        height=ui.table_height(len(table)),
        column_config={
            **ui.counts("now", "yesterday"),
            "usual (median)": st.column_config.NumberColumn(format="localized"),
        },
    )

# -- who fails, by cause -------------------------------------------------------------------------
st.subheader("Top services, clients and kids by cause")
tabs = st.tabs(list(TOP_TABS.values()))
for tab, column in zip(tabs, TOP_TABS, strict=True):
    with tab:
        top = tri.top[column]
        if top.empty:
            st.info(f"No failures with a {column} in this window.")
        else:
            st.altair_chart(charts.top_chart(top, column), width="stretch")

# -- attacks -------------------------------------------------------------------------------------
st.subheader("Attacks")
attack_columns = {
    "attack": "attack",
    "events": "failures",
    "top_clients": "clients (failures)",
    "no_client_id": "no client id",
    "services": "services",
    "first_seen": "first seen",
    "last_seen": "last seen",
}
ATTACK_COLUMN_HELP = {
    "clients (failures)": f"The {data.ATTACK_CLIENTS_NAMED} clients with the most failures of this pattern, "
    "and how many other clients sent it",
    "no client id": "Failures of this pattern whose event named no client: the sender is unknown",
}


def attack_table(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(attack_columns)].rename(columns=attack_columns)
    out["services"] = out["services"].map(lambda s: ", ".join(s) if s is not None else "")
    out["first seen"] = out["first seen"].map(ui.fmt_ts)
    out["last seen"] = out["last seen"].map(ui.fmt_ts)
    return out


def attack_columns_config() -> dict[str, Any]:
    return {
        **ui.counts("failures", "no client id"),
        **{name: st.column_config.TextColumn(help=text) for name, text in ATTACK_COLUMN_HELP.items()},
        "no client id": st.column_config.NumberColumn(format="localized", help=ATTACK_COLUMN_HELP["no client id"]),
    }


def attack_advice(frame: pd.DataFrame) -> None:
    for attack in frame["attack"]:
        if ui.attack_advice(attack):
            st.markdown(f"**`{attack}`**: {ui.attack_advice(attack)}")


if tri.attacks.empty:
    st.success(
        "No attack patterns (alg none, key confusion, injected jwk/jku/kid, psychic signatures) in this window.",
        icon=":material/verified_user:",
    )
    if not tri.last_attacks.empty:
        last_seen = ui.fmt_ts(tri.last_attacks["last_seen"].max())
        with st.expander(f"Attacks in the past {days} days (last seen {last_seen})"):
            st.dataframe(attack_table(tri.last_attacks), hide_index=True, column_config=attack_columns_config())
            attack_advice(tri.last_attacks)
else:
    st.warning(
        f"{tri.attack_events:,} failures in this window carry an attack pattern.",
        icon=":material/shield:",
    )
    st.dataframe(attack_table(tri.attacks), hide_index=True, column_config=attack_columns_config())
    attack_advice(tri.attacks)

# -- drill-down ----------------------------------------------------------------------------------
st.subheader("Events")
chosen: dict[str, list[str]] = {}
for column, (key, (label, offered)) in zip(st.columns(4), EVENT_FILTERS.items(), strict=True):
    links.seed(key, [], links.many)
    chosen[key] = column.multiselect(
        label,
        ui.options(tri.choices[offered], key),
        format_func=ui.cause_name if offered == "cause" else str,
        key=key,
    )
    links.keep(key, [], list)
causes, services, clients, kids = (chosen[key] for key in EVENT_FILTERS)
events = ui.load(
    data.cached_events, path, since, until, tuple(services), (), tuple(causes), tuple(clients), tuple(kids), limit=500
)
st.caption(
    f"The newest {len(events):,} matching events (up to 500). Tokens are never shown: `token_fp` is the first "
    "12 hex characters of the token's SHA-256."
)
coverage.show(path, since, per_event=True)
if events.empty:
    st.info("No events match.")
else:
    shown = events.assign(
        time=events["ts"].map(lambda t: ui.fmt_ts(t, seconds=True)),
        meaning=events["cause"].map(ui.cause_label),
        attacks=events["attacks"].map(lambda a: ", ".join(a) if a is not None else ""),
    )
    st.dataframe(
        shown[
            [
                "time",
                "service",
                "cause",
                "meaning",
                "detail",
                "client_id",
                "kid",
                "alg",
                "confidence",
                "attacks",
                "token_fp",
                "event_id",
            ]
        ],
        hide_index=True,
        column_config={"detail": st.column_config.TextColumn(width="large")},
    )

    st.markdown("##### Evidence for one event")
    labels = {
        e: f"{ui.fmt_ts(t, seconds=True)} · {s} · {c} · {e}"
        for e, t, s, c in zip(events["event_id"], events["ts"], events["service"], events["cause"], strict=True)
    }
    chosen = st.selectbox("Event", list(labels), format_func=labels.get, key="tr_event")
    evidence = ui.load(data.cached_evidence, path, chosen) if chosen else None
    if evidence:
        left, right = st.columns([3, 2])
        with left:
            st.markdown(f"**{ui.cause_name(evidence['cause'])}** ({evidence['confidence']})")
            st.code(evidence["detail"] or "", language=None, wrap_lines=True)
            st.markdown("Every failed check, in order: " + ", ".join(f"`{f}`" for f in evidence["findings"] or []))
            st.info(ui.remediation(evidence["cause"]), icon=":material/build:")
            for attack in evidence["attacks"] or []:
                if ui.attack_advice(attack):
                    st.warning(ui.attack_advice(attack), icon=":material/shield:")
        with right:
            fields = {
                "event_id": evidence["event_id"],
                "time": ui.fmt_ts(evidence["ts"], seconds=True),
                "service": evidence["service"],
                "client_id": evidence["client_id"],
                "request_id": evidence["request_id"],
                "issuer (verified)": evidence["issuer"],
                "kid": evidence["kid"],
                "alg": evidence["alg"],
                "audience": evidence["audience"],
                "skew beyond leeway": ui.fmt_seconds(evidence["skew_seconds"]),
                "key first published": ui.fmt_ts(evidence["key_first_seen"], seconds=True),
                "service's JWKS fetched": ui.fmt_ts(evidence["service_jwks_fetched_at"], seconds=True),
                "validator said": evidence["reported_error"],
                "token fingerprint": evidence["token_fp"],
            }
            st.dataframe(
                pd.DataFrame(
                    {"field": list(fields), "value": [str(v) if v is not None else "–" for v in fields.values()]}
                ),
                hide_index=True,
                height=ui.table_height(len(fields)),
            )
        for name, raw in (
            ("Token header", evidence["token_header"]),
            ("Token claims (sub hashed)", evidence["token_claims"]),
        ):
            if raw:
                with st.expander(name):
                    st.json(json.loads(raw))
