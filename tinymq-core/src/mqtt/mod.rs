//! The MQTT 3.1.1 and 5.0 codec, sans-IO: packets borrowing from the bytes
//! they were decoded from, an incremental [`Decoder`], and [`encode()`].
//!
//! [`MqttClient`] is the client side a bridge drives; its docs give its
//! calling order. [`ServerSession`] is the broker's side of one connection
//! (CONNECT, keep-alive, topic aliases, QoS 1 in flight, wills) and
//! [`broker`] what its requests do to the router, by the same rules as
//! every other face's. The codec is the wire format only.
//!
//! # Calling order
//!
//! 1. The connection holds the bytes read so far and no version. It calls
//!    [`Decoder::decode_connect`] until it returns [`Decoded::Complete`] with
//!    a [`Packet::Connect`]; `Partial { needed }` means read more (the
//!    declared size was already checked against the maximum packet size,
//!    so buffering up to `needed` is safe).
//! 2. The CONNECT's [`Connect::version`] is the connection's from then on.
//!    Every later packet comes from [`Decoder::decode`] with that version.
//!    After each `Complete { consumed, .. }` the caller drops `consumed`
//!    bytes and decodes again, until `Partial`.
//! 3. Packets to send are built as [`Packet`] values and appended to the
//!    connection's output with [`encode()`] in the same version.
//! 4. Every error is fatal for that one connection. [`ConnectError::refusal`]
//!    or [`DecodeError::refusal`] says what to send before closing: a
//!    CONNACK, an MQTT 5 DISCONNECT with the reason code, or nothing.
//!
//! ```
//! use tinymq_core::mqtt::{self, Decoded, Decoder, Packet, ProtocolVersion};
//!
//! let decoder = Decoder::default();
//! // What `mosquitto_pub -V mqttv311 -i pub311 -t a/b -m hello` sends.
//! let input = [
//!     0x10, 0x12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 6, b'p', b'u', b'b', b'3', b'1', b'1',
//!     0x30, 0x0a, 0, 3, b'a', b'/', b'b', b'h', b'e', b'l', b'l', b'o',
//! ];
//! let Ok(Decoded::Complete { packet: Packet::Connect(connect), consumed }) = decoder.decode_connect(&input) else {
//!     panic!("not a CONNECT");
//! };
//! assert_eq!((connect.version, connect.client_id), (ProtocolVersion::V311, "pub311"));
//! let Ok(Decoded::Complete { packet: Packet::Publish(publish), .. }) = decoder.decode(connect.version, &input[consumed..])
//! else {
//!     panic!("not a PUBLISH");
//! };
//! assert_eq!((publish.topic, publish.payload), ("a/b", &b"hello"[..]));
//!
//! // A broken packet after CONNECT: in 3.1.1 the connection is just closed.
//! let error = decoder.decode(connect.version, &[0x30, 0x02, 0, 9]).unwrap_err();
//! assert_eq!(error.refusal(connect.version), mqtt::Refusal::Close);
//! ```
//!
//! # What is supported
//!
//! | feature | 3.1.1 | 5.0 |
//! |---|---|---|
//! | CONNECT / CONNACK, will, user name and password | yes | yes, with properties |
//! | PUBLISH QoS 0 and 1, PUBACK, retain flag | yes | yes |
//! | PUBLISH QoS 2, PUBREC / PUBREL / PUBCOMP | refused, see below | refused, see below |
//! | SUBSCRIBE / SUBACK, UNSUBSCRIBE / UNSUBACK | yes | yes, with subscription options |
//! | PINGREQ / PINGRESP, DISCONNECT | yes | yes, with reason and properties |
//! | AUTH (enhanced authentication) | no such packet | decoded, so it can be refused |
//! | properties | none | all of section 2.2.2.2, checked: known, allowed in the packet, no forbidden repeats, bounded values |
//! | maximum packet size | checked from the fixed header | the same, and 0x95 Packet too large |
//! | UTF-8 strings | well-formed, no U+0000 | the same |
//!
//! **QoS 2.** tinymq offers QoS 0 and 1. The [`Decoder`] is given the maximum
//! QoS (1 for a broker, the default), and a PUBLISH or a will above it is
//! [`DecodeError::QosNotSupported`]:
//!
//! * in MQTT 5 the broker announces `Maximum QoS 1` in its CONNACK, a QoS 2
//!   PUBLISH is then a protocol error answered with DISCONNECT 0x9B "QoS not
//!   supported", and a QoS 2 will is refused with CONNACK 0x9B (MQTT 5
//!   sections 3.2.2.3.4 and 3.3.1.2);
//! * MQTT 3.1.1 has no way to say so. SUBSCRIBE asking for QoS 2 is granted
//!   QoS 1 (SUBACK return code 1, which 3.1.1 allows), and a QoS 2 PUBLISH
//!   or will closes the connection without an answer, as for any packet the
//!   server will not process (section 4.8); a client that asks for QoS 2
//!   only after being granted 1 is the only one affected.
//!
//! PUBREC, PUBREL and PUBCOMP are decoded all the same, so the session can
//! answer them as a protocol error rather than as garbage.
//!
//! # Left to the session
//!
//! Rules that need the connection's state, not just the bytes: an empty
//! client id with Clean Session 0 in 3.1.1 (CONNACK 2); resolving topic
//! aliases against the Topic Alias Maximum the broker announced (0x94);
//! Receive Maximum (0x93) and the client's Maximum Packet Size for what the
//! broker sends; a Subscription Identifier in a PUBLISH from a client (a
//! protocol error, which the decoder allows because servers send them);
//! topic filter syntax (SUBACK 0x8F per filter, not a disconnect); a
//! non-zero Session Expiry in DISCONNECT after a CONNECT with 0; answering
//! AUTH; keep-alive (1.5 times the interval) and the will delay.

pub mod broker;
mod client;
mod client_options;
mod decode;
mod encode;
mod packet;
mod session;

#[cfg(test)]
mod tests;

pub use client::{
    AckTicket, ConnectionError, MqttClient, MqttEvent, MqttMessage, MqttStats, ORIGIN_PROPERTY, SendError,
};
pub use client_options::{MqttClientConfig, MqttLevel, MqttVersion};
pub use decode::{ConnectError, DecodeError, Decoded, Decoder, MAX_REMAINING_LENGTH, Refusal};
pub use encode::{encode, to_vec};
pub use packet::{
    Ack, ConnAck, Connect, Disconnect, Packet, Properties, PropertiesBuf, Property, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use session::{Request, ServerSession, SessionConfig, Step, Subscription, WillMessage};
