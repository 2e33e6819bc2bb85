//! The plain HTTP API (`/api/v1/`, `/metrics`) through the real binary,
//! driven by `curl` as its users would: publish, stored values, health,
//! statistics, Prometheus metrics, and Server-Sent Events read from
//! `curl -N` while messages arrive over the binary protocol, the Moustique
//! `/POST` and the plain publish.

use std::time::Duration;

use crate::support::http::{
    CurlSse, Json, JsonExt, SseItem, assert_message_object, curl, curl_status, pickup_until, post, subscribe, unix_now,
};
use crate::support::{BrokerProcess, QUIET};

#[test]
fn curl_publishes_and_reads_stored_values() {
    let broker = BrokerProcess::start_http(&[]);
    let url = broker.http_url();
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("home/#");

    let (status, body) = curl_status(&[
        "-X",
        "POST",
        "--data-binary",
        "22.5",
        &format!("{url}/api/v1/publish?topic=home/temp&retain=1"),
    ]);
    assert_eq!((status, body.as_str()), (204, ""), "a retained publish");
    let got = subscriber.recv_publish();
    assert_eq!((got.type_byte, got.topic.as_str(), got.payload.as_slice()), (0x02, "home/temp", &b"22.5"[..]));

    // The raw body is the payload, byte for byte; the topic percent-decoded.
    let (status, _) = curl_status(&[
        "--data-binary",
        "line one\nline two & more=%41",
        "-H",
        "Content-Type: application/octet-stream",
        &format!("{url}/api/v1/publish?topic=home%2Fhall"),
    ]);
    assert_eq!(status, 204, "a live publish");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("home/hall", &b"line one\nline two & more=%41"[..]));

    // Without retain=1 nothing is stored: the value stays 22.5.
    let (status, _) = curl_status(&["--data-binary", "23.0", &format!("{url}/api/v1/publish?topic=home/temp")]);
    assert_eq!(status, 204);
    assert_eq!(subscriber.recv_publish().payload, b"23.0");
    let (status, body) = curl_status(&[&format!("{url}/api/v1/value?topic=home/temp")]);
    assert_eq!(status, 200, "{body}");
    let value = Json::must_parse(&body);
    assert_eq!(value.field("topic").str(), "home/temp", "{value}");
    assert_eq!(value.field("message").str(), "22.5", "the retained value, not the live one: {value}");
    for key in ["from", "updated_time", "updated_nicedatetime", "ip"] {
        value.field(key);
    }
    let (status, _) = curl_status(&[&format!("{url}/api/v1/value?topic=home/hall")]);
    assert_eq!(status, 404, "a live publish stores nothing");
    let (status, _) = curl_status(&[&format!("{url}/api/v1/value?topic=nowhere")]);
    assert_eq!(status, 404);

    let (status, _) =
        curl_status(&["--data-binary", "61", &format!("{url}/api/v1/publish?topic=home/humidity&retain=1")]);
    assert_eq!(status, 204);
    let (status, _) = curl_status(&["--data-binary", "1", &format!("{url}/api/v1/publish?topic=garden/temp&retain=1")]);
    assert_eq!(status, 204);
    let values = |filter: &str| -> Vec<(String, String)> {
        let (status, body) = curl_status(&[&format!("{url}/api/v1/values?match={filter}")]);
        assert_eq!(status, 200, "values?match={filter}: {body}");
        let mut list: Vec<(String, String)> = Json::must_parse(&body)
            .items()
            .iter()
            .map(|m| (m.field("topic").str().to_owned(), m.field("message").str().to_owned()))
            .collect();
        list.sort();
        list
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(t, m)| ((*t).to_owned(), (*m).to_owned())).collect()
    };
    assert_eq!(values("home/%23"), pairs(&[("home/humidity", "61"), ("home/temp", "22.5")]));
    assert_eq!(values("%2B/temp"), pairs(&[("garden/temp", "1"), ("home/temp", "22.5")]));
    assert_eq!(values("%23").len(), 3);
    assert_eq!(values("office/%23"), pairs(&[]));
}

#[test]
fn curl_reads_health_stats_and_metrics() {
    let broker = BrokerProcess::start_http(&[]);
    let url = broker.http_url();
    let mut publisher = broker.connect("metered");
    publisher.publish_retained("m/a", b"1");
    publisher.ping();

    let (status, body) = curl_status(&[&format!("{url}/api/v1/health")]);
    assert_eq!((status, body.trim()), (200, "ok"));

    let (status, body) = curl_status(&[&format!("{url}/api/v1/stats")]);
    assert_eq!(status, 200);
    let stats = Json::must_parse(&body);
    assert!(!stats.members().is_empty(), "a statistics object: {stats}");

    let headers = curl(&["-D", "-", "-o", "/dev/null", &format!("{url}/metrics")]);
    let content_type = headers
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("no Content-Type: {headers}"))
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "Prometheus text: {content_type:?}");
    let (status, metrics) = curl_status(&[&format!("{url}/metrics")]);
    assert_eq!(status, 200);
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(!samples.is_empty(), "some samples: {metrics}");
    for sample in &samples {
        assert!(sample.starts_with("tinymq_"), "every metric is tinymq_*: {sample:?}");
        let value = sample.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "a sample ends in a number: {sample:?}");
    }
}

#[test]
fn sse_sends_stored_values_first_then_every_delivery() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut publisher = broker.connect("bin-pub");
    publisher.publish_retained("feed/stored", b"from before");
    publisher.publish_retained("elsewhere/stored", b"not matched");
    publisher.ping();

    let mut events = CurlSse::start(&format!("{}/api/v1/events?topic=feed/%23&topic=other/%2B", broker.http_url()));
    assert!(events.head[0].contains(" 200"), "{:?}", events.head);
    let content_type = events.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/event-stream"), "{:?}", events.head);

    let stored = events.next_message();
    assert_eq!(
        (stored.field("topic").str(), stored.field("message").str(), stored.field("from").str()),
        ("feed/stored", "from before", "bin-pub"),
        "the stored value matching the filters comes first: {stored}"
    );

    // A binary publish, a Moustique POST and a plain publish, each once, in
    // order; a topic outside both filters is not sent.
    publisher.publish("feed/binary", b"over tcp");
    let event = events.next_message();
    assert_eq!(
        (event.field("topic").str(), event.field("message").str(), event.field("from").str()),
        ("feed/binary", "over tcp", "bin-pub"),
        "{event}"
    );
    post(http, "feed/moustique", "över http", "poster");
    let event = events.next_message();
    assert_message_object(&event, "feed/moustique", "över http", "poster");
    let (status, _) =
        curl_status(&["--data-binary", "plain", &format!("{}/api/v1/publish?topic=other/plain", broker.http_url())]);
    assert_eq!(status, 204);
    let event = events.next_message();
    assert_eq!((event.field("topic").str(), event.field("message").str()), ("other/plain", "plain"), "{event}");

    publisher.publish("unrelated/topic", b"x");
    publisher.publish("other/too/deep", b"x");
    publisher.publish("feed/last", b"last");
    let event = events.next_message();
    assert_eq!(event.field("topic").str(), "feed/last", "nothing outside the filters came first: {event}");

    // The stream's client going away harms nobody: a second stream on the
    // same filters is served.
    drop(events);
    publisher.publish("feed/after", b"gone");
    let mut again = CurlSse::start(&format!("{}/api/v1/events?topic=feed/stored", broker.http_url()));
    assert_eq!(again.next_message().field("message").str(), "from before");
}

#[test]
fn sse_sends_heartbeat_comments() {
    let broker = BrokerProcess::start_http(&["--sse-heartbeat", "1"]);
    let mut publisher = broker.connect("bin-pub");
    publisher.publish_retained("hb/sync", b"ready");
    publisher.ping();
    let mut events = CurlSse::start(&format!("{}/api/v1/events?topic=hb/%23", broker.http_url()));
    assert_eq!(events.next_message().field("topic").str(), "hb/sync");

    // Two heartbeats in a row with nothing else to send, each within about
    // a second.
    for n in 0..2 {
        match events.next_item(Duration::from_millis(2500)) {
            SseItem::Comment(_) => {}
            other => panic!("heartbeat {n}: expected a comment line, got {other:?}"),
        }
    }
    // And the stream still delivers.
    publisher.publish("hb/live", b"still here");
    assert_eq!(events.next_message().field("message").str(), "still here");
}

#[test]
fn a_plain_publish_reaches_moustique_and_binary_subscribers() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut binary = broker.connect("bin-sub");
    binary.subscribe("x/#");
    subscribe(http, "http-sub", "x/+");
    let before = unix_now();
    let (status, _) =
        curl_status(&["--data-binary", "hello", &format!("{}/api/v1/publish?topic=x/y", broker.http_url())]);
    assert_eq!(status, 204);
    let got = binary.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("x/y", &b"hello"[..]));
    let picked = pickup_until(http, "http-sub", "x/y");
    assert_eq!(picked.len(), 1, "{picked:?}");
    assert_eq!(picked[0].1.field("message").str(), "hello");
    let time = picked[0].1.field("updated_time").num();
    assert!((before - 2.0..unix_now() + 2.0).contains(&time), "{}", picked[0].1);
    binary.expect_silence(QUIET);
}

#[test]
fn plain_api_refusals() {
    let broker = BrokerProcess::start_http(&[]);
    let url = broker.http_url();
    let mut binary = broker.connect("bin-sub");
    binary.subscribe("#");
    for (args, status, what) in [
        (vec!["--data-binary", "x", "/api/v1/publish"], 400, "publish without topic"),
        (vec!["--data-binary", "x", "/api/v1/publish?topic=a/%2B"], 400, "publish to a wildcard"),
        (vec!["--data-binary", "x", "/api/v1/publish?topic=a/%23"], 400, "publish to #"),
        (vec!["--data-binary", "x", "/api/v1/publish?topic=a%zz"], 400, "bad percent-encoding"),
        (vec!["/api/v1/value"], 400, "value without topic"),
        (vec!["/api/v1/values"], 400, "values without match"),
        (vec!["/api/v1/events"], 400, "events without topic"),
        (vec!["/api/v1/nothing-here"], 404, "an unknown path"),
        (vec!["-X", "DELETE", "/api/v1/value?topic=a"], 405, "DELETE"),
    ] {
        let mut full: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let path = full.pop().unwrap();
        full.push(format!("{url}{path}"));
        let borrowed: Vec<&str> = full.iter().map(String::as_str).collect();
        let (got, body) = curl_status(&borrowed);
        assert_eq!(got, status, "{what}: body {body:?}");
        assert!(!body.is_empty(), "{what}: an error body says what was wrong");
    }
    let (status, _) = curl_status(&["--data-binary", "ok", &format!("{url}/api/v1/publish?topic=sentinel")]);
    assert_eq!(status, 204);
    assert_eq!(binary.recv_publish().topic, "sentinel", "the refused publishes published nothing");
    binary.expect_silence(QUIET);
}
