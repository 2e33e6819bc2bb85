//! Taking connections: accepting from the listeners, turning peers away
//! at the door (allow-list, throttled addresses, the connection limit),
//! and putting a connection in the slab.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Interest, Token};
use tinymq_core::auth::{THROTTLED_TEXT, Throttled};
use tinymq_core::http::conn::HttpConn;
use tinymq_core::http::response::Response;
use tinymq_core::mqtt::{ReasonCode as MqttReason, ServerSession};
use tinymq_core::{ReasonCode, Session};

use super::EventLoop;
use super::slot::{Conn, State};
use crate::proto::Proto;
use crate::shared::Control;
use crate::transport::{Stream, Transport};

/// How long accepting pauses after the process runs out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections refused (over the limit, peer not allowed, throttled) that
/// may wait at once for their refusal to be read; beyond these, more are
/// closed without a word.
const MAX_REFUSING: u64 = 1024;

/// What a peer outside the allow-list is told.
const NOT_ALLOWED_TEXT: &str = "this peer address is not allowed to connect";

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

fn is_fd_exhaustion(errno: i32) -> bool {
    // EMFILE (per process) and ENFILE (system-wide) on Linux.
    errno == 24 || errno == 23
}

impl EventLoop {
    pub(super) fn accept(&mut self, listener: usize, now: Instant) {
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
                        self.shared.send(target, Control::Accept(stream, peer_ip).into());
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
        if let Err(throttled) = self.shared.check_peer(ip, now) {
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

    pub(super) fn insert(&mut self, stream: Stream, peer_ip: Option<IpAddr>, now: Instant) -> Option<usize> {
        self.insert_as(stream, peer_ip, now, None)
    }

    /// Registers a connection and schedules the read of what it has sent
    /// already. A refused one is refused before that first read, or a
    /// request already waiting would be served ahead of the refusal.
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
            // MQTT over WebSocket is an upgraded HTTP connection, never
            // accepted as such.
            Transport::Mqtt | Transport::Mqtts | Transport::MqttWs | Transport::MqttWss => {
                let mut session = ServerSession::new(now, &self.shared.config.mqtt_session());
                // Its CONNECT is answered with a refusal in its version.
                match refusal {
                    Some(Refusal::Throttled(_)) => session.refuse_at_door(MqttReason::ServerBusy),
                    Some(_) => session.refuse_at_door(MqttReason::NotAuthorized),
                    None => {}
                }
                Proto::Mqtt(Box::new(session))
            }
            // A WebSocket connection is an upgraded HTTP one, never accepted as such.
            Transport::Tcp | Transport::Unix | Transport::Tls | Transport::Ws | Transport::Wss => {
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
            state: State::Open,
            read_paused: false,
            in_dirty: false,
            peer_eof: false,
            refused: refusal.is_some(),
            routes: None,
            pressing: false,
            deferred: false,
            read_pass: false,
            read_scheduled: false,
            fed_loops: 0,
            fed_local: false,
        });
        self.arm(token);
        // Bytes may have arrived before registration; edge-triggered
        // readiness would not report them again. Read in this turn's read
        // step, not from inside whatever accepted it.
        self.schedule_read(token);
        Some(token)
    }
}
