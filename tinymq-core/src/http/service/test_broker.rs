//! A broker for the service's tests: a router, the HTTP state and raw
//! requests served through [`super::handle`] or [`super::serve`].

use std::time::Instant;

use serde_json::Value;

use super::{Call, Context, HttpConfig, HttpEffects, HttpState, Reply, SinkKind, handle, parse, serve};
use crate::auth::{AuthError, Identity};
use crate::http::clients::HttpClientId;
use crate::http::encoding::{Encoding, decode_value, encode_value};
use crate::http::request::{HttpLimits, Parsed, parse_head};
use crate::metrics::{DurationHistogram, Figures};
use crate::router::Router;

/// A sink as the shell has them: a connection or a Moustique client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TestSink {
    Conn(&'static str),
    Http(HttpClientId),
}

impl SinkKind for TestSink {
    fn http_client(&self) -> Option<HttpClientId> {
        match self {
            TestSink::Http(id) => Some(*id),
            TestSink::Conn(_) => None,
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            TestSink::Http(_) => "http",
            TestSink::Conn(_) => "tcp",
        }
    }
}

pub(super) struct Broker {
    pub(super) router: Router<TestSink>,
    pub(super) state: HttpState,
    pub(super) config: HttpConfig,
    pub(super) now: Instant,
}

impl Broker {
    #[allow(clippy::disallowed_methods)]
    pub(super) fn new(config: HttpConfig) -> Self {
        let state = HttpState::new(&config, 1_000);
        Broker { router: Router::new(), state, config, now: Instant::now() }
    }

    /// Serves one raw request.
    pub(super) fn request(&mut self, raw: &str) -> HttpEffects<TestSink> {
        let Ok(Parsed::Complete { head, head_len }) = parse_head(raw.as_bytes(), &HttpLimits::default()) else {
            panic!("not a whole request: {raw}")
        };
        let body = &raw.as_bytes()[head_len..];
        let context = Context { now: self.now, unix_time: 2_000, ip: None, encoding: Encoding::Current };
        handle(
            &mut self.router,
            &mut self.state,
            &self.config,
            &head,
            body,
            context,
            TestSink::Conn("stream"),
            TestSink::Http,
            Figures::default,
        )
    }

    /// Serves one raw request as `caller`, whatever credentials it
    /// carries (the shell checked them).
    pub(super) fn request_as(&mut self, raw: &str, caller: Result<Identity, AuthError>) -> HttpEffects<TestSink> {
        let Ok(Parsed::Complete { head, head_len }) = parse_head(raw.as_bytes(), &HttpLimits::default()) else {
            panic!("not a whole request: {raw}")
        };
        let request = parse(&head, &raw.as_bytes()[head_len..], &self.config).expect("a valid call");
        let context = Context { now: self.now, unix_time: 2_000, ip: None, encoding: Encoding::Current };
        self.serve_as(request.call, caller, context, Figures::default)
    }

    /// Serves `call` as `caller` in `context`, with the shell's `figures`.
    pub(super) fn serve_as(
        &mut self,
        call: Call,
        caller: Result<Identity, AuthError>,
        context: Context,
        figures: impl FnOnce() -> Figures,
    ) -> HttpEffects<TestSink> {
        serve(
            &mut self.router,
            &mut self.state,
            &self.config,
            call,
            caller,
            context,
            TestSink::Conn("stream"),
            TestSink::Http,
            figures,
        )
    }

    /// A plain-API GET as `caller`: status and body.
    pub(super) fn get_as(&mut self, target: &str, caller: &Result<Identity, AuthError>) -> (u16, String) {
        let effects = self.request_as(&format!("GET {target} HTTP/1.1\r\n\r\n"), caller.clone());
        match effects.reply {
            Reply::Response(response) => (response.status, String::from_utf8_lossy(&response.body).into()),
            other => (other.status(), String::new()),
        }
    }

    /// A Moustique call with encoded parameters; the response body
    /// decoded.
    pub(super) fn moustique(&mut self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let body: Vec<String> = params
            .iter()
            .map(|(name, value)| {
                let encoded = encode_value(value.as_bytes(), Encoding::Current)
                    .replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D");
                format!("{name}={encoded}")
            })
            .collect();
        let body = body.join("&");
        let effects = self.request(&format!("POST /{path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        let Reply::Response(response) = effects.reply else { panic!("not a plain response") };
        let text = String::from_utf8(decode_value(&response.body, Encoding::Current)).unwrap();
        (response.status, text)
    }
}

pub(super) fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub(super) fn user(name: &str, admin: bool) -> Result<Identity, AuthError> {
    Ok(Identity::User { name: name.into(), admin })
}

pub(super) fn subscribe_request(filter: &str, client: &str) -> String {
    let encode = |v: &str| {
        encode_value(v.as_bytes(), Encoding::Current).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
    };
    let body = format!("topic={}&client={}", encode(filter), encode(client));
    format!("POST /SUBSCRIBE HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

/// Figures with something in every labelled family.
pub(super) fn busy_figures() -> Figures {
    let mut commits = DurationHistogram::default();
    for micros in [100, 700, 700, 3_000, 2_000_000] {
        commits.record(std::time::Duration::from_micros(micros));
    }
    Figures {
        connections: vec![("tcp", 2), ("unix", 0), ("http", 1)],
        messages_out: 7,
        slow_consumer_drops: 1,
        local_queue_drops: 2,
        sessions: crate::durable::SessionFigures {
            total: 3,
            persistent: 2,
            online: 1,
            queued: 5,
            inflight: 2,
            acknowledged: 9,
            resent: 1,
            dropped: 4,
        },
        disconnects: vec![("protocol_error", 3), ("slow_consumer", 1)],
        store_commit_seconds: commits,
        ..Figures::default()
    }
}
