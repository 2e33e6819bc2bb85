#!/usr/bin/env bash
# What keeping Moustique PICKUP queues in the store costs: two tinymq
# binaries side by side over HTTP with a data directory, interleaved run by
# run (which goes first alternates), a fresh broker and data directory per
# run, for each durability:
#
#   bench/http/ab_queues.sh OLD_BINARY NEW_BINARY
#
# Scenarios (wrk -t$WRK_THREADS -c$C -d$DURATION, the scripts of bench/http):
#   post            POST, nobody subscribed (the control: nothing queued)
#   post-queued     POST while $SUBSCRIBERS Moustique clients subscribed to
#                   /bench/# never pick up: every POST queues that many
#                   copies, and once the queues are full each drops its
#                   oldest (the store's worst case: a put and a delete per
#                   copy)
#   pickup-loaded   PICKUP by $C clients (one per connection) under a
#                   background POST load (BG_CONNS connections, one POST
#                   per BG_DELAY_MS each): each POST queues $C copies, each
#                   PICKUP takes what its client has
# Prints each run's req/s, then per scenario and durability the median of
# each binary and the ratio new/old. Settings (environment):
#   RUNS=4 DURATION=5s C=50 WRK_THREADS=2 SUBSCRIBERS=10 BG_CONNS=4
#   BG_DELAY_MS=2 DURABILITIES="batched immediate"
#   SCENARIOS="post post-queued pickup-loaded"
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1 NEW=$2
cd "$(dirname "$0")/../.."
HERE=$PWD/bench/http
RUNS=${RUNS:-4}
DURATION=${DURATION:-5s}
C=${C:-50}
WRK_THREADS=${WRK_THREADS:-2}
SUBSCRIBERS=${SUBSCRIBERS:-10}
BG_CONNS=${BG_CONNS:-4}
BG_DELAY_MS=${BG_DELAY_MS:-2}
DURABILITIES=${DURABILITIES:-batched immediate}
SCENARIOS=${SCENARIOS:-post post-queued pickup-loaded}
OUT=$(mktemp -d /tmp/tinymq-ab-queues.XXXX)
BIN=$NEW
. "$PWD/bench/lib.sh"

# Moustique's encoding of a parameter value: Base64, ROT13, percent-encoded.
enc() { python3 -c 'import base64, codecs, sys, urllib.parse
print(urllib.parse.quote(codecs.encode(base64.b64encode(sys.argv[1].encode()).decode(), "rot13"), safe=""))' "$1"; }

BROKER_PID= BG_PID= DATA=
cleanup() {
    [ -n "$BG_PID" ] && kill "$BG_PID" 2>/dev/null || true
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "$DATA" ] && rm -rf "$DATA"
    BG_PID= BROKER_PID= DATA=
}
trap cleanup EXIT

# run BINARY DURABILITY SCENARIO: req/s of one wrk run, or nothing.
run() {
    local bin=$1 durability=$2 scenario=$3 rps
    BIN=$bin
    free_ports
    URL=http://127.0.0.1:$HTTP_PORT
    DATA=$(mktemp -d /tmp/tinymq-ab-queues-data.XXXX)
    launch_broker "$OUT/broker.log" broker --address "127.0.0.1:$TCP_PORT" --http "127.0.0.1:$HTTP_PORT" \
        --data "$DATA" --durability "$durability" --log-level warn >/dev/null
    local script=$HERE/post.lua args=()
    case $scenario in
        post-queued)
            for k in $(seq "$SUBSCRIBERS"); do
                curl -sf -o /dev/null --data "topic=$(enc /bench/#)&client=$(enc "idle-$k")" "$URL/SUBSCRIBE"
            done ;;
        pickup-loaded)
            script=$HERE/pickup.lua args=(-- "names=$(( C / WRK_THREADS ))" "prefix=ab")
            POST_DELAY_MS=$BG_DELAY_MS wrk -t1 -c"$BG_CONNS" -d1h -s "$HERE/post.lua" "$URL" >/dev/null 2>&1 &
            BG_PID=$!
            sleep 0.5 ;;
    esac
    rps=$(wrk -t"$WRK_THREADS" -c"$C" -d"$DURATION" -s "$script" "$URL" "${args[@]}" 2>/dev/null \
        | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
    cleanup
    echo "${rps:-}"
}

declare -A figures
echo "uptime before: $(uptime)"
for durability in $DURABILITIES; do
    for scenario in $SCENARIOS; do
        for i in $(seq "$RUNS"); do
            if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
            line="$durability $scenario run $i:"
            for which in $order; do
                bin=$OLD; [ "$which" = new ] && bin=$NEW
                r=$(run "$bin" "$durability" "$scenario")
                figures[$which-$durability-$scenario]+="${r:-} "
                line+=" $which ${r:-failed}"
            done
            echo "$line"
        done
    done
done
echo "uptime after: $(uptime)"

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%d", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "| durability | scenario | old median req/s | new median req/s | new/old |"
echo "|---|---|---|---|---|"
for durability in $DURABILITIES; do
    for scenario in $SCENARIOS; do
        om=$(echo "${figures[old-$durability-$scenario]}" | median)
        nm=$(echo "${figures[new-$durability-$scenario]}" | median)
        awk -v d="$durability" -v s="$scenario" -v om="${om:-0}" -v nm="${nm:-0}" 'BEGIN {
            printf "| %s | %s | %d | %d | %.2f |\n", d, s, om, nm, (om > 0) ? nm / om : 0 }'
    done
done
echo "logs: $OUT"
