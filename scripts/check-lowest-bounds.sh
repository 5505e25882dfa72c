#!/usr/bin/env bash
# Proves the lower bounds in pyproject.toml: installs jwtriage with every direct dependency at
# its lowest allowed version (uv's --resolution lowest-direct; indirect ones resolve as usual)
# into a fresh venv in a temp dir, then runs the fast tests with it, and with WITH_KAFKA=1 the
# consumer's Kafka tests too (they need the local broker: make kafka-up; they alone prove the
# kafka-python bound). Needs PyPI. CI runs it once, after make test, while the broker is up.
# PYTHON picks the interpreter (default python3); KEEP=1 keeps the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/jwtriage-lowest.XXXXXX")
if [[ "${KEEP:-0}" != 1 ]]; then
    trap 'rm -rf "$work"' EXIT
fi
venv="$work/venv"

started=$SECONDS
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --resolution lowest-direct '.[dev]'
echo "lowest-direct install into $venv ($((SECONDS - started)) s):"
"$venv/bin/uv" pip freeze --python "$venv/bin/python" | grep -v '^jwtriage' | paste -sd' ' -

# The checkout's code against the installed dependencies; -p no:cacheprovider leaves no cache behind.
"$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not kafka and not browser"
if [[ "${WITH_KAFKA:-0}" == 1 ]]; then
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -m kafka \
        tests/test_kafka_broker.py tests/test_consume_kafka.py tests/test_jwks_watch.py tests/test_metrics.py
fi
echo "lowest bounds hold ($((SECONDS - started)) s in all)"
