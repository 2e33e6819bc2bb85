//! The codec's tests: hand-written wire vectors, limits, splits.

use super::*;
use FrameType::*;

/// One wire vector per frame type, written out by hand rather than taken
/// from the encoder, so that encoder and decoder are both checked against
/// the specification. `docs/PROTOCOL.md` lists the same hex.
const VECTORS: &[(&str, &str, Frame<'static>)] = &[
    ("connect with client id", "00 0000 00000000 0008 73656e736f722d31", Frame::connect("sensor-1", b"")),
    ("connect with credentials", "00 0000 00000009 7573657200 70617373 0000", Frame::connect("", b"user\0pass")),
    (
        "connack with assigned id",
        "01 0000 00000000 0008 74696e796d712d31",
        Frame { client_id: "tinymq-1", ..Frame::empty(ConnAck) },
    ),
    ("publish", "02 0003 612f62 00000002 6869 0008 73656e736f722d31", Frame::publish("a/b", b"hi", "sensor-1", false)),
    ("publish retain", "82 0003 612f62 00000002 6f6e 0000", Frame::publish("a/b", b"on", "", true)),
    ("subscribe wildcard", "03 0009 73656e736f72732f23 00000000 0000", Frame::with_topic(Subscribe, "sensors/#")),
    ("suback accepted", "04 0009 73656e736f72732f23 00000000 0000", Frame::with_topic(SubAck, "sensors/#")),
    (
        "suback refused",
        "04 0005 612f232f62 00000018 08 696e76616c696420746f706963206f722066696c746572 0000",
        Frame { payload: b"\x08invalid topic or filter", ..Frame::with_topic(SubAck, "a/#/b") },
    ),
    ("unsubscribe", "05 0009 73656e736f72732f23 00000000 0000", Frame::with_topic(Unsubscribe, "sensors/#")),
    ("unsuback", "06 0009 73656e736f72732f23 00000000 0000", Frame::with_topic(UnsubAck, "sensors/#")),
    ("ping", "07 0000 00000000 0000", Frame::empty(Ping)),
    ("pong", "08 0000 00000000 0000", Frame::empty(Pong)),
    ("client disconnect", "09 0000 00000000 0000", Frame::empty(Disconnect)),
    (
        "publish qos 1, packet id 7",
        "42 0003 612f62 00000004 0007 6869 0008 73656e736f722d31",
        Frame::publish_qos1("a/b", b"hi", "sensor-1", false, 7, false),
    ),
    (
        "publish qos 1 resent with dup and retain",
        "e2 0003 612f62 00000004 0007 6f6e 0000",
        Frame::publish_qos1("a/b", b"on", "", true, 7, true),
    ),
    ("puback, packet id 7", "0a 0000 00000002 0007 0000", Frame::pub_ack(7)),
    ("puback, packet id 65535", "0a 0000 00000002 ffff 0000", Frame::pub_ack(0xffff)),
    (
        "connect persistent, expiry 3600 s",
        "80 0000 00000009 00000e10 00 00000000 0008 73656e736f722d31",
        Frame { session: true, payload: b"\x00\x00\x0e\x10\x00\x00\x00\x00\x00", ..Frame::connect("sensor-1", b"") },
    ),
    (
        "connect persistent with will, retained qos 1 gone to a/will, credentials",
        "c0 0006 612f77696c6c 00000016 00000000 03 00000004 676f6e65 7573657200 70617373 0008 73656e736f722d31",
        Frame {
            session: true,
            will: true,
            topic: "a/will",
            payload: b"\x00\x00\x00\x00\x03\x00\x00\x00\x04goneuser\0pass",
            ..Frame::connect("sensor-1", b"")
        },
    ),
    (
        "connack, session resumed",
        "81 0000 00000000 0008 73656e736f722d31",
        Frame { session: true, client_id: "sensor-1", ..Frame::empty(ConnAck) },
    ),
    (
        "subscribe at qos 1",
        "43 0009 73656e736f72732f23 00000000 0000",
        Frame { qos: Qos::AtLeastOnce, ..Frame::with_topic(Subscribe, "sensors/#") },
    ),
    (
        "suback, qos 1 granted",
        "44 0009 73656e736f72732f23 00000000 0000",
        Frame { qos: Qos::AtLeastOnce, ..Frame::with_topic(SubAck, "sensors/#") },
    ),
    (
        "broker disconnect, session taken over",
        "09 0000 00000013 03 73657373696f6e2074616b656e206f766572 0000",
        Frame { payload: b"\x03session taken over", ..Frame::empty(Disconnect) },
    ),
];

#[test]
fn protocol_md_test_vector() {
    let bytes = hex("02 0013 73656e736f72732f74656d7065726174757265 00000004 32332e35 0000");
    let frame = Frame::publish("sensors/temperature", b"23.5", "", false);
    assert_eq!(frame.to_vec(), bytes);
    assert_eq!(Decoder::default().decode(&bytes), Ok(Decoded::Frame { frame, consumed: bytes.len() }));
}

#[test]
fn vectors_encode_and_decode() {
    let decoder = Decoder::default();
    for &(name, text, frame) in VECTORS {
        let bytes = hex(text);
        assert_eq!(frame.to_vec(), bytes, "{name}: encode");
        assert_eq!(frame.encoded_len(), bytes.len(), "{name}: encoded_len");
        assert_eq!(decoder.decode(&bytes), Ok(Decoded::Frame { frame, consumed: bytes.len() }), "{name}: decode");
    }
}

#[test]
fn protocol_md_lists_the_same_vectors() {
    let spec = include_str!("../../../docs/PROTOCOL.md");
    for (name, text, _) in VECTORS {
        assert!(spec.contains(&format!("| `{text}` |")), "{name} is not in docs/PROTOCOL.md");
    }
}

#[test]
fn every_frame_type_has_a_vector() {
    for value in 0..=10 {
        let kind = FrameType::from_u8(value).unwrap();
        assert!(VECTORS.iter().any(|(_, _, frame)| frame.kind == kind), "{kind:?}");
    }
}

#[test]
fn reason_vectors_match_the_reason_helpers() {
    let refused = VECTORS.iter().find(|v| v.0 == "suback refused").unwrap().2;
    assert_eq!(refused.payload, reason_payload(ReasonCode::InvalidTopic, ReasonCode::InvalidTopic.text()));
    let taken = VECTORS.iter().find(|v| v.0 == "broker disconnect, session taken over").unwrap().2;
    assert_eq!(parse_reason(taken.payload), Some((3, "session taken over")));
    assert_eq!(ReasonCode::from_u8(3), Some(ReasonCode::SessionTakenOver));
    assert_eq!(parse_reason(b""), None);
}

#[test]
fn unknown_types_are_refused_from_the_first_byte() {
    let decoder = Decoder::default();
    for (byte, kind) in [(0x0b, 11), (0x1f, 31), (0x8b, 11), (0xff, 31)] {
        assert_eq!(decoder.decode(&[byte]), Err(DecodeError::UnknownType(kind)), "{byte:#04x}");
    }
}

#[test]
fn flag_bits_a_type_does_not_allow_are_refused() {
    let decoder = Decoder::default();
    for (byte, kind, flags) in [
        (0x83, Subscribe, 0x80),
        (0x63, Subscribe, 0x60),
        (0x89, Disconnect, 0x80),
        (0x20, Connect, 0x20),
        (0xe0, Connect, 0xe0),
        (0x41, ConnAck, 0x40),
        (0x45, Unsubscribe, 0x40),
        (0x46, UnsubAck, 0x40),
        (0x8a, PubAck, 0x80),
        (0x2a, PubAck, 0x20),
        // DUP means "sent before" only for a packet id, so only at QoS 1.
        (0x22, Publish, 0x20),
        (0xa2, Publish, 0xa0),
        (0xe7, Ping, 0xe0),
    ] {
        assert_eq!(decoder.decode(&[byte]), Err(DecodeError::BadFlags { kind, flags }), "{byte:#04x}");
    }
}

#[test]
fn unused_fields_must_be_empty_as_soon_as_their_length_arrives() {
    let decoder = Decoder::default();
    for (text, kind, field) in [
        ("00 0001", Connect, Field::Topic),
        ("01 0000 00000001", ConnAck, Field::Payload),
        ("01 0001", ConnAck, Field::Topic),
        ("03 0001 23 00000000 0001", Subscribe, Field::ClientId),
        ("03 0001 23 00000001", Subscribe, Field::Payload),
        ("04 0001 23 00000000 0002", SubAck, Field::ClientId),
        ("05 0001 23 00000001", Unsubscribe, Field::Payload),
        ("06 0001 23 00000000 0001", UnsubAck, Field::ClientId),
        ("07 0000 00000004", Ping, Field::Payload),
        ("07 0001", Ping, Field::Topic),
        ("08 0000 00000000 0001", Pong, Field::ClientId),
        ("09 0001", Disconnect, Field::Topic),
        ("09 0000 00000000 0001", Disconnect, Field::ClientId),
        ("0a 0001", PubAck, Field::Topic),
        ("0a 0000 00000002 0001 0001", PubAck, Field::ClientId),
        // Only a will gives Connect a topic.
        ("80 0001", Connect, Field::Topic),
    ] {
        assert_eq!(decoder.decode(&hex(text)), Err(DecodeError::UnexpectedField { kind, field }), "{text}");
    }
}

#[test]
fn oversized_length_is_refused_before_its_bytes_arrive() {
    let decoder = Decoder::default();
    // Publish, topic "a", declared payload 0xFFFFFFFF, and nothing more.
    let bytes = hex("02 0001 61 ffffffff");
    assert_eq!(
        decoder.decode(&bytes),
        Err(DecodeError::TooLong { field: Field::Payload, len: 0xffff_ffff, max: 1 << 20 })
    );
}

#[test]
fn each_field_is_checked_against_its_limit() {
    let decoder = Decoder::default();
    let too_long = |field, len, max| Err(DecodeError::TooLong { field, len, max });
    assert_eq!(decoder.decode(&hex("02 1001")), too_long(Field::Topic, 4097, 4096));
    assert_eq!(decoder.decode(&hex("02 ffff")), too_long(Field::Topic, 0xffff, 4096));
    assert_eq!(decoder.decode(&hex("02 0000 00100001")), too_long(Field::Payload, (1 << 20) + 1, 1 << 20));
    assert_eq!(decoder.decode(&hex("02 0000 00000000 0101")), too_long(Field::ClientId, 257, 256));
    // Too long is reported even where the field would also be unexpected.
    assert_eq!(decoder.decode(&hex("07 ffff")), too_long(Field::Topic, 0xffff, 4096));
    // At the limit is fine: the decoder asks for the whole field.
    assert_eq!(decoder.decode(&hex("02 1000")), Ok(Decoded::Incomplete { needed: FRAME_OVERHEAD + 4096 }));
    assert_eq!(decoder.decode(&hex("00 0000 00000000 0100")), Ok(Decoded::Incomplete { needed: FRAME_OVERHEAD + 256 }));
}

#[test]
fn small_limits_refuse_the_vectors_that_exceed_them() {
    let limits = FrameLimits { max_topic_len: 3, max_payload_len: 2, max_client_id_len: 1 };
    let decoder = Decoder::new(limits);
    assert_eq!(limits.max_frame_len(), FRAME_OVERHEAD + 6 + PACKET_ID_LEN);
    let too_long = |field, len, max| Err(DecodeError::TooLong { field, len, max });
    assert_eq!(decoder.decode(&hex("03 0009")), too_long(Field::Topic, 9, 3));
    assert_eq!(decoder.decode(&hex("09 0000 00000013")), too_long(Field::Payload, 0x13, 2));
    assert_eq!(decoder.decode(&hex("02 0003 612f62 00000002 6869 0008")), too_long(Field::ClientId, 8, 1));
    let fits = hex("82 0003 612f62 00000002 6f6e 0001 63");
    let frame = Frame::publish("a/b", b"on", "c", true);
    assert_eq!(decoder.decode(&fits), Ok(Decoded::Frame { frame, consumed: FRAME_OVERHEAD + 6 }));
    // The packet id comes on top of the payload limit, so a message that
    // fits at QoS 0 fits at QoS 1.
    let fits = hex("c2 0003 612f62 00000004 0001 6f6e 0001 63");
    let frame = Frame::publish_qos1("a/b", b"on", "c", true, 1, false);
    assert_eq!(decoder.decode(&fits), Ok(Decoded::Frame { frame, consumed: limits.max_frame_len() }));
    assert_eq!(decoder.decode(&hex("42 0000 00000005")), too_long(Field::Payload, 5, 4));
}

#[test]
fn invalid_utf8_is_refused_once_the_frame_is_whole() {
    let decoder = Decoder::default();
    let bad_topic = hex("02 0001 ff 00000000 0000");
    assert_eq!(decoder.decode(&bad_topic[..4]), Ok(Decoded::Incomplete { needed: 10 }));
    assert_eq!(decoder.decode(&bad_topic), Err(DecodeError::InvalidUtf8(Field::Topic)));
    let bad_id = hex("00 0000 00000000 0002 c328");
    assert_eq!(decoder.decode(&bad_id), Err(DecodeError::InvalidUtf8(Field::ClientId)));
    // A truncated multi-byte character in the topic, and a surrogate in the id.
    assert_eq!(decoder.decode(&hex("03 0002 61e2 00000000 0000")), Err(DecodeError::InvalidUtf8(Field::Topic)));
    assert_eq!(decoder.decode(&hex("01 0000 00000000 0003 eda080")), Err(DecodeError::InvalidUtf8(Field::ClientId)));
    // The payload is bytes, not text.
    assert!(matches!(decoder.decode(&hex("02 0001 61 00000001 ff 0000")), Ok(Decoded::Frame { .. })));
}

#[test]
fn errors_map_to_disconnect_reasons() {
    let too_long = DecodeError::TooLong { field: Field::Payload, len: 2, max: 1 };
    assert_eq!(too_long.reason(), ReasonCode::FrameTooLarge);
    for error in [
        DecodeError::UnknownType(10),
        DecodeError::BadFlags { kind: Subscribe, flags: 0x80 },
        DecodeError::InvalidUtf8(Field::Topic),
        DecodeError::UnexpectedField { kind: Ping, field: Field::Payload },
        DecodeError::PacketId { kind: PubAck },
    ] {
        assert_eq!(error.reason(), ReasonCode::ProtocolError, "{error}");
    }
}

#[test]
fn several_frames_in_one_buffer_decode_in_sequence() {
    let decoder = Decoder::default();
    let stream: Vec<u8> = VECTORS.iter().flat_map(|v| hex(v.1)).collect();
    let mut rest = &stream[..];
    for &(name, text, frame) in VECTORS {
        let consumed = hex(text).len();
        assert_eq!(decoder.decode(rest), Ok(Decoded::Frame { frame, consumed }), "{name}");
        rest = &rest[consumed..];
    }
    assert_eq!(decoder.decode(rest), Ok(Decoded::Incomplete { needed: FRAME_OVERHEAD }));
}

#[test]
fn every_split_point_is_incomplete_then_whole() {
    let decoder = Decoder::default();
    for &(name, text, _) in VECTORS {
        let bytes = hex(text);
        for cut in 0..bytes.len() {
            match decoder.decode(&bytes[..cut]) {
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed > cut && needed <= bytes.len(), "{name}: cut {cut} needed {needed}")
                }
                other => panic!("{name}: cut {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_stream_split_at_every_byte_decodes_like_the_whole() {
    let decoder = Decoder::default();
    let stream: Vec<u8> = VECTORS.iter().flat_map(|v| hex(v.1)).collect();
    for cut in 0..=stream.len() {
        // A read loop: append what arrived, take every whole frame, keep the rest.
        let mut held = Vec::new();
        let mut frames = Vec::new();
        for chunk in [&stream[..cut], &stream[cut..]] {
            held.extend_from_slice(chunk);
            while let Decoded::Frame { frame, consumed } = decoder.decode(&held).unwrap() {
                frames.push(frame.to_vec());
                held.drain(..consumed);
            }
        }
        assert!(held.is_empty(), "cut {cut}");
        assert_eq!(frames.len(), VECTORS.len(), "cut {cut}");
        assert!(frames.iter().zip(VECTORS).all(|(got, v)| *got == hex(v.1)), "cut {cut}");
    }
}

#[test]
fn packet_ids_are_checked_as_soon_as_they_can_be() {
    let decoder = Decoder::default();
    let bad = |kind| Err(DecodeError::PacketId { kind });
    // A PubAck's payload is exactly the id: refused from its length.
    assert_eq!(decoder.decode(&hex("0a 0000 00000003")), bad(PubAck));
    assert_eq!(decoder.decode(&hex("0a 0000 00000000")), bad(PubAck));
    // A QoS 1 Publish needs room for the id, and an id that is not 0.
    assert_eq!(decoder.decode(&hex("42 0001 61 00000001")), bad(Publish));
    assert_eq!(decoder.decode(&hex("42 0001 61 00000002 0000 0000")), bad(Publish));
    assert_eq!(decoder.decode(&hex("0a 0000 00000002 0000 0000")), bad(PubAck));
    // A QoS 0 Publish has no id: its payload may be anything, even empty.
    let empty = hex("02 0001 61 00000000 0000");
    assert_eq!(decoder.decode(&empty), Ok(Decoded::Frame { frame: Frame::publish("a", b"", "", false), consumed: 10 }));
    // The payload limit counts the message; the id comes on top.
    let at_limit = hex("42 0000 00100002");
    assert!(matches!(decoder.decode(&at_limit), Ok(Decoded::Incomplete { .. })));
    let over = DecodeError::TooLong { field: Field::Payload, len: (1 << 20) + 3, max: (1 << 20) + 2 };
    assert_eq!(decoder.decode(&hex("42 0000 00100003")), Err(over));
}

#[test]
fn connect_options_parse_from_the_vectors() {
    let decoder = Decoder::default();
    let parse = |text: &str| {
        let bytes = hex(text);
        let Ok(Decoded::Frame { frame, .. }) = decoder.decode(&bytes) else { panic!("{text}") };
        ConnectOptions::parse(&frame).map(|o| {
            (
                o.persistent,
                o.session_expiry,
                o.will.map(|w| (w.topic.to_owned(), w.payload.to_vec(), w.retain, w.qos)),
                o.credentials.to_vec(),
            )
        })
    };
    let v1 = VECTORS.iter().find(|v| v.0 == "connect with credentials").unwrap().1;
    assert_eq!(parse(v1), Ok((false, 0, None, b"user\0pass".to_vec())));
    let persistent = VECTORS.iter().find(|v| v.0 == "connect persistent, expiry 3600 s").unwrap().1;
    assert_eq!(parse(persistent), Ok((true, 3600, None, Vec::new())));
    let will = VECTORS.iter().find(|v| v.0.starts_with("connect persistent with will")).unwrap().1;
    let expected =
        (true, 0, Some(("a/will".to_owned(), b"gone".to_vec(), true, Qos::AtLeastOnce)), b"user\0pass".to_vec());
    assert_eq!(parse(will), Ok(expected));
}

#[test]
fn connect_options_encode_to_the_vectors() {
    let will = Will { topic: "a/will", payload: b"gone", retain: true, qos: Qos::AtLeastOnce };
    for (name, options) in [
        ("connect with client id", ConnectOptions::default()),
        (
            "connect persistent, expiry 3600 s",
            ConnectOptions { persistent: true, session_expiry: 3600, ..Default::default() },
        ),
        (
            "connect persistent with will, retained qos 1 gone to a/will, credentials",
            ConnectOptions { persistent: true, will: Some(will), credentials: b"user\0pass", ..Default::default() },
        ),
    ] {
        let mut out = Vec::new();
        options.encode("sensor-1", &mut out);
        assert_eq!(out, hex(VECTORS.iter().find(|v| v.0 == name).unwrap().1), "{name}");
    }
    // An expiry without a persistent session is not sent.
    let mut out = Vec::new();
    ConnectOptions { session_expiry: 5, ..Default::default() }.encode("", &mut out);
    assert_eq!(out, Frame::connect("", b"").to_vec());
}

#[test]
fn malformed_connect_options_are_refused() {
    let decoder = Decoder::default();
    for (text, error) in [
        // The options block is cut short, or the will claims more than there is.
        ("80 0000 00000004 00000000 0000", ConnectError::Truncated),
        ("80 0000 00000009 00000000 00 ffffffff 0000", ConnectError::Truncated),
        // An expiry is only for a persistent session.
        ("40 0001 61 00000009 00000001 00 00000000 0000", ConnectError::ExpiryWithoutSession),
        // Will options without the will flag.
        ("80 0000 00000009 00000000 01 00000000 0000", ConnectError::WillWithoutFlag),
        ("80 0000 0000000a 00000000 00 00000001 78 0000", ConnectError::WillWithoutFlag),
        // Unknown will flags; a will without a topic.
        ("40 0001 61 00000009 00000000 04 00000000 0000", ConnectError::BadWillFlags(4)),
        ("40 0000 00000009 00000000 00 00000000 0000", ConnectError::WillWithoutTopic),
    ] {
        let bytes = hex(text);
        let Ok(Decoded::Frame { frame, .. }) = decoder.decode(&bytes) else { panic!("{text} does not decode") };
        assert_eq!(ConnectOptions::parse(&frame), Err(error), "{text}");
        assert_eq!(error.reason(), ReasonCode::ProtocolError);
    }
}

pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}
