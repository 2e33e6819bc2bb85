//! What the broker sends a client: PUBLISH packets at QoS 0, and QoS 1
//! ones through an in-flight window of packet ids; deliveries beyond the
//! window wait, bounded in bytes by the outbound limit. And which of a
//! publisher's properties go along.

use std::collections::VecDeque;
use std::sync::Arc;

use super::ServerSession;
use crate::codec::ReasonCode as Cause;
use crate::durable::Transmit;
use crate::mqtt::encode;
use crate::mqtt::packet::{Packet, Properties, PropertiesBuf, Property, ProtocolVersion, Publish, QoS};
use crate::router::Delivery;
use crate::session::Closed;

/// The QoS 1 deliveries of one connection: packet ids sent and not yet
/// acknowledged, and those waiting for a free slot.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Packet ids in flight, oldest first (acknowledgements usually come
    /// in order, so the front is checked first).
    inflight: VecDeque<u16>,
    /// The window: the broker's maximum, lowered to the client's Receive
    /// Maximum.
    window: u16,
    next_id: u16,
    /// Deliveries waiting for the window, with their RETAIN flag.
    waiting: VecDeque<(Arc<Delivery>, bool)>,
    waiting_bytes: usize,
}

impl Outgoing {
    pub(super) fn new(max_inflight: u16) -> Self {
        Outgoing {
            inflight: VecDeque::new(),
            window: max_inflight.max(1),
            next_id: 0,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
        }
    }

    /// Lowers the window to the client's Receive Maximum.
    pub(super) fn limit_window(&mut self, receive_maximum: u16) {
        self.window = self.window.min(receive_maximum).max(1);
    }

    pub(super) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// A PUBACK: its id is free again. An unknown id is ignored (a late
    /// acknowledgement after nothing was resent).
    pub(super) fn acknowledged(&mut self, packet_id: u16) {
        if let Some(at) = self.inflight.iter().position(|&id| id == packet_id) {
            self.inflight.remove(at);
        }
    }

    /// A packet id not in flight, if the window has room.
    fn claim(&mut self) -> Option<u16> {
        if self.inflight.len() >= usize::from(self.window) {
            return None;
        }
        loop {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains(&self.next_id) {
                self.inflight.push_back(self.next_id);
                return Some(self.next_id);
            }
        }
    }
}

/// The size of a PUBLISH on the wire, to compare with the client's
/// Maximum Packet Size before encoding it.
fn publish_size(version: ProtocolVersion, topic: &str, payload: usize, qos: QoS, properties: usize) -> usize {
    let properties = match version {
        ProtocolVersion::V5 => varint_len(properties) + properties,
        ProtocolVersion::V311 => 0,
    };
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + packet_id + properties + payload;
    1 + varint_len(remaining) + remaining
}

/// Bytes of a variable byte integer.
fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The properties of a PUBLISH or will that travel with the message to
/// MQTT 5 subscribers (MQTT 5 section 3.3.2.3): payload format, content
/// type, response topic, correlation data and user properties, in their
/// order. Topic aliases and subscription identifiers are the connection's;
/// a message expiry is dropped, as tinymq does not expire messages.
pub(crate) fn forwarded(properties: Properties<'_>) -> Option<Arc<[u8]>> {
    if properties.is_empty() {
        return None;
    }
    let mut kept = PropertiesBuf::new();
    for property in properties.iter() {
        if matches!(
            property,
            Property::PayloadFormatIndicator(_)
                | Property::ContentType(_)
                | Property::ResponseTopic(_)
                | Property::CorrelationData(_)
                | Property::UserProperty(..)
        ) {
            kept.push(property);
        }
    }
    let bytes = kept.as_properties().as_bytes();
    (!bytes.is_empty()).then(|| bytes.into())
}

impl ServerSession {
    /// Sends `delivery` at `qos`, or queues it behind the in-flight window.
    pub(super) fn send_publish(&mut self, delivery: &Arc<Delivery>, qos: QoS, retain: bool) -> Result<(), Closed> {
        let Some(version) = self.version else { return Ok(()) };
        let message = delivery.message();
        let properties = delivery.mqtt_properties().len();
        if publish_size(version, &message.topic, message.payload.len(), qos, properties) > self.client_max_packet {
            // MQTT 5 section 3.1.2.11.4: not sent, as if delivered.
            return Ok(());
        }
        if qos == QoS::AtMostOnce {
            return self.write_publish(delivery, qos, None, retain, false);
        }
        if self.outgoing.waiting.is_empty()
            && let Some(packet_id) = self.outgoing.claim()
        {
            return self.write_publish(delivery, qos, Some(packet_id), retain, false);
        }
        let size = message.topic.len() + message.payload.len();
        if self.outbound.len() + self.outgoing.waiting_bytes + size > self.outbound.limit() {
            return Err(self.close(Cause::SlowConsumer));
        }
        self.outgoing.waiting_bytes += size;
        self.outgoing.waiting.push_back((delivery.clone(), retain));
        Ok(())
    }

    /// Sends waiting QoS 1 deliveries while the window has room.
    pub(super) fn send_waiting(&mut self) -> Result<(), Closed> {
        while !self.outgoing.waiting.is_empty() {
            let Some(packet_id) = self.outgoing.claim() else { break };
            let Some((delivery, retain)) = self.outgoing.waiting.pop_front() else { break };
            let message = delivery.message();
            self.outgoing.waiting_bytes -= message.topic.len() + message.payload.len();
            self.write_publish(&delivery, QoS::AtLeastOnce, Some(packet_id), retain, false)?;
        }
        Ok(())
    }

    /// Sends a QoS 1 message of the durable session's queue, with its
    /// packet id and DUP as the queue says. `Ok(false)`: it is larger than
    /// the client's Maximum Packet Size and was not sent; acknowledge it
    /// for the client, as if delivered (MQTT 5 section 3.1.2.11.4).
    pub fn deliver_qos1(&mut self, transmit: &Transmit) -> Result<bool, Closed> {
        let Some(version) = self.version else { return Ok(true) };
        let message = transmit.delivery.message();
        let properties = transmit.delivery.mqtt_properties().len();
        if publish_size(version, &message.topic, message.payload.len(), QoS::AtLeastOnce, properties)
            > self.client_max_packet
        {
            return Ok(false);
        }
        self.write_publish(&transmit.delivery, QoS::AtLeastOnce, Some(transmit.packet_id), false, transmit.dup)?;
        Ok(true)
    }

    /// The most QoS 1 deliveries the client takes unacknowledged: the
    /// broker's maximum, lowered to its Receive Maximum.
    pub fn receive_window(&self) -> u16 {
        self.outgoing.window
    }

    fn write_publish(
        &mut self,
        delivery: &Delivery,
        qos: QoS,
        packet_id: Option<u16>,
        retain: bool,
        dup: bool,
    ) -> Result<(), Closed> {
        let Some(version) = self.version else { return Ok(()) };
        let message = delivery.message();
        let publish = Publish {
            dup,
            qos,
            retain,
            topic: &message.topic,
            packet_id,
            // The encoder leaves them out in 3.1.1.
            properties: Properties { raw: delivery.mqtt_properties() },
            payload: &message.payload,
        };
        if self.outbound.push_with(|out| encode::encode(&Packet::Publish(publish), version, out)).is_err() {
            return Err(self.close(Cause::SlowConsumer));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_check_matches_the_encoder() {
        for (version, qos, payload) in [
            (ProtocolVersion::V311, QoS::AtMostOnce, 0),
            (ProtocolVersion::V5, QoS::AtLeastOnce, 100),
            (ProtocolVersion::V5, QoS::AtMostOnce, 20_000),
            (ProtocolVersion::V311, QoS::AtLeastOnce, 3_000_000),
        ] {
            let payload = vec![7; payload];
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: "a/b",
                packet_id: (qos != QoS::AtMostOnce).then_some(9),
                properties: Properties::EMPTY,
                payload: &payload,
            };
            let encoded = encode::to_vec(&Packet::Publish(publish), version);
            assert_eq!(publish_size(version, "a/b", payload.len(), qos, 0), encoded.len());
        }
    }

    #[test]
    fn packet_ids_skip_zero_and_those_in_flight() {
        let mut outgoing = Outgoing::new(3);
        outgoing.next_id = u16::MAX - 1;
        assert_eq!(outgoing.claim(), Some(u16::MAX));
        assert_eq!(outgoing.claim(), Some(1));
        assert_eq!(outgoing.claim(), Some(2));
        assert_eq!(outgoing.claim(), None, "the window is full");
        outgoing.acknowledged(1);
        outgoing.next_id = 0;
        assert_eq!(outgoing.claim(), Some(1), "a freed id is used again");
    }
}
