//! Scenarios on a virtual clock: MQTT sessions of both versions against
//! one router, through the same calls a shell makes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::{AuthError, Identity};
use crate::broker::{Effects, Origin};
use crate::message::Message;
use crate::mqtt::packet::{Connect, Properties, Publish, Subscribe, SubscribeFilter, Will};
use crate::mqtt::{Decoded, Decoder, broker, to_vec};
use crate::router::Router;

use ProtocolVersion::{V5, V311};

const ORIGIN: Origin = Origin { unix_time: 7, ip: None };

#[allow(clippy::disallowed_methods)] // the virtual clock's start
fn start() -> Instant {
    Instant::now()
}

/// What a client saw: the packets the session queued, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    ConnAck { code: u8, properties: Vec<u8> },
    Publish { topic: String, payload: Vec<u8>, qos: QoS, retain: bool, packet_id: Option<u16> },
    PubAck { packet_id: u16, reason: u8 },
    SubAck { packet_id: u16, codes: Vec<u8> },
    UnsubAck { packet_id: u16, codes: Vec<u8> },
    PingResp,
    Disconnect { reason: u8 },
}

/// One client's session and its router handle, in a test broker.
struct Client {
    session: ServerSession,
    id: Option<crate::SubscriberId>,
    name: &'static str,
    version: ProtocolVersion,
}

struct Broker {
    router: Router<&'static str>,
    now: Instant,
}

impl Broker {
    fn new() -> Self {
        Broker { router: Router::new(), now: start() }
    }

    fn connect_with(&mut self, name: &'static str, connect: Connect<'_>) -> Client {
        let mut client = Client {
            session: ServerSession::new(self.now, &SessionConfig::default()),
            id: None,
            name,
            version: connect.version,
        };
        let bytes = to_vec(&Packet::Connect(connect), connect.version);
        match client.session.handle_input(self.now, &bytes) {
            Ok(Step::Request { request: Request::Connect { .. }, consumed }) => assert_eq!(consumed, bytes.len()),
            other => return assert_closed(client, other),
        }
        let effects =
            broker::connect(&mut self.router, &mut client.session, name, true, Ok(Identity::Anonymous), ORIGIN);
        client.id = effects.connected;
        client
    }

    fn connect(&mut self, name: &'static str, version: ProtocolVersion) -> Client {
        self.connect_with(name, connect(name, version))
    }

    /// Sends `packet` from `client` when what it does to others is not
    /// the point.
    fn send(&mut self, client: &mut Client, packet: &Packet<'_>) {
        let _ = self.routed(client, packet);
    }

    /// Sends `packet` from `client`; returns what the broker must deliver.
    fn routed(&mut self, client: &mut Client, packet: &Packet<'_>) -> Effects<&'static str> {
        let bytes = to_vec(packet, client.version);
        match client.session.handle_input(self.now, &bytes) {
            Ok(Step::Request { request, .. }) => {
                broker::execute(&mut self.router, &mut client.session, client.id, request, ORIGIN)
            }
            _ => Effects::default(),
        }
    }

    /// Moves a publish's delivery to the receivers among `clients`.
    fn deliver(&mut self, effects: &Effects<&'static str>, clients: &mut [&mut Client]) {
        let Some(delivery) = &effects.delivery else { return };
        for client in clients.iter_mut().filter(|c| effects.receivers.contains(&c.name)) {
            let _ = client.session.deliver(delivery);
        }
    }
}

fn assert_closed(client: Client, step: Result<Step<'_>, Closed>) -> Client {
    assert!(step.is_err() || client.session.is_closed(), "{step:?}");
    client
}

fn connect(client_id: &str, version: ProtocolVersion) -> Connect<'_> {
    Connect {
        version,
        client_id,
        clean_start: true,
        keep_alive: 60,
        will: None,
        username: None,
        password: None,
        properties: Properties::EMPTY,
    }
}

fn publish<'a>(topic: &'a str, payload: &'a [u8], qos: QoS, packet_id: Option<u16>) -> Packet<'a> {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id,
        properties: Properties::EMPTY,
        payload,
    })
}

fn subscribe(packet_id: u16, filter: &str, qos: QoS) -> Packet<'_> {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::EMPTY,
        filters: vec![SubscribeFilter { filter, options: SubscriptionOptions::qos(qos) }],
    })
}

/// Takes and decodes everything queued for `client`.
fn seen(client: &mut Client) -> Vec<Seen> {
    let mut bytes = Vec::new();
    let outbound = client.session.outbound_mut();
    let mut slices: [&[u8]; 64] = [&[]; 64];
    let n = outbound.front_slices(&mut slices);
    for slice in &slices[..n] {
        bytes.extend_from_slice(slice);
    }
    let len = outbound.len();
    outbound.consume(len);
    let decoder = Decoder::new(1 << 24, QoS::ExactlyOnce);
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let Ok(Decoded::Complete { packet, consumed }) = decoder.decode(client.version, rest) else {
            panic!("undecodable output {rest:02x?}");
        };
        out.push(match packet {
            Packet::ConnAck(ack) => Seen::ConnAck { code: ack.code, properties: ack.properties.as_bytes().to_vec() },
            Packet::Publish(p) => Seen::Publish {
                topic: p.topic.into(),
                payload: p.payload.into(),
                qos: p.qos,
                retain: p.retain,
                packet_id: p.packet_id,
            },
            Packet::PubAck(ack) => Seen::PubAck { packet_id: ack.packet_id, reason: ack.reason },
            Packet::SubAck(ack) => Seen::SubAck { packet_id: ack.packet_id, codes: ack.codes.into() },
            Packet::UnsubAck(ack) => Seen::UnsubAck { packet_id: ack.packet_id, codes: ack.codes.into() },
            Packet::PingResp => Seen::PingResp,
            Packet::Disconnect(d) => Seen::Disconnect { reason: d.reason },
            other => panic!("a broker does not send {other:?}"),
        });
        rest = &rest[consumed..];
    }
    out
}

fn got(topic: &str, payload: &[u8], qos: QoS, packet_id: Option<u16>) -> Seen {
    Seen::Publish { topic: topic.into(), payload: payload.into(), qos, retain: false, packet_id }
}

#[test]
fn a_qos_1_publish_reaches_both_versions_at_their_granted_qos() {
    let mut broker = Broker::new();
    let mut sub5 = broker.connect("sub5", V5);
    let mut sub3 = broker.connect("sub3", V311);
    let mut publisher = broker.connect("pub", V311);
    assert!(matches!(seen(&mut sub5)[..], [Seen::ConnAck { code: 0, .. }]));
    assert_eq!(seen(&mut sub3), [Seen::ConnAck { code: 0, properties: vec![] }]);
    seen(&mut publisher);

    broker.send(&mut sub5, &subscribe(1, "a/+", QoS::ExactlyOnce));
    broker.send(&mut sub3, &subscribe(2, "a/#", QoS::AtMostOnce));
    assert_eq!(seen(&mut sub5), [Seen::SubAck { packet_id: 1, codes: vec![1] }], "QoS 2 is granted as 1");
    assert_eq!(seen(&mut sub3), [Seen::SubAck { packet_id: 2, codes: vec![0] }]);

    let effects = broker.routed(&mut publisher, &publish("a/b", b"hi", QoS::AtLeastOnce, Some(9)));
    assert_eq!(seen(&mut publisher), [Seen::PubAck { packet_id: 9, reason: 0 }]);
    broker.deliver(&effects, &mut [&mut sub5, &mut sub3]);
    assert_eq!(seen(&mut sub5), [got("a/b", b"hi", QoS::AtLeastOnce, Some(1))]);
    assert_eq!(seen(&mut sub3), [got("a/b", b"hi", QoS::AtMostOnce, None)]);

    // A message from another face (published at QoS 0) stays QoS 0.
    let other = Delivery::new(Message {
        topic: "a/c".into(),
        payload: b"bin"[..].into(),
        from: "binary".into(),
        updated_time: 0,
        ip: None,
    });
    sub5.session.deliver(&other).unwrap();
    assert_eq!(seen(&mut sub5), [got("a/c", b"bin", QoS::AtMostOnce, None)]);
}

#[test]
fn a_publish_nobody_hears_is_acknowledged_as_such_in_mqtt_5() {
    let mut broker = Broker::new();
    let mut publisher = broker.connect("pub", V5);
    seen(&mut publisher);
    broker.send(&mut publisher, &publish("x", b"1", QoS::AtLeastOnce, Some(3)));
    assert_eq!(seen(&mut publisher), [Seen::PubAck { packet_id: 3, reason: 0x10 }]);
}

#[test]
fn client_ids_are_assigned_or_refused_as_each_version_says() {
    let mut broker = Broker::new();
    let mut v5 = broker.connect_with("a", connect("", V5));
    let [Seen::ConnAck { code: 0, properties }] = &seen(&mut v5)[..] else { panic!() };
    let assigned = v5.session.client_id().unwrap().clone();
    assert!(!assigned.is_empty());
    // Assigned Client Identifier (0x12) carries the id.
    let mut expected = vec![0x12, 0, assigned.len() as u8];
    expected.extend_from_slice(assigned.as_bytes());
    assert!(properties.windows(expected.len()).any(|w| w == expected), "{properties:02x?}");

    let mut v3 = broker.connect_with("b", Connect { clean_start: false, ..connect("", V311) });
    assert!(v3.session.is_closed());
    assert_eq!(seen(&mut v3), [Seen::ConnAck { code: 2, properties: vec![] }]);
}

#[test]
fn credentials_map_to_connack_codes() {
    let mut broker = Broker::new();
    for (version, caller, code) in [
        (V311, Err(AuthError::WrongCredentials), 4),
        (V5, Err(AuthError::WrongCredentials), 0x86),
        (V311, Err(AuthError::Busy), 3),
        (V5, Ok(Identity::Anonymous), 0x87),
    ] {
        let mut client =
            Client { session: ServerSession::new(broker.now, &SessionConfig::default()), id: None, name: "c", version };
        let with_user = Connect { username: Some("alice"), password: Some(b"pw"), ..connect("c", version) };
        let bytes = to_vec(&Packet::Connect(with_user), version);
        let Ok(Step::Request { request: Request::Connect { credentials: Some(credentials), .. }, .. }) =
            client.session.handle_input(broker.now, &bytes)
        else {
            panic!("no credentials");
        };
        assert_eq!((credentials.username, credentials.password), ("alice", "pw"));
        let effects = broker::connect(&mut broker.router, &mut client.session, "c", false, caller, ORIGIN);
        assert!(effects.connected.is_none() && client.session.is_closed());
        let [Seen::ConnAck { code: seen_code, .. }] = seen(&mut client)[..] else { panic!() };
        assert_eq!(seen_code, code, "{version:?}");
    }
    assert_eq!(broker.router.subscriber_count(), 0);
}

#[test]
fn silence_past_one_and_a_half_keep_alives_closes() {
    let mut broker = Broker::new();
    let mut client = broker.connect_with("k", Connect { keep_alive: 10, ..connect("k", V5) });
    seen(&mut client);
    assert_eq!(client.session.poll_timeout(), Some(broker.now + Duration::from_secs(15)));
    broker.now += Duration::from_secs(14);
    client.session.handle_timeout(broker.now).unwrap();
    broker.send(&mut client, &Packet::PingReq);
    assert_eq!(seen(&mut client), [Seen::PingResp]);
    broker.now += Duration::from_secs(15);
    let closed = client.session.handle_timeout(broker.now).unwrap_err();
    assert_eq!(closed.reason, Some(Cause::KeepAliveTimeout));
    assert_eq!(seen(&mut client), [Seen::Disconnect { reason: 0x8D }]);

    let idle = broker.connect_with("idle", Connect { keep_alive: 0, ..connect("idle", V311) });
    assert_eq!(idle.session.poll_timeout(), None, "keep alive 0 turns the timer off");
    let silent = ServerSession::new(broker.now, &SessionConfig::default());
    assert_eq!(silent.poll_timeout(), Some(broker.now + SessionConfig::default().connect_timeout));
}

#[test]
fn the_will_is_kept_for_an_abnormal_end_only() {
    let will = Will {
        topic: "status/w",
        payload: b"gone",
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::EMPTY,
    };
    let mut broker = Broker::new();
    let mut lost = broker.connect_with("w1", Connect { will: Some(will), ..connect("w1", V311) });
    lost.session.close(Cause::KeepAliveTimeout);
    let taken = lost.session.take_will().expect("a lost connection publishes its will");
    assert_eq!(
        (&*taken.topic, &*taken.payload, taken.qos, taken.retain),
        ("status/w", &b"gone"[..], QoS::AtLeastOnce, true)
    );
    assert!(lost.session.take_will().is_none(), "once");

    let mut clean = broker.connect_with("w2", Connect { will: Some(will), ..connect("w2", V5) });
    broker.send(&mut clean, &Packet::Disconnect(Disconnect { reason: 0, properties: Properties::EMPTY }));
    assert!(clean.session.is_closed() && clean.session.take_will().is_none());

    let mut with_will = broker.connect_with("w3", Connect { will: Some(will), ..connect("w3", V5) });
    broker.send(&mut with_will, &Packet::Disconnect(Disconnect { reason: 4, properties: Properties::EMPTY }));
    assert!(with_will.session.take_will().is_some(), "DISCONNECT 0x04 keeps it");

    // Published through the common rule: stored, from the client's id.
    let namespace = lost.session.namespace().unwrap();
    let effects = broker::publish_will(&mut broker.router, namespace, lost.session.client_id().cloned(), taken, ORIGIN);
    assert!(effects.store.is_some());
    let value = broker.router.value(namespace, "status/w").unwrap();
    assert_eq!((&*value.message().from, value.qos()), ("w1", QoS::AtLeastOnce));

    let refused = Will { topic: "$SYS/x", ..will };
    let mut client = broker.connect_with("w4", Connect { will: Some(refused), ..connect("w4", V5) });
    assert_eq!(
        seen(&mut client),
        [Seen::ConnAck { code: 0x90, properties: seen_reason("the will topic is not allowed") }]
    );
}

fn seen_reason(text: &str) -> Vec<u8> {
    let mut bytes = vec![0x1F, 0, text.len() as u8];
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

#[test]
fn topic_aliases_resolve_and_bad_ones_disconnect() {
    let mut broker = Broker::new();
    let mut sub = broker.connect("s", V311);
    broker.send(&mut sub, &subscribe(1, "#", QoS::AtMostOnce));
    seen(&mut sub);
    let mut publisher = broker.connect("p", V5);
    seen(&mut publisher);
    let mut aliased = PropertiesBuf::new();
    aliased.push(Property::TopicAlias(3));
    let with_alias = |topic, properties| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties,
            payload: b"v",
        })
    };
    let effects = broker.routed(&mut publisher, &with_alias("long/topic/name", aliased.as_properties()));
    broker.deliver(&effects, &mut [&mut sub]);
    let effects = broker.routed(&mut publisher, &with_alias("", aliased.as_properties()));
    broker.deliver(&effects, &mut [&mut sub]);
    let expected = got("long/topic/name", b"v", QoS::AtMostOnce, None);
    assert_eq!(seen(&mut sub), [expected.clone(), expected]);

    let mut unknown = PropertiesBuf::new();
    unknown.push(Property::TopicAlias(4));
    broker.send(&mut publisher, &with_alias("", unknown.as_properties()));
    assert!(publisher.session.is_closed());
    assert!(matches!(seen(&mut publisher)[..], [Seen::Disconnect { reason: 0x82 }]));

    let mut over = PropertiesBuf::new();
    over.push(Property::TopicAlias(65));
    let mut publisher = broker.connect("p2", V5);
    seen(&mut publisher);
    broker.send(&mut publisher, &with_alias("t", over.as_properties()));
    assert!(matches!(seen(&mut publisher)[..], [Seen::Disconnect { reason: 0x94 }]));
}

#[test]
fn qos_1_deliveries_wait_for_the_clients_receive_maximum() {
    let mut broker = Broker::new();
    let mut properties = PropertiesBuf::new();
    properties.push(Property::ReceiveMaximum(2));
    let mut sub = broker.connect_with("s", Connect { properties: properties.as_properties(), ..connect("s", V5) });
    broker.send(&mut sub, &subscribe(1, "q", QoS::AtLeastOnce));
    seen(&mut sub);
    let mut publisher = broker.connect("p", V311);
    for i in 0..3u8 {
        let effects = broker.routed(&mut publisher, &publish("q", &[i], QoS::AtLeastOnce, Some(u16::from(i) + 1)));
        broker.deliver(&effects, &mut [&mut sub]);
    }
    assert_eq!(seen(&mut sub), [got("q", &[0], QoS::AtLeastOnce, Some(1)), got("q", &[1], QoS::AtLeastOnce, Some(2))]);
    assert_eq!(sub.session.inflight(), 2);
    broker.send(&mut sub, &Packet::PubAck(Ack { packet_id: 2, reason: 0, properties: Properties::EMPTY }));
    assert_eq!(seen(&mut sub), [got("q", &[2], QoS::AtLeastOnce, Some(3))]);
    assert_eq!(sub.session.inflight(), 2);
}

#[test]
fn qos_2_is_refused_as_each_version_allows() {
    let mut broker = Broker::new();
    let mut v5 = broker.connect("a", V5);
    seen(&mut v5);
    let bytes = to_vec(&publish("t", b"x", QoS::ExactlyOnce, Some(1)), V5);
    assert!(v5.session.handle_input(broker.now, &bytes).is_err());
    assert!(matches!(seen(&mut v5)[..], [Seen::Disconnect { reason: 0x9B }]));

    let mut v3 = broker.connect("b", V311);
    seen(&mut v3);
    assert!(
        v3.session.handle_input(broker.now, &to_vec(&publish("t", b"x", QoS::ExactlyOnce, Some(1)), V311)).is_err()
    );
    assert_eq!(seen(&mut v3), [], "3.1.1 closes without an answer");
}

#[test]
fn broker_topics_and_shared_subscriptions_are_refused_without_a_disconnect() {
    let mut broker = Broker::new();
    let mut sub = broker.connect("s", V311);
    broker.send(&mut sub, &subscribe(1, "$SYS/#", QoS::AtMostOnce));
    seen(&mut sub);
    let mut v5 = broker.connect("p", V5);
    seen(&mut v5);
    let effects = broker.routed(&mut v5, &publish("$SYS/fake", b"x", QoS::AtLeastOnce, Some(4)));
    assert!(effects.delivery.is_none());
    assert_eq!(seen(&mut v5), [Seen::PubAck { packet_id: 4, reason: 0x87 }]);
    broker.send(&mut v5, &subscribe(5, "$share/g/t", QoS::AtMostOnce));
    broker.send(&mut v5, &subscribe(6, "a/b#", QoS::AtMostOnce));
    assert_eq!(
        seen(&mut v5),
        [Seen::SubAck { packet_id: 5, codes: vec![0x9E] }, Seen::SubAck { packet_id: 6, codes: vec![0x8F] }]
    );
    broker.send(&mut sub, &subscribe(2, "$share/g/t", QoS::AtMostOnce));
    assert_eq!(seen(&mut sub), [Seen::SubAck { packet_id: 2, codes: vec![0x80] }]);
    assert!(v5.session.is_connected() && sub.session.is_connected());
    // Empty levels and a leading slash are topics like any other.
    broker.send(&mut sub, &subscribe(3, "/a//b", QoS::AtMostOnce));
    assert_eq!(seen(&mut sub), [Seen::SubAck { packet_id: 3, codes: vec![0] }]);
}

#[test]
fn a_malformed_packet_closes_that_client_alone() {
    let mut broker = Broker::new();
    let mut sub = broker.connect("s", V311);
    broker.send(&mut sub, &subscribe(1, "t", QoS::AtMostOnce));
    seen(&mut sub);
    let mut bad = broker.connect("bad", V5);
    seen(&mut bad);
    // A PUBLISH whose topic length runs past its body.
    assert!(bad.session.handle_input(broker.now, &[0x30, 0x03, 0x00, 0x09, b'a']).is_err());
    assert!(matches!(seen(&mut bad)[..], [Seen::Disconnect { reason: 0x81 }]));
    crate::broker::release(&mut broker.router, bad.id);
    let mut publisher = broker.connect("p", V311);
    let effects = broker.routed(&mut publisher, &publish("t", b"ok", QoS::AtMostOnce, None));
    broker.deliver(&effects, &mut [&mut sub]);
    assert_eq!(seen(&mut sub), [got("t", b"ok", QoS::AtMostOnce, None)]);
}

#[test]
fn stored_values_come_after_suback_with_retain_set() {
    let mut broker = Broker::new();
    let mut publisher = broker.connect("p", V5);
    let retained = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "r/1",
        packet_id: Some(1),
        properties: Properties::EMPTY,
        payload: b"kept",
    });
    broker.send(&mut publisher, &retained);
    let mut sub = broker.connect("s", V311);
    seen(&mut sub);
    broker.send(&mut sub, &subscribe(7, "r/#", QoS::AtLeastOnce));
    assert_eq!(
        seen(&mut sub),
        [
            Seen::SubAck { packet_id: 7, codes: vec![1] },
            Seen::Publish {
                topic: "r/1".into(),
                payload: b"kept".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
                packet_id: Some(1)
            }
        ]
    );
    // Retain Handling 2: no stored values.
    let mut v5 = broker.connect("s5", V5);
    seen(&mut v5);
    let options = SubscriptionOptions { retain_handling: 2, ..SubscriptionOptions::qos(QoS::AtMostOnce) };
    let subscribe = Subscribe {
        packet_id: 8,
        properties: Properties::EMPTY,
        filters: vec![SubscribeFilter { filter: "r/#", options }],
    };
    broker.send(&mut v5, &Packet::Subscribe(subscribe));
    assert_eq!(seen(&mut v5), [Seen::SubAck { packet_id: 8, codes: vec![0] }]);
    // Unsubscribing says whether there was a subscription (MQTT 5).
    let unsubscribe = |filter| {
        Packet::Unsubscribe(crate::mqtt::Unsubscribe {
            packet_id: 9,
            properties: Properties::EMPTY,
            filters: vec![filter],
        })
    };
    broker.send(&mut v5, &unsubscribe("r/#"));
    broker.send(&mut v5, &unsubscribe("r/#"));
    assert_eq!(
        seen(&mut v5),
        [Seen::UnsubAck { packet_id: 9, codes: vec![0] }, Seen::UnsubAck { packet_id: 9, codes: vec![0x11] }]
    );
}

#[test]
fn a_delivery_over_the_clients_maximum_packet_size_is_dropped() {
    let mut broker = Broker::new();
    let mut properties = PropertiesBuf::new();
    properties.push(Property::MaximumPacketSize(64));
    let mut sub = broker.connect_with("s", Connect { properties: properties.as_properties(), ..connect("s", V5) });
    broker.send(&mut sub, &subscribe(1, "t", QoS::AtMostOnce));
    seen(&mut sub);
    let mut publisher = broker.connect("p", V311);
    for payload in [vec![1; 100], vec![2; 10]] {
        let effects = broker.routed(&mut publisher, &publish("t", &payload, QoS::AtMostOnce, None));
        broker.deliver(&effects, &mut [&mut sub]);
    }
    assert_eq!(seen(&mut sub), [got("t", &[2; 10], QoS::AtMostOnce, None)]);
}

#[test]
fn a_second_client_with_the_same_id_takes_over() {
    let mut broker = Broker::new();
    let mut first = broker.connect_with("one", connect("dev", V311));
    assert!(first.session.is_connected());
    let mut second = Client {
        session: ServerSession::new(broker.now, &SessionConfig::default()),
        id: None,
        name: "two",
        version: V5,
    };
    second.session.handle_input(broker.now, &to_vec(&Packet::Connect(connect("dev", V5)), V5)).unwrap();
    let effects =
        broker::connect(&mut broker.router, &mut second.session, "two", true, Ok(Identity::Anonymous), ORIGIN);
    assert_eq!(effects.taken_over, Some("one"), "the shell closes the old connection");
    assert_eq!(broker.router.subscriber_count(), 1);
    seen(&mut first);
    first.session.close(Cause::SessionTakenOver);
    assert_eq!(seen(&mut first), [], "3.1.1 has no DISCONNECT from the server");
}

#[test]
fn a_slow_consumer_is_closed_when_its_queue_is_full() {
    let mut broker = Broker::new();
    let config = SessionConfig { outbound_limit: 1000, ..SessionConfig::default() };
    let mut sub = Client { session: ServerSession::new(broker.now, &config), id: None, name: "s", version: V5 };
    sub.session.handle_input(broker.now, &to_vec(&Packet::Connect(connect("s", V5)), V5)).unwrap();
    let effects = broker::connect(&mut broker.router, &mut sub.session, "s", true, Ok(Identity::Anonymous), ORIGIN);
    sub.id = effects.connected;
    broker.send(&mut sub, &subscribe(1, "t", QoS::AtLeastOnce));
    let mut publisher = broker.connect("p", V311);
    let payload = [0u8; 100];
    let mut closed = None;
    for i in 0..100 {
        let effects = broker.routed(&mut publisher, &publish("t", &payload, QoS::AtLeastOnce, Some(i + 1)));
        if let Some(delivery) = &effects.delivery
            && let Err(error) = sub.session.deliver(delivery)
        {
            closed = Some(error);
            break;
        }
    }
    assert_eq!(closed.map(|c| c.reason), Some(Some(Cause::SlowConsumer)));
    assert!(publisher.session.is_connected());
}

#[test]
fn arc_topics_are_shared_between_publishes() {
    let mut broker = Broker::new();
    let mut publisher = broker.connect("p", V311);
    let bytes = to_vec(&publish("same", b"1", QoS::AtMostOnce, None), V311);
    let topic = |step| match step {
        Ok(Step::Request { request: Request::Publish { topic, .. }, .. }) => topic,
        other => panic!("{other:?}"),
    };
    let first: Arc<str> = topic(publisher.session.handle_input(broker.now, &bytes));
    let second: Arc<str> = topic(publisher.session.handle_input(broker.now, &bytes));
    assert!(Arc::ptr_eq(&first, &second));
}

#[test]
fn a_live_publish_under_a_shared_lock_reaches_the_same_receivers() {
    let mut broker = Broker::new();
    let mut sub = broker.connect("s", V311);
    broker.send(&mut sub, &subscribe(1, "l/+", QoS::AtLeastOnce));
    seen(&mut sub);
    let mut publisher = broker.connect("p", V5);
    seen(&mut publisher);
    let mut cache = crate::RouteCache::default();
    for (topic, receivers) in [("l/a", vec!["s"]), ("l/a", vec!["s"]), ("other", vec![])] {
        let bytes = to_vec(&publish(topic, b"x", QoS::AtLeastOnce, Some(5)), V5);
        let Ok(Step::Request { request: Request::Publish { topic, payload, qos, packet_id, properties, .. }, .. }) =
            publisher.session.handle_input(broker.now, &bytes)
        else {
            panic!("not a publish");
        };
        let effects = broker::publish_live(
            &broker.router,
            &mut cache,
            &mut publisher.session,
            publisher.id,
            topic,
            payload,
            qos,
            packet_id,
            properties,
            ORIGIN,
        );
        assert_eq!(effects.receivers.to_vec(), receivers);
        let reason = if receivers.is_empty() { 0x10 } else { 0 };
        assert_eq!(seen(&mut publisher), [Seen::PubAck { packet_id: 5, reason }]);
        if let Some(delivery) = &effects.delivery {
            assert_eq!((delivery.qos(), &*delivery.message().from), (QoS::AtLeastOnce, "p"));
        }
    }
}

#[test]
fn message_properties_travel_to_mqtt_5_subscribers_only() {
    let mut broker = Broker::new();
    let mut sub5 = broker.connect("s5", V5);
    let mut sub3 = broker.connect("s3", V311);
    for sub in [&mut sub5, &mut sub3] {
        broker.send(sub, &subscribe(1, "p", QoS::AtMostOnce));
        seen(sub);
    }
    let mut publisher = broker.connect("p", V5);
    seen(&mut publisher);
    let mut sent = PropertiesBuf::new();
    sent.push(Property::MessageExpiryInterval(60))
        .push(Property::TopicAlias(1))
        .push(Property::UserProperty("origin", "test"))
        .push(Property::ContentType("text/plain"));
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "p",
        packet_id: None,
        properties: sent.as_properties(),
        payload: b"x",
    });
    let effects = broker.routed(&mut publisher, &publish);
    broker.deliver(&effects, &mut [&mut sub5, &mut sub3]);
    let mut expected = PropertiesBuf::new();
    expected.push(Property::UserProperty("origin", "test")).push(Property::ContentType("text/plain"));
    let bytes = sub5.session.outbound().len();
    let mut slices: [&[u8]; 4] = [&[]; 4];
    let n = sub5.session.outbound().front_slices(&mut slices);
    let out = slices[..n].concat();
    assert_eq!(out.len(), bytes);
    let Ok(Decoded::Complete { packet: Packet::Publish(got), .. }) = Decoder::default().decode(V5, &out) else {
        panic!("{out:02x?}");
    };
    assert_eq!(got.properties.as_bytes(), expected.as_properties().as_bytes(), "no alias, no expiry");
    assert_eq!(seen(&mut sub3), [got_publish("p")], "3.1.1 has no properties");
}

fn got_publish(topic: &str) -> Seen {
    got(topic, b"x", QoS::AtMostOnce, None)
}
