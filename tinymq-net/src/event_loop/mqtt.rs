//! MQTT's input: packets into the session, a CONNECT's credentials (the
//! same users, budgets and namespaces as the binary protocol's), requests
//! through the core's MQTT rules, and the will of a connection that ends
//! without a clean DISCONNECT.
//!
//! A connection holding a durable session (Clean Session 0, or an MQTT 5
//! Session Expiry Interval) keeps its hold in the loop's sessions, as a
//! binary one does (`durable.rs`): its requests, and every client's QoS 1
//! publishes, go through the core's session rules, with the PUBACK held
//! for the store's commit under `--durability immediate`.

use std::time::Instant;

use tinymq_core::auth::{AuthError, Identity};
use tinymq_core::broker::{Effects, Origin, SessionHold};
use tinymq_core::mqtt::{QoS, ReasonCode, Request, Step};

use super::EventLoop;
use super::durable::submit_session_ops;
use super::slot::Held;
use crate::shared::{ConnRef, Sink, log_events, unix_time};
use crate::users::Decision;

impl EventLoop {
    /// Feeds `input` to the MQTT session packet by packet; returns bytes
    /// consumed.
    pub(super) fn handle_packets(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        let Some(me) = self.conn_ref(token) else { return 0 };
        loop {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return used };
            let Some(session) = conn.proto.mqtt_session() else { return used };
            let (consumed, request) = match session.handle_input(now, &input[used..]) {
                Ok(Step::Incomplete { .. }) => return used,
                Ok(Step::Handled { consumed }) => (consumed, None),
                Ok(Step::Request { consumed, request }) => (consumed, Some(request)),
                Err(closed) => {
                    if let Some(reason) = closed.reason {
                        log::debug!("MQTT connection {}:{} closed: {reason}", self.index, conn.serial);
                    }
                    return input.len();
                }
            };
            used += consumed;
            let Some(request) = request else { continue };
            if let Request::Connect { credentials, .. } = request {
                let credentials = credentials.map(|c| (c.username, c.password));
                match self.shared.authenticate(me, conn.peer_ip, credentials) {
                    Decision::Now(caller) => self.finish_mqtt_connect(token, me, caller, now),
                    Decision::Later => {
                        // The session reads nothing more until it is decided.
                        conn.hold(Held::MqttConnect);
                        return used;
                    }
                }
                continue;
            }
            if matches!(request, Request::Publish { .. }) {
                self.counted.messages_in += 1;
            }
            let origin = Origin { unix_time: self.unix_now, ip: conn.peer_ip };
            let hold = self.sessions.get(&token).filter(|held| held.serial == conn.serial).map(|held| held.hold);
            let effects = match request {
                Request::Publish { topic, payload, retain: false, qos: QoS::AtMostOnce, packet_id, properties } => {
                    // Live traffic changes nothing in the router: routed under
                    // the shared lock, from the connection's cache.
                    let routes = conn.routes.get_or_insert_with(Box::default);
                    let subscriber = conn.subscriber;
                    self.shared.broker.read().route_mqtt_live(
                        routes,
                        session,
                        subscriber,
                        topic,
                        payload,
                        QoS::AtMostOnce,
                        packet_id,
                        properties,
                        origin,
                    )
                }
                request if hold.is_some() || matches!(request, Request::Publish { qos: QoS::AtLeastOnce, .. }) => {
                    // DISCONNECT 0x04 keeps the will: the session's end
                    // stays a lost one.
                    if matches!(request, Request::Disconnect) && !session.disconnected_with_will() {
                        self.mark_clean(token);
                    }
                    let Some(effects) = self.handle_mqtt_session_request(token, me, hold, request, origin, now) else {
                        return used;
                    };
                    effects
                }
                request => {
                    let mut broker = self.shared.broker.write();
                    let mut effects = broker.handle_mqtt_request(session, conn.subscriber, request, origin);
                    // Submitted under the lock, as a binary publish's is.
                    if let Some(op) = effects.store.take() {
                        let _ = self.shared.submit(op);
                    }
                    effects
                }
            };
            self.apply_effects(token, effects, now);
        }
    }

    /// A request through the core's MQTT session rules (`hold`: the
    /// connection's durable session, if it holds one): the store writes go
    /// to the writer under the lock, a QoS 1 PUBACK is sent or held for
    /// their commit, and what the rules routed is carried out. `None` if
    /// the connection is gone.
    fn handle_mqtt_session_request(
        &mut self,
        token: usize,
        me: ConnRef,
        hold: Option<SessionHold>,
        request: Request<'_>,
        origin: Origin,
        now: Instant,
    ) -> Option<Effects<Sink>> {
        let conn = self.conns.get_mut(token).and_then(Option::as_mut)?;
        let session = conn.proto.mqtt_session()?;
        let shared = self.shared.clone();
        let (answer, ticket) = {
            let mut broker = shared.broker.write();
            let mut answer =
                broker.handle_mqtt_session_request(session, conn.subscriber, hold, request, origin, Sink::Session);
            let store = answer.effects.store.take().into_iter().chain(std::mem::take(&mut answer.routed.store));
            let ticket = submit_session_ops(&shared, &mut broker, store);
            (answer, ticket)
        };
        if let Some(packet_id) = answer.held_ack {
            match ticket {
                // `immediate`: the PUBACK waits for the commit.
                Some(ticket) => self.hold_ack(me, packet_id, ticket),
                // Nothing to store: routed is all there is to do.
                None => session.pub_ack(packet_id, ReasonCode::Success),
            }
        }
        self.carry_out(answer.routed, now);
        Some(answer.effects)
    }

    /// Answers a CONNECT whose credentials are decided. A wrong password
    /// costs the peer's budget as it does on every face.
    pub(super) fn finish_mqtt_connect(
        &mut self,
        token: usize,
        me: ConnRef,
        caller: Result<Identity, AuthError>,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let peer_ip = conn.peer_ip;
        let Some(session) = conn.proto.mqtt_session() else { return };
        let origin = Origin { unix_time: unix_time(), ip: peer_ip };
        let shared = self.shared.clone();
        let answer = {
            let mut broker = shared.broker.write();
            let mut answer = broker.handle_mqtt_connect(session, Sink::Conn(me), caller, now, origin, Sink::Session);
            log_events(&mut broker);
            let store = std::mem::take(&mut answer.routed.store);
            let _ = submit_session_ops(&shared, &mut broker, store);
            answer
        };
        match (session.client_id(), session.close_reason()) {
            (Some(client_id), _) => {
                log::debug!("MQTT connection {}:{} is client {client_id:?}", self.index, conn.serial)
            }
            (None, Some(reason)) => log::debug!("MQTT connection {}:{} refused: {reason:?}", self.index, conn.serial),
            (None, None) => {}
        }
        if let Some(hold) = answer.hold {
            let serial = conn.serial;
            self.keep_session(token, serial, hold);
        }
        self.apply_effects(token, answer.effects, now);
        // A resumed session's resends, once CONNACK is out.
        self.carry_out(answer.routed, now);
    }

    /// Publishes the will of an MQTT connection that is ending, if it has
    /// one to publish (see [`tinymq_core::mqtt::ServerSession::take_will`]), through the
    /// same rule as any publish, to every face's subscribers.
    pub(super) fn publish_will(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let Some(session) = conn.proto.mqtt_session() else { return };
        let Some(will) = session.take_will() else { return };
        let Some(namespace) = session.namespace() else { return };
        let client_id = session.client_id().cloned();
        log::debug!("MQTT connection {}:{} ended: publishing its will to {:?}", self.index, conn.serial, will.topic);
        let origin = Origin { unix_time: unix_time(), ip: conn.peer_ip };
        let effects: Effects<Sink> = {
            let mut broker = self.shared.broker.write();
            let mut effects = broker.publish_mqtt_will(namespace, client_id, will, origin);
            if let Some(op) = effects.store.take() {
                let _ = self.shared.submit(op);
            }
            effects
        };
        self.counted.messages_in += 1;
        if let Some(delivery) = effects.delivery
            && !effects.receivers.is_empty()
        {
            // Rare (one per lost connection), and reached from paths that
            // have no time at hand.
            self.dispatch(&delivery, &effects.receivers, Instant::now());
        }
    }
}
