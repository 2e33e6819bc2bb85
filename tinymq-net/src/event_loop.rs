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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use smallvec::SmallVec;
use tinymq_core::auth::{AuthError, Fault, Identity, THROTTLED_TEXT, Throttled};
use tinymq_core::broker::{self, Origin};
use tinymq_core::http::call::{ApiError, Call};
use tinymq_core::http::conn::{HttpConn, HttpStep};
use tinymq_core::http::encoding::Encoding;
use tinymq_core::http::response::Response;
use tinymq_core::http::service::{self, Context, Reply};
use tinymq_core::outbound::COPY_BELOW;
use tinymq_core::{Closed, Delivery, ReasonCode, Request, RouteCache, Session, Step, SubscriberId};

use crate::local::WhenFull;
use crate::proto::Proto;
use crate::shared::{Batch, ConnRef, InboxItem, READ_CHUNK, STALL, Shared, Sink, Stats, unix_time};
use crate::transport::{Listener, Stream, Transport};
use crate::users::Decision;

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;
/// How long a closing connection may take to drain its last bytes.
const LINGER: Duration = Duration::from_secs(5);
/// How long a connection may drain its last bytes when the broker stops.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);
/// How long accepting pauses after the process runs out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Vectored-write width.
const IOVECS: usize = 64;
/// Chunks of [`READ_CHUNK`] read from one connection before the others'
/// turn.
const READ_BUDGET: usize = 16;
/// Inbox items handled between flushes of the connections they reached.
const DRAIN_FLUSH: usize = 1024;
/// A connection whose unsent output is over `1 / PRESSURE_FRACTION` of its
/// queue limit puts its loop under pressure.
pub(crate) const PRESSURE_FRACTION: usize = 8;
/// How often loop 0 drops Moustique clients past their timeout.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Connections refused (over the limit, peer not allowed, throttled) that
/// may wait at once for their refusal to be read; beyond these, more are
/// closed without a word.
const MAX_REFUSING: u64 = 1024;
/// What a peer outside the allow-list is told.
const NOT_ALLOWED_TEXT: &str = "this peer address is not allowed to connect";

struct Conn {
    serial: u64,
    stream: Stream,
    proto: Proto,
    subscriber: Option<SubscriberId>,
    peer_ip: Option<IpAddr>,
    /// Bytes of an incomplete frame carried over between reads. Empty (and
    /// unallocated) on an idle connection.
    pending: Vec<u8>,
    interest: Interest,
    /// The deadline of this connection's live timer entry.
    armed: Option<Instant>,
    /// Accepted only to be refused (counted in `refusing`).
    refused: bool,
    /// Set once the session closed: the connection ends when its output is
    /// flushed or this deadline passes.
    linger_until: Option<Instant>,
    /// The read side stopped (EOF or paused by backpressure) with input
    /// possibly left in the socket.
    read_paused: bool,
    /// Already on the loop's list of connections to flush this turn.
    in_dirty: bool,
    /// Its sending side is shut: it waits for the peer's EOF to close.
    write_shut: bool,
    /// The peer has closed its sending side (HTTP): nothing more to read.
    peer_eof: bool,
    /// Its unsent output is over the pressure mark (counted in its loop's
    /// [`crate::shared::LoopHandle::under_pressure`]).
    pressing: bool,
    /// Its next read is put off: a loop it published to is behind (a
    /// stall), or it had its share of this turn (a yield).
    deferred: bool,
    /// The loops (a bit each) its last publish went to.
    fed_loops: u64,
    /// Whether its last publish went to an in-process client's queue.
    fed_local: bool,
    /// Its read was put off: the next one goes ahead whatever the
    /// pressure, so a stall slows a publisher but never stops it.
    read_pass: bool,
    /// A request waiting for its credentials to be checked.
    /// Boxed: rare, and an idle connection should cost little.
    held: Option<Box<Held>>,
    /// Where its last live publish went (boxed: only publishers have one).
    routes: Option<Box<RouteCache<Sink>>>,
}

/// What waits for a connection's credentials to be checked.
enum Held {
    /// A binary Connect, with the client id it asked for.
    Connect { client_id: String },
    /// An HTTP call, and the order its Moustique parameters came in.
    Call(Call, Encoding),
}

/// Why a connection is accepted only to be refused, before its first read.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Over the connection limit: 503 (binary peers are closed unanswered).
    Overloaded,
    /// Its peer is not on the allow-list: 401, or Disconnect 2.
    NotAllowed,
    /// Its address spent its budget of bad requests: 429, or Disconnect 2.
    Throttled(Throttled),
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Refusal::Overloaded => Response::text(503, "too many connections; try again later"),
            Refusal::NotAllowed => Response::text(401, NOT_ALLOWED_TEXT),
            Refusal::Throttled(throttled) => Response::too_many_requests(THROTTLED_TEXT, throttled.retry_after_secs()),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Refusal::Overloaded => "too many connections; try again later",
            Refusal::NotAllowed => NOT_ALLOWED_TEXT,
            Refusal::Throttled(_) => THROTTLED_TEXT,
        }
    }
}

/// Whether a loop in `fed` (the loops some input published to) is behind.
fn feeds_a_loop_behind(shared: &Shared, fed: u64) -> bool {
    shared.loops.iter().enumerate().any(|(i, handle)| fed & loop_bit(i) != 0 && handle.under_pressure())
}

/// Whether a receiver takes the binary protocol's frames (an SSE stream
/// takes a [`Delivery`] of its own).
fn is_binary_conn(sink: &Sink) -> bool {
    matches!(sink, Sink::Conn(target) if !target.transport.is_http())
}

/// A frame's length as an [`InboxItem::Frame`] holds it: frames are sent
/// as bytes only when smaller than [`COPY_BELOW`].
fn frame_len(frame: &[u8]) -> u32 {
    u32::try_from(frame.len()).expect("frames sent as bytes are small")
}

/// `index`'s bit in a set of loops (loops past 63 share the last bit).
fn loop_bit(index: usize) -> u64 {
    1 << index.min(63)
}

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

/// An HTTP request to answer.
enum HttpWork {
    /// It could not be parsed.
    Refused(ApiError),
    /// It was bad, and its address has no budget left for bad requests.
    Throttled(Throttled),
    /// A call, the order its Moustique parameters came in, and who makes
    /// it (or why its credentials failed).
    Call(Call, Encoding, Result<Identity, AuthError>),
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
    /// Inbox items are being handled: deliveries behind them wait their turn.
    draining: bool,
    /// Connections with output queued during this turn, to flush at its end.
    dirty: Vec<usize>,
    inbox: Batch,
    receivers: Vec<Sink>,
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
            draining: false,
            dirty: Vec::new(),
            inbox: Batch::default(),
            receivers: Vec::new(),
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
            self.drain_inbox(now);
            if self.deferred_until.is_some_and(|until| now >= until) {
                self.resume_deferred(now);
            }
            self.fire_timers(now);
            if self.housekeeping_at.is_some_and(|at| now >= at) {
                self.housekeeping_at = Some(now + HOUSEKEEPING);
                self.expire_http_clients(now);
            }
            if !shutting_down && self.sys_at.is_some_and(|at| now >= at) {
                // An interval too long to add is never.
                self.sys_at = now.checked_add(self.shared.config.sys_interval);
                self.shared.publish_sys(&mut self.receivers);
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
            self.flush_outbox();
            self.flush_dirty(now);
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
        let earliest = [timer, self.accept_paused_until, self.housekeeping_at, self.sys_at, self.deferred_until]
            .into_iter()
            .flatten()
            .min();
        earliest.map(|at| at.saturating_duration_since(now))
    }

    fn accept(&mut self, listener: usize, now: Instant) {
        if self.accept_paused_until.is_some() || self.shared.is_shutting_down() {
            return;
        }
        loop {
            match self.listeners[listener].accept() {
                Ok((stream, peer_ip)) => {
                    if self.accept_exhausted > 0 {
                        log::info!(
                            "accepting connections again, after {} attempts refused for want of file descriptors",
                            self.accept_exhausted
                        );
                        self.accept_exhausted = 0;
                    }
                    if let Some(refusal) = self.door(peer_ip, now) {
                        // Told why (Disconnect 2 on the binary protocol,
                        // 401 or 429 on HTTP), if few are waiting to be.
                        if self.refusing < MAX_REFUSING {
                            self.insert_refused(stream, peer_ip, now, refusal);
                        }
                        continue;
                    }
                    let stats = &self.shared.stats;
                    if stats.connections.load(Ordering::Relaxed) >= self.shared.config.max_connections as u64 {
                        stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                        // An HTTP peer is told why, if few are waiting to be.
                        // Not an HTTPS one: the answer would cost a handshake
                        // when the broker is already over its limit.
                        if stream.transport() == Transport::Http && self.refusing < MAX_REFUSING {
                            self.insert_refused(stream, peer_ip, now, Refusal::Overloaded);
                        }
                        continue;
                    }
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    stats.opened(stream.transport());
                    stats.connections_total.fetch_add(1, Ordering::Relaxed);
                    // Spread connections over the loops, round robin.
                    let target = self.next_listener % self.shared.loops.len();
                    self.next_listener = self.next_listener.wrapping_add(1);
                    if target == self.index {
                        self.insert(stream, peer_ip, now);
                    } else {
                        self.shared.send(target, InboxItem::Accept(Box::new((stream, peer_ip))));
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if matches!(error.raw_os_error(), Some(libc_emfile) if is_fd_exhaustion(libc_emfile)) => {
                    // Out of descriptors: say so once, until an accept
                    // succeeds again, and retry later rather than spin on a
                    // listener that stays ready.
                    if self.accept_exhausted == 0 {
                        log::warn!(
                            "cannot accept connections: out of file descriptors ({error}); raise the open-file \
                             limit (ulimit -n) or lower --max-connections; retrying every {} ms",
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    self.accept_exhausted += 1;
                    self.shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(error) => {
                    log::warn!("accept failed: {error}");
                    self.shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Whether a new connection from `peer_ip` is turned away at the door:
    /// a peer outside the allow-list, or an address that spent its budget
    /// of bad requests. Counted.
    ///
    /// A throttled address has its new connections refused, rather than
    /// its requests delayed: a delayed answer holds a connection and its
    /// buffers for the whole delay (and a peer would only open more),
    /// while a refusal costs one short write and frees everything. The
    /// connections it already has are served as before (checking the
    /// budget per request would take a shared lock per request); their
    /// next bad request gets 429 and closes.
    fn door(&self, peer_ip: Option<IpAddr>, now: Instant) -> Option<Refusal> {
        // Unix-socket peers have no address: file permissions guard them.
        let ip = peer_ip?;
        let stats = &self.shared.stats;
        if self.shared.config.allowed_peers.as_ref().is_some_and(|peers| !peers.contains(ip)) {
            stats.refused_peers.fetch_add(1, Ordering::Relaxed);
            log::debug!("connection from {ip} refused: not on the allow-list");
            return Some(Refusal::NotAllowed);
        }
        if let Err(throttled) = self.shared.check_budget(ip, now) {
            stats.throttled_requests.fetch_add(1, Ordering::Relaxed);
            log::debug!("connection from {ip} refused: throttled for {:?}", throttled.retry_after);
            return Some(Refusal::Throttled(throttled));
        }
        None
    }

    /// Takes a connection only to tell it why it is refused, and close.
    fn insert_refused(&mut self, stream: Stream, peer_ip: Option<IpAddr>, now: Instant, refusal: Refusal) {
        self.refusing += 1;
        let stats = &self.shared.stats;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.opened(stream.transport());
        self.insert_as(stream, peer_ip, now, Some(refusal));
    }

    fn insert(&mut self, stream: Stream, peer_ip: Option<IpAddr>, now: Instant) -> Option<usize> {
        self.insert_as(stream, peer_ip, now, None)
    }

    /// Registers a connection and reads what it has sent already. A refused
    /// one is refused before that first read, or a request already waiting
    /// would be served ahead of the refusal.
    fn insert_as(
        &mut self,
        mut stream: Stream,
        peer_ip: Option<IpAddr>,
        now: Instant,
        refusal: Option<Refusal>,
    ) -> Option<usize> {
        let transport = stream.transport();
        if self.shared.is_shutting_down() {
            // Accepted just before the stop; past this loop's shutdown sweep.
            self.shared.stats.closed(transport);
            self.refusing -= u64::from(refusal.is_some());
            return None;
        }
        let token = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest::READABLE;
        if let Err(error) = stream.register(self.poll.registry(), Token(token), interest) {
            log::warn!("cannot register a connection: {error}");
            self.free.push(token);
            self.shared.stats.closed(transport);
            self.refusing -= u64::from(refusal.is_some());
            return None;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        log::debug!(
            "connection {}:{serial} opened ({:?} from {peer_ip:?}){}",
            self.index,
            stream.transport(),
            refusal.map_or(String::new(), |r| format!(", refused: {r:?}"))
        );
        let proto = match transport {
            Transport::Http | Transport::Https => {
                let mut http = HttpConn::new(now, &self.shared.config.http_conn);
                if let Some(refusal) = refusal {
                    http.refuse_now(&refusal.response());
                }
                Proto::Http(Box::new(http))
            }
            Transport::Tcp | Transport::Unix | Transport::Tls => {
                let mut session = Session::new(now, &self.shared.config.session);
                if let Some(refusal) = refusal {
                    // The first frame the client reads, whatever it sent.
                    let _ = session.refuse(ReasonCode::NotAuthorized, refusal.text());
                }
                Proto::Binary(session)
            }
        };
        self.conns[token] = Some(Conn {
            serial,
            stream,
            proto,
            subscriber: None,
            peer_ip,
            pending: Vec::new(),
            interest,
            armed: None,
            linger_until: None,
            read_paused: false,
            in_dirty: false,
            write_shut: false,
            peer_eof: false,
            refused: refusal.is_some(),
            held: None,
            routes: None,
            pressing: false,
            deferred: false,
            read_pass: false,
            fed_loops: 0,
            fed_local: false,
        });
        self.arm(token);
        // Bytes may have arrived before registration; edge-triggered
        // readiness would not report them again.
        self.read(token, now);
        Some(token)
    }

    fn conn_ref(&self, token: usize) -> Option<ConnRef> {
        let conn = self.conns.get(token)?.as_ref()?;
        Some(ConnRef::new(self.index, token, conn.serial, conn.stream.transport()))
    }

    /// Reads until `WouldBlock`, handling every whole frame as it comes.
    fn read(&mut self, token: usize, now: Instant) {
        self.read_until(token, now, false);
    }

    /// Reads after a readable event: until `WouldBlock` or a short read.
    fn read_event(&mut self, token: usize, now: Instant) {
        self.read_until(token, now, true);
    }

    fn read_until(&mut self, token: usize, now: Instant, short_read_ends: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.is_empty() {
            // A read inside another's (a connection accepted while a
            // publish drains the inbox): a buffer of its own, not an empty
            // one that would read as end of file.
            scratch = vec![0; READ_CHUNK];
        }
        let mut tls_scratch = std::mem::take(&mut self.tls_scratch);
        let mut chunks = 0;
        while let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
            if !conn.proto.wants_read() {
                conn.read_paused = !conn.proto.is_closed();
                break;
            }
            conn.read_paused = false;
            if conn.peer_eof {
                break;
            }
            if std::mem::take(&mut conn.read_pass) {
                // Read once whatever the pressure.
            } else if (conn.fed_loops != 0 && feeds_a_loop_behind(&self.shared, conn.fed_loops))
                || (conn.fed_local && self.shared.local_queues_filling())
            {
                self.defer_read(token, now + STALL);
                break;
            } else if chunks == READ_BUDGET {
                // Others' turn: this connection is read again next turn.
                self.defer_read(token, now);
                break;
            }
            chunks += 1;
            let n = match conn.stream.read(&mut scratch, &mut tls_scratch) {
                Ok(0) => {
                    self.end_of_input(token);
                    break;
                }
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    log::debug!("read error on {}:{}: {error}", self.index, conn.serial);
                    if conn.stream.failed_handshake() {
                        self.shared.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    self.peer_closed(token);
                    break;
                }
            };
            self.counted.bytes_in += n as u64;
            let mut pending = std::mem::take(&mut conn.pending);
            let input: &[u8] = if pending.is_empty() {
                &scratch[..n]
            } else {
                pending.extend_from_slice(&scratch[..n]);
                &pending
            };
            let used = self.handle_input(token, input, now);
            let rest = &input[used..];
            // What this input published reaches the other loops before
            // anything is written back, and before more is read.
            self.flush_outbox();
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { break };
            // A large message takes many reads: the loops its last
            // message went to are remembered until the next one is whole.
            let fed = std::mem::take(&mut self.fed_loops);
            let fed_local = std::mem::take(&mut self.fed_local);
            if fed != 0 || fed_local {
                conn.fed_loops = fed;
                conn.fed_local = fed_local;
            }
            if rest.is_empty() {
                // An idle connection keeps no buffer.
                pending = Vec::new();
            } else if pending.is_empty() {
                pending = rest.to_vec();
            } else {
                pending.drain(..used);
            }
            conn.pending = pending;
            if short_read_ends && n < scratch.len() && !conn.stream.has_unreported_eof() {
                break;
            }
        }
        self.scratch = scratch;
        if self.tls_scratch.is_empty() {
            self.tls_scratch = tls_scratch;
        }
        self.after_io(token, now);
    }

    /// Feeds `input` to the connection's protocol; returns bytes consumed.
    fn handle_input(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        match self.conns.get(token).and_then(Option::as_ref).map(|c| &c.proto) {
            Some(Proto::Binary(_)) => self.handle_frames(token, input, now),
            Some(Proto::Http(_)) => self.handle_requests(token, input, now),
            None => 0,
        }
    }

    /// Serves whole HTTP requests in order; returns bytes consumed.
    fn handle_requests(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        let Some(me) = self.conn_ref(token) else { return 0 };
        loop {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return used };
            let Proto::Http(http) = &mut conn.proto else { return used };
            let (consumed, head, body) = match http.handle_input(now, &input[used..]) {
                HttpStep::Incomplete => return used,
                HttpStep::Discarded { consumed } => return used + consumed,
                HttpStep::Refused { consumed, status } => {
                    log::debug!("connection {}:{} refused with {status}", self.index, conn.serial);
                    let peer_ip = conn.peer_ip;
                    self.shared.http.lock().count_status(status, unix_time());
                    if status == 400 {
                        // Answered and closing either way.
                        let _ = self.shared.charge(peer_ip, now, Fault::MalformedRequest);
                    }
                    return used + consumed;
                }
                HttpStep::Request { consumed, head, body } => (consumed, head, body),
            };
            used += consumed;
            let request = match service::parse(&head, body, &self.shared.config.http) {
                Ok(request) => request,
                Err(error) => {
                    self.serve_http(token, me, HttpWork::Refused(error), now);
                    continue;
                }
            };
            let credentials = request.credentials.as_ref().map(|(name, password)| (name.as_str(), password.as_str()));
            let peer_ip = self.conns.get(token).and_then(Option::as_ref).and_then(|c| c.peer_ip);
            match self.shared.authenticate(me, peer_ip, credentials) {
                Decision::Now(caller) => {
                    if self.serve_http(token, me, HttpWork::Call(request.call, request.encoding, caller), now) {
                        // Requests behind it wait in `pending` for the commit.
                        return used;
                    }
                }
                Decision::Later => {
                    // Requests behind it wait in `pending` for the check.
                    if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut)
                        && let Proto::Http(http) = &mut conn.proto
                    {
                        http.defer();
                        conn.held = Some(Box::new(Held::Call(request.call, request.encoding)));
                    }
                    return used;
                }
            }
        }
    }

    /// Serves one parsed request (or answers why it could not be parsed)
    /// and moves what it publishes. Returns whether the answer is held for
    /// a commit.
    fn serve_http(&mut self, token: usize, me: ConnRef, work: HttpWork, now: Instant) -> bool {
        let Some(conn) = self.conns.get(token).and_then(Option::as_ref) else { return false };
        let work = self.charge_http(conn.peer_ip, work, now);
        let throttled =
            matches!(&work, HttpWork::Throttled(_) | HttpWork::Call(_, _, Err(AuthError::Throttled { .. })));
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return false };
        let Proto::Http(http) = &mut conn.proto else { return false };
        let encoding = match &work {
            HttpWork::Call(_, encoding, _) => *encoding,
            _ => Encoding::Current,
        };
        let context = Context { now, unix_time: self.unix_now, ip: conn.peer_ip, encoding };
        let shared = &self.shared;
        let (effects, ticket) = {
            let started = Instant::now();
            let mut router = shared.router.write();
            let mut state = shared.http.lock();
            let mut effects = match work {
                HttpWork::Refused(error) => service::refuse(&mut state, &error, context.unix_time),
                HttpWork::Throttled(throttled) => service::respond(
                    &mut state,
                    Response::too_many_requests(THROTTLED_TEXT, throttled.retry_after_secs()),
                    context.unix_time,
                ),
                HttpWork::Call(call, _, caller) => service::serve(
                    &mut router,
                    &mut state,
                    &shared.config.http,
                    call,
                    caller,
                    context,
                    Sink::Conn(me),
                    Sink::Http,
                    || shared.figures(),
                ),
            };
            state.record_serve_time(started.elapsed());
            // Submitted under the locks, so that two loops changing the
            // same client (or value) reach the store in the order they
            // changed it in memory.
            let value = effects.stored.as_ref().and_then(|(namespace, delivery)| shared.persist(namespace, delivery));
            let client = effects.client_record.take().and_then(|op| shared.submit(op));
            // Tickets commit in order: the later one covers both.
            (effects, value.max(client))
        };
        let mut deferred = false;
        // `batched`: a write made while the store is failing is not
        // durable, so it gets no 200 (it stays queued for the retry).
        let failing = match ticket {
            Some(_) if !shared.acks_after_commit() => shared.store_failing(),
            _ => None,
        };
        match effects.reply {
            Reply::Response(response) if response.status < 300 && failing.is_some() => {
                let error = failing.unwrap_or_default();
                shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                http.respond(
                    now,
                    &Response::text(503, format!("the store is failing, so the write may not be stored: {error}")),
                );
            }
            Reply::Response(response) => match ticket {
                // `immediate`: the 200 waits for the commit.
                Some(ticket) if response.status < 300 && shared.acks_after_commit() => {
                    http.defer();
                    deferred = true;
                    let notify = shared.clone();
                    let store = shared.store.as_ref().expect("a ticket comes from the store");
                    store.on_commit(ticket, move |result| {
                        let answer = result.map(|()| response);
                        notify.send(me.loop_index(), InboxItem::Committed(me, Box::new(answer)));
                    });
                }
                // A throttled peer waits at the door for its next request.
                _ if throttled => http.refuse_now(&response),
                _ => http.respond(now, &response),
            },
            Reply::Preflight => http.respond_preflight(now),
            Reply::Events { subscriber, retained } => {
                conn.subscriber = Some(subscriber);
                http.start_events(now, retained.iter().map(|d| d.message()));
            }
        }
        if let Some(delivery) = effects.delivery {
            self.shared.stats.messages_in.fetch_add(1, Ordering::Relaxed);
            self.shared.stats.messages_out.fetch_add(effects.queued as u64, Ordering::Relaxed);
            if !effects.receivers.is_empty() {
                self.dispatch(&delivery, &effects.receivers, now);
            }
        }
        deferred
    }

    /// Charges a bad request (an unknown path, a malformed request, wrong
    /// credentials) to the peer's budget; one made with no budget left is
    /// answered as throttled instead. A 404 for a value not set is not
    /// bad: clients poll for values that come later.
    fn charge_http(&self, peer_ip: Option<IpAddr>, work: HttpWork, now: Instant) -> HttpWork {
        // A request that parses but lacks or misspells a parameter is a
        // client's mistake, not a probe: it is answered 400 and not charged,
        // so a client that retries its mistakes is not locked out.
        let fault = match &work {
            HttpWork::Refused(ApiError::NotFound(_)) => Fault::UnknownPath,
            HttpWork::Call(_, _, Err(AuthError::WrongCredentials)) => Fault::WrongCredentials,
            _ => return work,
        };
        match (self.shared.charge(peer_ip, now, fault), work) {
            (Ok(()), work) => work,
            (Err(throttled), HttpWork::Call(call, encoding, _)) => HttpWork::Call(
                call,
                encoding,
                Err(AuthError::Throttled { retry_after_secs: throttled.retry_after_secs() }),
            ),
            (Err(throttled), _) => HttpWork::Throttled(throttled),
        }
    }

    /// The commit an HTTP answer waited for is done: send the answer (or a
    /// 503 naming the failure) and serve the requests that queued behind.
    fn committed(&mut self, target: ConnRef, result: Result<Response, String>, now: Instant) {
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        if conn.serial != target.serial {
            return;
        }
        let Proto::Http(http) = &mut conn.proto else { return };
        match result {
            Ok(response) => http.respond(now, &response),
            Err(error) => {
                self.shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                http.respond(now, &Response::text(503, format!("the store could not commit the write: {error}")));
            }
        }
        self.resume(target.token(), now);
    }

    /// The credentials a held request came with are checked: serve it (a
    /// Connect, or an HTTP call) and what queued behind it.
    fn verified(&mut self, target: ConnRef, caller: Result<Identity, AuthError>, now: Instant) {
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        // A connection closed meanwhile (by its peer, a takeover or a
        // shutdown) gets nothing.
        if conn.serial != target.serial || conn.linger_until.is_some() || conn.proto.is_closed() {
            return;
        }
        match conn.held.take().map(|held| *held) {
            Some(Held::Connect { client_id }) => self.finish_connect(target.token(), target, &client_id, caller, now),
            Some(Held::Call(call, encoding)) => {
                if self.serve_http(target.token(), target, HttpWork::Call(call, encoding, caller), now) {
                    self.after_io(target.token(), now);
                    return;
                }
            }
            None => return,
        }
        self.resume(target.token(), now);
    }

    /// Serves the input that waited while an answer was held, then reads
    /// again (reading paused meanwhile).
    fn resume(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let pending = std::mem::take(&mut conn.pending);
        if !pending.is_empty() {
            let used = self.handle_input(token, &pending, now);
            if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
                conn.pending = pending[used..].to_vec();
            }
        }
        self.after_io(token, now);
        self.read(token, now);
    }

    /// Feeds `input` to the session frame by frame; returns bytes consumed.
    fn handle_frames(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        let Some(me) = self.conn_ref(token) else { return 0 };
        loop {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return used };
            let Proto::Binary(session) = &mut conn.proto else { return used };
            let step = session.handle_input(now, &input[used..]);
            let (consumed, request) = match step {
                Ok(Step::Incomplete { .. }) => return used,
                Ok(Step::Handled { consumed }) => (consumed, None),
                Ok(Step::Request { consumed, request }) => (consumed, Some(request)),
                Err(closed) => {
                    if let Some(reason) = closed.reason {
                        log::debug!("connection {}:{} closed: {reason}", self.index, conn.serial);
                    }
                    return input.len();
                }
            };
            // The caller's after_io queues this connection's flush.
            used += consumed;
            let Some(request) = request else { continue };
            if let Request::Connect { client_id, credentials } = request {
                let credentials = credentials.map(|c| (c.username, c.password));
                match self.shared.authenticate(me, conn.peer_ip, credentials) {
                    Decision::Now(caller) => self.finish_connect(token, me, client_id, caller, now),
                    Decision::Later => {
                        // The session reads nothing more until it is decided.
                        if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
                            conn.held = Some(Box::new(Held::Connect { client_id: client_id.to_owned() }));
                        }
                        return used;
                    }
                }
                continue;
            }
            if matches!(request, Request::Publish { .. }) {
                self.counted.messages_in += 1;
            }
            let origin = Origin { unix_time: self.unix_now, ip: conn.peer_ip };
            let effects = if let Request::Publish { topic, payload, retain: false } = request {
                // Live traffic changes nothing in the router: loops route
                // it side by side under the shared lock, each publisher
                // from its cache of its last topic's receivers.
                let receivers: SmallVec<[Sink; 4]> = {
                    let router = self.shared.router.read();
                    let Some(namespace) = conn.subscriber.and_then(|id| router.namespace_of(id)) else { continue };
                    let routes = conn.routes.get_or_insert_with(Box::default);
                    router.route_cached(routes, namespace, topic).into()
                };
                if receivers.is_empty() {
                    continue;
                }
                let frame = broker::live_frame(session, topic, payload);
                if frame.encoded_len() < COPY_BELOW && receivers.iter().all(is_binary_conn) {
                    // Binary receivers only, and a small frame: its bytes
                    // are copied to each, no shared delivery is built.
                    let mut encoded = std::mem::take(&mut self.encoded);
                    encoded.clear();
                    frame.encode(&mut encoded);
                    self.dispatch_encoded(&encoded, &receivers, now);
                    self.encoded = encoded;
                    continue;
                }
                let delivery = broker::published(session, topic, payload, origin);
                broker::Effects { delivery: Some(delivery), receivers, ..Default::default() }
            } else {
                let mut router = self.shared.router.write();
                // Connect was answered above; nothing else authenticates.
                let no_connect = |_: Option<tinymq_core::Credentials<'_>>| Err(AuthError::WrongCredentials.text());
                let effects =
                    broker::execute(&mut router, session, conn.subscriber, Sink::Conn(me), request, origin, no_connect);
                // Submitted under the lock, so two connections storing the
                // same topic reach the store in the order the router stored
                // them. The binary protocol acknowledges nothing, so the
                // loop never waits for the commit.
                if let (Some(delivery), Some(namespace)) = (&effects.delivery, &effects.stored) {
                    let _ = self.shared.persist(namespace, delivery);
                }
                effects
            };
            self.apply_effects(token, effects, now);
        }
    }

    /// Answers a Connect whose credentials are decided.
    fn finish_connect(
        &mut self,
        token: usize,
        me: ConnRef,
        client_id: &str,
        caller: Result<Identity, AuthError>,
        now: Instant,
    ) {
        let peer_ip = self.conns.get(token).and_then(Option::as_ref).and_then(|c| c.peer_ip);
        let caller = match caller {
            Err(AuthError::WrongCredentials) => match self.shared.charge(peer_ip, now, Fault::WrongCredentials) {
                Ok(()) => caller,
                Err(throttled) => Err(AuthError::Throttled { retry_after_secs: throttled.retry_after_secs() }),
            },
            caller => caller,
        };
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let Proto::Binary(session) = &mut conn.proto else { return };
        let origin = Origin { unix_time: unix_time(), ip: conn.peer_ip };
        let effects = {
            let mut router = self.shared.router.write();
            let decision = broker::admit(&mut router, self.shared.config.allow_anonymous, caller);
            broker::connect(&mut router, session, Sink::Conn(me), client_id, decision, origin)
        };
        if let Some(reason) = session.close_reason().flatten() {
            log::debug!("connection {}:{} refused: {reason}", self.index, conn.serial);
        }
        self.apply_effects(token, effects, now);
    }

    /// Moves what a binary request did to others: a takeover's Disconnect,
    /// a publish's deliveries and store write.
    fn apply_effects(&mut self, token: usize, effects: broker::Effects<Sink>, now: Instant) {
        if let Some(id) = effects.connected
            && let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut)
        {
            conn.subscriber = Some(id);
            if let Proto::Binary(session) = &conn.proto
                && let Some(client_id) = session.client_id()
            {
                log::debug!("connection {}:{} is client {client_id:?}", self.index, conn.serial);
            }
        }
        if let Some(Sink::Conn(old)) = &effects.taken_over {
            self.close_conn(*old, ReasonCode::SessionTakenOver, now);
        } else if let Some(Sink::Local(inbox)) = &effects.taken_over {
            inbox.close(ReasonCode::SessionTakenOver);
        }
        // Its store write, if any, was submitted under the router lock.
        if let Some(delivery) = effects.delivery
            && !effects.receivers.is_empty()
        {
            self.dispatch(&delivery, &effects.receivers, now);
        }
    }

    /// Hands a delivery to each receiver: directly on this loop, through
    /// the outbox to other loops' connections, and to Moustique and
    /// in-process queues at once.
    fn dispatch(&mut self, delivery: &Arc<Delivery>, receivers: &[Sink], now: Instant) {
        // Deliveries other loops queued here earlier must not be overtaken:
        // a client that posts, gets its 200, and posts again expects its
        // subscribers to see the two in that order, whichever loops served
        // them. So what waits in this loop's inbox is handled first (unless
        // this is the inbox being handled: an accepted connection's first
        // read), and this loop's own deliveries then go straight out, in
        // order with the connection's other answers.
        if !self.draining && self.shared.loops[self.index].has_items() {
            self.drain_inbox(now);
        }
        let mut queues = false;
        for sink in receivers {
            match sink {
                Sink::Conn(target) if target.loop_index() == self.index => {
                    self.fed_loops |= loop_bit(target.loop_index());
                    self.deliver(*target, delivery, now)
                }
                Sink::Conn(target) => {
                    self.fed_loops |= loop_bit(target.loop_index());
                    self.outbox[target.loop_index()].push_delivery(*target, delivery);
                    self.outbox_pending = true;
                }
                Sink::Http(_) => queues = true,
                Sink::Local(_) => {
                    self.fed_local = true;
                    queues = true;
                }
            }
        }
        if queues {
            self.shared.dispatch_to_queues(std::slice::from_ref(delivery), receivers, WhenFull::DropOldest);
        }
    }

    /// [`EventLoop::dispatch`] for a frame already encoded, to binary
    /// connections only.
    fn dispatch_encoded(&mut self, frame: &[u8], receivers: &[Sink], now: Instant) {
        if !self.draining && self.shared.loops[self.index].has_items() {
            self.drain_inbox(now);
        }
        // Where this frame's bytes already are, per other loop: receivers
        // on one loop share them.
        let mut queued: SmallVec<[(usize, usize); 4]> = SmallVec::new();
        for sink in receivers {
            let Sink::Conn(target) = sink else { continue };
            let index = target.loop_index();
            self.fed_loops |= loop_bit(index);
            if index == self.index {
                self.deliver_encoded(*target, frame, now);
                continue;
            }
            let batch = &mut self.outbox[index];
            let start = match queued.iter().find(|&&(at, _)| at == index) {
                Some(&(_, start)) => start,
                None => {
                    let start = batch.push_bytes(frame);
                    queued.push((index, start));
                    start
                }
            };
            batch.push_frame(*target, start, frame_len(frame));
            self.outbox_pending = true;
        }
    }

    /// Puts off reading `token` until `at` (a connection keeps its place).
    fn defer_read(&mut self, token: usize, at: Instant) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if !conn.deferred {
            conn.deferred = true;
            self.deferred.push((token, conn.serial, at));
            self.deferred_until = Some(self.deferred_until.map_or(at, |until| until.min(at)));
        }
    }

    /// Connections whose deferral is over read again (at least once each);
    /// the others keep waiting, so a yield's immediate turn does not cut a
    /// stall short.
    fn resume_deferred(&mut self, now: Instant) {
        let mut deferred = std::mem::take(&mut self.deferred);
        let due: Vec<(usize, u64)> =
            deferred.extract_if(.., |&mut (_, _, at)| at <= now).map(|(token, serial, _)| (token, serial)).collect();
        self.deferred_until = deferred.iter().map(|&(_, _, at)| at).min();
        self.deferred = deferred;
        for (token, serial) in due {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { continue };
            if conn.serial != serial || !conn.deferred {
                continue;
            }
            conn.deferred = false;
            conn.read_pass = true;
            self.read(token, now);
        }
    }

    /// Moves the outbox's deliveries to the other loops' inboxes.
    fn flush_outbox(&mut self) {
        if !std::mem::take(&mut self.outbox_pending) {
            return;
        }
        for (index, batch) in self.outbox.iter_mut().enumerate() {
            if !batch.is_empty() {
                self.shared.send_all(index, batch);
            }
        }
    }

    fn deliver(&mut self, target: ConnRef, delivery: &Arc<Delivery>, now: Instant) {
        self.deliver_with(target, now, |proto| proto.deliver(delivery));
    }

    fn deliver_encoded(&mut self, target: ConnRef, frame: &[u8], now: Instant) {
        self.deliver_with(target, now, |proto| proto.deliver_encoded(frame));
    }

    fn deliver_with(&mut self, target: ConnRef, now: Instant, deliver: impl FnOnce(&mut Proto) -> Result<(), Closed>) {
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        if conn.serial != target.serial {
            return;
        }
        match deliver(&mut conn.proto) {
            Ok(()) => {
                self.counted.messages_out += 1;
                let outbound = conn.proto.outbound();
                if !conn.pressing
                    && conn.linger_until.is_none()
                    && outbound.len() > outbound.limit() / PRESSURE_FRACTION
                {
                    conn.pressing = true;
                    self.shared.loops[self.index].press(true);
                }
            }
            Err(closed) if closed.reason == Some(ReasonCode::SlowConsumer) && conn.linger_until.is_none() => {
                self.shared.stats.slow_consumer_drops.fetch_add(1, Ordering::Relaxed);
                log::warn!("connection {}:{} is a slow consumer; disconnecting", self.index, conn.serial);
                self.begin_close(target.token(), now);
            }
            Err(_) => {}
        }
        self.mark_dirty(target.token());
    }

    fn close_conn(&mut self, target: ConnRef, reason: ReasonCode, now: Instant) {
        if target.loop_index() != self.index {
            self.shared.send(target.loop_index(), InboxItem::Close(target, reason));
            return;
        }
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        if conn.serial != target.serial {
            return;
        }
        conn.proto.close(reason);
        self.begin_close(target.token(), now);
        self.mark_dirty(target.token());
    }

    fn drain_inbox(&mut self, now: Instant) {
        let mut batch = std::mem::take(&mut self.inbox);
        self.shared.loops[self.index].take_items(&mut batch);
        self.draining = true;
        for (i, item) in batch.items.drain(..).enumerate() {
            if i % DRAIN_FLUSH == DRAIN_FLUSH - 1 {
                // A long batch goes out as it is delivered: the socket takes
                // what it can before the queues count against their limits.
                self.flush_dirty(now);
            }
            match item {
                InboxItem::Deliver(target, delivery) => self.deliver(target, &delivery, now),
                InboxItem::Frame(target, start, len) => {
                    self.deliver_encoded(target, &batch.frames[start..start + len as usize], now)
                }
                InboxItem::Close(target, reason) => self.close_conn(target, reason, now),
                InboxItem::Committed(target, result) => self.committed(target, *result, now),
                InboxItem::Verified(target, caller) => self.verified(target, *caller, now),
                InboxItem::Accept(accepted) => {
                    let (stream, peer_ip) = *accepted;
                    self.insert(stream, peer_ip, now);
                }
            }
        }
        self.draining = false;
        batch.clear();
        self.inbox = batch;
    }

    /// The peer closed its half. A binary session ends at once, as MQTT
    /// brokers do; an HTTP connection first answers what it has read.
    fn end_of_input(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        match &mut conn.proto {
            Proto::Http(http) if !conn.write_shut => {
                log::debug!("connection {}:{} finished sending", self.index, conn.serial);
                http.end_of_input();
                conn.peer_eof = true;
            }
            _ => self.peer_closed(token),
        }
    }

    fn peer_closed(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        log::debug!("connection {}:{} closed by peer", self.index, conn.serial);
        self.remove(token);
    }

    /// The session closed: release its subscriptions now (nothing more is
    /// routed to it) and give its last bytes until the linger deadline.
    fn begin_close(&mut self, token: usize, now: Instant) {
        self.begin_close_within(token, now, LINGER);
    }

    fn begin_close_within(&mut self, token: usize, now: Instant, linger: Duration) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if conn.linger_until.is_some() {
            return;
        }
        conn.linger_until = Some(now + linger);
        // What it still has to send is no reason to slow anyone down.
        if std::mem::take(&mut conn.pressing) {
            self.shared.loops[self.index].press(false);
        }
        broker::release(&mut self.shared.router.write(), conn.subscriber.take());
        if let Some(reason) = conn.proto.close_reason() {
            self.shared.stats.count_disconnect(reason);
        }
        self.arm(token);
    }

    fn after_io(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if conn.proto.is_closed() && conn.linger_until.is_none() {
            self.begin_close(token, now);
        }
        // Input can bring a deadline forward (an HTTP request's timeout
        // starts with its first byte, an event stream's heartbeat with its
        // head).
        self.arm(token);
        self.mark_dirty(token);
    }

    /// Puts a connection on this turn's flush list, once however many
    /// frames were queued for it (a fan-out queues one per message).
    fn mark_dirty(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut)
            && !conn.in_dirty
        {
            conn.in_dirty = true;
            self.dirty.push(token);
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        while let Some(token) = self.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
                conn.in_dirty = false;
            }
            self.flush(token, now);
        }
    }

    /// Writes queued output until `WouldBlock`, then sets the interest the
    /// connection needs, and closes it once a closed session is flushed.
    fn flush(&mut self, token: usize, now: Instant) {
        self.flush_outbox();
        self.counted.add_to(&self.shared.stats);
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let mut broken = false;
        while !conn.proto.outbound().is_empty() {
            let result = {
                let mut slices: [&[u8]; IOVECS] = [&[]; IOVECS];
                let n = conn.proto.outbound().front_slices(&mut slices);
                let iovecs: smallvec::SmallVec<[IoSlice<'_>; IOVECS]> =
                    slices[..n].iter().map(|s| IoSlice::new(s)).collect();
                conn.stream.write_vectored(&iovecs)
            };
            match result {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(written) => {
                    conn.proto.outbound_mut().consume(written);
                    self.counted.bytes_out += written as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        // TLS: records (or a handshake's answer, a close_notify) the
        // socket did not take yet.
        if !broken && conn.stream.wants_write() {
            match conn.stream.send_pending() {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => broken = true,
            }
        }
        if conn.proto.is_closed() && conn.linger_until.is_none() {
            self.begin_close(token, now);
        }
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let flushed_closing =
            conn.linger_until.is_some() && conn.proto.outbound().is_empty() && !conn.stream.wants_write();
        if flushed_closing && !broken && conn.proto.drains_before_close() && !conn.write_shut && !conn.peer_eof {
            // Half-close and read until the peer's EOF (or the linger
            // deadline), so unread request bytes do not reset the
            // connection before the peer has read the response.
            conn.write_shut = true;
            if conn.stream.shutdown_write().is_ok() {
                self.read(token, now);
                return;
            }
        }
        if broken || (flushed_closing && !conn.write_shut) {
            self.remove(token);
            return;
        }
        let outbound = conn.proto.outbound();
        if conn.pressing && outbound.len() <= outbound.limit() / PRESSURE_FRACTION {
            conn.pressing = false;
            self.shared.loops[self.index].press(false);
        }
        let wants_write = !conn.proto.outbound().is_empty() || conn.stream.wants_write();
        let interest = if wants_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if interest != conn.interest {
            conn.interest = interest;
            if let Err(error) = conn.stream.reregister(self.poll.registry(), Token(token), interest) {
                log::warn!("cannot reregister a connection: {error}");
            }
        }
        // Output drained below the pause mark: read what the peer sent
        // meanwhile (edge-triggered readiness will not say it again).
        if conn.read_paused && conn.proto.wants_read() {
            self.read(token, now);
        }
    }

    fn remove(&mut self, token: usize) {
        let Some(mut conn) = self.conns.get_mut(token).and_then(Option::take) else { return };
        if conn.pressing {
            self.shared.loops[self.index].press(false);
        }
        broker::release(&mut self.shared.router.write(), conn.subscriber.take());
        conn.stream.close();
        let _ = conn.stream.deregister(self.poll.registry());
        self.shared.stats.closed(conn.stream.transport());
        if conn.refused {
            self.refusing -= 1;
        }
        log::debug!("connection {}:{} removed", self.index, conn.serial);
        self.free.push(token);
    }

    /// Makes sure a timer entry exists at or before the connection's next
    /// deadline. Later deadlines are found when an early entry fires.
    fn arm(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let deadline = match conn.linger_until {
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
            if let Some(until) = conn.linger_until {
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
        let mut router = self.shared.router.write();
        let mut state = self.shared.http.lock();
        // Deleted from the store under the locks, like the SUBSCRIBE that
        // may register the same name again right after.
        for delete in service::expire_clients(&mut router, &mut state, now) {
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

fn is_fd_exhaustion(errno: i32) -> bool {
    // EMFILE (per process) and ENFILE (system-wide) on Linux.
    errno == 24 || errno == 23
}
#[cfg(test)]
mod tests {
    /// Every connection slot costs `size_of::<Conn>()` however it is used,
    /// and the RSS budget per idle subscribed connection is 1 KiB in all:
    /// rare or large state (an HTTP connection's, a held request) is boxed.
    #[test]
    fn a_connection_slot_stays_small() {
        let size = std::mem::size_of::<Option<super::Conn>>();
        assert!(size <= 320, "a connection slot grew to {size} bytes");
    }
}
