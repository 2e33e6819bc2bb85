//! Who may connect, through the real binary: the peer allow-list on every
//! transport, the per-address budget that throttles peers sending bad
//! requests, and the default of `--allow-anonymous`.
//!
//! Every client here is on this host. A test that needs a second peer
//! connects from 127.0.0.2 ([`connect_from`]): all of 127.0.0.0/8 is
//! local, and the broker sees that address.

use std::net::{Ipv4Addr, SocketAddr};

use std::time::Duration;

use crate::support::http::{HttpConn, Json, JsonExt, Next, Response, base64_encode, eventually, request_bytes};
use crate::support::run_tinymq as run;
use crate::support::{BrokerProcess, Endpoint, RawClient, WAIT, connect_from, free_address};
use tinymq_core::{Frame, ReasonCode};

/// The second peer's address.
const OTHER_PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `GET target` on a fresh connection from 127.0.0.2.
fn get_from_other_peer(http: SocketAddr, target: &str) -> Response {
    let stream = connect_from(OTHER_PEER, http).expect("connect from 127.0.0.2");
    let mut conn = HttpConn::from_stream(stream);
    conn.send(&request_bytes("GET", target, &[("Connection", "close")], b""));
    conn.response()
}

/// The statistics document, asked for from 127.0.0.2.
fn stats_from_other_peer(broker: &BrokerProcess) -> Json {
    get_from_other_peer(broker.http_addr(), "/api/v1/stats").plain_json("stats")
}

fn figure(stats: &Json, key: &str) -> u64 {
    stats.field(key).num() as u64
}

/// A binary client from 127.0.0.1 sends Connect and must get Disconnect 2
/// saying `says`, then the close.
fn binary_refused(broker: &BrokerProcess, says: &str) {
    let mut client = broker.open();
    // A real client sends Connect at once; the refusal comes first anyway.
    let _ = client.try_send_bytes(&Frame::connect("refused", b"").to_vec());
    let text = client.expect_disconnect(ReasonCode::NotAuthorized);
    assert!(text.contains(says), "Disconnect 2 says {text:?}, expected {says:?}");
}

/// An HTTP client from 127.0.0.1 asks for the health check and must get
/// `status` saying `says`, then the close.
fn http_refused(broker: &BrokerProcess, status: u16, says: &str) -> Response {
    let mut conn = HttpConn::open(broker.http_addr());
    let _ = conn.try_send(&request_bytes("GET", "/api/v1/health", &[], b""));
    let response = conn.response();
    response.assert_status(status, "a refused peer");
    assert!(response.text().contains(says), "{status} says {:?}, expected {says:?}", response.text());
    conn.expect_closed();
    response
}

#[test]
fn a_peer_outside_the_allow_list_is_refused_on_every_transport_and_counted() {
    let broker = BrokerProcess::start_http(&["--allowed-peers", "10.0.0.0/8,127.0.0.2"]);
    // The start-up probes from 127.0.0.1 were refused too; once a refusal
    // of our own has come back on each listener, they are all counted.
    binary_refused(&broker, "not allowed");
    http_refused(&broker, 401, "not allowed");
    let before = figure(&stats_from_other_peer(&broker), "refused_peers");
    assert!(before >= 2, "{before}");

    binary_refused(&broker, "not allowed");
    http_refused(&broker, 401, "not allowed");
    let stats = stats_from_other_peer(&broker);
    assert_eq!(figure(&stats, "refused_peers"), before + 2, "{stats}");
    let metrics = get_from_other_peer(broker.http_addr(), "/metrics").text();
    let line = format!("tinymq_refused_peers_total {}", before + 2);
    assert!(metrics.lines().any(|l| l == line), "{line:?} in\n{metrics}");

    // The allowed peer is served on the binary protocol too.
    let stream = connect_from(OTHER_PEER, broker.tcp_addr()).expect("connect from 127.0.0.2");
    let mut allowed = RawClient::from_tcp(stream);
    allowed.send(&Frame::connect("allowed", b""));
    assert_eq!(allowed.recv().client_id, "allowed", "ConnAck");
    allowed.ping();
}

#[test]
fn loopback_on_the_allow_list_is_let_in() {
    let broker = BrokerProcess::start_http(&["--allowed-peers", "127.0.0.1/32,::1"]);
    broker.connect("local").ping();
    let mut conn = HttpConn::open(broker.http_addr());
    let stats = conn.request("GET", "/api/v1/stats", b"").plain_json("stats");
    assert_eq!(figure(&stats, "refused_peers"), 0, "{stats}");
}

#[test]
fn unix_sockets_are_not_checked_by_the_allow_list() {
    let broker = BrokerProcess::start_unix(&["--allowed-peers", "10.0.0.0/8"]);
    assert!(matches!(broker.endpoint(), Endpoint::Unix(_)));
    broker.connect("local").ping();
}

#[test]
fn a_bad_allow_list_entry_stops_the_start_naming_it() {
    let address = free_address().to_string();
    for (list, bad) in [("10.0.0.0/8,10.0.0.0/33", "10.0.0.0/33"), ("127.0.0.1,localhost", "localhost"), ("", "empty")]
    {
        let output = run(&["broker", "--address", &address, "--no-http", "--in-memory", "--allowed-peers", list]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{list:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.contains("--allowed-peers") && stderr.contains(bad), "{list:?}: {stderr:?}");
    }
}

/// Sends `GET /no/such/path` on `conn` and returns the response.
fn unknown_path(conn: &mut HttpConn) -> Response {
    conn.request("GET", "/no/such/path", b"")
}

#[test]
fn a_peer_sending_unknown_paths_is_throttled_while_its_open_connections_are_served() {
    let broker = BrokerProcess::start_http(&["--peer-budget", "3", "--peer-budget-refill", "3600"]);
    let http = broker.http_addr();
    // Well-behaved clients on the same address, connected before.
    let mut subscriber = broker.connect("subscriber");
    subscriber.subscribe("news/#");
    let mut good = HttpConn::open(http);
    good.request("GET", "/api/v1/health", b"").assert_status(200, "health");

    let mut bad = HttpConn::open(http);
    for i in 0..3 {
        unknown_path(&mut bad).assert_status(404, &format!("bad request {i} within the budget"));
    }
    let refused = unknown_path(&mut bad);
    refused.assert_status(429, "a bad request past the budget");
    let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=3600).contains(&retry_after), "Retry-After: {retry_after}");
    bad.expect_closed();

    // New connections from the address are refused at once, on both.
    http_refused(&broker, 429, "too many bad requests");
    binary_refused(&broker, "too many bad requests");

    // What was open goes on: a publish on the good connection reaches the
    // subscriber, and a good request is not charged.
    let published = good.request("POST", "/api/v1/publish?topic=news/today", b"calm");
    published.assert_status(204, "publish on an open connection");
    assert_eq!(subscriber.recv_publish().payload, b"calm");
    let stats = good.request("GET", "/api/v1/stats", b"").plain_json("stats");
    assert_eq!(figure(&stats, "throttled_requests"), 3, "the 429, the refused HTTP and binary connections: {stats}");
    assert_eq!(figure(&stats, "throttled_peers"), 1, "{stats}");
    let metrics = good.request("GET", "/metrics", b"").text();
    assert!(metrics.lines().any(|l| l == "tinymq_throttled_requests_total 3"), "{metrics}");
}

/// A client that retries a request missing a parameter (Moustique's Perl
/// client retries every error five times) is answered 400 each time and
/// never throttled: a client's mistake is not a probe. An unknown path
/// still is, and CROOKS says who was charged, when and why.
#[test]
fn a_request_missing_a_parameter_costs_no_budget_and_crooks_names_the_charged() {
    let broker = BrokerProcess::start_http(&["--peer-budget", "3", "--peer-budget-refill", "3600"]);
    let mut conn = HttpConn::open(broker.http_addr());
    for attempt in 0..30 {
        let answer = conn.moustique("POST", &[("message", "no topic")]);
        answer.assert_status(400, &format!("attempt {attempt}"));
        assert_eq!(answer.text(), "missing parameter topic");
    }
    let crooks = conn.moustique("CROOKS", &[]).moustique_json("CROOKS");
    assert_eq!(crooks, Json::Array(Vec::new()), "no one charged for 400s");
    unknown_path(&mut conn).assert_status(404, "an unknown path");
    let crooks = conn.moustique("CROOKS", &[]).moustique_json("CROOKS");
    let crook = &crooks.items()[0];
    assert_eq!((crook.field("IP").str(), crook.field("Attempts").num()), ("127.0.0.1", 1.0), "{crooks}");
    assert_eq!(crook.field("Reason").str(), "unknown path");
    assert_eq!(crook.field("IsBanned"), &Json::Bool(false), "two bad requests left: {crooks}");
}

#[test]
fn wrong_credentials_spend_the_budget_on_both_transports() {
    let broker = BrokerProcess::start_http(&["--peer-budget", "2", "--peer-budget-refill", "3600"]);
    let mut open_before = HttpConn::open(broker.http_addr());
    open_before.request("GET", "/api/v1/health", b"").assert_status(200, "health");

    let mut wrong = broker.open();
    wrong.send(&Frame::connect("guesser", b"nobody\0guess-1"));
    assert!(wrong.expect_disconnect(ReasonCode::NotAuthorized).contains("wrong password"));
    // HTTP Basic, wrong too: the same address's budget.
    let guess = format!("Basic {}", base64_encode(b"nobody:guess-2"));
    let mut http = HttpConn::open(broker.http_addr());
    http.send(&request_bytes("GET", "/api/v1/stats", &[("Authorization", &guess)], b""));
    http.response().assert_status(401, "wrong credentials within the budget");

    // Out of budget: the next login is refused before any password check.
    let mut refused = broker.open();
    refused.send(&Frame::connect("guesser", b"nobody\0guess-3"));
    assert!(refused.expect_disconnect(ReasonCode::NotAuthorized).contains("too many bad requests"));
    http.send(&request_bytes("GET", "/api/v1/stats", &[("Authorization", &guess)], b""));
    let response = http.response();
    response.assert_status(429, "wrong credentials past the budget");
    assert!(response.header("retry-after").is_some(), "Retry-After");
    http.expect_closed();

    // Anonymous requests on a connection opened before are still served.
    let stats = open_before.request("GET", "/api/v1/stats", b"").plain_json("stats");
    assert_eq!(figure(&stats, "throttled_requests"), 2, "{stats}");
}

#[test]
fn a_throttled_peer_is_let_in_again_once_its_budget_refills() {
    let broker = BrokerProcess::start_http(&["--peer-budget", "2", "--peer-budget-refill", "1"]);
    // Bad requests until refused: the budget refills as they are sent,
    // so how many it takes depends on the pace, within bounds.
    let mut sent = 0;
    loop {
        let mut conn = HttpConn::open(broker.http_addr());
        let _ = conn.try_send(&request_bytes("GET", "/nope", &[("Connection", "close")], b""));
        match conn.next_within(WAIT) {
            Next::Response(r) if r.status == 404 => sent += 1,
            Next::Response(r) if r.status == 429 => break,
            other => panic!("after {sent} bad requests: {other:?}"),
        }
        assert!(sent < 50, "{sent} bad requests and never throttled");
    }
    assert!(sent >= 2, "throttled after {sent} bad requests, with a budget of 2");
    // A second later a token is back: a good request is served again.
    eventually(Duration::from_secs(10), "served once the budget refills", || {
        let mut conn = HttpConn::open(broker.http_addr());
        let _ = conn.try_send(&request_bytes("GET", "/api/v1/health", &[("Connection", "close")], b""));
        match conn.next_within(WAIT) {
            Next::Response(r) if r.status == 200 => Some(()),
            Next::Response(r) if r.status == 429 => None,
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_throttled_address_does_not_lock_out_unix_socket_clients() {
    let http = free_address().to_string();
    let broker = BrokerProcess::start_unix(&["--http", &http, "--peer-budget", "1", "--peer-budget-refill", "3600"]);
    let http = broker.http_addr();
    let mut conn = HttpConn::open(http);
    unknown_path(&mut conn).assert_status(404, "the budget's one bad request");
    unknown_path(&mut conn).assert_status(429, "past the budget");
    let mut refused = HttpConn::open(http);
    assert_eq!(refused.response().status, 429, "throttled over TCP");
    broker.connect("over-unix").ping();
}

#[test]
fn a_peer_budget_of_zero_never_throttles() {
    let broker = BrokerProcess::start_http(&["--peer-budget", "0"]);
    let mut conn = HttpConn::open(broker.http_addr());
    for i in 0..50 {
        unknown_path(&mut conn).assert_status(404, &format!("bad request {i}"));
    }
}

#[test]
fn anonymous_access_is_off_by_default_beyond_loopback() {
    let port = free_address().port();
    let any = SocketAddr::from(([0, 0, 0, 0], port));
    let broker = BrokerProcess::start_at(Endpoint::Tcp(any), &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut client = broker.open();
    client.send(&Frame::connect("anonymous", b""));
    assert!(client.expect_disconnect(ReasonCode::NotAuthorized).contains("needs credentials"));
    eventually(WAIT, "a warning that every client will be refused", || {
        broker.log().iter().any(|l| l.starts_with("WARN") && l.contains("no users")).then_some(())
    });
    drop(broker);

    let broker = BrokerProcess::start_at(
        Endpoint::Tcp(SocketAddr::from(([0, 0, 0, 0], free_address().port()))),
        &["--allow-anonymous", "true"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    broker.connect("anonymous").ping();
    // The warning would come before the start is logged.
    eventually(WAIT, "the start logged", || broker.log().iter().any(|l| l.contains(" started")).then_some(()));
    assert!(!broker.log().iter().any(|l| l.contains("no users")), "no warning when anonymous access is on");
}
