//! The MQTT face's events, on the broker: the rules themselves are
//! [`crate::mqtt::broker`]'s (MQTT's answers to the same connect, takeover,
//! subscribe and publish rules every face follows), run here on the
//! broker's router, with a CONNECT's failed credentials charged to its
//! peer like any other face's.
//!
//! A CONNECT that asks for a session kept after the connection (Clean
//! Session 0, or an MQTT 5 Session Expiry Interval) opens the broker's
//! durable session, the one the binary protocol's Connect opens: one
//! session space keyed by namespace and client id, so an MQTT client and a
//! binary client of the same id take the session over from each other, as
//! they take the client id. A clean CONNECT discards a stored session of
//! its id. QoS 1 publishes from every MQTT client go through the session
//! rules ([`Broker::handle_mqtt_session_request`]): queued for the durable
//! sessions they reach, and acknowledged once stored under `immediate`.

use std::sync::Arc;
use std::time::Instant;

use super::durable::Connecting;
use super::rules::subscribe;
use super::{Broker, Effects, Origin, SessionConnect, SessionEffects, SessionHold, StoreAcks};
use crate::auth::{AuthError, Identity};
use crate::codec::{Qos, Will};
use crate::durable::{Departure, SessionId, SessionKey, SessionRequest};
use crate::http::service::SinkKind;
use crate::mqtt::broker::{answer_subscribe, forwarded_message, refused};
use crate::mqtt::{self, Properties, QoS, ReasonCode, Request, ServerSession, WillMessage};
use crate::router::{NamespaceId, RouteCache, SubscriberId};
use crate::topic::{TopicLimits, TopicName};

impl<S: Clone + SinkKind> Broker<S> {
    /// An MQTT CONNECT whose credentials are decided: charged to `origin`'s
    /// peer when they failed, then answered with CONNACK (or its refusal)
    /// and registered under its client id. One that asks for a session
    /// kept after the connection opens a durable one (CONNACK's Session
    /// Present says whether a stored one was resumed; a Clean Start
    /// discards it first) and gets its hold; a clean one discards a
    /// stored session of its id. `session_sink` makes the router sink of
    /// a session.
    pub fn handle_mqtt_connect(
        &mut self,
        session: &mut ServerSession,
        sink: S,
        caller: Result<Identity, AuthError>,
        now: Instant,
        origin: Origin,
        session_sink: impl Fn(SessionId) -> S,
    ) -> SessionConnect<S> {
        let mut answer = SessionConnect { effects: Effects::default(), hold: None, routed: Default::default() };
        if !session.is_connecting() {
            return answer;
        }
        let caller = self.charged_caller(caller, origin.ip, now);
        let allow_anonymous = self.allows_anonymous();
        let Some(expiry) = session.persistence() else {
            answer.effects = mqtt::broker::connect(&mut self.router, session, sink, allow_anonymous, caller, origin);
            if let (Some(client_id), Some(namespace)) = (session.client_id(), session.namespace()) {
                let key = SessionKey {
                    namespace: self.router.namespace_name(namespace).clone(),
                    client_id: client_id.clone(),
                };
                self.discard_session(&key, now, origin.unix_time, &mut answer.routed);
            }
            return answer;
        };
        if refused(session, allow_anonymous, &caller) {
            return answer;
        }
        let will = session.will().cloned();
        let request = SessionRequest {
            persistent: true,
            session_expiry: expiry,
            will: will.as_ref().map(|will| Will {
                topic: &will.topic,
                payload: &will.payload,
                retain: will.retain,
                qos: codec_qos(will.qos),
            }),
        };
        let client_id = session.requested_client_id().unwrap_or_default().to_owned();
        if session.clean_start() && !client_id.is_empty() {
            // Clean Start with an expiry: a new session, kept after.
            if let Ok(namespace) = super::rules::admit(&mut self.router, allow_anonymous, caller.clone()) {
                let namespace = self.router.namespace_name(namespace).clone();
                let key = SessionKey { namespace, client_id: client_id.as_str().into() };
                self.discard_session(&key, now, origin.unix_time, &mut answer.routed);
            }
        }
        let opened = self.open_session(session, sink, &client_id, request, caller, origin, session_sink);
        SessionConnect { routed: merge(answer.routed, opened.routed), ..opened }
    }

    /// Ends `key`'s stored session, if there is one: its queue and
    /// subscriptions are dropped (from the store too), and the will of a
    /// connection still holding it is published.
    fn discard_session(&mut self, key: &SessionKey, now: Instant, unix_now: u64, routed: &mut super::Routed<S>) {
        let Some(old) = self.sessions.find(key) else { return };
        let ends = SessionRequest { persistent: false, session_expiry: 0, will: None };
        let Ok(opened) = self.sessions.open(key, ends) else { return };
        if let Some(will) = opened.taken_over_will {
            self.publish_will(key, &will, unix_now, routed);
        }
        let _ = self.sessions.close(now, unix_now, opened.id, opened.token, Departure::Clean);
        self.drop_slot(old);
        self.drop_slot(opened.id);
    }

    /// A request of a connected MQTT client through the session rules:
    /// every request of one holding a durable session (`hold`), and a QoS 1
    /// publish of any (`hold` `None`). A QoS 1 PUBLISH is queued for the
    /// durable sessions it reaches and acknowledged at once, or under
    /// `--durability immediate` held for the commit of this call's writes
    /// ([`SessionEffects::held_ack`]; the PUBACK then says Success). What
    /// no session rule touches goes to [`Broker::handle_mqtt_request`].
    pub fn handle_mqtt_session_request(
        &mut self,
        session: &mut ServerSession,
        subscriber: Option<SubscriberId>,
        hold: Option<SessionHold>,
        request: Request<'_>,
        origin: Origin,
        session_sink: impl Fn(SessionId) -> S,
    ) -> SessionEffects<S> {
        let mut answer = SessionEffects { effects: Effects::default(), routed: Default::default(), held_ack: None };
        let Some(id) = subscriber else { return answer };
        // A connection taken over (and being closed) changes nothing of
        // the session its successor holds.
        let held = hold.filter(|hold| self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token)));
        match (request, held) {
            (Request::Publish { topic, payload, retain, qos, packet_id, properties }, _)
                if qos == QoS::AtLeastOnce || hold.is_some() =>
            {
                let Some(namespace) = self.router.namespace_of(id) else { return answer };
                let Ok(name) = TopicName::new(&topic, &TopicLimits::UNBOUNDED) else { return answer };
                let delivery =
                    forwarded_message(session.client_id().cloned(), topic.clone(), payload, qos, properties, origin);
                let reached = self.route_qos(namespace, name, delivery, retain, codec_qos(qos), &mut answer.routed);
                let Some(packet_id) = packet_id else { return answer };
                if !reached {
                    session.pub_ack(packet_id, ReasonCode::NoMatchingSubscribers);
                } else if self.rules.store == StoreAcks::Immediate {
                    answer.held_ack = Some(packet_id);
                } else {
                    // Routed and queued: safe in memory, as `batched`
                    // promises.
                    session.pub_ack(packet_id, ReasonCode::Success);
                }
            }
            (Request::Subscribe { packet_id, filters }, Some(hold)) => {
                let Some(own) = self.session_subscriber(hold.id, session_sink) else { return answer };
                // Stored values go at QoS 0: the session's packet ids are
                // its queue's.
                answer_subscribe(session, packet_id, filters, QoS::AtMostOnce, |_, filter, _, granted| {
                    let existed = self
                        .sessions
                        .get(hold.id)
                        .is_some_and(|view| view.subscriptions().iter().any(|(held, _)| *held == filter));
                    self.router.unsubscribe(id, &filter);
                    self.sessions.subscribe(hold.id, filter.clone(), codec_qos(granted));
                    (existed, subscribe(&mut self.router, own, filter))
                });
            }
            (Request::Unsubscribe { packet_id, filters }, Some(hold)) => {
                let codes: Vec<u8> = filters
                    .into_iter()
                    .map(|filter| match filter {
                        Ok(filter) => {
                            let existed = self
                                .sessions
                                .get(hold.id)
                                .is_some_and(|view| view.subscriptions().iter().any(|(held, _)| *held == filter));
                            self.unsubscribe_session(hold.id, &filter);
                            let existed = self.router.unsubscribe(id, &filter) || existed;
                            (if existed { ReasonCode::Success } else { ReasonCode::NoSubscriptionExisted }) as u8
                        }
                        Err(reason) => reason as u8,
                    })
                    .collect();
                session.unsub_ack(packet_id, &codes);
            }
            (Request::PubAck { packet_id }, Some(hold)) => {
                self.sessions.ack(hold.id, packet_id);
                if let Some(conn) = self.session_conn(hold.id).cloned() {
                    answer.routed.pumps.push(conn);
                }
            }
            // Of a connection taken over: its successor holds the session.
            (Request::Subscribe { .. } | Request::Unsubscribe { .. } | Request::PubAck { .. }, _) if hold.is_some() => {
            }
            (request, _) => answer.effects = self.handle_mqtt_request(session, subscriber, request, origin),
        }
        answer
    }

    /// Sends the queued QoS 1 messages of `hold`'s durable session that
    /// the client's window allows, resends first (as [`Broker::transmit`]
    /// for a binary connection). A message larger than the client takes is
    /// skipped as if delivered. Returns how many were sent.
    pub fn transmit_mqtt(&mut self, hold: SessionHold, session: &mut ServerSession) -> usize {
        if !self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token)) {
            return 0;
        }
        let window = usize::from(session.receive_window());
        let mut sent = 0;
        while session.is_connected() {
            let Some(transmit) = self.sessions.poll_transmit_within(hold.id, window) else { break };
            match session.deliver_qos1(&transmit) {
                Ok(true) => sent += 1,
                Ok(false) => {
                    self.sessions.ack(hold.id, transmit.packet_id);
                }
                Err(_) => break,
            }
        }
        sent
    }

    /// Any other request a connected MQTT session yields.
    pub fn handle_mqtt_request(
        &mut self,
        session: &mut ServerSession,
        subscriber: Option<SubscriberId>,
        request: Request<'_>,
        origin: Origin,
    ) -> Effects<S> {
        mqtt::broker::execute(&mut self.router, session, subscriber, request, origin)
    }

    /// A live (not retained) MQTT publish, under a shared borrow, from the
    /// publisher's cache of its topic's receivers (see
    /// [`Broker::route_live`]).
    #[allow(clippy::too_many_arguments)]
    pub fn route_mqtt_live(
        &self,
        cache: &mut RouteCache<S>,
        session: &mut ServerSession,
        subscriber: Option<SubscriberId>,
        topic: Arc<str>,
        payload: &[u8],
        qos: QoS,
        packet_id: Option<u16>,
        properties: Properties<'_>,
        origin: Origin,
    ) -> Effects<S> {
        mqtt::broker::publish_live(
            &self.router,
            cache,
            session,
            subscriber,
            topic,
            payload,
            qos,
            packet_id,
            properties,
            origin,
        )
    }

    /// The will of an MQTT client that went without a DISCONNECT,
    /// published by the same rule as any publish.
    pub fn publish_mqtt_will(
        &mut self,
        namespace: NamespaceId,
        client_id: Option<Arc<str>>,
        will: WillMessage,
        origin: Origin,
    ) -> Effects<S> {
        mqtt::broker::publish_will(&mut self.router, namespace, client_id, will, origin)
    }
}

impl Connecting for ServerSession {
    fn is_connecting(&self) -> bool {
        ServerSession::is_connecting(self)
    }

    fn refuse(&mut self, reason: crate::ReasonCode, text: &str) {
        let reason = match reason {
            crate::ReasonCode::NotAuthorized => ReasonCode::NotAuthorized,
            // Over `--max-sessions` (3.1.1: Server Unavailable).
            crate::ReasonCode::TooManySessions => ReasonCode::QuotaExceeded,
            _ => ReasonCode::ServerUnavailable,
        };
        let _ = self.refuse_connect(reason, text);
    }

    fn accept(&mut self, client_id: Arc<str>, assigned: bool, namespace: NamespaceId, resumed: bool, expiry: u32) {
        self.accept_session(client_id, assigned, namespace, resumed, expiry);
    }
}

/// MQTT's QoS as the binary protocol's (QoS 2 is refused before here).
fn codec_qos(qos: QoS) -> Qos {
    match qos {
        QoS::AtMostOnce => Qos::AtMostOnce,
        _ => Qos::AtLeastOnce,
    }
}

/// What two session calls routed, in order.
fn merge<S>(mut first: super::Routed<S>, second: super::Routed<S>) -> super::Routed<S> {
    first.deliveries.extend(second.deliveries);
    first.pumps.extend(second.pumps);
    first.store.extend(second.store);
    first.queued += second.queued;
    first.dropped += second.dropped;
    first
}
