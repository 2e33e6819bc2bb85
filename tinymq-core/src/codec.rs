//! The frame format of the tinymq binary protocol (`docs/PROTOCOL.md`).
//!
//! Every frame is `type(1) topic_len(2) topic payload_len(4) payload
//! client_id_len(2) client_id`, big-endian, self-delimiting.
//!
//! [`Decoder::decode`] is incremental in the httparse sense: it takes whatever
//! bytes have arrived and returns either a whole [`Frame`] borrowing from them
//! plus the number of bytes it consumed, or [`Decoded::Incomplete`] with the
//! number of bytes the frame needs so far. Each declared length is checked
//! against its limit as soon as the length itself has arrived, before the
//! caller is asked to buffer the field, so a declared length of 4 GiB costs
//! nothing. The encoder appends to a buffer the caller owns.
//!
//! Acknowledged delivery (QoS 1) adds flag bits to the type byte and, on a
//! QoS 1 Publish and on PubAck, a 2-byte packet id at the front of the
//! payload field; [`Frame::packet_id`] holds it apart from the payload.
//! Connect's session and will options are parsed by [`ConnectOptions`].

use std::fmt;

pub(crate) mod connect;

pub use connect::{ConnectError, ConnectOptions, Will};

/// Bytes of a frame that carry no field content: type, and the three lengths.
pub const FRAME_OVERHEAD: usize = 1 + 2 + 4 + 2;

/// The RETAIN flag, valid only on [`FrameType::Publish`].
pub const FLAG_RETAIN: u8 = 0x80;

/// QoS 1: on Publish, acknowledged delivery with a packet id; on Subscribe,
/// the maximum QoS asked; on SubAck, the QoS granted.
pub const FLAG_QOS1: u8 = 0x40;

/// DUP, on a QoS 1 Publish only: this packet id may have been sent before.
pub const FLAG_DUP: u8 = 0x20;

/// On Connect, a persistent session (`clean_session = false`); on ConnAck,
/// a stored session was resumed.
pub const FLAG_SESSION: u8 = 0x80;

/// On Connect, a will: the topic field holds its topic and the payload
/// starts with the options block (see [`ConnectOptions`]).
pub const FLAG_WILL: u8 = 0x40;

/// Bytes of a packet id, at the front of the payload field when a frame
/// carries one.
pub const PACKET_ID_LEN: usize = 2;

const TYPE_MASK: u8 = 0x1f;

/// The frame types of protocol version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Client → broker, first frame of a connection.
    Connect = 0,
    /// Broker → client, the Connect was accepted.
    ConnAck = 1,
    /// Both directions: a message.
    Publish = 2,
    /// Client → broker: add a subscription.
    Subscribe = 3,
    /// Broker → client: answer to Subscribe.
    SubAck = 4,
    /// Client → broker: remove a subscription.
    Unsubscribe = 5,
    /// Broker → client: answer to Unsubscribe.
    UnsubAck = 6,
    /// Either direction: keep-alive probe.
    Ping = 7,
    /// Broker → client: answer to Ping.
    Pong = 8,
    /// Both directions: close, with a reason from the broker.
    Disconnect = 9,
    /// Both directions: acknowledges the QoS 1 Publish with its packet id.
    PubAck = 10,
}

/// The delivery guarantee of a message or subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Qos {
    /// At most once: no acknowledgement (protocol version 1's only level).
    #[default]
    AtMostOnce = 0,
    /// At least once: acknowledged with PubAck, resent until it is.
    AtLeastOnce = 1,
}

impl Qos {
    /// The QoS for a number, if it is one this protocol knows.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            _ => None,
        }
    }
}

impl FrameType {
    /// The type for a type byte's low five bits, if it is one of ours.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Connect,
            1 => Self::ConnAck,
            2 => Self::Publish,
            3 => Self::Subscribe,
            4 => Self::SubAck,
            5 => Self::Unsubscribe,
            6 => Self::UnsubAck,
            7 => Self::Ping,
            8 => Self::Pong,
            9 => Self::Disconnect,
            10 => Self::PubAck,
            _ => return None,
        })
    }

    /// The flag bits a frame of this type may carry.
    fn allowed_flags(self) -> u8 {
        match self {
            FrameType::Publish => FLAG_RETAIN | FLAG_QOS1 | FLAG_DUP,
            FrameType::Connect => FLAG_SESSION | FLAG_WILL,
            FrameType::ConnAck => FLAG_SESSION,
            FrameType::Subscribe | FrameType::SubAck => FLAG_QOS1,
            _ => 0,
        }
    }

    /// Whether a field must be empty in a frame of this type with `flags`.
    ///
    /// Publish's `client_id` is ignored from clients and set by the broker,
    /// so it is never checked.
    fn must_be_empty(self, field: Field, flags: u8) -> bool {
        use Field::*;
        use FrameType::*;
        match (self, field) {
            // The will's topic.
            (Connect, Topic) => flags & FLAG_WILL == 0,
            (Connect, _) => false,
            (ConnAck, Topic | Payload) => true,
            (ConnAck, ClientId) => false,
            (Publish, _) => false,
            (Subscribe | Unsubscribe, Topic) => false,
            (Subscribe | Unsubscribe, _) => true,
            (SubAck | UnsubAck, ClientId) => true,
            (SubAck | UnsubAck, _) => false,
            (Ping | Pong, _) => true,
            (Disconnect, Payload) => false,
            (Disconnect, _) => true,
            // The payload is the packet id, checked for its length apart.
            (PubAck, Payload) => false,
            (PubAck, _) => true,
        }
    }

    /// Whether a frame of this type with `flags` starts its payload field
    /// with a packet id.
    fn carries_packet_id(self, flags: u8) -> bool {
        match self {
            FrameType::Publish => flags & FLAG_QOS1 != 0,
            FrameType::PubAck => true,
            _ => false,
        }
    }
}

/// The three variable fields of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The topic name or filter.
    Topic,
    /// The payload bytes.
    Payload,
    /// The client id.
    ClientId,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Topic => "topic",
            Field::Payload => "payload",
            Field::ClientId => "client id",
        })
    }
}

/// Reason codes carried by refused SubAck/UnsubAck and broker Disconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum ReasonCode {
    /// Malformed frame, bad order, bad flags.
    ProtocolError = 1,
    /// Bad credentials, peer not allowed, ACL.
    NotAuthorized = 2,
    /// Another connection took this client id.
    SessionTakenOver = 3,
    /// A field over the configured limit.
    FrameTooLarge = 4,
    /// Nothing received for 1.5 × keep-alive.
    KeepAliveTimeout = 5,
    /// The broker is stopping.
    ShuttingDown = 6,
    /// The outbound queue went over its limit.
    SlowConsumer = 7,
    /// A topic name or filter that is not valid.
    InvalidTopic = 8,
    /// The broker holds as many persistent sessions as it may.
    TooManySessions = 9,
}

impl ReasonCode {
    /// The code for a reason byte, if it is a known one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::ProtocolError,
            2 => Self::NotAuthorized,
            3 => Self::SessionTakenOver,
            4 => Self::FrameTooLarge,
            5 => Self::KeepAliveTimeout,
            6 => Self::ShuttingDown,
            7 => Self::SlowConsumer,
            8 => Self::InvalidTopic,
            9 => Self::TooManySessions,
            _ => return None,
        })
    }

    /// The short text PROTOCOL.md gives for the code.
    pub fn text(self) -> &'static str {
        match self {
            Self::ProtocolError => "protocol error",
            Self::NotAuthorized => "not authorized",
            Self::SessionTakenOver => "session taken over",
            Self::FrameTooLarge => "frame too large",
            Self::KeepAliveTimeout => "keep-alive timeout",
            Self::ShuttingDown => "broker shutting down",
            Self::SlowConsumer => "slow consumer",
            Self::InvalidTopic => "invalid topic or filter",
            Self::TooManySessions => "too many sessions",
        }
    }

    /// The code's name in lower snake case, as `/metrics` and STATS label
    /// disconnects.
    pub fn name(self) -> &'static str {
        match self {
            Self::ProtocolError => "protocol_error",
            Self::NotAuthorized => "not_authorized",
            Self::SessionTakenOver => "session_taken_over",
            Self::FrameTooLarge => "frame_too_large",
            Self::KeepAliveTimeout => "keep_alive_timeout",
            Self::ShuttingDown => "shutting_down",
            Self::SlowConsumer => "slow_consumer",
            Self::InvalidTopic => "invalid_topic",
            Self::TooManySessions => "too_many_sessions",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Builds the payload of a refusal: one reason byte, then UTF-8 text.
pub fn reason_payload(code: ReasonCode, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(code as u8);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Splits a refusal payload into its code and text. `None` for an empty
/// payload (an accepted SubAck) or one whose text is not UTF-8.
pub fn parse_reason(payload: &[u8]) -> Option<(u8, &str)> {
    let (&code, text) = payload.split_first()?;
    Some((code, std::str::from_utf8(text).ok()?))
}

/// One decoded or to-be-encoded frame; its fields borrow from elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame type.
    pub kind: FrameType,
    /// The RETAIN flag (Publish only).
    pub retain: bool,
    /// Publish: the QoS it is sent at; Subscribe: the maximum QoS asked;
    /// SubAck: the QoS granted. [`Qos::AtMostOnce`] elsewhere.
    pub qos: Qos,
    /// DUP (a QoS 1 Publish only): the packet id may have been sent before.
    pub dup: bool,
    /// Connect: a persistent session is asked for; ConnAck: a stored
    /// session was resumed.
    pub session: bool,
    /// Connect: the client has a will (topic in `topic`, the rest in the
    /// options block at the front of `payload`, see [`ConnectOptions`]).
    pub will: bool,
    /// The packet id of a QoS 1 Publish or a PubAck (never 0 there); 0 in
    /// every other frame. On the wire it is the first two bytes of the
    /// payload field; `payload` holds only what follows.
    pub packet_id: u16,
    /// Topic name or filter; empty where the type does not use it.
    pub topic: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Client id.
    pub client_id: &'a str,
}

impl<'a> Frame<'a> {
    /// A frame of `kind` with every field empty.
    pub const fn empty(kind: FrameType) -> Self {
        Frame {
            kind,
            retain: false,
            qos: Qos::AtMostOnce,
            dup: false,
            session: false,
            will: false,
            packet_id: 0,
            topic: "",
            payload: &[],
            client_id: "",
        }
    }

    /// A Connect asking for `client_id` (empty: assign one), with optional
    /// credentials already joined as `user \0 password`.
    pub const fn connect(client_id: &'a str, credentials: &'a [u8]) -> Self {
        Frame { payload: credentials, client_id, ..Frame::empty(FrameType::Connect) }
    }

    /// A Publish of `payload` to `topic`, stamped with `client_id`.
    pub const fn publish(topic: &'a str, payload: &'a [u8], client_id: &'a str, retain: bool) -> Self {
        Frame { retain, topic, payload, client_id, ..Frame::empty(FrameType::Publish) }
    }

    /// A QoS 1 Publish of `payload` to `topic` with `packet_id` (not 0),
    /// stamped with `client_id`; `dup` when it may have been sent before.
    pub const fn publish_qos1(
        topic: &'a str,
        payload: &'a [u8],
        client_id: &'a str,
        retain: bool,
        packet_id: u16,
        dup: bool,
    ) -> Self {
        Frame { qos: Qos::AtLeastOnce, packet_id, dup, ..Frame::publish(topic, payload, client_id, retain) }
    }

    /// A PubAck of `packet_id`.
    pub const fn pub_ack(packet_id: u16) -> Self {
        Frame { packet_id, ..Frame::empty(FrameType::PubAck) }
    }

    /// The flag bits of the type byte, from the fields this type uses.
    fn flags(&self) -> u8 {
        let bit = |set: bool, flag: u8| if set { flag } else { 0 };
        let qos1 = bit(self.qos == Qos::AtLeastOnce, FLAG_QOS1);
        match self.kind {
            FrameType::Publish => bit(self.retain, FLAG_RETAIN) | qos1 | bit(self.dup, FLAG_DUP),
            FrameType::Connect => bit(self.session, FLAG_SESSION) | bit(self.will, FLAG_WILL),
            FrameType::ConnAck => bit(self.session, FLAG_SESSION),
            FrameType::Subscribe | FrameType::SubAck => qos1,
            _ => 0,
        }
    }

    fn packet_id_len(&self) -> usize {
        if self.kind.carries_packet_id(self.flags()) { PACKET_ID_LEN } else { 0 }
    }

    /// A frame of `kind` that carries only a topic (Subscribe, Unsubscribe,
    /// and accepted SubAck/UnsubAck).
    pub const fn with_topic(kind: FrameType, topic: &'a str) -> Self {
        Frame { topic, ..Frame::empty(kind) }
    }

    /// The number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        FRAME_OVERHEAD + self.topic.len() + self.packet_id_len() + self.payload.len() + self.client_id.len()
    }

    /// Appends the frame's wire form to `out`.
    ///
    /// # Panics
    ///
    /// If a field is longer than its length prefix can say (64 KiB for topic
    /// and client id, 4 GiB for payload). Fields that came through a
    /// [`Decoder`] or were validated against [`FrameLimits`] never are.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let topic_len = u16::try_from(self.topic.len()).expect("topic longer than 65535 bytes");
        let packet_id_len = self.packet_id_len();
        let payload_len = u32::try_from(packet_id_len + self.payload.len()).expect("payload longer than 4 GiB");
        let id_len = u16::try_from(self.client_id.len()).expect("client id longer than 65535 bytes");
        out.reserve(self.encoded_len());
        out.push(self.kind as u8 | self.flags());
        out.extend_from_slice(&topic_len.to_be_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&payload_len.to_be_bytes());
        if packet_id_len != 0 {
            out.extend_from_slice(&self.packet_id.to_be_bytes());
        }
        out.extend_from_slice(self.payload);
        out.extend_from_slice(&id_len.to_be_bytes());
        out.extend_from_slice(self.client_id.as_bytes());
    }

    /// The frame's wire form as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }
}

/// Upper bounds on the fields of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest topic, in bytes (default 4096; at most 65535 by the format).
    pub max_topic_len: usize,
    /// Longest payload, in bytes (default 1 MiB). A packet id in front of
    /// it comes on top.
    pub max_payload_len: usize,
    /// Longest client id, in bytes (default 256).
    pub max_client_id_len: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_topic_len: 4096, max_payload_len: 1 << 20, max_client_id_len: 256 }
    }
}

impl FrameLimits {
    /// The largest frame these limits admit, in bytes.
    pub fn max_frame_len(&self) -> usize {
        FRAME_OVERHEAD + self.max_topic_len + PACKET_ID_LEN + self.max_payload_len + self.max_client_id_len
    }
}

/// Why a frame could not be decoded. Every variant is fatal for the
/// connection; [`DecodeError::reason`] says what the peer is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The low five bits of the type byte are not a known type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Flag bits the frame type does not allow (see PROTOCOL.md), or DUP
    /// without QoS 1.
    #[error("flags {flags:#04x} are not allowed on {kind:?}")]
    BadFlags {
        /// The frame type the byte named.
        kind: FrameType,
        /// The high three bits as received.
        flags: u8,
    },
    /// A declared length is over the configured limit.
    #[error("{field} of {len} bytes is over the limit of {max}")]
    TooLong {
        /// Which field.
        field: Field,
        /// The declared length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A QoS 1 Publish or a PubAck without a 2-byte packet id, or with 0.
    #[error("{kind:?} needs a non-zero 2-byte packet id")]
    PacketId {
        /// The frame type.
        kind: FrameType,
    },
    /// The topic or client id is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(Field),
    /// A field that this frame type does not use was not empty.
    #[error("{field} must be empty in {kind:?}")]
    UnexpectedField {
        /// The frame type.
        kind: FrameType,
        /// The field that should have been empty.
        field: Field,
    },
}

impl DecodeError {
    /// The reason code a Disconnect for this error carries.
    pub fn reason(&self) -> ReasonCode {
        match self {
            DecodeError::TooLong { .. } => ReasonCode::FrameTooLarge,
            _ => ReasonCode::ProtocolError,
        }
    }
}

/// The result of one [`Decoder::decode`] call that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame, and how many bytes of the input it took.
    Frame {
        /// The frame, borrowing from the input.
        frame: Frame<'a>,
        /// Bytes consumed from the start of the input.
        consumed: usize,
    },
    /// Not enough bytes yet. `needed` is the total length the frame is known
    /// to need so far (a lower bound, never above the limits).
    Incomplete {
        /// Total bytes needed before the next call can make progress.
        needed: usize,
    },
}

/// An incremental frame decoder; it holds only limits, the caller holds the
/// bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decoder {
    limits: FrameLimits,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        Decoder { limits }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &FrameLimits {
        &self.limits
    }

    /// Decodes the first frame of `input`.
    ///
    /// Returns [`Decoded::Incomplete`] when `input` holds only part of a
    /// frame: call again with the same bytes plus more. A length is checked
    /// against its limit as soon as its own bytes have arrived.
    pub fn decode<'a>(&self, input: &'a [u8]) -> Result<Decoded<'a>, DecodeError> {
        let Some(&type_byte) = input.first() else {
            return Ok(Decoded::Incomplete { needed: FRAME_OVERHEAD });
        };
        let kind = FrameType::from_u8(type_byte & TYPE_MASK).ok_or(DecodeError::UnknownType(type_byte & TYPE_MASK))?;
        let flags = type_byte & !TYPE_MASK;
        let dup_without_qos = flags & (FLAG_DUP | FLAG_QOS1) == FLAG_DUP && kind == FrameType::Publish;
        if flags & !kind.allowed_flags() != 0 || dup_without_qos {
            return Err(DecodeError::BadFlags { kind, flags });
        }
        let with_id = kind.carries_packet_id(flags);
        let max_payload =
            if with_id { self.limits.max_payload_len + PACKET_ID_LEN } else { self.limits.max_payload_len };

        let mut reader = Reader { input, pos: 1, kind, flags };
        let topic = match reader.field(2, Field::Topic, self.limits.max_topic_len)? {
            Some(bytes) => bytes,
            None => return Ok(reader.incomplete(4 + 2)),
        };
        let payload = match reader.field(4, Field::Payload, max_payload)? {
            Some(bytes) => bytes,
            None => return Ok(reader.incomplete(2)),
        };
        let client_id = match reader.field(2, Field::ClientId, self.limits.max_client_id_len)? {
            Some(bytes) => bytes,
            None => return Ok(reader.incomplete(0)),
        };
        let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::InvalidUtf8(Field::Topic))?;
        let client_id = std::str::from_utf8(client_id).map_err(|_| DecodeError::InvalidUtf8(Field::ClientId))?;
        let (packet_id, payload) = if with_id {
            // The field's length was checked to hold the id when it arrived.
            let (id, rest) = payload.split_at(PACKET_ID_LEN);
            match u16::from_be_bytes([id[0], id[1]]) {
                0 => return Err(DecodeError::PacketId { kind }),
                id => (id, rest),
            }
        } else {
            (0, payload)
        };
        let qos = if flags & FLAG_QOS1 != 0 && kind != FrameType::Connect { Qos::AtLeastOnce } else { Qos::AtMostOnce };
        let frame = Frame {
            kind,
            retain: kind == FrameType::Publish && flags & FLAG_RETAIN != 0,
            qos,
            dup: flags & FLAG_DUP != 0,
            session: flags & FLAG_SESSION != 0 && kind != FrameType::Publish,
            will: kind == FrameType::Connect && flags & FLAG_WILL != 0,
            packet_id,
            topic,
            payload,
            client_id,
        };
        Ok(Decoded::Frame { frame, consumed: reader.pos })
    }
}

/// A cursor over the input of one decode call.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    kind: FrameType,
    flags: u8,
}

impl<'a> Reader<'a> {
    /// Reads a length prefix of `prefix` bytes, checks it, then the field.
    /// `Ok(None)` means the input ends first; `self.pos` then says how far
    /// the frame is known to reach.
    fn field(&mut self, prefix: usize, field: Field, max: usize) -> Result<Option<&'a [u8]>, DecodeError> {
        let kind = self.kind;
        let Some(len_bytes) = self.input.get(self.pos..self.pos + prefix) else {
            self.pos += prefix;
            return Ok(None);
        };
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        if len != 0 && kind.must_be_empty(field, self.flags) {
            return Err(DecodeError::UnexpectedField { kind, field });
        }
        if field == Field::Payload && kind.carries_packet_id(self.flags) {
            let wrong = if kind == FrameType::PubAck { len != PACKET_ID_LEN } else { len < PACKET_ID_LEN };
            if wrong {
                return Err(DecodeError::PacketId { kind });
            }
        }
        self.pos += prefix;
        let end = self.pos + len;
        let bytes = self.input.get(self.pos..end);
        self.pos = end;
        Ok(bytes)
    }

    /// The Incomplete answer once the input ran out at `self.pos`, with
    /// `rest` more bytes of length prefixes known to follow.
    fn incomplete(&self, rest: usize) -> Decoded<'a> {
        Decoded::Incomplete { needed: self.pos + rest }
    }
}

#[cfg(test)]
pub(crate) mod tests;
