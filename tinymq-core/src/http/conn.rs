//! The broker side of one HTTP connection: finds whole requests in the
//! bytes that arrive (head, then a body of its declared length), answers
//! the ones refused by their head alone, keeps responses in request order,
//! enforces the request and idle timeouts, and once a request asks for an
//! event stream, frames deliveries as Server-Sent Events.
//!
//! Call order, as for [`crate::Session`]: feed [`HttpConn::handle_input`]
//! the unconsumed input until it yields [`HttpStep::Incomplete`]; for each
//! [`HttpStep::Request`] serve it (see [`super::service::handle`]) and
//! write the answer with [`HttpConn::respond`] or
//! [`HttpConn::start_events`]; send [`HttpConn::outbound`]; call
//! [`HttpConn::handle_timeout`] at [`HttpConn::poll_timeout`].

use std::time::{Duration, Instant};

use super::json::message_object;
use super::request::{HttpLimits, Parsed, RequestError, RequestHead, parse_head};
use super::response::{self, Response};
use crate::codec::ReasonCode;
use crate::message::Message;
use crate::outbound::Outbound;
use crate::session::Closed;

/// Settings of HTTP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConnConfig {
    /// Bounds on one request.
    pub limits: HttpLimits,
    /// A request must be whole this long after its first byte (default
    /// 10 s); a slower one gets 408 and the connection closes.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request for this long closes
    /// (default 60 s).
    pub idle_timeout: Duration,
    /// An event stream gets a comment this often (default 15 s).
    pub heartbeat: Duration,
    /// Unsent bytes before reading pauses (responses) or an event stream
    /// is cut as a slow consumer (default 1 MiB).
    pub outbound_limit: usize,
}

impl Default for HttpConnConfig {
    fn default() -> Self {
        HttpConnConfig {
            limits: HttpLimits::default(),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            outbound_limit: 1 << 20,
        }
    }
}

/// What [`HttpConn::handle_input`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum HttpStep<'a> {
    /// No whole request yet; call again with more input.
    Incomplete,
    /// Input the connection has no use for (after it closed, or on an
    /// event stream): drop `consumed` bytes.
    Discarded {
        /// Bytes to drop.
        consumed: usize,
    },
    /// A request refused by its head alone, already answered; the
    /// connection is closed. Drop `consumed` bytes.
    Refused {
        /// Bytes to drop.
        consumed: usize,
        /// The status the answer carried.
        status: u16,
    },
    /// A whole request. Serve it, answer it, then drop `consumed` bytes
    /// (`body` borrows them).
    Request {
        /// Bytes of the input the request took.
        consumed: usize,
        /// Its head.
        head: RequestHead,
        /// Its body.
        body: &'a [u8],
    },
}

#[derive(Debug)]
enum State {
    /// Between requests, since this instant.
    Idle(Instant),
    /// A request has begun; it must be whole by the deadline. The head,
    /// once parsed, is kept while the body arrives.
    Reading { deadline: Instant, head: Option<(RequestHead, usize)> },
    /// An event stream; the next heartbeat is due then.
    Streaming { heartbeat_at: Instant },
    /// Over: flush and close.
    Closed(Option<ReasonCode>),
}

/// One HTTP connection. See the module docs.
#[derive(Debug)]
pub struct HttpConn {
    state: State,
    config: HttpConnConfig,
    outbound: Outbound,
    /// Whether the request being served keeps the connection open.
    keep_alive: bool,
    /// The answer to the request just yielded waits for something (a
    /// commit): no further request is taken until [`HttpConn::respond`].
    deferred: bool,
}

impl HttpConn {
    /// A connection accepted at `now`.
    pub fn new(now: Instant, config: &HttpConnConfig) -> Self {
        HttpConn {
            state: State::Idle(now),
            config: *config,
            // Responses are pushed past the limit (a request is answered
            // whole); the limit pauses reading and cuts slow streams.
            outbound: Outbound::new(config.outbound_limit),
            keep_alive: true,
            deferred: false,
        }
    }

    /// Whether the connection is over; flush [`HttpConn::outbound`] and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Why the broker closed it (a slow event stream, a shutdown).
    pub fn close_reason(&self) -> Option<ReasonCode> {
        match self.state {
            State::Closed(reason) => reason,
            _ => None,
        }
    }

    /// Whether it is an event stream.
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming { .. })
    }

    /// Whether the shell should read: not while responses pile up unread
    /// (pipelined requests would only add to them). A closed connection
    /// still reads, to discard what the peer sends until it sees the close.
    pub fn wants_read(&self) -> bool {
        self.is_closed() || (!self.deferred && self.outbound.len() < self.outbound.limit())
    }

    /// Holds the answer to the request just yielded: the caller responds
    /// later (once a write is committed, say). Requests pipelined behind it
    /// wait, so answers keep their order.
    pub fn defer(&mut self) {
        self.deferred = true;
    }

    /// Whether an answer is held back by [`HttpConn::defer`].
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Bytes waiting to be sent.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Bytes waiting to be sent, to mark what was written.
    pub fn outbound_mut(&mut self) -> &mut Outbound {
        &mut self.outbound
    }

    /// Looks for a whole request at the start of `input`. A request refused
    /// by its head alone (431, 413, 411, 405, 400) is answered here and the
    /// connection closes, since the rest of the input cannot be framed.
    pub fn handle_input<'a>(&mut self, now: Instant, input: &'a [u8]) -> HttpStep<'a> {
        match &mut self.state {
            State::Closed(_) | State::Streaming { .. } => return HttpStep::Discarded { consumed: input.len() },
            _ if self.deferred => return HttpStep::Incomplete,
            State::Idle(_) if input.is_empty() => return HttpStep::Incomplete,
            State::Idle(_) => {
                self.state = State::Reading { deadline: now + self.config.request_timeout, head: None };
            }
            State::Reading { .. } => {}
        }
        let State::Reading { head: parsed, .. } = &mut self.state else { unreachable!("set above") };
        let (head_len, content_length) = match parsed {
            Some((head, head_len)) => (*head_len, head.content_length),
            None => match parse_head(input, &self.config.limits) {
                Ok(Parsed::Partial) => return HttpStep::Incomplete,
                Ok(Parsed::Complete { head, head_len }) => {
                    let length = head.content_length;
                    *parsed = Some((head, head_len));
                    (head_len, length)
                }
                Err(error) => {
                    self.refuse(&error);
                    return HttpStep::Refused { consumed: input.len(), status: error.status() };
                }
            },
        };
        let consumed = head_len + content_length;
        if input.len() < consumed {
            return HttpStep::Incomplete;
        }
        let State::Reading { head: parsed, .. } = std::mem::replace(&mut self.state, State::Idle(now)) else {
            unreachable!("matched above")
        };
        let (head, _) = parsed.expect("parsed above");
        self.keep_alive = head.keep_alive;
        HttpStep::Request { consumed, body: &input[head_len..consumed], head }
    }

    fn refuse(&mut self, error: &RequestError) {
        let response = Response::text(error.status(), error.to_string());
        self.outbound.push_with(|out| response.write(false, out)).unwrap_or_else(|_| {
            let mut bytes = Vec::new();
            response.write(false, &mut bytes);
            self.outbound.push_final(&bytes);
        });
        self.state = State::Closed(None);
    }

    /// The peer has closed its half: it sends nothing more. Requests
    /// already read are still answered (a held one too), then the
    /// connection closes; a partial request and an event stream end here.
    pub fn end_of_input(&mut self) {
        if self.deferred {
            self.keep_alive = false;
        } else if !self.is_closed() {
            self.state = State::Closed(None);
        }
    }

    /// Answers at once, whatever the peer sends, and closes: how a
    /// connection over the broker's limit gets its 503.
    pub fn refuse_now(&mut self, response: &Response) {
        let mut bytes = Vec::new();
        response.write(false, &mut bytes);
        self.outbound.push_final(&bytes);
        self.state = State::Closed(None);
    }

    /// Writes the answer to the request just yielded. The connection
    /// closes after it unless the request asked to keep it alive.
    pub fn respond(&mut self, now: Instant, response: &Response) {
        self.deferred = false;
        let keep_alive = self.keep_alive && !self.is_closed();
        let mut bytes = Vec::with_capacity(160 + response.body.len());
        response.write(keep_alive, &mut bytes);
        self.outbound.push_final(&bytes);
        self.after_response(now, keep_alive);
    }

    /// Answers a CORS preflight.
    pub fn respond_preflight(&mut self, now: Instant) {
        self.deferred = false;
        let keep_alive = self.keep_alive && !self.is_closed();
        let mut bytes = Vec::new();
        response::write_preflight(keep_alive, &mut bytes);
        self.outbound.push_final(&bytes);
        self.after_response(now, keep_alive);
    }

    fn after_response(&mut self, now: Instant, keep_alive: bool) {
        if !keep_alive {
            self.state = State::Closed(None);
        } else if matches!(self.state, State::Idle(_)) {
            // The idle clock starts when the answer is out, not when the
            // request came.
            self.state = State::Idle(now);
        }
    }

    /// Turns the connection into an event stream: the stream head, then
    /// `retained` as its first events. Later requests on it are ignored.
    pub fn start_events<'m>(&mut self, now: Instant, retained: impl IntoIterator<Item = &'m Message>) {
        self.deferred = false;
        let mut bytes = Vec::new();
        response::write_event_stream_head(&mut bytes);
        self.outbound.push_final(&bytes);
        self.state = State::Streaming { heartbeat_at: now + self.config.heartbeat };
        for message in retained {
            if self.deliver(message).is_err() {
                break;
            }
        }
    }

    /// Sends a message as one `message` event. An event stream whose peer
    /// leaves more than the limit unread is closed (a slow consumer).
    pub fn deliver(&mut self, message: &Message) -> Result<(), Closed> {
        match self.state {
            State::Streaming { .. } => {}
            State::Closed(reason) => return Err(Closed { reason }),
            // Only streams subscribe; nothing to do for a plain request.
            _ => return Ok(()),
        }
        let pushed = self.outbound.push_with(|out| {
            out.extend_from_slice(b"event: message\ndata: ");
            // serde_json escapes newlines, so the data stays on one line.
            serde_json::to_writer(&mut *out, &message_object(message)).expect("writing to a Vec cannot fail");
            out.extend_from_slice(b"\n\n");
        });
        if pushed.is_err() {
            self.state = State::Closed(Some(ReasonCode::SlowConsumer));
            return Err(Closed { reason: Some(ReasonCode::SlowConsumer) });
        }
        Ok(())
    }

    /// Ends the connection from the broker's side (shutdown). An idle
    /// connection simply closes; a request in progress is cut.
    pub fn close(&mut self, reason: ReasonCode) {
        if !self.is_closed() {
            self.state = State::Closed(Some(reason));
        }
    }

    /// The next deadline: the idle timeout, the request timeout, or the
    /// next heartbeat.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle(since) => Some(since + self.config.idle_timeout),
            State::Reading { deadline, .. } => Some(deadline),
            State::Streaming { heartbeat_at } => Some(heartbeat_at),
            State::Closed(_) => None,
        }
    }

    /// Acts on a deadline that has passed: closes an idle connection,
    /// answers a request that is too slow with 408, or sends a heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Closed> {
        match self.state {
            // A held answer is not idleness.
            State::Idle(_) if self.deferred => Ok(()),
            State::Idle(since) if now >= since + self.config.idle_timeout => {
                self.state = State::Closed(None);
                Err(Closed { reason: None })
            }
            State::Reading { deadline, .. } if now >= deadline => {
                let response = Response::text(408, "request not complete in time");
                let mut bytes = Vec::new();
                response.write(false, &mut bytes);
                self.outbound.push_final(&bytes);
                self.state = State::Closed(None);
                Err(Closed { reason: None })
            }
            State::Streaming { heartbeat_at } if now >= heartbeat_at => {
                self.state = State::Streaming { heartbeat_at: now + self.config.heartbeat };
                if self.outbound.push_with(|out| out.extend_from_slice(b": heartbeat\n\n")).is_err() {
                    self.state = State::Closed(Some(ReasonCode::SlowConsumer));
                    return Err(Closed { reason: Some(ReasonCode::SlowConsumer) });
                }
                Ok(())
            }
            State::Closed(reason) => Err(Closed { reason }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual clock's origin; only differences matter.
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn sent(conn: &mut HttpConn) -> String {
        let mut slices = [&[][..]; 64];
        let n = conn.outbound().front_slices(&mut slices);
        let text: Vec<u8> = slices[..n].concat();
        let len = conn.outbound().len();
        conn.outbound_mut().consume(len);
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn pipelined_requests_come_one_at_a_time_with_their_bodies() {
        let now = epoch();
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        let input = b"POST /POST HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /VERSION HTTP/1.1\r\n\r\n";
        let HttpStep::Request { consumed, head, body } = conn.handle_input(now, input) else { panic!() };
        assert_eq!((head.path.as_str(), body), ("/POST", &b"abc"[..]));
        conn.respond(now, &Response::ok());
        let HttpStep::Request { consumed: second, head, .. } = conn.handle_input(now, &input[consumed..]) else {
            panic!()
        };
        assert_eq!((head.path.as_str(), consumed + second), ("/VERSION", input.len()));
        conn.respond(now, &Response::ok());
        let out = sent(&mut conn);
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        assert!(!conn.is_closed());
    }

    #[test]
    fn end_of_input_answers_a_held_request_then_closes() {
        let now = epoch();
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        let input = b"POST /POST HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert!(matches!(conn.handle_input(now, input), HttpStep::Request { .. }));
        conn.defer();
        conn.end_of_input();
        assert!(!conn.is_closed(), "the held answer is still owed");
        conn.respond(now, &Response::ok());
        assert!(conn.is_closed());
        let out = sent(&mut conn);
        assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains("Connection: close"), "{out}");

        // Without a held answer, a partial request is dropped and it closes.
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        assert!(matches!(conn.handle_input(now, b"GET /VER"), HttpStep::Incomplete));
        conn.end_of_input();
        assert!(conn.is_closed());
        assert!(sent(&mut conn).is_empty());
    }

    #[test]
    fn a_body_split_across_reads_waits_for_its_last_byte() {
        let now = epoch();
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        let input = b"PUT /PUTVAL HTTP/1.1\r\nContent-Length: 10\r\n\r\nvalname=ab";
        for cut in 0..input.len() {
            assert_eq!(conn.handle_input(now, &input[..cut]), HttpStep::Incomplete, "cut {cut}");
        }
        assert!(matches!(conn.handle_input(now, input), HttpStep::Request { body: b"valname=ab", .. }));
    }

    #[test]
    fn a_refused_head_is_answered_and_closes() {
        let now = epoch();
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        let input = b"POST /POST HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(conn.handle_input(now, input), HttpStep::Refused { consumed: input.len(), status: 413 });
        assert!(conn.is_closed());
        let out = sent(&mut conn);
        assert!(out.starts_with("HTTP/1.1 413 ") && out.contains("Connection: close"), "{out}");
    }

    #[test]
    fn a_deferred_answer_holds_the_requests_behind_it() {
        let now = epoch();
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        let input = b"POST /POST HTTP/1.1\r\n\r\nGET /VERSION HTTP/1.1\r\n\r\n";
        let HttpStep::Request { consumed, .. } = conn.handle_input(now, input) else { panic!() };
        conn.defer();
        assert!(!conn.wants_read());
        assert_eq!(conn.handle_input(now, &input[consumed..]), HttpStep::Incomplete);
        assert!(conn.handle_timeout(now + Duration::from_secs(3600)).is_ok(), "waiting is not idling");
        conn.respond(now, &Response::ok());
        assert!(matches!(conn.handle_input(now, &input[consumed..]), HttpStep::Request { .. }));
    }

    #[test]
    fn http_1_0_closes_after_its_response() {
        let now = epoch();
        let mut conn = HttpConn::new(now, &HttpConnConfig::default());
        assert!(matches!(conn.handle_input(now, b"GET /VERSION HTTP/1.0\r\n\r\n"), HttpStep::Request { .. }));
        conn.respond(now, &Response::ok());
        assert!(conn.is_closed());
        assert!(sent(&mut conn).contains("Connection: close"));
    }

    #[test]
    fn a_slow_request_gets_408_and_an_idle_connection_closes() {
        let start = epoch();
        let config = HttpConnConfig::default();
        let mut slow = HttpConn::new(start, &config);
        assert_eq!(slow.handle_input(start, b"GET /VERS"), HttpStep::Incomplete);
        assert_eq!(slow.poll_timeout(), Some(start + config.request_timeout));
        assert!(slow.handle_timeout(start + config.request_timeout).is_err());
        assert!(sent(&mut slow).starts_with("HTTP/1.1 408 "));

        let mut idle = HttpConn::new(start, &config);
        assert!(idle.handle_timeout(start + config.idle_timeout / 2).is_ok());
        assert!(idle.handle_timeout(start + config.idle_timeout).is_err());
        assert!(idle.outbound().is_empty(), "an idle close says nothing");
    }

    #[test]
    fn an_event_stream_frames_messages_and_heartbeats() {
        let now = epoch();
        let config = HttpConnConfig { outbound_limit: 400, ..Default::default() };
        let mut conn = HttpConn::new(now, &config);
        assert!(matches!(
            conn.handle_input(now, b"GET /api/v1/events?topic=a HTTP/1.1\r\n\r\n"),
            HttpStep::Request { .. }
        ));
        let retained =
            Message { topic: "a".into(), payload: b"x\ny"[..].into(), from: "f".into(), updated_time: 0, ip: None };
        conn.start_events(now, [&retained]);
        let out = sent(&mut conn);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"), "{out}");
        assert!(out.ends_with("event: message\ndata: {\"from\":\"f\",\"ip\":\"\",\"message\":\"x\\ny\",\"topic\":\"a\",\"updated_nicedatetime\":\"1970-01-01 00:00:00\",\"updated_time\":0}\n\n"), "{out}");
        conn.handle_timeout(now + config.heartbeat).unwrap();
        assert_eq!(sent(&mut conn), ": heartbeat\n\n");
        // Nobody reads: the stream is cut at its limit.
        let mut result = Ok(());
        for _ in 0..10 {
            result = conn.deliver(&retained);
        }
        assert_eq!(result, Err(Closed { reason: Some(ReasonCode::SlowConsumer) }));
        assert!(conn.is_closed());
    }
}
