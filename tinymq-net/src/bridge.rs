//! Bridges to a NATS cluster or an MQTT broker: their settings
//! ([`BridgeConfig`]) and the figures the loop that runs them shares with
//! STATS and `/metrics`.
//!
//! A bridge is not a thread: it is one more connection on event loop 0,
//! driven by [`tinymq_core::nats::NatsClient`] or
//! [`tinymq_core::mqtt::MqttClient`] (see `event_loop::bridge`). Publishes
//! matching its `out` filters reach it through the router like any
//! subscriber's; messages on its `in` filters' subjects or topics are
//! published into its namespace (the public one unless it names a user's).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tinymq_core::metrics::BridgeFigures;
use tinymq_core::mqtt::MqttVersion;
use tinymq_core::nats::{Headers, NkeySeed, SubjectMapping, UserCreds};
use tinymq_core::{Filter, TopicLimits, TopicName};

use crate::error::Error;
use crate::tls::ClientTls;

/// What a bridge speaks to the far side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BridgeKind {
    /// The NATS client protocol, to a NATS server or cluster.
    #[default]
    Nats,
    /// MQTT (5, else 3.1.1), to an MQTT broker (Mosquitto, EMQX, HiveMQ).
    Mqtt,
}

impl BridgeKind {
    /// The kind `servers`' schemes name: `mqtt://` or `mqtts://` is MQTT,
    /// anything else NATS.
    pub fn of_servers(servers: &[String]) -> Self {
        let mqtt = |s: &String| s.trim_start().starts_with("mqtt://") || s.trim_start().starts_with("mqtts://");
        if servers.iter().any(mqtt) { BridgeKind::Mqtt } else { BridgeKind::Nats }
    }
}

/// One bridge to a NATS cluster or an MQTT broker.
#[derive(Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// What the far side speaks.
    pub kind: BridgeKind,
    /// Servers, tried in turn: `nats://host:port`, `tls://host:port`,
    /// `mqtt://host:port`, `mqtts://host:port` or `host:port`, with
    /// `user:password@` (or, for NATS, `token@`) before the host if the
    /// server wants credentials. NATS bridges add the servers the cluster
    /// announces.
    pub servers: Vec<String>,
    /// Filters whose messages go out to NATS.
    pub out: Vec<String>,
    /// Filters whose messages come in from NATS.
    pub inbound: Vec<String>,
    /// A subject prefix (`site1` maps `a/b` to `site1.a.b`); empty for none.
    pub prefix: String,
    /// This broker's id, in the origin header of what it sends: a message
    /// carrying it is never taken back in. Brokers bridging the same
    /// subjects must have different ids.
    pub broker_id: String,
    /// Messages held while the bridge is down, sent once it is up; more
    /// are dropped and counted (default 10,000).
    pub queue_limit: usize,
    /// User name for the far side (NATS `user`, MQTT user name); a URL's
    /// `user:password@` is used when this is not set.
    pub username: Option<String>,
    /// Password for the far side.
    pub password: Option<String>,
    /// NATS `auth_token`; a NATS URL's `token@` is used when this is not set.
    pub token: Option<String>,
    /// NATS bridges: a file holding a user's NKEY seed (`SU...`, as `nk`
    /// and `nsc` write it): CONNECT carries its public key and its
    /// signature of the server's nonce. Read at the start; the seed is
    /// never shown.
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS bridges: a `.creds` file (a user JWT and its seed, as `nsc`
    /// writes it) for a server in operator mode: CONNECT carries the JWT
    /// and the seed's signature of the nonce. Read at the start.
    pub creds_file: Option<PathBuf>,
    /// Speak TLS to the far side; `tls://` and `mqtts://` servers turn it on.
    pub tls: bool,
    /// The CA certificates (PEM) the far side's certificate must be issued
    /// by; required with TLS (there is no system trust store).
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM chain, the bridge's first) to present to
    /// a far side that requires one (mutual TLS); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The MQTT protocol level (MQTT bridges only; default 5 with a
    /// fallback to 3.1.1).
    pub mqtt_version: MqttVersion,
    /// The namespace bridged: a user's name, or empty for the public one
    /// (the default). One namespace a bridge; several bridges for several.
    pub namespace: String,
    /// MQTT bridges: the QoS of every message bridged, both ways, whatever
    /// QoS it was published with here or there (as Mosquitto's bridge
    /// gives each topic one QoS). 0 (the default) or 1: at 1 each message
    /// sent is kept until the far side acknowledges it and sent again
    /// after a reconnect, messages taken in are acknowledged once routed
    /// here (committed, under `--durability immediate`), and the session
    /// on the far side is persistent, named after `broker_id`.
    pub qos: u8,
}

impl std::fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets, in fields or in URLs, stay out of logs.
        let servers: Vec<String> = self.servers.iter().map(|s| ServerUrl::parse(s).display()).collect();
        f.debug_struct("BridgeConfig")
            .field("kind", &self.kind)
            .field("servers", &servers)
            .field("out", &self.out)
            .field("inbound", &self.inbound)
            .field("prefix", &self.prefix)
            .field("broker_id", &self.broker_id)
            .field("queue_limit", &self.queue_limit)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<password>"))
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("creds_file", &self.creds_file)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("mqtt_version", &self.mqtt_version)
            .field("namespace", &self.namespace)
            .field("qos", &self.qos)
            .finish()
    }
}

/// A server URL taken apart: `scheme://user:password@host:port`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    pub(crate) scheme: String,
    pub(crate) host_port: String,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl ServerUrl {
    pub(crate) fn parse(url: &str) -> Self {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, host_port) = match rest.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, rest),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':')) {
            Some(Some((user, password))) => (Some(user.to_owned()), Some(password.to_owned())),
            Some(None) => (userinfo.map(str::to_owned), None),
            None => (None, None),
        };
        ServerUrl { scheme: scheme.to_ascii_lowercase(), host_port: host_port.to_owned(), user, password }
    }

    /// Whether the scheme asks for TLS.
    fn tls(&self) -> bool {
        matches!(self.scheme.as_str(), "tls" | "mqtts")
    }

    /// The URL without credentials, for logs and STATS.
    pub(crate) fn display(&self) -> String {
        match self.scheme.as_str() {
            "" => self.host_port.clone(),
            scheme => format!("{scheme}://{}", self.host_port),
        }
    }
}

/// How the far side authenticates the bridge.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    /// A NATS user's NKEY.
    pub(crate) nkey: Option<NkeySeed>,
    /// A NATS user's JWT and seed.
    pub(crate) creds: Option<UserCreds>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials({:?}, password: {}, token: {}, nkey: {:?}, creds: {:?})",
            self.username,
            self.password.is_some(),
            self.token.is_some(),
            self.nkey.as_ref().map(NkeySeed::public_key),
            self.creds.as_ref().map(|c| c.seed.public_key())
        )
    }
}

/// Topics on an MQTT broker: this side's topic with a prefix level (or
/// levels) in front, and no other change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TopicPrefix {
    /// Empty, or ending with `/`.
    prefix: String,
}

impl TopicPrefix {
    fn new(prefix: &str, limits: &TopicLimits) -> Result<Self, String> {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Ok(TopicPrefix::default());
        }
        if prefix.contains(['+', '#']) || prefix.starts_with('$') {
            return Err(format!("prefix {prefix:?}: no wildcards and no leading $ in an MQTT topic prefix"));
        }
        TopicName::new(prefix, limits).map_err(|e| format!("prefix {prefix:?}: {e}"))?;
        Ok(TopicPrefix { prefix: format!("{prefix}/") })
    }

    /// The far side's topic (or filter) for this side's.
    pub(crate) fn to_remote(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// This side's topic for the far side's, if it has the prefix.
    pub(crate) fn to_local<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(self.prefix.as_str()).filter(|t| !t.is_empty())
    }
}

/// How topics map to the far side's names.
#[derive(Debug)]
pub(crate) enum Mapping {
    Nats(SubjectMapping),
    Mqtt(TopicPrefix),
}

impl BridgeConfig {
    /// A bridge to `servers` with no filters, no prefix and `broker_id`.
    pub fn new(servers: Vec<String>, broker_id: impl Into<String>) -> Self {
        BridgeConfig {
            kind: BridgeKind::of_servers(&servers),
            servers,
            out: Vec::new(),
            inbound: Vec::new(),
            prefix: String::new(),
            broker_id: broker_id.into(),
            queue_limit: 10_000,
            username: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            creds_file: None,
            tls: false,
            ca_file: None,
            cert_file: None,
            key_file: None,
            mqtt_version: MqttVersion::Auto,
            namespace: String::new(),
            qos: 0,
        }
    }

    /// The servers without credentials, as STATS shows them.
    pub(crate) fn display_servers(&self) -> Vec<String> {
        self.servers.iter().map(|s| ServerUrl::parse(s).display()).collect()
    }

    /// Checks every setting: the filters, the prefix, the broker id (it
    /// must fit a header value), that there is a server and a filter, and
    /// the TLS settings (the CA file is read here).
    pub(crate) fn validate(&self, limits: &TopicLimits) -> Result<Checked, Error> {
        let bad = |why: String| Error::Bridge(why);
        let urls: Vec<ServerUrl> =
            self.servers.iter().filter(|s| !s.trim().is_empty()).map(|s| ServerUrl::parse(s)).collect();
        if urls.is_empty() {
            return Err(bad("a bridge needs at least one server".into()));
        }
        for url in &urls {
            let known: &[&str] = match self.kind {
                BridgeKind::Nats => &["", "nats", "tls"],
                BridgeKind::Mqtt => &["", "mqtt", "mqtts"],
            };
            if !known.contains(&url.scheme.as_str()) {
                return Err(bad(format!("{}: not a {:?} server URL", url.display(), self.kind)));
            }
            if url.host_port.is_empty() {
                return Err(bad(format!("{:?}: no HOST:PORT", url.display())));
            }
        }
        if self.out.is_empty() && self.inbound.is_empty() {
            return Err(bad("a bridge needs at least one filter (out or in)".into()));
        }
        let filters = |list: &[String]| -> Result<Vec<Filter>, Error> {
            list.iter()
                .map(|f| Filter::new(f, limits).map_err(|source| Error::InvalidTopic { topic: f.clone(), source }))
                .collect()
        };
        let mapping = match self.kind {
            BridgeKind::Nats => Mapping::Nats(SubjectMapping::new(&self.prefix).map_err(|e| bad(e.to_string()))?),
            BridgeKind::Mqtt => Mapping::Mqtt(TopicPrefix::new(&self.prefix, limits).map_err(bad)?),
        };
        if self.broker_id.is_empty() {
            return Err(bad("a bridge needs a broker id".into()));
        }
        match (self.qos, self.kind) {
            (0, _) | (1, BridgeKind::Mqtt) => {}
            (1, BridgeKind::Nats) => {
                return Err(bad("qos 1: NATS core has no acknowledgements; only MQTT bridges take qos 1".into()));
            }
            (qos, _) => return Err(bad(format!("qos {qos}: 0 or 1 (QoS 2 is not bridged)"))),
        }
        if self.kind == BridgeKind::Mqtt && self.broker_id.len() > 1024 {
            return Err(bad("broker id: longer than 1024 bytes".into()));
        }
        let live = Headers::for_bridge(&self.broker_id, false).map_err(|e| bad(format!("broker id: {e}")))?;
        let retained = Headers::for_bridge(&self.broker_id, true).map_err(|e| bad(format!("broker id: {e}")))?;
        let from_url = urls.iter().find(|u| u.user.is_some());
        let mut credentials = Credentials {
            username: self.username.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey: None,
            creds: None,
        };
        if credentials == Credentials::default()
            && let Some(url) = from_url
        {
            match (&url.password, self.kind) {
                // NATS' `nats://TOKEN@host`.
                (None, BridgeKind::Nats) => credentials.token = url.user.clone(),
                _ => (credentials.username, credentials.password) = (url.user.clone(), url.password.clone()),
            }
        }
        for (key, path) in [("nkey_seed_file", &self.nkey_seed_file), ("creds_file", &self.creds_file)] {
            let Some(path) = path else { continue };
            if self.kind != BridgeKind::Nats {
                return Err(bad(format!("{key}: NATS credentials; MQTT bridges take a user name")));
            }
            if credentials != Credentials::default() {
                return Err(bad(format!(
                    "{key}: replaces a user name, password, token or other NATS credentials; give one"
                )));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("{key} {}: cannot read it: {e}", path.display())))?;
            let wrong = |e: tinymq_core::nats::NkeyError| bad(format!("{key} {}: {e}", path.display()));
            match key {
                "nkey_seed_file" => credentials.nkey = Some(NkeySeed::from_text(&text).map_err(wrong)?),
                _ => credentials.creds = Some(UserCreds::from_text(&text).map_err(wrong)?),
            }
        }
        if credentials.password.is_some() && credentials.username.is_none() {
            return Err(bad("a password needs a user name".into()));
        }
        // MQTT strings carry a two-byte length.
        for (what, value) in [("user name", &credentials.username), ("password", &credentials.password)] {
            if value.as_ref().is_some_and(|v| v.len() > usize::from(u16::MAX)) {
                return Err(bad(format!("the {what} is longer than 65535 bytes")));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(bad("a client certificate needs both cert_file and key_file".into()));
        }
        let tls = if self.tls || urls.iter().any(ServerUrl::tls) {
            let Some(ca_file) = &self.ca_file else {
                return Err(bad("TLS to the far side needs ca_file, the CA that issued its certificate".into()));
            };
            let ca = ClientTls::with_ca_file(ca_file).map_err(|e| bad(e.to_string()))?;
            match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    Some(ca.with_client_cert_files(cert, key).map_err(|e| bad(format!("client certificate: {e}")))?)
                }
                _ => Some(ca),
            }
        } else if self.cert_file.is_some() {
            return Err(bad("a client certificate (cert_file, key_file) needs TLS to the far side".into()));
        } else {
            None
        };
        Ok(Checked {
            servers: urls.into_iter().map(|u| u.host_port).collect(),
            out: filters(&self.out)?,
            inbound: filters(&self.inbound)?,
            mapping,
            live,
            retained,
            credentials,
            tls,
        })
    }
}

/// A broker id for a bridge that was given none: the process id and the
/// time, different enough between brokers on one machine and across them.
/// (The shell's choice: the core takes ids as given.)
pub fn default_broker_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("tinymq-{}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// A [`BridgeConfig`] that passed [`BridgeConfig::validate`], in the
/// core's types.
#[derive(Debug)]
pub(crate) struct Checked {
    /// `host:port` of each server.
    pub(crate) servers: Vec<String>,
    pub(crate) out: Vec<Filter>,
    pub(crate) inbound: Vec<Filter>,
    pub(crate) mapping: Mapping,
    /// The headers of a live message, and of a retained one.
    pub(crate) live: Headers,
    pub(crate) retained: Headers,
    pub(crate) credentials: Credentials,
    /// TLS to the far side, with the CA it trusts.
    pub(crate) tls: Option<ClientTls>,
}

/// A bridge's figures, written by loop 0, read by STATS and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct BridgeStats {
    pub(crate) kind: BridgeKind,
    pub(crate) servers: Vec<String>,
    pub(crate) connected: AtomicBool,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) drops: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) queued: AtomicU64,
    /// The server of the current or last connection, and the last error
    /// (a failed dial, a lost connection, the server's `-ERR`). Locked only
    /// when they change or are read.
    pub(crate) server: Mutex<Option<String>>,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl BridgeStats {
    pub(crate) fn new(config: &BridgeConfig) -> Self {
        BridgeStats { kind: config.kind, servers: config.display_servers(), ..BridgeStats::default() }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, error: impl Into<String>) {
        *self.last_error.lock() = Some(error.into());
    }

    pub(crate) fn figures(&self) -> BridgeFigures {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BridgeFigures {
            kind: match self.kind {
                BridgeKind::Nats => "nats",
                BridgeKind::Mqtt => "mqtt",
            }
            .to_owned(),
            servers: self.servers.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            server: self.server.lock().clone(),
            messages_in: load(&self.messages_in),
            messages_out: load(&self.messages_out),
            drops: load(&self.drops),
            reconnects: load(&self.reconnects),
            queued: load(&self.queued),
            last_error: self.last_error.lock().clone(),
        }
    }
}
