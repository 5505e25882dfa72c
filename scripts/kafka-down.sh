#!/usr/bin/env bash
# Stop the local Kafka broker started by scripts/kafka-up.sh: SIGTERM to the pid in
# .kafka/kafka.pid (a clean shutdown), SIGKILL if it is still alive after 30 s.
# Idempotent: nothing running is not an error.
#
#   scripts/kafka-down.sh          stop the broker, keep its data
#   scripts/kafka-down.sh --wipe   stop it and delete .kafka/data (topics, offsets,
#                                  cluster id); the jar cache .kafka/lib is kept
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.kafka"
PROPS="$CACHE/server.properties"
PIDFILE="$CACHE/kafka.pid"
GRACE=30

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0"; }

wipe=0
for arg in "$@"; do
    case "$arg" in
    --wipe) wipe=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

# Our broker's pid, if .kafka/kafka.pid names a live `kafka.Kafka` started from this
# tree (so a stale pid file never makes us signal an unrelated process).
our_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF "kafka.Kafka $PROPS" || return 1
    echo "$pid"
}

# Waits up to $2 seconds for pid $1 to exit.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.2
    done
    ! kill -0 "$1" 2>/dev/null
}

if pid="$(our_pid)"; then
    start=$SECONDS
    kill -TERM "$pid" 2>/dev/null || true
    if wait_gone "$pid" "$GRACE"; then
        echo "kafka-down: stopped the broker (pid $pid) in $((SECONDS - start))s"
    else
        echo "kafka-down: the broker (pid $pid) ignored SIGTERM for ${GRACE}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || { echo "kafka-down: pid $pid survived SIGKILL" >&2; exit 1; }
        echo "kafka-down: killed the broker (pid $pid)"
    fi
else
    echo "kafka-down: no broker of ours is running"
fi
rm -f "$PIDFILE"

port="${KAFKA_PORT:-9092}"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "kafka-down: note: something still listens on 127.0.0.1:$port (not started by this tree's kafka-up)" >&2
fi

if ((wipe)); then
    rm -rf "$CACHE/data"
    echo "kafka-down: deleted .kafka/data (the jar cache is kept)"
fi
