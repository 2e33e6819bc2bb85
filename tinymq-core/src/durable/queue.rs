//! One session's QoS 1 messages on their way to its client: the queue, the
//! in-flight window and the packet ids. Protocol-neutral: a binary
//! [`crate::Session`] and an MQTT session send what it yields in their own
//! frames.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crate::router::Delivery;

/// Fixed cost counted per queued message on top of its topic, payload and
/// sender, so that a flood of empty messages is bounded by bytes too.
pub const ENTRY_OVERHEAD: usize = 64;

/// Limits of one session's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Deliveries sent and not yet acknowledged (default 256, at most 65535,
    /// at least 1).
    pub max_inflight: u16,
    /// Messages held, in flight included (default 1,000,000).
    pub max_messages: usize,
    /// Bytes held, counted by [`entry_size`] (default 256 MiB).
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { max_inflight: 256, max_messages: 1_000_000, max_bytes: 256 << 20 }
    }
}

/// What a queued message counts against [`QueueLimits::max_bytes`].
pub fn entry_size(delivery: &Delivery) -> usize {
    let message = delivery.message();
    ENTRY_OVERHEAD + message.topic.len() + message.payload.len() + message.from.len()
}

/// A message to send now at QoS 1.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// Its packet id (never 0).
    pub packet_id: u16,
    /// The message.
    pub delivery: Arc<Delivery>,
    /// Whether it may have been sent before: set the DUP flag.
    pub dup: bool,
    /// Its sequence number in the session.
    pub seq: u64,
}

/// A message the queue would not take: it is over a limit. The policy is
/// drop-newest: what is queued stays, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("session queue full: message dropped")]
pub struct QueueFull;

#[derive(Debug)]
struct Entry {
    seq: u64,
    delivery: Arc<Delivery>,
    /// Set once it is given an id: it is in flight until acknowledged.
    packet_id: u16,
    /// Sent on an earlier connection, or restored from the store (where
    /// whether it was sent is not known).
    maybe_sent: bool,
}

/// The QoS 1 queue of one session.
///
/// Entries are kept in the order they were pushed; the first
/// [`DeliveryQueue::inflight`] of them have packet ids. [`poll_transmit`]
/// gives, in order, first the in-flight ones not yet sent on this
/// connection (resends, with DUP), then new ones while the window has room.
/// [`ack`] removes one by its packet id; [`reconnected`] starts the resends
/// again on a new connection.
///
/// [`poll_transmit`]: DeliveryQueue::poll_transmit
/// [`ack`]: DeliveryQueue::ack
/// [`reconnected`]: DeliveryQueue::reconnected
#[derive(Debug)]
pub struct DeliveryQueue {
    limits: QueueLimits,
    entries: VecDeque<Entry>,
    /// Entries at the front that have packet ids.
    inflight: usize,
    /// Entries at the front sent on the current connection.
    sent: usize,
    bytes: usize,
    next_seq: u64,
    next_packet_id: u16,
    /// The ids of the in-flight entries, so a free one is found without a
    /// scan of the window.
    ids_in_use: HashSet<u16>,
    dropped: u64,
}

impl DeliveryQueue {
    /// An empty queue.
    pub fn new(limits: QueueLimits) -> Self {
        let limits = QueueLimits { max_inflight: limits.max_inflight.max(1), ..limits };
        DeliveryQueue {
            limits,
            entries: VecDeque::new(),
            inflight: 0,
            sent: 0,
            bytes: 0,
            next_seq: 1,
            next_packet_id: 1,
            ids_in_use: HashSet::new(),
            dropped: 0,
        }
    }

    /// A queue holding messages restored from the store, in sequence order.
    /// Each is sent with DUP, since whether it was sent before is unknown.
    /// Over the limits (lowered since they were stored), the newest are
    /// dropped and counted; their sequence numbers are returned, for the
    /// store to forget them too.
    pub fn restore(limits: QueueLimits, mut messages: Vec<(u64, Arc<Delivery>)>) -> (Self, Vec<u64>) {
        messages.sort_by_key(|(seq, _)| *seq);
        let mut queue = DeliveryQueue::new(limits);
        let mut dropped = Vec::new();
        for (seq, delivery) in messages {
            queue.next_seq = seq.max(queue.next_seq - 1) + 1;
            if queue.push_entry(seq, delivery, true).is_err() {
                queue.dropped += 1;
                dropped.push(seq);
            }
        }
        (queue, dropped)
    }

    /// Appends `delivery`; its sequence number, or [`QueueFull`] (the
    /// message is dropped for this session and counted).
    pub fn push(&mut self, delivery: Arc<Delivery>) -> Result<u64, QueueFull> {
        let seq = self.next_seq;
        match self.push_entry(seq, delivery, false) {
            Ok(()) => {
                self.next_seq += 1;
                Ok(seq)
            }
            Err(full) => {
                self.dropped += 1;
                Err(full)
            }
        }
    }

    fn push_entry(&mut self, seq: u64, delivery: Arc<Delivery>, maybe_sent: bool) -> Result<(), QueueFull> {
        let size = entry_size(&delivery);
        if self.entries.len() >= self.limits.max_messages || self.bytes + size > self.limits.max_bytes {
            return Err(QueueFull);
        }
        self.bytes += size;
        self.entries.push_back(Entry { seq, delivery, packet_id: 0, maybe_sent });
        Ok(())
    }

    /// The next message to send on the current connection, if the window
    /// allows one: a resend of an in-flight message first, then the oldest
    /// waiting one, which takes a packet id.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit_within(usize::from(self.limits.max_inflight))
    }

    /// [`DeliveryQueue::poll_transmit`] with the window narrowed to
    /// `window` for this connection (an MQTT 5 client's Receive Maximum):
    /// resends still go out, new messages only while fewer than `window`
    /// are in flight.
    pub fn poll_transmit_within(&mut self, window: usize) -> Option<Transmit> {
        if self.sent < self.inflight {
            let entry = &mut self.entries[self.sent];
            self.sent += 1;
            entry.maybe_sent = true;
            return Some(Transmit {
                packet_id: entry.packet_id,
                delivery: entry.delivery.clone(),
                dup: true,
                seq: entry.seq,
            });
        }
        let window = window.min(usize::from(self.limits.max_inflight));
        if self.inflight >= window || self.inflight >= self.entries.len() {
            return None;
        }
        let packet_id = self.free_packet_id();
        let entry = &mut self.entries[self.inflight];
        entry.packet_id = packet_id;
        let dup = std::mem::replace(&mut entry.maybe_sent, true);
        self.inflight += 1;
        self.sent += 1;
        Some(Transmit { packet_id, delivery: entry.delivery.clone(), dup, seq: entry.seq })
    }

    /// A packet id no in-flight entry holds, now taken. The window is at
    /// most 65535, so one is always free.
    fn free_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if self.ids_in_use.insert(id) {
                return id;
            }
        }
    }

    /// The client acknowledged `packet_id`: the message is done. Its
    /// sequence number, or `None` for an id not in flight (a late or
    /// repeated PubAck, ignored).
    pub fn ack(&mut self, packet_id: u16) -> Option<u64> {
        if !self.ids_in_use.remove(&packet_id) {
            return None;
        }
        // Acks come mostly in order, so this finds it at the front.
        let index = self.entries.iter().take(self.inflight).position(|e| e.packet_id == packet_id)?;
        let entry = self.entries.remove(index)?;
        self.inflight -= 1;
        if index < self.sent {
            self.sent -= 1;
        }
        self.bytes -= entry_size(&entry.delivery);
        Some(entry.seq)
    }

    /// A new connection: every in-flight message is sent again, with DUP
    /// and its packet id, before anything new.
    pub fn reconnected(&mut self) {
        self.sent = 0;
    }

    /// Messages held, in flight included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages sent and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Bytes held, as [`QueueLimits::max_bytes`] counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The held messages with their sequence numbers, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = (u64, &Arc<Delivery>)> {
        self.entries.iter().map(|e| (e.seq, &e.delivery))
    }

    /// The limits in force.
    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Sets other limits (a bridge's own bound, narrower than the
    /// sessions'). What is held stays, over them or not: new messages are
    /// refused until it is under; a window narrower than the messages in
    /// flight sends nothing new until enough are acknowledged.
    pub fn set_limits(&mut self, limits: QueueLimits) {
        self.limits = QueueLimits { max_inflight: limits.max_inflight.max(1), ..limits };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn message(n: u32) -> Arc<Delivery> {
        Delivery::new(Message {
            topic: "t".into(),
            payload: n.to_be_bytes().to_vec().into(),
            from: "p".into(),
            updated_time: 0,
            ip: None,
        })
    }

    fn payload(t: &Transmit) -> u32 {
        u32::from_be_bytes(t.delivery.message().payload[..].try_into().unwrap())
    }

    fn limits(max_inflight: u16, max_messages: usize) -> QueueLimits {
        QueueLimits { max_inflight, max_messages, max_bytes: usize::MAX }
    }

    #[test]
    fn the_window_holds_back_what_is_over_it_until_acks_come() {
        let mut queue = DeliveryQueue::new(limits(2, 10));
        for n in 0..5 {
            assert_eq!(queue.push(message(n)), Ok(u64::from(n) + 1));
        }
        let first: Vec<_> = std::iter::from_fn(|| queue.poll_transmit()).collect();
        assert_eq!(first.iter().map(payload).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(first.iter().map(|t| (t.packet_id, t.dup)).collect::<Vec<_>>(), [(1, false), (2, false)]);
        // An ack out of order frees one slot; an unknown id changes nothing.
        assert_eq!(queue.ack(2), Some(2));
        assert_eq!(queue.ack(2), None);
        assert_eq!(queue.ack(9), None);
        let next = queue.poll_transmit().unwrap();
        assert_eq!((payload(&next), next.packet_id), (2, 3));
        assert!(queue.poll_transmit().is_none());
        assert_eq!((queue.len(), queue.inflight()), (4, 2));
    }

    #[test]
    fn a_reconnect_resends_the_inflight_in_order_with_dup_and_their_ids() {
        let mut queue = DeliveryQueue::new(limits(3, 10));
        for n in 0..4 {
            queue.push(message(n)).unwrap();
        }
        while queue.poll_transmit().is_some() {}
        assert_eq!(queue.ack(1), Some(1));
        queue.reconnected();
        let again: Vec<_> = std::iter::from_fn(|| queue.poll_transmit()).collect();
        let seen: Vec<_> = again.iter().map(|t| (payload(t), t.packet_id, t.dup)).collect();
        assert_eq!(seen, [(1, 2, true), (2, 3, true), (3, 4, false)]);
    }

    #[test]
    fn a_narrower_window_holds_back_new_messages_but_not_resends() {
        let mut queue = DeliveryQueue::new(limits(4, 10));
        for n in 0..4 {
            queue.push(message(n)).unwrap();
        }
        let first: Vec<_> = std::iter::from_fn(|| queue.poll_transmit_within(3)).collect();
        assert_eq!(first.iter().map(payload).collect::<Vec<_>>(), [0, 1, 2]);
        // A client that reconnects with Receive Maximum 1 still gets all
        // three resends, and nothing new until two are acknowledged.
        queue.reconnected();
        let again: Vec<_> = std::iter::from_fn(|| queue.poll_transmit_within(1)).collect();
        assert_eq!(again.iter().map(|t| (payload(t), t.dup)).collect::<Vec<_>>(), [(0, true), (1, true), (2, true)]);
        queue.ack(again[0].packet_id);
        assert!(queue.poll_transmit_within(1).is_none());
        queue.ack(again[1].packet_id);
        queue.ack(again[2].packet_id);
        assert_eq!(queue.poll_transmit_within(1).map(|t| payload(&t)), Some(3));
    }

    #[test]
    fn packet_ids_wrap_and_skip_those_in_flight() {
        let mut queue = DeliveryQueue::new(limits(2, 10));
        queue.next_packet_id = u16::MAX;
        queue.push(message(0)).unwrap();
        queue.push(message(1)).unwrap();
        queue.push(message(2)).unwrap();
        assert_eq!(queue.poll_transmit().unwrap().packet_id, u16::MAX);
        assert_eq!(queue.poll_transmit().unwrap().packet_id, 1, "0 is never an id");
        assert_eq!(queue.ack(u16::MAX), Some(1));
        queue.next_packet_id = 1;
        assert_eq!(queue.poll_transmit().unwrap().packet_id, 2, "1 is still in flight");
    }

    #[test]
    fn over_a_limit_the_newest_is_dropped_and_counted() {
        let mut queue = DeliveryQueue::new(limits(1, 2));
        queue.push(message(0)).unwrap();
        queue.push(message(1)).unwrap();
        assert_eq!(queue.push(message(2)), Err(QueueFull));
        assert_eq!((queue.len(), queue.dropped()), (2, 1));
        let size = entry_size(&message(0));
        let mut by_bytes = DeliveryQueue::new(QueueLimits { max_bytes: 2 * size, ..limits(1, 100) });
        by_bytes.push(message(0)).unwrap();
        by_bytes.push(message(1)).unwrap();
        assert_eq!(by_bytes.push(message(2)), Err(QueueFull));
        // An ack makes room again, and sequence numbers go on.
        let sent = by_bytes.poll_transmit().unwrap();
        by_bytes.ack(sent.packet_id);
        assert_eq!(by_bytes.push(message(3)), Ok(3));
        assert_eq!(by_bytes.bytes(), 2 * size);
    }

    #[test]
    fn narrower_limits_keep_what_is_held_and_refuse_new_until_under() {
        let mut queue = DeliveryQueue::new(limits(4, 10));
        for n in 0..4 {
            queue.push(message(n)).unwrap();
        }
        queue.set_limits(limits(0, 3));
        assert_eq!(queue.limits().max_inflight, 1, "a window is at least 1");
        assert_eq!((queue.len(), queue.push(message(4))), (4, Err(QueueFull)));
        let sent = queue.poll_transmit().unwrap();
        assert!(queue.poll_transmit().is_none(), "a window of 1");
        queue.ack(sent.packet_id);
        let next = queue.poll_transmit().unwrap();
        queue.ack(next.packet_id);
        assert_eq!(queue.push(message(5)), Ok(5));
    }

    #[test]
    fn restored_messages_go_out_in_order_marked_dup() {
        let (mut queue, dropped) = DeliveryQueue::restore(limits(8, 10), vec![(7, message(7)), (3, message(3))]);
        assert!(dropped.is_empty());
        let first = queue.poll_transmit().unwrap();
        assert_eq!((first.seq, first.dup), (3, true));
        assert_eq!(queue.push(message(8)), Ok(8), "new messages number after the restored ones");
        assert_eq!(queue.poll_transmit().unwrap().seq, 7);
        assert!(!queue.poll_transmit().unwrap().dup);
        let (queue, dropped) = DeliveryQueue::restore(limits(8, 1), vec![(2, message(2)), (1, message(1))]);
        assert_eq!((queue.len(), queue.dropped(), dropped), (1, 1, vec![2]), "the newest goes");
    }
}
