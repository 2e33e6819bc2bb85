//! Which requests become WebSocket connections, and what they speak.
//!
//! `GET /ws` carries the tinymq binary protocol and `GET /mqtt` MQTT
//! (subprotocol `mqtt`), each as a byte stream in binary messages: a
//! frame or packet may span messages, and a message may hold several. The
//! protocol inside authenticates as it does on its own port (a Connect's
//! credentials), so the upgrade itself asks for none; the peer allow-list
//! and budgets were applied when the connection was accepted.

use super::request::{Method, RequestHead};
use super::response::Response;
use crate::websocket::{self, HandshakeError, Upgrade};

/// What a WebSocket connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsProtocol {
    /// The tinymq binary protocol (`/ws`).
    Tinymq,
    /// MQTT 3.1.1 or 5.0 (`/mqtt`, subprotocol `mqtt`).
    Mqtt,
}

impl WsProtocol {
    /// The paths that upgrade, what they carry and the subprotocols they
    /// offer.
    const PATHS: [(&'static str, WsProtocol, &'static [&'static str]); 2] =
        [("/ws", WsProtocol::Tinymq, &[]), ("/mqtt", WsProtocol::Mqtt, &["mqtt"])];

    /// What `path` carries, if it is a WebSocket path.
    pub fn of_path(path: &str) -> Option<WsProtocol> {
        Self::PATHS.iter().find(|(p, _, _)| *p == path).map(|&(_, protocol, _)| protocol)
    }
}

/// The upgrade a request for a WebSocket path asks for: `None` for any
/// other path, else the protocol and the accepted [`Upgrade`] (whose
/// [`Upgrade::response`] is the 101 to send before the connection speaks
/// WebSocket) or the refusal ([`refusal`]).
pub fn decide(head: &RequestHead) -> Option<(WsProtocol, Result<Upgrade, HandshakeError>)> {
    let &(_, protocol, offered) = WsProtocol::PATHS.iter().find(|(path, _, _)| *path == head.path)?;
    let method = match head.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Options => "OPTIONS",
    };
    let headers = head.upgrade.iter().map(|(name, value)| (name.as_str(), value.as_slice()));
    Some((protocol, websocket::accept(method, headers, offered)))
}

/// The answer to an upgrade that was refused: 426 with the upgrade and
/// version that would do (RFC 6455 section 4.4), or 400.
pub fn refusal(error: &HandshakeError) -> Response {
    let headers = match error.status() {
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    Response { headers, ..Response::text(error.status(), format!("{error}\n")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{HttpLimits, Parsed, parse_head};

    fn head(raw: &str) -> RequestHead {
        let Ok(Parsed::Complete { head, .. }) = parse_head(raw.as_bytes(), &HttpLimits::default()) else {
            panic!("a whole head")
        };
        head
    }

    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn ws_and_mqtt_upgrade_and_other_paths_do_not() {
        let ws =
            head(&format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}\r\n"));
        let (protocol, upgrade) = decide(&ws).unwrap();
        assert_eq!(protocol, WsProtocol::Tinymq);
        assert_eq!(upgrade.unwrap().accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455's example key");

        let mqtt = head(&format!(
            "GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n{KEY}Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        ));
        let (protocol, upgrade) = decide(&mqtt).unwrap();
        assert_eq!((protocol, upgrade.unwrap().protocol), (WsProtocol::Mqtt, Some("mqtt")));

        assert!(decide(&head("GET /api/v1/stats HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")).is_none());
        assert!(head("GET /ws HTTP/1.1\r\nConnection: close\r\n\r\n").upgrade.is_empty(), "kept only to upgrade");
    }

    #[test]
    fn a_plain_get_of_a_websocket_path_gets_426_and_a_bad_one_400() {
        let (_, plain) = decide(&head("GET /ws HTTP/1.1\r\n\r\n")).unwrap();
        let response = refusal(&plain.unwrap_err());
        assert_eq!(response.status, 426);
        assert!(response.headers.contains("Sec-WebSocket-Version: 13"));
        let no_protocol =
            head(&format!("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}\r\n"));
        let (_, refused) = decide(&no_protocol).unwrap();
        assert_eq!(refusal(&refused.unwrap_err()).status, 400, "/mqtt needs the mqtt subprotocol");
    }
}
