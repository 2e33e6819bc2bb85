//! The rules that tie a binary [`Session`] to the [`Router`]: what Connect,
//! Publish, Subscribe, Unsubscribe and Disconnect do to the router.
//!
//! [`Broker`](super::Broker) runs them on its router; they are public
//! for a harness that drives a bare [`Router`] (the scenario tests, the
//! crate's example). [`execute`] carries out one [`Request`] a session
//! yields, and the returned [`Effects`] name what the shell moves: the
//! shared delivery to every receiver's sink, and a takeover Disconnect to
//! the session that held the client id before. [`release`] runs once when
//! a connection closes.

use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::auth::{AuthError, Identity};
use crate::codec::{Frame, Qos, ReasonCode};
use crate::message::Message;
use crate::router::{Delivery, NamespaceId, Router, SubscriberId};
use crate::session::{Credentials, Request, Session};
use crate::store::StoreOp;
use crate::topic::{Filter, TopicName};

/// Who is asking, and when: what a message is stamped with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Wall-clock time in Unix seconds.
    pub unix_time: u64,
    /// The peer's address, if the transport has one.
    pub ip: Option<IpAddr>,
}

/// The decision on a Connect's credentials: which namespace, or why not.
pub type AuthResult = Result<NamespaceId, &'static str>;

/// What the shell must do after [`execute`].
#[derive(Debug)]
#[must_use]
pub struct Effects<S> {
    /// A published message and the sinks that must receive it (once each;
    /// the publishing session's own sink when it subscribed to the topic).
    pub delivery: Option<Arc<Delivery>>,
    /// A retained publish changed a stored value: the write for the store
    /// (a delete when the payload is empty), for the shell to submit before
    /// it lets the router go.
    pub store: Option<StoreOp>,
    /// Moustique clients' queues `delivery` went into (by
    /// [`Broker::handle_request`](super::Broker::handle_request), which
    /// holds the queues; `receivers` then holds none of them).
    pub queued: usize,
    /// Receivers of `delivery`: inline up to four, so a publish to few
    /// subscribers allocates no list.
    pub receivers: SmallVec<[S; 4]>,
    /// A session whose client id was taken over: send it Disconnect 3.
    pub taken_over: Option<S>,
    /// The session's subscriber id, set by an accepted Connect.
    pub connected: Option<SubscriberId>,
}

impl<S> Default for Effects<S> {
    fn default() -> Self {
        Effects {
            delivery: None,
            receivers: SmallVec::new(),
            taken_over: None,
            connected: None,
            store: None,
            queued: 0,
        }
    }
}

/// Carries out `request` from `session`, whose router handle is
/// `subscriber` (`None` until Connect is accepted) and whose sink is `sink`.
///
/// `authenticate` decides a Connect: the namespace to use, or the text of a
/// Disconnect 2. The answer to the peer (ConnAck, SubAck, ...) is queued on
/// `session`; effects on other subscribers are returned.
pub fn execute<S: Clone>(
    router: &mut Router<S>,
    session: &mut Session,
    subscriber: Option<SubscriberId>,
    sink: S,
    request: Request<'_>,
    origin: Origin,
    authenticate: impl FnOnce(Option<Credentials<'_>>) -> AuthResult,
) -> Effects<S> {
    let mut effects = Effects::default();
    match (request, subscriber) {
        (Request::Connect { client_id, credentials, .. }, None) => {
            return connect(router, session, sink, client_id, authenticate(credentials), origin);
        }
        // Without a shell that keeps QoS 1 queues (crate::durable), every
        // subscription is granted QoS 0, so a QoS 1 message is safe once
        // routed: it is acknowledged at once.
        (Request::Publish { topic, payload, retain: false, qos, packet_id }, subscriber @ Some(_)) => {
            let effects = publish_live(router, session, subscriber, topic, payload, origin);
            if qos == Qos::AtLeastOnce {
                let _ = session.ack(packet_id);
            }
            return effects;
        }
        (Request::Publish { topic, payload, retain, qos, packet_id }, Some(id)) => {
            let Some(namespace) = router.namespace_of(id) else { return effects };
            let delivery = published(session, topic, payload, origin);
            let outcome = router.publish(namespace, topic, &delivery, retain, &mut effects.receivers);
            if qos == Qos::AtLeastOnce {
                let _ = session.ack(packet_id);
            }
            if outcome.stored {
                effects.store = Some(StoreOp::of_value(router.namespace_name(namespace), delivery.message()));
            }
            if outcome.receivers > 0 || outcome.stored {
                effects.delivery = Some(delivery);
            }
        }
        (Request::Subscribe(filter, _), Some(id)) => {
            session.sub_ack(filter.as_str(), Ok(()));
            for value in subscribe(router, id, filter) {
                if session.deliver_frame(&value.message().publish_frame(true)).is_err() {
                    break;
                }
            }
        }
        (Request::Unsubscribe(filter), Some(id)) => {
            router.unsubscribe(id, &filter);
            session.unsub_ack(filter.as_str(), Ok(()));
        }
        (Request::Disconnect, Some(id)) => {
            router.remove_subscriber(id);
        }
        // The session's own state machine yields nothing else before
        // Connect is accepted, and no Connect after.
        (_, _) => {}
    }
    effects
}

/// The message a session's Publish carries, from its client id, as the
/// shared [`Delivery`] that every kind of receiver takes.
pub fn published(session: &mut Session, topic: TopicName<'_>, payload: &[u8], origin: Origin) -> Arc<Delivery> {
    let from = session.client_id().cloned().unwrap_or_else(|| Message::UNKNOWN_SENDER.into());
    Delivery::new(Message {
        topic: session.shared_topic(topic.as_str()),
        payload: payload.into(),
        from,
        updated_time: origin.unix_time,
        ip: origin.ip,
    })
}

/// The Publish frame that delivers a session's live (not retained)
/// message to binary subscribers, borrowed from its input. A shell whose
/// receivers are all binary connections may copy these bytes to them
/// instead of building the shared [`Delivery`] of [`published`]: the same
/// frame, with no allocation for a small message.
pub fn live_frame<'a>(session: &'a Session, topic: TopicName<'a>, payload: &'a [u8]) -> Frame<'a> {
    let from = session.client_id().map_or(Message::UNKNOWN_SENDER, |id| &**id);
    Frame::publish(topic.as_str(), payload, from, false)
}

/// What a Publish without RETAIN does: it changes nothing in the router,
/// so a shell may run it under a shared (read) lock while other loops route
/// their own. [`execute`] calls it too.
pub fn publish_live<S: Clone>(
    router: &Router<S>,
    session: &mut Session,
    subscriber: Option<SubscriberId>,
    topic: TopicName<'_>,
    payload: &[u8],
    origin: Origin,
) -> Effects<S> {
    let mut effects = Effects::default();
    let Some(namespace) = subscriber.and_then(|id| router.namespace_of(id)) else { return effects };
    let delivery = published(session, topic, payload, origin);
    if router.route(namespace, topic, &mut effects.receivers) > 0 {
        effects.delivery = Some(delivery);
    }
    effects
}

/// The rule of a message from any face once its namespace is known: it
/// goes to every matching subscriber, and with `retain` it becomes (or,
/// empty, deletes) the topic's stored value. [`execute`] follows it for a
/// binary Publish; MQTT publishes and wills go through it.
pub fn publish<S: Clone>(
    router: &mut Router<S>,
    namespace: NamespaceId,
    topic: TopicName<'_>,
    delivery: Arc<Delivery>,
    retain: bool,
) -> Effects<S> {
    let mut effects = Effects::default();
    let outcome = router.publish(namespace, topic, &delivery, retain, &mut effects.receivers);
    if outcome.stored {
        effects.store = Some(StoreOp::of_value(router.namespace_name(namespace), delivery.message()));
    }
    if outcome.receivers > 0 || outcome.stored {
        effects.delivery = Some(delivery);
    }
    effects
}

/// The decision on a Connect from who the client turned out to be:
/// a user's own namespace, the public one for an anonymous client if the
/// broker allows anonymous access, or the text of the refusal.
pub fn admit<S: Clone>(
    router: &mut Router<S>,
    allow_anonymous: bool,
    caller: Result<Identity, AuthError>,
) -> AuthResult {
    match caller {
        Ok(Identity::Anonymous) if !allow_anonymous => Err(AuthError::CredentialsRequired.text()),
        Ok(identity) => Ok(router.namespace(identity.namespace_name())),
        Err(error) => Err(error.text()),
    }
}

/// Answers a Connect whose credentials are decided: with the namespace,
/// registers the session under the client id it asked for (`requested`,
/// empty for one assigned) and queues ConnAck; with a refusal, queues
/// Disconnect 2 carrying its text.
///
/// [`execute`] calls it when the decision is at hand; a shell that checks
/// credentials elsewhere (a password hash takes a while) holds the Connect,
/// feeds the session no more input meanwhile, and calls this when it knows.
/// A session that closed in between is left alone.
pub fn connect<S: Clone>(
    router: &mut Router<S>,
    session: &mut Session,
    sink: S,
    requested: &str,
    decision: AuthResult,
    origin: Origin,
) -> Effects<S> {
    let mut effects = Effects::default();
    if !session.is_connecting() {
        return effects;
    }
    let namespace = match decision {
        Ok(namespace) => namespace,
        Err(text) => {
            session.refuse(ReasonCode::NotAuthorized, text);
            return effects;
        }
    };
    let claimed = register(router, namespace, sink, requested, origin);
    effects.taken_over = claimed.taken_over;
    session.accept(claimed.client_id);
    effects.connected = Some(claimed.id);
    effects
}

/// A client registered by [`register`].
#[derive(Debug)]
#[must_use]
pub struct Registered<S> {
    /// Its subscriber.
    pub id: SubscriberId,
    /// The client id it holds: the one asked for, or one assigned.
    pub client_id: Arc<str>,
    /// The sink of the client that held that id before, already out of
    /// the router: the shell tells it (Disconnect 3, "session taken over").
    pub taken_over: Option<S>,
}

/// The rule of every client that holds a client id (a binary session, an
/// in-process client): a new subscriber in `namespace`, stamped with
/// `origin`, under the client id `requested` (assigned when empty); a
/// client that held the id is taken over, removed from the router now, so
/// its later release finds a stale id and does nothing.
pub fn register<S: Clone>(
    router: &mut Router<S>,
    namespace: NamespaceId,
    sink: S,
    requested: &str,
    origin: Origin,
) -> Registered<S> {
    let id = router.add_subscriber(namespace, sink);
    router.set_origin(id, origin.unix_time, origin.ip);
    let (client_id, previous) = router.claim_client_id(id, requested);
    let taken_over = previous.and_then(|old| router.remove_subscriber(old));
    Registered { id, client_id, taken_over }
}

/// The rule of a new subscription, for every kind of subscriber: `filter`
/// is added to `id`, and the values stored under topics it matches are
/// returned, for the shell to send first, marked retained.
pub fn subscribe<S: Clone>(router: &mut Router<S>, id: SubscriberId, filter: Filter) -> Vec<Arc<Delivery>> {
    let Some(namespace) = router.namespace_of(id) else { return Vec::new() };
    let values = router.values_matching(namespace, &filter).cloned().collect();
    router.subscribe(id, filter);
    values
}

/// Removes a closed connection's subscriber (its subscriptions and client
/// id). Safe to call with a handle already released.
pub fn release<S: Clone>(router: &mut Router<S>, subscriber: Option<SubscriberId>) {
    if let Some(id) = subscriber {
        router.remove_subscriber(id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::codec::{Frame, FrameType};
    use crate::session::{SessionConfig, Step};

    #[allow(clippy::disallowed_methods)]
    fn now() -> Instant {
        Instant::now()
    }

    const ORIGIN: Origin = Origin { unix_time: 0, ip: None };

    #[test]
    fn admit_puts_users_in_their_namespace_and_refuses_the_rest() {
        let mut router: Router<()> = Router::new();
        assert_eq!(admit(&mut router, true, Ok(Identity::Anonymous)), Ok(NamespaceId::PUBLIC));
        assert_eq!(admit(&mut router, false, Ok(Identity::Anonymous)), Err("this broker needs credentials"));
        let alice = admit(&mut router, false, Ok(Identity::User { name: "alice".into(), admin: false }));
        assert_eq!(alice, Ok(router.namespace("alice")));
        assert_ne!(alice, Ok(NamespaceId::PUBLIC));
        assert_eq!(admit(&mut router, true, Err(AuthError::WrongCredentials)), Err("unknown user or wrong password"));
    }

    #[test]
    fn a_second_client_under_an_id_takes_it_over_whatever_its_kind() {
        let mut router: Router<&str> = Router::new();
        let first = register(&mut router, NamespaceId::PUBLIC, "in-process", "dev", ORIGIN);
        assert_eq!((&*first.client_id, first.taken_over), ("dev", None));
        let second = register(&mut router, NamespaceId::PUBLIC, "binary", "dev", ORIGIN);
        assert_eq!(second.taken_over, Some("in-process"), "the old holder is named for the shell to tell");
        assert_eq!(router.subscriber_count(), 1, "and is out of the router already");
        let assigned = register(&mut router, NamespaceId::PUBLIC, "other", "", ORIGIN);
        assert!(!assigned.client_id.is_empty() && assigned.taken_over.is_none());
    }

    #[test]
    fn a_subscription_returns_the_stored_values_it_matches() {
        let mut router: Router<&str> = Router::new();
        let stored = Delivery::new(Message {
            topic: "a/b".into(),
            payload: b"1"[..].into(),
            from: "x".into(),
            updated_time: 0,
            ip: None,
        });
        router.store(NamespaceId::PUBLIC, stored);
        let id = register(&mut router, NamespaceId::PUBLIC, "s", "s", ORIGIN).id;
        let filter = |text| Filter::new(text, &crate::TopicLimits::default()).unwrap();
        assert_eq!(subscribe(&mut router, id, filter("a/+")).len(), 1);
        assert!(subscribe(&mut router, id, filter("c/#")).is_empty());
        assert_eq!(router.filters(id).len(), 2);
    }

    /// A session whose Connect (with credentials) was just yielded.
    fn connecting(now: Instant) -> Session {
        let mut session = Session::new(now, &SessionConfig::default());
        let connect = Frame::connect("c", b"alice\0pw").to_vec();
        let step = session.handle_input(now, &connect).unwrap();
        assert!(matches!(step, Step::Request { request: Request::Connect { credentials: Some(_), .. }, .. }));
        session
    }

    #[test]
    fn a_held_connect_reads_nothing_until_it_is_answered() {
        let now = now();
        let mut router: Router<&str> = Router::new();
        let mut session = connecting(now);
        assert!(session.is_connecting() && !session.wants_read(), "frames behind Connect wait unread");
        let namespace = router.namespace("alice");
        let effects = connect(&mut router, &mut session, "sink", "c", Ok(namespace), ORIGIN);
        let id = effects.connected.expect("accepted");
        assert_eq!(router.namespace_of(id), Some(namespace));
        assert!(session.is_connected() && session.wants_read());
        let mut slices: [&[u8]; 4] = [&[]; 4];
        session.outbound().front_slices(&mut slices);
        assert_eq!(slices[0].first(), Some(&(FrameType::ConnAck as u8)));
    }

    #[test]
    fn a_refused_or_closed_connect_registers_nothing() {
        let now = now();
        let mut router: Router<&str> = Router::new();
        let mut session = connecting(now);
        let effects = connect(&mut router, &mut session, "sink", "c", Err("unknown user or wrong password"), ORIGIN);
        assert!(effects.connected.is_none() && session.is_closed());
        assert_eq!(session.close_reason(), Some(Some(ReasonCode::NotAuthorized)));

        // The session timed out while its credentials were checked.
        let mut session = connecting(now);
        assert!(session.handle_timeout(now + Duration::from_secs(3600)).is_err());
        let effects = connect(&mut router, &mut session, "sink", "c", Ok(NamespaceId::PUBLIC), ORIGIN);
        assert!(effects.connected.is_none());
        assert_eq!(router.subscriber_count(), 0);
    }
}
