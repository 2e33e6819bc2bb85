#!/usr/bin/env bash
# The MQTT bridge edge to edge: tinymq A -> bridge -> mosquitto -> bridge ->
# tinymq B, beside mosquitto's own client-to-client rate (tinymq bench
# --protocol mqtt: MQTT 3.1.1, QoS 0), interleaved, then p50/p99 at 10k
# msg/s for both and each broker's bridge figures. Loopback only, ports
# 24501-24602. COUNT=200000 messages per run; RATE=N to publish at N msg/s
# rather than as fast as possible; QOS=1 bridges at QoS 1 both ways
# (--bridge-qos 1: each message kept until mosquitto's PUBACK, and taken
# in at QoS 1). DURABILITY=immediate or batched gives A a store (--data in
# a scratch directory) with that --durability: at QoS 1 its bridge's
# out-queue is then stored. PUB_QOS=1 has the bench publish (and B's
# subscriber take) at QoS 1, so A acknowledges each publish (under
# immediate, once its copy for the bridge is committed). BIN=path runs
# another build (main's, say) with NO_BUILD=1. Each tinymq round prints
# A's CPU time (user + system) during it. Needs mosquitto.
set -u
MQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/release/tinymq}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p tinymq-bin
D=$(mktemp -d)
printf 'listener 24501 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n' > $D/mosquitto.conf
$MQ -c $D/mosquitto.conf > $D/mosquitto.log 2>&1 &
sleep 0.5
MQTT=mqtt://127.0.0.1:24501
QOS_FLAGS=${QOS:+--bridge-qos $QOS}
A_STORE=--in-memory
[ -z "${DURABILITY:-}" ] || A_STORE="--data $D/a-data --durability $DURABILITY"
BENCH_QOS=${PUB_QOS:+--qos $PUB_QOS}
$BIN broker $A_STORE --http 127.0.0.1:24601 --sys-interval 0 --address 127.0.0.1:24511 --broker-id A --bridge $MQTT --bridge-out 'bench/#' $QOS_FLAGS > $D/a.log 2>&1 &
A_PID=$!
# A's CPU time so far (user + system), in milliseconds.
a_cpu() { awk -v t="$(getconf CLK_TCK)" '{print int(($14+$15)*1000/t)}' /proc/$A_PID/stat; }
$BIN broker --in-memory --http 127.0.0.1:24602 --sys-interval 0 --address 127.0.0.1:24512 --broker-id B --bridge $MQTT --bridge-in 'bench/#' $QOS_FLAGS > $D/b.log 2>&1 &
sleep 1.5
for round in 1 2 3; do
  echo "round $round mosquitto alone: $($BIN bench --protocol mqtt --topic other/a --address 127.0.0.1:24501 --count ${COUNT:-200000} ${RATE:+--rate $RATE} 2>&1 | grep -E '^delivered|error' )"
  before=$(a_cpu)
  result=$($BIN bench --address 127.0.0.1:24511 --sub-address 127.0.0.1:24512 --count ${COUNT:-200000} ${RATE:+--rate $RATE} $BENCH_QOS 2>&1 | grep -E '^delivered|error|lost' )
  echo "round $round tinymq A->mosquitto->B: $result; A's CPU $(( $(a_cpu) - before )) ms"
done
$BIN bench --address 127.0.0.1:24511 --sub-address 127.0.0.1:24512 --count 30000 --rate 10000 $BENCH_QOS 2>&1 | grep -E 'latency'
$BIN bench --protocol mqtt --topic other/a --address 127.0.0.1:24501 --count 30000 --rate 10000 2>&1 | grep -E 'latency'
curl -s 127.0.0.1:24601/api/v1/stats | python3 -c "import json,sys; print(\"A\", json.load(sys.stdin)[\"bridges\"])"; curl -s 127.0.0.1:24602/api/v1/stats | python3 -c "import json,sys; print(\"B\", json.load(sys.stdin)[\"bridges\"])"; grep -i -E "slow|warn|error" $D/*.log | head -5
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
rm -rf "$D"
