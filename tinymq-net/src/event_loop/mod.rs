//! One event-loop thread: a `mio::Poll`, a slab of connections, a timer
//! heap fed by the sessions' deadlines, and an inbox that other threads
//! fill (deliveries, closes, accepted connections) before waking it.
//!
//! Readiness is edge-triggered: every write goes on until `WouldBlock`, and
//! so does every read, except that a read event ends at a short read: a
//! stream socket that returned less than was asked for had nothing more
//! queued, and bytes that arrive later raise a new edge (as tokio does on
//! Unix). This saves the `WouldBlock` read per request, about a third of a
//! request-response exchange's syscalls. An event that also reports the
//! peer's close reads on to the end, so that end of file is seen.
//!
//! TLS connections take the same paths: their stream decrypts on read and
//! encrypts on write (see `tls::TlsStream`), returning a short read only
//! when the socket had nothing more *and* rustls holds no plaintext, so the
//! shortcut above leaves nothing stuck in rustls' buffers. A handshake is
//! input that yields no plaintext and output the stream sends itself; a
//! connection with ciphertext waiting asks for writability like one with
//! queued frames.
//!
//! # A turn
//!
//! Each turn is flat: poll; handle the ready sockets (reads hand input to
//! the core's session and broker rules, which queue answers and route
//! deliveries); the inbox step (deliveries other loops queued here, then
//! closes, accepted connections and answers held for a commit or a
//! credentials check); the read step (connections something asked to
//! have read: a new one, one whose output drained, one whose held answer
//! went out), alternating with the inbox step a few times; timers; then
//! flush the connections with output and move this turn's deliveries to
//! the other loops. No handler calls another handler: a handler that
//! wants a connection read schedules it ([`EventLoop::schedule_read`]),
//! and the only thing a dispatch takes from the inbox is its deliveries
//! (queued bytes, no handler), so a loop's own delivery never overtakes
//! one another loop queued before it.
//!
//! The loop's methods are spread over files by concern, each an
//! `impl EventLoop` block: this file has the type, its turn and its timers;
//! `accept` takes connections in, `conn` reads, flushes and closes one,
//! `binary`, `http` and `mqtt` handle their protocol's input (`websocket`
//! unwraps the frames of sessions over WebSocket), and `fanout` moves
//! deliveries between connections, loops and queues. `slot` is what the
//! loop keeps per connection: a leaf every other file uses, so none of
//! them import each other.

mod accept;
mod binary;
mod bridge;
mod conn;
mod durable;
mod fanout;
mod http;
mod mqtt;
mod slot;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use tinymq_core::ReasonCode;

use crate::flow::READ_CHUNK;
use crate::shared::ConnRef;
use crate::shared::{Batch, Control, Shared, Stats, unix_time};
use crate::transport::Listener;
use crate::writer::Ticket;
use slot::Conn;

const WAKER: Token = Token(usize::MAX);

/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;

/// How long a connection may drain its last bytes when the broker stops.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);

/// Inbox and read steps per turn, at most, before the loop polls again.
const READ_PASSES: usize = 4;

/// How often loop 0 drops Moustique clients past their timeout.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Traffic figures a loop counts locally between turns.
#[derive(Default)]
struct Counted {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Counted {
    /// Adds the counts to the shared figures and starts again from zero.
    fn add_to(&mut self, stats: &Stats) {
        for (count, total) in [
            (&mut self.messages_in, &stats.messages_in),
            (&mut self.messages_out, &stats.messages_out),
            (&mut self.bytes_in, &stats.bytes_in),
            (&mut self.bytes_out, &stats.bytes_out),
        ] {
            if *count > 0 {
                total.fetch_add(std::mem::take(count), Ordering::Relaxed);
            }
        }
    }
}

pub(crate) struct EventLoop {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    accept_paused_until: Option<Instant>,
    /// Accepts refused for want of descriptors since the last one that
    /// succeeded: the first is logged, the rest counted, so a broker held
    /// at its limit does not fill its log.
    accept_exhausted: u64,
    next_listener: usize,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_serial: u64,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    scratch: Vec<u8>,
    /// Ciphertext read from TLS sockets, before decryption (allocated at
    /// the first TLS read).
    tls_scratch: Vec<u8>,
    /// The inbox's rare items (closes, accepts, held answers) taken with
    /// its deliveries, waiting for the turn's inbox step.
    later: VecDeque<Box<Control>>,
    /// Connections to read in the turn's read step, with their serials.
    to_read: Vec<(usize, u64)>,
    /// Connections with output queued during this turn, to flush at its end.
    dirty: Vec<usize>,
    inbox: Batch,
    /// A live publish's frame, encoded once for all its binary receivers.
    encoded: Vec<u8>,
    /// Deliveries to other loops' connections, one queue per loop, moved to
    /// their inboxes in one lock and at most one wake per loop: after each
    /// connection's input is handled, and always before any socket write,
    /// so no answer overtakes a delivery it caused.
    outbox: Vec<Batch>,
    outbox_pending: bool,
    /// The loops (a bit each) that the input being handled published to.
    fed_loops: u64,
    /// Whether the input being handled published to an in-process queue.
    fed_local: bool,
    /// Connections whose next read is put off: token, serial, until when.
    deferred: Vec<(usize, u64, Instant)>,
    /// The earliest of `deferred`'s deadlines.
    deferred_until: Option<Instant>,
    /// Wall-clock Unix seconds, read once per turn (messages are stamped
    /// to the second).
    unix_now: u64,
    /// Traffic counted on this loop, added to the shared figures once per
    /// turn rather than per message (the shared counters are one cache line
    /// every loop would otherwise write).
    counted: Counted,
    /// When loop 0 next expires idle Moustique clients.
    housekeeping_at: Option<Instant>,
    /// Connections accepted over the limit only to be told 503.
    refusing: u64,
    /// When loop 0 next publishes the `$SYS/...` figures.
    sys_at: Option<Instant>,
    /// The NATS bridges (loop 0 only).
    bridges: Vec<bridge::Bridge>,
    /// Resolves the bridges' server names (loop 0, started at the first).
    resolver: Option<bridge::Resolver>,
    /// Each binary connection's hold on its durable session, by token.
    sessions: HashMap<usize, durable::ConnSession>,
    /// This loop's connections whose sessions have QoS 1 messages to send.
    pumps: Vec<ConnRef>,
    /// PubAcks held for their writes' commit (`immediate`), in ticket order.
    held_acks: VecDeque<(Ticket, ConnRef, u16)>,
    /// The ticket the writer will tell this loop about.
    acks_waited: Option<Ticket>,
    /// When loop 0 next looks for expired sessions.
    sessions_at: Option<Instant>,
}

impl EventLoop {
    pub(crate) fn new(index: usize, poll: Poll, shared: Arc<Shared>, mut listeners: Vec<Listener>) -> io::Result<Self> {
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(listener.source(), Token(LISTENER_BASE - i), Interest::READABLE)?;
        }
        let serves_http = listeners.iter().any(|l| matches!(l, Listener::Http(_) | Listener::Https(..)));
        let housekeeping_at = serves_http.then(|| Instant::now() + HOUSEKEEPING);
        // The first `$SYS/...` figures go out at once, so they are there
        // for the first subscriber.
        let sys_at = (index == 0 && !shared.config.sys_interval.is_zero()).then(Instant::now);
        let loop_count = shared.loops.len();
        let bridges = if index == 0 {
            let now = Instant::now();
            let configs = shared.config.bridges.iter().enumerate();
            configs.map(|(i, config)| bridge::Bridge::new(i, config, &shared, now)).collect::<io::Result<_>>()?
        } else {
            Vec::new()
        };
        Ok(EventLoop {
            index,
            poll,
            shared,
            listeners,
            accept_paused_until: None,
            accept_exhausted: 0,
            next_listener: 0,
            conns: Vec::new(),
            free: Vec::new(),
            next_serial: 1,
            timers: BinaryHeap::new(),
            scratch: vec![0; READ_CHUNK],
            tls_scratch: Vec::new(),
            later: VecDeque::new(),
            to_read: Vec::new(),
            dirty: Vec::new(),
            inbox: Batch::default(),
            encoded: Vec::new(),
            outbox: (0..loop_count).map(|_| Batch::default()).collect(),
            outbox_pending: false,
            fed_loops: 0,
            fed_local: false,
            deferred: Vec::new(),
            deferred_until: None,
            unix_now: unix_time(),
            counted: Counted::default(),
            housekeeping_at,
            refusing: 0,
            sys_at,
            bridges,
            resolver: None,
            sessions: HashMap::new(),
            pumps: Vec::new(),
            held_acks: VecDeque::new(),
            acks_waited: None,
            sessions_at: (index == 0).then(|| Instant::now() + durable::SESSION_EXPIRY_CHECK),
        })
    }

    pub(crate) fn waker_token() -> Token {
        WAKER
    }

    /// Runs until the broker shuts down and every connection is closed.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut shutting_down = false;
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, timeout)
                && error.kind() != io::ErrorKind::Interrupted
            {
                log::error!("event loop {} poll failed: {error}", self.index);
                break;
            }
            let now = Instant::now();
            self.unix_now = unix_time();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t > LISTENER_BASE - self.listeners.len() && t <= LISTENER_BASE => {
                        self.accept(LISTENER_BASE - t, now)
                    }
                    Token(t) if self.is_bridge_token(t) => self.bridge_ready(t - bridge::BRIDGE_TOKEN_BASE, event, now),
                    Token(t) => {
                        if event.is_writable() || event.is_write_closed() {
                            self.flush(t, now);
                        }
                        if event.is_read_closed() || event.is_error() {
                            self.read(t, now);
                        } else if event.is_readable() {
                            self.read_event(t, now);
                        }
                    }
                }
            }
            // The inbox step and the read step take turns until neither
            // has work, a few times at most: reads left over make the next
            // poll return at once.
            for _ in 0..READ_PASSES {
                self.drain_inbox(now);
                if self.to_read.is_empty() {
                    break;
                }
                self.read_scheduled(now);
            }
            if self.deferred_until.is_some_and(|until| now >= until) {
                self.resume_deferred(now);
            }
            self.fire_timers(now);
            if !self.bridges.is_empty() {
                self.bridges_resolved(now);
                self.bridge_timers(now);
            }
            if self.housekeeping_at.is_some_and(|at| now >= at) {
                self.housekeeping_at = Some(now + HOUSEKEEPING);
                self.expire_http_clients(now);
            }
            if self.sessions_at.is_some_and(|at| now >= at) {
                self.sessions_at = Some(now + durable::SESSION_EXPIRY_CHECK);
                self.expire_sessions(now);
            }
            if !shutting_down && self.sys_at.is_some_and(|at| now >= at) {
                // An interval too long to add is never.
                self.sys_at = now.checked_add(self.shared.config.sys_interval);
                self.shared.publish_sys();
            }
            if self.accept_paused_until.is_some_and(|until| now >= until) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if !shutting_down && self.shared.is_shutting_down() {
                shutting_down = true;
                self.begin_shutdown(now);
            }
            // Last, so whatever this turn queued (a shutdown's Disconnects
            // included) goes out before the loop sleeps.
            self.run_pumps();
            self.wait_for_acks();
            self.flush_outbox();
            self.flush_dirty(now);
            if !self.bridges.is_empty() {
                self.flush_bridges(now);
            }
            self.counted.add_to(&self.shared.stats);
            if shutting_down && self.conns.iter().all(Option::is_none) {
                break;
            }
        }
        // Dropping the listeners removes Unix socket files.
        self.listeners.clear();
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let earliest = [
            timer,
            self.accept_paused_until,
            self.housekeeping_at,
            self.sys_at,
            self.sessions_at,
            self.deferred_until,
            self.bridges_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.to_read.is_empty() || self.shared.loops[self.index].has_items() {
            return Some(Duration::ZERO);
        }
        earliest.map(|at| at.saturating_duration_since(now))
    }

    /// Makes sure a timer entry exists at or before the connection's next
    /// deadline. Later deadlines are found when an early entry fires.
    fn arm(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let deadline = match conn.linger_until() {
            Some(until) => Some(until),
            None => conn.proto.poll_timeout(),
        };
        if let Some(deadline) = deadline
            && conn.armed.is_none_or(|armed| deadline < armed)
        {
            conn.armed = Some(deadline);
            self.timers.push(Reverse((deadline, token, conn.serial)));
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, token, serial))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { continue };
            if conn.serial != serial || conn.armed != Some(at) {
                continue;
            }
            conn.armed = None;
            if let Some(until) = conn.linger_until() {
                if now >= until {
                    self.remove(token);
                    continue;
                }
            } else if conn.proto.handle_timeout(now).is_err() {
                log::debug!("connection {}:{} timed out", self.index, conn.serial);
                self.begin_close(token, now);
            }
            // A timeout may have queued bytes: a 408, a heartbeat.
            self.mark_dirty(token);
            self.arm(token);
        }
    }

    /// Drops Moustique clients not seen for their timeout, with their
    /// subscriptions.
    fn expire_http_clients(&mut self, now: Instant) {
        let mut broker = self.shared.broker.write();
        // Deleted from the store under the lock, like the SUBSCRIBE that
        // may register the same name again right after.
        for delete in broker.handle_timeout(now) {
            let _ = self.shared.submit(delete);
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        for token in 0..self.conns.len() {
            let Some(conn) = self.conns[token].as_mut() else { continue };
            conn.proto.close(ReasonCode::ShuttingDown);
            // A stopping broker gives peers a short while to read the news.
            self.begin_close_within(token, now, SHUTDOWN_LINGER);
            self.mark_dirty(token);
        }
        for listener in &mut self.listeners {
            let _ = self.poll.registry().deregister(listener.source());
        }
    }
}
