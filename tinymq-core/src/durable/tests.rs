//! The durable sessions alone: what they keep, emit and forget.

use super::*;
use crate::store::{MemoryStore, Store};
use crate::topic::TopicLimits;

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn key(id: &str) -> SessionKey {
    SessionKey::new("", id)
}

/// `name`'s session handle, or one that names no session.
fn sid(sessions: &Sessions, name: &str) -> SessionId {
    sessions.find(&key(name)).unwrap_or(SessionId { index: u32::MAX, generation: 0 })
}

fn view<'a>(sessions: &'a Sessions, name: &str) -> Option<SessionView<'a>> {
    sessions.get(sid(sessions, name))
}

fn persistent() -> SessionRequest<'static> {
    SessionRequest { persistent: true, ..Default::default() }
}

fn with_will(persistent: bool) -> SessionRequest<'static> {
    let will = Will { topic: "w", payload: b"bye", retain: false, qos: Qos::AtMostOnce };
    SessionRequest { persistent, will: Some(will), ..Default::default() }
}

fn delivery(text: &str) -> Arc<Delivery> {
    Delivery::new(Message {
        topic: "t".into(),
        payload: text.as_bytes().into(),
        from: "p".into(),
        updated_time: 0,
        ip: None,
    })
}

fn ops(sessions: &mut Sessions) -> Vec<StoreOp> {
    std::iter::from_fn(|| sessions.poll_store_op()).collect()
}

fn filter(text: &str) -> Filter {
    Filter::new(text, &TopicLimits::default()).unwrap()
}

#[test]
fn only_persistent_sessions_write_to_the_store_and_acks_follow_their_puts() {
    let mut sessions = Sessions::new(SessionsConfig::default());
    let opened = sessions.open(&key("clean"), SessionRequest::default()).unwrap();
    sessions.subscribe(sid(&sessions, "clean"), filter("t"), Qos::AtLeastOnce);
    sessions.enqueue(sid(&sessions, "clean"), delivery("x")).unwrap().unwrap();
    let sent = sessions.poll_transmit(sid(&sessions, "clean")).unwrap();
    sessions.ack(sid(&sessions, "clean"), sent.packet_id);
    assert!(sessions.close(epoch(), 1, sid(&sessions, "clean"), opened.token, Departure::Clean).is_none());
    assert!(ops(&mut sessions).is_empty());
    assert!(sessions.is_empty(), "a clean session ends with its connection");

    let opened = sessions.open(&key("p"), persistent()).unwrap();
    sessions.subscribe(sid(&sessions, "p"), filter("t"), Qos::AtLeastOnce);
    sessions.subscribe(sid(&sessions, "p"), filter("t"), Qos::AtLeastOnce);
    let seq = sessions.enqueue(sid(&sessions, "p"), delivery("x")).unwrap().unwrap();
    let sent = sessions.poll_transmit(sid(&sessions, "p")).unwrap();
    assert_eq!(sessions.ack(sid(&sessions, "p"), sent.packet_id), Some(seq));
    let kinds: Vec<&str> = ops(&mut sessions)
        .iter()
        .map(|op| match op {
            StoreOp::PutSession { .. } => "put session",
            StoreOp::PutQueued { .. } => "put queued",
            StoreOp::DeleteQueued { .. } => "delete queued",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["put session", "put session", "put queued", "delete queued"],
        "a repeated subscribe writes nothing"
    );
    sessions.close(epoch(), 1, sid(&sessions, "p"), opened.token, Departure::Clean);
    assert!(matches!(&ops(&mut sessions)[..], [StoreOp::PutSession { record, .. }] if record.offline_since == 1));
}

#[test]
fn a_takeover_gives_the_old_will_and_leaves_the_old_token_stale() {
    let now = epoch();
    let mut sessions = Sessions::new(SessionsConfig::default());
    let first = sessions.open(&key("d"), with_will(true)).unwrap();
    let second = sessions.open(&key("d"), persistent()).unwrap();
    assert!(second.session_present);
    assert_eq!(second.taken_over_will.map(|w| w.payload.to_vec()), Some(b"bye".to_vec()));
    // The old connection's close comes later and changes nothing.
    assert!(sessions.close(now, 1, sid(&sessions, "d"), first.token, Departure::Lost).is_none());
    assert!(view(&sessions, "d").unwrap().is_online());
    assert!(
        sessions.close(now, 1, sid(&sessions, "d"), second.token, Departure::Lost).is_none(),
        "the new one has no will"
    );
    assert!(!view(&sessions, "d").unwrap().is_online());
}

#[test]
fn a_clean_connect_discards_a_stored_session() {
    let mut sessions = Sessions::new(SessionsConfig::default());
    let opened = sessions.open(&key("d"), persistent()).unwrap();
    sessions.subscribe(sid(&sessions, "d"), filter("a"), Qos::AtLeastOnce);
    sessions.close(epoch(), 1, sid(&sessions, "d"), opened.token, Departure::Clean);
    ops(&mut sessions);
    let clean = sessions.open(&key("d"), SessionRequest::default()).unwrap();
    assert!(!clean.session_present && clean.subscriptions.is_empty());
    assert!(matches!(&ops(&mut sessions)[..], [StoreOp::DeleteSession { .. }]));
    assert_eq!(sessions.persistent_len(), 0);
}

#[test]
fn persistent_sessions_are_bounded_but_a_held_one_resumes() {
    let config = SessionsConfig { max_sessions: 1, ..Default::default() };
    let mut sessions = Sessions::new(config);
    let opened = sessions.open(&key("a"), persistent()).unwrap();
    assert_eq!(sessions.open(&key("b"), persistent()).unwrap_err(), TooManySessions);
    assert!(view(&sessions, "b").is_none());
    assert!(sessions.open(&key("c"), SessionRequest::default()).is_ok(), "a clean session is not counted");
    sessions.close(epoch(), 1, sid(&sessions, "a"), opened.token, Departure::Lost);
    assert!(sessions.open(&key("a"), persistent()).unwrap().session_present);
}

#[test]
fn expiry_comes_in_deadline_order() {
    let now = epoch();
    let config = SessionsConfig { session_expiry: Duration::from_secs(100), ..Default::default() };
    let mut sessions = Sessions::new(config);
    let long = sessions.open(&key("long"), persistent()).unwrap();
    let short = sessions.open(&key("short"), SessionRequest { session_expiry: 10, ..persistent() }).unwrap();
    assert_eq!(sessions.poll_timeout(), None, "nothing expires while connected");
    sessions.close(now, 1, sid(&sessions, "long"), long.token, Departure::Clean);
    sessions.close(now, 1, sid(&sessions, "short"), short.token, Departure::Clean);
    assert_eq!(sessions.poll_timeout(), Some(now + Duration::from_secs(10)));
    assert!(sessions.handle_timeout(now + Duration::from_secs(9)).is_empty());
    let expired: Vec<SessionKey> =
        sessions.handle_timeout(now + Duration::from_secs(10)).into_iter().map(|(_, k)| k).collect();
    assert_eq!(expired, [key("short")]);
    // Its handle is stale, even once its slot holds another session.
    let short_id = short.id;
    let other = sessions.open(&key("other"), SessionRequest::default()).unwrap();
    assert_eq!(sessions.enqueue(short_id, delivery("x")), None);
    assert!(sessions.get(short_id).is_none() && sessions.get(other.id).is_some());
    assert_eq!(sessions.poll_timeout(), Some(now + Duration::from_secs(100)));
    // Reconnecting stops the clock.
    let again = sessions.open(&key("long"), persistent()).unwrap();
    assert_eq!(sessions.poll_timeout(), None);
    sessions.close(now + Duration::from_secs(50), 51, sid(&sessions, "long"), again.token, Departure::Clean);
    assert_eq!(sessions.poll_timeout(), Some(now + Duration::from_secs(150)));
}

#[test]
fn restore_rebuilds_what_the_store_kept() {
    let now = epoch();
    let config = SessionsConfig { session_expiry: Duration::from_secs(1000), ..Default::default() };
    let mut before = Sessions::new(config);
    // "gone": offline since unix 100; "live": connected at the crash, with a
    // will; "old": offline long enough to have expired.
    for (id, request) in [("gone", persistent()), ("live", with_will(true)), ("old", persistent())] {
        let opened = before.open(&key(id), request).unwrap();
        before.subscribe(sid(&before, id), filter("t/#"), Qos::AtLeastOnce);
        before.enqueue(sid(&before, id), delivery(id)).unwrap().unwrap();
        match id {
            "gone" => drop(before.close(now, 100, sid(&before, id), opened.token, Departure::Clean)),
            "old" => drop(before.close(now, 10, sid(&before, id), opened.token, Departure::Clean)),
            _ => {}
        }
    }
    let mut store = MemoryStore::new();
    store.apply(&ops(&mut before)).unwrap();
    // A queued message whose session record is missing.
    let orphan = StoreOp::PutQueued {
        namespace: String::new(),
        client_id: "none".into(),
        seq: 1,
        message: delivery("o").message().clone(),
        retained: false,
    };
    store.apply(&[orphan]).unwrap();

    let mut after = Sessions::new(config);
    let later = now + Duration::from_secs(5000);
    let wills = after.restore(later, 1050, store.load_sessions().unwrap(), store.load_queued().unwrap());
    assert_eq!(
        wills
            .iter()
            .map(|(id, w)| (after.get(*id).unwrap().key().client_id.to_string(), w.topic.to_string()))
            .collect::<Vec<_>>(),
        [("live".into(), "w".into())]
    );
    assert!(view(&after, "old").is_none(), "expired while the broker was down");
    for id in ["gone", "live"] {
        let view = view(&after, id).unwrap();
        assert!(!view.is_online() && view.will().is_none());
        assert_eq!(view.subscriptions(), [(filter("t/#"), Qos::AtLeastOnce)]);
        assert_eq!(view.queue().len(), 1);
    }
    // "gone" has 1000 - 950 s left, "live" counts from the restart.
    assert_eq!(after.poll_timeout(), Some(later + Duration::from_secs(50)));
    let expired: Vec<SessionKey> =
        after.handle_timeout(later + Duration::from_secs(50)).into_iter().map(|(_, k)| k).collect();
    assert_eq!(expired, [key("gone")]);
    assert_eq!(after.poll_timeout(), Some(later + Duration::from_secs(1000)));
    store.apply(&ops(&mut after)).unwrap();
    assert_eq!(store.load_sessions().unwrap().iter().map(|s| s.client_id.as_str()).collect::<Vec<_>>(), ["live"]);
    let queued: Vec<String> = store.load_queued().unwrap().iter().map(|q| q.client_id.clone()).collect();
    assert_eq!(queued, ["live"], "expired and orphaned messages are deleted");
    // Resumed, the restored message goes out marked DUP.
    assert!(after.open(&key("live"), persistent()).unwrap().session_present);
    assert!(after.poll_transmit(sid(&after, "live")).unwrap().dup);
}

#[test]
fn messages_over_lowered_limits_are_dropped_from_the_store_at_restore() {
    let mut before = Sessions::new(SessionsConfig::default());
    let opened = before.open(&key("d"), persistent()).unwrap();
    for text in ["1", "2", "3"] {
        before.enqueue(sid(&before, "d"), delivery(text)).unwrap().unwrap();
    }
    before.close(epoch(), 5, sid(&before, "d"), opened.token, Departure::Clean);
    let mut store = MemoryStore::new();
    store.apply(&ops(&mut before)).unwrap();

    let lowered =
        SessionsConfig { queue: QueueLimits { max_messages: 2, ..QueueLimits::default() }, ..Default::default() };
    let mut after = Sessions::new(lowered);
    after.restore(epoch(), 6, store.load_sessions().unwrap(), store.load_queued().unwrap());
    assert_eq!(view(&after, "d").unwrap().queue().len(), 2);
    store.apply(&ops(&mut after)).unwrap();
    let kept: Vec<u64> = store.load_queued().unwrap().iter().map(|q| q.seq).collect();
    assert_eq!(kept, [1, 2]);
}

/// The fuzz target `durable_sessions` in small, for every test run: random
/// operations, each step's store ops applied, and a restart from the store
/// after each step rebuilds the same persistent sessions.
#[test]
fn a_restart_after_any_step_rebuilds_the_persistent_sessions() {
    let config = SessionsConfig { session_expiry: Duration::from_secs(100), max_sessions: 2, ..Default::default() };
    let ids = ["a", "b", "c"];
    for seed in 1..=20u32 {
        let mut state = seed.wrapping_mul(0x9e37_79b9) | 1;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut now = epoch();
        let mut unix = 1_000;
        let mut sessions = Sessions::new(config);
        let mut store = MemoryStore::new();
        let mut tokens = [None; 3];
        for step in 0..300 {
            let who = random() as usize % 3;
            let name = ids[who];
            match random() % 9 {
                0 | 1 => {
                    let request = if random() % 2 == 0 { with_will(random() % 4 != 0) } else { persistent() };
                    if let Ok(opened) = sessions.open(&key(name), request) {
                        tokens[who] = Some(opened.token);
                    }
                }
                2 => {
                    if let Some(token) = tokens[who].take() {
                        let departure = if random() % 2 == 0 { Departure::Clean } else { Departure::Lost };
                        sessions.close(now, unix, sid(&sessions, name), token, departure);
                    }
                }
                3 => sessions.subscribe(
                    sid(&sessions, name),
                    filter(["t/#", "u"][random() as usize % 2]),
                    Qos::AtLeastOnce,
                ),
                4 => sessions.unsubscribe(sid(&sessions, name), &filter(["t/#", "u"][random() as usize % 2])),
                5 => drop(sessions.enqueue(sid(&sessions, name), delivery(&step.to_string()))),
                6 => drop(sessions.poll_transmit(sid(&sessions, name))),
                7 => drop(sessions.ack(sid(&sessions, name), (random() % 6) as u16)),
                _ => {
                    let by = u64::from(random() % 40);
                    now += Duration::from_secs(by);
                    unix += by;
                    sessions.handle_timeout(now);
                }
            }
            store.apply(&ops(&mut sessions)).unwrap();
            let mut restored = Sessions::new(config);
            let wills = restored.restore(now, unix, store.load_sessions().unwrap(), store.load_queued().unwrap());
            for id in ids {
                let live = view(&sessions, id).filter(|view| view.is_persistent());
                let again = view(&restored, id);
                assert_eq!(live.is_some(), again.is_some(), "seed {seed} step {step}: {id}");
                let (Some(live), Some(again)) = (live, again) else { continue };
                assert_eq!(live.subscriptions(), again.subscriptions(), "seed {seed} step {step}: {id}");
                let queued =
                    |view: SessionView<'_>| -> Vec<u64> { view.queue().messages().map(|(seq, _)| seq).collect() };
                assert_eq!(queued(live), queued(again), "seed {seed} step {step}: {id}");
                let will_expected = live.is_online() && live.will().is_some();
                let will_given =
                    wills.iter().any(|(will_id, _)| restored.get(*will_id).unwrap().key().client_id.as_ref() == id);
                assert_eq!(will_expected, will_given, "seed {seed} step {step}: {id}'s will");
            }
        }
    }
}

#[test]
fn figures_count_sessions_queues_acks_resends_and_drops() {
    let queue = QueueLimits { max_messages: 3, ..QueueLimits::default() };
    let mut sessions = Sessions::new(SessionsConfig { queue, ..SessionsConfig::default() });
    assert_eq!(sessions.figures(), SessionFigures::default());
    let kept = sessions.open(&key("kept"), persistent()).unwrap();
    let _clean = sessions.open(&key("clean"), SessionRequest::default()).unwrap();
    let id = kept.id;
    for text in ["a", "b", "c", "d"] {
        let _ = sessions.enqueue(id, delivery(text));
    }
    let first = sessions.poll_transmit(id).unwrap();
    let _second = sessions.poll_transmit(id).unwrap();
    let figures = sessions.figures();
    assert_eq!((figures.total, figures.persistent, figures.online), (2, 1, 2));
    assert_eq!((figures.queued, figures.inflight, figures.dropped), (3, 2, 1), "the fourth refused");
    assert_eq!((figures.acknowledged, figures.resent), (0, 0));

    // Away and back: the one still in flight is sent again, with DUP.
    assert_eq!(sessions.ack(id, first.packet_id), Some(first.seq));
    sessions.close(epoch(), 1, id, kept.token, Departure::Lost);
    assert_eq!(sessions.figures().online, 1, "only the clean one is connected");
    let _back = sessions.open(&key("kept"), persistent()).unwrap();
    let resent = sessions.poll_transmit(id).unwrap();
    assert!(resent.dup);
    let figures = sessions.figures();
    assert_eq!((figures.acknowledged, figures.resent, figures.queued, figures.inflight), (1, 1, 2, 1));
}
