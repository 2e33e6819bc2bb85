#!/usr/bin/env bash
# The NATS bridge edge to edge: tinymq A -> bridge -> a 3-node nats-server
# cluster -> bridge -> tinymq B, beside nats-server's own client-to-client
# rate across two nodes of the same cluster, interleaved, with the ratio of
# the two each round (the issue's target: at least 70 %), then p50/p99 at
# 10k msg/s for both and each broker's bridge figures. BASE=/path/to/tinymq
# adds a second pair of brokers from another build (say main's release
# binary) on the same cluster, under their own subject prefix, run in the
# same rounds. Loopback only, ports 24221-24413. COUNT=1000000 messages per
# run; RATE=N to publish at N msg/s rather than as fast as possible;
# ROUNDS=3. Each run also prints the CPU seconds (user + system, from
# /proc/PID/stat) that brokers A and B and nodes 1 and 2 spent on it.
# nats-server's own run publishes on that.bench.a, a subject as long as the
# bridged this.bench.a, which no bridge subscribes to. Needs nats-server.
set -u
NS=$(command -v nats-server || echo /usr/sbin/nats-server)
cd "$(dirname "$0")/.."
BIN=$PWD/target/release/tinymq
[ -n "${NO_BUILD:-}" ] || cargo build --release -p tinymq-bin
D=$(mktemp -d)
for i in 1 2 3; do
  p=$((24220+i)); c=$((26220+i))
  routes=$(for j in 1 2 3; do [ $j != $i ] && printf 'nats://127.0.0.1:%s,' $((26220+j)); done)
  $NS -a 127.0.0.1 -p $p -n n$i --cluster_name bench --cluster nats://127.0.0.1:$c --routes ${routes%,} > $D/n$i.log 2>&1 &
  echo $! > $D/n$i.pid
done
sleep 1.5
# A pair: BINARY PREFIX PORT (A on PORT, B on PORT+1, HTTP on PORT+100 and +101).
pair() {
  $1 broker --in-memory --http 127.0.0.1:$(($3+100)) --sys-interval 0 --address 127.0.0.1:$3 --broker-id A$2 \
    --bridge nats://127.0.0.1:24221 --bridge-prefix $2 --bridge-out 'bench/#' > $D/a-$2.log 2>&1 &
  echo $! > $D/a-$2.pid
  $1 broker --in-memory --http 127.0.0.1:$(($3+101)) --sys-interval 0 --address 127.0.0.1:$(($3+1)) --broker-id B$2 \
    --bridge nats://127.0.0.1:24222 --bridge-prefix $2 --bridge-in 'bench/#' > $D/b-$2.log 2>&1 &
  echo $! > $D/b-$2.pid
}
pair $BIN this 24301
[ -z "${BASE:-}" ] || pair $BASE base 24311
sleep 1.5
uptime
# CPU ticks so far of the processes named (a-this, b-base, n1, ...).
ticks() { for f in "$@"; do awk '{ printf "%s ", $14 + $15 }' /proc/$(cat $D/$f.pid)/stat; done; }
# A run of the bench; PAIR=this or base adds the CPU line of its brokers.
rate() {
  local before after
  before=($(ticks a-${PAIR:-this} b-${PAIR:-this} n1 n2))
  "$BIN" bench "$@" --count ${COUNT:-1000000} ${RATE:+--rate $RATE} 2>&1 | grep -E '^delivered|error|lost'
  after=($(ticks a-${PAIR:-this} b-${PAIR:-this} n1 n2))
  echo "cpu s: A $(cpu 0) B $(cpu 1) n1 $(cpu 2) n2 $(cpu 3)"
}
cpu() { awk -v d=$((after[$1] - before[$1])) -v t=$(getconf CLK_TCK) 'BEGIN { printf "%.2f", d / t }'; }
msgs() { echo "$1" | awk '/^delivered/ && $2 != "NaN" && $4 == "(" "'${COUNT:-1000000}'" { print $2 }'; }
for round in $(seq 1 ${ROUNDS:-3}); do
  nats=$(rate --protocol nats --topic that/bench/a --address 127.0.0.1:24221 --sub-address 127.0.0.1:24222)
  this=$(PAIR=this rate --address 127.0.0.1:24301 --sub-address 127.0.0.1:24302)
  echo "round $round nats n1->n2:" $nats
  echo "round $round tinymq A->nats->B:" $this
  n=$(msgs "$nats"); t=$(msgs "$this")
  [ -n "$n" ] && [ -n "$t" ] && echo "round $round ratio: $((100 * t / n)) % of nats-server's rate"
  if [ -n "${BASE:-}" ]; then
    base=$(PAIR=base rate --address 127.0.0.1:24311 --sub-address 127.0.0.1:24312)
    echo "round $round BASE A->nats->B:" $base
  fi
done
uptime
$BIN bench --address 127.0.0.1:24301 --sub-address 127.0.0.1:24302 --count 30000 --rate 10000 2>&1 | grep -E 'latency'
[ -z "${BASE:-}" ] || $BIN bench --address 127.0.0.1:24311 --sub-address 127.0.0.1:24312 --count 30000 --rate 10000 2>&1 | sed 's/^latency/BASE latency/' | grep -E 'latency'
$BIN bench --protocol nats --topic that/bench/a --address 127.0.0.1:24221 --sub-address 127.0.0.1:24222 --count 30000 --rate 10000 2>&1 | grep -E 'latency'
for p in 24401 24402 ${BASE:+24411 24412}; do
  curl -s 127.0.0.1:$p/api/v1/stats | python3 -c "import json,sys; b=json.load(sys.stdin)['bridges'][0]; print($p, {k: b[k] for k in ('messages_in','messages_out','drops','reconnects','last_error')})"
done
grep -i -E "slow|warn|error" $D/*.log | head -5
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
