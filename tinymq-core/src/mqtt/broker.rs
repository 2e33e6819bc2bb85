//! What an MQTT session's requests do to the [`Router`]: the same rules as
//! the binary protocol's ([`crate::broker`]), which these functions call,
//! with MQTT's answers (CONNACK codes, SUBACK granted QoS, PUBACK).
//!
//! One topic space: an MQTT client registers its client id with
//! [`crate::broker::register`] (so it takes over, or is taken over by, a
//! binary or in-process client of the same id), subscribes with
//! [`crate::broker::subscribe`] and publishes with
//! [`crate::broker::publish`], in the namespace of the tinymq user it logged
//! in as.

use std::sync::Arc;

use super::packet::{Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use super::session::{Request, ServerSession, Subscription, WillMessage, forwarded};
use crate::auth::{AuthError, Identity};
use crate::broker::{self, Effects, Origin};
use crate::message::Message;
use crate::router::{Delivery, NamespaceId, RouteCache, Router, SubscriberId};
use crate::topic::{Filter, TopicLimits, TopicName};

/// Answers a CONNECT whose credentials were checked (`caller`): refused
/// with the CONNACK code for why (bad user name or password, not
/// authorized, server busy), or registered under the client id it asked
/// for (assigned when empty) in its user's namespace, with CONNACK queued.
/// A session that closed meanwhile is left alone.
pub fn connect<S: Clone>(
    router: &mut Router<S>,
    session: &mut ServerSession,
    sink: S,
    allow_anonymous: bool,
    caller: Result<Identity, AuthError>,
    origin: Origin,
) -> Effects<S> {
    let mut effects = Effects::default();
    if !session.is_connecting() {
        return effects;
    }
    if refused(session, allow_anonymous, &caller) {
        return effects;
    }
    let Ok(namespace) = broker::admit(router, allow_anonymous, caller) else { return effects };
    let requested = session.requested_client_id().unwrap_or_default().to_owned();
    let claimed = broker::register(router, namespace, sink, &requested, origin);
    effects.taken_over = claimed.taken_over;
    session.accept(claimed.client_id, requested.is_empty(), namespace);
    effects.connected = Some(claimed.id);
    effects
}

/// Refuses a CONNECT whose `caller` may not connect with the CONNACK code
/// for why (bad user name or password, not authorized, server busy);
/// whether it was refused.
pub(crate) fn refused(
    session: &mut ServerSession,
    allow_anonymous: bool,
    caller: &Result<Identity, AuthError>,
) -> bool {
    let refusal = match caller {
        Ok(Identity::Anonymous) if !allow_anonymous => ReasonCode::NotAuthorized,
        Ok(_) => return false,
        Err(AuthError::WrongCredentials) => ReasonCode::BadUserNameOrPassword,
        Err(AuthError::CredentialsRequired) => ReasonCode::NotAuthorized,
        Err(_) => ReasonCode::ServerBusy,
    };
    let text = caller.as_ref().err().map_or(AuthError::CredentialsRequired.text(), |error| error.text());
    session.refuse_connect(refusal, text);
    true
}

/// Carries out a request other than CONNECT from `session`, whose router
/// handle is `subscriber`. Answers (PUBACK, SUBACK with the granted QoS,
/// UNSUBACK, stored values for new subscriptions) are queued on the
/// session; the returned effects name the other subscribers to reach and
/// the stored value to write.
pub fn execute<S: Clone>(
    router: &mut Router<S>,
    session: &mut ServerSession,
    subscriber: Option<SubscriberId>,
    request: Request<'_>,
    origin: Origin,
) -> Effects<S> {
    let Some(id) = subscriber else { return Effects::default() };
    let Some(namespace) = router.namespace_of(id) else { return Effects::default() };
    match request {
        Request::Publish { topic, payload, retain, qos, packet_id, properties } => {
            let from = session.client_id().cloned();
            let message = message(from, topic, payload.into(), origin);
            let effects = publish(router, namespace, message, qos, forwarded(properties), retain);
            if let Some(packet_id) = packet_id {
                let reach = effects.receivers.is_empty() && effects.store.is_none();
                session.pub_ack(packet_id, if reach { ReasonCode::NoMatchingSubscribers } else { ReasonCode::Success });
            }
            return effects;
        }
        Request::Subscribe { packet_id, filters } => {
            answer_subscribe(session, packet_id, filters, QoS::AtLeastOnce, |session, filter, options, _| {
                let existed = session.granted(&filter, options);
                (existed, broker::subscribe(router, id, filter))
            });
        }
        Request::Unsubscribe { packet_id, filters } => {
            let codes: Vec<u8> = filters
                .into_iter()
                .map(|filter| match filter {
                    Ok(filter) => {
                        session.revoked(&filter);
                        let existed = router.unsubscribe(id, &filter);
                        (if existed { ReasonCode::Success } else { ReasonCode::NoSubscriptionExisted }) as u8
                    }
                    Err(reason) => reason as u8,
                })
                .collect();
            session.unsub_ack(packet_id, &codes);
        }
        Request::Disconnect => broker::release(router, Some(id)),
        // Answered by `connect`; a durable session's PUBACK is the
        // broker's sessions' (`Broker::handle_mqtt_session_request`).
        Request::Connect { .. } | Request::PubAck { .. } => {}
    }
    Effects::default()
}

/// Answers a SUBSCRIBE's `filters`: each valid one goes to `subscribe`
/// with its options and the QoS granted (at most 1), which subscribes it
/// and returns whether it was held before and the stored values it
/// matches. SUBACK grants that QoS, or refuses a filter with its reason
/// code (MQTT 5) or 0x80 (3.1.1); then the stored values that Retain
/// Handling lets through (0: all, 1: for a new subscription, 2: none) are
/// sent at the granted QoS, at most `retained_qos`.
pub(crate) fn answer_subscribe(
    session: &mut ServerSession,
    packet_id: u16,
    filters: Vec<Subscription>,
    retained_qos: QoS,
    mut subscribe: impl FnMut(&mut ServerSession, Filter, SubscriptionOptions, QoS) -> (bool, Vec<Arc<Delivery>>),
) {
    let v5 = session.version() == Some(ProtocolVersion::V5);
    let mut codes = Vec::with_capacity(filters.len());
    let mut values = Vec::new();
    for entry in filters {
        let filter = match entry.filter {
            Ok(filter) => filter,
            Err(reason) => {
                codes.push(if v5 { reason as u8 } else { 0x80 });
                continue;
            }
        };
        let granted = entry.options.qos.min(QoS::AtLeastOnce);
        codes.push(granted as u8);
        let (existed, stored) = subscribe(session, filter, entry.options, granted);
        let send = match entry.options.retain_handling {
            0 => true,
            1 => !existed,
            _ => false,
        };
        if send {
            values.extend(stored.into_iter().map(|value| (value, granted.min(retained_qos))));
        }
    }
    session.sub_ack(packet_id, &codes);
    for (value, qos) in values {
        if session.deliver_retained(&value, qos).is_err() {
            break;
        }
    }
}

/// A PUBLISH without RETAIN: it changes nothing in the router, so a shell
/// may run it under a shared (read) lock, routing from the publisher's
/// `cache` of its last topic's receivers ([`Router::route_cached`], the same
/// receivers as [`Router::route`]). QoS 1 is acknowledged as by [`execute`].
#[allow(clippy::too_many_arguments)] // the fields of one PUBLISH
pub fn publish_live<S: Clone>(
    router: &Router<S>,
    cache: &mut RouteCache<S>,
    session: &mut ServerSession,
    subscriber: Option<SubscriberId>,
    topic: Arc<str>,
    payload: &[u8],
    qos: QoS,
    packet_id: Option<u16>,
    properties: Properties<'_>,
    origin: Origin,
) -> Effects<S> {
    let mut effects = Effects::default();
    let Some(namespace) = subscriber.and_then(|id| router.namespace_of(id)) else { return effects };
    if let Ok(name) = TopicName::new(&topic, &TopicLimits::UNBOUNDED) {
        effects.receivers.extend(router.route_cached(cache, namespace, name).iter().cloned());
    }
    if let Some(packet_id) = packet_id {
        let reason = if effects.receivers.is_empty() { ReasonCode::NoMatchingSubscribers } else { ReasonCode::Success };
        session.pub_ack(packet_id, reason);
    }
    if !effects.receivers.is_empty() {
        let message = message(session.client_id().cloned(), topic, payload.into(), origin);
        effects.delivery = Some(Delivery::from_mqtt(message, qos, forwarded(properties)));
    }
    effects
}

/// The message a PUBLISH or will carries, stamped with the client id
/// (`from`) and `origin`.
pub(crate) fn message(from: Option<Arc<str>>, topic: Arc<str>, payload: Arc<[u8]>, origin: Origin) -> Message {
    Message {
        topic,
        payload,
        from: from.unwrap_or_else(|| Message::UNKNOWN_SENDER.into()),
        updated_time: origin.unix_time,
        ip: origin.ip,
    }
}

/// The delivery of a PUBLISH from `from`, kept at its `qos` with its
/// forwarded `properties` for MQTT receivers.
pub(crate) fn forwarded_message(
    from: Option<Arc<str>>,
    topic: Arc<str>,
    payload: &[u8],
    qos: QoS,
    properties: Properties<'_>,
    origin: Origin,
) -> Arc<Delivery> {
    Delivery::from_mqtt(message(from, topic, payload.into(), origin), qos, forwarded(properties))
}

/// An MQTT message through the common publish rule, kept at its `qos`
/// and with its forwarded `properties` for MQTT receivers.
fn publish<S: Clone>(
    router: &mut Router<S>,
    namespace: NamespaceId,
    message: Message,
    qos: QoS,
    properties: Option<Arc<[u8]>>,
    retain: bool,
) -> Effects<S> {
    let topic = message.topic.clone();
    // The session validated it; TopicName only borrows the same text.
    let Ok(name) = TopicName::new(&topic, &TopicLimits::UNBOUNDED) else { return Effects::default() };
    broker::publish(router, namespace, name, Delivery::from_mqtt(message, qos, properties), retain)
}

/// Publishes a will when its connection ended without a clean DISCONNECT,
/// in the namespace the client was admitted to, from its client id.
pub fn publish_will<S: Clone>(
    router: &mut Router<S>,
    namespace: NamespaceId,
    client_id: Option<Arc<str>>,
    will: WillMessage,
    origin: Origin,
) -> Effects<S> {
    let message = message(client_id, will.topic, will.payload, origin);
    publish(router, namespace, message, will.qos, will.properties, will.retain)
}
