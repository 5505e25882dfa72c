"""Dead letters: the records the consumer could not read, why, and a redacted excerpt of each.

A dead letter is a record set aside instead of judged (not JSON, not UTF-8, a missing `ts`, a
service outside the config...). Its excerpt is stored with token-like runs already redacted,
so the page shows it as it is.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import data, links, ui

st.title("Dead letters")
status = data.cached_status(ui.store_path())
if status.state not in ("ok", "empty"):  # a store of dead letters only (every record bad) is still worth a look
    ui.show_store_problem(status)
    st.stop()

every = ui.load(data.cached_dead_letters, ui.store_path())
if status.state == "empty" and every.total == 0:
    ui.show_store_problem(status)
    st.stop()
kinds_available = tuple(sorted(set(every.reasons["kind"])))
reasons_available = tuple(every.reasons["reason"])
with st.sidebar:
    st.subheader("Dead letters")
    for key in ("kind", "reason"):
        links.seed(key, [], links.many)
    kinds = st.multiselect("Kind", ui.options(kinds_available, "kind"), key="kind")
    reasons = st.multiselect(
        "Reason", ui.options(reasons_available, "reason"), key="reason", help="Numbers in a reason are shown as N."
    )
    for key in ("kind", "reason"):
        links.keep(key, [], list)

view = ui.load(data.cached_dead_letters, ui.store_path(), tuple(kinds), tuple(reasons))
if view.total == 0:
    st.success(
        "No dead letters: every record the consumer read was an event, a key set or a sample it could judge.",
        icon=":material/task_alt:",
    )
    st.stop()

cols = st.columns(3)
cols[0].metric("Dead letters", f"{view.total:,}")
cols[1].metric("Reasons", f"{len(every.reasons):,}", help="Reasons that differ only in a number count as one.")
newest = every.reasons["last_received"].max()
cols[2].metric("Last set aside", ui.fmt_ts(newest), help="When the consumer received it (its wall clock).")
st.caption(
    "Received: when the consumer set the record aside (its clock); event time: what the record itself says. "
    "Records the consumer set aside instead of judging: fix the producer (or the config, for a service it does "
    "not know), then replay them from their offsets. Excerpts are stored with anything token-like redacted."
)

st.subheader("Why")
reasons_table = pd.DataFrame(
    {
        "kind": view.reasons["kind"],
        "reason": view.reasons["example"],
        "records": view.reasons["records"],
        "sources": view.reasons["sources"].map(lambda s: ", ".join(s) if s is not None else ""),
        "first received": view.reasons["first_received"].map(ui.fmt_ts),
        "last received": view.reasons["last_received"].map(ui.fmt_ts),
    }
)
st.dataframe(
    reasons_table,
    hide_index=True,
    height=ui.table_height(len(reasons_table)),
    column_config={**ui.counts("records"), "reason": st.column_config.TextColumn(width="large")},
)

st.subheader("The records")
records = view.records
st.caption(
    f"The newest {len(records):,} matching records (up to 200), with where to find them again "
    "(source, partition, offset)."
)
if records.empty:
    st.info("No dead letters match these filters.")
else:
    st.dataframe(
        pd.DataFrame(
            {
                "received": records["received_at"].map(lambda t: ui.fmt_ts(t, seconds=True)),
                "event time (as written)": records["written_ts"].fillna("–"),
                "source": records["source"],
                "partition": records["source_partition"],
                "offset": records["source_offset"],
                "reason": records["reason"],
                "excerpt (redacted)": records["excerpt"],
            }
        ),
        hide_index=True,
        height=ui.table_height(len(records)),
        column_config={
            "event time (as written)": st.column_config.TextColumn(
                help="The `ts` the record itself carries (or the time a log line starts with), as written"
            ),
            "reason": st.column_config.TextColumn(width="medium"),
            "excerpt (redacted)": st.column_config.TextColumn(width="large"),
            "offset": st.column_config.NumberColumn(help="Where the record sits in its source partition"),
        },
    )
