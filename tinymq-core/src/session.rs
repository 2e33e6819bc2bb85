//! The broker side of one binary-protocol connection.
//!
//! # Calling order
//!
//! 1. [`Session::new`] when the connection is accepted.
//! 2. Whenever bytes arrive, call [`Session::handle_input`] on the unread
//!    bytes until it answers [`Step::Incomplete`]; drop `consumed` bytes
//!    after each call. A [`Step::Request`] asks the broker to act: carry it
//!    out (usually with [`crate::broker::execute`]), which answers through
//!    [`Session::accept`], [`Session::sub_ack`] and so on.
//! 3. Deliveries from other sessions go in through [`Session::deliver`].
//! 4. Write [`Session::outbound`]'s bytes to the peer; when
//!    [`Session::is_closed`] and the outbound queue is empty (or the peer
//!    stops reading), close the connection.
//! 5. Call [`Session::handle_timeout`] at [`Session::poll_timeout`].
//!
//! # Acknowledged delivery
//!
//! A QoS 1 Publish comes out as [`Request::Publish`] with its packet id;
//! once the broker has made the message safe (durable, or in every
//! receiver's queue) the shell calls [`Session::ack`], which queues the
//! PubAck. With [`SessionConfig::max_inflight`] publishes unacknowledged the
//! session stops asking for input ([`Session::wants_read`]). QoS 1
//! deliveries to the client go out through [`Session::deliver_qos1`] with
//! the packet ids a [`crate::durable::DeliveryQueue`] gives them; the
//! client's PubAcks come back as [`Request::PubAck`] for the queue.
//!
//! Every protocol error queues a Disconnect with its reason code and closes
//! the session; the caller only has to flush and close.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{ConnectOptions, Decoded, Decoder, Frame, FrameLimits, FrameType, Qos, ReasonCode, reason_payload};
use crate::durable::{SessionRequest, Transmit};
use crate::outbound::{Outbound, Overflow};
use crate::router::Delivery;
use crate::topic::{Filter, TopicError, TopicLimits, TopicName};

/// Settings of every binary session of a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The keep-alive interval; a session that receives nothing for 1.5 × it
    /// is closed (default 60 s). Also bounds the wait for Connect.
    pub keep_alive: Duration,
    /// Frame field limits.
    pub frame_limits: FrameLimits,
    /// Topic and filter limits.
    pub topic_limits: TopicLimits,
    /// Outbound queue limit in bytes (default 16 MiB).
    pub outbound_limit: usize,
    /// QoS 1 publishes from the client the broker has not acknowledged yet
    /// at which it stops reading from it (default 256).
    pub max_inflight: u16,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            keep_alive: Duration::from_secs(60),
            frame_limits: FrameLimits::default(),
            topic_limits: TopicLimits::default(),
            outbound_limit: 16 << 20,
            max_inflight: 256,
        }
    }
}

/// Username and password from a Connect payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The user name.
    pub username: &'a str,
    /// The password, as sent.
    pub password: &'a str,
}

/// What a frame asks of the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// The client wants to connect; answer with [`Session::accept`] or
    /// [`Session::refuse`].
    Connect {
        /// The requested id; empty asks the broker to assign one.
        client_id: &'a str,
        /// Credentials, if the client sent any.
        credentials: Option<Credentials<'a>>,
        /// Session persistence and will; the will's topic is validated.
        session: SessionRequest<'a>,
    },
    /// A message to route.
    Publish {
        /// Its topic, validated.
        topic: TopicName<'a>,
        /// Its payload.
        payload: &'a [u8],
        /// Whether to store it as the topic's value.
        retain: bool,
        /// Its QoS. At QoS 1, call [`Session::ack`] with `packet_id` once
        /// the message is safe.
        qos: Qos,
        /// The packet id at QoS 1; 0 at QoS 0.
        packet_id: u16,
    },
    /// Add a subscription at up to this QoS; answer with
    /// [`Session::sub_ack`] (QoS 0 granted) or [`Session::sub_ack_qos`].
    Subscribe(Filter, Qos),
    /// Remove a subscription; answer with [`Session::unsub_ack`].
    Unsubscribe(Filter),
    /// The client closed cleanly: drop its subscriptions.
    Disconnect,
    /// The client acknowledged the QoS 1 delivery with this packet id.
    PubAck {
        /// Its packet id.
        packet_id: u16,
    },
}

/// One step of a session's `handle_input`, of either protocol: `R` is what
/// a frame or packet asks of the broker ([`Step`] here, and
/// [`crate::mqtt::Step`]).
#[derive(Debug, PartialEq, Eq)]
pub enum InputStep<R> {
    /// More bytes are needed; `needed` is the total the next frame or
    /// packet needs.
    Incomplete {
        /// Bytes the next frame or packet needs in all (a lower bound).
        needed: usize,
    },
    /// A frame or packet was handled inside the session (a ping, an MQTT
    /// PUBACK, ...).
    Handled {
        /// Bytes to drop from the input.
        consumed: usize,
    },
    /// A frame or packet the broker must act on.
    Request {
        /// Bytes to drop from the input (after acting: `request` borrows them).
        consumed: usize,
        /// What to do.
        request: R,
    },
}

/// One step of [`Session::handle_input`].
pub type Step<'a> = InputStep<Request<'a>>;

/// The session is closed; a Disconnect carrying `reason` is queued unless the
/// client closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("session closed: {reason:?}")]
pub struct Closed {
    /// Why, or `None` for a client's clean Disconnect.
    pub reason: Option<ReasonCode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    /// Connect was handed to the broker; its answer has not come yet.
    Connecting,
    Connected,
    Closed(Option<ReasonCode>),
}

/// The state machine of one binary connection. See the module docs.
#[derive(Debug)]
pub struct Session {
    state: State,
    client_id: Option<Arc<str>>,
    decoder: Decoder,
    topic_limits: TopicLimits,
    idle_timeout: Duration,
    last_received: Instant,
    outbound: Outbound,
    /// The topic of the last Publish, shared by the next one to the same
    /// topic: a publisher usually repeats its topic, and this saves an
    /// allocation per message.
    last_topic: Option<Arc<str>>,
    /// Packet ids of QoS 1 publishes yielded and not yet acknowledged: at
    /// most 65535, since an id in use again is a protocol error. Boxed and
    /// made on the first QoS 1 publish, so a QoS 0 client pays a pointer
    /// (sessions sit in the shell's slab of connections, sized by the
    /// largest).
    #[allow(clippy::box_collection)]
    unacked: Option<Box<HashSet<u16>>>,
    max_inflight: u16,
}

impl Session {
    /// A session for a connection accepted at `now`.
    pub fn new(now: Instant, config: &SessionConfig) -> Self {
        Session {
            state: State::AwaitingConnect,
            client_id: None,
            decoder: Decoder::new(config.frame_limits),
            topic_limits: config.topic_limits,
            idle_timeout: config.keep_alive + config.keep_alive / 2,
            last_received: now,
            outbound: Outbound::new(config.outbound_limit),
            last_topic: None,
            unacked: None,
            max_inflight: config.max_inflight.max(1),
        }
    }

    /// `topic` as a shared string: the last published topic's if it is the
    /// same, else a new one that the next publish can share.
    pub fn shared_topic(&mut self, topic: &str) -> Arc<str> {
        match &self.last_topic {
            Some(last) if **last == *topic => last.clone(),
            _ => {
                let shared: Arc<str> = topic.into();
                self.last_topic = Some(shared.clone());
                shared
            }
        }
    }

    /// The client id, once accepted.
    pub fn client_id(&self) -> Option<&Arc<str>> {
        self.client_id.as_ref()
    }

    /// Whether Connect has been accepted and the session is not closed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the session is over; flush [`Session::outbound`] and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Why the session closed, if it has (`Some(None)` for a clean close).
    pub fn close_reason(&self) -> Option<Option<ReasonCode>> {
        match self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether Connect was handed to the broker and awaits its answer.
    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// Whether the shell should read more input: not after close, not
    /// while Connect awaits its answer (frames behind it wait unread), and
    /// not while the peer leaves half its queue unread (its own requests
    /// would only add to it), and not while [`SessionConfig::max_inflight`]
    /// of its QoS 1 publishes await [`Session::ack`].
    pub fn wants_read(&self) -> bool {
        !matches!(self.state, State::Closed(_) | State::Connecting)
            && self.outbound.len() < self.outbound.limit() / 2
            && self.unacked() < usize::from(self.max_inflight)
    }

    /// QoS 1 publishes from the client not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.as_ref().map_or(0, |ids| ids.len())
    }

    /// Bytes waiting to be sent.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Bytes waiting to be sent, to mark what was written.
    pub fn outbound_mut(&mut self) -> &mut Outbound {
        &mut self.outbound
    }

    /// Decodes and handles the first frame of `input`. See [`Step`].
    pub fn handle_input<'a>(&mut self, now: Instant, input: &'a [u8]) -> Result<Step<'a>, Closed> {
        if let State::Closed(reason) = self.state {
            return Err(Closed { reason });
        }
        if !input.is_empty() {
            self.last_received = now;
        }
        let (frame, consumed) = match self.decoder.decode(input) {
            Ok(Decoded::Incomplete { needed }) => return Ok(Step::Incomplete { needed }),
            Ok(Decoded::Frame { frame, consumed }) => (frame, consumed),
            Err(error) => return Err(self.close_with(error.reason(), &error.to_string())),
        };
        let request = match (self.state, frame.kind) {
            (State::AwaitingConnect, FrameType::Connect) => {
                let options = match ConnectOptions::parse(&frame) {
                    Ok(options) => options,
                    Err(error) => return Err(self.close_with(error.reason(), &error.to_string())),
                };
                let credentials = match parse_credentials(options.credentials) {
                    Ok(credentials) => credentials,
                    Err(text) => return Err(self.close_with(ReasonCode::ProtocolError, text)),
                };
                if options.persistent && frame.client_id.is_empty() {
                    return Err(self.close_with(ReasonCode::ProtocolError, "a persistent session needs a client id"));
                }
                if let Some(will) = &options.will
                    && let Err((code, text)) = self.check_topic_name(will.topic)
                {
                    return Err(self.close_with(code, &format!("will: {text}")));
                }
                self.state = State::Connecting;
                let session = SessionRequest {
                    persistent: options.persistent,
                    session_expiry: options.session_expiry,
                    will: options.will,
                };
                Request::Connect { client_id: frame.client_id, credentials, session }
            }
            (State::AwaitingConnect, _) => {
                return Err(self.close_with(ReasonCode::ProtocolError, "the first frame must be Connect"));
            }
            (State::Connecting, _) => {
                return Err(self.close_with(ReasonCode::ProtocolError, "frame sent before ConnAck"));
            }
            (State::Connected, FrameType::Connect) => {
                return Err(self.close_with(ReasonCode::ProtocolError, "second Connect on one connection"));
            }
            (State::Connected, FrameType::Publish) => {
                let topic = match self.check_topic_name(frame.topic) {
                    Ok(topic) => topic,
                    Err((code, text)) => return Err(self.close_with(code, &text)),
                };
                if frame.qos == Qos::AtLeastOnce && !self.unacked.get_or_insert_default().insert(frame.packet_id) {
                    let text = format!("packet id {} is in use: not yet acknowledged", frame.packet_id);
                    return Err(self.close_with(ReasonCode::ProtocolError, &text));
                }
                Request::Publish {
                    topic,
                    payload: frame.payload,
                    retain: frame.retain,
                    qos: frame.qos,
                    packet_id: frame.packet_id,
                }
            }
            (State::Connected, FrameType::PubAck) => Request::PubAck { packet_id: frame.packet_id },
            (State::Connected, FrameType::Subscribe | FrameType::Unsubscribe) => {
                match Filter::new(frame.topic, &self.topic_limits) {
                    Ok(filter) if frame.kind == FrameType::Subscribe => Request::Subscribe(filter, frame.qos),
                    Ok(filter) => Request::Unsubscribe(filter),
                    Err(error) => {
                        // A bad filter is refused in its ack; the session goes on.
                        let ack = ack_kind(frame.kind);
                        self.queue_ack(ack, frame.topic, Err((topic_error_reason(&error), &error.to_string())));
                        return Ok(Step::Handled { consumed });
                    }
                }
            }
            (State::Connected, FrameType::Ping) => {
                let pong = Frame::empty(FrameType::Pong);
                if self.outbound.push_with(|out| pong.encode(out)).is_err() {
                    return Err(self.close_with(ReasonCode::SlowConsumer, "outbound queue over its limit"));
                }
                return Ok(Step::Handled { consumed });
            }
            (State::Connected, FrameType::Disconnect) => {
                self.state = State::Closed(None);
                Request::Disconnect
            }
            (State::Connected, kind) => {
                let text = format!("{kind:?} is sent only by the broker");
                return Err(self.close_with(ReasonCode::ProtocolError, &text));
            }
            (State::Closed(reason), _) => return Err(Closed { reason }),
        };
        Ok(Step::Request { consumed, request })
    }

    /// A topic a client may publish to (a Publish's, a will's), or the
    /// Disconnect reason and text if it may not.
    fn check_topic_name<'t>(&self, topic: &'t str) -> Result<TopicName<'t>, (ReasonCode, String)> {
        match TopicName::new(topic, &self.topic_limits) {
            // `$` topics are the broker's own (`$SYS/...`): clients may
            // read them but not publish to them.
            Ok(topic) if topic.as_str().starts_with('$') => {
                Err((ReasonCode::InvalidTopic, "topics beginning with $ are the broker's".into()))
            }
            Ok(topic) => Ok(topic),
            Err(error) => Err((topic_error_reason(&error), error.to_string())),
        }
    }

    /// Accepts the Connect: queues ConnAck carrying `client_id`.
    pub fn accept(&mut self, client_id: Arc<str>) {
        self.accept_session(client_id, false);
    }

    /// Accepts the Connect as [`Session::accept`] does, with
    /// SESSION_PRESENT set when `resumed` (a stored session was resumed).
    pub fn accept_session(&mut self, client_id: Arc<str>, resumed: bool) {
        if self.state != State::Connecting {
            return;
        }
        let ack = Frame { client_id: &client_id, session: resumed, ..Frame::empty(FrameType::ConnAck) };
        self.outbound.push_final(&ack.to_vec());
        self.client_id = Some(client_id);
        self.state = State::Connected;
    }

    /// Refuses the Connect, or ends the session for any broker reason
    /// (takeover, shutdown, slow consumer): queues Disconnect and closes.
    pub fn refuse(&mut self, reason: ReasonCode, text: &str) -> Closed {
        self.close_with(reason, text)
    }

    /// Answers a Subscribe: accepted, or refused with a reason.
    pub fn sub_ack(&mut self, filter: &str, result: Result<(), (ReasonCode, &str)>) {
        self.queue_ack(FrameType::SubAck, filter, result);
    }

    /// Accepts a Subscribe, granting `qos`.
    pub fn sub_ack_qos(&mut self, filter: &str, qos: Qos) {
        let frame = Frame { qos, ..Frame::with_topic(FrameType::SubAck, filter) };
        if self.outbound.push_with(|out| frame.encode(out)).is_err() {
            self.close_with(ReasonCode::SlowConsumer, "outbound queue over its limit");
        }
    }

    /// The broker made the client's QoS 1 publish `packet_id` safe: queues
    /// its PubAck, and frees the id and the slot. An id not awaiting an ack
    /// is ignored.
    pub fn ack(&mut self, packet_id: u16) -> Result<(), Closed> {
        if let State::Closed(reason) = self.state {
            return Err(Closed { reason });
        }
        if !self.unacked.as_mut().is_some_and(|ids| ids.remove(&packet_id)) {
            return Ok(());
        }
        if self.outbound.push_with(|out| Frame::pub_ack(packet_id).encode(out)).is_err() {
            return Err(self.close_with(ReasonCode::SlowConsumer, "outbound queue over its limit"));
        }
        Ok(())
    }

    /// Queues a QoS 1 Publish of `transmit` (its packet id and DUP from a
    /// [`crate::durable::DeliveryQueue`]). Closed as [`Session::deliver`].
    pub fn deliver_qos1(&mut self, transmit: &Transmit) -> Result<(), Closed> {
        let message = transmit.delivery.message();
        let frame = Frame::publish_qos1(
            &message.topic,
            &message.payload,
            &message.from,
            false,
            transmit.packet_id,
            transmit.dup,
        );
        self.queue_delivery(|out| out.push_with(|bytes| frame.encode(bytes)))
    }

    /// Answers an Unsubscribe.
    pub fn unsub_ack(&mut self, filter: &str, result: Result<(), (ReasonCode, &str)>) {
        self.queue_ack(FrameType::UnsubAck, filter, result);
    }

    fn queue_ack(&mut self, kind: FrameType, filter: &str, result: Result<(), (ReasonCode, &str)>) {
        let payload = match result {
            Ok(()) => Vec::new(),
            Err((code, text)) => reason_payload(code, text),
        };
        let frame = Frame { payload: &payload, ..Frame::with_topic(kind, filter) };
        if self.outbound.push_with(|out| frame.encode(out)).is_err() {
            self.close_with(ReasonCode::SlowConsumer, "outbound queue over its limit");
        }
    }

    /// Queues a shared Publish frame for the peer. A session over its
    /// outbound limit is closed with Disconnect 7 (slow consumer).
    pub fn deliver(&mut self, delivery: &Delivery) -> Result<(), Closed> {
        self.queue_delivery(|out| delivery.write_to(out))
    }

    /// Queues a Publish frame already encoded (by
    /// [`crate::broker::live_frame`]) as [`Session::deliver`] would.
    pub fn deliver_encoded(&mut self, frame: &[u8]) -> Result<(), Closed> {
        self.queue_delivery(|out| out.push_with(|bytes| bytes.extend_from_slice(frame)))
    }

    fn queue_delivery(&mut self, write: impl FnOnce(&mut Outbound) -> Result<(), Overflow>) -> Result<(), Closed> {
        match self.state {
            State::Connected => {}
            State::Closed(reason) => return Err(Closed { reason }),
            // Nothing reaches a session before its ConnAck.
            State::AwaitingConnect | State::Connecting => return Ok(()),
        }
        if write(&mut self.outbound).is_err() {
            return Err(self.close_with(ReasonCode::SlowConsumer, "outbound queue over its limit"));
        }
        Ok(())
    }

    /// Queues a Publish frame encoded for this session alone (a stored value
    /// sent with RETAIN after a Subscribe).
    pub fn deliver_frame(&mut self, frame: &Frame<'_>) -> Result<(), Closed> {
        if self.state != State::Connected {
            return Ok(());
        }
        if self.outbound.push_with(|out| frame.encode(out)).is_err() {
            return Err(self.close_with(ReasonCode::SlowConsumer, "outbound queue over its limit"));
        }
        Ok(())
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_closed()).then(|| self.last_received + self.idle_timeout)
    }

    /// Closes the session with Disconnect 5 if nothing arrived for 1.5 ×
    /// the keep-alive interval.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Closed> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                Err(self.close_with(ReasonCode::KeepAliveTimeout, "keep-alive timeout"))
            }
            _ => Ok(()),
        }
    }

    fn close_with(&mut self, reason: ReasonCode, text: &str) -> Closed {
        if let State::Closed(reason) = self.state {
            return Closed { reason };
        }
        let payload = reason_payload(reason, text);
        self.outbound.push_final(&Frame { payload: &payload, ..Frame::empty(FrameType::Disconnect) }.to_vec());
        self.state = State::Closed(Some(reason));
        Closed { reason: Some(reason) }
    }
}

fn ack_kind(kind: FrameType) -> FrameType {
    if kind == FrameType::Subscribe { FrameType::SubAck } else { FrameType::UnsubAck }
}

/// PROTOCOL.md's Limits: a field over a limit (length, levels) is "frame
/// too large"; a malformed name or filter is "invalid topic".
fn topic_error_reason(error: &TopicError) -> ReasonCode {
    match error {
        TopicError::TooLong { .. } | TopicError::TooManyLevels { .. } => ReasonCode::FrameTooLarge,
        _ => ReasonCode::InvalidTopic,
    }
}

/// Splits a Connect payload into credentials: `user \0 password`.
fn parse_credentials(payload: &[u8]) -> Result<Option<Credentials<'_>>, &'static str> {
    if payload.is_empty() {
        return Ok(None);
    }
    let split = payload.iter().position(|&b| b == 0).ok_or("credentials must be user, a 0x00 byte, password")?;
    let username = std::str::from_utf8(&payload[..split]).map_err(|_| "user name is not UTF-8")?;
    let password = std::str::from_utf8(&payload[split + 1..]).map_err(|_| "password is not UTF-8")?;
    Ok(Some(Credentials { username, password }))
}
