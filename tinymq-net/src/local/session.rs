//! An in-process client's durable session: QoS 1 publish and subscribe,
//! acknowledgement, and a session that outlives the client (and the
//! process) when asked. The rules are the core broker's
//! (`Broker::open_local_session` and the calls beside it), shared with
//! binary connections: one client-id space per namespace.

use std::sync::atomic::Ordering;

use tinymq_core::broker::Broker;
use tinymq_core::durable::Transmit;
use tinymq_core::{Qos, ReasonCode};

use super::LocalClient;
use crate::Error;
use crate::shared::Sink;
use crate::writer::{Durability, Ticket};

/// How an in-process client is opened, for
/// [`Broker::local_client`](crate::Broker::local_client).
///
/// ```
/// use std::time::Duration;
/// use tinymq_net::{Broker, LocalOptions};
///
/// let broker = Broker::builder().threads(1).start()?;
/// // A worker whose jobs wait for it while it is away (with a data
/// // directory, across restarts too), and which says when it is done
/// // with each.
/// let options = LocalOptions::new("worker-1").persistent_session(true).manual_ack(true);
/// let worker = broker.local_client(options)?;
/// worker.subscribe_qos1("jobs/#")?;
///
/// broker.client("dispatcher")?.publish_qos1("jobs/resize", b"photo-7")?;
/// let job = worker.recv_timeout(Duration::from_secs(5))?.expect("a job");
/// assert_eq!(job.payload(), b"photo-7");
/// // ... do the work; a crash before this line gets the job again ...
/// worker.ack(&job)?;
/// # broker.shutdown();
/// # Ok::<(), tinymq_net::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalOptions {
    pub(super) client_id: String,
    pub(super) persistent_session: bool,
    pub(super) manual_ack: bool,
}

impl LocalOptions {
    /// A client with id `client_id` (empty: the broker assigns one), whose
    /// session ends with it, acknowledging QoS 1 messages as it receives
    /// them.
    pub fn new(client_id: impl Into<String>) -> Self {
        LocalOptions { client_id: client_id.into(), ..LocalOptions::default() }
    }

    /// Keeps the client's session (its subscriptions and the QoS 1
    /// messages they match) after the client is dropped, for the broker's
    /// session expiry, and resumes a stored one: with a data directory it
    /// survives a restart of the program, a kill -9 included. Needs a
    /// client id. Like a binary client's `--session`.
    pub fn persistent_session(mut self, persistent: bool) -> Self {
        self.persistent_session = persistent;
        self
    }

    /// Acknowledges QoS 1 messages only when [`LocalClient::ack`] is
    /// called, rather than as they are received: a message taken and not
    /// acknowledged is delivered again to the next client with this id
    /// (after the program restarts, say), so a service that crashes in the
    /// middle of a message processes it at least once. At most the
    /// broker's `max_inflight` messages are given out unacknowledged.
    pub fn manual_ack(mut self, manual: bool) -> Self {
        self.manual_ack = manual;
        self
    }
}

impl LocalClient {
    /// Whether the client resumed a stored session (its subscriptions are
    /// back, and what waited for it is delivered first).
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// Subscribes to `filter` at QoS 1: messages published at QoS 1 (by
    /// binary and in-process clients) are queued in the client's session until it
    /// acknowledges them, and, with a persistent session, kept while it
    /// is away. Others arrive at QoS 0. Stored values it matches arrive
    /// first, at QoS 0, marked retained.
    pub fn subscribe_qos1(&self, filter: &str) -> Result<(), Error> {
        self.subscribe_with(filter, Qos::AtLeastOnce)
    }

    /// Publishes `payload` to `topic` at QoS 1, and returns once the broker
    /// acknowledges it: routed, and a copy queued for each QoS 1
    /// subscription; with a data directory and [`Durability::Immediate`],
    /// once those copies (for persistent sessions) are committed to the
    /// store. The calling thread waits for the commit; no event loop does.
    /// [`Error::Store`] says the commit failed: the message was delivered
    /// to whoever was online, but may not survive a restart.
    pub fn publish_qos1(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let (name, delivery) = self.one_message(topic, payload)?;
        let (mut routed, ticket) = {
            let mut broker = self.shared.broker.write();
            let mut routed = broker.publish_qos(self.namespace, name, delivery, false, Qos::AtLeastOnce);
            let mut ticket = None;
            for op in std::mem::take(&mut routed.store) {
                ticket = self.shared.submit(op).or(ticket);
            }
            ticket = self.submit_session_ops(&mut broker).or(ticket);
            (routed, ticket)
        };
        self.shared.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        routed.store.clear();
        self.shared.carry_out(routed);
        self.wait_committed(ticket)
    }

    /// Acknowledges a QoS 1 message received with
    /// [`LocalOptions::manual_ack`]: it is done, and leaves the session
    /// (and the store). With a data directory and
    /// [`Durability::Immediate`], returns once that is committed: a
    /// message acknowledged is not delivered again, even after a kill -9
    /// (under `batched`, one acknowledged in the last commit interval may
    /// be). Returns whether it was waiting for this: `false` for a QoS 0
    /// message, one acknowledged already (or on receipt), or one whose
    /// session this client no longer holds (taken over).
    pub fn ack(&self, message: &super::Received) -> Result<bool, Error> {
        if message.packet_id == 0 {
            return Ok(false);
        }
        let (acked, ticket) = {
            let mut broker = self.shared.broker.write();
            let acked = broker.local_ack(self.hold, message.packet_id);
            (acked, self.submit_session_ops(&mut broker))
        };
        if !acked {
            return Ok(false);
        }
        // The window has room for another.
        self.inbox.wake_session();
        self.wait_committed(ticket)?;
        Ok(true)
    }

    /// Under [`Durability::Immediate`], waits for the commit of `ticket`'s
    /// write (on this thread; no event loop waits).
    fn wait_committed(&self, ticket: Option<Ticket>) -> Result<(), Error> {
        let Some(ticket) = ticket else { return Ok(()) };
        if self.shared.config.durability != Durability::Immediate {
            return Ok(());
        }
        let store = self.shared.store.as_ref().expect("a ticket needs a store");
        store.wait(ticket).map_err(|error| {
            self.shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
            Error::Store(error)
        })
    }

    /// Takes up to `max` QoS 1 messages from the client's session, if it
    /// was told there may be some, acknowledging them unless the client
    /// acknowledges itself. Takes the broker's lock: never call it under
    /// the queue's.
    pub(super) fn take_session(&self, max: usize) -> Vec<Transmit> {
        // Read before it is written: a stream of QoS 0 messages polls this
        // at each receive, and a load leaves the cache line shared.
        let ready = &self.inbox.session_ready;
        if max == 0 || !ready.load(Ordering::Acquire) || !ready.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let mut taken = Vec::new();
        {
            let mut broker = self.shared.broker.write();
            while taken.len() < max {
                let Some(transmit) = broker.local_transmit(self.hold) else { break };
                if !self.manual_ack {
                    broker.local_ack(self.hold, transmit.packet_id);
                }
                taken.push(transmit);
            }
            self.submit_session_ops(&mut broker);
        }
        if taken.len() == max {
            // There may be more.
            self.inbox.session_ready.store(true, Ordering::Release);
        }
        self.shared.stats.messages_out.fetch_add(taken.len() as u64, Ordering::Relaxed);
        taken
    }

    /// Hands the sessions' writes to the store's writer, under the
    /// broker's lock so they reach it in the order the broker made them.
    /// The ticket of the last, if anything is stored.
    pub(super) fn submit_session_ops(&self, broker: &mut Broker<Sink>) -> Option<Ticket> {
        let mut last = None;
        while let Some(op) = broker.poll_store_op() {
            last = self.shared.submit(op).or(last);
        }
        last
    }
}

/// The broker refused a persistent session: too many are held.
pub(super) fn too_many_sessions() -> Error {
    Error::SessionClosed(ReasonCode::TooManySessions)
}
