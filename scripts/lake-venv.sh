#!/usr/bin/env bash
# The lake's own virtual environment (.lake/venv): jwtriage with the `lake` extra, whose DuckDB
# extension wheels pin DuckDB 1.5.x, plus moto's S3 server for the local lake. Kept apart from
# .venv so the rest of the suite runs on the DuckDB the project otherwise resolves to.
# Idempotent: reinstalls only when pyproject.toml changed. Prints the venv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LAKE_STATE:-$ROOT/.lake}"
VENV="${LAKE_VENV:-$STATE/venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
mkdir -p "$STATE"
if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[lake]" "moto[server]>=5.0" >&2
  touch "$STAMP"
fi
echo "$VENV/bin/python"
