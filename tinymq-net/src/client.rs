//! A blocking network client for the binary protocol, over TCP (plain or
//! TLS) and Unix sockets, with automatic reconnect and resubscribe.
//!
//! The manual is on [`Client`], since this module is private.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use tinymq_core::client::{ClientConfig, ClientError as SessionError, ClientEvent, ClientSession, Reason};
use tinymq_core::{FrameLimits, ReasonCode, TopicError};

use crate::ListenAddr;
use crate::tls::{ClientTls, TlsFailure, TlsStream};
use crate::transport::Stream;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Reads one call may make just to take what has already arrived, so that a
/// broker sending without pause cannot hold a publish forever.
const MAX_DRAIN_READS: usize = 64;
/// The least time a reconnect attempt gets, even from a call whose own time
/// is up (`recv_timeout(Duration::ZERO)`), so that polling calls reconnect too.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

/// Where the broker is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// TCP to `host:port`. A host name is resolved again on every attempt,
    /// and each of its addresses is tried in turn.
    Tcp(String),
    /// A Unix domain socket at this path.
    Unix(PathBuf),
}

impl Address {
    /// TCP to `host:port`.
    pub fn tcp(host_port: impl Into<String>) -> Self {
        Address::Tcp(host_port.into())
    }

    /// A Unix domain socket.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Address::Unix(path.into())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(address: SocketAddr) -> Self {
        Address::Tcp(address.to_string())
    }
}

/// The address of a binary-protocol listener, as a client reaches it; an
/// HTTP listener's address is refused (the client speaks the binary
/// protocol only). A TLS listener's is its TCP address: the client needs
/// [`ClientOptions::tls`] too.
impl TryFrom<ListenAddr> for Address {
    type Error = ListenAddr;

    fn try_from(address: ListenAddr) -> Result<Self, ListenAddr> {
        match address {
            ListenAddr::Tcp(address) | ListenAddr::Tls(address) => Ok(address.into()),
            ListenAddr::Unix(path) => Ok(Address::Unix(path)),
            http @ (ListenAddr::Http(_) | ListenAddr::Https(_)) => Err(http),
        }
    }
}

/// What went wrong, in the caller's terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker could not be reached, or the connection failed (closed,
    /// reset), and reconnecting is off or did not succeed in the time the
    /// call had.
    #[error("connection to the broker failed: {0}")]
    Io(#[from] io::Error),
    /// TLS failed: the broker's certificate is not trusted (or not for the
    /// host connected to), the broker does not speak TLS, or TLS cannot be
    /// used with the address (a Unix socket).
    #[error("{0}")]
    Tls(String),
    /// The broker refused the connection (bad credentials, peer not
    /// allowed), a subscription or an unsubscription. A refused connection
    /// ends the client.
    #[error("refused by the broker: {text} (code {code})")]
    Refused {
        /// The reason code (see [`ReasonCode`]).
        code: u8,
        /// The broker's text.
        text: String,
    },
    /// The broker ended the session: another connection took this client
    /// id (code 3), the client is no longer authorized (2), or, with
    /// reconnecting off, any other reason. This ends the client.
    #[error("the broker ended the session: {text} (code {code})")]
    SessionEnded {
        /// The reason code (see [`ReasonCode`]).
        code: u8,
        /// The broker's text.
        text: String,
    },
    /// No answer from the broker in time: no ConnAck, SubAck or UnsubAck,
    /// or no reply to Ping for this long.
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    /// A topic name or filter that is not valid; nothing was sent.
    #[error("invalid topic or filter {topic:?}: {source}")]
    InvalidTopic {
        /// The text given.
        topic: String,
        /// Why it is not valid.
        source: TopicError,
    },
    /// A payload over the frame limit; nothing was sent.
    #[error("payload of {len} bytes is over the limit of {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The options cannot work: a client id or credentials over the frame
    /// limits, a user name with a NUL byte.
    #[error("invalid client options: {0}")]
    InvalidOptions(#[source] SessionError),
    /// The broker sent something the protocol does not allow.
    #[error("the broker broke the protocol: {0}")]
    Protocol(#[source] SessionError),
    /// The connection was lost earlier (by a failure, not a broker
    /// Disconnect, whose reason later calls repeat) and reconnecting is
    /// off: make a new client.
    #[error("the client is closed: its connection was lost and reconnecting is off")]
    Closed,
}

impl ClientError {
    /// The broker's reason, for [`ClientError::Refused`] and
    /// [`ClientError::SessionEnded`], if it is a known code.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            ClientError::Refused { code, .. } | ClientError::SessionEnded { code, .. } => ReasonCode::from_u8(*code),
            _ => None,
        }
    }

    /// An error of the state machine, in the caller's terms.
    fn from_session(error: SessionError) -> Self {
        match error {
            SessionError::InvalidTopic { topic, source } => ClientError::InvalidTopic { topic, source },
            SessionError::PayloadTooLarge { len, max } => ClientError::PayloadTooLarge { len, max },
            SessionError::KeepAliveTimeout { silent_for } => ClientError::Timeout(silent_for),
            error @ (SessionError::ClientIdTooLong { .. } | SessionError::InvalidCredentials(_)) => {
                ClientError::InvalidOptions(error)
            }
            error => ClientError::Protocol(error),
        }
    }
}

/// A message received from a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The topic it was published to.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The publisher's client id (or HTTP `from`).
    pub from: String,
    /// Whether it is a stored value sent because of a new subscription,
    /// rather than live traffic.
    pub retained: bool,
}

/// How to connect: address, identity and the client's behaviour. Build with
/// [`ClientOptions::new`] and the setters, then [`ClientOptions::connect`].
/// Its `Debug` output leaves the password out.
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientOptions {
    address: Address,
    session: ClientConfig,
    reconnect: bool,
    backoff_first: Duration,
    backoff_max: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    inbox_limit: usize,
    tls: Option<ClientTls>,
}

impl ClientOptions {
    /// Options to reach the broker at `address`, with every default: an id
    /// assigned by the broker, no credentials, keep-alive 60 s, reconnect on
    /// with backoff from 100 ms doubling to 5 s, connect timeout 10 s,
    /// request timeout 30 s, 100,000 messages held.
    pub fn new(address: impl Into<Address>) -> Self {
        ClientOptions {
            address: address.into(),
            session: ClientConfig::default(),
            reconnect: true,
            backoff_first: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            inbox_limit: 100_000,
            tls: None,
        }
    }

    /// Speaks TLS to the broker (a TCP address only), checking its
    /// certificate as `tls` says, for the host part of the address.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The client id to ask for (default: empty, the broker assigns one,
    /// which is asked for again on reconnect).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.session.client_id = client_id.into();
        self
    }

    /// A user name and password to connect with.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.session.credentials = Some((username.into(), password.into()));
        self
    }

    /// The keep-alive interval (default 60 s): Ping after half of it with
    /// nothing sent or received; the connection counts as lost when 1.5 ×
    /// it passes with nothing received. Use the broker's value or less.
    /// Zero turns keep-alive off.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.session.keep_alive = keep_alive;
        self
    }

    /// Whether to reconnect (and resubscribe) when the connection is lost
    /// (default true).
    pub fn reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The wait before the second reconnect attempt, doubled after each
    /// failure up to `max` (default 100 ms and 5 s). The first attempt is
    /// immediate.
    pub fn reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff_first = first;
        self.backoff_max = max.max(first);
        self
    }

    /// How long one connection attempt may take, from the TCP connect to
    /// the broker's ConnAck, and how long a write may wait for the broker to
    /// read (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long [`Client::publish`], [`Client::subscribe`] and
    /// [`Client::unsubscribe`] may take, reconnecting included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Frame limits (default: the broker's defaults). Frames received over
    /// them end the connection; payloads, topics and ids over them are
    /// refused before sending.
    pub fn frame_limits(mut self, limits: FrameLimits) -> Self {
        self.session.frame_limits = limits;
        self
    }

    /// How many received messages the client holds for [`Client::recv`]
    /// (default 100,000). Messages arrive while any method runs; past the
    /// limit the oldest are dropped, counted in [`Client::dropped_messages`]
    /// and logged.
    pub fn inbox_limit(mut self, messages: usize) -> Self {
        self.inbox_limit = messages.max(1);
        self
    }

    /// Connects; see [`Client::connect`].
    pub fn connect(self) -> Result<Client, ClientError> {
        Client::connect(self)
    }
}

/// A blocking connection to a broker.
///
/// It only moves bytes: the protocol (frames, remembered
/// subscriptions, the assigned client id, keep-alive) is
/// [`tinymq_core::client::ClientSession`]. Every call runs on the caller's
/// thread; there is no background thread. Pings are sent from within the
/// calls, as the keep-alive needs them, so a client that sits idle for longer
/// than the broker's keep-alive without calling [`Client::recv`] (or any
/// other method) is disconnected by the broker, and reconnects on its next
/// call.
///
/// # Reconnecting
///
/// When the connection is lost (the socket fails or reaches its end, the
/// broker stops answering Pings, or it sends Disconnect for any reason but
/// "not authorized" (2) or "session taken over" (3)) and reconnecting is on,
/// the next call reconnects with a backoff that doubles up to a cap, asks
/// for the same client id, subscribes again to every filter, and goes on:
/// a publish is sent on the new connection, a subscribe waits for its SubAck
/// there. Reasons 2 and 3 are never retried: they end the client, and every
/// later call returns the same error. With reconnecting off, any lost
/// connection ends the client.
///
/// Delivery is at most once, as the protocol has no publish acknowledgement:
/// a publish that [`Client::publish`] wrote to the socket just before the
/// broker died is lost. What the client knows (a closed socket, a lost
/// connection) it does not drop: the publish is retried on the next
/// connection within [`ClientOptions::request_timeout`], or fails.
///
/// ```no_run
/// use std::time::Duration;
/// use tinymq_net::{Address, ClientOptions};
///
/// let mut client = ClientOptions::new(Address::tcp("localhost:1883")).client_id("thermostat").connect()?;
/// client.subscribe("sensors/+/temperature")?;
/// client.publish("thermostat/state", b"on", true)?;
/// while let Some(message) = client.recv_timeout(Duration::from_secs(1))? {
///     println!("{} from {}: {:?}", message.topic, message.from, message.payload);
/// }
/// client.disconnect()?;
/// # Ok::<(), tinymq_net::ClientError>(())
/// ```
///
/// All methods take `&mut self`: a client is used from one thread at a
/// time (it is `Send`). A program that publishes from one thread and
/// receives on another uses two clients.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    session: ClientSession,
    connection: Option<Connection>,
    /// Received bytes not yet decoded: at most one frame's worth plus a read.
    unread: Vec<u8>,
    inbox: VecDeque<ReceivedMessage>,
    dropped: u64,
    awaited_ack: Option<AwaitedAck>,
    backoff: Duration,
    next_attempt: Option<Instant>,
    /// Why the last connection or attempt failed, to report if reconnecting
    /// runs out of time.
    last_failure: Option<Lost>,
    /// Set when the client cannot go on; every call returns it.
    ended: Option<Ended>,
}

impl Client {
    /// Connects to the broker and waits for its ConnAck, for at most the
    /// connect timeout. One attempt: a broker that cannot be reached or
    /// refuses is an error here, not retried.
    pub fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let session = ClientSession::new(&options.session, Instant::now()).map_err(ClientError::from_session)?;
        let mut client = Client {
            backoff: options.backoff_first,
            options,
            session,
            connection: None,
            unread: Vec::new(),
            inbox: VecDeque::new(),
            dropped: 0,
            awaited_ack: None,
            next_attempt: None,
            last_failure: None,
            ended: None,
        };
        client.open(None).map_err(Lost::into_error)?;
        Ok(client)
    }

    /// The session's client id: the one asked for, or the one the broker
    /// assigned.
    pub fn client_id(&self) -> &str {
        self.session.client_id()
    }

    /// Whether the client holds an accepted connection right now (a lost
    /// connection is noticed during calls).
    pub fn is_connected(&self) -> bool {
        self.connection.is_some() && self.session.is_connected()
    }

    /// The filters subscribed to, in the order first subscribed; each is
    /// subscribed again on every new connection.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.session.subscriptions()
    }

    /// Messages dropped because the inbox was full
    /// (see [`ClientOptions::inbox_limit`]).
    pub fn dropped_messages(&self) -> u64 {
        self.dropped
    }

    /// Publishes `payload` to `topic`, stored as the topic's retained value
    /// when `retain` (an empty retained payload deletes it, and is
    /// delivered, empty, to the topic's subscribers). Returns once
    /// the frame is written to the socket. When disconnected, reconnects
    /// first, within the request timeout.
    pub fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), ClientError> {
        self.check_open()?;
        let deadline = Instant::now() + self.options.request_timeout;
        let mut tries = 0;
        loop {
            if tries > 0 && Instant::now() >= deadline {
                return Err(self.gave_up());
            }
            tries += 1;
            // The broker may have closed the connection since the last call:
            // notice it now rather than write into a dead socket.
            if let Err(lost) = self.take_arrived() {
                self.connection_lost(lost)?;
            }
            match self.session.publish(Instant::now(), topic, payload, retain) {
                Ok(()) => {}
                Err(SessionError::NotConnected) => {
                    if !self.reconnect(Some(deadline))? {
                        return Err(self.gave_up());
                    }
                    continue;
                }
                Err(error) => return Err(ClientError::from_session(error)),
            }
            match self.flush() {
                Ok(()) => return Ok(()),
                Err(lost) => self.connection_lost(lost)?,
            }
        }
    }

    /// Subscribes to `filter` and waits for the broker's SubAck, within the
    /// request timeout (reconnecting included). A refused filter is
    /// [`ClientError::Refused`] and is not kept. The filter is subscribed
    /// again on every new connection. Retained values matching it arrive
    /// through [`Client::recv`] with `retained` set.
    pub fn subscribe(&mut self, filter: &str) -> Result<(), ClientError> {
        self.check_open()?;
        if let Err(lost) = self.take_arrived() {
            self.connection_lost(lost)?;
        }
        self.session.subscribe(Instant::now(), filter).map_err(ClientError::from_session)?;
        // When disconnected the Subscribe goes out after the next ConnAck.
        self.await_ack(AckKind::Subscribe, filter)
    }

    /// Unsubscribes from `filter` and waits for the broker's UnsubAck,
    /// within the request timeout. When disconnected there is nothing to
    /// wait for: a new connection starts without it.
    pub fn unsubscribe(&mut self, filter: &str) -> Result<(), ClientError> {
        self.check_open()?;
        if let Err(lost) = self.take_arrived() {
            self.connection_lost(lost)?;
        }
        let connected = self.is_connected();
        self.session.unsubscribe(Instant::now(), filter).map_err(ClientError::from_session)?;
        if !connected {
            return Ok(());
        }
        self.await_ack(AckKind::Unsubscribe, filter)
    }

    /// Waits for the next message, for at most `timeout` (`Ok(None)` then).
    /// Sends Pings meanwhile and reconnects when the connection is lost;
    /// a reconnect that is still failing when the time is up is
    /// `Ok(None)` too (see [`Client::is_connected`]), unless reconnecting
    /// is off.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<ReceivedMessage>, ClientError> {
        let deadline = Instant::now().checked_add(timeout);
        self.recv_until(deadline)
    }

    /// Waits for the next message, however long it takes, reconnecting
    /// as often as needed.
    pub fn recv(&mut self) -> Result<ReceivedMessage, ClientError> {
        loop {
            if let Some(message) = self.recv_until(None)? {
                return Ok(message);
            }
        }
    }

    /// Sends Disconnect and closes the connection. The broker drops the
    /// session's subscriptions.
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        if self.connection.is_none() {
            return Ok(());
        }
        self.session.disconnect(Instant::now());
        let result = self.flush();
        if let Some(mut connection) = self.connection.take() {
            // Best effort: the socket closes when dropped anyway.
            let _ = connection.socket.shutdown();
        }
        result.map_err(Lost::into_error)
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Option<ReceivedMessage>, ClientError> {
        self.check_open()?;
        let mut waited = false;
        loop {
            if let Err(lost) = self.absorb_events() {
                self.connection_lost(lost)?;
            }
            if let Some(message) = self.inbox.pop_front() {
                return Ok(Some(message));
            }
            if self.connection.is_none() {
                if !self.reconnect(deadline)? {
                    return Ok(None);
                }
                continue;
            }
            if waited && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(None);
            }
            if let Err(lost) = self.step(deadline) {
                self.connection_lost(lost)?;
            }
            waited = true;
        }
    }

    /// Waits for the ack of `filter`, reconnecting as needed, within the
    /// request timeout.
    fn await_ack(&mut self, kind: AckKind, filter: &str) -> Result<(), ClientError> {
        self.awaited_ack = Some(AwaitedAck { kind, filter: filter.to_owned(), result: None });
        let result = self.await_ack_inner();
        self.awaited_ack = None;
        result
    }

    fn await_ack_inner(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            if let Err(lost) = self.absorb_events() {
                self.connection_lost(lost)?;
            }
            if let Some(result) = self.awaited_ack.as_mut().and_then(|ack| ack.result.take()) {
                return result.map_err(|Reason { code, text }| ClientError::Refused { code, text });
            }
            if self.connection.is_none() {
                if !self.reconnect(Some(deadline))? {
                    return Err(self.gave_up());
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(self.options.request_timeout));
            }
            if let Err(lost) = self.step(Some(deadline)) {
                self.connection_lost(lost)?;
            }
        }
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match &self.ended {
            None => Ok(()),
            Some(Ended::Refused(Reason { code, text })) => {
                Err(ClientError::Refused { code: *code, text: text.clone() })
            }
            Some(Ended::Terminated(Reason { code, text })) => {
                Err(ClientError::SessionEnded { code: *code, text: text.clone() })
            }
            Some(Ended::Closed) => Err(ClientError::Closed),
        }
    }

    /// One connection attempt: socket, Connect, and wait for ConnAck until
    /// the connect timeout or `deadline`, whichever is first (but at least
    /// [`MIN_ATTEMPT_TIME`]).
    fn open(&mut self, deadline: Option<Instant>) -> Result<(), Lost> {
        let result = self.try_open(deadline);
        if result.is_err() {
            self.drop_connection();
        }
        result
    }

    fn try_open(&mut self, deadline: Option<Instant>) -> Result<(), Lost> {
        let start = Instant::now();
        let mut until = start + self.options.connect_timeout;
        if let Some(deadline) = deadline {
            until = until.min(deadline.max(start + MIN_ATTEMPT_TIME));
        }
        self.drop_connection();
        let socket = connect(&self.options.address, self.options.tls.as_ref(), until)?;
        self.connection = Some(Connection::new(socket).map_err(Lost::Io)?);
        self.session.connect(Instant::now());
        loop {
            self.absorb_events()?;
            if self.connection.as_ref().is_some_and(|connection| connection.accepted) {
                log::debug!("connected to {} as {:?}", self.options.address, self.session.client_id());
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(Lost::NoConnAck(until - start));
            }
            self.step(Some(until))?;
        }
    }

    /// Reconnects, waiting out the backoff, until connected (`Ok(true)`)
    /// or `deadline` (`Ok(false)`; `None` waits for ever). Fails when the
    /// broker refuses in a way that is not retried.
    fn reconnect(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        loop {
            if let Some(at) = self.next_attempt {
                let now = Instant::now();
                if at > now {
                    let wake = deadline.map_or(at, |deadline| deadline.min(at));
                    std::thread::sleep(wake.saturating_duration_since(now));
                    if Instant::now() < at {
                        return Ok(false);
                    }
                }
            }
            match self.open(deadline) {
                Ok(()) => {
                    if self.last_failure.take().is_some() {
                        log::info!("reconnected to {} as {:?}", self.options.address, self.session.client_id());
                    }
                    self.backoff = self.options.backoff_first;
                    self.next_attempt = None;
                    return Ok(true);
                }
                Err(lost) if !lost.is_retried() => return Err(self.end(lost)),
                Err(lost) => {
                    log::debug!(
                        "reconnecting to {} failed: {lost}; next try in {:?}",
                        self.options.address,
                        self.backoff
                    );
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(self.options.backoff_max);
                    self.last_failure = Some(lost);
                }
            }
        }
    }

    /// The connection is gone: drop it, and decide whether the client can
    /// go on (`Ok`: reconnect on the next need) or not.
    fn connection_lost(&mut self, lost: Lost) -> Result<(), ClientError> {
        self.drop_connection();
        if let Some(ack) = &mut self.awaited_ack {
            // A new connection starts without the filter: unsubscribed.
            if ack.kind == AckKind::Unsubscribe && ack.result.is_none() {
                ack.result = Some(Ok(()));
            }
        }
        if !lost.is_retried() || !self.options.reconnect {
            return Err(self.end(lost));
        }
        log::warn!("connection to {} lost: {lost}; reconnecting", self.options.address);
        self.last_failure = Some(lost);
        Ok(())
    }

    /// Ends the client because of `lost`, and returns the error to report.
    fn end(&mut self, lost: Lost) -> ClientError {
        log::warn!("connection to {} ended: {lost}", self.options.address);
        let error = lost.into_error();
        self.ended = Some(match &error {
            ClientError::Refused { code, text } => Ended::Refused(Reason { code: *code, text: text.clone() }),
            ClientError::SessionEnded { code, text } => Ended::Terminated(Reason { code: *code, text: text.clone() }),
            _ => Ended::Closed,
        });
        error
    }

    /// The error for a call whose time ran out while disconnected.
    fn gave_up(&mut self) -> ClientError {
        self.last_failure.take().map_or(ClientError::Timeout(self.options.request_timeout), Lost::into_error)
    }

    fn drop_connection(&mut self) {
        self.connection = None;
        self.session.reset();
        self.unread.clear();
    }

    /// Takes what the broker already sent, without waiting, and handles
    /// what is due.
    fn take_arrived(&mut self) -> Result<(), Lost> {
        if self.connection.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        for _ in 0..MAX_DRAIN_READS {
            self.absorb_events()?;
            if !self.step(Some(now))? {
                break;
            }
        }
        self.absorb_events()
    }

    /// One turn: write what is queued, wait for input until `until` or the
    /// keep-alive timer, decode it, handle the timer, write again. Returns
    /// whether anything was read.
    fn step(&mut self, until: Option<Instant>) -> Result<bool, Lost> {
        self.flush()?;
        let Some(connection) = self.connection.as_mut() else {
            return Ok(false);
        };
        let wake = match (until, self.session.poll_timeout()) {
            (Some(until), Some(timer)) => Some(until.min(timer)),
            (until, timer) => until.or(timer),
        };
        let read = match connection.read_into(&mut self.unread, wake).map_err(Lost::Io)? {
            Some(0) => return Err(Lost::Eof),
            Some(_) => true,
            None => false,
        };
        let now = Instant::now();
        // After a broker Disconnect the rest is not read; its event is pending.
        if read && self.session.state() != tinymq_core::client::ConnectionState::Closed {
            let used = self.session.handle_input(now, &self.unread).map_err(Lost::Session)?;
            self.unread.drain(..used);
        }
        if self.session.poll_timeout().is_some_and(|timer| now >= timer) {
            self.session.handle_timeout(now).map_err(Lost::Session)?;
        }
        self.flush()?;
        Ok(read)
    }

    fn flush(&mut self) -> Result<(), Lost> {
        match self.connection.as_mut() {
            Some(connection) => {
                let until = Instant::now() + self.options.connect_timeout;
                connection.flush(&mut self.session, until).map_err(Lost::Io)
            }
            None => Ok(()),
        }
    }

    /// Moves the state machine's events where the calls look for them, up
    /// to and including a ConnAck.
    fn absorb_events(&mut self) -> Result<(), Lost> {
        while let Some(event) = self.session.poll_event() {
            match event {
                ClientEvent::Connected { .. } => {
                    if let Some(connection) = &mut self.connection {
                        connection.accepted = true;
                    }
                    // Let a connecting caller see the ConnAck before whatever follows it.
                    return Ok(());
                }
                ClientEvent::Message { topic, payload, from, retained } => {
                    if self.inbox.len() >= self.options.inbox_limit {
                        self.inbox.pop_front();
                        self.dropped += 1;
                        if self.dropped.is_power_of_two() {
                            log::warn!(
                                "inbox full ({} messages): {} dropped so far, oldest first",
                                self.options.inbox_limit,
                                self.dropped
                            );
                        }
                    }
                    self.inbox.push_back(ReceivedMessage { topic, payload, from, retained });
                }
                ClientEvent::SubAck { filter, result } => self.acked(AckKind::Subscribe, filter, result),
                ClientEvent::UnsubAck { filter, result } => self.acked(AckKind::Unsubscribe, filter, result),
                ClientEvent::Disconnected(reason) => {
                    let accepted = self.connection.as_ref().is_some_and(|connection| connection.accepted);
                    return Err(Lost::Broker { reason, accepted });
                }
            }
        }
        Ok(())
    }

    fn acked(&mut self, kind: AckKind, filter: String, result: Result<(), Reason>) {
        match &mut self.awaited_ack {
            Some(ack) if ack.kind == kind && ack.filter == filter && ack.result.is_none() => ack.result = Some(result),
            // A resubscription after a reconnect; it is forgotten if refused.
            _ => match result {
                Ok(()) => log::debug!("{kind} {filter:?} accepted"),
                Err(reason) => log::warn!("{kind} {filter:?} refused by the broker: {reason}"),
            },
        }
    }
}

/// Why a connection, or an attempt at one, ended.
#[derive(Debug)]
enum Lost {
    Io(io::Error),
    /// TLS cannot be set up for the address.
    Tls(String),
    Eof,
    /// The broker sent Disconnect; `accepted` if it had sent ConnAck.
    Broker {
        reason: Reason,
        accepted: bool,
    },
    /// The state machine gave up: the broker broke the protocol or stopped
    /// answering.
    Session(SessionError),
    NoConnAck(Duration),
}

impl Lost {
    /// Whether reconnecting may help: not when the broker refuses this
    /// client's credentials or another connection took its id.
    fn is_retried(&self) -> bool {
        match self {
            Lost::Broker { reason, .. } => {
                !matches!(reason.reason_code(), Some(ReasonCode::NotAuthorized | ReasonCode::SessionTakenOver))
            }
            Lost::Tls(_) => false,
            _ => true,
        }
    }

    fn into_error(self) -> ClientError {
        match self {
            Lost::Io(error) => match TlsFailure::of(&error) {
                Some(failure) => ClientError::Tls(failure.to_string()),
                None => ClientError::Io(error),
            },
            Lost::Tls(text) => ClientError::Tls(text),
            Lost::Eof => {
                ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the broker closed the connection"))
            }
            Lost::Broker { reason: Reason { code, text }, accepted: false } => ClientError::Refused { code, text },
            Lost::Broker { reason: Reason { code, text }, accepted: true } => ClientError::SessionEnded { code, text },
            Lost::Session(error) => ClientError::from_session(error),
            Lost::NoConnAck(waited) => ClientError::Timeout(waited),
        }
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Io(error) => write!(f, "{error}"),
            Lost::Tls(text) => write!(f, "{text}"),
            Lost::Eof => f.write_str("the broker closed the connection"),
            Lost::Broker { reason, .. } => write!(f, "the broker sent Disconnect: {reason}"),
            Lost::Session(error) => write!(f, "{error}"),
            Lost::NoConnAck(waited) => write!(f, "no ConnAck within {waited:?}"),
        }
    }
}

/// Why the client cannot go on.
#[derive(Debug)]
enum Ended {
    Refused(Reason),
    Terminated(Reason),
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckKind {
    Subscribe,
    Unsubscribe,
}

impl fmt::Display for AckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckKind::Subscribe => "subscription to",
            AckKind::Unsubscribe => "unsubscription from",
        })
    }
}

/// The ack a call waits for, and its result once it came.
#[derive(Debug)]
struct AwaitedAck {
    kind: AckKind,
    filter: String,
    result: Option<Result<(), Reason>>,
}

/// A connected socket, non-blocking, with the poll that waits on it.
#[derive(Debug)]
struct Connection {
    socket: Stream,
    poll: Poll,
    events: Events,
    /// Scratch space for TLS records before decryption.
    cipher: Vec<u8>,
    /// Whether ConnAck came on it.
    accepted: bool,
}

impl Connection {
    fn new(mut socket: Stream) -> io::Result<Self> {
        let poll = Poll::new()?;
        socket.register(poll.registry(), Token(0), Interest::READABLE | Interest::WRITABLE)?;
        Ok(Connection { socket, poll, events: Events::with_capacity(4), cipher: Vec::new(), accepted: false })
    }

    /// Appends what the socket has to `buf`, waiting for it until `until`
    /// (`None`: for ever). `Ok(None)` when the time is up first, `Ok(Some(0))`
    /// at the end of the stream.
    fn read_into(&mut self, buf: &mut Vec<u8>, until: Option<Instant>) -> io::Result<Option<usize>> {
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let result = loop {
            match self.socket.read(&mut buf[start..], &mut self.cipher) {
                Ok(read) => break Ok(Some(read)),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => match self.wait(until) {
                    Ok(true) => {}
                    Ok(false) => break Ok(None),
                    Err(error) => break Err(error),
                },
                Err(error) => break Err(error),
            }
        };
        buf.truncate(start + result.as_ref().map_or(0, |read| read.unwrap_or(0)));
        result
    }

    /// Writes everything `session` has queued, waiting for the socket until
    /// `until`.
    fn flush(&mut self, session: &mut ClientSession, until: Instant) -> io::Result<()> {
        while let Some(bytes) = session.poll_transmit() {
            match self.socket.write_vectored(&[IoSlice::new(bytes)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => session.advance_transmit(written),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(Some(until))? {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the broker stopped reading"));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        // TLS records the socket has not taken yet.
        while self.socket.wants_write() {
            match self.socket.send_pending() {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(Some(until))? {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the broker stopped reading"));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Waits for the socket to become ready, until `until`. `Ok(false)`
    /// when the time is up. Readiness is edge-triggered: callers try the
    /// operation before waiting, and again after any wake.
    fn wait(&mut self, until: Option<Instant>) -> io::Result<bool> {
        let timeout = match until {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(false),
            },
            None => None,
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error) => Err(error),
        }
    }
}

/// Connects to `address`, blocking until `until` at most (name
/// resolution excepted), then makes the stream non-blocking. The TLS
/// handshake, if any, is left to the first reads and writes.
fn connect(address: &Address, tls: Option<&ClientTls>, until: Instant) -> Result<Stream, Lost> {
    match (address, tls) {
        (Address::Tcp(host_port), None) => Ok(Stream::Tcp(connect_tcp(host_port, until).map_err(Lost::Io)?)),
        (Address::Tcp(host_port), Some(tls)) => {
            let name = crate::tls::server_name(host_port).map_err(|e| Lost::Tls(format!("TLS: {e}")))?;
            let stream = connect_tcp(host_port, until).map_err(Lost::Io)?;
            Ok(Stream::Tls(Box::new(TlsStream::client(stream, tls, name).map_err(Lost::Io)?)))
        }
        (Address::Unix(path), None) => {
            let stream = std::os::unix::net::UnixStream::connect(path).map_err(Lost::Io)?;
            stream.set_nonblocking(true).map_err(Lost::Io)?;
            Ok(Stream::Unix(UnixStream::from_std(stream)))
        }
        (Address::Unix(_), Some(_)) => Err(Lost::Tls("TLS needs a TCP address, not a Unix socket".into())),
    }
}

fn connect_tcp(host_port: &str, until: Instant) -> io::Result<TcpStream> {
    let mut last_error = None;
    for address in host_port.to_socket_addrs()? {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        match std::net::TcpStream::connect_timeout(&address, left) {
            Ok(stream) => {
                // Frames are written whole; do not wait to coalesce them.
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                return Ok(TcpStream::from_std(stream));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host_port} resolves to no address"))))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread;

    use tinymq_core::codec::reason_payload;
    use tinymq_core::{Decoded, Decoder, Frame, FrameType};

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    /// A frame the fake broker received, owned.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Received {
        kind: FrameType,
        retain: bool,
        topic: String,
        payload: Vec<u8>,
        client_id: String,
    }

    /// The fake broker's end of one connection: frames in and out with the
    /// codec, over a blocking stream.
    struct Peer<S> {
        stream: S,
        unread: Vec<u8>,
    }

    impl<S: Read + Write> Peer<S> {
        fn new(stream: S) -> Self {
            Peer { stream, unread: Vec::new() }
        }

        /// The next frame, or `None` at the end of the stream.
        fn next(&mut self) -> Option<Received> {
            loop {
                if let Decoded::Frame { frame, consumed } = Decoder::default().decode(&self.unread).unwrap() {
                    let received = Received {
                        kind: frame.kind,
                        retain: frame.retain,
                        topic: frame.topic.into(),
                        payload: frame.payload.into(),
                        client_id: frame.client_id.into(),
                    };
                    self.unread.drain(..consumed);
                    return Some(received);
                }
                let mut buf = [0; 4096];
                match self.stream.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(read) => self.unread.extend_from_slice(&buf[..read]),
                }
            }
        }

        fn expect(&mut self, kind: FrameType) -> Received {
            let frame = self.next().unwrap_or_else(|| panic!("connection closed while waiting for {kind:?}"));
            assert_eq!(frame.kind, kind, "{frame:?}");
            frame
        }

        fn send(&mut self, frame: Frame<'_>) {
            self.stream.write_all(&frame.to_vec()).unwrap();
        }

        /// Reads Connect and accepts it under `client_id`; returns the Connect.
        fn accept(&mut self, client_id: &str) -> Received {
            let connect = self.expect(FrameType::Connect);
            self.send(Frame { client_id, ..Frame::empty(FrameType::ConnAck) });
            connect
        }

        /// Reads Subscribe for `filter` and accepts it.
        fn accept_subscribe(&mut self, filter: &str) {
            assert_eq!(self.expect(FrameType::Subscribe).topic, filter);
            self.send(Frame::with_topic(FrameType::SubAck, filter));
        }

        fn disconnect(&mut self, code: ReasonCode) {
            let payload = reason_payload(code, code.text());
            self.send(Frame { payload: &payload, ..Frame::empty(FrameType::Disconnect) });
        }
    }

    fn tcp_peer(listener: &TcpListener) -> Peer<std::net::TcpStream> {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Peer::new(stream)
    }

    /// A TCP fake broker running `script` on its listener in a thread.
    fn fake_broker(script: impl FnOnce(TcpListener) + Send + 'static) -> (Address, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = Address::from(listener.local_addr().unwrap());
        (address, thread::spawn(move || script(listener)))
    }

    fn fast(address: Address) -> ClientOptions {
        ClientOptions::new(address)
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
            .connect_timeout(WAIT)
            .request_timeout(WAIT)
    }

    fn message(topic: &str, payload: &[u8], from: &str, retained: bool) -> ReceivedMessage {
        ReceivedMessage { topic: topic.into(), payload: payload.into(), from: from.into(), retained }
    }

    #[test]
    fn reconnects_and_resubscribes_after_the_broker_closes_the_socket() {
        let (address, broker) = fake_broker(|listener| {
            let mut first = tcp_peer(&listener);
            assert_eq!(first.accept("fake-1").client_id, "", "the first Connect asks for an id");
            first.accept_subscribe("sensors/#");
            first.send(Frame::publish("sensors/a", b"1", "other", false));
            drop(first);

            let mut second = tcp_peer(&listener);
            assert_eq!(second.accept("fake-1").client_id, "fake-1", "the reconnect asks for the assigned id");
            second.accept_subscribe("sensors/#");
            second.send(Frame::publish("sensors/b", b"2", "other", true));
            let publish = second.expect(FrameType::Publish);
            assert_eq!((publish.topic.as_str(), &publish.payload[..], publish.retain), ("out", &b"after"[..], true));
            second.expect(FrameType::Disconnect);
            assert_eq!(second.next(), None);
        });

        let mut client = fast(address).connect().unwrap();
        assert_eq!(client.client_id(), "fake-1");
        client.subscribe("sensors/#").unwrap();
        assert_eq!(client.recv_timeout(WAIT).unwrap(), Some(message("sensors/a", b"1", "other", false)));
        // The socket closes here; the client reconnects within recv.
        assert_eq!(client.recv_timeout(WAIT).unwrap(), Some(message("sensors/b", b"2", "other", true)));
        assert!(client.is_connected());
        assert_eq!(client.subscriptions().collect::<Vec<_>>(), ["sensors/#"]);
        client.publish("out", b"after", true).unwrap();
        client.disconnect().unwrap();
        broker.join().unwrap();
    }

    #[test]
    fn a_publish_after_the_broker_left_goes_out_on_the_next_connection() {
        let (closed_tx, closed_rx) = mpsc::channel();
        let (address, broker) = fake_broker(move |listener| {
            let mut first = tcp_peer(&listener);
            first.accept("c");
            drop(first);
            closed_tx.send(()).unwrap();
            let mut second = tcp_peer(&listener);
            second.accept("c");
            let publish = second.expect(FrameType::Publish);
            assert_eq!((publish.topic.as_str(), &publish.payload[..]), ("a/b", &b"kept"[..]));
        });
        let mut client = fast(address).client_id("c").connect().unwrap();
        closed_rx.recv().unwrap();
        thread::sleep(Duration::from_millis(50));
        client.publish("a/b", b"kept", false).unwrap();
        broker.join().unwrap();
    }

    #[test]
    fn a_publish_fails_when_the_broker_stays_away() {
        let (address, broker) = fake_broker(|listener| {
            tcp_peer(&listener).accept("c");
            // Both the connection and the listener go away.
        });
        let options = fast(address).client_id("c").request_timeout(Duration::from_millis(300));
        let mut client = options.connect().unwrap();
        broker.join().unwrap();
        let started = Instant::now();
        let error = client.publish("a", b"x", false).unwrap_err();
        assert!(matches!(error, ClientError::Io(_)), "{error}");
        assert!(started.elapsed() < WAIT);
        assert!(!client.is_connected());
        // Invalid input is refused at once, connected or not.
        assert!(matches!(client.publish("a/#", b"x", false), Err(ClientError::InvalidTopic { .. })));
    }

    #[test]
    fn keep_alive_pings_and_replaces_a_silent_broker() {
        let (address, broker) = fake_broker(|listener| {
            let mut silent = tcp_peer(&listener);
            silent.accept("c");
            // Pings go unanswered until the client gives up on this connection.
            let mut pings = 0;
            while let Some(frame) = silent.next() {
                assert_eq!(frame.kind, FrameType::Ping);
                pings += 1;
            }
            assert!(pings >= 1);

            let mut live = tcp_peer(&listener);
            live.accept("c");
            live.expect(FrameType::Ping);
            live.send(Frame::empty(FrameType::Pong));
            live.send(Frame::publish("t", b"alive", "x", false));
            live.expect(FrameType::Disconnect);
        });
        let options = fast(address).client_id("c").keep_alive(Duration::from_millis(200));
        let mut client = options.connect().unwrap();
        let started = Instant::now();
        assert_eq!(client.recv_timeout(WAIT).unwrap(), Some(message("t", b"alive", "x", false)));
        // Declared dead after 1.5 × keep-alive of silence, then a Ping after half of it.
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
        client.disconnect().unwrap();
        broker.join().unwrap();
    }

    #[test]
    fn a_refused_connect_is_an_error() {
        let (address, broker) = fake_broker(|listener| {
            let mut peer = tcp_peer(&listener);
            let connect = peer.expect(FrameType::Connect);
            assert_eq!(connect.payload, b"user\0wrong");
            peer.disconnect(ReasonCode::NotAuthorized);
        });
        let error = fast(address).credentials("user", "wrong").connect().unwrap_err();
        assert!(matches!(&error, ClientError::Refused { code: 2, text } if text == "not authorized"), "{error}");
        assert_eq!(error.reason_code(), Some(ReasonCode::NotAuthorized));
        broker.join().unwrap();
    }

    #[test]
    fn connect_times_out_without_conn_ack() {
        let (address, broker) = fake_broker(|listener| {
            let mut peer = tcp_peer(&listener);
            peer.expect(FrameType::Connect);
            assert_eq!(peer.next(), None);
        });
        let error = fast(address).connect_timeout(Duration::from_millis(200)).connect().unwrap_err();
        assert!(matches!(error, ClientError::Timeout(_)), "{error}");
        broker.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_an_io_error() {
        let address = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let error = ClientOptions::new(address).connect().unwrap_err();
        assert!(matches!(&error, ClientError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused), "{error}");
    }

    #[test]
    fn a_broker_shutting_down_is_retried_but_a_takeover_is_not() {
        let (address, broker) = fake_broker(|listener| {
            let mut first = tcp_peer(&listener);
            first.accept("c");
            first.disconnect(ReasonCode::ShuttingDown);
            drop(first);
            let mut second = tcp_peer(&listener);
            second.accept("c");
            second.disconnect(ReasonCode::SessionTakenOver);
            drop(second);
            // No third connection comes.
            listener.set_nonblocking(true).unwrap();
            thread::sleep(Duration::from_millis(300));
            assert_eq!(listener.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        });
        let mut client = fast(address).client_id("c").connect().unwrap();
        let error = client.recv_timeout(WAIT).unwrap_err();
        assert!(matches!(&error, ClientError::SessionEnded { code: 3, text } if text == "session taken over"));
        // The client is over: every call says why.
        let again = client.publish("a", b"x", false).unwrap_err();
        assert_eq!(again.reason_code(), Some(ReasonCode::SessionTakenOver));
        assert!(matches!(client.recv_timeout(WAIT), Err(ClientError::SessionEnded { code: 3, .. })));
        broker.join().unwrap();
    }

    #[test]
    fn without_reconnect_a_lost_connection_ends_the_client() {
        let (address, broker) = fake_broker(|listener| {
            let mut peer = tcp_peer(&listener);
            peer.accept("c");
            peer.disconnect(ReasonCode::ShuttingDown);
        });
        let mut client = fast(address).client_id("c").reconnect(false).connect().unwrap();
        let error = client.recv_timeout(WAIT).unwrap_err();
        assert!(matches!(error, ClientError::SessionEnded { code: 6, .. }), "{error}");
        // Later calls give the broker's reason again.
        let again = client.publish("a", b"x", false).unwrap_err();
        assert_eq!(again.reason_code(), Some(ReasonCode::ShuttingDown));
        broker.join().unwrap();

        let (address, broker) = fake_broker(|listener| {
            tcp_peer(&listener).accept("c");
        });
        let mut client = fast(address).client_id("c").reconnect(false).connect().unwrap();
        broker.join().unwrap();
        let error = client.recv_timeout(WAIT).unwrap_err();
        assert!(matches!(&error, ClientError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof), "{error}");
        assert!(matches!(client.subscribe("a"), Err(ClientError::Closed)));
    }

    #[test]
    fn works_over_a_unix_socket_with_refusals_and_retained_values() {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tinymq-client-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let broker = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut peer = Peer::new(stream);
            peer.accept("unix-1");
            let refused = peer.expect(FrameType::Subscribe);
            let payload = reason_payload(ReasonCode::NotAuthorized, "no access to private/#");
            peer.send(Frame { payload: &payload, ..Frame::with_topic(FrameType::SubAck, &refused.topic) });
            peer.accept_subscribe("lamp/+");
            peer.send(Frame::publish("lamp/kitchen", b"on", "switch", true));
            assert_eq!(peer.expect(FrameType::Unsubscribe).topic, "lamp/+");
            peer.send(Frame::with_topic(FrameType::UnsubAck, "lamp/+"));
            let publish = peer.expect(FrameType::Publish);
            assert_eq!((publish.topic.as_str(), &publish.payload[..]), ("lamp/kitchen", &b"off"[..]));
            peer.expect(FrameType::Disconnect);
        });

        let mut client = fast(Address::unix(&path)).connect().unwrap();
        assert_eq!(client.client_id(), "unix-1");
        let error = client.subscribe("private/#").unwrap_err();
        assert!(matches!(&error, ClientError::Refused { code: 2, text } if text == "no access to private/#"));
        assert_eq!(client.subscriptions().count(), 0);
        client.subscribe("lamp/+").unwrap();
        assert_eq!(client.recv().unwrap(), message("lamp/kitchen", b"on", "switch", true));
        client.unsubscribe("lamp/+").unwrap();
        assert_eq!(client.subscriptions().count(), 0);
        client.publish("lamp/kitchen", b"off", false).unwrap();
        assert_eq!(client.recv_timeout(Duration::ZERO).unwrap(), None);
        client.disconnect().unwrap();
        broker.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn talks_to_the_real_broker() {
        let broker = crate::Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(2).start().unwrap();
        let address = Address::from(broker.tcp_addr().unwrap());
        let mut publisher = fast(address.clone()).client_id("pub").connect().unwrap();
        publisher.publish("lamp/kitchen", b"on", true).unwrap();
        let mut subscriber = fast(address.clone()).connect().unwrap();
        let assigned = subscriber.client_id().to_owned();
        assert!(!assigned.is_empty());
        subscriber.subscribe("lamp/+").unwrap();
        assert_eq!(subscriber.recv_timeout(WAIT).unwrap(), Some(message("lamp/kitchen", b"on", "pub", true)));
        publisher.publish("lamp/hall", b"off", false).unwrap();
        assert_eq!(subscriber.recv_timeout(WAIT).unwrap(), Some(message("lamp/hall", b"off", "pub", false)));
        assert!(matches!(subscriber.subscribe("lamp/#/x"), Err(ClientError::InvalidTopic { .. })));

        // Another connection takes the subscriber's id over: not retried.
        let thief = fast(address).client_id(assigned).connect().unwrap();
        let error = subscriber.recv_timeout(WAIT).unwrap_err();
        assert_eq!(error.reason_code(), Some(ReasonCode::SessionTakenOver), "{error}");
        thief.disconnect().unwrap();
        publisher.disconnect().unwrap();
        broker.shutdown();
    }

    #[test]
    fn a_client_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Client>();
    }

    #[test]
    fn address_forms() {
        assert_eq!(Address::tcp("localhost:1883").to_string(), "tcp://localhost:1883");
        assert_eq!(Address::unix("/run/tinymq.sock").to_string(), "unix:///run/tinymq.sock");
        let socket: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(Address::try_from(ListenAddr::Tcp(socket)), Ok(Address::tcp("127.0.0.1:9")));
        assert_eq!(Address::try_from(ListenAddr::Unix("/a".into())), Ok(Address::unix("/a")));
        assert_eq!(Address::try_from(ListenAddr::Http(socket)), Err(ListenAddr::Http(socket)));
    }

    #[test]
    fn options_leave_the_password_out_of_debug() {
        let options = ClientOptions::new(Address::tcp("h:1")).credentials("user", "hunter2");
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
