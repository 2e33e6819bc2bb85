//! The NATS bridge through the real binary and real `nats-server`s, all on
//! loopback ports the tests pick: brokers bridged through one server and
//! through a 3-node cluster, loop prevention, retained values, a node
//! killed under a bridge, a mesh of three brokers, a bridge that is down.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::http::{Json, JsonExt, call, eventually, post};
use crate::support::nats::{NatsServer, urls};
use crate::support::{BrokerProcess, Next, QUIET, RawClient, WAIT};
use tinymq_core::nats::ORIGIN_HEADER;

/// A broker with HTTP and a bridge to `servers`, with `id` and `flags`.
fn bridged(servers: &str, id: &str, flags: &[&str]) -> BrokerProcess {
    let mut args = vec!["--bridge", servers, "--broker-id", id, "--sys-interval", "0"];
    args.extend_from_slice(flags);
    BrokerProcess::start_http(&args)
}

/// The broker's first bridge, as `/api/v1/stats` shows it.
pub(crate) fn bridge_stats(broker: &BrokerProcess) -> Json {
    let stats = call(broker.http_addr(), "GET", "/api/v1/stats", &[], b"").plain_json("/api/v1/stats");
    stats.field("bridges").items().first().unwrap_or_else(|| panic!("no bridge in {stats}")).clone()
}

pub(crate) fn figure(bridge: &Json, key: &str) -> u64 {
    bridge.field(key).as_u64().unwrap_or_else(|| panic!("{key} is not a count in {bridge}"))
}

/// Waits until the broker's bridge has finished its handshake (its
/// subscriptions are then in the server).
pub(crate) fn wait_connected(broker: &BrokerProcess) -> Json {
    eventually(WAIT * 2, "the bridge connected", || {
        let bridge = bridge_stats(broker);
        (bridge.field("connected") == &Json::Bool(true)).then_some(bridge)
    })
}

/// The next delivery within `timeout`, if one comes.
pub(crate) fn next_publish(client: &mut RawClient, timeout: Duration) -> Option<(String, Vec<u8>, String)> {
    match client.next_within(timeout) {
        Next::Frame(frame) => Some((frame.topic, frame.payload, frame.client_id)),
        Next::Timeout => None,
        other => panic!("the subscriber's connection ended: {other:?}"),
    }
}

/// Publishes numbered messages with `publish` until `subscriber` gets one
/// of them; returns the first number that arrived. Routes between NATS
/// nodes and interest take a moment to form: this waits for delivery
/// itself rather than guessing how long that is.
fn publish_until_delivered(subscriber: &mut RawClient, deadline: Duration, mut publish: impl FnMut(u32)) -> u32 {
    let started = Instant::now();
    for n in 0.. {
        assert!(started.elapsed() < deadline, "nothing delivered within {deadline:?}");
        publish(n);
        if let Some((_, payload, _)) = next_publish(subscriber, Duration::from_millis(100)) {
            let got: u32 = String::from_utf8(payload).unwrap().parse().expect("a number");
            return got;
        }
    }
    unreachable!()
}

#[test]
fn an_http_post_on_one_broker_reaches_a_binary_subscriber_on_the_other_and_back() {
    let nats = NatsServer::start();
    let a = bridged(&nats.url(), "A", &["--bridge-in", "sensors/#", "--bridge-out", "commands/#"]);
    let b = bridged(&nats.url(), "B", &["--bridge-out", "sensors/#", "--bridge-in", "commands/#"]);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("sensors/#");
    on_a.subscribe("commands/#");
    let mut on_b = b.connect("on-b");
    on_b.subscribe("commands/#");
    on_b.subscribe("sensors/#");
    wait_connected(&a);
    wait_connected(&b);

    // out on B, in on A: the POST on B reaches A's subscriber, with the
    // topic it had and the sending broker as its `from`.
    post(b.http_addr(), "sensors/kitchen/temp", "21.5", "thermo");
    assert_eq!(on_b.recv_publish().payload, b"21.5", "B's own subscriber");
    let got = on_a.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("sensors/kitchen/temp", &b"21.5"[..]));
    assert_eq!(got.client_id, "B", "a bridged message is from the broker that sent it");

    // The reverse for the other filter: out on A, in on B.
    let mut publisher = a.connect("door");
    publisher.publish("commands/door", b"open");
    assert_eq!(on_a.recv_publish().payload, b"open");
    let got = on_b.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("commands/door", &b"open"[..]));

    // Only the configured directions: sensors on A stay on A, commands on
    // B stay on B.
    publisher.publish("sensors/local", b"a-only");
    assert_eq!(on_a.recv_publish().payload, b"a-only");
    post(b.http_addr(), "commands/local", "b-only", "x");
    assert_eq!(on_b.recv_publish().payload, b"b-only");
    on_a.expect_silence(QUIET);
    on_b.expect_silence(QUIET);

    let (sa, sb) = (bridge_stats(&a), bridge_stats(&b));
    assert_eq!((figure(&sa, "messages_out"), figure(&sa, "messages_in")), (1, 1), "{sa}");
    assert_eq!((figure(&sb, "messages_out"), figure(&sb, "messages_in")), (1, 1), "{sb}");
    assert_eq!(sa.field("server").str(), nats.address(), "{sa}");
    let metrics = call(a.http_addr(), "GET", "/metrics", &[], b"").text();
    for line in ["tinymq_bridge_connected{bridge=\"0\"} 1", "tinymq_bridge_messages_out_total{bridge=\"0\"} 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in /metrics:\n{metrics}");
    }
}

#[test]
fn bridged_messages_never_come_back_and_retained_values_are_stored_on_the_far_side() {
    let nats = NatsServer::start();
    let prefixed = ["--bridge-both", "sensors/#", "--bridge-prefix", "site"];
    let a = bridged(&nats.url(), "A", &prefixed);
    let b = bridged(&nats.url(), "B", &prefixed);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("sensors/#");
    let mut on_b = b.connect("on-b");
    on_b.subscribe("sensors/#");
    wait_connected(&a);
    wait_connected(&b);

    let mut publisher = a.connect("pub");
    publisher.publish("sensors/x", b"1");
    publisher.publish_retained("sensors/kept", b"42");
    for on in [&mut on_a, &mut on_b] {
        let got: Vec<(String, Vec<u8>)> = (0..2).map(|_| on.recv_publish()).map(|m| (m.topic, m.payload)).collect();
        assert_eq!(got, [("sensors/x".into(), b"1".to_vec()), ("sensors/kept".into(), b"42".to_vec())]);
    }
    // Not sent back: neither A nor B sees a second copy, and B's bridge
    // sent nothing of what it took in.
    on_a.expect_silence(QUIET);
    on_b.expect_silence(QUIET);
    let (sa, sb) = (bridge_stats(&a), bridge_stats(&b));
    assert_eq!((figure(&sa, "messages_out"), figure(&sa, "messages_in")), (2, 0), "{sa}");
    assert_eq!((figure(&sb, "messages_out"), figure(&sb, "messages_in")), (0, 2), "{sb}");

    // The retained publish was stored on B: a late subscriber there gets
    // it as a retained value, and not the live one.
    let mut late = b.connect("late");
    late.subscribe("sensors/#");
    let kept = late.recv_publish();
    assert_eq!((kept.topic.as_str(), kept.payload.as_slice(), kept.retain()), ("sensors/kept", &b"42"[..], true));
    late.expect_silence(QUIET);

    // On the prefixed subject, a message carrying A's own id in the origin header (as one sent back
    // by a broker that does not stop loops would) is not taken in by A;
    // B, another broker, takes it. Outside the prefix nothing is taken.
    let mut raw = TcpStream::connect(nats.address()).unwrap();
    let headers = format!("NATS/1.0\r\n{ORIGIN_HEADER}: A\r\n\r\n");
    let body = "echo";
    let hpub = format!(
        "CONNECT {{\"verbose\":false,\"headers\":true}}\r\nPUB sensors.plain 7\r\nno site\r\n\
         HPUB site.sensors.echo {} {}\r\n{headers}{body}\r\nPING\r\n",
        headers.len(),
        headers.len() + body.len()
    );
    raw.write_all(hpub.as_bytes()).unwrap();
    let got = on_b.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("sensors/echo", &b"echo"[..], "A")
    );
    on_a.expect_silence(QUIET);
}

#[test]
fn killing_the_nats_node_a_bridge_is_on_moves_it_to_another_and_delivery_resumes() {
    let cluster = NatsServer::cluster(3);
    let servers = urls(&cluster);
    let a = bridged(&servers, "A", &["--bridge-in", "sensors/#"]);
    let b = bridged(&servers, "B", &["--bridge-out", "sensors/#"]);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("sensors/#");
    wait_connected(&a);
    wait_connected(&b);
    let publish = |n: u32| post(b.http_addr(), "sensors/n", &n.to_string(), "b");
    publish_until_delivered(&mut on_a, Duration::from_secs(15), publish);

    let before = bridge_stats(&a);
    let server = before.field("server").str().to_owned();
    let mut cluster = cluster;
    let node = cluster.iter_mut().find(|n| n.address() == server).unwrap_or_else(|| panic!("{server} is no node"));
    node.kill();
    let killed = Instant::now();
    // Drain what was already on its way, then publish until one arrives.
    while next_publish(&mut on_a, Duration::from_millis(20)).is_some() {}
    publish_until_delivered(&mut on_a, Duration::from_secs(10), publish);
    let took = killed.elapsed();
    eprintln!("delivery resumed {took:?} after the node was killed");
    assert!(took < Duration::from_secs(3), "the bridge took {took:?} to fail over");
    let after = bridge_stats(&a);
    assert_ne!(after.field("server").str(), server, "{after}");
    assert_eq!(after.field("connected"), &Json::Bool(true), "{after}");
    assert!(figure(&after, "reconnects") >= 1, "{after}");
}

#[test]
fn a_mesh_of_three_brokers_delivers_each_message_once_everywhere() {
    let nats = NatsServer::start();
    let brokers: Vec<BrokerProcess> =
        ["A", "B", "C"].iter().map(|id| bridged(&nats.url(), id, &["--bridge-both", "mesh/#"])).collect();
    let mut subscribers: Vec<RawClient> = brokers
        .iter()
        .map(|broker| {
            let mut sub = broker.connect("sub");
            sub.subscribe("mesh/#");
            sub
        })
        .collect();
    for broker in &brokers {
        wait_connected(broker);
    }
    // Each broker publishes its own messages, binary and HTTP.
    let per_broker = 20;
    for (i, broker) in brokers.iter().enumerate() {
        let mut publisher = broker.connect("pub");
        for n in 0..per_broker {
            if n % 2 == 0 {
                publisher.publish(&format!("mesh/{i}"), n.to_string().as_bytes());
            } else {
                post(broker.http_addr(), &format!("mesh/{i}"), &n.to_string(), "http");
            }
        }
    }
    let expected: BTreeMap<(String, String), usize> =
        (0..3).flat_map(|i| (0..per_broker).map(move |n| ((format!("mesh/{i}"), n.to_string()), 1))).collect();
    for (i, sub) in subscribers.iter_mut().enumerate() {
        let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
        for _ in 0..expected.len() {
            let (topic, payload, _) = next_publish(sub, WAIT).unwrap_or_else(|| panic!("broker {i}: got {got:?}"));
            *got.entry((topic, String::from_utf8(payload).unwrap())).or_default() += 1;
        }
        assert_eq!(got, expected, "broker {i}: each message once");
        sub.expect_silence(QUIET * 2);
    }
    for broker in &brokers {
        let stats = bridge_stats(broker);
        let own = per_broker as u64;
        assert_eq!((figure(&stats, "messages_out"), figure(&stats, "messages_in")), (own, 2 * own), "{stats}");
    }
}

#[test]
fn a_bridge_that_cannot_connect_leaves_the_broker_serving_and_queues_up_to_its_bound() {
    // Nothing listens on the address: the broker starts all the same.
    let nowhere = format!("nats://{}", crate::support::free_address());
    let mut a = bridged(&nowhere, "A", &["--bridge-out", "sensors/#", "--bridge-queue", "5"]);
    let mut sub = a.connect("local");
    sub.subscribe("sensors/#");
    let mut publisher = a.connect("pub");
    for n in 0..8 {
        publisher.publish("sensors/n", n.to_string().as_bytes());
    }
    for n in 0..8 {
        assert_eq!(sub.recv_publish().payload, n.to_string().as_bytes(), "local delivery goes on");
    }
    let stats = eventually(WAIT, "the refused dial in STATS", || {
        let stats = bridge_stats(&a);
        stats.field("last_error").as_str().is_some().then_some(stats)
    });
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    assert_eq!((figure(&stats, "queued"), figure(&stats, "drops")), (5, 3), "{stats}");
    assert!(stats.field("last_error").str().contains("cannot connect"), "{stats}");
    let metrics = call(a.http_addr(), "GET", "/metrics", &[], b"").text();
    for line in ["tinymq_bridge_connected{bridge=\"0\"} 0", "tinymq_bridge_drops_total{bridge=\"0\"} 3"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in /metrics:\n{metrics}");
    }
    // Stopping the broker loses what was held, and says so.
    a.stop();
    eventually(WAIT, "the held messages' loss in the log", || {
        a.log().into_iter().find(|line| line.contains("bridge 0 stops with 5 messages held"))
    });
}

#[test]
fn a_bridge_table_in_the_config_file_bridges_like_the_flags() {
    let nats = NatsServer::start();
    let dir = crate::support::ScratchDir::new();
    let file = dir.path().join("tinymq.toml");
    let table = format!("[[bridge]]\nservers = [\"{}\"]\nin = [\"sensors/#\"]\nbroker_id = \"A\"\n", nats.url());
    std::fs::write(&file, table).unwrap();
    let a = BrokerProcess::start_http(&["--config", file.to_str().unwrap(), "--sys-interval", "0"]);
    let b = bridged(&nats.url(), "B", &["--bridge-out", "sensors/#"]);
    let mut on_a = a.connect("on-a");
    on_a.subscribe("sensors/#");
    let stats = wait_connected(&a);
    assert_eq!(stats.field("servers").items(), [Json::String(nats.url())], "{stats}");
    wait_connected(&b);
    post(b.http_addr(), "sensors/from-b", "1", "x");
    let got = on_a.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("sensors/from-b", &b"1"[..], "B")
    );
}

/// The value of `topic` a late subscriber on `broker` gets, if any, within
/// [`QUIET`].
pub(crate) fn stored_value(broker: &BrokerProcess, topic: &str) -> Option<Vec<u8>> {
    let mut late = broker.connect("late-reader");
    late.subscribe(topic);
    next_publish(&mut late, QUIET).map(|(_, payload, _)| payload)
}

#[test]
fn an_empty_retained_publish_deletes_the_value_on_the_far_side_too() {
    let nats = NatsServer::start();
    let a = bridged(&nats.url(), "A", &["--bridge-out", "kept/#"]);
    let b = bridged(&nats.url(), "B", &["--bridge-in", "kept/#"]);
    let mut on_b = b.connect("on-b");
    on_b.subscribe("kept/#");
    wait_connected(&a);
    wait_connected(&b);
    let mut publisher = a.connect("pub");
    publisher.publish_retained("kept/v", b"42");
    let got = on_b.recv_publish();
    assert_eq!(got.payload, b"42");
    assert_eq!(stored_value(&b, "kept/v").as_deref(), Some(&b"42"[..]), "stored on B");

    // The delete goes out as a retained empty message: B's live subscriber
    // sees it, and B's value is gone.
    publisher.publish_retained("kept/v", b"");
    let got = on_b.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("kept/v", &b""[..]));
    assert_eq!(stored_value(&b, "kept/v"), None, "B's value deleted");
    assert_eq!(stored_value(&a, "kept/v"), None, "A's value deleted");
    let stats = bridge_stats(&b);
    assert_eq!(figure(&stats, "messages_in"), 2, "{stats}");
}
