//! Per-address budgets for bad requests: a token bucket per peer address.
//!
//! Each bad request (wrong credentials, an unknown path, a malformed
//! request) spends a token of its address's bucket; a bucket holds at most
//! [`BudgetConfig::burst`] tokens and gains one every
//! [`BudgetConfig::refill`]. An address with no token left is throttled
//! until one comes back. A peer that behaves is not tracked at all, and a
//! bucket that fills up again is forgotten.
//!
//! IPv6 peers are budgeted per /64, the block a single host or site
//! usually gets, so a peer cannot get a fresh budget per address.
//!
//! Memory is bounded: at most [`BudgetConfig::max_peers`] addresses are
//! tracked, in two generations. New and recently bad addresses go in the
//! current one; when it holds half the maximum, the previous generation
//! (the addresses not bad since the last turn) is dropped and the current
//! one takes its place. So the least recently bad go first, in O(1)
//! amortized time, and a throttled address that keeps knocking stays.
//!
//! # Calling order
//!
//! Call [`PeerBudgets::check`] before work a throttled peer must not get
//! (accepting its connection, hashing its password) and
//! [`PeerBudgets::spend`] after each bad request, with the current time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Settings of the per-address budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Bad requests an address may make in a burst (default 20); 0 turns
    /// throttling off.
    pub burst: u32,
    /// One more bad request is allowed per this long (default 3 s).
    pub refill: Duration,
    /// Addresses tracked at once (default 4096).
    pub max_peers: usize,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig { burst: 20, refill: Duration::from_secs(3), max_peers: 4096 }
    }
}

/// An address is out of budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// How long until it may make a bad request again.
    pub retry_after: Duration,
}

impl Throttled {
    /// [`Throttled::retry_after`] in whole seconds, rounded up (at least
    /// 1), for a `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// What a bad request was, as `/CROOKS` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Credentials that do not match a user (HTTP or Connect).
    WrongCredentials,
    /// A request for a path the broker does not serve.
    UnknownPath,
    /// HTTP that does not parse.
    MalformedRequest,
}

impl Fault {
    /// The fault of an HTTP request refused before it was whole (its head
    /// or framing did not parse: 400). Over-long heads (431), bodies (413)
    /// and slow requests (408) are limits, not probes, and cost nothing.
    pub fn of_refused_request(status: u16) -> Option<Fault> {
        (status == 400).then_some(Fault::MalformedRequest)
    }

    /// A few words for people.
    pub fn text(self) -> &'static str {
        match self {
            Fault::WrongCredentials => "wrong credentials",
            Fault::UnknownPath => "unknown path",
            Fault::MalformedRequest => "malformed request",
        }
    }
}

/// One tracked address, as [`PeerBudgets::peers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerReport {
    /// The address (IPv6: its /64, as `2001:db8:1:2::/64`).
    pub peer: String,
    /// Bad requests charged since it was first tracked.
    pub faults: u64,
    /// Its latest bad request's kind.
    pub last_fault: Fault,
    /// When it was first tracked.
    pub first: Instant,
    /// Its latest bad request.
    pub last: Instant,
    /// Since when it has been throttled, while it is.
    pub throttled_since: Option<Instant>,
    /// How long until it may make a bad request again (zero when not
    /// throttled).
    pub retry_after: Duration,
}

/// What a budget is kept under: an IPv4 address, or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PeerKey {
    V4(u32),
    V6(u64),
}

impl PeerKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => PeerKey::V4(v4.into()),
            IpAddr::V6(v6) => PeerKey::V6((u128::from(v6) >> 64) as u64),
        }
    }

    fn text(self) -> String {
        match self {
            PeerKey::V4(v4) => std::net::Ipv4Addr::from(v4).to_string(),
            PeerKey::V6(prefix) => format!("{}/64", std::net::Ipv6Addr::from(u128::from(prefix) << 64)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens as of `since`.
    tokens: u32,
    since: Instant,
    /// What `/CROOKS` shows of it.
    faults: u64,
    last_fault: Fault,
    first: Instant,
    last: Instant,
    throttled_since: Option<Instant>,
}

/// The budgets of every address that made bad requests lately. See the
/// module docs.
#[derive(Debug)]
pub struct PeerBudgets {
    config: BudgetConfig,
    current: HashMap<PeerKey, Bucket>,
    previous: HashMap<PeerKey, Bucket>,
}

impl PeerBudgets {
    /// No address tracked yet.
    pub fn new(config: BudgetConfig) -> Self {
        PeerBudgets { config, current: HashMap::new(), previous: HashMap::new() }
    }

    /// The settings.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Whether throttling is on.
    pub fn is_enabled(&self) -> bool {
        self.config.burst > 0 && !self.config.refill.is_zero()
    }

    /// Whether `ip` may be served: `Err` while it has no token left.
    /// Spends nothing.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        if !self.is_enabled() {
            return Ok(());
        }
        let key = PeerKey::of(ip);
        let Some(bucket) = self.take(key) else { return Ok(()) };
        let bucket = self.refilled(bucket, now);
        if bucket.tokens >= self.config.burst {
            // Behaved long enough: forgotten.
            return Ok(());
        }
        self.put(key, bucket);
        match bucket.tokens {
            0 => Err(self.throttled(&bucket, now)),
            _ => Ok(()),
        }
    }

    /// Charges a bad request to `ip`: the tokens it has left (0: it is
    /// throttled from now on), or `Err` when it had none, in which case
    /// the request is refused as throttled rather than answered.
    pub fn spend(&mut self, ip: IpAddr, now: Instant, fault: Fault) -> Result<u32, Throttled> {
        if !self.is_enabled() {
            return Ok(u32::MAX);
        }
        let key = PeerKey::of(ip);
        let bucket = match self.take(key) {
            Some(bucket) => self.refilled(bucket, now),
            None => Bucket {
                tokens: self.config.burst,
                since: now,
                faults: 0,
                last_fault: fault,
                first: now,
                last: now,
                throttled_since: None,
            },
        };
        let result = match bucket.tokens {
            0 => Err(self.throttled(&bucket, now)),
            tokens => Ok(tokens - 1),
        };
        let since = if bucket.tokens == self.config.burst { now } else { bucket.since };
        let tokens = bucket.tokens.saturating_sub(1);
        let throttled_since = match (tokens, bucket.throttled_since) {
            (0, None) => Some(now),
            (0, kept) => kept,
            _ => None,
        };
        self.put(
            key,
            Bucket {
                tokens,
                since,
                faults: bucket.faults + 1,
                last_fault: fault,
                last: now,
                throttled_since,
                ..bucket
            },
        );
        result
    }

    /// Every tracked address at `now`, throttled ones first, then by their
    /// latest bad request, newest first. Reads every entry: for `/CROOKS`.
    pub fn peers(&self, now: Instant) -> Vec<PeerReport> {
        let mut peers: Vec<PeerReport> = self
            .current
            .iter()
            .chain(self.previous.iter().filter(|(key, _)| !self.current.contains_key(key)))
            .map(|(key, bucket)| {
                let refilled = self.refilled(*bucket, now);
                let throttled = refilled.tokens == 0;
                PeerReport {
                    peer: key.text(),
                    faults: bucket.faults,
                    last_fault: bucket.last_fault,
                    first: bucket.first,
                    last: bucket.last,
                    throttled_since: if throttled { bucket.throttled_since } else { None },
                    retry_after: if throttled { self.throttled(&refilled, now).retry_after } else { Duration::ZERO },
                }
            })
            .collect();
        peers.sort_by(|a, b| b.throttled_since.is_some().cmp(&a.throttled_since.is_some()).then(b.last.cmp(&a.last)));
        peers
    }

    /// Addresses tracked (each with a spent token or more).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Addresses throttled at `now`. Reads every entry: for statistics.
    pub fn throttled_count(&self, now: Instant) -> usize {
        self.current.values().chain(self.previous.values()).filter(|b| self.refilled(**b, now).tokens == 0).count()
    }

    fn take(&mut self, key: PeerKey) -> Option<Bucket> {
        self.current.remove(&key).or_else(|| self.previous.remove(&key))
    }

    fn put(&mut self, key: PeerKey, bucket: Bucket) {
        if self.current.len() >= (self.config.max_peers / 2).max(1) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, bucket);
    }

    /// The bucket with the tokens earned since it was last counted.
    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let refill = self.config.refill.as_nanos().max(1);
        let periods = now.saturating_duration_since(bucket.since).as_nanos() / refill;
        if periods == 0 {
            return bucket;
        }
        let tokens = u128::from(bucket.tokens).saturating_add(periods).min(u128::from(self.config.burst)) as u32;
        let since = if tokens == self.config.burst {
            now
        } else {
            // Whole periods only: the part of one under way still counts.
            bucket.since + self.config.refill * periods as u32
        };
        Bucket { tokens, since, ..bucket }
    }

    fn throttled(&self, bucket: &Bucket, now: Instant) -> Throttled {
        let next = bucket.since + self.config.refill;
        Throttled { retry_after: next.saturating_duration_since(now) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Any instant: the tests move time by adding to it.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Instant {
        Instant::now()
    }

    fn budgets(burst: u32, refill_secs: u64, max_peers: usize) -> PeerBudgets {
        PeerBudgets::new(BudgetConfig { burst, refill: Duration::from_secs(refill_secs), max_peers })
    }

    #[test]
    fn a_burst_of_bad_requests_then_throttled_until_a_token_returns() {
        let mut b = budgets(3, 10, 64);
        let (t0, peer) = (start(), ip("192.0.2.1"));
        assert_eq!(b.check(peer, t0), Ok(()), "unknown: allowed");
        for left in [2, 1, 0] {
            assert_eq!(b.spend(peer, t0, Fault::UnknownPath), Ok(left));
        }
        let throttled = b.check(peer, t0).unwrap_err();
        assert_eq!(throttled.retry_after, Duration::from_secs(10));
        assert_eq!(throttled.retry_after_secs(), 10);
        assert_eq!(
            b.spend(peer, t0 + Duration::from_secs(4), Fault::UnknownPath).unwrap_err().retry_after,
            Duration::from_secs(6)
        );
        assert_eq!(b.throttled_count(t0 + Duration::from_secs(9)), 1);
        // A token back after one period: one more bad request, then out.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.throttled_count(t1), 0);
        assert_eq!(b.check(peer, t1), Ok(()));
        assert_eq!(b.spend(peer, t1, Fault::UnknownPath), Ok(0));
        assert!(b.check(peer, t1).is_err());
        assert_eq!(b.check(ip("192.0.2.2"), t1), Ok(()), "another address is not affected");
    }

    #[test]
    fn a_peer_that_behaves_regains_its_budget_and_is_forgotten() {
        let mut b = budgets(3, 10, 64);
        let (t0, peer) = (start(), ip("192.0.2.1"));
        for _ in 0..3 {
            b.spend(peer, t0, Fault::UnknownPath).unwrap();
        }
        // Partial periods do not count: 25 s is two tokens, the third
        // comes at 30 s.
        let t = t0 + Duration::from_secs(25);
        b.spend(peer, t, Fault::UnknownPath).unwrap();
        b.spend(peer, t, Fault::UnknownPath).unwrap();
        assert_eq!(b.check(peer, t).unwrap_err().retry_after, Duration::from_secs(5));
        assert_eq!(b.len(), 1);
        assert_eq!(b.check(peer, t0 + Duration::from_secs(1000)), Ok(()));
        assert!(b.is_empty(), "a full bucket is forgotten");
    }

    #[test]
    fn ipv6_peers_share_their_64_and_mapped_ipv4_is_ipv4() {
        let mut b = budgets(1, 60, 64);
        let now = start();
        b.spend(ip("2001:db8:1:2::1"), now, Fault::UnknownPath).unwrap();
        assert!(b.check(ip("2001:db8:1:2:ffff::9"), now).is_err(), "same /64");
        assert_eq!(b.check(ip("2001:db8:1:3::1"), now), Ok(()), "another /64");
        b.spend(ip("::ffff:192.0.2.1"), now, Fault::UnknownPath).unwrap();
        assert!(b.check(ip("192.0.2.1"), now).is_err());
    }

    #[test]
    fn tracked_addresses_are_bounded_and_the_least_recently_bad_go_first() {
        let mut b = budgets(1, 3600, 8);
        let now = start();
        let throttled = ip("198.51.100.1");
        b.spend(throttled, now, Fault::UnknownPath).unwrap();
        for i in 0..10_000u32 {
            b.spend(IpAddr::V4((0x0a00_0000 + i).into()), now, Fault::UnknownPath).unwrap();
            assert!(b.len() <= 8, "{} tracked", b.len());
            // It keeps knocking, so it stays.
            assert!(b.check(throttled, now).is_err(), "after {i} others");
        }
        // The first of the flood is long gone: a fresh budget.
        assert_eq!(b.spend(ip("10.0.0.0"), now, Fault::UnknownPath), Ok(0));
    }

    #[test]
    fn only_malformed_requests_refused_early_are_faults() {
        assert_eq!(Fault::of_refused_request(400), Some(Fault::MalformedRequest));
        for limit in [408, 413, 431, 503] {
            assert_eq!(Fault::of_refused_request(limit), None, "{limit}");
        }
    }

    #[test]
    fn peers_report_when_and_why() {
        let mut b = budgets(2, 10, 64);
        let t0 = start();
        b.spend(ip("192.0.2.1"), t0, Fault::UnknownPath).unwrap();
        b.spend(ip("2001:db8:1:2::7"), t0, Fault::MalformedRequest).unwrap();
        let t1 = t0 + Duration::from_secs(2);
        b.spend(ip("192.0.2.1"), t1, Fault::WrongCredentials).unwrap();
        let peers = b.peers(t1 + Duration::from_secs(1));
        assert_eq!(peers.len(), 2);
        let first = &peers[0];
        assert_eq!((first.peer.as_str(), first.faults, first.last_fault), ("192.0.2.1", 2, Fault::WrongCredentials));
        assert_eq!((first.first, first.last, first.throttled_since), (t0, t1, Some(t1)));
        assert_eq!(first.retry_after, Duration::from_secs(7), "a token every 10 s from t0");
        assert_eq!(peers[1].peer, "2001:db8:1:2::/64");
        assert_eq!((peers[1].throttled_since, peers[1].retry_after), (None, Duration::ZERO));
        // Once a token is back it is no longer throttled, but still listed.
        let later = b.peers(t0 + Duration::from_secs(10));
        assert_eq!(later[0].throttled_since, None);
        assert_eq!(later.iter().map(|p| p.faults).sum::<u64>(), 3);
    }

    #[test]
    fn a_burst_of_zero_turns_throttling_off() {
        let mut b = budgets(0, 3, 64);
        let now = start();
        for _ in 0..100 {
            assert!(b.spend(ip("192.0.2.1"), now, Fault::UnknownPath).is_ok());
        }
        assert!(b.is_empty());
        assert_eq!(Throttled { retry_after: Duration::from_millis(1) }.retry_after_secs(), 1);
        assert_eq!(Throttled { retry_after: Duration::from_millis(2001) }.retry_after_secs(), 3);
    }
}
