//! The QoS 1 state of an [`MqttClient`]: the publishes
//! sent and not yet acknowledged (its in-flight window), and the ticket
//! that acknowledges a message received.
//!
//! The window outlives connections: what was in it when a connection
//! ended is sent again, with DUP, on the next one, in the order it was
//! first sent. It is bounded by the client's `max_inflight` and the
//! server's Receive Maximum (MQTT 5), so the copies it keeps are bounded
//! by that many packets of at most the maximum packet size.

use std::collections::VecDeque;

use super::{Ack, MqttClient, MqttLevel, Packet, Properties, Publish, QoS, State, encode};

/// A publish sent at QoS 1 and not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unacked {
    pub(super) packet_id: u16,
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) retain: bool,
}

/// The publishes in flight, oldest first.
#[derive(Debug)]
pub(super) struct InFlight {
    window: VecDeque<Unacked>,
    /// What we allow ourselves (the configured window).
    own_limit: usize,
    /// The smaller of that and the server's Receive Maximum.
    limit: usize,
}

impl InFlight {
    pub(super) fn new(limit: u16) -> Self {
        let limit = usize::from(limit.max(1));
        InFlight { window: VecDeque::new(), own_limit: limit, limit }
    }

    /// The server's Receive Maximum for this connection (MQTT 5); `None`
    /// (3.1.1, or no property) leaves the configured window.
    pub(super) fn set_receive_maximum(&mut self, maximum: Option<u16>) {
        self.limit = maximum.map_or(self.own_limit, |max| self.own_limit.min(usize::from(max.max(1))));
    }

    pub(super) fn len(&self) -> usize {
        self.window.len()
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn is_full(&self) -> bool {
        self.window.len() >= self.limit
    }

    pub(super) fn contains(&self, packet_id: u16) -> bool {
        self.window.iter().any(|u| u.packet_id == packet_id)
    }

    pub(super) fn push(&mut self, unacked: Unacked) {
        self.window.push_back(unacked);
    }

    /// PUBACK for `packet_id`: `true` if it was in flight. Servers answer
    /// in order, so the oldest is looked at first.
    pub(super) fn ack(&mut self, packet_id: u16) -> bool {
        if self.window.front().is_some_and(|u| u.packet_id == packet_id) {
            self.window.pop_front();
            return true;
        }
        match self.window.iter().position(|u| u.packet_id == packet_id) {
            Some(at) => {
                self.window.remove(at);
                true
            }
            None => false,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Unacked> {
        self.window.iter()
    }
}

/// What acknowledges a QoS 1 message received: hand it to
/// [`MqttClient::ack`](super::MqttClient::ack) once the message is safe
/// here. A ticket of a connection that has ended acknowledges nothing
/// (the server sends the message again on the next one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckTicket {
    /// The connection it came on (counted by the client from 1).
    pub connection: u64,
    /// Its packet id on that connection.
    pub packet_id: u16,
}

impl MqttClient {
    /// QoS 1 publishes sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends every publish still in flight again, with DUP, in the order
    /// first sent: at QoS 1 a connection that ended took no PUBACK for
    /// them. Bounded by the window, so queued past the outbound limit.
    pub(super) fn resend_in_flight(&mut self) {
        let (version, v5) = (self.level.version(), self.level == MqttLevel::V5);
        let properties = if v5 { self.properties.as_properties() } else { Properties::EMPTY };
        let mut bytes = Vec::new();
        for unacked in self.in_flight.iter() {
            let publish = Publish {
                dup: true,
                qos: QoS::AtLeastOnce,
                retain: unacked.retain && self.retain_available,
                topic: &unacked.topic,
                packet_id: Some(unacked.packet_id),
                properties,
                payload: &unacked.payload,
            };
            bytes.clear();
            encode(&Packet::Publish(publish), version, &mut bytes);
            self.outbound.push_final(&bytes);
            self.stats.resent += 1;
        }
    }

    /// Acknowledges a QoS 1 message received ([`MqttMessage::ack`](super::MqttMessage::ack)): its
    /// PUBACK is queued, unless the connection it came on has ended.
    pub fn ack(&mut self, ticket: AckTicket) {
        let open = matches!(self.state, State::AwaitingSubAck { .. } | State::Connected { .. });
        if open && ticket.connection == self.connection {
            self.queue_puback(ticket.packet_id);
        }
    }

    pub(super) fn queue_puback(&mut self, packet_id: u16) {
        let ack = Ack { packet_id, reason: 0, properties: Properties::EMPTY };
        let mut bytes = Vec::new();
        encode(&Packet::PubAck(ack), self.level.version(), &mut bytes);
        self.outbound.push_final(&bytes);
    }
}
