//! [`NatsClient`]: the client side of the NATS protocol, sans-IO.
//!
//! It owns what outlives a connection (the server list, the subscriptions,
//! the reconnect backoff) and what belongs to the current one (its state,
//! unparsed bytes, the outbound queue, keep-alive). The shell owns the
//! socket and the clock; see the calling order in [`super`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{self, ClientOp, Msg, ParseError, ParseLimits, Parsed, ServerOp, SubjectError};
use super::headers::Headers;
use super::info::{ConnectOptions, InfoError, MAX_CONNECT_URLS, ServerInfo};
use super::payload::Payload;
use crate::outbound::Outbound;
use crate::reconnect::{self, Reconnect};

/// Settings of a [`NatsClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// Servers to connect to, `host:port` (a `nats://` in front is
    /// dropped). INFO's `connect_urls` are added after them.
    pub servers: Vec<String>,
    /// What CONNECT says.
    pub connect: ConnectOptions,
    /// Upgrade every connection to TLS after INFO, as NATS does: the shell
    /// starts the TLS handshake when [`NatsClient::wants_tls`] says so and
    /// calls [`NatsClient::handle_tls_started`] (default off).
    pub tls: bool,
    /// PING goes out this often on an established connection (default 20 s).
    pub ping_interval: Duration,
    /// The connection is stale when this many PINGs are unanswered at the
    /// next interval (default 2, as NATS clients do).
    pub max_pings_out: u32,
    /// Longest time from dialing to the server's PONG after CONNECT
    /// (default 5 s).
    pub handshake_timeout: Duration,
    /// First reconnect delay; it doubles with every failed attempt
    /// (default 100 ms).
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay (default 5 s).
    pub reconnect_max: Duration,
    /// Bytes the outbound queue holds before publishes are refused
    /// (default 8 MiB).
    pub max_outbound: usize,
    /// Events held before new ones are dropped and counted as a slow
    /// consumer (default 65536).
    pub max_pending_events: usize,
    /// Limits on what is received. `max_payload` is a cap: the server's
    /// INFO can only lower it.
    pub limits: ParseLimits,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["127.0.0.1:4222".into()],
            connect: ConnectOptions::default(),
            tls: false,
            ping_interval: Duration::from_secs(20),
            max_pings_out: 2,
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_outbound: 8 << 20,
            max_pending_events: 1 << 16,
            limits: ParseLimits::default(),
        }
    }
}

/// A subscription id: ours, unique for the life of the client, and the
/// same across reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sid(pub u64);

/// A message received on a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsMessage {
    /// The subscription it came for.
    pub sid: Sid,
    /// The subject it was published to. Shared with the message before it
    /// when they have the same (a stream on one subject allocates it once).
    pub subject: Arc<str>,
    /// The reply subject, if any.
    pub reply: Option<String>,
    /// Its headers (empty for `MSG`). Shared: a stream of messages with
    /// the same header block (a bridge's origin) is parsed once.
    pub headers: Arc<Headers>,
    /// Its payload: a range of the chunk it was read in, when that was
    /// handed over with [`NatsClient::handle_shared_input`] (no copy, no
    /// allocation), else a copy.
    pub payload: Payload,
}

/// What a `-ERR` is about, from its text (the server's wording).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// `Authorization Violation`: bad or missing credentials; the server
    /// closes the connection.
    AuthorizationViolation,
    /// `Authentication Timeout` or `... Authentication Expired`.
    AuthenticationExpired,
    /// `Permissions Violation for Publish/Subscription to ...`: this one
    /// operation was refused; the connection stays.
    PermissionsViolation,
    /// `Stale Connection`: the server got no PONG from us.
    StaleConnection,
    /// `Slow Consumer`: we did not read fast enough.
    SlowConsumer,
    /// `Maximum Payload Violation`.
    MaxPayload,
    /// `maximum connections exceeded` (server or account).
    MaxConnections,
    /// Anything else.
    Other,
}

impl ServerErrorKind {
    /// Classifies a `-ERR` text.
    pub fn of(text: &str) -> Self {
        let text = text.to_ascii_lowercase();
        let kinds = [
            ("authorization violation", Self::AuthorizationViolation),
            ("authentication", Self::AuthenticationExpired),
            ("permissions violation", Self::PermissionsViolation),
            ("stale connection", Self::StaleConnection),
            ("slow consumer", Self::SlowConsumer),
            ("maximum payload", Self::MaxPayload),
            ("maximum connections", Self::MaxConnections),
        ];
        kinds.iter().find(|(words, _)| text.contains(words)).map_or(Self::Other, |&(_, kind)| kind)
    }
}

/// What the client tells its owner. Take them with [`NatsClient::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsEvent {
    /// The server answered CONNECT's PING: the connection is usable, and
    /// every subscription was sent again.
    Connected {
        /// The address dialed.
        server: String,
        /// The server's INFO (boxed, as in `Info`: events are moved
        /// through a queue, one per message, so the rare ones stay small).
        info: Box<ServerInfo>,
    },
    /// A later INFO: the cluster changed (new `connect_urls`, already merged
    /// into the server list) or the server enters lame duck mode.
    Info(Box<ServerInfo>),
    /// A message on one of our subscriptions.
    Message(NatsMessage),
    /// A `-ERR` from the server.
    Error {
        /// What it is about.
        kind: ServerErrorKind,
        /// The server's text.
        text: String,
    },
    /// Events were dropped because the owner did not take them: the pending
    /// queue was full.
    SlowConsumer {
        /// How many since the last such event.
        dropped: u64,
    },
    /// The connection that reached [`NatsEvent::Connected`] is gone.
    Disconnected {
        /// The address it was to.
        server: String,
    },
}

/// Why the connection must be closed: the shell drops the socket and calls
/// [`NatsClient::handle_disconnected`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The server's bytes do not parse.
    #[error("invalid data from the server: {0}")]
    Parse(#[from] ParseError),
    /// INFO's JSON cannot be read.
    #[error(transparent)]
    Info(#[from] InfoError),
    /// The server sent an operation that is wrong at this point (anything
    /// but INFO first).
    #[error("the server sent {0} before INFO")]
    Unexpected(&'static str),
    /// The server requires TLS, and the client was not told to use it.
    #[error("the server requires TLS")]
    TlsRequired,
    /// The server does not support headers, which the bridge needs.
    #[error("the server does not support headers")]
    NoHeaders,
    /// Dialing, INFO or the PONG after CONNECT took too long.
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// PINGs went unanswered.
    #[error("{0} PINGs unanswered")]
    Stale(u32),
}

/// Why a publish or subscribe was refused; nothing was queued. A refused
/// publish is a dropped message for the caller's counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No connection has sent CONNECT yet.
    #[error("not connected to a NATS server")]
    NotConnected,
    /// The subject cannot be sent.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The control line would be over the server's limit.
    #[error("control line of {len} bytes is over the server's limit of {max}")]
    LineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Headers and payload are over the server's `max_payload`.
    #[error("message of {size} bytes is over the server's max_payload of {max}")]
    PayloadTooLarge {
        /// Headers and payload.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// The outbound queue is full: the server is not reading fast enough.
    #[error("outbound queue full ({limit} bytes)")]
    OutboundFull {
        /// The limit.
        limit: usize,
    },
}

/// Counters, as plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatsStats {
    /// Messages received and queued as events.
    pub messages_in: u64,
    /// Messages queued for the server.
    pub messages_out: u64,
    /// Events dropped because the pending queue was full.
    pub events_dropped: u64,
    /// Messages dropped for a subject that is not UTF-8 or a malformed
    /// header block (one bad publisher must not break the connection).
    pub messages_invalid: u64,
    /// Messages for a subscription no longer held (they can cross an UNSUB).
    pub messages_unknown_sid: u64,
    /// Connections that reached [`NatsEvent::Connected`].
    pub connects: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection; the next is due at `retry_at`.
    Idle,
    /// [`NatsClient::next_server`] named a server; the shell is dialing.
    Dialing { since: Instant },
    /// Connected; waiting for INFO.
    AwaitingInfo { since: Instant },
    /// INFO came; waiting for the shell to start TLS.
    AwaitingTls { since: Instant },
    /// CONNECT, the subscriptions and PING sent; waiting for PONG.
    AwaitingPong { since: Instant },
    /// PONG came.
    Connected { next_ping: Instant, pings_out: u32 },
    /// A [`ConnectionError`] was returned; waiting for
    /// [`NatsClient::handle_disconnected`].
    Failed,
}

/// The NATS client state machine. See [`super`] for the calling order.
#[derive(Debug)]
pub struct NatsClient {
    config: NatsConfig,
    state: State,
    /// Whether the current connection reached Connected, so that its loss
    /// is reported.
    was_connected: bool,
    /// Configured servers first, then discovered ones, and the backoff.
    reconnect: Reconnect,
    info: ServerInfo,
    /// Limits for the current connection (`max_payload` lowered by INFO).
    limits: ParseLimits,
    subscriptions: BTreeMap<Sid, String>,
    next_sid: u64,
    /// Bytes of a partial operation.
    input: Vec<u8>,
    /// The last header block received, and what it parsed to.
    last_headers: (Vec<u8>, Arc<Headers>),
    /// The last subject [`NatsClient::publish`] checked and found sendable:
    /// a stream on one subject is checked once.
    last_published: String,
    /// The subject of the last message received, shared with the next one
    /// if it has the same.
    last_subject: Arc<str>,
    /// The chunk [`NatsClient::handle_shared_input`] is handling: payloads
    /// read from it are ranges of it.
    shared_input: Option<Arc<[u8]>>,
    outbound: Outbound,
    events: VecDeque<NatsEvent>,
    /// Events dropped since the last [`NatsEvent::SlowConsumer`].
    dropped: u64,
    stats: NatsStats,
}

fn normalize(url: &str) -> String {
    let url = url.trim();
    let url = url.strip_prefix("nats://").unwrap_or(url);
    url.strip_suffix('/').unwrap_or(url).to_owned()
}

impl NatsClient {
    /// A client with `config`, created at `now`; the first server is due at
    /// once.
    pub fn new(config: NatsConfig, now: Instant) -> Self {
        let servers = config.servers.iter().map(|s| normalize(s));
        let reconnect = Reconnect::new(servers, config.reconnect_min, config.reconnect_max, now);
        NatsClient {
            state: State::Idle,
            was_connected: false,
            reconnect,
            info: ServerInfo::default(),
            limits: config.limits,
            subscriptions: BTreeMap::new(),
            next_sid: 1,
            input: Vec::new(),
            last_headers: (Vec::new(), Arc::default()),
            last_published: String::new(),
            last_subject: "".into(),
            shared_input: None,
            outbound: Outbound::streaming(config.max_outbound),
            events: VecDeque::new(),
            dropped: 0,
            stats: NatsStats::default(),
            config,
        }
    }

    /// The servers tried in turn: configured, then discovered.
    pub fn servers(&self) -> &[String] {
        self.reconnect.servers()
    }

    /// The server of the current or last connection.
    pub fn server(&self) -> Option<&str> {
        self.reconnect.server()
    }

    /// The last INFO of the current or last connection.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Whether the server answered CONNECT and the connection was not lost.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// The counters.
    pub fn stats(&self) -> &NatsStats {
        &self.stats
    }

    /// The subscriptions held on every connection.
    pub fn subscriptions(&self) -> impl Iterator<Item = (Sid, &str)> {
        self.subscriptions.iter().map(|(&sid, subject)| (sid, subject.as_str()))
    }

    /// Bytes of a partial operation held until more arrive; never more
    /// than [`ParseLimits::max_op_len`] after a call returns.
    pub fn unparsed_len(&self) -> usize {
        self.input.len()
    }

    /// Bytes waiting to be written.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Bytes waiting to be written, to mark what was written
    /// ([`Outbound::front_slices`], [`Outbound::consume`]).
    pub fn outbound_mut(&mut self) -> &mut Outbound {
        &mut self.outbound
    }

    /// The next server to dial, when a connection attempt is due at `now`
    /// and none is under way. Servers are taken in turn; each failed
    /// attempt doubles the wait before the next (capped), and a connection
    /// that reaches [`NatsEvent::Connected`] resets it.
    #[must_use]
    pub fn next_server(&mut self, now: Instant) -> Option<&str> {
        if self.state != State::Idle {
            return None;
        }
        let server = self.reconnect.next_server(now)?;
        self.state = State::Dialing { since: now };
        Some(server)
    }

    /// The connection to the server [`NatsClient::next_server`] named is
    /// open; the server speaks first (INFO).
    pub fn handle_connected(&mut self, now: Instant) {
        if matches!(self.state, State::Dialing { .. }) {
            self.state = State::AwaitingInfo { since: now };
        }
    }

    /// The connection is gone (or dialing failed): forget its bytes and
    /// schedule the next attempt.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if self.state == State::Idle {
            return;
        }
        if std::mem::take(&mut self.was_connected) {
            let server = self.server().unwrap_or_default().to_owned();
            self.events.push_back(NatsEvent::Disconnected { server });
        }
        self.state = State::Idle;
        self.input = Vec::new();
        self.outbound = Outbound::streaming(self.config.max_outbound);
        self.limits = self.config.limits;
        self.reconnect.failed(now);
    }

    /// [`NatsClient::handle_input`] of `chunk[..len]`, a buffer the shell
    /// read into and shares: the payloads of the messages wholly in it are
    /// ranges of it, not copies. The shell can read into it again once
    /// those are dropped (`Arc::get_mut`).
    pub fn handle_shared_input(&mut self, now: Instant, chunk: &Arc<[u8]>, len: usize) -> Result<(), ConnectionError> {
        self.shared_input = Some(chunk.clone());
        let result = self.handle_input(now, &chunk[..len.min(chunk.len())]);
        self.shared_input = None;
        result
    }

    /// Takes bytes read from the socket. On an error the connection is
    /// unusable: drop it and call [`NatsClient::handle_disconnected`].
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ConnectionError> {
        if !matches!(self.state, State::AwaitingInfo { .. } | State::AwaitingPong { .. } | State::Connected { .. }) {
            return Ok(());
        }
        let mut held = std::mem::take(&mut self.input);
        if let Err(error) = reconnect::feed(&mut held, bytes, |bytes| self.handle_ops(now, bytes)) {
            self.state = State::Failed;
            return Err(error);
        }
        self.input = held;
        Ok(())
    }

    /// Handles every whole operation at the start of `bytes`; returns the
    /// bytes they took.
    fn handle_ops(&mut self, now: Instant, bytes: &[u8]) -> Result<usize, ConnectionError> {
        let mut at = 0;
        while let Parsed::Complete { op, consumed } = codec::parse(&bytes[at..], &self.limits)? {
            self.handle_op(now, op)?;
            at += consumed;
        }
        Ok(at)
    }

    fn handle_op(&mut self, now: Instant, op: ServerOp<'_>) -> Result<(), ConnectionError> {
        let awaiting_info = matches!(self.state, State::AwaitingInfo { .. });
        match op {
            ServerOp::Info(json) => {
                let info = ServerInfo::from_json(json)?;
                self.merge_servers(&info.connect_urls);
                if info.max_payload > 0 {
                    self.limits.max_payload = self.config.limits.max_payload.min(info.max_payload);
                }
                if awaiting_info {
                    if info.tls_required && !self.config.tls {
                        return Err(ConnectionError::TlsRequired);
                    }
                    if !info.headers {
                        return Err(ConnectionError::NoHeaders);
                    }
                    self.info = info;
                    if self.config.tls {
                        self.state = State::AwaitingTls { since: now };
                    } else {
                        self.send_handshake(now);
                    }
                } else {
                    self.info = info.clone();
                    self.push_event(NatsEvent::Info(Box::new(info)));
                }
            }
            _ if awaiting_info => return Err(ConnectionError::Unexpected(op_name(&op))),
            ServerOp::Msg(msg) => self.handle_msg(msg),
            ServerOp::Ping => push_control(&mut self.outbound, &ClientOp::Pong),
            ServerOp::Pong => match &mut self.state {
                State::AwaitingPong { .. } => {
                    self.state = State::Connected { next_ping: now + self.config.ping_interval, pings_out: 0 };
                    self.reconnect.connected();
                    self.was_connected = true;
                    self.stats.connects += 1;
                    let server = self.server().unwrap_or_default().to_owned();
                    self.events.push_back(NatsEvent::Connected { server, info: Box::new(self.info.clone()) });
                }
                State::Connected { pings_out, .. } => *pings_out = 0,
                _ => {}
            },
            ServerOp::Ok => {}
            ServerOp::Err(text) => {
                self.push_event(NatsEvent::Error { kind: ServerErrorKind::of(text), text: text.to_owned() });
            }
        }
        Ok(())
    }

    /// Whether INFO came and the shell must now start TLS on the socket,
    /// then call [`NatsClient::handle_tls_started`].
    pub fn wants_tls(&self) -> bool {
        matches!(self.state, State::AwaitingTls { .. })
    }

    /// TLS is started on the socket: CONNECT and the rest are queued (to
    /// be written through TLS, which holds them until its handshake is
    /// done).
    pub fn handle_tls_started(&mut self, now: Instant) {
        if self.wants_tls() {
            self.send_handshake(now);
        }
    }

    /// CONNECT, then every subscription, then the PING whose PONG says the
    /// server took them (an authorization failure comes as -ERR before it).
    fn send_handshake(&mut self, now: Instant) {
        // Made per connection: NKEY credentials sign this server's nonce.
        let connect = self.config.connect.to_json(&self.info.nonce);
        push_control(&mut self.outbound, &ClientOp::Connect(&connect));
        for (sid, subject) in &self.subscriptions {
            push_control(&mut self.outbound, &ClientOp::Sub { subject, queue: None, sid: sid.0 });
        }
        push_control(&mut self.outbound, &ClientOp::Ping);
        self.state = State::AwaitingPong { since: now };
    }

    fn handle_msg(&mut self, msg: Msg<'_>) {
        let sid = std::str::from_utf8(msg.sid).ok().and_then(|s| s.parse().ok()).map(Sid);
        let Some(sid) = sid.filter(|sid| self.subscriptions.contains_key(sid)) else {
            self.stats.messages_unknown_sid += 1;
            return;
        };
        let subject = std::str::from_utf8(msg.subject).ok();
        let reply = msg.reply.map(std::str::from_utf8).transpose().ok();
        let headers = match msg.headers {
            None => Some(Arc::default()),
            Some(block) if !block.is_empty() && block == self.last_headers.0 => Some(self.last_headers.1.clone()),
            Some(block) => Headers::parse(block).ok().map(|headers| {
                let headers = Arc::new(headers);
                self.last_headers = (block.to_vec(), headers.clone());
                headers
            }),
        };
        let (Some(subject), Some(reply), Some(headers)) = (subject, reply, headers) else {
            self.stats.messages_invalid += 1;
            return;
        };
        if *self.last_subject != *subject {
            self.last_subject = subject.into();
        }
        let message = NatsMessage {
            sid,
            subject: self.last_subject.clone(),
            reply: reply.map(str::to_owned),
            headers,
            payload: self
                .shared_input
                .as_ref()
                .and_then(|chunk| Payload::within(chunk, msg.payload))
                .unwrap_or_else(|| Payload::copy_of(msg.payload)),
        };
        if self.push_event(NatsEvent::Message(message)) {
            self.stats.messages_in += 1;
        }
    }

    /// Queues an event unless the queue is full; then counts it dropped.
    fn push_event(&mut self, event: NatsEvent) -> bool {
        if self.events.len() >= self.config.max_pending_events {
            self.dropped += 1;
            self.stats.events_dropped += 1;
            return false;
        }
        self.events.push_back(event);
        true
    }

    fn merge_servers(&mut self, urls: &[String]) {
        let cap = self.config.servers.len() + MAX_CONNECT_URLS;
        self.reconnect.add_servers(urls.iter().map(|u| normalize(u)), cap);
    }

    /// Call at [`NatsClient::poll_timeout`]: sends PING when due, and fails
    /// when the handshake or PINGs went unanswered too long.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnectionError> {
        match &mut self.state {
            State::Dialing { since }
            | State::AwaitingInfo { since }
            | State::AwaitingTls { since }
            | State::AwaitingPong { since } => {
                if now >= *since + self.config.handshake_timeout {
                    self.state = State::Failed;
                    return Err(ConnectionError::HandshakeTimeout(self.config.handshake_timeout));
                }
            }
            State::Connected { next_ping, pings_out } => {
                if now >= *next_ping {
                    if *pings_out >= self.config.max_pings_out {
                        let unanswered = *pings_out;
                        self.state = State::Failed;
                        return Err(ConnectionError::Stale(unanswered));
                    }
                    *pings_out += 1;
                    *next_ping = now + self.config.ping_interval;
                    push_control(&mut self.outbound, &ClientOp::Ping);
                }
            }
            State::Idle | State::Failed => {}
        }
        Ok(())
    }

    /// When [`NatsClient::handle_timeout`] (or, when idle,
    /// [`NatsClient::next_server`]) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => self.reconnect.retry_at(),
            State::Dialing { since }
            | State::AwaitingInfo { since }
            | State::AwaitingTls { since }
            | State::AwaitingPong { since } => Some(since + self.config.handshake_timeout),
            State::Connected { next_ping, .. } => Some(next_ping),
            State::Failed => None,
        }
    }

    /// The next event, if any. A [`NatsEvent::SlowConsumer`] comes first
    /// when events were dropped.
    pub fn poll_event(&mut self) -> Option<NatsEvent> {
        if self.dropped > 0 {
            return Some(NatsEvent::SlowConsumer { dropped: std::mem::take(&mut self.dropped) });
        }
        self.events.pop_front()
    }

    /// Subscribes to `subject` (wildcards allowed) on this and every later
    /// connection. Sent now if CONNECT has gone out, else in the next
    /// handshake.
    pub fn subscribe(&mut self, subject: &str) -> Result<Sid, SendError> {
        codec::check_subject(subject, true)?;
        let sid = Sid(self.next_sid);
        let op = ClientOp::Sub { subject, queue: None, sid: sid.0 };
        check_line(&op)?;
        self.next_sid += 1;
        if self.handshake_sent() {
            push_control(&mut self.outbound, &op);
        }
        self.subscriptions.insert(sid, subject.to_owned());
        Ok(sid)
    }

    /// Drops a subscription; `false` if it was not held. Messages already
    /// on their way for it are dropped on arrival.
    pub fn unsubscribe(&mut self, sid: Sid) -> bool {
        if self.subscriptions.remove(&sid).is_none() {
            return false;
        }
        if self.handshake_sent() {
            push_control(&mut self.outbound, &ClientOp::Unsub { sid: sid.0, max_msgs: None });
        }
        true
    }

    /// Queues a message to `subject` (literal), as `HPUB` if `headers` is
    /// given. Refused, with nothing queued, when not connected, when it
    /// cannot be sent, or when the outbound queue is full.
    pub fn publish(&mut self, subject: &str, headers: Option<&Headers>, payload: &[u8]) -> Result<(), SendError> {
        if !self.handshake_sent() {
            return Err(SendError::NotConnected);
        }
        if subject != self.last_published || subject.is_empty() {
            codec::check_subject(subject, false)?;
            self.last_published.clear();
            self.last_published.push_str(subject);
        }
        let header_len = headers.map_or(0, Headers::encoded_len);
        let size = header_len + payload.len();
        let max = if self.info.max_payload > 0 { self.info.max_payload } else { codec::DEFAULT_MAX_PAYLOAD };
        if size > max {
            return Err(SendError::PayloadTooLarge { size, max });
        }
        let op = ClientOp::Pub { subject, reply: None, headers, payload };
        let line = op.control_line_len();
        if line > codec::MAX_CONTROL_LINE {
            return Err(SendError::LineTooLong { len: line, max: codec::MAX_CONTROL_LINE });
        }
        let limit = self.outbound.limit();
        // The control line, its `\r\n`, the body and its `\r\n`.
        if self.outbound.len() + line + 2 + size + 2 > limit {
            return Err(SendError::OutboundFull { limit });
        }
        self.outbound.push_with(|out| op.encode(out)).map_err(|_| SendError::OutboundFull { limit })?;
        self.stats.messages_out += 1;
        Ok(())
    }

    /// Whether CONNECT is queued on the current connection, so that other
    /// operations may follow it.
    fn handshake_sent(&self) -> bool {
        matches!(self.state, State::AwaitingPong { .. } | State::Connected { .. })
    }
}

fn check_line(op: &ClientOp<'_>) -> Result<(), SendError> {
    let len = op.control_line_len();
    if len > codec::MAX_CONTROL_LINE {
        return Err(SendError::LineTooLong { len, max: codec::MAX_CONTROL_LINE });
    }
    Ok(())
}

fn op_name(op: &ServerOp<'_>) -> &'static str {
    match op {
        ServerOp::Info(_) => "INFO",
        ServerOp::Msg(m) if m.headers.is_some() => "HMSG",
        ServerOp::Msg(_) => "MSG",
        ServerOp::Ping => "PING",
        ServerOp::Pong => "PONG",
        ServerOp::Ok => "+OK",
        ServerOp::Err(_) => "-ERR",
    }
}

/// Queues a control operation even past the limit: they are small, and
/// without PONG and the subscriptions the connection is lost anyway.
fn push_control(outbound: &mut Outbound, op: &ClientOp<'_>) {
    let mut bytes = Vec::with_capacity(op.control_line_len() + 2 + op.body_len());
    op.encode(&mut bytes);
    outbound.push_final(&bytes);
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
