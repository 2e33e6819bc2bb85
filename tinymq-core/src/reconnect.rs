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
///
/// The held packet is completed from the first bytes, taken in doubling
/// steps from [`FIRST_STEP`], and the packets after it are handled where
/// they lie in `bytes`, not copied behind it: a stream whose reads end
/// mid-packet (most do) copies a packet's worth, not the whole read, and
/// the payloads in the read stay in the shell's buffer (NATS shares them).
pub(crate) fn feed<E>(
    held: &mut Vec<u8>,
    bytes: &[u8],
    mut handle: impl FnMut(&[u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let mut rest = bytes;
    if !held.is_empty() {
        let mut taken = 0;
        loop {
            let step = (rest.len() - taken).min(FIRST_STEP.max(taken));
            held.extend_from_slice(&rest[taken..taken + step]);
            taken += step;
            let consumed = handle(held)?;
            if consumed > 0 {
                let left = held.len() - consumed;
                if left > taken {
                    // `handle` stopped before the end of what was held
                    // already: the rest goes behind it, handled next time.
                    held.drain(..consumed);
                    held.extend_from_slice(&rest[taken..]);
                    return Ok(());
                }
                // What `handle` took ends past what was held: what is left
                // of `held` came from `rest`, and is handled there.
                held.clear();
                rest = &rest[taken - left..];
                break;
            }
            if taken == rest.len() {
                return Ok(());
            }
        }
    }
    let consumed = handle(rest)?;
    held.extend_from_slice(&rest[consumed..]);
    Ok(())
}

/// The first step [`feed`] completes a held packet with.
const FIRST_STEP: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `reads` in turn to a handler of newline-ended packets: the
    /// packets, and how many were handled in place in the read they came in.
    fn lines(reads: &[&[u8]]) -> (Vec<String>, usize) {
        let (mut held, mut lines, mut in_place) = (Vec::new(), Vec::new(), 0);
        for read in reads {
            let range = read.as_ptr_range();
            let handled = feed(&mut held, read, |bytes: &[u8]| -> Result<usize, ()> {
                let mut at = 0;
                while let Some(end) = bytes[at..].iter().position(|&b| b == b'\n') {
                    lines.push(String::from_utf8(bytes[at..at + end].to_vec()).unwrap());
                    at += end + 1;
                    in_place += usize::from(range.contains(&bytes.as_ptr()));
                }
                Ok(at)
            });
            handled.unwrap();
        }
        assert!(held.is_empty(), "nothing left over");
        (lines, in_place)
    }

    #[test]
    fn packets_split_anywhere_come_out_whole() {
        let long = "x".repeat(3 * FIRST_STEP);
        let stream = format!("one\n{long}\nthree\nfour\n");
        let stream = stream.as_bytes();
        let expected = ["one", &long, "three", "four"];
        for split in 0..=stream.len() {
            assert_eq!(lines(&[&stream[..split], &stream[split..]]).0, expected, "split at {split}");
        }
        // One byte at a time: still whole.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(lines(&bytes).0, expected);
    }

    #[test]
    fn in_a_stream_cut_mid_packet_only_the_packets_near_each_cut_are_copied() {
        let stream: String = (0..2000).map(|n| format!("message {n:>10}\n")).collect();
        let reads: Vec<&[u8]> = stream.as_bytes().chunks(4096).collect();
        let (got, in_place) = lines(&reads);
        assert_eq!(got.len(), 2000);
        // A cut copies the packet it splits and what the first step of
        // the next read takes past it: about a dozen of these 19-byte ones.
        let copied_at_most = (reads.len() - 1) * (FIRST_STEP / 19 + 2);
        assert!(in_place >= 2000 - copied_at_most, "{in_place} of 2000 handled in place");
    }
}
