//! The core `Broker`'s rules that used to live in the event loop, on a
//! virtual clock and with no sockets: peers' budgets of bad requests and
//! throttling, admission, takeover across kinds of client, when an HTTP
//! write is answered (at once, after its commit, or 503), and the `$SYS`
//! figures.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tinymq_core::auth::{AuthError, BudgetConfig, Identity};
use tinymq_core::broker::{
    Broker, BrokerEvent, Charged, HttpInput, Origin, Rules, StoreAcks, WriteAnswer, commit_answer,
};
use tinymq_core::http::encoding::Encoding;
use tinymq_core::http::request::{HttpLimits, Parsed, parse_head};
use tinymq_core::http::response::Response;
use tinymq_core::http::service::{self, Context, HttpConfig, HttpEffects};
use tinymq_core::metrics::Figures;
use tinymq_core::{Filter, Frame, NamespaceId, ReasonCode, Request, Session, SessionConfig, Step, TopicLimits};

mod support;
use support::Sink;

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8));

#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

fn broker(rules: Rules) -> Broker<Sink> {
    Broker::new(rules, 1_700_000_000)
}

/// Three bad requests, then one more per ten seconds.
fn strict() -> Rules {
    Rules { budget: BudgetConfig { burst: 3, refill: Duration::from_secs(10), max_peers: 16 }, ..Rules::default() }
}

/// Serves `raw` from `ip` at `now` as the event loop does: parsed, then
/// handed to the broker with the caller the shell decided on.
fn http(
    broker: &mut Broker<Sink>,
    raw: &str,
    caller: Result<Identity, AuthError>,
    ip: IpAddr,
    now: Instant,
) -> HttpEffects<Sink> {
    let Ok(Parsed::Complete { head, head_len }) = parse_head(raw.as_bytes(), &HttpLimits::default()) else {
        panic!("not a whole request: {raw}")
    };
    let (input, encoding) = match service::parse(&head, &raw.as_bytes()[head_len..], &broker.rules().http) {
        Ok(request) => (HttpInput::Call(request.call, caller), request.encoding),
        Err(error) => (HttpInput::Refused(error), Encoding::Current),
    };
    let context = Context { now, unix_time: 2_000, ip: Some(ip), encoding };
    broker.handle_http(input, context, Sink::Stream("requester"), Sink::Http, Figures::default)
}

fn get(broker: &mut Broker<Sink>, path: &str, ip: IpAddr, now: Instant) -> HttpEffects<Sink> {
    http(broker, &format!("GET {path} HTTP/1.1\r\n\r\n"), Ok(Identity::Anonymous), ip, now)
}

/// A binary session whose Connect (with credentials) was just read.
fn connecting(now: Instant) -> (Session, String) {
    let mut session = Session::new(now, &SessionConfig::default());
    let connect = Frame::connect("dev", b"alice\0wrong").to_vec();
    let Ok(Step::Request { request: Request::Connect { client_id, .. }, .. }) = session.handle_input(now, &connect)
    else {
        panic!("a Connect")
    };
    let client_id = client_id.to_owned();
    (session, client_id)
}

#[test]
fn unknown_paths_spend_a_peers_budget_and_then_it_is_throttled_until_it_earns_one_back() {
    let mut broker = broker(strict());
    let now = start();
    for _ in 0..2 {
        let effects = get(&mut broker, "/no/such/path", PEER, now);
        assert_eq!((effects.reply.status(), effects.throttled), (404, false));
    }
    assert_eq!(broker.poll_event(), None, "one bad request left");
    assert_eq!(get(&mut broker, "/no/such/path", PEER, now).reply.status(), 404);
    assert_eq!(broker.poll_event(), Some(BrokerEvent::PeerThrottled(PEER)), "reported once, as it spends its last");
    assert_eq!(broker.poll_event(), None);
    let effects = get(&mut broker, "/no/such/path", PEER, now);
    assert_eq!((effects.reply.status(), effects.throttled), (429, true), "no budget left: 429, and the door");
    assert!(broker.check_peer(PEER, now).is_err(), "a new connection from it is refused");
    assert!(broker.check_peer(OTHER, now).is_ok(), "another address is not");
    // A good request from the throttled peer is still served.
    assert_eq!(get(&mut broker, "/api/v1/health", PEER, now).reply.status(), 200);
    // One bad request is earned back per refill.
    let later = now + Duration::from_secs(10);
    assert!(broker.check_peer(PEER, later).is_ok());
    assert_eq!(get(&mut broker, "/no/such/path", PEER, later).reply.status(), 404);
    assert_eq!(get(&mut broker, "/no/such/path", PEER, later).reply.status(), 429);
    let mut figures = Figures::default();
    broker.fill_figures(&mut figures, later);
    assert_eq!((figures.throttled_peers, figures.peers.len()), (1, 1));
    assert_eq!(figures.throttled_requests, broker.throttled_requests());
    assert_eq!(broker.throttled_requests(), 3, "two 429s and one refused connection");
}

#[test]
fn a_missing_parameter_costs_nothing_but_wrong_credentials_do() {
    let mut broker = broker(strict());
    let now = start();
    for _ in 0..10 {
        let effects = http(&mut broker, "GET /api/v1/value HTTP/1.1\r\n\r\n", Ok(Identity::Anonymous), PEER, now);
        assert_eq!(effects.reply.status(), 400, "a client's mistake, answered and not charged");
    }
    assert!(broker.check_peer(PEER, now).is_ok());
    let wrong = || Err(AuthError::WrongCredentials);
    for _ in 0..3 {
        assert_eq!(http(&mut broker, "GET /api/v1/stats HTTP/1.1\r\n\r\n", wrong(), PEER, now).reply.status(), 401);
    }
    let effects = http(&mut broker, "GET /api/v1/stats HTTP/1.1\r\n\r\n", wrong(), PEER, now);
    assert_eq!((effects.reply.status(), effects.throttled), (429, true));
    // A binary Connect with wrong credentials from the same peer is
    // refused as throttled, with the time to wait.
    let (mut session, client_id) = connecting(now);
    let origin = Origin { unix_time: 1, ip: Some(PEER) };
    let effects = broker.handle_connect(&mut session, Sink::Conn("c"), &client_id, wrong(), now, origin);
    assert!(effects.connected.is_none() && session.is_closed());
    assert_eq!(session.close_reason(), Some(Some(ReasonCode::NotAuthorized)));
    // Unix-socket peers have no address and no budget.
    assert_eq!(broker.charge(None, now, tinymq_core::auth::Fault::WrongCredentials), Charged::Free);
}

#[test]
fn without_anonymous_access_every_transport_needs_credentials() {
    let rules = Rules { http: HttpConfig { allow_anonymous: false, ..HttpConfig::default() }, ..Rules::default() };
    let mut broker = broker(rules);
    let now = start();
    let (mut session, client_id) = connecting(now);
    let origin = Origin { unix_time: 1, ip: None };
    let effects =
        broker.handle_connect(&mut session, Sink::Conn("c"), &client_id, Ok(Identity::Anonymous), now, origin);
    assert!(effects.connected.is_none() && session.is_closed(), "an anonymous Connect is refused");
    assert_eq!(get(&mut broker, "/api/v1/value?topic=t", PEER, now).reply.status(), 401);
    // A user gets in, in its own namespace.
    let alice = Identity::User { name: "alice".into(), admin: false };
    let (mut session, client_id) = connecting(now);
    let effects = broker.handle_connect(&mut session, Sink::Conn("c"), &client_id, Ok(alice), now, origin);
    let id = effects.connected.expect("a user connects");
    assert_ne!(broker.router().namespace_of(id), Some(NamespaceId::PUBLIC));
}

#[test]
fn a_client_id_is_taken_over_whatever_kind_of_client_held_it() {
    let mut broker = broker(Rules::default());
    let now = start();
    let origin = Origin { unix_time: 1, ip: None };
    let local = broker.register(NamespaceId::PUBLIC, Sink::Local("in-process"), "dev", origin);
    assert!(local.taken_over.is_none());
    let filter = Filter::new("a/#", &TopicLimits::default()).unwrap();
    let _ = broker.subscribe(local.id, filter);
    let (mut session, client_id) = connecting(now);
    let effects =
        broker.handle_connect(&mut session, Sink::Conn("binary"), &client_id, Ok(Identity::Anonymous), now, origin);
    assert_eq!(effects.taken_over, Some(Sink::Local("in-process")), "the shell tells the old holder");
    assert_eq!(broker.router().subscription_count(), 0, "whose subscriptions are gone already");
    // The old holder's late release changes nothing.
    broker.release(Some(local.id));
    assert_eq!(broker.router().subscriber_count(), 1);
    // And back: an in-process client takes the id from the binary one.
    let again = broker.register(NamespaceId::PUBLIC, Sink::Local("second"), "dev", origin);
    assert_eq!(again.taken_over, Some(Sink::Conn("binary")));
}

#[test]
fn a_write_is_answered_at_once_after_its_commit_or_503_by_what_the_store_promises() {
    let now = start();
    let post = "POST /api/v1/publish?topic=t&retain=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n21";
    for (acks, failing, expected) in [
        (StoreAcks::None, None, WriteAnswer::Now),
        (StoreAcks::Batched, None, WriteAnswer::Now),
        (StoreAcks::Immediate, None, WriteAnswer::AfterCommit),
        // Under `immediate` the commit decides, whatever the store said before.
        (StoreAcks::Immediate, Some("disk full"), WriteAnswer::AfterCommit),
    ] {
        let mut broker = broker(Rules { store: acks, ..Rules::default() });
        let effects = http(&mut broker, post, Ok(Identity::Anonymous), PEER, now);
        assert!(effects.stored.is_some(), "a retained publish is a write");
        assert_eq!(broker.answer_write(effects.reply.status(), true, failing), expected, "{acks:?} {failing:?}");
    }
    // `batched` with a failing store: the write is not durable, so no 2xx.
    let broker = broker(Rules { store: StoreAcks::Batched, ..Rules::default() });
    let WriteAnswer::Unavailable(refusal) = broker.answer_write(204, true, Some("disk full")) else { panic!("a 503") };
    assert_eq!(refusal.status, 503);
    assert!(String::from_utf8_lossy(&refusal.body).contains("disk full"), "it names the failure");
    // Refusals and reads wait for nothing, whatever the store does.
    assert_eq!(broker.answer_write(404, false, Some("disk full")), WriteAnswer::Now);
    assert_eq!(broker.answer_write(400, true, Some("disk full")), WriteAnswer::Now);
    // A held answer goes out as it was, or as a 503 naming the failed commit.
    assert_eq!(commit_answer(Ok(Response::ok())).status, 200);
    let failed = commit_answer(Err("fsync: I/O error".into()));
    assert_eq!(failed.status, 503);
    assert!(String::from_utf8_lossy(&failed.body).contains("fsync: I/O error"));
}

#[test]
fn sys_figures_are_values_in_memory_for_sys_subscribers_only() {
    let mut broker = broker(Rules::default());
    let origin = Origin { unix_time: 1, ip: None };
    let limits = TopicLimits::default();
    let sys = broker.register(NamespaceId::PUBLIC, Sink::Local("sys"), "sys", origin).id;
    let _ = broker.subscribe(sys, Filter::new("$SYS/#", &limits).unwrap());
    let all = broker.register(NamespaceId::PUBLIC, Sink::Local("all"), "all", origin).id;
    let _ = broker.subscribe(all, Filter::new("#", &limits).unwrap());
    let figures = Figures { messages_in: 42, ..Figures::default() };
    let published = broker.publish_sys(&figures, "9.9.9", 1_700_000_100);
    assert_eq!(published.len(), 11);
    assert!(published.iter().all(|(_, receivers)| receivers[..] == [Sink::Local("sys")]), "`#` does not match $SYS");
    let received = broker.router().value(NamespaceId::PUBLIC, "$SYS/broker/messages/received").expect("kept");
    assert_eq!(&*received.message().payload, b"42");
    assert_eq!(&*received.message().from, "$SYS");
    // A later subscriber gets the latest figures at once.
    let late = broker.register(NamespaceId::PUBLIC, Sink::Local("late"), "late", origin).id;
    let values = broker.subscribe(late, Filter::new("$SYS/broker/version", &limits).unwrap());
    assert_eq!(values.iter().map(|d| &*d.message().payload).collect::<Vec<_>>(), [b"9.9.9"]);
}
