"""The tinymq binary protocol over WebSocket, spoken through a real
third-party WebSocket client: `websockets` from PyPI (pinned in
requirements.txt). The end-to-end tests (tinymq-bin/tests/e2e/websocket.rs)
run it against the real broker:

    ws_client.py URL [--ca FILE] subscribe FILTER COUNT
        connects, subscribes, prints "subscribed", checks a ping is
        answered ("pong"), then prints "TOPIC PAYLOAD FROM" for COUNT
        publishes and disconnects
    ws_client.py URL [--ca FILE] publish TOPIC PAYLOAD...
        connects and publishes each payload, prints "published N"
    ws_client.py URL [--ca FILE] text
        sends a text message and prints the close code it gets

Frames are laid out as docs/PROTOCOL.md says: type, topic, payload,
client id, each length-prefixed, big-endian. Every message is sent as
several WebSocket messages cut at odd places, and reads join whatever
messages come: the protocol is a byte stream.
"""

import ssl
import struct
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

CONNECT, CONNACK, PUBLISH, SUBSCRIBE, SUBACK, DISCONNECT = 0, 1, 2, 3, 4, 9


def frame(kind, topic=b"", payload=b"", client_id=b""):
    return (
        bytes([kind])
        + struct.pack(">H", len(topic)) + topic
        + struct.pack(">I", len(payload)) + payload
        + struct.pack(">H", len(client_id)) + client_id
    )


class Conn:
    def __init__(self, ws):
        self.ws = ws
        self.buffer = b""

    def send(self, data):
        # Cut into pieces that split the frame's fields.
        for start in range(0, len(data), 5):
            self.ws.send(data[start:start + 5])

    def next_frame(self):
        while True:
            parsed = self.parse()
            if parsed is not None:
                return parsed
            message = self.ws.recv(timeout=10)
            if isinstance(message, str):
                raise SystemExit("a text message came from the broker")
            self.buffer += message

    def parse(self):
        b = self.buffer
        if len(b) < 3:
            return None
        (t,) = struct.unpack(">H", b[1:3])
        if len(b) < 7 + t:
            return None
        (p,) = struct.unpack(">I", b[3 + t:7 + t])
        if len(b) < 9 + t + p:
            return None
        (c,) = struct.unpack(">H", b[7 + t + p:9 + t + p])
        if len(b) < 9 + t + p + c:
            return None
        kind = b[0] & 0x1F
        topic = b[3:3 + t].decode()
        payload = b[7 + t:7 + t + p]
        client_id = b[9 + t + p:9 + t + p + c].decode()
        self.buffer = b[9 + t + p + c:]
        return kind, topic, payload, client_id

    def expect(self, kind):
        got = self.next_frame()
        if got[0] != kind:
            raise SystemExit(f"expected frame {kind}, got {got}")
        return got


def session(url, ca, client_id):
    context = None
    if url.startswith("wss:"):
        context = ssl.create_default_context(cafile=ca)
    ws = connect(url, ssl=context, open_timeout=10)
    conn = Conn(ws)
    conn.send(frame(CONNECT, client_id=client_id.encode()))
    _, _, _, assigned = conn.expect(CONNACK)
    if assigned != client_id:
        raise SystemExit(f"ConnAck for {assigned!r}, asked for {client_id!r}")
    return ws, conn


def main(argv):
    url = argv[1]
    ca = None
    rest = argv[2:]
    if rest[:1] == ["--ca"]:
        ca, rest = rest[1], rest[2:]
    mode = rest[0]
    if mode == "subscribe":
        filter_, count = rest[1], int(rest[2])
        ws, conn = session(url, ca, "ws-sub")
        conn.send(frame(SUBSCRIBE, topic=filter_.encode()))
        conn.expect(SUBACK)
        print("subscribed", flush=True)
        # A WebSocket ping, answered by the broker's WebSocket layer.
        if ws.ping(b"are you there").wait(10):
            print("pong", flush=True)
        for _ in range(count):
            _, topic, payload, sender = conn.expect(PUBLISH)
            print(topic, payload.decode(), sender, flush=True)
        conn.send(frame(DISCONNECT))
        ws.close()
    elif mode == "publish":
        topic, payloads = rest[1], rest[2:]
        ws, conn = session(url, ca, "ws-pub")
        for payload in payloads:
            conn.send(frame(PUBLISH, topic=topic.encode(), payload=payload.encode()))
        conn.send(frame(DISCONNECT))
        ws.close()
        print(f"published {len(payloads)}", flush=True)
    elif mode == "text":
        ws = connect(url, open_timeout=10)
        ws.send("this is text")
        try:
            ws.recv(timeout=10)
            raise SystemExit("the broker did not close after a text message")
        except ConnectionClosed as closed:
            print("closed", closed.rcvd.code if closed.rcvd else None, flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv)
