//! What the two workload drivers (network, in `mod.rs`, and in-process,
//! in `in_process.rs`) share: a run's settings and its latency report.

use std::time::Duration;

use tinymq_net::ClientTls;

use super::protocol::Protocol;
use crate::broker::Network;

/// One run's settings, from the command line.
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) protocol: Protocol,
    pub(super) network: Network,
    pub(super) address: String,
    /// Where the subscribers connect, when not to `address` (another
    /// broker bridged to the first, another node of a cluster).
    pub(super) sub_address: Option<String>,
    pub(super) publishers: usize,
    pub(super) subscribers: usize,
    pub(super) count: u64,
    pub(super) size: usize,
    pub(super) rate: u64,
    pub(super) topic: String,
    pub(super) timeout: Duration,
    pub(super) pid: Option<u32>,
    pub(super) idle: Option<usize>,
    pub(super) in_process: bool,
    pub(super) batch: usize,
    pub(super) handshakes: Option<u64>,
    pub(super) parallel: usize,
    pub(super) tls: Option<ClientTls>,
    /// MQTT only: the QoS of every publish and subscription (0 or 1).
    pub(super) qos: u8,
}

/// Prints the percentiles of `latencies` (microseconds), if any.
pub(super) fn report_latencies(latencies: &mut [u32]) {
    if latencies.is_empty() {
        return;
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        latencies[latencies.len() - 1]
    );
}
