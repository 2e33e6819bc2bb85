//! Sessions that outlive connections: QoS 1 queues, persistent
//! subscriptions, expiry and wills, sans-IO and protocol-neutral.
//!
//! [`Sessions`] holds one state per session key (namespace and client id):
//! its subscriptions with their QoS, its [`DeliveryQueue`] of QoS 1 messages
//! (in flight and waiting), its will and, once its connection is gone, when
//! it expires. Packet ids and messages are all it knows of a protocol, so
//! the binary [`crate::Session`] and an MQTT session both drive it.
//!
//! # Calling order
//!
//! 1. At start, [`Sessions::restore`] with what the store loaded; publish
//!    the wills it returns (their clients vanished with the broker).
//! 2. On an accepted Connect, [`Sessions::open`]: it gives the session's
//!    handle ([`SessionId`], for every later call), says whether a stored
//!    session was resumed (ConnAck's SESSION_PRESENT), hands back its
//!    subscriptions for the router, and the will of a connection it took
//!    over; or it refuses a persistent session over the limit (Disconnect
//!    9). Then send [`Sessions::poll_transmit`]'s messages: resends first.
//! 3. [`Sessions::subscribe`] / [`Sessions::unsubscribe`] as the client
//!    does; [`Sessions::enqueue`] each QoS 1 message routed to the session,
//!    online or not; [`Sessions::ack`] each PubAck from its client; after
//!    each, send [`Sessions::poll_transmit`]'s messages.
//! 4. When the connection ends, [`Sessions::close`] with how: a lost
//!    connection returns the will to publish.
//! 5. Call [`Sessions::handle_timeout`] at [`Sessions::poll_timeout`]:
//!    expired sessions are returned, for the shell to drop from the router.
//! 6. After every call, drain [`Sessions::poll_store_op`] into the store's
//!    writer (persistent sessions only produce them). The writer commits in
//!    groups; nothing here waits for it.
//!
//! ```
//! use std::time::Instant;
//! use tinymq_core::durable::{Departure, SessionKey, SessionRequest, Sessions, SessionsConfig};
//! use tinymq_core::{Delivery, Filter, Message, Qos, TopicLimits};
//!
//! let mut sessions = Sessions::new(SessionsConfig::default());
//! let key = SessionKey::new("", "device-7");
//! let persistent = SessionRequest { persistent: true, ..Default::default() };
//!
//! // The device connects, subscribes at QoS 1, and drops off.
//! let opened = sessions.open(&key, persistent).unwrap();
//! assert!(!opened.session_present);
//! let id = opened.id;
//! sessions.subscribe(id, Filter::new("cmd/#", &TopicLimits::default()).unwrap(), Qos::AtLeastOnce);
//! sessions.close(Instant::now(), 1_700_000_000, id, opened.token, Departure::Lost);
//!
//! // A command for it is queued while it is away.
//! let command = Message {
//!     topic: "cmd/reboot".into(),
//!     payload: b"now"[..].into(),
//!     from: "operator".into(),
//!     updated_time: 1_700_000_001,
//!     ip: None,
//! };
//! sessions.enqueue(id, Delivery::new(command)).unwrap().unwrap();
//!
//! // It comes back: the session resumes and the command goes out with a
//! // packet id (the shell writes it with `Session::deliver_qos1`).
//! let opened = sessions.open(&key, persistent).unwrap();
//! assert!(opened.session_present && opened.id == id);
//! let transmit = sessions.poll_transmit(id).unwrap();
//! assert_eq!(&transmit.delivery.message().payload[..], b"now");
//!
//! // Its PubAck comes back as `Request::PubAck`; the message is done.
//! assert_eq!(sessions.ack(id, transmit.packet_id), Some(transmit.seq));
//! // Every change was queued for the store's writer, in order.
//! assert_eq!(std::iter::from_fn(|| sessions.poll_store_op()).count(), 6);
//! ```
//!
//! # In a shell
//!
//! - **When to acknowledge a QoS 1 publish.** With `--durability batched`,
//!   call [`crate::Session::ack`] once the message is routed and queued
//!   ([`Sessions::enqueue`] returned): it is safe in memory. With
//!   `immediate`, hold the ack until the writer reports the commit that
//!   holds the message's `PutQueued` (and, for a retained publish, its
//!   value): note the writer's submission count after submitting the ops,
//!   and ack each held packet id once the committed count reaches it. The
//!   event loop never waits; only the PubAck does.
//! - **Routing.** A persistent session keeps its router subscriber while it
//!   has no connection, so matching messages still reach it; deliver at the
//!   lower of the publish QoS and [`Sessions::subscription_qos`]: QoS 1 to
//!   [`Sessions::enqueue`], QoS 0 straight to the connection if there is
//!   one (QoS 0 is never queued). On [`Opened::session_present`] re-add
//!   nothing (the subscriber kept its filters); otherwise start a new one.
//!   Drop it when [`Sessions::handle_timeout`] expires the session or
//!   [`Sessions::close`] ends a clean one.
//! - **Threads.** `Sessions` holds no locks. Several event loops can share
//!   one behind a mutex (each call is short), or split sessions between
//!   them by client id; the store ops of all go to the one writer.
//! - **Restart.** Load with [`crate::store::Store::load_sessions`] and
//!   [`crate::store::Store::load_queued`], [`Sessions::restore`], add a
//!   router subscriber with the restored filters for each of
//!   [`Sessions::iter`], then publish the returned wills.
//! - **Handles.** Keep the [`SessionId`] of [`Opened::id`] with the
//!   connection and as the router's sink for the session: every call but
//!   [`Sessions::open`] takes it, so the hot path hashes no client id.
//!
//! `tests/qos.rs` runs the whole of this on a virtual clock (its
//! `qos_shell` module is a reference shell, `immediate` durability).
//!
//! Persistence is ordered: a message's `PutQueued` is queued before the
//! `DeleteQueued` of its ack, so a store that applies ops in order is never
//! left holding an acknowledged message, and one that stops midway (kill
//! -9) has at worst messages that are sent again.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{Qos, Will};
use crate::message::Message;
use crate::router::Delivery;
use crate::store::{StoreOp, StoredQueued, StoredSession};
use crate::topic::{Filter, TopicName};

mod queue;
pub(crate) mod record;

pub use queue::{DeliveryQueue, ENTRY_OVERHEAD, QueueFull, QueueLimits, Transmit, entry_size};
pub use record::{SessionRecord, WillMessage};

#[cfg(test)]
mod tests;

/// The default and longest session expiry: one day.
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Settings of the broker's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionsConfig {
    /// Limits of every session's queue.
    pub queue: QueueLimits,
    /// `--session-expiry`: the expiry of a session whose Connect asks for
    /// the default, and the most any may ask for (default one day).
    pub session_expiry: Duration,
    /// Persistent sessions held at most, with a connection or not (default
    /// 100,000). Sessions that end with their connection are bounded by
    /// the connections.
    pub max_sessions: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig { queue: QueueLimits::default(), session_expiry: DEFAULT_SESSION_EXPIRY, max_sessions: 100_000 }
    }
}

/// A new persistent session was refused: [`SessionsConfig::max_sessions`]
/// are held. Answer the Connect with Disconnect
/// [`crate::ReasonCode::TooManySessions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many sessions")]
pub struct TooManySessions;

/// A session's identity: its namespace (user name, empty for the public
/// one) and client id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The namespace's name.
    pub namespace: Arc<str>,
    /// The client id.
    pub client_id: Arc<str>,
}

impl SessionKey {
    /// The key of `client_id` in `namespace`.
    pub fn new(namespace: &str, client_id: &str) -> Self {
        SessionKey { namespace: namespace.into(), client_id: client_id.into() }
    }
}

/// One connection's hold on a session, from [`Sessions::open`]. A
/// connection that was taken over holds a stale one, which
/// [`Sessions::close`] ignores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionToken(u64);

/// What a Connect asks of its session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionRequest<'a> {
    /// Keep the session after the connection and resume a stored one.
    pub persistent: bool,
    /// Seconds it outlives its connection; 0 for the broker's default.
    pub session_expiry: u32,
    /// The will of this connection.
    pub will: Option<Will<'a>>,
}

/// The answer to [`Sessions::open`].
#[derive(Debug)]
#[must_use]
pub struct Opened {
    /// The session's handle, for every later call about it.
    pub id: SessionId,
    /// This connection's hold on the session.
    pub token: ConnectionToken,
    /// A stored session was resumed: set SESSION_PRESENT in ConnAck.
    pub session_present: bool,
    /// The resumed session's subscriptions, to add to the router.
    pub subscriptions: Vec<(Filter, Qos)>,
    /// The connection that held the session was taken over: publish its
    /// will, if it had one.
    pub taken_over_will: Option<WillMessage>,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// The client sent Disconnect: the will is discarded.
    Clean,
    /// Anything else (keep-alive timeout, reset, protocol error, slow
    /// consumer, broker refusal): the will is published.
    Lost,
}

/// A session's handle: a slot in [`Sessions`] plus a generation, so a
/// handle kept after the session ended is recognised and ignored. A
/// persistent session keeps its handle across connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct State {
    key: SessionKey,
    persistent: bool,
    expiry: Duration,
    subscriptions: Vec<(Filter, Qos)>,
    queue: DeliveryQueue,
    will: Option<WillMessage>,
    /// The connection holding it, if any.
    online: Option<ConnectionToken>,
    /// When it lost its connection, on the virtual clock and in Unix
    /// seconds (for the store).
    offline_since: Option<(Instant, u64)>,
}

impl State {
    fn record(&self) -> SessionRecord {
        SessionRecord {
            expiry_secs: u32::try_from(self.expiry.as_secs()).unwrap_or(u32::MAX),
            offline_since: self.offline_since.map_or(0, |(_, unix)| unix),
            subscriptions: self.subscriptions.clone(),
            will: self.will.clone(),
        }
    }

    fn expires_at(&self) -> Option<Instant> {
        self.offline_since.map(|(since, _)| since + self.expiry)
    }

    fn put(&self) -> StoreOp {
        StoreOp::PutSession {
            namespace: self.key.namespace.to_string(),
            client_id: self.key.client_id.to_string(),
            record: self.record(),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    state: Option<State>,
}

/// Every session that holds state beyond its connection's frames. See the
/// module docs for the calling order.
#[derive(Debug)]
pub struct Sessions {
    config: SessionsConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_key: HashMap<SessionKey, SessionId>,
    /// Sessions without a connection by when they expire, so the next
    /// deadline is found without a scan.
    expiries: BTreeSet<(Instant, SessionId)>,
    persistent: usize,
    ops: VecDeque<StoreOp>,
    next_token: u64,
    counts: QosCounts,
}

/// What the sessions' QoS 1 queues did since start, for the figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct QosCounts {
    acknowledged: u64,
    resent: u64,
    dropped: u64,
}

/// The sessions and their QoS 1 queues in numbers, for STATS and
/// `/metrics`: see [`Sessions::figures`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionFigures {
    /// Sessions held, with a connection or not.
    pub total: u64,
    /// Sessions that outlive their connection.
    pub persistent: u64,
    /// Sessions a connection (or an in-process client) holds now.
    pub online: u64,
    /// QoS 1 messages held in the queues, in flight included.
    pub queued: u64,
    /// QoS 1 messages sent and not yet acknowledged.
    pub inflight: u64,
    /// QoS 1 messages acknowledged by their subscriber, since start.
    pub acknowledged: u64,
    /// QoS 1 messages sent again (DUP), since start: after a reconnect or
    /// a restart.
    pub resent: u64,
    /// QoS 1 messages a full session queue refused, since start.
    pub dropped: u64,
}

impl Sessions {
    /// No sessions.
    pub fn new(config: SessionsConfig) -> Self {
        Sessions {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            expiries: BTreeSet::new(),
            persistent: 0,
            ops: VecDeque::new(),
            next_token: 1,
            counts: QosCounts::default(),
        }
    }

    fn state(&self, id: SessionId) -> Option<&State> {
        let slot = self.slots.get(id.index as usize)?;
        slot.state.as_ref().filter(|_| slot.generation == id.generation)
    }

    fn state_mut(&mut self, id: SessionId) -> Option<&mut State> {
        let slot = self.slots.get_mut(id.index as usize)?;
        slot.state.as_mut().filter(|_| slot.generation == id.generation)
    }

    /// Files `state` in a free slot, keeping the key index, the counts and
    /// the expiry index.
    fn insert(&mut self, state: State) -> SessionId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            u32::try_from(self.slots.len() - 1).expect("under 2^32 sessions")
        });
        let slot = &mut self.slots[index as usize];
        let id = SessionId { index, generation: slot.generation };
        if let Some(at) = state.expires_at() {
            self.expiries.insert((at, id));
        }
        self.persistent += usize::from(state.persistent);
        self.by_key.insert(state.key.clone(), id);
        slot.state = Some(state);
        id
    }

    fn remove(&mut self, id: SessionId) -> Option<State> {
        self.state(id)?;
        let slot = &mut self.slots[id.index as usize];
        let state = slot.state.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        if let Some(at) = state.expires_at() {
            self.expiries.remove(&(at, id));
        }
        self.persistent -= usize::from(state.persistent);
        self.by_key.remove(&state.key);
        Some(state)
    }

    /// Sets when `id`'s session lost its connection (`None`: it has one),
    /// keeping the expiry index.
    fn set_offline(&mut self, id: SessionId, offline_since: Option<(Instant, u64)>) {
        let Some(state) = self.state_mut(id) else { return };
        let before = state.expires_at();
        state.offline_since = offline_since;
        let after = state.expires_at();
        if let Some(at) = before {
            self.expiries.remove(&(at, id));
        }
        if let Some(at) = after {
            self.expiries.insert((at, id));
        }
    }

    /// Rebuilds the persistent sessions the store loaded, at `now` (Unix
    /// seconds `unix_now`), all without a connection. A session that still
    /// had one when the broker stopped counts as offline from now, and its
    /// will is returned to be published. Sessions already expired are
    /// deleted (store ops queued); queued messages of no session are
    /// deleted too. Give each restored session ([`Sessions::iter`]) a
    /// router subscriber with its filters.
    pub fn restore(
        &mut self,
        now: Instant,
        unix_now: u64,
        sessions: Vec<StoredSession>,
        queued: Vec<StoredQueued>,
    ) -> Vec<(SessionId, WillMessage)> {
        let mut messages: HashMap<SessionKey, Vec<(u64, Arc<Delivery>)>> = HashMap::new();
        for stored in queued {
            let key = SessionKey::new(&stored.namespace, &stored.client_id);
            let delivery = Delivery::restored(stored.message, stored.retained);
            messages.entry(key).or_default().push((stored.seq, delivery));
        }
        let mut wills = Vec::new();
        for stored in sessions {
            let key = SessionKey::new(&stored.namespace, &stored.client_id);
            let record = stored.record;
            let expiry = Duration::from_secs(record.expiry_secs.into()).min(self.config.session_expiry);
            let (offline_unix, lost) = match record.offline_since {
                0 => (unix_now, true),
                since => (since, false),
            };
            let elapsed = Duration::from_secs(unix_now.saturating_sub(offline_unix));
            // Restored into sessions already made (a second restore): the
            // held one stands.
            if self.by_key.contains_key(&key) {
                messages.remove(&key);
                continue;
            }
            if elapsed >= expiry {
                self.ops.push_back(delete_session(&key));
                messages.remove(&key);
                continue;
            }
            // The virtual clock may not reach back that far: then from now.
            let since = now.checked_sub(elapsed).unwrap_or(now);
            let (queue, dropped) = DeliveryQueue::restore(self.config.queue, messages.remove(&key).unwrap_or_default());
            for seq in dropped {
                self.ops.push_back(delete_queued(&key, seq));
            }
            let mut will = record.will;
            let lost_will = if lost { will.take() } else { None };
            let state = State {
                key,
                persistent: true,
                expiry,
                subscriptions: record.subscriptions,
                queue,
                will,
                online: None,
                offline_since: Some((since, offline_unix)),
            };
            if lost {
                self.ops.push_back(state.put());
            }
            let id = self.insert(state);
            if let Some(will) = lost_will {
                wills.push((id, will));
            }
        }
        for (key, orphans) in messages {
            for (seq, _) in orphans {
                self.ops.push_back(delete_queued(&key, seq));
            }
        }
        wills
    }

    /// A connection was accepted for `key` asking for `request`. See
    /// [`Opened`]. A new persistent session over
    /// [`SessionsConfig::max_sessions`] is refused, and nothing changes.
    pub fn open(&mut self, key: &SessionKey, request: SessionRequest<'_>) -> Result<Opened, TooManySessions> {
        let existing = self.by_key.get(key).copied();
        let stored = existing.and_then(|id| self.state(id)).is_some_and(|state| state.persistent);
        if request.persistent && !stored && self.persistent >= self.config.max_sessions {
            return Err(TooManySessions);
        }
        let token = ConnectionToken(self.next_token);
        self.next_token += 1;
        let will = request.will.map(|w| WillMessage {
            topic: w.topic.into(),
            payload: w.payload.into(),
            retain: w.retain,
            qos: w.qos,
        });
        let expiry = match request.session_expiry {
            0 => self.config.session_expiry,
            secs => Duration::from_secs(secs.into()).min(self.config.session_expiry),
        };
        let mut taken_over_will = None;
        if let Some(id) = existing
            && let Some(state) = self.state_mut(id)
            && state.online.is_some()
        {
            taken_over_will = state.will.take();
        }
        if let Some(id) = existing
            && request.persistent
            && stored
        {
            self.set_offline(id, None);
            let state = self.state_mut(id).expect("found above");
            state.online = Some(token);
            state.expiry = expiry;
            state.will = will;
            state.queue.reconnected();
            let subscriptions = state.subscriptions.clone();
            let put = state.put();
            self.ops.push_back(put);
            return Ok(Opened { id, token, session_present: true, subscriptions, taken_over_will });
        }
        if let Some(old) = existing.and_then(|id| self.remove(id))
            && old.persistent
        {
            self.ops.push_back(delete_session(key));
        }
        let state = State {
            key: key.clone(),
            persistent: request.persistent,
            expiry,
            subscriptions: Vec::new(),
            queue: DeliveryQueue::new(self.config.queue),
            will,
            online: Some(token),
            offline_since: None,
        };
        if state.persistent {
            self.ops.push_back(state.put());
        }
        let id = self.insert(state);
        Ok(Opened { id, token, session_present: false, subscriptions: Vec::new(), taken_over_will })
    }

    /// The connection holding `token` ended at `now` (`unix_now` in Unix
    /// seconds), as `departure` says. Returns the will to publish, if the
    /// connection was lost and had one. A session that is not persistent
    /// ends with it; a persistent one waits for its next connection until
    /// it expires. A stale token (the session was taken over) does nothing.
    pub fn close(
        &mut self,
        now: Instant,
        unix_now: u64,
        id: SessionId,
        token: ConnectionToken,
        departure: Departure,
    ) -> Option<WillMessage> {
        let state = self.state_mut(id).filter(|state| state.online == Some(token))?;
        let will = state.will.take().filter(|_| departure == Departure::Lost);
        if !state.persistent {
            self.remove(id);
            return will;
        }
        state.online = None;
        // 0 means "connected" in the record.
        self.set_offline(id, Some((now, unix_now.max(1))));
        let put = self.state(id).expect("still held").put();
        self.ops.push_back(put);
        will
    }

    /// Adds or updates a subscription of `id`'s session (QoS as granted).
    pub fn subscribe(&mut self, id: SessionId, filter: Filter, qos: Qos) {
        let Some(state) = self.state_mut(id) else { return };
        match state.subscriptions.iter_mut().find(|(held, _)| *held == filter) {
            Some(entry) if entry.1 == qos => return,
            Some(entry) => entry.1 = qos,
            None => state.subscriptions.push((filter, qos)),
        }
        if state.persistent {
            let put = state.put();
            self.ops.push_back(put);
        }
    }

    /// Removes a subscription of `id`'s session.
    pub fn unsubscribe(&mut self, id: SessionId, filter: &Filter) {
        let Some(state) = self.state_mut(id) else { return };
        let before = state.subscriptions.len();
        state.subscriptions.retain(|(held, _)| held != filter);
        if state.persistent && state.subscriptions.len() != before {
            let put = state.put();
            self.ops.push_back(put);
        }
    }

    /// Queues a QoS 1 message for `id`'s session, online or not. Its
    /// sequence number, or [`QueueFull`] (dropped for this session; see
    /// [`QueueLimits`]). `None` when there is no such session.
    pub fn enqueue(&mut self, id: SessionId, delivery: Arc<Delivery>) -> Option<Result<u64, QueueFull>> {
        let state = self.state_mut(id)?;
        let message = state.persistent.then(|| (delivery.message().clone(), delivery.is_retained()));
        let result = state.queue.push(delivery);
        if let (Ok(seq), Some((message, retained))) = (result, message) {
            let (namespace, client_id) = (state.key.namespace.to_string(), state.key.client_id.to_string());
            self.ops.push_back(StoreOp::PutQueued { namespace, client_id, seq, message, retained });
        }
        if result.is_err() {
            self.counts.dropped += 1;
        }
        Some(result)
    }

    /// The QoS at which `id`'s session takes a message to `topic`: the
    /// highest of its matching subscriptions', `None` if none matches. A
    /// message goes at the lower of this and its publish QoS.
    pub fn subscription_qos(&self, id: SessionId, topic: TopicName<'_>) -> Option<Qos> {
        let state = self.state(id)?;
        state.subscriptions.iter().filter(|(filter, _)| filter.matches(topic)).map(|(_, qos)| *qos).max()
    }

    /// The next message to send to `id`'s connection, if it has one and
    /// its window allows.
    pub fn poll_transmit(&mut self, id: SessionId) -> Option<Transmit> {
        let state = self.state_mut(id)?;
        state.online?;
        let transmit = state.queue.poll_transmit()?;
        self.counts.resent += u64::from(transmit.dup);
        Some(transmit)
    }

    /// [`Sessions::poll_transmit`] within a window narrower than the
    /// queue's for this connection (see
    /// [`DeliveryQueue::poll_transmit_within`]).
    pub fn poll_transmit_within(&mut self, id: SessionId, window: usize) -> Option<Transmit> {
        let state = self.state_mut(id)?;
        state.online?;
        state.queue.poll_transmit_within(window)
    }

    /// Sets the limits of `id`'s queue, in place of the sessions' (see
    /// [`DeliveryQueue::set_limits`]): a bridge's out-queue has its own.
    pub fn set_queue_limits(&mut self, id: SessionId, limits: QueueLimits) {
        if let Some(state) = self.state_mut(id) {
            state.queue.set_limits(limits);
        }
    }

    /// `id`'s messages in flight are to be sent again, with DUP, before
    /// anything new: its holder has a new connection of its own (a bridge
    /// reconnected) without opening the session again.
    pub fn resend(&mut self, id: SessionId) {
        if let Some(state) = self.state_mut(id) {
            state.queue.reconnected();
        }
    }

    /// `id`'s client acknowledged `packet_id`. The message's sequence
    /// number, or `None` for an id not in flight (ignored).
    pub fn ack(&mut self, id: SessionId, packet_id: u16) -> Option<u64> {
        let state = self.state_mut(id)?;
        let seq = state.queue.ack(packet_id)?;
        if state.persistent {
            let op = delete_queued(&state.key, seq);
            self.ops.push_back(op);
        }
        self.counts.acknowledged += 1;
        Some(seq)
    }

    /// When [`Sessions::handle_timeout`] must next be called: the earliest
    /// expiry of a session without a connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Removes the sessions that expired by `now`, and returns their
    /// handles (now stale) and keys.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(SessionId, SessionKey)> {
        let mut expired = Vec::new();
        while let Some(&(at, id)) = self.expiries.first()
            && at <= now
        {
            let Some(state) = self.remove(id) else { break };
            self.ops.push_back(delete_session(&state.key));
            expired.push((id, state.key));
        }
        expired
    }

    /// The next change to write to the store, oldest first.
    pub fn poll_store_op(&mut self) -> Option<StoreOp> {
        self.ops.pop_front()
    }

    /// The session of `key`, if there is one.
    pub fn find(&self, key: &SessionKey) -> Option<SessionId> {
        self.by_key.get(key).copied()
    }

    /// `id`'s session, to look at.
    pub fn get(&self, id: SessionId) -> Option<SessionView<'_>> {
        self.state(id).map(|state| SessionView { state })
    }

    /// Every session, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (SessionId, SessionView<'_>)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let state = slot.state.as_ref()?;
            let id = SessionId { index: index as u32, generation: slot.generation };
            Some((id, SessionView { state }))
        })
    }

    /// The number of sessions, with a connection or not.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The number of persistent sessions, with a connection or not.
    pub fn persistent_len(&self) -> usize {
        self.persistent
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The sessions and their queues in numbers. The gauges are summed
    /// over every session: call it for a statistics call, not per message.
    pub fn figures(&self) -> SessionFigures {
        let QosCounts { acknowledged, resent, dropped } = self.counts;
        let mut figures = SessionFigures {
            total: self.len() as u64,
            persistent: self.persistent as u64,
            acknowledged,
            resent,
            dropped,
            ..SessionFigures::default()
        };
        for (_, view) in self.iter() {
            figures.online += u64::from(view.is_online());
            figures.queued += view.queue().len() as u64;
            figures.inflight += view.queue().inflight() as u64;
        }
        figures
    }
}

/// A read-only look at one session.
#[derive(Clone, Copy, Debug)]
pub struct SessionView<'a> {
    state: &'a State,
}

impl<'a> SessionView<'a> {
    /// Its namespace and client id.
    pub fn key(&self) -> &'a SessionKey {
        &self.state.key
    }

    /// Whether a connection holds it.
    pub fn is_online(&self) -> bool {
        self.state.online.is_some()
    }

    /// Whether the connection holding `token` holds it now (not one taken
    /// over since).
    pub fn is_held_by(&self, token: ConnectionToken) -> bool {
        self.state.online == Some(token)
    }

    /// Whether it outlives its connection.
    pub fn is_persistent(&self) -> bool {
        self.state.persistent
    }

    /// Its subscriptions with their QoS.
    pub fn subscriptions(&self) -> &'a [(Filter, Qos)] {
        &self.state.subscriptions
    }

    /// Its QoS 1 queue.
    pub fn queue(&self) -> &'a DeliveryQueue {
        &self.state.queue
    }

    /// How long it outlives its connection: what its Connect asked,
    /// capped by [`SessionsConfig::session_expiry`].
    pub fn expiry(&self) -> Duration {
        self.state.expiry
    }

    /// Its will, if it has one.
    pub fn will(&self) -> Option<&'a WillMessage> {
        self.state.will.as_ref()
    }
}

impl WillMessage {
    /// The message its publication carries, from `client_id` at Unix
    /// seconds `unix_time`.
    pub fn message(&self, client_id: &Arc<str>, unix_time: u64) -> Message {
        Message {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            from: client_id.clone(),
            updated_time: unix_time,
            ip: None,
        }
    }
}

fn delete_session(key: &SessionKey) -> StoreOp {
    StoreOp::DeleteSession { namespace: key.namespace.to_string(), client_id: key.client_id.to_string() }
}

fn delete_queued(key: &SessionKey, seq: u64) -> StoreOp {
    StoreOp::DeleteQueued { namespace: key.namespace.to_string(), client_id: key.client_id.to_string(), seq }
}
