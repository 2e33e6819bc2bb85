//! Observability through the real binary: `/metrics` and STATS after real
//! traffic, the `$SYS/broker/...` figures, and `$` topics kept from
//! wildcard subscribers and from publishers.

use std::time::{Duration, Instant};

use crate::support::http::{Json, JsonExt, call, eventually, moustique_json};
use crate::support::{BrokerProcess, Next, RawClient, ScratchDir, WAIT};
use tinymq_core::{FrameType, ReasonCode};

/// The value of the sample `series` (name and labels) in `/metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metrics(broker: &BrokerProcess) -> String {
    let response = call(broker.http_addr(), "GET", "/metrics", &[], b"");
    response.assert_status(200, "GET /metrics");
    response.text()
}

#[test]
fn metrics_and_stats_show_the_traffic_by_label() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let mut broker = BrokerProcess::start_http(&["--data", dir, "--sys-interval", "0", "--log-level", "debug"]);
    let mut sub = broker.connect("sub");
    sub.subscribe("t/#");
    let mut publisher = broker.connect("pub");
    publisher.publish_retained("t/kept", b"hello");
    let delivery = sub.recv_publish();
    assert_eq!((delivery.topic.as_str(), delivery.payload.as_slice()), ("t/kept", &b"hello"[..]));
    call(broker.http_addr(), "GET", "/nowhere", &[], b"").assert_status(404, "an unknown path");
    // A client may not publish to the broker's own topics.
    let mut forger = broker.connect("forger");
    forger.publish("$SYS/broker/uptime", b"0");
    let text = forger.expect_disconnect(ReasonCode::InvalidTopic);
    assert!(text.contains('$'), "{text}");

    let text = eventually(WAIT, "the commit and the closed connection in /metrics", || {
        let text = metrics(&broker);
        let settled = sample(&text, "tinymq_store_commit_seconds_count") >= Some(1.0)
            && sample(&text, "tinymq_connections{transport=\"tcp\"}") == Some(2.0);
        settled.then_some(text)
    });
    for (series, value) in [
        ("tinymq_connections{transport=\"tcp\"}", 2.0),
        ("tinymq_connections{transport=\"unix\"}", 0.0),
        ("tinymq_messages_in_total", 1.0),
        ("tinymq_messages_out_total", 1.0),
        ("tinymq_disconnects_total{reason=\"invalid_topic\"}", 1.0),
        ("tinymq_disconnects_total{reason=\"slow_consumer\"}", 0.0),
        ("tinymq_dropped_messages_total{reason=\"slow_consumer\"}", 0.0),
        ("tinymq_dropped_messages_total{reason=\"queue_overflow\"}", 0.0),
        ("tinymq_dropped_messages_total{reason=\"local_queue\"}", 0.0),
        ("tinymq_http_requests_total{status=\"404\"}", 1.0),
        (
            "tinymq_store_commit_seconds_bucket{le=\"+Inf\"}",
            sample(&text, "tinymq_store_commit_seconds_count").unwrap(),
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(sample(&text, "tinymq_http_requests_total{status=\"200\"}") >= Some(1.0), "{text}");
    assert!(sample(&text, "tinymq_store_commit_seconds_sum") > Some(0.0), "{text}");
    for family in ["tinymq_store_commit_seconds histogram", "tinymq_disconnects_total counter"] {
        assert!(text.lines().any(|l| l == format!("# TYPE {family}")), "{family} in\n{text}");
    }

    // STATS, encoded and plain, carries the same figures beside Moustique's keys.
    let plain = call(broker.http_addr(), "GET", "/api/v1/stats", &[], b"").plain_json("/api/v1/stats");
    let encoded = moustique_json(broker.http_addr(), "STATS", &[]);
    for stats in [&plain, &encoded] {
        for key in ["started", "subscription_count", "values", "clients.subscribers", "requests.pickups.total"] {
            assert!(stats.path(key).is_some(), "{key} in {stats}");
        }
        assert_eq!(stats.path("values").map(Json::num), Some(1.0), "{stats}");
        assert_eq!(stats.path("deliveries").map(Json::num), Some(1.0), "{stats}");
        assert_eq!(stats.path("disconnects.invalid_topic").map(Json::num), Some(1.0), "{stats}");
        assert_eq!(stats.path("dropped.queue_overflow").map(Json::num), Some(0.0), "{stats}");
        assert!(stats.path("store_commit_seconds.count").map(Json::num) >= Some(1.0), "{stats}");
        assert_eq!(stats.path("http_responses.404").map(Json::num), Some(1.0), "{stats}");
    }

    // The log: connections at debug, start and stop at info.
    broker.stop();
    let log = eventually(WAIT, "the last log line", || {
        let log = broker.log();
        log.iter().any(|l| l == "INFO  broker stopped").then_some(log)
    });
    for wanted in ["INFO  listening on", "INFO  tinymq ", "INFO  broker stopping", "DEBUG connection "] {
        assert!(log.iter().any(|l| l.starts_with(wanted)), "{wanted:?} in {log:#?}");
    }
    assert!(log.iter().any(|l| l.starts_with("DEBUG connection ") && l.contains("invalid topic")), "{log:#?}");
}

/// Reads deliveries until `wanted` accepts one, within `timeout`.
fn recv_until(client: &mut RawClient, timeout: Duration, what: &str, mut wanted: impl FnMut(&str, &str) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_within(left) {
            Next::Frame(frame) if frame.kind == FrameType::Publish => {
                if wanted(&frame.topic, &String::from_utf8_lossy(&frame.payload)) {
                    return;
                }
            }
            other => panic!("{what}: got {other:?}"),
        }
    }
}

#[test]
fn sys_topics_reach_only_those_who_ask() {
    let broker = BrokerProcess::start_http(&["--sys-interval", "1"]);
    let mut watcher = broker.connect("watcher");
    watcher.subscribe("$SYS/#");
    // The latest figures are kept: the new subscriber gets them at once, retained.
    let first = watcher.recv_publish();
    assert!(first.topic.starts_with("$SYS/broker/") && first.retain(), "{first:?}");
    let mut everything = broker.connect("everything");
    everything.subscribe("#");
    let mut plus = broker.connect("plus");
    plus.subscribe("+/broker/uptime");
    plus.subscribe("barrier");

    let mut publisher = broker.connect("pub");
    publisher.publish("a/b", b"1");
    publisher.publish("a/b", b"2");
    // Live figures follow, every second: uptime, and the two messages in.
    let mut uptime = None;
    recv_until(&mut watcher, Duration::from_secs(10), "uptime and messages/received", |topic, payload| {
        if topic == "$SYS/broker/uptime" {
            uptime = payload.parse::<u64>().ok();
        }
        if topic == "$SYS/broker/version" {
            assert_eq!(payload, env!("CARGO_PKG_VERSION"));
        }
        topic == "$SYS/broker/messages/received" && payload == "2" && uptime.is_some()
    });
    let seen = uptime.unwrap();
    recv_until(&mut watcher, Duration::from_secs(10), "a later uptime", |topic, payload| {
        topic == "$SYS/broker/uptime" && payload.parse::<u64>().is_ok_and(|n| n > seen)
    });
    // A round went out since `#` and `+/...` subscribed; neither saw it:
    // their first deliveries are the plain messages, then the barrier.
    publisher.publish("barrier", b"x");
    for expected in ["1", "2", "x"] {
        let got = everything.recv_publish();
        assert!(!got.topic.starts_with('$'), "{got:?}");
        assert_eq!(String::from_utf8_lossy(&got.payload), expected, "{got:?}");
    }
    let got = plus.recv_publish();
    assert_eq!(got.topic, "barrier", "{got:?}");
    // $SYS values are no stored topics for the lists.
    let topics = moustique_json(broker.http_addr(), "TOPICS", &[]);
    assert!(topics.items().is_empty(), "{topics}");
    let stats = call(broker.http_addr(), "GET", "/api/v1/stats", &[], b"").plain_json("stats");
    assert_eq!(stats.path("messages_in").map(Json::num), Some(3.0), "$SYS messages are not counted in: {stats}");
    assert_eq!(stats.path("values").map(Json::num), Some(0.0), "$SYS values are not counted: {stats}");
}

#[test]
fn sys_interval_zero_publishes_nothing() {
    let broker = BrokerProcess::start_http(&["--sys-interval", "0"]);
    let mut watcher = broker.connect("watcher");
    watcher.subscribe("$SYS/#");
    watcher.subscribe("barrier");
    // Three seconds of uptime: three rounds at `--sys-interval 1`.
    eventually(Duration::from_secs(10), "uptime of 3 s", || {
        let stats = call(broker.http_addr(), "GET", "/api/v1/stats", &[], b"").plain_json("stats");
        (stats.path("uptime_seconds").map(Json::num) >= Some(3.0)).then_some(())
    });
    let mut publisher = broker.connect("pub");
    publisher.publish("barrier", b"x");
    let first = watcher.recv_publish();
    assert_eq!(first.topic, "barrier", "nothing from $SYS before the barrier: {first:?}");
}
