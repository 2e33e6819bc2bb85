//! The client's QoS 1 publishes until the broker acknowledges them: a
//! bounded window, kept across connections and sent again (DUP) on the next.

use std::collections::{HashSet, VecDeque};

use crate::codec::Frame;

#[derive(Debug)]
struct Pending {
    packet_id: u16,
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    /// Written to some connection already: a resend carries DUP.
    sent: bool,
}

/// Unacknowledged QoS 1 publishes, oldest first, at most `window`.
#[derive(Debug)]
pub(super) struct Outgoing {
    window: usize,
    pending: VecDeque<Pending>,
    next_packet_id: u16,
    /// The pending ids, so a free one is found without a scan.
    ids_in_use: HashSet<u16>,
}

impl Outgoing {
    pub(super) fn new(window: u16) -> Self {
        Outgoing {
            window: usize::from(window.max(1)),
            pending: VecDeque::new(),
            next_packet_id: 1,
            ids_in_use: HashSet::new(),
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.pending.len() >= self.window
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Takes a publish and gives it a packet id no pending one holds. The
    /// caller checked [`Outgoing::is_full`].
    pub(super) fn push(&mut self, topic: &str, payload: &[u8], retain: bool) -> u16 {
        let packet_id = loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if self.ids_in_use.insert(id) {
                break id;
            }
        };
        let pending = Pending { packet_id, topic: topic.to_owned(), payload: payload.to_vec(), retain, sent: false };
        self.pending.push_back(pending);
        packet_id
    }

    /// Encodes the newest publish (just pushed) into `out`.
    pub(super) fn send_last(&mut self, out: &mut Vec<u8>) {
        if let Some(last) = self.pending.back_mut() {
            Self::encode(last, out);
        }
    }

    /// Encodes every pending publish, in order, for a new connection.
    pub(super) fn send_all(&mut self, out: &mut Vec<u8>) {
        for pending in &mut self.pending {
            Self::encode(pending, out);
        }
    }

    fn encode(pending: &mut Pending, out: &mut Vec<u8>) {
        let (id, dup) = (pending.packet_id, pending.sent);
        Frame::publish_qos1(&pending.topic, &pending.payload, "", pending.retain, id, dup).encode(out);
        pending.sent = true;
    }

    /// The broker acknowledged `packet_id`: whether it was pending.
    pub(super) fn ack(&mut self, packet_id: u16) -> bool {
        if !self.ids_in_use.remove(&packet_id) {
            return false;
        }
        // Acks come mostly in order, so this finds it at the front.
        match self.pending.iter().position(|p| p.packet_id == packet_id) {
            Some(index) => {
                self.pending.remove(index);
                true
            }
            None => false,
        }
    }
}
