//! What the bridge's sans-IO clients ([`crate::mqtt::MqttClient`],
//! [`crate::nats::NatsClient`]) share across connections: the servers,
//! taken in turn with a capped backoff between failed attempts
//! ([`Reconnect`]), and the bytes of a partial packet held from one read to
//! the next ([`feed`]).

use std::time::{Duration, Instant};

/// The servers a client dials in turn, and when the next attempt is due.
#[derive(Debug)]
pub(crate) struct Reconnect {
    /// Without empty names or repeats, in the order they were added.
    servers: Vec<String>,
    /// Index of the server dialed last (`usize::MAX` before the first:
    /// the first call to [`Reconnect::next_server`] moves to index 0).
    current: usize,
    /// Attempts since the last connection that was established.
    failures: u32,
    retry_at: Instant,
    /// The first delay after a failure; it doubles with every failure.
    min: Duration,
    /// The cap of the delay.
    max: Duration,
}

impl Reconnect {
    /// `servers` (normalized: empty ones and repeats are dropped), the
    /// first due at `now`, with a delay from `min` to `max` after failures.
    pub(crate) fn new(servers: impl IntoIterator<Item = String>, min: Duration, max: Duration, now: Instant) -> Self {
        let mut reconnect =
            Reconnect { servers: Vec::new(), current: usize::MAX, failures: 0, retry_at: now, min, max };
        reconnect.add_servers(servers, usize::MAX);
        reconnect
    }

    /// Adds `servers` not held yet (and not empty) until `cap` are held.
    pub(crate) fn add_servers(&mut self, servers: impl IntoIterator<Item = String>, cap: usize) {
        for server in servers {
            if self.servers.len() >= cap {
                break;
            }
            if !server.is_empty() && !self.servers.contains(&server) {
                self.servers.push(server);
            }
        }
    }

    /// The servers, in the order they are tried.
    pub(crate) fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The server dialed last, if any was.
    pub(crate) fn server(&self) -> Option<&str> {
        self.servers.get(self.current).map(String::as_str)
    }

    /// The next server in turn, when an attempt is due at `now`.
    pub(crate) fn next_server(&mut self, now: Instant) -> Option<&str> {
        if now < self.retry_at || self.servers.is_empty() {
            return None;
        }
        self.current = self.current.wrapping_add(1) % self.servers.len();
        Some(&self.servers[self.current])
    }

    /// When the next attempt is due; `None` without servers.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        (!self.servers.is_empty()).then_some(self.retry_at)
    }

    /// The connection was established: the next failure waits the least.
    pub(crate) fn connected(&mut self) {
        self.failures = 0;
    }

    /// An attempt failed or a connection was lost at `now`: the next
    /// server is due after a delay that doubles with every failure since
    /// the last established connection (capped).
    pub(crate) fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let delay = self.min.saturating_mul(1 << doublings).min(self.max);
        self.retry_at = now + delay;
    }

    /// The server dialed last is due again at once (with other settings):
    /// no failure is counted.
    pub(crate) fn retry_same(&mut self, now: Instant) {
        self.current = (self.current + self.servers.len() - 1) % self.servers.len();
        self.retry_at = now;
    }
}

/// Handles `bytes` read from a socket after `held`, the bytes of a partial
/// packet from the reads before: `handle` takes what is there and returns
/// how many bytes its whole packets took; what is left stays in `held`.
/// After an error `held` is of no use: the connection is lost.
pub(crate) fn feed<E>(
    held: &mut Vec<u8>,
    bytes: &[u8],
    handle: impl FnOnce(&[u8]) -> Result<usize, E>,
) -> Result<(), E> {
    if held.is_empty() {
        // The common case handles straight from the read buffer.
        let consumed = handle(bytes)?;
        held.extend_from_slice(&bytes[consumed..]);
    } else {
        held.extend_from_slice(bytes);
        let consumed = handle(held)?;
        held.drain(..consumed);
    }
    Ok(())
}
