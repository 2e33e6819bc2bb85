//! The MQTT face's events, on the broker: the rules themselves are
//! [`crate::mqtt::broker`]'s (MQTT's answers to the same connect, takeover,
//! subscribe and publish rules every face follows), run here on the
//! broker's router, with a CONNECT's failed credentials charged to its
//! peer like any other face's.

use std::sync::Arc;
use std::time::Instant;

use super::{Broker, Effects, Origin};
use crate::auth::{AuthError, Identity};
use crate::http::service::SinkKind;
use crate::mqtt::{self, Properties, QoS, Request, ServerSession, WillMessage};
use crate::router::{NamespaceId, RouteCache, SubscriberId};

impl<S: Clone + SinkKind> Broker<S> {
    /// An MQTT CONNECT whose credentials are decided: charged to `origin`'s
    /// peer when they failed, then answered with CONNACK (or its refusal)
    /// and registered under its client id.
    pub fn handle_mqtt_connect(
        &mut self,
        session: &mut ServerSession,
        sink: S,
        caller: Result<Identity, AuthError>,
        now: Instant,
        origin: Origin,
    ) -> Effects<S> {
        let caller = self.charged_caller(caller, origin.ip, now);
        let allow_anonymous = self.allows_anonymous();
        mqtt::broker::connect(&mut self.router, session, sink, allow_anonymous, caller, origin)
    }

    /// Any other request a connected MQTT session yields.
    pub fn handle_mqtt_request(
        &mut self,
        session: &mut ServerSession,
        subscriber: Option<SubscriberId>,
        request: Request<'_>,
        origin: Origin,
    ) -> Effects<S> {
        mqtt::broker::execute(&mut self.router, session, subscriber, request, origin)
    }

    /// A live (not retained) MQTT publish, under a shared borrow, from the
    /// publisher's cache of its topic's receivers (see
    /// [`Broker::route_live`]).
    #[allow(clippy::too_many_arguments)]
    pub fn route_mqtt_live(
        &self,
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
        mqtt::broker::publish_live(
            &self.router,
            cache,
            session,
            subscriber,
            topic,
            payload,
            qos,
            packet_id,
            properties,
            origin,
        )
    }

    /// The will of an MQTT client that went without a DISCONNECT,
    /// published by the same rule as any publish.
    pub fn publish_mqtt_will(
        &mut self,
        namespace: NamespaceId,
        client_id: Option<Arc<str>>,
        will: WillMessage,
        origin: Origin,
    ) -> Effects<S> {
        mqtt::broker::publish_will(&mut self.router, namespace, client_id, will, origin)
    }
}
