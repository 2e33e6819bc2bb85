#!/usr/bin/env bash
# A Moustique session with curl, each value encoded with the shell recipe
# of Moustique's README (the legacy order: Base64, then ROT13 of the Base64
# text; `base64` wraps at 76 columns, as the recipe leaves it) and each
# answer decoded with its decode recipe. tinymq detects the order per
# request and answers in it.
#
# Usage: legacy_curl.sh HTTP_HOST:PORT. Prints `ok ...` per check and
# `ALL OK` last; exits 1 with `FAIL: ...` at the first difference.
set -euo pipefail
base="http://$1"
client="legacy-$$"

enc() { echo -n "$1" | base64 | tr 'A-Za-z' 'N-ZA-Mn-za-m'; }
dec() { echo "$1" | tr 'A-Za-z' 'N-ZA-Mn-za-m' | base64 -d; }
fail() { echo "FAIL: $*"; exit 1; }
# call ENDPOINT NAME VALUE ...: POSTs the encoded form; prints the status,
# a space, and the raw body.
call() {
    local endpoint=$1; shift
    local args=()
    while [ $# -gt 0 ]; do
        args+=(--data-urlencode "$1=$(enc "$2")"); shift 2
    done
    curl -s --max-time 5 -o /tmp/legacy_curl.$$ -w '%{http_code}' "${args[@]}" "$base/$endpoint"
    printf ' '
    cat /tmp/legacy_curl.$$
    rm -f /tmp/legacy_curl.$$
}
expect_status() { # WANT "STATUS BODY" WHAT
    [ "${2%% *}" = "$1" ] || fail "$3: status ${2%% *}, wanted $1 (${2#* })"
    echo "ok $3"
}

topic="/legacy/$client/a-rather-long-topic-name-so-that-base64-wraps-its-line/temperature"
message="hello from curl and a shell recipe, long enough to wrap"

expect_status 200 "$(call SUBSCRIBE topic "/legacy/$client/#" client "$client")" "SUBSCRIBE"
expect_status 200 "$(call POST topic "$topic" message "$message" from "sh")" "POST"

reply=$(call PICKUP client "$client")
expect_status 200 "$reply" "PICKUP"
picked=$(dec "${reply#* }")
echo "$picked" | grep -qF "\"/legacy/$client/#\"" || fail "PICKUP groups under the filter: $picked"
echo "$picked" | grep -qF "\"topic\":\"$topic\"" || fail "PICKUP has the topic: $picked"
echo "$picked" | grep -qF "\"message\":\"$message\"" || fail "PICKUP has the message: $picked"
echo "$picked" | grep -qF '"from":"sh"' || fail "PICKUP has the sender: $picked"
echo "ok PICKUP decodes with the README's recipe and holds the message"

reply=$(call GETVAL topic "$topic")
expect_status 200 "$reply" "GETVAL"
value=$(dec "${reply#* }")
echo "$value" | grep -qF "\"message\":\"$message\"" || fail "GETVAL: $value"
echo "ok GETVAL decodes with the README's recipe"

reply=$(call PUTVAL valname "/legacy/$client/v" val "42")
expect_status 200 "$reply" "PUTVAL"
reply=$(call GETVAL topic "/legacy/$client/v")
value=$(dec "${reply#* }")
echo "$value" | grep -qF '"message":"42"' || fail "GETVAL after PUTVAL: $value"
echo "ok PUTVAL then GETVAL"

# /VERSION carries no parameter to tell the order by: it is answered in the
# current order (ROT13, then Base64), which this recipe decodes the other way.
reply=$(curl -s --max-time 5 "$base/VERSION")
version=$(echo "$reply" | base64 -d | tr 'A-Za-z' 'N-ZA-Mn-za-m')
[[ "$version" =~ ^\"[0-9]+\.[0-9]+\.[0-9]+\"$ ]] || fail "VERSION in the current order: $version"
echo "ok VERSION is answered in the current order"

echo "ALL OK"
