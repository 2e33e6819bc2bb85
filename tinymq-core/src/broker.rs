//! The rules that tie a binary [`Session`] to the [`Router`]: what Connect,
//! Publish, Subscribe, Unsubscribe and Disconnect do to the broker's state.
//!
//! The I/O shell calls [`execute`] for each [`Request`] a session yields,
//! then moves what the returned [`Effects`] name: the shared delivery to
//! every receiver's sink, and a takeover Disconnect to the session that held
//! the client id before. [`release`] runs once when a connection closes.

use std::net::IpAddr;
use std::sync::Arc;

use crate::codec::ReasonCode;
use crate::message::Message;
use crate::router::{Delivery, NamespaceId, Router, SubscriberId};
use crate::session::{Credentials, Request, Session};

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
    /// A retained publish changed a stored value: the name of the namespace
    /// whose value for `delivery`'s topic must be written to the store
    /// (deleted when the payload is empty).
    pub stored: Option<Arc<str>>,
    /// Receivers of `delivery`.
    pub receivers: Vec<S>,
    /// A session whose client id was taken over: send it Disconnect 3.
    pub taken_over: Option<S>,
    /// The session's subscriber id, set by an accepted Connect.
    pub connected: Option<SubscriberId>,
}

impl<S> Default for Effects<S> {
    fn default() -> Self {
        Effects { delivery: None, receivers: Vec::new(), taken_over: None, connected: None, stored: None }
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
        (Request::Connect { client_id, credentials }, None) => {
            let namespace = match authenticate(credentials) {
                Ok(namespace) => namespace,
                Err(text) => {
                    session.refuse(ReasonCode::NotAuthorized, text);
                    return effects;
                }
            };
            let id = router.add_subscriber(namespace, sink);
            router.set_origin(id, origin.unix_time, origin.ip);
            let (client_id, previous) = router.claim_client_id(id, client_id);
            // The old holder leaves the router now; the shell only has to
            // tell it (its later release finds a stale id and does nothing).
            effects.taken_over = previous.and_then(|old| router.remove_subscriber(old));
            session.accept(client_id);
            effects.connected = Some(id);
        }
        (Request::Publish { topic, payload, retain }, Some(id)) => {
            let Some(namespace) = router.namespace_of(id) else { return effects };
            let from = session.client_id().cloned().unwrap_or_else(|| Message::UNKNOWN_SENDER.into());
            let delivery = Delivery::new(Message {
                topic: topic.as_str().into(),
                payload: payload.into(),
                from,
                updated_time: origin.unix_time,
                ip: origin.ip,
            });
            let outcome = router.publish(namespace, topic, &delivery, retain, &mut effects.receivers);
            if outcome.stored {
                effects.stored = Some(router.namespace_name(namespace).clone());
            }
            if outcome.receivers > 0 || outcome.stored {
                effects.delivery = Some(delivery);
            }
        }
        (Request::Subscribe(filter), Some(id)) => {
            let Some(namespace) = router.namespace_of(id) else { return effects };
            router.subscribe(id, filter.clone());
            session.sub_ack(filter.as_str(), Ok(()));
            for value in router.values_matching(namespace, &filter) {
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

/// Removes a closed connection's subscriber (its subscriptions and client
/// id). Safe to call with a handle already released.
pub fn release<S: Clone>(router: &mut Router<S>, subscriber: Option<SubscriberId>) {
    if let Some(id) = subscriber {
        router.remove_subscriber(id);
    }
}
