//! The bounded queue the router fills for one in-process client, apart
//! from the client ([`crate::local`]) so that the state every thread
//! shares can name it as a delivery target without depending on the
//! client, which depends on that state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tinymq_core::{Delivery, ReasonCode};

use crate::BrokerConfig;

mod queue;

pub(crate) use queue::{COPY_BELOW, Origin, Pending};
pub use queue::{Received, ReceivedBatch, ReceivedIter, ReceivedRef};

pub(crate) struct Queue {
    pub(crate) pending: Pending,
    pub(crate) closed: Option<ReasonCode>,
    /// It dropped messages (a full queue, and an in-process publisher's
    /// wait for room was in vain or there was none): until the client
    /// takes something, publishers drop its oldest messages without
    /// waiting, and it does not count as filling.
    stalled: bool,
    /// Counted in [`LocalInbox::filling`].
    filling: bool,
}

/// A flag alone in its cache line: a receiver spinning on it does not
/// take the queue's lock line from the publisher at each publish.
#[repr(align(64))]
pub(crate) struct Flag(pub(crate) AtomicBool);

/// What a push into a full in-process queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Wait a while for room: an in-process publisher.
    Wait,
    /// Drop the oldest messages at once: an event loop, which must not wait.
    DropOldest,
}

/// What a push into an in-process queue did: messages handed to the queue
/// (counted as delivered, as a network delivery is once queued for its
/// socket) and messages dropped, new ones to a closed client or older ones
/// to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pushed {
    pub(crate) queued: usize,
    pub(crate) dropped: usize,
}

/// The bounded queue the router fills for one in-process client.
pub(crate) struct LocalInbox {
    pub(crate) queue: Mutex<Queue>,
    /// Signalled when messages are queued.
    pub(crate) ready: Condvar,
    /// Signalled when messages are taken.
    room: Condvar,
    limit: usize,
    /// Payload bytes queued before the oldest are dropped.
    byte_limit: usize,
    /// How long a publisher waits for room (`local_queue_wait`).
    wait: Duration,
    /// Set with each push, cleared when the queue is emptied: a receiver
    /// waits for it spinning a little before it sleeps on `ready`, so a
    /// steady stream is not one thread wake per message.
    pub(crate) queued: Flag,
    /// Set when `queue.closed` is: a publish checks it without the lock.
    pub(crate) closed: AtomicBool,
    /// The client's durable session may have QoS 1 messages for it (they
    /// stay in the broker's session queue until the client takes them):
    /// set by [`LocalInbox::wake_session`], cleared by the client before
    /// it looks.
    pub(crate) session_ready: AtomicBool,
    /// The broker's count of in-process queues more than half full that
    /// have not dropped anything since their client last took from them
    /// ([`Shared::local_filling`](crate::shared::Shared::local_filling)):
    /// while there are any, network publishers that feed in-process queues
    /// are read slower, as for a loop under pressure.
    filling: Arc<AtomicUsize>,
}

impl std::fmt::Debug for LocalInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalInbox").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl LocalInbox {
    pub(crate) fn new(config: &BrokerConfig, filling: Arc<AtomicUsize>) -> Self {
        LocalInbox {
            queue: Mutex::new(Queue { pending: Pending::default(), closed: None, stalled: false, filling: false }),
            ready: Condvar::new(),
            room: Condvar::new(),
            limit: config.local_queue_limit.max(1),
            byte_limit: config.local_queue_bytes,
            wait: config.local_queue_wait,
            queued: Flag(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            session_ready: AtomicBool::new(false),
            filling,
        }
    }

    /// Queues `deliveries` in order (see [`LocalInbox::push`]).
    pub(crate) fn push_all(&self, deliveries: &[Arc<Delivery>], retained: bool, full: WhenFull) -> Pushed {
        let bytes = deliveries.iter().map(|delivery| delivery.message().payload.len()).sum();
        self.push(deliveries.len(), bytes, full, |pending| {
            for delivery in deliveries {
                pending.push_delivery(delivery, retained);
            }
        })
    }

    /// Queues a copy of each of `payloads` (all small) from one origin for
    /// an in-process publisher, waiting for room (see [`LocalInbox::push`]).
    pub(crate) fn push_copies<P: AsRef<[u8]>>(
        &self,
        origin: Origin<'_>,
        (count, bytes): (usize, usize),
        payloads: impl Iterator<Item = P>,
    ) -> Pushed {
        self.push(count, bytes, WhenFull::Wait, |pending| {
            for payload in payloads {
                pending.push_copy(origin, payload.as_ref());
            }
        })
    }

    /// Queues the `count` messages of `bytes` payload bytes that `fill`
    /// adds, in order, under one lock and with one wake. If they do not
    /// fit (in `limit` messages and `byte_limit` bytes) and `when_full`
    /// says so, waits up to `wait` for the client to take what is queued:
    /// an in-process publisher faster than its subscriber is slowed to its
    /// pace, not robbed of messages. Then, if the queue is over a limit,
    /// the oldest messages make room; the newest is kept even if it alone
    /// is over the byte limit.
    fn push(&self, count: usize, bytes: usize, when_full: WhenFull, fill: impl FnOnce(&mut Pending)) -> Pushed {
        if count == 0 {
            return Pushed { queued: 0, dropped: 0 };
        }
        let mut queue = self.queue.lock();
        let full = |queue: &Queue| {
            let pending = &queue.pending;
            !pending.is_empty()
                && (pending.len() + count > self.limit || pending.payload_bytes() + bytes > self.byte_limit)
        };
        if when_full == WhenFull::Wait && full(&queue) && !queue.stalled && !self.wait.is_zero() {
            let deadline = Instant::now().checked_add(self.wait);
            while full(&queue) && queue.closed.is_none() {
                if wait_until(&self.room, &mut queue, deadline) {
                    queue.stalled = full(&queue);
                    break;
                }
            }
        }
        if queue.closed.is_some() {
            return Pushed { queued: 0, dropped: count };
        }
        fill(&mut queue.pending);
        let mut dropped = 0;
        while queue.pending.len() > self.limit
            || (queue.pending.payload_bytes() > self.byte_limit && queue.pending.len() > 1)
        {
            queue.pending.pop_with(|_| ());
            dropped += 1;
        }
        if dropped > 0 {
            queue.stalled = true;
        }
        self.update_filling(&mut queue);
        // Written only when it changes: a receiver spinning on it keeps its
        // copy of the cache line while a stream flows.
        if !self.queued.0.load(Ordering::Relaxed) {
            self.queued.0.store(true, Ordering::Release);
        }
        drop(queue);
        self.ready.notify_one();
        Pushed { queued: count, dropped }
    }

    /// Counts the queue in [`LocalInbox::filling`] while it is more than
    /// half full (of either limit), open, and not dropping.
    fn update_filling(&self, queue: &mut Queue) {
        let filling = queue.closed.is_none()
            && !queue.stalled
            && (queue.pending.len() > self.limit / 2 || queue.pending.payload_bytes() > self.byte_limit / 2);
        if filling != queue.filling {
            queue.filling = filling;
            if filling {
                self.filling.fetch_add(1, Ordering::Relaxed);
            } else {
                self.filling.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// After the client took messages: publishers may wait for it again.
    pub(crate) fn taken(&self, mut queue: MutexGuard<'_, Queue>) {
        if queue.pending.is_empty() {
            self.queued.0.store(false, Ordering::Relaxed);
        }
        queue.stalled = false;
        self.update_filling(&mut queue);
        drop(queue);
        self.room.notify_all();
    }

    /// The client's session has QoS 1 messages to take: wakes a receiver
    /// waiting on the queue. The flag is set before the queue's lock is
    /// taken, and a receiver checks it under that lock before it sleeps,
    /// so the wake is not lost. Never called with the broker's lock held
    /// by a thread that then waits on this queue.
    pub(crate) fn wake_session(&self) {
        self.session_ready.store(true, Ordering::Release);
        drop(self.queue.lock());
        self.ready.notify_all();
    }

    pub(crate) fn close(&self, reason: ReasonCode) {
        let mut queue = self.queue.lock();
        queue.closed.get_or_insert(reason);
        self.update_filling(&mut queue);
        drop(queue);
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
        self.room.notify_all();
    }
}

/// Waits on `condvar` until `deadline` (forever if `None`: a timeout too
/// long to add to the clock); true if it timed out.
pub(crate) fn wait_until(condvar: &Condvar, queue: &mut MutexGuard<'_, Queue>, deadline: Option<Instant>) -> bool {
    match deadline {
        Some(deadline) => condvar.wait_until(queue, deadline).timed_out(),
        None => {
            condvar.wait(queue);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use tinymq_core::Message;

    use super::*;

    fn delivery(payload: &[u8]) -> Arc<Delivery> {
        let message =
            Message { topic: "t".into(), payload: payload.into(), from: "a".into(), updated_time: 1, ip: None };
        Delivery::new(message)
    }

    #[test]
    fn a_queue_counts_as_filling_from_half_full_until_it_drops_is_read_or_closes() {
        let config = BrokerConfig { local_queue_limit: 10, ..BrokerConfig::default() };
        let filling = Arc::new(AtomicUsize::new(0));
        let inbox = LocalInbox::new(&config, filling.clone());
        let five: Vec<_> = (0..5).map(|_| delivery(b"x")).collect();
        inbox.push_all(&five, false, WhenFull::DropOldest);
        assert_eq!(filling.load(Ordering::Relaxed), 0, "half full is not over half");
        inbox.push_all(&five[..1], false, WhenFull::DropOldest);
        assert_eq!(filling.load(Ordering::Relaxed), 1, "over half full");
        // Once it drops messages its client is not keeping up: it no
        // longer slows publishers down.
        assert_eq!(inbox.push_all(&five, false, WhenFull::DropOldest), Pushed { queued: 5, dropped: 1 });
        assert_eq!(filling.load(Ordering::Relaxed), 0, "dropping");
        inbox.push_all(&five, false, WhenFull::DropOldest);
        assert_eq!(filling.load(Ordering::Relaxed), 0, "still dropping");
        // Read, it is waited for again.
        inbox.taken(inbox.queue.lock());
        assert_eq!(filling.load(Ordering::Relaxed), 1, "read from, and still over half full");
        std::mem::take(&mut inbox.queue.lock().pending);
        inbox.taken(inbox.queue.lock());
        assert_eq!(filling.load(Ordering::Relaxed), 0, "emptied");
        inbox.push_all(&five, false, WhenFull::DropOldest);
        inbox.push_all(&five, false, WhenFull::DropOldest);
        assert_eq!(filling.load(Ordering::Relaxed), 1);
        inbox.close(ReasonCode::ShuttingDown);
        assert_eq!(filling.load(Ordering::Relaxed), 0, "closed");
    }
}
