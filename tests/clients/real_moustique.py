#!/usr/bin/env python3
"""Drives a broker through the public API of the real Moustique Python client,
PyPI `moustique-client` (pinned in tests/clients/requirements.txt), nothing of our own
in between: publish, subscribe + pickup with callbacks, putval, get_val, and
the module's getversion, getstats, getclients, gettopics, getposters,
getpeerhosts and getcrooks.

Usage: real_moustique.py HOST PORT [USERNAME PASSWORD]. With credentials
every call carries them (a user made with `tinymq user add`). Prints one
`ok ...` line per check and `ALL OK` last; exits 1 with `FAIL: ...` at the
first difference. The client's helpers print and swallow their own errors
(returning {} or []), so each answer is checked for content, not just for
having come back.
"""

import os
import sys
import time

import moustique
from moustique import Moustique

WAIT = 5.0  # seconds for a publish to reach a pickup


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok {message}", flush=True)


def main():
    host, port = sys.argv[1], sys.argv[2]
    user, password = (sys.argv[3], sys.argv[4]) if len(sys.argv) == 5 else (None, None)
    suffix = f"{os.getpid()}-{user or 'anon'}"
    topic = f"/real/{suffix}/temperature"

    subscriber = Moustique(host, port, f"sub-{suffix}", user, password)
    publisher = Moustique(host, port, f"pub-{suffix}", user, password)

    version = moustique.getversion(host, port)
    check(version not in ("", "unknown") and version[0].isdigit(), f"getversion gives a version: {version!r}")

    got = []
    subscriber.subscribe(f"/real/{suffix}/+", lambda t, m, f: got.append(("plus", t, m, f)))
    subscriber.subscribe(f"/real/{suffix}/#", lambda t, m, f: got.append(("hash", t, m, f)))
    publisher.publish(topic, "23.1 °C")
    deadline = time.monotonic() + WAIT
    while len(got) < 2 and time.monotonic() < deadline:
        subscriber.pickup()
        time.sleep(0.05)
    expected = {(kind, topic, "23.1 °C", f"pub-{suffix}") for kind in ("plus", "hash")}
    check(set(got) == expected, f"both filters' callbacks fire with topic, message and sender: {got}")

    publisher.publish(topic, "second", from_name="named-sender")
    messages = []
    deadline = time.monotonic() + WAIT
    while not messages and time.monotonic() < deadline:
        messages = subscriber.pickup()
        time.sleep(0.05)
    check(len(messages) == 2, f"pickup returns the message under each matching filter: {messages}")
    first = messages[0]
    check(first.get("from") == "named-sender" and first.get("message") == "second", f"from_name is the sender: {first}")
    check(
        first.get("subscribers") == {f"sub-{suffix}": True},
        f"the message object names its subscribers: {first.get('subscribers')}",
    )
    for key in ("topic", "message", "from", "updated_time", "updated_nicedatetime", "ip"):
        check(key in first, f"the message object has {key}")

    check(publisher.get_val(topic) == "second", "get_val returns the latest published value")
    publisher.putval(f"/real/{suffix}/setpoint", "21")
    check(publisher.get_val(f"/real/{suffix}/setpoint") == "21", "putval stores a value get_val returns")
    # Moustique answers 404 for a value it does not have, and the client
    # raises on every 404; tinymq does the same.
    try:
        missing = publisher.get_val(f"/real/{suffix}/never")
        fail(f"get_val of nothing raises, as against Moustique: got {missing!r}")
    except Exception as error:  # the client raises a bare Exception
        check("not found" in str(error), f"get_val of nothing raises the client's 404 error: {error}")

    stats = moustique.getstats(host, port, user, password)
    for path in (
        ("started",),
        ("memory_usage",),
        ("subscription_count",),
        ("goroutines",),
        ("average_request_time",),
        ("values",),
        ("clients", "subscribers"),
        ("clients", "posters"),
        ("requests", "total"),
        ("requests", "per_second"),
        ("requests", "per_second_last_minute"),
        ("requests", "pickups", "total"),
        ("requests", "processed", "per_second"),
        ("requests", "getvals", "per_second_last_minute"),
    ):
        node = stats
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        check(node is not None, f"getstats has {'.'.join(path)}")
    check(stats["clients"]["subscribers"] >= 1, "getstats counts the subscriber")

    clients = moustique.getclients(host, port, user, password)
    names = [c.get("Name") for c in clients]
    check(f"sub-{suffix}" in names, f"getclients lists the subscriber: {names}")
    mine = next(c for c in clients if c.get("Name") == f"sub-{suffix}")
    for key in ("FirstSeen", "FirstSeenNiceDatetime", "LatestPickup", "LatestPickupNiceDatetime", "RequestCounter", "IP"):
        check(key in mine, f"a client has {key}")

    topics = moustique.gettopics(host, port, user, password)
    check(topic in topics and f"/real/{suffix}/setpoint" in topics, f"gettopics lists the topic and the value: {topics}")

    posters = moustique.getposters(host, port, user, password)
    poster = next((p for p in posters if p.get("Name") == "named-sender"), None)
    check(poster is not None, f"getposters lists the sender: {posters}")
    check(poster["MessageCount"] == 1 and poster["latest_post"]["message"] == "second", f"with its latest post: {poster}")
    check(topic in poster["latest_posts_by_topic"], "and its latest post per topic")

    hosts = moustique.getpeerhosts(host, port, user, password)
    check(any(h.get("IP") == "127.0.0.1" for h in hosts), f"getpeerhosts lists this host: {hosts}")

    crooks = moustique.getcrooks(host, port, user, password)
    check(isinstance(crooks, list), f"getcrooks answers a list: {crooks}")
    if os.environ.get("EXPECT_CROOK"):
        crook = next((c for c in crooks if c.get("IP") == os.environ["EXPECT_CROOK"]), None)
        check(crook is not None and crook["Attempts"] >= 1, f"getcrooks lists the peer that sent bad requests: {crooks}")
        check(crook.get("Reason") == "wrong credentials", f"and why: {crook}")

    if user:
        anonymous = Moustique(host, port, f"anon-{suffix}")
        try:
            anonymous.publish(topic, "no credentials")
            fail("without credentials a publish is refused when anonymous access is off")
        except Exception as error:
            check("Authentication failed" in str(error), f"without credentials the client is told: {error}")
        impostor = Moustique(host, port, f"bad-{suffix}", user, password + "-wrong")
        try:
            impostor.publish(topic, "wrong password")
            fail("a wrong password is refused")
        except Exception as error:
            check("Authentication failed" in str(error), f"a wrong password gets 401: {error}")

    print("ALL OK", flush=True)


main()
