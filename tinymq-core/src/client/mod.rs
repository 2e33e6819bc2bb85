//! The client side of one binary-protocol connection, sans-IO.
//!
//! [`ClientSession`] is what a network client runs to speak to a broker: it
//! encodes Connect, Publish, Subscribe, Unsubscribe, Ping and Disconnect,
//! decodes what the broker sends into [`ClientEvent`]s, remembers the filters
//! the user subscribed to so that a new connection gets them again, keeps the
//! client id the broker assigned so that a reconnect asks for the same one,
//! and keeps the connection alive. It never touches a socket or a clock.
//!
//! # Calling order
//!
//! 1. [`ClientSession::new`] once, for the whole life of the client (it
//!    outlives connections).
//! 2. When a connection is open, [`ClientSession::connect`]; then write
//!    [`ClientSession::poll_transmit`]'s bytes to the socket and report how
//!    many were written with [`ClientSession::advance_transmit`]. Do this
//!    after every call below too.
//! 3. When bytes arrive, append them to the unread bytes and call
//!    [`ClientSession::handle_input`]; drop the `consumed` bytes it returns
//!    and keep the rest (part of a frame) for the next call.
//! 4. Take [`ClientEvent`]s from [`ClientSession::poll_event`] until `None`.
//!    [`ClientEvent::Connected`] comes first on each connection; nothing is
//!    sent to the broker before it except Connect (the broker refuses any
//!    other frame before its ConnAck), so [`ClientSession::subscribe`] only
//!    remembers the filter until then and [`ClientSession::publish`] fails.
//! 5. Call [`ClientSession::handle_timeout`] when [`ClientSession::poll_timeout`]
//!    is reached; it sends Ping when the connection is idle and fails when
//!    the broker stopped answering.
//! 6. When the connection is lost (an error from this type, end of file, a
//!    socket error, or [`ClientEvent::Disconnected`]), drop the socket and
//!    call [`ClientSession::reset`]; on the next connection go back to 2.
//!    After the next ConnAck every remembered filter is subscribed again.
//!
//! A clean close is [`ClientSession::disconnect`], then flush and close.
//!
//! # Acknowledged delivery
//!
//! [`ClientSession::publish_qos1`] sends at QoS 1 and returns the packet
//! id; [`ClientEvent::Published`] with that id says the broker acknowledged
//! it. At most [`ClientConfig::max_inflight`] wait for their ack (the call
//! fails with [`ClientError::WindowFull`] beyond); they are kept across
//! connections and sent again, with DUP and in order, after the next
//! ConnAck. A QoS 1 message from the broker is acknowledged when its
//! [`ClientEvent::Message`] is taken from [`ClientSession::poll_event`]; if
//! the connection is lost before, it is not, and the broker sends it again.
//!
//! [`ClientConfig::persistent`] asks the broker to keep the session
//! (subscriptions, queued QoS 1 messages) between connections, and
//! [`ClientConfig::will`] leaves a will it publishes if the connection is
//! lost without [`ClientSession::disconnect`].
//!
//! # Keep-alive
//!
//! Ping goes out when nothing was sent for half the keep-alive interval, so
//! the broker (which closes a connection silent for 1.5 × its keep-alive)
//! never sees silence, and when nothing was received for half the interval,
//! so that a dead broker is noticed even by a client that only publishes.
//! If a Ping stays unanswered (nothing at all received) for 1.5 × the
//! interval since the last byte received, and at least one interval since
//! the Ping, [`ClientSession::handle_timeout`] fails with
//! [`ClientError::KeepAliveTimeout`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::codec::connect::OPTIONS_LEN;
use crate::codec::{
    ConnectOptions, DecodeError, Decoded, Decoder, Frame, FrameLimits, FrameType, Qos, ReasonCode, Will,
};
use crate::topic::{Filter, TopicError, TopicLimits, TopicName};

mod outgoing;

use outgoing::Outgoing;

/// A will as the client configures it (see [`crate::codec::Will`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientWill {
    /// Its topic name.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Published with RETAIN.
    pub retain: bool,
    /// Published at this QoS.
    pub qos: Qos,
}

/// Settings of a [`ClientSession`]. Its `Debug` output leaves the password
/// out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client id to ask for; empty lets the broker assign one (which is
    /// then asked for again on every reconnect).
    pub client_id: String,
    /// User name and password, sent in Connect.
    pub credentials: Option<(String, String)>,
    /// The keep-alive interval (default 60 s); zero turns Ping and dead
    /// broker detection off.
    pub keep_alive: Duration,
    /// Limits on the frames received, also applied to what is sent, since
    /// a broker with the same limits would disconnect a client that exceeds
    /// them.
    pub frame_limits: FrameLimits,
    /// Limits on topic names and filters sent.
    pub topic_limits: TopicLimits,
    /// Ask the broker to keep the session between connections
    /// (`clean_session = false`); needs a client id.
    pub persistent: bool,
    /// Seconds a persistent session outlives its connection; 0 for the
    /// broker's default.
    pub session_expiry: u32,
    /// The will the broker publishes if the connection is lost.
    pub will: Option<ClientWill>,
    /// QoS 1 publishes that may wait for their ack at once (default 256,
    /// as the broker's `max_inflight`; beyond the broker's, it just stops
    /// reading until it has acknowledged some).
    pub max_inflight: u16,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| (user, "<password>")))
            .field("keep_alive", &self.keep_alive)
            .field("frame_limits", &self.frame_limits)
            .field("topic_limits", &self.topic_limits)
            .field("persistent", &self.persistent)
            .field("session_expiry", &self.session_expiry)
            .field("will", &self.will)
            .field("max_inflight", &self.max_inflight)
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: String::new(),
            credentials: None,
            keep_alive: Duration::from_secs(60),
            frame_limits: FrameLimits::default(),
            topic_limits: TopicLimits::default(),
            persistent: false,
            session_expiry: 0,
            will: None,
            max_inflight: 256,
        }
    }
}

/// A reason the broker gave: a refused SubAck or UnsubAck, or a Disconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The reason byte (see [`ReasonCode`]; unknown codes are kept as sent).
    pub code: u8,
    /// The broker's text.
    pub text: String,
}

impl Reason {
    /// Parses a reason payload: one code byte, then text (taken lossily if
    /// it is not UTF-8, since it is only for people). An empty payload has
    /// code 0.
    fn from_payload(payload: &[u8]) -> Self {
        match payload.split_first() {
            Some((&code, text)) => Reason { code, text: String::from_utf8_lossy(text).into_owned() },
            None => Reason { code: 0, text: String::new() },
        }
    }

    /// The code as a known [`ReasonCode`], if it is one.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        ReasonCode::from_u8(self.code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.text, self.code)
    }
}

/// What the broker said, decoded by [`ClientSession::handle_input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// ConnAck: the connection is accepted under `client_id`.
    Connected {
        /// The session's id: the one asked for, or the one the broker assigned.
        client_id: String,
        /// The broker resumed a stored session (SESSION_PRESENT).
        session_present: bool,
    },
    /// A message from a subscription.
    Message {
        /// The topic it was published to.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
        /// The publisher's client id.
        from: String,
        /// Whether it is a stored value sent because of a new subscription.
        retained: bool,
        /// The QoS it came at.
        qos: Qos,
        /// Whether the broker may have sent it before (a QoS 1 resend).
        dup: bool,
    },
    /// The broker acknowledged the QoS 1 publish with this packet id.
    Published {
        /// The id [`ClientSession::publish_qos1`] returned.
        packet_id: u16,
    },
    /// The answer to a Subscribe. A refused filter is forgotten.
    SubAck {
        /// The filter, as sent.
        filter: String,
        /// Accepted, or refused with the broker's reason.
        result: Result<(), Reason>,
    },
    /// The answer to an Unsubscribe.
    UnsubAck {
        /// The filter, as sent.
        filter: String,
        /// Accepted, or refused with the broker's reason.
        result: Result<(), Reason>,
    },
    /// The broker closed the connection with this reason: drop the socket
    /// and [`ClientSession::reset`]. Whether to reconnect depends on the
    /// code: not after [`ReasonCode::SessionTakenOver`] or
    /// [`ReasonCode::NotAuthorized`].
    Disconnected(Reason),
}

/// What went wrong, in the terms of the client's caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configured client id is over the frame limit.
    #[error("client id of {len} bytes is over the limit of {max}")]
    ClientIdTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The configured credentials cannot be sent: the user name contains a
    /// NUL byte (the separator), or both are over the payload limit.
    #[error("credentials cannot be sent: {0}")]
    InvalidCredentials(&'static str),
    /// A topic name or filter given to publish or subscribe is not valid.
    #[error("invalid topic or filter {topic:?}: {source}")]
    InvalidTopic {
        /// The text given.
        topic: String,
        /// Why it is not valid.
        source: TopicError,
    },
    /// A payload over the frame limit.
    #[error("payload of {len} bytes is over the limit of {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// There is no accepted connection (no ConnAck yet, or it was lost).
    #[error("not connected to the broker")]
    NotConnected,
    /// [`ClientConfig::max_inflight`] QoS 1 publishes already wait for
    /// their ack.
    #[error("{0} QoS 1 publishes already wait for their acknowledgement")]
    WindowFull(usize),
    /// A persistent session needs a client id.
    #[error("a persistent session needs a client id")]
    PersistentWithoutId,
    /// A QoS 1 publish or a will to a topic beginning with `$`, which the
    /// broker refuses with a Disconnect: kept for resending, it would be
    /// refused on every connection.
    #[error("topic {0:?} begins with $, which is the broker's")]
    BrokerTopic(String),
    /// The broker sent bytes that are not a valid frame. The connection is
    /// unusable.
    #[error("the broker sent an invalid frame: {0}")]
    InvalidFrame(DecodeError),
    /// The broker sent a frame that is not valid at this point (a second
    /// ConnAck, anything before ConnAck, a frame only clients send). The
    /// connection is unusable.
    #[error("the broker sent {kind:?} {context}")]
    UnexpectedFrame {
        /// The frame type received.
        kind: FrameType,
        /// When it came.
        context: &'static str,
    },
    /// Nothing was received from the broker for too long, Ping included.
    /// The connection is presumed dead.
    #[error("no answer from the broker for {silent_for:?}")]
    KeepAliveTimeout {
        /// How long the broker has been silent.
        silent_for: Duration,
    },
}

/// Where the current connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// No connection: before [`ClientSession::connect`], or after
    /// [`ClientSession::reset`].
    Idle,
    /// Connect was queued; ConnAck has not come yet.
    Connecting,
    /// ConnAck came: the connection is usable.
    Connected,
    /// The connection ended (broker Disconnect, a clean
    /// [`ClientSession::disconnect`], an error); call
    /// [`ClientSession::reset`] before connecting again.
    Closed,
}

/// The client side of the binary protocol. See the module docs for the
/// calling order.
#[derive(Debug)]
pub struct ClientSession {
    state: ConnectionState,
    /// The configured id until a ConnAck names the session's id.
    client_id: String,
    credentials: ConnectPayload,
    persistent: bool,
    session_expiry: u32,
    will: Option<ClientWill>,
    outgoing: Outgoing,
    /// Counts connections, so that an ack owed to a message of an earlier
    /// one is not sent on this one.
    connection: u64,
    /// For each event, the packet id to acknowledge when it is taken and
    /// the connection it came on (0: nothing to acknowledge).
    owed_acks: VecDeque<(u16, u64)>,
    keep_alive: Duration,
    decoder: Decoder,
    topic_limits: TopicLimits,
    max_payload_len: usize,
    /// Filters to hold on every connection, in the order first subscribed,
    /// with the QoS asked.
    subscriptions: Vec<(Filter, Qos)>,
    events: VecDeque<ClientEvent>,
    transmit: Vec<u8>,
    /// Bytes of `transmit` already written.
    transmitted: usize,
    last_sent: Instant,
    last_received: Instant,
    /// The first Ping sent since something was last received.
    unanswered_ping: Option<Instant>,
}

impl ClientSession {
    /// A client with `config`, created at `now`. Fails if the client id or
    /// credentials cannot be sent within the frame limits.
    pub fn new(config: &ClientConfig, now: Instant) -> Result<Self, ClientError> {
        let limits = config.frame_limits;
        let max_id = limits.max_client_id_len.min(usize::from(u16::MAX));
        if config.client_id.len() > max_id {
            return Err(ClientError::ClientIdTooLong { len: config.client_id.len(), max: max_id });
        }
        let max_payload_len = limits.max_payload_len.min(u32::MAX as usize);
        let mut credentials = Vec::new();
        if let Some((user, password)) = &config.credentials {
            if user.contains('\0') {
                return Err(ClientError::InvalidCredentials("the user name contains a NUL byte"));
            }
            credentials.extend_from_slice(user.as_bytes());
            credentials.push(0);
            credentials.extend_from_slice(password.as_bytes());
            if credentials.len() > max_payload_len {
                return Err(ClientError::InvalidCredentials("user name and password are over the payload limit"));
            }
        }
        // What the broker would refuse, or the encoder could not write, is refused here.
        let max_topic_len = config.topic_limits.max_len.min(limits.max_topic_len).min(usize::from(u16::MAX));
        let topic_limits = TopicLimits { max_len: max_topic_len, ..config.topic_limits };
        if config.persistent && config.client_id.is_empty() {
            return Err(ClientError::PersistentWithoutId);
        }
        if let Some(will) = &config.will {
            TopicName::new(&will.topic, &topic_limits)
                .map_err(|source| ClientError::InvalidTopic { topic: will.topic.clone(), source })?;
            if will.topic.starts_with('$') {
                return Err(ClientError::BrokerTopic(will.topic.clone()));
            }
            let len = OPTIONS_LEN + will.payload.len() + credentials.len();
            if len > max_payload_len {
                return Err(ClientError::PayloadTooLarge { len, max: max_payload_len });
            }
        }
        Ok(ClientSession {
            state: ConnectionState::Idle,
            client_id: config.client_id.clone(),
            credentials: ConnectPayload(credentials),
            persistent: config.persistent,
            session_expiry: config.session_expiry,
            will: config.will.clone(),
            outgoing: Outgoing::new(config.max_inflight),
            connection: 0,
            owed_acks: VecDeque::new(),
            keep_alive: config.keep_alive,
            decoder: Decoder::new(limits),
            topic_limits,
            max_payload_len,
            subscriptions: Vec::new(),
            events: VecDeque::new(),
            transmit: Vec::new(),
            transmitted: 0,
            last_sent: now,
            last_received: now,
            unanswered_ping: None,
        })
    }

    /// The session's client id: the one the broker named in its last
    /// ConnAck, else the configured one (empty: to be assigned).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Where the current connection is.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Whether ConnAck came and the connection was not lost since.
    pub fn is_connected(&self) -> bool {
        self.state == ConnectionState::Connected
    }

    /// The filters held on every connection, in the order first subscribed.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subscriptions.iter().map(|(filter, _)| filter.as_str())
    }

    /// Starts a connection at `now`: queues Connect, asking for the client
    /// id the broker assigned before if there was one. Anything left of a
    /// previous connection (unsent bytes, its state) is dropped; events not
    /// yet taken are kept.
    pub fn connect(&mut self, now: Instant) {
        self.reset();
        self.connection += 1;
        let will =
            self.will.as_ref().map(|w| Will { topic: &w.topic, payload: &w.payload, retain: w.retain, qos: w.qos });
        let options = ConnectOptions {
            persistent: self.persistent,
            session_expiry: self.session_expiry,
            will,
            credentials: &self.credentials.0,
        };
        options.encode(&self.client_id, &mut self.transmit);
        self.state = ConnectionState::Connecting;
        self.last_sent = now;
        self.last_received = now;
    }

    /// The connection is gone: forget its unsent bytes and its keep-alive
    /// state. Remembered filters, the client id and events not yet taken
    /// are kept for the next [`ClientSession::connect`].
    pub fn reset(&mut self) {
        self.state = ConnectionState::Idle;
        self.transmit.clear();
        self.transmitted = 0;
        self.unanswered_ping = None;
    }

    /// Queues a clean Disconnect; the broker drops the session's
    /// subscriptions (they stay remembered here). Flush, then close.
    pub fn disconnect(&mut self, now: Instant) {
        if matches!(self.state, ConnectionState::Connecting | ConnectionState::Connected) {
            self.queue(now, &Frame::empty(FrameType::Disconnect));
        }
        self.state = ConnectionState::Closed;
    }

    /// Queues a Publish of `payload` to `topic`, with RETAIN if `retain`.
    /// Fails on an invalid topic, an oversized payload, or when not
    /// connected (nothing may precede ConnAck); nothing is queued then.
    pub fn publish(&mut self, now: Instant, topic: &str, payload: &[u8], retain: bool) -> Result<(), ClientError> {
        TopicName::new(topic, &self.topic_limits)
            .map_err(|source| ClientError::InvalidTopic { topic: topic.to_owned(), source })?;
        if payload.len() > self.max_payload_len {
            return Err(ClientError::PayloadTooLarge { len: payload.len(), max: self.max_payload_len });
        }
        if !self.is_connected() {
            return Err(ClientError::NotConnected);
        }
        self.queue(now, &Frame::publish(topic, payload, "", retain));
        Ok(())
    }

    /// Queues a QoS 1 Publish of `payload` to `topic` and returns its
    /// packet id; [`ClientEvent::Published`] carries it back once the
    /// broker acknowledges. Sent now if connected, else after the next
    /// ConnAck. Fails on an invalid topic or one beginning with `$`, an
    /// oversized payload, or a full window ([`ClientError::WindowFull`]);
    /// nothing is queued then.
    pub fn publish_qos1(
        &mut self,
        now: Instant,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<u16, ClientError> {
        TopicName::new(topic, &self.topic_limits)
            .map_err(|source| ClientError::InvalidTopic { topic: topic.to_owned(), source })?;
        if topic.starts_with('$') {
            return Err(ClientError::BrokerTopic(topic.to_owned()));
        }
        if payload.len() > self.max_payload_len {
            return Err(ClientError::PayloadTooLarge { len: payload.len(), max: self.max_payload_len });
        }
        if self.outgoing.is_full() {
            return Err(ClientError::WindowFull(self.outgoing.len()));
        }
        let packet_id = self.outgoing.push(topic, payload, retain);
        if self.is_connected() {
            self.outgoing.send_last(&mut self.transmit);
            self.last_sent = now;
        }
        Ok(packet_id)
    }

    /// QoS 1 publishes not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.outgoing.len()
    }

    /// Subscribes to `filter` at QoS 0; see [`ClientSession::subscribe_qos`].
    pub fn subscribe(&mut self, now: Instant, filter: &str) -> Result<(), ClientError> {
        self.subscribe_qos(now, filter, Qos::AtMostOnce)
    }

    /// Subscribes to `filter`, at up to `qos`, on this and every later connection. When
    /// connected, queues Subscribe now (again, if the filter was already
    /// held: the broker then re-sends its retained values); otherwise the
    /// Subscribe goes out after the next ConnAck. The answer is a
    /// [`ClientEvent::SubAck`].
    pub fn subscribe_qos(&mut self, now: Instant, filter: &str, qos: Qos) -> Result<(), ClientError> {
        let filter = Filter::new(filter, &self.topic_limits)
            .map_err(|source| ClientError::InvalidTopic { topic: filter.to_owned(), source })?;
        if self.is_connected() {
            self.queue(now, &Frame { qos, ..Frame::with_topic(FrameType::Subscribe, filter.as_str()) });
        }
        match self.subscriptions.iter_mut().find(|(held, _)| *held == filter) {
            Some(held) => held.1 = qos,
            None => self.subscriptions.push((filter, qos)),
        }
        Ok(())
    }

    /// Stops holding `filter`. When connected, queues Unsubscribe (answered
    /// by a [`ClientEvent::UnsubAck`]); otherwise there is nothing to send,
    /// since a new connection starts with no subscriptions.
    pub fn unsubscribe(&mut self, now: Instant, filter: &str) -> Result<(), ClientError> {
        let filter = Filter::new(filter, &self.topic_limits)
            .map_err(|source| ClientError::InvalidTopic { topic: filter.to_owned(), source })?;
        self.subscriptions.retain(|(held, _)| *held != filter);
        if self.is_connected() {
            self.queue(now, &Frame::with_topic(FrameType::Unsubscribe, filter.as_str()));
        }
        Ok(())
    }

    /// Decodes every whole frame at the start of `input`, received at
    /// `now`, into events, and returns how many bytes it used. The rest is
    /// the start of a frame: keep it and call again with more bytes after
    /// it. Stops after a broker Disconnect.
    ///
    /// An error means the connection is unusable; events queued before it
    /// are still valid.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<usize, ClientError> {
        if !matches!(self.state, ConnectionState::Connecting | ConnectionState::Connected) {
            return Err(ClientError::NotConnected);
        }
        if !input.is_empty() {
            // Any byte shows the broker is alive, even part of a frame.
            self.last_received = now;
            self.unanswered_ping = None;
        }
        let mut used = 0;
        while self.state != ConnectionState::Closed {
            let (frame, consumed) = match self.decoder.decode(&input[used..]) {
                Ok(Decoded::Frame { frame, consumed }) => (frame, consumed),
                Ok(Decoded::Incomplete { .. }) => break,
                Err(error) => return Err(self.fail(ClientError::InvalidFrame(error))),
            };
            used += consumed;
            self.handle_frame(now, &frame)?;
        }
        Ok(used)
    }

    fn handle_frame(&mut self, now: Instant, frame: &Frame<'_>) -> Result<(), ClientError> {
        use ConnectionState::{Connected, Connecting};
        let unexpected = |kind, context| ClientError::UnexpectedFrame { kind, context };
        match (self.state, frame.kind) {
            (Connecting, FrameType::ConnAck) => {
                self.client_id = frame.client_id.to_owned();
                self.state = Connected;
                let session_present = frame.session;
                self.push_event(ClientEvent::Connected { client_id: self.client_id.clone(), session_present }, 0);
                for (filter, qos) in &self.subscriptions {
                    let qos = *qos;
                    Frame { qos, ..Frame::with_topic(FrameType::Subscribe, filter.as_str()) }
                        .encode(&mut self.transmit);
                }
                self.outgoing.send_all(&mut self.transmit);
                if !self.subscriptions.is_empty() || self.outgoing.len() > 0 {
                    self.last_sent = now;
                }
            }
            (Connecting | Connected, FrameType::Disconnect) => {
                self.state = ConnectionState::Closed;
                self.push_event(ClientEvent::Disconnected(Reason::from_payload(frame.payload)), 0);
            }
            (Connecting, kind) => return Err(self.fail(unexpected(kind, "before ConnAck"))),
            (Connected, FrameType::Publish) => {
                let message = ClientEvent::Message {
                    topic: frame.topic.to_owned(),
                    payload: frame.payload.to_vec(),
                    from: frame.client_id.to_owned(),
                    retained: frame.retain,
                    qos: frame.qos,
                    dup: frame.dup,
                };
                self.push_event(message, frame.packet_id);
            }
            (Connected, FrameType::PubAck) => {
                // An ack for an id not pending answers a resend: ignored.
                if self.outgoing.ack(frame.packet_id) {
                    self.push_event(ClientEvent::Published { packet_id: frame.packet_id }, 0);
                }
            }
            (Connected, FrameType::SubAck) => {
                let result = ack_result(frame.payload);
                if result.is_err() {
                    self.subscriptions.retain(|(held, _)| held.as_str() != frame.topic);
                }
                self.push_event(ClientEvent::SubAck { filter: frame.topic.to_owned(), result }, 0);
            }
            (Connected, FrameType::UnsubAck) => {
                let result = ack_result(frame.payload);
                self.push_event(ClientEvent::UnsubAck { filter: frame.topic.to_owned(), result }, 0);
            }
            // Pong only proves the broker alive, which any input did already.
            // A Ping from the broker is tolerated the same way.
            (Connected, FrameType::Pong | FrameType::Ping) => {}
            (Connected, FrameType::ConnAck) => return Err(self.fail(unexpected(FrameType::ConnAck, "twice"))),
            (Connected, kind) => return Err(self.fail(unexpected(kind, "which only clients send"))),
            (ConnectionState::Idle | ConnectionState::Closed, _) => return Err(ClientError::NotConnected),
        }
        Ok(())
    }

    fn push_event(&mut self, event: ClientEvent, packet_id: u16) {
        self.events.push_back(event);
        self.owed_acks.push_back((packet_id, self.connection));
    }

    /// The next event, oldest first. Taking a QoS 1 message queues its
    /// PubAck, if its connection is still the current one.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front()?;
        if let Some((packet_id, connection)) = self.owed_acks.pop_front()
            && packet_id != 0
            && connection == self.connection
            && self.is_connected()
        {
            Frame::pub_ack(packet_id).encode(&mut self.transmit);
        }
        Some(event)
    }

    /// Bytes to write to the socket, if any. Report what was written with
    /// [`ClientSession::advance_transmit`].
    #[must_use]
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        let pending = &self.transmit[self.transmitted..];
        (!pending.is_empty()).then_some(pending)
    }

    /// Marks the first `written` bytes of [`ClientSession::poll_transmit`]
    /// as sent.
    pub fn advance_transmit(&mut self, written: usize) {
        self.transmitted = (self.transmitted + written).min(self.transmit.len());
        if self.transmitted == self.transmit.len() {
            self.transmit.clear();
            self.transmitted = 0;
        }
    }

    /// When [`ClientSession::handle_timeout`] must next be called: None
    /// when not connected or when keep-alive is off.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ping = self.ping_due()?;
        Some(self.dead_at().map_or(ping, |dead| dead.min(ping)))
    }

    /// Sends Ping if the connection is idle; fails with
    /// [`ClientError::KeepAliveTimeout`] if the broker stopped answering,
    /// after which the connection is unusable. Feed all received input
    /// first, or a live broker may look dead.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.dead_at().is_some_and(|dead| now >= dead) {
            let silent_for = now.saturating_duration_since(self.last_received);
            return Err(self.fail(ClientError::KeepAliveTimeout { silent_for }));
        }
        if self.ping_due().is_some_and(|due| now >= due) {
            self.queue(now, &Frame::empty(FrameType::Ping));
            self.unanswered_ping.get_or_insert(now);
        }
        Ok(())
    }

    /// When the next Ping is due: after half the keep-alive of sending
    /// nothing, or of receiving nothing unless a Ping is already waiting
    /// for its answer.
    fn ping_due(&self) -> Option<Instant> {
        if self.state != ConnectionState::Connected || self.keep_alive.is_zero() {
            return None;
        }
        let half = self.keep_alive / 2;
        let send_idle = self.last_sent + half;
        Some(match self.unanswered_ping {
            Some(_) => send_idle,
            None => send_idle.min(self.last_received + half),
        })
    }

    /// When an unanswered Ping makes the broker count as dead: 1.5 × the
    /// keep-alive since the last byte received, and at least one keep-alive
    /// after the Ping (for a shell that called late).
    fn dead_at(&self) -> Option<Instant> {
        let ping = self.unanswered_ping?;
        (self.state == ConnectionState::Connected && !self.keep_alive.is_zero())
            .then(|| (self.last_received + self.keep_alive + self.keep_alive / 2).max(ping + self.keep_alive))
    }

    fn queue(&mut self, now: Instant, frame: &Frame<'_>) {
        frame.encode(&mut self.transmit);
        self.last_sent = now;
    }

    /// Closes the connection because of `error`, and returns it.
    fn fail(&mut self, error: ClientError) -> ClientError {
        self.state = ConnectionState::Closed;
        error
    }
}

/// The Connect payload, `user \0 password` or empty; kept out of `Debug`.
struct ConnectPayload(Vec<u8>);

impl fmt::Debug for ConnectPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "none" } else { "<credentials>" })
    }
}

fn ack_result(payload: &[u8]) -> Result<(), Reason> {
    if payload.is_empty() { Ok(()) } else { Err(Reason::from_payload(payload)) }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod qos_tests;
