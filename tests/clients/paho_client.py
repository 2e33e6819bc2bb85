"""paho-mqtt 2 against an MQTT broker: the conformance scenario the
end-to-end tests run against tinymq and mosquitto alike.

    python paho_client.py HOST PORT 311|5 PREFIX [tcp|websockets]

For the version given it connects, subscribes at QoS 1 (and at QoS 0 to a
second filter), publishes at QoS 0 and 1, checks what comes back (topic,
payload, QoS, retain), publishes a retained value and checks that a second
client gets it marked retained, unsubscribes and checks nothing more comes.
It prints one `ok ...` line per step and exits 1 at the first failure.
With `websockets` it speaks MQTT over WebSocket, at path /mqtt.
"""

import sys
import threading

import paho.mqtt.client as mqtt

WAIT = 5.0


def fail(text):
    print(f"FAIL {text}", flush=True)
    sys.exit(1)


class Peer:
    """A paho client whose events are waited for with deadlines."""

    def __init__(self, host, port, version, client_id, transport):
        protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, transport=transport
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.version = version
        self.lock = threading.Condition()
        self.messages = []
        self.granted = None
        self.unsubscribed = False
        self.connected = None
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.on_subscribe = self.on_subscribe
        self.client.on_unsubscribe = self.on_unsubscribe
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connected is not None, "CONNACK")
        if self.connected.is_failure:
            fail(f"connect refused: {self.connected}")

    def on_connect(self, client, userdata, flags, reason, properties):
        with self.lock:
            self.connected = reason
            self.lock.notify_all()

    def on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, message.payload.decode(), message.qos, int(message.retain)))
            self.lock.notify_all()

    def on_subscribe(self, client, userdata, mid, reasons, properties):
        with self.lock:
            self.granted = [r.value for r in reasons]
            self.lock.notify_all()

    def on_unsubscribe(self, client, userdata, mid, reasons, properties):
        with self.lock:
            self.unsubscribed = True
            self.lock.notify_all()

    def wait(self, done, what):
        with self.lock:
            if not self.lock.wait_for(done, timeout=WAIT):
                fail(f"v{self.version}: no {what} within {WAIT} s; messages so far {self.messages}")

    def next_message(self):
        self.wait(lambda: self.messages, "message")
        with self.lock:
            return self.messages.pop(0)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def main():
    host, port, version, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    transport = sys.argv[5] if len(sys.argv) > 5 else "tcp"
    base = f"{prefix}/v{version}"
    peer = Peer(host, port, version, f"paho-{version}-{prefix}", transport)
    print(f"ok connected v{version}", flush=True)

    peer.client.subscribe([(f"{base}/q1/#", 1), (f"{base}/q0/#", 0)])
    peer.wait(lambda: peer.granted is not None, "SUBACK")
    if peer.granted != [1, 0]:
        fail(f"granted {peer.granted}, expected [1, 0]")
    print(f"ok granted {peer.granted}", flush=True)

    properties = None
    if version == "5":
        properties = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
        properties.UserProperty = [("origin", "paho")]
    info = peer.client.publish(f"{base}/q1/a", b"one", qos=1, properties=properties)
    info.wait_for_publish(timeout=WAIT)
    if not info.is_published():
        fail("no PUBACK for a QoS 1 publish")
    got = peer.next_message()
    if got != (f"{base}/q1/a", "one", 1, 0):
        fail(f"QoS 1 round trip: got {got}")
    peer.client.publish(f"{base}/q0/b", b"zero", qos=0)
    got = peer.next_message()
    if got != (f"{base}/q0/b", "zero", 0, 0):
        fail(f"QoS 0 round trip: got {got}")
    # Published at QoS 1 to a QoS 0 subscription: delivered at QoS 0.
    peer.client.publish(f"{base}/q0/c", b"down", qos=1).wait_for_publish(timeout=WAIT)
    got = peer.next_message()
    if got != (f"{base}/q0/c", "down", 0, 0):
        fail(f"QoS downgrade: got {got}")
    print("ok qos 0 and 1", flush=True)

    kept = peer.client.publish(f"{base}/kept", b"stored", qos=1, retain=True)
    kept.wait_for_publish(timeout=WAIT)
    other = Peer(host, port, version, f"paho-{version}-{prefix}-late", transport)
    other.client.subscribe(f"{base}/kept", 1)
    got = other.next_message()
    if got != (f"{base}/kept", "stored", 1, 1):
        fail(f"retained value: got {got}")
    peer.client.publish(f"{base}/kept", b"", qos=1, retain=True).wait_for_publish(timeout=WAIT)
    other.close()
    print("ok retained", flush=True)

    peer.client.unsubscribe(f"{base}/q1/#")
    peer.wait(lambda: peer.unsubscribed, "UNSUBACK")
    peer.client.publish(f"{base}/q1/gone", b"x", qos=1).wait_for_publish(timeout=WAIT)
    peer.client.publish(f"{base}/q0/marker", b"m", qos=0)
    got = peer.next_message()
    if got != (f"{base}/q0/marker", "m", 0, 0):
        fail(f"after UNSUBSCRIBE the first message should be the marker, got {got}")
    print("ok unsubscribed", flush=True)
    peer.close()


if __name__ == "__main__":
    main()
