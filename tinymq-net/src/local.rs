//! In-process clients: publish and subscribe inside the broker's process,
//! with no socket and no encoding.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;
use tinymq_core::{Delivery, Filter, Message, NamespaceId, ReasonCode, RouteCache, SubscriberId, TopicName};

use crate::Error;
use crate::shared::{Shared, Sink};
use crate::store::Durability;

/// A message received by an in-process client. It shares the broker's copy
/// of the payload.
#[derive(Clone, Debug)]
pub struct Received {
    delivery: Arc<Delivery>,
    retained: bool,
}

impl Received {
    /// The topic it was published to.
    pub fn topic(&self) -> &str {
        &self.delivery.message().topic
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.delivery.message().payload
    }
    /// The sender's client id (or HTTP `from`).
    pub fn from(&self) -> &str {
        &self.delivery.message().from
    }
    /// The whole message, with its time stamp and sender address.
    pub fn message(&self) -> &Message {
        self.delivery.message()
    }
    /// Whether it is a stored value sent because of a new subscription.
    pub fn is_retained(&self) -> bool {
        self.retained
    }
}

struct Queue {
    messages: VecDeque<Received>,
    closed: Option<ReasonCode>,
}

/// The bounded queue the router fills for one in-process client.
pub(crate) struct LocalInbox {
    queue: Mutex<Queue>,
    ready: Condvar,
    limit: usize,
    /// Set with each push, cleared when the queue is emptied: a receiver
    /// waits for it spinning a little before it sleeps on `ready`, so a
    /// steady stream is not one thread wake per message.
    queued: AtomicBool,
    /// Set when `queue.closed` is: a publish checks it without the lock.
    closed: AtomicBool,
}

impl std::fmt::Debug for LocalInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalInbox").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl LocalInbox {
    /// Queues `deliveries` in order under one lock, with one wake; when
    /// full, the oldest messages make room. Returns how many were dropped,
    /// so the drops are counted.
    pub(crate) fn push_all(&self, deliveries: &[Arc<Delivery>], retained: bool) -> usize {
        let mut queue = self.queue.lock();
        if queue.closed.is_some() {
            return deliveries.len();
        }
        let mut dropped = 0;
        for delivery in deliveries {
            if queue.messages.len() >= self.limit {
                queue.messages.pop_front();
                dropped += 1;
            }
            queue.messages.push_back(Received { delivery: delivery.clone(), retained });
        }
        // Written only when it changes: a receiver spinning on it keeps its
        // copy of the cache line while a stream flows.
        if !self.queued.load(Ordering::Relaxed) {
            self.queued.store(true, Ordering::Release);
        }
        drop(queue);
        self.ready.notify_one();
        dropped
    }

    pub(crate) fn close(&self, reason: ReasonCode) {
        self.queue.lock().closed.get_or_insert(reason);
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
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
}

impl LastTopic {
    fn shared_topic(&mut self, topic: &str) -> Arc<str> {
        match &self.topic {
            Some(last) if **last == *topic => last.clone(),
            _ => self.topic.insert(topic.into()).clone(),
        }
    }
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
        let inbox = Arc::new(LocalInbox {
            queue: Mutex::new(Queue { messages: VecDeque::new(), closed: None }),
            ready: Condvar::new(),
            limit: shared.config.local_queue_limit.max(1),
            queued: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
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
    pub fn publish_many<P: AsRef<[u8]>>(
        &self,
        topic: &str,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<usize, Error> {
        self.check_open()?;
        let name = self.topic_name(topic)?;
        let max = self.shared.config.session.frame_limits.max_payload_len;
        let updated_time = unix_seconds();
        let mut last = self.last.lock();
        let topic = last.shared_topic(topic);
        let mut batch = std::mem::take(&mut last.batch);
        for payload in payloads {
            let payload = payload.as_ref();
            if payload.len() > max {
                batch.clear();
                last.batch = batch;
                return Err(Error::PayloadTooLarge { len: payload.len(), max });
            }
            batch.push(self.message(topic.clone(), payload, updated_time));
        }
        let mut receivers: SmallVec<[Sink; 4]> = SmallVec::new();
        {
            // Changes nothing in the router: routed under the shared lock,
            // from the cache while the subscriptions stay as they were.
            let router = self.shared.router.read();
            receivers.extend(router.route_cached(&mut last.routes, self.namespace, name).iter().cloned());
        }
        self.shared.stats.messages_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
        // Dispatched under this client's own lock: its messages reach each
        // receiver in the order it published them, whichever threads share it.
        self.shared.dispatch(&batch, &receivers);
        batch.clear();
        last.batch = batch;
        Ok(receivers.len())
    }

    /// Publishes and stores the message as the topic's value (an empty
    /// payload deletes the value and reaches no one). With a data directory
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
        self.shared.dispatch(std::slice::from_ref(&delivery), &receivers);
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
        self.inbox.push_all(&values, true);
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
        match queue.messages.pop_front() {
            Some(message) => Ok(Some(message)),
            None => queue.closed.map_or(Ok(None), |reason| Err(closed_error(reason))),
        }
    }

    /// Moves every queued message to `out` (waiting up to `timeout` for the
    /// first); returns how many. One lock for the lot: what a consumer of
    /// high message rates wants.
    pub fn recv_batch(&self, out: &mut Vec<Received>, timeout: Duration) -> Result<usize, Error> {
        let deadline = Instant::now() + timeout;
        for _ in 0..SPINS {
            if self.inbox.queued.load(Ordering::Acquire) {
                break;
            }
            std::hint::spin_loop();
        }
        let mut queue = self.inbox.queue.lock();
        loop {
            if !queue.messages.is_empty() {
                let count = queue.messages.len();
                out.extend(queue.messages.drain(..));
                self.inbox.queued.store(false, Ordering::Relaxed);
                return Ok(count);
            }
            if let Some(reason) = queue.closed {
                return Err(closed_error(reason));
            }
            if self.shared.is_shutting_down() {
                return Err(Error::BrokerStopped);
            }
            if self.inbox.ready.wait_until(&mut queue, deadline).timed_out() && queue.messages.is_empty() {
                return Ok(0);
            }
        }
    }

    /// The next message, waiting up to `timeout`; `Ok(None)` on time-out.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Received>, Error> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.inbox.queue.lock();
        loop {
            if let Some(message) = queue.messages.pop_front() {
                return Ok(Some(message));
            }
            if let Some(reason) = queue.closed {
                return Err(closed_error(reason));
            }
            if self.shared.is_shutting_down() {
                return Err(Error::BrokerStopped);
            }
            if self.inbox.ready.wait_until(&mut queue, deadline).timed_out() {
                return Ok(queue.messages.pop_front());
            }
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How many times [`LocalClient::recv_batch`] looks for a message before it
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
    }
}
