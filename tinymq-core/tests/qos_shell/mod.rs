//! A reference shell for acknowledged delivery, on a virtual clock and
//! with no sockets: binary [`Session`]s, one [`Router`] and the durable
//! [`Sessions`] wired the way an event loop must wire them, and
//! [`ClientSession`]s as the peers. The store is a [`MemoryStore`] that a
//! "kill -9" keeps while everything else is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinymq_core::client::{ClientConfig, ClientEvent, ClientSession};
use tinymq_core::durable::{
    ConnectionToken, Departure, SessionId, SessionKey, SessionView, Sessions, SessionsConfig, WillMessage,
};
use tinymq_core::store::{MemoryStore, Store};
use tinymq_core::{
    Delivery, Message, NamespaceId, Qos, ReasonCode, Request, Router, Session, SessionConfig, Step, SubscriberId,
    TopicLimits, TopicName,
};

/// The broker's side of one connection.
pub struct Conn {
    pub session: Session,
    pub key: Option<SessionKey>,
    pub id: Option<SessionId>,
    pub token: Option<ConnectionToken>,
    /// The close was handled (will, session state).
    pub released: bool,
}

/// The broker: its state and every connection it has had.
pub struct Broker {
    pub now: Instant,
    pub unix: u64,
    pub config: SessionConfig,
    /// Sinks are sessions: a persistent one keeps its subscriber while
    /// it has no connection.
    pub router: Router<SessionId>,
    pub sessions: Sessions,
    /// Router subscriber and connection of each session.
    pub slots: HashMap<SessionId, (SubscriberId, Option<usize>)>,
    pub conns: Vec<Conn>,
    pub store: MemoryStore,
    /// Wills published, as (client id, topic, payload).
    pub wills: Vec<(String, String, Vec<u8>)>,
}

impl Broker {
    #[allow(clippy::disallowed_methods)]
    pub fn new(config: SessionConfig, sessions: SessionsConfig) -> Self {
        Broker {
            now: Instant::now(),
            unix: 1_700_000_000,
            config,
            router: Router::new(),
            sessions: Sessions::new(sessions),
            slots: HashMap::new(),
            conns: Vec::new(),
            store: MemoryStore::new(),
            wills: Vec::new(),
        }
    }

    /// kill -9 and a restart: all that is left is the store.
    pub fn restart(self, sessions: SessionsConfig) -> Self {
        let mut broker = Broker::new(self.config, sessions);
        broker.now = self.now + Duration::from_secs(1);
        broker.unix = self.unix + 1;
        broker.store = self.store;
        let stored = broker.store.load_sessions().unwrap();
        let queued = broker.store.load_queued().unwrap();
        let wills = broker.sessions.restore(broker.now, broker.unix, stored, queued);
        let restored: Vec<(SessionId, Vec<_>)> = broker
            .sessions
            .iter()
            .map(|(id, view)| (id, view.subscriptions().iter().map(|(f, _)| f.clone()).collect()))
            .collect();
        for (id, filters) in restored {
            let subscriber = broker.subscriber(id);
            for filter in filters {
                broker.router.subscribe(subscriber, filter);
            }
        }
        for (id, will) in wills {
            let key = broker.sessions.get(id).expect("restored").key().clone();
            broker.publish_will(&key, &will);
        }
        broker.flush_store();
        broker
    }

    fn subscriber(&mut self, id: SessionId) -> SubscriberId {
        if let Some((subscriber, _)) = self.slots.get(&id) {
            return *subscriber;
        }
        let subscriber = self.router.add_subscriber(NamespaceId::PUBLIC, id);
        self.slots.insert(id, (subscriber, None));
        subscriber
    }

    fn drop_slot(&mut self, id: SessionId) {
        if let Some((subscriber, _)) = self.slots.remove(&id) {
            self.router.remove_subscriber(subscriber);
        }
    }

    /// The session of client `client_id`, to look at.
    pub fn session(&self, client_id: &str) -> Option<SessionView<'_>> {
        self.sessions.get(self.sessions.find(&SessionKey::new("", client_id))?)
    }

    /// Every store op so far, applied: what the group-commit writer does.
    pub fn flush_store(&mut self) {
        let ops: Vec<_> = std::iter::from_fn(|| self.sessions.poll_store_op()).collect();
        self.store.apply(&ops).unwrap();
    }

    pub fn open(&mut self) -> usize {
        let session = Session::new(self.now, &self.config);
        self.conns.push(Conn { session, key: None, id: None, token: None, released: false });
        self.conns.len() - 1
    }

    /// Feeds bytes from the peer; returns how many were used.
    pub fn input(&mut self, index: usize, bytes: &[u8]) -> usize {
        let mut used = 0;
        loop {
            if !self.conns[index].session.wants_read() && !self.conns[index].session.is_closed() {
                break;
            }
            let now = self.now;
            let step = self.conns[index].session.handle_input(now, &bytes[used..]);
            match step {
                Ok(Step::Incomplete { .. }) => break,
                Err(_) => break,
                Ok(Step::Handled { consumed }) => used += consumed,
                Ok(Step::Request { consumed, request }) => {
                    self.execute(index, request);
                    used += consumed;
                }
            }
        }
        self.after(index);
        used
    }

    fn execute(&mut self, index: usize, request: Request<'_>) {
        match request {
            Request::Connect { client_id, session: request, .. } => {
                let key = SessionKey::new("", client_id);
                let before = self.sessions.find(&key);
                let opened = match self.sessions.open(&key, request) {
                    Ok(opened) => opened,
                    Err(refused) => {
                        let _ = self.conns[index].session.refuse(ReasonCode::TooManySessions, &refused.to_string());
                        self.conns[index].released = true;
                        return;
                    }
                };
                if let Some(old) = before
                    && let Some((_, Some(old_conn))) = self.slots.get(&old).copied()
                {
                    let _ = self.conns[old_conn].session.refuse(ReasonCode::SessionTakenOver, "session taken over");
                    self.conns[old_conn].released = true;
                }
                if let Some(will) = opened.taken_over_will {
                    self.publish_will(&key, &will);
                }
                if let Some(old) = before.filter(|old| *old != opened.id) {
                    self.drop_slot(old);
                }
                let subscriber = self.subscriber(opened.id);
                self.slots.insert(opened.id, (subscriber, Some(index)));
                let conn = &mut self.conns[index];
                conn.session.accept_session(key.client_id.clone(), opened.session_present);
                conn.key = Some(key);
                conn.id = Some(opened.id);
                conn.token = Some(opened.token);
                self.pump(opened.id);
            }
            Request::Publish { topic, payload, retain, qos, packet_id } => {
                let key = self.conns[index].key.clone().expect("connected");
                let message = Message {
                    topic: topic.as_str().into(),
                    payload: payload.into(),
                    from: key.client_id.clone(),
                    updated_time: self.unix,
                    ip: None,
                };
                self.route(topic, Delivery::new(message), retain, qos);
                if qos == Qos::AtLeastOnce {
                    // `--durability immediate`: acknowledged once committed.
                    self.flush_store();
                    let _ = self.conns[index].session.ack(packet_id);
                }
            }
            Request::Subscribe(filter, qos) => {
                let id = self.conns[index].id.expect("connected");
                let (subscriber, _) = self.slots[&id];
                self.sessions.subscribe(id, filter.clone(), qos);
                self.conns[index].session.sub_ack_qos(filter.as_str(), qos);
                self.router.subscribe(subscriber, filter);
            }
            Request::Unsubscribe(filter) => {
                let id = self.conns[index].id.expect("connected");
                let (subscriber, _) = self.slots[&id];
                self.sessions.unsubscribe(id, &filter);
                self.router.unsubscribe(subscriber, &filter);
                self.conns[index].session.unsub_ack(filter.as_str(), Ok(()));
            }
            Request::PubAck { packet_id } => {
                let id = self.conns[index].id.expect("connected");
                self.sessions.ack(id, packet_id);
                self.pump(id);
            }
            Request::Disconnect => self.release(index, Departure::Clean),
        }
    }

    /// Routes a message to every matching session at the lower of its
    /// QoS and the subscription's.
    fn route(&mut self, topic: TopicName<'_>, delivery: Arc<Delivery>, retain: bool, qos: Qos) {
        let mut sinks = Vec::new();
        let _ = self.router.publish(NamespaceId::PUBLIC, topic, &delivery, retain, &mut sinks);
        for id in sinks {
            let granted = self.sessions.subscription_qos(id, topic).unwrap_or(Qos::AtMostOnce);
            if qos.min(granted) == Qos::AtLeastOnce {
                self.sessions.enqueue(id, delivery.clone());
                self.pump(id);
            } else if let Some((_, Some(conn))) = self.slots.get(&id).copied() {
                let _ = self.conns[conn].session.deliver(&delivery);
                self.after(conn);
            }
        }
    }

    /// Sends what the session's window allows to its connection.
    fn pump(&mut self, id: SessionId) {
        let Some((_, Some(conn))) = self.slots.get(&id).copied() else { return };
        while !self.conns[conn].session.is_closed() {
            let Some(transmit) = self.sessions.poll_transmit(id) else { break };
            let _ = self.conns[conn].session.deliver_qos1(&transmit);
        }
        self.after(conn);
    }

    /// A connection that closed itself (protocol error, slow consumer) is
    /// released as lost.
    fn after(&mut self, index: usize) {
        if self.conns[index].session.is_closed() && !self.conns[index].released {
            self.release(index, Departure::Lost);
        }
    }

    /// The connection is gone, as `departure` says.
    pub fn release(&mut self, index: usize, departure: Departure) {
        let conn = &mut self.conns[index];
        if conn.released {
            return;
        }
        conn.released = true;
        let (Some(key), Some(id), Some(token)) = (conn.key.clone(), conn.id, conn.token) else { return };
        if let Some(will) = self.sessions.close(self.now, self.unix, id, token, departure) {
            self.publish_will(&key, &will);
        }
        match self.sessions.get(id) {
            // Still held (by this connection's successor, or waiting for one).
            Some(_) => {
                if let Some(slot) = self.slots.get_mut(&id)
                    && slot.1 == Some(index)
                {
                    slot.1 = None;
                }
            }
            None => self.drop_slot(id),
        }
    }

    fn publish_will(&mut self, key: &SessionKey, will: &WillMessage) {
        self.wills.push((key.client_id.to_string(), will.topic.to_string(), will.payload.to_vec()));
        let delivery = Delivery::new(will.message(&key.client_id, self.unix));
        let topic = TopicName::new(&will.topic, &TopicLimits::default()).expect("checked at Connect");
        self.route(topic, delivery, will.retain, will.qos);
    }

    /// Moves the virtual clock and runs every timer.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.unix += by.as_secs();
        for index in 0..self.conns.len() {
            if self.conns[index].session.poll_timeout().is_some_and(|at| at <= self.now) {
                let _ = self.conns[index].session.handle_timeout(self.now);
                self.after(index);
            }
        }
        if self.sessions.poll_timeout().is_some_and(|at| at <= self.now) {
            for (id, _) in self.sessions.handle_timeout(self.now) {
                self.drop_slot(id);
            }
        }
        self.flush_store();
    }
}

/// A client and the connection it has, if any.
pub struct Peer {
    pub client: ClientSession,
    pub conn: Option<usize>,
    /// Bytes from the broker not yet decoded by the client.
    pending: Vec<u8>,
    /// Bytes from the client the broker has not read yet.
    unread: Vec<u8>,
    pub events: Vec<ClientEvent>,
}

impl Peer {
    pub fn new(broker: &Broker, config: ClientConfig) -> Self {
        Peer {
            client: ClientSession::new(&config, broker.now).unwrap(),
            conn: None,
            pending: Vec::new(),
            unread: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A peer with `config`, connected ([`Peer::connect`]).
    pub fn connected(broker: &mut Broker, config: ClientConfig) -> Self {
        let mut peer = Peer::new(broker, config);
        peer.connect(broker);
        peer
    }

    /// Opens a connection and runs it until quiet.
    pub fn connect(&mut self, broker: &mut Broker) {
        self.conn = Some(broker.open());
        self.pending.clear();
        self.unread.clear();
        self.client.connect(broker.now);
        self.run(broker);
    }

    /// The socket breaks: the broker sees a reset, the client its error.
    pub fn cut(&mut self, broker: &mut Broker) {
        if let Some(conn) = self.conn.take() {
            broker.release(conn, Departure::Lost);
        }
        self.client.reset();
    }

    /// A clean Disconnect.
    pub fn disconnect(&mut self, broker: &mut Broker) {
        self.client.disconnect(broker.now);
        self.run(broker);
        if let Some(conn) = self.conn.take() {
            broker.release(conn, Departure::Clean);
        }
        self.client.reset();
    }

    /// Moves bytes both ways until neither side has anything to say.
    /// Events are taken (and so QoS 1 messages acknowledged) only when
    /// `take` says so.
    pub fn exchange(&mut self, broker: &mut Broker, take: bool) {
        let Some(conn) = self.conn else { return };
        for _ in 0..10_000 {
            let mut moved = false;
            if let Some(bytes) = self.client.poll_transmit() {
                self.unread.extend_from_slice(bytes);
                let len = bytes.len();
                self.client.advance_transmit(len);
                moved = true;
            }
            if !self.unread.is_empty() && !broker.conns[conn].released {
                let used = broker.input(conn, &self.unread);
                self.unread.drain(..used);
                moved |= used > 0;
            }
            let session = &mut broker.conns[conn].session;
            let mut slices: [&[u8]; 64] = [&[]; 64];
            let n = session.outbound().front_slices(&mut slices);
            if n > 0 {
                let total: usize = slices[..n].iter().map(|s| s.len()).sum();
                for slice in &slices[..n] {
                    self.pending.extend_from_slice(slice);
                }
                session.outbound_mut().consume(total);
                moved = true;
            }
            if !self.pending.is_empty() && self.client.state() != tinymq_core::client::ConnectionState::Idle {
                match self.client.handle_input(broker.now, &self.pending) {
                    Ok(used) => drop(self.pending.drain(..used)),
                    Err(_) => self.pending.clear(),
                }
            }
            if take {
                while let Some(event) = self.client.poll_event() {
                    self.events.push(event);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the exchange never settles");
    }

    /// Hands the client's events to the application (queueing PubAcks)
    /// without sending anything.
    pub fn take_events(&mut self) {
        while let Some(event) = self.client.poll_event() {
            self.events.push(event);
        }
    }

    pub fn run(&mut self, broker: &mut Broker) {
        self.exchange(broker, true);
    }

    /// Payloads of QoS 1 messages received, with their DUP flags.
    pub fn messages(&self) -> Vec<(String, Vec<u8>, bool)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                ClientEvent::Message { topic, payload, dup, .. } => Some((topic.clone(), payload.clone(), *dup)),
                _ => None,
            })
            .collect()
    }

    /// Packet ids the broker acknowledged.
    pub fn acked(&self) -> Vec<u16> {
        self.events
            .iter()
            .filter_map(|event| match event {
                ClientEvent::Published { packet_id } => Some(*packet_id),
                _ => None,
            })
            .collect()
    }

    /// The reason of the Disconnect the broker sent, if it sent one.
    pub fn disconnected(&self) -> Option<u8> {
        self.events.iter().find_map(|event| match event {
            ClientEvent::Disconnected(reason) => Some(reason.code),
            _ => None,
        })
    }
}
