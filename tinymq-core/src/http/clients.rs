//! Moustique's HTTP clients: named subscribers that have no connection of
//! their own. Messages for one are queued until it calls PICKUP; one that
//! stays away for the timeout is dropped with its queue and subscriptions.
//!
//! The registry keeps what the router does not: each client's queue, its
//! filters (PICKUP groups by them) and what CLIENTS shows. The router holds
//! the client's subscriptions under a [`SubscriberId`] whose sink names the
//! client's [`HttpClientId`].
//!
//! With a store ([`HttpClients::keep_store_writes`]), every change to a
//! queue also yields its store write, drained with
//! [`HttpClients::poll_store_op`] in the order made: a put per message
//! queued (numbered per client), and one ranged delete for what a PICKUP
//! handed out, what a full queue dropped, or the queue of a client that is
//! dropped.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::service::SinkKind;
use crate::publish::Queues;
use crate::router::{Delivery, NamespaceId, SubscriberId};
use crate::store::{StoreOp, StoredHttpQueued};
use crate::topic::{Filter, TopicLimits, TopicName};

/// Bounds on HTTP clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpClientLimits {
    /// Messages queued per client; the oldest go first (default 10,000).
    pub queue_size: usize,
    /// Payload bytes queued per client, bounded the same way (default
    /// 16 MiB): a PICKUP answer stays a sane size.
    pub queue_bytes: usize,
    /// A client not seen by PICKUP or SUBSCRIBE for this long is dropped
    /// (default 5 minutes, as Moustique).
    pub timeout: Duration,
    /// Registered clients at once (default 100,000); SUBSCRIBE from a new
    /// client beyond it is refused.
    pub max_clients: usize,
}

impl Default for HttpClientLimits {
    fn default() -> Self {
        HttpClientLimits {
            queue_size: 10_000,
            queue_bytes: 16 << 20,
            timeout: Duration::from_secs(300),
            max_clients: 100_000,
        }
    }
}

/// A client's handle: slot and generation, like [`SubscriberId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HttpClientId {
    index: u32,
    generation: u32,
}

/// One registered client.
#[derive(Debug)]
pub struct HttpClient {
    /// Its name (the `client` parameter).
    pub name: Arc<str>,
    /// Its namespace.
    pub namespace: NamespaceId,
    /// Its subscriber in the router.
    pub subscriber: SubscriberId,
    /// Its filters, in the order it subscribed.
    pub filters: Vec<Filter>,
    /// The queue, each message with its sequence number (its store key).
    queue: VecDeque<(u64, Queued)>,
    queued_bytes: usize,
    /// The sequence number of the next message queued.
    next_seq: u64,
    /// Unix seconds of its first request.
    pub first_seen: u64,
    /// Unix seconds of its latest PICKUP or SUBSCRIBE.
    pub latest_pickup: u64,
    last_seen: Instant,
    /// Its requests so far.
    pub requests: u64,
    /// The address of its latest request.
    pub ip: Option<IpAddr>,
    /// Messages dropped from its full queue.
    pub dropped: u64,
    generation: u32,
}

impl HttpClient {
    /// Messages waiting for PICKUP.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The registry. See the module docs.
#[derive(Debug)]
pub struct HttpClients {
    limits: HttpClientLimits,
    slots: Vec<Option<HttpClient>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_name: HashMap<NamespaceId, HashMap<Arc<str>, HttpClientId>>,
    registered: usize,
    dropped_total: u64,
    expired_total: u64,
    /// The queues' store writes not yet drained; `None` without a store.
    writes: Option<VecDeque<QueueWrite>>,
}

/// A change to a queue for the store, until [`HttpClients::poll_store_op`]
/// names its namespace (the registry knows only the id).
#[derive(Debug)]
enum QueueWrite {
    Put { namespace: NamespaceId, client: Arc<str>, seq: u64, queued: Queued },
    Delete { namespace: NamespaceId, client: Arc<str>, from: u64, below: u64 },
}

/// A message in a client's queue, with the names of every client its
/// publish queued it for (the message object's `subscribers`), shared by
/// all their queues.
#[derive(Clone, Debug)]
pub struct Queued {
    /// The message.
    pub delivery: Arc<Delivery>,
    /// The clients it was queued for.
    pub subscribers: Arc<[Arc<str>]>,
}

/// What PICKUP returns: each filter with the messages queued under it.
pub type Pickup = Vec<(Filter, Vec<Queued>)>;

/// The Moustique clients' PICKUP queues, as the publish rule fills them.
impl<S: SinkKind> Queues<S> for HttpClients {
    fn holds(&self, sink: &S) -> bool {
        sink.http_client().is_some()
    }

    fn push(&mut self, sinks: &[S], delivery: &Arc<Delivery>) -> usize {
        self.push_to_all(sinks.iter().filter_map(SinkKind::http_client), delivery)
    }
}

impl HttpClients {
    /// An empty registry.
    pub fn new(limits: HttpClientLimits) -> Self {
        HttpClients {
            limits,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            registered: 0,
            dropped_total: 0,
            expired_total: 0,
            writes: None,
        }
    }

    /// From now on every change to a queue yields its store write, for
    /// [`Self::poll_store_op`]: for a broker with a store, set before any
    /// client registers.
    pub fn keep_store_writes(&mut self) {
        self.writes.get_or_insert_with(VecDeque::new);
    }

    /// Whether store writes wait in [`Self::poll_store_op`].
    pub fn has_store_ops(&self) -> bool {
        self.writes.as_ref().is_some_and(|writes| !writes.is_empty())
    }

    /// The queues' next store write, oldest first; `namespace_name` names
    /// a namespace (the router's
    /// [`namespace_name`](crate::router::Router::namespace_name)). Drain it
    /// after every change, under the same borrow, into the store's writer:
    /// a PICKUP's delete must not reach the store before the puts it
    /// covers.
    pub fn poll_store_op(&mut self, namespace_name: impl Fn(NamespaceId) -> Arc<str>) -> Option<StoreOp> {
        Some(match self.writes.as_mut()?.pop_front()? {
            QueueWrite::Put { namespace, client, seq, queued } => StoreOp::PutHttpQueued {
                namespace: namespace_name(namespace),
                client,
                seq,
                message: queued.delivery.message().clone(),
                subscribers: queued.subscribers,
            },
            QueueWrite::Delete { namespace, client, from, below } => {
                StoreOp::DeleteHttpQueued { namespace: namespace_name(namespace), client, from, below }
            }
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &HttpClientLimits {
        &self.limits
    }

    /// The client called `name` in `namespace`.
    pub fn find(&self, namespace: NamespaceId, name: &str) -> Option<HttpClientId> {
        self.by_name.get(&namespace)?.get(name).copied()
    }

    /// A live client.
    pub fn get(&self, id: HttpClientId) -> Option<&HttpClient> {
        self.slots.get(id.index as usize)?.as_ref().filter(|c| c.generation == id.generation)
    }

    fn get_mut(&mut self, id: HttpClientId) -> Option<&mut HttpClient> {
        self.slots.get_mut(id.index as usize)?.as_mut().filter(|c| c.generation == id.generation)
    }

    /// Every live client.
    pub fn iter(&self) -> impl Iterator<Item = &HttpClient> {
        self.slots.iter().flatten()
    }

    /// Registered clients.
    pub fn len(&self) -> usize {
        self.registered
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.registered == 0
    }

    /// Messages dropped from full queues, in all.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Clients dropped for inactivity, in all.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// Registers a new client; `subscriber` makes its router subscriber
    /// from the id it will have. `None` when the registry is full.
    pub fn register(
        &mut self,
        namespace: NamespaceId,
        name: &str,
        now: Instant,
        unix_time: u64,
        ip: Option<IpAddr>,
        subscriber: impl FnOnce(HttpClientId) -> SubscriberId,
    ) -> Option<HttpClientId> {
        if self.registered >= self.limits.max_clients {
            return None;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 clients")
            }
        };
        let generation = self.generations[index as usize];
        let id = HttpClientId { index, generation };
        let name: Arc<str> = name.into();
        self.slots[index as usize] = Some(HttpClient {
            name: name.clone(),
            namespace,
            subscriber: subscriber(id),
            filters: Vec::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_seq: 0,
            first_seen: unix_time,
            latest_pickup: unix_time,
            last_seen: now,
            requests: 0,
            ip,
            dropped: 0,
            generation,
        });
        self.by_name.entry(namespace).or_default().insert(name, id);
        self.registered += 1;
        Some(id)
    }

    /// Registers a client loaded from the store at start-up, as it was
    /// first seen at `first_seen`, with an empty queue. Its last-seen time
    /// is `now` and its latest pickup `unix_time`, the broker's start: the
    /// timeout counts from the start, because the time the broker was down
    /// is not time the client was silent (it could not have called). `None`
    /// when the registry is full or already holds the name.
    pub fn restore(
        &mut self,
        namespace: NamespaceId,
        name: &str,
        first_seen: u64,
        now: Instant,
        unix_time: u64,
        subscriber: impl FnOnce(HttpClientId) -> SubscriberId,
    ) -> Option<HttpClientId> {
        if self.find(namespace, name).is_some() {
            return None;
        }
        let id = self.register(namespace, name, now, unix_time, None, subscriber)?;
        if let Some(client) = self.get_mut(id) {
            client.first_seen = first_seen;
        }
        Some(id)
    }

    /// Records a request from the client (PICKUP or SUBSCRIBE), which
    /// keeps it alive.
    pub fn touch(&mut self, id: HttpClientId, now: Instant, unix_time: u64, ip: Option<IpAddr>) {
        if let Some(client) = self.get_mut(id) {
            client.last_seen = now;
            client.latest_pickup = unix_time;
            client.requests += 1;
            client.ip = ip;
        }
    }

    /// Adds a filter to the client's list; false if it held it already.
    pub fn subscribe(&mut self, id: HttpClientId, filter: Filter) -> bool {
        let Some(client) = self.get_mut(id) else { return false };
        if client.filters.contains(&filter) {
            return false;
        }
        client.filters.push(filter);
        true
    }

    /// Queues a delivery for each of `clients` (the Moustique receivers of
    /// one publish), dropping a client's oldest message when its queue is
    /// full; returns how many were queued (clients that are gone are not).
    pub fn push_to_all(
        &mut self,
        clients: impl Iterator<Item = HttpClientId> + Clone,
        delivery: &Arc<Delivery>,
    ) -> usize {
        let subscribers: Arc<[Arc<str>]> =
            clients.clone().filter_map(|id| self.get(id)).map(|c| c.name.clone()).collect();
        let queued = Queued { delivery: delivery.clone(), subscribers };
        clients.filter(|&id| self.push(id, &queued)).count()
    }

    /// Queues a message for the client, dropping its oldest message when
    /// the queue is full. False for a client that is gone.
    fn push(&mut self, id: HttpClientId, queued: &Queued) -> bool {
        let Some(seq) = self.get(id).map(|client| client.next_seq) else { return false };
        self.enqueue(id, seq, queued.clone(), true)
    }

    /// Queues `queued` as message `seq` of the client (`put`: with its
    /// store write), dropping its oldest messages while the queue is full.
    fn enqueue(&mut self, id: HttpClientId, seq: u64, queued: Queued, put: bool) -> bool {
        let HttpClientLimits { queue_size, queue_bytes, .. } = self.limits;
        let HttpClients { slots, writes, dropped_total, .. } = self;
        let Some(client) = slots.get_mut(id.index as usize).and_then(Option::as_mut) else { return false };
        if client.generation != id.generation {
            return false;
        }
        let size = queued.delivery.message().payload.len();
        // The sequence numbers dropped, and how many.
        let (mut dropped, mut count) = (None::<(u64, u64)>, 0);
        while !client.queue.is_empty()
            && (client.queue.len() >= queue_size.max(1) || client.queued_bytes + size > queue_bytes)
        {
            let Some((oldest, message)) = client.queue.pop_front() else { break };
            client.queued_bytes -= message.delivery.message().payload.len();
            dropped = Some((dropped.map_or(oldest, |(from, _)| from), oldest + 1));
            count += 1;
        }
        client.dropped += count;
        *dropped_total += count;
        if let (Some((from, below)), Some(writes)) = (dropped, writes.as_mut()) {
            let (namespace, client) = (client.namespace, client.name.clone());
            writes.push_back(QueueWrite::Delete { namespace, client, from, below });
        }
        client.queued_bytes += size;
        client.next_seq = client.next_seq.max(seq + 1);
        if put && let Some(writes) = writes {
            writes.push_back(QueueWrite::Put {
                namespace: client.namespace,
                client: client.name.clone(),
                seq,
                queued: queued.clone(),
            });
        }
        client.queue.push_back((seq, queued));
        true
    }

    /// Puts a message loaded from the store back in its client's queue
    /// (loaded in key order: by client, then sequence), at start-up after
    /// the clients are restored. The queue bounds apply: what they drop is
    /// deleted from the store. False for a client that is not registered:
    /// its stored queue is deleted.
    pub fn restore_queued(&mut self, namespace: NamespaceId, stored: StoredHttpQueued) -> bool {
        let Some(id) = self.find(namespace, &stored.client) else {
            if let Some(writes) = &mut self.writes {
                let forgotten = matches!(writes.back(), Some(QueueWrite::Delete { namespace: n, client, below: u64::MAX, .. })
                    if *n == namespace && **client == *stored.client);
                if !forgotten {
                    let client = stored.client.as_str().into();
                    writes.push_back(QueueWrite::Delete { namespace, client, from: 0, below: u64::MAX });
                }
            }
            return false;
        };
        let subscribers: Arc<[Arc<str>]> = stored.subscribers.into();
        let queued = Queued { delivery: Delivery::new(stored.message), subscribers };
        self.enqueue(id, stored.seq, queued, false)
    }

    /// Takes everything queued for the client, grouped under each of its
    /// filters that matches (a message under two matching filters appears
    /// under both), filters in subscription order.
    pub fn pickup(&mut self, id: HttpClientId) -> Pickup {
        let HttpClients { slots, writes, .. } = self;
        let Some(client) = slots.get_mut(id.index as usize).and_then(Option::as_mut) else { return Vec::new() };
        if client.generation != id.generation {
            return Vec::new();
        }
        let queue = std::mem::take(&mut client.queue);
        client.queued_bytes = 0;
        if let (Some(writes), Some((from, _)), Some((last, _))) = (writes, queue.front(), queue.back()) {
            let (namespace, client) = (client.namespace, client.name.clone());
            writes.push_back(QueueWrite::Delete { namespace, client, from: *from, below: last + 1 });
        }
        let mut groups: Pickup = client.filters.iter().map(|f| (f.clone(), Vec::new())).collect();
        for (_, queued) in queue {
            let Ok(topic) = TopicName::new(&queued.delivery.message().topic, &TopicLimits::UNBOUNDED) else { continue };
            for (filter, messages) in &mut groups {
                if filter.matches(topic) {
                    messages.push(queued.clone());
                }
            }
        }
        groups.retain(|(_, messages)| !messages.is_empty());
        groups
    }

    /// Removes a client and returns it: the caller removes its router
    /// subscriber too, and its record from the store.
    pub fn remove(&mut self, id: HttpClientId) -> Option<HttpClient> {
        self.get(id)?;
        let client = self.slots[id.index as usize].take().expect("checked by get");
        if let Some(names) = self.by_name.get_mut(&client.namespace) {
            names.remove(&client.name);
        }
        self.registered -= 1;
        self.generations[id.index as usize] = self.generations[id.index as usize].wrapping_add(1);
        self.free.push(id.index);
        if let Some(writes) = &mut self.writes
            && !client.queue.is_empty()
        {
            let (namespace, name) = (client.namespace, client.name.clone());
            writes.push_back(QueueWrite::Delete { namespace, client: name, from: 0, below: u64::MAX });
        }
        Some(client)
    }

    /// Drops every client not seen for the timeout and returns them, for
    /// the caller to remove their router subscribers and stored records.
    pub fn expire(&mut self, now: Instant) -> Vec<HttpClient> {
        let timeout = self.limits.timeout;
        let expired: Vec<HttpClientId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let client = slot.as_ref()?;
                (now.saturating_duration_since(client.last_seen) >= timeout)
                    .then_some(HttpClientId { index: index as u32, generation: client.generation })
            })
            .collect();
        self.expired_total += expired.len() as u64;
        expired.into_iter().filter_map(|id| self.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual clock's origin; only differences matter.
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }
    use crate::message::Message;
    use crate::router::Router;

    fn delivery(topic: &str, payload: &str) -> Arc<Delivery> {
        Delivery::new(Message {
            topic: topic.into(),
            payload: payload.as_bytes().into(),
            from: "t".into(),
            updated_time: 0,
            ip: None,
        })
    }

    fn filter(text: &str) -> Filter {
        Filter::new(text, &TopicLimits::default()).unwrap()
    }

    fn registry(limits: HttpClientLimits) -> (HttpClients, Router<HttpClientId>, Instant) {
        (HttpClients::new(limits), Router::new(), epoch())
    }

    #[test]
    fn pickup_groups_by_filter_and_empties_the_queue() {
        let (mut clients, mut router, now) = registry(HttpClientLimits::default());
        let id = clients
            .register(NamespaceId::PUBLIC, "c", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id))
            .unwrap();
        clients.subscribe(id, filter("/s/+/t"));
        clients.subscribe(id, filter("/s/#"));
        clients.push_to_all([id].into_iter(), &delivery("/s/a/t", "1"));
        clients.push_to_all([id].into_iter(), &delivery("/s/b", "2"));
        let groups = clients.pickup(id);
        let shown: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|(f, ds)| (f.as_str(), ds.iter().map(|q| &*q.delivery.message().topic).collect()))
            .collect();
        assert_eq!(shown, [("/s/+/t", vec!["/s/a/t"]), ("/s/#", vec!["/s/a/t", "/s/b"])]);
        assert!(clients.pickup(id).is_empty(), "a second pickup finds nothing");
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let limits = HttpClientLimits { queue_size: 3, ..Default::default() };
        let (mut clients, mut router, now) = registry(limits);
        let id = clients
            .register(NamespaceId::PUBLIC, "c", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id))
            .unwrap();
        clients.subscribe(id, filter("#"));
        for n in 0..5 {
            clients.push_to_all([id].into_iter(), &delivery("t", &n.to_string()));
        }
        let kept: Vec<_> = clients.pickup(id)[0].1.iter().map(|q| q.delivery.message().payload.to_vec()).collect();
        assert_eq!(kept, [b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]);
        assert_eq!((clients.get(id).unwrap().dropped, clients.dropped_total()), (2, 2));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let limits = HttpClientLimits { queue_bytes: 10, ..Default::default() };
        let (mut clients, mut router, now) = registry(limits);
        let id = clients
            .register(NamespaceId::PUBLIC, "c", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id))
            .unwrap();
        clients.subscribe(id, filter("#"));
        for payload in ["aaaa", "bbbb", "cccc"] {
            clients.push_to_all([id].into_iter(), &delivery("t", payload));
        }
        let kept: Vec<_> = clients.pickup(id)[0].1.iter().map(|q| q.delivery.message().payload.to_vec()).collect();
        assert_eq!(kept, [b"bbbb".to_vec(), b"cccc".to_vec()]);
        // A message bigger than the bound alone is still delivered.
        clients.push_to_all([id].into_iter(), &delivery("t", "0123456789abc"));
        assert_eq!(clients.get(id).unwrap().queued(), 1);
    }

    #[test]
    fn idle_clients_expire_and_touched_ones_stay() {
        let limits = HttpClientLimits { timeout: Duration::from_secs(10), ..Default::default() };
        let (mut clients, mut router, start) = registry(limits);
        let mut register = |clients: &mut HttpClients, name: &str| {
            clients
                .register(NamespaceId::PUBLIC, name, start, 0, None, |id| {
                    router.add_subscriber(NamespaceId::PUBLIC, id)
                })
                .unwrap()
        };
        let idle = register(&mut clients, "idle");
        let busy = register(&mut clients, "busy");
        clients.touch(busy, start + Duration::from_secs(8), 8, None);
        assert!(clients.expire(start + Duration::from_secs(9)).is_empty());
        let gone = clients.expire(start + Duration::from_secs(10));
        assert_eq!(gone.len(), 1);
        assert!(clients.get(idle).is_none() && clients.find(NamespaceId::PUBLIC, "idle").is_none());
        assert_eq!(clients.find(NamespaceId::PUBLIC, "busy"), Some(busy));
        assert_eq!(clients.push_to_all([idle].into_iter(), &delivery("t", "x")), 0, "a stale id is ignored");
        assert_eq!(clients.expired_total(), 1);
    }

    /// A registry that keeps store writes, with one client "c" under "#".
    fn stored_registry(limits: HttpClientLimits) -> (HttpClients, HttpClientId, Instant) {
        let (mut clients, mut router, now) = registry(limits);
        clients.keep_store_writes();
        let id = clients
            .register(NamespaceId::PUBLIC, "c", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id))
            .unwrap();
        clients.subscribe(id, filter("#"));
        (clients, id, now)
    }

    /// The store writes waiting, each as (seq or range, payload or "delete").
    fn drained(clients: &mut HttpClients) -> Vec<(String, String)> {
        std::iter::from_fn(|| clients.poll_store_op(|_| "ns".into()))
            .map(|op| match op {
                StoreOp::PutHttpQueued { namespace, client, seq, message, subscribers } => {
                    assert_eq!((&*namespace, &*client), ("ns", "c"));
                    assert_eq!(subscribers.iter().map(|s| &**s).collect::<Vec<_>>(), ["c"]);
                    (seq.to_string(), String::from_utf8_lossy(&message.payload).into_owned())
                }
                StoreOp::DeleteHttpQueued { namespace, client, from, below } => {
                    assert_eq!((&*namespace, &*client), ("ns", "c"));
                    (format!("{from}..{below}"), "delete".into())
                }
                op => panic!("unexpected {op:?}"),
            })
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn queueing_puts_each_message_and_pickup_deletes_them_in_one_range() {
        let (mut clients, id, _) = stored_registry(HttpClientLimits::default());
        for payload in ["a", "b", "c"] {
            clients.push_to_all([id].into_iter(), &delivery("t", payload));
        }
        assert!(clients.has_store_ops());
        assert_eq!(drained(&mut clients), [pair("0", "a"), pair("1", "b"), pair("2", "c")]);
        assert!(!clients.has_store_ops());
        assert_eq!(clients.pickup(id)[0].1.len(), 3);
        assert_eq!(drained(&mut clients), [pair("0..3", "delete")], "one ranged delete");
        assert!(clients.pickup(id).is_empty());
        assert!(drained(&mut clients).is_empty(), "an empty pickup writes nothing");
        clients.push_to_all([id].into_iter(), &delivery("t", "d"));
        assert_eq!(drained(&mut clients), [pair("3", "d")], "numbers go on after a pickup");
    }

    #[test]
    fn a_full_queue_deletes_what_it_drops() {
        let limits = HttpClientLimits { queue_size: 2, ..Default::default() };
        let (mut clients, id, _) = stored_registry(limits);
        for payload in ["a", "b", "c"] {
            clients.push_to_all([id].into_iter(), &delivery("t", payload));
        }
        assert_eq!(drained(&mut clients), [pair("0", "a"), pair("1", "b"), pair("0..1", "delete"), pair("2", "c")]);
        // A message bigger than the byte bound drops everything before it.
        let limits = HttpClientLimits { queue_bytes: 4, ..Default::default() };
        let (mut clients, id, _) = stored_registry(limits);
        for payload in ["ab", "cd", "efghij"] {
            clients.push_to_all([id].into_iter(), &delivery("t", payload));
        }
        assert_eq!(
            drained(&mut clients),
            [pair("0", "ab"), pair("1", "cd"), pair("0..2", "delete"), pair("2", "efghij")]
        );
    }

    #[test]
    fn a_dropped_client_deletes_its_queue_and_an_empty_one_writes_nothing() {
        let limits = HttpClientLimits { timeout: Duration::from_secs(10), ..Default::default() };
        let (mut clients, id, start) = stored_registry(limits);
        clients.push_to_all([id].into_iter(), &delivery("t", "a"));
        let _ = drained(&mut clients);
        assert_eq!(clients.expire(start + Duration::from_secs(10)).len(), 1);
        assert_eq!(drained(&mut clients), [pair(&format!("0..{}", u64::MAX), "delete")]);
        let (mut clients, id, start) = stored_registry(limits);
        clients.push_to_all([id].into_iter(), &delivery("t", "a"));
        let _ = clients.pickup(id);
        let _ = drained(&mut clients);
        assert_eq!(clients.expire(start + Duration::from_secs(10)).len(), 1);
        assert!(drained(&mut clients).is_empty(), "nothing stored is left to delete");
    }

    #[test]
    fn restored_messages_come_back_in_order_and_numbering_goes_on() {
        let limits = HttpClientLimits { queue_size: 3, ..Default::default() };
        let (mut clients, id, _) = stored_registry(limits);
        let stored = |client: &str, seq: u64, payload: &str| StoredHttpQueued {
            namespace: String::new(),
            client: client.into(),
            seq,
            message: delivery("t", payload).message().clone(),
            subscribers: vec!["c".into()],
        };
        // Four stored under a bound of three (lowered since): the oldest goes.
        for (seq, payload) in [(5, "a"), (6, "b"), (8, "c"), (9, "d")] {
            assert!(clients.restore_queued(NamespaceId::PUBLIC, stored("c", seq, payload)));
        }
        assert_eq!(drained(&mut clients), [pair("5..6", "delete")], "restoring puts nothing back");
        // A client that was not restored: its queue is deleted, once.
        assert!(!clients.restore_queued(NamespaceId::PUBLIC, stored("gone", 0, "x")));
        assert!(!clients.restore_queued(NamespaceId::PUBLIC, stored("gone", 1, "y")));
        let forgotten: Vec<StoreOp> = std::iter::from_fn(|| clients.poll_store_op(|_| "".into())).collect();
        assert_eq!(
            forgotten,
            [StoreOp::DeleteHttpQueued { namespace: "".into(), client: "gone".into(), from: 0, below: u64::MAX }]
        );
        clients.push_to_all([id].into_iter(), &delivery("t", "e"));
        assert_eq!(drained(&mut clients), [pair("6..7", "delete"), pair("10", "e")]);
        let picked = clients.pickup(id);
        let payloads: Vec<_> = picked[0].1.iter().map(|q| q.delivery.message().payload.to_vec()).collect();
        assert_eq!(payloads, [b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]);
        assert_eq!(&*picked[0].1[0].subscribers, [Arc::<str>::from("c")], "as stored");
        assert_eq!(drained(&mut clients), [pair("8..11", "delete")]);
    }

    #[test]
    fn without_a_store_nothing_is_kept_for_it() {
        let (mut clients, mut router, now) = registry(HttpClientLimits::default());
        let id = clients
            .register(NamespaceId::PUBLIC, "c", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id))
            .unwrap();
        clients.push_to_all([id].into_iter(), &delivery("t", "a"));
        let _ = clients.pickup(id);
        assert!(!clients.has_store_ops() && clients.poll_store_op(|_| "".into()).is_none());
    }

    #[test]
    fn names_are_per_namespace_and_the_registry_is_bounded() {
        let limits = HttpClientLimits { max_clients: 2, ..Default::default() };
        let (mut clients, mut router, now) = registry(limits);
        let other = router.namespace("alice");
        let a = clients
            .register(NamespaceId::PUBLIC, "c", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id));
        let b = clients.register(other, "c", now, 0, None, |id| router.add_subscriber(other, id));
        assert!(a.is_some() && b.is_some() && a != b);
        assert_eq!(clients.find(other, "c"), b);
        assert_eq!(
            clients
                .register(NamespaceId::PUBLIC, "d", now, 0, None, |id| router.add_subscriber(NamespaceId::PUBLIC, id)),
            None
        );
    }
}
