#!/usr/bin/env bash
# Store benchmark: sustained stored-value updates per second and the
# latency of an acknowledged POST, for each durability mode.
#
#   bench/store/run.sh                # immediate and batched
#   bench/store/run.sh batched        # one mode
#
# For each mode and each topic count it starts a fresh broker with --data
# on a new temporary directory, runs
#   wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency -s bench/http/post.lua URL -- topics=N
# (every request a Moustique /POST, which stores the topic's value), and
# prints wrk's req/s, p50 and p99 of the acknowledged POSTs, then what
# reached the disk over the same window, from STATS read before and after:
# The rates divide by wrk's own run time: no write happens outside it (wrk
# builds its requests before the clock starts), and the figures after are
# read as soon as wrk returns.
#   durable/s   store_committed_writes: updates made durable per second
#               (a write replaced in the queue by a later one to the same
#               topic counts when that one commits)
#   records/s   store_records_written: records the commits wrote
#   commits/s   store_commits: transactions
#   drain ms    how long after the load the store took to commit every
#               write (how far durability lagged behind the acknowledgements)
# and the broker's VmRSS / VmHWM and the database file's size. With few
# topics (300) most updates in a batch replace one another, so records/s
# is far below durable/s; topics=100000 makes nearly every update its own
# record, so coalescing does not flatter the figure.
#
# Settings (environment):
#   DURATION=5s CONNS=50 WRK_THREADS=2 TOPICS="300 100000"
#   INTERVAL_MS=50               --commit-interval-ms for batched
#   BROKER_CPUS= WRK_CPUS=       taskset CPU lists (empty: no pinning)
#   OUT=/tmp/tinymq-store-bench.XXXX   wrk output, broker logs
#   NO_BUILD=1                   skip cargo build --release
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/target/release/tinymq
POST_LUA=$ROOT/bench/http/post.lua

DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-2}
TOPICS=${TOPICS:-300 100000}
INTERVAL_MS=${INTERVAL_MS:-50}
BROKER_CPUS=${BROKER_CPUS:-}
WRK_CPUS=${WRK_CPUS:-}
OUT=${OUT:-$(mktemp -d /tmp/tinymq-store-bench.XXXX)}
mkdir -p "$OUT"
MODES=${1:-all}
case $MODES in
  all) MODES="immediate batched" ;;
  immediate|batched) ;;
  *) echo "usage: $0 [immediate|batched|all]" >&2; exit 2 ;;
esac

for tool in wrk curl python3 sed awk; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install $tool)" >&2; exit 1; }
done
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p tinymq-bin >&2
fi

. "$ROOT/bench/lib.sh"

BROKER_PID=
DATA_DIR=
start_broker() { # start_broker MODE LOG
  local mode=$1 log=$2 args
  free_ports
  DATA_DIR=$(mktemp -d /tmp/tinymq-store-bench-data.XXXX)
  args=(broker --address "127.0.0.1:$TCP_PORT" --http "127.0.0.1:$HTTP_PORT" --data "$DATA_DIR" --durability "$mode")
  [ "$mode" = batched ] && args+=(--commit-interval-ms "$INTERVAL_MS")
  URL=http://127.0.0.1:$HTTP_PORT
  launch_broker "$log" "${args[@]}"
}

stop_broker() {
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
  [ -n "$DATA_DIR" ] && rm -rf "$DATA_DIR"
  DATA_DIR=
}
trap stop_broker EXIT

# store_figures -> "SECONDS committed_writes records_written commits failed_commits writes"
# (sed, not a JSON tool, to keep each poll short: drain_ms polls it)
store_figures() {
  local now stats key line
  now=$(date +%s.%N)
  stats=$(curl -sf "$URL/api/v1/stats")
  line=$now
  for key in store_committed_writes store_records_written store_commits store_failed_commits store_writes; do
    line="$line $(sed -n "s/.*\"$key\": *\([0-9]*\).*/\1/p" <<<"$stats")"
  done
  echo "$line"
}

# drain_ms START: polls STATS until every write is committed; prints the
# milliseconds since START (date +%s.%N).
drain_ms() {
  local start=$1 t c w
  for _ in $(seq 3000); do
    read -r t c _ _ _ w <<<"$(store_figures)"
    if [ "$c" -ge "$w" ]; then awk -v a="$start" -v b="$t" 'BEGIN {printf "%.0f", (b - a) * 1000}'; return; fi
    sleep 0.01
  done
  echo "over 30000"
}

# to_ms "158.00us" -> 0.158
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

rss() {
  awk '/^VmRSS|^VmHWM/ {printf "%s %s %s  ", $1, $2, $3}' "/proc/$BROKER_PID/status"
}

echo "output in $OUT"
echo "wrk -t$WRK_THREADS -c$CONNS -d$DURATION; broker cpus: ${BROKER_CPUS:-any}, wrk cpus: ${WRK_CPUS:-any}"
printf '%-10s %7s %10s %8s %8s %11s %10s %10s %9s  %s\n' \
  mode topics "req/s" "p50 ms" "p99 ms" "durable/s" "records/s" "commits/s" "drain ms" "memory, file, errors"
for mode in $MODES; do
  for topics in $TOPICS; do
    tag="$mode.t$topics"
    start_broker "$mode" "$OUT/broker.$tag.log"
    before=$(store_figures)
    echo "+ wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency -s $POST_LUA $URL -- topics=$topics" >>"$OUT/commands.txt"
    pin "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$POST_LUA" "$URL" -- "topics=$topics" \
      >"$OUT/wrk.$tag.txt" 2>&1
    after=$(store_figures)
    drain=$(drain_ms "${after%% *}")
    memory=$(rss)
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/wrk.$tag.txt")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$OUT/wrk.$tag.txt")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$OUT/wrk.$tag.txt")")
    errors=$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' "$OUT/wrk.$tag.txt")
    read -r t0 c0 r0 k0 f0 _ <<<"$before"
    read -r t1 c1 r1 k1 f1 _ <<<"$after"
    secs=$(awk '/requests in/ {v = $4; sub(/,$/, "", v);
      if (v ~ /ms$/) { sub(/ms$/, "", v); v /= 1000 } else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60 } else sub(/s$/, "", v);
      print v}' "$OUT/wrk.$tag.txt")
    rates=$(awk -v d="$secs" -v c="$((c1 - c0))" -v r="$((r1 - r0))" -v k="$((k1 - k0))" \
      'BEGIN { printf "%11.0f %10.0f %10.1f", c / d, r / d, k / d }')
    size=$(du -h "$DATA_DIR/tinymq.redb" | cut -f1)
    failed=$((f1 - f0))
    printf '%-10s %7s %10.0f %8s %8s %s %9s  %s file %s%s%s\n' "$mode" "$topics" "$rps" "$p50" "$p99" "$rates" \
      "$drain" "$memory" "$size" "${errors:+, $errors}" "$([ "$failed" -gt 0 ] && echo ", $failed failed commits")"
    if grep -Eq 'ERROR|WARN' "$OUT/broker.$tag.log"; then
      echo "  broker logged warnings/errors:"; grep -E 'ERROR|WARN' "$OUT/broker.$tag.log" | sort | uniq -c | head -5
    fi
    stop_broker
  done
done
echo "raw output: $OUT"
