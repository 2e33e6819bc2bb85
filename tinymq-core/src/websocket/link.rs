//! A session's bytes over WebSocket: MQTT at `GET /mqtt` (subprotocol
//! `mqtt`) and the tinymq binary protocol at `GET /ws`, on the HTTP
//! listener. The upgrade, and the framing between a connection's bytes and
//! its session ([`crate::mqtt::ServerSession`] or [`crate::Session`]), whose
//! packets or frames travel in binary messages, split or joined as the
//! peer likes.
//!
//! # Calling order
//!
//! 1. On an HTTP connection, call [`upgrade`] on the unread bytes with each
//!    path the listener serves. [`UpgradeStep::Upgrade`] means: drop
//!    `consumed` bytes, and from now on the connection is a
//!    [`WebSocketLink`] (whose outbound queue already holds the 101
//!    response) beside a new session; [`UpgradeStep::Refused`] means: send
//!    the response and close.
//! 2. Received bytes go to [`WebSocketLink::receive`]; the bytes of the
//!    binary messages collect in [`WebSocketLink::take_input`], which the
//!    caller feeds to the session as if read from a socket, and hands back
//!    what it did not consume with [`WebSocketLink::keep_input`].
//! 3. Before writing, [`WebSocketLink::pump`] moves what the session queued
//!    into binary frames on the link's own queue, which is what is written.

use crate::outbound::Outbound;
use crate::websocket::{self, FrameDecoder, FrameError, Message, Opcode, Received, close_code};

/// Where MQTT over WebSocket is served, and its subprotocol.
pub const MQTT_PATH: (&str, &[&str]) = ("/mqtt", &["mqtt"]);

/// Where the tinymq binary protocol over WebSocket is served (no
/// subprotocol).
pub const BINARY_PATH: (&str, &[&str]) = ("/ws", &[]);

/// The session bytes the link moves into its own queue at once; the rest
/// stays in the session's queue, whose limit makes a slow consumer.
const PUMP_MARK: usize = 256 * 1024;

/// What [`upgrade`] found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// Not a request for this path: the HTTP service answers it.
    NotThisPath,
    /// The request head is not whole yet.
    Incomplete,
    /// Upgraded: send `response` (101, with the subprotocol) and drop
    /// `consumed` bytes; the rest is WebSocket.
    Upgrade {
        /// Bytes of the request head.
        consumed: usize,
        /// The 101 response.
        response: Vec<u8>,
    },
    /// A request for the path that is not a valid upgrade: send `response`
    /// (400 or 426) and close.
    Refused {
        /// The refusal.
        response: Vec<u8>,
    },
}

/// Checks whether `input` begins with a WebSocket upgrade at `path`
/// (`GET` only: other methods are the HTTP service's to refuse), offering
/// `protocols` ([`MQTT_PATH`], [`BINARY_PATH`]), and answers it.
pub fn upgrade(input: &[u8], (path, protocols): (&str, &'static [&'static str])) -> UpgradeStep {
    let prefix = [b"GET ".as_slice(), path.as_bytes()].concat();
    let head = &input[..input.len().min(prefix.len() + 1)];
    if !prefix.starts_with(&head[..head.len().min(prefix.len())]) {
        return UpgradeStep::NotThisPath;
    }
    if head.len() <= prefix.len() {
        return UpgradeStep::Incomplete;
    }
    if !matches!(head[prefix.len()], b' ' | b'?') {
        return UpgradeStep::NotThisPath;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(input) {
        Ok(httparse::Status::Partial) => UpgradeStep::Incomplete,
        Ok(httparse::Status::Complete(consumed)) => {
            match websocket::accept(request.method.unwrap_or_default(), request.headers, protocols) {
                Ok(upgrade) => UpgradeStep::Upgrade { consumed, response: upgrade.response() },
                Err(error) => UpgradeStep::Refused { response: error.response() },
            }
        }
        Err(_) => UpgradeStep::Refused {
            response: websocket::HandshakeError::BadRequest("malformed request head").response(),
        },
    }
}

/// Why a link ended on the WebSocket level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkClosed {
    /// The peer sent a close frame (answered).
    ByPeer,
    /// The peer broke RFC 6455 (a close frame with the code is queued).
    Error(u16),
}

/// The WebSocket framing of one connection. See the module docs.
#[derive(Debug)]
pub struct WebSocketLink {
    decoder: FrameDecoder,
    /// Received bytes not yet decoded into frames.
    raw: Vec<u8>,
    /// Session bytes from binary messages, not yet handled.
    input: Vec<u8>,
    outbound: Outbound,
    closed: Option<LinkClosed>,
    close_sent: bool,
}

impl WebSocketLink {
    /// A link whose messages may be at most `max_message` bytes, with the
    /// upgrade's `response` queued first.
    pub fn new(max_message: usize, response: &[u8]) -> Self {
        let mut outbound = Outbound::new(usize::MAX);
        outbound.push_final(response);
        WebSocketLink {
            decoder: FrameDecoder::server(max_message),
            raw: Vec::new(),
            input: Vec::new(),
            outbound,
            closed: None,
            close_sent: false,
        }
    }

    /// Whether the link ended (the session's connection ends with it).
    pub fn closed(&self) -> Option<LinkClosed> {
        self.closed
    }

    /// Takes received bytes: frames are unwrapped, binary messages'
    /// bytes collect for [`WebSocketLink::take_input`], pings are answered.
    /// A close frame or a broken frame ends the link.
    pub fn receive(&mut self, input: &[u8]) -> Result<(), LinkClosed> {
        if let Some(closed) = self.closed {
            return Err(closed);
        }
        self.raw.extend_from_slice(input);
        let mut raw = std::mem::take(&mut self.raw);
        let mut used = 0;
        let result = loop {
            let (consumed, reply) = match self.decoder.decode(&mut raw[used..]) {
                Ok(Received::Partial { .. }) => break Ok(()),
                Ok(Received::Frame { consumed, message }) => match message {
                    Some(Message::Binary(bytes)) => {
                        self.input.extend_from_slice(bytes);
                        (consumed, None)
                    }
                    Some(Message::Ping(payload)) => {
                        let mut pong = Vec::new();
                        websocket::encode_frame(true, Opcode::Pong, payload, &mut pong);
                        (consumed, Some(Ok(pong)))
                    }
                    Some(Message::Close { code, .. }) => {
                        let mut close = Vec::new();
                        websocket::encode_close(code.unwrap_or(close_code::NORMAL), "", &mut close);
                        (consumed, Some(Err((close, LinkClosed::ByPeer))))
                    }
                    // Both protocols are binary (MQTT 5 section 6.0).
                    Some(Message::Text(_)) => {
                        let error = LinkClosed::Error(close_code::UNSUPPORTED_DATA);
                        let mut close = Vec::new();
                        websocket::encode_close(close_code::UNSUPPORTED_DATA, "binary messages only", &mut close);
                        (consumed, Some(Err((close, error))))
                    }
                    Some(Message::Pong(_)) | None => (consumed, None),
                },
                Err(error) => {
                    let code = FrameError::close_code(&error);
                    let mut close = Vec::new();
                    websocket::encode_close(code, &error.to_string(), &mut close);
                    break Err((close, LinkClosed::Error(code)));
                }
            };
            used += consumed;
            match reply {
                Some(Ok(pong)) => self.outbound.push_final(&pong),
                Some(Err(end)) => break Err(end),
                None => {}
            }
        };
        raw.drain(..used.min(raw.len()));
        self.raw = raw;
        result.map_err(|(close, closed)| {
            self.outbound.push_final(&close);
            self.close_sent = true;
            self.closed = Some(closed);
            self.raw = Vec::new();
            closed
        })
    }

    /// The session bytes received so far.
    pub fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    /// Hands back the session bytes it did not consume.
    pub fn keep_input(&mut self, rest: &[u8]) {
        let mut kept = rest.to_vec();
        kept.extend_from_slice(&self.input);
        self.input = kept;
    }

    /// Moves the session's queued bytes into binary frames on the link's
    /// queue (up to a mark, so the session's own limit still tells a slow
    /// consumer), and a close frame once the session is closed and flushed.
    pub fn pump(&mut self, session: &mut Outbound, session_closed: bool) {
        while !session.is_empty() && self.outbound.len() < PUMP_MARK && !self.close_sent {
            let mut slices: [&[u8]; 16] = [&[]; 16];
            let n = session.front_slices(&mut slices);
            let bytes: Vec<u8> = slices[..n].concat();
            let mut frame = Vec::with_capacity(bytes.len() + 10);
            websocket::encode_frame(true, Opcode::Binary, &bytes, &mut frame);
            self.outbound.push_final(&frame);
            session.consume(bytes.len());
        }
        if session_closed && session.is_empty() && !self.close_sent {
            let mut close = Vec::new();
            websocket::encode_close(close_code::NORMAL, "", &mut close);
            self.outbound.push_final(&close);
            self.close_sent = true;
        }
    }

    /// The framed bytes to write.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// The framed bytes to write, to mark what was written.
    pub fn outbound_mut(&mut self) -> &mut Outbound {
        &mut self.outbound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        websocket::encode_masked_frame(true, opcode, [1, 2, 3, 4], payload, &mut out);
        out
    }

    fn all(outbound: &Outbound) -> Vec<u8> {
        let mut slices: [&[u8]; 64] = [&[]; 64];
        let n = outbound.front_slices(&mut slices);
        slices[..n].concat()
    }

    #[test]
    fn only_get_mqtt_with_a_valid_upgrade_is_upgraded() {
        let head = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                    Sec-WebSocket-Protocol: mqtt\r\n\r\n";
        let UpgradeStep::Upgrade { consumed, response } = upgrade(head.as_bytes(), MQTT_PATH) else { panic!() };
        assert_eq!(consumed, head.len());
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 101") && response.contains("Sec-WebSocket-Protocol: mqtt"));
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455's example key");
        assert_eq!(upgrade(&head.as_bytes()[..40], MQTT_PATH), UpgradeStep::Incomplete);
        assert_eq!(upgrade(b"GET /mq", MQTT_PATH), UpgradeStep::Incomplete);
        assert_eq!(upgrade(b"GET /mqttx HTTP/1.1\r\n\r\n", MQTT_PATH), UpgradeStep::NotThisPath);
        assert_eq!(upgrade(b"POST /mqtt HTTP/1.1\r\n\r\n", MQTT_PATH), UpgradeStep::NotThisPath);
        assert_eq!(upgrade(b"GET /api/v1/health HTTP/1.1\r\n\r\n", MQTT_PATH), UpgradeStep::NotThisPath);
        let UpgradeStep::Refused { response } = upgrade(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", MQTT_PATH) else {
            panic!()
        };
        assert!(response.starts_with(b"HTTP/1.1 426"));
        // /ws speaks no subprotocol: a client asking for one gets none.
        let ws = head.replace("/mqtt", "/ws");
        let UpgradeStep::Upgrade { response, .. } = upgrade(ws.as_bytes(), BINARY_PATH) else { panic!() };
        assert!(!String::from_utf8(response).unwrap().contains("Sec-WebSocket-Protocol"));
        assert_eq!(upgrade(ws.as_bytes(), MQTT_PATH), UpgradeStep::NotThisPath);
    }

    #[test]
    fn binary_messages_carry_mqtt_bytes_and_output_goes_out_framed() {
        let mut link = WebSocketLink::new(1 << 20, b"101");
        let mut input = client_frame(Opcode::Binary, &[0xC0, 0x00]);
        input.extend(client_frame(Opcode::Ping, b"p"));
        // A frame split across reads.
        let split = client_frame(Opcode::Binary, &[0xE0, 0x00]);
        input.extend_from_slice(&split[..3]);
        link.receive(&input).unwrap();
        link.receive(&split[3..]).unwrap();
        assert_eq!(link.take_input(), [0xC0, 0x00, 0xE0, 0x00]);
        let mut session = Outbound::new(1 << 20);
        session.push_final(&[0xD0, 0x00]);
        link.pump(&mut session, false);
        assert!(session.is_empty());
        assert_eq!(all(link.outbound()), [&b"101"[..], &[0x8A, 1, b'p'], &[0x82, 2, 0xD0, 0x00]].concat());
        link.pump(&mut session, true);
        assert_eq!(&all(link.outbound())[10..], [0x88, 2, 0x03, 0xE8], "a close frame once the session closed");
    }

    #[test]
    fn text_messages_and_bad_frames_end_the_link() {
        let mut link = WebSocketLink::new(1 << 20, b"");
        assert_eq!(link.receive(&client_frame(Opcode::Text, b"hi")), Err(LinkClosed::Error(1003)));
        let mut link = WebSocketLink::new(1 << 20, b"");
        // An unmasked client frame.
        assert_eq!(link.receive(&[0x82, 0x00]), Err(LinkClosed::Error(1002)));
        let mut link = WebSocketLink::new(1 << 20, b"");
        assert_eq!(link.receive(&client_frame(Opcode::Close, &[0x03, 0xE8])), Err(LinkClosed::ByPeer));
        assert_eq!(all(link.outbound()), [0x88, 2, 0x03, 0xE8], "the close is echoed");
    }
}
