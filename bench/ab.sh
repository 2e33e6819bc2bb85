#!/usr/bin/env bash
# Two tinymq binaries side by side, interleaved run by run, so that a
# shared machine's noise falls on both alike: delivered msgs/s 1 -> 1 and
# 1 -> 4 over TCP, 64-byte payloads (tinymq `broker --in-memory --no-http`,
# default threads, a fresh broker per run).
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#
# e.g. to compare a commit with the working tree:
#   git worktree add /tmp/base COMMIT
#   (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target cargo build --release -p tinymq-bin)
#   cargo build --release -p tinymq-bin
#   bench/ab.sh /tmp/base-target/release/tinymq target/release/tinymq
#
# Prints each run, then the best and the median of each figure per binary
# and the ratio new/old. Settings (environment): RUNS=7, COUNT=2000000,
# SIZE=64, TINYMQ_ARGS= (extra broker flags).
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1 NEW=$2
RUNS=${RUNS:-7}
COUNT=${COUNT:-2000000}
SIZE=${SIZE:-64}
BENCH=$NEW

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# run BINARY SUBSCRIBERS: delivered msgs/s, or nothing when the run failed.
run() {
    local port pid out
    port=$(free_port)
    # shellcheck disable=SC2086
    "$1" broker --in-memory --no-http --address "127.0.0.1:$port" ${TINYMQ_ARGS:-} 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    out=$("$BENCH" bench --address "127.0.0.1:$port" --count "$COUNT" --size "$SIZE" --subscribers "$2" --timeout 30 2>/dev/null || true)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | awk '$1 == "delivered:" { print $2 + 0 }'
}

declare -A figures
for i in $(seq "$RUNS"); do
    line="run $i:"
    # Alternate which binary goes first.
    if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for which in $order; do
        bin=$OLD; [ "$which" = new ] && bin=$NEW
        for subs in 1 4; do
            d=$(run "$bin" "$subs")
            figures[$which-$subs]+="${d:-} "
            line+=" $which 1->$subs ${d:-failed}"
        done
    done
    echo "$line"
done

stat() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%d %d", a[NR], a[int((NR + 1) / 2)] }'; }
echo
echo "| | old best | new best | new/old | old median | new median | new/old |"
echo "|---|---|---|---|---|---|---|"
for subs in 1 4; do
    read -r ob om <<<"$(echo "${figures[old-$subs]}" | stat)"
    read -r nb nm <<<"$(echo "${figures[new-$subs]}" | stat)"
    awk -v s="$subs" -v ob="$ob" -v nb="$nb" -v om="$om" -v nm="$nm" 'BEGIN {
        printf "| 1 -> %s msgs/s | %d | %d | %.3f | %d | %d | %.3f |\n", s, ob, nb, nb / ob, om, nm, nm / om }'
done
