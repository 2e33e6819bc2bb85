//! A bridge's out-queue at QoS 1, as a durable session: a persistent
//! session of [`Sessions`] filed under a key no client can hold, whose
//! router subscriber holds the bridge's `out` filters at QoS 1. So what a
//! local publisher sends the bridge's way is queued (and stored) by the
//! same rule as for any durable session's QoS 1 subscription, and its
//! PUBACK under `--durability immediate` waits for that write's commit;
//! the far side's PUBACK deletes it. A restart restores it as any stored
//! session, and the bridge sends it again once connected, in order.
//!
//! The shell's bridge is the session's "connection": its sink takes the
//! QoS 0 deliveries (queued with [`Broker::bridge_enqueue`], so the far
//! side gets every message at QoS 1, as before), and [`Routed::pumps`]
//! names it when messages were queued; it sends them with
//! [`Broker::bridge_transmit`] within its MQTT window, hands the far
//! side's PUBACKs to [`Broker::bridge_acked`], and calls
//! [`Broker::bridge_resend`] on each new connection.
//!
//! [`Sessions`]: crate::durable::Sessions

use std::sync::Arc;

use super::{Broker, Routed, SessionHold, SessionSlot};
use crate::broker::rules::subscribe;
use crate::codec::Qos;
use crate::durable::{QueueFull, QueueLimits, SessionId, SessionKey, SessionRequest, TooManySessions, Transmit};
use crate::http::service::SinkKind;
use crate::router::{Delivery, NamespaceId};
use crate::topic::{Filter, TopicName};

/// The namespace name bridges' sessions are filed under. No client can be
/// in it: a user's name holds no `:` ([`crate::auth::check_user_name`]),
/// and the public namespace's name is empty.
pub const BRIDGE_NAMESPACE: &str = ":bridge";

/// The key of the out-queue of bridge `index` of broker `broker_id`: the
/// index and the id, so a bridge finds its own after a restart, and the
/// same configuration under another id does not take it.
pub fn bridge_session_key(index: usize, broker_id: &str) -> SessionKey {
    SessionKey { namespace: BRIDGE_NAMESPACE.into(), client_id: format!("{index}/{broker_id}").into() }
}

/// Whether `key` is a bridge's out-queue (see [`bridge_session_key`]).
pub fn is_bridge_session(key: &SessionKey) -> bool {
    &*key.namespace == BRIDGE_NAMESPACE
}

impl<S: Clone + SinkKind> Broker<S> {
    /// Opens bridge `key`'s out-queue ([`bridge_session_key`]) for a bridge
    /// of `namespace` whose `out` filters are `filters`, its queue bound
    /// by `limits`, its deliveries to `sink`: a stored one (restored at
    /// start) is resumed with its messages, else a new one is made. Its
    /// subscriber in `namespace` holds the filters at QoS 1 (a filter no
    /// longer configured is dropped). The bridge holds it while the broker
    /// runs. Its writes come from [`Broker::poll_store_op`].
    pub fn open_bridge_session(
        &mut self,
        key: &SessionKey,
        namespace: NamespaceId,
        filters: &[Filter],
        limits: QueueLimits,
        sink: S,
        session_sink: impl Fn(SessionId) -> S,
    ) -> Result<SessionHold, TooManySessions> {
        let before = self.sessions.find(key);
        let request = SessionRequest { persistent: true, ..SessionRequest::default() };
        let opened = self.sessions.open(key, request)?;
        if let Some(old) = before.filter(|old| *old != opened.id) {
            self.drop_slot(old);
        }
        self.sessions.set_queue_limits(opened.id, limits);
        // A restored one has no subscriber yet: it is made in the
        // bridge's namespace, which the key does not name.
        let slot = self.slots.entry(opened.id).or_insert(SessionSlot { subscriber: None, conn: None, namespace });
        if slot.namespace != namespace
            && let Some(old) = slot.subscriber.take()
        {
            self.router.remove_subscriber(old);
        }
        slot.namespace = namespace;
        slot.conn = Some(sink);
        let id = opened.id;
        let stale: Vec<Filter> = self.sessions.get(id).map_or_else(Vec::new, |view| {
            view.subscriptions().iter().map(|(held, _)| held.clone()).filter(|held| !filters.contains(held)).collect()
        });
        for filter in stale {
            self.unsubscribe_session(id, &filter);
        }
        if let Some(own) = self.session_subscriber(id, session_sink) {
            for filter in filters {
                self.sessions.subscribe(id, filter.clone(), Qos::AtLeastOnce);
                // The stored values the filter matches stay here: the far
                // side has its own.
                let _values = subscribe(&mut self.router, own, filter.clone());
            }
        }
        Ok(SessionHold { id, token: opened.token })
    }

    /// Queues `delivery` in the bridge's out-queue: a message that reached
    /// the bridge at QoS 0 goes out at QoS 1 too, and kept. [`QueueFull`]:
    /// dropped (counted in the sessions' figures too). Its write comes
    /// from [`Broker::poll_store_op`].
    pub fn bridge_enqueue(&mut self, hold: SessionHold, delivery: Arc<Delivery>) -> Result<u64, QueueFull> {
        if !self.holds(hold) {
            return Err(QueueFull);
        }
        self.sessions.enqueue(hold.id, delivery).unwrap_or(Err(QueueFull))
    }

    /// The next message of the out-queue to send, if fewer than `window`
    /// are in flight (resends after [`Broker::bridge_resend`] first).
    pub fn bridge_transmit(&mut self, hold: SessionHold, window: usize) -> Option<Transmit> {
        if !self.holds(hold) {
            return None;
        }
        self.sessions.poll_transmit_within(hold.id, window)
    }

    /// The far side acknowledged `packet_id` (or the message can never be
    /// sent, and is given up): it leaves the queue and the store. Its
    /// sequence number, `None` for an id not in flight.
    pub fn bridge_acked(&mut self, hold: SessionHold, packet_id: u16) -> Option<u64> {
        if !self.holds(hold) {
            return None;
        }
        self.sessions.ack(hold.id, packet_id)
    }

    /// The bridge has a new connection: what was in flight goes again,
    /// with DUP and its packet id, before anything new.
    pub fn bridge_resend(&mut self, hold: SessionHold) {
        if self.holds(hold) {
            self.sessions.resend(hold.id);
        }
    }

    /// The out-queue's messages held, of them in flight, and how many it
    /// dropped (full) since start.
    pub fn bridge_queue(&self, hold: SessionHold) -> (usize, usize, u64) {
        match self.sessions.get(hold.id).filter(|view| view.is_held_by(hold.token)) {
            Some(view) => (view.queue().len(), view.queue().inflight(), view.queue().dropped()),
            None => (0, 0, 0),
        }
    }

    /// A publish at `qos` that came in through the bridge holding `hold`:
    /// as [`Broker::publish_qos`], but never queued back into the bridge's
    /// own out-queue (what came from the bridge does not go back).
    pub fn publish_qos_from_bridge(
        &mut self,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        delivery: Arc<Delivery>,
        retain: bool,
        qos: Qos,
        hold: SessionHold,
    ) -> Routed<S> {
        let mut routed = Routed::default();
        self.route_qos_except(namespace, topic, delivery, retain, qos, Some(hold.id), &mut routed);
        routed
    }

    fn holds(&self, hold: SessionHold) -> bool {
        self.sessions.get(hold.id).is_some_and(|view| view.is_held_by(hold.token))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::broker::{Rules, StoreAcks};
    use crate::durable::SessionsConfig;
    use crate::message::Message;
    use crate::store::{MemoryStore, Store, StoreOp};
    use crate::topic::TopicLimits;

    /// A sink: the bridge's own (`Bridge`), or a session's.
    #[derive(Clone, Debug, PartialEq)]
    enum TestSink {
        Bridge,
        Session(SessionId),
    }

    impl SinkKind for TestSink {
        fn http_client(&self) -> Option<crate::http::clients::HttpClientId> {
            None
        }

        fn transport(&self) -> &'static str {
            "test"
        }

        fn session(&self) -> Option<SessionId> {
            match self {
                TestSink::Session(id) => Some(*id),
                TestSink::Bridge => None,
            }
        }
    }

    fn new_broker() -> Broker<TestSink> {
        let rules = Rules { store: StoreAcks::Immediate, sessions: SessionsConfig::default(), ..Rules::default() };
        Broker::new(rules, 0)
    }

    fn filter(text: &str) -> Filter {
        Filter::new(text, &TopicLimits::default()).unwrap()
    }

    fn limits(max_messages: usize) -> QueueLimits {
        QueueLimits { max_inflight: 2, max_messages, max_bytes: usize::MAX }
    }

    fn message(topic: &str, n: u32) -> Arc<Delivery> {
        Delivery::new(Message {
            topic: topic.into(),
            payload: n.to_be_bytes().to_vec().into(),
            from: "p".into(),
            updated_time: 0,
            ip: None,
        })
    }

    fn publish(broker: &mut Broker<TestSink>, topic: &str, n: u32) -> Routed<TestSink> {
        publish_as(broker, topic, n, false)
    }

    fn publish_as(broker: &mut Broker<TestSink>, topic: &str, n: u32, retain: bool) -> Routed<TestSink> {
        let name = TopicName::new(topic, &TopicLimits::default()).unwrap();
        broker.publish_qos(NamespaceId::PUBLIC, name, message(topic, n), retain, Qos::AtLeastOnce)
    }

    fn drain(broker: &mut Broker<TestSink>, store: &mut MemoryStore) -> Vec<StoreOp> {
        let ops: Vec<_> = std::iter::from_fn(|| broker.poll_store_op()).collect();
        store.apply(&ops).unwrap();
        ops
    }

    fn payload(transmit: &Transmit) -> u32 {
        u32::from_be_bytes(transmit.delivery.message().payload[..].try_into().unwrap())
    }

    fn open(broker: &mut Broker<TestSink>, max_messages: usize) -> SessionHold {
        let key = bridge_session_key(0, "A");
        broker
            .open_bridge_session(
                &key,
                NamespaceId::PUBLIC,
                &[filter("out/#")],
                limits(max_messages),
                TestSink::Bridge,
                TestSink::Session,
            )
            .unwrap()
    }

    #[test]
    fn a_qos_1_publish_is_queued_and_stored_for_the_bridge_and_deleted_on_the_far_sides_puback() {
        let mut broker = new_broker();
        let mut store = MemoryStore::new();
        let hold = open(&mut broker, 10);
        drain(&mut broker, &mut store);
        let routed = publish(&mut broker, "out/a", 1);
        assert_eq!(routed.pumps.as_slice(), [TestSink::Bridge], "the bridge is told to send");
        assert!(routed.deliveries.is_empty(), "not also delivered at QoS 0");
        let ops = drain(&mut broker, &mut store);
        assert!(matches!(&ops[..], [StoreOp::PutQueued { namespace, seq: 1, .. }] if namespace == BRIDGE_NAMESPACE));
        assert!(publish(&mut broker, "elsewhere", 2).pumps.is_empty(), "outside the out filters");
        let transmit = broker.bridge_transmit(hold, 64).unwrap();
        assert_eq!((payload(&transmit), transmit.dup), (1, false));
        assert_eq!(broker.bridge_queue(hold), (1, 1, 0));
        assert_eq!(broker.bridge_acked(hold, transmit.packet_id), Some(1));
        assert_eq!(broker.bridge_acked(hold, transmit.packet_id), None, "a repeated PUBACK");
        assert!(matches!(&drain(&mut broker, &mut store)[..], [StoreOp::DeleteQueued { seq: 1, .. }]));
        assert!(store.load_queued().unwrap().is_empty());
    }

    #[test]
    fn the_window_and_the_bound_hold_and_a_full_queue_drops_the_newest() {
        let mut broker = new_broker();
        let hold = open(&mut broker, 3);
        for n in 0..4 {
            let routed = publish(&mut broker, "out/a", n);
            assert_eq!(routed.dropped, usize::from(n == 3), "message {n}");
            // Told of a drop too, to count it.
            assert_eq!(routed.pumps.as_slice(), [TestSink::Bridge], "message {n}");
        }
        assert_eq!(broker.bridge_enqueue(hold, message("out/b", 9)), Err(QueueFull));
        let sent: Vec<_> = std::iter::from_fn(|| broker.bridge_transmit(hold, 64)).collect();
        assert_eq!(sent.iter().map(payload).collect::<Vec<_>>(), [0, 1], "its own window of 2");
        assert!(broker.bridge_transmit(hold, 1).is_none(), "a narrower one (Receive Maximum)");
        // A new connection: the two in flight again, with DUP, first.
        broker.bridge_resend(hold);
        let again: Vec<_> = std::iter::from_fn(|| broker.bridge_transmit(hold, 64)).collect();
        assert_eq!(again.iter().map(|t| (payload(t), t.dup)).collect::<Vec<_>>(), [(0, true), (1, true)]);
        broker.bridge_acked(hold, again[0].packet_id);
        assert_eq!(broker.bridge_enqueue(hold, message("out/b", 9)), Ok(4), "room again");
        assert_eq!(broker.sessions().figures().dropped, 2);
        assert_eq!(broker.bridge_queue(hold), (3, 1, 2));
    }

    #[test]
    fn what_came_in_through_the_bridge_is_not_queued_back_out() {
        let mut broker = new_broker();
        let hold = open(&mut broker, 10);
        let name = TopicName::new("out/a", &TopicLimits::default()).unwrap();
        let routed = broker.publish_qos_from_bridge(
            NamespaceId::PUBLIC,
            name,
            message("out/a", 1),
            false,
            Qos::AtLeastOnce,
            hold,
        );
        assert!(routed.pumps.is_empty() && routed.deliveries.is_empty());
        assert_eq!(broker.bridge_queue(hold), (0, 0, 0));
    }

    #[allow(clippy::disallowed_methods)] // the virtual clock's start
    fn epoch() -> Instant {
        Instant::now()
    }

    #[test]
    fn after_a_restart_the_stored_messages_go_out_first_in_order_and_no_client_takes_them() {
        let mut broker = new_broker();
        let mut store = MemoryStore::new();
        let hold = open(&mut broker, 10);
        for n in 0..3 {
            // The last one published retained: still so after the restart.
            let _ = publish_as(&mut broker, "out/a", n, n == 2);
        }
        let first = broker.bridge_transmit(hold, 64).unwrap();
        broker.bridge_acked(hold, first.packet_id);
        let _in_flight = broker.bridge_transmit(hold, 64).unwrap();
        drain(&mut broker, &mut store);

        // Killed: a new broker loads the store.
        let mut broker = new_broker();
        let routed = broker.restore_sessions(
            epoch(),
            1_000,
            store.load_sessions().unwrap(),
            store.load_queued().unwrap(),
            TestSink::Session,
        );
        assert!(routed.deliveries.is_empty());
        assert_eq!(broker.router().subscription_count(), 0, "no subscriber until the bridge opens it");
        let hold = open(&mut broker, 10);
        assert_eq!(broker.router().subscription_count(), 1);
        let _ = publish(&mut broker, "out/a", 3);
        let sent: Vec<_> = std::iter::from_fn(|| broker.bridge_transmit(hold, 64)).collect();
        let sent_as = |t: &Transmit| (payload(t), t.dup, t.delivery.is_retained());
        assert_eq!(sent.iter().map(sent_as).collect::<Vec<_>>(), [(1, true, false), (2, true, true)]);
        for transmit in &sent {
            broker.bridge_acked(hold, transmit.packet_id);
        }
        assert_eq!(broker.bridge_transmit(hold, 64).map(|t| payload(&t)), Some(3), "then the new one");
        // Another bridge index or broker id is another queue.
        assert_ne!(bridge_session_key(1, "A"), bridge_session_key(0, "A"));
        assert_ne!(bridge_session_key(0, "B"), bridge_session_key(0, "A"));
    }
}
