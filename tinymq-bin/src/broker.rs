//! `tinymq broker`: runs a broker until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
use tinymq_core::auth::AllowList;
use tinymq_core::http::encoding::EncodingMode;
use tinymq_net::Durability;
use tinymq_net::{Broker, ListenAddr, ServerTls};
use tinymq_net::{ConfigError, ConfigFile};

use crate::args::{self, Failure, Outcome, UsageError};
use crate::logger::{self, Level};

const USAGE: &str = "\
Usage: tinymq broker [OPTIONS]

Runs a broker in the foreground until SIGINT or SIGTERM. Users (`tinymq user`)
are read from the data directory when it starts. Every option can be set in
a config file too (`tinymq config` prints one); an option given here
overrides the file.

Options:
  --config FILE             TOML configuration file; flags override its keys
  --network tcp|unix        binary-protocol listener kind [default: tcp]
  --address ADDR            HOST:PORT, or a socket path for unix [default: 127.0.0.1:1883]
                            (either replaces the config file's listeners)
  --http ADDR               HTTP listener: Moustique-compatible and plain API [default: 127.0.0.1:33334]
  --no-http                 no HTTP listener
  --tls-cert PEM --tls-key PEM  serve --address over TLS: certificate chain and private key
  --https ADDR              HTTPS listener with the same certificate [default: none]
  --mqtt ADDR               MQTT 3.1.1/5.0 listener, e.g. 127.0.0.1:1884 [default: none]
  --mqtts ADDR              MQTT over TLS with the same certificate [default: none]
  --http-client-timeout SECS  drop a Moustique client not seen for this long [default: 300]
  --http-queue-size N       messages queued per Moustique client; the oldest go first [default: 10000]
  --http-request-timeout SECS  a request must be whole this long after its first byte [default: 10]
  --sse-heartbeat SECS      comment sent on idle event streams this often [default: 15]
  --moustique-encoding MODE  order of Moustique's parameter encoding: current (ROT13 then
                            Base64), legacy (Base64 then ROT13: clients before Dec 2025), or
                            auto (each request answered in its own order) [default: auto]
  --data DIR                store directory, created if missing [default: ./data]
  --in-memory               keep nothing on disk
  --durability MODE         immediate (commit before acknowledging) or batched [default: batched]
  --commit-interval-ms N    batched: commit at least every N ms [default: 50]
  --allow-anonymous BOOL    let clients without credentials in, to the public namespace;
                            false also limits statistics to admin users
                            [default: true if every listener is on loopback or a Unix socket, else false]
  --allowed-peers LIST      comma-separated IPs and CIDR ranges allowed to connect, on every
                            transport but Unix sockets; others get 401 or Disconnect 2 [default: all]
  --peer-budget N           bad requests (wrong credentials, unknown paths, malformed requests)
                            an address may make in a burst before it is throttled; 0: never [default: 20]
  --peer-budget-refill SECS  one more bad request allowed per SECS [default: 3]
  --threads N               event-loop threads [default: number of cores]
  --keep-alive SECS         keep-alive interval; silent clients close after 1.5x [default: 60]
  --max-inflight N          QoS 1 messages in flight per connection each way: publishes not yet
                            acknowledged to the client, deliveries not yet acknowledged by it
                            [default: 1024]
  --session-expiry SECS     how long a persistent session (subscriptions, queued QoS 1 messages)
                            outlives its connection, and the most a client may ask [default: 86400]
  --max-connections N       connections at once [default: 100000]
  --max-queue-bytes N       unsent bytes per binary-protocol connection before it is cut as a
                            slow consumer (Disconnect 7) [default: 16777216]
  --bridge URLS             bridge to NATS or an MQTT broker: comma-separated servers tried in turn,
                            nats://HOST:PORT (NATS adds those the cluster announces), tls://HOST:PORT
                            (NATS over TLS), mqtt://HOST:PORT or mqtts://HOST:PORT, each with
                            USER:PASSWORD@ (NATS also TOKEN@) before HOST if needed [default: no bridge]
  --bridge-out FILTER       send messages matching FILTER to the far side (repeatable)
  --bridge-in FILTER        publish here what the far side has on FILTER (repeatable)
  --bridge-both FILTER      both of the above (repeatable)
  --bridge-prefix PREFIX    far-side prefix: a/b is PREFIX.a.b on NATS, PREFIX/a/b on MQTT [default: none]
  --bridge-queue N          messages held while the bridge is down; more are dropped [default: 10000]
  --bridge-ca FILE          PEM CA the far side's TLS certificate must be issued by (needed with
                            tls:// and mqtts://)
  --bridge-nkey FILE        NATS: a file holding a user's NKEY seed (SU...); CONNECT carries its public
                            key and its signature of the server's nonce
  --bridge-creds FILE       NATS in operator mode: a .creds file (user JWT and seed); CONNECT carries
                            the JWT and the seed's signature of the server's nonce
  --bridge-cert FILE        PEM client certificate to present to a far side that requires one
                            (mutual TLS; needs TLS and --bridge-key)
  --bridge-key FILE         the private key of --bridge-cert (PEM: PKCS#8, PKCS#1 or SEC1)
  --bridge-namespace USER   bridge USER's namespace instead of the public one
  --bridge-qos 0|1          MQTT bridges: QoS of every message bridged, both ways; 1 keeps each until
                            the far side acknowledges it, over a persistent session named after
                            --broker-id (then required), and with a store keeps what is going out
                            in it, across restarts [default: 0]
  --broker-id ID            this broker's id in the bridge's origin header (NATS) or user property
                            (MQTT 5); brokers bridging the same subjects need different ids
                            [default: tinymq-PID-TIME]
  --sys-interval SECS       publish the broker's figures to $SYS/broker/... this often; 0: never [default: 10]
  --log-level LEVEL         error, warn, info or debug [default: info]";

const CONFIG_USAGE: &str = "\
Usage: tinymq config

Prints the default configuration file: every key of `tinymq broker --config FILE`,
with its default and a comment.

    tinymq config > tinymq.toml";

/// The `--network` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Tcp,
    Unix,
}

impl std::str::FromStr for Network {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Network::Tcp),
            "unix" => Ok(Network::Unix),
            _ => Err("expected tcp or unix"),
        }
    }
}

/// The `--durability` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DurabilityMode {
    Immediate,
    Batched,
}

impl std::str::FromStr for DurabilityMode {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "immediate" => Ok(DurabilityMode::Immediate),
            "batched" => Ok(DurabilityMode::Batched),
            _ => Err("expected immediate or batched"),
        }
    }
}

/// The listener for `--network` and `--address`.
pub fn listen_addr(network: Network, address: Option<String>) -> Result<ListenAddr, UsageError> {
    match network {
        Network::Tcp => {
            let address = address.unwrap_or_else(|| "127.0.0.1:1883".into());
            Ok(ListenAddr::Tcp(socket_addr("--address", &address)?))
        }
        Network::Unix => {
            let path = address.ok_or_else(|| UsageError("--address: --network unix needs a socket path".into()))?;
            Ok(ListenAddr::Unix(PathBuf::from(path)))
        }
    }
}

/// HOST:PORT, with HOST an address or a name to resolve.
fn socket_addr(flag: &str, address: &str) -> Result<SocketAddr, UsageError> {
    address
        .parse::<SocketAddr>()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(address).map_err(|_| ()).and_then(|mut a| a.next().ok_or(()))
        })
        .map_err(|()| UsageError(format!("{flag}: {address:?} is not HOST:PORT")))
}

pub fn run(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, USAGE) {
        return Ok(());
    }
    let config_path: Option<PathBuf> = args::opt(&mut args, "--config")?;
    let network: Option<Network> = args::opt(&mut args, "--network")?;
    let address: Option<String> = args::opt(&mut args, "--address")?;
    let http: Option<String> = args::opt(&mut args, "--http")?;
    let no_http = args::switch(&mut args, "--no-http");
    let mqtt: Option<String> = args::opt(&mut args, "--mqtt")?;
    let mqtts: Option<String> = args::opt(&mut args, "--mqtts")?;
    let tls = TlsFlags::parse(&mut args)?;
    let bridge = BridgeFlags::parse(&mut args)?;
    let client_timeout: Option<u64> = args::opt(&mut args, "--http-client-timeout")?;
    let queue_size: Option<usize> = args::opt(&mut args, "--http-queue-size")?;
    let request_timeout: Option<u64> = args::opt(&mut args, "--http-request-timeout")?;
    let heartbeat: Option<u64> = args::opt(&mut args, "--sse-heartbeat")?;
    let encoding: Option<EncodingMode> = args::opt(&mut args, "--moustique-encoding")?;
    let in_memory = args::switch(&mut args, "--in-memory");
    let data: Option<PathBuf> = args::opt(&mut args, "--data")?;
    let durability: Option<DurabilityMode> = args::opt(&mut args, "--durability")?;
    let interval_ms: Option<u64> = args::opt(&mut args, "--commit-interval-ms")?;
    let allow_anonymous = args::opt_bool(&mut args, "--allow-anonymous")?;
    let allowed_peers: Option<AllowList> = args::opt(&mut args, "--allowed-peers")?;
    let peer_budget: Option<u32> = args::opt(&mut args, "--peer-budget")?;
    let peer_budget_refill: Option<u64> = args::opt(&mut args, "--peer-budget-refill")?;
    let threads: Option<usize> = args::opt(&mut args, "--threads")?;
    let keep_alive: Option<u64> = args::opt(&mut args, "--keep-alive")?;
    let session_expiry: Option<u64> = args::opt(&mut args, "--session-expiry")?;
    let max_inflight: Option<u16> = args::opt(&mut args, "--max-inflight")?;
    let max_connections: Option<usize> = args::opt(&mut args, "--max-connections")?;
    let max_queue_bytes: Option<usize> = args::opt(&mut args, "--max-queue-bytes")?;
    let sys_interval: Option<u64> = args::opt(&mut args, "--sys-interval")?;
    let level: Option<Level> = args::opt(&mut args, "--log-level")?;
    args::finish(args)?;
    if threads == Some(0) {
        return Err(UsageError("--threads: must be at least 1".into()).into());
    }
    if in_memory && data.is_some() {
        return Err(UsageError("--in-memory: cannot be used with --data".into()).into());
    }
    if interval_ms == Some(0) {
        return Err(UsageError("--commit-interval-ms: must be at least 1".into()).into());
    }
    if durability == Some(DurabilityMode::Immediate) && interval_ms.is_some() {
        return Err(UsageError("--commit-interval-ms: only with --durability batched".into()).into());
    }
    if no_http && http.is_some() {
        return Err(UsageError("--no-http: cannot be used with --http".into()).into());
    }
    for (flag, value) in [
        ("--http-client-timeout", client_timeout),
        ("--http-request-timeout", request_timeout),
        ("--sse-heartbeat", heartbeat),
        ("--keep-alive", keep_alive),
        ("--session-expiry", session_expiry),
        ("--peer-budget-refill", peer_budget_refill),
    ] {
        if value == Some(0) {
            return Err(UsageError(format!("{flag}: must be at least 1 second")).into());
        }
    }
    if queue_size == Some(0) {
        return Err(UsageError("--http-queue-size: must be at least 1".into()).into());
    }
    if max_connections == Some(0) {
        return Err(UsageError("--max-connections: must be at least 1".into()).into());
    }
    if max_queue_bytes == Some(0) {
        return Err(UsageError("--max-queue-bytes: must be at least 1".into()).into());
    }

    // The file first (or the defaults), then each flag over it.
    let file = match &config_path {
        // A file that cannot be read is a failure; one that says something
        // wrong is a usage error, like a bad flag.
        Some(path) => ConfigFile::load(path).map_err(|error| match error {
            ConfigError::Read { .. } => Failure::run(error),
            invalid => UsageError(invalid.to_string()).into(),
        })?,
        None => ConfigFile::default(),
    };
    let mut config = file.broker_config().map_err(|error| UsageError(error.to_string()))?;
    if network.is_some() || address.is_some() {
        // The flags name the one binary listener, replacing the file's.
        config.listeners.retain(|l| matches!(l, ListenAddr::Http(_) | ListenAddr::Mqtt(_) | ListenAddr::Mqtts(_)));
        config.listeners.insert(0, listen_addr(network.unwrap_or(Network::Tcp), address)?);
    }
    if no_http || http.is_some() {
        config.listeners.retain(|l| !matches!(l, ListenAddr::Http(_)));
    }
    if let Some(address) = http {
        config.listeners.push(ListenAddr::Http(socket_addr("--http", &address)?));
    }
    if let Some(secs) = client_timeout {
        config.http.client_limits.timeout = Duration::from_secs(secs);
    }
    if let Some(size) = queue_size {
        config.http.client_limits.queue_size = size;
    }
    if let Some(secs) = request_timeout {
        config.http_conn.request_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = heartbeat {
        config.http_conn.heartbeat = Duration::from_secs(secs);
    }
    if let Some(mode) = encoding {
        config.http.moustique_encoding = mode;
    }
    if in_memory {
        config.data_dir = None;
    } else if let Some(dir) = data {
        config.data_dir = Some(dir);
    }
    config.durability = match (durability, interval_ms, config.durability) {
        (Some(DurabilityMode::Immediate), _, _) => Durability::Immediate,
        (_, Some(ms), Durability::Batched(_)) | (Some(DurabilityMode::Batched), Some(ms), _) => {
            Durability::Batched(Duration::from_millis(ms))
        }
        (_, Some(_), Durability::Immediate) => {
            return Err(UsageError(
                "--commit-interval-ms: only with durability batched (the config file says immediate)".into(),
            )
            .into());
        }
        (Some(DurabilityMode::Batched), None, Durability::Immediate) => {
            Durability::Batched(Duration::from_millis(file.store.commit_interval_ms.unwrap_or(50)))
        }
        (_, None, durability) => durability,
    };
    // With a certificate, the binary-protocol listeners speak TLS; HTTPS
    // joins the listeners before the anonymous default looks at them.
    config.listeners = config
        .listeners
        .into_iter()
        .map(|l| if matches!(l, ListenAddr::Http(_)) { Ok(l) } else { tls.listen_addr(l) })
        .collect::<Result<_, _>>()?;
    if let Some(address) = tls.https {
        if tls.cert_key.is_none() && config.tls.is_none() {
            return Err(
                UsageError("--https needs --tls-cert and --tls-key (or [tls] in the config file)".into()).into()
            );
        }
        config.listeners.push(ListenAddr::Https(address));
    }
    // Each MQTT flag replaces the file's listener of its kind.
    if let Some(address) = mqtt {
        config.listeners.retain(|l| !matches!(l, ListenAddr::Mqtt(_)));
        config.listeners.push(ListenAddr::Mqtt(socket_addr("--mqtt", &address)?));
    }
    if let Some(address) = mqtts {
        if tls.cert_key.is_none() && config.tls.is_none() {
            return Err(
                UsageError("--mqtts needs --tls-cert and --tls-key (or [tls] in the config file)".into()).into()
            );
        }
        config.listeners.retain(|l| !matches!(l, ListenAddr::Mqtts(_)));
        config.listeners.push(ListenAddr::Mqtts(socket_addr("--mqtts", &address)?));
    }
    // Open on private listeners, closed on public ones (README.md, "Users"),
    // unless
    // a flag or the file says otherwise.
    config.allow_anonymous =
        allow_anonymous.or(file.access.allow_anonymous).unwrap_or_else(|| ConfigFile::loopback_only(&config.listeners));
    if let Some(peers) = allowed_peers {
        config.allowed_peers = Some(peers);
    }
    if let Some(burst) = peer_budget {
        config.peer_budget.burst = burst;
    }
    if let Some(secs) = peer_budget_refill {
        config.peer_budget.refill = Duration::from_secs(secs);
    }
    if let Some(threads) = threads {
        config.threads = threads;
    }
    if let Some(secs) = keep_alive {
        config.session.keep_alive = Duration::from_secs(secs);
    }
    if let Some(window) = max_inflight {
        if window == 0 {
            return Err(UsageError("--max-inflight: at least 1".into()).into());
        }
        config.session.max_inflight = window;
        config.sessions.queue.max_inflight = window;
        config.mqtt.max_inflight = window;
    }
    if let Some(secs) = session_expiry {
        config.sessions.session_expiry = Duration::from_secs(secs);
    }
    if let Some(max) = max_connections {
        config.max_connections = max;
    }
    if let Some(bytes) = max_queue_bytes {
        config.session.outbound_limit = bytes;
    }
    if let Some(secs) = sys_interval {
        config.sys_interval = Duration::from_secs(secs);
    }
    if let Some(bridge) = bridge.config()? {
        // Like --address for listeners: the flags' bridge replaces the file's.
        config.bridges = vec![bridge];
    }
    if config.listeners.is_empty() {
        return Err(UsageError("no listener: the config file and flags leave none".into()).into());
    }
    let level = level.or(file.log_level().map(Level::from)).unwrap_or_default();
    logger::init(level);

    // Register the signals before starting, so none is missed in between.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(Failure::run)?;
    // A write past the file-size limit (RLIMIT_FSIZE) raises SIGXFSZ, whose
    // default action kills the process. With a handler the write fails with
    // EFBIG instead, which the store reports like a full disk: a failed
    // commit, a logged error and 503s, while the broker goes on serving.
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false))).map_err(Failure::run)?;
    if let Some(path) = &config_path {
        log::info!("configuration read from {}", path.display());
    }
    let builder = tls.apply(Broker::builder().config(config))?;
    // Opening a damaged store can panic inside redb; the library turns that
    // into an error naming the file, which is all the user should see.
    let broker = crate::panics::quietly(|| builder.start()).map_err(Failure::run)?;
    log::info!("tinymq {} started", env!("CARGO_PKG_VERSION"));
    if let Some(signal) = signals.forever().next() {
        log::info!("signal {signal} received; stopping");
    }
    broker.shutdown();
    Ok(())
}

/// `tinymq config`: prints the default configuration file.
pub fn run_config(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, CONFIG_USAGE) {
        return Ok(());
    }
    args::finish(args)?;
    print!("{}", ConfigFile::default_text());
    Ok(())
}

/// `--bridge` and the flags that go with it.
struct BridgeFlags {
    servers: Option<String>,
    out: Vec<String>,
    inbound: Vec<String>,
    both: Vec<String>,
    prefix: Option<String>,
    queue: Option<usize>,
    ca_file: Option<PathBuf>,
    nkey_seed_file: Option<PathBuf>,
    creds_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    namespace: Option<String>,
    qos: Option<u8>,
    broker_id: Option<String>,
}

impl BridgeFlags {
    fn parse(args: &mut pico_args::Arguments) -> Result<Self, UsageError> {
        Ok(BridgeFlags {
            servers: args::opt(args, "--bridge")?,
            out: args::many(args, "--bridge-out")?,
            inbound: args::many(args, "--bridge-in")?,
            both: args::many(args, "--bridge-both")?,
            prefix: args::opt(args, "--bridge-prefix")?,
            queue: args::opt(args, "--bridge-queue")?,
            ca_file: args::opt(args, "--bridge-ca")?,
            nkey_seed_file: args::opt(args, "--bridge-nkey")?,
            creds_file: args::opt(args, "--bridge-creds")?,
            cert_file: args::opt(args, "--bridge-cert")?,
            key_file: args::opt(args, "--bridge-key")?,
            namespace: args::opt(args, "--bridge-namespace")?,
            qos: args::opt(args, "--bridge-qos")?,
            broker_id: args::opt(args, "--broker-id")?,
        })
    }

    /// The bridge they describe, if `--bridge` was given.
    fn config(self) -> Result<Option<tinymq_net::BridgeConfig>, UsageError> {
        let Some(servers) = self.servers else {
            let stray = [
                ("--bridge-out", !self.out.is_empty()),
                ("--bridge-in", !self.inbound.is_empty()),
                ("--bridge-both", !self.both.is_empty()),
                ("--bridge-prefix", self.prefix.is_some()),
                ("--bridge-queue", self.queue.is_some()),
                ("--bridge-ca", self.ca_file.is_some()),
                ("--bridge-nkey", self.nkey_seed_file.is_some()),
                ("--bridge-creds", self.creds_file.is_some()),
                ("--bridge-cert", self.cert_file.is_some()),
                ("--bridge-key", self.key_file.is_some()),
                ("--bridge-namespace", self.namespace.is_some()),
                ("--bridge-qos", self.qos.is_some()),
                ("--broker-id", self.broker_id.is_some()),
            ];
            return match stray.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(UsageError(format!("{flag}: only with --bridge"))),
                None => Ok(None),
            };
        };
        let servers: Vec<String> =
            servers.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Into::into).collect();
        if servers.is_empty() {
            return Err(UsageError("--bridge: needs at least one nats://HOST:PORT or mqtt://HOST:PORT".into()));
        }
        if self.out.is_empty() && self.inbound.is_empty() && self.both.is_empty() {
            return Err(UsageError("--bridge: needs --bridge-out, --bridge-in or --bridge-both".into()));
        }
        if self.qos.is_some_and(|qos| qos > 0) && self.broker_id.is_none() {
            return Err(UsageError(
                "--bridge-qos 1: needs --broker-id, the same across restarts: it names the far side's session".into(),
            ));
        }
        let broker_id = self.broker_id.unwrap_or_else(tinymq_net::default_broker_id);
        let mut bridge = tinymq_net::BridgeConfig::new(servers, broker_id);
        bridge.out = self.out.into_iter().chain(self.both.iter().cloned()).collect();
        bridge.inbound = self.inbound.into_iter().chain(self.both).collect();
        bridge.prefix = self.prefix.unwrap_or_default();
        if let Some(queue) = self.queue {
            bridge.queue_limit = queue;
        }
        bridge.ca_file = self.ca_file;
        bridge.nkey_seed_file = self.nkey_seed_file;
        bridge.creds_file = self.creds_file;
        bridge.cert_file = self.cert_file;
        bridge.key_file = self.key_file;
        bridge.namespace = self.namespace.unwrap_or_default();
        bridge.qos = self.qos.unwrap_or(0);
        Ok(Some(bridge))
    }
}

/// `--tls-cert`, `--tls-key` and `--https`.
struct TlsFlags {
    cert_key: Option<(PathBuf, PathBuf)>,
    https: Option<SocketAddr>,
}

impl TlsFlags {
    fn parse(args: &mut pico_args::Arguments) -> Result<Self, UsageError> {
        let cert: Option<PathBuf> = args::opt(args, "--tls-cert")?;
        let key: Option<PathBuf> = args::opt(args, "--tls-key")?;
        let https: Option<String> = args::opt(args, "--https")?;
        let cert_key = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(UsageError("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(UsageError("--tls-key needs --tls-cert".into())),
        };
        let https = https.map(|address| socket_addr("--https", &address)).transpose()?;
        Ok(TlsFlags { cert_key, https })
    }

    /// With a certificate, the binary-protocol listener speaks TLS.
    fn listen_addr(&self, address: ListenAddr) -> Result<ListenAddr, UsageError> {
        match (&self.cert_key, address) {
            (None, address) => Ok(address),
            (Some(_), ListenAddr::Tcp(address) | ListenAddr::Tls(address)) => Ok(ListenAddr::Tls(address)),
            // MQTT has its own flag for TLS (--mqtts).
            (Some(_), mqtt @ (ListenAddr::Mqtt(_) | ListenAddr::Mqtts(_))) => Ok(mqtt),
            (Some(_), _) => Err(UsageError("--tls-cert: TLS needs --network tcp".into())),
        }
    }

    /// Loads the certificate (a failure names the file).
    fn apply(&self, mut builder: tinymq_net::BrokerBuilder) -> Result<tinymq_net::BrokerBuilder, Failure> {
        if let Some((cert, key)) = &self.cert_key {
            builder = builder.tls(ServerTls::from_pem_files(cert, key).map_err(Failure::run)?);
        }
        Ok(builder)
    }
}
