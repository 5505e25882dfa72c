"""`jwtriage dashboard`: serve the Streamlit dashboard (`dashboards/app.py`) on one store.

The app ships in the wheel as the top-level package `dashboards`, so it is found by import,
wherever jwtriage is installed (a checkout, `pip install .`, the Docker image).

The store is the one every reader uses (`--db`, else JWTRIAGE_DB, else the config's, else
./jwtriage.duckdb); it is passed to the app as JWTRIAGE_DB and as `-- --db PATH`. Streamlit
runs as a child process, bound to 127.0.0.1 unless `--host` says otherwise; stopping this
command (Ctrl-C, SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from pipeline.commands.common import store_path
from pipeline.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def dashboards_dir() -> Path | None:
    """Where the `dashboards` package is importable from (None when it is not installed)."""
    spec = importlib.util.find_spec("dashboards")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def streamlit_command(app: Path, db: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
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
    if not db.exists():
        print(f"jwtriage: no store at {db} yet; the dashboard says how to create one", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"jwtriage: serving on {args.host}: anyone who can reach it sees the dashboard (it has no login)",
            file=sys.stderr,
        )
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"jwtriage dashboard: http://{url_host}:{args.port} (store {db}); Ctrl-C stops it", file=stdout)
    stdout.flush()
    env = {**os.environ, "JWTRIAGE_DB": str(db)}
    child = subprocess.Popen(streamlit_command(app, db, args.host, args.port), env=env)

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
    parser.add_argument("--config", help="config TOML, only to find the store (default: $JWTRIAGE_CONFIG)")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only)"
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.set_defaults(handler=cmd_dashboard)
