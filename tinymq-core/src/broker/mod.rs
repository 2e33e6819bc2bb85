//! The broker: every rule that is not bytes on a socket, written once.
//!
//! A [`Broker`] owns the broker-wide state: the [`Router`] (namespaces,
//! subscriptions, stored values, client ids), the Moustique clients' queues
//! and the HTTP figures ([`HttpState`]), the peers' budgets of bad requests
//! ([`PeerBudgets`]) and the admission rules. Transports hand it events and
//! carry out what it answers, in the style of quinn-proto's `Endpoint`:
//!
//! | event | method | answer |
//! |---|---|---|
//! | a peer connects | [`Broker::check_peer`] | refused while throttled |
//! | a binary Connect's credentials are decided | [`Broker::handle_connect`] | [`Effects`]: ConnAck or Disconnect queued on the session, a takeover |
//! | any other binary request | [`Broker::handle_request`] | [`Effects`]: receivers, a store write |
//! | a binary Connect, with its durable session | [`Broker::handle_session_connect`] | [`SessionConnect`]: as above, the session's hold, a taken-over will |
//! | a request of a session-holding connection | [`Broker::handle_session_request`] | [`SessionEffects`]: QoS 1 queued, a PubAck held for the commit |
//! | a session has QoS 1 messages to send | [`Broker::transmit`] | the Publishes, on its connection |
//! | a session's connection ends | [`Broker::close_session`] | [`Routed`]: the will, if lost |
//! | sessions expire; the store loaded some | [`Broker::handle_session_timeout`], [`Broker::restore_sessions`] | |
//! | after each session call, publish, PICKUP or expiry | [`Broker::poll_store_op`] | the sessions' and the Moustique queues' store writes, in order |
//! | a live binary or in-process publish | [`Broker::route_live`] | the receivers, under a shared borrow |
//! | an in-process client's durable session | [`Broker::open_local_session`], [`Broker::subscribe_local_session`], [`Broker::publish_qos`] (QoS 1), [`Broker::local_transmit`], [`Broker::local_ack`], [`Broker::close_local_session`] | [`LocalSession`], [`Routed`] |
//! | a QoS 1 MQTT bridge's stored out-queue | [`Broker::open_bridge_session`], [`Broker::bridge_enqueue`], [`Broker::bridge_transmit`], [`Broker::bridge_acked`], [`Broker::bridge_resend`], [`Broker::publish_qos_from_bridge`] | [`SessionHold`], the messages to send |
//! | an MQTT CONNECT's credentials are decided | [`Broker::handle_mqtt_connect`] | [`SessionConnect`]: CONNACK or its refusal, a takeover, a kept session's hold |
//! | an MQTT QoS 1 publish; any request of a kept MQTT session | [`Broker::handle_mqtt_session_request`] | [`SessionEffects`]: QoS 1 queued, a PUBACK held for the commit |
//! | a kept MQTT session has QoS 1 messages to send | [`Broker::transmit_mqtt`] | the PUBLISHes, on its connection |
//! | any other MQTT request; a live MQTT publish | [`Broker::handle_mqtt_request`]; [`Broker::route_mqtt_live`] | [`Effects`] |
//! | an MQTT client gone without DISCONNECT | [`Broker::publish_mqtt_will`] | [`Effects`] |
//! | an HTTP request | [`Broker::handle_http`] | [`HttpEffects`](crate::http::service::HttpEffects): the reply, receivers, store writes |
//! | an HTTP write's answer; a PICKUP's | [`Broker::answer_write`], [`commit_answer`]; [`Broker::answer_pickup`] | now, after the commit, or 503 |
//! | an in-process client | [`Broker::register`], [`Broker::subscribe`], [`Broker::publish`] | receivers, a takeover, a store write |
//! | a connection closes | [`Broker::release`] | |
//! | time passes | [`Broker::handle_timeout`] | store deletes of expired Moustique clients |
//! | the `$SYS` interval | [`Broker::publish_sys`] | the figures' deliveries |
//!
//! [`Broker::poll_event`] yields what the shell may want to log.
//!
//! Every publish, whatever its transport, goes through [`Broker::publish`]
//! (a live one through [`Broker::route_live`], which changes nothing and so
//! runs under a shared borrow), and both end in [`Router::publish`] or
//! [`Router::route`]: one retained rule, one routing rule. A delivery for a
//! Moustique client's PICKUP queue is queued here, since the queues are
//! the broker's; the other receivers are returned for the shell to move.
//!
//! Nothing here reads a clock: every method that needs the time takes it.
//! A shell shared by several threads keeps the broker behind one
//! read-write lock; live publishes only read.
//!
//! The router-level building blocks ([`execute`], [`connect`],
//! [`register`], [`subscribe`], ...) stay public: the scenario tests and
//! the crate's example drive them directly.

mod durable;
mod http;
mod mqtt;
mod rules;
mod sys;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub use self::durable::{
    BRIDGE_NAMESPACE, LocalSession, Routed, SessionConnect, SessionEffects, SessionHold, bridge_session_key,
    is_bridge_session,
};
pub use self::http::{HttpInput, StoreAcks, WriteAnswer, commit_answer};
pub use self::rules::{
    AuthResult, Effects, Origin, Registered, admit, connect, execute, live_frame, publish, publish_live, published,
    register, release, subscribe,
};
use crate::auth::{AuthError, BudgetConfig, Fault, Identity, PeerBudgets, Throttled};
use crate::codec::Qos;
use crate::durable::{Sessions, SessionsConfig};
use crate::http::clients::HttpClientId;
use crate::http::service::{self, HttpConfig, HttpState, SinkKind};
use crate::metrics::Figures;
pub use crate::publish::Published;
use crate::publish::publish as publish_rule;
use crate::router::{Delivery, NamespaceId, RouteCache, Router, SubscriberId};
use crate::session::{Request, Session};
use crate::store::{StoreOp, StoredHttpClient, StoredHttpQueued};
use crate::topic::{Filter, TopicName};

/// The broker's settings: who is let in, and what HTTP and the store
/// promise.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// The HTTP service's settings. Its `allow_anonymous` is the broker's:
    /// whether clients without credentials use the public namespace, on
    /// every transport.
    pub http: HttpConfig,
    /// Budgets of bad requests per peer address.
    pub budget: BudgetConfig,
    /// What the store acknowledges, which decides when an HTTP write is
    /// answered.
    pub store: StoreAcks,
    /// The durable sessions' limits and expiry.
    pub sessions: SessionsConfig,
}

/// Something the shell may want to know (and log), from
/// [`Broker::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// A peer spent its budget of bad requests: it is throttled until it
    /// earns some back.
    PeerThrottled(IpAddr),
}

/// What charging a bad request to a peer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Charged {
    /// Nothing: the peer has no address (a Unix socket), or throttling is
    /// off.
    Free,
    /// Charged, with this many bad requests left.
    Left(u32),
    /// The peer had none left: the request is refused as throttled.
    Throttled(Throttled),
}

/// The broker-wide state and its rules. See the [module](self) docs.
#[derive(Debug)]
pub struct Broker<S> {
    router: Router<S>,
    http: HttpState,
    budgets: PeerBudgets,
    rules: Rules,
    /// Requests, connections and logins refused for a spent budget.
    throttled_requests: u64,
    events: VecDeque<BrokerEvent>,
    /// Sessions that outlive connections, and QoS 1 queues.
    sessions: Sessions,
    /// Where each session's deliveries go.
    slots: durable::SessionSlots<S>,
}

impl<S: Clone + SinkKind> Broker<S> {
    /// An empty broker, started at Unix second `started_unix` (for the
    /// HTTP figures' uptime).
    pub fn new(rules: Rules, started_unix: u64) -> Self {
        let mut http = HttpState::new(&rules.http, started_unix);
        if rules.store != StoreAcks::None {
            http.clients.keep_store_writes();
        }
        Broker {
            router: Router::new(),
            http,
            budgets: PeerBudgets::new(rules.budget),
            sessions: Sessions::new(rules.sessions),
            rules,
            throttled_requests: 0,
            events: VecDeque::new(),
            slots: Default::default(),
        }
    }

    /// The broker's settings.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The router, to read.
    pub fn router(&self) -> &Router<S> {
        &self.router
    }

    /// The router, to fill at start-up (stored values) or to change in a
    /// test.
    pub fn router_mut(&mut self) -> &mut Router<S> {
        &mut self.router
    }

    /// The HTTP service's state, to read.
    pub fn http_state(&self) -> &HttpState {
        &self.http
    }

    /// The next event for the shell, oldest first.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// Whether clients without credentials are let in.
    pub fn allows_anonymous(&self) -> bool {
        self.rules.http.allow_anonymous
    }

    // Peers.

    /// Whether `ip` may be served now: refused (and counted) while it is
    /// throttled. Asked when a peer connects, and before a password is
    /// checked (hashing one is the expensive part of a guess).
    pub fn check_peer(&mut self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        if !self.budgets.is_enabled() {
            return Ok(());
        }
        self.budgets.check(ip, now).inspect_err(|_| self.throttled_requests += 1)
    }

    /// Charges a bad request to `peer`'s budget. A peer that spends its
    /// last is reported once by [`Broker::poll_event`]; one that had none
    /// left is refused as throttled (and counted).
    pub fn charge(&mut self, peer: Option<IpAddr>, now: Instant, fault: Fault) -> Charged {
        let Some(ip) = peer.filter(|_| self.budgets.is_enabled()) else { return Charged::Free };
        match self.budgets.spend(ip, now, fault) {
            Ok(left) => {
                if left == 0 {
                    self.events.push_back(BrokerEvent::PeerThrottled(ip));
                }
                Charged::Left(left)
            }
            Err(throttled) => {
                self.throttled_requests += 1;
                Charged::Throttled(throttled)
            }
        }
    }

    /// A caller whose credentials failed, charged to its peer: throttled
    /// instead when the peer had no budget left. Every face's login goes
    /// through it ([`Broker::handle_connect`], [`Broker::handle_http`],
    /// and the MQTT face's CONNECT).
    pub fn charged_caller(
        &mut self,
        caller: Result<Identity, AuthError>,
        peer: Option<IpAddr>,
        now: Instant,
    ) -> Result<Identity, AuthError> {
        match caller.as_ref().err().and_then(AuthError::fault).map(|fault| self.charge(peer, now, fault)) {
            Some(Charged::Throttled(throttled)) => {
                Err(AuthError::Throttled { retry_after_secs: throttled.retry_after_secs() })
            }
            _ => caller,
        }
    }

    // Binary sessions.

    /// A binary Connect whose credentials are decided (`caller`: who the
    /// client turned out to be, or why not). Wrong credentials are charged
    /// to `peer`; the session gets ConnAck or Disconnect 2; a client that
    /// held the client id is named in [`Effects::taken_over`].
    pub fn handle_connect(
        &mut self,
        session: &mut Session,
        sink: S,
        client_id: &str,
        caller: Result<Identity, AuthError>,
        now: Instant,
        origin: Origin,
    ) -> Effects<S> {
        let caller = self.charged_caller(caller, origin.ip, now);
        let decision = admit(&mut self.router, self.rules.http.allow_anonymous, caller);
        connect(&mut self.router, session, sink, client_id, decision, origin)
    }

    /// Any other request a connected binary session yields (a Connect
    /// here is refused: it goes to [`Broker::handle_connect`] once its
    /// credentials are checked). A publish goes through
    /// [`Broker::publish`].
    pub fn handle_request(
        &mut self,
        session: &mut Session,
        subscriber: Option<SubscriberId>,
        sink: S,
        request: Request<'_>,
        origin: Origin,
    ) -> Effects<S> {
        match (request, subscriber) {
            (Request::Publish { topic, payload, retain, qos, packet_id }, Some(id)) => {
                let Some(namespace) = self.router.namespace_of(id) else { return Effects::default() };
                let delivery = published(session, topic, payload, origin);
                let published = self.publish(namespace, topic, &delivery, retain);
                // Routed (and, when retained, handed to the store): a QoS 1
                // publish is acknowledged now, as `batched` durability
                // promises; see docs/PROTOCOL.md.
                if qos == Qos::AtLeastOnce {
                    let _ = session.ack(packet_id);
                }
                let delivery = (!published.receivers.is_empty() || published.store.is_some()).then_some(delivery);
                Effects { delivery, receivers: published.receivers, store: published.store, ..Default::default() }
            }
            (request, subscriber) => {
                let refuse = |_: Option<crate::session::Credentials<'_>>| Err(AuthError::WrongCredentials.text());
                execute(&mut self.router, session, subscriber, sink, request, origin, refuse)
            }
        }
    }

    /// The receivers of a live (not retained) publish by `subscriber` to
    /// `topic`, from the publisher's `cache` of its last topic's receivers:
    /// it changes nothing, so shells route live traffic side by side under
    /// a shared borrow. Empty for a subscriber that is gone. Receivers that
    /// are Moustique clients go to [`Broker::queue_for_http`].
    pub fn route_live<'c>(
        &self,
        cache: &'c mut RouteCache<S>,
        subscriber: Option<SubscriberId>,
        topic: TopicName<'_>,
    ) -> &'c [S] {
        match subscriber.and_then(|id| self.router.namespace_of(id)) {
            Some(namespace) => self.router.route_cached(cache, namespace, topic),
            None => &[],
        }
    }

    /// [`Broker::route_live`] for a client that knows its namespace (an
    /// in-process client).
    pub fn route_live_in<'c>(
        &self,
        cache: &'c mut RouteCache<S>,
        namespace: NamespaceId,
        topic: TopicName<'_>,
    ) -> &'c [S] {
        self.router.route_cached(cache, namespace, topic)
    }

    /// Queues `deliveries`, in order, for the Moustique clients among
    /// `receivers`; returns how many deliveries were queued.
    pub fn queue_for_http(&mut self, deliveries: &[Arc<Delivery>], receivers: &[S]) -> usize {
        let clients = receivers.iter().filter_map(SinkKind::http_client);
        deliveries.iter().map(|delivery| self.http.clients.push_to_all(clients.clone(), delivery)).sum()
    }

    /// A connection (or in-process client) is gone: its subscriptions and
    /// client id go with it. Safe with a handle already released.
    pub fn release(&mut self, subscriber: Option<SubscriberId>) {
        release(&mut self.router, subscriber);
    }

    // Every transport.

    /// The one publish rule: `delivery` on `topic` in `namespace`, stored
    /// as the topic's value when `retain` (an empty payload deletes the
    /// value, and is still delivered), queued for the matching Moustique
    /// clients here, and returned with the other receivers.
    pub fn publish(
        &mut self,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        delivery: &Arc<Delivery>,
        retain: bool,
    ) -> Published<S> {
        publish_rule(&mut self.router, &mut self.http.clients, namespace, topic, delivery, retain)
    }

    /// An in-process client under `client_id` (assigned when empty) in
    /// `namespace`; a client that held the id is taken over.
    pub fn register(&mut self, namespace: NamespaceId, sink: S, client_id: &str, origin: Origin) -> Registered<S> {
        register(&mut self.router, namespace, sink, client_id, origin)
    }

    /// Adds `filter` to `id`; returns the stored values it matches, to be
    /// delivered first, marked retained.
    pub fn subscribe(&mut self, id: SubscriberId, filter: Filter) -> Vec<Arc<Delivery>> {
        subscribe(&mut self.router, id, filter)
    }

    /// Removes `filter` from `id`; `false` if it did not hold it.
    pub fn unsubscribe(&mut self, id: SubscriberId, filter: &Filter) -> bool {
        self.router.unsubscribe(id, filter)
    }

    // Time.

    /// Drops the Moustique clients not seen for their timeout, with their
    /// subscriptions; returns the deletes of their stored records.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<StoreOp> {
        service::expire_clients(&mut self.router, &mut self.http, now)
    }

    /// Puts the messages loaded from the store back in the Moustique
    /// clients' queues, at start-up after [`Broker::restore_client`]:
    /// `queued` in key order (by client, then sequence). Returns how many
    /// were restored; the stored queues of clients not registered, and
    /// what the queue bounds drop, are deleted ([`Broker::poll_store_op`]).
    pub fn restore_http_queued(&mut self, queued: Vec<StoredHttpQueued>) -> usize {
        let mut restored = 0;
        for stored in queued {
            let namespace = self.router.namespace(&stored.namespace);
            restored += usize::from(self.http.clients.restore_queued(namespace, stored));
        }
        restored
    }

    /// Brings back a Moustique client loaded from the store, at start-up
    /// (see [`service::restore_client`]).
    pub fn restore_client(
        &mut self,
        stored: StoredHttpClient,
        now: Instant,
        unix_time: u64,
        client_sink: impl Fn(HttpClientId) -> S,
    ) -> Option<HttpClientId> {
        service::restore_client(&mut self.router, &mut self.http, stored, now, unix_time, client_sink)
    }

    // Figures.

    /// Adds the broker's own figures to those the shell counted: the
    /// peers' budgets, the throttled requests and the durable sessions.
    pub fn fill_figures(&self, figures: &mut Figures, now: Instant) {
        fill_figures(&self.budgets, self.throttled_requests, &self.sessions, figures, now);
    }

    /// Requests, connections and logins refused for a spent budget.
    pub fn throttled_requests(&self) -> u64 {
        self.throttled_requests
    }

    /// Counts how long the shell took to serve an HTTP request.
    pub fn record_serve_time(&mut self, took: std::time::Duration) {
        self.http.record_serve_time(took);
    }
}

fn fill_figures(
    budgets: &PeerBudgets,
    throttled_requests: u64,
    sessions: &Sessions,
    figures: &mut Figures,
    now: Instant,
) {
    figures.sessions = sessions.figures();
    figures.throttled_requests += throttled_requests;
    figures.throttled_peers = budgets.throttled_count(now) as u64;
    figures.peers = budgets.peers(now);
}
