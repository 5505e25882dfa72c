#!/usr/bin/env bash
# Stop what scripts/lake-up.sh started (its PostgreSQL and its moto_server); the data stays in .lake/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LAKE_STATE:-$ROOT/.lake}"
if [ -s "$STATE/moto.pid" ]; then kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true; rm -f "$STATE/moto.pid"; fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -n "$PGBIN" ] || exit 0
if [ -s "$STATE/pg/PG_VERSION" ]; then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STATE/pg" -m fast stop >/dev/null 2>&1 || true
  else "$PGBIN/pg_ctl" -D "$STATE/pg" -m fast stop >/dev/null 2>&1 || true; fi
fi
