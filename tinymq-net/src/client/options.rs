//! Where the broker is, how to reach it, and what a call can fail with.

use std::fmt;
use std::io::{self};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tinymq_core::client::{ClientConfig, ClientError as SessionError, ClientWill};
use tinymq_core::{FrameLimits, Qos, ReasonCode, TopicError};

use crate::ListenAddr;
use crate::tls::ClientTls;

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
            other @ (ListenAddr::Http(_) | ListenAddr::Https(_) | ListenAddr::Mqtt(_) | ListenAddr::Mqtts(_)) => {
                Err(other)
            }
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
    pub(super) fn from_session(error: SessionError) -> Self {
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
    pub(super) address: Address,
    pub(super) session: ClientConfig,
    pub(super) reconnect: bool,
    pub(super) backoff_first: Duration,
    pub(super) backoff_max: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) inbox_limit: usize,
    pub(super) tls: Option<ClientTls>,
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

    /// How long [`Client::publish`](crate::Client::publish), [`Client::subscribe`](crate::Client::subscribe) and
    /// [`Client::unsubscribe`](crate::Client::unsubscribe) may take, reconnecting included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Asks the broker to keep this client's session (its subscriptions
    /// and the QoS 1 messages they match) while it is away, for the
    /// session expiry (`clean_session = false`); needs a client id.
    pub fn persistent_session(mut self, persistent: bool) -> Self {
        self.session.persistent = persistent;
        self
    }

    /// Seconds a persistent session outlives its connection (default 0:
    /// the broker's `--session-expiry`, which is also the most).
    pub fn session_expiry(mut self, seconds: u32) -> Self {
        self.session.session_expiry = seconds;
        self
    }

    /// The will the broker publishes (as this client, with `retain` and
    /// `qos`) if the connection ends without a Disconnect.
    pub fn will(mut self, topic: impl Into<String>, payload: impl Into<Vec<u8>>, retain: bool, qos: Qos) -> Self {
        self.session.will = Some(ClientWill { topic: topic.into(), payload: payload.into(), retain, qos });
        self
    }

    /// QoS 1 publishes in flight at once (default 256).
    pub fn max_inflight(mut self, window: u16) -> Self {
        self.session.max_inflight = window.max(1);
        self
    }

    /// Frame limits (default: the broker's defaults). Frames received over
    /// them end the connection; payloads, topics and ids over them are
    /// refused before sending.
    pub fn frame_limits(mut self, limits: FrameLimits) -> Self {
        self.session.frame_limits = limits;
        self
    }

    /// How many received messages the client holds for [`Client::recv`](crate::Client::recv)
    /// (default 100,000). Messages arrive while any method runs; past the
    /// limit the oldest are dropped, counted in [`Client::dropped_messages`](crate::Client::dropped_messages)
    /// and logged.
    pub fn inbox_limit(mut self, messages: usize) -> Self {
        self.inbox_limit = messages.max(1);
        self
    }
}
