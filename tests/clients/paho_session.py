"""paho-mqtt 2 driving persistent MQTT sessions, one step per run, for
the end-to-end tests of sessions that outlive their connections.

    python paho_session.py HOST PORT 311|5 open CLIENT clean|keep EXPIRY [FILTER]
    python paho_session.py HOST PORT 311|5 receive CLIENT EXPIRY COUNT [noack]
    python paho_session.py HOST PORT 311|5 publish TOPIC COUNT

`open` connects with Clean Session / Clean Start as asked (and, in MQTT 5,
Session Expiry Interval EXPIRY when it is not 0), prints
`present 0|1 expiry E` (E: the expiry CONNACK granted, `-` if it said
none), subscribes to FILTER at QoS 1 if one is given (`subscribed Q`),
and disconnects cleanly.

`receive` resumes CLIENT's session (Clean Session 0; in MQTT 5 Clean
Start 0 with EXPIRY), prints `present 0|1 expiry E`, then `msg PAYLOAD DUP`
per message in arrival order until COUNT came (or fails after the
deadline), and disconnects cleanly. With `noack` it acknowledges nothing
and drops the connection without DISCONNECT.

`publish` publishes COUNT QoS 1 messages `0`, `1`, ... to TOPIC from a
clean client (paho keeps at most 20 unacknowledged) and prints `acked N` as each
PUBACK comes, in order, flushed at once (a test may kill the broker
midway: what was printed was acknowledged).

Every wait has a deadline; a failure prints `FAIL ...` and exits 1.
"""

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 10.0


def fail(text):
    print(f"FAIL {text}", flush=True)
    sys.exit(1)


class Peer:
    """A paho client whose events are waited for with deadlines."""

    def __init__(self, host, port, version, client_id, clean, expiry, manual_ack=False):
        self.v5 = version == "5"
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kwargs = {} if self.v5 else {"clean_session": clean}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            manual_ack=manual_ack,
            **kwargs,
        )
        self.lock = threading.Condition()
        self.messages = []
        self.granted = None
        self.connected = None
        self.acked = set()
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.on_subscribe = self.on_subscribe
        self.client.on_publish = self.on_publish
        if self.v5:
            properties = None
            if expiry > 0:
                properties = Properties(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = expiry
            self.client.connect(host, port, keepalive=30, clean_start=clean, properties=properties)
        else:
            self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connected is not None, "CONNACK")
        flags, reason, properties = self.connected
        if reason.is_failure:
            fail(f"connect refused: {reason}")
        granted = getattr(properties, "SessionExpiryInterval", None) if properties else None
        print(f"present {int(flags.session_present)} expiry {'-' if granted is None else granted}", flush=True)

    def on_connect(self, client, userdata, flags, reason, properties):
        with self.lock:
            self.connected = (flags, reason, properties)
            self.lock.notify_all()

    def on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.payload.decode(), int(message.dup)))
            self.lock.notify_all()

    def on_subscribe(self, client, userdata, mid, reasons, properties):
        with self.lock:
            self.granted = [r.value for r in reasons]
            self.lock.notify_all()

    def on_publish(self, client, userdata, mid, reason, properties):
        with self.lock:
            self.acked.add(mid)
            self.lock.notify_all()

    def wait(self, done, what):
        with self.lock:
            if not self.lock.wait_for(done, timeout=WAIT):
                fail(f"no {what} within {WAIT} s; {len(self.messages)} messages so far, the last {self.messages[-3:]}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    host, port, version, command = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    args = sys.argv[5:]
    if command == "open":
        client_id, clean, expiry = args[0], args[1] == "clean", int(args[2])
        peer = Peer(host, port, version, client_id, clean, expiry)
        if len(args) > 3:
            peer.client.subscribe(args[3], qos=1)
            peer.wait(lambda: peer.granted is not None, "SUBACK")
            print(f"subscribed {peer.granted[0]}", flush=True)
        peer.close()
    elif command == "receive":
        client_id, expiry, count = args[0], int(args[1]), int(args[2])
        noack = len(args) > 3 and args[3] == "noack"
        peer = Peer(host, port, version, client_id, False, expiry, manual_ack=noack)
        peer.wait(lambda: len(peer.messages) >= count, f"{count} messages")
        for payload, dup in peer.messages[:count]:
            print(f"msg {payload} {dup}", flush=True)
        if noack:
            # Gone without DISCONNECT or PUBACK: the session keeps them.
            peer.client.loop_stop()
            peer.client.socket().close()
        else:
            peer.close()
    elif command == "publish":
        topic, count = args[0], int(args[1])
        peer = Peer(host, port, version, "", True, 0)
        mids = []
        printed = 0
        for n in range(count):
            mids.append(peer.client.publish(topic, str(n), qos=1).mid)
            with peer.lock:
                while printed < len(mids) and mids[printed] in peer.acked:
                    print(f"acked {printed}", flush=True)
                    printed += 1
        deadline = time.monotonic() + WAIT
        while printed < count:
            with peer.lock:
                peer.lock.wait_for(lambda: mids[printed] in peer.acked, timeout=max(0, deadline - time.monotonic()))
                if mids[printed] not in peer.acked:
                    fail(f"no PUBACK for message {printed} within {WAIT} s")
                print(f"acked {printed}", flush=True)
                printed += 1
        peer.close()
    else:
        fail(f"unknown command {command}")


if __name__ == "__main__":
    main()
