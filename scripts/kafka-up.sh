#!/usr/bin/env bash
# Start the local single-node Apache Kafka broker (KRaft, broker+controller in one JVM)
# on 127.0.0.1:9092 for development, tests and CI; no Docker, no tarball.
#
#   - fetches the broker jars from Maven Central once (kafka-local/pom.xml -> .kafka/lib),
#   - formats .kafka/data once (StorageTool format --standalone),
#   - starts `java kafka.Kafka` in the background (pid in .kafka/kafka.pid,
#     log in .kafka/logs/kafka.log),
#   - returns only once the broker answers a Kafka Metadata request listing itself.
#
# Idempotent: if a broker already answers on the port it exits 0 at once.
# Stop it with scripts/kafka-down.sh (--wipe also deletes the data).
# Environment: KAFKA_PORT (default 9092), KAFKA_CONTROLLER_PORT (default 9093),
# KAFKA_HEAP_OPTS (default "-Xms256m -Xmx512m"), KAFKA_START_TIMEOUT (seconds, default 120).
# A second, test-only broker (tests/kafka_sasl_broker.py: SASL on its own ports) sets
# KAFKA_STATE_DIR (its data, logs, properties and pid; the jars stay in .kafka/lib),
# KAFKA_PROPERTIES_TEMPLATE, KAFKA_SASL_PORT and KAFKA_SSL_PORT (@SASL_PORT@, @SSL_PORT@ in it) and
# KAFKA_FORMAT_ARGS (more StorageTool format arguments, e.g. --add-scram ...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.kafka"
STATE="${KAFKA_STATE_DIR:-$CACHE}"
LIB="$CACHE/lib"
DATA="$STATE/data"
LOGS="$STATE/logs"
PROPS="$STATE/server.properties"
PIDFILE="$STATE/kafka.pid"
TEMPLATE="${KAFKA_PROPERTIES_TEMPLATE:-$ROOT/kafka-local/server.properties}"
POM="$ROOT/kafka-local/pom.xml"
HOST=127.0.0.1
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

die() { echo "kafka-up: $*" >&2; exit 1; }

# Milliseconds since the epoch (bash 5's EPOCHREALTIME; whole seconds on older bash).
now_ms() {
    if [[ -n "${EPOCHREALTIME:-}" ]]; then
        local t="${EPOCHREALTIME/[.,]/}"
        echo $((10#${t:0:${#t}-3}))
    else
        echo $(($(date +%s) * 1000))
    fi
}
elapsed() { local ms=$(($(now_ms) - $1)); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }

# Runs "$@" with a time limit where coreutils' timeout exists (not on stock macOS).
with_timeout() {
    if command -v timeout >/dev/null; then timeout "$@"; else shift; "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Sends a Kafka Metadata v4 request (all topics) and prints how many live brokers the
# reply lists; fails if nothing answering as Kafka listens on the port. A broker is
# only listed once it has registered with the controller and been unfenced, which is
# when it can really serve clients (and auto-create topics).
live_brokers() {
    local reply
    reply="$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/$HOST/$1" || exit 1
        # size=19 | api_key=3 (Metadata) | version=4 | correlation_id=1 | client_id="ping"
        # | topics=null (-1: all) | allow_auto_topic_creation=false
        printf '\000\000\000\023\000\003\000\004\000\000\000\001\000\004ping\377\377\377\377\000' >&3
        # reply: size(4) correlation_id(4) throttle_time_ms(4) brokers.length(4) ...
        with_timeout 5 head -c 16 <&3 | od -An -tu1 -v
    )" || return 1
    # shellcheck disable=SC2086  # split the bytes on purpose
    set -- $reply
    [[ $# -eq 16 && "$5$6$7$8" == "0001" ]] || return 1
    echo $((($13 << 24) | ($14 << 16) | ($15 << 8) | $16))
}
broker_ready() { local n; n="$(live_brokers "$1")" && ((n > 0)); }

# Our broker's pid, if .kafka/kafka.pid names a live `kafka.Kafka` started from this tree.
our_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    ps -ww -o args= -p "$pid" 2>/dev/null | grep -qF "kafka.Kafka $PROPS" || return 1
    echo "$pid"
}

kafka_version() {
    local jar
    for jar in "$LIB"/kafka_2.13-*.jar; do
        jar="${jar##*/kafka_2.13-}"
        echo "${jar%.jar}"
        return
    done
}

START_MARK="---- kafka-up: starting the broker"

# The last 30 lines the broker logged since this start (see launch's marker line).
log_tail() {
    echo "---- last 30 lines of $LOGS/kafka.log ----" >&2
    if [[ -f "$LOGS/kafka.log" ]]; then
        awk -v mark="$START_MARK" 'index($0, mark) == 1 { n = 0 } { buf[n++] = $0 }
            END { for (i = (n > 30 ? n - 30 : 0); i < n; i++) print buf[i] }' "$LOGS/kafka.log" >&2
    else
        echo "(no log yet)" >&2
    fi
    if [[ -s "$LOGS/kafka.out" ]]; then
        echo "---- last 30 lines of $LOGS/kafka.out (JVM stdout/stderr) ----" >&2
        tail -n 30 "$LOGS/kafka.out" >&2
    fi
}

# 1. Fetch the jars with Maven (once; again only when kafka-local/pom.xml changes).
resolve_jars() {
    local stamp="$LIB/.pom.cksum" want tmp
    want="$(cksum <"$POM")"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: Maven 3.8+ is needed to fetch the Kafka jars"
    echo "kafka-up: fetching the Kafka jars from Maven Central into ${LIB#"$ROOT"/} (once) ..."
    tmp="$CACHE/lib.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" \
        >"$LOGS/mvn.log" 2>&1; then
        cat "$LOGS/mvn.log" >&2
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (see above)"
    fi
    echo "$want" >"$tmp/.pom.cksum"
    rm -rf "$LIB"
    mv "$tmp" "$LIB"
}

# 2. Render kafka-local/server.properties with this tree's paths and ports.
render_props() {
    sed -e "s|@DATA_DIR@|$DATA|g" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@SASL_PORT@|${KAFKA_SASL_PORT:-}|g" -e "s|@SSL_PORT@|${KAFKA_SSL_PORT:-}|g" "$TEMPLATE" >"$PROPS"
}

JAVA_OPTS=(
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$ROOT/kafka-local/log4j2.yaml"
    -Dkafka.logs.dir="$LOGS"
)

# 3. Format the storage once (a new cluster id, a standalone dynamic controller quorum).
format_storage() {
    [[ -f "$DATA/meta.properties" ]] && return 0
    local cluster_id extra=()
    read -r -a extra <<<"${KAFKA_FORMAT_ARGS:-}"
    rm -rf "$DATA" # never formatted, so nothing in it is usable
    cluster_id="$(java "${JAVA_OPTS[@]}" -cp "$LIB/*" kafka.tools.StorageTool random-uuid)"
    if ! java "${JAVA_OPTS[@]}" -cp "$LIB/*" kafka.tools.StorageTool format --standalone \
        -t "$cluster_id" -c "$PROPS" "${extra[@]}" >"$LOGS/format.log" 2>&1; then
        cat "$LOGS/format.log" >&2
        die "formatting $DATA failed (see above)"
    fi
    echo "kafka-up: formatted ${DATA#"$ROOT"/} (cluster id $cluster_id)"
}

# 4. Start the broker in the background, detached from this shell and its terminal.
launch() {
    local heap detach=()
    read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
    command -v setsid >/dev/null && detach=(setsid)
    echo "$START_MARK at $(date '+%Y-%m-%d %H:%M:%S') ----" >>"$LOGS/kafka.log"
    # No job control in a script, so setsid execs in place and $! is the java pid.
    # 9>&-: the broker must not inherit (and so keep holding) the kafka-up lock.
    nohup "${detach[@]}" java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "${JAVA_OPTS[@]}" \
        -cp "$LIB/*" kafka.Kafka "$PROPS" >"$LOGS/kafka.out" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDFILE"
}

# ---------------------------------------------------------------------------------------

command -v java >/dev/null || die "java not found: Java 17+ is needed"
mkdir -p "$CACHE" "$STATE" "$LOGS"

# Serialise concurrent kafka-up calls (e.g. make -j): the second waits for the first.
if command -v flock >/dev/null; then
    exec 9>"$CACHE/up.lock"
    flock -w "$((TIMEOUT + 300))" 9 || die "timed out waiting for another kafka-up to finish"
fi

t0="$(now_ms)"

if broker_ready "$PORT"; then
    echo "kafka-up: Kafka already running on $HOST:$PORT"
    exit 0
fi

if pid="$(our_pid)"; then
    echo "kafka-up: broker (pid $pid) is still starting; waiting for it"
else
    if port_open "$PORT"; then
        die "$HOST:$PORT is in use by something that does not answer as a Kafka broker"
    fi
    if port_open "$CONTROLLER_PORT"; then
        die "controller port $HOST:$CONTROLLER_PORT is already in use"
    fi
    resolve_jars
    render_props
    format_storage
    launch
    pid="$(cat "$PIDFILE")"
fi

deadline=$(($(now_ms) + TIMEOUT * 1000))
until broker_ready "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PIDFILE"
        log_tail
        die "the broker (pid $pid) exited during start-up"
    fi
    if (($(now_ms) > deadline)); then
        log_tail
        die "the broker (pid $pid) did not answer on $HOST:$PORT within ${TIMEOUT}s; it is still running, stop it with scripts/kafka-down.sh"
    fi
    sleep 0.25
done

echo "kafka-up: Kafka $(kafka_version) listening on $HOST:$PORT (pid $pid, up in $(elapsed "$t0"), log ${LOGS#"$ROOT"/}/kafka.log)"
