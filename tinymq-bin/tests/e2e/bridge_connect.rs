//! Bridge connection setup: servers given by host name (resolved off the
//! event loop), client certificates (mutual TLS) and NATS NKEYs, against
//! a real `nats-server` and `mosquitto`.

use crate::bridge::bridge_stats;
use crate::bridge_secure::{assert_delivery, bridged, wait_refused};
use crate::support::http::{Json, JsonExt};
use crate::support::nats::NatsServer;

#[test]
fn a_nats_server_given_by_host_name_is_resolved_and_carries_messages() {
    let nats = NatsServer::start();
    let by_name = nats.url().replace("127.0.0.1", "localhost");
    assert!(by_name.contains("localhost"), "{by_name}");
    let a = bridged(&by_name, "A", &["--bridge-out", "s/#"]);
    let b = bridged(&by_name, "B", &["--bridge-in", "s/#"]);
    assert_delivery(&a, &b);
    let stats = bridge_stats(&a);
    assert_eq!(stats.field("server").as_str(), Some(by_name.trim_start_matches("nats://")), "{stats}");
}

#[test]
fn a_name_that_does_not_resolve_leaves_the_bridge_down_and_the_broker_serving() {
    let broker = bridged("nats://no-such-host.invalid:4222", "A", &["--bridge-out", "s/#"]);
    let stats = wait_refused(&broker, "cannot resolve no-such-host.invalid:4222");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    // The loop that runs the bridge serves clients meanwhile, and keeps
    // trying (a second failure comes after the backoff).
    let mut subscriber = broker.connect("sub");
    subscriber.subscribe("s/#");
    broker.connect("pub").publish("s/t", b"still here");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("s/t", &b"still here"[..]));
    crate::support::http::eventually(crate::support::WAIT * 2, "a second attempt", || {
        broker.log().iter().filter(|line| line.contains("cannot resolve")).nth(1).map(|_| ())
    });
}
