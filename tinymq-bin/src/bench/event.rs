//! What a bench connection reads, whatever the protocol: each parser
//! (`client.rs` for tinymq, `mqtt.rs`, `nats.rs`) yields these.

/// What the broker sent, as far as the bench cares.
#[derive(Debug)]
pub enum Event<'a> {
    /// A delivered message's payload, borrowing the read buffer.
    Message(&'a [u8]),
    /// A delivered MQTT QoS 1 message and its packet id, to acknowledge.
    MessageToAck(&'a [u8], u16),
    /// ConnAck or SubAck (tinymq, MQTT).
    Ack,
    /// An MQTT PUBACK: the broker took one of our QoS 1 publishes.
    PubAck,
    /// A keep-alive probe from the server; NATS wants a PONG back.
    Ping,
    /// The answer to our ping.
    Pong,
    /// Anything else (NATS INFO and +OK, a tinymq Ping).
    Other,
}
