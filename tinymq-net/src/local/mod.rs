//! In-process clients: publish and subscribe inside the broker's process,
//! with no socket and no encoding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, MutexGuard};
use smallvec::SmallVec;
use tinymq_core::outbound::COPY_BELOW as FRAME_COPY_BELOW;
use tinymq_core::{Delivery, Filter, Frame, Message, NamespaceId, ReasonCode, RouteCache, SubscriberId, TopicName};

use crate::flow;
use crate::shared::{Batch, Shared, Sink};
use crate::writer::Durability;
use crate::{BrokerConfig, Error};

mod queue;

use queue::{COPY_BELOW, Origin, Pending};
pub use queue::{Received, ReceivedBatch, ReceivedIter, ReceivedRef};

struct Queue {
    pending: Pending,
    closed: Option<ReasonCode>,
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
struct Flag(AtomicBool);

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
    queue: Mutex<Queue>,
    /// Signalled when messages are queued.
    ready: Condvar,
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
    queued: Flag,
    /// Set when `queue.closed` is: a publish checks it without the lock.
    closed: AtomicBool,
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
    fn new(config: &BrokerConfig, filling: Arc<AtomicUsize>) -> Self {
        LocalInbox {
            queue: Mutex::new(Queue { pending: Pending::default(), closed: None, stalled: false, filling: false }),
            ready: Condvar::new(),
            room: Condvar::new(),
            limit: config.local_queue_limit.max(1),
            byte_limit: config.local_queue_bytes,
            wait: config.local_queue_wait,
            queued: Flag(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
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
    fn taken(&self, mut queue: MutexGuard<'_, Queue>) {
        if queue.pending.is_empty() {
            self.queued.0.store(false, Ordering::Relaxed);
        }
        queue.stalled = false;
        self.update_filling(&mut queue);
        drop(queue);
        self.room.notify_all();
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

/// A client living in the broker's process. Dropping it removes its
/// subscriptions.
#[derive(Debug)]
pub struct LocalClient {
    shared: Arc<Shared>,
    id: SubscriberId,
    namespace: NamespaceId,
    client_id: Arc<str>,
    inbox: Arc<LocalInbox>,
    /// The last topic published to and its receivers, so a client that
    /// publishes to one topic over and over neither walks the trie nor
    /// allocates a topic name each time.
    last: Mutex<LastTopic>,
}

#[derive(Default)]
struct LastTopic {
    topic: Option<Arc<str>>,
    routes: RouteCache<Sink>,
    /// The messages of the publish under way (kept for its capacity).
    batch: Vec<Arc<Delivery>>,
    /// The frames of the publish under way, for one loop at a time.
    frames: Batch,
    /// Bytes sent to loops that are behind, not yet paced (see
    /// [`flow::pace`]).
    paced: usize,
}

impl std::fmt::Debug for LastTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastTopic").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl LocalClient {
    pub(crate) fn new(shared: Arc<Shared>, client_id: &str) -> Result<Self, Error> {
        if shared.is_shutting_down() {
            return Err(Error::BrokerStopped);
        }
        let inbox = Arc::new(LocalInbox::new(&shared.config, shared.local_filling.clone()));
        let namespace = NamespaceId::PUBLIC;
        let (id, client_id, previous) = {
            let mut router = shared.router.write();
            let id = router.add_subscriber(namespace, Sink::Local(inbox.clone()));
            router.set_origin(id, crate::shared::unix_time(), None);
            let (client_id, previous) = router.claim_client_id(id, client_id);
            (id, client_id, previous.and_then(|old| router.remove_subscriber(old)))
        };
        match previous {
            Some(Sink::Conn(old)) => {
                shared.send(old.loop_index(), crate::shared::InboxItem::Close(old, ReasonCode::SessionTakenOver))
            }
            Some(Sink::Local(old)) => old.close(ReasonCode::SessionTakenOver),
            // Moustique clients hold no client id in the router.
            Some(Sink::Http(_)) | None => {}
        }
        Ok(LocalClient { shared, id, namespace, client_id, inbox, last: Mutex::default() })
    }

    /// This client's id (assigned by the broker when none was asked for).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.inbox.closed.load(Ordering::Acquire)
            && let Some(reason) = self.inbox.queue.lock().closed
        {
            return Err(closed_error(reason));
        }
        if self.shared.is_shutting_down() {
            return Err(Error::BrokerStopped);
        }
        Ok(())
    }

    /// Publishes `payload` to `topic`; returns how many subscribers it
    /// reaches.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<usize, Error> {
        self.publish_many(topic, [payload])
    }

    /// Publishes each of `payloads` to `topic`, in order, as one batch:
    /// the topic is checked and routed once, and each receiver's queue is
    /// taken once for the lot, so a producer of many messages pays for one
    /// publish, not for each. Every message reaches the same subscribers;
    /// returns how many. A payload over the size limit fails the whole
    /// batch before any of it is published.
    ///
    /// A publish may wait: for room in a full in-process queue, up to
    /// [`BrokerConfig::local_queue_wait`](crate::BrokerConfig::local_queue_wait),
    /// and, paced like a network publisher, while a network subscriber
    /// it feeds has much unsent.
    pub fn publish_many<I>(&self, topic: &str, payloads: I) -> Result<usize, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.check_open()?;
        let name = self.topic_name(topic)?;
        let payloads = payloads.into_iter();
        let max = self.shared.config.session.frame_limits.max_payload_len;
        let (mut count, mut longest, mut bytes) = (0, 0, 0);
        for payload in payloads.clone() {
            let len = payload.as_ref().len();
            if len > max {
                return Err(Error::PayloadTooLarge { len, max });
            }
            count += 1;
            longest = longest.max(len);
            bytes += len;
        }
        let updated_time = unix_seconds();
        let mut last = self.last.lock();
        let LastTopic { topic: last_topic, routes, batch, frames, paced } = &mut *last;
        let topic = match last_topic {
            Some(last) if **last == *topic => last,
            _ => last_topic.insert(topic.into()),
        };
        // Changes nothing in the router: routed under the shared lock, from
        // the cache while the subscriptions stay as they were. The cache
        // holds the receivers, so they are not cloned for each publish.
        let receivers = self.shared.router.read().route_cached(routes, self.namespace, name);
        if count == 0 {
            return Ok(receivers.len());
        }
        self.shared.stats.messages_in.fetch_add(count as u64, Ordering::Relaxed);
        flow::pace(&self.shared, paced, receivers, bytes);
        // Dispatched under this client's own lock: its messages reach each
        // receiver in the order it published them, whichever threads share it.
        // Small messages are copied: into each in-process queue, and as
        // encoded frames into each loop with binary subscribers. Then no
        // message is allocated. Larger ones, or any for a Moustique queue
        // or an SSE stream, go as one shared delivery.
        let frame_len = Frame::publish(topic, &[], &self.client_id, false).encoded_len() + longest;
        let copied = |sink: &Sink| match sink {
            Sink::Local(_) => longest < COPY_BELOW,
            Sink::Conn(target) => !target.transport.is_http() && frame_len < FRAME_COPY_BELOW,
            Sink::Http(_) => false,
        };
        if receivers.iter().all(copied) {
            let origin = Origin { topic, from: &self.client_id, updated_time, ip: None, retained: false };
            for sink in receivers {
                if let Sink::Local(inbox) = sink {
                    let pushed = inbox.push_copies(origin, (count, bytes), payloads.clone());
                    self.shared.count_local_delivery(pushed);
                }
            }
            self.shared.dispatch_frames(topic, &self.client_id, payloads, receivers, frames);
        } else {
            batch.extend(payloads.map(|payload| self.message(topic.clone(), payload.as_ref(), updated_time)));
            self.shared.dispatch(batch, receivers, WhenFull::Wait);
            batch.clear();
        }
        Ok(receivers.len())
    }

    /// Publishes and stores the message as the topic's value (an empty
    /// payload deletes the value, and is delivered, empty). With a data directory
    /// and [`Durability::Immediate`], returns once the value is committed.
    /// [`Error::Store`] says the value may not be stored: its commit failed
    /// (`Immediate`) or the store is failing (`Batched`); the message was
    /// delivered all the same.
    pub fn publish_retained(&self, topic: &str, payload: &[u8]) -> Result<usize, Error> {
        self.check_open()?;
        let name = self.topic_name(topic)?;
        let max = self.shared.config.session.frame_limits.max_payload_len;
        if payload.len() > max {
            return Err(Error::PayloadTooLarge { len: payload.len(), max });
        }
        let delivery = self.message(topic.into(), payload, unix_seconds());
        let mut receivers: SmallVec<[Sink; 4]> = SmallVec::new();
        let (outcome, ticket) = {
            let mut router = self.shared.router.write();
            let outcome = router.publish(self.namespace, name, &delivery, true, &mut receivers);
            // Submitted under the lock, so the store sees writes to a topic
            // in the order the router made them.
            let ticket =
                outcome.stored.then(|| self.shared.persist(router.namespace_name(self.namespace), &delivery)).flatten();
            (outcome, ticket)
        };
        self.shared.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        flow::pace(&self.shared, &mut self.last.lock().paced, &receivers, payload.len());
        self.shared.dispatch(std::slice::from_ref(&delivery), &receivers, WhenFull::Wait);
        if let Some(ticket) = ticket {
            let stored = if self.shared.config.durability == Durability::Immediate {
                // Under `immediate` a retained publish returns once durable.
                self.shared.store.as_ref().expect("persist needs a store").wait(ticket)
            } else {
                self.shared.store_failing().map_or(Ok(()), Err)
            };
            if let Err(error) = stored {
                self.shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Store(error));
            }
        }
        Ok(outcome.receivers)
    }

    fn topic_name<'t>(&self, topic: &'t str) -> Result<TopicName<'t>, Error> {
        TopicName::new(topic, &self.shared.config.session.topic_limits)
            .map_err(|source| Error::InvalidTopic { topic: topic.to_owned(), source })
    }

    fn message(&self, topic: Arc<str>, payload: &[u8], updated_time: u64) -> Arc<Delivery> {
        Delivery::new(Message { topic, payload: payload.into(), from: self.client_id.clone(), updated_time, ip: None })
    }

    /// Subscribes to `filter`; stored values it matches arrive first, marked
    /// retained.
    pub fn subscribe(&self, filter: &str) -> Result<(), Error> {
        self.check_open()?;
        let filter = Filter::new(filter, &self.shared.config.session.topic_limits)
            .map_err(|source| Error::InvalidTopic { topic: filter.to_owned(), source })?;
        let mut router = self.shared.router.write();
        router.subscribe(self.id, filter.clone());
        let values: Vec<Arc<Delivery>> = router.values_matching(self.namespace, &filter).cloned().collect();
        self.inbox.push_all(&values, true, WhenFull::DropOldest);
        Ok(())
    }

    /// Removes a subscription; `false` if the client did not hold it.
    pub fn unsubscribe(&self, filter: &str) -> Result<bool, Error> {
        let filter = Filter::new(filter, &self.shared.config.session.topic_limits)
            .map_err(|source| Error::InvalidTopic { topic: filter.to_owned(), source })?;
        Ok(self.shared.router.write().unsubscribe(self.id, &filter))
    }

    /// The next message, if one is queued.
    pub fn try_recv(&self) -> Result<Option<Received>, Error> {
        let mut queue = self.inbox.queue.lock();
        match queue.pending.pop_with(|message| message.to_received()) {
            Some(message) => {
                self.inbox.taken(queue);
                Ok(Some(message))
            }
            None => queue.closed.map_or(Ok(None), |reason| Err(closed_error(reason))),
        }
    }

    /// Takes every queued message into `batch`, replacing what it held
    /// (waiting up to `timeout` for the first); returns how many. The
    /// queue and the batch swap buffers, so a consumer that reuses its
    /// batch receives without allocating: the fastest way to read a stream.
    pub fn recv_many(&self, batch: &mut ReceivedBatch, timeout: Duration) -> Result<usize, Error> {
        batch.pending.clear();
        let taken = self.wait(timeout, true, |pending| {
            (!pending.is_empty()).then(|| std::mem::swap(pending, &mut batch.pending))
        })?;
        Ok(taken.map_or(0, |()| batch.len()))
    }

    /// Moves every queued message to `out` (waiting up to `timeout` for the
    /// first); returns how many. One lock for the lot; [`recv_many`] also
    /// saves the allocation of each message.
    ///
    /// [`recv_many`]: LocalClient::recv_many
    pub fn recv_batch(&self, out: &mut Vec<Received>, timeout: Duration) -> Result<usize, Error> {
        let taken = self.wait(timeout, true, |pending| (!pending.is_empty()).then(|| std::mem::take(pending)))?;
        let Some(taken) = taken else { return Ok(0) };
        // Copied out after the lock is let go.
        out.extend(taken.iter().map(|message| message.to_received()));
        Ok(taken.len())
    }

    /// The next message, waiting up to `timeout`; `Ok(None)` on time-out.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Received>, Error> {
        self.wait(timeout, false, |pending| pending.pop_with(|message| message.to_received()))
    }

    /// Waits up to `timeout` until `take` finds something in the queue
    /// (spinning a little first if `spin`). Queued messages are taken even
    /// after the client is closed.
    fn wait<R>(
        &self,
        timeout: Duration,
        spin: bool,
        mut take: impl FnMut(&mut Pending) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        if spin {
            for _ in 0..SPINS {
                if self.inbox.queued.0.load(Ordering::Acquire) {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut queue = self.inbox.queue.lock();
        let mut timed_out = false;
        loop {
            if let Some(taken) = take(&mut queue.pending) {
                self.inbox.taken(queue);
                return Ok(Some(taken));
            }
            if let Some(reason) = queue.closed {
                return Err(closed_error(reason));
            }
            if self.shared.is_shutting_down() {
                return Err(Error::BrokerStopped);
            }
            if timed_out {
                return Ok(None);
            }
            timed_out = wait_until(&self.inbox.ready, &mut queue, deadline);
        }
    }
}

/// Waits on `condvar` until `deadline` (forever if `None`: a timeout too
/// long to add to the clock); true if it timed out.
fn wait_until(condvar: &Condvar, queue: &mut MutexGuard<'_, Queue>, deadline: Option<Instant>) -> bool {
    match deadline {
        Some(deadline) => condvar.wait_until(queue, deadline).timed_out(),
        None => {
            condvar.wait(queue);
            false
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How many times [`LocalClient::recv_many`] looks for a message before it
/// sleeps (some microseconds).
const SPINS: usize = 2000;

/// A stopping broker is [`Error::BrokerStopped`] however the client learns
/// of it; other reasons (a takeover) end only this client's session.
fn closed_error(reason: ReasonCode) -> Error {
    if reason == ReasonCode::ShuttingDown { Error::BrokerStopped } else { Error::SessionClosed(reason) }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        self.shared.router.write().remove_subscriber(self.id);
        // A publisher that routed to this client before it went may still
        // push to (or wait for room in) its queue: closed, it drops those
        // at once. No one is left to read the reason.
        self.inbox.close(ReasonCode::ShuttingDown);
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
