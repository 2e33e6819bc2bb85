#!/usr/bin/env bash
# Soak test of the tinymq broker (outside CI: it runs for ten minutes).
#
#   bash tests/soak.sh                  # 600 s at half the measured maximum rate
#   DURATION=120 RATE=20000 bash tests/soak.sh
#
# What it does:
#  1. builds the release binary (cargo build --release -p tinymq-bin);
#  2. starts `tinymq broker --in-memory` on free loopback ports (binary
#     protocol and HTTP), two event-loop threads;
#  3. unless RATE is given, measures the maximum delivery rate for a few
#     with `tinymq bench` (one publisher, one subscriber, 3,000,000
#     messages of 64 bytes as fast as possible: its delivered rate) and
#     takes half of it;
#  4. for DURATION seconds (default 600) runs, at once:
#     - two `tinymq bench --rate RATE/2` slots (one publisher, one
#       subscriber each), each run lasting BENCH_SLICE seconds (default
#       30) before a new one connects, staggered: the steady load is RATE
#       messages a second, and publishers and subscribers come and go;
#     - churn: a loop of short-lived `tinymq sub --count 1` and
#       `tinymq pub` processes on their own topics, each connecting,
#       subscribing, receiving and leaving;
#     - HTTP churn: curl SUBSCRIBE, POST and PICKUP from fresh Moustique
#       clients, each once, then never again (the broker expires them);
#  5. samples the broker's VmRSS and open file descriptors every
#     SAMPLE_SECS (default 10) into target/soak-<date>.csv
#     (time_s,rss_kb,fds,threads,cpu_s) and prints each sample;
#  6. prints first, last and max, and exits 1 if, after the warm-up
#     (WARMUP seconds, default 60), RSS grew by more than RSS_TOLERANCE_KB
#     (default 8192) above its post-warm-up first sample, or fds by more
#     than FD_TOLERANCE (default 20), or the broker died, or a churn
#     client (sub, pub, curl) failed more than CHURN_FAILURES_MAX (default
#     5) times. Bench runs cut short (their subscriber fell behind and was
#     cut as a slow consumer) are counted and reported, not failures: on
#     a busy machine half the burst maximum may be more than it sustains.
#
# Needs curl. The machine should be otherwise idle for the figures to mean
# much; the pass/fail criteria are about growth, not speed.

set -euo pipefail

DURATION=${DURATION:-600}
SAMPLE_SECS=${SAMPLE_SECS:-10}
WARMUP=${WARMUP:-60}
RSS_TOLERANCE_KB=${RSS_TOLERANCE_KB:-8192}
FD_TOLERANCE=${FD_TOLERANCE:-20}
BENCH_SLICE=${BENCH_SLICE:-30}
CHURN_FAILURES_MAX=${CHURN_FAILURES_MAX:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}

cd "$ROOT"
cargo build --release --quiet -p tinymq-bin
BIN=${TINYMQ_BIN:-$ROOT/target/release/tinymq}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TCP=127.0.0.1:$(free_port)
HTTP=127.0.0.1:$(free_port)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [[ -n ${BROKER:-} ]] && kill "$BROKER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" broker --in-memory --address "$TCP" --http "$HTTP" --threads 2 --log-level warn \
    --peer-budget 0 --http-client-timeout 30 2>"$WORK/broker.log" &
BROKER=$!
for _ in $(seq 100); do
    curl -fs "http://$HTTP/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://$HTTP/api/v1/health" >/dev/null || { echo "broker did not start"; cat "$WORK/broker.log"; exit 1; }
echo "broker pid $BROKER on $TCP and http://$HTTP"

if [[ -z ${RATE:-} ]]; then
    echo "measuring the maximum rate (tinymq bench, 3,000,000 messages)..."
    "$BIN" bench --address "$TCP" --count 3000000 --size 64 --timeout 10 | tee "$WORK/max.txt"
    # "delivered: N msg/s (...)"
    MAX=$(awk '/^delivered:/ {print int($2)}' "$WORK/max.txt")
    if [[ -z $MAX || $MAX -eq 0 ]]; then
        echo "could not read a rate from tinymq bench; set RATE"; exit 1
    fi
    RATE=$((MAX / 2))
    echo "maximum ~$MAX msg/s; soaking at $RATE msg/s"
fi

# Steady load: two bench slots, each restarted every BENCH_SLICE seconds,
# each carrying half the rate, so one always runs while the other
# reconnects.
bench_slot() {
    local slot=$1 per=$(( (RATE + 1) / 2 ))
    local count=$(( per * BENCH_SLICE ))
    while true; do
        "$BIN" bench --address "$TCP" --rate "$per" --count "$count" --topic "soak/bench/$slot" \
            --subscribers 1 --timeout 5 >>"$WORK/bench-$slot.log" 2>&1 && echo ok >>"$WORK/bench-runs" \
            || echo failed >>"$WORK/bench-runs"
    done
}
# Binary churn: a subscriber and a publisher on a fresh topic, each a
# process that connects, does one thing and leaves.
churn_binary() {
    local n=0
    while true; do
        n=$((n + 1))
        local topic="soak/churn/$BASHPID/$n"
        timeout 10 "$BIN" sub --address "$TCP" --topic "$topic" --count 1 >/dev/null 2>&1 &
        local sub=$!
        # Publish until the subscriber has what it waits for.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            "$BIN" pub --address "$TCP" --topic "$topic" --message "m$n" >/dev/null 2>&1 || true
            kill -0 "$sub" 2>/dev/null || break
            sleep 0.05
        done
        wait "$sub" || echo fail >>"$WORK/churn-failures"
    done
}
# HTTP churn: Moustique clients that subscribe, post, pick up once each.
# Parameters are Moustique-encoded (Base64, then ROT13) in a form body.
menc() { printf '%s' "$1" | base64 -w0 | tr 'A-Za-z' 'N-ZA-Mn-za-m'; }
moustique() {
    local endpoint=$1; shift
    local args=()
    for param in "$@"; do args+=(--data-urlencode "${param%%=*}=$(menc "${param#*=}")"); done
    curl -fs -o /dev/null "${args[@]}" "http://$HTTP/$endpoint" || echo fail >>"$WORK/churn-failures"
}
churn_http() {
    local n=0
    while true; do
        n=$((n + 1))
        local client="soak-$BASHPID-$n"
        moustique SUBSCRIBE "topic=soak/http/#" "client=$client"
        moustique POST "topic=soak/http/$((n % 100))" "message=v$n" "from=$client"
        moustique PICKUP "client=$client"
        sleep 0.05
    done
}

bench_slot 1 & PIDS+=($!)
sleep $((BENCH_SLICE / 2))
bench_slot 2 & PIDS+=($!)
churn_binary & PIDS+=($!)
churn_binary & PIDS+=($!)
churn_http & PIDS+=($!)

sample() {
    local t=$1 rss fds threads ticks hz
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$BROKER/status")
    fds=$(ls "/proc/$BROKER/fd" | wc -l)
    ticks=$(awk '{print $14 + $15}' "/proc/$BROKER/stat")
    hz=$(getconf CLK_TCK)
    echo "$t,$rss,$fds,$threads,$(awk -v t="$ticks" -v h="$hz" 'BEGIN {printf "%.1f", t / h}')"
}

echo "time_s,rss_kb,fds,threads,cpu_s" | tee "$OUT"
start=$SECONDS
died=0
while true; do
    t=$((SECONDS - start))
    if ! kill -0 "$BROKER" 2>/dev/null; then died=1; echo "the broker died at ${t}s"; break; fi
    sample "$t" | tee -a "$OUT"
    ((t >= DURATION)) && break
    sleep "$SAMPLE_SECS"
done

for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
# No file when nothing failed: under pipefail a bare cat would end the script.
failures=$({ cat "$WORK/churn-failures" 2>/dev/null || true; } | wc -l)
echo
echo "samples in $OUT"
echo "broker log (warnings and errors):"; tail -n 20 "$WORK/broker.log" || true
echo "last bench reports:"; tail -n 6 "$WORK/bench-1.log" 2>/dev/null || true
awk -F, -v warm="$WARMUP" -v rtol="$RSS_TOLERANCE_KB" -v ftol="$FD_TOLERANCE" '
    NR == 1 { next }
    { n++; if (n == 1) { fr = $2; ff = $3; ft = $1 }
      lr = $2; lf = $3; lt = $1
      if ($2 > mr) { mr = $2; mrt = $1 } if ($3 > mf) { mf = $3; mft = $1 }
      if ($1 >= warm) { if (!w) { w = 1; wr = $2; wf = $3; wt = $1 }
                        if ($2 > wmr) wmr = $2; if ($3 > wmf) wmf = $3 } }
    END {
      printf "first (%ds): rss %d kB, fds %d\n", ft, fr, ff
      printf "last  (%ds): rss %d kB, fds %d\n", lt, lr, lf
      printf "max: rss %d kB (at %ds), fds %d (at %ds)\n", mr, mrt, mf, mft
      if (!w) { print "no sample after the warm-up"; exit 1 }
      printf "after warm-up (from %ds: rss %d kB, fds %d): max rss +%d kB (tolerance %d), max fds +%d (tolerance %d)\n", wt, wr, wf, wmr - wr, rtol, wmf - wf, ftol
      if (wmr - wr > rtol || wmf - wf > ftol) { print "FAIL: growth beyond tolerance"; exit 1 }
      print "OK: flat"
    }' "$OUT" && flat=1 || flat=0
bench_ok=$(grep -c ok "$WORK/bench-runs" 2>/dev/null || true)
bench_failed=$(grep -c failed "$WORK/bench-runs" 2>/dev/null || true)
echo "bench runs: ${bench_ok:-0} complete, ${bench_failed:-0} ended early (a subscriber that fell behind is"
echo "  cut as a slow consumer, Disconnect 7, when the machine cannot keep up)"
echo "slow-consumer disconnects logged: $(grep -c 'slow consumer' "$WORK/broker.log" || true)"
echo "churn failures: $failures (at most $CHURN_FAILURES_MAX)"
((died == 0)) || { echo "FAIL: the broker died"; exit 1; }
((flat == 1)) || exit 1
((failures <= CHURN_FAILURES_MAX)) || { echo "FAIL: churn clients failed"; exit 1; }
