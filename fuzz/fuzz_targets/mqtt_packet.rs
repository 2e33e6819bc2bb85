//! Feeds bytes to the MQTT decoder the way a connection's read loop does:
//! no panic, arrival in pieces never changes what is decoded, and every
//! decoded packet survives encode → decode unchanged. Then builds packets
//! from the input and checks that they round-trip too.
//!
//! Input: a mode byte (bits 0-1: start with CONNECT, or already in 3.1.1 or
//! 5; bit 2: a tiny maximum packet size), a byte `n`, then `n % 8` chunk
//! sizes (used in turn; 0 is a read that brought nothing), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_fuzz::chunks;
use tinymq_core::mqtt::{
    self, Decoded, Decoder, Packet, Properties, PropertiesBuf, Property, ProtocolVersion, Publish, QoS, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};

#[derive(Debug, PartialEq)]
enum End {
    Partial(usize),
    ConnectError(String),
    Error(String),
}

fuzz_target!(|input: &[u8]| {
    let [mode, n, rest @ ..] = input else { return };
    let (sizes, stream) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let version = match mode & 3 {
        1 => Some(ProtocolVersion::V311),
        2 => Some(ProtocolVersion::V5),
        _ => None,
    };
    let decoder =
        if mode & 4 != 0 { Decoder::new(24, QoS::AtLeastOnce) } else { Decoder::new(1 << 16, QoS::ExactlyOnce) };
    let whole = feed(&decoder, version, &[stream]);
    let split = feed(&decoder, version, &chunks(sizes, stream));
    assert_eq!(whole, split, "split feeding decoded differently");
    built_packets_round_trip(stream);
});


/// A read loop. Returns each packet's bytes in order and how the stream ended.
fn feed(decoder: &Decoder, mut version: Option<ProtocolVersion>, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, End) {
    let mut held = Vec::new();
    let mut packets = Vec::new();
    let mut last_needed = 0;
    for chunk in chunks {
        held.extend_from_slice(chunk);
        loop {
            let decoded = match version {
                None => match decoder.decode_connect(&held) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        let mut out = Vec::new();
                        error.refusal().encode(&mut out);
                        return (packets, End::ConnectError(error.to_string()));
                    }
                },
                Some(v) => match decoder.decode(v, &held) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        let mut out = Vec::new();
                        error.refusal(v).encode(&mut out);
                        return (packets, End::Error(error.to_string()));
                    }
                },
            };
            match decoded {
                Decoded::Complete { packet, consumed } => {
                    assert!(consumed <= decoder.max_packet_size() && consumed <= held.len());
                    let v = match &packet {
                        Packet::Connect(connect) => connect.version,
                        _ => version.expect("only decode_connect returns a CONNECT"),
                    };
                    round_trip(decoder, v, &packet);
                    packets.push(held[..consumed].to_vec());
                    held.drain(..consumed);
                    version = Some(v);
                    last_needed = 0;
                }
                Decoded::Partial { needed } => {
                    assert!(needed > held.len(), "needed {needed} with {} held", held.len());
                    assert!(needed <= decoder.max_packet_size().max(5), "needed {needed} over the maximum");
                    assert!(needed >= last_needed, "needed fell from {last_needed} to {needed}");
                    last_needed = needed;
                    break;
                }
            }
        }
    }
    (packets, End::Partial(held.len()))
}

/// Encodes `packet` and decodes it again: the same packet.
fn round_trip(decoder: &Decoder, version: ProtocolVersion, packet: &Packet<'_>) {
    let bytes = mqtt::to_vec(packet, version);
    let big = Decoder::new(usize::MAX, QoS::ExactlyOnce);
    let decoded = match packet {
        Packet::Connect(_) => big.decode_connect(&bytes).map_err(|e| e.error),
        _ => big.decode(version, &bytes),
    };
    match decoded {
        Ok(Decoded::Complete { packet: again, consumed }) => {
            assert_eq!(consumed, bytes.len());
            assert_eq!(&again, packet, "round trip changed the packet");
        }
        other => panic!("re-encoded {packet:?} decodes as {other:?}"),
    }
    let _ = decoder;
}

/// Packets built from arbitrary bytes, made valid where the format insists.
fn built_packets_round_trip(data: &[u8]) {
    let text: String = String::from_utf8_lossy(data.get(..data.len().min(40)).unwrap_or_default())
        .chars()
        .filter(|c| !matches!(c, '\0' | '+' | '#'))
        .collect();
    let topic = if text.is_empty() { "t" } else { text.as_str() };
    let byte = data.first().copied().unwrap_or(0);
    let qos = QoS::from_u8(byte & 3).unwrap_or(QoS::AtLeastOnce);
    let mut props = PropertiesBuf::new();
    props.push(Property::UserProperty(topic, topic)).push(Property::MessageExpiryInterval(u32::from(byte)));
    if byte & 0x10 != 0 {
        props.push(Property::TopicAlias(u16::from(byte) + 1));
    }
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let properties = if version == ProtocolVersion::V5 { props.as_properties() } else { Properties::EMPTY };
        let publish = Publish {
            dup: byte & 0x40 != 0 && qos != QoS::AtMostOnce,
            qos,
            retain: byte & 0x80 != 0,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(u16::from(byte) + 1),
            properties,
            payload: data,
        };
        round_trip(&Decoder::default(), version, &Packet::Publish(publish));
        let options = SubscriptionOptions {
            qos,
            no_local: version == ProtocolVersion::V5 && byte & 4 != 0,
            retain_as_published: version == ProtocolVersion::V5 && byte & 8 != 0,
            retain_handling: if version == ProtocolVersion::V5 { (byte >> 5) % 3 } else { 0 },
        };
        let subscribe = Subscribe {
            packet_id: 9,
            properties: Properties::EMPTY,
            filters: vec![SubscribeFilter { filter: topic, options }, SubscribeFilter { filter: "#", options }],
        };
        round_trip(&Decoder::default(), version, &Packet::Subscribe(subscribe));
    }
}
