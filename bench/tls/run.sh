#!/usr/bin/env bash
# TLS next to plaintext, same workload, same run: `tinymq bench`
# throughput (1 publisher -> 1 subscriber, 64-byte payloads) and the
# connections per second the broker sustains (TCP connect, Connect,
# ConnAck, close; over TLS with a full handshake each, no resumption).
#
#   bench/tls/run.sh
#
# Two brokers run side by side, one plain and one with --tls-cert/--tls-key
# (a self-signed ECDSA P-256 leaf certificate made here with openssl,
# trusted as its own CA by the bench), each with
# --threads 1 pinned to BROKER_CPUS; the bench runs on BENCH_CPUS. Each
# measurement alternates plain and TLS, ROUNDS times, and the best of each
# is printed with the TLS/plain ratio: on a shared, noisy machine compare
# the ratio, not the absolute figures.
#
# Settings (environment):
#   ROUNDS=3 COUNT=1000000 SIZE=64 HANDSHAKES=5000 PARALLEL=2
#   BROKER_CPUS=0 BENCH_CPUS=1   taskset CPU lists (empty: no pinning)
#   NO_BUILD=1                   skip cargo build --release
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=$PWD/target/release/tinymq
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-1000000}
SIZE=${SIZE:-64}
HANDSHAKES=${HANDSHAKES:-5000}
PARALLEL=${PARALLEL:-2}
BROKER_CPUS=${BROKER_CPUS-0}
BENCH_CPUS=${BENCH_CPUS-1}

command -v openssl >/dev/null || { echo "needs openssl (apt-get install openssl)" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release -p tinymq-bin >&2

pin() { if [ -n "$1" ]; then echo taskset -c "$1"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

dir=$(mktemp -d /tmp/tinymq-tls-bench.XXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null

plain=127.0.0.1:$(free_port)
tls=127.0.0.1:$(free_port)
$(pin "$BROKER_CPUS") "$BIN" broker --in-memory --no-http --threads 1 --address "$plain" 2>"$dir/plain.log" &
pids+=($!)
$(pin "$BROKER_CPUS") "$BIN" broker --in-memory --no-http --threads 1 --address "$tls" \
    --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" 2>"$dir/tls.log" &
pids+=($!)
for address in "$plain" "$tls"; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/${address%:*}/${address#*:}") 2>/dev/null && break; sleep 0.1; done
done

bench() { $(pin "$BENCH_CPUS") "$BIN" bench "$@"; }
# The figure after FIELD: on the line starting with it, e.g. "delivered: 812345 msg/s".
figure() { awk -v f="$1" '$1 == f { print $2 + 0 }'; }
best() { sort -g | tail -1; }

echo "== throughput: 1 publisher -> 1 subscriber, $COUNT messages of $SIZE bytes (best of $ROUNDS)"
declare -A delivered published
for round in $(seq "$ROUNDS"); do
    for kind in plain tls; do
        if [ "$kind" = plain ]; then flags=(--address "$plain"); else flags=(--address "$tls" --tls --ca "$dir/cert.pem"); fi
        out=$(bench "${flags[@]}" --count "$COUNT" --size "$SIZE" --topic "bench/$round")
        delivered[$kind]+="$(echo "$out" | figure delivered:) "
        published[$kind]+="$(echo "$out" | figure published:) "
        echo "  round $round $kind: $(echo "$out" | grep -E '^(delivered|latency)' | tr '\n' ' ')"
    done
done
for kind in plain tls; do
    d=$(tr ' ' '\n' <<<"${delivered[$kind]}" | best)
    p=$(tr ' ' '\n' <<<"${published[$kind]}" | best)
    printf '%-6s published %9.0f msg/s, delivered %9.0f msg/s\n' "$kind" "$p" "$d"
    eval "best_$kind=$d"
done
printf 'TLS/plain delivered: %.2f\n' "$(echo "$best_tls / $best_plain" | bc -l)"

# The broker's CPU time (user + system, in clock ticks) so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))

echo "== connections: $HANDSHAKES, $PARALLEL at a time (best of $ROUNDS)"
echo "   (the bench makes the client's half of each handshake on its own core; the"
echo "   broker's CPU per connection says what one broker core sustains alone)"
declare -A conns cpu
for round in $(seq "$ROUNDS"); do
    for kind in plain tls; do
        if [ "$kind" = plain ]; then flags=(--address "$plain"); pid=${pids[0]}; else
            flags=(--address "$tls" --tls --ca "$dir/cert.pem"); pid=${pids[1]}; fi
        before=$(cpu_ticks "$pid")
        out=$(bench "${flags[@]}" --handshakes "$HANDSHAKES" --parallel "$PARALLEL")
        used_us=$(( ($(cpu_ticks "$pid") - before) * tick_us ))
        conns[$kind]+="$(echo "$out" | figure connections:) "
        cpu[$kind]+="$(( used_us / HANDSHAKES )) "
        echo "  round $round $kind: $(echo "$out" | grep '^connections'), broker CPU $(( used_us / HANDSHAKES )) us each"
    done
done
for kind in plain tls; do
    c=$(tr ' ' '\n' <<<"${conns[$kind]}" | best)
    us=$(tr ' ' '\n' <<<"${cpu[$kind]}" | grep . | sort -g | head -1)
    printf '%-6s %7.0f connections/s; broker CPU %4d us per connection (%6.0f/s per broker core)\n' \
        "$kind" "$c" "$us" "$(echo "1000000 / ($us + 0.000001)" | bc -l)"
    eval "conn_$kind=$c"
done
printf 'TLS/plain connections: %.2f\n' "$(echo "$conn_tls / $conn_plain" | bc -l)"
