//! Acknowledged delivery, persistent sessions and wills, end to end
//! through the core on a virtual clock: client sessions talk to broker
//! sessions wired to the router and the durable sessions by the reference
//! shell in `qos_shell`.

mod qos_shell;

use std::time::Duration;

use qos_shell::{Broker, Peer};
use tinymq_core::client::{ClientConfig, ClientEvent, ClientWill};
use tinymq_core::durable::{QueueLimits, SessionsConfig};
use tinymq_core::store::Store;
use tinymq_core::{Decoded, Decoder, Frame, FrameType, Qos, ReasonCode, Request, Session, SessionConfig, Step};

fn broker() -> Broker {
    Broker::new(SessionConfig::default(), SessionsConfig::default())
}

fn persistent(id: &str) -> ClientConfig {
    ClientConfig { client_id: id.into(), persistent: true, max_inflight: 16, ..Default::default() }
}

fn plain(id: &str) -> ClientConfig {
    ClientConfig { client_id: id.into(), max_inflight: 16, ..Default::default() }
}

/// A broker whose sessions keep at most `max_inflight` QoS 1 deliveries
/// unacknowledged.
fn broker_with_window(max_inflight: u16) -> Broker {
    let queue = QueueLimits { max_inflight, ..QueueLimits::default() };
    Broker::new(
        SessionConfig { max_inflight, ..SessionConfig::default() },
        SessionsConfig { queue, ..Default::default() },
    )
}

/// A persistent QoS 1 subscriber to `filter`, connected.
fn online_subscriber(broker: &mut Broker, config: ClientConfig, filter: &str) -> Peer {
    let mut sub = Peer::connected(broker, config);
    sub.client.subscribe_qos(broker.now, filter, Qos::AtLeastOnce).unwrap();
    sub.run(broker);
    sub
}

/// A persistent QoS 1 subscriber to `filter`, connected and then cut off.
fn offline_subscriber(broker: &mut Broker, id: &str, filter: &str) -> Peer {
    let mut sub = online_subscriber(broker, persistent(id), filter);
    sub.cut(broker);
    sub.events.clear();
    sub
}

/// Publishes `count` QoS 1 messages `prefix-n` to `topic`, waiting for the
/// window as a real publisher would; returns how many were acknowledged.
fn publish_all(broker: &mut Broker, publisher: &mut Peer, topic: &str, prefix: &str, count: usize) -> usize {
    for n in 0..count {
        let payload = format!("{prefix}-{n}");
        loop {
            match publisher.client.publish_qos1(broker.now, topic, payload.as_bytes(), false) {
                Ok(_) => break,
                Err(tinymq_core::client::ClientError::WindowFull(_)) => publisher.run(broker),
                Err(error) => panic!("{error}"),
            }
        }
        publisher.run(broker);
    }
    publisher.run(broker);
    publisher.acked().len()
}

fn texts(messages: &[(String, Vec<u8>, bool)]) -> Vec<String> {
    messages.iter().map(|(_, payload, _)| String::from_utf8(payload.clone()).unwrap()).collect()
}

#[test]
fn an_offline_persistent_session_gets_every_acknowledged_message_in_order() {
    let mut broker = broker();
    let mut sub = offline_subscriber(&mut broker, "sub", "a/#");
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    assert_eq!(publish_all(&mut broker, &mut publisher, "a/b", "m", 500), 500);

    sub.connect(&mut broker);
    assert!(matches!(sub.events[0], ClientEvent::Connected { session_present: true, .. }));
    let got = texts(&sub.messages());
    assert_eq!(got, (0..500).map(|n| format!("m-{n}")).collect::<Vec<_>>());
    assert!(broker.session("sub").unwrap().queue().is_empty(), "every one acknowledged");
    broker.flush_store();
    assert!(broker.store.load_queued().unwrap().is_empty(), "and deleted from the store");
}

#[test]
fn unacknowledged_deliveries_are_resent_after_a_reconnect_with_dup() {
    let mut broker = broker();
    let mut sub = online_subscriber(&mut broker, persistent("sub"), "a/#");
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    for n in 0..3 {
        publisher.client.publish_qos1(broker.now, "a/b", format!("{n}").as_bytes(), false).unwrap();
    }
    publisher.run(&mut broker);
    // The messages reach the client, which never hands them on: no PubAck.
    sub.exchange(&mut broker, false);
    assert_eq!(broker.session("sub").unwrap().queue().inflight(), 3);
    sub.cut(&mut broker);
    sub.events.clear();
    // The client kept them as events; a fresh client process would not.
    sub.client = tinymq_core::client::ClientSession::new(&persistent("sub"), broker.now).unwrap();
    sub.connect(&mut broker);
    let got = sub.messages();
    assert_eq!(texts(&got), ["0", "1", "2"]);
    assert!(got.iter().all(|(_, _, dup)| *dup), "resends carry DUP: {got:?}");
    assert_eq!(broker.session("sub").unwrap().queue().len(), 0);
}

#[test]
fn the_in_flight_window_holds_the_rest_in_the_queue() {
    let mut broker = broker_with_window(4);
    let mut sub = online_subscriber(&mut broker, persistent("sub"), "a");
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    for n in 0..10 {
        publisher.client.publish_qos1(broker.now, "a", &[n], false).unwrap();
    }
    publisher.run(&mut broker);
    sub.exchange(&mut broker, false);
    let queue = broker.session("sub").unwrap().queue();
    assert_eq!((queue.inflight(), queue.len()), (4, 10), "4 sent, 6 waiting");
    // Taking the events acknowledges them, which lets the rest through.
    sub.run(&mut broker);
    assert_eq!(sub.messages().len(), 10);
    assert_eq!(broker.session("sub").unwrap().queue().len(), 0);
}

#[test]
fn a_full_queue_drops_the_newest_for_that_session_only() {
    let limits = QueueLimits { max_messages: 10, ..QueueLimits::default() };
    let mut broker = Broker::new(SessionConfig::default(), SessionsConfig { queue: limits, ..Default::default() });
    let mut sub = offline_subscriber(&mut broker, "sub", "a");
    let mut other = offline_subscriber(&mut broker, "other", "b");
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    assert_eq!(publish_all(&mut broker, &mut publisher, "a", "m", 15), 15, "the publisher's acks do not depend on it");
    publish_all(&mut broker, &mut publisher, "b", "o", 3);
    assert_eq!(broker.session("sub").unwrap().queue().dropped(), 5);
    sub.connect(&mut broker);
    assert_eq!(texts(&sub.messages()), (0..10).map(|n| format!("m-{n}")).collect::<Vec<_>>());
    other.connect(&mut broker);
    assert_eq!(texts(&other.messages()), ["o-0", "o-1", "o-2"]);
}

#[test]
fn an_offline_session_expires_and_is_forgotten() {
    let config = SessionsConfig { session_expiry: Duration::from_secs(3600), ..Default::default() };
    let mut broker = Broker::new(SessionConfig::default(), config);
    let mut sub = offline_subscriber(&mut broker, "sub", "a");
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    publish_all(&mut broker, &mut publisher, "a", "m", 3);
    assert_eq!(broker.store.load_queued().unwrap().len(), 3);

    broker.advance(Duration::from_secs(3599));
    assert!(broker.session("sub").is_some(), "not yet");
    broker.advance(Duration::from_secs(1));
    assert!(broker.session("sub").is_none());
    assert!(broker.store.load_sessions().unwrap().is_empty() && broker.store.load_queued().unwrap().is_empty());

    sub.connect(&mut broker);
    assert!(matches!(sub.events[0], ClientEvent::Connected { session_present: false, .. }));
    assert!(sub.messages().is_empty());
}

#[test]
fn a_session_asks_for_a_shorter_expiry_but_never_a_longer_one() {
    let config = SessionsConfig { session_expiry: Duration::from_secs(100), ..Default::default() };
    let mut broker = Broker::new(SessionConfig::default(), config);
    for (asked, lives) in [(10, 10), (1000, 100)] {
        let id = format!("s{asked}");
        let mut peer = Peer::connected(&mut broker, ClientConfig { session_expiry: asked, ..persistent(&id) });
        peer.cut(&mut broker);
        broker.advance(Duration::from_secs(lives - 1));
        assert!(broker.session(&id).is_some(), "{id}");
        broker.advance(Duration::from_secs(1));
        assert!(broker.session(&id).is_none(), "{id}");
    }
}

#[test]
fn queued_messages_and_subscriptions_survive_a_kill_9() {
    let mut broker = broker();
    let mut sub = offline_subscriber(&mut broker, "sub", "a/#");
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    assert_eq!(publish_all(&mut broker, &mut publisher, "a/b", "m", 50), 50);

    let mut broker = broker.restart(SessionsConfig::default());
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    assert_eq!(publish_all(&mut broker, &mut publisher, "a/c", "n", 10), 10, "the subscription was restored");

    sub.connect(&mut broker);
    let got = sub.messages();
    let expected: Vec<String> = (0..50).map(|n| format!("m-{n}")).chain((0..10).map(|n| format!("n-{n}"))).collect();
    assert_eq!(texts(&got), expected);
    // Whether the first 50 were sent before the crash is unknown: DUP.
    assert!(got[..50].iter().all(|m| m.2) && got[50..].iter().all(|m| !m.2));
}

#[test]
fn a_will_is_published_on_every_lost_connection_and_not_on_disconnect() {
    let config =
        SessionConfig { outbound_limit: 4096, keep_alive: Duration::from_secs(10), ..SessionConfig::default() };
    let mut broker = Broker::new(config, Default::default());
    // Persistent, so it keeps its wills through its own keep-alive timeout.
    let mut watcher = Peer::connected(&mut broker, persistent("watcher"));
    watcher.client.subscribe_qos(broker.now, "will/#", Qos::AtLeastOnce).unwrap();
    watcher.run(&mut broker);
    let with_will = |id: &str| ClientConfig {
        will: Some(ClientWill {
            topic: format!("will/{id}"),
            payload: b"gone".to_vec(),
            retain: false,
            qos: Qos::AtLeastOnce,
        }),
        keep_alive: Duration::from_secs(10),
        ..plain(id)
    };

    // A clean Disconnect: no will.
    let mut clean = Peer::connected(&mut broker, with_will("clean"));
    clean.disconnect(&mut broker);
    // A reset connection.
    let mut reset = Peer::connected(&mut broker, with_will("reset"));
    reset.cut(&mut broker);
    // A protocol error (a PubAck with packet id 0).
    let broken = Peer::connected(&mut broker, with_will("broken"));
    broker.input(broken.conn.unwrap(), &[0x0a, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    assert_eq!(broker.conns[broken.conn.unwrap()].session.close_reason(), Some(Some(ReasonCode::ProtocolError)));
    // A takeover by a new connection under the same id.
    let mut first = Peer::connected(&mut broker, with_will("taken"));
    let _second = Peer::connected(&mut broker, plain("taken"));
    first.run(&mut broker);
    assert_eq!(first.disconnected(), Some(ReasonCode::SessionTakenOver as u8));
    // A keep-alive timeout: the client goes silent.
    let _silent = Peer::connected(&mut broker, with_will("silent"));
    broker.advance(Duration::from_secs(16));
    // A slow consumer: subscribed, never reading, its queue overflows.
    let mut slow = Peer::connected(&mut broker, with_will("slow"));
    slow.client.subscribe(broker.now, "flood").unwrap();
    slow.run(&mut broker);
    let slow_conn = slow.conn.take().unwrap();
    let mut flooder = Peer::connected(&mut broker, plain("flooder"));
    for _ in 0..20 {
        flooder.client.publish(broker.now, "flood", &[0; 512], false).unwrap();
    }
    flooder.run(&mut broker);
    assert_eq!(broker.conns[slow_conn].session.close_reason(), Some(Some(ReasonCode::SlowConsumer)));

    watcher.cut(&mut broker);
    watcher.client = tinymq_core::client::ClientSession::new(&persistent("watcher"), broker.now).unwrap();
    watcher.connect(&mut broker);
    let mut fired: Vec<String> = broker.wills.iter().map(|(id, _, _)| id.clone()).collect();
    fired.sort();
    assert_eq!(fired, ["broken", "reset", "silent", "slow", "taken"]);
    let mut seen: Vec<String> = watcher.messages().into_iter().map(|(topic, _, _)| topic).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["will/broken", "will/reset", "will/silent", "will/slow", "will/taken"]);
}

#[test]
fn a_persistent_session_will_survives_a_broker_kill_9() {
    let mut broker = broker();
    let mut device = Peer::new(
        &broker,
        ClientConfig {
            will: Some(ClientWill {
                topic: "dev/status".into(),
                payload: b"lost".to_vec(),
                retain: true,
                qos: Qos::AtMostOnce,
            }),
            ..persistent("dev")
        },
    );
    device.connect(&mut broker);
    broker.flush_store();
    let broker = broker.restart(SessionsConfig::default());
    assert_eq!(broker.wills, [("dev".to_owned(), "dev/status".to_owned(), b"lost".to_vec())]);
    let stored = broker.router.value(tinymq_core::NamespaceId::PUBLIC, "dev/status").expect("retained");
    assert_eq!(&stored.message().payload[..], b"lost");
}

#[test]
fn order_holds_per_publisher_per_topic_through_cuts_and_duplicates_are_counted() {
    let mut broker = broker_with_window(8);
    let mut sub = online_subscriber(&mut broker, persistent("sub"), "t/#");
    let mut publishers: Vec<Peer> = ["p0", "p1"].iter().map(|id| Peer::new(&broker, plain(id))).collect();
    for publisher in &mut publishers {
        publisher.connect(&mut broker);
    }
    // A small deterministic generator of cuts.
    let mut seed = 0x2545_f491_u32;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut sent = [0usize; 2];
    let mut received = Vec::new();
    for round in 0..400 {
        let p = (random() % 2) as usize;
        let topic = if round % 3 == 0 { "t/x" } else { "t/y" };
        let payload = format!("{p}:{topic}:{}", sent[p]);
        if publishers[p].client.publish_qos1(broker.now, topic, payload.as_bytes(), false).is_ok() {
            sent[p] += 1;
        }
        publishers[p].run(&mut broker);
        match random() % 10 {
            // The subscriber's connection breaks with messages unacknowledged:
            // some handed on, their PubAcks lost with the connection.
            0 => {
                sub.exchange(&mut broker, false);
                sub.take_events();
                sub.cut(&mut broker);
                received.extend(sub.messages());
                sub.events.clear();
                sub.client = tinymq_core::client::ClientSession::new(&persistent("sub"), broker.now).unwrap();
                sub.connect(&mut broker);
            }
            1..=3 => sub.exchange(&mut broker, false),
            _ => sub.run(&mut broker),
        }
    }
    for publisher in &mut publishers {
        publisher.run(&mut broker);
    }
    sub.run(&mut broker);
    received.extend(sub.messages());

    // Per publisher and topic: the sequence, with repeats only of what came before.
    let mut last: std::collections::HashMap<(String, String), i64> = Default::default();
    let mut duplicates = 0;
    let mut distinct = std::collections::HashSet::new();
    for (topic, payload, dup) in &received {
        let text = String::from_utf8(payload.clone()).unwrap();
        let mut parts = text.split(':');
        let (p, _, n) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let n: i64 = n.parse().unwrap();
        let seen = last.entry((p.to_owned(), topic.clone())).or_insert(-1);
        if !distinct.insert(text.clone()) {
            duplicates += 1;
            assert!(*dup, "a repeat without DUP: {text}");
        } else {
            assert!(n > *seen, "{text} after {seen}");
            *seen = n;
        }
    }
    let acked: usize = publishers.iter().map(|p| p.acked().len()).sum();
    assert_eq!(acked, sent[0] + sent[1]);
    assert_eq!(distinct.len(), acked, "every acknowledged message arrived");
    println!("{} messages, {duplicates} duplicates", distinct.len());
}

#[test]
fn malformed_qos_frames_close_only_their_own_connection() {
    let mut broker = broker();
    let mut bystander = Peer::connected(&mut broker, plain("bystander"));
    bystander.client.subscribe(broker.now, "a").unwrap();
    bystander.run(&mut broker);
    let connect = Frame::connect("bad", b"").to_vec();
    let cases: [(&str, Vec<u8>, ReasonCode); 4] = [
        ("dup without qos", vec![0x22, 0, 1, b'a', 0, 0, 0, 0, 0, 0], ReasonCode::ProtocolError),
        ("puback with a topic", vec![0x0a, 0, 1, b'a', 0, 0, 0, 2, 0, 1, 0, 0], ReasonCode::ProtocolError),
        ("qos 1 without an id", vec![0x42, 0, 1, b'a', 0, 0, 0, 1, 9, 0, 0], ReasonCode::ProtocolError),
        ("subscribe with retain", vec![0x83, 0, 1, b'a', 0, 0, 0, 0, 0, 0], ReasonCode::ProtocolError),
    ];
    for (name, bytes, reason) in cases {
        let conn = broker.open();
        broker.input(conn, &connect);
        broker.input(conn, &bytes);
        assert_eq!(broker.conns[conn].session.close_reason(), Some(Some(reason)), "{name}");
    }
    for (name, frame, reason) in [
        (
            "a will to a $ topic",
            Frame { will: true, topic: "$SYS/x", payload: &[0, 0, 0, 0, 0, 0, 0, 0, 0], ..Frame::connect("w", b"") },
            ReasonCode::InvalidTopic,
        ),
        (
            "a persistent session without an id",
            Frame { session: true, payload: &[0; 9], ..Frame::connect("", b"") },
            ReasonCode::ProtocolError,
        ),
        (
            "an expiry without a session",
            Frame { will: true, topic: "w", payload: &[0, 0, 0, 1, 0, 0, 0, 0, 0], ..Frame::connect("w", b"") },
            ReasonCode::ProtocolError,
        ),
    ] {
        let conn = broker.open();
        broker.input(conn, &frame.to_vec());
        assert_eq!(broker.conns[conn].session.close_reason(), Some(Some(reason)), "{name}");
        assert!(!broker.conns[conn].session.outbound().is_empty(), "{name}: a Disconnect is queued");
    }
    let mut publisher = Peer::connected(&mut broker, plain("pub"));
    publisher.client.publish(broker.now, "a", b"still here", false).unwrap();
    publisher.run(&mut broker);
    bystander.run(&mut broker);
    assert_eq!(texts(&bystander.messages()), ["still here"]);
    assert_eq!(bystander.disconnected(), None);
}

/// The broker side alone: ids awaiting the shell's ack, the read window.
#[test]
fn a_session_reads_up_to_its_window_and_refuses_an_id_in_use() {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::Instant::now();
    let config = SessionConfig { max_inflight: 2, ..SessionConfig::default() };
    let mut session = Session::new(now, &config);
    let connect = Frame::connect("c", b"").to_vec();
    assert!(matches!(session.handle_input(now, &connect), Ok(Step::Request { .. })));
    session.accept("c".into());
    let publish = |id| Frame::publish_qos1("a", b"x", "", false, id, false).to_vec();
    for id in [1, 2] {
        let bytes = publish(id);
        let Ok(Step::Request { request, .. }) = session.handle_input(now, &bytes) else { panic!() };
        assert!(matches!(request, Request::Publish { qos: Qos::AtLeastOnce, packet_id, .. } if packet_id == id));
    }
    assert!(!session.wants_read(), "two await their ack");
    session.ack(1).unwrap();
    session.ack(1).unwrap();
    assert!(session.wants_read() && session.unacked() == 1);
    // Id 1 is free again; id 2 is not.
    assert!(matches!(session.handle_input(now, &publish(1)), Ok(Step::Request { .. })));
    assert!(session.handle_input(now, &publish(2)).is_err());
    assert_eq!(session.close_reason(), Some(Some(ReasonCode::ProtocolError)));
    // The outbound queue holds ConnAck, one PubAck, then the Disconnect.
    let mut slices: [&[u8]; 8] = [&[]; 8];
    let n = session.outbound().front_slices(&mut slices);
    let bytes: Vec<u8> = slices[..n].concat();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { frame, consumed }) = Decoder::default().decode(&bytes[at..]) {
        frames.push((frame.kind, frame.packet_id));
        at += consumed;
    }
    assert_eq!(frames, [(FrameType::ConnAck, 0), (FrameType::PubAck, 1), (FrameType::Disconnect, 0)]);
}

/// Not a check but a figure: QoS 1 messages through the whole core path
/// (client session, broker session, router, durable session with its store
/// ops applied to a memory store, and back), 1 → 1, the subscriber online
/// and then offline. Run with
/// `cargo test --release -p tinymq-core --test qos -- --ignored --nocapture`.
#[test]
#[ignore]
#[allow(clippy::disallowed_methods)]
fn measure_the_core_qos1_path() {
    const COUNT: usize = 100_000;
    for window in [16u16, 256, 1024] {
        let mut broker = broker_with_window(window);
        let mut sub = online_subscriber(&mut broker, ClientConfig { max_inflight: window, ..persistent("sub") }, "a");
        let mut publisher = Peer::connected(&mut broker, ClientConfig { max_inflight: window, ..plain("pub") });
        let payload = [7u8; 64];
        let started = std::time::Instant::now();
        let mut sent = 0;
        while sent < COUNT {
            while sent < COUNT && publisher.client.publish_qos1(broker.now, "a", &payload, false).is_ok() {
                sent += 1;
            }
            publisher.run(&mut broker);
            sub.run(&mut broker);
            sub.events.clear();
            publisher.events.clear();
        }
        let online = started.elapsed();

        sub.cut(&mut broker);
        sub.client = tinymq_core::client::ClientSession::new(
            &ClientConfig { max_inflight: window, ..persistent("sub") },
            broker.now,
        )
        .unwrap();
        let started = std::time::Instant::now();
        let mut sent = 0;
        while sent < COUNT {
            while sent < COUNT && publisher.client.publish_qos1(broker.now, "a", &payload, false).is_ok() {
                sent += 1;
            }
            publisher.run(&mut broker);
            publisher.events.clear();
        }
        let queued = started.elapsed();
        let started = std::time::Instant::now();
        sub.connect(&mut broker);
        let drained = started.elapsed();
        assert_eq!(sub.messages().len(), COUNT);
        let rate = |d: Duration| COUNT as f64 / d.as_secs_f64();
        println!(
            "window {window}: online {:.0} msg/s, queued offline {:.0} msg/s, drained on reconnect {:.0} msg/s",
            rate(online),
            rate(queued),
            rate(drained)
        );
    }
}

/// A shell with no durable sessions (tinymq-net today) runs QoS 1 requests
/// through `broker::execute`: subscriptions are granted QoS 0, and a QoS 1
/// publish is acknowledged once routed, which is then all it takes.
#[test]
fn execute_grants_qos_0_and_acknowledges_qos_1_publishes_once_routed() {
    use tinymq_core::broker::{self, Origin};
    use tinymq_core::{NamespaceId, Router};
    #[allow(clippy::disallowed_methods)]
    let now = std::time::Instant::now();
    let mut router: Router<usize> = Router::new();
    let mut session = Session::new(now, &SessionConfig::default());
    let mut subscriber = None;
    let mut input = Frame::connect("c", b"").to_vec();
    input.extend(Frame { qos: Qos::AtLeastOnce, ..Frame::with_topic(FrameType::Subscribe, "a") }.to_vec());
    input.extend(Frame::publish_qos1("a", b"x", "", false, 9, false).to_vec());
    input.extend(Frame::publish_qos1("a", b"y", "", true, 10, false).to_vec());
    let mut used = 0;
    let mut receivers = Vec::new();
    while let Ok(Step::Request { consumed, request }) = session.handle_input(now, &input[used..]) {
        let origin = Origin { unix_time: 0, ip: None };
        let effects =
            broker::execute(&mut router, &mut session, subscriber, 0, request, origin, |_| Ok(NamespaceId::PUBLIC));
        subscriber = subscriber.or(effects.connected);
        receivers.extend(effects.receivers);
        used += consumed;
    }
    assert_eq!(used, input.len());
    assert_eq!(receivers, [0, 0], "both routed to the subscriber");
    let mut slices: [&[u8]; 8] = [&[]; 8];
    let n = session.outbound().front_slices(&mut slices);
    let bytes: Vec<u8> = slices[..n].concat();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { frame, consumed }) = Decoder::default().decode(&bytes[at..]) {
        frames.push((frame.kind, frame.qos, frame.packet_id));
        at += consumed;
    }
    assert_eq!(
        frames,
        [
            (FrameType::ConnAck, Qos::AtMostOnce, 0),
            (FrameType::SubAck, Qos::AtMostOnce, 0),
            (FrameType::PubAck, Qos::AtMostOnce, 9),
            (FrameType::PubAck, Qos::AtMostOnce, 10),
        ]
    );
}
