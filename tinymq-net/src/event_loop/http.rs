//! HTTP input: requests into the service, answers, and answers held for a
//! credentials check or a store commit.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tinymq_core::Session;
use tinymq_core::auth::{AuthError, Identity};
use tinymq_core::broker::{HttpInput, WriteAnswer, commit_answer};
use tinymq_core::http::conn::HttpStep;
use tinymq_core::http::encoding::Encoding;
use tinymq_core::http::response::Response;
use tinymq_core::http::service::{self, Context, Reply};
use tinymq_core::http::upgrade::{self, WsProtocol};
use tinymq_core::mqtt::ServerSession;
use tinymq_core::store::StoreOp;
use tinymq_core::websocket::Upgrade;

use super::EventLoop;
use super::slot::Held;
use crate::proto::Proto;
use crate::shared::{ConnRef, Control, Sink, log_events, unix_time};
use crate::transport::Stream;
use crate::users::Decision;
use crate::ws::WsStream;

impl EventLoop {
    /// Serves whole HTTP requests in order; returns bytes consumed.
    pub(super) fn handle_requests(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
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
                    let mut broker = self.shared.broker.write();
                    broker.handle_http_refused(status, peer_ip, now, unix_time());
                    log_events(&mut broker);
                    return used + consumed;
                }
                HttpStep::Request { consumed, head, body } => (consumed, head, body),
            };
            used += consumed;
            if let Some((protocol, decision)) = upgrade::decide(&head) {
                match decision {
                    Ok(accepted) => {
                        // What follows the request is WebSocket frames.
                        self.upgrade_to_websocket(token, protocol, &accepted, &input[used..], now);
                        return input.len();
                    }
                    Err(error) => http.respond(now, &upgrade::refusal(&error)),
                }
                continue;
            }
            let request = match service::parse(&head, body, &self.shared.config.http) {
                Ok(request) => request,
                Err(error) => {
                    self.serve_http(token, me, HttpInput::Refused(error), Encoding::Current, now);
                    continue;
                }
            };
            let credentials = request.credentials.as_ref().map(|(name, password)| (name.as_str(), password.as_str()));
            let peer_ip = self.conns.get(token).and_then(Option::as_ref).and_then(|c| c.peer_ip);
            match self.shared.authenticate(me, peer_ip, credentials) {
                Decision::Now(caller) => {
                    if self.serve_http(token, me, HttpInput::Call(request.call, caller), request.encoding, now) {
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

    /// Turns HTTP connection `token` into a WebSocket one carrying
    /// `protocol`: what it had not sent yet and the 101 go out first,
    /// `input` (what came after the request) is its first WebSocket input,
    /// and a new session of the protocol starts.
    fn upgrade_to_websocket(
        &mut self,
        token: usize,
        protocol: WsProtocol,
        accepted: &Upgrade,
        input: &[u8],
        now: Instant,
    ) {
        let Some(mut conn) = self.conns.get_mut(token).and_then(Option::take) else { return };
        let mut prelude = Vec::new();
        if let Proto::Http(http) = &mut conn.proto {
            let outbound = http.outbound_mut();
            while !outbound.is_empty() {
                let mut slices: [&[u8]; 64] = [&[]; 64];
                let n = outbound.front_slices(&mut slices);
                let before = prelude.len();
                slices[..n].iter().for_each(|s| prelude.extend_from_slice(s));
                let len = prelude.len() - before;
                outbound.consume(len);
            }
        }
        prelude.extend_from_slice(&accepted.response());
        let stats = &self.shared.stats;
        stats.closed(conn.stream.transport());
        let config = &self.shared.config;
        let mqtt = protocol == WsProtocol::Mqtt;
        // A frame or packet may span messages: a message holds at most
        // the largest one and a read's worth more.
        let largest = if mqtt { config.mqtt.max_packet_size } else { config.session.frame_limits.max_payload_len };
        let stream = conn.stream;
        conn.stream = Stream::Ws(Box::new(WsStream::new(stream, mqtt, prelude, input, largest + 64 * 1024)));
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.opened(conn.stream.transport());
        conn.proto = match protocol {
            WsProtocol::Tinymq => Proto::Binary(Session::new(now, &config.session)),
            WsProtocol::Mqtt => Proto::Mqtt(Box::new(ServerSession::new(now, &config.mqtt_session()))),
        };
        conn.pending = Vec::new();
        conn.armed = None;
        log::debug!("connection {}:{} upgraded to WebSocket", self.index, conn.serial);
        self.conns[token] = Some(conn);
        self.arm(token);
        self.mark_dirty(token);
        self.schedule_read(token);
    }

    /// Serves one parsed request (or answers why it could not be parsed)
    /// and moves what it publishes. Returns whether the answer is held for
    /// a commit.
    fn serve_http(&mut self, token: usize, me: ConnRef, input: HttpInput, encoding: Encoding, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return false };
        let Proto::Http(http) = &mut conn.proto else { return false };
        let context = Context { now, unix_time: self.unix_now, ip: conn.peer_ip, encoding };
        let shared = &self.shared;
        let (effects, ticket, answer) = {
            let started = Instant::now();
            let mut broker = shared.broker.write();
            let mut effects = broker.handle_http(input, context, Sink::Conn(me), Sink::Http, || shared.shell_figures());
            broker.record_serve_time(started.elapsed());
            log_events(&mut broker);
            // Submitted under the lock, so that two loops changing the
            // same client (or value) reach the store in the order they
            // changed it in memory.
            let value = effects
                .stored
                .as_ref()
                .and_then(|(namespace, delivery)| shared.submit(StoreOp::of_value(namespace, delivery.message())));
            let client = effects.client_record.take().and_then(|op| shared.submit(op));
            // The Moustique queues' writes: a publish's puts, a PICKUP's
            // delete (the guard would hand them over too, without a ticket).
            let queues = broker.submit_store_ops();
            // Tickets commit in order: the latest covers them all.
            let ticket = value.max(client).max(queues);
            let answer = if effects.picked_up > 0 {
                broker.answer_pickup(effects.picked_up)
            } else {
                let failing = ticket.and(shared.store_failing());
                broker.answer_write(effects.reply.status(), ticket.is_some(), failing.as_deref())
            };
            (effects, ticket, answer)
        };
        let mut deferred = false;
        match (effects.reply, answer, ticket) {
            (Reply::Response(_), WriteAnswer::Unavailable(refusal), _) => {
                // `batched`: a write made while the store is failing is not
                // durable, so it gets no 200 (it stays queued for the retry).
                shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
                http.respond(now, &refusal);
            }
            (Reply::Response(response), WriteAnswer::AfterCommit, Some(ticket)) => {
                // `immediate`: the 200 waits for the commit.
                http.defer();
                deferred = true;
                let notify = shared.clone();
                let store = shared.store.as_ref().expect("a ticket comes from the store");
                let pickup = effects.picked_up > 0;
                store.on_commit(ticket, move |result| {
                    // A PICKUP's messages have left the queue: they go out
                    // whatever the commit did (see `answer_pickup`).
                    let answer = if pickup { Ok(response) } else { result.map(|()| response) };
                    notify.send(me.loop_index(), Control::Committed(me, answer).into());
                });
            }
            // A throttled peer waits at the door for its next request.
            (Reply::Response(response), ..) if effects.throttled => http.refuse_now(&response),
            (Reply::Response(response), ..) => http.respond(now, &response),
            (Reply::Preflight, ..) => http.respond_preflight(now),
            (Reply::Events { subscriber, retained }, ..) => {
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

    /// The commit an HTTP answer waited for is done: send the answer (or a
    /// 503 naming the failure) and serve the requests that queued behind.
    pub(super) fn committed(&mut self, target: ConnRef, result: Result<Response, String>, now: Instant) {
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        if conn.serial != target.serial {
            return;
        }
        let Proto::Http(http) = &mut conn.proto else { return };
        if result.is_err() {
            self.shared.stats.store_failures.fetch_add(1, Ordering::Relaxed);
        }
        http.respond(now, &commit_answer(result));
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
            Some(Held::Connect { client_id, session }) => {
                self.finish_connect(target.token(), target, &client_id, session.request(), caller, now)
            }
            Some(Held::MqttConnect) => self.finish_mqtt_connect(target.token(), target, caller, now),
            Some(Held::Call(call, encoding)) => {
                if self.serve_http(target.token(), target, HttpInput::Call(call, caller), encoding, now) {
                    self.after_io(target.token(), now);
                    return;
                }
            }
            None => return,
        }
        self.resume(target.token(), now);
    }

    /// Serves the input that waited while an answer was held, then
    /// schedules a read (reading paused meanwhile).
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
        self.schedule_read(token);
    }
}
