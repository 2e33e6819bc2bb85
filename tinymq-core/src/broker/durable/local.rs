//! Durable sessions of in-process clients: the same [`Sessions`] as
//! binary connections (one client-id space per namespace), with no
//! [`crate::Session`] in between. The shell's client takes its QoS 1
//! messages with [`Broker::local_transmit`] and acknowledges them with
//! [`Broker::local_ack`]; a session's sink is the client's own queue while
//! it is open, so [`Routed::pumps`] may name it: the shell then wakes the
//! client rather than a connection's loop.
//!
//! Wills are not offered: an in-process client lives and dies with the
//! broker's own process, so there is no one left to tell.
//!
//! [`Sessions`]: crate::durable::Sessions

use std::sync::Arc;

use super::{Broker, Origin, Routed, SessionHold, SessionSlot};
use crate::broker::rules::{Registered, register, subscribe};
use crate::codec::Qos;
use crate::durable::{Departure, SessionId, SessionKey, SessionRequest, TooManySessions, Transmit};
use crate::http::service::SinkKind;
use crate::router::{Delivery, NamespaceId, SubscriberId};
use crate::topic::Filter;

/// What [`Broker::open_local_session`] did.
#[derive(Debug)]
#[must_use]
pub struct LocalSession<S> {
    /// The client's subscriber, its client id, and the client taken over
    /// (tell it, as for [`Broker::register`]).
    pub registered: Registered<S>,
    /// The client's hold on its session, for every later session call.
    pub hold: SessionHold,
    /// A stored session was resumed: its subscriptions are back and its
    /// queued QoS 1 messages wait for [`Broker::local_transmit`].
    pub session_present: bool,
    /// The will of a taken-over binary connection, routed.
    pub routed: Routed<S>,
}

impl<S: Clone + SinkKind> Broker<S> {
    /// An in-process client `client_id` (assigned when empty) in
    /// `namespace`, with its durable session: persistent (kept after the
    /// client is dropped, and resumed) or ending with the client. A client
    /// holding the id, of any transport, is taken over. Refused over the
    /// persistent sessions' limit, and then nothing changes.
    pub fn open_local_session(
        &mut self,
        namespace: NamespaceId,
        sink: S,
        client_id: &str,
        persistent: bool,
        origin: Origin,
        session_sink: impl Fn(SessionId) -> S,
    ) -> Result<LocalSession<S>, TooManySessions> {
        let namespace_name = self.router.namespace_name(namespace).clone();
        let request = SessionRequest { persistent, ..SessionRequest::default() };
        // As for a binary Connect: a requested id's session is opened
        // before the id is claimed, so a refusal takes nothing from its
        // holder; an assigned id is new, so its session is opened after.
        let mut before = None;
        let mut opened = None;
        if !client_id.is_empty() {
            let key = SessionKey { namespace: namespace_name.clone(), client_id: client_id.into() };
            before = self.sessions.find(&key);
            opened = Some(self.sessions.open(&key, request)?);
        }
        let registered = register(&mut self.router, namespace, sink.clone(), client_id, origin);
        let key = SessionKey { namespace: namespace_name, client_id: registered.client_id.clone() };
        let opened = match opened.map_or_else(|| self.sessions.open(&key, request), Ok) {
            Ok(opened) => opened,
            Err(refused) => {
                self.router.remove_subscriber(registered.id);
                return Err(refused);
            }
        };
        if let Some(old) = before.filter(|old| *old != opened.id) {
            self.drop_slot(old);
        }
        let slot = self.slots.entry(opened.id).or_insert(SessionSlot { subscriber: None, conn: None, namespace });
        slot.conn = Some(sink);
        if persistent && slot.subscriber.is_none() {
            let subscriber = self.router.add_subscriber(namespace, session_sink(opened.id));
            self.slots.get_mut(&opened.id).expect("inserted above").subscriber = Some(subscriber);
        }
        let mut routed = Routed::default();
        if let Some(will) = opened.taken_over_will {
            self.publish_will(&key, &will, origin.unix_time, &mut routed);
        }
        let hold = SessionHold { id: opened.id, token: opened.token };
        Ok(LocalSession { registered, hold, session_present: opened.session_present, routed })
    }

    /// Subscribes the in-process client (`subscriber`, holding `hold`) to
    /// `filter` at `qos`: a persistent session's filters and QoS 1 ones are
    /// the session's, kept while the client is away; a QoS 0 filter of a
    /// session that ends with its client is the client's own, as before
    /// QoS 1 existed. Returns the stored values the filter matches, to be
    /// delivered first (at QoS 0, marked retained). A client taken over
    /// since changes nothing.
    pub fn subscribe_local_session(
        &mut self,
        subscriber: SubscriberId,
        hold: SessionHold,
        filter: Filter,
        qos: Qos,
        session_sink: impl Fn(SessionId) -> S,
    ) -> Vec<Arc<Delivery>> {
        let Some(view) = self.sessions.get(hold.id).filter(|view| view.is_held_by(hold.token)) else {
            return Vec::new();
        };
        if !view.is_persistent() && qos == Qos::AtMostOnce {
            self.unsubscribe_session(hold.id, &filter);
            return subscribe(&mut self.router, subscriber, filter);
        }
        let Some(own) = self.session_subscriber(hold.id, session_sink) else { return Vec::new() };
        self.router.unsubscribe(subscriber, &filter);
        self.sessions.subscribe(hold.id, filter.clone(), qos);
        subscribe(&mut self.router, own, filter)
    }

    /// Removes a subscription of the in-process client, its session's or
    /// its own; `false` if it held neither.
    pub fn unsubscribe_local_session(&mut self, subscriber: SubscriberId, hold: SessionHold, filter: &Filter) -> bool {
        let held = self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token));
        let in_session = held
            && self.sessions.get(hold.id).is_some_and(|view| view.subscriptions().iter().any(|(f, _)| f == filter));
        if in_session {
            self.unsubscribe_session(hold.id, filter);
        }
        self.router.unsubscribe(subscriber, filter) || in_session
    }

    /// The in-process client holding `hold` takes its next QoS 1 message,
    /// if its window allows one: resends first (with DUP), then new ones.
    /// Nothing for a client taken over since.
    pub fn local_transmit(&mut self, hold: SessionHold) -> Option<Transmit> {
        if !self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token)) {
            return None;
        }
        self.sessions.poll_transmit(hold.id)
    }

    /// The in-process client holding `hold` acknowledges `packet_id`; true
    /// if it was in flight. Its store delete comes from
    /// [`Broker::poll_store_op`].
    pub fn local_ack(&mut self, hold: SessionHold, packet_id: u16) -> bool {
        if !self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token)) {
            return false;
        }
        self.sessions.ack(hold.id, packet_id).is_some()
    }

    /// The in-process client holding `hold` is gone (dropped, or the broker
    /// stopping): its subscriber leaves the router, and its session ends
    /// with it or, persistent, waits for the client id's next client. An
    /// in-process client leaves no will.
    pub fn close_local_session(
        &mut self,
        subscriber: SubscriberId,
        hold: SessionHold,
        now: std::time::Instant,
        unix_now: u64,
    ) {
        self.router.remove_subscriber(subscriber);
        // No will was asked for, so nothing is routed.
        let _ = self.close_session(hold, Departure::Clean, now, unix_now);
    }
}
