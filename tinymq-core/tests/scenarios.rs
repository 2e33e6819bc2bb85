//! Scenario tests of sessions and the router together, on a virtual clock
//! and with no sockets: the harness does what the event loop does.

use std::time::{Duration, Instant};

use tinymq_core::broker::{self, Origin};
use tinymq_core::codec::parse_reason;
use tinymq_core::{
    Decoded, Decoder, Frame, FrameType, NamespaceId, ReasonCode, Router, Session, SessionConfig, Step, SubscriberId,
    TopicLimits, TopicName,
};

/// A frame as received by a peer, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    kind: FrameType,
    retain: bool,
    topic: String,
    payload: Vec<u8>,
    client_id: String,
}

impl Got {
    fn reason(&self) -> Option<u8> {
        parse_reason(&self.payload).map(|(code, _)| code)
    }
}

struct Conn {
    session: Session,
    subscriber: Option<SubscriberId>,
    /// Bytes the peer has received and not yet decoded.
    received: Vec<u8>,
}

struct Harness {
    now: Instant,
    config: SessionConfig,
    router: Router<usize>,
    conns: Vec<Conn>,
}

impl Harness {
    // The virtual clock needs some origin; it only moves by `advance`.
    #[allow(clippy::disallowed_methods)]
    fn new() -> Self {
        Harness { now: Instant::now(), config: SessionConfig::default(), router: Router::new(), conns: Vec::new() }
    }

    fn open(&mut self) -> usize {
        self.conns.push(Conn { session: Session::new(self.now, &self.config), subscriber: None, received: Vec::new() });
        self.conns.len() - 1
    }

    /// Opens a connection and connects it as `client_id`.
    fn connect(&mut self, client_id: &str) -> usize {
        let conn = self.open();
        self.send(conn, Frame::connect(client_id, b""));
        let ack = self.recv(conn);
        assert_eq!(ack[0].kind, FrameType::ConnAck, "{ack:?}");
        conn
    }

    /// Feeds one frame's bytes to a connection, the way the event loop does.
    fn send(&mut self, index: usize, frame: Frame<'_>) {
        self.send_bytes(index, &frame.to_vec());
    }

    fn send_bytes(&mut self, index: usize, bytes: &[u8]) {
        let mut used = 0;
        loop {
            let conn = &mut self.conns[index];
            let step = conn.session.handle_input(self.now, &bytes[used..]);
            match step {
                Ok(Step::Incomplete { .. }) | Err(_) => break,
                Ok(Step::Handled { consumed }) => used += consumed,
                Ok(Step::Request { consumed, request }) => {
                    let origin = Origin { unix_time: 1_700_000_000, ip: None };
                    let effects = broker::execute(
                        &mut self.router,
                        &mut conn.session,
                        conn.subscriber,
                        index,
                        request,
                        origin,
                        |_| Ok(NamespaceId::PUBLIC),
                    );
                    used += consumed;
                    if effects.connected.is_some() {
                        conn.subscriber = effects.connected;
                    }
                    if let Some(old) = effects.taken_over {
                        self.conns[old].session.refuse(ReasonCode::SessionTakenOver, "session taken over");
                        broker::release(&mut self.router, self.conns[old].subscriber.take());
                    }
                    if let Some(delivery) = effects.delivery {
                        for receiver in effects.receivers {
                            let _ = self.conns[receiver].session.deliver(&delivery);
                        }
                    }
                }
            }
            if self.conns[index].session.is_closed() {
                broker::release(&mut self.router, self.conns[index].subscriber.take());
            }
        }
    }

    /// Moves everything queued for the peer to it and decodes it.
    fn recv(&mut self, index: usize) -> Vec<Got> {
        let conn = &mut self.conns[index];
        loop {
            let mut slices: [&[u8]; 64] = [&[]; 64];
            let n = conn.session.outbound().front_slices(&mut slices);
            if n == 0 {
                break;
            }
            let total: usize = slices[..n].iter().map(|s| s.len()).sum();
            for slice in &slices[..n] {
                conn.received.extend_from_slice(slice);
            }
            conn.session.outbound_mut().consume(total);
        }
        let decoder = Decoder::default();
        let mut frames = Vec::new();
        let mut at = 0;
        while let Ok(Decoded::Frame { frame, consumed }) = decoder.decode(&conn.received[at..]) {
            frames.push(Got {
                kind: frame.kind,
                retain: frame.retain,
                topic: frame.topic.into(),
                payload: frame.payload.into(),
                client_id: frame.client_id.into(),
            });
            at += consumed;
        }
        conn.received.drain(..at);
        frames
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for index in 0..self.conns.len() {
            let conn = &mut self.conns[index];
            if conn.session.poll_timeout().is_some_and(|t| t <= self.now) {
                let _ = conn.session.handle_timeout(self.now);
                broker::release(&mut self.router, conn.subscriber.take());
            }
        }
    }

    fn subscribe(&mut self, index: usize, filter: &str) -> Vec<Got> {
        self.send(index, Frame::with_topic(FrameType::Subscribe, filter));
        let frames = self.recv(index);
        assert_eq!(frames[0].kind, FrameType::SubAck);
        assert_eq!(frames[0].topic, filter);
        assert!(frames[0].payload.is_empty(), "refused: {:?}", frames[0]);
        frames[1..].to_vec()
    }
}

#[test]
fn keep_alive_expires_after_one_and_a_half_intervals_of_silence() {
    let mut h = Harness::new();
    let conn = h.connect("sleepy");
    h.advance(Duration::from_secs(89));
    assert!(h.recv(conn).is_empty(), "nothing before 1.5 × 60 s");
    assert!(!h.conns[conn].session.is_closed());
    h.advance(Duration::from_secs(1));
    let frames = h.recv(conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, FrameType::Disconnect);
    assert_eq!(frames[0].reason(), Some(ReasonCode::KeepAliveTimeout as u8));
    assert!(h.conns[conn].session.is_closed());
    assert_eq!(h.router.subscriber_count(), 0, "a timed-out session releases its subscriber");
}

#[test]
fn ping_keeps_a_session_alive_and_gets_pong() {
    let mut h = Harness::new();
    let conn = h.connect("pinger");
    for _ in 0..5 {
        h.advance(Duration::from_secs(60));
        h.send(conn, Frame::empty(FrameType::Ping));
        let frames = h.recv(conn);
        assert_eq!(frames.iter().map(|f| f.kind).collect::<Vec<_>>(), [FrameType::Pong]);
    }
    assert!(h.conns[conn].session.is_connected());
}

#[test]
fn a_connection_that_never_sends_connect_times_out_too() {
    let mut h = Harness::new();
    let conn = h.open();
    h.advance(Duration::from_secs(90));
    let frames = h.recv(conn);
    assert_eq!(frames[0].reason(), Some(ReasonCode::KeepAliveTimeout as u8));
}

#[test]
fn takeover_disconnects_the_old_session_with_code_3() {
    let mut h = Harness::new();
    let old = h.connect("sensor-1");
    h.subscribe(old, "cmd/#");
    let new = h.connect("sensor-1");
    let frames = h.recv(old);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, FrameType::Disconnect);
    assert_eq!(frames[0].reason(), Some(ReasonCode::SessionTakenOver as u8));
    // The old session's subscriptions went with it; the new one works.
    h.subscribe(new, "cmd/#");
    let publisher = h.connect("controller");
    h.send(publisher, Frame::publish("cmd/reboot", b"now", "", false));
    assert!(h.recv(old).is_empty());
    let got = h.recv(new);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].topic.as_str(), got[0].client_id.as_str()), ("cmd/reboot", "controller"));
}

#[test]
fn assigned_client_ids_are_distinct() {
    let mut h = Harness::new();
    let a = h.open();
    let b = h.open();
    h.send(a, Frame::connect("", b""));
    h.send(b, Frame::connect("", b""));
    let ida = h.recv(a)[0].client_id.clone();
    let idb = h.recv(b)[0].client_id.clone();
    assert!(!ida.is_empty() && !idb.is_empty());
    assert_ne!(ida, idb);
}

#[test]
fn retained_values_reach_new_subscribers_with_the_retain_flag() {
    let mut h = Harness::new();
    let publisher = h.connect("thermo");
    h.send(publisher, Frame::publish("home/kitchen/temp", b"21.5", "", true));
    h.send(publisher, Frame::publish("home/hall/temp", b"19.0", "", true));
    h.send(publisher, Frame::publish("home/hall/humidity", b"40", "", false));

    let late = h.connect("late");
    let retained = h.subscribe(late, "home/+/temp");
    let mut topics: Vec<_> = retained.iter().map(|f| (f.topic.as_str(), f.retain, f.client_id.as_str())).collect();
    topics.sort();
    assert_eq!(topics, [("home/hall/temp", true, "thermo"), ("home/kitchen/temp", true, "thermo")]);

    // Live traffic never carries RETAIN, even for a retained publish.
    h.send(publisher, Frame::publish("home/hall/temp", b"19.5", "", true));
    let live = h.recv(late);
    assert_eq!(live.len(), 1);
    assert!(!live[0].retain);
    assert_eq!(live[0].payload, b"19.5");

    // An empty retained publish deletes the value and is delivered (empty),
    // as MQTT has it, so live subscribers learn the value is gone.
    h.send(publisher, Frame::publish("home/hall/temp", b"", "", true));
    let cleared = h.recv(late);
    assert_eq!(cleared.len(), 1);
    assert!(cleared[0].payload.is_empty() && !cleared[0].retain);
    let later = h.connect("later");
    let retained = h.subscribe(later, "home/#");
    assert_eq!(retained.len(), 1);
    assert_eq!(retained[0].topic, "home/kitchen/temp");
}

#[test]
fn overlapping_filters_deliver_once() {
    let mut h = Harness::new();
    let sub = h.connect("sub");
    for filter in ["a/b/c", "a/+/c", "a/#", "#", "+/b/+"] {
        h.subscribe(sub, filter);
    }
    let publisher = h.connect("pub");
    h.send(publisher, Frame::publish("a/b/c", b"x", "", false));
    assert_eq!(h.recv(sub).len(), 1);
    // Subscribing twice to one filter adds nothing.
    h.subscribe(sub, "a/b/c");
    h.send(publisher, Frame::publish("a/b/c", b"y", "", false));
    assert_eq!(h.recv(sub).len(), 1);
    assert_eq!(h.router.subscription_count(), 5);
}

#[test]
fn messages_from_one_publisher_arrive_in_order() {
    let mut h = Harness::new();
    let sub = h.connect("sub");
    h.subscribe(sub, "seq/#");
    let publisher = h.connect("pub");
    for i in 0..500u32 {
        let topic = format!("seq/{}", i % 7);
        h.send(publisher, Frame::publish(&topic, &i.to_be_bytes(), "", false));
    }
    let got: Vec<u32> = h.recv(sub).iter().map(|f| u32::from_be_bytes(f.payload[..4].try_into().unwrap())).collect();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

#[test]
fn system_topics_are_not_matched_by_leading_wildcards() {
    let mut h = Harness::new();
    let all = h.connect("all");
    h.subscribe(all, "#");
    let sys = h.connect("sys");
    h.subscribe(sys, "$SYS/#");
    // Only the broker publishes to `$` topics, straight through the router.
    let topic = TopicName::new("$SYS/broker/uptime", &TopicLimits::default()).unwrap();
    let mut receivers = Vec::new();
    h.router.route(NamespaceId::PUBLIC, topic, &mut receivers);
    assert_eq!(receivers, [sys]);
    let publisher = h.connect("pub");
    h.send(publisher, Frame::publish("plain", b"2", "", false));
    let got: Vec<_> = h.recv(all).into_iter().map(|f| f.topic).collect();
    assert_eq!(got, ["plain"]);
}

#[test]
fn protocol_errors_close_with_their_reason_code() {
    let cases: Vec<(&str, Vec<Vec<u8>>, ReasonCode)> = vec![
        ("publish before connect", vec![Frame::publish("a", b"x", "", false).to_vec()], ReasonCode::ProtocolError),
        (
            "second connect",
            vec![Frame::connect("x", b"").to_vec(), Frame::connect("x", b"").to_vec()],
            ReasonCode::ProtocolError,
        ),
        (
            "unknown type",
            vec![Frame::connect("x", b"").to_vec(), vec![10, 0, 0, 0, 0, 0, 0, 0, 0]],
            ReasonCode::ProtocolError,
        ),
        (
            "wildcard in publish",
            vec![Frame::connect("x", b"").to_vec(), Frame::publish("a/+", b"x", "", false).to_vec()],
            ReasonCode::InvalidTopic,
        ),
        (
            "publish to a $ topic",
            vec![Frame::connect("x", b"").to_vec(), Frame::publish("$SYS/broker/uptime", b"1", "", false).to_vec()],
            ReasonCode::InvalidTopic,
        ),
        (
            "oversized payload",
            vec![Frame::connect("x", b"").to_vec(), vec![2, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff]],
            ReasonCode::FrameTooLarge,
        ),
        (
            "pong from a client",
            vec![Frame::connect("x", b"").to_vec(), Frame::empty(FrameType::Pong).to_vec()],
            ReasonCode::ProtocolError,
        ),
        ("credentials without separator", vec![Frame::connect("x", b"userpass").to_vec()], ReasonCode::ProtocolError),
    ];
    for (name, inputs, expected) in cases {
        let mut h = Harness::new();
        let conn = h.open();
        for input in inputs {
            h.send_bytes(conn, &input);
        }
        let frames = h.recv(conn);
        let last = frames.last().unwrap_or_else(|| panic!("{name}: no reply"));
        assert_eq!(last.kind, FrameType::Disconnect, "{name}");
        assert_eq!(last.reason(), Some(expected as u8), "{name}");
        assert!(h.conns[conn].session.is_closed(), "{name}");
    }
}

#[test]
fn an_invalid_filter_is_refused_in_its_suback_and_the_session_goes_on() {
    let mut h = Harness::new();
    let conn = h.connect("x");
    h.send(conn, Frame::with_topic(FrameType::Subscribe, "a/#/b"));
    let frames = h.recv(conn);
    assert_eq!(frames[0].kind, FrameType::SubAck);
    assert_eq!(frames[0].reason(), Some(ReasonCode::InvalidTopic as u8));
    assert!(h.conns[conn].session.is_connected());
    h.subscribe(conn, "a/#");
}

#[test]
fn a_disconnect_from_the_client_drops_its_subscriptions() {
    let mut h = Harness::new();
    let conn = h.connect("x");
    h.subscribe(conn, "a/#");
    h.send(conn, Frame::empty(FrameType::Disconnect));
    assert!(h.conns[conn].session.is_closed());
    assert_eq!(h.router.subscription_count(), 0);
    assert_eq!(h.router.subscriber_count(), 0);
}

#[test]
fn a_slow_consumer_is_disconnected_at_its_queue_limit() {
    let mut h = Harness::new();
    h.config.outbound_limit = 64 * 1024;
    let slow = h.connect("slow");
    h.subscribe(slow, "flood");
    let fast = h.connect("fast");
    h.subscribe(fast, "flood");
    let publisher = h.connect("pub");
    let payload = vec![0u8; 4096];
    for _ in 0..32 {
        h.send(publisher, Frame::publish("flood", &payload, "", false));
        assert_eq!(h.recv(fast).len(), 1, "the reading subscriber gets every message");
    }
    let frames = h.recv(slow);
    let last = frames.last().unwrap();
    assert_eq!(last.kind, FrameType::Disconnect);
    assert_eq!(last.reason(), Some(ReasonCode::SlowConsumer as u8));
    assert!(frames.len() < 32, "the slow consumer was cut before receiving everything");
}

#[test]
fn a_cached_route_follows_every_change_to_the_subscriptions() {
    let limits = TopicLimits::default();
    let topic = TopicName::new("a/b", &limits).unwrap();
    let filter = |f: &str| tinymq_core::Filter::new(f, &limits).unwrap();
    let mut router: Router<u32> = Router::new();
    let mut cache = tinymq_core::RouteCache::default();
    let ns = NamespaceId::PUBLIC;
    let one = router.add_subscriber(ns, 1);
    let two = router.add_subscriber(ns, 2);
    let sorted = |sinks: &[u32]| {
        let mut sinks = sinks.to_vec();
        sinks.sort_unstable();
        sinks
    };
    assert!(router.route_cached(&mut cache, ns, topic).is_empty());
    router.subscribe(one, filter("a/+"));
    assert_eq!(router.route_cached(&mut cache, ns, topic), [1]);
    router.subscribe(two, filter("#"));
    assert_eq!(sorted(router.route_cached(&mut cache, ns, topic)), [1, 2]);
    // Another topic is routed afresh, then the first one again.
    assert_eq!(router.route_cached(&mut cache, ns, TopicName::new("c", &limits).unwrap()), [2]);
    assert_eq!(sorted(router.route_cached(&mut cache, ns, topic)), [1, 2]);
    router.unsubscribe(two, &filter("#"));
    assert_eq!(router.route_cached(&mut cache, ns, topic), [1]);
    router.remove_subscriber(one);
    assert!(router.route_cached(&mut cache, ns, topic).is_empty());
    // Another namespace has its own subscribers.
    let other = router.namespace("user");
    let three = router.add_subscriber(other, 3);
    router.subscribe(three, filter("a/b"));
    assert_eq!(router.route_cached(&mut cache, other, topic), [3]);
    assert!(router.route_cached(&mut cache, ns, topic).is_empty());
}

#[test]
fn a_cached_route_is_current_only_for_its_topic_namespace_and_version() {
    let limits = TopicLimits::default();
    let topic = TopicName::new("a/b", &limits).unwrap();
    let mut router: Router<u32> = Router::new();
    let mut cache = tinymq_core::RouteCache::default();
    let ns = NamespaceId::PUBLIC;
    let one = router.add_subscriber(ns, 1);
    router.subscribe(one, tinymq_core::Filter::new("a/#", &limits).unwrap());
    assert_eq!(cache.current(router.version(), ns, "a/b"), None, "nothing routed yet");
    assert_eq!(router.route_cached(&mut cache, ns, topic), [1]);
    let version = router.version();
    assert_eq!(cache.current(version, ns, "a/b"), Some(&[1][..]));
    assert_eq!(cache.current(version, ns, "a/c"), None);
    assert_eq!(cache.current(version, router.namespace("user"), "a/b"), None);
    // Any change to the subscriptions moves the version on.
    let two = router.add_subscriber(ns, 2);
    router.subscribe(two, tinymq_core::Filter::new("#", &limits).unwrap());
    assert_ne!(router.version(), version);
    assert_eq!(cache.current(router.version(), ns, "a/b"), None);
    router.remove_subscriber(one);
    let before = router.version();
    router.remove_subscriber(two);
    assert_ne!(router.version(), before);
}
