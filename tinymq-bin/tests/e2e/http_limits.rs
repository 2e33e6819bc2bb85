//! HTTP connection handling and limits through the real binary, over raw
//! sockets: keep-alive and pipelining, HTTP/1.0 and `Connection: close`,
//! every refusal status (400 404 405 408 411 413 431 503), hostile slow
//! peers that must not hold up anyone else, and the per-client bounds of
//! the Moustique face (client expiry, queue size).

use std::time::{Duration, Instant};

use crate::support::http::{
    HttpConn, Json, JsonExt, Next, Response, call, enc, eventually, moustique, moustique_json, moustique_request,
    pickup, pickup_until, post, request_bytes, subscribe, triples,
};
use crate::support::{BrokerProcess, QUIET, WAIT};

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A response to `request` on a fresh connection.
fn answer(broker: &BrokerProcess, request: &[u8]) -> (HttpConn, Response) {
    let mut conn = HttpConn::open(broker.http_addr());
    conn.send(request);
    match conn.next_within(WAIT) {
        Next::Response(response) => (conn, response),
        other => panic!("{:?}: expected a response within {WAIT:?}, got {other:?}", String::from_utf8_lossy(request)),
    }
}

/// Asserts a refusal: the status and a short text body.
fn assert_refused(response: &Response, status: u16, what: &str) {
    response.assert_status(status, what);
    assert!(
        !response.body.is_empty() && response.body.len() < 1024,
        "{what}: a short text body: {:?}",
        response.text()
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let broker = BrokerProcess::start_http(&[]);
    let mut conn = HttpConn::open(broker.http_addr());
    let mut batch = Vec::new();
    batch.extend(moustique_request("POST", "SUBSCRIBE", &[("topic", "pipe/#"), ("client", "piper")]));
    batch.extend(moustique_request("POST", "POST", &[("topic", "pipe/a"), ("message", "1"), ("from", "piper")]));
    batch.extend_from_slice(HEALTH);
    batch.extend(moustique_request("POST", "GETVAL", &[("topic", "pipe/a")]));
    batch.extend(request_bytes("GET", "/NO-SUCH-ENDPOINT", &[], b""));
    batch.extend(moustique_request("PUT", "PUTVAL", &[("valname", "pipe/b"), ("val", "2")]));
    batch.extend(moustique_request("POST", "VERSION", &[]));
    // All in one write.
    conn.send(&batch);

    conn.response().assert_empty_ok("1: SUBSCRIBE");
    conn.response().assert_empty_ok("2: POST");
    let health = conn.response();
    assert_eq!((health.status, health.text().trim()), (200, "ok"), "3: health");
    let value = conn.response().moustique_json("4: GETVAL after the POST on the same connection");
    assert_eq!((value.field("topic").str(), value.field("message").str()), ("pipe/a", "1"), "{value}");
    conn.response().assert_status(404, "5: an unknown path");
    conn.response().assert_empty_ok("6: PUTVAL");
    let version = conn.response().moustique_json("7: VERSION");
    version.str();

    // Still open for more.
    let health = conn.request("GET", "/api/v1/health", b"");
    assert_eq!(health.status, 200);
    let picked = pickup_until(broker.http_addr(), "piper", "pipe/a");
    assert_eq!(triples(&picked), [("pipe/#".into(), "pipe/a".into(), "1".into())]);
}

#[test]
fn a_request_split_into_many_writes_is_answered() {
    let broker = BrokerProcess::start_http(&[]);
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("split/#");
    let mut conn = HttpConn::open(broker.http_addr());
    let request = moustique_request("POST", "POST", &[("topic", "split/a"), ("message", "in pieces")]);
    let pieces: Vec<&[u8]> = request.chunks(7).collect();
    let (last, before) = pieces.split_last().unwrap();
    for piece in before {
        conn.send(piece);
        conn.expect_silence(Duration::from_millis(5));
    }
    conn.send(last);
    conn.response().assert_empty_ok("a POST written 7 bytes at a time");
    assert_eq!(subscriber.recv_publish().payload, b"in pieces");
}

#[test]
fn a_large_message_within_the_limit_is_delivered() {
    let broker = BrokerProcess::start_http(&[]);
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("big");
    // 700 KB of text: about 1.27 MB once encoded and percent-encoded.
    let text: String = (0..700_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    moustique(broker.http_addr(), "POST", &[("topic", "big"), ("message", &text)]).assert_empty_ok("a 700 KB POST");
    let got = subscriber.recv_publish();
    assert_eq!(got.payload.len(), text.len());
    assert!(got.payload == text.as_bytes(), "the payload arrives intact");
}

#[test]
fn http_1_0_closes_after_the_response_unless_kept_alive() {
    let broker = BrokerProcess::start_http(&[]);
    let (mut conn, response) = answer(&broker, b"GET /api/v1/health HTTP/1.0\r\n\r\n");
    assert_eq!((response.status, response.text().trim()), (200, "ok"));
    conn.expect_closed();

    let kept = b"GET /api/v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let (mut conn, response) = answer(&broker, kept);
    assert_eq!(response.status, 200);
    assert!(response.header("content-length").is_some(), "a kept-alive response needs a length: {response:?}");
    conn.send(kept);
    assert_eq!(conn.response().status, 200, "the HTTP/1.0 keep-alive connection stayed open");

    // HTTP/1.1 with Connection: close.
    let (mut conn, response) = answer(&broker, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(response.status, 200);
    conn.expect_closed();

    // HTTP/1.1 without it stays open.
    let (mut conn, _) = answer(&broker, HEALTH);
    conn.expect_silence(QUIET);
    conn.send(HEALTH);
    assert_eq!(conn.response().status, 200);
}

/// A read event ends at a short read (the broker skips the read that would
/// only say `WouldBlock`); the peer's end of file must still be seen, both
/// when it comes with the request and when it comes after the answer.
#[test]
fn a_peer_that_closes_its_half_is_answered_and_closed() {
    let broker = BrokerProcess::start_http(&[]);
    // The request and the end of file together.
    let mut conn = HttpConn::open(broker.http_addr());
    conn.send(HEALTH);
    conn.shutdown_write();
    assert_eq!(conn.response().status, 200);
    conn.expect_closed();

    // The end of file long after the request was read and answered.
    let (mut conn, response) = answer(&broker, HEALTH);
    assert_eq!(response.status, 200);
    conn.expect_silence(QUIET);
    conn.shutdown_write();
    conn.expect_closed();
    assert_eq!(answer(&broker, HEALTH).1.status, 200, "the broker still serves");
}

#[test]
fn malformed_requests_are_400() {
    let broker = BrokerProcess::start_http(&[]);
    for (request, what) in [
        (&b"GARBAGE\r\n\r\n"[..], "a request line without method, target and version"),
        (b"GET /api/v1/health HTTP/9.9\r\n\r\n", "an unknown HTTP version"),
        (b"GET /api/v1/health HTTP/1.1\r\nNo colon here\r\n\r\n", "a header line without a colon"),
        (b"GET /GETVAL?topic=%zz HTTP/1.1\r\nHost: x\r\n\r\n", "bad percent-encoding in the query"),
        (b"POST /POST HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "a Content-Length that is not a number"),
        (b"POST /POST HTTP/1.1\r\nContent-Length: 8\r\n\r\ntopic=%4", "bad percent-encoding in the body"),
    ] {
        let (_, response) = answer(&broker, request);
        assert_refused(&response, 400, what);
    }
    let missing = moustique(broker.http_addr(), "SUBSCRIBE", &[("topic", "a/#")]);
    assert_refused(&missing, 400, "a missing parameter");
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let broker = BrokerProcess::start_http(&[]);
    for path in ["/NOPE", "/api/v1/nope", "/api/v2/health", "/POSTX"] {
        let response = call(broker.http_addr(), "GET", path, &[], b"");
        assert_refused(&response, 404, path);
    }
    for method in ["DELETE", "PATCH", "TRACE", "CONNECT", "HEAD"] {
        let response = call(broker.http_addr(), method, "/POST", &[], b"");
        assert_refused(&response, 405, method);
    }
}

/// OPTIONS is the one method besides GET, POST and PUT that is answered:
/// a browser sends it before the JavaScript client's cross-origin PUT
/// (PUTVAL), which would fail on a 405.
#[test]
fn options_is_a_cors_preflight_allowing_put() {
    let broker = BrokerProcess::start_http(&[]);
    let response = call(
        broker.http_addr(),
        "OPTIONS",
        "/PUTVAL",
        &[("Origin", "http://example.invalid"), ("Access-Control-Request-Method", "PUT")],
        b"",
    );
    assert!(matches!(response.status, 200 | 204), "a preflight succeeds: {response:?}");
    let methods = response.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("PUT"), "PUT is allowed: {response:?}");
    assert!(response.header("access-control-allow-origin").is_some(), "{response:?}");
}

#[test]
fn a_chunked_body_is_411() {
    let broker = BrokerProcess::start_http(&[]);
    let request = format!(
        "POST /POST HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        "topic=a&message=b".len(),
        "topic=a&message=b"
    );
    let (_, response) = answer(&broker, request.as_bytes());
    assert_refused(&response, 411, "a chunked body");
}

#[test]
fn a_body_over_the_limit_is_413_from_the_head_alone() {
    let broker = BrokerProcess::start_http(&[]);
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("#");
    for length in [1_572_865usize, 2_000_000, 1 << 40] {
        let head = format!("POST /POST?topic={} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n", enc("t"));
        // Only the head: the broker must answer without waiting for the body.
        let (mut conn, response) = answer(&broker, head.as_bytes());
        assert_refused(&response, 413, &format!("Content-Length {length}"));
        conn.expect_closed();
    }
    post(broker.http_addr(), "sentinel", "s", "me");
    assert_eq!(subscriber.recv_publish().topic, "sentinel", "nothing was published");
}

#[test]
fn a_head_over_16_kib_is_431() {
    let broker = BrokerProcess::start_http(&[]);
    let big = "a".repeat(17 * 1024);
    let request = format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (_, response) = answer(&broker, request.as_bytes());
    assert_refused(&response, 431, "a 17 KiB header");

    // Many small headers adding up to over 16 KiB.
    let many: String = (0..60).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(300))).collect();
    let request = format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (_, response) = answer(&broker, request.as_bytes());
    assert_refused(&response, 431, "60 headers of 300 bytes");

    // Just under the limit is fine.
    let fits = "c".repeat(15 * 1024);
    let request = format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Fits: {fits}\r\n\r\n");
    let (_, response) = answer(&broker, request.as_bytes());
    assert_eq!(response.status, 200, "a 15 KiB header is within the limit");
}

/// `--http-request-timeout 1`: what a request that is not whole in time gets.
const REQUEST_TIMEOUT: &[&str] = &["--http-request-timeout", "1"];

/// Reads the 408 a stalled request must get about a second after `start`,
/// then the close.
fn expect_408(conn: &mut HttpConn, start: Instant, what: &str) {
    let response = match conn.next_within(Duration::from_secs(1) + WAIT) {
        Next::Response(response) => response,
        other => panic!("{what}: expected 408 within {:?}, got {other:?}", Duration::from_secs(1) + WAIT),
    };
    let waited = start.elapsed();
    assert_refused(&response, 408, what);
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&waited),
        "{what}: 408 about a second after the first byte, not {waited:?}"
    );
    conn.expect_closed();
}

#[test]
fn a_stalled_head_is_408() {
    let broker = BrokerProcess::start_http(REQUEST_TIMEOUT);
    let mut conn = HttpConn::open(broker.http_addr());
    let start = Instant::now();
    conn.send(b"POST /POST HTTP/1.1\r\nHost: x\r\n");
    expect_408(&mut conn, start, "a head that stops halfway");
}

#[test]
fn a_stalled_body_is_408() {
    let broker = BrokerProcess::start_http(REQUEST_TIMEOUT);
    let mut conn = HttpConn::open(broker.http_addr());
    let start = Instant::now();
    conn.send(b"POST /POST HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\ntopic=");
    expect_408(&mut conn, start, "a whole head, then part of the body");
}

#[test]
fn a_stalled_second_request_on_a_kept_connection_is_408() {
    let broker = BrokerProcess::start_http(REQUEST_TIMEOUT);
    let mut conn = HttpConn::open(broker.http_addr());
    assert_eq!(conn.request("GET", "/api/v1/health", b"").status, 200);
    let start = Instant::now();
    conn.send(b"GET /api/v1/hea");
    expect_408(&mut conn, start, "the second request stops halfway");
}

#[test]
fn a_trickled_head_is_408_a_second_after_its_first_byte() {
    let broker = BrokerProcess::start_http(REQUEST_TIMEOUT);
    let mut conn = HttpConn::open(broker.http_addr());
    // A byte every 100 ms: the deadline counts from the first byte, not
    // from the last.
    let trickle = format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n", "s".repeat(100));
    let start = Instant::now();
    for byte in trickle.as_bytes() {
        if conn.try_send(std::slice::from_ref(byte)).is_err() {
            break;
        }
        match conn.next_within(Duration::from_millis(100)) {
            Next::Timeout => {}
            Next::Response(response) => {
                assert_refused(&response, 408, "a trickled head");
                let waited = start.elapsed();
                assert!(
                    (Duration::from_millis(900)..Duration::from_secs(3)).contains(&waited),
                    "408 about a second after the first byte, not {waited:?}"
                );
                conn.expect_closed();
                return;
            }
            Next::Closed => panic!("closed without a response after {:?}", start.elapsed()),
        }
    }
    panic!("the whole trickled head was sent over {:?} without a 408", start.elapsed());
}

#[test]
fn requests_each_complete_in_time_keep_a_connection_served() {
    let broker = BrokerProcess::start_http(REQUEST_TIMEOUT);
    let mut conn = HttpConn::open(broker.http_addr());
    // Well past the timeout in total, each request whole at once.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        conn.send(HEALTH);
        assert_eq!(conn.response().status, 200, "after {:?}", start.elapsed());
        conn.expect_silence(Duration::from_millis(250));
    }
}

#[test]
fn connections_over_the_limit_get_503() {
    let broker = BrokerProcess::start_http(&["--max-connections", "2"]);
    // The start-up probes may still hold their places for a moment.
    let served = || {
        let mut conn = HttpConn::open(broker.http_addr());
        if conn.try_send(HEALTH).is_err() {
            return None;
        }
        match conn.next_within(WAIT) {
            Next::Response(r) if r.status == 200 => Some(conn),
            _ => None,
        }
    };
    let first = eventually(WAIT, "a first connection is served", served);
    let mut second = eventually(WAIT, "a second connection is served", served);

    let mut third = HttpConn::open(broker.http_addr());
    let response = match third.next_within(Duration::from_secs(1)) {
        Next::Response(response) => response,
        Next::Timeout => {
            third.send(HEALTH);
            third.response()
        }
        Next::Closed => panic!("closed without a 503"),
    };
    assert_refused(&response, 503, "a third connection over --max-connections 2");
    third.expect_closed();

    // The two in place are still served; when one goes, its place is free
    // (the refused one holds its place until it goes too).
    second.send(HEALTH);
    let response = second.response();
    assert_eq!(response.status, 200, "{:?}", response.text());
    drop(third);
    drop(first);
    let _again = eventually(WAIT, "a connection is served once one closed", served);
}

#[test]
fn stalled_connections_do_not_hold_up_other_clients() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut hostile = Vec::new();
    for bytes in [
        &b""[..],
        b"POST /POST HTTP/1.1\r\nContent-Le",
        b"POST /POST HTTP/1.1\r\nContent-Length: 100\r\n\r\ntopic=",
        b"GET /api/v1/health HTTP/1.1\r\n",
    ] {
        let mut conn = HttpConn::open(http);
        if !bytes.is_empty() {
            conn.send(bytes);
        }
        hostile.push(conn);
    }
    let start = Instant::now();
    subscribe(http, "busy", "work/#");
    post(http, "work/item", "done", "worker");
    let picked = pickup_until(http, "busy", "work/item");
    assert_eq!(triples(&picked), [("work/#".into(), "work/item".into(), "done".into())]);
    assert!(start.elapsed() < Duration::from_secs(2), "served at once, took {:?}", start.elapsed());
    for conn in &mut hostile {
        conn.expect_silence(QUIET);
    }
}

#[test]
fn an_inactive_client_is_dropped_with_its_queue_and_subscriptions() {
    let broker = BrokerProcess::start_http(&["--http-client-timeout", "1"]);
    let http = broker.http_addr();
    subscribe(http, "fleeting", "exp/#");
    post(http, "exp/1", "one", "me");
    post(http, "exp/2", "two", "me");

    // A client that picks up every 300 ms stays, well past the timeout.
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_millis(2000) {
        let picked = pickup(http, "fleeting");
        assert!(
            picked.iter().all(|(filter, _)| filter == "exp/#"),
            "dropped after {:?} though it picks up: {picked:?}",
            start.elapsed()
        );
        seen.extend(triples(&picked));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Silent from now: it must go, shown by CLIENTS (which does not touch it).
    post(http, "exp/3", "queued before the drop", "me");
    let listed =
        |clients: &Json| clients.items().iter().any(|c| c.get("Name") == Some(&Json::String("fleeting".into())));
    assert!(listed(&moustique_json(http, "CLIENTS", &[])), "listed while active");
    eventually(Duration::from_secs(1) + WAIT, "the inactive client leaves CLIENTS", || {
        (!listed(&moustique_json(http, "CLIENTS", &[]))).then_some(())
    });
    post(http, "exp/4", "after the drop", "me");

    let reply = moustique_json(http, "PICKUP", &[("client", "fleeting")]);
    let keys: Vec<&str> = reply.members().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/server/action/resubscribe"], "the dropped client is told to resubscribe: {reply}");

    // Its queue (exp/3) and subscription (so exp/4) went with it.
    subscribe(http, "fleeting", "exp/#");
    post(http, "exp/5", "after resubscribing", "me");
    let picked = pickup_until(http, "fleeting", "exp/5");
    assert_eq!(triples(&picked), [("exp/#".into(), "exp/5".into(), "after resubscribing".into())]);
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_them() {
    let broker = BrokerProcess::start_http(&["--http-queue-size", "3"]);
    let http = broker.http_addr();
    let mut barrier = broker.connect("bin-barrier");
    barrier.subscribe("q/#");
    subscribe(http, "slow", "q/#");
    for n in 1..=5 {
        post(http, &format!("q/{n}"), &n.to_string(), "me");
    }
    // Routed in order: once the binary subscriber has q/5, so has the queue.
    for n in 1..=5 {
        assert_eq!(barrier.recv_publish().topic, format!("q/{n}"));
    }
    let picked = pickup(http, "slow");
    assert_eq!(
        triples(&picked),
        [
            ("q/#".into(), "q/3".into(), "3".into()),
            ("q/#".into(), "q/4".into(), "4".into()),
            ("q/#".into(), "q/5".into(), "5".into()),
        ],
        "the newest 3"
    );

    let stats = moustique_json(http, "STATS", &[]);
    let dropped: Vec<(String, f64)> = stats
        .leaves()
        .into_iter()
        .filter(|(path, _)| path.contains("dropped"))
        .filter_map(|(path, value)| value.as_f64().map(|n| (path, n)))
        .collect();
    assert!(dropped.iter().any(|(_, n)| *n == 2.0), "STATS counts the 2 dropped messages: {dropped:?} in {stats}");

    // The queue works on as before.
    post(http, "q/6", "6", "me");
    let picked = pickup_until(http, "slow", "q/6");
    assert_eq!(triples(&picked), [("q/#".into(), "q/6".into(), "6".into())]);
}
