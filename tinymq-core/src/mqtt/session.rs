//! The broker side of one MQTT connection, in the style of the binary
//! protocol's [`crate::Session`]: bytes and the time go in, requests for
//! the broker and bytes to send come out.
//!
//! # Calling order
//!
//! 1. [`ServerSession::new`] when the connection is accepted.
//! 2. Whenever bytes arrive, call [`ServerSession::handle_input`] on the
//!    unread bytes until it answers [`Step::Incomplete`], dropping
//!    `consumed` bytes after each call. A [`Step::Request`] asks the broker
//!    to act: [`super::broker::connect`] for [`Request::Connect`] (once the
//!    credentials are checked), [`super::broker::execute`] for the rest.
//! 3. Deliveries from every face go in through [`ServerSession::deliver`].
//! 4. Write [`ServerSession::outbound`] to the peer; when
//!    [`ServerSession::is_closed`] and it is flushed, close the connection,
//!    and publish [`ServerSession::take_will`] if it returns one.
//! 5. Call [`ServerSession::handle_timeout`] at
//!    [`ServerSession::poll_timeout`].
//!
//! Every protocol error closes the session after queueing what the spec
//! sends (an MQTT 5 DISCONNECT with its reason, a CONNACK refusal, or
//! nothing in 3.1.1); only this connection is affected.
//!
//! # Sessions that outlive the connection
//!
//! A CONNECT with Clean Session 0 (3.1.1) or a Session Expiry Interval
//! (5) asks for a session kept after the connection
//! ([`ServerSession::persistence`]). The broker keeps it in its durable
//! sessions ([`crate::durable::Sessions`], the binary protocol's) and
//! accepts with [`ServerSession::accept_session`]: the session is then
//! *durable*. Its subscriptions and QoS 1 deliveries are the broker's, not
//! this connection's: QoS 1 messages come from the session's queue through
//! [`ServerSession::deliver_qos1`] (resends with DUP first), each PUBACK
//! goes to the broker as [`Request::PubAck`], and whatever
//! [`ServerSession::deliver`] gets goes at QoS 0 (the broker's rules chose
//! it). Any other session lives as long as its connection: subscriptions
//! and unacknowledged QoS 1 deliveries are this value's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::packet::{
    Ack, ConnAck, Disconnect, Packet, Properties, PropertiesBuf, Property, ProtocolVersion, QoS, ReasonCode, SubAck,
    SubscriptionOptions, UnsubAck,
};
use super::{ConnectError, DecodeError, Decoder, encode};
use crate::codec::ReasonCode as Cause;
use crate::outbound::Outbound;
use crate::router::{Delivery, NamespaceId};
use crate::session::{Closed, Credentials, InputStep};
use crate::topic::{Filter, TopicLimits, TopicName};

mod delivery;
mod durable;
mod inbound;

pub(crate) use delivery::forwarded;

/// Settings of every MQTT session of a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Largest packet accepted from a client, fixed header included
    /// (announced as Maximum Packet Size in MQTT 5).
    pub max_packet_size: usize,
    /// Topic and filter limits, the same as the binary protocol's.
    pub topic_limits: TopicLimits,
    /// Outbound queue limit in bytes; past it the client is a slow
    /// consumer and is disconnected. QoS 1 deliveries waiting for room in
    /// the in-flight window count against it too.
    pub outbound_limit: usize,
    /// How long a connection may take to send CONNECT (and to have its
    /// credentials checked).
    pub connect_timeout: Duration,
    /// Most QoS 1 deliveries a client may have unacknowledged, whatever
    /// larger Receive Maximum it announces.
    pub max_inflight: u16,
    /// Topic Alias Maximum announced to MQTT 5 clients (0: none).
    pub topic_alias_maximum: u16,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_packet_size: (1 << 20) + 4096,
            topic_limits: TopicLimits::default(),
            outbound_limit: 16 << 20,
            connect_timeout: Duration::from_secs(30),
            max_inflight: 64,
            topic_alias_maximum: 64,
        }
    }
}

/// One SUBSCRIBE entry, its filter checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The filter, or the reason it is refused in SUBACK.
    pub filter: Result<Filter, ReasonCode>,
    /// The options it asked for.
    pub options: SubscriptionOptions,
}

/// What a packet asks of the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// A CONNECT to decide: check the credentials, then call
    /// [`super::broker::connect`]. The client id it asked for is kept by the
    /// session ([`ServerSession::requested_client_id`]).
    Connect {
        /// The client id asked for (empty: assign one).
        client_id: &'a str,
        /// User name and password, if the client sent a user name. A
        /// password that is not UTF-8 never matches, so it is refused by
        /// the session itself.
        credentials: Option<Credentials<'a>>,
    },
    /// A message to route; QoS 1 is acknowledged by
    /// [`super::broker::execute`] once routed.
    Publish {
        /// The topic, validated (resolved from a topic alias if need be).
        topic: Arc<str>,
        /// The payload.
        payload: &'a [u8],
        /// RETAIN: store it as the topic's value.
        retain: bool,
        /// QoS 0 or 1.
        qos: QoS,
        /// The packet id of a QoS 1 PUBLISH.
        packet_id: Option<u16>,
        /// Its MQTT 5 properties (those that travel with the message are
        /// forwarded to MQTT 5 subscribers).
        properties: Properties<'a>,
    },
    /// Subscriptions to add; answer with [`ServerSession::sub_ack`].
    Subscribe {
        /// The packet id for SUBACK.
        packet_id: u16,
        /// The entries, in order.
        filters: Vec<Subscription>,
    },
    /// A PUBACK from the client of a durable session (see the module
    /// docs): the broker's queue holds the delivery. A session that is
    /// not durable handles PUBACK itself.
    PubAck {
        /// The packet id acknowledged.
        packet_id: u16,
    },
    /// Subscriptions to remove; answer with [`ServerSession::unsub_ack`].
    Unsubscribe {
        /// The packet id for UNSUBACK.
        packet_id: u16,
        /// The filters, or why each is not one.
        filters: Vec<Result<Filter, ReasonCode>>,
    },
    /// The client disconnected cleanly.
    Disconnect,
}

/// One step of [`ServerSession::handle_input`].
pub type Step<'a> = InputStep<Request<'a>>;

/// A will, kept from CONNECT until the connection ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WillMessage {
    /// Its topic, validated.
    pub topic: Arc<str>,
    /// Its payload.
    pub payload: Arc<[u8]>,
    /// Its QoS (0 or 1).
    pub qos: QoS,
    /// Whether it is stored as the topic's value.
    pub retain: bool,
    /// Its MQTT 5 properties that travel with the message.
    pub properties: Option<Arc<[u8]>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    /// CONNECT was handed to the broker; its answer has not come yet.
    Connecting,
    Connected,
    Closed(Option<Cause>),
}

/// A subscription as the session keeps it: what QoS it was granted, for
/// each delivery's QoS (the router keeps only the filter).
#[derive(Clone, Debug)]
struct Granted {
    filter: Filter,
    qos: QoS,
    no_local: bool,
}

/// The state machine of one MQTT connection. See the module docs.
#[derive(Debug)]
pub struct ServerSession {
    state: State,
    version: Option<ProtocolVersion>,
    decoder: Decoder,
    config: SessionConfig,
    outbound: Outbound,
    last_received: Instant,
    /// Time allowed between two packets from the client: 1.5 × its keep
    /// alive, or `None` when it asked for none.
    idle_timeout: Option<Duration>,
    connect_deadline: Instant,
    /// The client id asked for, between CONNECT and its answer.
    requested: Option<Box<str>>,
    client_id: Option<Arc<str>>,
    namespace: Option<NamespaceId>,
    /// Session Expiry Interval asked for in CONNECT (MQTT 5).
    expiry_asked: u32,
    /// Clean Session (3.1.1) or Clean Start (5) of the CONNECT.
    clean_start: bool,
    /// The session is the broker's durable one (see the module docs).
    durable: bool,
    /// The client's QoS 1 PUBLISHes not yet PUBACKed (held for a commit):
    /// at `max_inflight` the session reads no more until some are.
    unacked: u16,
    /// The client's DISCONNECT asked for its will (MQTT 5 0x04).
    will_on_disconnect: bool,
    will: Option<Box<WillMessage>>,
    /// A refusal decided at the door (peer not allowed, throttled): the
    /// CONNECT is answered with it, in the client's version.
    door_refusal: Option<ReasonCode>,
    /// Topic aliases set by the client (index = alias - 1).
    aliases: Vec<Option<Arc<str>>>,
    last_topic: Option<Arc<str>>,
    subscriptions: Vec<Granted>,
    /// The client's Maximum Packet Size: larger deliveries are dropped.
    client_max_packet: usize,
    outgoing: delivery::Outgoing,
}

impl ServerSession {
    /// A session for a connection accepted at `now`.
    pub fn new(now: Instant, config: &SessionConfig) -> Self {
        ServerSession {
            state: State::AwaitingConnect,
            version: None,
            decoder: Decoder::new(config.max_packet_size, QoS::AtLeastOnce),
            config: *config,
            outbound: Outbound::new(config.outbound_limit),
            last_received: now,
            idle_timeout: None,
            connect_deadline: now + config.connect_timeout,
            requested: None,
            client_id: None,
            namespace: None,
            expiry_asked: 0,
            clean_start: true,
            durable: false,
            unacked: 0,
            will_on_disconnect: false,
            will: None,
            door_refusal: None,
            aliases: Vec::new(),
            last_topic: None,
            subscriptions: Vec::new(),
            client_max_packet: usize::MAX,
            outgoing: delivery::Outgoing::new(config.max_inflight),
        }
    }

    /// Refuses this connection's CONNECT, when it comes, with `reason`
    /// (the peer was turned away at the door). Nothing else is read.
    pub fn refuse_at_door(&mut self, reason: ReasonCode) {
        self.door_refusal = Some(reason);
    }

    /// The protocol version, once CONNECT was read.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The client id, once accepted.
    pub fn client_id(&self) -> Option<&Arc<str>> {
        self.client_id.as_ref()
    }

    /// The namespace it was admitted to, once accepted.
    pub fn namespace(&self) -> Option<NamespaceId> {
        self.namespace
    }

    /// The client id its CONNECT asked for, while it awaits its answer.
    pub fn requested_client_id(&self) -> Option<&str> {
        self.requested.as_deref()
    }

    /// Whether CONNECT was accepted and the session is not closed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether CONNECT was handed to the broker and awaits its answer.
    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// Whether the session is over; flush the outbound queue and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Why the session closed, in the binary protocol's terms (for
    /// statistics): `Some(None)` for the client's DISCONNECT.
    pub fn close_reason(&self) -> Option<Option<Cause>> {
        match self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether the shell should read more: not after close, not while
    /// CONNECT awaits its answer, not while half the queue is unread.
    /// And not while `max_inflight` of its QoS 1 PUBLISHes await their
    /// PUBACK (held for the store's commit).
    pub fn wants_read(&self) -> bool {
        !matches!(self.state, State::Closed(_) | State::Connecting)
            && self.outbound.len() < self.outbound.limit() / 2
            && self.unacked < self.config.max_inflight
    }

    /// Bytes waiting to be sent.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Bytes waiting to be sent, to mark what was written.
    pub fn outbound_mut(&mut self) -> &mut Outbound {
        &mut self.outbound
    }

    /// QoS 1 deliveries sent and not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.outgoing.inflight()
    }

    /// The will, if the connection ended without a DISCONNECT that
    /// dropped it (network loss, keep-alive timeout, protocol error,
    /// takeover, or DISCONNECT 0x04). Taken once.
    pub fn take_will(&mut self) -> Option<WillMessage> {
        self.client_id.as_ref()?;
        self.will.take().map(|will| *will)
    }

    /// Accepts the CONNECT: the client holds `client_id` (`assigned` when
    /// the broker chose it) in `namespace`; CONNACK is queued.
    pub fn accept(&mut self, client_id: Arc<str>, assigned: bool, namespace: NamespaceId) {
        // Not kept: an MQTT 5 client that asked for an expiry is told 0
        // (MQTT 5 section 3.2.2.3.2).
        let expiry = (self.expiry_asked > 0).then_some(0);
        self.accept_with(client_id, assigned, namespace, false, expiry);
    }

    pub(super) fn accept_with(
        &mut self,
        client_id: Arc<str>,
        assigned: bool,
        namespace: NamespaceId,
        session_present: bool,
        expiry: Option<u32>,
    ) {
        if self.state != State::Connecting {
            return;
        }
        let version = self.version.unwrap_or(ProtocolVersion::V311);
        let mut properties = PropertiesBuf::new();
        if version == ProtocolVersion::V5 {
            if let Some(expiry) = expiry {
                properties.push(Property::SessionExpiryInterval(expiry));
            }
            if assigned {
                properties.push(Property::AssignedClientIdentifier(&client_id));
            }
            let max_packet = u32::try_from(self.config.max_packet_size).unwrap_or(u32::MAX);
            properties
                .push(Property::MaximumQos(1))
                .push(Property::MaximumPacketSize(max_packet))
                .push(Property::TopicAliasMaximum(self.config.topic_alias_maximum))
                .push(Property::SubscriptionIdentifierAvailable(0))
                .push(Property::SharedSubscriptionAvailable(0));
        }
        let ack = ConnAck { session_present, code: 0, properties: properties.as_properties() };
        self.outbound.push_final(&encode::to_vec(&Packet::ConnAck(ack), version));
        self.requested = None;
        self.client_id = Some(client_id);
        self.namespace = Some(namespace);
        self.state = State::Connected;
    }

    /// Refuses the CONNECT with `reason` (a CONNACK in the client's
    /// version) and closes.
    pub fn refuse_connect(&mut self, reason: ReasonCode, text: &str) -> Closed {
        let cause = match reason {
            ReasonCode::NotAuthorized | ReasonCode::BadUserNameOrPassword => Cause::NotAuthorized,
            ReasonCode::TopicNameInvalid => Cause::InvalidTopic,
            _ => Cause::ProtocolError,
        };
        self.refuse_as(reason, text, cause)
    }

    fn refuse_as(&mut self, reason: ReasonCode, text: &str, cause: Cause) -> Closed {
        if self.is_closed() {
            return Closed { reason: self.close_reason().flatten() };
        }
        let version = self.version.unwrap_or(ProtocolVersion::V311);
        let code = match version {
            ProtocolVersion::V5 => reason as u8,
            ProtocolVersion::V311 => reason.v311_connack_code(),
        };
        let mut properties = PropertiesBuf::new();
        if version == ProtocolVersion::V5 {
            properties.push(Property::ReasonString(text));
        }
        let ack = ConnAck { session_present: false, code, properties: properties.as_properties() };
        self.outbound.push_final(&encode::to_vec(&Packet::ConnAck(ack), version));
        self.state = State::Closed(Some(cause));
        Closed { reason: Some(cause) }
    }

    /// Ends the session for a broker reason (takeover, shutdown, slow
    /// consumer, keep-alive): MQTT 5 clients get a DISCONNECT saying why,
    /// or a CONNACK refusal if their CONNECT was not answered yet.
    pub fn close(&mut self, cause: Cause) -> Closed {
        match self.state {
            State::Connected => self.close_with(cause, wire_reason(cause), cause.text()),
            State::Connecting => self.refuse_as(ReasonCode::ServerUnavailable, cause.text(), cause),
            State::AwaitingConnect => {
                self.state = State::Closed(Some(cause));
                Closed { reason: Some(cause) }
            }
            State::Closed(reason) => Closed { reason },
        }
    }

    /// Answers a SUBSCRIBE with one code per filter.
    pub fn sub_ack(&mut self, packet_id: u16, codes: &[u8]) {
        let ack = SubAck { packet_id, properties: Default::default(), codes };
        let _ = self.queue(&Packet::SubAck(ack));
    }

    /// Answers an UNSUBSCRIBE with one code per filter (MQTT 5 only
    /// sends them).
    pub fn unsub_ack(&mut self, packet_id: u16, codes: &[u8]) {
        let ack = UnsubAck { packet_id, properties: Default::default(), codes };
        let _ = self.queue(&Packet::UnsubAck(ack));
    }

    /// Acknowledges a QoS 1 PUBLISH (the reason goes only to MQTT 5).
    pub fn pub_ack(&mut self, packet_id: u16, reason: ReasonCode) {
        self.unacked = self.unacked.saturating_sub(1);
        let ack = Ack { packet_id, reason: reason as u8, properties: Default::default() };
        let _ = self.queue(&Packet::PubAck(ack));
    }

    /// Records a granted subscription, for the QoS of what it delivers;
    /// returns whether the filter was already subscribed.
    pub fn granted(&mut self, filter: &Filter, options: SubscriptionOptions) -> bool {
        let qos = options.qos.min(QoS::AtLeastOnce);
        let granted = Granted { filter: filter.clone(), qos, no_local: options.no_local };
        match self.subscriptions.iter_mut().find(|g| g.filter == *filter) {
            Some(existing) => {
                *existing = granted;
                true
            }
            None => {
                self.subscriptions.push(granted);
                false
            }
        }
    }

    /// Forgets a subscription.
    pub fn revoked(&mut self, filter: &Filter) {
        self.subscriptions.retain(|g| g.filter != *filter);
    }

    /// Queues a PUBLISH of a message routed to this client, at the lower
    /// of its QoS and what the client was granted for its topic. A QoS 1
    /// delivery beyond the in-flight window waits its turn; a client over
    /// its outbound limit is closed as a slow consumer.
    pub fn deliver(&mut self, delivery: &Arc<Delivery>) -> Result<(), Closed> {
        match self.state {
            State::Connected => {}
            State::Closed(reason) => return Err(Closed { reason }),
            State::AwaitingConnect | State::Connecting => return Ok(()),
        }
        if self.durable {
            // The session's rules chose QoS 0 for it, and its filters are
            // the broker's (the router matched it already).
            return self.send_publish(delivery, QoS::AtMostOnce, false);
        }
        let message = delivery.message();
        // A QoS 0 message to a client without No Local subscriptions goes
        // at QoS 0 whatever it matched: the router matched it already.
        if delivery.qos() == QoS::AtMostOnce && !self.subscriptions.iter().any(|g| g.no_local) {
            return self.send_publish(delivery, QoS::AtMostOnce, false);
        }
        let Ok(topic) = TopicName::new(&message.topic, &TopicLimits::UNBOUNDED) else { return Ok(()) };
        let mut granted = None;
        let mut local_only = true;
        for subscription in self.subscriptions.iter().filter(|g| g.filter.matches(topic)) {
            granted = granted.max(Some(subscription.qos));
            local_only &= subscription.no_local;
        }
        let Some(granted) = granted else { return Ok(()) };
        if local_only && self.client_id.as_deref() == Some(&*message.from) {
            return Ok(());
        }
        self.send_publish(delivery, granted.min(delivery.qos()), false)
    }

    /// Queues a stored value for a new subscription granted `granted`,
    /// with RETAIN set.
    pub fn deliver_retained(&mut self, delivery: &Arc<Delivery>, granted: QoS) -> Result<(), Closed> {
        if self.state != State::Connected {
            return Ok(());
        }
        self.send_publish(delivery, granted.min(delivery.qos()).min(QoS::AtLeastOnce), true)
    }

    /// When [`ServerSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed(_) => None,
            State::AwaitingConnect | State::Connecting => Some(self.connect_deadline),
            State::Connected => self.idle_timeout.map(|idle| self.last_received + idle),
        }
    }

    /// Closes the session when the client was silent for 1.5 × its keep
    /// alive (MQTT 5: DISCONNECT 0x8D), or sent no CONNECT in time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Closed> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => Err(self.close(Cause::KeepAliveTimeout)),
            _ => Ok(()),
        }
    }

    /// Queues a packet the session answers with; over the outbound limit
    /// the session closes as a slow consumer.
    fn queue(&mut self, packet: &Packet<'_>) -> Result<(), Closed> {
        let Some(version) = self.version else { return Ok(()) };
        if self.is_closed() {
            return Ok(());
        }
        if self.outbound.push_with(|out| encode::encode(packet, version, out)).is_err() {
            return Err(self.close(Cause::SlowConsumer));
        }
        Ok(())
    }

    fn decode_failed(&mut self, error: &DecodeError) -> Closed {
        let cause = match error {
            DecodeError::PacketTooLarge { .. } => Cause::FrameTooLarge,
            DecodeError::TopicNameInvalid => Cause::InvalidTopic,
            _ => Cause::ProtocolError,
        };
        self.close_with(cause, error.reason_code(), &error.to_string())
    }

    fn connect_failed(&mut self, error: &ConnectError) -> Closed {
        let mut bytes = Vec::new();
        error.refusal().encode(&mut bytes);
        self.outbound.push_final(&bytes);
        let cause = match error.error {
            DecodeError::PacketTooLarge { .. } => Cause::FrameTooLarge,
            _ => Cause::ProtocolError,
        };
        self.state = State::Closed(Some(cause));
        Closed { reason: Some(cause) }
    }

    /// Closes after a CONNACK: MQTT 5 gets DISCONNECT `reason` with `text`
    /// as its Reason String, 3.1.1 nothing (section 4.8).
    fn close_with(&mut self, cause: Cause, reason: ReasonCode, text: &str) -> Closed {
        if let State::Closed(reason) = self.state {
            return Closed { reason };
        }
        if self.version == Some(ProtocolVersion::V5) && self.state == State::Connected {
            let mut properties = PropertiesBuf::new();
            properties.push(Property::ReasonString(text));
            let disconnect = Disconnect { reason: reason as u8, properties: properties.as_properties() };
            self.outbound.push_final(&encode::to_vec(&Packet::Disconnect(disconnect), ProtocolVersion::V5));
        } else if self.state == State::Connecting {
            return self.refuse_as(reason, text, cause);
        }
        self.state = State::Closed(Some(cause));
        Closed { reason: Some(cause) }
    }
}

/// The MQTT 5 DISCONNECT reason for a broker-side close.
fn wire_reason(cause: Cause) -> ReasonCode {
    match cause {
        Cause::ProtocolError => ReasonCode::ProtocolError,
        Cause::NotAuthorized => ReasonCode::NotAuthorized,
        Cause::SessionTakenOver => ReasonCode::SessionTakenOver,
        Cause::FrameTooLarge => ReasonCode::PacketTooLarge,
        Cause::KeepAliveTimeout => ReasonCode::KeepAliveTimeout,
        Cause::ShuttingDown => ReasonCode::ServerShuttingDown,
        Cause::SlowConsumer => ReasonCode::QuotaExceeded,
        Cause::InvalidTopic => ReasonCode::TopicNameInvalid,
        Cause::TooManySessions => ReasonCode::QuotaExceeded,
    }
}

#[cfg(test)]
mod tests;
