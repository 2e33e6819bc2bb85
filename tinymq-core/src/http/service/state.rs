//! What the HTTP service keeps beside the router: its settings, the
//! Moustique clients, request rates and statuses, posters, peer hosts and
//! the request log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use crate::http::clients::{HttpClientLimits, HttpClients};
use crate::http::encoding::EncodingMode;
use crate::router::{Delivery, NamespaceId};
use crate::topic::TopicLimits;

/// Settings of the HTTP service.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Bounds on topic names and filters.
    pub topic_limits: TopicLimits,
    /// Bounds on Moustique clients.
    pub client_limits: HttpClientLimits,
    /// Longest GETVALSBYREGEX expression, in bytes (default 1 KiB).
    pub max_regex_len: usize,
    /// Compiled size limit of such an expression (default 1 MiB).
    pub regex_size_limit: usize,
    /// Whether requests without credentials use the public namespace.
    pub allow_anonymous: bool,
    /// Publishers POSTERS remembers at once (default 10,000).
    pub max_posters: usize,
    /// Which orders of Moustique's encoding requests may use (default
    /// [`EncodingMode::Auto`]: both, each answered in its own).
    pub moustique_encoding: EncodingMode,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            topic_limits: TopicLimits::default(),
            client_limits: HttpClientLimits::default(),
            max_regex_len: 1024,
            regex_size_limit: 1 << 20,
            allow_anonymous: true,
            max_posters: 10_000,
            moustique_encoding: EncodingMode::Auto,
        }
    }
}

/// A count and its rate over the last minute, by Unix second.
#[derive(Clone, Debug)]
pub(super) struct Rate {
    pub(super) total: u64,
    pub(super) seconds: [u64; 60],
    pub(super) counts: [u64; 60],
}

impl Default for Rate {
    fn default() -> Self {
        Rate { total: 0, seconds: [0; 60], counts: [0; 60] }
    }
}

impl Rate {
    pub(super) fn record(&mut self, unix_time: u64) {
        self.total += 1;
        let slot = (unix_time % 60) as usize;
        if self.seconds[slot] != unix_time {
            self.seconds[slot] = unix_time;
            self.counts[slot] = 0;
        }
        self.counts[slot] += 1;
    }

    /// Counts recorded in the 60 seconds up to `unix_time`.
    pub(super) fn last_minute(&self, unix_time: u64) -> u64 {
        self.seconds
            .iter()
            .zip(&self.counts)
            .filter(|&(&second, _)| second <= unix_time && unix_time - second < 60)
            .map(|(_, &count)| count)
            .sum()
    }
}

#[derive(Debug)]
pub(super) struct Poster {
    pub(super) count: u64,
    pub(super) latest: Arc<Delivery>,
    pub(super) first_unix: u64,
    pub(super) last_unix: u64,
    /// Its latest post per topic, at most [`POSTER_TOPICS`] topics (the
    /// least recently posted to go first).
    pub(super) by_topic: Vec<Arc<Delivery>>,
}

/// Topics POSTERS keeps a publisher's latest post for.
const POSTER_TOPICS: usize = 32;

/// An address that made requests to a namespace (`/PEERHOSTS`).
#[derive(Debug)]
pub(super) struct PeerHost {
    pub(super) first_unix: u64,
    pub(super) last_unix: u64,
    pub(super) requests: u64,
}

/// Addresses `/PEERHOSTS` remembers, all namespaces together.
const MAX_PEER_HOSTS: usize = 4096;

/// One request, as `/LOG` shows it.
#[derive(Debug)]
pub(super) struct LogLine {
    pub(super) namespace: NamespaceId,
    pub(super) unix: u64,
    pub(super) ip: Option<IpAddr>,
    pub(super) text: String,
}

/// Requests `/LOG` remembers, all namespaces together, and shows at most.
const LOG_LINES: usize = 2048;
pub(super) const LOG_SHOWN: usize = 100;

/// What the HTTP service keeps beside the router. See the module docs.
#[derive(Debug)]
pub struct HttpState {
    /// Moustique clients and their queues.
    pub clients: HttpClients,
    pub(super) posters: HashMap<(NamespaceId, Arc<str>), Poster>,
    pub(super) requests: Rate,
    pub(super) pickups: Rate,
    pub(super) processed: Rate,
    pub(super) getvals: Rate,
    pub(super) statuses: BTreeMap<u16, u64>,
    pub(super) started_unix: u64,
    pub(super) peer_hosts: HashMap<(NamespaceId, IpAddr), PeerHost>,
    pub(super) log: VecDeque<LogLine>,
    pub(super) log_total: HashMap<NamespaceId, u64>,
    pub(super) serve_nanos: u128,
    pub(super) served: u64,
}

/// What POSTERS keeps a publisher for after its latest post.
pub(super) const POSTER_WINDOW_SECS: u64 = 3600;

impl HttpState {
    /// Fresh state for a broker started at `started_unix`.
    pub fn new(config: &HttpConfig, started_unix: u64) -> Self {
        HttpState {
            clients: HttpClients::new(config.client_limits),
            posters: HashMap::new(),
            requests: Rate::default(),
            pickups: Rate::default(),
            processed: Rate::default(),
            getvals: Rate::default(),
            statuses: BTreeMap::new(),
            started_unix,
            peer_hosts: HashMap::new(),
            log: VecDeque::new(),
            log_total: HashMap::new(),
            serve_nanos: 0,
            served: 0,
        }
    }

    /// Counts how long the shell took to serve a request (STATS'
    /// `average_request_time`, as Moustique has it).
    pub fn record_serve_time(&mut self, took: std::time::Duration) {
        self.serve_nanos += took.as_nanos();
        self.served += 1;
    }

    /// Remembers a request from `ip` served at `unix`, for `/LOG` and
    /// `/PEERHOSTS`.
    pub(super) fn record_request(
        &mut self,
        namespace: NamespaceId,
        mut text: String,
        status: u16,
        unix: u64,
        ip: Option<IpAddr>,
    ) {
        if let Some(ip) = ip {
            if let Some(host) = self.peer_hosts.get_mut(&(namespace, ip)) {
                host.last_unix = unix;
                host.requests += 1;
            } else {
                if self.peer_hosts.len() >= MAX_PEER_HOSTS
                    && let Some(oldest) = self.peer_hosts.iter().min_by_key(|(_, h)| h.last_unix).map(|(k, _)| *k)
                {
                    self.peer_hosts.remove(&oldest);
                }
                self.peer_hosts.insert((namespace, ip), PeerHost { first_unix: unix, last_unix: unix, requests: 1 });
            }
        }
        if self.log.len() >= LOG_LINES {
            self.log.pop_front();
        }
        let _ = write!(text, " {status}");
        self.log.push_back(LogLine { namespace, unix, ip, text });
        *self.log_total.entry(namespace).or_default() += 1;
    }

    /// Counts a response by status (requests refused before [`handle`](super::handle),
    /// such as a 431, are counted by the shell through this).
    pub fn count_status(&mut self, status: u16, unix_time: u64) {
        self.requests.record(unix_time);
        *self.statuses.entry(status).or_default() += 1;
    }

    /// Responses sent so far, by status.
    pub fn statuses(&self) -> &BTreeMap<u16, u64> {
        &self.statuses
    }

    pub(super) fn record_poster(&mut self, namespace: NamespaceId, delivery: &Arc<Delivery>, max: usize) {
        let message = delivery.message();
        let key = (namespace, message.from.clone());
        if let Some(poster) = self.posters.get_mut(&key) {
            poster.count += 1;
            poster.latest = delivery.clone();
            poster.last_unix = message.updated_time;
            poster.by_topic.retain(|d| d.message().topic != message.topic);
            if poster.by_topic.len() >= POSTER_TOPICS {
                poster.by_topic.remove(0);
            }
            poster.by_topic.push(delivery.clone());
            return;
        }
        if self.posters.len() >= max {
            // Full: forget the publisher heard from longest ago.
            if let Some(oldest) = self.posters.iter().min_by_key(|(_, p)| p.last_unix).map(|(k, _)| k.clone()) {
                self.posters.remove(&oldest);
            }
        }
        let poster = Poster {
            count: 1,
            latest: delivery.clone(),
            first_unix: message.updated_time,
            last_unix: message.updated_time,
            by_topic: vec![delivery.clone()],
        };
        self.posters.insert(key, poster);
    }
}
