//! Bridges, on loop 0: a protocol client (NATS or MQTT, a [`Link`]) and
//! the socket the loop dials for it, non-blocking, again and again at the
//! client's times, plain or TLS.
//!
//! A bridge is a router subscriber in its namespace (the public one
//! unless it names a user's) for its `out` filters, its sink a
//! [`ConnRef`] with a token of its own ([`BRIDGE_TOKEN_BASE`] up) that no
//! slab slot has: the fan-out hands its deliveries (or the small frames of
//! the binary fast path) to [`EventLoop::bridge_deliver`] instead of a
//! connection, wherever they were published. What arrives on its `in`
//! subjects or topics is published into that namespace with every
//! receiver but the bridge itself, so a message never goes back out the
//! way it came; the origin (a NATS header, an MQTT 5 user property) stops
//! what other brokers would send back.
//!
//! Nothing here blocks: connecting, reading and writing all stop at
//! `WouldBlock`, and a server given by name rather than address is
//! resolved on a thread of its own ([`Resolver`]) that wakes the loop with
//! the answer; the bridge is dialing meanwhile, within its handshake
//! timeout.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};
use smallvec::SmallVec;
use tinymq_core::broker::{Broker, SessionHold, bridge_session_key};
use tinymq_core::durable::{QueueLimits, SessionId, Transmit};
use tinymq_core::mqtt::AckTicket;
use tinymq_core::nats::Headers;
use tinymq_core::outbound::COPY_BELOW;
use tinymq_core::{Decoded, Decoder, Delivery, Frame, Message, NamespaceId, Qos, RouteCache, TopicLimits, TopicName};

use super::EventLoop;
use super::binary::is_binary_conn;
use super::durable::submit_session_ops;
use super::fanout::Live;
use crate::bridge::{BridgeConfig, BridgeKind, BridgeStats, Checked, Mapping};
use crate::flow::{self, READ_BUDGET, READ_CHUNK, STALL};
use crate::shared::{ConnRef, LoopHandle, Shared, Sink};
use crate::transport::Transport;
use crate::writer::Ticket;

#[path = "bridge_link.rs"]
mod link;
use link::{Incoming, Link, LinkEvent, LinkSocket, Refused};

#[path = "bridge_resolve.rs"]
mod resolve;
pub(crate) use resolve::Resolver;

/// Bridge `i` has token `BRIDGE_TOKEN_BASE + i`, as a mio token and in its
/// [`ConnRef`]: far above any slab slot, below the listeners' tokens.
pub(super) const BRIDGE_TOKEN_BASE: usize = u32::MAX as usize - 1024;

/// The `from` of a message that came from NATS without an origin header.
const NATS_SENDER: &str = "nats";

/// The `from` of a message that came from MQTT without an origin property.
const MQTT_SENDER: &str = "mqtt";
/// Unsent output written at once when it reaches this, rather than at the
/// end of the turn: a turn of a fast publisher queued a megabyte and more,
/// allocated, touched and given back to the system every turn (a tenth of
/// a bridge's time went to page faults).
const WRITE_AT: usize = 64 * 1024;
/// How long an address that is not the server's last may take to answer a
/// dial before the next is tried (a blackholed IPv6 route, where the SYN
/// is never answered): the last one has what is left of the handshake
/// timeout.
const DIAL_STEP: Duration = Duration::from_secs(1);

/// A message for the far side held while the bridge is down.
struct Queued {
    subject: String,
    retained: bool,
    payload: Arc<[u8]>,
}

pub(super) struct Bridge {
    index: usize,
    client: Link,
    checked: Checked,
    /// The namespace it bridges: the public one, or a user's.
    namespace: NamespaceId,
    broker_id: Arc<str>,
    /// Its sink in the router.
    me: ConnRef,
    socket: Option<LinkSocket>,
    /// The server's name is being resolved: the serial of the lookup.
    resolving: Option<u64>,
    /// The socket is dialing: the first writable event says how it went.
    connecting: bool,
    /// The server's addresses not dialed yet in this attempt: when one
    /// cannot be reached, the next is tried at once (a name with an IPv6
    /// and an IPv4 address, the server on one of them).
    addresses: VecDeque<SocketAddr>,
    /// The address being dialed or connected to.
    address: Option<SocketAddr>,
    /// When to give up on the address being dialed for the next one.
    dial_deadline: Option<Instant>,
    queue: VecDeque<Queued>,
    queue_limit: usize,
    /// QoS 1 (MQTT): what does not fit the output buffer or the in-flight
    /// window is held, not dropped, and messages taken in are routed to
    /// durable sessions as QoS 1 and acknowledged once safe.
    qos1: bool,
    /// QoS 1 MQTT with a store: its out-queue is a durable session
    /// (`tinymq_core::broker::Broker::open_bridge_session`), stored, and
    /// `queue` stays empty. Its hold on the session.
    durable: Option<SessionHold>,
    /// Durable: deliveries that reached it at QoS 0 this turn, queued in
    /// the session at the flush (under one lock).
    incoming: Vec<Arc<Delivery>>,
    /// Durable: a message taken from the session that the output buffer
    /// had no room for, sent first.
    pending: Option<Transmit>,
    /// Durable: messages the session holds and has not sent.
    held: usize,
    /// Durable: messages the session holds, in flight included.
    kept: usize,
    /// Durable: the highest sequence number sent, so a resend is not
    /// counted in `messages_out` again.
    sent_seq: u64,
    /// Durable: the session queue's drops counted in the figures so far.
    queue_drops: u64,
    /// Output was queued this turn: flush at its end.
    dirty: bool,
    /// The last write stopped at `WouldBlock`: wait for writable before
    /// writing at [`WRITE_AT`] again.
    write_blocked: bool,
    /// Connections made: every one after the first is a reconnect.
    connects: u64,
    /// The server's last complaint on this connection (a -ERR).
    server_said: Option<String>,
    /// Ciphertext read from a TLS socket, kept for the next read.
    cipher: Vec<u8>,
    /// What the socket is read into (see [`EventLoop::bridge_read`]).
    chunk: Arc<[u8]>,
    /// Its socket is read again then (not at a readiness event): it was
    /// left with bytes unread because what it feeds is behind, or for the
    /// others' turn.
    read_at: Option<Instant>,
    /// The loops its last chunk of messages from the far side went to.
    fed_loops: u64,
    /// What came in last: a stream on one subject (the common case) is
    /// mapped, checked against the `in` filters and routed once, and its
    /// topic and sender allocated once, not for every message.
    last_in: LastIn,
    /// The last topic sent out, and its far-side name.
    last_out: (String, String),
    /// It is [`Bridge::behind`], counted in loop 0's pressure: publishers feeding it are read slower, as for any
    /// connection, rather than outrun it into drops.
    pressing: bool,
    /// Its unsent output is over [`flow::over_choke_mark`], counted in loop
    /// 0's choked: publishers feeding it are read slower still, rather
    /// than fill the buffer into drops (a NATS server slower than the
    /// pressed pace).
    choking: bool,
}

impl Bridge {
    pub(super) fn new(index: usize, config: &BridgeConfig, shared: &Shared, now: Instant) -> io::Result<Self> {
        let checked =
            config.validate(&shared.config.session.topic_limits).map_err(|e| io::Error::other(e.to_string()))?;
        let client = Link::new(config, &checked, now)?;
        let me = ConnRef::new(0, BRIDGE_TOKEN_BASE + index, 0, Transport::Tcp);
        let namespace = shared.broker.write().router_mut().namespace(&config.namespace);
        let durable = config.qos == 1 && matches!(config.kind, BridgeKind::Mqtt) && shared.store.is_some();
        let mut hold = None;
        if durable && !checked.out.is_empty() {
            // Its window, and its bound as before: what is held besides
            // what is in flight.
            let window = client.send_window();
            let limits = QueueLimits {
                max_inflight: u16::try_from(window).unwrap_or(u16::MAX),
                max_messages: config.queue_limit.saturating_add(window),
                max_bytes: shared.config.sessions.queue.max_bytes,
            };
            let key = bridge_session_key(index, &config.broker_id);
            let mut broker = shared.broker.write();
            let opened =
                broker.open_bridge_session(&key, namespace, &checked.out, limits, Sink::Conn(me), Sink::Session);
            let _ = submit_session_ops(shared, &mut broker, None);
            let opened = opened.map_err(|e| io::Error::other(format!("bridge {index}: {e}")))?;
            let (len, _, _) = broker.bridge_queue(opened);
            if len > 0 {
                log::info!("bridge {index}: {len} messages kept from before are sent once it is connected");
            }
            hold = Some(opened);
        } else if !checked.out.is_empty() {
            let mut broker = shared.broker.write();
            let id = broker.router_mut().add_subscriber(namespace, Sink::Conn(me));
            for filter in &checked.out {
                // The stored values the filter matches stay here: the far
                // side has its own.
                let _values = broker.subscribe(id, filter.clone());
            }
        }
        log::info!(
            "bridge {index} ({:?}{}) to {} as {:?}: out {:?}, in {:?}, in the {} namespace",
            config.kind,
            if checked.tls.is_some() { ", TLS" } else { "" },
            config.display_servers().join(","),
            config.broker_id,
            config.out,
            config.inbound,
            if config.namespace.is_empty() { "public".to_owned() } else { format!("{:?}", config.namespace) }
        );
        Ok(Bridge {
            index,
            client,
            checked,
            namespace,
            broker_id: config.broker_id.as_str().into(),
            me,
            socket: None,
            resolving: None,
            connecting: false,
            addresses: VecDeque::new(),
            address: None,
            dial_deadline: None,
            queue: VecDeque::new(),
            queue_limit: config.queue_limit,
            qos1: config.qos == 1,
            write_blocked: false,
            durable: hold,
            incoming: Vec::new(),
            pending: None,
            held: 0,
            kept: 0,
            sent_seq: 0,
            queue_drops: 0,
            // Durable: the first flush shows what was kept in `queued`.
            dirty: hold.is_some(),
            connects: 0,
            server_said: None,
            cipher: Vec::new(),
            chunk: Arc::new([]),
            read_at: None,
            fed_loops: 0,
            last_in: LastIn::default(),
            last_out: (String::new(), String::new()),
            pressing: false,
            choking: false,
        })
    }

    fn token(&self) -> Token {
        Token(BRIDGE_TOKEN_BASE + self.index)
    }

    /// Whether publishers feeding it must be slowed: its unsent output is
    /// over the pressure mark, or (QoS 1, where the far side's PUBACKs set
    /// the pace) what it holds is over half its bound.
    fn behind(&self) -> bool {
        let held = if self.durable.is_some() { self.held + self.incoming.len() } else { self.queue.len() };
        flow::over_pressure_mark(self.client.outbound()) || (self.qos1 && held > self.queue_limit / 2)
    }

    /// Durable: queues what reached it at QoS 0, hands the far side's
    /// PUBACKs (`acks`) to the session, sends what was in flight again
    /// after a new connection (`resend`), then sends what the window
    /// allows, in order, until the output buffer is full; under one lock.
    /// What can never be sent (too large for the server) is given up and
    /// counted as dropped. The number sent.
    fn pump(&mut self, shared: &Shared, acks: &[u16], resend: bool) -> usize {
        let Some(hold) = self.durable else { return 0 };
        let stats = &shared.bridges[self.index];
        let mut sent = 0;
        let mut broker = shared.broker.write();
        for delivery in self.incoming.drain(..) {
            // A full queue refuses it, counted below.
            let _ = broker.bridge_enqueue(hold, delivery);
        }
        for &packet_id in acks {
            let _ = broker.bridge_acked(hold, packet_id);
        }
        if resend {
            // What it had taken is in flight in the session, and goes again.
            self.pending = None;
            broker.bridge_resend(hold);
        }
        if self.client.is_connected() {
            let window = self.client.send_window();
            loop {
                let transmit = match self.pending.take() {
                    Some(transmit) => transmit,
                    None => match broker.bridge_transmit(hold, window) {
                        Some(transmit) => transmit,
                        None => break,
                    },
                };
                let message = transmit.delivery.message();
                if !self.map_out(&message.topic) {
                    self.last_out = (String::new(), String::new());
                }
                let retained = transmit.delivery.is_retained();
                let (id, dup) = (transmit.packet_id, transmit.dup);
                match self.client.publish_with_id(&self.last_out.1, retained, &message.payload, id, dup) {
                    Ok(()) => {
                        sent += 1;
                        if transmit.seq > self.sent_seq {
                            self.sent_seq = transmit.seq;
                            BridgeStats::add(&stats.messages_out, 1);
                        }
                    }
                    Err(Refused::NotConnected | Refused::Window) => {
                        self.pending = Some(transmit);
                        break;
                    }
                    // Wait for the socket to take some, unless nothing is
                    // queued (then it can never fit).
                    Err(Refused::Full) if !self.client.outbound().is_empty() => {
                        self.pending = Some(transmit);
                        break;
                    }
                    Err(refused) => {
                        let why = match refused {
                            Refused::Unsendable(why) => why,
                            _ => "larger than the output buffer".to_owned(),
                        };
                        log::debug!("bridge {}: {} not sent: {why}", self.index, message.topic);
                        BridgeStats::add(&stats.drops, 1);
                        let _ = broker.bridge_acked(hold, id);
                    }
                }
            }
        }
        let _ = submit_session_ops(shared, &mut broker, None);
        let (len, in_flight, dropped) = broker.bridge_queue(hold);
        drop(broker);
        // Dropped when a publish found the queue full, on any loop.
        BridgeStats::add(&stats.drops, dropped.saturating_sub(self.queue_drops));
        self.queue_drops = dropped;
        self.held = len.saturating_sub(in_flight);
        self.kept = len;
        stats.queued.store(self.held as u64, Ordering::Relaxed);
        if sent > 0 {
            self.dirty = true;
        }
        sent
    }

    /// Maps `topic` to the far side's name into `last_out` (a stream on
    /// one topic is mapped once); `false` when it is not a topic name.
    fn map_out(&mut self, topic: &str) -> bool {
        if self.last_out.0 == topic && !topic.is_empty() {
            return true;
        }
        let subject = match &self.checked.mapping {
            Mapping::Nats(mapping) => match TopicName::new(topic, &TopicLimits::UNBOUNDED) {
                Ok(name) => mapping.topic_to_subject(name),
                Err(_) => return false,
            },
            Mapping::Mqtt(prefix) => prefix.to_remote(topic),
        };
        self.last_out = (topic.to_owned(), subject);
        true
    }

    /// Sets `pressing` and `choking` to what its output (and queue) say
    /// now, telling its loop (`handle`) of each change: while either
    /// holds, the publishers feeding it are read slower.
    fn update_flow(&mut self, handle: &LoopHandle) {
        let behind = self.behind();
        if behind != self.pressing {
            self.pressing = behind;
            handle.press(behind);
        }
        let choking = flow::over_choke_mark(self.client.outbound());
        if choking != self.choking {
            self.choking = choking;
            handle.choke(choking);
        }
    }

    /// When the loop must call [`EventLoop::bridge_timers`] for it.
    pub(super) fn deadline(&self) -> Option<Instant> {
        [self.client.poll_timeout(), self.read_at, self.dial_deadline].into_iter().flatten().min()
    }

    /// Queues a message for the far side: sent now when connected (and
    /// nothing older waits), else held up to the bound. `false`: dropped.
    fn send(&mut self, subject: &str, retained: bool, payload: &[u8], stats: &BridgeStats) -> bool {
        if self.queue.is_empty() {
            match self.client.publish(&self.checked, subject, retained, payload) {
                Ok(()) => {
                    self.dirty = true;
                    BridgeStats::add(&stats.messages_out, 1);
                    return true;
                }
                // Held: not connected, a full QoS 1 window, or (at QoS 1)
                // a full buffer.
                Err(Refused::NotConnected | Refused::Window) => {}
                Err(Refused::Full) if self.qos1 => {}
                // Over the buffer (the far side is not reading fast
                // enough), or never sendable: dropped and counted.
                Err(Refused::Full) => {
                    log::debug!("bridge {}: {subject} not sent: the output buffer is full", self.index);
                    BridgeStats::add(&stats.drops, 1);
                    return false;
                }
                Err(Refused::Unsendable(error)) => {
                    log::debug!("bridge {}: {subject} not sent: {error}", self.index);
                    BridgeStats::add(&stats.drops, 1);
                    return false;
                }
            }
        }
        if self.queue.len() >= self.queue_limit {
            BridgeStats::add(&stats.drops, 1);
            return false;
        }
        self.queue.push_back(Queued { subject: subject.to_owned(), retained, payload: payload.into() });
        stats.queued.store(self.queue.len() as u64, Ordering::Relaxed);
        true
    }

    /// Sends what was held while down, until the outbound buffer is full.
    fn send_queued(&mut self, stats: &BridgeStats) {
        while let Some(queued) = self.queue.front() {
            match self.client.publish(&self.checked, &queued.subject, queued.retained, &queued.payload) {
                Ok(()) => BridgeStats::add(&stats.messages_out, 1),
                // Wait for a PUBACK.
                Err(Refused::NotConnected | Refused::Window) => break,
                // Full: wait for the socket to take some, unless nothing
                // is queued (then it can never fit).
                Err(Refused::Full) if !self.client.outbound().is_empty() => break,
                Err(_) => BridgeStats::add(&stats.drops, 1),
            }
            self.dirty = true;
            self.queue.pop_front();
        }
        stats.queued.store(self.queue.len() as u64, Ordering::Relaxed);
    }

    /// The message as it is published here, or `None` (counted by the
    /// caller as nothing) when it is this broker's own, maps to no topic,
    /// or matches no `in` filter.
    fn inbound(&mut self, message: &Incoming, limits: &TopicLimits) -> Option<(Arc<str>, Arc<str>, bool)> {
        // A stream from one broker shares one header block (NATS): what it
        // says is read once.
        let same_headers = match (&self.last_in.headers, &message.headers) {
            (Some(last), Some(headers)) => Arc::ptr_eq(last, headers),
            _ => false,
        };
        if !same_headers || self.last_in.from.is_none() {
            let origin = message.origin();
            let sender = match &self.checked.mapping {
                Mapping::Nats(_) => NATS_SENDER,
                Mapping::Mqtt(_) => MQTT_SENDER,
            };
            let from_name = origin.unwrap_or(sender);
            if self.last_in.from.as_deref() != Some(from_name) {
                self.last_in.from = Some(from_name.into());
            }
            self.last_in.own = origin == Some(&*self.broker_id);
            self.last_in.retained = message.retained();
            self.last_in.headers = message.headers.clone();
        }
        if self.last_in.own {
            return None;
        }
        let same = Arc::ptr_eq(&self.last_in.name, &message.name) || *self.last_in.name == *message.name;
        if !same || self.last_in.name.is_empty() {
            let topic = self.topic_of(&message.name, limits);
            self.last_in.name = message.name.clone();
            self.last_in.topic = topic;
        }
        let topic = self.last_in.topic.clone()?;
        let from = self.last_in.from.clone()?;
        Some((topic, from, self.last_in.retained))
    }

    /// The topic here for the far side's `name`, if it maps to one that
    /// an `in` filter matches.
    fn topic_of(&self, name: &str, limits: &TopicLimits) -> Option<Arc<str>> {
        let topic = match &self.checked.mapping {
            Mapping::Nats(mapping) => match mapping.subject_to_topic(name, limits) {
                Ok(topic) => topic,
                Err(error) => {
                    log::debug!("bridge {}: {error}", self.index);
                    return None;
                }
            },
            Mapping::Mqtt(prefix) => prefix.to_local(name)?.to_owned(),
        };
        let checked = TopicName::new(&topic, limits).ok()?;
        self.checked.inbound.iter().any(|filter| filter.matches(checked)).then(|| topic.as_str().into())
    }
}

/// The last far-side name taken in, as [`Bridge::inbound`] mapped it, and
/// the last sender and route.
#[derive(Default)]
struct LastIn {
    /// The far side's name and the topic here (`None`: not taken in).
    name: Arc<str>,
    topic: Option<Arc<str>>,
    /// The last header block (NATS) and what it says: the sender, whether
    /// it is this broker's own message, whether it is retained.
    headers: Option<Arc<Headers>>,
    from: Option<Arc<str>>,
    own: bool,
    retained: bool,
    routes: RouteCache<Sink>,
    /// The receivers of a message being dispatched (kept for its capacity).
    receivers: Vec<Sink>,
}

/// Whether `sink` is the bridge a message came in through: its connection
/// `me`, or (durable) its out-queue's session `own`. The loop stops here:
/// what came from the bridge does not go back.
fn is_the_bridge(sink: &Sink, me: ConnRef, own: Option<SessionId>) -> bool {
    match sink {
        Sink::Conn(target) => *target == me,
        Sink::Session(id) => Some(*id) == own,
        _ => false,
    }
}

impl EventLoop {
    /// Whether `token` is a bridge's.
    pub(super) fn is_bridge_token(&self, token: usize) -> bool {
        token >= BRIDGE_TOKEN_BASE && token < BRIDGE_TOKEN_BASE + self.bridges.len()
    }

    /// The earliest deadline of the bridges.
    pub(super) fn bridges_deadline(&self) -> Option<Instant> {
        self.bridges.iter().filter_map(Bridge::deadline).min()
    }

    /// Dials the bridges whose next attempt is due, and runs the clients'
    /// timers (PING, the handshake and stale checks).
    pub(super) fn bridge_timers(&mut self, now: Instant) {
        for index in 0..self.bridges.len() {
            let bridge = &mut self.bridges[index];
            if bridge.deadline().is_none_or(|at| at > now) {
                continue;
            }
            if bridge.socket.is_none() && bridge.resolving.is_none() {
                self.dial(index, now);
            } else if bridge.connecting && bridge.dial_deadline.is_some_and(|at| at <= now) {
                self.dial_failed(index, io::ErrorKind::TimedOut.into(), now);
            } else if bridge.read_at.is_some_and(|at| at <= now) {
                // Bytes left unread: read on (a client timer a little
                // early is harmless: it checks its own times).
                bridge.read_at = None;
                self.bridge_read(index, now);
            } else if let Err(error) = bridge.client.handle_timeout(now) {
                let why = match bridge.resolving {
                    Some(_) => format!("cannot resolve {}: {error}", bridge.client.server()),
                    None => error.to_string(),
                };
                self.bridge_failed(index, &why, now);
            } else {
                bridge.dirty = true;
            }
            self.bridge_events(index, now);
        }
    }

    /// Dials the bridge's next server: at once when it is an address, else
    /// once the resolver thread has its address.
    fn dial(&mut self, index: usize, now: Instant) {
        let bridge = &mut self.bridges[index];
        let Some(server) = bridge.client.next_server(now) else { return };
        if let Ok(address) = server.parse::<SocketAddr>() {
            return self.connect(index, vec![address], now);
        }
        let resolver = self.resolver.get_or_insert_with(|| Resolver::new(self.shared.loops[0].waker.clone()));
        match resolver.lookup(index, &server) {
            Ok(serial) => {
                log::debug!("bridge {index}: resolving {server}");
                bridge.resolving = Some(serial);
            }
            Err(error) => self.bridge_failed(index, &format!("cannot resolve {server}: {error}"), now),
        }
    }

    /// Dials the bridges whose server names were resolved.
    pub(super) fn bridges_resolved(&mut self, now: Instant) {
        let Some(resolver) = &self.resolver else { return };
        let mut answers = Vec::new();
        resolver.take_answers(&mut answers);
        for answer in answers {
            let Some(bridge) = self.bridges.get_mut(answer.bridge) else { continue };
            if bridge.resolving != Some(answer.serial) {
                continue;
            }
            bridge.resolving = None;
            match answer.result {
                Ok(addresses) => self.connect(answer.bridge, addresses, now),
                Err(error) => {
                    let why = format!("cannot resolve {}: {error}", bridge.client.server());
                    self.bridge_failed(answer.bridge, &why, now);
                }
            }
            self.bridge_events(answer.bridge, now);
        }
    }

    /// Opens the bridge's socket to the first of `addresses` that takes it,
    /// non-blocking.
    fn connect(&mut self, index: usize, addresses: Vec<SocketAddr>, now: Instant) {
        self.bridges[index].addresses = addresses.into();
        self.connect_next(index, now);
    }

    /// Dials the bridge's next address; when none is left, the attempt has
    /// failed (and the client schedules the next server).
    fn connect_next(&mut self, index: usize, now: Instant) {
        let bridge = &mut self.bridges[index];
        let Some(address) = bridge.addresses.pop_front() else {
            let server = bridge.client.server();
            return self.bridge_failed(index, &format!("cannot connect to {server}: no address left"), now);
        };
        bridge.address = Some(address);
        bridge.dial_deadline = (!bridge.addresses.is_empty()).then(|| now + DIAL_STEP);
        let server = bridge.client.server();
        let token = bridge.token();
        let dialed = TcpStream::connect(address).and_then(|mut socket| {
            // The bridge writes whole batches itself: Nagle would only hold
            // the tail of one back for the peer's delayed ACK (40 ms).
            socket.set_nodelay(true)?;
            self.poll.registry().register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
            Ok(socket)
        });
        match dialed {
            Ok(socket) => {
                log::debug!("bridge {index}: dialing {server} ({address})");
                bridge.socket = Some(LinkSocket::Plain(socket));
                bridge.connecting = true;
            }
            Err(error) => self.dial_failed(index, error, now),
        }
    }

    /// Dialing the bridge's current address failed: the next one is tried,
    /// or, with none left, the attempt has failed.
    fn dial_failed(&mut self, index: usize, error: io::Error, now: Instant) {
        let bridge = &mut self.bridges[index];
        let server = bridge.client.server();
        let address = bridge.address.map(|a| a.to_string()).unwrap_or_default();
        if bridge.addresses.is_empty() {
            return self.bridge_failed(index, &format!("cannot connect to {server} ({address}): {error}"), now);
        }
        log::debug!("bridge {index}: cannot connect to {server} ({address}): {error}; trying its next address");
        if let Some(mut socket) = bridge.socket.take() {
            let _ = self.poll.registry().deregister(socket.tcp_mut());
        }
        bridge.connecting = false;
        self.connect_next(index, now);
    }

    /// Drops the bridge's connection; the client schedules the next one.
    fn bridge_failed(&mut self, index: usize, why: &str, now: Instant) {
        let bridge = &mut self.bridges[index];
        if let Some(mut socket) = bridge.socket.take() {
            let _ = self.poll.registry().deregister(socket.tcp_mut());
        }
        bridge.connecting = false;
        bridge.resolving = None;
        bridge.addresses.clear();
        bridge.dial_deadline = None;
        bridge.write_blocked = false;
        bridge.read_at = None;
        bridge.client.handle_disconnected(now);
        if std::mem::take(&mut bridge.pressing) {
            self.shared.loops[self.index].press(false);
        }
        if std::mem::take(&mut bridge.choking) {
            self.shared.loops[self.index].choke(false);
        }
        let stats = &self.shared.bridges[index];
        stats.connected.store(false, Ordering::Relaxed);
        // What the server said before closing (a -ERR about credentials)
        // is the reason worth showing.
        let why = match bridge.server_said.take() {
            Some(said) => format!("{why}, after: {said}"),
            None => why.to_owned(),
        };
        log::warn!("bridge {index}: {why}; retrying");
        stats.set_error(why);
    }

    /// A readiness event on bridge `index`'s socket.
    pub(super) fn bridge_ready(&mut self, index: usize, event: &mio::event::Event, now: Instant) {
        let bridge = &mut self.bridges[index];
        let Some(socket) = bridge.socket.as_mut() else { return };
        if bridge.connecting {
            let socket = socket.tcp_mut();
            // Writable (or an error) ends the dial; anything else is spurious.
            match socket.take_error() {
                Ok(Some(error)) | Err(error) => {
                    self.dial_failed(index, error, now);
                    return self.bridge_events(index, now);
                }
                Ok(None) => {}
            }
            match socket.peer_addr() {
                Ok(_) => {
                    bridge.connecting = false;
                    bridge.addresses.clear();
                    bridge.dial_deadline = None;
                    bridge.client.handle_connected(now);
                    // MQTT speaks TLS from the start (NATS after INFO).
                    if matches!(bridge.client, Link::Mqtt(_))
                        && let Err(error) = bridge.upgrade()
                    {
                        let server = bridge.client.server();
                        self.bridge_failed(index, &format!("{server}: TLS: {error}"), now);
                        return self.bridge_events(index, now);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::NotConnected && !event.is_error() => return,
                Err(error) => {
                    self.dial_failed(index, error, now);
                    return self.bridge_events(index, now);
                }
            }
        }
        // A read put off (see `bridge_read`) waits for its time: new bytes
        // arriving meanwhile do not cut the stall short.
        let deferred = self.bridges[index].read_at.is_some();
        if (event.is_readable() || event.is_read_closed() || event.is_error()) && !deferred {
            self.bridge_read(index, now);
        }
        if let Some(bridge) = self.bridges.get_mut(index) {
            bridge.dirty = true;
            bridge.write_blocked &= !event.is_writable();
        }
        self.bridge_events(index, now);
    }

    /// Reads the socket until `WouldBlock`, publishing here chunk by chunk.
    /// Inbound flow control: when what the last chunk fed (a loop with a
    /// slow subscriber) is behind, the rest is left in the socket for a
    /// [`STALL`], as a publisher feeding it is read, so TCP (and the far
    /// side's own buffer) holds it rather than a subscriber here being
    /// cut; and after [`READ_BUDGET`] chunks the loop's other connections
    /// have their turn.
    fn bridge_read(&mut self, index: usize, now: Instant) {
        let mut cipher = std::mem::take(&mut self.bridges[index].cipher);
        let mut chunks = 0;
        let failure = loop {
            if chunks > 0 {
                let bridge = &self.bridges[index];
                let behind = bridge.fed_loops != 0
                    && flow::feeds_a_loop_behind(
                        &self.shared,
                        (0..self.shared.loops.len()).filter(|&i| bridge.fed_loops & flow::loop_bit(i) != 0),
                    );
                if behind || chunks == READ_BUDGET {
                    self.bridges[index].read_at = Some(if behind { now + STALL } else { now });
                    break None;
                }
            }
            chunks += 1;
            let bridge = &mut self.bridges[index];
            let Some(socket) = bridge.socket.as_mut() else { break None };
            // Read into the bridge's own chunk, shared with the messages
            // read from it: used again once they are dropped (after the
            // chunk's events are handled, as a rule), else a new one.
            if bridge.chunk.len() < READ_CHUNK || Arc::get_mut(&mut bridge.chunk).is_none() {
                bridge.chunk = vec![0; READ_CHUNK].into();
            }
            let Some(buffer) = Arc::get_mut(&mut bridge.chunk) else { unreachable!("a new chunk is not shared") };
            match socket.read(buffer, &mut cipher) {
                Ok(0) => break Some("the server closed the connection".to_owned()),
                Ok(n) => {
                    self.counted.bytes_in += n as u64;
                    if let Err(error) = bridge.client.handle_chunk(now, &bridge.chunk, n) {
                        break Some(error);
                    }
                    // NATS: INFO came, TLS starts now.
                    if bridge.client.wants_tls() {
                        if let Err(error) = bridge.upgrade() {
                            break Some(format!("TLS: {error}"));
                        }
                        bridge.client.handle_tls_started(now);
                    }
                    // Published here chunk by chunk, so a burst from NATS
                    // is not all held as events first.
                    self.fed_loops = 0;
                    self.bridge_events(index, now);
                    self.bridges[index].fed_loops = std::mem::take(&mut self.fed_loops);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break None,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break Some(error.to_string()),
            }
        };
        self.bridges[index].cipher = cipher;
        if let Some(why) = failure {
            let server = self.bridges[index].client.server();
            self.bridge_failed(index, &format!("{server}: {why}"), now);
        }
    }

    /// Handles what the client made of its input and timers.
    fn bridge_events(&mut self, index: usize, now: Instant) {
        let mut acks: SmallVec<[u16; 16]> = SmallVec::new();
        let mut resend = false;
        while let Some(event) = self.bridges[index].client.poll_event() {
            let stats = &self.shared.bridges[index];
            match event {
                LinkEvent::Connected(server) => {
                    let bridge = &mut self.bridges[index];
                    bridge.server_said = None;
                    bridge.connects += 1;
                    if bridge.connects > 1 {
                        BridgeStats::add(&stats.reconnects, 1);
                    }
                    log::info!("bridge {index}: connected to {server}");
                    stats.connected.store(true, Ordering::Relaxed);
                    *stats.server.lock() = Some(server);
                    bridge.send_queued(stats);
                    resend = bridge.durable.is_some();
                }
                LinkEvent::PubAck(packet_id) => acks.push(packet_id),
                LinkEvent::Message(message) => self.bridge_in(index, &message, now),
                LinkEvent::Error(text) => {
                    log::warn!("bridge {index}: {text}");
                    stats.set_error(text.clone());
                    self.bridges[index].server_said = Some(text);
                }
                LinkEvent::Dropped(dropped) => {
                    log::warn!("bridge {index}: {dropped} messages from the far side dropped: the broker is behind");
                    BridgeStats::add(&stats.drops, dropped);
                }
                LinkEvent::Disconnected(server) => {
                    log::warn!("bridge {index}: lost {server}");
                    stats.connected.store(false, Ordering::Relaxed);
                }
            }
        }
        if resend || !acks.is_empty() {
            let shared = self.shared.clone();
            self.bridges[index].pump(&shared, &acks, resend);
        }
        self.bridges[index].dirty = true;
    }

    /// Publishes a message from the far side here, to every receiver but
    /// the bridge itself; a QoS 1 one is acknowledged once routed, or once
    /// its writes are committed under `--durability immediate`. One this
    /// broker does not take (too large, its own, outside the `in`
    /// filters) is acknowledged too: sent again, it would be refused again.
    fn bridge_in(&mut self, index: usize, message: &Incoming, now: Instant) {
        let commit = self.route_in(index, message, now);
        let Some(ack) = message.ack else { return };
        match commit {
            Some(ticket) => {
                let me = ConnRef::new(0, BRIDGE_TOKEN_BASE + index, ack.connection, Transport::Tcp);
                self.hold_ack(me, ack.packet_id, ticket);
            }
            None => self.bridges[index].client.ack(ack),
        }
        self.bridges[index].dirty = true;
    }

    /// A PUBACK held for the store's commit, for bridge `target`: its
    /// serial is the connection the message came on.
    pub(super) fn bridge_ack(&mut self, target: ConnRef, packet_id: u16) {
        let Some(bridge) = self.bridges.get_mut(target.token() - BRIDGE_TOKEN_BASE) else { return };
        bridge.client.ack(AckTicket { connection: target.serial, packet_id });
        bridge.dirty = true;
    }

    /// [`EventLoop::bridge_in`]'s routing: the commit its acknowledgement
    /// must wait for, if any.
    fn route_in(&mut self, index: usize, message: &Incoming, now: Instant) -> Option<Ticket> {
        let limits = self.shared.config.session.topic_limits;
        let max_payload = self.shared.config.session.frame_limits.max_payload_len;
        let unix_now = self.unix_now;
        let bridge = &mut self.bridges[index];
        if message.payload.len() > max_payload {
            BridgeStats::add(&self.shared.bridges[index].drops, 1);
            return None;
        }
        let (topic, from, retained) = bridge.inbound(message, &limits)?;
        let (me, namespace) = (bridge.me, bridge.namespace);
        let own = bridge.durable.map(|hold| hold.id);
        let name = TopicName::new(&topic, &limits).ok()?;
        let delivery = || {
            let payload = message.payload.to_arc();
            let message =
                Message { topic: topic.clone(), payload, from: from.clone(), updated_time: unix_now, ip: None };
            Delivery::new(message)
        };
        if message.ack.is_some() {
            return self.route_in_qos1(index, name, delivery(), retained, now);
        }
        if !retained {
            // Changes nothing in the router: routed under the shared lock,
            // from the cache while the subscriptions stay as they were.
            let last = &mut self.bridges[index].last_in;
            let mut receivers = std::mem::take(&mut last.receivers);
            let route = |broker: &Broker<Sink>, routes| broker.route_live_in(routes, namespace, name);
            receivers.extend(
                self.shared
                    .broker
                    .route_live(&mut last.routes, namespace, name, route)
                    .iter()
                    .filter(|sink| !is_the_bridge(sink, me, own))
                    .cloned(),
            );
            BridgeStats::add(&self.shared.bridges[index].messages_in, 1);
            self.counted.messages_in += 1;
            let frame = Frame::publish(&topic, &message.payload[..], &from, false);
            if frame.encoded_len() < COPY_BELOW && receivers.iter().all(is_binary_conn) {
                // As a publisher's small frame for binary receivers: its
                // bytes copied to each, no shared delivery built.
                let mut encoded = std::mem::take(&mut self.encoded);
                encoded.clear();
                frame.encode(&mut encoded);
                let live = Live { topic: &topic, payload: &message.payload[..] };
                self.dispatch_encoded(&encoded, live, &receivers, now);
                self.encoded = encoded;
            } else if !receivers.is_empty() {
                self.dispatch(&delivery(), &receivers, now);
            }
            receivers.clear();
            self.bridges[index].last_in.receivers = receivers;
            return None;
        }
        let delivery = delivery();
        let mut receivers = {
            let mut broker = self.shared.broker.write();
            let published = broker.publish(namespace, name, &delivery, retained);
            if let Some(op) = published.store {
                // Submitted under the lock: the store sees a topic's writes
                // in the order the broker made them.
                let _ = self.shared.submit(op);
            }
            self.counted.messages_out += published.queued as u64;
            published.receivers
        };
        receivers.retain(|sink| !is_the_bridge(sink, me, own));
        BridgeStats::add(&self.shared.bridges[index].messages_in, 1);
        self.counted.messages_in += 1;
        if !receivers.is_empty() {
            self.dispatch(&delivery, &receivers, now);
        }
        None
    }

    /// A QoS 1 message from the far side: routed by the session rules, so
    /// a durable session's QoS 1 subscription queues it (and stores it)
    /// as it would a client's QoS 1 publish.
    fn route_in_qos1(
        &mut self,
        index: usize,
        name: TopicName<'_>,
        delivery: Arc<Delivery>,
        retained: bool,
        now: Instant,
    ) -> Option<Ticket> {
        let (me, namespace) = (self.bridges[index].me, self.bridges[index].namespace);
        let durable = self.bridges[index].durable;
        let shared = self.shared.clone();
        let (mut routed, commit) = {
            let mut broker = shared.broker.write();
            let mut routed = match durable {
                // Not queued back into its own out-queue.
                Some(hold) => {
                    broker.publish_qos_from_bridge(namespace, name, delivery, retained, Qos::AtLeastOnce, hold)
                }
                None => broker.publish_qos(namespace, name, delivery, retained, Qos::AtLeastOnce),
            };
            let ticket = submit_session_ops(&shared, &mut broker, std::mem::take(&mut routed.store));
            (routed, ticket.filter(|_| broker.acks_after_commit()))
        };
        // The loop stops here: what came from the bridge does not go back.
        for (_, receivers) in &mut routed.deliveries {
            receivers.retain(|sink| !is_the_bridge(sink, me, None));
        }
        routed.deliveries.retain(|(_, receivers)| !receivers.is_empty());
        BridgeStats::add(&shared.bridges[index].messages_in, 1);
        self.counted.messages_in += 1;
        self.carry_out(routed, now);
        commit
    }

    /// A delivery for bridge `target`: out to the far side, marked
    /// retained when it was published so (an empty one is a delete).
    pub(super) fn bridge_deliver(&mut self, target: ConnRef, delivery: &Arc<Delivery>) {
        if self.bridge_keep(target, || delivery.clone()) {
            return;
        }
        let message = delivery.message();
        self.bridge_out(target, &message.topic, &message.payload, delivery.is_retained());
    }

    /// A live publish (the binary fast path) for bridge `target`, on this
    /// loop: its topic and payload as decoded.
    pub(super) fn bridge_deliver_live(&mut self, target: ConnRef, topic: &str, payload: &[u8]) {
        self.bridge_out(target, topic, payload, false);
    }

    /// A live Publish frame (the binary fast path) for bridge `target`,
    /// from another loop.
    pub(super) fn bridge_deliver_encoded(&mut self, target: ConnRef, frame: &[u8]) {
        let decoder = Decoder::new(self.shared.config.session.frame_limits);
        if let Ok(Decoded::Frame { frame, .. }) = decoder.decode(frame) {
            let unix_now = self.unix_now;
            let delivery = || {
                Delivery::new(Message {
                    topic: frame.topic.into(),
                    payload: frame.payload.into(),
                    from: frame.client_id.into(),
                    updated_time: unix_now,
                    ip: None,
                })
            };
            if self.bridge_keep(target, delivery) {
                return;
            }
            self.bridge_out(target, frame.topic, frame.payload, frame.retain);
        }
    }

    /// A durable bridge's delivery: kept for its session's queue (at the
    /// flush, with the others of this turn). `false` for another bridge.
    fn bridge_keep(&mut self, target: ConnRef, delivery: impl FnOnce() -> Arc<Delivery>) -> bool {
        let index = target.token() - BRIDGE_TOKEN_BASE;
        let Some(bridge) = self.bridges.get_mut(index).filter(|bridge| bridge.durable.is_some()) else {
            return false;
        };
        bridge.incoming.push(delivery());
        bridge.dirty = true;
        bridge.update_flow(&self.shared.loops[self.index]);
        self.counted.messages_out += 1;
        true
    }

    /// Durable bridges a session rule asked to send their queued messages
    /// ([`EventLoop::run_pumps`]): sent at the flush.
    pub(super) fn bridge_pump(&mut self, target: ConnRef) {
        if let Some(bridge) = self.bridges.get_mut(target.token() - BRIDGE_TOKEN_BASE) {
            bridge.dirty = true;
        }
    }

    fn bridge_out(&mut self, target: ConnRef, topic: &str, payload: &[u8], retained: bool) {
        let index = target.token() - BRIDGE_TOKEN_BASE;
        let Some(bridge) = self.bridges.get_mut(index) else { return };
        if !bridge.map_out(topic) {
            return;
        }
        let subject = std::mem::take(&mut bridge.last_out.1);
        let sent = bridge.send(&subject, retained, payload, &self.shared.bridges[index]);
        bridge.last_out.1 = subject;
        bridge.update_flow(&self.shared.loops[self.index]);
        if sent {
            self.counted.messages_out += 1;
        }
        // Plain TCP only (TLS holds ciphertext of its own), and a failure
        // is left for the turn's flush to handle: this may be in the
        // middle of a fan-out.
        if bridge.client.outbound().len() >= WRITE_AT
            && !bridge.write_blocked
            && !bridge.connecting
            && matches!(bridge.socket, Some(LinkSocket::Plain(_)))
        {
            bridge.write_blocked = bridge.write_out(&mut self.counted.bytes_out).unwrap_or(true);
        }
    }

    /// Writes what the bridges have queued, until `WouldBlock`.
    pub(super) fn flush_bridges(&mut self, now: Instant) {
        let shared = self.shared.clone();
        for index in 0..self.bridges.len() {
            let bridge = &mut self.bridges[index];
            if !std::mem::take(&mut bridge.dirty) {
                continue;
            }
            if bridge.durable.is_some() {
                // Queued (and stored) whether connected or not.
                bridge.pump(&shared, &[], false);
                bridge.update_flow(&self.shared.loops[self.index]);
            }
            if bridge.connecting || bridge.socket.is_none() {
                continue;
            }
            let mut failure = None;
            // TLS's own bytes (its handshake) first.
            if let Some(Err(error)) = bridge.socket.as_mut().map(LinkSocket::send_pending)
                && error.kind() != io::ErrorKind::WouldBlock
            {
                failure = Some(error.to_string());
            }
            while failure.is_none() {
                let blocked = match bridge.write_out(&mut self.counted.bytes_out) {
                    Ok(blocked) => blocked,
                    Err(why) => {
                        failure = Some(why);
                        false
                    }
                };
                bridge.write_blocked = blocked;
                if failure.is_some() || blocked || !bridge.client.is_connected() {
                    break;
                }
                // Durable: what the window allows, now the buffer has room.
                if bridge.durable.is_some() {
                    if bridge.pump(&shared, &[], false) == 0 {
                        break;
                    }
                    continue;
                }
                // What was held while the buffer was full fits now.
                let held = bridge.queue.len();
                if failure.is_some() || blocked || held == 0 || !bridge.client.is_connected() {
                    break;
                }
                bridge.send_queued(&self.shared.bridges[index]);
                if bridge.queue.len() == held {
                    break;
                }
            }
            bridge.update_flow(&self.shared.loops[self.index]);
            if let Some(why) = failure {
                let server = bridge.client.server();
                self.bridge_failed(index, &format!("{server}: {why}"), now);
                self.bridge_events(index, now);
            }
        }
    }
}

impl Drop for Bridge {
    /// The broker stops: what the bridge still holds is lost (NATS, QoS 0,
    /// or QoS 1 without a store: nothing is written to disk for it), or,
    /// durable, kept in the store; the log says how much.
    fn drop(&mut self) {
        if self.durable.is_some() {
            // Its queue is in the store until the far side acknowledges
            // it; what reached it this very turn at QoS 0 was not queued.
            let (kept, lost) = (self.kept, self.incoming.len());
            if kept > 0 || lost > 0 {
                log::info!(
                    "bridge {} stops with {kept} messages not acknowledged by {}: kept in the store, sent on the \
                     next start ({lost} that reached it this turn at QoS 0 are lost)",
                    self.index,
                    self.client.server()
                );
            }
            return;
        }
        let (held, unsent, in_flight) = (self.queue.len(), self.client.outbound().len(), self.client.in_flight());
        if held > 0 || unsent > 0 || in_flight > 0 {
            log::warn!(
                "bridge {} stops with {held} messages held for {}, {in_flight} not acknowledged and {unsent} bytes \
                 unsent: they are lost",
                self.index,
                self.client.server()
            );
        }
    }
}

impl Bridge {
    /// Writes its unsent output until the socket takes no more (`true`:
    /// `WouldBlock`) or there is none; `Err`: the connection failed.
    fn write_out(&mut self, bytes_out: &mut u64) -> Result<bool, String> {
        while !self.client.outbound().is_empty() {
            let Some(socket) = self.socket.as_mut() else { break };
            let result = {
                let mut slices: [&[u8]; 16] = [&[]; 16];
                let n = self.client.outbound().front_slices(&mut slices);
                let iovecs: SmallVec<[IoSlice<'_>; 16]> = slices[..n].iter().map(|s| IoSlice::new(s)).collect();
                socket.write_vectored(&iovecs)
            };
            match result {
                Ok(0) => return Err("the connection is closed".to_owned()),
                Ok(written) => {
                    self.client.outbound_mut().consume(written);
                    *bytes_out += written as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(false)
    }

    /// Starts TLS on the socket if the bridge speaks it.
    fn upgrade(&mut self) -> io::Result<()> {
        let Some(tls) = &self.checked.tls else { return Ok(()) };
        let Some(socket) = self.socket.take() else { return Ok(()) };
        let server = self.client.server();
        self.socket = Some(socket.start_tls(tls, &server)?);
        self.dirty = true;
        Ok(())
    }
}
