#!/usr/bin/env bash
# Start what the lake store needs, locally: PostgreSQL (the DuckLake catalog) and an S3-compatible server
# (moto_server, from the lake venv), each with its state under .lake/ and on a non-default port.
# Returns once both accept connections; prints the settings to use. Idempotent: a running one is kept.
#   LAKE_PG_PORT (55432), LAKE_S3_PORT (55900), LAKE_VENV (.lake/venv: scripts/lake-venv.sh makes it)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${LAKE_STATE:-$ROOT/.lake}"
PG_PORT="${LAKE_PG_PORT:-55432}"
S3_PORT="${LAKE_S3_PORT:-55900}"
VENV="${LAKE_VENV:-$STATE/venv}"
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ]; then  # Debian's PostgreSQL (the apt-get the project's machines allow as root)
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  else
    echo "lake-up: PostgreSQL is not installed (sudo apt-get install postgresql)" >&2; exit 1
  fi
fi
PGBIN="$(pg_bin)"
mkdir -p "$STATE"

as_pg() {  # PostgreSQL refuses to run as root: run its tools as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -s "$STATE/pg/PG_VERSION" ]; then
  mkdir -p "$STATE/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$STATE/pg" && chmod 700 "$STATE/pg"
  as_pg "$PGBIN/initdb" -D "$STATE/pg" -A trust -U jwtriage >/dev/null
fi
if ! as_pg "$PGBIN/pg_ctl" -D "$STATE/pg" status >/dev/null 2>&1; then
  if (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then  # not ours, yet something answers there
    echo "lake-up: port $PG_PORT is taken by another server (another clone's lake? its scripts/lake-down.sh" \
         "stops it; or set LAKE_PG_PORT and LAKE_S3_PORT)" >&2; exit 1
  fi
  as_pg "$PGBIN/pg_ctl" -D "$STATE/pg" -l "$STATE/pg/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $STATE/pg -c listen_addresses=127.0.0.1" start >/dev/null
fi
as_pg psql -h 127.0.0.1 -p "$PG_PORT" -U jwtriage -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'jwtriage'" \
  | grep -q 1 || as_pg psql -h 127.0.0.1 -p "$PG_PORT" -U jwtriage -d postgres -qc "CREATE DATABASE jwtriage"

if ! curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"; then
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$STATE/moto.log" 2>&1 &
  echo $! >"$STATE/moto.pid"
  for _ in $(seq 1 60); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.5; done
fi
curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" || { echo "moto_server did not start: $STATE/moto.log" >&2; exit 1; }
echo "postgres 127.0.0.1:$PG_PORT (user jwtriage, db jwtriage), s3 http://127.0.0.1:$S3_PORT"
