//! Topic filters through the real binary: `+`, `#`, one delivery per
//! message however many filters match, publish order. `$` topics, which
//! only the broker publishes, are in `observability.rs`.

use std::collections::HashMap;

use crate::support::{BrokerProcess, QUIET, RawClient};

/// Reads deliveries up to and including the one on `sentinel`; returns the
/// topics before it.
fn topics_until(client: &mut RawClient, sentinel: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let got = client.recv_publish();
        if got.topic == sentinel {
            return topics;
        }
        topics.push(got.topic);
    }
}

#[test]
fn filters_match_levels_as_mqtt_3_1_1_says() {
    let broker = BrokerProcess::start(&[]);
    let topics = ["a", "a/b", "a/b/c", "b/x", "/x", "a//c"];
    let cases: &[(&str, &[&str])] = &[
        ("+", &["a"]),
        ("#", &["a", "a/b", "a/b/c", "b/x", "/x", "a//c"]),
        ("a/#", &["a", "a/b", "a/b/c", "a//c"]),
        ("a/+", &["a/b"]),
        ("+/x", &["b/x", "/x"]),
        ("a/+/c", &["a/b/c", "a//c"]),
        ("/+", &["/x"]),
        ("+/+", &["a/b", "b/x", "/x"]),
        ("a/b", &["a/b"]),
    ];
    let mut subscribers: Vec<RawClient> = cases
        .iter()
        .enumerate()
        .map(|(i, (filter, _))| {
            let mut client = broker.connect(&format!("sub-{i}"));
            client.subscribe(filter);
            // Also matched by `+` and `#`: still one delivery each.
            client.subscribe("end");
            client
        })
        .collect();
    let mut publisher = broker.connect("pub");
    for topic in topics {
        publisher.publish(topic, topic.as_bytes());
    }
    publisher.publish("end", b"");
    for (client, (filter, expected)) in subscribers.iter_mut().zip(cases) {
        assert_eq!(topics_until(client, "end"), *expected, "filter {filter:?}");
    }
}

#[test]
fn overlapping_filters_deliver_each_message_once() {
    let broker = BrokerProcess::start(&[]);
    let mut sub = broker.connect("overlapping");
    for filter in ["a/#", "a/+", "a/b", "+/b", "#", "+/+", "a/b"] {
        sub.subscribe(filter);
    }
    let mut publisher = broker.connect("pub");
    publisher.publish("a/b", b"once");
    publisher.publish("a", b"parent");
    publisher.publish("zzz", b"sentinel");
    assert_eq!(sub.recv_publish().payload, b"once");
    assert_eq!(sub.recv_publish().payload, b"parent", "a/b came once, then a (matched by a/# and #)");
    assert_eq!(sub.recv_publish().payload, b"sentinel");
    sub.expect_silence(QUIET);
}

#[test]
fn each_publishers_order_is_kept_over_a_thousand_messages() {
    // Several event-loop threads, so publishers and subscribers are spread
    // over loops and deliveries cross between them.
    let broker = BrokerProcess::start(&["--threads", "3"]);
    let mut everything = broker.connect("everything");
    everything.subscribe("seq/#");
    let mut one_topic = broker.connect("one-topic");
    one_topic.subscribe("seq/p0");
    let mut publishers: Vec<RawClient> = (0..3).map(|p| broker.connect(&format!("p{p}"))).collect();
    const COUNT: u32 = 1000;
    // Interleaved writes from three publishers.
    for i in 0..COUNT {
        for (p, publisher) in publishers.iter_mut().enumerate() {
            publisher.publish(&format!("seq/p{p}"), &i.to_be_bytes());
        }
    }
    let mut next: HashMap<String, u32> = HashMap::new();
    for _ in 0..3 * COUNT {
        let got = everything.recv_publish();
        let expected = next.entry(got.client_id.clone()).or_insert(0);
        assert_eq!(got.topic, format!("seq/{}", got.client_id), "{got:?}");
        assert_eq!(got.payload, expected.to_be_bytes(), "out of order from {}", got.client_id);
        *expected += 1;
    }
    assert_eq!(next.values().copied().collect::<Vec<_>>(), [COUNT; 3]);
    for i in 0..COUNT {
        assert_eq!(one_topic.recv_publish().payload, i.to_be_bytes());
    }
    one_topic.expect_silence(QUIET);
}
