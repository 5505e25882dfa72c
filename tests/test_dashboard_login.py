"""The dashboard behind login: the allow-list decision, the refusal to serve unguarded, and the real thing.

The browser test runs a real OpenID Provider (panva/node-oidc-provider, tests/oidc/, installed
with `npm ci` on first use) on 127.0.0.1, `jwtriage dashboard` configured for it, and headless
Chromium logging in through the provider's own login and consent pages: an anonymous visitor
gets the login page only; a user allowed by group (alice) or by e-mail (carol) gets every page;
a user who logs in but is on no list (bob) is refused; a user whose ID token has expired
(dave, 15 s tokens) is sent back to log in, and logging in again lets him in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards.access import AccessRules, Decision, decide
from pipeline.commands.dashboard import is_loopback, secrets_toml, write_secrets
from pipeline.config import DashboardAuthConfig, load_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
OIDC = ROOT / "tests" / "oidc"
EXAMPLE = (ROOT / "examples" / "jwtriage.toml").read_text(encoding="utf-8")
ISSUER = "http://127.0.0.1:9000"
NOW = 1_800_000_000.0
RULES = AccessRules(ISSUER, allowed_users=frozenset({"carol@example.com"}), allowed_groups=frozenset({"viewers"}))


def user(**claims: Any) -> dict[str, Any]:
    return {"is_logged_in": True, "iss": ISSUER, "sub": "u", "exp": NOW + 60, **claims}


# -- the decision ----------------------------------------------------------------------------


def test_the_allow_list_decision() -> None:
    assert decide(None, RULES, NOW) is Decision.ANONYMOUS
    assert decide({"is_logged_in": False}, RULES, NOW) is Decision.ANONYMOUS
    assert decide(user(email="carol@example.com"), RULES, NOW) is Decision.ALLOWED
    assert decide(user(groups=["x", "viewers"]), RULES, NOW) is Decision.ALLOWED
    assert decide(user(groups="viewers"), RULES, NOW) is Decision.ALLOWED  # a single-valued claim
    assert decide(user(email="bob@example.com", groups=["payments"]), RULES, NOW) is Decision.REFUSED
    assert decide(user(email="carol@example.com", email_verified=False), RULES, NOW) is Decision.REFUSED
    assert decide(user(preferred_username="carol@example.com"), RULES, NOW) is Decision.REFUSED  # not the claim
    assert decide(user(groups=[["viewers"]]), RULES, NOW) is Decision.REFUSED
    # An expired token, a token without exp, or another issuer's: log in again, whoever it names.
    assert decide(user(email="carol@example.com", exp=NOW - 1), RULES, NOW) is Decision.EXPIRED
    assert decide(user(email="carol@example.com", exp=NOW), RULES, NOW) is Decision.EXPIRED
    assert decide({**user(email="carol@example.com"), "exp": None}, RULES, NOW) is Decision.EXPIRED
    assert decide(user(email="carol@example.com", exp=True), RULES, NOW) is Decision.EXPIRED
    assert decide(user(email="carol@example.com", iss="http://evil"), RULES, NOW) is Decision.EXPIRED
    by_sub = AccessRules(ISSUER, user_claim="sub", allowed_users=frozenset({"u"}))
    assert decide(user(), by_sub, NOW) is Decision.ALLOWED


def _auth_toml(extra: str = "") -> str:
    return EXAMPLE + (
        "\n[dashboard.auth]\n"
        f'issuer = "{ISSUER}"\nclient_id = "jwtriage"\nclient_secret = "s3cret-value"\n'
        'redirect_uri = "http://127.0.0.1:8501/oauth2callback"\n' + extra
    )


def test_the_auth_config_needs_an_allow_list_and_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_auth_toml(), encoding="utf-8")
    with pytest.raises(ConfigError, match="allowed_users or allowed_groups"):
        load_config(path, {})
    path.write_text(_auth_toml('allowed_groups = ["viewers"]').replace('client_secret = "s3cret-value"\n', ""))
    with pytest.raises(ConfigError, match="client_secret"):
        load_config(path, {})
    (tmp_path / "secret").write_text("from-a-file\n")
    path.write_text(
        _auth_toml(f'allowed_groups = ["viewers"]\ncookie_secret_file = "{tmp_path / "secret"}"'), encoding="utf-8"
    )
    auth = load_config(path, {}).dashboard.auth
    assert auth is not None and auth.cookie_secret is not None
    assert auth.cookie_secret.get_secret_value() == "from-a-file" and "from-a-file" not in repr(auth)


def test_the_secrets_file_is_private_and_holds_the_login() -> None:
    auth = DashboardAuthConfig.model_validate(
        {"issuer": ISSUER + "/", "client_id": "jwtriage", "client_secret": 's3"cret', "allowed_groups": ["v"],
         "redirect_uri": "http://127.0.0.1:8501/oauth2callback"}
    )
    path = write_secrets(auth)
    try:
        assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
        written = tomllib.loads(path.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(path.parent)
    assert written["auth"]["client_secret"] == 's3"cret' and len(written["auth"]["cookie_secret"]) == 64
    assert written["auth"]["server_metadata_url"] == f"{ISSUER}/.well-known/openid-configuration"
    assert written["jwtriage_access"]["allowed_groups"] == ["v"]
    assert secrets_toml(auth) != secrets_toml(auth)  # an unset cookie secret is random per run


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "dashboard.example.com"))


def _dashboard(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "dashboard", *args],
        cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "dashboard.example.com"])
def test_a_non_loopback_address_without_login_is_refused(tmp_path: Path, host: str) -> None:
    result = _dashboard("--db", str(tmp_path / "s.duckdb"), "--host", host, "--port", "8599", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jwtriage: refusing to serve on") and "[dashboard.auth]" in lines[0]
    assert result.stdout == ""  # it never announced a URL, never started Streamlit


# -- the real login, in Chromium, against a real OpenID Provider ---------------------------------


def _npm_ci() -> None:
    if (OIDC / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm (Node.js 20.19+) is needed for the login test's OpenID Provider", pytrace=False)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC, check=True, timeout=300, capture_output=True)


@contextlib.contextmanager
def openid_provider(port: int, redirect_uri: str, log: Path) -> Iterator[str]:
    from tests.test_dashboard_browser import _stop_group

    _npm_ci()
    env = {**os.environ, "PORT": str(port), "CLIENT_ID": "jwtriage", "CLIENT_SECRET": "test-client-secret",
           "REDIRECT_URI": redirect_uri, "SHORT_ID_TOKEN_TTL": "15"}
    with log.open("wb") as out:
        process = subprocess.Popen(["node", "provider.mjs"], cwd=OIDC, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2) as response:
                    assert json.load(response)["issuer"] == issuer
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the OpenID Provider did not start:\n{log.read_text()}", pytrace=False)
                time.sleep(0.2)
        yield issuer
    finally:
        _stop_group(process)


CLICK_JS = """((label) => {
  const button = Array.from(document.querySelectorAll('button')).find((b) => b.innerText.trim() === label);
  if (!button) return false;
  button.click();
  return true;
})(%s)"""

LOGIN_FORM_JS = """((name) => {
  const login = document.querySelector('input[name="login"]');
  if (login) {
    login.value = name;
    document.querySelector('input[name="password"]').value = 'any';
    login.form.submit();
    return 'login';
  }
  const form = document.querySelector('form');
  if (form && /interaction/.test(location.pathname)) { form.submit(); return 'consent'; }
  return '';
})(%s)"""


class Visitor:
    """One person in their own Chromium (own cookies), on the dashboard at `base`."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser, self.base = browser, base

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def wait_text(self, *phrases: str, timeout: float = 60) -> str:
        deadline, text = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            state = self.browser.state()
            text = state["text"]
            if state["script"] == "notRunning" and all(p in text for p in phrases):
                return text
            time.sleep(0.3)
        raise AssertionError(f"{phrases} not on {self.url()} in {timeout:.0f} s; the page says: {text[:600]}")

    def click(self, label: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(CLICK_JS % json.dumps(label)):
            assert time.monotonic() < deadline, f"no {label!r} button on {self.url()}"
            time.sleep(0.3)

    def log_in_at_the_provider(self, name: str, issuer: str, timeout: float = 60) -> None:
        """Fill the provider's login form, then its consent form, until it sends us back to the dashboard."""
        deadline, left = time.monotonic() + timeout, False
        while time.monotonic() < deadline:
            url = self.url()
            if url.startswith(issuer):
                left = True
                self.evaluate(LOGIN_FORM_JS % json.dumps(name))
                time.sleep(0.7)
            elif left and url.startswith(self.base) and "oauth2callback" not in url and "/auth/login" not in url:
                return
            else:
                time.sleep(0.3)
        raise AssertionError(f"{name} did not get back from the provider; at {self.url()}")


@pytest.mark.browser
def test_login_in_chromium_against_a_real_openid_provider(simulated_db: Path, tmp_path: Path) -> None:
    from tests.test_dashboard_browser import PAGES, Chromium, chromium_path, dashboard_server, free_port

    dashboard_port, provider_port = free_port(), free_port()
    redirect_uri = f"http://127.0.0.1:{dashboard_port}/oauth2callback"
    with openid_provider(provider_port, redirect_uri, tmp_path / "provider.log") as issuer:
        config = tmp_path / "jwtriage.toml"
        config.write_text(
            EXAMPLE + "\n[dashboard.auth]\n"
            f'issuer = "{issuer}"\nclient_id = "jwtriage"\nclient_secret = "test-client-secret"\n'
            f'redirect_uri = "{redirect_uri}"\nscope = "openid email profile groups"\nprompt = "login"\n'
            'allowed_users = ["carol@example.com"]\nallowed_groups = ["jwtriage-viewers"]\n',
            encoding="utf-8",
        )
        with dashboard_server(simulated_db, tmp_path / "streamlit.log", port=dashboard_port,
                              extra=("--config", str(config))) as base:

            @contextlib.contextmanager
            def visitor(name: str) -> Iterator[Visitor]:
                chrome = Chromium(chromium_path(), tmp_path / f"profile-{name}")
                try:
                    yield Visitor(chrome, base)
                finally:
                    chrome.close()

            # Anonymous: the login page, and nothing of the dashboard (not even its navigation).
            with visitor("anonymous") as anonymous:
                anonymous.browser.call("Page.navigate", url=base + "/triage")
                text = anonymous.wait_text("Log in", "jwtriage")
                assert not any(heading in text for heading in ("Overview", "Rotations", "Triage", "Live"))

            # Allowed by group, and by e-mail: every page.
            for name, email in (("alice", "alice@example.com"), ("carol", "carol@example.com")):
                with visitor(name) as person:
                    person.browser.call("Page.navigate", url=base)
                    person.wait_text("Log in")
                    person.click("Log in")
                    person.log_in_at_the_provider(name, issuer)
                    person.wait_text(f"Signed in as {email}")
                    for path, heading, charts, _tables, _texts in PAGES.values():
                        state = person.browser.open(f"{base}/{path}", heading, charts)
                        assert not state["exceptions"] and not state["errors"], (name, path, state["errors"])
                        assert f"Signed in as {email}" in state["text"]

            # Logged in, on no list: refused, nothing shown.
            with visitor("bob") as bob:
                bob.browser.call("Page.navigate", url=base + "/rotations")
                bob.click("Log in")
                bob.log_in_at_the_provider("bob", issuer)
                text = bob.wait_text("Signed in as bob@example.com, who is not allowed")
                assert not any(heading in text for heading in ("Overview", "Rotations", "Triage", "Live"))

            # An expired ID token (dave's last 15 s): back to the login, and in again after it.
            with visitor("dave") as dave:
                dave.browser.call("Page.navigate", url=base)
                dave.click("Log in")
                logged_in = time.time()
                dave.log_in_at_the_provider("dave", issuer)
                dave.wait_text("Signed in as dave@example.com", "Overview")
                time.sleep(max(0.0, logged_in + 17 - time.time()))
                dave.browser.call("Page.navigate", url=base + "/live")
                text = dave.wait_text("Your session has expired")
                assert "Signed in as" not in text and "Live" not in text
                dave.click("Log in again")
                dave.log_in_at_the_provider("dave", issuer)
                dave.wait_text("Signed in as dave@example.com")
