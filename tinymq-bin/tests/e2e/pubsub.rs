//! Publish and subscribe through the real binary over TCP: deliveries,
//! the sender stamp, assigned client ids, unsubscribing. (Unix sockets:
//! unix_socket.rs.)

use crate::support::{BrokerProcess, QUIET, RawClient};
use tinymq_core::{Frame, FrameType};

#[test]
fn tcp_delivery_is_stamped_with_the_publishers_client_id() {
    let broker = BrokerProcess::start(&[]);
    let mut sub = broker.connect("sub");
    sub.subscribe("sensors/+/temperature");
    let mut thermometer = broker.connect("thermometer");
    // The client id sent in a Publish is ignored: the broker stamps the
    // session's own.
    thermometer.publish("sensors/kitchen/temperature", b"21.5");
    let got = sub.recv_publish();
    assert_eq!(
        (got.type_byte, got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        (0x02, "sensors/kitchen/temperature", &b"21.5"[..], "thermometer")
    );
    // A publisher subscribed to its own topic hears itself, stamped too.
    thermometer.subscribe("sensors/#");
    thermometer.publish("sensors/hall/temperature", b"19");
    for client in [&mut sub, &mut thermometer] {
        let got = client.recv_publish();
        assert_eq!((got.topic.as_str(), got.client_id.as_str()), ("sensors/hall/temperature", "thermometer"));
    }
}

#[test]
fn an_empty_client_id_is_assigned_a_unique_one_that_stamps_deliveries() {
    let broker = BrokerProcess::start(&[]);
    // RawClient::connect asserts the ConnAck carries a non-empty id.
    let mut first = broker.connect("");
    let mut second = broker.connect("");
    assert_ne!(first.client_id, second.client_id, "assigned ids are unique");
    // An assigned id is a real session id: the first is still connected
    // (not taken over by the second) and its publishes carry it.
    first.subscribe("ids");
    second.publish("ids", b"from second");
    let got = first.recv_publish();
    assert_eq!(got.client_id, second.client_id);
    first.ping();
}

#[test]
fn frames_pipelined_behind_connect_are_handled_in_order() {
    let broker = BrokerProcess::start(&[]);
    let mut client = broker.open();
    // Connect, Subscribe, Publish and Ping in one write, without waiting
    // for the ConnAck: nothing in the protocol asks a client to wait.
    let mut bytes = Frame::connect("eager", b"").to_vec();
    bytes.extend(Frame::with_topic(FrameType::Subscribe, "echo").to_vec());
    bytes.extend(Frame::publish("echo", b"self", "", false).to_vec());
    bytes.extend(Frame::empty(FrameType::Ping).to_vec());
    client.send_bytes(&bytes);
    let kinds: Vec<(FrameType, String)> = (0..4)
        .map(|_| {
            let frame = client.recv();
            (frame.kind, frame.topic)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (FrameType::ConnAck, String::new()),
            (FrameType::SubAck, "echo".into()),
            (FrameType::Publish, "echo".into()),
            (FrameType::Pong, String::new())
        ]
    );
}

#[test]
fn unsubscribe_stops_deliveries_and_tolerates_unknown_filters() {
    let broker = BrokerProcess::start(&[]);
    let mut sub = broker.connect("sub");
    sub.subscribe("news/#");
    sub.subscribe("sentinel");
    let mut publisher = broker.connect("pub");
    publisher.publish("news/a", b"1");
    assert_eq!(sub.recv_publish().payload, b"1");

    sub.unsubscribe("news/#");
    // Not held: still an accepting UnsubAck.
    sub.unsubscribe("never/subscribed");
    publisher.publish("news/a", b"2");
    publisher.publish("sentinel", b"s");
    let next = sub.recv_publish();
    assert_eq!(next.topic, "sentinel", "nothing for the dropped filter came first: {next:?}");
    sub.expect_silence(QUIET);
}

#[test]
fn a_payload_of_exactly_the_limit_is_delivered_intact() {
    let broker = BrokerProcess::start(&[]);
    let mut sub = broker.connect("sub");
    sub.subscribe("big");
    let payload: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut publisher = broker.connect("pub");
    publisher.publish("big", &payload);
    publisher.publish("big", b"after");
    let got = sub.recv_publish();
    assert_eq!(got.payload.len(), payload.len());
    assert!(got.payload == payload, "payload corrupted");
    assert_eq!(sub.recv_publish().payload, b"after");
    publisher.ping();
}

#[test]
fn a_clean_client_disconnect_closes_without_a_reply() {
    let broker = BrokerProcess::start(&[]);
    let mut client = broker.connect("leaving");
    client.subscribe("x");
    client.send(&Frame::empty(FrameType::Disconnect));
    client.expect_closed();
    // The id is free again: reconnecting with it is not a takeover of
    // anything, and works.
    let mut again = RawClient::connect(broker.endpoint(), "leaving");
    again.ping();
}

/// A publisher's receivers are remembered per topic while subscriptions
/// stay as they are: a subscriber that joins, leaves or goes changes where
/// the very next publish to that topic goes, whichever loops the clients
/// landed on.
#[test]
fn a_changed_subscription_changes_where_the_next_publish_goes() {
    let broker = BrokerProcess::start(&["--threads", "2"]);
    let mut publisher = broker.connect("pub");
    let mut a = broker.connect("a");
    let mut b = broker.connect("b");
    // No one subscribes yet: the route found is empty. The Pong says the
    // broker has routed "0" before a subscribes.
    publisher.publish("t", b"0");
    publisher.ping();
    a.subscribe("t");
    publisher.publish("t", b"1");
    assert_eq!(a.recv_publish().payload, b"1");
    b.subscribe("t");
    publisher.publish("t", b"2");
    for client in [&mut a, &mut b] {
        assert_eq!(client.recv_publish().payload, b"2");
    }
    a.unsubscribe("t");
    publisher.publish("t", b"3");
    assert_eq!(b.recv_publish().payload, b"3");
    drop(b);
    // Once a is back, "4" is the first thing it gets: "3" never came.
    a.subscribe("t");
    publisher.publish("t", b"4");
    assert_eq!(a.recv_publish().payload, b"4");
    a.expect_silence(QUIET);
}

/// Small frames to binary subscribers are copied between loops as bytes,
/// larger ones as a shared delivery: a stream that mixes the two arrives
/// whole and in order at every subscriber, on the publisher's loop or not.
#[test]
fn small_and_large_messages_mixed_arrive_in_order_at_every_subscriber() {
    let broker = BrokerProcess::start(&["--threads", "2"]);
    let mut subs: Vec<_> = (0..4).map(|i| broker.connect(&format!("sub-{i}"))).collect();
    for sub in &mut subs {
        sub.subscribe("mixed");
    }
    let mut publisher = broker.connect("pub");
    let payload = |i: usize| -> Vec<u8> {
        let len = if i.is_multiple_of(3) { 2000 } else { 10 };
        let mut bytes = vec![b'x'; len];
        bytes[..4].copy_from_slice(&(i as u32).to_be_bytes());
        bytes
    };
    for i in 0..300 {
        publisher.publish("mixed", &payload(i));
    }
    for sub in &mut subs {
        for i in 0..300 {
            assert_eq!(sub.recv_publish().payload, payload(i), "message {i}");
        }
    }
}
