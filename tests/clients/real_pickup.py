#!/usr/bin/env python3
"""SUBSCRIBE and PICKUP through the real Moustique Python client from PyPI
(`moustique-client`, pinned in tests/clients/requirements.txt), nothing of
our own in between: for the tests of PICKUP queues kept across restarts
(tinymq-bin/tests/e2e/http_pickup_durable.rs).

Usage:
  real_pickup.py HOST PORT CLIENT subscribe FILTER
  real_pickup.py HOST PORT CLIENT pickup

`pickup` makes one PICKUP and prints each message object it returned as one
JSON line, in the order returned. Prints `ALL OK` last; exits 1 with
`FAIL: ...` if the client raised (it raises on an error status).
"""

import json
import sys

from moustique import Moustique


def main():
    host, port, client, action = sys.argv[1:5]
    moustique = Moustique(host, port, client)
    try:
        if action == "subscribe":
            moustique.subscribe(sys.argv[5], lambda topic, message, sender: None)
        elif action == "pickup":
            for message in moustique.pickup():
                print(json.dumps(message, sort_keys=True), flush=True)
        else:
            print(f"FAIL: unknown action {action!r}", flush=True)
            sys.exit(1)
    except Exception as error:  # the client raises plain Exceptions
        print(f"FAIL: {error}", flush=True)
        sys.exit(1)
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
