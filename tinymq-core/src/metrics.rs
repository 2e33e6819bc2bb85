//! The broker's figures as plain data: what the shell counts and what
//! STATS, `/api/v1/stats` and `/metrics` show ([`Figures`]), and the
//! latency histogram the store's writer fills ([`DurationHistogram`]).
//!
//! No HTTP here: the store's writer thread and the HTTP service both use
//! these types, and the writer must not depend on HTTP for them.

use crate::auth::PeerReport;

/// The broker-wide figures STATS and `/metrics` show, read by the shell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Open connections, by transport name.
    pub connections: Vec<(&'static str, u64)>,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections refused at the limit.
    pub refused_connections: u64,
    /// Connections refused because their peer is not on the allow-list.
    pub refused_peers: u64,
    /// Connections, logins and requests refused because their address
    /// spent its budget of bad requests.
    pub throttled_requests: u64,
    /// Addresses out of budget right now.
    pub throttled_peers: u64,
    /// TLS handshakes that failed (plaintext or garbage on a TLS port, a
    /// client refusing the certificate).
    pub tls_handshake_failures: u64,
    /// Messages published, every transport.
    pub messages_in: u64,
    /// Deliveries made, every transport.
    pub messages_out: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Subscribers cut for not reading (Disconnect 7).
    pub slow_consumer_drops: u64,
    /// Deliveries dropped from full in-process queues.
    pub local_queue_drops: u64,
    /// Writes handed to the store.
    pub store_writes: u64,
    /// Writes the store made durable (a write replaced in its queue by a
    /// later one to the same record counts when that one commits).
    pub store_committed_writes: u64,
    /// Records the store's commits wrote (after replacing).
    pub store_records_written: u64,
    /// Store transactions committed.
    pub store_commits: u64,
    /// Store commits that failed.
    pub store_failed_commits: u64,
    /// Writes whose writer was told the store failed them (a 503, or an
    /// error from an in-process publish).
    pub store_failures: u64,
    /// Records waiting for the next commit.
    pub store_pending: u64,
    /// The error of the store's last commit, while no later one succeeded.
    pub store_error: Option<String>,
    /// Seconds since the broker started.
    pub uptime_secs: u64,
    // Observability figures, added together.
    /// Broker-sent Disconnects, by reason ([`ReasonCode::name`](crate::ReasonCode::name)).
    pub disconnects: Vec<(&'static str, u64)>,
    /// How long the store's successful commits took.
    pub store_commit_seconds: DurationHistogram,
    /// The addresses tracked for bad requests (`/CROOKS`), their times on
    /// the same clock as the request's `now`.
    pub peers: Vec<PeerReport>,
    /// The process's resident memory, where the shell can tell.
    pub rss_bytes: Option<u64>,
    /// The process's threads, where the shell can tell.
    pub threads: Option<u64>,
    /// The bridges (NATS or MQTT), in the order they were configured.
    pub bridges: Vec<BridgeFigures>,
    /// The durable sessions and their QoS 1 queues (the broker fills
    /// them, in [`Broker::fill_figures`](crate::broker::Broker::fill_figures)).
    pub sessions: crate::durable::SessionFigures,
}

/// One bridge's state and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeFigures {
    /// What the far side speaks: `nats` or `mqtt`.
    pub kind: String,
    /// The servers it was configured with.
    pub servers: Vec<String>,
    /// Whether it is connected (the server answered its handshake).
    pub connected: bool,
    /// The server of its current or last connection.
    pub server: Option<String>,
    /// Messages taken in from the far side and published here.
    pub messages_in: u64,
    /// Messages sent out to the far side.
    pub messages_out: u64,
    /// Messages dropped: its queue full while down, its outbound buffer
    /// full, more than the server takes, or the server's slow-consumer
    /// drops it was told of.
    pub drops: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Messages held until it is up.
    pub queued: u64,
    /// The last error: a failed dial, a lost connection, a NATS `-ERR`, a
    /// refused MQTT CONNECT or subscription.
    pub last_error: Option<String>,
}

/// Durations counted into fixed buckets, for a Prometheus histogram.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Durations at most [`DurationHistogram::BOUNDS`]`[i]` and over the
    /// bound before it (not cumulative).
    pub buckets: [u64; DurationHistogram::BOUNDS.len()],
    /// Durations recorded.
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_nanos: u64,
}

impl DurationHistogram {
    /// The buckets' upper bounds, in seconds.
    pub const BOUNDS: [f64; 8] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

    /// Counts one duration.
    pub fn record(&mut self, duration: std::time::Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(i) = Self::BOUNDS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The sum in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }
}
