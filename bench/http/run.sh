#!/usr/bin/env bash
# HTTP benchmark of the tinymq broker's Moustique-compatible API with wrk.
#
#   bench/http/run.sh                 # in-memory store, then redb (--data)
#   bench/http/run.sh memory          # only --in-memory
#   bench/http/run.sh redb            # only --data DIR (batched durability)
#
# For each store and each scenario (post, pickup-empty, pickup-loaded) and
# each connection count it starts a fresh broker on free ports, runs
#   wrk -t$WRK_THREADS -c$C -d$DURATION --latency -s SCRIPT URL
# $REPEAT times, prints req/s, p50 and p99 of every run, the best run and
# the spread, then the broker's VmRSS / VmHWM from /proc/PID/status, and
# stops the broker. pickup-loaded runs a rate-limited post.lua in the
# background (BG_CONNS connections, one POST per BG_DELAY_MS each) so that
# pickups return messages; a short extra PICKUP_STATS=1 run reports how
# many did.
#
# Settings (environment):
#   DURATION=10s REPEAT=3 CONNS="50 200" WRK_THREADS=2
#   SCENARIOS="post pickup-empty pickup-loaded"
#   BROKER_CPUS= WRK_CPUS=     taskset CPU lists (empty: no pinning)
#   BROKER_THREADS=            broker --threads (empty: its default, one per core)
#   BG_CONNS=4 BG_DELAY_MS=2   background POST load for pickup-loaded
#   PROFILE=0                  1: one extra -c50 run per scenario under
#                              perf record (cpu-clock), top symbols printed
#   OUT=/tmp/tinymq-http-bench.XXXX   raw wrk output, broker logs, profiles
#   NO_BUILD=1                 skip cargo build
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/target/release/tinymq
HERE=$ROOT/bench/http

DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
CONNS=${CONNS:-50 200}
WRK_THREADS=${WRK_THREADS:-2}
SCENARIOS=${SCENARIOS:-post pickup-empty pickup-loaded}
BROKER_CPUS=${BROKER_CPUS:-}
WRK_CPUS=${WRK_CPUS:-}
BROKER_THREADS=${BROKER_THREADS:-}
BG_CONNS=${BG_CONNS:-4}
BG_DELAY_MS=${BG_DELAY_MS:-2}
PROFILE=${PROFILE:-0}
OUT=${OUT:-$(mktemp -d /tmp/tinymq-http-bench.XXXX)}
mkdir -p "$OUT"
STORES=${1:-both}
case $STORES in
  both) STORES="memory redb" ;;
  memory|redb) ;;
  *) echo "usage: $0 [memory|redb|both]" >&2; exit 2 ;;
esac

if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing it with apt-get" >&2
  apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p tinymq-bin >&2
fi

. "$ROOT/bench/lib.sh"

BROKER_PID=
DATA_DIR=
start_broker() { # start_broker STORE LOG
  local store=$1 log=$2 args
  free_ports
  args=(broker --address "127.0.0.1:$TCP_PORT" --http "127.0.0.1:$HTTP_PORT" --log-level info)
  if [ "$store" = memory ]; then
    args+=(--in-memory)
  else
    DATA_DIR=${DATA_DIR:-$(mktemp -d /tmp/tinymq-http-bench-data.XXXX)}
    args+=(--data "$DATA_DIR" --durability batched)
  fi
  [ -n "$BROKER_THREADS" ] && args+=(--threads "$BROKER_THREADS")
  URL=http://127.0.0.1:$HTTP_PORT
  launch_broker "$log" "${args[@]}"
}

stop_broker() {
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
}
trap 'stop_broker; [ -n "${BG_PID:-}" ] && kill "$BG_PID" 2>/dev/null; true' EXIT

rss() {
  awk '/^VmRSS|^VmHWM/ {printf "%s %s %s  ", $1, $2, $3}' "/proc/$BROKER_PID/status"
}

# Background POST load (pickup-loaded): runs until killed.
BG_PID=
start_bg() {
  local cmd=(wrk -t1 -c"$BG_CONNS" -d1h -s "$HERE/post.lua" "$URL")
  [ -n "$WRK_CPUS" ] && cmd=(taskset -c "$WRK_CPUS" "${cmd[@]}")
  echo "+ POST_DELAY_MS=$BG_DELAY_MS ${cmd[*]} &" >>"$OUT/commands.txt"
  POST_DELAY_MS=$BG_DELAY_MS "${cmd[@]}" >"$OUT/bg.$1.txt" 2>&1 &
  BG_PID=$!
  sleep 0.5
}
stop_bg() {
  [ -n "$BG_PID" ] && kill -INT "$BG_PID" 2>/dev/null && wait "$BG_PID" 2>/dev/null || true
  BG_PID=
}

# to_ms "158.00us" -> 0.158
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

# parse FILE -> "rps p50 p99 bytes_per_req errors"
parse() {
  local f=$1 rps p50 p99 reqs bytes errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
  reqs=$(awk '/requests in/ {print $1}' "$f")
  bytes=$(awk '/requests in/ {v=$5; u=$5; sub(/[A-Za-z]+,?$/, "", v); gsub(/[0-9.]/, "", u); sub(/,$/, "", u);
           m = (u=="KB") ? 1024 : (u=="MB") ? 1048576 : (u=="GB") ? 1073741824 : 1; printf "%.0f", v * m}' "$f")
  errs=$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' "$f")
  printf '%s %s %s %s %s\n' "$rps" "$p50" "$p99" "$(( bytes / (reqs > 0 ? reqs : 1) ))" "${errs:-none}"
}

profile() { # profile NAME: perf record the broker during one extra run
  local name=$1 secs data=$OUT/perf.$1.data
  secs=${DURATION%s}; secs=$(( secs > 4 ? secs - 2 : secs ))
  # cpu-clock: this VM has no hardware counters. DWARF call graphs, since
  # the release build keeps debug info but no frame pointers.
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$BROKER_PID" -o "$data" -- sleep "$secs" \
    >"$OUT/perf.$name.log" 2>&1 &
  local perf_pid=$!
  # Syscalls per request, from the syscall tracepoints (if available).
  local sc=writev,write,sendto,sendmsg,recvfrom,read,epoll_wait,futex ev=
  ev=$(echo "$sc" | tr ',' '\n' | sed 's/^/syscalls:sys_enter_/' | paste -sd,)
  perf stat -x, -e "$ev" -p "$BROKER_PID" -o "$OUT/perf.$name.syscalls" -- sleep "$secs" >/dev/null 2>&1 &
  local stat_pid=$!
  sleep 0.2
  local line; line=$(run_wrk "$name.profiled")
  wait "$perf_pid" || true
  wait "$stat_pid" || true
  local rps=${line%% *}
  echo "  syscalls per request during the profiled run ($rps req/s over ${secs}s):"
  awk -F, -v r="$rps" -v s="$secs" '$3 ~ /syscalls/ && $1+0 > 0 {sub(/syscalls:sys_enter_/, "", $3);
    printf "    %-12s %6.2f\n", $3, $1 / (r * s)}' "$OUT/perf.$name.syscalls" || true
  local rep=(perf report -i "$data" --stdio -g none --percent-limit 0.7)
  { echo "# by shared object (self)"; "${rep[@]}" --no-children --sort dso
    echo "# by symbol (self)"; "${rep[@]}" --no-children --sort dso,symbol
    echo "# by symbol (self + callees: kernel time counted under the syscall that caused it)"
    "${rep[@]}" --children --sort symbol --percent-limit 2 \
      | grep -v -e 'call_once\|catch_unwind\|spawn_unchecked\|start_thread\|clone3\|thread_start\|begin_short_backtrace\|BrokerBuilder::start\|entry_SYSCALL\|\[k\]'
  } 2>/dev/null | grep -v -e '^# [A-Z]' -e '^#$' -e '^$' | sed 's/ *[-] *[-] *$//; s/ *$//' >"$OUT/perf.$name.txt" || true
  echo "  profile ($name): $OUT/perf.$name.txt"
  sed -n '1,/^# by symbol (self + callees)/p' "$OUT/perf.$name.txt" | grep -v '^# by symbol (self +' | head -30 | sed 's/^/    /'
}

SCRIPT= ; ARGS=()
run_wrk() { # run_wrk TAG -> prints the parse line, keeps wrk's output
  local f="$OUT/wrk.$1.txt"
  echo "+ ${WRK_CPUS:+taskset -c $WRK_CPUS }wrk -t$WRK_THREADS -c$C -d$DURATION --latency -s $SCRIPT $URL ${ARGS[*]:+-- ${ARGS[*]}}" >>"$OUT/commands.txt"
  pin "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$C" -d"$DURATION" --latency -s "$SCRIPT" "$URL" ${ARGS[@]:+-- "${ARGS[@]}"} >"$f" 2>&1
  parse "$f"
}

SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
echo "output in $OUT"
echo "wrk -t$WRK_THREADS, duration $DURATION, $REPEAT runs each; broker cpus: ${BROKER_CPUS:-any}, wrk cpus: ${WRK_CPUS:-any}, broker threads: ${BROKER_THREADS:-default}"

for store in $STORES; do
  for scenario in $SCENARIOS; do
    for C in $CONNS; do
      tag="$store.$scenario.c$C"
      start_broker "$store" "$OUT/broker.$tag.log"
      case $scenario in
        post) SCRIPT=$HERE/post.lua; ARGS=() ;;
        pickup-*) SCRIPT=$HERE/pickup.lua; ARGS=("names=$(( C / WRK_THREADS ))" "prefix=c$C") ;;
      esac
      [ "$scenario" = pickup-loaded ] && start_bg "$tag"
      echo "== $store $scenario -c$C (broker pid $BROKER_PID, $URL)"
      lines=()
      for r in $(seq "$REPEAT"); do
        line=$(run_wrk "$tag.$r")
        lines+=("$line")
        read -r rps p50 p99 bpr errs <<<"$line"
        printf '  run %d: %10s req/s  p50 %7s ms  p99 %7s ms  %5s B/resp  errors: %s\n' "$r" "$rps" "$p50" "$p99" "$bpr" "$errs"
      done
      if [ "$scenario" != post ]; then
        # How many pickups carried messages (separate short run, not measured).
        PICKUP_STATS=1 pin "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$C" -d3s -s "$SCRIPT" "$URL" -- "${ARGS[@]}" \
          >"$OUT/wrk.$tag.stats.txt" 2>&1 || true
        echo "  check: $(grep 'pickup stats' "$OUT/wrk.$tag.stats.txt" || echo 'no stats line')"
      fi
      if [ "$PROFILE" = 1 ] && [ "$C" = 50 ]; then profile "$tag"; fi
      stop_bg
      echo "  broker memory after the runs: $(rss)"
      best=$(printf '%s\n' "${lines[@]}" | sort -k1,1 -g -r | head -1)
      read -r brps bp50 bp99 _ _ <<<"$best"
      lo=$(printf '%s\n' "${lines[@]}" | sort -k1,1 -g | head -1 | cut -d' ' -f1)
      p99lo=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f3 | sort -g | head -1)
      p99hi=$(printf '%s\n' "${lines[@]}" | cut -d' ' -f3 | sort -g | tail -1)
      spread=$(awk -v a="$brps" -v b="$lo" 'BEGIN {printf "%.0f%%", (a > 0) ? (a - b) * 100 / a : 0}')
      printf '%-7s %-14s %4s %10.0f %8s %8s   req/s %.0f-%.0f (%s), p99 %s-%s ms, %s\n' \
        "$store" "$scenario" "$C" "$brps" "$bp50" "$bp99" "$lo" "$brps" "$spread" "$p99lo" "$p99hi" "$(rss)" >>"$SUMMARY"
      if grep -Eq 'ERROR|WARN' "$OUT/broker.$tag.log"; then
        echo "  broker logged warnings/errors:"; grep -E 'ERROR|WARN' "$OUT/broker.$tag.log" | sort | uniq -c | head -5
      fi
      stop_broker
    done
  done
done

echo
echo "store   scenario        -c      req/s  p50(ms)  p99(ms)   (best run by req/s; spread over $REPEAT runs; broker memory)"
cat "$SUMMARY"
[ -n "$DATA_DIR" ] && rm -rf "$DATA_DIR"
echo "raw output: $OUT"
