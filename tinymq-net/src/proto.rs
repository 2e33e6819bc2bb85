//! What a connection speaks: the binary protocol, HTTP or MQTT. The event
//! loop asks the same questions of all; it matches where they differ
//! (handling input).

use std::sync::Arc;
use std::time::Instant;

use tinymq_core::http::conn::HttpConn;
use tinymq_core::mqtt::ServerSession;
use tinymq_core::{Closed, Delivery, Outbound, ReasonCode, Session};

pub(crate) enum Proto {
    Binary(Session),
    /// Boxed: an HTTP connection's state is twice a session's, and the
    /// slab of connections is sized by its largest variant.
    Http(Box<HttpConn>),
    /// Boxed like HTTP: an MQTT session keeps its subscriptions' QoS, its
    /// aliases and its in-flight window.
    Mqtt(Box<ServerSession>),
}

impl Proto {
    pub(crate) fn wants_read(&self) -> bool {
        match self {
            Proto::Binary(session) => session.wants_read(),
            Proto::Http(conn) => conn.wants_read(),
            Proto::Mqtt(session) => session.wants_read(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Proto::Binary(session) => session.is_closed(),
            Proto::Http(conn) => conn.is_closed(),
            Proto::Mqtt(session) => session.is_closed(),
        }
    }

    /// The reason a broker-side close carried, once closed.
    pub(crate) fn close_reason(&self) -> Option<ReasonCode> {
        match self {
            Proto::Binary(session) => session.close_reason().flatten(),
            Proto::Http(conn) => conn.close_reason(),
            Proto::Mqtt(session) => session.close_reason().flatten(),
        }
    }

    /// Whether, once its last bytes are out, the connection half-closes
    /// and waits for the peer's EOF before closing: an HTTP peer may still
    /// be sending a request the broker refused, and closing with unread
    /// input would reset the connection and lose the response.
    pub(crate) fn drains_before_close(&self) -> bool {
        // A connection upgraded to WebSocket is no longer `Http`.
        matches!(self, Proto::Http(_))
    }

    pub(crate) fn outbound(&self) -> &Outbound {
        match self {
            Proto::Binary(session) => session.outbound(),
            Proto::Http(conn) => conn.outbound(),
            Proto::Mqtt(session) => session.outbound(),
        }
    }

    pub(crate) fn outbound_mut(&mut self) -> &mut Outbound {
        match self {
            Proto::Binary(session) => session.outbound_mut(),
            Proto::Http(conn) => conn.outbound_mut(),
            Proto::Mqtt(session) => session.outbound_mut(),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Proto::Binary(session) => session.poll_timeout(),
            Proto::Http(conn) => conn.poll_timeout(),
            Proto::Mqtt(session) => session.poll_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), Closed> {
        match self {
            Proto::Binary(session) => session.handle_timeout(now),
            Proto::Http(conn) => conn.handle_timeout(now),
            Proto::Mqtt(session) => session.handle_timeout(now),
        }
    }

    /// Queues a delivery; a connection over its outbound limit closes.
    pub(crate) fn deliver(&mut self, delivery: &Arc<Delivery>) -> Result<(), Closed> {
        match self {
            Proto::Binary(session) => session.deliver(delivery),
            Proto::Http(conn) => conn.deliver(delivery.message()),
            Proto::Mqtt(session) => session.deliver(delivery),
        }
    }

    /// Queues a Publish frame already encoded. Only binary connections get
    /// one (see [`tinymq_core::broker::live_frame`]); HTTP and MQTT
    /// connections ignore it.
    pub(crate) fn deliver_encoded(&mut self, frame: &[u8]) -> Result<(), Closed> {
        match self {
            Proto::Binary(session) => session.deliver_encoded(frame),
            Proto::Http(_) | Proto::Mqtt(_) => Ok(()),
        }
    }

    /// Ends the connection from the broker's side with `reason`.
    pub(crate) fn close(&mut self, reason: ReasonCode) {
        match self {
            Proto::Binary(session) => {
                session.refuse(reason, reason.text());
            }
            Proto::Http(conn) => conn.close(reason),
            Proto::Mqtt(session) => {
                session.close(reason);
            }
        }
    }

    /// The MQTT session of an MQTT connection (over TCP, TLS or WebSocket).
    pub(crate) fn mqtt_session(&mut self) -> Option<&mut ServerSession> {
        match self {
            Proto::Mqtt(session) => Some(session),
            Proto::Binary(_) | Proto::Http(_) => None,
        }
    }

    /// The binary-protocol session (over a socket or WebSocket).
    pub(crate) fn binary_session(&mut self) -> Option<&mut Session> {
        match self {
            Proto::Binary(session) => Some(session),
            Proto::Mqtt(_) | Proto::Http(_) => None,
        }
    }
}
