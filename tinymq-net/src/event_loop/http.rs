//! HTTP input: requests into the service, answers, and answers held for a
//! credentials check or a store commit.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tinymq_core::auth::{AuthError, Fault, Identity, THROTTLED_TEXT, Throttled};
use tinymq_core::http::call::{ApiError, Call};
use tinymq_core::http::conn::HttpStep;
use tinymq_core::http::encoding::Encoding;
use tinymq_core::http::response::Response;
use tinymq_core::http::service::{self, Context, Reply};

use super::EventLoop;
use super::slot::Held;
use crate::proto::Proto;
use crate::shared::{ConnRef, InboxItem, Sink, unix_time};
use crate::users::Decision;

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

impl EventLoop {
    /// Serves whole HTTP requests in order; returns bytes consumed.
    pub(super) fn handle_requests(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        let Some(me) = self.conn_ref(token) else { return 0 };
        loop {
            // GET /mqtt and GET /ws turn the connection into a session
            // over WebSocket (event_loop/websocket.rs).
            if let Some(taken) = self.try_upgrade(token, &input[used..], now) {
                return used + taken;
            }
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return used };
            let Proto::Http(http) = &mut conn.proto else { return used };
            let (consumed, head, body) = match http.handle_input(now, &input[used..]) {
                HttpStep::Incomplete => return used,
                HttpStep::Discarded { consumed } => return used + consumed,
                HttpStep::Refused { consumed, status } => {
                    log::debug!("connection {}:{} refused with {status}", self.index, conn.serial);
                    let peer_ip = conn.peer_ip;
                    self.shared.http.lock().count_status(status, unix_time());
                    if let Some(fault) = Fault::of_refused_request(status) {
                        // Answered and closing either way.
                        let _ = self.shared.charge(peer_ip, now, fault);
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
                        conn.hold(Held::Call(request.call, request.encoding));
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
        // Which refusals are faults is the core's rule (ApiError::fault,
        // AuthError::fault).
        let fault = match &work {
            HttpWork::Refused(error) => error.fault(),
            HttpWork::Call(_, _, Err(error)) => error.fault(),
            _ => None,
        };
        let Some(fault) = fault else { return work };
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
    pub(super) fn committed(&mut self, target: ConnRef, result: Result<Response, String>, now: Instant) {
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
    pub(super) fn verified(&mut self, target: ConnRef, caller: Result<Identity, AuthError>, now: Instant) {
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        // A connection closed meanwhile (by its peer, a takeover or a
        // shutdown) gets nothing.
        if conn.serial != target.serial || conn.linger_until().is_some() || conn.proto.is_closed() {
            return;
        }
        match conn.take_held() {
            Some(Held::Connect { client_id }) => self.finish_connect(target.token(), target, &client_id, caller, now),
            Some(Held::MqttConnect) => self.finish_mqtt_connect(target.token(), target, caller, now),
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
}
