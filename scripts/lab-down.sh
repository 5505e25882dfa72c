#!/usr/bin/env bash
# Stops whatever a lab run left running (only after a crash or kill -9 of the driver: a run stops
# everything it started itself). Each line of .lab/pids is "name pgid"; only those groups are signalled.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .lab/pids ] || exit 0
while read -r name pgid; do
  if kill -0 -- "-$pgid" 2>/dev/null; then
    echo "lab-down: stopping $name (process group $pgid)"
    kill -TERM -- "-$pgid" 2>/dev/null || true
  fi
done < .lab/pids
sleep 3
while read -r name pgid; do kill -KILL -- "-$pgid" 2>/dev/null || true; done < .lab/pids
rm -f .lab/pids
