//! The embedding API: build, start, use in-process and shut down a broker.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::{Poll, Waker};
use tinymq_core::broker::{Broker as CoreBroker, Rules};
use tinymq_core::durable::SessionFigures;
use tinymq_core::store::{Store, StoreOp, StoredHttpClient, StoredHttpQueued, StoredQueued, StoredSession};
use tinymq_core::{Delivery, ReasonCode};

use crate::Error;
use crate::config::BrokerBuilder;
use crate::event_loop::EventLoop;
use crate::flow;
use crate::local::{LocalClient, LocalOptions};
use crate::shared::{LoopHandle, Shared, Sink, unix_time};
use crate::store::RedbStore;
use crate::transport::{ListenAddr, Listener};
use crate::users::Authenticator;
use crate::writer::StoreWriter;

// BrokerConfig and the builder's setters are in config.rs; starting a
// broker from them is here.
impl BrokerBuilder {
    /// Opens the listeners and starts the event loops.
    pub fn start(self) -> Result<Broker, Error> {
        let mut config = self.config;
        config.http.topic_limits = config.session.topic_limits;
        config.http.allow_anonymous = config.allow_anonymous;
        for bridge in &config.bridges {
            bridge.validate(&config.session.topic_limits)?;
        }
        // The store first: a broken or busy data directory stops the start
        // before any port is taken.
        let rules = Rules {
            http: config.http.clone(),
            budget: config.peer_budget,
            store: Shared::store_acks(&config, config.data_dir.is_some()),
            sessions: config.sessions,
        };
        let mut broker = CoreBroker::new(rules, unix_time());
        let mut users = Vec::new();
        let store = match &config.data_dir {
            None => None,
            Some(dir) => {
                let store = RedbStore::open(dir)?;
                let values = store.load_values()?;
                log::info!("loaded {} stored values from {}", values.len(), store.path().display());
                let router = broker.router_mut();
                for value in values {
                    let namespace = router.namespace(&value.namespace);
                    router.store(namespace, Delivery::new(value.message));
                }
                users = store.load_users()?;
                let clients = store.load_http_clients()?;
                let sessions = store.load_sessions()?;
                let queued = store.load_queued()?;
                let path = store.path().to_owned();
                let http = config.listeners.iter().any(|l| matches!(l, ListenAddr::Http(_) | ListenAddr::Https(_)));
                // Their queues only with the clients (see below).
                let http_queued = if http { store.load_http_queued()? } else { Vec::new() };
                let writer = StoreWriter::spawn(store, config.durability).map_err(Error::EventLoop)?;
                // The Moustique clients and their queues first: the wills
                // the sessions' restore publishes are queued behind what
                // the clients had.
                if http {
                    restore_http_clients(&mut broker, clients, http_queued, &writer, &path);
                } else if !clients.is_empty() {
                    // Nobody could pick up, and nothing would expire them
                    // (expiry runs with the HTTP listener): their queues
                    // would only fill. They stay stored, with what was
                    // queued for them, for the next start with HTTP.
                    log::info!("{} stored HTTP clients not loaded: no HTTP listener", clients.len());
                }
                restore_sessions(&mut broker, sessions, queued, &writer);
                Some(writer)
            }
        };
        users.extend(config.users.iter().cloned());
        // Password checks are CPU-bound: leave most cores to the loops.
        let verifiers = std::thread::available_parallelism().map_or(1, |n| n.get() / 2).clamp(1, 4);
        let auth = Authenticator::start(users, verifiers).map_err(Error::EventLoop)?;
        if auth.len() > 0 {
            log::info!("{} users", auth.len());
        } else if !config.allow_anonymous {
            log::warn!(
                "anonymous access is off and there are no users: every network client will be refused \
                 (add users with `tinymq user add`, or allow anonymous access)"
            );
        }
        if let Some(peers) = &config.allowed_peers {
            log::info!("peers allowed to connect: {peers} (Unix sockets are not checked)");
        }
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for address in &config.listeners {
            let listener = Listener::bind(address, config.tls.as_ref())?;
            bound.push(listener.local_addr().map_err(|source| Error::Listen { address: address.to_string(), source })?);
            listeners.push(listener);
        }
        let mut polls = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..config.threads.max(1) {
            let poll = Poll::new().map_err(Error::EventLoop)?;
            let waker = Waker::new(poll.registry(), EventLoop::waker_token()).map_err(Error::EventLoop)?;
            handles.push(LoopHandle::new(Arc::new(waker), flow::pressure_mark(config.session.outbound_limit)));
            polls.push(poll);
        }
        let shared = Arc::new(Shared::new(config, broker, store, auth, handles));
        let mut threads = Vec::new();
        for (index, poll) in polls.into_iter().enumerate() {
            // Loop 0 accepts and spreads connections over all loops.
            let own = if index == 0 { std::mem::take(&mut listeners) } else { Vec::new() };
            let event_loop = EventLoop::new(index, poll, shared.clone(), own).map_err(Error::EventLoop)?;
            let thread = std::thread::Builder::new()
                .name(format!("tinymq-loop-{index}"))
                .spawn(move || event_loop.run())
                .map_err(Error::EventLoop)?;
            threads.push(thread);
        }
        for address in &bound {
            log::info!("listening on {address}");
        }
        Ok(Broker { shared, threads, bound })
    }
}

/// Brings the durable sessions back with their queued QoS 1 messages, and
/// publishes the wills of the clients that vanished with the broker (a
/// restart after a kill -9 is a lost connection for each). Nobody is
/// connected yet: the wills reach the sessions' queues, stored values and
/// Moustique queues.
fn restore_sessions(
    broker: &mut CoreBroker<Sink>,
    sessions: Vec<StoredSession>,
    queued: Vec<StoredQueued>,
    writer: &StoreWriter,
) {
    let (count, messages) = (sessions.len(), queued.len());
    let routed = broker.restore_sessions(Instant::now(), unix_time(), sessions, queued, Sink::Session);
    for op in routed.store {
        let _ = writer.submit(op);
    }
    while let Some(op) = broker.poll_store_op() {
        let _ = writer.submit(op);
    }
    if count > 0 {
        log::info!(
            "restored {} of {count} stored sessions with {messages} queued messages",
            broker.sessions().persistent_len()
        );
    }
}

/// Brings the stored Moustique clients back, subscribed, with what was
/// queued for their PICKUP, in order. Their timeouts count from now: the
/// time the broker was down is not time a client was silent, and one that
/// is really gone is dropped a timeout after the start. Clients beyond the
/// registry's limit (lowered since they were stored) are not restored and
/// their records and queues are deleted, as is what queue bounds lowered
/// since drop, so the store says what the broker holds.
fn restore_http_clients(
    broker: &mut CoreBroker<Sink>,
    clients: Vec<StoredHttpClient>,
    queued: Vec<StoredHttpQueued>,
    writer: &StoreWriter,
    path: &Path,
) {
    let (now, unix) = (Instant::now(), unix_time());
    let (mut restored, mut subscriptions, mut refused) = (0, 0, 0);
    for client in clients {
        let (namespace, name, filters) = (client.namespace.clone(), client.client.clone(), client.filters.len());
        if broker.restore_client(client, now, unix, Sink::Http).is_some() {
            restored += 1;
            subscriptions += filters;
        } else {
            refused += 1;
            let _ = writer.submit(StoreOp::DeleteHttpClient { namespace, client: name });
        }
    }
    let (stored, messages) = (queued.len(), broker.restore_http_queued(queued));
    while let Some(op) = broker.poll_store_op() {
        let _ = writer.submit(op);
    }
    log::info!(
        "loaded {restored} HTTP clients with {subscriptions} subscriptions and {messages} queued messages from {}",
        path.display()
    );
    if messages < stored {
        log::warn!("{} stored messages queued for HTTP clients that were not restored were dropped", stored - messages);
    }
    if refused > 0 {
        log::warn!(
            "{refused} stored HTTP clients over the limit of {} were dropped",
            broker.http_state().clients.limits().max_clients
        );
    }
}

/// A running broker. Dropping it shuts it down, like [`Broker::shutdown`].
///
/// ```
/// use tinymq_net::Broker;
/// use std::time::Duration;
///
/// let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(1).start().unwrap();
/// let subscriber = broker.client("sub").unwrap();
/// subscriber.subscribe("sensors/#").unwrap();
/// broker.client("pub").unwrap().publish("sensors/temperature", b"22.5").unwrap();
/// let message = subscriber.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
/// assert_eq!(message.payload(), b"22.5");
/// broker.shutdown();
/// ```
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    bound: Vec<ListenAddr>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Broker {
    /// A builder with every setting at its default and no listener.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// The addresses the broker listens on, with real ports.
    pub fn listen_addrs(&self) -> &[ListenAddr] {
        &self.bound
    }

    /// The first TCP listener's address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.bound.iter().find_map(|a| match a {
            ListenAddr::Tcp(addr) => Some(*addr),
            _ => None,
        })
    }

    /// The first HTTP listener's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.bound.iter().find_map(|a| match a {
            ListenAddr::Http(addr) => Some(*addr),
            _ => None,
        })
    }

    /// The first TLS listener's address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.bound.iter().find_map(|a| match a {
            ListenAddr::Tls(addr) => Some(*addr),
            _ => None,
        })
    }

    /// The first HTTPS listener's address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.bound.iter().find_map(|a| match a {
            ListenAddr::Https(addr) => Some(*addr),
            _ => None,
        })
    }

    /// The first MQTT listener's address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.bound.iter().find_map(|a| match a {
            ListenAddr::Mqtt(addr) => Some(*addr),
            _ => None,
        })
    }

    /// The first MQTT-over-TLS listener's address.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.bound.iter().find_map(|a| match a {
            ListenAddr::Mqtts(addr) => Some(*addr),
            _ => None,
        })
    }

    /// An in-process client with id `client_id` (empty: the broker assigns
    /// one), whose session ends with it. A client id already in use, by a
    /// client of any transport, is taken over.
    pub fn client(&self, client_id: &str) -> Result<LocalClient, Error> {
        self.local_client(LocalOptions::new(client_id))
    }

    /// An in-process client opened as `options` say: a persistent session
    /// (kept while it is away and across restarts), QoS 1 messages
    /// acknowledged on receipt or explicitly. Its session lives among the
    /// binary clients' (one client-id space): a client id in use is taken
    /// over, and a stored session of it is resumed, or discarded when
    /// `options` ask for none. [`Error::SessionClosed`] with
    /// `TooManySessions` refuses a persistent session over the limit.
    pub fn local_client(&self, options: LocalOptions) -> Result<LocalClient, Error> {
        LocalClient::new(self.shared.clone(), options)
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats::read(&self.shared)
    }

    /// A handle that can stop the broker from another thread (a signal
    /// handler's, say).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: self.shared.clone() }
    }

    /// Tells every connection the broker is stopping (Disconnect 6), lets
    /// them drain briefly, and returns once every thread has stopped.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks until the broker stops (after a [`ShutdownHandle::shutdown`]).
    pub fn wait(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        log::info!("broker stopping");
        self.shared.begin_shutdown();
        close_local_clients(&self.shared);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.shared.auth.shutdown();
        // The loops are gone, so nothing more is written: commit the rest.
        if let Some(store) = &self.shared.store {
            store.shutdown();
        }
        log::info!("broker stopped");
    }
}

fn close_local_clients(shared: &Shared) {
    for sink in shared.broker.read().router().sinks() {
        if let Sink::Local(inbox) = sink {
            inbox.close(ReasonCode::ShuttingDown);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
        }
    }
}

/// Stops a broker from any thread.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Begins the shutdown; [`Broker::wait`] or [`Broker::shutdown`] returns
    /// when it is complete.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
        close_local_clients(&self.shared);
    }
}

/// Counters of a running broker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Open connections.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections refused at the connection limit.
    pub refused_connections: u64,
    /// Connections refused because their peer is not on the allow-list.
    pub refused_peers: u64,
    /// Connections, logins and requests refused because their address
    /// spent its budget of bad requests.
    pub throttled_requests: u64,
    /// TLS handshakes that failed.
    pub tls_handshake_failures: u64,
    /// Messages published to the broker.
    pub messages_in: u64,
    /// Messages delivered to subscribers (queued for a connection's socket
    /// or in an in-process client's queue).
    pub messages_out: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Connections closed as slow consumers.
    pub slow_consumer_drops: u64,
    /// Messages dropped from full in-process queues.
    pub local_queue_drops: u64,
    /// Live subscribers (connections and in-process clients).
    pub subscribers: u64,
    /// Subscriptions held.
    pub subscriptions: u64,
    /// Stored values.
    pub values: u64,
    /// Writes handed to the store.
    pub store_writes: u64,
    /// Writes the store made durable.
    pub store_committed_writes: u64,
    /// Store transactions committed.
    pub store_commits: u64,
    /// Store commits that failed.
    pub store_failed_commits: u64,
    /// Writes whose writer was told the store failed them.
    pub store_failures: u64,
    /// The durable sessions and their QoS 1 queues.
    pub sessions: SessionFigures,
}

impl BrokerStats {
    fn read(shared: &Shared) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &shared.stats;
        let store = shared.store.as_ref().map(|store| store.figures()).unwrap_or_default();
        let broker = shared.broker.read();
        let router = broker.router();
        BrokerStats {
            connections: s.connections.load(Relaxed),
            connections_total: s.connections_total.load(Relaxed),
            refused_connections: s.refused_connections.load(Relaxed),
            refused_peers: s.refused_peers.load(Relaxed),
            throttled_requests: broker.throttled_requests(),
            tls_handshake_failures: s.tls_handshake_failures.load(Relaxed),
            messages_in: s.messages_in.load(Relaxed),
            messages_out: s.messages_out.load(Relaxed),
            bytes_in: s.bytes_in.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            slow_consumer_drops: s.slow_consumer_drops.load(Relaxed),
            local_queue_drops: s.local_queue_drops.load(Relaxed),
            subscribers: router.subscriber_count() as u64,
            subscriptions: router.subscription_count() as u64,
            values: router.value_count() as u64,
            store_writes: s.store_writes.load(Relaxed) + shared.broker.writes(),
            store_committed_writes: store.committed,
            store_commits: store.commits,
            store_failed_commits: store.failed_commits,
            store_failures: s.store_failures.load(Relaxed),
            sessions: broker.sessions().figures(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_http_clients_come_back_subscribed_only_with_an_http_listener() {
        let dir = std::env::temp_dir().join(format!("tinymq-broker-clients-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        RedbStore::open(&dir)
            .unwrap()
            .apply(&[StoreOp::PutHttpClient {
                namespace: String::new(),
                client: "kept".into(),
                first_seen: 1,
                filters: vec!["a/#".into(), "b/+".into()],
            }])
            .unwrap();
        let loopback = "127.0.0.1:0".parse().unwrap();
        let without_http = Broker::builder().listen_tcp(loopback).data_dir(&dir).threads(1).start().unwrap();
        assert_eq!(without_http.stats().subscriptions, 0, "no one could pick up: not loaded");
        without_http.shutdown();
        let with_http = Broker::builder().listen_http(loopback).data_dir(&dir).threads(1).start().unwrap();
        assert_eq!(with_http.stats().subscriptions, 2, "kept in the store meanwhile, and back");
        with_http.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
