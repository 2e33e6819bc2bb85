#!/usr/bin/env bash
# The NATS bridge edge to edge: tinymq A -> bridge -> a 3-node nats-server
# cluster -> bridge -> tinymq B, beside nats-server's own client-to-client
# rate across two nodes of the same cluster, interleaved, then p50/p99 at
# 10k msg/s for both and each broker's bridge figures. Loopback only,
# ports 24221-24402. COUNT=1000000 messages per run; RATE=N to publish at
# N msg/s rather than as fast as possible. Needs nats-server.
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
done
sleep 1.5
NATS=nats://127.0.0.1:24221
$BIN broker --in-memory --http 127.0.0.1:24401 --sys-interval 0 --address 127.0.0.1:24301 --broker-id A --bridge $NATS --bridge-out 'bench/#' > $D/a.log 2>&1 &
$BIN broker --in-memory --http 127.0.0.1:24402 --sys-interval 0 --address 127.0.0.1:24302 --broker-id B --bridge nats://127.0.0.1:24222 --bridge-in 'bench/#' > $D/b.log 2>&1 &
sleep 1.5
for round in 1 2 3; do
  echo "round $round nats n1->n2: $($BIN bench --protocol nats --topic other/a --address 127.0.0.1:24221 --sub-address 127.0.0.1:24222 --count ${COUNT:-1000000} ${RATE:+--rate $RATE} 2>&1 | grep -E '^delivered|error' )"
  echo "round $round tinymq A->nats->B: $($BIN bench --address 127.0.0.1:24301 --sub-address 127.0.0.1:24302 --count ${COUNT:-1000000} ${RATE:+--rate $RATE} 2>&1 | grep -E '^delivered|error|lost' )"
done
$BIN bench --address 127.0.0.1:24301 --sub-address 127.0.0.1:24302 --count 30000 --rate 10000 2>&1 | grep -E 'latency'
$BIN bench --protocol nats --topic other/a --address 127.0.0.1:24221 --sub-address 127.0.0.1:24222 --count 30000 --rate 10000 2>&1 | grep -E 'latency'
curl -s 127.0.0.1:24401/api/v1/stats | python3 -c "import json,sys; print(\"A\", json.load(sys.stdin)[\"bridges\"])"; curl -s 127.0.0.1:24402/api/v1/stats | python3 -c "import json,sys; print(\"B\", json.load(sys.stdin)[\"bridges\"])"; grep -i -E "slow|warn|error" $D/*.log | head -5
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
