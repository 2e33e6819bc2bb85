//! The core `Broker`'s durable sessions of in-process clients, driven the
//! way the net shell's `LocalClient` drives them: a persistent session
//! that keeps its QoS 1 messages while its client is gone and across a
//! restart from the store's writes, acknowledgement by the client, a
//! takeover, QoS 0 on the client's own subscriber, and the figures STATS
//! and `/metrics` show.

use std::sync::Arc;
use std::time::Instant;

use tinymq_core::broker::{Broker, Origin, Rules};
use tinymq_core::durable::{SessionFigures, SessionId, SessionsConfig};
use tinymq_core::http::clients::HttpClientId;
use tinymq_core::http::service::SinkKind;
use tinymq_core::metrics::Figures;
use tinymq_core::store::{MemoryStore, Store, StoreOp};
use tinymq_core::{Delivery, Filter, Message, NamespaceId, Qos, RouteCache, TopicLimits, TopicName};

/// An in-process client's queue by name, or a session's own router sink.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sink {
    Local(&'static str),
    Session(SessionId),
}

impl SinkKind for Sink {
    fn http_client(&self) -> Option<HttpClientId> {
        None
    }

    fn transport(&self) -> &'static str {
        "local"
    }

    fn session(&self) -> Option<SessionId> {
        match self {
            Sink::Session(id) => Some(*id),
            Sink::Local(_) => None,
        }
    }
}

const ORIGIN: Origin = Origin { unix_time: 1_700_000_000, ip: None };

#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

fn filter(text: &str) -> Filter {
    Filter::new(text, &TopicLimits::default()).unwrap()
}

fn delivery(topic: &str, payload: &str) -> Arc<Delivery> {
    Delivery::new(Message {
        topic: topic.into(),
        payload: payload.as_bytes().into(),
        from: "pub".into(),
        updated_time: 1,
        ip: None,
    })
}

/// Publishes `payload` to `topic` at `qos` from an in-process client.
fn publish(broker: &mut Broker<Sink>, topic: &str, payload: &str, qos: Qos) -> tinymq_core::broker::Routed<Sink> {
    let name = TopicName::new(topic, &TopicLimits::default()).unwrap();
    broker.publish_qos(NamespaceId::PUBLIC, name, delivery(topic, payload), false, qos)
}

fn drain(broker: &mut Broker<Sink>, store: &mut MemoryStore) -> Vec<StoreOp> {
    let ops: Vec<_> = std::iter::from_fn(|| broker.poll_store_op()).collect();
    store.apply(&ops).unwrap();
    ops
}

fn figures(broker: &Broker<Sink>) -> SessionFigures {
    let mut figures = Figures::default();
    broker.fill_figures(&mut figures, start());
    figures.sessions
}

fn payloads(broker: &mut Broker<Sink>, hold: tinymq_core::broker::SessionHold) -> Vec<(String, u16, bool)> {
    std::iter::from_fn(|| broker.local_transmit(hold))
        .map(|t| (String::from_utf8(t.delivery.message().payload.to_vec()).unwrap(), t.packet_id, t.dup))
        .collect()
}

#[test]
fn a_persistent_in_process_session_keeps_qos1_messages_while_away_and_across_a_restart() {
    let now = start();
    let mut broker = Broker::new(Rules::default(), 0);
    let mut store = MemoryStore::new();
    let opened =
        broker.open_local_session(NamespaceId::PUBLIC, Sink::Local("svc"), "svc", true, ORIGIN, Sink::Session).unwrap();
    assert!(!opened.session_present);
    let (subscriber, hold) = (opened.registered.id, opened.hold);
    let retained = broker.subscribe_local_session(subscriber, hold, filter("jobs/#"), Qos::AtLeastOnce, Sink::Session);
    assert!(retained.is_empty());

    // Online: a QoS 1 publish is queued in the session and the client's
    // queue is named, to be woken.
    let routed = publish(&mut broker, "jobs/1", "one", Qos::AtLeastOnce);
    assert_eq!(routed.pumps.as_slice(), [Sink::Local("svc")]);
    assert!(routed.deliveries.is_empty(), "nothing at QoS 0");
    let taken = payloads(&mut broker, hold);
    assert_eq!(taken, [("one".to_owned(), taken[0].1, false)]);
    assert_eq!(figures(&broker).inflight, 1);
    assert!(broker.local_ack(hold, taken[0].1));
    assert!(!broker.local_ack(hold, taken[0].1), "a second ack of the same id is ignored");

    // A QoS 0 publish to the session goes to its client at QoS 0.
    let routed = publish(&mut broker, "jobs/2", "zero", Qos::AtMostOnce);
    assert!(routed.pumps.is_empty());
    assert_eq!(routed.deliveries.len(), 1);
    assert_eq!(routed.deliveries[0].1.as_slice(), [Sink::Local("svc")]);

    // The client goes; QoS 1 messages for it are queued meanwhile.
    broker.close_local_session(subscriber, hold, now, 1_700_000_001);
    for n in 3..=5 {
        let routed = publish(&mut broker, "jobs/n", &n.to_string(), Qos::AtLeastOnce);
        assert!(routed.pumps.is_empty(), "no one to wake");
    }
    // One taken and not acknowledged before a restart: sent again.
    let reopened =
        broker.open_local_session(NamespaceId::PUBLIC, Sink::Local("svc"), "svc", true, ORIGIN, Sink::Session).unwrap();
    assert!(reopened.session_present);
    let unacked = broker.local_transmit(reopened.hold).unwrap();
    assert_eq!(&unacked.delivery.message().payload[..], b"3");
    let sessions = figures(&broker);
    assert_eq!((sessions.total, sessions.persistent, sessions.online), (1, 1, 1));
    assert_eq!((sessions.queued, sessions.inflight, sessions.acknowledged, sessions.resent), (3, 1, 1, 0));
    let ops = drain(&mut broker, &mut store);
    let queued = ops.iter().filter(|op| matches!(op, StoreOp::PutQueued { .. })).count();
    let deleted = ops.iter().filter(|op| matches!(op, StoreOp::DeleteQueued { .. })).count();
    assert_eq!((queued, deleted), (4, 1), "every QoS 1 message written, the acknowledged one deleted");

    // The process dies (nothing more written) and starts again on the store.
    let mut broker = Broker::new(Rules::default(), 0);
    let routed = broker.restore_sessions(
        now,
        1_700_000_002,
        store.load_sessions().unwrap(),
        store.load_queued().unwrap(),
        Sink::Session,
    );
    assert!(routed.deliveries.is_empty() && routed.pumps.is_empty(), "an in-process client leaves no will");
    let restarted =
        broker.open_local_session(NamespaceId::PUBLIC, Sink::Local("svc"), "svc", true, ORIGIN, Sink::Session).unwrap();
    assert!(restarted.session_present);
    let taken = payloads(&mut broker, restarted.hold);
    let texts: Vec<&str> = taken.iter().map(|(text, _, _)| text.as_str()).collect();
    assert_eq!(texts, ["3", "4", "5"], "every unacknowledged message, in order");
    assert!(taken.iter().all(|(_, _, dup)| *dup), "sent with DUP: whether they were seen is unknown");
    assert_eq!(figures(&broker).resent, 3);
    // Its subscription came back too.
    let routed = publish(&mut broker, "jobs/6", "6", Qos::AtLeastOnce);
    assert_eq!(routed.pumps.as_slice(), [Sink::Local("svc")]);
    for (_, packet_id, _) in &taken {
        assert!(broker.local_ack(restarted.hold, *packet_id));
    }
    let sessions = figures(&broker);
    assert_eq!((sessions.queued, sessions.acknowledged), (1, 3));
}

#[test]
fn a_session_ending_with_its_client_keeps_qos0_filters_on_the_client_and_is_dropped_after() {
    let now = start();
    let mut broker = Broker::new(Rules::default(), 0);
    let opened =
        broker.open_local_session(NamespaceId::PUBLIC, Sink::Local("a"), "a", false, ORIGIN, Sink::Session).unwrap();
    let (subscriber, hold) = (opened.registered.id, opened.hold);
    let _ = broker.subscribe_local_session(subscriber, hold, filter("live/#"), Qos::AtMostOnce, Sink::Session);
    let name = TopicName::new("live/x", &TopicLimits::default()).unwrap();
    let mut cache = RouteCache::default();
    let receivers = broker.route_live_in(&mut cache, NamespaceId::PUBLIC, name);
    assert_eq!(receivers, [Sink::Local("a")], "the client's own subscriber, the live path");
    assert!(broker.unsubscribe_local_session(subscriber, hold, &filter("live/#")));
    assert!(!broker.unsubscribe_local_session(subscriber, hold, &filter("live/#")));
    let _ = broker.subscribe_local_session(subscriber, hold, filter("work"), Qos::AtLeastOnce, Sink::Session);
    assert_eq!(figures(&broker).persistent, 0);
    broker.close_local_session(subscriber, hold, now, 1);
    let routed = publish(&mut broker, "work", "lost", Qos::AtLeastOnce);
    assert!(routed.pumps.is_empty() && routed.deliveries.is_empty(), "the session ended with its client");
    assert_eq!(figures(&broker), SessionFigures::default());
}

#[test]
fn a_second_client_with_the_id_takes_the_session_over() {
    let mut broker = Broker::new(Rules::default(), 0);
    let first = broker
        .open_local_session(NamespaceId::PUBLIC, Sink::Local("first"), "svc", true, ORIGIN, Sink::Session)
        .unwrap();
    let _ =
        broker.subscribe_local_session(first.registered.id, first.hold, filter("t"), Qos::AtLeastOnce, Sink::Session);
    let second = broker
        .open_local_session(NamespaceId::PUBLIC, Sink::Local("second"), "svc", true, ORIGIN, Sink::Session)
        .unwrap();
    assert_eq!(second.registered.taken_over, Some(Sink::Local("first")));
    assert!(second.session_present);
    let routed = publish(&mut broker, "t", "m", Qos::AtLeastOnce);
    assert_eq!(routed.pumps.as_slice(), [Sink::Local("second")]);
    assert!(broker.local_transmit(first.hold).is_none(), "the taken-over client gets nothing");
    let transmit = broker.local_transmit(second.hold).unwrap();
    assert!(!broker.local_ack(first.hold, transmit.packet_id), "nor acknowledges for its successor");
    assert!(broker.local_ack(second.hold, transmit.packet_id));
    // Its late subscription changes nothing of the session.
    let _ =
        broker.subscribe_local_session(first.registered.id, first.hold, filter("u"), Qos::AtLeastOnce, Sink::Session);
    assert!(publish(&mut broker, "u", "m", Qos::AtLeastOnce).pumps.is_empty());
}

#[test]
fn a_full_session_queue_drops_the_newest_and_counts_it() {
    let queue = tinymq_core::durable::QueueLimits { max_messages: 2, ..Default::default() };
    let rules = Rules { sessions: SessionsConfig { queue, ..SessionsConfig::default() }, ..Rules::default() };
    let mut broker = Broker::new(rules, 0);
    let opened = broker
        .open_local_session(NamespaceId::PUBLIC, Sink::Local("slow"), "slow", true, ORIGIN, Sink::Session)
        .unwrap();
    let _ =
        broker.subscribe_local_session(opened.registered.id, opened.hold, filter("t"), Qos::AtLeastOnce, Sink::Session);
    for n in 0..3 {
        let routed = publish(&mut broker, "t", &n.to_string(), Qos::AtLeastOnce);
        assert_eq!(routed.dropped, usize::from(n == 2));
    }
    let sessions = figures(&broker);
    assert_eq!((sessions.queued, sessions.dropped), (2, 1));
    let texts: Vec<String> = payloads(&mut broker, opened.hold).into_iter().map(|(text, _, _)| text).collect();
    assert_eq!(texts, ["0", "1"], "what was queued stays, in order");
}
