//! The one publish rule, for every transport: a message on a topic in a
//! namespace becomes the topic's stored value when retained (an empty
//! payload deletes the value, and is still delivered), goes into the
//! matching Moustique clients' PICKUP queues, and is returned with its
//! other receivers and the store write it makes.
//!
//! [`Broker::publish`](crate::broker::Broker::publish) runs it on the
//! broker's parts; the HTTP service, which is lent those parts one by one,
//! calls it directly. A live publish that changes nothing runs
//! [`Router::route`] alone (see
//! [`Broker::route_live`](crate::broker::Broker::route_live)).

use std::sync::Arc;

use smallvec::SmallVec;

use crate::router::{Delivery, NamespaceId, Router};
use crate::store::StoreOp;
use crate::topic::TopicName;

/// What a publish did ([`publish`], [`Broker::publish`](crate::broker::Broker::publish)).
#[derive(Debug, Default)]
#[must_use]
pub struct Published<S> {
    /// Receivers for the shell to move the delivery to: every matching
    /// subscriber but the Moustique clients, whose queues got it here.
    pub receivers: SmallVec<[S; 4]>,
    /// Moustique clients' queues the delivery went into.
    pub queued: usize,
    /// The store write of a changed stored value (a delete for an empty
    /// payload), for the shell to submit before it lets the broker go, so
    /// the store sees writes to a topic in the order they were made.
    pub store: Option<StoreOp>,
}

/// Receivers that are queues the broker holds (the Moustique clients'
/// PICKUP queues): a publish fills them itself.
pub trait Queues<S> {
    /// Whether `sink` is one of these queues.
    fn holds(&self, sink: &S) -> bool;
    /// Queues `delivery` for each of `sinks` that is one of these queues;
    /// returns how many took it.
    fn push(&mut self, sinks: &[S], delivery: &Arc<Delivery>) -> usize;
}

/// Publishes `delivery` on `topic` in `namespace` (see the module docs);
/// the receivers among `queues` get it here.
pub fn publish<S: Clone>(
    router: &mut Router<S>,
    queues: &mut impl Queues<S>,
    namespace: NamespaceId,
    topic: TopicName<'_>,
    delivery: &Arc<Delivery>,
    retain: bool,
) -> Published<S> {
    let mut receivers = SmallVec::new();
    let outcome = router.publish(namespace, topic, delivery, retain, &mut receivers);
    let store = outcome.stored.then(|| StoreOp::of_value(router.namespace_name(namespace), delivery.message()));
    let mut queued = 0;
    if receivers.iter().any(|sink| queues.holds(sink)) {
        queued = queues.push(&receivers, delivery);
        receivers.retain(|sink: &mut S| !queues.holds(sink));
    }
    Published { receivers, queued, store }
}
