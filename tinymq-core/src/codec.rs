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

use std::fmt;

/// Bytes of a frame that carry no field content: type, and the three lengths.
pub const FRAME_OVERHEAD: usize = 1 + 2 + 4 + 2;

/// The RETAIN flag, valid only on [`FrameType::Publish`].
pub const FLAG_RETAIN: u8 = 0x80;

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
            _ => return None,
        })
    }

    /// Whether a field must be empty in a frame of this type.
    ///
    /// Publish's `client_id` is ignored from clients and set by the broker,
    /// so it is never checked.
    fn must_be_empty(self, field: Field) -> bool {
        use Field::*;
        use FrameType::*;
        match (self, field) {
            (Connect, Topic) => true,
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
            topic: "",
            payload: &[],
            client_id: "",
        }
    }

    /// A Connect asking for `client_id` (empty: assign one), with optional
    /// credentials already joined as `user \0 password`.
    pub const fn connect(client_id: &'a str, credentials: &'a [u8]) -> Self {
        Frame {
            payload: credentials,
            client_id,
            ..Frame::empty(FrameType::Connect)
        }
    }

    /// A Publish of `payload` to `topic`, stamped with `client_id`.
    pub const fn publish(topic: &'a str, payload: &'a [u8], client_id: &'a str, retain: bool) -> Self {
        Frame {
            kind: FrameType::Publish,
            retain,
            topic,
            payload,
            client_id,
        }
    }

    /// A frame of `kind` that carries only a topic (Subscribe, Unsubscribe,
    /// and accepted SubAck/UnsubAck).
    pub const fn with_topic(kind: FrameType, topic: &'a str) -> Self {
        Frame {
            topic,
            ..Frame::empty(kind)
        }
    }

    /// The number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        FRAME_OVERHEAD + self.topic.len() + self.payload.len() + self.client_id.len()
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
        let payload_len = u32::try_from(self.payload.len()).expect("payload longer than 4 GiB");
        let id_len = u16::try_from(self.client_id.len()).expect("client id longer than 65535 bytes");
        out.reserve(self.encoded_len());
        let flags = if self.retain { FLAG_RETAIN } else { 0 };
        out.push(self.kind as u8 | flags);
        out.extend_from_slice(&topic_len.to_be_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&payload_len.to_be_bytes());
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
    /// Longest payload, in bytes (default 1 MiB).
    pub max_payload_len: usize,
    /// Longest client id, in bytes (default 256).
    pub max_client_id_len: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_topic_len: 4096,
            max_payload_len: 1 << 20,
            max_client_id_len: 256,
        }
    }
}

impl FrameLimits {
    /// The largest frame these limits admit, in bytes.
    pub fn max_frame_len(&self) -> usize {
        FRAME_OVERHEAD + self.max_topic_len + self.max_payload_len + self.max_client_id_len
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
    /// Flag bits other than RETAIN-on-Publish were set.
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
        if flags != 0 && !(kind == FrameType::Publish && flags == FLAG_RETAIN) {
            return Err(DecodeError::BadFlags { kind, flags });
        }

        let mut reader = Reader { input, pos: 1 };
        let topic = match reader.field(2, Field::Topic, self.limits.max_topic_len, kind)? {
            Some(bytes) => bytes,
            None => return Ok(reader.incomplete(4 + 2)),
        };
        let payload = match reader.field(4, Field::Payload, self.limits.max_payload_len, kind)? {
            Some(bytes) => bytes,
            None => return Ok(reader.incomplete(2)),
        };
        let client_id = match reader.field(2, Field::ClientId, self.limits.max_client_id_len, kind)? {
            Some(bytes) => bytes,
            None => return Ok(reader.incomplete(0)),
        };
        let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::InvalidUtf8(Field::Topic))?;
        let client_id = std::str::from_utf8(client_id).map_err(|_| DecodeError::InvalidUtf8(Field::ClientId))?;
        Ok(Decoded::Frame {
            frame: Frame {
                kind,
                retain: flags == FLAG_RETAIN,
                topic,
                payload,
                client_id,
            },
            consumed: reader.pos,
        })
    }
}

/// A cursor over the input of one decode call.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads a length prefix of `prefix` bytes, checks it, then the field.
    /// `Ok(None)` means the input ends first; `self.pos` then says how far
    /// the frame is known to reach.
    fn field(&mut self, prefix: usize, field: Field, max: usize, kind: FrameType) -> Result<Option<&'a [u8]>, DecodeError> {
        let Some(len_bytes) = self.input.get(self.pos..self.pos + prefix) else {
            self.pos += prefix;
            return Ok(None);
        };
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        if len != 0 && kind.must_be_empty(field) {
            return Err(DecodeError::UnexpectedField { kind, field });
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
mod tests {
    use super::*;

    #[test]
    fn protocol_md_test_vector() {
        let bytes = hex("02 0013 73656e736f72732f74656d7065726174757265 00000004 32332e35 0000");
        let frame = Frame::publish("sensors/temperature", b"23.5", "", false);
        assert_eq!(frame.to_vec(), bytes);
        assert_eq!(
            Decoder::default().decode(&bytes),
            Ok(Decoded::Frame { frame, consumed: bytes.len() })
        );
    }

    #[test]
    fn every_split_point_is_incomplete_then_whole() {
        let bytes = Frame::publish("a/b", b"hello", "me", true).to_vec();
        let decoder = Decoder::default();
        for cut in 0..bytes.len() {
            match decoder.decode(&bytes[..cut]) {
                Ok(Decoded::Incomplete { needed }) => assert!(needed > cut && needed <= bytes.len(), "cut {cut} needed {needed}"),
                other => panic!("cut {cut}: {other:?}"),
            }
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

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }
}
