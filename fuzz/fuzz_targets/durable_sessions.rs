//! `Sessions` under arbitrary sequences of open (clean or persistent, with
//! or without a will), close (clean or lost), subscribe, unsubscribe,
//! enqueue, transmit, ack and time steps, with every store op applied to a
//! `MemoryStore` as the writer would. At any point a "kill -9" is
//! simulated: a new `Sessions` restored from the store must hold every
//! persistent session with the same subscriptions and the same queued
//! messages in the same order, no other session, and return the wills of
//! exactly the persistent sessions that were connected and had one.
//!
//! Input: op bytes; `% 10` picks the action, `>> 4` the client id (of 3).
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tinymq_core::durable::{
    ConnectionToken, Departure, SessionId, SessionKey, SessionRequest, Sessions, SessionsConfig,
};
use tinymq_core::store::{MemoryStore, Store};
use tinymq_core::topic::{Filter, TopicLimits};
use tinymq_core::{Delivery, Message, Qos, Will};

const IDS: [&str; 3] = ["a", "b", "c"];
const FILTERS: [&str; 2] = ["t/#", "u"];

fn config() -> SessionsConfig {
    SessionsConfig { session_expiry: Duration::from_secs(100), max_sessions: 2, ..Default::default() }
}

fuzz_target!(|input: &[u8]| {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut now = start;
    let mut unix = 1_000u64;
    let mut sessions = Sessions::new(config());
    let mut store = MemoryStore::new();
    let mut tokens: [Option<ConnectionToken>; 3] = [None; 3];
    let mut ids: [Option<SessionId>; 3] = [None; 3];
    let mut counter = 0u32;
    let limits = TopicLimits::default();
    let mut bytes = input.iter().copied();
    while let Some(op) = bytes.next() {
        let who = usize::from(op >> 4) % IDS.len();
        let key = SessionKey::new("", IDS[who]);
        // A handle for every call, stale when the session is gone (kept
        // from its last open), as a shell would hold it.
        let id = sessions.find(&key).or(ids[who]);
        match op % 10 {
            0 | 1 => {
                let will =
                    (op & 0x08 != 0).then_some(Will { topic: "w", payload: b"w", retain: false, qos: Qos::AtMostOnce });
                let request = SessionRequest { persistent: op % 10 == 1, session_expiry: 0, will };
                if let Ok(opened) = sessions.open(&key, request) {
                    tokens[who] = Some(opened.token);
                    ids[who] = Some(opened.id);
                }
            }
            2 | 3 => {
                if let (Some(token), Some(id)) = (tokens[who].take(), id) {
                    let departure = if op % 10 == 2 { Departure::Clean } else { Departure::Lost };
                    let will = sessions.close(now, unix, id, token, departure);
                    assert!(departure == Departure::Lost || will.is_none(), "a will on a clean close");
                }
            }
            4 if let Some(id) = id => sessions.subscribe(
                id,
                Filter::new(FILTERS[usize::from(op >> 3 & 1)], &limits).unwrap(),
                Qos::AtLeastOnce,
            ),
            5 if let Some(id) = id => {
                sessions.unsubscribe(id, &Filter::new(FILTERS[usize::from(op >> 3 & 1)], &limits).unwrap())
            }
            6 if let Some(id) = id => {
                counter += 1;
                let message = Message {
                    topic: "t/x".into(),
                    payload: counter.to_be_bytes().to_vec().into(),
                    from: "p".into(),
                    updated_time: unix,
                    ip: None,
                };
                let _ = sessions.enqueue(id, Delivery::new(message));
            }
            7 if let Some(id) = id => {
                let _ = sessions.poll_transmit(id);
            }
            8 if let Some(id) = id => {
                let _ = sessions.ack(id, u16::from(bytes.next().unwrap_or(1) % 8));
            }
            4..=8 => {}
            _ => {
                let step = Duration::from_secs(u64::from(bytes.next().unwrap_or(0)));
                now += step;
                unix += step.as_secs();
                for (_, expired) in sessions.handle_timeout(now) {
                    let index = IDS.iter().position(|id| **id == *expired.client_id).unwrap();
                    assert!(tokens[index].is_none(), "a connected session expired");
                }
            }
        }
        let ops: Vec<_> = std::iter::from_fn(|| sessions.poll_store_op()).collect();
        store.apply(&ops).unwrap();
        check_restore(&sessions, &store, now, unix);
    }
});

/// A restart from the store rebuilds the persistent sessions as they are.
fn check_restore(sessions: &Sessions, store: &MemoryStore, now: Instant, unix: u64) {
    let mut restored = Sessions::new(config());
    let wills = restored.restore(now, unix, store.load_sessions().unwrap(), store.load_queued().unwrap());
    let mut expected_wills = Vec::new();
    for id in IDS {
        let key = SessionKey::new("", id);
        let live = sessions.find(&key).and_then(|id| sessions.get(id)).filter(|view| view.is_persistent());
        let again = restored.find(&key).and_then(|id| restored.get(id));
        assert_eq!(live.is_some(), again.is_some(), "{id}: persistent in one and not the other");
        let (Some(live), Some(again)) = (live, again) else { continue };
        assert_eq!(live.subscriptions(), again.subscriptions(), "{id}: subscriptions");
        let messages = |view: &tinymq_core::durable::SessionView<'_>| -> Vec<(u64, Arc<[u8]>)> {
            view.queue().messages().map(|(seq, d)| (seq, d.message().payload.clone())).collect()
        };
        assert_eq!(messages(&live), messages(&again), "{id}: queued messages");
        if live.is_online() && live.will().is_some() {
            expected_wills.push(id.to_owned());
        }
    }
    let got: Vec<String> = wills.iter().map(|(id, _)| restored.get(*id).unwrap().key().client_id.to_string()).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, expected_wills, "wills at restart");
}
