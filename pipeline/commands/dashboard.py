"""`jwtriage dashboard`: serve the Streamlit dashboard (`dashboards/app.py`) on one store.

The app ships in the wheel as the top-level package `dashboards`, so it is found by import,
wherever jwtriage is installed (a checkout, `pip install .`, the Docker image).

The store is the one every reader uses (`--db`, else JWTRIAGE_DB, else the config's, else
./jwtriage.duckdb); it is passed to the app as JWTRIAGE_DB and as `-- --db PATH`. Streamlit
runs as a child process, bound to 127.0.0.1 unless `--host` says otherwise; stopping this
command (Ctrl-C, SIGTERM) stops it.

Login: with `[dashboard.auth]` in the config, Streamlit's OIDC login (`st.login`, which needs
Authlib) guards every page, and only the listed users or groups get past it
(`dashboards/access.py`). Its settings, secrets included, go to Streamlit in a secrets file
written to a private temporary directory (0700, the file 0600) and removed on exit. Without
login the dashboard binds only a loopback address, unless `--insecure-no-login` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from pipeline.commands.common import store_path
from pipeline.config import DashboardAuthConfig, load_config, resolve_config_path
from pipeline.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def dashboards_dir() -> Path | None:
    """Where the `dashboards` package is importable from (None when it is not installed)."""
    spec = importlib.util.find_spec("dashboards")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def auth_config(args: argparse.Namespace) -> DashboardAuthConfig | None:
    """`[dashboard.auth]` of the config, when there is a config file (the dashboard needs none otherwise)."""
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    if not (path.exists() or getattr(args, "config", None)):
        return None
    return load_config(path, os.environ).dashboard.auth


def _toml(value: Any) -> str:
    """A string or a list of strings as TOML (JSON's string escapes are valid TOML basic strings)."""
    return json.dumps(value, ensure_ascii=True)


def secrets_toml(auth: DashboardAuthConfig) -> str:
    """Streamlit's `[auth]` (its login) and jwtriage's `[jwtriage_access]` (who may see the pages)."""
    assert auth.client_secret is not None  # the config model requires it
    cookie = auth.cookie_secret.get_secret_value() if auth.cookie_secret else secrets.token_hex(32)
    metadata = auth.issuer.rstrip("/") + "/.well-known/openid-configuration"
    return "\n".join(
        [
            "[auth]",
            f"redirect_uri = {_toml(auth.redirect_uri)}",
            f"cookie_secret = {_toml(cookie)}",
            f"client_id = {_toml(auth.client_id)}",
            f"client_secret = {_toml(auth.client_secret.get_secret_value())}",
            f"server_metadata_url = {_toml(metadata)}",
            f"client_kwargs = {{ scope = {_toml(auth.scope)}, prompt = {_toml(auth.prompt)} }}",
            "",
            "[jwtriage_access]",
            f"issuer = {_toml(auth.issuer)}",
            f"user_claim = {_toml(auth.user_claim)}",
            f"groups_claim = {_toml(auth.groups_claim)}",
            f"allowed_users = {_toml(list(auth.allowed_users))}",
            f"allowed_groups = {_toml(list(auth.allowed_groups))}",
            "",
        ]
    )


def write_secrets(auth: DashboardAuthConfig) -> Path:
    """The secrets file in a new private directory (0700; the file 0600); the caller removes the directory."""
    directory = Path(tempfile.mkdtemp(prefix="jwtriage-dashboard-"))
    path = directory / "secrets.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets_toml(auth))
    return path


def streamlit_command(
    app: Path, db: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, secrets_file: Path | None = None
) -> list[str]:
    login = ["--secrets.files", str(secrets_file)] if secrets_file is not None else []
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        *login,
        *("--client.toolbarMode", "viewer"),  # no "Deploy" button or developer menu for on-call viewers
        "--",
        "--db",
        str(db),
    ]


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, not {port}")
    return port


def cmd_dashboard(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    found = dashboards_dir()
    app = found / "app.py" if found else None
    if app is None or not app.is_file():
        where = f"no {app}" if app else "no importable `dashboards` package"
        raise UsageError(f"the dashboard is missing: {where}; reinstall jwtriage (`pip install .` in a checkout)")
    if importlib.util.find_spec("streamlit") is None:
        raise UsageError("streamlit is not installed in this environment: pip install streamlit")
    db = store_path(args).absolute()
    auth = auth_config(args)
    if auth is None and not is_loopback(args.host) and not args.insecure_no_login:
        raise UsageError(
            f"refusing to serve on {args.host} without login: anyone who can reach it would see every service, "
            "kid and failure (hint: configure [dashboard.auth] (docs/SECURITY.md), or bind 127.0.0.1)"
        )
    if auth is not None and importlib.util.find_spec("authlib") is None:
        raise UsageError("[dashboard.auth] needs Authlib for Streamlit's login: pip install 'Authlib>=1.3.2'")
    if not db.exists():
        print(f"jwtriage: no store at {db} yet; the dashboard says how to create one", file=sys.stderr)
    if auth is None and not is_loopback(args.host):
        print(
            f"jwtriage: WARNING: --insecure-no-login: serving on {args.host} with no login; anyone who can reach "
            "it sees the dashboard",
            file=sys.stderr,
        )
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    login = f"login via {auth.issuer}" if auth is not None else "no login"
    print(f"jwtriage dashboard: http://{url_host}:{args.port} (store {db}; {login}); Ctrl-C stops it", file=stdout)
    stdout.flush()
    env = {**os.environ, "JWTRIAGE_DB": str(db)}
    secrets_file = write_secrets(auth) if auth is not None else None
    try:
        child = subprocess.Popen(streamlit_command(app, db, args.host, args.port, secrets_file), env=env)
        return _serve(child)
    finally:
        if secrets_file is not None:
            shutil.rmtree(secrets_file.parent, ignore_errors=True)


def _serve(child: subprocess.Popen[bytes]) -> int:
    def stop(signum: int, frame: Any) -> None:
        child.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached streamlit too (same process group); give it a moment to shut down.
        _reap(child)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        _reap(child)
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code


def _reap(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dashboard",
        help="serve the Streamlit dashboard on a store (http://127.0.0.1:8501)",
        description="Serve the dashboard (overview, rotations, triage, live) on the store named by --db, "
        "else $JWTRIAGE_DB, else the config's store, else ./jwtriage.duckdb. It only reads the store, with "
        "short read-only connections, so it can run while a consumer writes. Create a store to look at with "
        "`jwtriage demo`.",
    )
    parser.add_argument("--db", help="the store to show (default: $JWTRIAGE_DB, the config's, or ./jwtriage.duckdb)")
    parser.add_argument(
        "--config", help="config TOML: the store and [dashboard.auth] login (default: $JWTRIAGE_CONFIG)"
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only)"
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--insecure-no-login",
        action="store_true",
        help="serve on a non-loopback --host without [dashboard.auth] login (refused otherwise): only behind "
        "something else that authenticates, or inside a container whose port is published on loopback",
    )
    parser.set_defaults(handler=cmd_dashboard)
