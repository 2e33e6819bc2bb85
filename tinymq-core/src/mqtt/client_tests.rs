//! Scenario tests of [`MqttClient`] on a virtual clock: the server's side
//! is written with the codec, what the client sends is decoded with it.

use std::time::{Duration, Instant};

use super::*;
use crate::mqtt::to_vec;

/// The virtual clock's start: the one reading of the real clock.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn config() -> MqttClientConfig {
    let mut config = MqttClientConfig::new(vec!["mqtt://10.0.0.1:1883".into(), "10.0.0.2:1883".into()], "bridge-a");
    config.origin = "A".into();
    config
}

/// Everything the client queued, taken off its outbound queue.
fn sent(client: &mut MqttClient) -> Vec<u8> {
    let mut slices = [&[][..]; 16];
    let n = client.outbound().front_slices(&mut slices);
    let bytes: Vec<u8> = slices[..n].concat();
    client.outbound_mut().consume(bytes.len());
    bytes
}

/// The packets in `bytes`, decoded as a server does (`version` after the
/// CONNECT), each as its debug text for easy assertions.
fn packets(bytes: &[u8], version: ProtocolVersion) -> Vec<String> {
    let decoder = Decoder::default();
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let decoded = if out.is_empty() && bytes[at] >> 4 == 1 {
            // Decode the CONNECT without its bridge bit, which the codec
            // (a server's) does not take.
            let mut connect = bytes[at..].to_vec();
            let level_at = 1 + connect[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1 + 6;
            connect[level_at] &= 0x7f;
            let Decoded::Complete { packet, consumed } = decoder.decode_connect(&connect).unwrap() else { panic!() };
            (format!("{packet:?}"), consumed)
        } else {
            let Decoded::Complete { packet, consumed } = decoder.decode(version, &bytes[at..]).unwrap() else {
                panic!("partial packet in {bytes:?}")
            };
            (format!("{packet:?}"), consumed)
        };
        out.push(decoded.0);
        at += decoded.1;
    }
    out
}

fn connack(version: ProtocolVersion, code: u8) -> Vec<u8> {
    to_vec(&Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::EMPTY }), version)
}

fn suback(version: ProtocolVersion, packet_id: u16, codes: &[u8]) -> Vec<u8> {
    to_vec(&Packet::SubAck(SubAck { packet_id, properties: Properties::EMPTY, codes }), version)
}

/// A client subscribed to `filters` whose socket to the first server just
/// opened: CONNECT is queued.
fn dialed(config: MqttClientConfig, filters: &[&str], now: Instant) -> MqttClient {
    let mut client = MqttClient::new(config, now);
    for filter in filters {
        client.subscribe(filter).unwrap();
    }
    let _ = client.next_server(now);
    client.handle_connected(now);
    client
}

/// An MQTT 5 CONNACK accepting the connection, with `properties`.
fn connack_with(properties: &PropertiesBuf) -> Vec<u8> {
    let ack = ConnAck { session_present: false, code: 0, properties: properties.as_properties() };
    to_vec(&Packet::ConnAck(ack), ProtocolVersion::V5)
}

/// A client connected at MQTT 5 to the first server, subscribed to `filters`.
fn connected(now: Instant, filters: &[&str]) -> MqttClient {
    let mut client = dialed(config(), filters, now);
    assert_eq!(client.server(), Some("10.0.0.1:1883"));
    sent(&mut client);
    client.handle_input(now, &connack(ProtocolVersion::V5, 0)).unwrap();
    sent(&mut client);
    if !filters.is_empty() {
        client.handle_input(now, &suback(ProtocolVersion::V5, 1, &vec![0; filters.len()])).unwrap();
    }
    assert!(matches!(client.poll_event(), Some(MqttEvent::Connected { level: MqttLevel::V5, .. })));
    client
}

#[test]
fn the_handshake_is_connect_then_one_subscribe_with_no_local_and_retain_as_published() {
    let now = epoch();
    let mut client = MqttClient::new(config(), now);
    client.subscribe("site/a/#").unwrap();
    client.subscribe("site/b").unwrap();
    client.subscribe("site/b").unwrap();
    assert_eq!(client.filters(), ["site/a/#", "site/b"]);
    assert!(matches!(client.publish("x", b"1", false), Err(SendError::NotConnected)));
    assert_eq!(client.next_server(now), Some("10.0.0.1:1883"));
    client.handle_connected(now);
    let connect = packets(&sent(&mut client), ProtocolVersion::V5);
    assert_eq!(connect.len(), 1);
    assert!(
        connect[0].contains("version: V5, client_id: \"bridge-a\", clean_start: true, keep_alive: 30"),
        "{connect:?}"
    );

    client.handle_input(now, &connack(ProtocolVersion::V5, 0)).unwrap();
    assert!(client.poll_event().is_none(), "not connected before SUBACK");
    let subscribe = packets(&sent(&mut client), ProtocolVersion::V5);
    assert_eq!(subscribe.len(), 1);
    for expected in ["filter: \"site/a/#\"", "filter: \"site/b\"", "no_local: true", "retain_as_published: true"] {
        assert!(subscribe[0].contains(expected), "{expected} in {subscribe:?}");
    }
    // SUBACK in two pieces: a partial packet is kept.
    let ack = suback(ProtocolVersion::V5, 1, &[0, 0x87]);
    client.handle_input(now, &ack[..3]).unwrap();
    assert!(!client.is_connected());
    client.handle_input(now, &ack[3..]).unwrap();
    assert!(client.is_connected());
    assert_eq!(client.poll_event(), Some(MqttEvent::SubscriptionRefused { filter: "site/b".into(), code: 0x87 }));
    assert!(matches!(client.poll_event(), Some(MqttEvent::Connected { level: MqttLevel::V5, .. })));
}

#[test]
fn publishes_carry_the_origin_and_received_ones_say_theirs() {
    let now = epoch();
    let mut client = connected(now, &["site/#"]);
    client.publish("site/a", b"21.5", true).unwrap();
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert_eq!(out.len(), 1);
    assert!(out[0].contains("retain: true, topic: \"site/a\""), "{out:?}");
    let mut expected = PropertiesBuf::new();
    expected.push(Property::UserProperty(ORIGIN_PROPERTY, "A"));
    assert!(out[0].contains(&format!("{:?}", expected.as_properties())), "{out:?}");

    let mut properties = PropertiesBuf::new();
    properties.push(Property::UserProperty(ORIGIN_PROPERTY, "B"));
    let publish = |topic, retain, properties: Properties<'static>| Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain,
        topic,
        packet_id: None,
        properties,
        payload: b"v",
    };
    let properties: &'static PropertiesBuf = Box::leak(Box::new(properties));
    let mut input = to_vec(&Packet::Publish(publish("site/b", true, properties.as_properties())), ProtocolVersion::V5);
    input.extend(to_vec(&Packet::Publish(publish("site/c", false, Properties::EMPTY)), ProtocolVersion::V5));
    client.handle_input(now, &input).unwrap();
    let message = |topic: &str, retain, origin: Option<&str>| {
        MqttEvent::Message(MqttMessage {
            topic: topic.into(),
            payload: b"v".to_vec(),
            retain,
            origin: origin.map(str::to_owned),
            ack: None,
        })
    };
    assert_eq!(client.poll_event(), Some(message("site/b", true, Some("B"))));
    assert_eq!(client.poll_event(), Some(message("site/c", false, None)));
    assert_eq!(client.stats().messages_in, 2);
    assert_eq!(client.stats().messages_out, 1);
}

#[test]
fn a_server_refusing_mqtt_5_is_tried_with_the_bridge_bit_then_plain_3_1_1() {
    let now = epoch();
    let mut client = dialed(config(), &["a/#"], now);
    sent(&mut client);
    // A 3.1.1 server's CONNACK "unacceptable protocol version".
    let error = client.handle_input(now, &connack(ProtocolVersion::V311, 1)).unwrap_err();
    assert_eq!(error, ConnectionError::Refused { code: 1, fell_back: true });
    client.handle_disconnected(now);
    assert_eq!(client.level(), MqttLevel::V311Bridge);

    // The next attempt is at once, to the same server, at 0x84.
    assert_eq!(client.next_server(now), Some("10.0.0.1:1883"));
    client.handle_connected(now);
    let connect = sent(&mut client);
    assert_eq!(&connect[2..9], b"\x00\x04MQTT\x84", "protocol level with the bridge bit");
    assert!(packets(&connect, ProtocolVersion::V311)[0].contains("version: V311"));
    let error = client.handle_input(now, &connack(ProtocolVersion::V311, 1)).unwrap_err();
    assert_eq!(error, ConnectionError::Refused { code: 1, fell_back: true });
    client.handle_disconnected(now);
    assert_eq!(client.level(), MqttLevel::V311);
    assert!(!client.level().no_local());

    let _ = client.next_server(now);
    client.handle_connected(now);
    assert_eq!(&sent(&mut client)[2..9], b"\x00\x04MQTT\x04");
    client.handle_input(now, &connack(ProtocolVersion::V311, 0)).unwrap();
    let subscribe = packets(&sent(&mut client), ProtocolVersion::V311);
    assert!(subscribe[0].contains("no_local: false"), "{subscribe:?}");
    client.handle_input(now, &suback(ProtocolVersion::V311, 1, &[0])).unwrap();
    assert!(matches!(client.poll_event(), Some(MqttEvent::Connected { level: MqttLevel::V311, .. })));

    // 3.1.1 publishes have no properties.
    client.publish("a/b", b"", true).unwrap();
    let out = sent(&mut client);
    assert_eq!(out, [0x31, 5, 0, 3, b'a', b'/', b'b'], "an empty retained publish: a delete");
}

#[test]
fn bad_credentials_are_not_a_reason_to_change_level() {
    let now = epoch();
    let mut config = config();
    config.username = Some("u".into());
    config.password = Some("secret".into());
    assert!(!format!("{config:?}").contains("secret"));
    let mut client = dialed(config, &[], now);
    let connect = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(connect[0].contains("username: Some(\"u\"), password: Some([115, 101, 99"), "{connect:?}");
    let error = client.handle_input(now, &connack(ProtocolVersion::V5, 0x86)).unwrap_err();
    assert_eq!(error, ConnectionError::Refused { code: 0x86, fell_back: false });
    assert_eq!(client.level(), MqttLevel::V5);
}

#[test]
fn keep_alive_sends_pingreq_and_a_missing_pingresp_fails_the_connection() {
    let start = epoch();
    let mut client = connected(start, &[]);
    let ping_at = client.poll_timeout().unwrap();
    assert_eq!(ping_at, start + Duration::from_secs(30));
    client.handle_timeout(ping_at).unwrap();
    assert_eq!(sent(&mut client), [0xc0, 0]);
    client.handle_input(ping_at, &[0xd0, 0]).unwrap();
    let next = client.poll_timeout().unwrap();
    client.handle_timeout(next).unwrap();
    assert_eq!(sent(&mut client), [0xc0, 0]);
    // No answer this time.
    let error = client.handle_timeout(client.poll_timeout().unwrap()).unwrap_err();
    assert!(matches!(error, ConnectionError::Stale(_)));
    client.handle_disconnected(next);
    assert!(matches!(client.poll_event(), Some(MqttEvent::Disconnected { .. })));
}

#[test]
fn the_servers_keep_alive_and_maximum_packet_size_are_obeyed() {
    let now = epoch();
    let mut client = dialed(config(), &[], now);
    sent(&mut client);
    let mut properties = PropertiesBuf::new();
    properties.push(Property::ServerKeepAlive(5)).push(Property::MaximumPacketSize(64));
    client.handle_input(now, &connack_with(&properties)).unwrap();
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(5)));
    assert!(matches!(client.publish("t", &[0; 100], false), Err(SendError::PacketTooLarge { max: 64, .. })));
    client.publish("t", &[0; 10], false).unwrap();
}

#[test]
fn no_connack_in_time_fails_and_reconnects_back_off() {
    let start = epoch();
    let mut client = dialed(config(), &[], start);
    let deadline = client.poll_timeout().unwrap();
    assert_eq!(deadline, start + Duration::from_secs(5));
    assert!(client.handle_timeout(deadline - Duration::from_millis(1)).is_ok());
    assert!(matches!(client.handle_timeout(deadline), Err(ConnectionError::HandshakeTimeout(_))));
    client.handle_disconnected(deadline);
    assert!(client.poll_event().is_none(), "never connected: no Disconnected event");
    assert_eq!(client.poll_timeout(), Some(deadline + Duration::from_millis(100)));
    assert_eq!(client.next_server(deadline), None, "not yet");
    let _ = client.next_server(deadline + Duration::from_millis(100)).unwrap();
    client.handle_disconnected(deadline);
    assert_eq!(client.poll_timeout(), Some(deadline + Duration::from_millis(200)));
}

#[test]
fn garbage_and_unexpected_packets_end_the_connection_without_panicking() {
    let now = epoch();
    let mut client = dialed(config(), &[], now);
    assert!(matches!(client.handle_input(now, &[0xd0, 0]), Err(ConnectionError::Unexpected("PINGRESP"))));
    client.handle_disconnected(now);

    let mut client = connected(now, &[]);
    assert!(matches!(client.handle_input(now, &[0xff, 0xff, 0xff, 0xff, 0xff]), Err(ConnectionError::Decode(_))));
    let mut client = connected(now, &[]);
    let too_big = [0x30, 0xff, 0xff, 0xff, 0x7f];
    assert!(matches!(client.handle_input(now, &too_big), Err(ConnectionError::Decode(_))));
    let mut client = connected(now, &[]);
    assert_eq!(client.handle_input(now, &[0xe0, 0x01, 0x8b]), Err(ConnectionError::Disconnected(0x8b)));
    // Input after a failure is ignored until the reconnect.
    assert_eq!(client.handle_input(now, &[0xd0, 0]), Ok(()));
}

#[test]
fn a_pending_event_queue_is_bounded() {
    let now = epoch();
    let mut config = config();
    config.max_pending_events = 2;
    let mut client = dialed(config, &["#"], now);
    client.handle_input(now, &connack(ProtocolVersion::V5, 0)).unwrap();
    client.handle_input(now, &suback(ProtocolVersion::V5, 1, &[0])).unwrap();
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: None,
        properties: Properties::EMPTY,
        payload: b"x",
    };
    let one = to_vec(&Packet::Publish(publish), ProtocolVersion::V5);
    for _ in 0..4 {
        client.handle_input(now, &one).unwrap();
    }
    assert!(matches!(client.poll_event(), Some(MqttEvent::SlowConsumer { dropped: 3 })));
    assert!(matches!(client.poll_event(), Some(MqttEvent::Connected { .. })));
    assert!(matches!(client.poll_event(), Some(MqttEvent::Message(_))));
    assert!(client.poll_event().is_none());
}

#[test]
fn a_server_without_retained_messages_gets_every_publish_live() {
    let now = epoch();
    let mut client = dialed(config(), &[], now);
    sent(&mut client);
    let mut properties = PropertiesBuf::new();
    properties.push(Property::RetainAvailable(0));
    client.handle_input(now, &connack_with(&properties)).unwrap();
    client.publish("t", b"v", true).unwrap();
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(out[0].contains("retain: false"), "{out:?}");
}

// QoS 1: the persistent session, the in-flight window, resends with DUP
// after a reconnect, and PUBACKs the owner gives for what it received.

fn qos1_config(max_inflight: u16) -> MqttClientConfig {
    let mut config = config();
    config.qos = QoS::AtLeastOnce;
    config.max_inflight = max_inflight;
    config
}

fn puback(packet_id: u16) -> Vec<u8> {
    to_vec(&Packet::PubAck(Ack { packet_id, reason: 0, properties: Properties::EMPTY }), ProtocolVersion::V5)
}

/// Dials, sends CONNECT and answers it with `connack`; returns what the
/// client sent after CONNACK.
fn handshake(client: &mut MqttClient, now: Instant, connack: &[u8]) -> Vec<String> {
    assert!(client.next_server(now).is_some());
    client.handle_connected(now);
    sent(client);
    client.handle_input(now, connack).unwrap();
    packets(&sent(client), ProtocolVersion::V5)
}

#[test]
fn at_qos_1_the_session_is_persistent_and_subscriptions_are_qos_1() {
    let now = epoch();
    let mut client = dialed(qos1_config(8), &["site/#"], now);
    let connect = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(connect[0].contains("clean_start: false"), "{connect:?}");
    let mut expected = PropertiesBuf::new();
    expected.push(Property::MaximumPacketSize((1 << 20) + 4096));
    expected.push(Property::SessionExpiryInterval(86_400));
    assert!(connect[0].contains(&format!("{:?}", expected.as_properties())), "{connect:?}");
    client.handle_input(now, &connack(ProtocolVersion::V5, 0)).unwrap();
    let subscribe = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(subscribe[0].contains("qos: AtLeastOnce"), "{subscribe:?}");
}

#[test]
fn publishes_with_the_owners_ids_are_not_kept_and_their_pubacks_are_reported() {
    let now = epoch();
    let mut client = MqttClient::new(qos1_config(2), now);
    assert_eq!(client.publish_with_id("t/0", b"zero", false, 9, false), Err(SendError::NotConnected));
    handshake(&mut client, now, &connack(ProtocolVersion::V5, 0));
    while client.poll_event().is_some() {}
    assert_eq!(client.send_window(), 2);
    // The owner keeps the window: the client takes more than its own.
    client.publish_with_id("t/1", b"one", false, 7, false).unwrap();
    client.publish_with_id("t/2", b"two", true, 8, true).unwrap();
    client.publish_with_id("t/3", b"three", false, 9, false).unwrap();
    assert_eq!(client.in_flight(), 0, "no copy kept");
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(
        out[0].contains("dup: false, qos: AtLeastOnce, retain: false, topic: \"t/1\", packet_id: Some(7)"),
        "{out:?}"
    );
    assert!(
        out[1].contains("dup: true, qos: AtLeastOnce, retain: true, topic: \"t/2\", packet_id: Some(8)"),
        "{out:?}"
    );
    client.handle_input(now, &[puback(8), puback(7)].concat()).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert_eq!(events, [MqttEvent::PubAck { packet_id: 8 }, MqttEvent::PubAck { packet_id: 7 }]);
    // Nothing is sent again on the next connection: that is the owner's.
    client.handle_disconnected(now);
    let now = now + Duration::from_secs(10);
    let after = handshake(&mut client, now, &connack(ProtocolVersion::V5, 0));
    assert!(after.is_empty(), "{after:?}");
}

#[test]
fn the_window_holds_qos_1_publishes_until_puback_in_any_order() {
    let now = epoch();
    let mut client = MqttClient::new(qos1_config(2), now);
    let after = handshake(&mut client, now, &connack(ProtocolVersion::V5, 0));
    assert!(after.is_empty(), "nothing to subscribe, nothing in flight: {after:?}");
    assert!(client.is_connected());
    client.publish("t/1", b"one", false).unwrap();
    client.publish("t/2", b"two", true).unwrap();
    assert!(matches!(client.publish("t/3", b"three", false), Err(SendError::WindowFull { limit: 2 })));
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert_eq!(out.len(), 2, "the refused one was not queued: {out:?}");
    assert!(
        out[0].contains("dup: false, qos: AtLeastOnce, retain: false, topic: \"t/1\", packet_id: Some(1)"),
        "{out:?}"
    );
    assert!(out[1].contains("topic: \"t/2\", packet_id: Some(2)"), "{out:?}");
    assert_eq!(client.in_flight(), 2);

    // The second acknowledged first: room for one more.
    client.handle_input(now, &puback(2)).unwrap();
    assert_eq!(client.in_flight(), 1);
    client.publish("t/3", b"three", false).unwrap();
    assert!(matches!(client.publish("t/4", b"four", false), Err(SendError::WindowFull { .. })));
    // An id not in flight changes nothing.
    client.handle_input(now, &puback(2)).unwrap();
    client.handle_input(now, &puback(77)).unwrap();
    assert_eq!(client.in_flight(), 2);
    client.handle_input(now, &[puback(1), puback(3)].concat()).unwrap();
    assert_eq!(client.in_flight(), 0);
    assert_eq!(client.stats().acked_out, 3);
}

#[test]
fn what_was_in_flight_is_sent_again_with_dup_on_the_next_connection_before_subscribe() {
    let now = epoch();
    let mut client = MqttClient::new(qos1_config(16), now);
    client.subscribe("in/#").unwrap();
    handshake(&mut client, now, &connack(ProtocolVersion::V5, 0));
    client.handle_input(now, &suback(ProtocolVersion::V5, 1, &[1])).unwrap();
    for n in 0..3 {
        client.publish("out/n", format!("{n}").as_bytes(), false).unwrap();
    }
    sent(&mut client);
    client.handle_input(now, &puback(2)).unwrap();

    // SUBSCRIBE took id 1, the publishes 2 to 4. The connection is lost:
    // 3 and 4 are not acknowledged.
    client.handle_disconnected(now);
    assert!(matches!(client.publish("out/n", b"x", false), Err(SendError::NotConnected)));
    let later = now + Duration::from_secs(10);
    let after = handshake(&mut client, later, &connack(ProtocolVersion::V5, 0));
    assert_eq!(after.len(), 3, "two resends, then SUBSCRIBE: {after:?}");
    assert!(
        after[0].contains("dup: true, qos: AtLeastOnce, retain: false, topic: \"out/n\", packet_id: Some(3)"),
        "{after:?}"
    );
    assert!(after[0].contains("payload: [49]"), "{after:?}");
    assert!(after[1].contains("dup: true") && after[1].contains("packet_id: Some(4)"), "{after:?}");
    assert!(after[2].starts_with("Subscribe"), "{after:?}");
    assert_eq!(client.stats().resent, 2);
    // New publishes take ids the window does not hold.
    client.handle_input(later, &suback(ProtocolVersion::V5, 5, &[1])).unwrap();
    client.publish("out/n", b"new", false).unwrap();
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(out[0].contains("dup: false") && out[0].contains("packet_id: Some(6)"), "{out:?}");
    client.handle_input(later, &[puback(3), puback(4), puback(6)].concat()).unwrap();
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn the_servers_receive_maximum_narrows_the_window_and_ids_in_flight_are_skipped() {
    let now = epoch();
    let mut client = MqttClient::new(qos1_config(64), now);
    let mut properties = PropertiesBuf::new();
    properties.push(Property::ReceiveMaximum(1));
    let ack = ConnAck { session_present: true, code: 0, properties: properties.as_properties() };
    handshake(&mut client, now, &to_vec(&Packet::ConnAck(ack), ProtocolVersion::V5));
    client.next_packet_id = u16::MAX - 1;
    client.publish("t", b"a", false).unwrap();
    assert!(matches!(client.publish("t", b"b", false), Err(SendError::WindowFull { limit: 1 })));
    client.handle_input(now, &puback(u16::MAX)).unwrap();
    // Past 65535 the ids wrap to 1, never 0.
    client.publish("t", b"b", false).unwrap();
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(out[1].contains("packet_id: Some(1)"), "{out:?}");

    // An id still in flight is not handed out again.
    let mut client = MqttClient::new(qos1_config(4), now);
    handshake(&mut client, now, &connack(ProtocolVersion::V5, 0));
    client.publish("t", b"a", false).unwrap();
    client.next_packet_id = 0;
    client.publish("t", b"b", false).unwrap();
    let out = packets(&sent(&mut client), ProtocolVersion::V5);
    assert!(out[1].contains("packet_id: Some(2)"), "{out:?}");
}

#[test]
fn a_qos_1_message_received_is_acknowledged_only_when_the_owner_says_and_on_its_connection() {
    let now = epoch();
    let mut client = MqttClient::new(qos1_config(8), now);
    client.subscribe("in/#").unwrap();
    handshake(&mut client, now, &connack(ProtocolVersion::V5, 0));
    // A queued message may come before SUBACK on a resumed session.
    let publish = |packet_id| Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "in/a",
        packet_id: Some(packet_id),
        properties: Properties::EMPTY,
        payload: b"m",
    };
    client.handle_input(now, &to_vec(&Packet::Publish(publish(7)), ProtocolVersion::V5)).unwrap();
    client.handle_input(now, &suback(ProtocolVersion::V5, 1, &[1])).unwrap();
    assert!(sent(&mut client).is_empty(), "no PUBACK before the owner's ack");
    let Some(MqttEvent::Message(message)) = client.poll_event() else { panic!("a message first") };
    let ticket = message.ack.expect("a QoS 1 message carries its ticket");
    assert_eq!(ticket.packet_id, 7);
    client.ack(ticket);
    assert_eq!(
        packets(&sent(&mut client), ProtocolVersion::V5),
        [format!("{:?}", Packet::PubAck(Ack { packet_id: 7, reason: 0, properties: Properties::EMPTY }))]
    );

    // A ticket from a connection that ended acknowledges nothing.
    client.handle_input(now, &to_vec(&Packet::Publish(publish(8)), ProtocolVersion::V5)).unwrap();
    let stale = loop {
        match client.poll_event() {
            Some(MqttEvent::Message(message)) => break message.ack.unwrap(),
            Some(_) => continue,
            None => panic!("the second message"),
        }
    };
    client.handle_disconnected(now);
    handshake(&mut client, now + Duration::from_secs(10), &connack(ProtocolVersion::V5, 0));
    client.ack(stale);
    assert!(sent(&mut client).is_empty(), "a stale ticket sent a PUBACK");
}
