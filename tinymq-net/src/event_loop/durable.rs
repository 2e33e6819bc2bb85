//! Acknowledged delivery in the loop: each binary or MQTT connection's
//! hold on its durable session (kept here, not in the connection's slot,
//! which stays small), the sessions' QoS 1 messages sent on the loop that
//! owns their connection, the store writes the sessions make, PubAcks and
//! PUBACKs held for the commit under `--durability immediate`, closes with
//! the right departure (and so wills), and loop 0's session expiry.
//!
//! Every rule is the core broker's (`tinymq_core::broker::Broker`'s
//! session methods); this file only carries out what they answer.

use std::time::{Duration, Instant};

use tinymq_core::broker::Broker;
use tinymq_core::broker::{Effects, Origin, Routed, SessionHold};
use tinymq_core::durable::{Departure, SessionRequest, WillMessage};
use tinymq_core::mqtt::ReasonCode;
use tinymq_core::store::StoreOp;
use tinymq_core::{Request, Will};

use super::EventLoop;
use crate::proto::Proto;
use crate::shared::{ConnRef, Control, InboxItem, Shared, Sink};
use crate::writer::Ticket;

/// How often loop 0 looks for sessions past their expiry.
pub(super) const SESSION_EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// A connection's hold on its durable session.
pub(super) struct ConnSession {
    pub(super) serial: u64,
    pub(super) hold: SessionHold,
    /// The client sent Disconnect: its will is discarded.
    clean: bool,
}

/// What a Connect asked of its session, kept while its credentials are
/// checked.
pub(super) struct HeldSession {
    persistent: bool,
    session_expiry: u32,
    will: Option<WillMessage>,
}

impl HeldSession {
    pub(super) fn of(request: &SessionRequest<'_>) -> Self {
        HeldSession {
            persistent: request.persistent,
            session_expiry: request.session_expiry,
            will: request.will.map(|will| WillMessage {
                topic: will.topic.into(),
                payload: will.payload.into(),
                retain: will.retain,
                qos: will.qos,
            }),
        }
    }

    pub(super) fn request(&self) -> SessionRequest<'_> {
        SessionRequest {
            persistent: self.persistent,
            session_expiry: self.session_expiry,
            will: self.will.as_ref().map(|will| Will {
                topic: &will.topic,
                payload: &will.payload,
                retain: will.retain,
                qos: will.qos,
            }),
        }
    }
}

/// Hands the sessions' writes (and `extra` before them) to the store's
/// writer, under the broker's lock so they reach it in the order the
/// broker made them. The ticket of the last, if anything is stored.
pub(super) fn submit_session_ops(
    shared: &Shared,
    broker: &mut Broker<Sink>,
    extra: impl IntoIterator<Item = StoreOp>,
) -> Option<Ticket> {
    let mut last = None;
    for op in extra {
        last = shared.submit(op).or(last);
    }
    while let Some(op) = broker.poll_store_op() {
        last = shared.submit(op).or(last);
    }
    last
}

impl EventLoop {
    /// The session hold of the connection at `token`, if it has one.
    pub(super) fn session_hold(&self, token: usize) -> Option<SessionHold> {
        let conn = self.conns.get(token)?.as_ref()?;
        self.sessions.get(&token).filter(|held| held.serial == conn.serial).map(|held| held.hold)
    }

    /// Keeps the connection's hold from an accepted Connect.
    pub(super) fn keep_session(&mut self, token: usize, serial: u64, hold: SessionHold) {
        self.sessions.insert(token, ConnSession { serial, hold, clean: false });
    }

    /// A request of a connection holding a durable session, through the
    /// core's session rules: the store writes go to the writer under the
    /// lock, a QoS 1 PubAck is sent or held for their commit, and what the
    /// rules routed is carried out. `None` if the connection is gone.
    pub(super) fn handle_session_request(
        &mut self,
        token: usize,
        me: ConnRef,
        hold: SessionHold,
        request: Request<'_>,
        origin: Origin,
        now: Instant,
    ) -> Option<Effects<Sink>> {
        if matches!(request, Request::Disconnect) {
            self.mark_clean(token);
        }
        let conn = self.conns.get_mut(token).and_then(Option::as_mut)?;
        let session = conn.proto.binary_session()?;
        let shared = self.shared.clone();
        let (answer, ticket) = {
            let mut broker = shared.broker.write();
            let mut answer = broker.handle_session_request(
                session,
                conn.subscriber,
                hold,
                Sink::Conn(me),
                request,
                origin,
                Sink::Session,
            );
            let store = answer.effects.store.take().into_iter().chain(std::mem::take(&mut answer.routed.store));
            let ticket = submit_session_ops(&shared, &mut broker, store);
            (answer, ticket)
        };
        if let Some(packet_id) = answer.held_ack {
            match ticket {
                // `immediate`: the PubAck waits for the commit.
                Some(ticket) => self.hold_ack(me, packet_id, ticket),
                // Nothing to store: routed is all there is to do.
                None => {
                    let _ = session.ack(packet_id);
                }
            }
        }
        self.carry_out(answer.routed, now);
        Some(answer.effects)
    }

    /// The client sent Disconnect.
    pub(super) fn mark_clean(&mut self, token: usize) {
        if let Some(held) = self.sessions.get_mut(&token) {
            held.clean = true;
        }
    }

    /// Carries out what a session rule answered: QoS 0 deliveries now,
    /// QoS 1 sends on the loops owning the connections. Its store writes
    /// were submitted under the lock.
    pub(super) fn carry_out(&mut self, routed: Routed<Sink>, now: Instant) {
        self.counted.messages_out += routed.queued as u64;
        if routed.dropped > 0 {
            log::debug!("{} QoS 1 messages dropped: session queues full", routed.dropped);
        }
        for (delivery, receivers) in &routed.deliveries {
            self.dispatch(delivery, receivers, now);
        }
        for sink in routed.pumps {
            let target = match sink {
                Sink::Conn(target) => target,
                // An in-process client takes its QoS 1 messages itself.
                Sink::Local(inbox) => {
                    inbox.wake_session();
                    continue;
                }
                Sink::Http(_) | Sink::Session(_) => continue,
            };
            if target.loop_index() == self.index {
                self.pumps.push(target);
            } else {
                self.outbox[target.loop_index()].items.push(InboxItem::Pump(target));
                self.outbox_pending = true;
            }
        }
    }

    /// Sends the queued QoS 1 messages of the sessions of this loop's
    /// connections that something asked to pump, under one lock.
    pub(super) fn run_pumps(&mut self) {
        if self.pumps.is_empty() {
            return;
        }
        let mut pumps = std::mem::take(&mut self.pumps);
        pumps.sort_unstable_by_key(|target| (target.token(), target.serial));
        pumps.dedup();
        let shared = self.shared.clone();
        let mut broker = shared.broker.write();
        for target in &pumps {
            if self.is_bridge_token(target.token()) {
                self.bridge_pump(*target);
                continue;
            }
            let Some(hold) = self.session_hold(target.token()) else { continue };
            let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { continue };
            if conn.serial != target.serial {
                continue;
            }
            let sent = match &mut conn.proto {
                Proto::Binary(session) => broker.transmit(hold, session),
                Proto::Mqtt(session) => broker.transmit_mqtt(hold, session),
                Proto::Http(_) => continue,
            };
            self.counted.messages_out += sent as u64;
        }
        let _ = submit_session_ops(&shared, &mut broker, None);
        drop(broker);
        for target in &pumps {
            self.mark_dirty(target.token());
        }
        pumps.clear();
        self.pumps = pumps;
    }

    /// Holds the PubAck of `packet_id` from `me` until `ticket`'s write is
    /// committed.
    pub(super) fn hold_ack(&mut self, me: ConnRef, packet_id: u16, ticket: Ticket) {
        self.held_acks.push_back((ticket, me, packet_id));
    }

    /// Asks the writer to tell this loop when the last held PubAck's write
    /// is committed: once per turn, not once per publish. A failed commit
    /// does not tell it: the writer keeps the writes and retries them, and
    /// the PubAcks go out with the retry that commits them (meanwhile the
    /// publisher's window fills and it is not read).
    pub(super) fn wait_for_acks(&mut self) {
        let Some(&(ticket, _, _)) = self.held_acks.back() else { return };
        if self.acks_waited.is_some_and(|waited| waited >= ticket) {
            return;
        }
        let Some(store) = self.shared.store.as_ref() else { return };
        self.acks_waited = Some(ticket);
        let (shared, index) = (self.shared.clone(), self.index);
        store.on_durable(ticket, move |result| shared.send(index, Control::AcksCommitted(ticket, result).into()));
    }

    /// The writes up to `ticket` are committed (or the writer stopped
    /// first): the PubAcks they held go out.
    pub(super) fn acks_committed(&mut self, ticket: Ticket, result: Result<(), String>) {
        if let Err(error) = &result {
            // Only a writer that stopped first says so: the broker is
            // stopping, and its connections with it.
            log::debug!("QoS 1 publishes not acknowledged: {error}");
        }
        while let Some(&(held, target, packet_id)) = self.held_acks.front() {
            if held > ticket {
                break;
            }
            self.held_acks.pop_front();
            // A write that was not committed is not acknowledged: the
            // client sends it again on its next connection.
            if result.is_err() {
                continue;
            }
            if self.is_bridge_token(target.token()) {
                self.bridge_ack(target, packet_id);
                continue;
            }
            let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { continue };
            if conn.serial != target.serial {
                continue;
            }
            match &mut conn.proto {
                Proto::Binary(session) => {
                    let _ = session.ack(packet_id);
                }
                Proto::Mqtt(session) => session.pub_ack(packet_id, ReasonCode::Success),
                Proto::Http(_) => {}
            }
            self.mark_dirty(target.token());
            // A publisher with a full window stopped reading.
            self.schedule_read(target.token());
        }
        if self.acks_waited.is_some_and(|waited| waited <= ticket) && self.held_acks.is_empty() {
            self.acks_waited = None;
        }
    }

    /// The binary connection at `token` is ending: its session is closed
    /// with how it ended (a Disconnect, or lost: its will is published).
    pub(super) fn close_binary_session(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get(token).and_then(Option::as_ref) else { return };
        let serial = conn.serial;
        let Some(held) = self.sessions.remove(&token) else { return };
        if held.serial != serial {
            return;
        }
        let departure = if held.clean { Departure::Clean } else { Departure::Lost };
        let shared = self.shared.clone();
        let routed = {
            let mut broker = shared.broker.write();
            let mut routed = broker.close_session(held.hold, departure, now, self.unix_now);
            let store = std::mem::take(&mut routed.store);
            let _ = submit_session_ops(&shared, &mut broker, store);
            routed
        };
        if !routed.deliveries.is_empty() || !routed.pumps.is_empty() {
            log::debug!("connection {}:{} lost: its will is published", self.index, serial);
            self.counted.messages_in += 1;
        }
        self.carry_out(routed, now);
    }

    /// Loop 0: ends the sessions past their expiry.
    pub(super) fn expire_sessions(&mut self, now: Instant) {
        if self.shared.broker.read().poll_session_timeout().is_none_or(|at| at > now) {
            return;
        }
        let shared = self.shared.clone();
        let mut broker = shared.broker.write();
        let expired = broker.handle_session_timeout(now);
        let _ = submit_session_ops(&shared, &mut broker, None);
        if expired > 0 {
            log::debug!("{expired} sessions expired");
        }
    }
}
