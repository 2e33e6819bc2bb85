//! What each HTTP call does to the broker: the HTTP counterpart of
//! [`crate::broker::execute`].
//!
//! The shell parses a request head ([`super::request::parse_head`]), waits
//! for its body, then calls [`handle`] with the router and the
//! [`HttpState`] (HTTP clients, posters, request rates). The returned
//! [`HttpEffects`] carry the reply and, for a publish, the delivery and the
//! sinks it must reach. Deliveries to Moustique clients' queues are made
//! here, since their queues live in the [`HttpState`] the caller lent.
//!
//! Moustique clients and their filters are durable: [`HttpEffects`] carries
//! the store write a SUBSCRIBE makes, [`expire_clients`] the deletes of the
//! clients it drops, and [`restore_client`] brings a stored client back at
//! start-up. The shell submits those writes while it still holds the locks
//! it lent, so the store sees changes in the order they were made.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::call::{ApiError, ApiRequest, Call, parse_call};
use super::clients::{HttpClientId, HttpClientLimits, HttpClients};
use super::encoding::{Encoding, EncodingMode};
use super::json::{message_object, moustique_message_object, nice_datetime};
use super::request::RequestHead;
use super::response::{self, Response};
use super::topic_search::TopicSearch;
use super::ui::UiFile;
use crate::auth::{AuthError, Identity, PeerReport};
use crate::message::Message;
use crate::metrics::{DurationHistogram, Figures};
use crate::router::{Delivery, NamespaceId, Router, SubscriberId};
use crate::store::{StoreOp, StoredHttpClient};
use crate::topic::{TopicLimits, TopicName};

/// The topic under which PICKUP tells an unknown client to subscribe again
/// (the Moustique client libraries act on it).
pub const RESUBSCRIBE_TOPIC: &str = "/server/action/resubscribe";

/// How the shell's router sinks look to the HTTP service.
pub trait SinkKind {
    /// The Moustique client this sink queues for, if it is one.
    fn http_client(&self) -> Option<HttpClientId>;
    /// The transport, as CLIENTS and the metrics name it (`tcp`, `unix`,
    /// `http`, `sse`, `local`).
    fn transport(&self) -> &'static str;
}

/// Settings of the HTTP service.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Bounds on topic names and filters.
    pub topic_limits: TopicLimits,
    /// Bounds on Moustique clients.
    pub client_limits: HttpClientLimits,
    /// Longest GETVALSBYREGEX expression, in bytes (default 1 KiB).
    pub max_regex_len: usize,
    /// Compiled size limit of such an expression (default 1 MiB).
    pub regex_size_limit: usize,
    /// Whether requests without credentials use the public namespace.
    pub allow_anonymous: bool,
    /// Publishers POSTERS remembers at once (default 10,000).
    pub max_posters: usize,
    /// Which orders of Moustique's encoding requests may use (default
    /// [`EncodingMode::Auto`]: both, each answered in its own).
    pub moustique_encoding: EncodingMode,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            topic_limits: TopicLimits::default(),
            client_limits: HttpClientLimits::default(),
            max_regex_len: 1024,
            regex_size_limit: 1 << 20,
            allow_anonymous: true,
            max_posters: 10_000,
            moustique_encoding: EncodingMode::Auto,
        }
    }
}

/// A count and its rate over the last minute, by Unix second.
#[derive(Clone, Debug)]
struct Rate {
    total: u64,
    seconds: [u64; 60],
    counts: [u64; 60],
}

impl Default for Rate {
    fn default() -> Self {
        Rate { total: 0, seconds: [0; 60], counts: [0; 60] }
    }
}

impl Rate {
    fn record(&mut self, unix_time: u64) {
        self.total += 1;
        let slot = (unix_time % 60) as usize;
        if self.seconds[slot] != unix_time {
            self.seconds[slot] = unix_time;
            self.counts[slot] = 0;
        }
        self.counts[slot] += 1;
    }

    fn json(&self, unix_time: u64, uptime_secs: u64) -> Value {
        let last_minute: u64 = self
            .seconds
            .iter()
            .zip(&self.counts)
            .filter(|&(&second, _)| second <= unix_time && unix_time - second < 60)
            .map(|(_, &count)| count)
            .sum();
        json!({
            "total": self.total,
            "per_second": self.total as f64 / uptime_secs.max(1) as f64,
            "per_second_last_minute": last_minute as f64 / uptime_secs.clamp(1, 60) as f64,
        })
    }
}

#[derive(Debug)]
struct Poster {
    count: u64,
    latest: Arc<Delivery>,
    first_unix: u64,
    last_unix: u64,
    /// Its latest post per topic, at most [`POSTER_TOPICS`] topics (the
    /// least recently posted to go first).
    by_topic: Vec<Arc<Delivery>>,
}

/// Topics POSTERS keeps a publisher's latest post for.
const POSTER_TOPICS: usize = 32;

/// An address that made requests to a namespace (`/PEERHOSTS`).
#[derive(Debug)]
struct PeerHost {
    first_unix: u64,
    last_unix: u64,
    requests: u64,
}

/// Addresses `/PEERHOSTS` remembers, all namespaces together.
const MAX_PEER_HOSTS: usize = 4096;

/// One request, as `/LOG` shows it.
#[derive(Debug)]
struct LogLine {
    namespace: NamespaceId,
    unix: u64,
    ip: Option<IpAddr>,
    text: String,
}

/// Requests `/LOG` remembers, all namespaces together, and shows at most.
const LOG_LINES: usize = 2048;
const LOG_SHOWN: usize = 100;

/// What the HTTP service keeps beside the router. See the module docs.
#[derive(Debug)]
pub struct HttpState {
    /// Moustique clients and their queues.
    pub clients: HttpClients,
    posters: HashMap<(NamespaceId, Arc<str>), Poster>,
    requests: Rate,
    pickups: Rate,
    processed: Rate,
    getvals: Rate,
    statuses: BTreeMap<u16, u64>,
    started_unix: u64,
    peer_hosts: HashMap<(NamespaceId, IpAddr), PeerHost>,
    log: VecDeque<LogLine>,
    log_total: HashMap<NamespaceId, u64>,
    serve_nanos: u128,
    served: u64,
}

/// What POSTERS keeps a publisher for after its latest post.
const POSTER_WINDOW_SECS: u64 = 3600;

impl HttpState {
    /// Fresh state for a broker started at `started_unix`.
    pub fn new(config: &HttpConfig, started_unix: u64) -> Self {
        HttpState {
            clients: HttpClients::new(config.client_limits),
            posters: HashMap::new(),
            requests: Rate::default(),
            pickups: Rate::default(),
            processed: Rate::default(),
            getvals: Rate::default(),
            statuses: BTreeMap::new(),
            started_unix,
            peer_hosts: HashMap::new(),
            log: VecDeque::new(),
            log_total: HashMap::new(),
            serve_nanos: 0,
            served: 0,
        }
    }

    /// Counts how long the shell took to serve a request (STATS'
    /// `average_request_time`, as Moustique has it).
    pub fn record_serve_time(&mut self, took: std::time::Duration) {
        self.serve_nanos += took.as_nanos();
        self.served += 1;
    }

    /// Remembers a served request for `/LOG` and `/PEERHOSTS`.
    fn record_request(&mut self, namespace: NamespaceId, mut text: String, status: u16, context: &Context) {
        let unix = context.unix_time;
        if let Some(ip) = context.ip {
            if let Some(host) = self.peer_hosts.get_mut(&(namespace, ip)) {
                host.last_unix = unix;
                host.requests += 1;
            } else {
                if self.peer_hosts.len() >= MAX_PEER_HOSTS
                    && let Some(oldest) = self.peer_hosts.iter().min_by_key(|(_, h)| h.last_unix).map(|(k, _)| *k)
                {
                    self.peer_hosts.remove(&oldest);
                }
                self.peer_hosts.insert((namespace, ip), PeerHost { first_unix: unix, last_unix: unix, requests: 1 });
            }
        }
        if self.log.len() >= LOG_LINES {
            self.log.pop_front();
        }
        let _ = write!(text, " {status}");
        self.log.push_back(LogLine { namespace, unix, ip: context.ip, text });
        *self.log_total.entry(namespace).or_default() += 1;
    }

    /// Counts a response by status (requests refused before [`handle`],
    /// such as a 431, are counted by the shell through this).
    pub fn count_status(&mut self, status: u16, unix_time: u64) {
        self.requests.record(unix_time);
        *self.statuses.entry(status).or_default() += 1;
    }

    /// Responses sent so far, by status.
    pub fn statuses(&self) -> &BTreeMap<u16, u64> {
        &self.statuses
    }

    fn record_poster(&mut self, namespace: NamespaceId, delivery: &Arc<Delivery>, max: usize) {
        let message = delivery.message();
        let key = (namespace, message.from.clone());
        if let Some(poster) = self.posters.get_mut(&key) {
            poster.count += 1;
            poster.latest = delivery.clone();
            poster.last_unix = message.updated_time;
            poster.by_topic.retain(|d| d.message().topic != message.topic);
            if poster.by_topic.len() >= POSTER_TOPICS {
                poster.by_topic.remove(0);
            }
            poster.by_topic.push(delivery.clone());
            return;
        }
        if self.posters.len() >= max {
            // Full: forget the publisher heard from longest ago.
            if let Some(oldest) = self.posters.iter().min_by_key(|(_, p)| p.last_unix).map(|(k, _)| k.clone()) {
                self.posters.remove(&oldest);
            }
        }
        let poster = Poster {
            count: 1,
            latest: delivery.clone(),
            first_unix: message.updated_time,
            last_unix: message.updated_time,
            by_topic: vec![delivery.clone()],
        };
        self.posters.insert(key, poster);
    }
}

/// When and from where a request came.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// The monotonic time, for client expiry.
    pub now: Instant,
    /// Wall-clock Unix seconds, for timestamps.
    pub unix_time: u64,
    /// The peer's address.
    pub ip: Option<IpAddr>,
    /// The order the request's Moustique parameters came in; Moustique
    /// answers use it too.
    pub encoding: Encoding,
}

/// How the shell answers a request.
#[derive(Debug)]
#[must_use]
pub enum Reply {
    /// Write this response.
    Response(Response),
    /// Answer a CORS preflight.
    Preflight,
    /// Turn the connection into an event stream: write the stream head,
    /// then `retained` as the first events. `subscriber` receives through
    /// the connection's own sink from now on.
    Events {
        /// The stream's subscriber.
        subscriber: SubscriberId,
        /// Stored values matching the stream's filters.
        retained: Vec<Arc<Delivery>>,
    },
}

impl Reply {
    /// The status the peer gets.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Response(response) => response.status,
            Reply::Preflight => 204,
            Reply::Events { .. } => 200,
        }
    }
}

/// What the shell must do after [`handle`].
#[derive(Debug)]
#[must_use]
pub struct HttpEffects<S> {
    /// The answer.
    pub reply: Reply,
    /// A published message, for the shell to move to `receivers`.
    pub delivery: Option<Arc<Delivery>>,
    /// Sinks of `delivery` other than Moustique clients.
    pub receivers: Vec<S>,
    /// Moustique clients `delivery` was queued for here.
    pub queued: usize,
    /// A stored value changed: the namespace name, and the message (an
    /// empty payload means deleted) for the store.
    pub stored: Option<(Arc<str>, Arc<Delivery>)>,
    /// A Moustique client was registered or took a new filter: its record,
    /// for the store. `None` for a SUBSCRIBE to a filter it held already.
    pub client_record: Option<StoreOp>,
}

impl<S> HttpEffects<S> {
    fn reply(reply: Reply) -> Self {
        HttpEffects { reply, delivery: None, receivers: Vec::new(), queued: 0, stored: None, client_record: None }
    }

    fn respond(response: Response) -> Self {
        Self::reply(Reply::Response(response))
    }
}

/// Serves one whole request. `own_sink` is the connection's sink (an event
/// stream receives through it); `client_sink` makes the sink of a new
/// Moustique client; `figures` reads the shell's counters when a
/// statistics call needs them.
#[allow(clippy::too_many_arguments)]
///
/// This is [`parse`] and [`serve`] for a broker without users: requests
/// carrying credentials are refused with 401. A broker with users checks
/// [`ApiRequest::credentials`] between the two.
pub fn handle<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    head: &RequestHead,
    body: &[u8],
    context: Context,
    own_sink: S,
    client_sink: impl Fn(HttpClientId) -> S,
    figures: impl FnOnce() -> Figures,
) -> HttpEffects<S> {
    match parse(head, body, config) {
        Ok(request) => {
            let caller = match request.credentials {
                None => Ok(Identity::Anonymous),
                Some(_) => Err(AuthError::WrongCredentials),
            };
            let context = Context { encoding: request.encoding, ..context };
            serve(router, state, config, request.call, caller, context, own_sink, client_sink, figures)
        }
        Err(error) => refuse(state, &error, context.unix_time),
    }
}

/// Reads what a whole request asks for, and the credentials it carries.
pub fn parse(head: &RequestHead, body: &[u8], config: &HttpConfig) -> Result<ApiRequest, ApiError> {
    parse_call(head, body, &config.topic_limits, config.moustique_encoding)
}

/// The answer to a request [`parse`] refused, counted in the statistics.
pub fn refuse<S>(state: &mut HttpState, error: &ApiError, unix_time: u64) -> HttpEffects<S> {
    let effects = HttpEffects::respond(error_response(error));
    state.count_status(effects.reply.status(), unix_time);
    effects
}

/// Effects that only answer `response` (a refusal the shell decided on,
/// such as a throttled peer's 429), counted in the statistics.
pub fn respond<S>(state: &mut HttpState, response: Response, unix_time: u64) -> HttpEffects<S> {
    state.count_status(response.status, unix_time);
    HttpEffects::respond(response)
}

/// Serves a parsed call for `caller`: anonymous, a user whose password
/// the shell verified, or the reason its credentials were refused (401,
/// 503 when the shell is too busy to check them). Other arguments as for
/// [`handle`].
///
/// Who may do what: a refused caller gets its status, whatever it asked;
/// an anonymous one is served in the public namespace if the broker allows
/// anonymous access, else gets 401; a user is served in its own namespace.
/// Without anonymous access the statistics calls (STATS, CLIENTS, TOPICS,
/// POSTERS, STATUS, the page, `/metrics`) also need an admin user (403
/// otherwise). `/api/v1/health`, `/VERSION` and CORS preflights are open
/// to anyone.
#[allow(clippy::too_many_arguments)]
pub fn serve<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    call: Call,
    caller: Result<Identity, AuthError>,
    context: Context,
    own_sink: S,
    client_sink: impl Fn(HttpClientId) -> S,
    figures: impl FnOnce() -> Figures,
) -> HttpEffects<S> {
    let effects = match authorize(router, config, &call, caller) {
        Ok(namespace) => {
            let logged = call.is_moustique().then(|| call.log_text());
            let effects = execute(router, state, config, call, namespace, context, own_sink, client_sink, figures);
            if let Some(text) = logged {
                state.record_request(namespace, text, effects.reply.status(), &context);
            }
            effects
        }
        Err(response) => HttpEffects::respond(response),
    };
    state.count_status(effects.reply.status(), context.unix_time);
    effects
}

/// The namespace `caller` is served in, or the refusal. See [`serve`].
fn authorize<S: Clone>(
    router: &mut Router<S>,
    config: &HttpConfig,
    call: &Call,
    caller: Result<Identity, AuthError>,
) -> Result<NamespaceId, Response> {
    // The UI's script, style sheet and icon hold no data; Moustique serves
    // VERSION to anyone, and its clients ask for it without credentials.
    if matches!(call, Call::Preflight | Call::Health | Call::UiFile(_) | Call::Version) {
        return Ok(NamespaceId::PUBLIC);
    }
    // A browser asked for a page prompts for credentials; API clients
    // get a plain 401.
    let refuse = |error: AuthError| {
        let response = match error {
            AuthError::Throttled { retry_after_secs } => Response::too_many_requests(error.text(), retry_after_secs),
            _ => Response::text(error.status(), error.text()),
        };
        if error.status() == 401 && matches!(call, Call::Index | Call::Status) {
            response.with_challenge()
        } else {
            response
        }
    };
    let identity = caller.map_err(refuse)?;
    if identity == Identity::Anonymous && !config.allow_anonymous {
        return Err(refuse(AuthError::CredentialsRequired));
    }
    let statistics = matches!(
        call,
        Call::Stats { .. }
            | Call::Clients { .. }
            | Call::Topics
            | Call::Posters
            | Call::Crooks
            | Call::PeerHosts
            | Call::Log
            | Call::Status
            | Call::Index
            | Call::Metrics
    );
    if statistics && !config.allow_anonymous && !identity.is_admin() {
        return Err(Response::text(403, "this needs an admin user"));
    }
    Ok(router.namespace(identity.namespace_name()))
}

/// The short text reply for a refused call.
pub fn error_response(error: &ApiError) -> Response {
    Response::text(error.status(), error.to_string())
}

#[allow(clippy::too_many_arguments)]
fn execute<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    call: Call,
    namespace: NamespaceId,
    context: Context,
    own_sink: S,
    client_sink: impl Fn(HttpClientId) -> S,
    figures: impl FnOnce() -> Figures,
) -> HttpEffects<S> {
    let unix = context.unix_time;
    let moustique = |document: &Value| HttpEffects::respond(Response::moustique_json(document, context.encoding));
    let either = |document: &Value, plain: bool| {
        if plain { HttpEffects::respond(Response::json(document)) } else { moustique(document) }
    };
    let value_call = matches!(call, Call::Value { .. });
    match call {
        Call::Post { topic, message, from, updated_time } => {
            state.processed.record(unix);
            let message = stamp(topic, message, from, updated_time, context);
            publish(router, state, config, namespace, message, true)
        }
        Call::Publish { topic, payload, retain, from } => {
            state.processed.record(unix);
            let message = stamp(topic, payload, from, None, context);
            let mut effects = publish(router, state, config, namespace, message, retain);
            effects.reply = Reply::Response(Response::no_content());
            effects
        }
        Call::Subscribe { filter, client } => {
            let id = match state.clients.find(namespace, &client) {
                Some(id) => id,
                None => {
                    let registered = state.clients.register(namespace, &client, context.now, unix, context.ip, |id| {
                        router.add_subscriber(namespace, client_sink(id))
                    });
                    match registered {
                        Some(id) => id,
                        None => return HttpEffects::respond(Response::text(503, "too many HTTP clients")),
                    }
                }
            };
            state.clients.touch(id, context.now, unix, context.ip);
            let mut effects = HttpEffects::respond(Response::ok());
            if state.clients.subscribe(id, filter.clone())
                && let Some(client) = state.clients.get(id)
            {
                router.subscribe(client.subscriber, filter);
                // The whole record again: a new client's first filter and a
                // known client's next one are the same write.
                effects.client_record = Some(StoreOp::PutHttpClient {
                    namespace: router.namespace_name(namespace).to_string(),
                    client: client.name.to_string(),
                    first_seen: client.first_seen,
                    filters: client.filters.iter().map(|f| f.as_str().to_owned()).collect(),
                });
            }
            effects
        }
        Call::Pickup { client } => {
            state.pickups.record(unix);
            let Some(id) = state.clients.find(namespace, &client) else {
                return moustique(&resubscribe_document(unix));
            };
            state.clients.touch(id, context.now, unix, context.ip);
            let groups: Map<String, Value> = state
                .clients
                .pickup(id)
                .into_iter()
                .map(|(filter, messages)| {
                    let list = messages
                        .iter()
                        .map(|queued| moustique_message_object(queued.delivery.message(), &queued.subscribers))
                        .collect();
                    (filter.as_str().to_owned(), Value::Array(list))
                })
                .collect();
            moustique(&Value::Object(groups))
        }
        Call::PutVal { name, value, from, updated_time } => {
            let delivery = Delivery::new(stamp(name, value, from, updated_time, context));
            let topic = delivery.message().topic.clone();
            if delivery.message().payload.is_empty() {
                router.remove_value(namespace, &topic);
            } else {
                router.store(namespace, delivery.clone());
            }
            let mut effects = HttpEffects::respond(Response::ok());
            effects.stored = Some((router.namespace_name(namespace).clone(), delivery));
            effects
        }
        Call::GetVal { topic } | Call::Value { topic } => {
            state.getvals.record(unix);
            let Some(value) = router.value(namespace, &topic) else {
                return HttpEffects::respond(Response::text(404, format!("no value for {topic}")));
            };
            if value_call {
                HttpEffects::respond(Response::json(&message_object(value.message())))
            } else {
                moustique(&moustique_message_object(value.message(), &[]))
            }
        }
        Call::GetValsByRegex { pattern } => {
            state.getvals.record(unix);
            if pattern.len() > config.max_regex_len {
                return HttpEffects::respond(Response::text(
                    400,
                    format!("regular expression over {} bytes", config.max_regex_len),
                ));
            }
            // Validated by regex, for its error messages; searched by a lazy
            // DFA whose work is bounded (topic_search.rs).
            if let Err(error) = regex::RegexBuilder::new(&pattern)
                .size_limit(config.regex_size_limit)
                .dfa_size_limit(config.regex_size_limit)
                .build()
            {
                let text = error.to_string();
                let first_line = text.lines().last().unwrap_or("invalid regular expression").trim();
                return HttpEffects::respond(Response::text(400, format!("bad regular expression: {first_line}")));
            }
            let mut search = match TopicSearch::new(&pattern, config.regex_size_limit) {
                Ok(search) => search,
                Err(text) => return HttpEffects::respond(Response::text(400, text)),
            };
            let mut matches = Map::new();
            // `$` topics are the broker's (`$SYS/...`), listed only when asked for by name, as MQTT does.
            for d in router.values(namespace).filter(|d| !d.message().topic.starts_with('$')) {
                match search.is_match(&d.message().topic) {
                    Ok(true) => {
                        matches.insert(d.message().topic.to_string(), moustique_message_object(d.message(), &[]));
                    }
                    Ok(false) => {}
                    Err(text) => return HttpEffects::respond(Response::text(400, text)),
                }
            }
            moustique(&Value::Object(matches))
        }
        Call::Values { filter } => {
            let list = router.values_matching(namespace, &filter).map(|d| message_object(d.message())).collect();
            HttpEffects::respond(Response::json(&Value::Array(list)))
        }
        Call::Version => moustique(&json!(env!("CARGO_PKG_VERSION"))),
        Call::Stats { plain } => either(&stats_document(router, state, &figures(), unix), plain),
        Call::Clients { plain } => either(&clients_document(router, state, namespace), plain),
        Call::Topics => {
            let topics = router
                .values(namespace)
                .filter(|d| !d.message().topic.starts_with('$'))
                .map(|d| Value::from(&*d.message().topic))
                .collect();
            moustique(&Value::Array(topics))
        }
        Call::Posters => moustique(&posters_document(state, namespace, unix)),
        Call::Crooks => moustique(&crooks_document(&figures().peers, &context)),
        Call::PeerHosts => moustique(&peer_hosts_document(state, namespace)),
        Call::Log => moustique(&log_document(state, namespace)),
        Call::Index => HttpEffects::respond(Response::ui(UiFile::Page)),
        Call::UiFile(file) => HttpEffects::respond(Response::ui(file)),
        Call::Status => {
            let page = status_page(router, state, namespace, &figures(), unix);
            HttpEffects::respond(Response::with_body(response::HTML, page.into_bytes()))
        }
        Call::Events { filters } => {
            let subscriber = router.add_subscriber(namespace, own_sink);
            let mut seen = HashSet::new();
            let mut retained = Vec::new();
            for filter in &filters {
                for value in router.values_matching(namespace, filter) {
                    if seen.insert(value.message().topic.clone()) {
                        retained.push(value.clone());
                    }
                }
            }
            for filter in filters {
                router.subscribe(subscriber, filter);
            }
            HttpEffects::reply(Reply::Events { subscriber, retained })
        }
        Call::Health => HttpEffects::respond(Response::text(200, "ok")),
        Call::Metrics => HttpEffects::respond(Response::with_body(
            response::PROMETHEUS,
            metrics_text(router, state, &figures()).into_bytes(),
        )),
        Call::Preflight => HttpEffects::reply(Reply::Preflight),
    }
}

fn stamp(topic: String, payload: Vec<u8>, from: Option<String>, time: Option<u64>, context: Context) -> Message {
    Message {
        topic: topic.into(),
        payload: payload.into(),
        from: from.map_or_else(|| Message::UNKNOWN_SENDER.into(), Into::into),
        updated_time: time.unwrap_or(context.unix_time),
        ip: context.ip,
    }
}

/// Publishes `message`: queues it for matching Moustique clients, returns
/// the other receivers, and with `retain` makes it the stored value (an
/// empty payload deletes the value and is still delivered).
fn publish<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    namespace: NamespaceId,
    message: Message,
    retain: bool,
) -> HttpEffects<S> {
    let delivery = Delivery::new(message);
    let mut receivers = Vec::new();
    let Ok(topic) = TopicName::new(&delivery.message().topic, &TopicLimits::UNBOUNDED) else {
        return HttpEffects::respond(Response::text(400, "bad topic"));
    };
    let stored = if retain {
        if delivery.message().payload.is_empty() {
            router.remove_value(namespace, topic.as_str());
        } else {
            router.store(namespace, delivery.clone());
        }
        Some((router.namespace_name(namespace).clone(), delivery.clone()))
    } else {
        None
    };
    router.route(namespace, topic, &mut receivers);
    let queued = state.clients.push_to_all(receivers.iter().filter_map(SinkKind::http_client), &delivery);
    receivers.retain(|sink| sink.http_client().is_none());
    state.record_poster(namespace, &delivery, config.max_posters);
    HttpEffects {
        reply: Reply::Response(Response::ok()),
        delivery: Some(delivery),
        receivers,
        queued,
        stored,
        client_record: None,
    }
}

/// Drops the Moustique clients not seen for their timeout, with their
/// router subscribers; returns the deletes of their stored records.
pub fn expire_clients<S: Clone>(router: &mut Router<S>, state: &mut HttpState, now: Instant) -> Vec<StoreOp> {
    state
        .clients
        .expire(now)
        .into_iter()
        .map(|client| {
            router.remove_subscriber(client.subscriber);
            StoreOp::DeleteHttpClient {
                namespace: router.namespace_name(client.namespace).to_string(),
                client: client.name.to_string(),
            }
        })
        .collect()
}

/// Brings back a Moustique client loaded from the store, at start-up: it
/// is registered again with its filters in the router, so messages
/// published from now on are queued for it, with an empty queue and its
/// timeout counting from `now` (see [`HttpClients::restore`]). `None` when
/// the registry is full (the client is not restored).
pub fn restore_client<S: Clone>(
    router: &mut Router<S>,
    state: &mut HttpState,
    stored: StoredHttpClient,
    now: Instant,
    unix_time: u64,
    client_sink: impl Fn(HttpClientId) -> S,
) -> Option<HttpClientId> {
    let namespace = router.namespace(&stored.namespace);
    let id = state.clients.restore(namespace, &stored.client, stored.first_seen, now, unix_time, |id| {
        router.add_subscriber(namespace, client_sink(id))
    })?;
    for filter in stored.filters {
        if state.clients.subscribe(id, filter.clone())
            && let Some(client) = state.clients.get(id)
        {
            router.subscribe(client.subscriber, filter);
        }
    }
    Some(id)
}

/// PICKUP's answer to a client the broker does not know.
fn resubscribe_document(unix_time: u64) -> Value {
    let message = Message {
        topic: RESUBSCRIBE_TOPIC.into(),
        payload: b"resubscribe"[..].into(),
        from: "tinymq".into(),
        updated_time: unix_time,
        ip: None,
    };
    json!({ RESUBSCRIBE_TOPIC: [message_object(&message)] })
}

fn stats_document<S: Clone>(router: &Router<S>, state: &HttpState, figures: &Figures, unix: u64) -> Value {
    let uptime = figures.uptime_secs;
    let posters = state.posters.values().filter(|p| unix.saturating_sub(p.last_unix) < POSTER_WINDOW_SECS).count();
    let connections: Map<String, Value> =
        figures.connections.iter().map(|&(name, n)| (name.to_owned(), Value::from(n))).collect();
    let memory_usage =
        figures.rss_bytes.map_or_else(|| "N/A".to_owned(), |bytes| format!("{:.1} MB", bytes as f64 / 1e6));
    // Milliseconds, as Moustique's handler timing.
    let average_request_time = state.serve_nanos as f64 / 1e6 / state.served.max(1) as f64;
    json!({
        "started": nice_datetime(state.started_unix),
        "memory_usage": memory_usage,
        "goroutines": figures.threads.unwrap_or(0),
        "average_request_time": average_request_time,
        "started_unix": state.started_unix,
        "uptime_seconds": uptime,
        "version": env!("CARGO_PKG_VERSION"),
        "subscription_count": router.subscription_count(),
        "subscribers": router.subscriber_count(),
        "values": router.value_count(),
        "clients": {
            "subscribers": state.clients.len(),
            "posters": posters,
            "queued_messages": state.clients.iter().map(|c| c.queued()).sum::<usize>(),
            "queue_dropped_messages": state.clients.dropped_total(),
            "expired": state.clients.expired_total(),
        },
        "requests": {
            "total": state.requests.total,
            "per_second": state.requests.json(unix, uptime)["per_second"],
            "per_second_last_minute": state.requests.json(unix, uptime)["per_second_last_minute"],
            "pickups": state.pickups.json(unix, uptime),
            "processed": state.processed.json(unix, uptime),
            "getvals": state.getvals.json(unix, uptime),
        },
        "connections": connections,
        "connections_total": figures.connections_total,
        "refused_connections": figures.refused_connections,
        "refused_peers": figures.refused_peers,
        "throttled_requests": figures.throttled_requests,
        "throttled_peers": figures.throttled_peers,
        "tls_handshake_failures": figures.tls_handshake_failures,
        "messages_in": figures.messages_in,
        "messages_out": figures.messages_out,
        "bytes_in": figures.bytes_in,
        "bytes_out": figures.bytes_out,
        "slow_consumer_drops": figures.slow_consumer_drops,
        "local_queue_drops": figures.local_queue_drops,
        "store_writes": figures.store_writes,
        "store_committed_writes": figures.store_committed_writes,
        "store_records_written": figures.store_records_written,
        "store_commits": figures.store_commits,
        "store_failed_commits": figures.store_failed_commits,
        "store_failures": figures.store_failures,
        "store_pending": figures.store_pending,
        "store_error": figures.store_error,
        // The figures `/metrics` adds, under the same names.
        "deliveries": figures.messages_out,
        "dropped": {
            "slow_consumer": figures.slow_consumer_drops,
            "queue_overflow": state.clients.dropped_total(),
            "local_queue": figures.local_queue_drops,
        },
        "disconnects": figures.disconnects.iter().map(|&(reason, n)| (reason.to_owned(), Value::from(n))).collect::<Map<String, Value>>(),
        "store_commit_seconds": {
            "count": figures.store_commit_seconds.count,
            "sum": figures.store_commit_seconds.sum_seconds(),
        },
        "http_responses": state.statuses.iter().map(|(status, n)| (status.to_string(), Value::from(*n))).collect::<Map<String, Value>>(),
    })
}

fn clients_document<S: Clone + SinkKind>(router: &Router<S>, state: &HttpState, namespace: NamespaceId) -> Value {
    let mut list: Vec<Value> = state
        .clients
        .iter()
        .filter(|c| c.namespace == namespace)
        .map(|c| {
            json!({
                "Name": &*c.name,
                "FirstSeen": c.first_seen,
                "FirstSeenNiceDatetime": nice_datetime(c.first_seen),
                "LatestPickup": c.latest_pickup,
                "LatestPickupNiceDatetime": nice_datetime(c.latest_pickup),
                "LatestSystemPickup": c.latest_pickup,
                "RequestCounter": c.requests,
                "IP": c.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "Transport": "http",
                "Subscriptions": c.filters.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                "Queued": c.queued(),
            })
        })
        .collect();
    let mut sessions: Vec<_> = router.clients(namespace).collect();
    sessions.sort_by(|a, b| a.client_id.cmp(b.client_id));
    // Connected subscribers have no pickups and no request count: those
    // fields are null, so readers of CLIENTS find every key.
    list.extend(sessions.into_iter().map(|entry| {
        json!({
            "Name": &**entry.client_id,
            "FirstSeen": entry.since,
            "FirstSeenNiceDatetime": nice_datetime(entry.since),
            "LatestPickup": null,
            "LatestPickupNiceDatetime": null,
            "LatestSystemPickup": null,
            "RequestCounter": null,
            "IP": entry.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "Transport": entry.sink.transport(),
        })
    }));
    Value::Array(list)
}

/// POSTERS: Moustique's list of publishers heard from in the last hour,
/// newest first, each with its latest post overall and per topic.
fn posters_document(state: &HttpState, namespace: NamespaceId, unix: u64) -> Value {
    let mut posters: Vec<(&Arc<str>, &Poster)> = state
        .posters
        .iter()
        .filter(|((ns, _), p)| *ns == namespace && unix.saturating_sub(p.last_unix) < POSTER_WINDOW_SECS)
        .map(|((_, name), p)| (name, p))
        .collect();
    posters.sort_by(|a, b| b.1.last_unix.cmp(&a.1.last_unix).then_with(|| a.0.cmp(b.0)));
    let list = posters
        .into_iter()
        .map(|(name, p)| {
            let latest = p.latest.message();
            let by_topic: Map<String, Value> = p
                .by_topic
                .iter()
                .map(|d| (d.message().topic.to_string(), moustique_message_object(d.message(), &[])))
                .collect();
            json!({
                "Name": &**name,
                "latest_posts_by_topic": by_topic,
                "latest_post": moustique_message_object(latest, &[]),
                "IP": latest.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "FirstSeen": p.first_unix,
                "FirstSeenNiceDatetime": nice_datetime(p.first_unix),
                "LatestPostTime": p.last_unix,
                "LatestPostNiceDatetime": nice_datetime(p.last_unix),
                "MessageCount": p.count,
            })
        })
        .collect();
    Value::Array(list)
}

/// CROOKS: Moustique's list of peers that made bad requests, with ours
/// added: why (`Reason`) and for how long more they are refused.
fn crooks_document(peers: &[PeerReport], context: &Context) -> Value {
    // The budgets keep monotonic times; shown as Unix seconds.
    let unix = |at: Instant| context.unix_time.saturating_sub(context.now.saturating_duration_since(at).as_secs());
    let list = peers
        .iter()
        .map(|peer| {
            let (first, last) = (unix(peer.first), unix(peer.last));
            let banned = peer.throttled_since.map(unix);
            json!({
                "IP": peer.peer,
                "Attempts": peer.faults,
                "FirstSeen": first,
                "FirstSeenNiceDatetime": nice_datetime(first),
                "LastSeen": last,
                "LastSeenNiceDatetime": nice_datetime(last),
                "BannedAt": banned.unwrap_or(0),
                "BannedAtNiceDatetime": banned.map(nice_datetime).unwrap_or_default(),
                "IsBanned": banned.is_some(),
                "Reason": peer.last_fault.text(),
                "RetryAfterSeconds": peer.retry_after.as_secs_f64().ceil() as u64,
            })
        })
        .collect();
    Value::Array(list)
}

/// PEERHOSTS: the addresses that made requests to the namespace, most
/// recent first.
fn peer_hosts_document(state: &HttpState, namespace: NamespaceId) -> Value {
    let mut hosts: Vec<(&IpAddr, &PeerHost)> =
        state.peer_hosts.iter().filter(|((ns, _), _)| *ns == namespace).map(|((_, ip), h)| (ip, h)).collect();
    hosts.sort_by(|a, b| b.1.last_unix.cmp(&a.1.last_unix).then_with(|| a.0.cmp(b.0)));
    let list = hosts
        .into_iter()
        .map(|(ip, host)| {
            json!({
                "IP": ip.to_string(),
                "FirstSeen": host.first_unix,
                "FirstSeenNiceDatetime": nice_datetime(host.first_unix),
                "LastSeen": host.last_unix,
                "LastSeenNiceDatetime": nice_datetime(host.last_unix),
                "RequestCounter": host.requests,
            })
        })
        .collect();
    Value::Array(list)
}

/// LOG: the namespace's latest Moustique requests, oldest first, in
/// Moustique's `{"lines": [...], "total": N}`.
fn log_document(state: &HttpState, namespace: NamespaceId) -> Value {
    let mut lines: Vec<String> = state
        .log
        .iter()
        .rev()
        .filter(|line| line.namespace == namespace)
        .take(LOG_SHOWN)
        .map(|line| {
            let ip = line.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".to_owned());
            format!("{} {ip} {}", nice_datetime(line.unix), line.text)
        })
        .collect();
    lines.reverse();
    json!({ "lines": lines, "total": state.log_total.get(&namespace).copied().unwrap_or(0) })
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn status_page<S: Clone>(
    router: &Router<S>,
    state: &HttpState,
    namespace: NamespaceId,
    figures: &Figures,
    unix: u64,
) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>tinymq status</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}td,th{text-align:left;\
         padding:.2em 1em .2em 0}</style></head><body>",
    );
    let _ = write!(page, "<h1>tinymq {}</h1><table>", env!("CARGO_PKG_VERSION"));
    let rows: [(&str, String); 9] = [
        ("started", nice_datetime(state.started_unix)),
        ("uptime (s)", figures.uptime_secs.to_string()),
        ("connections", figures.connections.iter().map(|(_, n)| n).sum::<u64>().to_string()),
        ("HTTP clients", state.clients.len().to_string()),
        ("subscriptions", router.subscription_count().to_string()),
        ("stored values", router.value_count().to_string()),
        ("messages in", figures.messages_in.to_string()),
        ("messages out", figures.messages_out.to_string()),
        ("HTTP requests", state.requests.total.to_string()),
    ];
    for (name, value) in rows {
        let _ = write!(page, "<tr><th>{name}</th><td>{}</td></tr>", html_escape(&value));
    }
    page.push_str("</table><h2>HTTP clients</h2><table><tr><th>name</th><th>latest pickup</th><th>queued</th></tr>");
    // Broker-wide counts above; names only from the caller's namespace.
    for client in state.clients.iter().filter(|c| c.namespace == namespace).take(1000) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&client.name),
            nice_datetime(client.latest_pickup),
            client.queued()
        );
    }
    let _ = write!(page, "</table><p>{}</p></body></html>", nice_datetime(unix));
    page
}

fn metrics_text<S: Clone>(router: &Router<S>, state: &HttpState, figures: &Figures) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP tinymq_{name} {help}\n# TYPE tinymq_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "tinymq_{name}{labels} {value}");
        }
    };
    let one = |value: u64| [(String::new(), value)];
    let by_transport: Vec<(String, u64)> =
        figures.connections.iter().map(|(name, n)| (format!("{{transport=\"{name}\"}}"), *n)).collect();
    metric("connections", "gauge", "Open connections.", &by_transport);
    metric("connections_accepted_total", "counter", "Connections accepted.", &one(figures.connections_total));
    metric(
        "connections_refused_total",
        "counter",
        "Connections refused at the limit.",
        &one(figures.refused_connections),
    );
    metric(
        "refused_peers_total",
        "counter",
        "Connections refused: peer not on the allow-list.",
        &one(figures.refused_peers),
    );
    metric(
        "throttled_requests_total",
        "counter",
        "Connections, logins and requests refused: their address spent its budget of bad requests.",
        &one(figures.throttled_requests),
    );
    metric("throttled_peers", "gauge", "Addresses out of their budget of bad requests.", &one(figures.throttled_peers));
    metric(
        "tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed.",
        &one(figures.tls_handshake_failures),
    );
    metric(
        "subscriptions",
        "gauge",
        "Subscriptions (subscriber, filter pairs).",
        &one(router.subscription_count() as u64),
    );
    metric("stored_values", "gauge", "Stored values.", &one(router.value_count() as u64));
    metric("http_clients", "gauge", "Registered Moustique HTTP clients.", &one(state.clients.len() as u64));
    metric("messages_in_total", "counter", "Messages published.", &one(figures.messages_in));
    metric(
        "messages_out_total",
        "counter",
        "Deliveries: one per message per subscriber it reached, every transport.",
        &one(figures.messages_out),
    );
    metric("bytes_in_total", "counter", "Bytes read from sockets.", &one(figures.bytes_in));
    metric("bytes_out_total", "counter", "Bytes written to sockets.", &one(figures.bytes_out));
    let drops = [
        ("{reason=\"slow_consumer\"}".to_owned(), figures.slow_consumer_drops),
        ("{reason=\"queue_overflow\"}".to_owned(), state.clients.dropped_total()),
        ("{reason=\"local_queue\"}".to_owned(), figures.local_queue_drops),
    ];
    metric(
        "dropped_messages_total",
        "counter",
        "Drops by reason: subscribers cut as slow consumers, messages dropped from full HTTP client \
         queues (queue_overflow) and from full in-process queues (local_queue).",
        &drops,
    );
    let disconnects: Vec<(String, u64)> =
        figures.disconnects.iter().map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n)).collect();
    metric("disconnects_total", "counter", "Disconnects the broker sent, by reason.", &disconnects);
    metric("store_writes_total", "counter", "Writes handed to the store.", &one(figures.store_writes));
    metric(
        "store_committed_writes_total",
        "counter",
        "Writes the store made durable.",
        &one(figures.store_committed_writes),
    );
    metric(
        "store_records_written_total",
        "counter",
        "Records written by store commits.",
        &one(figures.store_records_written),
    );
    metric("store_commits_total", "counter", "Store transactions committed.", &one(figures.store_commits));
    metric("store_failed_commits_total", "counter", "Store commits that failed.", &one(figures.store_failed_commits));
    metric("store_failures_total", "counter", "Writes answered with a store failure.", &one(figures.store_failures));
    metric("store_pending", "gauge", "Records waiting for the next store commit.", &one(figures.store_pending));
    metric(
        "store_failing",
        "gauge",
        "1 while the store's last commit failed.",
        &one(u64::from(figures.store_error.is_some())),
    );
    let statuses: Vec<(String, u64)> =
        state.statuses.iter().map(|(status, n)| (format!("{{status=\"{status}\"}}"), *n)).collect();
    metric("http_requests_total", "counter", "HTTP requests answered, by status.", &statuses);
    metric("uptime_seconds", "gauge", "Seconds since start.", &one(figures.uptime_secs));
    let commits = &figures.store_commit_seconds;
    let _ = writeln!(
        out,
        "# HELP tinymq_store_commit_seconds How long store commits took.\n# TYPE tinymq_store_commit_seconds histogram"
    );
    let mut cumulative = 0;
    for (bound, n) in DurationHistogram::BOUNDS.iter().zip(commits.buckets) {
        cumulative += n;
        let _ = writeln!(out, "tinymq_store_commit_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "tinymq_store_commit_seconds_bucket{{le=\"+Inf\"}} {}", commits.count);
    let _ = writeln!(out, "tinymq_store_commit_seconds_sum {}", commits.sum_seconds());
    let _ = writeln!(out, "tinymq_store_commit_seconds_count {}", commits.count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::encoding::{decode_value, encode_value};
    use crate::http::request::{HttpLimits, Parsed, parse_head};
    use crate::topic::Filter;
    use std::time::Duration;

    /// A sink as the shell has them: a connection or a Moustique client.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum TestSink {
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

    struct Broker {
        router: Router<TestSink>,
        state: HttpState,
        config: HttpConfig,
        now: Instant,
    }

    impl Broker {
        #[allow(clippy::disallowed_methods)]
        fn new(config: HttpConfig) -> Self {
            let state = HttpState::new(&config, 1_000);
            Broker { router: Router::new(), state, config, now: Instant::now() }
        }

        /// Serves one raw request.
        fn request(&mut self, raw: &str) -> HttpEffects<TestSink> {
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
        fn request_as(&mut self, raw: &str, caller: Result<Identity, AuthError>) -> HttpEffects<TestSink> {
            let Ok(Parsed::Complete { head, head_len }) = parse_head(raw.as_bytes(), &HttpLimits::default()) else {
                panic!("not a whole request: {raw}")
            };
            let request = parse(&head, &raw.as_bytes()[head_len..], &self.config).expect("a valid call");
            let context = Context { now: self.now, unix_time: 2_000, ip: None, encoding: Encoding::Current };
            serve(
                &mut self.router,
                &mut self.state,
                &self.config,
                request.call,
                caller,
                context,
                TestSink::Conn("stream"),
                TestSink::Http,
                Figures::default,
            )
        }

        /// A plain-API GET as `caller`: status and body.
        fn get_as(&mut self, target: &str, caller: &Result<Identity, AuthError>) -> (u16, String) {
            let effects = self.request_as(&format!("GET {target} HTTP/1.1\r\n\r\n"), caller.clone());
            match effects.reply {
                Reply::Response(response) => (response.status, String::from_utf8_lossy(&response.body).into()),
                other => (other.status(), String::new()),
            }
        }

        /// A Moustique call with encoded parameters; the response body
        /// decoded.
        fn moustique(&mut self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
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
            let effects =
                self.request(&format!("POST /{path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
            let Reply::Response(response) = effects.reply else { panic!("not a plain response") };
            let text = String::from_utf8(decode_value(&response.body, Encoding::Current)).unwrap();
            (response.status, text)
        }
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn a_post_reaches_pickup_under_every_matching_filter_and_other_sinks() {
        let mut broker = Broker::new(HttpConfig::default());
        assert_eq!(broker.moustique("SUBSCRIBE", &[("topic", "/s/+/t"), ("client", "c")]).0, 200);
        assert_eq!(broker.moustique("SUBSCRIBE", &[("topic", "/s/#"), ("client", "c")]).0, 200);
        let binary = broker.router.add_subscriber(NamespaceId::PUBLIC, TestSink::Conn("binary"));
        broker.router.subscribe(binary, Filter::new("/s/#", &TopicLimits::default()).unwrap());

        let post = broker.request(&{
            let body = "topic=/s/a/t&message=23.1&from=app";
            format!("POST /POST HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        });
        assert_eq!(post.reply.status(), 200);
        assert_eq!(post.receivers, [TestSink::Conn("binary")], "the HTTP client is queued, not returned");
        assert_eq!(post.queued, 1);
        assert_eq!(post.delivery.unwrap().message().from.as_ref(), "app");
        assert!(post.stored.is_some(), "a POST stores the value");

        let (status, body) = broker.moustique("PICKUP", &[("client", "c")]);
        let picked = json(&body);
        assert_eq!(status, 200);
        assert_eq!(picked["/s/+/t"][0]["message"], "23.1");
        assert_eq!(picked["/s/#"][0]["topic"], "/s/a/t");
        assert_eq!(json(&broker.moustique("PICKUP", &[("client", "c")]).1), json("{}"));
        assert_eq!(json(&broker.moustique("GETVAL", &[("topic", "/s/a/t")]).1)["from"], "app");
    }

    #[test]
    fn moustique_documents_have_moustiques_shapes() {
        let mut broker = Broker::new(HttpConfig::default());
        for client in ["c1", "c2"] {
            assert_eq!(broker.moustique("SUBSCRIBE", &[("topic", "/s/#"), ("client", client)]).0, 200);
        }
        broker.moustique("POST", &[("topic", "/s/a"), ("message", "1"), ("from", "app")]);
        broker.moustique("POST", &[("topic", "/s/b"), ("message", "2"), ("from", "app")]);
        let picked = json(&broker.moustique("PICKUP", &[("client", "c1")]).1);
        assert_eq!(picked["/s/#"][0]["subscribers"], json!({"c1": true, "c2": true}), "{picked}");
        assert_eq!(picked["/s/#"][1]["message"], "2");
        let value = json(&broker.moustique("GETVAL", &[("topic", "/s/a")]).1);
        assert_eq!(value["subscribers"], json!({}), "a stored value was queued for no one");

        let posters = json(&broker.moustique("POSTERS", &[]).1);
        assert_eq!(posters.as_array().map(Vec::len), Some(1), "{posters}");
        let app = &posters[0];
        assert_eq!(
            (&app["Name"], &app["MessageCount"], &app["LatestPostTime"]),
            (&json!("app"), &json!(2), &json!(2_000))
        );
        assert_eq!(app["latest_post"]["topic"], "/s/b");
        assert_eq!(app["latest_posts_by_topic"]["/s/a"]["message"], "1");
        assert_eq!(app["FirstSeenNiceDatetime"], nice_datetime(2_000));

        let clients = json(&broker.moustique("CLIENTS", &[]).1);
        for key in [
            "Name",
            "FirstSeen",
            "FirstSeenNiceDatetime",
            "LatestPickup",
            "LatestPickupNiceDatetime",
            "LatestSystemPickup",
            "RequestCounter",
            "IP",
        ] {
            assert!(clients[0].get(key).is_some(), "{key} in {clients}");
        }
        let stats = json(&broker.moustique("STATS", &[]).1);
        assert_eq!(stats["memory_usage"], "N/A", "the shell told no figure");
        assert!(stats["average_request_time"].is_f64() && stats["goroutines"].is_u64(), "{stats}");

        let log = json(&broker.moustique("LOG", &[]).1);
        let lines: Vec<&str> = log["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert!(lines.contains(&"1970-01-01 00:33:20 - /POST /s/a from app 200"), "{log}");
        assert!(lines.iter().any(|l| l.ends_with("/SUBSCRIBE /s/# by c2 200")), "{log}");
        assert_eq!(log["total"], lines.len(), "nine calls before; LOG is logged once answered");
    }

    #[test]
    fn crooks_and_peer_hosts_say_who_when_and_why() {
        let mut broker = Broker::new(HttpConfig::default());
        let now = broker.now;
        let peer = PeerReport {
            peer: "192.0.2.9".into(),
            faults: 21,
            last_fault: crate::auth::Fault::WrongCredentials,
            first: now - Duration::from_secs(60),
            last: now - Duration::from_secs(1),
            throttled_since: Some(now - Duration::from_secs(2)),
            retry_after: Duration::from_millis(2500),
        };
        let figures = || Figures { peers: vec![peer.clone()], ..Figures::default() };
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let context = Context { now, unix_time: 2_000, ip: Some(ip), encoding: Encoding::Legacy };
        let serve_call = |broker: &mut Broker, call: Call| {
            let effects = serve(
                &mut broker.router,
                &mut broker.state,
                &broker.config,
                call,
                Ok(Identity::Anonymous),
                context,
                TestSink::Conn("x"),
                TestSink::Http,
                figures,
            );
            let Reply::Response(response) = effects.reply else { panic!("not a response") };
            json(&String::from_utf8(decode_value(&response.body, Encoding::Legacy)).unwrap())
        };
        let crooks = serve_call(&mut broker, Call::Crooks);
        assert_eq!(
            crooks,
            json!([{"IP": "192.0.2.9", "Attempts": 21, "FirstSeen": 1_940, "FirstSeenNiceDatetime": nice_datetime(1_940),
                    "LastSeen": 1_999, "LastSeenNiceDatetime": nice_datetime(1_999), "BannedAt": 1_998,
                    "BannedAtNiceDatetime": nice_datetime(1_998), "IsBanned": true, "Reason": "wrong credentials",
                    "RetryAfterSeconds": 3}]),
            "answered in the legacy order the request came in"
        );
        let hosts = serve_call(&mut broker, Call::PeerHosts);
        assert_eq!(hosts[0]["IP"], "198.51.100.7");
        assert_eq!(hosts[0]["RequestCounter"], 1, "the CROOKS call; this one counts once answered: {hosts}");
    }

    #[test]
    fn an_unknown_client_is_told_to_resubscribe() {
        let mut broker = Broker::new(HttpConfig::default());
        let picked = json(&broker.moustique("PICKUP", &[("client", "stranger")]).1);
        assert_eq!(picked[RESUBSCRIBE_TOPIC][0]["topic"], RESUBSCRIBE_TOPIC);
    }

    #[test]
    fn putval_stores_without_publishing_and_getval_404s_without_a_value() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("SUBSCRIBE", &[("topic", "#"), ("client", "c")]);
        assert_eq!(broker.moustique("GETVAL", &[("topic", "v")]).0, 404);
        let (status, _) = broker.moustique("PUTVAL", &[("valname", "v"), ("val", "42"), ("updated_time", "77")]);
        assert_eq!(status, 200);
        let value = json(&broker.moustique("GETVAL", &[("topic", "v")]).1);
        assert_eq!((value["message"].as_str(), value["updated_time"].as_u64()), (Some("42"), Some(77)));
        assert_eq!(json(&broker.moustique("PICKUP", &[("client", "c")]).1), json("{}"), "PUTVAL publishes nothing");
    }

    #[test]
    fn getvalsbyregex_matches_unanchored_and_refuses_huge_expressions() {
        let mut broker = Broker::new(HttpConfig { regex_size_limit: 10_000, ..Default::default() });
        for topic in ["/a/temperature", "/b/humidity", "/c/temperature"] {
            broker.moustique("PUTVAL", &[("valname", topic), ("val", "1")]);
        }
        let found = json(&broker.moustique("GETVALSBYREGEX", &[("topic", "temp")]).1);
        let mut topics: Vec<&String> = found.as_object().unwrap().keys().collect();
        topics.sort();
        assert_eq!(topics, ["/a/temperature", "/c/temperature"]);
        assert_eq!(broker.moustique("GETVALSBYREGEX", &[("topic", "(")]).0, 400);
        assert_eq!(broker.moustique("GETVALSBYREGEX", &[("topic", "a{1000}{1000}")]).0, 400, "over the size limit");
        assert_eq!(broker.moustique("GETVALSBYREGEX", &[("topic", &"a".repeat(2000))]).0, 400, "too long");
    }

    #[test]
    fn getvalsbyregex_refuses_a_search_too_costly_for_the_stored_topics() {
        // regex::Regex spent 41 s of the event loop on this (release build),
        // falling back to its PikeVM over 4 MB of topics.
        let mut broker = Broker::new(HttpConfig::default());
        for i in 0..1000 {
            let topic = format!("{}/{i}", "a".repeat(3994));
            broker.moustique("PUTVAL", &[("valname", &topic), ("val", "1")]);
        }
        let (status, body) = broker.moustique("GETVALSBYREGEX", &[("topic", "(?:a{1,30}){1,30}b")]);
        assert_eq!((status, body.trim()), (400, "regular expression too costly to search the stored topics"));
        let found = json(&broker.moustique("GETVALSBYREGEX", &[("topic", "/99[0-9]$")]).1);
        assert_eq!(found.as_object().unwrap().len(), 10, "an ordinary search of the same topics");
    }

    #[test]
    fn an_event_stream_subscribes_its_own_sink_and_gets_stored_values_first() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("POST", &[("topic", "x/1"), ("message", "old")]);
        let effects = broker.request("GET /api/v1/events?topic=x/%2B&topic=x/1 HTTP/1.1\r\n\r\n");
        let Reply::Events { subscriber, retained } = effects.reply else { panic!("{:?}", effects.reply) };
        assert_eq!(retained.len(), 1, "one stored value, though two filters match it");
        assert_eq!(broker.router.sink(subscriber), Some(&TestSink::Conn("stream")));
        let publish = broker.request("POST /api/v1/publish?topic=x/2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew");
        assert_eq!(publish.reply.status(), 204);
        assert_eq!(publish.receivers, [TestSink::Conn("stream")]);
        assert!(publish.stored.is_none(), "no retain, no stored value");
    }

    #[test]
    fn handle_alone_refuses_credentials_and_anonymous_can_be_off() {
        let mut broker = Broker::new(HttpConfig::default());
        assert_eq!(broker.moustique("TOPICS", &[("username", "u"), ("password", "p")]).0, 401);
        let mut closed = Broker::new(HttpConfig { allow_anonymous: false, ..Default::default() });
        assert_eq!(closed.moustique("TOPICS", &[]).0, 401);
        assert_eq!(closed.moustique("VERSION", &[]).0, 200, "VERSION is open to anyone");
        assert_eq!(closed.request("GET /api/v1/health HTTP/1.1\r\n\r\n").reply.status(), 200, "health stays open");
    }

    fn user(name: &str, admin: bool) -> Result<Identity, AuthError> {
        Ok(Identity::User { name: name.into(), admin })
    }

    #[test]
    fn each_user_sees_only_its_own_namespace() {
        let mut broker = Broker::new(HttpConfig::default());
        let (alice, bob, anonymous) = (user("alice", false), user("bob", false), Ok(Identity::Anonymous));
        for (caller, payload) in [(&alice, "a"), (&bob, "b"), (&anonymous, "p")] {
            let raw = format!("POST /api/v1/publish?topic=t&retain=1 HTTP/1.1\r\nContent-Length: 1\r\n\r\n{payload}");
            assert_eq!(broker.request_as(&raw, caller.clone()).reply.status(), 204);
        }
        for (caller, payload) in [(&alice, "a"), (&bob, "b"), (&anonymous, "p")] {
            let (status, body) = broker.get_as("/api/v1/value?topic=t", caller);
            assert_eq!(status, 200);
            assert_eq!(json(&body)["message"], payload, "{caller:?} reads its own value");
        }
        // A stream of alice's gets alice's publishes only.
        let stream = broker.request_as("GET /api/v1/events?topic=%23 HTTP/1.1\r\n\r\n", alice.clone());
        let Reply::Events { retained, .. } = stream.reply else { panic!("a stream") };
        assert_eq!(retained.iter().map(|d| &*d.message().payload).collect::<Vec<_>>(), [b"a"]);
        let raw = "POST /api/v1/publish?topic=t HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
        assert!(broker.request_as(raw, bob.clone()).receivers.is_empty(), "bob's publish reaches no stream of alice's");
        assert_eq!(broker.request_as(raw, alice.clone()).receivers, [TestSink::Conn("stream")]);
        let namespace = broker.router.namespace("alice");
        assert_eq!(broker.router.value(namespace, "t").map(|d| &*d.message().payload), Some(&b"a"[..]));
    }

    #[test]
    fn refused_credentials_get_their_status_whatever_is_asked() {
        let mut broker = Broker::new(HttpConfig::default());
        for (error, status) in [(AuthError::WrongCredentials, 401), (AuthError::Busy, 503)] {
            for target in ["/api/v1/value?topic=t", "/api/v1/stats", "/metrics"] {
                assert_eq!(broker.get_as(target, &Err(error)).0, status, "{target}");
            }
        }
        assert_eq!(broker.get_as("/api/v1/health", &Err(AuthError::WrongCredentials)).0, 200, "health is open");
    }

    #[test]
    fn without_anonymous_access_statistics_need_an_admin() {
        let mut broker = Broker::new(HttpConfig { allow_anonymous: false, ..Default::default() });
        let (admin, plain, anonymous) = (user("root", true), user("alice", false), Ok(Identity::Anonymous));
        let statistics = ["/api/v1/stats", "/api/v1/clients", "/metrics", "/STATS", "/CLIENTS", "/TOPICS", "/POSTERS"];
        for target in statistics.into_iter().chain(["/STATUS", "/"]) {
            assert_eq!(broker.get_as(target, &admin).0, 200, "{target} as admin");
            assert_eq!(broker.get_as(target, &plain).0, 403, "{target} as a plain user");
            assert_eq!(broker.get_as(target, &anonymous).0, 401, "{target} anonymous");
        }
        let challenged = |broker: &mut Broker, target: &str| {
            let effects = broker.request_as(&format!("GET {target} HTTP/1.1\r\n\r\n"), Ok(Identity::Anonymous));
            matches!(effects.reply, Reply::Response(Response { status: 401, challenge: true, .. }))
        };
        assert!(challenged(&mut broker, "/") && challenged(&mut broker, "/STATUS"), "a browser is asked to log in");
        assert!(!challenged(&mut broker, "/STATS") && !challenged(&mut broker, "/api/v1/stats"), "API clients are not");
        assert_eq!(broker.get_as("/api/v1/value?topic=t", &plain).0, 404, "a plain user is served otherwise");
        assert_eq!(broker.get_as("/VERSION", &anonymous).0, 200, "open, as Moustique has it");
        assert_eq!(broker.get_as("/STATS", &anonymous).0, 401);
        assert_eq!(broker.get_as("/api/v1/health", &anonymous).0, 200);
        for target in ["/ui/app.js", "/ui/app.css", "/ui/icon.svg"] {
            assert_eq!(broker.get_as(target, &anonymous).0, 200, "{target} holds no data: open");
        }

        let mut open = Broker::new(HttpConfig::default());
        for target in ["/api/v1/stats", "/metrics", "/STATS", "/STATUS"] {
            assert_eq!(open.get_as(target, &plain).0, 200, "{target}: open with anonymous access on");
            assert_eq!(open.get_as(target, &anonymous).0, 200, "{target}");
        }
    }

    #[test]
    fn the_status_page_names_only_the_callers_clients() {
        let mut broker = Broker::new(HttpConfig::default());
        let subscribe = |client: &str| {
            let body = format!("topic=a&client={client}");
            format!("POST /SUBSCRIBE HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        };
        assert_eq!(broker.request_as(&subscribe("alices-client"), user("alice", false)).reply.status(), 200);
        assert_eq!(broker.request_as(&subscribe("public-client"), Ok(Identity::Anonymous)).reply.status(), 200);
        let (_, page) = broker.get_as("/STATUS", &Ok(Identity::Anonymous));
        assert!(page.contains("public-client") && !page.contains("alices-client"), "{page}");
        let (_, page) = broker.get_as("/STATUS", &user("alice", false));
        assert!(page.contains("alices-client") && !page.contains("public-client"), "{page}");
    }

    #[test]
    fn stats_keep_moustique_keys_and_count_requests() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("GETVAL", &[("topic", "nothing")]);
        let stats = json(&broker.moustique("STATS", &[]).1);
        for path in [
            "/started",
            "/subscription_count",
            "/values",
            "/clients/subscribers",
            "/clients/posters",
            "/requests/total",
            "/requests/per_second",
            "/requests/pickups/per_second_last_minute",
            "/requests/processed/total",
            "/requests/getvals/total",
        ] {
            assert!(stats.pointer(path).is_some(), "{path} in {stats}");
        }
        assert_eq!(stats.pointer("/requests/getvals/total"), Some(&json!(1)));
        assert_eq!(broker.state.statuses().get(&404), Some(&1));
    }
    fn subscribe_record(effects: &HttpEffects<TestSink>) -> Option<(String, u64, Vec<String>)> {
        match &effects.client_record {
            Some(StoreOp::PutHttpClient { client, first_seen, filters, .. }) => {
                Some((client.clone(), *first_seen, filters.clone()))
            }
            None => None,
            Some(other) => panic!("not a client record: {other:?}"),
        }
    }

    fn subscribe_request(filter: &str, client: &str) -> String {
        let encode = |v: &str| {
            encode_value(v.as_bytes(), Encoding::Current).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
        };
        let body = format!("topic={}&client={}", encode(filter), encode(client));
        format!("POST /SUBSCRIBE HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn subscribe_writes_the_client_record_only_when_it_changes() {
        let mut broker = Broker::new(HttpConfig::default());
        let first = broker.request(&subscribe_request("a/+", "c"));
        assert_eq!(subscribe_record(&first), Some(("c".into(), 2_000, vec!["a/+".into()])), "a new client");
        let second = broker.request(&subscribe_request("b/#", "c"));
        assert_eq!(subscribe_record(&second), Some(("c".into(), 2_000, vec!["a/+".into(), "b/#".into()])));
        let again = broker.request(&subscribe_request("a/+", "c"));
        assert_eq!((again.reply.status(), subscribe_record(&again)), (200, None), "a filter it holds: no write");
        let client = encode_value(b"c", Encoding::Current).replace('=', "%3D");
        let pickup = broker.request(&format!("GET /PICKUP?client={client} HTTP/1.1\r\n\r\n"));
        assert!(pickup.client_record.is_none() && pickup.stored.is_none(), "PICKUP writes nothing");
    }

    #[test]
    fn expired_clients_leave_the_router_and_the_store() {
        let limits = HttpClientLimits { timeout: std::time::Duration::from_secs(10), ..Default::default() };
        let mut broker = Broker::new(HttpConfig { client_limits: limits, ..Default::default() });
        let _ = broker.request(&subscribe_request("x", "idle"));
        assert_eq!(broker.router.subscription_count(), 1);
        let later = broker.now + std::time::Duration::from_secs(9);
        assert!(expire_clients(&mut broker.router, &mut broker.state, later).is_empty());
        let gone = expire_clients(&mut broker.router, &mut broker.state, later + std::time::Duration::from_secs(1));
        assert_eq!(gone, [StoreOp::DeleteHttpClient { namespace: String::new(), client: "idle".into() }]);
        assert_eq!((broker.router.subscription_count(), broker.state.clients.len()), (0, 0));
    }

    #[test]
    fn a_restored_client_gets_what_is_published_after_the_start() {
        let limits = HttpClientLimits { timeout: std::time::Duration::from_secs(10), ..Default::default() };
        let mut broker = Broker::new(HttpConfig { client_limits: limits, ..Default::default() });
        let filter = |text: &str| Filter::new(text, &TopicLimits::default()).unwrap();
        let stored = StoredHttpClient {
            namespace: String::new(),
            client: "back".into(),
            first_seen: 500,
            filters: vec![filter("/s/+"), filter("/s/#"), filter("/s/+")],
        };
        let start = broker.now;
        let id = restore_client(&mut broker.router, &mut broker.state, stored.clone(), start, 1_500, TestSink::Http);
        assert!(id.is_some());
        assert_eq!(broker.router.subscription_count(), 2, "a repeated filter subscribes once");
        assert!(
            restore_client(&mut broker.router, &mut broker.state, stored, start, 1_500, TestSink::Http).is_none(),
            "a name is restored once"
        );
        broker.moustique("POST", &[("topic", "/s/t"), ("message", "after")]);
        let picked = json(&broker.moustique("PICKUP", &[("client", "back")]).1);
        assert_eq!(
            (picked["/s/+"][0]["message"].as_str(), picked["/s/#"][0]["topic"].as_str()),
            (Some("after"), Some("/s/t"))
        );
        let clients = json(&broker.moustique("CLIENTS", &[]).1);
        assert_eq!(clients[0]["FirstSeen"], 500, "first seen as stored");
        // The timeout counts from the start, not from before the restart.
        let mut quiet = Broker::new(HttpConfig { client_limits: limits, ..Default::default() });
        let stored = StoredHttpClient { namespace: "alice".into(), client: "q".into(), first_seen: 1, filters: vec![] };
        restore_client(&mut quiet.router, &mut quiet.state, stored, start, 1_500, TestSink::Http).unwrap();
        let nine = start + std::time::Duration::from_secs(9);
        assert!(expire_clients(&mut quiet.router, &mut quiet.state, nine).is_empty());
        let ten = start + std::time::Duration::from_secs(10);
        assert_eq!(
            expire_clients(&mut quiet.router, &mut quiet.state, ten),
            [StoreOp::DeleteHttpClient { namespace: "alice".into(), client: "q".into() }]
        );
    }

    #[test]
    fn the_web_ui_is_the_page_at_root_and_clients_come_as_plain_json() {
        let mut broker = Broker::new(HttpConfig::default());
        let Reply::Response(page) = broker.request("GET / HTTP/1.1\r\n\r\n").reply else { panic!("a response") };
        assert_eq!((page.status, page.content_type, page.headers), (200, response::HTML, UiFile::Page.headers()));
        assert!(String::from_utf8_lossy(&page.body).contains("src=\"/ui/app.js\""));
        let Reply::Response(status) = broker.request("GET /STATUS HTTP/1.1\r\n\r\n").reply else { panic!() };
        assert!(String::from_utf8_lossy(&status.body).contains("<h1>tinymq"), "/STATUS stays the status page");

        broker.moustique("SUBSCRIBE", &[("topic", "/s/#"), ("client", "dashboard")]);
        let session = broker.router.add_subscriber(NamespaceId::PUBLIC, TestSink::Conn("binary"));
        let _ = broker.router.claim_client_id(session, "sensor-1");
        let (status, body) = broker.get_as("/api/v1/clients", &Ok(Identity::Anonymous));
        let clients = json(&body);
        assert_eq!(status, 200);
        assert_eq!(clients, json(&broker.moustique("CLIENTS", &[]).1), "CLIENTS' document, not encoded");
        assert_eq!(
            (clients[0]["Name"].as_str(), clients[0]["Transport"].as_str(), &clients[0]["Subscriptions"]),
            (Some("dashboard"), Some("http"), &json(r#"["/s/#"]"#))
        );
        assert_eq!((clients[1]["Name"].as_str(), clients[1]["Transport"].as_str()), (Some("sensor-1"), Some("tcp")));
    }

    #[test]
    fn a_full_registry_restores_no_more() {
        let limits = HttpClientLimits { max_clients: 1, ..Default::default() };
        let mut broker = Broker::new(HttpConfig { client_limits: limits, ..Default::default() });
        let stored = |name: &str| StoredHttpClient {
            namespace: String::new(),
            client: name.into(),
            first_seen: 1,
            filters: vec![],
        };
        let now = broker.now;
        assert!(restore_client(&mut broker.router, &mut broker.state, stored("a"), now, 1, TestSink::Http).is_some());
        assert!(restore_client(&mut broker.router, &mut broker.state, stored("b"), now, 1, TestSink::Http).is_none());
        assert_eq!((broker.state.clients.len(), broker.router.subscriber_count()), (1, 1));
    }

    #[test]
    fn store_and_access_figures_show_in_stats_and_metrics() {
        let broker = Broker::new(HttpConfig::default());
        let figures = Figures {
            store_writes: 10,
            store_committed_writes: 8,
            store_records_written: 3,
            store_commits: 2,
            store_failed_commits: 1,
            store_failures: 2,
            store_pending: 2,
            store_error: Some("disk full".into()),
            refused_peers: 4,
            throttled_requests: 5,
            throttled_peers: 1,
            ..Figures::default()
        };
        let stats = stats_document(&broker.router, &broker.state, &figures, 2_000);
        for (key, value) in [
            ("store_writes", json!(10)),
            ("store_committed_writes", json!(8)),
            ("store_records_written", json!(3)),
            ("store_commits", json!(2)),
            ("store_failed_commits", json!(1)),
            ("store_failures", json!(2)),
            ("store_pending", json!(2)),
            ("store_error", json!("disk full")),
            ("refused_peers", json!(4)),
            ("throttled_requests", json!(5)),
            ("throttled_peers", json!(1)),
        ] {
            assert_eq!(stats[key], value, "{key} in {stats}");
        }
        let metrics = metrics_text(&broker.router, &broker.state, &figures);
        for line in [
            "tinymq_store_writes_total 10",
            "tinymq_store_committed_writes_total 8",
            "tinymq_store_records_written_total 3",
            "tinymq_store_commits_total 2",
            "tinymq_store_failed_commits_total 1",
            "tinymq_store_failures_total 2",
            "tinymq_store_pending 2",
            "tinymq_store_failing 1",
            "tinymq_refused_peers_total 4",
            "tinymq_throttled_requests_total 5",
            "tinymq_throttled_peers 1",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line:?} in\n{metrics}");
        }
        for kind in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = kind.split_once(' ').unwrap();
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
        }
        let healthy = Figures::default();
        assert_eq!(stats_document(&broker.router, &broker.state, &healthy, 2_000)["store_error"], Value::Null);
        assert!(metrics_text(&broker.router, &broker.state, &healthy).lines().any(|l| l == "tinymq_store_failing 0"));
    }

    /// Figures with something in every labelled family.
    fn busy_figures() -> Figures {
        let mut commits = DurationHistogram::default();
        for micros in [100, 700, 700, 3_000, 2_000_000] {
            commits.record(std::time::Duration::from_micros(micros));
        }
        Figures {
            connections: vec![("tcp", 2), ("unix", 0), ("http", 1)],
            messages_out: 7,
            slow_consumer_drops: 1,
            local_queue_drops: 2,
            disconnects: vec![("protocol_error", 3), ("slow_consumer", 1)],
            store_commit_seconds: commits,
            ..Figures::default()
        }
    }

    /// What promtool would check, for the parts tinymq uses: every sample
    /// belongs to a family with HELP and TYPE, names and types follow the
    /// conventions, histogram buckets are cumulative and end at +Inf.
    #[test]
    fn metrics_text_is_well_formed_prometheus() {
        let mut broker = Broker::new(HttpConfig::default());
        let _ = broker.request("GET /nowhere HTTP/1.1\r\n\r\n");
        let _ = broker.request("GET /api/v1/health HTTP/1.1\r\n\r\n");
        let text = metrics_text(&broker.router, &broker.state, &busy_figures());
        let valid_name = |n: &str| n.starts_with("tinymq_") && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let mut help = HashSet::new();
        let mut kinds = std::collections::HashMap::new();
        let mut buckets: Vec<(String, f64)> = Vec::new();
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').expect("HELP has a text");
                assert!(valid_name(name) && !text.is_empty(), "{line}");
                assert!(help.insert(name.to_owned()), "one HELP for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(help.contains(name), "HELP before TYPE for {name}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
                assert!(kinds.insert(name.to_owned(), kind.to_owned()).is_none(), "one TYPE for {name}");
                continue;
            }
            samples += 1;
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("number in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, Some(labels.strip_suffix('}').expect("labels close"))),
                None => (series, None),
            };
            assert!(valid_name(name), "{line}");
            let family = kinds.keys().find(|f| {
                *f == name
                    || (kinds[*f] == "histogram"
                        && ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(f.as_str())))
            });
            let family = family.unwrap_or_else(|| panic!("{line} has no HELP and TYPE"));
            for label in labels.into_iter().flat_map(|l| l.split(',')) {
                let (key, quoted) = label.split_once('=').expect("label=value");
                assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{line}");
                assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
            }
            if name.ends_with("_bucket") {
                let le = labels.and_then(|l| l.strip_prefix("le=\"")).and_then(|l| l.strip_suffix('"')).unwrap();
                buckets.push((le.to_owned(), value));
            } else if name.ends_with("_count") && kinds[family] == "histogram" {
                let bounds: Vec<f64> = buckets.iter().map(|(le, _)| le.parse().unwrap_or(f64::INFINITY)).collect();
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend: {buckets:?}");
                assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
                assert_eq!(buckets.last().map(|(le, n)| (le.as_str(), *n)), Some(("+Inf", value)), "{family}");
                buckets.clear();
            }
        }
        assert!(samples > 20);
        for line in [
            "tinymq_connections{transport=\"tcp\"} 2",
            "tinymq_messages_out_total 7",
            "tinymq_dropped_messages_total{reason=\"slow_consumer\"} 1",
            "tinymq_dropped_messages_total{reason=\"local_queue\"} 2",
            "tinymq_dropped_messages_total{reason=\"queue_overflow\"} 0",
            "tinymq_disconnects_total{reason=\"protocol_error\"} 3",
            "tinymq_http_requests_total{status=\"404\"} 1",
            "tinymq_store_commit_seconds_bucket{le=\"0.0005\"} 1",
            "tinymq_store_commit_seconds_bucket{le=\"0.001\"} 3",
            "tinymq_store_commit_seconds_bucket{le=\"1\"} 4",
            "tinymq_store_commit_seconds_bucket{le=\"+Inf\"} 5",
            "tinymq_store_commit_seconds_count 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let sum = text.lines().find_map(|l| l.strip_prefix("tinymq_store_commit_seconds_sum ")).unwrap();
        assert!((sum.parse::<f64>().unwrap() - 2.0045).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn stats_keep_moustiques_keys_and_add_the_metrics_figures() {
        let mut broker = Broker::new(HttpConfig::default());
        let _ = broker.request("GET /nowhere HTTP/1.1\r\n\r\n");
        let stats = stats_document(&broker.router, &broker.state, &busy_figures(), 2_000);
        for path in ["/started", "/subscription_count", "/values", "/clients/subscribers", "/clients/posters"] {
            assert!(stats.pointer(path).is_some(), "{path} in {stats}");
        }
        for key in ["total", "per_second", "per_second_last_minute"] {
            for group in ["pickups", "processed", "getvals"] {
                assert!(stats["requests"][group].get(key).is_some(), "requests.{group}.{key}");
            }
        }
        assert_eq!(stats["deliveries"], 7);
        assert_eq!(stats["dropped"], json!({"slow_consumer": 1, "queue_overflow": 0, "local_queue": 2}));
        assert_eq!(stats["disconnects"], json!({"protocol_error": 3, "slow_consumer": 1}));
        assert_eq!(stats["store_commit_seconds"]["count"], 5);
        assert_eq!(stats["http_responses"]["404"], 1);
    }

    #[test]
    fn dollar_topics_are_left_out_of_lists_and_refused_to_publishers() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("POST", &[("topic", "/a"), ("message", "1"), ("from", "t")]);
        let sys = TopicName::new("$SYS/broker/uptime", &TopicLimits::default()).unwrap();
        let delivery = Delivery::new(Message {
            topic: sys.as_str().into(),
            payload: b"5"[..].into(),
            from: "$SYS".into(),
            updated_time: 1,
            ip: None,
        });
        let _ = broker.router.publish(NamespaceId::PUBLIC, sys, &delivery, true, &mut Vec::new());
        assert_eq!(broker.router.value_count(), 1, "STATS' values leave out the broker's own");
        let topics = json(&broker.moustique("TOPICS", &[]).1);
        assert_eq!(topics, json!(["/a"]));
        let found = json(&broker.moustique("GETVALSBYREGEX", &[("topic", ".*")]).1);
        assert_eq!(found.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["/a".to_owned()]));
        let (status, _) = broker.moustique("POST", &[("topic", "$SYS/broker/uptime"), ("message", "0"), ("from", "t")]);
        assert_eq!(status, 400);
    }

    /// Every document a fixed broker serves, as `(call, body)`: the
    /// Moustique ones decoded, the status page and `/metrics` as JSON
    /// strings, so each fits on a line of `testdata/documents.golden`.
    fn served_documents() -> Vec<(&'static str, String)> {
        let mut broker = Broker::new(HttpConfig::default());
        let now = broker.now;
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let figures = || Figures {
            connections_total: 9,
            refused_connections: 1,
            uptime_secs: 1_000,
            threads: Some(7),
            rss_bytes: Some(12_345_678),
            store_error: Some("disk full".into()),
            peers: vec![PeerReport {
                peer: "192.0.2.9".into(),
                faults: 21,
                last_fault: crate::auth::Fault::WrongCredentials,
                first: now - Duration::from_secs(60),
                last: now - Duration::from_secs(1),
                throttled_since: Some(now - Duration::from_secs(2)),
                retry_after: Duration::from_millis(2500),
            }],
            ..busy_figures()
        };
        let limits = TopicLimits::default();
        let filter = |text: &str| Filter::new(text, &limits).unwrap();
        let mut serve_call = |broker: &mut Broker, call: Call, unix_time: u64| {
            let context = Context { now, unix_time, ip: Some(ip), encoding: Encoding::Current };
            let effects = serve(
                &mut broker.router,
                &mut broker.state,
                &broker.config,
                call,
                Ok(Identity::Anonymous),
                context,
                TestSink::Conn("stream"),
                TestSink::Http,
                figures,
            );
            match effects.reply {
                Reply::Response(response) if response.content_type == response::TEXT => {
                    String::from_utf8(decode_value(&response.body, Encoding::Current)).unwrap()
                }
                Reply::Response(response) if response.content_type == response::JSON => {
                    String::from_utf8(response.body.to_vec()).unwrap()
                }
                Reply::Response(response) => serde_json::to_string(&String::from_utf8_lossy(&response.body)).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        for (client, topic) in [("c1", "/s/#"), ("c1", "/s/+/t"), ("c2", "/s/#")] {
            serve_call(&mut broker, Call::Subscribe { filter: filter(topic), client: client.into() }, 1_990);
        }
        let session = broker.router.add_subscriber(NamespaceId::PUBLIC, TestSink::Conn("binary"));
        let _ = broker.router.claim_client_id(session, "sensor-1");
        let post = |topic: &str, message: &str, from: Option<&str>, updated_time: Option<u64>| Call::Post {
            topic: topic.into(),
            message: message.as_bytes().to_vec(),
            from: from.map(Into::into),
            updated_time,
        };
        serve_call(&mut broker, post("/s/a/t", "23.1", Some("app"), None), 1_995);
        serve_call(&mut broker, post("/s/b", "2", Some("app"), Some(1_500)), 1_996);
        serve_call(&mut broker, post("/s/c", "x", None, None), 1_997);
        serve_call(&mut broker, post("/s/a/t", "23.2", Some("other"), None), 1_998);
        let put = Call::PutVal { name: "v".into(), value: b"42".to_vec(), from: None, updated_time: Some(77) };
        serve_call(&mut broker, put, 1_999);
        broker.state.record_serve_time(Duration::from_micros(1_500));
        broker.state.record_serve_time(Duration::from_micros(500));
        let calls = [
            ("PICKUP", Call::Pickup { client: "c1".into() }),
            ("PICKUP empty", Call::Pickup { client: "c1".into() }),
            ("PICKUP unknown", Call::Pickup { client: "stranger".into() }),
            ("GETVAL", Call::GetVal { topic: "/s/a/t".into() }),
            ("GETVALSBYREGEX", Call::GetValsByRegex { pattern: "/s/".into() }),
            ("VERSION", Call::Version),
            ("TOPICS", Call::Topics),
            ("POSTERS", Call::Posters),
            ("CROOKS", Call::Crooks),
            ("PEERHOSTS", Call::PeerHosts),
            ("LOG", Call::Log),
            ("CLIENTS", Call::Clients { plain: false }),
            ("/api/v1/clients", Call::Clients { plain: true }),
            ("STATS", Call::Stats { plain: false }),
            ("/api/v1/stats", Call::Stats { plain: true }),
            ("/api/v1/value", Call::Value { topic: "v".into() }),
            ("/api/v1/values", Call::Values { filter: filter("/s/#") }),
            ("/STATUS", Call::Status),
            ("/metrics", Call::Metrics),
        ];
        calls.into_iter().map(|(name, call)| (name, serve_call(&mut broker, call, 2_000))).collect()
    }

    /// The documents keep their bytes: key names, value types, nesting and
    /// key order. The version is left out, to survive a release.
    #[test]
    fn documents_are_served_as_recorded() {
        let version = env!("CARGO_PKG_VERSION");
        let golden = include_str!("testdata/documents.golden").replace("{VERSION}", version);
        let mut expected = golden.lines();
        for (name, body) in served_documents() {
            let line = expected.next().unwrap_or_else(|| panic!("{name} is not recorded"));
            let (recorded_name, recorded) = line.split_once('\t').unwrap();
            assert_eq!(recorded_name, name);
            assert_eq!(json(&body), json(recorded), "{name}: the same value");
            assert_eq!(body, recorded, "{name}: the same bytes");
        }
        assert_eq!(expected.next(), None, "every recorded document is served");
    }
}
