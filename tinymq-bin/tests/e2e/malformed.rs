//! Malformed input through the real binary: each case of PROTOCOL.md is
//! answered with its Disconnect reason and a closed connection, while a
//! bystander on the same broker keeps being served.
//!
//! Over-limit cases send only the bytes up to the offending length: the
//! broker must answer without waiting for a field it will never accept.

use crate::support::{BrokerProcess, QUIET, RawClient};
use tinymq_core::{Frame, FrameType, ReasonCode};

/// A broker with a subscribed bystander.
struct Scene {
    broker: BrokerProcess,
    bystander: RawClient,
    served: u32,
}

impl Scene {
    fn new() -> Self {
        let broker = BrokerProcess::start(&[]);
        let mut bystander = broker.connect("bystander");
        bystander.subscribe("bystander");
        Scene { broker, bystander, served: 0 }
    }

    /// Sends `bytes` on a fresh connection (after a Connect/ConnAck when
    /// `connected`) and expects Disconnect `reason` then a close; then
    /// checks the bystander is still served.
    fn refused(&mut self, case: &str, connected: bool, bytes: &[u8], reason: ReasonCode) {
        eprintln!("case: {case}");
        let mut bad = if connected { self.broker.connect("") } else { self.broker.open() };
        bad.send_bytes(bytes);
        let text = bad.expect_disconnect(reason);
        eprintln!("  refused: {text:?}");
        self.assert_still_served();
    }

    /// A new client publishes to the bystander, which must get exactly that
    /// message next.
    fn assert_still_served(&mut self) {
        self.served += 1;
        let tag = format!("still served {}", self.served);
        let mut publisher = self.broker.connect("");
        publisher.publish("bystander", tag.as_bytes());
        let got = self.bystander.recv_publish();
        assert_eq!(String::from_utf8_lossy(&got.payload), tag);
    }
}

/// A frame from raw parts, for what `Frame::to_vec` will not encode.
fn raw_frame(type_byte: u8, topic: &[u8], payload: &[u8], client_id: &[u8]) -> Vec<u8> {
    let mut out = vec![type_byte];
    out.extend((topic.len() as u16).to_be_bytes());
    out.extend(topic);
    out.extend((payload.len() as u32).to_be_bytes());
    out.extend(payload);
    out.extend((client_id.len() as u16).to_be_bytes());
    out.extend(client_id);
    out
}

#[test]
fn unknown_frame_types_are_protocol_errors() {
    let mut scene = Scene::new();
    for type_byte in [10u8, 31, 17] {
        let frame = raw_frame(type_byte, b"", b"", b"");
        scene.refused(&format!("type {type_byte}"), true, &frame, ReasonCode::ProtocolError);
    }
    // Before Connect as well.
    scene.refused("type 10 first", false, &raw_frame(10, b"", b"", b""), ReasonCode::ProtocolError);
}

#[test]
fn flag_bits_other_than_retain_on_publish_are_protocol_errors() {
    let mut scene = Scene::new();
    for (case, type_byte, topic, payload) in [
        ("0x40 on Publish", 0x42u8, &b"bystander"[..], &b"x"[..]),
        ("0x20 on Publish", 0x22, b"bystander", b"x"),
        ("0xc0 on Publish", 0xc2, b"bystander", b"x"),
        ("0x80 on Subscribe", 0x83, b"a", b""),
        ("0x80 on Ping", 0x87, b"", b""),
    ] {
        scene.refused(case, true, &raw_frame(type_byte, topic, payload, b""), ReasonCode::ProtocolError);
    }
    // None of the flagged publishes reached the bystander: its next
    // message is the liveness check's (asserted inside).
    scene.assert_still_served();
    scene.bystander.expect_silence(QUIET);
}

#[test]
fn a_frame_before_connect_is_a_protocol_error_and_gets_no_connack() {
    let mut scene = Scene::new();
    // expect_disconnect lets only deliveries precede the Disconnect: a
    // ConnAck would fail it.
    let publish = Frame::publish("bystander", b"sneaky", "", false).to_vec();
    scene.refused("Publish first", false, &publish, ReasonCode::ProtocolError);
    let subscribe = Frame::with_topic(FrameType::Subscribe, "#").to_vec();
    scene.refused("Subscribe first", false, &subscribe, ReasonCode::ProtocolError);
    scene.refused("Ping first", false, &Frame::empty(FrameType::Ping).to_vec(), ReasonCode::ProtocolError);
}

#[test]
fn a_second_connect_is_a_protocol_error() {
    let mut scene = Scene::new();
    scene.refused("second Connect", true, &Frame::connect("", b"").to_vec(), ReasonCode::ProtocolError);
    scene.refused("second Connect, same id", true, &Frame::connect("x", b"").to_vec(), ReasonCode::ProtocolError);
}

#[test]
fn frames_only_the_broker_sends_are_protocol_errors_from_a_client() {
    let mut scene = Scene::new();
    for kind in [FrameType::ConnAck, FrameType::SubAck, FrameType::UnsubAck, FrameType::Pong] {
        let frame = raw_frame(kind as u8, b"", b"", b"");
        scene.refused(&format!("{kind:?} from a client"), true, &frame, ReasonCode::ProtocolError);
    }
}

#[test]
fn fields_a_frame_type_does_not_use_must_be_empty() {
    let mut scene = Scene::new();
    scene.refused("Connect with a topic", false, &raw_frame(0, b"t", b"", b""), ReasonCode::ProtocolError);
    scene.refused("Ping with a payload", true, &raw_frame(7, b"", b"p", b""), ReasonCode::ProtocolError);
    scene.refused("Subscribe with a payload", true, &raw_frame(3, b"a", b"p", b""), ReasonCode::ProtocolError);
}

#[test]
fn a_wildcard_or_empty_topic_in_a_publish_is_an_invalid_topic() {
    let mut scene = Scene::new();
    for topic in ["a/#", "#", "a/+", "+", "bystander/+", "a+b", "", "a\0b"] {
        let frame = Frame::publish(topic, b"x", "", false).to_vec();
        scene.refused(&format!("publish to {topic:?}"), true, &frame, ReasonCode::InvalidTopic);
    }
}

#[test]
fn invalid_utf8_is_a_protocol_error() {
    let mut scene = Scene::new();
    scene.refused("topic", true, &raw_frame(2, &[0xc3, 0x28], b"x", b""), ReasonCode::ProtocolError);
    scene.refused("filter", true, &raw_frame(3, &[b'a', 0xff], b"", b""), ReasonCode::ProtocolError);
    scene.refused("client id", false, &raw_frame(0, b"", b"", &[0xe2, 0x82]), ReasonCode::ProtocolError);
}

#[test]
fn declared_payload_lengths_over_the_limit_are_refused_before_the_payload() {
    let mut scene = Scene::new();
    for len in [0xffff_ffffu32, 0x8000_0000, (1 << 20) + 1] {
        let mut header = vec![2, 0, 9];
        header.extend(b"bystander");
        header.extend(len.to_be_bytes());
        scene.refused(&format!("payload_len {len:#x}"), true, &header, ReasonCode::FrameTooLarge);
    }
    // A Connect whose credentials claim 4 GiB.
    scene.refused(
        "Connect payload_len 0xffffffff",
        false,
        &[0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ReasonCode::FrameTooLarge,
    );
}

#[test]
fn declared_topic_lengths_over_4096_are_refused_before_the_topic() {
    let mut scene = Scene::new();
    for len in [4097u16, 0xffff] {
        let [hi, lo] = len.to_be_bytes();
        scene.refused(&format!("publish topic_len {len}"), true, &[2, hi, lo], ReasonCode::FrameTooLarge);
        scene.refused(&format!("subscribe topic_len {len}"), true, &[3, hi, lo], ReasonCode::FrameTooLarge);
    }
}

#[test]
fn topics_of_exactly_4096_bytes_are_accepted() {
    let mut scene = Scene::new();
    let long = format!("bystander/{}", "x".repeat(4096 - "bystander/".len()));
    let mut sub = scene.broker.connect("long");
    sub.subscribe(&long);
    let mut publisher = scene.broker.connect("pub");
    publisher.publish(&long, b"long");
    assert_eq!(sub.recv_publish().topic, long);
    scene.assert_still_served();
}

#[test]
fn client_ids_over_256_bytes_are_refused_before_the_id() {
    let mut scene = Scene::new();
    for len in [257u16, 0xffff] {
        let [hi, lo] = len.to_be_bytes();
        let connect = [0, 0, 0, 0, 0, 0, 0, hi, lo];
        scene.refused(&format!("client_id_len {len}"), false, &connect, ReasonCode::FrameTooLarge);
    }
    // 256 bytes is fine.
    let id = "i".repeat(256);
    let mut client = scene.broker.connect(&id);
    client.ping();
}

#[test]
fn a_truncated_frame_then_a_close_harms_no_one() {
    let mut scene = Scene::new();
    for cut in [1, 3, 8, 20] {
        let mut truncated = scene.broker.connect("");
        let frame = Frame::publish("bystander", b"never whole", "", false).to_vec();
        truncated.send_bytes(&frame[..cut]);
        drop(truncated);
        // The half-sent message never reaches the bystander: the next thing
        // it gets is the liveness check's message.
        scene.assert_still_served();
    }
    // The same with a write-side close, the connection left half open.
    let mut half = scene.broker.connect("");
    half.send_bytes(&Frame::publish("bystander", b"never whole", "", false).to_vec()[..12]);
    half.shutdown_write();
    half.expect_closed();
    scene.assert_still_served();
}

#[test]
fn an_invalid_filter_is_refused_in_its_suback_and_the_connection_stays() {
    let mut scene = Scene::new();
    let mut client = scene.broker.connect("filters");
    for filter in ["a/#/b", "a+", "a/b#", "#/", "+a", ""] {
        client.send(&Frame::with_topic(FrameType::Subscribe, filter));
        let ack = client.recv();
        assert_eq!((ack.type_byte, ack.topic.as_str()), (FrameType::SubAck as u8, filter), "{ack:?}");
        let (code, text) = ack.reason().expect("a refusal: reason byte and UTF-8 text");
        assert_eq!(code, ReasonCode::InvalidTopic as u8, "{filter:?}: {text}");
        assert!(!text.is_empty(), "{filter:?}: the refusal says why");
    }
    client.send(&Frame::with_topic(FrameType::Unsubscribe, "a/#/b"));
    let ack = client.recv();
    assert_eq!((ack.kind, ack.topic.as_str()), (FrameType::UnsubAck, "a/#/b"));
    assert_eq!(ack.reason().map(|r| r.0), Some(ReasonCode::InvalidTopic as u8));

    // Still connected and subscribing.
    client.subscribe("a/#");
    let mut publisher = scene.broker.connect("pub");
    publisher.publish("a/b", b"works");
    assert_eq!(client.recv_publish().payload, b"works");
    scene.assert_still_served();
}

#[test]
fn topics_of_128_levels_are_accepted() {
    let mut scene = Scene::new();
    let deep = vec!["l"; 128].join("/");
    let mut sub = scene.broker.connect("deep");
    sub.subscribe(&deep);
    let mut publisher = scene.broker.connect("pub");
    publisher.publish(&deep, b"deep");
    assert_eq!(sub.recv_publish().topic, deep);
    scene.assert_still_served();
}

#[test]
fn topics_over_128_levels_are_frame_too_large() {
    let mut scene = Scene::new();
    let too_deep = vec!["l"; 129].join("/");
    let frame = Frame::publish(&too_deep, b"x", "", false).to_vec();
    scene.refused("publish with 129 levels", true, &frame, ReasonCode::FrameTooLarge);
}
