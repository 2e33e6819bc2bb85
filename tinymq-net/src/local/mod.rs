//! In-process clients: publish and subscribe inside the broker's process,
//! with no socket and no encoding.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tinymq_core::broker::{self, LocalSession, SessionHold};
use tinymq_core::durable::Transmit;
use tinymq_core::outbound::COPY_BELOW as FRAME_COPY_BELOW;
use tinymq_core::{
    Delivery, Filter, Frame, Message, NamespaceId, Qos, ReasonCode, RouteCache, SubscriberId, TopicName,
};

use crate::Error;
use crate::flow;
use crate::local_inbox::{COPY_BELOW, LocalInbox, Origin, Pending, WhenFull, wait_until};
pub use crate::local_inbox::{Received, ReceivedBatch, ReceivedIter, ReceivedRef};
use crate::shared::{Batch, Shared, Sink};
use crate::writer::Durability;

mod session;

pub use session::LocalOptions;

/// A client living in the broker's process. Dropping it removes its
/// subscriptions, unless its session is persistent
/// ([`LocalOptions::persistent_session`]): then they, and the QoS 1
/// messages they match, wait for the next client with its id.
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
    /// Its hold on its durable session (see [`LocalOptions`]).
    hold: SessionHold,
    session_present: bool,
    /// QoS 1 messages wait for [`LocalClient::ack`] rather than being
    /// acknowledged as they are received.
    manual_ack: bool,
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
    pub(crate) fn new(shared: Arc<Shared>, options: LocalOptions) -> Result<Self, Error> {
        if shared.is_shutting_down() {
            return Err(Error::BrokerStopped);
        }
        let inbox = Arc::new(LocalInbox::new(&shared.config, shared.local_filling.clone()));
        let namespace = NamespaceId::PUBLIC;
        let origin = broker::Origin { unix_time: crate::shared::unix_time(), ip: None };
        let opened = {
            let mut broker = shared.broker.write();
            let opened = broker.open_local_session(
                namespace,
                Sink::Local(inbox.clone()),
                &options.client_id,
                options.persistent_session,
                origin,
                Sink::Session,
            );
            // Submitted under the lock, in the order the broker made them.
            if let Ok(opened) = &opened {
                for op in opened.routed.store.iter().cloned() {
                    let _ = shared.submit(op);
                }
            }
            while let Some(op) = broker.poll_store_op() {
                let _ = shared.submit(op);
            }
            opened.map_err(|_| session::too_many_sessions())?
        };
        let LocalSession { registered, hold, session_present, mut routed } = opened;
        let (id, client_id) = (registered.id, registered.client_id);
        match registered.taken_over {
            Some(Sink::Conn(old)) => {
                shared.send(old.loop_index(), crate::shared::Control::Close(old, ReasonCode::SessionTakenOver).into())
            }
            Some(Sink::Local(old)) => old.close(ReasonCode::SessionTakenOver),
            // Moustique clients hold no client id in the router.
            Some(Sink::Http(_) | Sink::Session(_)) | None => {}
        }
        routed.store.clear();
        shared.carry_out(routed);
        if session_present {
            // Its queue may hold what waited for it.
            inbox.session_ready.store(true, Ordering::Release);
        }
        Ok(LocalClient {
            shared,
            id,
            namespace,
            client_id,
            inbox,
            last: Mutex::default(),
            hold,
            session_present,
            manual_ack: options.manual_ack,
        })
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
        let receivers = self.shared.broker.read().route_live_in(routes, self.namespace, name);
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
            Sink::Conn(target) => target.transport.takes_binary_frames() && frame_len < FRAME_COPY_BELOW,
            Sink::Http(_) | Sink::Session(_) => false,
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
        let (name, delivery) = self.one_message(topic, payload)?;
        let (published, ticket) = {
            let mut broker = self.shared.broker.write();
            let mut published = broker.publish(self.namespace, name, &delivery, true);
            // Submitted under the lock, so the store sees writes to a topic
            // in the order the broker made them.
            let ticket = published.store.take().and_then(|op| self.shared.submit(op));
            (published, ticket)
        };
        let receivers = &published.receivers;
        self.shared.stats.messages_out.fetch_add(published.queued as u64, Ordering::Relaxed);
        self.shared.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        flow::pace(&self.shared, &mut self.last.lock().paced, receivers, payload.len());
        self.shared.dispatch(std::slice::from_ref(&delivery), receivers, WhenFull::Wait);
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
        Ok(published.receivers.len() + published.queued)
    }

    fn topic_name<'t>(&self, topic: &'t str) -> Result<TopicName<'t>, Error> {
        TopicName::new(topic, &self.shared.config.session.topic_limits)
            .map_err(|source| Error::InvalidTopic { topic: topic.to_owned(), source })
    }

    /// One message to publish now, once the client is open, `topic` a
    /// topic name and `payload` within the limit.
    fn one_message<'t>(&self, topic: &'t str, payload: &[u8]) -> Result<(TopicName<'t>, Arc<Delivery>), Error> {
        self.check_open()?;
        let name = self.topic_name(topic)?;
        let max = self.shared.config.session.frame_limits.max_payload_len;
        if payload.len() > max {
            return Err(Error::PayloadTooLarge { len: payload.len(), max });
        }
        Ok((name, self.message(topic.into(), payload, unix_seconds())))
    }

    fn message(&self, topic: Arc<str>, payload: &[u8], updated_time: u64) -> Arc<Delivery> {
        Delivery::new(Message { topic, payload: payload.into(), from: self.client_id.clone(), updated_time, ip: None })
    }

    /// Subscribes to `filter` at QoS 0; stored values it matches arrive
    /// first, marked retained. A persistent session keeps the filter while
    /// the client is away (its QoS 0 messages meanwhile are not kept).
    pub fn subscribe(&self, filter: &str) -> Result<(), Error> {
        self.subscribe_with(filter, Qos::AtMostOnce)
    }

    fn subscribe_with(&self, filter: &str, qos: Qos) -> Result<(), Error> {
        self.check_open()?;
        let filter = self.filter(filter)?;
        let values = {
            let mut broker = self.shared.broker.write();
            let values = broker.subscribe_local_session(self.id, self.hold, filter, qos, Sink::Session);
            self.submit_session_ops(&mut broker);
            values
        };
        self.inbox.push_all(&values, true, WhenFull::DropOldest);
        Ok(())
    }

    fn filter(&self, filter: &str) -> Result<Filter, Error> {
        Filter::new(filter, &self.shared.config.session.topic_limits)
            .map_err(|source| Error::InvalidTopic { topic: filter.to_owned(), source })
    }

    /// Removes a subscription (of either QoS); `false` if the client did
    /// not hold it.
    pub fn unsubscribe(&self, filter: &str) -> Result<bool, Error> {
        let filter = self.filter(filter)?;
        let mut broker = self.shared.broker.write();
        let held = broker.unsubscribe_local_session(self.id, self.hold, &filter);
        self.submit_session_ops(&mut broker);
        Ok(held)
    }

    /// The next message, if one is queued: a QoS 1 message of the
    /// client's session first.
    pub fn try_recv(&self) -> Result<Option<Received>, Error> {
        if let Some(transmit) = self.take_session(1).pop() {
            return Ok(Some(received(&transmit)));
        }
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
    ///
    /// QoS 1 messages of the client's session come too (acknowledged as
    /// they are taken), unless it acknowledges with [`LocalClient::ack`]:
    /// a batch holds no packet ids, so such a client takes them with
    /// [`LocalClient::recv_timeout`], [`LocalClient::try_recv`] or
    /// [`LocalClient::recv_batch`].
    pub fn recv_many(&self, batch: &mut ReceivedBatch, timeout: Duration) -> Result<usize, Error> {
        batch.pending.clear();
        let session_max = if self.manual_ack { 0 } else { SESSION_BATCH };
        let taken = self.wait(timeout, true, session_max, |taken| match taken {
            Taken::Session(transmits) => {
                for transmit in &transmits {
                    batch.pending.push_delivery(&transmit.delivery, false);
                }
                Some(())
            }
            Taken::Inbox(pending) => (!pending.is_empty()).then(|| std::mem::swap(pending, &mut batch.pending)),
        })?;
        Ok(taken.map_or(0, |()| batch.len()))
    }

    /// Moves every queued message to `out` (waiting up to `timeout` for the
    /// first); returns how many. One lock for the lot; [`recv_many`] also
    /// saves the allocation of each message. QoS 1 messages of the
    /// client's session come in batches of their own, before the rest.
    ///
    /// [`recv_many`]: LocalClient::recv_many
    pub fn recv_batch(&self, out: &mut Vec<Received>, timeout: Duration) -> Result<usize, Error> {
        let taken = self.wait(timeout, true, SESSION_BATCH, |taken| match taken {
            Taken::Session(transmits) => Some(Owned::Session(transmits)),
            Taken::Inbox(pending) => (!pending.is_empty()).then(|| Owned::Inbox(std::mem::take(pending))),
        })?;
        // Copied out after the lock is let go.
        let count = match taken {
            None => 0,
            Some(Owned::Session(transmits)) => {
                out.extend(transmits.iter().map(received));
                transmits.len()
            }
            Some(Owned::Inbox(pending)) => {
                out.extend(pending.iter().map(|message| message.to_received()));
                pending.len()
            }
        };
        Ok(count)
    }

    /// The next message, waiting up to `timeout`; `Ok(None)` on time-out.
    /// A QoS 1 message of the client's session comes first.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Received>, Error> {
        self.wait(timeout, false, 1, |taken| match taken {
            Taken::Session(transmits) => transmits.first().map(received),
            Taken::Inbox(pending) => pending.pop_with(|message| message.to_received()),
        })
    }

    /// Waits up to `timeout` until `take` finds something: up to
    /// `session_max` QoS 1 messages of the client's session, or the
    /// queue (spinning a little first if `spin`). Queued messages are
    /// taken even after the client is closed.
    fn wait<R>(
        &self,
        timeout: Duration,
        spin: bool,
        session_max: usize,
        mut take: impl FnMut(Taken<'_>) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        if spin {
            for _ in 0..SPINS {
                if self.inbox.queued.0.load(Ordering::Acquire) || self.inbox.session_ready.load(Ordering::Relaxed) {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut timed_out = false;
        loop {
            // Not under the queue's lock: the broker's is taken first
            // wherever both are.
            let transmits = self.take_session(session_max);
            if !transmits.is_empty()
                && let Some(taken) = take(Taken::Session(transmits))
            {
                return Ok(Some(taken));
            }
            let mut queue = self.inbox.queue.lock();
            if let Some(taken) = take(Taken::Inbox(&mut queue.pending)) {
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
            if session_max > 0 && self.inbox.session_ready.load(Ordering::Acquire) {
                continue;
            }
            timed_out = wait_until(&self.inbox.ready, &mut queue, deadline);
        }
    }
}

/// Where [`LocalClient::wait`] found messages.
enum Taken<'a> {
    /// QoS 1 messages of the client's session, oldest first.
    Session(Vec<Transmit>),
    /// The client's queue.
    Inbox(&'a mut Pending),
}

/// What [`LocalClient::recv_batch`] took, to copy out after the lock.
enum Owned {
    Session(Vec<Transmit>),
    Inbox(Pending),
}

/// A QoS 1 message from the client's session, as the client receives it.
fn received(transmit: &Transmit) -> Received {
    Received::qos1(transmit.delivery.message().clone(), transmit.packet_id, transmit.dup)
}

/// QoS 1 messages a batch receive takes from the session at most, under
/// one lock of the broker.
const SESSION_BATCH: usize = 1024;

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
        {
            let mut broker = self.shared.broker.write();
            broker.close_local_session(self.id, self.hold, Instant::now(), crate::shared::unix_time());
            self.submit_session_ops(&mut broker);
        }
        // A publisher that routed to this client before it went may still
        // push to (or wait for room in) its queue: closed, it drops those
        // at once. No one is left to read the reason.
        self.inbox.close(ReasonCode::ShuttingDown);
    }
}

#[cfg(test)]
mod tests;
