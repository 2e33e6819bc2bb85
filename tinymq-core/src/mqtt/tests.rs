//! Test vectors captured from real clients and from the specifications, and
//! the decoder's refusals.
//!
//! The captures: a stock `mosquitto -p 18830` (2.0.11) behind a recording TCP
//! proxy on 18831, with `mosquitto_pub`/`mosquitto_sub` (Debian
//! mosquitto-clients 2.0.11) and paho-mqtt 2.1.0 (Python) as clients. "C>S"
//! are client bytes, "S>C" the real broker's answers, which our encoder must
//! reproduce byte for byte.
//!
//! The other way round was checked live once: a fake broker replaying this
//! encoder's CONNACK (5: with Maximum QoS 1), SUBACK and a retained QoS 1
//! PUBLISH (5: with a user property) to `mosquitto_sub -V mqttv311|mqttv5 -q 1`,
//! which printed `a/live from-tinymq qos=1 retain=1 props=origin:tinymq` and
//! answered PUBACK; and to a paho-mqtt 2.1.0 MQTT 5 client, which reported
//! `MaximumQoS : 1`, "Granted QoS 1" and the message with its user property.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// A decoder that also reads QoS 2, as a client would.
fn any_qos() -> Decoder {
    Decoder::new(1 << 20, QoS::ExactlyOnce)
}

/// Decodes one whole packet (CONNECT through `decode_connect`).
fn decode_one(version: ProtocolVersion, bytes: &[u8]) -> Packet<'_> {
    let decoded = if bytes.first() == Some(&0x10) {
        any_qos().decode_connect(bytes).unwrap()
    } else {
        any_qos().decode(version, bytes).unwrap()
    };
    match decoded {
        Decoded::Complete { packet, consumed } => {
            assert_eq!(consumed, bytes.len());
            packet
        }
        partial => panic!("{partial:?} for {bytes:02x?}"),
    }
}

use ProtocolVersion::{V5, V311};

/// (version, command, direction, hex). Each decodes whole and re-encodes to
/// the same bytes.
const CAPTURED: &[(ProtocolVersion, &str, &str, &str)] = &[
    // mosquitto_sub -V mqttv311 -i sub311 -t 'a/#' -q 1 -C 3 -v
    (V311, "mosquitto_sub 3.1.1", "C>S CONNECT", "101200044d5154540402003c0006737562333131"),
    (V311, "mosquitto 3.1.1", "S>C CONNACK", "20020000"),
    (V311, "mosquitto_sub 3.1.1", "C>S SUBSCRIBE a/# q1", "820800010003612f2301"),
    (V311, "mosquitto 3.1.1", "S>C SUBACK", "9003000101"),
    (V311, "mosquitto 3.1.1", "S>C PUBLISH a/b hello", "300a0003612f6268656c6c6f"),
    (V311, "mosquitto 3.1.1", "S>C PUBLISH a/r q1", "320b0003612f7200016b657074"),
    (V311, "mosquitto_sub 3.1.1", "C>S PUBACK", "40020001"),
    (V311, "mosquitto_sub 3.1.1", "C>S DISCONNECT", "e000"),
    // mosquitto_pub -V mqttv311 -i pub311 -t a/b -m hello
    (V311, "mosquitto_pub 3.1.1", "C>S CONNECT", "101200044d5154540402003c0006707562333131"),
    (V311, "mosquitto_pub 3.1.1", "C>S PUBLISH", "300a0003612f6268656c6c6f"),
    // mosquitto_pub -V mqttv311 -i pub311q1 -t a/r -m kept -r -q 1
    (V311, "mosquitto_pub 3.1.1 -r -q 1", "C>S CONNECT", "101400044d5154540402003c00087075623331317131"),
    (V311, "mosquitto_pub 3.1.1 -r -q 1", "C>S PUBLISH", "330b0003612f7200016b657074"),
    // mosquitto_pub -V mqttv311 -i will311 -u alice -P secret --will-topic a/will
    //   --will-payload gone --will-qos 1 --will-retain -t a/c -m x
    (
        V311,
        "mosquitto_pub 3.1.1 will -u -P",
        "C>S CONNECT",
        "103000044d51545404ee003c000777696c6c3331310006612f77696c6c0004676f6e650005616c6963650006736563726574",
    ),
    // mosquitto_sub -V mqttv5 -i sub5 -t 'a/#' -q 1 -C 3 -x 60
    (V5, "mosquitto_sub 5 -x 60", "C>S CONNECT", "101900044d5154540502003c08110000003c210003000473756235"),
    (V5, "mosquitto 5", "S>C CONNACK", "200900000622000a210014"),
    (V5, "mosquitto_sub 5", "C>S SUBSCRIBE", "82090001000003612f2301"),
    (V5, "mosquitto 5", "S>C SUBACK", "900400010001"),
    (V5, "mosquitto 5", "S>C retained PUBLISH", "330c0003612f720001006b657074"),
    (V5, "mosquitto_sub 5", "C>S PUBACK", "40020001"),
    // mosquitto_pub -V mqttv5 -i pub5 -t a/b -m hello5
    (V5, "mosquitto_pub 5", "C>S CONNECT", "101400044d5154540502003c03210014000470756235"),
    (V5, "mosquitto_pub 5", "C>S PUBLISH", "300c0003612f620068656c6c6f35"),
    // mosquitto_pub -V mqttv5 -i pub5q1 -t a/r -m kept5 -r -q 1 -x 120
    //   -D publish user-property k v -D publish content-type text/plain
    //   -D publish message-expiry-interval 30 -D connect receive-maximum 10
    //   -D connect maximum-packet-size 1000
    (V5, "mosquitto_pub 5 -D", "C>S CONNECT", "102000044d5154540502003c0d21000a27000003e811000000780006707562357131"),
    (
        V5,
        "mosquitto_pub 5 -D",
        "C>S PUBLISH",
        "33260003612f720001192600016b00017603000a746578742f706c61696e020000001e6b65707435",
    ),
    (
        V5,
        "mosquitto 5",
        "S>C PUBLISH to sub5",
        "32260003612f720002192600016b00017603000a746578742f706c61696e020000001e6b65707435",
    ),
    // mosquitto_pub -V mqttv5 -i will5 -u bob -P pw --will-topic a/will5 --will-payload bye
    //   --will-qos 1 --will-retain -D will will-delay-interval 5 -D will user-property wk wv
    //   -t a/c -m y -D publish topic-alias 3
    (
        V5,
        "mosquitto_pub 5 will",
        "C>S CONNECT",
        "103b00044d51545405ee003c03210014000577696c6c350e1800000005260002776b000277760007612f77696c6c3500036279650003626f6200027077",
    ),
    (V5, "mosquitto_pub 5 will", "C>S PUBLISH topic alias", "300a0003612f630323000379"),
    // paho-mqtt 2.1.0, MQTTv311, clean_session=False, will, user name, keepalive 30
    (
        V311,
        "paho 3.1.1",
        "C>S CONNECT",
        "102d00044d51545404cc001e00077061686f3331310006702f77696c6c00046465616400056361726f6c0003707733",
    ),
    (V311, "paho 3.1.1", "C>S SUBSCRIBE p/+ q1, q/# q0", "820e00010003702f2b010003712f2300"),
    (V311, "mosquitto 3.1.1", "S>C SUBACK", "900400010100"),
    (V311, "paho 3.1.1", "C>S PUBLISH retained q1", "330b0003702f7800027061686f"),
    (V311, "mosquitto 3.1.1", "S>C PUBLISH", "320b0003702f7800017061686f"),
    (V311, "paho 3.1.1", "C>S UNSUBSCRIBE", "a20c00030003702f2b0003712f23"),
    (V311, "mosquitto 3.1.1", "S>C UNSUBACK", "b0020003"),
    (V311, "paho 3.1.1", "C>S PUBLISH empty retained", "31050003702f78"),
    // paho-mqtt 2.1.0, MQTTv5, session expiry 300, subscription identifier 7,
    // no local, retain as published, retain handling 1
    (
        V5,
        "paho 5",
        "C>S CONNECT",
        "103200044d51545405ce001e05110000012c00057061686f35000006702f77696c6c00046465616400056361726f6c0003707733",
    ),
    (V5, "paho 5", "C>S SUBSCRIBE", "82110001020b070003702f2b1d0003712f2300"),
    (V5, "mosquitto 5", "S>C SUBACK", "90050001000100"),
    (V5, "paho 5", "C>S PUBLISH", "330c0003702f780002007061686f"),
    (V5, "mosquitto 5", "S>C PUBACK", "40020002"),
    (V5, "paho 5", "C>S UNSUBSCRIBE", "a20d0003000003702f2b0003712f23"),
    (V5, "mosquitto 5", "S>C UNSUBACK", "b0050003000000"),
    (V5, "paho 5", "C>S PUBLISH empty retained", "31060003702f7800"),
    (V5, "paho 5", "C>S DISCONNECT", "e000"),
];

#[test]
fn mqtt_captured_vectors_decode_and_reencode_identically() {
    for &(version, who, what, text) in CAPTURED {
        let bytes = hex(text);
        let packet = decode_one(version, &bytes);
        assert_eq!(to_vec(&packet, version), bytes, "{who} {what}");
        // Byte by byte, every prefix is Partial.
        for end in 0..bytes.len() {
            let decoded = if bytes[0] == 0x10 {
                any_qos().decode_connect(&bytes[..end]).unwrap()
            } else {
                any_qos().decode(version, &bytes[..end]).unwrap()
            };
            assert!(matches!(decoded, Decoded::Partial { needed } if needed > end), "{who} {what} at {end}");
        }
    }
}

#[test]
fn mqtt_captured_connects_carry_their_fields() {
    let will311 = hex(CAPTURED[12].3);
    let Packet::Connect(c) = decode_one(V311, &will311) else { panic!() };
    assert_eq!((c.client_id, c.clean_start, c.keep_alive), ("will311", true, 60));
    assert_eq!((c.username, c.password), (Some("alice"), Some(&b"secret"[..])));
    let will = c.will.unwrap();
    assert_eq!((will.topic, will.payload, will.qos, will.retain), ("a/will", &b"gone"[..], QoS::AtLeastOnce, true));

    let pub5q1 = hex(CAPTURED[21].3);
    let Packet::Connect(c) = decode_one(V5, &pub5q1) else { panic!() };
    assert_eq!(c.version, V5);
    assert_eq!(c.properties.receive_maximum(), Some(10));
    assert_eq!(c.properties.maximum_packet_size(), Some(1000));
    assert_eq!(c.properties.session_expiry_interval(), Some(120));

    let will5 = hex(CAPTURED[24].3);
    let Packet::Connect(c) = decode_one(V5, &will5) else { panic!() };
    let will = c.will.unwrap();
    assert_eq!(will.properties.will_delay_interval(), Some(5));
    assert_eq!(will.properties.user_properties().collect::<Vec<_>>(), [("wk", "wv")]);

    let paho311 = hex(CAPTURED[26].3);
    let Packet::Connect(c) = decode_one(V311, &paho311) else { panic!() };
    assert_eq!((c.clean_start, c.keep_alive, c.username), (false, 30, Some("carol")));
}

#[test]
fn mqtt_captured_publishes_carry_properties_and_aliases() {
    let a_bytes = hex(CAPTURED[22].3);
    let Packet::Publish(p) = decode_one(V5, &a_bytes) else { panic!() };
    assert_eq!(
        (p.topic, p.qos, p.retain, p.packet_id, p.payload),
        ("a/r", QoS::AtLeastOnce, true, Some(1), &b"kept5"[..])
    );
    assert_eq!(p.properties.user_properties().collect::<Vec<_>>(), [("k", "v")]);
    let all: Vec<_> = p.properties.iter().collect();
    assert_eq!(
        all,
        [Property::UserProperty("k", "v"), Property::ContentType("text/plain"), Property::MessageExpiryInterval(30)]
    );
    let b_bytes = hex(CAPTURED[25].3);
    let Packet::Publish(p) = decode_one(V5, &b_bytes) else { panic!() };
    assert_eq!((p.topic, p.properties.topic_alias()), ("a/c", Some(3)));

    let c_bytes = hex(CAPTURED[35].3);
    let Packet::Subscribe(s) = decode_one(V5, &c_bytes) else { panic!() };
    assert_eq!(s.properties.iter().collect::<Vec<_>>(), [Property::SubscriptionIdentifier(7)]);
    let o = s.filters[0].options;
    assert_eq!(
        (s.filters[0].filter, o.qos, o.no_local, o.retain_as_published, o.retain_handling),
        ("p/+", QoS::AtLeastOnce, true, true, 1)
    );
    assert_eq!(s.filters[1].filter, "q/#");
}

/// The broker's answers, built with our encoder, are the bytes the real
/// broker sent the real clients.
#[test]
fn mqtt_broker_answers_match_mosquitto() {
    let ack = |code| Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::EMPTY });
    assert_eq!(to_vec(&ack(0), V311), hex("20020000"));
    let mut props = PropertiesBuf::new();
    props.push(Property::TopicAliasMaximum(10)).push(Property::ReceiveMaximum(20));
    let ack5 = ConnAck { session_present: false, code: 0, properties: props.as_properties() };
    assert_eq!(to_vec(&Packet::ConnAck(ack5), V5), hex("200900000622000a210014"));
    let suback = SubAck { packet_id: 1, properties: Properties::EMPTY, codes: &[1, 0] };
    assert_eq!(to_vec(&Packet::SubAck(suback), V311), hex("900400010100"));
    assert_eq!(to_vec(&Packet::SubAck(suback), V5), hex("9005000100010000")[..7].to_vec());
    let unsuback = UnsubAck { packet_id: 3, properties: Properties::EMPTY, codes: &[0, 0] };
    assert_eq!(to_vec(&Packet::UnsubAck(unsuback), V311), hex("b0020003"));
    assert_eq!(to_vec(&Packet::UnsubAck(unsuback), V5), hex("b0050003000000"));
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/r",
        packet_id: Some(1),
        properties: Properties::EMPTY,
        payload: b"kept",
    };
    assert_eq!(to_vec(&Packet::Publish(publish), V5), hex("330c0003612f720001006b657074"));
    let puback = Ack { packet_id: 2, reason: 0, properties: Properties::EMPTY };
    assert_eq!(to_vec(&Packet::PubAck(puback), V5), hex("40020002"));
    assert_eq!(to_vec(&Packet::PingResp, V311), hex("d000"));
}

/// Remaining Length examples of MQTT 5 section 1.5.5 (and 3.1.1 2.2.3).
#[test]
fn mqtt_remaining_length_spec_examples() {
    for (len, text) in [
        (0usize, "00"),
        (127, "7f"),
        (128, "8001"),
        (16_383, "ff7f"),
        (16_384, "808001"),
        (2_097_151, "ffff7f"),
        (2_097_152, "80808001"),
        (268_435_455, "ffffff7f"),
    ] {
        let mut input = vec![0xc0];
        input.extend(hex(text));
        let decoder = Decoder::new(usize::MAX, QoS::AtLeastOnce);
        let expected = if len == 0 { None } else { Some(1 + text.len() / 2 + len) };
        match decoder.decode(V311, &input).unwrap() {
            Decoded::Partial { needed } => assert_eq!(Some(needed), expected),
            Decoded::Complete { packet, .. } => assert_eq!((packet, expected), (Packet::PingReq, None)),
        }
    }
}

/// The CONNECT variable headers given as examples in 3.1.1 section 3.1.2.10
/// and MQTT 5 section 3.1.2.12, completed with an empty client id (and for
/// flags 0xCE, will and credentials).
#[test]
fn mqtt_connect_spec_examples() {
    let v311 = hex("101a00044d51545404ce000a00000001740001700002757300027077");
    let Packet::Connect(c) = decode_one(V311, &v311) else { panic!() };
    let will = c.will.unwrap();
    assert_eq!(
        (c.keep_alive, c.clean_start, will.topic, will.qos, will.retain),
        (10, true, "t", QoS::AtLeastOnce, false)
    );
    assert_eq!((c.username, c.password), (Some("us"), Some(&b"pw"[..])));
    let v5 = hex("101a00044d51545405c2000a05110000000a000000027573000270 77".replace(' ', "").as_str());
    let Packet::Connect(c) = decode_one(V5, &v5) else { panic!() };
    assert_eq!((c.keep_alive, c.properties.session_expiry_interval()), (10, Some(10)));
    assert_eq!((c.username, c.password, c.will), (Some("us"), Some(&b"pw"[..]), None));
}

fn connect_error(bytes: &[u8]) -> ConnectError {
    Decoder::default().decode_connect(bytes).unwrap_err()
}

fn error(version: ProtocolVersion, bytes: &[u8]) -> DecodeError {
    Decoder::default().decode(version, bytes).unwrap_err()
}

#[test]
fn mqtt_malformed_fixed_headers() {
    // Remaining length of five bytes.
    assert!(matches!(error(V5, &hex("c0ffffffff01")), DecodeError::Malformed(_)));
    // Not in its shortest form.
    assert!(matches!(error(V5, &hex("c08000")), DecodeError::Malformed(_)));
    // Declared 200 MB: refused from five bytes, before buffering.
    assert_eq!(error(V5, &hex("30ffffff5f")), DecodeError::PacketTooLarge { len: 201_326_596, max: (1 << 20) + 4096 });
    assert_eq!(error(V5, &hex("30ffffff5f")).refusal(V5), Refusal::Disconnect(ReasonCode::PacketTooLarge));
    assert_eq!(error(V311, &hex("30ffffff5f")).refusal(V311), Refusal::Close);
    // Reserved flags, reserved type, AUTH in 3.1.1, PINGREQ with a body.
    for (version, text) in [(V5, "810700010003612301"), (V5, "e100"), (V5, "0000"), (V311, "f000"), (V5, "c00100")] {
        assert!(matches!(error(version, &hex(text)), DecodeError::Malformed(_)), "{text}");
    }
}

#[test]
fn mqtt_connect_refusals() {
    // 3.1 ("MQIsdp", level 3): the 3.1.1 CONNACK "unacceptable protocol version".
    let e = connect_error(&hex("100f00064d514973647003020000000178"));
    assert_eq!(e.error, DecodeError::UnsupportedProtocolVersion(3));
    let mut out = Vec::new();
    e.refusal().encode(&mut out);
    assert_eq!(out, hex("20020001"));
    // MQTT level 6.
    assert_eq!(connect_error(&hex("100d00044d5154540602003c000178")).error, DecodeError::UnsupportedProtocolVersion(6));
    // The first packet is not a CONNECT.
    assert_eq!(connect_error(&hex("c000")).refusal(), Refusal::Close);
    // Reserved CONNECT flag: 3.1.1 closes, 5 answers CONNACK 0x81.
    let e = connect_error(&hex("100d00044d5154540403003c000178"));
    assert_eq!((e.version, e.refusal()), (Some(V311), Refusal::Close));
    let e = connect_error(&hex("100e00044d5154540503003c00000178"));
    assert_eq!(e.refusal(), Refusal::ConnAck { version: V5, code: 0x81 });
    let mut out = Vec::new();
    e.refusal().encode(&mut out);
    assert_eq!(out, hex("2003008100"));
    // A will at QoS 2: CONNACK 0x9B in 5.
    let e = connect_error(&hex("101500044d5154540516003c0000017800000161000178"));
    assert_eq!(e.error, DecodeError::QosNotSupported(QoS::ExactlyOnce));
    assert_eq!(e.refusal(), Refusal::ConnAck { version: V5, code: 0x9B });
    // 3.1.1: password without user name.
    assert!(matches!(connect_error(&hex("100f00044d5154540442003c0001780000")).error, DecodeError::Malformed(_)));
    // Client id with U+0000, and with invalid UTF-8.
    assert!(matches!(connect_error(&hex("100d00044d5154540402003c000100")).error, DecodeError::Malformed(_)));
    assert!(matches!(connect_error(&hex("100d00044d5154540402003c0001ff")).error, DecodeError::Malformed(_)));
    // Trailing bytes.
    assert!(matches!(connect_error(&hex("100e00044d5154540402003c00017800")).error, DecodeError::Malformed(_)));
    // A second CONNECT.
    assert!(matches!(error(V311, &hex("100d00044d5154540402003c000178")), DecodeError::Protocol(_)));
}

#[test]
fn mqtt_publish_refusals() {
    // QoS 2 at a broker: DISCONNECT 0x9B in 5, close in 3.1.1.
    let q2 = hex("34070003612f620001");
    let e = error(V311, &q2);
    assert_eq!((e.clone(), e.refusal(V311)), (DecodeError::QosNotSupported(QoS::ExactlyOnce), Refusal::Close));
    let q2v5 = hex("34080003612f62000100");
    let mut out = Vec::new();
    error(V5, &q2v5).refusal(V5).encode(&mut out);
    assert_eq!(out, hex("e0019b"));
    // QoS 3; DUP on QoS 0; packet id 0; wildcard topic; empty topic without alias.
    assert!(matches!(error(V311, &hex("36070003612f620001")), DecodeError::Malformed(_)));
    assert!(matches!(error(V311, &hex("38050003612f62")), DecodeError::Malformed(_)));
    assert!(matches!(error(V311, &hex("32070003612f620000")), DecodeError::Malformed(_)));
    assert_eq!(error(V311, &hex("30050003612f23")), DecodeError::TopicNameInvalid);
    assert_eq!(error(V5, &hex("3003000000")), DecodeError::TopicNameInvalid);
    // Empty topic with an alias is fine in 5.
    assert!(matches!(Decoder::default().decode(V5, &hex("300600000323000178")), Ok(Decoded::Complete { .. })));
}

#[test]
fn mqtt_property_rules() {
    let publish = |props: &str| {
        let props = hex(props);
        let mut bytes = vec![0x30, (5 + 1 + props.len()) as u8, 0, 3, b'a', b'/', b'b', props.len() as u8];
        bytes.extend(props);
        Decoder::default().decode(V5, &bytes).map(|_| ())
    };
    assert!(publish("26000161000162260001610001632300050b01").is_ok(), "repeated user property");
    // Topic alias twice: protocol error; session expiry in PUBLISH: malformed.
    assert!(matches!(publish("2300052300 06".replace(' ', "").as_str()), Err(DecodeError::Protocol(_))));
    assert!(matches!(publish("1100000001"), Err(DecodeError::Malformed(_))));
    // Unknown id; value of a flag property not 0/1; topic alias 0.
    assert!(matches!(publish("7f00"), Err(DecodeError::Malformed(_))));
    assert!(matches!(publish("0102"), Err(DecodeError::Protocol(_))));
    assert!(matches!(publish("230000"), Err(DecodeError::Protocol(_))));
    // Property length beyond the packet.
    assert!(matches!(
        Decoder::default().decode(V5, &hex("30060001610900 00".replace(' ', "").as_str())),
        Err(DecodeError::Malformed(_))
    ));
    // Receive maximum 0 in CONNECT: protocol error, CONNACK 0x82.
    let e = connect_error(&hex("101100044d5154540502003c0321000000017a"));
    assert_eq!(e.refusal(), Refusal::ConnAck { version: V5, code: 0x82 });
    // Subscription identifier repeated in SUBSCRIBE.
    assert!(matches!(error(V5, &hex("820c0001040b010b020003612f2301")), DecodeError::Protocol(_)));
}

#[test]
fn mqtt_subscribe_rules() {
    // No filter; reserved option bits (3.1.1 and 5); retain handling 3; QoS 3.
    assert!(matches!(error(V311, &hex("82020001")), DecodeError::Protocol(_)));
    assert!(matches!(error(V311, &hex("820800010003612f2305")), DecodeError::Malformed(_)));
    assert!(matches!(error(V5, &hex("82090001000003612f2341")), DecodeError::Malformed(_)));
    assert!(matches!(error(V5, &hex("82090001000003612f2331")), DecodeError::Protocol(_)));
    assert!(matches!(error(V5, &hex("82090001000003612f2303")), DecodeError::Malformed(_)));
    // SUBSCRIBE asking QoS 2 is fine: the broker grants 1.
    let q2 = hex("820800010003612f2302");
    let Packet::Subscribe(s) = decode_one(V311, &q2) else { panic!() };
    assert_eq!(s.filters[0].options.qos, QoS::ExactlyOnce);
    assert!(matches!(error(V311, &hex("a2020001")), DecodeError::Protocol(_)));
}

#[test]
fn mqtt_qos2_flow_packets_are_recognised() {
    assert!(matches!(decode_one(V311, &hex("50020001")), Packet::PubRec(_)));
    assert!(matches!(decode_one(V311, &hex("62020001")), Packet::PubRel(_)));
    assert!(matches!(decode_one(V5, &hex("7003000192")), Packet::PubComp(Ack { reason: 0x92, .. })));
    assert!(matches!(decode_one(V5, &hex("f0021800")), Packet::Auth(Disconnect { reason: 0x18, .. })));
    // PUBREL with flags 0 is malformed.
    assert!(matches!(error(V311, &hex("60020001")), DecodeError::Malformed(_)));
}

#[test]
fn mqtt_disconnect_with_reason_and_properties_round_trips() {
    let mut props = PropertiesBuf::new();
    props
        .push(Property::SessionExpiryInterval(0))
        .push(Property::ReasonString("bye"))
        .push(Property::UserProperty("k", "v"));
    let packet = Packet::Disconnect(Disconnect { reason: 0x04, properties: props.as_properties() });
    let bytes = to_vec(&packet, V5);
    assert_eq!(decode_one(V5, &bytes), packet);
    assert_eq!(to_vec(&packet, V311), hex("e000"));
}
