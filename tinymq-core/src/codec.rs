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
        Frame { kind, retain: false, topic: "", payload: &[], client_id: "" }
    }

    /// A Connect asking for `client_id` (empty: assign one), with optional
    /// credentials already joined as `user \0 password`.
    pub const fn connect(client_id: &'a str, credentials: &'a [u8]) -> Self {
        Frame { payload: credentials, client_id, ..Frame::empty(FrameType::Connect) }
    }

    /// A Publish of `payload` to `topic`, stamped with `client_id`.
    pub const fn publish(topic: &'a str, payload: &'a [u8], client_id: &'a str, retain: bool) -> Self {
        Frame { kind: FrameType::Publish, retain, topic, payload, client_id }
    }

    /// A frame of `kind` that carries only a topic (Subscribe, Unsubscribe,
    /// and accepted SubAck/UnsubAck).
    pub const fn with_topic(kind: FrameType, topic: &'a str) -> Self {
        Frame { topic, ..Frame::empty(kind) }
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
        FrameLimits { max_topic_len: 4096, max_payload_len: 1 << 20, max_client_id_len: 256 }
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
            frame: Frame { kind, retain: flags == FLAG_RETAIN, topic, payload, client_id },
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
    fn field(
        &mut self,
        prefix: usize,
        field: Field,
        max: usize,
        kind: FrameType,
    ) -> Result<Option<&'a [u8]>, DecodeError> {
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
        (
            "publish",
            "02 0003 612f62 00000002 6869 0008 73656e736f722d31",
            Frame::publish("a/b", b"hi", "sensor-1", false),
        ),
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
        let spec = include_str!("../../docs/PROTOCOL.md");
        for (name, text, _) in VECTORS {
            assert!(spec.contains(&format!("| `{text}` |")), "{name} is not in docs/PROTOCOL.md");
        }
    }

    #[test]
    fn every_frame_type_has_a_vector() {
        for value in 0..=9 {
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
        for (byte, kind) in [(0x0a, 10), (0x1f, 31), (0x8a, 10), (0xff, 31)] {
            assert_eq!(decoder.decode(&[byte]), Err(DecodeError::UnknownType(kind)), "{byte:#04x}");
        }
    }

    #[test]
    fn flag_bits_other_than_retain_on_publish_are_refused() {
        let decoder = Decoder::default();
        for (byte, kind, flags) in [
            (0x83, Subscribe, 0x80),
            (0x80, Connect, 0x80),
            (0x89, Disconnect, 0x80),
            (0x42, Publish, 0x40),
            (0x20, Connect, 0x20),
            (0x22, Publish, 0x20),
            (0xc2, Publish, 0xc0),
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
        assert_eq!(
            decoder.decode(&hex("00 0000 00000000 0100")),
            Ok(Decoded::Incomplete { needed: FRAME_OVERHEAD + 256 })
        );
    }

    #[test]
    fn small_limits_refuse_the_vectors_that_exceed_them() {
        let limits = FrameLimits { max_topic_len: 3, max_payload_len: 2, max_client_id_len: 1 };
        let decoder = Decoder::new(limits);
        assert_eq!(limits.max_frame_len(), FRAME_OVERHEAD + 6);
        let too_long = |field, len, max| Err(DecodeError::TooLong { field, len, max });
        assert_eq!(decoder.decode(&hex("03 0009")), too_long(Field::Topic, 9, 3));
        assert_eq!(decoder.decode(&hex("09 0000 00000013")), too_long(Field::Payload, 0x13, 2));
        assert_eq!(decoder.decode(&hex("02 0003 612f62 00000002 6869 0008")), too_long(Field::ClientId, 8, 1));
        let fits = hex("82 0003 612f62 00000002 6f6e 0001 63");
        let frame = Frame::publish("a/b", b"on", "c", true);
        assert_eq!(decoder.decode(&fits), Ok(Decoded::Frame { frame, consumed: limits.max_frame_len() }));
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
        assert_eq!(
            decoder.decode(&hex("01 0000 00000000 0003 eda080")),
            Err(DecodeError::InvalidUtf8(Field::ClientId))
        );
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

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }
}
