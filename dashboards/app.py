"""The jwtriage dashboard: `jwtriage dashboard [--db PATH]`, or `streamlit run dashboards/app.py -- --db PATH`.

The entry point reads the store path once per run (`--db` after `--`, else JWTRIAGE_DB,
else ./jwtriage.duckdb), then hands over to one of four pages in `views/`. With login
configured (`[jwtriage_access]` in the secrets file `jwtriage dashboard` writes), no page
runs before `access.decide` allows the user: the gate is `login_gate` below.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # `streamlit run` puts only dashboards/ on the path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from dashboards import access, data, ui  # noqa: E402

st.set_page_config(page_title="jwtriage", page_icon=":material/key:", layout="wide")


def _access_rules() -> access.AccessRules | None:
    """The allow-list, when login is configured; None when the dashboard runs without login."""
    if not st.secrets.load_if_toml_exists():
        return None
    section = st.secrets.get("jwtriage_access")
    return access.AccessRules.from_secrets(section) if section else None


def login_gate() -> None:
    """Stop the run unless login is off or the logged-in user is allowed; say why, and offer what helps."""
    rules = _access_rules()
    if rules is None:
        return
    user = st.user.to_dict() if st.user.is_logged_in else None
    decision = access.decide(user, rules, time.time())
    if decision is access.Decision.ALLOWED:
        assert user is not None
        with st.sidebar:
            st.caption(f"Signed in as **{access.who(user, rules)}**")
            if st.button("Log out", key="logout"):
                st.logout()
        return
    st.title("jwtriage")
    if decision is access.Decision.ANONYMOUS:
        st.markdown("This dashboard shows which tokens fail where. Log in to see it.")
        if st.button("Log in", type="primary", key="login"):
            st.login()
    elif decision is access.Decision.EXPIRED:
        st.warning("Your session has expired. Log in again.", icon=":material/schedule:")
        if st.button("Log in again", type="primary", key="login"):
            st.login()
    else:
        assert user is not None
        st.error(
            f"Signed in as {access.who(user, rules)}, who is not allowed to see this dashboard. "
            "Ask its operator to add you to [dashboard.auth] allowed_users or allowed_groups.",
            icon=":material/block:",
        )
        if st.button("Log out", key="logout"):
            st.logout()
    st.stop()


login_gate()
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
