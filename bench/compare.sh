#!/usr/bin/env bash
# tinymq next to nats-server and mosquitto, same workloads, one run, one
# load generator speaking each broker's own protocol (`tinymq bench
# --protocol tinymq|nats|mqtt`), 64-byte payloads, no acknowledgements:
#
#   bench/compare.sh
#
# For each broker, started here on its own free loopback port with its
# default settings (tinymq: `broker --in-memory --no-http`, default
# threads; and a second tinymq for its MQTT listener, `--mqtt`):
#   - delivered msgs/s, 1 publisher -> 1 subscriber and 1 -> 4 (best of RUNS)
#   - p50/p99 latency at 10k msg/s, 1 -> 1 (the run with the best p99 of RUNS)
#   - the broker's RSS per idle subscribed connection (--idle IDLE --pid PID)
#   - for the two MQTT brokers, delivered msgs/s at QoS 1, 1 -> 1 and 1 -> 4
#     (mosquitto with `max_queued_messages 0`: by default it drops QoS 1
#     messages past 1000 queued for a subscriber)
# then prints a Markdown table and the versions. The commands run are in
# the log directory's commands.txt. On a shared machine the figures are
# indicative: compare the brokers as ratios within one run.
#
# Needs nats-server and mosquitto (apt-get install nats-server mosquitto;
# stop the mosquitto service the package starts, or leave it: nothing here
# uses port 1883).
#
# Settings (environment):
#   RUNS=3                 runs per throughput and latency figure
#   COUNT=2000000          messages per throughput run, tinymq and nats
#   MQTT_COUNT=200000      the same for mosquitto (about ten times slower)
#   RATE=10000 LAT_COUNT=30000   the latency runs: msg/s, messages
#   IDLE=10000             idle subscribed connections (raises ulimit -n)
#   SIZE=64                payload bytes
#   BROKER_CPUS= BENCH_CPUS=   taskset CPU lists (empty: no pinning)
#   MOSQUITTO_NODELAY=1    add `set_tcp_nodelay true` to mosquitto's config (its
#                          default, off, leaves Nagle's algorithm on its sockets)
#   TINYMQ_ARGS=           extra tinymq broker flags, e.g. "--threads 1"
#   NO_BUILD=1             skip cargo build --release
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=$PWD/target/release/tinymq
RUNS=${RUNS:-3}
COUNT=${COUNT:-2000000}
MQTT_COUNT=${MQTT_COUNT:-200000}
RATE=${RATE:-10000}
LAT_COUNT=${LAT_COUNT:-30000}
IDLE=${IDLE:-10000}
SIZE=${SIZE:-64}
BROKER_CPUS=${BROKER_CPUS:-}
BENCH_CPUS=${BENCH_CPUS:-}

# Debian installs both brokers in /usr/sbin, not on every user's PATH.
export PATH=$PATH:/usr/sbin:/usr/local/sbin
for tool in nats-server mosquitto python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nats-server mosquitto python3)" >&2; exit 1; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release -p tinymq-bin >&2

# Each idle connection is a descriptor in the bench and one in the broker.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 100)) ]; then
    echo "ulimit -n is $(ulimit -n): too low for IDLE=$IDLE" >&2; exit 1
fi

OUT=$(mktemp -d /tmp/tinymq-compare.XXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pin() { if [ -n "$1" ]; then echo taskset -c "$1"; fi; }

# start NAME CMD...: runs a broker in the background, records its pid.
# taskset execs the broker, so $! is the broker's own pid either way.
start() {
    local name=$1; shift
    echo "+ $(pin "$BROKER_CPUS") $*" >>"$OUT/commands.txt"
    $(pin "$BROKER_CPUS") "$@" >"$OUT/$name.log" 2>&1 &
    pids+=($!)
    eval "pid_$name=$!"
}
wait_port() {
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "nothing listens on 127.0.0.1:$1; logs in $OUT" >&2; exit 1
}

port_tinymq=$(free_port); port_nats=$(free_port); port_mqtt=$(free_port); port_tmqtt=$(free_port)
# TINYMQ_ARGS: extra broker flags, e.g. "--threads 1" (word-split on purpose).
# shellcheck disable=SC2086
start tinymq "$BIN" broker --in-memory --no-http --address "127.0.0.1:$port_tinymq" ${TINYMQ_ARGS:-}
# Its MQTT face in a broker of its own, so each figure of memory per idle
# connection is its own broker's.
# shellcheck disable=SC2086
start tmqtt "$BIN" broker --in-memory --no-http --address "127.0.0.1:$(free_port)" --mqtt "127.0.0.1:$port_tmqtt" ${TINYMQ_ARGS:-}
start nats nats-server -a 127.0.0.1 -p "$port_nats"
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$port_mqtt" >"$OUT/mosquitto.conf"
[ -z "${MOSQUITTO_NODELAY:-}" ] || echo 'set_tcp_nodelay true' >>"$OUT/mosquitto.conf"
start mqtt mosquitto -c "$OUT/mosquitto.conf"
for port in "$port_tinymq" "$port_nats" "$port_mqtt" "$port_tmqtt"; do wait_port "$port"; done

bench() {
    echo "+ $(pin "$BENCH_CPUS") target/release/tinymq bench $*" >>"$OUT/commands.txt"
    $(pin "$BENCH_CPUS") "$BIN" bench "$@" 2>>"$OUT/bench-progress.log"
}
# try ARGS...: the bench's output, or nothing when the run failed (a
# broker may disconnect a subscriber that falls behind); the failure is
# shown and counted, and the figure is taken from the runs that succeeded.
try() {
    local out
    if out=$(bench "$@"); then echo "$out"; else
        echo "  a run failed: $(tail -1 "$OUT/bench-progress.log")" >&2
        echo "failed" >>"$OUT/failures"
    fi
}
# The figure after FIELD on the line starting with it ("delivered: 812345 msg/s").
figure() { awk -v f="$1" '$1 == f { print $2 + 0 }'; }
# The larger of two figures, either possibly empty (a failed run).
max() { printf '%s\n%s\n' "$1" "$2" | { grep . || true; } | sort -g | tail -1; }

declare -A one four lat rss fails q1one q1four
# tmqtt is tinymq's MQTT listener, driven as mosquitto is.
for target in tinymq nats tmqtt mqtt; do
    protocol=$target; [ "$target" = tmqtt ] && protocol=mqtt
    eval "port=\$port_$target pid=\$pid_$target"
    count=$COUNT; [ "$target" = mqtt ] && count=$MQTT_COUNT
    flags=(--protocol "$protocol" --address "127.0.0.1:$port" --size "$SIZE" --timeout 30)
    echo "== $target on 127.0.0.1:$port (pid $pid)" >&2
    : >"$OUT/failures"
    best1="" best4="" bestp99="" q1best1="" q1best4=""
    lat[$target]=failed
    for run in $(seq "$RUNS"); do
        d1=$(try "${flags[@]}" --count "$count" --subscribers 1 | figure delivered:)
        d4=$(try "${flags[@]}" --count "$count" --subscribers 4 | figure delivered:)
        latency=$(try "${flags[@]}" --count "$LAT_COUNT" --rate "$RATE" --subscribers 1 | grep '^latency:' || true)
        p50=$(echo "$latency" | awk '{ print $3 }'); p99=$(echo "$latency" | awk '{ print $6 }')
        echo "  run $run: 1->1 ${d1:-failed}/s, 1->4 ${d4:-failed}/s, at $RATE/s p50 ${p50:--} us p99 ${p99:--} us" >&2
        best1=$(max "$best1" "$d1")
        best4=$(max "$best4" "$d4")
        if [ -n "$p99" ] && { [ -z "$bestp99" ] || [ "$p99" -lt "$bestp99" ]; }; then
            bestp99=$p99
            lat[$target]="$p50 / $p99 µs"
        fi
        if [ "$protocol" = mqtt ]; then
            q1=$(try "${flags[@]}" --qos 1 --count "$MQTT_COUNT" --subscribers 1 | figure delivered:)
            q4=$(try "${flags[@]}" --qos 1 --count "$MQTT_COUNT" --subscribers 4 | figure delivered:)
            echo "  run $run at QoS 1: 1->1 ${q1:-failed}/s, 1->4 ${q4:-failed}/s" >&2
            q1best1=$(max "$q1best1" "$q1") q1best4=$(max "$q1best4" "$q4")
        fi
    done
    one[$target]=$best1 four[$target]=$best4 q1one[$target]=$q1best1 q1four[$target]=$q1best4
    fails[$target]=$(wc -l <"$OUT/failures")
    per=$(try "${flags[@]}" --idle "$IDLE" --pid "$pid" | awk '/^RSS per idle/ { print $(NF-1) }')
    rss[$target]=$(if [ -n "$per" ]; then awk -v b="$per" 'BEGIN { printf "%.1f KB", b / 1000 }'; else echo failed; fi)
    echo "  idle: ${per:-failed} bytes per connection" >&2
done

human() {
    if [ -z "$1" ]; then echo failed; return; fi
    awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%.2fM", n / 1e6; else printf "%.0fk", n / 1e3 }'
}
echo
echo "$SIZE-byte payloads; delivered msgs/s best of $RUNS; latency: the run with the best p99 of $RUNS,"
echo "1 -> 1 at $RATE msg/s; RSS: the broker's growth per idle subscribed connection over $IDLE."
[ -z "${MOSQUITTO_NODELAY:-}" ] || echo "mosquitto with set_tcp_nodelay true."
echo "Failed runs (a subscriber disconnected or short of messages) count for nothing:"
echo "tinymq ${fails[tinymq]}, nats ${fails[nats]} of $((3 * RUNS)) each; tinymq MQTT ${fails[tmqtt]},"
echo "mosquitto ${fails[mqtt]} of $((5 * RUNS)) each (their QoS 1 runs included)."
echo
echo "| broker | 1 pub → 1 sub | 1 pub → 4 subs | p50 / p99 @ $((RATE / 1000))k msg/s | RSS per idle conn | QoS 1: 1 → 1 | QoS 1: 1 → 4 |"
echo "|--------|--------------:|---------------:|-------------------:|------------------:|-------------:|-------------:|"
for target in tinymq nats tmqtt mqtt; do
    version=$("$BIN" --version | awk '{ print $2 }')
    case $target in
        tinymq) name="tinymq $version${TINYMQ_ARGS:+ ($TINYMQ_ARGS)}" ;;
        tmqtt) name="tinymq $version, MQTT 3.1.1" ;;
        nats) name="nats-server $(nats-server --version | sed 's/.*v//')" ;;
        mqtt) name="mosquitto $({ mosquitto -h 2>&1 || true; } | awk '/version/ { v = $3 } END { print v }')" ;;
    esac
    q1="-" q4="-"
    if [ "$target" = tmqtt ] || [ "$target" = mqtt ]; then q1=$(human "${q1one[$target]}") q4=$(human "${q1four[$target]}"); fi
    echo "| $name | $(human "${one[$target]}") | $(human "${four[$target]}") | ${lat[$target]} | ${rss[$target]} | $q1 | $q4 |"
done
echo
echo "commands: $OUT/commands.txt"
