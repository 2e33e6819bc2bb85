//! A store that cannot write at run time: the real binary runs under a
//! file-size limit (`prlimit --fsize`, util-linux), so redb's writes fail
//! with EFBIG once the database outgrows it, as on a full disk, with no
//! root needed. The broker must stay up (it handles SIGXFSZ), answer
//! writes it cannot store with 503, count and show the failure, go on
//! delivering pub/sub, and never have said 200 for a value that is not
//! there after a restart.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::http::{HttpConn, Json, JsonExt, Response, call, eventually, moustique_request};
use crate::support::{BrokerProcess, ScratchDir, WAIT};

/// The file-size limit: redb starts a new database at about 1 MiB, so
/// this leaves room for a few dozen of the values below.
const FILE_LIMIT: u64 = 2_000_000;
/// Each value's size: the limit is reached after a few dozen values.
const VALUE_LEN: usize = 20_000;
/// More writes than the limit can take.
const MAX_POSTS: usize = 1_000;

fn stats(addr: SocketAddr) -> Json {
    call(addr, "GET", "/api/v1/stats", &[], b"").plain_json("stats")
}

fn value_of(n: usize) -> String {
    format!("{n}:{}", "v".repeat(VALUE_LEN))
}

/// POSTs `/full/N` with a large value on one connection until the broker
/// answers 503; returns the indices answered 200 and the 503's text.
fn post_until_refused(addr: SocketAddr) -> (Vec<usize>, String) {
    let mut conn = HttpConn::open(addr);
    let mut acked = Vec::new();
    for n in 0..MAX_POSTS {
        let topic = format!("/full/{n}");
        conn.send(&moustique_request("POST", "POST", &[("topic", &topic), ("message", &value_of(n))]));
        let response = conn.response();
        match response.status {
            200 => acked.push(n),
            503 => return (acked, response.text()),
            other => panic!("POST {topic}: {other} {}", response.text()),
        }
    }
    panic!("{MAX_POSTS} POSTs of {VALUE_LEN} bytes all stored under a {FILE_LIMIT}-byte file limit");
}

/// Asserts what a failing store shows: STATS counts and names the error,
/// /metrics says it is failing, a binary subscriber still gets messages
/// and stored values can still be read.
fn assert_failing_but_serving(broker: &BrokerProcess, acked: &[usize], refusal: &str) {
    assert!(refusal.contains("File too large"), "the 503 says why: {refusal:?}");
    assert!(!refusal.contains('\n'), "a one-line 503: {refusal:?}");
    let figures = stats(broker.http_addr());
    let count = |key: &str| figures.field(key).num();
    assert!(count("store_failed_commits") >= 1.0, "{figures}");
    assert!(count("store_failures") >= 1.0, "the 503 is counted: {figures}");
    let error = figures.field("store_error").str();
    assert!(error.contains("tinymq.redb") && error.contains("File too large"), "{error}");
    let metrics = call(broker.http_addr(), "GET", "/metrics", &[], b"").text();
    assert!(metrics.lines().any(|l| l == "tinymq_store_failing 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("tinymq_store_failed_commits_total ")), "{metrics}");

    let mut subscriber = broker.connect("watcher");
    subscriber.subscribe("live/#");
    broker.connect("speaker").publish("live/news", b"still here");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("live/news", &b"still here"[..]));

    let last = acked.last().expect("some values were stored before the limit");
    let reply = call(broker.http_addr(), "GET", &format!("/api/v1/value?topic=/full/{last}"), &[], b"");
    assert_eq!(reply.plain_json("value").field("message").str(), value_of(*last));
}

/// Every value answered 200 is there, whole, on a fresh broker (no limit).
fn assert_acked_present(data: &str, acked: &[usize], refused_from: usize) {
    let broker = BrokerProcess::start_http(&["--data", data]);
    let mut conn = HttpConn::open(broker.http_addr());
    let mut refused_present = 0;
    for n in 0..=refused_from {
        let reply: Response = conn.request("GET", &format!("/api/v1/value?topic=/full/{n}"), b"");
        if acked.contains(&n) {
            assert_eq!(reply.status, 200, "/full/{n} was answered 200 but is not stored");
            assert_eq!(reply.plain_json("value").field("message").str(), value_of(n), "/full/{n}");
        } else if reply.status == 200 {
            refused_present += 1;
        }
    }
    eprintln!("{} values answered 200, all present; the refused one present: {}", acked.len(), refused_present > 0);
}

fn limited() -> [String; 2] {
    ["prlimit".into(), format!("--fsize={FILE_LIMIT}:unlimited")]
}

#[test]
fn immediate_a_full_store_answers_503_keeps_serving_and_every_200_survives_kill_9() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let wrapper = limited();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut broker = BrokerProcess::start_http_via(&wrapper, &["--data", dir, "--durability", "immediate"]);
    let (acked, refusal) = post_until_refused(broker.http_addr());
    eprintln!("immediate: {} values stored before the 503: {refusal}", acked.len());
    assert_eq!(acked, (0..acked.len()).collect::<Vec<_>>(), "200s until the first 503");
    assert_failing_but_serving(&broker, &acked, &refusal);
    // Still failing: kill it there. Nothing answered 200 may be missing.
    broker.kill();
    assert_acked_present(dir, &acked, acked.len());
}

#[test]
fn batched_a_full_store_refuses_new_writes_and_recovers_when_space_returns() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let wrapper = limited();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut broker = BrokerProcess::start_http_via(&wrapper, &["--data", dir, "--durability", "batched"]);
    let (acked, refusal) = post_until_refused(broker.http_addr());
    let refused_at = acked.len();
    eprintln!("batched: {refused_at} values answered 200 before the 503: {refusal}");
    assert!(refusal.contains("the store is failing"), "{refusal}");
    assert_failing_but_serving(&broker, &acked, &refusal);

    // Space returns: lift the limit on the running broker. The writes kept
    // from the failed commits are retried and new writes get 200 again.
    let lifted = Command::new("prlimit")
        .args(["--pid", &broker.pid().to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .expect("run prlimit");
    assert!(lifted.success(), "prlimit --pid: {lifted}");
    let mut conn = HttpConn::open(broker.http_addr());
    eventually(Duration::from_secs(15), "a POST answered 200 after the limit is lifted", || {
        conn.send(&moustique_request("POST", "POST", &[("topic", "/full/after"), ("message", "ok")]));
        (conn.response().status == 200).then_some(())
    });
    let figures = stats(broker.http_addr());
    assert!(figures.field("store_error") == &Json::Null, "recovered: {figures}");
    let metrics = call(broker.http_addr(), "GET", "/metrics", &[], b"").text();
    assert!(metrics.lines().any(|l| l == "tinymq_store_failing 0"), "{metrics}");

    broker.signal(libc::SIGTERM);
    assert!(broker.wait_exit(WAIT).success(), "a clean stop");
    assert_acked_present(dir, &acked, refused_at);
}
