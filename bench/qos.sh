#!/usr/bin/env bash
# Acknowledged delivery (QoS 1), 1 publisher -> 1 persistent subscriber,
# interleaved rounds: mosquitto with persistence, and each tinymq binary
# given on its MQTT face and binary face under `--durability immediate`
# and `batched`. A fresh broker and data directory per run.
#
#   bench/qos.sh NEW_BINARY [OLD_BINARY]
#
# Prints one line per run: what ran, acknowledged msg/s, delivered p50 /
# p99. Settings (environment): ROUNDS=3, COUNT=300000, SIZE=64,
# MOSQUITTO=mosquitto (empty: skip it). The bench is NEW_BINARY's.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 NEW_BINARY [OLD_BINARY]" >&2; exit 2; }
NEW=$1 OLD=${2:-}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-300000}
SIZE=${SIZE:-64}
MOSQUITTO=${MOSQUITTO-mosquitto}
BENCH=$NEW
WORK=$(mktemp -d /tmp/tinymq-qos.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; return 1
}

# report NAME OUTPUT: acknowledged msg/s and the latency line of a bench run.
report() {
    local rate lat
    rate=$(echo "$2" | awk '$1 == "acknowledged:" { print $2; exit }')
    lat=$(echo "$2" | awk '/p50/ { print; exit }')
    printf '%-28s %12s   %s\n' "$1" "${rate:-failed}" "$lat"
}

# tinymq NAME BINARY FACE DURABILITY
tinymq() {
    local port mport dir pid out
    port=$(free_port); mport=$(free_port); dir="$WORK/data-$RANDOM"
    "$2" broker --data "$dir" --durability "$4" --no-http --address "127.0.0.1:$port" \
        --mqtt "127.0.0.1:$mport" 2>"$WORK/broker.log" &
    pid=$!
    wait_port "$mport"
    if [ "$3" = mqtt ]; then
        out=$("$BENCH" bench --protocol mqtt --address "127.0.0.1:$mport" --qos 1 --count "$COUNT" --size "$SIZE" 2>&1 || true)
    else
        out=$("$BENCH" bench --address "127.0.0.1:$port" --qos 1 --count "$COUNT" --size "$SIZE" 2>&1 || true)
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    report "$1 $3 $4" "$out"
}

mosquitto_run() {
    local port dir pid out
    port=$(free_port); dir="$WORK/mosq-$RANDOM"; mkdir -p "$dir"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nmax_inflight_messages 1024\n' \
        "$port" "$dir" >"$WORK/mosq.conf"
    "$MOSQUITTO" -c "$WORK/mosq.conf" 2>/dev/null &
    pid=$!
    wait_port "$port"
    out=$("$BENCH" bench --protocol mqtt --address "127.0.0.1:$port" --qos 1 --count "$COUNT" --size "$SIZE" 2>&1 || true)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    report "mosquitto" "$out"
}

echo "# $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    echo "# round $round"
    [ -n "$MOSQUITTO" ] && mosquitto_run
    for face in mqtt binary; do
        for durability in immediate batched; do
            [ -n "$OLD" ] && tinymq old "$OLD" "$face" "$durability"
            tinymq new "$NEW" "$face" "$durability"
        done
    done
done
echo "# $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
