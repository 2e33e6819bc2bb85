//! The incremental MQTT decoder and its errors.
//!
//! [`Decoder::decode_connect`] takes the first packet of a connection and
//! [`Decoder::decode`] every later one, given the version the CONNECT fixed.
//! Both look at whatever bytes have arrived: with only part of a packet they
//! return [`Decoded::Partial`]; the fixed header's remaining length is checked
//! against the maximum packet size as soon as it has arrived, before the
//! caller buffers the rest. Every error is fatal for the connection and
//! says, through [`DecodeError::refusal`], what the peer is sent.

use super::encode;
use super::packet::*;

/// Why a packet could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The fixed header declares a packet over the maximum packet size.
    #[error("packet of {len} bytes is over the maximum of {max}")]
    PacketTooLarge {
        /// The declared size of the whole packet.
        len: usize,
        /// The maximum in force.
        max: usize,
    },
    /// Bytes that do not follow the packet format.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that break a rule of the protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A CONNECT for a protocol level other than 4 (3.1.1) or 5.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// A topic name with a wildcard, or empty without a topic alias.
    #[error("topic name invalid")]
    TopicNameInvalid,
    /// A PUBLISH or will above the decoder's maximum QoS.
    #[error("{0:?} not supported")]
    QosNotSupported(QoS),
}

impl DecodeError {
    /// The MQTT 5 reason code for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::Malformed(_) => ReasonCode::MalformedPacket,
            DecodeError::Protocol(_) => ReasonCode::ProtocolError,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::TopicNameInvalid => ReasonCode::TopicNameInvalid,
            DecodeError::QosNotSupported(_) => ReasonCode::QosNotSupported,
        }
    }

    /// What the peer is sent for this error in a packet after CONNECT: in
    /// MQTT 5 a DISCONNECT with the reason code, in 3.1.1 nothing (the
    /// network connection is closed, 3.1.1 section 4.8).
    pub fn refusal(&self, version: ProtocolVersion) -> Refusal {
        match version {
            ProtocolVersion::V5 => Refusal::Disconnect(self.reason_code()),
            ProtocolVersion::V311 => Refusal::Close,
        }
    }
}

/// A CONNECT that could not be decoded, with the version it named if that
/// much was read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ConnectError {
    /// The protocol version, if the CONNECT got as far as a known level.
    pub version: Option<ProtocolVersion>,
    /// What was wrong.
    pub error: DecodeError,
}

impl ConnectError {
    /// What the peer is sent: in MQTT 5 a CONNACK with the reason code; an
    /// unknown protocol level gets the 3.1.1 CONNACK "unacceptable protocol
    /// version" (which every version's client can read); anything else
    /// closes the connection without a CONNACK (3.1.1 section 3.1.4).
    pub fn refusal(&self) -> Refusal {
        match (self.version, &self.error) {
            (Some(ProtocolVersion::V5), error) => {
                Refusal::ConnAck { version: ProtocolVersion::V5, code: error.reason_code() as u8 }
            }
            (_, DecodeError::UnsupportedProtocolVersion(_)) => {
                Refusal::ConnAck { version: ProtocolVersion::V311, code: 1 }
            }
            _ => Refusal::Close,
        }
    }
}

/// What a connection sends before closing after a decode error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Refusal {
    /// A CONNACK refusing the connection, in the given version's form.
    ConnAck {
        /// The form of the CONNACK.
        version: ProtocolVersion,
        /// The reason code (5) or return code (3.1.1).
        code: u8,
    },
    /// An MQTT 5 DISCONNECT with this reason.
    Disconnect(ReasonCode),
    /// Nothing: close the network connection.
    Close,
}

impl Refusal {
    /// Appends the bytes to send, if any, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Refusal::ConnAck { version, code } => {
                let ack = ConnAck { session_present: false, code, properties: Properties::EMPTY };
                encode::encode(&Packet::ConnAck(ack), version, out);
            }
            Refusal::Disconnect(reason) => {
                let disconnect = Disconnect { reason: reason as u8, properties: Properties::EMPTY };
                encode::encode(&Packet::Disconnect(disconnect), ProtocolVersion::V5, out);
            }
            Refusal::Close => {}
        }
    }
}

/// The result of a decode call that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Only part of a packet: call again with the same bytes plus more.
    Partial {
        /// Total bytes the packet is known to need so far (a lower bound,
        /// never above the maximum packet size).
        needed: usize,
    },
    /// A whole packet and how many bytes of the input it took.
    Complete {
        /// The packet, borrowing from the input.
        packet: Packet<'a>,
        /// Bytes consumed from the start of the input.
        consumed: usize,
    },
}

/// A whole packet's first byte, body, and length with the fixed header.
type RawPacket<'a> = (u8, &'a [u8], usize);

/// The largest remaining length the four-byte encoding can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// An incremental MQTT decoder. It holds only limits; the caller holds the
/// bytes and the connection's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    max_packet_size: usize,
    maximum_qos: QoS,
}

impl Default for Decoder {
    /// A broker's decoder: packets up to 1 MiB plus 4 KiB of headers, QoS up
    /// to 1.
    fn default() -> Self {
        Decoder { max_packet_size: (1 << 20) + 4096, maximum_qos: QoS::AtLeastOnce }
    }
}

impl Decoder {
    /// A decoder refusing packets over `max_packet_size` bytes (the whole
    /// packet, fixed header included, as MQTT 5's Maximum Packet Size counts)
    /// and PUBLISH packets or wills above `maximum_qos`.
    pub fn new(max_packet_size: usize, maximum_qos: QoS) -> Self {
        Decoder { max_packet_size, maximum_qos }
    }

    /// The maximum packet size in force.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Decodes the first packet of a connection, which must be a CONNECT.
    pub fn decode_connect<'a>(&self, input: &'a [u8]) -> Result<Decoded<'a>, ConnectError> {
        let mut version = None;
        let result = self.frame(input).and_then(|frame| match frame {
            Err(partial) => Ok(partial),
            Ok((first, body, consumed)) if first >> 4 == 1 => {
                if first & 0x0f != 0 {
                    return Err(DecodeError::Malformed("CONNECT flags are reserved"));
                }
                let connect = self.connect(body, &mut version)?;
                Ok(Decoded::Complete { packet: Packet::Connect(connect), consumed })
            }
            Ok(_) => Err(DecodeError::Protocol("the first packet is not CONNECT")),
        });
        result.map_err(|error| ConnectError { version, error })
    }

    /// Decodes a packet after the CONNECT, in the `version` it fixed.
    pub fn decode<'a>(&self, version: ProtocolVersion, input: &'a [u8]) -> Result<Decoded<'a>, DecodeError> {
        let (first, body, consumed) = match self.frame(input)? {
            Ok(frame) => frame,
            Err(partial) => return Ok(partial),
        };
        let packet = self.packet(version, first, body)?;
        Ok(Decoded::Complete { packet, consumed })
    }

    /// The fixed header: `Ok(Ok(whole packet))` once all of it is there,
    /// `Ok(Err(Partial))` before.
    fn frame<'a>(&self, input: &'a [u8]) -> Result<Result<RawPacket<'a>, Decoded<'a>>, DecodeError> {
        let Some(&first) = input.first() else {
            return Ok(Err(Decoded::Partial { needed: 2 }));
        };
        let mut remaining = 0usize;
        let mut header_len = 1;
        loop {
            let Some(&byte) = input.get(header_len) else {
                return Ok(Err(Decoded::Partial { needed: header_len + 1 }));
            };
            remaining |= usize::from(byte & 0x7f) << (7 * (header_len - 1));
            header_len += 1;
            if byte & 0x80 == 0 {
                if byte == 0 && header_len > 2 {
                    return Err(DecodeError::Malformed("remaining length not in its shortest form"));
                }
                break;
            }
            if header_len == 5 {
                return Err(DecodeError::Malformed("remaining length longer than four bytes"));
            }
        }
        let len = header_len + remaining;
        if len > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge { len, max: self.max_packet_size });
        }
        match input.get(header_len..len) {
            Some(body) => Ok(Ok((first, body, len))),
            None => Ok(Err(Decoded::Partial { needed: len })),
        }
    }

    fn connect<'a>(&self, body: &'a [u8], version: &mut Option<ProtocolVersion>) -> Result<Connect<'a>, DecodeError> {
        let mut r = Reader::new(body);
        let name = r.utf8()?;
        let level = r.u8()?;
        match (name, level) {
            ("MQTT", 4) => *version = Some(ProtocolVersion::V311),
            ("MQTT", 5) => *version = Some(ProtocolVersion::V5),
            ("MQTT" | "MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
            _ => return Err(DecodeError::Malformed("protocol name is not MQTT")),
        }
        let v5 = *version == Some(ProtocolVersion::V5);
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::Malformed("CONNECT reserved flag set"));
        }
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
        let will_retain = flags & 0x20 != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::Malformed("will QoS or retain without a will"));
        }
        let (has_password, has_username) = (flags & 0x40 != 0, flags & 0x80 != 0);
        if !v5 && has_password && !has_username {
            return Err(DecodeError::Malformed("password without a user name"));
        }
        let keep_alive = r.u16()?;
        let properties = if v5 { r.properties(ctx::CONNECT)? } else { Properties::EMPTY };
        let client_id = r.utf8()?;
        let will = if will_flag {
            let properties = if v5 { r.properties(ctx::WILL)? } else { Properties::EMPTY };
            let topic = r.utf8()?;
            let payload = r.binary()?;
            check_topic_name(topic, false)?;
            if will_qos > self.maximum_qos {
                return Err(DecodeError::QosNotSupported(will_qos));
            }
            Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
        } else {
            None
        };
        let username = if has_username { Some(r.utf8()?) } else { None };
        let password = if has_password { Some(r.binary()?) } else { None };
        r.finish()?;
        Ok(Connect {
            version: version.unwrap_or(ProtocolVersion::V311),
            client_id,
            clean_start: flags & 0x02 != 0,
            keep_alive,
            will,
            username,
            password,
            properties,
        })
    }

    fn packet<'a>(&self, version: ProtocolVersion, first: u8, body: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        let v5 = version == ProtocolVersion::V5;
        let (kind, flags) = (first >> 4, first & 0x0f);
        let expected_flags = match kind {
            3 => flags,
            6 | 8 | 10 => 0x02,
            _ => 0,
        };
        if flags != expected_flags {
            return Err(DecodeError::Malformed("reserved flags of the fixed header"));
        }
        let mut r = Reader::new(body);
        let packet = match kind {
            1 => return Err(DecodeError::Protocol("a second CONNECT")),
            2 => {
                let ack_flags = r.u8()?;
                if ack_flags & 0xfe != 0 {
                    return Err(DecodeError::Malformed("CONNACK reserved flags"));
                }
                let code = r.u8()?;
                let properties = if v5 { r.properties(ctx::CONNACK)? } else { Properties::EMPTY };
                Packet::ConnAck(ConnAck { session_present: ack_flags == 1, code, properties })
            }
            3 => Packet::Publish(self.publish(v5, flags, &mut r)?),
            4..=7 => {
                let ack = r.ack(v5)?;
                match kind {
                    4 => Packet::PubAck(ack),
                    5 => Packet::PubRec(ack),
                    6 => Packet::PubRel(ack),
                    _ => Packet::PubComp(ack),
                }
            }
            8 => {
                let packet_id = r.packet_id()?;
                let properties = if v5 { r.properties(ctx::SUBSCRIBE)? } else { Properties::EMPTY };
                let mut filters = Vec::new();
                while !r.is_empty() {
                    let filter = r.utf8()?;
                    let options = r.u8()?;
                    let reserved = if v5 { 0xc0 } else { 0xfc };
                    if options & reserved != 0 {
                        return Err(DecodeError::Malformed("subscription options reserved bits"));
                    }
                    let qos = QoS::from_u8(options & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
                    let retain_handling = (options >> 4) & 0x03;
                    if retain_handling == 3 {
                        return Err(DecodeError::Protocol("retain handling 3"));
                    }
                    let options = SubscriptionOptions {
                        qos,
                        no_local: options & 0x04 != 0,
                        retain_as_published: options & 0x08 != 0,
                        retain_handling,
                    };
                    filters.push(SubscribeFilter { filter, options });
                }
                if filters.is_empty() {
                    return Err(DecodeError::Protocol("SUBSCRIBE without a filter"));
                }
                Packet::Subscribe(Subscribe { packet_id, properties, filters })
            }
            9 | 11 => {
                let packet_id = r.packet_id()?;
                let ctx = if kind == 9 { ctx::SUBACK } else { ctx::UNSUBACK };
                let properties = if v5 { r.properties(ctx)? } else { Properties::EMPTY };
                let codes = r.rest();
                if kind == 9 {
                    if codes.is_empty() {
                        return Err(DecodeError::Protocol("SUBACK without a code"));
                    }
                    Packet::SubAck(SubAck { packet_id, properties, codes })
                } else {
                    if v5 == codes.is_empty() {
                        return Err(DecodeError::Malformed("UNSUBACK payload"));
                    }
                    Packet::UnsubAck(UnsubAck { packet_id, properties, codes })
                }
            }
            10 => {
                let packet_id = r.packet_id()?;
                let properties = if v5 { r.properties(ctx::UNSUBSCRIBE)? } else { Properties::EMPTY };
                let mut filters = Vec::new();
                while !r.is_empty() {
                    filters.push(r.utf8()?);
                }
                if filters.is_empty() {
                    return Err(DecodeError::Protocol("UNSUBSCRIBE without a filter"));
                }
                Packet::Unsubscribe(Unsubscribe { packet_id, properties, filters })
            }
            12 => Packet::PingReq,
            13 => Packet::PingResp,
            14 | 15 if v5 => {
                let ctx = if kind == 14 { ctx::DISCONNECT } else { ctx::AUTH };
                let reason = if r.is_empty() { 0 } else { r.u8()? };
                let properties = if r.is_empty() { Properties::EMPTY } else { r.properties(ctx)? };
                let disconnect = Disconnect { reason, properties };
                if kind == 14 { Packet::Disconnect(disconnect) } else { Packet::Auth(disconnect) }
            }
            14 => Packet::Disconnect(Disconnect { reason: 0, properties: Properties::EMPTY }),
            _ => return Err(DecodeError::Malformed("reserved packet type")),
        };
        r.finish()?;
        Ok(packet)
    }

    fn publish<'a>(&self, v5: bool, flags: u8, r: &mut Reader<'a>) -> Result<Publish<'a>, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
        }
        let topic = r.utf8()?;
        let packet_id = if qos == QoS::AtMostOnce { None } else { Some(r.packet_id()?) };
        let properties = if v5 { r.properties(ctx::PUBLISH)? } else { Properties::EMPTY };
        let payload = r.rest();
        check_topic_name(topic, properties.topic_alias().is_some())?;
        if qos > self.maximum_qos {
            return Err(DecodeError::QosNotSupported(qos));
        }
        Ok(Publish { dup, qos, retain: flags & 0x01 != 0, topic, packet_id, properties, payload })
    }
}

/// A topic name has no wildcard and is not empty, unless a topic alias
/// stands for it (MQTT 5 section 3.3.2.1).
fn check_topic_name(topic: &str, alias: bool) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) || (topic.is_empty() && !alias) {
        return Err(DecodeError::TopicNameInvalid);
    }
    Ok(())
}

/// Which packets may carry a property: one bit per context.
mod ctx {
    pub const CONNECT: u16 = 1 << 0;
    pub const CONNACK: u16 = 1 << 1;
    pub const PUBLISH: u16 = 1 << 2;
    pub const WILL: u16 = 1 << 3;
    pub const ACK: u16 = 1 << 4;
    pub const SUBSCRIBE: u16 = 1 << 5;
    pub const SUBACK: u16 = 1 << 6;
    pub const UNSUBSCRIBE: u16 = 1 << 7;
    pub const UNSUBACK: u16 = 1 << 8;
    pub const DISCONNECT: u16 = 1 << 9;
    pub const AUTH: u16 = 1 << 10;
    pub const ALL: u16 = (1 << 11) - 1;

    /// The contexts property `id` is allowed in (MQTT 5 section 2.2.2.2).
    pub fn allowed(id: u8) -> u16 {
        match id {
            0x01 | 0x02 | 0x03 | 0x08 | 0x09 => PUBLISH | WILL,
            0x0B => PUBLISH | SUBSCRIBE,
            0x11 => CONNECT | CONNACK | DISCONNECT,
            0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => CONNACK,
            0x15 | 0x16 => CONNECT | CONNACK | AUTH,
            0x17 | 0x19 => CONNECT,
            0x18 => WILL,
            0x1C => CONNACK | DISCONNECT,
            0x1F => CONNACK | ACK | SUBACK | UNSUBACK | DISCONNECT | AUTH,
            0x21 | 0x22 | 0x27 => CONNECT | CONNACK,
            0x23 => PUBLISH,
            0x26 => ALL,
            _ => 0,
        }
    }
}

/// A cursor over the body of one whole packet: running out of bytes here
/// means the remaining length lied, so it is malformed, not partial.
pub(crate) struct Reader<'a> {
    input: &'a [u8],
}

const SHORT: DecodeError = DecodeError::Malformed("packet shorter than its fields");

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.input.len() {
            return Err(SHORT);
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.input)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.input.is_empty() { Ok(()) } else { Err(DecodeError::Malformed("bytes after the last field")) }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::Malformed("packet identifier 0")),
            id => Ok(id),
        }
    }

    /// A Variable Byte Integer: at most four bytes, in its shortest form.
    fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(DecodeError::Malformed("variable byte integer not in its shortest form"));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("variable byte integer longer than four bytes"))
    }

    fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// An MQTT UTF-8 string: well-formed, and no U+0000 (MQTT 5 1.5.4).
    fn utf8(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed("string is not UTF-8"))?;
        if text.contains('\0') {
            return Err(DecodeError::Malformed("string contains U+0000"));
        }
        Ok(text)
    }

    fn ack(&mut self, v5: bool) -> Result<Ack<'a>, DecodeError> {
        let packet_id = self.packet_id()?;
        let reason = if v5 && !self.is_empty() { self.u8()? } else { 0 };
        let properties = if v5 && !self.is_empty() { self.properties(ctx::ACK)? } else { Properties::EMPTY };
        Ok(Ack { packet_id, reason, properties })
    }

    /// A property block allowed in `context`: each property known, allowed
    /// there and with a valid value, and none repeated that may not be.
    fn properties(&mut self, context: u16) -> Result<Properties<'a>, DecodeError> {
        let len = self.varint()?;
        let raw = self.take(len as usize)?;
        let mut block = Reader::new(raw);
        let mut seen = 0u64;
        while !block.is_empty() {
            let property = block.property()?;
            let id = property.id();
            if ctx::allowed(id) & context == 0 {
                return Err(DecodeError::Malformed("property not allowed in this packet"));
            }
            let repeatable = id == 0x26 || (id == 0x0B && context == ctx::PUBLISH);
            if seen & (1 << id) != 0 && !repeatable {
                return Err(DecodeError::Protocol("property included more than once"));
            }
            seen |= 1 << id;
        }
        Ok(Properties { raw })
    }

    /// One property, its value checked where the spec bounds it.
    pub(crate) fn property(&mut self) -> Result<Property<'a>, DecodeError> {
        use Property::*;
        let id = self.u8()?;
        let flag = |value: u8| {
            if value > 1 { Err(DecodeError::Protocol("property value other than 0 or 1")) } else { Ok(value) }
        };
        let nonzero_u16 =
            |value: u16| if value == 0 { Err(DecodeError::Protocol("property value 0")) } else { Ok(value) };
        Ok(match id {
            0x01 => PayloadFormatIndicator(flag(self.u8()?)?),
            0x02 => MessageExpiryInterval(self.u32()?),
            0x03 => ContentType(self.utf8()?),
            0x08 => ResponseTopic(self.utf8()?),
            0x09 => CorrelationData(self.binary()?),
            0x0B => match self.varint()? {
                0 => return Err(DecodeError::Protocol("subscription identifier 0")),
                value => SubscriptionIdentifier(value),
            },
            0x11 => SessionExpiryInterval(self.u32()?),
            0x12 => AssignedClientIdentifier(self.utf8()?),
            0x13 => ServerKeepAlive(self.u16()?),
            0x15 => AuthenticationMethod(self.utf8()?),
            0x16 => AuthenticationData(self.binary()?),
            0x17 => RequestProblemInformation(flag(self.u8()?)?),
            0x18 => WillDelayInterval(self.u32()?),
            0x19 => RequestResponseInformation(flag(self.u8()?)?),
            0x1A => ResponseInformation(self.utf8()?),
            0x1C => ServerReference(self.utf8()?),
            0x1F => ReasonString(self.utf8()?),
            0x21 => ReceiveMaximum(nonzero_u16(self.u16()?)?),
            0x22 => TopicAliasMaximum(self.u16()?),
            0x23 => TopicAlias(nonzero_u16(self.u16()?)?),
            0x24 => MaximumQos(flag(self.u8()?)?),
            0x25 => RetainAvailable(flag(self.u8()?)?),
            0x26 => UserProperty(self.utf8()?, self.utf8()?),
            0x27 => match self.u32()? {
                0 => return Err(DecodeError::Protocol("maximum packet size 0")),
                value => MaximumPacketSize(value),
            },
            0x28 => WildcardSubscriptionAvailable(flag(self.u8()?)?),
            0x29 => SubscriptionIdentifierAvailable(flag(self.u8()?)?),
            0x2A => SharedSubscriptionAvailable(flag(self.u8()?)?),
            _ => return Err(DecodeError::Malformed("unknown property identifier")),
        })
    }
}
