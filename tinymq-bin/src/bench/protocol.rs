//! The protocols the bench speaks, each a pair of pure functions (encode
//! into a caller's buffer; parse the start of a buffer into an [`Event`]
//! or "incomplete") matched on [`Protocol`]: tinymq's here, NATS's in
//! `nats.rs`, MQTT's in `mqtt.rs`.

use std::str::FromStr;

use tinymq_core::codec::parse_reason;
use tinymq_core::{Decoded, Decoder, Frame, FrameType};

use super::event::Event;
use super::{mqtt, nats};

/// The protocol the bench speaks to the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// tinymq's binary protocol.
    Tinymq,
    /// The NATS text protocol (nats-server).
    Nats,
    /// MQTT 3.1.1 at QoS 0 or 1 (mosquitto, tinymq's `--mqtt`).
    Mqtt,
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tinymq" => Ok(Protocol::Tinymq),
            "nats" => Ok(Protocol::Nats),
            "mqtt" => Ok(Protocol::Mqtt),
            _ => Err("expected tinymq, nats or mqtt".into()),
        }
    }
}

impl Protocol {
    /// Its `--protocol` name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tinymq => "tinymq",
            Protocol::Nats => "nats",
            Protocol::Mqtt => "mqtt",
        }
    }

    /// Where each broker listens by default.
    pub fn default_address(self) -> &'static str {
        match self {
            Protocol::Tinymq | Protocol::Mqtt => "127.0.0.1:1883",
            Protocol::Nats => "127.0.0.1:4222",
        }
    }

    /// A topic as the protocol spells it: NATS separates levels with dots.
    pub fn topic(self, topic: &str) -> String {
        match self {
            Protocol::Nats => nats::subject(topic),
            Protocol::Tinymq | Protocol::Mqtt => topic.to_owned(),
        }
    }

    /// Appends one publish of `payload` to `topic` (as [`Protocol::topic`] spells it).
    pub fn encode_publish(self, topic: &str, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Protocol::Tinymq => Frame::publish(topic, payload, "", false).encode(out),
            Protocol::Nats => nats::encode_publish(topic, payload, out),
            Protocol::Mqtt => mqtt::encode_publish(topic, payload, out),
        }
    }

    /// The connect request; [`Client::confirm`](super::client::Client::confirm) waits for its answer.
    pub(super) fn encode_connect(self, client_id: &str, out: &mut Vec<u8>) {
        match self {
            Protocol::Tinymq => Frame::connect(client_id, b"").encode(out),
            Protocol::Nats => nats::encode_connect(client_id, out),
            Protocol::Mqtt => mqtt::encode_connect(client_id, out),
        }
    }

    /// The subscribe request (`sid`: NATS's subscription id; `qos`: MQTT's);
    /// [`Client::confirm`](super::client::Client::confirm) waits for its answer.
    pub(super) fn encode_subscribe(self, topic: &str, sid: u64, qos: u8, out: &mut Vec<u8>) {
        match self {
            Protocol::Tinymq => Frame::with_topic(FrameType::Subscribe, topic).encode(out),
            Protocol::Nats => nats::encode_subscribe(topic, sid, out),
            Protocol::Mqtt => mqtt::encode_subscribe(topic, qos, out),
        }
    }

    pub(super) fn encode_ping(self, out: &mut Vec<u8>) {
        match self {
            Protocol::Tinymq => Frame::empty(FrameType::Ping).encode(out),
            Protocol::Nats => nats::encode_ping(out),
            Protocol::Mqtt => mqtt::encode_ping(out),
        }
    }

    pub(super) fn parse<'a>(self, decoder: &Decoder, input: &'a [u8]) -> Result<Option<(Event<'a>, usize)>, String> {
        match self {
            Protocol::Tinymq => parse_tinymq(decoder, input),
            Protocol::Nats => nats::parse(input),
            Protocol::Mqtt => mqtt::parse(input),
        }
    }
}

fn parse_tinymq<'a>(decoder: &Decoder, input: &'a [u8]) -> Result<Option<(Event<'a>, usize)>, String> {
    let (frame, consumed) = match decoder.decode(input) {
        Ok(Decoded::Frame { frame, consumed }) => (frame, consumed),
        Ok(Decoded::Incomplete { .. }) => return Ok(None),
        Err(error) => return Err(format!("the broker sent a bad frame: {error}")),
    };
    let event = match frame.kind {
        FrameType::Publish => Event::Message(frame.payload),
        FrameType::ConnAck | FrameType::SubAck => Event::Ack,
        FrameType::Pong => Event::Pong,
        FrameType::Disconnect => {
            let reason = parse_reason(frame.payload).map_or("no reason".to_owned(), |(c, t)| format!("{c} {t}"));
            return Err(format!("the broker disconnected: {reason}"));
        }
        _ => Event::Other,
    };
    Ok(Some((event, consumed)))
}
