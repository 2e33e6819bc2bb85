//! The core `Broker`'s durable sessions on a virtual clock, driven the way
//! the net shell drives them: a QoS 1 publish queued for an offline
//! persistent session, the PubAck held under `immediate` durability,
//! resend on reconnect, wills on a lost connection and not on a clean one,
//! expiry, and a restart from the store's writes.

use std::time::{Duration, Instant};

use tinymq_core::auth::Identity;
use tinymq_core::broker::{Broker, Origin, Routed, Rules, SessionHold, StoreAcks};
use tinymq_core::client::{ClientConfig, ClientEvent, ClientSession, ClientWill};
use tinymq_core::durable::{Departure, SessionId, SessionsConfig};
use tinymq_core::http::clients::HttpClientId;
use tinymq_core::http::service::SinkKind;
use tinymq_core::store::{MemoryStore, Store};
use tinymq_core::{Qos, Request, Session, SessionConfig, Step, SubscriberId};

/// A connection by name, or a session's own router sink.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sink {
    Conn(&'static str),
    Session(SessionId),
}

impl SinkKind for Sink {
    fn http_client(&self) -> Option<HttpClientId> {
        None
    }

    fn transport(&self) -> &'static str {
        "tcp"
    }

    fn session(&self) -> Option<SessionId> {
        match self {
            Sink::Session(id) => Some(*id),
            Sink::Conn(_) => None,
        }
    }
}

const ORIGIN: Origin = Origin { unix_time: 1_700_000_000, ip: None };

/// A client and its connection's broker side.
struct Peer {
    name: &'static str,
    client: ClientSession,
    session: Session,
    subscriber: Option<SubscriberId>,
    hold: Option<SessionHold>,
    events: Vec<ClientEvent>,
    /// Packet ids the broker holds for the store's commit.
    held: Vec<u16>,
}

impl Peer {
    fn connect(broker: &mut Broker<Sink>, now: Instant, name: &'static str, config: ClientConfig) -> Peer {
        let mut client = ClientSession::new(&config, now).unwrap();
        client.connect(now);
        let mut peer = Peer {
            name,
            client,
            session: Session::new(now, &SessionConfig::default()),
            subscriber: None,
            hold: None,
            events: Vec::new(),
            held: Vec::new(),
        };
        peer.exchange(broker, now);
        peer
    }

    /// Subscribes to `filter` at QoS 1 and moves bytes until quiet.
    fn subscribe_qos1(&mut self, broker: &mut Broker<Sink>, now: Instant, filter: &str) {
        self.client.subscribe_qos(now, filter, Qos::AtLeastOnce).unwrap();
        self.exchange(broker, now);
    }

    /// Moves bytes both ways until quiet; QoS 1 messages are acknowledged
    /// by the client as it takes them.
    fn exchange(&mut self, broker: &mut Broker<Sink>, now: Instant) {
        for _ in 0..1000 {
            let mut moved = false;
            if let Some(bytes) = self.client.poll_transmit() {
                let bytes = bytes.to_vec();
                self.client.advance_transmit(bytes.len());
                self.input(broker, now, &bytes);
                moved = true;
            }
            let mut out = Vec::new();
            let mut slices: [&[u8]; 16] = [&[]; 16];
            let n = self.session.outbound().front_slices(&mut slices);
            slices[..n].iter().for_each(|s| out.extend_from_slice(s));
            if !out.is_empty() {
                self.session.outbound_mut().consume(out.len());
                self.client.handle_input(now, &out).unwrap();
                moved = true;
            }
            while let Some(event) = self.client.poll_event() {
                self.events.push(event);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("never settles");
    }

    fn input(&mut self, broker: &mut Broker<Sink>, now: Instant, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let step = self.session.handle_input(now, bytes).unwrap();
            let (consumed, request) = match step {
                Step::Incomplete { .. } => return,
                Step::Handled { consumed } => (consumed, None),
                Step::Request { consumed, request } => (consumed, Some(request)),
            };
            bytes = &bytes[consumed..];
            match request {
                Some(Request::Connect { client_id, session: request, .. }) => {
                    let answer = broker.handle_session_connect(
                        &mut self.session,
                        Sink::Conn(self.name),
                        client_id,
                        request,
                        Ok(Identity::Anonymous),
                        now,
                        ORIGIN,
                        Sink::Session,
                    );
                    self.subscriber = answer.effects.connected;
                    self.hold = answer.hold;
                    self.pump(broker, &answer.routed);
                }
                Some(request) => {
                    let hold = self.hold.expect("connected");
                    let answer = broker.handle_session_request(
                        &mut self.session,
                        self.subscriber,
                        hold,
                        Sink::Conn(self.name),
                        request,
                        ORIGIN,
                        Sink::Session,
                    );
                    self.held.extend(answer.held_ack);
                    self.pump(broker, &answer.routed);
                }
                None => {}
            }
        }
    }

    /// Sends this connection's own queued messages (the only pump a
    /// one-connection test needs to carry out).
    fn pump(&mut self, broker: &mut Broker<Sink>, routed: &Routed<Sink>) {
        if routed.pumps.contains(&Sink::Conn(self.name))
            && let Some(hold) = self.hold
        {
            broker.transmit(hold, &mut self.session);
        }
    }

    fn messages(&self) -> Vec<(Vec<u8>, bool)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                ClientEvent::Message { payload, dup, qos: Qos::AtLeastOnce, .. } => Some((payload.clone(), *dup)),
                _ => None,
            })
            .collect()
    }

    fn session_present(&self) -> Option<bool> {
        self.events.iter().rev().find_map(|event| match event {
            ClientEvent::Connected { session_present, .. } => Some(*session_present),
            _ => None,
        })
    }
}

/// A persistent peer subscribed at QoS 1 to `status/#`, where
/// [`gone_will`] goes.
fn status_watcher(broker: &mut Broker<Sink>, now: Instant) -> Peer {
    let mut watcher = Peer::connect(broker, now, "watcher", persistent("watcher"));
    watcher.subscribe_qos1(broker, now, "status/#");
    watcher
}

/// A QoS 1 will saying "gone" on `status/dev`.
fn gone_will() -> ClientWill {
    ClientWill { topic: "status/dev".into(), payload: b"gone".to_vec(), retain: false, qos: Qos::AtLeastOnce }
}

fn persistent(client_id: &str) -> ClientConfig {
    ClientConfig { client_id: client_id.into(), persistent: true, ..ClientConfig::default() }
}

fn rules(store: StoreAcks) -> Rules {
    Rules { store, sessions: SessionsConfig::default(), ..Rules::default() }
}

fn drain(broker: &mut Broker<Sink>, store: &mut MemoryStore) -> usize {
    let ops: Vec<_> = std::iter::from_fn(|| broker.poll_store_op()).collect();
    store.apply(&ops).unwrap();
    ops.len()
}

#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

#[test]
fn queued_while_offline_then_resent_and_acknowledged_after_the_commit() {
    let now = start();
    let mut broker = Broker::new(rules(StoreAcks::Immediate), 0);
    let mut store = MemoryStore::new();
    let mut sub = Peer::connect(&mut broker, now, "sub", persistent("device"));
    assert_eq!(sub.session_present(), Some(false));
    sub.subscribe_qos1(&mut broker, now, "cmd/#");
    let _ = broker.close_session(sub.hold.unwrap(), Departure::Lost, now, 1);
    drain(&mut broker, &mut store);

    let mut publisher = Peer::connect(&mut broker, now, "pub", ClientConfig::default());
    for i in 0..3u8 {
        publisher.client.publish_qos1(now, "cmd/go", &[i], false).unwrap();
    }
    publisher.exchange(&mut broker, now);
    // Immediate: nothing acknowledged before the queued messages are written.
    assert_eq!(publisher.held.len(), 3);
    assert!(!publisher.events.iter().any(|e| matches!(e, ClientEvent::Published { .. })));
    assert_eq!(drain(&mut broker, &mut store), 3, "one PutQueued each");
    assert_eq!(store.load_queued().unwrap().len(), 3);

    let sub = Peer::connect(&mut broker, now, "sub2", persistent("device"));
    assert_eq!(sub.session_present(), Some(true));
    let got: Vec<u8> = sub.messages().iter().map(|(payload, _)| payload[0]).collect();
    assert_eq!(got, vec![0, 1, 2], "in order, once each");
    drain(&mut broker, &mut store);
    assert!(store.load_queued().unwrap().is_empty(), "acknowledged messages leave the store");
}

#[test]
fn in_flight_messages_are_resent_with_dup_after_a_lost_connection() {
    let now = start();
    let mut broker = Broker::new(rules(StoreAcks::Batched), 0);
    let mut sub = Peer::connect(&mut broker, now, "sub", persistent("device"));
    sub.subscribe_qos1(&mut broker, now, "cmd/#");
    let mut publisher = Peer::connect(&mut broker, now, "pub", ClientConfig::default());
    publisher.client.publish_qos1(now, "cmd/go", b"x", false).unwrap();
    publisher.exchange(&mut broker, now);
    // Batched: acknowledged once queued.
    assert!(publisher.events.iter().any(|e| matches!(e, ClientEvent::Published { .. })));
    let hold = sub.hold.unwrap();
    // The shell's pump for the subscriber's loop: the message goes out, but
    // the subscriber never reads it.
    assert_eq!(broker.transmit(hold, &mut sub.session), 1);
    let _ = broker.close_session(hold, Departure::Lost, now, 1);
    let sub = Peer::connect(&mut broker, now, "sub2", persistent("device"));
    assert_eq!(sub.messages(), vec![(b"x".to_vec(), true)]);
}

#[test]
fn will_on_a_lost_connection_only() {
    let now = start();
    let mut broker = Broker::new(rules(StoreAcks::None), 0);
    let mut watcher = status_watcher(&mut broker, now);
    let will = gone_will();
    let config = ClientConfig { client_id: "dev".into(), will: Some(will), ..ClientConfig::default() };

    let clean = Peer::connect(&mut broker, now, "dev1", config.clone());
    let routed = broker.close_session(clean.hold.unwrap(), Departure::Clean, now, 1);
    assert!(routed.pumps.is_empty() && routed.deliveries.is_empty(), "no will after Disconnect");

    let lost = Peer::connect(&mut broker, now, "dev2", config);
    let routed = broker.close_session(lost.hold.unwrap(), Departure::Lost, now, 1);
    assert_eq!(routed.pumps.as_slice(), &[Sink::Conn("watcher")]);
    watcher.pump(&mut broker, &routed);
    watcher.exchange(&mut broker, now);
    assert_eq!(watcher.messages(), vec![(b"gone".to_vec(), false)]);
}

#[test]
fn restored_from_the_store_after_a_kill_then_expired() {
    let now = start();
    let mut store = MemoryStore::new();
    {
        let mut broker = Broker::new(rules(StoreAcks::Batched), 0);
        let mut sub = Peer::connect(&mut broker, now, "sub", persistent("device"));
        sub.subscribe_qos1(&mut broker, now, "cmd/#");
        let _ = broker.close_session(sub.hold.unwrap(), Departure::Lost, now, 1);
        let mut publisher = Peer::connect(&mut broker, now, "pub", ClientConfig::default());
        publisher.client.publish_qos1(now, "cmd/go", b"kept", false).unwrap();
        publisher.exchange(&mut broker, now);
        drain(&mut broker, &mut store);
        // kill -9: only the store is left.
    }
    let mut broker = Broker::new(rules(StoreAcks::Batched), 0);
    let routed =
        broker.restore_sessions(now, 2, store.load_sessions().unwrap(), store.load_queued().unwrap(), Sink::Session);
    assert!(routed.deliveries.is_empty());
    assert_eq!(broker.sessions().persistent_len(), 1);

    // A publish after the restart reaches the restored subscription too.
    let mut publisher = Peer::connect(&mut broker, now, "pub", ClientConfig::default());
    publisher.client.publish_qos1(now, "cmd/go", b"new", false).unwrap();
    publisher.exchange(&mut broker, now);
    let sub = Peer::connect(&mut broker, now, "sub", persistent("device"));
    // A restored message may have been sent before the kill: DUP.
    assert_eq!(sub.messages(), vec![(b"kept".to_vec(), true), (b"new".to_vec(), false)]);

    let _ = broker.close_session(sub.hold.unwrap(), Departure::Clean, now, 3);
    let deadline = broker.poll_session_timeout().expect("an offline session expires");
    assert_eq!(broker.handle_session_timeout(deadline - Duration::from_secs(1)), 0);
    assert_eq!(broker.handle_session_timeout(deadline), 1);
    assert_eq!(broker.sessions().persistent_len(), 0);
}

#[test]
fn a_takeover_publishes_the_old_connections_will_and_its_late_close_changes_nothing() {
    let now = start();
    let mut broker = Broker::new(rules(StoreAcks::None), 0);
    let mut watcher = status_watcher(&mut broker, now);
    let will = gone_will();
    let config =
        ClientConfig { client_id: "dev".into(), will: Some(will), persistent: true, ..ClientConfig::default() };
    let mut first = Peer::connect(&mut broker, now, "dev1", config.clone());
    first.subscribe_qos1(&mut broker, now, "cmd/#");

    // The same client id again: the first connection is taken over and its
    // will published, as MQTT does.
    let mut second = ClientSession::new(&config, now).unwrap();
    second.connect(now);
    let bytes = second.poll_transmit().unwrap().to_vec();
    let mut session = Session::new(now, &SessionConfig::default());
    let Ok(Step::Request { request: Request::Connect { client_id, session: asked, .. }, .. }) =
        session.handle_input(now, &bytes)
    else {
        panic!("a Connect")
    };
    let answer = broker.handle_session_connect(
        &mut session,
        Sink::Conn("dev2"),
        client_id,
        asked,
        Ok(Identity::Anonymous),
        now,
        ORIGIN,
        Sink::Session,
    );
    assert_eq!(answer.effects.taken_over, Some(Sink::Conn("dev1")), "the first connection is told");
    assert_eq!(answer.routed.pumps.as_slice(), &[Sink::Conn("watcher")], "the will is queued for the watcher");
    watcher.pump(&mut broker, &answer.routed);
    watcher.exchange(&mut broker, now);
    assert_eq!(watcher.messages(), vec![(b"gone".to_vec(), false)]);

    // The first connection's close, after the takeover, holds a stale token.
    let routed = broker.close_session(first.hold.unwrap(), Departure::Lost, now, 1);
    assert!(routed.pumps.is_empty() && routed.deliveries.is_empty(), "no second will");
    let hold = answer.hold.expect("the second connection holds the session");
    assert_eq!(broker.session_conn(hold.id), Some(&Sink::Conn("dev2")), "still delivered to the second");

    // A pump that reaches the first connection late sends it nothing: its
    // successor gets the message.
    watcher.client.publish_qos1(now, "cmd/x", b"for dev", false).unwrap();
    watcher.exchange(&mut broker, now);
    assert_eq!(broker.transmit(first.hold.unwrap(), &mut first.session), 0, "the old connection");
    assert_eq!(broker.transmit(hold, &mut session), 1, "the new one");

    // Nor does a Subscribe that reaches the broker from it late.
    first.subscribe_qos1(&mut broker, now, "other/#");
    let filters: Vec<&str> =
        broker.sessions().get(hold.id).unwrap().subscriptions().iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(filters, ["cmd/#"], "the session keeps its successor's subscriptions");
}

#[test]
fn a_session_refused_over_the_limit_takes_nothing_from_the_connection_holding_its_id() {
    let now = start();
    let sessions = SessionsConfig { max_sessions: 1, ..SessionsConfig::default() };
    let mut broker = Broker::new(Rules { sessions, ..rules(StoreAcks::None) }, 0);
    let _first = Peer::connect(&mut broker, now, "first", persistent("first"));
    let holder =
        Peer::connect(&mut broker, now, "holder", ClientConfig { client_id: "b".into(), ..Default::default() });

    let mut refused = Peer::connect(&mut broker, now, "newcomer", persistent("b"));
    assert_eq!(refused.hold, None);
    assert!(refused.session.is_closed());
    refused.exchange(&mut broker, now);
    assert!(
        refused.events.iter().any(|e| matches!(e, ClientEvent::Disconnected(reason) if reason.code == 9)),
        "Disconnect 9: {:?}",
        refused.events
    );
    let hold = holder.hold.expect("connected");
    assert_eq!(broker.session_conn(hold.id), Some(&Sink::Conn("holder")), "the holder keeps its session");
    assert!(broker.router().clients(tinymq_core::NamespaceId::PUBLIC).any(|c| &**c.client_id == "b"));
}
