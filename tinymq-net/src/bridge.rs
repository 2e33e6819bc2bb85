//! Bridges to a NATS cluster: their settings ([`BridgeConfig`]) and the
//! figures the loop that runs them shares with STATS and `/metrics`.
//!
//! A bridge is not a thread: it is one more connection on event loop 0,
//! driven by [`tinymq_core::nats::NatsClient`] (see
//! `event_loop::bridge`). Publishes matching its `out` filters reach it
//! through the router like any subscriber's; messages on its `in` filters'
//! subjects are published into the public namespace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tinymq_core::metrics::BridgeFigures;
use tinymq_core::nats::{Headers, SubjectMapping};
use tinymq_core::{Filter, TopicLimits};

use crate::error::Error;

/// One bridge to a NATS cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// NATS servers, `nats://host:port` or `host:port`, tried in turn
    /// (with those the cluster announces).
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
}

impl BridgeConfig {
    /// A bridge to `servers` with no filters, no prefix and `broker_id`.
    pub fn new(servers: Vec<String>, broker_id: impl Into<String>) -> Self {
        BridgeConfig {
            servers,
            out: Vec::new(),
            inbound: Vec::new(),
            prefix: String::new(),
            broker_id: broker_id.into(),
            queue_limit: 10_000,
        }
    }

    /// Checks every setting: the filters, the prefix, the broker id (it
    /// must fit a header value), and that there is a server and a filter.
    pub(crate) fn validate(&self, limits: &TopicLimits) -> Result<Checked, Error> {
        let bad = |why: String| Error::Bridge(why);
        if self.servers.iter().all(|s| s.trim().is_empty()) {
            return Err(bad("a bridge needs at least one NATS server".into()));
        }
        if self.out.is_empty() && self.inbound.is_empty() {
            return Err(bad("a bridge needs at least one filter (out or in)".into()));
        }
        let filters = |list: &[String]| -> Result<Vec<Filter>, Error> {
            list.iter()
                .map(|f| Filter::new(f, limits).map_err(|source| Error::InvalidTopic { topic: f.clone(), source }))
                .collect()
        };
        let mapping = SubjectMapping::new(&self.prefix).map_err(|e| bad(e.to_string()))?;
        if self.broker_id.is_empty() {
            return Err(bad("a bridge needs a broker id".into()));
        }
        let live = Headers::for_bridge(&self.broker_id, false).map_err(|e| bad(format!("broker id: {e}")))?;
        let retained = Headers::for_bridge(&self.broker_id, true).map_err(|e| bad(format!("broker id: {e}")))?;
        Ok(Checked { out: filters(&self.out)?, inbound: filters(&self.inbound)?, mapping, live, retained })
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
    pub(crate) out: Vec<Filter>,
    pub(crate) inbound: Vec<Filter>,
    pub(crate) mapping: SubjectMapping,
    /// The headers of a live message, and of a retained one.
    pub(crate) live: Headers,
    pub(crate) retained: Headers,
}

/// A bridge's figures, written by loop 0, read by STATS and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct BridgeStats {
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
        BridgeStats { servers: config.servers.clone(), ..BridgeStats::default() }
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
