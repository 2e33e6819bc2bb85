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
//!
//! | module | owns |
//! |---|---|
//! | this one | the entry points ([`handle`], [`parse`], [`serve`], ...), who may call what, and `publish` |
//! | `state` | [`HttpState`] and [`HttpConfig`]: clients, rates, posters, peer hosts, the request log |
//! | `calls` | one function per call, and `execute` dispatching to them |
//! | `documents` | the JSON documents: STATS, CLIENTS, POSTERS, CROOKS, PEERHOSTS, LOG |
//! | `status_page` | the HTML `/STATUS` page |
//! | `prometheus` | the `/metrics` text |

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::call::{ApiError, ApiRequest, Call, parse_call};
use super::clients::HttpClientId;
use super::encoding::Encoding;
use super::request::RequestHead;
use super::response::Response;
use crate::auth::{AuthError, Identity};
use crate::message::Message;
use crate::metrics::Figures;
use crate::router::{Delivery, NamespaceId, Router, SubscriberId};
use crate::store::{StoreOp, StoredHttpClient};
use crate::topic::{TopicLimits, TopicName};

mod calls;
mod documents;
mod prometheus;
mod state;
mod status_page;
#[cfg(test)]
mod test_broker;

pub use state::{HttpConfig, HttpState};

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
    /// The durable session this sink is the router's sink of, if it is
    /// one (see [`crate::broker::Broker::handle_session_connect`]).
    fn session(&self) -> Option<crate::durable::SessionId> {
        None
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
    /// Messages a PICKUP took from its client's queue (their store delete
    /// is among the broker's store writes).
    pub picked_up: usize,
    /// The caller's address had no budget left for a bad request: the
    /// reply is a 429, and the connection should close after it.
    pub throttled: bool,
}

impl<S> HttpEffects<S> {
    pub(super) fn reply(reply: Reply) -> Self {
        HttpEffects {
            reply,
            delivery: None,
            receivers: Vec::new(),
            queued: 0,
            stored: None,
            client_record: None,
            picked_up: 0,
            throttled: false,
        }
    }

    pub(super) fn respond(response: Response) -> Self {
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
            let effects =
                calls::execute(router, state, config, call, namespace, context, own_sink, client_sink, figures);
            if let Some(text) = logged {
                state.record_request(namespace, text, effects.reply.status(), context.unix_time, context.ip);
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

pub(super) fn stamp(
    topic: String,
    payload: Vec<u8>,
    from: Option<String>,
    time: Option<u64>,
    context: Context,
) -> Message {
    Message {
        topic: topic.into(),
        payload: payload.into(),
        from: from.map_or_else(|| Message::UNKNOWN_SENDER.into(), Into::into),
        updated_time: time.unwrap_or(context.unix_time),
        ip: context.ip,
    }
}

/// Publishes `message` by the one publish rule
/// ([`crate::publish`]: with `retain` it
/// becomes the stored value, or an empty payload deletes it; the matching
/// Moustique clients' queues get it here), and returns the other
/// receivers.
pub(super) fn publish<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    namespace: NamespaceId,
    message: Message,
    retain: bool,
) -> HttpEffects<S> {
    let delivery = Delivery::new(message);
    let Ok(topic) = TopicName::new(&delivery.message().topic, &TopicLimits::UNBOUNDED) else {
        return HttpEffects::respond(Response::text(400, "bad topic"));
    };
    let published = crate::publish::publish(router, &mut state.clients, namespace, topic, &delivery, retain);
    let stored = published.store.is_some().then(|| (router.namespace_name(namespace).clone(), delivery.clone()));
    state.record_poster(namespace, &delivery, config.max_posters);
    HttpEffects {
        reply: Reply::Response(Response::ok()),
        delivery: Some(delivery),
        receivers: published.receivers.into_vec(),
        queued: published.queued,
        stored,
        client_record: None,
        picked_up: 0,
        throttled: false,
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
/// timeout counting from `now` (see [`HttpClients::restore`](super::clients::HttpClients::restore)). `None` when
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

#[cfg(test)]
mod tests {
    use super::test_broker::{Broker, TestSink, json, subscribe_request, user};
    use super::*;
    use crate::http::clients::HttpClientLimits;
    use crate::topic::Filter;

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
    fn handle_alone_refuses_credentials_and_anonymous_can_be_off() {
        let mut broker = Broker::new(HttpConfig::default());
        assert_eq!(broker.moustique("TOPICS", &[("username", "u"), ("password", "p")]).0, 401);
        let mut closed = Broker::new(HttpConfig { allow_anonymous: false, ..Default::default() });
        assert_eq!(closed.moustique("TOPICS", &[]).0, 401);
        assert_eq!(closed.moustique("VERSION", &[]).0, 200, "VERSION is open to anyone");
        assert_eq!(closed.request("GET /api/v1/health HTTP/1.1\r\n\r\n").reply.status(), 200, "health stays open");
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
}
