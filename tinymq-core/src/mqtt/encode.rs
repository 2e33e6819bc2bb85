//! The MQTT encoder: every packet, in either version, appended to a buffer
//! the caller owns.
//!
//! The body is written twice by the same code: once into a counter, for the
//! remaining length that precedes it, and once into the buffer, so nothing is
//! moved after it is written.

use super::packet::*;

/// Where a body goes: a byte counter or the output buffer.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for usize {
    fn put(&mut self, bytes: &[u8]) {
        *self += bytes.len();
    }
}

/// Appends `packet`'s wire form in `version` to `out`.
///
/// Fields the version has no room for are left out: properties, reason codes
/// and UNSUBACK codes in 3.1.1. A PUBLISH's packet identifier is written when
/// its QoS is above 0 (0 if the caller left it `None`).
///
/// # Panics
///
/// If a string or binary field is longer than 65535 bytes, or the packet
/// longer than the 256 MiB the remaining length can say. Packets that came
/// through the decoder never are.
pub fn encode(packet: &Packet<'_>, version: ProtocolVersion, out: &mut Vec<u8>) {
    let mut len = 0usize;
    body(packet, version, &mut len);
    assert!(len <= super::decode::MAX_REMAINING_LENGTH, "MQTT packet too long");
    out.reserve(len + 5);
    out.push(first_byte(packet));
    put_varint(out, len as u32);
    body(packet, version, out);
}

/// The packet's wire form in `version` as a new vector.
pub fn to_vec(packet: &Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    encode(packet, version, &mut out);
    out
}

fn first_byte(packet: &Packet<'_>) -> u8 {
    let flags = match packet {
        Packet::Publish(p) => (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0x02,
        _ => 0,
    };
    (packet.packet_type() << 4) | flags
}

fn body(packet: &Packet<'_>, version: ProtocolVersion, out: &mut impl Sink) {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Connect(c) => {
            put_str(out, "MQTT");
            let mut flags = u8::from(c.clean_start) << 1;
            if let Some(will) = &c.will {
                flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
            }
            flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
            out.put(&[version as u8, flags]);
            out.put(&c.keep_alive.to_be_bytes());
            put_properties(out, v5, &c.properties);
            put_str(out, c.client_id);
            if let Some(will) = &c.will {
                put_properties(out, v5, &will.properties);
                put_str(out, will.topic);
                put_binary(out, will.payload);
            }
            if let Some(username) = c.username {
                put_str(out, username);
            }
            if let Some(password) = c.password {
                put_binary(out, password);
            }
        }
        Packet::ConnAck(a) => {
            out.put(&[u8::from(a.session_present), a.code]);
            put_properties(out, v5, &a.properties);
        }
        Packet::Publish(p) => {
            put_str(out, p.topic);
            if p.qos != QoS::AtMostOnce {
                out.put(&p.packet_id.unwrap_or(0).to_be_bytes());
            }
            put_properties(out, v5, &p.properties);
            out.put(p.payload);
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            out.put(&a.packet_id.to_be_bytes());
            // The reason and properties may be left out when they are the
            // defaults (MQTT 5 section 3.4.2.1), which is what clients send.
            if v5 && (a.reason != 0 || !a.properties.is_empty()) {
                out.put(&[a.reason]);
                if !a.properties.is_empty() {
                    put_properties(out, v5, &a.properties);
                }
            }
        }
        Packet::Subscribe(s) => {
            out.put(&s.packet_id.to_be_bytes());
            put_properties(out, v5, &s.properties);
            for f in &s.filters {
                put_str(out, f.filter);
                let o = &f.options;
                let mut options = o.qos as u8;
                if v5 {
                    options |=
                        u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | o.retain_handling << 4;
                }
                out.put(&[options]);
            }
        }
        Packet::SubAck(a) => {
            out.put(&a.packet_id.to_be_bytes());
            put_properties(out, v5, &a.properties);
            out.put(a.codes);
        }
        Packet::Unsubscribe(u) => {
            out.put(&u.packet_id.to_be_bytes());
            put_properties(out, v5, &u.properties);
            for filter in &u.filters {
                put_str(out, filter);
            }
        }
        Packet::UnsubAck(a) => {
            out.put(&a.packet_id.to_be_bytes());
            if v5 {
                put_properties(out, v5, &a.properties);
                out.put(a.codes);
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) | Packet::Auth(d) => {
            if v5 && (d.reason != 0 || !d.properties.is_empty()) {
                out.put(&[d.reason]);
                if !d.properties.is_empty() {
                    put_properties(out, v5, &d.properties);
                }
            }
        }
    }
}

fn put_varint(out: &mut impl Sink, mut value: u32) {
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value != 0 {
            byte |= 0x80;
        }
        out.put(&[byte]);
        if value == 0 {
            return;
        }
    }
}

fn put_binary(out: &mut impl Sink, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("MQTT string or binary longer than 65535 bytes");
    out.put(&len.to_be_bytes());
    out.put(bytes);
}

fn put_str(out: &mut impl Sink, text: &str) {
    put_binary(out, text.as_bytes());
}

fn put_properties(out: &mut impl Sink, v5: bool, properties: &Properties<'_>) {
    if v5 {
        let len = u32::try_from(properties.raw.len()).expect("property block too long");
        put_varint(out, len);
        out.put(properties.raw);
    }
}

/// Appends one property's identifier and value.
pub(crate) fn put_property(out: &mut Vec<u8>, property: &Property<'_>) {
    use Property::*;
    out.push(property.id());
    match *property {
        PayloadFormatIndicator(v)
        | RequestProblemInformation(v)
        | RequestResponseInformation(v)
        | MaximumQos(v)
        | RetainAvailable(v)
        | WildcardSubscriptionAvailable(v)
        | SubscriptionIdentifierAvailable(v)
        | SharedSubscriptionAvailable(v) => out.push(v),
        ServerKeepAlive(v) | ReceiveMaximum(v) | TopicAliasMaximum(v) | TopicAlias(v) => {
            out.extend_from_slice(&v.to_be_bytes())
        }
        MessageExpiryInterval(v) | SessionExpiryInterval(v) | WillDelayInterval(v) | MaximumPacketSize(v) => {
            out.extend_from_slice(&v.to_be_bytes())
        }
        SubscriptionIdentifier(v) => put_varint(out, v),
        ContentType(s)
        | ResponseTopic(s)
        | AssignedClientIdentifier(s)
        | AuthenticationMethod(s)
        | ResponseInformation(s)
        | ServerReference(s)
        | ReasonString(s) => put_str(out, s),
        CorrelationData(b) | AuthenticationData(b) => put_binary(out, b),
        UserProperty(k, v) => {
            put_str(out, k);
            put_str(out, v);
        }
    }
}
