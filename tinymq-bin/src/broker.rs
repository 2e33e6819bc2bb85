//! `tinymq broker`: runs a broker until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
use tinymq_net::store::Durability;
use tinymq_net::{Broker, ListenAddr};
use tinymq_net::{HttpClientLimits, HttpConnConfig};

use crate::args::{self, Failure, Outcome, UsageError};
use crate::logger::{self, Level};

const USAGE: &str = "\
Usage: tinymq broker [OPTIONS]

Runs a broker in the foreground until SIGINT or SIGTERM. Users (`tinymq user`)
are read from the data directory when it starts.

Options:
  --network tcp|unix        binary-protocol listener kind [default: tcp]
  --address ADDR            HOST:PORT, or a socket path for unix [default: 127.0.0.1:1883]
  --http ADDR               HTTP listener: Moustique-compatible and plain API [default: 127.0.0.1:33334]
  --no-http                 no HTTP listener
  --http-client-timeout SECS  drop a Moustique client not seen for this long [default: 300]
  --http-queue-size N       messages queued per Moustique client; the oldest go first [default: 10000]
  --http-request-timeout SECS  a request must be whole this long after its first byte [default: 10]
  --sse-heartbeat SECS      comment sent on idle event streams this often [default: 15]
  --data DIR                store directory, created if missing [default: ./data]
  --in-memory               keep nothing on disk
  --durability MODE         immediate (commit before acknowledging) or batched [default: batched]
  --commit-interval-ms N    batched: commit at least every N ms [default: 50]
  --allow-anonymous BOOL    let clients without credentials in, to the public namespace;
                            false also limits statistics to admin users [default: true]
  --threads N               event-loop threads [default: number of cores]
  --keep-alive SECS         keep-alive interval; silent clients close after 1.5x [default: 60]
  --max-connections N       connections at once [default: 100000]
  --sys-interval SECS       publish the broker's figures to $SYS/broker/... this often; 0: never [default: 10]
  --log-level LEVEL         error, warn, info or debug [default: info]";

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
    let network = args::opt(&mut args, "--network")?.unwrap_or(Network::Tcp);
    let address: Option<String> = args::opt(&mut args, "--address")?;
    let http: Option<String> = args::opt(&mut args, "--http")?;
    let no_http = args::switch(&mut args, "--no-http");
    let client_timeout: Option<u64> = args::opt(&mut args, "--http-client-timeout")?;
    let queue_size: Option<usize> = args::opt(&mut args, "--http-queue-size")?;
    let request_timeout: Option<u64> = args::opt(&mut args, "--http-request-timeout")?;
    let heartbeat: Option<u64> = args::opt(&mut args, "--sse-heartbeat")?;
    let in_memory = args::switch(&mut args, "--in-memory");
    let data: Option<PathBuf> = args::opt(&mut args, "--data")?;
    let durability: Option<DurabilityMode> = args::opt(&mut args, "--durability")?;
    let interval_ms: Option<u64> = args::opt(&mut args, "--commit-interval-ms")?;
    let allow_anonymous = args::opt_bool(&mut args, "--allow-anonymous")?.unwrap_or(true);
    let threads: Option<usize> = args::opt(&mut args, "--threads")?;
    let keep_alive: Option<u64> = args::opt(&mut args, "--keep-alive")?;
    let max_connections: Option<usize> = args::opt(&mut args, "--max-connections")?;
    let sys_interval: Option<u64> = args::opt(&mut args, "--sys-interval")?;
    let level: Level = args::opt(&mut args, "--log-level")?.unwrap_or("info".parse().expect("valid level"));
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
    let durability = match (durability.unwrap_or(DurabilityMode::Batched), interval_ms) {
        (DurabilityMode::Immediate, Some(_)) => {
            return Err(UsageError("--commit-interval-ms: only with --durability batched".into()).into());
        }
        (DurabilityMode::Immediate, None) => Durability::Immediate,
        (DurabilityMode::Batched, ms) => Durability::Batched(Duration::from_millis(ms.unwrap_or(50))),
    };
    if no_http && http.is_some() {
        return Err(UsageError("--no-http: cannot be used with --http".into()).into());
    }
    for (flag, value) in [
        ("--http-client-timeout", client_timeout),
        ("--http-request-timeout", request_timeout),
        ("--sse-heartbeat", heartbeat),
    ] {
        if value == Some(0) {
            return Err(UsageError(format!("{flag}: must be at least 1 second")).into());
        }
    }
    if queue_size == Some(0) {
        return Err(UsageError("--http-queue-size: must be at least 1".into()).into());
    }
    let http = match (no_http, http) {
        (true, _) => None,
        (false, address) => Some(socket_addr("--http", &address.unwrap_or_else(|| "127.0.0.1:33334".into()))?),
    };
    if keep_alive == Some(0) {
        return Err(UsageError("--keep-alive: must be at least 1 second".into()).into());
    }
    logger::init(level);

    let mut builder = Broker::builder()
        .listen(listen_addr(network, address)?)
        .allow_anonymous(allow_anonymous)
        .durability(durability);
    if !in_memory {
        builder = builder.data_dir(data.unwrap_or_else(|| PathBuf::from("./data")));
    }
    if let Some(threads) = threads {
        builder = builder.threads(threads);
    }
    if let Some(secs) = keep_alive {
        builder = builder.keep_alive(Duration::from_secs(secs));
    }
    if let Some(address) = http {
        builder = builder.listen_http(address);
    }
    let mut limits = HttpClientLimits::default();
    if let Some(secs) = client_timeout {
        limits.timeout = Duration::from_secs(secs);
    }
    if let Some(size) = queue_size {
        limits.queue_size = size;
    }
    builder = builder.http_client_limits(limits);
    let mut http_conn = HttpConnConfig::default();
    if let Some(secs) = request_timeout {
        http_conn.request_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = heartbeat {
        http_conn.heartbeat = Duration::from_secs(secs);
    }
    builder = builder.http_conn(http_conn);
    if let Some(max) = max_connections {
        builder = builder.max_connections(max);
    }
    if let Some(secs) = sys_interval {
        builder = builder.sys_interval(Duration::from_secs(secs));
    }
    // Register the signals before starting, so none is missed in between.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(Failure::run)?;
    // A write past the file-size limit (RLIMIT_FSIZE) raises SIGXFSZ, whose
    // default action kills the process. With a handler the write fails with
    // EFBIG instead, which the store reports like a full disk: a failed
    // commit, a logged error and 503s, while the broker goes on serving.
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false))).map_err(Failure::run)?;
    let broker = builder.start().map_err(Failure::run)?;
    log::info!("tinymq {} started", env!("CARGO_PKG_VERSION"));
    if let Some(signal) = signals.forever().next() {
        log::info!("signal {signal} received; stopping");
    }
    broker.shutdown();
    Ok(())
}
