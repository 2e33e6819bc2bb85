//! State shared by the event loops, the in-process clients and the
//! embedding handle.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::Waker;
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tinymq_core::auth::{AuthError, Identity, Throttled};
use tinymq_core::broker::{Broker, BrokerEvent, Routed, StoreAcks};
use tinymq_core::durable::SessionId;
use tinymq_core::http::clients::HttpClientId;
use tinymq_core::http::response::Response;
use tinymq_core::http::service::SinkKind;
use tinymq_core::metrics::Figures;
use tinymq_core::{Delivery, Frame, NamespaceId, ReasonCode, RouteCache, TopicName};

use crate::bridge::BridgeStats;
use crate::config::BrokerConfig;
use crate::local_inbox::{LocalInbox, Pushed, WhenFull};
use crate::transport::{Stream, Transport};
use crate::users::{Authenticator, Decision};
use crate::writer::{StoreWriter, Ticket};
use tinymq_core::store::StoreOp;

/// A connection on some event loop. The serial tells a reused slab slot
/// from the connection that held it before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnRef {
    loop_index: u32,
    token: u32,
    pub(crate) serial: u64,
    pub(crate) transport: Transport,
}

impl ConnRef {
    /// 32-bit indexes keep it (and so every router sink and inbox item)
    /// at 24 bytes: no broker has 2^32 loops or connections on one loop.
    pub(crate) fn new(loop_index: usize, token: usize, serial: u64, transport: Transport) -> Self {
        let narrow = |n: usize| u32::try_from(n).expect("fewer than 2^32 loops and connections per loop");
        ConnRef { loop_index: narrow(loop_index), token: narrow(token), serial, transport }
    }

    pub(crate) fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    pub(crate) fn token(&self) -> usize {
        self.token as usize
    }
}

/// Where the router sends a subscriber's deliveries.
#[derive(Clone, Debug)]
pub(crate) enum Sink {
    Conn(ConnRef),
    Local(Arc<LocalInbox>),
    /// A Moustique client's PICKUP queue, kept by the core broker
    /// ([`Shared::broker`]).
    Http(HttpClientId),
    /// A binary client's durable session (see the core's
    /// `broker::durable`): QoS 1 messages are queued in it, the rest go
    /// to its connection, if it has one.
    Session(SessionId),
}

impl SinkKind for Sink {
    fn http_client(&self) -> Option<HttpClientId> {
        match self {
            Sink::Http(id) => Some(*id),
            _ => None,
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Sink::Conn(conn) if conn.transport.is_http() => "sse",
            Sink::Conn(conn) => conn.transport.name(),
            Sink::Local(_) => "local",
            Sink::Http(_) => "http",
            Sink::Session(_) => "session",
        }
    }

    fn session(&self) -> Option<SessionId> {
        match self {
            Sink::Session(id) => Some(*id),
            _ => None,
        }
    }
}

/// Work handed to an event loop by other threads.
///
/// Deliveries are most of the traffic, so the rare kinds of work are one
/// boxed [`Control`] and an item stays small: every cross-loop delivery
/// moves one.
pub(crate) enum InboxItem {
    Deliver(ConnRef, Arc<Delivery>),
    /// A small Publish frame for a binary connection, already encoded:
    /// bytes `start..start + len` of its batch's [`Batch::frames`]. Live
    /// traffic between binary clients moves this way, with no allocation
    /// per message.
    Frame(ConnRef, usize, u32),
    /// The connection's durable session has QoS 1 messages to send: they
    /// go out from the loop that owns it, so its packet ids stay in order.
    Pump(ConnRef),
    Control(Box<Control>),
}

/// The rare work for a loop: what is handled in the loop's inbox step, in
/// order, after the deliveries queued with it are moved.
pub(crate) enum Control {
    Close(ConnRef, ReasonCode),
    Accept(Stream, Option<IpAddr>),
    /// The write an HTTP answer waited for is committed (the answer), or
    /// failed (the error).
    Committed(ConnRef, Result<Response, String>),
    /// The credentials a connection's request waited on are checked.
    Verified(ConnRef, Result<Identity, AuthError>),
    /// The store committed (or failed) the writes up to this ticket: the
    /// QoS 1 PubAcks held for them go out (`--durability immediate`).
    AcksCommitted(Ticket, Result<(), String>),
}

impl From<Control> for InboxItem {
    fn from(control: Control) -> Self {
        InboxItem::Control(Box::new(control))
    }
}

/// Items for a loop, and the encoded frames its [`InboxItem::Frame`]s
/// point into. When `items` is empty, so is `frames`.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) items: Vec<InboxItem>,
    pub(crate) frames: Vec<u8>,
    /// Payload and frame bytes of the deliveries in `items`.
    bytes: usize,
}

impl Batch {
    /// Queues `delivery` for `target`.
    pub(crate) fn push_delivery(&mut self, target: ConnRef, delivery: &Arc<Delivery>) {
        self.bytes += delivery.message().payload.len();
        self.items.push(InboxItem::Deliver(target, delivery.clone()));
    }

    /// Queues for `target` the frame at `start..start + len` of `frames`.
    pub(crate) fn push_frame(&mut self, target: ConnRef, start: usize, len: u32) {
        self.bytes += len as usize;
        self.items.push(InboxItem::Frame(target, start, len));
    }

    /// Appends a frame's bytes; returns where they start, for
    /// [`InboxItem::Frame`]s.
    pub(crate) fn push_bytes(&mut self, frame: &[u8]) -> usize {
        self.frames.extend_from_slice(frame);
        self.frames.len() - frame.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.frames.clear();
        self.bytes = 0;
    }

    /// Moves `other`'s items to the end of this batch, leaving it empty.
    fn append(&mut self, other: &mut Batch) {
        if self.items.is_empty() {
            self.frames.clear();
            self.bytes = 0;
            std::mem::swap(self, other);
            return;
        }
        let offset = self.frames.len();
        self.bytes += std::mem::take(&mut other.bytes);
        self.frames.append(&mut other.frames);
        self.items.extend(other.items.drain(..).map(|item| match item {
            InboxItem::Frame(target, start, len) => InboxItem::Frame(target, start + offset, len),
            item => item,
        }));
    }
}

/// Inbox items past which a loop counts as behind.
const BACKLOG_MARK: usize = 16 * 1024;

pub(crate) struct LoopHandle {
    /// Shared with the bridges' resolver thread (loop 0), which wakes the
    /// loop with its answers.
    pub(crate) waker: Arc<Waker>,
    inbox: Mutex<Batch>,
    /// Whether `inbox` holds items: the loop checks it before each of its
    /// own deliveries, so it reads a flag rather than take the lock.
    has_items: AtomicBool,
    /// Items in `inbox`.
    backlog: AtomicUsize,
    /// The loop's connections whose unsent output is over the pressure
    /// mark (see [`LoopHandle::under_pressure`]).
    pressed: AtomicUsize,
    /// The loop's connections whose unsent output is over the choke mark
    /// (see [`LoopHandle::choked`]).
    choked: AtomicUsize,
    /// Delivery bytes in `inbox`.
    backlog_bytes: AtomicUsize,
    /// The pressure mark: a connection's unsent bytes, or the inbox's.
    pressure_bytes: usize,
}

impl LoopHandle {
    pub(crate) fn new(waker: Arc<Waker>, pressure_bytes: usize) -> Self {
        LoopHandle {
            waker,
            inbox: Mutex::new(Batch::default()),
            has_items: AtomicBool::new(false),
            backlog: AtomicUsize::new(0),
            pressed: AtomicUsize::new(0),
            choked: AtomicUsize::new(0),
            backlog_bytes: AtomicUsize::new(0),
            pressure_bytes,
        }
    }

    /// Whether this loop is behind: a receiver's unsent output is over the
    /// pressure mark, or the inbox holds more than [`BACKLOG_MARK`] items
    /// or more delivery bytes than the mark (an in-process publisher can
    /// queue large messages faster than the loop moves them). Publishers
    /// are then slowed a little (network ones read less often, in-process
    /// ones paced: see [`crate::flow`]), so a consumer slower than its
    /// producers is not cut for it; one that reads nothing still reaches
    /// its queue limit.
    pub(crate) fn under_pressure(&self) -> bool {
        self.pressed.load(Ordering::Relaxed) > 0
            || self.backlog.load(Ordering::Relaxed) > BACKLOG_MARK
            || self.backlog_bytes.load(Ordering::Relaxed) > self.pressure_bytes
    }

    /// One more (`true`) or one fewer connection over the pressure mark.
    pub(crate) fn press(&self, on: bool) {
        if on {
            self.pressed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pressed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a receiver here is far behind: its unsent output is over
    /// the choke mark (half its limit), so its drops are near. Publishers
    /// feeding it are read slower still (see [`crate::flow`]).
    pub(crate) fn choked(&self) -> bool {
        self.choked.load(Ordering::Relaxed) > 0
    }

    /// One more (`true`) or one fewer connection over the choke mark.
    pub(crate) fn choke(&self, on: bool) {
        if on {
            self.choked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.choked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn has_items(&self) -> bool {
        self.has_items.load(Ordering::Acquire)
    }

    /// Swaps the queued items into `batch` (which must be empty).
    pub(crate) fn take_items(&self, batch: &mut Batch) {
        let mut inbox = self.inbox.lock();
        self.has_items.store(false, Ordering::Relaxed);
        self.backlog.store(0, Ordering::Relaxed);
        self.backlog_bytes.store(0, Ordering::Relaxed);
        std::mem::swap(batch, &mut inbox);
    }

    /// Queues `batch` (leaving it empty, its capacity kept by one side or
    /// the other); true if the inbox was empty, so the loop needs a wake.
    fn push_all(&self, batch: &mut Batch) -> bool {
        let mut inbox = self.inbox.lock();
        let was_empty = inbox.is_empty();
        inbox.append(batch);
        self.backlog.store(inbox.items.len(), Ordering::Relaxed);
        self.backlog_bytes.store(inbox.bytes, Ordering::Relaxed);
        self.has_items.store(true, Ordering::Release);
        was_empty
    }
}

/// Broker-wide counters, read by statistics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    /// Open connections by transport, in [`Transport::ALL`]'s order.
    pub(crate) connections_by: [AtomicU64; Transport::ALL.len()],
    pub(crate) connections_total: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    /// Connections from peers not on the allow-list.
    pub(crate) refused_peers: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    /// TLS handshakes that failed: plaintext or garbage on a TLS port, a
    /// client refusing the certificate, no common cipher.
    pub(crate) tls_handshake_failures: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) slow_consumer_drops: AtomicU64,
    pub(crate) local_queue_drops: AtomicU64,
    pub(crate) store_writes: AtomicU64,
    /// Writes whose writer was told the store failed them: a 503 (a
    /// failed commit under `immediate`, a failing store under `batched`),
    /// or an error from an in-process publish.
    pub(crate) store_failures: AtomicU64,
    /// Broker-sent Disconnects, by reason code (index = code).
    pub(crate) disconnects: [AtomicU64; 9],
}

impl Stats {
    pub(crate) fn opened(&self, transport: Transport) {
        self.connections_by[transport as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, transport: Transport) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        self.connections_by[transport as usize].fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn count_disconnect(&self, reason: ReasonCode) {
        if let Some(counter) = self.disconnects.get(reason as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    /// The core's broker: the router, the Moustique clients' queues, the
    /// peers' budgets and every rule. Live publishes only read it, so the
    /// loops route them side by side; everything else writes.
    pub(crate) broker: BrokerLock,
    pub(crate) started: Instant,
    /// The store's writer thread; `None` for an in-memory broker.
    pub(crate) store: Option<Arc<StoreWriter>>,
    /// The users, and the threads that check their passwords.
    pub(crate) auth: Authenticator,
    pub(crate) loops: Vec<LoopHandle>,
    pub(crate) stats: Stats,
    /// In-process queues more than half full and still keeping what they
    /// get (see [`LocalInbox`]): while there are any, the network
    /// publishers that last fed an in-process queue are read slower.
    pub(crate) local_filling: Arc<AtomicUsize>,
    /// The NATS bridges' figures, one per [`BrokerConfig::bridges`].
    pub(crate) bridges: Vec<BridgeStats>,
    shutting_down: AtomicBool,
}

/// The core broker behind its read-write lock, with the store's writer.
///
/// A write guard hands the broker's own store writes (the Moustique
/// queues' puts and deletes, the sessions' writes;
/// [`Broker::poll_store_op`]) to the writer before it lets the broker go:
/// every call that may publish, pick up or expire changes the queues, and
/// none can forget to drain them, and they reach the writer in the order
/// the broker made them (a PICKUP's delete after the puts it covers). A
/// caller that needs the ticket of those writes (an answer held for the
/// commit) drains them itself first, under the same guard.
pub(crate) struct BrokerLock {
    lock: RwLock<Broker<Sink>>,
    store: Option<Arc<StoreWriter>>,
    /// Writes the guards handed to the store.
    writes: AtomicU64,
    /// The router's version
    /// ([`Router::version`](tinymq_core::Router::version)) as the last
    /// write left it, stored before that write's lock is released: a live
    /// publisher whose cached route is of this version routes without the
    /// lock.
    router_version: AtomicU64,
}

impl BrokerLock {
    /// The broker, to read (live routing, figures).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Broker<Sink>> {
        self.lock.read()
    }

    /// The broker, to change; see the type's docs.
    pub(crate) fn write(&self) -> BrokerGuard<'_> {
        BrokerGuard { broker: self.lock.write(), lock: self }
    }

    /// Writes the guards handed to the store so far.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The receivers of a live publish to `topic`, from `cache` when the
    /// router has not changed since (a stream on one topic: no lock, and
    /// no write to the lock's shared cache line, per message), else
    /// routed under the shared lock by `route`.
    pub(crate) fn route_live<'c>(
        &self,
        cache: &'c mut RouteCache<Sink>,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        route: impl FnOnce(&Broker<Sink>, &'c mut RouteCache<Sink>) -> &'c [Sink],
    ) -> &'c [Sink] {
        let version = self.router_version.load(Ordering::Acquire);
        // Asked twice (a comparison): a borrow returned from one branch
        // could not be lent to `route` in the other.
        if cache.current(version, namespace, topic.as_str()).is_some() {
            return cache.current(version, namespace, topic.as_str()).unwrap_or_default();
        }
        route(&self.lock.read(), cache)
    }
}

/// The broker borrowed to change it, from [`BrokerLock::write`].
pub(crate) struct BrokerGuard<'a> {
    broker: RwLockWriteGuard<'a, Broker<Sink>>,
    lock: &'a BrokerLock,
}

impl std::ops::Deref for BrokerGuard<'_> {
    type Target = Broker<Sink>;

    fn deref(&self) -> &Broker<Sink> {
        &self.broker
    }
}

impl std::ops::DerefMut for BrokerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Broker<Sink> {
        &mut self.broker
    }
}

impl BrokerGuard<'_> {
    /// Hands the broker's own store writes made so far to the writer; the
    /// ticket that covers them, if there were any.
    pub(crate) fn submit_store_ops(&mut self) -> Option<Ticket> {
        let store = self.lock.store.as_ref()?;
        let mut written = 0;
        let broker = &mut self.broker;
        let ticket = store.submit_all(std::iter::from_fn(|| broker.poll_store_op()).inspect(|_| written += 1));
        if written > 0 {
            self.lock.writes.fetch_add(written, Ordering::Relaxed);
        }
        ticket
    }
}

impl Drop for BrokerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.submit_store_ops();
        // Before the lock is released (the guard's field drops after this):
        // a reader that still sees the old version routes as before the
        // write, one that sees the new one takes the lock and waits.
        self.lock.router_version.store(self.broker.router().version(), Ordering::Release);
    }
}

impl Shared {
    pub(crate) fn new(
        config: BrokerConfig,
        broker: Broker<Sink>,
        store: Option<StoreWriter>,
        auth: Authenticator,
        loops: Vec<LoopHandle>,
    ) -> Self {
        let store = store.map(Arc::new);
        Shared {
            bridges: config.bridges.iter().map(BridgeStats::new).collect(),
            config,
            broker: BrokerLock {
                router_version: AtomicU64::new(broker.router().version()),
                lock: RwLock::new(broker),
                store: store.clone(),
                writes: AtomicU64::new(0),
            },
            started: Instant::now(),
            store,
            auth,
            loops,
            stats: Stats::default(),
            local_filling: Arc::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Hands a write to the store's writer. `None` when nothing is stored
    /// on disk.
    pub(crate) fn submit(&self, op: StoreOp) -> Option<Ticket> {
        let writer = self.store.as_ref()?;
        self.stats.store_writes.fetch_add(1, Ordering::Relaxed);
        Some(writer.submit(op))
    }

    /// The error the store is failing with, if it is: a write made now is
    /// not durable (yet), so it must not be acknowledged as stored.
    pub(crate) fn store_failing(&self) -> Option<String> {
        self.store.as_ref()?.failing()
    }

    /// What the store promises about a write, for the broker's rules.
    pub(crate) fn store_acks(config: &BrokerConfig, has_store: bool) -> StoreAcks {
        match (has_store, config.durability) {
            (false, _) => StoreAcks::None,
            (true, crate::writer::Durability::Immediate) => StoreAcks::Immediate,
            (true, crate::writer::Durability::Batched(_)) => StoreAcks::Batched,
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for handle in &self.loops {
            let _ = handle.waker.wake();
        }
    }

    /// Checks a client's credentials (`None`: anonymous). The decision
    /// comes at once, or later as [`Control::Verified`] to `conn`. A
    /// password that must be hashed is not, while `peer` is throttled.
    pub(crate) fn authenticate(
        self: &Arc<Self>,
        conn: ConnRef,
        peer: Option<IpAddr>,
        credentials: Option<(&str, &str)>,
    ) -> Decision {
        let Some((name, password)) = credentials else { return Decision::Now(Ok(Identity::Anonymous)) };
        let shared = self.clone();
        let gate = || match peer.map(|ip| self.check_peer(ip, Instant::now())) {
            Some(Err(throttled)) => Err(AuthError::Throttled { retry_after_secs: throttled.retry_after_secs() }),
            _ => Ok(()),
        };
        self.auth.authenticate(name, password, gate, move |result| {
            shared.send(conn.loop_index(), Control::Verified(conn, result).into());
        })
    }

    /// Whether `ip` may be served: `Err` (counted) while it is throttled.
    pub(crate) fn check_peer(&self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        if !self.config.peer_budget_enabled() {
            return Ok(());
        }
        self.broker.write().check_peer(ip, now)
    }

    /// The figures STATS and `/metrics` show.
    pub(crate) fn figures(&self) -> Figures {
        let mut figures = self.shell_figures();
        self.broker.read().fill_figures(&mut figures, Instant::now());
        figures
    }

    /// The figures the shell counts; [`Broker::fill_figures`] adds the
    /// broker's own (for a statistics call, which the broker serves).
    pub(crate) fn shell_figures(&self) -> Figures {
        let s = &self.stats;
        let (rss_bytes, threads) = process_figures();
        let store = self.store.as_ref().map(|store| store.figures()).unwrap_or_default();
        Figures {
            connections: Transport::ALL
                .iter()
                .map(|&t| (t.name(), s.connections_by[t as usize].load(Ordering::Relaxed)))
                .collect(),
            connections_total: s.connections_total.load(Ordering::Relaxed),
            refused_connections: s.refused_connections.load(Ordering::Relaxed),
            refused_peers: s.refused_peers.load(Ordering::Relaxed),
            // The broker counts the throttled, in `fill_figures`.
            throttled_requests: 0,
            throttled_peers: 0,
            peers: Vec::new(),
            rss_bytes,
            threads,
            tls_handshake_failures: s.tls_handshake_failures.load(Ordering::Relaxed),
            messages_in: s.messages_in.load(Ordering::Relaxed),
            messages_out: s.messages_out.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            slow_consumer_drops: s.slow_consumer_drops.load(Ordering::Relaxed),
            local_queue_drops: s.local_queue_drops.load(Ordering::Relaxed),
            store_writes: s.store_writes.load(Ordering::Relaxed) + self.broker.writes(),
            store_committed_writes: store.committed,
            store_records_written: store.records_written,
            store_commits: store.commits,
            store_failed_commits: store.failed_commits,
            store_failures: s.store_failures.load(Ordering::Relaxed),
            store_pending: store.pending,
            store_error: store.failing,
            uptime_secs: self.started.elapsed().as_secs(),
            disconnects: (1..s.disconnects.len() as u8)
                .filter_map(ReasonCode::from_u8)
                .map(|reason| (reason.name(), s.disconnects[reason as usize].load(Ordering::Relaxed)))
                .collect(),
            store_commit_seconds: store.commit_seconds,
            bridges: self.bridges.iter().map(BridgeStats::figures).collect(),
            // The broker counts the sessions, in `fill_figures`.
            sessions: Default::default(),
        }
    }

    /// Publishes the broker's main figures to `$SYS/broker/...` in the
    /// public namespace (loop 0 calls it every `sys_interval`): see
    /// [`Broker::publish_sys`].
    pub(crate) fn publish_sys(&self) {
        let figures = self.figures();
        let published = self.broker.write().publish_sys(&figures, env!("CARGO_PKG_VERSION"), unix_time());
        for (delivery, receivers) in published {
            self.dispatch(std::slice::from_ref(&delivery), &receivers, WhenFull::DropOldest);
        }
    }

    /// Queues work for loop `index`, waking it if its inbox was empty (one
    /// wake per batch, not per item).
    pub(crate) fn send(&self, index: usize, item: InboxItem) {
        let handle = &self.loops[index];
        let was_empty = {
            let mut inbox = handle.inbox.lock();
            inbox.items.push(item);
            handle.backlog.store(inbox.items.len(), Ordering::Relaxed);
            handle.has_items.store(true, Ordering::Release);
            inbox.items.len() == 1
        };
        if was_empty {
            let _ = handle.waker.wake();
        }
    }

    /// Queues a batch of work for loop `index` under one lock, with at most
    /// one wake; `batch` is left empty.
    pub(crate) fn send_all(&self, index: usize, batch: &mut Batch) {
        let handle = &self.loops[index];
        if handle.push_all(batch) {
            let _ = handle.waker.wake();
        }
    }

    /// Delivers `deliveries`, in order, to receivers not on the calling
    /// loop: connections through their loop's inbox (one batch, one lock
    /// per loop), in-process clients straight into their queue.
    ///
    /// The Moustique queues are filled first, under one lock: a message is in
    /// every PICKUP queue before any other loop can write it to a socket, so
    /// a client that has seen it elsewhere finds it there too.
    pub(crate) fn dispatch(&self, deliveries: &[Arc<Delivery>], receivers: &[Sink], when_full: WhenFull) {
        if let Some(resolved) = self.resolve_sessions(receivers) {
            return self.dispatch(deliveries, &resolved, when_full);
        }
        self.dispatch_to_queues(deliveries, receivers, when_full);
        for (index, targets) in loops_of(receivers) {
            let mut batch = Batch::default();
            for delivery in deliveries {
                for target in conns_on(index, targets) {
                    batch.push_delivery(target, delivery);
                }
            }
            self.send_all(index, &mut batch);
        }
    }

    /// `receivers` with each durable session's sink replaced by its
    /// connection, for a QoS 0 delivery (a session without one takes none),
    /// or `None` when there is no session among them.
    pub(crate) fn resolve_sessions(&self, receivers: &[Sink]) -> Option<Vec<Sink>> {
        if !receivers.iter().any(|sink| matches!(sink, Sink::Session(_))) {
            return None;
        }
        let broker = self.broker.read();
        let mut resolved: Vec<Sink> =
            receivers.iter().filter(|sink| !matches!(sink, Sink::Session(_))).cloned().collect();
        for sink in receivers {
            let Sink::Session(id) = sink else { continue };
            match broker.session_conn(*id) {
                Some(Sink::Conn(conn))
                    if !resolved.iter().any(|held| matches!(held, Sink::Conn(other) if other == conn)) =>
                {
                    resolved.push(Sink::Conn(*conn))
                }
                // An in-process client's session.
                Some(Sink::Local(inbox))
                    if !resolved.iter().any(|held| matches!(held, Sink::Local(other) if Arc::ptr_eq(other, inbox))) =>
                {
                    resolved.push(Sink::Local(inbox.clone()))
                }
                _ => {}
            }
        }
        Some(resolved)
    }

    /// Carries out, from a thread that is no event loop (an in-process
    /// client's), what a session rule routed: QoS 0 deliveries now, QoS 1
    /// sends on the loops owning the connections, in-process clients
    /// woken to take theirs. Its store writes were submitted under the
    /// broker's lock.
    pub(crate) fn carry_out(&self, routed: Routed<Sink>) {
        self.stats.messages_out.fetch_add(routed.queued as u64, Ordering::Relaxed);
        if routed.dropped > 0 {
            log::debug!("{} QoS 1 messages dropped: session queues full", routed.dropped);
        }
        for (delivery, receivers) in &routed.deliveries {
            self.dispatch(std::slice::from_ref(delivery), receivers, WhenFull::Wait);
        }
        for sink in routed.pumps {
            match sink {
                Sink::Conn(target) => self.send(target.loop_index(), InboxItem::Pump(target)),
                Sink::Local(inbox) => inbox.wake_session(),
                Sink::Http(_) | Sink::Session(_) => {}
            }
        }
    }

    /// Queues the live Publish frames of `payloads` from an in-process
    /// client for the binary connections among `receivers` (each frame
    /// under [`COPY_BELOW`](tinymq_core::outbound::COPY_BELOW)): encoded
    /// into each target loop's batch and delivered as bytes, so no message
    /// is allocated. `batch` is scratch space, left empty.
    pub(crate) fn dispatch_frames<P: AsRef<[u8]>>(
        &self,
        topic: &str,
        from: &str,
        payloads: impl Iterator<Item = P> + Clone,
        receivers: &[Sink],
        batch: &mut Batch,
    ) {
        for (index, targets) in loops_of(receivers) {
            for payload in payloads.clone() {
                let start = batch.frames.len();
                Frame::publish(topic, payload.as_ref(), from, false).encode(&mut batch.frames);
                let len = u32::try_from(batch.frames.len() - start).expect("a small frame");
                for target in conns_on(index, targets) {
                    batch.push_frame(target, start, len);
                }
            }
            self.send_all(index, batch);
        }
    }

    /// Delivers to the Moustique and in-process receivers (the queues); an
    /// event loop moves the connections' deliveries itself.
    pub(crate) fn dispatch_to_queues(&self, deliveries: &[Arc<Delivery>], receivers: &[Sink], when_full: WhenFull) {
        if receivers.iter().any(|sink| matches!(sink, Sink::Http(_))) {
            let queued = self.broker.write().queue_for_http(deliveries, receivers);
            self.stats.messages_out.fetch_add(queued as u64, Ordering::Relaxed);
        }
        for sink in receivers {
            if let Sink::Local(inbox) = sink {
                let pushed = inbox.push_all(deliveries, false, when_full);
                self.count_local_delivery(pushed);
            }
        }
    }

    /// Counts what a push into an in-process queue did.
    pub(crate) fn count_local_delivery(&self, pushed: Pushed) {
        self.stats.messages_out.fetch_add(pushed.queued as u64, Ordering::Relaxed);
        if pushed.dropped > 0 {
            self.stats.local_queue_drops.fetch_add(pushed.dropped as u64, Ordering::Relaxed);
        }
    }
}

/// The loops that the connections among `receivers` live on, each once,
/// with the receivers from its first connection on.
fn loops_of(receivers: &[Sink]) -> impl Iterator<Item = (usize, &[Sink])> {
    receivers.iter().enumerate().filter_map(|(i, sink)| {
        let Sink::Conn(first) = sink else { return None };
        let index = first.loop_index();
        let seen = conns_on(index, &receivers[..i]).next().is_some();
        (!seen).then_some((index, &receivers[i..]))
    })
}

/// The connections among `receivers` that live on loop `index`.
fn conns_on(index: usize, receivers: &[Sink]) -> impl Iterator<Item = ConnRef> + '_ {
    receivers.iter().filter_map(move |sink| match sink {
        Sink::Conn(target) if target.loop_index() == index => Some(*target),
        _ => None,
    })
}

/// Logs what the broker reported.
pub(crate) fn log_events(broker: &mut Broker<Sink>) {
    while let Some(event) = broker.poll_event() {
        if let BrokerEvent::PeerThrottled(ip) = event {
            log::warn!("{ip} spent its budget of bad requests: throttled until it regains some");
        }
    }
}

/// Wall-clock Unix seconds: what messages are stamped with.
pub(crate) fn unix_time() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// This process's resident memory in bytes and its thread count, from
/// `/proc/self/status` (`None` where there is none).
fn process_figures() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return (None, None) };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    (field("VmRSS:").map(|kib| kib * 1024), field("Threads:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_choked_while_one_of_its_connections_is_and_choked_is_not_pressed() {
        let poll = mio::Poll::new().unwrap();
        let handle = LoopHandle::new(Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap()), 1024);
        assert!(!handle.choked());
        handle.choke(true);
        handle.choke(true);
        handle.choke(false);
        assert!(handle.choked());
        // Choked counts apart from pressed: the bridge sets both.
        assert!(!handle.under_pressure());
        handle.choke(false);
        assert!(!handle.choked());
    }
}
