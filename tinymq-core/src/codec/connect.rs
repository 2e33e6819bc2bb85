//! Connect's session and will options (PROTOCOL.md, "Connect").
//!
//! A Connect with neither SESSION nor WILL set is version 1's: its payload
//! is the credentials alone. With either flag, the payload starts with a
//! fixed options block, then the will payload, then the credentials:
//!
//! ```text
//! session_expiry u32 | will_flags u8 | will_len u32 | will payload | credentials
//! ```
//!
//! `session_expiry` is in seconds (0: the broker's default) and must be 0
//! without SESSION; `will_flags` is `0x01` RETAIN, `0x02` QoS 1, and must be
//! 0 without WILL, as must `will_len`. The will's topic is the frame's topic
//! field, which must be empty without WILL (the decoder checks that).

use super::{Frame, FrameType, Qos, ReasonCode};

/// Bytes of the options block before the will payload.
pub(crate) const OPTIONS_LEN: usize = 4 + 1 + 4;

const WILL_RETAIN: u8 = 0x01;
const WILL_QOS1: u8 = 0x02;

/// The message a broker publishes for a client that disappears without
/// a Disconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Will<'a> {
    /// Its topic (checked by the session as any topic name).
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// Whether it is published with RETAIN.
    pub retain: bool,
    /// The QoS it is published at.
    pub qos: Qos,
}

/// What a Connect asks for besides its client id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectOptions<'a> {
    /// Keep the session (subscriptions, queued QoS 1 messages) after the
    /// connection ends and resume a stored one: `clean_session = false`.
    pub persistent: bool,
    /// How long a persistent session outlives its connection, in seconds;
    /// 0 asks for the broker's default. Always 0 when not `persistent`.
    pub session_expiry: u32,
    /// The will, if any.
    pub will: Option<Will<'a>>,
    /// `user \0 password`, or empty.
    pub credentials: &'a [u8],
}

/// Why a Connect's options are malformed. Each is a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The payload ends inside the options block or the will payload.
    #[error("connect options are truncated")]
    Truncated,
    /// A session expiry without the SESSION flag.
    #[error("session expiry without a persistent session")]
    ExpiryWithoutSession,
    /// Will flags or a will payload without the WILL flag.
    #[error("will options without the will flag")]
    WillWithoutFlag,
    /// Will flag bits other than RETAIN and QoS 1.
    #[error("will flags {0:#04x} are not allowed")]
    BadWillFlags(u8),
    /// A will without a topic.
    #[error("a will needs a topic")]
    WillWithoutTopic,
}

impl ConnectError {
    /// The reason code of the Disconnect that answers it.
    pub fn reason(&self) -> ReasonCode {
        ReasonCode::ProtocolError
    }
}

impl<'a> ConnectOptions<'a> {
    /// The options of a decoded Connect frame. Never panics on input.
    pub fn parse(frame: &Frame<'a>) -> Result<Self, ConnectError> {
        debug_assert_eq!(frame.kind, FrameType::Connect);
        if !frame.session && !frame.will {
            return Ok(ConnectOptions { credentials: frame.payload, ..Default::default() });
        }
        let payload = frame.payload;
        let block = payload.get(..OPTIONS_LEN).ok_or(ConnectError::Truncated)?;
        let session_expiry = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
        let will_flags = block[4];
        let will_len = u32::from_be_bytes([block[5], block[6], block[7], block[8]]) as usize;
        let rest = &payload[OPTIONS_LEN..];
        if will_len > rest.len() {
            return Err(ConnectError::Truncated);
        }
        let (will_payload, credentials) = rest.split_at(will_len);
        if session_expiry != 0 && !frame.session {
            return Err(ConnectError::ExpiryWithoutSession);
        }
        if !frame.will && (will_flags != 0 || will_len != 0) {
            return Err(ConnectError::WillWithoutFlag);
        }
        if will_flags & !(WILL_RETAIN | WILL_QOS1) != 0 {
            return Err(ConnectError::BadWillFlags(will_flags));
        }
        if frame.will && frame.topic.is_empty() {
            return Err(ConnectError::WillWithoutTopic);
        }
        let will = frame.will.then_some(Will {
            topic: frame.topic,
            payload: will_payload,
            retain: will_flags & WILL_RETAIN != 0,
            qos: if will_flags & WILL_QOS1 != 0 { Qos::AtLeastOnce } else { Qos::AtMostOnce },
        });
        Ok(ConnectOptions { persistent: frame.session, session_expiry, will, credentials })
    }

    /// Appends the Connect frame asking for `client_id` with these options.
    /// Without a persistent session or a will it is version 1's Connect,
    /// byte for byte.
    pub fn encode(&self, client_id: &str, out: &mut Vec<u8>) {
        let (session, will) = (self.persistent, self.will.is_some());
        if !session && !will {
            return Frame::connect(client_id, self.credentials).encode(out);
        }
        let will_payload = self.will.map_or(&[][..], |w| w.payload);
        let mut payload = Vec::with_capacity(OPTIONS_LEN + will_payload.len() + self.credentials.len());
        let expiry = if session { self.session_expiry } else { 0 };
        payload.extend_from_slice(&expiry.to_be_bytes());
        let flags = self.will.map_or(0, |w| {
            (if w.retain { WILL_RETAIN } else { 0 }) | (if w.qos == Qos::AtLeastOnce { WILL_QOS1 } else { 0 })
        });
        payload.push(flags);
        let will_len = u32::try_from(will_payload.len()).expect("will payload under 4 GiB");
        payload.extend_from_slice(&will_len.to_be_bytes());
        payload.extend_from_slice(will_payload);
        payload.extend_from_slice(self.credentials);
        let topic = self.will.map_or("", |w| w.topic);
        Frame { session, will, topic, payload: &payload, ..Frame::connect(client_id, &[]) }.encode(out);
    }
}
