//! Moving deliveries: to this loop's connections, through the outbox to
//! other loops, to the queues; and draining this loop's inbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use smallvec::SmallVec;
use tinymq_core::{Closed, Delivery, ReasonCode};

use super::EventLoop;
use super::bridge::BRIDGE_TOKEN_BASE;
use crate::flow::{self, loop_bit};
use crate::local_inbox::WhenFull;
use crate::proto::Proto;
use crate::shared::{ConnRef, Control, InboxItem, Sink};

/// A live publish's topic and payload, beside its encoded frame.
#[derive(Clone, Copy)]
pub(super) struct Live<'a> {
    pub(super) topic: &'a str,
    pub(super) payload: &'a [u8],
}

/// Inbox items handled between flushes of the connections they reached.
const DRAIN_FLUSH: usize = 1024;

/// A frame's length as an [`InboxItem::Frame`] holds it: frames are sent
/// as bytes only when smaller than [`COPY_BELOW`](tinymq_core::outbound::COPY_BELOW).
fn frame_len(frame: &[u8]) -> u32 {
    u32::try_from(frame.len()).expect("frames sent as bytes are small")
}

impl EventLoop {
    /// Hands a delivery to each receiver: directly on this loop, through
    /// the outbox to other loops' connections, and to Moustique and
    /// in-process queues at once.
    pub(super) fn dispatch(&mut self, delivery: &Arc<Delivery>, receivers: &[Sink], now: Instant) {
        if let Some(resolved) = self.shared.resolve_sessions(receivers) {
            return self.dispatch(delivery, &resolved, now);
        }
        // Deliveries other loops queued here earlier must not be overtaken:
        // a client that posts, gets its 200, and posts again expects its
        // subscribers to see the two in that order, whichever loops served
        // them. So the deliveries waiting in this loop's inbox are moved
        // first, and this loop's own then go straight out, in order with
        // the connection's other answers.
        self.take_inbox(now);
        let mut queues = false;
        for sink in receivers {
            match sink {
                Sink::Conn(target) if target.loop_index() == self.index => {
                    self.fed_loops |= loop_bit(target.loop_index());
                    self.deliver(*target, delivery, now)
                }
                Sink::Conn(target) => {
                    self.fed_loops |= loop_bit(target.loop_index());
                    self.outbox[target.loop_index()].push_delivery(*target, delivery);
                    self.outbox_pending = true;
                }
                Sink::Http(_) => queues = true,
                // Resolved above.
                Sink::Session(_) => {}
                Sink::Local(_) => {
                    self.fed_local = true;
                    queues = true;
                }
            }
        }
        if queues {
            self.shared.dispatch_to_queues(std::slice::from_ref(delivery), receivers, WhenFull::DropOldest);
        }
    }

    /// [`EventLoop::dispatch`] for a frame already encoded, to binary
    /// connections only; `live` is what it carries, for a bridge here.
    pub(super) fn dispatch_encoded(&mut self, frame: &[u8], live: Live<'_>, receivers: &[Sink], now: Instant) {
        self.take_inbox(now);
        // Where this frame's bytes already are, per other loop: receivers
        // on one loop share them.
        let mut queued: SmallVec<[(usize, usize); 4]> = SmallVec::new();
        for sink in receivers {
            let Sink::Conn(target) = sink else { continue };
            let index = target.loop_index();
            self.fed_loops |= loop_bit(index);
            if index == self.index {
                if target.token() >= BRIDGE_TOKEN_BASE {
                    // The frame's topic and payload as they were decoded:
                    // not decoded again from its bytes.
                    self.bridge_deliver_live(*target, live.topic, live.payload);
                } else {
                    self.deliver_encoded(*target, frame, now);
                }
                continue;
            }
            let batch = &mut self.outbox[index];
            let start = match queued.iter().find(|&&(at, _)| at == index) {
                Some(&(_, start)) => start,
                None => {
                    let start = batch.push_bytes(frame);
                    queued.push((index, start));
                    start
                }
            };
            batch.push_frame(*target, start, frame_len(frame));
            self.outbox_pending = true;
        }
    }

    /// Moves the outbox's deliveries to the other loops' inboxes.
    pub(super) fn flush_outbox(&mut self) {
        if !std::mem::take(&mut self.outbox_pending) {
            return;
        }
        for (index, batch) in self.outbox.iter_mut().enumerate() {
            if !batch.is_empty() {
                self.shared.send_all(index, batch);
            }
        }
    }

    fn deliver(&mut self, target: ConnRef, delivery: &Arc<Delivery>, now: Instant) {
        if target.token() >= BRIDGE_TOKEN_BASE {
            return self.bridge_deliver(target, delivery);
        }
        self.deliver_with(target, now, |proto| proto.deliver(delivery));
    }

    fn deliver_encoded(&mut self, target: ConnRef, frame: &[u8], now: Instant) {
        if target.token() >= BRIDGE_TOKEN_BASE {
            return self.bridge_deliver_encoded(target, frame);
        }
        self.deliver_with(target, now, |proto| proto.deliver_encoded(frame));
    }

    fn deliver_with(&mut self, target: ConnRef, now: Instant, deliver: impl FnOnce(&mut Proto) -> Result<(), Closed>) {
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        if conn.serial != target.serial {
            return;
        }
        match deliver(&mut conn.proto) {
            Ok(()) => {
                self.counted.messages_out += 1;
                let outbound = conn.proto.outbound();
                if !conn.pressing && conn.linger_until().is_none() && flow::over_pressure_mark(outbound) {
                    conn.pressing = true;
                    self.shared.loops[self.index].press(true);
                }
            }
            Err(closed) if closed.reason == Some(ReasonCode::SlowConsumer) && conn.linger_until().is_none() => {
                self.shared.stats.slow_consumer_drops.fetch_add(1, Ordering::Relaxed);
                log::warn!("connection {}:{} is a slow consumer; disconnecting", self.index, conn.serial);
                self.begin_close(target.token(), now);
            }
            Err(_) => {}
        }
        self.mark_dirty(target.token());
    }

    /// Moves what other loops queued here: deliveries into their
    /// connections' output at once, in the order they were queued; the
    /// rest (closes, accepted connections, answers that waited for a
    /// commit or a credentials check) onto `later`, for
    /// [`EventLoop::drain_inbox`]. Delivering is a leaf: it queues bytes and
    /// calls no handler, so [`EventLoop::dispatch`] may call this from
    /// inside one.
    fn take_inbox(&mut self, now: Instant) {
        if !self.shared.loops[self.index].has_items() {
            return;
        }
        let mut batch = std::mem::take(&mut self.inbox);
        self.shared.loops[self.index].take_items(&mut batch);
        for (i, item) in batch.items.drain(..).enumerate() {
            if i % DRAIN_FLUSH == DRAIN_FLUSH - 1 {
                // A long batch goes out as it is delivered: the socket takes
                // what it can before the queues count against their limits.
                self.flush_dirty(now);
            }
            match item {
                InboxItem::Deliver(target, delivery) => self.deliver(target, &delivery, now),
                InboxItem::Frame(target, start, len) => {
                    self.deliver_encoded(target, &batch.frames[start..start + len as usize], now)
                }
                InboxItem::Pump(target) => self.pumps.push(target),
                InboxItem::Control(control) => self.later.push_back(control),
            }
        }
        batch.clear();
        self.inbox = batch;
    }

    /// The turn's inbox step: moves the deliveries, then handles the other
    /// items in order. A handler may dispatch (and so take newer
    /// deliveries) or schedule reads; it never drains the inbox itself.
    pub(super) fn drain_inbox(&mut self, now: Instant) {
        self.take_inbox(now);
        while let Some(control) = self.later.pop_front() {
            match *control {
                Control::Close(target, reason) => self.close_conn(target, reason, now),
                Control::Committed(target, result) => self.committed(target, result, now),
                Control::Verified(target, caller) => self.verified(target, caller, now),
                Control::AcksCommitted(ticket, result) => self.acks_committed(ticket, result),
                Control::Accept(stream, peer_ip) => {
                    self.insert(stream, peer_ip, now);
                }
            }
        }
    }
}
