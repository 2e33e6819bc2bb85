#!/usr/bin/env bash
# The README's test command. Installs what the tests drive when it is
# missing, then runs every test of the workspace:
#
#   bash tests/run.sh                 # all of them
#   bash tests/run.sh -- --nocapture  # arguments go to cargo test
#
# On Debian (apt-get; sudo when not root) it installs: curl, python3 with
# venv, chromium and a font for its screenshots, nats-server, mosquitto, openssl,
# and node and npm when node is missing (a node from elsewhere, e.g.
# NodeSource's, is used as it is: Debian's npm would conflict with it).
# Then playwright-core for the browser test (npm ci of
# tests/browser/package-lock.json, when node_modules is missing or older
# than the lockfile), and a Python venv at target/test-venv with the pinned
# packages of tests/clients/requirements.txt. The tests themselves install
# nothing: one that cannot find a program fails, naming this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian installs the brokers in /usr/sbin, not on every user's PATH.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have curl || missing+=(curl)
have python3 || missing+=(python3)
# Debian's python3 has no venv (ensurepip) without python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
have node || missing+=(nodejs)
have npm || missing+=(npm)
# fonts-liberation is only recommended, and the screenshots need a font.
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
[ -d /usr/share/fonts/truetype/liberation ] || missing+=(fonts-liberation)
have nats-server || missing+=(nats-server)
have mosquitto || missing+=(mosquitto)
have mosquitto_pub || missing+=(mosquitto-clients)
# The bridge mutual-TLS tests make an RSA PKCS#1 key with it.
have openssl || missing+=(openssl)

if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: no apt-get here; install ${missing[*]} yourself" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The mosquitto package starts a service on port 1883; the tests start
    # their own brokers on free ports and need none running.
    if [[ " ${missing[*]} " == *" mosquitto "* ]]; then
        $sudo systemctl stop mosquitto 2>/dev/null || $sudo service mosquitto stop 2>/dev/null || true
    fi
fi

# playwright-core for the browser test. npm ci writes
# node_modules/.package-lock.json, so a lockfile newer than it means the
# installed packages are out of date.
browser=tests/browser
if [ ! -f "$browser/node_modules/.package-lock.json" ] \
    || [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
    echo "tests/run.sh: npm ci --prefix $browser"
    npm ci --prefix "$browser" --no-audit --no-fund
fi

# The Python clients' packages, pinned, in a venv the tests find at
# target/test-venv (or at $TINYMQ_TEST_PYTHON, an interpreter of your own).
venv=target/test-venv
requirements=tests/clients/requirements.txt
if [ ! -f "$venv/installed.txt" ] || [ "$requirements" -nt "$venv/installed.txt" ] \
    || ! "$venv/bin/python" -c 'import requests, moustique, websockets, paho.mqtt' >/dev/null 2>&1; then
    echo "tests/run.sh: a Python venv at $venv with $requirements"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
    cp "$requirements" "$venv/installed.txt"
fi

exec cargo test --workspace "$@"
