//! The configuration file of the `tinymq` command: every broker setting,
//! in TOML, each key optional.
//!
//! [`ConfigFile::load`] reads a file and checks every key and value, with
//! errors that name the file, the line and the key;
//! [`ConfigFile::broker_config`] gives the [`BrokerConfig`] it describes,
//! with the command's defaults where the file is silent (so a data
//! directory `./data`, and a TCP and an HTTP listener on loopback);
//! [`ConfigFile::default_text`] is the file `tinymq config` prints, every key with its
//! default and a comment. `tinymq broker` applies its flags over the
//! file's settings: a flag overrides the key it mirrors.
//!
//! # Adding a key
//!
//! Add an `Option` field to its section, a commented line to
//! `default_file`, and its effect to [`ConfigFile::broker_config`]. The
//! tests read the printed file back and expect the defaults, so the three
//! cannot drift apart. (The TLS settings have their place kept, commented
//! out, in the printed file.)

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tinymq_core::auth::{AllowList, BudgetConfig};
use tinymq_core::http::encoding::EncodingMode;
use tinymq_core::{FrameLimits, SessionConfig, TopicLimits};

use crate::config::BrokerConfig;
use crate::tls::ServerTls;
use crate::transport::ListenAddr;
use crate::writer::Durability;

mod bridge;
pub use bridge::BridgeSection;
mod mqtt;
pub use mqtt::MqttSection;

/// The largest config file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The binary-protocol listener when the file names none.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:1883";
/// The HTTP listener when the file names none.
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:33334";
/// The data directory when the file names none.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// A config file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read: missing, not permitted, too large.
    #[error("cannot read the config file {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Not TOML, an unknown key, or a bad value.
    #[error("{}", describe(path.as_deref(), *line, key.as_deref(), message))]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// The line (from 1), when known.
        line: Option<usize>,
        /// The key, as `section.key`, when known.
        key: Option<String>,
        /// What is wrong with it.
        message: String,
    },
}

fn describe(path: Option<&Path>, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut text = match path {
        Some(path) => format!("config file {}", path.display()),
        None => "config".to_owned(),
    };
    if let Some(line) = line {
        text.push_str(&format!(", line {line}"));
    }
    if let Some(key) = key {
        text.push_str(&format!(": {key}"));
    }
    format!("{text}: {message}")
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: None, line: None, key: Some(key.to_owned()), message: message.into() }
}

/// A binary-protocol listener's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// TCP, at HOST:PORT.
    Tcp,
    /// A Unix domain socket, at a path.
    Unix,
}

/// When a stored value is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Committed before it is acknowledged.
    Immediate,
    /// Committed within `commit_interval_ms`.
    Batched,
}

/// How much the broker logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: starts, stops, and what needs attention.
    Info,
    /// Every connection.
    Debug,
    /// Everything.
    Trace,
    /// Nothing.
    Off,
}

impl LogLevel {
    /// The `log` crate's filter for it.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
            LogLevel::Off => log::LevelFilter::Off,
        }
    }
}

/// A whole config file. Every key is optional; see [`ConfigFile::default_text`] for
/// what each means.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConfigFile {
    /// `[[listener]]` tables: the binary-protocol listeners.
    pub listener: Option<Vec<ListenerSection>>,
    /// `[http]`.
    pub http: HttpSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[access]`.
    pub access: AccessSection,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[log]`.
    pub log: LogSection,
    /// `[tls]`.
    pub tls: TlsSection,
    /// `[[bridge]]` tables: bridges to NATS clusters.
    pub bridge: Vec<BridgeSection>,
    /// `[mqtt]`.
    pub mqtt: MqttSection,
}

/// `[tls]`: the certificate of the TLS and HTTPS listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsSection {
    /// `cert`: a PEM certificate chain; with `key`, the binary listeners
    /// on TCP speak TLS.
    pub cert: Option<PathBuf>,
    /// `key`: its PEM private key.
    pub key: Option<PathBuf>,
}

/// One `[[listener]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenerSection {
    /// `network`: `tcp` (the default) or `unix`.
    pub network: Option<Network>,
    /// `address`: HOST:PORT, or a socket path.
    pub address: Option<String>,
}

/// `[http]`: the HTTP listener and Moustique clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSection {
    /// `enabled`: whether there is an HTTP listener.
    pub enabled: Option<bool>,
    /// `address`: its HOST:PORT.
    pub address: Option<String>,
    /// `client_timeout_secs`: a Moustique client not seen for this long is dropped.
    pub client_timeout_secs: Option<u64>,
    /// `queue_size`: messages queued per Moustique client.
    pub queue_size: Option<usize>,
    /// `request_timeout_secs`: a request must be whole this long after its first byte.
    pub request_timeout_secs: Option<u64>,
    /// `sse_heartbeat_secs`: how often an idle event stream gets a comment.
    pub sse_heartbeat_secs: Option<u64>,
    /// `https`: HOST:PORT of an HTTPS listener (needs `[tls]`).
    pub https: Option<String>,
    /// `moustique_encoding`: `auto`, `current` or `legacy`.
    pub moustique_encoding: Option<String>,
}

/// `[store]`: where and how durably values are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreSection {
    /// `data`: the data directory.
    pub data: Option<PathBuf>,
    /// `in_memory`: keep nothing on disk (overrides `data`).
    pub in_memory: Option<bool>,
    /// `durability`: `immediate` or `batched`.
    pub durability: Option<DurabilityMode>,
    /// `commit_interval_ms`: under `batched`, commit at least this often.
    pub commit_interval_ms: Option<u64>,
}

/// `[access]`: who may connect, and how bad peers are slowed down.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessSection {
    /// `allow_anonymous`: whether clients without credentials are let in.
    pub allow_anonymous: Option<bool>,
    /// `allowed_peers`: addresses and CIDR ranges allowed to connect.
    pub allowed_peers: Option<Vec<String>>,
    /// `peer_budget`: bad requests per address in a burst (0: no throttling).
    pub peer_budget: Option<u32>,
    /// `peer_budget_refill_secs`: one more bad request allowed per this long.
    pub peer_budget_refill_secs: Option<u64>,
}

/// `[limits]`: threads, connections, and the size of what clients send.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsSection {
    /// `threads`: event-loop threads.
    pub threads: Option<usize>,
    /// `max_connections`: connections at once.
    pub max_connections: Option<usize>,
    /// `keep_alive_secs`: the keep-alive interval.
    pub keep_alive_secs: Option<u64>,
    /// `session_expiry_secs`: how long a persistent session outlives its
    /// connection, and the most a client may ask for.
    pub session_expiry_secs: Option<u64>,
    /// `max_payload_bytes`: the longest message payload.
    pub max_payload_bytes: Option<usize>,
    /// `max_topic_bytes`: the longest topic name or filter.
    pub max_topic_bytes: Option<usize>,
    /// `max_topic_levels`: the most levels in a topic.
    pub max_topic_levels: Option<usize>,
    /// `max_client_id_bytes`: the longest client id.
    pub max_client_id_bytes: Option<usize>,
    /// `outbound_queue_bytes`: unsent bytes per connection before it is cut
    /// as a slow consumer.
    pub outbound_queue_bytes: Option<usize>,
}

/// `[log]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogSection {
    /// `level`: error, warn, info or debug.
    pub level: Option<LogLevel>,
    /// `sys_interval_secs`: how often the broker publishes its figures to
    /// `$SYS/broker/...`; 0 for never.
    pub sys_interval_secs: Option<u64>,
}

impl ConfigFile {
    /// Reads and checks the file at `path`: errors name the file, and the
    /// line and key when there is one.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_error = |message: String| ConfigError::Read { path: path.to_owned(), message };
        let file = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| read_error(e.to_string()))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(read_error(format!("it is over {MAX_FILE_BYTES} bytes")));
        }
        let with_path = |error: ConfigError| match error {
            ConfigError::Invalid { line, key, message, .. } => {
                ConfigError::Invalid { path: Some(path.to_owned()), line, key, message }
            }
            read => read,
        };
        let file = Self::parse(&text).map_err(with_path)?;
        file.broker_config().map_err(with_path)?;
        Ok(file)
    }

    /// Parses a config file's text: TOML, and every key known. Values are
    /// checked by [`ConfigFile::broker_config`].
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| {
            let (line, key) = match error.span() {
                Some(span) => locate(text, span.start),
                None => (None, None),
            };
            let message = error.message().trim().replace('\n', " ");
            ConfigError::Invalid { path: None, line, key, message }
        })
    }

    /// The broker settings the file describes, the `tinymq` command's
    /// defaults filling in what it leaves out. Errors name the bad key.
    pub fn broker_config(&self) -> Result<BrokerConfig, ConfigError> {
        let mut config = BrokerConfig::default();
        let listeners = self.listener.clone().unwrap_or_else(|| vec![ListenerSection::default()]);
        for (i, listener) in listeners.iter().enumerate() {
            let key = format!("listener[{}].address", i + 1);
            config.listeners.push(match listener.network.unwrap_or(Network::Tcp) {
                Network::Tcp => {
                    ListenAddr::Tcp(socket_addr(&key, listener.address.as_deref().unwrap_or(DEFAULT_ADDRESS))?)
                }
                Network::Unix => match listener.address.as_deref() {
                    Some(path) if !path.is_empty() => ListenAddr::Unix(PathBuf::from(path)),
                    _ => return Err(invalid(&key, "a unix listener needs a socket path")),
                },
            });
        }
        let http = &self.http;
        if http.enabled.unwrap_or(true) {
            let address = http.address.as_deref().unwrap_or(DEFAULT_HTTP_ADDRESS);
            config.listeners.push(ListenAddr::Http(socket_addr("http.address", address)?));
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => {
                config.tls =
                    Some(ServerTls::from_pem_files(cert, key).map_err(|e| invalid("tls.cert", e.to_string()))?);
                for listener in &mut config.listeners {
                    if let ListenAddr::Tcp(address) = listener {
                        *listener = ListenAddr::Tls(*address);
                    }
                }
            }
            (None, None) => {}
            (Some(_), None) => return Err(invalid("tls.key", "tls.cert needs tls.key")),
            (None, Some(_)) => return Err(invalid("tls.cert", "tls.key needs tls.cert")),
        }
        self.mqtt.apply(&mut config)?;
        if let Some(address) = &http.https {
            if config.tls.is_none() {
                return Err(invalid("http.https", "an HTTPS listener needs [tls] cert and key"));
            }
            config.listeners.push(ListenAddr::Https(socket_addr("http.https", address)?));
        }
        if let Some(secs) = http.client_timeout_secs {
            config.http.client_limits.timeout = at_least_a_second("http.client_timeout_secs", secs)?;
        }
        if let Some(size) = http.queue_size {
            config.http.client_limits.queue_size = at_least_one("http.queue_size", size)?;
        }
        if let Some(secs) = http.request_timeout_secs {
            config.http_conn.request_timeout = at_least_a_second("http.request_timeout_secs", secs)?;
        }
        if let Some(mode) = &http.moustique_encoding {
            config.http.moustique_encoding = EncodingMode::parse(mode)
                .ok_or_else(|| invalid("http.moustique_encoding", "must be \"auto\", \"current\" or \"legacy\""))?;
        }
        if let Some(secs) = http.sse_heartbeat_secs {
            config.http_conn.heartbeat = at_least_a_second("http.sse_heartbeat_secs", secs)?;
        }

        let store = &self.store;
        config.data_dir = match (store.in_memory.unwrap_or(false), &store.data) {
            (true, _) => None,
            (false, Some(dir)) if dir.as_os_str().is_empty() => return Err(invalid("store.data", "an empty path")),
            (false, dir) => Some(dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))),
        };
        let interval = match store.commit_interval_ms {
            Some(0) => return Err(invalid("store.commit_interval_ms", "must be at least 1")),
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_millis(50),
        };
        config.durability = match store.durability.unwrap_or(DurabilityMode::Batched) {
            // The interval is kept for batched only (a file may keep it
            // while trying immediate).
            DurabilityMode::Immediate => Durability::Immediate,
            DurabilityMode::Batched => Durability::Batched(interval),
        };

        let access = &self.access;
        if let Some(entries) = &access.allowed_peers {
            let peers = AllowList::from_entries(entries).map_err(|e| invalid("access.allowed_peers", e.to_string()))?;
            config.allowed_peers = Some(peers);
        }
        config.allow_anonymous =
            access.allow_anonymous.unwrap_or_else(|| crate::config::loopback_only(&config.listeners));
        let mut budget = BudgetConfig::default();
        if let Some(burst) = access.peer_budget {
            budget.burst = burst;
        }
        if let Some(secs) = access.peer_budget_refill_secs {
            budget.refill = at_least_a_second("access.peer_budget_refill_secs", secs)?;
        }
        config.peer_budget = budget;

        let limits = &self.limits;
        if let Some(threads) = limits.threads {
            config.threads = at_least_one("limits.threads", threads)?;
        }
        if let Some(max) = limits.max_connections {
            config.max_connections = at_least_one("limits.max_connections", max)?;
        }
        config.session = session_config(limits)?;
        if let Some(secs) = limits.session_expiry_secs {
            config.sessions.session_expiry = at_least_a_second("limits.session_expiry_secs", secs)?;
        }
        if let Some(secs) = self.log.sys_interval_secs {
            config.sys_interval = Duration::from_secs(secs);
        }
        for (i, section) in self.bridge.iter().enumerate() {
            config.bridges.push(section.bridge_config(i, &config.session.topic_limits)?);
        }
        Ok(config)
    }

    /// The log level the file sets, if it does.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.log.level
    }
}

fn session_config(limits: &LimitsSection) -> Result<SessionConfig, ConfigError> {
    let mut session = SessionConfig::default();
    if let Some(secs) = limits.keep_alive_secs {
        session.keep_alive = at_least_a_second("limits.keep_alive_secs", secs)?;
    }
    let mut frame = FrameLimits::default();
    let mut topic = TopicLimits::default();
    if let Some(bytes) = limits.max_payload_bytes {
        frame.max_payload_len = within("limits.max_payload_bytes", bytes, u32::MAX as usize)?;
    }
    if let Some(bytes) = limits.max_topic_bytes {
        // The frame format holds at most 65535 bytes.
        frame.max_topic_len = within("limits.max_topic_bytes", bytes, u16::MAX.into())?;
        topic.max_len = frame.max_topic_len;
    }
    if let Some(levels) = limits.max_topic_levels {
        topic.max_levels = within("limits.max_topic_levels", levels, u16::MAX.into())?;
    }
    if let Some(bytes) = limits.max_client_id_bytes {
        frame.max_client_id_len = within("limits.max_client_id_bytes", bytes, u16::MAX.into())?;
    }
    if let Some(bytes) = limits.outbound_queue_bytes {
        session.outbound_limit = at_least_one("limits.outbound_queue_bytes", bytes)?;
    }
    session.frame_limits = frame;
    session.topic_limits = topic;
    Ok(session)
}

fn at_least_one(key: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 { Err(invalid(key, "must be at least 1")) } else { Ok(value) }
}

fn within(key: &str, value: usize, max: usize) -> Result<usize, ConfigError> {
    if value > max { Err(invalid(key, format!("must be at most {max}"))) } else { at_least_one(key, value) }
}

fn at_least_a_second(key: &str, secs: u64) -> Result<Duration, ConfigError> {
    if secs == 0 { Err(invalid(key, "must be at least 1 second")) } else { Ok(Duration::from_secs(secs)) }
}

/// HOST:PORT, with HOST an address or a name to resolve.
fn socket_addr(key: &str, address: &str) -> Result<SocketAddr, ConfigError> {
    address
        .parse::<SocketAddr>()
        .ok()
        .or_else(|| address.to_socket_addrs().ok().and_then(|mut a| a.next()))
        .ok_or_else(|| invalid(key, format!("{:?} is not HOST:PORT", address.chars().take(256).collect::<String>())))
}

impl ConfigFile {
    /// Whether every listener is reachable from this host only: loopback
    /// addresses and Unix sockets. The default of `allow_anonymous` follows
    /// it: open on a private listener, closed on one others can reach.
    pub fn loopback_only(listeners: &[ListenAddr]) -> bool {
        crate::config::loopback_only(listeners)
    }

    /// The config file `tinymq config` prints: every key, with its default
    /// and a comment. Keys whose default depends on the machine or on the
    /// listeners are shown commented out.
    pub fn default_text() -> String {
        default_file()
    }
}

/// The line (from 1) of byte `offset` in `text`, and the key on it: the
/// left of `key = value` (or a `[table]` header), under the table header
/// above it, as `table.key` (`listener[2].key` for the second of an array
/// of tables).
fn locate(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let before = text.get(..offset).unwrap_or(text);
    let line_number = Some(before.matches('\n').count() + 1);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if let Some((_, name)) = header(line) {
        return (line_number, Some(name));
    }
    let own = match line.split_once('=') {
        Some((key, _))
            if !key.trim().is_empty() && key.chars().all(|c| c.is_alphanumeric() || "_-.\"' ".contains(c)) =>
        {
            key.trim().replace(['"', '\''], "")
        }
        _ => return (line_number, None),
    };
    // The table this line is in, and which of its name for `[[arrays]]`.
    let mut table = None;
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for (array, name) in text[..line_start].lines().filter_map(header) {
        if array {
            let count = match arrays.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    arrays.push((name.clone(), 1));
                    1
                }
            };
            table = Some(format!("{name}[{count}]"));
        } else {
            table = Some(name);
        }
    }
    let key = match table {
        Some(table) => format!("{table}.{own}"),
        None => own,
    };
    (line_number, Some(key))
}

/// A `[table]` or `[[array]]` header's name, and whether it is an array.
fn header(line: &str) -> Option<(bool, String)> {
    let line = line.trim();
    let array = line.starts_with("[[");
    let inner = line.strip_prefix(if array { "[[" } else { "[" })?;
    let end = inner.find(']')?;
    Some((array, inner[..end].trim().replace(['"', '\''], "")))
}

/// See [`ConfigFile::default_text`].
fn default_file() -> String {
    let frame = FrameLimits::default();
    let topic = TopicLimits::default();
    let session = SessionConfig::default();
    let broker = BrokerConfig::default();
    let http = crate::HttpClientLimits::default();
    let http_conn = crate::HttpConnConfig::default();
    let budget = BudgetConfig::default();
    let batched_ms = match broker.durability {
        Durability::Batched(interval) => interval.as_millis(),
        Durability::Immediate => 50,
    };
    format!(
        r##"# tinymq broker configuration (TOML): `tinymq broker --config FILE`.
# Every key is optional; one left out has the default shown here. A flag
# given to `tinymq broker` overrides the key it mirrors. Keys shown
# commented out have no fixed default: their comment says what it is.

# A binary-protocol listener; repeat the [[listener]] table for several.
# --network and --address replace them all with the one they name.
[[listener]]
# The kind of listener: "tcp" or "unix".
network = "tcp"
# HOST:PORT for tcp, or a socket path for unix.
address = "{DEFAULT_ADDRESS}"

# The HTTP listener: the Moustique-compatible API, the plain API and the
# status page.
[http]
# Whether to listen for HTTP at all (--no-http turns it off).
enabled = true
# Its HOST:PORT (--http).
address = "{DEFAULT_HTTP_ADDRESS}"
# Seconds after which a Moustique client not seen by PICKUP or SUBSCRIBE
# is dropped, with its queue (--http-client-timeout).
client_timeout_secs = {client_timeout}
# Messages queued per Moustique client; the oldest go first
# (--http-queue-size).
queue_size = {queue_size}
# Seconds a request may take from its first byte to its last
# (--http-request-timeout).
request_timeout_secs = {request_timeout}
# Seconds between comments on an idle event stream (--sse-heartbeat).
sse_heartbeat_secs = {heartbeat}
# The order of Moustique's parameter encoding: "current" (ROT13, then
# Base64: today's clients), "legacy" (Base64, then ROT13: clients before
# December 2025), or "auto": each request in the order it came in
# (--moustique-encoding).
moustique_encoding = "auto"
# HOST:PORT of an HTTPS listener, with the [tls] certificate (--https;
# default: none).
# https = "127.0.0.1:33335"

{mqtt}
# A PEM certificate chain and its private key: with them, the binary
# listeners on TCP speak TLS (--tls-cert, --tls-key; default: none).
# [tls]
# cert = "/etc/tinymq/cert.pem"
# key = "/etc/tinymq/key.pem"

# Where stored values, users and Moustique clients are kept.
[store]
# The data directory, created if missing (--data).
data = "{DEFAULT_DATA_DIR}"
# Keep nothing on disk; overrides data (--in-memory).
in_memory = false
# "batched": commit within commit_interval_ms; "immediate": commit before
# acknowledging (--durability).
durability = "batched"
# Under batched, commit at least every this many milliseconds
# (--commit-interval-ms).
commit_interval_ms = {batched_ms}

# Who may connect, and how peers that keep sending bad requests are
# slowed down.
[access]
# Whether clients without credentials are let in, to the public namespace
# (--allow-anonymous). Default: true when every listener is on loopback or
# a Unix socket, else false.
# allow_anonymous = true
# The only peers allowed to connect, on every transport but Unix sockets:
# IP addresses and CIDR ranges, IPv4 or IPv6 (--allowed-peers). Others get
# 401 or Disconnect 2. Default: every peer.
# allowed_peers = ["127.0.0.1", "::1", "10.0.0.0/8"]
# Bad requests (wrong credentials, unknown paths, malformed requests) an
# address may make in a burst before its new connections get 429 or
# Disconnect 2; 0 turns this off (--peer-budget).
peer_budget = {burst}
# Seconds per bad request the address is allowed again
# (--peer-budget-refill).
peer_budget_refill_secs = {refill}

# Threads, connections, and the size of what clients may send.
[limits]
# Event-loop threads (--threads). Default: the number of cores.
# threads = 2
# Connections at once, over all listeners (--max-connections).
max_connections = {max_connections}
# Keep-alive interval in seconds; a client silent for 1.5 times it is
# closed (--keep-alive).
keep_alive_secs = {keep_alive}
# Seconds a persistent session (its subscriptions and queued QoS 1
# messages) outlives its connection, and the most a client may ask for
# (--session-expiry).
session_expiry_secs = {session_expiry}
# The longest message payload, in bytes.
max_payload_bytes = {payload}
# The longest topic name or filter, in bytes (at most 65535).
max_topic_bytes = {topic_bytes}
# The most levels in a topic name or filter.
max_topic_levels = {topic_levels}
# The longest client id, in bytes (at most 65535).
max_client_id_bytes = {client_id}
# Unsent bytes per binary connection before it is cut as a slow consumer
# (--max-queue-bytes).
outbound_queue_bytes = {outbound}

[log]
# "error", "warn", "info" or "debug", to stderr (--log-level).
level = "info"
# Seconds between the broker's figures on $SYS/broker/...; 0 for never
# (--sys-interval).
sys_interval_secs = {sys_interval}

# A bridge to a NATS cluster or an MQTT broker (README.md, "More than one
# machine"); repeat the [[bridge]] table for several. None by default.
# --bridge replaces them all with the one its flags describe.
# [[bridge]]
# "nats" or "mqtt". Default: "mqtt" for mqtt:// or mqtts:// servers, else
# "nats".
# kind = "nats"
# Servers, tried in turn (NATS: with those the cluster announces):
# nats://HOST:PORT, tls://HOST:PORT, mqtt://HOST:PORT, mqtts://HOST:PORT,
# with USER:PASSWORD@ (NATS also TOKEN@) before the host if needed.
# servers = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
# The user name for the far side, if not in the URLs.
# username = "bridge"
# Its password.
# password = "secret"
# A NATS authentication token, instead of a user name and password.
# token = "s3cr3t"
# NATS: a file holding a user's NKEY seed (SU..., as nk or nsc write it),
# instead of the above: CONNECT carries its public key and signs the nonce.
# nkey_seed_file = "/etc/tinymq/bridge.nk"
# NATS in operator mode: a .creds file (the user's JWT and seed, as nsc
# writes it), instead of the above: CONNECT carries the JWT, signs the nonce.
# creds_file = "/etc/tinymq/bridge.creds"
# TLS to the far side (on too with tls:// or mqtts:// servers).
# tls = false
# The PEM CA the far side's certificate must be issued by; needed with TLS.
# ca_file = "/etc/tinymq/far-side-ca.pem"
# A client certificate (PEM), for a far side that requires one (mutual
# TLS); needs TLS and key_file.
# cert_file = "/etc/tinymq/bridge-cert.pem"
# Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
# key_file = "/etc/tinymq/bridge-key.pem"
# MQTT: "5" (with No Local; falls back to 3.1.1 if refused) or "3.1.1".
# mqtt_version = "5"
# MQTT: the QoS of every message bridged, both ways: 0, or 1 (kept until the
# far side acknowledges it, over a persistent session named after broker_id,
# which must then be set).
# qos = 0
# The user whose namespace is bridged. Default: the public namespace.
# namespace = "alice"
# Filters whose messages are sent to NATS.
# out = ["sensors/#"]
# Filters whose messages are taken in from NATS.
# in = ["commands/#"]
# Filters bridged both ways.
# both = []
# The prefix: a/b is PREFIX.a.b on NATS, PREFIX/a/b on MQTT. Default: none.
# prefix = "site1"
# This broker's id in the origin header; brokers bridging the same
# subjects need different ones. Default: made from the process id and time.
# broker_id = "tinymq-1"
# Messages held while the bridge is down; more are dropped and counted.
# queue_limit = 10000
"##,
        sys_interval = BrokerConfig::default().sys_interval.as_secs(),
        client_timeout = http.timeout.as_secs(),
        queue_size = http.queue_size,
        request_timeout = http_conn.request_timeout.as_secs(),
        heartbeat = http_conn.heartbeat.as_secs(),
        burst = budget.burst,
        refill = budget.refill.as_secs(),
        max_connections = broker.max_connections,
        keep_alive = session.keep_alive.as_secs(),
        session_expiry = broker.sessions.session_expiry.as_secs(),
        payload = frame.max_payload_len,
        topic_bytes = topic.max_len,
        topic_levels = topic.max_levels,
        client_id = frame.max_client_id_len,
        outbound = session.outbound_limit,
        mqtt = mqtt::default_text(),
    )
}

#[cfg(test)]
mod tests;
