//! Sessions over WebSocket on the HTTP listener: `GET /mqtt` (MQTT) and
//! `GET /ws` (the binary protocol) upgrade the connection, which from then
//! on unwraps frames here and hands their bytes to the protocol's own input
//! handling (`mqtt.rs`, `binary.rs`), as if read from a socket.

use std::time::Instant;

use tinymq_core::ReasonCode;
use tinymq_core::Session;
use tinymq_core::mqtt::{ServerSession, SessionConfig as MqttSessionConfig};
use tinymq_core::websocket::link::{BINARY_PATH, MQTT_PATH, UpgradeStep, WebSocketLink, upgrade};

use super::EventLoop;
use crate::proto::{OverWebSocket, Proto};

impl EventLoop {
    /// Upgrades the HTTP connection `token` if `input` starts with a
    /// WebSocket request for `/mqtt` or `/ws`: `Some(bytes taken)`, or
    /// `None` for the HTTP service to answer (0 taken while the head is
    /// incomplete).
    pub(super) fn try_upgrade(&mut self, token: usize, input: &[u8], now: Instant) -> Option<usize> {
        let (path, step) = [MQTT_PATH, BINARY_PATH].into_iter().find_map(|path| match upgrade(input, path) {
            UpgradeStep::NotThisPath => None,
            step => Some((path, step)),
        })?;
        let conn = self.conns.get_mut(token).and_then(Option::as_mut)?;
        let Proto::Http(http) = &mut conn.proto else { return None };
        let config = &self.shared.config;
        let (consumed, response) = match step {
            UpgradeStep::NotThisPath | UpgradeStep::Incomplete => return Some(0),
            UpgradeStep::Refused { response } => {
                http.outbound_mut().push_final(&response);
                http.close(ReasonCode::ProtocolError);
                return Some(input.len());
            }
            UpgradeStep::Upgrade { consumed, response } => (consumed, response),
        };
        log::debug!("connection {}:{} upgraded to WebSocket at {}", self.index, conn.serial, path.0);
        let link = WebSocketLink::new(config.mqtt.max_packet_size.max(websocket_limit(config)), &response);
        conn.proto = if path == MQTT_PATH {
            let session_config = MqttSessionConfig {
                topic_limits: config.session.topic_limits,
                outbound_limit: config.session.outbound_limit,
                ..config.mqtt
            };
            Proto::MqttWs(Box::new(OverWebSocket { session: ServerSession::new(now, &session_config), link }))
        } else {
            Proto::BinaryWs(Box::new(OverWebSocket { session: Session::new(now, &config.session), link }))
        };
        Some(consumed + self.handle_websocket(token, &input[consumed..], now))
    }

    /// Unwraps WebSocket frames and feeds their bytes to the session; takes
    /// all of `input`. A close frame or a broken one ends the connection
    /// (an MQTT client's will goes out as it closes).
    pub(super) fn handle_websocket(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return input.len() };
        let link = match &mut conn.proto {
            Proto::MqttWs(ws) => &mut ws.link,
            Proto::BinaryWs(ws) => &mut ws.link,
            _ => return input.len(),
        };
        if let Err(closed) = link.receive(input) {
            log::debug!("WebSocket connection {}:{} ended: {closed:?}", self.index, conn.serial);
            return input.len();
        }
        let bytes = link.take_input();
        let mqtt = matches!(conn.proto, Proto::MqttWs(_));
        let used = if mqtt { self.handle_packets(token, &bytes, now) } else { self.handle_frames(token, &bytes, now) };
        match self.conns.get_mut(token).and_then(Option::as_mut).map(|conn| &mut conn.proto) {
            Some(Proto::MqttWs(ws)) => ws.link.keep_input(&bytes[used..]),
            Some(Proto::BinaryWs(ws)) => ws.link.keep_input(&bytes[used..]),
            _ => {}
        }
        input.len()
    }
}

/// The largest WebSocket message a binary-protocol client may send: its
/// largest frame.
fn websocket_limit(config: &crate::config::BrokerConfig) -> usize {
    let limits = config.session.frame_limits;
    limits.max_payload_len + 3 * u16::MAX as usize + 64
}
