//! The settings of a broker: [`BrokerConfig`], every setting with its
//! default, and the [`BrokerBuilder`] setters that fill it in (starting a
//! broker from them is [`BrokerBuilder::start`]). The `tinymq` command's
//! TOML file, which describes a [`BrokerConfig`], is
//! [`ConfigFile`](crate::ConfigFile).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tinymq_core::auth::{AllowList, BudgetConfig, UserRecord};
use tinymq_core::durable::{QueueLimits, SessionsConfig};
use tinymq_core::http::clients::HttpClientLimits;
use tinymq_core::http::conn::HttpConnConfig;
use tinymq_core::http::service::HttpConfig;
use tinymq_core::mqtt::SessionConfig as MqttSessionConfig;
use tinymq_core::{FrameLimits, SessionConfig, TopicLimits};

use crate::bridge::BridgeConfig;
use crate::tls::ServerTls;
use crate::transport::ListenAddr;
use crate::writer::Durability;

/// QoS 1 messages in flight per connection each way, by default.
const DEFAULT_MAX_INFLIGHT: u16 = 1024;

/// Every setting of a broker. Built with [`Broker::builder`](crate::Broker::builder).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where to accept connections (binary protocol and HTTP).
    pub listeners: Vec<ListenAddr>,
    /// Event-loop threads (default: the number of cores).
    pub threads: usize,
    /// Session settings: keep-alive, frame and topic limits, outbound limit.
    pub session: SessionConfig,
    /// Connections accepted at once, over all transports; more are closed at
    /// once and counted (default 100,000).
    pub max_connections: usize,
    /// Whether clients without credentials use the public namespace.
    pub allow_anonymous: bool,
    /// The peers allowed to connect (`None`, the default: every peer).
    /// Others get 401 (HTTP) or Disconnect 2 as soon as they connect, and
    /// are counted. Unix-socket peers have no address and are not checked:
    /// the socket file's permissions guard them.
    pub allowed_peers: Option<AllowList>,
    /// The budget of bad requests (wrong credentials, unknown paths,
    /// malformed requests) per peer address, past which it is throttled.
    pub peer_budget: BudgetConfig,
    /// Messages queued per in-process client before the oldest are dropped
    /// (default 65,536).
    pub local_queue_limit: usize,
    /// Payload bytes queued per in-process client before the oldest
    /// messages are dropped (default 64 MiB; the newest message is always
    /// kept).
    pub local_queue_bytes: usize,
    /// How long an in-process publish waits for room in a full in-process
    /// queue before it drops the oldest messages (default 20 ms; zero never
    /// waits). A subscriber that keeps up on average then loses nothing to
    /// a moment off its core, and its publisher is slowed to its pace; one
    /// that stopped reading holds a publisher up once, until it reads again.
    /// Unless zero, an in-process publish to network subscribers is also
    /// paced as a network publisher is while one of them has much unsent.
    /// Deliveries from the network never wait (an event loop must not):
    /// network publishers feeding an in-process queue over half full are
    /// read slower instead.
    pub local_queue_wait: Duration,
    /// Where stored values live: `None` keeps them in memory only (the
    /// library's default); a directory holds a redb database.
    pub data_dir: Option<PathBuf>,
    /// When a stored value is durable (default batched within 50 ms).
    pub durability: Durability,
    /// The HTTP API's settings: Moustique clients' queues and timeout,
    /// regular-expression limits. Its topic limits and `allow_anonymous`
    /// are taken from the fields above at start.
    pub http: HttpConfig,
    /// HTTP connections' settings: request limits and timeouts, the event
    /// streams' heartbeat.
    pub http_conn: HttpConnConfig,
    /// Users beside those in the data directory's store (one of the same
    /// name is replaced); see [`crate::users::new_user`].
    pub users: Vec<UserRecord>,
    /// The certificate every TLS and HTTPS listener presents.
    pub tls: Option<ServerTls>,
    /// How often loop 0 publishes the broker's figures to `$SYS/broker/...`
    /// (default 10 s; zero publishes none).
    pub sys_interval: Duration,
    /// Bridges to NATS clusters or MQTT brokers (default none), run by event loop 0.
    pub bridges: Vec<BridgeConfig>,
    /// MQTT sessions' settings: maximum packet size, in-flight window,
    /// topic aliases, the wait for CONNECT. Their topic and outbound
    /// limits are taken from `session` at start.
    pub mqtt: MqttSessionConfig,
    /// Durable sessions of binary clients: their expiry
    /// (`--session-expiry`, default one day), how many persistent ones are
    /// held, and each one's QoS 1 queue limits and in-flight window.
    pub sessions: SessionsConfig,
}

impl BrokerConfig {
    /// An MQTT session's settings: [`BrokerConfig::mqtt`], with the topic
    /// limits and outbound limit every connection has.
    pub(crate) fn mqtt_session(&self) -> MqttSessionConfig {
        MqttSessionConfig {
            topic_limits: self.session.topic_limits,
            outbound_limit: self.session.outbound_limit,
            ..self.mqtt
        }
    }

    /// Whether bad peers are throttled at all.
    pub(crate) fn peer_budget_enabled(&self) -> bool {
        self.peer_budget.burst > 0 && !self.peer_budget.refill.is_zero()
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            // QoS 1 windows of 1,024 each way: measured on 2 cores, an
            // `immediate` 1 -> 1 run acknowledges 96k msg/s with them and
            // 45k with the core's 256 (a commit's wait is shared by more).
            session: SessionConfig { max_inflight: DEFAULT_MAX_INFLIGHT, ..SessionConfig::default() },
            max_connections: 100_000,
            allow_anonymous: true,
            allowed_peers: None,
            peer_budget: BudgetConfig::default(),
            local_queue_limit: 65_536,
            local_queue_bytes: 64 << 20,
            local_queue_wait: Duration::from_millis(20),
            data_dir: None,
            durability: Durability::Batched(Duration::from_millis(50)),
            http: HttpConfig::default(),
            http_conn: HttpConnConfig::default(),
            users: Vec::new(),
            tls: None,
            sys_interval: Duration::from_secs(10),
            bridges: Vec::new(),
            // The same window as the binary face: the core's default of 64
            // held an MQTT subscriber to a sixteenth of the binary one's
            // and it fell behind its publisher under `batched`.
            mqtt: MqttSessionConfig { max_inflight: DEFAULT_MAX_INFLIGHT, ..MqttSessionConfig::default() },
            sessions: SessionsConfig {
                queue: QueueLimits { max_inflight: DEFAULT_MAX_INFLIGHT, ..QueueLimits::default() },
                ..SessionsConfig::default()
            },
        }
    }
}

/// Builds a [`Broker`](crate::Broker); see [`Broker::builder`](crate::Broker::builder).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct BrokerBuilder {
    pub(crate) config: BrokerConfig,
}

impl BrokerBuilder {
    /// Adds a binary-protocol listener.
    pub fn listen(mut self, address: ListenAddr) -> Self {
        self.config.listeners.push(address);
        self
    }

    /// Adds a TCP listener (port 0 picks a free port; see
    /// [`Broker::tcp_addr`](crate::Broker::tcp_addr)).
    pub fn listen_tcp(self, address: SocketAddr) -> Self {
        self.listen(ListenAddr::Tcp(address))
    }

    /// Adds a Unix domain socket listener at `path`.
    pub fn listen_unix(self, path: impl Into<PathBuf>) -> Self {
        self.listen(ListenAddr::Unix(path.into()))
    }

    /// Adds an HTTP listener (the Moustique-compatible API, the plain API
    /// and the status page; port 0 picks a free port; see
    /// [`Broker::http_addr`](crate::Broker::http_addr)).
    pub fn listen_http(self, address: SocketAddr) -> Self {
        self.listen(ListenAddr::Http(address))
    }

    /// Adds a binary-protocol listener over TLS (needs [`BrokerBuilder::tls`]).
    pub fn listen_tls(self, address: SocketAddr) -> Self {
        self.listen(ListenAddr::Tls(address))
    }

    /// Adds an HTTPS listener (needs [`BrokerBuilder::tls`]).
    pub fn listen_https(self, address: SocketAddr) -> Self {
        self.listen(ListenAddr::Https(address))
    }

    /// Adds an MQTT 3.1.1/5.0 listener (port 0 picks a free port; see
    /// [`Broker::mqtt_addr`](crate::Broker::mqtt_addr)).
    pub fn listen_mqtt(self, address: SocketAddr) -> Self {
        self.listen(ListenAddr::Mqtt(address))
    }

    /// Adds an MQTT listener over TLS (needs [`BrokerBuilder::tls`]).
    pub fn listen_mqtts(self, address: SocketAddr) -> Self {
        self.listen(ListenAddr::Mqtts(address))
    }

    /// Sets the certificate and key the TLS and HTTPS listeners present:
    /// `ServerTls::from_pem_files(cert, key)?`, say.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Sets the bounds on Moustique HTTP clients: queue size, inactivity
    /// timeout, number of clients.
    pub fn http_client_limits(mut self, limits: HttpClientLimits) -> Self {
        self.config.http.client_limits = limits;
        self
    }

    /// Sets how often the broker publishes its figures to `$SYS/broker/...`
    /// (default 10 s; `Duration::ZERO` publishes none).
    pub fn sys_interval(mut self, interval: Duration) -> Self {
        self.config.sys_interval = interval;
        self
    }

    /// Sets HTTP connections' limits and timeouts.
    pub fn http_conn(mut self, config: HttpConnConfig) -> Self {
        self.config.http_conn = config;
        self
    }

    /// Sets the number of event-loop threads (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.config.threads = threads.max(1);
        self
    }

    /// Sets the keep-alive interval (connections silent for 1.5 × it close).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.config.session.keep_alive = keep_alive;
        self
    }

    /// Sets the frame field limits.
    pub fn frame_limits(mut self, limits: FrameLimits) -> Self {
        self.config.session.frame_limits = limits;
        self
    }

    /// Sets the topic limits.
    pub fn topic_limits(mut self, limits: TopicLimits) -> Self {
        self.config.session.topic_limits = limits;
        self
    }

    /// Sets the outbound queue limit per connection, in bytes.
    pub fn outbound_limit(mut self, bytes: usize) -> Self {
        self.config.session.outbound_limit = bytes;
        self
    }

    /// Sets the connection limit.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// Sets whether clients without credentials are let in.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.config.allow_anonymous = allow;
        self
    }

    /// Lets only these peers connect (the default lets every peer).
    pub fn allowed_peers(mut self, peers: AllowList) -> Self {
        self.config.allowed_peers = Some(peers);
        self
    }

    /// Sets the per-address budget of bad requests.
    pub fn peer_budget(mut self, budget: BudgetConfig) -> Self {
        self.config.peer_budget = budget;
        self
    }

    /// Keeps stored values in a redb database in `dir` (created if
    /// missing), loaded again at the next start.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Keeps stored values in memory only (the default).
    pub fn in_memory(mut self) -> Self {
        self.config.data_dir = None;
        self
    }

    /// Adds a user (made by [`crate::users::new_user`]): clients that
    /// give its name and password use its own namespace. It replaces a
    /// stored user of the same name for this run; the store is unchanged.
    pub fn user(mut self, user: UserRecord) -> Self {
        self.config.users.push(user);
        self
    }

    /// Sets when stored values are durable.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// Sets how long a persistent session outlives its connection (default
    /// one day): its expiry when the client asks for the default, and the
    /// most it may ask for.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.config.sessions.session_expiry = expiry;
        self
    }

    /// Adds a bridge to a NATS cluster or an MQTT broker.
    pub fn bridge(mut self, bridge: BridgeConfig) -> Self {
        self.config.bridges.push(bridge);
        self
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: BrokerConfig) -> Self {
        self.config = config;
        self
    }
}

/// See [`ConfigFile::loopback_only`](crate::ConfigFile::loopback_only).
pub(crate) fn loopback_only(listeners: &[ListenAddr]) -> bool {
    listeners.iter().all(|listener| match listener {
        ListenAddr::Tcp(addr)
        | ListenAddr::Http(addr)
        | ListenAddr::Tls(addr)
        | ListenAddr::Https(addr)
        | ListenAddr::Mqtt(addr)
        | ListenAddr::Mqtts(addr) => addr.ip().to_canonical().is_loopback(),
        ListenAddr::Unix(_) => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_means_every_listener() {
        let tcp = |a: &str| ListenAddr::Tcp(a.parse().unwrap());
        assert!(loopback_only(&[tcp("127.0.0.1:1"), ListenAddr::Http("[::1]:2".parse().unwrap())]));
        assert!(loopback_only(&[ListenAddr::Unix("/tmp/x".into())]));
        assert!(!loopback_only(&[tcp("127.0.0.1:1"), tcp("0.0.0.0:2")]));
        assert!(!loopback_only(&[tcp("192.0.2.1:1")]));
    }
}
