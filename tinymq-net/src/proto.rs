//! What a connection speaks: the binary protocol, HTTP or MQTT. The event
//! loop asks the same questions of all; it matches where they differ
//! (handling input).

use std::sync::Arc;
use std::time::Instant;

use tinymq_core::http::conn::HttpConn;
use tinymq_core::mqtt::ServerSession;
use tinymq_core::websocket::link::WebSocketLink;
use tinymq_core::{Closed, Delivery, Outbound, ReasonCode, Session};

pub(crate) enum Proto {
    Binary(Session),
    /// Boxed: an HTTP connection's state is twice a session's, and the
    /// slab of connections is sized by its largest variant.
    Http(Box<HttpConn>),
    /// Boxed like HTTP: an MQTT session keeps its subscriptions' QoS, its
    /// aliases and its in-flight window.
    Mqtt(Box<ServerSession>),
    /// MQTT over WebSocket: an HTTP connection upgraded at `GET /mqtt`.
    MqttWs(Box<OverWebSocket<ServerSession>>),
    /// The binary protocol over WebSocket: upgraded at `GET /ws`.
    BinaryWs(Box<OverWebSocket<Session>>),
}

/// A session whose bytes travel in WebSocket frames: the link's queue is
/// what is written, filled from the session's by [`Proto::pump`].
pub(crate) struct OverWebSocket<S> {
    pub(crate) session: S,
    pub(crate) link: WebSocketLink,
}

impl OverWebSocket<ServerSession> {
    fn pump(&mut self) {
        let closed = self.session.is_closed();
        self.link.pump(self.session.outbound_mut(), closed);
    }
}

impl OverWebSocket<Session> {
    fn pump(&mut self) {
        let closed = self.session.is_closed();
        self.link.pump(self.session.outbound_mut(), closed);
    }
}

impl Proto {
    pub(crate) fn wants_read(&self) -> bool {
        match self {
            Proto::Binary(session) => session.wants_read(),
            Proto::Http(conn) => conn.wants_read(),
            Proto::Mqtt(session) => session.wants_read(),
            Proto::MqttWs(ws) => ws.session.wants_read() && ws.link.closed().is_none(),
            Proto::BinaryWs(ws) => ws.session.wants_read() && ws.link.closed().is_none(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Proto::Binary(session) => session.is_closed(),
            Proto::Http(conn) => conn.is_closed(),
            Proto::Mqtt(session) => session.is_closed(),
            Proto::MqttWs(ws) => ws.session.is_closed() || ws.link.closed().is_some(),
            Proto::BinaryWs(ws) => ws.session.is_closed() || ws.link.closed().is_some(),
        }
    }

    /// The reason a broker-side close carried, once closed.
    pub(crate) fn close_reason(&self) -> Option<ReasonCode> {
        match self {
            Proto::Binary(session) => session.close_reason().flatten(),
            Proto::Http(conn) => conn.close_reason(),
            Proto::Mqtt(session) => session.close_reason().flatten(),
            Proto::MqttWs(ws) => ws.session.close_reason().flatten(),
            Proto::BinaryWs(ws) => ws.session.close_reason().flatten(),
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
            Proto::MqttWs(ws) => ws.link.outbound(),
            Proto::BinaryWs(ws) => ws.link.outbound(),
        }
    }

    pub(crate) fn outbound_mut(&mut self) -> &mut Outbound {
        match self {
            Proto::Binary(session) => session.outbound_mut(),
            Proto::Http(conn) => conn.outbound_mut(),
            Proto::Mqtt(session) => session.outbound_mut(),
            // Written bytes are at the front; more may join the back.
            Proto::MqttWs(ws) => {
                ws.pump();
                ws.link.outbound_mut()
            }
            Proto::BinaryWs(ws) => {
                ws.pump();
                ws.link.outbound_mut()
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Proto::Binary(session) => session.poll_timeout(),
            Proto::Http(conn) => conn.poll_timeout(),
            Proto::Mqtt(session) => session.poll_timeout(),
            Proto::MqttWs(ws) => ws.session.poll_timeout(),
            Proto::BinaryWs(ws) => ws.session.poll_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), Closed> {
        match self {
            Proto::Binary(session) => session.handle_timeout(now),
            Proto::Http(conn) => conn.handle_timeout(now),
            Proto::Mqtt(session) => session.handle_timeout(now),
            Proto::MqttWs(ws) => ws.session.handle_timeout(now),
            Proto::BinaryWs(ws) => ws.session.handle_timeout(now),
        }
    }

    /// Queues a delivery; a connection over its outbound limit closes.
    pub(crate) fn deliver(&mut self, delivery: &Arc<Delivery>) -> Result<(), Closed> {
        match self {
            Proto::Binary(session) => session.deliver(delivery),
            Proto::Http(conn) => conn.deliver(delivery.message()),
            Proto::Mqtt(session) => session.deliver(delivery),
            Proto::MqttWs(ws) => ws.session.deliver(delivery),
            Proto::BinaryWs(ws) => ws.session.deliver(delivery),
        }
    }

    /// Queues a Publish frame already encoded. Only binary connections get
    /// one (see [`tinymq_core::broker::live_frame`]); HTTP and MQTT
    /// connections ignore it.
    pub(crate) fn deliver_encoded(&mut self, frame: &[u8]) -> Result<(), Closed> {
        match self {
            Proto::Binary(session) => session.deliver_encoded(frame),
            Proto::Http(_) | Proto::Mqtt(_) | Proto::MqttWs(_) | Proto::BinaryWs(_) => Ok(()),
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
            Proto::MqttWs(ws) => {
                ws.session.close(reason);
            }
            Proto::BinaryWs(ws) => {
                ws.session.refuse(reason, reason.text());
            }
        }
    }

    /// The MQTT session of an MQTT connection, over TCP or WebSocket.
    pub(crate) fn mqtt_session(&mut self) -> Option<&mut ServerSession> {
        match self {
            Proto::Mqtt(session) => Some(session),
            Proto::MqttWs(ws) => Some(&mut ws.session),
            Proto::Binary(_) | Proto::BinaryWs(_) | Proto::Http(_) => None,
        }
    }

    /// The binary-protocol session, over a socket or WebSocket.
    pub(crate) fn binary_session(&mut self) -> Option<&mut Session> {
        match self {
            Proto::Binary(session) => Some(session),
            Proto::BinaryWs(ws) => Some(&mut ws.session),
            Proto::Mqtt(_) | Proto::MqttWs(_) | Proto::Http(_) => None,
        }
    }

    /// Readies the output before a write: a session over WebSocket has its
    /// queued bytes put into frames.
    pub(crate) fn pump(&mut self) {
        match self {
            Proto::MqttWs(ws) => ws.pump(),
            Proto::BinaryWs(ws) => ws.pump(),
            Proto::Binary(_) | Proto::Http(_) | Proto::Mqtt(_) => {}
        }
    }
}
