"""The jwtriage dashboard: `jwtriage dashboard [--db PATH]`, or `streamlit run dashboards/app.py -- --db PATH`.

The entry point reads the store path once per run (`--db` after `--`, else JWTRIAGE_DB,
else ./jwtriage.duckdb), then hands over to one of four pages in `views/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # `streamlit run` puts only dashboards/ on the path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from dashboards import data, ui  # noqa: E402

st.set_page_config(page_title="jwtriage", page_icon=":material/key:", layout="wide")
st.session_state["store_path"] = str(data.store_path_from(sys.argv[1:], os.environ))

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("views/rotations.py", title="Rotations", icon=":material/key:", url_path="rotations"),
    st.Page("views/triage.py", title="Triage", icon=":material/troubleshoot:", url_path="triage"),
    st.Page("views/live.py", title="Live", icon=":material/sensors:", url_path="live"),
    st.Page("views/dead_letters.py", title="Dead letters", icon=":material/report:", url_path="dead-letters"),
]
page = st.navigation(PAGES)

with data.one_connection_per_run():  # the run's questions share one short-lived connection, closed at its end
    with st.sidebar:
        status = data.cached_status(ui.store_path())
        if status.ok:
            st.caption(
                f"**Store** `{status.path}`  \n{status.events:,} events, "
                f"{ui.fmt_ts(status.first_ts)} – {ui.fmt_ts(status.last_ts)}"
            )
        else:
            st.caption(f"**Store** `{status.path}`: {status.state.replace('_', ' ')}")
    page.run()
