//! The broker's shared state: namespaces, subscriptions, stored values and
//! client ids, and the routing of one publish to its subscribers.
//!
//! The router knows subscribers only by [`SubscriberId`] and an opaque sink
//! `S` chosen by the I/O shell (for tinymq-net: which event loop and
//! connection, or which in-process queue). [`Router::publish`] returns the
//! sinks a message must reach, each exactly once however many of its filters
//! match; the shell moves the shared [`Delivery`] there. The router holds no
//! locks and reads no clock, so a shell may put it behind a lock and call it
//! from several threads.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

use crate::message::Message;
use crate::mqtt::QoS;
use crate::outbound::{COPY_BELOW, Outbound, Overflow};
use crate::topic::{Filter, SubscriptionTrie, TopicLimits, TopicName};

/// A subscriber's handle: a slot in the router's table plus a generation, so
/// a stale handle to a reused slot is recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId {
    index: u32,
    generation: u32,
}

/// A namespace: the public one (anonymous clients) or one per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceId(u32);

impl NamespaceId {
    /// The namespace of anonymous clients.
    pub const PUBLIC: NamespaceId = NamespaceId(0);
}

/// A published message on its way to subscribers, shared by all of them.
/// Its binary Publish frame is encoded on first use and then reused, so a
/// fan-out to N binary subscribers encodes once and copies no payload.
#[derive(Debug)]
pub struct Delivery {
    message: Message,
    frame: OnceLock<Arc<[u8]>>,
    /// Published with retain through [`Router::publish`]: it set (or, with
    /// an empty payload, deleted) its topic's value.
    retained: AtomicBool,
    /// The quality of service it was published with: QoS 1 only from an
    /// MQTT publisher that asked for it; every other face publishes at 0.
    qos: QoS,
    /// The MQTT 5 properties an MQTT publisher gave it that travel with
    /// the message (user properties, content type, ...), as their wire
    /// bytes; none from the other faces.
    mqtt_properties: Option<Arc<[u8]>>,
}

impl Delivery {
    /// Wraps `message` for delivery, published at QoS 0.
    pub fn new(message: Message) -> Arc<Self> {
        Delivery::with_qos(message, QoS::AtMostOnce)
    }

    /// Wraps `message` published at `qos` (an MQTT PUBLISH or will): MQTT
    /// subscribers get it at the lower of this and what they were granted.
    pub fn with_qos(message: Message, qos: QoS) -> Arc<Self> {
        Delivery::from_mqtt(message, qos, None)
    }

    /// Wraps `message` from an MQTT publisher: its `qos`, and the MQTT 5
    /// property block (validated wire bytes) MQTT 5 subscribers get with it.
    pub fn from_mqtt(message: Message, qos: QoS, mqtt_properties: Option<Arc<[u8]>>) -> Arc<Self> {
        Arc::new(Delivery { message, frame: OnceLock::new(), retained: AtomicBool::new(false), qos, mqtt_properties })
    }

    /// Wraps a message queued for a session and read back from the store:
    /// [`Delivery::is_retained`] as it was when it was queued.
    pub fn restored(message: Message, retained: bool) -> Arc<Self> {
        let delivery = Delivery::new(message);
        delivery.retained.store(retained, Ordering::Relaxed);
        delivery
    }

    /// The MQTT 5 properties that travel with it (empty when none).
    pub fn mqtt_properties(&self) -> &[u8] {
        self.mqtt_properties.as_deref().unwrap_or_default()
    }

    /// The quality of service it was published with.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Whether it was published with retain: it is (or, empty, deleted)
    /// its topic's value. What a bridge needs to carry a retained publish,
    /// and a delete, to the far side. Set by [`Router::publish`] before the
    /// delivery is handed to anyone.
    pub fn is_retained(&self) -> bool {
        self.retained.load(Ordering::Relaxed)
    }

    /// The live-traffic Publish frame (RETAIN clear), encoded once.
    pub fn frame(&self) -> &Arc<[u8]> {
        self.frame.get_or_init(|| self.message.publish_frame(false).to_vec().into())
    }

    /// Queues the live-traffic Publish frame on `out`. A small frame not
    /// yet encoded is encoded straight into the queue (the queue would copy
    /// it anyway), so a small message costs no shared frame at all; a large
    /// one is encoded once and shared by every receiver.
    pub fn write_to(&self, out: &mut Outbound) -> Result<(), Overflow> {
        if let Some(frame) = self.frame.get() {
            return out.push_shared(frame);
        }
        let frame = self.message.publish_frame(false);
        if frame.encoded_len() < COPY_BELOW {
            out.push_with(|bytes| frame.encode(bytes))
        } else {
            out.push_shared(self.frame())
        }
    }
}

/// One publisher's last route: its topic, the sinks it reached and the
/// router version they were found at (see [`Router::route_cached`]).
#[derive(Debug)]
pub struct RouteCache<S> {
    version: Option<u64>,
    namespace: NamespaceId,
    topic: String,
    sinks: SmallVec<[S; 4]>,
}

impl<S> Default for RouteCache<S> {
    fn default() -> Self {
        RouteCache { version: None, namespace: NamespaceId::PUBLIC, topic: String::new(), sinks: SmallVec::new() }
    }
}

impl<S> RouteCache<S> {
    /// The sinks found last, if they were found for `topic` in `namespace`
    /// and the router is still at `version` ([`Router::version`]): a shell
    /// that publishes the version where its threads read it without the
    /// router's lock answers a stream on one topic without taking the lock
    /// for every message.
    pub fn current(&self, version: u64, namespace: NamespaceId, topic: &str) -> Option<&[S]> {
        let hit = self.version == Some(version) && self.namespace == namespace && self.topic == topic;
        hit.then_some(&self.sinks[..])
    }

    /// The namespace of the last route (the public one before any).
    pub fn namespace(&self) -> NamespaceId {
        self.namespace
    }
}

/// What [`Router::publish`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[must_use]
pub struct PublishOutcome {
    /// Subscribers the message goes to (the sinks written to `out`).
    pub receivers: usize,
    /// Whether the namespace's stored value for the topic changed.
    pub stored: bool,
}

#[derive(Debug)]
struct Subscriber<S> {
    generation: u32,
    namespace: NamespaceId,
    filters: Vec<Filter>,
    client_id: Option<Arc<str>>,
    /// When it connected (Unix seconds) and from where, for CLIENTS.
    since: u64,
    ip: Option<IpAddr>,
    sink: S,
}

/// A subscriber holding a client id, as CLIENTS lists it.
#[derive(Debug)]
pub struct ClientEntry<'a, S> {
    /// The client id.
    pub client_id: &'a Arc<str>,
    /// Where its deliveries go.
    pub sink: &'a S,
    /// When it connected, Unix seconds (0 if unknown).
    pub since: u64,
    /// Its address, if it came over a network.
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct Namespace {
    trie: SubscriptionTrie<SubscriberId>,
    /// Stored values (retained messages), by topic.
    values: BTreeMap<Arc<str>, Arc<Delivery>>,
    /// Client ids in use, for takeover.
    client_ids: HashMap<Arc<str>, SubscriberId>,
}

/// The routing table of one broker. See the module docs.
#[derive(Debug)]
pub struct Router<S> {
    namespaces: Vec<Namespace>,
    namespace_names: HashMap<Box<str>, NamespaceId>,
    /// Each namespace's user name, by id; empty for the public one.
    names: Vec<Arc<str>>,
    slots: Vec<Option<Subscriber<S>>>,
    generations: Vec<u32>,
    free_slots: Vec<u32>,
    next_assigned_id: u64,
    subscription_count: usize,
    /// Bumped by every change to who receives what (a subscription added or
    /// removed, a subscriber removed): what a [`RouteCache`] is checked
    /// against.
    version: u64,
}

impl<S: Clone> Default for Router<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone> Router<S> {
    /// An empty router with only the public namespace.
    pub fn new() -> Self {
        Router {
            namespaces: vec![Namespace::default()],
            namespace_names: HashMap::new(),
            names: vec!["".into()],
            slots: Vec::new(),
            generations: Vec::new(),
            free_slots: Vec::new(),
            next_assigned_id: 1,
            subscription_count: 0,
            version: 0,
        }
    }

    /// Its version: bumped by every change to who receives what, so equal
    /// versions route every topic alike.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The namespace of user `name`, created on first use; the empty name
    /// is the public namespace.
    pub fn namespace(&mut self, name: &str) -> NamespaceId {
        if name.is_empty() {
            return NamespaceId::PUBLIC;
        }
        if let Some(&id) = self.namespace_names.get(name) {
            return id;
        }
        let id = NamespaceId(u32::try_from(self.namespaces.len()).expect("fewer than 2^32 namespaces"));
        self.namespaces.push(Namespace::default());
        self.namespace_names.insert(name.into(), id);
        self.names.push(name.into());
        id
    }

    /// The user name of a namespace (empty for the public one): what the
    /// store files its values under.
    pub fn namespace_name(&self, namespace: NamespaceId) -> &Arc<str> {
        &self.names[namespace.0 as usize]
    }

    /// Registers a subscriber that receives through `sink`.
    pub fn add_subscriber(&mut self, namespace: NamespaceId, sink: S) -> SubscriberId {
        let index = match self.free_slots.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 subscribers")
            }
        };
        let generation = self.generations[index as usize];
        self.slots[index as usize] =
            Some(Subscriber { generation, namespace, filters: Vec::new(), client_id: None, since: 0, ip: None, sink });
        SubscriberId { index, generation }
    }

    /// Removes a subscriber with all its subscriptions and its client id.
    /// Returns its sink, or `None` for a stale id.
    pub fn remove_subscriber(&mut self, id: SubscriberId) -> Option<S> {
        self.get(id)?;
        let subscriber = self.slots[id.index as usize].take().expect("checked by get");
        let namespace = &mut self.namespaces[subscriber.namespace.0 as usize];
        for filter in &subscriber.filters {
            namespace.trie.remove(filter, id);
        }
        self.subscription_count -= subscriber.filters.len();
        if let Some(client_id) = &subscriber.client_id
            && namespace.client_ids.get(client_id) == Some(&id)
        {
            namespace.client_ids.remove(client_id);
        }
        self.generations[id.index as usize] = self.generations[id.index as usize].wrapping_add(1);
        self.free_slots.push(id.index);
        self.version += 1;
        Some(subscriber.sink)
    }

    fn get(&self, id: SubscriberId) -> Option<&Subscriber<S>> {
        self.slots.get(id.index as usize)?.as_ref().filter(|s| s.generation == id.generation)
    }

    fn get_mut(&mut self, id: SubscriberId) -> Option<&mut Subscriber<S>> {
        self.slots.get_mut(id.index as usize)?.as_mut().filter(|s| s.generation == id.generation)
    }

    /// The namespace of a live subscriber.
    pub fn namespace_of(&self, id: SubscriberId) -> Option<NamespaceId> {
        self.get(id).map(|s| s.namespace)
    }

    /// The sink of a live subscriber.
    pub fn sink(&self, id: SubscriberId) -> Option<&S> {
        self.get(id).map(|s| &s.sink)
    }

    /// Gives `id` the client id `requested`, or a fresh one (`tinymq-N`)
    /// when `requested` is empty. Returns the id given and the subscriber
    /// that held it before, which the caller disconnects (takeover).
    pub fn claim_client_id(&mut self, id: SubscriberId, requested: &str) -> (Arc<str>, Option<SubscriberId>) {
        let Some(namespace) = self.get(id).map(|s| s.namespace) else {
            return (requested.into(), None);
        };
        let ns = &mut self.namespaces[namespace.0 as usize];
        let client_id: Arc<str> = if requested.is_empty() {
            loop {
                let candidate = format!("tinymq-{}", self.next_assigned_id);
                self.next_assigned_id += 1;
                if !ns.client_ids.contains_key(candidate.as_str()) {
                    break candidate.into();
                }
            }
        } else {
            requested.into()
        };
        let previous = ns.client_ids.insert(client_id.clone(), id).filter(|&old| old != id);
        if let Some(slot) = self.get_mut(id) {
            slot.client_id = Some(client_id.clone());
        }
        if let Some(old) = previous {
            // The old holder keeps its subscriptions until the shell removes
            // it, but no longer owns the id.
            if let Some(slot) = self.get_mut(old) {
                slot.client_id = None;
            }
        }
        (client_id, previous)
    }

    /// Adds `filter` to the subscriber. Returns false if it already held it
    /// (a repeated Subscribe is not an error and adds nothing).
    pub fn subscribe(&mut self, id: SubscriberId, filter: Filter) -> bool {
        let Some(subscriber) = self.get_mut(id) else { return false };
        if subscriber.filters.contains(&filter) {
            return false;
        }
        let namespace = subscriber.namespace;
        self.namespaces[namespace.0 as usize].trie.insert(&filter, id);
        self.get_mut(id).expect("live").filters.push(filter);
        self.subscription_count += 1;
        self.version += 1;
        true
    }

    /// Removes `filter` from the subscriber; false if it did not hold it.
    pub fn unsubscribe(&mut self, id: SubscriberId, filter: &Filter) -> bool {
        let Some(subscriber) = self.get_mut(id) else { return false };
        let Some(position) = subscriber.filters.iter().position(|f| f == filter) else { return false };
        subscriber.filters.swap_remove(position);
        let namespace = subscriber.namespace;
        self.namespaces[namespace.0 as usize].trie.remove(filter, id);
        self.subscription_count -= 1;
        self.version += 1;
        true
    }

    /// The filters a subscriber holds.
    pub fn filters(&self, id: SubscriberId) -> &[Filter] {
        self.get(id).map_or(&[], |s| &s.filters)
    }

    /// The one publish rule of every transport (binary, HTTP, in-process,
    /// `$SYS`): routes a message published to `topic` in `namespace`,
    /// appending the sink of every matching subscriber to `out`, once each,
    /// in no particular order. With `retain`, also stores the message as
    /// the topic's value; an empty payload deletes the value instead and is
    /// delivered all the same, as MQTT 3.1.1 (3.3.1.3) has it, so every
    /// subscriber learns the value is gone. Live publishes that change no
    /// value may use [`Router::route_cached`] under a shared lock instead:
    /// the same receivers.
    pub fn publish(
        &mut self,
        namespace: NamespaceId,
        topic: TopicName<'_>,
        delivery: &Arc<Delivery>,
        retain: bool,
        out: &mut impl Extend<S>,
    ) -> PublishOutcome {
        let mut outcome = PublishOutcome::default();
        if retain {
            outcome.stored = true;
            // Relaxed: receivers on other loops get the delivery through a
            // channel, which orders this store before their load.
            delivery.retained.store(true, Ordering::Relaxed);
            if delivery.message().payload.is_empty() {
                self.namespaces[namespace.0 as usize].values.remove(topic.as_str());
            } else {
                self.store(namespace, delivery.clone());
            }
        }
        outcome.receivers = self.route(namespace, topic, out);
        outcome
    }

    /// Appends the sinks of every subscriber matching `topic`, once each.
    /// Takes `&self`, so a shell may route under a read lock.
    pub fn route(&self, namespace: NamespaceId, topic: TopicName<'_>, out: &mut impl Extend<S>) -> usize {
        let mut matched: SmallVec<[SubscriberId; 16]> = SmallVec::new();
        self.namespaces[namespace.0 as usize].trie.for_each_match(topic, |id| matched.push(id));
        // A subscriber with several matching filters gets one delivery.
        matched.sort_unstable();
        matched.dedup();
        out.extend(matched.iter().filter_map(|&id| self.sink(id).cloned()));
        matched.len()
    }

    /// The sinks of every subscriber matching `topic`, as [`Router::route`]
    /// finds them, but remembered in `cache`: while the subscriptions stay
    /// as they are, a publisher sending to the same topic again is answered
    /// from the cache without walking the trie. The slice is empty when no
    /// one subscribes.
    pub fn route_cached<'c>(
        &self,
        cache: &'c mut RouteCache<S>,
        namespace: NamespaceId,
        topic: TopicName<'_>,
    ) -> &'c [S] {
        let hit =
            cache.version == Some(self.version) && cache.namespace == namespace && &*cache.topic == topic.as_str();
        if !hit {
            cache.sinks.clear();
            self.route(namespace, topic, &mut cache.sinks);
            cache.version = Some(self.version);
            cache.namespace = namespace;
            if cache.topic != topic.as_str() {
                // Reuses the buffer: a publisher going round many topics
                // allocates nothing here once it has seen its longest.
                cache.topic.clear();
                cache.topic.push_str(topic.as_str());
            }
        }
        &cache.sinks
    }

    /// Stores a value without routing it (HTTP PUTVAL, and the store's
    /// contents at start-up).
    pub fn store(&mut self, namespace: NamespaceId, delivery: Arc<Delivery>) {
        let topic = delivery.message().topic.clone();
        self.namespaces[namespace.0 as usize].values.insert(topic, delivery);
    }

    /// Deletes the stored value of `topic`; false if there was none.
    pub fn remove_value(&mut self, namespace: NamespaceId, topic: &str) -> bool {
        self.namespaces[namespace.0 as usize].values.remove(topic).is_some()
    }

    /// Records when and from where a subscriber connected.
    pub fn set_origin(&mut self, id: SubscriberId, unix_time: u64, ip: Option<IpAddr>) {
        if let Some(subscriber) = self.get_mut(id) {
            subscriber.since = unix_time;
            subscriber.ip = ip;
        }
    }

    /// The subscribers holding client ids in `namespace`.
    pub fn clients(&self, namespace: NamespaceId) -> impl Iterator<Item = ClientEntry<'_, S>> {
        self.namespaces[namespace.0 as usize].client_ids.iter().filter_map(|(name, &id)| {
            let subscriber = self.get(id)?;
            Some(ClientEntry { client_id: name, sink: &subscriber.sink, since: subscriber.since, ip: subscriber.ip })
        })
    }

    /// The stored value of `topic`.
    pub fn value(&self, namespace: NamespaceId, topic: &str) -> Option<&Arc<Delivery>> {
        self.namespaces[namespace.0 as usize].values.get(topic)
    }

    /// Every stored value of `namespace`, in topic order.
    pub fn values(&self, namespace: NamespaceId) -> impl Iterator<Item = &Arc<Delivery>> {
        self.namespaces[namespace.0 as usize].values.values()
    }

    /// Stored values whose topic `filter` matches (what a new subscription
    /// receives with RETAIN set).
    pub fn values_matching<'r>(
        &'r self,
        namespace: NamespaceId,
        filter: &'r Filter,
    ) -> impl Iterator<Item = &'r Arc<Delivery>> + 'r {
        // Stored names were validated as topic names when they were stored
        // by publish; PUTVAL names may not be, and are skipped.
        self.values(namespace).filter(move |d| {
            TopicName::new(&d.message().topic, &TopicLimits::UNBOUNDED).is_ok_and(|name| filter.matches(name))
        })
    }

    /// The sinks of every live subscriber.
    pub fn sinks(&self) -> impl Iterator<Item = &S> {
        self.slots.iter().flatten().map(|s| &s.sink)
    }

    /// Number of live subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// Number of (subscriber, filter) pairs.
    pub fn subscription_count(&self) -> usize {
        self.subscription_count
    }

    /// Number of stored values in all namespaces, not counting the
    /// broker's own `$` topics (`$SYS/...`).
    pub fn value_count(&self) -> usize {
        self.namespaces
            .iter()
            .map(|n| {
                let dollar = n.values.range::<str, _>((Bound::Included("$"), Bound::Excluded("%"))).count();
                n.values.len() - dollar
            })
            .sum()
    }
}
