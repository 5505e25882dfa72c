#!/usr/bin/env bash
# Installs jwtriage as the Dockerfile does (`pip install .`, not editable) into a fresh venv outside
# the checkout, then, from another directory: `jwtriage --version`, a demo store, every dashboard
# page rendered from the installed app, and `jwtriage dashboard` serving until /_stcore/health
# answers 200. Needs PyPI. CI runs it once, after make test. PYTHON picks the interpreter
# (default python3); KEEP=1 keeps the temp dir.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/jwtriage-install.XXXXXX")
dashboard_pid=
cleanup() {
    if [[ -n "$dashboard_pid" ]] && kill -0 "$dashboard_pid" 2>/dev/null; then
        kill "$dashboard_pid" && wait "$dashboard_pid" || true
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "check-install: $*" >&2; exit 1; }
command -v curl >/dev/null || fail "needs curl"

started=$SECONDS
# What the Dockerfile copies, built from a copy: an in-tree build would leave build/ in the checkout,
# and a stale build/ can put deleted modules into later wheels.
mkdir -p "$work/src" "$work/elsewhere"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/pipeline" "$repo/dashboards" "$work/src/"
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work/src"
rm -rf "$work/src"  # nothing below may read the sources
echo "installed into $work/venv ($((SECONDS - started)) s)"

cd "$work/elsewhere"
jwtriage="$work/venv/bin/jwtriage"
expected=$("$work/venv/bin/python" -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['project']['version'])" "$repo/pyproject.toml")
version=$("$jwtriage" --version)
[[ "$version" == "jwtriage $expected" ]] || fail "jwtriage --version printed '$version', not 'jwtriage $expected'"
echo "$version"

db="$work/demo.duckdb"
"$jwtriage" demo --events 2000 --db "$db" >"$work/demo.log" || { cat "$work/demo.log"; fail "jwtriage demo failed"; }
echo "demo store: $db"

# Every page of the installed app, in Streamlit's AppTest: the app must import dashboards.* and
# pipeline.* from site-packages (the health check below only proves the server is up).
JWTRIAGE_DB="$db" "$work/venv/bin/python" - <<'PY'
import sys
from pathlib import Path

import dashboards
import pipeline
from streamlit.testing.v1 import AppTest

site = Path(pipeline.__file__).parent.parent
assert Path(dashboards.__file__).parent.parent == site and "site-packages" in site.parts, site
app = site / "dashboards" / "app.py"
at = AppTest.from_file(str(app), default_timeout=60)
at.run()
for page in sorted(p.relative_to(app.parent).as_posix() for p in (app.parent / "views").glob("*.py")):
    at.switch_page(page).run()
    if at.exception:
        sys.exit(f"check-install: {page} raised: {at.exception[0].value}")
    print(f"page {page}: {len(at.main)} elements, no exception")
PY

port=$("$work/venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$jwtriage" dashboard --db "$db" --port "$port" >"$work/dashboard.log" 2>&1 &
dashboard_pid=$!
url="http://127.0.0.1:$port/_stcore/health"
for _ in $(seq 60); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
    [[ "$code" == 200 ]] && break
    kill -0 "$dashboard_pid" 2>/dev/null || { cat "$work/dashboard.log"; fail "jwtriage dashboard exited"; }
    sleep 1
done
[[ "$code" == 200 ]] || { cat "$work/dashboard.log"; fail "$url answered '$code' after 60 s"; }
echo "jwtriage dashboard: $url answered 200"

kill "$dashboard_pid"
wait "$dashboard_pid" || { cat "$work/dashboard.log"; fail "jwtriage dashboard did not stop cleanly on SIGTERM"; }
dashboard_pid=
curl -s -o /dev/null "$url" && fail "streamlit still answers after jwtriage dashboard stopped"
echo "install check passed ($((SECONDS - started)) s)"
