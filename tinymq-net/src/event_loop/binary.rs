//! The binary protocol's input: frames into the session, a Connect's
//! credentials, live publishes on the fast path (routed from the
//! connection's cache, encoded once), and what a request did to others.

use std::time::Instant;

use smallvec::SmallVec;
use tinymq_core::auth::{AuthError, Identity};
use tinymq_core::broker::{self, Broker, Origin};
use tinymq_core::durable::SessionRequest;
use tinymq_core::outbound::COPY_BELOW;
use tinymq_core::{Qos, ReasonCode, Request, Step};

use super::EventLoop;
use super::durable::{HeldSession, submit_session_ops};
use super::fanout::Live;
use super::slot::Held;
use crate::proto::Proto;
use crate::shared::{ConnRef, Sink, log_events, unix_time};
use crate::users::Decision;

/// Whether a receiver takes the binary protocol's frames (an SSE stream
/// and an MQTT client take a [`Delivery`](tinymq_core::Delivery) of their
/// own).
pub(super) fn is_binary_conn(sink: &Sink) -> bool {
    matches!(sink, Sink::Conn(target) if target.transport.takes_binary_frames())
}

impl EventLoop {
    /// Feeds `input` to the session frame by frame; returns bytes consumed.
    pub(super) fn handle_frames(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        let Some(me) = self.conn_ref(token) else { return 0 };
        loop {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return used };
            let Some(session) = conn.proto.binary_session() else { return used };
            let step = session.handle_input(now, &input[used..]);
            let (consumed, request) = match step {
                Ok(Step::Incomplete { .. }) => return used,
                Ok(Step::Handled { consumed }) => (consumed, None),
                Ok(Step::Request { consumed, request }) => (consumed, Some(request)),
                Err(closed) => {
                    if let Some(reason) = closed.reason {
                        log::debug!("connection {}:{} closed: {reason}", self.index, conn.serial);
                    }
                    return input.len();
                }
            };
            // The caller's after_io queues this connection's flush.
            used += consumed;
            let Some(request) = request else { continue };
            if let Request::Connect { client_id, credentials, session: asked } = request {
                let credentials = credentials.map(|c| (c.username, c.password));
                match self.shared.authenticate(me, conn.peer_ip, credentials) {
                    Decision::Now(caller) => self.finish_connect(token, me, client_id, asked, caller, now),
                    Decision::Later => {
                        // The session reads nothing more until it is decided.
                        if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
                            let session = HeldSession::of(&asked);
                            conn.hold(Held::Connect { client_id: client_id.to_owned(), session });
                        }
                        return used;
                    }
                }
                continue;
            }
            if matches!(request, Request::Publish { .. }) {
                self.counted.messages_in += 1;
            }
            let origin = Origin { unix_time: self.unix_now, ip: conn.peer_ip };
            let effects = if let Request::Publish { topic, payload, retain: false, qos: Qos::AtMostOnce, .. } = request
            {
                // Live traffic changes nothing in the router: loops route
                // it side by side under the shared lock, each publisher
                // from its cache of its last topic's receivers.
                let receivers: SmallVec<[Sink; 4]> = {
                    let routes = conn.routes.get_or_insert_with(Box::default);
                    // The connection's namespace is its cache's, once it
                    // has routed (before, the cache is never current).
                    let namespace = routes.namespace();
                    let subscriber = conn.subscriber;
                    let route = |broker: &Broker<Sink>, routes| broker.route_live(routes, subscriber, topic);
                    self.shared.broker.route_live(routes, namespace, topic, route).into()
                };
                if receivers.is_empty() {
                    continue;
                }
                let frame = broker::live_frame(session, topic, payload);
                if frame.encoded_len() < COPY_BELOW && receivers.iter().all(is_binary_conn) {
                    // Binary receivers only, and a small frame: its bytes
                    // are copied to each, no shared delivery is built.
                    let mut encoded = std::mem::take(&mut self.encoded);
                    encoded.clear();
                    frame.encode(&mut encoded);
                    let live = Live { topic: topic.as_str(), payload };
                    self.dispatch_encoded(&encoded, live, &receivers, now);
                    self.encoded = encoded;
                    continue;
                }
                let delivery = broker::published(session, topic, payload, origin);
                broker::Effects { delivery: Some(delivery), receivers, ..Default::default() }
            } else if let Some(hold) =
                self.sessions.get(&token).filter(|held| held.serial == conn.serial).map(|held| held.hold)
            {
                // QoS 1, retained, subscriptions, PubAcks: the session rules.
                let Some(effects) = self.handle_session_request(token, me, hold, request, origin, now) else {
                    return used;
                };
                effects
            } else {
                let mut broker = self.shared.broker.write();
                let mut effects = broker.handle_request(session, conn.subscriber, Sink::Conn(me), request, origin);
                // Submitted under the lock, so two connections storing the
                // same topic reach the store in the order the broker stored
                // them. The binary protocol acknowledges nothing, so the
                // loop never waits for the commit.
                if let Some(op) = effects.store.take() {
                    let _ = self.shared.submit(op);
                }
                effects
            };
            self.apply_effects(token, effects, now);
        }
    }

    /// Answers a Connect whose credentials are decided.
    pub(super) fn finish_connect(
        &mut self,
        token: usize,
        me: ConnRef,
        client_id: &str,
        asked: SessionRequest<'_>,
        caller: Result<Identity, AuthError>,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let Some(session) = conn.proto.binary_session() else { return };
        let origin = Origin { unix_time: unix_time(), ip: conn.peer_ip };
        let shared = self.shared.clone();
        let answer = {
            let mut broker = shared.broker.write();
            let mut answer = broker.handle_session_connect(
                session,
                Sink::Conn(me),
                client_id,
                asked,
                caller,
                now,
                origin,
                Sink::Session,
            );
            log_events(&mut broker);
            let store = std::mem::take(&mut answer.routed.store);
            let _ = submit_session_ops(&shared, &mut broker, store);
            answer
        };
        let serial = conn.serial;
        let effects = answer.effects;
        if let Some(reason) = session.close_reason().flatten() {
            log::debug!("connection {}:{} refused: {reason}", self.index, conn.serial);
        }
        if let Some(hold) = answer.hold {
            self.keep_session(token, serial, hold);
        }
        self.apply_effects(token, effects, now);
        self.carry_out(answer.routed, now);
    }

    /// Moves what a binary request did to others: a takeover's Disconnect,
    /// a publish's deliveries and store write.
    pub(super) fn apply_effects(&mut self, token: usize, effects: broker::Effects<Sink>, now: Instant) {
        if let Some(id) = effects.connected
            && let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut)
        {
            conn.subscriber = Some(id);
            if let Proto::Binary(session) = &conn.proto
                && let Some(client_id) = session.client_id()
            {
                log::debug!("connection {}:{} is client {client_id:?}", self.index, conn.serial);
            }
        }
        if let Some(Sink::Conn(old)) = &effects.taken_over {
            self.close_conn(*old, ReasonCode::SessionTakenOver, now);
        } else if let Some(Sink::Local(inbox)) = &effects.taken_over {
            inbox.close(ReasonCode::SessionTakenOver);
        }
        // Its store write, if any, was submitted under the broker's lock.
        self.counted.messages_out += effects.queued as u64;
        if let Some(delivery) = effects.delivery
            && !effects.receivers.is_empty()
        {
            self.dispatch(&delivery, &effects.receivers, now);
        }
    }
}
