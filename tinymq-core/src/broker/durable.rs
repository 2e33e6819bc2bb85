//! The broker's side of acknowledged delivery: the durable [`Sessions`]
//! of binary connections (and of MQTT ones, `mqtt.rs`), wired to the
//! router.
//!
//! Each session that needs one has a router subscriber of its own whose
//! sink is the session (`session_sink(id)`, recognised by
//! [`SinkKind::session`]): it holds a persistent session's filters, and a
//! session's QoS 1 filters, while connections come and go. A QoS 0
//! subscription of a session that ends with its connection stays on the
//! connection's subscriber, exactly as before QoS 1 existed, so a client
//! that never asks for acknowledgement takes the same paths.
//!
//! A publish that reaches a session's sink is queued with
//! [`Sessions::enqueue`] when both the publish and the subscription are
//! QoS 1, and otherwise goes to the session's connection (if it has one)
//! as any QoS 0 delivery. The shell then sends the queued messages with
//! [`Broker::transmit`] on the loop that owns the connection, which keeps
//! one session's packet ids in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::rules::{admit, published, register, subscribe};
use super::{Broker, Effects, Origin};
use crate::ReasonCode;
use crate::auth::{AuthError, Identity};
use crate::codec::Qos;
use crate::durable::{ConnectionToken, Departure, SessionId, SessionKey, SessionRequest, Sessions, WillMessage};
use crate::http::service::SinkKind;
use crate::router::{Delivery, NamespaceId, SubscriberId};
use crate::session::{Request, Session};
use crate::store::{StoreOp, StoredQueued, StoredSession};
use crate::topic::{Filter, TopicLimits, TopicName};

mod bridge;
mod local;
pub use bridge::{BRIDGE_NAMESPACE, bridge_session_key, is_bridge_session};
pub use local::LocalSession;

/// A connection's hold on its durable session, from
/// [`Broker::handle_session_connect`]: kept with the connection and given
/// back with each later call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionHold {
    /// The session.
    pub id: SessionId,
    /// This connection's token in it (stale once taken over).
    pub token: ConnectionToken,
}

/// Where a session's deliveries go.
#[derive(Debug)]
pub(super) struct SessionSlot<S> {
    /// The router subscriber holding the session's filters, once it has
    /// any that outlive the connection or are QoS 1.
    subscriber: Option<SubscriberId>,
    /// The sink of its connection, while it has one.
    conn: Option<S>,
    namespace: NamespaceId,
}

/// What a session call asks the shell to carry out.
#[derive(Debug)]
#[must_use]
pub struct Routed<S> {
    /// Messages to move at QoS 0 now, each with its receivers (the
    /// connections of sessions among them, never a session's own sink).
    pub deliveries: Vec<(Arc<Delivery>, SmallVec<[S; 4]>)>,
    /// Connections whose sessions have new QoS 1 messages to send: call
    /// [`Broker::transmit`] on the loop that owns each.
    pub pumps: SmallVec<[S; 4]>,
    /// Stored-value writes (retained publishes and wills), for the store.
    /// The sessions' own writes come from [`Broker::poll_store_op`].
    pub store: Vec<StoreOp>,
    /// Moustique queues the messages went into.
    pub queued: usize,
    /// QoS 1 messages a full session queue refused (drop-newest).
    pub dropped: usize,
}

impl<S> Default for Routed<S> {
    fn default() -> Self {
        Routed { deliveries: Vec::new(), pumps: SmallVec::new(), store: Vec::new(), queued: 0, dropped: 0 }
    }
}

/// What [`Broker::handle_session_connect`] did.
#[derive(Debug)]
#[must_use]
pub struct SessionConnect<S> {
    /// The connection's subscriber and the client taken over, as
    /// [`Broker::handle_connect`] gives them.
    pub effects: Effects<S>,
    /// The connection's hold on its session; `None` when refused.
    pub hold: Option<SessionHold>,
    /// The will of a taken-over connection, routed.
    pub routed: Routed<S>,
}

/// What [`Broker::handle_session_request`] did.
#[derive(Debug)]
#[must_use]
pub struct SessionEffects<S> {
    /// What [`Broker::handle_request`] would give (a QoS 0 request that no
    /// session rule touches goes there unchanged).
    pub effects: Effects<S>,
    /// The deliveries, queued messages and writes of a session rule.
    pub routed: Routed<S>,
    /// A QoS 1 publish whose PubAck waits for the store's commit of this
    /// call's writes (`--durability immediate`): its packet id.
    pub held_ack: Option<u16>,
}

impl<S: Clone + SinkKind> Broker<S> {
    /// A binary Connect whose credentials are decided, with the session it
    /// asks for ([`Request::Connect`]'s `session`): as
    /// [`Broker::handle_connect`], and the session is opened (ConnAck says
    /// whether a stored one was resumed), or refused with Disconnect 9 over
    /// the sessions' limit. `session_sink` makes the router sink of a
    /// session.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_session_connect(
        &mut self,
        session: &mut Session,
        sink: S,
        client_id: &str,
        request: SessionRequest<'_>,
        caller: Result<Identity, AuthError>,
        now: Instant,
        origin: Origin,
        session_sink: impl Fn(SessionId) -> S,
    ) -> SessionConnect<S> {
        if !session.is_connecting() {
            return SessionConnect { effects: Effects::default(), hold: None, routed: Routed::default() };
        }
        let caller = self.charged_caller(caller, origin.ip, now);
        self.open_session(session, sink, client_id, request, caller, origin, session_sink)
    }

    /// [`Broker::handle_session_connect`] for either face, its caller
    /// charged: admitted, the session opened, the client id claimed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open_session(
        &mut self,
        session: &mut impl Connecting,
        sink: S,
        client_id: &str,
        request: SessionRequest<'_>,
        caller: Result<Identity, AuthError>,
        origin: Origin,
        session_sink: impl Fn(SessionId) -> S,
    ) -> SessionConnect<S> {
        let mut answer = SessionConnect { effects: Effects::default(), hold: None, routed: Routed::default() };
        if !session.is_connecting() {
            return answer;
        }
        let namespace = match admit(&mut self.router, self.rules.http.allow_anonymous, caller) {
            Ok(namespace) => namespace,
            Err(text) => {
                session.refuse(ReasonCode::NotAuthorized, text);
                return answer;
            }
        };
        let namespace_name = self.router.namespace_name(namespace).clone();
        // A requested client id's session is opened before the id is
        // claimed: a refusal then takes nothing from the client holding
        // it. An assigned id is new, so its session is opened after.
        let mut before = None;
        let mut opened = None;
        if !client_id.is_empty() {
            let key = SessionKey { namespace: namespace_name.clone(), client_id: client_id.into() };
            before = self.sessions.find(&key);
            match self.sessions.open(&key, request) {
                Ok(open) => opened = Some(open),
                Err(refused) => {
                    session.refuse(ReasonCode::TooManySessions, &refused.to_string());
                    return answer;
                }
            }
        }
        let claimed = register(&mut self.router, namespace, sink.clone(), client_id, origin);
        let key = SessionKey { namespace: namespace_name, client_id: claimed.client_id.clone() };
        let opened = match opened.map_or_else(|| self.sessions.open(&key, request), Ok) {
            Ok(opened) => opened,
            Err(refused) => {
                self.router.remove_subscriber(claimed.id);
                session.refuse(ReasonCode::TooManySessions, &refused.to_string());
                return answer;
            }
        };
        answer.effects.taken_over = claimed.taken_over;
        answer.effects.connected = Some(claimed.id);
        if let Some(old) = before.filter(|old| *old != opened.id) {
            self.drop_slot(old);
        }
        let persistent = self.sessions.get(opened.id).is_some_and(|view| view.is_persistent());
        let queued = self.sessions.get(opened.id).is_some_and(|view| !view.queue().is_empty());
        if queued {
            // Resends first, then what waited: sent once ConnAck is out.
            answer.routed.pumps.push(sink.clone());
        }
        let slot = self.slots.entry(opened.id).or_insert(SessionSlot { subscriber: None, conn: None, namespace });
        slot.conn = Some(sink);
        if persistent && slot.subscriber.is_none() {
            let subscriber = self.router.add_subscriber(namespace, session_sink(opened.id));
            self.slots.get_mut(&opened.id).expect("inserted above").subscriber = Some(subscriber);
        }
        if let Some(will) = opened.taken_over_will {
            self.publish_will(&key, &will, origin.unix_time, &mut answer.routed);
        }
        let expiry = self.sessions.get(opened.id).map_or(0, |view| view.expiry().as_secs());
        let expiry = u32::try_from(expiry).unwrap_or(u32::MAX);
        session.accept(claimed.client_id, client_id.is_empty(), namespace, opened.session_present, expiry);
        answer.hold = Some(SessionHold { id: opened.id, token: opened.token });
        answer
    }

    /// A request of a connected binary session holding `hold`: QoS 1
    /// publishes, retained publishes, subscriptions and PubAcks go through
    /// the session rules; the rest to [`Broker::handle_request`].
    #[allow(clippy::too_many_arguments)]
    pub fn handle_session_request(
        &mut self,
        session: &mut Session,
        subscriber: Option<SubscriberId>,
        hold: SessionHold,
        sink: S,
        request: Request<'_>,
        origin: Origin,
        session_sink: impl Fn(SessionId) -> S,
    ) -> SessionEffects<S> {
        let mut answer = SessionEffects { effects: Effects::default(), routed: Routed::default(), held_ack: None };
        let Some(id) = subscriber else { return answer };
        // A connection taken over (and being closed) changes nothing of
        // the session its successor holds.
        let holds = self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token));
        match request {
            Request::Subscribe(..) | Request::Unsubscribe(_) if !holds => {}
            Request::Publish { topic, payload, retain, qos, packet_id } => {
                let Some(namespace) = self.router.namespace_of(id) else { return answer };
                let delivery = published(session, topic, payload, origin);
                self.route_qos(namespace, topic, delivery, retain, qos, &mut answer.routed);
                if qos == Qos::AtLeastOnce {
                    match self.rules.store {
                        super::StoreAcks::Immediate => answer.held_ack = Some(packet_id),
                        // Routed and queued: safe in memory, as `batched`
                        // promises.
                        _ => {
                            let _ = session.ack(packet_id);
                        }
                    }
                }
            }
            Request::Subscribe(filter, qos) => {
                let persistent = self.sessions.get(hold.id).is_some_and(|view| view.is_persistent());
                if !persistent && qos == Qos::AtMostOnce {
                    // As before QoS 1: on the connection's subscriber.
                    self.unsubscribe_session(hold.id, &filter);
                    answer.effects =
                        self.handle_request(session, subscriber, sink, Request::Subscribe(filter, qos), origin);
                    return answer;
                }
                let Some(own) = self.session_subscriber(hold.id, &session_sink) else { return answer };
                self.router.unsubscribe(id, &filter);
                self.sessions.subscribe(hold.id, filter.clone(), qos);
                session.sub_ack_qos(filter.as_str(), qos);
                for value in subscribe(&mut self.router, own, filter) {
                    if session.deliver_frame(&value.message().publish_frame(true)).is_err() {
                        break;
                    }
                }
            }
            Request::Unsubscribe(filter) => {
                self.unsubscribe_session(hold.id, &filter);
                answer.effects = self.handle_request(session, subscriber, sink, Request::Unsubscribe(filter), origin);
            }
            Request::PubAck { packet_id } => {
                self.sessions.ack(hold.id, packet_id);
                if let Some(conn) = self.slots.get(&hold.id).and_then(|slot| slot.conn.clone()) {
                    answer.routed.pumps.push(conn);
                }
            }
            request => answer.effects = self.handle_request(session, subscriber, sink, request, origin),
        }
        answer
    }

    /// Sends the queued QoS 1 messages `hold`'s window allows on its
    /// connection's `session`: resends first. Call it on the loop that
    /// owns the connection, after each [`Routed::pumps`] naming it. A
    /// connection taken over since (a stale hold) is sent nothing: its
    /// successor gets the messages.
    pub fn transmit(&mut self, hold: SessionHold, session: &mut Session) -> usize {
        if !self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token)) {
            return 0;
        }
        let mut sent = 0;
        while session.is_connected() {
            let Some(transmit) = self.sessions.poll_transmit(hold.id) else { break };
            if session.deliver_qos1(&transmit).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    }

    /// The connection holding `hold` ended, as `departure` says: a lost one
    /// publishes its will. A session that ends with it leaves the router;
    /// a persistent one keeps its subscriber until it expires.
    pub fn close_session(&mut self, hold: SessionHold, departure: Departure, now: Instant, unix_now: u64) -> Routed<S> {
        let mut routed = Routed::default();
        let key = self.sessions.get(hold.id).map(|view| view.key().clone());
        let will = self.sessions.close(now, unix_now, hold.id, hold.token, departure);
        match self.sessions.get(hold.id) {
            Some(view) if !view.is_online() => {
                if let Some(slot) = self.slots.get_mut(&hold.id) {
                    slot.conn = None;
                }
            }
            Some(_) => {}
            None => self.drop_slot(hold.id),
        }
        if let (Some(key), Some(will)) = (key, will) {
            self.publish_will(&key, &will, unix_now, &mut routed);
        }
        routed
    }

    /// A publish at `qos` from no connection's session (an in-process
    /// client's, or a bridge's message from the far side): the one publish
    /// rule, then the durable sessions among the receivers, as a session's
    /// own publish is routed: QoS 1 copies for QoS 1 subscriptions are
    /// queued in their sessions, the rest returned to move at QoS 0. The
    /// sessions' writes come from [`Broker::poll_store_op`]; whether the
    /// sender's acknowledgement waits for their commit is
    /// [`Broker::acks_after_commit`].
    pub fn publish_qos(
        &mut self,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        delivery: Arc<Delivery>,
        retain: bool,
        qos: Qos,
    ) -> Routed<S> {
        let mut routed = Routed::default();
        self.route_qos(namespace, topic, delivery, retain, qos, &mut routed);
        routed
    }

    /// Whether a QoS 1 publish is acknowledged only once the store has
    /// committed its writes (`--durability immediate`), rather than once
    /// it is routed.
    pub fn acks_after_commit(&self) -> bool {
        matches!(self.rules.store, super::StoreAcks::Immediate)
    }

    /// When [`Broker::handle_session_timeout`] must next be called.
    pub fn poll_session_timeout(&self) -> Option<Instant> {
        self.sessions.poll_timeout()
    }

    /// Ends the sessions that expired by `now`; returns how many.
    pub fn handle_session_timeout(&mut self, now: Instant) -> usize {
        let expired = self.sessions.handle_timeout(now);
        for (id, _) in &expired {
            self.drop_slot(*id);
        }
        expired.len()
    }

    /// The next session or Moustique-queue write for the store, oldest
    /// first (each kind in the order made; they touch different tables):
    /// drain it after every call that may publish, pick up or expire,
    /// under the same borrow, into the store's writer.
    pub fn poll_store_op(&mut self) -> Option<StoreOp> {
        if let Some(op) = self.sessions.poll_store_op() {
            return Some(op);
        }
        let router = &self.router;
        self.http.clients.poll_store_op(|namespace| router.namespace_name(namespace).clone())
    }

    /// The connection of the session a router sink names, for a QoS 0
    /// delivery to it.
    pub fn session_conn(&self, id: SessionId) -> Option<&S> {
        self.slots.get(&id)?.conn.as_ref()
    }

    /// The durable sessions, to look at.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Brings back the sessions and queued messages the store loaded, at
    /// start-up: each gets its router subscriber, and the wills of clients
    /// that vanished with the broker are published.
    pub fn restore_sessions(
        &mut self,
        now: Instant,
        unix_now: u64,
        stored: Vec<StoredSession>,
        queued: Vec<StoredQueued>,
        session_sink: impl Fn(SessionId) -> S,
    ) -> Routed<S> {
        let wills = self.sessions.restore(now, unix_now, stored, queued);
        let restored: Vec<(SessionId, Arc<str>, Vec<Filter>)> = self
            .sessions
            .iter()
            .map(|(id, view)| {
                let filters = view.subscriptions().iter().map(|(filter, _)| filter.clone()).collect();
                (id, view.key().namespace.clone(), filters)
            })
            .collect();
        for (id, namespace_name, filters) in restored {
            if &*namespace_name == BRIDGE_NAMESPACE {
                // A bridge's out-queue: its subscriber is made in the
                // bridge's namespace when the bridge opens it.
                self.slots.insert(id, SessionSlot { subscriber: None, conn: None, namespace: NamespaceId::PUBLIC });
                continue;
            }
            let namespace = self.router.namespace(&namespace_name);
            let subscriber = self.router.add_subscriber(namespace, session_sink(id));
            for filter in filters {
                self.router.subscribe(subscriber, filter);
            }
            self.slots.insert(id, SessionSlot { subscriber: Some(subscriber), conn: None, namespace });
        }
        let mut routed = Routed::default();
        for (id, will) in wills {
            let Some(key) = self.sessions.get(id).map(|view| view.key().clone()) else { continue };
            self.publish_will(&key, &will, unix_now, &mut routed);
        }
        routed
    }

    /// The router subscriber holding `id`'s filters, added on first need;
    /// `None` for a session that has ended.
    pub(super) fn session_subscriber(
        &mut self,
        id: SessionId,
        session_sink: impl Fn(SessionId) -> S,
    ) -> Option<SubscriberId> {
        let slot = self.slots.get_mut(&id)?;
        if slot.subscriber.is_none() {
            slot.subscriber = Some(self.router.add_subscriber(slot.namespace, session_sink(id)));
        }
        slot.subscriber
    }

    pub(super) fn unsubscribe_session(&mut self, id: SessionId, filter: &Filter) {
        self.sessions.unsubscribe(id, filter);
        if let Some(own) = self.slots.get(&id).and_then(|slot| slot.subscriber) {
            self.router.unsubscribe(own, filter);
        }
    }

    pub(super) fn drop_slot(&mut self, id: SessionId) {
        if let Some(own) = self.slots.remove(&id).and_then(|slot| slot.subscriber) {
            self.router.remove_subscriber(own);
        }
    }

    /// A will, published through the one publish rule from its client.
    pub(super) fn publish_will(&mut self, key: &SessionKey, will: &WillMessage, unix_now: u64, routed: &mut Routed<S>) {
        // Checked at Connect; a will stored by an older broker with other
        // limits is dropped rather than trusted.
        let Ok(topic) = TopicName::new(&will.topic, &TopicLimits::default()) else { return };
        let namespace = self.router.namespace(&key.namespace);
        let delivery = Delivery::new(will.message(&key.client_id, unix_now));
        self.route_qos(namespace, topic, delivery, will.retain, will.qos, routed);
    }

    /// The one publish rule, then the sessions among the receivers: a QoS 1
    /// message for a QoS 1 subscription is queued, anything else goes to
    /// the session's connection, if any, at QoS 0. Whether it reached a
    /// subscriber (or was stored).
    pub(super) fn route_qos(
        &mut self,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        delivery: Arc<Delivery>,
        retain: bool,
        qos: Qos,
        routed: &mut Routed<S>,
    ) -> bool {
        self.route_qos_except(namespace, topic, delivery, retain, qos, None, routed)
    }

    /// [`Broker::route_qos`], the session `except` (a bridge's, for what
    /// came in through it) left out.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn route_qos_except(
        &mut self,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        delivery: Arc<Delivery>,
        retain: bool,
        qos: Qos,
        except: Option<SessionId>,
        routed: &mut Routed<S>,
    ) -> bool {
        let published = self.publish(namespace, topic, &delivery, retain);
        let reached = !published.receivers.is_empty() || published.store.is_some() || published.queued > 0;
        routed.queued += published.queued;
        routed.store.extend(published.store);
        let mut receivers: SmallVec<[S; 4]> = SmallVec::new();
        for sink in published.receivers {
            let Some(id) = sink.session() else {
                receivers.push(sink);
                continue;
            };
            if except == Some(id) {
                continue;
            }
            let granted = self.sessions.subscription_qos(id, topic).unwrap_or(Qos::AtMostOnce);
            let conn = self.slots.get(&id).and_then(|slot| slot.conn.clone());
            if qos.min(granted) == Qos::AtLeastOnce {
                match self.sessions.enqueue(id, delivery.clone()) {
                    Some(Ok(_)) => routed.pumps.extend(conn),
                    Some(Err(_)) => {
                        routed.dropped += 1;
                        // A bridge counts its drops in its own figures.
                        if self.sessions.get(id).is_some_and(|view| is_bridge_session(view.key())) {
                            routed.pumps.extend(conn);
                        }
                    }
                    None => {}
                }
            } else {
                receivers.extend(conn);
            }
        }
        if !receivers.is_empty() {
            routed.deliveries.push((delivery, receivers));
        }
        reached
    }
}

/// A connection whose Connect opens a durable session: the binary
/// [`Session`] or an MQTT [`ServerSession`](crate::mqtt::ServerSession).
pub(super) trait Connecting {
    /// Whether its Connect awaits the broker's answer.
    fn is_connecting(&self) -> bool;
    /// Refuses the Connect for `reason`.
    fn refuse(&mut self, reason: ReasonCode, text: &str);
    /// Accepts it: the client holds `client_id` (`assigned` by the broker)
    /// in `namespace`; `resumed` a stored session whose expiry is
    /// `expiry_secs`.
    fn accept(&mut self, client_id: Arc<str>, assigned: bool, namespace: NamespaceId, resumed: bool, expiry_secs: u32);
}

impl Connecting for Session {
    fn is_connecting(&self) -> bool {
        Session::is_connecting(self)
    }

    fn refuse(&mut self, reason: ReasonCode, text: &str) {
        let _ = Session::refuse(self, reason, text);
    }

    fn accept(&mut self, client_id: Arc<str>, _: bool, _: NamespaceId, resumed: bool, _: u32) {
        self.accept_session(client_id, resumed);
    }
}

/// The broker's sessions and where their deliveries go.
pub(super) type SessionSlots<S> = HashMap<SessionId, SessionSlot<S>>;
