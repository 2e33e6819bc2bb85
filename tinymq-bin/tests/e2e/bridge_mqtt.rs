//! The MQTT bridge through the real binary and Debian's real `mosquitto`,
//! with `mosquitto_sub` and `mosquitto_pub` on its side, all on loopback
//! ports the tests pick: both directions with a prefix and a binary
//! payload, retained values both ways, no echo and no loop (with one and
//! with two brokers on the same subtree), a mosquitto that starts after
//! the bridge, and a `[[bridge]]` table speaking MQTT 3.1.1 with
//! Mosquitto's bridge bit.

use std::time::Duration;

use crate::bridge::{bridge_stats, figure, next_publish, wait_connected};
use crate::support::free_address;
use crate::support::http::{Json, JsonExt, call};
use crate::support::mosquitto::{Mosquitto, SubMessage};
use crate::support::{BrokerProcess, QUIET, RawClient, ScratchDir};

/// A broker with HTTP and a bridge to `mosquitto`, with `id` and `flags`.
fn bridged(url: &str, id: &str, flags: &[&str]) -> BrokerProcess {
    let mut args = vec!["--bridge", url, "--broker-id", id, "--sys-interval", "0"];
    args.extend_from_slice(flags);
    BrokerProcess::start_http(&args)
}

/// Every message `subscriber` gets until it has been quiet for [`QUIET`]
/// (after the first, which may take up to a second).
fn drain(subscriber: &mut RawClient) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let mut window = Duration::from_secs(1);
    while let Some((topic, payload, _)) = next_publish(subscriber, window) {
        got.push((topic, payload));
        window = QUIET * 2;
    }
    got
}

fn message(topic: &str, retain: bool, payload: &[u8]) -> SubMessage {
    SubMessage { topic: topic.into(), retain, payload: payload.to_vec() }
}

#[test]
fn a_binary_publish_reaches_mosquitto_sub_and_mosquitto_pub_reaches_a_tinymq_subscriber() {
    let mosquitto = Mosquitto::start();
    let a = bridged(
        &mosquitto.url(),
        "A",
        &["--bridge-out", "sensors/#", "--bridge-in", "commands/#", "--bridge-prefix", "site1"],
    );
    let mut on_a = a.connect("on-a");
    on_a.subscribe("commands/#");
    let stats = wait_connected(&a);
    assert_eq!(stats.field("servers").items(), [Json::String(mosquitto.url())], "{stats}");
    assert_eq!(stats.field("server").str(), mosquitto.address().to_string(), "{stats}");
    assert_eq!(stats.field("kind").str(), "mqtt", "{stats}");
    let mut far = mosquitto.subscribe("far-sub", "site1/#");

    // tinymq → mosquitto: under the prefix, every byte value intact.
    let binary: Vec<u8> = (0..=255).collect();
    let mut publisher = a.connect("thermo");
    publisher.publish("sensors/kitchen/temp", &binary);
    assert_eq!(far.recv(), message("site1/sensors/kitchen/temp", false, &binary));

    // mosquitto → tinymq: the prefix taken off; `from` says MQTT, as a
    // mosquitto_pub carries no origin.
    mosquitto.publish("site1/commands/door", b"open", false);
    let got = on_a.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("commands/door", &b"open"[..]));
    assert_eq!(got.client_id, "mqtt");
    // What mosquitto_sub saw of it: the command itself, nothing from A.
    assert_eq!(far.recv(), message("site1/commands/door", false, b"open"));

    // Only the configured directions and the prefix's subtree.
    mosquitto.publish("site1/sensors/other", b"not in", false);
    mosquitto.publish("commands/unprefixed", b"not in", false);
    publisher.publish("commands/local", b"not out");
    assert_eq!(on_a.recv_publish().payload, b"not out", "A's own subscriber");
    on_a.expect_silence(QUIET * 2);
    assert_eq!(far.recv(), message("site1/sensors/other", false, b"not in"));
    assert!(far.next_within(QUIET * 2).is_none(), "commands/local must not reach mosquitto");

    let stats = bridge_stats(&a);
    assert_eq!((figure(&stats, "messages_out"), figure(&stats, "messages_in")), (1, 1), "{stats}");
    let metrics = call(a.http_addr(), "GET", "/metrics", &[], b"").text();
    for line in [
        "tinymq_bridge_info{bridge=\"0\",kind=\"mqtt\"} 1",
        "tinymq_bridge_connected{bridge=\"0\"} 1",
        "tinymq_bridge_messages_in_total{bridge=\"0\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in /metrics:\n{metrics}");
    }
}

#[test]
fn retained_values_are_stored_on_both_sides() {
    let mosquitto = Mosquitto::start();
    let a = bridged(&mosquitto.url(), "A", &["--bridge-out", "out/#", "--bridge-in", "in/#"]);
    wait_connected(&a);

    // tinymq → mosquitto: a subscriber that comes later gets it from
    // mosquitto's store, marked retained.
    let mut publisher = a.connect("pub");
    publisher.publish_retained("out/kept", b"42");
    // When a live message sent after it arrives (in order, on the same
    // connection), the retained one is stored.
    let mut live = mosquitto.subscribe("live", "out/live");
    publisher.publish("out/live", b"now");
    assert_eq!(live.recv(), message("out/live", false, b"now"));
    let mut late = mosquitto.subscribe("late", "out/#");
    assert_eq!(late.recv(), message("out/kept", true, b"42"));
    assert!(late.next_within(QUIET).is_none(), "only the retained value");

    // mosquitto → tinymq: a retained mosquitto_pub is stored here.
    mosquitto.publish("in/kept", b"7", true);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut late = a.connect("late-a");
        late.subscribe("in/#");
        if let Some((topic, payload, _)) = next_publish(&mut late, QUIET) {
            assert_eq!((topic.as_str(), payload.as_slice()), ("in/kept", &b"7"[..]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the retained value never reached tinymq's store");
    }
}

#[test]
fn nothing_is_echoed_or_looped_with_one_or_two_brokers_on_the_same_subtree() {
    let mosquitto = Mosquitto::start();
    let a = bridged(&mosquitto.url(), "A", &["--bridge-both", "x/#"]);
    let b = bridged(&mosquitto.url(), "B", &["--bridge-both", "x/#"]);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("x/#");
    let mut on_b = b.connect("on-b");
    on_b.subscribe("x/#");
    wait_connected(&a);
    wait_connected(&b);
    let mut far = mosquitto.subscribe("far", "x/#");

    let mut publisher = a.connect("pub-a");
    for n in 0..3 {
        publisher.publish("x/from-a", n.to_string().as_bytes());
    }
    mosquitto.publish("x/from-mosquitto", b"m", false);
    post_b(&b, "x/from-b", "b");

    // Each message exactly once everywhere: 5 on each broker and on
    // mosquitto's subscriber.
    let mut expected: Vec<(String, Vec<u8>)> = ["0", "1", "2"]
        .iter()
        .map(|n| ("x/from-a".to_owned(), n.as_bytes().to_vec()))
        .chain([("x/from-mosquitto".to_owned(), b"m".to_vec()), ("x/from-b".to_owned(), b"b".to_vec())])
        .collect();
    expected.sort();
    for (name, subscriber) in [("A", &mut on_a), ("B", &mut on_b)] {
        let mut got = drain(subscriber);
        got.sort();
        assert_eq!(got, expected, "what broker {name}'s subscriber got");
    }
    let mut far_got = Vec::new();
    while let Some(message) = far.next_within(QUIET * 3) {
        far_got.push((message.topic, message.payload));
    }
    far_got.sort();
    assert_eq!(far_got, expected, "what mosquitto_sub got");

    let (sa, sb) = (bridge_stats(&a), bridge_stats(&b));
    assert_eq!((figure(&sa, "messages_out"), figure(&sa, "messages_in")), (3, 2), "{sa}");
    assert_eq!((figure(&sb, "messages_out"), figure(&sb, "messages_in")), (1, 4), "{sb}");
}

fn post_b(broker: &BrokerProcess, topic: &str, payload: &str) {
    crate::support::http::post(broker.http_addr(), topic, payload, "poster");
}

#[test]
fn a_bridge_to_a_mosquitto_that_starts_later_connects_and_sends_what_it_held() {
    let address = free_address();
    let a = bridged(&format!("mqtt://{address}"), "A", &["--bridge-out", "held/#"]);
    let mut publisher = a.connect("pub");
    publisher.publish_retained("held/value", b"kept while down");
    crate::support::http::eventually(Duration::from_secs(5), "the message held", || {
        let stats = bridge_stats(&a);
        (figure(&stats, "queued") == 1 && stats.field("connected") == &Json::Bool(false)).then_some(())
    });

    let mosquitto = Mosquitto::start_at(address);
    wait_connected(&a);
    let mut late = mosquitto.subscribe("late", "held/#");
    assert_eq!(late.recv(), message("held/value", true, b"kept while down"));
    publisher.publish("held/live", b"after");
    assert_eq!(late.recv(), message("held/live", false, b"after"));
    let stats = bridge_stats(&a);
    assert_eq!(
        (figure(&stats, "queued"), figure(&stats, "messages_out"), figure(&stats, "drops")),
        (0, 2, 0),
        "{stats}"
    );
}

#[test]
fn a_bridge_table_speaking_mqtt_3_1_1_uses_the_bridge_bit_and_does_not_echo() {
    let mosquitto = Mosquitto::start();
    let dir = ScratchDir::new();
    let file = dir.path().join("tinymq.toml");
    let table = format!(
        "[[bridge]]\nkind = \"mqtt\"\nservers = [\"{}\"]\nboth = [\"y/#\"]\nbroker_id = \"A\"\nmqtt_version = \"3.1.1\"\n",
        mosquitto.address()
    );
    std::fs::write(&file, table).unwrap();
    let a = BrokerProcess::start_http(&["--config", file.to_str().unwrap(), "--sys-interval", "0"]);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("y/#");
    wait_connected(&a);
    // Mosquitto took protocol level 0x84 as a bridge (its p2 is 3.1.1).
    mosquitto.wait_log(&["New bridge connected", "tinymq-bridge-A", "(p2,"]);

    let mut far = mosquitto.subscribe("far", "y/#");
    a.connect("pub").publish("y/out", b"1");
    mosquitto.publish("y/in", b"2", false);
    assert_eq!(drain(&mut on_a), [("y/out".to_owned(), b"1".to_vec()), ("y/in".to_owned(), b"2".to_vec())]);
    assert_eq!(far.recv(), message("y/out", false, b"1"));
    assert_eq!(far.recv(), message("y/in", false, b"2"));
    assert!(far.next_within(QUIET).is_none());
}

#[test]
fn an_empty_retained_publish_deletes_the_value_both_ways() {
    let mosquitto = Mosquitto::start();
    let a = bridged(&mosquitto.url(), "A", &["--bridge-out", "out/#", "--bridge-in", "in/#"]);
    wait_connected(&a);
    let mut live = mosquitto.subscribe("live", "out/#");

    // tinymq → mosquitto: set, then delete; the live subscriber sees both,
    // and a late one finds no value.
    let mut publisher = a.connect("pub");
    publisher.publish_retained("out/v", b"42");
    assert_eq!(live.recv(), message("out/v", false, b"42"));
    assert_eq!(mosquitto.subscribe("late-1", "out/v").recv(), message("out/v", true, b"42"));
    publisher.publish_retained("out/v", b"");
    assert_eq!(live.recv(), message("out/v", false, b""));
    assert!(mosquitto.subscribe("late-2", "out/v").next_within(QUIET * 2).is_none(), "mosquitto still has a value");

    // mosquitto → tinymq: a retained mosquitto_pub, then `-r -n`.
    let mut on_a = a.connect("on-a");
    on_a.subscribe("in/#");
    mosquitto.publish("in/v", b"7", true);
    assert_eq!(on_a.recv_publish().payload, b"7");
    assert_eq!(crate::bridge::stored_value(&a, "in/v").as_deref(), Some(&b"7"[..]));
    mosquitto.publish("in/v", b"", true);
    let got = on_a.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("in/v", &b""[..]));
    assert_eq!(crate::bridge::stored_value(&a, "in/v"), None, "tinymq still has a value");
}

#[test]
fn a_bridge_of_a_users_namespace_leaves_the_public_one_alone() {
    let mosquitto = Mosquitto::start();
    let data = ScratchDir::new();
    crate::support::add_user(data.path(), "alice", "alice-secret", false);
    let a = bridged(
        &mosquitto.url(),
        "A",
        &["--data", data.path().to_str().unwrap(), "--bridge-namespace", "alice", "--bridge-both", "t/#"],
    );
    let mut alice = a.connect_as("alice-sub", "alice", "alice-secret");
    alice.subscribe("t/#");
    let mut public = a.connect("public-sub");
    public.subscribe("t/#");
    wait_connected(&a);
    let mut far = mosquitto.subscribe("far", "t/#");

    // Out: alice's publish is bridged, the public one is not.
    a.connect_as("alice-pub", "alice", "alice-secret").publish("t/from-alice", b"1");
    a.connect("public-pub").publish("t/from-public", b"2");
    assert_eq!(far.recv(), message("t/from-alice", false, b"1"));
    assert!(far.next_within(QUIET * 2).is_none(), "the public namespace's publish was bridged");
    // In: into alice's namespace only.
    mosquitto.publish("t/from-mosquitto", b"3", false);
    assert_eq!(drain(&mut alice), [("t/from-alice".into(), b"1".to_vec()), ("t/from-mosquitto".into(), b"3".to_vec())]);
    assert_eq!(drain(&mut public), [("t/from-public".to_owned(), b"2".to_vec())]);
}

#[test]
fn thousands_of_messages_cross_whole_and_in_order_both_ways() {
    const N: usize = 5000;
    let mosquitto = Mosquitto::start();
    let a = bridged(&mosquitto.url(), "A", &["--bridge-out", "up/#", "--bridge-in", "down/#"]);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("down/#");
    wait_connected(&a);
    let mut far = mosquitto.subscribe("far", "up/#");
    let numbers: Vec<String> = (0..N).map(|n| format!("{n:05}-{}", "x".repeat(n % 300))).collect();

    // tinymq → mosquitto: packets cut across reads and writes arrive whole.
    let mut publisher = a.connect("pub");
    for number in &numbers {
        publisher.publish("up/n", number.as_bytes());
    }
    for number in &numbers {
        assert_eq!(far.recv(), message("up/n", false, number.as_bytes()));
    }
    // mosquitto → tinymq: one mosquitto_pub connection, in order.
    mosquitto.publish_lines("down/n", &numbers);
    for number in &numbers {
        let got = on_a.recv_publish();
        assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("down/n", number.as_bytes()));
    }
    let stats = bridge_stats(&a);
    assert_eq!(
        (figure(&stats, "messages_out"), figure(&stats, "messages_in"), figure(&stats, "drops")),
        (N as u64, N as u64, 0),
        "{stats}"
    );
}
