//! RFC 6455 WebSocket, sans-IO: the opening handshake on a parsed request
//! head, and the frame codec.
//!
//! [`link`] puts it to use for `GET /mqtt` (subprotocol `mqtt`, MQTT packets
//! in binary messages) and `GET /ws` (the tinymq binary protocol) on the
//! HTTP listener: the upgrade and a session's framing.
//!
//! # Calling order
//!
//! 1. The HTTP layer parses a request head with httparse and hands the
//!    method and headers to [`accept`] with the subprotocols the path
//!    speaks. On `Ok`, it writes [`Upgrade::response`] and the connection
//!    speaks WebSocket from the next byte; on `Err`, it writes
//!    [`HandshakeError::response`] and closes.
//! 2. Received bytes go to [`FrameDecoder::decode`] (one decoder per
//!    connection, built with [`FrameDecoder::server`]) until it returns
//!    [`Received::Partial`]; each [`Received::Frame`] says how many bytes to
//!    drop and may carry a whole [`Message`]. A ping is answered with a
//!    pong ([`encode_frame`]), a close with a close ([`encode_close`]) and
//!    then the connection is closed.
//! 3. A [`FrameError`] is fatal: send [`encode_close`] with
//!    [`FrameError::close_code`] (1002, 1007 or 1009) and close.
//!
//! ```
//! use tinymq_core::websocket::{self, FrameDecoder, Message, Received};
//!
//! // RFC 6455 section 5.7: a masked "Hello" from a client.
//! let mut input = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let mut decoder = FrameDecoder::server(1 << 20);
//! let received = decoder.decode(&mut input).unwrap();
//! assert_eq!(received, Received::Frame { consumed: 11, message: Some(Message::Text("Hello")) });
//!
//! let mut out = Vec::new();
//! websocket::encode_frame(true, websocket::Opcode::Text, b"Hello", &mut out);
//! assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
//! ```
//!
//! No extensions are negotiated (so every RSV bit must be 0), and
//! `max_message_size` bounds both a single frame and a reassembled message,
//! checked from the frame header before the payload is buffered.

mod frame;
mod handshake;
pub mod link;

#[cfg(test)]
mod tests;

pub use frame::{
    FrameDecoder, FrameError, Message, Opcode, Received, apply_mask, close_code, encode_close, encode_frame,
    encode_masked_frame,
};
pub use handshake::{HandshakeError, Upgrade, accept, accept_key};
