#!/usr/bin/env python3
"""Drives tinymq's Moustique-compatible API the way Moustique's Python client
(moustique/client.py) does: one requests.Session shared by every call, so
connections are kept alive; every form value ROT13'd and then Base64-encoded
(the current order, as PyPI moustique-client 0.1.1 has it);
POST/SUBSCRIBE/PICKUP/GETVAL and the server queries as POST forms, PUTVAL as
PUT; PICKUP replies dispatched to callbacks by their filter key; and the
/server/action/resubscribe message answered by subscribing again.

Usage: moustique_client.py HOST PORT. Prints `CLIENT <name>` first and
`ALL OK` last; exits 1 with a message at the first difference from the
contract (tinymq-bin/tests/e2e/http_moustique.rs runs it against a real broker).
"""

import base64
import json
import os
import socket
import sys
import time
from datetime import datetime

import requests

ROT13_IN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ROT13_OUT = "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm"
TIMEOUT = 5  # seconds, per request
WAIT = 5  # seconds for something published to reach a pickup

ua = requests.Session()


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def enc(plaintext):
    # encode_rot13_base64: ROT13 first, then Base64.
    if plaintext:
        rotated = plaintext.translate(str.maketrans(ROT13_IN, ROT13_OUT))
        return base64.b64encode(rotated.encode()).decode()
    return ""


def dec(encoded):
    # decode_rot13_base64: Base64 first, then ROT13.
    if not encoded:
        return ""
    decoded = base64.b64decode(encoded).decode()
    return decoded.translate(str.maketrans(ROT13_OUT, ROT13_IN))


def nicedatetime(timestamp=None):
    moment = datetime.fromtimestamp(timestamp) if timestamp is not None else datetime.now()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def decoded_json(response, what):
    check(response.status_code == 200, f"{what}: status {response.status_code}, body {response.text!r}")
    content_type = response.headers.get("Content-Type", "").replace(" ", "").lower()
    check(content_type == "text/plain;charset=utf-8", f"{what}: Content-Type {content_type!r}")
    text = dec(response.text.strip())
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as error:
        fail(f"{what}: decoded body is not JSON ({error}): {text!r}")


def check_message(message, topic, text, sender, what):
    check(isinstance(message, dict), f"{what}: a message object, got {message!r}")
    for key in ("topic", "message", "from", "updated_time", "updated_nicedatetime", "ip"):
        check(key in message, f"{what}: no {key!r} in {message!r}")
    check(message["topic"] == topic, f"{what}: topic {message['topic']!r} != {topic!r}")
    check(message["message"] == text, f"{what}: message {message['message']!r} != {text!r}")
    check(message["from"] == sender, f"{what}: from {message['from']!r} != {sender!r}")
    check(message["ip"] == "127.0.0.1", f"{what}: ip {message['ip']!r}")
    try:
        datetime.strptime(message["updated_nicedatetime"], "%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        fail(f"{what}: updated_nicedatetime {message['updated_nicedatetime']!r}")


class Moustique:
    def __init__(self, ip, port, client_name):
        hostname = socket.gethostname()
        self.name = f"{hostname}-{client_name}-{int(os.urandom(1)[0] % 100)}-{os.getpid()}"
        self.base = f"http://{ip}:{port}"
        self.callbacks = {}
        self.system_callbacks = {"/server/action/resubscribe": self.resubscribe}
        self.resubscribes = 0
        self.picked_up = []  # every (filter, message object) a pickup returned

    def publish(self, topic, message, updated_time=None):
        stamp = int(updated_time if updated_time is not None else datetime.now().timestamp())
        payload = {
            "topic": enc(topic),
            "message": enc(message),
            "updated_time": enc(str(stamp)),
            "updated_nicedatetime": enc(nicedatetime(stamp)),
            "from": enc(self.name),
        }
        response = ua.post(f"{self.base}/POST", data=payload, timeout=TIMEOUT)
        check(response.status_code == 200, f"POST {topic}: status {response.status_code} {response.text!r}")
        check(response.text == "", f"POST {topic}: empty body expected, got {response.text!r}")

    def putval(self, topic, message):
        payload = {
            "valname": enc(topic),
            "val": enc(message),
            "updated_time": enc(str(int(datetime.now().timestamp()))),
            "updated_nicedatetime": enc(nicedatetime()),
            "from": enc(self.name),
        }
        response = ua.put(f"{self.base}/PUTVAL", data=payload, allow_redirects=True, timeout=TIMEOUT)
        check(response.status_code == 200, f"PUTVAL {topic}: status {response.status_code} {response.text!r}")
        check(response.text == "", f"PUTVAL {topic}: empty body expected, got {response.text!r}")

    def subscribe(self, topic, callback):
        payload = {"topic": enc(topic), "client": enc(self.name)}
        response = ua.post(f"{self.base}/SUBSCRIBE", data=payload, timeout=TIMEOUT)
        check(response.status_code == 200, f"SUBSCRIBE {topic}: status {response.status_code} {response.text!r}")
        check(response.text == "", f"SUBSCRIBE {topic}: empty body expected, got {response.text!r}")
        self.callbacks.setdefault(topic, [])
        if callback not in self.callbacks[topic]:
            self.callbacks[topic].append(callback)

    def resubscribe(self, *args):
        self.resubscribes += 1
        log_topic = "/mushroom/logs/moustique_lib/INFO"
        if self.callbacks:
            self.publish(log_topic, f"{self.name} Resubscribing all subscriptions")
        for topic in list(self.callbacks.keys()):
            payload = {"topic": enc(topic), "client": enc(self.name)}
            response = ua.post(f"{self.base}/SUBSCRIBE", data=payload, timeout=TIMEOUT)
            check(response.status_code == 200, f"resubscribe {topic}: status {response.status_code}")
        self.publish(log_topic, f"{self.name} Resubscribed all subscriptions")

    def pickup(self):
        payload = {"client": enc(self.name)}
        response = ua.post(f"{self.base}/PICKUP", data=payload, timeout=TIMEOUT)
        data = decoded_json(response, "PICKUP")
        check(isinstance(data, dict), f"PICKUP: a JSON object, got {data!r}")
        for topic, messages in data.items():
            check(isinstance(messages, list), f"PICKUP: {topic!r} maps to a list, got {messages!r}")
            for message in messages:
                self.picked_up.append((topic, message))
                topic_callbacks = self.callbacks.get(topic, [])
                for callback in topic_callbacks:
                    callback(message["topic"], message["message"], message["from"])
                system_callback = self.system_callbacks.get(topic)
                if system_callback and not topic_callbacks:
                    system_callback(message["topic"], message["message"])
        return data

    def pickup_until(self, done, what):
        deadline = time.monotonic() + WAIT
        while not done():
            check(time.monotonic() < deadline, f"{what}: not within {WAIT} s; picked up {self.picked_up!r}")
            self.pickup()
            time.sleep(0.02)

    def get_val(self, valname):
        payload = {"client": enc(self.name), "topic": enc(valname)}
        return ua.post(f"{self.base}/GETVAL", data=payload, timeout=TIMEOUT)

    def get(self, endpoint, pwd=""):
        # Moustique.get: the server queries (VERSION, STATS, ...).
        payload = {"client": enc(self.name), "pwd": enc(pwd)}
        response = ua.post(f"{self.base}/{endpoint}", data=payload, timeout=TIMEOUT)
        return decoded_json(response, endpoint)


def main():
    if len(sys.argv) != 3:
        fail("usage: moustique_client.py HOST PORT")
    host, port = sys.argv[1], sys.argv[2]
    client = Moustique(host, port, "TestClient")
    print(f"CLIENT {client.name}", flush=True)

    version = client.get("VERSION")
    check(isinstance(version, str) and version, f"VERSION: a non-empty JSON string, got {version!r}")
    print(f"ok VERSION {version}", flush=True)

    # Two overlapping filters: a message matching both reaches both callbacks.
    temperatures, everything = [], []
    client.subscribe("/py/sensors/+/temperature", lambda t, m, f: temperatures.append((t, m, f)))
    client.subscribe("/py/sensors/#", lambda t, m, f: everything.append((t, m, f)))
    temperature = "21.5 °C, åäö"
    client.publish("/py/sensors/kitchen/temperature", temperature, updated_time=1700000000)
    client.publish("/py/sensors/kitchen/humidity", "40%")
    client.pickup_until(lambda: len(everything) >= 2, "both messages under /py/sensors/#")
    check(
        temperatures == [("/py/sensors/kitchen/temperature", temperature, client.name)],
        f"the +/temperature callback got {temperatures!r}",
    )
    check(
        everything
        == [
            ("/py/sensors/kitchen/temperature", temperature, client.name),
            ("/py/sensors/kitchen/humidity", "40%", client.name),
        ],
        f"the # callback got {everything!r}",
    )
    filters = sorted(f for f, _ in client.picked_up)
    check(
        filters == ["/py/sensors/#", "/py/sensors/#", "/py/sensors/+/temperature"],
        f"PICKUP keys are the filters: {client.picked_up!r}",
    )
    for _, message in client.picked_up:
        if message["topic"] == "/py/sensors/kitchen/temperature":
            check_message(message, message["topic"], temperature, client.name, "PICKUP")
            check(message["updated_time"] == 1700000000, f"the client's updated_time is kept: {message!r}")
            check(
                message["updated_nicedatetime"] == nicedatetime(1700000000),
                f"updated_nicedatetime of 1700000000 in local time: {message!r}",
            )
    print("ok SUBSCRIBE two filters, POST, PICKUP by filter", flush=True)

    # Nothing queued: an empty object.
    response = ua.post(f"{client.base}/PICKUP", data={"client": enc(client.name)}, timeout=TIMEOUT)
    check(decoded_json(response, "empty PICKUP") == {}, f"an empty PICKUP is {{}}: {dec(response.text)!r}")
    print("ok empty PICKUP", flush=True)

    # PUTVAL stores without publishing: a later POST arrives, the value does not.
    config = []
    client.subscribe("/py/config/#", lambda t, m, f: config.append((t, m, f)))
    client.putval("/py/config/setpoint", "22")
    client.publish("/py/config/sentinel", "after the PUTVAL")
    client.pickup_until(lambda: config, "the sentinel")
    check(config == [("/py/config/sentinel", "after the PUTVAL", client.name)], f"PUTVAL was published: {config!r}")
    print("ok PUTVAL (PUT) does not publish", flush=True)

    response = client.get_val("/py/config/setpoint")
    value = decoded_json(response, "GETVAL /py/config/setpoint")
    check_message(value, "/py/config/setpoint", "22", client.name, "GETVAL of a PUTVAL")
    response = client.get_val("/py/sensors/kitchen/temperature")
    value = decoded_json(response, "GETVAL /py/sensors/kitchen/temperature")
    check_message(value, "/py/sensors/kitchen/temperature", temperature, client.name, "GETVAL of a POST")
    check(value["updated_time"] == 1700000000, f"GETVAL keeps the client's updated_time: {value!r}")
    response = client.get_val("/py/never/set")
    check(response.status_code == 404, f"GETVAL of a topic without a value: 404, got {response.status_code}")
    print("ok GETVAL", flush=True)

    payload = {"topic": enc("sensors/kitchen/"), "client": enc(client.name)}
    response = ua.post(f"{client.base}/GETVALSBYREGEX", data=payload, timeout=TIMEOUT)
    values = decoded_json(response, "GETVALSBYREGEX")
    check(
        isinstance(values, dict)
        and sorted(values) == ["/py/sensors/kitchen/humidity", "/py/sensors/kitchen/temperature"],
        f"GETVALSBYREGEX sensors/kitchen/ (unanchored): {values!r}",
    )
    check_message(values["/py/sensors/kitchen/humidity"], "/py/sensors/kitchen/humidity", "40%", client.name, "regex")
    print("ok GETVALSBYREGEX", flush=True)

    stats = client.get("STATS")
    check(isinstance(stats, dict), f"STATS: an object, got {stats!r}")
    for path in (
        "started",
        "subscription_count",
        "values",
        "clients.subscribers",
        "clients.posters",
        "requests.total",
        "requests.per_second",
        "requests.pickups.total",
        "requests.pickups.per_second",
        "requests.pickups.per_second_last_minute",
        "requests.processed.total",
        "requests.getvals.total",
    ):
        node = stats
        for key in path.split("."):
            check(isinstance(node, dict) and key in node, f"STATS has no {path!r}: {stats!r}")
            node = node[key]
    check(stats["subscription_count"] >= 3, f"STATS subscription_count counts our 3: {stats!r}")
    check(stats["requests"]["pickups"]["total"] >= 3, f"STATS requests.pickups.total: {stats!r}")
    print("ok STATS", flush=True)

    # A client the broker does not know (as after a broker restart) gets the
    # resubscribe message, subscribes again from its callbacks, and receives.
    forgotten = Moustique(host, port, "Forgotten")
    resubscribed = []
    forgotten.callbacks["/py/resub/#"] = [lambda t, m, f: resubscribed.append((t, m, f))]
    data = forgotten.pickup()
    check(
        list(data) == ["/server/action/resubscribe"]
        and len(data["/server/action/resubscribe"]) == 1
        and data["/server/action/resubscribe"][0].get("topic") == "/server/action/resubscribe",
        f"an unknown client's PICKUP: {data!r}",
    )
    check(forgotten.resubscribes == 1, "the resubscribe system callback ran")
    client.publish("/py/resub/x", "welcome back")
    forgotten.pickup_until(lambda: resubscribed, "a message after resubscribing")
    check(resubscribed == [("/py/resub/x", "welcome back", client.name)], f"after resubscribing: {resubscribed!r}")
    print("ok resubscribe", flush=True)

    print("ALL OK", flush=True)


if __name__ == "__main__":
    try:
        main()
    except requests.exceptions.RequestException as error:
        fail(f"request failed: {error!r}")
